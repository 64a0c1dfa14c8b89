"""Sparse autoencoders on the CPU: the UFLDL objective and its family, from Python.

The engine is Rust (the extension module ``sae._sae``); this package converts array-likes,
adds the UFLDL-style objective for any optimiser, the gradient check, model files and the
scikit-learn estimators (:class:`SparseAutoencoder`, :class:`VariationalAutoencoder`,
:class:`StackedAutoencoderClassifier`; ``import sae`` does not import scikit-learn, using them
does).

Arrays: float32 and float64 are computed in their own precision (anything else is converted
to float64). A C- or Fortran-contiguous array is read in place; any other layout is copied
once into C order. Results are new numpy arrays that own the engine's buffers (no copy).
"""

from __future__ import annotations

import copyreg
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import numpy as np

from . import errors
from . import _distributed
from ._sae import HyperParams, Model, StackModel, TopKModel, VaeModel, __version__, initial_theta, model_kind
from ._sae import train_topk as _train_topk
from ._sae import DistributedObjective as _DistributedObjective
from ._sae import Objective as _Objective
from ._sae import StreamingObjective as _StreamingObjective
from .errors import (
    DistributedError,
    FileAccessError,
    InvalidInputError,
    ModelFileError,
    SaeError,
    SaturationError,
    UnsupportedError,
)

__all__ = [
    "DistributedError",
    "FileAccessError",
    "InvalidInputError",
    "ModelFileError",
    "SaeError",
    "SaturationError",
    "UnsupportedError",
    "errors",
    "HyperParams",
    "Model",
    "Objective",
    "SparseAutoencoder",
    "StackModel",
    "StackedAutoencoderClassifier",
    "TopKModel",
    "VaeModel",
    "VariationalAutoencoder",
    "gradient_check",
    "initial_theta",
    "load",
    "train_topk",
    "__version__",
]

ArrayLike = Union[np.ndarray, "os.PathLike[str]", str]


def _float_dtype(x: np.ndarray, dtype: Optional[Union[str, np.dtype]]) -> np.dtype:
    """The precision to compute in: `dtype` if given, else X's own if float32, else float64."""
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise InvalidInputError(f"dtype must be float32 or float64, not {dtype}")
        return dtype
    return np.dtype(np.float32) if x.dtype == np.float32 else np.dtype(np.float64)


def as_data(x, dtype: Optional[Union[str, np.dtype]] = None) -> np.ndarray:
    """`x` as the engine reads it in memory: a 2-D float array in C or Fortran order, unchanged
    when it already is one (a ``np.memmap`` stays one)."""
    x = np.asanyarray(x)
    if x.ndim != 2:
        raise InvalidInputError(f"X must be 2-D (examples × features), not {x.ndim}-D")
    target = _float_dtype(x, dtype)
    if x.dtype != target:
        try:
            x = x.astype(target)
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"X of dtype {x.dtype} cannot be read as {target}: {e}") from e
    if not (x.flags.c_contiguous or x.flags.f_contiguous):
        x = np.ascontiguousarray(x)
    return x


def _check_threads(n_threads: Optional[int]) -> None:
    """`n_threads` is `None` (the caller's pool) or a positive count."""
    if n_threads is not None and not (isinstance(n_threads, (int, np.integer)) and n_threads >= 1):
        raise InvalidInputError(f"n_threads = {n_threads!r} must be None or a positive integer")


