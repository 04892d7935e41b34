//! Statistics from one harness run's records: `benchflow analyze DIR` and the end of every
//! `run`. Reads `results/<run>/` and writes `analysis/<run>/`.
//!
//! * [`read`](self::compute): one streaming pass over `requests.csv` (warm-up rows skipped),
//!   `run.json`, `server_metrics.csv`;
//! * `accumulate`: per stage only what the statistics need, then the stage's statistics;
//! * [`stats`]: distribution summaries under vllm bench serve's and GuideLLM's conventions;
//! * `outputs`: `stats.json` (vllm bench serve's key names; schema in `schemas/`), `stats.txt`
//!   (for people), `summary.csv` (one row per stage);
//! * [`plots`]: the charts in `plots/`; [`report`]: `report.html` (on [`html`]'s templates);
//! * [`benchmark_report`]: the llm-d Benchmark Report v0.2, one per stage;
//! * [`pace`]: whether a rate stage was sent at the rate asked (a tool sending more is flagged);
//! * `vllm_result`: `vllm bench serve`'s result file (`--save-result --save-detailed`), one per
//!   stage;
//! * `bootstrap`: the difference of a statistic between two samples, with its bootstrap
//!   interval (`compare`).

pub(crate) mod benchmark_report;
pub(crate) mod bootstrap;
pub(crate) mod gpu;
pub(crate) mod html;
pub(crate) mod pace;
pub(crate) mod percentile;
pub(crate) mod plots;
pub(crate) mod report;
pub(crate) mod stats;

mod accumulate;
mod dist;
mod outputs;
mod read;
mod vllm_result;

use crate::workdir::layout;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use self::outputs::write;
use self::stats::Summary;
pub(crate) use self::{
    outputs::{StatsDoc, render_text, write_outputs},
    read::compute,
};
pub use crate::spec::harness::Convention;
use crate::{results::RunInfo, spec::workload::Slo};

/// Why analysis failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("{path}:{line}: {why}")]
    Row { path: PathBuf, line: u64, why: String },
    #[error("failed to write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Plot(#[from] plots::PlotError),
    #[error(transparent)]
    Html(#[from] html::HtmlError),
}
/// Statistics of one stage.
#[derive(Debug, Clone)]
pub struct StageStats {
    pub stage: u32,
    pub label: String,
    /// (start, end) of the stage in run seconds.
    pub window: (f64, f64),
    pub duration: f64,
    pub completed: u64,
    pub failed: u64,
    pub failed_by_kind: BTreeMap<String, u64>,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    pub estimated_token_requests: u64,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub request_goodput: Option<f64>,
    pub max_concurrent_requests: u64,
    pub max_output_tokens_per_s: f64,
    pub ttft: Summary,
    pub tpot: Summary,
    pub itl: Summary,
    pub e2el: Summary,
    /// Scheduled → sent: waiting for a `max_concurrency` slot (vllm's client queue time), plus
    /// timer lateness and connection setup. Reported as `client_queue_time` in stats.json.
    pub client_queue: Summary,
    /// Prompt and output tokens per completed request (vllm bench serve's statistics).
    pub input_len: Summary,
    pub output_len: Summary,
    /// GPU telemetry in the stage's window (none without samples).
    pub gpu: Option<gpu::GpuStats>,
    /// A rate stage's sends against the rate asked (none for a concurrency stage, or when the
    /// records do not say what was asked).
    pub send_rate: Option<pace::SendRate>,
    /// The engines' prefix cache in the stage's window (none when they export no counters).
    pub prefix_cache: Option<PrefixCache>,
}

/// The analysis of a whole run.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub convention: Convention,
    pub info: Option<RunInfo>,
    pub stages: Vec<StageStats>,
    /// What the charts draw.
    pub series: Series,
    /// What each engine behind a router served, from its `/metrics` (none for one engine).
    pub replicas: Vec<ReplicaStats>,
    /// The SLOs goodput was counted against (none set: no goodput).
    pub slo: Slo,
}

