//! `sae._sae`: the engine's Python binding (PyO3 and rust-numpy), the extension module under the
//! pure-Python package `sae` (`python/sae/`), which adds the scikit-learn estimator and the
//! conversions of arbitrary array-likes.
//!
//! What crosses the boundary: numpy arrays of float32 or float64, read in place when they are
//! contiguous (C order is examples by features, Fortran order features by examples: both are
//! layouts the engine reads) and returned without a copy (a `Vec` handed to numpy). Every long
//! computation runs with the interpreter detached, so Python threads working on different
//! objectives or models run in parallel; a thread count, when given, is a rayon pool of the
//! object's own, otherwise the current pool runs the work.

mod distributed;
mod streamed;
mod topk;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
};
use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

use sae::data::npy_source::{NpyFileSource, ShardSource};
use sae::data::stream::ExampleSource;
use sae::model::stack::{StackModel, STACK_OBJECTIVE};
use sae::model::vae::{VaeDecoder, VaeModel, VaeShape, VAE_OBJECTIVE};
use sae::model::{Activation, Corruption, HyperParams, ModelFile, Parameters, Reconstruction, SparsityPenalty};
use sae::objective::{
    SoftmaxObjective, StackShape, StackedObjective, StreamMode, StreamingObjective, UnboundObjective, VaeObjective,
};
use sae::optim::{Decay, Differentiable, Lbfgs, LbfgsOptions, Schedule, StepRule, Stop};
use sae::train::{
    Checkpoint, MinibatchOptions, MinibatchState, MinibatchStep, MinibatchTrainer, Trainer, VaeOptions, VaeTrainer,
};
use sae::{Dataset, Error, Layout, Objective, Real};

/// The Python exception for an engine error, a class of `sae.errors` (all subclasses of
/// `SaeError` and of the built-in exception the fault is): files that cannot be read or
/// written are `FileAccessError` (`OSError`), files that are not models `ModelFileError`, a
/// cost that cannot be computed `SaturationError` (`FloatingPointError`), anything else about
/// the input `InvalidInputError` (`ValueError`); the message names the parameter, file, row or
/// column.
fn py_error(e: Error) -> PyErr {
    if let Error::InvalidHyperParameter { name, value, reason } = e {
        // The parameter under the name the Python API gives it.
        let name = match name {
            "visible" => "n_visible",
            "hidden" => "n_hidden",
            "latent" => "n_latent",
            "lambda" => "alpha",
            "beta" => "sparsity_weight",
            "rho" => "sparsity_target",
            "masking probability" | "noise standard deviation" => "corruption_level",
            "batch size" => "batch_size",
            "learning rate" => "learning_rate_init",
            "decay_start" => "lr_decay_start",
            other => other,
        };
        let reason = reason.replace("β = 0", "sparsity_weight = 0");
        return invalid(format!("invalid hyper-parameter `{name}` = {value}: {reason}"));
    }
    let class = match e {
        Error::Io { .. } | Error::InUse { .. } | Error::FileClash { .. } | Error::BadOutput { .. } => "FileAccessError",
        Error::BadFile { .. } | Error::BadCheckpoint { .. } => "ModelFileError",
        Error::SaturatedActivation { .. } | Error::NonFiniteCost { .. } => "SaturationError",
        Error::UnsupportedIsa { .. } => "UnsupportedError",
        Error::OtherRankFailed { .. } | Error::ProcessesDiverged { .. } | Error::CollectiveFailed { .. } => {
            "DistributedError"
        }
        _ => "InvalidInputError",
    };
    sae_error(class, e.to_string())
}

/// An instance of the class `class` of `sae.errors` with `message`.
fn sae_error(class: &str, message: String) -> PyErr {
    Python::attach(|py| {
        let class = py.import("sae.errors").and_then(|errors| errors.getattr(class));
        match class.and_then(|class| class.cast_into::<PyType>().map_err(PyErr::from)) {
            Ok(class) => PyErr::from_type(class, message),
            // Only if the package's own module is missing (a broken install): still a
            // ValueError with the message.
            Err(_) => PyValueError::new_err(message),
        }
    })
}

/// An `InvalidInputError` (a `ValueError`) with `message`.
fn invalid(message: impl Into<String>) -> PyErr {
    sae_error("InvalidInputError", message.into())
}

/// `names` quoted and separated by commas, each once, in their order: `'a', 'b'`.
fn quoted<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut once: Vec<&str> = Vec::new();
    for name in names {
        if !once.contains(&name) {
            once.push(name);
        }
    }
    once.iter().map(|name| format!("'{name}'")).collect::<Vec<_>>().join(", ")
}

/// The reconstruction of `output` units and `loss`, or an error naming the argument at fault.
fn reconstruction(output: &str, loss: &str) -> PyResult<Reconstruction> {
    if let Some(reconstruction) = Reconstruction::from_units_and_loss(output, loss) {
        return Ok(reconstruction);
    }
    let all = Reconstruction::ALL;
    Err(if !all.iter().any(|r| r.output_units() == output) {
        invalid(format!("output = {output:?} is not one of {}", quoted(all.map(Reconstruction::output_units))))
    } else if !all.iter().any(|r| r.loss() == loss) {
        invalid(format!("loss = {loss:?} is not one of {}", quoted(all.map(Reconstruction::loss))))
    } else {
        let with_loss = all.into_iter().filter(|r| r.loss() == loss).map(Reconstruction::output_units);
        invalid(format!("loss = '{loss}' needs output = {}", quoted(with_loss)))
    })
}

/// The learning rate's schedule from the keyword arguments `lr_warmup`, `lr_decay` (`"none"`,
/// `"linear"` or `"cosine"`) and `lr_decay_start`.
fn schedule(lr_warmup: u64, lr_decay: &str, lr_decay_start: f64) -> PyResult<Schedule> {
    let decay = Decay::from_name(lr_decay)
        .ok_or_else(|| invalid(format!("lr_decay must be one of {:?}, not {lr_decay:?}", Decay::NAMES)))?;
    let schedule = Schedule { warmup_steps: lr_warmup, decay, decay_start: lr_decay_start };
    schedule.check().map_err(py_error)?;
    Ok(schedule)
}

/// The two element types, as numpy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F32,
    F64,
}

impl Dtype {
    fn of(array: &Bound<'_, PyAny>, what: &str) -> PyResult<Dtype> {
        let array = array
            .cast::<PyUntypedArray>()
            .map_err(|_| PyTypeError::new_err(format!("{what} must be a numpy array")))?;
        let dtype = array.dtype();
        if dtype.is_equiv_to(&numpy::dtype::<f32>(array.py())) {
            Ok(Dtype::F32)
        } else if dtype.is_equiv_to(&numpy::dtype::<f64>(array.py())) {
            Ok(Dtype::F64)
        } else {
            Err(PyTypeError::new_err(format!("{what} must be float32 or float64, not {dtype}")))
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }
}

/// A 2-D array (`m×n`, one example per row) as a data set, read in place: C order is the
/// engine's examples-by-features layout, Fortran order its features-by-examples layout. Any
/// other array is refused (the Python side makes it contiguous first).
fn dataset<'a, T: Real + Element>(x: &'a PyReadonlyArray2<'_, T>) -> PyResult<Dataset<'a, T>> {
    let data = unscanned_dataset(x)?;
    data.check_finite().map_err(|e| data_error(e, data.layout()))?;
    Ok(data)
}

/// An error of the library on a data set made of a Python array, as a Python exception (see
/// [`in_array_rows`]).
fn data_error(error: Error, layout: Layout) -> PyErr {
    py_error(in_array_rows(error, layout))
}

/// An error of the library on a data set of `layout` made of a Python array, naming the array's
/// row and column: the library names them in its data set's layout, which for a Fortran-order
/// `X` is features by examples (`n×m`); a Python `X` is `m×n` whatever its order.
fn in_array_rows(error: Error, layout: Layout) -> Error {
    match (error, layout) {
        (Error::NonFiniteData { what, row, column, value }, Layout::FeaturesByExamples) => {
            Error::NonFiniteData { what, row: column, column: row, value }
        }
        (Error::DataOutOfRange { what, row, column, value, reason }, Layout::FeaturesByExamples) => {
            Error::DataOutOfRange { what, row: column, column: row, value, reason }
        }
        (error, _) => error,
    }
}

/// As [`dataset`], without the pass over every value for NaN and infinities: for data scanned
/// when its objective was made, and scanned again only when a cost comes out non-finite.
fn unscanned_dataset<'a, T: Real + Element>(x: &'a PyReadonlyArray2<'_, T>) -> PyResult<Dataset<'a, T>> {
    let (m, n) = (x.shape()[0], x.shape()[1]);
    let values = x.as_slice().map_err(|_| invalid("X must be contiguous (C or Fortran order)"))?;
    let layout = if x.is_c_contiguous() { Layout::ExamplesByFeatures } else { Layout::FeaturesByExamples };
    Dataset::unscanned(values, m, n, layout).map_err(py_error)
}

/// The order a kernel reads a 2-D array in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Contiguity {
    /// C or Fortran order: a data set, whose layout follows the array's.
    Either,
    /// C order only: rows read as they lie.
    Rows,
}

/// `x` as a contiguous array of `T` in `order`: itself when it is one, else numpy's C-order
/// copy (the one copy a layout or dtype forces).
fn contiguous<'py, T: Real + Element>(x: &Bound<'py, PyAny>, order: Contiguity) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(array) = x.cast::<PyArray2<T>>() {
        if array.is_c_contiguous() || (order == Contiguity::Either && array.is_fortran_contiguous()) {
            return Ok(x.clone());
        }
    }
    let dtype = Dtype::name(dtype_of::<T>());
    x.py().import("numpy")?.call_method1("ascontiguousarray", (x, dtype))
}

