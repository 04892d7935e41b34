//! Whether a stage's load generator sent at the rate it was asked: the achieved send rate
//! against the configured one, beyond the Poisson noise. A tool that sends more than asked
//! (GuideLLM 0.8.1's `poisson` profile sent 7.9 req/s for 5) measures a heavier load than its
//! label says; the stage is flagged in `stats.json`, `stats.txt` and the report. Any harness.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How much above the asked rate is still the noise: 3 standard deviations of a Poisson count
/// over the window, plus this share of the rate (timer and clock granularity).
pub(crate) const TOLERANCE: f64 = 0.02;
/// Standard deviations of the Poisson count allowed.
pub(crate) const SIGMAS: f64 = 3.0;

/// A rate stage's sends against what was asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SendRate {
    /// The rate asked of the stage, requests/s.
    pub asked: f64,
    /// The rate the requests were sent at: (sends − 1) / (last send − first send), requests/s.
    pub achieved: f64,
    /// The highest achieved rate still within the noise: asked × 1.02 + 3·√(asked·W)/W over the
    /// W seconds of sends.
    pub limit: f64,
    /// Sent more than asked: `achieved` above `limit`.
    pub over_sent: bool,
}

impl SendRate {
    /// `sends` requests sent from `first` to `last` (seconds) in a stage asked `asked` req/s;
    /// `None` for fewer than 3 sends or no time between them (no rate to speak of).
    pub fn of(asked: f64, sends: u64, first: f64, last: f64) -> Option<SendRate> {
        let w = last - first;
        if sends < 3 || w.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || asked <= 0.0 {
            return None;
        }
        let achieved = (sends - 1) as f64 / w;
        let limit = asked * (1.0 + TOLERANCE) + SIGMAS * (asked * w).sqrt() / w;
        Some(SendRate { asked, achieved, limit, over_sent: achieved > limit })
    }

