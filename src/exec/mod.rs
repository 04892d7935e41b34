//! The executor: walks the plan's DAG, runs every ready step in parallel, persists each change
//! to `state.json` and `events.jsonl`, and is the only part that prints step progress.
//!
//! Lifecycle of a step: pending → running → done | failed (after its retries) | cancelled; a
//! step whose dependency did not succeed becomes `not run`; a step whose condition is false is
//! `skipped`; a done step whose input hash is unchanged is not run again (unless selected with
//! `-s`). Teardown steps run after everything else has finished or been stopped — also after a
//! failure or the first interrupt. A second interrupt skips teardown and prints what is left;
//! a third exits at once (handled where the signals are received).

pub mod events;
pub mod state;

use std::{
    collections::{BTreeSet, VecDeque},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use petgraph::{Direction, graph::NodeIndex};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

use self::state::Attempt;
pub use self::{
    events::{Event, Reporter},
    state::{State, Status},
};
use crate::{
    plan::{Plan, PlannedStep},
    spec::pipeline::Phase,
    steps::{self, Ctx, Done, Progress, StepError, UndoRecord},
    workdir::{WorkdirError, utc_now},
};

/// What to execute.
#[derive(Debug, Clone)]
pub struct Options {
    /// The phases this command runs (teardown included or not).
    pub phases: Vec<Phase>,
    /// `-s`: only these steps (indices), run even if done.
    pub selection: Option<BTreeSet<usize>>,
    /// Run the teardown phase after a failure or an interrupt, even if `phases` omits it.
    pub teardown_on_failure: bool,
    pub quiet: bool,
    /// `--install-missing`: tool steps install a missing tool benchflow installs.
    pub install_missing: bool,
    /// The work directory whose standup this run uses (an experiment's stack): its done steps
    /// count as done here, and what they set up is watched as this run's own.
    pub stack: Option<PathBuf>,
}

/// How the execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    /// The first step that failed, its phase and its error.
    Failed {
        step: String,
        phase: Phase,
        error: String,
    },
    Interrupted,
    /// What a done step set up went away during the run (the engine died): the run was
    /// stopped, what was measured analysed, and teardown run.
    Lost {
        step: String,
        error: String,
    },
}

/// The result of an execution.
#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    /// Undo records left behind (after a skipped teardown, or when teardown was not run).
    pub leftovers: Vec<String>,
    pub teardown_failed: Vec<String>,
}

/// Errors that stop the executor itself (not a step's failure).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Workdir(#[from] WorkdirError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(
        "step {step} ({phase}) is not done in {dir}; run `benchflow standup --workdir {dir}` first, or select steps with -s"
    )]
    NotStoodUp { step: String, phase: &'static str, dir: String },
}

/// What a step task sends back.
struct Finished {
    index: usize,
    result: Result<Done, StepError>,
    attempts: Vec<Attempt>,
    elapsed: f64,
}

/// The walk's bookkeeping: statuses by step index, `state.json`, the reporter.
struct Walker<'a> {
    plan: &'a Plan,
    dir: PathBuf,
    state: State,
    reporter: Reporter,
    status: Vec<Status>,
    /// Interrupted steps whose output is kept (analysis still runs on it).
    partial: Vec<bool>,
}

