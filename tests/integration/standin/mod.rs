//! TEST SUPPORT ONLY: a stand-in Kubernetes API server (axum) with a fake controller and
//! kubelet, kwok-style, for the kinds benchflow uses. It speaks the real REST protocol and JSON
//! (kube-rs talks to it through an ordinary kubeconfig), is strict where the real server is
//! (unknown paths, missing fieldManager, invalid names, objects that do not parse into their
//! k8s-openapi type), and injects the faults the tool must survive.
//!
//! * this file: the store (objects, resourceVersion, watch history), routing, verbs, selectors;
//! * [`kubelet`]: what controllers and kubelets would do: Deployments → Pods → Ready (with GPU
//!   scheduling), Jobs → Succeeded, PVCs → Bound, namespace deletion cascade, events, logs;
//!
//! What a real API server judges (RBAC, apply conflicts, the scheduler's messages, real
//! controllers) is tested against the real control plane (`crate::cluster`); the stand-in stays
//! for what that cannot do on demand: injected 429/500s, cut watches, slow writes.
//! * [`forward`]: the port-forward WebSocket (`v4.channel.k8s.io`) bridged to a local address.

pub mod forward;
pub mod kubelet;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Query, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// How pods behave (set before or during a test).
#[derive(Debug, Clone, PartialEq)]
pub enum PodMode {
    /// Running and Ready after `pod_ready`.
    Ready,
    /// Running, never Ready.
    NeverReady,
}

/// Knobs and faults.
#[derive(Debug, Clone)]
pub struct Config {
    pub pod_ready: Duration,
    pub pvc_bind: Duration,
    pub job_run: Duration,
    pub ns_terminate: Duration,
    pub pod_mode: PodMode,
    pub job_fails: bool,
    /// GPUs of the one node (label nvidia.com/gpu.product = NVIDIA-H100-80GB-HBM3).
    pub node_gpus: u32,
    /// `(method, path prefix, n, status)`: the nth matching request (1-based) gets `status`.
    pub fail_nth: Vec<(String, String, usize, u16)>,
    /// The next watch stream ends after this many events (a dropped watch; 0: at once).
    pub cut_watch_after: Option<usize>,
    /// Every write (POST, PATCH) answers this much later (a slow API server).
    pub write_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pod_ready: Duration::from_millis(150),
            pvc_bind: Duration::from_millis(50),
            job_run: Duration::from_millis(150),
            ns_terminate: Duration::from_millis(100),
            pod_mode: PodMode::Ready,
            job_fails: false,
            node_gpus: 8,
            fail_nth: Vec::new(),
            cut_watch_after: None,
            write_delay: Duration::ZERO,
        }
    }
}

/// One change, for watches.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub kind: &'static str,
    pub resource: String,
    pub namespace: String,
    pub object: Value,
}

/// The objects: `(resource, namespace, name)` → object ("" namespace for cluster scope).
#[derive(Default)]
pub struct Store {
    pub rv: u64,
    pub objects: BTreeMap<(String, String, String), Value>,
    pub history: Vec<Change>,
    uid: u64,
}

pub struct Shared {
    pub store: Mutex<Store>,
    pub changes: broadcast::Sender<Change>,
    pub config: Mutex<Config>,
    pub requests: Mutex<Vec<String>>,
    /// Where port-forwards connect (the simulator).
    pub backend: Mutex<Option<SocketAddr>>,
}

pub type St = Arc<Shared>;

/// The kinds served: resource → (apiVersion, kind, namespaced).
pub fn kind_of(resource: &str) -> Option<(&'static str, &'static str, bool)> {
    Some(match resource {
        "namespaces" => ("v1", "Namespace", false),
        "nodes" => ("v1", "Node", false),
        "secrets" => ("v1", "Secret", true),
        "configmaps" => ("v1", "ConfigMap", true),
        "services" => ("v1", "Service", true),
        "persistentvolumeclaims" => ("v1", "PersistentVolumeClaim", true),
        "pods" => ("v1", "Pod", true),
        "events" => ("v1", "Event", true),
        "deployments" => ("apps/v1", "Deployment", true),
        "jobs" => ("batch/v1", "Job", true),
        _ => return None,
    })
}

