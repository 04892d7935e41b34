//! `benchflow experiment` (run, resume, plan) and `benchflow compare`; `teardown` and
//! `analyze` of an experiment directory come here too.

use crate::workdir::layout;
use std::path::{Path, PathBuf};

use super::{
    CliError,
    args::{CompareArgs, CompareFormat, CompareResampling, ExperimentAction, ExperimentArgs},
    documents::{
        self, ExperimentPlanDoc, ExperimentPointStatus, ExperimentStackStatus, ExperimentStatus, Format,
        PlannedPointDoc, PlannedStackDoc, SearchDoc,
    },
    engine,
};
use crate::analysis::bootstrap::Resampling;
use crate::experiment::{
    self, ExperimentError, analysis,
    compare::compare_dirs,
    plan::{ExperimentFile, ExperimentPlan},
    run,
    state::{ExpState, StackStatus},
};

/// The experiment file an experiment directory recorded (`experiment.yaml`, whose first line
/// names where it came from) and its `--set`s.
fn recorded(root: &Path) -> Result<(ExperimentFile, Vec<String>), CliError> {
    let text = std::fs::read_to_string(root.join(layout::EXPERIMENT)).map_err(|_| {
        CliError::Usage(format!(
            "{} holds no experiment.yaml: is it an experiment directory?",
            root.display()
        ))
    })?;
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let origin = first
        .strip_prefix("# from ")
        .map(str::to_string)
        .unwrap_or_else(|| root.join(layout::EXPERIMENT).display().to_string());
    let sets = std::fs::read_to_string(root.join(layout::EXPERIMENT_OVERRIDES))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("--set ").map(str::to_string))
        .collect();
    Ok((ExperimentFile::parse(origin, rest.to_string())?, sets))
}

/// Plans from the file given (or the directory's record) into the chosen directory.
fn plan_of(args: &ExperimentArgs) -> Result<ExperimentPlan, CliError> {
    let (file, mut sets) = match (&args.file, &args.workdir) {
        (Some(name), _) => (ExperimentFile::find(name)?, Vec::new()),
        (None, Some(dir)) => recorded(dir)?,
        (None, None) => {
            return Err(CliError::Usage(
                "name the experiment: benchflow experiment -e FILE (or --workdir DIR of one that ran)".into(),
            ));
        }
    };
    if args.file.is_some() || !args.all_sets().is_empty() {
        sets = args.all_sets();
    }
    let root = match &args.workdir {
        Some(dir) => dir.clone(),
        None => {
            let stem = Path::new(&file.origin)
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "experiment".into());
            PathBuf::from("runs").join(stem)
        }
    };
    let root = crate::workdir::canonical(&root);
    Ok(experiment::plan::plan(file, &root, &sets, args.yes)?)
}

