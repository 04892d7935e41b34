//! The experiment's own analysis, from each point's `stats.json` (and records, for the CDFs):
//! `analysis/points.csv` (one row per point and stage), latency–throughput curves with one
//! line per stack, overlaid CDFs, a heat map over two factors, the Pareto front of throughput
//! against the chosen latency with the points that meet the SLOs marked, `compare.json` for an
//! A/B design, and `report.html` linking every point's own report ([`super::report`]).
//!
//! A point dominates another on the Pareto front only where it is better beyond the noise
//! ([`Noisy`]: the Poisson noise of the stage's completions for throughput, an interval of the
//! latency statistic); points on the front that no difference separates are ties. Each point's
//! client health (its send delay, [`Health`]) is shown beside it, with a warning and a note on a
//! rate sweep's non-monotonic latency when a client fell behind.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Serialize;
use serde_json::Value;

use super::{
    ExperimentError,
    compare::{self, Health, Sample},
    design::{compact, short, shown},
    measure,
    plan::ExperimentPlan,
    search,
    state::{ExpState, PointStatus},
};
use crate::{
    analysis::{
        self, StatsDoc, bootstrap, percentile,
        plots::{self, HeatMap, LineChart},
    },
    resolve::Resolved,
    spec::experiment::Design,
    workdir::{layout, runs::RunDirs, write_atomic},
};

/// One stage of one point, as the experiment compares it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub point: String,
    pub name: String,
    pub stack: String,
    pub status: String,
    pub values: Vec<(String, Value)>,
    pub stage: u32,
    pub stage_label: String,
    /// `stats.json` keys → values.
    pub metrics: BTreeMap<String, f64>,
    pub error_rate: f64,
    /// Whether the share of requests meeting every SLO reached the file's `slo_share`
    /// (None without SLOs).
    pub meets_slo: Option<bool>,
    pub pareto: bool,
    /// The other points (`p003`, or `p003/2` for its stage 2) on the front that no difference
    /// beyond the noise separates from this one, in either metric.
    pub pareto_tied_with: Vec<String>,
    /// The throughput and latency as the front weighs them, with their noise.
    pub noisy: Option<Noisy>,
    /// The client's health in the stage (from its records).
    pub health: Option<Health>,
    /// Prefix-cache hits / lookups over the engines behind a router (the point's whole run).
    pub prefix_cache_hit_rate: Option<f64>,
    /// When a factor is a request rate: whether the stage was stable by the search's default
    /// criteria (`docs/search.md`), and why not.
    pub stable: Option<(bool, String)>,
}

/// What the experiment analysis found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Findings {
    pub rows: Vec<Row>,
    pub search: Option<search::Outcome>,
    pub charts: Vec<String>,
    pub comparison: Option<crate::experiment::compare::Comparison>,
    /// Warnings and notes for people: a client that fell behind, a rate sweep whose latency is
    /// not monotonic because of such a point.
    pub notes: Vec<String>,
}

/// The headline metrics in `points.csv`, in order.
const HEADLINE: &[&str] = &[
    "request_throughput",
    "request_goodput",
    "output_throughput",
    "mean_ttft_ms",
    "median_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "mean_e2el_ms",
    "median_e2el_ms",
    "p99_e2el_ms",
];

/// The columns of `points.csv` after [`HEADLINE`], in order.
const EXTRA: &[&str] = &[
    "prefix_cache_hit_rate",
    "send_delay_p99_ms",
    "late_sends",
    "client",
    "meets_slo",
    "goodput_slo",
    "throughput_noise",
    "latency_low",
    "latency_high",
    "pareto",
    "pareto_tied_with",
    "stable",
    "unstable_because",
];

/// `ok`, `fell behind` or `not judged` (a `max_concurrency` stage).
fn client_state(h: &Health) -> &'static str {
    match (&h.not_judged, h.fell_behind) {
        (Some(_), _) => "not judged",
        (None, true) => "fell behind",
        (None, false) => "ok",
    }
}

/// The base workload's SLOs, as goodput counts them: `ttft<=200ms tpot<=50ms`.
fn slo_text(plan: &ExperimentPlan) -> String {
    let Some(w) = plan.base().and_then(|r| r.workload) else { return String::new() };
    [("ttft", w.slo.ttft), ("tpot", w.slo.tpot), ("e2el", w.slo.e2el)]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}<={}ms", v.0 * 1e3)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn stats_of(point_dir: &Path) -> Option<(StatsDoc, PathBuf)> {
    let run = RunDirs::latest(point_dir)?;
    let text = std::fs::read(run.analysis.join("stats.json")).ok()?;
    Some((serde_json::from_slice(&text).ok()?, run.analysis))
}

/// A point as the Pareto front weighs it: its throughput `x` (higher is better) with the
/// half-width of its interval, its latency `y` (lower is better) with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Noisy {
    pub x: f64,
    pub x_half: f64,
    pub y: f64,
    pub y_low: f64,
    pub y_high: f64,
}

impl Noisy {
    /// Exact values (no noise).
    #[cfg(test)]
    fn exact(x: f64, y: f64) -> Noisy {
        Noisy { x, x_half: 0.0, y, y_low: y, y_high: y }
    }

    fn finite(&self) -> bool {
        self.x.is_finite() && self.y.is_finite()
    }

    /// Higher throughput than `o` beyond the noise of both.
    fn x_beats(&self, o: &Noisy) -> bool {
        self.x - o.x > self.x_half.hypot(o.x_half)
    }

