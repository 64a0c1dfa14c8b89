use std::process::ExitCode;

use clap::Parser;
mod cli;

use cli::interrupt::{Interrupted, EXIT_STATUS};
use cli::{init_logging, run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Interrupted>() => {
            eprintln!("{e}");
            ExitCode::from(EXIT_STATUS)
        }
        // The reader of standard output went away (`sae man | head`): nothing to report, and
        // the status a shell gives a command ended by SIGPIPE.
        Err(e) if broken_pipe(e.as_ref()) => ExitCode::from(141),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `e` is a write to a closed pipe, as the library or the command reports it.
fn broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let io = match e.downcast_ref::<sae::Error>() {
        Some(sae::Error::Io { source, .. }) => Some(source),
        _ => e.downcast_ref::<std::io::Error>(),
    };
    io.is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
