//! `benchflow run --endpoint` and `benchflow analyze` as a user runs them.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{loadgen::TempDir, support::benchflow};

/// A simulator process, killed when dropped; `.1` is its URL.
struct Sim(Child, String);

impl Sim {
    fn start(args: &[&str]) -> Self {
        let (child, url) = crate::support::spawn_sim(args);
        Sim(child, url)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workload(dir: &TempDir, yaml: &str) -> String {
    let p = dir.0.join("w.yaml");
    std::fs::write(&p, yaml).unwrap();
    p.display().to_string()
}

#[test]
fn run_writes_results_and_analysis_and_analyze_recomputes_them() {
    let sim = Sim::start(&["--profile", "tiny/cpu", "--set", "time_scale=0"]);
    let dir = TempDir::new("cli-run");
    let w = workload(
        &dir,
        "dataset: { random: { input_len: 16, output_len: 8 } }\nwarmup: { requests: 2 }\nstages:\n  - { rate: 50, requests: 40 }\n  - { concurrency: 4, requests: 40 }\n",
    );
    let wd = dir.0.join("wd");
    let out = benchflow()
        .args(["run", "--endpoint", &sim.1, "-w", &w, "--workdir", wd.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("== stage 1: rate=50/s poisson ==")
            && stdout.contains("== stage 2: concurrency=4 =="),
        "{stdout}"
    );
    for f in [
        "inputs/workload.yaml",
        "results/latest/requests.csv",
        "results/latest/run.json",
        "results/latest/server_metrics.csv",
        "analysis/latest/stats.json",
        "analysis/latest/stats.txt",
        "analysis/latest/summary.csv",
        "analysis/latest/report.html",
        "analysis/latest/vllm_bench_stage_1.json",
        "analysis/latest/vllm_bench_stage_2.json",
    ] {
        assert!(wd.join(f).is_file(), "{f} missing");
    }
    for chart in [
        "ttft_cdf",
        "e2el_cdf",
        "itl_cdf",
        "throughput",
        "requests",
        "server_kv_cache",
        "server_queue",
        "latency_vs_throughput",
    ] {
        let png = std::fs::read(wd.join(format!("analysis/latest/plots/{chart}.png")))
            .unwrap_or_else(|_| panic!("{chart}.png"));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{chart}.png is a PNG");
        let svg = std::fs::read_to_string(wd.join(format!("analysis/latest/plots/{chart}.svg"))).unwrap();
        assert!(svg.trim_start().starts_with("<svg") && svg.contains("</svg>"), "{chart}.svg");
    }
    let html = std::fs::read_to_string(wd.join("analysis/latest/report.html")).unwrap();
    assert!(html.contains("<h1>benchflow report</h1>") && html.matches("<svg").count() >= 8);
    assert!(
        !html.contains("src=\"http") && !html.contains("<script") && !html.contains("<link"),
        "the report must be self-contained"
    );
    let rows = std::fs::read_to_string(wd.join("results/latest/requests.csv")).unwrap().lines().count();
    assert_eq!(rows, 1 + 2 + 80, "header + warm-up + two stages");
    let stats = std::fs::read(wd.join("analysis/latest/stats.json")).unwrap();
    let vllm_file = wd.join("analysis/latest/vllm_bench_stage_1.json");
    let vllm = std::fs::read(&vllm_file).unwrap();
    std::fs::remove_dir_all(wd.join("analysis")).unwrap();
    let out = benchflow().args(["analyze", wd.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read(wd.join("analysis/latest/stats.json")).unwrap(),
        stats,
        "analyze must reproduce the run's statistics"
    );
    assert_eq!(std::fs::read(&vllm_file).unwrap(), vllm, "and the vLLM result file");
    let out =
        benchflow().args(["analyze", wd.to_str().unwrap(), "--convention", "guidellm"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("guidellm conventions"));
    // The run's own analysis stays; GuideLLM's goes beside it.
    assert_eq!(std::fs::read(&vllm_file).unwrap(), vllm);
    let guidellm_file = wd.join("analysis/latest/conventions/guidellm/vllm_bench_stage_1.json");
    // The vLLM keys keep vLLM's values under GuideLLM's convention; GuideLLM's figures are beside them.
    let json = |b: &[u8]| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(b).unwrap();
    let (v, g) = (json(&vllm), json(&std::fs::read(&guidellm_file).unwrap()));
    for (k, x) in v.iter().filter(|(k, _)| *k != "benchflow_convention") {
        assert_eq!(&g[k], x, "{k}");
    }
    assert_eq!(
        (v["benchflow_convention"].as_str(), g["benchflow_convention"].as_str()),
        (Some("vllm"), Some("guidellm"))
    );
    assert!(
        !v.contains_key("guidellm_metrics")
            && g["guidellm_metrics"]["time_per_output_token_ms"]["mean"].is_f64()
    );
    // Running again into the same directory measures again, beside the first run; the smoke
    // test runs again too (the endpoint must answer now: nothing benchflow started says so).
    let before = std::fs::read(wd.join("results/001/requests.csv")).unwrap();
    let smoke_before = crate::support::state(&wd)["steps"]["01_smoke_test"]["started_at"].clone();
    let out = benchflow()
        .args(["run", "--endpoint", &sim.1, "-w", &w, "--workdir", wd.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("already done"), "{err}");
    let smoke_started = crate::support::state(&wd)["steps"]["01_smoke_test"]["started_at"].clone();
    assert!(smoke_started.is_string() && smoke_started != smoke_before, "the smoke test ran again");
    assert_eq!(std::fs::read_link(wd.join("results/latest")).unwrap(), std::path::Path::new("002"));
    assert!(std::fs::read(wd.join("results/002/requests.csv")).unwrap().len() > 100, "measured again");
    assert!(wd.join("analysis/002/stats.json").is_file(), "and analysed");
    assert_eq!(std::fs::read(wd.join("results/001/requests.csv")).unwrap(), before, "the first run is kept");
}

/// A ramp stage sends at its instantaneous rate: over 4 s from 20/s to 180/s, Λ(t) = 20t + 20t²,
/// so 120 requests are expected in the first half and 280 in the second; run.json records the
/// ramp's ends and its mean; the label says it; a bad ramp is refused naming the stage.
#[test]
fn a_ramp_stage_sends_at_its_instantaneous_rate() {
    let sim = Sim::start(&["--profile", "tiny/cpu", "--set", "time_scale=0"]);
    let dir = TempDir::new("cli-ramp");
    let w = workload(
        &dir,
        "seed: 4\ndataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { rate: 20, ramp_to: 180, duration: 4s } ]\n",
    );
    let wd = dir.0.join("wd");
    let out = benchflow()
        .args(["run", "--endpoint", &sim.1, "-w", &w, "--workdir", wd.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("results/latest/run.json")).unwrap()).unwrap();
    let stage = &info["stages"][0];
    assert_eq!(stage["ramp"], serde_json::json!({ "from": 20.0, "to": 180.0, "duration_s": 4.0 }), "{stage}");
    assert_eq!(stage["rate"], 100.0, "the mean rate: {stage}");
    assert_eq!(stage["label"], "rate=20→180/s poisson", "{stage}");
    // The result files other tools read say the same: the mean, and vLLM's ramp-up keys.
    let analysis = wd.join("analysis/latest");
    let vllm: serde_json::Value =
        serde_json::from_slice(&std::fs::read(analysis.join("vllm_bench_stage_1.json")).unwrap()).unwrap();
    assert_eq!(
        (
            &vllm["request_rate"],
            &vllm["ramp_up_strategy"],
            &vllm["ramp_up_start_rps"],
            &vllm["ramp_up_end_rps"]
        ),
        (
            &serde_json::json!(100.0),
            &serde_json::json!("linear"),
            &serde_json::json!(20.0),
            &serde_json::json!(180.0)
        )
    );
    let report = std::fs::read_to_string(analysis.join("benchmark_report_v0.2_stage_1.json")).unwrap();
    assert!(report.contains("\"rate_qps\": 100.0") || report.contains("\"rate_qps\":100.0"), "{report}");
    assert!(!report.contains("\"rate_qps\": 20.0") && !report.contains("\"rate_qps\":20.0"), "{report}");
    let csv = std::fs::read_to_string(wd.join("results/latest/requests.csv")).unwrap();
    let col = benchflow::HEADER.iter().position(|c| *c == "scheduled_us").unwrap();
    let scheduled: Vec<f64> =
        csv.lines().skip(1).map(|l| l.split(',').nth(col).unwrap().parse::<f64>().unwrap() * 1e-6).collect();
    let start = scheduled.iter().copied().fold(f64::INFINITY, f64::min);
    let first = scheduled.iter().filter(|&&t| t - start < 2.0).count() as f64;
    let second = scheduled.len() as f64 - first;
    // Four standard deviations of a Poisson count.
    assert!((first - 120.0_f64).abs() <= 4.0 * 120f64.sqrt(), "first half: {first}");
    assert!((second - 280.0_f64).abs() <= 4.0 * 280f64.sqrt(), "second half: {second}");
    // A falling ramp cut short by its count sent what the ramp asked over the time it ran: not
    // flagged as over-sending (its mean over the whole stage is lower).
    let capped = workload(
        &dir,
        "dataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { rate: 50, ramp_to: 5, duration: 6s, requests: 60, arrival: constant } ]\n",
    );
    let out = benchflow()
        .args(["run", "--endpoint", &sim.1, "-w", &capped, "--workdir", wd.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("analysis/latest/stats.json")).unwrap()).unwrap();
    let send = &stats["stages"][0]["send_rate"];
    assert_eq!(send["over_sent"], false, "{send}");
    assert!(send["asked"].as_f64().unwrap() > 40.0, "the ramp's rate over its first seconds: {send}");
    for (bad, says) in [
        ("{ concurrency: 2, ramp_to: 9, duration: 2s }", "stage 1: `ramp_to` ramps a rate"),
        ("{ rate: 2, ramp_to: 9, requests: 20 }", "stage 1: a ramp (`ramp_to`) runs for a `duration`"),
        ("{ rate: 2, ramp_to: -1, duration: 2s }", "stage 1: ramp_to -1 must be"),
        ("{ rate: 2, ramp_to: 1e9, duration: 2s }", "stage 1: ramp_to 1000000000: at most 100000"),
        ("{ rate: 0, ramp_to: 0, duration: 2s }", "stage 1: rate 0 must be a positive number"),
        // Not a ramp, but the same class: a count at a rate that would outlast any run.
        ("{ rate: 1e-300, requests: 3 }", "stage 1: requests / rate"),
        ("{ rate: 1, requests: 1000000000 }", "stage 1: requests / rate 1000000000: at most 604800"),
    ] {
        let w = workload(
            &dir,
            &format!("dataset: {{ random: {{ input_len: 8, output_len: 4 }} }}\nstages: [ {bad} ]\n"),
        );
        let out = benchflow().args(["plan", "-w", &w]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `analyze --convention` under another convention than the run's own writes a whole analysis
/// beside it (`analysis/<run>/conventions/<name>/`) and leaves the run's own as it was; the
/// reports link each other; under the run's own convention it rewrites the run's own. What
/// reads a run's statistics (`status`, experiments, `-o json`) reads the run's own.
#[test]
fn analyses_under_other_conventions_sit_beside_the_run_s_own_and_link_each_other() {
    let sim = Sim::start(&["--profile", "tiny/cpu", "--set", "time_scale=0"]);
    let dir = TempDir::new("cli-beside");
    let w = workload(
        &dir,
        "dataset: { random: { input_len: 16, output_len: 8 } }\nstages: [ { concurrency: 2, requests: 20 } ]\n",
    );
    let wd = dir.0.join("wd");
    let wd_s = wd.to_str().unwrap();
    let out = benchflow().args(["run", "--endpoint", &sim.1, "-w", &w, "--workdir", wd_s]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let own = wd.join("analysis/001");
    let read =
        |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let stats = read(&own.join("stats.json"));
    let convention =
        |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap()["convention"].clone();
    assert_eq!(convention(&stats), "vllm");
    assert!(!read(&own.join("report.html")).contains("also analysed under"), "nothing beside it yet");

    let out = benchflow().args(["analyze", wd_s, "--convention", "guidellm"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let beside = own.join("conventions/guidellm");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{}", beside.display())),
        "says where it went: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The run's own statistics are untouched; the other analysis is whole.
    assert_eq!(read(&own.join("stats.json")), stats);
    assert_eq!(convention(&read(&beside.join("stats.json"))), "guidellm");
    assert!(read(&beside.join("stats.txt")).starts_with("benchflow results (guidellm conventions)"));
    for f in ["summary.csv", "plots/throughput.svg", "plots/ttft_cdf.png"] {
        assert!(beside.join(f).is_file(), "{f}");
    }
    // Each report links the other.
    let own_report = read(&own.join("report.html"));
    assert!(
        own_report.contains("<a href=\"conventions/guidellm/report.html\">guidellm conventions</a>"),
        "{own_report}"
    );
    let beside_report = read(&beside.join("report.html"));
    assert!(
        beside_report.contains("<a href=\"../../report.html\">vllm conventions (the run's own analysis)</a>"),
        "{beside_report}"
    );

    // Under the run's own convention (given or not), the run's own is rewritten, the other kept,
    // and the links stay.
    std::fs::remove_file(own.join("stats.json")).unwrap();
    for args in [vec!["analyze", wd_s, "--convention", "vllm"], vec!["analyze", wd_s]] {
        let out = benchflow().args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(read(&own.join("stats.json")), stats, "{args:?}");
        assert!(!own.join("conventions/vllm").exists(), "{args:?}");
        assert!(read(&own.join("report.html")).contains("conventions/guidellm/report.html"), "{args:?}");
        assert_eq!(convention(&read(&beside.join("stats.json"))), "guidellm");
    }
    // An experiment directory's points are analysed under their own conventions: `--convention`
    // there is refused (exit 2), saying what to do, and nothing is written.
    let exp = dir.0.join("exp");
    std::fs::create_dir_all(&exp).unwrap();
    std::fs::write(exp.join("experiment.yaml"), "base: { workload: sanity }\n").unwrap();
    let out =
        benchflow().args(["analyze", exp.to_str().unwrap(), "--convention", "guidellm"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/points/<point> --convention guidellm"));
    assert_eq!(std::fs::read_dir(&exp).unwrap().count(), 1);
    // `status` lists the one run (an analysis beside it is no run of its own).
    let out = benchflow().args(["status", wd_s, "-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs: Vec<&str> =
        status["harness_runs"].as_array().unwrap().iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(runs, ["001"], "{status}");
}

/// What a run is about, in its statistics and report: the engine's prefix-cache hit rate per
/// stage (the simulator exports vLLM's counters), goodput with the SLOs it counted against, and
/// each stage's start labelled in the time charts.
#[test]
fn a_run_s_report_says_its_prefix_cache_hits_its_goodput_slos_and_where_stages_start() {
    let sim = Sim::start(&["--profile", "tiny/cpu", "--set", "time_scale=0"]);
    let dir = TempDir::new("cli-about");
    // Every prompt starts with the same 64 words: the cache finds them from the second on.
    let w = workload(
        &dir,
        "dataset: { random: { input_len: 16, output_len: 8, prefix_len: 64 } }\n\
         slo: { ttft: 200ms, tpot: 12.5ms }\n\
         stages: [ { concurrency: 2, requests: 30 } ]\n",
    );
    let wd = dir.0.join("wd");
    let out = benchflow()
        .args(["run", "--endpoint", &sim.1, "-w", &w, "--workdir", wd.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = |f: &str| std::fs::read_to_string(wd.join("analysis/latest").join(f)).unwrap();
    let stats: serde_json::Value = serde_json::from_str(&read("stats.json")).unwrap();
    let stage = &stats["stages"][0];
    let cache = &stage["prefix_cache"];
    let (queries, hits) = (cache["queries"].as_f64().unwrap(), cache["hits"].as_f64().unwrap());
    // One stage, no warm-up: the engine looked up every prompt token of the stage (the smoke
    // test came before the first scrape), and found the shared prefix of most.
    assert_eq!(queries, stage["total_input_tokens"].as_f64().unwrap(), "{stage}");
    assert!(hits >= 20.0 * 48.0 && hits < queries, "{cache}");
    assert_eq!(cache["hit_rate"].as_f64(), Some(hits / queries));
    let text = read("stats.txt");
    let line = format!(
        "{:<36}{:>14}  ({hits:.0} of {queries:.0} prompt tokens)",
        "Prefix-cache hit rate:",
        format!("{:.1} %", 100.0 * hits / queries)
    );
    assert!(text.contains(&line), "{line}\n{text}");
    let report = read("report.html");
    assert!(report.contains("<h2>Prefix cache</h2>"), "{report}");
    assert!(report.contains(&format!(
        "<td>{queries:.0}</td><td>{hits:.0}</td><td>{:.1} %</td>",
        100.0 * hits / queries
    )));

    // Goodput, with the SLOs it counted against.
    assert_eq!(stats["goodput_slo_ms"], serde_json::json!({ "ttft": 200.0, "tpot": 12.5 }));
    let goodput = stage["request_goodput"].as_f64().unwrap();
    let line = format!(
        "{:<36}{:>14}  (TTFT ≤ 200 ms, TPOT ≤ 12.5 ms)",
        "Request goodput (req/s):",
        format!("{goodput:.2}")
    );
    assert!(text.contains(&line), "{line}\n{text}");
    assert!(report.contains("<th>goodput req/s (TTFT ≤ 200 ms, TPOT ≤ 12.5 ms)</th>"));

    // The stage's start, labelled, in every time chart (and in no distribution's, whose legend
    // names the stage in its own words). The SVG holds each text on a line of its own.
    let tags = |chart: &str| {
        read(&format!("plots/{chart}.svg")).lines().filter(|l| l.trim() == "1: concurrency=2").count()
    };
    for chart in ["throughput", "requests", "server_queue", "server_kv_cache"] {
        assert_eq!(tags(chart), 1, "{chart}");
    }
    assert_eq!(tags("ttft_cdf"), 0);
}

#[test]
fn sigint_keeps_and_analyses_what_was_measured() {
    let sim = Sim::start(&["--profile", "tiny/cpu"]);
    let dir = TempDir::new("cli-int");
    let w = workload(
        &dir,
        "dataset: { random: { input_len: 16, output_len: 400 } }\nstages: [ { concurrency: 4, duration: 60s } ]\n",
    );
    let wd = dir.0.join("wd");
    let child = benchflow()
        .args(["run", "--endpoint", &sim.1, "-w", &w, "--workdir", wd.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until requests are being recorded (the writer flushes every second).
    let csv = wd.join("results/latest/requests.csv");
    for _ in 0..200 {
        if std::fs::read_to_string(&csv).map(|t| t.lines().count() > 1).unwrap_or(false) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    // `run` tears nothing down: the interrupt says so, not that teardown follows.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("the stack stays up") && !said.contains("teardown follows"), "{said}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.lines().any(|l| l.contains(",cancelled,")), "in-flight requests are recorded as cancelled");
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("results/latest/run.json")).unwrap()).unwrap();
    assert_eq!(info["interrupted"], true);
    assert!(wd.join("analysis/latest/stats.json").is_file());
}

#[test]
fn an_unreachable_endpoint_and_a_bad_workload_are_clear_errors() {
    let dir = TempDir::new("cli-err");
    let w = workload(
        &dir,
        "dataset: { random: { input_len: 16, output_len: 8 } }\nstages: [ { rate: 1, requests: 1 } ]\n",
    );
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = benchflow()
        .args([
            "run",
            "--endpoint",
            &format!("http://127.0.0.1:{port}"),
            "-w",
            &w,
            "--workdir",
            dir.0.join("wd").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = workload(
        &dir,
        "dataset: { random: { input_len: 16, output_len: 8 } }\nstages:\n  - { rate: 1, reqests: 1 }\n",
    );
    let out = benchflow().args(["run", "--endpoint", "http://127.0.0.1:1", "-w", &bad]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("w.yaml:3:") && err.contains("did you mean `requests`"), "{err}");

    let out = benchflow()
        .args(["run", "--endpoint", "http://127.0.0.1:1", "-w", "no-such-workload"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workload named `no-such-workload`"));
}

#[test]
fn the_shipped_workloads_parse() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/workloads")).unwrap() {
        let p = entry.unwrap().path();
        benchflow::Workload::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn analyze_of_records_with_a_bad_row_exits_2_naming_the_file_and_line() {
    // `end_us` of inf, 1e18, negative, or before `sent_us`: an error, never a panic or a
    // multi-GB allocation.
    let good = "1,0,0,0.000,1000.000,2000.000,2500.000,3000.000,3,10,3,usage,200,,,250 250\n";
    for end in ["inf", "1e18", "-5", "500"] {
        let dir = TempDir::new("bad-row");
        std::fs::create_dir_all(dir.0.join("results")).unwrap();
        let header = "stage,index,warmup,scheduled_us,sent_us,first_token_us,last_token_us,end_us,chunks,\
                      prompt_tokens,output_tokens,tokens_source,status,error_kind,error,itl_us\n";
        let bad = format!("1,1,0,0,1000,,,{end},0,10,0,usage,0,connect,x,\n");
        std::fs::write(dir.0.join("results/requests.csv"), format!("{header}{good}{bad}")).unwrap();
        let out = benchflow().args(["analyze", dir.0.to_str().unwrap()]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{end}: {err}");
        assert!(err.contains("requests.csv:3: ") && err.contains("end_us"), "{end}: {err}");
        assert!(!err.contains("panicked"), "{end}: {err}");
    }
}

#[test]
fn compare_refuses_resamples_beyond_the_limit_naming_it() {
    let dir = TempDir::new("resamples");
    let d = dir.0.to_str().unwrap();
    for n in ["1e12", "1000000000000", "5"] {
        let out = benchflow().args(["compare", d, d, "--resamples", n]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{n}: {err}");
        assert!(err.contains("--resamples") && err.contains("1000000"), "{n}: {err}");
    }
}

/// `requests.csv` of 200 requests at 20/s, TTFT 20 ms (+ `faster` less), each sent 0.3 ms late
/// but every 20th `late_us` late.
fn records(faster_us: u64, late_us: u64) -> String {
    let header = benchflow_header();
    let mut text = format!("{header}\n");
    for i in 0..200u64 {
        let scheduled = 100_000 + i * 50_000;
        let sent = scheduled + if i % 20 == 7 { late_us } else { 300 };
        let first = sent + 20_000 - faster_us + (i * 7919 % 13) * 100;
        let (last, end) = (first + 30_000, first + 30_100);
        text += &format!(
            "1,{i},0,{scheduled},{sent},{first},{last},{end},4,10,4,usage,200,,,10000 10000 10000\n"
        );
    }
    text
}

fn benchflow_header() -> &'static str {
    "stage,index,warmup,scheduled_us,sent_us,first_token_us,last_token_us,end_us,chunks,prompt_tokens,output_tokens,tokens_source,status,error_kind,error,itl_us"
}

#[test]
fn compare_of_a_run_whose_client_fell_behind_is_inconclusive_and_says_why_exit_0() {
    let dir = TempDir::new("stalled");
    for (name, faster, late) in [("a", 0, 25_000), ("b", 2_000, 300), ("c", 0, 300)] {
        std::fs::create_dir_all(dir.0.join(name).join("results")).unwrap();
        std::fs::write(dir.0.join(name).join("results/requests.csv"), records(faster, late)).unwrap();
    }
    let path = |n: &str| dir.0.join(n).display().to_string();
    // a's client sent 5% of its requests 25 ms late: b's 10% faster TTFT is inconclusive.
    let out = benchflow().args(["compare", &path("a"), &path("b"), "-o", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &c["pairs"][0];
    assert_eq!(p["baseline_health"][0]["fell_behind"], true, "{p}");
    assert_eq!(p["other_health"][0]["fell_behind"], false, "{p}");
    for d in p["diffs"].as_array().unwrap() {
        assert_eq!(d["verdict"], "inconclusive", "{d}");
        let why = format!("the client fell behind in run {} (send delay p99 25.0 ms)", path("a"));
        assert_eq!(d["why"], why.as_str(), "{d}");
    }
    // Two healthy clients: the same difference is found.
    let out = benchflow().args(["compare", &path("c"), &path("b")]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !table.contains("inconclusive: "), "{table}");
    assert!(
        table.lines().any(|l| l.contains("ttft_ms") && l.contains("median") && l.ends_with("better")),
        "{table}"
    );
    assert!(table.contains("kept up (limit 10.0 ms)"), "{table}");
}

#[test]
fn more_streams_than_the_soft_open_files_limit_all_run() {
    let hard: u64 =
        String::from_utf8_lossy(&Command::new("sh").args(["-c", "ulimit -Hn"]).output().unwrap().stdout)
            .trim()
            .parse()
            .unwrap_or(u64::MAX);
    assert!(hard >= 1024, "this test needs a hard limit on open files of at least 1024, not {hard}");
    // Each request waits 2 s for its first token: all 400 streams are in flight at once, even
    // where a kernel with a short accept queue drops SYNs and a connect waits 1 s to retry.
    let sim = Sim::start(&[
        "--profile",
        "tiny/cpu",
        "--set",
        "fidelity=analytic",
        "--set",
        "ttft=2s",
        "--set",
        "itl=1ms",
        "--set",
        "max_num_seqs=100000",
    ]);
    let dir = TempDir::new("cli-nofile");
    let w = workload(
        &dir,
        "dataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { concurrency: 400, requests: 800 } ]\n",
    );
    let wd = dir.0.join("wd");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 256 && exec '{}' run --endpoint {} -w '{w}' --workdir '{}' -q",
            env!("CARGO_BIN_EXE_benchflow"),
            sim.1,
            wd.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("analysis/latest/stats.json")).unwrap()).unwrap();
    let s = &stats["stages"][0];
    assert_eq!((s["completed"].as_u64(), s["failed"].as_u64()), (Some(800), Some(0)), "{s}");
    assert!(s["max_concurrent_requests"].as_u64().unwrap() > 256, "{s}");
    // A hard limit below the streams asked: refused before any request, saying what to do
    // (not run with a part of the streams failing as the server's connect errors).
    let wd = dir.0.join("wd2");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 300 && ulimit -Hn 300 && exec '{}' run --endpoint {} -w '{w}' --workdir '{}' -q",
            env!("CARGO_BIN_EXE_benchflow"),
            sim.1,
            wd.display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("400 requests in flight") && err.contains("ulimit"),
        "{err}"
    );
    assert!(
        !wd.join("results/latest/requests.csv").exists() || {
            let csv = std::fs::read_to_string(wd.join("results/latest/requests.csv")).unwrap();
            csv.lines().count() <= 1
        }
    );
}