/// What one engine behind a router served during the run: differences of its counters between
/// the first and the last scrape.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ReplicaStats {
    /// `replica-0`, …
    pub name: String,
    /// Requests finished (`vllm:request_success_total`, every finish reason).
    pub requests: f64,
    /// Prompt tokens looked up in the prefix cache (`vllm:prefix_cache_queries_total`).
    pub prefix_cache_queries: f64,
    /// Of those, tokens found there (`vllm:prefix_cache_hits_total`).
    pub prefix_cache_hits: f64,
    /// hits / queries (null without queries, or when the counters disagree: more hits than
    /// queries).
    pub prefix_cache_hit_rate: Option<f64>,
}

impl ReplicaStats {
    /// From one engine's scraped series, over the whole run.
    pub fn of(name: &str, series: &Metrics) -> ReplicaStats {
        let (all_from, all_to) = (f64::NEG_INFINITY, f64::INFINITY);
        let cache = PrefixCache::within(series, all_from, all_to);
        ReplicaStats {
            name: name.to_string(),
            requests: growth(series, "vllm:request_success_total", all_from, all_to).unwrap_or(0.0),
            prefix_cache_queries: cache.as_ref().map_or(0.0, |c| c.queries),
            prefix_cache_hits: cache.as_ref().map_or(0.0, |c| c.hits),
            prefix_cache_hit_rate: cache.and_then(|c| c.hit_rate),
        }
    }
}

/// What the engine's prefix cache did within an interval: prompt tokens looked up and found,
/// from the growth of vLLM's counters (`vllm:prefix_cache_queries_total`,
/// `vllm:prefix_cache_hits_total`; where only they are exported, their older names
/// `vllm:gpu_prefix_cache_*`) summed over the engines scraped.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct PrefixCache {
    /// Prompt tokens looked up in the prefix cache.
    pub queries: f64,
    /// Of those, tokens found there.
    pub hits: f64,
    /// hits / queries (null without queries, or when the counters disagree: more hits than
    /// queries).
    pub hit_rate: Option<f64>,
}

impl PrefixCache {
    /// The counters' growth over `[from, to]` (see [`growth`]); none when the engine does not
    /// export them (or they are not numbers).
    pub(crate) fn within(m: &Metrics, from: f64, to: f64) -> Option<PrefixCache> {
        let pair = |prefix: &str| {
            let g = |what: &str| {
                growth(m, &format!("{prefix}prefix_cache_{what}_total"), from, to).filter(|g| g.is_finite())
            };
            Some((g("queries")?, g("hits")?))
        };
        let (queries, hits) = pair("vllm:").or_else(|| pair("vllm:gpu_"))?;
        Some(PrefixCache {
            queries,
            hits,
            hit_rate: (queries > 0.0 && hits <= queries).then(|| hits / queries),
        })
    }
}

/// The SLOs goodput counted against, for people: `TTFT ≤ 200 ms, TPOT ≤ 50 ms`.
pub(crate) fn slo_said(slo: &Slo) -> String {
    slo_ms(slo)
        .iter()
        .map(|(k, ms)| format!("{} ≤ {} ms", k.to_uppercase(), ms_text(*ms)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The SLOs set, in ms, by metric (`ttft`, `tpot`, `e2el`), in that order.
pub(crate) fn slo_ms(slo: &Slo) -> Vec<(&'static str, f64)> {
    [("ttft", slo.ttft), ("tpot", slo.tpot), ("e2el", slo.e2el)]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?.0 * 1000.0)))
        .collect()
}

