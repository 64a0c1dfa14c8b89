//! The objective of SPEC §2.1 on a data set split across processes (data parallelism). Every
//! term of `J` and `∇J` is a sum over examples, so each process runs the forward and backward
//! passes on its own examples and two element-wise sums over the processes combine them:
//!
//! 1. after the forward pass, `[Σ a2; m_p; stop_p; failed_p; hash_p]` (`h + 2 + 3N` values):
//!    every process then has the whole data set's `rho_hat`, hence the same sparsity delta
//!    `s` (SPEC §2.2 needs nothing else from the other processes), knows whether any process
//!    asked to stop, whether any failed to read its data (streamed), and whether all hold the
//!    same parameters (a check that they did not drift apart);
//! 2. after the backward pass, `[∇J_p; terms_p; failed_p]` (`2hn + h + n + 4 + N` values),
//!    each process's share of the gradient (its sums divided by the global `m`) and of the
//!    cost's terms.
//!
//! The terms that do not depend on the data — the weight decay and the sparsity penalty — are
//! counted by the first process only. Every process ends with the same cost and gradient, to
//! rounding of the sum's order, which the collective fixes: so optimisers running on every
//! process take identical steps.
//!
//! The processes' examples are contiguous ranges of the data set in rank order
//! ([`rows_of`]): example `i` of the whole set is the same example on any number of processes,
//! which keeps a denoising model's corruption noise (a function of the example's global index)
//! the same as on one process.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use super::engine::Engine;
use super::{CostTerms, StreamingObjective};
use crate::data::stream::ExampleSource;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gemm::Backend;
use crate::model::HyperParams;
use crate::optim::Differentiable;
use crate::real::Real;
use crate::train::{AutoencoderObjective, DataFingerprint};

/// The processes of a distributed evaluation, as the objective needs them: a rank, a count,
/// and an element-wise sum over all of them. Implemented for MPI communicators (cargo feature
/// `mpi`); any other transport can implement it.
pub trait Collective {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Writes into `sums`, on every process, the element-wise sum of every process's
    /// `values` (both of one length, the same on every process). Every process must call it
    /// the same number of times, from the thread that made the collective.
    fn sum(&self, values: &[f64], sums: &mut [f64]) -> Result<()>;

    /// [`sum`](Self::sum) of float32 values, for a float32 model's gradient: summed in float32
    /// where the transport can (half the bytes of float64); by default widened, summed in
    /// float64 and rounded back.
    fn sum_f32(&self, values: &[f32], sums: &mut [f32]) -> Result<()> {
        let wide: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        let mut wide_sums = vec![0.0; wide.len()];
        self.sum(&wide, &mut wide_sums)?;
        sums.iter_mut().zip(&wide_sums).for_each(|(s, &w)| *s = w as f32);
        Ok(())
    }
}

/// `sums ←` the element-wise sum over the processes of `collective` of every process's
/// `values`, in `T` itself ([`Collective::sum_f32`] for float32).
pub fn sum_native<T: Real, C: Collective + ?Sized>(collective: &C, values: &[T], sums: &mut [T]) -> Result<()> {
    // `Real` is f32 or f64: the casts below are to the type itself.
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        collective.sum_f32(bytemuck::cast_slice(values), bytemuck::cast_slice_mut(sums))
    } else {
        collective.sum(bytemuck::cast_slice(values), bytemuck::cast_slice_mut(sums))
    }
}

impl<C: Collective + ?Sized> Collective for &C {
    fn rank(&self) -> usize {
        (**self).rank()
    }

    fn size(&self) -> usize {
        (**self).size()
    }

    fn sum(&self, values: &[f64], sums: &mut [f64]) -> Result<()> {
        (**self).sum(values, sums)
    }

    fn sum_f32(&self, values: &[f32], sums: &mut [f32]) -> Result<()> {
        (**self).sum_f32(values, sums)
    }
}

