//! Training a TopK sparse autoencoder by minibatches, with the practice these models need:
//!
//! - Adam (or SGD) on the parameters in their working precision;
//! - decoder rows kept at unit norm: the component of each row's gradient along the row is
//!   removed before the step and the row renormalised after it, so the latents' scale lives in
//!   the encoder (and a latent cannot shrink its decoder to dodge the selection) — one pass over
//!   each row ([`DictionaryLayout::unit_norm_step`](crate::dictionary::DictionaryLayout::unit_norm_step));
//! - in one process, each step taken inside the backward pass, on each latent's rows as their
//!   gradient is computed ([`TopKObjective::evaluate_step`]): the same step, bit for bit,
//!   without the `2hn`-value gradient in memory; processes that sum their gradients first
//!   keep it;
//! - `b_dec` started at the geometric median of the first minibatch;
//! - optionally, the inputs scaled to unit mean squared norm (the scale `c` from the first
//!   minibatch), which makes the learning rate mean the same whatever the data's units; the
//!   scale is folded into the trained model (`b_dec/c`, `b_enc/c`: the selection is invariant
//!   to it and `x̂ = x̂'/c`), which then applies to the data as it is;
//! - optionally, every `resample_every` steps, the dead latents restarted on the residuals of
//!   badly reconstructed inputs (see the `resample` module);
//! - optionally, the auxiliary loss AuxK on the dead latents (see [`AuxK`]): a latent is dead
//!   once it has not fired on the last `dead_after` examples;
//! - with the L1 penalty (a ReLU sparse autoencoder, see [`TopKOptions::relu`]), the decoder
//!   rows' norms left free;
//! - optionally, `k` scheduled from a larger `k_start` down to the model's `k`, linearly over
//!   the first half of the steps (Makhzani & Frey's schedule for k-sparse autoencoders, which
//!   keeps latents from dying early);
//! - with a batch selection (BatchTopK), the inference threshold as a running mean of each
//!   minibatch's smallest selected activation (`threshold_rate` the weight of the newest, as
//!   SAELens's `topk_threshold_lr`; the first minibatch's value to start with);
//! - tied weights (the k-sparse autoencoder, see [`Architecture`](crate::dictionary::Architecture)):
//!   the objective steps `W_enc` and the trainer copies it into `W_dec` after each step;
//! - per epoch the metrics of dictionary learning: L0, the fractions of dead and dense latents,
//!   the fraction of variance unexplained and the normalised MSE, and every latent's firing
//!   frequency.
//!
//! The examples come in the order of [`Shuffle`] (in memory, or streamed from storage a window
//! of blocks at a time), as for [`MinibatchTrainer`](super::MinibatchTrainer): the order of an
//! epoch is a function of the seed and the epoch, so a run is reproducible.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::control::{outside_stop, Control, Deadline};
use super::feed::{part_fingerprint, Feed, InMemory, Streamed, StreamedPart};
use super::fingerprint::text_hash;
use super::{DataFingerprint, MinibatchOptions, MinibatchStop, Shuffle};
use crate::data::stream::{ExampleSource, SeekableSource, SliceSource};
use crate::data::{Dataset, Layout};
use crate::dictionary::{geometric_median_summed, select::INACTIVE, AuxK, TopKModel, TopKObjective};
use crate::error::{Error, Result};
use crate::model::Reconstruction;
use crate::objective::distributed::{agree, in_whole, parameters_hash, Alone, Collective, Part, Split};
use crate::optim::{first_non_finite, Schedule, StepRule};
use crate::real::Real;
use checkpoint::RunState;
use sums::{Alike, Evaluated, StepSums};

/// A latent is dense when it fires on more than this fraction of an epoch's examples.
pub const DENSE_FREQUENCY: f64 = 0.1;

/// Mixed into the seed for the resampling's draws (so that they are not the shuffle's).
const RESAMPLE_SEED: u64 = 0x5eed_dead_1a7e_0001;

/// Weiszfeld steps of the geometric median of `b_dec`'s start.
const MEDIAN_ITERATIONS: usize = 100;

/// How to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopKOptions {
    pub rule: StepRule,
    /// How the rule's learning rate moves over the run's steps [default: constant].
    pub schedule: Schedule,
    pub batch_size: usize,
    pub epochs: usize,
    /// Seed of the example order.
    pub seed: u64,
    /// How each epoch orders the examples (streamed data needs [`Shuffle::Blocks`]).
    pub shuffle: Shuffle,
    /// Keep the decoder rows at unit norm (see the module's documentation).
    pub unit_norm_decoder: bool,
    /// Start `b_dec` at the geometric median of the first minibatch (else keep the initial
    /// model's).
    pub median_init: bool,
    /// Scale the inputs to unit mean squared norm while training (see the module's
    /// documentation); the trained model applies to the inputs unscaled.
    pub normalize_inputs: bool,
    /// The weight `α` of the auxiliary loss on dead latents (0, the default: off; 1/32 is the
    /// usual, see [`AuxK`]).
    pub auxk_alpha: f64,
    /// The dead latents each example's auxiliary loss uses [default: `n/2`].
    pub k_aux: Option<usize>,
    /// Start with this many latents per example and lower it linearly to the model's `k` over
    /// the first half of the steps [default: the model's `k` throughout].
    pub k_start: Option<usize>,
    /// Every this many steps, restart the dead latents on badly reconstructed inputs (see the
    /// `resample` module) [default: never].
    pub resample_every: Option<u64>,
    /// A latent is dead once it has not fired on this many examples in a row [default: 10
    /// million, or the data's examples when fewer: a latent silent for a whole epoch].
    pub dead_after: Option<u64>,
    /// With a batch selection, the weight of each minibatch's smallest selected activation in
    /// the running mean that becomes the model's inference threshold.
    pub threshold_rate: f64,
    /// `λ` of the L1 penalty on the activations weighted by the decoder rows' norms (see
    /// [`TopKObjective::set_l1`]): the sparsity of a ReLU sparse autoencoder [default: 0].
    pub l1_coefficient: f64,
    /// With held-out data: stop once this many epochs in a row have not lowered the held-out
    /// FVU, and return the model of the epoch with the lowest (with or without an early stop)
    /// [default: train every epoch, return the last model]. During a schedule of `k` the
    /// epochs are not compared (their FVU is at another `k`): the watch starts at the model's.
    pub early_stopping: Option<usize>,
}

