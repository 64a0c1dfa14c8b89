//! The TopK autoencoder's loss and gradient on a minibatch of `B` examples, on sparse kernels:
//! one dense GEMM (the encoder's), everything else on the `k` active latents of each example.
//!
//! In the notation of [`super::model`], per example `e` (selection `S_e`: `|S_e| ≤ k`; with a
//! batch selection `Σ_e |S_e| ≤ kB`; every selectable latent for a ReLU model):
//!
//! ```text
//! xc_e = x_e − b_dec                         (n; the encoder's input, or x_e itself when the
//!                                            architecture has no pre-encoder bias)
//! Z    = XC W_encᵀ + 1 b_encᵀ                (B×h: the encoder GEMM by blocks of examples; the
//!                                            bias added by the selection as it scans)
//! a_e  = z_e on S_e, the k largest z_ej (positive ones only for ReLU units; the batch's kB
//!        largest in training and those above the threshold θ after, for a batch selection)
//! r_e  = x̂_e − x_e = Σ_{j∈S_e} a_ej W_dec[j] + b_dec − x_e
//! L    = 1/(2B) Σ_e ‖r_e‖²
//! ```
//!
//! and, the selection held fixed, with `δ_e = r_e / B` and `g_ej = W_dec[j] · δ_e` for `j ∈ S_e`:
//!
//! ```text
//! ∇W_dec[j] = Σ_{e: j∈S_e} a_ej δ_e       ∇W_enc[j] = Σ_{e: j∈S_e} g_ej xc_e       ∇b_enc[j] = Σ g_ej
//! ∇b_dec    = Σ_e δ_e − Σ_j ∇b_enc[j] W_enc[j]   (the second sum only with the pre-encoder bias)
//! ```
//!
//! With an L1 penalty `λ` on the activations weighted by the decoder rows' norms (Anthropic's
//! ReLU sparse autoencoders, 2024; any selection may carry it):
//!
//! ```text
//! L += λ/B Σ_e Σ_{j∈S_e} a_ej ‖W_dec[j]‖
//! g_ej += λ/B ‖W_dec[j]‖                     ∇W_dec[j] += λ/B (Σ_e a_ej) W_dec[j] / ‖W_dec[j]‖
//! ```
//!
//! With tied weights (`W_dec = W_enc = W`, see [`Architecture`]) `W`'s gradient is the sum of
//! the two rows above, `∇W[j] = Σ g_ej xc_e + a_ej δ_e`, written to `W_enc`'s block (`W_dec`'s
//! gets 0: the objective reads only `W_enc`).
//!
//! With [`AuxK`] (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"), the latents
//! marked dead also reconstruct what the live ones missed: each example's `k_aux` largest
//! positive dead pre-activations `S'_e` decode `ê_e = Σ_{j∈S'_e} a_ej W_dec[j]` (no bias), and
//!
//! ```text
//! L += α s/(2B) Σ_e ‖ê_e + r_e‖²      s = min(dead / k_aux, 1), r_e held constant
//! ```
//!
//! whose gradient reaches only the dead latents' rows (and, with the pre-encoder bias, `b_dec`
//! through their encoders),
//! by the same sparse kernels with `δ'_e = α s (ê_e + r_e)/B` in place of `δ_e`.
//!
//! The decoding is `k` AXPYs per example, taken latent by latent once every example is selected
//! (each thread's range of examples, its active slots sorted by latent): each decoder row is read
//! once per range, for all of the range's examples that use it, rather than once per example
//! from anywhere in `W_dec`, while the residual rows it adds to stay in cache. (In f32 at `n =
//! 768, h = 16 384, k = 32` and 4096 examples a step, the per-example order gathered 400 MB of
//! decoder rows from a 50 MB `W_dec`; one thread now reads `W_dec` once and adds to 12 MB of
//! residuals in L3. The more threads, the smaller the ranges and the less a row is shared.) An
//! example's AXPYs come in increasing latent order either way: the same sums, bit for bit. The
//! auxiliary decoding (`k_aux` dead latents' rows per example) is still per example. The
//! weight gradients are `k` rank-one updates per example, gathered by latent (the same counting
//! sort of the active slots) so that each gradient row is written once, by one thread, in
//! example order — no per-thread copies of the `2hn` gradient, and a result that does not
//! depend on how the latents are shared among threads.
//! Each slot's `g_ej = W_dec[j]·δ_e` is computed there too, as the update of `∇W_dec[j]` reads
//! `δ_e` (`W_dec[j]` stays in L1 for all of the latent's slots), rather than by the decoding,
//! which would read each example's `k` decoder rows a second time.
//! [`TopKObjective::evaluate_step`] goes further: each latent's gradient rows are used by the
//! optimiser's step as soon as they are computed, and the gradient is never stored (the
//! `backward` module). Every row these kernels gather from anywhere in a matrix (decoder rows,
//! examples' rows) is asked for a couple of rows ahead ([`Kernels::prefetch`]), so that several
//! are on their way from memory at once. The only `h`-wide matrix is the pre-activations of the
//! blocks being encoded: one `block × h` buffer per thread.

use rayon::prelude::*;

use super::model::{check_shape, Architecture, DictionaryLayout, TopKModel};
use super::select::{keep_batch_top, Selection, Selector, Units, INACTIVE};
use crate::data::{Dataset, Layout};
use crate::error::{Error, Result};
use crate::gemm::{Backend, Gemm, MatMut, MatRef, Order, PackBuffer, Packed};
use crate::kernels::Kernels;
use crate::optim::{StepRule, StepState};
use crate::real::Real;

