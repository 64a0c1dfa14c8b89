//! `sae train --hidden-layer topk|batch-topk|relu|k-sparse`: a TopK sparse autoencoder (a
//! dictionary of `--hidden` latents, `--k` active per example, or on average over each minibatch
//! with BatchTopK; every positive one, kept sparse by an L1 penalty, with ReLU) or Makhzani &
//! Frey's k-sparse autoencoder (linear units, tied weights), trained by Adam or SGD, in memory or
//! streamed, in one process or (`--distributed`, see `train_distributed.rs`) across the
//! processes of an MPI job; prints each epoch's metrics and writes the model and a histogram of
//! the latents' firing frequencies.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use super::super::interrupt::Interrupted;
use super::super::progress::JsonLog;
use super::super::CliResult;
use super::{reproduction, shuffle, time_limit, warn_of_another_engine, HiddenLayerArg, OptimizerArg, TrainArgs};
use crate::cli::args::Data;
use sae::data::images::embedded_patches;
use sae::data::Layout;
use sae::dictionary::{Architecture, TopKModel};
use sae::objective::distributed::{agree, Alone, Collective, Part};
use sae::optim::StepRule;
use sae::train::{MinibatchStop, StreamedPart, TopKEpoch, TopKOptions, TopKTrained, TopKTrainer};
use sae::{Dataset, HyperParams, Real};

/// Refuses, by name, the options of the sparse autoencoder that a TopK layer has no use for,
/// and bad TopK options, before anything is read.
pub(super) fn check_options(args: &TrainArgs) -> CliResult<()> {
    if args.hidden_layer == HiddenLayerArg::KSparse && args.l1_coefficient.is_some() {
        return Err(
            "--l1-coefficient: the L1 penalty is on ReLU activations; a k-sparse layer's units are linear".into()
        );
    }
    if args.hidden_layer == HiddenLayerArg::Relu {
        if args.k.is_some() || args.k_start.is_some() {
            return Err("--k, --k-start: a ReLU layer keeps every positive latent; its sparsity is \
                        --l1-coefficient"
                .into());
        }
        if args.l1_coefficient.is_none() {
            return Err("--hidden-layer relu needs --l1-coefficient, the weight of its sparsity penalty".into());
        }
    }
    let Some(k) = model_k(args) else {
        return Err(format!("--hidden-layer {} needs --k, the latents active per example", layer_name(args)).into());
    };
    if args.early_stopping == Some(0) {
        return Err("--early-stopping 0: the patience is at least one epoch".into());
    }
    if args.optimizer == Some(OptimizerArg::Lbfgs) {
        return Err("a TopK layer is trained by minibatches: --optimizer adam (the default) or sgd".into());
    }
    if k == 0 || k > args.hidden {
        return Err(format!("--k {k}: from 1 to the --hidden {} latents", args.hidden).into());
    }
    if let Some(k_start) = args.k_start.filter(|&k_start| k_start < k || k_start > args.hidden) {
        return Err(format!("--k-start {k_start}: from --k {k} to the --hidden {} latents", args.hidden).into());
    }
    if args.auxk_alpha.is_none() && args.k_aux.is_some() {
        return Err("--k-aux shapes the auxiliary loss: add --auxk-alpha (1/32 = 0.03125 is the usual)".into());
    }
    if args.auxk_alpha.is_none() && args.resample_every.is_none() && args.dead_after.is_some() {
        return Err("--dead-after tells which latents are dead for --auxk-alpha or --resample-every: add one".into());
    }
    TopKTrainer::new(options(args))?;
    time_limit(args)?;
    let plain = args.variant.apply(HyperParams::builder(1, 1))?.build()?.is_plain();
    let unused = [
        (args.lambda != 1e-4 || args.beta != 3.0 || args.rho != 0.01, "--lambda, --beta and --rho"),
        (
            !plain,
            "the variant options (--penalty, --activation, --reconstruction, --contractive, --tied, --corruption)",
        ),
        (args.init.is_some(), "--init"),
        (args.validate_every.is_some(), "--validate-every (held-out data is measured after every epoch)"),
        (args.iterations != 400 || args.history != 100, "L-BFGS's --iterations and --history"),
        (args.rho_momentum != 0.9, "--rho-momentum (the KL penalty's running rho_hat)"),
        (args.engine.backend()?.is_some(), "--backend (TopK runs on the native GEMM)"),
    ];
    match unused.iter().find(|(given, _)| *given) {
        Some((_, what)) => Err(format!("{what}: not used by a TopK layer (its sparsity is --k)").into()),
        None => Ok(()),
    }
}

