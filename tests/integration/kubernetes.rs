//! The Kubernetes platform against the stand-in API server, for what a real one cannot do on
//! demand: injected 429/500s, cut watches, slow writes (interrupts during an apply); and the
//! rendered manifests as snapshots. Everything else runs against the real control plane
//! (`kubernetes_real.rs`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    loadgen::TempDir,
    standin::{Config, PodMode, StandIn},
    support::{benchflow, spawn_sim, state, text, wait_for},
};

const HF_CANARY: &str = "hf_canary_k8s_0b1c2d";
const KUBE_CANARY: &str = "kube-token-canary-9f8e7d";

struct Cluster {
    standin: StandIn,
    sim: std::process::Child,
    dir: TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.sim.kill();
        let _ = self.sim.wait();
    }
}

const WORKLOAD: &str = "seed: 1\ndataset: { random: { input_len: 32, output_len: 8 } }\nstages:\n  - { rate: 40, arrival: constant, requests: 20 }\n";

fn scenario(extra: &str) -> String {
    format!(
        "platform: kubernetes\nmodel: tiny-sim\nengine: {{ kind: vllm, args: [--max-model-len, \"4096\"], env: {{ HF_TOKEN: env:HF_TOKEN }} }}\n\
         kubernetes:\n  namespace: bench\n  image: vllm/vllm-openai:v0.11.0\n  gpus: 1\n  gpu_product: NVIDIA-H100-80GB-HBM3\n{extra}\
         timeouts: {{ ready: 20s, smoke: 10s }}\n"
    )
}

impl Cluster {
    fn new(tag: &str, config: Config) -> Cluster {
        let standin = StandIn::start(config);
        let (sim, url) = spawn_sim(&["--profile", "tiny/cpu"]);
        let addr = url.trim_start_matches("http://").parse().unwrap();
        *standin.state.backend.lock().unwrap() = Some(addr);
        let dir = TempDir::new(tag);
        standin.kubeconfig(&dir.0.join("kubeconfig"), KUBE_CANARY);
        std::fs::create_dir_all(dir.0.join("scenarios")).unwrap();
        std::fs::create_dir_all(dir.0.join("workloads")).unwrap();
        std::fs::write(dir.0.join("workloads/quick.yaml"), WORKLOAD).unwrap();
        Cluster { standin, sim, dir }
    }

    fn scenario(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.dir.0.join(format!("scenarios/{name}.yaml")), text).unwrap();
        self
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = benchflow();
        c.args(args)
            .current_dir(&self.dir.0)
            .env("KUBECONFIG", self.dir.0.join("kubeconfig"))
            .env("HF_TOKEN", HF_CANARY)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn wd(&self) -> PathBuf {
        self.dir.0.join("wd")
    }

    /// Objects carrying the run label, anywhere.
    fn labelled(&self) -> Vec<String> {
        self.standin.state.labelled("benchflow.io/run")
    }
}

