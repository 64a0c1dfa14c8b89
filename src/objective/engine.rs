//! The machinery of the fast evaluation of SPEC §2.1, shared by the in-memory objective and
//! the streaming one: five GEMMs per column block, and one fused elementwise pass after each of
//! the first, second and fourth, which also adds the biases and the sparsity delta (the GEMMs
//! write their outputs with β = 0). The weight decay `λW` is added in the one pass that sums
//! the threads' gradient accumulators (adding it to each would count it once per thread).
//!
//! The examples of a data set (or of one chunk of it) are cut into column blocks of `B`
//! examples. The forward pass runs over all blocks in parallel (each block a task of its own,
//! so that a thread held up elsewhere does not hold up the pass) and keeps `a2` (`h×m`, stored
//! block after block, each block `h×B` row-major) and each block's activation sums, so `rho_hat`
//! is known after one forward pass. The backward pass splits the blocks into one contiguous
//! range per thread; each range accumulates its own weight gradients, and the ranges are summed
//! in order, so for a given thread count the result is deterministic.
//!
//! One evaluation is: [`Engine::begin`]; per chunk [`Engine::forward`] and
//! [`Engine::accumulate_activations`]; [`Engine::sparsity`] once all activations are summed;
//! per chunk [`Engine::backward`], right after a `forward` of the same chunk; and
//! [`Engine::finish`].
//!
//! The model's variants are [`parts`](super::parts), each called at its points of these steps
//! whatever it is; the engine itself knows only the five products and the order of the passes.

use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;

use super::parts::{ContractivePenalty, EncoderInput, SparsityTerm, WeightTying};
use super::terms::CostTerms;
use crate::data::{Dataset, Layout};
use crate::error::{Error, Result};
use crate::gemm::{Backend, Gemm, MatMut, MatRef, Order, PackBuffer, Packed};
use crate::kernels::{HiddenKernels, Isa, Kernels, OutputKernels};
use crate::model::{HyperParams, ThetaLayout};
use crate::real::Real;

/// Examples per column block unless set with [`crate::Objective::with_block_size`]: 256, doubled
/// for each 4 MiB of `W1` beyond the first, up to 1024. Each block's weight-gradient GEMMs read
/// and write all of `∇W1` and `∇W2` (`2hn` values); once those no longer stay in cache, wider
/// blocks amortise that traffic over more flops (measured on S4; S1–S3 are best at 256).
pub fn default_block_size<T>(visible: usize, hidden: usize) -> usize {
    let weight_bytes = visible * hidden * std::mem::size_of::<T>();
    match weight_bytes.div_ceil(4 << 20) {
        0 | 1 => 256,
        2 | 3 => 512,
        _ => 1024,
    }
}

/// Settings and workspace of the fast evaluation: everything but the data.
#[derive(Debug)]
pub(crate) struct Engine<T: Real> {
    hyper: HyperParams,
    layout: ThetaLayout,
    /// The GEMM back-end, on the same instruction set as `kernels`.
    gemm: Gemm,
    kernels: Kernels<T>,
    hidden_kernels: HiddenKernels<T>,
    output_kernels: OutputKernels<T>,
    block_size: usize,
    sparsity: SparsityTerm,
    contractive: ContractivePenalty<T>,
    input: EncoderInput,
    tying: WeightTying<T>,
    /// SPEC §2.2's one-pass formulation: the backward pass runs before `rho_hat` is known and
    /// keeps `Σ P Xᵀ` and `Σ F Xᵀ` apart, combined by `finish` once the sparsity delta is.
    deferred_sparsity: bool,
    workspace: Workspace<T>,
    /// The terms of the last evaluation's cost.
    terms: CostTerms,
    /// Whether this engine's results count the weight decay: true but on the processes of a
    /// distributed evaluation other than the first (the decay is added once to the sum).
    counts_weight_decay: bool,
}

