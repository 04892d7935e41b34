#!/usr/bin/env bash
# vLLM router policies on shared-prefix traffic, on the simulator (4 × llama-3.1-8b/h100):
# 1. where the real router sends each of 8 prompt groups, one request at a time (does a policy
#    follow the prompt?), for /v1/completions and /v1/chat/completions;
# 2. the shipped experiment `router-policies` (round_robin, cache_aware, consistent_hash on the
#    prompt's group; 30 s at 8 req/s each): TTFT, each replica's share, the prefix-cache hit
#    rate, and each policy against round robin with bootstrap intervals.
# Usage: benches/router-policies.sh      (installs vllm-router with the tool installer if needed)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$bf" tools install vllm-router > /dev/null 2>&1 || "$bf" tools install vllm-router
router=$(python3 -c 'import json,os,sys; h=os.environ.get("BENCHFLOW_TOOLS_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),"benchflow/tools"); print(json.load(open(h+"/vllm-router-0.1.17/tool.json"))["bin"])')
echo "1. which replica serves each prompt group (8 groups of distinct 300-word prefixes, sent one at a time, 3 rounds)"
for policy in round_robin cache_aware; do
  for api in completions chat; do
    python3 - "$bf" "$router" "$policy" "$api" <<'PY'
import json, random, socket, subprocess, sys, time, urllib.request
bf, router, policy, api = sys.argv[1:]
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
procs, urls = [], []
for _ in range(4):
    p = free()
    procs.append(subprocess.Popen([bf, "sim", "--port", str(p), "--profile", "tiny/cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    urls.append(f"http://127.0.0.1:{p}")
port = free()
procs.append(subprocess.Popen([router, "--host", "127.0.0.1", "--port", str(port), "--prometheus-port", str(free()), "--policy", policy, "--worker-urls", *urls], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
base = f"http://127.0.0.1:{port}"
def get(u):
    try: return urllib.request.urlopen(u, timeout=2).read().decode()
    except Exception: return None
try:
    while get(base + "/v1/models") is None: time.sleep(0.1)
    def served():
        return [sum(float(l.split()[-1]) for l in get(u + "/metrics").splitlines() if l.startswith("vllm:request_success_total")) for u in urls]
    r = random.Random(1)
    words = "ab cd efg hi jk lmn op qr st uvw xy za bcd mo pe ku".split()
    groups = [" ".join(r.choice(words) for _ in range(300)) for _ in range(8)]
    rounds = []
    for _ in range(3):
        seen = []
        for g in groups:
            text = g + " " + " ".join(r.choice(words) for _ in range(10))
            body = {"model": "tiny-sim", "max_tokens": 2}
            if api == "chat": body["messages"] = [{"role": "user", "content": text}]
            else: body["prompt"] = text
            path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
            before = served()
            urllib.request.urlopen(urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})).read()
            seen.append(next(i for i, (a, b) in enumerate(zip(served(), before)) if a > b))
        rounds.append("".join(map(str, seen)))
    print(f"   {policy:12} {api:12} replica of groups 1-8, per round: {' '.join(rounds)}")
finally:
    for p in procs: p.kill()
PY
  done
done
echo "2. experiment router-policies (4 replicas, shared-prefix: 64 groups × 4 prompts, 1,024-token prefixes, chat, Poisson 8 req/s, 30 s)"
"$bf" experiment -e router-policies --workdir "$tmp/exp" -q > "$tmp/exp.out" 2>&1 || { cat "$tmp/exp.out"; exit 1; }
python3 - "$tmp/exp" <<'PY'
import json, os, sys
root = sys.argv[1]
state = json.load(open(os.path.join(root, "state.json")))
print(f"   {'policy':14}{'TTFT p50':>10}{'p99':>8}{'E2EL p50':>10}  {'requests per replica':24}{'prefix-cache hit rate':>22}")
for pid, p in sorted(state["points"].items()):
    d = json.load(open(os.path.join(root, "points", pid, "analysis/latest/stats.json")))
    s, reps = d["stages"][0], d["replicas"]
    q = sum(r["prefix_cache_queries"] for r in reps); h = sum(r["prefix_cache_hits"] for r in reps)
    share = "/".join(str(int(r["requests"])) for r in reps)
    print(f"   {p['label'].split('=')[-1].rstrip(']'):14}{s['median_ttft_ms']:>8.1f}ms{s['p99_ttft_ms']:>6.0f}ms{s['median_e2el_ms']:>8.0f}ms  {share:24}{100*h/q:>20.1f} %")
ab = json.load(open(os.path.join(root, "analysis/compare.json")))
for pair in ab["pairs"]:
    for d in pair["diffs"]:
        if (d["metric"], d["stat"]) in (("ttft_ms", "median"), ("ttft_ms", "mean"), ("e2el_ms", "median")):
            print(f"   {pair['other'].split(' ',1)[1]} vs {pair['baseline'].split(' ',1)[1]}: {d['metric']} {d['stat']} {d['difference']:+.2f} ms [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}] → {d['verdict']}")
PY
