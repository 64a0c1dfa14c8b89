//! Minibatch training (Adam or SGD with momentum) for data sets where full-batch L-BFGS is too
//! slow per step: each epoch visits the examples in a fresh random order, a minibatch at a
//! time, with `rho_hat` a running average across minibatches (see
//! [`MinibatchObjective`]). The order of epoch `e` is a function of the seed and `e` alone,
//! so a run is reproducible and resumes from a checkpoint bit-for-bit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::checkpoint::Saved;
use super::control::{outside_stop, Control, Deadline, Outside};
use super::curve::TrainingCurve;
use super::feed::{part_fingerprint, Feed, InMemory, Streamed, StreamedPart};
use super::order::Shuffle;
use super::{Checkpoint, DataFingerprint, Validation, ValidationPoint};
use crate::data::stream::SeekableSource;
use crate::data::{Dataset, Layout};
use crate::error::{Error, Result};
use crate::model::{Corruption, HyperParams, ModelFile, Parameters};
use crate::objective::distributed::{agree, Alone, Collective, Part, Split};
use crate::objective::MinibatchObjective;
use crate::optim::{first_non_finite, Schedule, StepRule, StepState};
use crate::real::Real;

/// How to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinibatchOptions {
    pub rule: StepRule,
    /// How the rule's learning rate moves over the run's steps [default: constant].
    pub schedule: Schedule,
    pub batch_size: usize,
    pub epochs: usize,
    /// `μ` of the running `rho_hat`.
    pub rho_momentum: f64,
    /// Seed of the example order.
    pub seed: u64,
    /// How each epoch orders the examples (streamed data needs [`Shuffle::Blocks`]).
    pub shuffle: Shuffle,
}

impl Default for MinibatchOptions {
    fn default() -> Self {
        MinibatchOptions {
            rule: StepRule::adam(1e-3),
            schedule: Schedule::CONSTANT,
            batch_size: 256,
            epochs: 10,
            rho_momentum: 0.9,
            seed: 1,
            shuffle: Shuffle::Full,
        }
    }
}

/// Where a run is: everything the next step reads.
#[derive(Debug, Clone, PartialEq)]
pub struct MinibatchState {
    pub x: Vec<f64>,
    pub rule_state: StepState,
    pub running_rho_hat: Vec<f64>,
    /// Epochs completed.
    pub epoch: usize,
    /// Minibatches of the current epoch completed.
    pub batch: usize,
}

/// After each minibatch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinibatchStep {
    pub epoch: usize,
    /// Steps taken in all.
    pub step: u64,
    /// `J` on this minibatch (with the running `rho_hat`).
    pub cost: f64,
    /// Whether this minibatch ended its epoch.
    pub epoch_end: bool,
    /// The held-out evaluation made after this step (at an epoch's end), if one was due.
    pub validation: Option<ValidationPoint>,
}

/// Why a minibatch run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinibatchStop {
    /// It ran all its epochs.
    MaxEpochs,
    /// The flag of [`MinibatchTrainer::stop_when`] was set before the last epoch ended.
    Interrupted,
    /// The step callback returned `ControlFlow::Break` (see [`Control`]).
    Requested,
    /// The time limit of [`MinibatchTrainer::time_limit`] passed.
    TimeLimit,
    /// The held-out cost did not improve for the patience of a [`Validation`]; the model
    /// is the best validated one.
    EarlyStopping,
    /// A checkpoint could not be written (a full disk, say), its error kept in
    /// [`MinibatchTrained::checkpoint_error`] (or [`crate::train::TopKTrained::checkpoint_error`]);
    /// the model is that of the moment (with early stopping, its best epoch's), any checkpoint
    /// written before intact. (A dense run across processes fails instead: its first process
    /// writes the checkpoints, and could not tell the others in time.)
    CheckpointFailed,
}

impl MinibatchStop {
    /// The name the model's metadata `stop` records.
    pub fn name(self) -> &'static str {
        match self {
            MinibatchStop::MaxEpochs => "max-epochs",
            MinibatchStop::Interrupted => "interrupted",
            MinibatchStop::Requested => "requested",
            MinibatchStop::TimeLimit => "time-limit",
            MinibatchStop::EarlyStopping => "early-stopping",
            MinibatchStop::CheckpointFailed => "checkpoint-failed",
        }
    }
}

impl From<Outside> for MinibatchStop {
    fn from(outside: Outside) -> MinibatchStop {
        match outside {
            Outside::Interrupted => MinibatchStop::Interrupted,
            Outside::Requested => MinibatchStop::Requested,
            Outside::TimeLimit => MinibatchStop::TimeLimit,
        }
    }
}

