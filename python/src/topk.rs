//! TopK sparse autoencoders (and Makhzani & Frey's k-sparse autoencoders) from Python:
//! `TopKModel` (read, written, applied, exported to SAELens's and sparsify's folders) and
//! `train_topk` (the engine's trainer on an array).

use std::path::PathBuf;

use numpy::{IntoPyArray, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{check_width, contiguous, dataset, detached, invalid, matrix, py_error, schedule, thread_pool, Contiguity};
use super::{Dtype, ModelKind, Stored};
use crate::distributed::{agree_checked, local_rows, PyCollective};
use numpy::Element;
use sae::data::stream::SliceSource;
use sae::dictionary::interop::{self, Folder};
use sae::dictionary::select::INACTIVE;
use sae::dictionary::{Architecture, Selection, TopKModel};
use sae::objective::distributed::Part;
use sae::optim::StepRule;
use sae::train::{measure_topk, TopKMetrics, TopKOptions, TopKTrainer};
use sae::{Error, Real};

/// The TopK model file.
pub(crate) struct TopK;

impl ModelKind for TopK {
    type Of<T: Real> = TopKModel<T>;
    fn load<T: Real>(path: &std::path::Path) -> Result<TopKModel<T>, Error> {
        TopKModel::load(path)
    }
    fn save<T: Real>(model: &TopKModel<T>, path: &std::path::Path) -> Result<(), Error> {
        model.save(path)
    }
}

/// A TopK sparse autoencoder: `n` inputs, `h` latents, `k` active per example.
#[pyclass(module = "sae._sae", name = "TopKModel", frozen)]
pub(crate) struct PyTopKModel(Stored<TopK>);

/// `$body` with `$model` bound to the model of either precision.
macro_rules! either {
    ($stored:expr, $model:ident => $body:expr) => {
        match $stored {
            Stored::F32($model) => $body,
            Stored::F64($model) => $body,
        }
    };
}

fn folder(format: &str) -> PyResult<Folder> {
    match format {
        "saelens" => Ok(Folder::Saelens),
        "sparsify" => Ok(Folder::Sparsify),
        other => Err(invalid(format!("format must be \"saelens\" or \"sparsify\", not {other:?}"))),
    }
}

/// `values` of `T` as a 1-D array.
fn vector<'py, T: Element + Clone>(py: Python<'py>, values: &[T]) -> Bound<'py, PyAny> {
    values.to_vec().into_pyarray(py).into_any()
}

/// The codes of every row of `X` with `k` latents per example (or, for a BatchTopK model,
/// those above its threshold): `(indices, values, m, slots per example)`, `-1` and 0 in the
/// unused slots, encoded by [`TopKModel::encode`] (a chunk of rows at a time).
fn encode<'py, T: Real + Element>(
    py: Python<'py>,
    model: &TopKModel<T>,
    k: usize,
    x: &Bound<'py, PyAny>,
    n_threads: Option<usize>,
) -> PyResult<(Vec<i64>, Vec<T>, usize, usize)> {
    let x = contiguous::<T>(x, Contiguity::Either)?;
    check_width(&x, "X", model.visible(), "n_visible")?;
    let x: PyReadonlyArray2<T> = x.extract()?;
    let data = dataset(&x)?;
    let m = data.examples();
    if m == 0 {
        return Ok((Vec::new(), Vec::new(), 0, k));
    }
    let pool = thread_pool(n_threads)?;
    let codes = detached(py, pool.as_ref(), || model.encode(&data, k)).map_err(py_error)?;
    let (indices, values, slots) = codes.into_parts();
    let indices = indices.into_iter().map(|j| if j == INACTIVE { -1 } else { i64::from(j) }).collect();
    Ok((indices, values, m, slots))
}

fn reconstruct<'py, T: Real + Element>(
    py: Python<'py>,
    model: &TopKModel<T>,
    x: &Bound<'py, PyAny>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let (indices, values, m, _) = encode(py, model, model.k(), x, n_threads)?;
    let slots: Vec<u32> = indices.iter().map(|&j| u32::try_from(j).unwrap_or(INACTIVE)).collect();
    let mut output = vec![T::zero(); m * model.visible()];
    model.decode(&slots, &values, &mut output).map_err(py_error)?;
    matrix(py, output, m, model.visible())
}