/// Parses into the k8s-openapi type, as the real server validates.
fn typed_check(resource: &str, obj: &Value) -> Result<(), String> {
    use k8s_openapi::api::{
        apps::v1::Deployment,
        batch::v1::Job,
        core::v1::{ConfigMap, Event, Namespace, Node, PersistentVolumeClaim, Pod, Secret, Service},
    };
    fn p<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), String> {
        serde_json::from_value::<T>(v.clone()).map(|_| ()).map_err(|e| e.to_string())
    }
    match resource {
        "namespaces" => p::<Namespace>(obj),
        "nodes" => p::<Node>(obj),
        "secrets" => p::<Secret>(obj),
        "configmaps" => p::<ConfigMap>(obj),
        "services" => p::<Service>(obj),
        "persistentvolumeclaims" => p::<PersistentVolumeClaim>(obj),
        "pods" => p::<Pod>(obj),
        "events" => p::<Event>(obj),
        "deployments" => p::<Deployment>(obj),
        "jobs" => p::<Job>(obj),
        _ => Err(format!("unknown resource {resource}")),
    }
}

fn dns1123(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A `Status` response as the API server sends it.
pub fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    });
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body))
        .into_response()
}

impl Shared {
    fn now() -> String {
        "2026-11-24T00:00:00Z".to_string()
    }

    /// Stores (create or replace) and records the change.
    pub fn put(&self, resource: &str, ns: &str, mut obj: Value) -> Value {
        let mut s = self.store.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        let key = (
            resource.to_string(),
            ns.to_string(),
            obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
        );
        let existed = s.objects.get(&key).cloned();
        let (api, kind, _) = kind_of(resource).unwrap_or(("v1", "Unknown", true));
        obj["apiVersion"] = json!(api);
        obj["kind"] = json!(kind);
        let meta = obj["metadata"].as_object_mut().expect("metadata");
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        if !ns.is_empty() {
            meta.insert("namespace".into(), json!(ns));
        }
        match &existed {
            Some(old) => {
                meta.insert("uid".into(), old["metadata"]["uid"].clone());
                meta.insert("creationTimestamp".into(), old["metadata"]["creationTimestamp"].clone());
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed = old.get("spec") != obj.get("spec");
                obj["metadata"]["generation"] = json!(if changed { generation + 1 } else { generation });
            }
            None => {
                s.uid += 1;
                meta.insert("uid".into(), json!(format!("uid-{}", s.uid)));
                meta.insert("creationTimestamp".into(), json!(Self::now()));
                meta.insert("generation".into(), json!(1));
            }
        }
        s.objects.insert(key, obj.clone());
        let kind = if existed.is_some() { "MODIFIED" } else { "ADDED" };
        self.publish(
            s,
            Change { rv, kind, resource: resource.into(), namespace: ns.into(), object: obj.clone() },
        );
        obj
    }

