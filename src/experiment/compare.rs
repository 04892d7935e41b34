//! Runs side by side: each headline metric's difference from the baseline with a bootstrap
//! confidence interval, and a verdict. Per-request metrics (TTFT, TPOT, E2EL, in ms, as vllm
//! bench serve defines them) are resampled by request; throughput by 1-second window of the
//! stage (completions per window). Percentile intervals of `B − A` from seeded resamples, so
//! the same records give the same answer. `benchflow compare` and `compare: true` in an
//! experiment use it.

use crate::workdir::layout;
use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use serde::Serialize;

use super::{ExperimentError, plan::ExperimentPlan};
use crate::{
    analysis::bootstrap,
    results::{Col, Reader},
    workdir::runs::RunDirs,
};

/// What one stage of one run gives the comparison.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub ttft_ms: Vec<f64>,
    pub tpot_ms: Vec<f64>,
    pub e2el_ms: Vec<f64>,
    /// Successful completions in each whole second of the stage.
    pub per_second: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    Better,
    Worse,
    NoSignificantDifference,
}

impl Verdict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::NoSignificantDifference => "no significant difference",
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
    /// The difference relative to the baseline (and its interval), e.g. 0.2 = +20%.
    pub relative: f64,
    pub relative_low: f64,
    pub relative_high: f64,
    pub verdict: Verdict,
    pub n_baseline: usize,
    pub n_value: usize,
}

/// One run against the baseline.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Pair {
    pub baseline: String,
    pub other: String,
    pub diffs: Vec<Diff>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    pub level: f64,
    pub resamples: usize,
    pub method: &'static str,
    pub pairs: Vec<Pair>,
}

/// Reads the per-request samples of a work directory's latest results, by stage.
pub(crate) fn samples(dir: &Path) -> Result<BTreeMap<u32, Sample>, ExperimentError> {
    let results = RunDirs::latest(dir).map(|r| r.results).unwrap_or_else(|| dir.join(layout::RESULTS));
    let path = results.join("requests.csv");
    let bad = |why: String| ExperimentError::State { path: path.display().to_string(), why };
    let mut reader = Reader::open(&path).map_err(|e| bad(e.to_string()))?;
    let mut out: BTreeMap<u32, Sample> = BTreeMap::new();
    let mut ends: BTreeMap<u32, (f64, f64, Vec<f64>)> = BTreeMap::new();
    // A row whose stage or times are bad is an error (as in the analysis: the times are at
    // most a week, so the per-second bins below are bounded); one that failed or got no token
    // counts in its stage's span only.
    while let Some(row) = reader.next_row().map_err(|e| bad(e.to_string()))? {
        let at = |e: String| bad(format!("line {}: {e}", row.line()));
        let stage = row.stage().map_err(|e| at(e.to_string()))?;
        let times = row.times().map_err(|e| at(e.to_string()))?;
        if row.warmup() {
            continue;
        }
        let (sent, end) = (times.sent, times.end);
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
        let s = out.entry(stage).or_default();
        s.ttft_ms.push((first - sent) * 1e3);
        s.e2el_ms.push((last - sent) * 1e3);
        let tokens = row.count(Col::OutputTokens).unwrap_or(0);
        if tokens > 1 {
            s.tpot_ms.push((last - first) * 1e3 / (tokens - 1) as f64);
        }
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
    Ok(out)
}

/// Every headline difference of `other` against `baseline`, stage by stage (stages present in
/// both).
pub(crate) fn compare_samples(
    baseline: &BTreeMap<u32, Sample>,
    other: &BTreeMap<u32, Sample>,
    level: f64,
    resamples: usize,
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
            for (j, which) in stats.iter().enumerate() {
                if xa.is_empty() || xb.is_empty() {
                    continue;
                }
                let seed = 0xb0075 ^ (u64::from(*stage) << 16) ^ ((k as u64) << 8) ^ j as u64;
                let (d, lo, hi) = bootstrap::difference(xa, xb, which, level, resamples, seed);
                let base = bootstrap::statistic(which, &mut xa.clone());
                let value = bootstrap::statistic(which, &mut xb.clone());
                let significant = lo.is_finite() && hi.is_finite() && (lo > 0.0 || hi < 0.0);
                let verdict = match (significant, d > 0.0, higher_better) {
                    (false, _, _) => Verdict::NoSignificantDifference,
                    (true, up, hb) if up == hb => Verdict::Better,
                    _ => Verdict::Worse,
                };
                let rel = |x: f64| if base != 0.0 { x / base } else { f64::NAN };
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
                    relative_low: rel(lo),
                    relative_high: rel(hi),
                    verdict,
                    n_baseline: xa.len(),
                    n_value: xb.len(),
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
) -> Result<Comparison, ExperimentError> {
    let base = samples(dirs[0])?;
    let mut pairs = Vec::new();
    for d in &dirs[1..] {
        let other = samples(d)?;
        pairs.push(Pair {
            baseline: dirs[0].display().to_string(),
            other: d.display().to_string(),
            diffs: compare_samples(&base, &other, level, resamples),
        });
    }
    Ok(Comparison { level, resamples, method: METHOD, pairs })
}

const METHOD: &str = "bootstrap percentile interval of other − baseline; per-request metrics resampled by \
                      request, throughput by 1-s window";

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
            pairs.push(Pair {
                baseline: format!("{} {}", a.point.id, a.point.label()),
                other: format!("{} {}", b.point.id, b.point.label()),
                diffs: compare_samples(&sa, &sb, level, 2000),
            });
        }
    }
    Ok(Comparison { level, resamples: 2000, method: METHOD, pairs })
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
                    d.verdict.as_str()
                );
            }
            out.push('\n');
        }
        let _ = writeln!(out, "method: {}; {} resamples", self.method, self.resamples);
        out
    }
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
        let d = compare_samples(&a, &b, 0.95, 1000);
        let find = |m: &str, s: &str| d.iter().find(|x| x.metric == m && x.stat == s).unwrap();
        assert_eq!(find("ttft_ms", "mean").verdict, Verdict::Better, "lower latency is better");
        assert_eq!(find("request_throughput", "mean").verdict, Verdict::Worse, "lower throughput is worse");
        assert!(d.iter().all(|x| x.metric != "tpot_ms"), "no data, no row");
    }
}
