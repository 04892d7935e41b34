//! `analyze`: statistics, plots and the report from `results/<run>/` into `analysis/<run>/`; and
//! the run's verdict: more failed requests than the workload allows (`max_failed`) fails the
//! step, after everything is written.

use serde::{Deserialize, Serialize};

use super::{Ctx, Done, Inputs, Step, StepError};
use crate::{
    analysis::{self, Convention},
    spec::workload::Slo,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default = "default_convention")]
    pub convention: Convention,
    #[serde(default)]
    pub slo: Slo,
    /// The largest share of failed requests for the run to count as carried out (by default
    /// the workload's `max_failed`).
    #[serde(default)]
    pub max_failed: Option<f64>,
}

fn default_convention() -> Convention {
    Convention::Vllm
}

impl Step for Args {
    fn compile(&mut self, inputs: &Inputs) -> Result<(), String> {
        if self.max_failed.is_none() {
            self.max_failed = inputs.workload.map(|w| w.max_failed);
        }
        Ok(())
    }

    fn salvages(&self) -> bool {
        true
    }

    fn describe(&self) -> Vec<String> {
        vec![format!(
            "statistics ({} conventions), plots and report.html from results/<run>/ into analysis/<run>/",
            self.convention.as_str()
        )]
    }

    async fn run(self, ctx: &Ctx) -> Result<Done, StepError> {
        let run = ctx.run_dirs();
        let dirs = analysis::Dirs { workdir: ctx.workdir.clone(), results: run.results, out: run.analysis };
        let a = tokio::task::spawn_blocking(move || analysis::analyze(&dirs, self.convention, &self.slo))
            .await
            .map_err(|e| StepError::Failed(e.to_string()))?
            .map_err(|e| StepError::Failed(e.to_string()))?;
        let text = analysis::render_text(&a);
        ctx.note(&text);
        // The verdict: a run in which (nearly) every request failed did not measure the server.
        let failed: u64 = a.stages.iter().map(|s| s.failed).sum();
        let total = failed + a.stages.iter().map(|s| s.completed).sum::<u64>();
        let limit = self.max_failed.unwrap_or(0.5);
        if total > 0 && failed as f64 > limit * total as f64 {
            let mut kinds: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
            for s in &a.stages {
                for (k, n) in &s.failed_by_kind {
                    *kinds.entry(k.as_str()).or_default() += n;
                }
            }
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            return Err(StepError::Failed(format!(
                "{failed} of {total} requests failed ({:.0}%, above the workload's max_failed of {:.0}%: {}); \
                 the first errors are in results/<run>/requests.csv, the statistics in analysis/<run>/",
                100.0 * failed as f64 / total as f64,
                100.0 * limit,
                kinds.join(", ")
            )));
        }
        let at = ctx.run_dirs().analysis;
        let at = at.strip_prefix(&ctx.workdir).unwrap_or(&at).display().to_string();
        Ok(Done::with_summary(format!("{at}/stats.json, {at}/report.html")))
    }
}
