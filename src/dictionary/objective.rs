//! The TopK autoencoder's loss and gradient on a minibatch of `B` examples, on sparse kernels:
//! one dense GEMM (the encoder's), everything else on the `k` active latents of each example.
//!
//! In the notation of [`super::model`], per example `e` (selection `S_e`, `|S_e| ≤ k`):
//!
//! ```text
//! xc_e = x_e − b_dec                         (n; the encoder's input, or x_e itself when the
//!                                            architecture has no pre-encoder bias)
//! Z    = XC W_encᵀ + 1 b_encᵀ                (B×h: the encoder GEMM by blocks of examples; the
//!                                            bias added by the selection as it scans)
//! a_e  = z_e on S_e, the k largest z_ej (positive ones only for ReLU units)
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
//! The decoding is `k` AXPYs per example and `∇a` `k` dot products; the weight gradients are
//! `k` rank-one updates per example, gathered by latent (a counting sort of the active slots)
//! so that each gradient row is written once, by one thread, in example order — no per-thread
//! copies of the `2hn` gradient, and a result that does not depend on how the latents are
//! shared among threads. The only `h`-wide temporary is the pre-activations of the blocks being
//! encoded: one `block × h` buffer per thread.

use rayon::prelude::*;

use super::model::{check_shape, Architecture, DictionaryLayout, TopKModel};
use super::select::{top_k, Units, INACTIVE};
use crate::data::{Dataset, Layout};
use crate::error::{Error, Result};
use crate::gemm::{Backend, Gemm, MatMut, MatRef, Order, PackBuffer, Packed};
use crate::kernels::Kernels;
use crate::real::Real;

/// Examples per block of the encoder GEMM: enough rows that streaming the packed `W_enc` once
/// per block costs little next to the block's `2·block·h·n` flops, few enough that a block's
/// pre-activations stay near the cache.
const BLOCK: usize = 256;

/// What one evaluation measured besides the loss, for the training metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchStats {
    /// `Σ_e ‖x̂_e − x_e‖²`.
    pub squared_error: f64,
    /// `Σ_e |S_e|`: active latents over all examples.
    pub active: usize,
    /// `Σ_e ‖ê_e + r_e‖²` of the auxiliary loss (0 without it, or without dead latents).
    pub aux_squared_error: f64,
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
    capacity: usize,
    block: usize,
    gemm: Gemm,
    kernels: Kernels<T>,
    /// The auxiliary loss with `k_aux` limited to the dead latents and `alpha` scaled by `s`
    /// (`None`: off, or no dead latent), and which latents are dead.
    aux: Option<AuxK>,
    dead: Vec<bool>,
    /// The examples of the last evaluation, measure or encoding (what `codes` returns).
    last_examples: usize,
    /// The examples of the last evaluation whose `δ` the workspace holds.
    last_residuals: usize,
    work: Workspace<T>,
}

/// Buffers reused across evaluations.
#[derive(Debug, Default)]
struct Workspace<T> {
    /// The encoder's input `xc_e` (`x_e − b_dec`, or `x_e`), `B×n` row-major.
    encoder_input: Vec<T>,
    /// `δ_e = r_e / B`, `B×n` row-major.
    residual: Vec<T>,
    /// The slots of each example: `B×k` latent indices (active first, by latent), their
    /// activations `a`, and their gradients `g`.
    indices: Vec<u32>,
    values: Vec<T>,
    value_grads: Vec<T>,
    /// `‖r_e‖²` per example.
    squared_errors: Vec<f64>,
    /// The auxiliary slots (`B×k_aux`), `δ'_e` (`B×n`) and `‖ê_e + r_e‖²` (one value per
    /// example each, unused, without the auxiliary loss), and the auxiliary selection's bias:
    /// `b_enc` on the dead latents, −∞ on the live ones, which it then never selects.
    aux_indices: Vec<u32>,
    aux_values: Vec<T>,
    aux_grads: Vec<T>,
    aux_residual: Vec<T>,
    aux_squared_errors: Vec<f64>,
    aux_bias: Vec<T>,
    /// One `block × h` buffer of pre-activations per thread.
    pre: Vec<Vec<T>>,
    /// The active slots by latent: those of latent `j` are `by_latent[starts[j]..starts[j + 1]]`
    /// (slot `e·k + s`, or `B·k + e·k_aux + s` for an auxiliary slot), in example order.
    starts: Vec<usize>,
    by_latent: Vec<u32>,
    /// The counting sort's next free position of each latent.
    next: Vec<usize>,
    packed_w_enc: PackBuffer<T>,
}

