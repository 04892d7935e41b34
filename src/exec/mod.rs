//! The executor: walks the plan's DAG, runs every ready step in parallel, persists each change
//! to `state.json` and `events.jsonl`, and is the only part that prints step progress.
//!
//! Lifecycle of a step: pending → running → done | failed (after its retries) | cancelled; a
//! step whose dependency did not succeed becomes `not run`; a step whose condition is false is
//! `skipped`; a done step whose input hash is unchanged is not run again (unless selected with
//! `-s`). Teardown steps run after everything else has finished or been stopped — also after a
//! failure or the first interrupt. A second interrupt skips teardown and prints what is left;
//! a third exits at once (handled where the signals are received).

mod attempt;
pub(crate) mod events;
mod interrupts;
mod record;
pub(crate) mod state;
pub(crate) mod walk;

use crate::workdir::layout;
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

#[cfg(test)]
pub(crate) use self::events::Silent;
use self::{
    attempt::{Finished, run_step},
    record::Record,
    walk::{Decision, Facts, Walk},
};
pub(crate) use self::{
    events::{Console, Event, Sink},
    interrupts::Interrupts,
    state::{State, Status},
};
use crate::{
    plan::Plan,
    spec::pipeline::Phase,
    steps::{Ctx, Progress, StepError, UndoRecord},
    workdir::{WorkdirError, runs::RunDirs, utc_now},
};

/// What to execute.
#[derive(Debug, Clone)]
pub(crate) struct Options {
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
    /// Standup steps done before with the same inputs, their effect still holding, are reused.
    /// Off for `run --endpoint`: its smoke test is the check that the endpoint answers now.
    pub reuse_standup: bool,
}

impl Options {
    /// What a teardown runs: the teardown phase alone.
    pub(crate) fn teardown(quiet: bool) -> Options {
        Options {
            phases: vec![Phase::Teardown],
            selection: None,
            teardown_on_failure: false,
            quiet,
            install_missing: false,
            stack: None,
            reuse_standup: true,
        }
    }
}

/// How the execution ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Outcome {
    #[default]
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
    /// The record could not be written during the run (a full disk): nothing more was
    /// started, what ran was stopped, teardown run from the record in memory.
    Unrecorded {
        error: String,
    },
}

/// The result of an execution.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    pub outcome: Outcome,
    /// Undo records left behind (after a skipped teardown, or when teardown was not run).
    pub leftovers: Vec<String>,
    pub teardown_failed: Vec<String>,
    /// The steps this execution started (not those reused, skipped or not reached), in order.
    pub ran: Vec<String>,
}

/// Errors that stop the executor itself (not a step's failure).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecError {
    #[error(transparent)]
    Workdir(#[from] WorkdirError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(
        "step {step} ({phase}) {how} in {dir}: nothing is up to run against; run `benchflow standup --workdir {dir}` first"
    )]
    NotStoodUp { step: String, phase: &'static str, how: &'static str, dir: String },
    #[error(
        "the stack is not up in {dir}: what step {step} started is gone ({what}; stopped outside \
         benchflow, or it died); nothing was run: stand up again with `benchflow standup --workdir \
         {dir}`, or remove what is left with `benchflow teardown {dir}`"
    )]
    StackDown { step: String, what: String, dir: String },
}

