//! The step kinds, one file each, all with the same small interface: `describe` (what it will
//! do: shown by `plan` and written before it runs), `run`, and for kinds that leave something
//! behind, `undo` from the record `run` returned (kept in `state.json`, so `benchflow teardown
//! DIR` can undo after a crash without re-rendering anything).
//!
//! * [`spawn`]: a local process with readiness over HTTP; undone by stopping its process group.
//! * [`http`]: smoke test: `/health`, `/v1/models`, one completion.
//! * [`harness`]: the built-in load generator for the workload.
//! * [`analyze`]: statistics, plots, report.
//! * [`exec`]: any command, captured.
//! * [`preflight`], [`apply`], [`wait`]: the Kubernetes kinds (checks before anything is
//!   created; server-side apply, undone by deleting; readiness through watches).

pub mod analyze;
pub mod apply;
pub mod exec;
pub mod harness;
pub mod http;
pub mod preflight;
pub mod spawn;
pub mod wait;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

use crate::{plan::PlannedStep, spec::pipeline::Kind};

/// How a step ended when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Failed(String),
    /// Stopped by Ctrl-C / SIGTERM before it finished.
    #[error("interrupted")]
    Cancelled,
    /// Interrupted, but what it produced is kept (e.g. the requests measured so far).
    #[error("interrupted: {0}")]
    Interrupted(String),
}

/// A successful step: one line for the console, and what undo needs.
#[derive(Debug, Default)]
pub struct Done {
    pub summary: String,
    pub undo: Option<Value>,
}

/// What a running step may use.
pub struct Ctx {
    pub workdir: PathBuf,
    /// The step's id (`05_deploy`).
    pub step: String,
    /// The step's action log: `setup/commands/<id>.log`.
    pub log: PathBuf,
    /// Becomes true on the first Ctrl-C / SIGTERM.
    pub cancel: watch::Receiver<bool>,
    pub quiet: bool,
    /// For `undo` steps: the record the undone step left.
    pub target: Option<Value>,
}

impl Ctx {
    /// Appends lines to the step's log.
    pub fn note(&self, text: &str) {
        append(&self.log, text);
    }

    /// Resolves when the run is cancelled.
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Appends to a log file (best effort: a full disk must not hide the step's real outcome).
pub fn append(path: &Path, text: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{}", text.trim_end_matches('\n'));
    }
}

/// `argv` as a process in its own group (so undo and interrupts reach all of it), stdin
/// closed, stdout and stderr appended to the step's log, with `env` applied: `env:NAME` values
/// are read from our environment when the process starts and never written anywhere.
pub(crate) fn command(
    argv: &[String],
    env: &std::collections::BTreeMap<String, String>,
    ctx: &Ctx,
) -> Result<tokio::process::Command, StepError> {
    let Some(program) = argv.first() else {
        return Err(StepError::Failed("`command` is empty".into()));
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ctx.log)
        .map_err(|e| StepError::Failed(format!("cannot open {}: {e}", ctx.log.display())))?;
    let out = log.try_clone().map_err(|e| StepError::Failed(e.to_string()))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(out))
        .stderr(std::process::Stdio::from(log))
        .process_group(0);
    for (k, v) in env {
        match v.strip_prefix("env:") {
            Some(name) => match std::env::var(name) {
                Ok(value) => {
                    cmd.env(k, value);
                    ctx.note(&format!("# env {k} from ${name} (value not shown)"));
                }
                Err(_) => ctx.note(&format!("# env {k}: ${name} is not set in our environment; not passed")),
            },
            None => {
                cmd.env(k, v);
                ctx.note(&format!("# env {k}={v}"));
            }
        }
    }
    Ok(cmd)
}

/// The last `n` lines of a log, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n")
}

/// A command line as a shell would accept it.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn scalar_text(v: Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a string, found {other}")),
    }
}

