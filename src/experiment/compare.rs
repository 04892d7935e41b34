//! Runs side by side: each headline metric's difference from the baseline with a bootstrap
//! confidence interval, and a verdict. Per-request metrics (TTFT, TPOT, E2EL, in ms, as vllm
//! bench serve defines them), in the order the requests were sent, and throughput by 1-second
//! window of the stage (completions per window) are resampled by circular blocks
//! ([`bootstrap::Resampling::Blocks`]: neighbours are correlated by queueing), the throughput's
//! interval at least as wide as the Poisson noise of the counts. Percentile intervals of
//! `B − A` from seeded resamples, so the same records give the same answer. The client's own
//! health ([`Health`]: how late it sent requests) is checked in each run: a stage where either
//! client fell behind gets [`Verdict::Inconclusive`] for every metric. `benchflow compare` and
//! `compare: true` in an experiment use it.

use crate::workdir::layout;
use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use serde::Serialize;

use super::{ExperimentError, plan::ExperimentPlan};
use crate::{
    analysis::{
        bootstrap::{self, Resampling},
        percentile,
    },
    results::{Col, Reader, RunInfo},
    workdir::runs::RunDirs,
};

/// What one stage of one run gives the comparison: the per-request metrics of the successful
/// requests in the order they were sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub ttft_ms: Vec<f64>,
    pub tpot_ms: Vec<f64>,
    pub e2el_ms: Vec<f64>,
    /// Successful completions in each whole second of the stage.
    pub per_second: Vec<f64>,
    /// Sent − scheduled of every request of the stage (failed ones too), in ms.
    pub send_delay_ms: Vec<f64>,
    /// The stage caps requests in flight (`max_concurrency`): a request waiting for a slot is
    /// sent late by design, so the send delay says nothing of the client's health.
    pub waits_for_slots: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    Better,
    Worse,
    NoSignificantDifference,
    /// A client fell behind in either run of the stage (its [`Diff::why`] says which, by how
    /// much): whatever the interval says, it measured the client as much as the server.
    Inconclusive,
}

impl Verdict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoSignificantDifference => "no significant difference",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// A client fell behind when its send delay (sent − scheduled) had a p99 above
/// [`SEND_DELAY_FLOOR_MS`] or [`SEND_DELAY_SHARE`] of the stage's median TTFT, whichever is
/// larger (`docs/experiments.md`: calibrated on this machine's runs).
pub(crate) const SEND_DELAY_FLOOR_MS: f64 = 10.0;
/// See [`SEND_DELAY_FLOOR_MS`].
pub(crate) const SEND_DELAY_SHARE: f64 = 0.05;
/// Fewer successful requests than this in either run make a per-request metric's verdict
/// inconclusive (a bootstrap of a handful of values gives intervals too narrow to trust).
pub(crate) const MIN_REQUESTS: usize = 20;
/// A request sent this late or later counts as a late send.
pub(crate) const LATE_SEND_MS: f64 = 10.0;

/// The send-delay p99 above which a stage's client fell behind, for its median TTFT.
pub(crate) fn send_delay_limit_ms(median_ttft_ms: f64) -> f64 {
    if median_ttft_ms.is_finite() {
        (SEND_DELAY_SHARE * median_ttft_ms).max(SEND_DELAY_FLOOR_MS)
    } else {
        SEND_DELAY_FLOOR_MS
    }
}

/// The client's own health in one stage of one run: how late it sent the requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Health {
    pub stage: u32,
    /// p99 of sent − scheduled, ms.
    pub send_delay_p99_ms: f64,
    /// Requests sent [`LATE_SEND_MS`] or more after their scheduled time.
    pub late_sends: usize,
    pub requests: usize,
    /// [`send_delay_limit_ms`] of the stage.
    pub limit_ms: f64,
    pub fell_behind: bool,
    /// Why the send delay was not judged (a `max_concurrency` stage), when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_judged: Option<String>,
}

impl Health {
    pub(crate) fn of(stage: u32, s: &Sample) -> Health {
        let p99 = percentile::linear(&mut s.send_delay_ms.clone(), 0.99);
        let limit = send_delay_limit_ms(percentile::linear(&mut s.ttft_ms.clone(), 0.5));
        let not_judged = s
            .waits_for_slots
            .then(|| "max_concurrency: requests wait for a slot by design, so the send delay is not the client's health".to_string());
        Health {
            stage,
            send_delay_p99_ms: p99,
            late_sends: s.send_delay_ms.iter().filter(|d| **d >= LATE_SEND_MS).count(),
            requests: s.send_delay_ms.len(),
            limit_ms: limit,
            fell_behind: not_judged.is_none() && p99.is_finite() && p99 > limit,
            not_judged,
        }
    }
}

