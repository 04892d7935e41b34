//! The search against engines in virtual time: the simulator's engine model (the code its
//! HTTP server runs) driven by seeded Poisson or closed-loop load without HTTP, each trial
//! judged by the same code that judges a real trial's records ([`super::measure`]) and the
//! next value chosen by [`super::search::decide`]. A family of engines, not one: an engine
//! whose throughput is flat past its knee, two whose throughput collapses there through
//! KV-cache preemption (an 8B model with long answers, a 70B one on four GPUs), and a
//! concurrency search within an SLO. The truth of each is measured here too, by slow sweeps
//! (long stages, three seeds per value). `benches/search.sh` runs the same cases through
//! the real server and client.

use std::{
    cell::RefCell,
    rc::Rc,
    sync::{Arc, Mutex, atomic::AtomicUsize},
};

use super::{
    measure,
    search::{self, Decision, Outcome, Trial, Verdict},
};
use crate::{
    rng::Rng,
    sim::{
        config::SimConfig,
        engine::{Emit, Engine, NewRequest, Sink},
        metrics::Metrics,
    },
    spec::experiment::Search,
};

/// One request's times (virtual seconds).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Rec {
    pub sent: f64,
    pub first: Option<f64>,
    pub end: Option<f64>,
    pub failed: bool,
}

struct RecSink {
    rec: Rc<RefCell<Rec>>,
    now: Rc<RefCell<f64>>,
}

impl Sink for RecSink {
    fn emit(&mut self, ev: Emit) -> bool {
        let now = *self.now.borrow();
        let mut r = self.rec.borrow_mut();
        match ev {
            Emit::Token { finish, .. } => {
                r.first.get_or_insert(now);
                if finish.is_some() {
                    r.end = Some(now);
                }
            }
            Emit::Error(_) => r.failed = true,
        }
        true
    }
    fn is_closed(&self) -> bool {
        false
    }
}

/// How load is offered in a stage.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Load {
    /// Poisson arrivals at this rate.
    Rate(f64),
    /// This many requests in flight.
    Concurrency(usize),
}

/// An engine, its requests' lengths (uniform in `(1 ± spread) ×` each), and the stage length.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub name: &'static str,
    pub cfg: SimConfig,
    pub input: u32,
    pub output: u32,
    pub spread: f64,
    /// The searched stage's length, in the engine's seconds.
    pub stage_secs: f64,
}

/// A stage from an empty engine: every request's times (drained to the end) and the
/// preemptions during it.
pub(crate) fn stage(case: &Case, load: Load, secs: f64, seed: u64) -> (Vec<Rec>, u64) {
    let metrics = Arc::new(Mutex::new(Metrics::new(case.cfg.max_model_len)));
    let queued = Arc::new(AtomicUsize::new(0));
    let mut e: Engine<RecSink> = Engine::new(&case.cfg, seed, Arc::clone(&metrics), Arc::clone(&queued));
    let now = Rc::new(RefCell::new(0.0));
    let mut rng = Rng::derive(seed, 7);
    let mut recs: Vec<Rc<RefCell<Rec>>> = Vec::new();
    let submit = |e: &mut Engine<RecSink>, at: f64, recs: &mut Vec<Rc<RefCell<Rec>>>, rng: &mut Rng| {
        let len = |rng: &mut Rng, n: u32| {
            let lo = (f64::from(n) * (1.0 - case.spread)).round().max(1.0) as u64;
            let hi = (f64::from(n) * (1.0 + case.spread)).round().max(1.0) as u64;
            rng.range_inclusive(lo, hi) as u32
        };
        let (prompt, output) = (len(rng, case.input), len(rng, case.output));
        let rec = Rc::new(RefCell::new(Rec { sent: at, ..Rec::default() }));
        recs.push(Rc::clone(&rec));
        queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        e.submit(NewRequest {
            sink: RecSink { rec, now: Rc::clone(&now) },
            prompt_len: prompt,
            max_tokens: output,
            output_len: output,
            hashes: Vec::new(),
            arrival: at,
        });
    };
    let mut next_arrival = match load {
        Load::Rate(r) => rng.exponential(1.0 / r),
        Load::Concurrency(n) => {
            for _ in 0..n {
                submit(&mut e, 0.0, &mut recs, &mut rng);
            }
            f64::INFINITY
        }
    };
    loop {
        if let Load::Rate(r) = load {
            while next_arrival <= e.now() && next_arrival <= secs {
                submit(&mut e, next_arrival, &mut recs, &mut rng);
                next_arrival += rng.exponential(1.0 / r);
            }
        } else if let Load::Concurrency(n) = load {
            let done = recs.iter().filter(|r| r.borrow().end.is_some() || r.borrow().failed).count();
            for _ in (recs.len() - done)..n {
                if e.now() <= secs {
                    let t = e.now();
                    submit(&mut e, t, &mut recs, &mut rng);
                }
            }
        }
        match e.plan_step() {
            Some(dt) => {
                let end = e.now() + dt;
                *now.borrow_mut() = end;
                e.finish_step(end, None);
            }
            None => {
                let arrival = Some(next_arrival).filter(|a| *a <= secs);
                match [e.next_pending(), arrival].into_iter().flatten().min_by(f64::total_cmp) {
                    Some(t) => e.advance_to(t),
                    None => break,
                }
            }
        }
    }
    let preemptions = metrics.lock().map(|m| m.preemptions).unwrap_or(0);
    (recs.iter().map(|r| *r.borrow()).collect(), preemptions)
}