    /// Lower latency than `o` beyond the noise of both (this one's upper side, the other's
    /// lower side).
    fn y_beats(&self, o: &Noisy) -> bool {
        self.y < o.y && o.y - self.y > (self.y_high - self.y).max(0.0).hypot((o.y - o.y_low).max(0.0))
    }

    /// Not worse than `o` beyond the noise in either metric, and better beyond it in one.
    fn dominates(&self, o: &Noisy) -> bool {
        !o.x_beats(self) && !o.y_beats(self) && (self.x_beats(o) || self.y_beats(o))
    }
}

/// The Pareto front within the noise: for each point, `None` when another dominates it (or it
/// lacks a value), else the other points on the front tied with it (neither beats the other
/// in either metric beyond the noise). Without noise this is the plain Pareto front.
pub(crate) fn pareto(m: &[Noisy]) -> Vec<Option<Vec<usize>>> {
    let on: Vec<bool> = (0..m.len())
        .map(|i| {
            m[i].finite() && !m.iter().enumerate().any(|(j, o)| j != i && o.finite() && o.dominates(&m[i]))
        })
        .collect();
    (0..m.len())
        .map(|i| {
            on[i].then(|| {
                (0..m.len())
                    .filter(|&j| {
                        j != i
                            && on[j]
                            && !m[i].x_beats(&m[j])
                            && !m[j].x_beats(&m[i])
                            && !m[i].y_beats(&m[j])
                            && !m[j].y_beats(&m[i])
                    })
                    .collect()
            })
        })
        .collect()
}

/// The interval `(low, high)` at `level` of a row's latency statistic `key`
/// (`{mean,median,pNN}_{ttft,tpot,e2el}_ms`): the mean's from its standard error, a
/// percentile's from the order statistics around it (distribution-free: the ranks
/// `n·q ± z·√(n·q·(1 − q))`); `(value, value)` for a key without either (`itl`, another).
fn latency_interval(
    key: &str,
    value: f64,
    metrics: &BTreeMap<String, f64>,
    s: Option<&Sample>,
    z: f64,
) -> (f64, f64) {
    let exact = (value, value);
    let Some((stat, metric)) = key.strip_suffix("_ms").and_then(|k| k.split_once('_')) else {
        return exact;
    };
    let Some(v) = s.and_then(|s| match metric {
        "ttft" => Some(&s.ttft_ms),
        "tpot" => Some(&s.tpot_ms),
        "e2el" => Some(&s.e2el_ms),
        _ => None,
    }) else {
        return exact;
    };
    let n = v.len() as f64;
    if n < 2.0 {
        return exact;
    }
    let q = match stat {
        "mean" => {
            let half = metrics.get(&format!("std_{metric}_ms")).map_or(0.0, |sd| z * sd / n.sqrt());
            return (value - half, value + half);
        }
        "median" => 0.5,
        p => match p.strip_prefix('p').and_then(|x| x.parse::<f64>().ok()) {
            Some(p) if (0.0..=100.0).contains(&p) => p / 100.0,
            _ => return exact,
        },
    };
    let half = z * (q * (1.0 - q) / n).sqrt();
    let mut v = v.clone();
    let lo = percentile::linear(&mut v, (q - half).max(0.0));
    let hi = percentile::linear(&mut v, (q + half).min(1.0));
    (lo.min(value), hi.max(value))
}

/// A search's record, `analysis/search.json`.
pub(crate) fn search_record(root: &Path) -> Option<search::Outcome> {
    serde_json::from_slice(&std::fs::read(root.join("analysis/search.json")).ok()?).ok()
}

/// Recomputes `analysis/` of an experiment directory (a search's trials are its points).
pub(crate) fn analyze(plan: &ExperimentPlan) -> Result<Findings, ExperimentError> {
    let (with_trials, outcome) = with_trials(plan)?;
    let plan = &with_trials;
    let root = &plan.root;
    let out = root.join("analysis");
    let io =
        |e: std::io::Error| ExperimentError::State { path: out.display().to_string(), why: e.to_string() };
    std::fs::create_dir_all(out.join("plots")).map_err(io)?;
    let state = ExpState::load(root)?;
    let e = &plan.file.spec;
    let mut rows = rows(plan, &state);
    mark_pareto(&mut rows);
    write_points_csv(&out.join("points.csv"), plan, &rows)?;
    let notes = notes(plan, &rows);
    let mut findings = Findings { rows, search: outcome, notes, ..Findings::default() };
    findings.charts = charts(plan, &findings.rows, &out.join("plots"))?;
    if let Some(o) = &findings.search {
        findings.charts.extend(search_charts(o, &out.join("plots"))?);
    }
    if e.compare {
        let c = super::compare::experiment_ab(plan, e.analysis.level)?;
        write_atomic(
            &out.join("compare.json"),
            serde_json::to_string_pretty(&c).unwrap_or_default().as_bytes(),
        )?;
        findings.comparison = Some(c);
    }
    let html = super::report::render(plan, &findings)?;
    write_atomic(&out.join("report.html"), html.as_bytes())?;
    Ok(findings)
}

/// The plan with a search's recorded trials placed as its points, and the search's record.
fn with_trials(plan: &ExperimentPlan) -> Result<(ExperimentPlan, Option<search::Outcome>), ExperimentError> {
    let mut with_trials = plan.clone();
    let Some(s) = &plan.file.spec.search else {
        return Ok((with_trials, None));
    };
    let o = search_record(&plan.root);
    let record = plan.root.join("analysis/search.json");
    if o.is_none() && record.exists() {
        // The trials are found from the record: without it the analysis shows none of them.
        errln!(
            "warning: {} is not a search record benchflow can read: the search's trials are left out of this analysis \
             (run the experiment again to rewrite it)",
            record.display()
        );
    }
    for t in o.iter().flat_map(|o| &o.trials) {
        let point = super::design::Point {
            id: t.point.clone(),
            name: None,
            values: search::point_values(s, t.x, t.seed, t.stretch.as_ref()),
        };
        with_trials.place(point)?;
    }
    Ok((with_trials, o))
}

