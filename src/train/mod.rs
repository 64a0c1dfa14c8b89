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
mod fingerprint;
mod minibatch;
mod vae;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub use checkpoint::{lbfgs_checkpoint, lbfgs_state};
pub use control::Control;
pub use fingerprint::DataFingerprint;
pub use minibatch::{
    MinibatchOptions, MinibatchState, MinibatchStep, MinibatchStop, MinibatchTrained, MinibatchTrainer,
};
pub use vae::{VaeEpoch, VaeOptions, VaeTrainer};

use crate::data::stream::ExampleSource;
use crate::error::{Error, Result};
use crate::model::{HyperParams, ModelFile, Parameters};
use crate::objective::{Objective, StreamingObjective};
use crate::optim::{Differentiable, Iteration, Lbfgs, LbfgsOptions, LbfgsState, Stop};
use crate::real::Real;
use control::Deadline;

/// The objective of one autoencoder: a function of its parameters that knows the model and
/// the data, so that what a trainer records as trained is what it trained (there is no second
/// copy of the hyper-parameters to disagree with), and its checkpoints name the data.
pub trait AutoencoderObjective<T: Real>: Differentiable<T> {
    /// The model whose parameters the objective is a function of.
    fn hyper(&self) -> &HyperParams;

    /// The fingerprint of the data the objective is evaluated on: one pass over it.
    fn data_fingerprint(&mut self) -> Result<DataFingerprint>;
}

impl<T: Real> AutoencoderObjective<T> for Objective<'_, T> {
    fn hyper(&self) -> &HyperParams {
        Objective::hyper(self)
    }

    fn data_fingerprint(&mut self) -> Result<DataFingerprint> {
        Ok(DataFingerprint::of_dataset(self.data()))
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
}

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct Trained<T> {
    pub model: ModelFile<T>,
    pub stop: Stop,
    pub iterations: usize,
    pub evaluations: usize,
    /// The cost at the start of this run (after resuming, at the checkpoint).
    pub initial_cost: f64,
    pub cost: f64,
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
}

impl Trainer {
    pub fn new(options: LbfgsOptions) -> Self {
        Trainer { options, checkpoint: None, fingerprint: None, stop: None, time_limit: None }
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
    /// ends, each write atomic.
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
        on_iteration: impl FnMut(&Iteration) -> C,
    ) -> Result<Trained<T>> {
        let deadline = Deadline::after(self.time_limit);
        if init.layout().len() != objective.dimension() {
            return Err(Error::ShapeMismatch {
                what: "initial parameters",
                expected: format!("{} values for this objective", objective.dimension()),
                got: init.layout().len().to_string(),
            });
        }
        let lbfgs = Lbfgs::start(self.options, starting_point(objective.hyper(), init).theta(), objective)?;
        self.run(objective, lbfgs, None, deadline, on_iteration)
    }