impl Default for TopKOptions {
    /// Adam at 1e-3, minibatches of 1024, 10 epochs, unit-norm decoder, `b_dec` at the median,
    /// no AuxK (on the planted problems measured here it did not lower the dead latents, see
    /// PERF.md).
    fn default() -> Self {
        TopKOptions {
            rule: StepRule::adam(1e-3),
            schedule: Schedule::CONSTANT,
            batch_size: 1024,
            epochs: 10,
            seed: 1,
            shuffle: Shuffle::Full,
            unit_norm_decoder: true,
            median_init: true,
            normalize_inputs: false,
            auxk_alpha: 0.0,
            k_aux: None,
            k_start: None,
            resample_every: None,
            dead_after: None,
            threshold_rate: 0.01,
            l1_coefficient: 0.0,
            early_stopping: None,
        }
    }
}

impl TopKOptions {
    /// Makhzani & Frey's practice for k-sparse autoencoders, with Adam in place of their
    /// momentum: no unit-norm decoder (the weights are tied), `k` from `k_start` down.
    pub fn k_sparse(k_start: usize) -> Self {
        TopKOptions { unit_norm_decoder: false, k_start: Some(k_start), ..TopKOptions::default() }
    }

    /// The practice for ReLU sparse autoencoders (Anthropic's, 2024): the L1 penalty `λ` on
    /// the activations weighted by the decoder rows' norms, which are left free (the penalty
    /// is what keeps a latent from growing its decoder row to shrink its activation).
    pub fn relu(l1_coefficient: f64) -> Self {
        TopKOptions { unit_norm_decoder: false, l1_coefficient, ..TopKOptions::default() }
    }
}

/// `k` at step `step` (from 0) of `total`: `k_start` lowered linearly to `k` over the first
/// half of the steps, `k` after (and throughout a run of one step, which has no first half).
fn scheduled_k(k: usize, k_start: usize, step: u64, total: u64) -> usize {
    let ramp = total / 2;
    if step >= ramp || k_start <= k {
        return k;
    }
    k_start - ((k_start - k) as u128 * u128::from(step) / u128::from(ramp)) as usize
}

/// One finished epoch: its metrics over the minibatches it trained on (each measured before
/// its step).
#[derive(Debug, Clone, PartialEq)]
pub struct TopKEpoch {
    /// Epochs completed.
    pub epoch: usize,
    /// Steps taken in all.
    pub steps: u64,
    pub metrics: TopKMetrics,
    /// The model's metrics on the held-out data at the end of the epoch (with
    /// [`fit_held_out`](TopKTrainer::fit_held_out)), as [`measure`] gives them.
    pub held_out: Option<TopKMetrics>,
}

/// The metrics of dictionary learning over a set of examples (an epoch's minibatches, or a
/// data set with [`measure`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TopKMetrics {
    /// The loss per example, `1/(2m) Σ ‖x̂ − x‖²` over the examples measured.
    pub loss: f64,
    /// Fraction of variance unexplained: `Σ ‖x̂ − x‖² / Σ ‖x − x̄‖²`, the variance taken
    /// around each minibatch's (chunk's) mean, as sparsify measures it; `1 − fvu` is the
    /// explained variance.
    pub fvu: f64,
    /// `Σ ‖x̂ − x‖² / Σ ‖x‖²`.
    pub normalized_mse: f64,
    /// Mean active latents per example.
    pub l0: f64,
    /// Fraction of latents that never fired.
    pub dead: f64,
    /// Fraction of latents that fired on more than [`DENSE_FREQUENCY`] of the examples.
    pub dense: f64,
    /// Each latent's firing frequency: the fraction of the examples it was active on.
    pub frequencies: Vec<f64>,
}

