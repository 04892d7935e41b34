#!/usr/bin/env bash
# Where the built-in load generator's CPU goes, per request, against a server that writes one
# SSE event per token (the release simulator, fixed/zero, event_per_chunk=true; closed loop, 64
# in flight, 64 tokens): `perf record` of the whole `benchflow run` (its analysis included),
# symbols grouped into the costs issue 30 names. Needs `perf` (Debian: linux-perf).
# BASE=/path/to/an/older/benchflow profiles that binary too, against a fresh simulator.
# Usage: benches/client-profile.sh [SECONDS]   (default 10)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
secs=${1:-10}
printf 'dataset: { random: { input_len: 128, output_len: 64 } }\nstages: [ { concurrency: 64, duration: %ss } ]\n' "$secs" > "$tmp/w.yaml"

profile() { # name binary
  start_sim --profile fixed/zero --set event_per_chunk=true
  perf record -q -F 999 -o "$tmp/$1.data" -- "$2" run --endpoint "$url" -w "$tmp/w.yaml" --workdir "$tmp/$1" -q > /dev/null 2>&1
  stop_sim
  local n
  n=$(python3 -c "import csv; print(sum(1 for _ in csv.DictReader(open('$tmp/$1/results/latest/requests.csv'))))")
  perf report -i "$tmp/$1.data" --no-children -n --sort symbol --stdio 2>/dev/null | python3 -c "
import re, sys
n = $n
groups = [
    ('kernel: syscalls, TCP, context switches', r'\[k\]'),
    ('SSE scanning', r'SseScan|find_blank_line|loadgen::client|memchr'),
    ('HTTP/1.1: hyper (connection task, body channel)', r'hyper::'),
    ('HTTP/1.1: our connection (h1.rs, httparse)', r'loadgen::h1|httparse'),
    ('tokio: wake-ups, timers, scheduling', r'tokio::|atomic_waker'),
    ('per-chunk buffers (bytes)', r'bytes::'),
    ('allocation', r'malloc|cfree|_int_free|_int_malloc|realloc'),
    ('clock reads', r'clock_gettime'),
    ('records and the analysis after the load', r'analysis|results::|zmij|sort|select|plotters|png|deflate|csv|fmt'),
]
total, by = 0.0, {}
samples = 0
for line in sys.stdin:
    if line.startswith('#') or not line.strip():
        continue
    pct = float(line.split('%')[0])
    samples += int(line.split('%')[1].split()[0])
    total += pct
    name = next((g for g, rx in groups if re.search(rx, line)), 'other')
    by[name] = by.get(name, 0.0) + pct
cpu_us = samples / 999 * 1e6 / n
print(f'$1: {n} requests, about {cpu_us:.1f} µs of CPU per request (perf samples at 999 Hz)')
for g, _ in groups + [('other', '')]:
    p = by.get(g, 0.0)
    print(f'  {g:<50} {p:5.1f}%  {cpu_us * p / 100:6.1f} µs')
"
}
profile benchflow "$bf"
if [ -n "${BASE:-}" ]; then profile base "$BASE"; fi
