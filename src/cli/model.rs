//! The commands that use a trained model of any kind `sae` writes (autoencoder, VAE, stack,
//! TopK): `sae encode` (the code of each example: the hidden activations, the VAE's latent
//! mean, the stack's top features, a TopK model's activations with zeros off its k latents),
//! `sae reconstruct`, `sae visualize`, `sae sample` (the VAE), `sae info` and `sae metrics`
//! (a TopK model's dictionary metrics on data). Encoding and reconstruction read and write a chunk at a time, so they work on
//! data of any size.

use std::path::PathBuf;

use clap::Args;

use super::args::{by_name, DataArgs, EngineArgs, Precision, PrecisionArgs};
use super::sparse_codes::CsrWriter;
use super::CliResult;
use sae::data::npy::NpyRowWriter;
use sae::data::stream::ExampleSource;
use sae::dictionary::{Selection, TopKModel, TopKObjective, Units, OBJECTIVE as TOPK_OBJECTIVE};
use sae::files::FilePlan;
use sae::model::picture::{feature_tiles, weight_tiles, PixelOrder, TileGrid};
use sae::model::stack::{StackModel, STACK_OBJECTIVE};
use sae::model::vae::{VaeDecoder, VaeModel, VAE_OBJECTIVE};
use sae::model::ModelFile;
use sae::objective::{StackedObjective, VaeObjective};
use sae::{Dataset, Real};

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct ApplyArgs {
    /// The model file (safetensors, as `sae train` writes).
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Where to write the result (.npy, one example per row; with --sparse an .npz); `-` for
    /// standard output.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    precision: PrecisionArgs,
    /// TopK and k-sparse models: keep this many latents per example instead of the model's k
    /// (Makhzani & Frey encode with 3k).
    #[arg(long)]
    k: Option<usize>,
    /// Encoding with a dictionary model (TopK, BatchTopK, ReLU, k-sparse): write the codes as
    /// a sparse m×h matrix, scipy's CSR .npz (scipy.sparse.load_npz; numpy.load gives its
    /// data, indices and indptr arrays), instead of a dense .npy of mostly zeros.
    #[arg(long)]
    sparse: bool,
}

#[derive(Debug, Args)]
pub struct VisualizeArgs {
    /// The model file.
    model: PathBuf,
    /// Where to write the picture.
    #[arg(short, long, default_value = "features.png")]
    output: PathBuf,
    /// How an example's values map to image pixels.
    #[arg(long, value_parser = by_name(&PixelOrder::ALL, PixelOrder::name, PixelOrder::summary),
          default_value = "row-major")]
    pixel_order: PixelOrder,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The variational autoencoder's model file (as `sae train-vae` writes).
    model: PathBuf,
    /// Where to write the samples (.npy, one per row); `-` for standard output.
    #[arg(short, long, default_value = "samples.npy")]
    output: PathBuf,
    /// How many samples.
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Seed of the latent draws z ~ N(0, I).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also draw the samples (the first 256) as a PNG grid (inputs that are square images).
    #[arg(long, value_name = "FILE")]
    picture: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The TopK or k-sparse model file (as `sae train --hidden-layer topk|k-sparse` writes).
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    precision: PrecisionArgs,
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
    if args.sparse && (what == Apply::Reconstruct || args.to_stdout()) {
        return Err("--sparse writes a dictionary's codes to an .npz file: sae encode with -o FILE".into());
    }
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
    let model = match (Loaded::<T>::load(&args.model)?, args.k) {
        (Loaded::TopK(model, _), Some(_)) if model.architecture().selection == Selection::All => {
            return Err("--k: a ReLU sparse autoencoder keeps every positive latent, not a number of them".into())
        }
        (Loaded::TopK(model, _), Some(_)) if model.architecture().selection == Selection::Batch => {
            return Err(format!(
                "--k: a BatchTopK model keeps the latents above its threshold ({}), not a number of them",
                model.threshold()
            )
            .into())
        }
        (Loaded::TopK(model, workspace), Some(k)) => {
            let latents = model.latents();
            Loaded::TopK(
                model.with_k(k).map_err(|_| format!("--k {k}: from 1 to the model's {latents} latents"))?,
                workspace,
            )
        }
        (_, Some(_)) => return Err("--k applies to TopK and k-sparse models".into()),
        (model, None) => model,
    };
    // A chunk at a time always: applying a model never needs more.
    let (source, description) = args.data.open_stream::<T>()?;
    args.say(&format!("data: {description}"));
    run_apply(args, what, &model, source)
}

