"""The objective from Python: the same cost and gradient as a plain numpy transcription of the
UFLDL equations, in either memory order and precision, usable by scipy's optimisers."""

import threading

import numpy as np
import pytest
import scipy.optimize

import sae


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference(X, theta, h, lam=1e-4, beta=3.0, rho=0.01):
    """sparseAutoencoderCost.m, vectorised, in float64."""
    X = np.asarray(X, dtype=np.float64)
    m, n = X.shape
    W1 = theta[: h * n].reshape(n, h).T
    W2 = theta[h * n : 2 * h * n].reshape(h, n).T
    b1, b2 = theta[2 * h * n : 2 * h * n + h], theta[2 * h * n + h :]
    a2 = sigmoid(X @ W1.T + b1)
    a3 = sigmoid(a2 @ W2.T + b2)
    rho_hat = a2.mean(axis=0)
    kl = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    cost = 0.5 * np.sum((a3 - X) ** 2) / m + lam / 2 * (np.sum(W1**2) + np.sum(W2**2)) + beta * kl
    d3 = (a3 - X) * a3 * (1 - a3)
    sparsity = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
    d2 = (d3 @ W2 + sparsity) * a2 * (1 - a2)
    gW1 = d2.T @ X / m + lam * W1
    gW2 = d3.T @ a2 / m + lam * W2
    grad = np.concatenate([gW1.T.ravel(), gW2.T.ravel(), d2.mean(axis=0), d3.mean(axis=0)])
    return cost, grad


@pytest.mark.parametrize("order", ["C", "F"])
def test_cost_and_gradient_match_the_numpy_transcription_in_float64(patches, order):
    X = np.asarray(patches, order=order)
    objective = sae.Objective(X, 5)
    theta = sae.initial_theta(16, 5, seed=3)
    cost, grad = objective(theta)
    want_cost, want_grad = reference(X, theta, 5)
    assert grad.dtype == np.float64
    assert cost == pytest.approx(want_cost, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-14)


def test_float32_data_is_computed_in_float32(patches):
    X = patches.astype(np.float32)
    objective = sae.Objective(X, 5)
    theta = sae.initial_theta(16, 5, seed=3, dtype="float32")
    cost, grad = objective(theta)
    want_cost, want_grad = reference(X, theta.astype(np.float64), 5)
    assert objective.dtype == np.float32 and grad.dtype == np.float32
    assert cost == pytest.approx(want_cost, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-3, atol=1e-6)


def test_contiguous_data_is_read_in_place_and_other_layouts_are_copied_once(patches):
    assert sae.Objective(patches, 4).X is patches
    fortran = np.asfortranarray(patches)
    assert sae.Objective(fortran, 4).X is fortran
    strided = patches[::2]
    copied = sae.Objective(strided, 4)
    assert copied.X.flags.c_contiguous and not np.shares_memory(copied.X, patches)
    theta = sae.initial_theta(16, 4, seed=1)
    assert copied(theta)[0] == pytest.approx(reference(strided, theta, 4)[0], rel=1e-12)


def test_a_memory_map_is_read_through_its_mapping(patches, tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, patches)
    mapped = np.load(path, mmap_mode="r")
    objective = sae.Objective(mapped, 4)
    assert isinstance(objective.X, np.memmap)
    theta = sae.initial_theta(16, 4, seed=1)
    assert objective(theta)[0] == sae.Objective(patches, 4)(theta)[0]


@pytest.mark.parametrize("mode", ["one-pass", "two-pass"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_file_or_a_shard_folder_streamed_equals_the_data_in_memory(patches, tmp_path, mode, dtype):
    X = patches.astype(dtype)
    np.save(tmp_path / "x.npy", X)
    shards = tmp_path / "shards"
    shards.mkdir()
    for i, part in enumerate(np.array_split(X, [50, 51, 130])):  # uneven, one of a single row
        np.save(shards / f"part-{i}.npy", part)
    theta = sae.initial_theta(16, 5, seed=3, dtype=np.dtype(dtype).name)
    cost, grad = sae.Objective(X, 5)(theta)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    for source in (tmp_path / "x.npy", shards):
        streamed = sae.Objective(source, 5, chunk=37, mode=mode)
        assert streamed.dtype == dtype and streamed.X is None
        got_cost, got_grad = streamed(theta)
        assert got_cost == pytest.approx(cost, rel=tolerance)
        np.testing.assert_allclose(got_grad, grad, rtol=tolerance * 100, atol=tolerance)
        assert streamed.rho_hat.shape == (5,)


def test_a_streamed_source_that_cannot_be_read_is_a_clear_error(patches, tmp_path):
    with pytest.raises(sae.FileAccessError, match="missing.npy"):
        sae.Objective(tmp_path / "missing.npy", 4)
    with pytest.raises(sae.FileAccessError, match="no .npy files"):
        sae.Objective(tmp_path, 4)
    np.save(tmp_path / "x.npy", patches)
    with pytest.raises(sae.InvalidInputError, match="mode"):
        sae.Objective(tmp_path / "x.npy", 4, mode="three-pass")


def test_the_gradient_passes_ufldls_check(patches):
    objective = sae.Objective(patches[:30, :6], 3, sparsity_target=0.1, activation="tanh", output="linear")
    assert sae.gradient_check(objective, sae.initial_theta(6, 3, seed=2)) < 1e-9


def test_terms_and_rho_hat_describe_the_last_evaluation(patches):
    objective = sae.Objective(patches, 5)
    theta = sae.initial_theta(16, 5, seed=3)
    assert objective.terms is None
    cost, _ = objective(theta)
    assert sum(objective.terms.values()) == pytest.approx(cost, rel=1e-12)
    W1 = theta[: 5 * 16].reshape(16, 5).T
    np.testing.assert_allclose(objective.rho_hat, sigmoid(patches @ W1.T).mean(axis=0), rtol=1e-12)


def test_scipy_lbfgs_minimises_it_as_in_the_ufldl_exercise(patches):
    objective = sae.Objective(patches, 5)
    theta0 = objective.initial_theta(seed=1)
    result = scipy.optimize.minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 100})
    assert result.fun < 0.5 * objective(theta0)[0]