/// Buffers reused across evaluations.
#[derive(Debug, Default)]
struct Workspace<T> {
    /// `a2: h×m`, block after block; block `b` is `h×w_b` row-major.
    a2: Vec<T>,
    /// `Σ a2` over the examples of each block of the current chunk, `blocks × h`.
    block_activation_sums: Vec<f64>,
    /// The number of blocks of the last chunk `forward` saw.
    chunk_blocks: usize,
    /// `Σ a2` over all examples accumulated since `begin`, in chunk and block order.
    activation_totals: Vec<f64>,
    rho_hat: Vec<f64>,
    /// `s` of SPEC §1 with respect to `a2` (for tanh units, half the penalty's delta with
    /// respect to the mapped activity), in the working precision (the hidden delta's kernel
    /// adds it).
    sparsity_delta: Vec<T>,
    /// The decay of each row of `W1` in the gradient: `λ`, plus the contractive penalty's
    /// direct term.
    w1_row_decay: Vec<T>,
    ranges: Vec<RangeScratch<T>>,
    /// `W1` packed for `a2 = W1 x` (left operand, row-major output), once per chunk's forward
    /// pass and shared by every block and thread. (A block of one example, or `h = 1`, makes
    /// that output a column; the GEMM then packs `W1` again for it, correctly but slower.)
    packed_w1: PackBuffer<T>,
    /// `W2` packed for `z3 = W2 a2` (left operand, output laid out like the data).
    packed_w2: PackBuffer<T>,
    /// `W2ᵀ` packed for `W2ᵀ delta3` (left operand, row-major output).
    packed_w2t: PackBuffer<T>,
    /// The encoder input part's scratch for the forward pass's tasks, lent to each task while
    /// it runs (see [`Loan`]): as many buffers as tasks ever ran at once, none for clean data.
    forward_scratch: Mutex<Vec<Vec<T>>>,
    /// Whether `finish` has combined the deferred sparsity into the ranges' sums since `begin`.
    deferred_combined: bool,
}

/// A buffer of [`Workspace::forward_scratch`], lent to one task and returned when it ends: the
/// forward pass's tasks are rayon's splits of the blocks, so the number that run at once is
/// not known in advance, and after the first evaluation none allocates.
struct Loan<'a, T> {
    pool: &'a Mutex<Vec<Vec<T>>>,
    buffer: Vec<T>,
}

impl<'a, T: Real> Loan<'a, T> {
    /// A buffer of `len` values from `pool` (a new one when all are lent).
    fn take(pool: &'a Mutex<Vec<Vec<T>>>, len: usize) -> Self {
        let mut buffer = pool.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default();
        buffer.resize(len, T::zero());
        Loan { pool, buffer }
    }
}

impl<T> Drop for Loan<'_, T> {
    fn drop(&mut self) {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner).push(std::mem::take(&mut self.buffer));
    }
}

/// What one thread's range of blocks needs in the backward pass. (After `finish` with the
/// sparsity deferred, the `P` rows of `weight_grads` and `b1_sums` hold the combined sums.)
#[derive(Debug, Default)]
struct RangeScratch<T> {
    /// `z3`, then `delta3`, of one block: `n×B`, oriented like the data (see `output_layer`).
    output: Vec<T>,
    /// `W2ᵀ delta3 + s 1ᵀ`, then `delta2`, of one block: `h×B` row-major. With the sparsity
    /// deferred, `[P; F]`: `2h×B`.
    hidden: Vec<T>,
    /// `Σ delta2 Xᵀ` (`h×n`; with the sparsity deferred `Σ [P; F] Xᵀ`, `2h×n`) then
    /// `Σ delta3 a2ᵀ` (`n×h`), column-major as in theta, not yet divided by `m`.
    weight_grads: Vec<T>,
    /// `Σ loss` over the output values (see [`crate::model::Reconstruction::loss_scale`]).
    loss: f64,
    /// `Σ delta2` (deferred: `Σ P`) per hidden unit.
    b1_sums: Vec<f64>,
    /// `Σ F` per hidden unit, with the sparsity deferred.
    derivative_sums: Vec<f64>,
    b2_sums: Vec<f64>,
    /// `Σ f'(z2)²` per hidden unit, for the contractive penalty.
    contractive_sums: Vec<f64>,
    /// The encoder input part's scratch for one block (`x̃` when denoising).
    input: Vec<T>,
}

