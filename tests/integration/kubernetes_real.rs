//! The Kubernetes platform against a real control plane (kube-apiserver, etcd, controller
//! manager and scheduler of Kubernetes 1.33; [`crate::cluster`]): what only a real API server
//! judges truthfully. Each test has namespaces of its own; `kubectl` (built from the same
//! release) checks what is left.

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{
    cluster::{Behaviour, ControlPlane, Pods},
    loadgen::TempDir,
    support::{assert_absent, benchflow, spawn_sim, state, text, wait_for},
};

const HF_CANARY: &str = "hf_canary_real_5a6b7c";

const WORKLOAD: &str = "seed: 1\ndataset: { random: { input_len: 32, output_len: 8 } }\nstages:\n  - { rate: 40, arrival: constant, requests: 20 }\n";

/// A project directory, a simulator as the namespace's backend, and the control plane.
struct Project {
    cp: &'static ControlPlane,
    ns: String,
    dir: TempDir,
    sim: std::process::Child,
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.sim.kill();
        let _ = self.sim.wait();
    }
}

impl Project {
    fn new(tag: &str, behaviour: Behaviour) -> Project {
        let cp = ControlPlane::get();
        let (sim, url) = spawn_sim(&["--profile", "tiny/cpu"]);
        let backend = url.trim_start_matches("http://").parse().ok();
        let ns = cp.namespace(tag, Behaviour { backend, ..behaviour });
        let dir = TempDir::new(tag);
        for d in ["scenarios", "workloads", "harnesses"] {
            std::fs::create_dir_all(dir.0.join(d)).unwrap();
        }
        std::fs::write(dir.0.join("workloads/quick.yaml"), WORKLOAD).unwrap();
        let p = Project { cp, ns, dir, sim };
        p.write("scenarios/k8s.yaml", &p.scenario_text(""));
        p
    }

    /// A scenario of the standalone method in this test's namespace, plus `extra` under
    /// `kubernetes:`.
    fn scenario_text(&self, extra: &str) -> String {
        format!(
            "platform: kubernetes\nmodel: tiny-sim\nengine: {{ kind: vllm, args: [--max-model-len, \"4096\"], env: {{ HF_TOKEN: env:HF_TOKEN }} }}\n\
             kubernetes:\n  namespace: {}\n  image: vllm/vllm-openai:v0.11.0\n  gpus: 1\n  gpu_product: NVIDIA-H100-80GB-HBM3\n{extra}\
             timeouts: {{ ready: 60s, smoke: 20s }}\n",
            self.ns
        )
    }

    /// Writes `scenarios/<name>.yaml`: the standalone scenario with `deploy: <deploy>`.
    fn deploy_scenario(&self, name: &str, deploy: &str) -> &Self {
        let text =
            self.scenario_text("").replace("kubernetes:\n", &format!("deploy: {deploy}\nkubernetes:\n"));
        self.write(&format!("scenarios/{name}.yaml"), &text)
    }