/// One metric of one stage: the baseline, the other run, `other − baseline` with its interval.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Diff {
    pub stage: u32,
    /// `ttft_ms`, `tpot_ms`, `e2el_ms`, `request_throughput`.
    pub metric: String,
    /// `mean`, `median`, `p99`.
    pub stat: String,
    pub baseline: f64,
    pub value: f64,
    pub difference: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// The difference relative to the baseline, e.g. 0.2 = +20%; its interval is that of the
    /// ratio other ÷ baseline less one (percentiles of the resamples' ratios; for throughput at
    /// least the counts' Poisson noise on the log scale), so it never reads below −100%.
    pub relative: f64,
    pub relative_low: f64,
    pub relative_high: f64,
    pub verdict: Verdict,
    /// Why the verdict is [`Verdict::Inconclusive`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    pub n_baseline: usize,
    pub n_value: usize,
    /// The block lengths the resampling used (1: value by value).
    pub block_baseline: usize,
    pub block_value: usize,
}

/// One run against the baseline.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Pair {
    pub baseline: String,
    pub other: String,
    pub diffs: Vec<Diff>,
    /// Each stage's client health in either run.
    pub baseline_health: Vec<Health>,
    pub other_health: Vec<Health>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    pub level: f64,
    pub resamples: usize,
    pub method: String,
    pub pairs: Vec<Pair>,
}

impl Pair {
    /// `other` against `baseline` (named as the user knows them): every difference, each
    /// stage's client health, and every verdict of a stage where a client fell behind made
    /// [`Verdict::Inconclusive`], saying in which run and by how much.
    pub(crate) fn of(
        (baseline, a): (&str, &BTreeMap<u32, Sample>),
        (other, b): (&str, &BTreeMap<u32, Sample>),
        level: f64,
        resamples: usize,
        how: Resampling,
    ) -> Pair {
        let health = |s: &BTreeMap<u32, Sample>| -> Vec<Health> {
            s.iter()
                .filter(|(k, _)| a.contains_key(k) && b.contains_key(k))
                .map(|(k, x)| Health::of(*k, x))
                .collect()
        };
        let (ha, hb) = (health(a), health(b));
        let mut diffs = compare_samples(a, b, level, resamples, how);
        for d in &mut diffs {
            let behind: Vec<String> = [(baseline, &ha), (other, &hb)]
                .iter()
                .filter_map(|(name, hs)| {
                    let h = hs.iter().find(|h| h.stage == d.stage && h.fell_behind)?;
                    Some(format!("in run {name} (send delay p99 {:.1} ms)", h.send_delay_p99_ms))
                })
                .collect();
            if !behind.is_empty() {
                d.verdict = Verdict::Inconclusive;
                d.why = Some(format!("the client fell behind {}", behind.join(" and ")));
            }
        }
        Pair {
            baseline: baseline.to_string(),
            other: other.to_string(),
            diffs,
            baseline_health: ha,
            other_health: hb,
        }
    }
}