/// Milliseconds without trailing zeros: `200`, `0.5`, `12.25`.
fn ms_text(ms: f64) -> String {
    let t = format!("{ms:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Cumulative distribution points (value in ms, fraction ≤ value).
pub(crate) type Cdf = Vec<(f64, f64)>;

/// Per-stage latency distributions.
#[derive(Debug, Clone, Default)]
pub struct StageSeries {
    pub stage: u32,
    pub label: String,
    pub ttft: Cdf,
    pub itl: Cdf,
    pub e2el: Cdf,
}

/// Series of server metrics by metric name: (run seconds, value).
pub(crate) type Metrics = BTreeMap<String, Vec<(f64, f64)>>;

/// Data for the charts.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub stages: Vec<StageSeries>,
    /// Per second of run time: successful completions, output tokens (content chunks).
    pub completions_per_s: Vec<f64>,
    pub tokens_per_s: Vec<f64>,
    /// Requests in flight, sampled every 100 ms of run time.
    pub in_flight: Vec<f64>,
    /// Stage windows (start, end, stage) in run seconds.
    pub windows: Vec<(f64, f64, u32)>,
    /// Server metrics over time, by metric name: (run seconds, value), each the sum over the
    /// metric's label sets; over the engines behind a router, their sum (their mean for a
    /// `_perc` metric).
    pub server: Metrics,
    /// The same per engine behind a router (`replica-0`, …), when several were scraped.
    pub replicas: BTreeMap<String, Metrics>,
    /// GPU telemetry by GPU, then metric (`gpu.csv`).
    pub gpu: gpu::GpuSeries,
}

/// A CDF of `values` (seconds) in ms: exact below 2,000 values, else from a log-spaced
/// histogram of 1,000 bins (O(n), plenty for a chart).
/// How much a counter of the servers' `/metrics` (`results/server_metrics.csv`, summed over
/// the servers) grew over `[from, to]` (seconds on the run's clock, the records'):
/// from the last scrape at or before `from` to the first at or after `to` (the nearest ends
/// when none), so that it covers the interval whole. None when it was not scraped.
pub(crate) fn counter_growth_within(
    results: &std::path::Path,
    metric: &str,
    from: f64,
    to: f64,
) -> Option<f64> {
    growth(&read::combine(&read::read_server_metrics(results)), metric, from, to)
}

/// A counter's growth within `[from, to]` in scraped metrics: its value at the last scrape at or
/// before `from` (else the first) to the first at or after `to` (else the last).
pub(crate) fn growth(m: &Metrics, metric: &str, from: f64, to: f64) -> Option<f64> {
    let s = m.get(metric)?;
    let start = s.iter().rev().find(|p| p.0 <= from).or(s.first())?;
    let end = s.iter().find(|p| p.0 >= to).or(s.last())?;
    Some((end.1 - start.1).max(0.0))
}

pub(crate) fn cdf(values: &[f64]) -> Cdf {
    let n = values.len();
    if n == 0 {
        return Vec::new();
    }
    if n <= 2000 {
        let mut v: Vec<f64> = values.iter().map(|x| x * 1000.0).collect();
        v.sort_by(f64::total_cmp);
        return v.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64 / n as f64)).collect();
    }
    // A systematic sample of at most 200,000 values keeps this cheap for tens of millions of
    // chunk gaps; a chart cannot show the difference.
    let step = n.div_ceil(200_000);
    let values: Vec<f64> = values.iter().step_by(step).copied().collect();
    let n = values.len();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min).max(1e-7);
    let hi = values.iter().copied().fold(0.0, f64::max).max(lo * 1.0001);
    log_binned_cdf(lo, hi, n as u64, values.iter().map(|x| (*x, 1)))
}

/// A CDF over 1,000 log-spaced bins between `lo` and `hi` (seconds) of `n` values given as
/// (value, count): points (bin's upper edge in ms, share at or below it), empty bins left out.
pub(crate) fn log_binned_cdf(
    lo: f64,
    hi: f64,
    n: u64,
    values: impl Iterator<Item = (f64, u64)>,
) -> Vec<(f64, f64)> {
    const BINS: usize = 1000;
    let (llo, lhi) = (lo.ln(), hi.ln());
    let mut counts = vec![0u64; BINS];
    for (x, c) in values {
        let i = (((x.max(lo).ln() - llo) / (lhi - llo)) * BINS as f64) as usize;
        counts[i.min(BINS - 1)] += c;
    }
    let mut cum = 0;
    counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| {
            cum += c;
            ((llo + (i + 1) as f64 / BINS as f64 * (lhi - llo)).exp() * 1000.0, cum as f64 / n as f64)
        })
        .collect()
}