impl<T: Real> TopKObjective<T> {
    /// The objective of a TopK model ([`Architecture::TOPK`]) of `visible` inputs, `latents`
    /// latents and `k` active, on minibatches of at most `capacity` examples, with the detected
    /// instruction set. Made on the rayon pool it will run on: the examples are cut into blocks
    /// for its threads.
    pub fn new(visible: usize, latents: usize, k: usize, capacity: usize) -> Result<Self> {
        check_shape(visible, latents, k)?;
        check_slots(capacity, k)?;
        let threads = rayon::current_num_threads();
        let block = capacity.div_ceil(threads).clamp(16, BLOCK).min(capacity);
        Ok(TopKObjective {
            layout: DictionaryLayout::new(visible, latents),
            architecture: Architecture::TOPK,
            k,
            capacity,
            block,
            gemm: Gemm::detect(Backend::preferred()),
            kernels: Kernels::detect(),
            aux: None,
            dead: Vec::new(),
            last_examples: 0,
            last_residuals: 0,
            work: Workspace::default(),
        })
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
            if u32::try_from(self.capacity.saturating_mul(self.k.saturating_add(aux.k_aux.min(dead_count)))).is_err() {
                return Err(Error::InvalidHyperParameter {
                    name: "AuxK",
                    value: aux.k_aux as f64,
                    reason: "batch × (k + k_aux) must be below 2³²",
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

    /// The same objective for models of `architecture`.
    pub fn with_architecture(mut self, architecture: Architecture) -> Self {
        self.architecture = architecture;
        self
    }

    /// The objective of `model` (its shape, `k` and architecture) on minibatches of at most
    /// `capacity` examples.
    pub fn for_model(model: &TopKModel<T>, capacity: usize) -> Result<Self> {
        Ok(Self::new(model.visible(), model.latents(), model.k(), capacity)?.with_architecture(model.architecture()))
    }

    /// Selects `k` latents per example from the next evaluation on (a schedule of `k`, or
    /// encoding with more latents than the model was trained with).
    pub fn set_k(&mut self, k: usize) -> Result<()> {
        check_shape(self.layout.visible(), self.layout.latents(), k)?;
        check_slots(self.capacity, k.saturating_add(self.aux.map_or(0, |aux| aux.k_aux)))?;
        self.k = k;
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

    /// `L` on `batch` and its gradient into `grad` (every value written), with what it
    /// measured. Fails on a batch of the wrong width, an empty one or one larger than the
    /// capacity; the values are not scanned (the trainer checks its data once).
    pub fn evaluate(&mut self, params: &[T], grad: &mut [T], batch: &Dataset<'_, T>) -> Result<(f64, BatchStats)> {
        if grad.len() != self.layout.len() {
            return Err(Error::shape_mismatch("TopK gradient", self.layout.len(), grad.len()));
        }
        let examples = self.encode(params, batch, true)?;
        let stats = self.stats(examples);
        self.backward(params, grad, examples);
        self.last_residuals = examples;
        Ok((self.loss(&stats, examples), stats))
    }

    /// `L` on `batch` and what it measured, without the gradient (the backward pass is not
    /// run) and without the auxiliary loss: a trained model's metrics on data.
    pub fn measure(&mut self, params: &[T], batch: &Dataset<'_, T>) -> Result<(f64, BatchStats)> {
        let aux = self.aux.take();
        let measured = self.encode(params, batch, true).map(|examples| (examples, self.stats(examples)));
        self.aux = aux;
        let (examples, stats) = measured?;
        Ok((stats.squared_error / (2.0 * examples as f64), stats))
    }

    fn stats(&self, examples: usize) -> BatchStats {
        BatchStats {
            squared_error: self.work.squared_errors[..examples].iter().sum(),
            active: self.work.indices[..examples * self.k].iter().filter(|&&i| i != INACTIVE).count(),
            aux_squared_error: match self.aux {
                Some(_) => self.work.aux_squared_errors[..examples].iter().sum(),
                None => 0.0,
            },
        }
    }

    /// The loss of `stats` on `examples`: `1/(2B) (Σ ‖r‖² + α s Σ ‖ê + r‖²)`.
    fn loss(&self, stats: &BatchStats, examples: usize) -> f64 {
        let aux = self.aux.map_or(0.0, |aux| aux.alpha * stats.aux_squared_error);
        (stats.squared_error + aux) / (2.0 * examples as f64)
    }

    /// The slots of the examples of the last [`evaluate`](Self::evaluate),
    /// [`measure`](Self::measure) or
    /// [`encode_only`](Self::encode_only): `(indices, values)`, `k` per example (none before
    /// the first).
    pub fn codes(&self) -> (&[u32], &[T]) {
        let slots = self.last_examples * self.k;
        (&self.work.indices[..slots], &self.work.values[..slots])
    }

    /// `δ_e = (x̂_e − x_e)/B` of each example of the last [`evaluate`](Self::evaluate), `B×n`
    /// row-major (empty before the first, and after a measure or an encoding).
    pub fn residuals(&self) -> &[T] {
        &self.work.residual[..self.last_residuals * self.layout.visible()]
    }

    /// The selection and activations of `batch` only (inference): read them with
    /// [`codes`](Self::codes). Returns the number of examples.
    pub fn encode_only(&mut self, params: &[T], batch: &Dataset<'_, T>) -> Result<usize> {
        self.encode(params, batch, false)
    }

    /// The most examples an evaluation takes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The forward pass: centres the batch, encodes it block by block (GEMM, selection), and
    /// with `decode` the squared norms of the residuals `r_e`, then `δ_e = r_e / B` and the
    /// gradients `g_ej` of the active slots (while the example's `k` decoder rows are still in
    /// cache from its decoding).
    fn encode(&mut self, params: &[T], batch: &Dataset<'_, T>, decode: bool) -> Result<usize> {
        let (n, h, k) = (self.layout.visible(), self.layout.latents(), self.k);
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
        let threads = rayon::current_num_threads();
        let work = &mut self.work;
        let capacity = self.capacity;
        for buffer in [&mut work.encoder_input, &mut work.residual] {
            buffer.resize(capacity * n, T::zero());
        }
        work.indices.resize(capacity * k, 0);
        work.values.resize(capacity * k, T::zero());
        work.value_grads.resize(capacity * k, T::zero());
        work.squared_errors.resize(capacity, 0.0);
        // Without the auxiliary loss its buffers hold one value per example, so that they are
        // cut into blocks like the others.
        let aux = self.aux.filter(|_| decode);
        let (aux_k, aux_n) = aux.map_or((1, 1), |aux| (aux.k_aux, n));
        work.aux_indices.resize(capacity * aux_k, 0);
        work.aux_values.resize(capacity * aux_k, T::zero());
        work.aux_grads.resize(capacity * aux_k, T::zero());
        work.aux_residual.resize(capacity * aux_n, T::zero());
        work.aux_squared_errors.resize(capacity, 0.0);
        work.pre.resize_with(threads, Vec::new);
        for pre in &mut work.pre {
            pre.resize(self.block * h, T::zero());
        }

        let blocks = self.layout.split(params);
        work.aux_bias.clear();
        if aux.is_some() {
            let dead = self.dead.iter();
            work.aux_bias.extend(blocks.b_enc.iter().zip(dead).map(|(&b, &d)| if d { b } else { T::neg_infinity() }));
        }
        let packed =
            self.gemm.pack_right(MatRef::row_major(blocks.w_enc, h, n).t(), Order::RowMajor, &mut work.packed_w_enc);
        let context = Forward {
            gemm: &self.gemm,
            kernels: &self.kernels,
            units: self.architecture.units,
            pre_encoder_bias: self.architecture.pre_encoder_bias,
            w_enc: &packed,
            b_enc: blocks.b_enc,
            w_dec: if self.architecture.tied { blocks.w_enc } else { blocks.w_dec },
            b_dec: blocks.b_dec,
            batch,
            n,
            h,
            k,
            decode,
            scale: T::cast(1.0 / examples as f64),
            aux: aux.map(|aux| AuxForward {
                bias: &work.aux_bias,
                k: aux.k_aux,
                weight: T::cast(aux.alpha / examples as f64),
            }),
        };
        let block = self.block;
        let total_blocks = examples.div_ceil(block);
        // A wave of one block per thread at a time, each on its own pre-activation buffer.
        for wave in (0..total_blocks).step_by(threads) {
            let in_wave = threads.min(total_blocks - wave);
            let span = |width: usize| wave * block * width..((wave + in_wave) * block).min(examples) * width;
            work.encoder_input[span(n)]
                .par_chunks_mut(block * n)
                .zip(work.residual[span(n)].par_chunks_mut(block * n))
                .zip(work.indices[span(k)].par_chunks_mut(block * k))
                .zip(work.values[span(k)].par_chunks_mut(block * k))
                .zip(work.value_grads[span(k)].par_chunks_mut(block * k))
                .zip(work.squared_errors[span(1)].par_chunks_mut(block))
                .zip(work.pre.par_iter_mut())
                .zip(work.aux_indices[span(aux_k)].par_chunks_mut(block * aux_k))
                .zip(work.aux_values[span(aux_k)].par_chunks_mut(block * aux_k))
                .zip(work.aux_grads[span(aux_k)].par_chunks_mut(block * aux_k))
                .zip(work.aux_residual[span(aux_n)].par_chunks_mut(block * aux_n))
                .zip(work.aux_squared_errors[span(1)].par_chunks_mut(block))
                .enumerate()
                .for_each(|(b, main_and_aux)| {
                    let (((((main, aux_indices), aux_values), aux_grads), aux_residual), aux_squared_errors) =
                        main_and_aux;
                    let ((((((encoder_input, residual), indices), values), value_grads), squared_errors), pre) = main;
                    let slots = Slots { indices, values, value_grads };
                    let aux = AuxPart {
                        slots: Slots { indices: aux_indices, values: aux_values, value_grads: aux_grads },
                        residual: aux_residual,
                        squared_errors: aux_squared_errors,
                    };
                    context.block((wave + b) * block, (encoder_input, residual), slots, squared_errors, pre, aux);
                });
        }
        self.last_examples = examples;
        Ok(examples)
    }

    /// The backward pass of the `examples` just encoded with their `δ` and `g`.
    fn backward(&mut self, params: &[T], grad: &mut [T], examples: usize) {
        let (n, h, k) = (self.layout.visible(), self.layout.latents(), self.k);
        let (kernels, tied) = (self.kernels, self.architecture.tied);
        let blocks = self.layout.split(params);
        let work = &mut self.work;
        let encoder_input = &work.encoder_input[..examples * n];
        let k_aux = self.aux.map_or(0, |aux| aux.k_aux);
        // The active slots by latent (a counting sort, stable: example order within a latent),
        // the main ones numbered first, then the auxiliary ones.
        let main = examples * k;
        let (indices, aux_indices) = (&work.indices[..main], &work.aux_indices[..examples * k_aux]);
        let active = || indices.iter().chain(aux_indices).enumerate().filter(|(_, &j)| j != INACTIVE);
        work.starts.clear();
        work.starts.resize(h + 1, 0);
        for (_, &j) in active() {
            work.starts[j as usize + 1] += 1;
        }
        for j in 0..h {
            work.starts[j + 1] += work.starts[j];
        }
        work.by_latent.resize(work.starts[h], 0);
        work.next.clone_from(&work.starts);
        for (slot, &j) in active() {
            work.by_latent[work.next[j as usize]] = slot as u32;
            work.next[j as usize] += 1;
        }

        // Each latent's gradient rows: its active slots' rank-one updates, in example order.
        let grads = self.layout.split_mut(grad);
        let residual = &work.residual[..examples * n];
        // A slot's activation, its gradient, its example, and the row of `δ` (or `δ'`) it meets.
        let slot = |slot: u32| -> (T, T, usize, &[T]) {
            let slot = slot as usize;
            if slot < main {
                let e = slot / k;
                (work.values[slot], work.value_grads[slot], e, &work.residual[e * n..][..n])
            } else {
                let (aux, e) = (slot - main, (slot - main) / k_aux);
                (work.aux_values[aux], work.aux_grads[aux], e, &work.aux_residual[e * n..][..n])
            }
        };
        let (starts, by_latent) = (&work.starts, &work.by_latent);
        grads
            .w_enc
            .par_chunks_mut(n)
            .zip(grads.w_dec.par_chunks_mut(n))
            .zip(grads.b_enc.par_iter_mut())
            .enumerate()
            .with_min_len(64)
            .for_each(|(j, ((w_enc, w_dec), b_enc))| {
                let entries = &by_latent[starts[j]..starts[j + 1]];
                let Some((&first, rest)) = entries.split_first() else {
                    w_enc.fill(T::zero());
                    w_dec.fill(T::zero());
                    *b_enc = T::zero();
                    return;
                };
                // The first update writes the rows (as 0 + a x would), the others add to them.
                let (value, value_grad, e, delta) = slot(first);
                scaled_copy(value_grad, &encoder_input[e * n..][..n], w_enc);
                scaled_copy(value, delta, w_dec);
                let mut bias = value_grad.as_f64();
                for &other in rest {
                    let (value, value_grad, e, delta) = slot(other);
                    (kernels.axpy)(value_grad, &encoder_input[e * n..][..n], w_enc);
                    (kernels.axpy)(value, delta, w_dec);
                    bias += value_grad.as_f64();
                }
                *b_enc = T::cast(bias);
                if tied {
                    for (w, d) in w_enc.iter_mut().zip(w_dec.iter_mut()) {
                        *w = *w + *d;
                        *d = T::zero();
                    }
                }
            });
        // ∇b_dec = Σ_e δ_e − Σ_j ∇b_enc[j] W_enc[j] (the auxiliary decoding has no bias: only
        // its encoders' share reaches b_dec, when the encoders read x − b_dec).
        grads.b_dec.fill(T::zero());
        for delta in residual.chunks_exact(n) {
            (kernels.axpy)(T::one(), delta, grads.b_dec);
        }
        if self.architecture.pre_encoder_bias {
            for (j, &g) in grads.b_enc.iter().enumerate().filter(|(_, g)| **g != T::zero()) {
                (kernels.axpy)(-g, &blocks.w_enc[j * n..][..n], grads.b_dec);
            }
        }
    }
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

/// What every block of the forward pass reads.
struct Forward<'a, 'd, T: Real> {
    gemm: &'a Gemm,
    kernels: &'a Kernels<T>,
    units: Units,
    pre_encoder_bias: bool,
    w_enc: &'a Packed<'a, T>,
    b_enc: &'a [T],
    /// `W_dec`, or `W_enc` for tied weights.
    w_dec: &'a [T],
    b_dec: &'a [T],
    batch: &'a Dataset<'d, T>,
    n: usize,
    h: usize,
    k: usize,
    decode: bool,
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

/// A block's share of the auxiliary buffers: its slots, `δ'` rows and `‖ê + r‖²`.
struct AuxPart<'a, T> {
    slots: Slots<'a, T>,
    residual: &'a mut [T],
    squared_errors: &'a mut [f64],
}

/// The slots of a block's examples, `k` each: latents, activations and their gradients.
struct Slots<'a, T> {
    indices: &'a mut [u32],
    values: &'a mut [T],
    value_grads: &'a mut [T],
}

impl<T: Real> Forward<'_, '_, T> {
    /// One block of examples from `first`: the encoder's inputs `XC` (`x − b_dec`, or `x`), `Z =
    /// XC W_encᵀ`, selects each
    /// example's slots on `z + b_enc` (the bias added by the selection's scan) and, when
    /// decoding, its `‖r‖²`, `δ` and slot gradients.
    fn block(
        &self,
        first: usize,
        (encoder_input, residual): (&mut [T], &mut [T]),
        slots: Slots<'_, T>,
        squared_errors: &mut [f64],
        pre: &mut [T],
        mut aux_part: AuxPart<'_, T>,
    ) {
        let Slots { indices, values, value_grads } = slots;
        let (n, h, k) = (self.n, self.h, self.k);
        let width = encoder_input.len() / n;
        let x = self.batch.x();
        // What the encoder subtracts from x: b_dec, or nothing.
        let shift = |b: T| if self.pre_encoder_bias { b } else { T::zero() };
        for (e, row) in encoder_input.chunks_exact_mut(n).enumerate() {
            match self.batch.layout() {
                Layout::ExamplesByFeatures => {
                    let source = &self.batch.values()[(first + e) * n..][..n];
                    for ((c, &v), &b) in row.iter_mut().zip(source).zip(self.b_dec) {
                        *c = v - shift(b);
                    }
                }
                Layout::FeaturesByExamples => {
                    for (f, (c, &b)) in row.iter_mut().zip(self.b_dec).enumerate() {
                        *c = x.get(f, first + e) - shift(b);
                    }
                }
            }
        }
        let pre = &mut pre[..width * h];
        self.gemm.product(
            T::one(),
            MatRef::row_major(encoder_input, width, n),
            self.w_enc,
            T::zero(),
            MatMut::row_major(pre, width, h),
        );
        for e in 0..width {
            let (slots, activations) = (&mut indices[e * k..][..k], &mut values[e * k..][..k]);
            let active = top_k(self.kernels, self.units, &pre[e * h..][..h], self.b_enc, slots, activations);
            if self.decode {
                // r = b_dec − x before the decoding is added (−xc exactly with the pre-encoder bias).
                let r = &mut residual[e * n..][..n];
                for ((r, &c), &b) in r.iter_mut().zip(&encoder_input[e * n..][..n]).zip(self.b_dec) {
                    *r = (b - shift(b)) - c;
                }
                for (&j, &a) in slots[..active].iter().zip(&activations[..active]) {
                    (self.kernels.axpy)(a, &self.w_dec[j as usize * n..][..n], r);
                }
                squared_errors[e] = (self.kernels.dot)(r, r);
                if let Some(aux) = &self.aux {
                    self.auxiliary(aux, &pre[e * h..][..h], r, e, &mut aux_part);
                }
                r.iter_mut().for_each(|r| *r = *r * self.scale);
                let grads = &mut value_grads[e * k..][..k];
                for (g, &j) in grads.iter_mut().zip(&slots[..active]) {
                    *g = T::cast((self.kernels.dot)(&self.w_dec[j as usize * n..][..n], r));
                }
                grads[active..].fill(T::zero());
            }
        }
    }

    /// Example `e`'s auxiliary slots (the `k_aux` largest positive dead pre-activations of
    /// `z`), `‖ê + r‖²`, `δ' = α s (ê + r)/B` and the slots' gradients, `r` its residual.
    fn auxiliary(&self, aux: &AuxForward<'_, T>, z: &[T], r: &[T], e: usize, part: &mut AuxPart<'_, T>) {
        let (n, k) = (self.n, aux.k);
        let (slots, activations) = (&mut part.slots.indices[e * k..][..k], &mut part.slots.values[e * k..][..k]);
        // The dead latents' positive values, whatever the units: their decoding of the
        // residual is only a training signal.
        let active = top_k(self.kernels, Units::Relu, z, aux.bias, slots, activations);
        let q = &mut part.residual[e * n..][..n];
        q.copy_from_slice(r);
        for (&j, &a) in slots[..active].iter().zip(&activations[..active]) {
            (self.kernels.axpy)(a, &self.w_dec[j as usize * n..][..n], q);
        }
        part.squared_errors[e] = (self.kernels.dot)(q, q);
        q.iter_mut().for_each(|q| *q = *q * aux.weight);
        let grads = &mut part.slots.value_grads[e * k..][..k];
        for (g, &j) in grads.iter_mut().zip(&slots[..active]) {
            *g = T::cast((self.kernels.dot)(&self.w_dec[j as usize * n..][..n], q));
        }
        grads[active..].fill(T::zero());
    }
}

#[cfg(test)]
mod tests;