def test_bad_input_is_a_clear_error(patches):
    objective = sae.Objective(patches, 4)
    with pytest.raises(ValueError, match="theta"):
        objective(np.zeros(10))
    bad = patches.copy()
    bad[3, 5] = np.nan
    # Named at X's row and column whatever its memory order (read in place either way).
    for x in (bad, np.asfortranarray(bad)):
        with pytest.raises(ValueError, match="row 3, column 5"):
            sae.Objective(x, 4)(sae.initial_theta(16, 4))
        with pytest.raises(ValueError, match="row 3, column 5"):
            sae.train_topk(x.astype(np.float32), 8, 2, epochs=1)
    outside = np.asfortranarray(patches.clip(0, 1))
    outside[6, 1] = 1.5
    with pytest.raises(ValueError, match="row 6, column 1"):
        sae.Objective(outside, 4, loss="cross-entropy")(sae.initial_theta(16, 4))
    with pytest.raises(ValueError, match="2-D"):
        sae.Objective(patches[0], 4)
    with pytest.raises(ValueError, match="activation"):
        sae.Objective(patches, 4, activation="softplus")
    for threads in (0, -1, 1.5):
        with pytest.raises(sae.InvalidInputError, match="n_threads"):
            sae.Objective(patches, 4, n_threads=threads)
    with pytest.raises(sae.InvalidInputError, match="dtype"):
        sae.Objective(np.array([["a", "b"]]), 1)


def test_data_made_non_finite_after_the_objective_is_named_at_the_next_call(patches):
    for X in (patches.copy(), np.asfortranarray(patches)):
        objective = sae.Objective(X, 4)
        theta = sae.initial_theta(16, 4)
        objective(theta)
        X[7, 2] = np.inf
        with pytest.raises(sae.InvalidInputError, match="row 7, column 2"):
            objective(theta)


def test_a_saturated_unit_is_a_floating_point_error_naming_it(patches):
    theta = sae.initial_theta(16, 4)
    theta[:64] = 50.0  # every W1 weight large: every unit's activation rounds to 1
    with pytest.raises(FloatingPointError, match="saturated"):
        sae.Objective(patches, 4)(theta)


def test_threads_evaluating_their_own_objectives_agree_with_one_thread(patches):
    theta = sae.initial_theta(16, 5, seed=3)
    objectives = [sae.Objective(patches * (1 - 0.1 * k), 5, n_threads=1) for k in range(4)]
    expected = [o(theta)[0] for o in objectives]
    results = [None] * 4

    def work(k):
        for _ in range(20):
            results[k] = objectives[k](theta)[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_scipy_check_grad_agrees(patches):
    import scipy.optimize

    objective = sae.Objective(patches[:40, :6], 3, sparsity_target=0.1)
    theta = sae.initial_theta(6, 3, seed=5)
    error = scipy.optimize.check_grad(lambda t: objective(t)[0], lambda t: objective(t)[1], theta, epsilon=1e-6)
    assert error < 1e-6 * np.linalg.norm(objective(theta)[1])


def test_errors_are_sae_errors_and_the_builtin_they_are(patches, tmp_path):
    with pytest.raises(sae.InvalidInputError) as bad_theta:
        sae.Objective(patches, 4)(np.zeros(10))
    assert isinstance(bad_theta.value, sae.SaeError) and isinstance(bad_theta.value, ValueError)
    with pytest.raises(sae.FileAccessError) as missing:
        sae.load(tmp_path / "missing.safetensors")
    assert isinstance(missing.value, OSError) and "missing.safetensors" in str(missing.value)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(sae.ModelFileError, match="junk.safetensors"):
        sae.load(tmp_path / "junk.safetensors")
    theta = sae.initial_theta(16, 4)
    theta[:64] = 50.0
    with pytest.raises(sae.SaturationError) as saturated:
        sae.Objective(patches, 4)(theta)
    assert isinstance(saturated.value, FloatingPointError)
    with pytest.raises(sae.InvalidInputError, match="penalty"):
        sae.HyperParams(16, 4, penalty="l2")


def test_evaluations_release_the_interpreter():
    """Two threads, each evaluating its own objective on one core: with the interpreter
    detached during the engine's work the process uses about two cores' worth of CPU time per
    second of wall time; holding it, one."""
    import time

    X = np.random.default_rng(0).uniform(0.1, 0.9, size=(20000, 64))
    objectives = [sae.Objective(X, 25, n_threads=1) for _ in range(2)]
    theta = objectives[0].initial_theta()

    def work(objective):
        for _ in range(15):
            objective(theta)

    threads = [threading.Thread(target=work, args=(o,)) for o in objectives]
    wall, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert cpu / wall > 1.4, f"{cpu:.2f} s of CPU in {wall:.2f} s: the evaluations did not run in parallel"
