//! Where a minibatch run's examples come from: this process's rows of each minibatch, in the
//! epoch's order (see [`super::order`]), from data in memory ([`Part`]) or read from a
//! [`SeekableSource`] a window of blocks at a time ([`StreamedPart`]).

use std::ops::Range;

use super::order::{BlockOrder, Shuffle};
use super::DataFingerprint;
use crate::data::stream::SeekableSource;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{HyperParams, Reconstruction};
use crate::objective::distributed::{agree, in_whole, Collective, DistributedObjective, Part};
use crate::objective::{StreamMode, StreamingObjective};
use crate::real::Real;

/// This process's share of a data set read from storage: the examples
/// `first_example..first_example + local` of the whole data set's `examples`, read by `source`
/// (which yields exactly those), for [`MinibatchTrainer::fit_streamed`].
///
/// [`MinibatchTrainer::fit_streamed`]: super::MinibatchTrainer::fit_streamed
#[derive(Debug)]
pub struct StreamedPart<S> {
    pub source: S,
    pub first_example: usize,
    /// `m`, the whole data set's examples.
    pub examples: usize,
    /// Examples per chunk of the pass that evaluates the trained model on all the data.
    pub chunk: usize,
    /// The examples `source` yields.
    local: usize,
}

impl<S> StreamedPart<S> {
    /// Examples per chunk of the final evaluation, unless [`with_chunk`](Self::with_chunk).
    pub const CHUNK: usize = 4096;

    /// The whole of `source`, on one process.
    pub fn whole<T: Real>(source: S) -> Result<Self>
    where
        S: SeekableSource<T>,
    {
        let local = source.examples_hint().ok_or(Error::EmptyData { what: "a source that does not know its size" })?;
        Ok(StreamedPart { source, first_example: 0, examples: local, chunk: Self::CHUNK, local })
    }

    /// The examples `first_example..` of a data set of `examples`, as many as `source` holds.
    pub fn new<T: Real>(source: S, first_example: usize, examples: usize) -> Result<Self>
    where
        S: SeekableSource<T>,
    {
        let local = source.examples_hint().ok_or(Error::EmptyData { what: "a source that does not know its size" })?;
        if first_example.checked_add(local).is_none_or(|end| end > examples) {
            return Err(Error::shape_mismatch(
                "examples of the streamed part",
                format!("rows {first_example}.. within the {examples} of the data set"),
                local,
            ));
        }
        Ok(StreamedPart { source, first_example, examples, chunk: Self::CHUNK, local })
    }

    pub fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk;
        self
    }
}

/// A process's rows of the minibatches of a run.
pub(super) trait Feed<T: Real> {
    /// `m`, the whole data set's examples.
    fn examples(&self) -> usize;

    /// The examples this process holds, and the first one's row in the whole.
    fn held(&self) -> Range<usize>;

    /// `n`, when this process can tell (holding no rows in memory, it cannot).
    fn features(&self) -> Option<usize>;

    /// Fails on a value outside the loss's domain, by its row in the whole, where that can be
    /// known before training: data in memory is checked whole; streamed blocks as read.
    fn check(&self, reconstruction: Reconstruction) -> Result<()>;

    /// The fingerprint of this process's rows: one pass over them.
    fn fingerprint(&mut self, features: usize) -> Result<DataFingerprint>;

    /// Writes this process's examples among the positions `positions` of epoch `epoch`'s order
    /// into `out`, one after another; returns how many.
    fn fill(&mut self, epoch: usize, positions: Range<usize>, out: &mut [T]) -> Result<usize>;

    /// `J` and `rho_hat` of `theta` on all the data (collective).
    fn evaluate_all(
        &mut self,
        hyper: HyperParams,
        theta: &[T],
        collective: &impl Collective,
    ) -> Result<(f64, Vec<f64>)>;
}

/// A [`Part`] in memory, with the order of the epoch being trained.
pub(super) struct InMemory<'a, 'd, T: Real> {
    part: Part<'a, 'd, T>,
    shuffle: Shuffle,
    seed: u64,
    /// The epoch and its order (examples of the whole data set).
    order: Option<(usize, Vec<usize>)>,
    /// This process's examples of a minibatch, as rows of its part.
    local_rows: Vec<usize>,
}

