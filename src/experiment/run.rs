//! Running an experiment: each stack is stood up once (at most `max_stacks` at a time, first
//! come first served, by the executor's [`Walk`] over the stacks), runs its points one after
//! another as sessions in `points/<id>/` against the stack in `stacks/<id>/`, and is torn
//! down — also after a failure or the first Ctrl-C. `state.json` records every change, so the
//! same command resumes: points done with the same inputs are skipped ([`super::todo`]), stacks
//! no longer needed are not stood up.
//!
//! The parts: [`super::stack`] (stand up, tear down, a stack's points), [`super::point`] (one
//! point with its retries, after the between-points steps), [`super::trials`] (a search's
//! driver), [`super::progress`] (what is said). Interrupts reach every running session through
//! one [`Interrupts`] fan-out, with a run's meaning: the first stops and tears down, the second
//! leaves the stacks up.

use std::{
    path::Path,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{StreamExt, stream::FuturesUnordered};
use tokio::sync::mpsc;

use super::{
    ExperimentError,
    design::compact,
    plan::ExperimentPlan,
    progress::{Finished, Progress},
    stack,
    state::{ExpState, PointState, PointStatus, StackState, StackStatus},
    store::{self, Store},
    todo::{self, Todo},
    trials,
};
use crate::{
    exec::{
        self, Event, Interrupts, Options, Report, Sink,
        walk::{Decision, Facts, Walk},
    },
    session::Session,
    spec::pipeline::Phase,
    workdir::{WorkDir, layout, utc_now, write_atomic},
};

/// How an experiment ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub points: usize,
    /// Points run to the end in this invocation.
    pub done: usize,
    /// Points done earlier with the same inputs (not run again).
    pub reused: usize,
    /// (point, error) of the points that failed.
    pub failed: Vec<(String, String)>,
    /// Stacks stood up in this invocation.
    pub standups: usize,
    /// Why each stack that could not be stood up failed (its points failed with it).
    pub standup_failed: Vec<String>,
    /// Points left pending (after an interrupt, or a failure with `stop_on_error`).
    pub not_run: usize,
    pub interrupted: bool,
    /// What is still up (after a second Ctrl-C, or a failed teardown).
    pub leftovers: Vec<String>,
    /// A search's answer and trials.
    pub search: Option<super::search::Outcome>,
}

/// How an experiment runs: quietly or not, and whether a missing tool may be installed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunFlags {
    pub quiet: bool,
    pub install_missing: bool,
}

