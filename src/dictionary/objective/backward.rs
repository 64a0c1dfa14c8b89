//! The backward pass: each latent's gradient rows from its active slots (see the formulas of
//! [`super`]), then either written into a gradient vector ([`TopKObjective::evaluate`]) or
//! used at once by the optimiser's step ([`TopKObjective::evaluate_step`]): there a latent's
//! gradient rows, in the L1 cache, meet its parameter rows and their moments, and the `2hn`
//! gradient is never stored — neither written by the backward pass nor read back by the step.
//!
//! Latents are taken in fixed groups of [`GROUP`]: a task of the parallel pass, and one partial
//! sum of `∇b_dec`'s encoder share `−Σ_j ∇b_enc[j] W_enc[j]` (each row read before its step
//! moves it). The partials are added in group order, so that both ways give the same gradient,
//! bit for bit, whatever the number of threads.

use rayon::prelude::*;

use super::{scaled_copy, sort_by_latent, BatchBuffers, TopKObjective};
use crate::dictionary::model::{Blocks, RowStep};
use crate::kernels::Kernels;
use crate::optim::{StepRule, StepState};
use crate::real::Real;

/// Latents per task of the backward pass and per partial sum of `∇b_dec`'s encoder share: tasks
/// enough for every thread from `h` of a few hundred, partials of `(h/64)·n` values.
const GROUP: usize = 64;

impl<T: Real> TopKObjective<T> {
    /// The gradient of the `examples` just encoded (with their `δ`) into `grad`, every
    /// value written.
    pub(super) fn backward(&mut self, params: &[T], grad: &mut [T], examples: usize) {
        let (n, layout) = (self.layout.visible(), self.layout);
        let (backward, partials) = self.backward_pass(examples);
        let blocks = layout.split(params);
        let decoder = if backward.tied { blocks.w_enc } else { blocks.w_dec };
        let (groups, b_dec) = groups(layout.split_mut(grad), n);
        groups.zip(partials.par_chunks_mut(n)).enumerate().for_each(|(group, (grad, partial))| {
            backward.clear(partial);
            let rows = grad.w_enc.chunks_exact_mut(n).zip(grad.w_dec.chunks_exact_mut(n)).zip(grad.b_enc);
            for (i, ((w_enc, w_dec), b_enc)) in rows.enumerate() {
                let j = group * GROUP + i;
                *b_enc = backward.latent(j, &decoder[j * n..][..n], w_enc, w_dec);
                backward.encoder_share(*b_enc, &blocks.w_enc[j * n..][..n], partial);
            }
        });
        backward.b_dec(partials, b_dec);
    }

    /// The backward pass of the `examples` just encoded, each latent's rows moved by one step
    /// of `rule` (their moments in `state`) as soon as their gradient is known:
    /// [`backward`](Self::backward) then
    /// [`DictionaryLayout::unit_norm_step`](crate::dictionary::DictionaryLayout::unit_norm_step)
    /// (with `unit_norm_decoder`) or [`StepState::step`], bit for bit.
    pub(super) fn backward_step(
        &mut self,
        params: &mut [T],
        state: &mut StepState<T>,
        rule: &StepRule,
        unit_norm_decoder: bool,
        examples: usize,
    ) {
        let (n, layout, kernels) = (self.layout.visible(), self.layout, self.kernels);
        let (backward, partials) = self.backward_pass(examples);
        let (update, first, second) = state.begin_step(rule);
        let step = RowStep::new(update, unit_norm_decoder, kernels);
        let (params, b_dec) = groups(layout.split_mut(params), n);
        let (first, first_b_dec) = groups(layout.split_mut(first), n);
        let (second, second_b_dec) = groups(layout.split_mut(second), n);
        params.zip(first).zip(second).zip(partials.par_chunks_mut(n)).enumerate().for_each_init(
            // One latent's gradient rows, `∇W_enc[j]` then `∇W_dec[j]`.
            || vec![T::zero(); 2 * n],
            |gradient, (group, (((x, m), v), partial))| {
                backward.clear(partial);
                let (w_enc_grad, w_dec_grad) = gradient.split_at_mut(n);
                for i in 0..x.b_enc.len() {
                    let j = group * GROUP + i;
                    let row = i * n..(i + 1) * n;
                    // The next latent's rows and moments, asked for while this one's gradient
                    // is gathered.
                    let next = (i + 1) * n..(i + 2) * n;
                    if next.end <= x.w_enc.len() {
                        for rows in [&x.w_enc, &x.w_dec, &m.w_enc, &m.w_dec, &v.w_enc, &v.w_dec] {
                            (kernels.prefetch)(&rows[next.clone()]);
                        }
                    }
                    let (w_enc, w_dec) = (&mut x.w_enc[row.clone()], &mut x.w_dec[row.clone()]);
                    let decoder = if backward.tied { &*w_enc } else { &*w_dec };
                    let b_enc_grad = backward.latent(j, decoder, w_enc_grad, w_dec_grad);
                    backward.encoder_share(b_enc_grad, w_enc, partial);
                    step.decoder_row(w_dec, &mut m.w_dec[row.clone()], &mut v.w_dec[row.clone()], w_dec_grad);
                    step.other(w_enc, &mut m.w_enc[row.clone()], &mut v.w_enc[row], w_enc_grad);
                    step.other(&mut x.b_enc[i..=i], &mut m.b_enc[i..=i], &mut v.b_enc[i..=i], &[b_enc_grad]);
                }
            },
        );
        // b_dec moves last: its gradient needs every group's partial (no row reads b_dec).
        let mut b_dec_grad = vec![T::zero(); n];
        backward.b_dec(partials, &mut b_dec_grad);
        step.other(b_dec, first_b_dec, second_b_dec, &b_dec_grad);
    }

