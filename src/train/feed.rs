//! Where a minibatch run's examples come from: this process's rows of each minibatch, in the
//! epoch's order (see [`super::order`]), from data in memory ([`Part`]) or read from a
//! [`SeekableSource`] a window of blocks at a time ([`StreamedPart`]).

use std::ops::Range;
use std::sync::mpsc;

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
    source: S,
    first_example: usize,
    /// `m`, the whole data set's examples.
    examples: usize,
    /// Examples per chunk of the pass that evaluates the trained model on all the data.
    chunk: usize,
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
        let local = size_of(&source)?;
        Ok(StreamedPart { source, first_example: 0, examples: local, chunk: Self::CHUNK, local })
    }

    /// The examples `first_example..` of a data set of `examples`, as many as `source` holds.
    pub fn new<T: Real>(source: S, first_example: usize, examples: usize) -> Result<Self>
    where
        S: SeekableSource<T>,
    {
        let local = size_of(&source)?;
        if first_example.checked_add(local).is_none_or(|end| end > examples) {
            return Err(Error::shape_mismatch(
                "examples of the streamed part",
                format!("rows {first_example}.. within the {examples} of the data set"),
                local,
            ));
        }
        Ok(StreamedPart { source, first_example, examples, chunk: Self::CHUNK, local })
    }

    /// Examples per chunk of the final evaluation; fails for 0.
    pub fn with_chunk(mut self, chunk: usize) -> Result<Self> {
        if chunk == 0 {
            return Err(Error::InvalidOption { name: "chunk", reason: "must be at least 1 example".into() });
        }
        self.chunk = chunk;
        Ok(self)
    }

    /// This process's first example in the whole data set.
    pub fn first_example(&self) -> usize {
        self.first_example
    }

    /// `m`, the whole data set's examples.
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// The examples this process's source yields.
    pub(crate) fn local(&self) -> usize {
        self.local
    }

    /// The source, for one pass over this process's examples (a fingerprint, say).
    pub(crate) fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }
}

