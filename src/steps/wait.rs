//! `wait`: until a Deployment is available (then checks that the live object is the rendered
//! one: image, arguments, GPU count) or a Job is complete, through watches; or until objects
//! report status conditions True (an llm-d stack's Gateway `Programmed`, its HTTPRoute and
//! InferencePool `Accepted` by their gateway). It fails fast on a pod that will not become ready
//! by itself (CrashLoopBackOff, ImagePullBackOff, unschedulable, e.g. insufficient
//! `nvidia.com/gpu`), and on timeout; either way the pods' events and last log lines (or the
//! objects' conditions) are saved under `setup/diagnostics/` and quoted in the error.

use crate::workdir::layout;
use std::time::Duration;

use ::kube::{
    Client,
    api::Api,
    runtime::{WatchStreamExt, watcher},
};
use futures::StreamExt;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::platform::gateway_api::{conditions_met, refused};

use super::{Ctx, Done, Inputs, Step, StepError};
use crate::{
    platform::{
        kube::{self, PodVerdict, Target},
        kubernetes,
    },
    units::Secs,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default)]
    pub cluster: Target,
    pub namespace: String,
    /// Wait until this Deployment is available ...
    #[serde(default)]
    pub deployment: Option<String>,
    /// ... or until this Job is complete.
    #[serde(default)]
    pub job: Option<String>,
    pub timeout: Secs,
    /// The template of the Deployment the live one must match (rendered into `expect` by the
    /// planner) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_template: Option<String>,
    /// ... from this directory of custom templates (else the shipped ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_dir: Option<String>,
    /// The rendered Deployment the live one must match.
    #[serde(default)]
    pub expect: Option<Value>,
    /// ... or until each of these objects reports its conditions True.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Conditions>,
}

/// An object and the status conditions it must report True: in `status.conditions`, or (for
/// routes and pools, which report per parent Gateway) in every `status.parents[].conditions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub types: Vec<String>,
}

/// How long a refusal must stand before the wait gives up on it (a controller may say `False`
/// for a moment while it catches up).
const REFUSAL_GRACE: Duration = Duration::from_secs(10);

fn fail(e: impl std::fmt::Display) -> StepError {
    StepError::Failed(e.to_string())
}

/// Whether a Deployment has all its replicas available for its current generation.
pub(crate) fn available(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &d.status else { return false };
    st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && st.available_replicas.unwrap_or(0) >= want
        && st.updated_replicas.unwrap_or(want) >= want
}

/// Differences between the live Deployment and the rendered one (image, args, GPUs).
pub(crate) fn mismatches(live: &Deployment, rendered: &Value) -> Vec<String> {
    let live = serde_json::to_value(live).unwrap_or_default();
    let mut out = Vec::new();
    for (what, pointer) in [
        ("image", "/spec/template/spec/containers/0/image"),
        ("args", "/spec/template/spec/containers/0/args"),
        ("GPU request", "/spec/template/spec/containers/0/resources/requests/nvidia.com~1gpu"),
        ("GPU limit", "/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu"),
        ("replicas", "/spec/replicas"),
    ] {
        let (l, r) = (live.pointer(pointer), rendered.pointer(pointer));
        if l != r {
            out.push(format!(
                "{what}: live {} ≠ rendered {}",
                l.unwrap_or(&Value::Null),
                r.unwrap_or(&Value::Null)
            ));
        }
    }
    out
}

impl Step for Args {
    fn compile(&mut self, inputs: &Inputs) -> Result<(), String> {
        if let Some(file) = self.expect_template.take() {
            let docs = kubernetes::render_manifests(inputs.templates, self.template_dir.as_deref(), &[file])?;
            self.expect =
                docs.into_iter().find(|d| d.get("kind").and_then(Value::as_str) == Some("Deployment"));
        }
        self.template_dir = None;
        Ok(())
    }

    fn describe(&self) -> Vec<String> {
        let what = match (&self.deployment, &self.job) {
            (Some(d), _) => format!("Deployment/{d} available"),
            (None, Some(j)) => format!("Job/{j} complete"),
            (None, None) if !self.conditions.is_empty() => self
                .conditions
                .iter()
                .map(|c| format!("{}/{} {}", c.kind, c.name, c.types.join(" + ")))
                .collect::<Vec<_>>()
                .join(", "),
            (None, None) => "nothing".into(),
        };
        let fast = if self.conditions.is_empty() { "; fail fast on stuck pods" } else { "" };
        vec![format!("wait until {what} in {} (within {} s{fast})", self.namespace, self.timeout.0)]
    }

    async fn run(self, ctx: &Ctx) -> Result<Done, StepError> {
        self.wait(ctx).await
    }
}

