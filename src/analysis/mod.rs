//! Statistics from a run's records: `benchflow analyze DIR` and the end of every `run`.
//!
//! * [`stats`]: distribution summaries under vllm bench serve's and GuideLLM's conventions.
//!
//! Reads `results/requests.csv` in one streaming pass (warm-up rows skipped), keeps per stage
//! only what the statistics need, and writes `analysis/stats.json` (vllm bench serve's key
//! names), `analysis/stats.txt` (for people), `analysis/summary.csv` (one row per stage), the
//! charts in `analysis/plots/` ([`plots`]) and `analysis/report.html` ([`report`]).

pub mod plots;
pub mod report;
pub mod stats;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use serde_json::{Map, Value, json};

use self::stats::Summary;
pub use crate::spec::harness::Convention;
use crate::{loadgen::RunInfo, spec::workload::Slo};

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
}

/// One request as read back (seconds since the run's start).
#[derive(Debug, Clone, Default)]
struct Row {
    stage: u32,
    warmup: bool,
    scheduled: f64,
    sent: f64,
    first: Option<f64>,
    last: Option<f64>,
    end: f64,
    prompt_tokens: u64,
    output_tokens: u64,
    estimated: bool,
    error_kind: String,
}

/// Everything gathered for one stage while reading.
#[derive(Debug, Default)]
struct Acc {
    label: String,
    window: Option<(f64, f64)>,
    first_sent: f64,
    last_end: f64,
    completed: u64,
    failed: BTreeMap<String, u64>,
    estimated: u64,
    input_tokens: u64,
    output_tokens: u64,
    ttft: Vec<f64>,
    tpot: Vec<f64>,
    e2el: Vec<f64>,
    itl: Vec<f64>,
    queue: Vec<f64>,
    intervals: Vec<(f64, f64)>,
    good: u64,
    /// Content chunks per millisecond of run time (for the peak 1-s output rate).
    chunk_ms: Vec<u32>,
    first_success_sent: f64,
    // GuideLLM pairs
    g_latency: Vec<(f64, f64)>,
    g_ttft: Vec<(f64, f64)>,
    g_tpot: Vec<(f64, f64)>,
    g_itl: Vec<(f64, f64)>,
    g_first_token: f64,
    g_last_token: f64,
    cancelled: u64,
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
}

/// The analysis of a whole run.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub convention: Convention,
    pub info: Option<RunInfo>,
    pub stages: Vec<StageStats>,
    /// What the charts draw.
    pub series: Series,
}

/// Cumulative distribution points (value in ms, fraction ≤ value).
pub type Cdf = Vec<(f64, f64)>;

/// Per-stage latency distributions.
#[derive(Debug, Clone, Default)]
pub struct StageSeries {
    pub stage: u32,
    pub label: String,
    pub ttft: Cdf,
    pub itl: Cdf,
    pub e2el: Cdf,
}

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
    /// Server metrics over time, by metric name: (run seconds, value).
    pub server: BTreeMap<String, Vec<(f64, f64)>>,
}

/// A CDF of `values` (seconds) in ms: exact below 2,000 values, else from a log-spaced
/// histogram of 1,000 bins (O(n), plenty for a chart).
pub fn cdf(values: &[f64]) -> Cdf {
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
    const BINS: usize = 1000;
    let (llo, lhi) = (lo.ln(), hi.ln());
    let mut counts = vec![0u64; BINS];
    for x in &values {
        let i = (((x.max(lo).ln() - llo) / (lhi - llo)) * BINS as f64) as usize;
        counts[i.min(BINS - 1)] += 1;
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
        Dirs { workdir: dir.to_path_buf(), results: dir.join("results"), out: dir.join("analysis") }
    }
}

/// Reads `server_metrics.csv` (long format) into series by metric name.
fn read_server_metrics(results: &Path) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let Ok(mut r) = csv::Reader::from_path(results.join("server_metrics.csv")) else { return out };
    for rec in r.records().flatten() {
        if let (Some(t), Some(name), Some(v)) = (rec.get(0), rec.get(1), rec.get(3))
            && let (Ok(t), Ok(v)) = (t.parse::<f64>(), v.parse::<f64>())
        {
            out.entry(name.to_string()).or_default().push((t, v));
        }
    }
    out
}

