//! One step's run: its attempts (each logged in the step's log, each with its timeout), retried
//! after a failure with a doubling backoff, unless the run is being stopped.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{events::Event, state::Attempt};
use crate::{
    plan::PlannedStep,
    steps::{self, Ctx, Done, StepError, UndoRecord},
    workdir::utc_now,
};

/// What a step task sends back.
pub(super) struct Finished {
    pub index: usize,
    pub result: Result<Done, StepError>,
    pub attempts: Vec<Attempt>,
    pub elapsed: f64,
}

/// Runs `step` (index `index`) to its end: done, failed after its retries, or cancelled.
/// `left`: what an earlier run of it left running, stopped first (see `Driver::left_running`).
pub(super) async fn run_step(
    step: PlannedStep,
    index: usize,
    ctx: Ctx,
    events: mpsc::UnboundedSender<Event>,
    left: Option<UndoRecord>,
) -> Finished {
    let t0 = Instant::now();
    let mut attempts = Vec::new();
    let mut backoff = step.backoff_s;
    let mut attempt = 0;
    let Some(args) = step.args else {
        return Finished { index, result: Ok(Done::with_summary("nothing to do")), attempts, elapsed: 0.0 };
    };
    let end = |result, attempts| Finished { index, result, attempts, elapsed: t0.elapsed().as_secs_f64() };
    if let Some(left) = left {
        let what = left.describe();
        ctx.note(&format!("# an earlier run of {} left {what} running: stopping it first", step.id));
        if let Err(e) = left.undo(&ctx).await {
            let why = format!("an earlier run of this step left {what}, which could not be stopped ({e})");
            return end(Err(StepError::Failed(why)), attempts);
        }
        steps::forget_undo(&ctx.workdir, &step.id);
    }
    loop {
        attempt += 1;
        let started_at = utc_now();
        let a0 = Instant::now();
        ctx.note(&format!(
            "== {} attempt {attempt} at {started_at} ==\n# {}",
            step.id,
            step.describe.join("\n# ")
        ));
        let run = args.clone().run(&ctx);
        let result = match step.timeout_s {
            Some(t) => match tokio::time::timeout(Duration::from_secs_f64(t), run).await {
                Ok(r) => r,
                Err(_) => Err(StepError::Failed(format!("timed out after {t} s (the step's `timeout`)"))),
            },
            None => run.await,
        };
        let outcome = match &result {
            Ok(_) => "done".to_string(),
            Err(e) => e.to_string(),
        };
        ctx.note(&format!(
            "== attempt {attempt}: {outcome} ==",
            outcome = outcome.lines().next().unwrap_or("")
        ));
        attempts.push(Attempt {
            started_at,
            duration_s: a0.elapsed().as_secs_f64(),
            outcome: outcome.clone(),
        });
        match result {
            Err(StepError::Failed(error)) if attempt <= step.retries && !*ctx.cancel.borrow() => {
                let _ = events.send(Event::StepRetry {
                    step: step.id.clone(),
                    attempt,
                    error,
                    backoff_s: backoff,
                });
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(backoff)) => {}
                    _ = ctx.cancelled() => return end(Err(StepError::Cancelled), attempts),
                }
                backoff = (backoff * 2.0).min(crate::units::Secs::MAX);
            }
            result => return end(result, attempts),
        }
    }
}
