//! What the credentials may do, asked of the API server before anything is created: one
//! SelfSubjectAccessReview per action (the server's own authorizer answers, RBAC or not; a GET
//! that happens to succeed proves nothing about PATCH or DELETE), and who the server thinks we
//! are (SelfSubjectReview), for the error message.

use k8s_openapi::api::{
    authentication::v1::SelfSubjectReview,
    authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

/// One action on one kind of object: `patch deployments.apps in namespace bench`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Access {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if !self.subresource.is_empty() {
            write!(f, "/{}", self.subresource)?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => Ok(()),
        }
    }
}

/// What a standalone stack's standup, run and teardown do in its namespace: apply (a PATCH,
/// which the authorizer judges as `create` while the object does not exist yet), read and
/// delete its objects, watch the Deployment and its pods, read events and logs for
/// diagnostics, port-forward to a pod.
pub(crate) fn standalone(namespace: &str) -> Vec<Access> {
    const ACTIONS: &[(&str, &str, &str, &str)] = &[
        ("create", "", "secrets", ""),
        ("patch", "", "secrets", ""),
        ("delete", "", "secrets", ""),
        ("get", "", "persistentvolumeclaims", ""),
        ("create", "", "persistentvolumeclaims", ""),
        ("patch", "", "persistentvolumeclaims", ""),
        ("delete", "", "persistentvolumeclaims", ""),
        ("get", "", "services", ""),
        ("create", "", "services", ""),
        ("patch", "", "services", ""),
        ("delete", "", "services", ""),
        ("get", "apps", "deployments", ""),
        ("create", "apps", "deployments", ""),
        ("patch", "apps", "deployments", ""),
        ("delete", "apps", "deployments", ""),
        ("watch", "apps", "deployments", ""),
        ("list", "", "pods", ""),
        ("watch", "", "pods", ""),
        ("get", "", "pods", "log"),
        ("create", "", "pods", "portforward"),
        ("list", "", "events", ""),
    ];
    in_namespace(namespace, ACTIONS.iter().copied())
}

/// `(verb, group, resource, subresource)` actions in the namespace.
fn in_namespace(
    namespace: &str,
    actions: impl Iterator<Item = (&'static str, &'static str, &'static str, &'static str)>,
) -> Vec<Access> {
    actions
        .map(|(verb, group, resource, subresource)| Access {
            verb,
            group,
            resource,
            subresource,
            namespace: Some(namespace.to_string()),
        })
        .collect()
}

/// Jobs in the namespace (the model download, the harness in the cluster): applied, watched,
/// read, deleted; with `configmaps`, also the ConfigMap that carries the harness's shards.
pub(crate) fn jobs(namespace: &str, configmaps: bool) -> Vec<Access> {
    let job = ["create", "patch", "get", "watch", "delete"].map(|verb| (verb, "batch", "jobs", ""));
    let maps = ["create", "patch", "delete"].map(|verb| (verb, "", "configmaps", ""));
    in_namespace(namespace, job.into_iter().chain(maps.into_iter().filter(|_| configmaps)))
}