impl std::fmt::Display for MinibatchStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MinibatchStop::MaxEpochs => "ran all its epochs",
            MinibatchStop::Interrupted => "interrupted: the model so far is kept, and the run can be resumed",
            MinibatchStop::Requested => "stopped by the training callback",
            MinibatchStop::TimeLimit => "reached the time limit",
            MinibatchStop::EarlyStopping => {
                "stopped early: the held-out cost stopped improving; the model is the best validated one"
            }
            MinibatchStop::CheckpointFailed => {
                "a checkpoint could not be written: the model so far is kept, and any checkpoint written before is intact"
            }
        })
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct MinibatchTrained<T> {
    /// The model, with the metadata `stop` (see [`MinibatchStop::name`]).
    pub model: ModelFile<T>,
    pub steps: u64,
    pub epochs: usize,
    pub stop: MinibatchStop,
    /// `(epoch, mean of the epoch's minibatch costs)` from the first epoch (after resuming,
    /// the checkpoint's first).
    pub curve: Vec<(usize, f64)>,
    /// Where the run ended (the last step's parameters, the step rule's moments, the running
    /// `rho_hat`): `Checkpoint::from(state)` continues it with
    /// [`MinibatchTrainer::resume_from`], e.g. for more epochs on new data.
    pub state: MinibatchState,
    /// With [`MinibatchStop::CheckpointFailed`], why the checkpoint could not be written.
    pub checkpoint_error: Option<Error>,
}

/// Minibatch training of one model on data in memory, with optional checkpoints.
#[derive(Debug, Clone)]
pub struct MinibatchTrainer {
    hyper: HyperParams,
    options: MinibatchOptions,
    checkpoint: Option<(PathBuf, u64)>,
    stop: Option<Arc<AtomicBool>>,
    time_limit: Option<Duration>,
    annotations: Vec<(String, String)>,
}

impl MinibatchTrainer {
    pub fn new(hyper: HyperParams, options: MinibatchOptions) -> Result<Self> {
        options.rule.check()?;
        options.schedule.check()?;
        options.shuffle.check()?;
        if options.batch_size == 0 {
            return Err(Error::InvalidHyperParameter { name: "batch size", value: 0.0, reason: "must be at least 1" });
        }
        Ok(MinibatchTrainer { hyper, options, checkpoint: None, stop: None, time_limit: None, annotations: Vec::new() })
    }

    /// Records `metadata` in every checkpoint, as [`Trainer::annotate_checkpoints`](super::Trainer::annotate_checkpoints) does.
    pub fn annotate_checkpoints(mut self, metadata: impl IntoIterator<Item = (String, String)>) -> Self {
        self.annotations.extend(metadata);
        self
    }