/// A 64-bit hash of the parameters' bits (every value's, by position): equal on two
/// processes exactly when, but for collisions, their parameters are. A model of millions of
/// parameters is hashed at every step, so fixed chunks are hashed in parallel (the hash does
/// not depend on the thread count) and their hashes mixed in order.
pub(crate) fn parameters_hash<T: Real>(theta: &[T]) -> u64 {
    const CHUNK: usize = 1 << 16;
    let chunks: Vec<u64> = theta.par_chunks(CHUNK).map(chunk_hash).collect();
    chunks.into_iter().fold(theta.len() as u64, mix)
}

/// One step of the hash: FNV-1a's prime, on a rotation of the state xor the value's bits.
fn mix(hash: u64, bits: u64) -> u64 {
    (hash.rotate_left(5) ^ bits).wrapping_mul(0x0000_0100_0000_01b3)
}

/// The hash of one chunk of [`parameters_hash`]: four lanes of values `4i + l`, whose
/// multiplications do not wait for each other, mixed together at the end.
fn chunk_hash<T: Real>(values: &[T]) -> u64 {
    let mut lanes = [0x9e37_79b9_7f4a_7c15, 1, 2, 3];
    let quads = values.chunks_exact(4);
    let rest = quads.remainder();
    for quad in quads {
        for (lane, v) in lanes.iter_mut().zip(quad) {
            *lane = mix(*lane, v.as_f64().to_bits());
        }
    }
    for (lane, v) in lanes.iter_mut().zip(rest) {
        *lane = mix(*lane, v.as_f64().to_bits());
    }
    lanes.into_iter().fold(values.len() as u64, mix)
}

/// `error` about a row of this process's part as an error about that row of the whole data
/// set, whose part begins at row `first_example`.
pub fn in_whole(error: Error, first_example: usize) -> Error {
    match error {
        Error::NonFiniteData { what, row, column, value } => {
            Error::NonFiniteData { what, row: first_example + row, column, value }
        }
        Error::DataOutOfRange { what, row, column, value, reason } => {
            Error::DataOutOfRange { what, row: first_example + row, column, value, reason }
        }
        other => other,
    }
}

/// One process alone: rank 0 of 1, whose sums are its own values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Alone;

impl Collective for Alone {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn sum(&self, values: &[f64], sums: &mut [f64]) -> Result<()> {
        sums.copy_from_slice(values);
        Ok(())
    }

    fn sum_f32(&self, values: &[f32], sums: &mut [f32]) -> Result<()> {
        sums.copy_from_slice(values);
        Ok(())
    }
}

/// The examples of `m` that rank `rank` of `size` holds: `⌊m·r/N⌋..⌊m·(r+1)/N⌋`, contiguous and
/// in rank order; their lengths differ by at most one, and a rank holds none when `m < N`.
pub fn rows_of(rank: usize, size: usize, m: usize) -> Range<usize> {
    let bound = |r: usize| (m as u128 * r as u128 / size as u128) as usize;
    bound(rank)..bound(rank + 1)
}

/// Agrees on the outcome of a step each process took on its own (reading its part of the
/// data, say): `Ok` everywhere when it succeeded everywhere, otherwise the process's own error
/// where it failed and [`Error::OtherRankFailed`] naming the first failed rank elsewhere — so
/// that no process waits in a collective the others never reach.
pub fn agree<R>(collective: &impl Collective, outcome: Result<R>, reason: &'static str) -> Result<R> {
    let mut mine = vec![0.0; collective.size()];
    mine[collective.rank()] = if outcome.is_err() { 1.0 } else { 0.0 };
    let mut failed = vec![0.0; collective.size()];
    collective.sum(&mine, &mut failed)?;
    match failed.iter().position(|&f| f != 0.0) {
        None => outcome,
        Some(_) if outcome.is_err() => outcome,
        Some(rank) => Err(Error::OtherRankFailed { rank, reason }),
    }
}

/// This process's part of a data set split across processes: its rows (`None` when it holds
/// no example), the index of its first row in the whole data set, and the whole's number of
/// rows.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a, 'd, T: Real> {
    pub data: Option<&'a Dataset<'d, T>>,
    pub first_example: usize,
    pub examples: usize,
}

