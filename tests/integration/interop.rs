//! benchflow's results in the tools its users already run, judged by those tools: every llm-d
//! Benchmark Report loaded by llm-d's own package (`llmd-benchmark-report`, installed pinned by
//! benchflow's tool installer), over work directories generated across the stacks, harnesses,
//! datasets, loads and records the inputs allow.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{Project, benchflow, text, tools_home};

/// Loads each file with `llmd_benchmark_report.load_benchmark_report` (the pydantic model its JSON
/// Schema is generated from) and prints one line per file that fails; exits 1 if any did.
const LOAD: &str = r#"
import sys, yaml
from llmd_benchmark_report import load_benchmark_report
bad = 0
for f in sys.argv[1:]:
    try:
        with open(f) as fh:
            load_benchmark_report(yaml.safe_load(fh))
    except Exception as e:
        bad += 1
        print(f"{f}: {e}")
print(f"{len(sys.argv) - 1 - bad} of {len(sys.argv) - 1} loaded")
sys.exit(1 if bad else 0)
"#;

/// YAML on stdin → JSON on stdout, a float that is not finite as its text.
const TO_JSON: &str = r#"
import sys, yaml, json, math
def fix(v):
    if isinstance(v, float) and not math.isfinite(v): return str(v)
    if isinstance(v, dict): return {k: fix(x) for k, x in v.items()}
    if isinstance(v, list): return [fix(x) for x in v]
    return v
print(json.dumps(fix(yaml.safe_load(sys.stdin)), default=str))
"#;

/// The Python of llm-d's package, installed by benchflow into the tests' tools directory; none
/// (the test says SKIPPED) only when the machine has no Python ≥ 3.11.
pub fn upstream_python() -> Option<PathBuf> {
    let out = benchflow()
        .args(["tools", "install", "llmd-benchmark-report"])
        .env("BENCHFLOW_TOOLS_DIR", tools_home())
        .output()
        .unwrap();
    if !out.status.success() && text(&out.stderr).contains("and none was found") {
        eprintln!("SKIPPED: {}", text(&out.stderr));
        return None;
    }
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    Some(PathBuf::from(tools_home()).join("llmd-benchmark-report-0.2.1/venv/bin/python"))
}

/// Asserts that llm-d's package loads every report in `files`.
pub fn upstream_loads(files: &[PathBuf]) {
    assert!(!files.is_empty(), "no report to load");
    let Some(python) = upstream_python() else { return };
    let out = std::process::Command::new(python).arg("-c").arg(LOAD).args(files).output().unwrap();
    assert!(
        out.status.success(),
        "llm-d's package refused reports:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The reports of a work directory's latest analysis, as llm-d's globs find them.
pub fn reports_in(wd: &Path) -> Vec<PathBuf> {
    reports_in_dir(&wd.join("analysis/latest"))
}

/// The Benchmark Reports (YAML) of an analysis directory, by stage.
pub fn reports_in_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("benchmark_report_v0.2,_") && n.ends_with(".yaml")
        })
        .collect();
    v.sort();
    v
}