    /// Writes a file of the project.
    fn write(&self, rel: &str, text: &str) -> &Self {
        std::fs::write(self.dir.0.join(rel), text).unwrap();
        self
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = benchflow();
        c.args(args)
            .current_dir(&self.dir.0)
            .env("KUBECONFIG", &self.cp.kubeconfig)
            .env("HF_TOKEN", HF_CANARY)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn wd(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// What is left of the run in this test's namespaces, as kubectl lists it.
    fn left(&self) -> Vec<String> {
        self.cp.labelled().into_iter().filter(|l| l.starts_with(&format!("{} ", self.ns))).collect()
    }
}

#[test]
fn e2e_against_a_real_api_server_stands_up_runs_through_a_port_forward_and_leaves_nothing() {
    let p = Project::new("real-e2e", Behaviour::default());
    let kubeconfig = p.cp.kubeconfig.to_string_lossy().to_string();
    let out = p
        .cmd(&["e2e", "-c", "k8s", "-w", "quick", "--workdir", "wd", "--kubeconfig", &kubeconfig])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wd = p.wd("wd");
    let s = state(&wd);
    for step in ["01_preflight", "08_wait_ready", "09_smoke_test", "10_load", "11_analyze"] {
        assert_eq!(s["steps"][step]["status"], "done", "{step}: {}", s["steps"][step]);
    }
    for step in ["02_namespace", "03_secret", "04_cache", "07_deploy"] {
        assert_eq!(s["steps"][step]["status"], "undone", "{step}: {}", s["steps"][step]);
    }
    assert_eq!(s["steps"]["05_download"]["status"], "skipped");
    // The load went through the real API server's port-forward to the simulator.
    let csv = std::fs::read_to_string(wd.join("results/latest/requests.csv")).unwrap();
    assert_eq!(csv.lines().count(), 21, "{csv}");
    assert!(wd.join("analysis/latest/report.html").is_file());
    let forwards = p.cp.kubelet_requests(&p.ns);
    assert!(
        forwards.iter().any(|r| r.starts_with("GET /portForward/") && r.contains("port=8000")),
        "{forwards:?}"
    );
    // kubectl sees nothing of the run, and the namespace benchflow created is gone.
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    assert!(!p.cp.has_namespace(&p.ns), "namespace {} is still there", p.ns);
    assert_absent(&wd, &[HF_CANARY, &p.cp.admin_token()]);
    let rendered = std::fs::read_to_string(wd.join("plan/steps/03_secret.json")).unwrap();
    assert!(rendered.contains("env:HF_TOKEN"), "{rendered}");
}

#[test]
fn standup_leaves_objects_owned_by_benchflow_that_run_and_teardown_take_from_the_work_directory() {
    let p = Project::new("real-split", Behaviour::default());
    let out = p.run(&["standup", "-c", "k8s", "--workdir", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Up: every object carries the run label and is managed by field manager `benchflow`; the
    // token reached the API server (and only it).
    let up = p.left();
    for kind in ["Deployment/", "Service/", "Secret/", "PersistentVolumeClaim/", "Pod/"] {
        assert!(up.iter().any(|l| l.contains(kind)), "no {kind} in {up:?}");
    }
    let managers = p.cp.kubectl(&[
        "get",
        "deployments,services,secrets",
        "-n",
        &p.ns,
        "-o",
        "jsonpath={.items[*].metadata.managedFields[*].manager}",
    ]);
    assert!(managers.split_whitespace().filter(|m| *m == "benchflow").count() >= 3, "{managers}");
    let token = p.cp.kubectl(&[
        "get",
        "secrets",
        "-n",
        &p.ns,
        "-l",
        "benchflow.io/run",
        "-o",
        "jsonpath={.items[0].data.HF_TOKEN}",
    ]);
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.decode(token.trim()).unwrap();
    assert_eq!(token, HF_CANARY.as_bytes());
    let out = p.run(&["status", "wd"]);
    assert!(text(&out.stdout).contains("1/1 available"), "{}", text(&out.stdout));
    let out = p.run(&["run", "--workdir", "wd", "-w", "quick"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(p.wd("wd").join("results/latest/requests.csv")).unwrap();
    assert_eq!(csv.lines().count(), 21);
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    assert!(!p.cp.has_namespace(&p.ns));
    assert_absent(&p.wd("wd"), &[HF_CANARY]);
}

#[test]
fn stuck_pods_fail_fast_with_the_real_schedulers_message_and_a_clean_teardown() {
    for (pods, gpus, expected) in [
        (Pods::CrashLoop, 1, "CrashLoopBackOff"),
        (Pods::ImagePull, 1, "ImagePullBackOff"),
        (Pods::Ready, 16, "Insufficient nvidia.com/gpu"),
    ] {
        let p = Project::new("real-stuck", Behaviour { pods: pods.clone(), ..Behaviour::default() });
        p.write("scenarios/k8s.yaml", &p.scenario_text("").replace("gpus: 1", &format!("gpus: {gpus}")));
        let t0 = Instant::now();
        let out = p.run(&["e2e", "-c", "k8s", "-w", "quick", "--workdir", "wd"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{pods:?}: {err}");
        assert!(err.contains(expected), "{pods:?}: {err}");
        assert!(t0.elapsed() < Duration::from_secs(30), "{pods:?} took {:?}: not fast", t0.elapsed());
        let diagnostics: Vec<_> = std::fs::read_dir(p.wd("wd").join("setup/diagnostics")).unwrap().collect();
        assert!(!diagnostics.is_empty(), "{pods:?}: no diagnostics saved");
        assert!(p.left().is_empty(), "{pods:?}: left {:?}", p.left());
        assert!(!p.cp.has_namespace(&p.ns), "{pods:?}: namespace {} is still there", p.ns);
    }
}

/// A Role for user `limited` in `ns`: what the standalone method needs, but `skip` rules.
fn role_for_limited(ns: &str, skip: &str) -> String {
    let rules = [
        ("\"\"", "secrets, persistentvolumeclaims, services", "get, list, watch, create, patch, delete"),
        ("apps", "deployments", "get, list, watch, create, patch, delete"),
        ("\"\"", "pods, events", "get, list, watch"),
        ("\"\"", "pods/log", "get"),
        ("\"\"", "pods/portforward", "create, get"),
    ];
    let rules: Vec<String> = rules
        .iter()
        .filter(|(_, resources, _)| *resources != skip)
        .map(|(group, resources, verbs)| {
            format!("- {{ apiGroups: [{group}], resources: [{resources}], verbs: [{verbs}] }}")
        })
        .collect();
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{ name: bench, namespace: {ns} }}\nrules:\n{}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{ name: bench, namespace: {ns} }}\n\
         roleRef: {{ apiGroup: rbac.authorization.k8s.io, kind: Role, name: bench }}\n\
         subjects: [ {{ apiGroup: rbac.authorization.k8s.io, kind: User, name: limited }} ]\n",
        rules.join("\n")
    )
}

#[test]
fn preflight_names_each_missing_permission_and_a_namespace_confined_user_can_run() {
    let p = Project::new("real-rbac", Behaviour::default());
    p.cp.kubectl(&["create", "namespace", &p.ns]);
    p.cp.kubectl_with(&["apply", "-f", "-"], &role_for_limited(&p.ns, "pods/portforward"));
    let as_limited = |args: &[&str]| p.cmd(args).env("KUBECONFIG", &p.cp.limited).output().unwrap();
    let out = as_limited(&["e2e", "-c", "k8s", "-w", "quick", "--workdir", "wd1"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("(user limited) may not do 1 of the"), "{err}");
    assert!(err.contains(&format!("create pods/portforward in namespace {}", p.ns)), "{err}");
    assert!(!err.contains("patch deployments"), "{err}");
    let s = state(&p.wd("wd1"));
    assert_eq!(s["steps"]["02_namespace"]["status"], "not_run", "{}", s["steps"]["02_namespace"]);
    assert!(p.left().is_empty(), "{:?}", p.left());
    // With the permission granted, the confined user runs it all, and the namespace stays.
    p.cp.kubectl_with(&["apply", "-f", "-"], &role_for_limited(&p.ns, ""));
    let out = as_limited(&["e2e", "-c", "k8s", "-w", "quick", "--workdir", "wd2"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("cannot be read with these credentials: taken to exist"), "{err}");
    assert!(p.left().is_empty(), "{:?}", p.left());
    assert!(p.cp.has_namespace(&p.ns));
    // The harness in the cluster needs Jobs and ConfigMaps too: asked for before anything runs.
    p.write(
        "harnesses/pods.yaml",
        "kind: builtin\nplacement: cluster\nparallelism: 2\nimage: ghcr.io/benchflow/benchflow:test\n",
    );
    let out = as_limited(&["e2e", "-c", "k8s", "-H", "pods", "-w", "quick", "--workdir", "wd3"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("may not do 8 of the"), "{err}");
    for missing in ["create jobs.batch", "watch jobs.batch", "create configmaps"] {
        assert!(err.contains(&format!("{missing} in namespace {}", p.ns)), "{missing}: {err}");
    }
    assert!(p.left().is_empty(), "{:?}", p.left());
}

#[test]
fn a_field_another_manager_owns_is_a_clear_conflict_not_taken_over() {
    let p = Project::new("real-ssa", Behaviour::default());
    p.cp.kubectl(&["create", "namespace", &p.ns]);
    // Object names derive from the run id, the work directory's name.
    let plan = p.run(&["plan", "-c", "k8s", "-w", "quick", "--workdir", "wd"]);
    let listing = text(&plan.stdout) + &text(&plan.stderr);
    let service = listing
        .split_whitespace()
        .find_map(|w| w.strip_prefix("Service/"))
        .unwrap_or_else(|| panic!("no Service in the plan: {listing}"))
        .trim_end_matches(',')
        .to_string();
    // Another tool owns the Service benchflow would apply, with another target port.
    let theirs = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{ name: {service}, namespace: {} }}\n\
         spec: {{ type: ClusterIP, selector: {{ app: team }}, ports: [ {{ name: http, port: 8000, targetPort: 9000 }} ] }}\n",
        p.ns
    );
    p.cp.kubectl_with(&["apply", "--server-side", "--field-manager", "team-tool", "-f", "-"], &theirs);
    let out = p.run(&["e2e", "-c", "k8s", "-w", "quick", "--workdir", "wd"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("cannot apply Service/{service}")), "{err}");
    assert!(err.contains("team-tool") && err.contains("targetPort"), "{err}");
    assert!(err.contains("does not take over fields"), "{err}");
    // Theirs is untouched, and benchflow's own objects are gone.
    let port = p.cp.kubectl(&[
        "get",
        "service",
        &service,
        "-n",
        &p.ns,
        "-o",
        "jsonpath={.spec.ports[0].targetPort}",
    ]);
    assert_eq!(port, "9000");
    assert!(p.left().is_empty(), "{:?}", p.left());
}

#[test]
fn sigint_while_waiting_sigkill_then_teardown_and_gc_after_a_lost_work_directory_leave_nothing() {
    let p = Project::new("real-int", Behaviour { pods: Pods::NeverReady, ..Behaviour::default() });
    let deployed = || p.left().iter().any(|l| l.contains("Deployment/"));
    // SIGINT during the readiness wait: benchflow tears down and exits 5.
    let child = p
        .cmd(&["e2e", "-c", "k8s", "-w", "quick", "--workdir", "wd"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("deployment applied", Duration::from_secs(30), deployed);
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(state(&p.wd("wd"))["steps"]["08_wait_ready"]["status"], "cancelled");
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    // SIGKILL: everything stays; `teardown DIR` removes it from the record, namespace too.
    let killed_once_deployed = |wd: &str| {
        let mut child = p
            .cmd(&["e2e", "-c", "k8s", "-w", "quick", "--workdir", wd])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("deployment applied", Duration::from_secs(30), deployed);
        child.kill().unwrap();
        child.wait().unwrap();
    };
    killed_once_deployed("wd2");
    assert!(!p.left().is_empty());
    let out = p.run(&["status", "wd2"]);
    let shown = text(&out.stdout);
    assert!(shown.contains("0/1 available"), "{shown}");
    let out = p.run(&["teardown", "wd2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    assert!(!p.cp.has_namespace(&p.ns), "namespace {} is still there", p.ns);
    // SIGKILL and the work directory lost: `gc` finds what is left by its labels.
    killed_once_deployed("wd3");
    std::fs::remove_dir_all(p.wd("wd3")).unwrap();
    let out = p.run(&["gc", "--namespace", &p.ns]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    wait_for("namespace gone", Duration::from_secs(30), || !p.cp.has_namespace(&p.ns));
}

/// The admin's kubeconfig with its server moved to a port where nothing listens.
fn unreachable_kubeconfig(p: &Project) -> PathBuf {
    let text = std::fs::read_to_string(&p.cp.kubeconfig).unwrap();
    let start = text.find("server: \"").unwrap() + "server: \"".len();
    let end = start + text[start..].find('"').unwrap();
    let path = p.wd("unreachable.kubeconfig");
    std::fs::write(&path, format!("{}https://127.0.0.1:1{}", &text[..start], &text[end..])).unwrap();
    path
}

#[test]
fn after_gc_status_reads_the_cluster_says_what_is_gone_and_teardown_still_succeeds() {
    let p = Project::new("real-gone", Behaviour::default());
    let out = p.run(&["standup", "-c", "k8s", "--workdir", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = |json: bool, kubeconfig: Option<&PathBuf>| {
        let mut c = p.cmd(&["status", "wd"]);
        if json {
            c.args(["-o", "json"]);
        }
        if let Some(k) = kubeconfig {
            c.env("KUBECONFIG", k);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let raw = ["ApiError", "HyperError", "ServiceError", "Status {", "ErrorResponse", "Some("];
    // A cluster that cannot be reached: said in words, and the record shown as not checked.
    let dead = unreachable_kubeconfig(&p);
    let shown = status(false, Some(&dead));
    assert!(shown.contains("cannot reach the API server"), "{shown}");
    assert!(shown.contains("not checked"), "{shown}");
    assert!(shown.contains("07_deploy: Kubernetes objects"), "{shown}");
    assert!(!raw.iter().any(|r| shown.contains(r)), "{shown}");
    let doc: serde_json::Value = serde_json::from_str(&status(true, Some(&dead))).unwrap();
    let why = doc["cluster_unchecked"].as_str().unwrap_or_default();
    assert!(why.contains("cannot reach the API server") && !raw.iter().any(|r| why.contains(r)), "{doc}");
    assert!(!doc["up"].as_array().unwrap().is_empty(), "{doc}");
    // Up: checked, nothing gone.
    let doc: serde_json::Value = serde_json::from_str(&status(true, None)).unwrap();
    assert!(doc["cluster_unchecked"].is_null() && doc["gone"].as_array().unwrap().is_empty(), "{doc}");
    assert!(
        doc["up"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().starts_with("07_deploy: ")),
        "{doc}"
    );
    // `gc` deletes everything benchflow labelled, behind the work directory's back.
    let out = p.run(&["gc", "-n", &p.ns]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("namespace gone", Duration::from_secs(60), || !p.cp.has_namespace(&p.ns));
    let shown = status(false, None);
    assert!(!raw.iter().any(|r| shown.contains(r)), "{shown}");
    let deployment = shown
        .lines()
        .find(|l| l.starts_with("07_deploy: Deployment/") && l.contains(&format!(" in {}", p.ns)))
        .unwrap_or_else(|| panic!("no gone Deployment in:\n{shown}"));
    assert!(deployment.ends_with("gone from the cluster (deleted outside this work directory?)"), "{shown}");
    assert!(shown.contains(&format!("02_namespace: Namespace/{} — gone", p.ns)), "{shown}");
    assert!(shown.contains("nothing is up"), "{shown}");
    assert!(!shown.contains("1 available"), "{shown}");
    let doc: serde_json::Value = serde_json::from_str(&status(true, None)).unwrap();
    assert_eq!(doc["up"], serde_json::json!([]), "{doc}");
    assert!(doc["cluster_unchecked"].is_null(), "{doc}");
    let gone: Vec<&str> = doc["gone"].as_array().unwrap().iter().filter_map(|g| g.as_str()).collect();
    for (step, kind) in
        [("02_namespace", "Namespace/"), ("03_secret", "Secret/"), ("07_deploy", "Deployment/")]
    {
        assert!(gone.iter().any(|g| g.starts_with(&format!("{step}: {kind}"))), "{step}: {gone:?}");
    }
    // Teardown still succeeds (what is gone counts as removed), and then nothing is recorded.
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_str(&status(true, None)).unwrap();
    assert_eq!((&doc["up"], &doc["gone"]), (&serde_json::json!([]), &serde_json::json!([])), "{doc}");
    assert!(p.left().is_empty(), "left: {:?}", p.left());
}

#[test]
fn the_harness_runs_as_a_real_indexed_job_and_its_records_come_back_through_the_logs() {
    let p = Project::new("real-job", Behaviour::default());
    p.write(
        "harnesses/pods.yaml",
        "kind: builtin\nplacement: cluster\nparallelism: 2\nimage: ghcr.io/benchflow/benchflow:test\n",
    );
    let out = p.run(&["e2e", "-c", "k8s", "-H", "pods", "-w", "quick", "--workdir", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wd = p.wd("wd");
    let summary = state(&wd)["steps"]["10_load"]["summary"].as_str().unwrap().to_string();
    assert!(summary.starts_with("20 requests (0 failed) from 2 pods"), "{summary}");
    // The Job controller made one pod per index; each one's records came back through
    // `pods/log`, which the API server fetched from the node's kubelet endpoint.
    for i in 0..2 {
        let part = std::fs::read_to_string(wd.join(format!("results/latest/shard-{i}/results/requests.csv")))
            .unwrap();
        assert_eq!(part.lines().count(), 11, "shard {i}: {part}");
    }
    let logs = p.cp.kubelet_requests(&p.ns);
    assert_eq!(logs.iter().filter(|r| r.starts_with("GET /containerLogs/")).count(), 2, "{logs:?}");
    let shards: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("results/latest/shards.json")).unwrap()).unwrap();
    assert_eq!(shards.as_array().unwrap().len(), 2);
    let merged = std::fs::read_to_string(wd.join("results/latest/requests.csv")).unwrap();
    assert_eq!(merged.lines().count(), 21);
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("analysis/latest/stats.json")).unwrap()).unwrap();
    assert_eq!(stats["stages"][0]["completed"], 20);
    // The engine pod's /metrics were scraped from here while the pods ran (a port-forward),
    // one round before they started: its counters grew by the 20 requests.
    let metrics = std::fs::read_to_string(wd.join("results/latest/server_metrics.csv")).unwrap();
    let mut finished: std::collections::BTreeMap<String, f64> = Default::default();
    for line in metrics.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f[1] == "vllm:request_success_total" {
            // A pod of the engine's Deployment (gone with the stack by now).
            assert!(f.last().is_some_and(|t| t.starts_with("vllm-tiny-sim-")), "{line}");
            *finished.entry(f[0].to_string()).or_default() += f[f.len() - 2].parse::<f64>().unwrap();
        }
    }
    let by_time: Vec<(f64, f64)> = finished.iter().map(|(t, n)| (t.parse().unwrap(), *n)).collect();
    let (first, last) = (
        by_time.iter().min_by(|a, b| a.0.total_cmp(&b.0)).unwrap(),
        by_time.iter().max_by(|a, b| a.0.total_cmp(&b.0)).unwrap(),
    );
    assert_eq!(last.1 - first.1, 20.0, "{metrics}");
    // The Job and its ConfigMap are gone with the rest.
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    let job = std::fs::read_to_string(wd.join("plan/steps/10_load.job.json")).unwrap();
    assert!(job.contains("\"completionMode\": \"Indexed\"") && job.contains("\"parallelism\": 2"), "{job}");
}

/// A setup factor (GPUs per pod) × a run factor (rate): two stacks, each applied once with its
/// own run id, both deleted, every point measured through a port-forward.
#[test]
fn an_experiment_stands_up_one_deployment_per_stack_and_leaves_nothing_on_a_real_server() {
    let p = Project::new("real-exp", Behaviour::default());
    std::fs::create_dir_all(p.dir.0.join("experiments")).unwrap();
    p.write(
        "experiments/gpus.yaml",
        "base: { scenario: k8s, workload: quick }\nfactors:\n  kubernetes.gpus: [1, 2]\n  workload.stages.0.rate: [20, 40]\n",
    );
    let out = p.run(&["experiment", "-e", "gpus", "--workdir", "exp", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exp = p.dir.0.join("exp");
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exp.join("state.json")).unwrap()).unwrap();
    for point in ["p001", "p002", "p003", "p004"] {
        assert_eq!(st["points"][point]["status"], "done", "{point}: {}", st["points"][point]);
        let csv = std::fs::read_to_string(exp.join("points").join(point).join("results/latest/requests.csv"))
            .unwrap();
        assert_eq!(csv.lines().count(), 21, "{point}");
    }
    // Each stack applied its own Deployment (names from its own run id); the second asks 2 GPUs.
    let deploy =
        |s: &str| std::fs::read_to_string(exp.join(format!("stacks/{s}/plan/steps/07_deploy.json"))).unwrap();
    let gpus2 = |t: &str| t.contains("\"nvidia.com/gpu\": \"2\"") || t.contains("\"nvidia.com/gpu\": 2");
    assert!(!gpus2(&deploy("s1")) && gpus2(&deploy("s2")), "{}", deploy("s2"));
    for s in ["s1", "s2"] {
        assert_eq!(st["stacks"][s]["standups"], 1);
        assert_eq!(st["stacks"][s]["status"], "down");
    }
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    assert_absent(&exp, &[HF_CANARY]);
}

#[test]
fn an_existing_namespace_and_claim_are_used_and_kept_and_a_missing_claim_is_refused_first() {
    let p = Project::new("real-pvc", Behaviour::default());
    p.cp.kubectl(&["create", "namespace", &p.ns]);
    let claim = format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{ name: models, namespace: {} }}\n\
         spec: {{ accessModes: [ReadWriteMany], resources: {{ requests: {{ storage: 1Ti }} }} }}\n",
        p.ns
    );
    p.cp.kubectl_with(&["apply", "-f", "-"], &claim);
    p.write("scenarios/team.yaml", &p.scenario_text("  pvc: { name: models }\n"));
    p.write("scenarios/missing.yaml", &p.scenario_text("  pvc: { name: nope }\n"));
    let out = p.run(&["e2e", "-c", "missing", "-w", "quick", "--workdir", "wd1"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("`nope`") && err.contains("does not exist"), "{err}");
    assert!(p.left().is_empty(), "{:?}", p.left());
    let out = p.run(&["e2e", "-c", "team", "-w", "quick", "--workdir", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(state(&p.wd("wd"))["steps"]["04_cache"]["status"], "skipped");
    let phase = p.cp.kubectl(&["get", "pvc", "models", "-n", &p.ns, "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Bound", "the claim is kept");
    assert!(p.cp.has_namespace(&p.ns), "the namespace is kept");
    assert!(p.left().is_empty(), "{:?}", p.left());
    let deploy = std::fs::read_to_string(p.wd("wd").join("plan/steps/07_deploy.json")).unwrap();
    assert!(deploy.contains("\"claimName\": \"models\"") && deploy.contains("benchflow.io/run"), "{deploy}");
}

/// The shipped scenario as a user runs it, the kubeconfig given on the command line, the
/// simulator serving the scenario's model; `kubectl get all -A` shows nothing of it afterwards.
#[test]
fn the_shipped_kubernetes_standalone_scenario_runs_against_the_real_api_server() {
    let cp = ControlPlane::get();
    let (mut sim, url) = spawn_sim(&["--profile", "llama-3.1-8b/h100", "--set", "time_scale=0.1"]);
    let ns = cp.namespace(
        "shipped",
        Behaviour { backend: url.trim_start_matches("http://").parse().ok(), ..Behaviour::default() },
    );
    let dir = TempDir::new("real-shipped");
    std::fs::create_dir_all(dir.0.join("workloads")).unwrap();
    std::fs::write(dir.0.join("workloads/quick.yaml"), WORKLOAD).unwrap();
    let kubeconfig = cp.kubeconfig.to_string_lossy().to_string();
    let set = format!("kubernetes.namespace={ns}");
    let out = benchflow()
        .args([
            "e2e",
            "-c",
            "kubernetes-standalone",
            "-w",
            "quick",
            "--workdir",
            "wd",
            "--kubeconfig",
            &kubeconfig,
        ])
        .args(["--set", &set])
        .current_dir(&dir.0)
        .env_remove("KUBECONFIG")
        .env("HF_TOKEN", HF_CANARY)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = sim.kill();
    let _ = sim.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(dir.0.join("wd/results/latest/requests.csv")).unwrap();
    assert_eq!(csv.lines().count(), 21, "{csv}");
    let all = cp.kubectl(&["get", "all", "-A"]);
    assert!(!all.contains(&ns), "{all}");
    assert!(!cp.has_namespace(&ns));
}

#[test]
fn gpu_telemetry_comes_from_the_dcgm_exporter_on_the_engine_s_node_found_by_label() {
    let p = Project::new("real-gpu", Behaviour::default());
    // The GPU operator's exporter: a pod labelled as it labels it, on the node, in a namespace
    // of its own; its port-forwards reach a fake exporter whose GPU 0 belongs to the engine's
    // namespace and GPU 1 to someone else's.
    let (exporter, served) = crate::gpu::fake_dcgm_exporter(Some([&p.ns, "someone-else"]));
    let backend = exporter.trim_start_matches("http://").parse().ok();
    let ops = p.cp.namespace("gpu-operator", Behaviour { backend, ..Behaviour::default() });
    p.cp.kubectl(&["create", "namespace", &ops]);
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{ name: nvidia-dcgm-exporter-x1, namespace: {ops}, labels: {{ app: nvidia-dcgm-exporter }} }}\n\
         spec:\n  containers:\n  - name: exporter\n    image: nvcr.io/nvidia/k8s/dcgm-exporter:3.3.5-3.4.0-ubuntu22.04\n    ports: [{{ containerPort: 9400 }}]\n"
    );
    p.cp.kubectl_with(&["apply", "-f", "-"], &pod);
    p.cp.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/nvidia-dcgm-exporter-x1",
        "-n",
        &ops,
        "--timeout=60s",
    ]);
    let out =
        p.run(&["e2e", "-c", "k8s", "-w", "quick", "--workdir", "wd", "--set", "harness.gpu.every=0.2"]);
    p.cp.kubectl(&["delete", "namespace", &ops, "--wait=false"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(served.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the exporter was scraped");
    let wd = p.wd("wd");
    let log = std::fs::read_to_string(wd.join("setup/commands/10_load.log")).unwrap();
    assert!(log.contains(&format!("DCGM exporter pod {ops}/nvidia-dcgm-exporter-x1:9400")), "{log}");
    let csv = std::fs::read_to_string(wd.join("results/latest/gpu.csv")).unwrap();
    assert!(csv.contains(",node-a/0,utilization_pct,100\n"), "{csv}");
    assert!(!csv.contains(",node-a/1,"), "only the GPU of the engine's namespace: {csv}");
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("analysis/latest/stats.json")).unwrap()).unwrap();
    assert_eq!(stats["stages"][0]["gpu"]["gpus"], 1, "{}", stats["stages"][0]);
    assert!(p.left().is_empty(), "left: {:?}", p.left());
}

#[test]
fn a_router_stack_stands_up_replicas_and_a_router_whose_discovery_rbac_the_real_authorizer_grants() {
    // Each engine pod a simulator at a pod IP of its own; the router's pod the real vllm-router,
    // whose Kubernetes discovery watches this API server for the engine pods.
    let p = Project::new("real-router", Behaviour { sims: true, ..Behaviour::default() });
    p.deploy_scenario(
        "router",
        "{ method: router, replicas: 2, router: { policy: round_robin, args: [--request-timeout-secs, \"60\"] } }",
    );
    let out = p.run(&["standup", "-c", "router", "-w", "quick", "--workdir", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wd = p.wd("wd");
    let s = state(&wd);
    for step in ["01_preflight", "08_wait_ready", "09_router", "10_wait_router", "11_smoke_test"] {
        let status = s["steps"][step]["status"].as_str().unwrap_or_default();
        assert!(status == "done", "{step}: {}", s["steps"][step]);
    }
    let ns = p.ns.as_str();
    // Two engine pods from the real scheduler and ReplicaSet controller, one router.
    let engines = p.cp.kubectl(&["get", "pods", "-n", ns, "-l", "app.kubernetes.io/name=vllm", "-o", "name"]);
    assert_eq!(engines.lines().count(), 2, "{engines}");
    let router = p.cp.kubectl(&[
        "get",
        "deployments",
        "-n",
        ns,
        "-l",
        "app.kubernetes.io/name=vllm-router",
        "-o",
        "json",
    ]);
    let router: serde_json::Value = serde_json::from_str(&router).unwrap();
    let d = &router["items"][0];
    let name = d["metadata"]["name"].as_str().unwrap().to_string();
    let args: Vec<&str> = d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let engine = name.trim_end_matches("-router");
    for pair in [
        ["--selector", &format!("app.kubernetes.io/instance={engine}")],
        ["--service-discovery-namespace", ns],
        ["--service-discovery-port", "8000"],
        ["--policy", "round_robin"],
        ["--request-timeout-secs", "60"],
    ] {
        assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    assert_eq!(d["spec"]["template"]["spec"]["serviceAccountName"], name.as_str());
    // The router's service account may watch the engine's pods, and no more.
    let sa = format!("system:serviceaccount:{ns}:{name}");
    assert!(p.cp.can_i(&sa, "watch", "pods", ns) && p.cp.can_i(&sa, "list", "pods", ns));
    assert!(!p.cp.can_i(&sa, "delete", "pods", ns) && !p.cp.can_i(&sa, "get", "secrets", ns));
    // The load goes to the router's Service.
    let out = p.run(&["run", "--workdir", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        p.cp.kubelet_requests(ns).iter().any(|r| r.starts_with("GET /portForward/") && r.contains(&name)),
        "a port-forward to the router's pod"
    );
    // Each engine pod's /metrics, through a port-forward of its own, analysed per replica.
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("analysis/latest/stats.json")).unwrap()).unwrap();
    let replicas: Vec<&str> =
        stats["replicas"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    let pods: Vec<&str> = engines.lines().map(|l| l.trim_start_matches("pod/")).collect();
    let mut sorted = pods.clone();
    sorted.sort();
    assert_eq!(replicas, sorted, "{stats}");
    // The router found both engines by their labels (the smoke test waited for its /readiness
    // to count 2) and sent each its half: each pod's own counters.
    let served: Vec<f64> =
        stats["replicas"].as_array().unwrap().iter().map(|r| r["requests"].as_f64().unwrap()).collect();
    assert_eq!(served, [10.0, 10.0], "round robin over the discovered engines: {stats}");
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(p.left().is_empty(), "left: {:?}", p.left());
}

#[test]
fn the_load_through_a_services_port_forward_reaches_every_replica_and_each_is_scraped() {
    let p = Project::new("real-dp", Behaviour::default());
    p.write("scenarios/dp.yaml", &p.scenario_text("  replicas: 2\n"));
    let out = p.run(&["e2e", "-c", "dp", "-w", "quick", "--workdir", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The connections of the load went to both pods in turn, as a Service's proxy spreads them.
    let requests = p.cp.kubelet_requests(&p.ns);
    let pods: std::collections::BTreeSet<&str> = requests
        .iter()
        .filter(|r| r.starts_with("GET /portForward/") && r.contains("port=8000"))
        .filter_map(|r| r.split('/').nth(3).map(|p| p.split('?').next().unwrap_or(p)))
        .collect();
    assert_eq!(pods.len(), 2, "{requests:?}");
    // And each pod's /metrics was read on its own, so the analysis has one series per replica.
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.wd("wd").join("analysis/latest/stats.json")).unwrap())
            .unwrap();
    let replicas: std::collections::BTreeSet<&str> =
        stats["replicas"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(replicas, pods, "{stats}");
    assert!(p.left().is_empty(), "left: {:?}", p.left());
}

/// `scenarios/llmd.yaml`: two engines behind a Gateway of `class`, ready within `ready`.
fn llm_d(p: &Project, class: &str, ready: &str) {
    p.deploy_scenario("llmd", &format!("{{ method: llm-d, replicas: 2, gateway: {{ class: {class} }} }}"));
    let text = std::fs::read_to_string(p.wd("scenarios/llmd.yaml")).unwrap();
    p.write("scenarios/llmd.yaml", &text.replace("ready: 60s", &format!("ready: {ready}")));
}

/// What is left of kinds only the CRDs provide, in `ns`.
fn gateway_objects(p: &Project) -> String {
    p.cp.kubectl(&["get", "gateways,httproutes,inferencepools", "-n", &p.ns, "-o", "name"])
}

#[test]
fn an_llm_d_stack_stands_up_behind_a_gateway_whose_objects_the_real_api_server_validates() {
    // Each engine pod a simulator of its own; the gateway's pod the test gateway's data plane.
    let p = Project::new("real-llmd", Behaviour { sims: true, ..Behaviour::default() });
    p.cp.gateway_api();
    llm_d(&p, crate::cluster::gateway::CLASS, "60s");
    let out = p.run(&["standup", "-c", "llmd", "-w", "quick", "--workdir", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wd = p.wd("wd");
    let s = state(&wd);
    for step in
        ["01_preflight", "09_epp", "10_pool", "11_gateway", "12_wait_epp", "13_wait_gateway", "14_smoke_test"]
    {
        assert_eq!(s["steps"][step]["status"], "done", "{step}: {}", s["steps"][step]);
    }
    let ns = p.ns.as_str();
    // The pool, accepted by the real API server's schema (CEL rules included), selects exactly
    // the two engine pods, and names the picker's Service.
    let pools: serde_json::Value =
        serde_json::from_str(&p.cp.kubectl(&["get", "inferencepools", "-n", ns, "-o", "json"])).unwrap();
    let pool = &pools["items"][0];
    let selector = pool["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let terms: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect();
    let engines = p.cp.kubectl(&["get", "pods", "-n", ns, "-l", &terms.join(","), "-o", "name"]);
    assert_eq!(engines.lines().count(), 2, "{engines}");
    assert_eq!(pool["spec"]["targetPorts"][0]["number"], 8000);
    assert_eq!(pool["spec"]["endpointPickerRef"]["failureMode"], "FailOpen");
    let epp = pool["spec"]["endpointPickerRef"]["name"].as_str().unwrap().to_string();
    p.cp.kubectl(&["get", "service", "-n", ns, &epp]);
    // The picker's service account may read the pool and watch the pods, and no more.
    let sa = format!("system:serviceaccount:{ns}:{epp}");
    assert!(p.cp.can_i(&sa, "watch", "inferencepools.inference.networking.k8s.io", ns));
    assert!(p.cp.can_i(&sa, "list", "pods", ns));
    assert!(!p.cp.can_i(&sa, "delete", "pods", ns) && !p.cp.can_i(&sa, "get", "secrets", ns));
    let config =
        p.cp.kubectl(&["get", "configmap", "-n", ns, &epp, "-o", "jsonpath={.data.default-plugins\\.yaml}"]);
    assert!(
        config.contains("kind: EndpointPickerConfig") && config.contains("prefix-cache-scorer"),
        "{config}"
    );
    // `status` shows the picker and the gateway objects beside the engines.
    let shown = text(&p.run(&["status", "wd"]).stdout);
    for line in [
        format!("Deployment/{epp} in {ns}: 1/1 available"),
        "Accepted + Programmed: ready".to_string(),
        "Accepted + ResolvedRefs: ready".to_string(),
    ] {
        assert!(shown.contains(&line), "{line}: {shown}");
    }
    assert!(shown.contains("InferencePool/") && shown.contains("HTTPRoute/"), "{shown}");
    // The load goes to the gateway's Service (the controller's, not benchflow's).
    let out = p.run(&["run", "--workdir", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let gateway = p.cp.kubectl(&["get", "gateways", "-n", ns, "-o", "jsonpath={.items[0].metadata.name}"]);
    // To the gateway's pod, on the port its Service maps the listener's 80 to.
    assert!(
        p.cp.kubelet_requests(ns)
            .iter()
            .any(|r| r.starts_with(&format!("GET /portForward/{ns}/{gateway}-")) && r.contains("port=8080")),
        "a port-forward to the gateway's pod: {:?}",
        p.cp.kubelet_requests(ns)
    );
    assert_eq!(gateway_objects(&p).lines().count(), 3, "{}", gateway_objects(&p));
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("analysis/latest/stats.json")).unwrap()).unwrap();
    // The gateway sent the load to both pods of the pool (each one's own counters, scraped
    // through a port-forward of its own), and nowhere else.
    let replicas = stats["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2, "each engine pod scraped: {stats}");
    let served: Vec<f64> = replicas.iter().map(|r| r["requests"].as_f64().unwrap()).collect();
    assert!(served.iter().all(|n| *n >= 5.0), "the pool's pods share the load: {served:?}");
    assert_eq!(served.iter().sum::<f64>(), 20.0, "{served:?}");
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    assert_eq!(gateway_objects(&p), "");
    assert!(!p.cp.has_namespace(&p.ns), "namespace {} is still there", p.ns);
}

#[test]
fn an_llm_d_stack_without_its_gateway_class_is_refused_first_and_an_unprogrammed_gateway_fails_the_wait() {
    let p = Project::new("real-llmd-bad", Behaviour::default());
    p.cp.gateway_api();
    llm_d(&p, "no-such-class", "60s");
    let out = p.run(&["e2e", "-c", "llmd", "-w", "quick", "--workdir", "wd"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("no GatewayClass `no-such-class`") && err.contains(crate::cluster::gateway::CLASS),
        "{err}"
    );
    assert!(!p.cp.has_namespace(&p.ns), "nothing is created");
    // A class whose controller never runs: the Gateway stays unprogrammed; the wait says so
    // with the conditions the API server defaulted, within its timeout, and nothing is left.
    llm_d(&p, crate::cluster::gateway::IDLE_CLASS, "6s");
    let t0 = Instant::now();
    let out = p.run(&["e2e", "-c", "llmd", "-w", "quick", "--workdir", "wd2"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("13_wait_gateway") && err.contains("not ready within 6 s"), "{err}");
    assert!(err.contains("Programmed is Unknown (Pending: Waiting for controller)"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(60), "took {:?}", t0.elapsed());
    assert!(p.wd("wd2").join("setup/diagnostics/13_wait_gateway-conditions.txt").is_file());
    // A Gateway its controller refuses fails the wait once the refusal has stood 10 s, not at
    // the timeout, saying what the controller said.
    p.deploy_scenario(
        "llmd",
        &format!(
            "{{ method: llm-d, replicas: 2, gateway: {{ class: {}, port: 81 }} }}",
            crate::cluster::gateway::CLASS
        ),
    );
    let t0 = Instant::now();
    let out = p.run(&["e2e", "-c", "llmd", "-w", "quick", "--workdir", "wd3"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("refused by its controller for 10 s"), "{err}");
    assert!(
        err.contains(
            "Accepted is False (UnsupportedValue: listener port 81: this controller serves port 80 only)"
        ),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(50), "not at the 60-s timeout: {:?}", t0.elapsed());
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    assert!(!p.cp.has_namespace(&p.ns), "namespace {} is still there", p.ns);
}

#[test]
fn the_production_stack_router_stands_up_from_its_image_with_its_own_flags_and_rbac() {
    let p = Project::new("real-pstack", Behaviour::default());
    p.deploy_scenario(
        "pstack",
        "{ method: router, replicas: 2, router: { kind: production-stack, policy: cache_aware, image: lmcache/lmstack-router:v0.1.7 } }",
    );
    let out = p.run(&["e2e", "-c", "pstack", "-w", "quick", "--workdir", "wd"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Its /readiness does not exist: the smoke test says it cannot count the engines.
    assert!(err.contains("does not say how many engines it sees"), "{err}");
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.wd("wd").join("plan/plan.json")).unwrap()).unwrap();
    let step = plan["steps"].as_array().unwrap().iter().find(|s| s["id"] == "09_router").unwrap();
    let manifests = step["with"]["manifests"].as_array().unwrap();
    let d = manifests.iter().find(|m| m["kind"] == "Deployment").unwrap();
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "lmcache/lmstack-router:v0.1.7");
    assert!(c.get("command").is_none(), "the image's entrypoint: {c}");
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let engine = d["metadata"]["name"].as_str().unwrap().trim_end_matches("-router").to_string();
    for pair in [
        ["--service-discovery", "k8s"],
        ["--k8s-namespace", p.ns.as_str()],
        ["--k8s-label-selector", &format!("app.kubernetes.io/instance={engine}")],
        ["--routing-logic", "prefixaware"],
    ] {
        assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    // Its Role, as the chart's, grants patch on pods: the real API server let benchflow create
    // it (the admin holds that right), and the load went through the router's Service.
    let role = manifests.iter().find(|m| m["kind"] == "Role").unwrap();
    assert_eq!(role["rules"][0]["verbs"], serde_json::json!(["get", "list", "watch", "patch"]));
    assert!(
        p.cp.kubelet_requests(&p.ns)
            .iter()
            .any(|r| r.starts_with(&format!("GET /portForward/{}/{engine}-router-", p.ns))),
        "{:?}",
        p.cp.kubelet_requests(&p.ns)
    );
    assert!(p.left().is_empty(), "left: {:?}", p.left());
}

/// Five prompts of 2 to 10 words, each asking for one token more than its length.
const PROMPTS: &str = "{\"prompt\": \"the of\", \"max_tokens\": 3}\n{\"prompt\": \"the of and to\", \"max_tokens\": 5}\n\
{\"prompt\": \"the of and to in is\", \"max_tokens\": 7}\n{\"prompt\": \"the of and to in is for on\", \"max_tokens\": 9}\n\
{\"prompt\": \"the of and to in is for on it as\", \"max_tokens\": 11}\n";

#[test]
fn an_external_tool_runs_in_harness_pods_with_a_prompt_file_and_its_native_outputs_come_back() {
    let p = Project::new("real-tool-job", Behaviour::default());
    p.write(
        "harnesses/pods.yaml",
        "kind: inference-perf\nplacement: cluster\nparallelism: 2\nimage: ghcr.io/benchflow/benchflow:test\n",
    );
    p.write("workloads/prompts.jsonl", PROMPTS);
    p.write(
        "workloads/file.yaml",
        "seed: 3\napi: { endpoint: completions }\ndataset: { jsonl: { path: prompts.jsonl } }\nwarmup: { requests: 0 }\n\
         stages:\n  - { concurrency: 2, requests: 10 }\n",
    );
    // Nothing of inference-perf is needed on this machine: the pods install it (or have it).
    let out = p
        .cmd(&["e2e", "-c", "k8s", "-H", "pods", "-w", "file", "--workdir", "wd"])
        .env("BENCHFLOW_TOOLS_DIR", p.wd("no-tools-here"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wd = p.wd("wd");
    let summary = state(&wd)["steps"]["10_load"]["summary"].as_str().unwrap().to_string();
    assert!(summary.starts_with("10 requests (0 failed) from 2 pods"), "{summary}");
    // The prompt file travelled in the ConfigMap, and each pod ran the tool with it: every
    // request asked for its prompt's length + 1 tokens, and got them.
    let job = std::fs::read_to_string(wd.join("plan/steps/10_load.job.json")).unwrap();
    assert!(
        job.contains("dataset.jsonl") && job.contains("-H /config/harness.yaml --install-missing"),
        "{job}"
    );
    let csv = std::fs::read_to_string(wd.join("results/latest/requests.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 10, "{csv}");
    for r in &rows {
        let (i, o): (u32, u32) =
            (r[col("prompt_tokens")].parse().unwrap(), r[col("output_tokens")].parse().unwrap());
        assert_eq!(o, i + 1, "{r:?}");
    }
    // Each pod's tool outputs came back with its records, on the pod's clock mapped to the run's.
    for i in 0..2 {
        let native = wd.join(format!("results/latest/shard-{i}/results/native/stage-1"));
        assert!(
            native.join("command.sh").is_file() && native.join("stdout.log").is_file(),
            "{}",
            native.display()
        );
        let tool = std::fs::read_to_string(native.join("command.sh")).unwrap();
        assert!(tool.contains("inference-perf"), "{tool}");
    }
    let sent: Vec<f64> = rows.iter().map(|r| r[col("sent_us")].parse().unwrap()).collect();
    assert!(sent.iter().all(|s| (0.0..120e6).contains(s)), "sent times on the run's axis: {sent:?}");
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wd.join("analysis/latest/stats.json")).unwrap()).unwrap();
    assert_eq!(stats["stages"][0]["completed"], 10);
    let report = std::fs::read_to_string(wd.join("analysis/latest/report.html")).unwrap();
    assert!(report.contains("inference-perf "), "the report names the load generator");
    assert!(p.left().is_empty(), "left: {:?}", p.left());
}

/// SIGKILL while the gateway is awaited: `teardown DIR` deletes the Gateway, route and pool from
/// the record (their kinds discovered again); with the work directory lost, `gc` finds them by
/// label.
#[test]
fn an_llm_d_stack_killed_while_waiting_is_removed_by_teardown_or_gc_gateway_objects_included() {
    let p = Project::new("real-llmd-kill", Behaviour::default());
    p.cp.gateway_api();
    llm_d(&p, crate::cluster::gateway::IDLE_CLASS, "120s");
    let killed_while_waiting = |wd: &str| {
        let mut child = p
            .cmd(&["standup", "-c", "llmd", "-w", "quick", "--workdir", wd])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let dir = p.wd(wd);
        wait_for("the gateway wait", Duration::from_secs(60), || {
            std::fs::read_to_string(dir.join("state.json")).is_ok_and(|t| {
                t.contains("\"13_wait_gateway\"")
                    && state(&dir)["steps"]["13_wait_gateway"]["status"] == "running"
            })
        });
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(gateway_objects(&p).lines().count(), 3, "{}", gateway_objects(&p));
    };
    killed_while_waiting("wd");
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(gateway_objects(&p), "");
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    assert!(!p.cp.has_namespace(&p.ns), "namespace {} is still there", p.ns);
    killed_while_waiting("wd2");
    std::fs::remove_dir_all(p.wd("wd2")).unwrap();
    let out = p.run(&["gc", "--namespace", &p.ns, "--dry-run"]);
    let listed = text(&out.stdout) + &text(&out.stderr);
    for kind in ["HTTPRoute/", "Gateway/", "InferencePool/"] {
        assert!(listed.contains(kind), "{kind}: {listed}");
    }
    let out = p.run(&["gc", "--namespace", &p.ns]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(gateway_objects(&p), "");
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    wait_for("namespace gone", Duration::from_secs(30), || !p.cp.has_namespace(&p.ns));
}

/// SIGKILL while harness pods send the load: the Job and its ConfigMap (made by the load step,
/// not in the standup's record) go with `teardown DIR`, the pods' processes with them.
#[test]
fn killed_while_harness_pods_run_the_job_goes_with_teardown() {
    let p = Project::new("real-job-kill", Behaviour::default());
    p.write(
        "harnesses/pods.yaml",
        "kind: builtin\nplacement: cluster\nparallelism: 2\nimage: ghcr.io/benchflow/benchflow:test\n",
    );
    p.write(
        "workloads/long.yaml",
        "dataset: { random: { input_len: 16, output_len: 16 } }\nstages: [ { concurrency: 2, duration: 60s } ]\n",
    );
    let mut child = p
        .cmd(&["e2e", "-c", "k8s", "-H", "pods", "-w", "long", "--workdir", "wd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("harness pods running", Duration::from_secs(60), || {
        p.left().iter().filter(|l| l.contains("Pod/") && l.contains("-load-")).count() == 2
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(p.left().iter().any(|l| l.contains("Job/")), "left: {:?}", p.left());
    let out = p.run(&["teardown", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(p.left().is_empty(), "left: {:?}", p.left());
    assert!(!p.cp.has_namespace(&p.ns), "namespace {} is still there", p.ns);
    // The pods' processes went with them.
    let workloads = format!("benchflow-node-{}-{}-", std::process::id(), p.ns);
    wait_for("the harness pods' processes gone", Duration::from_secs(10), || {
        let out = Command::new("pgrep").args(["-f", &workloads]).output().unwrap();
        out.stdout.is_empty()
    });
}