/// Examples per block of the encoder GEMM: enough rows that streaming the packed `W_enc` once
/// per block costs little next to the block's `2·block·h·n` flops, few enough that a block's
/// pre-activations stay near the cache.
const BLOCK: usize = 256;

/// How far below the last batch's cut the next batch's candidates start, as a fraction of it:
/// the cut moves little from one step to the next.
const FLOOR_MARGIN: f64 = 0.25;

/// What one evaluation measured besides the loss, for the training metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchStats {
    /// `Σ_e ‖x̂_e − x_e‖²`.
    pub squared_error: f64,
    /// `Σ_e |S_e|`: active latents over all examples.
    pub active: usize,
    /// `Σ_e ‖ê_e + r_e‖²` of the auxiliary loss (0 without it, or without dead latents).
    pub aux_squared_error: f64,
    /// With a batch selection in training, the smallest activation it kept: the batch's
    /// threshold, of which the inference threshold is a running mean.
    pub smallest_selected: Option<f64>,
    /// `Σ_e Σ_j a_ej ‖W_dec[j]‖` of the L1 penalty (0 without it).
    pub l1_penalty: f64,
}

/// The auxiliary loss on dead latents: the `k_aux` largest of them per example reconstruct the
/// residual, weighted by `alpha` (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuxK {
    pub k_aux: usize,
    pub alpha: f64,
}

impl AuxK {
    /// The usual choices (Gao et al.'s, as sparsify implements them): `k_aux = n/2` (at least
    /// 1), `α = 1/32`. Sparsify's form is the one computed here (the auxiliary squared error
    /// on the main loss's scale); OpenAI's code divides it by the residual's own variance,
    /// which makes its `α` stronger by about `1/FVU`.
    pub fn for_inputs(visible: usize) -> Self {
        AuxK { k_aux: (visible / 2).max(1), alpha: 1.0 / 32.0 }
    }
}

/// The loss and gradient of a TopK autoencoder on minibatches of at most `capacity` examples,
/// with its workspace.
#[derive(Debug)]
pub struct TopKObjective<T: Real> {
    layout: DictionaryLayout,
    architecture: Architecture,
    k: usize,
    /// Slots per example in the last encoding's codes: `k`, or with a batch selection or every
    /// latent the candidates of each example.
    width: usize,
    /// The slots per example the next encoding starts with: `k`, or with a batch selection
    /// twice the most any example of the last one kept (at least `4k`), grown during an
    /// encoding when an example may have had more.
    start_width: usize,
    /// With a batch selection, the inference threshold of [`measure`](Self::measure) and
    /// [`encode_only`](Self::encode_only).
    threshold: T,
    capacity: usize,
    block: usize,
    gemm: Gemm,
    kernels: Kernels<T>,
    /// The weight `λ` of the L1 penalty (0: none).
    l1: f64,
    /// The auxiliary loss with `k_aux` limited to the dead latents and `alpha` scaled by `s`
    /// (`None`: off, or no dead latent), and which latents are dead.
    aux: Option<AuxK>,
    dead: Vec<bool>,
    /// The examples of the last evaluation, measure or encoding (what `codes` returns).
    last_examples: usize,
    /// The examples of the last evaluation whose `δ` the workspace holds.
    last_residuals: usize,
    /// The smallest activation the last evaluation's batch selection kept.
    last_smallest: Option<f64>,
    /// A value the next batch's cut very likely exceeds: the last cut less a margin
    /// ([`FLOOR_MARGIN`]). Only the values above it are candidates — about `k` per example, not
    /// every positive one — unless there are fewer than `k·B` of them, when the selection is
    /// made again from the units' floor.
    batch_floor: Option<f64>,
    work: Workspace<T>,
}

/// Buffers reused across evaluations.
#[derive(Debug, Default)]
struct Workspace<T> {
    batch: BatchBuffers<T>,
    /// One per thread.
    scratch: Vec<BlockScratch<T>>,
    /// The auxiliary selection's bias: `b_enc` on the dead latents, −∞ on the live ones, which
    /// it then never selects.
    aux_bias: Vec<T>,
    /// The active slots by latent: those of latent `j` are `by_latent[starts[j]..starts[j + 1]]`,
    /// in example order (the main slots, then the auxiliary ones).
    starts: Vec<usize>,
    by_latent: Vec<backward::Entry<T>>,
    /// The counting sort's next free position of each latent.
    next: Vec<usize>,
    /// The batch selection's candidates: (value, slot).
    keys: Vec<(T, u32)>,
    /// `‖W_dec[j]‖`, with the L1 penalty.
    decoder_norms: Vec<T>,
    packed_w_enc: PackBuffer<T>,
    /// The backward pass's partial sums of `∇b_dec`'s encoder share, `n` per group of latents.
    b_dec_partials: Vec<T>,
}

/// What one thread's blocks of the forward pass work in: their pre-activations (`block × h`, the
/// only `h`-wide matrix), the selection's candidates and the decoding's slots by latent.
#[derive(Debug, Default)]
struct BlockScratch<T> {
    pre: Vec<T>,
    selector: Selector<T>,
    /// The slots of a thread's range of examples by latent, for the decoding: latent `j`'s are
    /// `(example in the range, activation)` at `by_latent[starts[j]..starts[j + 1]]`.
    starts: Vec<usize>,
    next: Vec<usize>,
    by_latent: Vec<(u32, T)>,
}

