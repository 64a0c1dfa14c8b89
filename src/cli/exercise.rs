//! `sae exercise`: UFLDL's exercises on the real data sets of `../shared/datasets/`, one
//! command each, printing what they measured.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};

use super::args::{mnist_inputs, Precision, PrecisionArgs, ScheduleArgs};
use super::CliResult;
use sae::exercises::{self, KSparseDigitsOptions, MnistFiles};
use sae::files::FilePlan;
use sae::model::picture::{features_picture, PixelOrder};

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct ExerciseArgs {
    #[command(subcommand)]
    exercise: Exercise,
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Exercise {
    /// The sparse autoencoder on 10 000 8×8 patches of the whitened natural images (n = 64,
    /// h = 25, ρ = 0.01, λ = 1e-4, β = 3, 400 L-BFGS iterations): edge detectors.
    Natural {
        /// The images (.mat, side×side×count).
        #[arg(long, default_value = "../shared/datasets/natural/IMAGES.mat")]
        images: PathBuf,
        #[arg(long, default_value_t = 400)]
        iterations: usize,
        #[arg(long, default_value = "natural.safetensors")]
        output: PathBuf,
        #[arg(long, default_value = "natural-features.png")]
        features: PathBuf,
    },
    /// The sparse autoencoder on the first 10 000 MNIST training digits (h = 196, ρ = 0.1,
    /// λ = 3e-3, β = 3, 400 iterations): pen-stroke features.
    Vectorization {
        #[arg(long, default_value = "../shared/datasets/mnist")]
        mnist: PathBuf,
        #[arg(long, default_value_t = 400)]
        iterations: usize,
        #[arg(long, default_value = "mnist.safetensors")]
        output: PathBuf,
        #[arg(long, default_value = "mnist-features.png")]
        features: PathBuf,
    },
    /// Softmax regression on the raw pixels of all ten digits (λ = 1e-4, 100 iterations).
    Softmax {
        #[arg(long, default_value = "../shared/datasets/mnist")]
        mnist: PathBuf,
        #[arg(long, default_value_t = 100)]
        iterations: usize,
    },
    /// Stacked autoencoders: two 200-unit sparse layers trained greedily on all training
    /// digits, softmax on top, then fine-tuning of the whole stack by backpropagation.
    Stacked {
        #[arg(long, default_value = "../shared/datasets/mnist")]
        mnist: PathBuf,
        #[arg(long, default_value_t = 400)]
        iterations: usize,
    },
    /// Makhzani & Frey's k-sparse autoencoder: 1000 linear units with tied weights, k = 25 (from
    /// 100, lowered over the first half of the epochs), trained with Adam on all 60 000 training
    /// digits; softmax on the top 3k = 75 units of each digit. The paper reports 1.35 % test
    /// error.
    KSparse(KSparseArgs),
    /// Self-taught learning: features learned from the digits 5–9, softmax on them for the
    /// digits 0–4, against softmax on the pixels.
    SelfTaught {
        #[arg(long, default_value = "../shared/datasets/mnist")]
        mnist: PathBuf,
        #[arg(long, default_value_t = 400)]
        iterations: usize,
        #[command(flatten)]
        precision: PrecisionArgs,
    },
}

/// `sae exercise k-sparse`'s options (defaults: [`KSparseDigitsOptions`]'s).
#[derive(Debug, Args)]
struct KSparseArgs {
    #[arg(long, default_value = "../shared/datasets/mnist")]
    mnist: PathBuf,
    #[arg(long, default_value_t = KSparseDigitsOptions::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = KSparseDigitsOptions::default().batch_size)]
    batch_size: usize,
    #[arg(long, default_value_t = KSparseDigitsOptions::default().learning_rate)]
    learning_rate: f64,
    #[command(flatten)]
    schedule: ScheduleArgs,
    #[arg(long, default_value_t = KSparseDigitsOptions::default().k_start)]
    k_start: usize,
    /// Makhzani & Frey's own encoder, z = W x + b (b_dec not subtracted first).
    #[arg(long)]
    no_pre_encoder_bias: bool,
    /// SGD with this momentum instead of Adam.
    #[arg(long)]
    momentum: Option<f64>,
    /// Softmax reads the top alpha·k units of each digit.
    #[arg(long, default_value_t = KSparseDigitsOptions::default().alpha)]
    alpha: usize,
    #[arg(long, default_value_t = KSparseDigitsOptions::default().softmax_iterations)]
    softmax_iterations: usize,
    #[arg(long, default_value_t = KSparseDigitsOptions::default().softmax_lambda)]
    softmax_lambda: f64,
    #[arg(long, default_value_t = KSparseDigitsOptions::default().seed)]
    seed: u64,
    /// Where to write the trained autoencoder.
    #[arg(long, default_value = "k-sparse.safetensors")]
    output: PathBuf,
}

impl KSparseArgs {
    fn options(&self) -> KSparseDigitsOptions {
        KSparseDigitsOptions {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            schedule: self.schedule.schedule(),
            k_start: self.k_start,
            alpha: self.alpha,
            momentum: self.momentum,
            pre_encoder_bias: !self.no_pre_encoder_bias,
            softmax_iterations: self.softmax_iterations,
            softmax_lambda: self.softmax_lambda,
            seed: self.seed,
            ..KSparseDigitsOptions::default()
        }
    }
}

pub fn run(args: ExerciseArgs) -> CliResult<()> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads.unwrap_or(0)).build()?;
    pool.install(|| run_exercise(args.exercise))
}

