//! TEST SUPPORT ONLY: the fake controllers and kubelet of the stand-in. After `pod_ready` a
//! scheduled pod becomes Running and Ready (or crash-loops, fails to pull, never gets ready, as
//! configured); a pod asking for more `nvidia.com/gpu` than the node has left, or for another GPU
//! product, stays Pending/Unschedulable with the scheduler's message and an event. Deployments
//! get their pods and status, Jobs a pod that succeeds or fails, PVCs bind, and a deleted
//! namespace terminates and takes everything in it.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{PodMode, St, status};

/// Called after every write.
pub fn react(st: &St, resource: &str, ns: &str, obj: &Value) {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    match resource {
        "namespaces" if obj["status"]["phase"].is_null() => {
            let mut o = obj.clone();
            o["status"] = json!({"phase": "Active"});
            st.put("namespaces", "", o);
        }
        "persistentvolumeclaims" if obj["status"]["phase"].is_null() => {
            let mut o = obj.clone();
            o["status"] = json!({"phase": "Pending"});
            st.put(resource, ns, o);
            let (st, ns, delay) = (st.clone(), ns.to_string(), st.config.lock().unwrap().pvc_bind);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Some(mut o) = st.get("persistentvolumeclaims", &ns, &name) {
                    o["status"] =
                        json!({"phase": "Bound", "capacity": o["spec"]["resources"]["requests"].clone()});
                    st.put("persistentvolumeclaims", &ns, o);
                }
            });
        }
        "deployments" => reconcile_deployment(st, ns, &name),
        "jobs" if obj["status"].is_null() => start_job(st, ns, &name),
        _ => {}
    }
}

