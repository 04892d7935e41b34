//! Runs the engine model in (scaled) real time and hands tokens to the HTTP streams.
//!
//! One task owns the [`Engine`]. Each loop it plans a step, sleeps until the step's end on the
//! wall clock (`virtual seconds × time_scale` after the clock's anchor), then finishes the step,
//! which sends each running request its token. Consecutive busy steps chain in virtual time, so
//! timer lateness never inflates simulated latencies; it is measured and exported instead
//! (`sim:delivery_lateness_seconds`). With `time_scale: 0` nothing sleeps: the virtual clock
//! runs as fast as the CPU allows and arrivals are stamped with the engine's own clock.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{
    engine::{Emit, Engine, NewRequest, Sink},
    state::Shared,
};

/// Longest stretch of wall time the driver runs steps without giving other tasks the CPU.
const YIELD_EVERY: Duration = Duration::from_micros(500);

/// A request's token channel.
pub(crate) struct TokenSink(pub mpsc::UnboundedSender<Emit>);

impl Sink for TokenSink {
    fn emit(&mut self, ev: Emit) -> bool {
        self.0.send(ev).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// What the front end asks of the driver.
pub(crate) enum Cmd {
    /// A new request, with the instant it arrived (its `arrival` field is filled in here).
    Submit(Box<NewRequest<TokenSink>>, Instant),
    /// `/admin/reset`: drop the prefix cache.
    Reset,
    /// Engine death: fail everything.
    Die,
}

/// Maps wall-clock instants to virtual seconds; re-anchored when `time_scale` changes so that
/// virtual time stays continuous.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    wall0: Instant,
    virt0: f64,
    scale: f64,
}

impl Clock {
    pub(crate) fn new(scale: f64) -> Self {
        Clock { wall0: Instant::now(), virt0: 0.0, scale }
    }

    pub(crate) fn scale(&self) -> f64 {
        self.scale
    }

    /// Virtual time of a wall instant (only meaningful when scale > 0).
    pub(crate) fn virtual_at(&self, t: Instant) -> f64 {
        let dt = t.saturating_duration_since(self.wall0).as_secs_f64();
        self.virt0 + dt / self.scale
    }

    /// Wall instant of a virtual time (only meaningful when scale > 0).
    pub(crate) fn wall_at(&self, v: f64) -> Instant {
        self.wall0 + Duration::from_secs_f64(((v - self.virt0) * self.scale).max(0.0))
    }

    /// Continues the same virtual timeline at a new scale.
    pub(crate) fn rescale(&mut self, now_virtual: f64, scale: f64) {
        self.wall0 = Instant::now();
        self.virt0 = now_virtual;
        self.scale = scale;
    }
}

/// The driver task: runs until the command channel closes.
pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut cfg = shared.config();
    let mut version = shared.config_version.load(std::sync::atomic::Ordering::Acquire);
    let mut engine: Engine<TokenSink> =
        Engine::new(&cfg, shared.seed, Arc::clone(&shared.metrics), Arc::clone(&shared.queued));
    let mut clock = Clock::new(cfg.time_scale);
    let mut last_yield = Instant::now();

    loop {
        let v = shared.config_version.load(std::sync::atomic::Ordering::Acquire);
        if v != version {
            version = v;
            cfg = shared.config();
            engine.reconfigure(&cfg);
            if cfg.time_scale != clock.scale() {
                clock.rescale(engine.now(), cfg.time_scale);
            }
        }
        let realtime = clock.scale() > 0.0;

        // Take everything that arrived.
        loop {
            match rx.try_recv() {
                Ok(cmd) => handle(&mut engine, &clock, cmd),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }

        if engine.is_idle() {
            let Some(t) = engine.next_pending() else {
                match rx.recv().await {
                    Some(cmd) => handle(&mut engine, &clock, cmd),
                    None => return,
                }
                continue;
            };
            if realtime && clock.wall_at(t) > Instant::now() {
                tokio::select! {
                    cmd = rx.recv() => {
                        match cmd {
                            Some(cmd) => handle(&mut engine, &clock, cmd),
                            None => return,
                        }
                        continue;
                    }
                    _ = crate::timer::sleep_until(clock.wall_at(t)) => {}
                }
            }
            // Start exactly when the request became ready, however late the timer woke us.
            engine.advance_to(t);
        }

        let Some(dt) = engine.plan_step() else {
            tokio::task::yield_now().await;
            continue;
        };
        let end = engine.now() + dt;
        let due = realtime.then(|| clock.wall_at(end));
        if let Some(target) = due
            && target > Instant::now()
        {
            crate::timer::sleep_until(target).await;
            last_yield = Instant::now();
        }
        engine.finish_step(end, due);
        // Steps that did not sleep run back to back for up to YIELD_EVERY of wall time, so that
        // the tokens of many cheap steps coalesce into one write per stream; then the
        // connection tasks get the CPU.
        if last_yield.elapsed() >= YIELD_EVERY {
            tokio::task::yield_now().await;
            last_yield = Instant::now();
        }
    }
}

fn handle(engine: &mut Engine<TokenSink>, clock: &Clock, cmd: Cmd) {
    match cmd {
        Cmd::Submit(mut req, at) => {
            req.arrival = if clock.scale() > 0.0 { clock.virtual_at(at) } else { engine.now() };
            engine.submit(*req);
        }
        Cmd::Reset => engine.clear_prefix_cache(),
        Cmd::Die => engine.fail_all("the engine is dead (injected fault)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_round_trips_and_rescales_continuously() {
        let mut c = Clock::new(0.5);
        let t = c.wall0 + Duration::from_millis(100);
        assert!((c.virtual_at(t) - 0.2).abs() < 1e-9);
        assert_eq!(c.wall_at(0.2), t);
        c.rescale(10.0, 2.0);
        assert!((c.virtual_at(c.wall0 + Duration::from_secs(1)) - 10.5).abs() < 1e-9);
    }
}
