//! External harnesses on the simulator: aiperf and inference-perf installed by benchflow's tool
//! installer, run from a benchflow workload, their per-request exports converted into
//! benchflow's records and analysed; what a tool cannot express refused before anything starts.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::{Project, text, tools_home};

/// The simulator with exact timing: 50 ms to the first token, 10 ms between tokens.
const TRUTH: &str = "engine.args=[--set, fidelity=analytic, --set, ttft=50ms, --set, itl=10ms, --set, ttft_std=0ms, --set, itl_std=0ms, --set, time_factor_under_load=1, --set, request_overhead=0]";

fn json(path: PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

/// Checks the analysis of a harness run against the simulator's truth and returns its stages.
fn analysed(p: &Project, tool: &str, counts: &[u64]) -> Vec<Value> {
    let wd = p.path("wd");
    let stats = json(wd.join("analysis/latest/stats.json"));
    let stages = stats["stages"].as_array().unwrap().clone();
    assert_eq!(stages.len(), counts.len());
    for (s, n) in stages.iter().zip(counts) {
        assert_eq!(s["completed"].as_u64(), Some(*n), "{s}");
        assert_eq!(s["failed"].as_u64(), Some(0), "{s}");
        // Every token count came from the server (the records carry its usage).
        assert_eq!(s["estimated_token_requests"].as_u64(), Some(0), "{s}");
        let ttft = s["median_ttft_ms"].as_f64().unwrap();
        let itl = s["median_itl_ms"].as_f64().unwrap();
        assert!((49.5..60.0).contains(&ttft), "{tool}: TTFT median {ttft} ms against a truth of 50");
        assert!((9.5..11.5).contains(&itl), "{tool}: ITL median {itl} ms against a truth of 10");
    }
    let report = std::fs::read_to_string(wd.join("analysis/latest/report.html")).unwrap();
    assert!(report.contains(&format!("{tool} ")), "the report names the load generator");
    assert!(wd.join(format!("setup/tools/{tool}.json")).is_file(), "the tool as installed is recorded");
    assert!(wd.join("results/latest/native/stage-1/command.sh").is_file());
    assert!(wd.join("results/latest/native/tokenizer/tokenizer.json").is_file());
    for r in benchmark_reports(&p.path("wd"), counts.len()) {
        assert_eq!(r["scenario"]["load"]["standardized"]["tool"], tool);
    }
    for (v, n) in vllm_results(&p.path("wd"), counts.len()).iter().zip(counts) {
        assert_eq!((v["num_prompts"].as_u64(), v["completed"].as_u64()), (Some(*n), Some(*n)));
        assert!(v["tokenizer_id"].as_str().unwrap().ends_with("native/tokenizer"), "the tool's tokenizer");
    }
    stages
}

/// The vLLM-compatible result files of the latest run, one per stage: vLLM's figures over the
/// same requests as `stats.json` (convention vllm), every per-request array one entry per request.
fn vllm_results(wd: &std::path::Path, stages: usize) -> Vec<Value> {
    let stats = json(wd.join("analysis/latest/stats.json"));
    let run = json(wd.join("results/latest/run.json"));
    (1..=stages)
        .map(|n| {
            let v = json(wd.join(format!("analysis/latest/vllm_bench_stage_{n}.json")));
            let s = &stats["stages"][n - 1];
            assert_eq!(v["model_id"], run["model"]);
            let requests = v["num_prompts"].as_u64().unwrap();
            assert_eq!(s["completed"].as_u64().unwrap() + s["failed"].as_u64().unwrap(), requests);
            for k in ["input_lens", "output_lens", "ttfts", "itls", "latencies", "start_times", "errors"] {
                assert_eq!(v[k].as_array().map(|a| a.len() as u64), Some(requests), "{k}");
            }
            for k in [
                "completed",
                "total_input_tokens",
                "total_output_tokens",
                "duration",
                "median_ttft_ms",
                "p99_itl_ms",
            ] {
                assert_eq!(v[k], s[k], "stage {n}: {k}");
            }
            for k in ["mean_ttft_ms", "mean_tpot_ms", "std_itl_ms", "request_throughput"] {
                let (a, b) = (v[k].as_f64().unwrap(), s[k].as_f64().unwrap());
                assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "stage {n}: {k}: {a} against {b}");
            }
            v
        })
        .collect()
}

