//! The run's typed event stream. The executor and the steps (through
//! [`crate::steps::Ctx::progress`]) emit [`Event`]s; the executor writes each to `events.jsonl`
//! (one JSON object per event, with its time) and hands it to the caller's [`Sink`]; the CLI's
//! sink is the [`Console`] (a line per event on stderr, nothing but signals when quiet).

use crate::workdir::layout;
use std::{collections::BTreeMap, io::Write as _, path::Path};

use serde::Serialize;
use serde_json::Value;

use super::state::Status;
use crate::{
    plan::Plan,
    spec::pipeline::{Kind, Phase},
    workdir::utc_now,
};

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    RunStarted {
        run_id: String,
        dir: String,
        phases: Vec<Phase>,
        /// `-s`: the selected step ids.
        selection: Option<Vec<String>>,
    },
    StepStarted {
        step: String,
        kind: Kind,
        phase: Phase,
        does: String,
    },
    /// Done earlier with the same inputs: not run again.
    StepReused {
        step: String,
    },
    /// A step says how it is getting on (a long wait, a warning).
    StepProgress {
        step: String,
        message: String,
    },
    StepRetry {
        step: String,
        attempt: u32,
        error: String,
        backoff_s: f64,
    },
    /// A step reached a final status (done, failed, not run, skipped, cancelled).
    StepFinished {
        step: String,
        status: Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        duration_s: Option<f64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Something the user must know that is not a step's outcome (a damaged record).
    Warning {
        message: String,
    },
    /// What a done step set up is gone while the run goes on (the engine's process died).
    EffectLost {
        step: String,
        what: String,
    },
    /// A Ctrl-C / SIGTERM: the how-many-th, whether teardown was running, and whether this
    /// command tears down after the stop (not `run`, `standup --keep`, `e2e --keep`).
    Signal {
        count: u32,
        during_teardown: bool,
        teardown_follows: bool,
    },
    RunFinished {
        outcome: String,
        leftovers: Vec<String>,
    },
    /// An experiment's own news: a stack stood up or torn down, a point done or failed, a
    /// search's trial, a between-points action.
    Experiment {
        message: String,
    },
}

/// Where a walk's events go, beside `events.jsonl` (which the executor always writes): the CLI's
/// [`Console`], an experiment's sink that names the point, a test's buffer. The caller builds
/// it and passes it in.
pub(crate) trait Sink: Send {
    /// Before the walk: the plan it walks (for step numbers).
    fn begin(&mut self, _plan: &Plan) {}
    fn event(&mut self, event: &Event);
}

/// Appends every event to `DIR/events.jsonl`, each with its time (best effort: a full disk
/// must not stop the run).
pub(crate) struct EventLog {
    file: Option<std::fs::File>,
}

impl EventLog {
    pub(crate) fn open(dir: &Path) -> EventLog {
        EventLog {
            file: std::fs::OpenOptions::new().create(true).append(true).open(dir.join(layout::EVENTS)).ok(),
        }
    }

    pub(crate) fn write(&mut self, event: &Event) {
        let Some(f) = self.file.as_mut() else { return };
        let mut line = serde_json::json!({ "t": utc_now() });
        if let (Some(obj), Ok(Value::Object(fields))) = (line.as_object_mut(), serde_json::to_value(event)) {
            obj.extend(fields);
        }
        let _ = writeln!(f, "{}", crate::redact::text(&line.to_string()));
        crate::workdir::crash::boundary();
    }
}

/// Lines on stderr for a person: one per event (nothing but signals, warnings and lost effects
/// when quiet), each step's prefixed `[ n/N] id`; `prefix` before every line (an experiment's
/// point).
pub(crate) struct Console {
    quiet: bool,
    prefix: String,
    /// Step id → its number, for the `[ n/N]` prefix.
    numbers: BTreeMap<String, usize>,
    total: usize,
    width: usize,
}

impl Console {
    pub(crate) fn new(quiet: bool) -> Console {
        Console { quiet, prefix: String::new(), numbers: BTreeMap::new(), total: 0, width: 10 }
    }

    /// Every line starts with `prefix` (e.g. `p003: `).
    pub(crate) fn prefixed(mut self, prefix: String) -> Console {
        self.prefix = prefix;
        self
    }
}

