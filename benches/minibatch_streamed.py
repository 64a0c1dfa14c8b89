#!/usr/bin/env python3
"""Streamed Adam against Adam in memory, interleaved round by round.

Each round runs `sae train --optimizer adam --epochs 1` on the same S3-shaped float32 file
(n = 784, h = 196, m = 60 000; minibatches of 256) three ways, in a rotating order: in memory
with the full shuffle, in memory with the block shuffle (blocks of 256, a window of 64), and
streamed with the block shuffle (the same steps as the second). The rate of each is the epoch's
`examples_per_second` of its `--log-json` line (from the start of training to the end of the
epoch: the file's loading and the final evaluation on all the data are left out). Prints the
median rate of each and the median of the per-round ratios streamed / in memory.

    cargo build --release
    python3 benches/minibatch_streamed.py [--rounds 7] [--threads 1] [--examples 60000]

The file is written once and read from the page cache: the figure is the engine's, not a
disk's. (A disk must deliver rate × 784 × 4 bytes a second to keep up.)
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAE = os.path.join(ROOT, "target", "release", "sae")

VARIANTS = {
    "in memory, full shuffle": [],
    "in memory, blocks": ["--shuffle-block", "256", "--shuffle-window", "64"],
    "streamed, blocks": ["--stream", "--shuffle-block", "256", "--shuffle-window", "64"],
}


def cpu_model():
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def rate(data, extra, threads, work):
    log = os.path.join(work, "log.jsonl")
    command = [
        SAE, "train", "--optimizer", "adam", "--epochs", "1", "--batch-size", "256", "--hidden", "196",
        "--f32", "--threads", str(threads), "--data", data, "--log-json", log, "--no-features", "--quiet",
        "-o", os.path.join(work, "model.safetensors"),
    ] + extra
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(log) as lines:
        return json.loads(lines.readline())["examples_per_second"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--examples", type=int, default=60000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "s3.npy")
        subprocess.run([SAE, "generate", "--shape", "S3", "--f32", "--examples", str(args.examples), "-o", data],
                       check=True, stdout=subprocess.DEVNULL)
        names = list(VARIANTS)
        rates = {name: [] for name in names}
        for round in range(args.rounds):
            # A rotating order, so that no variant always runs first after another.
            for name in names[round % 3:] + names[:round % 3]:
                rates[name].append(rate(data, VARIANTS[name], args.threads, work))
    print(f"CPU: {cpu_model()}; {args.threads} thread(s); {args.rounds} rounds; S3 f32, m = {args.examples}")
    for name in names:
        print(f"{name:26s} median {statistics.median(rates[name]):9.0f} examples/s")
    streamed = rates["streamed, blocks"]
    for name in names[:2]:
        ratios = [s / r for s, r in zip(streamed, rates[name])]
        print(f"streamed / {name:24s} median {statistics.median(ratios):.3f} "
              f"(rounds {min(ratios):.3f}–{max(ratios):.3f})")


if __name__ == "__main__":
    main()