impl TopKMetrics {
    /// `1 − fvu`.
    pub fn explained_variance(&self) -> f64 {
        1.0 - self.fvu
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct TopKTrained<T> {
    pub model: TopKModel<T>,
    /// Every finished epoch's metrics.
    pub epochs: Vec<TopKEpoch>,
    /// Epochs completed in all, those before a resumption included.
    pub epochs_completed: usize,
    pub steps: u64,
    pub stop: MinibatchStop,
    /// With early stopping, the epoch whose model `model` is: the one of the lowest held-out
    /// FVU.
    pub chosen_epoch: Option<usize>,
    /// Why a checkpoint could not be written, when one could not: that ended the run
    /// ([`MinibatchStop::CheckpointFailed`]), and `model` is the model of that moment (with
    /// early stopping, its best epoch's), so that the caller can keep it before reporting the
    /// error.
    pub checkpoint_error: Option<Error>,
}

/// Trains TopK models with [`TopKOptions`].
#[derive(Debug, Clone)]
pub struct TopKTrainer {
    options: TopKOptions,
    stop: Option<Arc<AtomicBool>>,
    time_limit: Option<Duration>,
    /// Where to write checkpoints, and every how many steps.
    checkpoint: Option<(PathBuf, u64)>,
    /// The checkpoint to continue.
    resume: Option<PathBuf>,
    /// Metadata every checkpoint records beside the run's state (see `annotate_checkpoints`).
    annotations: Vec<(String, String)>,
}

impl TopKTrainer {
    pub fn new(options: TopKOptions) -> Result<Self> {
        options.rule.check()?;
        options.schedule.check()?;
        options.shuffle.check()?;
        if options.batch_size == 0 {
            return Err(Error::InvalidHyperParameter { name: "batch size", value: 0.0, reason: "must be at least 1" });
        }
        if !(options.auxk_alpha >= 0.0 && options.auxk_alpha.is_finite()) {
            return Err(Error::InvalidHyperParameter {
                name: "AuxK alpha",
                value: options.auxk_alpha,
                reason: "must be finite and at least 0",
            });
        }
        if options.auxk_alpha == 0.0 && options.k_aux.is_some() {
            return Err(Error::InvalidOption {
                name: "k_aux",
                reason: "k_aux shapes the auxiliary loss, which is off (auxk_alpha 0)".into(),
            });
        }
        if options.auxk_alpha == 0.0 && options.resample_every.is_none() && options.dead_after.is_some() {
            return Err(Error::InvalidOption {
                name: "dead_after",
                reason: "dead_after tells which latents AuxK and resampling treat as dead; both are off".into(),
            });
        }
        if !(options.l1_coefficient >= 0.0 && options.l1_coefficient.is_finite()) {
            return Err(Error::InvalidHyperParameter {
                name: "l1 coefficient",
                value: options.l1_coefficient,
                reason: "must be finite and at least 0",
            });
        }
        if !(options.threshold_rate > 0.0 && options.threshold_rate <= 1.0) {
            return Err(Error::InvalidHyperParameter {
                name: "threshold rate",
                value: options.threshold_rate,
                reason: "must be in (0, 1]",
            });
        }
        for (name, value) in [
            ("early_stopping", options.early_stopping.map(|p| p as u64)),
            ("k_aux", options.k_aux.map(|k| k as u64)),
            ("dead_after", options.dead_after),
            ("resample_every", options.resample_every),
        ] {
            if value == Some(0) {
                return Err(Error::InvalidHyperParameter { name, value: 0.0, reason: "must be at least 1" });
            }
        }
        Ok(TopKTrainer {
            options,
            stop: None,
            time_limit: None,
            checkpoint: None,
            resume: None,
            annotations: Vec::new(),
        })
    }

    /// Ends the run after the step during which `flag` becomes true, with
    /// [`MinibatchStop::Interrupted`] and the model of that step.
    pub fn stop_when(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Ends the run after the first step that finishes `limit` after it started.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Writes a checkpoint (see the `checkpoint` module) to `path` every `every` steps and when
    /// the run ends, however it ends; atomically. A checkpoint that cannot be written ends the
    /// run, which still returns `Ok` with the model so far: check
    /// [`TopKTrained::checkpoint_error`].
    pub fn checkpoint_to(mut self, path: impl Into<PathBuf>, every: u64) -> Self {
        self.checkpoint = Some((path.into(), every.max(1)));
        self
    }

    /// Records `metadata` in every checkpoint beside the run's state: what a resumed run needs
    /// to know of this one (its threads and instruction set, on which the bits of a
    /// continuation depend; the command). The state's keys win over these, and keys under
    /// `topk.`, `data.` and `validation.` (the state's namespaces) are not written; a key the
    /// model file itself uses (`k`, `threshold`, …) fails the checkpoint.
    pub fn annotate_checkpoints(mut self, metadata: impl IntoIterator<Item = (String, String)>) -> Self {
        self.annotations.extend(metadata);
        self
    }

    /// Continues the run saved in the checkpoint at `path` (of a run of the same options and
    /// model shape, on the same data, checked) instead of starting from `init`'s parameters:
    /// the run then takes the steps the uninterrupted run would have, bit for bit on the same
    /// threads. The epochs the result lists are those run after the resumption.
    pub fn resuming_from(mut self, path: impl Into<PathBuf>) -> Self {
        self.resume = Some(path.into());
        self
    }

    /// Whether the run needs its data's fingerprint: when checkpoints are written or read.
    fn fingerprints(&self) -> bool {
        self.checkpoint.is_some() || self.resume.is_some()
    }

    /// Trains `init` on `data` in memory (scanned for non-finite values first); `on_epoch` sees
    /// each finished epoch and may end the run there (see [`Control`]).
    pub fn fit<T: Real, C: Control>(
        &self,
        data: &Dataset<'_, T>,
        init: TopKModel<T>,
        on_epoch: impl FnMut(&TopKEpoch) -> C,
    ) -> Result<TopKTrained<T>> {
        self.fit_split(Part::whole(data), None, &Alone, init, on_epoch)
    }

    /// As [`fit`](Self::fit), measuring the model at the end of each epoch on `held_out`
    /// (examples of `n` values, row-major; scanned for non-finite values first): each
    /// [`TopKEpoch::held_out`].
    pub fn fit_held_out<T: Real, C: Control>(
        &self,
        data: &Dataset<'_, T>,
        held_out: &[T],
        init: TopKModel<T>,
        on_epoch: impl FnMut(&TopKEpoch) -> C,
    ) -> Result<TopKTrained<T>> {
        self.fit_split(Part::whole(data), Some(held_out), &Alone, init, on_epoch)
    }

    /// As [`fit`](Self::fit) (or [`fit_held_out`](Self::fit_held_out)) on a data set split
    /// across the processes of `collective`, this process holding `part` (see
    /// [`crate::objective::distributed`]; each process's rows scanned for non-finite values
    /// first): every minibatch of the whole data set's order is evaluated by the processes
    /// holding its rows, and one sum per step gives each the whole minibatch's gradient and
    /// metrics, so that every process takes the same steps and returns the same model. Every
    /// process is given the same trainer (options, checkpoint and resumption, of which the
    /// first process writes the checkpoints; a checkpoint resumes on as many processes), the
    /// same `init` and the same `held_out` data (the first process measures it, and every
    /// process receives its figures): a first sum checks that they were, and that the parts
    /// are the data set's rows in rank order, once each. A stop one process is asked for (its
    /// flag, callback or time limit) stops every process after the same step. With a batch
    /// selection each process keeps the `k·B_p` largest activations of its `B_p` rows (as
    /// data-parallel trainers do), so the run is not that of one process; otherwise it is, to
    /// the rounding of the sums. Resampling dead latents is refused. Collective.
    pub fn fit_split<T: Real, Ctl: Control, C: Collective>(
        &self,
        part: Part<'_, '_, T>,
        held_out: Option<&[T]>,
        collective: &C,
        init: TopKModel<T>,
        on_epoch: impl FnMut(&TopKEpoch) -> Ctl,
    ) -> Result<TopKTrained<T>> {
        let local = part.data.map_or(0, |data| data.examples());
        sums::check_alike(collective, || self.alike(part.first_example, local, part.examples, &init, held_out))?;
        let checked = part.data.map_or(Ok(()), |data| data.check_finite().map_err(|e| in_whole(e, part.first_example)));
        agree(collective, checked, "checking its part of the data")?;
        let held_out = held_out.map(|held_out| check_held_out(held_out, init.visible())).transpose()?;
        let fingerprint = match self.fingerprints() {
            true => Some(Split::new(collective).fingerprint(part_fingerprint(&part, init.visible()))?),
            false => None,
        };
        let feed = InMemory::new(part, self.options.shuffle, self.options.seed);
        self.run(feed, init, held_out, fingerprint, collective, on_epoch)
    }

    /// As [`fit`](Self::fit) on data read from storage a window of blocks at a time (the
    /// options' shuffle must be [`Shuffle::Blocks`]), the next window read on a thread of its
    /// own meanwhile: memory is two windows, the minibatch and the model.
    pub fn fit_streamed<T: Real, S: SeekableSource<T> + Send, C: Control>(
        &self,
        part: StreamedPart<S>,
        init: TopKModel<T>,
        on_epoch: impl FnMut(&TopKEpoch) -> C,
    ) -> Result<TopKTrained<T>> {
        self.fit_streamed_split(part, None, &Alone, init, on_epoch)
    }

    /// As [`fit_streamed`](Self::fit_streamed), measuring the model at the end of each epoch
    /// on `held_out` (in memory), as [`fit_held_out`](Self::fit_held_out) does.
    pub fn fit_streamed_held_out<T: Real, S: SeekableSource<T> + Send, C: Control>(
        &self,
        part: StreamedPart<S>,
        held_out: &[T],
        init: TopKModel<T>,
        on_epoch: impl FnMut(&TopKEpoch) -> C,
    ) -> Result<TopKTrained<T>> {
        self.fit_streamed_split(part, Some(held_out), &Alone, init, on_epoch)
    }

    /// As [`fit_split`](Self::fit_split) on data read from storage, each process reading its
    /// rows (`part`, made by [`StreamedPart::new`]) as [`fit_streamed`](Self::fit_streamed)
    /// does. Collective.
    pub fn fit_streamed_split<T: Real, S: SeekableSource<T> + Send, Ctl: Control, C: Collective>(
        &self,
        mut part: StreamedPart<S>,
        held_out: Option<&[T]>,
        collective: &C,
        init: TopKModel<T>,
        on_epoch: impl FnMut(&TopKEpoch) -> Ctl,
    ) -> Result<TopKTrained<T>> {
        let (first, local, examples) = (part.first_example(), part.local(), part.examples());
        sums::check_alike(collective, || self.alike(first, local, examples, &init, held_out))?;
        // (The same on every process, whose held-out data are alike.)
        let held_out = held_out.map(|held_out| check_held_out(held_out, init.visible())).transpose()?;
        let options = MinibatchOptions {
            rule: self.options.rule,
            schedule: self.options.schedule,
            batch_size: self.options.batch_size,
            epochs: self.options.epochs,
            rho_momentum: 0.0,
            seed: self.options.seed,
            shuffle: self.options.shuffle,
        };
        let fingerprint = match self.fingerprints() {
            true => {
                let local =
                    agree(collective, DataFingerprint::of_source(part.source_mut()), "reading its part of the data")?;
                Some(Split::new(collective).fingerprint(local)?)
            }
            false => None,
        };
        std::thread::scope(|scope| {
            // Any finite value is an input of a linear reconstruction.
            let feed = Streamed::spawn(scope, part, &options, Reconstruction::LinearSquaredError);
            let feed = agree(collective, feed, "reading its part of the data")?;
            self.run(feed, init, held_out, fingerprint, collective, on_epoch)
        })
    }

    /// What every process of a run must share with the others, beside its `local` rows from
    /// `first` of the data set's `examples` (see [`sums::check_alike`]).
    fn alike<T: Real>(
        &self,
        first: usize,
        local: usize,
        examples: usize,
        init: &TopKModel<T>,
        held_out: Option<&[T]>,
    ) -> Alike {
        let count = |value: usize| value as f64;
        let mut shared = vec![
            ("bytes per value", count(std::mem::size_of::<T>())),
            ("inputs", count(init.visible())),
            ("latents", count(init.latents())),
            ("k", count(init.k())),
            ("held-out values", count(held_out.map_or(0, <[T]>::len))),
            ("checkpoints every", self.checkpoint.as_ref().map_or(0.0, |(_, every)| *every as f64)),
            ("resumption", count(usize::from(self.resume.is_some()))),
        ];
        let options = format!("{:?} {:?}", self.options, init.architecture());
        shared.extend(sums::hash_halves("options (hash)", text_hash(&options)));
        shared.extend(sums::hash_halves("initial parameters (hash)", parameters_hash(init.params())));
        shared.extend(sums::hash_halves("held-out data (hash)", held_out.map_or(0, parameters_hash)));
        Alike { first, local, examples, shared }
    }

    /// Runs on `feed`, this process's rows of the data (all of them, with `collective` of
    /// [`Alone`]), each epoch measured on `held_out` (the whole of it; the first process
    /// measures it), the checkpoints of `fingerprint`'s data.
    fn run<T: Real, Ctl: Control, C: Collective>(
        &self,
        mut feed: impl Feed<T>,
        init: TopKModel<T>,
        held_out: Option<Dataset<'_, T>>,
        fingerprint: Option<DataFingerprint>,
        collective: &C,
        mut on_epoch: impl FnMut(&TopKEpoch) -> Ctl,
    ) -> Result<TopKTrained<T>> {
        let options = self.options;
        let deadline = Deadline::after(self.time_limit);
        let (n, h, k, m) = (init.visible(), init.latents(), init.k(), feed.examples());
        let (rank, size) = (collective.rank(), collective.size());
        let features = match feed.features().filter(|&f| f != n) {
            Some(features) => Err(Error::shape_mismatch("data features", format!("n = {n}"), features)),
            None => Ok(()),
        };
        agree(collective, features, "checking its part of the data")?;
        if m == 0 {
            return Err(Error::EmptyData { what: "training data" });
        }
        if size > 1 && options.resample_every.is_some() {
            return Err(Error::InvalidOption {
                name: "resample_every",
                reason: "dead latents are not resampled across processes yet (AuxK revives them)".into(),
            });
        }
        let batch_size = options.batch_size.min(m);
        let architecture = init.architecture();
        if architecture.tied && options.unit_norm_decoder {
            return Err(Error::InvalidOption {
                name: "unit_norm_decoder",
                reason: "tied weights: holding the decoder rows at unit norm would hold the encoder's too".into(),
            });
        }
        if options.early_stopping.is_some() && held_out.is_none() {
            return Err(Error::InvalidOption {
                name: "early_stopping",
                reason: "early stopping watches held-out data: train with fit_held_out or fit_streamed_held_out".into(),
            });
        }
        let k_start = options.k_start.unwrap_or(k);
        if k_start < k || k_start > h {
            return Err(Error::InvalidHyperParameter {
                name: "k_start",
                value: k_start as f64,
                reason: "must be at least the model's k and at most its latents",
            });
        }
        let batches = m.div_ceil(options.batch_size);
        let total_steps = (batches as u64).saturating_mul(options.epochs as u64);
        let mut objective = TopKObjective::<T>::for_architecture(architecture, n, h, k_start, batch_size)?;
        objective.set_l1(options.l1_coefficient)?;
        let layout = init.layout();
        let fingerprints = fingerprint.map(|data| checkpoint::Fingerprints {
            data,
            held_out: held_out.as_ref().map(DataFingerprint::of_dataset),
            processes: size,
        });
        let mut now = match (&self.resume, &fingerprints) {
            (Some(path), Some(fingerprints)) => {
                let resumed = checkpoint::read(path, &init, &options, (m, batches), fingerprints);
                let resumed = agree(collective, resumed, "reading the checkpoint")?;
                // (Each process reads its own copy, which may not be the others'.)
                sums::check_alike(collective, || {
                    let scale = resumed.input_scale.map_or(0.0, |scale| scale.as_f64());
                    let mut shared = vec![
                        ("checkpoint's epoch", resumed.epoch as f64),
                        ("checkpoint's minibatch", resumed.batch as f64),
                        ("checkpoint's steps", resumed.rule.steps as f64),
                        ("checkpoint's input scale", scale),
                    ];
                    let hash = parameters_hash(&resumed.params);
                    shared.extend(sums::hash_halves("checkpoint's parameters (hash)", hash));
                    let held = feed.held();
                    Alike { first: held.start, local: held.len(), examples: m, shared }
                })?;
                log::info!("resuming {} in epoch {}", path.display(), resumed.epoch + 1);
                resumed
            }
            _ => RunState::start(&init),
        };
        let patience = options.early_stopping.unwrap_or(usize::MAX);
        let patience_out =
            |now: &RunState<T>| now.best.as_ref().is_some_and(|(chosen, _, _)| now.epoch - chosen >= patience);
        let mut stop = MinibatchStop::MaxEpochs;
        // A checkpoint written where early stopping ended its run (or would have, had the run not
        // ended there anyway) goes no further.
        if now.batch == 0 && now.epoch < options.epochs && patience_out(&now) {
            stop = MinibatchStop::EarlyStopping;
        }
        // One process takes each step inside the backward pass, which never stores the
        // gradient; several sum their gradients first.
        let step_in_backward = size == 1;
        let mut grad = match step_in_backward {
            true => Vec::new(),
            false => vec![T::zero(); now.params.len()],
        };
        let aux = (options.auxk_alpha > 0.0).then(|| AuxK {
            k_aux: options.k_aux.unwrap_or(AuxK::for_inputs(n).k_aux).min(h),
            alpha: options.auxk_alpha,
        });
        let dead_after = options.dead_after.unwrap_or((m as u64).min(10_000_000));
        let mut dead = vec![false; h];
        let mark_dead = |dead: &mut [bool], last_fired: &[u64], seen: u64| {
            for (dead, &last) in dead.iter_mut().zip(last_fired) {
                *dead = seen - last >= dead_after;
            }
        };
        if let Some(every) = options.resample_every.filter(|&every| every.saturating_mul(2) > total_steps) {
            log::warn!("resampling every {every} steps: a run of {total_steps} steps resamples no latent");
        }
        let checkpoints = self.checkpoint.as_ref().zip(fingerprints.as_ref());
        // (Written by the first process; collective.)
        let save = |now: &RunState<T>| -> Result<()> {
            if let Some(((path, _), fingerprints)) = checkpoints {
                let written = match rank {
                    0 => checkpoint::write(path, &init, &options, now, fingerprints, &self.annotations),
                    _ => Ok(()),
                };
                agree(collective, written, "writing the checkpoint")?;
                if rank == 0 {
                    log::info!("checkpoint of step {} written to {}", now.rule.steps, path.display());
                }
            }
            Ok(())
        };
        let every = checkpoints.map_or(u64::MAX, |((_, every), _)| *every);
        let mut saved_at = now.rule.steps;
        let mut checkpoint_error = None;
        let mut batch_values = vec![T::zero(); batch_size * n];
        let mut sums = StepSums::new(n, h);
        let mut epochs = Vec::new();
        'epochs: while now.epoch < options.epochs && stop == MinibatchStop::MaxEpochs {
            while now.batch < batches {
                let (epoch, batch_index) = (now.epoch, now.batch);
                let positions = batch_index * options.batch_size..((batch_index + 1) * options.batch_size).min(m);
                let whole_batch = positions.len();
                let mut filled = feed.fill(epoch, positions, &mut batch_values);
                // The first step's scale and median are sums over every process's rows.
                let first_sums = (options.normalize_inputs && now.input_scale.is_none())
                    || (now.rule.steps == 0 && options.median_init);
                if first_sums {
                    filled = Ok(agree(collective, filled, "reading its rows of a minibatch")?);
                }
                let count = *filled.as_ref().unwrap_or(&0);
                let values = &mut batch_values[..count * n];
                if options.normalize_inputs {
                    let scale = match now.input_scale {
                        Some(scale) => scale,
                        None => *now.input_scale.insert(unit_mean_square_scale(values, n, collective)?),
                    };
                    values.iter_mut().for_each(|v| *v = *v * scale);
                }
                let values = &*values;
                if now.rule.steps == 0 && options.median_init {
                    let sum = |sums: &mut [f64]| sums::sum_in_place(collective, sums);
                    let median = geometric_median_summed(values, n, MEDIAN_ITERATIONS, 1e-6, sum)?;
                    let b_dec = layout.split_mut(&mut now.params).b_dec;
                    b_dec.iter_mut().zip(median).for_each(|(b, median)| *b = T::cast(median));
                }
                if aux.is_some() {
                    mark_dead(&mut dead, &now.last_fired, now.seen);
                    objective.set_aux(aux, &dead)?;
                }
                let step_k = scheduled_k(k, k_start, now.rule.steps, total_steps);
                if step_k != objective.k() {
                    objective.set_k(step_k)?;
                }
                // (Counted before the evaluation, which takes the step in one process.)
                let step = now.rule.steps + 1;
                let position = (epoch * batches + batch_index) as u64;
                let rule = options.rule.scaled(options.schedule.factor(position, total_steps));
                let evaluated = filled.and_then(|count| match count {
                    0 => Ok(None),
                    _ => {
                        let batch = Dataset::unscanned(values, count, n, Layout::ExamplesByFeatures)?;
                        let (loss, stats) = match step_in_backward {
                            // (Not taken when the loss is not finite: the run stops below.)
                            true => objective.evaluate_step(
                                &mut now.params,
                                &batch,
                                &mut now.rule,
                                &rule,
                                options.unit_norm_decoder,
                            )?,
                            false => objective.evaluate(&now.params, &mut grad, &batch)?,
                        };
                        Ok(Some(Evaluated { loss, stats, values, slots: objective.codes().0 }))
                    }
                });
                let asked = outside_stop(&self.stop, false, &deadline);
                let share = count as f64 / whole_batch as f64;
                let summed = sums.sum(collective, evaluated, share, asked, &now.params, &mut grad)?;
                if !summed.loss.is_finite() {
                    return Err(Error::NonFiniteCost { iteration: step as usize, value: summed.loss });
                }
                if let Some(smallest) = summed.smallest_selected {
                    now.threshold =
                        Some(now.threshold.map_or(smallest, |t| t + options.threshold_rate * (smallest - t)));
                }
                now.tally.add_batch(summed.batch, n);
                now.seen += whole_batch as u64;
                let fired = &summed.batch[3 + n..];
                for (last, _) in now.last_fired.iter_mut().zip(fired).filter(|(_, &f)| f > 0.0) {
                    *last = now.seen;
                }
                let outside = summed.stop;
                match (step_in_backward, options.unit_norm_decoder) {
                    (true, _) => {}
                    (false, true) => layout.unit_norm_step(&mut now.rule, &rule, &mut now.params, &mut grad),
                    (false, false) => now.rule.step(&rule, &mut now.params, &grad),
                }
                if architecture.tied {
                    let blocks = layout.split_mut(&mut now.params);
                    blocks.w_dec.copy_from_slice(blocks.w_enc);
                }
                // (Not in the last `every` steps: the run ends on trained rows.)
                let resample_now = options
                    .resample_every
                    .is_some_and(|every| now.rule.steps.is_multiple_of(every) && now.rule.steps + every <= total_steps);
                if resample_now {
                    mark_dead(&mut dead, &now.last_fired, now.seen);
                    let residuals = objective.residuals();
                    // Draws of their own for each step (so that a resumed run draws the same).
                    let mut draws = Xoshiro256PlusPlus::seed_from_u64(
                        (options.seed ^ RESAMPLE_SEED).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ now.rule.steps,
                    );
                    let restarted = resample::resample(
                        layout,
                        architecture,
                        &mut now.params,
                        &mut now.rule,
                        &dead,
                        residuals,
                        &mut draws,
                    );
                    if restarted > 0 {
                        log::info!("step {step}: {restarted} dead latents resampled");
                        // A fresh window to fire in.
                        let seen = now.seen;
                        for (last, _) in now.last_fired.iter_mut().zip(&dead).filter(|(_, &d)| d) {
                            *last = seen;
                        }
                    }
                }
                if let Some(index) = first_non_finite(&now.params) {
                    let (block, row, column) = layout.locate(index);
                    log::error!("step {step} made {block}[{row}, {column}] non-finite");
                    return Err(Error::NonFiniteCost { iteration: step as usize, value: f64::NAN });
                }
                now.batch += 1;
                if now.batch < batches {
                    if outside.is_some() || now.rule.steps - saved_at >= every {
                        if let Err(error) = save(&now) {
                            if let Some(outside) = outside {
                                let stopping = MinibatchStop::from(outside);
                                log::warn!("the run was stopping ({stopping}) when its checkpoint failed");
                            }
                            (stop, checkpoint_error) = (MinibatchStop::CheckpointFailed, Some(error));
                            break 'epochs;
                        }
                        saved_at = now.rule.steps;
                    }
                    if let Some(outside) = outside {
                        stop = outside.into();
                        break 'epochs;
                    }
                }
            }
            now.epoch += 1;
            now.batch = 0;
            let mut metrics = std::mem::replace(&mut now.tally, Tally::new(h)).finish();
            // The loss in the data's own units (FVU and the others do not depend on them).
            if let Some(scale) = now.input_scale {
                metrics.loss /= scale.as_f64().powi(2);
            }
            let held_out = match &held_out {
                Some(held_out) => {
                    // (With the k of the epoch's last steps, during a schedule of k.)
                    let model =
                        trained_model(&init, &now.params, now.input_scale, now.threshold)?.with_k(objective.k())?;
                    let metrics = measure_on_first(&model, held_out, batch_size, collective)?;
                    // Epochs compare at the model's k only (not during a schedule of k); a held-out
                    // FVU that is not a number is the worst.
                    let better = |(_, fvu, _): &(usize, f64, TopKModel<T>)| metrics.fvu < *fvu || fvu.is_nan();
                    if options.early_stopping.is_some() && objective.k() == k && now.best.as_ref().is_none_or(better) {
                        now.best = Some((now.epoch, metrics.fvu, model.with_k(k)?));
                    }
                    Some(metrics)
                }
                None => None,
            };
            let ended = TopKEpoch { epoch: now.epoch, steps: now.rule.steps, metrics, held_out };
            let metrics = &ended.metrics;
            log::debug!(
                "TopK epoch {}: loss {:.6e}, FVU {:.4}, L0 {:.2}, dead {:.3}",
                ended.epoch,
                metrics.loss,
                metrics.fvu,
                metrics.l0,
                metrics.dead
            );
            let requested = on_epoch(&ended).stops();
            epochs.push(ended);
            let last = now.epoch == options.epochs;
            // (Every process makes the same collective calls, so each asks to stop or not.)
            let outside = sums::agreed_stop(collective, outside_stop(&self.stop, requested, &deadline))?;
            let ending = if last {
                None
            } else if patience_out(&now) {
                Some(MinibatchStop::EarlyStopping)
            } else {
                outside.map(Into::into)
            };
            if last || ending.is_some() || now.rule.steps - saved_at >= every {
                if let Err(error) = save(&now) {
                    if let Some(ending) = ending {
                        log::warn!("the run was stopping ({ending}) when its checkpoint failed");
                    }
                    (stop, checkpoint_error) = (MinibatchStop::CheckpointFailed, Some(error));
                    break;
                }
                saved_at = now.rule.steps;
            }
            if let Some(ending) = ending {
                stop = ending;
                break;
            }
        }
        let (model, chosen_epoch) = match now.best {
            Some((epoch, _, model)) => (model, Some(epoch)),
            None => (trained_model(&init, &now.params, now.input_scale, now.threshold)?, None),
        };
        let epochs_completed = now.epoch;
        Ok(TopKTrained { model, steps: now.rule.steps, epochs, epochs_completed, stop, chosen_epoch, checkpoint_error })
    }
}

/// The model of `params` (of `init`'s shape and architecture) applying to the data unscaled:
/// the inputs' scale folded into the biases and the threshold (`threshold` `None`: `init`'s).
fn trained_model<T: Real>(
    init: &TopKModel<T>,
    params: &[T],
    input_scale: Option<T>,
    threshold: Option<f64>,
) -> Result<TopKModel<T>> {
    let mut params = params.to_vec();
    let mut threshold = threshold.unwrap_or(init.threshold());
    if let Some(scale) = input_scale {
        let blocks = init.layout().split_mut(&mut params);
        blocks.b_dec.iter_mut().chain(blocks.b_enc.iter_mut()).for_each(|b| *b = *b / scale);
        threshold /= scale.as_f64();
    }
    TopKModel::from_params(init.visible(), init.latents(), init.k(), params)?
        .with_architecture(init.architecture())?
        .with_threshold(threshold)
}

/// `held_out` as the examples of `n` values it must be: a whole number of them, at least one,
/// all finite.
fn check_held_out<T: Real>(held_out: &[T], n: usize) -> Result<Dataset<'_, T>> {
    if held_out.is_empty() {
        return Err(Error::EmptyData { what: "held-out data" });
    }
    if !held_out.len().is_multiple_of(n) {
        return Err(Error::shape_mismatch("held-out data", format!("rows of n = {n} values"), held_out.len()));
    }
    // (Scanned as it is made: a non-finite value is named as the held-out data's.)
    Dataset::examples_by_features(held_out, held_out.len() / n, n).map_err(|e| match e {
        Error::NonFiniteData { row, column, value, .. } => {
            Error::NonFiniteData { what: "held-out data", row, column, value }
        }
        other => other,
    })
}

/// `c` with `mean ‖c x‖² = 1` over the rows of `values` of every process of `collective` (1
/// for rows of zeros).
fn unit_mean_square_scale<T: Real, C: Collective>(values: &[T], n: usize, collective: &C) -> Result<T> {
    let mut sums = [values.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>(), (values.len() / n) as f64];
    sums::sum_in_place(collective, &mut sums)?;
    let mean_square = sums[0] / sums[1].max(1.0);
    Ok(T::cast(if mean_square > 0.0 { 1.0 / mean_square.sqrt() } else { 1.0 }))
}

/// The metrics of `model` on the examples of `source` (from its start), read `chunk` at a
/// time: what [`TopKTrainer`] reports per epoch, for a trained model on any data (held-out
/// data, say). Memory: a chunk and its workspace, whatever the size of the data.
pub fn measure<T: Real>(model: &TopKModel<T>, source: &mut impl ExampleSource<T>, chunk: usize) -> Result<TopKMetrics> {
    measure_tally(model, source, chunk).map(Tally::finish)
}

/// [`measure`] of `held_out` on every process of `collective`: the first measures it in chunks
/// of `chunk` and the others receive its sums, so that every process has the figures (and
/// makes the decisions) of one process. Collective.
fn measure_on_first<T: Real, C: Collective>(
    model: &TopKModel<T>,
    held_out: &Dataset<'_, T>,
    chunk: usize,
    collective: &C,
) -> Result<TopKMetrics> {
    let tally = match collective.rank() {
        0 => SliceSource::new(held_out.values(), model.visible())
            .and_then(|mut source| measure_tally(model, &mut source, chunk)),
        _ => Ok(Tally::new(model.latents())),
    };
    let tally = agree(collective, tally, "measuring the held-out data")?;
    let mut sums = tally.to_sums();
    sums::sum_in_place(collective, &mut sums)?;
    Ok(Tally::from_sums(&sums).finish())
}

/// The [`Tally`] of [`measure`].
fn measure_tally<T: Real>(model: &TopKModel<T>, source: &mut impl ExampleSource<T>, chunk: usize) -> Result<Tally> {
    let n = model.visible();
    if source.features() != n {
        return Err(Error::shape_mismatch("data features", format!("n = {n}"), source.features()));
    }
    if chunk == 0 {
        return Err(Error::InvalidOption { name: "chunk", reason: "must be at least 1 example".into() });
    }
    let chunk = chunk.min(source.examples_hint().unwrap_or(chunk).max(1));
    let mut objective = TopKObjective::for_model(model, chunk)?;
    let mut buffer = vec![T::zero(); chunk * n];
    let mut tally = Tally::new(model.latents());
    source.rewind()?;
    let mut first = 0;
    loop {
        let read = source.read_chunk(&mut buffer)?;
        if read == 0 {
            break;
        }
        let values = &buffer[..read * n];
        let batch = Dataset::examples_by_features(values, read, n)
            .map_err(|e| crate::objective::distributed::in_whole(e, first))?;
        let (_, stats) = objective.measure(model.params(), &batch)?;
        tally.add(stats.squared_error, values, n, objective.codes().0);
        first += read;
    }
    if first == 0 {
        return Err(Error::EmptyData { what: "data" });
    }
    Ok(tally)
}

/// The sums of an epoch (or of a pass over data), a minibatch at a time.
struct Tally {
    examples: usize,
    squared_error: f64,
    /// `Σ ‖x − x̄_batch‖²` and `Σ ‖x‖²`.
    variance: f64,
    energy: f64,
    active: usize,
    /// Examples on which each latent fired.
    fired: Vec<u64>,
}

/// The sums a minibatch adds to a [`Tally`], written into `out` (`3 + n + h` values):
/// `[examples, Σ‖r‖², Σ‖x‖², Σ x (n), the examples each latent fired on (h)]` — additive over
/// the processes holding the minibatch's rows (a whole tally's are [`Tally::to_sums`]).
fn batch_sums<T: Real>(out: &mut [f64], squared_error: f64, values: &[T], n: usize, slots: &[u32]) {
    out.fill(0.0);
    let (head, rest) = out.split_at_mut(3);
    let (column_sums, fired) = rest.split_at_mut(n);
    let mut energy = 0.0;
    for row in values.chunks_exact(n) {
        for (sum, v) in column_sums.iter_mut().zip(row) {
            let v = v.as_f64();
            *sum += v;
            energy += v * v;
        }
    }
    for &j in slots.iter().filter(|&&j| j != INACTIVE) {
        fired[j as usize] += 1.0;
    }
    head.copy_from_slice(&[(values.len() / n) as f64, squared_error, energy]);
}

impl Tally {
    fn new(latents: usize) -> Self {
        Tally { examples: 0, squared_error: 0.0, variance: 0.0, energy: 0.0, active: 0, fired: vec![0; latents] }
    }