impl Sink for Console {
    fn begin(&mut self, plan: &Plan) {
        self.numbers = plan.steps.iter().map(|s| (s.id.clone(), s.number)).collect();
        self.total = plan.steps.len();
        self.width = plan.steps.iter().map(|s| s.id.len()).max().unwrap_or(10);
    }

    fn event(&mut self, event: &Event) {
        if let Some(text) = self.line(event) {
            errln!("{}{}", self.prefix, crate::redact::text(&text));
        }
    }
}

/// Drops every event (a caller that only wants `events.jsonl`).
#[cfg(test)]
pub(crate) struct Silent;

#[cfg(test)]
impl Sink for Silent {
    fn event(&mut self, _event: &Event) {}
}

impl Console {
    fn step(&self, id: &str, text: &str) -> Option<String> {
        let n = self.numbers.get(id).copied().unwrap_or(0);
        Some(format!("[{n:>2}/{}] {id:<w$} {text}", self.total, w = self.width))
    }

    /// The line a person sees for an event, if any.
    fn line(&self, event: &Event) -> Option<String> {
        // Signals are always said: the user pressed a key and must know what it does.
        if let Event::Signal { count, during_teardown, teardown_follows } = event {
            return Some(match (count, during_teardown, teardown_follows) {
                (1, false, true) => "interrupt: stopping the running steps; teardown follows (interrupt again to skip teardown)".into(),
                (1, false, false) => "interrupt: stopping the running steps; what was measured is analysed; the stack stays up".into(),
                (_, false, true) => "interrupt: still stopping the running steps; teardown will be skipped".into(),
                (_, false, false) => "interrupt: still stopping the running steps".into(),
                (_, true, _) => "interrupt: skipping the rest of teardown".into(),
            });
        }
        match event {
            Event::Warning { message } => return Some(format!("warning: {message}")),
            Event::EffectLost { step, what } => {
                return Some(format!(
                    "{step}: what it set up died while the run went on ({what}); stopping the run"
                ));
            }
            Event::Experiment { message } if !self.quiet => return Some(format!("experiment: {message}")),
            _ => {}
        }
        if self.quiet {
            return None;
        }
        match event {
            Event::RunStarted { run_id, dir, phases, .. } => Some(format!(
                "benchflow: run {run_id} ({}), work directory {dir}",
                phases.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
            )),
            Event::StepStarted { step, kind, does, .. } => {
                self.step(step, &format!("{:<8} {does}", kind.as_str()))
            }
            Event::StepReused { step } => self
                .step(step, "already done with the same inputs: skipped (select it with -s to run it again)"),
            Event::StepProgress { message, .. } => Some(format!("        {message}")),
            Event::StepRetry { step, attempt, error, backoff_s } => self.step(
                step,
                &format!(
                    "attempt {attempt} failed ({}); retrying in {backoff_s:.1} s",
                    error.lines().next().unwrap_or("")
                ),
            ),
            Event::StepFinished { step, status, duration_s, summary, error } => {
                let error = error.as_deref().unwrap_or("");
                match (status, duration_s) {
                    (Status::Skipped, _) => None,
                    // It ran.
                    (Status::Done, Some(took)) => {
                        self.step(step, &format!("done in {took:.1} s: {}", summary.as_deref().unwrap_or("")))
                    }
                    (Status::Failed, Some(took)) => {
                        self.step(step, &format!("FAILED after {took:.1} s: {error}"))
                    }
                    (_, Some(_)) => self.step(step, error),
                    // It never started.
                    (status, None) => self.step(step, &format!("{}: {error}", status.as_str())),
                }
            }
            Event::Signal { .. }
            | Event::RunFinished { .. }
            | Event::Warning { .. }
            | Event::EffectLost { .. }
            | Event::Experiment { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json_with_their_fields() {
        let e =
            Event::StepRetry { step: "02_smoke".into(), attempt: 1, error: "boom".into(), backoff_s: 2.0 };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "step_retry");
        assert_eq!(v["attempt"], 1);
        let e = Event::StepFinished {
            step: "01_up".into(),
            status: Status::NotRun,
            duration_s: None,
            summary: None,
            error: Some("x".into()),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!((v["event"].as_str(), v["status"].as_str()), (Some("step_finished"), Some("not_run")));
        assert!(v.get("duration_s").is_none());
    }
}
