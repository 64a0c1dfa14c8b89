"""Type stubs of the extension module `sae._sae` (the Rust engine)."""

from os import PathLike
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, PathLike[str]]
_Floats = npt.NDArray[np.floating[Any]]

class HyperParams:
    def __init__(
        self,
        n_visible: int,
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
    ) -> None: ...
    @property
    def n_visible(self) -> int: ...
    @property
    def n_hidden(self) -> int: ...
    @property
    def theta_len(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, other: object) -> bool: ...

def initial_theta(n_visible: int, n_hidden: int, seed: int = 0, dtype: str = "float64") -> _Floats: ...

class Objective:
    def __init__(self, x: _Floats, hyper: HyperParams, n_threads: Optional[int] = None) -> None: ...
    def __call__(self, theta: _Floats) -> Tuple[float, _Floats]: ...
    @property
    def hyper(self) -> HyperParams: ...
    @property
    def dtype(self) -> str: ...
    @property
    def terms(self) -> Optional[dict[str, float]]: ...
    @property
    def rho_hat(self) -> npt.NDArray[np.float64]: ...

class StreamingObjective:
    def __init__(
        self,
        path: _Path,
        hyper: HyperParams,
        dtype: str = "float64",
        chunk: int = 16384,
        mode: str = "one-pass",
        n_threads: Optional[int] = None,
    ) -> None: ...
    def __call__(self, theta: _Floats) -> Tuple[float, _Floats]: ...
    @property
    def examples(self) -> int: ...
    @property
    def hyper(self) -> HyperParams: ...
    @property
    def chunk(self) -> int: ...
    @property
    def terms(self) -> Optional[dict[str, float]]: ...
    @property
    def rho_hat(self) -> npt.NDArray[np.float64]: ...

class Model:
    @staticmethod
    def from_theta(hyper: HyperParams, theta: _Floats) -> Model: ...
    @staticmethod
    def load(path: _Path) -> Model: ...
    def save(self, path: _Path) -> None: ...
    @property
    def hyper(self) -> HyperParams: ...
    @property
    def dtype(self) -> str: ...
    @property
    def theta(self) -> _Floats: ...
    @property
    def W1(self) -> _Floats: ...
    @property
    def W2(self) -> _Floats: ...
    @property
    def b1(self) -> _Floats: ...
    @property
    def b2(self) -> _Floats: ...
    @property
    def metadata(self) -> dict[str, str]: ...
    def encode(self, x: _Floats, n_threads: Optional[int] = None) -> _Floats: ...
    def decode(self, hidden: _Floats, n_threads: Optional[int] = None) -> _Floats: ...
    def reconstruct(self, x: _Floats, n_threads: Optional[int] = None) -> _Floats: ...

def train(
    x: _Floats,
    hyper: HyperParams,
    theta0: _Floats,
    *,
    solver: str = "lbfgs",
    max_iter: int = 400,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    momentum: float = 0.9,
    random_state: int = 0,
    callback: Optional[Callable[[dict[str, float]], Optional[bool]]] = None,
    n_threads: Optional[int] = None,
) -> Tuple[Model, dict[str, Any], Optional[BaseException]]: ...
