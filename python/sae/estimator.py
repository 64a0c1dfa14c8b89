"""The scikit-learn estimator of the sparse autoencoder."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from . import HyperParams, Model, Objective, StackModel, _check_threads, _first_array, _float_dtype, initial_theta
from ._sae import fine_tune_stack as _fine_tune_stack
from ._sae import train as _train
from ._sae import train_softmax as _train_softmax
from ._sae import train_vae as _train_vae
from ._sae import vae_initial_theta
from ._distributed import agree_layout, agreed, rank0_value
from .errors import InvalidInputError, SaturationError

from sklearn.utils.validation import validate_data as _validate_data

_SOLVERS = ("lbfgs", "adam", "sgd")


class _EngineTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """What the engine's estimators share: their tags (float32 stays float32), the validation of
    `X` in the model's precision, the progress line of `verbose`, and `save`."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _validate(self, X, reset: bool, min_samples: int = 1) -> np.ndarray:
        """`X` checked, in the model's precision."""
        return self._precision(_validate_data(self, X, **self._checks(reset, min_samples)), reset)

    def _checks(self, reset: bool, min_samples: int = 1) -> dict:
        dtype = [np.float64, np.float32] if self.dtype is None else np.dtype(self.dtype)
        return dict(reset=reset, dtype=dtype, order="C", ensure_min_samples=min_samples)

    def _precision(self, X: np.ndarray, reset: bool) -> np.ndarray:
        if self.dtype is None and X.dtype != np.float32:
            X = X.astype(np.float64, copy=False)
        if not reset and X.dtype != self.model_.dtype:
            X = X.astype(self.model_.dtype)
        return X

    def _progress(self, callback):
        if not self.verbose:
            return callback

        def report(info: dict):
            step = f"epoch {int(info['epoch'])}" if "epoch" in info else f"iteration {int(info['iteration'])}"
            stage = f"{info['stage']}, " if "stage" in info else ""
            print(f"{stage}{step}: cost {info['cost']:.6g} ({info['time']:.2f} s)", file=sys.stdout, flush=True)
            return None if callback is None else callback(info)

        return report

    def save(self, path) -> None:
        """Writes the fitted model's file (readable by :func:`sae.load` and the ``sae`` CLI)."""
        check_is_fitted(self, "model_")
        self.model_.save(str(path))

    def __getstate__(self):
        # The optimiser's state between partial_fit calls stays with this process: a pickled
        # estimator's next partial_fit starts Adam's moments anew (its model is kept).
        state = super().__getstate__()
        state.pop("_training_state", None)
        return state