impl Walker<'_> {
    fn save(&self) -> Result<(), WorkdirError> {
        self.state.save(&self.dir)
    }

    /// A final status for a step that did not run (skipped, not run, cancelled).
    fn set(&mut self, i: usize, status: Status, note: &str) -> Result<(), WorkdirError> {
        self.status[i] = status;
        let s = &self.plan.steps[i];
        let entry = self.state.steps.entry(s.id.clone()).or_default();
        entry.status = status;
        entry.hash = s.hash.clone();
        entry.summary = Some(note.to_string());
        self.reporter.emit(Event::StepFinished {
            step: s.id.clone(),
            status,
            duration_s: None,
            summary: None,
            error: Some(note.to_string()),
        });
        self.save()
    }

    fn start(&mut self, i: usize) -> Result<(), WorkdirError> {
        let s = &self.plan.steps[i];
        let entry = self.state.steps.entry(s.id.clone()).or_default();
        *entry = state::StepState {
            status: Status::Running,
            hash: s.hash.clone(),
            started_at: Some(utc_now()),
            undo: entry.undo.take(),
            ..Default::default()
        };
        self.status[i] = Status::Running;
        self.reporter.emit(Event::StepStarted {
            step: s.id.clone(),
            kind: s.kind,
            phase: s.phase,
            does: s.describe.first().cloned().unwrap_or_default(),
        });
        self.save()
    }

    /// Records a finished step; returns its error, if it did not succeed.
    fn finish(&mut self, f: Finished) -> Result<Option<String>, WorkdirError> {
        let i = f.index;
        let s = &self.plan.steps[i];
        let undoes = s.args.as_ref().and_then(|a| a.undoes());
        let entry = self.state.steps.entry(s.id.clone()).or_default();
        entry.finished_at = Some(utc_now());
        entry.duration_s = Some(f.elapsed);
        entry.attempts = f.attempts;
        let (status, summary, error) = match f.result {
            Ok(done) => {
                entry.summary = Some(done.summary.clone());
                match undoes {
                    // The undone step has nothing left to undo (in either record).
                    Some(target) => {
                        if self.state.undo_of(&self.dir, target).is_some() {
                            steps::forget_undo(&self.dir, target);
                            let t = self.state.steps.entry(target.to_string()).or_default();
                            t.undo = None;
                            t.status = Status::Undone;
                        }
                    }
                    None => entry.undo = done.undo,
                }
                (Status::Done, Some(done.summary), None)
            }
            Err(StepError::Cancelled) => (Status::Cancelled, None, Some("interrupted".to_string())),
            Err(StepError::Interrupted(what)) => {
                self.partial[i] = true;
                (Status::Cancelled, None, Some(format!("interrupted: {what}")))
            }
            Err(StepError::Failed(e)) => (Status::Failed, None, Some(e)),
        };
        self.status[i] = status;
        if let Some(entry) = self.state.steps.get_mut(&s.id) {
            entry.status = status;
            if error.is_some() {
                entry.error.clone_from(&error);
            }
        }
        self.reporter.emit(Event::StepFinished {
            step: s.id.clone(),
            status,
            duration_s: Some(f.elapsed),
            summary,
            error: error.clone(),
        });
        self.save()?;
        Ok(error)
    }

    fn signal(&mut self, count: u32, during_teardown: bool) -> Result<(), WorkdirError> {
        self.state.interrupts.push(utc_now());
        self.reporter.emit(Event::Signal { count, during_teardown });
        self.save()
    }
}

async fn run_step(
    step: PlannedStep,
    index: usize,
    ctx: Ctx,
    events: mpsc::UnboundedSender<Event>,
) -> Finished {
    let t0 = Instant::now();
    let mut attempts = Vec::new();
    let mut backoff = step.backoff_s;
    let mut attempt = 0;
    let Some(args) = step.args else {
        return Finished { index, result: Ok(Done::with_summary("nothing to do")), attempts, elapsed: 0.0 };
    };
    loop {
        attempt += 1;
        let started_at = utc_now();
        let a0 = Instant::now();
        ctx.note(&format!(
            "== {} attempt {attempt} at {started_at} ==\n# {}",
            step.id,
            step.describe.join("\n# ")
        ));
        let run = args.clone().run(&ctx);
        let result = match step.timeout_s {
            Some(t) => match tokio::time::timeout(Duration::from_secs_f64(t), run).await {
                Ok(r) => r,
                Err(_) => Err(StepError::Failed(format!("timed out after {t} s (the step's `timeout`)"))),
            },
            None => run.await,
        };
        let outcome = match &result {
            Ok(_) => "done".to_string(),
            Err(e) => e.to_string(),
        };
        ctx.note(&format!(
            "== attempt {attempt}: {outcome} ==",
            outcome = outcome.lines().next().unwrap_or("")
        ));
        attempts.push(Attempt {
            started_at,
            duration_s: a0.elapsed().as_secs_f64(),
            outcome: outcome.clone(),
        });
        match result {
            Err(StepError::Failed(error)) if attempt <= step.retries && !*ctx.cancel.borrow() => {
                let _ = events.send(Event::StepRetry {
                    step: step.id.clone(),
                    attempt,
                    error,
                    backoff_s: backoff,
                });
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(backoff)) => {}
                    _ = ctx.cancelled() => {
                        return Finished { index, result: Err(StepError::Cancelled), attempts, elapsed: t0.elapsed().as_secs_f64() };
                    }
                }
                backoff *= 2.0;
            }
            result => return Finished { index, result, attempts, elapsed: t0.elapsed().as_secs_f64() },
        }
    }
}