/// The examples `source` yields, which a streamed minibatch run must know in advance.
fn size_of<T: Real>(source: &impl SeekableSource<T>) -> Result<usize> {
    source.examples_hint().ok_or(Error::InvalidOption {
        name: "source",
        reason: "minibatch training streamed needs a source that knows its number of examples (examples_hint)".into(),
    })
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

/// The fingerprint of the rows of `part` (of none: the empty one), of `features` values each.
pub(super) fn part_fingerprint<T: Real>(part: &Part<'_, '_, T>, features: usize) -> DataFingerprint {
    part.data.map_or_else(|| DataFingerprint::empty::<T>(features), DataFingerprint::of_dataset)
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
        Ok(part_fingerprint(&self.part, features))
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

/// A [`StreamedPart`] read a window of blocks at a time ([`Shuffle::Blocks`]), the next
/// window read on a thread of its own while the current one is trained on: memory is two
/// windows of this process's rows, whatever the size of the data.
pub(super) struct Streamed<'scope, S, T> {
    shuffle: Shuffle,
    seed: u64,
    epochs: usize,
    /// The examples of the whole data set, and this process's.
    examples: usize,
    held: Range<usize>,
    features: usize,
    /// The epoch's block order (the reader keeps its own).
    blocks: Option<BlockOrder>,
    /// The window trained on, and a buffer for the next.
    current: Option<Window<T>>,
    spare: Option<Window<T>>,
    /// The window the reader is reading, `(epoch, window)`.
    pending: Option<(usize, usize)>,
    requests: Option<mpsc::Sender<Request<T>>>,
    replies: mpsc::Receiver<Reply<T>>,
    /// The reader, which hands the part back when its requests end.
    reader: Option<std::thread::ScopedJoinHandle<'scope, StreamedPart<S>>>,
    /// The part, back from the reader for the final evaluation.
    part: Option<StreamedPart<S>>,
}

/// This process's examples of one window of an epoch.
struct Window<T> {
    epoch: usize,
    index: usize,
    /// Position `p` of the window is its `permutation[p]`-th example (its blocks' examples
    /// one after another) ...
    permutation: Vec<usize>,
    /// ... which is this process's `loaded[k]`-th example of the window, or [`NOT_HELD`].
    loaded: Vec<usize>,
    /// This process's examples of the window, in the order of its blocks.
    values: Vec<T>,
}

/// Where [`Window::loaded`] marks another process's example.
const NOT_HELD: usize = usize::MAX;

/// What the reader is asked: a window read into a buffer, or the fingerprint of the part.
enum Request<T> {
    Window { epoch: usize, index: usize, into: Window<T> },
    Fingerprint,
}

enum Reply<T> {
    Window(Result<Window<T>>),
    Fingerprint(Result<DataFingerprint>),
}

impl<'scope, S: SeekableSource<T> + Send + 'scope, T: Real> Streamed<'scope, S, T> {
    /// Starts the reader of `part` on a thread of `scope`; fails for a [`Shuffle::Full`], which
    /// would read one example at a time.
    pub(super) fn spawn<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        part: StreamedPart<S>,
        options: &super::MinibatchOptions,
        reconstruction: Reconstruction,
    ) -> Result<Self> {
        let (shuffle, seed) = (options.shuffle, options.seed);
        if shuffle == Shuffle::Full {
            return Err(Error::InvalidOption {
                name: "shuffle",
                reason: "streamed data is shuffled by blocks (Shuffle::Blocks): a full shuffle reads one example at a \
                         time"
                    .into(),
            });
        }
        let (examples, features) = (part.examples, part.source.features());
        let held = part.first_example..part.first_example + part.local;
        let (requests, requested) = mpsc::channel();
        let (replied, replies) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("sae-window-reader".into())
            .spawn_scoped(scope, move || read_windows(part, shuffle, seed, reconstruction, requested, replied))
            .map_err(|e| Error::InvalidOption {
                name: "threads",
                reason: format!("cannot start the window reader: {e}"),
            })?;
        Ok(Streamed {
            shuffle,
            seed,
            epochs: options.epochs,
            examples,
            held,
            features,
            blocks: None,
            current: None,
            spare: None,
            pending: None,
            requests: Some(requests),
            replies,
            reader: Some(reader),
            part: None,
        })
    }

    fn ask(&mut self, request: Request<T>) {
        if let Some(requests) = &self.requests {
            // A reader gone has panicked: `reply` raises its panic.
            let _ = requests.send(request);
        }
    }

    fn reply(&mut self) -> Reply<T> {
        match self.replies.recv() {
            Ok(reply) => reply,
            Err(_) => match self.reader.take().map(std::thread::ScopedJoinHandle::join) {
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                _ => unreachable!("the reader replies to every request until its requests end"),
            },
        }
    }

    /// The reader's answer to the window it is reading.
    fn receive_pending(&mut self) -> Option<Result<Window<T>>> {
        self.pending.take()?;
        match self.reply() {
            Reply::Window(window) => Some(window),
            Reply::Fingerprint(_) => unreachable!("a fingerprint is asked for with no window pending"),
        }
    }

    /// Makes window `index` of `epoch` the current one, and asks for the next.
    fn load(&mut self, epoch: usize, index: usize) -> Result<()> {
        let prefetched = match self.pending == Some((epoch, index)) {
            true => self.receive_pending().expect("pending"),
            false => {
                // Another window (a resumed run's first, say) is read as it is asked for.
                if let Some(Ok(other)) = self.receive_pending() {
                    self.spare = Some(other);
                }
                let into = self.spare.take().unwrap_or_else(Window::empty);
                self.ask(Request::Window { epoch, index, into });
                self.pending = Some((epoch, index));
                self.receive_pending().expect("pending")
            }
        };
        let window = prefetched?;
        self.spare = self.current.replace(window);
        let windows = self.blocks.as_ref().expect("the epoch's order").windows();
        let next = if index + 1 < windows { Some((epoch, index + 1)) } else { Some((epoch + 1, 0)) };
        if let Some((epoch, index)) = next.filter(|&(epoch, _)| epoch < self.epochs) {
            let into = self.spare.take().unwrap_or_else(Window::empty);
            self.ask(Request::Window { epoch, index, into });
            self.pending = Some((epoch, index));
        }
        Ok(())
    }

    /// Ends the reader and takes the part back.
    fn finish_reading(&mut self) -> &mut StreamedPart<S> {
        let _ = self.receive_pending();
        (self.current, self.spare) = (None, None);
        self.requests = None;
        if let Some(reader) = self.reader.take() {
            match reader.join() {
                Ok(part) => self.part = Some(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        self.part.as_mut().expect("the reader hands the part back once, to the one final evaluation")
    }
}

impl<T: Real> Window<T> {
    fn empty() -> Self {
        Window { epoch: 0, index: 0, permutation: Vec::new(), loaded: Vec::new(), values: Vec::new() }
    }
}

/// The reader's loop: answers each request in turn, and hands the part back when the requests
/// end.
fn read_windows<S: SeekableSource<T>, T: Real>(
    mut part: StreamedPart<S>,
    shuffle: Shuffle,
    seed: u64,
    reconstruction: Reconstruction,
    requests: mpsc::Receiver<Request<T>>,
    replies: mpsc::Sender<Reply<T>>,
) -> StreamedPart<S> {
    let mut blocks: Option<BlockOrder> = None;
    for request in requests {
        let reply = match request {
            Request::Window { epoch, index, mut into } => {
                if blocks.as_ref().is_none_or(|b| b.epoch() != epoch) {
                    blocks = Some(BlockOrder::new(shuffle, part.examples, seed, epoch));
                }
                let blocks = blocks.as_ref().expect("made above");
                Reply::Window(read_window(&mut part, blocks, index, reconstruction, &mut into).map(|()| into))
            }
            Request::Fingerprint => Reply::Fingerprint(DataFingerprint::of_source(&mut part.source)),
        };
        if replies.send(reply).is_err() {
            break;
        }
    }
    part
}

/// Reads this process's examples of window `index` of `blocks` into `window`, checking them.
fn read_window<S: SeekableSource<T>, T: Real>(
    part: &mut StreamedPart<S>,
    blocks: &BlockOrder,
    index: usize,
    reconstruction: Reconstruction,
    window: &mut Window<T>,
) -> Result<()> {
    let n = part.source.features();
    let held = part.first_example..part.first_example + part.local;
    (window.epoch, window.index) = (blocks.epoch(), index);
    window.loaded.clear();
    let mut count = 0;
    for rows in blocks.window_blocks(index) {
        let mine = rows.start.max(held.start)..rows.end.min(held.end);
        window
            .loaded
            .extend(rows.clone().map(|row| if mine.contains(&row) { count + row - mine.start } else { NOT_HELD }));
        count += mine.len();
    }
    // Grown, never shrunk: the buffer is zeroed once, when it grows, not at every window.
    if window.values.len() < count * n {
        window.values.resize(count * n, T::zero());
    }
    let mut filled = 0;
    for rows in blocks.window_blocks(index) {
        let mine = rows.start.max(held.start)..rows.end.min(held.end);
        if mine.is_empty() {
            continue;
        }
        let values = &mut window.values[filled * n..(filled + mine.len()) * n];
        part.source.read_exact_at(mine.start - held.start, values)?;
        // Errors name the row in the whole data set.
        Dataset::examples_by_features(values, mine.len(), n)
            .and_then(|block| crate::objective::check_data(reconstruction, &block))
            .map_err(|e| in_whole(e, mine.start))?;
        filled += mine.len();
    }
    window.permutation = blocks.window_permutation(index);
    Ok(())
}

impl<'scope, S: SeekableSource<T> + Send + 'scope, T: Real> Feed<T> for Streamed<'scope, S, T> {
    fn examples(&self) -> usize {
        self.examples
    }

    fn held(&self) -> Range<usize> {
        self.held.clone()
    }

    fn features(&self) -> Option<usize> {
        Some(self.features)
    }

    fn check(&self, _reconstruction: Reconstruction) -> Result<()> {
        Ok(())
    }

    fn fingerprint(&mut self, _features: usize) -> Result<DataFingerprint> {
        // Before any window is asked for: the reader is idle.
        if let Some(Ok(window)) = self.receive_pending() {
            self.spare = Some(window);
        }
        self.ask(Request::Fingerprint);
        match self.reply() {
            Reply::Fingerprint(fingerprint) => fingerprint,
            Reply::Window(_) => unreachable!("no window pending"),
        }
    }

    fn fill(&mut self, epoch: usize, positions: Range<usize>, out: &mut [T]) -> Result<usize> {
        if self.blocks.as_ref().is_none_or(|blocks| blocks.epoch() != epoch) {
            self.blocks = Some(BlockOrder::new(self.shuffle, self.examples, self.seed, epoch));
        }
        let n = self.features;
        let mut count = 0;
        for position in positions {
            let index = self.blocks.as_ref().expect("made above").window_of(position);
            if self.current.as_ref().is_none_or(|w| (w.epoch, w.index) != (epoch, index)) {
                self.load(epoch, index)?;
            }
            let start = self.blocks.as_ref().expect("made above").window_positions(index).start;
            let window = self.current.as_ref().expect("loaded above");
            let loaded = window.loaded[window.permutation[position - start]];
            if loaded != NOT_HELD {
                out[count * n..(count + 1) * n].copy_from_slice(&window.values[loaded * n..(loaded + 1) * n]);
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
        let part = self.finish_reading();
        let (first, chunk) = (part.first_example, part.chunk);
        let objective = StreamingObjective::new(hyper, &mut part.source, chunk, StreamMode::OnePass);
        let objective = agree(collective, objective, "opening its part of the data")?;
        let mut full = objective.split(collective, first);
        let mut grad = vec![T::zero(); full.local().theta_len()];
        let cost = full.evaluate(theta, &mut grad)?;
        Ok((cost, full.local().rho_hat().to_vec()))
    }
}