/// The llm-d Benchmark Reports of the latest run, one per stage (as JSON), each loaded by llm-d's
/// own package from the YAML its globs find.
fn benchmark_reports(wd: &std::path::Path, stages: usize) -> Vec<Value> {
    let yaml = crate::interop::reports_in(wd);
    assert_eq!(yaml.len(), stages, "{yaml:?}");
    crate::interop::upstream_loads(&yaml);
    (1..=stages)
        .map(|n| json(wd.join(format!("analysis/latest/benchmark_report_v0.2_stage_{n}.json"))))
        .collect()
}

#[test]
fn a_built_in_run_writes_a_valid_benchmark_report_per_stage() {
    let p = Project::new("benchmark-report");
    p.file(
        "workloads/w.yaml",
        "seed: 3\ndataset: { random: { input_len: 32, output_len: 16, range_ratio: 0.5, prefix_len: 8 } }\nwarmup: { requests: 0 }\n\
         stages:\n  - { rate: 40, max_concurrency: 3, requests: 40 }\n  - { concurrency: 2, requests: 10 }\n",
    );
    let out = p.run(&[
        "e2e",
        "-w",
        "w",
        "--set",
        TRUTH,
        "--set",
        "harness.scrape_every=0.1s",
        "--workdir",
        "wd",
        "-q",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reports = benchmark_reports(&p.path("wd"), 2);
    let stats = json(p.path("wd/analysis/latest/stats.json"));
    for (r, s) in reports.iter().zip(stats["stages"].as_array().unwrap()) {
        // The figures are the analysis's own, in the report's units.
        let agg = &r["results"]["request_performance"]["aggregate"];
        assert_eq!(agg["latency"]["time_to_first_token"]["p50"], s["median_ttft_ms"]);
        assert_eq!(agg["latency"]["time_to_first_token"]["p99p9"], s["p99.9_ttft_ms"]);
        assert_eq!(agg["latency"]["request_latency"]["max"], s["max_e2el_ms"]);
        assert_eq!(agg["throughput"]["request_rate"]["mean"], s["request_throughput"]);
        assert_eq!(agg["requests"]["total"], s["completed"]);
        let mean_in = s["total_input_tokens"].as_f64().unwrap() / s["completed"].as_f64().unwrap();
        assert!((agg["requests"]["input_length"]["mean"].as_f64().unwrap() - mean_in).abs() < 1e-9);
        // The engine as it answered: the model id it lists, the version its /version gave.
        let engine = &r["scenario"]["stack"][0]["standardized"];
        assert_eq!(
            (engine["tool"].as_str(), engine["tool_version"].as_str(), engine["model"]["name"].as_str()),
            (Some("benchflow-sim"), Some(env!("CARGO_PKG_VERSION")), Some("tiny-sim"))
        );
        assert_eq!(engine["replicas"], 1);
        // What the engine's metrics said within the stage, for the engine component.
        let o = &r["results"]["observability"]["components"][0];
        assert_eq!(o["component_label"], "engine");
        assert_eq!(o["aggregate"]["kv_cache_usage"]["units"], "fraction");
    }
    // llm-d's `vllm-benchmark` converter reads benchflow's vLLM result file to the same figures.
    for n in [1, 2] {
        let file = p.path(&format!("wd/analysis/latest/vllm_bench_stage_{n}.json"));
        let Some(theirs) = crate::interop::upstream_conversion("vllm-benchmark", &file) else { break };
        let ours = &reports[n - 1];
        for path in [
            "requests.total",
            "requests.failures",
            "requests.input_length.mean",
            "requests.output_length.mean",
        ] {
            crate::interop::agree(ours, &theirs, path, 1e-9);
        }
        for metric in
            ["time_to_first_token", "time_per_output_token", "inter_token_latency", "request_latency"]
        {
            for q in
                ["mean", "stddev", "p0p1", "p1", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99p9"]
            {
                crate::interop::agree(ours, &theirs, &format!("latency.{metric}.{q}"), 1e-9);
            }
        }
        for path in [
            "throughput.request_rate.mean",
            "throughput.output_token_rate.mean",
            "throughput.total_token_rate.mean",
        ] {
            crate::interop::agree(ours, &theirs, path, 1e-9);
        }
    }
    let load = |i: usize| reports[i]["scenario"]["load"]["standardized"].clone();
    assert_eq!((load(0)["rate_qps"].as_f64(), load(0)["concurrency"].as_u64()), (Some(40.0), Some(3)));
    assert_eq!(
        load(0)["input_seq_len"],
        serde_json::json!({ "distribution": "uniform", "value": 40.0, "min": 24, "max": 56 })
    );
    assert_eq!(load(0)["prefix"]["prefix_len"]["value"], 8.0);
    assert_eq!((load(1)["concurrency"].as_u64(), load(1)["stage"].as_u64()), (Some(2), Some(2)));
    // vLLM's result file per stage: the stage's configuration as `vllm bench serve` writes it.
    let v = vllm_results(&p.path("wd"), 2);
    let traffic = |v: &Value| {
        (
            v["request_rate"].clone(),
            v["burstiness"].clone(),
            v["max_concurrency"].clone(),
            v["num_prompts"].clone(),
        )
    };
    assert_eq!(traffic(&v[0]), (40.0.into(), 1.0.into(), 3.into(), 40.into()));
    assert_eq!(traffic(&v[1]), ("inf".into(), 1.0.into(), 2.into(), 10.into()));
    assert_eq!((v[0]["backend"].as_str(), v[0]["tokenizer_id"].as_str()), (Some("openai"), None));
    assert_eq!(v[0]["benchflow_convention"], "vllm");
}

/// llm-d's converter on aiperf's own summary (`profile_export_aiperf.json`) against benchflow's
/// report of the same records, field by field (docs/harnesses.md says why each differs).
fn aiperf_as_llm_d_converts_it(wd: &std::path::Path) {
    use crate::interop::{agree, stat, upstream_conversion};
    for (n, rate) in [(1, Some(8.0)), (2, None)] {
        let native = wd.join(format!("results/latest/native/stage-{n}/profile_export_aiperf.json"));
        let Some(theirs) = upstream_conversion("aiperf", &native) else { return };
        let ours = json(wd.join(format!("analysis/latest/benchmark_report_v0.2_stage_{n}.json")));
        // The same requests, lengths, TTFT and E2EL: to rounding.
        for path in [
            "requests.total",
            "requests.failures",
            "requests.input_length.mean",
            "requests.output_length.max",
        ] {
            agree(&ours, &theirs, path, 0.0);
        }
        for q in ["mean", "min", "p50", "p90", "p99", "max"] {
            agree(&ours, &theirs, &format!("latency.time_to_first_token.{q}"), 1e-6);
            agree(&ours, &theirs, &format!("latency.request_latency.{q}"), 1e-6);
        }
        // aiperf's "inter-token latency" is per request, (E2EL − TTFT)/(tokens − 1): vLLM's TPOT.
        for q in ["mean", "p50", "p99", "max"] {
            let (a, b) = (
                stat(&ours, &format!("latency.time_per_output_token.{q}")),
                stat(&theirs, &format!("latency.inter_token_latency.{q}")),
            );
            assert!((a.unwrap() - b.unwrap()).abs() < 1e-6, "TPOT {q}: {a:?} against aiperf's ITL {b:?}");
        }
        // Rates: aiperf's window opens one inter-arrival before its first request at a rate
        // (0 at a concurrency); benchflow's at the first dispatch. Over the same requests.
        let total = stat(&ours, "requests.total").unwrap();
        let window = |r: &Value| total / stat(r, "throughput.request_rate.mean").unwrap();
        let extra = window(&theirs) - window(&ours);
        let opening = rate.map_or(0.0, |r| 1.0 / r);
        eprintln!("stage {n}: aiperf's window {extra:.4} s longer (one inter-arrival: {opening:.4} s)");
        assert!((extra - opening).abs() < 0.05, "stage {n}: aiperf's window {extra} s longer, not {opening}");
    }
}

#[test]
fn aiperf_is_installed_run_and_its_records_analysed() {
    let p = Project::new("aiperf").with_env("BENCHFLOW_TOOLS_DIR", &tools_home());
    p.file(
        "workloads/w.yaml",
        "seed: 3\ndataset: { random: { input_len: 32, output_len: 16 } }\nwarmup: { requests: 2 }\n\
         stages:\n  - { rate: 8, arrival: constant, requests: 16 }\n  - { concurrency: 2, requests: 10 }\n",
    );
    let out = p.run(&[
        "e2e",
        "-H",
        "aiperf",
        "-w",
        "w",
        "--set",
        TRUTH,
        "--install-missing",
        "--workdir",
        "wd",
        "-q",
    ]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    analysed(&p, "aiperf", &[16, 10]);
    aiperf_as_llm_d_converts_it(&p.path("wd"));
    // The tool counted every prompt and output with benchflow's tokenizer exactly as the server did.
    let native =
        std::fs::read_to_string(p.path("wd/results/latest/native/stage-1/profile_export.jsonl")).unwrap();
    let mut n = 0;
    for line in native.lines() {
        let m = &serde_json::from_str::<Value>(line).unwrap()["metrics"];
        assert_eq!(m["input_sequence_length"]["value"], m["usage_prompt_tokens"]["value"], "{m}");
        assert_eq!(m["output_sequence_length"]["value"], m["usage_completion_tokens"]["value"], "{m}");
        n += 1;
    }
    assert_eq!(n, 16);
    // Warm-up records are kept but marked.
    let csv = std::fs::read_to_string(p.path("wd/results/latest/requests.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 + 16 + 10);
    assert_eq!(csv.lines().skip(1).filter(|l| l.split(',').nth(2) == Some("1")).count(), 2);
}

/// llm-d's converter on inference-perf's own per-stage summary against benchflow's report of
/// the same records, field by field (docs/harnesses.md says why each differs).
fn inference_perf_as_llm_d_converts_it(wd: &std::path::Path) {
    use crate::interop::{agree, stat, upstream_conversion};
    for n in [1, 2] {
        let native = wd.join(format!("results/latest/native/stage-{n}/stage_0_lifecycle_metrics.json"));
        let Some(theirs) = upstream_conversion("inference-perf", &native) else { return };
        let ours = json(wd.join(format!("analysis/latest/benchmark_report_v0.2_stage_{n}.json")));
        for path in ["requests.total", "requests.failures"] {
            agree(&ours, &theirs, path, 0.0);
        }
        for q in ["mean", "min", "p50", "p90", "p99", "max"] {
            agree(&ours, &theirs, &format!("latency.time_to_first_token.{q}"), 1e-5);
            agree(&ours, &theirs, &format!("latency.time_per_output_token.{q}"), 1e-5);
            // benchflow keeps each gap in whole microseconds.
            agree(&ours, &theirs, &format!("latency.inter_token_latency.{q}"), 1e-3);
            // inference-perf's request latency runs to the stream's end, vLLM's to the last
            // content chunk: the [DONE] event after it, later for every request, so at every
            // quantile (a few ms on a loaded machine).
            let end = stat(&theirs, &format!("latency.request_latency.{q}")).unwrap()
                - stat(&ours, &format!("latency.request_latency.{q}")).unwrap();
            assert!((0.0..25.0).contains(&end), "E2EL {q}: inference-perf's {end} ms longer");
        }
        for path in ["throughput.request_rate.mean", "throughput.output_token_rate.mean"] {
            agree(&ours, &theirs, path, 1e-6);
        }
    }
}

#[test]
fn inference_perf_is_installed_run_and_its_records_analysed() {
    let p = Project::new("inference-perf").with_env("BENCHFLOW_TOOLS_DIR", &tools_home());
    let install = p.run(&["tools", "install", "inference-perf"]);
    if !install.status.success() && text(&install.stderr).contains("needs Python >=3.12, and none was found")
    {
        // Said loudly: the machine has no Python >= 3.12 (Debian 12 ships 3.11).
        eprintln!("SKIPPED: {}", text(&install.stderr));
        return;
    }
    assert!(install.status.success(), "{}", text(&install.stderr));
    p.file(
        "workloads/w.yaml",
        "seed: 3\ndataset: { random: { input_len: 32, output_len: 16 } }\nwarmup: { requests: 0 }\n\
         stages:\n  - { rate: 8, arrival: constant, duration: 2s }\n  - { concurrency: 2, requests: 10 }\n",
    );
    let out = p.run(&["e2e", "-H", "inference-perf", "-w", "w", "--set", TRUTH, "--workdir", "wd", "-q"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    analysed(&p, "inference-perf", &[16, 10]);
    inference_perf_as_llm_d_converts_it(&p.path("wd"));
    let native = json(p.path("wd/results/latest/native/stage-2/per_request_lifecycle_metrics.json"));
    for r in native.as_array().unwrap() {
        let m = &r["info"]["response_metrics"];
        assert_eq!(r["info"]["input_tokens"], m["server_usage"]["prompt_tokens"], "{r}");
        assert_eq!(m["output_tokens"], m["server_usage"]["completion_tokens"], "{r}");
    }
}

#[test]
fn what_a_tool_cannot_express_or_a_missing_tool_stops_everything_first() {
    let p = Project::new("harness-refusals");
    let empty = p.path("no-tools").to_string_lossy().into_owned();
    let p = p.with_env("BENCHFLOW_TOOLS_DIR", &empty);
    p.file(
        "workloads/bursty.yaml",
        "dataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { rate: 5, arrival: gamma, burstiness: 0.5, duration: 3s } ]\n",
    );
    let out = p.run(&["e2e", "-H", "inference-perf", "-w", "bursty", "--workdir", "wd"]);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("the inference-perf harness cannot run this workload: `stages[0].arrival`")
            && said.contains("not gamma"),
        "{said}"
    );
    assert!(!text(&out.stdout).contains("01_start_engine"), "nothing started");
    // A ramp is the built-in load generator's: every tool refuses it, naming the field.
    p.file(
        "workloads/ramp.yaml",
        "dataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { rate: 1, duration: 2s }, { rate: 5, ramp_to: 50, duration: 3s } ]\n",
    );
    for tool in ["aiperf", "inference-perf", "guidellm", "vllm-bench"] {
        let out = p.run(&["e2e", "-H", tool, "-w", "ramp", "--workdir", "wd-ramp"]);
        let said = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{tool}: {said}");
        assert!(said.contains("`stages[1].ramp_to`") && said.contains("harness: builtin"), "{tool}: {said}");
    }
    // A prompt file with a conversation the tool's file format cannot hold: the file and the
    // prompt are named before anything starts.
    p.file(
        "workloads/talk.jsonl",
        "{\"prompt\": \"the of\", \"max_tokens\": 3}\n\
         {\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", \"content\": \"to in\"}], \"max_tokens\": 3}\n",
    )
    .file("workloads/talk.yaml", "dataset: { jsonl: { path: talk.jsonl } }\nstages: [ { concurrency: 1, requests: 2 } ]\n");
    let out = p.run(&["e2e", "-H", "aiperf", "-w", "talk", "--workdir", "wd3"]);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("talk.jsonl") && said.contains("2 messages") && said.contains("\"be brief\""),
        "{said}"
    );
    assert!(!text(&out.stdout).contains("01_start_engine"), "nothing started");
    // A tool that is not installed: the preflight says how to install it, nothing starts.
    let out = p.run(&["e2e", "-H", "aiperf", "--workdir", "wd2"]);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("aiperf 0.13.0 is not installed") && said.contains("benchflow tools install aiperf"),
        "{said}"
    );
    assert!(!text(&out.stdout).contains("done in"), "nothing started: {}", text(&out.stdout));
}

/// Processes working in `dir` or below (the tool runs in its stage's directory, and aiperf's
/// processes rename themselves, so their command lines do not say where they belong).
fn processes_in(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else { continue };
        if cwd.starts_with(dir) {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            out.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
    }
    out
}

/// `e2e -H aiperf` with a long stage, returned once aiperf is sending (its processes run in
/// the stage's directory and its log says it is profiling).
fn aiperf_running(tag: &str) -> (Project, std::process::Child) {
    let p = Project::new(tag).with_env("BENCHFLOW_TOOLS_DIR", &tools_home());
    p.file(
        "workloads/long.yaml",
        "dataset: { random: { input_len: 16, output_len: 400 } }\nwarmup: { requests: 0 }\nstages: [ { concurrency: 4, duration: 120s } ]\n",
    );
    let child = p
        .cmd(&["e2e", "-H", "aiperf", "-w", "long", "--install-missing", "--workdir", "wd", "-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let native = p.path("wd/results/001/native/stage-1");
    crate::support::wait_for("aiperf sending", std::time::Duration::from_secs(240), || {
        std::fs::read_to_string(native.join("logs/aiperf.log")).is_ok_and(|l| l.contains("profiling"))
            && !processes_in(&native).is_empty()
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    (p, child)
}

#[test]
fn sigint_while_the_tool_runs_stops_it_and_everything_else() {
    let (p, child) = aiperf_running("aiperf-int");
    let wd = p.path("wd");
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let left = processes_in(&wd);
    assert!(left.is_empty(), "still running after the interrupt: {left:#?}");
    assert_eq!(crate::support::state(&wd)["steps"]["05_stop_start_engine"]["status"], "done");
}

#[test]
fn sigkill_of_benchflow_stops_the_tool_and_teardown_the_engine() {
    let (p, mut child) = aiperf_running("aiperf-kill");
    let wd = p.path("wd");
    child.kill().unwrap();
    child.wait().unwrap();
    // Nobody is left to stop the tool: its watcher sees benchflow gone and stops the group.
    crate::support::wait_for("aiperf stopped", std::time::Duration::from_secs(30), || {
        processes_in(&wd).is_empty()
    });
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(crate::support::state(&wd)["steps"]["05_stop_start_engine"]["status"], "done");
}

/// A stand-in for aiperf installed where benchflow looks for it: the first run (stage 1) leaves
/// the recorded export of two complete requests (and two failed ones), the second runs `second`.
fn failing_second_stage(p: &Project, second: &str) -> String {
    let home = p.path("fake-tools");
    let dir = home.join("aiperf-0.13.0/venv/bin");
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/integration/fixtures/native/aiperf-profile_export.jsonl");
    let count = home.join("runs");
    let script = format!(
        "#!/bin/sh\necho run >> {count}\nif [ $(wc -l < {count}) -eq 1 ]; then cp {fixture} profile_export.jsonl; exit 0; fi\n{second}\n",
        count = count.display(),
        fixture = fixture.display()
    );
    let bin = dir.join("aiperf");
    std::fs::write(&bin, script).unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&bin).status().unwrap();
    let record = serde_json::json!({ "name": "aiperf", "package": "aiperf", "version": "0.13.0", "python": "/usr/bin/python3",
                                     "python_version": "3", "bin": bin, "packages": [] });
    std::fs::write(home.join("aiperf-0.13.0/tool.json"), record.to_string()).unwrap();
    home.to_string_lossy().into_owned()
}

/// A project whose aiperf's second run does `second`, after `e2e` of two stages; its stderr.
fn two_stages(tag: &str, second: &str) -> (Project, String) {
    let p = Project::new(tag);
    let home = failing_second_stage(&p, second);
    let p = p.with_env("BENCHFLOW_TOOLS_DIR", &home);
    p.file(
        "workloads/two.yaml",
        "dataset: { random: { input_len: 32, output_len: 16 } }\nwarmup: { requests: 0 }\nstages: [ { concurrency: 1, requests: 2 }, { concurrency: 1, requests: 2 } ]\n",
    );
    let out = p.run(&["e2e", "-H", "aiperf", "-w", "two", "--workdir", "wd"]);
    assert!(!out.status.success());
    (p, text(&out.stderr))
}

/// Stage 1's records were written and run.json completed, and they analyse.
fn first_stage_kept(p: &Project) {
    let csv = std::fs::read_to_string(p.path("wd/results/001/requests.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
    let info = json(p.path("wd/results/001/run.json"));
    assert_eq!((info["records"].as_u64(), info["failed"].as_u64()), (Some(4), Some(2)));
    let dispatched: Vec<u64> =
        info["stages"].as_array().unwrap().iter().map(|s| s["dispatched"].as_u64().unwrap()).collect();
    assert_eq!(dispatched[0], 4, "{dispatched:?}");
    assert_eq!(dispatched[1..].iter().sum::<u64>(), 0, "the failed stage recorded nothing: {dispatched:?}");
    // …and analysed on request.
    let out = p.run(&["analyze", "wd"]);
    assert!(p.path("wd/analysis/001/stats.json").is_file(), "{}", text(&out.stderr));
}

#[test]
fn a_tool_failing_in_a_later_stage_is_reported_and_the_earlier_records_kept() {
    let (p, said) = two_stages("aiperf-fails", "echo 'ValueError: the tool gave up'; exit 3");
    assert!(
        said.contains("aiperf 0.13.0 (concurrency=1) exited with exit status: 3")
            && said.contains("results/001/native/stage-2")
            && said.contains("ValueError: the tool gave up"),
        "{said}"
    );
    first_stage_kept(&p);
}

#[test]
fn an_unreadable_export_is_named_and_the_earlier_records_kept() {
    let (p, said) = two_stages("aiperf-garbage", "echo 'not json' > profile_export.jsonl; exit 0");
    assert!(said.contains("stage-2/profile_export.jsonl: line 1: expected"), "{said}");
    first_stage_kept(&p);
}

/// Five prompts of 2, 4, …, 10 words of the simulator's lexicon (one token each), asking for
/// one token more than their length: a record whose output is its prompt's length + 1 was sent
/// that prompt with that prompt's output length.
const PROMPTS: &str = "{\"prompt\": \"the of\", \"max_tokens\": 3}\n\
    {\"prompt\": \"the of and to\", \"max_tokens\": 5}\n\
    {\"prompt\": \"the of and to in is\", \"max_tokens\": 7}\n\
    {\"prompt\": \"the of and to in is for on\", \"max_tokens\": 9}\n\
    {\"prompt\": \"the of and to in is for on it as\", \"max_tokens\": 11}\n";

/// A prompt file run by `tool`: every request carried one of the file's prompts with its own
/// output length, every prompt went out, the first five in the file's order (benchflow's seeded
/// order: the file has no `seed`-independent order to check, so the test reads the order back
/// from the file handed over), then the same five again (the tool cycles through the file in
/// order), and the file is kept in the run.
fn prompt_file_run(tool: &str, file: &str) {
    let p = Project::new(&format!("{tool}-prompts")).with_env("BENCHFLOW_TOOLS_DIR", &tools_home());
    p.file("workloads/prompts.jsonl", PROMPTS).file(
        "workloads/w.yaml",
        "seed: 3\napi: { endpoint: completions }\ndataset: { jsonl: { path: prompts.jsonl } }\nwarmup: { requests: 0 }\n\
         stages:\n  - { concurrency: 1, requests: 10 }\n",
    );
    let out =
        p.run(&["e2e", "-H", tool, "-w", "w", "--set", TRUTH, "--install-missing", "--workdir", "wd", "-q"]);
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let csv = std::fs::read_to_string(p.path("wd/results/latest/requests.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (sent, prompt, output, status) =
        (col("sent_us"), col("prompt_tokens"), col("output_tokens"), col("status"));
    let mut rows: Vec<(f64, u32)> = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[status], "200", "{line}");
        let (i, o): (u32, u32) = (f[prompt].parse().unwrap(), f[output].parse().unwrap());
        assert_eq!(o, i + 1, "{tool}: a prompt of {i} tokens asked for {} tokens, got {o}: {line}", i + 1);
        rows.push((f[sent].parse().unwrap(), i));
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let order: Vec<u32> = rows.iter().map(|r| r.1).collect();
    // The order benchflow handed over: the prompts' lengths in the tool's file.
    let handed = std::fs::read_to_string(p.path("wd/results/latest/native").join(file)).unwrap();
    let words = |v: &Value| v.as_str().unwrap().split_whitespace().count() as u32;
    let expected: Vec<u32> = handed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        // inference-perf's file begins with a one-turn conversation it reads first and skips after.
        .filter(|v| !v["conversations"].is_array() || v["conversations"].as_array().unwrap().len() == 2)
        .map(|v| {
            words(if v["conversations"].is_array() { &v["conversations"][0]["value"] } else { &v["text"] })
        })
        .collect();
    assert_eq!(expected.len(), 5);
    assert_eq!(order[..5], expected[..], "{tool}: sent in the order handed over: {order:?}");
    assert_eq!(order[5..], expected[..], "{tool}: then again from the top: {order:?}");
}

#[test]
fn a_prompt_file_reaches_aiperf_prompt_by_prompt() {
    prompt_file_run("aiperf", "prompts-aiperf.jsonl");
}

#[test]
fn a_prompt_file_reaches_inference_perf_prompt_by_prompt() {
    prompt_file_run("inference-perf", "prompts-inference-perf.json");
}
