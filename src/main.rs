use std::process::ExitCode;

use clap::Parser;
use sae::cli::interrupt::{Interrupted, EXIT_STATUS};
use sae::cli::{init_logging, run, Cli};

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
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::from(141)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