fn metrics<'py, T: Real + Element>(
    py: Python<'py>,
    model: &TopKModel<T>,
    x: &Bound<'py, PyAny>,
    chunk: usize,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let x = contiguous::<T>(x, Contiguity::Rows)?;
    check_width(&x, "X", model.visible(), "n_visible")?;
    let x: PyReadonlyArray2<T> = x.extract()?;
    let values = x.as_slice().map_err(|_| invalid("X must be C-contiguous"))?;
    let pool = thread_pool(n_threads)?;
    let metrics = detached(py, pool.as_ref(), || {
        let mut source = SliceSource::new(values, model.visible())?;
        measure_topk(model, &mut source, chunk)
    })
    .map_err(py_error)?;
    metrics_dict(py, &metrics)
}

fn metrics_dict<'py>(py: Python<'py>, metrics: &TopKMetrics) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("loss", metrics.loss)?;
    dict.set_item("fvu", metrics.fvu)?;
    dict.set_item("explained_variance", metrics.explained_variance())?;
    dict.set_item("normalized_mse", metrics.normalized_mse)?;
    dict.set_item("l0", metrics.l0)?;
    dict.set_item("dead", metrics.dead)?;
    dict.set_item("dense", metrics.dense)?;
    dict.set_item("frequencies", metrics.frequencies.clone().into_pyarray(py))?;
    Ok(dict)
}