/// A 1-D array of `T` (parameters: no conversion, so that a wrong dtype is an error, not a
/// silent copy in another precision).
fn vector_of<'py, T: Real + Element>(array: &Bound<'py, PyAny>, name: &str) -> PyResult<PyReadonlyArray1<'py, T>> {
    array
        .extract()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a 1-D {} array", Dtype::name(dtype_of::<T>()))))
}

/// The width of a 2-D array-like `x`, checked against the model's `n`.
fn check_width(x: &Bound<'_, PyAny>, what: &str, expected: usize, name: &str) -> PyResult<()> {
    let shape: Vec<usize> = x.getattr("shape")?.extract()?;
    match shape[..] {
        [_, width] if width == expected => Ok(()),
        [_, width] => Err(invalid(format!("{what} has {width} columns but the model has {name} = {expected}"))),
        _ => Err(invalid(format!("{what} must be 2-D, not {}-D", shape.len()))),
    }
}

/// Runs `work` with the interpreter detached, on `pool` when there is one.
fn detached<R: Send>(py: Python<'_>, pool: Option<&rayon::ThreadPool>, work: impl FnOnce() -> R + Send) -> R {
    py.detach(|| match pool {
        Some(pool) => pool.install(work),
        None => work(),
    })
}

fn thread_pool(n_threads: Option<usize>) -> PyResult<Option<rayon::ThreadPool>> {
    match n_threads {
        None => Ok(None),
        Some(0) => Err(invalid("n_threads must be at least 1")),
        Some(threads) => rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map(Some)
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start {threads} threads: {e}"))),
    }
}

/// The hyper-parameters of a sparse autoencoder (SPEC §1), under the names of the Python API.
#[pyclass(module = "sae._sae", name = "HyperParams", frozen, eq)]
#[derive(Clone, Copy, PartialEq)]
struct PyHyper(HyperParams);

#[pymethods]
impl PyHyper {
    /// `output` and `loss` together are the reconstruction: sigmoid or linear output units,
    /// squared error or (sigmoid only) cross-entropy. `corruption` is `"none"`, `"masking"`
    /// (level: the probability of zeroing an input) or `"gaussian"` (level: its std. dev.).
    #[new]
    #[pyo3(signature = (
        n_visible, n_hidden, *, sparsity_target = 0.01, sparsity_weight = 3.0, alpha = 1e-4,
        penalty = "kl", activation = "sigmoid", output = "sigmoid", loss = "squared",
        contractive = 0.0, tied = false, corruption = "none", corruption_level = 0.0, corruption_seed = 0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        n_visible: usize,
        n_hidden: usize,
        sparsity_target: f64,
        sparsity_weight: f64,
        alpha: f64,
        penalty: &str,
        activation: &str,
        output: &str,
        loss: &str,
        contractive: f64,
        tied: bool,
        corruption: &str,
        corruption_level: f64,
        corruption_seed: u64,
    ) -> PyResult<Self> {
        let unknown =
            |what: &str, value: &str, known: &str| invalid(format!("{what} = {value:?} is not one of {known}"));
        let penalty = SparsityPenalty::from_name(penalty)
            .ok_or_else(|| unknown("penalty", penalty, &quoted(SparsityPenalty::ALL.map(SparsityPenalty::name))))?;
        let activation = Activation::from_name(activation)
            .ok_or_else(|| unknown("activation", activation, &quoted(Activation::ALL.map(Activation::name))))?;
        let reconstruction = reconstruction(output, loss)?;
        let corruption = Corruption::from_name(corruption, corruption_level)
            .ok_or_else(|| unknown("corruption", corruption, &quoted(Corruption::NAMES)))?;
        HyperParams::builder(n_visible, n_hidden)
            .rho(sparsity_target)
            .beta(sparsity_weight)
            .lambda(alpha)
            .penalty(penalty)
            .activation(activation)
            .reconstruction(reconstruction)
            .contractive(contractive)
            .tied(tied)
            .corruption(corruption, corruption_seed)
            .build()
            .map(PyHyper)
            .map_err(py_error)
    }

    #[getter]
    fn n_visible(&self) -> usize {
        self.0.visible()
    }

    #[getter]
    fn n_hidden(&self) -> usize {
        self.0.hidden()
    }

    /// Every hyper-parameter by its Python name (what `HyperParams(**h.to_dict())` takes).
    #[allow(clippy::wrong_self_convention)] // a Python method: pyo3 passes `&self`
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let h = self.0;
        let (output, loss) = (h.reconstruction().output_units(), h.reconstruction().loss());
        let dict = PyDict::new(py);
        dict.set_item("n_visible", h.visible())?;
        dict.set_item("n_hidden", h.hidden())?;
        dict.set_item("sparsity_target", h.rho())?;
        dict.set_item("sparsity_weight", h.beta())?;
        dict.set_item("alpha", h.lambda())?;
        dict.set_item("penalty", h.penalty().name())?;
        dict.set_item("activation", h.activation().name())?;
        dict.set_item("output", output)?;
        dict.set_item("loss", loss)?;
        dict.set_item("contractive", h.contractive())?;
        dict.set_item("tied", h.tied())?;
        dict.set_item("corruption", h.corruption().name())?;
        dict.set_item("corruption_level", h.corruption().level())?;
        dict.set_item("corruption_seed", h.corruption_seed())?;
        Ok(dict)
    }

    /// `theta`'s length: `2hn + h + n`.
    #[getter]
    fn theta_len(&self) -> usize {
        sae::ThetaLayout::new(self.0.visible(), self.0.hidden()).len()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let items: Vec<String> =
            self.to_dict(py)?.iter().map(|(k, v)| Ok(format!("{k}={}", v.repr()?))).collect::<PyResult<_>>()?;
        Ok(format!("HyperParams({})", items.join(", ")))
    }
}

/// The UFLDL initial `theta` (weights uniform in `±sqrt(6/(n + h + 1))`, zero biases) of the
/// seed, in the UFLDL layout `[W1(:); W2(:); b1; b2]`.
#[pyfunction]
#[pyo3(signature = (n_visible, n_hidden, seed = 0, dtype = "float64"))]
fn initial_theta<'py>(
    py: Python<'py>,
    n_visible: usize,
    n_hidden: usize,
    seed: u64,
    dtype: &str,
) -> PyResult<Bound<'py, PyAny>> {
    match dtype {
        "float32" => Ok(Parameters::<f32>::init(n_visible, n_hidden, seed).into_theta().into_pyarray(py).into_any()),
        "float64" => Ok(Parameters::<f64>::init(n_visible, n_hidden, seed).into_theta().into_pyarray(py).into_any()),
        other => Err(invalid(format!("dtype = {other:?} is not 'float32' or 'float64'"))),
    }
}

/// The engine's objective of one precision, without its data between calls.
enum Unbound {
    F32(Option<UnboundObjective<f32>>),
    F64(Option<UnboundObjective<f64>>),
}

/// `J(theta)` and its gradient on the data `X` (`m×n`), a callable for any optimiser:
/// `cost, grad = objective(theta)`.
#[pyclass(module = "sae._sae", name = "Objective")]
struct PyObjective {
    hyper: HyperParams,
    /// The data array, kept alive and read in place at every call.
    x: Py<PyAny>,
    engine: Unbound,
    pool: Option<rayon::ThreadPool>,
    terms: Option<sae::objective::CostTerms>,
    rho_hat: Vec<f64>,
}

/// What one evaluation returns to Python: the cost, the gradient, the cost's terms and `rho_hat`.
type Evaluation<'py, T> = (f64, Bound<'py, PyArray1<T>>, sae::objective::CostTerms, Vec<f64>);

/// One evaluation of `slot` (or of a new objective, the first time) on `x` at `theta`.
fn evaluate<'py, T: Real + Element>(
    py: Python<'py>,
    hyper: HyperParams,
    slot: &mut Option<UnboundObjective<T>>,
    pool: Option<&rayon::ThreadPool>,
    x: &Bound<'py, PyAny>,
    theta: &Bound<'py, PyAny>,
) -> PyResult<Evaluation<'py, T>> {
    let x: PyReadonlyArray2<T> = x.extract()?;
    let theta = vector_of::<T>(theta, "theta")?;
    let theta = theta.as_slice().map_err(|_| invalid("theta must be contiguous"))?;
    // Scanned when the objective was made (a pass over all of it would be a tenth of S1's
    // evaluation); a change since then to NaN or infinity shows as a non-finite cost or a
    // saturated unit, and is then named. (With the cross-entropy loss, binding still checks
    // that every value lies in [0, 1]: a pass per call.)
    let data = unscanned_dataset(&x)?;
    let mut grad = vec![T::zero(); theta.len()];
    let unbound = slot.take();
    let (result, unbound) = detached(py, pool, || {
        let bound = match unbound {
            Some(unbound) => unbound.bind(data),
            None => Objective::new(hyper, data),
        };
        match bound {
            Ok(mut objective) => {
                let result = objective
                    .evaluate(theta, &mut grad)
                    .map(|cost| (cost, objective.terms(), objective.rho_hat().to_vec()));
                (result, Some(objective.unbind()))
            }
            Err(e) => (Err(e), None),
        }
    });
    *slot = unbound;
    if !matches!(result, Ok((cost, ..)) if cost.is_finite()) {
        data.check_finite().map_err(|e| data_error(e, data.layout()))?;
    }
    let (cost, terms, rho_hat) = result.map_err(|e| data_error(e, data.layout()))?;
    Ok((cost, grad.into_pyarray(py), terms, rho_hat))
}

