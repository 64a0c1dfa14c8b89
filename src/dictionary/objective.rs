//! The TopK autoencoder's loss and gradient on a minibatch of `B` examples, on sparse kernels:
//! one dense GEMM (the encoder's), everything else on the `k` active latents of each example.
//!
//! In the notation of [`super::model`], per example `e` (selection `S_e`, `|S_e| ≤ k`):
//!
//! ```text
//! xc_e = x_e − b_dec                         (n)
//! Z    = XC W_encᵀ + 1 b_encᵀ                (B×h: the encoder GEMM by blocks of examples; the
//!                                            bias added by the selection as it scans)
//! a_e  = z_e on S_e, the k largest positive z_ej
//! r_e  = x̂_e − x_e = Σ_{j∈S_e} a_ej W_dec[j] − xc_e
//! L    = 1/(2B) Σ_e ‖r_e‖²
//! ```
//!
//! and, the selection held fixed, with `δ_e = r_e / B` and `g_ej = W_dec[j] · δ_e` for `j ∈ S_e`:
//!
//! ```text
//! ∇W_dec[j] = Σ_{e: j∈S_e} a_ej δ_e       ∇W_enc[j] = Σ_{e: j∈S_e} g_ej xc_e       ∇b_enc[j] = Σ g_ej
//! ∇b_dec    = Σ_e δ_e − Σ_j ∇b_enc[j] W_enc[j]
//! ```
//!
//! The decoding is `k` AXPYs per example and `∇a` `k` dot products; the weight gradients are
//! `k` rank-one updates per example, gathered by latent (a counting sort of the active slots)
//! so that each gradient row is written once, by one thread, in example order — no per-thread
//! copies of the `2hn` gradient, and a result that does not depend on how the latents are
//! shared among threads. The only `h`-wide temporary is the pre-activations of the blocks being
//! encoded: one `block × h` buffer per thread.

use rayon::prelude::*;

use super::model::{check_shape, DictionaryLayout};
use super::select::top_k;
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
}

/// The loss and gradient of a TopK autoencoder on minibatches of at most `capacity` examples,
/// with its workspace.
#[derive(Debug)]
pub struct TopKObjective<T: Real> {
    layout: DictionaryLayout,
    k: usize,
    capacity: usize,
    block: usize,
    gemm: Gemm,
    kernels: Kernels<T>,
    work: Workspace<T>,
}

/// Buffers reused across evaluations.
#[derive(Debug, Default)]
struct Workspace<T> {
    /// `xc_e = x_e − b_dec`, `B×n` row-major.
    centered: Vec<T>,
    /// `δ_e = r_e / B`, `B×n` row-major.
    residual: Vec<T>,
    /// The slots of each example: `B×k` latent indices (active first, by latent), their
    /// activations `a`, and their gradients `g`.
    indices: Vec<u32>,
    values: Vec<T>,
    value_grads: Vec<T>,
    /// `‖r_e‖²` per example.
    squared_errors: Vec<f64>,
    /// One `block × h` buffer of pre-activations per thread.
    pre: Vec<Vec<T>>,
    /// The active slots by latent: those of latent `j` are `by_latent[starts[j]..starts[j + 1]]`
    /// (slot `e·k + s`), in example order.
    starts: Vec<usize>,
    by_latent: Vec<u32>,
    packed_w_enc: PackBuffer<T>,
}

impl<T: Real> TopKObjective<T> {
    /// The objective of a model of `visible` inputs, `latents` latents and `k` active, on
    /// minibatches of at most `capacity` examples, with the detected instruction set. Made on
    /// the rayon pool it will run on: the examples are cut into blocks for its threads.
    pub fn new(visible: usize, latents: usize, k: usize, capacity: usize) -> Result<Self> {
        check_shape(visible, latents, k)?;
        if capacity == 0 || u32::try_from(capacity.saturating_mul(k)).is_err() {
            return Err(Error::InvalidHyperParameter {
                name: "batch size",
                value: capacity as f64,
                reason: "must be at least 1, with batch × k below 2³²",
            });
        }
        let threads = rayon::current_num_threads();
        let block = capacity.div_ceil(threads).clamp(16, BLOCK).min(capacity);
        Ok(TopKObjective {
            layout: DictionaryLayout::new(visible, latents),
            k,
            capacity,
            block,
            gemm: Gemm::detect(Backend::preferred()),
            kernels: Kernels::detect(),
            work: Workspace::default(),
        })
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
        let examples = self.encode(params, batch, true)?;
        let stats = self.stats(examples);
        self.backward(params, grad, examples);
        Ok((stats.squared_error / (2.0 * examples as f64), stats))
    }

