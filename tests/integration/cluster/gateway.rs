//! TEST SUPPORT ONLY: the Gateway API and Inference Extension for the real control plane: their
//! CRDs as the upstream Go modules ship them (`scripts/control-plane crds`), two GatewayClasses
//! (`benchflow-test`, driven by the controller below, and `benchflow-idle`, whose controller
//! never runs), and a gateway controller for class `benchflow-test` that does what Istio's does
//! to the objects, as a client of the API server:
//!
//! * a Gateway of the class gets a Deployment and a Service named as the Gateway (kgateway's
//!   naming), owned by it (the real garbage collector removes them with it); it is `Accepted`,
//!   and `Programmed` once its Deployment has a ready pod (whose port-forwards reach the data
//!   plane below); a listener on a port other than 80 is refused (`Accepted` False,
//!   `UnsupportedValue`), the one rule it has, to show benchflow a refusal;
//! * an HTTPRoute whose parent is such a Gateway is `Accepted`, and `ResolvedRefs` when every
//!   InferencePool it sends to exists (else `False`, reason `BackendNotFound`);
//! * an InferencePool a route of it sends to is `Accepted` by that Gateway, and `ResolvedRefs`
//!   when the Service of its endpoint picker exists.
//!
//! It reads everything again every 200 ms (a controller's resync, not a test's wait).

use std::{path::Path, time::Duration};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};

pub const CLASS: &str = "benchflow-test";
pub const IDLE_CLASS: &str = "benchflow-idle";
const CONTROLLER: &str = "benchflow.io/test-gateway";

fn resource(group: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", kind))
}

/// Installs the CRDs (waiting until they are served) and the classes, and starts the controller.
pub fn install(kubectl: impl Fn(&[&str], &str) -> String, kubeconfig: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/control-plane");
    let out = std::process::Command::new(&script).arg("crds").output().expect("scripts/control-plane crds");
    assert!(out.status.success(), "fetching the CRDs failed: {}", String::from_utf8_lossy(&out.stderr));
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // Server-side: the HTTPRoute CRD is larger than client-side apply's annotation allows.
    kubectl(&["apply", "--server-side", "-f", &dir], "");
    kubectl(&["wait", "--for", "condition=Established", "--timeout", "60s", "crd", "--all"], "");
    let classes = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{ name: {CLASS} }}\nspec: {{ controllerName: {CONTROLLER} }}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{ name: {IDLE_CLASS} }}\nspec: {{ controllerName: benchflow.io/nobody }}\n"
    );
    kubectl(&["apply", "-f", "-"], &classes);
    let kubeconfig = kubeconfig.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let config = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await.unwrap();
            let client = Client::try_from(config).unwrap();
            loop {
                let _ = reconcile(&client).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    });
}