#[pymethods]
impl PyTopKModel {
    /// Reads a TopK model file (as `sae train --hidden-layer topk` and `save` write it), in
    /// its precision.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Stored::load(py, path).map(PyTopKModel)
    }

    /// Writes the model file atomically.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.0.save(py, path)
    }

    /// Writes the model into the folder `path` in SAELens's (`"saelens"`: architecture
    /// `"topk"`) or sparsify's (`"sparsify"`) layout.
    #[pyo3(signature = (path, format = "saelens"))]
    fn export(&self, py: Python<'_>, path: PathBuf, format: &str) -> PyResult<()> {
        let layout = folder(format)?;
        either!(&self.0, model => py.detach(|| interop::export(model, layout, &path))).map_err(py_error)
    }

    /// Reads a SAELens TopK folder or a sparsify folder, in its dtype.
    #[staticmethod]
    #[pyo3(signature = (path, format = "saelens"))]
    fn import_folder(py: Python<'_>, path: PathBuf, format: &str) -> PyResult<Self> {
        let layout = folder(format)?;
        py.detach(|| {
            Ok(if interop::is_float32(&path, layout) {
                Stored::F32(interop::import::<f32>(&path, layout)?)
            } else {
                Stored::F64(interop::import::<f64>(&path, layout)?)
            })
        })
        .map(PyTopKModel)
        .map_err(py_error)
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.0.dtype()
    }

    #[getter]
    fn n_visible(&self) -> usize {
        either!(&self.0, model => model.visible())
    }

    #[getter]
    fn n_latents(&self) -> usize {
        either!(&self.0, model => model.latents())
    }

    #[getter]
    fn k(&self) -> usize {
        either!(&self.0, model => model.k())
    }

    /// `W_enc`, `h×n`: row `j` is latent `j`'s encoder weights (a copy).
    #[getter(W_enc)]
    fn w_enc<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        either!(&self.0, model => matrix(py, model.blocks().w_enc.to_vec(), model.latents(), model.visible()))
    }

    #[getter]
    fn b_enc<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        either!(&self.0, model => vector(py, model.blocks().b_enc))
    }

    /// `W_dec`, `h×n`: row `j` is latent `j`'s decoder direction (a copy).
    #[getter(W_dec)]
    fn w_dec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        either!(&self.0, model => matrix(py, model.blocks().w_dec.to_vec(), model.latents(), model.visible()))
    }

    #[getter]
    fn b_dec<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        either!(&self.0, model => vector(py, model.blocks().b_dec))
    }

    /// `"relu"` (TopK) or `"linear"` (k-sparse).
    #[getter]
    fn units(&self) -> &'static str {
        either!(&self.0, model => model.architecture().units.name())
    }

    /// Whether `W_dec = W_enc`.
    #[getter]
    fn tied(&self) -> bool {
        either!(&self.0, model => model.architecture().tied)
    }

    /// `"example"` (TopK, k-sparse: `k` per example), `"batch"` (BatchTopK: `k` per example
    /// on average over a training batch, the inference `threshold` after) or `"all"` (ReLU:
    /// every positive latent).
    #[getter]
    fn selection(&self) -> &'static str {
        either!(&self.0, model => model.architecture().selection.name())
    }

    /// BatchTopK's inference threshold: a latent is active when its pre-activation exceeds it
    /// (0 for the other models).
    #[getter]
    fn threshold(&self) -> f64 {
        either!(&self.0, model => model.threshold())
    }

    /// Whether the encoder reads `x − b_dec` (else `x`).
    #[getter]
    fn pre_encoder_bias(&self) -> bool {
        either!(&self.0, model => model.architecture().pre_encoder_bias)
    }

    /// The codes of every row of `X`: `(indices, values)`, `m×k` each (int64 latent indices,
    /// activations in the model's dtype), `-1` and 0 in unused slots; with `k`, that many
    /// latents per example instead of the model's (Makhzani & Frey encode with `3k`). A
    /// BatchTopK model keeps the latents above its threshold and a ReLU model every positive
    /// one: `m×s` for `s` at least the most any row has.
    #[pyo3(signature = (x, k = None, n_threads = None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        k: Option<usize>,
        n_threads: Option<usize>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        if k.is_some() && self.selection() == Selection::All.name() {
            return Err(invalid("k: a ReLU model keeps every positive latent, not a number of them".to_string()));
        }
        if k.is_some() && self.selection() == Selection::Batch.name() {
            return Err(invalid(
                "k: a BatchTopK model encodes with its threshold, not a number of latents".to_string(),
            ));
        }
        let k = k.unwrap_or(self.k());
        if k == 0 || k > self.n_latents() {
            return Err(invalid(format!("k = {k}: from 1 to the model's {} latents", self.n_latents())));
        }
        either!(&self.0, model => {
            let (indices, values, m, slots) = encode(py, model, k, x, n_threads)?;
            Ok((matrix(py, indices, m, slots)?, matrix(py, values, m, slots)?))
        })
    }

    /// The reconstruction `x̂ = b_dec + Σ a_j W_dec[j]` of every row of `X`: `m×n`.
    #[pyo3(signature = (x, n_threads = None))]
    fn reconstruct<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        n_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        either!(&self.0, model => reconstruct(py, model, x, n_threads))
    }

    /// The dictionary metrics of the model on the rows of `X` (read `chunk` at a time):
    /// `loss`, `fvu`, `explained_variance`, `normalized_mse`, `l0`, `dead`, `dense` and each
    /// latent's firing `frequencies`.
    #[pyo3(signature = (x, chunk = 4096, n_threads = None))]
    fn metrics<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        chunk: usize,
        n_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        either!(&self.0, model => metrics(py, model, x, chunk, n_threads))
    }

    fn __repr__(&self) -> String {
        let (n, h, k) = (self.n_visible(), self.n_latents(), self.k());
        let architecture = either!(&self.0, model => model.architecture().describe());
        // (A ReLU model has no k of its own: every positive latent is active.)
        let k = if self.selection() == Selection::All.name() { String::new() } else { format!(", k={k}") };
        format!("TopKModel(n_visible={n}, n_latents={h}{k}, architecture={architecture:?}, dtype={})", self.dtype())
    }
}