/// Where an analysis reads and writes.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The work directory (its `inputs/` are quoted in the report).
    pub workdir: PathBuf,
    /// One harness run's records (`requests.csv`, `run.json`, `server_metrics.csv`).
    pub results: PathBuf,
    /// Where the statistics, charts and report go.
    pub out: PathBuf,
}

impl Dirs {
    /// `DIR/results` → `DIR/analysis` (a directory holding one run's records directly).
    pub fn single(dir: &Path) -> Dirs {
        Dirs {
            workdir: dir.to_path_buf(),
            results: dir.join(layout::RESULTS),
            out: dir.join(layout::ANALYSIS),
        }
    }
}

/// The values of a work directory's resolved inputs (`inputs/resolved.yaml`: the stack, the
/// harness, the workload; references only, never a secret); null for records analysed without
/// their work directory.
///
/// The last text parsed is remembered with its values: an analysis asks for them once per
/// file it writes (the Benchmark Reports, vLLM's result files), and parsing the YAML each time
/// cost more than the rest of those files for a short run.
pub(crate) fn resolved_values(workdir: &Path) -> serde_json::Value {
    static LAST: std::sync::Mutex<Option<(String, serde_json::Value)>> = std::sync::Mutex::new(None);
    let Ok(text) = std::fs::read_to_string(workdir.join(layout::RESOLVED)) else {
        return serde_json::Value::Null;
    };
    let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((seen, values)) = last.as_ref()
        && *seen == text
    {
        return values.clone();
    }
    let values = serde_saphyr::from_str::<serde_json::Value>(&text)
        .ok()
        .map(|v| v["values"].clone())
        .unwrap_or(serde_json::Value::Null);
    *last = Some((text, values.clone()));
    values
}

/// Where a run's analyses under conventions other than its own go: `conventions/<name>/` of
/// its analysis directory (`analysis/<run>/conventions/guidellm/`), each a whole analysis.
pub(crate) const CONVENTIONS: &str = "conventions";

/// Analyses one harness run (reads its records, writes statistics, charts, report) into
/// `dirs.out`: the run's own analysis.
pub fn analyze(dirs: &Dirs, convention: Convention, slo: &Slo) -> Result<Analysis, AnalysisError> {
    let analysis = write_analysis(dirs, convention, slo)?;
    relink(&dirs.out)?;
    Ok(analysis)
}

/// Analyses one harness run under `convention` beside its own analysis (`dirs.out`, left as it
/// is): into `dirs.out/conventions/<name>/`, which it returns. The reports of the run's analyses
/// link each other.
pub(crate) fn analyze_beside(
    dirs: &Dirs,
    convention: Convention,
    slo: &Slo,
) -> Result<(Analysis, PathBuf), AnalysisError> {
    let out = dirs.out.join(CONVENTIONS).join(convention.as_str());
    let beside = Dirs { out: out.clone(), ..dirs.clone() };
    let analysis = write_analysis(&beside, convention, slo)?;
    relink(&dirs.out)?;
    Ok((analysis, out))
}

fn write_analysis(dirs: &Dirs, convention: Convention, slo: &Slo) -> Result<Analysis, AnalysisError> {
    // One pass over the records: the statistics, and the vLLM result files' arrays set aside.
    let mut arrays = vllm_result::Arrays::new(&dirs.out);
    let analysis = read::compute_into(&dirs.results, convention, slo, &mut arrays)?;
    write_outputs(&dirs.out, &analysis)?;
    benchmark_report::write_all(&dirs.out, &dirs.workdir, &dirs.results, &analysis)?;
    vllm_result::write_all(&dirs.out, &dirs.workdir, &dirs.results, &analysis, arrays)?;
    let charts = plots::render(&dirs.out.join("plots"), &analysis)?;
    let html = report::render(dirs, &analysis, &charts)?;
    write(dirs.out.join("report.html"), html.as_bytes())?;
    Ok(analysis)
}