/// The buffers of each example of a batch, cut into blocks for the threads.
#[derive(Debug, Default)]
struct BatchBuffers<T> {
    /// The encoder's input `xc_e` (`x_e − b_dec`, or `x_e`), `B×n` row-major.
    encoder_input: Vec<T>,
    /// `δ_e = r_e / B`, `B×n` row-major.
    residual: Vec<T>,
    /// The slots of each example: `B×width` latent indices (active first, by latent) and their
    /// activations `a`.
    indices: Vec<u32>,
    values: Vec<T>,
    /// `‖r_e‖²` per example.
    squared_errors: Vec<f64>,
    /// The auxiliary slots (`B×k_aux`), `δ'_e` (`B×n`) and `‖ê_e + r_e‖²` (one value per
    /// example each, unused, without the auxiliary loss).
    aux_indices: Vec<u32>,
    aux_values: Vec<T>,
    aux_residual: Vec<T>,
    aux_squared_errors: Vec<f64>,
}

impl<T: Real> TopKObjective<T> {
    /// The objective of a TopK model ([`Architecture::TOPK`]) of `visible` inputs, `latents`
    /// latents and `k` active, on minibatches of at most `capacity` examples, with the detected
    /// instruction set. Made on the rayon pool it will run on: the examples are cut into blocks
    /// for its threads.
    pub fn new(visible: usize, latents: usize, k: usize, capacity: usize) -> Result<Self> {
        Self::for_architecture(Architecture::TOPK, visible, latents, k, capacity)
    }

    /// The objective of a model of `architecture`, as [`new`](Self::new). A per-example
    /// selection needs `capacity × k` slots numbered by `u32`; the others start narrower and
    /// are kept within that numbering.
    pub fn for_architecture(
        architecture: Architecture,
        visible: usize,
        latents: usize,
        k: usize,
        capacity: usize,
    ) -> Result<Self> {
        check_shape(visible, latents, k)?;
        check_slots(capacity, if architecture.selection == Selection::PerExample { k } else { 1 })?;
        let threads = rayon::current_num_threads();
        let block = capacity.div_ceil(threads).clamp(16, BLOCK).min(capacity);
        let mut objective = TopKObjective {
            layout: DictionaryLayout::new(visible, latents),
            architecture,
            k,
            width: k,
            start_width: k,
            threshold: T::zero(),
            capacity,
            block,
            gemm: Gemm::detect(Backend::preferred()),
            kernels: Kernels::detect(),
            l1: 0.0,
            aux: None,
            dead: Vec::new(),
            last_examples: 0,
            last_residuals: 0,
            last_smallest: None,
            batch_floor: None,
            work: Workspace::default(),
        };
        objective.start_width = objective.width_for(k, 0);
        objective.width = objective.start_width;
        Ok(objective)
    }

    /// Turns the auxiliary loss on (`Some`) or off for the next evaluations, `dead[j]` telling
    /// whether latent `j` counts as dead (the trainer's judgement: not fired for so many
    /// examples). Without a dead latent the loss is the plain one.
    pub fn set_aux(&mut self, aux: Option<AuxK>, dead: &[bool]) -> Result<()> {
        let dead_count = dead.iter().filter(|&&d| d).count();
        if let Some(aux) = aux {
            if dead.len() != self.layout.latents() {
                return Err(Error::shape_mismatch("dead latents", self.layout.latents(), dead.len()));
            }
            if aux.k_aux == 0 || !(aux.alpha >= 0.0 && aux.alpha.is_finite()) {
                return Err(Error::InvalidHyperParameter {
                    name: "AuxK",
                    value: aux.alpha,
                    reason: "k_aux must be at least 1 and alpha finite and non-negative",
                });
            }
            if u32::try_from(self.capacity.saturating_mul(self.width.saturating_add(aux.k_aux.min(dead_count))))
                .is_err()
            {
                return Err(Error::InvalidHyperParameter {
                    name: "AuxK",
                    value: aux.k_aux as f64,
                    reason: "batch × (slots per example + k_aux) must be below 2³²",
                });
            }
        }
        // s = min(dead / k_aux, 1) with the k_aux asked for: fewer dead latents, a smaller loss.
        self.aux = aux.filter(|_| dead_count > 0).map(|aux| AuxK {
            k_aux: aux.k_aux.min(dead_count),
            alpha: aux.alpha * (dead_count as f64 / aux.k_aux as f64).min(1.0),
        });
        self.dead.clear();
        self.dead.extend_from_slice(dead);
        Ok(())
    }