impl<'a, 'd, T: Real> InMemory<'a, 'd, T> {
    pub(super) fn new(part: Part<'a, 'd, T>, shuffle: Shuffle, seed: u64) -> Self {
        InMemory { part, shuffle, seed, order: None, local_rows: Vec::new() }
    }
}

impl<T: Real> Feed<T> for InMemory<'_, '_, T> {
    fn examples(&self) -> usize {
        self.part.examples
    }

    fn held(&self) -> Range<usize> {
        self.part.first_example..self.part.first_example + self.part.local_examples()
    }

    fn features(&self) -> Option<usize> {
        self.part.data.map(Dataset::features)
    }

    fn check(&self, reconstruction: Reconstruction) -> Result<()> {
        self.part.data.map_or(Ok(()), |data| {
            crate::objective::check_data(reconstruction, data).map_err(|e| in_whole(e, self.part.first_example))
        })
    }

    fn fingerprint(&mut self, features: usize) -> Result<DataFingerprint> {
        Ok(self.part.data.map_or_else(|| DataFingerprint::empty::<T>(features), DataFingerprint::of_dataset))
    }

    fn fill(&mut self, epoch: usize, positions: Range<usize>, out: &mut [T]) -> Result<usize> {
        let Some(data) = self.part.data else { return Ok(0) };
        let m = self.part.examples;
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.order = Some((epoch, self.shuffle.epoch_order(m, self.seed, epoch)));
        }
        let order = &self.order.as_ref().expect("made above").1;
        let held = self.part.first_example..self.part.first_example + data.examples();
        self.local_rows.clear();
        self.local_rows.extend(order[positions].iter().filter(|row| held.contains(row)).map(|row| row - held.start));
        super::minibatch::gather(data, &self.local_rows, out);
        let count = self.local_rows.len();
        Ok(count)
    }

    fn evaluate_all(
        &mut self,
        hyper: HyperParams,
        theta: &[T],
        collective: &impl Collective,
    ) -> Result<(f64, Vec<f64>)> {
        let mut full = DistributedObjective::new(hyper, self.part.data.copied(), self.part.first_example, collective)?;
        let mut grad = vec![T::zero(); full.theta_len()];
        let cost = full.evaluate(theta, &mut grad)?;
        Ok((cost, full.rho_hat().to_vec()))
    }
}

/// A [`StreamedPart`] read a window of blocks at a time ([`Shuffle::Blocks`]): memory is one
/// window of this process's rows, whatever the size of the data.
pub(super) struct Streamed<S, T> {
    part: StreamedPart<S>,
    shuffle: Shuffle,
    seed: u64,
    reconstruction: Reconstruction,
    /// The epoch's block order.
    blocks: Option<BlockOrder>,
    /// The window loaded, by its index.
    window: Option<usize>,
    /// The loaded window's order: position `p` of the window is its `permutation[p]`-th
    /// example (its blocks' examples one after another) ...
    permutation: Vec<usize>,
    /// ... which is this process's `loaded[k]`-th loaded example, or [`NOT_HELD`].
    loaded: Vec<usize>,
    /// This process's examples of the window, in the order of its blocks.
    values: Vec<T>,
}

/// Where [`Streamed::loaded`] marks another process's example.
const NOT_HELD: usize = usize::MAX;

impl<S: SeekableSource<T>, T: Real> Streamed<S, T> {
    /// Fails for a [`Shuffle::Full`], which would read one example at a time.
    pub(super) fn new(
        part: StreamedPart<S>,
        shuffle: Shuffle,
        seed: u64,
        reconstruction: Reconstruction,
    ) -> Result<Self> {
        if shuffle == Shuffle::Full {
            return Err(Error::InvalidHyperParameter {
                name: "shuffle",
                value: 0.0,
                reason:
                    "streamed data is shuffled by blocks (Shuffle::Blocks): a full shuffle reads one example at a time",
            });
        }
        Ok(Streamed {
            part,
            shuffle,
            seed,
            reconstruction,
            blocks: None,
            window: None,
            permutation: Vec::new(),
            loaded: Vec::new(),
            values: Vec::new(),
        })
    }

