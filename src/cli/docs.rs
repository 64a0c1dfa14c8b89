//! `sae completions` and `sae man`: the shell completion scripts (clap_complete) and the
//! manual pages (clap_mangen), generated from the same definitions as `--help`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, CliResult};
use sae::files::FilePlan;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write sae.1 and sae-COMMAND.1 for every command into this directory (created if
    /// missing) instead of sae.1 on standard output.
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> CliResult<()> {
    let mut command = Cli::command();
    // Into memory first: `generate` panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "sae", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    Ok(out.flush()?)
}

pub fn man(args: ManArgs) -> CliResult<()> {
    let command = Cli::command();
    let Some(dir) = args.output else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(command).render(&mut out)?;
        return Ok(out.flush()?);
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("--output {}: {e}", dir.display()))?;
    // The main page, then one per command, named as `man sae-train` finds them.
    let mut pages = vec![("sae.1".to_string(), command.clone())];
    for sub in command.get_subcommands().filter(|sub| sub.get_name() != "help") {
        let name = format!("sae-{}", sub.get_name());
        pages.push((format!("{name}.1"), sub.clone().name(name)));
    }
    let paths: Vec<PathBuf> = pages.iter().map(|(file, _)| dir.join(file)).collect();
    let _locks = paths.iter().fold(FilePlan::new(), |plan, path| plan.output("--output", path)).check()?;
    for ((_, page), path) in pages.into_iter().zip(&paths) {
        let mut roff = Vec::new();
        clap_mangen::Man::new(page).render(&mut roff)?;
        sae::files::write_with(path, |out| out.write_all(&roff).map_err(|e| e.to_string()))?;
    }
    println!("{} manual pages written to {}", paths.len(), dir.display());
    Ok(())
}
