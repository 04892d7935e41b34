//! TEST SUPPORT ONLY: the node agent, playing the kubelet (and a volume provisioner) for the
//! real control plane, as a client of its API server like a kubelet is:
//!
//! * registers node `benchflow-node` (8 `nvidia.com/gpu` of product NVIDIA-H100-80GB-HBM3,
//!   InternalIP 127.0.0.1, its kubelet port), Ready, untainted; the real scheduler places pods;
//! * pods bound to it run as their namespace's [`Behaviour`](super::Behaviour) says: Ready (or
//!   crash-looping, failing to pull, never ready, with the kubelet's events); pods of Jobs whose
//!   image is benchflow's run for real as local processes (their ConfigMap volumes become
//!   directories, their endpoint the namespace's backend), then Succeed or Fail; a pod being
//!   deleted is removed at once (its process killed);
//! * serves the kubelet's endpoint over TLS: `portForward` (WebSocket, bridged to the pod's own
//!   backend, else the namespace's) and `containerLogs`, which the API server proxies to it;
//! * gives a pod its own backend: when the namespace asks for it, a pod IP of its own on
//!   loopback (127.0.0.N) and a simulator there per engine pod, and for a vLLM router's pod the
//!   real `vllm-router` run with the pod's arguments (its Kubernetes discovery watches this API
//!   server and reaches the engines at their pod IPs); for a Gateway's pod the test gateway's
//!   data plane ([`super::gateway::data_plane`]). Such a pod is Ready once its backend accepts
//!   connections;
//! * binds each pending PersistentVolumeClaim to a new hostPath volume, and removes the volume
//!   with its claim.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    extract::{Path as UrlPath, Query, State, ws::WebSocketUpgrade},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};

use super::Behaviour;

pub const NODE: &str = "benchflow-node";

/// How a namespace's (non-Job) pods behave.
#[derive(Debug, Clone, PartialEq)]
pub enum Pods {
    /// Running, then Ready after `ready_after`.
    Ready,
    /// Running, never Ready.
    NeverReady,
    CrashLoop,
    ImagePull,
}

pub struct Shared {
    /// The admin's kubeconfig (what a router run for a pod uses to watch pods).
    kubeconfig: std::path::PathBuf,
    pub behaviours: Mutex<HashMap<String, Behaviour>>,
    /// Pods with a backend of their own: `(namespace, pod)` → where their port-forwards go.
    pub pod_backends: Mutex<HashMap<(String, String), std::net::SocketAddr>>,
    /// What pods printed (harness pods run for real): `(namespace, pod)` → text.
    logs: Mutex<HashMap<(String, String), String>>,
    /// What the API server asked of the kubelet endpoint: `METHOD /path?query`.
    pub requests: Mutex<Vec<String>>,
}

impl Shared {
    fn behaviour(&self, ns: &str) -> Behaviour {
        self.behaviours.lock().unwrap().get(ns).cloned().unwrap_or_default()
    }
}

/// Starts the agent on a thread of its own; returns once the node is registered and Ready.
pub fn start(kubeconfig: &Path) -> Arc<Shared> {
    let shared = Arc::new(Shared {
        kubeconfig: kubeconfig.to_path_buf(),
        behaviours: Mutex::default(),
        pod_backends: Mutex::default(),
        logs: Mutex::default(),
        requests: Mutex::default(),
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let (sh, kubeconfig) = (shared.clone(), kubeconfig.to_path_buf());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let config = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await.unwrap();
            let client = Client::try_from(config).unwrap();
            let port = serve_kubelet(sh.clone()).await;
            register(&client, port).await;
            tokio::spawn(volumes(client.clone()));
            tx.send(()).unwrap();
            pods(client, sh).await;
        });
    });
    rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the node agent did not register its node");
    shared
}

