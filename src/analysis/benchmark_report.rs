//! The llm-d Benchmark Report, schema v0.2 (llm-d-benchmark's `benchmark_report`): one per
//! stage, `benchmark_report_v0.2_stage_N.yaml` and `.json` beside `stats.json`, so that results
//! from benchflow sit with llm-d's own in the same tooling. Built from the analysis, the run's
//! `run.json` and the work directory's `inputs/resolved.yaml` (the stack and the load as
//! resolved; never a secret: that file holds references only).
//!
//! [`validate`] checks a report against the v0.2 schema as published (required fields, units
//! per quantity, bounds, the component kinds, no unknown fields where the schema forbids them).

use std::path::Path;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Analysis, AnalysisError, StageStats, stats::Summary, write};
use crate::spec::{
    harness::HarnessKind,
    workload::{DatasetSpec, Load, Workload},
};

pub(crate) const VERSION: &str = "0.2";

/// The file names of stage `n`'s report.
pub(crate) fn file_name(stage: u32, ext: &str) -> String {
    format!("benchmark_report_v{VERSION}_stage_{stage}.{ext}")
}

/// Writes every stage's report into `out`, reading the stack and load from `workdir`.
pub(crate) fn write_all(
    out: &Path,
    workdir: &Path,
    results: &Path,
    a: &Analysis,
) -> Result<(), AnalysisError> {
    let resolved = std::fs::read_to_string(workdir.join("inputs/resolved.yaml"))
        .ok()
        .and_then(|t| serde_saphyr::from_str::<Value>(&t).ok())
        .map(|v| v["values"].clone())
        .unwrap_or(Value::Null);
    for s in &a.stages {
        let report = build(a, s, &resolved, results);
        write(out.join(file_name(s.stage, "json")), &serde_json::to_vec_pretty(&report).unwrap_or_default())?;
        write(
            out.join(file_name(s.stage, "yaml")),
            serde_saphyr::to_string(&report).unwrap_or_default().as_bytes(),
        )?;
    }
    Ok(())
}