fn json_of(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

/// A small deterministic generator (splitmix64).
struct Gen(u64);

impl Gen {
    fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.u64() % n.max(1)
    }
    fn f64(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    /// 10^U(lo, hi).
    fn magnitude(&mut self, lo: f64, hi: f64) -> f64 {
        10f64.powf(lo + (hi - lo) * self.f64())
    }
}

/// The engine's flags, drawn from vLLM's parallelism flags in both spellings; with the degrees
/// they set (tp, dp, pp).
fn engine_flags(g: &mut Gen) -> (Vec<String>, (u64, u64, u64)) {
    let (tp, dp, pp) = (*g.pick(&[1u64, 2, 4, 8]), *g.pick(&[1u64, 2, 3]), *g.pick(&[1u64, 2]));
    let mut flags = vec!["--max-model-len".to_string(), "4096".into()];
    match g.below(3) {
        0 => flags.extend([format!("--tensor-parallel-size={tp}"), format!("--data-parallel-size={dp}")]),
        1 => flags.extend(["-tp".into(), tp.to_string(), "-dp".into(), dp.to_string()]),
        _ => flags.extend([
            "--tensor-parallel-size".into(),
            tp.to_string(),
            "--data-parallel-size".into(),
            dp.to_string(),
        ]),
    }
    flags.extend(["--pipeline-parallel-size".into(), pp.to_string(), "--enforce-eager".into()]);
    (flags, (tp, dp, pp))
}

/// Records of one stage in `[start, start + span]`: completed ones with extreme lengths and
/// latencies (one-token answers with no gap, prompts of the longest length records allow, 2^24
/// tokens; first tokens from a microsecond to 5 minutes: the analysis's cost grows with the
/// run's span, see docs/robustness.md), failed and cancelled ones; sometimes none completed.
fn records(g: &mut Gen, stage: u32, start: f64, span: f64, rows: &mut String) {
    let n = *g.pick(&[1u64, 2, 5, 40]);
    let all_failed = g.below(6) == 0;
    for i in 0..n {
        let sent = start + span * g.f64();
        let scheduled = (sent - g.magnitude(-6.0, -2.0)).max(0.0);
        let fail = all_failed || g.below(8) == 0;
        let us = |s: f64| format!("{:.3}", s * 1e6);
        if fail {
            let (status, kind) =
                *g.pick(&[("500", "http_500"), ("0", "timeout"), ("0", "cancelled"), ("0", "connect")]);
            let end = sent + g.magnitude(-4.0, 1.0);
            rows.push_str(&format!(
                "{stage},{i},0,{},{},,,{},0,0,0,none,{status},{kind},generated,\n",
                us(scheduled),
                us(sent),
                us(end)
            ));
            continue;
        }
        let ttft = g.magnitude(-6.0, 2.5);
        let out = *g.pick(&[1u64, 2, 17, 300]);
        let gaps: Vec<f64> = (1..out).map(|_| g.magnitude(-6.0, 0.0)).collect();
        let first = sent + ttft;
        let last = first + gaps.iter().sum::<f64>();
        let prompt = *g.pick(&[1u64, 128, 100_000, 16_777_216]);
        let itl: Vec<String> = gaps.iter().map(|s| format!("{}", (s * 1e6).round() as u64)).collect();
        rows.push_str(&format!(
            "{stage},{i},0,{},{},{},{},{},{out},{prompt},{out},usage,200,,,{}\n",
            us(scheduled),
            us(sent),
            us(first),
            us(last),
            us(last + 1e-4),
            itl.join(" ")
        ));
    }
}

/// Server metrics over `[0, end]` for each target: gauges with odd values (NaN, +Inf,
/// negative), counters that grow or reset.
fn server_metrics(g: &mut Gen, targets: &[String], end: f64) -> String {
    let mut out = String::from("t_s,metric,labels,value,target\n");
    for target in targets {
        let (mut queries, mut hits, mut preempted) = (0.0f64, 0.0f64, 0.0f64);
        let steps = 2 + g.below(6);
        for k in 0..=steps {
            let t = end * k as f64 / steps as f64;
            let odd = |g: &mut Gen, normal: f64| -> String {
                match g.below(12) {
                    0 => "NaN".into(),
                    1 => "+Inf".into(),
                    2 => "-1".into(),
                    _ => format!("{normal}"),
                }
            };
            let labels = "\"engine='0',model_name='m'\"";
            let (kv, running, waiting) = (g.f64(), g.below(300) as f64, g.below(3000) as f64);
            let (kv, running, waiting) = (odd(g, kv), odd(g, running), odd(g, waiting));
            queries += g.below(10_000) as f64;
            hits += (g.f64() * 10_000.0).min(queries - hits).max(0.0);
            preempted += g.below(3) as f64;
            for (m, v) in [
                ("vllm:kv_cache_usage_perc", kv),
                ("vllm:num_requests_running", running),
                ("vllm:num_requests_waiting", waiting),
                ("vllm:prefix_cache_queries_total", format!("{queries}")),
                ("vllm:prefix_cache_hits_total", format!("{hits}")),
                ("vllm:num_preemptions_total", format!("{preempted}")),
            ] {
                out.push_str(&format!("{t:.3},{m},{labels},{v},{target}\n"));
            }
        }
    }
    out
}

/// One generated variant of a real work directory `base`, copied to `wd`: the stack, the
/// harness, the dataset, the loads and the records all redrawn. Returns what the reports must
/// say: (model, replicas, (tp, dp, pp), harness kind).
fn variant(g: &mut Gen, base: &Path, wd: &Path) -> (String, u64, (u64, u64, u64), String) {
    let st = std::process::Command::new("cp").arg("-a").arg(base).arg(wd).status().unwrap();
    assert!(st.success());
    let resolved_path = wd.join("inputs/resolved.yaml");
    let mut resolved: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&resolved_path).unwrap()).unwrap();
    let v = &mut resolved["values"];
    let platform = *g.pick(&["local", "kubernetes"]);
    let kind = *g.pick(&["sim", "vllm", "endpoint"]);
    let (flags, par) = engine_flags(g);
    v["platform"] = json!(platform);
    v["engine"]["kind"] = json!(kind);
    v["engine"]["env"] = json!({ "VLLM_LOGGING_LEVEL": "DEBUG", "EMPTY": "" });
    if platform == "kubernetes" {
        v["engine"]["args"] = json!(flags);
        v["kubernetes"]["gpus"] = json!(par.0 * par.2);
        v["kubernetes"]["gpu_product"] = json!("NVIDIA-H100-80GB-HBM3");
    } else {
        let mut command = vec!["vllm".to_string(), "serve".into(), "m".into()];
        command.extend(flags);
        v["run"]["command"] = json!(command);
    }
    let method = *g.pick(&["standalone", "router", "llm-d"]);
    let replicas = if method == "standalone" { 1 } else { 1 + g.below(8) };
    v["deploy"]["method"] = json!(method);
    v["deploy"]["replicas"] = json!(replicas);
    let harness = *g.pick(&["builtin", "aiperf", "inference-perf", "guidellm", "vllm-bench"]);
    v["harness"]["kind"] = json!(harness);
    v["harness"]["parallelism"] = json!(1 + g.below(4));
    let w = &mut v["workload"];
    w["description"] =
        json!(*g.pick(&["plain", "quotes \" and 'ticks', colons: yes", "ünïcødé ✓\nsecond line", ""]));
    w["dataset"] = match g.below(3) {
        0 => json!({ "random": { "input_len": g.below(200_000), "output_len": g.below(10_000),
                                 "range_ratio": g.f64() * 0.999, "prefix_len": g.below(3) * 64 } }),
        1 => json!({ "shared_prefix": { "groups": g.below(64), "prompts_per_group": g.below(16),
                                        "prefix_len": g.below(8192), "suffix_len": g.below(512), "output_len": g.below(512) } }),
        _ => json!({ "jsonl": { "path": "prompts.jsonl", "output_len": null } }),
    };
    let template = w["stages"][0].clone();
    let stages: Vec<Value> = (0..2)
        .map(|_| {
            let mut s = template.clone();
            for k in ["rate", "concurrency", "max_concurrency", "requests"] {
                s[k] = Value::Null;
            }
            s["duration"] = json!(1.0);
            if g.below(2) == 0 {
                s["rate"] = json!(g.magnitude(-6.0, 6.0));
                if g.below(2) == 0 {
                    s["max_concurrency"] = json!(1 + g.below(100_000));
                }
            } else {
                s["concurrency"] = json!(1 + g.below(100_000));
            }
            s
        })
        .collect();
    w["stages"] = json!(stages);
    std::fs::write(&resolved_path, serde_saphyr::to_string(&resolved).unwrap()).unwrap();

    // The records and what the server said, redrawn.
    let results = wd.join("results/latest");
    let mut run: Value = json_of(&results.join("run.json"));
    let model = g.pick(&["tiny-sim", "meta-llama/Llama-3.1-8B-Instruct", "мodel: \"q\" #1"]).to_string();
    run["model"] = json!(model);
    run["server_version"] = match g.below(3) {
        0 => Value::Null,
        1 => json!("0.11.0"),
        _ => json!("benchflow-sim 0.1.0"),
    };
    let mut rows = benchflow::HEADER.join(",") + "\n";
    let mut windows = Vec::new();
    let span = g.magnitude(-2.0, 2.0);
    for stage in 1..=2u32 {
        let start = span * f64::from(stage - 1);
        records(g, stage, start, span, &mut rows);
        windows.push(json!({ "stage": stage, "label": format!("generated {stage}"), "start_s": start,
                             "end_s": start + span, "dispatched": 0 }));
    }
    run["stages"] = json!(windows);
    std::fs::write(results.join("run.json"), serde_json::to_vec_pretty(&run).unwrap()).unwrap();
    std::fs::write(results.join("requests.csv"), rows).unwrap();
    let targets: Vec<String> = if method == "standalone" {
        vec!["endpoint".into()]
    } else {
        (0..replicas).map(|i| format!("engine-{i}")).collect()
    };
    std::fs::write(results.join("server_metrics.csv"), server_metrics(g, &targets, 2.0 * span)).unwrap();
    // The simulator's parallelism is its profile's (the base run's `tiny/cpu`: 1), whatever
    // vLLM flags it is given.
    let par = if kind == "sim" { (1, 1, 1) } else { par };
    (model, replicas, par, harness.to_string())
}