/// Trains a TopK model (`architecture = "topk"`), a ReLU one (`"relu"`: every positive latent,
/// the L1 penalty `l1_coefficient` weighted by the decoder rows' norms, `k` not given), a
/// BatchTopK one (`"batch-topk"`: `k` per
/// example on average over each minibatch, the inference threshold estimated as it trains) or
/// a k-sparse autoencoder (`"k-sparse"`:
/// linear units, tied weights, `k` lowered from `k_start`, 4k by default) on the rows of `X`
/// (its dtype is the model's) with Adam (or SGD with `momentum`; the learning rate warmed up
/// over `lr_warmup` steps and decayed by `lr_decay` from the fraction `lr_decay_start` of the
/// steps on; with `checkpoint`, the run's state written there every `checkpoint_every` steps,
/// and continued from the checkpoint `resume`), unit-norm decoder rows (TopK)
/// and `b_dec` at the geometric median of the first minibatch; returns the model and each
/// epoch's metrics. With `comm` (an mpi4py communicator, see `train`) `X` is this process's
/// rows of a data set split across its processes (in rank order, possibly none), each
/// minibatch evaluated by the processes holding its rows and every process taking the same
/// steps and returning the same model; `held_out` is given to every process (the first
/// measures it), and the first process alone writes the checkpoints.
#[pyfunction]
#[pyo3(signature = (x, n_latents, k = None, *, architecture = "topk", k_start = None, epochs = 10,
                    batch_size = 1024, learning_rate = 1e-3, lr_warmup = 0, lr_decay = "none", lr_decay_start = 0.8,
                    optimizer = "adam", momentum = 0.9, seed = 1,
                    auxk_alpha = 0.0, l1_coefficient = None, resample_every = None, dead_after = None,
                    normalize_inputs = false, held_out = None, early_stopping = None, checkpoint = None,
                    checkpoint_every = 1000, resume = None, n_threads = None, comm = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_topk<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    n_latents: usize,
    k: Option<usize>,
    architecture: &str,
    k_start: Option<usize>,
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    lr_warmup: u64,
    lr_decay: &str,
    lr_decay_start: f64,
    optimizer: &str,
    momentum: f64,
    seed: u64,
    auxk_alpha: f64,
    l1_coefficient: Option<f64>,
    resample_every: Option<u64>,
    dead_after: Option<u64>,
    normalize_inputs: bool,
    held_out: Option<&Bound<'py, PyAny>>,
    early_stopping: Option<usize>,
    checkpoint: Option<PathBuf>,
    checkpoint_every: u64,
    resume: Option<PathBuf>,
    n_threads: Option<usize>,
    comm: Option<&Bound<'py, PyAny>>,
) -> PyResult<(PyTopKModel, Vec<Bound<'py, PyDict>>)> {
    // A ReLU layer keeps every positive latent: its model's k is all of them.
    let k = match (architecture, k, l1_coefficient) {
        ("relu", _, _) if k_start.is_some() => {
            return Err(invalid("k_start: a ReLU layer keeps every positive latent; its sparsity is l1_coefficient"))
        }
        ("relu", Some(_), _) => {
            return Err(invalid("k: a ReLU layer keeps every positive latent; its sparsity is l1_coefficient"))
        }
        ("relu", None, None) => return Err(invalid("architecture=\"relu\" needs l1_coefficient")),
        ("relu", None, Some(_)) => n_latents,
        (_, Some(k), _) => k,
        (_, None, _) => return Err(invalid(format!("architecture={architecture:?} needs k"))),
    };
    if early_stopping.is_some() && held_out.is_none() {
        return Err(invalid("early_stopping watches held-out data: give held_out"));
    }
    let rule = match optimizer {
        "adam" => StepRule::adam(learning_rate),
        "sgd" => StepRule::sgd(learning_rate, momentum),
        other => return Err(invalid(format!("optimizer must be \"adam\" or \"sgd\", not {other:?}"))),
    };
    let (architecture, base) = match architecture {
        "topk" => (Architecture::TOPK, TopKOptions { k_start, ..TopKOptions::default() }),
        "batch-topk" => (Architecture::BATCH_TOPK, TopKOptions { k_start, ..TopKOptions::default() }),
        "relu" => (Architecture::RELU, TopKOptions::relu(0.0)),
        "k-sparse" => {
            (Architecture::K_SPARSE, TopKOptions::k_sparse(k_start.unwrap_or(k.saturating_mul(4).min(n_latents))))
        }
        other => {
            return Err(invalid(format!(
                "architecture must be \"topk\", \"batch-topk\", \"relu\" or \"k-sparse\", not {other:?}"
            )))
        }
    };
    let options = TopKOptions {
        rule,
        schedule: schedule(lr_warmup, lr_decay, lr_decay_start)?,
        batch_size,
        epochs,
        seed,
        auxk_alpha,
        l1_coefficient: l1_coefficient.unwrap_or(0.0),
        resample_every,
        dead_after,
        normalize_inputs,
        early_stopping,
        ..base
    };
    let mut trainer = TopKTrainer::new(options).map_err(py_error)?;
    if let Some(path) = checkpoint {
        if checkpoint_every == 0 {
            return Err(invalid("checkpoint_every: at least one step between checkpoints"));
        }
        trainer = trainer.checkpoint_to(path, checkpoint_every);
    }
    if let Some(path) = resume {
        trainer = trainer.resuming_from(path);
    }
    let pool = thread_pool(n_threads)?;
    let collective = comm.map(PyCollective::new).transpose()?;
    macro_rules! fit {
        ($t:ty, $stored:ident) => {{
            let x = contiguous::<$t>(x, Contiguity::Either)?;
            let x: PyReadonlyArray2<$t> = x.extract()?;
            let n = x.shape()[1];
            let held_out = match held_out {
                Some(held_out) => {
                    let held_out = contiguous::<$t>(held_out, Contiguity::Rows)?;
                    check_width(&held_out, "held_out", n, "X's columns")?;
                    Some(held_out.extract::<PyReadonlyArray2<$t>>()?)
                }
                None => None,
            };
            let held_out = held_out.as_ref().map(|held_out| held_out.as_slice()).transpose()?;
            let init = || TopKModel::<$t>::init(n, n_latents, k, seed)?.with_architecture(architecture);
            let trained = match &collective {
                None => {
                    let data = dataset(&x)?;
                    detached(py, pool.as_ref(), || match held_out {
                        Some(held_out) => trainer.fit_held_out(&data, held_out, init()?, |_| ()),
                        None => trainer.fit(&data, init()?, |_| ()),
                    })
                }
                Some(collective) => {
                    // (The trainer scans the rows and agrees on any failure.)
                    let data = agree_checked(collective, local_rows(&x), "checking its part of the data")?;
                    let (first, examples) = collective.offsets(data.map_or(0, |d| d.examples())).map_err(py_error)?;
                    let part = Part { data: data.as_ref(), first_example: first, examples };
                    detached(py, pool.as_ref(), || trainer.fit_split(part, held_out, collective, init()?, |_| ()))
                }
            }
            .map_err(py_error)?;
            let epochs = trained.epochs.iter().map(|epoch| {
                let dict = metrics_dict(py, &epoch.metrics)?;
                dict.set_item("epoch", epoch.epoch)?;
                dict.set_item("steps", epoch.steps)?;
                if let Some(held_out) = &epoch.held_out {
                    dict.set_item("held_out", metrics_dict(py, held_out)?)?;
                }
                if let Some(chosen) = trained.chosen_epoch {
                    dict.set_item("chosen", epoch.epoch == chosen)?;
                }
                Ok(dict)
            });
            let epochs = epochs.collect::<PyResult<Vec<_>>>()?;
            let model = PyTopKModel(Stored::$stored(trained.model));
            // A checkpoint that could not be written ended the run: its error is raised, with
            // the model of that moment and the epochs run as its attributes.
            if let Some(error) = trained.checkpoint_error {
                let error = py_error(error);
                error.value(py).setattr("model", Py::new(py, model)?)?;
                error.value(py).setattr("epochs", epochs)?;
                return Err(error);
            }
            (model, epochs)
        }};
    }
    Ok(match Dtype::of(x, "X")? {
        Dtype::F32 => fit!(f32, F32),
        Dtype::F64 => fit!(f64, F64),
    })
}