    /// Records a change in the history and tells the watches, after releasing the store.
    fn publish(&self, mut s: std::sync::MutexGuard<'_, Store>, change: Change) {
        s.history.push(change.clone());
        drop(s);
        let _ = self.changes.send(change);
    }

    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.store.lock().unwrap().objects.get(&(resource.into(), ns.into(), name.into())).cloned()
    }

    pub fn remove(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        let mut s = self.store.lock().unwrap();
        let obj = s.objects.remove(&(resource.into(), ns.into(), name.into()))?;
        s.rv += 1;
        let rv = s.rv;
        self.publish(
            s,
            Change {
                rv,
                kind: "DELETED",
                resource: resource.into(),
                namespace: ns.into(),
                object: obj.clone(),
            },
        );
        Some(obj)
    }

    pub fn list(&self, resource: &str, ns: Option<&str>) -> Vec<Value> {
        let s = self.store.lock().unwrap();
        s.objects
            .iter()
            .filter(|((r, n, _), _)| r == resource && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Objects carrying a label (any kind, any namespace), as `Kind/name`.
    pub fn labelled(&self, key: &str) -> Vec<String> {
        let s = self.store.lock().unwrap();
        s.objects
            .values()
            .filter(|o| o["metadata"]["labels"].get(key).is_some())
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

/// A running stand-in.
pub struct StandIn {
    pub url: String,
    pub state: St,
    _runtime: tokio::runtime::Runtime,
}

impl StandIn {
    pub fn start(config: Config) -> StandIn {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (changes, _) = broadcast::channel(4096);
        let state = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changes,
            config: Mutex::new(config),
            requests: Mutex::new(Vec::new()),
            backend: Mutex::new(None),
        });
        let node_gpus = state.config.lock().unwrap().node_gpus;
        state.put(
            "nodes",
            "",
            json!({
                "metadata": {"name": "gpu-node-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.present": "true"}},
                "status": {"allocatable": {"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": node_gpus.to_string()},
                           "capacity": {"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": node_gpus.to_string()}}
            }),
        );
        state.put("namespaces", "", json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}}));
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/pods/{pod}/portforward", get(forward::portforward))
            .fallback(handle)
            .with_state(state.clone());
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandIn { url: format!("http://{addr}"), state, _runtime: runtime }
    }

    /// A kubeconfig for this server, with a bearer token (which must never be written anywhere).
    pub fn kubeconfig(&self, path: &std::path::Path, token: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\nusers:\n- name: tester\n  user:\n    token: {token}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: tester\n    namespace: default\ncurrent-context: standin\n",
            self.url
        );
        std::fs::write(path, text).unwrap();
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }
}

fn selector_matches(selector: &str, labels: &Value) -> bool {
    // Equality (`k=v`, `k==v`), inequality (`k!=v`), existence (`k`), set (`k in (a,b)`).
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).all(|p| {
        let get = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        if let Some((k, v)) = p.split_once("!=") {
            get(k) != Some(v.trim())
        } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            get(k) == Some(v.trim())
        } else if let Some((k, set)) = p.split_once(" in ") {
            let set = set.trim().trim_start_matches('(').trim_end_matches(')');
            get(k).is_some_and(|v| set.split(',').any(|s| s.trim() == v))
        } else {
            get(p).is_some()
        }
    })
}

fn field_matches(selector: &str, obj: &Value) -> Result<bool, String> {
    for part in selector.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("invalid field selector `{part}`"))?;
        let v = v.trim_start_matches('=');
        let actual = match k {
            "metadata.name" => obj["metadata"]["name"].as_str(),
            "metadata.namespace" => obj["metadata"]["namespace"].as_str(),
            "involvedObject.name" => obj["involvedObject"]["name"].as_str(),
            _ => return Err(format!("field label not supported: {k}")),
        };
        if actual != Some(v) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `(resource, namespace, name, subresource)` from a path.
fn route(path: &str) -> Option<(String, String, Option<String>, Option<String>)> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match seg.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", "apps", "v1", rest @ ..] | ["apis", "batch", "v1", rest @ ..] => rest,
        _ => return None,
    };
    let owned = |s: &&str| s.to_string();
    match rest {
        ["namespaces", ns, res, tail @ ..] if kind_of(res).is_some_and(|k| k.2) => {
            Some((res.to_string(), ns.to_string(), tail.first().map(owned), tail.get(1).map(owned)))
        }
        [res] if kind_of(res).is_some() => Some((res.to_string(), String::new(), None, None)),
        [res, name] if kind_of(res).is_some_and(|k| !k.2) => {
            Some((res.to_string(), String::new(), Some(name.to_string()), None))
        }
        _ => None,
    }
}