/// A rate factor's points judged as a search judges its trials, by point id: each stable or
/// not, and a rate above the capacity that the overloaded points sharing every other value
/// measured is unstable too. Empty without a rate factor.
fn stability(plan: &ExperimentPlan, state: &ExpState) -> BTreeMap<String, search::Trial> {
    let mut judged: BTreeMap<String, search::Trial> = BTreeMap::new();
    let rate = plan
        .factors
        .iter()
        .map(|(f, _)| f)
        .find(|f| f.starts_with("workload.stages.") && f.ends_with(".rate"))
        .and_then(|f| {
            let search: crate::spec::experiment::Search =
                serde_json::from_value(serde_json::json!({ "factor": f, "from": 1, "to": 2 })).ok()?;
            Some((f.clone(), search))
        });
    let Some((path, search)) = &rate else {
        return judged;
    };
    let mut groups: BTreeMap<String, Vec<search::Trial>> = BTreeMap::new();
    for p in &plan.points {
        let id = &p.point.id;
        let done = state.points.get(id).is_some_and(|s| s.status == PointStatus::Done);
        let x = p.point.values.iter().find(|(k, _)| k == path).and_then(|(_, v)| v.as_f64());
        let (true, Some(x)) = (done, x) else { continue };
        let mut t = measure::trial(&plan.root.join("points").join(id), search, false, 0, x, 0);
        t.point = id.clone();
        let others: Vec<&(String, serde_json::Value)> =
            p.point.values.iter().filter(|(k, _)| k != path).collect();
        groups.entry(serde_json::to_string(&others).unwrap_or_default()).or_default().push(t);
    }
    for mut trials in groups.into_values() {
        for (n, t) in trials.iter_mut().enumerate() {
            t.n = n + 1;
        }
        for t in search::judged(search, &trials) {
            judged.insert(t.point.clone(), t);
        }
    }
    judged
}

/// One row per point and stage (one empty row for a point not done or without statistics).
fn rows(plan: &ExperimentPlan, state: &ExpState) -> Vec<Row> {
    let e = &plan.file.spec;
    let slo_defined = plan.base().and_then(|r| r.workload).is_some_and(|w| w.slo.is_set());
    let judged = stability(plan, state);
    let mut rows = Vec::new();
    for p in &plan.points {
        let id = &p.point.id;
        // Done with other values (the design changed and the experiment has not run since):
        // its directory holds another point's measurement, not shown under this label. (By
        // label, not hash: the hash includes the benchflow binary, which an upgrade changes.)
        let status = state
            .points
            .get(id)
            .map(|s| {
                let other = !s.label.is_empty() && s.label != p.point.label();
                if s.status == PointStatus::Done && other { PointStatus::Pending } else { s.status }
            })
            .unwrap_or_default();
        let stack = plan.stacks[p.stack].id.clone();
        let base = Row {
            point: id.clone(),
            name: p.point.name.clone().unwrap_or_default(),
            stack,
            status: format!("{status:?}").to_lowercase(),
            values: p.point.values.clone(),
            stage: 0,
            stage_label: String::new(),
            metrics: BTreeMap::new(),
            error_rate: f64::NAN,
            meets_slo: None,
            pareto: false,
            pareto_tied_with: Vec::new(),
            noisy: None,
            health: None,
            prefix_cache_hit_rate: None,
            stable: None,
        };
        let Some((doc, _)) =
            stats_of(&plan.root.join("points").join(id)).filter(|_| status == PointStatus::Done)
        else {
            rows.push(base);
            continue;
        };
        // The records (for the clients' health and the latency's interval); a point without
        // readable records has neither.
        let samples = compare::samples(&plan.root.join("points").join(id)).unwrap_or_default();
        let (queries, hits) = doc
            .replicas
            .iter()
            .fold((0.0, 0.0), |(q, h), r| (q + r.prefix_cache_queries, h + r.prefix_cache_hits));
        let z = bootstrap::normal_quantile(0.5 + e.analysis.level / 2.0);
        for st in &doc.stages {
            let v = serde_json::to_value(st).unwrap_or_default();
            let metrics: BTreeMap<String, f64> = v
                .as_object()
                .map(|m| m.iter().filter_map(|(k, v)| v.as_f64().map(|f| (k.clone(), f))).collect())
                .unwrap_or_default();
            // Nothing completed: no latency was measured (the zeros of an empty summary are
            // not 0 ms), so none is shown and the point is on no front.
            let metrics = if st.completed == 0 {
                metrics.into_iter().filter(|(k, _)| !k.ends_with("_ms")).collect()
            } else {
                metrics
            };
            let total = (st.completed + st.failed) as f64;
            let meets_slo = slo_defined.then(|| {
                let good = st.request_goodput.unwrap_or(0.0);
                st.request_throughput > 0.0 && good / st.request_throughput >= e.analysis.slo_share
            });
            let stable = judged.get(id).and_then(|t| {
                matches!(t.verdict, search::Verdict::Pass | search::Verdict::Fail)
                    .then(|| (t.verdict == search::Verdict::Pass, t.why.clone()))
            });
            let sample = samples.get(&st.stage);
            let x = metrics.get(&e.analysis.throughput).copied().unwrap_or(f64::NAN);
            let y = metrics.get(&e.analysis.latency).copied().unwrap_or(f64::NAN);
            // Completions in a stage are counts: Poisson noise, √N of N.
            let x_half = if st.completed > 0 { z * x.abs() / (st.completed as f64).sqrt() } else { 0.0 };
            let (y_low, y_high) = latency_interval(&e.analysis.latency, y, &metrics, sample, z);
            rows.push(Row {
                stable,
                noisy: (st.completed > 0).then_some(Noisy { x, x_half, y, y_low, y_high }),
                health: sample.map(|s| Health::of(st.stage, s)),
                prefix_cache_hit_rate: (queries > 0.0).then(|| hits / queries),
                stage: st.stage,
                stage_label: st.label.clone(),
                metrics,
                error_rate: if total > 0.0 { st.failed as f64 / total } else { 0.0 },
                meets_slo,
                ..base.clone()
            });
        }
    }
    rows
}