/// Whether a status is final for this walk (a dependent can be decided).
fn settled(s: Status) -> bool {
    !matches!(s, Status::Pending | Status::Running)
}

/// Executes `plan` in the work directory `dir`. `signals` delivers one message per Ctrl-C /
/// SIGTERM (the caller owns the signal handlers; a test passes a channel).
///
/// The walk: a step's in-degree is the number of its dependencies (among the steps this command
/// runs) not yet settled; when it reaches zero the step is decided: blocked (a dependency failed
/// or was interrupted: not run / cancelled) or ready (launched, unless an interrupt came, when
/// only steps that salvage what an interrupted step kept still start).
pub async fn execute(
    plan: &Plan,
    dir: &Path,
    opts: &Options,
    signals: &mut mpsc::UnboundedReceiver<()>,
) -> Result<Report, ExecError> {
    let n = plan.steps.len();
    let graph = plan.graph();
    let neighbours = |i: usize, d: Direction| -> Vec<usize> {
        graph.neighbors_directed(NodeIndex::new(i), d).map(|x| graph[x]).collect()
    };
    let deps: Vec<Vec<usize>> = (0..n).map(|i| neighbours(i, Direction::Incoming)).collect();
    let dependents: Vec<Vec<usize>> = (0..n).map(|i| neighbours(i, Direction::Outgoing)).collect();
    let mut reporter = Reporter::open(dir, plan, opts.quiet);
    // A record that cannot be read is never replaced by an empty one; only teardown goes on,
    // from the undo records in setup/undo/ (the damaged file is kept aside).
    let teardown_only = opts.selection.is_none() && opts.phases == [Phase::Teardown];
    let state = match State::load(dir, &plan.run_id) {
        Ok(state) => state,
        Err(e) if teardown_only => {
            let aside = dir.join(format!("state.damaged-{}.json", utc_now().replace([':', '.'], "-")));
            let _ = std::fs::rename(dir.join("state.json"), &aside);
            reporter.emit(Event::Warning { message: format!("{e}; tearing down from setup/undo/") });
            State::fresh(&plan.run_id)
        }
        Err(e) => return Err(e.into()),
    };
    let mut state = state;
    if teardown_only {
        // Steps a killed benchflow left "running" are not running any more.
        for s in state.steps.values_mut().filter(|s| s.status == Status::Running) {
            s.status = Status::Cancelled;
            s.error = Some(
                "it was running when benchflow stopped (killed?); see its log in setup/commands/".into(),
            );
        }
    }
    // An experiment's stack: what its standup did, read once.
    let upstream = match &opts.stack {
        Some(stack) => Some(State::load(stack, &plan.run_id)?),
        None => None,
    };
    let upstream_done = |id: &str| {
        upstream
            .as_ref()
            .and_then(|u| u.steps.get(id))
            .is_some_and(|s| matches!(s.status, Status::Done | Status::Skipped))
    };
    let upstream_effects: Vec<(String, UndoRecord)> = upstream
        .as_ref()
        .map(|u| {
            u.steps
                .iter()
                .filter(|(_, s)| s.status == Status::Done)
                .filter_map(|(id, s)| s.undo.clone().map(|r| (id.clone(), r)))
                .collect()
        })
        .unwrap_or_default();
    let mut w = Walker {
        plan,
        dir: dir.to_path_buf(),
        state,
        reporter,
        status: vec![Status::Pending; n],
        partial: vec![false; n],
    };
    let selected = |i: usize| opts.selection.as_ref().is_none_or(|sel| sel.contains(&i));
    // `-s` picks steps whatever their phase; otherwise the command's phases decide.
    let in_main: Vec<bool> = (0..n)
        .map(|i| {
            let s = &plan.steps[i];
            s.phase != Phase::Teardown
                && match &opts.selection {
                    Some(sel) => sel.contains(&i),
                    None => opts.phases.contains(&s.phase),
                }
        })
        .collect();
    let main: Vec<usize> = (0..n).filter(|&i| in_main[i]).collect();
    // Steps of earlier phases this command needs must already be done.
    for &i in &main {
        for &j in &deps[i] {
            let done_before = opts.selection.is_some()
                || upstream_done(&plan.steps[j].id)
                || w.state
                    .steps
                    .get(&plan.steps[j].id)
                    .is_some_and(|s| matches!(s.status, Status::Done | Status::Skipped));
            if !in_main[j] && plan.steps[j].phase != Phase::Teardown && !done_before {
                return Err(ExecError::NotStoodUp {
                    step: plan.steps[j].id.clone(),
                    phase: plan.steps[j].phase.as_str(),
                    dir: dir.display().to_string(),
                });
            }
        }
    }
    w.reporter.emit(Event::RunStarted {
        run_id: plan.run_id.clone(),
        dir: dir.display().to_string(),
        phases: opts.phases.clone(),
        selection: opts.selection.as_ref().map(|sel| sel.iter().map(|&i| plan.steps[i].id.clone()).collect()),
    });
    for &i in &main {
        if !plan.steps[i].enabled {
            w.set(i, Status::Skipped, "condition is false")?;
        }
    }
    // Done earlier with the same inputs, its effect still holding: reused, unless a dependency
    // ran again in this walk (then its input changed: e.g. new records to analyse).
    let reusable: Vec<bool> = (0..n)
        .map(|i| {
            let s = &plan.steps[i];
            let st = w.state.steps.get(&s.id);
            opts.selection.is_none()
                && st.is_some_and(|st| st.status == Status::Done && st.hash == s.hash)
                && still_valid(st)
        })
        .collect();
    let mut ran = vec![false; n];

    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<Progress>();
    let run = std::sync::Arc::new(std::sync::Mutex::new(None));
    let said = |p: Progress| Event::StepProgress { step: p.step, message: p.message };
    let ctx_for = |s: &PlannedStep, cancel: watch::Receiver<bool>, w: &Walker| Ctx {
        workdir: dir.to_path_buf(),
        step: s.id.clone(),
        log: dir.join("setup/commands").join(format!("{}.log", s.id)),
        cancel,
        quiet: opts.quiet,
        install_missing: opts.install_missing,
        progress: progress_tx.clone(),
        run: run.clone(),
        target: s.args.as_ref().and_then(|a| a.undoes()).and_then(|t| w.state.undo_of(dir, t)),
    };
    // In-degree: dependencies this command runs that have not settled yet.
    let mut waiting: Vec<usize> =
        (0..n).map(|i| deps[i].iter().filter(|&&j| in_main[j] && !settled(w.status[j])).count()).collect();
    let mut decidable: VecDeque<usize> =
        main.iter().copied().filter(|&i| w.status[i] == Status::Pending && waiting[i] == 0).collect();
    // Settled before the walk (skipped, reused): their dependents are counted already.
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut outcome = Outcome::Success;
    let mut interrupts = 0u32;
    // What done steps set up (an engine process) is watched while the run goes on.
    let mut watch = tokio::time::interval(Duration::from_millis(500));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lost = false;
    loop {
        while let Some(i) = decidable.pop_front() {
            if w.status[i] != Status::Pending {
                continue;
            }
            let salvage = plan.steps[i].args.as_ref().is_some_and(|a| a.salvages());
            let usable = |w: &Walker, j: usize| {
                matches!(w.status[j], Status::Done | Status::Skipped) || (salvage && w.partial[j])
            };
            let blocked = deps[i].iter().copied().find(|&j| in_main[j] && !usable(&w, j));
            if let Some(j) = blocked {
                // Behind an interrupted step: cancelled too; behind a failure: not run.
                let (status, why) = if w.status[j] == Status::Cancelled {
                    (Status::Cancelled, format!("interrupted before it started ({} was)", plan.steps[j].id))
                } else {
                    (Status::NotRun, format!("{} did not succeed", plan.steps[j].id))
                };
                w.set(i, status, &why)?;
                release(i, &dependents, &in_main, &mut waiting, &mut decidable);
            } else if reusable[i] && !deps[i].iter().any(|&j| ran[j]) {
                w.status[i] = Status::Done;
                w.reporter.emit(Event::StepReused { step: plan.steps[i].id.clone() });
                release(i, &dependents, &in_main, &mut waiting, &mut decidable);
            } else if (interrupts == 0 && !lost) || (salvage && deps[i].iter().any(|&j| w.partial[j])) {
                ran[i] = true;
                w.start(i)?;
                let step = plan.steps[i].clone();
                let ctx = ctx_for(&step, cancel_rx.clone(), &w);
                tasks.spawn(run_step(step, i, ctx, events_tx.clone()));
            }
            // Else: ready, but an interrupt came: it stays pending and is cancelled below.
        }
        if tasks.is_empty() {
            break;
        }
        tokio::select! {
            Some(joined) = tasks.join_next() => {
                let f = joined.map_err(|e| WorkdirError::Io { path: dir.into(), source: std::io::Error::other(e.to_string()) })?;
                let i = f.index;
                if let Some(error) = w.finish(f)?
                    && outcome == Outcome::Success
                    && w.status[i] == Status::Failed
                {
                    outcome = Outcome::Failed { step: plan.steps[i].id.clone(), phase: plan.steps[i].phase, error };
                }
                release(i, &dependents, &in_main, &mut waiting, &mut decidable);
            }
            Some(event) = events_rx.recv() => w.reporter.emit(event),
            Some(p) = progress_rx.recv() => w.reporter.emit(said(p)),
            _ = watch.tick(), if !lost => {
                let gone = w.state.steps.iter().find_map(|(id, s)| {
                    let record = s.undo.as_ref().filter(|_| s.status == Status::Done)?;
                    (!record.holds()).then(|| (id.clone(), record.describe()))
                }).or_else(|| {
                    upstream_effects.iter().find(|(_, r)| !r.holds()).map(|(id, r)| (id.clone(), r.describe()))
                });
                if let Some((step, what)) = gone {
                    lost = true;
                    w.reporter.emit(Event::EffectLost { step: step.clone(), what: what.clone() });
                    if matches!(outcome, Outcome::Success) {
                        outcome = Outcome::Lost { step, error: format!("{what}: it stopped during the run") };
                    }
                    let _ = cancel_tx.send(true);
                }
            }
            Some(()) = signals.recv() => {
                interrupts += 1;
                w.signal(interrupts, false)?;
                if interrupts == 1 {
                    let _ = cancel_tx.send(true);
                }
            }
        }
    }
    while let Ok(event) = events_rx.try_recv() {
        w.reporter.emit(event);
    }
    while let Ok(p) = progress_rx.try_recv() {
        w.reporter.emit(said(p));
    }
    for &i in &main {
        if w.status[i] == Status::Pending {
            w.set(i, Status::Cancelled, "interrupted before it started")?;
        }
    }
    if interrupts > 0 {
        outcome = Outcome::Interrupted;
    }
    let mut report = Report { outcome, leftovers: Vec::new(), teardown_failed: Vec::new() };

    // Teardown, one step at a time: asked for, or owed after a failure or an interrupt.
    let wants_teardown = opts.phases.contains(&Phase::Teardown)
        || (opts.teardown_on_failure && report.outcome != Outcome::Success);
    if wants_teardown && interrupts < 2 {
        let teardown: Vec<usize> =
            (0..n).filter(|&i| plan.steps[i].phase == Phase::Teardown && selected(i)).collect();
        let (_keep_tx, teardown_cancel) = watch::channel(false);
        let mut skipped = false;
        for &i in &teardown {
            let s = &plan.steps[i];
            if !s.enabled {
                w.set(i, Status::Skipped, "condition is false")?;
                continue;
            }
            w.start(i)?;
            let ctx = ctx_for(s, teardown_cancel.clone(), &w);
            let fut = run_step(s.clone(), i, ctx, events_tx.clone());
            tokio::pin!(fut);
            let f = loop {
                tokio::select! {
                    f = &mut fut => break Some(f),
                    Some(event) = events_rx.recv() => w.reporter.emit(event),
                    Some(p) = progress_rx.recv() => w.reporter.emit(said(p)),
                    Some(()) = signals.recv() => {
                        interrupts += 1;
                        w.signal(interrupts, true)?;
                        if interrupts >= 2 {
                            break None;
                        }
                    }
                }
            };
            while let Ok(event) = events_rx.try_recv() {
                w.reporter.emit(event);
            }
            while let Ok(p) = progress_rx.try_recv() {
                w.reporter.emit(said(p));
            }
            match f {
                Some(f) => {
                    if w.finish(f)?.is_some() {
                        report.teardown_failed.push(s.id.clone());
                    }
                }
                None => {
                    w.set(i, Status::Cancelled, "teardown skipped by a second interrupt")?;
                    skipped = true;
                    break;
                }
            }
        }
        if skipped {
            report.outcome = Outcome::Interrupted;
        }
    }
    report.leftovers =
        w.state.leftovers(dir).into_iter().map(|(id, rec)| describe_leftover(&id, &rec)).collect();
    w.reporter.emit(Event::RunFinished {
        outcome: format!("{:?}", report.outcome),
        leftovers: report.leftovers.clone(),
    });
    w.save()?;
    Ok(report)
}