/// The `p`-quantile (0..1) of the TTFTs, in ms.
fn ttft_quantile(recs: &[Rec], p: f64) -> f64 {
    let mut v: Vec<f64> = recs.iter().filter_map(|r| r.first.map(|f| (f - r.sent) * 1e3)).collect();
    crate::analysis::percentile::higher(&mut v, p)
}

/// A trial of the search at `x`, judged as a real one is.
pub(crate) fn trial(case: &Case, s: &Search, n: usize, x: f64, repeat: u32, seed: u64) -> Trial {
    let load = if s.factor.ends_with(".rate") { Load::Rate(x) } else { Load::Concurrency(x as usize) };
    let (recs, preemptions) = stage(case, load, case.stage_secs, seed * 1000 + n as u64);
    let sent: Vec<f64> = recs.iter().map(|r| r.sent).collect();
    let ok: Vec<(f64, f64, f64)> =
        recs.iter().filter(|r| !r.failed).filter_map(|r| Some((r.sent, r.end?, r.first? - r.sent))).collect();
    let failed = recs.len() - ok.len();
    let stats = measure::Measured {
        keys: serde_json::json!({
            "median_ttft_ms": ttft_quantile(&recs, 0.5),
            "p99_ttft_ms": ttft_quantile(&recs, 0.99),
        }),
        completed: ok.len() as u64,
        failed: failed as u64,
        request_throughput: ok.len() as f64 / recs.iter().filter_map(|r| r.end).fold(0.0, f64::max).max(1e-9),
        goodput: None,
        duration: case.stage_secs,
        preemptions: Some(preemptions as f64),
    };
    let mut t =
        measure::judge(s, false, n, x, repeat, &format!("p{n:03}"), &stats, measure::pace_of(sent, ok));
    t.seed = Some(seed);
    t
}

/// The search on `case` with the workload seed `seed`.
pub(crate) fn search(case: &Case, s: &Search, seed: u64) -> Outcome {
    let mut trials: Vec<Trial> = Vec::new();
    while let Decision::Try { x, repeat } = search::decide(s, &trials) {
        let n = trials.len() + 1;
        trials.push(trial(case, s, n, x, repeat, seed + u64::from(repeat) * 7919));
    }
    search::conclude(s, trials)
}

