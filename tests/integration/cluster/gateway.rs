//! TEST SUPPORT ONLY: the Gateway API and Inference Extension for the real control plane: their
//! CRDs as the upstream Go modules ship them (`scripts/control-plane crds`), two GatewayClasses
//! (`benchflow-test`, driven by the controller below, and `benchflow-idle`, whose controller
//! never runs), and a gateway controller for class `benchflow-test` that does what Istio's does
//! to the objects, as a client of the API server:
//!
//! * a Gateway of the class gets a Deployment and a Service named as the Gateway (kgateway's
//!   naming), owned by it (the real garbage collector removes them with it); it is `Accepted`,
//!   and `Programmed` once its Deployment has a ready pod (the node agent runs it, and its
//!   port-forwards reach the namespace's backend, as every pod's do);
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
        let s = json!({"status": {
            "conditions": [condition("Accepted", true, "Accepted", generation),
                           condition("Programmed", ready, if ready { "Programmed" } else { "Pending" }, generation)],
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