/// A command line whose items may be rendered numbers (`"{{ run.port }}"` stays a number).
pub(crate) fn argv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let items: Vec<Value> = serde::Deserialize::deserialize(d)?;
    items.into_iter().map(scalar_text).collect::<Result<_, _>>().map_err(serde::de::Error::custom)
}

/// An environment whose values may be rendered numbers or booleans.
pub(crate) fn env_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    let items: std::collections::BTreeMap<String, Value> = serde::Deserialize::deserialize(d)?;
    items
        .into_iter()
        .map(|(k, v)| scalar_text(v).map(|v| (k, v)))
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}

pub(crate) fn parse<T: DeserializeOwned>(kind: Kind, with: &Value) -> Result<T, String> {
    serde_json::from_value(with.clone()).map_err(|e| {
        format!("`with` of a {} step: {}", kind.as_str(), crate::spec::clean_message(&e.to_string(), &[]))
    })
}

/// Whether a kind leaves something that teardown must undo.
pub fn undoable(kind: Kind) -> bool {
    matches!(kind, Kind::Spawn | Kind::Apply)
}

/// Checks a kind's rendered arguments and says what the step will do.
pub fn describe(kind: Kind, with: &Value) -> Result<Vec<String>, String> {
    match kind {
        Kind::Spawn => Ok(parse::<spawn::Args>(kind, with)?.describe()),
        Kind::Http => Ok(parse::<http::Args>(kind, with)?.describe()),
        Kind::Harness => Ok(parse::<harness::Args>(kind, with)?.describe()),
        Kind::Analyze => Ok(parse::<analyze::Args>(kind, with)?.describe()),
        Kind::Exec => Ok(parse::<exec::Args>(kind, with)?.describe()),
        Kind::Preflight => Ok(parse::<preflight::Args>(kind, with)?.describe()),
        Kind::Apply => Ok(parse::<apply::Args>(kind, with)?.describe()),
        Kind::Wait => Ok(parse::<wait::Args>(kind, with)?.describe()),
        Kind::Undo => Ok(vec![format!("undo {}", with.get("step").and_then(Value::as_str).unwrap_or("?"))]),
    }
}

/// Runs one step.
pub async fn run(step: &PlannedStep, ctx: &Ctx) -> Result<Done, StepError> {
    let args_err = |m: String| StepError::Failed(m);
    match step.kind {
        Kind::Spawn => parse::<spawn::Args>(step.kind, &step.with).map_err(args_err)?.run(ctx).await,
        Kind::Http => parse::<http::Args>(step.kind, &step.with).map_err(args_err)?.run(ctx).await,
        Kind::Harness => parse::<harness::Args>(step.kind, &step.with).map_err(args_err)?.run(ctx).await,
        Kind::Analyze => parse::<analyze::Args>(step.kind, &step.with).map_err(args_err)?.run(ctx).await,
        Kind::Exec => parse::<exec::Args>(step.kind, &step.with).map_err(args_err)?.run(ctx).await,
        Kind::Preflight => parse::<preflight::Args>(step.kind, &step.with).map_err(args_err)?.run(ctx).await,
        Kind::Apply => parse::<apply::Args>(step.kind, &step.with).map_err(args_err)?.run(ctx).await,
        Kind::Wait => parse::<wait::Args>(step.kind, &step.with).map_err(args_err)?.run(ctx).await,
        Kind::Undo => match &ctx.target {
            Some(record) => undo(record, ctx).await,
            None => Ok(Done { summary: "nothing to undo".into(), undo: None }),
        },
    }
}

/// Undoes what a step left, from its record.
pub async fn undo(record: &Value, ctx: &Ctx) -> Result<Done, StepError> {
    match record.get("kind").and_then(Value::as_str) {
        Some("spawn") => spawn::undo(record, ctx).await,
        Some("apply") => apply::undo(record, ctx).await,
        other => Err(StepError::Failed(format!("cannot undo a record of kind {other:?}"))),
    }
}
