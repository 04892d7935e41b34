//! Router stacks on this machine: `benchflow e2e -c local-router`, three simulators behind the
//! real vLLM router (installed by benchflow from PyPI with `--install-missing`), load through the
//! router, each engine's `/metrics` scraped, and nothing left running afterwards, also after an
//! interrupt.

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::Value;

use crate::support::{Project, state, text, wait_for};

const QUICK: &str = "seed: 5\ndataset: { random: { input_len: 32, output_len: 16 } }\nwarmup: { requests: 0 }\nstages:\n  - { rate: 30, arrival: constant, requests: 60 }\n";
const GROUPS: &str = "seed: 2\napi: { endpoint: chat, session_header: x-session-id }\ndataset: { shared_prefix: { groups: 4, prompts_per_group: 6, prefix_len: 512, suffix_len: 16, output_len: 4 } }\nwarmup: { requests: 0 }\nstages:\n  - { rate: 20, arrival: constant, requests: 24 }\n";
const LONG: &str = "dataset: { random: { input_len: 16, output_len: 400 } }\nstages: [ { concurrency: 6, duration: 60s } ]\n";

/// A project whose tools are installed into a directory of its own.
fn project(tag: &str) -> Project {
    let p = Project::new(tag);
    let home = p.path("tools").to_string_lossy().to_string();
    p.with_env("BENCHFLOW_TOOLS_DIR", &home)
}

/// The pids of the processes the stack's spawn steps started (their summaries say `pid N, …`),
/// by step id.
fn started(wd: &Path) -> Vec<(String, i32)> {
    let s = state(wd);
    let steps = s["steps"].as_object().unwrap();
    let mut out: Vec<(String, i32)> = steps
        .iter()
        .filter(|(id, _)| id.contains("_start_") && !id.contains("_stop_"))
        .filter_map(|(id, st)| {
            let summary = st["summary"].as_str()?;
            let pid = summary.strip_prefix("pid ")?.split(',').next()?.parse().ok()?;
            Some((id.clone(), pid))
        })
        .collect();
    out.sort();
    out
}

fn alive(pid: i32) -> bool {
    benchflow::alive(pid, None)
}