/// Whether a long stage at `x` is stable: the rule of the truth (achieved ≥ 95% of sent over
/// the last two thirds, and the median TTFT of the last third within 1.25× that of the middle
/// third, or one ordinary latency of it).
pub(crate) fn truly_stable(case: &Case, x: f64, secs: f64, seed: u64) -> bool {
    let (recs, _) = stage(case, Load::Rate(x), secs, seed);
    let sent: Vec<f64> = recs.iter().map(|r| r.sent).collect();
    let ok: Vec<(f64, f64, f64)> =
        recs.iter().filter(|r| !r.failed).filter_map(|r| Some((r.sent, r.end?, r.first? - r.sent))).collect();
    measure::pace_of(sent, ok).is_some_and(|p| p.stable_truth())
}

/// The largest value of `grid` (ascending) stable for every seed, with every value below it
/// stable too.
pub(crate) fn truth(case: &Case, grid: &[f64], secs: f64, seeds: u64) -> Option<f64> {
    let mut best = None;
    for &x in grid {
        if (1..=seeds).all(|seed| truly_stable(case, x, secs, seed)) {
            best = Some(x);
        } else {
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(profile: &str, sets: &[&str]) -> SimConfig {
        SimConfig::profile(profile).and_then(|c| c.apply_sets(sets)).expect("a shipped profile")
    }

    fn rate_search() -> Search {
        let text = "search: { factor: workload.stages.0.rate, from: 1, to: 64, trials: 8 }\n";
        crate::spec::experiment::Experiment::from_yaml(text, "e.yaml").expect("valid").search.expect("search")
    }

    pub(crate) fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "8B H100, 8 sequences, 128 in / 64 out (flat past the knee)",
                cfg: sim("llama-3.1-8b/h100", &["max_num_seqs=8"]),
                input: 128,
                output: 64,
                spread: 0.25,
                stage_secs: 20.0,
            },
            Case {
                name: "8B H100, 1,024 in / 1,024 out (collapses past the knee)",
                cfg: sim("llama-3.1-8b/h100", &[]),
                input: 1024,
                output: 1024,
                spread: 0.0,
                stage_secs: 300.0,
            },
            Case {
                name: "8B H100, 2,048 in / 256 out (KV-bound, flat past the knee)",
                cfg: sim("llama-3.1-8b/h100", &[]),
                input: 2048,
                output: 256,
                spread: 0.0,
                stage_secs: 300.0,
            },
            Case {
                name: "70B 4×H100, 1,024 in / 512 out (collapses past the knee)",
                cfg: sim("llama-3.1-70b/h100-tp4", &[]),
                input: 1024,
                output: 512,
                spread: 0.0,
                stage_secs: 300.0,
            },
        ]
    }

    /// The class, not one case: on each engine of the family, the search's answer lies within
    /// 5% of the truth in at most 8 trials, the truth checked around the answer by long stages
    /// (a 5% lower rate is stable over 900 s, a 5% higher one is not; for the concurrency, the
    /// SLO holds one step below and is missed one step above).
    #[test]
    fn the_search_lands_within_5_percent_of_the_truth_on_every_engine_of_the_family() {
        let s = rate_search();
        for case in cases() {
            {
                let seed = 11;
                let o = search(&case, &s, seed);
                let a = o.answer.unwrap_or_else(|| panic!("{}: no answer: {}", case.name, o.says));
                assert!(o.trials.len() <= 8, "{}: {} trials", case.name, o.trials.len());
                // The truth's rule: stable for each of three seeds.
                let stable = |x: f64| (0..3).all(|k| truly_stable(&case, x, 900.0, seed * 10 + k));
                assert!(stable(a / 1.05), "{}: {a}/1.05 is not stable: {}", case.name, o.says);
                assert!(!stable(a * 1.05), "{}: {a}·1.05 is stable: {}", case.name, o.says);
            }
        }
        let (case, s, slo) = slo_case();
        let o = search(&case, &s, 11);
        let a = o.answer.expect("an answer") as usize;
        assert!(o.trials.len() <= 8);
        let p99 = |c: usize| ttft_quantile(&stage(&case, Load::Concurrency(c), 900.0, 11).0, 0.99);
        assert!(p99(a - 1) <= slo && p99(a + 1) > slo, "{a}: {} / {}", p99(a - 1), p99(a + 1));
    }

    /// The closed-loop case: the largest concurrency whose p99 TTFT stays within `slo_ms`.
    fn slo_case() -> (Case, Search, f64) {
        let case = Case {
            name: "8B H100, 8 sequences, concurrency within p99 TTFT ≤ 800 ms (closed loop)",
            cfg: sim("llama-3.1-8b/h100", &["max_num_seqs=8"]),
            input: 128,
            output: 64,
            spread: 0.25,
            stage_secs: 40.0,
        };
        let text = "search: { factor: workload.stages.0.concurrency, from: 1, to: 64, integer: true, \
                    objective: max_load_within_slo, slo: { p99_ttft_ms: 800 } }\n";
        let s = crate::spec::experiment::Experiment::from_yaml(text, "e.yaml")
            .expect("valid")
            .search
            .expect("search");
        (case, s, 800.0)
    }

    /// The largest concurrency whose p99 TTFT over long stages is within `slo_ms` for every
    /// seed, every smaller one too.
    fn slo_truth(case: &Case, slo_ms: f64, secs: f64, seeds: u64) -> Option<usize> {
        let mut best = None;
        for c in 1..=64 {
            let ok = (1..=seeds).all(|seed| {
                let (recs, _) = stage(case, Load::Concurrency(c), secs, seed);
                ttft_quantile(&recs, 0.99) <= slo_ms
            });
            if !ok {
                break;
            }
            best = Some(c);
        }
        best
    }

    #[test]
    #[allow(clippy::print_stdout)]
    #[ignore = "a study: the closed-loop case (cargo test --release -- --ignored slo_study)"]
    fn slo_study() {
        let (case, s, slo) = slo_case();
        let truth = slo_truth(&case, slo, 900.0, 3);
        println!("{}: truth {truth:?}", case.name);
        for seed in 1..=10 {
            let o = search(&case, &s, seed);
            let trials: Vec<String> = o
                .trials
                .iter()
                .map(|t| {
                    format!(
                        "{}{}{}",
                        t.x,
                        if t.verdict == Verdict::Pass { "✓" } else { "✗" },
                        if t.marginal { "~" } else { "" }
                    )
                })
                .collect();
            println!(
                "  seed {seed:2}: answer {:?} in {} trials: {}",
                o.answer,
                o.trials.len(),
                trials.join(" ")
            );
        }
    }

    #[test]
    #[allow(clippy::print_stdout)]
    #[ignore = "a study: prints the truth and 10 searches per case (cargo test --release -- --ignored search_model)"]
    fn study() {
        let s = rate_search();
        let only = std::env::var("CASE").ok();
        for case in cases().into_iter().filter(|c| only.as_ref().is_none_or(|o| c.name.contains(o.as_str())))
        {
            let coarse: Vec<f64> = (0..100).map(|i| 1.0 + 0.2 * f64::from(i)).collect();
            let truth = truth(&case, &coarse, 900.0, 3).and_then(|t| {
                let fine: Vec<f64> = (0..=20).map(|i| t + 0.01 * f64::from(i)).collect();
                truth(&case, &fine, 900.0, 3)
            });
            println!("{}: truth {truth:?}", case.name);
            for seed in 1..=10 {
                let o = search(&case, &s, seed);
                let err = match (o.answer, truth) {
                    (Some(a), Some(t)) => format!("{:+.1}%", (a / t - 1.0) * 100.0),
                    _ => "-".into(),
                };
                println!(
                    "  seed {seed:2}: answer {:?} ({err}) in {} trials: {}",
                    o.answer,
                    o.trials.len(),
                    o.trials
                        .iter()
                        .map(|t| format!(
                            "{}{}{}",
                            t.x,
                            if t.verdict == Verdict::Pass { "✓" } else { "✗" },
                            if t.marginal { "~" } else { "" }
                        ))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                if std::env::var("WHY").is_ok() {
                    for t in &o.trials {
                        println!(
                            "      {} {:?} ach {:.2} off {:.2} noise {:.3} pre {:?} {}",
                            t.x, t.verdict, t.achieved, t.offered, t.noise, t.preemptions, t.why
                        );
                    }
                    println!("      {}", o.says);
                }
            }
        }
    }
}
