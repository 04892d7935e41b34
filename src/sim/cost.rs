//! How long an engine step takes: the analytic cost of its work (S.3, "Step time"), the noise
//! on it, and the slowdowns (a constant factor, and a schedule over simulated time). Step time
//! is `(step_overhead + max(T_mem, T_cmp)) · (1 + ε) · slowdown`.

use super::config::{SimConfig, SlowdownStep};
use crate::rng::Rng;

/// The work of one step, as the cost model counts it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StepWork {
    n_decode: u64,
    /// Summed context of the decodes.
    decode_ctx: f64,
    prefill_tokens: u64,
    /// Summed attention work of the prefill chunks (Σ n·c0 + n²/2).
    prefill_attn: f64,
}

impl StepWork {
    /// One decode over `context` tokens.
    pub(super) fn decode(&mut self, context: u32) {
        self.n_decode += 1;
        self.decode_ctx += context as f64;
    }

    /// A prefill chunk of `tokens` tokens after `computed` tokens already in the cache.
    pub(super) fn prefill(&mut self, tokens: u32, computed: u32) {
        self.prefill_tokens += tokens as u64;
        self.prefill_attn += tokens as f64 * computed as f64 + (tokens as f64).powi(2) / 2.0;
    }

    /// Tokens scheduled in the step.
    pub(super) fn tokens(&self) -> u64 {
        self.n_decode + self.prefill_tokens
    }
}

/// The analytic cost of one step (S.3, "Step time").
#[derive(Debug, Clone)]
struct CostModel {
    weights: f64,
    kv_bytes: f64,
    params: f64,
    attn: f64,
    bandwidth: f64,
    flops: f64,
    overhead: f64,
    tp_factor: f64,
}

impl CostModel {
    fn new(cfg: &SimConfig) -> Self {
        let tp = cfg.tp as f64;
        CostModel {
            weights: cfg.weight_bytes,
            kv_bytes: cfg.kv_bytes_per_token(),
            params: cfg.params,
            attn: 4.0 * cfg.n_layers as f64 * cfg.attn_dim as f64,
            bandwidth: cfg.hbm_bandwidth * cfg.bw_efficiency * tp,
            flops: cfg.peak_flops * cfg.mfu * tp,
            overhead: cfg.step_overhead.0,
            tp_factor: 1.0 + cfg.tp_overhead * tp.log2(),
        }
    }

    /// Step time without noise: decodes with summed context `decode_ctx`, and prefill chunks
    /// with `prefill_tokens` tokens and summed attention work `prefill_attn` (Σ n·c0 + n²/2).
    fn step_time(&self, n_decode: u64, decode_ctx: f64, prefill_tokens: u64, prefill_attn: f64) -> f64 {
        let t_mem = (self.weights + self.kv_bytes * decode_ctx) / self.bandwidth;
        let t_cmp = (2.0 * self.params * (n_decode + prefill_tokens) as f64
            + self.attn * (decode_ctx + prefill_attn))
            / self.flops;
        (self.overhead + t_mem.max(t_cmp)) * self.tp_factor
    }
}

/// The duration of a step: its cost, the noise on it (from the engine's seed), the slowdowns.
pub(super) struct StepTime {
    cost: CostModel,
    jitter_cv: f64,
    slowdown: f64,
    schedule: Vec<SlowdownStep>,
    rng: Rng,
}

impl StepTime {
    /// Step times of `cfg`'s engine, its noise drawn from `seed`.
    pub(super) fn new(cfg: &SimConfig, seed: u64) -> Self {
        let mut t = StepTime {
            cost: CostModel::new(cfg),
            jitter_cv: 0.0,
            slowdown: 1.0,
            schedule: Vec::new(),
            rng: Rng::new(seed),
        };
        t.reconfigure(cfg);
        t
    }

    /// Takes new knob values (from `/admin/config`); the noise's stream goes on.
    pub(super) fn reconfigure(&mut self, cfg: &SimConfig) {
        self.cost = CostModel::new(cfg);
        self.jitter_cv = cfg.step_jitter_cv;
        self.slowdown = cfg.slowdown;
        self.schedule = cfg.slowdown_schedule.clone();
    }

    /// How long a step doing `work` takes when it starts at simulated time `now`.
    pub(super) fn duration(&mut self, work: &StepWork, now: f64) -> f64 {
        let w = work;
        let mut t = self.cost.step_time(w.n_decode, w.decode_ctx, w.prefill_tokens, w.prefill_attn);
        if self.jitter_cv > 0.0 {
            let eps = (self.rng.normal() * self.jitter_cv).clamp(-3.0 * self.jitter_cv, 3.0 * self.jitter_cv);
            t *= 1.0 + eps;
        }
        t * self.slowdown_at(now)
    }

