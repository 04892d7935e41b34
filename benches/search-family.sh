#!/usr/bin/env bash
# The search on a family of engines, against the truth of each (docs/performance.md, "The
# search on a family of engines"):
#   1. the model: the simulator's engine model in virtual time (the code its server runs, no
#      HTTP), the truth from slow sweeps (900-s stages, three seeds per rate, the largest rate
#      whose achieved is ≥ 95% of sent and whose median TTFT stays flat) and 10 searches per
#      case, each trial judged by the code that judges a real one
#      (`cargo test --release -- --ignored search_model`);
#   2. the real thing: the same cases through `benchflow experiment` (the simulator's HTTP
#      server at a time scale, the built-in load generator), SEEDS searches per case, each
#      answer against the model's truth ÷ the time scale; with CONFIRM=1 also two 90-s real
#      stages per case, at 0.95× and 1.05× that truth.
# Usage: [SEEDS=3] [CASES="flat collapse kv 70b slo"] [CONFIRM=1] benches/search-family.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
root=$PWD
seeds=${SEEDS:-3}
cases=${CASES:-flat collapse kv 70b slo}

echo "1. the model (virtual time):"
cargo test --release --quiet --lib -- --ignored --nocapture search_model::tests::study search_model::tests::slo_study 2>/dev/null \
  | grep -E "truth|seed" | tee "$tmp/model.txt"

mkdir -p "$tmp/experiments" "$tmp/workloads"
cd "$tmp"
# name: profile sets time-scale input output spread stage from to truth(model, engine units)
spec() {
  case $1 in
    flat)     echo "llama-3.1-8b/h100 max_num_seqs=8 0.25 128 64 0.25 5s 4 256 16.38" ;;
    collapse) echo "llama-3.1-8b/h100 - 0.1 1024 1024 0 30s 10 640 7.31" ;;
    kv)       echo "llama-3.1-8b/h100 - 0.1 2048 256 0 30s 10 640 9.83" ;;
    70b)      echo "llama-3.1-70b/h100-tp4 - 0.1 1024 512 0 30s 10 640 7.21" ;;
    slo)      echo "llama-3.1-8b/h100 max_num_seqs=8 0.25 128 64 0.25 10s 1 64 17" ;;
  esac
}
echo "2. the real server and client ($seeds seeds per case):"
for c in $cases; do
  read -r profile sets ts input output spread stage from to truth <<< "$(spec "$c")"
  args="--set, time_scale=$ts"
  [ "$sets" != "-" ] && args="--set, $sets, $args"
  base="[\"engine.profile=$profile\", \"engine.args=[$args]\""
  if [ "$c" = slo ]; then
    load="{ concurrency: 1, duration: $stage }"
    search="{ factor: workload.stages.0.concurrency, from: $from, to: $to, integer: true, objective: max_load_within_slo, slo: { p99_ttft_ms: 200 } }"
    wall=$truth
  else
    load="{ rate: 1, duration: $stage }"
    search="{ factor: workload.stages.0.rate, from: $from, to: $to, trials: 8 }"
    wall=$(python3 -c "print(round($truth / $ts, 2))")
  fi
  printf 'seed: 1\napi: { stream: true, ignore_eos: true }\ndataset: { random: { input_len: %s, output_len: %s, range_ratio: %s } }\nwarmup: { requests: 8, concurrency: 8 }\nstages: [ %s ]\n' \
    "$input" "$output" "$spread" "$load" > "workloads/$c.yaml"
  echo "   $c ($profile $sets, $input in / $output out, time scale $ts, $stage stages): truth $wall"
  for seed in $(seq 1 "$seeds"); do
    cat > "experiments/$c.yaml" <<EOT
base: { workload: $c, set: [${base#[}, "workload.seed=$seed"] }
between_points: [reset_prefix_cache]
search: $search
EOT
    s0=$(date +%s)
    "$bf" experiment -e "$c" --workdir "$tmp/$c-$seed" -q > /dev/null 2>&1 || true
    s1=$(date +%s)
    python3 - "$tmp/$c-$seed/analysis/search.json" "$wall" "$seed" "$((s1 - s0))" <<'PY'
import json, sys
o = json.load(open(sys.argv[1])); truth = float(sys.argv[2])
a = o["answer"]
err = (a / truth - 1) * 100 if a else float("nan")
trials = " ".join(f'{t["x"]:g}{"✓" if t["verdict"] == "pass" else "✗"}{"~" if t["marginal"] else ""}' for t in o["trials"])
print(f"     seed {sys.argv[3]}: {a} ({err:+.1f}%) in {len(o['trials'])} trials, {sys.argv[4]} s: {trials}"
      + ("" if abs(err) <= 5 else "  (more than 5% off)"))
PY
  done
  if [ -n "${CONFIRM:-}" ] && [ "$c" != slo ]; then
    cat > "experiments/$c-confirm.yaml" <<EOT
base: { workload: $c, set: ${base}] }
between_points: [reset_prefix_cache]
factors:
  workload.stages.0.duration: [90s]
  workload.stages.0.rate: [$(python3 -c "print(round($wall * 0.95, 2), round($wall * 1.05, 2), sep=', ')")]
EOT
    "$bf" experiment -e "$c-confirm" --workdir "$tmp/$c-confirm" -q > /dev/null 2>&1 || true
    python3 - "$tmp/$c-confirm/analysis/points.csv" <<'PY'
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    print(f'     90-s stage at {r["workload.stages.0.rate"]}: achieved {float(r["request_throughput"]):.2f}, median TTFT {float(r["median_ttft_ms"]):.0f} ms, '
          + ("stable" if r["stable"] == "true" else "unstable: " + r["unstable_because"][:70]))
PY
  fi
done
cd "$root"