pub(crate) async fn experiment(args: ExperimentArgs) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let plan = plan_of(&args)?;
    if args.action == ExperimentAction::Plan {
        if args.output.is_document() {
            documents::emit(args.output, &plan_doc(&plan))?;
        } else {
            out!("{}", plan.table());
        }
        errln!("planned in {:.0} ms; nothing was started", started.elapsed().as_secs_f64() * 1e3);
        return Ok(());
    }
    if args.output.is_document() {
        return Err(CliError::Usage(
            "-o json|yaml is for `benchflow experiment plan` (a run's points are in analysis/points.csv; \
             `benchflow status DIR -o json` gives their status)"
                .into(),
        ));
    }
    let store = args.store.as_deref().map(experiment::store::Store::open).transpose()?;
    let mut signals = engine::signals(&plan.root);
    let summary = run::run(
        &plan,
        store,
        run::RunFlags { quiet: args.quiet, install_missing: args.install_missing },
        &mut signals,
        &mut crate::exec::Console::new(args.quiet),
    )
    .await?;
    if let Some(o) = &summary.search {
        let text = serde_json::to_string_pretty(o).unwrap_or_default();
        crate::workdir::write_atomic(&plan.root.join(layout::SEARCH), text.as_bytes())?;
    }
    // The cross-point analysis (charts of every point) can take a while: an interrupt stops
    // it at once; every point stays measured, and `benchflow analyze DIR` draws it again.
    let analysing = tokio::task::spawn_blocking({
        let plan = plan.clone();
        move || analysis::analyze(&plan)
    });
    let findings = tokio::select! {
        done = analysing => done.map_err(|e| CliError::Experiment(e.to_string()))??,
        Some(()) = signals.recv() => {
            return Err(CliError::Interrupted(format!(
                " during the experiment's analysis; every point is kept: `benchflow analyze {}` analyses them again",
                plan.root.display()
            )));
        }
    };
    if let Some(o) = &findings.search {
        out!("{}", experiment::search::table(o));
        outln!("answer: {}", o.says);
    }
    if let Some(c) = &findings.comparison {
        out!("{}", c.table());
    }
    print_points(&plan, &findings);
    let points = summary.search.as_ref().map_or(summary.points, |o| o.trials.len());
    errln!(
        "experiment: {} of {} done ({} now, {} from before), {} failed; {}; analysis in {}",
        summary.done + summary.reused,
        experiment::counted(points, "point"),
        summary.done,
        summary.reused,
        summary.failed.len(),
        experiment::counted(summary.standups, "standup"),
        plan.root.join("analysis/report.html").display()
    );
    if !summary.leftovers.is_empty() {
        errln!("still up:");
        for l in &summary.leftovers {
            errln!("  {l}");
        }
        errln!("remove with: benchflow teardown {}", plan.root.display());
    }
    if summary.interrupted {
        return Err(CliError::Interrupted(format!(
            "; the same command resumes: benchflow experiment -e {} --workdir {}",
            plan.file.origin,
            plan.root.display()
        )));
    }
    // A stack that could not be stood up fails the experiment as a standup fails a run (exit
    // 3), before what its points (or a search's trial) then measured, which was nothing.
    if !summary.standup_failed.is_empty() {
        return Err(CliError::StacksNotUp(format!(
            "{}; its points were not run (teardown has run); see stacks/<id>/ in {}",
            summary.standup_failed.join("; "),
            plan.root.display()
        )));
    }
    if let Some(o) = &summary.search {
        // A search's trials may fail (that is what they probe); it fails only when a trial
        // measured nothing.
        if o.trials.iter().any(|t| t.verdict == experiment::search::Verdict::Error) {
            return Err(CliError::RunFailed { step: "the search".into(), error: o.says.clone() });
        }
        return Ok(());
    }
    if !summary.failed.is_empty() {
        if summary.not_run > 0 {
            errln!(
                "{} point(s) not run: `stop_on_error: true` stopped the experiment at the first failure \
                 (the same command resumes with them)",
                summary.not_run
            );
        }
        let list: Vec<String> =
            summary.failed.iter().map(|(p, e)| format!("{p}: {}", e.lines().next().unwrap_or(e))).collect();
        return Err(CliError::RunFailed {
            step: format!("{} point(s)", summary.failed.len()),
            error: format!("{}; see points/<id>/ in {}", list.join("; "), plan.root.display()),
        });
    }
    Ok(())
}