async fn handle(
    State(st): State<St>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let line = format!("{method} {}", uri.path_and_query().map(|p| p.as_str()).unwrap_or(""));
    st.requests.lock().unwrap().push(line);
    // Injected failures: the nth request of a method under a prefix.
    let fault = st.config.lock().unwrap().fail_nth.iter().find_map(|(m, prefix, n, code)| {
        let matching =
            st.requests.lock().unwrap().iter().filter(|l| l.starts_with(&format!("{m} {prefix}"))).count();
        (m == method.as_str() && path.starts_with(prefix.as_str()) && matching == *n).then_some(*code)
    });
    if let Some(code) = fault {
        let reason = if code == 429 { "TooManyRequests" } else { "InternalError" };
        return status(code, reason, "injected by the stand-in");
    }
    let delay = st.config.lock().unwrap().write_delay;
    if (method == Method::POST || method == Method::PATCH) && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if path == "/version" {
        return axum::Json(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-standin", "gitCommit": "0", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
        }))
        .into_response();
    }
    // No RBAC here: every access review is allowed (the real control plane's tests judge RBAC).
    if method == Method::POST && path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
        let mut review: Value = serde_json::from_slice(&body).unwrap_or_default();
        review["status"] = json!({"allowed": true});
        return (StatusCode::CREATED, axum::Json(review)).into_response();
    }
    let Some((resource, ns, name, sub)) = route(&path) else {
        return status(
            404,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
        );
    };
    let namespaced = kind_of(&resource).is_some_and(|k| k.2);
    if namespaced && st.get("namespaces", "", &ns).is_none() {
        return status(404, "NotFound", &format!("namespaces \"{ns}\" not found"));
    }
    match (method.as_str(), name, sub.as_deref()) {
        ("GET", None, _) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(st, resource, ns, q)
        }
        ("GET", None, _) => list(&st, &resource, &ns, &q),
        ("GET", Some(name), Some("log")) => match st.get("pods", &ns, &name) {
            Some(_) => kubelet::logs().into_response(),
            None => status(404, "NotFound", &format!("pods \"{name}\" not found")),
        },
        ("GET", Some(name), None) => match st.get(&resource, &ns, &name) {
            Some(obj) => axum::Json(obj).into_response(),
            None => status(404, "NotFound", &format!("{resource} \"{name}\" not found")),
        },
        ("POST", None, _) => {
            let obj: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", &e.to_string()),
            };
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            if st.get(&resource, &ns, &name).is_some() {
                return status(409, "AlreadyExists", &format!("{resource} \"{name}\" already exists"));
            }
            write(&st, &resource, &ns, &name, obj, StatusCode::CREATED)
        }
        ("PATCH", Some(name), None) => {
            let ctype = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
            if ctype != "application/apply-patch+yaml" {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!("the stand-in only accepts server-side apply, not {ctype}"),
                );
            }
            if q.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return status(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                );
            }
            let patch: Value = match serde_saphyr::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", &e.to_string()),
            };
            if patch["metadata"]["name"].as_str() != Some(name.as_str()) {
                return status(
                    400,
                    "BadRequest",
                    "the name of the object does not match the name in the URL",
                );
            }
            let merged = match st.get(&resource, &ns, &name) {
                Some(mut old) => {
                    // Server-side apply, as far as our manifests need it: a deep merge.
                    benchflow::merge(&mut old, patch);
                    old
                }
                None => patch,
            };
            write(&st, &resource, &ns, &name, merged, StatusCode::OK)
        }
        ("DELETE", Some(name), None) => {
            kubelet::delete(&st, &resource, &ns, &name, q.get("propagationPolicy").cloned())
        }
        _ => status(405, "MethodNotAllowed", &format!("{method} is not supported on {path}")),
    }
}