/// Marks the rows on the Pareto front within the noise ([`pareto`]), with their ties.
fn mark_pareto(rows: &mut [Row]) {
    let nan = Noisy { x: f64::NAN, x_half: 0.0, y: f64::NAN, y_low: f64::NAN, y_high: f64::NAN };
    let m: Vec<Noisy> = rows.iter().map(|r| r.noisy.unwrap_or(nan)).collect();
    // `p003`, or `p003/2` for a point of several stages.
    let name = |r: &Row| {
        let stages = rows.iter().filter(|x| x.point == r.point).count();
        if stages > 1 { format!("{}/{}", r.point, r.stage) } else { r.point.clone() }
    };
    let names: Vec<String> = rows.iter().map(name).collect();
    for (i, front) in pareto(&m).into_iter().enumerate() {
        if let Some(ties) = front {
            rows[i].pareto = true;
            rows[i].pareto_tied_with = ties.iter().map(|&j| names[j].clone()).collect();
        }
    }
}

/// What people should know before trusting a row: each point whose client fell behind, and a
/// rate sweep whose latency falls as the rate rises next to such a point.
fn notes(plan: &ExperimentPlan, rows: &[Row]) -> Vec<String> {
    let rate = plan
        .factors
        .iter()
        .map(|(f, _)| f.as_str())
        .find(|f| f.starts_with("workload.stages.") && f.ends_with(".rate"));
    notes_of(rows, &plan.file.spec.analysis.latency, rate)
}

/// [`notes`] of `rows`, for the latency `lat` and the rate factor `rate` (if any).
fn notes_of(rows: &[Row], lat: &str, rate: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows {
        if let Some(h) = r.health.as_ref().filter(|h| h.fell_behind) {
            out.push(format!(
                "warning: the client fell behind in {} stage {} (send delay p99 {:.1} ms, above {:.1} ms; {} of {} requests sent ≥ {} ms late): its latencies measured the client as much as the server",
                r.point, r.stage, h.send_delay_p99_ms, h.limit_ms, h.late_sends, h.requests, compare::LATE_SEND_MS
            ));
        }
    }
    let Some(rate) = rate else {
        return out;
    };
    // Each line of the sweep: the other factors and the stage equal, by rate.
    let mut lines: BTreeMap<String, Vec<(f64, &Row)>> = BTreeMap::new();
    for r in rows.iter().filter(|r| metric(r, lat).is_some()) {
        let Some(x) = r.values.iter().find(|(k, _)| k == rate).and_then(|(_, v)| v.as_f64()) else {
            continue;
        };
        let others: Vec<&(String, Value)> = r.values.iter().filter(|(k, _)| k != rate).collect();
        lines
            .entry(format!("{}|{}", serde_json::to_string(&others).unwrap_or_default(), r.stage))
            .or_default()
            .push((x, r));
    }
    for line in lines.values_mut() {
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in line.windows(2) {
            let ((x0, a), (x1, b)) = (w[0], w[1]);
            let (ya, yb) = (metric(a, lat).unwrap_or(0.0), metric(b, lat).unwrap_or(0.0));
            let behind: Vec<&Row> =
                [a, b].into_iter().filter(|r| r.health.as_ref().is_some_and(|h| h.fell_behind)).collect();
            if yb < ya && !behind.is_empty() {
                out.push(format!(
                    "note: {lat} falls from {ya:.2} at rate {x0} ({}) to {yb:.2} at rate {x1} ({}) although the rate rose: the client of {} fell behind, so the sweep is not monotonic because of the client, not the server",
                    a.point, b.point, behind.iter().map(|r| r.point.as_str()).collect::<Vec<_>>().join(" and ")
                ));
            }
        }
    }
    out
}

