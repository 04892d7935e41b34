//! The commands that compile and execute a plan: the glue between files, work directory and
//! executor. Every command that changes anything writes its inputs and plan first.

use crate::workdir::layout;
use std::path::{Path, PathBuf};

use serde_json::json;
use tokio::sync::mpsc;

use super::{
    CliError,
    args::{ExecArgs, PlanArgs, PlanFormat, ReproduceArgs, RunArgs, ShowPlanArgs, TeardownArgs},
    documents::{self, Format, RunSummary},
};
use crate::{
    exec::{Console, Options, Outcome},
    plan::Plan,
    resolve::Resolved,
    session::{self, Session, Setup},
    spec::pipeline::Phase,
    workdir::{self, archive, runs::RunDirs, utc_now},
};

/// Resolves and compiles into the chosen work directory, writing `inputs/` and `plan/`. An
/// existing work directory continues its recorded files and `--set`s. `on_standup`: the
/// command runs on what an earlier `standup` left (its standup steps must not have changed).
fn prepare(
    args: &PlanArgs,
    scenario: Option<&str>,
    extra_sets: &[String],
    on_standup: bool,
) -> Result<Session, CliError> {
    let setup = setup(args, scenario, extra_sets);
    not_an_experiments(&setup.root)?;
    let (resolved, plan) = setup.compile()?;
    cluster_flags_apply(args, &resolved)?;
    if let Some(sel) = &args.steps {
        plan.select(sel)?;
    }
    if on_standup && args.steps.is_none() {
        standup_unchanged(&setup.root, &plan)?;
        if !args.dry_run {
            // Refused before the inputs are rewritten: nothing is up to run against.
            crate::exec::stood_up(&plan, &setup.root, &[Phase::Run, Phase::Analyze])?;
        }
    }
    if args.dry_run {
        return Ok(Session::dry_run(&setup.root, resolved, plan)?);
    }
    Ok(Session::from_parts(&setup.root, resolved, plan)?)
}

/// An experiment's directory, or one of its points, is the experiment's: a run written into it
/// would change what the experiment reports. Refused before anything is written.
fn not_an_experiments(root: &Path) -> Result<(), CliError> {
    use crate::experiment::state::ExpState;
    if ExpState::is_experiment(root) {
        return Err(CliError::Usage(format!(
            "{0} is an experiment's directory: resume it with `benchflow experiment --workdir {0}`, \
             or give a new --workdir",
            root.display()
        )));
    }
    let point = root.parent().filter(|p| p.file_name().is_some_and(|n| n == "points")).and_then(Path::parent);
    if let (Some(exp), Some(id)) = (point.filter(|e| ExpState::is_experiment(e)), root.file_name()) {
        return Err(CliError::Usage(format!(
            "{} is point {} of the experiment in {}: its measurements are the experiment's; measure it \
             again in a new directory with `benchflow reproduce {} --point {}`",
            root.display(),
            id.to_string_lossy(),
            exp.display(),
            exp.display(),
            id.to_string_lossy()
        )));
    }
    Ok(())
}

/// `--context`, `--kubeconfig` and `-n` name a cluster: on another platform they would be
/// ignored, so they are refused; and a `--set` of the same variable to another value is
/// ambiguous.
fn cluster_flags_apply(args: &PlanArgs, resolved: &Resolved) -> Result<(), CliError> {
    let flags = args.cluster_flags();
    if flags.is_empty() {
        return Ok(());
    }
    let platform = resolved.get("platform").and_then(|v| v.as_str()).unwrap_or("local");
    if platform != "kubernetes" {
        return Err(CliError::Usage(format!(
            "{} applies to Kubernetes, and this scenario's platform is `{platform}`: drop it, or \
             choose a Kubernetes scenario (-c kubernetes-standalone)",
            flags.join(", ")
        )));
    }
    let flagged = [
        ("kubernetes.context", args.context.as_ref().map(|c| c.to_string())),
        ("kubernetes.namespace", args.namespace.clone()),
    ];
    for (key, value) in flagged {
        let Some(value) = value else { continue };
        let set = args.sets.iter().rev().find_map(|s| s.strip_prefix(key)?.strip_prefix('='));
        if let Some(set) = set.filter(|set| *set != value) {
            return Err(CliError::Usage(format!(
                "{key} is given twice, as `{value}` by its flag and as `{set}` by --set: keep one"
            )));
        }
    }
    Ok(())
}

