//! The walk's record: every status change goes to `state.json` (rewritten atomically), to
//! `events.jsonl`, and to the caller's sink, in that order.

use std::path::{Path, PathBuf};

use super::{
    attempt::Finished,
    events::{Event, EventLog, Sink},
    state::{self, State, Status},
};
use crate::{
    plan::Plan,
    steps::{self, StepError, UndoRecord},
    workdir::utc_now,
};

pub(super) struct Record<'a> {
    plan: &'a Plan,
    dir: PathBuf,
    pub(super) state: State,
    log: EventLog,
    sink: &'a mut dyn Sink,
    /// The first write of `state.json` that failed during the walk (a full disk): the walk
    /// starts nothing more, tears down what it started, and fails with this.
    pub(super) unsaved: Option<String>,
}

impl<'a> Record<'a> {
    pub(super) fn new(plan: &'a Plan, dir: &Path, state: State, sink: &'a mut dyn Sink) -> Record<'a> {
        sink.begin(plan);
        Record { plan, dir: dir.to_path_buf(), state, log: EventLog::open(dir), sink, unsaved: None }
    }

    pub(super) fn emit(&mut self, event: Event) {
        self.log.write(&event);
        self.sink.event(&event);
    }

    /// Writes `state.json` during a walk. A failure (a full disk, a directory made read-only)
    /// must not stop benchflow from managing what it started: it is said once, kept in
    /// `unsaved`, and the walk goes on to stop and tear down from the record in memory.
    pub(super) fn keep(&mut self) {
        if let Err(e) = self.state.save(&self.dir)
            && self.unsaved.is_none()
        {
            self.unsaved = Some(e.to_string());
            self.emit(Event::Warning {
                message: format!(
                    "{e}: the record on disk stops here; nothing more starts, and what was started is \
                     torn down from the record in memory"
                ),
            });
        }
    }

    /// Done with this input hash, its effect still holding.
    pub(super) fn reusable(&self, i: usize) -> bool {
        let s = &self.plan.steps[i];
        self.state.steps.get(&s.id).is_some_and(|st| {
            st.status == Status::Done && st.hash == s.hash && st.undo.as_ref().is_none_or(UndoRecord::holds)
        })
    }

    /// The record an undo step needs: what the step it undoes left.
    pub(super) fn target_of(&self, i: usize) -> Option<UndoRecord> {
        let undoes = self.plan.steps[i].args.as_ref().and_then(|a| a.undoes())?;
        self.state.undo_of(&self.dir, undoes)
    }

    /// A done step whose effect no longer holds: (step, what).
    pub(super) fn lost_effect(&self) -> Option<(String, String)> {
        self.state.steps.iter().find_map(|(id, s)| {
            let record = s.undo.as_ref().filter(|_| s.status == Status::Done)?;
            (!record.holds()).then(|| (id.clone(), record.describe()))
        })
    }

    /// A final status for a step that did not run (skipped, not run, cancelled).
    pub(super) fn set(&mut self, i: usize, status: Status, note: &str) {
        let s = &self.plan.steps[i];
        let entry = self.state.steps.entry(s.id.clone()).or_default();
        entry.status = status;
        entry.hash = s.hash.clone();
        entry.summary = Some(note.to_string());
        self.emit(Event::StepFinished {
            step: s.id.clone(),
            status,
            duration_s: None,
            summary: None,
            error: Some(note.to_string()),
        });
        self.keep();
    }

    pub(super) fn start(&mut self, i: usize) {
        let s = &self.plan.steps[i];
        let entry = self.state.steps.entry(s.id.clone()).or_default();
        *entry = state::StepState {
            status: Status::Running,
            hash: s.hash.clone(),
            started_at: Some(utc_now()),
            // A process an earlier run of the step started is stopped before this one starts
            // (Driver::left_running holds its record); from now on the step's record on disk
            // (setup/undo/, written before the new process starts) names what is up, so a
            // benchflow killed while it replaces an engine leaves teardown the new one.
            undo: entry.undo.take().filter(|u| !matches!(u, UndoRecord::Spawn(_))),
            ..Default::default()
        };
        self.emit(Event::StepStarted {
            step: s.id.clone(),
            kind: s.kind,
            phase: s.phase,
            does: s.describe.first().cloned().unwrap_or_default(),
        });
        self.keep();
    }

    /// Records a finished step: its status and, if it did not succeed, its error.
    pub(super) fn finish(&mut self, f: Finished) -> (Status, Option<String>) {
        let s = &self.plan.steps[f.index];
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
                (Status::Cancelled, None, Some(format!("interrupted: {what}")))
            }
            Err(StepError::Failed(e)) => (Status::Failed, None, Some(e)),
        };
        if let Some(entry) = self.state.steps.get_mut(&s.id) {
            entry.status = status;
            if error.is_some() {
                entry.error.clone_from(&error);
            }
        }
        self.emit(Event::StepFinished {
            step: s.id.clone(),
            status,
            duration_s: Some(f.elapsed),
            summary,
            error: error.clone(),
        });
        self.keep();
        (status, error)
    }

    pub(super) fn signal(&mut self, count: u32, during_teardown: bool, teardown_follows: bool) {
        self.state.interrupts.push(utc_now());
        self.emit(Event::Signal { count, during_teardown, teardown_follows });
        self.keep();
    }
}
