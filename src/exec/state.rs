//! `state.json`: each step's status, input hash, timings, attempts and undo record, rewritten
//! atomically after every change.

use crate::workdir::layout;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    steps::{self, UndoRecord},
    workdir::{self, WorkdirError},
};

/// A step's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    #[default]
    Pending,
    Running,
    Done,
    Failed,
    /// A dependency failed or was interrupted.
    NotRun,
    /// Its condition is false.
    Skipped,
    /// Stopped, or never started, because of an interrupt.
    Cancelled,
    /// Done, then undone by teardown (it runs again at the next standup).
    Undone,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::NotRun => "not run",
            Status::Skipped => "skipped",
            Status::Cancelled => "cancelled",
            Status::Undone => "undone",
        }
    }
}

/// One attempt of a step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Attempt {
    pub started_at: String,
    pub duration_s: f64,
    /// `done`, or the error.
    pub outcome: String,
}

/// A step's record.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub(crate) struct StepState {
    pub status: Status,
    pub hash: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub duration_s: Option<f64>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// What teardown needs to undo this step (e.g. the process it started); cleared once undone.
    #[serde(default)]
    pub undo: Option<UndoRecord>,
}

/// The whole `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub(crate) struct State {
    pub format_version: u32,
    pub run_id: String,
    pub steps: BTreeMap<String, StepState>,
    /// Signals received, with when.
    #[serde(default)]
    pub interrupts: Vec<String>,
}

/// `state.json` could not be read: it is never replaced by an empty record (that is how a
/// damaged record used to lose track of a running engine).
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} cannot be read ({why}); it is the record of what this work directory stood up. \
     `benchflow teardown {dir}` still stops what setup/undo/ records; then use a new work directory"
)]
pub(crate) struct StateError {
    pub path: PathBuf,
    pub dir: String,
    pub why: String,
}

impl State {
    /// An empty record.
    pub(crate) fn fresh(run_id: &str) -> State {
        State { format_version: workdir::FORMAT_VERSION, run_id: run_id.to_string(), ..State::default() }
    }

    /// Reads `state.json`; none yet is an empty record, unless `setup/undo/` shows that steps
    /// ran (then the record was lost: an error).
    pub(crate) fn load(dir: &Path, run_id: &str) -> Result<State, StateError> {
        let path = dir.join(layout::STATE);
        let error = |why: String| StateError { path: path.clone(), dir: dir.display().to_string(), why };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if steps::recorded_undos(dir).is_empty() {
                    Ok(State::fresh(run_id))
                } else {
                    Err(error(
                        "it is missing, but setup/undo/ records steps that left something running".into(),
                    ))
                }
            }
            Err(e) => Err(error(e.to_string())),
        }
    }

    /// Rewrites `state.json` atomically.
    pub(crate) fn save(&self, dir: &Path) -> Result<(), WorkdirError> {
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        workdir::write_atomic(&dir.join(layout::STATE), &text)
    }

    /// Steps that left something to undo, `(id, record)`: the records in `state.json`, and
    /// those in `setup/undo/` that it lacks (a step that was still running when benchflow died,
    /// or a state that could not be read).
    pub(crate) fn leftovers(&self, dir: &Path) -> Vec<(String, UndoRecord)> {
        let mut out: Vec<(String, UndoRecord)> =
            self.steps.iter().filter_map(|(id, s)| s.undo.clone().map(|u| (id.clone(), u))).collect();
        for (id, record) in steps::recorded_undos(dir) {
            let undone = self.steps.get(&id).is_some_and(|s| s.status == Status::Undone);
            if let Ok(record) = record
                && !undone
                && !out.iter().any(|(known, _)| *known == id)
            {
                out.push((id, record));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The undo record of step `id`: from `state.json`, else from `setup/undo/`.
    pub(crate) fn undo_of(&self, dir: &Path, id: &str) -> Option<UndoRecord> {
        if let Some(record) = self.steps.get(id).and_then(|s| s.undo.clone()) {
            return Some(record);
        }
        steps::read_undo(dir, id).and_then(Result::ok)
    }
}
