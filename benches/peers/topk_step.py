#!/usr/bin/env python3
"""A TopK training step — forward, backward, Adam, unit-norm decoder — at issue 16's shape
(n = 768, h = 16 384, k = 32, minibatches of 4096, float32, one thread): the engine against
PyTorch with a dense decoder and PyTorch with sparse decoding (`embedding_bag`), interleaved.

Each round times, in a rotating order:
- the engine: `sae train --hidden-layer topk` on 4 minibatches × 2 epochs of random data; its
  step is the second epoch's time (from the `--log-json` lines) over its 4 steps, so the
  start (model, geometric median) is left out;
- PyTorch dense: `z = relu((x − b_dec) W_encᵀ + b_enc)`, `topk`, the codes scattered into an
  `h × batch` matrix, `x̂ = a W_dec + b_dec`, the squared error, `backward`, the decoder
  gradient's radial part removed, Adam, the rows renormalised;
- PyTorch sparse: the same with `x̂ = embedding_bag(indices, W_dec, per_sample_weights=values)`;
and reports the median step of each and the median of the per-round ratios peer / engine.

    cargo build --release
    python3 benches/peers/topk_step.py [--rounds 3] [--steps 3]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAE = os.path.join(ROOT, "target", "release", "sae")
N, H, K, BATCH, STEPS_PER_EPOCH = 768, 16_384, 32, 4096, 4


def cpu_model():
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def engine_step(data_path, work):
    log = os.path.join(work, "log.jsonl")
    command = [
        SAE, "train", "--hidden-layer", "topk", "--k", str(K), "--hidden", str(H), "--epochs", "2",
        "--batch-size", str(BATCH), "--f32", "--threads", "1", "--data", data_path, "--log-json", log,
        "--no-features", "--quiet", "-o", os.path.join(work, "topk.safetensors"),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(log) as lines:
        seconds = [json.loads(line)["seconds"] for line in lines]
    return (seconds[1] - seconds[0]) / STEPS_PER_EPOCH


class TorchTopK:
    def __init__(self, sparse):
        torch.manual_seed(1)
        w_dec = torch.randn(H, N)
        w_dec /= w_dec.norm(dim=1, keepdim=True)
        self.w_enc = torch.nn.Parameter(w_dec.clone())
        self.w_dec = torch.nn.Parameter(w_dec)
        self.b_enc = torch.nn.Parameter(torch.zeros(H))
        self.b_dec = torch.nn.Parameter(torch.zeros(N))
        self.optimizer = torch.optim.Adam([self.w_enc, self.b_enc, self.w_dec, self.b_dec], lr=1e-4)
        self.sparse = sparse

    def step(self, x):
        z = torch.relu((x - self.b_dec) @ self.w_enc.T + self.b_enc)
        values, indices = z.topk(K, dim=1)
        if self.sparse:
            decoded = torch.nn.functional.embedding_bag(indices, self.w_dec, per_sample_weights=values, mode="sum")
        else:
            decoded = torch.zeros_like(z).scatter_(1, indices, values) @ self.w_dec
        loss = 0.5 * ((decoded + self.b_dec - x) ** 2).sum(dim=1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            self.w_dec.grad -= (self.w_dec.grad * self.w_dec).sum(dim=1, keepdim=True) * self.w_dec
        self.optimizer.step()
        with torch.no_grad():
            self.w_dec /= self.w_dec.norm(dim=1, keepdim=True)


def torch_step(model, batches, steps):
    model.step(batches[0])  # warm-up: allocations, Adam's state
    times = []
    for s in range(steps):
        started = time.perf_counter()
        model.step(batches[(s + 1) % len(batches)])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"CPU: {cpu_model()}; one thread; PyTorch {torch.__version__}")
    rng = np.random.default_rng(1)
    data = rng.standard_normal((STEPS_PER_EPOCH * BATCH, N)).astype(np.float32)
    batches = [torch.from_numpy(data[i * BATCH:(i + 1) * BATCH]) for i in range(STEPS_PER_EPOCH)]
    with tempfile.TemporaryDirectory() as work:
        data_path = os.path.join(work, "data.npy")
        np.save(data_path, data)
        runs = {
            "engine": lambda: engine_step(data_path, work),
            "pytorch dense": lambda: torch_step(TorchTopK(sparse=False), batches, args.steps),
            "pytorch embedding_bag": lambda: torch_step(TorchTopK(sparse=True), batches, args.steps),
        }
        times = {name: [] for name in runs}
        ratios = {name: [] for name in runs if name != "engine"}
        names = list(runs)
        for round_ in range(args.rounds):
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            measured = {name: runs[name]() for name in order}
            for name, seconds in measured.items():
                times[name].append(seconds)
            for name in ratios:
                ratios[name].append(measured[name] / measured["engine"])
            print(f"round {round_ + 1}: " + ", ".join(f"{name} {1e3 * measured[name]:.0f} ms" for name in names))
        for name in names:
            print(f"{name}: median step {1e3 * statistics.median(times[name]):.0f} ms")
        for name, values in ratios.items():
            print(f"{name} / engine: median {statistics.median(values):.2f} (rounds {min(values):.2f}–{max(values):.2f})")


if __name__ == "__main__":
    main()
