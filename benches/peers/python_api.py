#!/usr/bin/env python3
"""The Python package against the engine itself and against Python peers, interleaved round by
round (medians of rounds; ratios taken per round):

1. the call overhead: the time of a call that computes nothing (m = n = h = 1), and one S1
   evaluation through `sae.Objective` against the same evaluation timed inside Rust
   (`sae objective --threads 1`, evaluation time only), one core;
2. the UFLDL exercise's optimiser: scipy's L-BFGS-B on `sae.Objective` against scipy on the
   numpy objective of peers.py, S1, on two cores, with scipy's default 10 correction pairs
   (what a port passing only `maxiter` gets) and with minFunc's 100, the BLAS on one and on two
   threads (threadpoolctl);
3. training: `sae.SparseAutoencoder.fit` (L-BFGS) against a PyTorch `nn.Module` of the same
   model trained by `torch.optim.LBFGS` from the same initial weights, S1, two cores.

Not part of CI. Needs the engine built (`cargo build --release`), the package installed in the
Python that runs this (`pip install ./python`), scipy and PyTorch:

    python3 benches/peers/python_api.py [--rounds N] [--iterations N] [--parts overhead,scipy,fit]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

# Two cores for the BLAS of numpy and PyTorch (parts 2 and 3; part 1 pins both sides to one).
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "2"

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from peers import NUMPY, SHAPES, cost_grad, problem  # noqa: E402

import sae  # noqa: E402

ENGINE = os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "sae")


def cpu_model():
    with open("/proc/cpuinfo") as f:
        return re.search(r"model name\s*:\s*(.*)", f.read()).group(1)


def engine_time(x_path, theta_path, n_hidden, lam, beta, rho, repeat):
    """The engine's own median evaluation time (s), as `sae objective` measures it."""
    out = subprocess.run(
        [ENGINE, "objective", "--data", x_path, "--theta", theta_path, "--hidden", str(n_hidden),
         "--lambda", str(lam), "--beta", str(beta), "--rho", str(rho), "--threads", "1",
         "--repeat", str(repeat)],
        check=True, capture_output=True, text=True,
    ).stdout
    value, unit = re.search(r"time\s*=\s*([0-9.]+) (ms|s|µs)", out).groups()
    return float(value) * {"s": 1.0, "ms": 1e-3, "µs": 1e-6}[unit]