fn write_points_csv(path: &Path, plan: &ExperimentPlan, rows: &[Row]) -> Result<(), ExperimentError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = ["point", "name", "stack", "status"].map(String::from).to_vec();
    header.extend(plan.factors.iter().map(|(f, _)| f.clone()));
    header.extend(["stage", "stage_label", "completed", "failed", "error_rate"].map(String::from));
    header.extend(HEADLINE.iter().map(|s| s.to_string()));
    header.extend(EXTRA.iter().map(|s| s.to_string()));
    let slo = slo_text(plan);
    let _ = w.write_record(&header);
    // A factor's value as the point ran with it (its resolved inputs), not as its label says.
    let mut ran: BTreeMap<&str, Option<Resolved>> = BTreeMap::new();
    for r in rows {
        let resolved = ran.entry(r.point.as_str()).or_insert_with(|| {
            Resolved::from_file(&plan.root.join(layout::POINTS).join(&r.point).join(layout::RESOLVED)).ok()
        });
        let mut row = vec![r.point.clone(), r.name.clone(), r.stack.clone(), r.status.clone()];
        for (f, _) in &plan.factors {
            let label = r.values.iter().find(|(k, _)| k == f).map(|(_, v)| v);
            // (A point not done shows the values it is to run with.)
            let ran = resolved.as_ref().filter(|_| r.status == "done");
            let value = ran.and_then(|res| res.get(f)).or(label);
            row.push(value.map(compact).unwrap_or_default());
        }
        let num = |v: Option<f64>| v.filter(|x| x.is_finite()).map(|x| format!("{x:.6}")).unwrap_or_default();
        if r.metrics.is_empty() {
            row.extend(std::iter::repeat_n(String::new(), 5 + HEADLINE.len() + EXTRA.len()));
        } else {
            row.push(r.stage.to_string());
            row.push(r.stage_label.clone());
            row.push(num(r.metrics.get("completed").copied()));
            row.push(num(r.metrics.get("failed").copied()));
            row.push(num(Some(r.error_rate)));
            for k in HEADLINE {
                row.push(num(r.metrics.get(*k).copied()));
            }
            let h = r.health.as_ref();
            row.push(num(r.prefix_cache_hit_rate));
            row.push(num(h.map(|h| h.send_delay_p99_ms)));
            row.push(h.map(|h| h.late_sends.to_string()).unwrap_or_default());
            row.push(h.map(client_state).unwrap_or_default().to_string());
            row.push(r.meets_slo.map(|b| b.to_string()).unwrap_or_default());
            row.push(if r.metrics.contains_key("request_goodput") || r.meets_slo.is_some() {
                slo.clone()
            } else {
                String::new()
            });
            row.push(num(r.noisy.map(|n| n.x_half)));
            row.push(num(r.noisy.map(|n| n.y_low)));
            row.push(num(r.noisy.map(|n| n.y_high)));
            row.push(r.pareto.to_string());
            row.push(r.pareto_tied_with.join(" "));
            row.push(r.stable.as_ref().map(|s| s.0.to_string()).unwrap_or_default());
            row.push(r.stable.as_ref().filter(|s| !s.0).map(|s| s.1.clone()).unwrap_or_default());
        }
        let _ = w.write_record(&row);
    }
    write_atomic(path, &w.into_inner().unwrap_or_default())?;
    Ok(())
}

/// The experiment's charts in `dir`: the curves, the Pareto front, the CDFs, the heat map; the
/// names of those drawn (a chart without data is not).
fn charts(plan: &ExperimentPlan, rows: &[Row], dir: &Path) -> Result<Vec<String>, ExperimentError> {
    let measured: Vec<&Row> = rows.iter().filter(|r| !r.metrics.is_empty()).collect();
    let mut drawn = Vec::new();
    let mut first = vec![curves(plan, &measured), pareto_chart(plan, &measured)];
    first.extend(about_charts(plan, &measured));
    for c in first {
        if c.has_data() {
            plots::save(dir, &c)?;
            drawn.push(c.name.clone());
        }
    }
    for c in cdfs(plan, &measured) {
        if c.has_data() {
            plots::save(dir, &c)?;
            drawn.push(c.name.clone());
        }
    }
    if let Some(h) = heatmap(plan, &measured)
        && h.values.iter().flatten().any(Option::is_some)
    {
        plots::save_heatmap(dir, &h)?;
        drawn.push(h.name.clone());
    }
    Ok(drawn)
}

/// A row's value of `stats.json` key `k`, when measured.
fn metric(r: &Row, k: &str) -> Option<f64> {
    r.metrics.get(k).copied().filter(|v| v.is_finite())
}

