//! kube-rs access for the Kubernetes steps: the client (current context, `--context`,
//! `--kubeconfig`, or in-cluster), server-side apply of rendered manifests, deletion that waits
//! until objects are gone, readiness decisions from object status (small functions, tested on
//! inline objects), diagnostics, and port-forwards that give the HTTP steps a local URL.

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::Job,
    core::v1::{Event, Pod, Service},
};
use kube::{
    Client, Config,
    api::{
        Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, Patch,
        PatchParams,
    },
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kubernetes::FIELD_MANAGER;

/// Why a Kubernetes action failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot load the Kubernetes configuration: {0}")]
    Config(String),
    #[error("{what}: {}", plain(.source))]
    Api { what: String, source: kube::Error },
    #[error("{0}")]
    Failed(String),
}

/// A client error in words: the API server's own message with its code, or why the server
/// could not be reached; never the client library's debug form of the error.
pub(crate) fn plain(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let said =
                if s.message.is_empty() { "the API server refused".to_string() } else { s.message.clone() };
            match (s.code, s.reason.as_str()) {
                (0, _) => said,
                (code, "") => format!("{said} (HTTP {code})"),
                (code, reason) => format!("{said} (HTTP {code}, {reason})"),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            format!("cannot reach the API server: {}", causes(e))
        }
        e => causes(e),
    }
}

/// An error's causes, innermost last, each said once; without the outermost text when it only
/// names the library's wrapper (`HyperError: …`, `ServiceError: …`) and a cause says more.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = match e.source() {
        Some(inner)
            if matches!(
                e.downcast_ref::<kube::Error>(),
                Some(kube::Error::HyperError(_) | kube::Error::Service(_))
            ) =>
        {
            Some(inner)
        }
        _ => Some(e),
    };
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// Whether the error says the object (or its namespace) is not there: the API server's 404.
pub(crate) fn not_found(e: &KubeError) -> bool {
    matches!(e, KubeError::Api { source: kube::Error::Api(s), .. } if s.code == 404)
}

/// What the cluster has of an object the work directory recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    There,
    /// Deleted, not yet gone (finalizers, a namespace's contents).
    Deleting,
    /// Not there, or its kind is no longer served (its CRDs were removed).
    Gone,
}

/// Whether `r` is still in the cluster (one read; status must answer quickly).
pub(crate) async fn presence(client: &Client, r: &ObjectRef) -> Result<Presence, KubeError> {
    let api = match r.api(client).await {
        Ok(api) => api,
        Err(KubeError::Failed(_)) => return Ok(Presence::Gone),
        Err(e) => return Err(e),
    };
    match api.get_opt(&r.name).await.map_err(api_err(format!("failed to read {r}")))? {
        None => Ok(Presence::Gone),
        Some(o) if o.metadata.deletion_timestamp.is_some() => Ok(Presence::Deleting),
        Some(_) => Ok(Presence::There),
    }
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let what = what.into();
    move |source| KubeError::Api { what, source }
}

/// Which cluster: a kubeconfig file and context, or the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub kubeconfig: Option<String>,
}

impl Target {
    /// A client for the target. Credentials stay in memory; nothing of them is written.
    pub async fn client(&self) -> Result<Client, KubeError> {
        let opts = KubeConfigOptions { context: self.context.clone(), ..Default::default() };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc =
                    Kubeconfig::read_from(path).map_err(|e| KubeError::Config(format!("{path}: {e}")))?;
                Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .map_err(|e| KubeError::Config(e.to_string()))?
            }
            None if self.context.is_some() => {
                Config::from_kubeconfig(&opts).await.map_err(|e| KubeError::Config(e.to_string()))?
            }
            None => Config::infer().await.map_err(|e| KubeError::Config(e.to_string()))?,
        };
        Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))
    }
}

