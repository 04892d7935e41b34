#!/usr/bin/env bash
# benchflow's own load-generation figures on this machine, against the release simulator:
#   1. maximum sustained streamed request rate (closed loop, 64 in flight, 64 tokens)
#   2. a requested constant rate of 1,000 req/s: achieved rate and send delay
#   3. accuracy at concurrency 512 against truth TTFT 100 ms / ITL 10 ms / 128 tokens, with the
#      simulator's own lateness beside it
#   4. the sustained rate of 1. over TLS (the simulator serving the test certificate)
# Usage: benches/loadgen.sh [SECONDS]   (default 20 per measurement)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
secs=${1:-20}
stat() { python3 -c "import json,sys; d=json.load(open('$1'))['stages'][0]; print(' '.join(str(round(d[k],3)) for k in sys.argv[1:]))" "${@:2}"; }

start_sim --profile fixed/zero
printf 'dataset: { random: { input_len: 128, output_len: 64 } }\nstages: [ { concurrency: 64, duration: %ss } ]\n' "$secs" > "$tmp/max.yaml"
"$bf" run --endpoint "$url" -w "$tmp/max.yaml" --workdir "$tmp/max" -q > /dev/null 2>&1
read -r rps fails <<< "$(stat "$tmp/max/analysis/latest/stats.json" request_throughput failed)"
echo "1. sustained streamed rate (64 in flight, 64 tokens): $rps req/s, $fails failed"

printf 'dataset: { random: { input_len: 128, output_len: 64 } }\nstages: [ { rate: 1000, arrival: constant, duration: %ss } ]\n' "$secs" > "$tmp/1k.yaml"
"$bf" run --endpoint "$url" -w "$tmp/1k.yaml" --workdir "$tmp/1k" -q > /dev/null 2>&1
read -r rps p50 p99 <<< "$(stat "$tmp/1k/analysis/latest/stats.json" request_throughput median_client_queue_time_ms p99_client_queue_time_ms)"
echo "2. requested 1000 req/s: achieved $rps req/s; send delay p50 $p50 ms, p99 $p99 ms"
stop_sim

start_sim --profile tiny/cpu --set fidelity=analytic --set ttft=100ms --set itl=10ms \
  --set time_factor_under_load=1 --set request_overhead=0 --set max_num_seqs=100000
printf 'dataset: { random: { input_len: 128, output_len: 128 } }\nwarmup: { requests: 512, concurrency: 512 }\nstages: [ { concurrency: 512, duration: %ss } ]\n' "$secs" > "$tmp/acc.yaml"
"$bf" run --endpoint "$url" -w "$tmp/acc.yaml" --workdir "$tmp/acc" -q > /dev/null 2>&1
read -r p50 p99 itl <<< "$(stat "$tmp/acc/analysis/latest/stats.json" median_ttft_ms p99_ttft_ms mean_itl_ms)"
late=$(curl -s "$url/metrics" | python3 -c "
import sys
b=[]; s=c=0
for l in sys.stdin:
    if l.startswith('sim:delivery_lateness_seconds_bucket'):
        le=l.split('le=\"')[1].split('\"')[0]; b.append((float('inf') if le=='+Inf' else float(le), float(l.split()[-1])))
    elif l.startswith('sim:delivery_lateness_seconds_sum'): s=float(l.split()[-1])
    elif l.startswith('sim:delivery_lateness_seconds_count'): c=float(l.split()[-1])
p99=next(le for le,n in b if n>=0.99*c)
print(f'mean {1000*s/c:.2f} ms, p99 <= {1000*p99:g} ms')")
echo "3. concurrency 512, truth TTFT 100 ms / ITL 10 ms: TTFT p50 $p50 ms, p99 $p99 ms, ITL mean $itl ms; simulator lateness $late"
stop_sim

fixtures=$PWD/tests/integration/fixtures/tls
start_sim --profile fixed/zero --tls-cert "$fixtures/cert.pem" --tls-key "$fixtures/key.pem"
printf 'api: { tls: { ca_file: %s } }\ndataset: { random: { input_len: 128, output_len: 64 } }\nstages: [ { concurrency: 64, duration: %ss } ]\n' "$fixtures/ca.pem" "$secs" > "$tmp/tls.yaml"
"$bf" run --endpoint "$url" -w "$tmp/tls.yaml" --workdir "$tmp/tls" -q > /dev/null 2>&1
read -r rps fails <<< "$(stat "$tmp/tls/analysis/latest/stats.json" request_throughput failed)"
echo "4. sustained streamed rate over TLS (64 in flight, 64 tokens): $rps req/s, $fails failed"
stop_sim
