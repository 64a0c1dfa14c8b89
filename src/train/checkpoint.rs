//! Checkpoints: a model file holding, besides the model at the current point, the optimiser's
//! whole state (float64 tensors `lbfgs.*` and metadata `lbfgs.*`) and the fingerprint of the
//! data (metadata `data.*`), enough to continue the run exactly as if it had not stopped.
//!
//! A checkpoint is read as untrusted input: every value is checked before the run uses it
//! (counts are strict, numbers finite, indices in range, shapes exact, the weights those of the
//! state), and so is its fit to the run (the same model, data and options); an error names the
//! file and the field.

use std::collections::BTreeMap;
use std::path::Path;

use super::DataFingerprint;
use crate::error::{Error, Result};
use crate::model::metadata;
use crate::model::{HyperParams, ModelFile, Parameters};
use crate::optim::{LbfgsState, Stop};
use crate::real::Real;

/// No run makes 2⁵³ evaluations or steps (285 years at one a nanosecond): a larger counter is
/// corrupt, and would overflow as the run went on.
const COUNT_LIMIT: u64 = 1 << 53;

/// The model at the state's point, with the state itself and the fingerprint of the data.
pub fn lbfgs_checkpoint<T: Real>(
    hyper: HyperParams,
    state: &LbfgsState,
    data: &DataFingerprint,
) -> Result<ModelFile<T>> {
    let (n, h) = (hyper.visible(), hyper.hidden());
    let theta = state.x.iter().map(|&v| T::cast(v)).collect();
    let mut model = ModelFile::new(hyper, Parameters::from_theta(n, h, theta)?);
    let (len, pairs) = (state.x.len(), state.pairs());
    let metadata = [
        ("optimizer", "lbfgs".to_string()),
        ("lbfgs.f", state.f.to_string()),
        ("lbfgs.gamma", state.gamma.to_string()),
        ("lbfgs.oldest", state.oldest.to_string()),
        ("lbfgs.iteration", state.iteration.to_string()),
        ("lbfgs.evaluations", state.evaluations.to_string()),
        ("lbfgs.stopped", state.stopped.map_or("no", Stop::name).to_string()),
    ];
    model.metadata = metadata.into_iter().chain(data.metadata()).map(|(k, v)| (k.to_string(), v)).collect();
    let tensors = [
        ("lbfgs.x", vec![len], state.x.clone()),
        ("lbfgs.g", vec![len], state.g.clone()),
        ("lbfgs.s", vec![pairs, len], state.s.clone()),
        ("lbfgs.y", vec![pairs, len], state.y.clone()),
        ("lbfgs.ys", vec![pairs], state.ys.clone()),
    ];
    model.extra = tensors.into_iter().map(|(k, shape, v)| (k.to_string(), (shape, v))).collect::<BTreeMap<_, _>>();
    Ok(model)
}

/// Adds the caller's `annotations` to a checkpoint's metadata, its own keys kept.
pub(crate) fn annotate<T>(checkpoint: &mut ModelFile<T>, annotations: &[(String, String)]) {
    for (key, value) in annotations {
        checkpoint.metadata.entry(key.clone()).or_insert_with(|| value.clone());
    }
}