fn secs(field: &[u8]) -> Option<f64> {
    if field.is_empty() {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse::<f64>().ok().map(|us| us / 1e6)
}

/// A decimal integer (digits only), without UTF-8 validation: the hot loop of reading
/// millions of chunk gaps.
fn int(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// Reads `run.json` of a results directory, if present.
pub fn read_info(results: &Path) -> Option<RunInfo> {
    let text = std::fs::read(results.join("run.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Analyses one harness run (reads its records, writes statistics, charts, report).
pub fn analyze(dirs: &Dirs, convention: Convention, slo: &Slo) -> Result<Analysis, AnalysisError> {
    let analysis = compute(&dirs.results, convention, slo)?;
    write_outputs(&dirs.out, &analysis)?;
    let charts = plots::render(&dirs.out.join("plots"), &analysis)?;
    let html = report::render(dirs, &analysis, &charts);
    write(dirs.out.join("report.html"), html.as_bytes())?;
    Ok(analysis)
}

/// Computes the statistics of a results directory without writing anything.
pub fn compute(results: &Path, convention: Convention, slo: &Slo) -> Result<Analysis, AnalysisError> {
    let path = results.join("requests.csv");
    let info = read_info(results);
    let mut reader = csv::ReaderBuilder::new().from_path(&path).map_err(|e| AnalysisError::Read {
        path: path.clone(),
        why: format!("{e} (is this a benchflow work directory?)"),
    })?;
    let headers = reader
        .byte_headers()
        .map_err(|e| AnalysisError::Read { path: path.clone(), why: e.to_string() })?
        .clone();
    let expected: Vec<&[u8]> = crate::loadgen::record::HEADER.iter().map(|h| h.as_bytes()).collect();
    if headers.iter().collect::<Vec<_>>() != expected {
        return Err(AnalysisError::Read {
            path,
            why: "unexpected columns: not a requests.csv written by this benchflow version".into(),
        });
    }
    let mut stages: BTreeMap<u32, Acc> = BTreeMap::new();
    let mut inflight_diff: Vec<i64> = Vec::new();
    let mut done_s: Vec<f64> = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut gaps: Vec<f64> = Vec::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            // A run killed mid-write leaves a partial last line: keep everything before it.
            Err(e) if matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) => break,
            Err(e) => return Err(AnalysisError::Read { path, why: e.to_string() }),
        }
        let line = record.position().map_or(0, |p| p.line());
        let bad = |why: &str| AnalysisError::Row { path: path.clone(), line, why: why.to_string() };
        let f = |i: usize| record.get(i).unwrap_or_default();
        let row = Row {
            stage: int(f(0)).ok_or_else(|| bad("bad stage"))? as u32,
            warmup: f(2) == b"1",
            scheduled: secs(f(3)).ok_or_else(|| bad("bad scheduled_us"))?,
            sent: secs(f(4)).ok_or_else(|| bad("bad sent_us"))?,
            first: secs(f(5)),
            last: secs(f(6)),
            end: secs(f(7)).ok_or_else(|| bad("bad end_us"))?,
            prompt_tokens: int(f(9)).unwrap_or(0),
            output_tokens: int(f(10)).unwrap_or(0),
            estimated: f(11) != b"usage",
            error_kind: String::from_utf8_lossy(f(13)).into_owned(),
        };
        if row.warmup {
            continue;
        }
        gaps.clear();
        for g in f(15).split(|b| *b == b' ').filter(|g| !g.is_empty()) {
            gaps.push(int(g).ok_or_else(|| bad("bad itl_us"))? as f64 / 1e6);
        }
        let acc = stages.entry(row.stage).or_default();
        accumulate(acc, &row, &gaps, slo);
        // Timeline: in flight from sent to end (100 ms grid), completions per second.
        let (a, b) = ((row.sent * 10.0) as usize, (row.end * 10.0) as usize);
        if inflight_diff.len() <= b + 1 {
            inflight_diff.resize(b + 2, 0);
        }
        inflight_diff[a] += 1;
        inflight_diff[b + 1] -= 1;
        if row.error_kind.is_empty() && row.first.is_some() {
            let i = row.end as usize;
            if done_s.len() <= i {
                done_s.resize(i + 1, 0.0);
            }
            done_s[i] += 1.0;
        }
    }
    let windows: BTreeMap<u32, (String, f64, f64)> = info
        .as_ref()
        .map(|i| i.stages.iter().map(|s| (s.stage, (s.label.clone(), s.start_s, s.end_s))).collect())
        .unwrap_or_default();
    let mut series = Series { completions_per_s: done_s, ..Series::default() };
    let mut stats = Vec::new();
    for (n, mut acc) in stages {
        if let Some((label, a, b)) = windows.get(&n) {
            acc.label = label.clone();
            acc.window = Some((*a, *b));
        }
        for (i, c) in acc.chunk_ms.chunks(1000).enumerate() {
            if series.tokens_per_s.len() <= i {
                series.tokens_per_s.resize(i + 1, 0.0);
            }
            series.tokens_per_s[i] += c.iter().map(|x| *x as f64).sum::<f64>();
        }
        series.stages.push(StageSeries {
            stage: n,
            label: acc.label.clone(),
            ttft: cdf(&acc.ttft),
            itl: cdf(&acc.itl),
            e2el: cdf(&acc.e2el),
        });
        let st = finish(n, acc, convention, slo);
        series.windows.push((st.window.0, st.window.1, n));
        stats.push(st);
    }
    let mut cur = 0i64;
    series.in_flight = inflight_diff
        .iter()
        .map(|d| {
            cur += d;
            cur as f64
        })
        .collect();
    series.server = read_server_metrics(results);
    Ok(Analysis { convention, info, stages: stats, series })
}

fn accumulate(acc: &mut Acc, r: &Row, gaps: &[f64], slo: &Slo) {
    if acc.completed == 0 && acc.failed.is_empty() {
        acc.first_sent = r.sent;
        acc.first_success_sent = f64::INFINITY;
        acc.g_first_token = f64::INFINITY;
    }
    acc.first_sent = acc.first_sent.min(r.sent);
    acc.last_end = acc.last_end.max(r.end);
    let (Some(first), Some(last)) = (r.first, r.last) else {
        *acc.failed
            .entry(if r.error_kind.is_empty() { "unknown".into() } else { r.error_kind.clone() })
            .or_default() += 1;
        return;
    };
    if !r.error_kind.is_empty() {
        if r.error_kind == "cancelled" {
            acc.cancelled += 1;
        }
        *acc.failed.entry(r.error_kind.clone()).or_default() += 1;
        return;
    }
    acc.completed += 1;
    acc.estimated += u64::from(r.estimated);
    acc.input_tokens += r.prompt_tokens;
    acc.output_tokens += r.output_tokens;
    let ttft = first - r.sent;
    let e2el = last - r.sent;
    let n = r.output_tokens;
    let tpot = if n > 1 { Some((e2el - ttft) / (n - 1) as f64) } else { None };
    acc.ttft.push(ttft);
    acc.e2el.push(e2el);
    acc.tpot.extend(tpot);
    acc.itl.extend_from_slice(gaps);
    acc.queue.push(r.sent - r.scheduled);
    acc.intervals.push((r.sent, r.sent + e2el));
    acc.first_success_sent = acc.first_success_sent.min(r.sent);
    let good = slo.ttft.is_none_or(|s| ttft <= s.0)
        && slo.tpot.is_none_or(|s| tpot.unwrap_or(0.0) <= s.0)
        && slo.e2el.is_none_or(|s| e2el <= s.0);
    acc.good += u64::from(good);
    // Chunk arrival times on a 1 ms grid of run time.
    let mut t = first;
    bump(&mut acc.chunk_ms, t);
    for g in gaps {
        t += g;
        bump(&mut acc.chunk_ms, t);
    }
    // GuideLLM: latency to the stream's end; TPOT over all tokens incl. the first; ITL over the rest.
    acc.g_latency.push((r.end - r.sent, 1.0));
    acc.g_ttft.push((ttft, 1.0));
    if n > 0 {
        acc.g_tpot.push(((last - r.sent) / n as f64, n as f64));
    }
    if n > 1 {
        acc.g_itl.push(((last - first) / (n - 1) as f64, (n - 1) as f64));
    }
    acc.g_first_token = acc.g_first_token.min(first);
    acc.g_last_token = acc.g_last_token.max(last);
}

fn bump(grid: &mut Vec<u32>, t: f64) {
    let i = (t.max(0.0) * 1000.0) as usize;
    if i >= grid.len() {
        grid.resize(i + 1, 0);
    }
    grid[i] += 1;
}

fn ms(mut s: Summary) -> Summary {
    s.mean *= 1000.0;
    s.median *= 1000.0;
    s.std *= 1000.0;
    for (_, v) in &mut s.percentiles {
        *v *= 1000.0;
    }
    s
}

/// Exact peak overlap of half-open intervals (departures before arrivals at ties).
fn max_overlap(intervals: &[(f64, f64)]) -> u64 {
    let mut events: Vec<(f64, i8)> = intervals.iter().flat_map(|(a, b)| [(*a, 1), (*b, -1)]).collect();
    events.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut cur, mut best) = (0i64, 0i64);
    for (_, d) in events {
        cur += i64::from(d);
        best = best.max(cur);
    }
    best as u64
}

fn finish(stage: u32, mut acc: Acc, convention: Convention, slo: &Slo) -> StageStats {
    let (start, end) = acc.window.unwrap_or((acc.first_sent, acc.last_end));
    let duration = (end - start).max(1e-9);
    let failed: u64 = acc.failed.values().sum();
    // Peak 1-s output rate, buckets from the earliest successful request's start.
    let max_tok_s = if acc.first_success_sent.is_finite() {
        let s0 = (acc.first_success_sent * 1000.0) as usize;
        acc.chunk_ms
            .get(s0..)
            .unwrap_or_default()
            .chunks(1000)
            .map(|c| c.iter().map(|n| *n as u64).sum::<u64>())
            .max()
            .unwrap_or(0) as f64
    } else {
        0.0
    };
    let has_slo = slo.ttft.is_some() || slo.tpot.is_some() || slo.e2el.is_some();
    let (ttft, tpot, itl, e2el, request_throughput, output_throughput) = match convention {
        Convention::Vllm => (
            ms(stats::vllm(&mut acc.ttft)),
            ms(stats::vllm(&mut acc.tpot)),
            ms(stats::vllm(&mut acc.itl)),
            ms(stats::vllm(&mut acc.e2el)),
            acc.completed as f64 / duration,
            acc.output_tokens as f64 / duration,
        ),
        Convention::Guidellm => {
            let token_span = (acc.g_last_token - acc.g_first_token).max(1e-9);
            (
                ms(stats::guidellm(&mut acc.g_ttft)),
                ms(stats::guidellm(&mut acc.g_tpot)),
                ms(stats::guidellm(&mut acc.g_itl)),
                ms(stats::guidellm(&mut acc.g_latency)),
                acc.completed as f64 / duration,
                if acc.completed > 0 { acc.output_tokens as f64 / token_span } else { 0.0 },
            )
        }
    };
    StageStats {
        stage,
        label: acc.label,
        window: (start, end),
        duration,
        completed: acc.completed,
        failed,
        failed_by_kind: acc.failed,
        total_input_tokens: acc.input_tokens,
        total_output_tokens: acc.output_tokens,
        estimated_token_requests: acc.estimated,
        request_throughput,
        output_throughput,
        total_token_throughput: (acc.input_tokens + acc.output_tokens) as f64 / duration,
        request_goodput: has_slo.then(|| acc.good as f64 / duration),
        max_concurrent_requests: max_overlap(&acc.intervals),
        max_output_tokens_per_s: max_tok_s,
        ttft,
        tpot,
        itl,
        e2el,
        client_queue: ms(stats::vllm(&mut acc.queue)),
    }
}

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

fn write(path: PathBuf, bytes: &[u8]) -> Result<(), AnalysisError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Secs;

    /// (stage, sent, first, last, end, output_tokens, itl gaps in ms, error kind), times in ms.
    type TestRow<'a> = (u32, f64, Option<f64>, Option<f64>, f64, u64, &'a [u64], &'a str);

    /// Writes a requests.csv from rows.
    fn workdir(rows: &[TestRow]) -> tempdir::Dir {
        let dir = tempdir::Dir::new();
        std::fs::create_dir_all(dir.0.join("results")).unwrap();
        let mut csv = crate::loadgen::record::HEADER.join(",") + "\n";
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
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
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
