//! Training streamed from disk: `train` given the path of a `.npy` file or of a folder of
//! `.npy` shards instead of an array. L-BFGS reads the data a chunk at a time per evaluation;
//! Adam and SGD a window of shuffled blocks at a time. Memory is bounded by the chunk or the
//! window, whatever the size of the data; across processes (`comm`) each reads its own rows.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use numpy::Element;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::distributed::PyCollective;
use sae::data::npy_source::{NpyFileSource, ShardSource};
use sae::data::stream::SeekableSource;
use sae::model::{HyperParams, ModelFile, Parameters};
use sae::objective::distributed::{agree, rows_of, Alone, Collective, Split};
use sae::objective::{StreamMode, StreamingObjective};
use sae::optim::StepRule;
use sae::train::{MinibatchOptions, MinibatchStep, MinibatchTrainer, Shuffle, StreamedPart, Trainer};
use sae::Real;

/// How a streamed run reads: the chunk of L-BFGS's passes, the blocks of the minibatch shuffle.
#[derive(Clone, Copy)]
pub(crate) struct Reading {
    pub chunk: usize,
    pub shuffle_block: usize,
    pub shuffle_window: usize,
}

/// `path`'s rows for process `rank` of `size` (all of them for one), and the data set's `m`.
fn open<T: Real>(
    path: &Path,
    rank: usize,
    size: usize,
) -> sae::Result<(Box<dyn SeekableSource<T> + Send>, usize, usize)> {
    if path.is_dir() {
        let shards = ShardSource::<T>::from_dir(path)?;
        let rows = rows_of(rank, size, shards.examples());
        let m = shards.examples();
        return Ok((Box::new(shards.restrict(rows.clone())?), rows.start, m));
    }
    let file = NpyFileSource::<T>::open(path)?;
    let m = file.examples();
    let rows = rows_of(rank, size, m);
    Ok((Box::new(file.restrict(rows.clone())?), rows.start, m))
}

/// Trains on the data at `path` (alone, or across the processes of `comm`); see `train`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_streamed<'py, T: Real + Element>(
    py: Python<'py>,
    hyper: HyperParams,
    path: &Path,
    theta0: &Bound<'py, PyAny>,
    solver: &crate::Solver<'_>,
    reading: Reading,
    callback: Option<&Py<PyAny>>,
    pool: Option<&rayon::ThreadPool>,
    comm: Option<&Bound<'py, PyAny>>,
) -> PyResult<crate::Outcome<'py, ModelFile<T>>> {
    let theta0 = crate::vector_of::<T>(theta0, "theta0")?.as_array().to_vec();
    let init = Parameters::from_theta(hyper.visible(), hyper.hidden(), theta0).map_err(crate::py_error)?;
    match comm {
        None => train_on(py, hyper, path, init, solver, reading, callback, pool, Alone),
        Some(comm) => train_on(py, hyper, path, init, solver, reading, callback, pool, &PyCollective::new(comm)?),
    }
}

#[allow(clippy::too_many_arguments)]
fn train_on<'py, T: Real + Element, C: Collective + Sync>(
    py: Python<'py>,
    hyper: HyperParams,
    path: &Path,
    init: Parameters<T>,
    solver: &crate::Solver<'_>,
    reading: Reading,
    callback: Option<&Py<PyAny>>,
    pool: Option<&rayon::ThreadPool>,
    collective: C,
) -> PyResult<crate::Outcome<'py, ModelFile<T>>> {
    let crate::Solver { name: solver, max_iter, batch_size, learning_rate, momentum, seed } = *solver;
    let opened = open::<T>(path, collective.rank(), collective.size());
    let (source, first, examples) =
        agree(&collective, opened, "opening its rows of the data").map_err(crate::py_error)?;
    let mut run = crate::Run { callback, error: None, started: Instant::now() };
    // Set by this process's Ctrl-C or callback; `agreed` once any process's is.
    let (requested, agreed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (model, stop, iterations, curve, signal) = match solver {
        "lbfgs" => {
            let trainer = Trainer::new(crate::lbfgs_options(max_iter)).stop_when(agreed.clone());
            let (trained, signal) = crate::supervised(py, pool, &requested, || {
                let objective = StreamingObjective::new(hyper, source, reading.chunk, StreamMode::OnePass);
                let objective = agree(&collective, objective, "checking its part of the data")?;
                let mut objective =
                    objective.split(&collective, first).synchronize_stop(requested.clone(), agreed.clone());
                trainer.fit(&mut objective, &init, |step| {
                    let i = &step.lbfgs;
                    let fields = [("iteration", i.iteration as f64), ("cost", i.f), ("gradient_norm", i.gradient_norm)];
                    // Carried to every process by the next evaluation's sum.
                    if run.step(&fields).is_break() {
                        requested.store(true, Ordering::Relaxed);
                    }
                    ControlFlow::Continue(())
                })
            })?;
            let trained = trained.map_err(crate::py_error)?;
            (trained.model, trained.stop.name(), trained.iterations, trained.curve, signal)
        }
        "adam" | "sgd" => {
            let rule =
                if solver == "adam" { StepRule::adam(learning_rate) } else { StepRule::sgd(learning_rate, momentum) };
            let shuffle = Shuffle::Blocks { block: reading.shuffle_block, window: reading.shuffle_window };
            let options = MinibatchOptions { rule, batch_size, epochs: max_iter, seed, shuffle, ..Default::default() };
            let trainer = MinibatchTrainer::new(hyper, options).map_err(crate::py_error)?.stop_when(requested.clone());
            let on_step = |step: &MinibatchStep| {
                if !step.epoch_end {
                    return ControlFlow::Continue(());
                }
                run.step(&[("epoch", step.epoch as f64), ("step", step.step as f64), ("cost", step.cost)])
            };
            let part = StreamedPart::new(source, first, examples).map(|part| part.with_chunk(reading.chunk));
            let part = agree(&collective, part, "checking its part of the data").map_err(crate::py_error)?;
            let (trained, signal) = crate::supervised(py, pool, &requested, || {
                trainer.fit_streamed(part, &mut Split::new(&collective), None, &init, on_step)
            })?;
            let trained = trained.map_err(crate::py_error)?;
            (trained.model, trained.stop.name(), trained.epochs, trained.curve, signal)
        }
        other => return Err(crate::invalid(format!("solver = {other:?} is not one of 'lbfgs', 'adam', 'sgd'"))),
    };
    let summary = PyDict::new(py);
    summary.set_item("stop", stop)?;
    summary.set_item("n_iter", iterations)?;
    summary.set_item("curve", curve)?;
    Ok((model, summary, run.error.or(signal), None))
}
