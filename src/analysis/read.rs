//! Reading one harness run's records: one streaming pass over `requests.csv` (warm-up rows
//! skipped), `run.json` and `server_metrics.csv`.

use std::{borrow::Cow, collections::BTreeMap, path::Path};

use super::{
    Analysis, AnalysisError, Convention, Metrics, Series, StageSeries,
    accumulate::{Acc, Request, accumulate, finish},
    cdf,
};
use crate::{
    results::{BadField, BadTimes, Col, Reader, Row, RunInfo},
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
    compute_into(results, convention, slo, &mut ())
}

/// What else the one pass over `requests.csv` feeds: each measured row (warm-up rows skipped)
/// once it is checked, with its gaps in microseconds (the vLLM result files' arrays).
pub(super) trait RowSink: Send + Sized {
    fn row(&mut self, request: &Request, record: &Row<'_>, gaps_us: &[u64]) -> Result<(), AnalysisError>;
    /// A sink for part `k` of the rows, read apart (then [`RowSink::append`]ed in order).
    fn part(&self, k: usize) -> Self;
    /// Takes the rows fed to `later` after this one's.
    fn append(&mut self, later: Self) -> Result<(), AnalysisError>;
}

impl RowSink for () {
    fn row(&mut self, _: &Request, _: &Row<'_>, _: &[u64]) -> Result<(), AnalysisError> {
        Ok(())
    }
    fn part(&self, _: usize) {}
    fn append(&mut self, (): ()) -> Result<(), AnalysisError> {
        Ok(())
    }
}

/// Records files at least this large are read in two halves at once (two threads).
const HALVES_FROM: u64 = 8 << 20;

/// What one pass over (part of) the records gathered.
#[derive(Debug, Default)]
struct Pass {
    stages: BTreeMap<u32, Acc>,
    /// Requests in flight on a 100 ms grid, as differences.
    inflight_diff: Vec<i64>,
    /// Successful requests ended in each second.
    done_s: Vec<f64>,
}

impl Pass {
    /// Takes what `later` gathered from the rows after this one's.
    fn append(&mut self, later: Pass) {
        for (n, acc) in later.stages {
            match self.stages.entry(n) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut().append(acc),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(acc);
                }
            }
        }
        fn add<T: Copy + Default + std::ops::AddAssign>(mine: &mut Vec<T>, theirs: Vec<T>) {
            if mine.len() < theirs.len() {
                mine.resize(theirs.len(), T::default());
            }
            (mine.iter_mut().zip(theirs)).for_each(|(m, t)| *m += t);
        }
        add(&mut self.inflight_diff, later.inflight_diff);
        add(&mut self.done_s, later.done_s);
    }
}

/// Where to cut `path` in two for [`HALVES_FROM`]: the start of the first line after its
/// middle (None for a small file, or one without such a line, or on more than one core).
fn halves(path: &Path) -> Option<u64> {
    use std::io::{Read, Seek};
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return None;
    }
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len < HALVES_FROM {
        return None;
    }
    f.seek(std::io::SeekFrom::Start(len / 2)).ok()?;
    let mut buf = vec![0; 1 << 16];
    let mut at = len / 2;
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            let cut = at + i as u64 + 1;
            return (cut < len).then_some(cut);
        }
        at += n as u64;
    }
}

/// The pass over the records in two halves at once, each with a part of `sink`; `None` when a
/// half met anything but good rows (a bad row, a cut that fell inside a quoted field: the
/// caller reads the file whole, which says what and where).
fn two_halves<S: RowSink>(
    path: &Path,
    cut: u64,
    convention: Convention,
    slo: &Slo,
    sink: &mut S,
) -> Option<Result<Pass, AnalysisError>> {
    let (mut first_sink, mut second_sink) = (sink.part(0), sink.part(1));
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| {
            let reader = Reader::part(path, cut, u64::MAX).ok()?;
            pass(path, reader, convention, slo, &mut second_sink).ok()
        });
        let first =
            Reader::head(path, cut).ok().and_then(|r| pass(path, r, convention, slo, &mut first_sink).ok());
        (first, second.join().ok().flatten())
    });
    let (mut first, second) = (first?, second?);
    first.append(second);
    let joined = sink.append(first_sink).and_then(|()| sink.append(second_sink));
    Some(joined.map(|()| first))
}

