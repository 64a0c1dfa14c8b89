"""The exceptions of the engine: one base class, and subclasses of the built-in exception each
kind of fault is (so ``except ValueError`` keeps working). The message names the parameter,
file, row or column at fault."""


class SaeError(Exception):
    """Any error the engine reports."""


class InvalidInputError(SaeError, ValueError):
    """A parameter, array or theta the engine cannot use: out of its domain, of the wrong shape,
    or with a non-finite value."""


class ModelFileError(SaeError, ValueError):
    """A file that is not a model (or checkpoint) this engine wrote, or one with a bad field."""


class FileAccessError(SaeError, OSError):
    """A file that cannot be read or written (missing, a directory, locked by another run).
    Raised by :func:`sae.train_topk` for a checkpoint it could not write, it carries the run's
    ``model`` of that moment and its ``epochs``."""


class SaturationError(SaeError, FloatingPointError):
    """A cost that cannot be computed: a hidden unit whose mean activation is exactly 0 or 1
    (the KL penalty is infinite there), or a non-finite cost."""


class UnsupportedError(SaeError, RuntimeError):
    """Something this CPU or build cannot do (e.g. a forced instruction set it lacks)."""


class DistributedError(SaeError, RuntimeError):
    """A run across processes (`comm=`) that cannot go on: another process failed (its own
    error is its own), the processes' parameters drifted apart, or the communicator's sum
    failed."""


__all__ = [
    "SaeError",
    "InvalidInputError",
    "ModelFileError",
    "FileAccessError",
    "SaturationError",
    "UnsupportedError",
    "DistributedError",
]
