//! `harness`: the built-in load generator runs the workload against the endpoint; records go to
//! `results/`. A forced re-run first moves earlier results aside (nothing is overwritten).

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{Ctx, Done, StepError};
use crate::{loadgen, sim::config::Secs, spec::workload::Workload};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    pub endpoint: String,
    pub workload: Workload,
    /// Relative dataset paths are resolved against this directory.
    pub workload_dir: PathBuf,
    #[serde(default = "default_scrape")]
    pub scrape_every: Secs,
    /// The cluster, for a `k8s://` endpoint.
    #[serde(default)]
    pub cluster: crate::platform::kube::Target,
}

fn default_scrape() -> Secs {
    Secs(2.0)
}

impl Args {
    pub fn describe(&self) -> Vec<String> {
        let stages: Vec<String> = self
            .workload
            .stages
            .iter()
            .map(|s| {
                let until = match (s.duration, s.requests) {
                    (Some(d), _) => format!("{} s", d.0),
                    (None, Some(n)) => format!("{n} requests"),
                    (None, None) => String::new(),
                };
                format!("{} for {until}", s.label())
            })
            .collect();
        vec![format!("built-in load generator against {}: {}", self.endpoint, stages.join("; "))]
    }

    pub async fn run(self, ctx: &Ctx) -> Result<Done, StepError> {
        let results = ctx.workdir.join("results");
        if results.join("requests.csv").exists() {
            let aside = ctx.workdir.join(format!("results.before-{}", crate::workdir::run_id()));
            std::fs::rename(&results, &aside)
                .map_err(|e| StepError::Failed(format!("cannot move earlier results aside: {e}")))?;
            ctx.note(&format!("# earlier results moved to {}", aside.display()));
        }
        ctx.note(&format!("# {}", self.describe().join("\n# ")));
        let (endpoint, _forward) = super::http::local_url(&self.endpoint, &self.cluster).await?;
        let opts = loadgen::Options {
            endpoint,
            workload: self.workload,
            base_dir: self.workload_dir,
            results_dir: results,
            quiet: ctx.quiet,
            scrape_every: Duration::from_secs_f64(self.scrape_every.0.max(0.1)),
        };
        let info = loadgen::run(opts, ctx.cancelled()).await.map_err(|e| StepError::Failed(e.to_string()))?;
        let summary = format!(
            "{} requests ({} failed) against {}, model {}",
            info.records, info.failed, info.endpoint, info.model
        );
        ctx.note(&format!("# {summary}"));
        if info.interrupted {
            return Err(StepError::Interrupted(format!("{summary}; the records so far are kept")));
        }
        Ok(Done { summary, undo: None })
    }
}
