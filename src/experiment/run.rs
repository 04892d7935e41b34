//! Running an experiment: each stack is stood up once (at most `max_stacks` at a time, first
//! come first served), runs its points one after another as sessions in `points/<id>/` against
//! the stack in `stacks/<id>/`, and is torn down — also after a failure or the first Ctrl-C.
//! `state.json` records every change, so the same command resumes: points done with the same
//! inputs are skipped, stacks no longer needed are not stood up.

use std::{
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::FuturesUnordered};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};

use super::{
    ExperimentError,
    design::compact,
    plan::{ExperimentPlan, PlannedPoint, Stack},
    search::{self, Decision},
    state::{ExpState, PointState, PointStatus, StackState, StackStatus},
    store::{self, Store},
};
use crate::{
    exec::{self, Options, Outcome, Report},
    platform::Ports,
    session::{self, Session, Setup},
    spec::{experiment::Action, pipeline::Phase},
    workdir::{WorkDir, utc_now, write_atomic},
};

/// How an experiment ended.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub points: usize,
    /// Points run to the end in this invocation.
    pub done: usize,
    /// Points done earlier with the same inputs (not run again).
    pub reused: usize,
    /// (point, error) of the points that failed.
    pub failed: Vec<(String, String)>,
    /// Stacks stood up in this invocation.
    pub standups: usize,
    /// Points left pending (after an interrupt, or a failure with `stop_on_error`).
    pub not_run: usize,
    pub interrupted: bool,
    /// What is still up (after a second Ctrl-C, or a failed teardown).
    pub leftovers: Vec<String>,
    /// A search's answer and trials.
    pub search: Option<super::search::Outcome>,
}

/// What every stack task shares.
pub(super) struct Shared<'a> {
    plan: &'a ExperimentPlan,
    root: PathBuf,
    state: Mutex<ExpState>,
    /// No new stack or point starts (an interrupt, or a failure with `stop_on_error`).
    stopping: AtomicBool,
    /// A second interrupt: stacks are left up.
    skip_teardown: AtomicBool,
    interrupts: AtomicU32,
    /// The running sessions' signal channels (an interrupt goes to each).
    sessions: Mutex<Vec<(u64, mpsc::UnboundedSender<()>)>>,
    next_session: AtomicU32,
    quiet: bool,
    /// `--install-missing`, for every session.
    install_missing: bool,
    progress: Mutex<Progress>,
    /// A failed point stops the experiment (a search's trials may fail: they do not).
    stop_on_error: bool,
    store: Option<Store>,
}

struct Progress {
    started: Instant,
    todo: usize,
    finished: usize,
    failed: usize,
    seconds: f64,
    summary: Summary,
}

impl Shared<'_> {
    fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("experiment: {line}");
        }
        let path = self.root.join("experiment.log");
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            use std::io::Write as _;
            let _ = writeln!(f, "{} {line}", utc_now());
        }
    }

    fn save(&self) -> Result<(), ExperimentError> {
        self.state.lock().expect("state lock").save(&self.root)
    }

    fn point(&self, id: &str, f: impl FnOnce(&mut PointState)) -> Result<(), ExperimentError> {
        {
            let mut st = self.state.lock().expect("state lock");
            f(st.points.entry(id.to_string()).or_default());
        }
        self.save()
    }

    fn stack(&self, id: &str, f: impl FnOnce(&mut StackState)) -> Result<(), ExperimentError> {
        {
            let mut st = self.state.lock().expect("state lock");
            f(st.stacks.entry(id.to_string()).or_default());
        }
        self.save()
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Executes a session with its own signal channel, registered while it runs.
    async fn execute(&self, session: &Session, opts: &Options) -> Result<Report, ExperimentError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let key = u64::from(self.next_session.fetch_add(1, Ordering::SeqCst));
        self.sessions.lock().expect("sessions lock").push((key, tx));
        let mut sink = self.console(session);
        let report = session.execute(opts, &mut rx, &mut sink).await;
        self.sessions.lock().expect("sessions lock").retain(|(k, _)| *k != key);
        Ok(report?)
    }

    /// Where a session's events are shown: the console, each line prefixed with the work
    /// directory's name when several stacks run at once.
    fn console(&self, session: &Session) -> exec::Console {
        let console = exec::Console::new(self.quiet);
        match self.plan.file.spec.max_stacks > 1 {
            true => {
                let name =
                    session.dir().file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                console.prefixed(format!("{name}: "))
            }
            false => console,
        }
    }

    fn options(&self, phases: Vec<Phase>, stack: Option<PathBuf>) -> Options {
        let quiet = self.quiet || self.plan.file.spec.max_stacks > 1;
        let install_missing = self.install_missing;
        Options { phases, selection: None, teardown_on_failure: true, quiet, install_missing, stack }
    }

    fn finished_point(&self, id: &str, label: &str, seconds: f64, error: Option<&str>) {
        let up = {
            let st = self.state.lock().expect("state lock");
            st.stacks.values().filter(|s| s.status == StackStatus::Up).count()
        };
        let line = {
            let mut p = self.progress.lock().expect("progress lock");
            p.finished += 1;
            p.seconds += seconds;
            match error {
                Some(e) => {
                    p.failed += 1;
                    p.summary.failed.push((id.to_string(), e.to_string()));
                }
                None => p.summary.done += 1,
            }
            let left = p.todo.saturating_sub(p.finished);
            let parallel = f64::from(self.plan.file.spec.max_stacks.max(1));
            let eta = if left == 0 {
                String::new()
            } else {
                // Measured: the mean wall time per point so far in this invocation.
                let per = p.started.elapsed().as_secs_f64() / p.finished as f64;
                format!(", ETA {}", clock(per * left as f64 / parallel.min(left as f64).max(1.0)))
            };
            format!(
                "{id} [{label}] {} in {:.1} s — {} of {} points{}, {up} stack(s) up{eta}",
                match error {
                    Some(e) => format!("FAILED ({})", e.lines().next().unwrap_or(e)),
                    None => "done".into(),
                },
                seconds,
                p.finished,
                p.todo,
                if p.failed > 0 { format!(", {} failed", p.failed) } else { String::new() },
            )
        };
        self.say(&line);
    }
}