def _first_array(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file, or of the first ``*.npy`` shard of a folder, mapped (only
    its header is read)."""
    if path.is_dir():
        shards = sorted(p for p in path.iterdir() if p.suffix == ".npy" and p.is_file())
        if not shards:
            raise FileAccessError(f"{path}: holds no .npy files")
        path = shards[0]
    try:
        return np.load(path, mmap_mode="r")
    except OSError as e:
        raise FileAccessError(f"{path}: {e}") from e
    except ValueError as e:
        raise ModelFileError(f"{path}: not a readable .npy file: {e}") from e


def _rows_of_process(X, dtype, comm) -> np.ndarray:
    """This process's rows of `X` for a run across the processes of `comm`: `X` itself (an
    array-like of this process's rows), or its share of a ``.npy`` file's rows, memory-mapped."""
    if not isinstance(X, (str, os.PathLike)):
        return as_data(X, dtype)
    path = Path(X)
    if path.is_dir():
        raise InvalidInputError(f"{path}: with comm, X is an array of this process's rows or one .npy file")
    whole = _first_array(path)
    if whole.ndim != 2:
        raise InvalidInputError(f"{path}: X must be 2-D (examples × features), not {whole.ndim}-D")
    m, rank, size = whole.shape[0], comm.Get_rank(), comm.Get_size()
    rows = whole[m * rank // size : m * (rank + 1) // size]
    return as_data(rows, dtype)


class Objective:
    """The sparse autoencoder's cost and gradient on the data `X` (`m×n`, one example per row):
    ``cost, grad = objective(theta)`` with `theta` in the UFLDL layout ``[W1(:); W2(:); b1; b2]``,
    so that ``scipy.optimize.minimize(objective, theta0, jac=True, method="L-BFGS-B")`` works as
    on code ported from the UFLDL exercise.

    `X` is an array (read in place when contiguous; a ``np.memmap`` through its mapping), or a
    path: a ``.npy`` file, or a folder whose ``*.npy`` shards together are the data, streamed
    `chunk` examples at a time (memory bounded by the chunk; `mode` ``"one-pass"`` reads the
    data once per evaluation, ``"two-pass"`` twice as UFLDL's notes do). The hyper-parameters
    are those of :class:`HyperParams`. The gradient has the objective's dtype (float32 data
    stays float32, anything else is float64, unless `dtype` says); `theta` is converted to it.

    With `comm` (an mpi4py communicator, or any object with its ``Get_rank()``, ``Get_size()``
    and ``Allreduce(send, recv)``), the data set is split across the processes of `comm`: `X`
    is this process's rows (an array, possibly of none; the processes' rows in rank order are
    the data set), or the path of one ``.npy`` file of which process `r` of `N` reads rows
    ``m·r//N`` to ``m·(r+1)//N`` through a memory map. Every call is collective: every process
    calls with the same `theta` and gets the whole data set's cost and gradient.
    """

    def __init__(
        self,
        X: ArrayLike,
        n_hidden: int,
        *,
        sparsity_target: float = 0.01,
        sparsity_weight: float = 3.0,
        alpha: float = 1e-4,
        penalty: str = "kl",
        activation: str = "sigmoid",
        output: str = "sigmoid",
        loss: str = "squared",
        contractive: float = 0.0,
        tied: bool = False,
        corruption: str = "none",
        corruption_level: float = 0.0,
        corruption_seed: int = 0,
        dtype: Optional[Union[str, np.dtype]] = None,
        chunk: int = 16384,
        mode: str = "one-pass",
        n_threads: Optional[int] = None,
        comm=None,
    ) -> None:
        self.path: Optional[Path] = None
        self._comm = comm
        if comm is None:
            _check_threads(n_threads)
        else:

            def rows():
                _check_threads(n_threads)
                return _rows_of_process(X, dtype, comm)

            X = _distributed.agreed(comm, rows, "reading its rows of X")
            _distributed.agree_layout(comm, X.shape[1], X.dtype)
        if isinstance(X, (str, os.PathLike)):
            self.path = Path(X)
            first = _first_array(self.path)
            if first.ndim != 2:
                raise InvalidInputError(f"{self.path}: X must be 2-D (examples × features), not {first.ndim}-D")
            self.X = None
            n_visible, self._dtype = first.shape[1], _float_dtype(first, dtype)
        else:
            self.X = as_data(X, dtype)
            n_visible, self._dtype = self.X.shape[1], self.X.dtype
        self.hyper = HyperParams(
            n_visible,
            n_hidden,
            sparsity_target=sparsity_target,
            sparsity_weight=sparsity_weight,
            alpha=alpha,
            penalty=penalty,
            activation=activation,
            output=output,
            loss=loss,
            contractive=contractive,
            tied=tied,
            corruption=corruption,
            corruption_level=corruption_level,
            corruption_seed=corruption_seed,
        )
        if comm is not None:
            self._objective = _DistributedObjective(self.X, self.hyper, comm, n_threads)
        elif self.path is None:
            self._objective = _Objective(self.X, self.hyper, n_threads)
        else:
            self._objective = _StreamingObjective(
                os.fspath(self.path), self.hyper, self._dtype.name, chunk, mode, n_threads
            )

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def __call__(self, theta: np.ndarray) -> Tuple[float, np.ndarray]:
        try:
            theta = np.ascontiguousarray(theta, dtype=self._dtype)
        except (TypeError, ValueError):
            # Across processes the engine's own check of theta fails on every process alike.
            if self._comm is None:
                raise
        if self._comm is None and theta.ndim != 1:
            raise InvalidInputError(f"theta must be 1-D, not {theta.ndim}-D")
        return self._objective(theta)

    def initial_theta(self, seed: int = 0) -> np.ndarray:
        """The UFLDL initial point for this objective's shape and dtype."""
        return initial_theta(self.hyper.n_visible, self.hyper.n_hidden, seed, self._dtype.name)

    @property
    def terms(self) -> Optional[dict]:
        """The last evaluation's cost by its terms: reconstruction, weight decay, sparsity,
        contractive."""
        return self._objective.terms

    @property
    def rho_hat(self) -> np.ndarray:
        """Each hidden unit's mean activation at the last evaluated theta."""
        return self._objective.rho_hat


