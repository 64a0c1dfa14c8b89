#!/usr/bin/env python3
"""The UFLDL sparse autoencoder exercise with scipy's L-BFGS-B on the numpy cost and gradient of
peers.py: the same data as `cargo bench --bench training` (written by it with
SAE_EXERCISE_DATA=patches.npy), 400 iterations, on two cores.

    SAE_EXERCISE_DATA=/tmp/patches.npy cargo bench --bench training
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE taskset -c 0,1 python3 benches/peers/ufldl_scipy.py /tmp/patches.npy

Prints, for L-BFGS-B with 10 (scipy's default) and 100 (minFunc's) correction pairs, the median
wall time of three runs, the iterations and evaluations made and the final cost.
"""
import os
import sys
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "2"

import numpy as np
from scipy.optimize import minimize

sys.path.insert(0, os.path.dirname(__file__))
from peers import NUMPY, cost_grad  # noqa: E402

N, H, LAMBDA, BETA, RHO = 64, 25, 1e-4, 3.0, 0.01


def main(path):
    X = np.ascontiguousarray(np.load(path).T)  # n×m, columns are examples
    rng = np.random.default_rng(1)
    r = np.sqrt(6.0 / (N + H + 1))
    theta0 = np.concatenate([rng.uniform(-r, r, 2 * H * N), np.zeros(H + N)])
    fun = lambda t: cost_grad(NUMPY, t, X, N, H, LAMBDA, BETA, RHO)
    for maxcor in (10, 100):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            result = minimize(fun, theta0, jac=True, method="L-BFGS-B",
                              options=dict(maxiter=400, maxcor=maxcor, gtol=1e-9, ftol=0.0))
            times.append(time.perf_counter() - start)
        print(f"scipy L-BFGS-B maxcor={maxcor}: {np.median(times):.3f} s (median of 3), "
              f"{result.nit} iterations, {result.nfev} evaluations, cost {result.fun:.6f}")


if __name__ == "__main__":
    main(sys.argv[1])
