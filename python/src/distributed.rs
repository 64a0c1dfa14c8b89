//! Runs across processes from Python: an mpi4py communicator (or any object with its
//! `Get_rank()`, `Get_size()` and `Allreduce(send, recv)` summing float64 and float32 arrays)
//! is the engine's [`Collective`]; the extension links no MPI of its own, so it works with
//! whichever MPI mpi4py was built against.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use numpy::{Element, IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::Dtype;
use sae::data::stream::SeekableSource;
use sae::model::{HyperParams, ModelFile, Parameters};
use sae::objective::distributed::{agree, in_whole, Collective, DistributedObjective, Part, Split};
use sae::objective::{StreamMode, StreamingObjective};
use sae::optim::StepRule;
use sae::train::{MinibatchOptions, MinibatchStep, MinibatchTrainer, Shuffle, StreamedPart, Trainer};
use sae::{Dataset, Error, Real};

/// A Python communicator as the engine's [`Collective`].
pub(crate) struct PyCollective {
    comm: Py<PyAny>,
    rank: usize,
    size: usize,
}

impl PyCollective {
    /// `comm`'s rank and size, checked.
    pub(crate) fn new(comm: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (rank, size): (usize, usize) =
            (comm.call_method0("Get_rank")?.extract()?, comm.call_method0("Get_size")?.extract()?);
        if rank >= size {
            return Err(crate::invalid(format!("comm: rank {rank} of a communicator of {size} processes")));
        }
        Ok(PyCollective { comm: comm.clone().unbind(), rank, size })
    }

    /// This process's first example in the whole data set and the examples of all processes,
    /// from each process's `local` count (collective): the processes' rows in rank order are
    /// the data set.
    pub(crate) fn offsets(&self, local: usize) -> sae::Result<(usize, usize)> {
        let mut counts = vec![0.0; self.size];
        counts[self.rank] = local as f64;
        let mut all = vec![0.0; self.size];
        self.sum(&counts, &mut all)?;
        let first = all[..self.rank].iter().sum::<f64>() as usize;
        Ok((first, all.iter().sum::<f64>() as usize))
    }
}

impl Collective for PyCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    /// `comm.Allreduce(values, sums)` with the interpreter attached (the engine calls it from
    /// its computing thread).
    fn sum(&self, values: &[f64], sums: &mut [f64]) -> sae::Result<()> {
        self.allreduce(values, sums)
    }

    /// `comm.Allreduce` of float32 arrays (a float32 model's gradient, half the bytes).
    fn sum_f32(&self, values: &[f32], sums: &mut [f32]) -> sae::Result<()> {
        self.allreduce(values, sums)
    }
}

impl PyCollective {
    /// `comm.Allreduce(values, sums)` on arrays of `values`' type.
    fn allreduce<T: Element + Copy>(&self, values: &[T], sums: &mut [T]) -> sae::Result<()> {
        Python::attach(|py| -> PyResult<()> {
            let send = PyArray1::from_slice(py, values);
            let receive = PyArray1::<T>::zeros(py, values.len(), false);
            self.comm.call_method1(py, "Allreduce", (send, &receive))?;
            sums.copy_from_slice(receive.readonly().as_slice()?);
            Ok(())
        })
        .map_err(|e| Error::CollectiveFailed { reason: e.to_string() })
    }
}

/// `J(theta)` and its gradient over the data set split across the processes of `comm`, this
/// process holding the rows `x` (`m_local×n`, possibly none): every process calls it with the
/// same `theta` and gets the whole data set's cost and gradient.
#[pyclass(module = "sae._sae", name = "DistributedObjective")]
pub(crate) struct PyDistributedObjective {
    hyper: HyperParams,
    x: Py<PyAny>,
    dtype: Dtype,
    collective: PyCollective,
    first_example: usize,
    examples: usize,
    pool: Option<rayon::ThreadPool>,
    terms: Option<sae::objective::CostTerms>,
    rho_hat: Vec<f64>,
}

/// This process's rows of `x` as a data set, or none for an array of no rows.
pub(crate) fn local_rows<'a, T: Real + Element>(x: &'a PyReadonlyArray2<'_, T>) -> PyResult<Option<Dataset<'a, T>>> {
    match x.shape()[0] {
        0 => Ok(None),
        _ => crate::unscanned_dataset(x).map(Some),
    }
}