    /// Adds the L1 penalty `λ/B Σ a_ej ‖W_dec[j]‖` to the next evaluations (`λ = 0`: none);
    /// fails unless `λ` is finite and non-negative, and for linear units (whose activations
    /// may be negative: the penalty would reward them).
    pub fn set_l1(&mut self, lambda: f64) -> Result<()> {
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(Error::InvalidHyperParameter {
                name: "l1 coefficient",
                value: lambda,
                reason: "must be finite and at least 0",
            });
        }
        if lambda > 0.0 && self.architecture.units == Units::Linear {
            return Err(Error::InvalidOption {
                name: "l1 coefficient",
                reason: "the L1 penalty is on ReLU activations; this model's units are linear".into(),
            });
        }
        self.l1 = lambda;
        Ok(())
    }

    /// The same objective for models of `architecture` (see
    /// [`for_architecture`](Self::for_architecture)).
    pub fn with_architecture(mut self, architecture: Architecture) -> Self {
        self.architecture = architecture;
        self.start_width = self.width_for(self.k, 0);
        self.width = self.start_width;
        self
    }

    /// The objective of `model` (its shape, `k`, architecture and threshold) on minibatches of
    /// at most `capacity` examples.
    pub fn for_model(model: &TopKModel<T>, capacity: usize) -> Result<Self> {
        let mut objective =
            Self::for_architecture(model.architecture(), model.visible(), model.latents(), model.k(), capacity)?;
        objective.set_threshold(model.threshold());
        Ok(objective)
    }

    /// The inference threshold of a batch selection: [`measure`](Self::measure) and
    /// [`encode_only`](Self::encode_only) keep every latent whose `z_j` exceeds it.
    pub fn set_threshold(&mut self, threshold: f64) {
        self.threshold = T::cast(threshold);
    }

    /// The slots per example to start an encoding with for `k`, when an example of the last
    /// one kept at most `most`: `k`; for a batch selection `4k` candidates or `2·most`,
    /// whichever is more (an example may take several times its share); for every latent
    /// `2·most`, at least 32 — as many as the batch's slots can number.
    fn width_for(&self, k: usize, most: usize) -> usize {
        let aux = self.aux.map_or(0, |aux| aux.k_aux);
        let numbered = widest(self.capacity, aux);
        let start = match self.architecture.selection {
            Selection::PerExample => return k,
            Selection::Batch => k.saturating_mul(4),
            Selection::All => 32,
        };
        start.max(most.saturating_mul(2)).min(self.layout.latents()).min(numbered)
    }

    /// Selects `k` latents per example from the next evaluation on (a schedule of `k`, or
    /// encoding with more latents than the model was trained with).
    pub fn set_k(&mut self, k: usize) -> Result<()> {
        check_shape(self.layout.visible(), self.layout.latents(), k)?;
        let width = self.width_for(k, 0);
        check_slots(self.capacity, width.saturating_add(self.aux.map_or(0, |aux| aux.k_aux)))?;
        self.k = k;
        self.width = width;
        self.start_width = width;
        self.last_examples = 0;
        Ok(())
    }

    /// The same objective on the kernels and GEMM of `kernels.isa` (tests compare them).
    pub fn with_kernels(mut self, kernels: Kernels<T>) -> Result<Self> {
        self.gemm = self.gemm.with_isa(kernels.isa)?;
        self.kernels = kernels;
        Ok(self)
    }

    pub fn layout(&self) -> DictionaryLayout {
        self.layout
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// The slots of each example in [`codes`](Self::codes): `k` for a per-example selection;
    /// for the others enough for the example that kept the most (often more than `k` for a
    /// batch selection, far fewer than `h` for a ReLU model).
    pub fn slots_per_example(&self) -> usize {
        self.width
    }

    /// `L` on `batch` and its gradient into `grad` (every value written), with what it
    /// measured. Fails on a batch of the wrong width, an empty one or one larger than the
    /// capacity; the values are not scanned (the trainer checks its data once).
    pub fn evaluate(&mut self, params: &[T], grad: &mut [T], batch: &Dataset<'_, T>) -> Result<(f64, BatchStats)> {
        if grad.len() != self.layout.len() {
            return Err(Error::shape_mismatch("TopK gradient", self.layout.len(), grad.len()));
        }
        let (examples, loss, stats) = self.forward(params, batch)?;
        self.backward(params, grad, examples);
        self.last_residuals = examples;
        Ok((loss, stats))
    }

    /// [`evaluate`](Self::evaluate) and one step of `rule` on `params` (its moments in
    /// `state`) in one pass: each latent's gradient rows are used by the step as soon as they
    /// are computed, and the gradient is never stored — the same parameters and moments as
    /// `evaluate` then [`DictionaryLayout::unit_norm_step`] (with `unit_norm_decoder`) or
    /// [`StepState::step`], bit for bit (with this objective's kernels the CPU's, the default:
    /// those are the ones `unit_norm_step` uses), without their `2hn`-value gradient vector
    /// and the memory traffic of writing and reading it. When the loss is not finite the step
    /// is not taken (`params` and `state` are left as they were).
    pub fn evaluate_step(
        &mut self,
        params: &mut [T],
        batch: &Dataset<'_, T>,
        state: &mut StepState<T>,
        rule: &StepRule,
        unit_norm_decoder: bool,
    ) -> Result<(f64, BatchStats)> {
        for moments in [&state.first, &state.second] {
            if moments.len() != self.layout.len() {
                return Err(Error::shape_mismatch("optimiser moments", self.layout.len(), moments.len()));
            }
        }
        let (examples, loss, stats) = self.forward(params, batch)?;
        if loss.is_finite() {
            self.backward_step(params, state, rule, unit_norm_decoder, examples);
        }
        self.last_residuals = examples;
        Ok((loss, stats))
    }

    /// The training forward pass of `batch`: its number of examples, `L` and what it measured.
    fn forward(&mut self, params: &[T], batch: &Dataset<'_, T>) -> Result<(usize, f64, BatchStats)> {
        let examples = self.encode(params, batch, true, true)?;
        let mut stats = self.stats(examples);
        if self.l1 > 0.0 {
            let (indices, values) = self.codes();
            stats.l1_penalty = indices
                .iter()
                .zip(values)
                .filter(|(&j, _)| j != INACTIVE)
                .map(|(&j, a)| a.as_f64() * self.work.decoder_norms[j as usize].as_f64())
                .sum();
        }
        Ok((examples, self.loss(&stats, examples), stats))
    }

    /// `L` on `batch` and what it measured, without the gradient (the backward pass is not
    /// run) and without the auxiliary loss: a trained model's metrics on data.
    pub fn measure(&mut self, params: &[T], batch: &Dataset<'_, T>) -> Result<(f64, BatchStats)> {
        let aux = self.aux.take();
        let measured = self.encode(params, batch, true, false).map(|examples| (examples, self.stats(examples)));
        self.aux = aux;
        let (examples, stats) = measured?;
        Ok((stats.squared_error / (2.0 * examples as f64), stats))
    }

    fn stats(&self, examples: usize) -> BatchStats {
        BatchStats {
            squared_error: self.work.batch.squared_errors[..examples].iter().sum(),
            active: self.work.batch.indices[..examples * self.width].iter().filter(|&&i| i != INACTIVE).count(),
            aux_squared_error: match self.aux {
                Some(_) => self.work.batch.aux_squared_errors[..examples].iter().sum(),
                None => 0.0,
            },
            smallest_selected: self.last_smallest,
            l1_penalty: 0.0,
        }
    }

    /// The loss of `stats` on `examples`: `1/(2B) (Σ ‖r‖² + α s Σ ‖ê + r‖²) + λ/B Σ a ‖d‖`.
    fn loss(&self, stats: &BatchStats, examples: usize) -> f64 {
        let aux = self.aux.map_or(0.0, |aux| aux.alpha * stats.aux_squared_error);
        (stats.squared_error + aux) / (2.0 * examples as f64) + self.l1 * stats.l1_penalty / examples as f64
    }

    /// The slots of the examples of the last [`evaluate`](Self::evaluate),
    /// [`measure`](Self::measure) or
    /// [`encode_only`](Self::encode_only): `(indices, values)`,
    /// [`slots_per_example`](Self::slots_per_example) per example (none before the first).
    pub fn codes(&self) -> (&[u32], &[T]) {
        let slots = self.last_examples * self.width;
        (&self.work.batch.indices[..slots], &self.work.batch.values[..slots])
    }

    /// `δ_e = (x̂_e − x_e)/B` of each example of the last [`evaluate`](Self::evaluate), `B×n`
    /// row-major (empty before the first, and after a measure or an encoding).
    pub fn residuals(&self) -> &[T] {
        &self.work.batch.residual[..self.last_residuals * self.layout.visible()]
    }

    /// The selection and activations of `batch` only (inference): read them with
    /// [`codes`](Self::codes). Returns the number of examples.
    pub fn encode_only(&mut self, params: &[T], batch: &Dataset<'_, T>) -> Result<usize> {
        self.encode(params, batch, false, false)
    }

    /// The most examples an evaluation takes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The forward pass: centres the batch, encodes it block by block (GEMM, selection) and,
    /// with `decode`, computes the squared norms of the residuals `r_e`, then `δ_e = r_e / B`
    /// (and with the auxiliary loss `δ'_e`). A batch selection first selects candidates for
    /// the whole batch, then cuts them to the batch's `k·B` largest (`train`) or to the
    /// inference threshold — after selecting again with more candidates per example when some
    /// example may have had more. Every example is selected before any is decoded: the
    /// decoding goes latent by latent over each thread's range of examples.
    fn encode(&mut self, params: &[T], batch: &Dataset<'_, T>, decode: bool, train: bool) -> Result<usize> {
        let (n, h) = (self.layout.visible(), self.layout.latents());
        if params.len() != self.layout.len() {
            return Err(Error::shape_mismatch("TopK parameters", self.layout.len(), params.len()));
        }
        if batch.features() != n {
            return Err(Error::shape_mismatch("data features", format!("n = {n}"), batch.features()));
        }
        let examples = batch.examples();
        if examples == 0 {
            return Err(Error::EmptyData { what: "minibatch" });
        }
        if examples > self.capacity {
            return Err(Error::shape_mismatch("minibatch examples", format!("at most {}", self.capacity), examples));
        }
        // Whatever happens below, the codes and residuals of an earlier batch are gone.
        self.last_examples = 0;
        self.last_residuals = 0;
        self.last_smallest = None;
        let units = self.architecture.units;
        let units_floor = units.floor::<T>();
        let above_units_floor = |floor: T| if floor > units_floor { floor } else { units_floor };
        let selecting = match self.architecture.selection {
            Selection::PerExample => Selecting::PerExample,
            Selection::Batch if train => Selecting::Batch { keep: self.k * examples },
            Selection::Batch => Selecting::Above(above_units_floor(self.threshold)),
            Selection::All => Selecting::Above(units_floor),
        };
        let l1 = if train && decode { self.l1 } else { 0.0 };
        let aux = self.aux.filter(|_| decode);
        let blocks = self.layout.split(params);
        let work = &mut self.work;
        let w_dec = if self.architecture.tied { blocks.w_enc } else { blocks.w_dec };
        work.decoder_norms.clear();
        if l1 > 0.0 {
            work.decoder_norms.extend(w_dec.chunks_exact(n).map(|row| T::cast((self.kernels.dot)(row, row).sqrt())));
        }
        work.aux_bias.clear();
        if aux.is_some() {
            let dead = self.dead.iter();
            work.aux_bias.extend(blocks.b_enc.iter().zip(dead).map(|(&b, &d)| if d { b } else { T::neg_infinity() }));
        }
        let packed =
            self.gemm.pack_right(MatRef::row_major(blocks.w_enc, h, n).t(), Order::RowMajor, &mut work.packed_w_enc);
        let mut context = Forward {
            gemm: &self.gemm,
            kernels: &self.kernels,
            floor: match selecting {
                Selecting::PerExample => units_floor,
                Selecting::Batch { .. } => {
                    self.batch_floor.map_or(units_floor, |floor| above_units_floor(T::cast(floor)))
                }
                Selecting::Above(floor) => floor,
            },
            pre_encoder_bias: self.architecture.pre_encoder_bias,
            w_enc: &packed,
            b_enc: blocks.b_enc,
            w_dec,
            b_dec: blocks.b_dec,
            batch,
            n,
            h,
            width: self.start_width,
            scale: T::cast(1.0 / examples as f64),
            aux: aux.map(|aux| AuxForward {
                bias: &work.aux_bias,
                k: aux.k_aux,
                weight: T::cast(aux.alpha / examples as f64),
            }),
        };
        let threads = rayon::current_num_threads();
        let shape = Shape { examples, block: self.block, n, aux: aux.map(|aux| aux.k_aux) };
        // (Slots numbered by u32: the main ones, then the auxiliary ones; a larger k_aux since
        // the width was chosen may have left less room.)
        if selecting != Selecting::PerExample {
            context.width = context.width.min(widest(self.capacity, shape.aux.unwrap_or(0)));
        }
        check_slots(self.capacity, context.width + shape.aux.unwrap_or(0))?;
        work.scratch.resize_with(threads, BlockScratch::default);
        for scratch in &mut work.scratch {
            scratch.pre.resize(shape.block * h, T::zero());
        }
        loop {
            work.batch.reserve(self.capacity, shape, context.width);
            let mut parts = work.batch.parts(shape, context.width);
            // A wave of one block per thread at a time, each on its own scratch space.
            for wave in parts.chunks_mut(threads) {
                wave.par_iter_mut()
                    .zip(work.scratch.par_iter_mut())
                    .for_each(|(part, scratch)| context.select(part, scratch));
            }
            drop(parts);
            let width = context.width;
            let slots = examples * width;
            let complete = match selecting {
                Selecting::PerExample => true,
                Selecting::Batch { keep } => {
                    let cut = keep_batch_top(
                        &mut work.batch.indices[..slots],
                        &mut work.batch.values[..slots],
                        width,
                        keep,
                        h,
                        &mut work.keys,
                    );
                    if cut.candidates < keep && context.floor > units_floor {
                        // The cut is below the floor: the candidates must be all the values.
                        context.floor = units_floor;
                        continue;
                    }
                    self.last_smallest = cut.smallest.map(|v| v.as_f64());
                    cut.complete
                }
                // Full slots may have left values above the threshold out.
                Selecting::Above(_) => {
                    width == h
                        || work.batch.indices[..slots].chunks_exact(width).all(|slots| slots[width - 1] == INACTIVE)
                }
            };
            if complete {
                break;
            }
            let wider = (2 * width).min(h);
            check_slots(self.capacity, wider + shape.aux.unwrap_or(0)).map_err(|_| Error::InvalidHyperParameter {
                name: "batch size",
                value: self.capacity as f64,
                reason: "an example has more selected latents than batch × slots numbered by u32 can hold: \
                         use smaller batches",
            })?;
            context.width = wider;
        }
        self.width = context.width;
        // The most latents an example kept.
        let most = match selecting {
            Selecting::PerExample => 0,
            _ => work.batch.indices[..examples * self.width]
                .chunks_exact(self.width)
                .map(|slots| slots.partition_point(|&j| j != INACTIVE))
                .max()
                .unwrap_or(0),
        };
        if decode {
            // One range of examples per thread.
            let ranges = Shape { block: examples.div_ceil(threads), ..shape };
            let mut parts = work.batch.parts(ranges, context.width);
            debug_assert!(parts.len() <= work.scratch.len(), "a range of examples for each thread's scratch");
            parts
                .par_iter_mut()
                .zip(work.scratch.par_iter_mut())
                .for_each(|(part, scratch)| context.decode(part, scratch));
        }
        self.last_examples = examples;
        self.start_width = self.width_for(self.k, most);
        if let Selecting::Batch { .. } = selecting {
            self.batch_floor = self.last_smallest.map(|cut| cut - FLOOR_MARGIN * cut.abs());
        }
        Ok(examples)
    }
}

