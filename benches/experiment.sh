#!/usr/bin/env bash
# The experiment layer's own costs on this machine (release binary, the built-in simulator):
#   1. planning a 1,000-point run-factor sweep (resolve + compile of every point, grouping)
#   2. a run-factor sweep of N points against one stack: wall time against the time spent in
#      the load stages (from each point's run.json), i.e. what the experiment adds per point
#      (session, inputs and plan written, the point's analysis and charts, between-points reset)
# Usage: benches/experiment.sh [POINTS] [STAGE_SECONDS]   (default 30 points of 2 s)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
points=${1:-30}
stage=${2:-2}
mkdir -p "$tmp/experiments" "$tmp/workloads"
cd "$tmp"

printf 'base: { workload: sanity }\nmax_points: 1000\nfactors:\n  workload.stages.0.rate: { from: 1, to: 1000, step: 1 }\n' > experiments/plan1k.yaml
best=
for _ in 1 2 3; do
  ms=$("$bf" experiment plan -e plan1k 2>&1 >/dev/null | sed -n 's/planned in \([0-9]*\) ms.*/\1/p')
  if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
done
echo "1. plan of a 1,000-point sweep: $best ms (best of 3)"

printf 'seed: 1\ndataset: { random: { input_len: 128, output_len: 32 } }\nstages: [ { rate: 10, duration: %ss } ]\n' "$stage" > workloads/w.yaml
printf 'base: { workload: w }\nmax_points: 1000\nbetween_points: [reset_prefix_cache]\nfactors:\n  workload.seed: { from: 1, to: %s, step: 1 }\n' "$points" > experiments/sweep.yaml
t0=$(date +%s.%N)
"$bf" experiment -e sweep --workdir "$tmp/sweep" -q > /dev/null
t1=$(date +%s.%N)
python3 - "$tmp/sweep" "$t0" "$t1" "$points" <<'PY'
import json, sys, glob, os
root, t0, t1, n = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
wall = t1 - t0
stages = 0.0
for run in glob.glob(os.path.join(root, "points", "*", "results", "latest", "run.json")):
    for s in json.load(open(run))["stages"]:
        stages += s["end_s"] - s["start_s"]
outside = wall - stages
print(f"2. {n} points of {stages / n:.2f} s of load on one stack: wall {wall:.1f} s, in load stages {stages:.1f} s; "
      f"outside them {outside:.1f} s = {outside / wall * 100:.1f}% ({outside / n * 1000:.0f} ms per point, "
      f"standup and teardown once included)")
PY