    /// The slowdown at simulated time `t`: the constant factor times the schedule's step then.
    fn slowdown_at(&self, t: f64) -> f64 {
        let scheduled = self
            .schedule
            .iter()
            .filter(|s| s.after.0 <= t)
            .max_by(|a, b| a.after.0.total_cmp(&b.after.0))
            .map_or(1.0, |s| s.factor);
        self.slowdown * scheduled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::engine::tests::{Load, quiet, rel, run};

    #[test]
    fn a_scheduled_slowdown_multiplies_the_steps_after_it() {
        let mut cfg = quiet(SimConfig::default());
        cfg.slowdown = 1.5;
        cfg.slowdown_schedule = vec![SlowdownStep { after: crate::units::Secs(2.0), factor: 4.0 }];
        let mut step = StepTime::new(&cfg, 1);
        let mut work = StepWork::default();
        work.decode(1000);
        work.prefill(64, 128);
        assert_eq!(work.tokens(), 65);
        let (before, after) = (step.duration(&work, 1.0), step.duration(&work, 2.0));
        assert!(rel(after, 4.0 * before) < 1e-12, "{before} {after}");
        cfg.slowdown_schedule.clear();
        step.reconfigure(&cfg);
        assert_eq!(step.duration(&work, 2.0), before);
    }

    #[test]
    fn batch_one_decode_itl_is_about_7_5_ms() {
        let cfg = quiet(SimConfig::default());
        let r = run(&cfg, 16, 200, Load::Open(vec![0.0]));
        let toks = &r.recs[0].borrow().tokens;
        assert_eq!(toks.len(), 200);
        let itl = (toks[199] - toks[0]) / 199.0;
        // 1.5 ms + 16.06e9 / (3.35e12 · 0.8) = 7.49 ms (reference S.3: ≈ 7.5 ms).
        assert!(rel(itl, 0.0075) < 0.02, "itl {itl}");
    }

    #[test]
    fn prefill_of_1024_tokens_gives_ttft_of_40_to_45_ms() {
        let cfg = quiet(SimConfig::default());
        let r = run(&cfg, 1024, 4, Load::Open(vec![0.0]));
        let ttft = r.recs[0].borrow().tokens[0];
        // 5 ms request overhead + 1.5 ms + 2·8.03e9·1024/4.945e14 (+ attention) ≈ 40.3 ms.
        assert!((0.039..0.046).contains(&ttft), "ttft {ttft}");
    }

    #[test]
    fn batch_64_at_1500_context_matches_the_closed_form() {
        // B = 64, c ≈ 1.5 k: T_mem ≈ 10.7 ms → ITL ≈ 12 ms (S.3).
        let cfg = quiet(SimConfig::default());
        let r = run(&cfg, 1436, 128, Load::Open(vec![0.0; 64]));
        // Only pure-decode steps: after the last request's prefill finished.
        let all_started = r.recs.iter().map(|rec| rec.borrow().tokens[0]).fold(0.0, f64::max);
        let gaps: Vec<f64> = r
            .recs
            .iter()
            .flat_map(|rec| {
                let t = rec.borrow().tokens.clone();
                t.windows(2).filter(|w| w[0] > all_started).map(|w| w[1] - w[0]).collect::<Vec<_>>()
            })
            .collect();
        assert!(gaps.len() > 64 * 100);
        let itl = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!(rel(itl, 0.012) < 0.1, "itl {itl}");
    }

    #[test]
    fn slowdown_multiplies_step_time() {
        let mut cfg = quiet(SimConfig::default());
        let base = run(&cfg, 16, 50, Load::Open(vec![0.0])).end;
        cfg.slowdown = 3.0;
        let slow = run(&cfg, 16, 50, Load::Open(vec![0.0])).end;
        assert!(rel(slow - 0.005, 3.0 * (base - 0.005)) < 0.01, "{base} {slow}");
    }

    #[test]
    fn a_slowdown_schedule_takes_effect_at_its_time() {
        let mut cfg = quiet(SimConfig::default());
        cfg.slowdown_schedule = vec![SlowdownStep { after: crate::units::Secs(1.0), factor: 2.0 }];
        let r = run(&cfg, 16, 400, Load::Open(vec![0.0]));
        let t = &r.recs[0].borrow().tokens;
        let gap = |from: f64| t.windows(2).find(|w| w[0] > from).map(|w| w[1] - w[0]).unwrap();
        // ≈ 7.5 ms before 1 s of simulated time, twice that after.
        assert!(rel(gap(0.5), 0.0075) < 0.02, "{}", gap(0.5));
        assert!(rel(gap(1.5), 0.015) < 0.02, "{}", gap(1.5));
    }
}