/// The work directory a command uses: the one given, else a new `runs/<run-id>` (a dry run's
/// `runs/dry-run/<run-id>`, apart from the runs).
fn choose_dir(given: Option<&Path>, dry_run: bool) -> PathBuf {
    match given {
        None if dry_run => PathBuf::from(layout::DRY_RUNS).join(workdir::run_id()),
        given => workdir::choose(given),
    }
}

/// A standup step done with other inputs than the plan now gives it (a `--set` of an engine
/// setting) is refused before anything is written: the run would measure the engine that is
/// up under records that say otherwise.
fn standup_unchanged(root: &Path, plan: &Plan) -> Result<(), CliError> {
    let Ok(state) = crate::exec::State::load(root, &plan.run_id) else { return Ok(()) };
    for s in plan.steps.iter().filter(|s| s.phase == Phase::Standup) {
        let done = state.steps.get(&s.id).filter(|st| st.status == crate::exec::Status::Done);
        if done.is_some_and(|st| st.hash != s.hash) {
            return Err(CliError::Usage(format!(
                "{}: step {} was stood up with other inputs than this command gives it (a --set of a \
                 standup value?): stand up again (`benchflow standup --workdir {0}`), or drop that --set",
                root.display(),
                s.id
            )));
        }
    }
    Ok(())
}

fn setup(args: &PlanArgs, scenario: Option<&str>, extra_sets: &[String]) -> Setup {
    let root = choose_dir(args.workdir.as_deref(), args.dry_run);
    let request = args.request(scenario, extra_sets, session::recorded(&root).as_ref());
    Setup::new(root, request)
}

/// Delivers one message per SIGINT / SIGTERM / SIGHUP; the third exits at once. A hangup (the
/// terminal closed) is an interrupt like the others: what runs stops, what was measured is
/// analysed, teardown runs; the output meant for that terminal is dropped from then on (a write
/// to it would fail), `events.jsonl` keeps the record.
pub(super) fn signals(dir: &Path) -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    let dir = dir.display().to_string();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        let hup = signal(SignalKind::hangup());
        if let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (int, term, hup) {
            tokio::spawn(async move {
                let mut count = 0;
                loop {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                        _ = hup.recv() => detach_from_terminal(),
                    }
                    count += 1;
                    if count >= 3 {
                        errln!(
                            "third interrupt: exiting now; remove what is left with `benchflow teardown {dir}`"
                        );
                        std::process::exit(i32::from(super::EXIT_INTERRUPTED));
                    }
                    let _ = tx.send(());
                }
            });
        }
    }
    rx
}

/// After a hangup: standard output and error that went to the terminal go to `/dev/null` (a
/// write to a terminal that is gone fails, and a failed `eprintln!` panics); redirected ones
/// (a file, a pipe) are kept.
#[cfg(unix)]
fn detach_from_terminal() {
    use std::io::IsTerminal as _;
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else { return };
    if std::io::stdout().is_terminal() {
        let _ = nix::unistd::dup2_stdout(&null);
    }
    if std::io::stderr().is_terminal() {
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// What the command line asks of an execution besides its phases.
struct How<'a> {
    steps: Option<&'a str>,
    quiet: bool,
    install_missing: bool,
    /// The command's name and `-o`: the summary as a document instead of the statistics.
    command: &'static str,
    format: Format,
    /// See [`Options::reuse_standup`].
    reuse_standup: bool,
}

impl<'a> How<'a> {
    fn of(a: &'a PlanArgs, command: &'static str, format: Format) -> How<'a> {
        How {
            steps: a.steps.as_deref(),
            quiet: a.quiet,
            install_missing: a.install_missing,
            command,
            format,
            reuse_standup: true,
        }
    }
}

