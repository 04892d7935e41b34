//! A harness file (`harnesses/*.yaml`): what generates load and how it is measured.
//!
//! ```yaml
//! kind: builtin
//! scrape_every: 2s
//! convention: vllm
//! ```

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::units::Secs;

/// A whole harness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Harness {
    /// Free text shown in plans and reports.
    pub description: Option<String>,
    /// Which load generator.
    pub kind: HarnessKind,
    /// Interval between scrapes of the server's `/metrics` during the run.
    pub scrape_every: Secs,
    /// Metric definitions for the statistics.
    pub convention: Convention,
    /// Where the load generator runs: `local` (here; through a port-forward on Kubernetes) or
    /// `cluster` (Kubernetes: an Indexed Job of `parallelism` pods next to the server).
    pub placement: Placement,
    /// Pods sharing the load when `placement: cluster` (each offers 1/N of every stage).
    pub parallelism: u32,
    /// benchflow's image for the harness pods (see Containerfile).
    pub image: String,
    /// Free variables for custom pipelines and templates (`{{ vars.NAME }}`).
    pub vars: BTreeMap<String, Value>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness {
            description: None,
            kind: HarnessKind::Builtin,
            scrape_every: Secs(2.0),
            convention: Convention::Vllm,
            placement: Placement::Local,
            parallelism: 1,
            image: concat!("ghcr.io/benchflow/benchflow:", env!("CARGO_PKG_VERSION")).into(),
            vars: BTreeMap::new(),
        }
    }
}

/// The load generators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HarnessKind {
    /// benchflow's own load generator, in process.
    Builtin,
}

/// Where the load generator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    Local,
    Cluster,
}

/// Which metric definitions to apply.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// vllm bench serve (the default): per-chunk ITL pooled, TPOT per request, E2EL to the
    /// last content chunk, linear-interpolated percentiles.
    Vllm,
    /// GuideLLM: token-weighted TPOT and ITL, E2EL to the stream's end, inverse-CDF percentiles.
    Guidellm,
}

impl Convention {
    pub fn as_str(self) -> &'static str {
        match self {
            Convention::Vllm => "vllm",
            Convention::Guidellm => "guidellm",
        }
    }
}
