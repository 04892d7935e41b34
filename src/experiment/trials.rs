//! A search's driver: propose a value ([`search::decide`], pure), run it as a point on its
//! stack (kept up from trial to trial while the stack stays the same, reused when the same
//! inputs were measured before), judge it ([`measure::trial`]), until the search says it is
//! done.

use std::sync::PoisonError;

use super::{
    ExperimentError, measure,
    point::{PointEnd, run_point},
    run::Shared,
    search::{self, Decision},
    stack::{Up, stand_up, tear_down},
    state::{PointState, PointStatus},
    store, todo,
};
use crate::workdir::layout;

/// The search: propose a value, run it as a point on its stack (kept up from trial to trial
/// while the stack stays the same), judge it, until the search says it is done.
pub(super) async fn search(
    shared: &Shared<'_>,
    s: &crate::spec::experiment::Search,
) -> Result<search::Outcome, ExperimentError> {
    let mut grown = shared.plan.clone();
    let mut trials: Vec<search::Trial> = Vec::new();
    let mut up: Option<Up> = None;
    let base = grown.base();
    let slo_defined = base.as_ref().and_then(|r| r.workload.as_ref()).is_some_and(|w| w.slo.is_set());
    let base_seed = base.as_ref().and_then(|r| r.workload.as_ref()).map_or(42, |w| w.seed);
    // Inside the bracket, the measured stage runs `refine` times longer.
    let long_stage = base.as_ref().and_then(|r| {
        let stages = &r.workload.as_ref()?.stages;
        let i = search::measured_stage(s, stages.len())?;
        search::stretch(s, i, stages.get(i)?)
    });
    let pngs = shared.plan.file.spec.analysis.point_pngs;
    let mut ended = false;
    // Whatever ends the trials (an error included: a full disk), the stack comes down after.
    let result: Result<(), ExperimentError> = async {
        loop {
            if shared.stopping() {
                break Ok(());
            }
            let (x, repeat) = match search::decide(s, &trials) {
                Decision::Done => {
                    ended = true;
                    break Ok(());
                }
                Decision::Try { x, repeat } => (x, repeat),
            };
            let n = trials.len() + 1;
            let seed = (repeat > 0).then(|| base_seed + u64::from(repeat));
            let stretch = search::refining(s, &trials).then(|| long_stage.clone()).flatten();
            let values = search::point_values(s, x, seed, stretch.as_ref());
            let point = super::design::Point { id: format!("p{n:03}"), name: None, values };
            let i = grown.place(point)?;
            let p = grown.points[i].clone();
            let stack = grown.stacks[p.stack].clone();
            let dir = shared.root.join(layout::POINTS).join(&p.point.id);
            let source = shared.try_state(|st| {
                store::settle(&shared.root, st, &p.point.id, &p.hash)?;
                Ok(todo::reusable(st, &shared.root, shared.store.as_ref(), &p))
            })?;
            match source {
                Some(from) => {
                    if from != dir {
                        store::copy_point(&shared.root, &from, &dir, &p.hash)?;
                    } else {
                        // Measured here: stored, if a killed invocation did not get to it.
                        shared.keep_in_store(&p, &dir);
                    }
                    shared.point(&p.point.id, |st| {
                        if st.status != PointStatus::Done || st.hash != p.hash {
                            *st = PointState { error: None, ..todo::found_state(&p, &stack, &from) };
                        }
                        // A copy of a point killed before its chart PNGs were drawn lacks them
                        // (or of one measured without them).
                        st.charts_pending |= from != dir && pngs;
                        st.store_pending |= from != dir;
                    })?;
                    shared.progress.lock().unwrap_or_else(PoisonError::into_inner).summary.reused += 1;
                }
                None => {
                    shared.point(&p.point.id, |st| {
                        *st = PointState { error: None, ..todo::pending_state(&p, &stack, st) };
                    })?;
                    if up.as_ref().is_some_and(|u| u.id != stack.id)
                        && let Some(u) = up.take()
                    {
                        tear_down(shared, u).await?;
                    }
                    if up.is_none() {
                        up = stand_up(shared, &stack, &[&p]).await?;
                    }
                    let Some(u) = up.as_mut() else {
                        trials.push(measure::trial(&dir, s, slo_defined, n, x, repeat));
                        break Ok(());
                    };
                    match run_point(shared, &p, u).await? {
                        PointEnd::Interrupted => break Ok(()),
                        PointEnd::Lost(_) => {
                            trials.push(measure::trial(&dir, s, slo_defined, n, x, repeat));
                            break Ok(());
                        }
                        PointEnd::Done | PointEnd::Failed => {}
                    }
                }
            }
            let mut t = measure::trial(&dir, s, slo_defined, n, x, repeat);
            t.seed = seed;
            t.stretch = stretch;
            shared.say(&format!(
                "trial {n}: {} = {x}{}{} → {}{}: {}",
                s.factor,
                if repeat > 0 { format!(" (repeat {repeat}, another seed)") } else { String::new() },
                t.stretch.as_ref().map(|(k, v)| format!(" ({k} {v})")).unwrap_or_default(),
                match t.verdict {
                    search::Verdict::Pass => "pass",
                    search::Verdict::Fail => "fail",
                    search::Verdict::Measured => "measured",
                    search::Verdict::Error => "error",
                },
                if t.marginal { " (marginal)" } else { "" },
                t.why
            ));
            trials.push(t);
        }
    }
    .await;
    let down = match up {
        Some(u) => tear_down(shared, u).await,
        None => Ok(()),
    };
    result.and(down)?;
    let outcome = search::conclude(s, trials);
    Ok(match !ended && shared.interrupted() {
        true => search::interrupted(outcome),
        false => outcome,
    })
}
