//! `preflight`: before anything is created: the API server answers, the credentials may do
//! everything the stack's standup, run and teardown will do (asked of the server's authorizer,
//! one SelfSubjectAccessReview per action; every refusal listed at once), the namespace is
//! usable, an existing model-cache claim named by the scenario exists (else a clear error, and
//! nothing is created), some node offers the GPUs asked for (a warning only: the cluster may
//! scale), and for an llm-d stack, that the API server serves the Gateway API's and the
//! Inference Extension's kinds (API discovery) and has the GatewayClass the scenario names.

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolumeClaim};
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};

use super::{Ctx, Done, Step, StepError};
use crate::{
    platform::{access, kube::Target},
    spec::harness::Placement,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default)]
    pub cluster: Target,
    pub namespace: String,
    /// An existing claim that must be there.
    #[serde(default)]
    pub pvc: Option<String>,
    pub gpus: u32,
    #[serde(default)]
    pub gpu_product: Option<String>,
    /// A download Job runs before the engine (its permissions are asked for too).
    #[serde(default)]
    pub download: bool,
    /// Where the load generator runs: in the cluster it is a Job with a ConfigMap.
    #[serde(default)]
    pub placement: Option<Placement>,
    /// A router stack: the router's ServiceAccount, Role and RoleBinding are asked for too.
    #[serde(default)]
    pub router: bool,
    /// The verbs on pods the router's Role grants (the credentials must hold them to grant them).
    #[serde(default = "default_router_pod_verbs")]
    pub router_pod_verbs: Vec<String>,
    /// An llm-d stack: the GatewayClass its Gateway uses (the Gateway API and Inference
    /// Extension kinds, and the rights on them, are checked too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_class: Option<String>,
}

fn default_router_pod_verbs() -> Vec<String> {
    ["get", "list", "watch"].map(String::from).to_vec()
}

/// The kinds an llm-d stack applies that only CRDs provide.
const GATEWAY_KINDS: [(&str, &str, &str); 3] = [
    ("gateway.networking.k8s.io", "v1", "Gateway"),
    ("gateway.networking.k8s.io", "v1", "HTTPRoute"),
    ("inference.networking.k8s.io", "v1", "InferencePool"),
];

/// The cluster serves the kinds an llm-d stack applies, and has its GatewayClass; a note.
async fn gateway(client: &kube::Client, class: &str) -> Result<String, String> {
    use kube::api::{DynamicObject, GroupVersionKind};
    let mut missing = Vec::new();
    for (group, version, kind) in GATEWAY_KINDS {
        if let Err(e) =
            crate::platform::kube::discover(client, &GroupVersionKind::gvk(group, version, kind)).await
        {
            missing.push(format!("  - {e}"));
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "this cluster cannot run an llm-d stack (deploy.method: llm-d):\n{}",
            missing.join("\n")
        ));
    }
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "GatewayClass");
    let ar = crate::platform::kube::discover(client, &gvk).await.map_err(|e| e.to_string())?;
    let classes: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    match classes.list(&ListParams::default()).await {
        Ok(list) => {
            let names: Vec<String> = list.items.iter().filter_map(|c| c.metadata.name.clone()).collect();
            let Some(found) = list.items.iter().find(|c| c.metadata.name.as_deref() == Some(class)) else {
                return Err(format!(
                    "the cluster has no GatewayClass `{class}` (deploy.gateway.class); {}: install its \
                     gateway controller, or name one of those",
                    if names.is_empty() {
                        "it has none".to_string()
                    } else {
                        format!("it has {}", names.join(", "))
                    }
                ));
            };
            let controller =
                found.data.pointer("/spec/controllerName").and_then(|v| v.as_str()).unwrap_or("?");
            Ok(format!(
                "Gateway API and Inference Extension kinds served; GatewayClass {class} (controller {controller})"
            ))
        }
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(format!(
            "Gateway API and Inference Extension kinds served; these credentials may not list GatewayClasses: \
             `{class}` taken to exist"
        )),
        Err(e) => Err(format!("cannot list GatewayClasses: {e}")),
    }
}

impl Step for Args {
    fn describe(&self) -> Vec<String> {
        vec![format!(
            "check the API server, namespace {}{}, nodes with {} nvidia.com/gpu{}",
            self.namespace,
            self.pvc.as_ref().map(|p| format!(", claim {p}")).unwrap_or_default(),
            self.gpus,
            self.gpu_product.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()
        )]
    }