async fn register(client: &Client, port: u16) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = serde_json::from_value(json!({
        "metadata": {"name": NODE, "labels": {
            "kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let resources = json!({"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti", "nvidia.com/gpu": "8"});
    let status = json!({"status": {
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "the benchflow test node agent is ready"}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}
    }});
    nodes.patch_status(NODE, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    // The admission plugin taints a new node not-ready; the node lifecycle controller (not run:
    // nothing here sends heartbeats) would lift it.
    nodes
        .patch(NODE, &PatchParams::default(), &Patch::Merge(json!({"spec": {"taints": null}})))
        .await
        .unwrap();
}

/// The pods bound to the node: started once each, removed when deleted.
async fn pods(client: Client, sh: Arc<Shared>) {
    let api: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={NODE}"));
    let mut stream = watcher(api, config).default_backoff().applied_objects().boxed();
    let mut started = HashSet::new();
    let mut running: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    let mut deleting = HashSet::new();
    loop {
        let pod = match stream.try_next().await {
            Ok(Some(pod)) => pod,
            Ok(None) => return,
            Err(_) => continue,
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            if deleting.insert(uid.clone()) {
                if let Some(task) = running.remove(&uid) {
                    task.abort();
                }
                sh.pod_backends.lock().unwrap().remove(&(ns.clone(), name.clone()));
                tokio::spawn(async move {
                    let _ = pods
                        .delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
                        .await;
                });
            }
            continue;
        }
        let finished = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if finished || !started.insert(uid.clone()) {
            continue;
        }
        let (client, sh) = (client.clone(), sh.clone());
        let task = tokio::spawn(async move { run_pod(&client, &sh, pods, pod).await });
        running.insert(uid, task.abort_handle());
    }
}

async fn run_pod(client: &Client, sh: &Arc<Shared>, pods: Api<Pod>, pod: Pod) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = serde_json::to_value(pod.spec.as_ref()).unwrap();
    let container = spec["containers"][0]["name"].as_str().unwrap_or("main").to_string();
    let image = spec["containers"][0]["image"].as_str().unwrap_or("").to_string();
    let behaviour = sh.behaviour(&ns);
    let of_job = pod.metadata.owner_references.iter().flatten().any(|o| o.kind == "Job");
    let app = pod.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/name")).cloned();
    let own_ip = behaviour.sims && matches!(app.as_deref(), Some("vllm" | "vllm-router"));
    let ip = if own_ip { pod_ip() } else { "127.0.0.1".to_string() };
    let status = |phase: &str, ready: bool, state: Value| {
        json!({"status": {
            "phase": phase, "hostIP": "127.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": if ready { "True" } else { "False" }},
                {"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{"name": container, "image": image, "imageID": "", "ready": ready,
                                   "restartCount": if state.get("waiting").is_some() { 3 } else { 0 },
                                   "started": state.get("running").is_some(), "state": state}]
        }})
    };
    let set = |s: Value| {
        let pods = pods.clone();
        let name = name.clone();
        async move { pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&s)).await.map(|_| ()) }
    };
    if of_job {
        let _ = set(status("Running", true, json!({"running": {}}))).await;
        let ok = if image.contains("benchflow") {
            run_for_real(client, sh, &ns, &name, &pod, &spec, &behaviour).await
        } else {
            true
        };
        let code = if ok { 0 } else { 1 };
        let phase = if ok { "Succeeded" } else { "Failed" };
        let reason = if ok { "Completed" } else { "Error" };
        let _ = set(status(phase, false, json!({"terminated": {"exitCode": code, "reason": reason}}))).await;
        return;
    }
    match behaviour.pods {
        Pods::ImagePull => {
            let waiting = json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{image}\"")}});
            let _ = set(status("Pending", false, waiting)).await;
            event(client, &ns, &name, "Failed", &format!("Failed to pull image \"{image}\": not found"))
                .await;
        }
        Pods::CrashLoop => {
            let waiting = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}});
            let _ = set(status("Running", false, waiting)).await;
            event(client, &ns, &name, "BackOff", "Back-off restarting failed container").await;
        }
        Pods::NeverReady => {
            let _ = set(status("Running", false, json!({"running": {}}))).await;
        }
        Pods::Ready => {
            let _ = set(status("Running", false, json!({"running": {}}))).await;
            let own = own_backend(client, sh, &ns, &name, &pod, &spec, &ip).await;
            tokio::time::sleep(behaviour.ready_after).await;
            let _ = set(status("Running", true, json!({"running": {}}))).await;
            if own.is_some() {
                // Held until the pod is deleted (this task aborted): then the backend stops.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What keeps a pod's own backend running; dropping it stops the backend.
enum Own {
    /// A simulator under a shell that kills it when its stdin (this pipe) closes, even if the
    /// test process dies without dropping anything.
    #[allow(dead_code)]
    Sim(tokio::process::Child),
    #[allow(dead_code)]
    Gateway(super::gateway::DataPlane),
}

/// A pod IP of its own on loopback: 127.0.0.2, 127.0.0.3, …
fn pod_ip() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("127.0.{}.{}", n / 250, n % 250 + 2)
}

/// `program args…` under a shell that stops it when its stdin (a pipe the returned child
/// holds) closes: when the pod's task drops it, or the test process ends however it ends.
fn lifeline(
    program: &std::path::Path,
    args: &[String],
    env: &[(&str, &std::path::Path)],
) -> tokio::process::Child {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c")
        .arg("\"$0\" \"$@\" & s=$!; read _; kill $s")
        .arg(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    // Not kill_on_drop: the shell must live to stop the program when the pipe closes.
    c.spawn().unwrap()
}

/// Until something accepts connections at `addr` (a readiness probe), for up to 60 s.
async fn accepting(addr: std::net::SocketAddr) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The real vllm-router, installed once into the tests' tools directory.
async fn vllm_router() -> std::path::PathBuf {
    static INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = INSTALL.lock().await;
    let home = std::path::PathBuf::from(crate::support::tools_home());
    let tool = benchflow::find_tool("vllm-router").unwrap();
    if benchflow::installed_tool(&home, tool).is_none() {
        let h = home.clone();
        tokio::task::spawn_blocking(move || {
            let py = benchflow::python_for(tool, None).unwrap();
            benchflow::install_tool(&h, tool, &py, None).unwrap();
        })
        .await
        .unwrap();
    }
    tool.command(&home)
}

/// A backend of the pod's own, registered for its port-forwards: the test gateway's data plane
/// for a Gateway's pod; a simulator for an engine pod when the namespace asks for them.
async fn own_backend(
    client: &Client,
    sh: &Arc<Shared>,
    ns: &str,
    name: &str,
    pod: &Pod,
    spec: &Value,
    ip: &str,
) -> Option<Own> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let container = &spec["containers"][0];
    let port = container["ports"][0]["containerPort"].as_u64().unwrap_or(8000);
    let (addr, own) = if let Some(gateway) = labels.get("gateway.networking.k8s.io/gateway-name") {
        let plane =
            super::gateway::data_plane(client.clone(), ns.to_string(), gateway.clone(), sh.clone()).await;
        (plane.addr, Own::Gateway(plane))
    } else if ip == "127.0.0.1" {
        return None;
    } else if labels.get("app.kubernetes.io/name").is_some_and(|n| n == "vllm") {
        let args =
            ["sim", "--host", ip, "--port", &port.to_string(), "--profile", "tiny/cpu"].map(String::from);
        let child = lifeline(std::path::Path::new(env!("CARGO_BIN_EXE_benchflow")), &args, &[]);
        (format!("{ip}:{port}").parse().unwrap(), Own::Sim(child))
    } else {
        // The router's own arguments, listening on the pod's IP instead of every address.
        let args: Vec<String> = container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap_or_default().replace("0.0.0.0", ip))
            .collect();
        let child = lifeline(&vllm_router().await, &args, &[("KUBECONFIG", &sh.kubeconfig)]);
        (format!("{ip}:{port}").parse().unwrap(), Own::Sim(child))
    };
    accepting(addr).await;
    sh.pod_backends.lock().unwrap().insert((ns.to_string(), name.to_string()), addr);
    Some(own)
}

