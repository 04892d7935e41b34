//! The crash harness: benchflow is killed with SIGKILL right after its n-th durable write (a
//! state file, an event line: `BENCHFLOW_TEST_CRASH_AT=n`), for n over every boundary of an e2e
//! run, an experiment grid, a search and the local router stack; then the same command runs
//! again. What must always hold: the second command succeeds; when it ends no process of either
//! is left (every descendant carries a tag in its environment, found through /proc); whatever
//! was finished before the crash (a done load step's records, a done point's directory) is
//! byte for byte what it was; and the final analysis counts what an uninterrupted run counts.
//!
//! The normal suite tests every `BENCHFLOW_CRASH_STRIDE`-th boundary (default 6; 12 or 18 for
//! the longer cases; a different offset per scenario), then kills each case from outside at 2
//! or 3 seeded random moments: 40 crashes in about 2 minutes on 2 cores.
//! `benches/crashes.sh` runs every boundary (stride 1).

use std::{
    collections::BTreeMap,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use crate::support::{Project, digests, tagged, text, tools_home, wait_for};

const TAG: &str = "BENCHFLOW_CRASH_TAG";
const SCENARIO: &str =
    "platform: local\nengine:\n  kind: sim\n  profile: tiny/cpu\ntimeouts: { ready: 30s }\n";
const QUICK: &str = "seed: 3\napi: { ignore_eos: true }\ndataset: { random: { input_len: 32, output_len: 16 } }\nwarmup: { requests: 2 }\nstages:\n  - { rate: 40, arrival: constant, requests: 30 }\n";
const SHORT: &str = "seed: 1\napi: { stream: true, ignore_eos: true }\ndataset:\n  random: { input_len: 64, output_len: 16 }\nwarmup: { requests: 2 }\nstages:\n  - { rate: 40, requests: 12 }\n";
const PACED: &str = "seed: 1\napi: { stream: true, ignore_eos: true }\ndataset:\n  random: { input_len: 32, output_len: 10 }\nstages:\n  - { rate: 1, arrival: constant, duration: 1s }\n";
const ANALYTIC: &str = "engine.args=[--set, fidelity=analytic, --set, ttft=50ms, --set, itl=10ms, --set, ttft_std=0ms, --set, itl_std=0ms, --set, time_factor_under_load=1, --set, request_overhead=0, --set, max_num_seqs=4]";

/// Every how-many-th boundary a case tests: `BENCHFLOW_CRASH_STRIDE` when set (1: every
/// boundary), else 6 times the case's spread.
fn stride(spread: usize) -> usize {
    std::env::var("BENCHFLOW_CRASH_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(6 * spread)
}

fn json(path: &Path) -> Value {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null)
}

/// A scenario of the harness: the command (with `WD` where its work directory goes), what was
/// finished in a work directory (directories whose files must never change again), and the
/// counts its final analysis must equal.
struct Case {
    name: &'static str,
    args: Vec<&'static str>,
    finished: fn(&Path) -> Vec<PathBuf>,
    counts: fn(&Path) -> Value,
    /// Boundaries to skip at the start (a different offset per scenario).
    offset: usize,
    /// This case tests every `6 * spread`-th boundary in the suite (a long case tests fewer).
    spread: usize,
    /// Kills from outside at seeded random moments, after the boundaries.
    random: usize,
    /// Nothing may be added to a finished directory either (a done point is never measured
    /// again). An e2e run is not resumed past its measurement: the same command measures anew
    /// into a new run directory, beside the earlier one, which must stay as it was.
    sealed: bool,
}

/// An e2e run's finished records: its results once the load step is done, its analysis once
/// the analysis step is.
fn run_finished(wd: &Path) -> Vec<PathBuf> {
    let s = json(&wd.join("state.json"));
    let done = |suffix: &str| {
        s["steps"].as_object().is_some_and(|m| {
            m.iter().any(|(id, st)| id.ends_with(suffix) && !id.contains("stop") && st["status"] == "done")
        })
    };
    let mut out = Vec::new();
    if done("_load") {
        out.push(wd.join("results"));
    }
    if done("_analyze") {
        out.push(wd.join("analysis"));
    }
    out
}

fn run_counts(wd: &Path) -> Value {
    let stats = json(&wd.join("analysis/latest/stats.json"));
    let stages: Vec<Value> = stats["stages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    serde_json::json!([
                        s["completed"],
                        s["failed"],
                        s["total_input_tokens"],
                        s["total_output_tokens"]
                    ])
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Array(stages)
}

/// An experiment's finished points: each point directory its record says done.
fn points_finished(exp: &Path) -> Vec<PathBuf> {
    let s = json(&exp.join("state.json"));
    s["points"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, p)| p["status"] == "done")
                .map(|(id, _)| exp.join("points").join(id))
                .collect()
        })
        .unwrap_or_default()
}

