#!/usr/bin/env python3
"""The same sparse autoencoder objective (SPEC §1, the vectorised UFLDL formulation) in numpy,
PyTorch (eager and torch.compile) and JAX (jit), timed on the SPEC §3 shapes on ONE core.

Not part of CI. Run it the same hour as `cargo bench`, pinned to one core, e.g.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE taskset -c 0 python3 benches/peers/peers.py

(OPENBLAS_CORETYPE/L2_SIZE are unset for numpy's own, current OpenBLAS; see PERF.md.)
Prints one line per (shape, dtype, implementation): the median of repeated cost+gradient
evaluations, and checks every implementation's cost against numpy's f64 result.
"""
import os
import sys
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np

SHAPES = {
    "S1": (64, 25, 10_000, 1e-4, 3.0, 0.01),
    "S2": (784, 196, 10_000, 3e-3, 3.0, 0.1),
    "S3": (784, 196, 60_000, 3e-3, 3.0, 0.1),
    "S4": (1024, 2048, 8_192, 1e-4, 3.0, 0.05),
}


def problem(shape, dtype):
    n, h, m, *_ = SHAPES[shape]
    rng = np.random.default_rng(2024)
    data = rng.uniform(0.1, 0.9, size=(m, n)).astype(dtype)  # rows are examples
    r = np.sqrt(6.0 / (n + h + 1))
    theta = np.concatenate([rng.uniform(-r, r, 2 * h * n), np.zeros(h + n)]).astype(dtype)
    return data, theta


def numpy_cost_grad(theta, X, n, h, lam, beta, rho):
    """X: n×m. Returns (cost, grad) in the UFLDL theta layout."""
    m = X.shape[1]
    hn = h * n
    W1 = theta[:hn].reshape(h, n, order="F")
    W2 = theta[hn:2 * hn].reshape(n, h, order="F")
    b1 = theta[2 * hn:2 * hn + h]
    b2 = theta[2 * hn + h:]
    a2 = 1.0 / (1.0 + np.exp(-(W1 @ X + b1[:, None])))
    rho_hat = a2.mean(axis=1)
    a3 = 1.0 / (1.0 + np.exp(-(W2 @ a2 + b2[:, None])))
    diff = a3 - X
    kl = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    cost = 0.5 / m * np.sum(diff * diff) + lam / 2 * (np.sum(W1 * W1) + np.sum(W2 * W2)) + beta * kl
    delta3 = diff * a3 * (1 - a3)
    s = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
    delta2 = (W2.T @ delta3 + s[:, None]) * a2 * (1 - a2)
    grad = np.concatenate([
        (delta2 @ X.T / m + lam * W1).ravel(order="F"),
        (delta3 @ a2.T / m + lam * W2).ravel(order="F"),
        delta2.sum(axis=1) / m,
        delta3.sum(axis=1) / m,
    ])
    return cost, grad


def torch_impl(compiled):
    import torch
    torch.set_num_threads(1)

    def cost_grad(theta, X, n, h, lam, beta, rho):
        m = X.shape[1]
        hn = h * n
        W1 = theta[:hn].reshape(n, h).T
        W2 = theta[hn:2 * hn].reshape(h, n).T
        b1 = theta[2 * hn:2 * hn + h]
        b2 = theta[2 * hn + h:]
        a2 = torch.sigmoid(W1 @ X + b1[:, None])
        rho_hat = a2.mean(dim=1)
        a3 = torch.sigmoid(W2 @ a2 + b2[:, None])
        diff = a3 - X
        kl = torch.sum(rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat)))
        cost = 0.5 / m * torch.sum(diff * diff) + lam / 2 * (torch.sum(W1 * W1) + torch.sum(W2 * W2)) + beta * kl
        delta3 = diff * a3 * (1 - a3)
        s = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
        delta2 = (W2.T @ delta3 + s[:, None]) * a2 * (1 - a2)
        grad = torch.cat([
            (delta2 @ X.T / m + lam * W1).T.reshape(-1),
            (delta3 @ a2.T / m + lam * W2).T.reshape(-1),
            delta2.sum(dim=1) / m,
            delta3.sum(dim=1) / m,
        ])
        return cost, grad

    fn = torch.compile(cost_grad) if compiled else cost_grad

    def run(theta, X, *hyper):
        t, x = torch.from_numpy(theta), torch.from_numpy(X)
        with torch.no_grad():
            return lambda: fn(t, x, *hyper)
    return run


