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
/// the same ones (the epochs may grow, unless the learning rate is scheduled).
fn described(options: &TopKOptions) -> [(&'static str, String); 17] {
    let o = options;
    let epochs = if o.schedule.is_constant() { "any".to_string() } else { o.epochs.to_string() };
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

/// Writes the checkpoint of `state` (a run of `options` from `init`, on the data of
/// `fingerprint`) to `path`, atomically.
pub(super) fn write<T: Real>(
    path: &Path,
    init: &TopKModel<T>,
    options: &TopKOptions,
    state: &RunState<T>,
    fingerprint: &DataFingerprint,
) -> Result<()> {
    let model = trained_model(init, &state.params, state.input_scale, state.threshold)?;
    let tally = &state.tally;
    let mut metadata: Vec<(&str, String)> = vec![
        ("topk.epoch", state.epoch.to_string()),
        ("topk.batch", state.batch.to_string()),
        ("topk.steps", state.rule.steps.to_string()),
        ("topk.seen", state.seen.to_string()),
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
    let wide = |values: &[T]| values.iter().map(|v| v.as_f64()).collect::<Vec<f64>>();
    let counts = |values: &[u64]| values.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let (len, h) = (state.params.len(), init.latents());
    let mut tensors = vec![
        ("topk.params".to_string(), vec![len], wide(&state.params)),
        ("topk.first".to_string(), vec![len], wide(&state.rule.first)),
        ("topk.second".to_string(), vec![len], wide(&state.rule.second)),
        ("topk.last_fired".to_string(), vec![h], counts(&state.last_fired)),
        ("topk.tally.fired".to_string(), vec![h], counts(&tally.fired)),
    ];
    if let Some((epoch, fvu, best)) = &state.best {
        metadata.push(("topk.best_epoch", epoch.to_string()));
        metadata.push(("topk.best_fvu", fvu.to_string()));
        metadata.push(("topk.best_threshold", best.threshold().to_string()));
        tensors.push(("topk.best".to_string(), vec![len], wide(best.params())));
    }
    let metadata = metadata
        .into_iter()
        .chain(described(options))
        .chain(fingerprint.metadata())
        .map(|(key, value)| (key.to_string(), value));
    model.save_with_tensors(path, metadata, &tensors)
}

/// The state of the checkpoint at `path`, checked against a run of `options` from `init` on
/// `examples` examples (`batches` minibatches an epoch) whose fingerprint is `fingerprint`.
pub(super) fn read<T: Real>(
    path: &Path,
    init: &TopKModel<T>,
    options: &TopKOptions,
    batches: usize,
    fingerprint: &DataFingerprint,
) -> Result<RunState<T>> {
    let (saved, metadata, tensors) = TopKModel::<T>::load_with_tensors(path, "topk.")?;
    let file = Fields { metadata: &metadata, tensors: &tensors, path };
    let shape = |m: &TopKModel<T>| (m.visible(), m.latents(), m.k(), m.architecture());
    if shape(&saved) != shape(init) {
        return Err(file.bad(
            "latents",
            format!(
                "the checkpoint's model is {:?}, this run's {:?} (n, h, k, architecture)",
                shape(&saved),
                shape(init)
            ),
        ));
    }
    for (key, expected) in described(options) {
        let found = file.text(key)?;
        if found != expected {
            return Err(file.bad(key, format!("is {found} in the checkpoint, {expected} in this run")));
        }
    }
    file.check_data(fingerprint)?;

    let (len, h) = (init.params().len(), init.latents());
    let narrow = |values: Vec<f64>| values.into_iter().map(T::cast).collect::<Vec<T>>();
    let params = narrow(file.tensor("topk.params", &[len])?);
    let (first, second) = (file.tensor("topk.first", &[len])?, file.tensor("topk.second", &[len])?);
    if let Some(j) = second.iter().position(|&v| v < 0.0) {
        return Err(file.bad("topk.second", format!("holds {} at {j}: a mean of squares", second[j])));
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

    // The position: a minibatch of an epoch this run reaches, after as many steps.
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
        return Err(
            file.bad("topk.steps", format!("= {steps}, but epoch {epoch} minibatch {batch} comes after as many steps"))
        );
    }

    let input_scale = match file.metadata.get("topk.input_scale") {
        None => None,
        Some(_) => {
            let scale = file.finite("topk.input_scale")?;
            if scale <= 0.0 {
                return Err(file.bad("topk.input_scale", format!("= {scale}: a scale is positive")));
            }
            Some(T::cast(scale))
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
    let best = match file.metadata.get("topk.best_epoch") {
        None => None,
        Some(_) => {
            let epoch: usize = file.count("topk.best_epoch")?;
            // (A held-out FVU may be NaN: the worst, kept until a number replaces it.)
            let fvu = file.text("topk.best_fvu")?;
            let fvu: f64 = fvu.parse().map_err(|_| file.bad("topk.best_fvu", format!("= {fvu:?} is not a number")))?;
            let params = narrow(file.tensor("topk.best", &[len])?);
            let model = TopKModel::from_params(init.visible(), h, init.k(), params)?
                .with_architecture(init.architecture())?
                .with_threshold(file.finite("topk.best_threshold")?)?;
            Some((epoch, fvu, model))
        }
    };
    let rule = StepState { first: narrow(first), second: narrow(second), steps };
    Ok(RunState { params, rule, epoch, batch, input_scale, threshold, seen, last_fired, tally, best })
}
