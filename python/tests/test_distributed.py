"""Runs across processes (`comm=`): the objective, the estimator and a TopK layer on a data set
split over 1, 2 and 3 processes follow one process on the whole data. The processes are threads here,
summing through a communicator of the interface mpi4py's has (`Get_rank`, `Get_size`,
`Allreduce`); the last test runs the real thing under `mpirun` with mpi4py when both are
installed."""

import os
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import sae
from sae import DistributedError, InvalidInputError, SparseAutoencoder


class ThreadComm:
    """Process `rank` of `size` threads: each `Allreduce` writes this thread's values into its
    slot, and every thread sums the slots in rank order once all have written. A thread left
    waiting 30 s fails the test (a sum some process skipped) instead of hanging it."""

    def __init__(self, group, rank):
        self.group, self.rank = group, rank

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return len(self.group["slots"])

    def Allreduce(self, send, recv):
        slots, barrier = self.group["slots"], self.group["barrier"]
        slots[self.rank] = np.array(send, dtype=np.float64)
        barrier.wait()
        total = slots[0].copy()
        for values in slots[1:]:
            total += values
        recv[...] = total
        barrier.wait()


def on_processes(size, work):
    """`work(comm)` on `size` threads as processes: each one's result, or the exception it raised."""
    group = {"slots": [None] * size, "barrier": threading.Barrier(size, timeout=30)}
    outcomes = [None] * size

    def run(rank):
        try:
            outcomes[rank] = work(ThreadComm(group, rank))
        except BaseException as e:  # noqa: BLE001 -- returned to the test
            outcomes[rank] = e

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a process waits for the others"
    return outcomes