    /// One line for people, when the stage sent more than asked.
    pub fn warning(&self, stage: u32) -> Option<String> {
        self.over_sent.then(|| {
            format!(
                "stage {stage} sent {:.2} requests/s where {} were asked (above {:.2}, the Poisson noise's 3σ + 2%): \
                 the tool sent more than asked, so the stage measured a heavier load than its label says",
                self.achieved, self.asked, self.limit
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Poisson send times at `rate` for `secs` seconds.
    fn poisson(rate: f64, secs: f64, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        let (mut t, mut out) = (0.0, Vec::new());
        loop {
            t += rng.exponential(1.0 / rate);
            if t > secs {
                return out;
            }
            out.push(t);
        }
    }

    fn of(asked: f64, sends: &[f64]) -> SendRate {
        SendRate::of(asked, sends.len() as u64, sends[0], sends[sends.len() - 1]).unwrap()
    }

    #[test]
    fn a_stage_sent_faster_than_asked_is_flagged_and_one_at_rate_is_not() {
        // GuideLLM's case: 7.9 req/s for 5 asked, over 20 s.
        let over = of(5.0, &poisson(7.9, 20.0, 1));
        assert!(over.over_sent, "{over:?}");
        assert!((over.achieved - 7.9).abs() < 1.5, "{over:?}");
        assert!(over.warning(1).unwrap().contains("where 5 were asked"));
        // At the rate asked: Poisson realisations are within the noise, seed after seed.
        for seed in 0..200 {
            let at = of(5.0, &poisson(5.0, 20.0, seed));
            assert!(!at.over_sent, "seed {seed}: {at:?}");
            assert_eq!(at.warning(1), None);
        }
        // A constant schedule at the rate, and one that fell behind, are fine too.
        let constant: Vec<f64> = (0..100).map(|i| f64::from(i) / 5.0).collect();
        assert!(!of(5.0, &constant).over_sent);
        assert!((of(5.0, &constant).achieved - 5.0).abs() < 1e-9);
        let behind: Vec<f64> = (0..100).map(|i| f64::from(i) / 3.0).collect();
        assert!(!of(5.0, &behind).over_sent);
        // 10% over on a long constant stage is beyond the 2% + 3σ allowance.
        let fast: Vec<f64> = (0..2000).map(|i| f64::from(i) / 5.5).collect();
        assert!(of(5.0, &fast).over_sent, "{:?}", of(5.0, &fast));
    }

    /// Records of three stages through the whole analysis: one sent at 8 req/s where 5 were
    /// asked (GuideLLM's poisson profile), one sent at the rate (a Poisson realisation), one a
    /// concurrency stage (nothing asked).
    #[test]
    fn records_sent_over_the_rate_are_flagged_in_stats_json_stats_txt_and_the_report() {
        let dir = std::env::temp_dir().join(format!("bf-pace-{}", std::process::id()));
        let results = dir.join("results");
        std::fs::create_dir_all(&results).unwrap();
        let mut info = crate::results::RunInfo::starting("http://x".into(), "m".into());
        let mut csv = crate::results::HEADER.join(",") + "\n";
        let stages: [(u32, Option<f64>, Vec<f64>); 3] = [
            (1, Some(5.0), poisson(8.0, 20.0, 7)),
            (2, Some(5.0), poisson(5.0, 20.0, 8)),
            (3, None, (0..40).map(|i| f64::from(i) * 0.1).collect()),
        ];
        let mut offset = 0.0;
        for (stage, rate, sends) in &stages {
            let label = rate.map_or("concurrency=4".to_string(), |r| format!("rate={r}/s poisson"));
            info.stages.push(crate::results::StageWindow {
                stage: *stage,
                label,
                start_s: offset,
                end_s: offset + 21.0,
                dispatched: sends.len() as u64,
                rate: *rate,
                ramp: None,
            });
            for (i, t) in sends.iter().enumerate() {
                let us = |s: f64| format!("{:.0}", (offset + s) * 1e6);
                csv += &format!(
                    "{stage},{i},0,{},{},{},{},{},1,10,1,usage,200,,,\n",
                    us(*t),
                    us(*t),
                    us(t + 0.05),
                    us(t + 0.05),
                    us(t + 0.06)
                );
            }
            offset += 30.0;
        }
        std::fs::write(results.join("run.json"), serde_json::to_string(&info).unwrap()).unwrap();
        std::fs::write(results.join("requests.csv"), csv).unwrap();
        let a = crate::analysis::compute(&results, crate::analysis::Convention::Vllm, &Default::default())
            .unwrap();
        let dirs =
            crate::analysis::Dirs { workdir: dir.clone(), results: results.clone(), out: dir.join("out") };
        let html = crate::analysis::report::render(&dirs, &a, &[]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(html.matches("<p class=warn>stage ").count(), 1, "{html}");
        assert!(html.contains("<p class=warn>stage 1 sent"), "{html}");
        let flags: Vec<Option<bool>> =
            a.stages.iter().map(|s| s.send_rate.as_ref().map(|r| r.over_sent)).collect();
        assert_eq!(flags, [Some(true), Some(false), None]);
        let doc = serde_json::to_value(crate::analysis::StatsDoc::of(&a)).unwrap();
        assert_eq!(doc["stages"][0]["send_rate"]["over_sent"], true);
        assert_eq!(doc["stages"][0]["send_rate"]["asked"], 5.0);
        assert!(doc["stages"][0]["send_rate"]["achieved"].as_f64().unwrap() > 6.5, "{doc}");
        assert_eq!(doc["stages"][1]["send_rate"]["over_sent"], false);
        assert!(doc["stages"][2]["send_rate"].is_null());
        let text = crate::analysis::render_text(&a);
        assert_eq!(text.matches("WARNING: stage").count(), 1, "{text}");
        assert!(text.contains("WARNING: stage 1 sent"), "{text}");
    }

    #[test]
    fn the_limit_is_the_poisson_noise_plus_two_percent() {
        // 100 s at 10 req/s: λW = 1000, σ = √1000 ≈ 31.6 requests, 0.316 req/s.
        let r = SendRate::of(10.0, 1001, 0.0, 100.0).unwrap();
        assert!((r.limit - (10.2 + 3.0 * 1000f64.sqrt() / 100.0)).abs() < 1e-12);
        assert!((r.achieved - 10.0).abs() < 1e-12);
        // Too few sends, or none apart: no rate.
        assert_eq!(SendRate::of(10.0, 2, 0.0, 1.0), None);
        assert_eq!(SendRate::of(10.0, 50, 3.0, 3.0), None);
    }
}
