//! Reading one harness run's records: one streaming pass over `requests.csv` (warm-up rows
//! skipped), `run.json` and `server_metrics.csv`.

use std::{borrow::Cow, collections::BTreeMap, path::Path};

use super::{
    Analysis, AnalysisError, Convention, Metrics, Series, StageSeries,
    accumulate::{Acc, Request, accumulate, finish},
    cdf,
};
use crate::{
    results::{BadField, BadTimes, Col, Reader, RunInfo},
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

/// A field's text for an error message (at most 40 characters).
fn shown(field: &[u8]) -> String {
    let text = String::from_utf8_lossy(field);
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
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
    let mut gaps_us: Vec<u64> = Vec::new();
    // A run killed mid-write leaves a partial last line: the reader stops before it.
    while let Some(record) = reader.next_row().map_err(records_error)? {
        let line = record.line();
        // A row whose stage, times, counts or gaps are not what their columns promise (also
        // `inf`, a time beyond a week, a request ending before it was sent) stops the analysis,
        // warm-up rows too: the file is not what a run wrote.
        let bad = |why: String| AnalysisError::Row { path: path.clone(), line, why };
        let field = |e: BadField| bad(format!("{e} (found `{}`)", shown(record.get(e.0))));
        let times = record.times().map_err(|e| match e {
            BadTimes::Field(f) => field(f),
            e => bad(e.to_string()),
        })?;
        let count = |col: Col| match record.get(col) {
            b"" => Ok(0),
            _ => record.count(col).map_err(field),
        };
        let row = Request {
            stage: record.stage().map_err(field)?,
            warmup: record.warmup(),
            scheduled: times.scheduled,
            sent: times.sent,
            first: times.first,
            last: times.last,
            end: times.end,
            prompt_tokens: count(Col::PromptTokens)?,
            output_tokens: count(Col::OutputTokens)?,
            chunks: count(Col::Chunks)?,
            estimated: record.estimated(),
            error_kind: record.error_kind().map(Cow::into_owned).unwrap_or_default(),
        };
        gaps.clear();
        gaps_us.clear();
        let mut t = row.first.unwrap_or(row.sent);
        for us in record.gaps_us() {
            let us = us.map_err(field)?;
            let g = crate::results::gap_secs(us);
            t += g;
            gaps.push(g);
            gaps_us.push(us);
        }
        // The chunks the gaps place must fall within the request (a second of slack for
        // harnesses that time the end on another clock).
        if t > row.end + 1.0 {
            return Err(bad(format!(
                "itl_us: the gaps add up to {:.3} s after the first token, past end_us ({:.3} s)",
                t - row.first.unwrap_or(row.sent),
                row.end
            )));
        }
        if row.warmup {
            continue;
        }
        let acc = stages.entry(row.stage).or_insert_with(|| Acc::new(convention));
        accumulate(acc, &row, &gaps, &gaps_us, slo);
        // Timeline: in flight from sent to end (100 ms grid), completions per second. The times
        // are at most a week (checked above): at most 6,048,000 cells.
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
    type Window = (String, f64, f64, Option<f64>, Option<crate::spec::workload::Ramp>);
    let windows: BTreeMap<u32, Window> = info
        .as_ref()
        .map(|i| {
            i.stages
                .iter()
                .map(|s| (s.stage, (s.label.clone(), s.start_s, s.end_s, s.rate, s.ramp)))
                .collect()
        })
        .unwrap_or_default();
    let by_target = read_server_metrics(results);
    let mut series = Series {
        completions_per_s: done_s,
        gpu: super::gpu::read(results),
        server: combine(&by_target),
        ..Series::default()
    };
    let mut stats = Vec::new();
    let mut info = info;
    for (n, mut acc) in stages {
        if let Some((label, a, b, rate, ramp)) = windows.get(&n) {
            acc.label = label.clone();
            acc.window = Some((*a, *b));
            // A ramp's rate asked over the span its sends cover (a count cap may end it early).
            acc.asked_rate = match ramp {
                Some(r) if acc.sent > 0 => Some(r.mean_between(acc.first_sent - a, acc.last_sent - a)),
                _ => *rate,
            };
        } else if let Some(i) = info.as_mut() {
            // Records of a stage whose end run.json never got: the run was killed during it
            // (SIGKILL, a crash). Its figures cover part of it, and the run says so.
            acc.label = format!("stage {n} (cut short: its end was never recorded)");
            i.interrupted = true;
        }
        for (ms, n) in acc.chunk_ms.cells() {
            let i = ms / 1000;
            if series.tokens_per_s.len() <= i {
                series.tokens_per_s.resize(i + 1, 0.0);
            }
            series.tokens_per_s[i] += f64::from(n);
        }
        series.stages.push(StageSeries {
            stage: n,
            label: acc.label.clone(),
            ttft: cdf(&acc.ttft),
            itl: acc.itl.cdf(),
            e2el: cdf(&acc.e2el),
        });
        let mut st = finish(n, acc, convention, slo);
        st.gpu = super::gpu::stats(&series.gpu, st.window, st.total_output_tokens);
        st.prefix_cache = super::PrefixCache::within(&series.server, st.window.0, st.window.1);
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
    let mut replicas = Vec::new();
    if by_target.len() > 1 {
        replicas = by_target.iter().map(|(name, s)| super::ReplicaStats::of(name, s)).collect();
        series.replicas = by_target;
    }
    Ok(Analysis { convention, info, stages: stats, series, replicas, slo: slo.clone() })
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

    /// A results directory whose `requests.csv` holds `rows` after the header.
    fn records(tag: &str, rows: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("benchflow-read-rows-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("requests.csv"), format!("{}\n{rows}", crate::results::HEADER.join(",")))
            .unwrap();
        d
    }

    const GOOD: &str = "1,0,0,0.000,1000.000,2000.000,2500.000,3000.000,3,10,3,usage,200,,,250 250\n";

    #[test]
    fn a_time_out_of_bounds_or_order_is_an_error_naming_the_file_and_line() {
        let cases = [
            ("inf", "1,1,0,0,1000,2000,2500,inf,3,10,3,usage,200,,,250 250", "end_us"),
            ("nan", "1,1,0,0,1000,2000,2500,nan,3,10,3,usage,200,,,250 250", "end_us"),
            ("huge", "1,1,0,0,1000,2000,2500,1e18,3,10,3,usage,200,,,250 250", "end_us"),
            ("negative", "1,1,0,0,-1000,2000,2500,3000,3,10,3,usage,200,,,250 250", "sent_us"),
            ("warmup-inf", "1,1,1,0,1000,2000,2500,-inf,3,10,3,usage,200,,,", "end_us"),
            ("first-inf", "1,1,0,0,1000,inf,2500,3000,3,10,3,usage,200,,,", "first_token_us"),
            ("order", "1,1,0,0,5000000,,,3000,0,10,0,usage,0,connect,x,", "after end_us"),
            ("tokens", "1,1,0,0,1000,2000,2500,3000,3,10,3,usage,200,,,", "after last_token_us"),
            ("gaps", "1,1,0,0,1000,2000,2500,3000,3,10,3,usage,200,,,250 604800000000", "past end_us"),
            ("count", "1,1,0,0,1000,2000,2500,3000,99999999999,10,3,usage,200,,,", "chunks"),
        ];
        for (tag, row, names) in cases {
            // "tokens": first after last.
            let row =
                if tag == "tokens" { row.replace(",2000,2500,", ",2600,2500,") } else { row.to_string() };
            let d = records(tag, &format!("{GOOD}{row}\n{GOOD}"));
            let e = compute(&d, Convention::Vllm, &Slo::default())
                .err()
                .unwrap_or_else(|| panic!("{tag}: accepted"));
            assert!(matches!(e, AnalysisError::Row { line: 3, .. }), "{tag}: {e}");
            let text = e.to_string();
            assert!(text.contains("requests.csv:3: ") && text.contains(names), "{tag}: {text}");
            let _ = std::fs::remove_dir_all(&d);
        }
        // The largest time a row may hold still reads.
        let d = records("max", &format!("{GOOD}1,1,0,0,1000,2000,2500,604800000000,3,10,3,usage,200,,,\n"));
        let a = compute(&d, Convention::Vllm, &Slo::default()).unwrap();
        assert_eq!(a.stages[0].completed, 2);
        assert_eq!(a.series.in_flight.len(), 6_048_002);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn generated_bad_rows_are_errors_or_analysed_never_a_panic() {
        // Every numeric column drawn from good values and extremes, many files of a few rows.
        let pool = [
            "0",
            "1",
            "1000",
            "2500.5",
            "",
            "inf",
            "-inf",
            "nan",
            "NaN",
            "-1",
            "-0",
            "1e18",
            "1e300",
            "-1e300",
            "604800000000",
            "604800000001",
            "18446744073709551615",
            "18446744073709551616",
            "4294967296",
            "abc",
            " 5",
            "0x10",
            "1e3",
            "16777216",
            "16777217",
            "\u{e9}",
        ];
        let mut rng = crate::rng::Rng::new(26);
        let pick = |rng: &mut crate::rng::Rng| pool[rng.below(pool.len() as u64) as usize].to_string();
        let (mut errors, mut analysed) = (0, 0);
        for file in 0..300 {
            let mut rows = String::new();
            for i in 0..1 + rng.below(8) {
                let mut f: Vec<String> = GOOD.trim_end().split(',').map(str::to_string).collect();
                f[1] = i.to_string();
                // Up to two fields of some rows replaced (the times, the counts, the stage, the gaps).
                for _ in 0..rng.below(3) * u64::from(rng.chance(0.3)) {
                    let col = [0usize, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15][rng.below(11) as usize];
                    f[col] = if col == 15 {
                        (0..rng.below(4)).map(|_| pick(&mut rng)).collect::<Vec<_>>().join(" ")
                    } else {
                        pick(&mut rng)
                    };
                }
                rows.push_str(
                    &f.iter()
                        .map(|x| if x.contains(',') { format!("\"{x}\"") } else { x.clone() })
                        .collect::<Vec<_>>()
                        .join(","),
                );
                rows.push('\n');
            }
            let d = records(&format!("gen-{file}"), &rows);
            match compute(&d, Convention::Vllm, &Slo::default()) {
                Ok(a) => {
                    analysed += 1;
                    assert!(a.series.in_flight.len() <= 6_048_002 && a.series.tokens_per_s.len() <= 604_802);
                }
                Err(AnalysisError::Row { line, .. }) => {
                    assert!(line >= 2, "file {file}: line {line}");
                    errors += 1;
                }
                Err(e) => panic!("file {file}: {e}\n{rows}"),
            }
            let _ = std::fs::remove_dir_all(&d);
        }
        // Both outcomes happened: the generator reaches past the checks and through them.
        assert!(errors > 50 && analysed > 50, "{errors} errors, {analysed} analysed");
    }

    #[test]
    fn a_file_of_one_server_without_the_target_column_still_reads() {
        let d = dir("old", "t_s,metric,labels,value\n1.0,vllm:num_requests_running,\"e='0'\",3\n");
        let by = read_server_metrics(&d);
        assert_eq!(combine(&by)["vllm:num_requests_running"], [(1.0, 3.0)]);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A run killed during its second stage (SIGKILL: run.json lists only the first) is
    /// analysed as interrupted, the cut stage labelled so, not as a whole stage.
    #[test]
    fn a_stage_whose_end_was_never_recorded_is_said_cut_short() {
        let d = dir("cut", "t_s,metric,labels,value,target\n");
        let mut csv = crate::results::HEADER.join(",") + "\n";
        csv.push_str("1,0,0,0,1000,2000,2500,2600,2,10,2,usage,200,,,500\n");
        csv.push_str("2,1,0,0,3000,4000,4500,4600,2,10,2,usage,200,,,500\n");
        std::fs::write(d.join("requests.csv"), csv).unwrap();
        let mut info = RunInfo::starting("http://h:1".into(), "m".into());
        info.stages.push(crate::results::StageWindow {
            stage: 1,
            label: "first".into(),
            start_s: 0.0,
            end_s: 0.0026,
            dispatched: 1,
            rate: None,
            ramp: None,
        });
        std::fs::write(d.join("run.json"), serde_json::to_vec(&info).unwrap()).unwrap();
        let a = compute(&d, super::super::Convention::Vllm, &Default::default()).unwrap();
        assert!(a.info.as_ref().unwrap().interrupted);
        assert_eq!(a.stages[0].label, "first");
        assert!(a.stages[1].label.contains("cut short"), "{}", a.stages[1].label);
        let _ = std::fs::remove_dir_all(&d);
    }
}