async fn execute(
    p: &Session,
    phases: Vec<Phase>,
    teardown_on_failure: bool,
    how: How<'_>,
) -> Result<(), CliError> {
    let How { steps, quiet, install_missing, command, format, reuse_standup } = how;
    let started = std::time::SystemTime::now();
    let selection = steps.map(|s| p.plan.select(s)).transpose()?;
    let opts = Options {
        phases: phases.clone(),
        selection,
        teardown_on_failure,
        quiet,
        install_missing,
        stack: None,
        reuse_standup,
    };
    let dir = p.dir().to_path_buf();
    let mut rx = signals(&dir);
    let report = p.execute(&opts, &mut rx, &mut Console::new(quiet)).await?;
    let stats = RunDirs::latest(&dir).map(|r| r.analysis.join("stats.txt")).unwrap_or_default();
    let table = !format.is_document();
    if table && phases.contains(&Phase::Analyze) && stats.is_file() && report.outcome == Outcome::Success {
        out!("{}", std::fs::read_to_string(&stats).unwrap_or_default());
    }
    // Left up on purpose by `standup`; anything else left up is reported with its remedy.
    let expected_up = report.outcome == Outcome::Success && !phases.contains(&Phase::Teardown);
    if !report.leftovers.is_empty() && !expected_up {
        errln!("still up:");
        for l in &report.leftovers {
            errln!("  {l}");
        }
        errln!("remove with: benchflow teardown {}", dir.display());
    }
    if !quiet {
        errln!("work directory: {}", dir.display());
    }
    let result = match report.outcome.clone() {
        Outcome::Success if !report.teardown_failed.is_empty() => {
            Err(CliError::TeardownFailed(report.teardown_failed.join(", ")))
        }
        Outcome::Success => Ok(()),
        Outcome::Interrupted => Err(CliError::Interrupted(format!(
            "; what was measured is kept in {}{}",
            dir.display(),
            if report.leftovers.is_empty() {
                String::new()
            } else {
                format!("; run `benchflow teardown {}`", dir.display())
            }
        ))),
        // `run --endpoint`: the smoke test is part of the run; the run could not be carried out.
        Outcome::Failed { step, phase: Phase::Standup, error } if command == "run" => {
            Err(CliError::RunFailed { step, error })
        }
        Outcome::Failed { step, phase: Phase::Standup, error } => {
            Err(CliError::StandupFailed { step, error })
        }
        Outcome::Failed { step, error, .. } => Err(CliError::RunFailed { step, error }),
        Outcome::Lost { step, error } => Err(CliError::EngineLost { step, error }),
        Outcome::Unrecorded { error } => Err(CliError::Unrecorded(error)),
    };
    if format.is_document() {
        let outcome = match (&report.outcome, &result) {
            (Outcome::Success, Ok(())) => "success",
            (Outcome::Success, Err(_)) => "teardown_failed",
            (Outcome::Interrupted, _) => "interrupted",
            (Outcome::Failed { phase: Phase::Standup, .. }, _) if command != "run" => "standup_failed",
            (Outcome::Failed { .. }, _) => "failed",
            (Outcome::Lost { .. }, _) => "engine_lost",
            (Outcome::Unrecorded { .. }, _) => "unrecorded",
        };
        // The statistics of an analysis made by this command (not an earlier run's).
        let fresh =
            |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|t| t >= started);
        let stats_json = stats.with_file_name("stats.json");
        let stats_doc = (phases.contains(&Phase::Analyze) && fresh(&stats_json))
            .then(|| std::fs::read_to_string(&stats_json).ok())
            .flatten()
            .and_then(|t| serde_json::from_str(&t).ok());
        let report_html = stats.with_file_name("report.html");
        let summary = RunSummary {
            command: command.into(),
            run_id: p.plan.run_id.clone(),
            workdir: dir.display().to_string(),
            outcome: outcome.into(),
            error: result.as_ref().err().map(ToString::to_string),
            exit_code: result.as_ref().map_or_else(CliError::exit_code, |()| super::EXIT_OK),
            endpoint: p.resolved.get("endpoint.url").and_then(|v| v.as_str()).map(str::to_string),
            report: stats_doc
                .as_ref()
                .filter(|_| report_html.is_file())
                .map(|_| report_html.display().to_string()),
            stats: stats_doc,
            up: report.leftovers.clone(),
        };
        documents::emit(format, &summary)?;
    }
    result
}

