#!/usr/bin/env bash
# Compares two builds of `sae` on `sae objective`, interleaved so that a drifting machine
# cannot bias the ratio: round after round each binary prints its median time, and the script
# prints the median of the per-round ratios BEFORE / AFTER (above 1: AFTER is faster), their
# geometric mean, and the median over pairs of rounds.
#
#   benches/ab/compare_builds.sh BEFORE AFTER ROUNDS [--side-by-side] -- OBJECTIVE-ARGS...
#   e.g. benches/ab/compare_builds.sh /tmp/sae-old target/release/sae 21 -- --shape S1 --f32 --threads 1 --repeat 40
#
# By default the two run one after the other, their order swapped every round. With
# --side-by-side they run at the same time, one per core (taskset, cores swapped every
# round, --threads 1 added, so not to be given): both then meet the same disturbances, and the
# pairs of rounds cancel a difference between the cores.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,13p' "$0" >&2
    exit 2
fi
before=$1 after=$2 rounds=$3
shift 3
side_by_side=0
if [ "${1:-}" = "--side-by-side" ]; then side_by_side=1; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
if ((side_by_side)) && [[ " $* " == *" --threads "* ]]; then
    echo "--side-by-side runs each binary on one thread: leave --threads out" >&2
    exit 2
fi
# The median time `sae objective` prints; fails when it printed none.
time_of() {
    local printed
    printed=$("$@" 2>&1 | awk '/^time/ {print $3}')
    [ -n "$printed" ] || { echo "no time printed by: $*" >&2; return 1; }
    echo "$printed"
}
for ((r = 1; r <= rounds; r++)); do
    if ((side_by_side)); then
        if ((r % 2)); then cb=0 ca=1; else cb=1 ca=0; fi
        out=$(mktemp)
        time_of taskset -c "$cb" "$before" objective "$@" --threads 1 > "$out" &
        background=$!
        a=$(time_of taskset -c "$ca" "$after" objective "$@" --threads 1)
        wait "$background"
        b=$(cat "$out")
        rm -f "$out"
    elif ((r % 2)); then
        b=$(time_of "$before" objective "$@"); a=$(time_of "$after" objective "$@")
    else
        a=$(time_of "$after" objective "$@"); b=$(time_of "$before" objective "$@")
    fi
    echo "$b $a"
done | python3 -c '
import math, statistics, sys
rows = [tuple(map(float, line.split())) for line in sys.stdin]
if not rows:
    sys.exit("no rounds")
ratios = [b / a for b, a in rows]
pairs = [math.sqrt(ratios[i] * ratios[i + 1]) for i in range(0, len(ratios) - 1, 2)]
print("before median %.4g, after median %.4g; before/after: median of rounds %.3f, geometric mean %.3f, median of pairs %s (%d rounds: %s)" % (
    statistics.median(b for b, _ in rows), statistics.median(a for _, a in rows), statistics.median(ratios),
    math.exp(sum(map(math.log, ratios)) / len(ratios)), "%.3f" % statistics.median(pairs) if pairs else "-",
    len(rows), " ".join("%.2f" % r for r in ratios)))'