    /// The slots of the `examples` just encoded sorted by latent, and what the backward pass
    /// reads, with the buffer of `∇b_dec`'s partial sums.
    fn backward_pass(&mut self, examples: usize) -> (Backward<'_, T>, &mut [T]) {
        let (n, h, width) = (self.layout.visible(), self.layout.latents(), self.width);
        let k_aux = self.aux.map_or(0, |aux| aux.k_aux);
        let main = examples * width;
        let work = &mut self.work;
        let buffers = &work.batch;
        // The active slots by latent (a counting sort, stable: example order within a latent),
        // the main ones numbered first, then the auxiliary ones.
        let (indices, aux_indices) = (&buffers.indices[..main], &buffers.aux_indices[..examples * k_aux]);
        let values = (&buffers.values, &buffers.aux_values);
        sort_by_latent(
            h,
            indices.iter().chain(aux_indices).copied(),
            &mut work.starts,
            &mut work.next,
            &mut work.by_latent,
            |slot| match slot < main {
                true => Entry { example: (slot / width) as u32, auxiliary: false, value: values.0[slot] },
                false => {
                    Entry { example: ((slot - main) / k_aux) as u32, auxiliary: true, value: values.1[slot - main] }
                }
            },
        );
        work.b_dec_partials.resize(h.div_ceil(GROUP) * n, T::zero());
        let backward = Backward {
            kernels: self.kernels,
            n,
            tied: self.architecture.tied,
            pre_encoder_bias: self.architecture.pre_encoder_bias,
            buffers,
            residual: &buffers.residual[..examples * n],
            starts: &work.starts,
            by_latent: &work.by_latent,
            decoder_norms: &work.decoder_norms,
            l1_weight: self.l1 / examples as f64,
        };
        (backward, &mut work.b_dec_partials)
    }
}

/// What the backward pass reads: the encoded examples' buffers and their slots by latent.
struct Backward<'a, T: Real> {
    kernels: Kernels<T>,
    n: usize,
    tied: bool,
    pre_encoder_bias: bool,
    buffers: &'a BatchBuffers<T>,
    /// `δ`, `B×n`.
    residual: &'a [T],
    /// Latent `j`'s slots are `by_latent[starts[j]..starts[j + 1]]`.
    starts: &'a [usize],
    by_latent: &'a [Entry<T>],
    /// `‖W_dec[j]‖` with the L1 penalty (empty without), and `λ/B`.
    decoder_norms: &'a [T],
    l1_weight: f64,
}

