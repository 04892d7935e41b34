//! A stack's life in an experiment: stood up once in `stacks/<id>/` (or found still up), its
//! points run one after another, torn down (unless a second interrupt leaves it up). Its
//! between-points steps are compiled when it is stood up, so a bad one fails before any point.

use std::{path::PathBuf, sync::PoisonError, time::Instant};

use serde_json::Value;

use super::{
    ExperimentError, between,
    plan::{PlannedPoint, Stack},
    point::{PointEnd, run_point},
    run::Shared,
    state::{PointStatus, StackStatus},
};
use crate::{
    exec::Outcome,
    plan::Plan,
    resolve::Ports,
    session::{self, Session, Setup},
    spec::pipeline::Phase,
    workdir::layout,
};

/// A stack that is up: its session, and what its points need to reach it.
pub(super) struct Up {
    pub(super) id: String,
    pub(super) session: Session,
    pub(super) dir: PathBuf,
    pub(super) run_id: String,
    pub(super) ports: Ports,
    /// Whether its engines may have served anything since they started: a stack found up (an
    /// earlier invocation's, maybe killed mid-point), or once an attempt ran on it. The
    /// between-points steps run before an attempt on a used stack, so only a stack stood up
    /// now goes without them.
    pub(super) used: bool,
    /// The between-points steps, compiled on the stack's values.
    pub(super) between: Option<Plan>,
}

/// Records `points` failed with `why` (and stops the experiment under `stop_on_error`).
fn fail_points(shared: &Shared<'_>, points: &[&PlannedPoint], why: &str) -> Result<(), ExperimentError> {
    for p in points {
        shared.point(&p.point.id, |s| {
            s.status = PointStatus::Failed;
            s.attempts += 1;
            s.error = Some(why.to_string());
        })?;
        shared.finished_point(&p.point.id, &p.point.label(), 0.0, Some(why));
    }
    shared.point_failed();
    Ok(())
}

/// Stands a stack up (or finds it still up) in `stacks/<id>/`, for `points` (the first gives
/// the request). When it cannot, the points are recorded failed and None is returned.
pub(super) async fn stand_up(
    shared: &Shared<'_>,
    stack: &Stack,
    points: &[&PlannedPoint],
) -> Result<Option<Up>, ExperimentError> {
    let plan = shared.plan;
    let dir = shared.root.join(layout::STACKS).join(&stack.id);
    let exp_id = shared.root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let run_id = format!("{exp_id}-{}", stack.id);
    let ports = Ports::recorded(session::recorded(&dir).as_ref().map(|r| &r.values));
    let setup = Setup::new(dir.clone(), points[0].request.clone()).with_run(run_id.clone(), ports);
    let session = match Session::from_loaded(setup, &plan.loaded) {
        Ok(s) => s,
        Err(e) => {
            fail_points(shared, points, &format!("stack {}: {e}", stack.id))?;
            return Ok(None);
        }
    };
    let between = match between::plan(&plan.file.spec.between_points, &session.resolved) {
        Ok(b) => b,
        Err(e) => {
            fail_points(shared, points, &format!("stack {}: between_points: {e}", stack.id))?;
            return Ok(None);
        }
    };
    let was_up = shared.state(|st| st.stacks.get(&stack.id).is_some_and(|s| s.status == StackStatus::Up));
    let setup_desc: Vec<String> =
        stack.setup.iter().map(|(k, v)| format!("{k}={}", super::design::shown(v))).collect();
    shared.say(&format!(
        "stack {} {}{}",
        stack.id,
        if was_up { "recorded up: checking it" } else { "standing up" },
        if setup_desc.is_empty() { String::new() } else { format!(" ({})", setup_desc.join(" ")) }
    ));
    shared.stack(&stack.id, |s| {
        s.hash = stack.hash.clone();
        s.status = StackStatus::StandingUp;
    })?;
    let t0 = Instant::now();
    let report = shared.execute(&session, &shared.options(vec![Phase::Standup], None)).await?;
    let used = match &report.outcome {
        Outcome::Success => {
            // Reused only when every standup step was done and still holds.
            let ran = !report.ran.is_empty();
            shared.stack(&stack.id, |s| {
                s.status = StackStatus::Up;
                s.error = None;
                if ran {
                    s.standups += 1;
                }
            })?;
            if ran {
                shared.progress.lock().unwrap_or_else(PoisonError::into_inner).summary.standups += 1;
            }
            let url = session.resolved.get("endpoint.url").and_then(Value::as_str).unwrap_or("");
            shared.say(&format!("stack {} up in {:.1} s: {url}", stack.id, t0.elapsed().as_secs_f64()));
            !ran
        }
        Outcome::Interrupted => {
            shared.stack(&stack.id, |s| {
                s.status = if report.leftovers.is_empty() { StackStatus::Down } else { StackStatus::Up }
            })?;
            return Ok(None);
        }
        Outcome::Failed { .. } | Outcome::Lost { .. } | Outcome::Unrecorded { .. } => {
            let why = match &report.outcome {
                Outcome::Failed { step, error, .. } | Outcome::Lost { step, error } => {
                    format!("stack {} could not be stood up: {step}: {error}", stack.id)
                }
                other => format!("stack {} could not be stood up: its record: {other:?}", stack.id),
            };
            shared.stack(&stack.id, |s| {
                s.status = if report.leftovers.is_empty() { StackStatus::Failed } else { StackStatus::Up };
                s.error = Some(why.clone());
            })?;
            shared
                .progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .summary
                .standup_failed
                .push(why.clone());
            fail_points(shared, points, &why)?;
            return Ok(None);
        }
    };
    let ports = Ports::recorded(Some(&session.resolved.values));
    Ok(Some(Up { id: stack.id.clone(), session, dir, run_id, ports, used, between }))
}