/// A model file of any kind `sae` writes, read to be applied to examples.
enum Loaded<T: Real> {
    Autoencoder(ModelFile<T>),
    /// The model, and its objective for the encoder and decoder passes.
    Vae(VaeModel<T>, VaeObjective<T>),
    Stack(StackModel<T>),
    /// The model, and its objective's workspace, made for the first chunk and reused.
    TopK(TopKModel<T>, Box<std::cell::RefCell<Option<TopKObjective<T>>>>),
}

impl<T: Real> Loaded<T> {
    /// The file at `path`, read by the reader of its kind (its metadata `objective`).
    fn load(path: &std::path::Path) -> CliResult<Self> {
        let objective = ModelFile::<f64>::read_metadata(path)?.get("objective").cloned().unwrap_or_default();
        Ok(match objective.as_str() {
            VAE_OBJECTIVE => {
                let vae = VaeModel::<T>::load(path)?;
                let objective = VaeObjective::new(vae.shape, 1, 0)?;
                Loaded::Vae(vae, objective)
            }
            STACK_OBJECTIVE => Loaded::Stack(StackModel::load(path)?),
            TOPK_OBJECTIVE => Loaded::TopK(TopKModel::load(path)?, Default::default()),
            _ => Loaded::Autoencoder(ModelFile::load(path)?),
        })
    }

    /// `n`
    fn inputs(&self) -> usize {
        match self {
            Loaded::Autoencoder(model) => model.hyper.visible(),
            Loaded::Vae(vae, _) => vae.shape.visible,
            Loaded::Stack(stack) => stack.shape.sizes[0],
            Loaded::TopK(model, _) => model.visible(),
        }
    }

    /// The values per example of what `what` computes: the code (`h`; the VAE's `d`; the
    /// stack's `h_L`) or the reconstruction (`n`; a stack has none).
    fn width(&self, what: Apply) -> CliResult<usize> {
        Ok(match (self, what) {
            (_, Apply::Reconstruct) => {
                if let Loaded::Stack(_) = self {
                    return Err("a stacked autoencoder with its softmax has no decoder to reconstruct with \
                                (sae encode gives its top layer's features)"
                        .into());
                }
                self.inputs()
            }
            (Loaded::Autoencoder(model), Apply::Encode) => model.hyper.hidden(),
            (Loaded::Vae(vae, _), Apply::Encode) => vae.shape.latent,
            (Loaded::Stack(stack), Apply::Encode) => *stack.shape.sizes.last().expect("at least one layer"),
            (Loaded::TopK(model, _), Apply::Encode) => model.latents(),
        })
    }

    /// What `what` computes for the `rows` examples of `x`, a row of [`width`](Self::width)
    /// values each: the autoencoder's `a2` or `a3`, the VAE's latent mean `μ(x)` or decoder
    /// mean `E[x|z = μ(x)]`, the stack's `a_L`.
    fn apply(&self, what: Apply, x: &[T], rows: usize) -> CliResult<Vec<T>> {
        let n = self.inputs();
        let data = Dataset::examples_by_features(x, rows, n)?;
        Ok(match self {
            Loaded::Autoencoder(model) => {
                let forward = model.forward();
                let mut hidden = vec![T::zero(); rows * model.hyper.hidden()];
                forward.encode(&data, &mut hidden)?;
                if what == Apply::Encode {
                    return Ok(hidden);
                }
                let mut output = vec![T::zero(); rows * n];
                forward.decode(&hidden, &mut output)?;
                output
            }
            Loaded::Vae(vae, objective) => {
                let mean = objective.encode(&vae.theta, x)?;
                match what {
                    Apply::Encode => mean,
                    Apply::Reconstruct => objective.decode(&vae.theta, &mean)?,
                }
            }
            Loaded::Stack(stack) => StackedObjective::features(&stack.shape, &stack.theta, &data),
            Loaded::TopK(model, workspace) => {
                with_codes(model, workspace, &data, |indices, values, slots| match what {
                    Apply::Encode => {
                        let mut codes = vec![T::zero(); rows * model.latents()];
                        sae::dictionary::spread_codes(indices, values, slots, &mut codes);
                        Ok(codes)
                    }
                    Apply::Reconstruct => {
                        let mut output = vec![T::zero(); rows * n];
                        model.decode(indices, values, &mut output)?;
                        Ok(output)
                    }
                })?
            }
        })
    }
}

