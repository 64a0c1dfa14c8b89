#!/usr/bin/env bash
# Trains a dictionary layer three ways, interleaved round by round on this machine: one process
# on one thread, one process on two threads, two MPI processes on one thread each, and prints
# each round's seconds of the epochs after the first (from the cumulative rates of each run's
# --log-json), then their medians. Needs `sae` built with `--features mpi` and OpenMPI's mpirun.
#
#   benches/ab/topk_processes.sh SAE DATA.npy EPOCHS ROUNDS -- TRAIN-ARGS...
#   e.g. benches/ab/topk_processes.sh target/release/sae planted.npy 4 5 -- --k 8 --hidden 1024 --batch-size 1024
set -euo pipefail
if [ $# -lt 5 ] || [ "$5" != "--" ]; then
    sed -n '2,8p' "$0" >&2
    exit 2
fi
sae=$1 data=$2 epochs=$3 rounds=$4
shift 5
if [ "$epochs" -lt 2 ]; then
    echo "EPOCHS: at least 2 (the first, with the run's set-up, is not counted)" >&2
    exit 2
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
common=(train --hidden-layer topk --data "$data" --epochs "$epochs" --no-features --quiet "$@")
# Seconds from the end of the first epoch to the end of the last, from the log's cumulative rates.
seconds() {
    python3 - "$1" "$data" <<'PY'
import json, struct, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
with open(sys.argv[2], "rb") as f:  # the examples, from the .npy header's shape
    header = f.read(256).decode("latin1")
examples = int(header.split("'shape': (")[1].split(",")[0])
ends = [row["epoch"] * examples / row["examples_per_second"] for row in rows]
print(f"{ends[-1] - ends[0]:.3f}")
PY
}
printf '%-8s %14s %14s %16s\n' round "1 proc × 1 t" "1 proc × 2 t" "2 procs × 1 t"
for ((r = 1; r <= rounds; r++)); do
    "$sae" "${common[@]}" --threads 1 --log-json "$dir/a.json" -o "$dir/a.safetensors" > /dev/null
    "$sae" "${common[@]}" --threads 2 --log-json "$dir/b.json" -o "$dir/b.safetensors" > /dev/null
    mpirun --allow-run-as-root --oversubscribe -np 2 "$sae" "${common[@]}" --distributed --threads 1 \
        --log-json "$dir/c.json" -o "$dir/c.safetensors" > /dev/null
    printf '%-8s %14s %14s %16s\n' "$r" "$(seconds "$dir/a.json")" "$(seconds "$dir/b.json")" "$(seconds "$dir/c.json")"
done | tee "$dir/rounds"
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
printf '%-8s %14s %14s %16s\n' median \
    "$(awk '{print $2}' "$dir/rounds" | median)" "$(awk '{print $3}' "$dir/rounds" | median)" \
    "$(awk '{print $4}' "$dir/rounds" | median)"
