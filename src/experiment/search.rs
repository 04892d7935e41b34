//! The search: which value to try next, and when to stop (`docs/search.md` has the reasoning);
//! what a trial says is read from its point by `measure`. Pure: the trials so far decide the
//! next one, so a resumed search replays its decisions from the recorded trials and runs only
//! what is missing.

use serde::{Deserialize, Serialize};

use crate::spec::{
    experiment::{Objective, Search},
    workload::Stage,
};

/// What one trial showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    /// Stable, or every SLO held.
    Pass,
    /// Unstable, or an SLO missed.
    Fail,
    /// `maximize` / `minimize`: measured, no verdict.
    Measured,
    /// Nothing was measured (the point could not run).
    Error,
}

/// One trial, in the order it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Trial {
    pub n: usize,
    pub point: String,
    /// The value of the searched variable.
    pub x: f64,
    /// 0 for the first trial at `x`; a repeat (another seed) counts up.
    pub repeat: u32,
    /// The workload seed of a repeat.
    #[serde(default)]
    pub seed: Option<u64>,
    /// A trial inside the bracket: the stage's duration (or request count) it ran with.
    #[serde(default)]
    pub stretch: Option<(String, serde_json::Value)>,
    pub verdict: Verdict,
    /// Close to a threshold: repeated before it moves the bracket.
    pub marginal: bool,
    /// Why, in words (`achieved 13.9 of 16 req/s (87%)`, `p99_ttft_ms 240 > 200`).
    pub why: String,
    #[serde(deserialize_with = "nan_if_null")]
    pub achieved: f64,
    /// The rate the schedule actually sent (a rate search; else the value).
    #[serde(default, deserialize_with = "nan_if_null")]
    pub offered: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub error_rate: f64,
    /// Median TTFT of the stage's last third over its first third.
    #[serde(deserialize_with = "nan_if_null")]
    pub ttft_growth: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub median_ttft_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p99_ttft_ms: f64,
    /// The `maximize` / `minimize` metric.
    pub metric: Option<f64>,
    /// The standard deviation of achieved ÷ offered for a server that keeps up (the requests
    /// in flight at the edges of the window counted), relative: what sets "marginal".
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub noise: f64,
    /// Requests the server preempted during the run (`vllm:num_preemptions_total`; None when
    /// not scraped): at overload, a sign that its throughput falls as the load rises.
    #[serde(default)]
    pub preemptions: Option<f64>,
    /// The measured stage's length, first send to last, in seconds.
    #[serde(default)]
    pub seconds: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// JSON has no NaN (serde_json writes null): read null back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The answer with how sure it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Outcome {
    pub objective: Objective,
    pub factor: String,
    /// The answer (None: no value in the range qualifies).
    pub answer: Option<f64>,
    /// The bracket that holds it: the largest passing and the smallest failing value tried
    /// (None at an end: nothing tried there failed / passed).
    pub bracket: (Option<f64>, Option<f64>),
    /// In words: the answer, or why there is none.
    pub says: String,
    /// The highest achieved throughput seen, and the offered value where it was.
    pub peak: Option<(f64, f64)>,
    pub trials: Vec<Trial>,
    /// Why the server's throughput was seen to fall past its knee (then the capacity seen at
    /// overload was a lower bound of the answer, not a ceiling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse: Option<String>,
    /// Stopped (Ctrl-C) before the search ended: the bracket is the one so far, no answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

/// A search stopped before it ended says so, with the bracket so far and no answer (what the
/// budget or the precision would have said is not known yet).
pub(crate) fn interrupted(mut o: Outcome) -> Outcome {
    let show = |v: Option<f64>| v.map_or_else(|| "…".to_string(), |v| format!("{v:.3}"));
    o.interrupted = true;
    o.answer = None;
    o.says = format!(
        "interrupted after {} trial(s), before the search ended: no answer yet; the bracket so far is [{}, {}); \
         the same command resumes",
        o.trials.len(),
        show(o.bracket.0),
        show(o.bracket.1)
    );
    o
}

/// A trial's point values: the searched variable (whole numbers as integers), and the
/// workload seed of a repeat.
pub(crate) fn point_values(
    s: &Search,
    x: f64,
    seed: Option<u64>,
    stretch: Option<&(String, serde_json::Value)>,
) -> Vec<(String, serde_json::Value)> {
    let value = if s.integer || x.fract() == 0.0 {
        serde_json::Value::from(x as i64)
    } else {
        serde_json::Value::from(x)
    };
    let mut out = vec![(s.factor.clone(), value)];
    if let Some(seed) = seed {
        out.push(("workload.seed".to_string(), serde_json::Value::from(seed)));
    }
    out.extend(stretch.cloned());
    out
}

/// Whether the next trial lies inside the bracket (a pass below, a fail above), where
/// `refine` lengthens its stage.
pub(crate) fn refining(s: &Search, trials: &[Trial]) -> bool {
    s.refine > 1.0
        && !matches!(s.objective, Objective::Maximize | Objective::Minimize)
        && matches!(bracket(trials), (Some(_), Some(_)))
}