/// Executes `plan` in the work directory `dir`. `signals` delivers one message per Ctrl-C /
/// SIGTERM (the caller owns the signal handlers; a test passes a channel); every event goes to
/// `events.jsonl` and to `sink`.
///
/// Two walks ([`walk::Walk`]): the steps of the command's phases (or `-s`), in parallel as the
/// DAG allows; then, asked for or owed after a failure or the first interrupt, the teardown
/// steps one at a time, each whatever the previous one did.
pub(crate) async fn execute(
    plan: &Plan,
    dir: &Path,
    opts: &Options,
    signals: &mut mpsc::UnboundedReceiver<()>,
    sink: &mut dyn Sink,
) -> Result<Report, ExecError> {
    let teardown_only = opts.selection.is_none() && opts.phases == [Phase::Teardown];
    let state = load_state(plan, dir, teardown_only)?;
    // An experiment's stack: what its standup did, read once.
    let upstream = match &opts.stack {
        Some(stack) => Some(State::load(stack, &plan.run_id)?),
        None => None,
    };
    let deps = plan.dependencies();
    let mut d = Driver {
        plan,
        dir,
        opts,
        rec: Record::new(plan, dir, state.0, sink),
        upstream_effects: upstream.as_ref().map(effects).unwrap_or_default(),
        run: Arc::new(Mutex::new(None)),
        interrupts: 0,
        ran: Vec::new(),
    };
    if let Some(warning) = state.1 {
        d.rec.emit(warning);
    }
    // `-s` picks steps whatever their phase; otherwise the command's phases decide.
    let main: Vec<usize> = (0..plan.steps.len())
        .filter(|&i| {
            let s = &plan.steps[i];
            s.phase != Phase::Teardown
                && match &opts.selection {
                    Some(sel) => sel.contains(&i),
                    None => opts.phases.contains(&s.phase),
                }
        })
        .collect();
    d.check_stood_up(&main, &deps, upstream.as_ref())?;
    d.rec.emit(Event::RunStarted {
        run_id: plan.run_id.clone(),
        dir: dir.display().to_string(),
        phases: opts.phases.clone(),
        selection: opts.selection.as_ref().map(|sel| sel.iter().map(|&i| plan.steps[i].id.clone()).collect()),
    });
    let settled = d.skip_disabled(&main)?;
    let facts = Facts {
        // Only what stands up is reused: a run or analysis step measures (or analyses) anew
        // each time the command asks for it.
        reusable: (0..plan.steps.len())
            .map(|i| {
                opts.selection.is_none()
                    && opts.reuse_standup
                    && plan.steps[i].phase == Phase::Standup
                    && d.rec.reusable(i)
            })
            .collect(),
        salvages: plan.steps.iter().map(|s| s.args.as_ref().is_some_and(|a| a.salvages())).collect(),
        deps,
        members: main,
        settled,
        limit: 0,
    };
    let mut walk = Walk::new(facts);
    let end = d.walk(&mut walk, Mode::Main, signals).await?;
    for i in walk.pending() {
        d.rec.set(i, Status::Cancelled, "interrupted before it started");
    }
    let outcome = match end.first {
        _ if d.interrupts > 0 => Outcome::Interrupted,
        Some(outcome) => outcome,
        None => Outcome::Success,
    };
    let mut report = Report { outcome, ..Report::default() };

    // Teardown, one step at a time: asked for, or owed after a failure or an interrupt.
    let wants_teardown = opts.phases.contains(&Phase::Teardown)
        || (opts.teardown_on_failure && report.outcome != Outcome::Success);
    if wants_teardown && d.interrupts < 2 {
        let steps: Vec<usize> = (0..plan.steps.len())
            .filter(|&i| plan.steps[i].phase == Phase::Teardown)
            .filter(|&i| opts.selection.as_ref().is_none_or(|sel| sel.contains(&i)))
            .collect();
        let settled = d.skip_disabled(&steps)?;
        let facts = Facts {
            deps: vec![Vec::new(); plan.steps.len()],
            members: steps,
            settled,
            limit: 1,
            ..Facts::default()
        };
        let mut walk = Walk::new(facts);
        let end = d.walk(&mut walk, Mode::Teardown, signals).await?;
        report.teardown_failed = end.teardown_failed.iter().map(|&i| plan.steps[i].id.clone()).collect();
        if end.aborted {
            report.outcome = Outcome::Interrupted;
        }
    }
    report.ran = d.ran.iter().map(|&i| plan.steps[i].id.clone()).collect();
    report.leftovers =
        d.rec.state.leftovers(dir).into_iter().map(|(id, rec)| describe_leftover(&id, &rec)).collect();
    if let (Some(error), Outcome::Success) = (d.rec.unsaved.clone(), &report.outcome) {
        // Only teardown ran, and its record could not be written.
        report.outcome = Outcome::Unrecorded { error };
    }
    d.rec.emit(Event::RunFinished {
        outcome: format!("{:?}", report.outcome),
        leftovers: report.leftovers.clone(),
    });
    d.rec.keep();
    Ok(report)
}

/// Whether the steps of `phases` can run on what an earlier command stood up in `dir`: the
/// steps they need (directly or through others) are done and what those set up still holds.
/// The CLI asks before it writes anything; [`execute`] asks again before it starts.
pub(crate) fn stood_up(plan: &Plan, dir: &Path, phases: &[Phase]) -> Result<(), ExecError> {
    let state = match State::load(dir, &plan.run_id) {
        Ok(state) => state,
        // Nothing recorded yet: the first missing step is named below.
        Err(_) if !dir.join(layout::STATE).exists() => State::fresh(&plan.run_id),
        Err(e) => return Err(e.into()),
    };
    let main: Vec<usize> = (0..plan.steps.len())
        .filter(|&i| plan.steps[i].phase != Phase::Teardown && phases.contains(&plan.steps[i].phase))
        .collect();
    let need = Need { steps: &main, running: &main, never_run_is_fine: false };
    stood_up_in(plan, &state, need, &plan.dependencies(), None, dir)
}

