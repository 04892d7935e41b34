//! What one trial says: its verdict, read from its point's work directory: the statistics of the
//! measured stage (`stats.json`) and, for a rate, whether the server kept up with what was sent
//! (`requests.csv`). The search ([`super::search`]) decides from these trials.

use std::path::Path;

use serde_json::Value;

use super::search::{Trial, Verdict, expected, stage_index};
use crate::{
    analysis::{StatsDoc, counter_growth_within, percentile},
    results::{Col, Reader},
    spec::experiment::{Objective, Search},
    workdir::runs::RunDirs,
};

/// Judges a finished trial from its point's work directory.
pub(super) fn trial(dir: &Path, s: &Search, slo_defined: bool, n: usize, x: f64, repeat: u32) -> Trial {
    let mut t = unmeasured(dir, n, x, repeat);
    let Some(run) = RunDirs::latest(dir) else {
        t.why = "nothing was measured".into();
        return t;
    };
    let doc: Option<StatsDoc> =
        std::fs::read(run.analysis.join("stats.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let Some(doc) = doc else {
        t.why = "no statistics (see the point's work directory)".into();
        return t;
    };
    let Some(st) = stage_of(&s.factor, &doc).map(|i| &doc.stages[i]) else {
        t.why = "the stage was not measured".into();
        return t;
    };
    let pace = pace(&run.results, st.stage);
    let stats = Measured {
        keys: serde_json::to_value(st).unwrap_or_default(),
        completed: st.completed,
        failed: st.failed,
        request_throughput: st.request_throughput,
        goodput: st.request_goodput,
        duration: st.duration,
        // The measured stage's own preemptions (not the warm-up's or another stage's): from
        // its first send to its last completion.
        preemptions: pace.and_then(|p| {
            counter_growth_within(&run.results, "vllm:num_preemptions_total", p.first_sent, p.last_end)
        }),
    };
    let point = t.point.clone();
    judge(s, slo_defined, n, x, repeat, &point, &stats, pace)
}

/// What a trial's measured stage gave, from its statistics and the servers' counters.
#[derive(Debug, Clone)]
pub(super) struct Measured {
    /// The stage's `stats.json` keys (`p99_ttft_ms`, …).
    pub keys: Value,
    pub completed: u64,
    pub failed: u64,
    pub request_throughput: f64,
    pub goodput: Option<f64>,
    pub duration: f64,
    /// `vllm:num_preemptions_total`'s growth over the run (None: not scraped).
    pub preemptions: Option<f64>,
}

/// The verdict of the trial `n` at `x` (point `point`) from what its stage measured and how
/// it kept pace (the same for a real trial and a modelled one).
#[allow(clippy::too_many_arguments)]
pub(super) fn judge(
    s: &Search,
    slo_defined: bool,
    n: usize,
    x: f64,
    repeat: u32,
    point: &str,
    st: &Measured,
    pace: Option<Pace>,
) -> Trial {
    let mut t = unmeasured(Path::new(point), n, x, repeat);
    let keys = &st.keys;
    let total = (st.completed + st.failed) as f64;
    t.achieved = st.request_throughput;
    t.error_rate = if total > 0.0 { st.failed as f64 / total } else { 1.0 };
    t.median_ttft_ms = number(keys, "median_ttft_ms").unwrap_or(f64::NAN);
    t.p99_ttft_ms = number(keys, "p99_ttft_ms").unwrap_or(f64::NAN);
    t.seconds = st.duration;
    t.preemptions = st.preemptions;
    if let Some(p) = pace.filter(|_| s.objective == Objective::MaxStableRate) {
        kept_pace(&mut t, p);
    }
    let (fails, near) = match s.objective {
        Objective::MaxStableRate => stable_rate(&mut t, s),
        Objective::MaxLoadWithinSlo => {
            let share = st.goodput.unwrap_or(0.0) / st.request_throughput.max(f64::MIN_POSITIVE);
            within_slo(&mut t, s, share, keys, slo_defined)
        }
        Objective::Maximize | Objective::Minimize => {
            let m = s.metric.as_deref().unwrap_or("");
            t.metric = number(keys, m);
            t.verdict = Verdict::Measured;
            t.why = match t.metric {
                Some(v) => format!("{m} = {v:.3}"),
                None => format!("{m} was not measured"),
            };
            return t;
        }
    };
    t.marginal = near;
    if fails.is_empty() {
        t.verdict = Verdict::Pass;
    } else {
        t.verdict = Verdict::Fail;
        t.why = fails.join("; ");
    }
    t
}

/// A trial at `x` in the point directory `dir` before anything is read: an error, nothing
/// measured.
fn unmeasured(dir: &Path, n: usize, x: f64, repeat: u32) -> Trial {
    Trial {
        n,
        point: dir.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default(),
        x,
        repeat,
        seed: None,
        stretch: None,
        verdict: Verdict::Error,
        marginal: false,
        why: String::new(),
        achieved: 0.0,
        offered: x,
        error_rate: f64::NAN,
        ttft_growth: f64::NAN,
        median_ttft_ms: f64::NAN,
        p99_ttft_ms: f64::NAN,
        metric: None,
        noise: f64::NAN,
        preemptions: None,
        seconds: 0.0,
    }
}

/// A number of the stage's statistics by its `stats.json` key.
fn number(keys: &Value, k: &str) -> Option<f64> {
    keys.get(k).and_then(Value::as_f64)
}

/// What the records say about keeping up, onto the trial: the rates sent and completed, and
/// how much TTFT grew (none when the growth is within one ordinary request's latency).
fn kept_pace(t: &mut Trial, p: Pace) {
    t.achieved = p.achieved;
    t.offered = p.offered;
    t.noise = p.noise;
    t.seconds = p.seconds;
    t.ttft_growth = if p.ttft_middle > 0.0 { p.ttft_last / p.ttft_middle } else { f64::NAN };
    // A queue that grows adds more than one ordinary request's latency over a third of the
    // stage; less is the noise of bursts (a few waits more or less), not growth.
    if p.ttft_last - p.ttft_middle <= p.latency_ms.max(5.0) {
        t.ttft_growth = t.ttft_growth.min(1.0);
    }
}

/// The share of a stage's requests the server may preempt and still be judged stable.
const PREEMPTED: f64 = 0.03;

/// How far from the keeping-up threshold a trial is decided by chance: twice the noise of its
/// achieved ÷ offered (at least 1%; 2% when the noise is unknown).
pub(super) fn margin(t: &Trial) -> f64 {
    if t.noise.is_finite() { (2.0 * t.noise).max(0.01) } else { 0.02 }
}

/// `max_stable_rate`: what failed (the server fell behind what was sent, too many errors, a
/// growing queue when `queue_growth` is set) and whether it was close; a passing trial's `why`.
fn stable_rate(t: &mut Trial, s: &Search) -> (Vec<String>, bool) {
    let mut fails: Vec<String> = Vec::new();
    let mut near = false;
    let reference = expected(t);
    let ratio = if reference > 0.0 { t.achieved / reference } else { 0.0 };
    let floor = 1.0 - s.tolerance;
    let offered = if t.offered > t.x {
        format!("the {} req/s asked ({:.2} sent)", t.x, t.offered)
    } else {
        format!("{:.2} req/s sent", t.offered)
    };
    if ratio < floor {
        fails.push(format!(
            "the queue grows: achieved {:.2} of {offered} ({:.0}%)",
            t.achieved,
            ratio * 100.0
        ));
    }
    near |= (ratio - floor).abs() < margin(t);
    if t.error_rate > s.max_error_rate {
        fails.push(format!("{:.1}% of requests failed", t.error_rate * 100.0));
    }
    // A server that keeps up has room in its KV cache; one that preempts a share of its
    // requests has run out, and its running batch grows until it collapses (a short stage
    // does not see the end of that).
    let requests = (t.offered * t.seconds).max(1.0);
    if let Some(p) = t.preemptions.filter(|p| *p > PREEMPTED * requests) {
        fails.push(format!(
            "the KV cache ran out: the server preempted {p:.0} requests ({:.1}% of the {requests:.0} sent)",
            p / requests * 100.0
        ));
    }
    near |= t.preemptions.is_some_and(|p| p > PREEMPTED / 4.0 * requests && p <= PREEMPTED * requests);
    if let (Some(limit), true) = (s.queue_growth, t.ttft_growth.is_finite()) {
        if t.ttft_growth > limit {
            fails.push(format!(
                "the queue grows (TTFT ×{:.1} from the middle to the last third)",
                t.ttft_growth
            ));
        }
        near |= t.ttft_growth > limit * 0.8 && t.ttft_growth < limit * 1.25;
    }
    if fails.is_empty() {
        t.why = format!(
            "achieved {:.2} of {offered} ({:.0}%), {:.1}% failed, TTFT ×{:.2} over the stage",
            t.achieved,
            ratio * 100.0,
            t.error_rate * 100.0,
            if t.ttft_growth.is_finite() { t.ttft_growth } else { 1.0 }
        );
    }
    (fails, near)
}

/// `max_load_within_slo`: which SLOs the stage missed (`got`: the share of its requests
/// that met the workload's) (the search's own, the share of
/// requests meeting the workload's, the error rate) and whether it was close; a passing
/// trial's `why`.
fn within_slo(t: &mut Trial, s: &Search, got: f64, keys: &Value, slo_defined: bool) -> (Vec<String>, bool) {
    let mut fails: Vec<String> = Vec::new();
    let mut near = false;
    for (k, limit) in &s.slo {
        match number(keys, k) {
            Some(v) if v > *limit => fails.push(format!("{k} {v:.1} > {limit}")),
            Some(v) => near |= (v - limit).abs() < 0.05 * limit,
            None => fails.push(format!("{k} was not measured")),
        }
    }
    let share = s.goodput_share.or(if s.slo.is_empty() && slo_defined { Some(0.95) } else { None });
    if let Some(min) = share {
        if got < min {
            fails.push(format!(
                "{:.0}% of requests met the workload's SLOs (< {:.0}%)",
                got * 100.0,
                min * 100.0
            ));
        }
        near |= (got - min).abs() < 0.02;
    }
    if t.error_rate > s.max_error_rate {
        fails.push(format!("{:.1}% of requests failed", t.error_rate * 100.0));
    }
    if fails.is_empty() {
        t.why = "every SLO held".into();
    }
    (fails, near)
}

/// The stage a factor path measures: `workload.stages.N.…` is stage N + 1 (stage 0 is the
/// warm-up); anything else the last stage.
fn stage_of(factor: &str, doc: &StatsDoc) -> Option<usize> {
    match stage_index(factor) {
        Some(n) => doc.stages.iter().position(|s| s.stage as usize == n + 1),
        None => doc.stages.len().checked_sub(1),
    }
}

/// What a stage's records say about keeping up, beyond its statistics.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    /// Requests sent per second over the stage's last two thirds (the schedule as it came out,
    /// not the nominal rate: a Poisson schedule of a few seconds is several percent off its
    /// rate by chance).
    offered: f64,
    /// Requests completed per second over the same window shifted by one ordinary latency (the
    /// first third's median). A server that keeps up completes what is sent, one latency later;
    /// an overloaded one completes at its capacity. The first third is left out: the stage starts
    /// from an empty server.
    achieved: f64,
    /// Median TTFT (ms) of the middle and of the last third of the requests, by send time (the
    /// first third is skipped: a stage starts from an empty server, and the climb to its steady
    /// queue is not growth).
    ttft_middle: f64,
    ttft_last: f64,
    /// Median latency (ms) of the first third: one ordinary request.
    latency_ms: f64,
    /// The standard deviation of achieved ÷ offered for a server that keeps up: the requests
    /// in flight at the window's edges, relative to those sent in it.
    noise: f64,
    /// From the first send to the last.
    seconds: f64,
    /// The stage's first send and last completion, on the run's clock (s).
    pub(super) first_sent: f64,
    pub(super) last_end: f64,
}

