//! Training: optimisers run on an objective, with periodic checkpoints and resumption.
//!
//! ```
//! use sae::train::Trainer;
//! use sae::optim::LbfgsOptions;
//! use sae::{Dataset, HyperParams, Objective, Parameters};
//!
//! let (m, n, h) = (200, 16, 4);
//! let values: Vec<f64> = (0..m * n).map(|i| 0.1 + 0.8 * ((i * 7919) % 101) as f64 / 100.0).collect();
//! let hyper = HyperParams::builder(n, h).build()?;
//! let mut objective = Objective::new(hyper, Dataset::examples_by_features(&values, m, n)?)?;
//! let options = LbfgsOptions { max_iterations: 20, ..LbfgsOptions::default() };
//! let trained = Trainer::new(options).fit(&mut objective, &Parameters::init(n, h, 1), |_| {})?;
//! assert!(trained.cost < trained.initial_cost);
//! assert_eq!(trained.model.hyper, hyper, "the model is the objective's");
//! # Ok::<(), sae::Error>(())
//! ```

mod checkpoint;
mod control;
mod curve;
mod feed;
mod fingerprint;
mod minibatch;
mod order;
mod topk;
mod vae;
mod validation;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub use checkpoint::{lbfgs_checkpoint, lbfgs_state};
pub use control::Control;
pub use feed::StreamedPart;
pub use fingerprint::DataFingerprint;
pub use minibatch::{
    MinibatchOptions, MinibatchState, MinibatchStep, MinibatchStop, MinibatchTrained, MinibatchTrainer,
};
pub use order::Shuffle;
pub use topk::{
    measure as measure_topk, TopKEpoch, TopKMetrics, TopKOptions, TopKTrained, TopKTrainer, DENSE_FREQUENCY,
};
pub use vae::{VaeEpoch, VaeOptions, VaeTrainer};
pub use validation::{Validation, ValidationPoint};

use crate::data::stream::ExampleSource;
use crate::error::{Error, Result};
use crate::model::{HyperParams, ModelFile, Parameters};
use crate::objective::{CostTerms, Objective, StreamingObjective};
use crate::optim::{Differentiable, Iteration, Lbfgs, LbfgsOptions, LbfgsState, Stop};
use crate::real::Real;
use control::Deadline;
use curve::TrainingCurve;

/// The objective of one autoencoder: a function of its parameters that knows the model and
/// the data, so that what a trainer records as trained is what it trained (there is no second
/// copy of the hyper-parameters to disagree with), and its checkpoints name the data.
pub trait AutoencoderObjective<T: Real>: Differentiable<T> {
    /// The model whose parameters the objective is a function of.
    fn hyper(&self) -> &HyperParams;

    /// The fingerprint of the data the objective is evaluated on: one pass over it.
    fn data_fingerprint(&mut self) -> Result<DataFingerprint>;

    /// The terms of the cost of the last evaluation.
    fn terms(&self) -> CostTerms;

    /// `rho_hat` of the last evaluation.
    fn rho_hat(&self) -> &[f64];

    /// The processes the data set is split across (see [`crate::objective::distributed`]): 1
    /// for an objective on all of it. An objective whose evaluations are collective must say
    /// how many: a trainer on one process stops on a checkpoint it cannot write and keeps its
    /// model, which across processes would leave the others waiting in their next sum.
    fn processes(&self) -> usize {
        1
    }
}

impl<T: Real> AutoencoderObjective<T> for Objective<'_, T> {
    fn hyper(&self) -> &HyperParams {
        Objective::hyper(self)
    }

    fn data_fingerprint(&mut self) -> Result<DataFingerprint> {
        Ok(DataFingerprint::of_dataset(self.data()))
    }

    fn terms(&self) -> CostTerms {
        Objective::terms(self)
    }

    fn rho_hat(&self) -> &[f64] {
        Objective::rho_hat(self)
    }
}

impl<T: Real, S: ExampleSource<T> + Send> AutoencoderObjective<T> for StreamingObjective<T, S> {
    fn hyper(&self) -> &HyperParams {
        StreamingObjective::hyper(self)
    }