/// `use_codes` of the codes of `model` (its objective kept in `workspace`, made for the
/// first chunk) for the examples of `data`: each example's latents (`INACTIVE` in unused
/// slots) and values, `slots` per example.
fn with_codes<T: Real, R>(
    model: &TopKModel<T>,
    workspace: &std::cell::RefCell<Option<TopKObjective<T>>>,
    data: &Dataset<'_, T>,
    use_codes: impl FnOnce(&[u32], &[T], usize) -> CliResult<R>,
) -> CliResult<R> {
    let rows = data.examples();
    let mut workspace = workspace.borrow_mut();
    // The first chunk is the largest: the objective made for it serves them all.
    let objective = match workspace.as_mut() {
        Some(objective) if objective.capacity() >= rows => objective,
        _ => workspace.insert(
            TopKObjective::for_model(model, rows).map_err(|e| format!("--chunk {rows} with k = {}: {e}", model.k()))?,
        ),
    };
    objective.encode_only(model.params(), data)?;
    let (indices, values) = objective.codes();
    use_codes(indices, values, objective.slots_per_example())
}

fn run_apply<T: Real>(
    args: &ApplyArgs,
    what: Apply,
    model: &Loaded<T>,
    mut source: impl ExampleSource<T>,
) -> CliResult<()> {
    let n = model.inputs();
    if source.features() != n {
        return Err(format!("the data has {} features, the model {} inputs", source.features(), n).into());
    }
    let width = model.width(what)?;
    if args.sparse {
        return encode_sparse(args, model, source, width);
    }
    let m = source.examples_hint().ok_or("the data's length is not known in advance")?;
    let mut writer = if args.to_stdout() {
        NpyRowWriter::<T>::to_stdout(m, width)?
    } else {
        NpyRowWriter::<T>::create(&args.output, m, width)?
    };
    // No chunk is larger than the data, whatever the option says.
    let chunk = args.data.chunk().min(m).max(1);
    let mut buffer = vec![T::zero(); chunk * n];
    let (mut examples, mut squared_error) = (0, 0.0);
    source.rewind()?;
    loop {
        let read = source.read_chunk(&mut buffer)?;
        if read == 0 {
            break;
        }
        let x = &buffer[..read * n];
        let result = model.apply(what, x, read)?;
        if what == Apply::Reconstruct {
            squared_error += result.iter().zip(x).map(|(a, b)| (a.as_f64() - b.as_f64()).powi(2)).sum::<f64>();
        }
        writer.write_rows(&result)?;
        examples += read;
    }
    writer.finish()?;
    args.say(&match what {
        Apply::Encode => format!("{examples} examples encoded to {} ({examples} × {width})", args.output.display()),
        Apply::Reconstruct => format!(
            "{examples} examples reconstructed to {} ({examples} × {n}); mean ½‖x̂ − x‖² = {:.6e}",
            args.output.display(),
            0.5 * squared_error / examples as f64
        ),
    });
    Ok(())
}

/// `sae encode --sparse`: the codes of the examples of `source`, a chunk at a time, to the
/// CSR `.npz` of [`CsrWriter`].
fn encode_sparse<T: Real>(
    args: &ApplyArgs,
    model: &Loaded<T>,
    mut source: impl ExampleSource<T>,
    latents: usize,
) -> CliResult<()> {
    let Loaded::TopK(model, workspace) = model else {
        return Err("--sparse: the codes of a dictionary model (sae train --hidden-layer topk, batch-topk, relu or \
                    k-sparse); other models' codes are dense"
            .into());
    };
    let n = model.visible();
    let mut writer = CsrWriter::<T>::create(&args.output, latents)?;
    // No chunk is larger than the data, whatever the option says.
    let chunk = args.data.chunk().min(source.examples_hint().unwrap_or(usize::MAX)).max(1);
    let mut buffer = vec![T::zero(); chunk * n];
    source.rewind()?;
    loop {
        let read = source.read_chunk(&mut buffer)?;
        if read == 0 {
            break;
        }
        let data = Dataset::examples_by_features(&buffer[..read * n], read, n)?;
        with_codes(model, workspace, &data, |indices, values, slots| writer.push(indices, values, slots))?;
    }
    let (examples, entries) = writer.finish()?;
    args.say(&format!(
        "{examples} examples encoded to {} (CSR, {examples} × {latents}, {entries} active: {:.2} per example)",
        args.output.display(),
        entries as f64 / examples.max(1) as f64
    ));
    Ok(())
}

