//! `analysis/report.html`: one self-contained page (no network): the run's parameters, the
//! workload as written, the statistics per stage, and every chart inline as SVG. The figures
//! are formatted here into a [`RunView`]; `templates/run.html` lays them out (see [`super::html`]).

use crate::workdir::layout;
use serde::Serialize;

use super::{Analysis, html, plots::LineChart};

/// What `run.html` shows, every figure formatted.
#[derive(Debug, Serialize)]
struct RunView {
    /// (name, value) rows of the parameters' table.
    meta: Vec<(String, String)>,
    /// The engine went away during the run: one entry per `effect_lost` event.
    lost: Vec<Lost>,
    /// Requests whose token counts are the client's estimates.
    estimated: u64,
    /// Rate stages that sent more than asked, each said in a sentence.
    over_sent: Vec<String>,
    /// One row of cells per stage.
    stages: Vec<Vec<String>>,
    latency_columns: [&'static str; 7],
    latency: Vec<Vec<String>>,
    definitions: &'static str,
    /// One row per stage with GPU telemetry (empty: no GPU table).
    gpus: Vec<Vec<String>>,
    /// The SLOs goodput counted against (`TTFT ≤ 200 ms, …`; none: no goodput).
    goodput_slo: Option<String>,
    /// One row per stage whose engines export prefix-cache counters (empty: no table).
    prefix_cache: Vec<Vec<String>>,
    /// One row per engine behind a router (empty: no table).
    replicas: Vec<Vec<String>>,
    charts: Vec<Chart>,
    /// The workload file as written, when the work directory has it.
    workload: Option<String>,
    /// The run's analyses under other conventions (filled in by [`relink`]).
    others: Vec<Other>,
}

/// Another analysis of the same run, under another convention.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Other {
    /// The convention's name.
    name: String,
    /// Its report, relative to this one.
    href: String,
    /// The run's own analysis (the others are beside it).
    own: bool,
}

impl Other {
    pub(crate) fn own(name: &str, href: String) -> Other {
        Other { name: name.to_string(), href, own: true }
    }

    pub(crate) fn beside(name: &str, href: String) -> Other {
        Other { name: name.to_string(), href, own: false }
    }
}

/// What `conventions.html` renders: the links to the run's other analyses.
#[derive(Debug, Serialize)]
struct Links<'a> {
    others: &'a [Other],
}

const LINKS_START: &str = "<!-- conventions -->";
const LINKS_END: &str = "<!-- /conventions -->";

/// Rewrites the links to the run's other analyses in `report` (between the markers
/// `conventions.html` writes); a report without them (an older benchflow's) is left as it is.
pub(crate) fn relink(report: &std::path::Path, others: &[Other]) -> Result<(), super::AnalysisError> {
    let Ok(page) = std::fs::read_to_string(report) else { return Ok(()) };
    let block = html::render("conventions.html", "r", &Links { others })?;
    let (Some(a), Some(b)) = (page.find(LINKS_START), page.find(LINKS_END)) else { return Ok(()) };
    let (Some(na), Some(nb)) = (block.find(LINKS_START), block.find(LINKS_END)) else { return Ok(()) };
    if b < a {
        return Ok(());
    }
    let relinked = format!("{}{}{}", &page[..a], &block[na..nb], &page[b..]);
    if relinked == page {
        // Nothing to change (one analysis alone, or relinked already): not written again.
        return Ok(());
    }
    super::outputs::write(report.to_path_buf(), relinked.as_bytes())
}

#[derive(Debug, Serialize)]
struct Lost {
    time: String,
    step: String,
    what: String,
}

#[derive(Debug, Serialize)]
struct Chart {
    name: String,
    /// benchflow's own SVG, inlined unescaped.
    svg: String,
    /// Its PNG is (or will be) beside it: linked.
    png: bool,
}

/// `(time, step, what)` of each `effect_lost` event at or after `since` (UTC text).
fn lost_during(events: &std::path::Path, since: &str) -> Vec<Lost> {
    let text = std::fs::read_to_string(events).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("\"effect_lost\""))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| {
            let field = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            (field("t").as_str() >= since).then(|| Lost {
                time: field("t"),
                step: field("step"),
                what: field("what"),
            })
        })
        .collect()
}