/// The setting that lengthens the measured stage `refine` times: `(path, value)` for its
/// `duration` (`"15s"`) or, without one, its `requests`; `stage` is the workload's stage
/// `index` as resolved (`None` when it has neither).
pub(crate) fn stretch(s: &Search, index: usize, stage: &Stage) -> Option<(String, serde_json::Value)> {
    let path = |key: &str| format!("workload.stages.{index}.{key}");
    if let Some(d) = stage.duration {
        return Some((path("duration"), serde_json::Value::from(format!("{}s", (d.0 * s.refine).round()))));
    }
    let n = stage.requests?;
    Some((path("requests"), serde_json::Value::from((n as f64 * s.refine).round() as u64)))
}

/// The index (in the workload's `stages`) of the stage a search measures.
pub(crate) fn measured_stage(s: &Search, stages: usize) -> Option<usize> {
    stage_index(&s.factor).or(stages.checked_sub(1))
}

/// What to do next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Try { x: f64, repeat: u32 },
    Done,
}

/// N of a factor path `workload.stages.N.…`.
pub(super) fn stage_index(factor: &str) -> Option<usize> {
    factor.strip_prefix("workload.stages.").and_then(|r| r.split('.').next()).and_then(|n| n.parse().ok())
}

/// Where a trial sits on the searched axis: the value set (for a rate, the nominal rate; the
/// keeping-up check compares with the rate the schedule actually sent, but the bracket and the
/// answer are in the units the user sets).
fn position(t: &Trial) -> f64 {
    t.x
}

/// (largest passing position below the smallest failing one, smallest failing position): a
/// value is judged by every trial at it, so a repeat that fails makes it fail.
fn bracket(trials: &[Trial]) -> (Option<f64>, Option<f64>) {
    let judged = || trials.iter().filter(|t| matches!(t.verdict, Verdict::Pass | Verdict::Fail));
    let upper = judged().filter(|t| t.verdict == Verdict::Fail).map(position).reduce(f64::min);
    let failed_at = |x: f64| judged().any(|t| t.x == x && t.verdict == Verdict::Fail);
    let lower = judged()
        .filter(|t| t.verdict == Verdict::Pass && !failed_at(t.x))
        .map(position)
        .filter(|p| upper.is_none_or(|u| *p < u))
        .reduce(f64::max);
    (lower, upper)
}

/// The rate a server that keeps up completes: what the schedule sent, but no more than the
/// rate asked. A Poisson schedule of a few seconds sends several percent more or less than its
/// rate by chance; above it, a server at 97% load falls behind the burst for a while, which says
/// nothing about whether it sustains the rate asked: completing the rate asked does.
pub(super) fn expected(t: &Trial) -> f64 {
    t.offered.min(t.x)
}

/// Whether a failed trial measured the server's capacity: it did not keep up (completions
/// short of the sends by more than the tolerance) and few requests failed, so the server was
/// busy throughout and completed what it can.
fn saturated(s: &Search, t: &Trial) -> bool {
    t.verdict == Verdict::Fail
        && t.error_rate <= s.max_error_rate
        && t.achieved > 0.0
        && t.achieved < (1.0 - s.tolerance) * expected(t)
}

/// `max_stable_rate`: the capacity seen, the highest rate a saturated trial completed, and
/// that trial.
fn capacity<'a>(s: &Search, trials: &'a [Trial]) -> Option<(f64, &'a Trial)> {
    (s.objective == Objective::MaxStableRate)
        .then(|| {
            trials
                .iter()
                .filter(|t| saturated(s, t))
                .map(|t| (t.achieved, t))
                .reduce(|a, b| if b.0 > a.0 { b } else { a })
        })
        .flatten()
}

/// The trials as judged together. A rate above the capacity seen cannot be stable, whatever
/// its own short stage showed, unless the server completed clearly more there than at
/// overload: its queue grows by the difference every second, and such a trial passed only
/// because a few seconds of a queue growing by a few percent look like noise. It is judged
/// failed (and said why). A trial that kept up at a rate above the capacity seen *and*
/// completed more than that capacity by more than its noise stands: the server sustains more
/// than it did at overload, i.e. its throughput falls past the knee ([`collapse`]); once that
/// is seen, the capacity seen is no ceiling at all.
pub(crate) fn judged(s: &Search, trials: &[Trial]) -> Vec<Trial> {
    let mut out = trials.to_vec();
    let Some((cap, at)) = capacity(s, trials) else {
        return out;
    };
    // A collapsing server's capacity seen is below its knee: no ceiling (a trial above its
    // knee shows the KV cache running out instead, see `measure`).
    if collapse(s, trials).is_some() {
        return out;
    }
    let at = format!("trial {}, {}", at.n, at.point);
    // (A value rounded onto the capacity itself is not above it.)
    for t in out.iter_mut().filter(|t| t.verdict == Verdict::Pass && t.x > cap * 1.001) {
        if t.achieved > cap * (1.0 + super::measure::margin(t)) {
            continue;
        }
        t.verdict = Verdict::Fail;
        t.marginal = false;
        t.why = format!(
            "above the capacity seen: the server completed at most {cap:.2} req/s when it could not keep up \
             ({at}), so at {} its queue grows by {:.2} req/s ({})",
            t.x,
            t.x - cap,
            t.why
        );
    }
    out
}