    /// One minibatch of `values` (`n` per example), its squared error, and its slots.
    fn add<T: Real>(&mut self, squared_error: f64, values: &[T], n: usize, slots: &[u32]) {
        let mut sums = vec![0.0; 3 + n + self.fired.len()];
        batch_sums(&mut sums, squared_error, values, n, slots);
        self.add_batch(&sums, n);
    }

    /// One minibatch's [`batch_sums`] (of `n` inputs).
    fn add_batch(&mut self, sums: &[f64], n: usize) {
        let (count, squared_error, energy) = (sums[0], sums[1], sums[2]);
        let (column_sums, fired) = sums[3..].split_at(n);
        if count > 0.0 {
            // Σ ‖x − x̄‖² = Σ ‖x‖² − B ‖x̄‖².
            let mean_energy: f64 = column_sums.iter().map(|s| s * s).sum::<f64>() / count;
            self.variance += (energy - mean_energy).max(0.0);
        }
        self.energy += energy;
        self.examples += count as usize;
        self.squared_error += squared_error;
        for (total, &f) in self.fired.iter_mut().zip(fired) {
            *total += f as u64;
            self.active += f as usize;
        }
    }

    /// Its sums as values to sum over processes: `[examples, Σ‖r‖², variance, Σ‖x‖², active,
    /// fired (h)]` (a whole tally's, the variance about each minibatch's mean already taken:
    /// not [`batch_sums`]' layout); [`from_sums`](Self::from_sums) reads them back.
    fn to_sums(&self) -> Vec<f64> {
        let head = [self.examples as f64, self.squared_error, self.variance, self.energy, self.active as f64];
        head.into_iter().chain(self.fired.iter().map(|&f| f as f64)).collect()
    }

    /// The tally of [`to_sums`](Self::to_sums)' values (summed over processes, say).
    fn from_sums(sums: &[f64]) -> Self {
        Tally {
            examples: sums[0] as usize,
            squared_error: sums[1],
            variance: sums[2],
            energy: sums[3],
            active: sums[4] as usize,
            fired: sums[5..].iter().map(|&f| f as u64).collect(),
        }
    }

    fn finish(self) -> TopKMetrics {
        let examples = self.examples.max(1) as f64;
        let frequencies: Vec<f64> = self.fired.iter().map(|&f| f as f64 / examples).collect();
        let latents = frequencies.len().max(1) as f64;
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        TopKMetrics {
            loss: self.squared_error / (2.0 * examples),
            fvu: ratio(self.squared_error, self.variance),
            normalized_mse: ratio(self.squared_error, self.energy),
            l0: self.active as f64 / examples,
            dead: self.fired.iter().filter(|&&f| f == 0).count() as f64 / latents,
            dense: frequencies.iter().filter(|&&f| f > DENSE_FREQUENCY).count() as f64 / latents,
            frequencies,
        }
    }
}

mod checkpoint;
mod resample;
mod sums;
#[cfg(test)]
mod tests;
