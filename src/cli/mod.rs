//! The `sae` command line: argument parsing (clap) and the subcommands.

mod args;
mod generate;
mod memory;
mod objective;
mod progress;
mod train;

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
    /// Train a sparse autoencoder with L-BFGS (UFLDL's exercise by default: 64 inputs, 25
    /// hidden units, 400 iterations, on embedded natural-image patches); writes the model
    /// and a picture of its features.
    Train(train::TrainArgs),
    /// Evaluate the sparse autoencoder cost and gradient of a theta on a data set. Without
    /// --data, on a generated SPEC problem (default S1: 64 inputs, 25 hidden units, 10 000
    /// examples).
    Objective(objective::ObjectiveArgs),
    /// Write a SPEC problem's generated data (uniform in [0.1, 0.9]) to an .npy file of any
    /// number of rows, without holding it in memory.
    Generate(generate::GenerateArgs),
}

/// What a command returns: errors of any kind, printed by `main`.
pub type CliResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Runs the parsed command.
pub fn run(cli: Cli) -> CliResult<()> {
    match cli.command {
        Command::Train(args) => train::run(args),
        Command::Objective(args) => objective::run(args),
        Command::Generate(args) => generate::run(args),
    }
}
