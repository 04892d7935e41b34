//! `state.json`: each step's status, input hash, timings, attempts and undo record, rewritten
//! atomically after every change.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    steps::UndoRecord,
    workdir::{self, WorkdirError},
};

/// A step's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
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
    pub fn as_str(self) -> &'static str {
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
pub struct Attempt {
    pub started_at: String,
    pub duration_s: f64,
    /// `done`, or the error.
    pub outcome: String,
}

/// A step's record.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct StepState {
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
pub struct State {
    pub format_version: u32,
    pub run_id: String,
    pub steps: BTreeMap<String, StepState>,
    /// Signals received, with when.
    #[serde(default)]
    pub interrupts: Vec<String>,
}

impl State {
    /// Reads `state.json`, or an empty state when there is none yet.
    pub fn load(dir: &Path, run_id: &str) -> State {
        std::fs::read_to_string(dir.join("state.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| State {
                format_version: workdir::FORMAT_VERSION,
                run_id: run_id.to_string(),
                ..State::default()
            })
    }

    /// Rewrites `state.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), WorkdirError> {
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        workdir::write_atomic(&dir.join("state.json"), &text)
    }

    /// Steps that left something to undo: `(id, record)`.
    pub fn leftovers(&self) -> Vec<(String, UndoRecord)> {
        self.steps.iter().filter_map(|(id, s)| s.undo.clone().map(|u| (id.clone(), u))).collect()
    }
}
