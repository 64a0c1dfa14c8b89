//! The objective of SPEC §2.1 on a data set split across processes (data parallelism). Every
//! term of `J` and `∇J` is a sum over examples, so each process runs the forward and backward
//! passes on its own examples and two element-wise sums over the processes combine them:
//!
//! 1. after the forward pass, `[Σ a2; m_p; stop_p]` (`h + 2` values): every process then has
//!    the whole data set's `rho_hat`, hence the same sparsity delta `s` (SPEC §2.2 needs
//!    nothing else from the other processes), and knows whether any process asked to stop;
//! 2. after the backward pass, `[∇J_p; terms_p]` (`2hn + h + n + 4` values), each process's
//!    share of the gradient (its sums divided by the global `m`) and of the cost's terms.
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

use super::engine::Engine;
use super::CostTerms;
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
    /// Replaces `values` on every process by their element-wise sum over all processes. Every
    /// process must call it the same number of times with the same length.
    fn sum(&self, values: &mut [f64]) -> Result<()>;
}

impl<C: Collective + ?Sized> Collective for &C {
    fn rank(&self) -> usize {
        (**self).rank()
    }

    fn size(&self) -> usize {
        (**self).size()
    }

    fn sum(&self, values: &mut [f64]) -> Result<()> {
        (**self).sum(values)
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
    let mut failed = vec![0.0; collective.size()];
    failed[collective.rank()] = if outcome.is_err() { 1.0 } else { 0.0 };
    collective.sum(&mut failed)?;
    match failed.iter().position(|&f| f != 0.0) {
        None => outcome,
        Some(_) if outcome.is_err() => outcome,
        Some(rank) => Err(Error::OtherRankFailed { rank, reason }),
    }
}

/// `J(theta)` and `∇J(theta)` of a sparse autoencoder on a data set split across the
/// processes of `collective`, this process holding `data` (none for a rank without examples)
/// whose first example is example `first_example` of the whole set. [`evaluate`](Self::evaluate)
/// is collective: every process calls it with the same `theta`.
#[derive(Debug)]
pub struct DistributedObjective<'d, T: Real, C: Collective> {
    engine: Engine<T>,
    data: Option<Dataset<'d, T>>,
    first_example: usize,
    collective: C,
    /// The buffer of the two sums.
    sums: Vec<f64>,
    /// `(requested, agreed)`: see [`synchronize_stop`](Self::synchronize_stop).
    stop: Option<(Arc<AtomicBool>, Arc<AtomicBool>)>,
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
            super::check_data(hyper.reconstruction(), data)?;
        }
        let mut engine = Engine::new(hyper);
        engine.set_counts_weight_decay(collective.rank() == 0);
        Ok(DistributedObjective {
            engine,
            data,
            first_example,
            collective,
            sums: Vec::new(),
            stop: None,
            examples: 0,
            terms: CostTerms::default(),
        })
    }

    /// Makes a stop one process asks for a stop of every process at the same point: at every
    /// evaluation, `requested` (set by this process's signal handler, say) is summed with the
    /// other processes' flags, and `agreed` — the flag a trainer stops on
    /// ([`Trainer::stop_when`](crate::train::Trainer::stop_when)) — is set on every process by
    /// the same evaluation once any process's `requested` is. (A trainer stopping on
    /// `requested` itself could stop one process an iteration before the others, which would
    /// then wait for it forever.)
    pub fn synchronize_stop(mut self, requested: Arc<AtomicBool>, agreed: Arc<AtomicBool>) -> Self {
        self.stop = Some((requested, agreed));
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
        &self.collective
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
        let h = self.engine.hyper().hidden();
        let local = self.local_examples();
        self.engine.begin(theta, grad, local.max(1))?;
        if let Some(data) = &self.data {
            self.engine.forward(theta, data, self.first_example);
            self.engine.accumulate_activations();
        }
        // 1: the activation sums and the example counts.
        self.sums.clear();
        self.sums.extend_from_slice(self.engine.activation_totals_mut());
        self.sums.push(local as f64);
        let requested = self.stop.as_ref().is_some_and(|(requested, _)| requested.load(Ordering::Relaxed));
        self.sums.push(if requested { 1.0 } else { 0.0 });
        self.collective.sum(&mut self.sums)?;
        if let Some((_, agreed)) = &self.stop {
            if self.sums[h + 1] > 0.0 {
                agreed.store(true, Ordering::Relaxed);
            }
        }
        self.engine.activation_totals_mut().copy_from_slice(&self.sums[..h]);
        let examples = self.sums[h] as usize;
        if examples == 0 {
            return Err(Error::EmptyData { what: "no process holds an example" });
        }
        let sparsity = self.engine.sparsity(examples)?;
        if let Some(data) = &self.data {
            self.engine.backward(theta, data, self.first_example);
        }
        let counted_sparsity = if self.collective.rank() == 0 { sparsity } else { 0.0 };
        self.engine.finish(theta, grad, examples, counted_sparsity);

        // 2: the gradient and the cost's terms.
        let local_terms = self.engine.terms();
        self.sums.clear();
        self.sums.extend(grad.iter().map(|g| g.as_f64()));
        self.sums.extend([
            local_terms.reconstruction,
            local_terms.weight_decay,
            local_terms.sparsity,
            local_terms.contractive,
        ]);
        self.collective.sum(&mut self.sums)?;
        let (summed, terms) = self.sums.split_at(grad.len());
        for (g, &s) in grad.iter_mut().zip(summed) {
            *g = T::cast(s);
        }
        self.terms =
            CostTerms { reconstruction: terms[0], weight_decay: terms[1], sparsity: terms[2], contractive: terms[3] };
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
        // Each process's count and hash (in exact 32-bit halves) in its slot.
        let (rank, size) = (self.collective.rank(), self.collective.size());
        let mut slots = vec![0.0; 3 * size];
        slots[3 * rank..3 * rank + 3].copy_from_slice(&[
            local.examples as f64,
            (local.hash >> 32) as f64,
            (local.hash & 0xffff_ffff) as f64,
        ]);
        self.collective.sum(&mut slots)?;
        let parts: Vec<DataFingerprint> = slots
            .chunks_exact(3)
            .map(|s| DataFingerprint { examples: s[0] as usize, hash: ((s[1] as u64) << 32) | s[2] as u64, ..local })
            .collect();
        Ok(DataFingerprint::of_parts(&parts).expect("at least one process"))
    }

    fn terms(&self) -> CostTerms {
        self.terms
    }

    fn rho_hat(&self) -> &[f64] {
        self.engine.rho_hat()
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
