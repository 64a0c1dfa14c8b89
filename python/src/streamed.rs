//! Training streamed from disk: `train` given the path of a `.npy` file or of a folder of
//! `.npy` shards instead of an array. L-BFGS reads the data a chunk at a time per evaluation;
//! Adam and SGD a window of shuffled blocks at a time. Memory is bounded by the chunk or the
//! window, whatever the size of the data; across processes (`comm`) each reads its own rows.

use std::path::Path;

use numpy::Element;
use pyo3::prelude::*;

use crate::distributed::{agree_checked, train_rows, PyCollective, Rows};
use sae::data::npy_source::{NpyFileSource, ShardSource};
use sae::data::stream::SeekableSource;
use sae::model::{HyperParams, ModelFile, Parameters};
use sae::objective::distributed::{agree, rows_of, Alone, Collective};
use sae::train::Shuffle;
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
    let init = crate::vector_of::<T>(theta0, "theta0").and_then(|theta0| {
        Parameters::from_theta(hyper.visible(), hyper.hidden(), theta0.as_array().to_vec()).map_err(crate::py_error)
    });
    match comm {
        None => train_on(py, hyper, path, init?, solver, reading, callback, pool, Alone),
        Some(comm) => {
            let collective = PyCollective::new(comm)?;
            let init = agree_checked(&collective, init, "checking its theta0")?;
            train_on(py, hyper, path, init, solver, reading, callback, pool, &collective)
        }
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
    let opened = open::<T>(path, collective.rank(), collective.size());
    let (source, first, examples) =
        agree(&collective, opened, "opening its rows of the data").map_err(crate::py_error)?;
    let shuffle = Shuffle::Blocks { block: reading.shuffle_block, window: reading.shuffle_window };
    let rows = Rows::Streamed { source, chunk: reading.chunk, shuffle };
    train_rows(py, hyper, rows, first, examples, init, solver, callback, pool, collective)
}
