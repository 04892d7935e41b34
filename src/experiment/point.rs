//! One point of an experiment: its session in `points/<id>/` against a stack that is up, with
//! its retries, each attempt after the stack's between-points steps unless the stack was stood
//! up just now and nothing ran on it yet.

use std::time::Instant;

use super::{ExperimentError, plan::PlannedPoint, run::Shared, stack::Up, state::PointStatus};
use crate::{
    analysis::plots::PngsLater,
    exec::Outcome,
    session::{Session, Setup},
    spec::pipeline::Phase,
    workdir::{durable::Deferred, layout, utc_now},
};

/// How a point ended.
pub(super) enum PointEnd {
    Done,
    Failed,
    Interrupted,
    Lost(String),
}

/// One point with its retries, in `points/<id>/`, against a stack that is up (each attempt
/// after the stack's `between_points` actions when the stack was used, see [`Up::used`]).
///
/// What the point writes (in its directory, the stack's between-points records, the
/// experiment's record) is synced once, before the point is recorded done (and once more at
/// its end), not file by file; its charts are drawn as SVG only (inlined in its report): their
/// PNGs only when the file asks (`analysis.point_pngs`), and then when the experiment's points
/// are done ([`super::run`]), off the time between two points' load.
pub(super) async fn run_point(
    shared: &Shared<'_>,
    p: &PlannedPoint,
    up: &mut Up,
) -> Result<PointEnd, ExperimentError> {
    let dir = shared.root.join(layout::POINTS).join(&p.point.id);
    let durable = Deferred::begin(&[&dir, &up.dir, &shared.root.join(layout::STATE)]);
    let _pngs = PngsLater::begin(&dir, shared.plan.file.spec.analysis.point_pngs);
    let end = attempts(shared, p, up, &dir, &durable).await;
    durable.sync()?;
    end
}