/// `--dry-run`: the plan (or the summary document) on stdout, where it was rendered on stderr.
fn dry_run_done(p: &Session, command: &'static str, format: Format) -> Result<(), CliError> {
    if format.is_document() {
        let summary = RunSummary {
            command: command.into(),
            run_id: p.plan.run_id.clone(),
            workdir: p.dir().display().to_string(),
            outcome: "dry_run".into(),
            error: None,
            exit_code: super::EXIT_OK,
            endpoint: p.resolved.get("endpoint.url").and_then(|v| v.as_str()).map(str::to_string),
            stats: None,
            report: None,
            up: Vec::new(),
        };
        documents::emit(format, &summary)?;
    } else {
        out!("{}", p.plan.table());
    }
    errln!("dry run: everything is rendered into {}; nothing was started", p.dir().display());
    Ok(())
}

pub(crate) async fn e2e(args: ExecArgs) -> Result<(), CliError> {
    let (args, format) = (args.plan, args.output.format);
    let p = prepare(&args, None, &[], false)?;
    if args.dry_run {
        return dry_run_done(&p, "e2e", format);
    }
    // --keep: the stack stays up after the run (no teardown phase), as `standup` leaves it.
    let phases: Vec<Phase> =
        Phase::ALL.iter().copied().filter(|ph| !(args.keep && *ph == Phase::Teardown)).collect();
    execute(&p, phases, !args.keep, How::of(&args, "e2e", format)).await?;
    if args.keep && !args.quiet {
        errln!(
            "kept up (--keep): run again with `benchflow run --workdir {0}`; remove with `benchflow teardown {0}`",
            p.dir().display()
        );
    }
    Ok(())
}

pub(crate) async fn standup(args: ExecArgs) -> Result<(), CliError> {
    let (args, format) = (args.plan, args.output.format);
    let p = prepare(&args, None, &[], false)?;
    if args.dry_run {
        return dry_run_done(&p, "standup", format);
    }
    execute(&p, vec![Phase::Standup], !args.keep, How::of(&args, "standup", format)).await?;
    if !args.quiet {
        let url = p.resolved.get("endpoint.url").and_then(|v| v.as_str()).unwrap_or("");
        errln!(
            "stood up: {url}\nnext: benchflow run --workdir {0}   then: benchflow teardown {0}",
            p.dir().display()
        );
    }
    Ok(())
}

pub(crate) async fn run(args: RunArgs) -> Result<(), CliError> {
    let mut plan_args = args.plan.clone();
    // Against what `standup` left: the given work directory, else runs/latest.
    if args.endpoint.is_none()
        && plan_args.workdir.is_none()
        && Path::new("runs/latest/inputs/resolved.yaml").is_file()
    {
        plan_args.workdir = std::fs::canonicalize("runs/latest").ok();
    }
    let p = match &args.endpoint {
        Some(url) => prepare(&plan_args, Some("endpoint"), &[format!("engine.url={url}")], false)?,
        None => prepare(&plan_args, None, &[], true)?,
    };
    let format = args.output.format;
    if args.plan.dry_run {
        return dry_run_done(&p, "run", format);
    }
    let phases = if args.endpoint.is_some() {
        vec![Phase::Standup, Phase::Run, Phase::Analyze]
    } else {
        vec![Phase::Run, Phase::Analyze]
    };
    // Against an endpoint, the smoke test is the check that it answers now: never reused.
    let how = How { reuse_standup: args.endpoint.is_none(), ..How::of(&args.plan, "run", format) };
    execute(&p, phases, false, how).await
}

pub(super) fn dir_or_latest(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| {
        std::fs::canonicalize("runs/latest").unwrap_or_else(|_| PathBuf::from("runs/latest"))
    })
}