impl<'a, 'd, T: Real> Part<'a, 'd, T> {
    /// The whole of `data`, on one process.
    pub fn whole(data: &'a Dataset<'d, T>) -> Self {
        Part { data: Some(data), first_example: 0, examples: data.examples() }
    }

    /// The rows this process holds.
    pub fn local_examples(&self) -> usize {
        self.data.map_or(0, |d| d.examples())
    }
}

/// A process's side of the sums of a distributed evaluation: its [`Collective`], the stop
/// flags of [`synchronize_stop`](Self::synchronize_stop), and the sums' buffers. The
/// objectives in memory and streamed keep one; a minibatch trainer is given one
/// ([`MinibatchTrainer::fit_split`](crate::train::MinibatchTrainer::fit_split)).
#[derive(Debug)]
pub struct Split<C> {
    collective: C,
    /// `(requested, agreed)`.
    stop: Option<(Arc<AtomicBool>, Arc<AtomicBool>)>,
    /// This process's values of a sum, and the sums (kept: no allocation per evaluation).
    values: Vec<f64>,
    sums: Vec<f64>,
}

impl<C: Collective> Split<C> {
    pub fn new(collective: C) -> Self {
        Split { collective, stop: None, values: Vec::new(), sums: Vec::new() }
    }

    /// Sums `self.values` over the processes into `self.sums`.
    fn sum(&mut self) -> Result<()> {
        self.sums.resize(self.values.len(), 0.0);
        self.collective.sum(&self.values, &mut self.sums)
    }

    pub fn collective(&self) -> &C {
        &self.collective
    }

    /// As [`DistributedObjective::synchronize_stop`].
    pub fn synchronize_stop(mut self, requested: Arc<AtomicBool>, agreed: Arc<AtomicBool>) -> Self {
        self.stop = Some((requested, agreed));
        self
    }