/// One line per point and stage: its values and headline numbers, its client's send delay
/// p99 (`!` when it fell behind), goodput and the prefix-cache hit rate when measured.
fn print_points(plan: &ExperimentPlan, f: &analysis::Findings) {
    let lat = &plan.file.spec.analysis.latency;
    let goodput = f.rows.iter().any(|r| r.metrics.contains_key("request_goodput"));
    let hits = f.rows.iter().any(|r| r.prefix_cache_hit_rate.is_some());
    let mut head = format!(
        "{:<6} {:<4} {:<40} {:>5} {:>10} {:>12} {:>9}",
        "point", "stack", "values", "stage", "req/s", lat, "client ms"
    );
    if goodput {
        head += &format!(" {:>9}", "goodput");
    }
    if hits {
        head += &format!(" {:>11}", "prefix hits");
    }
    outln!("{head} {:>7}", "status");
    for r in &f.rows {
        let label = experiment::design::Point {
            id: r.point.clone(),
            name: (!r.name.is_empty()).then(|| r.name.clone()),
            values: r.values.clone(),
        }
        .label();
        let m = |k: &str| r.metrics.get(k).map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        let client = r
            .health
            .as_ref()
            .map(|h| format!("{:.1}{}", h.send_delay_p99_ms, if h.fell_behind { "!" } else { "" }))
            .unwrap_or_else(|| "-".into());
        let mut line = format!(
            "{:<6} {:<4} {:<40} {:>5} {:>10} {:>12} {:>9}",
            r.point,
            r.stack,
            label,
            if r.metrics.is_empty() { "-".into() } else { r.stage.to_string() },
            m("request_throughput"),
            m(lat),
            client
        );
        if goodput {
            line += &format!(" {:>9}", m("request_goodput"));
        }
        if hits {
            let shown = r.prefix_cache_hit_rate.map(|v| format!("{:.1}%", v * 100.0));
            line += &format!(" {:>11}", shown.unwrap_or_else(|| "-".into()));
        }
        outln!(
            "{line} {:>7}{}",
            r.status,
            match analysis::pareto_shown(r).as_str() {
                "" => String::new(),
                "yes" => "  (Pareto)".into(),
                tie => format!("  (Pareto, {tie})"),
            }
        );
    }
    for n in &f.notes {
        outln!("{n}");
    }
}