/// Reads the per-request samples of a work directory's latest results, by stage, each in the
/// order the requests were sent.
pub(crate) fn samples(dir: &Path) -> Result<BTreeMap<u32, Sample>, ExperimentError> {
    let results = RunDirs::latest(dir).map(|r| r.results).unwrap_or_else(|| dir.join(layout::RESULTS));
    let path = results.join("requests.csv");
    let bad = |why: String| ExperimentError::State { path: path.display().to_string(), why };
    let mut reader = Reader::open(&path).map_err(|e| bad(e.to_string()))?;
    let mut out: BTreeMap<u32, Sample> = BTreeMap::new();
    let mut ends: BTreeMap<u32, (f64, f64, Vec<f64>)> = BTreeMap::new();
    // (sent, ttft, e2el, tpot) of each successful request, by stage, to be put in send order.
    type Done = (f64, f64, f64, Option<f64>);
    let mut done: BTreeMap<u32, Vec<Done>> = BTreeMap::new();
    // A row whose stage or times are bad is an error (as in the analysis: the times are at
    // most a week, so the per-second bins below are bounded); one that failed or got no token
    // counts in its stage's span and send delay only.
    while let Some(row) = reader.next_row().map_err(|e| bad(e.to_string()))? {
        let at = |e: String| bad(format!("line {}: {e}", row.line()));
        let stage = row.stage().map_err(|e| at(e.to_string()))?;
        let times = row.times().map_err(|e| at(e.to_string()))?;
        if row.warmup() {
            continue;
        }
        let (sent, end) = (times.sent, times.end);
        out.entry(stage).or_default().send_delay_ms.push((sent - times.scheduled).max(0.0) * 1e3);
        let span = ends.entry(stage).or_insert((f64::INFINITY, 0.0, Vec::new()));
        span.0 = span.0.min(sent);
        span.1 = span.1.max(end);
        let (Some(first), Some(last)) = (times.first, times.last) else {
            continue;
        };
        if row.error_kind().is_some() {
            continue;
        }
        span.2.push(end);
        let tokens = row.count(Col::OutputTokens).unwrap_or(0);
        let tpot = (tokens > 1).then(|| (last - first) * 1e3 / (tokens - 1) as f64);
        done.entry(stage).or_default().push((sent, (first - sent) * 1e3, (last - sent) * 1e3, tpot));
    }
    for (stage, mut rows) in done {
        rows.sort_by(|x, y| x.0.total_cmp(&y.0));
        let s = out.entry(stage).or_default();
        s.ttft_ms = rows.iter().map(|r| r.1).collect();
        s.e2el_ms = rows.iter().map(|r| r.2).collect();
        s.tpot_ms = rows.iter().filter_map(|r| r.3).collect();
    }
    for (stage, (start, end, done)) in ends {
        let whole = ((end - start).max(0.0)).floor() as usize;
        let mut bins = vec![0.0; whole];
        for t in done {
            let i = (t - start).floor() as usize;
            if i < whole {
                bins[i] += 1.0;
            }
        }
        out.entry(stage).or_default().per_second = bins;
    }
    // The stages' loads, from run.json (a run without one is judged on its send delay).
    let info: Option<RunInfo> =
        std::fs::read(results.join("run.json")).ok().and_then(|t| serde_json::from_slice(&t).ok());
    for w in info.iter().flat_map(|i| &i.stages) {
        if let Some(s) = out.get_mut(&w.stage) {
            s.waits_for_slots = w.label.contains("max_concurrency");
        }
    }
    Ok(out)
}

