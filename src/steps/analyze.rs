//! `analyze`: statistics, plots and the report from `results/` into `analysis/`.

use serde::{Deserialize, Serialize};

use super::{Ctx, Done, Step, StepError};
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
}

fn default_convention() -> Convention {
    Convention::Vllm
}

impl Step for Args {
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
        let at = ctx.run_dirs().analysis;
        let at = at.strip_prefix(&ctx.workdir).unwrap_or(&at).display().to_string();
        Ok(Done::with_summary(format!("{at}/stats.json, {at}/report.html")))
    }
}