/// The L-BFGS state stored in a checkpoint read from `path`, every value checked: `f`, `γ`
/// and the tensors finite, `γ` and each `yᵀs` positive, the tensors of `ys`'s pairs and the
/// model's length, `oldest` a slot held, the counters consistent and not absurd, `x` the
/// model's weights.
pub fn lbfgs_state<T: Real>(model: &ModelFile<T>, path: &Path) -> Result<LbfgsState> {
    if !model.extra.contains_key("lbfgs.x") {
        return Err(Error::bad_file(path, "a model file without L-BFGS state, not a checkpoint"));
    }
    let saved = Saved { model, path };
    let len = model.parameters.theta().len();
    let ys = saved.vector("lbfgs.ys")?;
    let pairs = ys.len();
    if let Some(k) = ys.iter().position(|&v| v <= 0.0) {
        return Err(saved.bad("lbfgs.ys", format!("holds {} at {k}: a pair's yᵀs is positive", ys[k])));
    }
    let gamma = saved.finite("lbfgs.gamma")?;
    if gamma <= 0.0 {
        return Err(saved.bad("lbfgs.gamma", format!("is {gamma}: the scale yᵀs / yᵀy is positive")));
    }
    let oldest: usize = saved.count("lbfgs.oldest")?;
    if oldest >= pairs.max(1) {
        return Err(saved.bad("lbfgs.oldest", format!("is slot {oldest} of {pairs} correction pairs")));
    }
    let iteration: usize = saved.count("lbfgs.iteration")?;
    let evaluations: usize = saved.count("lbfgs.evaluations")?;
    if evaluations < iteration.max(1) {
        return Err(saved.bad(
            "lbfgs.evaluations",
            format!("is {evaluations} after {iteration} iterations: each iteration evaluates, and so does the start"),
        ));
    }
    let stopped = match saved.text("lbfgs.stopped")? {
        "no" => None,
        name => Some(
            Stop::from_name(name)
                .ok_or_else(|| saved.bad("lbfgs.stopped", format!("= {name:?} is not a known stop")))?,
        ),
    };
    let x = saved.tensor("lbfgs.x", &[len])?;
    saved.check_weights("lbfgs.x", &x)?;
    Ok(LbfgsState {
        x,
        f: saved.finite("lbfgs.f")?,
        g: saved.tensor("lbfgs.g", &[len])?,
        s: saved.tensor("lbfgs.s", &[pairs, len])?,
        y: saved.tensor("lbfgs.y", &[pairs, len])?,
        ys,
        oldest,
        gamma,
        iteration,
        evaluations,
        stopped,
    })
}

/// A checkpoint read from `path`, its values read and checked one field at a time.
pub(crate) struct Saved<'a, T> {
    pub model: &'a ModelFile<T>,
    pub path: &'a Path,
}

/// The metadata and float64 tensors of a checkpoint read from `path`, read and checked one
/// field at a time (whatever kind of model the file holds).
pub(crate) struct Fields<'a> {
    pub metadata: &'a BTreeMap<String, String>,
    pub tensors: &'a BTreeMap<String, (Vec<usize>, Vec<f64>)>,
    pub path: &'a Path,
}

impl<'a> Fields<'a> {
    /// [`Error::BadCheckpoint`] for `field` of this file.
    pub fn bad(&self, field: &'static str, reason: impl Into<String>) -> Error {
        Error::BadCheckpoint { path: self.path.to_path_buf(), field, reason: reason.into() }
    }

    pub fn text(&self, key: &'static str) -> Result<&'a str> {
        self.metadata.get(key).map(String::as_str).ok_or_else(|| self.bad(key, "is missing"))
    }

    /// The metadata `key` as a count (strictly, see [`metadata::count`]), below
    /// [`COUNT_LIMIT`].
    pub fn count<I: TryFrom<u64>>(&self, key: &'static str) -> Result<I> {
        let text = self.text(key)?;
        let value: u64 = metadata::count(text).ok_or_else(|| self.bad(key, format!("= {text:?} is not a count")))?;
        if value >= COUNT_LIMIT {
            return Err(self.bad(key, format!("= {value} is beyond any run")));
        }
        I::try_from(value).map_err(|_| self.bad(key, format!("= {value} does not fit this machine's counts")))
    }

    /// The metadata `key` as a finite number.
    pub fn finite(&self, key: &'static str) -> Result<f64> {
        let text = self.text(key)?;
        metadata::finite(text).ok_or_else(|| self.bad(key, format!("= {text:?} is not a finite number")))
    }

    /// The tensor `key`, of `shape` exactly, every value finite.
    pub fn tensor(&self, key: &'static str, shape: &[usize]) -> Result<Vec<f64>> {
        let (found, values) = self.tensors.get(key).ok_or_else(|| self.bad(key, "is missing"))?;
        if found != shape {
            return Err(self.bad(key, format!("has shape {found:?}, expected {shape:?}")));
        }
        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
            return Err(self.bad(key, format!("holds {} at {k}", values[k])));
        }
        Ok(values.clone())
    }

    /// Fails unless the checkpoint's data is `run`'s, naming the first part of the
    /// fingerprint that differs.
    pub fn check_data(&self, run: &DataFingerprint) -> Result<()> {
        for (key, value) in run.metadata() {
            let saved = self.text(key)?;
            if saved != value {
                return Err(
                    self.bad(key, format!("is {saved} in the checkpoint's data, {value} in this run's: other data"))
                );
            }
        }
        Ok(())
    }
}