/// Whether the server's throughput falls past its knee, and why: then a trial at overload
/// completes less than the server sustains at the knee, so the capacity seen is a lower bound
/// of the answer, not a ceiling, and the knee is probed from below. Seen as: an overloaded
/// trial during which the server preempted requests (vLLM recomputes a preempted request's KV
/// cache: work done twice), a trial that kept up above the capacity seen and completed more
/// than it by more than its noise, or an overloaded trial completing less than another at a
/// lower rate by more than the noise.
pub(crate) fn collapse(s: &Search, trials: &[Trial]) -> Option<String> {
    let (cap, at) = capacity(s, trials)?;
    if let Some(t) = trials.iter().find(|t| saturated(s, t) && t.preemptions.is_some_and(|p| p > 0.0)) {
        return Some(format!(
            "the server preempted {} request(s) at overload (trial {}): its throughput there is below what it sustains",
            t.preemptions.unwrap_or(0.0),
            t.n
        ));
    }
    let margin = super::measure::margin;
    if let Some(t) = trials
        .iter()
        .find(|t| t.verdict == Verdict::Pass && t.x > cap && t.achieved > cap * (1.0 + margin(t)))
    {
        return Some(format!(
            "trial {} kept up at {:.2} req/s, more than the {cap:.2} completed at overload (trial {})",
            t.n, t.achieved, at.n
        ));
    }
    trials
        .iter()
        .filter(|t| saturated(s, t))
        .flat_map(|hi| {
            trials.iter().filter(move |lo| saturated(s, lo) && lo.x < hi.x).map(move |lo| (lo, hi))
        })
        .find(|(lo, hi)| hi.achieved * (1.0 + margin(hi)) < lo.achieved)
        .map(|(lo, hi)| {
            format!(
                "the throughput fell as the load rose: {:.2} req/s at {} (trial {}), {:.2} at {} (trial {})",
                lo.achieved, lo.x, lo.n, hi.achieved, hi.x, hi.n
            )
        })
}

/// Whether the trials so far used the time budget.
fn out_of_time(s: &Search, trials: &[Trial]) -> bool {
    s.time_budget.is_some_and(|b| trials.iter().map(|t| t.seconds).sum::<f64>() >= b.0)
}

/// How far above the largest stable value a collapsing server's knee is looked for first.
const KNEE_ABOVE: f64 = 1.25;

/// How much wider each step is while nothing has failed (or passed) yet.
const EXPAND: f64 = 4.0;

fn round(s: &Search, x: f64) -> f64 {
    let x = x.clamp(s.from, s.to);
    if s.integer { x.round() } else { (x * 1000.0).round() / 1000.0 }
}

/// Whether the bracket is narrow enough.
fn narrow(s: &Search, lo: f64, hi: f64) -> bool {
    if s.integer { hi - lo <= 1.0 } else { (hi - lo) / lo <= s.precision }
}

/// The next trial, from those so far.
pub(crate) fn decide(s: &Search, trials: &[Trial]) -> Decision {
    if trials.len() >= s.trials as usize || out_of_time(s, trials) {
        return Decision::Done;
    }
    let tried = |x: f64| trials.iter().filter(|t| t.x == x).count() as u32;
    let fresh = |x: f64| Decision::Try { x, repeat: tried(x) };
    let Some(last) = trials.last() else {
        let start = s.start.unwrap_or_else(|| (s.from * s.to).sqrt());
        return fresh(round(s, start));
    };
    if last.verdict == Verdict::Error {
        return Decision::Done;
    }
    if matches!(s.objective, Objective::Maximize | Objective::Minimize) {
        return golden(s, trials);
    }
    // A trial near a threshold is repeated (another seed) before it moves the bracket.
    if last.marginal && tried(last.x) == 1 {
        return Decision::Try { x: last.x, repeat: 1 };
    }
    // At overload, the achieved rate is the server's capacity: the best guess of the boundary,
    // and a bound on it (a rate above it cannot be stable) unless the server collapses there,
    // when it is only a lower bound and the knee lies above it.
    let capacity = capacity(s, trials).map(|(c, _)| c);
    let collapsing = collapse(s, trials).is_some();
    let next = match bracket(&judged(s, trials)) {
        (Some(lo), None) if lo >= s.to => return Decision::Done,
        (Some(lo), None) => lo * EXPAND,
        (None, Some(hi)) if hi <= s.from => return Decision::Done,
        (None, Some(hi)) => match capacity {
            // What the server completed while collapsing it sustains: most likely stable.
            Some(c) if c < hi && collapsing => c,
            // Just under the capacity seen: most likely stable, and close.
            Some(c) if c < hi => c * 0.9,
            _ => hi / EXPAND,
        },
        (Some(lo), Some(hi)) => {
            // The boundary lies under the capacity seen, when that is above the last stable
            // value (and the server does not collapse).
            let top = capacity.filter(|c| !collapsing && *c > lo && *c < hi).unwrap_or(hi);
            if narrow(s, lo, top) {
                return Decision::Done;
            }
            // A collapsing server's knee lies a little above what it completed at overload
            // (10–20% on the engines we model): bisect towards at most 25% above the last
            // stable value, not towards a deep overload far above.
            let top = if collapsing { top.min(lo * KNEE_ABOVE) } else { top };
            // Knees lie at 80–97% of the capacity on the engines we model: probe 90%, then 80%;
            // a collapsing server sustains its capacity seen: probe it first.
            let shares: &[f64] = if collapsing { &[1.0] } else { &[0.9, 0.8] };
            for share in shares {
                let probe =
                    capacity.map(|c| round(s, c * share)).filter(|p| *p > lo && *p < hi && tried(*p) == 0);
                if let Some(p) = probe
                    && lo < p * 0.95
                {
                    return fresh(p);
                }
            }
            if s.integer { ((lo + top) / 2.0).floor().max(lo + 1.0) } else { (lo * top).sqrt() }
        }
        (None, None) => return Decision::Done,
    };
    let x = round(s, next);
    // Rounding onto a value tried already: the bracket cannot narrow any further.
    if tried(x) > 0 { Decision::Done } else { fresh(x) }
}

