//! The executor: walks the plan's DAG, runs every ready step in parallel, persists each change
//! to `state.json` and `events.jsonl`, and is the only part that prints step progress.
//!
//! Lifecycle of a step: pending → running → done | failed (after its retries) | cancelled; a
//! step whose dependency did not succeed becomes `not run`; a step whose condition is false is
//! `skipped`; a done step whose input hash is unchanged is not run again (unless selected with
//! `-s`). Teardown steps run after everything else has finished or been stopped — also after a
//! failure or the first interrupt. A second interrupt skips teardown and prints what is left;
//! a third exits at once (handled where the signals are received).

pub mod state;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::json;
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

use self::state::{Attempt, EventLog};
pub use self::state::{State, Status};
use crate::{
    plan::{Plan, PlannedStep},
    spec::pipeline::Phase,
    steps::{Ctx, Done, StepError, UndoRecord},
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

enum Progress {
    Retry { index: usize, attempt: u32, error: String, backoff: f64 },
}

struct Walker<'a> {
    plan: &'a Plan,
    dir: PathBuf,
    state: State,
    events: EventLog,
    status: Vec<Status>,
    /// Interrupted steps whose output is kept (analysis still runs on it).
    partial: Vec<bool>,
    quiet: bool,
    width: usize,
}

impl Walker<'_> {
    fn save(&self) -> Result<(), WorkdirError> {
        self.state.save(&self.dir)
    }

    fn say(&self, i: usize, text: &str) {
        if !self.quiet {
            let s = &self.plan.steps[i];
            eprintln!("[{:>2}/{}] {:<w$} {text}", s.number, self.plan.steps.len(), s.id, w = self.width);
        }
    }

    fn set(&mut self, i: usize, status: Status, note: Option<&str>) -> Result<(), WorkdirError> {
        self.status[i] = status;
        let s = &self.plan.steps[i];
        let entry = self.state.steps.entry(s.id.clone()).or_default();
        entry.status = status;
        entry.hash = s.hash.clone();
        if matches!(status, Status::NotRun | Status::Skipped | Status::Cancelled) {
            entry.summary = note.map(str::to_string);
        }
        self.events.emit(status_event(status), json!({"step": s.id, "note": note}));
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
        self.events
            .emit("step_started", json!({"step": s.id, "kind": s.kind.as_str(), "phase": s.phase.as_str()}));
        self.say(
            i,
            &format!("{:<8} {}", s.kind.as_str(), s.describe.first().map(String::as_str).unwrap_or("")),
        );
        self.save()
    }

    fn finish(&mut self, f: Finished) -> Result<Option<String>, WorkdirError> {
        let i = f.index;
        let s = &self.plan.steps[i];
        let entry = self.state.steps.entry(s.id.clone()).or_default();
        entry.finished_at = Some(utc_now());
        entry.duration_s = Some(f.elapsed);
        entry.attempts = f.attempts;
        let (status, error) = match f.result {
            Ok(done) => {
                entry.summary = Some(done.summary.clone());
                if let Some(target) = s.args.as_ref().and_then(|a| a.undoes()) {
                    // The undone step has nothing left to undo.
                    if let Some(t) = self.state.steps.get_mut(target)
                        && t.undo.take().is_some()
                    {
                        t.status = Status::Undone;
                    }
                } else {
                    entry.undo = done.undo;
                }
                self.say(i, &format!("done in {:.1} s: {}", f.elapsed, done.summary));
                (Status::Done, None)
            }
            Err(StepError::Cancelled) => {
                entry.error = Some("interrupted".into());
                self.say(i, "interrupted");
                (Status::Cancelled, Some("interrupted".to_string()))
            }
            Err(StepError::Interrupted(what)) => {
                self.partial[i] = true;
                let entry = self.state.steps.entry(self.plan.steps[i].id.clone()).or_default();
                entry.error = Some(format!("interrupted: {what}"));
                self.say(i, &format!("interrupted: {what}"));
                (Status::Cancelled, Some(format!("interrupted: {what}")))
            }
            Err(StepError::Failed(e)) => {
                entry.error = Some(e.clone());
                self.say(i, &format!("FAILED after {:.1} s: {e}", f.elapsed));
                (Status::Failed, Some(e))
            }
        };
        let s = &self.plan.steps[i];
        self.status[i] = status;
        if let Some(entry) = self.state.steps.get_mut(&s.id) {
            entry.status = status;
        }
        self.events
            .emit(status_event(status), json!({"step": s.id, "duration_s": f.elapsed, "error": error}));
        self.save()?;
        Ok(error)
    }
}

fn status_event(s: Status) -> &'static str {
    match s {
        Status::Pending => "step_pending",
        Status::Running => "step_started",
        Status::Done => "step_finished",
        Status::Failed => "step_failed",
        Status::NotRun => "step_not_run",
        Status::Skipped => "step_skipped",
        Status::Cancelled => "step_cancelled",
        Status::Undone => "step_undone",
    }
}

