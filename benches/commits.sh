#!/usr/bin/env bash
# Side by side: the plan-compile bench (1,000 steps) and the plan of a 1,000-point experiment
# at two commits, built in release into one shared target directory, run alternately so both
# see the same machine. Run it with nothing else compiling.
# Usage: benches/commits.sh BEFORE AFTER [ROUNDS]   (default 5 rounds)
set -euo pipefail
before=${1:?usage: benches/commits.sh BEFORE AFTER [ROUNDS]}
after=${2:?usage: benches/commits.sh BEFORE AFTER [ROUNDS]}
rounds=${3:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${BENCH_DIR:-/tmp/benchflow-commits}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$out/target}
mkdir -p "$out"

build() { # commit -> $out/<commit>/{benchflow,plan_compile}
  local c=$1 dir="$out/$1"
  [ -x "$dir/benchflow" ] && [ -x "$dir/plan_compile" ] && return
  rm -rf "$out/src-$c" && mkdir -p "$out/src-$c" "$dir"
  git -C "$repo" archive "$c" | tar -x -C "$out/src-$c"
  (cd "$out/src-$c" && cargo build --release --locked --quiet --bin benchflow &&
    cargo bench --locked --no-run --bench plan_compile 2>&1 | sed -n 's/.*Executable.*(\(.*\))/\1/p' > "$dir/bench-path")
  cp "$CARGO_TARGET_DIR/release/benchflow" "$dir/benchflow"
  cp "$(cat "$dir/bench-path")" "$dir/plan_compile"
}
build "$before"
build "$after"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/experiments"
printf 'base: { workload: sanity }\nmax_points: 1000\nfactors:\n  workload.stages.0.rate: { from: 1, to: 1000, step: 1 }\n' > "$work/experiments/plan1k.yaml"
for r in $(seq "$rounds"); do
  for c in "$before" "$after"; do
    pc=$("$out/$c/plan_compile" | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p')
    ep=$(cd "$work" && "$out/$c/benchflow" experiment plan -e plan1k 2>&1 >/dev/null | sed -n 's/planned in \([0-9]*\) ms.*/\1/p')
    echo "$r $c $pc $ep"
  done
done | python3 -c '
import sys, statistics as st
rows = [l.split() for l in sys.stdin]
order = list(dict.fromkeys(r[1] for r in rows))
m = {c: ([float(r[2]) for r in rows if r[1] == c], [float(r[3]) for r in rows if r[1] == c]) for c in order}
for c in order:
    print(f"{c}: plan_compile median-of-rounds {st.median(m[c][0]):.1f} ms  experiment plan 1,000 points {st.median(m[c][1]):.0f} ms  (rounds: {len(m[c][0])})")
b, a = order[0], order[-1]
print(f"ratio after/before: plan_compile {st.median(m[a][0]) / st.median(m[b][0]):.2f}  experiment plan {st.median(m[a][1]) / st.median(m[b][1]):.2f}")
'
