//! TEST SUPPORT ONLY: a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler of Kubernetes 1.33, built from their Go modules by
//! `scripts/control-plane`), one per test process, shared by the tests, each in namespaces of its
//! own; and the node agent that plays the kubelet for it ([`node`]).
//!
//! The first test that asks starts it (building the binaries on first use, cached outside the
//! repository); it stops by itself when the test process ends (the script's `--watch`).

pub mod gateway;
mod node;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, OnceLock},
    time::Duration,
};

pub use node::Pods;

/// The control plane and its node.
pub struct ControlPlane {
    /// The admin's kubeconfig (system:masters).
    pub kubeconfig: PathBuf,
    /// The kubeconfig of user `limited`, who has no rights but those a test grants.
    pub limited: PathBuf,
    kubectl: PathBuf,
    node: Arc<node::Shared>,
}

/// How the pods of one namespace behave, and where their ports lead.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub pods: Pods,
    /// Where port-forwards to the namespace's pods connect, and where its harness pods send load.
    pub backend: Option<SocketAddr>,
    /// From Running to Ready.
    pub ready_after: Duration,
    /// Each engine pod (`app.kubernetes.io/name=vllm`) gets a simulator of its own, which its
    /// port-forwards reach, instead of the namespace's backend.
    pub sims: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour { pods: Pods::Ready, backend: None, ready_after: Duration::from_millis(300), sims: false }
    }
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();
static GATEWAY_API: OnceLock<()> = OnceLock::new();

impl ControlPlane {
    /// The test process's control plane, started on first use.
    pub fn get() -> &'static ControlPlane {
        SHARED.get_or_init(ControlPlane::start)
    }

    fn start() -> ControlPlane {
        let dir = std::env::temp_dir().join(format!("benchflow-control-plane-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/control-plane");
        let out = Command::new(&script)
            .arg("up")
            .arg(&dir)
            .args(["--watch", &std::process::id().to_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "the test control plane did not start ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let env: HashMap<String, String> = std::fs::read_to_string(dir.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let kubeconfig = PathBuf::from(&env["KUBECONFIG"]);
        let node = node::start(&kubeconfig);
        ControlPlane {
            kubeconfig,
            limited: PathBuf::from(&env["KUBECONFIG_LIMITED"]),
            kubectl: PathBuf::from(&env["KUBECTL"]),
            node,
        }
    }

    /// The Gateway API and Inference Extension CRDs, installed on first use, with the test
    /// gateway controller running ([`gateway`]).
    pub fn gateway_api(&self) {
        GATEWAY_API
            .get_or_init(|| gateway::install(|args, input| self.kubectl_with(args, input), &self.kubeconfig));
    }

    /// The admin's bearer token (a secret: it must never be written by benchflow).
    pub fn admin_token(&self) -> String {
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let line = text.lines().find(|l| l.contains("token:")).unwrap();
        line.split('"').nth(1).unwrap().to_string()
    }

    /// A namespace name of this test's own (`tag` plus a number), its pods behaving as told.
    /// The namespace is not created: benchflow does that, or the test.
    pub fn namespace(&self, tag: &str, behaviour: Behaviour) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!("{tag}-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        self.node.behaviours.lock().unwrap().insert(name.clone(), behaviour);
        name
    }

    /// Runs the real kubectl as the admin; its stdout, or a panic with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_with(args, "")
    }

    /// Runs the real kubectl as the admin with `input` on its stdin (`-f -`).
    pub fn kubectl_with(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// What the real authorizer answers for `user` (`kubectl auth can-i VERB WHAT -n NS --as USER`).
    pub fn can_i(&self, user: &str, verb: &str, what: &str, ns: &str) -> bool {
        let out = Command::new(&self.kubectl)
            .args(["auth", "can-i", verb, what, "-n", ns, "--as", user])
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    }

    /// Everything carrying the run label, anywhere, as kubectl lists it: `namespace kind/name`.
    pub fn labelled(&self) -> Vec<String> {
        let kinds = "deployments,replicasets,pods,services,secrets,configmaps,persistentvolumeclaims,jobs,serviceaccounts,roles,rolebindings";
        let template = r#"{range .items[*]}{.metadata.namespace} {.kind}/{.metadata.name}{"\n"}{end}"#;
        self.kubectl(&["get", kinds, "-A", "-l", "benchflow.io/run", "-o", &format!("jsonpath={template}")])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// What the API server asked of the node's kubelet endpoint about namespace `ns`.
    pub fn kubelet_requests(&self, ns: &str) -> Vec<String> {
        let needle = format!("/{ns}/");
        self.node.requests.lock().unwrap().iter().filter(|r| r.contains(&needle)).cloned().collect()
    }

    /// Whether the namespace exists (in any phase).
    pub fn has_namespace(&self, ns: &str) -> bool {
        self.kubectl(&["get", "namespaces", "-o", "name"]).lines().any(|l| l == format!("namespace/{ns}"))
    }
}
