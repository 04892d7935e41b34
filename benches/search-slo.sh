#!/usr/bin/env bash
# The largest concurrency within an SLO (TTFT p99 ≤ 200 ms), by search against the truth from a
# sweep of every concurrency, on the simulator (llama-3.1-8b/h100, max_num_seqs=8, time_scale 0.25).
# Usage: benches/search-slo.sh [MAX_CONCURRENCY]   (default 24)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
top=${1:-24}
mkdir -p "$tmp/experiments" "$tmp/workloads"
cd "$tmp"
args='engine.args=[--set, max_num_seqs=8, --set, time_scale=0.25]'
printf 'seed: 1\napi: { stream: true, ignore_eos: true }\ndataset: { random: { input_len: 128, output_len: 64, range_ratio: 0.25 } }\nwarmup: { requests: 8, concurrency: 8 }\nstages: [ { concurrency: 1, duration: 10s } ]\n' > workloads/c.yaml
cat > experiments/sweep.yaml <<EOT
base: { workload: c, set: ["engine.profile=llama-3.1-8b/h100", "$args"] }
between_points: [reset_prefix_cache]
factors:
  workload.stages.0.concurrency: { from: 1, to: $top, step: 1 }
EOT
"$bf" experiment -e sweep --workdir "$tmp/sweep" -q > /dev/null 2>&1 || true
truth=$(python3 - "$tmp/sweep/analysis/points.csv" <<'PY'
import csv, sys
rows = sorted(csv.DictReader(open(sys.argv[1])), key=lambda r: int(r["workload.stages.0.concurrency"]))
ok = [int(r["workload.stages.0.concurrency"]) for r in rows if r["p99_ttft_ms"] and float(r["p99_ttft_ms"]) <= 200]
bad = [int(r["workload.stages.0.concurrency"]) for r in rows if r["p99_ttft_ms"] and float(r["p99_ttft_ms"]) > 200]
first_bad = min(bad) if bad else None
print(max([c for c in ok if first_bad is None or c < first_bad], default=0))
print(" ".join(f'{r["workload.stages.0.concurrency"]}:{float(r["p99_ttft_ms"]):.0f}' for r in rows if r["p99_ttft_ms"]), file=sys.stderr)
PY
)
echo "1. truth (every concurrency 1..$top, 10-s stages): the largest with TTFT p99 ≤ 200 ms is $truth"
cat > experiments/search.yaml <<EOT
base: { workload: c, set: ["engine.profile=llama-3.1-8b/h100", "$args"] }
between_points: [reset_prefix_cache]
search:
  factor: workload.stages.0.concurrency
  from: 1
  to: 64
  integer: true
  objective: max_load_within_slo
  slo: { p99_ttft_ms: 200 }
  trials: 10
EOT
"$bf" experiment -e search --workdir "$tmp/search" -q > /dev/null 2>&1 || true
python3 - "$tmp/search/analysis/search.json" "$truth" <<'PY'
import json, sys
o = json.load(open(sys.argv[1])); truth = int(sys.argv[2])
print(f"2. search (10 trials at most, 1..64): answer {o['answer']} (truth {truth}), bracket {o['bracket']}, {len(o['trials'])} trials: "
      + " ".join(f"{t['x']:.0f}{'+' if t['verdict'] == 'pass' else '-'}" for t in o['trials']))
PY