#[test]
fn every_generated_run_gives_reports_llm_ds_package_loads() {
    let p = Project::new("interop-generated");
    p.file(
        "workloads/w.yaml",
        "seed: 5\ndataset: { random: { input_len: 16, output_len: 4 } }\nwarmup: { requests: 0 }\n\
         stages:\n  - { rate: 50, requests: 5 }\n  - { concurrency: 2, requests: 4 }\n",
    );
    let out = p.run(&["e2e", "-w", "w", "--workdir", "base", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut g = Gen(0xBE_4C_4F_10);
    let mut files = Vec::new();
    let mut uids = std::collections::BTreeSet::new();
    for i in 0..30 {
        let wd = p.path(&format!("v{i}"));
        let (model, replicas, (tp, dp, pp), harness) = variant(&mut g, &p.path("base"), &wd);
        let convention = *g.pick(&["vllm", "guidellm"]);
        let wd_arg = wd.to_string_lossy().into_owned();
        let out = p.run(&["analyze", &wd_arg, "--convention", convention]);
        assert!(out.status.success(), "variant {i}: {}", text(&out.stderr));
        // Under the run's own convention (the base run's harness's: vllm) the run's own analysis
        // is rewritten; under another, one goes beside it.
        let at = match convention {
            "vllm" => wd.join("analysis/latest"),
            other => wd.join(format!("analysis/latest/conventions/{other}")),
        };
        let reports = reports_in_dir(&at);
        assert_eq!(reports.len(), 2, "variant {i}: one report per stage");
        let stats = json_of(&at.join("stats.json"));
        assert_eq!(stats["convention"], convention, "variant {i}");
        for (n, yaml) in reports.iter().enumerate() {
            // The JSON copy is the same report.
            let r = json_of(&at.join(format!("benchmark_report_v0.2_stage_{}.json", n + 1)));
            let y: Value = serde_saphyr::from_str(&std::fs::read_to_string(yaml).unwrap()).unwrap();
            assert_eq!(r["run"]["uid"], y["run"]["uid"], "variant {i}");
            // Every report its own uid (the copies share their run id and directory name).
            assert!(
                uids.insert(r["run"]["uid"].to_string()),
                "variant {i}: uid {} seen before",
                r["run"]["uid"]
            );
            let engine = &r["scenario"]["stack"][0]["standardized"];
            assert_eq!(engine["model"]["name"], json!(model), "variant {i}");
            assert_eq!(engine["replicas"], json!(replicas), "variant {i}");
            let par = &engine["accelerator"]["parallelism"];
            assert_eq!(
                (&par["tp"], &par["dp"], &par["pp"]),
                (&json!(tp), &json!(dp), &json!(pp)),
                "variant {i}"
            );
            let tool = &r["scenario"]["load"]["standardized"]["tool"];
            let expected = match harness.as_str() {
                "builtin" => "benchflow",
                "vllm-bench" => "vllm-benchmark",
                other => other,
            };
            assert_eq!(tool, expected, "variant {i}");
            let s = &stats["stages"][n];
            let requests = &r["results"]["request_performance"]["aggregate"]["requests"];
            assert_eq!(
                requests["total"].as_u64(),
                Some(s["completed"].as_u64().unwrap() + s["failed"].as_u64().unwrap()),
                "variant {i}"
            );
        }
        files.extend(reports);
    }
    upstream_loads(&files);
}

/// llm-d's own conversion of a tool's native output (`benchmark-report FILE -b 0.2 -w TOOL`);
/// none when the machine has no Python for it.
pub fn upstream_conversion(tool: &str, native: &Path) -> Option<Value> {
    let python = upstream_python()?;
    let bin = python.with_file_name("benchmark-report");
    let out = std::process::Command::new(bin).arg(native).args(["-b", "0.2", "-w", tool]).output().unwrap();
    assert!(out.status.success(), "{tool} {}: {}", native.display(), text(&out.stderr));
    // Its YAML as JSON, an infinity (`rate_qps: .inf` for a concurrency stage) as a string.
    let mut json = std::process::Command::new(&python)
        .args(["-c", TO_JSON])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut json.stdin.take().unwrap(), &out.stdout).unwrap();
    let json = json.wait_with_output().unwrap();
    assert!(json.status.success(), "{}", text(&json.stderr));
    Some(serde_json::from_slice(&json.stdout).unwrap())
}

/// A statistic of a report's aggregate (`latency.time_to_first_token.p50`), in ms for times.
pub fn stat(r: &Value, path: &str) -> Option<f64> {
    let (parent, key) = path.rsplit_once('.').unwrap();
    let mut v = &r["results"]["request_performance"]["aggregate"];
    for k in parent.split('.') {
        v = &v[k];
    }
    let scale = match v["units"].as_str() {
        Some("s" | "s/token") => 1000.0,
        _ => 1.0,
    };
    v[key].as_f64().map(|x| x * scale)
}

/// Asserts `ours` and `theirs` agree at `path` within `tol` (absolute) and says both.
pub fn agree(ours: &Value, theirs: &Value, path: &str, tol: f64) {
    let (a, b) = (stat(ours, path), stat(theirs, path));
    eprintln!("{path}: benchflow {a:?}, llm-d's conversion {b:?}");
    let (Some(a), Some(b)) = (a, b) else { panic!("{path}: benchflow {a:?}, llm-d's conversion {b:?}") };
    assert!((a - b).abs() <= tol, "{path}: benchflow {a}, llm-d's conversion {b} (tolerance {tol})");
}