/// The identity of an object benchflow applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn of(doc: &Value) -> ObjectRef {
        let s = |p: &str| doc.pointer(p).and_then(Value::as_str).map(str::to_string);
        ObjectRef {
            api_version: s("/apiVersion").unwrap_or_default(),
            kind: s("/kind").unwrap_or_default(),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name").unwrap_or_default(),
        }
    }

    /// The API of the object's kind. The built-in groups' resources follow from the kind; a
    /// custom resource's (Gateway, HTTPRoute, InferencePool, …) is discovered from the API
    /// server, and a kind it does not serve is an error naming the CRDs to install.
    pub async fn api(&self, client: &Client) -> Result<Api<DynamicObject>, KubeError> {
        let (group, version) = self.api_version.rsplit_once('/').unwrap_or(("", &self.api_version));
        let gvk = GroupVersionKind::gvk(group, version, &self.kind);
        let ar = if BUILT_IN_GROUPS.contains(&group) {
            ApiResource::from_gvk(&gvk)
        } else {
            discover(client, &gvk).await?
        };
        Ok(match &self.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        })
    }
}

/// The API groups of the kinds k8s-openapi types, whose resource names follow from the kind.
const BUILT_IN_GROUPS: [&str; 4] = ["", "apps", "batch", "rbac.authorization.k8s.io"];

/// The resource of a custom kind, as the API server serves it; an error naming what to install
/// when it serves no such kind.
pub(crate) async fn discover(client: &Client, gvk: &GroupVersionKind) -> Result<ApiResource, KubeError> {
    let api_version = gvk.api_version();
    let resources = match retry(|| client.list_api_group_resources(&api_version)).await {
        Ok(list) => list,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(KubeError::Failed(format!(
                "the API server does not serve `{api_version}`, so it has no {}: install {}",
                gvk.kind,
                crds_for(&gvk.group)
            )));
        }
        Err(e) => return Err(api_err(format!("failed to discover the resources of {api_version}"))(e)),
    };
    let found = resources.resources.iter().find(|r| r.kind == gvk.kind && !r.name.contains('/'));
    let Some(r) = found else {
        return Err(KubeError::Failed(format!(
            "the API server serves `{api_version}` but no {} in it: install {}",
            gvk.kind,
            crds_for(&gvk.group)
        )));
    };
    Ok(ApiResource::from_gvk_with_plural(gvk, &r.name))
}