fn points_counts(exp: &Path) -> Value {
    let s = json(&exp.join("state.json"));
    let mut out = serde_json::Map::new();
    for (id, p) in s["points"].as_object().cloned().unwrap_or_default() {
        out.insert(id.clone(), serde_json::json!([p["status"], run_counts(&exp.join("points").join(&id))]));
    }
    Value::Object(out)
}

/// A search's counts: its trials' points and verdicts are decided by what was measured, so a
/// trial measured again after a crash may differ within noise; what must hold is an answer
/// and every trial done.
fn search_counts(exp: &Path) -> Value {
    let o = json(&exp.join("analysis/search.json"));
    let s = json(&exp.join("state.json"));
    let all_done = s["points"].as_object().is_some_and(|m| m.values().all(|p| p["status"] == "done"));
    serde_json::json!({ "answered": o["answer"].is_number(), "all_done": all_done })
}

/// Runs `case` into `ref/`, then for every `stride`-th boundary n: the command killed at n,
/// then again; checks the invariants. Returns how many crashes were tested.
fn sweep(p: &Project, case: &Case) -> usize {
    let cmd = |wd: &str| command(p, case, wd);
    let (mut c, tag) = cmd("ref");
    let t0 = std::time::Instant::now();
    let out = c.output().unwrap();
    let took = t0.elapsed();
    assert!(out.status.success(), "{}: the uninterrupted run: {}", case.name, text(&out.stderr));
    let want = (case.counts)(&p.path("ref"));
    wait_for(
        &format!("{}: nothing of the uninterrupted run left", case.name),
        Duration::from_secs(30),
        || tagged(TAG, &tag).is_empty(),
    );
    let mut tested = 0;
    for n in (1 + case.offset..).step_by(stride(case.spread)) {
        let wd = format!("wd{n}");
        let (mut c, _) = cmd(&wd);
        let out = c.env("BENCHFLOW_TEST_CRASH_AT", n.to_string()).output().unwrap();
        if out.status.success() {
            // Past the last boundary: the sweep is over.
            assert!(tested > 0 || n > 1, "{}: never crashed", case.name);
            eprintln!("{}: {tested} crashes tested, the last boundary before {n}", case.name);
            break;
        }
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{}: at boundary {n} it exited by itself: {}",
            case.name,
            text(&out.stderr)
        );
        again_and_check(p, case, &wd, &format!("killed at boundary {n}"), &want);
        let _ = std::fs::remove_dir_all(p.path(&wd));
        tested += 1;
    }
    // And at moments between boundaries: SIGKILL from outside after a seeded random share of
    // the uninterrupted run's wall time (a sleep that times the kill, not one that waits).
    let mut rng = benchflow::Rng::new(0xc4a5 ^ case.offset as u64);
    for k in 0..case.random {
        let wd = format!("rnd{k}");
        let (mut c, _) = cmd(&wd);
        let mut child =
            c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let at = took.mul_f64(rng.f64());
        std::thread::sleep(at);
        let _ = child.kill();
        let _ = child.wait();
        again_and_check(p, case, &wd, &format!("killed at {:.2} s", at.as_secs_f64()), &want);
        let _ = std::fs::remove_dir_all(p.path(&wd));
        tested += 1;
    }
    tested
}

/// After a kill in `wd`: what was finished there, the same command again (it must succeed and
/// leave no process), then the finished records unchanged and the counts as `want`.
fn again_and_check(p: &Project, case: &Case, wd: &str, when: &str, want: &Value) {
    // An atomic write's temporary (`.<name>.tmp`) a kill left behind is not a record: the run
    // again replaces it (its write redone) or leaves it.
    let temporary = |f: &PathBuf| {
        f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
    };
    let finished: Vec<(PathBuf, BTreeMap<PathBuf, u64>)> = (case.finished)(&p.path(wd))
        .into_iter()
        .map(|d| {
            let mut files = digests(&d, &[".lock", "latest"]);
            files.retain(|f, _| !temporary(f));
            (d.clone(), files)
        })
        .collect();
    let (mut again, tag) = command(p, case, wd);
    let out = again.output().unwrap();
    assert!(
        out.status.success(),
        "{}: {when}, the same command again failed: {}",
        case.name,
        text(&out.stderr)
    );
    wait_for(&format!("{}: {when}, then again: no process left", case.name), Duration::from_secs(30), || {
        tagged(TAG, &tag).is_empty()
    });
    for (dir, before) in &finished {
        let mut after = digests(dir, &[".lock", "latest"]);
        after.retain(|f, _| !temporary(f));
        // A chart's PNG is drawn when the experiment's points are done (off the time between
        // two points' load): one killed before that draws it on resume, beside its SVG. That
        // is the one file a done point may gain.
        let deferred_png = |f: &PathBuf| {
            f.extension().is_some_and(|x| x == "png") && before.contains_key(&f.with_extension("svg"))
        };
        let added = after.keys().filter(|f| case.sealed && !before.contains_key(*f) && !deferred_png(f));
        let changed: Vec<_> =
            before.keys().chain(added).filter(|f| before.get(*f) != after.get(*f)).collect();
        assert!(
            changed.is_empty(),
            "{}: {when}: finished records in {} changed: {changed:?}",
            case.name,
            dir.display()
        );
    }
    let got = (case.counts)(&p.path(wd));
    assert_eq!(&got, want, "{}: {when}: the final analysis counts", case.name);
}

