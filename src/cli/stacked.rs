//! `sae train-stacked`: greedy layer-wise training of a stack of sparse autoencoders on MNIST,
//! a softmax classifier on the top layer's features, fine-tuning of the whole stack by
//! backpropagation (UFLDL's stacked autoencoder exercise, any layer sizes); reports the test
//! accuracy before and after fine-tuning and writes the fine-tuned stack.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::args::{mnist_inputs, Precision, PrecisionArgs};
use super::CliResult;
use sae::exercises::{self, MnistFiles};
use sae::files::FilePlan;

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct StackedArgs {
    /// The directory of MNIST's four .gz files.
    #[arg(long, default_value = "../shared/datasets/mnist")]
    mnist: PathBuf,
    /// The hidden layers' sizes, bottom first.
    #[arg(long, value_delimiter = ',', default_value = "200,200")]
    layers: Vec<usize>,
    /// L-BFGS iterations for each layer and for the fine-tuning.
    #[arg(long, default_value_t = 400)]
    iterations: usize,
    #[command(flatten)]
    precision: PrecisionArgs,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Where to write the fine-tuned stack.
    #[arg(short, long, default_value = "stacked.safetensors")]
    output: PathBuf,
}

pub fn run(args: StackedArgs) -> CliResult<()> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads.unwrap_or(0)).build()?;
    let (precision, why) = args.precision.resolve_mnist();
    let files = MnistFiles::in_dir(&args.mnist);
    let _locks = mnist_inputs(FilePlan::new(), &files).output("--output", &args.output).check()?;
    let start = Instant::now();
    let sizes: Vec<String> = args.layers.iter().map(|s| s.to_string()).collect();
    let name = if precision == Precision::F64 { "f64" } else { "f32" };
    println!(
        "stack 784-{}-10 on MNIST: {} L-BFGS iterations per layer and for fine-tuning, {name} ({why}), {} threads",
        sizes.join("-"),
        args.iterations,
        pool.current_num_threads()
    );
    let result = pool.install(|| match precision {
        Precision::F64 => exercises::stacked_autoencoder::<f64>(&files, &args.layers, args.iterations),
        Precision::F32 => exercises::stacked_autoencoder::<f32>(&files, &args.layers, args.iterations),
    })?;
    println!(
        "test accuracy on the 10 000 test digits: {:.2} % before fine-tuning, {:.2} % after ({:.1} s)",
        100.0 * result.before_fine_tuning,
        100.0 * result.after_fine_tuning,
        start.elapsed().as_secs_f64()
    );
    result.model.save(&args.output)?;
    println!("stack written to {}", args.output.display());
    Ok(())
}