/// `1:05` or `1:02:03`.
fn clock(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Writes the experiment file as given, the `--set`s and `design.csv`.
fn write_inputs(plan: &ExperimentPlan, sets: &[String]) -> Result<(), ExperimentError> {
    let root = &plan.root;
    let text = format!("# from {}\n{}", plan.file.origin, plan.file.text);
    write_atomic(&root.join("experiment.yaml"), text.as_bytes())?;
    let sets: String = sets.iter().map(|s| format!("--set {s}\n")).collect();
    write_atomic(&root.join("overrides.txt"), sets.as_bytes())?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["point".to_string(), "name".into(), "stack".into(), "stack_hash".into()];
    header.extend(plan.factors.iter().map(|(f, _)| f.clone()));
    let _ = w.write_record(&header);
    for p in &plan.points {
        let stack = &plan.stacks[p.stack];
        let mut row = vec![
            p.point.id.clone(),
            p.point.name.clone().unwrap_or_default(),
            stack.id.clone(),
            stack.hash.clone(),
        ];
        for (f, _) in &plan.factors {
            row.push(
                p.point.values.iter().find(|(k, _)| k == f).map(|(_, v)| compact(v)).unwrap_or_default(),
            );
        }
        let _ = w.write_record(&row);
    }
    let bytes = w.into_inner().unwrap_or_default();
    write_atomic(&root.join("design.csv"), &bytes)?;
    Ok(())
}

/// Tears down what a work directory's record says is up (as `benchflow teardown DIR`).
pub async fn teardown_dir(
    dir: &Path,
    quiet: bool,
    signals: &mut mpsc::UnboundedReceiver<()>,
) -> Result<Report, ExperimentError> {
    let session = Session::open(dir)?;
    let report = session.teardown(quiet, signals, &mut exec::Console::new(quiet)).await?;
    Ok(report.unwrap_or(Report {
        outcome: Outcome::Success,
        leftovers: Vec::new(),
        teardown_failed: Vec::new(),
    }))
}

/// How an experiment runs: quietly or not, and whether a missing tool may be installed.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFlags {
    pub quiet: bool,
    pub install_missing: bool,
}