def rows(m, rank, size):
    return slice(m * rank // size, m * (rank + 1) // size)


@pytest.fixture
def data():
    return np.random.default_rng(3).uniform(0.1, 0.9, size=(101, 16))


def relative(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("size", [1, 2, 3])
def test_the_objective_split_across_processes_is_the_whole_one(data, size):
    whole = sae.Objective(data, 5)
    theta = whole.initial_theta(1)
    cost, grad = whole(theta)

    def evaluate(comm):
        objective = sae.Objective(data[rows(len(data), comm.Get_rank(), size)], 5, comm=comm)
        return objective(theta), objective.rho_hat

    for rank, ((c, g), rho_hat) in enumerate(on_processes(size, evaluate)):
        assert abs(c - cost) <= 1e-12 * cost, (size, rank)
        assert relative(g, grad) <= 1e-12, (size, rank)
        np.testing.assert_allclose(rho_hat, whole.rho_hat, rtol=1e-12)


def test_a_process_may_hold_no_rows_and_the_rows_may_come_from_a_file(data, tmp_path):
    whole = sae.Objective(data, 5)
    theta = whole.initial_theta(2)
    cost, _ = whole(theta)
    # Three processes, the middle one holding nothing.
    parts = [data[:40], data[40:40], data[40:]]
    outcomes = on_processes(3, lambda comm: sae.Objective(parts[comm.Get_rank()], 5, comm=comm)(theta)[0])
    assert all(abs(c - cost) <= 1e-12 * cost for c in outcomes), outcomes
    path = tmp_path / "data.npy"
    np.save(path, data)
    outcomes = on_processes(2, lambda comm: sae.Objective(path, 5, comm=comm)(theta)[0])
    assert all(abs(c - cost) <= 1e-12 * cost for c in outcomes), outcomes


def test_a_bad_part_fails_every_process_naming_the_one_at_fault(data):
    bad = data.copy()
    bad[60, 3] = np.nan  # in rank 1's rows of 2

    for order in (np.ascontiguousarray, np.asfortranarray):  # named alike whatever the parts' order

        def make(comm):
            return sae.Objective(order(bad[rows(len(bad), comm.Get_rank(), 2)]), 5, comm=comm)

        own, other = on_processes(2, make)[::-1]
        assert isinstance(own, InvalidInputError) and "row 60, column 3" in str(own), own
        assert isinstance(other, DistributedError) and "rank 1" in str(other), other


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
@pytest.mark.parametrize("size", [2, 3])
def test_fit_across_processes_follows_one_process(data, solver, size):
    settings = dict(n_hidden=5, solver=solver, max_iter=15, batch_size=16, learning_rate_init=0.01, random_state=4)
    one = SparseAutoencoder(**settings).fit(data)

    def fit(comm):
        return SparseAutoencoder(**settings).fit(data[rows(len(data), comm.Get_rank(), size)], comm=comm)

    fitted = on_processes(size, fit)
    for rank, estimator in enumerate(fitted):
        assert not isinstance(estimator, BaseException), estimator
        assert relative(estimator.model_.theta, one.model_.theta) <= 1e-9, (solver, size, rank)
        np.testing.assert_array_equal(estimator.model_.theta, fitted[0].model_.theta)
        assert estimator.n_iter_ == one.n_iter_


@pytest.mark.parametrize("size", [2, 3])
def test_a_topk_layer_across_processes_follows_one_process(size):
    planted = np.random.default_rng(5).standard_normal((32, 16))
    codes = np.random.default_rng(6).uniform(0.5, 2.5, size=(301, 32)) * (np.random.default_rng(7).random((301, 32)) < 0.1)
    x, held_out = codes[:251] @ planted, codes[251:] @ planted
    settings = dict(
        n_latents=48, k=4, epochs=3, batch_size=64, auxk_alpha=1 / 32, normalize_inputs=True,
        held_out=held_out, early_stopping=1, seed=3,
    )
    one, one_epochs = sae.train_topk(x, **settings)

    def train(comm):
        return sae.train_topk(x[rows(len(x), comm.Get_rank(), size)], comm=comm, **settings)

    trained = on_processes(size, train)
    for rank, outcome in enumerate(trained):
        assert not isinstance(outcome, BaseException), outcome
        model, epochs = outcome
        for name in ["W_enc", "W_dec", "b_enc", "b_dec"]:
            assert relative(getattr(model, name), getattr(one, name)) <= 1e-9, (size, rank, name)
            np.testing.assert_array_equal(getattr(model, name), getattr(trained[0][0], name))
        assert [e["epoch"] for e in epochs] == [e["epoch"] for e in one_epochs]
        for epoch, one_epoch in zip(epochs, one_epochs):
            assert epoch["fvu"] == pytest.approx(one_epoch["fvu"], rel=1e-9)
            assert epoch["held_out"]["fvu"] == pytest.approx(one_epoch["held_out"]["fvu"], rel=1e-9)


def test_a_float32_topk_layer_sums_its_gradient_in_float32_and_follows_one_process():
    planted = np.random.default_rng(5).standard_normal((32, 16))
    codes = np.random.default_rng(6).uniform(0.5, 2.5, size=(251, 32)) * (np.random.default_rng(7).random((251, 32)) < 0.1)
    x = (codes @ planted).astype(np.float32)
    settings = dict(n_latents=48, k=4, epochs=3, batch_size=64, seed=3)
    one, _ = sae.train_topk(x, **settings)
    dtypes = set()

    def train(comm):
        allreduce = comm.Allreduce

        def recording(send, recv):
            dtypes.add(np.asarray(send).dtype)
            allreduce(send, recv)

        comm.Allreduce = recording
        return sae.train_topk(x[rows(len(x), comm.Get_rank(), 2)], comm=comm, **settings)

    trained = on_processes(2, train)
    assert np.dtype(np.float32) in dtypes, dtypes
    for outcome in trained:
        assert not isinstance(outcome, BaseException), outcome
        model, _ = outcome
        for name in ["W_enc", "W_dec", "b_enc", "b_dec"]:
            assert getattr(model, name).dtype == np.float32
            assert relative(getattr(model, name), getattr(one, name)) <= 1e-5, name
            np.testing.assert_array_equal(getattr(model, name), getattr(trained[0][0], name))


def test_a_bad_value_in_one_process_rows_fails_every_topk_process():
    x = np.random.default_rng(8).standard_normal((60, 8))
    x[45, 3] = np.nan

    def train(comm):
        return sae.train_topk(x[rows(len(x), comm.Get_rank(), 2)], 16, 2, epochs=1, batch_size=16, comm=comm)

    first, second = on_processes(2, train)
    assert isinstance(second, InvalidInputError) and "row 45" in str(second), second
    assert isinstance(first, DistributedError) and "rank 1" in str(first), first

    # A process given X of another width, or other arguments, fails every process.
    def other_width(comm):
        mine = x[rows(len(x), comm.Get_rank(), 2)]
        mine = mine[:, :6] if comm.Get_rank() == 1 else np.nan_to_num(mine)
        return sae.train_topk(mine, 16, 2, epochs=1, batch_size=16, comm=comm)

    for outcome in on_processes(2, other_width):
        assert isinstance(outcome, (InvalidInputError, DistributedError)), outcome

    def other_k(comm):
        mine = np.nan_to_num(x[rows(len(x), comm.Get_rank(), 2)])
        return sae.train_topk(mine, 16, 2 + comm.Get_rank(), epochs=1, batch_size=16, comm=comm)

    for outcome in on_processes(2, other_k):
        assert "rank 1: its k (3) differs from the first process's (2)" in str(outcome), outcome


def test_a_stop_one_process_asks_for_stops_every_process_after_the_same_iteration(data):
    def fit(comm):
        stop_at = 4 if comm.Get_rank() == 1 else None
        callback = lambda info: info["iteration"] != stop_at  # noqa: E731
        estimator = SparseAutoencoder(n_hidden=5, max_iter=50, random_state=0)
        return estimator.fit(data[rows(len(data), comm.Get_rank(), 2)], callback=callback, comm=comm)

    first, second = on_processes(2, fit)
    assert first.n_iter_ == second.n_iter_ == 5, (first.n_iter_, second.n_iter_)
    np.testing.assert_array_equal(first.model_.theta, second.model_.theta)


def test_the_seed_is_rank_0s_and_bad_input_on_one_process_fails_all(data):
    # random_state=None draws a seed per process: rank 0's is used by all.
    fitted = on_processes(2, lambda comm: SparseAutoencoder(n_hidden=4, max_iter=3).fit(data, comm=comm))
    np.testing.assert_array_equal(fitted[0].model_.theta, fitted[1].model_.theta)

    def wrong_width(comm):
        X = data if comm.Get_rank() == 0 else data[:, :10]
        return SparseAutoencoder(n_hidden=4, max_iter=3, random_state=0).fit(X, comm=comm)

    first, second = on_processes(2, wrong_width)
    assert isinstance(first, DistributedError), first
    assert isinstance(second, BaseException) and not isinstance(second, DistributedError), second

    # A process holding no rows in another precision would compute in it.
    def other_dtype(comm):
        X = data[:50].astype(np.float32) if comm.Get_rank() == 0 else np.empty((0, 16))
        return sae.Objective(X, 4, comm=comm)

    first, second = on_processes(2, other_dtype)
    assert isinstance(first, DistributedError), first
    assert isinstance(second, InvalidInputError) and "float64 on rank 1, float32 on rank 0" in str(second), second


MPI_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from mpi4py import MPI
    import sae

    comm = MPI.COMM_WORLD
    X = np.load(sys.argv[1], mmap_mode="r")
    m, rank, size = len(X), comm.Get_rank(), comm.Get_size()
    mine = np.array(X[m * rank // size : m * (rank + 1) // size])
    estimator = sae.SparseAutoencoder(n_hidden=5, max_iter=15, random_state=4).fit(mine, comm=comm)
    if rank == 0:
        np.save(sys.argv[2], estimator.model_.theta)
    """
)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs OpenMPI's mpirun")
def test_fit_under_mpirun_with_mpi4py_follows_one_process(data, tmp_path):
    pytest.importorskip("mpi4py")
    script, x, out = tmp_path / "fit.py", tmp_path / "x.npy", tmp_path / "theta.npy"
    script.write_text(MPI_SCRIPT)
    np.save(x, data)
    command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", sys.executable, str(script), str(x), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMPI_MCA_rmaps_base_oversubscribe": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    one = SparseAutoencoder(n_hidden=5, max_iter=15, random_state=4).fit(data)
    assert relative(np.load(out), one.model_.theta) <= 1e-9


# -- streamed from disk ------------------------------------------------------------------------


@pytest.fixture
def files(data, tmp_path):
    """`data` as one .npy file and as a folder of three shards."""
    path, shards = tmp_path / "data.npy", tmp_path / "shards"
    np.save(path, data)
    shards.mkdir()
    for i, part in enumerate([data[:30], data[30:31], data[31:]]):
        np.save(shards / f"{i}.npy", part)
    return path, shards


def test_lbfgs_streamed_from_a_file_or_shards_follows_lbfgs_in_memory(data, files):
    settings = dict(n_hidden=5, max_iter=15, random_state=4)
    one = SparseAutoencoder(**settings).fit(data)
    for path in files:
        streamed = SparseAutoencoder(**settings).fit(path)
        assert relative(streamed.model_.theta, one.model_.theta) <= 1e-9, path
        assert streamed.n_features_in_ == 16 and streamed.n_iter_ == one.n_iter_
        np.testing.assert_allclose(streamed.transform(data), one.transform(data), rtol=1e-8)


def test_adam_streamed_takes_the_same_steps_from_a_file_shards_or_processes(files):
    settings = dict(n_hidden=5, solver="adam", max_iter=3, batch_size=16, learning_rate_init=0.01, random_state=4,
                    shuffle_block=7, shuffle_window=3)
    path, shards = files
    from_file = SparseAutoencoder(**settings).fit(path)
    from_shards = SparseAutoencoder(**settings).fit(shards)
    np.testing.assert_array_equal(from_file.model_.theta, from_shards.model_.theta)
    assert from_file.loss_curve_[-1] < from_file.loss_curve_[0]
    # Each process reading its rows of the file: the same steps to rounding.
    for estimator in on_processes(3, lambda comm: SparseAutoencoder(**settings).fit(path, comm=comm)):
        assert relative(estimator.model_.theta, from_file.model_.theta) <= 1e-10
    # Another block size, another order.
    other = SparseAutoencoder(**{**settings, "shuffle_block": 5}).fit(path)
    assert relative(other.model_.theta, from_file.model_.theta) > 1e-6


def test_a_bad_value_in_a_streamed_file_is_named_by_its_row(data, tmp_path):
    bad = data.copy()
    bad[70, 2] = np.inf
    path = tmp_path / "bad.npy"
    np.save(path, bad)
    for solver in ["lbfgs", "adam"]:
        with pytest.raises(InvalidInputError, match="row 70, column 2"):
            SparseAutoencoder(n_hidden=4, solver=solver, max_iter=2, random_state=0).fit(path)
    with pytest.raises(InvalidInputError, match="shuffle_block"):
        SparseAutoencoder(n_hidden=4, solver="adam", shuffle_block=0).fit(path)
