//! The experiment's own analysis, from each point's `stats.json` (and records, for the CDFs):
//! `analysis/points.csv` (one row per point and stage), latency–throughput curves with one
//! line per stack, overlaid CDFs, a heat map over two factors, the Pareto front of throughput
//! against the chosen latency with the points that meet the SLOs marked, `compare.json` for an
//! A/B design, and `report.html` linking every point's own report.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use serde::Serialize;
use serde_json::Value;

use super::{
    ExperimentError,
    design::{compact, short, shown},
    measure,
    plan::ExperimentPlan,
    search,
    state::{ExpState, PointStatus},
};
use crate::{
    analysis::{
        self, StatsDoc,
        plots::{self, HeatMap, LineChart},
        report::escape as esc,
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

fn stats_of(point_dir: &Path) -> Option<(StatsDoc, PathBuf)> {
    let run = RunDirs::latest(point_dir)?;
    let text = std::fs::read(run.analysis.join("stats.json")).ok()?;
    Some((serde_json::from_slice(&text).ok()?, run.analysis))
}

/// The points that are not worse in both throughput (higher is better) and latency (lower is
/// better) than any other: indices into `xy`.
pub(crate) fn pareto(xy: &[(f64, f64)]) -> Vec<usize> {
    (0..xy.len())
        .filter(|&i| {
            let (x, y) = xy[i];
            x.is_finite()
                && y.is_finite()
                && !xy.iter().enumerate().any(|(j, &(xj, yj))| {
                    j != i && xj.is_finite() && yj.is_finite() && xj >= x && yj <= y && (xj > x || yj < y)
                })
        })
        .collect()
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
    mark_pareto(&mut rows, &e.analysis.throughput, &e.analysis.latency);
    write_points_csv(&out.join("points.csv"), plan, &rows)?;
    let mut findings = Findings { rows, search: outcome, ..Findings::default() };
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
    let html = report(plan, &findings);
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
            stable: None,
        };
        let Some((doc, _)) =
            stats_of(&plan.root.join("points").join(id)).filter(|_| status == PointStatus::Done)
        else {
            rows.push(base);
            continue;
        };
        for st in &doc.stages {
            let v = serde_json::to_value(st).unwrap_or_default();
            let metrics: BTreeMap<String, f64> = v
                .as_object()
                .map(|m| m.iter().filter_map(|(k, v)| v.as_f64().map(|f| (k.clone(), f))).collect())
                .unwrap_or_default();
            let total = (st.completed + st.failed) as f64;
            let meets_slo = slo_defined.then(|| {
                let good = st.request_goodput.unwrap_or(0.0);
                st.request_throughput > 0.0 && good / st.request_throughput >= e.analysis.slo_share
            });
            let stable = judged.get(id).and_then(|t| {
                matches!(t.verdict, search::Verdict::Pass | search::Verdict::Fail)
                    .then(|| (t.verdict == search::Verdict::Pass, t.why.clone()))
            });
            rows.push(Row {
                stable,
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

/// Marks the rows on the Pareto front of throughput `thr_key` against latency `lat_key`.
fn mark_pareto(rows: &mut [Row], thr_key: &str, lat_key: &str) {
    let xy: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r.metrics.get(thr_key).copied().unwrap_or(f64::NAN),
                r.metrics.get(lat_key).copied().unwrap_or(f64::NAN),
            )
        })
        .collect();
    for i in pareto(&xy) {
        rows[i].pareto = true;
    }
}

fn write_points_csv(path: &Path, plan: &ExperimentPlan, rows: &[Row]) -> Result<(), ExperimentError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = ["point", "name", "stack", "status"].map(String::from).to_vec();
    header.extend(plan.factors.iter().map(|(f, _)| f.clone()));
    header.extend(["stage", "stage_label", "completed", "failed", "error_rate"].map(String::from));
    header.extend(HEADLINE.iter().map(|s| s.to_string()));
    header.extend(["meets_slo", "pareto", "stable", "unstable_because"].map(String::from));
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
            row.extend(std::iter::repeat_n(String::new(), 5 + HEADLINE.len() + 4));
        } else {
            row.push(r.stage.to_string());
            row.push(r.stage_label.clone());
            row.push(num(r.metrics.get("completed").copied()));
            row.push(num(r.metrics.get("failed").copied()));
            row.push(num(Some(r.error_rate)));
            for k in HEADLINE {
                row.push(num(r.metrics.get(*k).copied()));
            }
            row.push(r.meets_slo.map(|b| b.to_string()).unwrap_or_default());
            row.push(r.pareto.to_string());
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
    for c in [curves(plan, &measured), pareto_chart(plan, &measured)] {
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
    p.points = true;
    p.lines = false;
    p
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
    let levels = |f: &str| {
        let mut ls: Vec<String> = Vec::new();
        for p in &plan.points {
            if let Some((_, v)) = p.point.values.iter().find(|(k, _)| k == f) {
                let s = shown(v);
                if !ls.contains(&s) {
                    ls.push(s);
                }
            }
        }
        ls
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

fn point_label(plan: &ExperimentPlan, id: &str) -> String {
    plan.points
        .iter()
        .find(|p| p.point.id == id)
        .map(|p| format!("{id} {}", p.point.label()))
        .unwrap_or_else(|| id.to_string())
}

/// `report.html`: the design, the charts, the points table with links to their reports.
fn report(plan: &ExperimentPlan, f: &Findings) -> String {
    let e = &plan.file.spec;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=utf-8><title>benchflow experiment {}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;font-size:13px}}\
         td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}th{{background:#f4f4f4}}\
         td.l,th.l{{text-align:left}}tr.front td{{background:#eef6ee}}img{{max-width:100%}}</style></head><body>",
        esc(&plan.file.origin)
    );
    let _ = write!(
        h,
        "<h1>Experiment {}</h1><p>{}</p><p>{} on {}; setup factors: {}; run factors: {}.</p>",
        esc(&plan.file.origin),
        esc(e.description.as_deref().unwrap_or("")),
        super::counted(plan.points.len(), "point"),
        super::counted(plan.stacks.len(), "stack"),
        esc(&plan.factors.iter().filter(|x| x.1).map(|x| x.0.as_str()).collect::<Vec<_>>().join(", ")),
        esc(&plan.factors.iter().filter(|x| !x.1).map(|x| x.0.as_str()).collect::<Vec<_>>().join(", ")),
    );
    if let Some(o) = &f.search {
        let _ =
            write!(h, "<h2>Search</h2><p><b>{}</b></p><pre>{}</pre>", esc(&o.says), esc(&search::table(o)));
    }
    if let Some(c) = &f.comparison {
        let _ = write!(h, "<h2>A/B comparison</h2><pre>{}</pre>", esc(&c.table()));
    }
    for name in &f.charts {
        let _ =
            write!(h, "<h2>{}</h2><img src=\"plots/{}.svg\" alt=\"{}\">", esc(name), esc(name), esc(name));
    }
    let _ = write!(
        h,
        "<h2>Points</h2><p>Highlighted rows are on the Pareto front of {} against {}.</p><table><tr>",
        esc(&e.analysis.throughput),
        esc(&e.analysis.latency)
    );
    let mut cols = vec!["point".to_string(), "stack".into(), "status".into()];
    cols.extend(plan.factors.iter().map(|(k, _)| k.clone()));
    cols.extend(
        [
            "stage",
            "req/s",
            "error rate",
            "TTFT p50",
            "TTFT p99",
            "TPOT p50",
            "E2EL p99",
            "SLOs met",
            "report",
        ]
        .map(String::from),
    );
    for c in &cols {
        let _ = write!(h, "<th class=l>{}</th>", esc(c));
    }
    h += "</tr>";
    for r in &f.rows {
        let _ = write!(h, "<tr{}>", if r.pareto { " class=front" } else { "" });
        let _ = write!(
            h,
            "<td class=l>{}</td><td class=l>{}</td><td class=l>{}</td>",
            esc(&r.point),
            esc(&r.stack),
            esc(&r.status)
        );
        for (k, _) in &plan.factors {
            let v = r.values.iter().find(|(x, _)| x == k).map(|(_, v)| shown(v)).unwrap_or_default();
            let _ = write!(h, "<td class=l>{}</td>", esc(&v));
        }
        let m = |k: &str| r.metrics.get(k).map(|v| format!("{v:.2}")).unwrap_or_default();
        let link = format!("../points/{}/analysis/latest/report.html", r.point);
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=l><a href=\"{}\">report</a></td></tr>",
            if r.metrics.is_empty() { String::new() } else { r.stage.to_string() },
            m("request_throughput"),
            if r.error_rate.is_finite() { format!("{:.1}%", r.error_rate * 100.0) } else { String::new() },
            m("median_ttft_ms"),
            m("p99_ttft_ms"),
            m("median_tpot_ms"),
            m("p99_e2el_ms"),
            r.meets_slo.map(|b| if b { "yes" } else { "no" }).unwrap_or(""),
            esc(&link)
        );
    }
    h += "</table></body></html>\n";
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pareto_front_keeps_the_undominated_points() {
        // (throughput, latency): b dominates a; c and d trade off; e has no data.
        let xy = [(1.0, 100.0), (2.0, 90.0), (3.0, 150.0), (1.5, 50.0), (f64::NAN, 1.0), (2.0, 90.0)];
        assert_eq!(pareto(&xy), [1, 2, 3, 5], "equal points both stay on the front");
    }
}