/// Runs (or resumes) an experiment in `plan.root`. `signals` delivers one message per Ctrl-C.
pub async fn run(
    plan: &ExperimentPlan,
    store: Option<Store>,
    flags: RunFlags,
    signals: &mut mpsc::UnboundedReceiver<()>,
) -> Result<Summary, ExperimentError> {
    let root = plan.root.clone();
    std::fs::create_dir_all(&root)
        .map_err(|e| ExperimentError::State { path: root.display().to_string(), why: e.to_string() })?;
    let _lock = WorkDir::lock_dir(&root)?;
    let mut state = ExpState::load(&root)?;
    let resuming = !state.points.is_empty();
    write_inputs(plan, &plan.sets)?;
    state.experiment = plan.file.origin.clone();
    state.invocations.push(utc_now());
    // What is done with the same inputs stays done; the rest is to do.
    let mut todo: Vec<Vec<usize>> = vec![Vec::new(); plan.stacks.len()];
    let mut reused = 0;
    for (i, p) in plan.points.iter().enumerate() {
        let stack = &plan.stacks[p.stack];
        if let Some(from) = reusable(&state, &root, store.as_ref(), p) {
            // Measured before with the same inputs (here under another id, or in the store).
            if from != root.join("points").join(&p.point.id) {
                store::copy_point(&from, &root.join("points").join(&p.point.id))?;
            }
            let entry = state.points.entry(p.point.id.clone()).or_default();
            if entry.status != PointStatus::Done || entry.hash != p.hash {
                *entry = PointState {
                    status: PointStatus::Done,
                    hash: p.hash.clone(),
                    stack: stack.id.clone(),
                    label: p.point.label(),
                    finished_at: Some(utc_now()),
                    error: Some(format!(
                        "not measured again: the same inputs were measured in {}",
                        from.display()
                    )),
                    ..PointState::default()
                };
            }
            reused += 1;
            continue;
        }
        let entry = state.points.entry(p.point.id.clone()).or_default();
        *entry = PointState {
            status: PointStatus::Pending,
            hash: p.hash.clone(),
            stack: stack.id.clone(),
            label: p.point.label(),
            attempts: entry.attempts,
            error: entry.error.take(),
            ..PointState::default()
        };
        todo[p.stack].push(i);
    }
    for s in &plan.stacks {
        let e = state.stacks.entry(s.id.clone()).or_default();
        if e.hash != s.hash && matches!(e.status, StackStatus::Up | StackStatus::StandingUp) {
            // Recorded up, but for other inputs: torn down below before anything starts.
            e.status = StackStatus::Up;
        } else if e.hash.is_empty() {
            e.hash = s.hash.clone();
        }
    }
    let searching = plan.file.spec.search.clone();
    let total_todo: usize = match &searching {
        Some(s) => s.trials as usize,
        None => todo.iter().map(Vec::len).sum(),
    };
    let shared = Shared {
        plan,
        root: root.clone(),
        state: Mutex::new(state),
        stopping: AtomicBool::new(false),
        skip_teardown: AtomicBool::new(false),
        interrupts: AtomicU32::new(0),
        sessions: Mutex::new(Vec::new()),
        next_session: AtomicU32::new(0),
        quiet: flags.quiet,
        install_missing: flags.install_missing,
        progress: Mutex::new(Progress {
            started: Instant::now(),
            todo: total_todo,
            finished: 0,
            failed: 0,
            seconds: 0.0,
            summary: Summary { points: plan.points.len(), reused, ..Summary::default() },
        }),
        stop_on_error: plan.file.spec.stop_on_error && searching.is_none(),
        store,
    };
    shared.save()?;
    if resuming {
        shared.say(&format!(
            "resuming {}: {reused} of {} points done with the same inputs, {total_todo} to run",
            root.display(),
            plan.points.len()
        ));
    } else {
        shared.say(&format!(
            "{} points on {} stack(s) in {}",
            plan.points.len(),
            plan.stacks.len(),
            root.display()
        ));
    }

    // Stacks a stopped invocation left up that no point needs now (or built from other
    // inputs): down first.
    let stale: Vec<String> = {
        let st = shared.state.lock().expect("state lock");
        st.stacks
            .iter()
            .filter(|(_, s)| matches!(s.status, StackStatus::Up | StackStatus::StandingUp))
            .filter(|(id, s)| match plan.stacks.iter().position(|p| &p.id == *id) {
                Some(k) => todo[k].is_empty() || plan.stacks[k].hash != s.hash,
                None => true,
            })
            .map(|(id, _)| id.clone())
            .collect()
    };
    for id in stale {
        let dir = root.join("stacks").join(&id);
        shared.say(&format!(
            "stack {id}: left up by an earlier invocation and not needed as it is: tearing down"
        ));
        let (tx, mut rx) = mpsc::unbounded_channel();
        shared.sessions.lock().expect("sessions lock").push((u64::MAX, tx));
        let report = teardown_dir(&dir, shared.quiet, &mut rx).await;
        shared.sessions.lock().expect("sessions lock").retain(|(k, _)| *k != u64::MAX);
        let ok = report.as_ref().is_ok_and(|r| r.leftovers.is_empty() && r.teardown_failed.is_empty());
        let hash = plan.stacks.iter().find(|s| s.id == id).map(|s| s.hash.clone());
        shared.stack(&id, |s| {
            s.status = if ok { StackStatus::Down } else { StackStatus::Up };
            if let Some(h) = hash {
                s.hash = h;
            }
        })?;
        if !ok {
            return Err(ExperimentError::Leftover {
                dir: dir.display().to_string(),
                why: match report {
                    Ok(r) => [r.leftovers, r.teardown_failed].concat().join("; "),
                    Err(e) => e.to_string(),
                },
            });
        }
    }

    let (error, outcome) = {
        let driver = async {
            if let Some(search) = &searching {
                return match search_driver(&shared, search).await {
                    Ok(o) => (None, Some(o)),
                    Err(e) => (Some(e), None),
                };
            }
            let slots = Semaphore::new(plan.file.spec.max_stacks as usize);
            let mut running = FuturesUnordered::new();
            let mut first_error = None;
            for (k, points) in todo.iter().enumerate() {
                if points.is_empty() {
                    continue;
                }
                // Wait for a free slot (in the stacks' order), driving the running ones meanwhile.
                let permit = loop {
                    tokio::select! {
                        p = slots.acquire() => break p,
                        Some(r) = running.next() => {
                            if let Err(e) = r {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                };
                if shared.stopping() {
                    break;
                }
                let shared = &shared;
                running.push(async move {
                    let _permit = permit;
                    run_stack(shared, k, points).await
                });
            }
            while let Some(r) = running.next().await {
                if let Err(e) = r {
                    first_error.get_or_insert(e);
                }
            }
            (first_error, None)
        };
        tokio::pin!(driver);
        loop {
            tokio::select! {
                e = &mut driver => break e,
                Some(()) = signals.recv() => {
                    let n = shared.interrupts.fetch_add(1, Ordering::SeqCst) + 1;
                    shared.stopping.store(true, Ordering::SeqCst);
                    if n >= 2 {
                        shared.skip_teardown.store(true, Ordering::SeqCst);
                        shared.say("second interrupt: stacks are left up (`benchflow teardown` on this directory removes them)");
                    } else {
                        shared.say("interrupted: finishing nothing new; tearing the stacks down (Ctrl-C again leaves them up)");
                    }
                    for (_, tx) in shared.sessions.lock().expect("sessions lock").iter() {
                        let _ = tx.send(());
                    }
                }
            }
        }
    };
    if let Some(e) = error {
        return Err(e);
    }
    let mut summary = shared.progress.into_inner().expect("progress lock").summary;
    summary.interrupted = shared.interrupts.load(Ordering::SeqCst) > 0;
    summary.search = outcome;
    let state = shared.state.into_inner().expect("state lock");
    summary.not_run = plan
        .points
        .iter()
        .filter(|p| state.points.get(&p.point.id).is_none_or(|s| s.status == PointStatus::Pending))
        .count();
    for (id, s) in &state.stacks {
        if matches!(s.status, StackStatus::Up | StackStatus::StandingUp) {
            summary.leftovers.push(format!("stack {id}: {}", root.join("stacks").join(id).display()));
        }
    }
    Ok(summary)
}

/// A stack that is up: its session, and what its points need to reach it.
pub(super) struct Up {
    pub(super) id: String,
    session: Session,
    dir: PathBuf,
    run_id: String,
    ports: Ports,
    /// Points run on it in this invocation (between_points comes before all but the first).
    ran: u32,
}

/// Records `points` failed with `why` (and stops the experiment under `stop_on_error`).
fn fail_points(shared: &Shared<'_>, points: &[&PlannedPoint], why: &str) -> Result<(), ExperimentError> {
    for p in points {
        shared.point(&p.point.id, |s| {
            s.status = PointStatus::Failed;
            s.attempts += 1;
            s.error = Some(why.to_string());
        })?;
        shared.finished_point(&p.point.id, &p.point.label(), 0.0, Some(why));
    }
    if shared.stop_on_error {
        shared.stopping.store(true, Ordering::SeqCst);
    }
    Ok(())
}

/// Stands a stack up (or finds it still up) in `stacks/<id>/`, for `points` (the first gives
/// the request). When it cannot, the points are recorded failed and None is returned.
pub(super) async fn stand_up(
    shared: &Shared<'_>,
    stack: &Stack,
    points: &[&PlannedPoint],
) -> Result<Option<Up>, ExperimentError> {
    let plan = shared.plan;
    let dir = shared.root.join("stacks").join(&stack.id);
    let exp_id = shared.root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let run_id = format!("{exp_id}-{}", stack.id);
    let ports = Ports::recorded(session::recorded(&dir).as_ref().map(|r| &r.values));
    let setup = Setup::new(dir.clone(), points[0].request.clone()).with_run(run_id.clone(), ports);
    let session = match setup
        .compile_loaded(&plan.loaded)
        .map_err(ExperimentError::from)
        .and_then(|(r, p)| Session::from_parts(&dir, r, p).map_err(ExperimentError::from))
    {
        Ok(s) => s,
        Err(e) => {
            fail_points(shared, points, &format!("stack {}: {e}", stack.id))?;
            return Ok(None);
        }
    };
    let was_up = shared
        .state
        .lock()
        .expect("state lock")
        .stacks
        .get(&stack.id)
        .is_some_and(|s| s.status == StackStatus::Up);
    let setup_desc: Vec<String> =
        stack.setup.iter().map(|(k, v)| format!("{k}={}", super::design::shown(v))).collect();
    shared.say(&format!(
        "stack {} {}{}",
        stack.id,
        if was_up { "recorded up: checking it" } else { "standing up" },
        if setup_desc.is_empty() { String::new() } else { format!(" ({})", setup_desc.join(" ")) }
    ));
    shared.stack(&stack.id, |s| {
        s.hash = stack.hash.clone();
        s.status = StackStatus::StandingUp;
    })?;
    let t0 = Instant::now();
    let report = shared.execute(&session, &shared.options(vec![Phase::Standup], None)).await?;
    match &report.outcome {
        Outcome::Success => {
            // Reused only when every standup step was done and still holds.
            let ran = standup_ran(&dir);
            shared.stack(&stack.id, |s| {
                s.status = StackStatus::Up;
                s.error = None;
                if ran {
                    s.standups += 1;
                }
            })?;
            if ran {
                shared.progress.lock().expect("progress lock").summary.standups += 1;
            }
            let url = session.resolved.get("endpoint.url").and_then(Value::as_str).unwrap_or("");
            shared.say(&format!("stack {} up in {:.1} s: {url}", stack.id, t0.elapsed().as_secs_f64()));
        }
        Outcome::Interrupted => {
            shared.stack(&stack.id, |s| {
                s.status = if report.leftovers.is_empty() { StackStatus::Down } else { StackStatus::Up }
            })?;
            return Ok(None);
        }
        Outcome::Failed { step, error, .. } | Outcome::Lost { step, error } => {
            let why = format!("stack {} could not be stood up: {step}: {error}", stack.id);
            shared.stack(&stack.id, |s| {
                s.status = if report.leftovers.is_empty() { StackStatus::Failed } else { StackStatus::Up };
                s.error = Some(why.clone());
            })?;
            fail_points(shared, points, &why)?;
            return Ok(None);
        }
    }
    let ports = Ports::recorded(Some(&session.resolved.values));
    Ok(Some(Up { id: stack.id.clone(), session, dir, run_id, ports, ran: 0 }))
}

/// Tears a stack down (unless a second interrupt said to leave it).
pub(super) async fn tear_down(shared: &Shared<'_>, up: Up) -> Result<(), ExperimentError> {
    if shared.skip_teardown.load(Ordering::SeqCst) {
        return Ok(());
    }
    shared.say(&format!("stack {}: tearing down", up.id));
    let report = shared.execute(&up.session, &shared.options(vec![Phase::Teardown], None)).await?;
    let left = [report.leftovers.clone(), report.teardown_failed.clone()].concat().join("; ");
    let clean = left.is_empty();
    shared.say(&if clean {
        format!("stack {}: down", up.id)
    } else {
        format!("stack {}: teardown left {left}", up.id)
    });
    shared.stack(&up.id, |s| {
        s.status = if clean { StackStatus::Down } else { StackStatus::Up };
        if !clean {
            s.error = Some(format!("teardown left: {left}"));
        }
    })?;
    Ok(())
}

/// Stands a stack up, runs its points, tears it down.
async fn run_stack(shared: &Shared<'_>, k: usize, points: &[usize]) -> Result<(), ExperimentError> {
    let plan = shared.plan;
    let points: Vec<&PlannedPoint> = points.iter().map(|&i| &plan.points[i]).collect();
    let Some(mut up) = stand_up(shared, &plan.stacks[k], &points).await? else { return Ok(()) };
    let mut lost = None;
    for (n, p) in points.iter().enumerate() {
        if shared.stopping() {
            break;
        }
        if let Some(why) = &lost {
            fail_points(shared, &points[n..n + 1], &format!("not run: {why}"))?;
            continue;
        }
        match run_point(shared, p, &mut up).await? {
            PointEnd::Done | PointEnd::Interrupted | PointEnd::Failed => {}
            PointEnd::Lost(why) => lost = Some(format!("the stack's engine stopped ({why})")),
        }
    }
    tear_down(shared, up).await
}

/// Where a point's inputs were measured already: itself (done with the same hash), another
/// point of this experiment, or the store.
fn reusable(state: &ExpState, root: &Path, store: Option<&Store>, p: &PlannedPoint) -> Option<PathBuf> {
    let own = root.join("points").join(&p.point.id);
    if state.points.get(&p.point.id).is_some_and(|s| s.status == PointStatus::Done && s.hash == p.hash) {
        return Some(own);
    }
    let twin = state
        .points
        .iter()
        .filter(|(id, s)| **id != p.point.id && s.status == PointStatus::Done && s.hash == p.hash)
        .map(|(id, _)| root.join("points").join(id))
        .find(|d| store::measured(d));
    twin.or_else(|| store?.lookup(&p.hash))
}

/// The search: propose a value, run it as a point on its stack (kept up from trial to trial
/// while the stack stays the same), judge it, until the search says it is done.
async fn search_driver(
    shared: &Shared<'_>,
    s: &crate::spec::experiment::Search,
) -> Result<search::Outcome, ExperimentError> {
    let mut grown = shared.plan.clone();
    let mut trials: Vec<search::Trial> = Vec::new();
    let mut up: Option<Up> = None;
    let base = grown.base();
    let slo_defined = base.as_ref().and_then(|r| r.workload.as_ref()).is_some_and(|w| w.slo.is_set());
    let base_seed = base.as_ref().and_then(|r| r.get("workload.seed")).and_then(Value::as_u64).unwrap_or(42);
    // Inside the bracket, the measured stage runs `refine` times longer.
    let long_stage = base.as_ref().and_then(|r| {
        let stages = r.get("workload.stages")?.as_array()?.len();
        let i = search::measured_stage(s, stages)?;
        search::stretch(s, i, r.get(&format!("workload.stages.{i}"))?)
    });
    let result: Result<(), ExperimentError> = loop {
        if shared.stopping() {
            break Ok(());
        }
        let (x, repeat) = match search::decide(s, &trials) {
            Decision::Done => break Ok(()),
            Decision::Try { x, repeat } => (x, repeat),
        };
        let n = trials.len() + 1;
        let seed = (repeat > 0).then(|| base_seed + u64::from(repeat));
        let stretch = search::refining(s, &trials).then(|| long_stage.clone()).flatten();
        let values = search::point_values(s, x, seed, stretch.as_ref());
        let point = super::design::Point { id: format!("p{n:03}"), name: None, values };
        let i = grown.place(point)?;
        let p = grown.points[i].clone();
        let stack = grown.stacks[p.stack].clone();
        let dir = shared.root.join("points").join(&p.point.id);
        let source =
            reusable(&shared.state.lock().expect("state lock"), &shared.root, shared.store.as_ref(), &p);
        match source {
            Some(from) => {
                if from != dir {
                    store::copy_point(&from, &dir)?;
                }
                shared.point(&p.point.id, |st| {
                    if st.status != PointStatus::Done || st.hash != p.hash {
                        *st = PointState {
                            status: PointStatus::Done,
                            hash: p.hash.clone(),
                            stack: stack.id.clone(),
                            label: p.point.label(),
                            finished_at: Some(utc_now()),
                            ..PointState::default()
                        };
                    }
                })?;
                shared.progress.lock().expect("progress lock").summary.reused += 1;
            }
            None => {
                shared.point(&p.point.id, |st| {
                    *st = PointState {
                        status: PointStatus::Pending,
                        hash: p.hash.clone(),
                        stack: stack.id.clone(),
                        label: p.point.label(),
                        attempts: st.attempts,
                        ..PointState::default()
                    };
                })?;
                if up.as_ref().is_some_and(|u| u.id != stack.id)
                    && let Some(u) = up.take()
                {
                    tear_down(shared, u).await?;
                }
                if up.is_none() {
                    up = stand_up(shared, &stack, &[&p]).await?;
                }
                let Some(u) = up.as_mut() else {
                    trials.push(search::measure(&dir, s, slo_defined, n, x, repeat));
                    break Ok(());
                };
                match run_point(shared, &p, u).await? {
                    PointEnd::Interrupted => break Ok(()),
                    PointEnd::Lost(_) => {
                        trials.push(search::measure(&dir, s, slo_defined, n, x, repeat));
                        break Ok(());
                    }
                    PointEnd::Done | PointEnd::Failed => {}
                }
            }
        }
        let mut t = search::measure(&dir, s, slo_defined, n, x, repeat);
        t.seed = seed;
        t.stretch = stretch;
        shared.say(&format!(
            "trial {n}: {} = {x}{}{} → {}{}: {}",
            s.factor,
            if repeat > 0 { format!(" (repeat {repeat}, another seed)") } else { String::new() },
            t.stretch.as_ref().map(|(k, v)| format!(" ({k} {v})")).unwrap_or_default(),
            match t.verdict {
                search::Verdict::Pass => "pass",
                search::Verdict::Fail => "fail",
                search::Verdict::Measured => "measured",
                search::Verdict::Error => "error",
            },
            if t.marginal { " (marginal)" } else { "" },
            t.why
        ));
        trials.push(t);
    };
    if let Some(u) = up {
        tear_down(shared, u).await?;
    }
    result?;
    Ok(search::conclude(s, trials))
}

/// Whether the last standup of a stack's work directory ran a step (rather than reusing all).
fn standup_ran(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("events.jsonl")) else { return true };
    // The last walk's events: after the last run_started.
    let last = text.lines().rev().take_while(|l| !l.contains("\"run_started\"")).collect::<Vec<_>>();
    last.iter().any(|l| l.contains("\"step_started\""))
}

pub(super) enum PointEnd {
    Done,
    Failed,
    Interrupted,
    Lost(String),
}

/// One point with its retries, in `points/<id>/`, against a stack that is up (after the
/// stack's `between_points` actions, unless it is the stack's first point).
pub(super) async fn run_point(
    shared: &Shared<'_>,
    p: &PlannedPoint,
    up: &mut Up,
) -> Result<PointEnd, ExperimentError> {
    let plan = shared.plan;
    let id = &p.point.id;
    let label = p.point.label();
    let dir = shared.root.join("points").join(id);
    if up.ran > 0
        && let Err(why) = between_points(shared, &up.session).await
    {
        shared.point(id, |s| {
            s.status = PointStatus::Failed;
            s.error = Some(why.clone());
        })?;
        shared.finished_point(id, &label, 0.0, Some(&why));
        if shared.stop_on_error {
            shared.stopping.store(true, Ordering::SeqCst);
        }
        return Ok(PointEnd::Failed);
    }
    up.ran += 1;
    let tries = plan.file.spec.retries + 1;
    let mut last_error = String::new();
    let t0 = Instant::now();
    for attempt in 1..=tries {
        if shared.stopping() {
            shared.point(id, |s| s.status = PointStatus::Pending)?;
            return Ok(PointEnd::Interrupted);
        }
        shared.point(id, |s| {
            s.status = PointStatus::Running;
            s.attempts += 1;
            s.started_at = Some(utc_now());
        })?;
        shared.say(&format!(
            "{id} [{label}] on {}: running{}",
            up.id,
            if attempt > 1 { format!(" (attempt {attempt} of {tries})") } else { String::new() }
        ));
        let setup = Setup::new(dir.clone(), p.request.clone()).with_run(up.run_id.clone(), up.ports.clone());
        let session = match setup
            .compile_loaded(&plan.loaded)
            .map_err(ExperimentError::from)
            .and_then(|(r, pl)| Session::from_parts(&dir, r, pl).map_err(ExperimentError::from))
        {
            Ok(s) => s,
            Err(e) => {
                last_error = e.to_string();
                break;
            }
        };
        let opts = {
            let mut o = shared.options(vec![Phase::Run, Phase::Analyze], Some(up.dir.clone()));
            o.teardown_on_failure = false;
            o
        };
        let report = match shared.execute(&session, &opts).await {
            Ok(r) => r,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        match report.outcome {
            Outcome::Success => {
                let secs = t0.elapsed().as_secs_f64();
                shared.point(id, |s| {
                    s.status = PointStatus::Done;
                    s.error = None;
                    s.finished_at = Some(utc_now());
                    s.duration_s = Some(secs);
                })?;
                shared.finished_point(id, &label, secs, None);
                if let Some(store) = &shared.store {
                    store.record(&p.hash, &dir, &label)?;
                }
                return Ok(PointEnd::Done);
            }
            Outcome::Interrupted => {
                shared.point(id, |s| {
                    s.status = PointStatus::Pending;
                    s.error = Some("interrupted".into());
                })?;
                shared.say(&format!("{id}: interrupted (it runs again when the experiment resumes)"));
                return Ok(PointEnd::Interrupted);
            }
            Outcome::Lost { step, error } => {
                let why = format!("{step}: {error}");
                shared.point(id, |s| {
                    s.status = PointStatus::Failed;
                    s.error = Some(why.clone());
                    s.finished_at = Some(utc_now());
                })?;
                shared.finished_point(id, &label, t0.elapsed().as_secs_f64(), Some(&why));
                return Ok(PointEnd::Lost(why));
            }
            Outcome::Failed { step, error, .. } => {
                last_error = format!("{step}: {error}");
                if attempt < tries {
                    shared.say(&format!(
                        "{id}: attempt {attempt} failed ({}); trying again",
                        last_error.lines().next().unwrap_or("")
                    ));
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    shared.point(id, |s| {
        s.status = PointStatus::Failed;
        s.error = Some(last_error.clone());
        s.finished_at = Some(utc_now());
        s.duration_s = Some(secs);
    })?;
    shared.finished_point(id, &label, secs, Some(&last_error));
    if shared.stop_on_error {
        shared.stopping.store(true, Ordering::SeqCst);
    }
    Ok(PointEnd::Failed)
}

/// `POST URL/reset_prefix_cache` (through a port-forward for a Kubernetes endpoint).
async fn reset_prefix_cache(shared: &Shared<'_>, stack: &Session, url: &str) -> Result<(), String> {
    let cluster = crate::platform::kube::Target {
        context: stack.resolved.get("kubernetes.context").and_then(Value::as_str).map(str::to_string),
        kubeconfig: stack.resolved.get("kubernetes.kubeconfig").and_then(Value::as_str).map(str::to_string),
    };
    let (base, _forward) =
        crate::steps::http::local_url(url, &cluster).await.map_err(|e| format!("reset_prefix_cache: {e}"))?;
    let workload = stack.resolved.workload.as_ref();
    let headers = crate::loadgen::headers(&workload.map(|w| w.api.request_headers()).unwrap_or_default())
        .map_err(|e| format!("reset_prefix_cache: {e}"))?;
    let tls = workload.map(|w| w.api.tls.clone()).unwrap_or_default();
    let (status, _) = crate::steps::http::fetch(
        "POST",
        &format!("{base}/reset_prefix_cache"),
        None,
        &headers,
        &tls,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| format!("reset_prefix_cache: {e}"))?;
    if !(200..300).contains(&status) {
        return Err(format!("POST {url}/reset_prefix_cache answered {status}"));
    }
    shared.say(&format!("between points: POST {url}/reset_prefix_cache → {status}"));
    Ok(())
}

/// The experiment's `between_points` actions on a stack.
async fn between_points(shared: &Shared<'_>, stack: &Session) -> Result<(), String> {
    for action in &shared.plan.file.spec.between_points {
        match action {
            Action::ResetPrefixCache => {
                // Behind a router, every engine's cache (the router's own view of them is kept).
                let replicas: Vec<String> = stack
                    .resolved
                    .get("run.replicas")
                    .and_then(Value::as_array)
                    .map(|rs| rs.iter().filter_map(|r| r["url"].as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let urls = match replicas.is_empty() {
                    true => vec![
                        stack.resolved.get("endpoint.url").and_then(Value::as_str).unwrap_or("").to_string(),
                    ],
                    false => replicas,
                };
                for url in urls {
                    reset_prefix_cache(shared, stack, &url).await?;
                }
            }
            Action::Sleep(d) => tokio::time::sleep(Duration::from_secs_f64(d.0)).await,
            Action::Exec(cmd) => {
                let (program, args) = cmd.split_first().ok_or("between_points exec: the command is empty")?;
                let out = tokio::process::Command::new(program)
                    .args(args)
                    .output()
                    .await
                    .map_err(|e| format!("between_points exec `{program}`: {e}"))?;
                shared.say(&format!(
                    "between points: {} → {}{}",
                    cmd.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stdout)
                        .trim_end()
                        .lines()
                        .map(|l| format!("\n  {l}"))
                        .collect::<String>()
                ));
                if !out.status.success() {
                    return Err(format!(
                        "between_points exec `{}` exited with {}",
                        cmd.join(" "),
                        out.status
                    ));
                }
            }
        }
    }
    Ok(())
}