def gradient_check(
    objective: Callable[[np.ndarray], Tuple[float, np.ndarray]],
    theta: np.ndarray,
    epsilon: float = 1e-4,
) -> float:
    """UFLDL's check: ``‖g_num − g‖ / ‖g_num + g‖`` between the central differences
    ``(J(θ + ε e_i) − J(θ − ε e_i)) / 2ε`` and the analytic gradient (below about 1e-9 for a
    correct float64 gradient). One pair of evaluations per coordinate: for small problems."""
    theta = np.array(theta, dtype=np.float64)
    _, analytic = objective(theta)
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        saved = theta[i]
        theta[i] = saved + epsilon
        plus, _ = objective(theta)
        theta[i] = saved - epsilon
        minus, _ = objective(theta)
        theta[i] = saved
        numeric[i] = (plus - minus) / (2 * epsilon)
    total = np.linalg.norm(numeric + analytic)
    difference = np.linalg.norm(numeric - analytic)
    return float(difference / total) if total > 0 else float(difference)


def load(path: Union[str, "os.PathLike[str]"]) -> Union[Model, VaeModel, StackModel, TopKModel]:
    """A model file (``.safetensors``, as ``sae train``, ``sae vae``, ``sae exercise stacked`` or
    a model's ``save`` writes it), by the kind it records: a :class:`Model` (the sparse
    autoencoder and its family), a :class:`VaeModel`, a :class:`StackModel` or a
    :class:`TopKModel`, in the precision it was saved in."""
    path = os.fspath(path)
    kind = model_kind(path)
    return {"autoencoder": Model, "vae": VaeModel, "stack": StackModel, "topk": TopKModel}[kind].load(path)