    async fn run(self, ctx: &Ctx) -> Result<Done, StepError> {
        let fail = |e: String| StepError::Failed(e);
        let client = self.cluster.client().await.map_err(|e| fail(e.to_string()))?;
        let version = client
            .apiserver_version()
            .await
            .map_err(|e| fail(format!("the Kubernetes API server does not answer: {e}")))?;
        let mut notes = vec![format!("API server {}.{}", version.major, version.minor)];
        if let Some(class) = &self.gateway_class {
            // Before anything else: without these kinds nothing of the stack can be applied.
            notes.push(gateway(&client, class).await.map_err(fail)?);
        }
        let namespaces: Api<Namespace> = Api::all(client.clone());
        // A user confined to a namespace may not read Namespace objects: it must exist then.
        let (exists, note) = match namespaces.get_opt(&self.namespace).await {
            Ok(Some(_)) => (true, format!("namespace {} exists", self.namespace)),
            Ok(None) => (false, format!("namespace {} will be created", self.namespace)),
            Err(kube::Error::Api(s)) if s.code == 403 => (
                true,
                format!("namespace {} cannot be read with these credentials: taken to exist", self.namespace),
            ),
            Err(e) => return Err(fail(format!("cannot read namespace {}: {e}", self.namespace))),
        };
        notes.push(note);
        let mut wanted = access::standalone(&self.namespace);
        if self.router {
            wanted.extend(access::router(&self.namespace, &self.router_pod_verbs));
        }
        if self.gateway_class.is_some() {
            wanted.extend(access::llm_d(&self.namespace));
        }
        let in_cluster = self.placement == Some(Placement::Cluster);
        if self.download || in_cluster {
            wanted.extend(access::jobs(&self.namespace, in_cluster));
        }
        if !exists {
            wanted.extend(access::namespace_lifecycle());
        }
        let mut seen = std::collections::HashSet::new();
        wanted.retain(|a| seen.insert(a.to_string()));
        let refused = access::refused(&client, &wanted)
            .await
            .map_err(|e| fail(format!("cannot ask the API server what these credentials may do: {e}")))?;
        if !refused.is_empty() {
            let who = access::whoami(&client).await.map(|u| format!(" (user {u})")).unwrap_or_default();
            let list: Vec<String> = refused.iter().map(|a| format!("  - {a}")).collect();
            return Err(fail(format!(
                "the Kubernetes credentials{who} may not do {} of the {} things this stack needs:\n{}\n\
                 ask for a Role (and RoleBinding) in namespace {} granting them{}; \
                 `kubectl auth can-i --list -n {}` shows what you may do now",
                refused.len(),
                wanted.len(),
                list.join("\n"),
                self.namespace,
                if exists { "" } else { ", or create the namespace beforehand" },
                self.namespace
            )));
        }
        notes.push(format!("may do all {} actions the stack needs", wanted.len()));
        if let Some(pvc) = &self.pvc {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &self.namespace);
            match claims.get_opt(pvc).await {
                Ok(Some(_)) => notes.push(format!("claim {pvc} exists (used, never deleted)")),
                Ok(None) => {
                    return Err(fail(format!(
                        "the model-cache claim `{pvc}` (kubernetes.pvc.name) does not exist in namespace {}; \
                         create it, or remove pvc.name to let benchflow create one for this run",
                        self.namespace
                    )));
                }
                Err(e) => return Err(fail(format!("cannot read claim {pvc}: {e}"))),
            }
        }
        let nodes: Api<Node> = Api::all(client.clone());
        match nodes.list(&ListParams::default()).await {
            Ok(list) => {
                let fits = list.items.iter().filter(|n| {
                    let gpus = n
                        .status
                        .as_ref()
                        .and_then(|s| s.allocatable.as_ref())
                        .and_then(|a| a.get("nvidia.com/gpu"))
                        .and_then(|q| q.0.parse::<u32>().ok())
                        .unwrap_or(0);
                    let product = n.metadata.labels.as_ref().and_then(|l| l.get("nvidia.com/gpu.product"));
                    gpus >= self.gpus && self.gpu_product.as_ref().is_none_or(|p| product == Some(p))
                });
                let count = fits.count();
                if count == 0 {
                    let warning = format!(
                        "warning: no node offers {} nvidia.com/gpu{}; the pods may stay Pending",
                        self.gpus,
                        self.gpu_product.as_ref().map(|p| format!(" of product {p}")).unwrap_or_default()
                    );
                    ctx.progress(warning.clone());
                    notes.push(warning);
                } else {
                    notes.push(format!("{count} node(s) offer the GPUs"));
                }
            }
            Err(kube::Error::Api(s)) if s.code == 403 => {
                notes.push("these credentials may not list nodes: GPU check skipped".into())
            }
            Err(e) => notes.push(format!("cannot list nodes ({e}); GPU check skipped")),
        }
        for n in &notes {
            ctx.note(&format!("# {n}"));
        }
        Ok(Done::with_summary(notes.join("; ")))
    }
}
