//! The commands that look at a work directory or a cluster without running a plan: `status`,
//! `archive`, `gc`.

use std::path::Path;

use super::{
    CliError,
    args::{ArchiveArgs, GcArgs, StatusArgs},
    documents::{self, HarnessRun, RunStatus, StepStatus},
    engine::{dir_or_latest, load_plan},
};
use crate::workdir::layout;
use crate::{
    exec::{self, State},
    resolve::Resolved,
    workdir::{WorkDir, archive},
};

pub(crate) async fn status(args: StatusArgs) -> Result<(), CliError> {
    let dir = dir_or_latest(args.dir);
    let format = args.output.format;
    if crate::experiment::state::ExpState::is_experiment(&dir) {
        return super::experiment::status(&dir, format);
    }
    let doc = run_status(&dir).await?;
    if format.is_document() {
        if let Some(w) = &doc.warning {
            errln!("warning: {w}");
        }
        return documents::emit(format, &doc);
    }
    print_run_status(&doc);
    Ok(())
}

/// What `status` says of a run's work directory.
async fn run_status(dir: &Path) -> Result<RunStatus, CliError> {
    let plan = load_plan(dir)?;
    let (state, warning) = match State::load(dir, &plan.run_id) {
        Ok(state) => (state, None),
        Err(e) => (State::fresh(&plan.run_id), Some(e.to_string())),
    };
    let resolved = Resolved::from_file(&dir.join(layout::RESOLVED))?;
    let steps = plan
        .steps
        .iter()
        .map(|s| {
            let st = state.steps.get(&s.id);
            let note = st.and_then(|st| st.error.clone().or_else(|| st.summary.clone()));
            StepStatus {
                id: s.id.clone(),
                phase: s.phase.as_str().to_string(),
                status: st.map_or("pending", |st| st.status.as_str()).to_string(),
                duration_s: st.and_then(|st| st.duration_s),
                note: note.map(|n| n.lines().next().unwrap_or("").to_string()),
            }
        })
        .collect();
    let left = state.leftovers(dir);
    // What the record lists as up, checked against the cluster where it lives there.
    let checked = check_leftovers(&left).await;
    let cluster = if resolved.get("platform").and_then(|v| v.as_str()) == Some("kubernetes")
        && checked.unchecked.is_none()
        && !checked.up.is_empty()
    {
        cluster_status(&resolved).await
    } else {
        Vec::new()
    };
    let harness_runs = harness_runs(dir);
    let running = state.steps.values().any(|s| s.status == exec::Status::Running);
    Ok(RunStatus {
        run_id: plan.run_id.clone(),
        workdir: dir.display().to_string(),
        endpoint: resolved.get("endpoint.url").and_then(|v| v.as_str()).map(str::to_string),
        dry_run: dir.join(layout::DRY_RUN).is_file(),
        steps,
        up: checked.up,
        gone: checked.gone,
        cluster_unchecked: checked.unchecked,
        cluster,
        harness_runs,
        interrupted_at: state.interrupts.clone(),
        killed: running && WorkDir::open(dir).is_ok(),
        warning,
    })
}

/// Each harness run under `results/<id>/`, oldest first: its workload (from its own record of
/// its inputs), when, how many requests, how it ended.
fn harness_runs(dir: &Path) -> Vec<HarnessRun> {
    crate::workdir::inputs::run_ids(dir)
        .into_iter()
        .map(|id| {
            let results = dir.join(layout::RESULTS).join(&id);
            let rows = std::fs::read_to_string(results.join("requests.csv"))
                .map(|t| t.lines().count().saturating_sub(1))
                .unwrap_or(0);
            let info: Option<crate::results::RunInfo> =
                std::fs::read(results.join("run.json")).ok().and_then(|t| serde_json::from_slice(&t).ok());
            let inputs = crate::workdir::inputs::read(&results)
                .or_else(|| info.as_ref().and_then(|i| i.inputs.clone()));
            let outcome = info.as_ref().map_or("not_started", |i| i.outcome());
            HarnessRun {
                workload: inputs.as_ref().map(|i| i.workload.name.clone()),
                workload_sha256: inputs.as_ref().map(|i| i.workload.sha256.clone()),
                harness: inputs.as_ref().map(|i| i.harness.name.clone()),
                started_at: info
                    .as_ref()
                    .map(|i| i.started_at.clone())
                    .or_else(|| inputs.as_ref().map(|i| i.recorded_at.clone())),
                requests: rows,
                failed: info.as_ref().filter(|i| i.ended()).map(|i| i.failed),
                outcome: outcome.to_string(),
                analysed: analysed(&dir.join(layout::ANALYSIS).join(&id)),
                id,
            }
        })
        .collect()
}