/// Tears a stack down (unless a second interrupt said to leave it).
pub(super) async fn tear_down(shared: &Shared<'_>, up: Up) -> Result<(), ExperimentError> {
    if shared.leave_up() {
        return Ok(());
    }
    shared.say(&format!("stack {}: tearing down", up.id));
    let report = shared.teardown(&up.session).await?;
    let left = [report.leftovers.clone(), report.teardown_failed.clone()].concat().join("; ");
    let clean = left.is_empty();
    shared.say(&if clean {
        format!("stack {}: down", up.id)
    } else {
        format!("stack {}: teardown left {left}", up.id)
    });
    shared.stack(&up.id, |s| {
        s.status = if clean { StackStatus::Down } else { StackStatus::Up };
        if !clean {
            s.error = Some(format!("teardown left: {left}"));
        }
    })?;
    Ok(())
}

/// Stands a stack up, runs its points, tears it down.
pub(super) async fn run_stack(
    shared: &Shared<'_>,
    k: usize,
    points: &[usize],
) -> Result<(), ExperimentError> {
    let plan = shared.plan;
    let points: Vec<&PlannedPoint> = points.iter().map(|&i| &plan.points[i]).collect();
    let Some(mut up) = stand_up(shared, &plan.stacks[k], &points).await? else { return Ok(()) };
    // Whatever ends the points (an error included: a full disk), the stack comes down after.
    let ran = async {
        let mut lost = None;
        for (n, p) in points.iter().enumerate() {
            if shared.stopping() {
                break;
            }
            if let Some(why) = &lost {
                fail_points(shared, &points[n..n + 1], &format!("not run: {why}"))?;
                continue;
            }
            match run_point(shared, p, &mut up).await? {
                PointEnd::Done | PointEnd::Interrupted | PointEnd::Failed => {}
                PointEnd::Lost(why) => lost = Some(format!("the stack's engine stopped ({why})")),
            }
        }
        Ok::<(), ExperimentError>(())
    }
    .await;
    let down = tear_down(shared, up).await;
    ran.and(down)
}

/// Tears down a stack an earlier invocation left up that is not needed as it is.
pub(super) async fn tear_down_stale(shared: &Shared<'_>, id: &str) -> Result<(), ExperimentError> {
    let dir = shared.root.join(layout::STACKS).join(id);
    shared
        .say(&format!("stack {id}: left up by an earlier invocation and not needed as it is: tearing down"));
    let report = match Session::open_for_teardown(&dir) {
        Ok((session, warning)) => {
            if let Some(w) = warning {
                shared.say(&format!("stack {id}: {w}"));
            }
            shared.teardown(&session).await
        }
        Err(e) => Err(e.into()),
    };
    let ok = report.as_ref().is_ok_and(|r| r.leftovers.is_empty() && r.teardown_failed.is_empty());
    let hash = shared.plan.stacks.iter().find(|s| s.id == id).map(|s| s.hash.clone());
    shared.stack(id, |s| {
        s.status = if ok { StackStatus::Down } else { StackStatus::Up };
        if let Some(h) = hash {
            s.hash = h;
        }
    })?;
    if ok {
        return Ok(());
    }
    Err(ExperimentError::Leftover {
        dir: dir.display().to_string(),
        why: match report {
            Ok(r) => [r.leftovers, r.teardown_failed].concat().join("; "),
            Err(e) => e.to_string(),
        },
    })
}
