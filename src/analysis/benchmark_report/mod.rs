//! The llm-d Benchmark Report, schema v0.2 (llm-d-benchmark's `benchmark_report`, validated by
//! the `llmd-benchmark-report` package on PyPI): one per stage, beside `stats.json`, so that
//! benchflow's results sit with llm-d's own in the same tooling.
//!
//! Files: `benchmark_report_v0.2,_stage_N.yaml` (the comma is llm-d's: its analysis and agent
//! tools find reports by the glob `benchmark_report_v0.2,_*.yaml`) and the same report as JSON
//! under a name without the comma, `benchmark_report_v0.2_stage_N.json`.
//!
//! Every descriptive value comes from what ran: the model id the server listed, the engine's
//! version as its `/version` answered, its parallelism from its flags, the load generator and
//! its pinned version, the lengths as the workload drew them. The stack and the load are read
//! from the work directory's `inputs/resolved.yaml` (references only, never a secret).
//! [`schema`] holds the report's types: what serialises is in the schema's shape.

mod schema;

use std::path::Path;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use self::schema::*;
use super::{Analysis, AnalysisError, Convention, Metrics, StageStats, stats, write};
use crate::spec::{
    harness::HarnessKind,
    workload::{DatasetSpec, Load as StageLoad, Workload},
};

/// The YAML report of stage `n`, named so llm-d's globs find it.
pub(crate) fn yaml_name(stage: u32) -> String {
    format!("benchmark_report_v{VERSION},_stage_{stage}.yaml")
}

/// The JSON copy of stage `n`'s report.
pub(crate) fn json_name(stage: u32) -> String {
    format!("benchmark_report_v{VERSION}_stage_{stage}.json")
}

/// Writes every stage's report into `out`, reading the stack and load from `workdir`.
pub(crate) fn write_all(
    out: &Path,
    workdir: &Path,
    results: &Path,
    a: &Analysis,
) -> Result<(), AnalysisError> {
    let resolved = super::resolved_values(workdir);
    for s in &a.stages {
        let report = build(a, s, &resolved, results);
        write(out.join(json_name(s.stage)), &serde_json::to_vec_pretty(&report).unwrap_or_default())?;
        write(out.join(yaml_name(s.stage)), serde_saphyr::to_string(&report).unwrap_or_default().as_bytes())?;
    }
    Ok(())
}

fn cfg_id(v: &impl serde::Serialize) -> String {
    let text = serde_json::to_string(v).unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A flag list (`--x 1 --y --z=2`) as the report's `args` map; a flag given more than once
/// (`--set a=1 --set b=2`) keeps every value, in order, as a list.
fn args_map(argv: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |k: &str, v: Value| match out.get_mut(k) {
        // Values are text or null: an array is a flag already repeated.
        Some(Value::Array(list)) => list.push(v),
        Some(first) => *first = Value::Array(vec![first.take(), v]),
        None => {
            out.insert(k.to_string(), v);
        }
    };
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        if a.starts_with('-') {
            if let Some((k, v)) = a.split_once('=') {
                put(k, json!(v));
            } else {
                match argv.get(i + 1).filter(|v| !v.starts_with('-') || v.parse::<f64>().is_ok()) {
                    Some(v) => {
                        put(a, json!(v));
                        i += 1;
                    }
                    None => put(a, Value::Null),
                }
            }
        }
        i += 1;
    }
    out
}

/// vLLM's parallelism from its flags (long and short spellings), its defaults otherwise.
fn parallelism(args: &Map<String, Value>) -> Parallelism {
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| args.get(*n))
            .and_then(|v| v.as_str().and_then(|s| s.parse::<u64>().ok()).or_else(|| v.as_u64()))
            .filter(|n| *n >= 1)
    };
    let tp = get(&["--tensor-parallel-size", "-tp"]).unwrap_or(1);
    let dp = get(&["--data-parallel-size", "-dp"]).unwrap_or(1);
    let pp = get(&["--pipeline-parallel-size", "-pp"]).unwrap_or(1);
    let dp_local = get(&["--data-parallel-size-local", "-dpl"]).unwrap_or(dp);
    // With expert parallelism, vLLM spreads the experts over the TP × DP ranks.
    let ep =
        if args.contains_key("--enable-expert-parallel") || args.contains_key("-ep") { tp * dp } else { 1 };
    Parallelism { tp, dp, dp_local, workers: tp * pp * dp_local, ep, pp }
}

