//! The statistics outputs: `stats.json` (vllm bench serve's key names), `stats.txt` (for
//! people) and `summary.csv` (one row per stage).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Analysis, AnalysisError, Convention, StageStats, stats::Summary};

fn pkey(p: f64) -> String {
    if p.fract() == 0.0 { format!("p{}", p as u64) } else { format!("p{p}") }
}

impl StageStats {
    /// Whether a latency metric was measured: not when requests completed but gave it no sample
    /// (ITL from a harness that records no chunk times, or of non-streamed requests). A stage
    /// where nothing completed keeps its zeros.
    pub fn measured(&self, m: &Summary) -> bool {
        m.count > 0 || self.completed == 0
    }

    /// The latency summaries in table order, with their display names.
    pub fn latency_rows(&self) -> [(&'static str, &Summary); 5] {
        [
            ("TTFT", &self.ttft),
            ("TPOT", &self.tpot),
            ("ITL", &self.itl),
            ("E2EL", &self.e2el),
            ("send delay", &self.client_queue),
        ]
    }
}

/// `stats.json`: the whole document, typed (its JSON Schema is `schemas/stats.schema.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct StatsDoc {
    /// Which metric definitions were applied.
    pub convention: Convention,
    /// Those definitions in words.
    pub definitions: String,
    /// Whether token counts are the server's (`usage`) or client estimates, in words.
    pub token_counts: String,
    pub endpoint: Option<String>,
    pub model: Option<String>,
    /// The run was interrupted: its last stage may be partial.
    pub interrupted: bool,
    /// The SLOs goodput (`request_goodput`) counted against, in ms by metric (`ttft`, `tpot`,
    /// `e2el`); absent without SLOs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub goodput_slo_ms: BTreeMap<String, f64>,
    pub stages: Vec<StageDoc>,
    /// What each engine behind a router served (from its `/metrics`); absent for one engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<super::ReplicaStats>,
    /// Which inputs the run used: the workload and harness by name and sha256, the `--set`s
    /// (the files in `results/<run>/inputs/`); absent for records without that record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<crate::workdir::inputs::RunInputs>,
}

/// One stage, with vllm bench serve's result key names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct StageDoc {
    pub stage: u32,
    pub label: String,
    /// Seconds: stage dispatch start to the last completion.
    pub duration: f64,
    pub completed: u64,
    pub failed: u64,
    /// Failed requests by kind (`http`, `timeout`, `aborted`, …).
    pub failed_by_kind: BTreeMap<String, u64>,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    /// Successful requests without server usage (their token counts are estimates).
    pub estimated_token_requests: u64,
    /// Requests per second.
    pub request_throughput: f64,
    /// Requests per second meeting every SLO (null without SLOs).
    pub request_goodput: Option<f64>,
    /// Output tokens per second.
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub max_output_tokens_per_s: f64,
    pub max_concurrent_requests: u64,
    /// GPU telemetry in the stage's window (absent without samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<super::gpu::GpuStats>,
    /// The prefix cache in the stage's window, in prompt tokens, from the engines' counters
    /// (summed over the engines behind a router); absent when they export none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_cache: Option<super::PrefixCache>,
    /// Latencies in ms: `{mean,median,std,p25,p50,p75,p90,p95,p99,…}_{ttft,tpot,itl,e2el,client_queue_time}_ms`.
    #[serde(flatten)]
    pub latencies_ms: BTreeMap<String, f64>,
    /// Latency metrics without a sample although requests completed (their keys read 0, as vllm
    /// bench serve writes them): `itl` from a harness that records no chunk times (GuideLLM), or
    /// of non-streamed requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmeasured: Vec<String>,
    /// A rate stage: the rate asked, the rate the requests were sent at, the highest rate
    /// within the Poisson noise, and `over_sent` when the tool sent more than asked (null for a
    /// concurrency stage).
    #[serde(default)]
    pub send_rate: Option<super::pace::SendRate>,
}

