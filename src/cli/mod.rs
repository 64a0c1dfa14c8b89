//! The `sae` command line: argument parsing (clap) and the subcommands.

mod objective;

use clap::{Parser, Subcommand};

/// A fast CPU engine for sparse autoencoders (UFLDL).
#[derive(Debug, Parser)]
#[command(name = "sae", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate the sparse autoencoder cost and gradient of a theta on a data set. Without
    /// --data, on a generated SPEC problem (default S1: 64 inputs, 25 hidden units, 10 000
    /// examples).
    Objective(objective::ObjectiveArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match cli.command {
        Command::Objective(args) => objective::run(args),
    }
}