    /// Continues the run saved in the checkpoint at `path`, exactly as it would have gone on
    /// uninterrupted (given the same data, options and thread count).
    pub fn resume<T: Real, C: Control>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        path: &Path,
        on_iteration: impl FnMut(&Iteration) -> C,
    ) -> Result<Trained<T>> {
        let deadline = Deadline::after(self.time_limit);
        let fingerprint = self.fingerprint(objective)?;
        let state = self.checked_state::<T>(objective.hyper(), &fingerprint, path)?;
        let lbfgs = Lbfgs::resume(self.options, state)?;
        self.run(objective, lbfgs, Some(fingerprint), deadline, on_iteration)
    }

    /// The L-BFGS state saved in the checkpoint at `path`, every value checked (see
    /// [`lbfgs_state`]); fails, naming the field, when it cannot continue this run: another
    /// model than the objective's, other data, more correction pairs than the history.
    pub fn load_checkpoint<T: Real>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        path: &Path,
    ) -> Result<LbfgsState> {
        let fingerprint = self.fingerprint(objective)?;
        self.checked_state::<T>(objective.hyper(), &fingerprint, path)
    }

    /// Continues a run from `state` (as [`load_checkpoint`](Self::load_checkpoint) reads it).
    pub fn resume_state<T: Real, C: Control>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        state: LbfgsState,
        on_iteration: impl FnMut(&Iteration) -> C,
    ) -> Result<Trained<T>> {
        let lbfgs = Lbfgs::resume(self.options, state)?;
        self.run(objective, lbfgs, None, Deadline::after(self.time_limit), on_iteration)
    }

    /// The data's fingerprint: the caller's, or else the objective's.
    fn fingerprint<T: Real>(&self, objective: &mut impl AutoencoderObjective<T>) -> Result<DataFingerprint> {
        self.fingerprint.map_or_else(|| objective.data_fingerprint(), Ok)
    }

    /// The state of the checkpoint at `path`, checked on its own and against this run: the
    /// model `hyper`, the data `fingerprint`, the history.
    fn checked_state<T: Real>(
        &self,
        hyper: &HyperParams,
        fingerprint: &DataFingerprint,
        path: &Path,
    ) -> Result<LbfgsState> {
        let model = ModelFile::<T>::load(path)?;
        let state = lbfgs_state(&model, path)?;
        let saved = checkpoint::Saved { model: &model, path };
        saved.check_model(hyper)?;
        saved.check_data(fingerprint)?;
        if state.pairs() > self.options.history {
            let reason = format!("holds {} correction pairs, this run keeps {}", state.pairs(), self.options.history);
            return Err(saved.bad("lbfgs.ys", reason));
        }
        Ok(state)
    }

    /// Runs `lbfgs` to its end (its own stopping tests, the caller's flag and callback, the
    /// deadline); `fingerprint` is the data's when the caller knows it already.
    fn run<T: Real, C: Control>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        mut lbfgs: Lbfgs<T>,
        fingerprint: Option<DataFingerprint>,
        deadline: Deadline,
        mut on_iteration: impl FnMut(&Iteration) -> C,
    ) -> Result<Trained<T>> {
        let checkpoint = match &self.checkpoint {
            Some((path, every)) => {
                let fingerprint = fingerprint.map_or_else(|| self.fingerprint(objective), Ok)?;
                Some((path, *every, fingerprint))
            }
            None => None,
        };
        let initial_cost = lbfgs.state().f;
        let stop = loop {
            let iteration = lbfgs.iterate(objective)?;
            log::debug!(
                "L-BFGS iteration {}: cost {:.6e}, ‖∇‖ {:.3e}, step {:.3e}, {} evaluations",
                iteration.iteration,
                iteration.f,
                iteration.gradient_norm,
                iteration.step,
                iteration.evaluations
            );
            let requested = on_iteration(&iteration).stops();
            let outside = control::outside_stop(&self.stop, requested, &deadline);
            let stopped = iteration.stopped.or_else(|| outside.map(|outside| lbfgs.stop_with(outside.into())));
            if let Some((path, every, fingerprint)) = &checkpoint {
                if stopped.is_some() || iteration.iteration.is_multiple_of(*every) {
                    lbfgs_checkpoint::<T>(*objective.hyper(), lbfgs.state(), fingerprint)?.save(path)?;
                    log::info!("checkpoint of iteration {} written to {}", iteration.iteration, path.display());
                }
            }
            if let Some(stop) = stopped {
                break stop;
            }
        };
        let state = lbfgs.into_state();
        log::info!("L-BFGS stopped after {} iterations, cost {:.6e}: {stop}", state.iteration, state.f);
        let theta = state.x.iter().map(|&v| T::cast(v)).collect();
        let hyper = *objective.hyper();
        let parameters = Parameters::from_theta(hyper.visible(), hyper.hidden(), theta)?;
        let mut model = ModelFile::new(hyper, parameters);
        for (key, value) in [
            ("optimizer", "lbfgs".to_string()),
            ("iterations", state.iteration.to_string()),
            ("stop", stop.name().to_string()),
            ("cost", state.f.to_string()),
        ] {
            model.metadata.insert(key.into(), value);
        }
        Ok(Trained {
            model,
            stop,
            iterations: state.iteration,
            evaluations: state.evaluations,
            initial_cost,
            cost: state.f,
        })
    }
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
