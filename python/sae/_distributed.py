"""Agreement between the processes of a run across processes (`comm=`) before it starts: a
check that fails on one process fails on all (or the others would wait for it in the engine's
first sum), and values every process must share are rank 0's. The communicator is anything
with mpi4py's ``Get_rank()``, ``Get_size()`` and ``Allreduce(send, recv)`` (a sum of float64
arrays, and of float32 ones for a float32 dictionary layer's gradient): nothing else of it is
used."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import DistributedError, InvalidInputError


def sum_over(comm, values: np.ndarray) -> np.ndarray:
    """The element-wise sum of every process's float64 `values` (``comm.Allreduce``)."""
    sums = np.zeros_like(values)
    comm.Allreduce(values, sums)
    return sums


def agreed(comm, check: Callable, what: str):
    """`check()` on every process of `comm`, its failure on any one raised by every process: its
    own error by the process that failed, a :class:`DistributedError` naming it by the others
    (who would otherwise wait for it in the training's first sum)."""
    try:
        result, error = check(), None
    except Exception as e:  # noqa: BLE001 -- re-raised below, after the processes agree
        result, error = None, e
    failed = np.zeros(comm.Get_size())
    failed[comm.Get_rank()] = error is not None
    failed = sum_over(comm, failed)
    if error is not None:
        raise error
    if failed.any():
        rank = int(np.flatnonzero(failed)[0])
        raise DistributedError(f"rank {rank} of the distributed job failed ({what}); its own error is reported by that rank")
    return result


def agree_layout(comm, n: int, dtype: np.dtype) -> None:
    """Fails on every process unless every process's data has rank 0's `n` columns and float
    `dtype` (the precision every process computes in)."""
    n0 = rank0_value(comm, n)
    size0 = rank0_value(comm, np.dtype(dtype).itemsize)

    def same():
        rank = comm.Get_rank()
        if n != n0:
            raise InvalidInputError(f"X has {n} columns (features) on rank {rank}, {n0} on rank 0")
        if np.dtype(dtype).itemsize != size0:
            raise InvalidInputError(f"X is {np.dtype(dtype)} on rank {rank}, float{8 * size0} on rank 0")

    agreed(comm, same, "checking its X's width and dtype")


def rank0_value(comm, value: int) -> int:
    """Rank 0's `value` (an integer below 2**53) on every process."""
    mine = np.array([float(value) if comm.Get_rank() == 0 else 0.0])
    return int(sum_over(comm, mine)[0])
