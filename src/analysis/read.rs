//! Reading one harness run's records: one streaming pass over `requests.csv` (warm-up rows
//! skipped), `run.json` and `server_metrics.csv`.

use std::{borrow::Cow, collections::BTreeMap, path::Path};

use super::{
    Analysis, AnalysisError, Convention, Metrics, Series, StageSeries,
    accumulate::{Acc, Request, accumulate, finish},
    cdf,
};
use crate::{
    results::{BadField, Col, Reader, RunInfo},
    spec::workload::Slo,
};

/// Reads `server_metrics.csv` (long format) into series by target (the scraped server; older
/// files have one, unnamed), then metric name: at each scrape, the sum over the metric's label
/// sets.
pub(super) fn read_server_metrics(results: &Path) -> BTreeMap<String, Metrics> {
    let mut out: BTreeMap<String, Metrics> = BTreeMap::new();
    let Ok(mut r) = csv::ReaderBuilder::new().flexible(true).from_path(results.join("server_metrics.csv"))
    else {
        return out;
    };
    for rec in r.records().flatten() {
        if let (Some(t), Some(name), Some(v)) = (rec.get(0), rec.get(1), rec.get(3))
            && let (Ok(t), Ok(v)) = (t.parse::<f64>(), v.parse::<f64>())
        {
            let series = out.entry(rec.get(4).unwrap_or_default().to_string()).or_default();
            let points = series.entry(name.to_string()).or_default();
            match points.last_mut() {
                Some(last) if last.0 == t => last.1 += v,
                _ => points.push((t, v)),
            }
        }
    }
    out
}

/// The servers' series as one: at each scrape, the sum over the servers (the mean for a
/// `_perc` metric, a share).
pub(super) fn combine(by_target: &BTreeMap<String, Metrics>) -> Metrics {
    if by_target.len() == 1 {
        return by_target.values().next().cloned().unwrap_or_default();
    }
    let mut sums: BTreeMap<&str, BTreeMap<u64, (f64, f64, u32)>> = BTreeMap::new();
    for series in by_target.values() {
        for (name, points) in series {
            let at = sums.entry(name).or_default();
            for &(t, v) in points {
                // Servers scraped in one round share its time.
                let e = at.entry(t.to_bits()).or_insert((t, 0.0, 0));
                e.1 += v;
                e.2 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(name, at)| {
            let mean = name.ends_with("_perc");
            let mut points: Vec<(f64, f64)> =
                at.into_values().map(|(t, v, n)| (t, if mean { v / f64::from(n) } else { v })).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (name.to_string(), points)
        })
        .collect()
}

/// Reads `run.json` of a results directory, if present.
pub(crate) fn read_info(results: &Path) -> Option<RunInfo> {
    let text = std::fs::read(results.join("run.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Computes the statistics of a results directory without writing anything.
pub(crate) fn compute(results: &Path, convention: Convention, slo: &Slo) -> Result<Analysis, AnalysisError> {
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
        // A row whose stage or send, schedule or end time is not a number stops the analysis
        // (warm-up rows too); a missing or bad token time makes the request one without tokens.
        let bad = |e: BadField| AnalysisError::Row { path: path.clone(), line, why: e.to_string() };
        let row = Request {
            stage: record.stage().map_err(bad)?,
            warmup: record.warmup(),
            scheduled: record.secs(Col::ScheduledUs).map_err(bad)?,
            sent: record.secs(Col::SentUs).map_err(bad)?,
            first: record.secs(Col::FirstTokenUs).ok(),
            last: record.secs(Col::LastTokenUs).ok(),
            end: record.secs(Col::EndUs).map_err(bad)?,
            prompt_tokens: record.count(Col::PromptTokens).unwrap_or(0),
            output_tokens: record.count(Col::OutputTokens).unwrap_or(0),
            chunks: record.count(Col::Chunks).unwrap_or(0),
            estimated: record.estimated(),
            error_kind: record.error_kind().map(Cow::into_owned).unwrap_or_default(),
        };
        if row.warmup {
            continue;
        }
        gaps.clear();
        for g in record.gaps() {
            gaps.push(g.map_err(bad)?);
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
    let mut series =
        Series { completions_per_s: done_s, gpu: super::gpu::read(results), ..Series::default() };
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
        let mut st = finish(n, acc, convention, slo);
        st.gpu = super::gpu::stats(&series.gpu, st.window, st.total_output_tokens);
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
    let by_target = read_server_metrics(results);
    series.server = combine(&by_target);
    let mut replicas = Vec::new();
    if by_target.len() > 1 {
        replicas = by_target.iter().map(|(name, s)| super::ReplicaStats::of(name, s)).collect();
        series.replicas = by_target;
    }
    Ok(Analysis { convention, info, stages: stats, series, replicas })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str, csv: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("benchflow-read-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("server_metrics.csv"), csv).unwrap();
        d
    }

    #[test]
    fn server_metrics_are_summed_over_label_sets_and_combined_over_replicas() {
        let d = dir(
            "replicas",
            "t_s,metric,labels,value,target\n\
             0.0,vllm:request_success_total,\"r='stop'\",1,replica-0\n\
             0.0,vllm:request_success_total,\"r='length'\",2,replica-0\n\
             0.0,vllm:kv_cache_usage_perc,\"\",0.2,replica-0\n\
             0.0,vllm:request_success_total,\"r='stop'\",4,replica-1\n\
             0.0,vllm:kv_cache_usage_perc,\"\",0.6,replica-1\n\
             2.0,vllm:request_success_total,\"r='stop'\",10,replica-0\n\
             2.0,vllm:request_success_total,\"r='stop'\",9,replica-1\n",
        );
        let by = read_server_metrics(&d);
        assert_eq!(by["replica-0"]["vllm:request_success_total"], [(0.0, 3.0), (2.0, 10.0)]);
        let all = combine(&by);
        assert_eq!(all["vllm:request_success_total"], [(0.0, 7.0), (2.0, 19.0)]);
        // A share is averaged, not summed.
        assert!((all["vllm:kv_cache_usage_perc"][0].1 - 0.4).abs() < 1e-12);
        let r = crate::analysis::ReplicaStats::of("replica-1", &by["replica-1"]);
        assert_eq!((r.requests, r.prefix_cache_hit_rate), (5.0, None));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_of_one_server_without_the_target_column_still_reads() {
        let d = dir("old", "t_s,metric,labels,value\n1.0,vllm:num_requests_running,\"e='0'\",3\n");
        let by = read_server_metrics(&d);
        assert_eq!(combine(&by)["vllm:num_requests_running"], [(1.0, 3.0)]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
