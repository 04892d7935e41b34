#!/usr/bin/env bash
# The built-in load generator against oha, side by side, on a server that writes one SSE event
# per token: the release `benchflow sim`, profile fixed/zero (no model time) with
# `event_per_chunk=true` (each token's event its own HTTP chunk). Closed loop, 64 in flight,
# 128-token prompts, 64 streamed tokens per request; a fresh simulator per measurement; the two
# clients alternate. oha reads each body and parses nothing; benchflow also finds every chunk,
# stamps its time and writes every record. CPU is each client process's user + system time
# (for benchflow the whole `run`, analysis and charts included).
# oha 1.16.0 is installed into target/bench-tools (not a dependency of benchflow).
# BASE=/path/to/an/older/benchflow adds that binary's `run` as a third client (same simulator).
# Usage: benches/client-vs-oha.sh [SECONDS] [RUNS]   (default 20 s, 3 runs each)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
secs=${1:-20}
runs=${2:-3}
oha=$PWD/target/bench-tools/bin/oha
if [ ! -x "$oha" ]; then
  cargo install oha --version 1.16.0 --locked --root "$PWD/target/bench-tools" --quiet
fi

prompt=$(python3 -c "print(' '.join(['word'] * 127))")
body="{\"model\":\"zero-sim\",\"prompt\":\"$prompt\",\"max_tokens\":64,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"ignore_eos\":true,\"temperature\":0}"
printf '%s' "$body" > "$tmp/body.json"
printf 'dataset: { random: { input_len: 128, output_len: 64 } }\nstages: [ { concurrency: 64, duration: %ss } ]\n' "$secs" > "$tmp/w.yaml"

cpu() { awk '{print $1 + $2}' "$1"; }
printf '%-10s %4s %10s %18s %16s\n' client run 'req/s' 'CPU ms / request' 'chunks / request'
benchflow_run() { # name binary run
  start_sim --profile fixed/zero --set event_per_chunk=true
  /usr/bin/time -f '%U %S' -o "$tmp/bf.time" "$2" run --endpoint "$url" -w "$tmp/w.yaml" --workdir "$tmp/$1$3" -q > /dev/null 2>&1
  read -r rps n chunks <<< "$(python3 -c "
import csv, json; d = json.load(open('$tmp/$1$3/analysis/latest/stats.json'))['stages'][0]
rows = list(csv.DictReader(open('$tmp/$1$3/results/latest/requests.csv')))
print(d['request_throughput'], len(rows), sum(int(x['chunks']) for x in rows) / max(1, len(rows)))")"
  printf '%-10s %4s %10.0f %18.4f %16.1f\n' "$1" "$3" "$rps" "$(python3 -c "print($(cpu "$tmp/bf.time") * 1000 / $n)")" "$chunks"
  stop_sim
}
for r in $(seq "$runs"); do
  benchflow_run benchflow "$bf" "$r"
  if [ -n "${BASE:-}" ]; then benchflow_run base "$BASE" "$r"; fi

  start_sim --profile fixed/zero --set event_per_chunk=true
  /usr/bin/time -f '%U %S' -o "$tmp/oha.time" "$oha" -c 64 -z "${secs}s" -m POST -D "$tmp/body.json" \
    -H 'content-type: application/json' --no-tui --output-format json "$url/v1/completions" > "$tmp/oha$r.json" 2>/dev/null
  read -r rps n <<< "$(python3 -c "
import json; d = json.load(open('$tmp/oha$r.json'))
print(d['summary']['requestsPerSec'], sum(d['statusCodeDistribution'].values()))")"
  printf '%-10s %4s %10.0f %18.4f %16s\n' oha "$r" "$rps" "$(python3 -c "print($(cpu "$tmp/oha.time") * 1000 / $n)")" -
  stop_sim
done