    /// Ends the run after the first step that finishes `limit` after it started, with
    /// [`MinibatchStop::TimeLimit`]; a checkpoint of that point (when checkpoints are on)
    /// continues it.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Ends the run after the step during which `flag` becomes true (set from another thread,
    /// e.g. a signal handler, or a program's cancel button): a normal end with
    /// [`MinibatchStop::Interrupted`], and a checkpoint of that point when checkpoints are
    /// on, from which the run resumes bit-for-bit.
    pub fn stop_when(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Writes a checkpoint every `every` steps and at the end, atomically. One that cannot be
    /// written (a full disk) ends a run on one process with [`MinibatchStop::CheckpointFailed`]
    /// and its model, the error in [`MinibatchTrained::checkpoint_error`] — the run returns
    /// `Ok`: check its stop — and fails a run across processes.
    pub fn checkpoint_to(mut self, path: impl Into<PathBuf>, every: u64) -> Self {
        self.checkpoint = Some((path.into(), every.max(1)));
        self
    }

    /// Trains from `init`; `on_step` sees every step, and may stop the run (see [`Control`]).
    pub fn fit<T: Real, C: Control>(
        &self,
        data: &Dataset<'_, T>,
        init: &Parameters<T>,
        on_step: impl FnMut(&MinibatchStep) -> C,
    ) -> Result<MinibatchTrained<T>> {
        self.fit_validated(data, None, init, on_step)
    }

    /// As [`fit`](Self::fit), evaluating `validation`'s held-out data at the ends of epochs
    /// as it says (see [`Validation`]), the evaluations passed to `on_step` and kept in
    /// `validation`.
    pub fn fit_validated<T: Real, C: Control>(
        &self,
        data: &Dataset<'_, T>,
        validation: Option<&mut Validation<'_, T>>,
        init: &Parameters<T>,
        on_step: impl FnMut(&MinibatchStep) -> C,
    ) -> Result<MinibatchTrained<T>> {
        self.fit_split(Part::whole(data), &mut Split::new(Alone), validation, init, on_step)
    }

    /// As [`fit`](Self::fit) on a data set split across the processes of `split`, this
    /// process holding `part` (see [`crate::objective::distributed`]): every minibatch of the
    /// whole data set's order is evaluated by the processes holding its rows, and every
    /// process takes the same step. Collective; checkpoints are the caller's to ask of one
    /// process ([`checkpoint_to`](Self::checkpoint_to)). A stop that one process's callback
    /// or flag asks for is agreed on by the next step's sum, and every process stops after
    /// the same step (as interrupted); a time limit, which each process's clock would keep
    /// apart, is refused, as is a denoising model (not trained this way yet).
    pub fn fit_split<T: Real, Ctl: Control, C: Collective>(
        &self,
        part: Part<'_, '_, T>,
        split: &mut Split<C>,
        validation: Option<&mut Validation<'_, T>>,
        init: &Parameters<T>,
        on_step: impl FnMut(&MinibatchStep) -> Ctl,
    ) -> Result<MinibatchTrained<T>> {
        let feed = InMemory::new(part, self.options.shuffle, self.options.seed);
        self.start(feed, split, validation, init, on_step)
    }

    /// As [`fit_split`](Self::fit_split) on data read from storage (of one process:
    /// [`StreamedPart::whole`], with `split` of [`Alone`]), a window of blocks at a time in
    /// the order of the options' [`Shuffle::Blocks`] (a full shuffle is refused), the next
    /// window read on a thread of its own meanwhile: memory is two windows, the minibatch and
    /// the model, whatever the size of the data. The same data in
    /// memory, trained with the same options, takes the same steps.
    pub fn fit_streamed<T: Real, S: SeekableSource<T> + Send, Ctl: Control, C: Collective>(
        &self,
        part: StreamedPart<S>,
        split: &mut Split<C>,
        validation: Option<&mut Validation<'_, T>>,
        init: &Parameters<T>,
        on_step: impl FnMut(&MinibatchStep) -> Ctl,
    ) -> Result<MinibatchTrained<T>> {
        std::thread::scope(|scope| {
            let feed = Streamed::spawn(scope, part, &self.options, self.hyper.reconstruction())?;
            self.start(feed, split, validation, init, on_step)
        })
    }

    /// As [`resume_split`](Self::resume_split) on data read from storage (see
    /// [`fit_streamed`](Self::fit_streamed)): mid-epoch, the window of the next minibatch is
    /// read, and the run goes on bit for bit.
    pub fn resume_streamed<T: Real, S: SeekableSource<T> + Send, Ctl: Control, C: Collective>(
        &self,
        part: StreamedPart<S>,
        split: &mut Split<C>,
        checkpoint: Checkpoint<MinibatchState, T>,
        validation: Option<&mut Validation<'_, T>>,
        on_step: impl FnMut(&MinibatchStep) -> Ctl,
    ) -> Result<MinibatchTrained<T>> {
        std::thread::scope(|scope| {
            let feed = Streamed::spawn(scope, part, &self.options, self.hyper.reconstruction())?;
            self.run(feed, split, checkpoint, validation, on_step)
        })
    }

    /// As [`load_checkpoint_split`](Self::load_checkpoint_split) for data read from storage
    /// (its fingerprint is one pass over `part`).
    pub fn load_checkpoint_streamed<T: Real, S: SeekableSource<T> + Send, C: Collective>(
        &self,
        part: &mut StreamedPart<S>,
        split: &Split<C>,
        path: &Path,
    ) -> Result<Checkpoint<MinibatchState, T>> {
        let local = DataFingerprint::of_source(part.source_mut());
        let local = agree(split.collective(), local, "reading its part of the data")?;
        let fingerprint = split.fingerprint(local)?;
        self.checkpoint_from(ModelFile::<T>::load(path)?, path, part.examples(), fingerprint)
    }

    /// Starts a run from `init`.
    fn start<T: Real, Ctl: Control, C: Collective>(
        &self,
        feed: impl Feed<T>,
        split: &mut Split<C>,
        mut validation: Option<&mut Validation<'_, T>>,
        init: &Parameters<T>,
        on_step: impl FnMut(&MinibatchStep) -> Ctl,
    ) -> Result<MinibatchTrained<T>> {
        if let Some(validation) = validation.as_deref_mut() {
            validation.start();
        }
        let x: Vec<f64> = super::starting_point(&self.hyper, init).theta().iter().map(|v| v.as_f64()).collect();
        let state =
            MinibatchState { rule_state: StepState::new(x.len()), x, running_rho_hat: Vec::new(), epoch: 0, batch: 0 };
        self.run(feed, split, Checkpoint::from(state), validation, on_step)
    }

    /// As [`resume_from`](Self::resume_from) on a data set split across processes (see
    /// [`fit_split`](Self::fit_split)).
    pub fn resume_split<T: Real, Ctl: Control, C: Collective>(
        &self,
        part: Part<'_, '_, T>,
        split: &mut Split<C>,
        checkpoint: Checkpoint<MinibatchState, T>,
        validation: Option<&mut Validation<'_, T>>,
        on_step: impl FnMut(&MinibatchStep) -> Ctl,
    ) -> Result<MinibatchTrained<T>> {
        self.run(InMemory::new(part, self.options.shuffle, self.options.seed), split, checkpoint, validation, on_step)
    }

    /// As [`load_checkpoint`](Self::load_checkpoint), the data being split across the
    /// processes of `split` (its fingerprint is the parts', collective).
    pub fn load_checkpoint_split<T: Real, C: Collective>(
        &self,
        part: Part<'_, '_, T>,
        split: &Split<C>,
        path: &Path,
    ) -> Result<Checkpoint<MinibatchState, T>> {
        let fingerprint = split.fingerprint(part_fingerprint(&part, self.hyper.visible()))?;
        self.checkpoint_from(ModelFile::<T>::load(path)?, path, part.examples, fingerprint)
    }

    /// Continues the run saved in the checkpoint at `path` on `data`.
    pub fn resume<T: Real, C: Control>(
        &self,
        data: &Dataset<'_, T>,
        path: &Path,
        on_step: impl FnMut(&MinibatchStep) -> C,
    ) -> Result<MinibatchTrained<T>> {
        let checkpoint = self.load_checkpoint(data, path)?;
        let feed = InMemory::new(Part::whole(data), self.options.shuffle, self.options.seed);
        self.run(feed, &mut Split::new(Alone), checkpoint, None, on_step)
    }

    /// The checkpoint at `path`, every value checked; fails, naming the field, when it cannot
    /// continue this run on `data`: another model, other data or options, a position or
    /// counter out of range, a non-finite value.
    pub fn load_checkpoint<T: Real>(
        &self,
        data: &Dataset<'_, T>,
        path: &Path,
    ) -> Result<Checkpoint<MinibatchState, T>> {
        self.checkpoint_from(ModelFile::<T>::load(path)?, path, data.examples(), DataFingerprint::of_dataset(data))
    }

    /// Continues a run from `checkpoint` (as [`load_checkpoint`](Self::load_checkpoint) reads
    /// it, or a bare [`MinibatchState`]), with `validation` continuing the checkpoint's as
    /// [`fit_validated`](Self::fit_validated) does.
    pub fn resume_from<T: Real, C: Control>(
        &self,
        data: &Dataset<'_, T>,
        checkpoint: Checkpoint<MinibatchState, T>,
        validation: Option<&mut Validation<'_, T>>,
        on_step: impl FnMut(&MinibatchStep) -> C,
    ) -> Result<MinibatchTrained<T>> {
        let feed = InMemory::new(Part::whole(data), self.options.shuffle, self.options.seed);
        self.run(feed, &mut Split::new(Alone), checkpoint, validation, on_step)
    }

    /// Runs from `checkpoint` to the last epoch, or until the caller's flag or callback, the
    /// time limit or early stopping stops it, on this process's part of the data, `feed` (the
    /// whole of it, with `split` of one process).
    fn run<T: Real, Ctl: Control, C: Collective>(
        &self,
        mut feed: impl Feed<T>,
        split: &mut Split<C>,
        checkpoint: Checkpoint<MinibatchState, T>,
        mut validation: Option<&mut Validation<'_, T>>,
        mut on_step: impl FnMut(&MinibatchStep) -> Ctl,
    ) -> Result<MinibatchTrained<T>> {
        let deadline = Deadline::after(self.time_limit);
        let (mut curve, mut epoch_cost) = checkpoint.minibatch_record(validation.as_deref_mut())?;
        let (mut state, fingerprint) = (checkpoint.state, checkpoint.fingerprint);
        if let Some(validation) = &validation {
            validation.check_model(&self.hyper)?;
        }
        let (n, m) = (self.hyper.visible(), feed.examples());
        let distributed = split.collective().size() > 1;
        if distributed && self.hyper.corruption() != Corruption::None {
            return Err(Error::InvalidHyperParameter {
                name: "corruption",
                value: self.hyper.corruption().level(),
                reason: "a denoising model is not trained by minibatches across processes yet",
            });
        }
        if distributed && self.time_limit.is_some() {
            return Err(Error::InvalidHyperParameter {
                name: "time limit",
                value: self.time_limit.map_or(0.0, |t| t.as_secs_f64()),
                reason: "each process's clock would stop it apart from the others",
            });
        }
        // Checked here, before any step, so that an error names the row of the data rather than
        // of a minibatch; by every process, before any sum.
        let checked = match feed.features() {
            Some(features) if features != n => {
                Err(Error::shape_mismatch("data features", format!("n = {n}"), features))
            }
            _ => feed.check(self.hyper.reconstruction()),
        };
        agree(split.collective(), checked, "checking its part of the data")?;
        // The processes' parts must be the whole, once each.
        let held = split.total(feed.held().len())?;
        if held != m {
            return Err(Error::shape_mismatch("rows of the processes' parts in all", m, held));
        }
        // With several processes, a stop any of them asks for (its callback, the trainer's
        // flag) is agreed on by the next step's sum: all stop after the same step.
        let (requested_flag, agreed_flag) = split.stop_flags();
        let agreed_flag = Some(agreed_flag);
        // Computed by every process alike: the process that writes the checkpoints needs
        // all of theirs.
        // (A pass over the data: only when some process writes checkpoints.)
        let fingerprint = match (fingerprint, distributed) {
            (None, true) if split.total(usize::from(self.checkpoint.is_some()))? > 0 => {
                let local = agree(split.collective(), feed.fingerprint(n), "reading its part of the data")?;
                Some(split.fingerprint(local)?)
            }
            (None, false) if self.checkpoint.is_some() => Some(feed.fingerprint(n)?),
            (known, _) => known,
        };
        let options = self.options;
        let mut objective = MinibatchObjective::<T>::new(self.hyper, options.batch_size.min(m), options.rho_momentum)?;
        objective.set_running_rho_hat(std::mem::take(&mut state.running_rho_hat))?;
        let len = objective.theta_len();
        let batches = m.div_ceil(options.batch_size);
        let total_steps = (batches as u64).saturating_mul(options.epochs as u64);
        let rule_state = &state.rule_state;
        // A state this run cannot continue (a checkpoint's is checked field by field when read):
        // past the last minibatch, the epoch would never end.
        if [state.x.len(), rule_state.first.len(), rule_state.second.len()] != [len; 3] || state.batch >= batches {
            return Err(Error::shape_mismatch(
                "minibatch state",
                format!("x and both moments of {len} values, a minibatch below {batches}"),
                format!(
                    "x {}, moments {} and {}, minibatch {}",
                    state.x.len(),
                    rule_state.first.len(),
                    rule_state.second.len(),
                    state.batch
                ),
            ));
        }
        let checkpoint = self.checkpoint.as_ref().zip(fingerprint).map(|((path, every), data)| (path, *every, data));
        let (mut theta, mut grad_t, mut grad) = (vec![T::zero(); len], vec![T::zero(); len], vec![0.0; len]);
        // No minibatch is larger than the data, whatever the option says.
        let mut batch_values = vec![T::zero(); options.batch_size.min(m) * n];
        let mut stop = MinibatchStop::MaxEpochs;
        let mut checkpoint_error = None;
        // A checkpoint of a run whose patience ran out ends where it was.
        let exhausted = validation.as_deref().is_some_and(Validation::exhausted);
        if exhausted {
            stop = MinibatchStop::EarlyStopping;
        }
        'epochs: while state.epoch < options.epochs && !exhausted {
            while state.batch < batches {
                let positions = state.batch * options.batch_size..((state.batch + 1) * options.batch_size).min(m);
                // A failure to read this process's rows goes through the evaluation's sums.
                let batch = feed.fill(state.epoch, positions, &mut batch_values).and_then(|k| match k {
                    0 => Ok(None),
                    // Scanned for non-finite values already (in memory by the caller, streamed as
                    // read).
                    k => Dataset::unscanned(&batch_values[..k * n], k, n, Layout::ExamplesByFeatures).map(Some),
                });
                for (t, &v) in theta.iter_mut().zip(&state.x) {
                    *t = T::cast(v);
                }
                let step = state.rule_state.steps + 1;
                objective.set_corruption_epoch(step);
                let cost = objective.evaluate_loaded(&theta, &mut grad_t, batch, split)?;
                for (g, &gt) in grad.iter_mut().zip(&grad_t) {
                    *g = gt.as_f64();
                }
                if !cost.is_finite() || first_non_finite(&grad).is_some() {
                    return Err(Error::NonFiniteCost { iteration: step as usize, value: cost });
                }
                // (The step's place in this run of `epochs` epochs: a state continued on other data
                // has taken steps of its own before.)
                let position = (state.epoch as u64) * batches as u64 + state.batch as u64;
                let factor = options.schedule.factor(position, total_steps);
                state.rule_state.step(&options.rule.scaled(factor), &mut state.x, &grad);
                if first_non_finite(&state.x).is_some() {
                    return Err(Error::NonFiniteCost { iteration: step as usize, value: f64::NAN });
                }
                state.batch += 1;
                let epoch_end = state.batch == batches;
                if epoch_end {
                    state.epoch += 1;
                    state.batch = 0;
                }
                epoch_cost += cost;
                let finished = state.epoch == options.epochs;
                let (mut point, mut patience_out) = (None, false);
                if epoch_end {
                    let mean = std::mem::take(&mut epoch_cost) / batches as f64;
                    curve.push(state.epoch, mean);
                    log::debug!(
                        "{} epoch {} ended at step {step}, mean minibatch cost {mean:.6e}",
                        options.rule.name(),
                        state.epoch
                    );
                    if let Some(validation) = validation.as_deref_mut() {
                        let last = finished || deadline.passed() || super::control::interrupted(&self.stop);
                        if validation.due(state.epoch, last) {
                            let (evaluated, out) = validation.evaluate(state.epoch, &state.x)?;
                            (point, patience_out) = (Some(evaluated), out);
                        }
                    }
                }
                let mut requested =
                    on_step(&MinibatchStep { epoch: state.epoch, step, cost, epoch_end, validation: point }).stops();
                if distributed {
                    if requested || super::control::interrupted(&self.stop) {
                        requested_flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    requested = false;
                }
                // Early stopping before the stops from outside: a resumed run would not go on.
                let early = !finished && patience_out;
                let stop_flag = if distributed { &agreed_flag } else { &self.stop };
                let outside = if finished || early { None } else { outside_stop(stop_flag, requested, &deadline) };
                if let Some((path, every, fingerprint)) = &checkpoint {
                    if step.is_multiple_of(*every) || finished || outside.is_some() || early {
                        let mut saved = self.checkpoint_of::<T>(&state, objective.running_rho_hat(), fingerprint)?;
                        super::checkpoint::annotate(&mut saved, &self.annotations);
                        curve.describe(&mut saved);
                        saved.metadata.insert(EPOCH_COST.into(), epoch_cost.to_string());
                        if let Some(validation) = validation.as_deref_mut() {
                            validation.save(&mut saved)?;
                        }
                        match saved.save(path) {
                            Ok(()) => log::info!("checkpoint of step {step} written to {}", path.display()),
                            // One process: the run stops keeping its model. Across processes
                            // the others could not be told in time (the first one writes), so
                            // the run fails on every process as before.
                            Err(error) if !distributed => {
                                let stopping = outside.map(MinibatchStop::from);
                                if let Some(stopping) = stopping.or(early.then_some(MinibatchStop::EarlyStopping)) {
                                    log::warn!("the run was stopping ({stopping}) when its checkpoint failed");
                                }
                                (stop, checkpoint_error) = (MinibatchStop::CheckpointFailed, Some(error));
                                break 'epochs;
                            }
                            Err(error) => return Err(error),
                        }
                    }
                }
                if let Some(outside) = outside {
                    stop = outside.into();
                    break 'epochs;
                }
                if early {
                    stop = MinibatchStop::EarlyStopping;
                    break 'epochs;
                }
                if epoch_end {
                    break;
                }
            }
        }
        // The running `rho_hat` lived in the objective during the run.
        state.running_rho_hat = objective.running_rho_hat().to_vec();
        log::info!(
            "{} stopped after {} steps ({} epochs): {stop}",
            options.rule.name(),
            state.rule_state.steps,
            state.epoch
        );
        let chosen = validation.as_deref().and_then(Validation::chosen);
        let mut model = self.model_at::<T>(chosen.map_or(&state.x[..], |(_, x)| x))?;
        for (key, value) in [
            ("optimizer", self.options.rule.name().to_string()),
            ("lr_schedule", self.options.schedule.describe()),
            ("epochs", state.epoch.to_string()),
            ("steps", state.rule_state.steps.to_string()),
            ("stop", stop.name().to_string()),
        ] {
            model.metadata.insert(key.into(), value);
        }
        // The model's cost and `rho_hat` on all the data, as a full-batch run records them:
        // when they cannot be had (a unit saturated over the whole data set in this precision,
        // streamed data that changed since it was trained on) they are left out rather than
        // losing the run. Every process gets the same outcome (the evaluation's sums).
        match feed.evaluate_all(self.hyper, model.parameters.theta(), split.collective()) {
            Ok((cost, rho_hat)) => {
                model.metadata.insert("cost".into(), cost.to_string());
                let rho_hat = serde_json::to_string(&rho_hat).expect("numbers serialise");
                model.metadata.insert("rho_hat".into(), rho_hat);
            }
            Err(e) => log::warn!("the model's cost on all the data is left out of its metadata: {e}"),
        }
        curve.describe(&mut model);
        if let Some(validation) = &validation {
            validation.describe(&mut model);
        }
        Ok(MinibatchTrained {
            model,
            steps: state.rule_state.steps,
            epochs: state.epoch,
            stop,
            curve: curve.0,
            state,
            checkpoint_error,
        })
    }

    /// The model at the point `x`, without metadata.
    fn model_at<T: Real>(&self, x: &[f64]) -> Result<ModelFile<T>> {
        let (n, h) = (self.hyper.visible(), self.hyper.hidden());
        let theta = x.iter().map(|&v| T::cast(v)).collect();
        Ok(ModelFile::new(self.hyper, Parameters::from_theta(n, h, theta)?))
    }

    /// The model at `state` with everything the next step reads (`running` is the running
    /// `rho_hat`) and the fingerprint of the data.
    fn checkpoint_of<T: Real>(
        &self,
        state: &MinibatchState,
        running: &[f64],
        data: &DataFingerprint,
    ) -> Result<ModelFile<T>> {
        let mut model = self.model_at::<T>(&state.x)?;
        let o = &self.options;
        model.metadata = [
            ("optimizer", o.rule.name().to_string()),
            ("minibatch.rule", format!("{:?}", o.rule)),
            ("minibatch.batch_size", o.batch_size.to_string()),
            ("minibatch.seed", o.seed.to_string()),
            ("minibatch.rho_momentum", o.rho_momentum.to_string()),
            ("minibatch.shuffle", o.shuffle.to_string()),
            ("minibatch.schedule", o.schedule.describe()),
            ("minibatch.epochs", o.epochs.to_string()),
            ("minibatch.steps", state.rule_state.steps.to_string()),
            ("minibatch.epoch", state.epoch.to_string()),
            ("minibatch.batch", state.batch.to_string()),
        ]
        .into_iter()
        .chain(data.metadata())
        .map(|(k, v)| (k.to_string(), v))
        .collect::<BTreeMap<_, _>>();
        let len = state.x.len();
        model.extra = [
            ("minibatch.x", vec![len], state.x.clone()),
            ("minibatch.first", vec![len], state.rule_state.first.clone()),
            ("minibatch.second", vec![len], state.rule_state.second.clone()),
            ("minibatch.rho_hat", vec![running.len()], running.to_vec()),
        ]
        .into_iter()
        .map(|(k, shape, v)| (k.to_string(), (shape, v)))
        .collect();
        Ok(model)
    }

    /// The state of the checkpoint `saved` read from `path`, checked against this run on data
    /// of `examples` rows whose fingerprint is `fingerprint`.
    fn checkpoint_from<T: Real>(
        &self,
        model: ModelFile<T>,
        path: &Path,
        examples: usize,
        fingerprint: DataFingerprint,
    ) -> Result<Checkpoint<MinibatchState, T>> {
        let state = self.state_from(&model, path, examples, &fingerprint)?;
        Ok(Checkpoint::read(state, model, path, fingerprint))
    }

    /// The state of [`checkpoint_from`](Self::checkpoint_from).
    fn state_from<T: Real>(
        &self,
        saved: &ModelFile<T>,
        path: &Path,
        examples: usize,
        fingerprint: &DataFingerprint,
    ) -> Result<MinibatchState> {
        let saved = Saved { model: saved, path };
        saved.check_model(&self.hyper)?;
        let o = &self.options;
        for (key, expected) in [
            ("minibatch.rule", format!("{:?}", o.rule)),
            ("minibatch.batch_size", o.batch_size.to_string()),
            ("minibatch.seed", o.seed.to_string()),
            ("minibatch.rho_momentum", o.rho_momentum.to_string()),
        ] {
            let found = saved.text(key)?;
            if found != expected {
                return Err(saved.bad(key, format!("is {found} in the checkpoint, {expected} in this run")));
            }
        }
        // Checkpoints written before the block shuffle were of full shuffles.
        let shuffle = saved.model.metadata.get("minibatch.shuffle").map_or("full", String::as_str);
        if shuffle != o.shuffle.to_string() {
            return Err(
                saved.bad("minibatch.shuffle", format!("is {shuffle} in the checkpoint, {} in this run", o.shuffle))
            );
        }
        // Checkpoints written before the schedules kept the rate constant.
        let (schedule, expected) = (
            saved.model.metadata.get("minibatch.schedule").cloned().unwrap_or(Schedule::CONSTANT.describe()),
            o.schedule.describe(),
        );
        if schedule != expected {
            return Err(
                saved.bad("minibatch.schedule", format!("is {schedule} in the checkpoint, {expected} in this run"))
            );
        }
        // A schedule's rates depend on the run's length: another number of epochs would change them.
        if !o.schedule.is_constant() {
            let epochs: usize = saved.count("minibatch.epochs")?;
            if epochs != o.epochs {
                let reason = format!(
                    "= {epochs} in the checkpoint, {} in this run: the schedule's rates would change",
                    o.epochs
                );
                return Err(saved.bad("minibatch.epochs", reason));
            }
        }
        saved.check_data(fingerprint)?;

        let len = saved.model.parameters.theta().len();
        let x = saved.tensor("minibatch.x", &[len])?;
        saved.check_weights("minibatch.x", &x)?;
        let (first, second) = (saved.tensor("minibatch.first", &[len])?, saved.tensor("minibatch.second", &[len])?);
        if let Some(k) = second.iter().position(|&v| v < 0.0) {
            return Err(saved.bad("minibatch.second", format!("holds {} at {k}: a mean of squares", second[k])));
        }
        let running_rho_hat = saved.vector("minibatch.rho_hat")?;
        saved.check_rho_hat("minibatch.rho_hat", &running_rho_hat)?;

        // The position: a minibatch of the data's epoch, an epoch this run reaches, and as many
        // steps as minibatches before it.
        let batches = examples.div_ceil(o.batch_size);
        let (epoch, batch): (usize, usize) = (saved.count("minibatch.epoch")?, saved.count("minibatch.batch")?);
        let steps: u64 = saved.count("minibatch.steps")?;
        if batch >= batches {
            let reason = format!("= {batch}, past the last of the {batches} minibatches of an epoch of this data");
            return Err(saved.bad("minibatch.batch", reason));
        }
        if epoch > o.epochs || (epoch == o.epochs && batch > 0) {
            let reason = format!("= {epoch} (minibatch {batch} next), beyond the {} epochs of this run", o.epochs);
            return Err(saved.bad("minibatch.epoch", reason));
        }
        // In u128, where the product cannot overflow.
        let expected = epoch as u128 * batches as u128 + batch as u128;
        if u128::from(steps) != expected {
            let reason = format!("= {steps}, but epoch {epoch} minibatch {batch} comes after {expected} steps");
            return Err(saved.bad("minibatch.steps", reason));
        }
        Ok(MinibatchState { x, rule_state: StepState { first, second, steps }, running_rho_hat, epoch, batch })
    }
}

/// The metadata key of a checkpoint's sum of the current epoch's minibatch costs so far (its
/// count is the checkpoint's `minibatch.batch`).
const EPOCH_COST: &str = "minibatch.epoch_cost";

impl<T: Real> Checkpoint<MinibatchState, T> {
    /// The training curve so far and the sum of the current epoch's minibatch costs so far,
    /// and `validation` continued from the checkpoint's.
    fn minibatch_record(&self, validation: Option<&mut Validation<'_, T>>) -> Result<(TrainingCurve, f64)> {
        let curve = self.record(validation)?;
        let epoch_cost = match self.saved() {
            Some(saved) if saved.model.metadata.contains_key(EPOCH_COST) => saved.finite(EPOCH_COST)?,
            _ => 0.0,
        };
        Ok((curve, epoch_cost))
    }
}

/// Copies the examples `rows` of `data` into `out`, one after another.
pub(crate) fn gather<T: Real>(data: &Dataset<'_, T>, rows: &[usize], out: &mut [T]) {
    let n = data.features();
    let x = data.x();
    for (k, &row) in rows.iter().enumerate() {
        let example = &mut out[k * n..(k + 1) * n];
        match data.layout() {
            crate::data::Layout::ExamplesByFeatures => example.copy_from_slice(&data.values()[row * n..(row + 1) * n]),
            crate::data::Layout::FeaturesByExamples => {
                for (j, v) in example.iter_mut().enumerate() {
                    *v = x.get(j, row);
                }
            }
        }
    }
}