#[test]
fn transient_api_errors_and_dropped_watches_are_survived() {
    let config = Config {
        fail_nth: vec![
            ("PATCH".into(), "/apis/apps/v1".into(), 1, 429),
            ("PATCH".into(), "/api/v1/namespaces/bench/secrets".into(), 1, 500),
        ],
        cut_watch_after: Some(0),
        // Ready well after the wait starts, however slow the machine: the wait must watch
        // (a pod ready at the first list needs no watch, and the cut would go untested).
        pod_ready: std::time::Duration::from_secs(2),
        ..Config::default()
    };
    let c = Cluster::new("k8s-flaky", config);
    c.scenario("k8s", &scenario(""));
    let out = c.run(&["e2e", "-c", "k8s", "-w", "quick", "--workdir", "wd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(c.labelled().is_empty());
    // The faults did happen: each failed request was sent again, and the cut watch re-opened.
    let requests = c.standin.requests();
    let count = |p: &str| requests.iter().filter(|r| r.starts_with(p)).count();
    assert!(count("PATCH /apis/apps/v1/namespaces/bench/deployments/") >= 2, "{requests:?}");
    assert!(count("PATCH /api/v1/namespaces/bench/secrets/") >= 2, "{requests:?}");
    assert!(requests.iter().filter(|r| r.contains("watch=true")).count() >= 3, "{requests:?}");
}

#[test]
fn rendered_manifests_match_their_snapshots() {
    let dir = TempDir::new("k8s-snap");
    std::fs::create_dir_all(dir.0.join("scenarios")).unwrap();
    std::fs::create_dir_all(dir.0.join("custom")).unwrap();
    std::fs::write(
        dir.0.join("custom/service.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ k8s.name }}\n  namespace: {{ kubernetes.namespace }}\n  annotations: { team: {{ vars.team }} }\nspec:\n  type: NodePort\n  selector: {{ k8s.selector | tojson }}\n  ports: [ { port: 80, targetPort: {{ kubernetes.port }} } ]\n",
    )
    .unwrap();
    let cases = [
        ("gpu1-new-pvc", scenario("")),
        (
            "gpu4-existing-pvc",
            scenario("  pvc: { name: shared-models }\n  download: true\n").replace("gpus: 1", "gpus: 4"),
        ),
        (
            "custom-template",
            scenario(&format!("  templates: {}\n", dir.0.join("custom").display()))
                + "vars: { team: perf }\n",
        ),
        (
            "router-2",
            scenario("") + "deploy: { method: router, replicas: 2, router: { policy: consistent_hash } }\n",
        ),
        (
            "production-stack-2",
            scenario("")
                + "deploy: { method: router, replicas: 2, router: { kind: production-stack, policy: consistent_hash } }\n",
        ),
        (
            "llm-d-2",
            scenario("")
                + "deploy: { method: llm-d, replicas: 2, gateway: { class: kgateway, scorers: { queue-scorer: 1, prefix-cache-scorer: 4 } } }\n",
        ),
    ];
    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/snapshots");
    for (name, text) in cases {
        std::fs::write(dir.0.join(format!("scenarios/{name}.yaml")), text).unwrap();
        let out = benchflow()
            .args(["plan", "-c", name, "-o", "json", "--workdir", "runs/snapshot"])
            .current_dir(&dir.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut manifests = Vec::new();
        for step in plan["steps"].as_array().unwrap() {
            if step["kind"] == "apply" && step["enabled"] == true {
                for m in step["with"]["manifests"].as_array().unwrap() {
                    benchflow::check_manifest(m).unwrap_or_else(|e| panic!("{name}: {e}"));
                    // Every object carries the run label; GPUs are asked for as much as limited;
                    // the token is only a reference.
                    let what = format!("{name}: {} {}", m["kind"], m["metadata"]["name"]);
                    assert!(m["metadata"]["labels"]["benchflow.io/run"].is_string(), "{what}");
                    for c in m
                        .pointer("/spec/template/spec/containers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let r = &c["resources"];
                        assert_eq!(r["requests"]["nvidia.com/gpu"], r["limits"]["nvidia.com/gpu"], "{what}");
                    }
                    if m["kind"] == "Secret" {
                        assert_eq!(m["stringData"]["HF_TOKEN"], "env:HF_TOKEN", "{what}");
                    }
                    manifests.push(m.clone());
                }
            }
        }
        let got = serde_json::to_string_pretty(&manifests).unwrap() + "\n";
        let path = snapshots.join(format!("{name}.json"));
        if std::env::var_os("BENCHFLOW_UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(&snapshots).unwrap();
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            want == got,
            "{name}: the rendered manifests differ from {} (BENCHFLOW_UPDATE_SNAPSHOTS=1 refreshes):\n{got}",
            path.display()
        );
    }
}

/// Against a real cluster: set BENCHFLOW_TEST_KUBECONFIG (and optionally
/// BENCHFLOW_TEST_SCENARIO, a scenario file for that cluster) and run
/// `cargo test --test integration real_cluster -- --ignored`. Fails, never skips, when asked to
/// run without a cluster.
#[test]
#[ignore = "needs a real Kubernetes cluster with GPUs: see the comment"]
fn real_cluster_e2e() {
    let kubeconfig = std::env::var("BENCHFLOW_TEST_KUBECONFIG")
        .expect("BENCHFLOW_TEST_KUBECONFIG must name a kubeconfig for a cluster with GPUs");
    let scenario =
        std::env::var("BENCHFLOW_TEST_SCENARIO").unwrap_or_else(|_| "kubernetes-standalone".into());
    let dir = TempDir::new("k8s-real");
    let out = benchflow()
        .args(["e2e", "-c", &scenario, "--workdir", "wd"])
        .current_dir(&dir.0)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.0.join("wd/analysis/latest/report.html").is_file());
}

#[test]
fn sigint_during_apply_wait_or_run_leaves_nothing_and_keeps_the_existing_claim() {
    const LONG: &str = "dataset: { random: { input_len: 16, output_len: 400 } }\nstages: [ { concurrency: 2, duration: 60s } ]\n";
    let points: [(&str, Config); 3] = [
        ("apply", Config { write_delay: Duration::from_millis(400), ..Config::default() }),
        ("wait", Config { pod_mode: PodMode::NeverReady, ..Config::default() }),
        ("run", Config::default()),
    ];
    for (point, config) in points {
        let c = Cluster::new("k8s-int3", config);
        let st = &c.standin.state;
        st.put("namespaces", "", json!({"metadata": {"name": "team"}, "status": {"phase": "Active"}}));
        st.put("persistentvolumeclaims", "team", json!({"metadata": {"name": "models"}, "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Ti"}}}, "status": {"phase": "Bound"}}));
        c.scenario(
            "team",
            &scenario("  pvc: { name: models }\n")
                .replace("namespace: bench", "namespace: team")
                .replace("ready: 20s", "ready: 60s"),
        );
        std::fs::write(c.dir.0.join("workloads/long.yaml"), LONG).unwrap();
        let child = c
            .cmd(&["e2e", "-c", "team", "-w", "long", "--workdir", "wd"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let wd = c.wd();
        match point {
            "apply" => wait_for("an apply under way", Duration::from_secs(30), || {
                c.standin
                    .requests()
                    .iter()
                    .any(|r| r.starts_with("PATCH /apis/apps/v1/namespaces/team/deployments/"))
            }),
            "wait" => wait_for("the readiness wait", Duration::from_secs(30), || {
                std::fs::read_to_string(wd.join("state.json")).is_ok_and(|t| {
                    t.contains("\"08_wait_ready\"")
                        && state(&wd)["steps"]["08_wait_ready"]["status"] == "running"
                })
            }),
            _ => wait_for("records", Duration::from_secs(60), || {
                std::fs::read_to_string(wd.join("results/latest/requests.csv"))
                    .is_ok_and(|t| t.lines().count() > 1)
            }),
        }
        assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(5), "{point}: {}", text(&out.stderr));
        assert!(c.labelled().is_empty(), "{point}: left {:?}", c.labelled());
        assert!(
            st.get("persistentvolumeclaims", "team", "models").is_some(),
            "{point}: the claim must be kept"
        );
        assert!(st.get("namespaces", "", "team").is_some(), "{point}: the namespace must be kept");
        assert!(!state(&wd)["interrupts"].as_array().unwrap().is_empty(), "{point}");
        let step = match point {
            // Deployment applied, Service not: the step rolls back what it created.
            "apply" => "07_deploy",
            "wait" => "08_wait_ready",
            _ => "10_load",
        };
        assert_eq!(
            state(&wd)["steps"][step]["status"],
            "cancelled",
            "{point}: the interrupt hit {step}: {}",
            text(&out.stderr)
        );
    }
}

/// The stand-in answers like the real API server where the tool depends on it.
#[test]
fn the_standin_is_strict() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    let standin = StandIn::start(Config::default());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = kube::Client::try_from(kube::Config::new(standin.url.parse().unwrap())).unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "a"}, "data": {"k": "v"}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        let code = |e: kube::Error| match e {
            kube::Error::Api(s) => s.code,
            other => panic!("{other}"),
        };
        assert_eq!(code(cms.create(&PostParams::default(), &cm).await.unwrap_err()), 409);
        let bad: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "Bad_Name"}})).unwrap();
        assert_eq!(code(cms.create(&PostParams::default(), &bad).await.unwrap_err()), 422);
        let apply = Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "w"}}),
        );
        assert_eq!(
            code(cms.patch("a", &PatchParams::default(), &apply).await.unwrap_err()),
            422,
            "fieldManager is required"
        );
        let got = cms.patch("a", &PatchParams::apply("benchflow"), &apply).await.unwrap();
        assert_eq!(got.data.unwrap()["k"], "w");
        let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
        assert_eq!(code(missing.get("a").await.unwrap_err()), 404);
        let list = cms.list(&kube::api::ListParams::default().fields("metadata.name=a")).await.unwrap();
        assert_eq!(list.items.len(), 1);
        assert_eq!(
            code(cms.list(&kube::api::ListParams::default().fields("spec.x=1")).await.unwrap_err()),
            400
        );
    });
    assert!(standin.requests().iter().any(|r| r.contains("fieldManager=benchflow")));
}

#[test]
fn an_llm_d_stack_on_a_cluster_without_the_gateway_crds_is_refused_before_anything_is_created() {
    let c = Cluster::new("k8s-no-crds", Config::default());
    c.scenario("llmd", &(scenario("") + "deploy: { method: llm-d, replicas: 2 }\n"));
    let out = c.run(&["e2e", "-c", "llmd", "-w", "quick", "--workdir", "wd"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    for needle in [
        "cannot run an llm-d stack",
        "does not serve `gateway.networking.k8s.io/v1`, so it has no Gateway",
        "no HTTPRoute",
        "does not serve `inference.networking.k8s.io/v1`, so it has no InferencePool",
        "Gateway API Inference Extension CRDs",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // Asked of API discovery, before any object was written.
    let requests = c.standin.requests();
    assert!(requests.iter().any(|r| r.starts_with("GET /apis/gateway.networking.k8s.io/v1")), "{requests:?}");
    assert!(
        !requests.iter().any(|r| r.starts_with("PATCH ") || r.starts_with("POST /api/v1/namespaces")),
        "{requests:?}"
    );
    assert!(c.labelled().is_empty());
}