impl Args {
    /// Saves the diagnostics of `pods` and returns the error quoting them.
    async fn diagnose(&self, client: &Client, ctx: &Ctx, pods: &[String], why: String) -> StepError {
        let dir = ctx.workdir.join(layout::DIAGNOSTICS);
        let _ = std::fs::create_dir_all(&dir);
        let mut quoted = String::new();
        for pod in pods {
            let text = kube::pod_diagnostics(client, &self.namespace, pod).await;
            let path = dir.join(format!("{}-{pod}.txt", ctx.step));
            let text = crate::redact::text(&text).into_owned();
            let _ = std::fs::write(&path, &text);
            let tail: Vec<&str> = text.lines().rev().take(12).collect();
            quoted.push_str(&format!("\n  {} ({}):\n", pod, path.display()));
            for l in tail.into_iter().rev() {
                quoted.push_str(&format!("    | {l}\n"));
            }
        }
        ctx.note(&format!("# {why}{quoted}"));
        StepError::Failed(format!("{why}{quoted}"))
    }

    async fn wait(&self, ctx: &Ctx) -> Result<Done, StepError> {
        let client = self.cluster.client().await.map_err(fail)?;
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs_f64(self.timeout.0);
        match (&self.deployment, &self.job) {
            (Some(name), _) => self.deployment(&client, ctx, name, deadline).await,
            (None, Some(name)) => self.job(&client, ctx, name, deadline).await,
            (None, None) if !self.conditions.is_empty() => self.conditions(&client, ctx, deadline).await,
            (None, None) => Err(fail("`wait` needs `deployment`, `job` or `conditions`")),
        }
        .map(|summary| Done {
            summary: format!("{summary} after {:.1} s", t0.elapsed().as_secs_f64()),
            undo: None,
        })
    }

    async fn deployment(
        &self,
        client: &Client,
        ctx: &Ctx,
        name: &str,
        deadline: Instant,
    ) -> Result<String, StepError> {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &self.namespace);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let (d, _) = kube::deployment_pods(client, &self.namespace, name).await.map_err(fail)?;
        let labels = d.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
        let selector = kube::selector(&labels);
        let mut dep_events =
            watcher(deployments, watcher::Config::default().fields(&format!("metadata.name={name}")))
                .default_backoff()
                .applied_objects()
                .boxed();
        let mut pod_events = watcher(pods, watcher::Config::default().labels(&selector))
            .default_backoff()
            .applied_objects()
            .boxed();
        let mut next_note = Instant::now() + Duration::from_secs(15);
        loop {
            tokio::select! {
                Some(ev) = dep_events.next() => {
                    if let Ok(d) = ev && available(&d) {
                        if let Some(expect) = &self.expect {
                            let diff = mismatches(&d, expect);
                            if !diff.is_empty() {
                                return Err(fail(format!("Deployment/{name} is up but is not the one rendered: {}", diff.join("; "))));
                            }
                        }
                        let n = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
                        return Ok(format!("Deployment/{name}: {n} replica(s) available, matches the rendered one"));
                    }
                }
                Some(ev) = pod_events.next() => {
                    if let Ok(pod) = ev && let PodVerdict::Stuck(why) = kube::pod_verdict(&pod) {
                        let pod_name = pod.metadata.name.clone().unwrap_or_default();
                        return Err(self.diagnose(client, ctx, std::slice::from_ref(&pod_name), format!("pod {pod_name} of Deployment/{name}: {why}")).await);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let (_, pods) = kube::deployment_pods(client, &self.namespace, name).await.map_err(fail)?;
                    let names: Vec<String> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
                    return Err(self.diagnose(client, ctx, &names, format!(
                        "Deployment/{name} was not available within {} s (raise timeouts.ready)", self.timeout.0
                    )).await);
                }
                _ = ctx.cancelled() => return Err(StepError::Cancelled),
                _ = tokio::time::sleep_until(next_note) => {
                    ctx.progress(format!("waiting for Deployment/{name} ({:.0} s of {:.0} s)", self.timeout.0 - (deadline - Instant::now()).as_secs_f64(), self.timeout.0));
                    next_note = Instant::now() + Duration::from_secs(15);
                }
            }
        }
    }

