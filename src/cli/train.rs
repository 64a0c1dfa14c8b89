//! `sae train`: L-BFGS training of a sparse autoencoder, from a data file or shards (in
//! memory or streamed) or, without --data, on the embedded natural-image patches; writes the
//! model (safetensors) and a picture of its features.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, ValueEnum};

use super::args::{by_name, Data, DataArgs, EngineArgs, Precision, PrecisionArgs, ScheduleArgs, VariantArgs};
use super::interrupt::{self, Interrupted};
use super::progress::{JsonLog, Progress};
use super::CliResult;
use sae::data::images::embedded_patches;
use sae::data::split::hold_out;
use sae::data::stream::SeekableSource;
use sae::files::FilePlan;
use sae::gemm::Backend;
use sae::model::picture::{features_picture, PixelOrder};
use sae::model::ModelFile;
use sae::objective::distributed::{Alone, Collective, Part, Split};
use sae::objective::StreamingObjective;
use sae::optim::{LbfgsOptions, LbfgsState, StepRule, Stop};
use sae::train::{
    AutoencoderObjective, Checkpoint, DataFingerprint, LbfgsStep, MinibatchOptions, MinibatchState, MinibatchStep,
    MinibatchStop, MinibatchTrainer, Shuffle, StreamedPart, Trainer, Validation, ValidationPoint,
};
use sae::Isa;
use sae::{Dataset, HyperParams, Objective, Parameters, Real};

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// h, the number of hidden units.
    #[arg(help_heading = "Model", long, default_value_t = 25)]
    hidden: usize,
    /// λ, the weight decay.
    #[arg(help_heading = "Model", long, default_value_t = 1e-4)]
    lambda: f64,
    /// β, the weight of the sparsity penalty.
    #[arg(help_heading = "Model", long, default_value_t = 3.0)]
    beta: f64,
    /// ρ, the sparsity target.
    #[arg(help_heading = "Model", long, default_value_t = 0.01)]
    rho: f64,
    #[command(flatten)]
    variant: VariantArgs,
    /// The hidden layer: `units` (the --activation, kept sparse by the --penalty: UFLDL's
    /// sparse autoencoder and its family), or `topk`, a dictionary of --hidden ReLU latents of
    /// which only the --k largest stay active per example (decoder rows of unit norm, b_dec at
    /// the data's geometric median; Adam or SGD, in memory or --stream), or `batch-topk`, the
    /// same keeping the --k × batch largest of each minibatch (k per example on average; the
    /// model then keeps the latents above a threshold learnt as it trains), or `relu`, every
    /// positive latent kept, made sparse by --l1-coefficient (an L1 penalty weighted by the
    /// decoder rows' norms, which are left free), or `k-sparse`,
    /// Makhzani & Frey's k-sparse autoencoder (linear units, tied weights, k lowered from
    /// --k-start).
    #[arg(help_heading = "Model", long, value_enum, default_value = "units")]
    hidden_layer: HiddenLayerArg,
    /// TopK, BatchTopK and k-sparse: the latents active per example (BatchTopK: on average).
    #[arg(help_heading = "Model", long)]
    k: Option<usize>,
    /// TopK and k-sparse: start with this many latents active per example, lowered linearly to
    /// --k over the first half of the steps [default: --k for topk; 4k (at most --hidden) for
    /// k-sparse].
    #[arg(help_heading = "Model", long)]
    k_start: Option<usize>,
    /// TopK: the weight of the auxiliary loss on dead latents, AuxK (OpenAI's is 1/32) [default:
    /// 0, off].
    #[arg(help_heading = "Model", long, value_name = "ALPHA")]
    auxk_alpha: Option<f64>,
    /// Dictionary layers (needed by `relu`): λ of the L1 penalty λ/B Σ a_j ‖W_dec[j]‖ on the
    /// activations, weighted by the decoder rows' norms (against half the squared error).
    #[arg(help_heading = "Model", long, value_name = "LAMBDA")]
    l1_coefficient: Option<f64>,
    /// TopK with AuxK: the dead latents each example's auxiliary loss uses [default: n/2].
    #[arg(help_heading = "Model", long)]
    k_aux: Option<usize>,
    /// TopK: scale the inputs to unit mean squared norm while training (the scale from the first
    /// minibatch, folded into the written model, which applies to the data as it is).
    #[arg(help_heading = "Model", long)]
    normalize_inputs: bool,
    /// TopK and k-sparse: every this many steps, restart the dead latents on the residuals of
    /// badly reconstructed inputs [default: never].
    #[arg(help_heading = "Model", long, value_name = "STEPS")]
    resample_every: Option<u64>,
    /// TopK with AuxK or resampling: a latent is dead once it has not fired on this many
    /// examples in a row [default: 10 million, or the data's examples when fewer].
    #[arg(help_heading = "Model", long, value_name = "EXAMPLES")]
    dead_after: Option<u64>,
    /// The optimiser: full-batch L-BFGS (minFunc's, as UFLDL), or minibatch Adam or SGD with
    /// momentum (rho_hat a running average across minibatches; in memory, or with --stream a
    /// window of blocks at a time) [default: lbfgs; adam for --hidden-layer topk].
    #[arg(help_heading = "Optimiser", long, value_enum)]
    optimizer: Option<OptimizerArg>,
    /// L-BFGS iterations (in all, counting those before a --resume).
    #[arg(help_heading = "Optimiser", long, default_value_t = 400)]
    iterations: usize,
    /// Minibatch training: passes over the data (in all, counting those before a --resume).
    #[arg(help_heading = "Optimiser", long, default_value_t = 10)]
    epochs: usize,
    /// Minibatch training: examples per minibatch.
    #[arg(help_heading = "Optimiser", long, default_value_t = 256)]
    batch_size: usize,
    /// Minibatch training: the learning rate [default: 1e-3].
    #[arg(help_heading = "Optimiser", long)]
    learning_rate: Option<f64>,
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// SGD's momentum.
    #[arg(help_heading = "Optimiser", long, default_value_t = 0.9)]
    momentum: f64,
    /// Minibatch training: μ of the running average of rho_hat across minibatches.
    #[arg(help_heading = "Optimiser", long, default_value_t = 0.9)]
    rho_momentum: f64,
    /// Minibatch training: shuffle blocks of this many consecutive examples, --shuffle-window
    /// blocks at a time, instead of all the examples at once (how streamed data is shuffled;
    /// the same option in memory takes the same steps) [default: 256 when blocks are
    /// shuffled: with --stream or --shuffle-window].
    #[arg(help_heading = "Optimiser", long, value_name = "EXAMPLES")]
    shuffle_block: Option<usize>,
    /// Minibatch training: blocks read into the shuffle buffer at a time (the memory of a
    /// streamed run: window × block examples) [default: 64].
    #[arg(help_heading = "Optimiser", long, value_name = "BLOCKS")]
    shuffle_window: Option<usize>,
    /// L-BFGS correction pairs kept.
    #[arg(help_heading = "Optimiser", long, default_value_t = 100)]
    history: usize,
    /// L-BFGS: converged when every component of the gradient is at most this in absolute
    /// value (minFunc's optTol) [default: 1e-5].
    #[arg(help_heading = "Stopping", long)]
    gtol: Option<f64>,
    /// L-BFGS: converged when the cost, or the step, changes by less than this (minFunc's
    /// progTol) [default: 1e-9].
    #[arg(help_heading = "Stopping", long)]
    ftol: Option<f64>,
    /// Stop after this many seconds of training (checked after each iteration or minibatch;
    /// the data's loading not counted): the model so far is written as for a finished run,
    /// with the stop `time-limit`, and a checkpoint of it continues with --resume.
    #[arg(help_heading = "Stopping", long, value_name = "SECONDS")]
    max_time: Option<f64>,
    /// Start from the parameters of this model file (written by `sae train`) instead of a
    /// random initialisation: fine-tuning, or L-BFGS after Adam. Its n, h, units and tying
    /// must be the run's; λ, β, ρ, the penalty and the corruption may differ.
    #[arg(help_heading = "Optimiser", long, value_name = "MODEL", conflicts_with = "resume")]
    init: Option<PathBuf>,
    #[command(flatten)]
    precision: PrecisionArgs,
    /// Seed of the initial weights (and of the embedded data set).
    #[arg(help_heading = "Optimiser", long, default_value_t = 1)]
    seed: u64,
    /// Where to write the trained model.
    #[arg(help_heading = "Output", short, long, default_value = "model.safetensors")]
    output: PathBuf,
    /// Where to write the picture of the features (skipped when the inputs are not square
    /// images); with --hidden-layer topk, the histogram of the latents' firing frequencies.
    #[arg(help_heading = "Output", long, default_value = "features.png")]
    features: PathBuf,
    /// Do not write the picture of the features.
    #[arg(help_heading = "Output", long)]
    no_features: bool,
    /// How an example's values map to image pixels in the picture.
    #[arg(help_heading = "Output", long, value_parser = by_name(&PixelOrder::ALL, PixelOrder::name, PixelOrder::summary),
          default_value = "row-major")]
    pixel_order: PixelOrder,
    /// Write a checkpoint (model + optimiser state) to this file during training.
    #[arg(help_heading = "Checkpoints", long)]
    checkpoint: Option<PathBuf>,
    /// Iterations (L-BFGS) or minibatch steps between checkpoints [default: 10 iterations, 1000
    /// steps]. A stop or the run's end writes one whatever the count.
    #[arg(help_heading = "Checkpoints", long, requires = "checkpoint")]
    checkpoint_every: Option<usize>,
    /// Continue the run saved in this checkpoint (same data, hyper-parameters and --threads
    /// for a bit-for-bit continuation).
    #[arg(help_heading = "Checkpoints", long)]
    resume: Option<PathBuf>,
    /// Write one JSON object per line to this file, after every L-BFGS iteration (iteration,
    /// cost, gradient_norm, step, evaluations, seconds, examples_per_second) or minibatch epoch
    /// (epoch, steps, cost: the epoch's mean, seconds, examples_per_second; TopK: loss, fvu,
    /// explained_variance, normalized_mse, l0, dead, dense instead of cost); with held-out
    /// data also validation_cost and validation_reconstruction (null where not evaluated).
    #[arg(help_heading = "Output", long, value_name = "FILE")]
    log_json: Option<PathBuf>,
    /// Held-out data (an m×n .npy, read in memory): the objective and its reconstruction term
    /// evaluated there every --validate-every iterations or epochs, printed, logged and kept
    /// in the model file (curve.validation).
    #[arg(long, value_name = "FILE", help_heading = "Validation")]
    validation: Option<PathBuf>,
    /// Hold out this fraction of the data (in memory), chosen at random by --seed, instead of
    /// a --validation file.
    #[arg(long, value_name = "F", conflicts_with = "validation", help_heading = "Validation")]
    validation_fraction: Option<f64>,
    /// Iterations (L-BFGS) or epochs (Adam, SGD) between evaluations of the held-out data
    /// (and after the last) [default: 1].
    #[arg(long, value_name = "N", help_heading = "Validation")]
    validate_every: Option<usize>,
    /// Stop after P evaluations in a row without a lower held-out cost (dictionary layers:
    /// held-out FVU, measured every epoch), and write the model of the lowest one (with or
    /// without an early stop).
    #[arg(long, value_name = "P", help_heading = "Validation")]
    early_stopping: Option<usize>,
    /// Run as one process of an MPI job (`mpirun -np N sae train --distributed …`): the data's
    /// rows split across the processes, each evaluating its share, the steps the same on all;
    /// the first process prints and writes the model and checkpoints. L-BFGS, Adam and SGD, and
    /// the dictionary layers (each minibatch split across the processes), in memory or with
    /// --stream.
    #[cfg(feature = "mpi")]
    #[arg(long, help_heading = "Optimiser")]
    distributed: bool,
    /// The processes of a distributed run (set by it, not an option): recorded in its model
    /// and checkpoints, which only a run on as many processes resumes.
    #[arg(skip)]
    processes: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HiddenLayerArg {
    Units,
    Topk,
    BatchTopk,
    Relu,
    KSparse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OptimizerArg {
    Lbfgs,
    Adam,
    Sgd,
}

#[cfg(feature = "mpi")]
#[path = "train_distributed.rs"]
mod distributed;
#[path = "train_topk.rs"]
mod topk;

impl TrainArgs {
    /// `--checkpoint-every`, or its default: 10 L-BFGS iterations, 1000 minibatch steps (a
    /// step is far cheaper than an iteration over all the data, and a checkpoint of a large
    /// model with its optimiser's moments holds several hundred megabytes).
    pub(super) fn checkpoint_every(&self, minibatch: bool) -> usize {
        self.checkpoint_every.unwrap_or(if minibatch { 1000 } else { 10 })
    }

    /// The optimiser asked for, L-BFGS by default.
    fn optimizer(&self) -> OptimizerArg {
        self.optimizer.unwrap_or(OptimizerArg::Lbfgs)
    }
}

pub fn run(args: TrainArgs) -> CliResult<()> {
    if args.hidden_layer != HiddenLayerArg::Units {
        return run_topk(args);
    }
    if args.k.is_some()
        || args.k_start.is_some()
        || args.auxk_alpha.is_some()
        || args.l1_coefficient.is_some()
        || args.k_aux.is_some()
        || args.dead_after.is_some()
        || args.resample_every.is_some()
        || args.normalize_inputs
    {
        return Err(
            "--k, --k-start, --auxk-alpha, --l1-coefficient, --k-aux, --dead-after, --resample-every and \
             --normalize-inputs are options of the dictionary layers (--hidden-layer topk, batch-topk, relu, k-sparse)"
                .into(),
        );
    }
    check_optimizer_options(&args)?;
    #[cfg(feature = "mpi")]
    if args.distributed {
        return distributed::run(args);
    }
    let _locks = files(&args).check()?;
    let (precision, why) = match &args.resume {
        Some(checkpoint) if !args.precision.f32 && !args.precision.f64 => checkpoint_precision(checkpoint)?,
        _ => args.precision.resolve(args.data.data.as_deref())?,
    };
    let stop = interrupt::on_signal()?;
    args.engine.pool()?.install(|| match precision {
        Precision::F32 => train::<f32>(&args, why, &stop),
        Precision::F64 => train::<f64>(&args, why, &stop),
    })
}

/// `sae train --hidden-layer topk|k-sparse` (see the `topk` module).
fn run_topk(args: TrainArgs) -> CliResult<()> {
    topk::check_options(&args)?;
    check_optimizer_options(&args)?;
    #[cfg(feature = "mpi")]
    if args.distributed {
        return distributed::run_topk(args);
    }
    let _locks = files(&args).check()?;
    let (precision, why) = match &args.resume {
        Some(checkpoint) if !args.precision.f32 && !args.precision.f64 => checkpoint_precision(checkpoint)?,
        _ => args.precision.resolve(args.data.data.as_deref())?,
    };
    let stop = interrupt::on_signal()?;
    args.engine.pool()?.install(|| match precision {
        Precision::F32 => topk::train::<f32>(&args, why, &stop),
        Precision::F64 => topk::train::<f64>(&args, why, &stop),
    })
}

/// Options of the other optimiser than the one asked for are refused before anything is read.
fn check_optimizer_options(args: &TrainArgs) -> CliResult<()> {
    let lbfgs = args.optimizer() == OptimizerArg::Lbfgs && args.hidden_layer == HiddenLayerArg::Units;
    args.schedule.check(!lbfgs)?;
    if !lbfgs && (args.gtol.is_some() || args.ftol.is_some()) {
        return Err("--gtol and --ftol are L-BFGS's tolerances: minibatch training runs its --epochs \
                    (or until --max-time)"
            .into());
    }
    if lbfgs && (args.shuffle_block.is_some() || args.shuffle_window.is_some()) {
        return Err(
            "--shuffle-block and --shuffle-window order minibatches: L-BFGS takes all the data each step".into()
        );
    }
    Ok(())
}

/// The precision a checkpoint's run trained in (its data fingerprint's dtype): a resumed run
/// goes on in it.
fn checkpoint_precision(checkpoint: &std::path::Path) -> CliResult<(Precision, &'static str)> {
    match ModelFile::<f64>::read_metadata(checkpoint)?.get("data.dtype").map(String::as_str) {
        Some("f32") => Ok((Precision::F32, "the checkpoint's")),
        Some("f64") => Ok((Precision::F64, "the checkpoint's")),
        _ => Err(sae::Error::BadCheckpoint {
            path: checkpoint.to_path_buf(),
            field: "data.dtype",
            reason: "missing or not f32/f64: not a checkpoint of this version".into(),
        }
        .into()),
    }
}

/// What the run reads and writes, checked before it starts.
fn files(args: &TrainArgs) -> FilePlan {
    let mut plan = args.data.read_by(FilePlan::new());
    if let Some(path) = &args.init {
        plan = plan.input("--init", path);
    }
    if let Some(path) = &args.resume {
        plan = plan.input_replaced_by("--resume", path, "--checkpoint");
    }
    plan = plan.output("--output", &args.output);
    if !args.no_features {
        plan = plan.output("--features", &args.features);
    }
    if let Some(path) = &args.checkpoint {
        plan = plan.output("--checkpoint", path);
    }
    if let Some(path) = &args.log_json {
        plan = plan.output("--log-json", path);
    }
    plan
}

/// The model so far, and where the run stopped when a signal ended it early.
struct Outcome<T> {
    model: ModelFile<T>,
    interrupted_at: Option<String>,
    /// Why a checkpoint could not be written, which stopped the run (its model kept).
    checkpoint_error: Option<sae::Error>,
}

/// What `sae train` without --data trains on: `m` embedded patches.
fn embedded_description(m: usize) -> String {
    format!("embedded: {m} 8×8 patches of whitened dead-leaves pictures (natural-image statistics)")
}

fn train<T: Real>(args: &TrainArgs, precision_from: &str, stop: &Arc<AtomicBool>) -> CliResult<()> {
    let (mut data, description) = args.data.load::<T>(|| {
        let (patches, m, n) = embedded_patches(args.seed);
        let values = patches.into_iter().map(T::cast).collect();
        Ok((values, m, n, embedded_description(m)))
    })?;
    println!("data: {description}");
    let held_out = held_out_data(args, &mut data)?;
    let n = data.features();
    let hyper = model::<T>(args, n, precision_from, &format!("{} threads", rayon::current_num_threads()))?;
    warn_outside_output_range(&hyper, &data);
    // Minibatch training runs on the native back-end; so do its held-out evaluations.
    let backend = args.engine.backend()?.filter(|_| args.optimizer() == OptimizerArg::Lbfgs);
    let mut provenance = provenance(args, backend);
    // Data in memory is fingerprinted here, once (checkpoints use the same fingerprint);
    // streamed data only when a checkpoint needs it (a pass over the whole source).
    let fingerprint = match &data {
        Data::Values { values, examples, features } => {
            Some(DataFingerprint::of_dataset(&Dataset::examples_by_features(values, *examples, *features)?))
        }
        Data::Source(_) => None,
    };
    provenance.extend(fingerprint.iter().flat_map(DataFingerprint::metadata));
    let held_out = match &held_out {
        Some((values, examples)) => {
            let mut objective = Objective::new(hyper, Dataset::examples_by_features(values, *examples, n)?)?;
            if let Some(backend) = backend {
                objective = objective.with_backend(backend);
            }
            let validation = Validation::new(objective).every(args.validate_every.unwrap_or(1));
            Some(match args.early_stopping {
                Some(patience) => validation.early_stopping(patience),
                None => validation,
            })
        }
        None => None,
    };
    if args.optimizer() != OptimizerArg::Lbfgs {
        let outcome = match data {
            Data::Values { values, examples, features } => {
                let data = Dataset::examples_by_features(&values, examples, features)?;
                let part = MinibatchPart::InMemory(Part::whole(&data));
                fit_minibatch(args, hyper, part, &mut Split::new(Alone), held_out, stop, true)?
            }
            Data::Source(source) => {
                let part = MinibatchPart::Streamed(StreamedPart::whole(source)?.with_chunk(args.data.chunk())?);
                fit_minibatch(args, hyper, part, &mut Split::new(Alone), held_out, stop, true)?
            }
        };
        return save(args, outcome, provenance);
    }
    let trained = match data {
        Data::Values { values, examples, features } => {
            let mut objective = Objective::new(hyper, Dataset::examples_by_features(&values, examples, features)?)?;
            if let Some(backend) = backend {
                objective = objective.with_backend(backend);
            }
            fit(args, hyper, &mut objective, held_out, examples, fingerprint, stop, true)?
        }
        Data::Source(source) => {
            let mode = args.data.stream_mode;
            let examples = source.examples_hint().unwrap_or(0);
            let mut objective = StreamingObjective::new(hyper, source, args.data.chunk(), mode)?;
            if let Some(backend) = backend {
                objective = objective.with_backend(backend);
            }
            fit(args, hyper, &mut objective, held_out, examples, None, stop, true)?
        }
    };
    save(args, trained, provenance)
}

/// The run's model for `n` inputs, printed with the precision (and why), the optimiser and
/// the `workers` it runs on.
fn model<T: Real>(args: &TrainArgs, n: usize, precision_from: &str, workers: &str) -> CliResult<HyperParams> {
    let hyper = args
        .variant
        .apply(HyperParams::builder(n, args.hidden).lambda(args.lambda).beta(args.beta).rho(args.rho))?
        .build()?;
    let optimizer = match args.optimizer() {
        OptimizerArg::Lbfgs => format!("L-BFGS, {} iterations, history {}", args.iterations, args.history),
        other => {
            let schedule = args.schedule.schedule();
            let schedule = if schedule.is_constant() { String::new() } else { format!(" ({})", schedule.describe()) };
            format!("{other:?}{schedule} over {} epochs of minibatches of {}", args.epochs, args.batch_size)
        }
    };
    println!(
        "model: n = {n}, h = {}, {}, {} penalty, λ = {}, β = {}, ρ = {}, {} ({precision_from}); {optimizer}, {workers}",
        args.hidden,
        describe_variant(&hyper),
        hyper.penalty().name(),
        args.lambda,
        args.beta,
        args.rho,
        T::NAME,
    );
    Ok(hyper)
}

/// What a model file records of the run that made it, beside its hyper-parameters and the
/// optimiser's own keys: enough to run it again (results are bit-for-bit the same for the
/// same data, seed, thread count, back-end and instruction set).
fn provenance(args: &TrainArgs, backend: Option<Backend>) -> Vec<(&'static str, String)> {
    let processes = args.processes.map(|p| ("processes", p.to_string()));
    processes
        .into_iter()
        .chain([
            ("seed", args.seed.to_string()),
            ("threads", rayon::current_num_threads().to_string()),
            ("backend", backend.unwrap_or_default().name().to_string()),
            ("isa", Isa::detect().name().to_string()),
            ("command", command_line()),
            ("created", humantime::format_rfc3339_seconds(SystemTime::now()).to_string()),
        ])
        .collect()
}

/// What a checkpoint records of the run beside its state: the keys of [`provenance`] that
/// decide whether a resumed run continues bit-for-bit, and the command.
fn reproduction(args: &TrainArgs) -> CliResult<Vec<(String, String)>> {
    let backend = args.engine.backend()?.filter(|_| args.optimizer() == OptimizerArg::Lbfgs);
    let provenance = provenance(args, backend);
    let kept = provenance
        .into_iter()
        .filter(|(key, _)| ["processes", "seed", "threads", "backend", "isa", "command"].contains(key));
    Ok(kept.map(|(key, value)| (key.to_string(), value)).collect())
}

/// Before resuming the checkpoint at `path` (its metadata read from its header): refuses a
/// run that drops the held-out data the checkpoint's run validated on (its early stopping and
/// curve would be lost; a --validation-fraction also changes the training data), and warns
/// when the thread count, back-end or instruction set differ from the checkpoint's (the
/// continuation is then not bit-for-bit the uninterrupted run).
fn check_resumption(args: &TrainArgs, path: &std::path::Path, validating: bool) -> CliResult<()> {
    let recorded = ModelFile::<f64>::read_metadata(path)?;
    if recorded.contains_key("curve.validation") && !validating {
        return Err("the checkpoint's run validated on held-out data: resume it with the same --validation \
                    or --validation-fraction (and --seed)"
            .into());
    }
    let processes = |recorded: Option<&String>| recorded.map_or("1".to_string(), String::clone);
    let (saved, run) =
        (processes(recorded.get("processes")), processes(args.processes.map(|p| p.to_string()).as_ref()));
    if saved != run {
        return Err(format!(
            "the checkpoint was written by a run on {saved} process(es), this one has {run}: each process's part of \
             the data would differ (resume on {saved})"
        )
        .into());
    }
    warn_of_another_engine(args, &recorded)
}

/// Warns when the thread count, back-end or instruction set of this run differ from those
/// `recorded` in a checkpoint's metadata: the continuation is then not bit-for-bit the
/// uninterrupted run (sums are cut and ordered by them).
fn warn_of_another_engine(args: &TrainArgs, recorded: &BTreeMap<String, String>) -> CliResult<()> {
    for (key, value) in reproduction(args)? {
        match recorded.get(&key) {
            Some(saved) if ["threads", "backend", "isa"].contains(&key.as_str()) && *saved != value => log::warn!(
                "the checkpoint was written with {key} = {saved}, this run has {value}: \
                 the run goes on, but not bit-for-bit as it would have"
            ),
            _ => {}
        }
    }
    Ok(())
}

/// This process's command line, each argument quoted for a POSIX shell where it needs it
/// (read lossily: `env::args` would panic on an argument that is not UTF-8).
fn command_line() -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:=,+-@%".contains(c);
    std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .map(
            |arg| {
                if !arg.is_empty() && arg.chars().all(plain) {
                    arg
                } else {
                    format!("'{}'", arg.replace('\'', "'\\''"))
                }
            },
        )
        .collect::<Vec<_>>()
        .join(" ")
}

