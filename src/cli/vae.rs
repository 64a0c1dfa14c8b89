//! `sae train-vae`: a variational autoencoder on MNIST, trained with Adam; reports the test
//! set's `−ELBO` per image in nats, writes the model and a grid of images sampled from the
//! prior.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::args::{by_name, mnist_inputs, EngineArgs, Precision, PrecisionArgs};
use super::interrupt::{self, Interrupted};
use super::CliResult;
use sae::data::mnist;
use sae::exercises::MnistFiles;
use sae::files::FilePlan;
use sae::model::picture::{PixelOrder, TileGrid};
use sae::model::vae::{VaeDecoder, VaeShape};
use sae::model::Activation;
use sae::objective::VaeObjective;
use sae::optim::StepRule;
use sae::train::{VaeOptions, VaeTrainer};
use sae::{Dataset, Real};

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct VaeArgs {
    /// The directory of MNIST's four .gz files.
    #[arg(long, default_value = "../shared/datasets/mnist")]
    mnist: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
    /// Units of the encoder's and of the decoder's hidden layer.
    #[arg(long, default_value_t = 400)]
    hidden: usize,
    /// d, the latent dimension.
    #[arg(long, default_value_t = 20)]
    latent: usize,
    /// The hidden units' activation.
    #[arg(long, value_parser = by_name(&Activation::ALL, Activation::name, Activation::summary), default_value = "relu")]
    activation: Activation,
    /// p(x|z): Bernoulli pixels (MNIST's intensities as probabilities) or N(y, I).
    #[arg(long, value_parser = by_name(&VaeDecoder::ALL, VaeDecoder::name, VaeDecoder::summary),
          default_value = "bernoulli")]
    decoder: VaeDecoder,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Train on the first this many training images (default: all 60 000).
    #[arg(long)]
    train_examples: Option<usize>,
    /// Seed of the initial weights, the example order and the samples ε.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    precision: PrecisionArgs,
    /// Where to write the model.
    #[arg(short, long, default_value = "vae.safetensors")]
    output: PathBuf,
    /// Where to write 64 images sampled from the prior (the decoder's means).
    #[arg(long, default_value = "vae-samples.png")]
    samples: PathBuf,
}

pub fn run(args: VaeArgs) -> CliResult<()> {
    let plan = mnist_inputs(FilePlan::new(), &MnistFiles::in_dir(&args.mnist));
    let _locks = plan.output("--output", &args.output).output("--samples", &args.samples).check()?;
    args.engine.pool()?.install(|| match args.precision.resolve_mnist().0 {
        Precision::F32 => train::<f32>(&args),
        Precision::F64 => train::<f64>(&args),
    })
}

fn train<T: Real>(args: &VaeArgs) -> CliResult<()> {
    let files = MnistFiles::in_dir(&args.mnist);
    let (train, m_all, n) = mnist::read_images(&files.train_images)?;
    let (test, m_test, _) = mnist::read_images(&files.test_images)?;
    let m = args.train_examples.unwrap_or(m_all).min(m_all);
    let to_t = |values: &[f64]| values.iter().map(|&v| T::cast(v)).collect::<Vec<T>>();
    let (train, test) = (to_t(&train[..m * n]), to_t(&test));
    let (activation, decoder) = (args.activation, args.decoder);
    let shape = VaeShape::new(n, args.hidden, args.latent, activation, decoder)?;
    let options = VaeOptions {
        rule: StepRule::adam(args.learning_rate),
        batch_size: args.batch_size,
        epochs: args.epochs,
        seed: args.seed,
    };
    println!(
        "VAE {n}-{h}-{d}-{h}-{n}, {} units, {} decoder, {} parameters; Adam {} on minibatches of {}, {} epochs of {m} \
         images; {}, {} threads",
        activation.name(),
        decoder.name(),
        shape.theta_len(),
        args.learning_rate,
        args.batch_size,
        args.epochs,
        T::NAME,
        rayon::current_num_threads(),
        h = args.hidden,
        d = args.latent,
    );
    let start = Instant::now();
    let stop = interrupt::on_signal()?;
    let model = VaeTrainer::new(shape, options)?.stop_when(stop).fit(
        &Dataset::examples_by_features(&train, m, n)?,
        &shape.init::<T>(args.seed),
        |e| {
            println!(
                "epoch {:>3}: train −ELBO {:.2} nats/image (reconstruction {:.2}, KL {:.2})  {:.1} s",
                e.epoch,
                e.cost.total(),
                e.cost.reconstruction,
                e.cost.kl,
                start.elapsed().as_secs_f64()
            );
        },
    )?;
    let mut objective = VaeObjective::<T>::new(shape, 1000, args.seed ^ 0x7e57)?;
    let test_cost = objective.negative_elbo(&model.theta, &Dataset::examples_by_features(&test, m_test, n)?, 0)?;
    println!(
        "test set ({m_test} images): −ELBO {:.2} nats/image (reconstruction {:.2}, KL {:.2}); one sample of z per image",
        test_cost.total(),
        test_cost.reconstruction,
        test_cost.kl
    );
    let mut model = model;
    let interrupted = model.metadata.iter().any(|(key, value)| key == "stop" && value == "interrupted");
    let done = model.metadata.iter().find(|(key, _)| key == "epochs").map_or("0", |(_, value)| value.as_str());
    let unfinished = interrupted.then(|| format!("interrupted after epoch {done} of {}", args.epochs));
    if let Some(note) = &unfinished {
        model.metadata.push(("unfinished".into(), note.clone()));
    }
    model.metadata.push(("test_negative_elbo".into(), test_cost.total().to_string()));
    model.save(&args.output)?;
    println!("model written to {}", args.output.display());

    // 64 draws from the prior, decoded to the decoder's means.
    let means = objective.sample(&model.theta, 0..64, args.seed)?;
    let tiles: Vec<Vec<f64>> = means
        .chunks_exact(n)
        .map(|image| image.iter().map(|p| 2.0 * p.as_f64().clamp(0.0, 1.0) - 1.0).collect())
        .collect();
    TileGrid::for_inputs(n, PixelOrder::RowMajor)?.draw(&tiles).save_png(&args.samples)?;
    println!("64 samples from the prior written to {}", args.samples.display());
    match unfinished {
        None => Ok(()),
        Some(note) => Err(Interrupted { kept: format!("the model {note} is in {}", args.output.display()) }.into()),
    }
}