/// What installs the kinds of an API group, for error messages.
pub(crate) fn crds_for(group: &str) -> String {
    match group {
        "gateway.networking.k8s.io" => "the Gateway API CRDs (v1.4 or later: \
            kubectl apply --server-side -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.4.1/standard-install.yaml) \
            and a gateway controller (Istio, kgateway, agentgateway, GKE)"
            .into(),
        "inference.networking.k8s.io" | "inference.networking.x-k8s.io" => "the Gateway API Inference Extension CRDs \
            (v1.0 or later: kubectl apply -f https://github.com/kubernetes-sigs/gateway-api-inference-extension/releases/download/v1.3.0/manifests.yaml)"
            .into(),
        other => format!("the CRDs of API group `{other}`"),
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{} in {ns}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// Whether the object exists.
pub(crate) async fn exists(client: &Client, r: &ObjectRef) -> Result<bool, KubeError> {
    Ok(get(client, r).await?.is_some())
}

/// The object as the API server has it (any kind; a custom one's resource discovered), as JSON.
pub(crate) async fn get(client: &Client, r: &ObjectRef) -> Result<Option<Value>, KubeError> {
    let found =
        r.api(client).await?.get_opt(&r.name).await.map_err(api_err(format!("failed to read {r}")))?;
    Ok(found.map(|o| serde_json::to_value(o).unwrap_or_default()))
}

/// Server-side apply with field manager `benchflow`, never forced: a field that another manager
/// set to another value is a conflict, reported with the server's list of fields and managers,
/// not taken over.
pub(crate) async fn apply(client: &Client, doc: &Value) -> Result<(), KubeError> {
    let r = ObjectRef::of(doc);
    let params = PatchParams::apply(FIELD_MANAGER);
    let api = r.api(client).await?;
    retry(|| async { api.patch(&r.name, &params, &Patch::Apply(doc)).await.map(|_| ()) }).await.map_err(|e| {
        match e {
            kube::Error::Api(s) if s.code == 409 => KubeError::Failed(format!(
                "cannot apply {r}: {}. benchflow does not take over fields another field manager set; \
                 delete the object, or give those fields back, then run again",
                s.message
            )),
            e => api_err(format!("failed to apply {r}"))(e),
        }
    })
}

/// Whether the error is the API server's 403.
pub(crate) fn forbidden(e: &KubeError) -> bool {
    matches!(e, KubeError::Api { source: kube::Error::Api(s), .. } if s.code == 403)
}

/// Deletes (foreground propagation) and waits until the object is gone.
pub(crate) async fn delete(client: &Client, r: &ObjectRef, limit: Duration) -> Result<bool, KubeError> {
    let api = match r.api(client).await {
        Ok(api) => api,
        // Its kind is no longer served (its CRD was removed): nothing of it is left.
        Err(KubeError::Failed(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let dp = DeleteParams::foreground();
    match retry(|| async { api.delete(&r.name, &dp).await.map(|_| ()) }).await {
        Ok(()) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(false),
        Err(e) => return Err(api_err(format!("failed to delete {r}"))(e)),
    }
    let gone = async {
        loop {
            match api.get_opt(&r.name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) if transient(&e) => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(e) => return Err(api_err(format!("failed to read {r}"))(e)),
            }
        }
    };
    tokio::time::timeout(limit, gone).await.map_err(|_| {
        KubeError::Failed(format!("{r} is still there {} s after its deletion", limit.as_secs()))
    })??;
    Ok(true)
}

/// 429, 5xx and connection errors are worth another try.
pub(crate) fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs `f` again after transient errors: 5 attempts, backoff from 200 ms doubling.
pub(crate) async fn retry<F, Fut, T>(mut f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(200);
    for _ in 0..4 {
        match f().await {
            Err(e) if transient(&e) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    f().await
}

/// What a pod's status says about its future.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PodVerdict {
    Ready,
    Waiting,
    /// It will not become ready by itself: the reason, for the error message.
    Stuck(String),
}

/// Judges one pod: ready, still coming, or stuck (crash loop, image pull, unschedulable). A pod
/// unschedulable only until its claim is bound (the scheduler says so while a volume is being
/// provisioned) is still coming.
pub(crate) fn pod_verdict(pod: &Pod) -> PodVerdict {
    let Some(status) = &pod.status else { return PodVerdict::Waiting };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    for c in conditions {
        if c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable") {
            let message = c.message.as_deref().unwrap_or("");
            if message.to_ascii_lowercase().contains("persistentvolumeclaim") {
                continue;
            }
            return PodVerdict::Stuck(format!("unschedulable: {message}"));
        }
    }
    for cs in status.container_statuses.as_deref().unwrap_or_default() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or("");
            if matches!(
                reason,
                "CrashLoopBackOff"
                    | "ImagePullBackOff"
                    | "ErrImagePull"
                    | "InvalidImageName"
                    | "CreateContainerConfigError"
            ) {
                return PodVerdict::Stuck(format!(
                    "container {} is in {reason}: {}",
                    cs.name,
                    w.message.as_deref().unwrap_or("")
                ));
            }
        }
    }
    if conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True") {
        PodVerdict::Ready
    } else {
        PodVerdict::Waiting
    }
}

/// Whether a Job has finished: `Some(Ok)` complete, `Some(Err(reason))` failed.
pub(crate) fn job_verdict(job: &Job) -> Option<Result<(), String>> {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    for c in conditions {
        if c.status == "True" && c.type_ == "Complete" {
            return Some(Ok(()));
        }
        if c.status == "True" && c.type_ == "Failed" {
            return Some(Err(format!(
                "{}: {}",
                c.reason.as_deref().unwrap_or("Failed"),
                c.message.as_deref().unwrap_or("")
            )));
        }
    }
    None
}

/// Watches a Job until it completes (`Ok`) or fails (`Err(reason)`); the caller owns the
/// timeout.
pub(crate) async fn await_job(client: &Client, ns: &str, name: &str) -> Result<(), String> {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut events = watcher(jobs, watcher::Config::default().fields(&format!("metadata.name={name}")))
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(ev) = events.next().await {
        if let Ok(job) = ev
            && let Some(verdict) = job_verdict(&job)
        {
            return verdict;
        }
    }
    Err(format!("the watch on Job/{name} ended"))
}

/// The names of a Job's pods, in completion-index order.
pub(crate) async fn job_pods(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("job-name={name}"));
    let mut items = pods.list(&lp).await.map(|l| l.items).unwrap_or_default();
    let index = |p: &Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("batch.kubernetes.io/job-completion-index"))
            .and_then(|i| i.parse::<u32>().ok())
            .unwrap_or(0)
    };
    items.sort_by_key(index);
    items.into_iter().filter_map(|p| p.metadata.name).collect()
}