def python_time(objective, theta, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        objective(theta)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def overhead(rounds, directory):
    n, h, m, lam, beta, rho = SHAPES["S1"]
    for dtype in (np.float64, np.float32):
        X, theta = problem("S1", dtype)
        x_path, theta_path = os.path.join(directory, "x.npy"), os.path.join(directory, "theta.npy")
        np.save(x_path, X)
        np.save(theta_path, theta)
        objective = sae.Objective(X, h, alpha=lam, sparsity_weight=beta, sparsity_target=rho, n_threads=1)
        rust, python, ratios = [], [], []
        for _ in range(rounds):
            r = engine_time(x_path, theta_path, h, lam, beta, rho, 30)
            p = python_time(objective, theta, 30)
            rust.append(r)
            python.append(p)
            ratios.append(p / r)
        print(f"overhead S1 {np.dtype(dtype).name}: Rust {statistics.median(rust) * 1e3:.3f} ms, "
              f"through sae.Objective {statistics.median(python) * 1e3:.3f} ms, "
              f"ratio {statistics.median(ratios):.3f} (rounds {' '.join(f'{x:.3f}' for x in ratios)})")


def fixed_overhead():
    """The time of a call whose computation is nothing (m = n = h = 1): what the boundary costs
    per call, with the objective's own one-thread pool and with the caller's pool."""
    for n_threads in (1, None):
        objective = sae.Objective(np.full((1, 1), 0.5), 1, n_threads=n_threads)
        theta = objective.initial_theta()
        python_time(objective, theta, 200)
        per_call = python_time(objective, theta, 5000)
        pool = "its own 1-thread pool" if n_threads else "the caller's pool"
        print(f"fixed per-call overhead ({pool}): {per_call * 1e6:.1f} µs")


def scipy_exercise(rounds, iterations):
    for corrections in (10, 100):
        scipy_run(rounds, iterations, corrections)


def scipy_run(rounds, iterations, corrections):
    """Each objective under scipy with the BLAS (scipy's L-BFGS-B calls it between
    evaluations; the numpy objective is made of it) on one and on two threads: an idle
    OpenBLAS thread spins for a while after each call, on the cores the engine's threads
    need. The ratio is numpy's better configuration over the engine's."""
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    n, h, m, lam, beta, rho = SHAPES["S1"]
    X, theta0 = problem("S1", np.float64)
    columns = np.ascontiguousarray(X.T)
    numpy_objective = lambda t: cost_grad(NUMPY, t, columns, n, h, lam, beta, rho)  # noqa: E731
    sae_objective = sae.Objective(X, h, alpha=lam, sparsity_weight=beta, sparsity_target=rho)
    options = dict(maxiter=iterations, maxcor=corrections, gtol=1e-9, ftol=0.0)
    runs = {(name, blas): [] for name in ("sae", "numpy") for blas in (1, 2)}
    ratios = []
    for round_ in range(rounds):
        times = {}
        # Alternate the order, so that no configuration always follows the same one (an
        # OpenBLAS thread's spinning outlasts the run that started it).
        order = list(runs.items())
        for (name, blas), results in order if round_ % 2 == 0 else order[::-1]:
            fun = sae_objective if name == "sae" else numpy_objective
            with threadpool_limits(limits=blas, user_api="blas"):
                start = time.perf_counter()
                result = minimize(fun, theta0, jac=True, method="L-BFGS-B", options=options)
                times[name, blas] = time.perf_counter() - start
            results.append((times[name, blas], result.nit, result.nfev, result.fun))
        ratios.append(min(times["numpy", 1], times["numpy", 2]) / min(times["sae", 1], times["sae", 2]))
    for (name, blas), results in runs.items():
        t, nit, nfev, fun = results[-1]
        print(f"scipy L-BFGS-B (maxcor={corrections}) on {name}, BLAS on {blas} thread(s): median "
              f"{statistics.median(r[0] for r in results):.3f} s ({nit} iterations, {nfev} evaluations, "
              f"cost {fun:.6f})")
    print(f"scipy exercise (maxcor={corrections}): numpy / sae, each at its best, "
          f"{statistics.median(ratios):.1f}× (rounds {' '.join(f'{x:.1f}' for x in ratios)})")


def torch_fit(X, theta, n, h, lam, beta, rho, iterations):
    import torch

    W1 = theta[: h * n].reshape(n, h).T
    W2 = theta[h * n : 2 * h * n].reshape(h, n).T
    encoder = torch.nn.Linear(n, h, dtype=torch.float64)
    decoder = torch.nn.Linear(h, n, dtype=torch.float64)
    with torch.no_grad():
        encoder.weight.copy_(torch.from_numpy(W1.copy()))
        encoder.bias.zero_()
        decoder.weight.copy_(torch.from_numpy(W2.copy()))
        decoder.bias.zero_()
    data = torch.from_numpy(X)
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.LBFGS(params, max_iter=iterations, history_size=100, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=0.0, max_eval=iterations * 2)

    def closure():
        optimizer.zero_grad()
        a2 = torch.sigmoid(encoder(data))
        a3 = torch.sigmoid(decoder(a2))
        rho_hat = a2.mean(dim=0)
        kl = torch.sum(rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat)))
        decay = lam / 2 * (encoder.weight.square().sum() + decoder.weight.square().sum())
        cost = 0.5 * (a3 - data).square().sum() / data.shape[0] + decay + beta * kl
        cost.backward()
        return cost

    start = time.perf_counter()
    optimizer.step(closure)
    elapsed = time.perf_counter() - start
    state = optimizer.state[optimizer._params[0]]
    return elapsed, state["n_iter"], state["func_evals"], float(closure().detach())


def fit_against_torch(rounds, iterations):
    n, h, m, lam, beta, rho = SHAPES["S1"]
    X, theta = problem("S1", np.float64)
    ratios, runs = [], {"sae": [], "torch": []}
    for _ in range(rounds):
        model = sae.SparseAutoencoder(h, alpha=lam, sparsity_weight=beta, sparsity_target=rho, max_iter=iterations)
        # The same initial weights as the PyTorch model: warm start from theta.
        model.model_ = sae.Model.from_theta(sae.HyperParams(n, h, alpha=lam, sparsity_weight=beta, sparsity_target=rho), theta)
        model.warm_start = True
        start = time.perf_counter()
        model.fit(X)
        ours = time.perf_counter() - start
        runs["sae"].append((ours, model.n_iter_, model.loss_curve_[-1]))
        theirs, nit, nfev, cost = torch_fit(X, theta, n, h, lam, beta, rho, iterations)
        runs["torch"].append((theirs, nit, cost))
        ratios.append((theirs / nit) / (ours / model.n_iter_))
    for name, r in runs.items():
        print(f"fit {name}: median {statistics.median(x[0] for x in r):.3f} s, "
              f"{r[-1][1]} iterations, final cost {r[-1][2]:.6f}")
    print(f"fit: PyTorch / sae per iteration {statistics.median(ratios):.1f}× "
          f"(rounds {' '.join(f'{x:.1f}' for x in ratios)})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--parts", default="overhead,scipy,fit", help="which of overhead, scipy, fit to run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= {"overhead", "scipy", "fit"}:
        parser.error(f"--parts: {', '.join(sorted(parts - {'overhead', 'scipy', 'fit'}))} is not one of overhead, scipy, fit")
    import torch

    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; sae {sae.__version__}, numpy {np.__version__}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    if "overhead" in parts:
        fixed_overhead()
        with tempfile.TemporaryDirectory() as directory:
            overhead(args.rounds, directory)
    if "scipy" in parts:
        scipy_exercise(max(1, args.rounds // 2), args.iterations)
    if "fit" in parts:
        fit_against_torch(max(1, args.rounds // 2), args.iterations)


if __name__ == "__main__":
    main()