/// Every headline difference of `other` against `baseline`, stage by stage (stages present in
/// both), each verdict from its interval alone ([`Pair::of`] adds the clients' health).
pub(crate) fn compare_samples(
    baseline: &BTreeMap<u32, Sample>,
    other: &BTreeMap<u32, Sample>,
    level: f64,
    resamples: usize,
    how: Resampling,
) -> Vec<Diff> {
    let mut out = Vec::new();
    for (stage, a) in baseline {
        let Some(b) = other.get(stage) else { continue };
        // (metric, baseline values, other values, statistics, higher is better)
        type Metric<'a> = (&'a str, &'a Vec<f64>, &'a Vec<f64>, &'a [&'a str], bool);
        let metrics: [Metric; 4] = [
            ("ttft_ms", &a.ttft_ms, &b.ttft_ms, &["mean", "median", "p99"], false),
            ("tpot_ms", &a.tpot_ms, &b.tpot_ms, &["mean", "median", "p99"], false),
            ("e2el_ms", &a.e2el_ms, &b.e2el_ms, &["mean", "median", "p99"], false),
            ("request_throughput", &a.per_second, &b.per_second, &["mean"], true),
        ];
        for (k, (metric, xa, xb, stats, higher_better)) in metrics.into_iter().enumerate() {
            // Once per metric (the rule reads the whole series).
            if xa.is_empty() || xb.is_empty() {
                continue;
            }
            let blocks = bootstrap::blocks(how, xa, xb);
            let seed = |j: usize| 0xb0075 ^ (u64::from(*stage) << 16) ^ ((k as u64) << 8) ^ j as u64;
            // A sample resampled m out of n: the metric's statistics from the same resamples
            // (the cost is in drawing them); else each from its own, as always.
            let intervals: Vec<bootstrap::Interval> = if xa.len().max(xb.len()) > bootstrap::MAX_RESAMPLE {
                bootstrap::differences_in_blocks(xa, xb, stats, level, resamples, seed(0), blocks)
            } else {
                stats
                    .iter()
                    .enumerate()
                    .map(|(j, w)| {
                        bootstrap::difference_in_blocks(xa, xb, w, level, resamples, seed(j), blocks)
                    })
                    .collect()
            };
            for (which, i) in stats.iter().zip(intervals) {
                let (d, mut lo, mut hi) = (i.difference, i.low, i.high);
                let (mut ratio_lo, mut ratio_hi) = (i.ratio_low, i.ratio_high);
                let base = bootstrap::statistic(which, &mut xa.clone());
                let value = bootstrap::statistic(which, &mut xb.clone());
                if metric == "request_throughput" && how == Resampling::Blocks && lo.is_finite() {
                    // Completions per second are counts: the interval is at least as wide as
                    // their Poisson noise (variance = mean), which a handful of windows cannot
                    // show by resampling.
                    let mean = |x: &Vec<f64>| x.iter().sum::<f64>() / x.len() as f64;
                    let (ma, mb) = (mean(xa), mean(xb));
                    let (na, nb) = (xa.len() as f64, xb.len() as f64);
                    let z = bootstrap::normal_quantile(0.5 + level / 2.0);
                    let half = z * (ma / na + mb / nb).sqrt();
                    lo = lo.min(d - half);
                    hi = hi.max(d + half);
                    // The ratio's, on the log scale (where a ratio's noise is symmetric and
                    // never crosses zero): var(log mean) ≈ 1 / (mean · windows) for counts.
                    if ma > 0.0 && mb > 0.0 && ratio_lo.is_finite() {
                        let half = z * (1.0 / (ma * na) + 1.0 / (mb * nb)).sqrt();
                        let r = mb / ma;
                        ratio_lo = ratio_lo.min(r * (-half).exp());
                        ratio_hi = ratio_hi.max(r * half.exp());
                    }
                }
                let significant = lo.is_finite() && hi.is_finite() && (lo > 0.0 || hi < 0.0);
                // A handful of requests gives a bootstrap interval too narrow to trust.
                let few = metric != "request_throughput" && xa.len().min(xb.len()) < MIN_REQUESTS;
                let verdict = match (few, significant, d > 0.0, higher_better) {
                    (true, ..) => Verdict::Inconclusive,
                    (_, false, _, _) => Verdict::NoSignificantDifference,
                    (_, true, up, hb) if up == hb => Verdict::Better,
                    _ => Verdict::Worse,
                };
                let why = few.then(|| {
                    format!(
                        "too few requests to judge: {} and {} (at least {MIN_REQUESTS} each)",
                        xa.len(),
                        xb.len()
                    )
                });
                let rel = |x: f64| if base != 0.0 { x / base } else { f64::NAN };
                // The relative interval is the ratio's (other ÷ baseline, from the same
                // resamples) less one, not the difference's divided by the baseline: that one
                // ignores the baseline's own noise and can read below −100%, a change no
                // non-negative metric can make.
                let ratio = |r: f64| if base > 0.0 { r - 1.0 } else { f64::NAN };
                out.push(Diff {
                    stage: *stage,
                    metric: metric.to_string(),
                    stat: which.to_string(),
                    baseline: base,
                    value,
                    difference: d,
                    ci_low: lo,
                    ci_high: hi,
                    relative: rel(d),
                    relative_low: ratio(ratio_lo),
                    relative_high: ratio(ratio_hi),
                    verdict,
                    why,
                    n_baseline: xa.len(),
                    n_value: xb.len(),
                    block_baseline: i.block_a,
                    block_value: i.block_b,
                });
            }
        }
    }
    out
}