fn dtype_of<T: Real>() -> Dtype {
    if T::NAME == "f32" {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

#[pymethods]
impl PyObjective {
    /// `X`: a contiguous float32 or float64 array, `m×n` (C or Fortran order; read in place
    /// at every call, so it must not change while the objective is used).
    #[new]
    #[pyo3(signature = (x, hyper, n_threads = None))]
    fn new(x: &Bound<'_, PyAny>, hyper: &PyHyper, n_threads: Option<usize>) -> PyResult<Self> {
        let dtype = Dtype::of(x, "X")?;
        let shape = x.cast::<PyUntypedArray>()?.shape().to_vec();
        if shape.len() != 2 {
            return Err(invalid(format!("X must be 2-D (m×n), not {}-D", shape.len())));
        }
        if shape[1] != hyper.0.visible() {
            return Err(invalid(format!(
                "X has {} columns (features) but the model has n_visible = {}",
                shape[1],
                hyper.0.visible()
            )));
        }
        // The one scan of the data for NaN and infinities (the calls do not repeat it).
        let engine = match dtype {
            Dtype::F32 => {
                dataset(&x.extract::<PyReadonlyArray2<f32>>()?)?;
                Unbound::F32(None)
            }
            Dtype::F64 => {
                dataset(&x.extract::<PyReadonlyArray2<f64>>()?)?;
                Unbound::F64(None)
            }
        };
        Ok(PyObjective {
            hyper: hyper.0,
            x: x.clone().unbind(),
            engine,
            pool: thread_pool(n_threads)?,
            terms: None,
            rho_hat: Vec::new(),
        })
    }

    /// `(J(theta), ∇J(theta))`: the cost as a float, the gradient as an array of the data's
    /// dtype, both in the UFLDL layout `[W1(:); W2(:); b1; b2]`.
    fn __call__<'py>(&mut self, py: Python<'py>, theta: &Bound<'py, PyAny>) -> PyResult<(f64, Bound<'py, PyAny>)> {
        let x = self.x.bind(py).clone();
        let pool = self.pool.as_ref();
        let (cost, grad, terms, rho_hat) = match &mut self.engine {
            Unbound::F32(slot) => {
                let (cost, grad, terms, rho_hat) = evaluate(py, self.hyper, slot, pool, &x, theta)?;
                (cost, grad.into_any(), terms, rho_hat)
            }
            Unbound::F64(slot) => {
                let (cost, grad, terms, rho_hat) = evaluate(py, self.hyper, slot, pool, &x, theta)?;
                (cost, grad.into_any(), terms, rho_hat)
            }
        };
        self.terms = Some(terms);
        self.rho_hat = rho_hat;
        Ok((cost, grad))
    }

    #[getter]
    fn hyper(&self) -> PyHyper {
        PyHyper(self.hyper)
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        match self.engine {
            Unbound::F32(_) => Dtype::F32.name(),
            Unbound::F64(_) => Dtype::F64.name(),
        }
    }

    /// The last evaluation's cost by its terms (`None` before the first).
    #[getter]
    fn terms<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.terms.map(|terms| terms_dict(py, terms)).transpose()
    }

    /// The mean activation of each hidden unit at the last evaluation's `theta`.
    #[getter]
    fn rho_hat<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.rho_hat.clone().into_pyarray(py)
    }
}

/// The engine's streaming objective over one `.npy` file or a folder of shards, in either
/// precision.
enum Streamed {
    FileF32(StreamingObjective<f32, NpyFileSource<f32>>),
    FileF64(StreamingObjective<f64, NpyFileSource<f64>>),
    ShardsF32(StreamingObjective<f32, ShardSource<f32>>),
    ShardsF64(StreamingObjective<f64, ShardSource<f64>>),
}

/// `J(theta)` and its gradient over the examples of a `.npy` file (`m×n`, rows are examples)
/// or of every `*.npy` shard of a folder (in the order of their names), read `chunk` examples
/// at a time: memory is bounded by the chunk, not the data. The same cost and gradient as in
/// memory, to rounding. `mode`: `"one-pass"` (one read per evaluation, the sparsity term
/// deferred; exact) or `"two-pass"` (UFLDL's: `rho_hat` first).
#[pyclass(module = "sae._sae", name = "StreamingObjective")]
struct PyStreamingObjective {
    objective: Streamed,
    pool: Option<rayon::ThreadPool>,
    terms: Option<sae::objective::CostTerms>,
    rho_hat: Vec<f64>,
}

fn evaluate_streamed<'py, T: Real + Element, S: ExampleSource<T> + Send>(
    py: Python<'py>,
    objective: &mut StreamingObjective<T, S>,
    pool: Option<&rayon::ThreadPool>,
    theta: &Bound<'py, PyAny>,
) -> PyResult<(f64, Bound<'py, PyAny>, sae::objective::CostTerms, Vec<f64>)> {
    let theta = vector_of::<T>(theta, "theta")?;
    let theta = theta.as_slice().map_err(|_| invalid("theta must be contiguous"))?;
    let mut grad = vec![T::zero(); theta.len()];
    let cost = detached(py, pool, || objective.evaluate(theta, &mut grad)).map_err(py_error)?;
    Ok((cost, grad.into_pyarray(py).into_any(), objective.terms(), objective.rho_hat().to_vec()))
}

macro_rules! with_streamed {
    ($streamed:expr, $objective:ident => $body:expr) => {
        match $streamed {
            Streamed::FileF32($objective) => $body,
            Streamed::FileF64($objective) => $body,
            Streamed::ShardsF32($objective) => $body,
            Streamed::ShardsF64($objective) => $body,
        }
    };
}

#[pymethods]
impl PyStreamingObjective {
    #[new]
    #[pyo3(signature = (path, hyper, dtype = "float64", chunk = 16384, mode = "one-pass", n_threads = None))]
    fn new(
        path: PathBuf,
        hyper: &PyHyper,
        dtype: &str,
        chunk: usize,
        mode: &str,
        n_threads: Option<usize>,
    ) -> PyResult<Self> {
        let mode = StreamMode::ALL
            .into_iter()
            .find(|m| m.name() == mode)
            .ok_or_else(|| invalid(format!("mode = {mode:?} is not 'one-pass' or 'two-pass'")))?;
        let hyper = hyper.0;
        let shards = path.is_dir();
        let objective = match (dtype, shards) {
            ("float32", false) => NpyFileSource::open(&path)
                .and_then(|source| StreamingObjective::new(hyper, source, chunk, mode))
                .map(Streamed::FileF32),
            ("float64", false) => NpyFileSource::open(&path)
                .and_then(|source| StreamingObjective::new(hyper, source, chunk, mode))
                .map(Streamed::FileF64),
            ("float32", true) => ShardSource::from_dir(&path)
                .and_then(|source| StreamingObjective::new(hyper, source, chunk, mode))
                .map(Streamed::ShardsF32),
            ("float64", true) => ShardSource::from_dir(&path)
                .and_then(|source| StreamingObjective::new(hyper, source, chunk, mode))
                .map(Streamed::ShardsF64),
            (other, _) => return Err(invalid(format!("dtype = {other:?} is not 'float32' or 'float64'"))),
        }
        .map_err(py_error)?;
        Ok(PyStreamingObjective { objective, pool: thread_pool(n_threads)?, terms: None, rho_hat: Vec::new() })
    }

    /// `(J(theta), ∇J(theta))`, as [`PyObjective::__call__`], reading the data once (one-pass)
    /// or twice.
    fn __call__<'py>(&mut self, py: Python<'py>, theta: &Bound<'py, PyAny>) -> PyResult<(f64, Bound<'py, PyAny>)> {
        let pool = self.pool.as_ref();
        let (cost, grad, terms, rho_hat) =
            with_streamed!(&mut self.objective, objective => evaluate_streamed(py, objective, pool, theta))?;
        self.terms = Some(terms);
        self.rho_hat = rho_hat;
        Ok((cost, grad))
    }

    /// `m`: the examples the last evaluation read (0 before the first).
    #[getter]
    fn examples(&self) -> usize {
        with_streamed!(&self.objective, objective => objective.examples())
    }

    #[getter]
    fn hyper(&self) -> PyHyper {
        PyHyper(with_streamed!(&self.objective, objective => *objective.hyper()))
    }

    #[getter]
    fn chunk(&self) -> usize {
        with_streamed!(&self.objective, objective => objective.chunk())
    }

    #[getter]
    fn terms<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.terms.map(|terms| terms_dict(py, terms)).transpose()
    }

    #[getter]
    fn rho_hat<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.rho_hat.clone().into_pyarray(py)
    }
}

/// The terms of a cost by name.
fn terms_dict(py: Python<'_>, terms: sae::objective::CostTerms) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("reconstruction", terms.reconstruction)?;
    dict.set_item("weight_decay", terms.weight_decay)?;
    dict.set_item("sparsity", terms.sparsity)?;
    dict.set_item("contractive", terms.contractive)?;
    Ok(dict)
}

/// A kind of model file: how a model of each precision is read and written.
trait ModelKind {
    type Of<T: Real>: Send + Sync;
    fn load<T: Real>(path: &std::path::Path) -> Result<Self::Of<T>, Error>;
    fn save<T: Real>(model: &Self::Of<T>, path: &std::path::Path) -> Result<(), Error>;
}

/// The sparse autoencoder and its family (`ModelFile`).
struct Autoencoder;
/// The variational autoencoder.
struct Vae;
/// The stacked autoencoder with its softmax.
struct Stack;

impl ModelKind for Autoencoder {
    type Of<T: Real> = ModelFile<T>;
    fn load<T: Real>(path: &std::path::Path) -> Result<ModelFile<T>, Error> {
        ModelFile::load(path)
    }
    fn save<T: Real>(model: &ModelFile<T>, path: &std::path::Path) -> Result<(), Error> {
        model.save(path)
    }
}

impl ModelKind for Vae {
    type Of<T: Real> = VaeModel<T>;
    fn load<T: Real>(path: &std::path::Path) -> Result<VaeModel<T>, Error> {
        VaeModel::load(path)
    }
    fn save<T: Real>(model: &VaeModel<T>, path: &std::path::Path) -> Result<(), Error> {
        model.save(path)
    }
}

