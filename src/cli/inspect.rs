//! The commands that look at a work directory or a cluster without running a plan: `status`,
//! `archive`, `gc`.

use super::{
    CliError,
    args::{ArchiveArgs, DirArgs, GcArgs},
    engine::{dir_or_latest, load_plan},
};
use crate::workdir::layout;
use crate::{
    exec::{self, State},
    resolve::Resolved,
    workdir::{WorkDir, archive},
};

pub(crate) async fn status(args: DirArgs) -> Result<(), CliError> {
    let dir = dir_or_latest(args.dir);
    if crate::experiment::state::ExpState::is_experiment(&dir) {
        return super::experiment::status(&dir);
    }
    let plan = load_plan(&dir)?;
    let state = match State::load(&dir, &plan.run_id) {
        Ok(state) => state,
        Err(e) => {
            outln!("warning: {e}");
            State::fresh(&plan.run_id)
        }
    };
    let resolved = Resolved::from_file(&dir.join(layout::RESOLVED))?;
    outln!("run {} in {}", plan.run_id, dir.display());
    if let Some(url) = resolved.get("endpoint.url").and_then(|v| v.as_str()) {
        outln!("endpoint {url}");
    }
    let wid = plan.steps.iter().map(|s| s.id.len()).max().unwrap_or(4);
    for s in &plan.steps {
        let st = state.steps.get(&s.id);
        let status = st.map_or("pending", |st| st.status.as_str());
        let took = st.and_then(|st| st.duration_s).map(|d| format!("{d:.1} s")).unwrap_or_default();
        let note = st.and_then(|st| st.error.clone().or_else(|| st.summary.clone())).unwrap_or_default();
        let note = note.lines().next().unwrap_or("").to_string();
        outln!("{:<wid$}  {:<9}  {:>8}  {note}", s.id, status, took);
    }
    let left = state.leftovers(&dir);
    if resolved.get("platform").and_then(|v| v.as_str()) == Some("kubernetes") && !left.is_empty() {
        cluster_status(&resolved).await;
    }
    if left.is_empty() {
        outln!("nothing is up");
    } else {
        outln!("up:");
        for (id, rec) in left {
            outln!("  {}", exec::describe_leftover(&id, &rec));
        }
    }
    let mut runs: Vec<(String, usize)> = std::fs::read_dir(dir.join(layout::RESULTS))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().to_string();
            name.parse::<u32>().ok()?;
            let rows = std::fs::read_to_string(dir.join(layout::RESULTS).join(&name).join("requests.csv"))
                .map(|t| t.lines().count().saturating_sub(1))
                .unwrap_or(0);
            Some((name, rows))
        })
        .collect();
    runs.sort();
    if !runs.is_empty() {
        let list: Vec<String> = runs.iter().map(|(id, n)| format!("{id} ({n} requests)")).collect();
        outln!("harness runs: {} (results/<run>/, analysis/<run>/)", list.join(", "));
    }
    if !state.interrupts.is_empty() {
        outln!("interrupted at {}", state.interrupts.join(", "));
    }
    let running = state.steps.values().any(|s| s.status == exec::Status::Running);
    if running && WorkDir::open(&dir).is_ok() {
        outln!(
            "steps are marked running but no benchflow holds this work directory: it was killed; \
             `benchflow teardown {}` removes what is up",
            dir.display()
        );
    }
    Ok(())
}