    /// Reads this process's examples of window `w` of the epoch's order, checking them.
    fn load(&mut self, w: usize) -> Result<()> {
        let blocks = self.blocks.as_ref().expect("an epoch's order");
        let n = self.part.source.features();
        let held = self.part.first_example..self.part.first_example + self.part.local;
        self.window = None;
        self.loaded.clear();
        self.values.clear();
        for rows in blocks.window_blocks(w) {
            let mine = rows.start.max(held.start)..rows.end.min(held.end);
            let before = self.values.len() / n;
            let count = mine.len();
            self.loaded.extend(rows.clone().map(|row| {
                if mine.contains(&row) {
                    before + row - mine.start
                } else {
                    NOT_HELD
                }
            }));
            if count == 0 {
                continue;
            }
            self.values.resize((before + count) * n, T::zero());
            let values = &mut self.values[before * n..];
            self.part.source.read_exact_at(mine.start - held.start, values)?;
            // Errors name the row in the whole data set.
            Dataset::examples_by_features(values, count, n)
                .and_then(|block| crate::objective::check_data(self.reconstruction, &block))
                .map_err(|e| in_whole(e, mine.start))?;
        }
        self.permutation = blocks.window_permutation(w);
        self.window = Some(w);
        Ok(())
    }
}

impl<S: SeekableSource<T> + Send, T: Real> Feed<T> for Streamed<S, T> {
    fn examples(&self) -> usize {
        self.part.examples
    }

    fn held(&self) -> Range<usize> {
        self.part.first_example..self.part.first_example + self.part.local
    }

    fn features(&self) -> Option<usize> {
        Some(self.part.source.features())
    }

    fn check(&self, _reconstruction: Reconstruction) -> Result<()> {
        Ok(())
    }

    fn fingerprint(&mut self, _features: usize) -> Result<DataFingerprint> {
        let fingerprint = DataFingerprint::of_source(&mut self.part.source);
        self.window = None;
        fingerprint
    }

    fn fill(&mut self, epoch: usize, positions: Range<usize>, out: &mut [T]) -> Result<usize> {
        if self.blocks.as_ref().is_none_or(|blocks| blocks.epoch() != epoch) {
            self.blocks = Some(BlockOrder::new(self.shuffle, self.part.examples, self.seed, epoch));
            self.window = None;
        }
        let n = self.part.source.features();
        let mut count = 0;
        for position in positions {
            let blocks = self.blocks.as_ref().expect("made above");
            let w = blocks.window_of(position);
            if self.window != Some(w) {
                self.load(w)?;
            }
            let blocks = self.blocks.as_ref().expect("made above");
            let example = self.permutation[position - blocks.window_positions(w).start];
            let loaded = self.loaded[example];
            if loaded != NOT_HELD {
                out[count * n..(count + 1) * n].copy_from_slice(&self.values[loaded * n..(loaded + 1) * n]);
                count += 1;
            }
        }
        Ok(count)
    }

    fn evaluate_all(
        &mut self,
        hyper: HyperParams,
        theta: &[T],
        collective: &impl Collective,
    ) -> Result<(f64, Vec<f64>)> {
        // The window's buffer is not needed any more: the pass has its own chunks.
        self.window = None;
        self.values = Vec::new();
        let (first, chunk) = (self.part.first_example, self.part.chunk);
        let objective = StreamingObjective::new(hyper, &mut self.part.source, chunk, StreamMode::OnePass);
        let objective = agree(collective, objective, "opening its part of the data")?;
        let mut full = objective.split(collective, first);
        let mut grad = vec![T::zero(); full.local().theta_len()];
        let cost = full.evaluate(theta, &mut grad)?;
        Ok((cost, full.local().rho_hat().to_vec()))
    }
}