/// Renders the report; chart SVGs are read from `analysis/plots/`.
pub(crate) fn render(
    dirs: &super::Dirs,
    a: &Analysis,
    charts: &[LineChart],
) -> Result<String, html::HtmlError> {
    html::render("run.html", "r", &view(dirs, a, charts))
}

fn view(dirs: &super::Dirs, a: &Analysis, charts: &[LineChart]) -> RunView {
    let started = a.info.as_ref().map(|i| i.started_at.clone()).unwrap_or_default();
    RunView {
        meta: meta(dirs, a),
        // What a done step set up (the engine) went away during this run: said first.
        lost: lost_during(&dirs.workdir.join(layout::EVENTS), &started),
        estimated: a.stages.iter().map(|s| s.estimated_token_requests).sum(),
        over_sent: a.stages.iter().filter_map(|s| s.send_rate.as_ref()?.warning(s.stage)).collect(),
        stages: stages(a),
        latency_columns: super::stats::Summary::COLUMNS,
        latency: latency(a),
        definitions: match a.convention {
            super::Convention::Vllm => {
                "Definitions of vllm bench serve: TTFT to the first content chunk; ITL between content chunks, pooled over requests; TPOT = (E2EL − TTFT)/(output tokens − 1) per request; E2EL to the last content chunk; percentiles by linear interpolation; duration from the stage's first dispatch to its last completion. Send delay: scheduled → sent (waiting for a concurrency slot, timer lateness, connection setup)."
            }
            super::Convention::Guidellm => {
                "Definitions of GuideLLM: TTFT to the first token; TPOT = time to the last token / output tokens, weighted by tokens; ITL = (last − first token)/(tokens − 1), weighted by tokens − 1; E2EL = request latency to the stream's end; percentiles by the inverse empirical CDF."
            }
        },
        gpus: gpus(a),
        goodput_slo: a.slo.is_set().then(|| super::slo_said(&a.slo)),
        prefix_cache: prefix_cache(a),
        replicas: replicas(a),
        charts: charts
            .iter()
            .map(|c| Chart {
                png: super::plots::pngs_drawn(&dirs.out.join("plots")),
                name: c.name.clone(),
                svg: std::fs::read_to_string(dirs.out.join("plots").join(format!("{}.svg", c.name)))
                    .unwrap_or_default(),
            })
            .collect(),
        workload: std::fs::read_to_string(dirs.workdir.join(layout::WORKLOAD)).ok(),
        others: Vec::new(),
    }
}

/// The run's parameters: endpoint, model, start, what recorded the load, where the files are.
fn meta(dirs: &super::Dirs, a: &Analysis) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut meta = |k: &str, v: String| rows.push((k.to_string(), v));
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
    rows
}

/// One row per stage: duration, completions and failures (by kind), throughput, concurrency.
fn stages(a: &Analysis) -> Vec<Vec<String>> {
    a.stages
        .iter()
        .map(|s| {
            let failed = if s.failed_by_kind.is_empty() {
                "0".to_string()
            } else {
                format!(
                    "{} ({})",
                    s.failed,
                    s.failed_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
                )
            };
            vec![
                format!("{} {}", s.stage, s.label),
                format!("{:.2}", s.duration),
                s.completed.to_string(),
                failed,
                format!("{:.2}", s.request_throughput),
                s.request_goodput.map(|g| format!("{g:.2}")).unwrap_or_else(|| "-".into()),
                format!("{:.1}", s.output_throughput),
                s.max_concurrent_requests.to_string(),
            ]
        })
        .collect()
}

/// The latency summaries of every stage (`–` where the stage did not measure one).
fn latency(a: &Analysis) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for s in &a.stages {
        for (name, m) in s.latency_rows() {
            let mut row = vec![format!("{} · {name}", s.stage)];
            row.extend(m.row().iter().map(|v| match s.measured(m) {
                true => format!("{v:.2}"),
                false => "–".to_string(),
            }));
            rows.push(row);
        }
    }
    rows
}

