#!/usr/bin/env bash
# Many concurrent streams from one benchflow, with accuracy: the release simulator in paced
# mode (analytic fidelity: TTFT 100 ms, ITL 50 ms; 128 tokens, each written when due), a
# closed-loop stage of N streams after a warm-up that opens every connection.
#   - all N in flight: the analysis's max_concurrent_requests
#   - the TTFT error (measured minus the 100 ms truth) at p50 and p99, and the simulator's own
#     lateness at the same quantiles (its sim:delivery_lateness_seconds histogram over every
#     token, interpolated within buckets); the client's share is the difference
#   - the client's peak memory (max RSS), and per stream beyond a 64-stream run's
# Usage: benches/streams.sh [STREAMS] [SECONDS]   (default 4096 streams, 20 s)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
streams=${1:-4096}
secs=${2:-20}

measure() { # streams -> prints "p50err p99err late50 late99 inflight rss_kb completed failed"
  local n=$1
  start_sim --profile tiny/cpu --set fidelity=analytic --set ttft=100ms --set itl=50ms \
    --set time_factor_under_load=1 --set request_overhead=0 --set max_num_seqs=1000000
  printf 'dataset: { random: { input_len: 128, output_len: 128 } }\nwarmup: { requests: %s, concurrency: %s }\nstages: [ { concurrency: %s, duration: %ss } ]\n' \
    "$n" "$n" "$n" "$secs" > "$tmp/s$n.yaml"
  /usr/bin/time -f '%M' -o "$tmp/rss$n" "$bf" run --endpoint "$url" -w "$tmp/s$n.yaml" --workdir "$tmp/w$n" -q > /dev/null 2>&1
  curl -s "$url/metrics" > "$tmp/metrics$n"
  stop_sim
  python3 - "$tmp/w$n" "$tmp/metrics$n" "$(cat "$tmp/rss$n")" <<'PY'
import csv, json, sys
work, metrics, rss = sys.argv[1], sys.argv[2], sys.argv[3]
stage = json.load(open(f"{work}/analysis/latest/stats.json"))["stages"][0]
err = sorted((float(r["first_token_us"]) - float(r["sent_us"])) / 1000 - 100.0
             for r in csv.DictReader(open(f"{work}/results/latest/requests.csv"))
             if r["stage"] == "1" and r["warmup"] == "0" and r["first_token_us"])
q = lambda v, p: v[min(len(v) - 1, int(p / 100 * len(v)))]
buckets, count = [], 0.0
for line in open(metrics):
    if line.startswith("sim:delivery_lateness_seconds_bucket"):
        le = line.split('le="')[1].split('"')[0]
        buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    elif line.startswith("sim:delivery_lateness_seconds_count"):
        count = float(line.split()[-1])
def late(p):  # Prometheus-style: linear within the bucket that holds the quantile
    want, lo, below = p / 100 * count, 0.0, 0.0
    for le, n in buckets:
        if n >= want:
            if le == float("inf"):
                return lo * 1000
            return (lo + (le - lo) * (want - below) / max(n - below, 1e-9)) * 1000
        lo, below = le, n
    return 0.0
print(f"{q(err, 50):.2f} {q(err, 99):.2f} {late(50):.2f} {late(99):.2f} "
      f"{stage['max_concurrent_requests']} {rss} {stage['completed']} {stage['failed']}")
PY
}

read -r b50 b99 bl50 bl99 bin brss _ _ <<< "$(measure 64)"
read -r e50 e99 l50 l99 inflight rss done failed <<< "$(measure "$streams")"
python3 - <<PY
n, rss, brss = $streams, $rss, $brss
print(f"{n} streams: {$inflight} in flight, {$done} completed, {$failed} failed")
print(f"TTFT error (measured - 100 ms): p50 {$e50:.2f} ms, p99 {$e99:.2f} ms")
print(f"simulator's own lateness:       p50 {$l50:.2f} ms, p99 {$l99:.2f} ms")
print(f"client's share:                 p50 {$e50 - $l50:.2f} ms, p99 {$e99 - $l99:.2f} ms")
print(f"client peak RSS {rss / 1024:.1f} MiB; per stream beyond 64 streams' {brss / 1024:.1f} MiB: "
      f"{(rss - brss) / (n - 64):.1f} KiB")
print(f"(64 streams: TTFT error p50 {$b50:.2f} / p99 {$b99:.2f} ms, simulator {$bl50:.2f} / {$bl99:.2f} ms)")
PY