fn condition(kind: &str, ok: bool, reason: &str, generation: i64) -> Value {
    json!({"type": kind, "status": if ok { "True" } else { "False" }, "reason": reason,
           "message": format!("set by the benchflow test gateway controller"), "observedGeneration": generation,
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

async fn reconcile(client: &Client) -> Result<(), kube::Error> {
    let classes: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("gateway.networking.k8s.io", "GatewayClass"));
    let status = PatchParams::default();
    for c in classes.list(&ListParams::default()).await?.items {
        if c.data["spec"]["controllerName"] == CONTROLLER {
            let s = json!({"status": {"conditions": [condition("Accepted", true, "Accepted", 1)]}});
            classes
                .patch_status(c.metadata.name.as_deref().unwrap_or_default(), &status, &Patch::Merge(&s))
                .await?;
        }
    }
    let gateways: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("gateway.networking.k8s.io", "Gateway"));
    let routes: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("gateway.networking.k8s.io", "HTTPRoute"));
    let pools: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("inference.networking.k8s.io", "InferencePool"));
    let mut ours = Vec::new();
    for g in gateways.list(&ListParams::default()).await?.items {
        if g.data["spec"]["gatewayClassName"] != CLASS || g.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let (ns, name) =
            (g.metadata.namespace.clone().unwrap_or_default(), g.metadata.name.clone().unwrap_or_default());
        let generation = g.metadata.generation.unwrap_or(1);
        let port = g.data["spec"]["listeners"][0]["port"].as_i64().unwrap_or(80);
        let owner = json!([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": name,
                            "uid": g.metadata.uid, "controller": true}]);
        let labels = json!({"gateway.networking.k8s.io/gateway-name": name});
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "proxy", "image": "benchflow.test/gateway-proxy", "ports": [{"containerPort": 8080}]}]}}}});
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": port, "targetPort": 8080}]}});
        let apply = PatchParams::apply(CONTROLLER.replace('/', "-").as_str()).force();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments.patch(&name, &apply, &Patch::Apply(&deployment)).await?;
        Api::<Service>::namespaced(client.clone(), &ns).patch(&name, &apply, &Patch::Apply(&service)).await?;
        let ready =
            deployments.get(&name).await?.status.and_then(|s| s.ready_replicas).is_some_and(|n| n > 0);
        // Its one rule, to see a refusal: it listens on port 80 only.
        let mut accepted = condition("Accepted", true, "Accepted", generation);
        let mut programmed =
            condition("Programmed", ready, if ready { "Programmed" } else { "Pending" }, generation);
        if port != 80 {
            accepted = condition("Accepted", false, "UnsupportedValue", generation);
            accepted["message"] = json!(format!("listener port {port}: this controller serves port 80 only"));
            programmed = condition("Programmed", false, "Invalid", generation);
        }
        let s = json!({"status": {
            "conditions": [accepted, programmed],
            "addresses": [{"type": "Hostname", "value": format!("{name}.{ns}.svc.cluster.local")}]}});
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &ns,
            &resource("gateway.networking.k8s.io", "Gateway"),
        )
        .patch_status(&name, &status, &Patch::Merge(&s))
        .await?;
        ours.push((ns, name));
    }
    let all_pools = pools.list(&ListParams::default()).await?.items;
    let mut pool_parents: Vec<(String, String, String)> = Vec::new();
    for r in routes.list(&ListParams::default()).await?.items {
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let generation = r.metadata.generation.unwrap_or(1);
        let mut parents = Vec::new();
        for p in r.data["spec"]["parentRefs"].as_array().into_iter().flatten() {
            let gw = p["name"].as_str().unwrap_or_default().to_string();
            if !ours.contains(&(ns.clone(), gw.clone())) {
                continue;
            }
            let mut resolved = true;
            for b in r.data["spec"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|rule| rule["backendRefs"].as_array().into_iter().flatten())
            {
                let pool = b["name"].as_str().unwrap_or_default().to_string();
                let exists = all_pools.iter().any(|p| {
                    p.metadata.namespace.as_deref() == Some(&ns) && p.metadata.name.as_deref() == Some(&pool)
                });
                resolved &= b["kind"] == "InferencePool" && exists;
                if exists {
                    pool_parents.push((ns.clone(), pool, gw.clone()));
                }
            }
            parents.push(json!({"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw},
                "controllerName": CONTROLLER,
                "conditions": [condition("Accepted", true, "Accepted", generation),
                               condition("ResolvedRefs", resolved, if resolved { "ResolvedRefs" } else { "BackendNotFound" }, generation)]}));
        }
        if !parents.is_empty() {
            Api::<DynamicObject>::namespaced_with(
                client.clone(),
                &ns,
                &resource("gateway.networking.k8s.io", "HTTPRoute"),
            )
            .patch_status(
                r.metadata.name.as_deref().unwrap_or_default(),
                &status,
                &Patch::Merge(&json!({"status": {"parents": parents}})),
            )
            .await?;
        }
    }
    for (ns, pool, gw) in pool_parents {
        let Some(p) = all_pools.iter().find(|p| {
            p.metadata.namespace.as_deref() == Some(&ns) && p.metadata.name.as_deref() == Some(&pool)
        }) else {
            continue;
        };
        let generation = p.metadata.generation.unwrap_or(1);
        let epp = p.data["spec"]["endpointPickerRef"]["name"].as_str().unwrap_or_default();
        let resolved = Api::<Service>::namespaced(client.clone(), &ns).get_opt(epp).await?.is_some();
        let s = json!({"status": {"parents": [{"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw},
            "conditions": [condition("Accepted", true, "Accepted", generation),
                           condition("ResolvedRefs", resolved, if resolved { "ResolvedRefs" } else { "InvalidExtensionRef" }, generation)]}]}});
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &ns,
            &resource("inference.networking.k8s.io", "InferencePool"),
        )
        .patch_status(&pool, &status, &Patch::Merge(&s))
        .await?;
    }
    Ok(())
}