async fn run_step(
    step: PlannedStep,
    index: usize,
    ctx: Ctx,
    progress: mpsc::UnboundedSender<Progress>,
) -> Finished {
    let t0 = Instant::now();
    let mut attempts = Vec::new();
    let mut backoff = step.backoff_s;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started_at = utc_now();
        let a0 = Instant::now();
        ctx.note(&format!(
            "== {} attempt {attempt} at {started_at} ==\n# {}",
            step.id,
            step.describe.join("\n# ")
        ));
        let Some(args) = step.args.clone() else {
            return Finished { index, result: Ok(Done::with_summary("skipped")), attempts, elapsed: 0.0 };
        };
        let run = args.run(&ctx);
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
            Err(StepError::Failed(e)) if attempt <= step.retries && !*ctx.cancel.borrow() => {
                let _ = progress.send(Progress::Retry { index, attempt, error: e, backoff });
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

/// Executes `plan` in the work directory `dir`. `signals` delivers one message per Ctrl-C /
/// SIGTERM.
pub async fn execute(
    plan: &Plan,
    dir: &Path,
    opts: &Options,
    signals: &mut mpsc::UnboundedReceiver<()>,
) -> Result<Report, ExecError> {
    let n = plan.steps.len();
    let mut w = Walker {
        plan,
        dir: dir.to_path_buf(),
        state: State::load(dir, &plan.run_id),
        events: EventLog::open(dir),
        status: vec![Status::Pending; n],
        partial: vec![false; n],
        quiet: opts.quiet,
        width: plan.steps.iter().map(|s| s.id.len()).max().unwrap_or(10),
    };
    let selected = |i: usize| opts.selection.as_ref().is_none_or(|sel| sel.contains(&i));
    // `-s` picks steps whatever their phase; otherwise the command's phases decide.
    let main: Vec<usize> = (0..n)
        .filter(|&i| plan.steps[i].phase != Phase::Teardown)
        .filter(|&i| match &opts.selection {
            Some(sel) => sel.contains(&i),
            None => opts.phases.contains(&plan.steps[i].phase),
        })
        .collect();
    let in_main = |i: usize| main.contains(&i);
    let satisfied_outside = |w: &Walker, j: usize| {
        let st = w.state.steps.get(&plan.steps[j].id);
        opts.selection.is_some() || st.is_some_and(|s| matches!(s.status, Status::Done | Status::Skipped))
    };
    // Steps of earlier phases this command needs must already be done.
    for &i in &main {
        for dep in &plan.steps[i].after {
            if let Some(j) = plan.index(dep)
                && !in_main(j)
                && plan.steps[j].phase != Phase::Teardown
                && !satisfied_outside(&w, j)
            {
                return Err(ExecError::NotStoodUp {
                    step: plan.steps[j].id.clone(),
                    phase: plan.steps[j].phase.as_str(),
                    dir: dir.display().to_string(),
                });
            }
        }
    }
    w.events.emit(
        "run_started",
        json!({"run_id": plan.run_id, "phases": opts.phases, "selection": opts.selection}),
    );
    for &i in &main {
        let s = &plan.steps[i];
        if !s.enabled {
            w.set(i, Status::Skipped, Some("condition is false"))?;
        } else if opts.selection.is_none()
            && w.state.steps.get(&s.id).is_some_and(|st| st.status == Status::Done && st.hash == s.hash)
            && still_valid(w.state.steps.get(&s.id))
        {
            w.status[i] = Status::Done;
            w.say(i, "already done with the same inputs: skipped (select it with -s to run it again)");
            w.events.emit("step_reused", json!({"step": s.id}));
        }
    }

    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut outcome = Outcome::Success;
    let mut interrupts = 0u32;
    let ctx_for = |s: &PlannedStep, cancel: watch::Receiver<bool>, w: &Walker| Ctx {
        workdir: dir.to_path_buf(),
        step: s.id.clone(),
        log: dir.join("setup/commands").join(format!("{}.log", s.id)),
        cancel,
        quiet: opts.quiet,
        target: s
            .args
            .as_ref()
            .and_then(|a| a.undoes())
            .and_then(|t| w.state.steps.get(t))
            .and_then(|t| t.undo.clone()),
    };
    loop {
        // Launch what is ready; mark what can no longer run.
        let mut changed = true;
        while changed {
            changed = false;
            for &i in &main {
                if w.status[i] != Status::Pending {
                    continue;
                }
                let deps: Vec<usize> = plan.steps[i].after.iter().filter_map(|d| plan.index(d)).collect();
                // After an interrupt, analysis still runs on what interrupted steps kept.
                let salvage = plan.steps[i].args.as_ref().is_some_and(|a| a.salvages());
                let usable = |w: &Walker, j: usize| {
                    matches!(w.status[j], Status::Done | Status::Skipped) || (salvage && w.partial[j])
                };
                let blocked = deps.iter().find(|&&j| {
                    in_main(j)
                        && matches!(w.status[j], Status::Failed | Status::NotRun | Status::Cancelled)
                        && !usable(&w, j)
                });
                if let Some(&j) = blocked {
                    // Behind an interrupted step: cancelled too; behind a failure: not run.
                    let (status, why) = if w.status[j] == Status::Cancelled {
                        (
                            Status::Cancelled,
                            format!("interrupted before it started ({} was)", plan.steps[j].id),
                        )
                    } else {
                        (Status::NotRun, format!("{} did not succeed", plan.steps[j].id))
                    };
                    w.set(i, status, Some(&why))?;
                    w.say(i, &format!("{}: {why}", status.as_str()));
                    changed = true;
                    continue;
                }
                let ready = deps.iter().all(|&j| !in_main(j) || usable(&w, j));
                if ready && (interrupts == 0 || salvage && deps.iter().any(|&j| w.partial[j])) {
                    w.start(i)?;
                    let step = plan.steps[i].clone();
                    let ctx = ctx_for(&step, cancel_rx.clone(), &w);
                    tasks.spawn(run_step(step, i, ctx, progress_tx.clone()));
                    changed = true;
                }
            }
        }
        if tasks.is_empty() {
            break;
        }
        tokio::select! {
            Some(joined) = tasks.join_next() => {
                let f = match joined {
                    Ok(f) => f,
                    Err(e) => return Err(ExecError::Workdir(WorkdirError::Io { path: dir.into(), source: std::io::Error::other(e.to_string()) })),
                };
                let i = f.index;
                if let Some(error) = w.finish(f)?
                    && outcome == Outcome::Success
                    && w.status[i] == Status::Failed
                {
                    outcome = Outcome::Failed { step: plan.steps[i].id.clone(), phase: plan.steps[i].phase, error };
                }
            }
            Some(Progress::Retry { index, attempt, error, backoff }) = progress_rx.recv() => {
                let first = error.lines().next().unwrap_or("").to_string();
                w.say(index, &format!("attempt {attempt} failed ({first}); retrying in {backoff:.1} s"));
                w.events.emit("step_retry", json!({"step": plan.steps[index].id, "attempt": attempt, "error": error, "backoff_s": backoff}));
            }
            Some(()) = signals.recv() => {
                interrupts += 1;
                w.state.interrupts.push(utc_now());
                w.events.emit("signal", json!({"count": interrupts}));
                w.save()?;
                if interrupts == 1 {
                    eprintln!("interrupt: stopping the running steps; teardown follows (interrupt again to skip teardown)");
                    let _ = cancel_tx.send(true);
                } else {
                    eprintln!("interrupt: still stopping the running steps; teardown will be skipped");
                }
            }
        }
    }
    for &i in &main {
        if w.status[i] == Status::Pending {
            w.set(i, Status::Cancelled, Some("interrupted before it started"))?;
        }
    }
    if interrupts > 0 {
        outcome = Outcome::Interrupted;
    }
    let mut report = Report { outcome, leftovers: Vec::new(), teardown_failed: Vec::new() };

    // Teardown: asked for, or owed after a failure or an interrupt.
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
                w.set(i, Status::Skipped, Some("condition is false"))?;
                continue;
            }
            w.start(i)?;
            let ctx = ctx_for(s, teardown_cancel.clone(), &w);
            let fut = run_step(s.clone(), i, ctx, progress_tx.clone());
            tokio::pin!(fut);
            let f = loop {
                tokio::select! {
                    f = &mut fut => break Some(f),
                    Some(()) = signals.recv() => {
                        interrupts += 1;
                        w.state.interrupts.push(utc_now());
                        w.events.emit("signal", json!({"count": interrupts, "during": "teardown"}));
                        if interrupts >= 2 {
                            break None;
                        }
                    }
                }
            };
            match f {
                Some(f) => {
                    if w.finish(f)?.is_some() {
                        report.teardown_failed.push(s.id.clone());
                    }
                }
                None => {
                    w.set(i, Status::Cancelled, Some("teardown skipped by a second interrupt"))?;
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
        w.state.leftovers().into_iter().map(|(id, rec)| describe_leftover(&id, &rec)).collect();
    w.events.emit(
        "run_finished",
        json!({"outcome": format!("{:?}", report.outcome), "leftovers": report.leftovers}),
    );
    w.save()?;
    Ok(report)
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
        Options { phases: Phase::ALL.to_vec(), selection: None, teardown_on_failure: true, quiet: true }
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
        let state = State::load(&d, "t");
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
        let state = State::load(&d, "t");
        assert_eq!(state.steps["02_long"].status, Status::Cancelled);
        assert_eq!(state.steps["03_after"].status, Status::Cancelled);
        assert_eq!(state.steps["04_stop_up"].status, Status::Done);
        assert_eq!(state.interrupts.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
