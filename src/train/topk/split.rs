//! A dictionary layer trained across processes (data parallelism): the sums each step makes.
//!
//! As for the dense minibatch trainer (see [`crate::objective::distributed`]), each process
//! holds contiguous rows of the data set and evaluates its rows of each minibatch of the whole
//! data set's order, `B_p` of the minibatch's `B`. One sum over the processes per step then
//! gives every process
//!
//! - the whole minibatch's loss and gradient, `Σ_p (B_p/B) ∇L_p` (each process's is the mean
//!   over its rows), so that every process takes the same step;
//! - the minibatch's sums for the epoch's metrics (`[examples, Σ‖r‖², Σ‖x‖², Σ x, each
//!   latent's firings]`, see `batch_sums`), so that every process's tally, dead latents and
//!   checkpoint are those of the whole run;
//! - with a batch selection, the mean of the processes' smallest selected activations: each
//!   process keeps the `k B_p` largest activations of its rows (as data-parallel trainers on
//!   GPUs do), and the inference threshold follows the mean of their cuts;
//! - whether any process failed (reading its rows), was asked to stop (its flag, its callback,
//!   its clock), or holds other parameters than the first (a check that they did not drift
//!   apart).
//!
//! With one process the gradient stays where it is (no copy), and the sums are its own.

use super::super::control::Outside;
use crate::dictionary::BatchStats;
use crate::error::{Error, Result};
use crate::objective::distributed::{parameters_hash, Collective};
use crate::real::Real;

/// The step's scalars: the loss, the sum and count of the smallest selected activations, and
/// how many processes were stopped by each [`Outside`] cause.
const HEAD: usize = 6;

/// The most values summed by one call of [`Collective::sum`] (8 MB).
const SUM_PIECE: usize = 1 << 20;

/// What this process measured on its rows of a minibatch.
pub(super) struct Evaluated<'a, T> {
    /// The mean loss over its rows.
    pub loss: f64,
    pub stats: BatchStats,
    /// Its rows' values, `n` per row, and their selected slots.
    pub values: &'a [T],
    pub slots: &'a [u32],
}

/// What a step's sum gave every process.
pub(super) struct Summed<'a> {
    /// The whole minibatch's loss.
    pub loss: f64,
    /// The mean of the processes' smallest selected activations (batch selection).
    pub smallest_selected: Option<f64>,
    /// Why some process was asked to stop, in [`outside_stop`](super::super::control::outside_stop)'s order.
    pub stop: Option<Outside>,
    /// The minibatch's sums for [`Tally::add_batch`](super::Tally::add_batch).
    pub batch: &'a [f64],
}

/// The buffers of a step's sum (kept: no allocation per step).
pub(super) struct StepSums {
    n: usize,
    h: usize,
    values: Vec<f64>,
    sums: Vec<f64>,
}

impl StepSums {
    /// For a model of `n` inputs and `h` latents.
    pub(super) fn new(n: usize, h: usize) -> Self {
        StepSums { n, h, values: Vec::new(), sums: Vec::new() }
    }