/// The held-out examples (values and count) of --validation, or of --validation-fraction
/// taken out of `data`.
fn held_out_data<T: Real>(args: &TrainArgs, data: &mut Data<T>) -> CliResult<Option<(Vec<T>, usize)>> {
    let n = data.features();
    let held_out = match (&args.validation, args.validation_fraction) {
        (Some(path), _) => {
            let (values, examples, features) = super::args::read_examples::<T>(path)?;
            if features != n {
                return Err(format!("--validation {}: {features} features, the data has {n}", path.display()).into());
            }
            (values, examples)
        }
        (None, Some(fraction)) => {
            let Data::Values { values, examples, .. } = data else {
                return Err("--validation-fraction splits data in memory: with --stream give the held-out \
                            data as a file (--validation)"
                    .into());
            };
            let held_out = hold_out(values, n, fraction, args.seed)?;
            let count = held_out.len() / n;
            *examples -= count;
            println!("held out: {count} examples chosen by seed {}, {} left to train on", args.seed, *examples);
            (held_out, count)
        }
        (None, None) if args.early_stopping.is_some() || args.validate_every.is_some() => {
            return Err("--early-stopping and --validate-every watch held-out data: give --validation or \
                        --validation-fraction"
                .into())
        }
        (None, None) => return Ok(None),
    };
    if args.early_stopping == Some(0) {
        return Err("--early-stopping 0: the patience is at least one evaluation".into());
    }
    if args.validate_every == Some(0) {
        return Err("--validate-every 0: at least one iteration or epoch between evaluations".into());
    }
    Ok(Some(held_out))
}

