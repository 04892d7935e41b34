#!/usr/bin/env bash
# The search against the truth, on the simulator (release binary):
#   1. the truth: the server's capacity, the rate it completes when it is never idle (a stage at
#      concurrency 32, 4× its max_num_seqs, for 30 s, three seeds). A queue fed at any rate below
#      it is stable in the long run, one fed above grows without bound: the maximum stable rate.
#      With SWEEP=1 also a sweep of long rate stages (20 s, SWEEP_FROM..SWEEP_TO by SWEEP_STEP),
#      printing offered against achieved: the achieved rate follows the offered one up to the
#      capacity and flattens there.
#   2. the search (experiments like max-rate.yaml, 5-s stages) with SEEDS different workload
#      seeds: its answer, its bracket and its number of trials against the truth; every trial of
#      every search in $OUT (default: target/bench-search-trials.txt).
# The simulator: llama-3.1-8b/h100 with max_num_seqs=8 at time_scale 0.25 (4× the real rate, so a
# 20-s stage holds as many requests as 80 s would).
# Usage: [SWEEP=1] benches/search.sh [SEEDS] [SWEEP_FROM SWEEP_TO SWEEP_STEP]   (default 10 seeds, 54..76 by 1.5)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
seeds=${1:-10}
from=${2:-54}; to=${3:-76}; step=${4:-1.5}
out=${OUT:-$PWD/target/bench-search-trials.txt}
: > "$out"
mkdir -p "$tmp/experiments" "$tmp/workloads"
cd "$tmp"
args='engine.args=[--set, max_num_seqs=8, --set, time_scale=0.25]'
workload() { # name, stage
  printf 'seed: 1\napi: { stream: true, ignore_eos: true }\ndataset: { random: { input_len: 128, output_len: 64, range_ratio: 0.25 } }\nwarmup: { requests: 8, concurrency: 8 }\nstages: [ %s ]\n' "$2" > "workloads/$1.yaml"
}
workload c '{ concurrency: 32, duration: 30s }'
cat > experiments/capacity.yaml <<EOT
base: { workload: c, set: ["engine.profile=llama-3.1-8b/h100", "$args"] }
factors:
  workload.seed: [1, 2, 3]
EOT
t0=$(date +%s)
"$bf" experiment -e capacity --workdir "$tmp/capacity" -q > /dev/null 2>&1 || true
truth=$(python3 - "$tmp/capacity/analysis/points.csv" <<'PY'
import csv, sys
xs = [float(r["request_throughput"]) for r in csv.DictReader(open(sys.argv[1]))]
print(f"{sum(xs) / len(xs):.2f}")
print("   capacity by seed: " + ", ".join(f"{x:.2f}" for x in xs) + " req/s", file=sys.stderr)
PY
)
t1=$(date +%s)
echo "1. truth: capacity $truth req/s (concurrency 32, 30-s stages, 3 seeds, $((t1 - t0)) s)"

if [ -n "${SWEEP:-}" ]; then
  workload w '{ rate: 1, duration: 20s }'
  cat > experiments/sweep.yaml <<EOT
base: { workload: w, set: ["engine.profile=llama-3.1-8b/h100", "$args"] }
max_points: 1000
between_points: [reset_prefix_cache]
factors:
  workload.stages.0.rate: { from: $from, to: $to, step: $step }
EOT
  "$bf" experiment -e sweep --workdir "$tmp/sweep" -q > /dev/null 2>&1 || true
  python3 - "$tmp/sweep/analysis/points.csv" "$truth" <<'PY'
import csv, sys
truth = float(sys.argv[2])
rows = sorted(csv.DictReader(open(sys.argv[1])), key=lambda r: float(r["workload.stages.0.rate"]))
print("   sweep (20-s stages): offered → achieved req/s, median TTFT, the stage's own verdict")
for r in rows:
    x = float(r["workload.stages.0.rate"])
    print(f'   {x:6.1f} ({x / truth:4.2f}×) → {float(r["request_throughput"]):6.2f}, {float(r["median_ttft_ms"]):7.1f} ms, '
          + ("stable" if r["stable"] == "true" else "unstable: " + r["unstable_because"][:60]))
PY
fi

workload s '{ rate: 1, duration: 5s }'
errors=()
for seed in $(seq 1 "$seeds"); do
  cat > experiments/search.yaml <<EOT
base: { workload: s, set: ["engine.profile=llama-3.1-8b/h100", "$args", "workload.seed=$seed"] }
between_points: [reset_prefix_cache]
search: { factor: workload.stages.0.rate, from: 4, to: 256, trials: 8 }
EOT
  s0=$(date +%s)
  "$bf" experiment -e search --workdir "$tmp/search-$seed" -q > /dev/null 2>&1 || true
  s1=$(date +%s)
  python3 - "$tmp/search-$seed/analysis/search.json" "$truth" "$seed" "$((s1 - s0))" "$out" <<'PY'
import json, sys
o = json.load(open(sys.argv[1])); truth = float(sys.argv[2])
a = o["answer"]; lo, hi = o["bracket"]
err = (a / truth - 1) * 100 if a else float("nan")
print(f"   seed {sys.argv[3]:>2}: answer {a} ({err:+.1f}% of the truth), bracket [{lo}, {hi}], {len(o['trials'])} trials, {sys.argv[4]} s"
      + ("" if abs(err) <= 5 else "  (more than 5% off)"))
with open(sys.argv[5], "a") as f:
    print(f"seed {sys.argv[3]}: {o['says']}", file=f)
    for t in o["trials"]:
        print(f"  {t['n']} x={t['x']} r={t['repeat']} {t['verdict']} offered={t['offered']:.2f} achieved={t['achieved']:.2f} "
              f"growth={t['ttft_growth']} median_ttft={t['median_ttft_ms']:.0f} {t['why'][:110]}", file=f)
PY
done