/// The simulator's parallelism: its profile's tensor parallelism (`llama-3.1-70b/h100-tp4`),
/// or the last `--set tp=N` among its flags; one replica of one data-parallel rank.
fn simulated(profile: Option<&str>, args: &Map<String, Value>) -> Parallelism {
    let from_profile =
        profile.and_then(|p| crate::sim::config::SimConfig::profile(p).ok()).map(|c| u64::from(c.tp));
    let sets: Vec<&str> = match args.get("--set") {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    };
    let from_flags = sets.iter().rev().find_map(|s| s.strip_prefix("tp=")?.trim().parse::<u64>().ok());
    let tp = from_flags.or(from_profile).filter(|t| *t >= 1).unwrap_or(1);
    Parallelism { tp, dp: 1, dp_local: 1, workers: tp, ep: 1, pp: 1 }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
        .collect()
}

/// The engine's tool and version: as its `/version` answered (the simulator answers
/// `benchflow-sim X`), else what benchflow knows it started (the simulator it is; on
/// Kubernetes the image, as llm-d's own converters write), else `unknown`.
fn engine_tool(values: &Value, reported: Option<&str>) -> (String, String) {
    let sim = values["engine"]["kind"] == "sim";
    if let Some(v) = reported.map(str::trim).filter(|v| !v.is_empty()) {
        return match v.strip_prefix("benchflow-sim ") {
            Some(v) => ("benchflow-sim".into(), v.to_string()),
            None => ("vllm".into(), v.to_string()),
        };
    }
    if sim {
        return ("benchflow-sim".into(), env!("CARGO_PKG_VERSION").into());
    }
    if !started(values) {
        return ("unknown".into(), "unknown".into());
    }
    if values["platform"] == "kubernetes"
        && let Some(image) = values["kubernetes"]["image"].as_str()
    {
        return ("vllm".into(), image.to_string());
    }
    ("vllm".into(), "unknown".into())
}

/// Whether benchflow started the engine (not `run --endpoint`, nor records without inputs).
fn started(values: &Value) -> bool {
    matches!(values["engine"]["kind"].as_str(), Some("sim" | "vllm"))
}

