//! The documents commands print with `-o json` or `-o yaml`: one typed struct each, with its
//! JSON Schema under `schemas/` (generated from these types; a test keeps the files current).
//! With either format, standard output holds only the document; progress and notes go to
//! standard error.
//!
//! | command | document | schema |
//! |---|---|---|
//! | `status` of a run | [`RunStatus`] | `schemas/run-status.schema.json` |
//! | `status` of an experiment | [`ExperimentStatus`] | `schemas/experiment-status.schema.json` |
//! | `tools list` | [`ToolsList`] | `schemas/tools.schema.json` |
//! | `experiment plan` | [`ExperimentPlanDoc`] | `schemas/experiment-plan.schema.json` |
//! | `e2e`, `run`, `standup`, `reproduce` | [`RunSummary`] | `schemas/run-summary.schema.json` |
//! | `plan` | [`crate::plan::Plan`] (also `plan/plan.json`) | `schemas/plan.schema.json` |

use std::collections::BTreeMap;

use clap::ValueEnum;
use schemars::JsonSchema;
use serde::Serialize;

use super::CliError;
use crate::analysis::StatsDoc;

/// `-o`: a table for people, or one document for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Format {
    /// Lines for people (the default).
    #[default]
    Table,
    /// One JSON document on stdout (its schema is in `schemas/`).
    Json,
    /// The same document as YAML.
    Yaml,
}

impl Format {
    /// Whether stdout is reserved for the document.
    pub(crate) fn is_document(self) -> bool {
        self != Format::Table
    }
}

/// Prints `doc` on stdout as JSON or YAML (nothing for [`Format::Table`]: the caller prints
/// its lines).
pub(crate) fn emit<T: Serialize>(format: Format, doc: &T) -> Result<(), CliError> {
    let text = match format {
        Format::Table => return Ok(()),
        Format::Json => serde_json::to_string_pretty(doc).map(|t| t + "\n").map_err(|e| e.to_string()),
        Format::Yaml => serde_saphyr::to_string(doc).map_err(|e| e.to_string()),
    }
    .map_err(CliError::Document)?;
    out!("{}", crate::redact::text(&text));
    Ok(())
}

/// `benchflow status DIR -o json` of a run's work directory.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct RunStatus {
    pub run_id: String,
    /// The work directory.
    pub workdir: String,
    /// The endpoint the run measures (or measured), when known.
    pub endpoint: Option<String>,
    /// A dry run's directory: everything rendered, nothing ever started.
    pub dry_run: bool,
    /// Every step of the plan, in order.
    pub steps: Vec<StepStatus>,
    /// What is still up (what `benchflow teardown` would undo), one line each. On Kubernetes,
    /// the objects the cluster still has (unless `cluster_unchecked` says why it could not be
    /// asked: then the work directory's record).
    pub up: Vec<String>,
    /// What the work directory recorded as up and is gone, one line each, saying how: objects
    /// the cluster no longer has (deleted outside this work directory, e.g. by `benchflow gc`),
    /// `step: Kind/name in namespace — gone from the cluster …`; processes no longer running
    /// (died, or stopped outside benchflow), `step: process group N (…) — no longer running`.
    pub gone: Vec<String>,
    /// Why what `up` lists could not be checked against the cluster (it could not be reached,
    /// or refused to answer); `null` when it was checked, or there was nothing to check.
    pub cluster_unchecked: Option<String>,
    /// What the cluster says of the run's objects (Kubernetes runs with something up).
    pub cluster: Vec<String>,
    /// The harness runs under `results/<id>/`, oldest first.
    pub harness_runs: Vec<HarnessRun>,
    /// When the run was interrupted.
    pub interrupted_at: Vec<String>,
    /// Steps are marked running but no benchflow holds the directory: it was killed.
    pub killed: bool,
    /// A `state.json` that could not be read (the steps are then shown as pending).
    pub warning: Option<String>,
}