/// A pod's whole log.
pub(crate) async fn pod_log(client: &Client, ns: &str, pod: &str) -> Result<String, KubeError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = LogParams::default();
    retry(|| pods.logs(pod, &lp)).await.map_err(api_err(format!("failed to read the log of pod {pod}")))
}

/// `k=v,k2=v2` from a label map.
pub(crate) fn selector(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Pods matching a Deployment's selector.
pub(crate) async fn deployment_pods(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<(Deployment, Vec<Pod>), KubeError> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = retry(|| deployments.get(name))
        .await
        .map_err(api_err(format!("failed to read Deployment/{name}")))?;
    let labels = d.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&selector(&labels));
    let list =
        retry(|| pods.list(&lp)).await.map_err(api_err(format!("failed to list the pods of {name}")))?;
    Ok((d, list.items))
}

/// Events and the last log lines of a pod, as text for the work directory.
pub(crate) async fn pod_diagnostics(client: &Client, ns: &str, pod: &str) -> String {
    let mut out = format!("== events of pod {pod} ==\n");
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("involvedObject.name={pod}"));
    match events.list(&lp).await {
        Ok(list) => {
            for e in list.items {
                out.push_str(&format!(
                    "{} {} {}: {}\n",
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.involved_object.kind.unwrap_or_default(),
                    e.message.unwrap_or_default()
                ));
            }
        }
        Err(e) => out.push_str(&format!("(cannot list events: {e})\n")),
    }
    out.push_str(&format!("== last log lines of pod {pod} ==\n"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match pods.logs(pod, &LogParams { tail_lines: Some(100), ..Default::default() }).await {
        Ok(text) => out.push_str(&text),
        Err(e) => out.push_str(&format!("(no logs: {e})\n")),
    }
    out
}

/// A port-forward to a ready pod behind a Service, served on a local port until dropped.
pub(crate) struct Forward {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parses `k8s://NAMESPACE/SERVICE:PORT`.
pub(crate) fn parse_endpoint(url: &str) -> Option<(String, String, u16)> {
    let rest = url.strip_prefix("k8s://")?;
    let (ns, svc) = rest.split_once('/')?;
    let (svc, port) = svc.split_once(':')?;
    Some((ns.to_string(), svc.to_string(), port.trim_end_matches('/').parse().ok()?))
}

/// Opens a local port that forwards each connection to a ready pod of the Service, taking them
/// in turn as a ClusterIP Service's proxy balances connections: with several replicas behind
/// the Service, the load generator's connections are spread over all of them, not sent to one.
pub(crate) async fn forward(
    client: &Client,
    ns: &str,
    service: &str,
    port: u16,
) -> Result<Forward, KubeError> {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc = retry(|| services.get(service))
        .await
        .map_err(api_err(format!("failed to read Service/{service} in {ns}")))?;
    let spec = svc.spec.unwrap_or_default();
    // The pods' port behind the Service's (a gateway's Service maps 80 to its proxy's port).
    let target = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == i32::from(port))
        .and_then(|p| match &p.target_port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => u16::try_from(*n).ok(),
            _ => None,
        })
        .unwrap_or(port);
    let labels = spec.selector.unwrap_or_default();
    let pods = ready_pods(client, ns, &labels).await?;
    if pods.is_empty() {
        return Err(KubeError::Failed(format!("Service/{service} in {ns} has no ready pod to forward to")));
    }
    forward_pods(client, ns, pods, target).await
}

/// A local port forwarded to `port` of pod `pod` in `ns`; forwarding stops when the returned
/// [`Forward`] is dropped.
pub(crate) async fn forward_pod(
    client: &Client,
    ns: &str,
    pod: &str,
    port: u16,
) -> Result<Forward, KubeError> {
    forward_pods(client, ns, vec![pod.to_string()], port).await
}

