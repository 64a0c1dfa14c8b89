//! Held-out data evaluated during training, and early stopping on it.
//!
//! Every `every` iterations (L-BFGS) or epochs (minibatch training) the trainer evaluates the
//! objective of the same model on the held-out data at the current parameters: the full
//! objective `J` there, and its reconstruction term (see [`CostTerms`](crate::objective::CostTerms)). With a patience `P`,
//! the run stops once `P` evaluations in a row have not lowered the held-out `J` below its best,
//! and whatever ends the run, the model it returns is the best validated one — the
//! generalisation estimate that matters, not the last iterate.
//!
//! The held-out objective is that of the training run's model, so a denoising model is
//! evaluated on its corrupted inputs (with the noise of epoch 0: the same at every evaluation)
//! and a contractive one with its penalty.
//!
//! ```
//! use sae::optim::{LbfgsOptions, Stop};
//! use sae::train::{Trainer, Validation};
//! use sae::{Dataset, HyperParams, Objective, Parameters};
//!
//! let (n, h) = (16, 8);
//! let values = |m: usize, seed: usize| -> Vec<f64> {
//!     (0..m * n).map(|i| 0.1 + 0.8 * (((i + seed) * 7919) % 101) as f64 / 100.0).collect()
//! };
//! let (train, held_out) = (values(60, 0), values(40, 13));
//! let hyper = HyperParams::builder(n, h).lambda(0.0).build()?;
//! let mut objective = Objective::new(hyper, Dataset::examples_by_features(&train, 60, n)?)?;
//! let mut validation =
//!     Validation::new(Objective::new(hyper, Dataset::examples_by_features(&held_out, 40, n)?)?).early_stopping(3);
//! let options = LbfgsOptions { max_iterations: 200, ..LbfgsOptions::default() };
//! let init = Parameters::init(n, h, 1);
//! let trained = Trainer::new(options).fit_validated(&mut objective, Some(&mut validation), &init, |_| {})?;
//! let (best_at, best_cost) = validation.best().expect("validated at least once");
//! assert!(validation.curve().iter().all(|point| point.cost >= best_cost));
//! assert_eq!(trained.model.metadata["validation.best_at"], best_at.to_string());
//! # Ok::<(), sae::Error>(())
//! ```

use super::checkpoint::Saved;
use super::{AutoencoderObjective, DataFingerprint};
use crate::error::{Error, Result};
use crate::model::{HyperParams, ModelFile};
use crate::real::Real;

/// One evaluation on the held-out data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidationPoint {
    /// The iteration (L-BFGS) or epoch (minibatch training) after which it was made.
    pub at: usize,
    /// The reconstruction term of `J` on the held-out data.
    pub reconstruction: f64,
    /// `J` on the held-out data.
    pub cost: f64,
}

/// The best validated point so far.
#[derive(Debug, Clone, PartialEq)]
struct Best {
    at: usize,
    cost: f64,
    x: Vec<f64>,
}

/// The held-out data of a run, how often it is evaluated, and the early-stopping rule; after
/// the run it holds the validation curve and the best point.
pub struct Validation<'v, T: Real> {
    held_out: Box<dyn AutoencoderObjective<T> + Send + 'v>,
    /// The held-out data's fingerprint, once a checkpoint needed it.
    fingerprint: Option<DataFingerprint>,
    every: usize,
    patience: Option<usize>,
    curve: Vec<ValidationPoint>,
    best: Option<Best>,
    theta: Vec<T>,
    grad: Vec<T>,
}

impl<T: Real> std::fmt::Debug for Validation<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validation")
            .field("every", &self.every)
            .field("patience", &self.patience)
            .field("curve", &self.curve)
            .field("best", &self.best())
            .finish_non_exhaustive()
    }
}

impl<'v, T: Real> Validation<'v, T> {
    /// Evaluates `held_out` (the objective of the run's model on the held-out data, in memory
    /// or streamed) after every iteration or epoch, without early stopping.
    pub fn new(held_out: impl AutoencoderObjective<T> + Send + 'v) -> Self {
        Validation {
            held_out: Box::new(held_out),
            fingerprint: None,
            every: 1,
            patience: None,
            curve: Vec::new(),
            best: None,
            theta: Vec::new(),
            grad: Vec::new(),
        }
    }

