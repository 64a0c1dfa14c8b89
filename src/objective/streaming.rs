//! The objective on a data set read in chunks (SPEC §2.2), for data larger than memory, in two
//! formulations ([`StreamMode`]). Memory is the model, the gradients and `O(chunk × (n + h))`,
//! whatever `m`.

use std::sync::mpsc;

use super::distributed::{in_whole, Alone, Collective, DistributedStreamingObjective, Split};
use super::engine::Engine;
use super::CostTerms;
use crate::data::stream::ExampleSource;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gemm::Backend;
use crate::kernels::Isa;
use crate::model::HyperParams;
use crate::real::Real;

/// How the streaming objective reads the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamMode {
    /// As the UFLDL notes describe: pass 1 runs the forward layer on every chunk only to sum
    /// the activations for `rho_hat`; pass 2 runs it again and backpropagates. Six GEMMs'
    /// worth of work, the data read twice.
    TwoPass,
    /// One read of the data with the sparsity delta deferred: the backward pass keeps
    /// `Σ P Xᵀ` and `Σ F Xᵀ` (`F = a2 (1 − a2)`, `P = (W2ᵀ delta3) ⊙ F`) as one GEMM with
    /// `2h` rows, and combines `∇W1 = (Σ P Xᵀ + diag(s) Σ F Xᵀ) / m + λ W1` once `rho_hat`,
    /// hence `s`, is known. Exact, not an approximation.
    #[default]
    OnePass,
}

impl StreamMode {
    pub const ALL: [StreamMode; 2] = [StreamMode::OnePass, StreamMode::TwoPass];

    /// `"one-pass"` or `"two-pass"`, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            StreamMode::OnePass => "one-pass",
            StreamMode::TwoPass => "two-pass",
        }
    }

    /// The mode in a line, for help texts.
    pub fn summary(self) -> &'static str {
        match self {
            StreamMode::OnePass => "one read of the data, the sparsity term deferred (exact)",
            StreamMode::TwoPass => "the UFLDL notes' two passes: rho_hat first, then the gradient",
        }
    }
}

/// `J(theta)` and its gradient over every example of an [`ExampleSource`], read `chunk`
/// examples at a time; the same cost and gradient as [`Objective`](super::Objective) on the
/// whole data set, to rounding.
#[derive(Debug)]
pub struct StreamingObjective<T: Real, S> {
    engine: Engine<T>,
    source: S,
    chunk: usize,
    mode: StreamMode,
    /// Two chunk buffers: one being computed on while the reader thread fills the other.
    buffers: Vec<Vec<T>>,
    examples: usize,
    /// The index of the source's first example in the whole data set (not 0 for one
    /// process's part of a split one): the corruption noise is a function of it.
    first_example: usize,
    /// The cost's terms of the last evaluation (of all processes', when split).
    terms: CostTerms,
}

impl<T: Real, S: ExampleSource<T> + Send> StreamingObjective<T, S> {
    /// Reads `source` in chunks of `chunk` examples (at least 1), in `mode`; fails when its
    /// feature count is not `n`. The source is read on a thread of its own, one chunk ahead
    /// of the computation.
    pub fn new(hyper: HyperParams, source: S, chunk: usize, mode: StreamMode) -> Result<Self> {
        if source.features() != hyper.visible() {
            return Err(Error::shape_mismatch(
                "source features",
                format!("n = {}", hyper.visible()),
                source.features(),
            ));
        }
        if chunk == 0 {
            return Err(Error::InvalidHyperParameter { name: "chunk", value: 0.0, reason: "must be at least 1" });
        }
        // No chunk is larger than the data, whatever the option says.
        let chunk = source.examples_hint().map_or(chunk, |m| chunk.min(m.max(1)));
        let buffers = vec![vec![T::zero(); chunk * hyper.visible()]; 2];
        let mut engine = Engine::new(hyper);
        engine.set_deferred_sparsity(mode == StreamMode::OnePass);
        Ok(StreamingObjective {
            engine,
            source,
            chunk,
            mode,
            buffers,
            examples: 0,
            first_example: 0,
            terms: CostTerms::default(),
        })
    }