/// What every stack task shares: the plan, the record, the interrupts, what is said.
pub(super) struct Shared<'a> {
    pub(super) plan: &'a ExperimentPlan,
    pub(super) root: std::path::PathBuf,
    state: Mutex<ExpState>,
    /// A failure with `stop_on_error`: no new stack or point starts.
    failed_stop: AtomicBool,
    interrupts: Interrupts,
    flags: RunFlags,
    pub(super) progress: Mutex<Progress>,
    /// A failed point stops the experiment (a search's trials may fail: they do not).
    pub(super) stop_on_error: bool,
    pub(super) store: Option<Store>,
    sink: Mutex<&'a mut dyn Sink>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared<'_> {
    /// Says `line`: an experiment event for the caller's sink, and a line in `experiment.log`.
    pub(super) fn say(&self, line: &str) {
        lock(&self.sink).event(&Event::Experiment { message: line.to_string() });
        let path = self.root.join(layout::EXPERIMENT_LOG);
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            use std::io::Write as _;
            let _ = writeln!(f, "{} {}", utc_now(), crate::redact::text(line));
        }
        crate::workdir::crash::boundary();
    }

    fn save(&self) -> Result<(), ExperimentError> {
        lock(&self.state).save(&self.root)
    }

    /// Reads the record.
    pub(super) fn state<T>(&self, f: impl FnOnce(&ExpState) -> T) -> T {
        f(&lock(&self.state))
    }

    /// Adds a measured point to the store (when there is one and it lacks it). The store is a
    /// cache: a failure (a full disk) is said, and the experiment goes on.
    pub(super) fn keep_in_store(&self, p: &super::plan::PlannedPoint, dir: &Path) {
        self.store_point(&p.point.id, &p.hash, &p.point.label(), dir);
    }

    fn store_point(&self, id: &str, hash: &str, label: &str, dir: &Path) {
        let Some(store) = &self.store else { return };
        if let Err(e) = store.record(hash, dir, label) {
            self.say(&format!("{id}: not kept in the store {}: {e}", store.dir.display()));
        }
    }

    /// What the points that ran left for later (see [`super::point::run_point`]): their
    /// charts' PNGs (when the file asks for them), drawn from their records; then each done
    /// one goes to the store. Before the experiment returns, and when it resumes after a kill.
    fn finish_points(&self) -> Result<(), ExperimentError> {
        let pending: Vec<(String, PointState)> = self.state(|st| {
            st.points
                .iter()
                .filter(|(_, s)| s.charts_pending || s.store_pending)
                .map(|(id, s)| (id.clone(), s.clone()))
                .collect()
        });
        if pending.is_empty() {
            return Ok(());
        }
        let mut drawn = Vec::new();
        for (id, s) in &pending {
            let dir = self.root.join(layout::POINTS).join(id);
            if s.charts_pending {
                match crate::analysis::draw_missing_pngs(&dir) {
                    Ok(_) => drawn.push(id.clone()),
                    // Left pending: the next invocation tries again.
                    Err(e) => self.say(&format!("{id}: its charts' PNGs could not be drawn: {e}")),
                }
            }
            // The store checks its own entry (an intact one stays; a swapped or edited one is
            // set aside for this measurement).
            if s.status == PointStatus::Done {
                self.store_point(id, &s.hash, &s.label, &dir);
            }
        }
        self.try_state(|st| {
            for (id, _) in &pending {
                if let Some(p) = st.points.get_mut(id) {
                    p.store_pending = false;
                }
            }
            for id in &drawn {
                if let Some(p) = st.points.get_mut(id) {
                    p.charts_pending = false;
                }
            }
            Ok(())
        })
    }

    /// Changes the record (with what may fail on the way) and saves it.
    pub(super) fn try_state<T>(
        &self,
        f: impl FnOnce(&mut ExpState) -> Result<T, ExperimentError>,
    ) -> Result<T, ExperimentError> {
        let out = f(&mut lock(&self.state))?;
        self.save()?;
        Ok(out)
    }

    pub(super) fn point(&self, id: &str, f: impl FnOnce(&mut PointState)) -> Result<(), ExperimentError> {
        f(lock(&self.state).points.entry(id.to_string()).or_default());
        self.save()
    }

    pub(super) fn stack(&self, id: &str, f: impl FnOnce(&mut StackState)) -> Result<(), ExperimentError> {
        f(lock(&self.state).stacks.entry(id.to_string()).or_default());
        self.save()
    }

    /// An interrupt came.
    pub(super) fn interrupted(&self) -> bool {
        self.interrupts.count() > 0
    }

    /// No new stack or point starts: an interrupt came, or a failure under `stop_on_error`.
    pub(super) fn stopping(&self) -> bool {
        self.interrupts.count() > 0 || self.failed_stop.load(Ordering::SeqCst)
    }

    /// A second interrupt: stacks are left up.
    pub(super) fn leave_up(&self) -> bool {
        self.interrupts.count() >= 2
    }

    /// A point failed: under `stop_on_error`, nothing new starts.
    pub(super) fn point_failed(&self) {
        if self.stop_on_error {
            self.failed_stop.store(true, Ordering::SeqCst);
        }
    }

    /// Where a session's events are shown: the console, each line prefixed with the work
    /// directory's name when several stacks run at once.
    fn console(&self, dir: &Path) -> exec::Console {
        let console = exec::Console::new(self.flags.quiet);
        match self.plan.file.spec.max_stacks > 1 {
            true => {
                let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                console.prefixed(format!("{name}: "))
            }
            false => console,
        }
    }

    /// Executes a session, receiving the experiment's interrupts while it runs.
    pub(super) async fn execute(&self, session: &Session, opts: &Options) -> Result<Report, ExperimentError> {
        let mut signals = self.interrupts.subscribe();
        let mut sink = self.console(session.dir());
        Ok(session.execute(opts, &mut signals.rx, &mut sink).await?)
    }

    /// Runs a plan of the stack's (its between-points steps) in its work directory, every step
    /// selected: run every time, never reused.
    pub(super) async fn execute_plan(
        &self,
        plan: &crate::plan::Plan,
        dir: &Path,
    ) -> Result<Report, ExperimentError> {
        let mut signals = self.interrupts.subscribe();
        let mut sink = self.console(dir);
        let mut opts = self.options(vec![Phase::Run], None);
        opts.selection = Some((0..plan.steps.len()).collect());
        opts.teardown_on_failure = false;
        Ok(exec::execute(plan, dir, &opts, &mut signals.rx, &mut sink).await?)
    }

    /// Tears a session's stack down, receiving the experiment's interrupts meanwhile.
    pub(super) async fn teardown(&self, session: &Session) -> Result<Report, ExperimentError> {
        let mut signals = self.interrupts.subscribe();
        let mut sink = self.console(session.dir());
        let report = session.teardown(self.quiet(), &mut signals.rx, &mut sink).await?;
        Ok(report.unwrap_or(Report::default()))
    }

    /// The live view (progress bars) is off when quiet or when several stacks run at once.
    fn quiet(&self) -> bool {
        self.flags.quiet || self.plan.file.spec.max_stacks > 1
    }

    pub(super) fn options(&self, phases: Vec<Phase>, stack: Option<std::path::PathBuf>) -> Options {
        Options {
            phases,
            selection: None,
            teardown_on_failure: true,
            quiet: self.quiet(),
            install_missing: self.flags.install_missing,
            stack,
            reuse_standup: true,
        }
    }

    pub(super) fn finished_point(&self, id: &str, label: &str, seconds: f64, error: Option<&str>) {
        let up = self.state(|st| st.stacks.values().filter(|s| s.status == StackStatus::Up).count());
        let line = lock(&self.progress).finished(&Finished { id, label, seconds, error }, up);
        self.say(&line);
    }
}

