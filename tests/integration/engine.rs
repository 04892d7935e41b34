//! The engine as a user runs it: `e2e`, `standup`, `run`, `teardown`, `plan`, `status`,
//! `archive`, `reproduce`, on the local platform, checked through the work directory.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::support::{
    Project, assert_absent, benchflow, spawn_sim, state, text, tls_fixture, tls_front, wait_for,
};

const CANARY: &str = "hf_canary_5a1b2c3d4e";

/// A project directory whose commands see the canary token as HF_TOKEN.
fn project(tag: &str) -> Project {
    Project::new(tag).with_env("HF_TOKEN", CANARY)
}

fn status_of(wd: &Path, step: &str) -> String {
    state(wd)["steps"][step]["status"].as_str().unwrap_or("").to_string()
}

fn alive(pid: i64) -> bool {
    benchflow::alive(pid as i32, None)
}

/// The pid the engine step started (from its log's `pid N` summary in state.json).
fn engine_pid(wd: &Path) -> i64 {
    let s = state(wd);
    let summary = s["steps"]["01_start_engine"]["summary"].as_str().unwrap_or("").to_string();
    summary
        .strip_prefix("pid ")
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            panic!("no pid in {summary:?}");
        })
}

/// Waits until the harness has recorded at least one request (the writer flushes every second).
fn wait_for_records(wd: &Path) {
    let csv = wd.join("results/latest/requests.csv");
    wait_for("records written", Duration::from_secs(60), || {
        std::fs::read_to_string(&csv).map(|t| t.lines().count() > 1).unwrap_or(false)
    });
}

/// A scenario like the shipped local-sim, with the token passed as a reference.
const SCENARIO: &str = "platform: local\nengine:\n  kind: sim\n  profile: tiny/cpu\n  env: { HF_TOKEN: env:HF_TOKEN }\ntimeouts: { ready: 30s }\n";
const QUICK: &str = "seed: 3\ndataset: { random: { input_len: 32, output_len: 16 } }\nwarmup: { requests: 2 }\nstages:\n  - { rate: 40, arrival: constant, requests: 30 }\n  - { concurrency: 4, requests: 20 }\n";
const LONG: &str = "dataset: { random: { input_len: 16, output_len: 400 } }\nstages: [ { concurrency: 4, duration: 60s } ]\n";