/// Draws the chart PNGs left for later ([`plots::PngsLater`]: an experiment's points) in each
/// analysis of a work directory (`analysis/<run>/`, and the conventions beside it), from the
/// run's records; returns how many it drew.
pub(crate) fn draw_missing_pngs(workdir: &Path) -> Result<usize, AnalysisError> {
    let Ok(entries) = std::fs::read_dir(workdir.join(layout::ANALYSIS)) else { return Ok(0) };
    // Each run's own directory (`latest` is a link, not followed).
    let mut runs: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().to_string(), e.path()))
        .collect();
    runs.sort();
    let mut drawn = 0;
    for (run, out) in runs {
        let mut outs = vec![out.clone()];
        if let Ok(beside) = std::fs::read_dir(out.join(CONVENTIONS)) {
            let mut more: Vec<PathBuf> = beside.filter_map(Result::ok).map(|e| e.path()).collect();
            more.sort();
            outs.extend(more);
        }
        for out in outs {
            let plots = out.join("plots");
            if !plots::lacks_pngs(&plots) {
                continue;
            }
            let convention = convention_of(&out).unwrap_or(Convention::Vllm);
            let a = compute(&workdir.join(layout::RESULTS).join(&run), convention, &Slo::default())?;
            let charts = plots::missing_pngs(&plots, &a);
            plots::draw_pngs(&plots, &charts)?;
            drawn += charts.len();
        }
    }
    Ok(drawn)
}

/// The convention of the analysis in `out` (its `stats.json`), if there is one.
pub(crate) fn convention_of(out: &Path) -> Option<Convention> {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("stats.json")).ok()?).ok()?;
    serde_json::from_value(doc.get("convention")?.clone()).ok()
}