/// The most slots per example that `capacity` examples can have beside `aux` auxiliary ones,
/// all numbered by `u32` (at least 1).
fn widest(capacity: usize, aux: usize) -> usize {
    ((u32::MAX as usize - 1) / capacity.max(1)).saturating_sub(aux).max(1)
}

/// Checks that `capacity` examples of `k` slots can be numbered by `u32`.
fn check_slots(capacity: usize, k: usize) -> Result<()> {
    if capacity == 0 || u32::try_from(capacity.saturating_mul(k)).is_err() {
        return Err(Error::InvalidHyperParameter {
            name: "batch size",
            value: capacity as f64,
            reason: "must be at least 1, with batch × k below 2³²",
        });
    }
    Ok(())
}

/// `y ← a x` (a plain loop the compiler vectorises: no reduction, no rounding choice).
fn scaled_copy<T: Real>(a: T, x: &[T], y: &mut [T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = a * x;
    }
}

/// How an encoding selects its latents.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Selecting<T> {
    /// Each example's `k` largest.
    PerExample,
    /// Each example's largest as candidates, then the batch's `keep` largest of them.
    Batch { keep: usize },
    /// Every value above the floor (an inference threshold).
    Above(T),
}

/// The sizes an encoding cuts its buffers by.
#[derive(Debug, Clone, Copy)]
struct Shape {
    examples: usize,
    /// Examples per block.
    block: usize,
    n: usize,
    /// `k_aux` with the auxiliary loss.
    aux: Option<usize>,
}