/// Where an L-BFGS run starts: initial parameters, or a checkpoint it resumes.
enum Origin<T> {
    Parameters(Parameters<T>),
    Checkpoint(Box<Checkpoint<LbfgsState, T>>),
}

/// L-BFGS on `objective`, whose data has `examples` examples (for the rate in the JSON log; 0
/// when a stream does not say) and `fingerprint`, when it is known already; `writes`: whether
/// this process writes the checkpoints and the log (all but the first of a distributed run's
/// do not).
#[allow(clippy::too_many_arguments)]
fn fit<T: Real>(
    args: &TrainArgs,
    hyper: HyperParams,
    objective: &mut impl AutoencoderObjective<T>,
    mut validation: Option<Validation<'_, T>>,
    examples: usize,
    fingerprint: Option<DataFingerprint>,
    stop: &Arc<AtomicBool>,
    writes: bool,
) -> CliResult<Outcome<T>> {
    let options = LbfgsOptions {
        max_iterations: args.iterations,
        history: args.history,
        gradient_tolerance: args.gtol.unwrap_or(LbfgsOptions::MINFUNC.gradient_tolerance),
        progress_tolerance: args.ftol.unwrap_or(LbfgsOptions::MINFUNC.progress_tolerance),
        ..LbfgsOptions::MINFUNC
    };
    let mut trainer = Trainer::new(options).stop_when(stop.clone()).annotate_checkpoints(reproduction(args)?);
    if let Some(limit) = time_limit(args)? {
        trainer = trainer.time_limit(limit);
    }
    if let Some(path) = args.checkpoint.as_ref().filter(|_| writes) {
        trainer = trainer.checkpoint_to(path, args.checkpoint_every(false));
    }
    if args.checkpoint.is_some() || args.resume.is_some() {
        // Once, here: a streamed objective reads its whole source for it.
        let fingerprint = match fingerprint {
            Some(fingerprint) => fingerprint,
            None => objective.data_fingerprint()?,
        };
        trainer = trainer.data_fingerprint(fingerprint);
    }
    not_interrupted_yet(stop)?;
    let origin = match &args.resume {
        Some(path) => {
            check_resumption(args, path, validation.is_some())?;
            let checkpoint = trainer.load_checkpoint(objective, path)?;
            println!("resuming {} at iteration {}", path.display(), checkpoint.state.iteration);
            Origin::Checkpoint(Box::new(checkpoint))
        }
        None => Origin::Parameters(initial_parameters::<T>(args, &hyper)?),
    };
    let first = match &origin {
        Origin::Checkpoint(checkpoint) => checkpoint.state.iteration,
        Origin::Parameters(_) => 0,
    };
    let mut log = JsonLog::create(args.log_json.as_deref().filter(|_| writes))?;
    let start = Instant::now();
    let progress = Progress::new(first, args.iterations, "iteration", "evaluations");
    let mut run_evaluations = 0;
    let validating = validation.is_some();
    let report = |it: &LbfgsStep| {
        run_evaluations += it.evaluations;
        if let Some(point) = &it.validation {
            progress.validated(point.cost);
        }
        progress.update(it.iteration, it.f, it.gradient_norm, run_evaluations, it.stopped.is_some());
        if let Some(log) = &mut log {
            let seconds = start.elapsed().as_secs_f64().max(1e-9);
            // A stream that does not know its length has no rate: NaN, written as null.
            let rate = if examples > 0 { (run_evaluations * examples) as f64 / seconds } else { f64::NAN };
            let mut measures = vec![
                ("cost", it.f),
                ("gradient_norm", it.gradient_norm),
                ("step", it.step),
                ("examples_per_second", rate),
            ];
            if validating {
                measures.extend(validation_measures(it.validation));
            }
            log.record(&[("iteration", it.iteration as u64), ("evaluations", run_evaluations as u64)], &measures);
        }
    };
    let trained = match origin {
        Origin::Parameters(init) => trainer.fit_validated(objective, validation.as_mut(), &init, report),
        Origin::Checkpoint(checkpoint) => trainer.resume_from(objective, *checkpoint, validation.as_mut(), report),
    };
    progress.finish();
    if let Some(log) = log {
        log.finish();
    }
    let trained = trained?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "stopped ({}) after {} iterations ({} in this run, {} evaluations) in {seconds:.2} s; cost {:.6e} (from {:.6e})",
        trained.stop,
        trained.iterations,
        trained.iterations - first,
        trained.evaluations,
        trained.cost,
        trained.initial_cost
    );
    report_best(validation.as_ref(), "iteration");
    if let Some(error) = trained.checkpoint_error {
        return Ok(Outcome { model: trained.model, interrupted_at: None, checkpoint_error: Some(error) });
    }
    if trained.stop == Stop::Interrupted {
        let at = format!("iteration {} of {}", trained.iterations, args.iterations);
        return Ok(Outcome { model: trained.model, interrupted_at: Some(at), checkpoint_error: None });
    }
    if !trained.cost.is_finite() {
        return Err(format!("the cost is {}: nothing usable was learned, no model written", trained.cost).into());
    }
    // A resumed run that had already stopped (converged, or no iterations left), or a start
    // (--init) that is already an optimum to the tolerances, has nothing to lower.
    let resumed_finished = args.resume.is_some() && trained.iterations == first;
    let converged_at_start = trained.iterations == first && trained.stop.converged();
    if !resumed_finished && !converged_at_start && trained.cost >= trained.initial_cost {
        return Err(format!(
            "the cost did not decrease from its start ({:.6e}): nothing was learned, no model written \
             (are λ and β of a sensible size, is the data scaled?)",
            trained.initial_cost
        )
        .into());
    }
    Ok(Outcome { model: trained.model, interrupted_at: None, checkpoint_error: None })
}