    /// Reads the source once more (see [`Trainer::data_fingerprint`] to supply it instead).
    fn data_fingerprint(&mut self) -> Result<DataFingerprint> {
        DataFingerprint::of_source(self.source_mut())
    }

    fn terms(&self) -> CostTerms {
        StreamingObjective::terms(self)
    }

    fn rho_hat(&self) -> &[f64] {
        StreamingObjective::rho_hat(self)
    }
}

/// What a training run produced.
#[derive(Debug)]
pub struct Trained<T> {
    pub model: ModelFile<T>,
    pub stop: Stop,
    pub iterations: usize,
    pub evaluations: usize,
    /// The cost at the start of this run (after resuming, at the checkpoint).
    pub initial_cost: f64,
    /// The cost at the last iterate (the model is the best validated point instead, with
    /// early stopping).
    pub cost: f64,
    /// `(iteration, cost)` from the start (after resuming, from the checkpoint's start).
    pub curve: Vec<(usize, f64)>,
    /// With [`Stop::CheckpointFailed`] (a run on one process; across processes the run fails
    /// instead), why the checkpoint could not be written.
    pub checkpoint_error: Option<Error>,
}

/// An L-BFGS iteration (its fields by `Deref`) and the held-out evaluation made after it, if
/// one was due: what the training callback sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbfgsStep {
    pub lbfgs: Iteration,
    pub validation: Option<ValidationPoint>,
}

impl std::ops::Deref for LbfgsStep {
    type Target = Iteration;

    fn deref(&self) -> &Iteration {
        &self.lbfgs
    }
}

/// A run read back from a checkpoint, ready to continue: the optimiser's state `S` (public, to
/// inspect) and the run's record so far (its training curve, its validation curve and best
/// validated point). A bare state converts into one whose record starts at it.
#[derive(Debug, Clone)]
pub struct Checkpoint<S, T> {
    pub state: S,
    /// The checkpoint's file, read (without the optimiser's tensors), and its path.
    saved: Option<(ModelFile<T>, PathBuf)>,
    /// The data's fingerprint the checkpoint was checked against, so that the resumed run's
    /// checkpoints need no second pass over the data for it.
    fingerprint: Option<DataFingerprint>,
}

impl<S, T> From<S> for Checkpoint<S, T> {
    fn from(state: S) -> Self {
        Checkpoint { state, saved: None, fingerprint: None }
    }
}

impl<S, T: Real> Checkpoint<S, T> {
    /// `state`, read from the checkpoint `model` at `path` and checked against the data of
    /// `fingerprint`: keeps of the file what the record needs.
    fn read(state: S, mut model: ModelFile<T>, path: &Path, fingerprint: DataFingerprint) -> Self {
        model.extra.retain(|name, _| name.starts_with("validation."));
        Checkpoint { state, saved: Some((model, path.to_path_buf())), fingerprint: Some(fingerprint) }
    }

    /// The free metadata of the checkpoint's file (its annotations among them, see
    /// [`Trainer::annotate_checkpoints`]); `None` for a bare state.
    pub fn metadata(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.saved.as_ref().map(|(model, _)| &model.metadata)
    }

    /// The checkpoint's file, to read its record from.
    fn saved(&self) -> Option<checkpoint::Saved<'_, T>> {
        self.saved.as_ref().map(|(model, path)| checkpoint::Saved { model, path })
    }

    /// The training curve so far, and `validation` continued from the checkpoint's.
    fn record(&self, validation: Option<&mut Validation<'_, T>>) -> Result<TrainingCurve> {
        let Some(saved) = self.saved() else {
            return Ok(TrainingCurve::default());
        };
        if let Some(validation) = validation {
            validation.restore(&saved)?;
        }
        TrainingCurve::restore(&saved)
    }
}

/// Full-batch L-BFGS training of the model of an [`AutoencoderObjective`], each evaluation a
/// pass over all the data (in memory or streamed), with optional checkpoints.
#[derive(Debug, Clone)]
pub struct Trainer {
    options: LbfgsOptions,
    checkpoint: Option<(PathBuf, usize)>,
    fingerprint: Option<DataFingerprint>,
    stop: Option<Arc<AtomicBool>>,
    time_limit: Option<Duration>,
    annotations: Vec<(String, String)>,
}