impl ModelKind for Stack {
    type Of<T: Real> = StackModel<T>;
    fn load<T: Real>(path: &std::path::Path) -> Result<StackModel<T>, Error> {
        StackModel::load(path)
    }
    fn save<T: Real>(model: &StackModel<T>, path: &std::path::Path) -> Result<(), Error> {
        model.save(path)
    }
}

/// A model of kind `K` in the precision it was trained or stored in.
enum Stored<K: ModelKind> {
    F32(K::Of<f32>),
    F64(K::Of<f64>),
}

/// `$body` with `$model` bound to the model of either precision.
macro_rules! by_dtype {
    ($stored:expr, $model:ident => $body:expr) => {
        match $stored {
            Stored::F32($model) => $body,
            Stored::F64($model) => $body,
        }
    };
}

impl<K: ModelKind> Stored<K> {
    /// The file at `path`, in the precision it records.
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        py.detach(|| {
            Ok(if stored_as_f32(&path)? { Stored::F32(K::load(&path)?) } else { Stored::F64(K::load(&path)?) })
        })
        .map_err(py_error)
    }

    /// Writes the model file atomically.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| by_dtype!(self, model => K::save(model, &path))).map_err(py_error)
    }

    fn dtype(&self) -> &'static str {
        match self {
            Stored::F32(_) => Dtype::F32.name(),
            Stored::F64(_) => Dtype::F64.name(),
        }
    }
}

/// A trained sparse autoencoder: its hyper-parameters, weights and metadata.
#[pyclass(module = "sae._sae", name = "Model", frozen)]
struct PyModel(Stored<Autoencoder>);

/// `values` (`rows×cols` row-major) as a 2-D array, without a copy.
fn matrix<'py, T: Element>(py: Python<'py>, values: Vec<T>, rows: usize, cols: usize) -> PyResult<Bound<'py, PyAny>> {
    Ok(values.into_pyarray(py).reshape([rows, cols])?.into_any())
}

/// A matrix view as a row-major 2-D array (a copy).
fn matrix_of<'py, T: Real + Element>(py: Python<'py>, m: sae::gemm::MatRef<'_, T>) -> PyResult<Bound<'py, PyAny>> {
    let (rows, cols) = (m.rows(), m.cols());
    let values: Vec<T> = (0..rows * cols).map(|k| m.get(k / cols, k % cols)).collect();
    matrix(py, values, rows, cols)
}

/// The encoder (`decode = false`) or the whole autoencoder applied to `X`.
fn apply<'py, T: Real + Element>(
    py: Python<'py>,
    model: &ModelFile<T>,
    x: &Bound<'py, PyAny>,
    n_threads: Option<usize>,
    decode: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let x = contiguous::<T>(x, Contiguity::Either)?;
    check_width(&x, "X", model.hyper.visible(), "n_visible")?;
    let x: PyReadonlyArray2<T> = x.extract()?;
    let data = dataset(&x)?;
    let (m, n, h) = (data.examples(), model.hyper.visible(), model.hyper.hidden());
    let pool = thread_pool(n_threads)?;
    let (hidden, output) = detached(py, pool.as_ref(), || -> Result<_, Error> {
        let forward = model.forward();
        let mut hidden = vec![T::zero(); m * h];
        forward.encode(&data, &mut hidden)?;
        let output = if decode {
            let mut output = vec![T::zero(); m * n];
            forward.decode(&hidden, &mut output)?;
            Some(output)
        } else {
            None
        };
        Ok((hidden, output))
    })
    .map_err(py_error)?;
    match output {
        Some(output) => matrix(py, output, m, n),
        None => matrix(py, hidden, m, h),
    }
}

/// The decoder applied to `hidden` (`m×h`, C order).
fn decode<'py, T: Real + Element>(
    py: Python<'py>,
    model: &ModelFile<T>,
    hidden: &Bound<'py, PyAny>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let hidden = contiguous::<T>(hidden, Contiguity::Rows)?;
    check_width(&hidden, "H", model.hyper.hidden(), "n_hidden")?;
    let hidden: PyReadonlyArray2<T> = hidden.extract()?;
    let (m, n) = (hidden.shape()[0], model.hyper.visible());
    let values = hidden.as_slice().map_err(|_| invalid("H must be C-contiguous"))?;
    let pool = thread_pool(n_threads)?;
    let output = detached(py, pool.as_ref(), || {
        let mut output = vec![T::zero(); m * n];
        model.forward().decode(values, &mut output).map(|()| output)
    })
    .map_err(py_error)?;
    matrix(py, output, m, n)
}

#[pymethods]
impl PyModel {
    /// A model of `hyper` with parameters `theta` (UFLDL layout; its dtype is the model's).
    #[staticmethod]
    fn from_theta(hyper: &PyHyper, theta: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (n, h) = (hyper.0.visible(), hyper.0.hidden());
        let stored = match Dtype::of(theta, "theta")? {
            Dtype::F32 => {
                let theta: PyReadonlyArray1<f32> = theta.extract()?;
                let parameters = Parameters::from_theta(n, h, theta.as_array().to_vec()).map_err(py_error)?;
                Stored::F32(ModelFile::new(hyper.0, parameters))
            }
            Dtype::F64 => {
                let theta: PyReadonlyArray1<f64> = theta.extract()?;
                let parameters = Parameters::from_theta(n, h, theta.as_array().to_vec()).map_err(py_error)?;
                Stored::F64(ModelFile::new(hyper.0, parameters))
            }
        };
        Ok(PyModel(stored))
    }

    /// Reads a model file (`.safetensors`, as `sae train` and `save` write it), in the
    /// precision it was saved in.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Stored::load(py, path).map(PyModel)
    }

    /// Writes the model file atomically (a file already at `path` is replaced whole or not
    /// at all).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.0.save(py, path)
    }

    /// Writes the model in SAELens's layout into the folder `path` (made if missing):
    /// `sae_weights.safetensors` (`W_enc` `n×h`, `b_enc`, `W_dec` `h×n`, `b_dec`) and
    /// `cfg.json`, the "standard" architecture, for a model with ReLU hidden units and linear
    /// outputs (others raise, saying why).
    fn export_saelens(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        match &self.0 {
            Stored::F32(model) => py.detach(|| sae::model::saelens::export(model, &path)),
            Stored::F64(model) => py.detach(|| sae::model::saelens::export(model, &path)),
        }
        .map_err(py_error)
    }

    /// Reads a SAELens folder of a "standard" (ReLU) SAE, in its dtype (`cfg.json`'s).
    #[staticmethod]
    fn import_saelens(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        py.detach(|| {
            Ok(if sae::model::saelens::is_float32(&path) {
                Stored::F32(sae::model::saelens::import::<f32>(&path)?)
            } else {
                Stored::F64(sae::model::saelens::import::<f64>(&path)?)
            })
        })
        .map(PyModel)
        .map_err(py_error)
    }

    #[getter]
    fn hyper(&self) -> PyHyper {
        PyHyper(by_dtype!(&self.0, model => model.hyper))
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.0.dtype()
    }

    /// `theta` in the UFLDL layout `[W1(:); W2(:); b1; b2]` (a copy).
    #[getter]
    fn theta<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        by_dtype!(&self.0, model => model.parameters.theta().to_vec().into_pyarray(py).into_any())
    }

    /// `W1`, `h×n`: row `j` is hidden unit `j`'s weights (a copy).
    #[getter(W1)]
    fn w1<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => matrix_of(py, model.parameters.w1()))
    }

    /// `W2`, `n×h` (a copy).
    #[getter(W2)]
    fn w2<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => matrix_of(py, model.parameters.w2()))
    }

    #[getter]
    fn b1<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        by_dtype!(&self.0, model => model.parameters.b1().to_vec().into_pyarray(py).into_any())
    }

    #[getter]
    fn b2<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        by_dtype!(&self.0, model => model.parameters.b2().to_vec().into_pyarray(py).into_any())
    }

    /// The file's free-form metadata (how the model was trained), by key.
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (key, value) in by_dtype!(&self.0, model => &model.metadata) {
            dict.set_item(key, value)?;
        }
        Ok(dict)
    }

    /// The hidden layer's activations `a2 = f(W1 x + b1)` of every row of `X`: `m×h`.
    #[pyo3(signature = (x, n_threads = None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        n_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => apply(py, model, x, n_threads, false))
    }

    /// The decoder `a3 = g(W2 a2 + b2)` applied to hidden activations `H` (`m×h`, of the
    /// model's dtype, C order): `m×n`.
    #[pyo3(signature = (hidden, n_threads = None))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        hidden: &Bound<'py, PyAny>,
        n_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => decode(py, model, hidden, n_threads))
    }

    /// The reconstruction `a3 = g(W2 a2 + b2)` of every row of `X`: `m×n`.
    #[pyo3(signature = (x, n_threads = None))]
    fn reconstruct<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        n_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => apply(py, model, x, n_threads, true))
    }
}