impl<T: Real> Engine<T> {
    /// The preferred GEMM back-end, the best kernels for this CPU, [`default_block_size`].
    pub(crate) fn new(hyper: HyperParams) -> Self {
        let kernels = Kernels::detect();
        Engine {
            hyper,
            layout: ThetaLayout::new(hyper.visible(), hyper.hidden()),
            gemm: Gemm::new(Backend::preferred(), kernels.isa).expect("the detected instruction set is supported"),
            kernels,
            hidden_kernels: kernels.hidden(hyper.activation()),
            output_kernels: kernels.output(hyper.reconstruction()),
            block_size: default_block_size::<T>(hyper.visible(), hyper.hidden()),
            sparsity: SparsityTerm::new(&hyper),
            contractive: ContractivePenalty::new(hyper.contractive()),
            input: EncoderInput::new(&hyper),
            tying: WeightTying::new(hyper.tied()),
            deferred_sparsity: false,
            workspace: Workspace::default(),
            terms: CostTerms::default(),
            counts_weight_decay: true,
        }
    }

    /// Draws the corruption noise of `epoch` (each example's noise is a function of the seed,
    /// the epoch and its index); no effect without corruption.
    pub(crate) fn set_corruption_epoch(&mut self, epoch: u64) {
        self.input.set_epoch(epoch);
    }

    pub(crate) fn set_backend(&mut self, backend: Backend) {
        self.gemm = Gemm::new(backend, self.gemm.isa()).expect("the engine's instruction set is supported");
    }

    /// Runs the elementwise kernels and the native GEMM's micro-kernels on `isa`.
    pub(crate) fn set_isa(&mut self, isa: Isa) -> Result<()> {
        self.gemm = self.gemm.with_isa(isa)?;
        self.kernels = Kernels::for_isa(isa).ok_or(Error::UnsupportedIsa { isa: isa.name() })?;
        self.hidden_kernels = self.kernels.hidden(self.hyper.activation());
        self.output_kernels = self.kernels.output(self.hyper.reconstruction());
        Ok(())
    }

    pub(crate) fn set_block_size(&mut self, block_size: usize) -> Result<()> {
        if block_size == 0 {
            return Err(Error::InvalidHyperParameter { name: "block_size", value: 0.0, reason: "must be at least 1" });
        }
        self.block_size = block_size;
        Ok(())
    }

    /// Defers the sparsity delta (SPEC §2.2 one-pass): `backward` may then run on a chunk
    /// before `sparsity` has seen all examples.
    pub(crate) fn set_deferred_sparsity(&mut self, deferred: bool) {
        self.deferred_sparsity = deferred;
    }

    /// Leaves the weight decay (its cost and its share of the gradient) out of
    /// [`finish`](Self::finish)'s results when `counts` is false: for all but one of the
    /// processes whose results are summed.
    pub(crate) fn set_counts_weight_decay(&mut self, counts: bool) {
        self.counts_weight_decay = counts;
    }

    /// `Σ a2` per hidden unit over the examples seen since `begin`: to be summed with other
    /// processes' before [`sparsity`](Self::sparsity).
    pub(crate) fn activation_totals(&self) -> &[f64] {
        &self.workspace.activation_totals
    }

    /// [`activation_totals`](Self::activation_totals), to be replaced by the sums over all
    /// processes.
    pub(crate) fn activation_totals_mut(&mut self) -> &mut [f64] {
        &mut self.workspace.activation_totals
    }

    pub(crate) fn hyper(&self) -> &HyperParams {
        &self.hyper
    }

    pub(crate) fn layout(&self) -> ThetaLayout {
        self.layout
    }

    pub(crate) fn backend(&self) -> Backend {
        self.gemm.backend()
    }

    pub(crate) fn isa(&self) -> Isa {
        self.kernels.isa
    }

    pub(crate) fn rho_hat(&self) -> &[f64] {
        &self.workspace.rho_hat
    }

    /// Starts an evaluation: checks `theta` and `grad`, sizes the workspace for chunks of at
    /// most `max_chunk` examples on the current rayon pool, and clears every sum.
    pub(crate) fn begin(&mut self, theta: &[T], grad: &[T], max_chunk: usize) -> Result<()> {
        self.layout.check(theta, "theta")?;
        if grad.len() != theta.len() {
            return Err(Error::shape_mismatch("grad", theta.len(), grad.len()));
        }
        self.prepare_workspace(rayon::current_num_threads(), max_chunk);
        let ws = &mut self.workspace;
        ws.activation_totals.fill(0.0);
        ws.deferred_combined = false;
        for r in &mut ws.ranges {
            r.weight_grads.fill(T::zero());
            r.b1_sums.fill(0.0);
            r.derivative_sums.fill(0.0);
            r.b2_sums.fill(0.0);
            r.contractive_sums.fill(0.0);
            r.loss = 0.0;
        }
        self.tying.prepare(self.layout, theta);
        let w1 = &self.tying.theta(theta)[..self.layout.weights_len()];
        self.contractive.prepare(w1, self.hyper.hidden());
        Ok(())
    }