    /// Reads the objects every half second until all report their conditions True.
    async fn conditions(&self, client: &Client, ctx: &Ctx, deadline: Instant) -> Result<String, StepError> {
        // Each kind discovered once, not at every read.
        let mut apis = Vec::new();
        for c in &self.conditions {
            let r = kube::ObjectRef {
                api_version: c.api_version.clone(),
                kind: c.kind.clone(),
                namespace: Some(self.namespace.clone()),
                name: c.name.clone(),
            };
            apis.push(r.api(client).await.map_err(fail)?);
        }
        let mut next_note = Instant::now() + Duration::from_secs(15);
        // Refusals seen, since when: a standing one fails the wait before its timeout.
        let mut refusals: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
        loop {
            let mut pending = Vec::new();
            let mut standing = Vec::new();
            for (c, api) in self.conditions.iter().zip(&apis) {
                let state = match api.get_opt(&c.name).await {
                    Ok(Some(obj)) => {
                        let obj = serde_json::to_value(&obj).unwrap_or_default();
                        if let Some(no) = refused(&obj, &c.types) {
                            let key = format!("{}/{}: {no}", c.kind, c.name);
                            let since = *refusals.entry(key.clone()).or_insert_with(Instant::now);
                            if since.elapsed() >= REFUSAL_GRACE {
                                standing.push(key);
                            }
                        }
                        conditions_met(&obj, &c.types)
                    }
                    Ok(None) => Err("it does not exist".into()),
                    Err(e) if kube::transient(&e) => Err(format!("cannot be read now: {e}")),
                    Err(e) => return Err(fail(format!("failed to read {}/{}: {e}", c.kind, c.name))),
                };
                if let Err(why) = state {
                    pending.push(format!("{}/{}: {why}", c.kind, c.name));
                }
            }
            if pending.is_empty() {
                let all: Vec<String> = self
                    .conditions
                    .iter()
                    .map(|c| format!("{}/{} {}", c.kind, c.name, c.types.join(" + ")))
                    .collect();
                return Ok(all.join(", "));
            }
            let now = Instant::now();
            if now >= deadline || !standing.is_empty() {
                let why = match standing.is_empty() {
                    true => format!(
                        "not ready within {} s (raise timeouts.ready; is the gateway's controller running?):\n  {}",
                        self.timeout.0,
                        pending.join("\n  ")
                    ),
                    false => format!(
                        "refused by its controller for {} s (fix the scenario's gateway settings, or the cluster's):\n  {}",
                        REFUSAL_GRACE.as_secs(),
                        standing.join("\n  ")
                    ),
                };
                let dir = ctx.workdir.join(layout::DIAGNOSTICS);
                let _ = std::fs::create_dir_all(&dir);
                let path = dir.join(format!("{}-conditions.txt", ctx.step));
                let _ = std::fs::write(&path, format!("{why}\n"));
                return Err(fail(format!("{why}\n  (also in {})", path.display())));
            }
            if now >= next_note {
                ctx.progress(format!("waiting: {}", pending.join("; ")));
                next_note = now + Duration::from_secs(15);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500).min(deadline - now)) => {}
                _ = ctx.cancelled() => return Err(StepError::Cancelled),
            }
        }
    }

    async fn job(
        &self,
        client: &Client,
        ctx: &Ctx,
        name: &str,
        deadline: Instant,
    ) -> Result<String, StepError> {
        tokio::select! {
            verdict = kube::await_job(client, &self.namespace, name) => match verdict {
                Ok(()) => Ok(format!("Job/{name} complete")),
                Err(why) => {
                    let pods = kube::job_pods(client, &self.namespace, name).await;
                    Err(self.diagnose(client, ctx, &pods, format!("Job/{name} failed: {why}")).await)
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let pods = kube::job_pods(client, &self.namespace, name).await;
                Err(self.diagnose(client, ctx, &pods, format!("Job/{name} did not complete within {} s", self.timeout.0)).await)
            }
            _ = ctx.cancelled() => Err(StepError::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn conditions_are_met_in_every_list_or_say_what_is_missing() {
        let types = vec!["Accepted".to_string(), "ResolvedRefs".to_string()];
        let cond = |t: &str, s: &str| json!({"type": t, "status": s, "reason": "R", "message": "m"});
        let gateway =
            json!({"status": {"conditions": [cond("Accepted", "True"), cond("Programmed", "Unknown")]}});
        assert_eq!(conditions_met(&gateway, &["Accepted".to_string()]), Ok(()));
        let e = conditions_met(&gateway, &["Programmed".to_string()]).unwrap_err();
        assert!(e.contains("Programmed is Unknown (R: m)"), "{e}");
        let route = |second: Value| {
            json!({"status": {"parents": [
                {"parentRef": {"name": "g1"}, "conditions": [cond("Accepted", "True"), cond("ResolvedRefs", "True")]},
                {"parentRef": {"name": "g2"}, "conditions": second}]}})
        };
        assert_eq!(
            conditions_met(&route(json!([cond("Accepted", "True"), cond("ResolvedRefs", "True")])), &types),
            Ok(())
        );
        let e = conditions_met(&route(json!([cond("Accepted", "True")])), &types).unwrap_err();
        assert_eq!(e, "ResolvedRefs for parent g2 not reported");
        let e = conditions_met(&json!({"status": {}}), &types).unwrap_err();
        assert!(e.contains("no status conditions"), "{e}");
        // `False` with a reason is a refusal; `Pending` or `Unknown` is not yet.
        let pending =
            json!({"status": {"conditions": [{"type": "Accepted", "status": "False", "reason": "Pending"}]}});
        assert_eq!(refused(&pending, &types), None);
        let no = route(
            json!([cond("Accepted", "True"), {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound", "message": "no pool p"}]),
        );
        assert_eq!(
            refused(&no, &types).as_deref(),
            Some("ResolvedRefs is False (BackendNotFound: no pool p)")
        );
        assert_eq!(refused(&no, &["Accepted".to_string()]), None, "only the wanted conditions");
    }
}