#[test]
fn three_simulators_behind_the_real_vllm_router_each_serve_and_nothing_is_left() {
    let p = project("router-e2e");
    p.file("workloads/quick.yaml", QUICK);
    // Without the router installed, nothing starts: the preflight says how to install it.
    let out = p.run(&["e2e", "-c", "local-router", "-w", "quick", "--workdir", "refused"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains("vllm-router 0.1.17 is not installed")
            && said.contains("benchflow tools install vllm-router")
            && said.contains("--install-missing"),
        "{said}"
    );
    assert!(
        !p.path("refused/setup/undo").exists()
            || std::fs::read_dir(p.path("refused/setup/undo")).unwrap().count() == 0
    );

    let out =
        p.run(&["e2e", "-c", "local-router", "-w", "quick", "--install-missing", "--workdir", "wd", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wd = p.path("wd");
    // One step per replica, each with its own teardown; the router after the engines.
    let s = state(&wd);
    for id in ["02_start_engine_0", "03_start_engine_1", "04_start_engine_2", "05_start_router"] {
        assert_eq!(s["steps"][id]["status"], "undone", "{id}: {s}");
    }
    assert_eq!(s["steps"]["09_stop_start_router"]["status"], "done");
    let pids = started(&wd);
    assert_eq!(pids.len(), 4, "{pids:?}");
    for (id, pid) in &pids {
        assert!(!alive(*pid), "{id} (pid {pid}) is still running after teardown");
    }
    // The tool as installed is recorded in the work directory.
    let tool: Value =
        serde_json::from_slice(&std::fs::read(wd.join("setup/tools/vllm-router.json")).unwrap()).unwrap();
    assert_eq!(tool["version"], "0.1.17");
    // Load went through the router to every replica: their own counters say so.
    let stats: Value =
        serde_json::from_slice(&std::fs::read(wd.join("analysis/latest/stats.json")).unwrap()).unwrap();
    assert_eq!(stats["stages"][0]["completed"], 60, "{stats}");
    let endpoint = stats["endpoint"].as_str().unwrap();
    let ready = s["steps"]["05_start_router"]["summary"].as_str().unwrap();
    assert!(
        ready.contains(&format!("{endpoint}/v1/models")),
        "the load went to the router: {endpoint}, {ready}"
    );
    let replicas = stats["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 3, "{stats}");
    let served: Vec<f64> = replicas.iter().map(|r| r["requests"].as_f64().unwrap()).collect();
    // Round robin: 60 requests (and the smoke test's) split evenly, give or take the requests
    // finished around the first and last scrapes.
    for n in &served {
        assert!((15.0..=25.0).contains(n), "every replica serves its share: {served:?}");
    }
    for chart in ["replica_requests", "replica_prefix_cache"] {
        assert!(wd.join(format!("analysis/latest/plots/{chart}.png")).is_file(), "{chart}");
    }
    let report = std::fs::read_to_string(wd.join("analysis/latest/report.html")).unwrap();
    assert!(report.contains("<h2>Replicas</h2>") && report.contains("replica-2"));

    // Session affinity: the shared-prefix groups sent in `x-session-id`, the router's
    // consistent_hash keeps each group on one replica, whose cache then holds its prefix: fewer
    // cold prefixes than round robin, which sends every group everywhere.
    p.file("workloads/groups.yaml", GROUPS);
    let hits = |policy: &str| {
        let wd = format!("wd-{policy}");
        let set = format!("deploy.router.policy={policy}");
        let out =
            p.run(&["e2e", "-c", "local-router", "-w", "groups", "--set", &set, "--workdir", &wd, "-q"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stats: Value =
            serde_json::from_slice(&std::fs::read(p.path(&wd).join("analysis/latest/stats.json")).unwrap())
                .unwrap();
        let replicas = stats["replicas"].as_array().unwrap().clone();
        let sum = |k: &str| replicas.iter().map(|r| r[k].as_f64().unwrap()).sum::<f64>();
        (sum("prefix_cache_hits"), sum("prefix_cache_queries"), replicas.len())
    };
    let (rr, rr_queries, n) = hits("round_robin");
    let (affine, affine_queries, _) = hits("consistent_hash");
    assert_eq!(n, 3);
    assert_eq!(rr_queries, affine_queries, "the same prompts either way");
    // 24 requests of 4 groups: 12 cold prefixes (4 groups × 3 replicas) against 4 at most.
    assert!(affine > rr * 1.2, "affinity: {affine} cached tokens, round robin: {rr}");

    // A router that never sees its engines (its worker list replaced by a dead one): the
    // readiness wait fails within its timeout, with the router's own words, and the engines
    // are stopped.
    let out = p.run(&[
        "e2e",
        "-c",
        "local-router",
        "-w",
        "quick",
        "--workdir",
        "blind",
        "-q",
        "--set",
        "deploy.router.args=[--worker-urls, \"http://127.0.0.1:1\"]",
        "--set",
        "timeouts.ready=4s",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(said.contains("05_start_router failed") && said.contains("within 4 s"), "{said}");
    assert!(said.contains("to become healthy"), "the router's log says why: {said}");
    for (id, pid) in started(&p.path("blind")) {
        assert!(!alive(pid), "{id} (pid {pid}) is still running");
    }
}

#[test]
fn sigint_during_a_router_run_stops_the_router_and_every_engine() {
    let p = project("router-int");
    p.file("workloads/long.yaml", LONG);
    let wd = p.path("wd");
    let child = p
        .cmd(&["e2e", "-c", "local-router", "-w", "long", "--install-missing", "--workdir", "wd", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let csv = wd.join("results/latest/requests.csv");
    wait_for("records written", Duration::from_secs(180), || {
        std::fs::read_to_string(&csv).map(|t| t.lines().count() > 1).unwrap_or(false)
    });
    let pids = started(&wd);
    assert_eq!(pids.len(), 4, "{pids:?}");
    assert!(pids.iter().all(|(_, p)| alive(*p)));
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    for (id, pid) in &pids {
        assert!(!alive(*pid), "{id} (pid {pid}) is still running after the interrupt");
    }
    let s = state(&wd);
    for id in ["09_stop_start_router", "10_stop_start_engine_2", "12_stop_start_engine_0"] {
        assert_eq!(s["steps"][id]["status"], "done", "{id}: {s}");
    }
    assert!(wd.join("analysis/latest/stats.json").is_file(), "what was measured is analysed");
}