/// `topk`, `batch-topk`, `relu` or `k-sparse`.
fn layer_name(args: &TrainArgs) -> &'static str {
    match args.hidden_layer {
        HiddenLayerArg::KSparse => "k-sparse",
        HiddenLayerArg::BatchTopk => "batch-topk",
        HiddenLayerArg::Relu => "relu",
        _ => "topk",
    }
}

/// The model's `k`: `--k`, or every latent for a ReLU layer.
fn model_k(args: &TrainArgs) -> Option<usize> {
    match args.hidden_layer {
        HiddenLayerArg::Relu => Some(args.hidden),
        _ => args.k,
    }
}

/// The model's architecture.
fn architecture(args: &TrainArgs) -> Architecture {
    match args.hidden_layer {
        HiddenLayerArg::KSparse => Architecture::K_SPARSE,
        HiddenLayerArg::BatchTopk => Architecture::BATCH_TOPK,
        HiddenLayerArg::Relu => Architecture::RELU,
        _ => Architecture::TOPK,
    }
}

/// The run's training options.
fn options(args: &TrainArgs) -> TopKOptions {
    let learning_rate = args.learning_rate.unwrap_or(1e-3);
    let k = model_k(args).unwrap_or(1);
    let base = match args.hidden_layer {
        HiddenLayerArg::KSparse => TopKOptions::k_sparse(args.k_start.unwrap_or(k.saturating_mul(4).min(args.hidden))),
        HiddenLayerArg::Relu => TopKOptions::relu(0.0),
        _ => TopKOptions { k_start: args.k_start, ..TopKOptions::default() },
    };
    TopKOptions {
        rule: match args.optimizer {
            Some(OptimizerArg::Sgd) => StepRule::sgd(learning_rate, args.momentum),
            _ => StepRule::adam(learning_rate),
        },
        schedule: args.schedule.schedule(),
        batch_size: args.batch_size,
        epochs: args.epochs,
        seed: args.seed,
        shuffle: shuffle(args),
        auxk_alpha: args.auxk_alpha.unwrap_or(0.0),
        k_aux: args.k_aux,
        dead_after: args.dead_after,
        resample_every: args.resample_every,
        normalize_inputs: args.normalize_inputs,
        l1_coefficient: args.l1_coefficient.unwrap_or(0.0),
        early_stopping: args.early_stopping,
        ..base
    }
}

/// This process's rows of the data set: all of them, or with `--distributed` its share.
pub(super) struct Rows<T> {
    pub data: Data<T>,
    /// The first row's index in the whole data set, and the whole's examples.
    pub first: usize,
    pub examples: usize,
}

/// Trains on all the data, in this process.
pub(super) fn train<T: Real>(args: &TrainArgs, precision_from: &str, stop: &Arc<AtomicBool>) -> CliResult<()> {
    let (mut data, description) = args.data.load::<T>(|| {
        let (patches, m, n) = embedded_patches(args.seed);
        Ok((patches.into_iter().map(T::cast).collect(), m, n, super::embedded_description(m)))
    })?;
    println!("data: {description}");
    let held_out = super::held_out_data(args, &mut data)?.map(|(values, _)| values);
    let examples = match &data {
        Data::Values { examples, .. } => *examples,
        Data::Source(source) => source.examples_hint().unwrap_or(0),
    };
    let workers = format!("{} threads", rayon::current_num_threads());
    train_on(args, precision_from, stop, Rows { data, first: 0, examples }, held_out, &Alone, &workers)
}