/// One step in [`RunStatus`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct StepStatus {
    pub id: String,
    /// `standup`, `run`, `analyze` or `teardown`.
    pub phase: String,
    /// `pending`, `running`, `done`, `failed`, `not_run`, `skipped`, `cancelled`, `undone`, …
    pub status: String,
    pub duration_s: Option<f64>,
    /// Its error, else its summary (first line).
    pub note: Option<String>,
}

/// One harness run in [`RunStatus`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct HarnessRun {
    /// `001`, `002`, …
    pub id: String,
    /// The workload it ran, as named (`null`: a run made before runs recorded their inputs).
    pub workload: Option<String>,
    /// The sha256 of that workload file as used (`results/<run>/inputs/workload.yaml`).
    pub workload_sha256: Option<String>,
    /// The harness, as named.
    pub harness: Option<String>,
    /// When it started (`run.json`, else when its inputs were recorded).
    pub started_at: Option<String>,
    /// Rows of its `requests.csv`.
    pub requests: usize,
    /// Failed requests, as `run.json` counts them (`null` until the run ended).
    pub failed: Option<u64>,
    /// `done`, `interrupted`, `unfinished` (no end recorded: killed, or still running) or
    /// `not_started` (no `run.json`).
    pub outcome: String,
    /// Its analysis is there (`analysis/<run>/stats.json`).
    pub analysed: bool,
}

/// `benchflow status DIR -o json` of an experiment directory.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct ExperimentStatus {
    /// The experiment file it was run from.
    pub experiment: String,
    /// The experiment directory.
    pub dir: String,
    /// Point ids by status (`pending`, `running`, `done`, `failed`).
    pub counts: BTreeMap<String, usize>,
    pub points: Vec<ExperimentPointStatus>,
    /// Done points whose chart PNGs are still to be drawn (an experiment whose file asks for
    /// them, `analysis.point_pngs`, stopped before its end): running the same `benchflow
    /// experiment` command again draws them.
    pub charts_pending: Vec<String>,
    pub stacks: Vec<ExperimentStackStatus>,
    /// Who holds the directory now (`null`: no benchflow does).
    pub held_by: Option<String>,
}

/// One point in [`ExperimentStatus`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct ExperimentPointStatus {
    pub id: String,
    /// Its factor values.
    pub label: String,
    pub status: String,
    pub stack: String,
    pub attempts: u32,
    pub duration_s: Option<f64>,
    pub error: Option<String>,
}

/// One stack in [`ExperimentStatus`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct ExperimentStackStatus {
    pub id: String,
    /// `pending`, `standing_up`, `up`, `down` or `failed`.
    pub status: String,
    /// Times it went from down to up.
    pub standups: u32,
    pub error: Option<String>,
}

/// `benchflow tools list -o json`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct ToolsList {
    pub tools: Vec<ToolEntry>,
    /// Where tools are installed (~/.cache/benchflow/tools or $BENCHFLOW_TOOLS_DIR).
    pub tools_dir: String,
    /// The Pythons found on this machine.
    pub pythons: Vec<PythonEntry>,
}

/// One tool in [`ToolsList`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct ToolEntry {
    pub name: String,
    /// Its PyPI package.
    pub package: String,
    /// The pinned version.
    pub version: String,
    /// The Pythons it supports, as a version range (`>=3.10`).
    pub python: String,
    /// Installed: its command and Python; `null` when not.
    pub installed: Option<InstalledTool>,
    /// Not installed: the Python `benchflow tools install NAME` would use (`null`: none fits).
    pub would_use: Option<String>,
}

/// Where an installed tool is.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct InstalledTool {
    pub bin: String,
    pub python_version: String,
}

/// One Python in [`ToolsList`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct PythonEntry {
    pub path: String,
    pub version: String,
}

/// `benchflow experiment plan -e FILE -o json`: the design and its stacks.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct ExperimentPlanDoc {
    /// Where the experiment file came from.
    pub experiment: String,
    pub description: Option<String>,
    /// The experiment directory it would run in.
    pub dir: String,
    /// Stacks up at once, at most.
    pub max_stacks: usize,
    /// Factors that change the stack (a standup per level).
    pub setup_factors: Vec<String>,
    /// Factors run on the same stack.
    pub run_factors: Vec<String>,
    /// A search's terms (`null` for a fixed design).
    pub search: Option<SearchDoc>,
    pub stacks: Vec<PlannedStackDoc>,
    pub points: Vec<PlannedPointDoc>,
}

