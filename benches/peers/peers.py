#!/usr/bin/env python3
"""The same sparse autoencoder objective (SPEC §1, the vectorised UFLDL formulation) in numpy,
PyTorch (eager and torch.compile) and JAX (jit), timed on the SPEC §3 shapes on ONE core,
INTERLEAVED with the engine: each round times the engine (`sae objective … --threads 1`, a child
process of this one, evaluation time only) and then every peer, round after round; the figures
are the medians over rounds of each one's median, and the ratio peer/engine is taken per round
(then its median), so a machine whose speed drifts cannot bias a ratio.

Not part of CI. Build the engine first (`cargo build --release`), then, pinned to one core:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE taskset -c 0 python3 benches/peers/peers.py

(OPENBLAS_CORETYPE/L2_SIZE are unset for numpy's own, current OpenBLAS; see PERF.md.)
Every implementation's cost is checked against numpy's f64 result.
Arguments: an optional comma-separated list of shapes (`S1,S3`); `--rounds N` (default 5);
`--engine PATH` (default target/release/sae); `--backend NAME` passed to the engine;
`--gemms-only` times the five GEMMs alone in numpy and JAX instead.
"""
import os
import re
import tempfile
import subprocess
import sys
import time
from functools import partial

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
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


class Ops:
    """The few array operations whose names differ between numpy, PyTorch and JAX."""

    def __init__(self, sigmoid, log, total, row_mean, row_sum, concat):
        self.sigmoid, self.log, self.total = sigmoid, log, total
        self.row_mean, self.row_sum, self.concat = row_mean, row_sum, concat


def cost_grad(ops, theta, X, n, h, lam, beta, rho):
    """SPEC §1 for X: n×m (columns are examples). Returns (cost, grad), grad in the UFLDL theta
    layout [W1(:); W2(:); b1; b2] (column-major flattening: reshape the transposes row-major)."""
    m = X.shape[1]
    hn = h * n
    W1 = theta[:hn].reshape(n, h).T
    W2 = theta[hn:2 * hn].reshape(h, n).T
    b1 = theta[2 * hn:2 * hn + h]
    b2 = theta[2 * hn + h:]
    a2 = ops.sigmoid(W1 @ X + b1[:, None])
    rho_hat = ops.row_mean(a2)
    a3 = ops.sigmoid(W2 @ a2 + b2[:, None])
    diff = a3 - X
    kl = ops.total(rho * ops.log(rho / rho_hat) + (1 - rho) * ops.log((1 - rho) / (1 - rho_hat)))
    cost = 0.5 / m * ops.total(diff * diff) + lam / 2 * (ops.total(W1 * W1) + ops.total(W2 * W2)) + beta * kl
    delta3 = diff * a3 * (1 - a3)
    s = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
    delta2 = (W2.T @ delta3 + s[:, None]) * a2 * (1 - a2)
    grad = ops.concat([
        (delta2 @ X.T / m + lam * W1).T.reshape(-1),
        (delta3 @ a2.T / m + lam * W2).T.reshape(-1),
        ops.row_sum(delta2) / m,
        ops.row_sum(delta3) / m,
    ])
    return cost, grad


NUMPY = Ops(
    sigmoid=lambda z: 1.0 / (1.0 + np.exp(-z)),
    log=np.log,
    total=np.sum,
    row_mean=lambda a: a.mean(axis=1),
    row_sum=lambda a: a.sum(axis=1),
    concat=np.concatenate,
)


def numpy_run(theta, X, *hyper):
    return lambda: cost_grad(NUMPY, theta, X, *hyper)


def torch_impl(compiled):
    import torch
    torch.set_num_threads(1)
    ops = Ops(torch.sigmoid, torch.log, torch.sum, lambda a: a.mean(dim=1), lambda a: a.sum(dim=1), torch.cat)
    fn = torch.compile(partial(cost_grad, ops)) if compiled else partial(cost_grad, ops)

    def run(theta, X, *hyper):
        t, x = torch.from_numpy(theta), torch.from_numpy(X)

        def call():
            with torch.no_grad():
                return fn(t, x, *hyper)
        return call
    return run


def jax_impl():
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    ops = Ops(jax.nn.sigmoid, jnp.log, jnp.sum, lambda a: a.mean(axis=1), lambda a: a.sum(axis=1), jnp.concatenate)
    jitted = jax.jit(partial(cost_grad, ops), static_argnums=(2, 3, 4, 5, 6))

    def run(theta, X, *hyper):
        t, x = jax.device_put(theta), jax.device_put(X)
        return lambda: jax.block_until_ready(jitted(t, x, *hyper))
    return run


def median_time(call, budget=4.0, min_runs=5):
    call()  # warm-up (and compilation)
    times = []
    while len(times) < min_runs or (sum(times) < budget and len(times) < 50):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), len(times)


def round_time(call, budget=1.0, runs=3):
    """The median of at least `runs` calls (more while under `budget` seconds, up to 15)."""
    times = []
    while len(times) < runs or (sum(times) < budget and len(times) < 15):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def engine_time(engine, shape, files, backend, runs):
    """The engine's median evaluation time on `shape` in one thread, on the peers' data and
    theta (`files`: the two .npy paths), and its cost."""
    data, theta = files
    args = [engine, "objective", "--shape", shape, "--data", data, "--theta", theta, "--threads", "1",
            "--repeat", str(runs)]
    if backend:
        args += ["--backend", backend]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    t = float(re.search(r"^time\s+=\s+([0-9.]+) ms", out, re.M).group(1)) / 1e3
    cost = float(re.search(r"^cost\s+=\s+(\S+)", out, re.M).group(1))
    kernels = re.search(r"^problem: .*, (\S+ GEMMs.*kernels)", out, re.M)
    return t, cost, kernels.group(1) if kernels else "?"