pub fn visualize(args: VisualizeArgs) -> CliResult<()> {
    let _locks = FilePlan::new().input("MODEL", &args.model).output("--output", &args.output).check()?;
    let order = args.pixel_order;
    // The first layer's weights, whatever the kind of model: what it looks for in its inputs
    // (a TopK model's decoder rows: its dictionary).
    let (tiles, n, what) = match Loaded::<f64>::load(&args.model)? {
        Loaded::Autoencoder(model) => (feature_tiles(&model.parameters), model.hyper.visible(), "hidden units"),
        Loaded::Vae(vae, _) => (weight_tiles(vae.encoder_weights()), vae.shape.visible, "encoder units"),
        Loaded::Stack(stack) => (weight_tiles(stack.first_layer_weights()), stack.shape.sizes[0], "first-layer units"),
        // A dictionary's atoms are its decoder rows.
        Loaded::TopK(model, _) => {
            let (n, h) = (model.visible(), model.latents());
            (weight_tiles(sae::gemm::MatRef::row_major(model.blocks().w_dec, h, n)), n, "decoder directions")
        }
    };
    TileGrid::for_inputs(n, order)?.draw(&tiles).save_png(&args.output)?;
    println!("features of {} {what} written to {}", tiles.len(), args.output.display());
    Ok(())
}