impl StageDoc {
    fn of(s: &StageStats) -> StageDoc {
        let mut latencies_ms = BTreeMap::new();
        let mut unmeasured = Vec::new();
        for (name, m) in [
            ("ttft", &s.ttft),
            ("tpot", &s.tpot),
            ("itl", &s.itl),
            ("e2el", &s.e2el),
            ("client_queue_time", &s.client_queue),
        ] {
            if !s.measured(m) {
                unmeasured.push(name.to_string());
            }
            latencies_ms.insert(format!("mean_{name}_ms"), m.mean);
            latencies_ms.insert(format!("median_{name}_ms"), m.median);
            latencies_ms.insert(format!("std_{name}_ms"), m.std);
            latencies_ms.insert(format!("min_{name}_ms"), m.min);
            latencies_ms.insert(format!("max_{name}_ms"), m.max);
            for (p, v) in &m.percentiles {
                latencies_ms.insert(format!("{}_{name}_ms", pkey(*p)), *v);
            }
        }
        StageDoc {
            stage: s.stage,
            label: s.label.clone(),
            duration: s.duration,
            completed: s.completed,
            failed: s.failed,
            failed_by_kind: s.failed_by_kind.clone(),
            total_input_tokens: s.total_input_tokens,
            total_output_tokens: s.total_output_tokens,
            estimated_token_requests: s.estimated_token_requests,
            request_throughput: s.request_throughput,
            request_goodput: s.request_goodput,
            output_throughput: s.output_throughput,
            total_token_throughput: s.total_token_throughput,
            max_output_tokens_per_s: s.max_output_tokens_per_s,
            max_concurrent_requests: s.max_concurrent_requests,
            gpu: s.gpu.clone(),
            prefix_cache: s.prefix_cache.clone(),
            unmeasured,
            latencies_ms,
            send_rate: s.send_rate.clone(),
        }
    }
}

impl StatsDoc {
    pub(crate) fn of(a: &Analysis) -> StatsDoc {
        let tokens = a.stages.iter().map(|s| s.estimated_token_requests).sum::<u64>();
        StatsDoc {
            convention: a.convention,
            definitions: match a.convention {
                Convention::Vllm => "vllm bench serve: TTFT to the first content chunk, ITL per chunk pooled over requests, TPOT = (E2EL - TTFT)/(output tokens - 1) per request, E2EL to the last content chunk, percentiles by linear interpolation, duration = stage dispatch start to last completion",
                Convention::Guidellm => "GuideLLM: TTFT to the first token, TPOT = time to last token / output tokens (weighted by tokens), ITL = (last - first token)/(tokens - 1) (weighted), E2EL = request latency to the stream's end, percentiles = inverse empirical CDF",
            }
            .to_string(),
            token_counts: if tokens == 0 {
                "server usage".to_string()
            } else {
                format!("{tokens} successful requests had no server usage: their token counts are client estimates")
            },
            endpoint: a.info.as_ref().map(|i| i.endpoint.clone()),
            model: a.info.as_ref().map(|i| i.model.clone()),
            interrupted: a.info.as_ref().is_some_and(|i| i.interrupted),
            goodput_slo_ms: super::slo_ms(&a.slo).into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            stages: a.stages.iter().map(StageDoc::of).collect(),
            replicas: a.replicas.clone(),
            inputs: a.info.as_ref().and_then(|i| i.inputs.clone()),
        }
    }
}

/// `(file name, pretty JSON)` of the `stats.json` schema.
#[cfg(test)]
pub(crate) fn schema() -> (&'static str, String) {
    let schema = schemars::schema_for!(StatsDoc);
    ("stats.schema.json", serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n")
}

pub(super) fn write(path: PathBuf, bytes: &[u8]) -> Result<(), AnalysisError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| AnalysisError::Write { path, source })
}

/// Writes `stats.json`, `stats.txt` and `summary.csv` into `out`.
pub(crate) fn write_outputs(out: &Path, a: &Analysis) -> Result<(), AnalysisError> {
    let out = out.to_path_buf();
    std::fs::create_dir_all(&out).map_err(|source| AnalysisError::Write { path: out.clone(), source })?;
    let doc = StatsDoc::of(a);
    write(out.join("stats.json"), &serde_json::to_vec_pretty(&doc).unwrap_or_default())?;
    write(out.join("stats.txt"), render_text(a).as_bytes())?;
    write(out.join("summary.csv"), &summary_csv(a))
}