/// A search in [`ExperimentPlanDoc`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct SearchDoc {
    pub objective: String,
    pub factor: String,
    pub from: f64,
    pub to: f64,
    pub integer: bool,
    /// Trials at most.
    pub trials: usize,
    /// The bracket's relative width at which it stops.
    pub precision: f64,
}

/// A stack in [`ExperimentPlanDoc`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct PlannedStackDoc {
    pub id: String,
    /// Hash of its standup steps.
    pub hash: String,
    /// The setup factors' values that make it.
    pub setup: BTreeMap<String, serde_json::Value>,
    /// Its points' ids.
    pub points: Vec<String>,
}

/// A point in [`ExperimentPlanDoc`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct PlannedPointDoc {
    pub id: String,
    pub name: Option<String>,
    /// Its factor values, shown short.
    pub label: String,
    /// Its factor values by path.
    pub values: BTreeMap<String, serde_json::Value>,
    /// Its stack's id.
    pub stack: String,
    /// Hash of its plan (a point done with the same hash is not run again).
    pub hash: String,
}

/// `benchflow e2e|run|standup|reproduce -o json`: the final summary, printed when the command
/// ends (also when it fails, before the exit code says how).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct RunSummary {
    /// `e2e`, `run`, `standup` or `reproduce`.
    pub command: String,
    pub run_id: String,
    /// The work directory.
    pub workdir: String,
    /// `success`, `failed`, `standup_failed`, `interrupted`, `engine_lost`, `unrecorded` or
    /// `dry_run` (everything rendered, nothing started).
    pub outcome: String,
    /// The error, when the command failed.
    pub error: Option<String>,
    /// The exit code the command ends with.
    pub exit_code: u8,
    /// The endpoint measured.
    pub endpoint: Option<String>,
    /// The statistics of the analysis this command made (`analysis/latest/stats.json`), when
    /// it made one.
    pub stats: Option<StatsDoc>,
    /// The HTML report of that analysis.
    pub report: Option<String>,
    /// What is still up (left on purpose by `standup`, or after a failure), one line each.
    pub up: Vec<String>,
}

/// `(file name, pretty JSON)` of each document's schema.
#[cfg(test)]
pub(crate) fn schemas() -> Vec<(&'static str, String)> {
    use schemars::schema_for;
    let pretty = |s: schemars::Schema| serde_json::to_string_pretty(&s).unwrap_or_default() + "\n";
    vec![
        ("run-status.schema.json", pretty(schema_for!(RunStatus))),
        ("experiment-status.schema.json", pretty(schema_for!(ExperimentStatus))),
        ("tools.schema.json", pretty(schema_for!(ToolsList))),
        ("experiment-plan.schema.json", pretty(schema_for!(ExperimentPlanDoc))),
        ("run-summary.schema.json", pretty(schema_for!(RunSummary))),
        ("plan.schema.json", pretty(schema_for!(crate::plan::Plan))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_document_schemas_are_fresh() {
        for (name, text) in schemas() {
            crate::spec::schema::assert_fresh(name, &text);
        }
    }

    #[test]
    fn a_document_validates_against_its_schema_shape() {
        // The schema names every field the document has, and requires the non-optional ones.
        let doc = ToolsList { tools: vec![], tools_dir: "/t".into(), pythons: vec![] };
        let value = serde_json::to_value(&doc).unwrap();
        let schema = serde_json::to_value(schemars::schema_for!(ToolsList)).unwrap();
        let props = schema["properties"].as_object().unwrap();
        for key in value.as_object().unwrap().keys() {
            assert!(props.contains_key(key), "{key} missing from the schema");
        }
        let required: Vec<&str> =
            schema["required"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        assert!(required.contains(&"tools") && required.contains(&"tools_dir"), "{required:?}");
    }
}