/// What [`stood_up_in`] checks: what `steps` stand on, leaving out the steps `running` in this
/// command. `never_run_is_fine`: with `-s`, a step never run is the user's call (a harness pod
/// runs `run --endpoint -s load`, skipping the smoke test); one torn down, failed, or whose
/// effect is gone is not.
struct Need<'a> {
    steps: &'a [usize],
    running: &'a [usize],
    never_run_is_fine: bool,
}

/// Every step not `running` in this command that a step of `need.steps` depends on, directly or
/// through others, is done (here, or in the experiment's stack `upstream`), and what it set up
/// still holds: a `run` after `teardown`, or after the engine died, is refused before anything
/// starts.
fn stood_up_in(
    plan: &Plan,
    state: &State,
    need: Need<'_>,
    deps: &[Vec<usize>],
    upstream: Option<&State>,
    dir: &Path,
) -> Result<(), ExecError> {
    let Need { steps: main, running, never_run_is_fine } = need;
    let upstream_done = |id: &str| {
        upstream
            .and_then(|u| u.steps.get(id))
            .is_some_and(|s| matches!(s.status, Status::Done | Status::Skipped))
    };
    let dir = || dir.display().to_string();
    let mut seen = vec![false; plan.steps.len()];
    let mut todo: Vec<usize> = main.iter().flat_map(|&i| deps[i].iter().copied()).collect();
    while let Some(j) = todo.pop() {
        // A step this command runs is not asked to be done already.
        if std::mem::replace(&mut seen[j], true) || running.contains(&j) {
            continue;
        }
        let s = &plan.steps[j];
        // The experiment's stack: its effects are watched from upstream_effects.
        if s.phase == Phase::Teardown || upstream_done(&s.id) {
            continue;
        }
        let st = state.steps.get(&s.id).filter(|st| matches!(st.status, Status::Done | Status::Skipped));
        let Some(st) = st else {
            let how = match state.steps.get(&s.id).map(|st| st.status) {
                Some(Status::Undone) => "was torn down",
                Some(Status::Failed) => "failed",
                None | Some(Status::Pending) if never_run_is_fine => continue,
                _ => "is not done",
            };
            return Err(ExecError::NotStoodUp {
                step: s.id.clone(),
                phase: s.phase.as_str(),
                how,
                dir: dir(),
            });
        };
        if let Some(record) = st.undo.as_ref().filter(|r| !r.holds()) {
            return Err(ExecError::StackDown { step: s.id.clone(), what: record.describe(), dir: dir() });
        }
        todo.extend(deps[j].iter().copied());
    }
    Ok(())
}

/// Reads `state.json`. A record that cannot be read is never replaced by an empty one; only
/// teardown goes on, from the undo records in setup/undo/ (the damaged file is kept aside, and
/// a warning says so), and the steps a killed benchflow left "running" are not running any more.
fn load_state(plan: &Plan, dir: &Path, teardown_only: bool) -> Result<(State, Option<Event>), ExecError> {
    let (mut state, warning) = match State::load(dir, &plan.run_id) {
        Ok(state) => (state, None),
        Err(e) if teardown_only => {
            let aside = dir.join(format!("state.damaged-{}.json", utc_now().replace([':', '.'], "-")));
            let _ = std::fs::rename(dir.join(layout::STATE), &aside);
            let warning = Event::Warning { message: format!("{e}; tearing down from setup/undo/") };
            (State::fresh(&plan.run_id), Some(warning))
        }
        Err(e) => return Err(e.into()),
    };
    if teardown_only {
        for s in state.steps.values_mut().filter(|s| s.status == Status::Running) {
            s.status = Status::Cancelled;
            s.error = Some(
                "it was running when benchflow stopped (killed?); see its log in setup/commands/".into(),
            );
        }
    }
    Ok((state, warning))
}

/// What the done steps of a record set up: (step, undo record).
fn effects(state: &State) -> Vec<(String, UndoRecord)> {
    state
        .steps
        .iter()
        .filter(|(_, s)| s.status == Status::Done)
        .filter_map(|(id, s)| s.undo.clone().map(|r| (id.clone(), r)))
        .collect()
}