/// The kind of model a file holds, by its `objective`: `"autoencoder"`, `"vae"`, `"stack"` or
/// `"topk"`.
#[pyfunction]
fn model_kind(py: Python<'_>, path: PathBuf) -> PyResult<&'static str> {
    let metadata = py.detach(|| ModelFile::<f64>::read_metadata(&path)).map_err(py_error)?;
    Ok(match metadata.get("objective").map(String::as_str) {
        Some(VAE_OBJECTIVE) => "vae",
        Some(STACK_OBJECTIVE) => "stack",
        Some(sae::dictionary::OBJECTIVE) => "topk",
        _ => "autoencoder",
    })
}

/// Whether the file at `path` records float32 values.
fn stored_as_f32(path: &std::path::Path) -> Result<bool, Error> {
    Ok(ModelFile::<f64>::read_metadata(path)?.get("dtype").map(String::as_str) == Some("f32"))
}

/// A trained variational autoencoder (`n → h → 2d`, `d → h → n`).
#[pyclass(module = "sae._sae", name = "VaeModel", frozen)]
struct PyVaeModel(Stored<Vae>);

/// What a VAE computes from rows of `n` (or `d`) values, as `m` rows of its output.
#[derive(Clone, Copy)]
enum VaeMap {
    /// The latent mean `μ(x)`.
    Encode,
    /// The decoder's mean `E[x|z]`.
    Decode,
}

fn vae_apply<'py, T: Real + Element>(
    py: Python<'py>,
    model: &VaeModel<T>,
    input: &Bound<'py, PyAny>,
    map: VaeMap,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = model.shape;
    let (what, width, name, out) = match map {
        VaeMap::Encode => ("X", shape.visible, "n_visible", shape.latent),
        VaeMap::Decode => ("Z", shape.latent, "n_latent", shape.visible),
    };
    let input = contiguous::<T>(input, Contiguity::Rows)?;
    check_width(&input, what, width, name)?;
    let input: PyReadonlyArray2<T> = input.extract()?;
    let rows = input.shape()[0];
    let values = input.as_slice().map_err(|_| invalid(format!("{what} must be C-contiguous")))?;
    let output = py
        .detach(|| {
            let objective = VaeObjective::<T>::new(shape, 1, 0)?;
            match map {
                VaeMap::Encode => objective.encode(&model.theta, values),
                VaeMap::Decode => objective.decode(&model.theta, values),
            }
        })
        .map_err(py_error)?;
    matrix(py, output, rows, out)
}

#[pymethods]
impl PyVaeModel {
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Stored::load(py, path).map(PyVaeModel)
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.0.save(py, path)
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.0.dtype()
    }

    /// `n_visible`, `n_hidden`, `n_latent`, `activation`, `decoder`.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let shape = by_dtype!(&self.0, model => model.shape);
        let dict = PyDict::new(py);
        dict.set_item("n_visible", shape.visible)?;
        dict.set_item("n_hidden", shape.hidden)?;
        dict.set_item("n_latent", shape.latent)?;
        dict.set_item("activation", shape.activation.name())?;
        dict.set_item("decoder", shape.decoder.name())?;
        Ok(dict)
    }

    #[getter]
    fn theta<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        by_dtype!(&self.0, model => model.theta.clone().into_pyarray(py).into_any())
    }

    /// The encoder's first weights (`h×n`): what each encoder unit looks for.
    #[getter]
    fn encoder_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => matrix_of(py, model.encoder_weights()))
    }

    /// The latent mean `μ(x)` of each row of `X`: `m×d`.
    fn encode<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => vae_apply(py, model, x, VaeMap::Encode))
    }

    /// The decoder's mean `E[x|z]` of each row of `Z` (`m×d`): `m×n`.
    fn decode<'py>(&self, py: Python<'py>, z: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => vae_apply(py, model, z, VaeMap::Decode))
    }

    /// `count` samples of the model, the decoder's means at `z ~ N(0, I)`, sample `i` drawn
    /// from a generator of `(seed, i)`: `count×n`.
    #[pyo3(signature = (count, seed = 0))]
    fn sample<'py>(&self, py: Python<'py>, count: usize, seed: u64) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => {
            let shape = model.shape;
            let output = py
                .detach(|| VaeObjective::new(shape, 1, 0)?.sample(&model.theta, 0..count, seed))
                .map_err(py_error)?;
            matrix(py, output, count, shape.visible)
        })
    }
}

/// Trains a variational autoencoder on `X` (`m×n`) from `theta0` (the model's layout; see
/// `vae_initial_theta`) by Adam, `epochs` epochs of minibatches of `batch_size`, examples
/// shuffled and `ε` drawn by `random_state`. `callback(info)` after each epoch (`epoch`,
/// `cost` = the mean −ELBO per example, `reconstruction`, `kl`, `time`); `False` stops.
/// Returns `(model, summary, error)` as `train` does.
#[pyfunction]
#[pyo3(signature = (
    x, n_hidden, n_latent, theta0, *, activation = "tanh", decoder = "bernoulli", epochs = 10,
    batch_size = 128, learning_rate = 1e-3, random_state = 0, callback = None, n_threads = None,
))]
#[allow(clippy::too_many_arguments)]
fn train_vae<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    n_hidden: usize,
    n_latent: usize,
    theta0: &Bound<'py, PyAny>,
    activation: &str,
    decoder: &str,
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    random_state: u64,
    callback: Option<Py<PyAny>>,
    n_threads: Option<usize>,
) -> PyResult<(PyVaeModel, Bound<'py, PyDict>, Option<PyErr>)> {
    let dtype = Dtype::of(x, "X")?;
    if Dtype::of(theta0, "theta0")? != dtype {
        return Err(PyTypeError::new_err(format!("theta0 must have X's dtype, {}", dtype.name())));
    }
    let activation = Activation::from_name(activation).ok_or_else(|| {
        invalid(format!("activation = {activation:?} is not one of {}", quoted(Activation::ALL.map(Activation::name))))
    })?;
    let decoder = VaeDecoder::from_name(decoder)
        .ok_or_else(|| invalid(format!("decoder = {decoder:?} is not 'bernoulli' or 'gaussian'")))?;
    let n = x.cast::<PyUntypedArray>()?.shape().get(1).copied().unwrap_or(0);
    let shape = VaeShape::new(n, n_hidden, n_latent, activation, decoder).map_err(py_error)?;
    let options = VaeOptions { rule: StepRule::adam(learning_rate), batch_size, epochs, seed: random_state };
    let trainer = VaeTrainer::new(shape, options).map_err(py_error)?;
    let pool = thread_pool(n_threads)?;
    let stop = Arc::new(AtomicBool::new(false));
    let trainer = trainer.stop_when(stop.clone());
    let mut run = Run { callback: callback.as_ref(), error: None, started: Instant::now() };
    let mut curve = Vec::new();
    let (model, signal) = match dtype {
        Dtype::F32 => {
            let (model, signal) = fit_vae::<f32>(py, &trainer, x, theta0, pool.as_ref(), &stop, &mut run, &mut curve)?;
            (Stored::F32(model), signal)
        }
        Dtype::F64 => {
            let (model, signal) = fit_vae::<f64>(py, &trainer, x, theta0, pool.as_ref(), &stop, &mut run, &mut curve)?;
            (Stored::F64(model), signal)
        }
    };
    let summary = PyDict::new(py);
    summary.set_item("n_iter", curve.len())?;
    summary.set_item("curve", curve)?;
    Ok((PyVaeModel(model), summary, run.error.or(signal)))
}

#[allow(clippy::too_many_arguments)]
fn fit_vae<'py, T: Real + Element>(
    py: Python<'py>,
    trainer: &VaeTrainer,
    x: &Bound<'py, PyAny>,
    theta0: &Bound<'py, PyAny>,
    pool: Option<&rayon::ThreadPool>,
    stop: &AtomicBool,
    run: &mut Run<'_>,
    curve: &mut Vec<(usize, f64)>,
) -> PyResult<(VaeModel<T>, Option<PyErr>)> {
    let x: PyReadonlyArray2<T> = x.extract()?;
    let data = dataset(&x)?;
    let init = vector_of::<T>(theta0, "theta0")?.as_array().to_vec();
    let (model, signal) = supervised(py, pool, stop, || {
        trainer.fit(&data, &init, |epoch| {
            let cost = epoch.cost;
            curve.push((epoch.epoch, cost.total()));
            run.step(&[
                ("epoch", epoch.epoch as f64),
                ("cost", cost.total()),
                ("reconstruction", cost.reconstruction),
                ("kl", cost.kl),
            ])
        })
    })?;
    Ok((model.map_err(py_error)?, signal))
}

/// The VAE's initial `theta` of the seed (its own layout and scheme).
#[pyfunction]
#[pyo3(signature = (n_visible, n_hidden, n_latent, seed = 0, dtype = "float64"))]
fn vae_initial_theta<'py>(
    py: Python<'py>,
    n_visible: usize,
    n_hidden: usize,
    n_latent: usize,
    seed: u64,
    dtype: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let shape =
        VaeShape::new(n_visible, n_hidden, n_latent, Activation::Tanh, VaeDecoder::Bernoulli).map_err(py_error)?;
    match dtype {
        "float32" => Ok(shape.init::<f32>(seed).into_pyarray(py).into_any()),
        "float64" => Ok(shape.init::<f64>(seed).into_pyarray(py).into_any()),
        other => Err(invalid(format!("dtype = {other:?} is not 'float32' or 'float64'"))),
    }
}

/// A trained stacked autoencoder (`n → h_1 → … → h_L`) with its softmax layer (as `sae
/// exercise stacked` writes it).
#[pyclass(module = "sae._sae", name = "StackModel", frozen)]
struct PyStackModel(Stored<Stack>);

/// What a stack gives for each example.
#[derive(Clone, Copy)]
enum StackOutput {
    /// The top layer's activations `a_L`: `m×h_L`.
    Features,
    /// The most probable class: `m` uint8.
    Classes,
    /// `p(y = j | x)`: `m×k`.
    Probabilities,
    /// `log p(y = j | x)`: `m×k`.
    LogProbabilities,
}

/// The stack's `output` for each row of `X`.
fn stack_apply<'py, T: Real + Element>(
    py: Python<'py>,
    model: &StackModel<T>,
    x: &Bound<'py, PyAny>,
    output: StackOutput,
) -> PyResult<Bound<'py, PyAny>> {
    let x = contiguous::<T>(x, Contiguity::Either)?;
    check_width(&x, "X", model.shape.sizes[0], "n_visible")?;
    let x: PyReadonlyArray2<T> = x.extract()?;
    let data = dataset(&x)?;
    let (shape, theta, m) = (&model.shape, &model.theta, data.examples());
    match output {
        StackOutput::Classes => {
            let classes = py.detach(|| StackedObjective::predict(shape, theta, &data));
            Ok(classes.into_pyarray(py).into_any())
        }
        StackOutput::Probabilities => {
            let probabilities = py.detach(|| StackedObjective::probabilities(shape, theta, &data));
            matrix(py, probabilities, m, shape.classes)
        }
        StackOutput::LogProbabilities => {
            let logs = py.detach(|| StackedObjective::log_probabilities(shape, theta, &data));
            matrix(py, logs, m, shape.classes)
        }
        StackOutput::Features => {
            let features = py.detach(|| StackedObjective::features(shape, theta, &data));
            matrix(py, features, m, *shape.sizes.last().expect("a stack has layers"))
        }
    }
}