/// `maximize` / `minimize`: golden-section search over the range (a unimodal metric).
fn golden(s: &Search, trials: &[Trial]) -> Decision {
    const R: f64 = 0.381_966;
    let sign = if s.objective == Objective::Maximize { 1.0 } else { -1.0 };
    let value = |x: f64| trials.iter().find(|t| t.x == x).and_then(|t| t.metric).map(|m| m * sign);
    let (mut a, mut b) = (s.from, s.to);
    // Replay the narrowing: each pair of inner points decides which side goes.
    loop {
        let (c, d) = (round(s, a + R * (b - a)), round(s, b - R * (b - a)));
        let (Some(fc), Some(fd)) = (value(c), value(d)) else {
            let x = if value(c).is_none() { c } else { d };
            return if trials.iter().any(|t| t.x == x) {
                Decision::Done
            } else {
                Decision::Try { x, repeat: 0 }
            };
        };
        if fc >= fd {
            b = d
        } else {
            a = c
        }
        if narrow(s, a.max(f64::MIN_POSITIVE), b) || c == d {
            return Decision::Done;
        }
    }
}

/// The answer from the trials.
pub(crate) fn conclude(s: &Search, trials: Vec<Trial>) -> Outcome {
    let peak = trials
        .iter()
        .filter(|t| t.achieved > 0.0)
        .map(|t| (t.achieved, t.x))
        .reduce(|a, b| if b.0 > a.0 { b } else { a });
    let mut out = Outcome {
        objective: s.objective,
        factor: s.factor.clone(),
        answer: None,
        bracket: (None, None),
        says: String::new(),
        peak,
        trials: Vec::new(),
        collapse: None,
        interrupted: false,
    };
    if let Some(t) = trials.iter().find(|t| t.verdict == Verdict::Error) {
        out.says = format!("trial {} ({} = {}) measured nothing: {}", t.n, s.factor, t.x, t.why);
        out.trials = trials;
        return out;
    }
    if matches!(s.objective, Objective::Maximize | Objective::Minimize) {
        let sign = if s.objective == Objective::Maximize { 1.0 } else { -1.0 };
        let best = trials
            .iter()
            .filter_map(|t| t.metric.map(|m| (t.x, m)))
            .reduce(|a, b| if b.1 * sign > a.1 * sign { b } else { a });
        let metric = s.metric.as_deref().unwrap_or("");
        if let Some((x, m)) = best {
            let mut xs: Vec<f64> = trials.iter().map(|t| t.x).collect();
            xs.sort_by(f64::total_cmp);
            let i = xs.iter().position(|v| *v == x).unwrap_or(0);
            out.bracket = (i.checked_sub(1).map(|j| xs[j]), xs.get(i + 1).copied());
            out.answer = Some(x);
            out.says = format!(
                "{metric} is {} at {} = {x} ({m:.3}), among {} trials",
                if sign > 0.0 { "largest" } else { "smallest" },
                s.factor,
                trials.len()
            );
        } else {
            out.says = format!("{metric} was not measured");
        }
        out.trials = trials;
        return out;
    }
    let trials = judged(s, &trials);
    let (lo, hi) = bracket(&trials);
    // A rate above the capacity seen fails: the capacity closes the bracket when it is nearer.
    let collapsing = collapse(s, &trials);
    let cap = capacity(s, &trials)
        .filter(|_| collapsing.is_none())
        .filter(|(c, _)| lo.is_some_and(|lo| *c > lo) && hi.is_some_and(|hi| *c < hi))
        .map(|(c, t)| (c, t.n));
    let hi = cap.map(|(c, _)| (c * 1000.0).round() / 1000.0).or(hi);
    out.bracket = (lo, hi);
    out.answer = lo;
    let what = if s.objective == Objective::MaxStableRate { "stable" } else { "within the SLOs" };
    out.says = match (lo, hi) {
        (Some(lo), None) if lo >= s.to => format!(
            "{what} up to the top of the range: {} = {lo} passed and nothing tried failed (the answer may be higher)",
            s.factor
        ),
        (Some(lo), None) => format!(
            "{what} at least up to {} = {lo}: nothing tried failed, and the {} ran out before anything above it was tried \
             (the answer is at least {lo})",
            s.factor,
            if out_of_time(s, &trials) { "time budget" } else { "trial budget" }
        ),
        (None, Some(hi)) => match trials.iter().find(|t| t.x == hi) {
            Some(t) => format!("not {what} even at {} = {hi}, the lowest value tried: {}", s.factor, t.why),
            None => format!("not {what} anywhere tried"),
        },
        (Some(lo), Some(hi)) => {
            let width =
                if s.integer { format!("{}", hi - lo) } else { format!("{:.1}%", (hi - lo) / lo * 100.0) };
            let bound = match cap {
                Some((c, n)) => format!(", {c:.3} being the capacity seen at overload (trial {n})"),
                None => String::new(),
            };
            format!(
                "{} = {lo:.3} is the largest value {what}; the boundary lies in [{lo:.3}, {hi:.3}){bound} (width {width}), after {} trials",
                s.factor,
                trials.len()
            )
        }
        (None, None) => "no trial gave a verdict".into(),
    };
    if let Some(why) = &collapsing {
        out.says += &format!(
            " (the throughput falls past the knee: {why}; the capacity seen was taken as a lower bound)"
        );
    }
    if let (Some(lo), Some(hi)) = (lo, hi)
        && !narrow(s, lo, hi)
    {
        out.says += &match s.time_budget.filter(|_| out_of_time(s, &trials)) {
            Some(b) => format!(
                " — the time budget ({:.0} s of stages) ran out before the bracket narrowed to the precision asked",
                b.0
            ),
            None => format!(
                " — the trial budget ({}) ran out before the bracket narrowed to the precision asked",
                s.trials
            ),
        };
    }
    out.collapse = collapsing;
    out.trials = trials;
    out
}

