//! The commands that use a trained model: `sae encode` (hidden activations, the features of
//! each example), `sae reconstruct`, `sae visualize` and `sae info`. Encoding and
//! reconstruction read and write a chunk at a time, so they work on data of any size.

use std::path::PathBuf;

use clap::Args;

use super::args::{DataArgs, EngineArgs, Precision, PrecisionArgs};
use super::train::PixelOrderArg;
use super::CliResult;
use crate::data::npy::NpyRowWriter;
use crate::data::stream::ExampleSource;
use crate::files::FilePlan;
use crate::model::picture::features_picture;
use crate::model::stack::{StackModel, STACK_OBJECTIVE};
use crate::model::vae::{VaeModel, VAE_OBJECTIVE};
use crate::model::{Forward, ModelFile};
use crate::{Dataset, Real};

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct ApplyArgs {
    /// The model file (safetensors, as `sae train` writes).
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Where to write the result (.npy, one example per row); `-` for standard output.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    precision: PrecisionArgs,
}

#[derive(Debug, Args)]
pub struct VisualizeArgs {
    /// The model file.
    model: PathBuf,
    /// Where to write the picture.
    #[arg(short, long, default_value = "features.png")]
    output: PathBuf,
    /// How an example's values map to image pixels.
    #[arg(long, value_enum, default_value = "row-major")]
    pixel_order: PixelOrderArg,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The model or checkpoint file.
    model: PathBuf,
}

impl ApplyArgs {
    /// Whether the result goes to standard output (`-o -`); messages then go to stderr.
    fn to_stdout(&self) -> bool {
        self.output.as_os_str() == "-"
    }

    /// Prints a message where it does not mix with the result.
    fn say(&self, message: &str) {
        if self.to_stdout() {
            eprintln!("{message}");
        } else {
            println!("{message}");
        }
    }
}

/// What to compute for each example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Apply {
    /// `a2`, `m×h`
    Encode,
    /// `a3`, `m×n`, and the mean squared error `½‖a3 − x‖²`
    Reconstruct,
}

pub fn encode(args: ApplyArgs) -> CliResult<()> {
    apply(args, Apply::Encode)
}

pub fn reconstruct(args: ApplyArgs) -> CliResult<()> {
    apply(args, Apply::Reconstruct)
}

fn apply(args: ApplyArgs, what: Apply) -> CliResult<()> {
    let mut plan = args.data.read_by(FilePlan::new().input("MODEL", &args.model));
    if !args.to_stdout() {
        plan = plan.output("--output", &args.output);
    }
    let _locks = plan.check()?;
    let (precision, _) = args.precision.resolve(args.data.data.as_deref())?;
    args.engine.pool()?.install(|| match precision {
        Precision::F32 => apply_in::<f32>(&args, what),
        Precision::F64 => apply_in::<f64>(&args, what),
    })
}

fn apply_in<T: Real>(args: &ApplyArgs, what: Apply) -> CliResult<()> {
    let model = ModelFile::<T>::load(&args.model)?;
    // A chunk at a time always: applying a model never needs more.
    let (source, description) = args.data.open_stream::<T>()?;
    args.say(&format!("data: {description}"));
    run_apply(args, what, &model, source)
}

fn run_apply<T: Real>(
    args: &ApplyArgs,
    what: Apply,
    model: &ModelFile<T>,
    mut source: impl ExampleSource<T>,
) -> CliResult<()> {
    let (n, h) = (model.hyper.visible(), model.hyper.hidden());
    if source.features() != n {
        return Err(format!("the data has {} features, the model {} inputs", source.features(), n).into());
    }
    let m = source.examples_hint().ok_or("the data's length is not known in advance")?;
    let width = if what == Apply::Encode { h } else { n };
    let mut writer = if args.to_stdout() {
        NpyRowWriter::<T>::to_stdout(m, width)?
    } else {
        NpyRowWriter::<T>::create(&args.output, m, width)?
    };
    let forward = Forward::with_units(&model.parameters, model.hyper.activation(), model.hyper.reconstruction());
    // No chunk is larger than the data, whatever the option says.
    let chunk = args.data.chunk.min(m).max(1);
    let (mut buffer, mut hidden, mut output) = (vec![T::zero(); chunk * n], vec![T::zero(); chunk * h], Vec::new());
    let (mut examples, mut squared_error) = (0, 0.0);
    source.rewind()?;
    loop {
        let read = source.read_chunk(&mut buffer)?;
        if read == 0 {
            break;
        }
        let x = &buffer[..read * n];
        forward.encode(&Dataset::examples_by_features(x, read, n)?, &mut hidden[..read * h])?;
        if what == Apply::Encode {
            writer.write_rows(&hidden[..read * h])?;
        } else {
            output.resize(read * n, T::zero());
            forward.decode(&hidden[..read * h], &mut output)?;
            squared_error += output.iter().zip(x).map(|(a, b)| (a.as_f64() - b.as_f64()).powi(2)).sum::<f64>();
            writer.write_rows(&output)?;
        }
        examples += read;
    }
    writer.finish()?;
    args.say(&match what {
        Apply::Encode => format!("{examples} examples encoded to {} ({examples} × {h})", args.output.display()),
        Apply::Reconstruct => format!(
            "{examples} examples reconstructed to {} ({examples} × {n}); mean ½‖a3 − x‖² = {:.6e}",
            args.output.display(),
            0.5 * squared_error / examples as f64
        ),
    });
    Ok(())
}