fn print_run_status(doc: &RunStatus) {
    if let Some(w) = &doc.warning {
        outln!("warning: {w}");
    }
    outln!("run {} in {}", doc.run_id, doc.workdir);
    if doc.dry_run {
        outln!("dry run: everything was rendered, nothing was started (plan/dry-run.json)");
    }
    if let Some(url) = &doc.endpoint {
        outln!("endpoint {url}");
    }
    let wid = doc.steps.iter().map(|s| s.id.len()).max().unwrap_or(4);
    for s in &doc.steps {
        let took = s.duration_s.map(|d| format!("{d:.1} s")).unwrap_or_default();
        outln!("{:<wid$}  {:<9}  {:>8}  {}", s.id, s.status, took, s.note.as_deref().unwrap_or(""));
    }
    for line in &doc.cluster {
        outln!("{line}");
    }
    if let Some(why) = &doc.cluster_unchecked {
        outln!("cluster: {why}; what is listed as up is the work directory's record, not checked");
    }
    for line in &doc.gone {
        outln!("{line}");
    }
    if doc.up.is_empty() {
        outln!("nothing is up");
    } else {
        outln!("up:");
        for l in &doc.up {
            outln!("  {l}");
        }
    }
    if !doc.harness_runs.is_empty() {
        outln!("harness runs (results/<run>/ with its inputs, analysis/<run>/):");
        let name = |r: &HarnessRun| r.workload.clone().unwrap_or_else(|| "?".into());
        let wname = doc.harness_runs.iter().map(|r| name(r).len()).max().unwrap_or(1);
        for r in &doc.harness_runs {
            let failed = r.failed.filter(|f| *f > 0).map(|f| format!(", {f} failed")).unwrap_or_default();
            let analysed = if r.analysed { "" } else { ", not analysed" };
            outln!(
                "  {}  {:<wname$}  {:<24}  {:>7} requests  {}{failed}{analysed}",
                r.id,
                name(r),
                r.started_at.as_deref().unwrap_or("-"),
                r.requests,
                r.outcome,
            );
        }
    }
    if !doc.interrupted_at.is_empty() {
        outln!("interrupted at {}", doc.interrupted_at.join(", "));
    }
    if !doc.gone.is_empty() {
        outln!("`benchflow teardown {}` clears the record (what is gone counts as removed)", doc.workdir);
    }
    if doc.killed {
        outln!(
            "steps are marked running but no benchflow holds this work directory: it was killed; \
             `benchflow teardown {}` removes what is up",
            doc.workdir
        );
    }
}

/// What the record lists as up, checked against the cluster.
struct Checked {
    /// One line per step whose effect is (or, unchecked, is recorded as) still there.
    up: Vec<String>,
    /// `step: object` for each object the record has that the cluster no longer has.
    gone: Vec<String>,
    /// Why the cluster could not be asked (then `up` is the record's word).
    unchecked: Option<String>,
}

/// Reads the cluster for each Kubernetes object the record lists as up: one that is gone is
/// said so, not listed as up; one being deleted is marked. When the cluster cannot be asked,
/// the record is shown as it is, and why it was not checked.
async fn check_leftovers(left: &[(String, crate::steps::UndoRecord)]) -> Checked {
    use crate::{platform::kube, steps::UndoRecord};
    let mut out = Checked { up: Vec::new(), gone: Vec::new(), unchecked: None };
    let mut clients: Vec<(kube::Target, ::kube::Client)> = Vec::new();
    for (id, rec) in left {
        let UndoRecord::Apply(undo) = rec else {
            // A process: its record says whether it still runs.
            let line = exec::describe_leftover(id, rec);
            if rec.holds() {
                out.up.push(line)
            } else {
                out.gone.push(line)
            }
            continue;
        };
        if out.unchecked.is_some() {
            out.up.push(exec::describe_leftover(id, rec));
            continue;
        }
        let client = match clients.iter().find(|(t, _)| *t == undo.cluster) {
            Some((_, c)) => c.clone(),
            None => match undo.cluster.client().await {
                Ok(c) => {
                    clients.push((undo.cluster.clone(), c.clone()));
                    c
                }
                Err(e) => {
                    out.unchecked = Some(e.to_string());
                    out.up.push(exec::describe_leftover(id, rec));
                    continue;
                }
            },
        };
        let mut there = Vec::new();
        for r in &undo.objects {
            match kube::presence(&client, r).await {
                Ok(kube::Presence::There) => there.push(r.to_string()),
                Ok(kube::Presence::Deleting) => there.push(format!("{r} (being deleted)")),
                Ok(kube::Presence::Gone) => out.gone.push(format!(
                    "{id}: {r} — gone from the cluster (deleted outside this work directory?)"
                )),
                Err(e) => {
                    out.unchecked = Some(e.to_string());
                    break;
                }
            }
        }
        if out.unchecked.is_some() {
            // Not known: the record's word for the whole step.
            out.gone.retain(|g| !g.starts_with(&format!("{id}: ")));
            out.up.push(exec::describe_leftover(id, rec));
        } else if !there.is_empty() {
            out.up.push(format!("{id}: Kubernetes objects {}", there.join(", ")));
        }
    }
    out
}