async fn event(client: &Client, ns: &str, pod: &str, reason: &str, message: &str) {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let event = serde_json::from_value(json!({
        "metadata": {"generateName": format!("{pod}.")},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns, "apiVersion": "v1"},
        "reason": reason, "message": message, "type": "Warning", "source": {"component": "kubelet", "host": NODE}
    }))
    .unwrap();
    let _ = events.create(&PostParams::default(), &event).await;
}

/// A benchflow harness pod as a local process: its ConfigMap volumes become directories, its
/// endpoint the namespace's backend, its output the pod's log. Killed if the task is aborted.
async fn run_for_real(
    client: &Client,
    sh: &Shared,
    ns: &str,
    name: &str,
    pod: &Pod,
    spec: &Value,
    behaviour: &Behaviour,
) -> bool {
    let root = std::env::temp_dir().join(format!("benchflow-node-{}-{ns}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let container = &spec["containers"][0];
    let mut script = container["command"][2].as_str().unwrap_or("").to_string();
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
    for v in spec["volumes"].as_array().cloned().unwrap_or_default() {
        let Some(cm) = v["configMap"]["name"].as_str() else { continue };
        let dir = root.join(v["name"].as_str().unwrap_or("vol"));
        std::fs::create_dir_all(&dir).unwrap();
        if let Ok(map) = maps.get(cm).await {
            for (k, text) in map.data.unwrap_or_default() {
                std::fs::write(dir.join(k), text).unwrap();
            }
        }
        for m in container["volumeMounts"].as_array().cloned().unwrap_or_default() {
            if m["name"] == v["name"] {
                script = script.replace(m["mountPath"].as_str().unwrap_or("/nowhere"), dir.to_str().unwrap());
            }
        }
    }
    script = script.replace("/tmp/bf", root.join("bf").to_str().unwrap());
    let index = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("batch.kubernetes.io/job-completion-index"))
        .cloned()
        .unwrap_or_else(|| "0".into());
    let backend = behaviour.backend.map(|a| format!("http://{a}")).unwrap_or_default();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_benchflow")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(&script)
        .current_dir(&root)
        .env("PATH", path)
        .env("BENCHFLOW_ENDPOINT", backend)
        .env("JOB_COMPLETION_INDEX", index)
        // The tools an image would have installed (with --install-missing the pod installs
        // what is missing, as a pod with PyPI access does).
        .env("BENCHFLOW_TOOLS_DIR", crate::support::tools_home())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // A group of its own, killed whole when the pod goes (this task aborted), as a
        // container's processes are: not only the shell.
        .process_group(0);
    let child = command.spawn();
    let group = child.as_ref().ok().and_then(|c| c.id()).map(Group);
    let out = match child {
        Ok(c) => c.wait_with_output().await,
        Err(e) => Err(e),
    };
    // Done by itself: nothing to kill (its id may be another's by now).
    std::mem::forget(group);
    let (ok, log) = match out {
        Ok(o) => (
            o.status.success(),
            format!("{}{}", String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout)),
        ),
        Err(e) => (false, format!("cannot start: {e}")),
    };
    sh.logs.lock().unwrap().insert((ns.to_string(), name.to_string()), log);
    let _ = std::fs::remove_dir_all(&root);
    ok
}

