#!/usr/bin/env python3
"""TopK on the planted dictionary: the engine against a plain PyTorch TopK SAE, interleaved.

The problem of issue 16: 100 000 examples in 128 dimensions, each the sum of 4 of 512 planted
unit directions with magnitudes uniform in [0.5, 2.5] plus Gaussian noise of σ = 0.01
(`sae generate --planted`); a TopK SAE with h = 1024, k = 8, Adam at 1e-3, minibatches of 1024,
unit-norm decoder (the gradient's component along each decoder row removed, rows renormalised
after each step), b_dec at the geometric median of the first minibatch, 14 epochs, float32.

Each round trains both, in a rotating order, on the same threads: the engine with
`sae train --hidden-layer topk` (its time: the last `--log-json` line's seconds, training only),
and PyTorch with the same recipe (its time: the training loop only). Both models are scored by
the fraction of planted directions whose best-matching decoder row has cosine ≥ 0.9. Prints the
median time of each, the median of the per-round ratios PyTorch / engine, and the recoveries.

    cargo build --release
    python3 benches/peers/topk_planted.py [--rounds 3] [--threads 1] [--epochs 14]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAE = os.path.join(ROOT, "target", "release", "sae")
N, ATOMS, ACTIVE, M, H, K, BATCH, RATE = 128, 512, 4, 100_000, 1024, 8, 1024, 1e-3


def cpu_model():
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def recovered(atoms, decoder):
    """The fraction of planted unit directions (rows of `atoms`) whose best decoder row
    (normalised) has cosine ≥ 0.9."""
    rows = decoder / np.linalg.norm(decoder, axis=1, keepdims=True)
    return float(np.mean((atoms @ rows.T).max(axis=1) >= 0.9))


def geometric_median(points, iterations=100):
    y = points.mean(axis=0)
    for _ in range(iterations):
        d = np.linalg.norm(points - y, axis=1)
        w = 1.0 / np.maximum(d, 1e-12)
        y_next = (points * w[:, None]).sum(axis=0) / w.sum()
        if np.linalg.norm(y_next - y) < 1e-6 * d.mean():
            return y_next
        y = y_next
    return y


def torch_topk(data, epochs, seed):
    """The plain PyTorch TopK SAE: returns (seconds of training, decoder rows)."""
    torch.manual_seed(seed)
    x_all = torch.from_numpy(data)
    w_dec = torch.randn(H, N)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    w_enc = torch.nn.Parameter(w_dec.clone())
    w_dec = torch.nn.Parameter(w_dec)
    b_enc = torch.nn.Parameter(torch.zeros(H))
    order = torch.randperm(M)
    b_dec = torch.nn.Parameter(torch.from_numpy(geometric_median(data[order[:BATCH].numpy()].astype(np.float64)).astype(np.float32)))
    optimizer = torch.optim.Adam([w_enc, b_enc, w_dec, b_dec], lr=RATE)
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(M)
        for first in range(0, M, BATCH):
            x = x_all[order[first:first + BATCH]]
            z = torch.relu((x - b_dec) @ w_enc.T + b_enc)
            values, indices = z.topk(K, dim=1)
            a = torch.zeros_like(z).scatter_(1, indices, values)
            loss = 0.5 * ((a @ w_dec + b_dec - x) ** 2).sum(dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                w_dec.grad -= (w_dec.grad * w_dec).sum(dim=1, keepdim=True) * w_dec
            optimizer.step()
            with torch.no_grad():
                w_dec /= w_dec.norm(dim=1, keepdim=True)
    return time.perf_counter() - started, w_dec.detach().numpy()


def engine_topk(data_path, epochs, threads, seed, work):
    log, model = os.path.join(work, "log.jsonl"), os.path.join(work, "topk.safetensors")
    command = [
        SAE, "train", "--hidden-layer", "topk", "--k", str(K), "--hidden", str(H), "--epochs", str(epochs),
        "--batch-size", str(BATCH), "--learning-rate", str(RATE), "--f32", "--threads", str(threads),
        "--seed", str(seed), "--data", data_path, "--log-json", log, "--no-features", "--quiet", "-o", model,
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(log) as lines:
        seconds = [json.loads(line)["seconds"] for line in lines][-1]
    return seconds, read_tensor(model, "W_dec")


def read_tensor(path, name):
    """One F32 tensor of a safetensors file (an 8-byte header length, a JSON header, the data)."""
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        entry = json.loads(f.read(length))[name]
        assert entry["dtype"] == "F32", entry
        start, end = entry["data_offsets"]
        f.seek(8 + length + start)
        return np.frombuffer(f.read(end - start), dtype="<f4").reshape(entry["shape"]).astype(np.float64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=14)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()}; {args.threads} thread(s); PyTorch {torch.__version__}")
    with tempfile.TemporaryDirectory() as work:
        data_path, atoms_path = os.path.join(work, "planted.npy"), os.path.join(work, "atoms.npy")
        subprocess.run(
            [SAE, "generate", "--planted", "--f32", "--seed", "1", "-o", data_path, "--dictionary", atoms_path],
            check=True, stdout=subprocess.DEVNULL,
        )
        data, atoms = np.load(data_path), np.load(atoms_path)
        times = {"engine": [], "pytorch": []}
        found = {"engine": [], "pytorch": []}
        ratios = []
        for round_ in range(args.rounds):
            runs = [("engine", lambda: engine_topk(data_path, args.epochs, args.threads, round_ + 1, work)),
                    ("pytorch", lambda: torch_topk(data, args.epochs, round_ + 1))]
            if round_ % 2:
                runs.reverse()
            measured = {}
            for name, run in runs:
                seconds, decoder = run()
                measured[name] = seconds
                times[name].append(seconds)
                found[name].append(recovered(atoms, decoder))
            ratios.append(measured["pytorch"] / measured["engine"])
            print(f"round {round_ + 1}: engine {measured['engine']:.2f} s ({found['engine'][-1]:.4f}), "
                  f"PyTorch {measured['pytorch']:.2f} s ({found['pytorch'][-1]:.4f}), ratio {ratios[-1]:.2f}")
        for name in times:
            print(f"{name}: median {statistics.median(times[name]):.2f} s, recovered {found[name]}")
        print(f"PyTorch / engine: median {statistics.median(ratios):.2f} (rounds {min(ratios):.2f}–{max(ratios):.2f})")


if __name__ == "__main__":
    main()