def jax_impl():
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from functools import partial

    @partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
    def cost_grad(theta, X, n, h, lam, beta, rho):
        m = X.shape[1]
        hn = h * n
        W1 = theta[:hn].reshape(n, h).T
        W2 = theta[hn:2 * hn].reshape(h, n).T
        b1 = theta[2 * hn:2 * hn + h]
        b2 = theta[2 * hn + h:]
        a2 = jax.nn.sigmoid(W1 @ X + b1[:, None])
        rho_hat = a2.mean(axis=1)
        a3 = jax.nn.sigmoid(W2 @ a2 + b2[:, None])
        diff = a3 - X
        kl = jnp.sum(rho * jnp.log(rho / rho_hat) + (1 - rho) * jnp.log((1 - rho) / (1 - rho_hat)))
        cost = 0.5 / m * jnp.sum(diff * diff) + lam / 2 * (jnp.sum(W1 * W1) + jnp.sum(W2 * W2)) + beta * kl
        delta3 = diff * a3 * (1 - a3)
        s = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
        delta2 = (W2.T @ delta3 + s[:, None]) * a2 * (1 - a2)
        grad = jnp.concatenate([
            (delta2 @ X.T / m + lam * W1).T.reshape(-1),
            (delta3 @ a2.T / m + lam * W2).T.reshape(-1),
            delta2.sum(axis=1) / m,
            delta3.sum(axis=1) / m,
        ])
        return cost, grad

    def run(theta, X, *hyper):
        t, x = jax.device_put(theta), jax.device_put(X)
        return lambda: jax.block_until_ready(cost_grad(t, x, *hyper))
    return run


def numpy_run(theta, X, *hyper):
    return lambda: numpy_cost_grad(theta, X, *hyper)


def median_time(call, budget=4.0, min_runs=5):
    call()  # warm-up (and compilation)
    times = []
    while len(times) < min_runs or (sum(times) < budget and len(times) < 50):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), len(times)


def main():
    shapes = sys.argv[1].split(",") if len(sys.argv) > 1 else list(SHAPES)
    impls = {"numpy": lambda: numpy_run}
    try:
        import torch  # noqa: F401
        impls["torch"] = lambda: torch_impl(False)
        impls["torch.compile"] = lambda: torch_impl(True)
    except ImportError:
        print("# PyTorch not installed", flush=True)
    try:
        import jax  # noqa: F401
        impls["jax.jit"] = jax_impl
    except ImportError:
        print("# JAX not installed", flush=True)
    print(f"# numpy {np.__version__}", flush=True)
    for shape in shapes:
        n, h, m, lam, beta, rho = SHAPES[shape]
        for dtype in (np.float32, np.float64):
            data, theta = problem(shape, dtype)
            X = data.T  # n×m view, columns are examples
            ref_cost, _ = numpy_cost_grad(theta.astype(np.float64), X.astype(np.float64), n, h, lam, beta, rho)
            for name, make in impls.items():
                try:
                    call = make()(theta, X, n, h, lam, beta, rho)
                    cost = float(call()[0])
                    t, runs = median_time(call)
                    print(f"{shape} {np.dtype(dtype).name} {name:14s} {t * 1e3:10.3f} ms  (median of {runs}; "
                          f"cost rel. diff {abs(cost - ref_cost) / ref_cost:.1e})", flush=True)
                except Exception as e:  # a peer that fails to run is reported, not fatal
                    print(f"{shape} {np.dtype(dtype).name} {name:14s} failed: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