/// Rewrites the links between a run's analyses (its own in `main`, the others in
/// `main/conventions/<name>/`) in each of their `report.html`: every report links every other
/// one present.
fn relink(main: &Path) -> Result<(), AnalysisError> {
    let mut present: Vec<(Option<String>, PathBuf)> = Vec::new();
    if main.join("report.html").is_file() {
        present.push((None, main.to_path_buf()));
    }
    if let Ok(entries) = std::fs::read_dir(main.join(CONVENTIONS)) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| main.join(CONVENTIONS).join(n).join("report.html").is_file())
            .collect();
        names.sort();
        present.extend(names.into_iter().map(|n| (Some(n.clone()), main.join(CONVENTIONS).join(n))));
    }
    let own = convention_of(main).map_or("the run's own".to_string(), |c| c.as_str().to_string());
    for (this, dir) in &present {
        let others: Vec<report::Other> = present
            .iter()
            .filter(|(other, _)| other != this)
            .map(|(other, _)| match (this, other) {
                (None, Some(n)) => report::Other::beside(n, format!("{CONVENTIONS}/{n}/report.html")),
                (Some(_), Some(n)) => report::Other::beside(n, format!("../{n}/report.html")),
                (_, None) => report::Other::own(&own, "../../report.html".into()),
            })
            .collect();
        report::relink(&dir.join("report.html"), &others)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The values remembered are those of the text read now: a changed or removed file is read
    /// again, never answered from the last one.
    #[test]
    fn resolved_values_follow_the_file_as_it_changes() {
        let dir = std::env::temp_dir().join(format!("bf-resolved-{}", std::process::id()));
        let file = dir.join(super::layout::RESOLVED);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "values: { model: a, n: 1 }\n").unwrap();
        assert_eq!(super::resolved_values(&dir)["model"], "a");
        assert_eq!(super::resolved_values(&dir)["n"], 1, "the same text: the same values");
        std::fs::write(&file, "values: { model: b, n: 1 }\n").unwrap();
        assert_eq!(super::resolved_values(&dir)["model"], "b");
        std::fs::remove_file(&file).unwrap();
        assert!(super::resolved_values(&dir).is_null());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A stage's preemptions are those of its own interval, not the run's (a warm-up or an
    /// earlier stage that preempted is not charged to it), covering the interval whole.
    #[test]
    fn a_counter_grows_by_what_it_gained_within_the_interval() {
        let dir = std::env::temp_dir().join(format!("bf-counter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rows: String =
            [(0.0, 0.0), (2.0, 107.0), (4.0, 107.0), (6.0, 120.0), (8.0, 217.0), (10.0, 217.0)]
                .iter()
                .map(|(t, v)| format!("{t},vllm:num_preemptions_total,,{v},endpoint\n"))
                .collect();
        std::fs::write(dir.join("server_metrics.csv"), format!("t_s,metric,labels,value,target\n{rows}"))
            .unwrap();
        let within = |a, b| super::counter_growth_within(&dir, "vllm:num_preemptions_total", a, b);
        assert_eq!(within(3.0, 4.0), Some(0.0), "from the scrape at 2 s to the one at 4 s");
        assert_eq!(within(3.0, 4.5), Some(13.0), "to the scrape at 6 s, which covers 4.5 s");
        assert_eq!(within(2.5, 3.5), Some(0.0));
        assert_eq!(within(4.0, 7.0), Some(110.0), "from 4 s to 8 s");
        assert_eq!(within(f64::NEG_INFINITY, f64::INFINITY), Some(217.0));
        assert_eq!(within(-1.0, 99.0), Some(217.0));
        assert_eq!(super::counter_growth_within(&dir, "vllm:other", 0.0, 1.0), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_replica_s_share_is_what_its_counters_grew_by() {
        let series = BTreeMap::from([
            ("vllm:request_success_total".to_string(), vec![(0.0, 4.0), (1.0, 9.0), (2.0, 14.0)]),
            ("vllm:prefix_cache_queries_total".to_string(), vec![(0.0, 100.0), (2.0, 1100.0)]),
            ("vllm:prefix_cache_hits_total".to_string(), vec![(0.0, 0.0), (2.0, 750.0)]),
        ]);
        let r = super::ReplicaStats::of("replica-0", &series);
        assert_eq!((r.requests, r.prefix_cache_queries, r.prefix_cache_hits), (10.0, 1000.0, 750.0));
        assert_eq!(r.prefix_cache_hit_rate, Some(0.75));
    }

    /// A stage's prefix cache is what the counters grew by within it, under vLLM's names or
    /// their older ones; none without the counters, no rate when they disagree.
    #[test]
    fn a_stage_s_prefix_cache_is_its_counters_growth() {
        let m = |names: [&str; 2], q: [f64; 3], h: [f64; 3]| -> Metrics {
            let at = |v: [f64; 3]| vec![(0.0, v[0]), (5.0, v[1]), (10.0, v[2])];
            BTreeMap::from([(names[0].to_string(), at(q)), (names[1].to_string(), at(h))])
        };
        let new = ["vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"];
        let old = ["vllm:gpu_prefix_cache_queries_total", "vllm:gpu_prefix_cache_hits_total"];
        let c =
            PrefixCache::within(&m(new, [100.0, 600.0, 1600.0], [0.0, 250.0, 1000.0]), 5.0, 10.0).unwrap();
        assert_eq!((c.queries, c.hits, c.hit_rate), (1000.0, 750.0, Some(0.75)));
        let c = PrefixCache::within(&m(old, [0.0, 400.0, 400.0], [0.0, 100.0, 100.0]), 0.0, 5.0).unwrap();
        assert_eq!((c.queries, c.hits, c.hit_rate), (400.0, 100.0, Some(0.25)));
        let c = PrefixCache::within(&m(new, [0.0, 10.0, 20.0], [0.0, 50.0, 50.0]), 0.0, 5.0).unwrap();
        assert_eq!(c.hit_rate, None, "more hits than queries");
        let c = PrefixCache::within(&m(new, [7.0, 7.0, 7.0], [0.0, 0.0, 0.0]), 0.0, 10.0).unwrap();
        assert_eq!((c.queries, c.hit_rate), (0.0, None), "nothing looked up");
        assert_eq!(PrefixCache::within(&Metrics::new(), 0.0, 10.0), None);
        let only_queries = BTreeMap::from([(new[0].to_string(), vec![(0.0, 1.0)])]);
        assert_eq!(PrefixCache::within(&only_queries, 0.0, 10.0), None);
        // Goodput's SLOs as people read them.
        let slo = Slo { ttft: Some(Secs(0.2)), tpot: None, e2el: Some(Secs(1.5e-4)) };
        assert_eq!(slo_said(&slo), "TTFT ≤ 200 ms, E2EL ≤ 0.15 ms");
    }

    use serde_json::Value;

    use super::*;
    use crate::units::Secs;

    /// (stage, sent, first, last, end, output_tokens, itl gaps in ms, error kind), times in ms.
    type TestRow<'a> = (u32, f64, Option<f64>, Option<f64>, f64, u64, &'a [u64], &'a str);

    /// Writes a requests.csv from rows.
    fn workdir(rows: &[TestRow]) -> tempdir::Dir {
        let dir = tempdir::Dir::new();
        std::fs::create_dir_all(dir.0.join("results")).unwrap();
        let mut csv = crate::results::HEADER.join(",") + "\n";
        for (i, (stage, sent, first, last, end, out, itl, err)) in rows.iter().enumerate() {
            let us = |ms: f64| format!("{:.3}", ms * 1000.0);
            let itl: Vec<String> = itl.iter().map(|g| (g * 1000).to_string()).collect();
            csv += &format!(
                "{stage},{i},0,{},{},{},{},{},{},10,{out},usage,200,{err},,{}\n",
                us(*sent),
                us(*sent),
                first.map(us).unwrap_or_default(),
                last.map(us).unwrap_or_default(),
                us(*end),
                itl.len() + usize::from(first.is_some()),
                itl.join(" ")
            );
        }
        std::fs::write(dir.0.join("results/requests.csv"), csv).unwrap();
        dir
    }

    mod tempdir {
        pub(super) struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Self {
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Dir(std::env::temp_dir().join(format!("benchflow-analysis-{}-{n}", std::process::id())))
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    // Request A: sent 0, chunks at 100, 110, 130 (3 tokens), stream end 135.
    // Request B: sent 50, chunks at 250, 270 (2 tokens), end 280.
    // Request C: sent 60, one token at 160, end 161.
    // Request D: failed (http), no tokens.
    fn vectors() -> tempdir::Dir {
        workdir(&[
            (1, 0.0, Some(100.0), Some(130.0), 135.0, 3, &[10, 20], ""),
            (1, 50.0, Some(250.0), Some(270.0), 280.0, 2, &[20], ""),
            (1, 60.0, Some(160.0), Some(160.0), 161.0, 1, &[], ""),
            (1, 70.0, None, None, 75.0, 0, &[], "http"),
        ])
    }

    #[test]
    fn vllm_definitions_on_hand_computed_vectors() {
        let dir = vectors();
        let a = compute(&dir.0.join("results"), Convention::Vllm, &Slo::default()).unwrap();
        let s = &a.stages[0];
        assert_eq!((s.completed, s.failed), (3, 1));
        assert_eq!(s.failed_by_kind.get("http"), Some(&1));
        // No run.json: duration = first sent (0) → last end (280 ms).
        assert!(close(s.duration, 0.280));
        assert_eq!(s.total_output_tokens, 6);
        assert!(close(s.request_throughput, 3.0 / 0.280));
        // TTFT: 100, 200, 100 → mean 133.33, median 100, p99 = 100 + 0.98·100 = 198.
        assert!(
            close(s.ttft.mean, 400.0 / 3.0) && close(s.ttft.median, 100.0) && close(s.ttft.p(99.0), 198.0)
        );
        // E2EL to the last chunk: 130, 220, 100.
        assert!(close(s.e2el.mean, 150.0));
        // TPOT: (130−100)/2 = 15 and (220−200)/1 = 20; the one-token request is excluded.
        assert_eq!(s.tpot.count, 2);
        assert!(close(s.tpot.mean, 17.5) && close(s.tpot.median, 17.5));
        // ITL pooled per chunk: 10, 20, 20.
        assert_eq!(s.itl.count, 3);
        assert!(close(s.itl.mean, 50.0 / 3.0) && close(s.itl.median, 20.0));
        // A [0,130), B [50,270), C [60,160): all three overlap at 60.
        assert_eq!(s.max_concurrent_requests, 3);
        // Buckets from t=0: all 6 chunks (100, 110, 130, 160, 250, 270 ms) fall in the first second.
        assert_eq!(s.max_output_tokens_per_s, 6.0);
        assert_eq!(s.request_goodput, None);
    }

    #[test]
    fn goodput_counts_requests_meeting_every_slo() {
        let dir = vectors();
        let slo = Slo { ttft: Some(Secs(0.150)), tpot: Some(Secs(0.018)), e2el: None };
        let s = &compute(&dir.0.join("results"), Convention::Vllm, &slo).unwrap().stages[0];
        // A: ttft 100 ok, tpot 15 ok → good. B: ttft 200 → bad. C: ttft 100, tpot 0 → good.
        assert!(close(s.request_goodput.unwrap(), 2.0 / 0.280));
    }

    #[test]
    fn guidellm_definitions_on_hand_computed_vectors() {
        let dir = vectors();
        let s = &compute(&dir.0.join("results"), Convention::Guidellm, &Slo::default()).unwrap().stages[0];
        // Latency to the stream's end: 135, 230, 101 → mean 155.33; inverse-CDF median = 135.
        assert!(close(s.e2el.mean, 466.0 / 3.0) && close(s.e2el.median, 135.0));
        // TPOT = time to last token / tokens, weighted by tokens: A 130/3 (w3), B 220/2 (w2), C 100/1 (w1).
        let want = (130.0 + 220.0 + 100.0) / 6.0;
        assert!(close(s.tpot.mean, want), "{}", s.tpot.mean);
        // ITL = (last − first)/(n − 1), weighted by n − 1: A 15 (w2), B 20 (w1); C drops out.
        assert!(close(s.itl.mean, (30.0 + 20.0) / 3.0) && close(s.itl.median, 15.0));
        // Output tokens/s over first → last token event: 6 / (0.270 − 0.100).
        assert!(close(s.output_throughput, 6.0 / 0.170));
    }

    #[test]
    fn empty_and_all_failed_stages_give_zeros_not_errors() {
        let dir = workdir(&[
            (1, 0.0, None, None, 5.0, 0, &[], "connect"),
            (2, 10.0, Some(20.0), Some(20.0), 21.0, 1, &[], ""),
        ]);
        let a = compute(&dir.0.join("results"), Convention::Vllm, &Slo::default()).unwrap();
        assert_eq!(a.stages.len(), 2);
        let s = &a.stages[0];
        assert_eq!((s.completed, s.failed, s.ttft.mean, s.max_concurrent_requests), (0, 1, 0.0, 0));
        assert_eq!(a.stages[1].tpot.count, 0);
        write_outputs(&dir.0.join("analysis"), &a).unwrap();
        let doc: Value =
            serde_json::from_slice(&std::fs::read(dir.0.join("analysis/stats.json")).unwrap()).unwrap();
        assert_eq!(doc["convention"], "vllm");
        assert_eq!(doc["stages"][1]["completed"], 1);
        for key in [
            "mean_ttft_ms",
            "median_tpot_ms",
            "p99_itl_ms",
            "p99.9_e2el_ms",
            "std_ttft_ms",
            "request_throughput",
        ] {
            assert!(doc["stages"][1].get(key).is_some(), "{key}");
        }
        // The file is the typed document (what its schema describes), and reads back as one.
        let typed: StatsDoc = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!((typed.stages.len(), typed.stages[1].completed), (2, 1));
        let keys = |v: &Value| v["stages"][1].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&serde_json::to_value(&typed).unwrap()), keys(&doc));
        // summary.csv: a header and one row per stage, as the csv crate reads it.
        let mut rows = csv::Reader::from_path(dir.0.join("analysis/summary.csv")).unwrap();
        assert_eq!(rows.headers().unwrap().get(0), Some("stage"));
        assert_eq!(rows.records().count(), 2);
    }

    #[test]
    fn a_truncated_last_line_keeps_the_rest() {
        let dir = vectors();
        let path = dir.0.join("results/requests.csv");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("1,9,0,5.0,5.0");
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            compute(&dir.0.join("results"), Convention::Vllm, &Slo::default()).unwrap().stages[0].completed,
            3
        );
    }
}