/// Fails on a NaN or infinity of this process's rows, naming its row in the whole data set
/// (this process's rows start at `first_example`).
fn scan<T: Real>(data: Option<&Dataset<'_, T>>, first_example: usize) -> PyResult<()> {
    data.map_or(Ok(()), |data| {
        data.check_finite()
            .map_err(|e| crate::py_error(in_whole(crate::in_array_rows(e, data.layout()), first_example)))
    })
}

/// Agrees with the other processes on the outcome of this process's own checks before a
/// collective step, so that a process failing them does not leave the others waiting in a sum:
/// it raises its own error, the others a `DistributedError` naming it.
pub(crate) fn agree_checked<R>(collective: &PyCollective, checked: PyResult<R>, reason: &'static str) -> PyResult<R> {
    // Only whether it failed crosses the processes.
    let failed = checked.as_ref().map(|_| ()).map_err(|_| Error::EmptyData { what: "this process's checks" });
    match agree(collective, failed, reason) {
        Err(other @ Error::OtherRankFailed { .. }) if checked.is_ok() => Err(crate::py_error(other)),
        Err(Error::CollectiveFailed { reason }) => Err(crate::py_error(Error::CollectiveFailed { reason })),
        _ => checked,
    }
}

/// One evaluation on this process's rows `x` (collective).
#[allow(clippy::too_many_arguments)]
fn evaluate<'py, T: Real + Element>(
    py: Python<'py>,
    hyper: HyperParams,
    collective: &PyCollective,
    first_example: usize,
    pool: Option<&rayon::ThreadPool>,
    x: &Bound<'py, PyAny>,
    theta: &Bound<'py, PyAny>,
) -> PyResult<(f64, Bound<'py, PyAny>, sae::objective::CostTerms, Vec<f64>)> {
    let x = x.extract::<PyReadonlyArray2<T>>();
    let theta = crate::vector_of::<T>(theta, "theta");
    // Scanned for NaN when the objective was made (every process agreeing).
    let local = match (&x, &theta) {
        (Ok(x), Ok(theta)) => theta
            .as_slice()
            .map_err(|_| crate::invalid("theta must be contiguous"))
            .and_then(|theta| Ok((local_rows(x)?, theta))),
        (Err(e), _) | (_, Err(e)) => Err(e.clone_ref(py)),
    };
    let (data, theta) = agree_checked(collective, local, "checking its arguments")?;
    let mut grad = vec![T::zero(); theta.len()];
    let result = crate::detached(py, pool, || {
        let objective = DistributedObjective::new(hyper, data, first_example, collective);
        let mut objective = agree(collective, objective, "checking its part of the data")?;
        let cost = objective.evaluate(theta, &mut grad)?;
        Ok((cost, objective.terms(), objective.rho_hat().to_vec()))
    });
    let (cost, terms, rho_hat) = result.map_err(crate::py_error)?;
    Ok((cost, grad.into_pyarray(py).into_any(), terms, rho_hat))
}

#[pymethods]
impl PyDistributedObjective {
    /// Collective: every process of `comm` makes its own with its rows `x` (float32 or
    /// float64, the same on every process; C or Fortran order, read in place at every call).
    #[new]
    #[pyo3(signature = (x, hyper, comm, n_threads = None))]
    fn new(
        x: &Bound<'_, PyAny>,
        hyper: &crate::PyHyper,
        comm: &Bound<'_, PyAny>,
        n_threads: Option<usize>,
    ) -> PyResult<Self> {
        let collective = PyCollective::new(comm)?;
        // This process's checks, agreed on by every process; then the one scan for NaN and
        // infinities, naming rows of the whole data set.
        let checked = (|| {
            let dtype = Dtype::of(x, "X")?;
            let shape = x.cast::<PyUntypedArray>()?.shape().to_vec();
            if shape.len() != 2 || shape[1] != hyper.0.visible() {
                return Err(crate::invalid(format!(
                    "X must be m×{} (this process's rows of the data set), not of shape {shape:?}",
                    hyper.0.visible()
                )));
            }
            Ok((dtype, shape[0]))
        })();
        let (dtype, rows) = agree_checked(&collective, checked, "checking its part of the data")?;
        let (first_example, examples) = collective.offsets(rows).map_err(crate::py_error)?;
        let scanned = match dtype {
            Dtype::F32 => x
                .extract::<PyReadonlyArray2<f32>>()
                .and_then(|x| local_rows(&x).and_then(|data| scan(data.as_ref(), first_example))),
            Dtype::F64 => x
                .extract::<PyReadonlyArray2<f64>>()
                .and_then(|x| local_rows(&x).and_then(|data| scan(data.as_ref(), first_example))),
        };
        agree_checked(&collective, scanned, "checking its part of the data")?;
        Ok(PyDistributedObjective {
            hyper: hyper.0,
            x: x.clone().unbind(),
            dtype,
            collective,
            first_example,
            examples,
            pool: crate::thread_pool(n_threads)?,
            terms: None,
            rho_hat: Vec::new(),
        })
    }