/// Trains on `rows`, this process's of the processes of `collective` (of [`Alone`]: all of
/// them), measuring each epoch on `held_out`; the first process prints, logs and writes the
/// model.
pub(super) fn train_on<T: Real, C: Collective>(
    args: &TrainArgs,
    precision_from: &str,
    stop: &Arc<AtomicBool>,
    rows: Rows<T>,
    held_out: Option<Vec<T>>,
    collective: &C,
    workers: &str,
) -> CliResult<()> {
    let k = model_k(args).expect("checked by check_options");
    let root = collective.rank() == 0;
    let Rows { data, first, examples } = rows;
    let n = match &data {
        Data::Values { features, .. } => *features,
        Data::Source(source) => source.features(),
    };
    let options = options(args);
    let (rule, learning_rate) = (options.rule, args.learning_rate.unwrap_or(1e-3));
    let architecture = architecture(args);
    println!(
        "model: {}, n = {n}, {} latents, {}{}, {} ({precision_from}); {} at {learning_rate}{} over {} epochs \
         of minibatches of {}{}, b_dec at the geometric median{}; {}",
        architecture.describe(),
        args.hidden,
        match args.hidden_layer {
            HiddenLayerArg::Relu => format!("L1 λ = {}", options.l1_coefficient),
            _ => format!("k = {k}"),
        },
        options.k_start.filter(|&k_start| k_start != k).map_or(String::new(), |k_start| format!(" (from {k_start})")),
        T::NAME,
        rule.name(),
        if options.schedule.is_constant() { String::new() } else { format!(" ({})", options.schedule.describe()) },
        args.epochs,
        args.batch_size,
        if options.unit_norm_decoder { ", unit-norm decoder" } else { "" },
        if options.auxk_alpha > 0.0 { format!(", AuxK α = {}", options.auxk_alpha) } else { String::new() }
            + &options
                .resample_every
                .map_or(String::new(), |every| format!(", dead latents resampled every {every} steps")),
        workers
    );
    let init = TopKModel::<T>::init(n, args.hidden, k, args.seed)?.with_architecture(architecture)?;
    let mut trainer = TopKTrainer::new(options)?.stop_when(stop.clone()).annotate_checkpoints(reproduction(args)?);
    if let Some(limit) = time_limit(args)? {
        trainer = trainer.time_limit(limit);
    }
    if let Some(path) = &args.checkpoint {
        trainer = trainer.checkpoint_to(path, args.checkpoint_every(true) as u64);
    }
    if let Some(path) = &args.resume {
        let recorded = sae::model::ModelFile::<f64>::read_metadata(path)?;
        let epoch = recorded.get("topk.epoch").cloned().ok_or_else(|| {
            format!("--resume {}: not a checkpoint of a dictionary layer (no topk.epoch)", path.display())
        })?;
        if root {
            warn_of_another_engine(args, &recorded)?;
        }
        println!("resuming {} after {epoch} epochs", path.display());
        trainer = trainer.resuming_from(path);
    }
    let mut log = if root { JsonLog::create(args.log_json.as_deref())? } else { None };
    let started = Instant::now();
    let mut examples_seen = 0usize;
    let on_epoch = |finished: &TopKEpoch| {
        let epoch = &finished.metrics;
        examples_seen += examples;
        let rate = examples_seen as f64 / started.elapsed().as_secs_f64();
        let held_out = finished
            .held_out
            .as_ref()
            .map_or(String::new(), |held_out| format!("  held-out FVU {:.5}  L0 {:.2}", held_out.fvu, held_out.l0));
        println!(
            "epoch {:4}  loss {:.6e}  FVU {:.5}  L0 {:.2}  dead {:.2} %  dense {:.2} %{held_out}  {:.0} examples/s",
            finished.epoch,
            epoch.loss,
            epoch.fvu,
            epoch.l0,
            100.0 * epoch.dead,
            100.0 * epoch.dense,
            rate
        );
        if let Some(log) = log.as_mut() {
            log.record(
                &[("epoch", finished.epoch as u64), ("steps", finished.steps)],
                &[
                    ("loss", epoch.loss),
                    ("fvu", epoch.fvu),
                    ("explained_variance", epoch.explained_variance()),
                    ("normalized_mse", epoch.normalized_mse),
                    ("l0", epoch.l0),
                    ("dead", epoch.dead),
                    ("dense", epoch.dense),
                    ("examples_per_second", rate),
                ]
                .into_iter()
                .chain(finished.held_out.iter().flat_map(|held_out| {
                    [("held_out_loss", held_out.loss), ("held_out_fvu", held_out.fvu), ("held_out_l0", held_out.l0)]
                }))
                .collect::<Vec<_>>(),
            );
        }
    };
    let held_out = held_out.as_deref();
    let trained = match data {
        Data::Values { values, examples: local, features } => {
            // (Scanned by the trainer, which tells every process of a bad value.)
            let data = match local {
                0 => None,
                _ => {
                    Some(Dataset::unscanned(&values[..local * features], local, features, Layout::ExamplesByFeatures)?)
                }
            };
            let part = Part { data: data.as_ref(), first_example: first, examples };
            trainer.fit_split(part, held_out, collective, init, on_epoch)?
        }
        Data::Source(source) => {
            let part = StreamedPart::new(source, first, examples).and_then(|part| part.with_chunk(args.data.chunk()));
            let part = agree(collective, part, "checking its part of the data")?;
            trainer.fit_streamed_split(part, held_out, collective, init, on_epoch)?
        }
    };
    if let Some(log) = log {
        log.finish();
    }
    if !root {
        return Ok(());
    }
    save(args, trained)
}