    /// The flags of [`synchronize_stop`](Self::synchronize_stop), made (unset) when it was not
    /// called: `(requested, agreed)`.
    pub(crate) fn stop_flags(&mut self) -> (Arc<AtomicBool>, Arc<AtomicBool>) {
        self.stop.get_or_insert_with(|| (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)))).clone()
    }

    /// The sum of `count` over the processes.
    pub(crate) fn total(&mut self, count: usize) -> Result<usize> {
        self.values.clear();
        self.values.push(count as f64);
        self.sum()?;
        Ok(self.sums[0] as usize)
    }

    /// Whether this process counts the terms that do not depend on the data.
    pub(crate) fn counts_global_terms(&self) -> bool {
        self.collective.rank() == 0
    }

    /// The first sum, after this process's forward pass at `theta` (`pass`: its examples, or
    /// why it failed): `[Σ a2; m_p; stop_p; failed_0 … failed_{N−1}; hash_0 … hash_{N−1}]`,
    /// the last a hash of each process's `theta` (in two exact 32-bit halves). Leaves every
    /// process's `Σ a2` in `engine`; returns the examples of all processes. Fails on every
    /// process alike when a pass failed anywhere (with its own error where it did), or when
    /// the processes' parameters differ.
    pub(crate) fn activations<T: Real>(
        &mut self,
        engine: &mut Engine<T>,
        theta: &[T],
        pass: Result<usize>,
    ) -> Result<usize> {
        let (rank, size) = (self.collective.rank(), self.collective.size());
        let requested = self.stop.as_ref().is_some_and(|(requested, _)| requested.load(Ordering::Relaxed));
        if size == 1 {
            self.agree_stop(requested);
            return pass;
        }
        let h = engine.hyper().hidden();
        let hash = parameters_hash(theta);
        self.values.clear();
        self.values.extend_from_slice(engine.activation_totals());
        self.values.push(*pass.as_ref().unwrap_or(&0) as f64);
        self.values.push(if requested { 1.0 } else { 0.0 });
        self.values.extend((0..size).map(|r| if r == rank && pass.is_err() { 1.0 } else { 0.0 }));
        self.values.extend((0..size).flat_map(|r| {
            let mine = r == rank;
            [if mine { (hash >> 32) as f64 } else { 0.0 }, if mine { (hash & 0xffff_ffff) as f64 } else { 0.0 }]
        }));
        self.sum()?;
        let (failed, hashes) = self.sums[h + 2..].split_at(size);
        let failed = failed.iter().position(|&f| f != 0.0);
        pass?;
        if let Some(rank) = failed {
            return Err(Error::OtherRankFailed { rank, reason: "reading or checking its part of the data" });
        }
        if let Some(rank) = hashes.chunks_exact(2).position(|pair| pair != &hashes[..2]) {
            return Err(Error::ProcessesDiverged { rank });
        }
        self.agree_stop(self.sums[h + 1] > 0.0);
        engine.activation_totals_mut().copy_from_slice(&self.sums[..h]);
        Ok(self.sums[h] as usize)
    }

    /// Sets the agreed stop once a stop was requested (by any process).
    fn agree_stop(&self, requested: bool) {
        if let Some((_, agreed)) = &self.stop {
            if requested {
                agreed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// The second sum, after [`Engine::finish`] left this process's share of the gradient in
    /// `grad` and of the cost's terms in `engine` (`pass`: whether a second pass over its
    /// data succeeded): `[∇J_p; terms_p; failed_0 … failed_{N−1}]`. Leaves the gradient of all
    /// processes in `grad`; returns their cost's terms.
    pub(crate) fn results<T: Real>(
        &mut self,
        engine: &Engine<T>,
        grad: &mut [T],
        pass: Result<()>,
    ) -> Result<CostTerms> {
        let (rank, size) = (self.collective.rank(), self.collective.size());
        if size == 1 {
            return pass.map(|()| engine.terms());
        }
        let terms = engine.terms();
        self.values.clear();
        self.values.extend(grad.iter().map(|g| g.as_f64()));
        self.values.extend([terms.reconstruction, terms.weight_decay, terms.sparsity, terms.contractive]);
        self.values.extend((0..size).map(|r| if r == rank && pass.is_err() { 1.0 } else { 0.0 }));
        self.sum()?;
        let failed = self.sums[grad.len() + 4..].iter().position(|&f| f != 0.0);
        pass?;
        if let Some(rank) = failed {
            return Err(Error::OtherRankFailed { rank, reason: "reading its part of the data again" });
        }
        let (summed, terms) = self.sums.split_at(grad.len());
        for (g, &s) in grad.iter_mut().zip(summed) {
            *g = T::cast(s);
        }
        Ok(CostTerms { reconstruction: terms[0], weight_decay: terms[1], sparsity: terms[2], contractive: terms[3] })
    }

    /// [`DataFingerprint::of_parts`] of every process's `local` fingerprint, in rank order
    /// (`local` itself on one process).
    pub(crate) fn fingerprint(&self, local: DataFingerprint) -> Result<DataFingerprint> {
        if self.collective.size() == 1 {
            return Ok(local);
        }
        // Each process's count and hash (in exact 32-bit halves) in its slot.
        let (rank, size) = (self.collective.rank(), self.collective.size());
        let mut mine = vec![0.0; 3 * size];
        mine[3 * rank..3 * rank + 3].copy_from_slice(&[
            local.examples as f64,
            (local.hash >> 32) as f64,
            (local.hash & 0xffff_ffff) as f64,
        ]);
        let mut slots = vec![0.0; 3 * size];
        self.collective.sum(&mine, &mut slots)?;
        let parts: Vec<DataFingerprint> = slots
            .chunks_exact(3)
            .map(|s| DataFingerprint { examples: s[0] as usize, hash: ((s[1] as u64) << 32) | s[2] as u64, ..local })
            .collect();
        Ok(DataFingerprint::of_parts(&parts).expect("at least one process"))
    }
}

/// `J(theta)` and `∇J(theta)` of a sparse autoencoder on a data set split across the
/// processes of `collective`, this process holding `data` (none for a rank without examples)
/// whose first example is example `first_example` of the whole set. [`evaluate`](Self::evaluate)
/// is collective: every process calls it with the same `theta`. (Streamed:
/// [`StreamingObjective::split`](super::StreamingObjective::split).)
#[derive(Debug)]
pub struct DistributedObjective<'d, T: Real, C: Collective> {
    engine: Engine<T>,
    data: Option<Dataset<'d, T>>,
    first_example: usize,
    split: Split<C>,
    examples: usize,
    terms: CostTerms,
}

impl<'d, T: Real, C: Collective> DistributedObjective<'d, T, C> {
    /// The objective of `hyper` on this process's `data`; fails as
    /// [`Objective::new`](super::Objective::new) does on the data. Not collective: combine its
    /// outcome with [`agree`] before the first evaluation.
    pub fn new(hyper: HyperParams, data: Option<Dataset<'d, T>>, first_example: usize, collective: C) -> Result<Self> {
        if let Some(data) = &data {
            if data.features() != hyper.visible() {
                return Err(Error::shape_mismatch(
                    "data features (columns of an examples-by-features array)",
                    format!("n = {}", hyper.visible()),
                    data.features(),
                ));
            }
            super::check_data(hyper.reconstruction(), data).map_err(|e| in_whole(e, first_example))?;
        }
        let split = Split::new(collective);
        let mut engine = Engine::new(hyper);
        engine.set_counts_weight_decay(split.counts_global_terms());
        Ok(DistributedObjective { engine, data, first_example, split, examples: 0, terms: CostTerms::default() })
    }

    /// Makes a stop one process asks for a stop of every process at the same point: at every
    /// evaluation, `requested` (set by this process's signal handler, say) is summed with the
    /// other processes' flags, and `agreed` — the flag a trainer stops on
    /// ([`Trainer::stop_when`](crate::train::Trainer::stop_when)) — is set on every process by
    /// the same evaluation once any process's `requested` is. (A trainer stopping on
    /// `requested` itself could stop one process an iteration before the others, which would
    /// then wait for it forever.)
    pub fn synchronize_stop(mut self, requested: Arc<AtomicBool>, agreed: Arc<AtomicBool>) -> Self {
        self.split = self.split.synchronize_stop(requested, agreed);
        self
    }

    /// Uses `backend` for the GEMMs (the preferred one when `None`).
    pub fn with_backend(mut self, backend: Option<Backend>) -> Self {
        if let Some(backend) = backend {
            self.engine.set_backend(backend);
        }
        self
    }

    pub fn hyper(&self) -> &HyperParams {
        self.engine.hyper()
    }

    pub fn collective(&self) -> &C {
        self.split.collective()
    }

    /// The examples of this process.
    pub fn local_examples(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.examples())
    }

    /// `m`, the examples of all processes, as the last evaluation counted them (0 before).
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// `rho_hat` over all processes' examples, from the last evaluation.
    pub fn rho_hat(&self) -> &[f64] {
        self.engine.rho_hat()
    }

    /// The terms of the whole cost the last successful evaluation returned.
    pub fn terms(&self) -> CostTerms {
        self.terms
    }

    /// The length of `theta` and of the gradient.
    pub fn theta_len(&self) -> usize {
        self.engine.layout().len()
    }

    /// `J(theta)` and `∇J(theta)` (into `grad`) over every process's examples, the same on
    /// every process. Collective; fails as [`Objective::evaluate`](super::Objective::evaluate)
    /// does (on every process alike: the checks see the same `theta` and the same sums), and
    /// when no process holds an example.
    pub fn evaluate(&mut self, theta: &[T], grad: &mut [T]) -> Result<f64> {
        let local = self.local_examples();
        self.engine.begin(theta, grad, local.max(1))?;
        if let Some(data) = &self.data {
            self.engine.forward(theta, data, self.first_example);
            self.engine.accumulate_activations();
        }
        let examples = self.split.activations(&mut self.engine, theta, Ok(local))?;
        if examples == 0 {
            return Err(Error::EmptyData { what: "no process holds an example" });
        }
        let sparsity = self.engine.sparsity(examples)?;
        if let Some(data) = &self.data {
            self.engine.backward(theta, data, self.first_example);
        }
        let counted_sparsity = if self.split.counts_global_terms() { sparsity } else { 0.0 };
        self.engine.finish(theta, grad, examples, counted_sparsity);
        self.terms = self.split.results(&self.engine, grad, Ok(()))?;
        self.examples = examples;
        Ok(self.terms.total())
    }
}