impl<T: Real> BatchBuffers<T> {
    /// Makes room for `capacity` examples of `width` slots (and, without the auxiliary loss, one
    /// value per example in its buffers, so that they are cut into blocks like the others).
    fn reserve(&mut self, capacity: usize, shape: Shape, width: usize) {
        let n = shape.n;
        let (aux_k, aux_n) = shape.aux.map_or((1, 1), |k_aux| (k_aux, n));
        self.encoder_input.resize(capacity * n, T::zero());
        self.residual.resize(capacity * n, T::zero());
        self.indices.resize(capacity * width, 0);
        self.values.resize(capacity * width, T::zero());
        self.squared_errors.resize(capacity, 0.0);
        self.aux_indices.resize(capacity * aux_k, 0);
        self.aux_values.resize(capacity * aux_k, T::zero());
        self.aux_residual.resize(capacity * aux_n, T::zero());
        self.aux_squared_errors.resize(capacity, 0.0);
    }

    /// The buffers of `shape.examples` examples of `width` slots, cut into blocks.
    fn parts(&mut self, shape: Shape, width: usize) -> Vec<Part<'_, T>> {
        let Shape { examples, block, n, aux } = shape;
        let (aux_k, aux_n) = aux.map_or((1, 1), |k_aux| (k_aux, n));
        let mut encoder_input = &mut self.encoder_input[..];
        let mut residual = &mut self.residual[..];
        let mut indices = &mut self.indices[..];
        let mut values = &mut self.values[..];
        let mut squared_errors = &mut self.squared_errors[..];
        let mut aux_indices = &mut self.aux_indices[..];
        let mut aux_values = &mut self.aux_values[..];
        let mut aux_residual = &mut self.aux_residual[..];
        let mut aux_squared_errors = &mut self.aux_squared_errors[..];
        (0..examples)
            .step_by(block)
            .map(|first| {
                let rows = block.min(examples - first);
                Part {
                    first,
                    encoder_input: take(&mut encoder_input, rows * n),
                    residual: take(&mut residual, rows * n),
                    slots: Slots { indices: take(&mut indices, rows * width), values: take(&mut values, rows * width) },
                    squared_errors: take(&mut squared_errors, rows),
                    aux: AuxPart {
                        slots: Slots {
                            indices: take(&mut aux_indices, rows * aux_k),
                            values: take(&mut aux_values, rows * aux_k),
                        },
                        residual: take(&mut aux_residual, rows * aux_n),
                        squared_errors: take(&mut aux_squared_errors, rows),
                    },
                }
            })
            .collect()
    }
}

