#!/usr/bin/env bash
# The search against the truth, on the simulator (release binary):
#   1. the truth: a fine sweep of long stages (the rate in small steps), each stage judged by the
#      search's own criteria (the `stable` column of points.csv): the largest stable rate below
#      the smallest unstable one
#   2. the search (experiments like max-rate.yaml, short stages) with SEEDS different workload
#      seeds: its answer, its bracket and its number of trials against the truth
# The simulator: llama-3.1-8b/h100 with max_num_seqs=8 at time_scale 0.25 (4× the real rate, so a
# 20-s stage holds as many requests as 80 s would).
# Usage: benches/search.sh [SEEDS] [SWEEP_FROM SWEEP_TO SWEEP_STEP]   (default 10 seeds, 54..76 by 1.5)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
seeds=${1:-10}
from=${2:-54}; to=${3:-76}; step=${4:-1.5}
mkdir -p "$tmp/experiments" "$tmp/workloads"
cd "$tmp"
args='engine.args=[--set, max_num_seqs=8, --set, time_scale=0.25]'
printf 'seed: 1\napi: { stream: true, ignore_eos: true }\ndataset: { random: { input_len: 128, output_len: 64, range_ratio: 0.25 } }\nwarmup: { requests: 8, concurrency: 8 }\nstages: [ { rate: 1, duration: 20s } ]\n' > workloads/w.yaml
cat > experiments/truth.yaml <<EOT
base: { workload: w, set: ["engine.profile=llama-3.1-8b/h100", "$args"] }
max_points: 1000
between_points: [reset_prefix_cache]
factors:
  workload.stages.0.rate: { from: $from, to: $to, step: $step }
EOT
t0=$(date +%s)
"$bf" experiment -e truth --workdir "$tmp/truth" -q > /dev/null 2>&1 || true
t1=$(date +%s)
truth=$(python3 - "$tmp/truth/analysis/points.csv" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["stable"]]
rows.sort(key=lambda r: float(r["workload.stages.0.rate"]))
unstable = [float(r["workload.stages.0.rate"]) for r in rows if r["stable"] == "false"]
top = min(unstable) if unstable else float("inf")
stable = [float(r["workload.stages.0.rate"]) for r in rows if r["stable"] == "true" and float(r["workload.stages.0.rate"]) < top]
print(max(stable) if stable else 0, top)
for r in rows:
    print(r["workload.stages.0.rate"], r["stable"], r["request_throughput"], r["unstable_because"][:70], file=sys.stderr)
PY
)
read -r truth_rate truth_next <<< "$truth"
echo "1. truth (fine sweep $from..$to by $step, 20-s stages, $((t1 - t0)) s): largest stable rate $truth_rate req/s (next step $truth_next unstable)"

printf 'seed: 1\napi: { stream: true, ignore_eos: true }\ndataset: { random: { input_len: 128, output_len: 64, range_ratio: 0.25 } }\nwarmup: { requests: 8, concurrency: 8 }\nstages: [ { rate: 1, duration: 5s } ]\n' > workloads/s.yaml
total=0
for seed in $(seq 1 "$seeds"); do
  cat > experiments/search.yaml <<EOT
base: { workload: s, set: ["engine.profile=llama-3.1-8b/h100", "$args", "workload.seed=$seed"] }
between_points: [reset_prefix_cache]
search: { factor: workload.stages.0.rate, from: 4, to: 256, trials: 8, precision: 0.05 }
EOT
  s0=$(date +%s)
  "$bf" experiment -e search --workdir "$tmp/search-$seed" -q > /dev/null 2>&1 || true
  s1=$(date +%s)
  python3 - "$tmp/search-$seed/analysis/search.json" "$truth_rate" "$seed" "$((s1 - s0))" <<'PY'
import json, sys
o = json.load(open(sys.argv[1])); truth = float(sys.argv[2])
a = o["answer"]; lo, hi = o["bracket"]
err = (a / truth - 1) * 100 if a else float("nan")
print(f"   seed {sys.argv[3]:>2}: answer {a} ({err:+.1f}% of the truth), bracket [{lo}, {hi}), {len(o['trials'])} trials, {sys.argv[4]} s"
      + ("" if hi is None or lo is None or lo <= truth * 1.05 else "  (above the truth)"))
PY
done