impl Pace {
    /// The rule of a slow sweep's truth: achieved at least 95% of what was sent, and the
    /// median TTFT of the last third within 1.25× that of the middle third (or within one
    /// ordinary request's latency of it): flat.
    #[cfg(test)]
    pub(super) fn stable_truth(&self) -> bool {
        self.achieved >= 0.95 * self.offered
            && (self.ttft_last <= 1.25 * self.ttft_middle
                || self.ttft_last - self.ttft_middle <= self.latency_ms)
    }
}

/// The upper middle (a value that was measured), NaN when empty.
fn median(mut v: Vec<f64>) -> f64 {
    percentile::higher(&mut v, 0.5)
}

/// How the stage `stage` of the records in `results` kept pace with its sends (None with too
/// few requests to tell).
fn pace(results: &Path, stage: u32) -> Option<Pace> {
    let mut reader = Reader::open(&results.join("requests.csv")).ok()?;
    // (sent, end, ttft s) of successful requests; every request's send time. A row without a
    // stage or send time does not count; a read error ends the records.
    let mut ok: Vec<(f64, f64, f64)> = Vec::new();
    let mut sent_all: Vec<f64> = Vec::new();
    while let Ok(Some(row)) = reader.next_row() {
        if row.warmup() || row.stage().ok() != Some(stage) {
            continue;
        }
        let Ok(sent) = row.secs(Col::SentUs) else { continue };
        sent_all.push(sent);
        if row.error_kind().is_some() {
            continue;
        }
        if let (Ok(first), Ok(end)) = (row.secs(Col::FirstTokenUs), row.secs(Col::EndUs)) {
            ok.push((sent, end, first - sent));
        }
    }
    pace_of(sent_all, ok)
}