/// Writes the model and the histogram of the last epoch's firing frequencies.
fn save<T: Real>(args: &TrainArgs, trained: TopKTrained<T>) -> CliResult<()> {
    if let Some(peak) = super::super::memory::peak_rss_bytes().filter(|_| args.data.stream) {
        println!("peak RSS  = {:.1} MB", peak as f64 / 1e6);
    }
    println!("stopped after {} steps: {}", trained.steps, trained.stop);
    let mut metadata = vec![
        ("optimizer", if args.optimizer == Some(OptimizerArg::Sgd) { "sgd" } else { "adam" }.to_string()),
        ("learning_rate", args.learning_rate.unwrap_or(1e-3).to_string()),
        ("lr_schedule", args.schedule.schedule().describe()),
        ("batch_size", args.batch_size.to_string()),
        ("epochs", trained.epochs_completed.to_string()),
        ("steps", trained.steps.to_string()),
        ("stop", trained.stop.name().to_string()),
        ("seed", args.seed.to_string()),
        ("threads", rayon::current_num_threads().to_string()),
        ("isa", sae::Isa::detect().name().to_string()),
        ("command", super::command_line()),
        ("created", humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()),
    ];
    if let Some(processes) = args.processes {
        metadata.push(("processes", processes.to_string()));
    }
    if let Some(alpha) = args.auxk_alpha {
        metadata.push(("auxk_alpha", alpha.to_string()));
    }
    if let Some(lambda) = args.l1_coefficient {
        metadata.push(("l1_coefficient", lambda.to_string()));
    }
    if let Some(every) = args.resample_every {
        metadata.push(("resample_every", every.to_string()));
    }
    if let Some(k_start) = options(args).k_start {
        metadata.push(("k_start", k_start.to_string()));
    }
    // The epoch whose model is written: with early stopping the one of the lowest held-out FVU.
    let written = match trained.chosen_epoch {
        Some(chosen) => {
            println!("model of epoch {chosen}, the lowest held-out FVU");
            metadata.push(("chosen_epoch", chosen.to_string()));
            trained.epochs.iter().find(|epoch| epoch.epoch == chosen)
        }
        None => trained.epochs.last(),
    };
    if let Some(last) = written {
        // (A minibatch of one example has no variance: its FVU is not a number, and not kept.)
        let measured = [("fvu", last.metrics.fvu), ("l0", last.metrics.l0), ("dead", last.metrics.dead)];
        metadata.extend(measured.into_iter().filter(|(_, v)| v.is_finite()).map(|(key, v)| (key, v.to_string())));
    }
    let mut model_written = false;
    let outputs = || -> CliResult<()> {
        trained
            .model
            .save_with_metadata(&args.output, metadata.into_iter().map(|(key, value)| (key.to_string(), value)))?;
        model_written = true;
        println!("model written to {}", args.output.display());
        if let (false, Some(last)) = (args.no_features, written) {
            let picture = super::super::plot::frequency_histogram(&last.metrics.frequencies, 900, 450)
                .map_err(|e| format!("drawing {}: {e}", args.features.display()))?;
            picture.save_png(&args.features)?;
            println!("latent frequencies written to {}", args.features.display());
        }
        Ok(())
    };
    let written = outputs();
    if let Some(error) = &trained.checkpoint_error {
        return Err(super::checkpoint_failed(error, written, model_written, &args.output));
    }
    written?;
    match trained.stop {
        MinibatchStop::Interrupted => Err(Interrupted {
            kept: match trained.chosen_epoch {
                Some(chosen) => {
                    format!("the model of epoch {chosen} (the lowest held-out FVU) is in {}", args.output.display())
                }
                None => format!("the model after {} steps is in {}", trained.steps, args.output.display()),
            } + &args
                .checkpoint
                .as_ref()
                .map_or(String::new(), |path| format!("; --resume {} continues the run", path.display())),
        }
        .into()),
        _ => Ok(()),
    }
}