/// A stack of `sizes` and `n_classes` from its parameters, as a stack model of `T`.
fn stack_from_theta<T: Real + Element>(shape: StackShape, theta: &Bound<'_, PyAny>) -> PyResult<StackModel<T>> {
    let theta = vector_of::<T>(theta, "theta")?.as_array().to_vec();
    if theta.len() != shape.len() {
        return Err(invalid(format!(
            "theta has {} values; a stack of sizes {:?} and {} classes has {}",
            theta.len(),
            shape.sizes,
            shape.classes,
            shape.len()
        )));
    }
    Ok(StackModel { shape, theta, metadata: Vec::new() })
}

#[pymethods]
impl PyStackModel {
    /// A stack of layer sizes `[n, h_1, …, h_L]` with a softmax of `n_classes` over the top
    /// layer, from its parameters: the softmax weights (`n_classes×h_L`, column-major), then
    /// each layer's `W_l` (`h_l×h_{l−1}`, column-major) and `b_l`.
    #[staticmethod]
    fn from_theta(sizes: Vec<usize>, n_classes: usize, theta: &Bound<'_, PyAny>) -> PyResult<Self> {
        let shape = stack_shape(sizes, n_classes)?;
        Ok(PyStackModel(match Dtype::of(theta, "theta")? {
            Dtype::F32 => Stored::F32(stack_from_theta(shape, theta)?),
            Dtype::F64 => Stored::F64(stack_from_theta(shape, theta)?),
        }))
    }

    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Stored::load(py, path).map(PyStackModel)
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.0.save(py, path)
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.0.dtype()
    }

    /// The layer sizes `[n, h_1, …, h_L]`.
    #[getter]
    fn sizes(&self) -> Vec<usize> {
        by_dtype!(&self.0, model => model.shape.sizes.clone())
    }

    #[getter]
    fn n_classes(&self) -> usize {
        by_dtype!(&self.0, model => model.shape.classes)
    }

    #[getter]
    fn theta<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        by_dtype!(&self.0, model => model.theta.clone().into_pyarray(py).into_any())
    }

    /// The first layer's weights (`h_1×n`).
    #[getter]
    fn first_layer_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => matrix_of(py, model.first_layer_weights()))
    }

    /// The top layer's features of each row of `X`: `m×h_L`.
    fn features<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => stack_apply(py, model, x, StackOutput::Features))
    }

    /// The most probable class of each row of `X` (uint8).
    fn predict<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => stack_apply(py, model, x, StackOutput::Classes))
    }

    /// `p(y = j | x)` for each row of `X`: `m×n_classes` in the model's dtype, each row summing
    /// to 1 to its rounding.
    fn predict_proba<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => stack_apply(py, model, x, StackOutput::Probabilities))
    }

    /// `log p(y = j | x)` for each row of `X`: `m×n_classes`, finite where a probability
    /// rounds to 0.
    fn predict_log_proba<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        by_dtype!(&self.0, model => stack_apply(py, model, x, StackOutput::LogProbabilities))
    }

    /// The stack of pretrained autoencoders `layers` (their encoders; each layer's input the
    /// one below's output) with softmax weights `softmax` (`n_classes×h_L`, column-major, the
    /// layers' dtype) on top: the starting point of fine-tuning.
    #[staticmethod]
    fn from_pretrained(
        n_classes: usize,
        softmax: &Bound<'_, PyAny>,
        layers: Vec<PyRef<'_, PyModel>>,
    ) -> PyResult<Self> {
        fn typed<T: Real + Element>(
            n_classes: usize,
            softmax: &Bound<'_, PyAny>,
            layers: Vec<&Parameters<T>>,
        ) -> PyResult<StackModel<T>> {
            let softmax = vector_of::<T>(softmax, "softmax")?;
            StackModel::from_pretrained(n_classes, &softmax.as_array().to_vec(), &layers).map_err(py_error)
        }
        check_classes(n_classes)?;
        let mixed = || PyTypeError::new_err("the layers and softmax must have one dtype");
        Ok(PyStackModel(match Dtype::of(softmax, "softmax")? {
            Dtype::F32 => {
                let layers = layers.iter().map(|l| match &l.0 {
                    Stored::F32(model) => Ok(&model.parameters),
                    Stored::F64(_) => Err(mixed()),
                });
                Stored::F32(typed(n_classes, softmax, layers.collect::<PyResult<_>>()?)?)
            }
            Dtype::F64 => {
                let layers = layers.iter().map(|l| match &l.0 {
                    Stored::F64(model) => Ok(&model.parameters),
                    Stored::F32(_) => Err(mixed()),
                });
                Stored::F64(typed(n_classes, softmax, layers.collect::<PyResult<_>>()?)?)
            }
        }))
    }
}

/// What the training callback is given and how the run reports its end.
struct Run<'a> {
    callback: Option<&'a Py<PyAny>>,
    /// The first error the callback raised: the run stops at that step, and it is raised once
    /// the model so far is kept.
    error: Option<PyErr>,
    started: Instant,
}

/// Runs a training `work` (which stops between steps once `stop` is set) on a thread of its
/// own, on `pool` when there is one, while the calling thread waits with the interpreter
/// detached and lets Python handle signals every 20 ms: only the main thread can, and the
/// work may run anywhere. Ctrl-C sets `stop` and is returned, to be raised once the model so
/// far is kept.
fn supervised<R: Send>(
    py: Python<'_>,
    pool: Option<&rayon::ThreadPool>,
    stop: &AtomicBool,
    work: impl FnOnce() -> R + Send,
) -> PyResult<(R, Option<PyErr>)> {
    py.detach(|| {
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| match pool {
                Some(pool) => pool.install(work),
                None => work(),
            });
            let mut signal = None;
            while !worker.is_finished() {
                std::thread::sleep(Duration::from_millis(20));
                if signal.is_none() {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        stop.store(true, Ordering::Relaxed);
                        signal = Some(e);
                    }
                }
            }
            let result = worker.join().map_err(|_| PyRuntimeError::new_err("the training thread panicked"))?;
            Ok((result, signal))
        })
    })
}

impl Run<'_> {
    /// Calls the callback with `fields` (and the elapsed time): `Break` when it raises or
    /// returns a false value other than `None` (`False`, `np.False_`, `0`).
    fn step(&mut self, fields: &[(&str, f64)]) -> ControlFlow<()> {
        let Some(callback) = self.callback else { return ControlFlow::Continue(()) };
        Python::attach(|py| {
            let outcome = (|| {
                let info = PyDict::new(py);
                for &(key, value) in fields {
                    info.set_item(key, value)?;
                }
                info.set_item("time", self.started.elapsed().as_secs_f64())?;
                let result = callback.call1(py, (info,))?;
                let result = result.bind(py);
                Ok::<bool, PyErr>(result.is_none() || result.is_truthy()?)
            })();
            match outcome {
                Ok(true) => ControlFlow::Continue(()),
                Ok(false) => ControlFlow::Break(()),
                Err(e) => {
                    self.error.get_or_insert(e);
                    ControlFlow::Break(())
                }
            }
        })
    }
}

/// Where an Adam or SGD run ended (parameters, the step rule's moments, the running
/// `rho_hat`, the epoch), to continue it: what `partial_fit` carries from call to call.
#[pyclass(module = "sae._sae", name = "TrainingState", frozen)]
struct PyTrainingState(MinibatchState);

#[pymethods]
impl PyTrainingState {
    /// Epochs completed.
    #[getter]
    fn epoch(&self) -> usize {
        self.0.epoch
    }
}

/// The optimiser of a training run and its settings (see `train`).
struct Solver<'a> {
    name: &'a str,
    max_iter: usize,
    batch_size: usize,
    learning_rate: f64,
    momentum: f64,
    /// The learning rate's schedule over the run (minibatch solvers).
    schedule: Schedule,
    seed: u64,
}

/// A trained model, the run's summary, the exception that ended it early, and (minibatch
/// solvers) where it ended.
type Outcome<'py, M, S = MinibatchState> = (M, Bound<'py, PyDict>, Option<PyErr>, Option<S>);