/// What an exercise reads and writes, checked before it starts.
fn files(exercise: &Exercise) -> FilePlan {
    match exercise {
        Exercise::Natural { images, output, features, .. } => {
            FilePlan::new().input("--images", images).output("--output", output).output("--features", features)
        }
        Exercise::Vectorization { mnist, output, features, .. } => {
            mnist_inputs(FilePlan::new(), &MnistFiles::in_dir(mnist))
                .output("--output", output)
                .output("--features", features)
        }
        Exercise::Softmax { mnist, .. } | Exercise::Stacked { mnist, .. } | Exercise::SelfTaught { mnist, .. } => {
            mnist_inputs(FilePlan::new(), &MnistFiles::in_dir(mnist))
        }
        Exercise::KSparse(args) => {
            mnist_inputs(FilePlan::new(), &MnistFiles::in_dir(&args.mnist)).output("--output", &args.output)
        }
    }
}

fn run_exercise(exercise: Exercise) -> CliResult<()> {
    let _locks = files(&exercise).check()?;
    let start = Instant::now();
    match exercise {
        Exercise::Natural { images, iterations, output, features } => {
            let result = exercises::natural_image_features(&images, iterations, 1)?;
            let seconds = start.elapsed().as_secs_f64();
            let w1 = result.model.parameters.w1();
            let shapes: Vec<_> = (0..w1.rows())
                .map(|i| exercises::filter_shape(&(0..64).map(|j| w1.get(i, j)).collect::<Vec<_>>(), 8))
                .collect();
            let oriented = shapes.iter().filter(|s| s.orientation > 0.5).count();
            println!(
                "natural images: {} iterations, cost {:.6}, {seconds:.2} s; {oriented} of {} filters oriented (spectral anisotropy > 0.5)",
                result.iterations,
                result.cost,
                shapes.len()
            );
            result.model.save(&output)?;
            features_picture(&result.model.parameters, PixelOrder::RowMajor)?.save_png(&features)?;
            println!("model written to {}, features to {}", output.display(), features.display());
        }
        Exercise::Vectorization { mnist, iterations, output, features } => {
            let (model, cost) = exercises::mnist_vectorization::<f32>(&MnistFiles::in_dir(&mnist), iterations)?;
            println!("MNIST vectorization: cost {cost:.6}, {:.2} s", start.elapsed().as_secs_f64());
            model.save(&output)?;
            features_picture(&model.parameters, PixelOrder::RowMajor)?.save_png(&features)?;
            println!("model written to {}, features to {}", output.display(), features.display());
        }
        Exercise::Softmax { mnist, iterations } => {
            let result = exercises::softmax_on_digits(&MnistFiles::in_dir(&mnist), iterations)?;
            println!(
                "softmax on the raw pixels of all ten digits: {:.2} % of {} test images ({} training, {iterations} iterations, {:.2} s)",
                100.0 * result.test_accuracy,
                result.test_examples,
                result.train_examples,
                start.elapsed().as_secs_f64()
            );
        }
        Exercise::Stacked { mnist, iterations } => {
            let result = exercises::stacked_autoencoder::<f32>(&MnistFiles::in_dir(&mnist), &[200, 200], iterations)?;
            println!(
                "stacked autoencoder on the 10 000 test digits: {:.2} % before fine-tuning, {:.2} % after ({:.1} s)",
                100.0 * result.before_fine_tuning,
                100.0 * result.after_fine_tuning,
                start.elapsed().as_secs_f64()
            );
        }
        Exercise::KSparse(args) => {
            args.schedule.check(true)?;
            let options = args.options();
            let result = exercises::k_sparse_digits(&MnistFiles::in_dir(&args.mnist), &options)?;
            result.model.save_with_metadata(
                &args.output,
                [("trained_by".to_string(), format!("sae exercise k-sparse, {options:?}"))],
            )?;
            println!(
                "k-sparse autoencoder (h = {}, k = {} from {}, {} epochs): FVU {:.4}, dead latents {:.1} %",
                options.hidden,
                options.k,
                options.k_start,
                options.epochs,
                result.fvu,
                100.0 * result.dead
            );
            println!(
                "softmax on the top {} units: test error {:.2} % on the 10 000 test digits (paper: 1.35 %) ({:.1} s)",
                options.alpha.saturating_mul(options.k).min(options.hidden),
                100.0 * result.test_error,
                start.elapsed().as_secs_f64()
            );
            println!("wrote {}", args.output.display());
        }
        Exercise::SelfTaught { mnist, iterations, precision } => {
            let f64 = precision.resolve_mnist().0 == Precision::F64;
            let files = MnistFiles::in_dir(&mnist);
            let result = if f64 {
                exercises::self_taught_learning::<f64>(&files, iterations)?
            } else {
                exercises::self_taught_learning::<f32>(&files, iterations)?
            };
            println!(
                "self-taught learning: autoencoder on {} unlabeled digits 5–9 (cost {:.4}); softmax on {} digits 0–4",
                result.unlabeled, result.autoencoder_cost, result.train
            );
            println!(
                "test accuracy on {} digits: {:.2} % on learned features, {:.2} % on raw pixels ({:.1} s)",
                result.test,
                100.0 * result.features_accuracy,
                100.0 * result.raw_accuracy,
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
