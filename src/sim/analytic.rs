//! Analytic fidelity (llm-d-inference-sim style): each request is timed on its own.
//!
//! A worker pool of `max_num_seqs` slots; a request waits for a slot (FIFO), then its first
//! token comes after `TTFT · f(n_run)` and every further token after `ITL · f(n_run)`, where
//! `f(n) = 1 + (F − 1)(n − 1)/(N − 1)` grows with the number of running requests `n` up to
//! `F = time_factor_under_load` at `N = max_num_seqs`. With zero standard deviations and
//! `time_factor_under_load: 1` this is an exact fixed-latency server: the truth that load
//! generator accuracy is measured against.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use super::{
    config::{SimConfig, TtftModel},
    driver::TokenSink,
    engine::{Emit, FinishReason, NewRequest, Sink},
    state::Shared,
};
use crate::rng::Rng;

/// The pool every analytic request goes through.
pub(crate) struct Pool {
    slots: Arc<Semaphore>,
    running: AtomicUsize,
}

impl Pool {
    pub(crate) fn new(cfg: &SimConfig) -> Self {
        Pool { slots: Arc::new(Semaphore::new(cfg.max_num_seqs as usize)), running: AtomicUsize::new(0) }
    }
}

fn load_factor(cfg: &SimConfig, n_run: usize) -> f64 {
    let n_max = cfg.max_num_seqs as f64;
    if n_max <= 1.0 {
        return 1.0;
    }
    1.0 + (cfg.time_factor_under_load - 1.0) * (n_run.saturating_sub(1) as f64) / (n_max - 1.0)
}

/// Gaussian jitter with std ≤ 30 % of the mean, clamped to ±70 % of it.
fn jittered(rng: &mut Rng, mean: f64, std: f64) -> f64 {
    if std <= 0.0 || mean <= 0.0 {
        return mean;
    }
    let std = std.min(0.3 * mean);
    (mean + rng.normal() * std).clamp(0.3 * mean, 1.7 * mean)
}

/// Simulated seconds to the first token for a request started with `n_run` running.
fn first_token(cfg: &SimConfig, rng: &mut Rng, prompt_len: u32, n_run: usize) -> f64 {
    let base = match cfg.ttft_model {
        TtftModel::Constant => jittered(rng, cfg.ttft.0, cfg.ttft_std.0),
        TtftModel::Prefill => cfg.prefill_overhead.0 + prompt_len as f64 * cfg.prefill_per_token.0,
    };
    base * load_factor(cfg, n_run) * cfg.slowdown + cfg.request_overhead.0
}

/// Simulated seconds to the next token with `n_run` running.
fn next_token(cfg: &SimConfig, rng: &mut Rng, n_run: usize) -> f64 {
    jittered(rng, cfg.itl.0, cfg.itl_std.0) * load_factor(cfg, n_run) * cfg.slowdown
}

/// Serves one request to completion (or until its client leaves).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    mut req: NewRequest<TokenSink>,
    arrived: Instant,
    id: u64,
) {
    let Ok(_permit) = pool.slots.acquire().await else { return };
    shared.queued.fetch_sub(1, Ordering::Relaxed);
    let n_run = pool.running.fetch_add(1, Ordering::Relaxed) + 1;
    let _running = RunningGuard(&pool.running);
    let cfg = shared.config();
    let scale = cfg.time_scale;
    let mut rng = Rng::derive(shared.seed, id ^ 0xA11A_1171C);
    let started = Instant::now();
    let queue = if scale > 0.0 { started.duration_since(arrived).as_secs_f64() / scale } else { 0.0 };
    let ttft = first_token(&cfg, &mut rng, req.prompt_len, n_run);

    // Virtual offsets from `started`; wall deadlines are offsets × scale.
    let mut t = ttft;
    for k in 0..req.output_len.max(1) {
        if k > 0 {
            t += next_token(&cfg, &mut rng, pool.running.load(Ordering::Relaxed));
        }
        let mut due = None;
        if scale > 0.0 {
            let deadline = started + Duration::from_secs_f64(t * scale);
            if deadline > Instant::now() {
                crate::timer::sleep_until(deadline).await;
            }
            due = Some(deadline);
        } else if k % 64 == 63 {
            tokio::task::yield_now().await;
        }
        if shared.dead.load(Ordering::Acquire) {
            req.sink.emit(Emit::Error("the engine is dead (injected fault)"));
            return;
        }
        let last = k + 1 >= req.output_len;
        let finish = last.then_some(if req.output_len >= req.max_tokens {
            FinishReason::Length
        } else {
            FinishReason::Stop
        });
        if k == 0 {
            let mut m = shared.metrics.lock().expect("metrics lock");
            m.ttft.observe(queue + ttft);
            m.queue.observe(queue);
            m.prefill.observe(ttft);
            m.prompt_tokens += req.prompt_len as u64;
            m.num_requests_running = pool.running.load(Ordering::Relaxed) as u64;
            m.num_requests_waiting = shared.queued.load(Ordering::Relaxed) as u64;
        }
        if !req.sink.emit(Emit::Token { finish, due }) {
            shared.metrics.lock().expect("metrics lock").success_abort += 1;
            return;
        }
    }
    let n = req.output_len.max(1);
    let mut m = shared.metrics.lock().expect("metrics lock");
    m.generation_tokens += n as u64;
    m.e2el_observe(queue + t, t - ttft, t, n, req.prompt_len, req.max_tokens);
    if n > 1 {
        let itl = (t - ttft) / (n - 1) as f64;
        for _ in 1..n {
            m.itl.observe(itl);
        }
    }
    if n >= req.max_tokens {
        m.success_length += 1;
    } else {
        m.success_stop += 1;
    }
    if scale > 0.0 {
        m.virtual_time = shared.started.elapsed().as_secs_f64() / scale;
    }
    m.num_requests_running = pool.running.load(Ordering::Relaxed).saturating_sub(1) as u64;
}

