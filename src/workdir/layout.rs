//! Every path of a work directory and of an experiment directory, named once. Paths are
//! relative to the directory's root (join them, or pass them to [`super::WorkDir::write`]).
//!
//! ```text
//! <work directory>/                      <experiment directory>/
//!   inputs/  files as given, overrides,    experiment.yaml, overrides.txt, design.csv
//!            resolved.yaml, version.json   state.json (points and stacks), experiment.log
//!   plan/    plan.json, .dot, .txt,        stacks/<id>/   a work directory per stack
//!            steps/<id>.json, manifests/   points/<id>/   a work directory per point
//!   setup/   commands/<id>.log, undo/,     analysis/      points.csv, plots, report.html
//!            tools/, diagnostics/
//!   state.json, events.jsonl
//!   results/<run>/, analysis/<run>/ (and `latest` links)
//! ```

/// The files as given, with where each came from.
pub const INPUTS: &str = "inputs";
/// Every value of the run with the file or flag that set it.
pub const RESOLVED: &str = "inputs/resolved.yaml";
/// `--set`s, one per line.
pub const OVERRIDES: &str = "inputs/overrides.txt";
/// benchflow's version, the format version and the command line.
pub const VERSION: &str = "inputs/version.json";
/// What a reproduction reproduces.
pub const ORIGIN: &str = "inputs/origin.json";
/// Earlier `resolved.yaml`s of the same work directory.
pub const HISTORY: &str = "inputs/history";
/// The workload as benchflow resolved it (for the report).
pub const WORKLOAD: &str = "inputs/workload.yaml";
/// The compiled plan (typed again when read).
pub const PLAN: &str = "plan/plan.json";
pub const PLAN_DOT: &str = "plan/plan.dot";
pub const PLAN_TABLE: &str = "plan/plan.txt";
/// Each step as rendered: `plan/steps/<id>.json`.
pub const PLAN_STEPS: &str = "plan/steps";
/// Files a step renders (manifests): `plan/manifests/<id>/<name>`.
pub const MANIFESTS: &str = "plan/manifests";
/// One log per step: `setup/commands/<id>.log`.
pub const COMMANDS: &str = "setup/commands";
/// Undo records written before a step acts: `setup/undo/<id>.json`.
pub const UNDO: &str = "setup/undo";
/// Each installed tool, with its version and where it came from: `setup/tools/<name>.json`.
pub const TOOLS: &str = "setup/tools";
/// What a failed wait saw.
pub const DIAGNOSTICS: &str = "setup/diagnostics";
/// Each step's status, hash, timings, attempts, undo record; an experiment's points and stacks.
pub const STATE: &str = "state.json";
/// The event stream, one JSON object a line.
pub const EVENTS: &str = "events.jsonl";
/// `results/<run>/`: records, server metrics, run.json.
pub const RESULTS: &str = "results";
/// `analysis/<run>/`: stats, plots, report; an experiment's cross-point analysis.
pub const ANALYSIS: &str = "analysis";

/// An experiment directory: the experiment file as given.
pub const EXPERIMENT: &str = "experiment.yaml";
/// An experiment directory: its `--set`s.
pub const EXPERIMENT_OVERRIDES: &str = "overrides.txt";
/// An experiment directory: one row per point with its factors and stack.
pub const DESIGN: &str = "design.csv";
/// An experiment directory: its log, one line per thing that happened.
pub const EXPERIMENT_LOG: &str = "experiment.log";
/// An experiment directory: a work directory per stack.
pub const STACKS: &str = "stacks";
/// An experiment directory: a work directory per point.
pub const POINTS: &str = "points";
/// An experiment directory: the search's trials and answer.
pub const SEARCH: &str = "analysis/search.json";