impl<T: Real, C: Collective> AutoencoderObjective<T> for DistributedObjective<'_, T, C> {
    fn hyper(&self) -> &HyperParams {
        DistributedObjective::hyper(self)
    }

    /// [`DataFingerprint::of_parts`] of the processes' parts, in rank order (collective).
    fn data_fingerprint(&mut self) -> Result<DataFingerprint> {
        let local = match &self.data {
            Some(data) => DataFingerprint::of_dataset(data),
            None => DataFingerprint::empty::<T>(self.engine.hyper().visible()),
        };
        self.split.fingerprint(local)
    }

    fn terms(&self) -> CostTerms {
        self.terms
    }

    fn rho_hat(&self) -> &[f64] {
        self.engine.rho_hat()
    }

    fn processes(&self) -> usize {
        self.split.collective.size()
    }
}

impl<T: Real, C: Collective> Differentiable<T> for DistributedObjective<'_, T, C> {
    fn dimension(&self) -> usize {
        self.theta_len()
    }

    fn evaluate(&mut self, theta: &[T], grad: &mut [T]) -> Result<f64> {
        DistributedObjective::evaluate(self, theta, grad)
    }
}

/// [`DistributedObjective`] on this process's part of the data read a chunk at a time (see
/// [`StreamingObjective`]): made by [`StreamingObjective::split`]. A failure to read this
/// process's part (or a change of it between the two passes) fails the evaluation on every
/// process, naming this one elsewhere.
#[derive(Debug)]
pub struct DistributedStreamingObjective<T: Real, S, C: Collective> {
    objective: StreamingObjective<T, S>,
    split: Split<C>,
}