struct RunningGuard<'a>(&'a AtomicUsize);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A streamed analytic request that is its own clock: the SSE body polls it, and it sleeps on
/// the precise timer until its next token is due. One wake-up per token reaches the connection
/// directly, instead of waking a request task that then wakes the connection.
pub(crate) struct Pacer {
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    cfg: Arc<SimConfig>,
    rng: Rng,
    acquire: Option<Acquire>,
    permit: Option<OwnedSemaphorePermit>,
    arrived: Instant,
    started: Instant,
    queue: f64,
    ttft: f64,
    /// Simulated seconds from `started` to the next token.
    t: f64,
    sent: u32,
    output_len: u32,
    max_tokens: u32,
    prompt_len: u32,
    sleep: Option<crate::timer::Sleep>,
    done: bool,
}

impl Pacer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        pool: Arc<Pool>,
        sizes: (u32, u32, u32),
        arrived: Instant,
        id: u64,
    ) -> Self {
        let (prompt_len, max_tokens, output_len) = sizes;
        let acquire: Acquire = Box::pin(Arc::clone(&pool.slots).acquire_owned());
        Pacer {
            cfg: shared.config(),
            rng: Rng::derive(shared.seed, id ^ 0xA11A_1171C),
            shared,
            pool,
            acquire: Some(acquire),
            permit: None,
            arrived,
            started: arrived,
            queue: 0.0,
            ttft: 0.0,
            t: 0.0,
            sent: 0,
            output_len: output_len.max(1),
            max_tokens,
            prompt_len,
            sleep: None,
            done: false,
        }
    }

    fn finish_metrics(&self) {
        let mut m = self.shared.metrics.lock().expect("metrics lock");
        let n = self.sent;
        m.generation_tokens += n as u64;
        m.e2el_observe(self.queue + self.t, self.t - self.ttft, self.t, n, self.prompt_len, self.max_tokens);
        if n >= self.max_tokens {
            m.success_length += 1;
        } else {
            m.success_stop += 1;
        }
    }

    /// The next event of the stream, when it is due.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Emit>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(acq) = self.acquire.as_mut() {
            match acq.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(p) => {
                    self.acquire = None;
                    self.permit = p.ok();
                    self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                    let n_run = self.pool.running.fetch_add(1, Ordering::Relaxed) + 1;
                    self.started = Instant::now();
                    let scale = self.cfg.time_scale;
                    self.queue = if scale > 0.0 {
                        self.started.duration_since(self.arrived).as_secs_f64() / scale
                    } else {
                        0.0
                    };
                    self.ttft = first_token(&self.cfg, &mut self.rng, self.prompt_len, n_run);
                    self.t = self.ttft;
                }
            }
        }
        if self.shared.dead.load(Ordering::Acquire) {
            self.done = true;
            return Poll::Ready(Some(Emit::Error("the engine is dead (injected fault)")));
        }
        let scale = self.cfg.time_scale;
        let due = (scale > 0.0).then(|| self.started + Duration::from_secs_f64(self.t * scale));
        if let Some(d) = due
            && d > Instant::now()
        {
            let sleep = self.sleep.get_or_insert_with(|| crate::timer::sleep_until(d));
            if Pin::new(sleep).poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.sleep = None;
        if self.sent == 0 {
            let mut m = self.shared.metrics.lock().expect("metrics lock");
            m.ttft.observe(self.queue + self.ttft);
            m.queue.observe(self.queue);
            m.prefill.observe(self.ttft);
            m.prompt_tokens += self.prompt_len as u64;
        }
        self.sent += 1;
        let last = self.sent >= self.output_len;
        let finish = last.then_some(if self.output_len >= self.max_tokens {
            FinishReason::Length
        } else {
            FinishReason::Stop
        });
        if last {
            self.done = true;
            self.finish_metrics();
        } else {
            let gap = next_token(&self.cfg, &mut self.rng, self.pool.running.load(Ordering::Relaxed));
            self.shared.metrics.lock().expect("metrics lock").itl.observe(gap);
            self.t += gap;
        }
        Poll::Ready(Some(Emit::Token { finish, due }))
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        if self.acquire.is_some() {
            // Never admitted: still counted as waiting.
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.pool.running.fetch_sub(1, Ordering::Relaxed);
            if !self.done {
                self.shared.metrics.lock().expect("metrics lock").success_abort += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_factor_is_linear_from_one_to_f() {
        let cfg = SimConfig { max_num_seqs: 11, time_factor_under_load: 3.0, ..SimConfig::default() };
        assert_eq!(load_factor(&cfg, 1), 1.0);
        assert!((load_factor(&cfg, 6) - 2.0).abs() < 1e-12);
        assert!((load_factor(&cfg, 11) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn jitter_is_clamped() {
        let mut rng = Rng::new(5);
        for _ in 0..10_000 {
            let v = jittered(&mut rng, 10.0, 100.0);
            assert!((3.0..=17.0).contains(&v));
        }
        assert_eq!(jittered(&mut rng, 10.0, 0.0), 10.0);
    }
}