def five_gemms(W1, W2, X):
    """The five GEMMs of SPEC §2.1 alone, on the operands' shapes: the GEMM-only bound."""
    a2 = W1 @ X
    z3 = W2 @ a2
    grad_w2 = z3 @ a2.T
    p = W2.T @ z3
    grad_w1 = p @ X.T
    return grad_w1, grad_w2


def gemms_only(shapes):
    """Times five_gemms in numpy and JAX (f32 and f64) for comparison with the engine's
    `gemm_bound` benchmark."""
    import jax
    jax.config.update("jax_enable_x64", True)
    jitted = jax.jit(five_gemms)
    for shape in shapes:
        n, h, m, *_ = SHAPES[shape]
        for dtype in (np.float32, np.float64):
            rng = np.random.default_rng(0)
            X = np.ascontiguousarray(rng.uniform(0.1, 0.9, (m, n)).astype(dtype).T)
            W1 = rng.uniform(-0.1, 0.1, (h, n)).astype(dtype)
            W2 = rng.uniform(-0.1, 0.1, (n, h)).astype(dtype)
            t_np, _ = median_time(lambda: five_gemms(W1, W2, X))
            args = [jax.device_put(a) for a in (W1, W2, X)]
            t_jax, _ = median_time(lambda: jax.block_until_ready(jitted(*args)))
            print(f"{shape} {np.dtype(dtype).name} five GEMMs only: numpy {t_np * 1e3:.3f} ms, "
                  f"jax.jit {t_jax * 1e3:.3f} ms", flush=True)


def option(name, default):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def main():
    values = {option(o, None) for o in ("--rounds", "--engine", "--backend")}
    args = [a for a in sys.argv[1:] if not a.startswith("--") and a not in values]
    shapes = args[0].split(",") if args else list(SHAPES)
    if "--gemms-only" in sys.argv:
        gemms_only(shapes)
        return
    rounds = int(option("--rounds", 5))
    engine = option("--engine", os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "sae"))
    backend = option("--backend", None)
    impls = {"numpy": lambda: numpy_run}
    try:
        import torch  # noqa: F401
        impls["torch"] = lambda: torch_impl(False)
        impls["torch.compile"] = lambda: torch_impl(True)
        print(f"# PyTorch {torch.__version__}, MKL {torch.backends.mkl.is_available()}", flush=True)
    except ImportError:
        print("# PyTorch not installed", flush=True)
    try:
        import jax  # noqa: F401
        impls["jax.jit"] = jax_impl
        print(f"# JAX {jax.__version__}", flush=True)
    except ImportError:
        print("# JAX not installed", flush=True)
    print(f"# numpy {np.__version__}; {rounds} interleaved rounds; engine {engine}", flush=True)
    for shape in shapes:
        n, h, m, lam, beta, rho = SHAPES[shape]
        flops = 10 * n * h * m
        for dtype in (np.float32, np.float64):
            name = np.dtype(dtype).name
            data, theta = problem(shape, dtype)
            # n×m, columns are examples, C-contiguous: the layout every peer is fastest with
            # (PyTorch eager is over twice as slow on S1 with a transposed view).
            X = np.ascontiguousarray(data.T)
            ref_cost, _ = cost_grad(NUMPY, theta.astype(np.float64), X.astype(np.float64), n, h, lam, beta, rho)
            calls = {}
            for peer, make in impls.items():
                try:
                    call = make()(theta, X, n, h, lam, beta, rho)
                    cost = float(call()[0])
                    call()  # warm-up (and compilation)
                    calls[peer] = call
                    print(f"{shape} {name} {peer:14s} cost rel. diff {abs(cost - ref_cost) / ref_cost:.1e}", flush=True)
                except Exception as e:  # a peer that fails to run is reported, not fatal
                    print(f"{shape} {name} {peer:14s} failed: {type(e).__name__}: {e}", flush=True)
            folder = tempfile.mkdtemp(prefix="sae-peers-")
            files = (os.path.join(folder, "data.npy"), os.path.join(folder, "theta.npy"))
            np.save(files[0], data)
            np.save(files[1], theta)
            times = {"engine": []}
            times.update({peer: [] for peer in calls})
            ratios = {peer: [] for peer in calls}
            kernels = "?"
            for _ in range(rounds):
                t, cost, kernels = engine_time(engine, shape, files, backend, runs=3)
                times["engine"].append(t)
                for peer, call in calls.items():
                    p = round_time(call)
                    times[peer].append(p)
                    ratios[peer].append(p / t)
            engine_median = float(np.median(times["engine"]))
            print(f"{shape} {name} engine         {engine_median * 1e3:10.3f} ms  {flops / engine_median / 1e9:7.1f} GFLOP/s  "
                  f"({kernels}; cost rel. diff {abs(cost - ref_cost) / ref_cost:.1e})", flush=True)
            for peer in calls:
                r = ratios[peer]
                print(f"{shape} {name} {peer:14s} {float(np.median(times[peer])) * 1e3:10.3f} ms  "
                      f"{flops / float(np.median(times[peer])) / 1e9:7.1f} GFLOP/s  peer/engine median {float(np.median(r)):.2f}× "
                      f"(rounds {min(r):.2f}–{max(r):.2f})", flush=True)
            for path in files:
                os.remove(path)
            os.rmdir(folder)


if __name__ == "__main__":
    main()