/// The held-out costs of a JSON log line: NaN (null) where none was evaluated.
fn validation_measures(point: Option<ValidationPoint>) -> [(&'static str, f64); 2] {
    let (cost, reconstruction) = point.map_or((f64::NAN, f64::NAN), |p| (p.cost, p.reconstruction));
    [("validation_cost", cost), ("validation_reconstruction", reconstruction)]
}

/// Prints the best held-out point of the run, if it had held-out data.
fn report_best<T: Real>(validation: Option<&Validation<'_, T>>, unit: &str) {
    if let Some((at, cost)) = validation.and_then(Validation::best) {
        let kept = if validation.and_then(Validation::patience).is_some() { "; the model is its" } else { "" };
        println!("lowest held-out cost {cost:.6e} after {unit} {at}{kept}");
    }
}

/// This process's examples of a minibatch run: in memory, or read from storage.
pub(super) enum MinibatchPart<'a, 'd, T: Real> {
    InMemory(Part<'a, 'd, T>),
    Streamed(StreamedPart<Box<dyn SeekableSource<T> + Send>>),
}

impl<T: Real> MinibatchPart<'_, '_, T> {
    /// `m`, the examples of the whole data set.
    fn examples(&self) -> usize {
        match self {
            MinibatchPart::InMemory(part) => part.examples,
            MinibatchPart::Streamed(part) => part.examples(),
        }
    }
}

/// How minibatches are drawn: blocks (asked for, or streaming), else all examples at once.
fn shuffle(args: &TrainArgs) -> Shuffle {
    match (args.data.stream, args.shuffle_block, args.shuffle_window) {
        (false, None, None) => Shuffle::Full,
        (_, block, window) => Shuffle::Blocks {
            block: block.unwrap_or(Shuffle::DEFAULT_BLOCK),
            window: window.unwrap_or(Shuffle::DEFAULT_WINDOW),
        },
    }
}

/// Adam or SGD on this process's `part` of the data (the whole, with a `split` of one
/// process); `writes` as for [`fit`].
#[allow(clippy::too_many_arguments)]
fn fit_minibatch<T: Real, C: Collective>(
    args: &TrainArgs,
    hyper: HyperParams,
    mut part: MinibatchPart<'_, '_, T>,
    split: &mut Split<C>,
    mut validation: Option<Validation<'_, T>>,
    stop: &Arc<AtomicBool>,
    writes: bool,
) -> CliResult<Outcome<T>> {
    let learning_rate = args.learning_rate.unwrap_or(1e-3);
    let rule = match args.optimizer() {
        OptimizerArg::Sgd => StepRule::sgd(learning_rate, args.momentum),
        _ => StepRule::adam(learning_rate),
    };
    let options = MinibatchOptions {
        rule,
        schedule: args.schedule.schedule(),
        batch_size: args.batch_size,
        epochs: args.epochs,
        rho_momentum: args.rho_momentum,
        seed: args.seed,
        shuffle: shuffle(args),
    };
    let mut trainer =
        MinibatchTrainer::new(hyper, options)?.stop_when(stop.clone()).annotate_checkpoints(reproduction(args)?);
    if let Some(path) = args.checkpoint.as_ref().filter(|_| writes) {
        trainer = trainer.checkpoint_to(path, args.checkpoint_every(true) as u64);
    }
    if let Some(limit) = time_limit(args)? {
        trainer = trainer.time_limit(limit);
    }
    let resumed = match &args.resume {
        Some(path) => {
            check_resumption(args, path, validation.is_some())?;
            let checkpoint: Checkpoint<MinibatchState, T> = match &mut part {
                MinibatchPart::InMemory(part) => trainer.load_checkpoint_split(*part, split, path)?,
                MinibatchPart::Streamed(part) => trainer.load_checkpoint_streamed(part, split, path)?,
            };
            println!("resuming {} in epoch {}", path.display(), checkpoint.state.epoch + 1);
            Some(checkpoint)
        }
        None => None,
    };
    not_interrupted_yet(stop)?;
    let m = part.examples();
    let batches = m.div_ceil(args.batch_size.min(m).max(1));
    let first = resumed.as_ref().map_or(0, |checkpoint| checkpoint.state.epoch * batches + checkpoint.state.batch);
    let validating = validation.is_some();
    let mut log = JsonLog::create(args.log_json.as_deref().filter(|_| writes))?;
    let start = Instant::now();
    // Moves every step; its cost is the mean over the epoch's steps so far.
    let progress = Progress::new(first, args.epochs * batches, "step", "steps");
    let (mut epoch_cost, mut epoch_batches, mut steps, mut examples) = (0.0, 0, 0, 0);
    let mut on_step = |step: &MinibatchStep| {
        epoch_cost += step.cost;
        epoch_batches += 1;
        steps += 1;
        // Every minibatch is full but an epoch's last, which takes what is left.
        let size = args.batch_size.min(m);
        examples += if step.epoch_end { m - (batches - 1) * size } else { size };
        let mean = epoch_cost / epoch_batches as f64;
        if let Some(point) = &step.validation {
            progress.validated(point.cost);
        }
        progress.update(step.step as usize, mean, f64::NAN, steps, step.epoch == args.epochs && step.epoch_end);
        if step.epoch_end {
            if let Some(log) = &mut log {
                let seconds = start.elapsed().as_secs_f64().max(1e-9);
                let mut measures = vec![("cost", mean), ("examples_per_second", examples as f64 / seconds)];
                if validating {
                    measures.extend(validation_measures(step.validation));
                }
                log.record(&[("epoch", step.epoch as u64), ("steps", step.step)], &measures);
            }
            (epoch_cost, epoch_batches) = (0.0, 0);
        }
    };
    let trained = match (resumed, part) {
        (Some(checkpoint), MinibatchPart::InMemory(part)) => {
            trainer.resume_split(part, split, checkpoint, validation.as_mut(), &mut on_step)
        }
        (Some(checkpoint), MinibatchPart::Streamed(part)) => {
            trainer.resume_streamed(part, split, checkpoint, validation.as_mut(), &mut on_step)
        }
        (None, part) => {
            let init = initial_parameters::<T>(args, &hyper)?;
            match part {
                MinibatchPart::InMemory(part) => {
                    trainer.fit_split(part, split, validation.as_mut(), &init, &mut on_step)
                }
                MinibatchPart::Streamed(part) => {
                    trainer.fit_streamed(part, split, validation.as_mut(), &init, &mut on_step)
                }
            }
        }
    };
    progress.finish();
    if let Some(log) = log {
        log.finish();
    }
    let trained = trained?;
    println!(
        "stopped ({}) after {} epochs, {} steps ({steps} in this run) in {:.2} s",
        trained.stop,
        trained.epochs,
        trained.steps,
        start.elapsed().as_secs_f64()
    );
    report_best(validation.as_ref(), "epoch");
    let interrupted_at = (trained.stop == MinibatchStop::Interrupted)
        .then(|| format!("epoch {} of {}, step {}", trained.epochs + 1, args.epochs, trained.steps));
    Ok(Outcome { model: trained.model, interrupted_at, checkpoint_error: trained.checkpoint_error })
}

/// `--max-time` as a duration.
fn time_limit(args: &TrainArgs) -> CliResult<Option<Duration>> {
    args.max_time
        .map(|seconds| {
            Duration::try_from_secs_f64(seconds)
                .map_err(|_| format!("--max-time {seconds}: expected a number of seconds, at least 0").into())
        })
        .transpose()
}

/// Where the run starts: the model of `--init`, checked against the run, or the UFLDL
/// initialisation from `--seed`.
fn initial_parameters<T: Real>(args: &TrainArgs, hyper: &HyperParams) -> CliResult<Parameters<T>> {
    let Some(path) = &args.init else {
        return Ok(Parameters::init(hyper.visible(), hyper.hidden(), args.seed));
    };
    let model = ModelFile::<T>::load(path)?;
    let (saved, run) = (&model.hyper, hyper);
    let fields: [(&str, String, String); 5] = [
        ("n (inputs)", saved.visible().to_string(), run.visible().to_string()),
        ("h (--hidden)", saved.hidden().to_string(), run.hidden().to_string()),
        ("hidden units (--activation)", saved.activation().name().into(), run.activation().name().into()),
        (
            "output (--output-units, --loss)",
            format!("{:?}", saved.reconstruction()),
            format!("{:?}", run.reconstruction()),
        ),
        ("tied weights (--tied)", saved.tied().to_string(), run.tied().to_string()),
    ];
    let differ: Vec<String> = fields
        .iter()
        .filter(|(_, saved, run)| saved != run)
        .map(|(field, saved, run)| format!("{field}: {saved} in the model, {run} in this run"))
        .collect();
    if !differ.is_empty() {
        return Err(format!("--init {}: not a model of this run's shape: {}", path.display(), differ.join("; ")).into());
    }
    println!(
        "starting from {} (cost recorded there: {})",
        path.display(),
        model.metadata.get("cost").map_or("none", String::as_str)
    );
    Ok(model.parameters)
}

/// A signal that came while the data was read and the run prepared ends the command before
/// it has anything to write: the files it would replace are left as they are.
fn not_interrupted_yet(stop: &AtomicBool) -> CliResult<()> {
    if stop.load(Ordering::SeqCst) {
        return Err(Interrupted { kept: "before the first step: nothing was written".into() }.into());
    }
    Ok(())
}

/// The error of a run stopped by a checkpoint it could not write (`error`), once its outputs
/// were written (`written`; `model_written`: the model file itself was): where its model is,
/// and why writing it or its other outputs failed too (a full disk fails both).
fn checkpoint_failed(
    error: &dyn std::fmt::Display,
    written: CliResult<()>,
    model_written: bool,
    output: &Path,
) -> Box<dyn std::error::Error + Send + Sync> {
    let stopped = format!("{error}: the run stopped there");
    match (written, model_written) {
        (Ok(()), _) => format!("{stopped}; its model is in {}", output.display()).into(),
        (Err(failed), true) => {
            format!("{stopped}; its model is in {}, but writing its other outputs failed: {failed}", output.display())
                .into()
        }
        (Err(failed), false) => format!("{stopped}, and writing its model failed too: {failed}").into(),
    }
}

/// Writes the model and its picture; a run ended by a signal is written marked `unfinished`,
/// then reported as [`Interrupted`]; a run ended by a checkpoint it could not write is written,
/// then fails naming the checkpoint.
fn save<T: Real>(args: &TrainArgs, outcome: Outcome<T>, provenance: Vec<(&'static str, String)>) -> CliResult<()> {
    let Outcome { mut model, interrupted_at, checkpoint_error } = outcome;
    // What a streamed run is for: its memory, bounded by its chunks or window.
    if let Some(peak) = super::memory::peak_rss_bytes().filter(|_| args.data.stream) {
        println!("peak RSS  = {:.1} MB", peak as f64 / 1e6);
    }
    model.metadata.extend(provenance.into_iter().map(|(key, value)| (key.to_string(), value)));
    if let Some(init) = &args.init {
        model.metadata.insert("init".into(), init.display().to_string());
    }
    if let Some(at) = &interrupted_at {
        model.metadata.insert("unfinished".into(), format!("interrupted at {at}"));
    }
    let mut model_written = false;
    let mut outputs = || -> CliResult<()> {
        model.save(&args.output)?;
        model_written = true;
        println!("model written to {}", args.output.display());
        if !args.no_features {
            match features_picture(&model.parameters, args.pixel_order) {
                Ok(picture) => {
                    picture.save_png(&args.features)?;
                    println!("features written to {}", args.features.display());
                }
                Err(e) => println!("no picture of the features: {e}"),
            }
        }
        Ok(())
    };
    let written = outputs();
    if let Some(error) = checkpoint_error {
        return Err(checkpoint_failed(&error, written, model_written, &args.output));
    }
    written?;
    match interrupted_at {
        None => Ok(()),
        Some(at) => {
            let mut kept = format!("the model at {at} is in {} (marked unfinished)", args.output.display());
            if let Some(checkpoint) = &args.checkpoint {
                kept += &format!("; continue with --resume {}", checkpoint.display());
            }
            Err(Interrupted { kept }.into())
        }
    }
}

/// Warns when sigmoid output units cannot reach the data: values outside (0, 1) are
/// reconstructed at best as 0 or 1, and a large range makes the cost meaningless. (Data read
/// a chunk at a time is not scanned for this.)
fn warn_outside_output_range<T: Real>(hyper: &HyperParams, data: &Data<T>) {
    let Data::Values { values, .. } = data else {
        return;
    };
    if hyper.reconstruction().is_linear() {
        return;
    }
    let (low, high) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), v| (low.min(v.as_f64()), high.max(v.as_f64())));
    if low < 0.0 || high > 1.0 {
        eprintln!(
            "warning: the data lie in [{low:e}, {high:e}] but sigmoid output units reach only (0, 1): rescale the \
             data to [0, 1] (UFLDL maps it to [0.1, 0.9]) or use --output-units linear"
        );
    }
}