impl<'a, T: Real> Saved<'a, T> {
    fn fields(&self) -> Fields<'a> {
        Fields { metadata: &self.model.metadata, tensors: &self.model.extra, path: self.path }
    }

    /// [`Error::BadCheckpoint`] for `field` of this file.
    pub fn bad(&self, field: &'static str, reason: impl Into<String>) -> Error {
        self.fields().bad(field, reason)
    }

    pub fn text(&self, key: &'static str) -> Result<&'a str> {
        self.fields().text(key)
    }

    /// The metadata `key` as a count (see [`Fields::count`]).
    pub fn count<I: TryFrom<u64>>(&self, key: &'static str) -> Result<I> {
        self.fields().count(key)
    }

    /// The metadata `key` as a finite number.
    pub fn finite(&self, key: &'static str) -> Result<f64> {
        self.fields().finite(key)
    }

    /// The tensor `key`, of `shape` exactly, every value finite.
    pub fn tensor(&self, key: &'static str, shape: &[usize]) -> Result<Vec<f64>> {
        self.fields().tensor(key, shape)
    }

    /// The tensor `key`, a vector of any length, every value finite.
    pub fn vector(&self, key: &'static str) -> Result<Vec<f64>> {
        let (shape, _) = self.model.extra.get(key).ok_or_else(|| self.bad(key, "is missing"))?;
        match shape[..] {
            [len] => self.tensor(key, &[len]),
            _ => Err(self.bad(key, format!("has shape {shape:?}, expected a vector"))),
        }
    }

    /// Fails unless the state's point `x` (stored as `key`) is the model's weights: a file whose
    /// weights were changed apart from its state is corrupt.
    pub fn check_weights(&self, key: &'static str, x: &[f64]) -> Result<()> {
        let theta = self.model.parameters.theta();
        match x.iter().zip(theta).position(|(&v, &t)| T::cast(v) != t) {
            Some(k) => Err(self.bad(key, format!("differs from the model's weights at {k}"))),
            None => Ok(()),
        }
    }

    /// Fails unless the checkpoint's model is `run`, naming the first hyper-parameter that
    /// differs as the field and every other one in the reason.
    pub fn check_model(&self, run: &HyperParams) -> Result<()> {
        let (saved, run) = (described(&self.model.hyper), described(run));
        let mut differ = saved.into_iter().zip(run).filter(|((_, a), (_, b))| a != b);
        let Some(((name, saved), (_, run))) = differ.next() else {
            return Ok(());
        };
        let others: Vec<String> =
            differ.map(|((name, saved), (_, run))| format!("{name} {saved} in the checkpoint, {run} here")).collect();
        let also = if others.is_empty() { String::new() } else { format!(" (and {})", others.join("; ")) };
        Err(self.bad(name, format!("is {saved} in the checkpoint's model, {run} in this run's{also}: another model")))
    }

    /// Fails unless the checkpoint's data is `run`'s (see [`Fields::check_data`]).
    pub fn check_data(&self, run: &DataFingerprint) -> Result<()> {
        self.fields().check_data(run)
    }

    /// Fails unless the running `rho_hat` (stored as `key`) is empty (before the first
    /// minibatch) or one value per hidden unit, each an activity the penalty can measure.
    pub fn check_rho_hat(&self, key: &'static str, rho_hat: &[f64]) -> Result<()> {
        let hyper = &self.model.hyper;
        if !rho_hat.is_empty() && rho_hat.len() != hyper.hidden() {
            return Err(self.bad(key, format!("has {} values for {} hidden units", rho_hat.len(), hyper.hidden())));
        }
        // The KL penalty is finite strictly inside (0, 1); activities are never negative.
        let kl = hyper.sparsity_target().is_some();
        let valid = |r: f64| if kl { r > 0.0 && r < 1.0 } else { r >= 0.0 };
        match rho_hat.iter().position(|&r| !valid(r)) {
            Some(k) => Err(self.bad(key, format!("holds {} at unit {k}, not an average activity", rho_hat[k]))),
            None => Ok(()),
        }
    }
}

/// Every hyper-parameter by its model-file key, as text (see [`HyperParams::file_metadata`]);
/// the seed of no corruption is no part of the model (the command line and the library
/// default it differently), so it is not compared then.
fn described(h: &HyperParams) -> [(&'static str, String); 13] {
    let mut described = h.file_metadata();
    if h.corruption() == crate::model::Corruption::None {
        for (key, value) in &mut described {
            if *key == "corruption_seed" {
                *value = "-".into();
            }
        }
    }
    described
}