    fn blocks(&self, examples: usize) -> usize {
        examples.div_ceil(self.block_size)
    }

    /// Sizes the buffers for chunks of at most `max_chunk` examples and `threads` ranges;
    /// allocates only when the shape of the work changed.
    fn prepare_workspace(&mut self, threads: usize, max_chunk: usize) {
        let (n, h, m) = (self.hyper.visible(), self.hyper.hidden(), max_chunk);
        let block = self.block_size.min(m);
        let blocks = self.blocks(m);
        let ranges = threads.clamp(1, blocks);
        let ws = &mut self.workspace;
        ws.a2.resize(h * m, T::zero());
        ws.block_activation_sums.resize(blocks * h, 0.0);
        ws.activation_totals.resize(h, 0.0);
        ws.rho_hat.resize(h, 0.0);
        ws.sparsity_delta.resize(h, T::zero());
        ws.ranges.resize_with(ranges, RangeScratch::default);
        let hidden_rows = if self.deferred_sparsity { 2 * h } else { h };
        for r in &mut ws.ranges {
            r.output.resize(n * block, T::zero());
            r.hidden.resize(hidden_rows * block, T::zero());
            r.weight_grads.resize((hidden_rows + h) * n, T::zero());
            r.b1_sums.resize(h, 0.0);
            r.derivative_sums.resize(h, 0.0);
            r.b2_sums.resize(n, 0.0);
            r.contractive_sums.resize(h, 0.0);
            r.input.resize(self.input.scratch_len(n, block), T::zero());
        }
        // A buffer per thread for the forward pass's tasks from the start, so that not even a
        // later evaluation whose tasks overlap more than the first's allocates one.
        let scratch_len = self.input.scratch_len(n, block);
        let pool = ws.forward_scratch.get_mut().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < threads {
            pool.resize_with(threads, Vec::new);
        }
        pool.iter_mut().for_each(|buffer| buffer.resize(scratch_len, T::zero()));
    }

    /// SPEC §2.1 step 1 on one chunk, every block in parallel: `a2 = f(W1 x + b1 1ᵀ)`, the
    /// GEMM `W1 x`, then `b1`, the activation and the block's row sums in one pass. `x` is the
    /// encoder input part's block (`x̃` when denoising); `first_example` is the global index of
    /// the chunk's first example.
    pub(crate) fn forward(&mut self, theta: &[T], data: &Dataset<'_, T>, first_example: usize) {
        let (n, h) = (self.hyper.visible(), self.hyper.hidden());
        let block = self.block_size;
        let blocks = self.blocks(data.examples());
        let Workspace { a2, block_activation_sums, chunk_blocks, packed_w1, forward_scratch, .. } = &mut self.workspace;
        *chunk_blocks = blocks;
        let theta = self.tying.theta(theta);
        let w1 = self.gemm.pack_left(self.layout.w1(theta), Order::RowMajor, packed_w1);
        let layer = HiddenLayer {
            h,
            w1: &w1,
            b1: self.layout.b1(theta),
            gemm: self.gemm,
            activate_sum: self.hidden_kernels.activate_sum,
        };
        let (input, pool) = (self.input, &*forward_scratch);
        let scratch_len = input.scratch_len(n, block.min(data.examples()));
        let a2 = a2[..h * data.examples()].par_chunks_mut(h * block);
        a2.zip(block_activation_sums[..blocks * h].par_chunks_mut(h)).enumerate().for_each_init(
            || Loan::take(pool, scratch_len),
            |scratch, (b, (a2, sums))| {
                let x = input.block(data, b * block, a2.len() / h, first_example, &mut scratch.buffer);
                layer.run(x, a2, sums);
            },
        );
    }