/// Step `i` settled: each dependent this command runs has one dependency less to wait for.
fn release(
    i: usize,
    dependents: &[Vec<usize>],
    in_main: &[bool],
    waiting: &mut [usize],
    decidable: &mut VecDeque<usize>,
) {
    for &d in &dependents[i] {
        if in_main[d] {
            waiting[d] = waiting[d].saturating_sub(1);
            if waiting[d] == 0 {
                decidable.push_back(d);
            }
        }
    }
}

/// Whether a done step's effect still holds (a started process is still running).
fn still_valid(st: Option<&state::StepState>) -> bool {
    st.and_then(|s| s.undo.as_ref()).is_none_or(UndoRecord::holds)
}

/// One line about something a step left behind.
pub fn describe_leftover(id: &str, rec: &UndoRecord) -> String {
    format!("{id}: {}", rec.describe())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::{plan, resolve::Resolved, spec};

    fn plan_of(pipeline: &str) -> Plan {
        let resolved = Resolved {
            format_version: 1,
            benchflow_version: "test".into(),
            request: Default::default(),
            files: BTreeMap::from([("pipeline".into(), "p.yaml".into())]),
            values: json!({"run": {"id": "t"}}),
            sources: BTreeMap::new(),
            pipeline: spec::from_yaml(pipeline, "p.yaml", &[]).unwrap(),
            workload: None,
            texts: BTreeMap::new(),
        };
        plan::compile(&resolved).unwrap()
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bf-exec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("setup/commands")).unwrap();
        d
    }

    fn opts() -> Options {
        Options {
            phases: Phase::ALL.to_vec(),
            selection: None,
            teardown_on_failure: true,
            quiet: true,
            install_missing: false,
            stack: None,
        }
    }

    #[tokio::test]
    async fn failure_stops_dependents_teardown_runs_and_state_is_saved() {
        let plan = plan_of(
            "steps:\n\
             - { name: up, phase: standup, kind: spawn, with: { command: [sleep, '30'], stop_timeout: 1s } }\n\
             - { name: bad, phase: run, kind: exec, after: [up], with: { command: [sh, -c, 'exit 3'] } }\n\
             - { name: next, phase: analyze, kind: exec, after: [bad], with: { command: ['true'] } }\n",
        );
        let d = dir("fail");
        let (_tx, mut rx) = mpsc::unbounded_channel();
        let report = execute(&plan, &d, &opts(), &mut rx).await.unwrap();
        assert!(
            matches!(&report.outcome, Outcome::Failed { step, phase: Phase::Run, .. } if step == "02_bad")
        );
        assert!(report.leftovers.is_empty() && report.teardown_failed.is_empty());
        let state = State::load(&d, "t").unwrap();
        let status = |id: &str| state.steps[id].status;
        assert_eq!(
            [status("01_up"), status("02_bad"), status("03_next"), status("04_stop_up")],
            [Status::Undone, Status::Failed, Status::NotRun, Status::Done]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn an_interrupt_cancels_the_running_step_and_keeps_teardown() {
        let plan = plan_of(
            "steps:\n\
             - { name: up, phase: standup, kind: spawn, with: { command: [sleep, '30'], stop_timeout: 1s } }\n\
             - { name: long, phase: run, kind: exec, after: [up], with: { command: [sleep, '30'] } }\n\
             - { name: after, phase: run, kind: exec, after: [long], with: { command: ['true'] } }\n",
        );
        let d = dir("int");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let log = d.join("setup/commands/02_long.log");
        let signal = async move {
            // Interrupt once the long step's process has started.
            while !std::fs::read_to_string(&log).unwrap_or_default().contains("started") {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tx.send(()).unwrap();
            tx
        };
        let o = opts();
        let (report, _tx) = tokio::join!(execute(&plan, &d, &o, &mut rx), signal);
        let report = report.unwrap();
        assert_eq!(report.outcome, Outcome::Interrupted);
        let state = State::load(&d, "t").unwrap();
        assert_eq!(state.steps["02_long"].status, Status::Cancelled);
        assert_eq!(state.steps["03_after"].status, Status::Cancelled);
        assert_eq!(state.steps["04_stop_up"].status, Status::Done);
        assert_eq!(state.interrupts.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn the_walk_follows_dependencies_not_file_order_and_a_failed_branch_blocks_only_its_dependents() {
        // `join` is written first but needs both branches; `bad` fails, `good` still runs.
        let plan = plan_of(
            "steps:\n\
             - { name: join, phase: run, kind: exec, after: [bad, good], with: { command: ['true'] } }\n\
             - { name: root, phase: run, kind: exec, with: { command: [sh, -c, 'echo root >> order'] } }\n\
             - { name: bad, phase: run, kind: exec, after: [root], with: { command: [sh, -c, 'exit 1'] } }\n\
             - { name: good, phase: run, kind: exec, after: [root], with: { command: [sh, -c, 'echo good >> order'] } }\n\
             - { name: tail, phase: run, kind: exec, after: [good], with: { command: [sh, -c, 'echo tail >> order'] } }\n",
        );
        let d = dir("walk");
        let (_tx, mut rx) = mpsc::unbounded_channel();
        let report = execute(&plan, &d, &opts(), &mut rx).await.unwrap();
        assert!(matches!(&report.outcome, Outcome::Failed { step, .. } if step == "03_bad"));
        let state = State::load(&d, "t").unwrap();
        let status = |id: &str| state.steps[id].status;
        assert_eq!(
            [status("01_join"), status("02_root"), status("03_bad"), status("04_good"), status("05_tail")],
            [Status::NotRun, Status::Done, Status::Failed, Status::Done, Status::Done]
        );
        assert_eq!(std::fs::read_to_string(d.join("order")).unwrap(), "root\ngood\ntail\n");
        // Every status change is an event; the failed step's is a step_finished with its error.
        let events = std::fs::read_to_string(d.join("events.jsonl")).unwrap();
        let failed: Vec<serde_json::Value> = events
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|e: &serde_json::Value| e["event"] == "step_finished" && e["status"] == "failed")
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0]["step"], "03_bad");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