    /// `L` on `batch` and what it measured, without the gradient (the backward pass is not
    /// run): a trained model's metrics on data.
    pub fn measure(&mut self, params: &[T], batch: &Dataset<'_, T>) -> Result<(f64, BatchStats)> {
        let examples = self.encode(params, batch, true)?;
        let stats = self.stats(examples);
        Ok((stats.squared_error / (2.0 * examples as f64), stats))
    }

    fn stats(&self, examples: usize) -> BatchStats {
        BatchStats {
            squared_error: self.work.squared_errors[..examples].iter().sum(),
            active: self.work.indices[..examples * self.k].iter().filter(|&&i| i != super::select::INACTIVE).count(),
        }
    }

    /// The slots of the examples of the last [`evaluate`](Self::evaluate),
    /// [`measure`](Self::measure) or
    /// [`encode_only`](Self::encode_only): `(indices, values)`, `k` per example.
    pub fn codes(&self, examples: usize) -> (&[u32], &[T]) {
        (&self.work.indices[..examples * self.k], &self.work.values[..examples * self.k])
    }

    /// The selection and activations of `batch` only (inference): read them with
    /// [`codes`](Self::codes). Returns the number of examples.
    pub fn encode_only(&mut self, params: &[T], batch: &Dataset<'_, T>) -> Result<usize> {
        self.encode(params, batch, false)
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
        let threads = rayon::current_num_threads();
        let work = &mut self.work;
        let capacity = self.capacity;
        for buffer in [&mut work.centered, &mut work.residual] {
            buffer.resize(capacity * n, T::zero());
        }
        work.indices.resize(capacity * k, 0);
        work.values.resize(capacity * k, T::zero());
        work.value_grads.resize(capacity * k, T::zero());
        work.squared_errors.resize(capacity, 0.0);
        work.pre.resize_with(threads, Vec::new);
        for pre in &mut work.pre {
            pre.resize(self.block * h, T::zero());
        }

        let blocks = self.layout.split(params);
        let packed =
            self.gemm.pack_right(MatRef::row_major(blocks.w_enc, h, n).t(), Order::RowMajor, &mut work.packed_w_enc);
        let context = Forward {
            gemm: &self.gemm,
            kernels: &self.kernels,
            w_enc: &packed,
            b_enc: blocks.b_enc,
            w_dec: blocks.w_dec,
            b_dec: blocks.b_dec,
            batch,
            n,
            h,
            k,
            decode,
            scale: T::cast(1.0 / examples as f64),
        };
        let block = self.block;
        let total_blocks = examples.div_ceil(block);
        // A wave of one block per thread at a time, each on its own pre-activation buffer.
        for wave in (0..total_blocks).step_by(threads) {
            let in_wave = threads.min(total_blocks - wave);
            let span = |width: usize| wave * block * width..((wave + in_wave) * block).min(examples) * width;
            work.centered[span(n)]
                .par_chunks_mut(block * n)
                .zip(work.residual[span(n)].par_chunks_mut(block * n))
                .zip(work.indices[span(k)].par_chunks_mut(block * k))
                .zip(work.values[span(k)].par_chunks_mut(block * k))
                .zip(work.value_grads[span(k)].par_chunks_mut(block * k))
                .zip(work.squared_errors[span(1)].par_chunks_mut(block))
                .zip(work.pre.par_iter_mut())
                .enumerate()
                .for_each(|(b, ((((((centered, residual), indices), values), value_grads), squared_errors), pre))| {
                    let slots = Slots { indices, values, value_grads };
                    context.block((wave + b) * block, centered, residual, slots, squared_errors, pre);
                });
        }
        Ok(examples)
    }