/// The stack: the engines (one component, `replicas` of them), and what sits in front.
fn stack(values: &Value, model: &str, reported: Option<&str>) -> Vec<Component> {
    let engine = &values["engine"];
    let k8s = values["platform"] == "kubernetes";
    let sim = engine["kind"] == "sim";
    let replicas = values["deploy"]["replicas"].as_u64().unwrap_or(1).clamp(1, u64::from(u32::MAX)) as u32;
    let argv = if k8s { strings(&engine["args"]) } else { strings(&values["run"]["command"]) };
    let args = args_map(&argv);
    let par = if sim { simulated(engine["profile"].as_str(), &args) } else { parallelism(&args) };
    let (tool, tool_version) = engine_tool(values, reported);
    let accelerator = if sim {
        format!("simulated ({})", engine["profile"].as_str().unwrap_or("?"))
    } else if k8s {
        values["kubernetes"]["gpu_product"].as_str().unwrap_or("nvidia.com/gpu").to_string()
    } else {
        "unknown".to_string()
    };
    let count = if k8s { values["kubernetes"]["gpus"].as_u64().unwrap_or(par.workers) } else { par.workers };
    let envars = engine["env"].as_object().cloned().filter(|m| !m.is_empty());
    let native = Native { args: Some(args), envars, config: None };
    let mut out = vec![Component {
        metadata: ComponentMetadata::new(
            "engine",
            cfg_id(&native),
            Some(match (sim, started(values)) {
                (true, _) => "benchflow's simulator of vLLM".into(),
                (false, true) => "vLLM".into(),
                (false, false) => match values["engine"]["url"].as_str() {
                    Some(url) => format!("a server benchflow did not start, at {url}"),
                    None => "a server benchflow did not start".into(),
                },
            }),
        ),
        standardized: Standardized::InferenceEngine(Engine {
            tool,
            tool_version,
            role: Role::Replica,
            replicas,
            model: ModelName { name: model.to_string() },
            accelerator: Accelerator { model: accelerator, count, parallelism: par },
        }),
        native,
    }];
    let deploy = &values["deploy"];
    match deploy["method"].as_str() {
        Some("router") => {
            let router = &deploy["router"];
            let kind = router["kind"].as_str().unwrap_or("vllm-router");
            let version = match router["image"].as_str() {
                Some(image) => image.to_string(),
                None => crate::tools::find(kind).map_or("unknown", |t| t.version).to_string(),
            };
            let native = Native {
                args: Some(args_map(&strings(&router["args"]))),
                envars: None,
                config: Some(json!({ "policy": router["policy"].clone() })),
            };
            let mut more = Map::new();
            more.insert("role".into(), json!("router"));
            more.insert("policy".into(), router["policy"].clone());
            out.push(Component {
                metadata: ComponentMetadata::new(
                    "router",
                    cfg_id(&native),
                    Some("the router in front of the engines".into()),
                ),
                standardized: Standardized::Generic { tool: kind.to_string(), tool_version: version, more },
                native,
            });
        }
        Some("llm-d") => {
            let g = &deploy["gateway"];
            let native = Native {
                args: Some(args_map(&strings(&g["epp_args"]))),
                envars: None,
                config: Some(
                    json!({ "scorers": g["scorers"].clone(), "failure_mode": g["failure_mode"].clone() }),
                ),
            };
            let mut more = Map::new();
            more.insert("role".into(), json!("endpoint picker"));
            out.push(Component {
                metadata: ComponentMetadata::new(
                    "epp",
                    cfg_id(&native),
                    Some("the inference gateway's endpoint picker".into()),
                ),
                standardized: Standardized::Generic {
                    tool: "gateway-api-inference-extension-epp".into(),
                    tool_version: g["epp_image"].as_str().unwrap_or("unknown").to_string(),
                    more,
                },
                native,
            });
            let class = g["class"].as_str().unwrap_or("unknown");
            let native =
                Native { args: None, envars: None, config: Some(json!({ "gatewayClassName": class })) };
            let mut more = Map::new();
            more.insert("role".into(), json!("gateway"));
            out.push(Component {
                metadata: ComponentMetadata::new("gateway", cfg_id(&native), None),
                standardized: Standardized::Generic {
                    tool: format!("inference_gateway ({class})"),
                    tool_version: "unknown".into(),
                    more,
                },
                native,
            });
        }
        _ => {}
    }
    out
}

/// vLLM's window for a random length `len ± ratio`, after a fixed `prefix`: uniform.
fn window(len: u32, ratio: f64, prefix: u32) -> Length {
    let (l, p) = (f64::from(len), u64::from(prefix));
    if ratio.is_nan() || ratio <= 0.0 {
        return Length::fixed(l + p as f64);
    }
    let (lo, hi) = ((l * (1.0 - ratio)).floor().max(0.0) as u64, (l * (1.0 + ratio)).ceil() as u64);
    Length {
        distribution: Distribution::Uniform,
        value: l + p as f64,
        min: Some(lo + p),
        max: Some((hi + p).max(1)),
    }
}