class SparseAutoencoder(_EngineTransformer):
    """A sparse autoencoder (UFLDL: sigmoid hidden layer, weight decay `alpha`, a KL penalty of
    weight `sparsity_weight` pulling each unit's mean activation towards `sparsity_target`)
    and its family: `activation` of the hidden layer (``"sigmoid"``, ``"tanh"``, ``"relu"``),
    `output` units (``"sigmoid"``, ``"linear"``) and `loss` (``"squared"``,
    ``"cross-entropy"``), `penalty` (``"kl"``, ``"l1"``), `tied` weights, `denoise`
    (``None``, ``("masking", p)`` or ``("gaussian", sd)``), a `contractive` penalty.

    `transform` gives the hidden layer's activations (``m×n_hidden``), `inverse_transform`
    decodes them, `reconstruct` does both; `score` is the negative cost. Trained by full-batch
    L-BFGS (`max_iter` iterations) or Adam/SGD (`max_iter` epochs of `batch_size`), whose rate
    `learning_rate_init` may rise linearly over the first `lr_warmup` steps and, with `lr_decay`
    ``"linear"`` or ``"cosine"``, fall towards 0 at the run's end from the fraction
    `lr_decay_start` of its steps on (a schedule spans one `fit`: `partial_fit` refuses one).
    `fit` also
    takes the path of a ``.npy`` file or of a folder of ``.npy`` shards, streamed: L-BFGS reads
    it a chunk at a time, Adam/SGD draw minibatches from blocks of `shuffle_block` consecutive
    rows in a random order, `shuffle_window` blocks at a time (memory: two windows).
    `dtype` (``None``: float32 data stays float32, anything else becomes float64) is the
    precision of the model. `callback(info)` passed to :meth:`fit` is called after each
    iteration or epoch and may return ``False`` to stop; Ctrl-C stops too (the model so far is
    kept, then ``KeyboardInterrupt`` is raised).
    """

    def __init__(
        self,
        n_hidden: int = 25,
        *,
        sparsity_target: float = 0.01,
        sparsity_weight: float = 3.0,
        alpha: float = 1e-4,
        activation: str = "sigmoid",
        output: str = "sigmoid",
        loss: str = "squared",
        penalty: str = "kl",
        tied: bool = False,
        denoise=None,
        contractive: float = 0.0,
        solver: str = "lbfgs",
        max_iter: int = 400,
        batch_size: int = 256,
        learning_rate_init: float = 1e-3,
        momentum: float = 0.9,
        random_state=None,
        warm_start: bool = False,
        dtype=None,
        n_threads: Optional[int] = None,
        verbose: bool = False,
        shuffle_block: int = 256,
        shuffle_window: int = 64,
        lr_warmup: int = 0,
        lr_decay: str = "none",
        lr_decay_start: float = 0.8,
    ):
        self.n_hidden = n_hidden
        self.sparsity_target = sparsity_target
        self.sparsity_weight = sparsity_weight
        self.alpha = alpha
        self.activation = activation
        self.output = output
        self.loss = loss
        self.penalty = penalty
        self.tied = tied
        self.denoise = denoise
        self.contractive = contractive
        self.solver = solver
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.momentum = momentum
        self.random_state = random_state
        self.warm_start = warm_start
        self.dtype = dtype
        self.n_threads = n_threads
        self.verbose = verbose
        self.shuffle_block = shuffle_block
        self.shuffle_window = shuffle_window
        self.lr_warmup = lr_warmup
        self.lr_decay = lr_decay
        self.lr_decay_start = lr_decay_start

    @property
    def _n_features_out(self) -> int:
        return self.n_hidden

    # -- fitting -----------------------------------------------------------------------------

    def _check_params(self) -> None:
        _check_threads(self.n_threads)
        if self.solver not in _SOLVERS:
            raise InvalidInputError(f"solver = {self.solver!r} is not one of {_SOLVERS}")
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise InvalidInputError(f"max_iter = {self.max_iter!r} must be a positive integer")
        if not isinstance(self.n_hidden, (int, np.integer)) or self.n_hidden < 1:
            raise InvalidInputError(f"n_hidden = {self.n_hidden!r} must be a positive integer")

    def _hyper(self, n_visible: int, seed: int) -> HyperParams:
        corruption, level = ("none", 0.0) if self.denoise is None else self.denoise
        return HyperParams(
            n_visible,
            int(self.n_hidden),
            sparsity_target=self.sparsity_target,
            sparsity_weight=self.sparsity_weight,
            alpha=self.alpha,
            penalty=self.penalty,
            activation=self.activation,
            output=self.output,
            loss=self.loss,
            contractive=self.contractive,
            tied=self.tied,
            corruption=corruption,
            corruption_level=float(level),
            corruption_seed=seed,
        )

    def fit(self, X, y=None, *, callback: Optional[Callable[[dict], Optional[bool]]] = None, comm=None):
        """Trains on `X` (`m×n`, or the path of a ``.npy`` file or shard folder, streamed);
        `y` is ignored.

        With `comm` (an mpi4py communicator, e.g. ``MPI.COMM_WORLD`` under ``mpirun``), `X` is
        this process's rows of a data set split across the processes of `comm`: their rows in
        rank order are the data set, and a process may hold none. Every process calls `fit`
        with the same parameters, takes the same steps, and ends with the same model (the
        seed is rank 0's). A process that fails (its `X` has a NaN, say) raises its error; the
        others raise :class:`sae.errors.DistributedError` naming it. The callback runs on
        every process; a stop it (or Ctrl-C) asks for on any process stops every one after
        the same step.
        """
        if isinstance(X, (str, os.PathLike)):
            return self._fit_streamed(Path(X), callback, comm)
        if comm is None:
            self._check_params()
            X = self._validate(X, reset=True)
            return self._train(X, self.max_iter, callback, continuing=self.warm_start)
        def checked():
            self._check_params()
            return self._validate(X, reset=True, min_samples=0)

        X = agreed(comm, checked, "checking its X")
        agree_layout(comm, X.shape[1], X.dtype)
        return self._train(X, self.max_iter, callback, continuing=self.warm_start, comm=comm)

    def _fit_streamed(self, path: Path, callback, comm):
        """`fit` on the data at `path`, read a chunk or window at a time."""

        def opened():
            self._check_params()
            for name in ("shuffle_block", "shuffle_window"):
                value = getattr(self, name)
                if not isinstance(value, (int, np.integer)) or value < 1:
                    raise InvalidInputError(f"{name} = {value!r} must be a positive integer")
            first = _first_array(path)
            if first.ndim != 2:
                raise InvalidInputError(f"{path}: X must be 2-D (examples × features), not {first.ndim}-D")
            return first

        first = opened() if comm is None else agreed(comm, opened, "opening X")
        dtype = _float_dtype(first, self.dtype)
        if comm is not None:
            agree_layout(comm, first.shape[1], dtype)
        self.n_features_in_ = first.shape[1]
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self._train(path, self.max_iter, callback, continuing=self.warm_start, comm=comm, layout=(first.shape[1], dtype))

    @available_if(lambda self: self.solver in ("adam", "sgd"))
    def partial_fit(self, X, y=None, *, callback=None):
        """One epoch of Adam or SGD on `X`, continuing the run of the previous calls (its
        parameters, Adam's moments, the running `rho_hat`, the epoch count that seeds the
        shuffle); the first call starts one."""
        self._check_params()
        if int(self.lr_warmup) != 0 or self.lr_decay != "none":
            raise InvalidInputError(
                "lr_warmup and lr_decay: a learning-rate schedule spans one run of max_iter epochs, which "
                "partial_fit's one epoch at a time does not know; use fit"
            )
        first = not hasattr(self, "model_")
        X = self._validate(X, reset=first)
        return self._train(X, 1, callback, continuing=True, incremental=True)

    def _train(
        self, X, max_iter: int, callback, continuing: bool, incremental: bool = False, comm=None, layout=None
    ):
        """Trains on `X`, an array, or a path whose `(n, dtype)` is `layout`."""
        n_visible, dtype = (X.shape[1], X.dtype) if layout is None else layout
        if incremental and getattr(self, "_seed", None) is not None:
            seed = self._seed  # one run across partial_fit calls: one seed
        else:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if comm is not None:
            seed = rank0_value(comm, seed)
        hyper = self._hyper(n_visible, seed)
        continuing = continuing and hasattr(self, "model_") and _same_model(self.model_.hyper, hyper)
        if continuing:
            theta0 = self.model_.theta.astype(dtype, copy=False)
        else:
            # (With tied weights the trainers start from the tied average of theta0.)
            theta0 = initial_theta(n_visible, int(self.n_hidden), seed, dtype.name)
            self.loss_curve_, self.n_iter_ = [], 0
        state = getattr(self, "_training_state", None) if continuing and incremental else None
        streamed = {} if layout is None else dict(shuffle_block=int(self.shuffle_block), shuffle_window=int(self.shuffle_window))
        model, summary, error, new_state = _train(
            X if layout is None else os.fspath(X),
            hyper,
            theta0,
            solver=self.solver,
            max_iter=int(max_iter),
            batch_size=int(self.batch_size),
            learning_rate=float(self.learning_rate_init),
            momentum=float(self.momentum),
            random_state=seed,
            callback=self._progress(callback),
            n_threads=self.n_threads,
            state=state,
            comm=comm,
            lr_warmup=int(self.lr_warmup),
            lr_decay=self.lr_decay,
            lr_decay_start=float(self.lr_decay_start),
            **streamed,
        )
        self.model_ = model
        self.components_ = model.W1
        self.intercept_hidden_ = model.b1
        self.n_iter_ = self.n_iter_ + summary["n_iter"] if continuing else summary["n_iter"]
        # The cost after each iteration or epoch (the engine's curve also has the start's,
        # and a continued run's curve its earlier epochs').
        curve = [cost for step, cost in summary["curve"] if step > (state.epoch if state else 0)]
        self.loss_curve_ = self.loss_curve_ + curve if continuing else curve
        self.stop_reason_ = summary["stop"]
        self._training_state = new_state if incremental else None
        self._seed = seed if incremental else None
        if error is not None:
            raise error
        return self

    # -- using a fitted model ----------------------------------------------------------------

    def transform(self, X) -> np.ndarray:
        """The hidden layer's activations of each row of `X`: ``m×n_hidden``."""
        check_is_fitted(self, "model_")
        return self.model_.encode(self._validate(X, reset=False), self.n_threads)

    def inverse_transform(self, X) -> np.ndarray:
        """The decoder applied to hidden activations (``m×n_hidden``): ``m×n``."""
        check_is_fitted(self, "model_")
        hidden = np.ascontiguousarray(X, dtype=self.model_.dtype)
        if hidden.ndim != 2:
            raise InvalidInputError(f"X must be 2-D (m×n_hidden), not {hidden.ndim}-D")
        return self.model_.decode(hidden, self.n_threads)

    def reconstruct(self, X) -> np.ndarray:
        """Each row of `X` encoded and decoded: ``m×n``."""
        check_is_fitted(self, "model_")
        return self.model_.reconstruct(self._validate(X, reset=False), self.n_threads)

    def score(self, X, y=None) -> float:
        """The negative cost ``−J`` of the model on `X` (reconstruction and penalties)."""
        check_is_fitted(self, "model_")
        X = self._validate(X, reset=False)
        hyper = self.model_.hyper.to_dict()
        hyper.pop("n_visible")
        objective = Objective(X, hyper.pop("n_hidden"), n_threads=self.n_threads, **hyper)
        try:
            cost, _ = objective(self.model_.theta)
        except SaturationError:
            # A unit saturated on X: the KL penalty, and so the cost, is infinite there.
            return -np.inf
        return -cost