/// Compares work directories: every other one against the first.
pub(crate) fn compare_dirs(
    dirs: &[&Path],
    level: f64,
    resamples: usize,
    how: Resampling,
) -> Result<Comparison, ExperimentError> {
    // The directories' records read at once when there are cores for each (two runs of a
    // million records: each read is most of the time), else each when its turn comes.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut read: std::collections::VecDeque<_> = if dirs.len() > 1 && dirs.len() <= cores {
        std::thread::scope(|scope| {
            let reads: Vec<_> = dirs.iter().map(|d| scope.spawn(move || samples(d))).collect();
            reads.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        })
    } else {
        std::collections::VecDeque::new()
    };
    let base = read.pop_front().unwrap_or_else(|| samples(dirs[0]))?;
    let name = dirs[0].display().to_string();
    let mut pairs = Vec::new();
    for d in &dirs[1..] {
        let other = read.pop_front().unwrap_or_else(|| samples(d))?;
        let pair = Pair::of((&name, &base), (&d.display().to_string(), &other), level, resamples, how);
        if pair.diffs.is_empty() {
            return Err(ExperimentError::State {
                path: d.display().to_string(),
                why: format!(
                    "nothing to compare with {name}: no measured stage in common (stages {:?} and {:?}), \
                     or no request completed",
                    base.keys().collect::<Vec<_>>(),
                    other.keys().collect::<Vec<_>>()
                ),
            });
        }
        pairs.push(pair);
    }
    Ok(Comparison { level, resamples, method: method(how), pairs })
}

/// `Comparison.method`: how the intervals were made.
fn method(how: Resampling) -> String {
    match how {
        Resampling::Blocks => {
            "circular block bootstrap, percentile interval of other − baseline: per-request \
                               metrics in send order and throughput by 1-s window, each resampled by blocks \
                               of the Politis–White length (autocorrelation holds the interval); \
                               throughput's interval at least its Poisson count noise; a stage whose \
                               client fell behind (send delay p99 above max(10 ms, 5% of the median TTFT)) \
                               is inconclusive"
                .into()
        }
        Resampling::Independent => "bootstrap percentile interval of other − baseline; per-request metrics \
                                    resampled by request as if independent, throughput by 1-s window; a \
                                    stage whose client fell behind (send delay p99 above max(10 ms, 5% of \
                                    the median TTFT)) is inconclusive"
            .into(),
    }
}

/// The factor an experiment's `compare: true` compares: the first, in file order, that takes
/// two levels or more (each other level is compared against its first).
pub(crate) fn compared_factor(plan: &ExperimentPlan) -> Result<&str, ExperimentError> {
    plan.factors
        .iter()
        .map(|(f, _)| f.as_str())
        .find(|f| {
            let mut seen: Vec<&serde_json::Value> = Vec::new();
            for p in &plan.points {
                if let Some((_, v)) = p.point.values.iter().find(|(k, _)| k == f)
                    && !seen.contains(&v)
                {
                    seen.push(v);
                }
            }
            seen.len() >= 2
        })
        .ok_or_else(|| ExperimentError::Invalid {
            at: plan.file.origin.clone(),
            message:
                "`compare: true` needs a factor with two levels or more (each is compared against the first)"
                    .into(),
        })
}

/// An A/B experiment: on the compared factor ([`compared_factor`]), each point at another level
/// against the point at the first level with every other factor equal.
pub(crate) fn experiment_ab(plan: &ExperimentPlan, level: f64) -> Result<Comparison, ExperimentError> {
    let factor = compared_factor(plan)?;
    let of = |p: &super::design::Point| p.values.iter().find(|(k, _)| k == factor).map(|(_, v)| v.clone());
    let first = plan.points.first().and_then(|p| of(&p.point));
    let mut pairs = Vec::new();
    for a in plan.points.iter().filter(|p| of(&p.point) == first) {
        let rest = |p: &super::design::Point| -> Vec<(String, serde_json::Value)> {
            p.values.iter().filter(|(k, _)| k != factor).cloned().collect()
        };
        let da = plan.root.join(layout::POINTS).join(&a.point.id);
        let Ok(sa) = samples(&da) else { continue };
        for b in plan.points.iter().filter(|p| of(&p.point) != first && rest(&p.point) == rest(&a.point)) {
            let db = plan.root.join(layout::POINTS).join(&b.point.id);
            let Ok(sb) = samples(&db) else { continue };
            pairs.push(Pair::of(
                (&format!("{} {}", a.point.id, a.point.label()), &sa),
                (&format!("{} {}", b.point.id, b.point.label()), &sb),
                level,
                2000,
                Resampling::Blocks,
            ));
        }
    }
    Ok(Comparison { level, resamples: 2000, method: method(Resampling::Blocks), pairs })
}