    /// Adds the activation sums of the last chunk `forward` saw to the totals, in block order.
    pub(crate) fn accumulate_activations(&mut self) {
        let h = self.hyper.hidden();
        let ws = &mut self.workspace;
        for sums in ws.block_activation_sums[..ws.chunk_blocks * h].chunks_exact(h) {
            for (total, s) in ws.activation_totals.iter_mut().zip(sums) {
                *total += s;
            }
        }
    }

    /// `rho_hat` from the activation totals of all `examples` (summed in chunk and block
    /// order, so independent of the thread count), the sparsity delta `s`, and the penalty's
    /// cost (`β Σ KL(ρ ‖ rho_hat_j)` for KL).
    pub(crate) fn sparsity(&mut self, examples: usize) -> Result<f64> {
        self.batch_rho_hat(examples);
        self.sparsity_at_rho_hat()
    }

    /// As [`sparsity`](Self::sparsity) on a minibatch, with `rho_hat` an exponential moving
    /// average: `rho_hat = μ running + (1 − μ) rho_hat_batch` (the batch's own value when
    /// `running` is empty), which then becomes `running`.
    pub(crate) fn sparsity_with_running_average(
        &mut self,
        examples: usize,
        running: &mut Vec<f64>,
        momentum: f64,
    ) -> Result<f64> {
        self.batch_rho_hat(examples);
        let rho_hat = &mut self.workspace.rho_hat;
        if running.len() == rho_hat.len() {
            for (r, &previous) in rho_hat.iter_mut().zip(running.iter()) {
                *r = momentum * previous + (1.0 - momentum) * *r;
            }
        }
        let cost = self.sparsity_at_rho_hat()?;
        running.clear();
        running.extend_from_slice(&self.workspace.rho_hat);
        Ok(cost)
    }

    fn batch_rho_hat(&mut self, examples: usize) {
        let ws = &mut self.workspace;
        self.sparsity.rho_hat(&ws.activation_totals, examples, &mut ws.rho_hat);
    }

    fn sparsity_at_rho_hat(&mut self) -> Result<f64> {
        let ws = &mut self.workspace;
        self.sparsity.cost_and_delta(&ws.rho_hat, &mut ws.sparsity_delta)
    }

    /// SPEC §2.1 steps 2–5 on one chunk (whose `forward` was the last one run), over each
    /// thread's range of its blocks, accumulating. Needs `sparsity` first unless the sparsity
    /// is deferred.
    pub(crate) fn backward(&mut self, theta: &[T], data: &Dataset<'_, T>, first_example: usize) {
        let blocks = self.blocks(data.examples());
        let Workspace { packed_w2, packed_w2t, a2, sparsity_delta, ranges, .. } = &mut self.workspace;
        let theta = self.tying.theta(theta);
        let w2 = self.layout.w2(theta);
        let output_order = match data.layout() {
            Layout::ExamplesByFeatures => Order::ColMajor,
            Layout::FeaturesByExamples => Order::RowMajor,
        };
        let w2_packed = self.gemm.pack_left(w2, output_order, packed_w2);
        let w2t_packed = self.gemm.pack_left(w2.t(), Order::RowMajor, packed_w2t);
        let pass = BackwardPass {
            n: self.hyper.visible(),
            h: self.hyper.hidden(),
            block: self.block_size,
            deferred_sparsity: self.deferred_sparsity,
            w2: &w2_packed,
            w2t: &w2t_packed,
            b2: self.layout.b2(theta),
            data: *data,
            first_example,
            input: self.input,
            a2,
            sparsity_delta,
            contractive: &self.contractive,
            gemm: self.gemm,
            hidden_kernels: self.hidden_kernels,
            output_kernels: self.output_kernels,
        };
        let range_count = ranges.len();
        ranges.par_iter_mut().enumerate().for_each(|(r, scratch)| {
            pass.run(blocks * r / range_count..blocks * (r + 1) / range_count, scratch);
        });
    }

    /// `λ` of the weight decay on each weight matrix as the engine applies it: none on the
    /// processes that leave it to another (see `set_counts_weight_decay`).
    fn decay_lambda(&self) -> f64 {
        if self.counts_weight_decay {
            self.tying.lambda_per_copy(self.hyper.lambda())
        } else {
            0.0
        }
    }