/// A local port whose connections go to `port` of the `pods`, one after the other.
async fn forward_pods(client: &Client, ns: &str, pods: Vec<String>, port: u16) -> Result<Forward, KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| KubeError::Failed(format!("cannot open a local port for the port-forward: {e}")))?;
    let local = listener.local_addr().map_err(|e| KubeError::Failed(e.to_string()))?;
    let task = tokio::spawn(async move {
        let mut next = 0usize;
        while let Ok((mut tcp, _)) = listener.accept().await {
            let api = api.clone();
            let pod = pods[next % pods.len()].clone();
            next += 1;
            tokio::spawn(async move {
                let Ok(mut pf) = api.portforward(&pod, &[port]).await else { return };
                let Some(mut upstream) = pf.take_stream(port) else { return };
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
                drop(upstream);
                let _ = pf.join().await;
            });
        }
    });
    Ok(Forward { url: format!("http://{local}"), task })
}

/// The labels DCGM exporter pods carry: the GPU operator's, and the dcgm-exporter Helm chart's.
pub(crate) const DCGM_EXPORTER_LABELS: [&str; 2] =
    ["app=nvidia-dcgm-exporter", "app.kubernetes.io/name=dcgm-exporter"];

/// The names of the ready pods in `ns` that match `labels`, sorted.
pub(crate) async fn ready_pods(
    client: &Client,
    ns: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<String>, KubeError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&selector(labels));
    let list = retry(|| pods.list(&lp)).await.map_err(api_err(format!("failed to list pods in {ns}")))?;
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter(|p| pod_verdict(p) == PodVerdict::Ready)
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    Ok(names)
}

/// The ready DCGM exporter pods (namespace, name) on the nodes of the pods in `ns` that match
/// `labels` (the engine's).
pub(crate) async fn dcgm_exporters(
    client: &Client,
    ns: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, KubeError> {
    let engine: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&selector(labels));
    let pods = retry(|| engine.list(&lp))
        .await
        .map_err(api_err(format!("failed to list the engine's pods in {ns}")))?;
    let nodes: std::collections::BTreeSet<String> =
        pods.items.iter().filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone())).collect();
    let all: Api<Pod> = Api::all(client.clone());
    let mut out = Vec::new();
    for label in DCGM_EXPORTER_LABELS {
        let lp = ListParams::default().labels(label);
        let found = match retry(|| all.list(&lp)).await {
            Ok(list) => list.items,
            // Listing pods cluster-wide may be forbidden to a namespace-confined user.
            Err(kube::Error::Api(e)) if e.code == 403 => Vec::new(),
            Err(e) => return Err(api_err(format!("failed to look for DCGM exporter pods ({label})"))(e)),
        };
        for p in found {
            let on_node =
                p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| nodes.contains(n));
            if on_node && pod_verdict(&p) == PodVerdict::Ready {
                let (Some(pns), Some(name)) = (p.metadata.namespace.clone(), p.metadata.name.clone()) else {
                    continue;
                };
                if !out.contains(&(pns.clone(), name.clone())) {
                    out.push((pns, name));
                }
            }
        }
    }
    Ok(out)
}

/// Whether an object exists and matches a label selector of `k=v` terms.
pub(crate) async fn has_labels(client: &Client, r: &ObjectRef, selector: &str) -> Result<bool, KubeError> {
    let Some(obj) =
        r.api(client).await?.get_opt(&r.name).await.map_err(api_err(format!("failed to read {r}")))?
    else {
        return Ok(false);
    };
    let labels = obj.metadata.labels.unwrap_or_default();
    Ok(selector.split(',').all(|term| {
        term.split_once('=').is_some_and(|(k, v)| labels.get(k.trim()).map(String::as_str) == Some(v.trim()))
    }))
}