    /// `(J(theta), ∇J(theta))` over every process's rows (collective).
    fn __call__<'py>(&mut self, py: Python<'py>, theta: &Bound<'py, PyAny>) -> PyResult<(f64, Bound<'py, PyAny>)> {
        let x = self.x.bind(py).clone();
        let (hyper, collective, first, pool) = (self.hyper, &self.collective, self.first_example, self.pool.as_ref());
        let (cost, grad, terms, rho_hat) = match self.dtype {
            Dtype::F32 => evaluate::<f32>(py, hyper, collective, first, pool, &x, theta)?,
            Dtype::F64 => evaluate::<f64>(py, hyper, collective, first, pool, &x, theta)?,
        };
        self.terms = Some(terms);
        self.rho_hat = rho_hat;
        Ok((cost, grad))
    }

    /// This process's first row in the whole data set.
    #[getter]
    fn first_example(&self) -> usize {
        self.first_example
    }

    /// `m`, the rows of all processes.
    #[getter]
    fn examples(&self) -> usize {
        self.examples
    }

    #[getter]
    fn terms<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.terms.map(|terms| crate::terms_dict(py, terms)).transpose()
    }

    #[getter]
    fn rho_hat<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.rho_hat.clone().into_pyarray(py)
    }
}

/// Trains on the data set split across the processes of `comm`, this process holding `x`;
/// see `train` and [`train_rows`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_split<'py, T: Real + Element>(
    py: Python<'py>,
    hyper: HyperParams,
    x: &Bound<'py, PyAny>,
    theta0: &Bound<'py, PyAny>,
    solver: &crate::Solver<'_>,
    callback: Option<&Py<PyAny>>,
    pool: Option<&rayon::ThreadPool>,
    comm: &Bound<'py, PyAny>,
) -> PyResult<crate::Outcome<'py, ModelFile<T>>> {
    let collective = PyCollective::new(comm)?;
    let x = x.extract::<PyReadonlyArray2<T>>();
    let theta0 = crate::vector_of::<T>(theta0, "theta0").map(|theta| theta.as_array().to_vec());
    let local = match (&x, theta0) {
        (Ok(x), Ok(theta0)) => local_rows(x).and_then(|data| {
            let init = Parameters::from_theta(hyper.visible(), hyper.hidden(), theta0).map_err(crate::py_error)?;
            Ok((data, init))
        }),
        (Err(e), _) => Err(e.clone_ref(py)),
        (_, Err(e)) => Err(e),
    };
    let (data, init) = agree_checked(&collective, local, "checking its part of the data")?;
    let (first, examples) = collective.offsets(data.map_or(0, |d| d.examples())).map_err(crate::py_error)?;
    agree_checked(&collective, scan(data.as_ref(), first), "checking its part of the data")?;
    let rows = Rows::InMemory(data);
    train_rows(py, hyper, rows, first, examples, init, solver, callback, pool, &collective)
}

/// This process's rows of a training run: in memory (none, for a process holding none), or
/// read from storage (`chunk` at a time by L-BFGS, `shuffle`d by blocks by Adam and SGD).
pub(crate) enum Rows<'a, T> {
    InMemory(Option<Dataset<'a, T>>),
    Streamed { source: Box<dyn SeekableSource<T> + Send>, chunk: usize, shuffle: Shuffle },
}