fn cfg_id(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A flag list (`--x 1 --y`) as the report's `args` map.
fn args_map(argv: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        if a.starts_with('-') {
            match argv.get(i + 1).filter(|v| !v.starts_with("--")) {
                Some(v) => {
                    out.insert(a.clone(), json!(v));
                    i += 1;
                }
                None => {
                    out.insert(a.clone(), Value::Null);
                }
            }
        }
        i += 1;
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
        .collect()
}

/// The stack: each engine (an inference engine component each), and the router in front.
fn stack(values: &Value) -> Vec<Value> {
    let engine = &values["engine"];
    let k8s = values["platform"] == "kubernetes";
    let sim = engine["kind"] == "sim";
    let replicas = values["deploy"]["replicas"].as_u64().unwrap_or(1).max(1);
    let argv = if k8s { strings(&engine["args"]) } else { strings(&values["run"]["command"]) };
    let args = args_map(&argv);
    let tp = args.get("--tensor-parallel-size").and_then(|v| v.as_str()?.parse::<u64>().ok()).unwrap_or(1);
    let model = values["model"].as_str().or(engine["profile"].as_str()).unwrap_or("unknown");
    let (tool, version) = if sim {
        ("benchflow-sim".to_string(), env!("CARGO_PKG_VERSION").to_string())
    } else if k8s {
        let image = values["kubernetes"]["image"].as_str().unwrap_or("vllm");
        ("vllm".to_string(), image.to_string())
    } else {
        ("vllm".to_string(), "unknown".to_string())
    };
    let accelerator = if sim {
        format!("simulated ({})", engine["profile"].as_str().unwrap_or("?"))
    } else if k8s {
        values["kubernetes"]["gpu_product"].as_str().unwrap_or("nvidia.com/gpu").to_string()
    } else {
        "unknown".to_string()
    };
    let count = if k8s { values["kubernetes"]["gpus"].as_u64().unwrap_or(1).max(1) } else { tp.max(1) };
    let native = json!({ "args": args, "envars": engine["env"].clone() });
    let mut out: Vec<Value> = (0..replicas)
        .map(|i| {
            json!({
                "metadata": {
                    "kind": "inference_engine", "schema_version": "0.0.1",
                    "label": format!("engine-{i}"), "cfg_id": cfg_id(&native),
                },
                "standardized": {
                    "tool": tool, "tool_version": version, "role": "replica",
                    "model": { "name": model },
                    "accelerator": { "model": accelerator, "count": count,
                                     "parallelism": { "dp": 1, "ep": 1, "pp": 1, "tp": tp } },
                },
                "native": native,
            })
        })
        .collect();
    let router = &values["deploy"]["router"];
    if values["deploy"]["method"] == "router" {
        let kind = router["kind"].as_str().unwrap_or("vllm-router");
        let version = crate::tools::find(kind).map_or("unknown", |t| t.version);
        let native = json!({ "args": { "--policy": router["policy"].clone() } });
        out.push(json!({
            "metadata": { "kind": "generic", "schema_version": "0.0.1", "label": "router-0", "cfg_id": cfg_id(&native),
                          "description": "the router in front of the engines" },
            "standardized": { "tool": kind, "tool_version": version, "policy": router["policy"].clone() },
            "native": native,
        }));
    }
    out
}

fn length(distribution: &str, value: f64, range: Option<(u64, u64)>) -> Value {
    let mut v = json!({ "distribution": distribution, "value": value.max(1.0) });
    if let Some((lo, hi)) = range {
        v["min"] = json!(lo);
        v["max"] = json!(hi.max(1));
    }
    v
}

/// vLLM's window for a random length, after a fixed `prefix`.
fn window(len: u32, ratio: f64, prefix: u32) -> Value {
    let (l, p) = (f64::from(len), u64::from(prefix));
    if ratio <= 0.0 {
        return length("fixed", l + p as f64, None);
    }
    let (lo, hi) = ((l * (1.0 - ratio)).floor() as u64, (l * (1.0 + ratio)).ceil() as u64);
    length("random", l + p as f64, Some((lo + p, hi + p)))
}

/// The tool that generated the load and its version: an external harness's, as its adapter names
/// it (`vllm` for vllm-bench), else benchflow's own.
fn load_tool(values: &Value) -> (String, String) {
    let kind: Option<HarnessKind> = serde_json::from_value(values["harness"]["kind"].clone()).ok();
    match kind.and_then(crate::harnesses::tool) {
        Some(t) => (t.name.to_string(), t.version.to_string()),
        None => ("benchflow".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    }
}

/// The load of one stage, in the report's standard terms and natively.
fn load(values: &Value, s: &StageStats, results: &Path) -> Value {
    let w: Option<Workload> = serde_json::from_value(values["workload"].clone()).ok();
    let (tool, version) = load_tool(values);
    let measured_in = if s.completed > 0 { s.total_input_tokens as f64 / s.completed as f64 } else { 1.0 };
    let mut std = json!({ "tool": tool, "tool_version": version, "stage": s.stage });
    match w.as_ref().map(|w| &w.dataset) {
        Some(DatasetSpec::Random(r)) => {
            std["source"] = json!("random");
            std["input_seq_len"] = window(r.input_len, r.range_ratio, r.prefix_len);
            std["output_seq_len"] = window(r.output_len, r.range_ratio, 0);
            if r.prefix_len > 0 {
                std["prefix"] = json!({ "prefix_len": length("fixed", f64::from(r.prefix_len), None),
                                        "num_groups": 1, "num_users_per_group": 1, "num_prefixes": 1 });
            }
        }
        Some(DatasetSpec::SharedPrefix(p)) => {
            std["source"] = json!("random");
            std["input_seq_len"] = length("fixed", f64::from(p.prefix_len + p.suffix_len), None);
            std["output_seq_len"] = length("fixed", f64::from(p.output_len), None);
            std["prefix"] = json!({ "prefix_len": length("fixed", f64::from(p.prefix_len), None),
                                    "num_groups": p.groups.max(1), "num_users_per_group": p.prompts_per_group.max(1),
                                    "num_prefixes": 1 });
        }
        _ => {
            std["source"] = json!("sampled");
            std["input_seq_len"] = length("other", measured_in, None);
        }
    }
    let stage = w.as_ref().and_then(|w| w.stages.get(s.stage.saturating_sub(1) as usize));
    match stage.map(|st| st.load()) {
        Some(Load::Rate { rate, max_concurrency, .. }) => {
            std["rate_qps"] = json!(rate);
            if let Some(c) = max_concurrency {
                std["concurrency"] = json!(c.max(1));
            }
        }
        Some(Load::Concurrency(c)) => std["concurrency"] = json!(c.max(1)),
        None => {}
    }
    // Natively: the external tool's command line and configuration for this stage, else the
    // workload as benchflow ran it.
    let native_dir = results.join(format!("native/stage-{}", s.stage));
    let native = match std::fs::read_to_string(native_dir.join("command.sh")) {
        Ok(command) => {
            let config = std::fs::read_to_string(native_dir.join("config.yml"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            let mut n = json!({ "args": { "command": command.lines().last().unwrap_or("") } });
            if let Some(c) = config {
                n["config"] = c;
            }
            n
        }
        Err(_) => json!({ "config": values["workload"].clone() }),
    };
    json!({
        "metadata": { "schema_version": "0.0.1", "cfg_id": cfg_id(&native),
                      "description": w.and_then(|w| w.description).unwrap_or_else(|| s.label.clone()) },
        "standardized": std,
        "native": native,
    })
}

fn statistics(units: &str, m: &Summary) -> Value {
    json!({
        "units": units, "mean": m.mean, "stddev": m.std, "min": m.min, "max": m.max,
        "p0p1": m.p(0.1), "p1": m.p(1.0), "p5": m.p(5.0), "p10": m.p(10.0), "p25": m.p(25.0),
        "p50": m.median, "p75": m.p(75.0), "p90": m.p(90.0), "p95": m.p(95.0), "p99": m.p(99.0),
        "p99p9": m.p(99.9),
    })
}

fn build(a: &Analysis, s: &StageStats, values: &Value, results: &Path) -> Value {
    let info = a.info.as_ref();
    let run_id = values["run"]["id"].as_str().unwrap_or("run");
    let results_run = results.file_name().map_or("results".into(), |n| n.to_string_lossy().into_owned());
    // Run seconds as RFC 3339 times (the run's start parsed once).
    let start = info.and_then(|i| crate::workdir::parse_utc(&i.started_at));
    let at = |secs: f64| start.map(|s| crate::workdir::utc_at(s + secs));
    let mut time = json!({ "duration": format!("PT{:.3}S", s.duration.max(0.0)) });
    if let (Some(start), Some(end)) = (at(s.window.0), at(s.window.1)) {
        time["start"] = json!(start);
        time["end"] = json!(end);
    }
    let mut latency = Map::new();
    if s.completed > 0 {
        latency.insert("time_to_first_token".into(), statistics("ms", &s.ttft));
        latency.insert("request_latency".into(), statistics("ms", &s.e2el));
        if s.tpot.count > 0 {
            latency.insert("time_per_output_token".into(), statistics("ms/token", &s.tpot));
        }
        if s.itl.count > 0 {
            latency.insert("inter_token_latency".into(), statistics("ms/token", &s.itl));
        }
    }
    let mut requests = json!({ "total": s.completed + s.failed, "failures": s.failed });
    if s.completed > 0 {
        let n = s.completed as f64;
        requests["input_length"] = json!({ "units": "count", "mean": s.total_input_tokens as f64 / n });
        requests["output_length"] = json!({ "units": "count", "mean": s.total_output_tokens as f64 / n });
    }
    let d = s.duration.max(1e-9);
    let rate = |units: &str, v: f64| json!({ "units": units, "mean": v });
    let mut observability = json!({
        "scrape_info": { "interval_seconds": values["harness"]["scrape_every"].clone(), "method": "pull", "source": "benchflow" },
    });
    let metrics: Vec<Value> = ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"]
        .iter()
        .filter_map(|name| {
            let series = a.series.server.get(*name)?;
            let samples: Vec<Value> = series
                .iter()
                .filter(|(t, _)| (s.window.0..=s.window.1).contains(t))
                .filter_map(|(t, v)| Some(json!({ "ts": at(*t)?, "value": v })))
                .collect();
            (!samples.is_empty()).then(|| {
                json!({ "name": name, "component_id": "engines", "type": "gauge",
                        "unit": if name.ends_with("_perc") { "fraction" } else { "count" }, "samples": samples })
            })
        })
        .collect();
    if !metrics.is_empty() {
        observability["metrics"] = json!(metrics);
    }
    if let Some(g) = &s.gpu {
        observability["gpu"] = serde_json::to_value(g).unwrap_or(Value::Null);
    }
    json!({
        "version": VERSION,
        "run": { "uid": format!("{run_id}-{results_run}-stage-{}", s.stage), "eid": run_id, "time": time },
        "scenario": { "stack": stack(values), "load": load(values, s, results) },
        "results": {
            "request_performance": { "aggregate": {
                "requests": requests,
                "latency": latency,
                "throughput": {
                    "input_token_rate": rate("tokens/s", s.total_input_tokens as f64 / d),
                    "output_token_rate": rate("tokens/s", s.output_throughput),
                    "total_token_rate": rate("tokens/s", s.total_token_throughput),
                    "requests_rate": rate("queries/s", s.request_throughput),
                },
            } },
            "observability": observability,
        },
    })
}

/// Checks a report against the v0.2 schema: every problem, each with its JSON path.
pub fn validate(report: &Value) -> Vec<String> {
    let mut v = Check { errors: Vec::new() };
    v.report(report);
    v.errors
}

const TIME: &[&str] = &["ms", "s"];
/// The sections of a component and of the load.
const PARTS: &[&str] = &["metadata", "standardized", "native"];
const GEN_LATENCY: &[&str] = &["ms/token", "s/token"];
const STAT_KEYS: &[&str] = &[
    "units", "mean", "mode", "stddev", "min", "p0p1", "p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95",
    "p99", "p99p9", "max",
];

struct Check {
    errors: Vec<String>,
}

impl Check {
    fn fail(&mut self, path: &str, why: impl std::fmt::Display) {
        self.errors.push(format!("{path}: {why}"));
    }

    /// An object with only `allowed` keys (unless `open`) and every `required` one.
    fn object<'a>(
        &mut self,
        v: &'a Value,
        path: &str,
        allowed: &[&str],
        required: &[&str],
        open: bool,
    ) -> Option<&'a Map<String, Value>> {
        let Some(m) = v.as_object() else {
            self.fail(path, "must be an object");
            return None;
        };
        for k in required {
            if m.get(*k).is_none_or(Value::is_null) {
                self.fail(path, format!("`{k}` is required"));
            }
        }
        if !open {
            for k in m.keys().filter(|k| !allowed.contains(&k.as_str())) {
                self.fail(path, format!("`{k}` is not a field of the schema"));
            }
        }
        Some(m)
    }

    fn string(&mut self, v: Option<&Value>, path: &str) {
        if let Some(v) = v.filter(|v| !v.is_null())
            && !v.is_string()
        {
            self.fail(path, "must be a string");
        }
    }

    fn number(&mut self, v: Option<&Value>, path: &str, min: Option<f64>, strict: bool) {
        let Some(v) = v.filter(|v| !v.is_null()) else { return };
        match v.as_f64() {
            None => self.fail(path, "must be a number"),
            Some(x) if min.is_some_and(|m| if strict { x <= m } else { x < m }) => {
                self.fail(path, format!("{x} is below the minimum {}", min.unwrap_or_default()))
            }
            Some(_) => {}
        }
    }

    fn integer(&mut self, v: Option<&Value>, path: &str, min: i64) {
        let Some(v) = v.filter(|v| !v.is_null()) else { return };
        match v.as_i64() {
            Some(x) if x >= min => {}
            _ => self.fail(path, format!("must be a whole number ≥ {min}")),
        }
    }

    fn one_of(&mut self, v: Option<&Value>, path: &str, allowed: &[&str]) {
        if let Some(v) = v.filter(|v| !v.is_null())
            && !v.as_str().is_some_and(|s| allowed.contains(&s))
        {
            self.fail(path, format!("{v} is not one of {}", allowed.join(", ")));
        }
    }

    fn statistics(&mut self, v: Option<&Value>, path: &str, units: &[&str]) {
        let Some(v) = v.filter(|v| !v.is_null()) else { return };
        let Some(m) = self.object(v, path, STAT_KEYS, &["units", "mean"], false) else { return };
        self.one_of(m.get("units"), &format!("{path}.units"), units);
        for k in &STAT_KEYS[1..] {
            let min = if *k == "stddev" { Some(0.0) } else { None };
            self.number(m.get(*k), &format!("{path}.{k}"), min, false);
        }
    }

    fn report(&mut self, r: &Value) {
        let Some(m) =
            self.object(r, "$", &["version", "run", "scenario", "results"], &["run", "results"], false)
        else {
            return;
        };
        if m.get("version").and_then(Value::as_str) != Some(VERSION) {
            self.fail("$.version", format!("must be \"{VERSION}\""));
        }
        if let Some(run) = m.get("run")
            && let Some(run) = self.object(run, "$.run", &["uid", "eid", "cid", "time", "user"], &[], false)
        {
            for k in ["uid", "eid", "cid", "user"] {
                self.string(run.get(k), &format!("$.run.{k}"));
            }
            if let Some(t) = run.get("time")
                && let Some(t) = self.object(t, "$.run.time", &["start", "end", "duration"], &[], false)
            {
                for k in ["start", "end"] {
                    if let Some(s) = t.get(k).and_then(Value::as_str)
                        && crate::workdir::parse_utc(s).is_none()
                    {
                        self.fail(&format!("$.run.time.{k}"), "not an ISO-8601 time");
                    }
                }
                if t.get("duration").and_then(Value::as_str).is_some_and(|d| !d.starts_with("PT")) {
                    self.fail("$.run.time.duration", "not an ISO-8601 duration");
                }
            }
        }
        if let Some(sc) = m.get("scenario")
            && let Some(sc) = self.object(sc, "$.scenario", &["stack", "load"], &[], false)
        {
            for (i, c) in sc.get("stack").and_then(Value::as_array).into_iter().flatten().enumerate() {
                self.component(c, &format!("$.scenario.stack[{i}]"));
            }
            if let Some(l) = sc.get("load") {
                self.load(l);
            }
        }
        if let Some(res) = m.get("results") {
            let allowed = ["request_performance", "observability", "profiling"];
            if let Some(res) = self.object(res, "$.results", &allowed, &[], false) {
                if let Some(rp) = res.get("request_performance") {
                    self.performance(rp);
                }
                if let Some(o) = res.get("observability") {
                    self.object(o, "$.results.observability", &[], &[], true);
                }
            }
        }
    }

    fn component(&mut self, c: &Value, path: &str) {
        let Some(m) = self.object(c, path, PARTS, PARTS, false) else {
            return;
        };
        let meta_keys = ["kind", "schema_version", "label", "cfg_id", "description"];
        let kind = match m.get("metadata").and_then(|v| {
            self.object(v, &format!("{path}.metadata"), &meta_keys, &["kind", "label", "cfg_id"], false)
        }) {
            Some(meta) => {
                for k in meta_keys {
                    self.string(meta.get(k), &format!("{path}.metadata.{k}"));
                }
                meta.get("kind").and_then(Value::as_str).unwrap_or("").to_string()
            }
            None => String::new(),
        };
        let sp = format!("{path}.standardized");
        if let Some(std) = m.get("standardized") {
            match kind.as_str() {
                "generic" => {
                    if let Some(s) = self.object(std, &sp, &[], &["tool", "tool_version"], true)
                        && s.contains_key("kind")
                    {
                        self.fail(&sp, "`kind` belongs in the metadata");
                    }
                }
                "inference_engine" => {
                    let keys = ["tool", "tool_version", "role", "model", "accelerator"];
                    if let Some(s) = self.object(std, &sp, &keys, &keys, false) {
                        self.one_of(s.get("role"), &format!("{sp}.role"), &["replica", "prefill", "decode"]);
                        if let Some(model) = s.get("model") {
                            self.object(model, &format!("{sp}.model"), &["name"], &["name"], false);
                        }
                        if let Some(acc) = s.get("accelerator") {
                            let ap = format!("{sp}.accelerator");
                            let keys = ["model", "count", "parallelism"];
                            if let Some(a) = self.object(acc, &ap, &keys, &keys, false) {
                                self.integer(a.get("count"), &format!("{ap}.count"), 1);
                                if let Some(par) = a.get("parallelism") {
                                    let pp = format!("{ap}.parallelism");
                                    if let Some(p) =
                                        self.object(par, &pp, &["dp", "ep", "pp", "tp"], &[], false)
                                    {
                                        for k in ["dp", "ep", "pp", "tp"] {
                                            self.integer(p.get(k), &format!("{pp}.{k}"), 1);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                other => self.fail(
                    &format!("{path}.metadata.kind"),
                    format!("`{other}` is not a component kind (generic, inference_engine)"),
                ),
            }
        }
        if let Some(n) = m.get("native") {
            self.object(n, &format!("{path}.native"), &["args", "envars", "config"], &[], false);
        }
    }

    fn length(&mut self, v: Option<&Value>, path: &str) {
        let Some(v) = v.filter(|v| !v.is_null()) else { return };
        let keys = ["distribution", "value", "std_dev", "min", "max"];
        if let Some(m) = self.object(v, path, &keys, &["distribution", "value"], false) {
            self.one_of(
                m.get("distribution"),
                &format!("{path}.distribution"),
                &["fixed", "gaussian", "random", "uniform", "other"],
            );
            self.number(m.get("value"), &format!("{path}.value"), Some(1.0), false);
            self.number(m.get("std_dev"), &format!("{path}.std_dev"), Some(0.0), false);
            self.integer(m.get("min"), &format!("{path}.min"), 0);
            self.integer(m.get("max"), &format!("{path}.max"), 1);
        }
    }

    fn load(&mut self, l: &Value) {
        let path = "$.scenario.load";
        let Some(m) = self.object(l, path, PARTS, PARTS, false) else {
            return;
        };
        if let Some(meta) = m.get("metadata") {
            self.object(
                meta,
                &format!("{path}.metadata"),
                &["schema_version", "cfg_id", "description"],
                &[],
                false,
            );
        }
        if let Some(n) = m.get("native") {
            self.object(n, &format!("{path}.native"), &["args", "envars", "config"], &[], false);
        }
        let sp = format!("{path}.standardized");
        let keys = [
            "tool",
            "tool_version",
            "source",
            "stage",
            "input_seq_len",
            "output_seq_len",
            "prefix",
            "multi_turn",
            "rate_qps",
            "concurrency",
        ];
        let Some(s) = m.get("standardized").and_then(|v| {
            self.object(v, &sp, &keys, &["tool", "tool_version", "source", "input_seq_len"], false)
        }) else {
            return;
        };
        self.one_of(s.get("source"), &format!("{sp}.source"), &["random", "sampled"]);
        self.integer(s.get("stage"), &format!("{sp}.stage"), 0);
        self.length(s.get("input_seq_len"), &format!("{sp}.input_seq_len"));
        self.length(s.get("output_seq_len"), &format!("{sp}.output_seq_len"));
        self.number(s.get("rate_qps"), &format!("{sp}.rate_qps"), Some(0.0), true);
        self.integer(s.get("concurrency"), &format!("{sp}.concurrency"), 1);
        if let Some(p) = s.get("prefix") {
            let pp = format!("{sp}.prefix");
            let keys = ["prefix_len", "num_groups", "num_users_per_group", "num_prefixes"];
            if let Some(p) = self.object(p, &pp, &keys, &keys, false) {
                self.length(p.get("prefix_len"), &format!("{pp}.prefix_len"));
                for k in &keys[1..] {
                    self.integer(p.get(*k), &format!("{pp}.{k}"), 1);
                }
            }
        }
    }

    fn performance(&mut self, rp: &Value) {
        let path = "$.results.request_performance";
        let Some(rp) = self.object(rp, path, &["aggregate", "time_series"], &[], false) else { return };
        let Some(agg) = rp.get("aggregate") else { return };
        let ap = format!("{path}.aggregate");
        let Some(agg) = self.object(agg, &ap, &["requests", "latency", "throughput"], &[], false) else {
            return;
        };
        if let Some(r) = agg.get("requests") {
            let rq = format!("{ap}.requests");
            let keys = ["total", "failures", "incomplete", "input_length", "output_length"];
            if let Some(r) = self.object(r, &rq, &keys, &["total"], false) {
                for k in ["total", "failures", "incomplete"] {
                    self.integer(r.get(k), &format!("{rq}.{k}"), 0);
                }
                self.statistics(r.get("input_length"), &format!("{rq}.input_length"), &["count"]);
                self.statistics(r.get("output_length"), &format!("{rq}.output_length"), &["count"]);
            }
        }
        if let Some(l) = agg.get("latency") {
            let lp = format!("{ap}.latency");
            let keys = [
                ("time_to_first_token", TIME),
                ("normalized_time_per_output_token", GEN_LATENCY),
                ("time_per_output_token", GEN_LATENCY),
                ("inter_token_latency", GEN_LATENCY),
                ("request_latency", TIME),
            ];
            let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            if let Some(l) = self.object(l, &lp, &names, &[], false) {
                for (k, units) in keys {
                    self.statistics(l.get(k), &format!("{lp}.{k}"), units);
                }
            }
        }
        if let Some(t) = agg.get("throughput") {
            let tp = format!("{ap}.throughput");
            let keys = [
                ("input_token_rate", &["tokens/s"][..]),
                ("output_token_rate", &["tokens/s"][..]),
                ("total_token_rate", &["tokens/s"][..]),
                ("requests_rate", &["queries/s"][..]),
            ];
            let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            if let Some(t) = self.object(t, &tp, &names, &[], false) {
                for (k, units) in keys {
                    self.statistics(t.get(k), &format!("{tp}.{k}"), units);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small report in the shape of the published v0.2 example.
    fn example() -> Value {
        json!({
            "version": "0.2",
            "run": { "uid": "u", "eid": "e", "time": { "start": "2025-11-05T18:00:42.000Z", "duration": "PT49.9S" } },
            "scenario": {
                "stack": [
                    { "metadata": { "kind": "inference_engine", "schema_version": "0.0.1", "label": "vllm-0", "cfg_id": "c" },
                      "standardized": { "tool": "vllm", "tool_version": "v0.11.0", "role": "replica", "model": { "name": "m" },
                                        "accelerator": { "model": "H100", "count": 8,
                                                         "parallelism": { "dp": 1, "ep": 1, "pp": 1, "tp": 8 } } },
                      "native": { "args": { "--tensor-parallel-size": 8 } } },
                    { "metadata": { "kind": "generic", "label": "epp-0", "cfg_id": "d" },
                      "standardized": { "tool": "epp", "tool_version": "0.3", "anything": [1, 2] },
                      "native": { "config": { "kind": "EndpointPickerConfig" } } }
                ],
                "load": {
                    "metadata": { "schema_version": "0.0.1", "cfg_id": "a" },
                    "standardized": { "tool": "inference-perf", "tool_version": "0.3.0", "source": "sampled", "stage": 3,
                                      "input_seq_len": { "distribution": "fixed", "value": 2148 },
                                      "prefix": { "prefix_len": { "distribution": "fixed", "value": 1000 }, "num_groups": 32,
                                                  "num_users_per_group": 10, "num_prefixes": 8 },
                                      "rate_qps": 10, "concurrency": 64 },
                    "native": { "config": {} }
                }
            },
            "results": {
                "request_performance": { "aggregate": {
                    "requests": { "total": 500, "failures": 0, "input_length": { "units": "count", "mean": 2262.4 } },
                    "latency": { "time_to_first_token": { "units": "s", "mean": 0.036, "p99p9": 0.057 },
                                 "inter_token_latency": { "units": "s/token", "mean": 0.036 } },
                    "throughput": { "requests_rate": { "units": "queries/s", "mean": 9.8 } }
                } },
                "observability": { "scrape_info": { "interval_seconds": 15 } }
            }
        })
    }

    #[test]
    fn the_load_tool_is_the_harness_kinds_tool() {
        let tool = |kind: Value| load_tool(&json!({ "harness": { "kind": kind } }));
        let benchflow = ("benchflow".to_string(), env!("CARGO_PKG_VERSION").to_string());
        assert_eq!(tool(json!("builtin")), benchflow);
        assert_eq!(tool(Value::Null), benchflow);
        let vllm = crate::tools::find("vllm").unwrap();
        assert_eq!(tool(json!("vllm-bench")), ("vllm".to_string(), vllm.version.to_string()));
        let aiperf = crate::tools::find("aiperf").unwrap();
        assert_eq!(tool(json!("aiperf")), ("aiperf".to_string(), aiperf.version.to_string()));
    }

    #[test]
    fn the_published_shape_validates_and_each_violation_is_named() {
        assert_eq!(validate(&example()), Vec::<String>::new());
        let broken = |f: &dyn Fn(&mut Value)| {
            let mut r = example();
            f(&mut r);
            validate(&r)
        };
        let ttft = "/results/request_performance/aggregate/latency/time_to_first_token";
        assert_eq!(
            broken(&|r| r.pointer_mut(ttft).unwrap()["units"] = json!("ms/token")),
            [
                "$.results.request_performance.aggregate.latency.time_to_first_token.units: \"ms/token\" is not one of ms, s"
            ]
        );
        assert_eq!(broken(&|r| r["run"]["pid"] = json!("x")), ["$.run: `pid` is not a field of the schema"]);
        assert_eq!(
            broken(&|r| r["scenario"]["load"]["standardized"]["concurrency"] = json!(0)),
            ["$.scenario.load.standardized.concurrency: must be a whole number ≥ 1"]
        );
        assert_eq!(broken(&|r| r["version"] = json!("0.1")), ["$.version: must be \"0.2\""]);
        assert_eq!(
            broken(&|r| r["scenario"]["stack"][0]["standardized"]["role"] = json!("router")),
            ["$.scenario.stack[0].standardized.role: \"router\" is not one of replica, prefill, decode"]
        );
        let e = broken(&|r| {
            r.as_object_mut().unwrap().remove("results");
        });
        assert_eq!(e, ["$: `results` is required"]);
        // A generic component's standardized section is open, but names its tool.
        let e = broken(&|r| {
            r["scenario"]["stack"][1]["standardized"].as_object_mut().unwrap().remove("tool");
        });
        assert_eq!(e, ["$.scenario.stack[1].standardized: `tool` is required"]);
    }

    #[test]
    fn flags_become_the_args_map() {
        let argv: Vec<String> =
            ["vllm", "serve", "--port", "8000", "--enforce-eager", "--tensor-parallel-size", "2"]
                .map(String::from)
                .to_vec();
        let m = args_map(&argv);
        assert_eq!(
            Value::Object(m),
            json!({ "--port": "8000", "--enforce-eager": null, "--tensor-parallel-size": "2" })
        );
    }
}