/// A process group, killed when dropped.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Claims waiting for a volume get one, made for them; a claim's volume goes with it.
async fn volumes(client: Client) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let mut stream = watcher(claims, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pvc) | watcher::Event::InitApply(pvc)) => {
                let bound = pvc.spec.as_ref().and_then(|s| s.volume_name.as_ref()).is_some();
                if bound || pvc.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let uid = pvc.metadata.uid.clone().unwrap_or_default();
                let spec = serde_json::to_value(pvc.spec.as_ref()).unwrap();
                let volume = json!({
                    "metadata": {"name": format!("pv-{uid}")},
                    "spec": {
                        "capacity": {"storage": spec["resources"]["requests"]["storage"].as_str().unwrap_or("1Gi")},
                        "accessModes": spec["accessModes"],
                        "storageClassName": spec["storageClassName"].as_str().unwrap_or(""),
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": format!("/tmp/benchflow-pv/{uid}")},
                        "claimRef": {"namespace": pvc.metadata.namespace, "name": pvc.metadata.name, "uid": uid}
                    }
                });
                let _ =
                    volumes.create(&PostParams::default(), &serde_json::from_value(volume).unwrap()).await;
            }
            Ok(watcher::Event::Delete(pvc)) => {
                let uid = pvc.metadata.uid.unwrap_or_default();
                let _ = volumes.delete(&format!("pv-{uid}"), &DeleteParams::default()).await;
            }
            _ => {}
        }
    }
}

/// The kubelet's HTTPS endpoint; returns its port.
async fn serve_kubelet(sh: Arc<Shared>) -> u16 {
    let app = Router::new()
        .route("/portForward/{ns}/{pod}", get(port_forward))
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .layer(axum::middleware::from_fn_with_state(sh.clone(), record))
        .with_state(sh);
    let listener = TlsListener::bind().await;
    let port = listener.port;
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

async fn record(
    State(sh): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    sh.requests.lock().unwrap().push(format!("{} {}", req.method(), req.uri()));
    next.run(req).await
}

async fn port_forward(
    State(sh): State<Arc<Shared>>,
    UrlPath((ns, pod)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    // The API server asks the kubelet with `port=` (its own clients say `ports=`).
    let port: u16 = q.get("port").and_then(|p| p.split(',').next()).and_then(|p| p.parse().ok()).unwrap_or(0);
    let own = sh.pod_backends.lock().unwrap().get(&(ns.clone(), pod)).copied();
    let Some(backend) = own.or(sh.behaviour(&ns).backend) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("no backend for namespace {ns}")).into_response();
    };
    ws.protocols(["v4.channel.k8s.io"])
        .on_upgrade(move |socket| crate::standin::forward::bridge(socket, port, backend))
        .into_response()
}

async fn logs(
    State(sh): State<Arc<Shared>>,
    UrlPath((ns, pod, _c)): UrlPath<(String, String, String)>,
) -> Response {
    if let Some(text) = sh.logs.lock().unwrap().get(&(ns.clone(), pod)) {
        return text.clone().into_response();
    }
    match sh.behaviour(&ns).pods {
        Pods::CrashLoop => {
            "INFO Starting vLLM API server\nERROR torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB\n"
        }
        _ => "INFO Starting vLLM API server on http://0.0.0.0:8000\nINFO Application startup complete.\n",
    }
    .into_response()
}

/// A TCP listener whose connections are TLS (the fixture certificate for 127.0.0.1).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    port: u16,
}

impl TlsListener {
    async fn bind() -> TlsListener {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        TlsListener { tcp, acceptor: crate::support::tls_acceptor(), port }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