class VariationalAutoencoder(_EngineTransformer):
    """A variational autoencoder (Kingma & Welling): encoder `n → n_hidden → 2·n_latent` (the
    mean and log-variance of `q(z|x)`), decoder `n_latent → n_hidden → n` with a `decoder`
    likelihood (``"bernoulli"`` for data in [0, 1], ``"gaussian"``), trained by Adam on the
    negative ELBO, `max_iter` epochs of `batch_size`. `transform` is the latent mean `μ(x)`,
    `inverse_transform` the decoder's mean at `z`, `sample(n)` draws from the prior."""

    def __init__(
        self,
        n_latent: int = 20,
        *,
        n_hidden: int = 400,
        activation: str = "tanh",
        decoder: str = "bernoulli",
        max_iter: int = 10,
        batch_size: int = 128,
        learning_rate_init: float = 1e-3,
        random_state=None,
        dtype=None,
        n_threads: Optional[int] = None,
        verbose: bool = False,
    ):
        self.n_latent = n_latent
        self.n_hidden = n_hidden
        self.activation = activation
        self.decoder = decoder
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.random_state = random_state
        self.dtype = dtype
        self.n_threads = n_threads
        self.verbose = verbose

    @property
    def _n_features_out(self) -> int:
        return self.n_latent

    def fit(self, X, y=None, *, callback=None):
        """Trains on `X` (`m×n`); `y` is ignored."""
        _check_threads(self.n_threads)
        for name in ("n_latent", "n_hidden", "max_iter", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise InvalidInputError(f"{name} = {value!r} must be a positive integer")
        X = self._validate(X, reset=True)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        theta0 = vae_initial_theta(X.shape[1], int(self.n_hidden), int(self.n_latent), seed, X.dtype.name)
        model, summary, error = _train_vae(
            X,
            int(self.n_hidden),
            int(self.n_latent),
            theta0,
            activation=self.activation,
            decoder=self.decoder,
            epochs=int(self.max_iter),
            batch_size=int(self.batch_size),
            learning_rate=float(self.learning_rate_init),
            random_state=seed,
            callback=self._progress(callback),
            n_threads=self.n_threads,
        )
        self.model_ = model
        self.n_iter_ = summary["n_iter"]
        self.loss_curve_ = [cost for _, cost in summary["curve"]]
        if error is not None:
            raise error
        return self

    def transform(self, X) -> np.ndarray:
        """The latent mean `μ(x)` of each row of `X`: ``m×n_latent``."""
        check_is_fitted(self, "model_")
        return self.model_.encode(self._validate(X, reset=False))

    def inverse_transform(self, Z) -> np.ndarray:
        """The decoder's mean at each latent vector (``m×n_latent``): ``m×n``."""
        check_is_fitted(self, "model_")
        return self.model_.decode(np.asarray(Z, dtype=self.model_.dtype))

    def sample(self, n_samples: int = 1, random_state=None) -> np.ndarray:
        """`n_samples` draws of the decoder's mean at `z ~ N(0, I)`: ``n_samples×n``."""
        check_is_fitted(self, "model_")
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        return self.model_.sample(int(n_samples), seed)


class StackedAutoencoderClassifier(ClassifierMixin, _EngineTransformer):
    """UFLDL's stacked autoencoder, a classifier: greedy layer-wise pretraining of sparse
    autoencoders (sigmoid units, KL penalty of weight `sparsity_weight` towards
    `sparsity_target`, weight decay `alpha`; `max_iter` L-BFGS iterations each), each on the
    features of the one below; softmax regression on the top layer's features (weight decay
    `softmax_alpha`, `softmax_max_iter` iterations); then fine-tuning of the whole network, the
    softmax's log-loss backpropagated through every layer (`fine_tune_max_iter` iterations,
    weight decay `softmax_alpha` on the softmax weights; 0 keeps the pretrained layers).

    `transform` gives the top layer's features (``m×hidden_layer_sizes[-1]``), `predict` the
    classes, `predict_proba` their probabilities, `score` the accuracy. The defaults are the
    exercise's (two layers of 200 units, ρ = 0.1, β = 3, λ = 3e-3, softmax λ = 1e-4).

    `callback(info)` passed to :meth:`fit` is called after each iteration of each stage, with
    ``info["stage"]`` naming it (``"layer 1"``, …, ``"softmax"``, ``"fine-tuning"``); returning
    ``False`` ends that stage there and fitting goes on with the next one. Ctrl-C stops the
    fit: during fine-tuning the network so far is kept, before it nothing is fitted (an
    earlier fit is forgotten); then ``KeyboardInterrupt`` is raised. An exception raised by the
    callback ends the fit the same way. Up to 256 classes. The model file `save` writes holds
    the network, not `classes_`: loaded with :func:`sae.load`, it predicts class indices.

    Fitted attributes: `classes_`, `model_` (a :class:`sae.StackModel`), `layers_` (the
    pretrained :class:`SparseAutoencoder` of each layer, with their curves), `n_iter_`,
    `loss_curve_` and `stop_reason_` of the fine-tuning (of the softmax when there is none).
    """

    def __init__(
        self,
        hidden_layer_sizes=(200, 200),
        *,
        sparsity_target: float = 0.1,
        sparsity_weight: float = 3.0,
        alpha: float = 3e-3,
        softmax_alpha: float = 1e-4,
        max_iter: int = 400,
        softmax_max_iter: int = 100,
        fine_tune_max_iter: int = 400,
        random_state=None,
        dtype=None,
        n_threads: Optional[int] = None,
        verbose: bool = False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.sparsity_target = sparsity_target
        self.sparsity_weight = sparsity_weight
        self.alpha = alpha
        self.softmax_alpha = softmax_alpha
        self.max_iter = max_iter
        self.softmax_max_iter = softmax_max_iter
        self.fine_tune_max_iter = fine_tune_max_iter
        self.random_state = random_state
        self.dtype = dtype
        self.n_threads = n_threads
        self.verbose = verbose

    @property
    def _n_features_out(self) -> int:
        return int(self._sizes()[-1])

    def _sizes(self) -> list:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, (int, np.integer)) else list(sizes)
        if not sizes or not all(isinstance(h, (int, np.integer)) and h >= 1 for h in sizes):
            raise InvalidInputError(
                f"hidden_layer_sizes = {self.hidden_layer_sizes!r} must be one or more positive integers"
            )
        return [int(h) for h in sizes]

    def _check_params(self) -> list:
        _check_threads(self.n_threads)
        if not (isinstance(self.softmax_alpha, (int, float, np.floating)) and 0 <= self.softmax_alpha < np.inf):
            raise InvalidInputError(f"softmax_alpha = {self.softmax_alpha!r} must be finite and ≥ 0")
        for name in ("max_iter", "softmax_max_iter", "fine_tune_max_iter"):
            value, least = getattr(self, name), 0 if name == "fine_tune_max_iter" else 1
            if not isinstance(value, (int, np.integer)) or value < least:
                kind = "a non-negative" if least == 0 else "a positive"
                raise InvalidInputError(f"{name} = {value!r} must be {kind} integer")
        return self._sizes()

    def fit(self, X, y, *, callback: Optional[Callable[[dict], Optional[bool]]] = None):
        """Pretrains the layers on `X` (`m×n`), then trains the softmax and fine-tunes the
        network on `X` and its labels `y`."""
        sizes = self._check_params()
        X, y = _validate_data(self, X, y, **self._checks(reset=True))
        X = self._precision(X, reset=True)
        check_classification_targets(y)
        classes, labels = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise InvalidInputError(f"a classifier needs examples of 2 classes or more; y has {len(classes)} class")
        if len(classes) > 256:
            raise InvalidInputError(f"y has {len(classes)} classes; the stack classifies into at most 256")
        labels = labels.astype(np.uint8)
        seeds = check_random_state(self.random_state).randint(np.iinfo(np.int32).max, size=len(sizes) + 1)
        progress = self._progress(callback)

        def stage(name: str):
            if progress is None:
                return None

            def report(info: dict):
                info["stage"] = name
                return progress(info)

            return report

        try:
            model, layers, summary = self._pretrain(X, labels, len(classes), sizes, seeds, stage)
            error = None
            if self.fine_tune_max_iter > 0:
                model, summary, error = _fine_tune_stack(
                    X,
                    labels,
                    model.sizes,
                    len(classes),
                    model.theta,
                    alpha=float(self.softmax_alpha),
                    max_iter=int(self.fine_tune_max_iter),
                    callback=stage("fine-tuning"),
                    n_threads=self.n_threads,
                )
        except BaseException:
            # Nothing of this fit is kept, not the input's shape either (an interrupted
            # fine-tuning returns its network as `error`, and that is kept).
            for name in ("classes_", "layers_", "model_", "n_features_in_", "feature_names_in_"):
                self.__dict__.pop(name, None)
            raise
        self.classes_, self.layers_, self.model_ = classes, layers, model
        self.n_iter_, self.stop_reason_ = summary["n_iter"], summary["stop"]
        self.loss_curve_ = [cost for step, cost in summary["curve"] if step > 0]
        if error is not None:
            raise error
        return self

    def _pretrain(self, X, labels, k, sizes, seeds, stage):
        """Greedy layer-wise pretraining (each layer a sparse autoencoder of the layer below),
        then softmax on the top layer's features: the network before fine-tuning, the layers,
        and the softmax's run."""
        layers, features = [], X
        for depth, (hidden, seed) in enumerate(zip(sizes, seeds)):
            layer = SparseAutoencoder(
                hidden,
                sparsity_target=self.sparsity_target,
                sparsity_weight=self.sparsity_weight,
                alpha=self.alpha,
                max_iter=self.max_iter,
                random_state=int(seed),
                dtype=X.dtype.name,
                n_threads=self.n_threads,
            )
            layer.fit(features, callback=stage(f"layer {depth + 1}"))
            features = layer.transform(features)
            layers.append(layer)

        # UFLDL's softmaxTrain starts from 0.005 · randn.
        start = 0.005 * np.random.default_rng(int(seeds[-1])).standard_normal(k * sizes[-1])
        softmax, summary, error = _train_softmax(
            features,
            labels,
            k,
            start.astype(X.dtype),
            alpha=float(self.softmax_alpha),
            max_iter=int(self.softmax_max_iter),
            callback=stage("softmax"),
            n_threads=self.n_threads,
        )
        if error is not None:
            raise error
        return StackModel.from_pretrained(k, softmax, [layer.model_ for layer in layers]), layers, summary

    def transform(self, X) -> np.ndarray:
        """The top layer's features of each row of `X`: ``m×hidden_layer_sizes[-1]``."""
        check_is_fitted(self, "model_")
        return self.model_.features(self._validate(X, reset=False))

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row of `X` (of `classes_`)."""
        check_is_fitted(self, "model_")
        return self.classes_[self.model_.predict(self._validate(X, reset=False))]

    def predict_proba(self, X) -> np.ndarray:
        """The probability of each class of `classes_` for each row of `X`: ``m×len(classes_)``,
        in the model's dtype (rows sum to 1 to its rounding)."""
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(self._validate(X, reset=False))

    def predict_log_proba(self, X) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`, computed as such (finite where a probability
        rounds to 0)."""
        check_is_fitted(self, "model_")
        return self.model_.predict_log_proba(self._validate(X, reset=False))


def _same_model(a: HyperParams, b: HyperParams) -> bool:
    """Whether a model of `a` can continue as one of `b`: the same hyper-parameters, the
    corruption's seed aside (each call draws its own)."""
    a, b = a.to_dict(), b.to_dict()
    a.pop("corruption_seed"), b.pop("corruption_seed")
    return a == b


__all__ = ["SparseAutoencoder", "StackedAutoencoderClassifier", "VariationalAutoencoder"]