impl<T: Real, S: ExampleSource<T> + Send, C: Collective> DistributedStreamingObjective<T, S, C> {
    pub(crate) fn new(objective: StreamingObjective<T, S>, split: Split<C>) -> Self {
        DistributedStreamingObjective { objective, split }
    }

    /// As [`DistributedObjective::synchronize_stop`].
    pub fn synchronize_stop(mut self, requested: Arc<AtomicBool>, agreed: Arc<AtomicBool>) -> Self {
        self.split = self.split.synchronize_stop(requested, agreed);
        self
    }

    pub fn collective(&self) -> &C {
        self.split.collective()
    }

    /// The objective on this process's part.
    pub fn local(&self) -> &StreamingObjective<T, S> {
        &self.objective
    }

    /// `J(theta)` and `∇J(theta)` over every process's examples. Collective.
    pub fn evaluate(&mut self, theta: &[T], grad: &mut [T]) -> Result<f64> {
        self.objective.evaluate_split(theta, grad, &mut self.split)
    }
}

impl<T: Real, S: ExampleSource<T> + Send, C: Collective> AutoencoderObjective<T>
    for DistributedStreamingObjective<T, S, C>
{
    fn hyper(&self) -> &HyperParams {
        self.objective.hyper()
    }

    /// [`DataFingerprint::of_parts`] of the processes' parts (each read once more), in rank
    /// order (collective).
    fn data_fingerprint(&mut self) -> Result<DataFingerprint> {
        let local = AutoencoderObjective::data_fingerprint(&mut self.objective);
        let local = agree(&self.split.collective, local, "reading its part of the data")?;
        self.split.fingerprint(local)
    }

    fn terms(&self) -> CostTerms {
        self.objective.terms()
    }

    fn rho_hat(&self) -> &[f64] {
        self.objective.rho_hat()
    }

    fn processes(&self) -> usize {
        self.split.collective.size()
    }
}

