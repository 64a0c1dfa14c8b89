//! A dictionary layer trained across processes (data parallelism): the sums each step makes.
//!
//! As for the dense minibatch trainer (see [`crate::objective::distributed`]), each process
//! holds contiguous rows of the data set and evaluates its rows of each minibatch of the whole
//! data set's order, `B_p` of the minibatch's `B`. One sum over the processes per step then
//! gives every process
//!
//! - the whole minibatch's loss and gradient, `Σ_p (B_p/B) ∇L_p` (each process's is the mean
//!   over its rows; summed in the model's precision), so that every process takes the same
//!   step;
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
//! With one process there is no gradient to sum (its step was taken in the backward pass) and
//! the sums are its own. Before
//! all this, [`check_alike`] makes sure the processes were given alike runs.

use super::super::control::Outside;
use crate::dictionary::BatchStats;
use crate::error::{Error, Result};
use crate::objective::distributed::{parameters_hash, sum_native, Collective};
use crate::real::Real;

/// The step's scalars: the loss, the sum and count of the smallest selected activations, and
/// how many processes were stopped by each [`Outside`] cause.
const HEAD: usize = 6;

/// The most gradient values summed by one call of [`Collective::sum`] (8 MB in float64).
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

/// The buffers of a step's sum (kept: no allocation per step), for a model in `T`.
pub(super) struct StepSums<T> {
    n: usize,
    h: usize,
    /// The step's scalars, the minibatch's sums, each process's failure and parameters' hash.
    values: Vec<f64>,
    sums: Vec<f64>,
    /// One piece of the gradient, and its sum, in the model's precision.
    piece: Vec<T>,
    piece_sums: Vec<T>,
}

impl<T: Real> StepSums<T> {
    /// For a model of `n` inputs and `h` latents.
    pub(super) fn new(n: usize, h: usize) -> Self {
        StepSums { n, h, values: Vec::new(), sums: Vec::new(), piece: Vec::new(), piece_sums: Vec::new() }
    }

    /// The sum of a step over the processes of `collective`: this process's `evaluated` rows
    /// (`None`: it holds none of the minibatch; `Err`: reading or evaluating them failed),
    /// `share = B_p/B` of them, its gradient in `grad` (replaced by the whole minibatch's; empty,
    /// and left so, with one process), the
    /// `stop` it was asked for and its `params`. Fails alike on every process when one failed
    /// (with its own error there, [`Error::OtherRankFailed`] elsewhere) or when the parameters
    /// differ.
    pub(super) fn sum<C: Collective>(
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
        }
        self.sums.resize(self.values.len(), 0.0);
        collective.sum(&self.values, &mut self.sums)?;
        if size > 1 {
            let (failures, hashes) = self.sums[HEAD + batch_len..].split_at(size);
            let first_failed = failures.iter().position(|&f| f != 0.0);
            let held = held?;
            if let Some(rank) = first_failed {
                return Err(Error::OtherRankFailed { rank, reason: "reading or evaluating its rows of a minibatch" });
            }
            if let Some(rank) = hashes.chunks_exact(2).position(|pair| pair != &hashes[..2]) {
                return Err(Error::ProcessesDiverged { rank });
            }
            // The gradient in pieces, through one buffer of a piece: no gradient-sized copy, an
            // MPI library's scratch (the size of a sum) reused from one call to the next where a
            // gradient-sized one would be mapped afresh every step, and summed in the model's
            // precision (float32 halves the bytes that cross the processes).
            let share = T::cast(share);
            for grad in grad.chunks_mut(SUM_PIECE) {
                self.piece.clear();
                match held {
                    true => self.piece.extend(grad.iter().map(|&g| g * share)),
                    false => self.piece.resize(grad.len(), T::zero()),
                }
                self.piece_sums.resize(grad.len(), T::zero());
                sum_native(collective, &self.piece, &mut self.piece_sums)?;
                grad.copy_from_slice(&self.piece_sums);
            }
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

/// One process's part of the data and what its run must share with the others', for
/// [`check_alike`].
pub(super) struct Alike {
    /// Its rows: the first's index in the whole data set, and how many, of the whole's
    /// `examples`.
    pub first: usize,
    pub local: usize,
    pub examples: usize,
    /// Quantities every process must have equal to the first's, by name.
    pub shared: Vec<(&'static str, f64)>,
}

/// Checks, before any other sum of a run, that the parts of the processes of `collective` (in
/// each process's [`Alike`], which `mine` makes when there is more than one) are the whole
/// data set in rank order, once each (`first_p = Σ_{q<p} local_q`, `Σ local = m`, `m` the
/// same everywhere), and that every shared quantity is the first process's:
/// processes given other options, another model or other held-out data would otherwise make
/// other sums (and wait for each other) or sum what does not add up. Fails alike on every
/// process, naming the rank and the quantity.
pub(super) fn check_alike<C: Collective>(collective: &C, mine: impl FnOnce() -> Alike) -> Result<()> {
    let (rank, size) = (collective.rank(), collective.size());
    if size == 1 {
        return Ok(());
    }
    let mine = &mine();
    // Every process's slot: its first row, its rows, then the quantities, `m` first (the
    // same code on every process makes slots of the same width).
    let width = 2 + 1 + mine.shared.len();
    let mut slots = vec![0.0; size * width];
    let slot = &mut slots[rank * width..(rank + 1) * width];
    slot[..3].copy_from_slice(&[mine.first as f64, mine.local as f64, mine.examples as f64]);
    slot[3..].iter_mut().zip(&mine.shared).for_each(|(s, (_, v))| *s = *v);
    sum_in_place(collective, &mut slots)?;
    let slots: Vec<&[f64]> = slots.chunks_exact(width).collect();
    let refused = |rank: usize, reason: String| Error::InvalidOption {
        name: "processes",
        reason: format!("rank {rank}: {reason} (every process is given the same run, and its rows in rank order)"),
    };
    let mut next_first = 0.0;
    for (r, slot) in slots.iter().enumerate() {
        if slot[0] != next_first {
            let reason = format!("its rows start at row {} of the data set, not at row {next_first}", slot[0]);
            return Err(refused(r, reason));
        }
        next_first += slot[1];
        let names = std::iter::once("examples").chain(mine.shared.iter().map(|(name, _)| *name));
        for (name, (value, first)) in names.zip(slot[2..].iter().zip(&slots[0][2..])) {
            if value != first {
                return Err(refused(r, format!("its {name} ({value}) differs from the first process's ({first})")));
            }
        }
    }
    let examples = mine.examples as f64;
    if next_first != examples {
        return Err(refused(size - 1, format!("the processes' rows end at {next_first}, the data set has {examples}")));
    }
    Ok(())
}

/// `hash` as two quantities of [`Alike::shared`] named `name`, its halves exact in `f64`.
pub(super) fn hash_halves(name: &'static str, hash: u64) -> [(&'static str, f64); 2] {
    [(name, (hash >> 32) as f64), (name, (hash & 0xffff_ffff) as f64)]
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
pub(super) fn agreed_stop<C: Collective>(collective: &C, stop: Option<Outside>) -> Result<Option<Outside>> {
    let mut counts = stop_counts(stop);
    sum_in_place(collective, &mut counts)?;
    Ok(stop_of(&counts))
}