/// Overlaid TTFT and E2EL CDFs of the runs (each stage a line) into `out`.
pub(crate) fn plots(dirs: &[&Path], out: &Path) -> Result<Vec<String>, ExperimentError> {
    use crate::analysis::{self, plots::LineChart};
    std::fs::create_dir_all(out)
        .map_err(|e| ExperimentError::State { path: out.display().to_string(), why: e.to_string() })?;
    let mut charts = vec![
        LineChart::new(
            "compare_ttft_cdf",
            "Time to first token, overlaid",
            "milliseconds",
            "fraction of requests",
        ),
        LineChart::new(
            "compare_e2el_cdf",
            "End-to-end latency, overlaid",
            "milliseconds",
            "fraction of requests",
        ),
    ];
    for d in dirs {
        let results = RunDirs::latest(d).map(|r| r.results).unwrap_or_else(|| d.join(layout::RESULTS));
        let a =
            analysis::compute(&results, analysis::Convention::Vllm, &Default::default()).map_err(|e| {
                ExperimentError::State { path: results.display().to_string(), why: e.to_string() }
            })?;
        let name = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        for s in &a.series.stages {
            let label =
                if a.series.stages.len() > 1 { format!("{name} stage {}", s.stage) } else { name.clone() };
            charts[0].series.push((label.clone(), s.ttft.clone()));
            charts[1].series.push((label, s.e2el.clone()));
        }
    }
    let mut drawn = Vec::new();
    for c in &mut charts {
        c.finish_cdf();
        if c.has_data() {
            crate::analysis::plots::save(out, c)?;
            drawn.push(c.name.clone());
        }
    }
    Ok(drawn)
}

impl Comparison {
    /// The side-by-side table, for people.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        for p in &self.pairs {
            let _ = writeln!(out, "baseline: {}\nagainst:  {}", p.baseline, p.other);
            let _ = writeln!(
                out,
                "{:>5}  {:<20} {:<7} {:>11} {:>11} {:>10}  {:<24}    verdict ({:.0}% interval)",
                "stage",
                "metric",
                "stat",
                "baseline",
                "other",
                "change",
                "interval of the change",
                self.level * 100.0
            );
            for d in &p.diffs {
                let pct = |x: f64| if x.is_finite() { format!("{:+.1}%", x * 100.0) } else { "n/a".into() };
                let _ = writeln!(
                    out,
                    "{:>5}  {:<20} {:<7} {:>11.3} {:>11.3} {:>10}  [{:>9}, {:>9}]    {}",
                    d.stage,
                    d.metric,
                    d.stat,
                    d.baseline,
                    d.value,
                    pct(d.relative),
                    pct(d.relative_low),
                    pct(d.relative_high),
                    d.verdict_text()
                );
            }
            for line in p.health_lines() {
                let _ = writeln!(out, "{line}");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "method: {}; {} resamples", self.method, self.resamples);
        out
    }
}

impl Diff {
    /// `better`, or `inconclusive: why`.
    fn verdict_text(&self) -> String {
        match &self.why {
            Some(why) => format!("{}: {why}", self.verdict.as_str()),
            None => self.verdict.as_str().to_string(),
        }
    }
}

impl Pair {
    /// One line per stage and run: the client's send delay and whether it kept up.
    fn health_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, hs) in [(&self.baseline, &self.baseline_health), (&self.other, &self.other_health)] {
            for h in hs {
                let state = match (&h.not_judged, h.fell_behind) {
                    (Some(why), _) => format!("not judged ({why})"),
                    (None, true) => format!("FELL BEHIND (limit {:.1} ms)", h.limit_ms),
                    (None, false) => format!("kept up (limit {:.1} ms)", h.limit_ms),
                };
                lines.push(format!(
                    "client of {name}, stage {}: send delay p99 {:.1} ms, {} of {} requests sent ≥ {LATE_SEND_MS} ms late: {state}",
                    h.stage, h.send_delay_p99_ms, h.late_sends, h.requests
                ));
            }
        }
        lines
    }
}

/// What `compare.html` shows.
#[derive(Debug, Serialize)]
struct CompareView {
    /// The intervals' level, in percent.
    level: String,
    pairs: Vec<PairView>,
    method: String,
    /// The charts drawn beside the report (`compare_ttft_cdf`, …).
    charts: Vec<String>,
}

#[derive(Debug, Serialize)]
struct PairView {
    baseline: String,
    other: String,
    /// stage, metric, stat, baseline, other, change, interval, verdict.
    rows: Vec<Vec<String>>,
    health: Vec<String>,
}

