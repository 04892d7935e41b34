//! The experiment's record, `state.json`: each point pending / running / done / failed with
//! its input hash and attempts, each stack's status and how often it was stood up. Written
//! atomically after every change, so a killed experiment resumes from it.

use crate::workdir::layout;
use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use super::ExperimentError;
use crate::workdir::{self, write_atomic};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PointStatus {
    #[default]
    Pending,
    Running,
    Done,
    Failed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StackStatus {
    #[default]
    Pending,
    StandingUp,
    Up,
    /// Stood up and torn down again.
    Down,
    /// Its standup failed (and was undone).
    Failed,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PointState {
    pub status: PointStatus,
    /// The hash of the point's plan when it ran: done with the same hash is not run again.
    pub hash: String,
    pub stack: String,
    pub label: String,
    /// Attempts over all invocations.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its next attempt measures anew, reusing nothing its work directory holds: it failed, or
    /// its inputs (the stack's among them) changed since it last ran.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remeasure: bool,
    /// It ran since the experiment last drew its points' chart PNGs (with
    /// `analysis.point_pngs`; drawn once its points are done, and on the next invocation when
    /// one was killed before).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub charts_pending: bool,
    /// It ran (or was copied in) since the experiment last added its points to the store
    /// (`--store`): done once its points are done (after their PNGs), and on the next
    /// invocation when one was killed before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub store_pending: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StackState {
    pub status: StackStatus,
    pub hash: String,
    /// Times this stack went from down to up (an experiment that resumes may reuse a stack
    /// that is still up instead).
    pub standups: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ExpState {
    pub format_version: u32,
    /// The experiment file it was run from.
    pub experiment: String,
    pub points: BTreeMap<String, PointState>,
    pub stacks: BTreeMap<String, StackState>,
    /// When an invocation started and was interrupted (for the record).
    #[serde(default)]
    pub invocations: Vec<String>,
    /// Input hash → a measured point directory set aside when its point's inputs changed
    /// (relative to the experiment's directory): found again by hash, never by position.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub superseded: BTreeMap<String, String>,
}

impl ExpState {
    /// Reads `state.json`, or an empty record when there is none.
    pub(crate) fn load(root: &Path) -> Result<ExpState, ExperimentError> {
        let path = root.join(layout::STATE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ExperimentError::State {
                path: path.display().to_string(),
                why: format!(
                    "{e}; `benchflow teardown {}` stops its stacks from their own records; then move it \
                     aside to start the experiment afresh in this directory",
                    root.display()
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(ExpState { format_version: workdir::FORMAT_VERSION, ..ExpState::default() })
            }
            Err(e) => Err(ExperimentError::State { path: path.display().to_string(), why: e.to_string() }),
        }
    }

    pub(crate) fn save(&self, root: &Path) -> Result<(), ExperimentError> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        Ok(write_atomic(&root.join(layout::STATE), text.as_bytes())?)
    }

    /// Whether `root` holds an experiment (its file as given, or its record and design: a
    /// directory whose state.json was lost is still one, with stacks to tear down).
    pub(crate) fn is_experiment(root: &Path) -> bool {
        root.join(layout::EXPERIMENT).is_file()
            || (root.join(layout::STATE).is_file() && root.join(layout::DESIGN).is_file())
    }
}
