//! `analysis/report.html`: one self-contained page (no network): the run's parameters, the
//! workload as written, the statistics per stage, and every chart inline as SVG.

use crate::workdir::layout;
use std::fmt::Write as _;

use super::{Analysis, plots::LineChart};

/// HTML-escapes text.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}\
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}th,td{padding:.3em .6em;border-bottom:1px solid #eee;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f6f6f6}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}\
.meta td{text-align:left}.note{color:#666;font-size:.9em}figure{margin:1.2em 0}figure svg{max-width:100%;height:auto}\
.warn{color:#a40}";

/// `(time, step, what)` of each `effect_lost` event at or after `since` (UTC text).
fn lost_during(events: &std::path::Path, since: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(events).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("\"effect_lost\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| {
            let field = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            (field("t").as_str() >= since).then(|| (field("t"), field("step"), field("what")))
        })
        .collect()
}

/// Renders the report; chart SVGs are read from `analysis/plots/`.
pub(crate) fn render(dirs: &super::Dirs, a: &Analysis, charts: &[LineChart]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>benchflow report</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(h, "<h1>benchflow report</h1>");
    meta_table(&mut h, dirs, a);
    warnings(&mut h, dirs, a);
    stages_table(&mut h, a);
    latency_table(&mut h, a);
    gpu_table(&mut h, a);
    replicas_table(&mut h, a);
    let _ = write!(h, "<h2>Charts</h2>");
    for c in charts {
        let svg = std::fs::read_to_string(dirs.out.join("plots").join(format!("{}.svg", c.name)))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<figure id=\"{}\">{svg}<figcaption class=note><a href=\"plots/{}.png\">PNG</a> · <a href=\"plots/{}.svg\">SVG</a></figcaption></figure>",
            c.name, c.name, c.name
        );
    }
    if let Ok(w) = std::fs::read_to_string(dirs.workdir.join(layout::WORKLOAD)) {
        let _ = write!(h, "<h2>Workload</h2><pre>{}</pre>", escape(&w));
    }
    let _ = writeln!(h, "</body></html>");
    h
}

/// The run's parameters: endpoint, model, start, what recorded the load, where the files are.
fn meta_table(h: &mut String, dirs: &super::Dirs, a: &Analysis) {
    let _ = write!(h, "<table class=meta>");
    let mut meta = |k: &str, v: String| {
        let _ = write!(h, "<tr><td><b>{}</b></td><td>{}</td></tr>", escape(k), escape(&v));
    };
    if let Some(i) = &a.info {
        meta("endpoint", i.endpoint.clone());
        meta("model", i.model.clone());
        meta("started (UTC)", i.started_at.clone());
        meta("benchflow", i.benchflow_version.clone());
        meta("requests recorded", format!("{} ({} failed)", i.records, i.failed));
        if i.interrupted {
            meta(
                "status",
                "INTERRUPTED: the statistics cover what was measured before the interruption".into(),
            );
        }
        if let Some(e) = &i.server_metrics_error {
            meta("server metrics", format!("{} scrapes; last error: {e}", i.server_metrics_scrapes));
        }
    }
    if let Some(g) = a.info.as_ref().and_then(|i| i.gpu.as_ref()) {
        meta("GPU telemetry", g.clone());
    }
    let harness = a.info.as_ref().and_then(|i| i.harness.clone());
    meta("load generator", harness.unwrap_or_else(|| "benchflow's built-in load generator".into()));
    meta("metric definitions", a.convention.as_str().to_string());
    meta("work directory", dirs.workdir.display().to_string());
    meta("records", dirs.results.display().to_string());
    let _ = write!(h, "</table>");
}

/// What a reader must know before the numbers: the engine went away during the run, token
/// counts that are the client's estimates.
fn warnings(h: &mut String, dirs: &super::Dirs, a: &Analysis) {
    // What a done step set up (the engine) went away during this run: said first.
    let started = a.info.as_ref().map(|i| i.started_at.clone()).unwrap_or_default();
    for (t, step, what) in lost_during(&dirs.workdir.join(layout::EVENTS), &started) {
        let _ = write!(
            h,
            "<p class=warn>The engine stopped during this run, at {t}: {} ({}). Requests after that \
             failed; the run was stopped there.</p>",
            escape(&what),
            escape(&step)
        );
    }
    for w in a.stages.iter().filter_map(|s| s.send_rate.as_ref().and_then(|r| r.warning(s.stage))) {
        let _ = write!(h, "<p class=warn>{}</p>", escape(&w));
    }
    let estimated: u64 = a.stages.iter().map(|s| s.estimated_token_requests).sum();
    if estimated > 0 {
        let _ = write!(
            h,
            "<p class=warn>Token counts of {estimated} requests are client estimates: the server reported no usage for them.</p>"
        );
    }
}

/// One row per stage: duration, completions and failures (by kind), throughput, concurrency.
fn stages_table(h: &mut String, a: &Analysis) {
    let _ = write!(
        h,
        "<h2>Results per stage</h2><table><tr><th>stage</th><th>duration s</th><th>completed</th><th>failed</th><th>req/s</th><th>goodput req/s</th><th>output tok/s</th><th>max concurrency</th></tr>"
    );
    for s in &a.stages {
        let failed = if s.failed_by_kind.is_empty() {
            "0".to_string()
        } else {
            format!(
                "{} ({})",
                s.failed,
                s.failed_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
            )
        };
        let _ = write!(
            h,
            "<tr><td>{} {}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
            s.stage,
            escape(&s.label),
            s.duration,
            s.completed,
            escape(&failed),
            s.request_throughput,
            s.request_goodput.map(|g| format!("{g:.2}")).unwrap_or_else(|| "-".into()),
            s.output_throughput,
            s.max_concurrent_requests
        );
    }
    let _ = write!(h, "</table>");
}

/// The latency summaries of every stage, and the definitions they follow.
fn latency_table(h: &mut String, a: &Analysis) {
    let _ = write!(h, "<h2>Latency (ms)</h2><table><tr><th>stage / metric</th>");
    for c in super::stats::Summary::COLUMNS {
        let _ = write!(h, "<th>{c}</th>");
    }
    let _ = write!(h, "</tr>");
    for s in &a.stages {
        for (name, m) in s.latency_rows() {
            let _ = write!(h, "<tr><td>{} · {name}</td>", s.stage);
            for v in m.row() {
                match s.measured(m) {
                    true => write!(h, "<td>{v:.2}</td>"),
                    false => write!(h, "<td>–</td>"),
                }
                .unwrap_or_default();
            }
            let _ = write!(h, "</tr>");
        }
    }
    let _ = write!(h, "</table><p class=note>");
    let _ = write!(
        h,
        "{}",
        escape(match a.convention {
            super::Convention::Vllm =>
                "Definitions of vllm bench serve: TTFT to the first content chunk; ITL between content chunks, pooled over requests; TPOT = (E2EL − TTFT)/(output tokens − 1) per request; E2EL to the last content chunk; percentiles by linear interpolation; duration from the stage's first dispatch to its last completion. Send delay: scheduled → sent (waiting for a concurrency slot, timer lateness, connection setup).",
            super::Convention::Guidellm =>
                "Definitions of GuideLLM: TTFT to the first token; TPOT = time to the last token / output tokens, weighted by tokens; ITL = (last − first token)/(tokens − 1), weighted by tokens − 1; E2EL = request latency to the stream's end; percentiles by the inverse empirical CDF.",
        })
    );
    let _ = write!(h, "</p>");
}

/// The GPUs of each stage (when telemetry was sampled): utilisation, memory, power, energy.
fn gpu_table(h: &mut String, a: &Analysis) {
    if !a.stages.iter().any(|s| s.gpu.is_some()) {
        return;
    }
    let _ = write!(
        h,
        "<h2>GPUs</h2><table><tr><th>stage</th><th>GPUs</th><th>utilisation mean / max</th><th>memory peak GiB</th><th>power mean W</th><th>energy J</th><th>J per output token</th><th>throttle reasons</th></tr>"
    );
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |x| format!("{x:.d$}"));
    for s in &a.stages {
        let Some(g) = &s.gpu else { continue };
        let _ = write!(
            h,
            "<tr><td>{} {}</td><td>{}</td><td>{} / {} %</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.stage,
            escape(&s.label),
            g.gpus,
            f(g.mean_utilization_pct, 0),
            f(g.max_utilization_pct, 0),
            f(g.peak_memory_used_bytes.map(|b| b / 1073741824.0), 1),
            f(g.mean_power_w, 0),
            f(g.energy_j, 0),
            f(g.energy_per_output_token_j, 3),
            g.throttle_reasons.map_or("-".to_string(), |r| if r == 0 {
                "none".into()
            } else {
                format!("{r:#x}")
            })
        );
    }
    let _ = write!(
        h,
        "</table><p class=note>Sampled while the load ran; energy is the power summed over the GPUs, integrated between samples in the stage's window.</p>"
    );
}

/// Each engine behind a router (when there are several): its requests and prefix-cache hits.
fn replicas_table(h: &mut String, a: &Analysis) {
    if a.replicas.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<h2>Replicas</h2><table><tr><th>replica</th><th>requests</th><th>prefix-cache queries (tokens)</th><th>hits (tokens)</th><th>hit rate</th></tr>"
    );
    for r in &a.replicas {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{}</td></tr>",
            escape(&r.name),
            r.requests,
            r.prefix_cache_queries,
            r.prefix_cache_hits,
            r.prefix_cache_hit_rate.map_or("-".to_string(), |x| format!("{:.1} %", x * 100.0))
        );
    }
    let _ = write!(
        h,
        "</table><p class=note>From each engine's own /metrics, scraped while the load ran: differences of its counters between the first and the last scrape (warm-up and smoke test excluded only if they came before the first scrape).</p>"
    );
}
