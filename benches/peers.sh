#!/usr/bin/env bash
# benchflow side by side with Python load generators, on this machine, in one run, against the
# same benchflow simulator (fresh for every measurement):
#   A. zero model latency, closed loop 64 in flight, 64 streamed tokens: sustained requests/s
#   B. truth TTFT 100 ms / ITL 10 ms, 128 tokens, concurrency 512: reported TTFT p50 / p99
# Peers are installed from PyPI into .venv-peers: aiperf by default; add GuideLLM with
# PEERS="aiperf guidellm" (it pulls about 6 GB of torch). inference-perf needs Python >= 3.12,
# which Debian 12 does not ship.
# Usage: [PEERS="aiperf guidellm"] benches/peers.sh [SECONDS]   (default 30)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
secs=${1:-30}
root=$(pwd)
venv=$root/.venv-peers
fixed=(--profile tiny/cpu --set fidelity=analytic --set ttft=100ms --set itl=10ms --set time_factor_under_load=1
       --set request_overhead=0 --set max_num_seqs=100000)

bench_benchflow() { # conc tokens -> "req/s ttft_p50 ttft_p99"
  printf 'dataset: { random: { input_len: 128, output_len: %s } }\nstages: [ { concurrency: %s, duration: %ss } ]\n' "$2" "$1" "$secs" > "$tmp/w.yaml"
  rm -rf "$tmp/bf"
  "$bf" run --endpoint "$url" -w "$tmp/w.yaml" --workdir "$tmp/bf" -q > /dev/null 2>&1
  python3 -c "import json; d=json.load(open('$tmp/bf/analysis/latest/stats.json'))['stages'][0]; print(round(d['request_throughput']), round(d['median_ttft_ms'],2), round(d['p99_ttft_ms'],2))"
}
bench_aiperf() {
  rm -rf "$tmp/aip"
  (cd "$tmp" && "$venv/bin/aiperf" profile --model sim --tokenizer "$tmp/tok" --url "$url" --endpoint-type completions \
    --streaming --isl 128 --osl "$2" --extra-inputs ignore_eos:true --concurrency "$1" --benchmark-duration "$secs" \
    --ui-type none --artifact-dir "$tmp/aip" > "$tmp/aip.log" 2>&1)
  python3 -c "import json; d=json.load(open('$tmp/aip/profile_export_aiperf.json')); t=d['time_to_first_token']; print(round(d['request_throughput']['avg']), round(t['p50'],2), round(t['p99'],2))"
}

bench_guidellm() {
  local out=$tmp/guidellm.json
  rm -f "$out"
  (cd "$tmp" && "$venv/bin/guidellm" run --backend "kind=openai_http,target=$url,model=sim,request_format=/v1/completions" \
    --data "kind=synthetic_text,prompt_tokens=128,output_tokens=$2" --tokenizer "kind=hf_auto,model=$tmp/tok" \
    --profile "kind=concurrent,streams=$1" --constraint "kind=max_duration,seconds=$secs" \
    --output "kind=json,path=$out" --disable-progress > "$tmp/guidellm.log" 2>&1)
  python3 -c "import json; m=json.load(open('$out'))['benchmarks'][0]['metrics']; t=m['time_to_first_token_ms']['successful']; print(round(m['requests_per_second']['successful']['mean']), round(t['median'],2), round(t['percentiles']['p99'],2))"
}

echo "| tool | A: req/s (c=64, 64 tokens, zero latency) | B: TTFT p50 / p99 ms (truth 100, c=512, 128 tokens) |"
echo "|---|---:|---:|"
for tool in benchflow $peers; do
  start_sim --set model=sim --profile fixed/zero
  read -r rps _ _ <<< "$(bench_$tool 64 64)"
  stop_sim
  start_sim --set model=sim "${fixed[@]}"
  read -r _ p50 p99 <<< "$(bench_$tool 512 128)"
  stop_sim
  echo "| $tool | $rps | $p50 / $p99 |"
done