/// The case's command into `wd`, tagged (the tag is in every descendant's environment).
fn command(p: &Project, case: &Case, wd: &str) -> (std::process::Command, String) {
    let args: Vec<&str> = case.args.iter().map(|a| if *a == "WD" { wd } else { a }).collect();
    let tag = format!("{}-{}-{wd}", case.name, std::process::id());
    let mut c = p.cmd(&args);
    c.env(TAG, &tag).env("BENCHFLOW_TOOLS_DIR", tools_home());
    (c, tag)
}

#[test]
fn e2e_killed_at_every_boundary_then_run_again_loses_and_leaves_nothing() {
    let p = Project::new("crash-e2e");
    p.file("scenarios/sim.yaml", SCENARIO).file("workloads/quick.yaml", QUICK);
    let case = Case {
        name: "e2e",
        random: 3,
        spread: 1,
        sealed: false,
        args: vec!["e2e", "-c", "sim", "-w", "quick", "--workdir", "WD", "-q"],
        finished: run_finished,
        counts: run_counts,
        offset: 0,
    };
    let tested = sweep(&p, &case);
    assert!(tested >= 40 / stride(1), "{tested} crashes tested");
}

#[test]
fn an_experiment_grid_killed_at_every_boundary_then_run_again_measures_each_point_once() {
    let p = Project::new("crash-grid");
    // With the points' PNGs, drawn when the points are done: the path with more to resume (a
    // search's trials, below, go without them, as a file does by default).
    p.file("workloads/short.yaml", SHORT).file(
        "experiments/e.yaml",
        "base: { workload: short }\nanalysis: { point_pngs: true }\nfactors:\n  workload.seed: [1, 2]\n",
    );
    let case = Case {
        name: "grid",
        random: 3,
        spread: 2,
        sealed: true,
        args: vec!["experiment", "-e", "e", "--workdir", "WD", "-q"],
        finished: points_finished,
        counts: points_counts,
        offset: 2,
    };
    let tested = sweep(&p, &case);
    assert!(tested >= 60 / stride(2), "{tested} crashes tested");
}

#[test]
fn a_search_killed_at_every_boundary_then_run_again_keeps_its_trials_and_answers() {
    let p = Project::new("crash-search");
    p.file("workloads/paced.yaml", PACED).file(
        "experiments/e.yaml",
        &format!(
            "base:\n  workload: paced\n  set: [\"{ANALYTIC}\"]\nsearch: {{ factor: workload.stages.0.rate, from: 2, to: 100, trials: 2 }}\n"
        ),
    );
    let case = Case {
        name: "search",
        random: 2,
        spread: 3,
        sealed: true,
        args: vec!["experiment", "-e", "e", "--workdir", "WD", "-q"],
        finished: points_finished,
        counts: search_counts,
        offset: 4,
    };
    let tested = sweep(&p, &case);
    assert!(tested >= 40 / stride(3), "{tested} crashes tested");
}

#[test]
fn the_router_stack_killed_at_every_boundary_then_run_again_leaves_no_router_or_engine() {
    let p = Project::new("crash-router");
    p.file(
        "workloads/quick.yaml",
        "seed: 5\ndataset: { random: { input_len: 32, output_len: 16 } }\nwarmup: { requests: 0 }\nstages:\n  - { rate: 30, arrival: constant, requests: 30 }\n",
    );
    let case = Case {
        name: "router",
        random: 2,
        spread: 2,
        sealed: false,
        args: vec!["e2e", "-c", "local-router", "-w", "quick", "--install-missing", "--workdir", "WD", "-q"],
        finished: run_finished,
        counts: run_counts,
        offset: 1,
    };
    let tested = sweep(&p, &case);
    assert!(tested >= 40 / stride(2), "{tested} crashes tested");
}

/// The reader of benchflow's output goes away (`benchflow e2e 2>&1 | head -2`): it goes on
/// without printing, finishes, and tears down; nothing is left running.
#[test]
fn a_closed_output_pipe_neither_stops_the_run_nor_leaves_the_engine() {
    let p = Project::new("crash-pipe");
    p.file("scenarios/sim.yaml", SCENARIO).file("workloads/quick.yaml", QUICK);
    let tag = format!("pipe-{}", std::process::id());
    let mut child = p
        .cmd(&["e2e", "-c", "sim", "-w", "quick", "--workdir", "wd"])
        .env(TAG, &tag)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both ends closed before benchflow writes its first line.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    wait_for("nothing of the run left", Duration::from_secs(30), || tagged(TAG, &tag).is_empty());
    let state: Value = serde_json::from_slice(&std::fs::read(p.path("wd/state.json")).unwrap()).unwrap();
    assert_eq!(state["steps"]["01_start_engine"]["status"], "undone", "{state}");
}
