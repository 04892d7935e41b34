//! Reading one harness run's records: one streaming pass over `requests.csv` (warm-up rows
//! skipped), `run.json` and `server_metrics.csv`.

use std::{collections::BTreeMap, path::Path};

use super::{
    Analysis, AnalysisError, Convention, Series, StageSeries,
    accumulate::{Acc, Row, accumulate, finish},
    cdf,
};
use crate::{
    results::{Col, Reader, RunInfo},
    spec::workload::Slo,
};

/// Reads `server_metrics.csv` (long format) into series by metric name.
pub(super) fn read_server_metrics(results: &Path) -> BTreeMap<String, Vec<(f64, f64)>> {
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

/// Computes the statistics of a results directory without writing anything.
pub fn compute(results: &Path, convention: Convention, slo: &Slo) -> Result<Analysis, AnalysisError> {
    let path = results.join("requests.csv");
    let info = read_info(results);
    let records_error =
        |e: crate::results::RecordsError| AnalysisError::Read { path: path.clone(), why: e.to_string() };
    let mut reader = Reader::open(&path).map_err(|e| match e {
        crate::results::RecordsError::Read { path, why } => AnalysisError::Read { path, why },
        e => records_error(e),
    })?;
    let mut stages: BTreeMap<u32, Acc> = BTreeMap::new();
    let mut inflight_diff: Vec<i64> = Vec::new();
    let mut done_s: Vec<f64> = Vec::new();
    let mut gaps: Vec<f64> = Vec::new();
    // A run killed mid-write leaves a partial last line: the reader stops before it.
    while let Some(record) = reader.next_row().map_err(records_error)? {
        let line = record.line();
        let bad = |why: &str| AnalysisError::Row { path: path.clone(), line, why: why.to_string() };
        let f = |c: Col| record.get(c);
        let row = Row {
            stage: int(f(Col::Stage)).ok_or_else(|| bad("bad stage"))? as u32,
            warmup: f(Col::Warmup) == b"1",
            scheduled: secs(f(Col::ScheduledUs)).ok_or_else(|| bad("bad scheduled_us"))?,
            sent: secs(f(Col::SentUs)).ok_or_else(|| bad("bad sent_us"))?,
            first: secs(f(Col::FirstTokenUs)),
            last: secs(f(Col::LastTokenUs)),
            end: secs(f(Col::EndUs)).ok_or_else(|| bad("bad end_us"))?,
            prompt_tokens: int(f(Col::PromptTokens)).unwrap_or(0),
            output_tokens: int(f(Col::OutputTokens)).unwrap_or(0),
            estimated: f(Col::TokensSource) != b"usage",
            error_kind: String::from_utf8_lossy(f(Col::ErrorKind)).into_owned(),
        };
        if row.warmup {
            continue;
        }
        gaps.clear();
        for g in f(Col::ItlUs).split(|b| *b == b' ').filter(|g| !g.is_empty()) {
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
