//! An experiment's `analysis/report.html`: the design, the search's answer, the notes, the A/B
//! comparison, the charts and the points table linking each point's own report. The figures
//! are formatted here into an [`ExperimentView`]; `experiment.html` (on the reports' base
//! layout, [`crate::analysis::html`]) lays them out.

use serde::Serialize;

use super::{
    ExperimentError,
    analysis::{Findings, pareto_shown},
    design::shown,
    plan::ExperimentPlan,
    search,
};

/// What `experiment.html` shows, every figure formatted.
#[derive(Debug, Serialize)]
struct ExperimentView {
    name: String,
    description: String,
    /// `6 points`, `2 stacks`.
    points: String,
    stacks: String,
    /// `setup factors: a, b; run factors: c`, each list only when it has a factor (empty
    /// when neither has).
    factors: String,
    search: Option<SearchView>,
    notes: Vec<String>,
    /// The A/B comparison's table.
    comparison: Option<String>,
    charts: Vec<String>,
    throughput: String,
    latency: String,
    /// The intervals' level, in percent.
    level: String,
    columns: Vec<String>,
    rows: Vec<PointView>,
}

#[derive(Debug, Serialize)]
struct SearchView {
    says: String,
    /// The trials table as cells (an HTML table, so that a long `why` wraps in its cell).
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    /// The peak achieved throughput, in words, when there is one.
    peak: Option<String>,
}

/// One row of the points table.
#[derive(Debug, Serialize)]
struct PointView {
    /// On the Pareto front: the row is highlighted.
    front: bool,
    /// point, stack, status, then each factor's value.
    labels: Vec<String>,
    /// stage, req/s, error rate, latencies, SLOs met, prefix hits.
    figures: Vec<String>,
    /// The send delay p99, `fell behind` when the client did.
    client: String,
    client_fell_behind: bool,
    pareto: String,
    /// The point's own report, relative to the experiment's.
    report: String,
}

/// `report.html`: the design, the charts, the points table with links to their reports.
pub(super) fn render(plan: &ExperimentPlan, f: &Findings) -> Result<String, ExperimentError> {
    let e = &plan.file.spec;
    let factors = |setup: bool| {
        plan.factors.iter().filter(|x| x.1 == setup).map(|x| x.0.as_str()).collect::<Vec<_>>().join(", ")
    };
    let mut columns = vec!["point".to_string(), "stack".into(), "status".into()];
    columns.extend(plan.factors.iter().map(|(k, _)| k.clone()));
    columns.extend(
        [
            "stage",
            "req/s",
            "error rate",
            "TTFT p50",
            "TTFT p99",
            "TPOT p50",
            "E2EL p99",
            "SLOs met",
            "prefix hits",
            "client (ms)",
            "Pareto",
            "report",
        ]
        .map(String::from),
    );
    let rows = f
        .rows
        .iter()
        .map(|r| {
            let mut labels = vec![r.point.clone(), r.stack.clone(), r.status.clone()];
            labels.extend(plan.factors.iter().map(|(k, _)| {
                r.values.iter().find(|(x, _)| x == k).map(|(_, v)| shown(v)).unwrap_or_default()
            }));
            let m = |k: &str| r.metrics.get(k).map(|v| format!("{v:.2}")).unwrap_or_default();
            let figures = vec![
                if r.metrics.is_empty() { String::new() } else { r.stage.to_string() },
                m("request_throughput"),
                if r.error_rate.is_finite() {
                    format!("{:.1}%", r.error_rate * 100.0)
                } else {
                    String::new()
                },
                m("median_ttft_ms"),
                m("p99_ttft_ms"),
                m("median_tpot_ms"),
                m("p99_e2el_ms"),
                r.meets_slo.map(|b| if b { "yes" } else { "no" }).unwrap_or("").to_string(),
                r.prefix_cache_hit_rate.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_default(),
            ];
            let (client, client_fell_behind) = match r.health.as_ref() {
                Some(hl) if hl.fell_behind => (format!("{:.1} fell behind", hl.send_delay_p99_ms), true),
                Some(hl) => (format!("{:.1}", hl.send_delay_p99_ms), false),
                None => (String::new(), false),
            };
            PointView {
                front: r.pareto,
                labels,
                figures,
                client,
                client_fell_behind,
                pareto: pareto_shown(r),
                report: format!("../points/{}/analysis/latest/report.html", r.point),
            }
        })
        .collect();
    let view = ExperimentView {
        name: plan.file.origin.clone(),
        description: e.description.clone().unwrap_or_default(),
        points: super::counted(plan.points.len(), "point"),
        stacks: super::counted(plan.stacks.len(), "stack"),
        factors: [("setup factors", factors(true)), ("run factors", factors(false))]
            .into_iter()
            .filter(|(_, list)| !list.is_empty())
            .map(|(what, list)| format!("{what}: {list}"))
            .collect::<Vec<_>>()
            .join("; "),
        search: f.search.as_ref().map(|o| SearchView {
            says: o.says.clone(),
            columns: search::COLUMNS.map(String::from).to_vec(),
            rows: search::cells(o).into_iter().map(Vec::from).collect(),
            peak: o.peak.map(|(peak, at)| {
                format!("peak achieved throughput: {peak:.2} req/s, at {} = {at}", o.factor)
            }),
        }),
        notes: f.notes.clone(),
        comparison: f.comparison.as_ref().map(|c| c.table()),
        charts: f.charts.clone(),
        throughput: e.analysis.throughput.clone(),
        latency: e.analysis.latency.clone(),
        level: format!("{:.0}", e.analysis.level * 100.0),
        columns,
        rows,
    };
    Ok(crate::analysis::html::render("experiment.html", "e", &view)?)
}