/// A router stack's own objects in the namespace: the router's ServiceAccount, and the Role
/// and RoleBinding that let it discover the engine's pods (granting pods get/list/watch, which
/// RBAC allows only to a user who holds them).
pub(crate) fn router(namespace: &str, pod_verbs: &[String]) -> Vec<Access> {
    let mut actions = Vec::new();
    for (group, resource) in [
        ("", "serviceaccounts"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
    ] {
        for verb in ["create", "patch", "delete"] {
            actions.push((verb, group, resource, ""));
        }
    }
    in_namespace(namespace, actions.into_iter())
        .into_iter()
        .chain(pod_verbs.iter().filter_map(|v| {
            // The verbs RBAC knows (a Role granting them needs the granter to hold them).
            let verb = ["get", "list", "watch", "patch", "update", "delete"].into_iter().find(|k| k == v)?;
            Some(Access {
                verb,
                group: "",
                resource: "pods",
                subresource: "",
                namespace: Some(namespace.to_string()),
            })
        }))
        .collect()
}

/// An llm-d stack's own objects beside the engine's: the endpoint picker's ServiceAccount,
/// Role, RoleBinding (granting get/list/watch on pods and the Inference Extension's kinds, which
/// RBAC allows only to a user who holds them), ConfigMap, and the Gateway, HTTPRoute and
/// InferencePool.
pub(crate) fn llm_d(namespace: &str) -> Vec<Access> {
    let mut actions = Vec::new();
    for (group, resource) in [
        ("", "serviceaccounts"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("", "configmaps"),
        ("gateway.networking.k8s.io", "gateways"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("inference.networking.k8s.io", "inferencepools"),
    ] {
        for verb in ["create", "patch", "delete"] {
            actions.push((verb, group, resource, ""));
        }
    }
    for (group, resource) in [
        ("", "pods"),
        ("inference.networking.k8s.io", "inferencepools"),
        ("inference.networking.x-k8s.io", "inferenceobjectives"),
        ("inference.networking.x-k8s.io", "inferencemodelrewrites"),
    ] {
        for verb in ["get", "list", "watch"] {
            if !actions.contains(&(verb, group, resource, "")) {
                actions.push((verb, group, resource, ""));
            }
        }
    }
    actions.extend([
        ("get", "gateway.networking.k8s.io", "gateways", ""),
        ("get", "gateway.networking.k8s.io", "httproutes", ""),
    ]);
    in_namespace(namespace, actions.into_iter())
}

/// Creating the namespace, and deleting it at teardown.
pub(crate) fn namespace_lifecycle() -> Vec<Access> {
    ["create", "delete"]
        .into_iter()
        .map(|verb| Access { verb, group: "", resource: "namespaces", subresource: "", namespace: None })
        .collect()
}

/// The actions the server would refuse, in the order given.
pub(crate) async fn refused(client: &Client, wanted: &[Access]) -> Result<Vec<Access>, kube::Error> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut refused = Vec::new();
    for a in wanted {
        let review = SelfSubjectAccessReview {
            metadata: ObjectMeta::default(),
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(a.verb.to_string()),
                    group: Some(a.group.to_string()),
                    resource: Some(a.resource.to_string()),
                    subresource: (!a.subresource.is_empty()).then(|| a.subresource.to_string()),
                    namespace: a.namespace.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            status: None,
        };
        let answer = reviews.create(&PostParams::default(), &review).await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            refused.push(a.clone());
        }
    }
    Ok(refused)
}

/// Who the API server says the credentials are (`None` if it cannot say).
pub(crate) async fn whoami(client: &Client) -> Option<String> {
    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = SelfSubjectReview::default();
    let answer = reviews.create(&PostParams::default(), &review).await.ok()?;
    answer.status?.user_info?.username
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_as_kubectl_auth_can_i_would_name_them() {
        let all = standalone("bench");
        let shown: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert!(shown.contains(&"patch deployments.apps in namespace bench".to_string()), "{shown:?}");
        assert!(shown.contains(&"create pods/portforward in namespace bench".to_string()), "{shown:?}");
        assert_eq!(namespace_lifecycle()[0].to_string(), "create namespaces");
        assert_eq!(jobs("bench", false).len(), 5);
        let with_maps: Vec<String> = jobs("bench", true).iter().map(ToString::to_string).collect();
        assert!(with_maps.contains(&"create configmaps in namespace bench".to_string()), "{with_maps:?}");
        assert!(with_maps.contains(&"watch jobs.batch in namespace bench".to_string()), "{with_maps:?}");
        let llmd: Vec<String> = llm_d("bench").iter().map(ToString::to_string).collect();
        for a in [
            "create inferencepools.inference.networking.k8s.io in namespace bench",
            "patch httproutes.gateway.networking.k8s.io in namespace bench",
            "watch inferenceobjectives.inference.networking.x-k8s.io in namespace bench",
        ] {
            assert!(llmd.contains(&a.to_string()), "{a}: {llmd:?}");
        }
        assert_eq!(
            llmd.len(),
            llmd.iter().collect::<std::collections::BTreeSet<_>>().len(),
            "no action twice"
        );
    }
}