    /// SPEC §2.2's one-pass combination, in place in each range's sums:
    /// `Σ P Xᵀ ← Σ P Xᵀ + diag(s) Σ F Xᵀ` (the first `h` of each `2h`-row column of `∇W1`'s
    /// accumulator) and `Σ P ← Σ P + s ⊙ Σ F`, after which the sums read as those of an
    /// evaluation whose sparsity was not deferred. Once per evaluation: a second call before
    /// the next `begin` does nothing.
    fn combine_deferred_sparsity(&mut self) {
        let (n, h) = (self.hyper.visible(), self.hyper.hidden());
        let Workspace { sparsity_delta: s, ranges, deferred_combined, .. } = &mut self.workspace;
        if std::mem::replace(deferred_combined, true) {
            return;
        }
        for r in ranges.iter_mut() {
            r.weight_grads[..2 * h * n].par_chunks_mut(2 * h).for_each(|column| {
                let (p, f) = column.split_at_mut(h);
                for ((p, &f), &s) in p.iter_mut().zip(&*f).zip(s.iter()) {
                    *p = *p + s * f;
                }
            });
            for ((p, &f), &s) in r.b1_sums.iter_mut().zip(&r.derivative_sums).zip(s.iter()) {
                *p += s.as_f64() * f;
            }
        }
    }

    /// Sums the ranges' partial results (in range order) into `grad`, divides by `m`, adds
    /// the weight decay and the contractive penalty's direct term, and returns the cost of all
    /// `examples` by its terms, `sparsity` being the penalty's (also kept for
    /// [`terms`](Self::terms)). With the sparsity deferred, first combines
    /// `∇W1 = Σ P Xᵀ + diag(s) Σ F Xᵀ` and `∇b1 = Σ P + s ⊙ Σ F` (SPEC §2.2). The weight tying
    /// part folds the gradient last.
    pub(crate) fn finish(&mut self, theta: &[T], grad: &mut [T], examples: usize, sparsity: f64) -> f64 {
        if self.deferred_sparsity {
            self.combine_deferred_sparsity();
        }
        let (n, h, m) = (self.hyper.visible(), self.hyper.hidden(), examples as f64);
        let hn = self.layout.weights_len();
        let theta = self.tying.theta(theta);
        let lambda = self.decay_lambda();
        let (lambda_t, inv_m) = (T::cast(lambda), T::cast(1.0 / m));
        let Workspace { ranges, w1_row_decay, .. } = &mut self.workspace;
        w1_row_decay.resize(h, T::zero());
        let derivative_squared_sum = |j: usize| ranges.iter().map(|r| r.contractive_sums[j]).sum::<f64>();
        let contractive_cost = self.contractive.row_decay_and_cost(lambda, derivative_squared_sum, m, w1_row_decay);
        let (ranges, row_decay) = (&*ranges, &*w1_row_decay);
        // The accumulators of ∇W1 have 2h rows per column when the sparsity was deferred
        // (their F half now folded into the P half).
        let w1_rows = if self.deferred_sparsity { 2 * h } else { h };

        // ∇W1, one column (input unit) k at a time.
        let (grad_w1, grad_rest) = grad.split_at_mut(hn);
        let w1_norm: f64 = grad_w1
            .par_chunks_mut(h)
            .zip(theta[..hn].par_chunks(h))
            .enumerate()
            .map(|(k, (g, w))| {
                let column = k * w1_rows;
                for (j, (g, &w)) in g.iter_mut().zip(w).enumerate() {
                    let sum = ranges.iter().fold(T::zero(), |sum, r| sum + r.weight_grads[column + j]);
                    *g = row_decay[j] * w + sum * inv_m;
                }
                w.iter().map(|&w| w.as_f64() * w.as_f64()).sum::<f64>()
            })
            .sum();
        // ∇W2, in chunks of its column-major storage.
        const CHUNK: usize = 4096;
        let w2_offset = w1_rows * n;
        let w2_norm: f64 = grad_rest[..hn]
            .par_chunks_mut(CHUNK)
            .zip(theta[hn..2 * hn].par_chunks(CHUNK))
            .enumerate()
            .map(|(c, (g, w))| {
                g.fill(T::zero());
                for r in ranges {
                    for (g, &p) in g.iter_mut().zip(&r.weight_grads[w2_offset + c * CHUNK..]) {
                        *g = *g + p;
                    }
                }
                g.iter_mut().zip(w).for_each(|(g, &w)| *g = lambda_t * w + *g * inv_m);
                w.iter().map(|&w| w.as_f64() * w.as_f64()).sum::<f64>()
            })
            .sum();

        let (grad_b1, grad_b2) = grad_rest[hn..].split_at_mut(h);
        for (j, g) in grad_b1.iter_mut().enumerate() {
            *g = T::cast(ranges.iter().map(|r| r.b1_sums[j]).sum::<f64>() / m);
        }
        for (k, g) in grad_b2.iter_mut().enumerate() {
            *g = T::cast(ranges.iter().map(|r| r.b2_sums[k]).sum::<f64>() / m);
        }
        self.tying.fold_gradient(self.layout, grad);
        let loss: f64 = ranges.iter().map(|r| r.loss).sum();
        self.terms = CostTerms {
            reconstruction: self.hyper.reconstruction().loss_scale() * loss / m,
            weight_decay: lambda / 2.0 * (w1_norm + w2_norm),
            sparsity,
            contractive: contractive_cost,
        };
        self.terms.total()
    }