/// The active slots among `slots` (their latents, [`INACTIVE`] ones skipped) sorted by latent
/// by a counting sort, stable (slot order within a latent): on return latent `j`'s entries,
/// `entry(slot)` for each of its slots in order, are `by_latent[starts[j]..starts[j + 1]]`.
/// `next` is working space.
fn sort_by_latent<E: Copy + Default>(
    h: usize,
    slots: impl Iterator<Item = u32> + Clone,
    starts: &mut Vec<usize>,
    next: &mut Vec<usize>,
    by_latent: &mut Vec<E>,
    entry: impl Fn(usize) -> E,
) {
    let active = || slots.clone().enumerate().filter(|&(_, j)| j != INACTIVE);
    starts.clear();
    starts.resize(h + 1, 0);
    for (_, j) in active() {
        starts[j as usize + 1] += 1;
    }
    for j in 0..h {
        starts[j + 1] += starts[j];
    }
    by_latent.resize(starts[h], E::default());
    next.clone_from(starts);
    for (slot, j) in active() {
        by_latent[next[j as usize]] = entry(slot);
        next[j as usize] += 1;
    }
}

/// Cuts the first `len` values off `rest`.
fn take<'a, U>(rest: &mut &'a mut [U], len: usize) -> &'a mut [U] {
    let (head, tail) = std::mem::take(rest).split_at_mut(len);
    *rest = tail;
    head
}

/// What every block of the forward pass reads.
struct Forward<'a, 'd, T: Real> {
    gemm: &'a Gemm,
    kernels: &'a Kernels<T>,
    /// The value a pre-activation must exceed to be selected (the units' floor, or the
    /// inference threshold).
    floor: T,
    pre_encoder_bias: bool,
    w_enc: &'a Packed<'a, T>,
    b_enc: &'a [T],
    /// `W_dec`, or `W_enc` for tied weights.
    w_dec: &'a [T],
    b_dec: &'a [T],
    batch: &'a Dataset<'d, T>,
    n: usize,
    h: usize,
    /// Slots per example.
    width: usize,
    /// `1/B`.
    scale: T,
    aux: Option<AuxForward<'a, T>>,
}

/// The auxiliary selection of the forward pass.
struct AuxForward<'a, T> {
    /// `b_enc` on the dead latents, −∞ on the live ones.
    bias: &'a [T],
    k: usize,
    /// `α s / B`.
    weight: T,
}

/// A block's share of the workspace: from example `first`, its encoder inputs, `δ` rows,
/// slots, `‖r‖²` and auxiliary buffers.
struct Part<'a, T> {
    first: usize,
    encoder_input: &'a mut [T],
    residual: &'a mut [T],
    slots: Slots<'a, T>,
    squared_errors: &'a mut [f64],
    aux: AuxPart<'a, T>,
}

/// A block's share of the auxiliary buffers: its slots, `δ'` rows and `‖ê + r‖²`.
struct AuxPart<'a, T> {
    slots: Slots<'a, T>,
    residual: &'a mut [T],
    squared_errors: &'a mut [f64],
}

/// The slots of a block's examples, `width` each: latents and activations.
struct Slots<'a, T> {
    indices: &'a mut [u32],
    values: &'a mut [T],
}

impl<T: Real> Forward<'_, '_, T> {
    /// What the encoder subtracts from `x`: `b_dec`, or nothing.
    fn shift(&self, b: T) -> T {
        if self.pre_encoder_bias {
            b
        } else {
            T::zero()
        }
    }