    /// Uses `backend` for the GEMMs.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.engine.set_backend(backend);
        self
    }

    /// Cuts each chunk into column blocks of `block_size` examples (see
    /// [`Objective::with_block_size`](super::Objective::with_block_size)).
    pub fn with_block_size(mut self, block_size: usize) -> Result<Self> {
        self.engine.set_block_size(block_size)?;
        Ok(self)
    }

    pub fn hyper(&self) -> &HyperParams {
        self.engine.hyper()
    }

    /// The source, between evaluations (each rewinds it).
    pub(crate) fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }

    pub fn isa(&self) -> Isa {
        self.engine.isa()
    }

    /// The length of `theta` and of the gradient.
    pub fn theta_len(&self) -> usize {
        self.engine.layout().len()
    }

    /// Examples per chunk.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// `m`, the examples read by the last evaluation (0 before the first).
    pub fn examples(&self) -> usize {
        self.examples
    }

    pub fn mode(&self) -> StreamMode {
        self.mode
    }

    /// `rho_hat` of the last evaluation that read all the data once.
    pub fn rho_hat(&self) -> &[f64] {
        self.engine.rho_hat()
    }

    /// The terms of the cost the last successful evaluation returned (all zero before the
    /// first).
    pub fn terms(&self) -> CostTerms {
        self.terms
    }

    /// `J(theta)` in f64, and `∇J(theta)` written to `grad`, from one or two reads of the
    /// source (see [`StreamMode`]).
    ///
    /// Fails as [`Objective::evaluate`](super::Objective::evaluate) does, and also when the
    /// source is empty, holds a non-finite value or one outside the domain of the model's loss
    /// (named by its row in the whole data set), or (two-pass) yields a different number of
    /// examples in the second pass than in the first.
    pub fn evaluate(&mut self, theta: &[T], grad: &mut [T]) -> Result<f64> {
        self.evaluate_split(theta, grad, &mut Split::new(Alone))
    }

    /// This process's part of a data set split across the processes of `collective`, its
    /// first example being example `first_example` of the whole: see
    /// [`DistributedStreamingObjective`].
    pub fn split<C: Collective>(
        mut self,
        collective: C,
        first_example: usize,
    ) -> DistributedStreamingObjective<T, S, C> {
        let split = Split::new(collective);
        self.engine.set_counts_weight_decay(split.counts_global_terms());
        self.first_example = first_example;
        DistributedStreamingObjective::new(self, split)
    }

    /// [`evaluate`](Self::evaluate) with this process's sums combined with the other
    /// processes' of `split` (see [`super::distributed`]).
    pub(crate) fn evaluate_split<C: Collective>(
        &mut self,
        theta: &[T],
        grad: &mut [T],
        split: &mut Split<C>,
    ) -> Result<f64> {
        self.engine.begin(theta, grad, self.chunk)?;
        let first_pass = match self.mode {
            StreamMode::OnePass => self.pass(|engine, chunk, first| {
                engine.forward(theta, chunk, first);
                engine.accumulate_activations();
                engine.backward(theta, chunk, first);
            }),
            StreamMode::TwoPass => self.pass(|engine, chunk, first| {
                engine.forward(theta, chunk, first);
                engine.accumulate_activations();
            }),
        };
        let local = first_pass.as_ref().map_or(0, |&read| read);
        let examples = split.activations(&mut self.engine, theta, first_pass)?;
        if examples == 0 {
            return Err(Error::EmptyData { what: "the source yielded no examples" });
        }
        let sparsity_cost = self.engine.sparsity(examples)?;
        let second_pass = match self.mode {
            StreamMode::OnePass => Ok(()),
            StreamMode::TwoPass => self
                .pass(|engine, chunk, first| {
                    engine.forward(theta, chunk, first);
                    engine.backward(theta, chunk, first);
                })
                .and_then(|second| match second == local {
                    true => Ok(()),
                    false => Err(Error::shape_mismatch(
                        "examples in the second pass over the source (it changed between passes)",
                        local,
                        second,
                    )),
                }),
        };
        let counted_sparsity = if split.counts_global_terms() { sparsity_cost } else { 0.0 };
        self.engine.finish(theta, grad, examples, counted_sparsity);
        self.terms = split.results(&self.engine, grad, second_pass)?;
        self.examples = examples;
        Ok(self.terms.total())
    }

    /// Rewinds the source and runs `step` on each chunk and the global index of its first
    /// example; returns the number of examples.
    ///
    /// A reader thread fills the two chunk buffers in turn while `step` computes on the one
    /// filled before. Buffers go back and forth over two channels and are all recovered
    /// afterwards, whatever failed, so nothing is allocated after the first evaluation.
    fn pass(&mut self, mut step: impl FnMut(&mut Engine<T>, &Dataset<'_, T>, usize)) -> Result<usize> {
        let (n, reconstruction) = (self.engine.hyper().visible(), self.engine.hyper().reconstruction());
        let (capacity, first_example) = (self.chunk, self.first_example);
        let (source, engine) = (&mut self.source, &mut self.engine);
        let buffers = std::mem::take(&mut self.buffers);
        let (filled_tx, filled) = mpsc::sync_channel::<(Vec<T>, Result<usize>)>(buffers.len());
        let (empty, empty_rx) = mpsc::sync_channel::<Vec<T>>(buffers.len());
        for buffer in buffers {
            empty.send(buffer).expect("the receiver is alive");
        }
        let (result, empty_rx) = std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                let mut rewound = source.rewind();
                while let Ok(mut buffer) = empty_rx.recv() {
                    let read = match std::mem::replace(&mut rewound, Ok(())) {
                        Ok(()) => source.read_chunk(&mut buffer),
                        Err(error) => Err(error),
                    };
                    let last = !matches!(read, Ok(count) if count > 0);
                    if filled_tx.send((buffer, read)).is_err() || last {
                        break;
                    }
                }
                // Returned, not dropped, so that buffers sent back after the end still land.
                empty_rx
            });
            let mut examples = 0;
            let result = loop {
                // The reader hangs up without an end marker only when it panicked; the join
                // below raises that panic again.
                let Ok((buffer, read)) = filled.recv() else { break Ok(examples) };
                let outcome = read.and_then(|read| {
                    if read > capacity {
                        return Err(Error::shape_mismatch(
                            "examples returned by ExampleSource::read_chunk",
                            format!("at most the buffer's {capacity}"),
                            read,
                        ));
                    }
                    if read > 0 {
                        // Errors name the row in the whole data set.
                        let chunk = Dataset::examples_by_features(&buffer[..read * n], read, n)
                            .and_then(|chunk| super::check_data(reconstruction, &chunk).map(|()| chunk))
                            .map_err(|e| in_whole(e, first_example + examples))?;
                        step(engine, &chunk, first_example + examples);
                    }
                    Ok(read)
                });
                let _ = empty.send(buffer);
                match outcome {
                    Ok(0) => break Ok(examples),
                    Ok(read) => examples += read,
                    Err(error) => break Err(error),
                }
            };
            drop(empty);
            match reader.join() {
                Ok(empty_rx) => (result, empty_rx),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        self.buffers = empty_rx.try_iter().chain(filled.try_iter().map(|(buffer, _)| buffer)).collect();
        result
    }
}