/// `count` samples of a VAE: the decoder's means `E[x|z]` for `z ~ N(0, I)`.
pub fn sample(args: SampleArgs) -> CliResult<()> {
    let to_stdout = args.output.as_os_str() == "-";
    let mut plan = FilePlan::new().input("MODEL", &args.model);
    if !to_stdout {
        plan = plan.output("--output", &args.output);
    }
    if let Some(picture) = &args.picture {
        plan = plan.output("--picture", picture);
    }
    let _locks = plan.check()?;
    if args.count == 0 {
        return Err("--count 0: at least one sample".into());
    }
    let Loaded::Vae(vae, objective) = Loaded::<f64>::load(&args.model)? else {
        return Err(format!(
            "{}: not a variational autoencoder; only a VAE has a prior to sample from",
            args.model.display()
        )
        .into());
    };
    let n = vae.shape.visible;
    let mut writer = if to_stdout {
        NpyRowWriter::to_stdout(args.count, n)?
    } else {
        NpyRowWriter::create(&args.output, args.count, n)?
    };
    // A chunk of samples at a time: memory does not grow with --count.
    const CHUNK: usize = 4096;
    let mut drawn = Vec::new();
    for start in (0..args.count).step_by(CHUNK) {
        let samples = objective.sample(&vae.theta, start..(start + CHUNK).min(args.count), args.seed)?;
        writer.write_rows(&samples)?;
        if drawn.is_empty() {
            drawn = samples;
        }
    }
    writer.finish()?;
    let say = |message: String| if to_stdout { eprintln!("{message}") } else { println!("{message}") };
    say(format!("{} samples ({} × {n}) written to {}", args.count, args.count, args.output.display()));
    if let Some(picture) = &args.picture {
        // At most PICTURED tiles: a picture of more is no longer looked at.
        const PICTURED: usize = 256;
        let samples = &drawn[..drawn.len().min(PICTURED * n)];
        let tiles: Vec<Vec<f64>> = match vae.shape.decoder {
            // Probabilities in [0, 1], drawn on the [−1, 1] gray scale.
            VaeDecoder::Bernoulli => {
                samples.chunks_exact(n).map(|s| s.iter().map(|p| 2.0 * p - 1.0).collect()).collect()
            }
            // Means of any range: each sample scaled to fill it.
            VaeDecoder::Gaussian => samples
                .chunks_exact(n)
                .map(|s| {
                    let peak = s.iter().fold(0.0f64, |p, v| p.max(v.abs()));
                    s.iter().map(|v| if peak > 0.0 { v / peak } else { 0.0 }).collect()
                })
                .collect(),
        };
        TileGrid::for_inputs(n, PixelOrder::RowMajor)?.draw(&tiles).save_png(picture)?;
        say(format!("the first {} drawn in {}", tiles.len(), picture.display()));
    }
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
        TOPK_OBJECTIVE => {
            let model = TopKModel::<f64>::load(path)?;
            let architecture = model.architecture();
            match architecture.selection {
                Selection::PerExample => {
                    println!("  {}: {} latents, the k largest kept", architecture.describe(), architecture.units.name())
                }
                Selection::Batch => println!(
                    "  {}: {} latents, the k·B largest of a minibatch of B kept in training, those above the \
                     threshold {} after",
                    architecture.describe(),
                    architecture.units.name(),
                    model.threshold()
                ),
                Selection::All => {
                    println!(
                        "  {}: {} latents, {}",
                        architecture.describe(),
                        architecture.units.name(),
                        match architecture.units {
                            Units::Relu => "every positive one kept",
                            Units::Linear => "all of them kept",
                        }
                    )
                }
            }
            println!(
                "  {}, {}",
                if architecture.tied { "tied weights (W_dec = W_enc)" } else { "an encoder and a decoder" },
                if architecture.pre_encoder_bias { "b_dec subtracted before encoding" } else { "z = W_enc x + b_enc" }
            );
            match architecture.selection {
                Selection::All => println!("  n = {} inputs, {} latents", model.visible(), model.latents()),
                _ => println!("  n = {} inputs, {} latents, k = {}", model.visible(), model.latents(), model.k()),
            }
            print_metadata(ModelFile::<f64>::read_metadata(path)?.into_iter().filter(|(key, _)| {
                ![
                    "format",
                    "format_version",
                    "objective",
                    "visible",
                    "latents",
                    "k",
                    "units",
                    "selection",
                    "threshold",
                    "pre_encoder_bias",
                    "tied",
                ]
                .contains(&key.as_str())
            }));
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
            let rho_hat: Vec<f64> = serde_json::from_str(value).ok().filter(|r: &Vec<f64>| !r.is_empty())?;
            let (low, high) =
                rho_hat.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &r| (l.min(r), h.max(r)));
            Some(format!("{} units, from {low:.4e} to {high:.4e}", rho_hat.len()))
        }
        _ => None,
    }
}

pub fn metrics(args: MetricsArgs) -> CliResult<()> {
    let _locks = args.data.read_by(FilePlan::new().input("MODEL", &args.model)).check()?;
    let objective = ModelFile::<f64>::read_metadata(&args.model)?.get("objective").cloned().unwrap_or_default();
    if objective != TOPK_OBJECTIVE {
        return Err(format!(
            "{}: metrics are a TopK or k-sparse model's (sae train --hidden-layer topk|k-sparse); for a sparse autoencoder, sae objective \
             --theta evaluates its cost on data",
            args.model.display()
        )
        .into());
    }
    let (precision, _) = args.precision.resolve(args.data.data.as_deref())?;
    args.engine.pool()?.install(|| match precision {
        Precision::F32 => metrics_in::<f32>(&args),
        Precision::F64 => metrics_in::<f64>(&args),
    })
}

fn metrics_in<T: Real>(args: &MetricsArgs) -> CliResult<()> {
    let model = TopKModel::<T>::load(&args.model)?;
    let (mut source, description) = args.data.open_stream::<T>()?;
    println!("data: {description}");
    let metrics = sae::train::measure_topk(&model, &mut source, args.data.chunk())?;
    println!("loss                  {:.6e}", metrics.loss);
    println!("FVU                   {:.6}", metrics.fvu);
    println!("explained variance    {:.6}", metrics.explained_variance());
    println!("normalised MSE        {:.6}", metrics.normalized_mse);
    println!("L0                    {:.3}", metrics.l0);
    println!("dead latents          {:.3} %", 100.0 * metrics.dead);
    println!(
        "dense latents         {:.3} % (firing on more than {} % of the examples)",
        100.0 * metrics.dense,
        100.0 * sae::train::DENSE_FREQUENCY
    );
    Ok(())
}