/// The GPUs of each stage (when telemetry was sampled): utilisation, memory, power, energy.
fn gpus(a: &Analysis) -> Vec<Vec<String>> {
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |x| format!("{x:.d$}"));
    a.stages
        .iter()
        .filter_map(|s| {
            let g = s.gpu.as_ref()?;
            Some(vec![
                format!("{} {}", s.stage, s.label),
                g.gpus.to_string(),
                format!("{} / {} %", f(g.mean_utilization_pct, 0), f(g.max_utilization_pct, 0)),
                f(g.peak_memory_used_bytes.map(|b| b / 1073741824.0), 1),
                f(g.mean_power_w, 0),
                f(g.energy_j, 0),
                f(g.energy_per_output_token_j, 3),
                g.throttle_reasons
                    .map_or("-".to_string(), |r| if r == 0 { "none".into() } else { format!("{r:#x}") }),
            ])
        })
        .collect()
}

/// The prefix cache of each stage (when the engines export its counters): prompt tokens looked
/// up, found, the hit rate.
fn prefix_cache(a: &Analysis) -> Vec<Vec<String>> {
    a.stages
        .iter()
        .filter_map(|s| {
            let c = s.prefix_cache.as_ref()?;
            Some(vec![
                format!("{} {}", s.stage, s.label),
                format!("{:.0}", c.queries),
                format!("{:.0}", c.hits),
                c.hit_rate.map_or("-".to_string(), |x| format!("{:.1} %", x * 100.0)),
            ])
        })
        .collect()
}

