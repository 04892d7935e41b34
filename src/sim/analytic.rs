//! Analytic fidelity (llm-d-inference-sim style): each request is timed on its own.
//!
//! A worker pool of `max_num_seqs` slots; a request waits for a slot (FIFO), then its first
//! token comes after `TTFT · f(n_run)` and every further token after `ITL · f(n_run)`, where
//! `f(n) = 1 + (F − 1)(n − 1)/(N − 1)` grows with the number of running requests `n` up to
//! `F = time_factor_under_load` at `N = max_num_seqs`. With zero standard deviations and
//! `time_factor_under_load: 1` this is an exact fixed-latency server: the truth that load
//! generator accuracy is measured against.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

use super::{
    config::{SimConfig, TtftModel},
    driver::TokenSink,
    engine::{Emit, FinishReason, NewRequest, Sink},
    state::Shared,
};
use crate::rng::Rng;

/// The pool every analytic request goes through.
pub struct Pool {
    slots: Semaphore,
    running: AtomicUsize,
}

impl Pool {
    pub fn new(cfg: &SimConfig) -> Self {
        Pool { slots: Semaphore::new(cfg.max_num_seqs as usize), running: AtomicUsize::new(0) }
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

/// Serves one request to completion (or until its client leaves).
pub async fn serve(
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
    let slow = cfg.slowdown;
    let f = load_factor(&cfg, n_run);
    let started = Instant::now();
    let queue = if scale > 0.0 { started.duration_since(arrived).as_secs_f64() / scale } else { 0.0 };

    let ttft_model = match cfg.ttft_model {
        TtftModel::Constant => jittered(&mut rng, cfg.ttft.0, cfg.ttft_std.0),
        TtftModel::Prefill => cfg.prefill_overhead.0 + req.prompt_len as f64 * cfg.prefill_per_token.0,
    };
    let ttft = ttft_model * f * slow + cfg.request_overhead.0;

    // Virtual offsets from `started`; wall deadlines are offsets × scale.
    let mut t = ttft;
    for k in 0..req.output_len.max(1) {
        if k > 0 {
            let f = load_factor(&cfg, pool.running.load(Ordering::Relaxed));
            t += jittered(&mut rng, cfg.itl.0, cfg.itl_std.0) * f * slow;
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
