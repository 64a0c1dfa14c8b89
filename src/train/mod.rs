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
mod minibatch;
mod vae;

use std::path::{Path, PathBuf};

pub use checkpoint::{lbfgs_checkpoint, lbfgs_state};
pub use minibatch::{MinibatchOptions, MinibatchState, MinibatchStep, MinibatchTrained, MinibatchTrainer};
pub use vae::{VaeEpoch, VaeOptions, VaeTrainer};

use crate::data::stream::ExampleSource;
use crate::error::{Error, Result};
use crate::model::{HyperParams, ModelFile, Parameters};
use crate::objective::{Objective, StreamingObjective};
use crate::optim::{Differentiable, Iteration, Lbfgs, LbfgsOptions, LbfgsState, Stop};
use crate::real::Real;

/// The objective of one autoencoder: a function of its parameters that knows the model, so
/// that what a trainer records as trained is what it trained (there is no second copy of the
/// hyper-parameters to disagree with).
pub trait AutoencoderObjective<T: Real>: Differentiable<T> {
    /// The model whose parameters the objective is a function of.
    fn hyper(&self) -> &HyperParams;
}

impl<T: Real> AutoencoderObjective<T> for Objective<'_, T> {
    fn hyper(&self) -> &HyperParams {
        Objective::hyper(self)
    }
}

impl<T: Real, S: ExampleSource<T> + Send> AutoencoderObjective<T> for StreamingObjective<T, S> {
    fn hyper(&self) -> &HyperParams {
        StreamingObjective::hyper(self)
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
}

impl Trainer {
    pub fn new(options: LbfgsOptions) -> Self {
        Trainer { options, checkpoint: None }
    }

    /// Writes a checkpoint to `path` every `every` iterations (at least 1) and when the run
    /// ends, each write atomic.
    pub fn checkpoint_to(mut self, path: impl Into<PathBuf>, every: usize) -> Self {
        self.checkpoint = Some((path.into(), every.max(1)));
        self
    }

    /// Trains the objective's model from `init`; `on_iteration` sees every iteration.
    pub fn fit<T: Real>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        init: &Parameters<T>,
        on_iteration: impl FnMut(&Iteration),
    ) -> Result<Trained<T>> {
        if init.layout().len() != objective.dimension() {
            return Err(Error::ShapeMismatch {
                what: "initial parameters",
                expected: format!("{} values for this objective", objective.dimension()),
                got: init.layout().len().to_string(),
            });
        }
        let lbfgs = Lbfgs::start(self.options, starting_point(objective.hyper(), init).theta(), objective)?;
        self.run(objective, lbfgs, on_iteration)
    }

    /// Continues the run saved in the checkpoint at `path`, exactly as it would have gone on
    /// uninterrupted (given the same data, options and thread count).
    pub fn resume<T: Real>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        path: &Path,
        on_iteration: impl FnMut(&Iteration),
    ) -> Result<Trained<T>> {
        let state = self.load_checkpoint(objective, path)?;
        self.resume_state(objective, state, on_iteration)
    }

    /// The L-BFGS state saved in the checkpoint at `path`; fails when it belongs to another
    /// model than the objective's.
    pub fn load_checkpoint<T: Real>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        path: &Path,
    ) -> Result<LbfgsState> {
        let saved = ModelFile::<T>::load(path)?;
        let hyper = objective.hyper();
        if saved.hyper != *hyper {
            return Err(Error::BadFile {
                path: path.to_path_buf(),
                reason: format!("a checkpoint of another model: {:?}, this run has {:?}", saved.hyper, hyper),
            });
        }
        lbfgs_state(&saved, path)
    }

    /// Continues a run from `state` (as [`load_checkpoint`](Self::load_checkpoint) reads it).
    pub fn resume_state<T: Real>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        state: LbfgsState,
        on_iteration: impl FnMut(&Iteration),
    ) -> Result<Trained<T>> {
        let lbfgs = Lbfgs::resume(self.options, state)?;
        self.run(objective, lbfgs, on_iteration)
    }

    fn run<T: Real>(
        &self,
        objective: &mut impl AutoencoderObjective<T>,
        mut lbfgs: Lbfgs<T>,
        mut on_iteration: impl FnMut(&Iteration),
    ) -> Result<Trained<T>> {
        let initial_cost = lbfgs.state().f;
        let stop = loop {
            let iteration = lbfgs.iterate(objective)?;
            on_iteration(&iteration);
            if let Some((path, every)) = &self.checkpoint {
                if iteration.stopped.is_some() || iteration.iteration.is_multiple_of(*every) {
                    lbfgs_checkpoint::<T>(*objective.hyper(), lbfgs.state())?.save(path)?;
                }
            }
            if let Some(stop) = iteration.stopped {
                break stop;
            }
        };
        let state = lbfgs.into_state();
        let theta = state.x.iter().map(|&v| T::cast(v)).collect();
        let hyper = *objective.hyper();
        let parameters = Parameters::from_theta(hyper.visible(), hyper.hidden(), theta)?;
        let mut model = ModelFile::new(hyper, parameters);
        for (key, value) in [
            ("optimizer", "lbfgs".to_string()),
            ("iterations", state.iteration.to_string()),
            ("stop", checkpoint::stop_name(stop).to_string()),
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

/// Where a run from `init` starts: `init` itself, or with tied weights `init` tied (the same
/// cost; every later iterate stays tied, see [`Parameters::tie`]).
pub(crate) fn starting_point<T: Real>(hyper: &HyperParams, init: &Parameters<T>) -> Parameters<T> {
    let mut start = init.clone();
    if hyper.tied() {
        start.tie();
    }
    start
}