/// Writes the experiment file as given, the `--set`s and `design.csv`.
/// The experiment file's path as one spelling (canonical when it is on disk), so that two
/// spellings of one file compare equal.
fn canonical_origin(origin: &str) -> String {
    std::fs::canonicalize(origin).map_or_else(|_| origin.to_string(), |p| p.display().to_string())
}

/// A directory that ran one experiment file does not take another (its record would then
/// describe points of two designs under one name).
fn same_experiment(state: &ExpState, plan: &ExperimentPlan) -> Result<(), ExperimentError> {
    if state.experiment.is_empty()
        || canonical_origin(&state.experiment) == canonical_origin(&plan.file.origin)
    {
        return Ok(());
    }
    Err(ExperimentError::Invalid {
        at: plan.root.display().to_string(),
        message: format!(
            "this directory holds the experiment from {}, not {}; run {} with another --workdir, or resume \
             this one with `benchflow experiment --workdir {}`",
            state.experiment,
            plan.file.origin,
            plan.file.origin,
            plan.root.display()
        ),
    })
}

/// Writes the experiment file as run, its overrides and the design; a design or overrides
/// that differ from those of the last invocation are kept in `history/` first.
fn write_inputs(plan: &ExperimentPlan, sets: &[String]) -> Result<(), ExperimentError> {
    let root = &plan.root;
    let text = format!("# from {}\n{}", plan.file.origin, plan.file.text);
    let sets: String = sets.iter().map(|s| format!("--set {s}\n")).collect();
    let before = |name: &str| std::fs::read(root.join(name)).ok();
    let (old_text, old_sets) = (before(layout::EXPERIMENT), before(layout::EXPERIMENT_OVERRIDES));
    let changed = old_text.as_ref().is_some_and(|t| t != text.as_bytes())
        || old_sets.as_ref().is_some_and(|t| t != sets.as_bytes());
    if changed {
        let stamp = utc_now().replace(':', "");
        for (name, old) in [(layout::EXPERIMENT, old_text), (layout::EXPERIMENT_OVERRIDES, old_sets)] {
            if let Some(old) = old {
                write_atomic(&root.join(layout::EXPERIMENT_HISTORY).join(format!("{stamp}-{name}")), &old)?;
            }
        }
    }
    write_atomic(&root.join(layout::EXPERIMENT), text.as_bytes())?;
    write_atomic(&root.join(layout::EXPERIMENT_OVERRIDES), sets.as_bytes())?;
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
    write_atomic(&root.join(layout::DESIGN), &bytes)?;
    Ok(())
}