fn gpus_of(pod_spec: &Value) -> u64 {
    pod_spec["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    c["resources"]["limits"]["nvidia.com/gpu"].as_str().and_then(|g| g.parse::<u64>().ok())
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Schedules a pod: `Err(message)` as the scheduler would say it.
fn schedule(st: &St, spec: &Value) -> Result<(), String> {
    let nodes = st.list("nodes", None);
    let node = &nodes[0];
    if let Some(sel) = spec["nodeSelector"].as_object() {
        for (k, v) in sel {
            if node["metadata"]["labels"].get(k) != Some(v) {
                return Err(
                    "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.".into()
                );
            }
        }
    }
    let total: u64 =
        node["status"]["allocatable"]["nvidia.com/gpu"].as_str().and_then(|g| g.parse().ok()).unwrap_or(0);
    let used: u64 = st
        .list("pods", None)
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .map(|p| gpus_of(&p["spec"]))
        .sum();
    if gpus_of(spec) > total.saturating_sub(used) {
        return Err("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.".into());
    }
    Ok(())
}

fn event(st: &St, ns: &str, pod: &str, kind: &str, reason: &str, message: &str) {
    let n = st.store.lock().unwrap().rv;
    st.put(
        "events",
        ns,
        json!({
            "metadata": {"name": format!("{pod}.{n}")},
            "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns},
            "reason": reason, "message": message, "type": kind
        }),
    );
}

fn reconcile_deployment(st: &St, ns: &str, name: &str) {
    let Some(d) = st.get("deployments", ns, name) else { return };
    let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
    let template = d["spec"]["template"].clone();
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    let owned: Vec<Value> = st
        .list("pods", Some(ns))
        .into_iter()
        .filter(|p| p["metadata"]["ownerReferences"][0]["name"] == name)
        .collect();
    let stale = owned
        .iter()
        .any(|p| p["metadata"]["annotations"]["standin/generation"] != json!(generation.to_string()));
    if stale || owned.len() as u64 != replicas {
        for p in &owned {
            st.remove("pods", ns, p["metadata"]["name"].as_str().unwrap_or(""));
        }
        for i in 0..replicas {
            let pod_name = format!("{name}-{generation}x{i}");
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(format!("g{generation}"));
            st.put(
                "pods",
                ns,
                json!({
                    "metadata": {"name": pod_name, "labels": labels,
                                 "annotations": {"standin/generation": generation.to_string()},
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": d["metadata"]["uid"]}]},
                    "spec": template["spec"],
                    "status": {"phase": "Pending"}
                }),
            );
            start_pod(st, ns, &pod_name, Some(name.to_string()));
        }
    }
    refresh_deployment(st, ns, name);
}

/// Deployment status from its pods.
fn refresh_deployment(st: &St, ns: &str, name: &str) {
    let Some(mut d) = st.get("deployments", ns, name) else { return };
    let replicas = d["spec"]["replicas"].as_u64().unwrap_or(1);
    let ready = st
        .list("pods", Some(ns))
        .iter()
        .filter(|p| p["metadata"]["ownerReferences"][0]["name"] == name)
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .count() as u64;
    let available = ready >= replicas;
    let new_status = json!({
        "observedGeneration": d["metadata"]["generation"],
        "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
        "conditions": [
            {"type": "Available", "status": if available { "True" } else { "False" }, "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": if available { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" }}
        ]
    });
    if d["status"] != new_status {
        d["status"] = new_status;
        st.put("deployments", ns, d);
    }
}

fn start_pod(st: &St, ns: &str, pod: &str, owner: Option<String>) {
    let (st, ns, pod) = (st.clone(), ns.to_string(), pod.to_string());
    let (delay, mode) = {
        let c = st.config.lock().unwrap();
        (c.pod_ready, c.pod_mode.clone())
    };
    tokio::spawn(async move {
        tokio::time::sleep(delay / 2).await;
        let Some(mut p) = st.get("pods", &ns, &pod) else { return };
        if let Err(message) = schedule(&st, &p["spec"]) {
            p["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]});
            st.put("pods", &ns, p);
            event(&st, &ns, &pod, "Warning", "FailedScheduling", &message);
            return;
        }
        let container = p["spec"]["containers"][0]["name"].as_str().unwrap_or("main").to_string();
        let image = p["spec"]["containers"][0]["image"].as_str().unwrap_or("").to_string();
        p["status"] = json!({"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
                             "containerStatuses": [{"name": container, "image": image, "imageID": "", "ready": false, "restartCount": 0, "state": {"running": {}}}]});
        st.put("pods", &ns, p);
        tokio::time::sleep(delay / 2).await;
        let Some(mut p) = st.get("pods", &ns, &pod) else { return };
        match mode {
            PodMode::Ready => {
                p["status"]["conditions"][1]["status"] = json!("True");
                p["status"]["containerStatuses"][0]["ready"] = json!(true);
                st.put("pods", &ns, p);
            }
            PodMode::NeverReady => {}
        }
        if let Some(owner) = owner {
            refresh_deployment(&st, &ns, &owner);
        }
    });
}

fn start_job(st: &St, ns: &str, name: &str) {
    let Some(mut job) = st.get("jobs", ns, name) else { return };
    let completions = job["spec"]["completions"].as_u64().unwrap_or(1);
    job["status"] = json!({"active": completions});
    let template = job["spec"]["template"].clone();
    st.put("jobs", ns, job);
    let mut pods = Vec::new();
    for i in 0..completions {
        let pod_name = format!("{name}-{i}-run");
        let mut labels = template["metadata"]["labels"].clone();
        if labels.is_null() {
            labels = json!({});
        }
        labels["job-name"] = json!(name);
        st.put("pods", ns, json!({"metadata": {"name": pod_name, "labels": labels,
                                                "annotations": {"batch.kubernetes.io/job-completion-index": i.to_string()},
                                                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": "j"}]},
                                  "spec": template["spec"], "status": {"phase": "Pending"}}));
        pods.push(pod_name);
    }
    let (st, ns, name) = (st.clone(), ns.to_string(), name.to_string());
    let (delay, fails) = {
        let c = st.config.lock().unwrap();
        (c.job_run, c.job_fails)
    };
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let ok = !fails;
        for pod in &pods {
            if let Some(mut p) = st.get("pods", &ns, pod) {
                p["status"] = json!({"phase": if ok { "Succeeded" } else { "Failed" }});
                st.put("pods", &ns, p);
            }
        }
        if let Some(mut job) = st.get("jobs", &ns, &name) {
            job["status"] = if ok {
                json!({"succeeded": pods.len(), "conditions": [{"type": "Complete", "status": "True"}]})
            } else {
                json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})
            };
            st.put("jobs", &ns, job);
        }
    });
}

/// DELETE: owned pods go with their owner; a namespace terminates, then takes its contents.
pub fn delete(st: &St, resource: &str, ns: &str, name: &str, _propagation: Option<String>) -> Response {
    let Some(obj) = st.get(resource, ns, name) else {
        return status(404, "NotFound", &format!("{resource} \"{name}\" not found"));
    };
    match resource {
        "namespaces" => {
            let mut o = obj.clone();
            o["status"] = json!({"phase": "Terminating"});
            o["metadata"]["deletionTimestamp"] = json!("2026-11-24T00:00:00Z");
            let o = st.put("namespaces", "", o);
            let (st, name, delay) = (st.clone(), name.to_string(), st.config.lock().unwrap().ns_terminate);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let keys: Vec<(String, String, String)> =
                    st.store.lock().unwrap().objects.keys().filter(|(_, n, _)| *n == name).cloned().collect();
                for (r, n, o) in keys {
                    st.remove(&r, &n, &o);
                }
                st.remove("namespaces", "", &name);
            });
            axum::Json(o).into_response()
        }
        "deployments" | "jobs" => {
            for p in st.list("pods", Some(ns)) {
                if p["metadata"]["ownerReferences"][0]["name"] == name {
                    st.remove("pods", ns, p["metadata"]["name"].as_str().unwrap_or(""));
                }
            }
            st.remove(resource, ns, name);
            axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}))
                .into_response()
        }
        _ => {
            st.remove(resource, ns, name);
            axum::Json(obj).into_response()
        }
    }
}

/// A pod's log: what vLLM would print.
pub fn logs() -> impl IntoResponse {
    let text = "INFO Starting vLLM API server on http://0.0.0.0:8000\nINFO Application startup complete.\n";
    ([("content-type", "text/plain")], text.to_string()).into_response()
}