pub fn visualize(args: VisualizeArgs) -> CliResult<()> {
    let _locks = FilePlan::new().input("MODEL", &args.model).output("--output", &args.output).check()?;
    let model = ModelFile::<f64>::load(&args.model)?;
    features_picture(&model.parameters, args.pixel_order.into())?.save_png(&args.output)?;
    println!("features of {} hidden units written to {}", model.hyper.hidden(), args.output.display());
    Ok(())
}

pub fn info(args: InfoArgs) -> CliResult<()> {
    let path = &args.model;
    // The file's kind, from its metadata, picks the reader (each checks the file in full).
    let objective = ModelFile::<f64>::read_metadata(path)?.get("objective").cloned().unwrap_or_default();
    println!("{}", path.display());
    match objective.as_str() {
        VAE_OBJECTIVE => {
            let vae = VaeModel::<f64>::load(path)?;
            let shape = vae.shape;
            println!("  variational autoencoder: {:?} units, {:?} decoder", shape.activation, shape.decoder);
            println!(
                "  n = {} inputs, h = {} hidden units, d = {} latent dimensions",
                shape.visible, shape.hidden, shape.latent
            );
            print_metadata(vae.metadata);
        }
        STACK_OBJECTIVE => {
            let stack = StackModel::<f64>::load(path)?;
            let sizes: Vec<String> = stack.shape.sizes.iter().map(usize::to_string).collect();
            println!(
                "  stacked autoencoder with a softmax on top: layers {}, {} classes",
                sizes.join("-"),
                stack.shape.classes
            );
            print_metadata(stack.metadata);
        }
        _ => {
            let model = ModelFile::<f64>::load(path)?;
            let hyper = &model.hyper;
            println!(
                "  autoencoder: {}, {} sparsity penalty",
                super::train::describe_variant(hyper),
                hyper.penalty().name()
            );
            println!("  n = {} inputs, h = {} hidden units", hyper.visible(), hyper.hidden());
            println!("  λ = {}, β = {}, ρ = {}", hyper.lambda(), hyper.beta(), hyper.rho());
            print_metadata(model.metadata);
            for (name, (shape, _)) in &model.extra {
                println!("  tensor {name}: {shape:?}");
            }
        }
    }
    Ok(())
}

/// Every metadata entry, the recorded curves and `rho_hat` (JSON arrays of any length)
/// summarised in a line each (`sae plot` draws them).
fn print_metadata(metadata: impl IntoIterator<Item = (String, String)>) {
    for (key, value) in metadata {
        match summary(&key, &value) {
            Some(summary) => println!("  {key}: {summary}"),
            None => println!("  {key}: {value}"),
        }
    }
}

/// `curve.training`: its length and last point; `curve.validation`: its length and lowest
/// point; `rho_hat`: its length and range. `None` for any other key, or a value of another
/// shape (printed as it is).
fn summary(key: &str, value: &str) -> Option<String> {
    match key {
        "curve.training" => {
            let curve: Vec<(usize, f64)> = serde_json::from_str(value).ok()?;
            let (at, cost) = curve.last()?;
            Some(format!("{} points, the last J = {cost:.6e} at {at}", curve.len()))
        }
        "curve.validation" => {
            let curve: Vec<(usize, f64, f64)> = serde_json::from_str(value).ok()?;
            let (at, reconstruction, cost) = curve.iter().min_by(|a, b| a.2.total_cmp(&b.2))?;
            let lowest = format!("the lowest held-out J = {cost:.6e} (reconstruction {reconstruction:.6e}) at {at}");
            Some(format!("{} points, {lowest}", curve.len()))
        }
        "rho_hat" => {
            let rho_hat: Vec<f64> = serde_json::from_str(value).ok()?;
            let (low, high) =
                rho_hat.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &r| (l.min(r), h.max(r)));
            Some(format!("{} units, from {low:.4e} to {high:.4e}", rho_hat.len()))
        }
        _ => None,
    }
}