pub(super) fn load_plan(dir: &Path) -> Result<Plan, CliError> {
    let path = dir.join(layout::PLAN);
    let text = std::fs::read_to_string(&path).map_err(|_| {
        CliError::Usage(format!("{} has no plan/plan.json: is it a benchflow work directory?", dir.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

pub(crate) async fn teardown(args: TeardownArgs) -> Result<(), CliError> {
    let dir = dir_or_latest(args.dir);
    let (session, warning) = Session::open_for_teardown(&dir)?;
    if let Some(w) = warning {
        errln!("warning: {w}");
    }
    for tmp in crate::steps::unfinished_undos(&dir) {
        // Created, never written: benchflow stopped before the step acted.
        errln!(
            "note: {} is empty (benchflow was stopped before it recorded anything): nothing to undo for it; removed",
            tmp.display()
        );
        let _ = std::fs::remove_file(&tmp);
    }
    let mut rx = signals(&dir);
    let Some(report) = session.teardown(false, &mut rx, &mut Console::new(args.quiet)).await? else {
        errln!("nothing to tear down in {}", dir.display());
        return Ok(());
    };
    drop(session);
    let left = [report.teardown_failed, report.leftovers].concat();
    if !left.is_empty() {
        return Err(CliError::TeardownFailed(left.join("; ")));
    }
    errln!("torn down: {}", dir.display());
    Ok(())
}

pub(crate) fn show_plan(args: ShowPlanArgs) -> Result<(), CliError> {
    let format = if args.dot { PlanFormat::Dot } else { args.output };
    let p = if args.plan.dry_run {
        prepare(&args.plan, None, &[], false)?
    } else {
        // Nothing is written: resolve and compile only.
        let (resolved, plan) = setup(&args.plan, None, &[]).compile()?;
        cluster_flags_apply(&args.plan, &resolved)?;
        if let Some(sel) = &args.plan.steps {
            plan.select(sel)?;
        }
        return print_plan(&plan, format);
    };
    print_plan(&p.plan, format)?;
    errln!("dry run: everything is rendered into {}; nothing was started", p.dir().display());
    Ok(())
}

fn print_plan(plan: &Plan, format: PlanFormat) -> Result<(), CliError> {
    match format {
        PlanFormat::Table => out!("{}", plan.table()),
        PlanFormat::Json => documents::emit(Format::Json, plan)?,
        PlanFormat::Yaml => documents::emit(Format::Yaml, plan)?,
        PlanFormat::Dot => out!("{}", plan.dot()),
    }
    Ok(())
}

pub(crate) async fn reproduce(args: ReproduceArgs) -> Result<(), CliError> {
    // An archive is unpacked (and verified) into a temporary directory, removed once the
    // inputs are copied, and whenever reproduce fails before (dropped).
    struct Unpacked(PathBuf);
    impl Drop for Unpacked {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let unpacked = if args.source.is_file() {
        let tmp = Unpacked(std::env::temp_dir().join(format!("benchflow-reproduce-{}", workdir::run_id())));
        let root = archive::unpack(&args.source, &tmp.0)?;
        Some((tmp, root))
    } else {
        None
    };
    let archive_note = unpacked.as_ref().map(|_| args.source.display().to_string());
    let unpacked_root = unpacked.as_ref().map_or(args.source.clone(), |(_, root)| root.clone());
    let chosen = reproduced(&args, &unpacked_root)?;
    let recorded = Resolved::from_file(&chosen.inputs.join("resolved.yaml"))?;
    let root = choose_dir(args.workdir.as_deref(), args.dry_run);
    if root.join(layout::RESOLVED).exists() {
        return Err(CliError::Usage(format!(
            "{} already holds a run; choose a new --workdir",
            root.display()
        )));
    }
    let p = Session::reproduce(&recorded, &root, args.dry_run)?;
    let wd = &p.wd;
    for kind in ["scenario", "harness", "workload", "pipeline"] {
        if let Ok(text) = std::fs::read(chosen.inputs.join(format!("{kind}.yaml"))) {
            wd.write(&format!("inputs/{kind}.yaml"), &text)?;
        }
    }
    drop(unpacked);
    let mut origin = json!({
        "reproduces": recorded.get("run.id"),
        "run": chosen.run,
        "from": archive_note.unwrap_or_else(|| args.source.display().to_string()),
        "at": utc_now(),
    });
    if let Some(point) = &chosen.point {
        origin["point"] = json!(point);
    }
    wd.write(layout::ORIGIN, serde_json::to_string_pretty(&origin).unwrap_or_default().as_bytes())?;
    if !args.quiet {
        let what = chosen.run.as_deref().map_or("the latest inputs".to_string(), |r| format!("run {r}"));
        let point = chosen.point.as_deref().map(|p| format!(" of point {p}")).unwrap_or_default();
        errln!("reproducing {what}{point} of {}", args.source.display());
    }
    let format = args.output.format;
    if args.dry_run {
        return dry_run_done(&p, "reproduce", format);
    }
    execute(
        &p,
        Phase::ALL.to_vec(),
        true,
        How {
            steps: None,
            quiet: args.quiet,
            install_missing: args.install_missing,
            command: "reproduce",
            format,
            reuse_standup: true,
        },
    )
    .await
}

/// What `reproduce` re-runs: the inputs folder it reads, and which run (and point) that is.
struct Chosen {
    inputs: PathBuf,
    run: Option<String>,
    point: Option<String>,
}

/// The inputs `reproduce` reads from `source` (a work directory, an experiment directory, or
/// either unpacked from an archive): a run's own copy with `--run`; else the work directory's
/// `inputs/`, which are the latest run's when that run recorded the same (`run` then names
/// it). An experiment needs `--point`; refused otherwise with the command to use.
fn reproduced(args: &ReproduceArgs, source: &Path) -> Result<Chosen, CliError> {
    let given = args.source.display();
    let (dir, point) = if crate::experiment::state::ExpState::is_experiment(source) {
        let points: Vec<String> = std::fs::read_dir(source.join(layout::POINTS))
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                e.path().join(layout::RESOLVED).is_file().then(|| e.file_name().to_string_lossy().to_string())
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let Some(point) = &args.point else {
            let example = points.first().map_or("<point>", String::as_str);
            return Err(CliError::Usage(format!(
                "{given} is an experiment ({} point(s) with recorded inputs: {}): reproduce one point with \
                 `benchflow reproduce {given} --point {example}`; to run the whole experiment again, run \
                 `benchflow experiment` with its experiment.yaml",
                points.len(),
                if points.is_empty() { "none".to_string() } else { points.join(", ") }
            )));
        };
        if !points.contains(point) {
            return Err(CliError::Usage(format!(
                "{given}: no point `{point}` with recorded inputs (points/{point}/inputs/resolved.yaml); its points: {}",
                if points.is_empty() { "none".to_string() } else { points.join(", ") }
            )));
        }
        (source.join(layout::POINTS).join(point), Some(point.clone()))
    } else {
        if let Some(point) = &args.point {
            return Err(CliError::Usage(format!(
                "--point {point}: {given} is a run's work directory, not an experiment's; drop --point \
                 (--run picks one of its harness runs)"
            )));
        }
        (source.to_path_buf(), None)
    };
    if let Some(run) = &args.run {
        // Named as given (an archive's unpacked copy is temporary).
        let (run, inputs) = crate::workdir::inputs::of_run(&dir, run).map_err(|e| {
            CliError::Usage(e.to_string().replacen(&source.display().to_string(), &given.to_string(), 1))
        })?;
        return Ok(Chosen { inputs, run: Some(run), point });
    }
    // The latest run, when the work directory's inputs are the ones it ran with.
    let latest = crate::workdir::inputs::run_ids(&dir).pop().filter(|id| {
        let copy = std::fs::read(dir.join(layout::RESULTS).join(id).join("inputs/resolved.yaml"));
        copy.is_ok_and(|c| std::fs::read(dir.join(layout::RESOLVED)).is_ok_and(|now| now == c))
    });
    Ok(Chosen { inputs: dir.join(layout::INPUTS), run: latest, point })
}