/// Trains a model on `x` from `theta0`, or (minibatch solvers) from `state`; see `train`.
#[allow(clippy::too_many_arguments)]
fn train_in<'py, T: Real + Element>(
    py: Python<'py>,
    hyper: HyperParams,
    x: &Bound<'py, PyAny>,
    theta0: &Bound<'py, PyAny>,
    solver: &Solver<'_>,
    state: Option<&MinibatchState>,
    callback: Option<&Py<PyAny>>,
    pool: Option<&rayon::ThreadPool>,
) -> PyResult<Outcome<'py, ModelFile<T>>> {
    let Solver { name: solver, max_iter, batch_size, learning_rate, momentum, schedule, seed } = *solver;
    let x: PyReadonlyArray2<T> = x.extract()?;
    let data = dataset(&x)?;
    let theta0 = vector_of::<T>(theta0, "theta0")?.as_array().to_vec();
    let init = Parameters::from_theta(hyper.visible(), hyper.hidden(), theta0).map_err(py_error)?;
    let mut run = Run { callback, error: None, started: Instant::now() };
    let stop_flag = Arc::new(AtomicBool::new(false));
    let summary = PyDict::new(py);
    let (model, stop, iterations, curve, state, signal) = match solver {
        "lbfgs" => {
            let trainer = Trainer::new(lbfgs_options(max_iter)).stop_when(stop_flag.clone());
            let (trained, signal) = supervised(py, pool, &stop_flag, || {
                let mut objective = Objective::new(hyper, data)?;
                trainer.fit(&mut objective, &init, |step| {
                    let i = &step.lbfgs;
                    run.step(&[("iteration", i.iteration as f64), ("cost", i.f), ("gradient_norm", i.gradient_norm)])
                })
            })?;
            let trained = trained.map_err(|e| data_error(e, data.layout()))?;
            (trained.model, trained.stop.name(), trained.iterations, trained.curve, None, signal)
        }
        "adam" | "sgd" => {
            let rule =
                if solver == "adam" { StepRule::adam(learning_rate) } else { StepRule::sgd(learning_rate, momentum) };
            // Continuing a state: `max_iter` epochs more.
            let epochs = state.map_or(0, |s| s.epoch) + max_iter;
            let options = MinibatchOptions { rule, batch_size, epochs, seed, schedule, ..MinibatchOptions::default() };
            let trainer = MinibatchTrainer::new(hyper, options).map_err(py_error)?.stop_when(stop_flag.clone());
            let on_step = |step: &MinibatchStep| {
                if !step.epoch_end {
                    return ControlFlow::Continue(());
                }
                run.step(&[("epoch", step.epoch as f64), ("step", step.step as f64), ("cost", step.cost)])
            };
            let (trained, signal) = supervised(py, pool, &stop_flag, || match state {
                Some(state) => trainer.resume_from(&data, Checkpoint::from(state.clone()), None, on_step),
                None => trainer.fit(&data, &init, on_step),
            })?;
            let trained = trained.map_err(|e| data_error(e, data.layout()))?;
            let epochs = trained.epochs - state.map_or(0, |s| s.epoch);
            summary.set_item("lr_schedule", schedule.describe())?;
            (trained.model, trained.stop.name(), epochs, trained.curve, Some(trained.state), signal)
        }
        other => {
            return Err(invalid(format!("solver = {other:?} is not one of 'lbfgs', 'adam', 'sgd'")));
        }
    };
    summary.set_item("stop", stop)?;
    summary.set_item("n_iter", iterations)?;
    summary.set_item("curve", curve)?;
    Ok((model, summary, run.error.or(signal), state))
}

/// Trains a sparse autoencoder on `X` (`m×n`, float32 or float64: the model's precision)
/// from `theta0` (same dtype). `solver`: `"lbfgs"` (full batch, at most `max_iter`
/// iterations) or `"adam"` / `"sgd"` (minibatches of `batch_size`, `max_iter` epochs,
/// shuffled by `random_state`). `callback(info)` is called after each iteration (L-BFGS) or
/// epoch with a dict (`cost`, `gradient_norm` or `epoch`, `time`…) and may return `False` to
/// stop there. Returns `(model, summary, error)`: the model so far, `{"stop", "n_iter",
/// "curve"}`, and the exception that ended the run early (the callback's, or
/// `KeyboardInterrupt`), which the caller raises once it has kept the model.
///
/// The minibatch solvers' learning rate rises linearly over the first `lr_warmup` steps and,
/// with `lr_decay = "linear"` or `"cosine"`, falls towards 0 at the run's end from the fraction
/// `lr_decay_start` of its steps on; a schedule spans one run, so it does not continue a
/// `state`.
///
/// `X` may instead be the path of a `.npy` file or of a folder of `.npy` shards, streamed
/// (the model's precision is then `theta0`'s): L-BFGS reads it `chunk` examples at a time per
/// evaluation, Adam and SGD shuffle blocks of `shuffle_block` examples read `shuffle_window`
/// at a time. With `comm` (an mpi4py communicator) the data set is split across its
/// processes: `X` is this process's rows, or with a path each process reads its share.
#[pyfunction]
#[pyo3(signature = (
    x, hyper, theta0, *, solver = "lbfgs", max_iter = 400, batch_size = 256,
    learning_rate = 1e-3, momentum = 0.9, random_state = 0, callback = None, n_threads = None,
    state = None, comm = None, chunk = 16384, shuffle_block = 256, shuffle_window = 64,
    lr_warmup = 0, lr_decay = "none", lr_decay_start = 0.8,
))]
#[allow(clippy::too_many_arguments)]
fn train<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    hyper: &PyHyper,
    theta0: &Bound<'py, PyAny>,
    solver: &str,
    max_iter: usize,
    batch_size: usize,
    learning_rate: f64,
    momentum: f64,
    random_state: u64,
    callback: Option<Py<PyAny>>,
    n_threads: Option<usize>,
    state: Option<PyRef<'py, PyTrainingState>>,
    comm: Option<Bound<'py, PyAny>>,
    chunk: usize,
    shuffle_block: usize,
    shuffle_window: usize,
    lr_warmup: u64,
    lr_decay: &str,
    lr_decay_start: f64,
) -> PyResult<Outcome<'py, PyModel, PyTrainingState>> {
    let schedule = schedule(lr_warmup, lr_decay, lr_decay_start)?;
    if !schedule.is_constant() {
        if solver == "lbfgs" {
            return Err(invalid(
                "lr_warmup and lr_decay schedule the minibatch solvers' rate ('adam', 'sgd'), not 'lbfgs'",
            ));
        }
        if state.is_some() {
            return Err(invalid(
                "lr_warmup and lr_decay: a learning-rate schedule spans one run of max_iter epochs and cannot continue \
                 a training state (partial_fit)",
            ));
        }
    }
    if let Ok(path) = x.extract::<PathBuf>() {
        if state.is_some() {
            return Err(invalid("a run streamed from disk does not continue a training state"));
        }
        let pool = thread_pool(n_threads)?;
        let run = Solver { name: solver, max_iter, batch_size, learning_rate, momentum, schedule, seed: random_state };
        let reading = streamed::Reading { chunk, shuffle_block, shuffle_window };
        let (callback, pool, comm) = (callback.as_ref(), pool.as_ref(), comm.as_ref());
        let (model, summary, error, _) = match Dtype::of(theta0, "theta0")? {
            Dtype::F32 => {
                let (model, summary, error, state) =
                    streamed::train_streamed::<f32>(py, hyper.0, &path, theta0, &run, reading, callback, pool, comm)?;
                (PyModel(Stored::F32(model)), summary, error, state)
            }
            Dtype::F64 => {
                let (model, summary, error, state) =
                    streamed::train_streamed::<f64>(py, hyper.0, &path, theta0, &run, reading, callback, pool, comm)?;
                (PyModel(Stored::F64(model)), summary, error, state)
            }
        };
        return Ok((model, summary, error, None));
    }
    let dtype = Dtype::of(x, "X")?;
    if Dtype::of(theta0, "theta0")? != dtype {
        return Err(PyTypeError::new_err(format!("theta0 must have X's dtype, {}", dtype.name())));
    }
    let pool = thread_pool(n_threads)?;
    let run = Solver { name: solver, max_iter, batch_size, learning_rate, momentum, schedule, seed: random_state };
    let callback = callback.as_ref();
    let state = state.as_ref().map(|s| &s.0);
    let pool = pool.as_ref();
    if comm.is_some() && state.is_some() {
        return Err(invalid("a run across processes (comm) does not continue a training state"));
    }
    let (model, summary, error, state) = match (dtype, &comm) {
        (Dtype::F32, None) => {
            let (model, summary, error, state) = train_in::<f32>(py, hyper.0, x, theta0, &run, state, callback, pool)?;
            (PyModel(Stored::F32(model)), summary, error, state)
        }
        (Dtype::F64, None) => {
            let (model, summary, error, state) = train_in::<f64>(py, hyper.0, x, theta0, &run, state, callback, pool)?;
            (PyModel(Stored::F64(model)), summary, error, state)
        }
        (Dtype::F32, Some(comm)) => {
            let (model, summary, error, state) =
                distributed::train_split::<f32>(py, hyper.0, x, theta0, &run, callback, pool, comm)?;
            (PyModel(Stored::F32(model)), summary, error, state)
        }
        (Dtype::F64, Some(comm)) => {
            let (model, summary, error, state) =
                distributed::train_split::<f64>(py, hyper.0, x, theta0, &run, callback, pool, comm)?;
            (PyModel(Stored::F64(model)), summary, error, state)
        }
    };
    Ok((model, summary, error, state.map(PyTrainingState)))
}

/// minFunc's options with at most `max_iter` iterations, and its 1000 evaluations for 400
/// iterations scaled to as many per iteration beyond.
fn lbfgs_options(max_iter: usize) -> LbfgsOptions {
    let max_evaluations = LbfgsOptions::MINFUNC.max_evaluations.max(max_iter.saturating_mul(5) / 2);
    LbfgsOptions { max_iterations: max_iter, max_evaluations, ..LbfgsOptions::MINFUNC }
}

/// Where an L-BFGS run of a labelled objective ended: the point, the run's summary, the
/// exception that ended it early.
type Minimised<'py, T> = (Vec<T>, Bound<'py, PyDict>, Option<PyErr>);