/// What the cluster says about the run's Deployment and pods (best effort: status must work
/// when the cluster does not answer).
async fn cluster_status(resolved: &Resolved) {
    use crate::platform::kube;
    let s = |p: &str| resolved.get(p).and_then(|v| v.as_str()).map(str::to_string);
    let target = kube::Target { context: s("kubernetes.context"), kubeconfig: s("kubernetes.kubeconfig") };
    let (Some(ns), Some(name)) = (s("kubernetes.namespace"), s("k8s.name")) else { return };
    let client = match target.client().await {
        Ok(c) => c,
        Err(e) => return outln!("cluster: {e}"),
    };
    // The engines, then what stands in front of them: a router, or llm-d's picker and gateway.
    for deployment in [Some(name), s("k8s.router.name"), s("k8s.gateway.epp.name")].into_iter().flatten() {
        deployment_status(&client, &ns, &deployment).await;
    }
    let gateway = [
        ("gateway.networking.k8s.io/v1", "Gateway", s("k8s.gateway.name"), &["Accepted", "Programmed"][..]),
        (
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            s("k8s.gateway.route"),
            &["Accepted", "ResolvedRefs"][..],
        ),
        (
            "inference.networking.k8s.io/v1",
            "InferencePool",
            s("k8s.gateway.pool"),
            &["Accepted", "ResolvedRefs"][..],
        ),
    ];
    for (api_version, kind, name, types) in gateway {
        let Some(name) = name else { continue };
        let r = kube::ObjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: Some(ns.clone()),
            name: name.clone(),
        };
        let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        let line = match kube::get(&client, &r).await {
            Ok(Some(obj)) => match crate::platform::gateway_api::conditions_met(&obj, &types) {
                Ok(()) => format!("{}: ready", types.join(" + ")),
                Err(missing) => format!("not ready: {missing}"),
            },
            Ok(None) => "not there".into(),
            Err(e) => e.to_string(),
        };
        outln!("{kind}/{name} in {ns}: {line}");
    }
}

/// A Deployment's available replicas and each pod's verdict.
async fn deployment_status(client: &kube::Client, ns: &str, name: &str) {
    use crate::platform::kube;
    match kube::deployment_pods(client, ns, name).await {
        Ok((d, pods)) => {
            let st = d.status.unwrap_or_default();
            outln!(
                "Deployment/{name} in {ns}: {}/{} available",
                st.available_replicas.unwrap_or(0),
                d.spec.and_then(|s| s.replicas).unwrap_or(1)
            );
            for p in pods {
                let verdict = match kube::pod_verdict(&p) {
                    kube::PodVerdict::Ready => "ready".to_string(),
                    kube::PodVerdict::Waiting => "not ready yet".to_string(),
                    kube::PodVerdict::Stuck(why) => format!("stuck: {why}"),
                };
                outln!("  pod {}: {verdict}", p.metadata.name.unwrap_or_default());
            }
        }
        Err(e) => outln!("Deployment/{name} in {ns}: {e}"),
    }
}

pub(crate) fn archive(args: ArchiveArgs) -> Result<(), CliError> {
    if !args.dir.join(layout::RESOLVED).is_file() {
        return Err(CliError::Usage(format!("{} is not a benchflow work directory", args.dir.display())));
    }
    // Not while a run writes into it: the lock is held while packing.
    let _lock = WorkDir::open(&args.dir)?;
    let (path, files) = archive::pack(&args.dir, args.output.as_deref())?;
    outln!("{}", path.display());
    errln!("archived {files} files with MANIFEST.sha256");
    Ok(())
}

/// `benchflow gc`: finds what benchflow left in a namespace by label, and deletes it (the
/// namespace too when benchflow created it).
pub(crate) async fn gc(args: GcArgs) -> Result<(), CliError> {
    use crate::platform::{kube, kubernetes::RUN_LABEL};
    let target =
        kube::Target { context: args.context, kubeconfig: args.kubeconfig.map(|k| k.display().to_string()) };
    let failed = CliError::Kube;
    let client = target.client().await.map_err(failed)?;
    let selector = match &args.run {
        Some(id) => format!("{RUN_LABEL}={}", crate::platform::kubernetes::label_value(id)),
        None => "app.kubernetes.io/managed-by=benchflow".to_string(),
    };
    let mut objects = kube::labelled(&client, &args.namespace, &selector).await.map_err(failed)?;
    let ns = kube::ObjectRef {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: args.namespace.clone(),
    };
    if kube::has_labels(&client, &ns, &selector).await.map_err(failed)? {
        objects.push(ns);
    }
    if objects.is_empty() {
        errln!("nothing of benchflow's in namespace {} ({selector})", args.namespace);
        return Ok(());
    }
    for r in &objects {
        if args.dry_run {
            outln!("would delete {r}");
        } else {
            let deleted =
                kube::delete(&client, r, std::time::Duration::from_secs(300)).await.map_err(failed)?;
            outln!("{} {r}", if deleted { "deleted" } else { "already gone:" });
        }
    }
    Ok(())
}