    /// The terms of the last evaluation's cost (all zero before the first).
    pub(crate) fn terms(&self) -> CostTerms {
        self.terms
    }
}

/// Everything the backward pass reads, shared by the threads.
struct BackwardPass<'a, T> {
    n: usize,
    h: usize,
    block: usize,
    deferred_sparsity: bool,
    /// `W2`, packed for `z3 = W2 a2`.
    w2: &'a Packed<'a, T>,
    /// `W2ᵀ`, packed for `W2ᵀ delta3`.
    w2t: &'a Packed<'a, T>,
    b2: &'a [T],
    data: Dataset<'a, T>,
    /// The global index of the data's first example (for the input part).
    first_example: usize,
    input: EncoderInput,
    a2: &'a [T],
    sparsity_delta: &'a [T],
    contractive: &'a ContractivePenalty<T>,
    gemm: Gemm,
    hidden_kernels: HiddenKernels<T>,
    output_kernels: OutputKernels<T>,
}

/// The hidden layer's forward pass over one block: `a2 = f(W1 x + b1 1ᵀ)`, and the block's
/// activation sums.
struct HiddenLayer<'a, T> {
    h: usize,
    /// `W1`, packed for this product.
    w1: &'a Packed<'a, T>,
    b1: &'a [T],
    gemm: Gemm,
    activate_sum: fn(&mut [T], T) -> f64,
}

impl<T: Real> HiddenLayer<'_, T> {
    /// `x: n×width` into `a2: h×width` row-major; `sums[j] = Σ a2[j, :]`. The bias is added
    /// by the activation's pass, not prefilled into the GEMM's output.
    fn run(&self, x: MatRef<'_, T>, a2: &mut [T], sums: &mut [f64]) {
        let width = a2.len() / self.h;
        self.gemm.product(T::one(), self.w1, x, T::zero(), MatMut::row_major(a2, self.h, width));
        for ((row, &bias), sum) in a2.chunks_exact_mut(width).zip(self.b1).zip(sums) {
            *sum = (self.activate_sum)(row, bias);
        }
    }
}

