//! Checkpoints of TopK training: the model of that moment (the inputs' scale and the threshold
//! folded in, so that the file is a model every command applies) with everything the next step
//! reads beside it — the raw parameters and Adam's moments (float64 tensors `topk.params`,
//! `topk.first`, `topk.second`), the position and counters (metadata `topk.*`), when each
//! latent last fired and the current epoch's tallies, the best epoch of early stopping — the
//! options that shape the steps (`topk.option.*`) and the data's fingerprint (`data.*`).
//!
//! A checkpoint is read as untrusted input, as the dense trainers' are (see
//! [`super::super::checkpoint`]): every value checked, and its fit to the run; an error names
//! the file and the field.

use std::path::Path;

use super::{trained_model, Tally, TopKOptions};
use crate::dictionary::TopKModel;
use crate::error::Result;
use crate::optim::StepState;
use crate::real::Real;
use crate::train::checkpoint::Fields;
use crate::train::DataFingerprint;

/// Everything the next step of a run reads.
pub(super) struct RunState<T> {
    /// The parameters in the units training sees (the inputs scaled).
    pub params: Vec<T>,
    pub rule: StepState<T>,
    /// Epochs completed, and minibatches of the current one.
    pub epoch: usize,
    pub batch: usize,
    /// `c` of the inputs' scaling, once the first minibatch set it.
    pub input_scale: Option<T>,
    /// The running mean of a batch selection's smallest activation (in the scaled units).
    pub threshold: Option<f64>,
    /// Examples seen, and when each latent last fired (the examples seen after its batch).
    pub seen: u64,
    pub last_fired: Vec<u64>,
    /// The current epoch's tallies so far.
    pub tally: Tally,
    /// With early stopping: the epoch of the lowest held-out FVU, its FVU and its model.
    pub best: Option<(usize, f64, TopKModel<T>)>,
}

impl<T: Real> RunState<T> {
    /// The state before the first step of a run from `init`.
    pub fn start(init: &TopKModel<T>) -> Self {
        let h = init.latents();
        RunState {
            params: init.params().to_vec(),
            rule: StepState::new(init.params().len()),
            epoch: 0,
            batch: 0,
            input_scale: None,
            threshold: None,
            seen: 0,
            last_fired: vec![0; h],
            tally: Tally::new(h),
            best: None,
        }
    }
}