/// The objects benchflow applies, in `ns`, matching a label selector (for `gc`).
pub(crate) async fn labelled(client: &Client, ns: &str, selector: &str) -> Result<Vec<ObjectRef>, KubeError> {
    let mut out = Vec::new();
    // In the order to delete them: workloads first, storage and configuration last.
    for (api_version, kind) in [
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("gateway.networking.k8s.io/v1", "Gateway"),
        ("inference.networking.k8s.io/v1", "InferencePool"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "Job"),
        ("v1", "Service"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("v1", "ServiceAccount"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "Secret"),
        ("v1", "ConfigMap"),
    ] {
        let r = ObjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: Some(ns.into()),
            name: String::new(),
        };
        let api = match r.api(client).await {
            Ok(api) => api,
            // A kind the cluster does not serve holds nothing of ours.
            Err(KubeError::Failed(_)) => continue,
            Err(e) => return Err(e),
        };
        let lp = ListParams::default().labels(selector);
        let list =
            retry(|| api.list(&lp)).await.map_err(api_err(format!("failed to list {kind}s in {ns}")))?;
        for o in list.items {
            out.push(ObjectRef { name: o.metadata.name.unwrap_or_default(), ..r.clone() });
        }
    }
    Ok(out)
}

/// A local base URL for `url`: itself, or a port-forward for `k8s://NAMESPACE/SERVICE:PORT`
/// (kept open while the returned guard lives).
pub(crate) async fn local_url(url: &str, cluster: &Target) -> Result<(String, Option<Forward>), String> {
    let Some((ns, svc, port)) = parse_endpoint(url) else {
        return Ok((url.trim_end_matches('/').to_string(), None));
    };
    let client = cluster.client().await.map_err(|e| e.to_string())?;
    let fwd = forward(&client, &ns, &svc, port).await.map_err(|e| e.to_string())?;
    Ok((fwd.url.clone(), Some(fwd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    #[test]
    fn api_errors_read_as_the_servers_words_never_as_the_librarys_debug() {
        let status =
            kube::core::Status::failure("deployments.apps \"x\" not found", "NotFound").with_code(404);
        let e = api_err("failed to read Deployment/x")(kube::Error::Api(Box::new(status)));
        assert!(not_found(&e));
        assert_eq!(
            e.to_string(),
            "failed to read Deployment/x: deployments.apps \"x\" not found (HTTP 404, NotFound)"
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = api_err("failed to read Deployment/x")(kube::Error::Service(Box::new(io)));
        assert!(!not_found(&e));
        assert_eq!(
            e.to_string(),
            "failed to read Deployment/x: cannot reach the API server: Connection refused"
        );
    }

    #[test]
    fn pods_are_ready_waiting_or_stuck() {
        assert_eq!(
            pod_verdict(&pod(serde_json::json!({"conditions": [{"type": "Ready", "status": "True"}]}))),
            PodVerdict::Ready
        );
        assert_eq!(pod_verdict(&pod(serde_json::json!({"phase": "Pending"}))), PodVerdict::Waiting);
        let v = pod_verdict(&pod(
            serde_json::json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}),
        ));
        assert!(matches!(v, PodVerdict::Stuck(m) if m.contains("Insufficient nvidia.com/gpu")));
        // What the real scheduler says while the claim is being bound: not stuck.
        let v = pod_verdict(&pod(
            serde_json::json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."}]}),
        ));
        assert_eq!(v, PodVerdict::Waiting);
        let v = pod_verdict(&pod(
            serde_json::json!({"containerStatuses": [{"name": "vllm", "image": "x", "imageID": "", "ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}}]}),
        ));
        assert!(matches!(v, PodVerdict::Stuck(m) if m.contains("CrashLoopBackOff")));
    }

    #[test]
    fn jobs_complete_or_fail() {
        let job = |c: Value| -> Job {
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": "j"}, "status": {"conditions": c}}),
            )
            .unwrap()
        };
        assert_eq!(
            job_verdict(&job(serde_json::json!([{"type": "Complete", "status": "True"}]))),
            Some(Ok(()))
        );
        assert!(
            matches!(job_verdict(&job(serde_json::json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]))), Some(Err(m)) if m.contains("BackoffLimit"))
        );
        assert_eq!(job_verdict(&job(serde_json::json!([]))), None);
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(parse_endpoint("k8s://bench/vllm-x:8000"), Some(("bench".into(), "vllm-x".into(), 8000)));
        assert_eq!(parse_endpoint("http://x"), None);
    }
}