/// Which walk: the command's steps (the first interrupt stops them; what done steps set up is
/// watched), or teardown (it goes on after the first interrupt; the second stops it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Main,
    Teardown,
}

/// How a walk ended.
#[derive(Debug, Default)]
struct WalkEnd {
    /// What went wrong first: a step failed, or what a done step set up went away.
    first: Option<Outcome>,
    /// What a done step set up went away (the walk stops).
    lost: bool,
    /// Teardown steps that failed.
    teardown_failed: Vec<usize>,
    /// A second interrupt stopped teardown.
    aborted: bool,
    /// `state.json` could not be written (the walk stops).
    unrecorded: bool,
}

/// Runs what the walk launches and records what happens.
struct Driver<'a> {
    plan: &'a Plan,
    dir: &'a Path,
    opts: &'a Options,
    rec: Record<'a>,
    /// What the stack this run stands on set up (an experiment's point): watched too.
    upstream_effects: Vec<(String, UndoRecord)>,
    /// The harness run of this execution, shared by its steps.
    run: Arc<Mutex<Option<RunDirs>>>,
    interrupts: u32,
    /// The steps launched so far, in order.
    ran: Vec<usize>,
}

impl Driver<'_> {
    /// See [`stood_up_in`]. With `-s`, only what its selected run steps stand on must be up
    /// (a forced standup or analyze step is the user's call).
    fn check_stood_up(
        &self,
        main: &[usize],
        deps: &[Vec<usize>],
        upstream: Option<&State>,
    ) -> Result<(), ExecError> {
        match &self.opts.selection {
            // What the selected run steps stand on must be up (analysis and standup steps
            // are the user's to force).
            Some(_) => {
                let runs: Vec<usize> =
                    main.iter().copied().filter(|&i| self.plan.steps[i].phase == Phase::Run).collect();
                let need = Need { steps: &runs, running: main, never_run_is_fine: true };
                stood_up_in(self.plan, &self.rec.state, need, deps, upstream, self.dir)
            }
            None => {
                let need = Need { steps: main, running: main, never_run_is_fine: false };
                stood_up_in(self.plan, &self.rec.state, need, deps, upstream, self.dir)
            }
        }
    }

    /// Steps whose condition is false are skipped: (index, skipped) for the walk.
    fn skip_disabled(&mut self, steps: &[usize]) -> Result<Vec<(usize, Status)>, ExecError> {
        let mut out = Vec::new();
        for &i in steps.iter().filter(|&&i| !self.plan.steps[i].enabled) {
            self.rec.set(i, Status::Skipped, "condition is false");
            out.push((i, Status::Skipped));
        }
        Ok(out)
    }

    fn ctx(
        &self,
        i: usize,
        cancel: watch::Receiver<bool>,
        progress: &mpsc::UnboundedSender<Progress>,
    ) -> Ctx {
        let s = &self.plan.steps[i];
        Ctx {
            workdir: self.dir.to_path_buf(),
            step: s.id.clone(),
            log: self.dir.join(layout::COMMANDS).join(format!("{}.log", s.id)),
            cancel,
            quiet: self.opts.quiet,
            install_missing: self.opts.install_missing,
            progress: progress.clone(),
            run: self.run.clone(),
            target: self.rec.target_of(i),
        }
    }

    /// A process an earlier run of step `i` started that still runs: an attempt benchflow did not
    /// live to finish (killed while the engine loaded), or a done step whose inputs changed. It
    /// is stopped before the step runs again, so that only the new process answers for it.
    fn left_running(&self, i: usize) -> Option<UndoRecord> {
        let record = self.rec.state.undo_of(self.dir, &self.plan.steps[i].id)?;
        (matches!(record, UndoRecord::Spawn(_)) && record.holds()).then_some(record)
    }

    /// A done step's effect (here or in the stack this run stands on) that no longer holds.
    fn lost_effect(&self) -> Option<(String, String)> {
        self.rec.lost_effect().or_else(|| {
            self.upstream_effects.iter().find(|(_, r)| !r.holds()).map(|(id, r)| (id.clone(), r.describe()))
        })
    }

    /// Records a decision the walk took without running the step.
    fn decided(&mut self, i: usize, decision: Decision) -> Result<(), ExecError> {
        match decision {
            Decision::Blocked { by, status } => {
                let by = &self.plan.steps[by].id;
                let why = match status {
                    Status::Cancelled => format!("interrupted before it started ({by} was)"),
                    _ => format!("{by} did not succeed"),
                };
                self.rec.set(i, status, &why);
            }
            Decision::Reused => self.rec.emit(Event::StepReused { step: self.plan.steps[i].id.clone() }),
            Decision::Launch => {}
        }
        Ok(())
    }

    /// Walks to the end: launches what the walk says, records every decision and end, watches
    /// effects and signals as `mode` says.
    async fn walk(
        &mut self,
        walk: &mut Walk,
        mode: Mode,
        signals: &mut mpsc::UnboundedReceiver<()>,
    ) -> Result<WalkEnd, ExecError> {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<Progress>();
        let said = |p: Progress| Event::StepProgress { step: p.step, message: p.message };
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let mut end = WalkEnd::default();
        // What done steps set up (an engine process) is watched while the run goes on.
        let mut watch = tokio::time::interval(Duration::from_millis(500));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watching = mode == Mode::Main;
        loop {
            if mode == Mode::Main
                && let Some(error) = self.rec.unsaved.clone()
                && !end.unrecorded
            {
                // The record cannot be written: nothing more starts, what runs is stopped.
                end.unrecorded = true;
                end.first.get_or_insert(Outcome::Unrecorded { error });
                let _ = cancel_tx.send(true);
            }
            let stopping = mode == Mode::Main && (self.interrupts > 0 || end.lost || end.unrecorded);
            while let Some((i, decision)) = walk.next(stopping) {
                self.decided(i, decision)?;
                if decision == Decision::Launch {
                    self.ran.push(i);
                    let left = self.left_running(i);
                    self.rec.start(i);
                    let ctx = self.ctx(i, cancel_rx.clone(), &progress_tx);
                    tasks.spawn(run_step(self.plan.steps[i].clone(), i, ctx, events_tx.clone(), left));
                }
            }
            if tasks.is_empty() {
                break;
            }
            tokio::select! {
                Some(joined) = tasks.join_next() => {
                    let f = joined.map_err(|e| WorkdirError::Io { path: self.dir.into(), source: std::io::Error::other(e.to_string()) })?;
                    let i = f.index;
                    let partial = matches!(f.result, Err(StepError::Interrupted(_)));
                    let (status, error) = self.rec.finish(f);
                    walk.settle(i, status, partial);
                    if let (Status::Failed, Some(error)) = (status, error) {
                        match mode {
                            Mode::Main => {
                                let (step, phase) = (self.plan.steps[i].id.clone(), self.plan.steps[i].phase);
                                end.first.get_or_insert(Outcome::Failed { step, phase, error });
                            }
                            Mode::Teardown => end.teardown_failed.push(i),
                        }
                    }
                }
                Some(event) = events_rx.recv() => self.rec.emit(event),
                Some(p) = progress_rx.recv() => self.rec.emit(said(p)),
                _ = watch.tick(), if watching && !end.lost => {
                    if let Some((step, what)) = self.lost_effect() {
                        self.rec.emit(Event::EffectLost { step: step.clone(), what: what.clone() });
                        end.lost = true;
                        end.first.get_or_insert(Outcome::Lost { step, error: format!("{what}: it stopped during the run") });
                        let _ = cancel_tx.send(true);
                    }
                }
                Some(()) = signals.recv() => {
                    self.interrupts += 1;
                    let follows = self.opts.phases.contains(&Phase::Teardown) || self.opts.teardown_on_failure;
                    self.rec.signal(self.interrupts, mode == Mode::Teardown, follows);
                    match mode {
                        Mode::Main if self.interrupts == 1 => { let _ = cancel_tx.send(true); }
                        Mode::Teardown if self.interrupts >= 2 => {
                            tasks.abort_all();
                            for i in walk.running() {
                                self.rec.set(i, Status::Cancelled, "teardown skipped by a second interrupt");
                            }
                            end.aborted = true;
                            break;
                        }
                        _ => {}
                    }
                }
            }
        }
        while let Ok(event) = events_rx.try_recv() {
            self.rec.emit(event);
        }
        while let Ok(p) = progress_rx.try_recv() {
            self.rec.emit(said(p));
        }
        Ok(end)
    }
}

/// One line about something a step left behind.
pub(crate) fn describe_leftover(id: &str, rec: &UndoRecord) -> String {
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
            reuse_standup: true,
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
        let report = execute(&plan, &d, &opts(), &mut rx, &mut Silent).await.unwrap();
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
        let mut sink = Silent;
        let (report, _tx) = tokio::join!(execute(&plan, &d, &o, &mut rx, &mut sink), signal);
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
        let report = execute(&plan, &d, &opts(), &mut rx, &mut Silent).await.unwrap();
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