/// The units, loss, tying, contractive weight and corruption of a model, in words.
pub(super) fn describe_variant(hyper: &HyperParams) -> String {
    let mut parts = vec![format!("{} units", hyper.activation().name()), hyper.reconstruction().name().to_string()];
    if hyper.tied() {
        parts.push("tied weights".into());
    }
    if hyper.contractive() > 0.0 {
        parts.push(format!("contractive λ_c = {}", hyper.contractive()));
    }
    if hyper.corruption() != sae::model::Corruption::None {
        parts.push(format!("denoising ({} {})", hyper.corruption().name(), hyper.corruption().level()));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_stopped_by_its_checkpoint_says_where_its_model_is_or_that_writing_it_failed_too() {
        let (error, output) = ("cannot write run.ckpt: no space left", Path::new("out/m.safetensors"));
        assert_eq!(
            checkpoint_failed(&error, Ok(()), true, output).to_string(),
            "cannot write run.ckpt: no space left: the run stopped there; its model is in out/m.safetensors"
        );
        assert_eq!(
            checkpoint_failed(&error, Err("cannot write f.png: no space left".into()), true, output).to_string(),
            "cannot write run.ckpt: no space left: the run stopped there; its model is in out/m.safetensors, \
             but writing its other outputs failed: cannot write f.png: no space left"
        );
        assert_eq!(
            checkpoint_failed(&error, Err("cannot write out/m.safetensors: no space left".into()), false, output)
                .to_string(),
            "cannot write run.ckpt: no space left: the run stopped there, and writing its model failed too: \
             cannot write out/m.safetensors: no space left"
        );
    }
}
