//! A harness file (`harnesses/*.yaml`): what generates load and how it is measured.
//!
//! ```yaml
//! kind: builtin
//! scrape_every: 2s
//! gpu: { source: auto, every: 1s }   # or { source: dcgm, exporter: k8s://gpu-operator/nvidia-dcgm-exporter:9400 }
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
pub(crate) struct Harness {
    /// Free text shown in plans and reports.
    pub description: Option<String>,
    /// Which load generator.
    pub kind: HarnessKind,
    /// Interval between scrapes of the server's `/metrics` during the run.
    pub scrape_every: Secs,
    /// GPU telemetry while the load runs (utilisation, memory, power, clocks per GPU).
    pub gpu: GpuSettings,
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
            gpu: GpuSettings::default(),
            convention: Convention::Vllm,
            placement: Placement::Local,
            parallelism: 1,
            image: concat!("ghcr.io/benchflow/benchflow:", env!("CARGO_PKG_VERSION")).into(),
            vars: BTreeMap::new(),
        }
    }
}

/// Where GPU telemetry comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GpuSettings {
    /// `auto`: the DCGM exporter when `exporter` is given, else NVML when the endpoint is on this
    /// machine, else none; `nvml`: this machine's GPUs through the NVIDIA driver; `dcgm`: a DCGM
    /// exporter's metrics; `none`.
    pub source: GpuSource,
    /// Interval between samples.
    pub every: Secs,
    /// The DCGM exporter: `http://HOST:9400`, or `k8s://NAMESPACE/SERVICE:PORT` (through a
    /// port-forward, e.g. `k8s://gpu-operator/nvidia-dcgm-exporter:9400`).
    pub exporter: Option<String>,
}

impl Default for GpuSettings {
    fn default() -> Self {
        GpuSettings { source: GpuSource::Auto, every: Secs(1.0), exporter: None }
    }
}

/// The sources of GPU telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GpuSource {
    Auto,
    Nvml,
    Dcgm,
    /// No GPU telemetry.
    None,
}

/// By hand, for one mistake: YAML reads `off` (and `no`, `false`) as the boolean false, which
/// would otherwise be refused as "invalid type: boolean `false`"; the message says to write
/// `none`, at the file's line.
impl<'de> Deserialize<'de> for GpuSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const NAMES: &[&str] = &["auto", "nvml", "dcgm", "none"];
        struct Names;
        impl serde::de::Visitor<'_> for Names {
            type Value = GpuSource;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("one of auto, nvml, dcgm, none")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GpuSource, E> {
                match v {
                    "auto" => Ok(GpuSource::Auto),
                    "nvml" => Ok(GpuSource::Nvml),
                    "dcgm" => Ok(GpuSource::Dcgm),
                    "none" => Ok(GpuSource::None),
                    "off" | "no" | "false" | "disabled" => {
                        Err(E::custom(format!("gpu.source `{v}`: use `none` for no GPU telemetry")))
                    }
                    other => Err(E::unknown_variant(other, NAMES)),
                }
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<GpuSource, E> {
                Err(E::custom(if v {
                    "gpu.source is a boolean (YAML reads `on`, `yes`, `true` as true): use `auto`, `nvml` or `dcgm`"
                } else {
                    "gpu.source is a boolean (YAML reads `off`, `no`, `false` as false): use `none` for no GPU telemetry"
                }))
            }
        }
        d.deserialize_any(Names)
    }
}

/// The kinds: `Variant = "name"` (the name as harness files spell it), each with its doc.
/// An external tool's kind also has its adapter: one line in `harnesses::adapters!`, whose
/// exhaustive match makes a kind without one a compile error.
macro_rules! harness_kinds {
    ($($(#[doc = $doc:literal])+ $variant:ident = $name:literal,)+) => {
        /// The load generators.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        pub enum HarnessKind {
            $($(#[doc = $doc])+ #[serde(rename = $name)] $variant,)+
        }

        impl HarnessKind {
            /// Every kind, in the order listed.
            pub const ALL: &[HarnessKind] = &[$(HarnessKind::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(HarnessKind::$variant => $name,)+
                }
            }
        }
    };
}

harness_kinds! {
    /// benchflow's own load generator, in process.
    Builtin = "builtin",
    /// NVIDIA's aiperf, installed by benchflow (`benchflow tools install aiperf`).
    Aiperf = "aiperf",
    /// inference-perf, installed by benchflow (`benchflow tools install inference-perf`).
    InferencePerf = "inference-perf",
    /// GuideLLM, installed by benchflow (`benchflow tools install guidellm`: ~6 GB with torch).
    Guidellm = "guidellm",
    /// `vllm bench serve`, installed by benchflow (`benchflow tools install vllm`: ~9.4 GB with
    /// torch and CUDA libraries; it runs without a GPU).
    VllmBench = "vllm-bench",
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