/// Minimises `objective` by L-BFGS from `theta0` (at most `max_iter` iterations, minFunc's
/// other options), on `pool`, supervised (see [`supervised`]): `callback` sees each
/// iteration and Ctrl-C stops the run, which keeps the point reached.
fn minimise<'py, T: Real, D: Differentiable<T> + Send>(
    py: Python<'py>,
    pool: Option<&rayon::ThreadPool>,
    mut objective: D,
    theta0: &[T],
    max_iter: usize,
    callback: Option<&Py<PyAny>>,
) -> PyResult<Minimised<'py, T>> {
    let mut run = Run { callback, error: None, started: Instant::now() };
    let stop_flag = AtomicBool::new(false);
    if theta0.len() != objective.dimension() {
        return Err(invalid(format!(
            "theta0 has {} values; the objective has {}",
            theta0.len(),
            objective.dimension()
        )));
    }
    let (outcome, signal) = supervised(py, pool, &stop_flag, || {
        let mut lbfgs = Lbfgs::start(lbfgs_options(max_iter), theta0, &mut objective)?;
        let mut curve = vec![(0, lbfgs.state().f)];
        loop {
            let step = lbfgs.iterate(&mut objective)?;
            // A stop found without a new point (the budget spent, the gradient already
            // small, a failed line search) is no iteration.
            if step.iteration > curve.last().expect("the start").0 {
                curve.push((step.iteration, step.f));
                let fields =
                    [("iteration", step.iteration as f64), ("cost", step.f), ("gradient_norm", step.gradient_norm)];
                if run.step(&fields).is_break() {
                    lbfgs.stop_with(Stop::Requested);
                }
            }
            if stop_flag.load(Ordering::Relaxed) {
                lbfgs.stop_with(Stop::Interrupted);
            }
            if let Some(stop) = lbfgs.state().stopped {
                return Ok::<_, Error>((lbfgs.x(), stop, lbfgs.state().iteration, curve));
            }
        }
    })?;
    let (theta, stop, iterations, curve) = outcome.map_err(py_error)?;
    let summary = PyDict::new(py);
    summary.set_item("stop", stop.name())?;
    summary.set_item("n_iter", iterations)?;
    summary.set_item("curve", curve)?;
    Ok((theta, summary, run.error.or(signal)))
}

/// The arrays of a labelled problem: the examples `X` (converted to a contiguous array of `T`
/// if they are not one), their class indices `y` and the starting parameters `theta0`, both
/// taken as they are (a wider integer could wrap, another precision would be a silent copy).
struct Labelled<'py, T: Element> {
    x: PyReadonlyArray2<'py, T>,
    y: PyReadonlyArray1<'py, u8>,
    theta0: PyReadonlyArray1<'py, T>,
}

impl<'py, T: Real + Element> Labelled<'py, T> {
    fn extract(x: &Bound<'py, PyAny>, y: &Bound<'py, PyAny>, theta0: &Bound<'py, PyAny>) -> PyResult<Self> {
        let x = contiguous::<T>(x, Contiguity::Either)?;
        let ndim: usize = x.getattr("ndim")?.extract()?;
        let x: PyReadonlyArray2<T> = x.extract().map_err(|_| invalid(format!("X must be 2-D (m×n), not {ndim}-D")))?;
        let y: PyReadonlyArray1<u8> =
            y.extract().map_err(|_| PyTypeError::new_err("y must be a 1-D uint8 array of class indices"))?;
        if y.len() != x.shape()[0] {
            return Err(invalid(format!("y has {} labels for the {} rows of X", y.len(), x.shape()[0])));
        }
        Ok(Labelled { x, y, theta0: vector_of::<T>(theta0, "theta0")? })
    }

    /// The data set (scanned for NaN and infinities), the labels and the starting point.
    fn parts(&self) -> PyResult<(Dataset<'_, T>, &[u8], &[T])> {
        let labels = self.y.as_slice().map_err(|_| invalid("y must be contiguous"))?;
        let theta0 = self.theta0.as_slice().map_err(|_| invalid("theta0 must be contiguous"))?;
        Ok((dataset(&self.x)?, labels, theta0))
    }
}

/// Trains softmax regression (`n_classes×n` weights `θ`, UFLDL's column-major `θ(:)`) on the
/// rows of `X` and their class indices `y` (below `n_classes`) from `theta0` (`X`'s dtype),
/// weight decay `alpha`, by L-BFGS; `callback` as for `train`. Returns `(theta, summary,
/// error)`.
#[pyfunction]
#[pyo3(signature = (x, y, n_classes, theta0, *, alpha = 1e-4, max_iter = 100, callback = None, n_threads = None))]
#[allow(clippy::too_many_arguments)]
fn train_softmax<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    n_classes: usize,
    theta0: &Bound<'py, PyAny>,
    alpha: f64,
    max_iter: usize,
    callback: Option<Py<PyAny>>,
    n_threads: Option<usize>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>, Option<PyErr>)> {
    fn typed<'py, T: Real + Element>(
        py: Python<'py>,
        (x, y, n_classes, theta0): (&Bound<'py, PyAny>, &Bound<'py, PyAny>, usize, &Bound<'py, PyAny>),
        (alpha, max_iter, callback, pool): (f64, usize, Option<&Py<PyAny>>, Option<&rayon::ThreadPool>),
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>, Option<PyErr>)> {
        let arrays = Labelled::<T>::extract(x, y, theta0)?;
        let (data, labels, theta0) = arrays.parts()?;
        let objective = SoftmaxObjective::new(data, labels, n_classes, alpha).map_err(py_error)?;
        let (theta, summary, error) = minimise(py, pool, objective, theta0, max_iter, callback)?;
        Ok((theta.into_pyarray(py).into_any(), summary, error))
    }
    check_classes(n_classes)?;
    let pool = thread_pool(n_threads)?;
    let (call, options) = ((x, y, n_classes, theta0), (alpha, max_iter, callback.as_ref(), pool.as_ref()));
    match Dtype::of(x, "X")? {
        Dtype::F32 => typed::<f32>(py, call, options),
        Dtype::F64 => typed::<f64>(py, call, options),
    }
}

/// Fine-tunes a stack (layer sizes `[n, h_1, …, h_L]`, a softmax of `n_classes` on top) on the
/// rows of `X` and their class indices `y` from `theta0` (`X`'s dtype, the layout of
/// `StackModel.from_theta`): L-BFGS on the softmax's log-loss backpropagated through every
/// layer, weight decay `alpha` on the softmax weights. Returns `(model, summary, error)`.
#[pyfunction]
#[pyo3(signature = (x, y, sizes, n_classes, theta0, *, alpha = 1e-4, max_iter = 400, callback = None, n_threads = None))]
#[allow(clippy::too_many_arguments)]
fn fine_tune_stack<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    sizes: Vec<usize>,
    n_classes: usize,
    theta0: &Bound<'py, PyAny>,
    alpha: f64,
    max_iter: usize,
    callback: Option<Py<PyAny>>,
    n_threads: Option<usize>,
) -> PyResult<(PyStackModel, Bound<'py, PyDict>, Option<PyErr>)> {
    fn typed<'py, T: Real + Element>(
        py: Python<'py>,
        (x, y, shape, theta0): (&Bound<'py, PyAny>, &Bound<'py, PyAny>, StackShape, &Bound<'py, PyAny>),
        (alpha, max_iter, callback, pool): (f64, usize, Option<&Py<PyAny>>, Option<&rayon::ThreadPool>),
    ) -> PyResult<(StackModel<T>, Bound<'py, PyDict>, Option<PyErr>)> {
        let arrays = Labelled::<T>::extract(x, y, theta0)?;
        check_width(arrays.x.as_any(), "X", shape.sizes[0], "sizes[0]")?;
        let (data, labels, theta0) = arrays.parts()?;
        let objective = StackedObjective::new(data, labels, shape.clone(), alpha).map_err(py_error)?;
        let (theta, summary, error) = minimise(py, pool, objective, theta0, max_iter, callback)?;
        let metadata = vec![("fine_tuning".to_string(), format!("softmax λ = {alpha}, L-BFGS"))];
        Ok((StackModel { shape, theta, metadata }, summary, error))
    }
    let shape = stack_shape(sizes, n_classes)?;
    let pool = thread_pool(n_threads)?;
    let (call, options) = ((x, y, shape, theta0), (alpha, max_iter, callback.as_ref(), pool.as_ref()));
    Ok(match Dtype::of(x, "X")? {
        Dtype::F32 => {
            let (model, summary, error) = typed::<f32>(py, call, options)?;
            (PyStackModel(Stored::F32(model)), summary, error)
        }
        Dtype::F64 => {
            let (model, summary, error) = typed::<f64>(py, call, options)?;
            (PyStackModel(Stored::F64(model)), summary, error)
        }
    })
}

/// The classes are predicted as uint8: 2 to 256 of them.
fn check_classes(n_classes: usize) -> PyResult<()> {
    if (2..=256).contains(&n_classes) {
        Ok(())
    } else {
        Err(invalid(format!("n_classes = {n_classes}: a classifier needs 2 to 256 classes")))
    }
}

/// A stack's shape, checked: `sizes = [n, h_1, …]` with at least one hidden layer, none empty,
/// 2 to 256 classes, and a parameter count that fits in memory.
fn stack_shape(sizes: Vec<usize>, n_classes: usize) -> PyResult<StackShape> {
    check_classes(n_classes)?;
    let shape = StackShape { sizes, classes: n_classes };
    if shape.sizes.len() < 2 || shape.sizes.contains(&0) || shape.checked_len().is_none() {
        return Err(invalid(format!(
            "sizes = {:?}: a stack needs [n, h_1, …] with at least one hidden layer, none empty, and a \
             parameter count that fits in memory",
            shape.sizes
        )));
    }
    Ok(shape)
}

#[pymodule]
fn _sae(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyHyper>()?;
    m.add_class::<PyObjective>()?;
    m.add_class::<PyStreamingObjective>()?;
    m.add_class::<distributed::PyDistributedObjective>()?;
    m.add_class::<PyModel>()?;
    m.add_class::<PyVaeModel>()?;
    m.add_class::<PyStackModel>()?;
    m.add_class::<topk::PyTopKModel>()?;
    m.add_function(wrap_pyfunction!(topk::train_topk, m)?)?;
    m.add_class::<PyTrainingState>()?;
    m.add_function(wrap_pyfunction!(model_kind, m)?)?;
    m.add_function(wrap_pyfunction!(train_vae, m)?)?;
    m.add_function(wrap_pyfunction!(vae_initial_theta, m)?)?;
    m.add_function(wrap_pyfunction!(initial_theta, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(train_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(fine_tune_stack, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