/// The tool that generated the load and its version, named as llm-d names it
/// (`vllm-benchmark` for `vllm bench serve`), else benchflow's own.
fn load_tool(values: &Value) -> (String, String) {
    let kind: Option<HarnessKind> = serde_json::from_value(values["harness"]["kind"].clone()).ok();
    match kind.and_then(|k| Some((k, crate::harnesses::tool(k)?))) {
        Some((HarnessKind::VllmBench, t)) => ("vllm-benchmark".to_string(), t.version.to_string()),
        Some((_, t)) => (t.name.to_string(), t.version.to_string()),
        None => ("benchflow".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    }
}

/// The measured lengths of a stage as a distribution (prompt files, real datasets).
fn measured(s: &stats::Summary) -> Length {
    let (min, max) = (s.min.max(0.0) as u64, s.max.max(1.0) as u64);
    let spread = s.count > 1 && s.min < s.max;
    Length {
        distribution: if spread { Distribution::Other } else { Distribution::Fixed },
        value: finite(s.mean).max(0.0),
        min: spread.then_some(min),
        max: spread.then_some(max),
    }
}

/// The load of one stage, in the report's standard terms and natively.
fn load(values: &Value, s: &StageStats, results: &Path) -> Load {
    let w: Option<Workload> = serde_json::from_value(values["workload"].clone()).ok();
    let (tool, tool_version) = load_tool(values);
    let parallelism =
        values["harness"]["parallelism"].as_u64().unwrap_or(1).clamp(1, u64::from(u32::MAX)) as u32;
    let (source, input_seq_len, output_seq_len, prefix) = match w.as_ref().map(|w| &w.dataset) {
        Some(DatasetSpec::Random(r)) => (
            Source::Random,
            window(r.input_len, r.range_ratio, r.prefix_len),
            Some(window(r.output_len, r.range_ratio, 0)),
            (r.prefix_len > 0).then(|| Prefix {
                prefix_len: Length::fixed(f64::from(r.prefix_len)),
                num_groups: 1,
                num_users_per_group: 1,
                num_prefixes: 1,
            }),
        ),
        Some(DatasetSpec::SharedPrefix(p)) => (
            Source::Random,
            Length::fixed(f64::from(p.prefix_len) + f64::from(p.suffix_len)),
            Some(Length::fixed(f64::from(p.output_len))),
            Some(Prefix {
                prefix_len: Length::fixed(f64::from(p.prefix_len)),
                num_groups: u64::from(p.groups.max(1)),
                num_users_per_group: u64::from(p.prompts_per_group.max(1)),
                num_prefixes: 1,
            }),
        ),
        _ => (
            Source::Sampled,
            measured(&s.input_len),
            (s.output_len.count > 0).then(|| measured(&s.output_len)),
            None,
        ),
    };
    let stage = w.as_ref().and_then(|w| w.stages.get(s.stage.saturating_sub(1) as usize));
    let (rate_qps, concurrency) = match stage.map(|st| st.load()) {
        // A ramp's rate is its mean over the stage.
        Some(StageLoad::Rate { rate, max_concurrency, .. }) => (
            stage.and_then(|st| st.asked_rate()).or(Some(rate)).filter(|r| r.is_finite() && *r > 0.0),
            max_concurrency.map(|c| u64::from(c).max(1)),
        ),
        Some(StageLoad::Concurrency(c)) => (None, Some(u64::from(c).max(1))),
        None => (None, None),
    };
    // Natively: the external tool's command line and configuration for this stage, else the
    // workload as benchflow ran it.
    let native_dir = results.join(format!("native/stage-{}", s.stage));
    let native = match std::fs::read_to_string(native_dir.join("command.sh")) {
        Ok(command) => {
            let config = std::fs::read_to_string(native_dir.join("config.yml"))
                .ok()
                .and_then(|t| serde_saphyr::from_str::<Value>(&t).ok());
            let mut args = Map::new();
            args.insert("command".into(), json!(command.lines().last().unwrap_or("")));
            Native { args: Some(args), envars: None, config }
        }
        Err(_) => Native { args: None, envars: None, config: Some(values["workload"].clone()) },
    };
    Load {
        metadata: LoadMetadata::new(cfg_id(&native), Some(s.label.clone())),
        standardized: LoadStandardized {
            tool,
            tool_version,
            parallelism,
            source,
            stage: s.stage,
            input_seq_len,
            output_seq_len,
            prefix,
            rate_qps,
            concurrency,
        },
        native,
    }
}

/// The samples of a gauge within `[a, b]` that are within `range` (a count or a fraction that
/// is negative, above its bound or not a number is a broken exporter's, not a measurement).
fn within(
    m: &Metrics,
    names: &[&str],
    (a, b): (f64, f64),
    range: std::ops::RangeInclusive<f64>,
) -> Vec<(f64, f64)> {
    let Some(series) = names.iter().find_map(|n| m.get(*n)) else { return Vec::new() };
    series.iter().filter(|(t, v)| (a..=b).contains(t) && range.contains(v)).copied().collect()
}

/// A gauge's samples within the stage as statistics.
fn gauge(points: &[(f64, f64)], units: Units, scale: f64) -> Option<Statistics> {
    let mut values: Vec<f64> = points.iter().map(|(_, v)| v * scale).collect();
    Statistics::of(units, &stats::vllm(&mut values), 1.0)
}

/// A counter's growth within the stage, when it is a number.
fn growth(m: &Metrics, name: &str, (a, b): (f64, f64)) -> Option<f64> {
    super::growth(m, name, a, b).filter(|g| g.is_finite())
}

const KV: &[&str] = &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"];
const RUNNING: &[&str] = &["vllm:num_requests_running"];
const WAITING: &[&str] = &["vllm:num_requests_waiting"];

/// One engine's metrics within a stage: aggregate and time series.
fn observed(
    m: &Metrics,
    window: (f64, f64),
    at: &dyn Fn(f64) -> Option<String>,
) -> (ResourceMetrics, Option<TimeSeriesResources>) {
    let count = 0.0..=f64::MAX;
    let (kv, running, waiting) = (
        within(m, KV, window, 0.0..=1.0),
        within(m, RUNNING, window, count.clone()),
        within(m, WAITING, window, count),
    );
    let hit_rate = super::PrefixCache::within(m, window.0, window.1)
        .and_then(|c| c.hit_rate)
        .map(|r| Statistics::mean(Units::Percent, 100.0 * r));
    let aggregate = ResourceMetrics {
        kv_cache_usage: gauge(&kv, Units::Fraction, 1.0),
        cache_hit_rate: hit_rate,
        running_requests: gauge(&running, Units::Count, 1.0),
        waiting_requests: gauge(&waiting, Units::Count, 1.0),
        preemptions: growth(m, "vllm:num_preemptions_total", window)
            .map(|g| Statistics::mean(Units::Count, g)),
        ..ResourceMetrics::default()
    };
    let series = |points: &[(f64, f64)], units: Units| {
        let series: Vec<Point> =
            points.iter().filter_map(|(t, v)| Some(Point { ts: at(*t)?, value: *v })).collect();
        (!series.is_empty()).then_some(TimeSeries { units, series })
    };
    let ts = TimeSeriesResources {
        kv_cache_usage: series(&kv, Units::Fraction),
        num_requests_running: series(&running, Units::Count),
        num_requests_waiting: series(&waiting, Units::Count),
    };
    let any =
        ts.kv_cache_usage.is_some() || ts.num_requests_running.is_some() || ts.num_requests_waiting.is_some();
    (aggregate, any.then_some(ts))
}

/// The engines' metrics (one entry per replica behind a router) and the GPUs'.
fn observability(
    a: &Analysis,
    s: &StageStats,
    raw: &str,
    at: &dyn Fn(f64) -> Option<String>,
) -> Option<Observability> {
    let mut components = Vec::new();
    let replicas: Vec<(Option<&String>, &Metrics)> = if a.series.replicas.is_empty() {
        vec![(None, &a.series.server)]
    } else {
        a.series.replicas.iter().map(|(name, m)| (Some(name), m)).collect()
    };
    for (name, m) in replicas {
        let (mut aggregate, time_series) = observed(m, s.window, at);
        if name.is_none()
            && let Some(g) = &s.gpu
        {
            aggregate.gpu_utilization =
                g.mean_utilization_pct.filter(|x| x.is_finite()).map(|mean| Statistics {
                    max: g.max_utilization_pct.filter(|x| x.is_finite()),
                    ..Statistics::mean(Units::Percent, mean)
                });
            aggregate.power_consumption =
                g.mean_power_w.filter(|x| x.is_finite()).map(|w| Statistics::mean(Units::Watts, w));
            aggregate.gpu_memory_usage = g
                .peak_memory_used_bytes
                .filter(|x| x.is_finite())
                .map(|b| Statistics { max: Some(b / GIB), ..Statistics::mean(Units::GiB, b / GIB) });
        }
        if aggregate.is_empty() && time_series.is_none() {
            continue;
        }
        components.push(ComponentObservability {
            component_label: "engine".into(),
            replica_id: name.cloned(),
            aggregate,
            time_series,
            raw_data_path: Some(raw.to_string()),
        });
    }
    (!components.is_empty()).then_some(Observability { components })
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn build(a: &Analysis, s: &StageStats, values: &Value, results: &Path) -> Report {
    let info = a.info.as_ref();
    let run_id = values["run"]["id"].as_str().unwrap_or("run");
    // Run seconds as RFC 3339 times (the run's start parsed once).
    let start = info.and_then(|i| crate::workdir::parse_utc(&i.started_at));
    let at = move |secs: f64| start.filter(|_| secs.is_finite()).map(|s| crate::workdir::utc_at(s + secs));
    let time = RunTime {
        start: at(s.window.0),
        end: at(s.window.1),
        duration: format!("PT{:.3}S", finite(s.duration).max(0.0)),
    };
    let model = info
        .map(|i| i.model.clone())
        .filter(|m| !m.is_empty())
        .or_else(|| values["model"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    let reported = info.and_then(|i| i.server_version.as_deref());
    // The scrapes, from the work directory (where the report's readers start).
    let run_dir = results.file_name().map_or("latest".into(), |n| n.to_string_lossy().into_owned());
    let raw = format!("results/{run_dir}/server_metrics.csv");
    let workload = &values["workload"];
    let description = workload["description"].as_str().map(str::to_string);
    let mut keywords = vec![format!("convention:{}", a.convention.as_str())];
    if let Some(h) = values["harness"]["kind"].as_str() {
        keywords.push(format!("harness:{h}"));
    }
    let d = s.duration.max(1e-9);
    let ms = |x: &stats::Summary, units| Statistics::of(units, x, 1.0);
    let mut latency = Latency::default();
    if s.completed > 0 {
        latency.time_to_first_token = ms(&s.ttft, Units::Ms);
        latency.request_latency = ms(&s.e2el, Units::Ms);
        latency.inter_token_latency = ms(&s.itl, Units::MsPerToken);
        // GuideLLM's TPOT counts the first token: the schema's NTPOT; vLLM's leaves it out.
        match a.convention {
            Convention::Vllm => latency.time_per_output_token = ms(&s.tpot, Units::MsPerToken),
            Convention::Guidellm => latency.normalized_time_per_output_token = ms(&s.tpot, Units::MsPerToken),
        }
    }
    let cancelled = s.failed_by_kind.get("cancelled").copied();
    Report {
        version: VERSION,
        run: Run {
            // Unique per report (two experiment points, or two work directories of one name,
            // share a run id): the records' place, the run's start and the stage, hashed.
            uid: cfg_id(&json!([
                std::fs::canonicalize(results).unwrap_or_else(|_| results.to_path_buf()),
                info.map(|i| i.started_at.as_str()),
                s.stage,
            ])),
            eid: run_id.to_string(),
            time,
            description,
            keywords,
        },
        scenario: Scenario { stack: stack(values, &model, reported), load: load(values, s, results) },
        results: Results {
            request_performance: RequestPerformance {
                aggregate: Aggregate {
                    requests: Requests {
                        total: s.completed + s.failed,
                        failures: s.failed,
                        incomplete: cancelled,
                        input_length: Statistics::of(Units::Count, &s.input_len, 1.0),
                        output_length: Statistics::of(Units::Count, &s.output_len, 1.0),
                    },
                    latency,
                    throughput: Throughput {
                        input_token_rate: Statistics::mean(
                            Units::TokensPerS,
                            s.total_input_tokens as f64 / d,
                        ),
                        output_token_rate: Statistics::mean(Units::TokensPerS, s.output_throughput),
                        total_token_rate: Statistics::mean(Units::TokensPerS, s.total_token_throughput),
                        request_rate: Statistics::mean(Units::QueriesPerS, s.request_throughput),
                    },
                },
            },
            observability: observability(a, s, &raw, &at),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_become_the_args_map_in_either_spelling() {
        let m =
            args_map(&argv("vllm serve m --port 8000 --enforce-eager --max-model-len=4096 --seed -1 -tp 2"));
        assert_eq!(
            Value::Object(m),
            json!({ "--port": "8000", "--enforce-eager": null, "--max-model-len": "4096", "--seed": "-1", "-tp": "2" })
        );
    }

    #[test]
    fn a_flag_given_twice_keeps_every_value() {
        let m = args_map(&argv("sim --set a=1 --set b=2 --set c=3 --port 1 -v -v"));
        assert_eq!(
            Value::Object(m),
            json!({ "--set": ["a=1", "b=2", "c=3"], "--port": "1", "-v": [null, null] })
        );
    }

    #[test]
    fn the_simulators_parallelism_is_its_profiles_or_its_flags() {
        let sim = |profile: &str, flags: &str| simulated(Some(profile), &args_map(&argv(flags))).tp;
        assert_eq!(sim("llama-3.1-70b/h100-tp4", "sim --port 1"), 4);
        assert_eq!(sim("tiny/cpu", "sim"), 1);
        assert_eq!(sim("tiny/cpu", "sim --set tp=2 --set itl=1ms"), 2);
        assert_eq!(sim("llama-3.1-70b/h100-tp4", "sim --set tp=8 --set tp=2"), 2);
        assert_eq!(sim("no/such", "sim --set tp=0"), 1);
    }

    #[test]
    fn parallelism_is_read_from_the_engines_flags() {
        let p = |s: &str| parallelism(&args_map(&argv(s)));
        let default = Parallelism { tp: 1, dp: 1, dp_local: 1, workers: 1, ep: 1, pp: 1 };
        assert_eq!(p("vllm serve m"), default);
        assert_eq!(
            p("--data-parallel-size 2"),
            Parallelism { dp: 2, dp_local: 2, workers: 2, ..default.clone() }
        );
        assert_eq!(
            p("--tensor-parallel-size=4 --pipeline-parallel-size 2"),
            Parallelism { tp: 4, pp: 2, workers: 8, ..default.clone() }
        );
        assert_eq!(
            p("-tp 2 -dp 4 -dpl 2 --enable-expert-parallel"),
            Parallelism { tp: 2, dp: 4, dp_local: 2, workers: 4, ep: 8, pp: 1 }
        );
        // Nonsense is vLLM's default, not a zero the schema refuses.
        assert_eq!(p("--tensor-parallel-size 0 --pipeline-parallel-size x"), default);
    }

    #[test]
    fn the_engine_is_named_as_it_answered_else_as_started() {
        let sim = json!({ "engine": { "kind": "sim" } });
        let k8s = json!({ "engine": { "kind": "vllm" }, "platform": "kubernetes",
                          "kubernetes": { "image": "vllm/vllm-openai:v0.11.0" } });
        let endpoint = json!({ "engine": { "kind": "endpoint" } });
        let t = |v: &Value, r: Option<&str>| engine_tool(v, r);
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(t(&sim, Some("benchflow-sim 9.9.9")), s("benchflow-sim", "9.9.9"));
        assert_eq!(t(&sim, None), s("benchflow-sim", env!("CARGO_PKG_VERSION")));
        assert_eq!(t(&k8s, Some("0.11.0")), s("vllm", "0.11.0"));
        assert_eq!(t(&k8s, None), s("vllm", "vllm/vllm-openai:v0.11.0"));
        assert_eq!(t(&endpoint, Some("0.9.2")), s("vllm", "0.9.2"));
        assert_eq!(t(&endpoint, None), s("unknown", "unknown"));
        assert_eq!(t(&Value::Null, Some(" ")), s("unknown", "unknown"));
    }

    #[test]
    fn the_load_tool_is_named_as_llm_d_names_it() {
        let tool = |kind: Value| load_tool(&json!({ "harness": { "kind": kind } }));
        let benchflow = ("benchflow".to_string(), env!("CARGO_PKG_VERSION").to_string());
        assert_eq!(tool(json!("builtin")), benchflow);
        assert_eq!(tool(Value::Null), benchflow);
        let vllm = crate::tools::find("vllm").unwrap();
        assert_eq!(tool(json!("vllm-bench")), ("vllm-benchmark".to_string(), vllm.version.to_string()));
        let aiperf = crate::tools::find("aiperf").unwrap();
        assert_eq!(tool(json!("aiperf")), ("aiperf".to_string(), aiperf.version.to_string()));
    }

    #[test]
    fn a_random_length_is_vllms_uniform_window() {
        assert_eq!(
            window(40, 0.5, 8),
            Length { distribution: Distribution::Uniform, value: 48.0, min: Some(28), max: Some(68) }
        );
        assert_eq!(window(40, 0.0, 0), Length::fixed(40.0));
        assert_eq!(window(40, f64::NAN, 0), Length::fixed(40.0));
        // A window reaching 0 tokens still has a maximum of at least 1.
        assert_eq!(window(0, 0.99, 0).max, Some(1));
    }

    /// Whatever the summaries hold, the statistics are JSON numbers (the schema's `mean` is a
    /// required number: NaN would be written as null) and a summary of nothing is left out.
    #[test]
    fn statistics_never_carry_a_number_that_is_not_one() {
        let mut rng = crate::rng::Rng::new(7);
        let specials = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, -0.0, 1e-300, 0.0];
        for _ in 0..2000 {
            let v = |rng: &mut crate::rng::Rng| {
                if rng.f64() < 0.3 {
                    specials[(rng.f64() * specials.len() as f64) as usize % specials.len()]
                } else {
                    rng.f64() * 1e6
                }
            };
            let s = stats::Summary {
                count: (rng.f64() * 3.0) as usize,
                mean: v(&mut rng),
                median: v(&mut rng),
                std: v(&mut rng),
                min: v(&mut rng),
                max: v(&mut rng),
                percentiles: stats::PERCENTILES.iter().map(|p| (*p, v(&mut rng))).collect(),
            };
            let scale = if rng.f64() < 0.5 { 1.0 } else { 1000.0 };
            match Statistics::of(Units::Ms, &s, scale) {
                None => assert!(s.count == 0 || !(s.mean * scale).is_finite(), "{s:?}"),
                Some(st) => {
                    let text = serde_json::to_string(&st).unwrap();
                    assert!(!text.contains("null"), "{text}");
                    let back: Value = serde_json::from_str(&text).unwrap();
                    for (k, x) in back.as_object().unwrap() {
                        if k != "units" {
                            assert!(x.as_f64().is_some_and(f64::is_finite), "{k}: {x}");
                        }
                    }
                    assert!(back["stddev"].as_f64().is_none_or(|x| x >= 0.0));
                }
            }
            let m = Statistics::mean(Units::TokensPerS, v(&mut rng));
            assert!(m.mean.is_finite());
        }
    }
}