fn write(st: &St, resource: &str, ns: &str, name: &str, mut obj: Value, code: StatusCode) -> Response {
    if !dns1123(name) {
        return status(
            422,
            "Invalid",
            &format!(
                "{resource} \"{name}\" is invalid: metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
            ),
        );
    }
    if namespaced(resource)
        && let Some(n) = st.get("namespaces", "", ns)
        && n["status"]["phase"] == "Terminating"
    {
        return status(
            403,
            "Forbidden",
            &format!(
                "{resource} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
            ),
        );
    }
    let (api, kind, _) = kind_of(resource).unwrap_or(("v1", "", true));
    obj["apiVersion"] = json!(api);
    obj["kind"] = json!(kind);
    if let Err(e) = typed_check(resource, &obj) {
        return status(422, "Invalid", &format!("{kind} \"{name}\" is invalid: {e}"));
    }
    let stored = st.put(resource, ns, obj);
    kubelet::react(st, resource, ns, &stored);
    (code, axum::Json(st.get(resource, ns, name).unwrap_or(stored))).into_response()
}

fn namespaced(resource: &str) -> bool {
    kind_of(resource).is_some_and(|k| k.2)
}

fn list(st: &St, resource: &str, ns: &str, q: &BTreeMap<String, String>) -> Response {
    let (api, kind, _) = kind_of(resource).unwrap_or(("v1", "", true));
    let labels = q.get("labelSelector").cloned().unwrap_or_default();
    let fields = q.get("fieldSelector").cloned().unwrap_or_default();
    let mut items = Vec::new();
    for o in st.list(resource, if namespaced(resource) { Some(ns) } else { None }) {
        if !selector_matches(&labels, &o["metadata"]["labels"]) {
            continue;
        }
        match field_matches(&fields, &o) {
            Ok(true) => items.push(o),
            Ok(false) => {}
            Err(e) => return status(400, "BadRequest", &e),
        }
    }
    let rv = st.store.lock().unwrap().rv;
    axum::Json(json!({"apiVersion": api, "kind": format!("{kind}List"), "metadata": {"resourceVersion": rv.to_string()}, "items": items}))
        .into_response()
}

fn watch(st: St, resource: String, ns: String, q: BTreeMap<String, String>) -> Response {
    let since: u64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let timeout = Duration::from_secs(q.get("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(290));
    let labels = q.get("labelSelector").cloned().unwrap_or_default();
    let fields = q.get("fieldSelector").cloned().unwrap_or_default();
    let cut = st.config.lock().unwrap().cut_watch_after.take();
    // Subscribe before reading the history, so that nothing falls between the two.
    let mut rx = st.changes.subscribe();
    let backlog: Vec<Change> =
        st.store.lock().unwrap().history.iter().filter(|c| c.rv > since).cloned().collect();
    let is_ns = namespaced(&resource);
    let wanted = move |c: &Change| {
        c.resource == resource
            && (!is_ns || c.namespace == ns)
            && selector_matches(&labels, &c.object["metadata"]["labels"])
            && field_matches(&fields, &c.object).unwrap_or(false)
    };
    let (tx, mut out) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(256);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut sent = 0usize;
        let mut last = since;
        if cut == Some(0) {
            return;
        }
        let line = |c: &Change| Ok(Bytes::from(format!("{}\n", json!({"type": c.kind, "object": c.object}))));
        for c in backlog {
            last = last.max(c.rv);
            if wanted(&c) {
                if tx.send(line(&c)).await.is_err() {
                    return;
                }
                sent += 1;
                if cut.is_some_and(|n| sent >= n) {
                    return;
                }
            }
        }
        loop {
            tokio::select! {
                c = rx.recv() => match c {
                    Ok(c) if c.rv > last && wanted(&c) => {
                        last = c.rv;
                        if tx.send(line(&c)).await.is_err() {
                            return;
                        }
                        sent += 1;
                        if cut.is_some_and(|n| sent >= n) {
                            return;
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| out.poll_recv(cx));
    Response::builder().header("content-type", "application/json").body(Body::from_stream(stream)).unwrap()
}