/// Tears down what a work directory's record says is up (as `benchflow teardown DIR`).
pub(crate) async fn teardown_dir(
    dir: &Path,
    quiet: bool,
    signals: &mut mpsc::UnboundedReceiver<()>,
) -> Result<Report, ExperimentError> {
    let (session, warning) = Session::open_for_teardown(dir)?;
    if let Some(w) = warning.filter(|_| !quiet) {
        errln!("warning: {w}");
    }
    let report = session.teardown(quiet, signals, &mut exec::Console::new(quiet)).await?;
    Ok(report.unwrap_or(Report::default()))
}

/// Runs (or resumes) an experiment in `plan.root`. `signals` delivers one message per Ctrl-C;
/// the experiment's own news goes to `sink` (and `experiment.log`).
pub(crate) async fn run(
    plan: &ExperimentPlan,
    store: Option<Store>,
    flags: RunFlags,
    signals: &mut mpsc::UnboundedReceiver<()>,
    sink: &mut dyn Sink,
) -> Result<Summary, ExperimentError> {
    let root = plan.root.clone();
    let _lock = WorkDir::lock_dir(&root)?;
    let mut state = ExpState::load(&root)?;
    same_experiment(&state, plan)?;
    let resuming = !state.points.is_empty();
    write_inputs(plan, &plan.sets)?;
    state.experiment = canonical_origin(&plan.file.origin);
    state.invocations.push(utc_now());
    // A point directory that holds what ran with other inputs is set aside (found again by
    // its hash), so that nothing below copies over or appends to a measurement.
    for p in &plan.points {
        store::settle(&root, &mut state, &p.point.id, &p.hash)?;
    }
    // What moved is on record before anything is copied in its place.
    state.save(&root)?;
    // What is done with the same inputs stays done; the rest is to do.
    let todo = todo::decide(&plan.points, &plan.stacks, &mut state, &root, store.as_ref());
    for (i, from) in &todo.found {
        // Measured before with the same inputs (here under another id, set aside, or in the
        // store).
        let own = root.join(layout::POINTS).join(&plan.points[*i].point.id);
        if *from != own {
            store::copy_point(&root, from, &own, &plan.points[*i].hash)?;
            // A copy of a point killed before its chart PNGs were drawn lacks them (or of one
            // measured without them).
            if let Some(s) = state.points.get_mut(&plan.points[*i].point.id) {
                s.charts_pending |= plan.file.spec.analysis.point_pngs;
                s.store_pending = true;
            }
        }
    }
    let searching = plan.file.spec.search.clone();
    let reused = todo.found.len();
    let total_todo = searching.as_ref().map_or(todo.count(), |s| s.trials as usize);
    let stale = todo::stale(&plan.stacks, &state, &todo);
    let shared = Shared {
        plan,
        root: root.clone(),
        state: Mutex::new(state),
        failed_stop: AtomicBool::new(false),
        interrupts: Interrupts::default(),
        flags,
        progress: Mutex::new(Progress::new(
            total_todo,
            plan.file.spec.max_stacks,
            Summary { points: plan.points.len(), reused, ..Summary::default() },
        )),
        stop_on_error: plan.file.spec.stop_on_error && searching.is_none(),
        store,
        sink: Mutex::new(sink),
    };
    shared.save()?;
    // What a killed invocation left for later.
    shared.finish_points()?;
    // A point measured here that a killed invocation did not get to store yet.
    for (i, from) in &todo.found {
        if from.starts_with(&root) && shared.store.as_ref().is_some_and(|s| !s.has(&plan.points[*i].hash)) {
            shared.keep_in_store(&plan.points[*i], from);
        }
    }
    shared.say(&match resuming {
        true => format!(
            "resuming {}: {reused} of {} done with the same inputs, {total_todo} to run",
            root.display(),
            super::counted(plan.points.len(), "point")
        ),
        false => format!(
            "{} on {} in {}",
            super::counted(plan.points.len(), "point"),
            super::counted(plan.stacks.len(), "stack"),
            root.display()
        ),
    });
    // Stacks a stopped invocation left up that no point needs now (or built from other
    // inputs): down first.
    for id in stale {
        stack::tear_down_stale(&shared, &id).await?;
    }
    let outcome = {
        let driver = async {
            match &searching {
                Some(search) => trials::search(&shared, search).await.map(Some),
                None => drive_stacks(&shared, &todo).await.map(|()| None),
            }
        };
        tokio::pin!(driver);
        loop {
            tokio::select! {
                e = &mut driver => break e?,
                Some(()) = signals.recv() => {
                    if shared.interrupts.interrupt() >= 2 {
                        shared.say("second interrupt: stacks are left up (`benchflow teardown` on this directory removes them)");
                    } else {
                        shared.say("interrupted: finishing nothing new; tearing the stacks down (Ctrl-C again leaves them up)");
                    }
                }
            }
        }
    };
    // Before returning: what the points left for later.
    shared.finish_points()?;
    let mut summary = shared.progress.into_inner().unwrap_or_else(PoisonError::into_inner).summary;
    summary.interrupted = shared.interrupts.count() > 0;
    summary.search = outcome;
    let state = shared.state.into_inner().unwrap_or_else(PoisonError::into_inner);
    summary.not_run = plan
        .points
        .iter()
        .filter(|p| state.points.get(&p.point.id).is_none_or(|s| s.status == PointStatus::Pending))
        .count();
    for (id, s) in &state.stacks {
        if matches!(s.status, StackStatus::Up | StackStatus::StandingUp) {
            summary.leftovers.push(format!("stack {id}: {}", root.join(layout::STACKS).join(id).display()));
        }
    }
    Ok(summary)
}

/// The stacks with points to run, at most `max_stacks` at once, in order: the executor's walk
/// over the stacks (no dependencies, a limit), so a stop holds back the ones not started.
async fn drive_stacks(shared: &Shared<'_>, todo: &Todo) -> Result<(), ExperimentError> {
    let members: Vec<usize> = (0..todo.per_stack.len()).filter(|&k| !todo.per_stack[k].is_empty()).collect();
    let facts = Facts {
        deps: vec![Vec::new(); todo.per_stack.len()],
        members,
        limit: shared.plan.file.spec.max_stacks.max(1) as usize,
        ..Facts::default()
    };
    let mut walk = Walk::new(facts);
    let mut running = FuturesUnordered::new();
    let mut first_error = None;
    loop {
        while let Some((k, decision)) = walk.next(shared.stopping()) {
            if decision == Decision::Launch {
                let points = &todo.per_stack[k];
                running.push(async move { (k, stack::run_stack(shared, k, points).await) });
            }
        }
        let Some((k, result)) = running.next().await else { break };
        let status = if result.is_ok() { exec::Status::Done } else { exec::Status::Failed };
        walk.settle(k, status, false);
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