impl Trainer {
    pub fn new(options: LbfgsOptions) -> Self {
        Trainer { options, checkpoint: None, fingerprint: None, stop: None, time_limit: None, annotations: Vec::new() }
    }

    /// Records `metadata` in every checkpoint beside the run's state: what reproduces the run
    /// (seed, threads, back-end, instruction set, command line), read back with
    /// [`Checkpoint::metadata`]. The checkpoint's own keys win over these.
    pub fn annotate_checkpoints(mut self, metadata: impl IntoIterator<Item = (String, String)>) -> Self {
        self.annotations.extend(metadata);
        self
    }

    /// Ends the run after the first iteration that finishes `limit` after it started (the
    /// start's evaluation included): a finished run with [`Stop::TimeLimit`], which a resumed
    /// run continues.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Ends the run after the iteration during which `flag` becomes true (set from another
    /// thread, e.g. a signal handler): a normal end with [`Stop::Interrupted`], the model's
    /// metadata `stop = "interrupted"`, and a checkpoint of that point when checkpoints are
    /// on, from which the run resumes bit-for-bit.
    pub fn stop_when(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Writes a checkpoint to `path` every `every` iterations (at least 1) and when the run
    /// ends, each write atomic. One that cannot be written (a full disk) ends a run on one
    /// process with [`Stop::CheckpointFailed`] and its model, the error in
    /// [`Trained::checkpoint_error`] — the run returns `Ok`: check its stop — and fails a run
    /// across processes.
    pub fn checkpoint_to(mut self, path: impl Into<PathBuf>, every: usize) -> Self {
        self.checkpoint = Some((path.into(), every.max(1)));
        self
    }

    /// Records `fingerprint` as the data's in checkpoints, and checks checkpoints against it,
    /// instead of asking the objective (which costs a pass over the data: a streamed source
    /// may have a cheaper fingerprint, computed however the caller likes, as long as the same
    /// data always gets the same one).
    pub fn data_fingerprint(mut self, fingerprint: DataFingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// Trains the objective's model from `init`; `on_iteration` sees every iteration, and
    /// may stop the run (see [`Control`]).
    pub fn fit<T: Real, C: Control>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        init: &Parameters<T>,
        on_iteration: impl FnMut(&LbfgsStep) -> C,
    ) -> Result<Trained<T>> {
        self.fit_validated(objective, None, init, on_iteration)
    }

    /// As [`fit`](Self::fit), evaluating `validation`'s held-out data as it says (see
    /// [`Validation`]), the evaluations passed to `on_iteration` and kept in `validation`.
    pub fn fit_validated<T: Real, C: Control>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        mut validation: Option<&mut Validation<'_, T>>,
        init: &Parameters<T>,
        on_iteration: impl FnMut(&LbfgsStep) -> C,
    ) -> Result<Trained<T>> {
        let deadline = Deadline::after(self.time_limit);
        if init.layout().len() != objective.dimension() {
            return Err(Error::shape_mismatch(
                "initial parameters",
                format!("{} values for this objective", objective.dimension()),
                init.layout().len(),
            ));
        }
        if let Some(validation) = validation.as_deref_mut() {
            validation.start();
        }
        let lbfgs = Lbfgs::start(self.options, starting_point(objective.hyper(), init).theta(), objective)?;
        let curve = TrainingCurve(vec![(0, lbfgs.state().f)]);
        self.run(objective, lbfgs, Run { fingerprint: None, deadline, curve, validation }, on_iteration)
    }

