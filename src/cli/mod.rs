//! The `sae` command line: argument parsing (clap) and the subcommands.

mod args;
mod docs;
mod exercise;
mod generate;
mod interop;
pub mod interrupt;
mod memory;
mod model;
mod objective;
mod plot;
mod progress;
mod sparse_codes;
mod stacked;
mod train;
mod vae;

use clap::{ArgAction, Parser, Subcommand};

/// A fast CPU engine for sparse autoencoders (UFLDL).
#[derive(Debug, Parser)]
#[command(name = "sae", version, about)]
pub struct Cli {
    /// More messages on stderr: -v the library's notes (checkpoints written, why a run stopped),
    /// -vv every iteration and epoch as well. RUST_LOG, when set, chooses instead (e.g.
    /// RUST_LOG=sae=debug).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// No progress bar or progress lines, and no messages on stderr but warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a sparse autoencoder with L-BFGS (UFLDL's exercise by default: 64 inputs, 25
    /// hidden units, 400 iterations, on embedded natural-image patches); writes the model
    /// and a picture of its features.
    Train(Box<train::TrainArgs>),
    /// Train a variational autoencoder on MNIST with Adam (784-400-20-400-784, ReLU, Bernoulli
    /// decoder by default); report the test set's −ELBO per image and write the model and 64
    /// images sampled from the prior.
    TrainVae(vae::VaeArgs),
    /// Train a stack of sparse autoencoders on MNIST layer by layer, a softmax on top, and
    /// fine-tune the whole stack (UFLDL's exercise: two layers of 200 units by default); report
    /// the test accuracy before and after fine-tuning and write the stack.
    TrainStacked(stacked::StackedArgs),
    /// UFLDL's exercises on the real data sets (natural images, MNIST): one command each.
    Exercise(exercise::ExerciseArgs),
    /// The code of every example of --data: an autoencoder's hidden activations a2 = σ(W1 x +
    /// b1), a VAE's latent mean μ(x), a stack's top-layer features (read and written a chunk
    /// at a time).
    Encode(model::ApplyArgs),
    /// The reconstruction of every example of --data (an autoencoder's a3, a VAE's decoder mean
    /// at μ(x)), and its mean squared error.
    Reconstruct(model::ApplyArgs),
    /// Draw every first-layer unit's input image (the learned features) as a PNG grid.
    Visualize(model::VisualizeArgs),
    /// Draw samples from a variational autoencoder: the decoder's means for z ~ N(0, I).
    Sample(model::SampleArgs),
    /// Describe a model or checkpoint file.
    Info(model::InfoArgs),
    /// A TopK model's dictionary metrics on --data (read a chunk at a time): loss, FVU and
    /// explained variance, normalised MSE, L0, dead and dense latents.
    Metrics(model::MetricsArgs),
    /// Write a model in another tool's layout: SAELens's folder (sae_weights.safetensors and
    /// cfg.json) for a model with ReLU hidden units and linear outputs or a TopK model;
    /// sparsify's (sae.safetensors and cfg.json) for a TopK model; others are refused with the
    /// reason.
    Export(interop::ExportArgs),
    /// Read a model from another tool's layout (a SAELens folder of a "standard" or "topk"
    /// SAE, a sparsify folder of a TopK SAE) into a model file.
    Import(interop::ImportArgs),
    /// Draw a trained model's run as a PNG: the training and held-out costs against
    /// iterations or epochs, and the distribution of rho_hat across the hidden units.
    Plot(plot::PlotArgs),
    /// Evaluate the sparse autoencoder cost and gradient of a theta on a data set. Without
    /// --data, on a generated SPEC problem (default S1: 64 inputs, 25 hidden units, 10 000
    /// examples).
    Objective(objective::ObjectiveArgs),
    /// Write a SPEC problem's generated data (uniform in [0.1, 0.9]) to an .npy file of any
    /// number of rows, without holding it in memory.
    Generate(generate::GenerateArgs),
    /// Print the shell completion script for SHELL (e.g. `sae completions bash >
    /// ~/.local/share/bash-completion/completions/sae`).
    Completions(docs::CompletionsArgs),
    /// Write the manual pages (roff): sae.1 and one per command, into a directory; or sae.1 on
    /// standard output (`sae man | man -l -`).
    Man(docs::ManArgs),
}

/// What a command returns: errors of any kind, printed by `main`.
pub type CliResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Installs the logger of the `log` events the library emits: on stderr, warnings and errors
/// (also with `--quiet`), more with `-v`/`-vv`, or as `RUST_LOG` says; and
/// silences the progress reports with `--quiet`.
pub fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Warn,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, _) => log::LevelFilter::Debug,
    };
    let mut logger = env_logger::Builder::new();
    logger.filter_level(level).format_timestamp(None).format_module_path(false);
    if let Ok(filters) = std::env::var("RUST_LOG") {
        logger.parse_filters(&filters);
    }
    // Fails only when a logger is installed already (a second call in one process).
    let _ = logger.try_init();
    progress::set_quiet(cli.quiet);
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> CliResult<()> {
    match cli.command {
        Command::Train(args) => train::run(*args),
        Command::Export(args) => interop::export(args),
        Command::Import(args) => interop::import(args),
        Command::TrainVae(args) => vae::run(args),
        Command::TrainStacked(args) => stacked::run(args),
        Command::Exercise(args) => exercise::run(args),
        Command::Encode(args) => model::encode(args),
        Command::Reconstruct(args) => model::reconstruct(args),
        Command::Visualize(args) => model::visualize(args),
        Command::Sample(args) => model::sample(args),
        Command::Info(args) => model::info(args),
        Command::Metrics(args) => model::metrics(args),
        Command::Plot(args) => plot::run(args),
        Command::Objective(args) => objective::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    }
}