/// Each engine behind a router (when there are several): its requests and prefix-cache hits.
fn replicas(a: &Analysis) -> Vec<Vec<String>> {
    a.replicas
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                format!("{:.0}", r.requests),
                format!("{:.0}", r.prefix_cache_queries),
                format!("{:.0}", r.prefix_cache_hits),
                r.prefix_cache_hit_rate.map_or("-".to_string(), |x| format!("{:.1} %", x * 100.0)),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::analysis::{Convention, PrefixCache, ReplicaStats, Series, StageStats, gpu::GpuStats, stats};
    use crate::{spec::workload::Slo, units::Secs};

    const HOSTILE: &str = "<script>alert(\"x\")</script> & 'q'";

    /// What a reader of the page sees: the text with the entities minijinja writes undone.
    fn unescaped(h: &str) -> String {
        h.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }

    fn stage(n: u32, seed: f64) -> StageStats {
        let mut v: Vec<f64> = (1..=50).map(|i| seed * f64::from(i) * 1.37).collect();
        let s = stats::vllm(&mut v);
        StageStats {
            stage: n,
            label: format!("rate={n}/s {HOSTILE}"),
            window: (0.0, 10.0),
            duration: 9.8765 * seed,
            completed: 49,
            failed: 1,
            failed_by_kind: BTreeMap::from([("http".to_string(), 1)]),
            total_input_tokens: 1000,
            total_output_tokens: 2000,
            estimated_token_requests: 3,
            request_throughput: 4.98765 * seed,
            output_throughput: 203.456 * seed,
            total_token_throughput: 300.0,
            request_goodput: Some(4.4444),
            max_concurrent_requests: 7,
            max_output_tokens_per_s: 250.0,
            ttft: s.clone(),
            tpot: s.clone(),
            itl: s.clone(),
            e2el: s.clone(),
            input_len: s.clone(),
            output_len: s.clone(),
            client_queue: s,
            send_rate: None,
            prefix_cache: Some(PrefixCache { queries: 2000.0, hits: 840.0, hit_rate: Some(0.42) }),
            gpu: Some(GpuStats {
                gpus: 2,
                samples: 10,
                mean_utilization_pct: Some(87.4),
                max_utilization_pct: Some(99.0),
                peak_memory_used_bytes: Some(3.5 * 1073741824.0),
                memory_total_bytes: Some(160.0 * 1073741824.0),
                mean_power_w: Some(612.3),
                energy_j: Some(6123.0),
                energy_per_output_token_j: Some(3.0615),
                throttle_reasons: Some(4),
            }),
        }
    }

    /// The links between a run's analyses are rewritten in place, as often as one is added,
    /// and nothing else of the page changes; a page without the markers is left as it is.
    #[test]
    fn the_links_to_the_other_analyses_are_rewritten_between_their_markers_only() {
        let dir = std::env::temp_dir().join(format!("bf-relink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let page = dir.join("report.html");
        let a = Analysis {
            convention: Convention::Vllm,
            info: None,
            stages: vec![stage(1, 1.0)],
            series: Series::default(),
            replicas: Vec::new(),
            slo: Slo::default(),
        };
        let h = render(&super::super::Dirs::single(&dir), &a, &[]).unwrap();
        assert!(h.contains(LINKS_START) && h.contains(LINKS_END) && !h.contains("also analysed"));
        std::fs::write(&page, &h).unwrap();
        let hostile = Other::beside(HOSTILE, "conventions/x/report.html".into());
        for others in
            [vec![Other::beside("guidellm", "conventions/guidellm/report.html".into())], vec![hostile]]
        {
            relink(&page, &others).unwrap();
        }
        let after = std::fs::read_to_string(&page).unwrap();
        assert_eq!(after.matches("also analysed").count(), 1, "the last list only");
        assert!(!after.contains("guidellm conventions") && !after.contains("<script>"), "{after}");
        assert!(unescaped(&after).contains(&format!(">{HOSTILE} conventions</a>")));
        let outside = |p: &str| {
            let (a, b) = (p.find(LINKS_START).unwrap(), p.find(LINKS_END).unwrap());
            format!("{}{}", &p[..a], &p[b..])
        };
        assert_eq!(outside(&after), outside(&h));
        // An older benchflow's page: no markers, nothing rewritten.
        std::fs::write(&page, "<p>old</p>").unwrap();
        relink(&page, &[Other::own("vllm", "../../report.html".into())]).unwrap();
        assert_eq!(std::fs::read_to_string(&page).unwrap(), "<p>old</p>");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_report_shows_every_figure_of_the_analysis_and_escapes_what_users_named() {
        let dir = std::env::temp_dir().join(format!("bf-report-{}", std::process::id()));
        let dirs = super::super::Dirs::single(&dir);
        let workload = dir.join(layout::WORKLOAD);
        std::fs::create_dir_all(workload.parent().unwrap()).unwrap();
        std::fs::write(&workload, format!("description: {HOSTILE}\n")).unwrap();
        let mut info = crate::results::RunInfo::starting("http://h:1/".into(), HOSTILE.into());
        info.server_metrics_error = Some(format!("refused {HOSTILE}"));
        let a = Analysis {
            convention: Convention::Vllm,
            info: Some(info),
            stages: vec![stage(1, 1.0), stage(2, 2.5)],
            series: Series::default(),
            replicas: vec![ReplicaStats {
                name: format!("replica-0 {HOSTILE}"),
                requests: 120.0,
                prefix_cache_queries: 4096.0,
                prefix_cache_hits: 1024.0,
                prefix_cache_hit_rate: Some(0.25),
            }],
            slo: Slo { ttft: Some(Secs(0.2)), tpot: Some(Secs(0.0125)), e2el: None },
        };
        let h = render(&dirs, &a, &[]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        // Nothing a user named reaches the page as markup; all of it reaches it as text.
        assert!(!h.contains("<script>") && !h.contains("\"x\"") && !h.contains("& 'q'"), "{h}");
        let seen = unescaped(&h);
        assert_eq!(seen.matches(HOSTILE).count(), 10, "model, error, 2×3 stage labels, replica, workload");
        // Every figure of every stage, as stats.txt writes it.
        for s in &a.stages {
            for fig in [
                format!("{:.2}", s.duration),
                format!("{:.2}", s.request_throughput),
                format!("{:.1}", s.output_throughput),
                format!("{} (http 1)", s.failed),
            ] {
                assert!(seen.contains(&format!("<td>{fig}</td>")), "stage {}: {fig}", s.stage);
            }
            for (name, m) in s.latency_rows() {
                let cells: String = m.row().iter().map(|v| format!("<td>{v:.2}</td>")).collect();
                assert!(h.contains(&format!("<td>{} · {name}</td>{cells}", s.stage)), "{name}: {cells}");
            }
        }
        for fig in ["87 / 99 %", "3.5", "612", "6123", "3.062", "0x4", "120", "4096", "25.0 %", "4.44"] {
            assert!(seen.contains(&format!("<td>{fig}</td>")), "{fig}");
        }
        assert!(seen.contains("Token counts of 6 requests are client estimates"));
        // Goodput with the SLOs it counted against; each stage's prefix cache.
        assert!(seen.contains("<th>goodput req/s (TTFT ≤ 200 ms, TPOT ≤ 12.5 ms)</th>"), "{seen}");
        assert_eq!(seen.matches("<td>2000</td><td>840</td><td>42.0 %</td>").count(), 2);
        assert!(h.contains("<h2>GPUs</h2>") && h.contains("<h2>Replicas</h2>"));
    }
}