/// Trains from `init` on this process's `rows`, the examples `first..` of a data set of
/// `examples` split across the processes of `collective` (of one process: [`Alone`]); see
/// `train`. Every process takes the same steps and returns the same model; a stop that one
/// process's callback or Ctrl-C asks for stops every process after the same step.
///
/// [`Alone`]: sae::objective::distributed::Alone
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_rows<'py, T: Real + Element, C: Collective + Sync>(
    py: Python<'py>,
    hyper: HyperParams,
    rows: Rows<'_, T>,
    first: usize,
    examples: usize,
    init: Parameters<T>,
    solver: &crate::Solver<'_>,
    callback: Option<&Py<PyAny>>,
    pool: Option<&rayon::ThreadPool>,
    collective: C,
) -> PyResult<crate::Outcome<'py, ModelFile<T>>> {
    let crate::Solver { name: solver, max_iter, batch_size, learning_rate, momentum, schedule, seed } = *solver;
    let mut run = crate::Run { callback, error: None, started: Instant::now() };
    // Set by this process's Ctrl-C or callback; `agreed` once any process's is.
    let (requested, agreed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (model, stop, iterations, curve, signal) = match solver {
        "lbfgs" => {
            let trainer = Trainer::new(crate::lbfgs_options(max_iter)).stop_when(agreed.clone());
            let on_iteration = |step: &sae::train::LbfgsStep| {
                let i = &step.lbfgs;
                let fields = [("iteration", i.iteration as f64), ("cost", i.f), ("gradient_norm", i.gradient_norm)];
                // Stopping here alone would leave the others waiting: the next evaluation's
                // sum carries the request to every process.
                if run.step(&fields).is_break() {
                    requested.store(true, Ordering::Relaxed);
                }
                ControlFlow::Continue(())
            };
            let (trained, signal) = crate::supervised(py, pool, &requested, || match rows {
                Rows::InMemory(data) => {
                    let objective = DistributedObjective::new(hyper, data, first, &collective);
                    let objective = agree(&collective, objective, "checking its part of the data")?;
                    let mut objective = objective.synchronize_stop(requested.clone(), agreed.clone());
                    trainer.fit(&mut objective, &init, on_iteration)
                }
                Rows::Streamed { source, chunk, .. } => {
                    let objective = StreamingObjective::new(hyper, source, chunk, StreamMode::OnePass);
                    let objective = agree(&collective, objective, "checking its part of the data")?;
                    let mut objective =
                        objective.split(&collective, first).synchronize_stop(requested.clone(), agreed.clone());
                    trainer.fit(&mut objective, &init, on_iteration)
                }
            })?;
            let trained = trained.map_err(crate::py_error)?;
            (trained.model, trained.stop.name(), trained.iterations, trained.curve, signal)
        }
        "adam" | "sgd" => {
            let rule =
                if solver == "adam" { StepRule::adam(learning_rate) } else { StepRule::sgd(learning_rate, momentum) };
            let shuffle = match &rows {
                Rows::InMemory(_) => Shuffle::Full,
                Rows::Streamed { shuffle, .. } => *shuffle,
            };
            let options =
                MinibatchOptions { rule, batch_size, epochs: max_iter, seed, shuffle, schedule, ..Default::default() };
            // A stop asked of one process is agreed on by the trainer across processes.
            let trainer = MinibatchTrainer::new(hyper, options).map_err(crate::py_error)?.stop_when(requested.clone());
            let on_step = |step: &MinibatchStep| {
                if !step.epoch_end {
                    return ControlFlow::Continue(());
                }
                run.step(&[("epoch", step.epoch as f64), ("step", step.step as f64), ("cost", step.cost)])
            };
            let mut split = Split::new(&collective);
            let (trained, signal) = match rows {
                Rows::InMemory(data) => {
                    let part = Part { data: data.as_ref(), first_example: first, examples };
                    crate::supervised(py, pool, &requested, || {
                        trainer.fit_split(part, &mut split, None, &init, on_step)
                    })?
                }
                Rows::Streamed { source, chunk, .. } => {
                    let part = StreamedPart::new(source, first, examples).and_then(|part| part.with_chunk(chunk));
                    let part = agree(&collective, part, "checking its part of the data").map_err(crate::py_error)?;
                    crate::supervised(py, pool, &requested, || {
                        trainer.fit_streamed(part, &mut split, None, &init, on_step)
                    })?
                }
            };
            let trained = trained.map_err(crate::py_error)?;
            (trained.model, trained.stop.name(), trained.epochs, trained.curve, signal)
        }
        other => return Err(crate::invalid(format!("solver = {other:?} is not one of 'lbfgs', 'adam', 'sgd'"))),
    };
    let summary = PyDict::new(py);
    summary.set_item("stop", stop)?;
    summary.set_item("n_iter", iterations)?;
    summary.set_item("curve", curve)?;
    if solver != "lbfgs" {
        summary.set_item("lr_schedule", schedule.describe())?;
    }
    Ok((model, summary, run.error.or(signal), None))
}
