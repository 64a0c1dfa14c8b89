#!/usr/bin/env python3
"""Turns the medians criterion saved under target/criterion (by `cargo bench --bench objective`)
into PERF.md's tables: engine time, GEMM-only bound, their ratio, GFLOP/s of the five GEMMs'
flops, and the 2-thread speed-up.

    python3 benches/report.py [target/criterion]
"""
import json
import pathlib
import sys

SHAPES = {"S1": (64, 25, 10_000), "S2": (784, 196, 10_000), "S3": (784, 196, 60_000), "S4": (1024, 2048, 8_192)}


def median_seconds(root, shape, dtype, backend, threads, what):
    path = root / shape / f"{dtype}_{backend}_t{threads}" / what / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"] * 1e-9


def fmt_time(t):
    return "—" if t is None else (f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s")


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    print("| shape | dtype | back-end | threads | engine (median) | GEMM-only bound | engine / bound | GFLOP/s | speed-up 2 vs 1 thread |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape, (n, h, m) in SHAPES.items():
        flops = 10 * n * h * m
        for dtype in ("f32", "f64"):
            for backend in ("matrixmultiply", "openblas"):
                t1 = median_seconds(root, shape, dtype, backend, 1, "engine")
                for threads in (1, 2):
                    engine = median_seconds(root, shape, dtype, backend, threads, "engine")
                    bound = median_seconds(root, shape, dtype, backend, threads, "gemm_bound")
                    if engine is None:
                        continue
                    ratio = f"{engine / bound:.3f}" if bound else "—"
                    speedup = f"{t1 / engine:.2f}×" if threads == 2 and t1 else ""
                    print(f"| {shape} | {dtype} | {backend} | {threads} | {fmt_time(engine)} | {fmt_time(bound)} | "
                          f"{ratio} | {flops / engine / 1e9:.1f} | {speedup} |")


if __name__ == "__main__":
    main()