    /// The backward pass of the `examples` just encoded with their `δ` and `g`.
    fn backward(&mut self, params: &[T], grad: &mut [T], examples: usize) {
        let (n, h, k) = (self.layout.visible(), self.layout.latents(), self.k);
        let kernels = self.kernels;
        let blocks = self.layout.split(params);
        let work = &mut self.work;
        let centered = &work.centered[..examples * n];
        // The active slots by latent (a counting sort, stable: example order within a latent).
        let slots = &work.indices[..examples * k];
        work.starts.clear();
        work.starts.resize(h + 1, 0);
        for &j in slots.iter().filter(|&&j| j != super::select::INACTIVE) {
            work.starts[j as usize + 1] += 1;
        }
        for j in 0..h {
            work.starts[j + 1] += work.starts[j];
        }
        work.by_latent.resize(work.starts[h], 0);
        let mut next = work.starts.clone();
        for (slot, &j) in slots.iter().enumerate().filter(|(_, &j)| j != super::select::INACTIVE) {
            work.by_latent[next[j as usize]] = slot as u32;
            next[j as usize] += 1;
        }

        // Each latent's gradient rows: its active slots' rank-one updates, in example order.
        let grads = self.layout.split_mut(grad);
        let (residual, values, value_grads) = (&work.residual[..examples * n], &work.values, &work.value_grads);
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
                let (slot, e) = (first as usize, first as usize / k);
                scaled_copy(value_grads[slot], &centered[e * n..][..n], w_enc);
                scaled_copy(values[slot], &residual[e * n..][..n], w_dec);
                let mut bias = value_grads[slot].as_f64();
                for &slot in rest {
                    let (slot, e) = (slot as usize, slot as usize / k);
                    (kernels.axpy)(value_grads[slot], &centered[e * n..][..n], w_enc);
                    (kernels.axpy)(values[slot], &residual[e * n..][..n], w_dec);
                    bias += value_grads[slot].as_f64();
                }
                *b_enc = T::cast(bias);
            });
        // ∇b_dec = Σ_e δ_e − Σ_j ∇b_enc[j] W_enc[j].
        grads.b_dec.fill(T::zero());
        for delta in residual.chunks_exact(n) {
            (kernels.axpy)(T::one(), delta, grads.b_dec);
        }
        for (j, &g) in grads.b_enc.iter().enumerate().filter(|(_, g)| **g != T::zero()) {
            (kernels.axpy)(-g, &blocks.w_enc[j * n..][..n], grads.b_dec);
        }
    }
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
    w_enc: &'a Packed<'a, T>,
    b_enc: &'a [T],
    w_dec: &'a [T],
    b_dec: &'a [T],
    batch: &'a Dataset<'d, T>,
    n: usize,
    h: usize,
    k: usize,
    decode: bool,
    /// `1/B`.
    scale: T,
}

/// The slots of a block's examples, `k` each: latents, activations and their gradients.
struct Slots<'a, T> {
    indices: &'a mut [u32],
    values: &'a mut [T],
    value_grads: &'a mut [T],
}

impl<T: Real> Forward<'_, '_, T> {
    /// One block of examples from `first`: centres them, `Z = XC W_encᵀ`, selects each
    /// example's slots on `z + b_enc` (the bias added by the selection's scan) and, when
    /// decoding, its `‖r‖²`, `δ` and slot gradients.
    fn block(
        &self,
        first: usize,
        centered: &mut [T],
        residual: &mut [T],
        slots: Slots<'_, T>,
        squared_errors: &mut [f64],
        pre: &mut [T],
    ) {
        let Slots { indices, values, value_grads } = slots;
        let (n, h, k) = (self.n, self.h, self.k);
        let width = centered.len() / n;
        let x = self.batch.x();
        for (e, row) in centered.chunks_exact_mut(n).enumerate() {
            match self.batch.layout() {
                Layout::ExamplesByFeatures => {
                    let source = &self.batch.values()[(first + e) * n..][..n];
                    for ((c, &v), &b) in row.iter_mut().zip(source).zip(self.b_dec) {
                        *c = v - b;
                    }
                }
                Layout::FeaturesByExamples => {
                    for (f, (c, &b)) in row.iter_mut().zip(self.b_dec).enumerate() {
                        *c = x.get(f, first + e) - b;
                    }
                }
            }
        }
        let pre = &mut pre[..width * h];
        self.gemm.product(
            T::one(),
            MatRef::row_major(centered, width, n),
            self.w_enc,
            T::zero(),
            MatMut::row_major(pre, width, h),
        );
        for e in 0..width {
            let (slots, activations) = (&mut indices[e * k..][..k], &mut values[e * k..][..k]);
            let active = top_k(self.kernels, &pre[e * h..][..h], self.b_enc, slots, activations);
            if self.decode {
                let r = &mut residual[e * n..][..n];
                for (r, &c) in r.iter_mut().zip(&centered[e * n..][..n]) {
                    *r = -c;
                }
                for (&j, &a) in slots[..active].iter().zip(&activations[..active]) {
                    (self.kernels.axpy)(a, &self.w_dec[j as usize * n..][..n], r);
                }
                squared_errors[e] = (self.kernels.dot)(r, r);
                r.iter_mut().for_each(|r| *r = *r * self.scale);
                let grads = &mut value_grads[e * k..][..k];
                for (g, &j) in grads.iter_mut().zip(&slots[..active]) {
                    *g = T::cast((self.kernels.dot)(&self.w_dec[j as usize * n..][..n], r));
                }
                grads[active..].fill(T::zero());
            }
        }
    }
}

#[cfg(test)]
mod tests;