    /// Continues the run saved in the checkpoint at `path`, exactly as it would have gone on
    /// uninterrupted (given the same data, options and thread count).
    pub fn resume<T: Real, C: Control>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        path: &Path,
        on_iteration: impl FnMut(&LbfgsStep) -> C,
    ) -> Result<Trained<T>> {
        let checkpoint = self.load_checkpoint(objective, path)?;
        self.resume_from(objective, checkpoint, None, on_iteration)
    }

    /// The checkpoint at `path`, every value checked (see [`lbfgs_state`]); fails, naming the
    /// field, when it cannot continue this run: another model than the objective's, other
    /// data, more correction pairs than the history.
    pub fn load_checkpoint<T: Real>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        path: &Path,
    ) -> Result<Checkpoint<LbfgsState, T>> {
        let fingerprint = self.fingerprint(objective)?;
        let model = ModelFile::<T>::load(path)?;
        let state = lbfgs_state(&model, path)?;
        let saved = checkpoint::Saved { model: &model, path };
        saved.check_model(objective.hyper())?;
        saved.check_data(&fingerprint)?;
        if state.pairs() > self.options.history {
            let reason = format!("holds {} correction pairs, this run keeps {}", state.pairs(), self.options.history);
            return Err(saved.bad("lbfgs.ys", reason));
        }
        Ok(Checkpoint::read(state, model, path, fingerprint))
    }

    /// Continues a run from `checkpoint` (as [`load_checkpoint`](Self::load_checkpoint) reads
    /// it, or a bare [`LbfgsState`]), with `validation` continuing the checkpoint's as
    /// [`fit_validated`](Self::fit_validated) does.
    pub fn resume_from<T: Real, C: Control>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        checkpoint: Checkpoint<LbfgsState, T>,
        mut validation: Option<&mut Validation<'_, T>>,
        on_iteration: impl FnMut(&LbfgsStep) -> C,
    ) -> Result<Trained<T>> {
        let deadline = Deadline::after(self.time_limit);
        let mut curve = checkpoint.record(validation.as_deref_mut())?;
        if curve.0.is_empty() {
            curve.push(checkpoint.state.iteration, checkpoint.state.f);
        }
        let fingerprint = checkpoint.fingerprint;
        let lbfgs = Lbfgs::resume(self.options, checkpoint.state)?;
        self.run(objective, lbfgs, Run { fingerprint, deadline, curve, validation }, on_iteration)
    }

    /// The data's fingerprint: the caller's, or else the objective's.
    fn fingerprint<T: Real>(&self, objective: &mut impl AutoencoderObjective<T>) -> Result<DataFingerprint> {
        self.fingerprint.map_or_else(|| objective.data_fingerprint(), Ok)
    }

    /// Runs `lbfgs` to its end (its own stopping tests, the caller's flag and callback, the
    /// deadline, early stopping).
    fn run<T: Real, C: Control>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        mut lbfgs: Lbfgs<T>,
        run: Run<'_, '_, T>,
        mut on_iteration: impl FnMut(&LbfgsStep) -> C,
    ) -> Result<Trained<T>> {
        let Run { fingerprint, deadline, mut curve, mut validation } = run;
        if let Some(validation) = &validation {
            validation.check_model(objective.hyper())?;
        }
        let checkpoint = match &self.checkpoint {
            Some((path, every)) => Some((path, *every, fingerprint.map_or_else(|| self.fingerprint(objective), Ok)?)),
            None => None,
        };
        let initial_cost = lbfgs.state().f;
        let mut checkpoint_error = None;
        let stop = loop {
            if validation.as_deref().is_some_and(Validation::exhausted) {
                // A checkpoint of a run whose patience ran out: it ends where it was.
                break lbfgs.stop_with(Stop::EarlyStopping);
            }
            let iteration = lbfgs.iterate(objective)?;
            log::debug!(
                "L-BFGS iteration {}: cost {:.6e}, ‖∇‖ {:.3e}, step {:.3e}, {} evaluations",
                iteration.iteration,
                iteration.f,
                iteration.gradient_norm,
                iteration.step,
                iteration.evaluations
            );
            // A stop found without a step (at a resumed run's start) is no new point.
            if curve.0.last().is_none_or(|&(at, _)| at != iteration.iteration) {
                curve.push(iteration.iteration, iteration.f);
            }
            let (mut point, mut patience_out) = (None, false);
            if let Some(validation) = validation.as_deref_mut() {
                let last = iteration.stopped.is_some() || deadline.passed() || control::interrupted(&self.stop);
                if validation.due(iteration.iteration, last) {
                    let (evaluated, out) = validation.evaluate(iteration.iteration, &lbfgs.state().x)?;
                    (point, patience_out) = (Some(evaluated), out);
                }
            }
            let requested = on_iteration(&LbfgsStep { lbfgs: iteration, validation: point }).stops();
            let outside = control::outside_stop(&self.stop, requested, &deadline);
            // Early stopping before the stops from outside: a resumed run would not go on.
            let stopped = iteration
                .stopped
                .or_else(|| patience_out.then(|| lbfgs.stop_with(Stop::EarlyStopping)))
                .or_else(|| outside.map(|outside| lbfgs.stop_with(outside.into())));
            if let Some((path, every, fingerprint)) = &checkpoint {
                if stopped.is_some() || iteration.iteration.is_multiple_of(*every) {
                    let mut saved = lbfgs_checkpoint::<T>(*objective.hyper(), lbfgs.state(), fingerprint)?;
                    checkpoint::annotate(&mut saved, &self.annotations);
                    curve.describe(&mut saved);
                    if let Some(validation) = validation.as_deref_mut() {
                        validation.save(&mut saved)?;
                    }
                    match saved.save(path) {
                        Ok(()) => {
                            log::info!("checkpoint of iteration {} written to {}", iteration.iteration, path.display())
                        }
                        // One process: the run stops keeping its model. Across processes the
                        // others could not be told in time (the first one writes), so the run
                        // fails on every process as before.
                        Err(error) if objective.processes() == 1 => {
                            if let Some(stopping) = stopped {
                                log::warn!("the run was stopping ({stopping}) when its checkpoint failed");
                            }
                            checkpoint_error = Some(error);
                            // Whatever stop was due: the run's own state ends here unsaved.
                            break Stop::CheckpointFailed;
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
            if let Some(stop) = stopped {
                break stop;
            }
        };
        let state = lbfgs.into_state();
        log::info!("L-BFGS stopped after {} iterations, cost {:.6e}: {stop}", state.iteration, state.f);
        let chosen = validation.as_deref().and_then(Validation::chosen);
        let x = chosen.map_or(&state.x[..], |(_, x)| x);
        let theta: Vec<T> = x.iter().map(|&v| T::cast(v)).collect();
        // One more evaluation, at the model, for its `rho_hat` on the training data (the last
        // one may have been a line-search trial, or another point than the best validated).
        let mut grad = vec![T::zero(); theta.len()];
        let model_cost = objective.evaluate(&theta, &mut grad)?;
        let hyper = *objective.hyper();
        let parameters = Parameters::from_theta(hyper.visible(), hyper.hidden(), theta)?;
        let mut model = ModelFile::new(hyper, parameters);
        for (key, value) in [
            ("optimizer", "lbfgs".to_string()),
            ("iterations", state.iteration.to_string()),
            ("stop", stop.name().to_string()),
            ("cost", model_cost.to_string()),
            ("rho_hat", serde_json::to_string(objective.rho_hat()).expect("numbers serialise")),
        ] {
            model.metadata.insert(key.into(), value);
        }
        curve.describe(&mut model);
        if let Some(validation) = &validation {
            validation.describe(&mut model);
        }
        Ok(Trained {
            model,
            stop,
            iterations: state.iteration,
            evaluations: state.evaluations,
            initial_cost,
            cost: state.f,
            curve: curve.0,
            checkpoint_error,
        })
    }
}

/// What a run carries besides the optimiser: the data's fingerprint when a checkpoint
/// already checked it, the deadline, the curve so far, the held-out data.
struct Run<'a, 'v, T: Real> {
    fingerprint: Option<DataFingerprint>,
    deadline: Deadline,
    curve: TrainingCurve,
    validation: Option<&'a mut Validation<'v, T>>,
}

impl From<control::Outside> for Stop {
    fn from(outside: control::Outside) -> Stop {
        match outside {
            control::Outside::Interrupted => Stop::Interrupted,
            control::Outside::Requested => Stop::Requested,
            control::Outside::TimeLimit => Stop::TimeLimit,
        }
    }
}

/// Where a run from `init` starts: `init` itself, or with tied weights `init` tied (the same
/// cost; every later iterate stays tied, see [`Parameters::tie`]).
pub(crate) fn starting_point<T: Real>(hyper: &HyperParams, init: &Parameters<T>) -> Parameters<T> {
    let mut start = init.clone();
    if hyper.tied() {
        start.tie();
    }
    start
}