/// How a stage kept pace, from every request's send time and the (sent, end, TTFT) of those
/// that succeeded, all in seconds (None with too few requests to tell).
pub(super) fn pace_of(mut sent_all: Vec<f64>, mut ok: Vec<(f64, f64, f64)>) -> Option<Pace> {
    if ok.len() < 9 || sent_all.len() < 2 {
        return None;
    }
    sent_all.sort_by(f64::total_cmp);
    let (s0, s1) = (sent_all[0], sent_all[sent_all.len() - 1]);
    ok.sort_by(|a, b| a.0.total_cmp(&b.0));
    let third = (s1 - s0) / 3.0;
    let first: Vec<&(f64, f64, f64)> = ok.iter().filter(|r| r.0 <= s0 + third).collect();
    let latency = median(first.iter().map(|r| r.1 - r.0).collect());
    let middle =
        median(ok.iter().filter(|r| r.0 > s0 + third && r.0 < s1 - third).map(|r| r.2 * 1e3).collect());
    let (a, b) = (s0 + third, s1);
    let window = (b - a).max(1e-9);
    let sent = sent_all.iter().filter(|t| **t >= a && **t <= b).count() as f64;
    // Completions one ordinary latency later than the sends they answer; one request of slack,
    // so a window of a few requests is not failed by where its edges fall.
    let done = ok.iter().filter(|r| r.1 >= a + latency && r.1 <= b + latency).count() as f64;
    let done = (done + 1.0).min(sent.max(done));
    // A server that keeps up completes what was sent one latency later, except for the
    // requests in flight at the window's two edges: about λ·L each (Little), Poisson-like, so
    // sends − completions has a standard deviation of about √(2λL), relative to the λW sent.
    let in_flight = sent / window * latency.max(0.0);
    let noise = ((2.0 * in_flight).sqrt().max(1.0)) / sent.max(1.0);
    Some(Pace {
        offered: sent / window,
        achieved: done / window,
        ttft_middle: middle,
        ttft_last: median(ok.iter().filter(|r| r.0 >= s1 - third).map(|r| r.2 * 1e3).collect()),
        latency_ms: latency * 1e3,
        noise,
        seconds: s1 - s0,
        first_sent: s0,
        last_end: ok.iter().map(|r| r.1).fold(s1, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search() -> Search {
        let text = "search: { factor: workload.stages.0.rate, from: 1, to: 200 }\n";
        crate::spec::experiment::Experiment::from_yaml(text, "e.yaml").unwrap().search.unwrap()
    }

    #[test]
    fn a_point_without_records_is_an_error_that_says_so() {
        let dir = std::env::temp_dir().join(format!("bf-measure-{}", std::process::id())).join("p007");
        let t = trial(&dir, &search(), false, 3, 12.0, 0);
        assert_eq!(
            (t.verdict, t.why.as_str(), t.point.as_str()),
            (Verdict::Error, "nothing was measured", "p007")
        );
        assert_eq!((t.n, t.x, t.offered), (3, 12.0, 12.0));
    }

    #[test]
    fn a_stable_rate_keeps_up_with_what_was_sent() {
        let s = search();
        let at = |achieved: f64| {
            let mut t = unmeasured(Path::new("p001"), 1, 16.0, 0);
            (t.achieved, t.offered, t.error_rate, t.ttft_growth) = (achieved, 16.0, 0.0, 1.0);
            let (fails, near) = stable_rate(&mut t, &s);
            (fails, near, t.why)
        };
        let (fails, near, _) = at(13.9);
        assert_eq!(fails, ["the queue grows: achieved 13.90 of 16.00 req/s sent (87%)"]);
        assert!(!near);
        let (fails, near, why) = at(15.9);
        assert!(fails.is_empty() && !near);
        assert_eq!(why, "achieved 15.90 of 16.00 req/s sent (99%), 0.0% failed, TTFT ×1.00 over the stage");
        let (fails, near, _) = at(15.3);
        assert!(fails.is_empty() && near, "within 2% of the floor: marginal");
    }

    #[test]
    fn ttft_growth_within_one_ordinary_latency_is_not_growth() {
        let pace = |ttft_last: f64| Pace {
            offered: 16.0,
            achieved: 15.0,
            ttft_middle: 20.0,
            ttft_last,
            latency_ms: 10.0,
            noise: 0.01,
            seconds: 5.0,
            first_sent: 0.0,
            last_end: 5.0,
        };
        let mut t = unmeasured(Path::new("p001"), 1, 16.0, 0);
        kept_pace(&mut t, pace(24.0));
        assert_eq!((t.achieved, t.offered, t.ttft_growth), (15.0, 16.0, 1.0));
        kept_pace(&mut t, pace(60.0));
        assert_eq!(t.ttft_growth, 3.0);
    }
}