    /// The sum of a step over the processes of `collective`: this process's `evaluated` rows
    /// (`None`: it holds none of the minibatch; `Err`: reading them failed), `share = B_p/B`
    /// of them, its gradient in `grad` (replaced by the whole minibatch's), the `stop` it was
    /// asked for and its `params`. Fails alike on every process when one failed (with its own
    /// error there, [`Error::OtherRankFailed`] elsewhere) or when the parameters differ.
    pub(super) fn sum<T: Real, C: Collective>(
        &mut self,
        collective: &C,
        evaluated: Result<Option<Evaluated<'_, T>>>,
        share: f64,
        stop: Option<Outside>,
        params: &[T],
        grad: &mut [T],
    ) -> Result<Summed<'_>> {
        let (n, h) = (self.n, self.h);
        let (rank, size) = (collective.rank(), collective.size());
        let batch_len = 3 + n + h;
        self.values.clear();
        self.values.resize(HEAD + batch_len, 0.0);
        let (head, batch) = self.values.split_at_mut(HEAD);
        if let Ok(Some(evaluated)) = &evaluated {
            head[0] = evaluated.loss * share;
            if let Some(smallest) = evaluated.stats.smallest_selected {
                head[1..3].copy_from_slice(&[smallest, 1.0]);
            }
            super::batch_sums(batch, evaluated.stats.squared_error, evaluated.values, n, evaluated.slots);
        }
        head[3..].copy_from_slice(&stop_counts(stop));
        // Whether this process holds rows of the minibatch, or why it could not read them.
        let held = evaluated.map(|evaluated| evaluated.is_some());
        // One process fails at once; several agree on it through the sum first.
        let held = if size == 1 { Ok(held?) } else { held };
        if size > 1 {
            let hash = parameters_hash(params);
            self.values.extend((0..size).map(|r| if r == rank && held.is_err() { 1.0 } else { 0.0 }));
            self.values.extend((0..size).flat_map(|r| match r == rank {
                true => [(hash >> 32) as f64, (hash & 0xffff_ffff) as f64],
                false => [0.0, 0.0],
            }));
            match held {
                Ok(true) => self.values.extend(grad.iter().map(|g| g.as_f64() * share)),
                _ => self.values.resize(self.values.len() + grad.len(), 0.0),
            }
        }
        self.sums.resize(self.values.len(), 0.0);
        // In pieces: an MPI library's scratch for a sum is the size of the sum, and scratch of
        // a few megabytes is reused from one call to the next where a gradient-sized one would
        // be mapped afresh (and its pages cleared) every step.
        for (values, sums) in self.values.chunks(SUM_PIECE).zip(self.sums.chunks_mut(SUM_PIECE)) {
            collective.sum(values, sums)?;
        }
        if size > 1 {
            let (failures, rest) = self.sums[HEAD + batch_len..].split_at(size);
            let (hashes, summed) = rest.split_at(2 * size);
            let first_failed = failures.iter().position(|&f| f != 0.0);
            held?;
            if let Some(rank) = first_failed {
                return Err(Error::OtherRankFailed { rank, reason: "reading its rows of a minibatch" });
            }
            if let Some(rank) = hashes.chunks_exact(2).position(|pair| pair != &hashes[..2]) {
                return Err(Error::ProcessesDiverged { rank });
            }
            grad.iter_mut().zip(summed).for_each(|(g, &s)| *g = T::cast(s));
        }
        let head = &self.sums[..HEAD];
        Ok(Summed {
            loss: head[0],
            smallest_selected: (head[2] > 0.0).then(|| head[1] / head[2]),
            stop: stop_of(&head[3..]),
            batch: &self.sums[HEAD..HEAD + batch_len],
        })
    }
}

/// `values` replaced on every process of `collective` by their sum over the processes.
pub(super) fn sum_in_place<C: Collective>(collective: &C, values: &mut [f64]) -> Result<()> {
    if collective.size() == 1 {
        return Ok(());
    }
    let mine = values.to_vec();
    collective.sum(&mine, values)
}

/// The [`Outside`] stops in [`outside_stop`](super::super::control::outside_stop)'s order,
/// each counted in its own slot of a sum.
const CAUSES: [Outside; 3] = [Outside::Interrupted, Outside::Requested, Outside::TimeLimit];

/// `stop` counted in the slots of [`CAUSES`].
fn stop_counts(stop: Option<Outside>) -> [f64; 3] {
    CAUSES.map(|cause| if stop == Some(cause) { 1.0 } else { 0.0 })
}

/// The first of [`CAUSES`] some process counted.
fn stop_of(counts: &[f64]) -> Option<Outside> {
    CAUSES.into_iter().zip(counts).find_map(|(cause, &count)| (count > 0.0).then_some(cause))
}

/// The stop every process of `collective` makes when this one was asked for `stop`: the
/// first cause any of them was asked for.
pub(super) fn agree_stop<C: Collective>(collective: &C, stop: Option<Outside>) -> Result<Option<Outside>> {
    let mut counts = stop_counts(stop);
    sum_in_place(collective, &mut counts)?;
    Ok(stop_of(&counts))
}