/// What the cluster says about the run's Deployment and pods (best effort: status must work
/// when the cluster does not answer).
async fn cluster_status(resolved: &Resolved) -> Vec<String> {
    use crate::platform::kube;
    let mut lines = Vec::new();
    let s = |p: &str| resolved.get(p).and_then(|v| v.as_str()).map(str::to_string);
    let target = kube::Target { context: s("kubernetes.context"), kubeconfig: s("kubernetes.kubeconfig") };
    let (Some(ns), Some(name)) = (s("kubernetes.namespace"), s("k8s.name")) else { return lines };
    let client = match target.client().await {
        Ok(c) => c,
        Err(e) => return vec![format!("cluster: {e}")],
    };
    // The engines, then what stands in front of them: a router, or llm-d's picker and gateway.
    for deployment in [Some(name), s("k8s.router.name"), s("k8s.gateway.epp.name")].into_iter().flatten() {
        deployment_status(&client, &ns, &deployment, &mut lines).await;
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
        lines.push(format!("{kind}/{name} in {ns}: {line}"));
    }
    lines
}

/// A Deployment's available replicas and each pod's verdict.
async fn deployment_status(client: &kube::Client, ns: &str, name: &str, lines: &mut Vec<String>) {
    use crate::platform::kube;
    match kube::deployment_pods(client, ns, name).await {
        Ok((d, pods)) => {
            let st = d.status.unwrap_or_default();
            lines.push(format!(
                "Deployment/{name} in {ns}: {}/{} available",
                st.available_replicas.unwrap_or(0),
                d.spec.and_then(|s| s.replicas).unwrap_or(1)
            ));
            for p in pods {
                let verdict = match kube::pod_verdict(&p) {
                    kube::PodVerdict::Ready => "ready".to_string(),
                    kube::PodVerdict::Waiting => "not ready yet".to_string(),
                    kube::PodVerdict::Stuck(why) => format!("stuck: {why}"),
                };
                lines.push(format!("  pod {}: {verdict}", p.metadata.name.unwrap_or_default()));
            }
        }
        Err(e) if kube::not_found(&e) => lines.push(format!("Deployment/{name} in {ns}: not there")),
        Err(e) => lines.push(format!("Deployment/{name} in {ns}: {e}")),
    }
}

/// `benchflow archive DIR`: a run's work directory, or an experiment's directory (its stacks'
/// and points' work directories with it).
pub(crate) fn archive(args: ArchiveArgs) -> Result<(), CliError> {
    let experiment = crate::experiment::state::ExpState::is_experiment(&args.dir);
    if !experiment && !args.dir.join(layout::RESOLVED).is_file() {
        return Err(CliError::Usage(format!(
            "{} is not a benchflow work directory (no inputs/resolved.yaml) nor an experiment's \
             directory (no experiment.yaml)",
            args.dir.display()
        )));
    }
    // Not while a run or an experiment writes into it: the lock is held while packing.
    let _lock = if experiment { WorkDir::lock_dir(&args.dir)? } else { WorkDir::open(&args.dir)? };
    let (path, files) = archive::pack(&args.dir, args.output.as_deref())?;
    outln!("{}", path.display());
    errln!("archived {files} files with MANIFEST.sha256");
    if experiment {
        errln!(
            "an experiment's archive: `benchflow reproduce {} --point <id>` reproduces one of its points",
            path.display()
        );
    }
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

/// An analysis that finished: its report (written last) no older than its statistics (an
/// analysis that failed half-way, on a full disk, rewrote stats.json and not the report).
fn analysed(out: &Path) -> bool {
    let modified = |f: &str| std::fs::metadata(out.join(f)).and_then(|m| m.modified()).ok();
    matches!((modified("stats.json"), modified("report.html")), (Some(s), Some(r)) if r >= s)
}