/// The chosen latency against the throughput, one line per stack.
fn curves(plan: &ExperimentPlan, measured: &[&Row]) -> LineChart {
    let e = &plan.file.spec;
    let (lat, thr) = (&e.analysis.latency, &e.analysis.throughput);
    let mut c = LineChart::new(
        "latency_vs_throughput",
        format!("{lat} against {thr}, one line per stack"),
        thr.clone(),
        lat.clone(),
    );
    for s in &plan.stacks {
        let mut pts: Vec<(f64, f64)> = measured
            .iter()
            .filter(|r| r.stack == s.id)
            .filter_map(|r| Some((metric(r, thr)?, metric(r, lat)?)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let setup: Vec<String> =
            s.setup.iter().map(|(k, v)| format!("{}={}", short(k, &s.setup), shown(v))).collect();
        let label = if setup.is_empty() { s.id.clone() } else { format!("{}: {}", s.id, setup.join(" ")) };
        c.series.push((label, pts));
    }
    c.points = true;
    c
}

/// The Pareto front: every point, the front joined, the ones meeting the SLOs apart.
fn pareto_chart(plan: &ExperimentPlan, measured: &[&Row]) -> LineChart {
    let e = &plan.file.spec;
    let (lat, thr) = (&e.analysis.latency, &e.analysis.throughput);
    let mut p = LineChart::new(
        "pareto",
        format!("Pareto front: {thr} (higher is better) against {lat} (lower is better)"),
        thr.clone(),
        lat.clone(),
    );
    // (throughput, latency) of the rows that pass `keep` and have both.
    let xy = |keep: fn(&Row) -> bool| -> Vec<(f64, f64)> {
        measured.iter().filter(|r| keep(r)).filter_map(|r| Some((metric(r, thr)?, metric(r, lat)?))).collect()
    };
    let all = xy(|_| true);
    let mut front = xy(|r| r.pareto);
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    let slo = xy(|r| r.meets_slo == Some(true));
    p.series.push(("every point and stage".into(), all));
    p.series.push(("Pareto front".into(), front));
    if measured.iter().any(|r| r.meets_slo.is_some()) {
        p.series.push(("meets the SLOs".into(), slo));
    }
    let behind = xy(|r| r.health.as_ref().is_some_and(|h| h.fell_behind));
    if !behind.is_empty() {
        p.series.push(("the client fell behind (a warning)".into(), behind));
    }
    // Ties on the front, named beside each point (`= p002`).
    p.labels = measured
        .iter()
        .filter(|r| !r.pareto_tied_with.is_empty())
        .filter_map(|r| {
            Some((metric(r, thr)?, metric(r, lat)?, format!(" = {}", r.pareto_tied_with.join(" "))))
        })
        .collect();
    p.points = true;
    p.lines = false;
    p
}

/// What an experiment is about when it measured it: the prefix-cache hit rate against the
/// chosen latency (router stacks), goodput against throughput, one line per stack (with SLOs).
fn about_charts(plan: &ExperimentPlan, measured: &[&Row]) -> Vec<LineChart> {
    let e = &plan.file.spec;
    let (lat, thr) = (&e.analysis.latency, &e.analysis.throughput);
    let mut hits = LineChart::new(
        "prefix_cache_hit_rate",
        format!("{lat} against the prefix-cache hit rate (engines behind the router), one line per stack"),
        "prefix-cache hit rate (%)",
        lat.clone(),
    );
    let mut good = LineChart::new(
        "goodput",
        format!(
            "Goodput (requests/s meeting the SLOs: {}) against {thr}, one line per stack",
            slo_text(plan)
        ),
        thr.clone(),
        "request_goodput",
    );
    for s in &plan.stacks {
        let of = |r: &&&Row| r.stack == s.id;
        let mut h: Vec<(f64, f64)> = measured
            .iter()
            .filter(of)
            .filter_map(|r| Some((r.prefix_cache_hit_rate? * 100.0, metric(r, lat)?)))
            .collect();
        h.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut g: Vec<(f64, f64)> = measured
            .iter()
            .filter(of)
            .filter_map(|r| Some((metric(r, thr)?, metric(r, "request_goodput")?)))
            .collect();
        g.sort_by(|a, b| a.0.total_cmp(&b.0));
        hits.series.push((s.id.clone(), h));
        good.series.push((s.id.clone(), g));
    }
    hits.points = true;
    hits.lines = false;
    good.points = true;
    good.diagonal = thr == "request_throughput";
    vec![hits, good]
}

/// Overlaid TTFT and E2EL CDFs, one line per point (the first 12 when there are more).
fn cdfs(plan: &ExperimentPlan, measured: &[&Row]) -> Vec<LineChart> {
    // Each point's first stage.
    let done: Vec<&Row> = measured
        .iter()
        .copied()
        .filter(|r| {
            r.stage == measured.iter().filter(|x| x.point == r.point).map(|x| x.stage).min().unwrap_or(0)
        })
        .collect();
    let mut out = Vec::new();
    for (name, what, pick) in [
        (
            "ttft_cdf",
            "Time to first token",
            (|s: &analysis::StageSeries| s.ttft.clone()) as fn(&analysis::StageSeries) -> analysis::Cdf,
        ),
        ("e2el_cdf", "End-to-end latency", |s: &analysis::StageSeries| s.e2el.clone()),
    ] {
        let mut c = LineChart::new(
            name,
            format!("{what}, overlaid (x clipped at p99.9)"),
            "milliseconds",
            "fraction of requests",
        );
        for r in done.iter().take(12) {
            let dir = plan.root.join("points").join(&r.point);
            let Some(run) = RunDirs::latest(&dir) else { continue };
            let Ok(a) = analysis::compute(&run.results, analysis::Convention::Vllm, &Default::default())
            else {
                continue;
            };
            for s in &a.series.stages {
                let label = if a.series.stages.len() > 1 {
                    format!("{} stage {}", point_label(plan, &r.point), s.stage)
                } else {
                    point_label(plan, &r.point)
                };
                c.series.push((label, pick(s)));
            }
        }
        c.finish_cdf();
        if done.len() > 12 {
            c.title += &format!(": the first 12 of {} points", done.len());
        }
        out.push(c);
    }
    out
}

/// A heat map of the latency over the first two factors (not for treatments; at most 30 levels
/// each way): each cell the mean over the stages and the points that share it.
fn heatmap(plan: &ExperimentPlan, measured: &[&Row]) -> Option<HeatMap> {
    let e = &plan.file.spec;
    let lat = &e.analysis.latency;
    let factors: Vec<&String> = plan.factors.iter().map(|(f, _)| f).collect();
    if factors.len() < 2 || matches!(e.design, Design::Treatments(_)) {
        return None;
    }
    let (fx, fy) = (factors[0], factors[1]);
    // Each factor's levels: in numeric order when they are all numbers (a random or latin
    // design's points come in no order), else in the order of the points (the file's order).
    let levels = |f: &str| {
        let mut ls: Vec<(Option<f64>, String)> = Vec::new();
        for p in &plan.points {
            if let Some((_, v)) = p.point.values.iter().find(|(k, _)| k == f) {
                let s = shown(v);
                if !ls.iter().any(|(_, l)| *l == s) {
                    ls.push((v.as_f64(), s));
                }
            }
        }
        if ls.iter().all(|(x, _)| x.is_some_and(f64::is_finite)) {
            ls.sort_by(|a, b| a.0.unwrap_or(0.0).total_cmp(&b.0.unwrap_or(0.0)));
        }
        ls.into_iter().map(|(_, l)| l).collect::<Vec<String>>()
    };
    let (cols, rws) = (levels(fy), levels(fx));
    if cols.len() > 30 || rws.len() > 30 {
        return None;
    }
    let mut values = vec![vec![None; cols.len()]; rws.len()];
    let mut counts = vec![vec![0u32; cols.len()]; rws.len()];
    for r in measured {
        let at = |f: &str, ls: &[String]| {
            r.values.iter().find(|(k, _)| k == f).and_then(|(_, v)| ls.iter().position(|l| *l == shown(v)))
        };
        if let (Some(i), Some(j), Some(v)) = (at(fx, &rws), at(fy, &cols), metric(r, lat)) {
            // The mean over stages and over points that share the cell (other factors).
            let cell: &mut Option<f64> = &mut values[i][j];
            let n = counts[i][j] as f64;
            *cell = Some(cell.map_or(v, |m| (m * n + v) / (n + 1.0)));
            counts[i][j] += 1;
        }
    }
    Some(HeatMap {
        name: "heatmap".into(),
        title: format!(
            "{lat} by {} and {}",
            short(fx, &plan.points[0].point.values),
            short(fy, &plan.points[0].point.values)
        ),
        x_desc: fy.clone(),
        y_desc: fx.clone(),
        columns: cols,
        rows: rws,
        values,
    })
}

/// A search's charts: offered against achieved, and latency against offered, each trial
/// numbered in the order it ran, the answer marked.
fn search_charts(o: &search::Outcome, dir: &Path) -> Result<Vec<String>, ExperimentError> {
    let mut drawn = Vec::new();
    let measured: Vec<&search::Trial> =
        o.trials.iter().filter(|t| t.verdict != search::Verdict::Error).collect();
    let numbered = |f: fn(&search::Trial) -> f64| -> Vec<(f64, f64, String)> {
        measured.iter().filter(|t| f(t).is_finite()).map(|t| (t.x, f(t), format!(" {}", t.n))).collect()
    };
    let marks: Vec<f64> = o.answer.into_iter().collect();
    let answer = o.answer.map(|a| format!("; the answer {a} is the vertical line")).unwrap_or_default();
    if o.objective == crate::spec::experiment::Objective::MaxStableRate {
        let mut c = LineChart::new(
            "search_rates",
            format!("Offered against achieved rate (diagonal: achieved = offered){answer}"),
            format!("offered ({})", o.factor),
            "achieved requests/s",
        );
        c.diagonal = true;
        let mut pass: Vec<(f64, f64)> = Vec::new();
        let mut fail: Vec<(f64, f64)> = Vec::new();
        for t in &measured {
            if t.verdict == search::Verdict::Pass {
                pass.push((t.x, t.achieved))
            } else {
                fail.push((t.x, t.achieved))
            }
        }
        c.series.push(("stable".into(), pass));
        c.series.push(("unstable".into(), fail));
        c.points = true;
        c.lines = false;
        c.labels = numbered(|t| t.achieved);
        c.marks = marks.clone();
        if c.has_data() {
            plots::save(dir, &c)?;
            drawn.push(c.name.clone());
        }
    }
    let mut c = LineChart::new(
        "search_latency",
        format!("TTFT against the searched value{answer}"),
        o.factor.clone(),
        "milliseconds",
    );
    let mut by_x: Vec<&search::Trial> = measured.clone();
    by_x.sort_by(|a, b| a.x.total_cmp(&b.x));
    c.series.push((
        "TTFT p99".into(),
        by_x.iter().filter(|t| t.p99_ttft_ms.is_finite()).map(|t| (t.x, t.p99_ttft_ms)).collect(),
    ));
    c.series.push((
        "TTFT median".into(),
        by_x.iter().filter(|t| t.median_ttft_ms.is_finite()).map(|t| (t.x, t.median_ttft_ms)).collect(),
    ));
    c.points = true;
    c.labels = numbered(|t| t.p99_ttft_ms);
    c.marks = marks;
    if c.has_data() {
        plots::save(dir, &c)?;
        drawn.push(c.name.clone());
    }
    Ok(drawn)
}

/// The Pareto column for people: `yes`, `tie with p002 p003`, or empty.
pub(crate) fn pareto_shown(r: &Row) -> String {
    match (r.pareto, r.pareto_tied_with.is_empty()) {
        (false, _) => String::new(),
        (true, true) => "yes".into(),
        (true, false) => format!("tie with {}", r.pareto_tied_with.join(" ")),
    }
}

fn point_label(plan: &ExperimentPlan, id: &str) -> String {
    plan.points
        .iter()
        .find(|p| p.point.id == id)
        .map(|p| format!("{id} {}", p.point.label()))
        .unwrap_or_else(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn front(m: &[Noisy]) -> Vec<usize> {
        pareto(m).iter().enumerate().filter(|(_, f)| f.is_some()).map(|(i, _)| i).collect()
    }

    #[test]
    fn the_pareto_front_keeps_the_undominated_points() {
        // (throughput, latency), exact: b dominates a; c and d trade off; e has no data.
        let xy = [(1.0, 100.0), (2.0, 90.0), (3.0, 150.0), (1.5, 50.0), (f64::NAN, 1.0), (2.0, 90.0)];
        let m: Vec<Noisy> = xy.iter().map(|&(x, y)| Noisy::exact(x, y)).collect();
        assert_eq!(front(&m), [1, 2, 3, 5], "equal points both stay on the front");
        assert_eq!(pareto(&m)[1], Some(vec![5]), "and are ties");
    }

    /// A point as `rows` weighs it: `n` completions at `x` req/s (Poisson noise at 95%), the
    /// latency interval given.
    fn point(x: f64, n: f64, y: f64, y_low: f64, y_high: f64) -> Noisy {
        Noisy { x, x_half: 1.96 * x / n.sqrt(), y, y_low, y_high }
    }

    #[test]
    fn points_within_the_noise_are_ties_and_a_far_one_dominates() {
        // The case: max_num_seqs=8 at 14.389 req/s with p99 TTFT 533 ms beside 14.383
        // req/s with 58 ms (~860 completions each): the throughputs are a tie, the latency is
        // not, so the 58-ms point dominates; no longer both on the front.
        let m = [point(14.389, 860.0, 533.0, 480.0, 600.0), point(14.383, 860.0, 58.0, 52.0, 66.0)];
        assert_eq!(front(&m), [1]);
        // Within the noise in both metrics: both on the front, tied with each other.
        let m = [point(14.389, 860.0, 60.0, 52.0, 70.0), point(14.383, 860.0, 58.0, 52.0, 66.0)];
        assert_eq!(pareto(&m), [Some(vec![1]), Some(vec![0])]);
        // A far one: twice the throughput and a lower latency beyond the noise dominates both.
        let m = [
            point(14.389, 860.0, 60.0, 52.0, 70.0),
            point(14.383, 860.0, 58.0, 52.0, 66.0),
            point(28.0, 1700.0, 40.0, 36.0, 44.0),
        ];
        assert_eq!(pareto(&m), [None, None, Some(vec![])]);
        // A real trade-off stays: more throughput beyond the noise, at a higher latency.
        let m = [point(14.0, 860.0, 58.0, 52.0, 66.0), point(28.0, 1700.0, 400.0, 380.0, 420.0)];
        assert_eq!(pareto(&m), [Some(vec![]), Some(vec![])]);
    }

    /// A measured row of a rate sweep: its rate, latency and send-delay p99.
    fn swept(point: &str, rate: f64, p99: f64, delay: f64) -> Row {
        let limit = compare::send_delay_limit_ms(20.0);
        Row {
            point: point.into(),
            name: String::new(),
            stack: "s1".into(),
            status: "done".into(),
            values: vec![("workload.stages.0.rate".into(), serde_json::json!(rate))],
            stage: 1,
            stage_label: String::new(),
            metrics: BTreeMap::from([("p99_ttft_ms".to_string(), p99)]),
            error_rate: 0.0,
            meets_slo: None,
            pareto: false,
            pareto_tied_with: Vec::new(),
            noisy: None,
            health: Some(Health {
                stage: 1,
                send_delay_p99_ms: delay,
                late_sends: 0,
                requests: 100,
                limit_ms: limit,
                fell_behind: delay > limit,
                not_judged: None,
            }),
            prefix_cache_hit_rate: None,
            stable: None,
        }
    }

    #[test]
    fn a_client_that_fell_behind_is_a_warning_and_explains_a_non_monotonic_sweep() {
        let rate = Some("workload.stages.0.rate");
        // p002's client stalled: its p99 is above p003's at a higher rate.
        let rows = [
            swept("p001", 10.0, 50.0, 0.8),
            swept("p002", 20.0, 300.0, 25.0),
            swept("p003", 30.0, 80.0, 0.9),
        ];
        let n = notes_of(&rows, "p99_ttft_ms", rate);
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(
            n[0].starts_with("warning: the client fell behind in p002 stage 1 (send delay p99 25.0 ms"),
            "{n:?}"
        );
        assert!(
            n[1].contains("falls from 300.00 at rate 20 (p002) to 80.00 at rate 30 (p003)")
                && n[1].contains("the client of p002 fell behind"),
            "{n:?}"
        );
        // Healthy clients: nothing to say, even with noise in the sweep.
        let rows =
            [swept("p001", 10.0, 50.0, 0.8), swept("p002", 20.0, 90.0, 1.0), swept("p003", 30.0, 80.0, 0.9)];
        assert!(notes_of(&rows, "p99_ttft_ms", rate).is_empty());
    }

    #[test]
    fn a_percentile_interval_brackets_it_from_the_order_statistics() {
        let s = Sample { ttft_ms: (1..=1000).map(f64::from).collect(), ..Sample::default() };
        let (lo, hi) = latency_interval("median_ttft_ms", 500.5, &BTreeMap::new(), Some(&s), 1.96);
        // ranks 500 ± 1.96·√250 ≈ ±31
        assert!((465.0..475.0).contains(&lo) && (526.0..536.0).contains(&hi), "[{lo}, {hi}]");
        let (lo, hi) = latency_interval("p99_ttft_ms", 990.0, &BTreeMap::new(), Some(&s), 1.96);
        assert!(lo < 990.0 && hi > 990.0 && hi <= 1000.0, "[{lo}, {hi}]");
        let m = BTreeMap::from([("std_ttft_ms".to_string(), 100.0)]);
        let (lo, hi) = latency_interval("mean_ttft_ms", 500.0, &m, Some(&s), 2.0);
        assert!((lo - (500.0 - 200.0 / 1000f64.sqrt())).abs() < 1e-9 && hi > 500.0);
        assert_eq!(latency_interval("p99_itl_ms", 7.0, &BTreeMap::new(), Some(&s), 1.96), (7.0, 7.0));
    }
}