/// The columns of the trials table ([`cells`]), the last one `why`.
pub(crate) const COLUMNS: [&str; 10] =
    ["trial", "point", "value", "repeat", "verdict", "achieved", "errors", "growth", "p99 TTFT", "why"];

/// The widest a line of the `why` column is in [`table`]: a longer reason goes on under it.
const WHY_WIDTH: usize = 60;

/// Each trial's cells, in the order they ran, as [`COLUMNS`] names them.
pub(crate) fn cells(o: &Outcome) -> Vec<[String; 10]> {
    o.trials
        .iter()
        .map(|t| {
            let v = match t.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "fail",
                Verdict::Measured => "measured",
                Verdict::Error => "error",
            };
            [
                t.n.to_string(),
                t.point.clone(),
                t.x.to_string(),
                t.repeat.to_string(),
                v.to_string(),
                format!("{:.2}", t.achieved),
                format!("{:.1}%", t.error_rate * 100.0),
                format!("{:.2}", t.ttft_growth),
                format!("{:.1}", t.p99_ttft_ms),
                format!("{}{}", if t.marginal { "(marginal) " } else { "" }, t.why),
            ]
        })
        .collect()
}

/// The trials as a table, in the order they ran; a long `why` wraps onto lines of its own
/// under its column, never cut.
pub(crate) fn table(o: &Outcome) -> String {
    let h = COLUMNS;
    let mut out = format!(
        "{:>5}  {:<6} {:>10} {:>7}  {:<9} {:>10} {:>8} {:>7} {:>10}  {}\n",
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]
    );
    for c in cells(o) {
        let lead = format!(
            "{:>5}  {:<6} {:>10} {:>7}  {:<9} {:>10} {:>8} {:>7} {:>10}  ",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
        );
        let indent = " ".repeat(lead.chars().count());
        for (i, line) in wrap(&c[9], WHY_WIDTH).iter().enumerate() {
            out += if i == 0 { &lead } else { &indent };
            out += line;
            out.push('\n');
        }
    }
    if let Some((peak, at)) = o.peak {
        out += &format!("peak achieved throughput: {peak:.2} req/s, at {} = {at}\n", o.factor);
    }
    out
}