impl<T: Real> BackwardPass<'_, T> {
    /// Adds the blocks of `blocks` to the sums in `scratch`.
    fn run(&self, blocks: Range<usize>, scratch: &mut RangeScratch<T>) {
        let (n, h) = (self.n, self.h);
        let RangeScratch {
            output,
            hidden,
            weight_grads,
            loss,
            b1_sums,
            derivative_sums,
            b2_sums,
            contractive_sums,
            input,
        } = scratch;
        let hidden_rows = if self.deferred_sparsity { 2 * h } else { h };
        let (grad_w1, grad_w2) = weight_grads.split_at_mut(hidden_rows * n);
        let m = self.data.examples();
        for b in blocks {
            let start = b * self.block;
            let width = self.block.min(m - start);
            let a2 = &self.a2[start * h..(start + width) * h];
            let a2_view = MatRef::row_major(a2, h, width);
            // The encoder's input, made again exactly as the forward pass made it.
            let x = self.input.block(&self.data, start, width, self.first_example, input);

            // Steps 2–3: delta3 and the output layer's sums, then ∇W2 += delta3 a2ᵀ.
            let z3 = &mut output[..n * width];
            let (rs, cs) = self.output_layer(start, width, a2_view, z3, loss, b2_sums);
            let delta3 = MatRef::new(&output[..n * width], n, width, rs, cs);
            self.gemm.product(T::one(), delta3, a2_view.t(), T::one(), MatMut::col_major(&mut *grad_w2, n, h));

            if self.deferred_sparsity {
                // Step 4 deferred: P = (W2ᵀ delta3) ⊙ F and F = f'(z2), stacked as
                // [P; F]; their row sums for ∇b1.
                let (p, f) = hidden[..2 * h * width].split_at_mut(h * width);
                self.gemm.product(T::one(), self.w2t, delta3, T::zero(), MatMut::row_major(&mut *p, h, width));
                let rows = p.chunks_exact_mut(width).zip(a2.chunks_exact(width)).zip(f.chunks_exact_mut(width));
                for (((p, a), f), (p_sum, f_sum)) in rows.zip(b1_sums.iter_mut().zip(derivative_sums.iter_mut())) {
                    let (dp, df) = (self.hidden_kernels.delta_deferred)(p, a, f);
                    *p_sum += dp;
                    *f_sum += df;
                }
            } else {
                // Step 4: W2ᵀ delta3, then delta2 = (W2ᵀ delta3 + s 1ᵀ) ⊙ f' and ∇b1's sums
                // in one pass (the sparsity delta added there, not prefilled).
                let p = &mut hidden[..h * width];
                self.gemm.product(T::one(), self.w2t, delta3, T::zero(), MatMut::row_major(&mut *p, h, width));
                let rows = p.chunks_exact_mut(width).zip(a2.chunks_exact(width));
                for (((p, a), &s), sum) in rows.zip(self.sparsity_delta).zip(b1_sums.iter_mut()) {
                    *sum += (self.hidden_kernels.delta_sum)(p, a, s);
                }
            }
            // The contractive penalty's share of delta2 (of P when deferred: it does not depend
            // on rho_hat).
            let kernel = self.hidden_kernels.contractive_delta;
            self.contractive.add_delta(kernel, &mut hidden[..h * width], a2, width, b1_sums, contractive_sums);

            // Step 5: ∇W1 += delta2 Xᵀ (deferred: [P; F] Xᵀ, one GEMM with 2h rows).
            let delta2 = MatRef::row_major(&hidden[..hidden_rows * width], hidden_rows, width);
            self.gemm.product(T::one(), delta2, x.t(), T::one(), MatMut::col_major(&mut *grad_w1, hidden_rows, n));
        }
    }

    /// Step 2 for one block: `z3 = W2 a2`, then `delta3` at `z3 + b2 1ᵀ` in place, the loss
    /// and `∇b2`'s sums in one pass over the block. The block is laid out like the data, so
    /// that each run of `z3` meets a contiguous run of `x`: column-major (one example after
    /// another) for examples-by-features data, row-major otherwise. Returns the strides of
    /// `delta3`.
    ///
    /// The bias is added by the elementwise pass rather than prefilled into the GEMM's output
    /// (one pass over the block fewer). Running that pass on each GEMM tile while it is in L1
    /// was measured slower on S1 and S2 (PERF.md): the block is in L2 either way.
    fn output_layer(
        &self,
        start: usize,
        width: usize,
        a2: MatRef<'_, T>,
        z3: &mut [T],
        loss: &mut f64,
        b2_sums: &mut [f64],
    ) -> (usize, usize) {
        let n = self.n;
        let (mut z3, strides) = match self.data.layout() {
            Layout::ExamplesByFeatures => (MatMut::col_major(z3, n, width), (1, n)),
            Layout::FeaturesByExamples => (MatMut::row_major(z3, n, width), (width, 1)),
        };
        self.gemm.product(T::one(), self.w2, a2, T::zero(), z3.reborrow());
        *loss += (self.output_kernels.delta)(z3, self.data.x().columns(start, width), self.b2, b2_sums);
        strides
    }
}