/// `report.html` of `benchflow compare --plots DIR`, in `DIR` beside the charts: each pair's
/// differences as a table, the clients' health, the method (the figures of the text table).
pub(crate) fn write_report(c: &Comparison, charts: &[String], out: &Path) -> Result<(), ExperimentError> {
    let pct = |x: f64| if x.is_finite() { format!("{:+.1}%", x * 100.0) } else { "n/a".into() };
    let view = CompareView {
        level: format!("{:.0}", c.level * 100.0),
        pairs: c
            .pairs
            .iter()
            .map(|p| PairView {
                baseline: p.baseline.clone(),
                other: p.other.clone(),
                rows: p
                    .diffs
                    .iter()
                    .map(|d| {
                        vec![
                            d.stage.to_string(),
                            d.metric.clone(),
                            d.stat.clone(),
                            format!("{:.3}", d.baseline),
                            format!("{:.3}", d.value),
                            pct(d.relative),
                            format!("[{}, {}]", pct(d.relative_low), pct(d.relative_high)),
                            d.verdict_text(),
                        ]
                    })
                    .collect(),
                health: p.health_lines(),
            })
            .collect(),
        method: format!("{}; {} resamples", c.method, c.resamples),
        charts: charts.to_vec(),
    };
    let html = crate::analysis::html::render("compare.html", "c", &view)?;
    crate::workdir::write_atomic(&out.join("report.html"), html.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{analysis::percentile::linear as quantile, rng::Rng};

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&mut v, 0.5), 2.5);
        assert_eq!(quantile(&mut v, 0.0), 1.0);
        assert_eq!(quantile(&mut v, 1.0), 4.0);
        assert!((quantile(&mut v, 0.99) - 3.97).abs() < 1e-12);
    }

    #[test]
    fn a_bad_row_is_an_error_naming_its_line_not_a_huge_allocation() {
        let work = std::env::temp_dir().join(format!("bf-compare-bad-{}", std::process::id()));
        let dir = work.join("results");
        let good = "1,0,0,0,1000,2000,2500,3000,3,10,3,usage,200,,,250 250\n";
        for (end, word) in [("inf", "end_us"), ("1e18", "end_us"), ("-1", "end_us"), ("500", "after end_us")]
        {
            std::fs::create_dir_all(&dir).unwrap();
            let bad = format!("1,1,0,0,1000,,,{end},0,10,0,usage,0,connect,x,\n");
            std::fs::write(
                dir.join("requests.csv"),
                format!("{}\n{good}{bad}", crate::results::HEADER.join(",")),
            )
            .unwrap();
            let e = samples(&work).err().unwrap_or_else(|| panic!("{end}: accepted")).to_string();
            assert!(e.contains("requests.csv: line 3: ") && e.contains(word), "{end}: {e}");
        }
        // The same file with good rows only reads.
        std::fs::write(dir.join("requests.csv"), format!("{}\n{good}", crate::results::HEADER.join(",")))
            .unwrap();
        assert_eq!(samples(&work).unwrap()[&1].ttft_ms, [1.0]);
        std::fs::remove_dir_all(&work).unwrap();
    }

    /// Normal samples from the shared generator.
    fn normal(n: usize, mean: f64, sd: f64, seed: u64) -> Vec<f64> {
        let mut r = Rng::new(seed);
        (0..n).map(|_| mean + sd * r.normal()).collect()
    }

    /// Three requests a side: a bootstrap would call 10/12/14 against 13/15/17 ms "worse"
    /// with a narrow interval; too few to judge, and said so.
    #[test]
    fn a_handful_of_requests_is_inconclusive_and_says_why() {
        let sample = |ttft: &[f64]| {
            BTreeMap::from([(
                1,
                Sample { ttft_ms: ttft.to_vec(), per_second: vec![3.0], ..Sample::default() },
            )])
        };
        let d = compare_samples(
            &sample(&[10.0, 12.0, 14.0]),
            &sample(&[13.0, 15.0, 17.0]),
            0.95,
            1000,
            Resampling::Blocks,
        );
        let mean = d.iter().find(|x| x.metric == "ttft_ms" && x.stat == "mean").unwrap();
        assert_eq!(mean.verdict, Verdict::Inconclusive);
        assert_eq!(mean.why.as_deref(), Some("too few requests to judge: 3 and 3 (at least 20 each)"));
    }

    #[test]
    fn verdicts_follow_the_direction_of_better() {
        let mut a = BTreeMap::new();
        let mut b = BTreeMap::new();
        a.insert(
            1,
            Sample {
                ttft_ms: normal(300, 100.0, 5.0, 1),
                per_second: normal(60, 10.0, 1.0, 3),
                ..Sample::default()
            },
        );
        b.insert(
            1,
            Sample {
                ttft_ms: normal(300, 80.0, 5.0, 2),
                per_second: normal(60, 8.0, 1.0, 4),
                ..Sample::default()
            },
        );
        let d = compare_samples(&a, &b, 0.95, 1000, Resampling::Blocks);
        let find = |m: &str, s: &str| d.iter().find(|x| x.metric == m && x.stat == s).unwrap();
        assert_eq!(find("ttft_ms", "mean").verdict, Verdict::Better, "lower latency is better");
        assert_eq!(find("request_throughput", "mean").verdict, Verdict::Worse, "lower throughput is worse");
        assert!(d.iter().all(|x| x.metric != "tpot_ms"), "no data, no row");
    }

    /// A stage of `n` requests: TTFT about 100 ms, sent `delay` ms late (each).
    fn stage(n: usize, ttft: f64, delay: impl Fn(usize) -> f64, seed: u64) -> BTreeMap<u32, Sample> {
        let s = Sample {
            ttft_ms: normal(n, ttft, 5.0, seed),
            send_delay_ms: (0..n).map(delay).collect(),
            per_second: vec![10.0; n / 10],
            ..Sample::default()
        };
        BTreeMap::from([(1, s)])
    }

    #[test]
    fn a_client_that_fell_behind_makes_every_verdict_of_its_stage_inconclusive() {
        // The baseline's client stalled: 3% of its requests went out 25 ms late. The other is
        // 10% faster, which alone would be `better`.
        let a = stage(300, 100.0, |i| if i % 33 == 0 { 25.0 } else { 0.3 }, 1);
        let b = stage(300, 90.0, |_| 0.3, 2);
        let p = Pair::of(("a", &a), ("b", &b), 0.95, 500, Resampling::Blocks);
        assert!(p.baseline_health[0].fell_behind && !p.other_health[0].fell_behind, "{p:?}");
        assert_eq!(p.baseline_health[0].send_delay_p99_ms, 25.0);
        assert_eq!(p.baseline_health[0].limit_ms, 10.0, "max(10 ms, 5% of ~100 ms)");
        for d in &p.diffs {
            assert_eq!(d.verdict, Verdict::Inconclusive, "{d:?}");
            assert_eq!(
                d.why.as_deref(),
                Some("the client fell behind in run a (send delay p99 25.0 ms)"),
                "{d:?}"
            );
        }
        let c =
            Comparison { level: 0.95, resamples: 500, method: method(Resampling::Blocks), pairs: vec![p] };
        let t = c.table();
        assert!(t.contains("inconclusive: the client fell behind in run a (send delay p99 25.0 ms)"), "{t}");
        assert!(t.contains("client of a, stage 1: send delay p99 25.0 ms, 10 of 300 requests"), "{t}");
        // Both clients keeping up: the difference is found.
        let a = stage(300, 100.0, |_| 0.3, 1);
        let p = Pair::of(("a", &a), ("b", &b), 0.95, 500, Resampling::Blocks);
        let ttft = p.diffs.iter().find(|d| d.metric == "ttft_ms" && d.stat == "median").unwrap();
        assert_eq!((ttft.verdict, ttft.why.as_deref()), (Verdict::Better, None));
        // The limit grows with the TTFT: 25 ms late against 1-s TTFTs is 2.5%, within 5%.
        let slow = stage(300, 1000.0, |i| if i % 33 == 0 { 25.0 } else { 0.3 }, 1);
        assert!(!Health::of(1, &slow[&1]).fell_behind);
        // A busy but healthy client of this machine (the A/A calibration's worst, 5.8 ms) keeps up.
        let busy = stage(300, 20.0, |i| if i % 50 == 0 { 5.8 } else { 0.5 }, 1);
        assert!(!Health::of(1, &busy[&1]).fell_behind);
        // A max_concurrency stage waits for slots by design: not judged.
        let mut capped = a.clone();
        capped.get_mut(&1).unwrap().send_delay_ms = vec![40.0; 300];
        capped.get_mut(&1).unwrap().waits_for_slots = true;
        let h = Health::of(1, &capped[&1]);
        assert!(!h.fell_behind && h.not_judged.is_some(), "{h:?}");
    }
}