/// `text` in lines of at most `width` characters, broken between words (a longer word has a
/// line of its own); at least one line.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let Some(line) = lines.last_mut() else { break };
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if len > 0 {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(text: &str) -> Search {
        crate::spec::experiment::Experiment::from_yaml(text, "e.yaml").unwrap().search.unwrap()
    }

    /// A simulated server: stable below `cap · knee`, achieving `min(x, cap)`; a trial within
    /// `noise` of the knee comes out marginal.
    fn oracle(_: &Search, cap: f64, knee: f64, x: f64, n: usize, repeat: u32) -> Trial {
        let boundary = cap * knee;
        let pass = x <= boundary;
        Trial {
            n,
            point: format!("p{n:03}"),
            x,
            repeat,
            seed: None,
            stretch: None,
            verdict: if pass { Verdict::Pass } else { Verdict::Fail },
            marginal: (x / boundary - 1.0).abs() < 0.01,
            why: String::new(),
            achieved: x.min(cap),
            offered: x,
            error_rate: 0.0,
            ttft_growth: if pass { 1.0 } else { 3.0 },
            median_ttft_ms: 20.0,
            p99_ttft_ms: 40.0,
            metric: None,
            noise: 0.01,
            preemptions: None,
            seconds: 5.0,
        }
    }

    fn run(s: &Search, cap: f64, knee: f64) -> Outcome {
        let mut trials = Vec::new();
        while let Decision::Try { x, repeat } = decide(s, &trials) {
            let t = oracle(s, cap, knee, x, trials.len() + 1, repeat);
            trials.push(t);
        }
        conclude(s, trials)
    }

    #[test]
    fn the_capacity_seen_at_overload_brackets_the_boundary_in_few_trials() {
        let s = search("search: { factor: workload.stages.0.rate, from: 1, to: 200 }\n");
        for cap in [3.0, 14.4, 37.0, 90.0, 150.0] {
            for knee in [0.8, 0.9, 0.97] {
                let o = run(&s, cap, knee);
                let truth = cap * knee;
                let answer = o.answer.unwrap();
                assert!(o.trials.len() <= 8, "cap {cap} knee {knee}: {} trials", o.trials.len());
                assert!(
                    answer <= truth && answer >= truth * 0.95,
                    "cap {cap} knee {knee}: {answer} vs {truth}: {}",
                    o.says
                );
                let (lo, hi) = o.bracket;
                assert!(lo.unwrap() <= truth && hi.unwrap() > truth, "{:?}", o.bracket);
            }
        }
    }

    /// A short stage cannot tell a queue growing by a few percent from noise: the keeping-up
    /// rule alone passes rates up to capacity ÷ (1 − tolerance). The capacity seen at overload
    /// bounds the answer, so it lands within 5% under the capacity, for any capacity.
    #[test]
    fn a_rate_above_the_capacity_seen_fails_even_when_its_short_stage_kept_up() {
        let s = search("search: { factor: workload.stages.0.rate, from: 4, to: 256 }\n");
        for cap in [5.0, 14.4, 37.0, 69.0, 150.0] {
            let mut trials = Vec::new();
            while let Decision::Try { x, repeat } = decide(&s, &trials) {
                let mut t = oracle(&s, cap, 1.0, x, trials.len() + 1, repeat);
                // Keeping up within 5% over a few seconds: passes up to cap ÷ 0.95.
                t.verdict = if t.achieved >= 0.95 * x { Verdict::Pass } else { Verdict::Fail };
                t.marginal = false;
                trials.push(t);
            }
            let o = conclude(&s, trials);
            let answer = o.answer.unwrap();
            assert!(o.trials.len() <= 8, "cap {cap}: {} trials", o.trials.len());
            assert!(answer <= cap && answer >= cap * 0.95, "cap {cap}: {answer}: {}", o.says);
            let (lo, hi) = o.bracket;
            assert!(lo.unwrap() <= cap && hi.unwrap() >= cap * 0.999, "cap {cap}: {:?}", o.bracket);
            assert!(o.says.contains("capacity seen at overload") || hi.unwrap() <= cap * 1.05, "{}", o.says);
        }
        // A pass above the capacity seen is judged failed, and says why.
        let over = oracle(&s, 50.0, 1.0, 200.0, 1, 0);
        let mut near = oracle(&s, 50.0, 1.0, 51.0, 2, 0);
        near.verdict = Verdict::Pass;
        near.achieved = 49.5;
        let j = judged(&s, &[over.clone(), near.clone()]);
        assert_eq!(j[1].verdict, Verdict::Fail);
        assert!(
            j[1].why.contains("above the capacity seen") && j[1].why.contains("(trial 1, p001)"),
            "{}",
            j[1].why
        );
        // Completing more than the capacity seen by no more than the noise (2% here) is no
        // evidence against it; by more, it is: the engine's throughput drops at overload, and
        // a rate it kept up with stands.
        near.achieved = 50.9;
        assert_eq!(judged(&s, &[over.clone(), near.clone()])[1].verdict, Verdict::Fail);
        near.achieved = 51.5;
        assert!(collapse(&s, &[over.clone(), near.clone()]).is_some_and(|w| w.contains("kept up at 51.50")));
        assert_eq!(judged(&s, &[over, near])[1].verdict, Verdict::Pass);
    }

    /// A server that collapses past its knee: stable up to `knee`, and at overload it
    /// completes only `share` of the knee's rate, preempting requests (when `counted`).
    fn collapsing(s: &Search, knee: f64, share: f64, counted: bool, x: f64, n: usize, repeat: u32) -> Trial {
        let mut t = oracle(s, knee, 1.0, x, n, repeat);
        if x > knee {
            t.achieved = knee * share;
            t.preemptions = counted.then_some(x * 30.0 * 0.2);
        } else {
            t.preemptions = counted.then_some(0.0);
        }
        t
    }

    /// The capacity seen at overload is then a lower bound, not a ceiling: the search finds
    /// the knee from below, whether the server's preemption counter says so or a trial above
    /// the capacity seen shows it.
    #[test]
    fn a_server_whose_throughput_collapses_past_the_knee_is_searched_from_below() {
        let s = search("search: { factor: workload.stages.0.rate, from: 1, to: 64 }\n");
        for knee in [3.0, 7.3, 14.4, 37.0] {
            for share in [0.8, 0.87, 0.95] {
                let mut trials = Vec::new();
                while let Decision::Try { x, repeat } = decide(&s, &trials) {
                    trials.push(collapsing(&s, knee, share, true, x, trials.len() + 1, repeat));
                }
                let o = conclude(&s, trials);
                let answer = o.answer.unwrap_or(0.0);
                assert!(
                    answer <= knee && answer >= 0.95 * knee,
                    "knee {knee}, share {share}: {answer} in {} trials: {}",
                    o.trials.len(),
                    o.says
                );
                assert!(o.trials.len() <= 8, "knee {knee}, share {share}: {} trials", o.trials.len());
                if knee < 40.0 && o.trials.iter().any(|t| t.x > knee) {
                    let why = o.collapse.as_deref().unwrap_or("");
                    assert!(why.contains("preempted"), "{why}");
                    assert!(o.says.contains("falls past the knee"), "{}", o.says);
                }
            }
        }
        // Without the counter, a pass above the capacity seen is the evidence, and it stands.
        let over = collapsing(&s, 7.3, 0.85, false, 16.0, 1, 0);
        let probe = collapsing(&s, 7.3, 0.85, false, 7.0, 2, 0);
        assert!(collapse(&s, &[over.clone(), probe.clone()]).is_some());
        assert_eq!(judged(&s, &[over, probe])[1].verdict, Verdict::Pass);
    }

    #[test]
    fn a_time_budget_stops_the_search_and_says_so() {
        let s = search("search: { factor: workload.stages.0.rate, from: 1, to: 200, time_budget: 12s }\n");
        let mut trials = Vec::new();
        while let Decision::Try { x, repeat } = decide(&s, &trials) {
            trials.push(oracle(&s, 50.0, 0.9, x, trials.len() + 1, repeat));
        }
        // 5-s stages: the third trial takes the stages to 15 s ≥ 12 s.
        assert_eq!(trials.len(), 3);
        let o = conclude(&s, trials);
        assert!(o.says.contains("the time budget (12 s of stages) ran out"), "{}", o.says);
        // Out of time before anything failed: not "stable up to the top of the range".
        let s = search("search: { factor: workload.stages.0.rate, from: 1, to: 200, time_budget: 4s }\n");
        let only = vec![oracle(&s, 50.0, 0.9, 14.0, 1, 0)];
        assert_eq!(decide(&s, &only), Decision::Done);
        let o = conclude(&s, only);
        assert!(o.says.contains("at least up to") && o.says.contains("time budget ran out"), "{}", o.says);
        assert!(!o.says.contains("top of the range"), "{}", o.says);
    }

    #[test]
    fn trials_inside_the_bracket_measure_a_longer_stage() {
        let s = search("search: { factor: workload.stages.1.rate, from: 1, to: 200, refine: 3 }\n");
        let (pass, fail) = (oracle(&s, 50.0, 0.9, 20.0, 1, 0), oracle(&s, 50.0, 0.9, 80.0, 2, 0));
        assert!(!refining(&s, std::slice::from_ref(&pass)), "no failure above yet");
        assert!(refining(&s, &[pass.clone(), fail.clone()]));
        assert_eq!(measured_stage(&s, 3), Some(1));
        let stage = |v: serde_json::Value| serde_json::from_value::<Stage>(v).unwrap();
        let timed = stage(serde_json::json!({"rate": 10, "duration": "5s"}));
        assert_eq!(stretch(&s, 1, &timed), Some(("workload.stages.1.duration".into(), "15s".into())));
        let counted = stage(serde_json::json!({"rate": 10, "requests": 100}));
        assert_eq!(stretch(&s, 1, &counted), Some(("workload.stages.1.requests".into(), 300.into())));
        // `refine: 1` (the default) keeps every trial as written; maximize has no bracket.
        let once = search("search: { factor: workload.stages.0.rate, from: 1, to: 200 }\n");
        assert!(!refining(&once, &[pass.clone(), fail.clone()]));
        let max = search(
            "search: { factor: workload.stages.0.rate, from: 1, to: 200, objective: maximize, metric: output_throughput }\n",
        );
        assert!(!refining(&max, &[pass, fail]));
        // The stretched setting is one more value of the trial's point.
        let stretched = ("workload.stages.1.duration".to_string(), serde_json::Value::from("15s"));
        let values = point_values(&s, 40.0, Some(43), Some(&stretched));
        assert_eq!(values.len(), 3);
        assert_eq!(values[2], stretched);
    }

    #[test]
    fn a_range_that_never_saturates_says_so() {
        let s = search("search: { factor: workload.stages.0.rate, from: 1, to: 50 }\n");
        let o = run(&s, 1000.0, 0.9);
        assert_eq!(o.answer, Some(50.0));
        assert_eq!(o.bracket, (Some(50.0), None));
        assert!(o.says.contains("up to the top of the range"), "{}", o.says);
        assert!(o.trials.len() <= 3);
    }

    #[test]
    fn a_long_why_wraps_under_its_column_and_nothing_of_it_is_cut() {
        let s = search("search: { factor: workload.stages.0.rate, from: 1, to: 100 }\n");
        let mut t = oracle(&s, 10.0, 1.0, 20.0, 1, 0);
        t.why = "achieved 9.80 req/s of 20 offered (49.0%): fell behind; the send delay grew by 1234.5 ms \
                 over the stage, above the capacity seen (trial 1, p001)"
            .into();
        let o = conclude(&s, vec![t]);
        let why = o.trials[0].why.clone();
        assert!(why.len() > 2 * WHY_WIDTH, "{why}");
        let table = table(&o);
        let lines: Vec<&str> = table.lines().skip(1).take_while(|l| !l.starts_with("peak")).collect();
        assert!(lines.len() >= 3, "{table}");
        let at = table.lines().next().unwrap().rfind("why").unwrap();
        let mut joined = Vec::new();
        for l in &lines {
            let cell = &l[at..];
            assert!(cell.chars().count() <= WHY_WIDTH, "{table}");
            joined.push(cell.trim());
        }
        assert!(lines[1..].iter().all(|l| l[..at].trim().is_empty()), "{table}");
        assert_eq!(joined.join(" "), why);
        assert_eq!(wrap("", 10), [""]);
        assert_eq!(wrap("a-word-longer-than-the-width b", 10), ["a-word-longer-than-the-width", "b"]);
    }

    #[test]
    fn a_server_failing_everything_gives_no_answer_and_says_why() {
        let s = search("search: { factor: workload.stages.0.rate, from: 1, to: 50 }\n");
        let mut trials = Vec::new();
        while let Decision::Try { x, repeat } = decide(&s, &trials) {
            let mut t = oracle(&s, 0.0, 0.9, x, trials.len() + 1, repeat);
            t.verdict = Verdict::Fail;
            t.error_rate = 1.0;
            t.why = "100.0% of requests failed".into();
            trials.push(t);
        }
        let o = conclude(&s, trials);
        assert_eq!(o.answer, None);
        assert!(
            o.says.contains("not stable even at") && o.says.contains("100.0% of requests failed"),
            "{}",
            o.says
        );
        assert!(o.trials.len() <= 8 && o.trials.last().unwrap().x == 1.0);
    }

    #[test]
    fn a_marginal_trial_is_repeated_with_another_seed() {
        let s = search("search: { factor: workload.stages.0.rate, from: 1, to: 100 }\n");
        let mut t = oracle(&s, 20.0, 0.9, 10.0, 1, 0);
        t.marginal = true;
        assert_eq!(decide(&s, &[t.clone()]), Decision::Try { x: 10.0, repeat: 1 });
        // A repeat that fails makes the value fail (both must pass).
        let mut r = t.clone();
        r.verdict = Verdict::Fail;
        r.repeat = 1;
        assert_eq!(bracket(&[t, r]), (None, Some(10.0)));
    }

    #[test]
    fn integer_searches_stop_within_one_step() {
        let s = search(
            "search: { factor: workload.stages.0.concurrency, from: 1, to: 256, integer: true, objective: max_load_within_slo, trials: 12 }\n",
        );
        for truth in [1.0, 7.0, 33.0, 200.0] {
            let mut trials = Vec::new();
            while let Decision::Try { x, repeat } = decide(&s, &trials) {
                let mut t = oracle(&s, 1e9, 1.0, x, trials.len() + 1, repeat);
                t.verdict = if x <= truth { Verdict::Pass } else { Verdict::Fail };
                t.marginal = false;
                trials.push(t);
            }
            let o = conclude(&s, trials);
            if truth >= 256.0 {
                continue;
            }
            let (lo, hi) = o.bracket;
            assert_eq!(lo, Some(truth), "{truth}: {}", o.says);
            assert!(
                hi.is_some_and(|h| h - truth <= 1.0) || truth == 1.0 && lo == Some(1.0),
                "{truth}: {:?}",
                o.bracket
            );
        }
    }

    #[test]
    fn a_record_with_unmeasured_values_reads_back() {
        let s = search("search: { factor: workload.stages.0.rate, from: 1, to: 4 }\n");
        let mut t = oracle(&s, 10.0, 0.9, 2.0, 1, 0);
        t.ttft_growth = f64::NAN;
        let o = conclude(&s, vec![t]);
        let back: Outcome = serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
        assert!(back.trials[0].ttft_growth.is_nan());
        assert_eq!(back.answer, o.answer);
    }

    #[test]
    fn golden_section_finds_the_peak_of_a_unimodal_metric() {
        let s = search(
            "search: { factor: engine.max_num_seqs, from: 1, to: 512, integer: true, objective: maximize, metric: request_throughput, trials: 14 }\n",
        );
        let mut trials = Vec::new();
        while let Decision::Try { x, repeat } = decide(&s, &trials) {
            let mut t = oracle(&s, 1e9, 1.0, x, trials.len() + 1, repeat);
            t.verdict = Verdict::Measured;
            t.metric = Some(-(x - 100.0).powi(2));
            trials.push(t);
        }
        let o = conclude(&s, trials);
        let a = o.answer.unwrap();
        assert!((a - 100.0).abs() <= 8.0, "{a}: {}", o.says);
    }

    #[test]
    fn an_interrupted_search_gives_the_bracket_so_far_and_no_answer() {
        let s = search("search: { factor: workload.stages.0.rate, from: 2, to: 100, trials: 2 }\n");
        // A capacity of 50, stable up to 40: 10 passes, 45 fails (its overload shows 45).
        let trials = vec![oracle(&s, 50.0, 0.8, 10.0, 1, 0), oracle(&s, 50.0, 0.8, 45.0, 2, 0)];
        let done = conclude(&s, trials);
        assert!(done.answer.is_some() && done.says.contains("budget"), "{}", done.says);
        let o = interrupted(done);
        assert_eq!((o.answer, o.interrupted), (None, true));
        assert!(
            o.says.contains("interrupted after 2 trial(s)") && o.says.contains("[10.000, 45.000)"),
            "{}",
            o.says
        );
        assert!(!o.says.contains("budget"), "{}", o.says);
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["interrupted"], true);
        let back: Outcome = serde_json::from_value(json).unwrap();
        assert!(back.interrupted);
    }
}