    /// One block of examples: the encoder's inputs `XC` (`x − b_dec`, or `x`), `Z = XC
    /// W_encᵀ`, each example's slots on `z + b_enc` (the bias added by the selection's scan)
    /// and auxiliary slots.
    fn select(&self, part: &mut Part<'_, T>, scratch: &mut BlockScratch<T>) {
        let (n, h, width) = (self.n, self.h, self.width);
        let rows = part.squared_errors.len();
        let x = self.batch.x();
        for (e, row) in part.encoder_input.chunks_exact_mut(n).enumerate() {
            let example = part.first + e;
            match self.batch.layout() {
                Layout::ExamplesByFeatures => {
                    let source = &self.batch.values()[example * n..][..n];
                    for ((c, &v), &b) in row.iter_mut().zip(source).zip(self.b_dec) {
                        *c = v - self.shift(b);
                    }
                }
                Layout::FeaturesByExamples => {
                    for (f, (c, &b)) in row.iter_mut().zip(self.b_dec).enumerate() {
                        *c = x.get(f, example) - self.shift(b);
                    }
                }
            }
        }
        let (pre, selector) = (&mut scratch.pre[..rows * h], &mut scratch.selector);
        self.gemm.product(
            T::one(),
            MatRef::row_major(part.encoder_input, rows, n),
            self.w_enc,
            T::zero(),
            MatMut::row_major(pre, rows, h),
        );
        for e in 0..rows {
            let z = &pre[e * h..][..h];
            let (slots, activations) =
                (&mut part.slots.indices[e * width..][..width], &mut part.slots.values[e * width..][..width]);
            selector.top_k_above(self.kernels, self.floor, z, self.b_enc, slots, activations);
            if let Some(aux) = &self.aux {
                // The dead latents' positive values, whatever the units: their decoding of
                // the residual is only a training signal.
                let k = aux.k;
                let (slots, activations) =
                    (&mut part.aux.slots.indices[e * k..][..k], &mut part.aux.slots.values[e * k..][..k]);
                selector.top_k(self.kernels, Units::Relu, z, aux.bias, slots, activations);
            }
        }
    }

    /// The examples of `part`, selected: their `‖r‖²` and `δ`, and with the auxiliary loss
    /// their `‖ê + r‖²` and `δ'`. The residuals are decoded latent by latent, each decoder row
    /// read once for all of its examples in the part.
    fn decode(&self, part: &mut Part<'_, T>, scratch: &mut BlockScratch<T>) {
        let (n, h, width) = (self.n, self.h, self.width);
        let examples = part.squared_errors.len();
        // r = b_dec − x before the decoding is added (−xc exactly with the pre-encoder bias).
        for (r, c) in part.residual.chunks_exact_mut(n).zip(part.encoder_input.chunks_exact(n)) {
            for ((r, &c), &b) in r.iter_mut().zip(c).zip(self.b_dec) {
                *r = (b - self.shift(b)) - c;
            }
        }
        let BlockScratch { starts, next, by_latent, .. } = scratch;
        let slots = &part.slots.indices[..examples * width];
        let values = &part.slots.values;
        sort_by_latent(h, slots.iter().copied(), starts, next, by_latent, |slot| ((slot / width) as u32, values[slot]));
        let has_slots = |j: &usize| starts[*j] < starts[*j + 1];
        let mut latents = (0..h).filter(has_slots).peekable();
        while let Some(j) = latents.next() {
            let entries = &by_latent[starts[j]..starts[j + 1]];
            // The next decoder row the range uses, asked for while this one is added.
            if let Some(&next) = latents.peek() {
                (self.kernels.prefetch)(&self.w_dec[next * n..][..n]);
            }
            let row = &self.w_dec[j * n..][..n];
            // The residual rows come from anywhere in the part's: each is asked for two slots
            // ahead (the last two of a latent ask for the next latent's first).
            for (s, &(e, a)) in entries.iter().enumerate() {
                if let Some(&(ahead, _)) = by_latent.get(starts[j] + s + 2) {
                    (self.kernels.prefetch)(&part.residual[ahead as usize * n..][..n]);
                }
                (self.kernels.axpy)(a, row, &mut part.residual[e as usize * n..][..n]);
            }
        }
        for e in 0..examples {
            let r = &mut part.residual[e * n..][..n];
            part.squared_errors[e] = (self.kernels.dot)(r, r);
            if let Some(aux) = &self.aux {
                self.auxiliary(aux, r, e, &mut part.aux);
            }
            r.iter_mut().for_each(|r| *r = *r * self.scale);
        }
    }

    /// `r ← r + Σ_s a_s W_dec[j_s]` for the latents `j_s` of `slots` and their activations `a_s`.
    /// The decoder rows come from anywhere in `W_dec`: each is asked for two slots ahead.
    fn decode_into(&self, slots: &[u32], activations: &[T], r: &mut [T]) {
        let decoder_row = |j: u32| &self.w_dec[j as usize * self.n..][..self.n];
        for &j in slots.iter().take(2) {
            (self.kernels.prefetch)(decoder_row(j));
        }
        for (s, (&j, &a)) in slots.iter().zip(activations).enumerate() {
            if let Some(&ahead) = slots.get(s + 2) {
                (self.kernels.prefetch)(decoder_row(ahead));
            }
            (self.kernels.axpy)(a, decoder_row(j), r);
        }
    }

    /// Example `e`'s `‖ê + r‖²` and `δ' = α s (ê + r)/B`, `r` its residual.
    fn auxiliary(&self, aux: &AuxForward<'_, T>, r: &[T], e: usize, part: &mut AuxPart<'_, T>) {
        let (n, k) = (self.n, aux.k);
        let (slots, activations) = (&part.slots.indices[e * k..][..k], &part.slots.values[e * k..][..k]);
        let active = slots.partition_point(|&j| j != INACTIVE);
        let q = &mut part.residual[e * n..][..n];
        q.copy_from_slice(r);
        self.decode_into(&slots[..active], &activations[..active], q);
        part.squared_errors[e] = (self.kernels.dot)(q, q);
        q.iter_mut().for_each(|q| *q = *q * aux.weight);
    }
}

mod backward;
#[cfg(test)]
mod tests;