/// `benchflow teardown` of an experiment directory: every stack its record says is up.
pub(crate) async fn teardown(root: &Path) -> Result<(), CliError> {
    let _lock = crate::workdir::WorkDir::lock_dir(root)?;
    // A damaged or lost state.json does not keep stacks up: each stack's work directory has
    // its own record of what it started, so every one is torn down from it.
    let loaded = match root.join(layout::STATE).is_file() {
        true => ExpState::load(root),
        false => Err(ExperimentError::State {
            path: root.join(layout::STATE).display().to_string(),
            why: "missing".into(),
        }),
    };
    let (mut state, up) = match loaded {
        Ok(state) => {
            let up = state
                .stacks
                .iter()
                .filter(|(_, s)| matches!(s.status, StackStatus::Up | StackStatus::StandingUp))
                .map(|(id, _)| id.clone())
                .collect();
            (Some(state), up)
        }
        Err(e) => {
            errln!("warning: {e}; tearing down every stack from its own work directory's record");
            let stacks = std::fs::read_dir(root.join(layout::STACKS)).into_iter().flatten().flatten();
            let mut ids: Vec<String> = stacks
                .filter(|e| e.path().join(layout::RESOLVED).is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            ids.sort();
            (None, ids)
        }
    };
    if up.is_empty() {
        errln!("nothing to tear down in {}", root.display());
        return Ok(());
    }
    let mut failed = Vec::new();
    for id in up {
        let dir = root.join(layout::STACKS).join(&id);
        let mut signals = engine::signals(&dir);
        let report = run::teardown_dir(&dir, false, &mut signals).await?;
        let clean = report.leftovers.is_empty() && report.teardown_failed.is_empty();
        if let Some(state) = &mut state {
            if let Some(s) = state.stacks.get_mut(&id) {
                s.status = if clean { StackStatus::Down } else { StackStatus::Up };
            }
            state.save(root)?;
        }
        if clean {
            errln!("torn down: stack {id}");
        } else {
            failed.push(format!(
                "stack {id}: {}",
                [report.leftovers, report.teardown_failed].concat().join("; ")
            ));
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(CliError::TeardownFailed(failed.join("; "))) }
}

/// `benchflow status` of an experiment directory: points by status, stacks, who holds it.
pub(crate) fn status(root: &Path, format: Format) -> Result<(), CliError> {
    let state = ExpState::load(root)?;
    let points: Vec<ExperimentPointStatus> = state
        .points
        .iter()
        .map(|(id, p)| ExperimentPointStatus {
            id: id.clone(),
            label: p.label.clone(),
            status: word(&p.status),
            stack: p.stack.clone(),
            attempts: p.attempts,
            duration_s: p.duration_s,
            error: p.error.clone(),
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for p in &points {
        *counts.entry(p.status.clone()).or_insert(0) += 1;
    }
    let doc = ExperimentStatus {
        experiment: state.experiment.clone(),
        dir: root.display().to_string(),
        counts,
        points,
        charts_pending: state
            .points
            .iter()
            .filter(|(_, p)| p.charts_pending)
            .map(|(id, _)| id.clone())
            .collect(),
        stacks: state
            .stacks
            .iter()
            .map(|(id, s)| ExperimentStackStatus {
                id: id.clone(),
                status: word(&s.status),
                standups: s.standups,
                error: s.error.clone(),
            })
            .collect(),
        held_by: crate::workdir::WorkDir::lock_dir(root).err().map(|e| e.to_string()),
    };
    if format.is_document() {
        return documents::emit(format, &doc);
    }
    outln!("experiment {} in {}", doc.experiment, doc.dir);
    for status in doc.counts.keys() {
        let ids: Vec<&str> =
            doc.points.iter().filter(|p| &p.status == status).map(|p| p.id.as_str()).collect();
        outln!("  {status}: {} ({})", ids.len(), ids.join(" "));
    }
    for p in doc.points.iter().filter(|p| p.error.is_some()) {
        outln!("  {} [{}]: {}", p.id, p.label, p.error.as_deref().unwrap_or("").lines().next().unwrap_or(""));
    }
    if !doc.charts_pending.is_empty() {
        outln!(
            "  charts still to draw: {} ({}); run the same `benchflow experiment` command again to draw them \
             and the experiment's analysis",
            doc.charts_pending.len(),
            doc.charts_pending.join(" ")
        );
    }
    for (id, s) in &state.stacks {
        outln!("  stack {id}: {:?}, stood up {} time(s)", s.status, s.standups);
    }
    outln!("{}", doc.held_by.as_deref().unwrap_or("no benchflow holds this experiment directory"));
    Ok(())
}

/// A unit enum's serde name (`standing_up`).
fn word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// `experiment plan -o json`: the design as a document.
fn plan_doc(plan: &ExperimentPlan) -> ExperimentPlanDoc {
    let e = &plan.file.spec;
    let factors = |setup: bool| plan.factors.iter().filter(|f| f.1 == setup).map(|f| f.0.clone()).collect();
    ExperimentPlanDoc {
        experiment: plan.file.origin.clone(),
        description: e.description.clone(),
        dir: plan.root.display().to_string(),
        max_stacks: e.max_stacks as usize,
        setup_factors: factors(true),
        run_factors: factors(false),
        search: e.search.as_ref().map(|s| SearchDoc {
            objective: s.objective.as_str().to_string(),
            factor: s.factor.clone(),
            from: s.from,
            to: s.to,
            integer: s.integer,
            trials: s.trials as usize,
            precision: s.precision,
        }),
        stacks: plan
            .stacks
            .iter()
            .map(|s| PlannedStackDoc {
                id: s.id.clone(),
                hash: s.hash.clone(),
                setup: s.setup.iter().cloned().collect(),
                points: s.points.iter().map(|&i| plan.points[i].point.id.clone()).collect(),
            })
            .collect(),
        points: plan
            .points
            .iter()
            .map(|p| PlannedPointDoc {
                id: p.point.id.clone(),
                name: p.point.name.clone(),
                label: p.point.label(),
                values: p.point.values.iter().cloned().collect(),
                stack: plan.stacks.get(p.stack).map(|s| s.id.clone()).unwrap_or_default(),
                hash: p.hash.clone(),
            })
            .collect(),
    }
}

/// `benchflow analyze` of an experiment directory.
pub(crate) fn analyze(root: &Path) -> Result<(), CliError> {
    // Not while an experiment runs in it (its points and analysis are being written): exit 2.
    let _lock = crate::workdir::WorkDir::lock_dir(root)?;
    let (file, sets) = recorded(root)?;
    let root = crate::workdir::canonical(root);
    let plan = experiment::plan::plan(file, &root, &sets, true)?;
    let findings = analysis::analyze(&plan)?;
    print_points(&plan, &findings);
    if let Some(o) = &findings.search {
        out!("{}", experiment::search::table(o));
        outln!("answer: {}", o.says);
    }
    errln!("analysis in {}", root.join(layout::ANALYSIS).display());
    Ok(())
}

pub(crate) fn compare(args: CompareArgs) -> Result<(), CliError> {
    if !(0.5..1.0).contains(&args.level) {
        return Err(CliError::Usage(format!("--level {} is not in [0.5, 1)", args.level)));
    }
    let dirs: Vec<&Path> = args.dirs.iter().map(PathBuf::as_path).collect();
    if let Some(dir) = dirs.iter().find(|d| ExpState::is_experiment(d)) {
        return Err(CliError::Usage(experiment_given_to_compare(dir)));
    }
    let how = match args.resampling {
        CompareResampling::Blocks => Resampling::Blocks,
        CompareResampling::Independent => Resampling::Independent,
    };
    let c = compare_dirs(&dirs, args.level, args.resamples, how)?;
    if let Some(out) = &args.plots {
        let charts = experiment::compare::plots(&dirs, out)?;
        experiment::compare::write_report(&c, &charts, out)?;
    }
    match args.output {
        CompareFormat::Table => out!("{}", c.table()),
        CompareFormat::Json => outln!("{}", serde_json::to_string_pretty(&c).unwrap_or_default()),
    }
    Ok(())
}

/// What to pass to `compare` instead of an experiment directory: two of its points, or the
/// experiment's own comparison.
fn experiment_given_to_compare(dir: &Path) -> String {
    let mut points: Vec<String> = std::fs::read_dir(dir.join(layout::POINTS))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .collect();
    points.sort();
    let d = dir.display();
    let example = match points.as_slice() {
        [a, b, ..] => format!("`benchflow compare {d}/points/{a} {d}/points/{b}`"),
        _ => format!("`benchflow compare {d}/points/<id> {d}/points/<id>`"),
    };
    let own = dir.join(layout::ANALYSIS).join("compare.json");
    let own = if own.is_file() {
        format!("the experiment's own A/B comparison is in {} (and its report.html)", own.display())
    } else {
        "`compare: true` in the experiment file makes it compare each level of its first factor \
         against the first level (analysis/compare.json and report.html)"
            .to_string()
    };
    format!(
        "{d} is an experiment directory; compare compares runs: pass two or more of its points' \
         directories, the first the baseline, e.g. {example}{}; or {own}",
        if points.is_empty() { String::new() } else { format!(" (its points: {})", points.join(", ")) }
    )
}

impl From<ExperimentError> for CliError {
    fn from(e: ExperimentError) -> CliError {
        match e {
            ExperimentError::Spec(e) => CliError::Spec(e),
            ExperimentError::Resolve(e) => CliError::Resolve(e),
            ExperimentError::Session(e) => e.into(),
            ExperimentError::Workdir(e) => CliError::Workdir(e),
            ExperimentError::Exec(e) => CliError::Exec(e),
            // A record that cannot be read is the user's to look at (exit 2), as a run's is.
            e @ (ExperimentError::Invalid { .. }
            | ExperimentError::Point { .. }
            | ExperimentError::State { .. }) => CliError::Usage(e.to_string()),
            e @ ExperimentError::Leftover { .. } => CliError::TeardownFailed(e.to_string()),
            e @ (ExperimentError::Plot(_) | ExperimentError::Html(_)) => CliError::Experiment(e.to_string()),
        }
    }
}