#[test]
fn e2e_on_the_simulator_writes_the_whole_story_and_leaves_nothing_running() {
    let p = project("e2e");
    p.file("scenarios/sim.yaml", SCENARIO).file("workloads/quick.yaml", QUICK);
    let out = p.run(&["e2e", "-c", "sim", "-w", "quick", "--workdir", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wd = p.path("wd");
    for f in [
        "inputs/scenario.yaml",
        "inputs/harness.yaml",
        "inputs/workload.yaml",
        "inputs/pipeline.yaml",
        "inputs/resolved.yaml",
        "inputs/version.json",
        "plan/plan.json",
        "plan/plan.dot",
        "plan/steps/03_load.json",
        "setup/commands/01_start_engine.log",
        "setup/commands/02_smoke_test.log",
        "events.jsonl",
        "results/latest/requests.csv",
        "results/latest/run.json",
        "analysis/latest/stats.json",
        "analysis/latest/report.html",
        "analysis/latest/plots/ttft_cdf.png",
        "analysis/latest/plots/ttft_cdf.svg",
    ] {
        assert!(wd.join(f).is_file(), "missing {f}");
    }
    for step in ["02_smoke_test", "03_load", "04_analyze", "05_stop_start_engine"] {
        assert_eq!(status_of(&wd, step), "done", "{step}");
    }
    assert_eq!(status_of(&wd, "01_start_engine"), "undone");
    // The engine is gone, and the record says nothing is left.
    let pid = engine_pid(&wd);
    assert!(!alive(pid), "the simulator (pid {pid}) is still running");
    assert!(state(&wd)["steps"]["01_start_engine"]["undo"].is_null());
    // The statistics agree with the records.
    let csv = std::fs::read_to_string(wd.join("results/latest/requests.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (stage, status, error) = (col("stage"), col("status"), col("error_kind"));
    let ok_in = |s: &str| -> Vec<String> {
        csv.lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split(',').collect();
                f[stage] == s && f[status] == "200" && f[error].is_empty()
            })
            .map(str::to_string)
            .collect()
    };
    let stats: Value =
        serde_json::from_slice(&std::fs::read(wd.join("analysis/latest/stats.json")).unwrap()).unwrap();
    let stages = stats["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0]["completed"].as_u64().unwrap() as usize, ok_in("1").len());
    assert_eq!(stages[1]["completed"].as_u64().unwrap() as usize, ok_in("2").len());
    assert_eq!(ok_in("1").len(), 30);
    // The printed summary is the analysis.
    assert!(text(&out.stdout).contains("Successful requests:"));
    // Every variable has a source; the token is a reference.
    let resolved = std::fs::read_to_string(wd.join("inputs/resolved.yaml")).unwrap();
    assert!(resolved.contains("HF_TOKEN: env:HF_TOKEN"), "{resolved}");
    assert!(resolved.contains("engine.profile: scenarios/sim.yaml"), "{resolved}");
    assert!(resolved.contains("workload.seed: workloads/quick.yaml"), "{resolved}");
    // The canary token appears nowhere, in the directory or its archive.
    let out = p.run(&["archive", "wd", "-o", "wd.tar.gz"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_absent(&wd, &[CANARY]);
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(p.path("wd.tar.gz")).unwrap()),
        &mut raw,
    )
    .unwrap();
    assert!(!raw.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "the canary is in the archive");
    // Reproduce from the archive: the same resolved inputs, a new run, its origin recorded.
    let out = p.run(&["reproduce", "wd.tar.gz", "--workdir", "again", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let values = |dir: &str| -> (Value, Value) {
        let r: Value = serde_saphyr::from_str(
            &std::fs::read_to_string(p.path(dir).join("inputs/resolved.yaml")).unwrap(),
        )
        .unwrap();
        let mut v = r["values"].clone();
        v.as_object_mut().unwrap().remove("run");
        v.as_object_mut().unwrap().remove("endpoint");
        let mut s = r["sources"].clone();
        s.as_object_mut().unwrap().retain(|_, v| v != "derived");
        (v, s)
    };
    assert_eq!(values("wd"), values("again"));
    let origin = std::fs::read_to_string(p.path("again/inputs/origin.json")).unwrap();
    assert!(origin.contains("wd.tar.gz") && origin.contains("\"reproduces\": \"wd\""), "{origin}");
    assert_eq!(status_of(&p.path("again"), "03_load"), "done");
    assert!(p.path("again/analysis/latest/report.html").is_file());
    assert_absent(&p.path("again"), &[CANARY]);
}

#[test]
fn plan_dry_run_renders_everything_and_starts_nothing() {
    let p = project("plan");
    let out = p.run(&["plan", "--dry-run", "--workdir", "wd", "--set", "engine.port=18123"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_benchflow")).unwrap();
    let table = text(&out.stdout)
        .replace(bin.to_str().unwrap(), "BENCHFLOW")
        .replace(env!("CARGO_BIN_EXE_benchflow"), "BENCHFLOW");
    let expected = "\
step                  phase     kind       after                     does
01_start_engine       standup   spawn      -                         $ BENCHFLOW sim --host 127.0.0.1 --port 18123 --profile tiny/cpu
02_smoke_test         standup   http       01_start_engine           GET http://127.0.0.1:18123/health, GET http://127.0.0.1:18123/v1/models, POST http://127.0.0.1:18123/v1/completions (8 tokens)
03_load               run       harness    02_smoke_test             built-in load generator against http://127.0.0.1:18123: rate=5/s poisson for 20 s
04_analyze            analyze   analyze    03_load                   statistics (vllm conventions), plots and report.html from results/<run>/ into analysis/<run>/
05_stop_start_engine  teardown  undo       -                         01_start_engine: stop its process group (SIGTERM, then SIGKILL after 15 s)
";
    assert_eq!(table, expected);
    let wd = p.path("wd");
    assert!(wd.join("plan/plan.json").is_file() && wd.join("inputs/resolved.yaml").is_file());
    let dot = std::fs::read_to_string(wd.join("plan/plan.dot")).unwrap();
    assert!(dot.contains("\"01_start_engine\" -> \"02_smoke_test\";"), "{dot}");
    assert!(!wd.join("state.json").exists() && !wd.join("events.jsonl").exists());
    // Without --dry-run, plan writes nothing at all; -o json is machine-readable.
    let out = p.run(&["plan", "-o", "json", "--workdir", "wd2"]);
    assert!(out.status.success());
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["steps"].as_array().unwrap().len(), 5);
    assert!(!p.path("wd2").exists());
}

/// A pipeline of shell steps: counts how often each ran, runs two steps that need each other
/// concurrently (each waits for the other's mark), retries a flaky step.
const PIPELINE: &str = r#"
steps:
  - { name: up, phase: standup, kind: spawn, with: { command: [sleep, "300"] } }
  - { name: prepare, phase: standup, kind: exec, after: [up], with: { command: [sh, -c, "echo x >> prepare.count"] } }
  - { name: left, phase: run, kind: exec, after: [prepare], with: { command: [sh, -c, "touch left.mark; for i in $(seq 200); do [ -f right.mark ] && exit 0; sleep 0.05; done; exit 1"] } }
  - { name: right, phase: run, kind: exec, after: [prepare], with: { command: [sh, -c, "touch right.mark; for i in $(seq 200); do [ -f left.mark ] && exit 0; sleep 0.05; done; exit 1"] } }
  - name: flaky
    phase: run
    kind: exec
    after: [left, right]
    retries: 2
    backoff: 10ms
    with: { command: [sh, -c, "n=$(cat flaky.n 2>/dev/null || echo 0); n=$((n+1)); echo $n > flaky.n; [ $n -ge 2 ]"] }
  - { name: broken, phase: run, kind: exec, after: [flaky], when: "vars.break == 1", with: { command: [sh, -c, "exit 7"] } }
  - { name: last, phase: analyze, kind: exec, after: [broken], with: { command: [sh, -c, "echo x >> last.count"] } }
"#;

fn shell_project(tag: &str) -> Project {
    let p = project(tag);
    p.file("pipelines/shell.yaml", PIPELINE).file(
        "scenarios/shell.yaml",
        "pipeline: shell\nengine: { kind: endpoint, url: http://127.0.0.1:9 }\nvars: { break: 0 }\n",
    );
    p
}

#[test]
fn parallel_steps_retries_skip_done_and_selection() {
    let p = shell_project("sel");
    let wd = p.path("wd");
    let out = p.run(&["e2e", "-c", "shell", "--workdir", "wd", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // left and right could only finish by running at the same time.
    assert_eq!(status_of(&wd, "03_left"), "done");
    assert_eq!(status_of(&wd, "04_right"), "done");
    let s = state(&wd);
    assert_eq!(s["steps"]["05_flaky"]["attempts"].as_array().unwrap().len(), 2, "one failure, one retry");
    assert_eq!(status_of(&wd, "06_broken"), "skipped");
    assert_eq!(status_of(&wd, "08_stop_up"), "done");
    assert_eq!(status_of(&wd, "01_up"), "undone");
    let events = std::fs::read_to_string(wd.join("events.jsonl")).unwrap();
    assert!(events.contains("\"event\":\"step_retry\""), "{events}");
    let count = |f: &str| std::fs::read_to_string(wd.join(f)).unwrap_or_default().lines().count();
    assert_eq!((count("prepare.count"), count("last.count")), (1, 1));

    // Standing up again with the same inputs: the process is gone, so `up` starts again, and
    // `prepare`, which depends on it, runs again too (a step is reused only when nothing it
    // depends on ran in this walk).
    let out = p.run(&["standup", "-c", "shell", "--workdir", "wd", "--keep"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(count("prepare.count"), 2);
    // Once more: both done, the process alive: everything is reused.
    let out = p.run(&["standup", "-c", "shell", "--workdir", "wd", "--keep"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("already done with the same inputs"), "{}", text(&out.stderr));
    assert_eq!(count("prepare.count"), 2);
    let pid =
        s["steps"]["01_up"]["summary"].as_str().unwrap().trim_start_matches("pid ").parse::<i64>().unwrap();
    assert!(!alive(pid));
    let pid = state(&wd)["steps"]["01_up"]["undo"]["pid"].as_i64().unwrap();
    assert!(alive(pid), "standup leaves the stack up");
    // -s forces the selected steps only.
    let out = p.run(&["run", "-c", "shell", "--workdir", "wd", "-s", "prepare,7", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!((count("prepare.count"), count("last.count")), (3, 2));
    // Status shows what is up; teardown removes it.
    let out = p.run(&["status", "wd"]);
    assert!(text(&out.stdout).contains(&format!("process group {pid}")), "{}", text(&out.stdout));
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(pid));
    let out = p.run(&["teardown", "wd"]);
    assert!(text(&out.stderr).contains("nothing to tear down"));
}

#[test]
fn a_failed_step_stops_its_dependents_and_teardown_still_runs() {
    let p = shell_project("fail");
    let wd = p.path("wd");
    let out = p.run(&["e2e", "-c", "shell", "--workdir", "wd", "--set", "vars.break=1"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("step 06_broken failed") && err.contains("exit status: 7"), "{err}");
    assert_eq!(status_of(&wd, "06_broken"), "failed");
    assert_eq!(status_of(&wd, "07_last"), "not_run");
    assert_eq!(status_of(&wd, "08_stop_up"), "done");
    let pid = state(&wd)["steps"]["01_up"]["summary"]
        .as_str()
        .unwrap()
        .trim_start_matches("pid ")
        .parse::<i64>()
        .unwrap();
    assert!(!alive(pid));
    let log = std::fs::read_to_string(wd.join("setup/commands/06_broken.log")).unwrap();
    assert!(log.contains("$ sh -c 'exit 7'") && log.contains("exit status: 7"), "{log}");
}

#[test]
fn sigint_during_the_run_tears_down_and_records_the_interruption() {
    let p = project("int");
    p.file("workloads/long.yaml", LONG);
    let wd = p.path("wd");
    let child = p
        .cmd(&["e2e", "-w", "long", "--workdir", "wd", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_records(&wd);
    let pid = engine_pid(&wd);
    assert!(alive(pid));
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(!alive(pid), "the simulator must be stopped by teardown");
    let s = state(&wd);
    assert_eq!(s["interrupts"].as_array().unwrap().len(), 1);
    assert_eq!(status_of(&wd, "03_load"), "cancelled");
    assert_eq!(status_of(&wd, "05_stop_start_engine"), "done");
    assert!(wd.join("analysis/latest/stats.json").is_file(), "what was measured is analysed");
    assert!(std::fs::read_to_string(wd.join("events.jsonl")).unwrap().contains("\"event\":\"signal\""));
    // status says how the harness run ended.
    let doc: Value = serde_json::from_slice(&p.run(&["status", "wd", "-o", "json"]).stdout).unwrap();
    let run = &doc["harness_runs"][0];
    assert_eq!((run["id"].as_str(), run["workload"].as_str()), (Some("001"), Some("long")), "{doc}");
    assert_eq!(
        (run["outcome"].as_str(), run["analysed"].as_bool()),
        (Some("interrupted"), Some(true)),
        "{doc}"
    );
}

#[test]
fn sigkill_mid_run_then_teardown_from_the_record() {
    let p = project("kill");
    p.file("workloads/long.yaml", LONG);
    let wd = p.path("wd");
    let mut child = p
        .cmd(&["e2e", "-w", "long", "--workdir", "wd", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_records(&wd);
    child.kill().unwrap();
    child.wait().unwrap();
    let pid = state(&wd)["steps"]["01_start_engine"]["undo"]["pid"].as_i64().unwrap();
    assert!(alive(pid), "the simulator outlives a killed benchflow");
    let out = p.run(&["status", "wd"]);
    let shown = text(&out.stdout);
    assert!(shown.contains("up:") && shown.contains("no benchflow holds this work directory"), "{shown}");
    // The killed harness run recorded no end, nor was it analysed.
    assert!(shown.contains("001  long") && shown.contains("unfinished, not analysed"), "{shown}");
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(pid));
    assert!(state(&wd)["steps"]["01_start_engine"]["undo"].is_null());
    // After teardown the record no longer says a step is running.
    let shown = text(&p.run(&["status", "wd"]).stdout);
    assert!(shown.contains("nothing is up") && !shown.contains("it was killed"), "{shown}");
    assert_eq!(status_of(&wd, "03_load"), "cancelled");
}

#[test]
fn a_work_directory_in_use_is_refused() {
    let p = project("lock");
    std::fs::create_dir_all(p.path("wd")).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p.path("wd/.lock"))
        .unwrap();
    f.try_lock().unwrap();
    let out = p.run(&["e2e", "--dry-run", "--workdir", "wd"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is in use by another benchflow"), "{}", text(&out.stderr));
    // Nor are archive and analyze, which would pack or rewrite a run in progress.
    p.file("wd/inputs/resolved.yaml", "format_version: 1\n");
    for args in [["archive", "wd"], ["analyze", "wd"]] {
        let out = p.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("is in use by another benchflow"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn malformed_inputs_are_clear_errors_without_panics() {
    let p = shell_project("bad");
    p.file("scenarios/typo.yaml", "platform: local\nengin: { kind: sim }\n")
        .file("scenarios/wrongtype.yaml", "engine:\n  kind: sim\n  port: lots\n")
        .file("scenarios/badyaml.yaml", "engine: { kind: sim\n")
        .file("scenarios/cycle.yaml", "pipeline: cycle\n")
        .file("scenarios/undef.yaml", "pipeline: undef\n")
        .file("scenarios/empty.yaml", "# nothing yet\n\n")
        .file("workloads/huge_rate.yaml", "dataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { rate: 1e12, duration: 10s } ]\n")
        .file("workloads/huge_input.yaml", "dataset: { random: { input_len: 1000000000, output_len: 4 } }\nstages: [ { concurrency: 1, requests: 1 } ]\n")
        .file(
            "pipelines/cycle.yaml",
            "steps:\n  - { name: a, phase: run, kind: exec, after: [b], with: { command: [x] } }\n  - { name: b, phase: run, kind: exec, after: [a], with: { command: [x] } }\n",
        )
        .file("pipelines/undef.yaml", "steps:\n  - name: a\n    phase: run\n    kind: exec\n    with: { command: [\"{{ engine.nope }}\"] }\n")
        .file("workloads/nofile.yaml", "dataset: { jsonl: { path: nope.jsonl } }\nstages: [ { concurrency: 1, requests: 1 } ]\n")
        .file("workloads/nosample.yaml", "dataset: { sample: { name: nosuch } }\nstages: [ { concurrency: 1, requests: 1 } ]\n")
        .file("workloads/badjsonl.yaml", "dataset: { jsonl: { path: bad.jsonl, output_len: 8 } }\nstages: [ { concurrency: 1, requests: 1 } ]\n")
        .file("workloads/bad.jsonl", "{\"prompt\": \"a\"}\nnot json\n")
        .file("workloads/unsetenv.yaml", "api: { api_key: env:BF_SURELY_UNSET_VAR }\ndataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { concurrency: 1, requests: 1 } ]\n")
        .file("workloads/literalkey.yaml", "api: { headers: { X-Api-Key: hf_secret } }\ndataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { concurrency: 1, requests: 1 } ]\n");
    let cases: &[(&[&str], &[&str])] = &[
        (&["plan", "-c", "typo"], &["scenarios/typo.yaml:2:", "did you mean `engine`"]),
        (&["plan", "-c", "wrongtype"], &["scenarios/wrongtype.yaml:3:"]),
        (&["plan", "-c", "badyaml"], &["scenarios/badyaml.yaml:"]),
        (&["plan", "-c", "cycle"], &["cycle", "a → b → a"]),
        (&["plan", "-c", "undef"], &["pipelines/undef.yaml", "step a", "`engine.nope` is undefined"]),
        (&["plan", "-c", "nosuch"], &["no scenario named `nosuch`"]),
        (&["plan", "-c", "shell", "-s", "prepar"], &["no step named `prepar`", "did you mean `prepare`"]),
        (&["plan", "-c", "shell", "-s", "12"], &["there is no step 12"]),
        (&["plan", "--set", "engine.profle=x"], &["unknown", "did you mean `profile`"]),
        (&["plan", "--set", "engnie.port=1"], &["did you mean `engine`"]),
        (&["plan", "--set", "engine.port=many"], &["engine", "port"]),
        (&["plan", "--set", "engine.env.HF_TOKEN=hf_secret"], &["looks like a secret", "env:NAME"]),
        (&["plan", "-c", "local-vllm", "--set", "model=null"], &["needs `model:`"]),
        (&["plan", "--set", "engine.profile=nosuch/model"], &["nosuch/model", "tiny/cpu"]),
        (&["plan", "-w", "nofile"], &["workloads/nofile.yaml", "nope.jsonl"]),
        (&["plan", "-c", "empty"], &["scenarios/empty.yaml", "the file is empty"]),
        (&["plan", "-w", "huge_rate"], &["stage 1: rate 1000000000000: at most 100000"]),
        (&["plan", "-w", "huge_input"], &["input_len 1000000000: at most 1048576"]),
        (&["plan", "-w", "nosample"], &["unknown sample dataset `nosuch`"]),
        (&["plan", "-w", "badjsonl"], &["bad.jsonl:2"]),
        (&["plan", "-w", "unsetenv"], &["$BF_SURELY_UNSET_VAR, which is not set"]),
        (&["plan", "-w", "literalkey"], &["X-Api-Key", "looks like a secret"]),
        (
            &["plan", "-c", "endpoint", "--set", "engine.url=ftp://host:21"],
            &["must start with http:// or https://"],
        ),
        (&["plan", "-c", "endpoint", "--set", "engine.url=http://host:99999"], &["`99999` is not a port"]),
        (
            &["run", "--endpoint", "localhost:8000", "--dry-run", "--workdir", "ep"],
            &["must start with http://"],
        ),
        (
            &["plan", "-c", "kubernetes-standalone", "--set", "kubernetes.templates=/no/such/dir"],
            &["template directory `/no/such/dir`", "does not exist"],
        ),
    ];
    for (args, expected) in cases {
        let out = p.run(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        for e in *expected {
            assert!(err.contains(e), "{args:?}: expected `{e}` in: {err}");
        }
        assert!(!err.contains("hf_secret"), "a secret value is echoed: {err}");
    }
}

#[test]
fn a_hangup_is_an_interrupt_teardown_runs_and_the_exit_is_5() {
    let p = project("hangup");
    p.file(
        "pipelines/hup.yaml",
        r#"
steps:
  - { name: engine, phase: standup, kind: spawn, with: { command: [sleep, "300"] } }
  - { name: work, phase: run, kind: exec, after: [engine], with: { command: [sh, -c, "touch working; sleep 300"] } }
"#,
    )
    .file("scenarios/hup.yaml", "pipeline: hup\nengine: { kind: endpoint, url: http://127.0.0.1:9 }\n");
    let wd = p.path("wd");
    let child = p
        .cmd(&["e2e", "-c", "hup", "--workdir", "wd"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the run step started", Duration::from_secs(30), || wd.join("working").exists());
    let pid = state(&wd)["steps"]["01_engine"]["undo"]["pid"].as_i64().unwrap();
    assert!(alive(pid));
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(!alive(pid), "teardown stopped the engine");
    assert_eq!(status_of(&wd, "01_engine"), "undone");
    assert_eq!(state(&wd)["interrupts"].as_array().unwrap().len(), 1);
}

#[test]
fn a_second_interrupt_skips_teardown_and_says_what_is_left() {
    let p = project("twice");
    p.file(
        "pipelines/stubborn.yaml",
        r#"
steps:
  - { name: stubborn, phase: standup, kind: spawn, with: { command: [sh, -c, "trap '' TERM; sleep 300"], stop_timeout: 4s } }
  - { name: work, phase: run, kind: exec, after: [stubborn], with: { command: [sh, -c, "touch working; sleep 300"] } }
"#,
    )
    .file("scenarios/stubborn.yaml", "pipeline: stubborn\nengine: { kind: endpoint, url: http://127.0.0.1:9 }\n");
    let wd = p.path("wd");
    let child = p
        .cmd(&["e2e", "-c", "stubborn", "--workdir", "wd"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the run step started", Duration::from_secs(30), || wd.join("working").exists());
    let pid = state(&wd)["steps"]["01_stubborn"]["undo"]["pid"].as_i64().unwrap();
    let int =
        || assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    int();
    // Teardown begins and waits for a process that ignores SIGTERM; interrupt it.
    wait_for("teardown started", Duration::from_secs(30), || {
        std::fs::read_to_string(wd.join("events.jsonl"))
            .unwrap_or_default()
            .contains("\"step\":\"03_stop_stubborn\"")
    });
    int();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("still up:") && err.contains(&format!("process group {pid}")), "{err}");
    assert!(err.contains("benchflow teardown"), "{err}");
    assert!(alive(pid), "teardown was skipped");
    assert_eq!(state(&wd)["interrupts"].as_array().unwrap().len(), 2);
    // The record is enough to finish the job: SIGTERM is ignored, so SIGKILL after 4 s.
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(pid));
    let log = std::fs::read_to_string(wd.join("setup/commands/03_stop_stubborn.log")).unwrap();
    assert!(log.contains("SIGKILL"), "{log}");
}

#[test]
fn a_missing_engine_program_is_refused_before_anything_starts() {
    let p = project("novllm");
    let out = p
        .cmd(&["e2e", "-c", "local-vllm", "--workdir", "wd"])
        .env("PATH", p.path("empty-bin"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("step 01_start_engine runs `vllm`") && err.contains("pip install vllm"), "{err}");
    assert!(!p.path("wd/state.json").exists(), "nothing started");
}

#[test]
fn run_and_teardown_continue_what_standup_recorded() {
    let p = project("continue");
    p.file("scenarios/sim.yaml", SCENARIO).file("workloads/quick.yaml", QUICK);
    let out = p.run(&[
        "standup",
        "-c",
        "sim",
        "-w",
        "quick",
        "--set",
        "workload.seed=9",
        "--set",
        "engine.profile=fixed/zero",
        "--workdir",
        "wd",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wd = p.path("wd");
    let pid = state(&wd)["steps"]["01_start_engine"]["undo"]["pid"].as_i64().unwrap();
    assert!(alive(pid));
    // A --set of an engine setting: the engine up was started without it, so running on it
    // is refused before anything is written (the records would say what was not measured).
    let before = std::fs::read_to_string(wd.join("inputs/resolved.yaml")).unwrap();
    let out = p.run(&["run", "--workdir", "wd", "-q", "--set", "engine.args=[--set, time_scale=2]"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("01_start_engine was stood up with other inputs"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(wd.join("inputs/resolved.yaml")).unwrap(),
        before,
        "nothing rewritten"
    );
    assert!(alive(pid));
    // No names or --set given: the recorded ones are used, so the stack counts as stood up.
    let out = p.run(&["run", "--workdir", "wd", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let resolved = std::fs::read_to_string(wd.join("inputs/resolved.yaml")).unwrap();
    assert!(
        resolved.contains("workload.seed: --set") && resolved.contains("workload: workloads/quick.yaml"),
        "{resolved}"
    );
    assert_eq!(status_of(&wd, "03_load"), "done");
    // Another workload against the same stack: a second harness run beside the first.
    p.file(
        "workloads/other.yaml",
        "dataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { concurrency: 2, requests: 6 } ]\n",
    );
    let out = p.run(&["run", "--workdir", "wd", "-w", "other", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows =
        |run: &str| std::fs::read_to_string(wd.join(run).join("requests.csv")).unwrap().lines().count();
    assert!(rows("results/001") > 1 && rows("results/002") == 7, "both runs keep their records");
    assert_eq!(std::fs::read_link(wd.join("results/latest")).unwrap(), Path::new("002"));
    assert!(wd.join("analysis/001/stats.json").is_file() && wd.join("analysis/002/stats.json").is_file());
    assert!(
        std::fs::read_dir(wd.join("inputs/history")).unwrap().count() >= 1,
        "the earlier resolved.yaml is kept"
    );
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(pid));
}

/// `e2e --keep` measures and analyses, then leaves the stack up as `standup` does (no teardown
/// phase); a `run` measures against it and `teardown` removes it.
#[test]
fn e2e_keep_leaves_the_stack_up_for_more_runs_and_teardown() {
    let p = project("e2e-keep");
    p.file("scenarios/sim.yaml", SCENARIO).file("workloads/quick.yaml", QUICK);
    let out = p.run(&[
        "e2e",
        "-c",
        "sim",
        "-w",
        "quick",
        "--set",
        "engine.profile=fixed/zero",
        "--workdir",
        "wd",
        "--keep",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("kept up (--keep)"), "{}", text(&out.stderr));
    let wd = p.path("wd");
    assert!(wd.join("analysis/001/stats.json").is_file(), "measured and analysed");
    let pid = state(&wd)["steps"]["01_start_engine"]["undo"]["pid"].as_i64().unwrap();
    assert!(alive(pid), "the engine is still up");
    assert_ne!(status_of(&wd, "01_start_engine"), "undone");
    let out = p.run(&["run", "--workdir", "wd", "-w", "quick", "--set", "workload.seed=5", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(wd.join("analysis/002/stats.json").is_file(), "a second run against the kept stack");
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(pid));
}

/// A project with the quick workload stood up on the instant simulator in `wd`.
fn stood_up(tag: &str) -> Project {
    let p = project(tag);
    p.file("scenarios/sim.yaml", SCENARIO).file("workloads/quick.yaml", QUICK);
    let out = p.run(STAND_UP);
    assert!(out.status.success(), "{}", text(&out.stderr));
    p
}

const STAND_UP: &[&str] =
    &["standup", "-c", "sim", "-w", "quick", "--set", "engine.profile=fixed/zero", "--workdir", "wd", "-q"];

/// Every `run` measures: the same workload twice against a stood-up stack gives two runs, each
/// analysed; a `run` whose engine died, or after `teardown`, is refused before anything is
/// written (exit 3, exit 2), saying why; `standup` brings it back.
#[test]
fn every_run_measures_and_a_run_without_the_stack_up_is_refused() {
    let p = stood_up("again");
    let wd = p.path("wd");
    let rows = |run: &str| {
        std::fs::read_to_string(wd.join("results").join(run).join("requests.csv"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    for (n, run) in ["001", "002"].iter().enumerate() {
        let out = p.run(&["run", "--workdir", "wd", "--set", &format!("workload.seed={}", n + 1)]);
        let err = text(&out.stderr);
        assert!(out.status.success(), "run {n}: {err}");
        assert!(!err.contains("already done"), "nothing of the run is skipped: {err}");
        assert_eq!(rows(run), 53, "run {run}: 2 warm-up + 50 measured requests and the header");
        assert!(wd.join("analysis").join(run).join("stats.json").is_file(), "run {run} analysed");
        assert!(text(&out.stdout).contains("stage"), "the new run's statistics are printed");
    }
    assert_eq!(status_of(&wd, "03_load"), "done");
    // A later --set of the same key replaces the earlier one in the record.
    let overrides: Value =
        serde_json::from_slice(&std::fs::read(wd.join("results/002/inputs/inputs.json")).unwrap()).unwrap();
    assert_eq!(overrides["overrides"], serde_json::json!(["engine.profile=fixed/zero", "workload.seed=2"]));
    // The engine dies outside benchflow: the next run is refused, nothing written.
    let pid = state(&wd)["steps"]["01_start_engine"]["undo"]["pid"].as_i64().unwrap();
    Command::new("kill").args(["-9", "--", &format!("-{pid}")]).status().unwrap();
    wait_for("the engine gone", Duration::from_secs(10), || !alive(pid));
    // `status` tells the truth: the engine is gone, not up.
    let doc: Value = serde_json::from_slice(&p.run(&["status", "wd", "-o", "json"]).stdout).unwrap();
    assert!(doc["up"].as_array().unwrap().is_empty(), "{doc}");
    let gone = doc["gone"][0].as_str().unwrap_or_default();
    assert!(
        gone.starts_with("01_start_engine: process group") && gone.ends_with("no longer running"),
        "{doc}"
    );
    let resolved = std::fs::read_to_string(wd.join("inputs/resolved.yaml")).unwrap();
    let out = p.run(&["run", "--workdir", "wd", "-q"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("the stack is not up") && err.contains("01_start_engine") && err.contains("standup"),
        "{err}"
    );
    let out = p.run(&["run", "--workdir", "wd", "-s", "load", "-q"]);
    assert_eq!(out.status.code(), Some(3), "-s too: {}", text(&out.stderr));
    assert!(!wd.join("results/003").exists(), "nothing measured");
    assert_eq!(
        std::fs::read_to_string(wd.join("inputs/resolved.yaml")).unwrap(),
        resolved,
        "nothing rewritten"
    );
    // `standup` starts what is gone (its record no longer holds) and the run goes on.
    let out = p.run(STAND_UP);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = state(&wd)["steps"]["01_start_engine"]["undo"]["pid"].as_i64().unwrap();
    assert!(alive(pid));
    let out = p.run(&["run", "--workdir", "wd", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(rows("003"), 53);
    // After teardown: refused, saying the stack is not stood up.
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(pid));
    let out = p.run(&["run", "--workdir", "wd", "-q"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("01_start_engine (standup) was torn down")
            && text(&out.stderr).contains("benchflow standup --workdir"),
        "{}",
        text(&out.stderr)
    );
    // Selecting the load step (-s) does not get around it.
    let out = p.run(&["run", "--workdir", "wd", "-s", "3", "-q"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!wd.join("results/004").exists(), "nothing measured");
    // What earlier runs measured is where it was.
    assert_eq!((rows("001"), rows("002"), rows("003")), (53, 53, 53));
}

/// A standup step forced with `-s` while its engine is up replaces it: the old engine is
/// stopped first, the new one answers, `status` says so, a run measures it, teardown removes it.
#[test]
fn a_forced_standup_step_on_a_live_stack_replaces_it() {
    let p = stood_up("force");
    let wd = p.path("wd");
    let mut old = state(&wd)["steps"]["01_start_engine"]["undo"]["pid"].as_i64().unwrap();
    for forced in ["1-2", "start_engine", "1"] {
        let out = p.run(&["standup", "--workdir", "wd", "-s", forced, "-q"]);
        assert!(out.status.success(), "-s {forced}: {}", text(&out.stderr));
        let new = state(&wd)["steps"]["01_start_engine"]["undo"]["pid"].as_i64().unwrap();
        assert_ne!(new, old, "-s {forced}: a new engine");
        assert!(!alive(old) && alive(new), "-s {forced}: the old engine stopped, the new one up");
        assert_eq!(status_of(&wd, "01_start_engine"), "done");
        let out = p.run(&["status", "wd", "-o", "json"]);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let up: Vec<&str> = doc["up"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert_eq!(up.len(), 1, "{up:?}");
        assert!(up[0].contains(&format!("process group {new} ")) && !up[0].contains("no longer"), "{up:?}");
        let log = std::fs::read_to_string(wd.join("setup/commands/01_start_engine.log")).unwrap();
        assert!(log.contains(&format!("left process group {old}")), "{log}");
        let out = p.run(&["run", "--workdir", "wd", "-q"]);
        assert!(out.status.success(), "-s {forced}: {}", text(&out.stderr));
        assert!(
            std::fs::read_to_string(wd.join("results/latest/requests.csv")).unwrap().lines().count() > 50
        );
        old = new;
    }
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(old));
}

/// A small second workload (6 requests).
const OTHER: &str =
    "dataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { concurrency: 2, requests: 6 } ]\n";

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Issue 29, item 4: several runs against one stack, each with its own workload, each keeping
/// its own inputs (files, --sets, resolved variables, hashes) in `results/<run>/inputs/`, named
/// in its run.json and stats.json; `status` lists each run with its workload; `reproduce
/// --run` re-runs one of them from the directory or its archive (origin.json says which), a
/// bad `--run` lists the runs.
#[test]
fn each_run_keeps_its_inputs_and_status_and_reproduce_name_the_run() {
    let p = project("run-inputs");
    p.file("scenarios/sim.yaml", SCENARIO)
        .file("workloads/quick.yaml", QUICK)
        .file("workloads/other.yaml", OTHER);
    let ok = |args: &[&str]| {
        let out = p.run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        out
    };
    ok(STAND_UP);
    ok(&["run", "--workdir", "wd", "-q"]);
    ok(&["run", "--workdir", "wd", "-w", "other", "-q"]);
    ok(&["run", "--workdir", "wd", "-w", "quick", "--set", "workload.seed=5", "-q"]);
    let wd = p.path("wd");
    for (run, workload, text_of) in
        [("001", "quick", QUICK), ("002", "other", OTHER), ("003", "quick", QUICK)]
    {
        let dir = wd.join("results").join(run).join("inputs");
        for f in [
            "scenario.yaml",
            "harness.yaml",
            "workload.yaml",
            "pipeline.yaml",
            "overrides.txt",
            "resolved.yaml",
        ] {
            assert!(dir.join(f).is_file(), "{run}: no {f}");
        }
        let copy = std::fs::read_to_string(dir.join("workload.yaml")).unwrap();
        assert!(copy.ends_with(text_of), "{run}: {copy}");
        let record = read_json(&dir.join("inputs.json"));
        assert_eq!(record["run"], run);
        assert_eq!(record["workload"]["name"], workload, "{run}: {record}");
        assert_eq!(record["workload"]["file"], format!("workloads/{workload}.yaml"));
        assert_eq!(record["harness"]["name"], "builtin");
        // Each hash is the copy's, as sha256sum computes it.
        for (name, sum) in record["sha256"].as_object().unwrap() {
            assert_eq!(sum.as_str().unwrap(), sha256_of(&dir.join(name)), "{run}: {name}");
        }
        assert_eq!(record["workload"]["sha256"], record["sha256"]["workload.yaml"]);
        // run.json and stats.json name the same workload and harness.
        let info = read_json(&wd.join("results").join(run).join("run.json"));
        assert_eq!(info["inputs"], record, "{run}: run.json");
        assert!(info["ended_at"].is_string(), "{run}: {info}");
        let stats = read_json(&wd.join("analysis").join(run).join("stats.json"));
        assert_eq!(stats["inputs"]["workload"], record["workload"], "{run}: stats.json");
        assert_eq!(stats["inputs"]["harness"]["name"], "builtin");
        // The secret is kept as a reference in every copy.
        assert!(
            std::fs::read_to_string(dir.join("resolved.yaml")).unwrap().contains("HF_TOKEN: env:HF_TOKEN")
        );
    }
    let overrides =
        |run: &str| read_json(&wd.join(format!("results/{run}/inputs/inputs.json")))["overrides"].clone();
    assert_eq!(overrides("001"), serde_json::json!(["engine.profile=fixed/zero"]));
    assert_eq!(overrides("003"), serde_json::json!(["engine.profile=fixed/zero", "workload.seed=5"]));
    let hash = |run: &str| sha256_of(&wd.join(format!("results/{run}/inputs/workload.yaml")));
    assert_eq!(hash("001"), hash("003"), "the same file, the same hash");
    assert_ne!(hash("001"), hash("002"));
    // status: each run with its workload, when, requests, outcome.
    let out = ok(&["status", "wd"]);
    let table = text(&out.stdout);
    for want in ["001  quick", "002  other", "003  quick", "      6 requests  done"] {
        assert!(table.contains(want), "{want:?} in:\n{table}");
    }
    let out = ok(&["status", "wd", "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = doc["harness_runs"].as_array().unwrap();
    let listed: Vec<(&str, &str, u64, &str)> = runs
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["workload"].as_str().unwrap(),
                r["requests"].as_u64().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [("001", "quick", 52, "done"), ("002", "other", 6, "done"), ("003", "quick", 52, "done")]
    );
    assert_eq!(runs[1]["workload_sha256"].as_str().unwrap(), hash("002"));
    assert!(runs.iter().all(|r| r["started_at"].is_string() && r["analysed"] == true), "{doc}");
    ok(&["teardown", "wd"]);
    // Reproduce run 002 (not the latest): the stack's inputs with that run's workload.
    ok(&["reproduce", "wd", "--run", "002", "--workdir", "r2", "-q"]);
    let r2 = p.path("r2");
    assert_eq!(
        std::fs::read(r2.join("inputs/workload.yaml")).unwrap(),
        std::fs::read(wd.join("results/002/inputs/workload.yaml")).unwrap()
    );
    let origin = read_json(&r2.join("inputs/origin.json"));
    assert_eq!(
        (origin["run"].as_str(), origin["reproduces"].as_str()),
        (Some("002"), Some("wd")),
        "{origin}"
    );
    assert_eq!(read_json(&r2.join("results/001/inputs/inputs.json"))["workload"]["name"], "other");
    let rows = std::fs::read_to_string(r2.join("results/001/requests.csv")).unwrap().lines().count();
    assert_eq!(rows, 7, "other's 6 requests, measured again");
    // Without --run: the latest inputs, which are run 003's.
    ok(&["reproduce", "wd", "--dry-run", "--workdir", "latest", "-q"]);
    assert_eq!(read_json(&p.path("latest/inputs/origin.json"))["run"], "003");
    // From the archive: run 001, without the --set run 003 added.
    ok(&["archive", "wd", "-o", "wd.tar.gz"]);
    ok(&["reproduce", "wd.tar.gz", "--run", "001", "--dry-run", "--workdir", "ra", "-q"]);
    let origin = read_json(&p.path("ra/inputs/origin.json"));
    assert_eq!(
        (origin["run"].as_str(), origin["from"].as_str()),
        (Some("001"), Some("wd.tar.gz")),
        "{origin}"
    );
    let resolved = std::fs::read_to_string(p.path("ra/inputs/resolved.yaml")).unwrap();
    assert!(
        resolved.contains("engine.profile: --set") && !resolved.contains("workload.seed: --set"),
        "{resolved}"
    );
    // A bad --run: a clear error listing the runs, nothing created.
    for source in ["wd", "wd.tar.gz"] {
        let out = p.run(&["reproduce", source, "--run", "009", "--workdir", "rb", "-q"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("no harness run `009`") && err.contains("its runs: 001, 002, 003"), "{err}");
        assert!(err.contains(&format!("{source}: ")), "named as given: {err}");
        assert!(!p.path("rb").exists());
    }
    let out = p.run(&["reproduce", "wd", "--point", "p001", "--workdir", "rb", "-q"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is a run's work directory, not an experiment's"),
        "{}",
        text(&out.stderr)
    );
    // A run by its number: `2` is `002`.
    ok(&["reproduce", "wd", "--run", "2", "--dry-run", "--workdir", "r2b", "-q"]);
    assert_eq!(read_json(&p.path("r2b/inputs/origin.json"))["run"], "002");
    // A copy changed since the run recorded it would reproduce another run: refused, naming it.
    let copy = wd.join("results/002/inputs/workload.yaml");
    std::fs::write(&copy, OTHER.replace("requests: 6", "requests: 600")).unwrap();
    let out = p.run(&["reproduce", "wd", "--run", "002", "--dry-run", "--workdir", "r2c", "-q"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("results/002/inputs/workload.yaml is not the file the run recorded"),
        "{}",
        text(&out.stderr)
    );
    assert!(!p.path("r2c").exists(), "nothing created");
    // An analysis that did not finish (its report older than its statistics, as after a full
    // disk) is not called analysed; `analyze --run` analyses that run again, not the latest.
    let stats = wd.join("analysis/001/stats.json");
    std::fs::remove_file(wd.join("analysis/001/report.html")).unwrap();
    let analysed = |p: &Project| {
        let doc: Value = serde_json::from_slice(&p.run(&["status", "wd", "-o", "json"]).stdout).unwrap();
        doc["harness_runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["analysed"].as_bool().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(analysed(&p), [false, true, true]);
    let latest = std::fs::read_link(wd.join("analysis/latest")).unwrap();
    ok(&["analyze", "wd", "--run", "1"]);
    assert_eq!(analysed(&p), [true, true, true]);
    assert!(stats.is_file());
    assert_eq!(std::fs::read_link(wd.join("analysis/latest")).unwrap(), latest, "latest stays");
    let out = p.run(&["analyze", "wd", "--run", "9"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("its runs: 001, 002, 003"), "{}", text(&out.stderr));
}

/// A run records the dataset file its prompts came from (not copied: its path and sha256);
/// reproducing the run after the file changed is refused, naming it.
#[test]
fn reproduce_refuses_a_run_whose_dataset_file_changed() {
    let p = project("dataset-hash");
    p.file(
        "workloads/p.jsonl",
        "{\"prompt\": \"the of and\", \"max_tokens\": 4}\n{\"prompt\": \"to in\", \"max_tokens\": 4}\n",
    )
    .file(
        "workloads/js.yaml",
        "dataset: { jsonl: { path: p.jsonl } }\nstages: [ { concurrency: 1, requests: 4 } ]\n",
    );
    let (mut sim, url) = spawn_sim(&["--profile", "fixed/zero"]);
    let out = p.run(&["run", "--endpoint", &url, "-w", "js", "--workdir", "wd", "-q"]);
    let _ = sim.kill();
    let _ = sim.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let record: Value =
        serde_json::from_slice(&std::fs::read(p.path("wd/results/001/inputs/inputs.json")).unwrap()).unwrap();
    let dataset = &record["dataset"];
    assert_eq!(dataset["name"], "p.jsonl", "{record}");
    assert!(dataset["file"].as_str().unwrap().ends_with("workloads/p.jsonl"), "{record}");
    assert_eq!(dataset["sha256"].as_str().map(str::len), Some(64), "{record}");
    let out = p.run(&["reproduce", "wd", "--run", "1", "--dry-run", "--workdir", "r1", "-q"]);
    assert!(out.status.success(), "unchanged: {}", text(&out.stderr));
    p.file("workloads/p.jsonl", "{\"prompt\": \"something else entirely\", \"max_tokens\": 4}\n");
    let out = p.run(&["reproduce", "wd", "--run", "1", "--dry-run", "--workdir", "r2", "-q"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("workloads/p.jsonl is not the file the run read"),
        "{}",
        text(&out.stderr)
    );
    assert!(!p.path("r2").exists(), "nothing created");
}

// Hardening: never lose track of an engine, never measure the wrong server.

/// A spawn step whose engine never becomes ready (nothing answers on port 9).
const SLOW_START: &str = "steps:\n  - { name: up, phase: standup, kind: spawn, with: { command: [sleep, '300'], ready_url: 'http://127.0.0.1:9/health', ready_timeout: 120s, stop_timeout: 2s } }\n";

#[test]
fn sigkill_while_the_engine_starts_leaves_a_record_that_teardown_uses() {
    let p = project("killstart");
    p.file("pipelines/slow.yaml", SLOW_START).file(
        "scenarios/slow.yaml",
        "pipeline: slow\nengine: { kind: endpoint, url: 'http://127.0.0.1:9' }\n",
    );
    let wd = p.path("wd");
    let mut child = p
        .cmd(&["standup", "-c", "slow", "--workdir", "wd", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The record is written before the readiness wait, while the step still runs; the engine
    // starts once it is (the gate's shell execs it: until then, a kill ends the gate).
    let record = wd.join("setup/undo/01_up.json");
    wait_for("the undo record", Duration::from_secs(30), || record.is_file());
    let rec: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let pid = rec["pid"].as_i64().unwrap();
    wait_for("the engine past its gate", Duration::from_secs(30), || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(alive(pid), "the engine outlives a killed benchflow");
    assert_eq!(status_of(&wd, "01_up"), "running", "state.json has no record of it: only setup/undo/ has");
    let shown = text(&p.run(&["status", "wd"]).stdout);
    assert!(shown.contains(&format!("process group {pid}")), "{shown}");
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(pid));
    assert!(!record.exists(), "an undone record is removed");
    assert!(text(&p.run(&["teardown", "wd"]).stderr).contains("nothing to tear down"));
}

/// The simulator taking 3 s to load, as vLLM takes to load a model.
const SLOW_SIM: &str = "platform: local\nengine:\n  kind: sim\n  profile: tiny/cpu\n  args: [--set, startup_delay=3s]\ntimeouts: { ready: 60s }\n";

/// benchflow killed while a forced engine step replaces the engine (the new one loading): the
/// new engine is on record (status lists it up), the same command stops it before starting
/// another, and teardown leaves nothing.
#[test]
fn sigkill_while_a_forced_step_replaces_the_engine_leaves_the_new_one_on_record() {
    let p = project("replace-kill");
    p.file("scenarios/slow.yaml", SLOW_SIM).file("workloads/quick.yaml", QUICK);
    let out = p.run(&["standup", "-c", "slow", "-w", "quick", "--workdir", "wd", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wd = p.path("wd");
    let record = wd.join("setup/undo/01_start_engine.json");
    let pid_on_disk = || -> i64 {
        serde_json::from_slice::<Value>(&std::fs::read(&record).unwrap_or_default())
            .ok()
            .and_then(|r| r["pid"].as_i64())
            .unwrap_or(0)
    };
    let old = pid_on_disk();
    assert!(alive(old));
    let mut child = p
        .cmd(&["standup", "--workdir", "wd", "-s", "1", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The new engine past its gate (it is benchflow's simulator, loading for 3 s).
    wait_for("the new engine started", Duration::from_secs(30), || {
        let new = pid_on_disk();
        new != old
            && new != 0
            && std::fs::read_to_string(format!("/proc/{new}/comm")).is_ok_and(|c| c.trim() == "benchflow")
    });
    let new = pid_on_disk();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!alive(old), "the old engine was stopped first");
    assert!(alive(new), "the new engine outlives the killed benchflow");
    let doc: Value = serde_json::from_slice(&p.run(&["status", "wd", "-o", "json"]).stdout).unwrap();
    let listed = doc["up"].to_string();
    assert!(listed.contains(&format!("process group {new} ")), "status names the new engine: {doc}");
    // The same command again stops it before starting anew.
    let out = p.run(&["standup", "--workdir", "wd", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(new), "the orphan was stopped");
    let log = std::fs::read_to_string(wd.join("setup/commands/01_start_engine.log")).unwrap();
    assert!(log.contains(&format!("left process group {new}")), "{log}");
    let last = pid_on_disk();
    assert!(alive(last) && last != new);
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(last));
}

#[test]
fn sigkill_while_the_engine_loads_then_the_same_command_stops_the_orphan_before_starting_anew() {
    let p = project("orphan");
    p.file("scenarios/slow.yaml", SLOW_SIM).file("workloads/quick.yaml", QUICK);
    let wd = p.path("wd");
    let args = ["e2e", "-c", "slow", "-w", "quick", "--workdir", "wd", "-q"];
    let mut child = p.cmd(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let record = wd.join("setup/undo/01_start_engine.json");
    wait_for("the engine's undo record", Duration::from_secs(30), || record.is_file());
    child.kill().unwrap();
    child.wait().unwrap();
    let rec: Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let orphan = rec["pid"].as_i64().unwrap();
    // The orphan by its pid and start time: a later process reusing the pid is not it.
    let started = rec["start_ticks"].as_u64();
    assert!(started.is_some(), "{rec}");
    let orphan_alive = || benchflow::alive(orphan as i32, started);
    assert!(orphan_alive(), "the loading engine outlives a killed benchflow");

    // Again: the orphan would answer readiness on the recorded port for a new engine that
    // cannot bind it; it is stopped first, and the run measures the engine it started.
    let out = p.run(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!orphan_alive(), "the orphan was stopped");
    assert_ne!(engine_pid(&wd), orphan, "a new engine was started and measured");
    let log = std::fs::read_to_string(wd.join("setup/commands/01_start_engine.log")).unwrap();
    assert!(
        log.contains(&format!("left process group {orphan}")) && log.contains("stopping it first"),
        "{log}"
    );
    assert!(!alive(engine_pid(&wd)), "and torn down at the end");
}

#[test]
fn sigkill_during_an_exec_step_leaves_no_command_running() {
    let p = project("execkill");
    p.file(
        "pipelines/long.yaml",
        "steps:\n  - { name: long, phase: run, kind: exec, with: { command: [sh, -c, 'echo $$ > cmd.pid; exec sleep 300'] } }\n",
    )
    .file("scenarios/long.yaml", "pipeline: long\nengine: { kind: endpoint, url: 'http://127.0.0.1:9' }\n");
    let wd = p.path("wd");
    let mut child = p
        .cmd(&["run", "-c", "long", "--workdir", "wd", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = wd.join("cmd.pid");
    wait_for("the command's pid", Duration::from_secs(30), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n'))
    });
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(alive(pid));
    child.kill().unwrap();
    child.wait().unwrap();
    // The watcher sees benchflow's end of the pipe close and stops the command's group.
    wait_for("the command stopped", Duration::from_secs(20), || !alive(pid));
}

#[test]
fn teardown_stops_the_engine_without_plan_json_and_an_empty_tmp_record_is_nothing_recorded() {
    let p = shell_project("noplan");
    let wd = p.path("wd");
    let out = p.run(&["standup", "-c", "shell", "--workdir", "wd", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = state(&wd)["steps"]["01_up"]["undo"]["pid"].as_i64().unwrap();
    // Lost: the plan, and state.json too (setup/undo/ holds the pid).
    for (i, lost) in ["plan.json", "state.json"].into_iter().enumerate() {
        let dir = format!("wd{i}");
        let wd = p.path(&dir);
        let out = p.run(&["standup", "-c", "shell", "--workdir", &dir, "-q"]);
        assert!(out.status.success(), "{lost}: {}", text(&out.stderr));
        let pid = state(&wd)["steps"]["01_up"]["undo"]["pid"].as_i64().unwrap();
        std::fs::remove_file(wd.join("plan/plan.json")).unwrap();
        if lost == "state.json" {
            std::fs::remove_file(wd.join("state.json")).unwrap();
        }
        let out = p.run(&["teardown", &dir]);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{lost}: {err}");
        assert!(err.contains("plan.json cannot be read") && err.contains("from the undo records"), "{err}");
        assert!(!alive(pid), "{lost}: the engine must be stopped");
        // Nothing is left to undo: a second teardown says so.
        let out = p.run(&["teardown", &dir]);
        assert!(out.status.success() && text(&out.stderr).contains("nothing to tear down"), "{lost}");
    }
    // An empty .tmp record (benchflow stopped between creating and writing it) records nothing.
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!alive(pid));
    std::fs::write(wd.join("setup/undo/01_up.tmp"), b"").unwrap();
    let out = p.run(&["teardown", "wd"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("01_up.tmp is empty") && err.contains("nothing to undo"), "{err}");
    assert!(!wd.join("setup/undo/01_up.tmp").exists(), "removed");
}

#[test]
fn a_damaged_state_is_an_error_and_teardown_still_stops_the_engine() {
    let p = shell_project("damaged");
    let damages: [(&str, Option<&str>); 4] = [
        ("truncated", Some("{\"format_version\": 1, \"run_")),
        ("junk", Some("\u{0}\u{1}garbage")),
        ("empty object", Some("{}")),
        ("deleted", None),
    ];
    for (i, (what, damage)) in damages.into_iter().enumerate() {
        let dir = format!("wd{i}");
        let wd = p.path(&dir);
        let out = p.run(&["standup", "-c", "shell", "--workdir", &dir, "-q"]);
        assert!(out.status.success(), "{what}: {}", text(&out.stderr));
        let pid = state(&wd)["steps"]["01_up"]["undo"]["pid"].as_i64().unwrap();
        match damage {
            Some(bytes) => std::fs::write(wd.join("state.json"), bytes).unwrap(),
            None => std::fs::remove_file(wd.join("state.json")).unwrap(),
        }
        // status says so and still shows what is up.
        let shown = text(&p.run(&["status", &dir]).stdout);
        assert!(
            shown.contains("state.json cannot be read") && shown.contains(&format!("process group {pid}")),
            "{what}: {shown}"
        );
        // Nothing runs on a record that cannot be read: it would measure or leak the orphan.
        let out = p.run(&["e2e", "-c", "shell", "--workdir", &dir, "-q"]);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("state.json cannot be read"), "{what}: {}", text(&out.stderr));
        assert!(alive(pid), "{what}");
        // teardown stops it from setup/undo/.
        let out = p.run(&["teardown", &dir]);
        assert!(out.status.success(), "{what}: {}", text(&out.stderr));
        assert!(!alive(pid), "{what}: the engine must be stopped");
    }
}

#[test]
fn another_server_on_the_engine_port_is_refused_not_measured() {
    use std::io::{Read as _, Write as _};
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = impostor.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in impostor.incoming().flatten() {
            let _ = s.read(&mut [0; 4096]);
            let body = r#"{"data":[{"id":"impostor"}],"choices":[{"text":"x"}]}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let p = project("port");
    p.file("scenarios/sim.yaml", SCENARIO).file("workloads/quick.yaml", QUICK);
    let port_set = format!("engine.port={port}");
    let out = p.run(&["e2e", "-c", "sim", "-w", "quick", "--workdir", "wd", "--set", &port_set]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("already listens on 127.0.0.1:{port}")), "{err}");
    assert!(!p.path("wd/results/latest/requests.csv").exists(), "nothing was measured");
}

#[test]
fn an_engine_that_dies_during_the_run_stops_the_run_with_exit_1() {
    let p = project("dies");
    p.file(
        "scenarios/dying.yaml",
        "platform: local\nengine:\n  kind: sim\n  profile: tiny/cpu\n  args: [--set, die_after=4s, --set, die_mode=exit]\n",
    )
    .file("workloads/long.yaml", LONG);
    let started = std::time::Instant::now();
    let out = p.run(&["e2e", "-c", "dying", "-w", "long", "--workdir", "wd", "-q"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("01_start_engine") && err.contains("stopped during the run"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(45), "the 60 s stage was stopped when the engine died");
    let wd = p.path("wd");
    let events = std::fs::read_to_string(wd.join("events.jsonl")).unwrap();
    assert!(events.contains("\"event\":\"effect_lost\""), "{events}");
    assert!(wd.join("analysis/latest/stats.json").is_file(), "what was measured before is analysed");
    let report = std::fs::read_to_string(wd.join("analysis/latest/report.html")).unwrap();
    assert!(report.contains("The engine stopped during this run"), "the report says when it died");
}

/// A server that answers only requests carrying `Authorization: Bearer sk-test-key`; returns
/// its address and the request lines it saw with the header's presence.
/// Request lines a test server saw, each with whether it carried the expected key.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>;

fn keyed_server() -> (String, Seen) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let (mut authorized, mut length) = (false, 0usize);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                authorized |= lower.starts_with("authorization: bearer sk-test-key");
                if let Some(n) = lower.strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap_or(0);
                }
            }
            let _ = r.read_exact(&mut vec![0; length]);
            log.lock().unwrap().push((line.trim().to_string(), authorized));
            let (status, body) = match (authorized, line.split(' ').nth(1).unwrap_or("")) {
                (false, _) => ("401 Unauthorized", r#"{"error":{"message":"no key"}}"#),
                (true, "/v1/models") => ("200 OK", r#"{"data":[{"id":"m"}]}"#),
                (true, "/v1/completions") => (
                    "200 OK",
                    r#"{"choices":[{"text":" hi"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
                ),
                (true, _) => ("200 OK", "{}"),
            };
            let mut s = s;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

#[test]
fn the_smoke_test_sends_the_workloads_api_key() {
    let (url, seen) = keyed_server();
    let p = project("apikey");
    p.file("workloads/keyed.yaml", "api: { api_key: env:BF_TEST_API_KEY, model: m }\ndataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { concurrency: 1, requests: 2 } ]\n");
    let out = p
        .cmd(&["run", "--endpoint", &url, "-w", "keyed", "--workdir", "wd", "-s", "smoke_test", "-q"])
        .env("BF_TEST_API_KEY", "sk-test-key")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3 && seen.iter().all(|(_, auth)| *auth), "every request carries the key: {seen:?}");
    assert_absent(&p.path("wd"), &["sk-test-key"]);
}

#[test]
fn a_run_whose_requests_all_fail_exits_4_after_analysing_them() {
    let p = project("allfail");
    // Every request asks for more tokens than the model's context: the server answers 400.
    p.file("scenarios/sim.yaml", SCENARIO).file(
        "workloads/toolong.yaml",
        "dataset: { random: { input_len: 16, output_len: 1000000 } }\nstages: [ { concurrency: 2, requests: 10 } ]\n",
    );
    let out = p.run(&["e2e", "-c", "sim", "-w", "toolong", "--workdir", "wd", "-q"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("10 of 10 requests failed") && err.contains("10 http"), "{err}");
    let wd = p.path("wd");
    assert!(wd.join("analysis/latest/stats.json").is_file(), "the failures are analysed first");
    assert_eq!(status_of(&wd, "05_stop_start_engine"), "done", "teardown ran");
}

#[test]
fn completions_for_each_shell_name_the_commands_and_a_closed_pipe_is_not_an_error() {
    for shell in ["bash", "zsh", "fish"] {
        let out = benchflow().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for command in ["e2e", "standup", "teardown", "reproduce"] {
            assert!(script.contains(command), "{shell} completions lack `{command}`");
        }
    }
    let mut child = benchflow()
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
}

#[test]
fn an_https_endpoint_is_measured_with_its_ca_and_refused_without_it() {
    let (mut sim, plain) = spawn_sim(&["--profile", "fixed/zero"]);
    let url = tls_front(plain.trim_start_matches("http://").to_string());
    let p = project("https");
    let ca = tls_fixture("ca.pem").display().to_string();
    let workload = |tls: &str| {
        format!(
            "api: {{ tls: {tls} }}\ndataset: {{ random: {{ input_len: 8, output_len: 4 }} }}\nstages: [ {{ concurrency: 4, requests: 40 }} ]\n"
        )
    };
    p.file("workloads/trusted.yaml", &workload(&format!("{{ ca_file: '{ca}' }}")))
        .file("workloads/untrusted.yaml", &workload("{}"))
        .file("workloads/insecure.yaml", &workload("{ insecure_skip_verify: true }"));
    for (w, dir) in [("trusted", "wd1"), ("insecure", "wd2")] {
        let out = p.run(&["run", "--endpoint", &url, "-w", w, "--workdir", dir, "-q"]);
        assert_eq!(out.status.code(), Some(0), "{w}: {}", text(&out.stderr));
        let csv = std::fs::read_to_string(p.path(dir).join("results/latest/requests.csv")).unwrap();
        assert_eq!(csv.lines().count(), 41, "{w}: every request over TLS");
        assert!(csv.lines().skip(1).all(|l| l.contains(",200,,")), "{w}: all succeeded:\n{csv}");
    }
    // Without the CA the certificate is not trusted: the smoke test says so, nothing is measured.
    let out = p.run(&["run", "--endpoint", &url, "-w", "untrusted", "--workdir", "wd3", "-q"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).to_lowercase().contains("certificate"), "{}", text(&out.stderr));
    let _ = sim.kill();
    let _ = sim.wait();
    // The simulator serves TLS itself too (`--tls-cert`, `--tls-key`): the first line says https.
    use std::io::BufRead as _;
    let (cert, key) = (tls_fixture("cert.pem"), tls_fixture("key.pem"));
    let mut sim = benchflow()
        .args(["sim", "--port", "0", "--profile", "fixed/zero", "--tls-cert"])
        .args([cert.as_os_str(), "--tls-key".as_ref(), key.as_os_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(sim.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("https://"), "{line}");
    let out = p.run(&["run", "--endpoint", line.trim(), "-w", "trusted", "--workdir", "wd4", "-q"]);
    let _ = sim.kill();
    let _ = sim.wait();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// A `.tar.gz` of `files` under `top/`, with `manifest` as its MANIFEST.sha256.
fn tarball(path: &Path, top: &str, files: &[(&str, &str)], manifest: &str) {
    let file = std::fs::File::create(path).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    for (name, text) in files.iter().chain([&("MANIFEST.sha256", manifest)]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, Path::new(top).join(name), text.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn reproduce_of_a_failing_archive_leaves_no_temporary_directory_and_an_empty_manifest_is_refused() {
    use sha2::Digest as _;
    let p = project("repro-fail");
    let tmp = p.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let sum =
        |t: &str| sha2::Sha256::digest(t.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let resolved = "not: [a resolved file";
    let files = [("inputs/resolved.yaml", resolved), ("results/big.csv", "a,b\n1,2\n")];
    let full = format!("{}  inputs/resolved.yaml\n{}  results/big.csv\n", sum(resolved), sum("a,b\n1,2\n"));
    let cases = [
        ("emptied", String::new(), "lists no file"),
        (
            "partial",
            format!("{}  inputs/resolved.yaml\n", sum(resolved)),
            "results/big.csv is in the archive but not in MANIFEST.sha256",
        ),
        ("tampered", full.replace(&sum(resolved), &sum("other")), "does not match its checksum"),
        // Verified, then unreadable: the error comes after unpacking.
        ("unreadable", full.clone(), "resolved.yaml"),
    ];
    for (tag, manifest, said) in cases {
        let archive = p.path(&format!("{tag}.tar.gz"));
        tarball(&archive, "wd", &files, &manifest);
        let out = p
            .cmd(&["reproduce", archive.to_str().unwrap(), "--workdir", tag, "-q"])
            .env("TMPDIR", &tmp)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        // An archive that does not verify, or verifies but holds no readable record, is bad
        // input (exit 2).
        assert_eq!(out.status.code(), Some(2), "{tag}: {err}");
        assert!(err.contains(said), "{tag}: {err}");
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "{tag}: left behind {left:?}");
    }
}

/// `archive -o` never replaces a file that is not an archive, nor writes inside the directory
/// it packs (exit 2, the file as it was); archiving again replaces the earlier archive whole.
#[test]
fn archive_replaces_only_an_archive_and_never_packs_into_itself() {
    let p = stood_up("archive-out");
    let out = p.run(&["run", "--workdir", "wd", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let workload = p.path("workloads/quick.yaml");
    for (to, says) in [
        (workload.to_str().unwrap().to_string(), "is not a .tar.gz archive"),
        ("wd/results/inside.tar.gz".to_string(), "inside the directory being archived"),
        ("workloads".to_string(), "is a directory"),
    ] {
        let out = p.run(&["archive", "wd", "-o", &to]);
        assert_eq!(out.status.code(), Some(2), "{to}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(says), "{to}: {}", text(&out.stderr));
    }
    assert_eq!(std::fs::read_to_string(&workload).unwrap(), QUICK, "the workload is as it was");
    assert!(!p.path("wd/results/inside.tar.gz").exists());
    for _ in 0..2 {
        let out = p.run(&["archive", "wd", "-o", "a.tar.gz"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = p.run(&["reproduce", "a.tar.gz", "--dry-run", "--workdir", "again", "-q"]);
    assert!(out.status.success(), "the second archive is whole: {}", text(&out.stderr));
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn teardown_takes_q_as_the_other_commands_do() {
    let p = project("quiet-down");
    p.file(
        "pipelines/up.yaml",
        "steps:\n  - { name: up, phase: standup, kind: spawn, with: { command: [sleep, \"300\"] } }\n",
    )
    .file("scenarios/up.yaml", "pipeline: up\nengine: { kind: endpoint, url: http://127.0.0.1:9 }\n");
    let mut said = Vec::new();
    for (wd, quiet) in [("loud", false), ("quiet", true)] {
        let out = p.run(&["standup", "-c", "up", "--workdir", wd, "-q"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let pid = state(&p.path(wd))["steps"]["01_up"]["undo"]["pid"].as_i64().unwrap();
        assert!(alive(pid));
        let args: &[&str] = if quiet { &["teardown", "-q", wd] } else { &["teardown", wd] };
        let out = p.run(args);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(!alive(pid), "{wd}: still running");
        assert!(err.contains("torn down"), "{err}");
        said.push(err.lines().filter(|l| l.starts_with('[')).count());
    }
    // Without -q each teardown step says how it went; with it, none does.
    assert!(said[0] > 0 && said[1] == 0, "{said:?}");
}