impl<T: Real, S: ExampleSource<T> + Send, C: Collective> Differentiable<T> for DistributedStreamingObjective<T, S, C> {
    fn dimension(&self) -> usize {
        self.objective.theta_len()
    }

    fn evaluate(&mut self, theta: &[T], grad: &mut [T]) -> Result<f64> {
        DistributedStreamingObjective::evaluate(self, theta, grad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes that hold the same values: every sum is twice them, in float64 (the
    /// trait's own `sum_f32`, which widens).
    struct Twins;

    impl Collective for Twins {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn sum(&self, values: &[f64], sums: &mut [f64]) -> Result<()> {
            sums.iter_mut().zip(values).for_each(|(s, &v)| *s = 2.0 * v);
            Ok(())
        }
    }

    /// A transport that sums float32 itself: three processes for float32 sums, two for
    /// float64 ones, so that a sum tells which method made it.
    struct Natively;

    impl Collective for Natively {
        fn rank(&self) -> usize {
            0
        }
        fn size(&self) -> usize {
            2
        }
        fn sum(&self, values: &[f64], sums: &mut [f64]) -> Result<()> {
            Twins.sum(values, sums)
        }
        fn sum_f32(&self, values: &[f32], sums: &mut [f32]) -> Result<()> {
            sums.iter_mut().zip(values).for_each(|(s, &v)| *s = 3.0 * v);
            Ok(())
        }
    }

    #[test]
    fn the_parameters_hash_tells_any_changed_bit_and_not_the_thread_count() {
        let theta: Vec<f32> = (0..200_001).map(|i| ((i * 7919) % 1013) as f32 * 0.001 - 0.5).collect();
        let on = |threads: usize, theta: &[f32]| {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| parameters_hash(theta))
        };
        let hash = on(1, &theta);
        assert_eq!(on(3, &theta), hash);
        let changed = |change: &dyn Fn(&mut Vec<f32>)| {
            let mut other = theta.clone();
            change(&mut other);
            on(2, &other)
        };
        // A value in a later chunk, one bit of one value, a sign of zero, two values swapped, length.
        assert_ne!(changed(&|t| t[150_000] += 1.0), hash);
        assert_ne!(changed(&|t| t[7] = f32::from_bits(t[7].to_bits() ^ 1)), hash);
        assert_ne!(changed(&|t| t[0] = -t[0]), hash);
        assert_ne!(changed(&|t| t.swap(10, 11)), hash);
        assert_ne!(changed(&|t| t.truncate(200_000)), hash);
        assert_ne!(parameters_hash(&[0.0f64]), parameters_hash(&[-0.0f64]));
    }

    #[test]
    fn sums_in_the_values_own_precision_go_through_float64_unless_the_transport_has_float32() {
        // Widened by default.
        let mut sums = [0.0f32; 3];
        sum_native(&Twins, &[1.5f32, -0.25, 3e-8], &mut sums).unwrap();
        assert_eq!(sums, [3.0, -0.5, 6e-8]);
        // Float32 to the transport's own float32 sum, float64 to its float64 one.
        let mut sums = [0.0f32; 2];
        sum_native(&Natively, &[1.5f32, -0.25], &mut sums).unwrap();
        assert_eq!(sums, [4.5, -0.75]);
        let mut sums = [0.0f64; 2];
        sum_native(&Natively, &[0.1, 7.0], &mut sums).unwrap();
        assert_eq!(sums, [0.2, 14.0]);
        let mut sums = [0.0f32; 2];
        sum_native(&Alone, &[0.1f32, 7.0], &mut sums).unwrap();
        assert_eq!(sums, [0.1, 7.0]);
    }
}
