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
pub(crate) const INPUTS: &str = "inputs";
/// Every value of the run with the file or flag that set it.
pub(crate) const RESOLVED: &str = "inputs/resolved.yaml";
/// `--set`s, one per line.
pub(crate) const OVERRIDES: &str = "inputs/overrides.txt";
/// benchflow's version, the format version and the command line.
pub(crate) const VERSION: &str = "inputs/version.json";
/// What a reproduction reproduces.
pub(crate) const ORIGIN: &str = "inputs/origin.json";
/// Earlier `resolved.yaml`s of the same work directory.
pub(crate) const HISTORY: &str = "inputs/history";
/// The workload as benchflow resolved it (for the report).
pub(crate) const WORKLOAD: &str = "inputs/workload.yaml";
/// The compiled plan (typed again when read).
pub(crate) const PLAN: &str = "plan/plan.json";
pub(crate) const PLAN_DOT: &str = "plan/plan.dot";
pub(crate) const PLAN_TABLE: &str = "plan/plan.txt";
/// Present in a directory a `--dry-run` rendered and nothing ran in since.
pub(crate) const DRY_RUN: &str = "plan/dry-run.json";
/// Where `--dry-run` renders when no `--workdir` is given: `runs/dry-run/<run-id>`.
pub(crate) const DRY_RUNS: &str = "runs/dry-run";
/// Each step as rendered: `plan/steps/<id>.json`.
pub(crate) const PLAN_STEPS: &str = "plan/steps";
/// Files a step renders (manifests): `plan/manifests/<id>/<name>`.
pub(crate) const MANIFESTS: &str = "plan/manifests";
/// One log per step: `setup/commands/<id>.log`.
pub(crate) const COMMANDS: &str = "setup/commands";
/// Undo records written before a step acts: `setup/undo/<id>.json`.
pub(crate) const UNDO: &str = "setup/undo";
/// Each installed tool, with its version and where it came from: `setup/tools/<name>.json`.
pub(crate) const TOOLS: &str = "setup/tools";
/// What a failed wait saw.
pub(crate) const DIAGNOSTICS: &str = "setup/diagnostics";
/// Each step's status, hash, timings, attempts, undo record; an experiment's points and stacks.
pub(crate) const STATE: &str = "state.json";
/// The event stream, one JSON object a line.
pub(crate) const EVENTS: &str = "events.jsonl";
/// `results/<run>/`: records, server metrics, run.json.
pub(crate) const RESULTS: &str = "results";
/// `analysis/<run>/`: stats, plots, report; an experiment's cross-point analysis.
pub(crate) const ANALYSIS: &str = "analysis";

/// An experiment directory: the experiment file as given.
pub(crate) const EXPERIMENT: &str = "experiment.yaml";
/// An experiment directory: its `--set`s.
pub(crate) const EXPERIMENT_OVERRIDES: &str = "overrides.txt";
/// An experiment directory: one row per point with its factors and stack.
pub(crate) const DESIGN: &str = "design.csv";
/// An experiment directory: its log, one line per thing that happened.
pub(crate) const EXPERIMENT_LOG: &str = "experiment.log";
/// An experiment directory: a work directory per stack.
pub(crate) const STACKS: &str = "stacks";
/// An experiment directory: a work directory per point.
pub(crate) const POINTS: &str = "points";
/// An experiment directory: point directories set aside when their point's inputs changed
/// (never deleted; a measured one is found again by its input hash).
pub(crate) const SUPERSEDED: &str = "superseded";
/// An experiment directory: the experiment file and overrides of earlier invocations that
/// differed from the next one's.
pub(crate) const EXPERIMENT_HISTORY: &str = "history";
/// A results store's entry: what it measured and the sha256 of each of its files (a directory
/// holding one is never written into).
pub(crate) const STORE_ENTRY: &str = "stored.json";
/// An experiment directory: the search's trials and answer.
pub(crate) const SEARCH: &str = "analysis/search.json";
