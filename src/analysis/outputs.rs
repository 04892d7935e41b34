//! The statistics outputs: `stats.json` (vllm bench serve's key names), `stats.txt` (for
//! people) and `summary.csv` (one row per stage).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use serde_json::{Map, Value, json};

use super::{Analysis, AnalysisError, Convention, StageStats, stats::Summary};

fn pkey(p: f64) -> String {
    if p.fract() == 0.0 { format!("p{}", p as u64) } else { format!("p{p}") }
}

impl StageStats {
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

    /// The stage as vllm bench serve's result keys (plus `stage`, `label`, failures by kind).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("stage".into(), json!(self.stage));
        m.insert("label".into(), json!(self.label));
        m.insert("duration".into(), json!(self.duration));
        m.insert("completed".into(), json!(self.completed));
        m.insert("failed".into(), json!(self.failed));
        m.insert("failed_by_kind".into(), json!(self.failed_by_kind));
        m.insert("total_input_tokens".into(), json!(self.total_input_tokens));
        m.insert("total_output_tokens".into(), json!(self.total_output_tokens));
        m.insert("estimated_token_requests".into(), json!(self.estimated_token_requests));
        m.insert("request_throughput".into(), json!(self.request_throughput));
        m.insert("request_goodput".into(), json!(self.request_goodput));
        m.insert("output_throughput".into(), json!(self.output_throughput));
        m.insert("total_token_throughput".into(), json!(self.total_token_throughput));
        m.insert("max_output_tokens_per_s".into(), json!(self.max_output_tokens_per_s));
        m.insert("max_concurrent_requests".into(), json!(self.max_concurrent_requests));
        for (name, s) in [
            ("ttft", &self.ttft),
            ("tpot", &self.tpot),
            ("itl", &self.itl),
            ("e2el", &self.e2el),
            ("client_queue_time", &self.client_queue),
        ] {
            m.insert(format!("mean_{name}_ms"), json!(s.mean));
            m.insert(format!("median_{name}_ms"), json!(s.median));
            m.insert(format!("std_{name}_ms"), json!(s.std));
            for (p, v) in &s.percentiles {
                m.insert(format!("{}_{name}_ms", pkey(*p)), json!(v));
            }
        }
        Value::Object(m)
    }
}

pub(super) fn write(path: PathBuf, bytes: &[u8]) -> Result<(), AnalysisError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| AnalysisError::Write { path, source })
}

/// Writes `stats.json`, `stats.txt` and `summary.csv` into `out`.
pub fn write_outputs(out: &Path, a: &Analysis) -> Result<(), AnalysisError> {
    let out = out.to_path_buf();
    std::fs::create_dir_all(&out).map_err(|source| AnalysisError::Write { path: out.clone(), source })?;
    let tokens = a.stages.iter().map(|s| s.estimated_token_requests).sum::<u64>();
    let doc = json!({
        "convention": a.convention.as_str(),
        "definitions": match a.convention {
            Convention::Vllm => "vllm bench serve: TTFT to the first content chunk, ITL per chunk pooled over requests, TPOT = (E2EL - TTFT)/(output tokens - 1) per request, E2EL to the last content chunk, percentiles by linear interpolation, duration = stage dispatch start to last completion",
            Convention::Guidellm => "GuideLLM: TTFT to the first token, TPOT = time to last token / output tokens (weighted by tokens), ITL = (last - first token)/(tokens - 1) (weighted), E2EL = request latency to the stream's end, percentiles = inverse empirical CDF",
        },
        "token_counts": if tokens == 0 { "server usage".to_string() } else { format!("{tokens} successful requests had no server usage: their token counts are client estimates") },
        "endpoint": a.info.as_ref().map(|i| i.endpoint.clone()),
        "model": a.info.as_ref().map(|i| i.model.clone()),
        "interrupted": a.info.as_ref().is_some_and(|i| i.interrupted),
        "stages": a.stages.iter().map(StageStats::to_json).collect::<Vec<_>>(),
    });
    write(out.join("stats.json"), &serde_json::to_vec_pretty(&doc).unwrap_or_default())?;
    write(out.join("stats.txt"), render_text(a).as_bytes())?;
    let mut csv = String::from(
        "stage,label,duration_s,completed,failed,request_throughput,output_throughput,total_token_throughput,request_goodput,max_concurrent_requests",
    );
    for m in ["ttft", "tpot", "itl", "e2el"] {
        let _ = write!(csv, ",mean_{m}_ms,median_{m}_ms,p90_{m}_ms,p99_{m}_ms");
    }
    csv.push('\n');
    for s in &a.stages {
        let _ = write!(
            csv,
            "{},\"{}\",{:.3},{},{},{:.4},{:.2},{:.2},{},{}",
            s.stage,
            s.label.replace('"', "'"),
            s.duration,
            s.completed,
            s.failed,
            s.request_throughput,
            s.output_throughput,
            s.total_token_throughput,
            s.request_goodput.map(|g| format!("{g:.4}")).unwrap_or_default(),
            s.max_concurrent_requests
        );
        for m in [&s.ttft, &s.tpot, &s.itl, &s.e2el] {
            let _ = write!(csv, ",{:.3},{:.3},{:.3},{:.3}", m.mean, m.median, m.p(90.0), m.p(99.0));
        }
        csv.push('\n');
    }
    write(out.join("summary.csv"), csv.as_bytes())
}

/// The human-readable tables.
pub fn render_text(a: &Analysis) -> String {
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
            row(&mut t, "Request goodput (req/s):", format!("{g:.2}"));
        }
        row(&mut t, "Output token throughput (tok/s):", format!("{:.2}", s.output_throughput));
        row(&mut t, "Total token throughput (tok/s):", format!("{:.2}", s.total_token_throughput));
        row(&mut t, "Peak output tokens in 1 s:", format!("{:.0}", s.max_output_tokens_per_s));
        row(&mut t, "Max concurrent requests:", s.max_concurrent_requests.to_string());
        if s.estimated_token_requests > 0 {
            let _ = writeln!(
                t,
                "(token counts of {} requests are client estimates: the server sent no usage)",
                s.estimated_token_requests
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
                let _ = write!(t, "{v:>10.2}");
            }
            t.push('\n');
        }
    }
    t
}