/// The options that shape a run's steps, by name, as text: a checkpoint continues only a run of
/// the same ones. The epochs may grow unless something is scheduled over the run's length (the
/// learning rate, `k` from `k_start`, the resampling, which stops `every` steps before the end).
fn described(options: &TopKOptions) -> [(&'static str, String); 17] {
    let o = options;
    let timed = !o.schedule.is_constant() || o.k_start.is_some() || o.resample_every.is_some();
    let epochs = if timed { o.epochs.to_string() } else { "any".to_string() };
    [
        ("topk.option.rule", format!("{:?}", o.rule)),
        ("topk.option.schedule", o.schedule.describe()),
        ("topk.option.epochs", epochs),
        ("topk.option.batch_size", o.batch_size.to_string()),
        ("topk.option.seed", o.seed.to_string()),
        ("topk.option.shuffle", o.shuffle.to_string()),
        ("topk.option.unit_norm_decoder", o.unit_norm_decoder.to_string()),
        ("topk.option.median_init", o.median_init.to_string()),
        ("topk.option.normalize_inputs", o.normalize_inputs.to_string()),
        ("topk.option.auxk_alpha", o.auxk_alpha.to_string()),
        ("topk.option.k_aux", format!("{:?}", o.k_aux)),
        ("topk.option.k_start", format!("{:?}", o.k_start)),
        ("topk.option.resample_every", format!("{:?}", o.resample_every)),
        ("topk.option.dead_after", format!("{:?}", o.dead_after)),
        ("topk.option.threshold_rate", o.threshold_rate.to_string()),
        ("topk.option.l1_coefficient", o.l1_coefficient.to_string()),
        ("topk.option.early_stopping", format!("{:?}", o.early_stopping)),
    ]
}

/// The fingerprints a checkpoint records: the training data's, and the held-out data's when
/// there is any (its FVU picks early stopping's best epoch).
pub(super) struct Fingerprints {
    /// The whole data set's (of its parts, with several processes: their split is part of it).
    pub data: DataFingerprint,
    pub held_out: Option<DataFingerprint>,
    /// The processes the data is split across.
    pub processes: usize,
}

/// Writes the checkpoint of `state` (a run of `options` from `init`, on the data of
/// `fingerprints`) to `path`, atomically.
pub(super) fn write<T: Real>(
    path: &Path,
    init: &TopKModel<T>,
    options: &TopKOptions,
    state: &RunState<T>,
    fingerprints: &Fingerprints,
    annotations: &[(String, String)],
) -> Result<()> {
    let model = trained_model(init, &state.params, state.input_scale, state.threshold)?;
    let tally = &state.tally;
    let mut metadata: Vec<(&str, String)> = vec![
        ("topk.epoch", state.epoch.to_string()),
        ("topk.batch", state.batch.to_string()),
        ("topk.steps", state.rule.steps.to_string()),
        ("topk.seen", state.seen.to_string()),
        ("topk.processes", fingerprints.processes.to_string()),
        ("topk.tally.examples", tally.examples.to_string()),
        ("topk.tally.active", tally.active.to_string()),
        ("topk.tally.squared_error", tally.squared_error.to_string()),
        ("topk.tally.variance", tally.variance.to_string()),
        ("topk.tally.energy", tally.energy.to_string()),
    ];
    if let Some(scale) = state.input_scale {
        metadata.push(("topk.input_scale", scale.as_f64().to_string()));
    }
    if let Some(threshold) = state.threshold {
        metadata.push(("topk.threshold", threshold.to_string()));
    }
    let counts = |values: &[u64]| values.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let (len, h) = (state.params.len(), init.latents());
    let counted = [
        ("topk.last_fired".to_string(), vec![h], counts(&state.last_fired)),
        ("topk.tally.fired".to_string(), vec![h], counts(&tally.fired)),
    ];
    // The parameters and moments in their own dtype: no wider copy of them is made.
    let mut own: Vec<(String, Vec<usize>, &[T])> = vec![
        ("topk.params".to_string(), vec![len], &state.params),
        ("topk.first".to_string(), vec![len], &state.rule.first),
        ("topk.second".to_string(), vec![len], &state.rule.second),
    ];
    if let Some((epoch, fvu, best)) = &state.best {
        metadata.push(("topk.best_epoch", epoch.to_string()));
        metadata.push(("topk.best_fvu", fvu.to_string()));
        metadata.push(("topk.best_threshold", best.threshold().to_string()));
        own.push(("topk.best".to_string(), vec![len], best.params()));
    }
    let held_out = fingerprints.held_out.iter().flat_map(|held_out| held_out.metadata());
    let metadata = metadata
        .into_iter()
        .chain(described(options))
        .chain(fingerprints.data.metadata())
        .map(|(key, value)| (key.to_string(), value))
        .chain(held_out.map(|(key, value)| (format!("validation.{key}"), value)))
        .collect::<Vec<_>>();
    // The run's annotations, but never in place of a key of the state's, nor in its namespaces
    // (where `read` would take them for state).
    let state_key = |key: &str| {
        ["topk.", "data.", "validation."].iter().any(|prefix| key.starts_with(prefix))
            || metadata.iter().any(|(own, _)| own == key)
    };
    let annotations: Vec<_> = annotations.iter().filter(|(key, _)| !state_key(key)).cloned().collect();
    let mut metadata = metadata;
    metadata.extend(annotations);
    model.save_with_tensors(path, metadata, &counted, &own)
}

/// The state of the checkpoint at `path`, checked against a run of `options` from `init` on
/// `examples` examples (`batches` minibatches an epoch) of the `fingerprints`.
pub(super) fn read<T: Real>(
    path: &Path,
    init: &TopKModel<T>,
    options: &TopKOptions,
    (examples, batches): (usize, usize),
    fingerprints: &Fingerprints,
) -> Result<RunState<T>> {
    let (saved, metadata, tensors) = TopKModel::<T>::load_with_tensors(path, "topk.")?;
    let file = Fields { metadata: &metadata, tensors: &tensors, path };
    let architecture = |m: &TopKModel<T>| format!("{:?}", m.architecture());
    for (field, found, expected) in [
        ("visible", saved.visible().to_string(), init.visible().to_string()),
        ("latents", saved.latents().to_string(), init.latents().to_string()),
        ("k", saved.k().to_string(), init.k().to_string()),
        ("architecture", architecture(&saved), architecture(init)),
    ] {
        if found != expected {
            return Err(file.bad(field, format!("is {found} in the checkpoint's model, {expected} in this run's")));
        }
    }
    for (key, expected) in described(options) {
        let found = file.text(key)?;
        if found != expected {
            return Err(file.bad(key, format!("is {found} in the checkpoint, {expected} in this run")));
        }
    }
    // (Checked before the data, whose fingerprint is of the processes' parts.)
    let processes = file.metadata.get("topk.processes").map_or("1", String::as_str);
    if processes != fingerprints.processes.to_string() {
        let reason = format!(
            "= {processes}: the checkpoint was written by a run on {processes} process(es), this one has {}; each \
             process's part of the data would differ (resume on {processes})",
            fingerprints.processes
        );
        return Err(file.bad("topk.processes", reason));
    }
    file.check_data(&fingerprints.data)?;
    if let Some(held_out) = &fingerprints.held_out {
        for (key, value) in held_out.metadata() {
            let recorded = file.metadata.get(&format!("validation.{key}")).map_or("missing", String::as_str);
            if recorded != value {
                let reason = format!("{key} of the held-out data is {recorded} in the checkpoint, {value} in this run");
                return Err(file.bad("validation.data", reason));
            }
        }
    }

    let (len, h) = (init.params().len(), init.latents());
    // (Values in the model's dtype; a wider one must not overflow it.)
    let narrow = |key: &'static str| -> Result<Vec<T>> {
        let values: Vec<T> = file.tensor(key, &[len])?.into_iter().map(T::cast).collect();
        match values.iter().position(|v| !v.is_finite()) {
            Some(j) => Err(file.bad(key, format!("holds a value beyond {} at {j}", T::NAME))),
            None => Ok(values),
        }
    };
    let params = narrow("topk.params")?;
    let (first, second) = (narrow("topk.first")?, narrow("topk.second")?);
    if let Some(j) = second.iter().position(|&v| v < T::zero()) {
        return Err(file.bad("topk.second", format!("holds {} at {j}: a mean of squares", second[j].as_f64())));
    }
    let counts = |key: &'static str| -> Result<Vec<u64>> {
        let values = file.tensor(key, &[h])?;
        match values.iter().position(|&v| v < 0.0 || v.fract() != 0.0 || v >= (1u64 << 53) as f64) {
            Some(j) => Err(file.bad(key, format!("holds {} at {j}: not a count", values[j]))),
            None => Ok(values.into_iter().map(|v| v as u64).collect()),
        }
    };
    let (seen, last_fired): (u64, Vec<u64>) = (file.count("topk.seen")?, counts("topk.last_fired")?);
    if let Some(j) = last_fired.iter().position(|&last| last > seen) {
        return Err(file.bad("topk.last_fired", format!("= {} at {j}, after the {seen} examples seen", last_fired[j])));
    }

    // The position: a minibatch of an epoch this run reaches, after as many steps and examples
    // (every minibatch of an epoch is full but its last).
    let (epoch, batch, steps): (usize, usize, u64) =
        (file.count("topk.epoch")?, file.count("topk.batch")?, file.count("topk.steps")?);
    if batch >= batches {
        return Err(
            file.bad("topk.batch", format!("= {batch}, past the last of the {batches} minibatches of an epoch"))
        );
    }
    if epoch > options.epochs || (epoch == options.epochs && batch > 0) {
        let reason = format!("= {epoch} (minibatch {batch} next), beyond the {} epochs of this run", options.epochs);
        return Err(file.bad("topk.epoch", reason));
    }
    if u128::from(steps) != epoch as u128 * batches as u128 + batch as u128 {
        let reason = format!("= {steps}, but epoch {epoch} minibatch {batch} comes after as many steps");
        return Err(file.bad("topk.steps", reason));
    }
    let within = (batch * options.batch_size.min(examples)) as u64;
    if u128::from(seen) != epoch as u128 * examples as u128 + u128::from(within) {
        let reason = format!("= {seen}, but epoch {epoch} minibatch {batch} comes after another count of examples");
        return Err(file.bad("topk.seen", reason));
    }

    let input_scale = match (file.metadata.get("topk.input_scale"), options.normalize_inputs) {
        (None, false) => None,
        (None, true) if steps == 0 => None,
        (None, true) => {
            return Err(file.bad("topk.input_scale", "is missing: the inputs are scaled from the first step"))
        }
        (Some(_), false) => {
            return Err(file.bad("topk.input_scale", "is present, but this run does not scale its inputs"))
        }
        (Some(_), true) => {
            let scale = T::cast(file.finite("topk.input_scale")?);
            if !(scale > T::zero() && scale.is_finite()) {
                return Err(file.bad("topk.input_scale", format!("= {}: a scale is positive", scale.as_f64())));
            }
            Some(scale)
        }
    };
    let threshold = match file.metadata.get("topk.threshold") {
        None => None,
        Some(_) => Some(file.finite("topk.threshold")?),
    };
    let tally = Tally {
        examples: file.count("topk.tally.examples")?,
        active: file.count("topk.tally.active")?,
        squared_error: file.finite("topk.tally.squared_error")?,
        variance: file.finite("topk.tally.variance")?,
        energy: file.finite("topk.tally.energy")?,
        fired: counts("topk.tally.fired")?,
    };
    if tally.examples as u64 != within {
        let reason = format!("= {}, but minibatch {batch} comes after {within}", tally.examples);
        return Err(file.bad("topk.tally.examples", reason));
    }
    if let Some(j) = tally.fired.iter().position(|&fired| fired > within) {
        let reason = format!("= {} at {j}, above the epoch's {within} examples so far", tally.fired[j]);
        return Err(file.bad("topk.tally.fired", reason));
    }
    let best = match (file.metadata.get("topk.best_epoch"), options.early_stopping) {
        (None, _) => None,
        (Some(_), None) => return Err(file.bad("topk.best_epoch", "is present, but this run does not stop early")),
        (Some(_), Some(_)) => {
            let chosen: usize = file.count("topk.best_epoch")?;
            if chosen == 0 || chosen > epoch {
                return Err(file.bad("topk.best_epoch", format!("= {chosen}, not one of the {epoch} epochs completed")));
            }
            // (A held-out FVU may be NaN: the worst, kept until a number replaces it.)
            let fvu = file.text("topk.best_fvu")?;
            let fvu = fvu.parse::<f64>().ok().filter(|fvu| fvu.is_finite() || fvu.is_nan());
            let fvu = fvu.ok_or_else(|| file.bad("topk.best_fvu", "is not a finite number or NaN"))?;
            let threshold = file.finite("topk.best_threshold")?;
            let model = TopKModel::from_params(init.visible(), h, init.k(), narrow("topk.best")?)
                .and_then(|model| model.with_architecture(init.architecture()))
                .and_then(|model| model.with_threshold(threshold))
                .map_err(|e| file.bad("topk.best", format!("is not a model of this run's: {e}")))?;
            Some((chosen, fvu, model))
        }
    };
    let rule = StepState { first, second, steps };
    Ok(RunState { params, rule, epoch, batch, input_scale, threshold, seen, last_fired, tally, best })
}