/// `summary.csv`: one row per stage.
fn summary_csv(a: &Analysis) -> Vec<u8> {
    let mut header: Vec<String> = [
        "stage",
        "label",
        "duration_s",
        "completed",
        "failed",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "request_goodput",
        "max_concurrent_requests",
    ]
    .map(String::from)
    .to_vec();
    for m in ["ttft", "tpot", "itl", "e2el"] {
        header.extend(["mean", "median", "p90", "p99"].map(|s| format!("{s}_{m}_ms")));
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    let _ = csv.write_record(&header);
    for s in &a.stages {
        let mut row = vec![
            s.stage.to_string(),
            s.label.clone(),
            format!("{:.3}", s.duration),
            s.completed.to_string(),
            s.failed.to_string(),
            format!("{:.4}", s.request_throughput),
            format!("{:.2}", s.output_throughput),
            format!("{:.2}", s.total_token_throughput),
            s.request_goodput.map(|g| format!("{g:.4}")).unwrap_or_default(),
            s.max_concurrent_requests.to_string(),
        ];
        for m in [&s.ttft, &s.tpot, &s.itl, &s.e2el] {
            row.extend([m.mean, m.median, m.p(90.0), m.p(99.0)].map(|v| format!("{v:.3}")));
        }
        let _ = csv.write_record(&row);
    }
    csv.into_inner().unwrap_or_default()
}

/// The human-readable tables.
pub(crate) fn render_text(a: &Analysis) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "benchflow results ({} conventions)", a.convention.as_str());
    if let Some(i) = &a.info {
        let _ = writeln!(
            t,
            "endpoint {}  model {}  started {}{}",
            i.endpoint,
            i.model,
            i.started_at,
            if i.interrupted { "  (INTERRUPTED)" } else { "" }
        );
        if let Some(h) = &i.harness {
            let _ = writeln!(t, "load generated by {h}");
        }
    }
    for s in &a.stages {
        let _ = writeln!(t, "\n== stage {}: {} ==", s.stage, s.label);
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "{k:<36}{v:>14}");
        };
        row(&mut t, "Successful requests:", s.completed.to_string());
        let kinds: Vec<String> = s.failed_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        row(
            &mut t,
            "Failed requests:",
            if kinds.is_empty() { "0".into() } else { format!("{} ({})", s.failed, kinds.join(", ")) },
        );
        row(&mut t, "Duration (s):", format!("{:.2}", s.duration));
        row(&mut t, "Total input tokens:", s.total_input_tokens.to_string());
        row(&mut t, "Total generated tokens:", s.total_output_tokens.to_string());
        row(&mut t, "Request throughput (req/s):", format!("{:.2}", s.request_throughput));
        if let Some(g) = s.request_goodput {
            let _ = writeln!(
                t,
                "{:<36}{:>14}  ({})",
                "Request goodput (req/s):",
                format!("{g:.2}"),
                super::slo_said(&a.slo)
            );
        }
        row(&mut t, "Output token throughput (tok/s):", format!("{:.2}", s.output_throughput));
        row(&mut t, "Total token throughput (tok/s):", format!("{:.2}", s.total_token_throughput));
        row(&mut t, "Peak output tokens in 1 s:", format!("{:.0}", s.max_output_tokens_per_s));
        row(&mut t, "Max concurrent requests:", s.max_concurrent_requests.to_string());
        if let Some(c) = &s.prefix_cache {
            let rate = c.hit_rate.map_or("-".to_string(), |r| format!("{:.1} %", r * 100.0));
            let _ = writeln!(
                t,
                "{:<36}{rate:>14}  ({:.0} of {:.0} prompt tokens)",
                "Prefix-cache hit rate:", c.hits, c.queries
            );
        }
        if let Some(w) = s.send_rate.as_ref().and_then(|r| r.warning(s.stage)) {
            let _ = writeln!(t, "WARNING: {w}");
        }
        if s.estimated_token_requests > 0 {
            let _ = writeln!(
                t,
                "(token counts of {} requests are client estimates: no server usage was recorded for them)",
                s.estimated_token_requests
            );
        }
        if let Some(g) = &s.gpu {
            let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_string(), f);
            row(
                &mut t,
                "GPU utilisation mean / max:",
                format!(
                    "{} / {} ({} GPUs)",
                    opt(g.mean_utilization_pct, &|v| format!("{v:.0} %")),
                    opt(g.max_utilization_pct, &|v| format!("{v:.0} %")),
                    g.gpus
                ),
            );
            row(
                &mut t,
                "GPU memory peak (GiB):",
                opt(g.peak_memory_used_bytes, &|v| format!("{:.1}", v / 1073741824.0)),
            );
            row(&mut t, "GPU power mean (W):", opt(g.mean_power_w, &|v| format!("{v:.0}")));
            row(
                &mut t,
                "Energy per output token (J):",
                opt(g.energy_per_output_token_j, &|v| format!("{v:.3}")),
            );
        }
        let _ = write!(t, "{:<14}", "metric (ms)");
        for c in Summary::COLUMNS {
            let _ = write!(t, "{c:>10}");
        }
        t.push('\n');
        for (name, m) in s.latency_rows() {
            let _ = write!(t, "{name:<14}");
            for v in m.row() {
                match s.measured(m) {
                    true => write!(t, "{v:>10.2}"),
                    false => write!(t, "{:>10}", "-"),
                }
                .unwrap_or_default();
            }
            t.push('\n');
        }
    }
    if !a.replicas.is_empty() {
        let _ = writeln!(t, "{:=^50}", " Replicas (server counters) ");
        let _ = writeln!(t, "{:<14}{:>10}{:>26}", "replica", "requests", "prefix-cache hit rate");
        for r in &a.replicas {
            let rate = r.prefix_cache_hit_rate.map_or("-".to_string(), |h| format!("{:.1} %", h * 100.0));
            let _ = writeln!(t, "{:<14}{:>10.0}{rate:>26}", r.name, r.requests);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stats_schema_is_fresh() {
        let (name, text) = super::schema();
        crate::spec::schema::assert_fresh(name, &text);
    }
}