impl<T: Real> Backward<'_, T> {
    /// The row of `δ` (or `δ'`) an entry's slot meets.
    fn delta(&self, entry: &Entry<T>) -> &[T] {
        let (row, n) = (entry.example as usize * self.n, self.n);
        match entry.auxiliary {
            false => &self.buffers.residual[row..][..n],
            true => &self.buffers.aux_residual[row..][..n],
        }
    }

    /// Latent `j`'s gradient rows into `w_enc` and `w_dec` (every value written; `decoder` is
    /// its decoder row, `W_enc[j]` for tied weights): its active slots' rank-one updates
    /// `a_ej δ_e` and `g_ej xc_e`, in example order, and the L1 penalty's share
    /// `λ/B (Σ_e a_ej) W_dec[j] / ‖W_dec[j]‖`. Returns `∇b_enc[j] = Σ_e g_ej`.
    ///
    /// The slot gradient `g_ej = ∂L/∂a_ej` is `W_dec[j]·δ_e`, plus `λ/B ‖W_dec[j]‖` for a main
    /// slot with the L1 penalty (`W_dec[j]·δ'_e` for an auxiliary slot). It is computed here
    /// rather than by the decoding, which would read each example's `k` decoder rows a second
    /// time: `W_dec[j]` stays in L1 for all of the latent's slots, and after the first slot
    /// (whose row is written by a scaled copy, its product by `dot`) `δ_e` is read once for both
    /// its rank-one update and the product (`Kernels::axpy_and_dot`, whose product is `dot`'s to
    /// the bit).
    fn latent(&self, j: usize, decoder: &[T], w_enc: &mut [T], w_dec: &mut [T]) -> T {
        let (n, axpy) = (self.n, self.kernels.axpy);
        let encoder_input = |entry: &Entry<T>| &self.buffers.encoder_input[entry.example as usize * n..][..n];
        let entries = &self.by_latent[self.starts[j]..self.starts[j + 1]];
        let Some((first, rest)) = entries.split_first() else {
            w_enc.fill(T::zero());
            w_dec.fill(T::zero());
            return T::zero();
        };
        // The rows of `XC` and `δ` of the next entries (by latent: from anywhere in them),
        // asked for two entries ahead, across latents.
        let start = self.starts[j];
        let ask = |at: usize| {
            if let Some(entry) = self.by_latent.get(at) {
                (self.kernels.prefetch)(encoder_input(entry));
                (self.kernels.prefetch)(self.delta(entry));
            }
        };
        ask(start + 1);
        ask(start + 2);
        let l1_term = self.decoder_norms.get(j).map(|&norm| T::cast(self.l1_weight) * norm);
        let slot_grad = |entry: &Entry<T>, product: f64| match l1_term {
            Some(term) if !entry.auxiliary => T::cast(product) + term,
            _ => T::cast(product),
        };
        // The first update writes the rows (as 0 + a x would), the others add to them.
        scaled_copy(first.value, self.delta(first), w_dec);
        let first_grad = slot_grad(first, (self.kernels.dot)(decoder, self.delta(first)));
        scaled_copy(first_grad, encoder_input(first), w_enc);
        let mut bias = first_grad.as_f64();
        // Σ_e a_ej over the main slots (the penalty's; the auxiliary ones are not).
        let penalised = |entry: &Entry<T>| if entry.auxiliary { 0.0 } else { entry.value.as_f64() };
        let mut activation_sum = penalised(first);
        for (i, entry) in rest.iter().enumerate() {
            ask(start + i + 3);
            let grad = slot_grad(entry, (self.kernels.axpy_and_dot)(entry.value, self.delta(entry), w_dec, decoder));
            axpy(grad, encoder_input(entry), w_enc);
            bias += grad.as_f64();
            activation_sum += penalised(entry);
        }
        if let Some(&norm) = self.decoder_norms.get(j).filter(|&&norm| norm > T::zero()) {
            axpy(T::cast(self.l1_weight * activation_sum / norm.as_f64()), decoder, w_dec);
        }
        if self.tied {
            for (w, d) in w_enc.iter_mut().zip(w_dec.iter_mut()) {
                *w = *w + *d;
                *d = T::zero();
            }
        }
        T::cast(bias)
    }

    /// A group's partial sum of `∇b_dec`'s encoder share, before its first latent.
    fn clear(&self, partial: &mut [T]) {
        if self.pre_encoder_bias {
            partial.fill(T::zero());
        }
    }

    /// Latent `j`'s share `−∇b_enc[j] W_enc[j]` of `∇b_dec` added to its group's `partial`
    /// (with the pre-encoder bias: the encoder reads `x − b_dec`).
    fn encoder_share(&self, b_enc_grad: T, w_enc: &[T], partial: &mut [T]) {
        if self.pre_encoder_bias && b_enc_grad != T::zero() {
            (self.kernels.axpy)(-b_enc_grad, w_enc, partial);
        }
    }

    /// `∇b_dec = Σ_e δ_e` plus the groups' partial sums of the encoder share, in group order
    /// (the auxiliary decoding has no bias: only its encoders' share reaches `b_dec`).
    fn b_dec(&self, partials: &[T], b_dec: &mut [T]) {
        b_dec.fill(T::zero());
        for delta in self.residual.chunks_exact(self.n) {
            (self.kernels.axpy)(T::one(), delta, b_dec);
        }
        if self.pre_encoder_bias {
            for partial in partials.chunks_exact(self.n) {
                (self.kernels.axpy)(T::one(), partial, b_dec);
            }
        }
    }
}

/// An active slot as the backward pass reads it, gathered by latent.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Entry<T> {
    example: u32,
    /// An auxiliary slot: it meets `δ'` rather than `δ`, and the L1 penalty leaves it out.
    auxiliary: bool,
    /// `a_ej`.
    value: T,
}

/// A group's rows of a parameter-shaped vector (parameters, gradient or moments).
struct Rows<'a, T> {
    w_enc: &'a mut [T],
    w_dec: &'a mut [T],
    b_enc: &'a mut [T],
}

/// `blocks` cut into groups of [`GROUP`] latents' rows, and its `b_dec`.
fn groups<T: Send>(blocks: Blocks<&mut [T]>, n: usize) -> (impl IndexedParallelIterator<Item = Rows<'_, T>>, &mut [T]) {
    let Blocks { w_enc, b_enc, w_dec, b_dec } = blocks;
    let rows = w_enc
        .par_chunks_mut(GROUP * n)
        .zip(w_dec.par_chunks_mut(GROUP * n))
        .zip(b_enc.par_chunks_mut(GROUP))
        .map(|((w_enc, w_dec), b_enc)| Rows { w_enc, w_dec, b_enc });
    (rows, b_dec)
}