def train_topk(
    X,
    n_latents: int,
    k: Optional[int] = None,
    *,
    architecture: str = "topk",
    k_start: Optional[int] = None,
    epochs: int = 10,
    batch_size: int = 1024,
    learning_rate: float = 1e-3,
    lr_warmup: int = 0,
    lr_decay: str = "none",
    lr_decay_start: float = 0.8,
    optimizer: str = "adam",
    momentum: float = 0.9,
    seed: int = 1,
    auxk_alpha: float = 0.0,
    l1_coefficient: Optional[float] = None,
    resample_every: Optional[int] = None,
    dead_after: Optional[int] = None,
    normalize_inputs: bool = False,
    held_out=None,
    early_stopping: Optional[int] = None,
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    checkpoint_every: int = 1000,
    resume: Optional[Union[str, os.PathLike]] = None,
    dtype: Optional[Union[str, np.dtype]] = None,
    n_threads: Optional[int] = None,
    comm=None,
) -> Tuple[TopKModel, list]:
    """Trains a TopK sparse autoencoder of ``n_latents`` latents, ``k`` active per example, on
    the rows of ``X`` (the engine's sparse kernels; Adam or SGD, unit-norm decoder rows,
    ``b_dec`` at the geometric median of the first minibatch, optionally AuxK on dead
    latents, dead latents resampled every ``resample_every`` steps — a latent is dead once it
    has not fired on ``dead_after`` examples in a row, by default one pass over ``X`` — and
    inputs scaled to unit mean squared norm). The learning rate rises linearly over the first
    ``lr_warmup`` steps and, with ``lr_decay="linear"`` or ``"cosine"``, falls towards 0 at the
    run's end from the fraction ``lr_decay_start`` of its steps on. ``architecture="batch-topk"`` keeps the
    ``k × batch_size`` largest activations of each minibatch instead (``k`` per example on
    average); the model keeps those above its ``threshold``, the running mean of each
    minibatch's smallest kept activation. ``architecture="relu"`` (no ``k``) keeps every
    positive activation, made sparse by ``l1_coefficient``, an L1 penalty on the activations
    weighted by the decoder rows' norms (which are left free). ``architecture="k-sparse"`` trains
    Makhzani & Frey's k-sparse autoencoder instead: linear units, tied weights, no unit-norm
    decoder, ``k`` lowered linearly from ``k_start`` (default ``4 k``) over the first half of the
    steps (``k_start`` schedules a TopK model's ``k`` the same way). Returns the model and a list
    of each epoch's metrics (``loss``, ``fvu``, ``explained_variance``, ``normalized_mse``,
    ``l0``, ``dead``, ``dense``, ``frequencies``; with ``held_out``, rows of held-out data,
    also ``held_out``: the same metrics of the model on them at the end of the epoch). With
    ``held_out`` and ``early_stopping=P``, the run stops once ``P`` epochs in a row have not
    lowered the held-out FVU and returns the model of the epoch with the lowest (whose dict has
    ``chosen: True``). With ``checkpoint=PATH`` the run's whole state is written there every
    ``checkpoint_every`` steps and when the run ends; ``resume=PATH`` continues such a run (same
    data, options and model shape) with the steps the uninterrupted run would take; the epochs
    returned are those run after the resumption. A checkpoint that cannot be written (a full
    disk, say) stops the run: :class:`FileAccessError` is raised naming it, and the model of
    that moment and the epochs run are its ``model`` and ``epochs`` attributes, so that the
    training is not lost.

    With ``comm`` (an mpi4py communicator, as for :meth:`SparseAutoencoder.fit`) ``X`` is this
    process's rows of a data set split across its processes in rank order (possibly none):
    each minibatch of the whole data set's order is evaluated by the processes holding its
    rows, and one sum per step gives every process the whole minibatch's gradient and metrics,
    so that every process takes the same steps and returns the same model — that of one
    process on the whole data, to rounding (with ``"batch-topk"`` each process keeps the
    largest activations of its own rows, as data-parallel trainers do). Give every process the
    same arguments, ``held_out`` included (the first process measures it); the first process
    alone writes the checkpoints, and a run resumes on as many processes. Resampling
    (``resample_every``) is refused across processes."""
    def arrays():
        data = np.asarray(X)
        if data.ndim != 2:
            raise InvalidInputError(f"X must be 2-D, not {data.ndim}-D")
        data = np.asarray(data, dtype=_float_dtype(data, dtype))
        rows = None if held_out is None else np.asarray(held_out, dtype=data.dtype)
        if rows is not None and (rows.ndim != 2 or rows.shape[1] != data.shape[1]):
            raise InvalidInputError(f"held_out must be 2-D with X's {data.shape[1]} columns, not of shape {rows.shape}")
        return data, rows

    if comm is None:
        X, held_out = arrays()
    else:
        # Every process fails alike on one's bad input, before any of them waits for it in a sum.
        X, held_out = _distributed.agreed(comm, arrays, "checking its rows of X")
        _distributed.agree_layout(comm, X.shape[1], X.dtype)
    return _train_topk(
        X,
        n_latents,
        k,
        architecture=architecture,
        k_start=k_start,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        lr_warmup=lr_warmup,
        lr_decay=lr_decay,
        lr_decay_start=lr_decay_start,
        optimizer=optimizer,
        momentum=momentum,
        seed=seed,
        auxk_alpha=auxk_alpha,
        l1_coefficient=l1_coefficient,
        resample_every=resample_every,
        dead_after=dead_after,
        normalize_inputs=normalize_inputs,
        held_out=held_out,
        early_stopping=early_stopping,
        checkpoint=None if checkpoint is None else os.fspath(checkpoint),
        checkpoint_every=checkpoint_every,
        resume=None if resume is None else os.fspath(resume),
        n_threads=n_threads,
        comm=comm,
    )


def _model_to_bytes(model: Model) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.safetensors")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def _model_from_bytes(data: bytes) -> Model:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.safetensors")
        with open(path, "wb") as f:
            f.write(data)
        return load(path)


def _reduce_model(model):
    return _model_from_bytes, (_model_to_bytes(model),)


def _reduce_hyper(hyper: HyperParams):
    d = hyper.to_dict()
    n_visible, n_hidden = d.pop("n_visible"), d.pop("n_hidden")
    return _hyper_from, (n_visible, n_hidden, d)


def _hyper_from(n_visible: int, n_hidden: int, rest: dict) -> HyperParams:
    return HyperParams(n_visible, n_hidden, **rest)


# Models pickle (and copy) as their model file's bytes, hyper-parameters as their values.
for _kind in (Model, VaeModel, StackModel, TopKModel):
    copyreg.pickle(_kind, _reduce_model)
copyreg.pickle(HyperParams, _reduce_hyper)


def __getattr__(name: str):
    # The estimator needs scikit-learn: imported on first use, so `import sae` does not.
    if name in ("SparseAutoencoder", "StackedAutoencoderClassifier", "VariationalAutoencoder"):
        from . import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'sae' has no attribute {name!r}")