/// The test gateway's data plane for one Gateway: an HTTP/1.1 proxy that sends each request to
/// a Ready pod of the InferencePool its HTTPRoute names, the one with the fewest requests in
/// flight through it (the queue scorer's view from the gateway; ties in turn), streaming the
/// answer back. Stops when dropped.
pub struct DataPlane {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Flights = std::sync::Mutex<std::collections::HashMap<std::net::SocketAddr, usize>>;

struct Plane {
    client: Client,
    ns: String,
    gateway: String,
    node: std::sync::Arc<super::node::Shared>,
    flights: Flights,
    turn: std::sync::atomic::AtomicUsize,
}

pub async fn data_plane(
    client: Client,
    ns: String,
    gateway: String,
    node: std::sync::Arc<super::node::Shared>,
) -> DataPlane {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plane = std::sync::Arc::new(Plane {
        client,
        ns,
        gateway,
        node,
        flights: Default::default(),
        turn: Default::default(),
    });
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let plane = plane.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let plane = plane.clone();
                    async move { Ok::<_, std::convert::Infallible>(plane.forward(req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(tcp);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    DataPlane { addr, task }
}

type Body = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;

/// A response body that counts its request in flight until it is done (or dropped).
struct Counted {
    inner: hyper::body::Incoming,
    plane: std::sync::Arc<Plane>,
    backend: std::net::SocketAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.plane.release(self.backend);
    }
}

impl hyper::body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }
}

impl Plane {
    /// The Ready pods of the pool the Gateway's route sends to, as their backends.
    async fn endpoints(&self) -> Result<Vec<std::net::SocketAddr>, String> {
        let err = |e: kube::Error| e.to_string();
        let routes: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.ns,
            &resource("gateway.networking.k8s.io", "HTTPRoute"),
        );
        let route = routes
            .list(&ListParams::default())
            .await
            .map_err(err)?
            .items
            .into_iter()
            .find(|r| {
                r.data["spec"]["parentRefs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == self.gateway.as_str())
            })
            .ok_or("no HTTPRoute for this Gateway")?;
        let pool =
            route.data["spec"]["rules"][0]["backendRefs"][0]["name"].as_str().unwrap_or_default().to_string();
        let pools: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.ns,
            &resource("inference.networking.k8s.io", "InferencePool"),
        );
        let pool = pools.get(&pool).await.map_err(err)?;
        let selector: Vec<String> = pool.data["spec"]["selector"]["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let list = pods.list(&ListParams::default().labels(&selector.join(","))).await.map_err(err)?;
        let backends = self.node.pod_backends.lock().unwrap();
        Ok(list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
            .filter_map(|p| {
                backends.get(&(self.ns.clone(), p.metadata.name.clone().unwrap_or_default())).copied()
            })
            .collect())
    }

    async fn forward(
        self: std::sync::Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Body> {
        use http_body_util::BodyExt;
        let refuse = |code: u16, why: String| {
            let body =
                http_body_util::Full::new(bytes::Bytes::from(why)).map_err(|never| match never {}).boxed();
            hyper::Response::builder().status(code).body(body).unwrap()
        };
        let endpoints = match self.endpoints().await {
            Ok(e) if !e.is_empty() => e,
            Ok(_) => return refuse(503, "no ready endpoint in the pool".into()),
            Err(e) => return refuse(500, e),
        };
        let backend = {
            let mut flights = self.flights.lock().unwrap();
            let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let least = endpoints.iter().map(|e| flights.get(e).copied().unwrap_or(0)).min().unwrap_or(0);
            let tied: Vec<_> =
                endpoints.iter().filter(|e| flights.get(e).copied().unwrap_or(0) == least).collect();
            let pick = *tied[turn % tied.len()];
            *flights.entry(pick).or_insert(0) += 1;
            pick
        };
        let counted = |inner| Counted { inner, plane: self.clone(), backend };
        let answer = async {
            let tcp = tokio::net::TcpStream::connect(backend).await.map_err(|e| e.to_string())?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(|e| e.to_string())
        }
        .await;
        match answer {
            Ok(resp) => resp.map(|body| counted(body).boxed()),
            Err(e) => {
                self.release(backend);
                refuse(502, e)
            }
        }
    }

    /// A request to `backend` is no longer in flight.
    fn release(&self, backend: std::net::SocketAddr) {
        if let Some(n) = self.flights.lock().unwrap().get_mut(&backend) {
            *n = n.saturating_sub(1);
        }
    }
}