async fn attempts(
    shared: &Shared<'_>,
    p: &PlannedPoint,
    up: &mut Up,
    dir: &std::path::Path,
    durable: &Deferred,
) -> Result<PointEnd, ExperimentError> {
    let plan = shared.plan;
    let id = &p.point.id;
    let label = p.point.label();
    let tries = plan.file.spec.retries + 1;
    let pngs = plan.file.spec.analysis.point_pngs;
    let mut last_error = String::new();
    let t0 = Instant::now();
    for attempt in 1..=tries {
        if shared.stopping() {
            shared.point(id, |s| s.status = PointStatus::Pending)?;
            return Ok(PointEnd::Interrupted);
        }
        if up.used {
            match between_points(shared, up).await? {
                Between::Clean => {}
                Between::Interrupted => {
                    shared.point(id, |s| s.status = PointStatus::Pending)?;
                    return Ok(PointEnd::Interrupted);
                }
                Between::Failed(why) => {
                    shared.point(id, |s| {
                        s.status = PointStatus::Failed;
                        s.error = Some(why.clone());
                    })?;
                    shared.finished_point(id, &label, 0.0, Some(&why));
                    shared.point_failed();
                    return Ok(PointEnd::Failed);
                }
            }
        }
        up.used = true;
        shared.point(id, |s| {
            s.status = PointStatus::Running;
            s.attempts += 1;
            s.started_at = Some(utc_now());
            // Until the experiment has drawn them (its charts' PNGs, when asked, are drawn later).
            s.charts_pending = pngs;
            // Until the experiment has added it to the store (when there is one).
            s.store_pending = true;
        })?;
        shared.say(&format!(
            "{id} [{label}] on {}: running{}",
            up.id,
            if attempt > 1 { format!(" (attempt {attempt} of {tries})") } else { String::new() }
        ));
        let setup =
            Setup::new(dir.to_path_buf(), p.request.clone()).with_run(up.run_id.clone(), up.ports.clone());
        let session = match Session::from_loaded(setup, &plan.loaded) {
            Ok(s) => s,
            Err(e) => {
                last_error = e.to_string();
                break;
            }
        };
        let remeasure =
            attempt > 1 || shared.state(|st| st.points.get(id.as_str()).is_some_and(|s| s.remeasure));
        let opts = {
            let phases = vec![Phase::Run, Phase::Analyze];
            let mut o = shared.options(phases.clone(), Some(up.dir.clone()));
            o.teardown_on_failure = false;
            if remeasure {
                // Every step selected: none is reused from an earlier attempt.
                let all = session.plan.steps.iter().enumerate().filter(|(_, s)| phases.contains(&s.phase));
                o.selection = Some(all.map(|(i, _)| i).collect());
            }
            o
        };
        let report = match shared.execute(&session, &opts).await {
            Ok(r) => r,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        match report.outcome {
            Outcome::Success => {
                let secs = t0.elapsed().as_secs_f64();
                // What the point wrote atomically is on disk before its record says done.
                durable.sync()?;
                shared.point(id, |s| {
                    s.status = PointStatus::Done;
                    s.remeasure = false;
                    s.error = None;
                    s.finished_at = Some(utc_now());
                    s.duration_s = Some(secs);
                })?;
                shared.finished_point(id, &label, secs, None);
                return Ok(PointEnd::Done);
            }
            Outcome::Interrupted => {
                shared.point(id, |s| {
                    s.status = PointStatus::Pending;
                    s.error = Some("interrupted".into());
                })?;
                shared.say(&format!("{id}: interrupted (it runs again when the experiment resumes)"));
                return Ok(PointEnd::Interrupted);
            }
            Outcome::Lost { .. } | Outcome::Unrecorded { .. } => {
                let why = match report.outcome {
                    Outcome::Lost { step, error } => format!("{step}: {error}"),
                    _ => format!("its record could not be written: {}", unrecorded(&report.outcome)),
                };
                shared.point(id, |s| {
                    s.status = PointStatus::Failed;
                    s.error = Some(why.clone());
                    s.finished_at = Some(utc_now());
                })?;
                shared.finished_point(id, &label, t0.elapsed().as_secs_f64(), Some(&why));
                return Ok(PointEnd::Lost(why));
            }
            Outcome::Failed { step, error, .. } => {
                last_error = format!("{step}: {error}");
                if attempt < tries {
                    shared.say(&format!(
                        "{id}: attempt {attempt} failed ({}); trying again",
                        last_error.lines().next().unwrap_or("")
                    ));
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    shared.point(id, |s| {
        s.status = PointStatus::Failed;
        s.error = Some(last_error.clone());
        s.finished_at = Some(utc_now());
        s.duration_s = Some(secs);
    })?;
    shared.finished_point(id, &label, secs, Some(&last_error));
    shared.point_failed();
    Ok(PointEnd::Failed)
}

/// How the between-points steps ended.
enum Between {
    /// Done (or there are none): the stack is as after its standup.
    Clean,
    /// A step failed: the point fails with this.
    Failed(String),
    /// Interrupted: the point stays pending.
    Interrupted,
}

/// The stack's between-points steps, run by the executor in its work directory.
async fn between_points(shared: &Shared<'_>, up: &Up) -> Result<Between, ExperimentError> {
    let Some(plan) = &up.between else { return Ok(Between::Clean) };
    let report = shared.execute_plan(plan, &up.dir).await?;
    Ok(match report.outcome {
        Outcome::Success => {
            for s in &plan.steps {
                shared.say(&format!("between points: {}", s.describe.first().map_or("", String::as_str)));
            }
            Between::Clean
        }
        Outcome::Failed { step, error, .. } | Outcome::Lost { step, error } => Between::Failed(format!(
            "between_points: {step}: {error} (its log: {})",
            up.dir.join(layout::COMMANDS).join(format!("{step}.log")).display()
        )),
        Outcome::Unrecorded { error } => Between::Failed(format!("between_points: the record: {error}")),
        Outcome::Interrupted => Between::Interrupted,
    })
}

fn unrecorded(o: &Outcome) -> &str {
    match o {
        Outcome::Unrecorded { error } => error,
        _ => "",
    }
}
