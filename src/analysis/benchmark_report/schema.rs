//! The parts of llm-d's Benchmark Report v0.2 that benchflow writes, as types: a report that
//! serialises is in the schema's shape by construction (no field the schema forbids, every
//! required one present, the enumerations' spellings, the units each quantity allows). The
//! field names and rules are those of the upstream model (`llmd_benchmark_report`'s
//! `schema_v0_2.py` and `schema_v0_2_components.py`, package 0.2.1), which the integration tests
//! load every report with.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::analysis::stats::Summary;

pub(crate) const VERSION: &str = "0.2";
/// The version of a component's and of the load's own schema.
const PART_SCHEMA: &str = "0.0.1";

#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub version: &'static str,
    pub run: Run,
    pub scenario: Scenario,
    pub results: Results,
}

#[derive(Debug, Serialize)]
pub(super) struct Run {
    pub uid: String,
    pub eid: String,
    pub time: RunTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub keywords: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct RunTime {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// ISO-8601 (`PT12.345S`).
    pub duration: String,
}

#[derive(Debug, Serialize)]
pub(super) struct Scenario {
    pub stack: Vec<Component>,
    pub load: Load,
}

#[derive(Debug, Serialize)]
pub(super) struct Component {
    pub metadata: ComponentMetadata,
    pub standardized: Standardized,
    pub native: Native,
}

#[derive(Debug, Serialize)]
pub(super) struct ComponentMetadata {
    pub schema_version: &'static str,
    pub label: String,
    pub cfg_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ComponentMetadata {
    pub(super) fn new(label: &str, cfg_id: String, description: Option<String>) -> ComponentMetadata {
        ComponentMetadata { schema_version: PART_SCHEMA, label: label.to_string(), cfg_id, description }
    }
}

/// A component's standardized section; `kind` is its discriminator.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Standardized {
    InferenceEngine(Engine),
    /// Anything without a schema of its own (a router, a gateway): its tool and version, and
    /// free fields.
    Generic {
        tool: String,
        tool_version: String,
        #[serde(flatten)]
        more: Map<String, Value>,
    },
}

#[derive(Debug, Serialize)]
pub(super) struct Engine {
    pub tool: String,
    pub tool_version: String,
    pub role: Role,
    /// At least 1.
    pub replicas: u32,
    pub model: ModelName,
    pub accelerator: Accelerator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Role {
    /// Serves prefill and decode (no disaggregation).
    Replica,
}

#[derive(Debug, Serialize)]
pub(super) struct ModelName {
    pub name: String,
}

#[derive(Debug, Serialize)]
pub(super) struct Accelerator {
    pub model: String,
    /// Accelerators one replica uses.
    pub count: u64,
    pub parallelism: Parallelism,
}

/// The engine's parallelism, from its flags (vLLM's defaults: 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Parallelism {
    pub tp: u64,
    pub dp: u64,
    pub dp_local: u64,
    pub workers: u64,
    /// At least 1.
    pub ep: u64,
    /// At least 1.
    pub pp: u64,
}

#[derive(Debug, Default, Serialize)]
pub(super) struct Native {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envars: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

#[derive(Debug, Serialize)]
pub(super) struct Load {
    pub metadata: LoadMetadata,
    pub standardized: LoadStandardized,
    pub native: Native,
}

#[derive(Debug, Serialize)]
pub(super) struct LoadMetadata {
    pub schema_version: &'static str,
    pub cfg_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl LoadMetadata {
    pub(super) fn new(cfg_id: String, description: Option<String>) -> LoadMetadata {
        LoadMetadata { schema_version: PART_SCHEMA, cfg_id, description }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct LoadStandardized {
    pub tool: String,
    pub tool_version: String,
    /// Load generators sharing the load (pods in the cluster); at least 1.
    pub parallelism: u32,
    pub source: Source,
    pub stage: u32,
    pub input_seq_len: Length,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_seq_len: Option<Length>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Prefix>,
    /// Above 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_qps: Option<f64>,
    /// At least 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
}

/// How the prompts' tokens were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Source {
    Random,
    Sampled,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Length {
    pub distribution: Distribution,
    /// At least 0.
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    /// At least 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

impl Length {
    pub(super) fn fixed(value: f64) -> Length {
        Length { distribution: Distribution::Fixed, value: finite(value).max(0.0), min: None, max: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Distribution {
    Fixed,
    Uniform,
    Other,
}

#[derive(Debug, Serialize)]
pub(super) struct Prefix {
    pub prefix_len: Length,
    /// At least 1, as the next two.
    pub num_groups: u64,
    pub num_users_per_group: u64,
    pub num_prefixes: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct Results {
    pub request_performance: RequestPerformance,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observability: Option<Observability>,
}

#[derive(Debug, Serialize)]
pub(super) struct RequestPerformance {
    pub aggregate: Aggregate,
}

#[derive(Debug, Serialize)]
pub(super) struct Aggregate {
    pub requests: Requests,
    pub latency: Latency,
    pub throughput: Throughput,
}

#[derive(Debug, Serialize)]
pub(super) struct Requests {
    pub total: u64,
    pub failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_length: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_length: Option<Statistics>,
}

/// Each latency in the units its quantity allows (`ms`, `ms/token`).
#[derive(Debug, Default, Serialize)]
pub(super) struct Latency {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_first_token: Option<Statistics>,
    /// Over every output token, the first included (GuideLLM's TPOT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized_time_per_output_token: Option<Statistics>,
    /// Over the tokens after the first (vLLM's TPOT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_per_output_token: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inter_token_latency: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_latency: Option<Statistics>,
}

#[derive(Debug, Serialize)]
pub(super) struct Throughput {
    pub input_token_rate: Statistics,
    pub output_token_rate: Statistics,
    pub total_token_rate: Statistics,
    pub request_rate: Statistics,
}

/// The units benchflow writes; each field's allowed set is the schema's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) enum Units {
    #[serde(rename = "count")]
    Count,
    #[serde(rename = "percent")]
    Percent,
    #[serde(rename = "fraction")]
    Fraction,
    #[serde(rename = "ms")]
    Ms,
    #[serde(rename = "ms/token")]
    MsPerToken,
    #[serde(rename = "tokens/s")]
    TokensPerS,
    #[serde(rename = "queries/s")]
    QueriesPerS,
    #[serde(rename = "GiB")]
    GiB,
    #[serde(rename = "Watts")]
    Watts,
}

/// A distribution's summary: the mean always, the rest when known; never NaN or infinite (the
/// schema's numbers are JSON numbers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Statistics {
    pub units: Units,
    pub mean: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stddev: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p0p1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p5: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p10: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p25: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p75: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p95: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99p9: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// `x`, or 0 when it is not a finite number.
pub(super) fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

impl Statistics {
    /// Just a mean (a rate over the stage); 0 stands for a value that is not a number.
    pub(super) fn mean(units: Units, mean: f64) -> Statistics {
        Statistics {
            units,
            mean: finite(mean),
            stddev: None,
            min: None,
            p0p1: None,
            p1: None,
            p5: None,
            p10: None,
            p25: None,
            p50: None,
            p75: None,
            p90: None,
            p95: None,
            p99: None,
            p99p9: None,
            max: None,
        }
    }

    /// The whole ladder of a summary scaled by `scale`; none for an empty summary or one whose
    /// mean is not a number. A percentile that is not a finite number is left out.
    pub(super) fn of(units: Units, s: &Summary, scale: f64) -> Option<Statistics> {
        let v = |x: f64| Some(x * scale).filter(|x| x.is_finite());
        let mean = v(s.mean).filter(|_| s.count > 0)?;
        Some(Statistics {
            units,
            mean,
            stddev: v(s.std).filter(|x| *x >= 0.0),
            min: v(s.min),
            p0p1: v(s.p(0.1)),
            p1: v(s.p(1.0)),
            p5: v(s.p(5.0)),
            p10: v(s.p(10.0)),
            p25: v(s.p(25.0)),
            p50: v(s.median),
            p75: v(s.p(75.0)),
            p90: v(s.p(90.0)),
            p95: v(s.p(95.0)),
            p99: v(s.p(99.0)),
            p99p9: v(s.p(99.9)),
            max: v(s.max),
        })
    }
}

/// Per-component metrics sampled from the servers (`components[]`).
#[derive(Debug, Serialize)]
pub(super) struct Observability {
    pub components: Vec<ComponentObservability>,
}

#[derive(Debug, Serialize)]
pub(super) struct ComponentObservability {
    /// A `scenario.stack[].metadata.label`.
    pub component_label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
    pub aggregate: ResourceMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_series: Option<TimeSeriesResources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_data_path: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub(super) struct ResourceMetrics {
    /// `fraction` (vLLM's gauge is 0..1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache_usage: Option<Statistics>,
    /// `percent`: prefix-cache hits over queries within the stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_hit_rate: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_memory_usage: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_utilization: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_consumption: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_requests: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_requests: Option<Statistics>,
    /// Preemptions within the stage (one value: the counter's growth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preemptions: Option<Statistics>,
}

impl ResourceMetrics {
    pub(super) fn is_empty(&self) -> bool {
        [
            &self.kv_cache_usage,
            &self.cache_hit_rate,
            &self.gpu_memory_usage,
            &self.gpu_utilization,
            &self.power_consumption,
            &self.running_requests,
            &self.waiting_requests,
            &self.preemptions,
        ]
        .iter()
        .all(|s| s.is_none())
    }
}

#[derive(Debug, Default, Serialize)]
pub(super) struct TimeSeriesResources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache_usage: Option<TimeSeries>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_requests_running: Option<TimeSeries>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_requests_waiting: Option<TimeSeries>,
}

#[derive(Debug, Serialize)]
pub(super) struct TimeSeries {
    pub units: Units,
    pub series: Vec<Point>,
}

#[derive(Debug, Serialize)]
pub(super) struct Point {
    /// ISO-8601.
    pub ts: String,
    pub value: f64,
}