    /// Evaluates after every `every`-th iteration or epoch (at least 1), and after the last
    /// (unless the training callback ended the run: it has seen that step already).
    pub fn every(mut self, every: usize) -> Self {
        self.every = every.max(1);
        self
    }

    /// Stops the run after `patience` evaluations in a row (at least 1) that did not improve
    /// on the best held-out cost, and makes the best validated point the run's model.
    pub fn early_stopping(mut self, patience: usize) -> Self {
        self.patience = Some(patience.max(1));
        self
    }

    /// The patience of [`early_stopping`](Self::early_stopping), if set.
    pub fn patience(&self) -> Option<usize> {
        self.patience
    }

    /// Every evaluation made so far, in order (after resuming, the checkpoint's first).
    pub fn curve(&self) -> &[ValidationPoint] {
        &self.curve
    }

    /// The iteration or epoch of the lowest held-out cost so far, and that cost.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.best.as_ref().map(|best| (best.at, best.cost))
    }

    /// Fails unless the held-out objective is of the run's model.
    pub(crate) fn check_model(&self, run: &HyperParams) -> Result<()> {
        if self.held_out.hyper() == run {
            Ok(())
        } else {
            Err(Error::shape_mismatch(
                "model of the held-out objective",
                format!("the training run's, {run:?}"),
                format!("{:?}", self.held_out.hyper()),
            ))
        }
    }

    /// The parameters (`theta`, in f64) of the lowest held-out cost so far, with or without
    /// early stopping.
    pub fn best_parameters(&self) -> Option<&[f64]> {
        self.best.as_ref().map(|best| &best.x[..])
    }

    /// Forgets the evaluations of an earlier run: a new run starts its own curve.
    pub(crate) fn start(&mut self) {
        (self.curve, self.best) = (Vec::new(), None);
    }

    /// Evaluations since the best one (all of them before there is one).
    fn since_best(&self) -> usize {
        match &self.best {
            Some(best) => self.curve.iter().rev().take_while(|point| point.at != best.at).count(),
            None => self.curve.len(),
        }
    }

    /// Whether the patience ran out already (in the run a checkpoint continues).
    pub(crate) fn exhausted(&self) -> bool {
        self.patience.is_some_and(|patience| self.since_best() >= patience)
    }

    /// Whether an evaluation is due after iteration or epoch `at` (`last`: the run ends there).
    pub(crate) fn due(&self, at: usize, last: bool) -> bool {
        (last || at.is_multiple_of(self.every)) && self.curve.last().is_none_or(|point| point.at != at)
    }

    /// Evaluates the held-out objective at `x` after iteration or epoch `at`; returns the
    /// point and whether the patience has run out.
    pub(crate) fn evaluate(&mut self, at: usize, x: &[f64]) -> Result<(ValidationPoint, bool)> {
        let len = self.held_out.dimension();
        self.theta.clear();
        self.theta.extend(x.iter().map(|&v| T::cast(v)));
        self.grad.resize(len, T::zero());
        let point = match self.held_out.evaluate(&self.theta, &mut self.grad) {
            Ok(cost) => ValidationPoint { at, reconstruction: self.held_out.terms().reconstruction, cost },
            // A unit saturated on the held-out data (all on or all off there, in this
            // precision) makes the KL term infinite: the worst cost, not the end of the run.
            Err(Error::SaturatedActivation { unit, rho_hat }) => {
                log::warn!("held-out cost after {at}: infinite (hidden unit {unit} has rho_hat = {rho_hat} there)");
                ValidationPoint { at, reconstruction: f64::INFINITY, cost: f64::INFINITY }
            }
            Err(e) => return Err(e),
        };
        let cost = point.cost;
        log::debug!("held-out cost after {at}: {cost:.6e} (reconstruction {:.6e})", point.reconstruction);
        self.curve.push(point);
        // A cost that is not finite is never the best.
        if cost.is_finite() && self.best.as_ref().is_none_or(|best| cost < best.cost) {
            self.best = Some(Best { at, cost, x: x.to_vec() });
        }
        Ok((point, self.exhausted()))
    }

    /// The point the run returns instead of its last: the best validated one, with early
    /// stopping.
    pub(crate) fn chosen(&self) -> Option<(usize, &[f64])> {
        self.patience.and(self.best.as_ref()).map(|best| (best.at, &best.x[..]))
    }

    /// Records the curve and the best point in `model`'s metadata: `curve.validation` (a
    /// JSON array of `[at, reconstruction, cost]`, `null` for an infinite cost),
    /// `validation.best_at`, `validation.best_cost`.
    pub(crate) fn describe(&self, model: &mut ModelFile<impl Real>) {
        let curve: Vec<[serde_json::Value; 3]> =
            self.curve.iter().map(|p| [p.at.into(), p.reconstruction.into(), p.cost.into()]).collect();
        model.metadata.insert("curve.validation".into(), serde_json::to_string(&curve).expect("numbers serialise"));
        if let Some(best) = &self.best {
            model.metadata.insert("validation.best_at".into(), best.at.to_string());
            model.metadata.insert("validation.best_cost".into(), best.cost.to_string());
        }
    }

    /// Records everything a resumed run needs in a checkpoint: [`describe`](Self::describe),
    /// the held-out data's fingerprint (`validation.data.*`) and the best point (the float64
    /// tensor `validation.best_x`).
    pub(crate) fn save(&mut self, checkpoint: &mut ModelFile<impl Real>) -> Result<()> {
        self.describe(checkpoint);
        for (key, value) in self.fingerprint()?.metadata() {
            checkpoint.metadata.insert(format!("validation.{key}"), value);
        }
        if let Some(best) = &self.best {
            checkpoint.extra.insert("validation.best_x".into(), (vec![best.x.len()], best.x.clone()));
        }
        Ok(())
    }

    /// The held-out data's fingerprint (one pass over it, the first time).
    fn fingerprint(&mut self) -> Result<DataFingerprint> {
        if self.fingerprint.is_none() {
            self.fingerprint = Some(self.held_out.data_fingerprint()?);
        }
        Ok(self.fingerprint.expect("just computed"))
    }

    /// Continues from what [`save`](Self::save) recorded in `saved`, on the same held-out
    /// data (its fingerprint checked); a checkpoint without validation starts this one afresh
    /// with the resumed run.
    pub(crate) fn restore(&mut self, saved: &Saved<'_, T>) -> Result<()> {
        self.start();
        let Some(text) = saved.model.metadata.get("curve.validation") else {
            return Ok(());
        };
        let run = self.fingerprint()?;
        for (key, value) in run.metadata() {
            let recorded = saved.model.metadata.get(&format!("validation.{key}"));
            if recorded != Some(&value) {
                let recorded = recorded.map_or("missing", String::as_str);
                let reason = format!("{key} of the held-out data is {recorded} in the checkpoint, {value} in this run");
                return Err(saved.bad("curve.validation", reason));
            }
        }
        let malformed = || saved.bad("curve.validation", "is not a JSON array of [at, reconstruction, cost]");
        let points: Vec<(usize, Option<f64>, Option<f64>)> = serde_json::from_str(text).map_err(|_| malformed())?;
        // `null` is an infinite cost (see `evaluate`).
        let finite_or_infinite = |v: Option<f64>| v.unwrap_or(f64::INFINITY);
        self.curve = points
            .into_iter()
            .map(|(at, r, c)| ValidationPoint {
                at,
                reconstruction: finite_or_infinite(r),
                cost: finite_or_infinite(c),
            })
            .collect();
        if self.curve.iter().any(|p| p.cost.is_nan() || p.cost == f64::NEG_INFINITY) {
            return Err(malformed());
        }
        // The best is the first lowest finite point, as `evaluate` keeps it.
        let finite = self.curve.iter().filter(|p| p.cost.is_finite());
        let lowest = finite.min_by(|a, b| a.cost.total_cmp(&b.cost));
        self.best = match lowest {
            Some(lowest) => {
                if saved.count::<usize>("validation.best_at")? != lowest.at {
                    return Err(saved.bad("validation.best_at", "is not the lowest point of curve.validation"));
                }
                let x = saved.tensor("validation.best_x", &[saved.model.parameters.theta().len()])?;
                Some(Best { at: lowest.at, cost: lowest.cost, x })
            }
            None => None,
        };
        Ok(())
    }
}
