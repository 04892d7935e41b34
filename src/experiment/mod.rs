//! Experiments: many runs from one base. A design gives the points ([`design`]); the planner
//! compiles each point and groups them by the stack they need, the hash of their standup steps
//! ([`plan`]); the runner stands each stack up once, runs its points, tears it down, and
//! records every point in `state.json` so a stopped experiment resumes where it was
//! ([`run`], [`state`]).
//!
//! An experiment directory:
//!
//! ```text
//! experiment.yaml  the file as given          design.csv   every point, its stack, its values
//! overrides.txt    the command line's --sets  state.json   points and stacks, with attempts
//! experiment.log   what happened, in order    stacks/<id>/ each stack's work directory
//! points/<id>/     each point's work directory (inputs, plan, results, analysis)
//! analysis/        the cross-point analysis
//! ```

pub(crate) mod analysis;
mod between;
pub(crate) mod compare;
pub(crate) mod design;
mod measure;
pub(crate) mod plan;
mod point;
mod progress;
mod report;
pub(crate) mod run;
pub(crate) mod search;
#[cfg(test)]
mod search_model;
mod stack;
pub(crate) mod state;
pub(crate) mod store;
mod todo;
mod trials;

use crate::{resolve::ResolveError, session::SessionError, spec::SpecError, workdir::WorkdirError};

/// `n` and `word`, plural unless `n` is 1: `1 point`, `3 points`, `0 stacks`.
pub(crate) fn counted(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

/// Why an experiment could not be planned or run (a point's failure is in the summary).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExperimentError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error("{at}: point {point} ({label}): {message}")]
    Point { at: String, point: String, label: String, message: String },
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Workdir(#[from] WorkdirError),
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
    #[error(transparent)]
    Plot(#[from] crate::analysis::plots::PlotError),
    #[error(transparent)]
    Html(#[from] crate::analysis::html::HtmlError),
    #[error("{path}: {why}")]
    State { path: String, why: String },
    #[error("{dir} is still up ({why}); remove it with `benchflow teardown {dir}`")]
    Leftover { dir: String, why: String },
}
