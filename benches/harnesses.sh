#!/usr/bin/env bash
# The cross-check of load generators: the same workload file run by benchflow's built-in load
# generator and by each external harness benchflow drives (aiperf, inference-perf), against the
# simulator with exact timing (TTFT 50 ms, 10 ms between tokens, no jitter, no slowdown under
# load): so every figure has a known truth. For each harness two rows: the figures benchflow
# computes from the tool's own per-request records (vllm conventions), and the tool's own
# summary (its own definitions). The tools are installed by benchflow (--install-missing).
# A third stage offers 20 requests/s (poisson) for 20 s: what each tool actually sends.
# GuideLLM pulls ~6 GB (torch), vllm ~9.4 GB (torch and CUDA libraries; `vllm bench serve` runs
# without a GPU): included by HARNESSES="builtin aiperf inference-perf guidellm vllm-bench".
# Usage: [HARNESSES="..."] benches/harnesses.sh [REQUESTS]   (per stage; default 400)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
n=${1:-400}
truth="engine.args=[--set, fidelity=analytic, --set, ttft=50ms, --set, itl=10ms, --set, ttft_std=0ms, --set, itl_std=0ms, --set, time_factor_under_load=1, --set, request_overhead=0, --set, max_num_seqs=100000]"
mkdir -p "$tmp/workloads"
cat > "$tmp/workloads/x.yaml" <<YAML
seed: 7
dataset: { random: { input_len: 128, output_len: 64 } }
warmup: { requests: 8, concurrency: 4 }
stages:
  - { concurrency: 16, requests: $n }
  - { concurrency: 128, requests: $((n * 2)) }
  - { rate: 20, arrival: poisson, duration: 20s }
YAML
echo "truth: TTFT 50 ms, ITL = TPOT 10 ms, E2EL 680 ms (50 + 63 × 10); throughput: N requests at concurrency C"
echo "finish in ceil(N / C) waves of 0.68 s, so N / (ceil(N / C) × 0.68) requests/s over the stage"
echo
echo "| harness | figures by | concurrency | req/s (truth) | TTFT p50 / p99 ms | ITL p50 ms | TPOT p50 ms | E2EL p50 / p99 ms |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for h in ${HARNESSES:-builtin aiperf inference-perf}; do
  rm -rf "$tmp/wd"
  (cd "$tmp" && "$bf" e2e -H "$h" -w x --set "$truth" --install-missing --workdir wd -q > "$tmp/$h.out" 2>&1) \
    || { echo "| $h | failed: see below | | | | | | |"; tail -20 "$tmp/$h.out"; continue; }
  python3 - "$tmp/wd" "$h" "$n" <<'PY'
import json, math, sys, pathlib
wd, h, n = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
stats = json.load(open(wd / "analysis/latest/stats.json"))["stages"]
f2 = lambda s, k: "–" if k.split("_")[1] in s.get("unmeasured", []) else f"{s[k]:.2f}"   # not measured (GuideLLM records no chunk times)
for s, c, k in zip(stats, ("16", "128", "rate 20/s"), (n, 2 * n, None)):
    truth = f"{k / (math.ceil(k / int(c)) * 0.68):.1f}" if k else "20 asked"
    print(f"| {h} | benchflow, from its records | {c} | {s['request_throughput']:.1f} ({truth}) | "
          f"{s['median_ttft_ms']:.1f} / {s['p99_ttft_ms']:.1f} | {f2(s, 'median_itl_ms')} | {f2(s, 'median_tpot_ms')} | "
          f"{s['median_e2el_ms']:.1f} / {s['p99_e2el_ms']:.1f} |")
native = wd / "results/latest/native"
for i, c in ((1, "16"), (2, "128"), (3, "rate 20/s")):
    d = native / f"stage-{i}"
    if h == "aiperf":
        a = json.load(open(d / "profile_export_aiperf.json"))
        t, itl, rl = a["time_to_first_token"], a["inter_token_latency"], a["request_latency"]
        print(f"| {h} | aiperf's own summary | {c} | {a['request_throughput']['avg']:.1f} | {t['p50']:.1f} / {t['p99']:.1f} | "
              f"{itl['p50']:.2f} (per-request mean) | – | {rl['p50']:.1f} / {rl['p99']:.1f} |")
    elif h == "inference-perf":
        m = json.load(open(d / "stage_0_lifecycle_metrics.json"))
        lat = m["successes"]["latency"]
        ms = lambda k, p: lat[k][p] * 1000
        tput = m["successes"].get("throughput", {}).get("requests_per_sec", float("nan"))
        print(f"| {h} | inference-perf's own summary | {c} | {tput:.1f} | {ms('time_to_first_token','median'):.1f} / {ms('time_to_first_token','p99'):.1f} | "
              f"{ms('inter_token_latency','median'):.2f} | {ms('time_per_output_token','median'):.2f} | "
              f"{ms('request_latency','median'):.1f} / {ms('request_latency','p99'):.1f} |")
    elif h == "guidellm":
        m = json.load(open(d / "benchmarks.json"))["benchmarks"][0]["metrics"]
        g = lambda k: m[k]["successful"]
        p99 = lambda k: g(k)["percentiles"]["p99"]
        print(f"| {h} | GuideLLM's own summary | {c} | {g('requests_per_second')['mean']:.1f} | "
              f"{g('time_to_first_token_ms')['median']:.1f} / {p99('time_to_first_token_ms'):.1f} | "
              f"{g('inter_token_latency_ms')['median']:.2f} | {g('time_per_output_token_ms')['median']:.2f} | "
              f"{g('request_latency')['median'] * 1000:.1f} / {p99('request_latency') * 1000:.1f} |")
    elif h == "vllm-bench":
        m = json.loads((d / "result.json").read_text().replace("NaN", "null").replace("Infinity", "null"))
        print(f"| {h} | vllm bench serve's own summary | {c} | {m['request_throughput']:.1f} | "
              f"{m['median_ttft_ms']:.1f} / {m['p99_ttft_ms']:.1f} | {m['median_itl_ms']:.2f} | {m['median_tpot_ms']:.2f} | "
              f"{m['median_e2el_ms'] if 'median_e2el_ms' in m else float('nan'):.1f} / {m['p99_e2el_ms'] if 'p99_e2el_ms' in m else float('nan'):.1f} |")
PY
done