/// [`compute`], feeding each measured row to `sink` on the way.
pub(super) fn compute_into<S: RowSink>(
    results: &Path,
    convention: Convention,
    slo: &Slo,
    sink: &mut S,
) -> Result<Analysis, AnalysisError> {
    let path = results.join("requests.csv");
    let info = read_info(results);
    let halved = halves(&path).and_then(|cut| two_halves(&path, cut, convention, slo, sink));
    let Pass { stages, inflight_diff, done_s } = match halved {
        Some(pass) => pass?,
        None => {
            let reader = Reader::open(&path).map_err(|e| match e {
                crate::results::RecordsError::Read { path, why } => AnalysisError::Read { path, why },
                e => AnalysisError::Read { path: path.clone(), why: e.to_string() },
            })?;
            pass(&path, reader, convention, slo, sink)?
        }
    };
    finish_analysis(results, info, convention, slo, stages, inflight_diff, done_s)
}

/// One pass over the rows of `reader` (of the records file `path`).
fn pass(
    path: &Path,
    mut reader: Reader,
    convention: Convention,
    slo: &Slo,
    sink: &mut impl RowSink,
) -> Result<Pass, AnalysisError> {
    let records_error = |e: crate::results::RecordsError| AnalysisError::Read {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
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
        let bad = |why: String| AnalysisError::Row { path: path.to_path_buf(), line, why };
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
        sink.row(&row, &record, &gaps_us)?;
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
    Ok(Pass { stages, inflight_diff, done_s })
}

/// The analysis from what the pass gathered.
fn finish_analysis(
    results: &Path,
    info: Option<RunInfo>,
    convention: Convention,
    slo: &Slo,
    stages: BTreeMap<u32, Acc>,
    inflight_diff: Vec<i64>,
    done_s: Vec<f64>,
) -> Result<Analysis, AnalysisError> {
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
    let mut info = info;
    let mut labelled = Vec::with_capacity(stages.len());
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
        labelled.push((n, acc));
    }
    // Each stage's distributions and statistics (sorting its samples: most of this part's time
    // for a long run) on as many threads as there are cores, a batch of stages at a time.
    let finished = |(n, acc): (u32, Acc)| {
        let curves = StageSeries {
            stage: n,
            label: acc.label.clone(),
            ttft: cdf(&acc.ttft),
            itl: acc.itl.cdf(),
            e2el: cdf(&acc.e2el),
        };
        (curves, finish(n, acc, convention, slo))
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut done = Vec::with_capacity(labelled.len());
    let mut labelled = labelled.into_iter().peekable();
    while labelled.peek().is_some() {
        let batch: Vec<(u32, Acc)> = labelled.by_ref().take(cores).collect();
        if batch.len() == 1 {
            done.extend(batch.into_iter().map(finished));
            continue;
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> =
                batch.into_iter().map(|stage| scope.spawn(move || finished(stage))).collect();
            done.extend(
                handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
            );
        });
    }
    let mut stats = Vec::with_capacity(done.len());
    for (curves, mut st) in done {
        st.gpu = super::gpu::stats(&series.gpu, st.window, st.total_output_tokens);
        st.prefix_cache = super::PrefixCache::within(&series.server, st.window.0, st.window.1);
        series.windows.push((st.window.0, st.window.1, curves.stage));
        series.stages.push(curves);
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

    /// Rows of two stages with warm-ups, failures whose messages hold commas, quotes and line
    /// breaks (quoted fields over two lines), and successes of 0–4 gaps.
    fn generated_rows(n: u64, seed: u64) -> String {
        let mut rng = crate::rng::Rng::new(seed);
        let messages = ["plain", "a, b", "said \"\"no\"\"", "line\nbreak", "two\n\nbreaks, \"\"q\"\""];
        let mut out = String::new();
        for i in 0..n {
            let stage = if i < n / 2 { 1 } else { 2 };
            let warmup = u8::from(i % 17 == 0);
            let scheduled = i * 1000;
            let sent = scheduled + (rng.f64() * 500.0) as u64;
            if rng.chance(0.2) {
                let m = messages[(rng.f64() * messages.len() as f64) as usize % messages.len()];
                out += &format!(
                    "{stage},{i},{warmup},{scheduled},{sent},,,{},0,10,0,usage,500,http,\"{m}\",\n",
                    sent + 700
                );
                continue;
            }
            let first = sent + 1000 + (rng.f64() * 3000.0) as u64;
            let k = (rng.f64() * 5.0) as u64;
            let gaps: Vec<u64> = (0..k).map(|_| 100 + (rng.f64() * 800.0) as u64).collect();
            let last = first + gaps.iter().sum::<u64>();
            let itl = gaps.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
            out += &format!(
                "{stage},{i},{warmup},{scheduled}.5,{sent}.25,{first},{last},{},{},12,{},usage,200,,,{itl}\n",
                last + 50,
                k + 1,
                k + 1
            );
        }
        out
    }

    /// Read in two halves, cut at any line, the records give the analysis of the file read
    /// whole (the same Debug text: every number to the last bit), or the cut is declined: only
    /// a cut inside a quoted field (a message's line break) is, and the whole file is read.
    #[test]
    fn two_halves_cut_at_any_line_give_the_whole_s_analysis_or_decline() {
        let d = records("halves", &generated_rows(240, 3));
        let path = d.join("requests.csv");
        let bytes = std::fs::read(&path).unwrap();
        let header = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        let slo = Slo::default();
        for convention in [Convention::Vllm, Convention::Guidellm] {
            let whole = pass(&path, Reader::open(&path).unwrap(), convention, &slo, &mut ()).unwrap();
            let whole = format!(
                "{:?}",
                finish_analysis(&d, None, convention, &slo, whole.stages, whole.inflight_diff, whole.done_s)
                    .unwrap()
            );
            let (mut quoted, mut taken, mut declined) = (false, 0, 0);
            for (i, b) in bytes.iter().enumerate().skip(header) {
                if *b == b'"' {
                    quoted = !quoted;
                }
                if *b != b'\n' || i + 1 >= bytes.len() {
                    continue;
                }
                match two_halves(&path, i as u64 + 1, convention, &slo, &mut ()) {
                    Some(halves) => {
                        assert!(!quoted, "a cut inside a quoted field at byte {} was taken", i + 1);
                        let p = halves.unwrap();
                        let a =
                            finish_analysis(&d, None, convention, &slo, p.stages, p.inflight_diff, p.done_s)
                                .unwrap();
                        assert!(format!("{a:?}") == whole, "cut at byte {}: not the whole's analysis", i + 1);
                        taken += 1;
                    }
                    None => {
                        assert!(quoted, "a cut at a row's start (byte {}) was declined", i + 1);
                        declined += 1;
                    }
                }
            }
            assert!(taken >= 239 && declined > 0, "{taken} cuts taken, {declined} declined");
        }
        // The vLLM result files' arrays, gathered in two halves, are written as read whole.
        // Held in memory (the default for so few), spilled from the start, or spilled midway.
        let vllm_files = |cut: Option<u64>, held: usize| {
            let out = d.join(format!("out-{cut:?}-{held}"));
            std::fs::create_dir_all(&out).unwrap();
            let mut arrays = super::super::vllm_result::Arrays::holding(&out, held);
            let p = match cut {
                Some(cut) => two_halves(&path, cut, Convention::Vllm, &slo, &mut arrays).unwrap().unwrap(),
                None => {
                    pass(&path, Reader::open(&path).unwrap(), Convention::Vllm, &slo, &mut arrays).unwrap()
                }
            };
            let a = finish_analysis(&d, None, Convention::Vllm, &slo, p.stages, p.inflight_diff, p.done_s)
                .unwrap();
            super::super::vllm_result::write_all(&out, &d, &d, &a, arrays).unwrap();
            assert!(!out.join(".vllm_bench_arrays").exists(), "spill files left behind");
            (1..=2)
                .map(|n| {
                    let text =
                        std::fs::read_to_string(out.join(super::super::vllm_result::file_name(n))).unwrap();
                    let mut doc: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(&text).unwrap();
                    doc.remove("date");
                    assert_eq!(doc["num_prompts"].as_u64().map(|n| n > 100), Some(true));
                    serde_json::Value::Object(doc).to_string()
                })
                .collect::<Vec<_>>()
        };
        let whole = vllm_files(None, usize::MAX);
        let starts: Vec<u64> = (header..bytes.len() - 1)
            // Line starts outside a quoted field (an even number of quotes before them).
            .filter(|i| {
                bytes[*i] == b'\n' && bytes[..*i].iter().filter(|b| **b == b'"').count().is_multiple_of(2)
            })
            .map(|i| i as u64 + 1)
            .collect();
        assert_eq!(vllm_files(None, 0), whole, "spilled");
        assert_eq!(vllm_files(None, 9_000), whole, "spilled midway");
        for cut in [starts[0], starts[starts.len() / 3], starts[starts.len() / 2], starts[starts.len() - 1]] {
            for held in [usize::MAX, 0, 9_000] {
                assert_eq!(vllm_files(Some(cut), held), whole, "cut at byte {cut}, {held} bytes in memory");
            }
        }
        // A last line cut short (a run killed mid-write) ends the second half as it ends the file.
        let cut_short = records("halves-short", &generated_rows(240, 5));
        let short = cut_short.join("requests.csv");
        let len = std::fs::metadata(&short).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&short).unwrap().set_len(len - 9).unwrap();
        let whole = pass(&short, Reader::open(&short).unwrap(), Convention::Vllm, &slo, &mut ()).unwrap();
        let text = std::fs::read(&short).unwrap();
        let cut = (text.len() / 2..text.len())
            .find(|i| {
                text[*i] == b'\n' && text[..*i].iter().filter(|b| **b == b'"').count().is_multiple_of(2)
            })
            .unwrap() as u64
            + 1;
        let halves = two_halves(&short, cut, Convention::Vllm, &slo, &mut ()).unwrap().unwrap();
        let analysed = |p: Pass| {
            let a = finish_analysis(
                &cut_short,
                None,
                Convention::Vllm,
                &slo,
                p.stages,
                p.inflight_diff,
                p.done_s,
            );
            format!("{:?}", a.unwrap())
        };
        assert!(analysed(halves) == analysed(whole), "a short last line read in halves differs");
        let _ = std::fs::remove_dir_all(&cut_short);
        // A bad row in either half: declined, and read whole it names its line.
        let rows = generated_rows(240, 4);
        let lines: Vec<&str> = rows.split_inclusive('\n').collect();
        for at in [5, 200] {
            let mut bad = lines.clone();
            bad.insert(at, "1,1,0,0,1000,2000,2500,inf,3,10,3,usage,200,,,250 250\n");
            let d = records("halves-bad", &bad.concat());
            let path = d.join("requests.csv");
            let cut = std::fs::metadata(&path).unwrap().len() / 2;
            let cut = cut
                + std::fs::read(&path).unwrap()[cut as usize..].iter().position(|b| *b == b'\n').unwrap()
                    as u64
                + 1;
            assert!(two_halves(&path, cut, Convention::Vllm, &slo, &mut ()).is_none(), "bad row at {at}");
            assert!(compute(&d, Convention::Vllm, &slo).is_err());
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Arrays that cannot be spilled (their directory's parent is a file: as a full disk) do not
    /// stop the pass: the statistics are computed, a bad row further on is the error given, and
    /// the vLLM files' writing says why they are missing. Whole or in halves.
    #[test]
    fn arrays_that_cannot_be_spilled_leave_the_statistics_and_a_bad_row_s_error() {
        let rows = generated_rows(240, 6);
        let d = records("unspillable", &rows);
        let path = d.join("requests.csv");
        let not_a_dir = d.join("out");
        std::fs::write(&not_a_dir, "a file").unwrap();
        let slo = Slo::default();
        let cut = (rows.len() / 2..rows.len())
            .find(|i| rows.as_bytes()[*i] == b'\n' && rows[..*i].matches('"').count().is_multiple_of(2))
            .map(|i| (i + 1 + crate::results::HEADER.join(",").len() + 1) as u64);
        for halves in [false, true] {
            let mut arrays = super::super::vllm_result::Arrays::holding(&not_a_dir, 0);
            let p = match (halves, cut) {
                (true, Some(cut)) => {
                    two_halves(&path, cut, Convention::Vllm, &slo, &mut arrays).unwrap().unwrap()
                }
                _ => pass(&path, Reader::open(&path).unwrap(), Convention::Vllm, &slo, &mut arrays).unwrap(),
            };
            let a = finish_analysis(&d, None, Convention::Vllm, &slo, p.stages, p.inflight_diff, p.done_s)
                .unwrap();
            assert!(a.stages.iter().map(|s| s.completed).sum::<u64>() > 100);
            let e = super::super::vllm_result::write_all(&d, &d, &d, &a, arrays).unwrap_err();
            assert!(matches!(e, AnalysisError::Write { .. }), "{e}");
        }
        let bad = format!("{rows}1,1,0,0,1000,2000,2500,inf,3,10,3,usage,200,,,250 250\n");
        let d2 = records("unspillable-bad", &bad);
        std::fs::write(d2.join("out"), "a file").unwrap();
        let mut arrays = super::super::vllm_result::Arrays::holding(&d2.join("out"), 0);
        let e = compute_into(&d2, Convention::Vllm, &slo, &mut arrays).unwrap_err();
        assert!(matches!(e, AnalysisError::Row { .. }), "the bad row's error, not the spill's: {e}");
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&d2);
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
