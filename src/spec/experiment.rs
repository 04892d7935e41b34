//! An experiment file (`experiments/*.yaml`): many runs from one base, by factors and a design.
//!
//! ```yaml
//! description: request rate × prefix caching
//! base: { scenario: local-sim, harness: builtin, workload: sanity }
//! factors:
//!   engine.args: [[], [--set, enable_prefix_caching=false]]   # levels
//!   workload.stages.0.rate: { from: 2, to: 8, step: 2 }       # a range
//! constants:
//!   workload.stages.0.duration: 10s
//! design: full            # or { random: { n, seed } }, { latin: { n, seed } }, { treatments: [...] }
//! max_stacks: 1
//! retries: 1
//! stop_on_error: false
//! between_points: [reset_prefix_cache]
//! ```
//!
//! Which factors need a new standup is not written here: the planner finds it out.

use std::{collections::BTreeMap, fmt, marker::PhantomData};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{SpecError, from_yaml};
use crate::{rng::Rng, units::Secs};

/// A whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Experiment {
    /// Free text shown in reports.
    #[serde(default)]
    pub description: Option<String>,
    /// The run every point starts from.
    #[serde(default)]
    pub base: Base,
    /// Dotted variable path → its levels (a list, or a range with a step), in the file's order.
    #[serde(default)]
    pub factors: Ordered<Factor>,
    /// Dotted variable path → one value, the same for every point.
    #[serde(default)]
    pub constants: Ordered<Value>,
    #[serde(default)]
    pub design: Design,
    /// How many stacks may be up at once (each waits for a free slot, first come first served).
    #[serde(default = "one")]
    pub max_stacks: u32,
    /// How many more times a failed point is tried (at most 100).
    #[serde(default, deserialize_with = "super::retries")]
    pub retries: u32,
    /// Stop at the first point that fails (after its retries); else go on and report it.
    #[serde(default = "yes")]
    pub stop_on_error: bool,
    /// What happens on a stack before each of its points but the first.
    #[serde(default)]
    pub between_points: Vec<Action>,
    /// A/B: on the first factor with two levels or more, compare each point at another level
    /// against the point at its first level with every other factor equal.
    #[serde(default)]
    pub compare: bool,
    /// What the cross-point analysis draws.
    #[serde(default)]
    pub analysis: ExperimentAnalysis,
    /// A design with more points needs `--yes` (a guard against a typo in a range).
    #[serde(default = "default_max_points")]
    pub max_points: usize,
    /// Instead of a grid: search one numeric variable for an answer in a few trials.
    #[serde(default)]
    pub search: Option<Search>,
}

/// A search over one numeric variable (`docs/search.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Search {
    /// The dotted path searched: `workload.stages.0.rate`, `workload.stages.0.concurrency`,
    /// `engine.max_num_seqs`, ….
    pub factor: String,
    /// The range searched, both ends included.
    pub from: f64,
    pub to: f64,
    /// Only whole values (a concurrency, a batch size).
    #[serde(default)]
    pub integer: bool,
    #[serde(default)]
    pub objective: Objective,
    /// The `stats.json` key that `maximize` / `minimize` optimise.
    #[serde(default)]
    pub metric: Option<String>,
    /// At most this many trials (repeats included).
    #[serde(default = "default_trials")]
    pub trials: u32,
    /// Stop when the bracket that holds the answer is this narrow, relative to its lower end
    /// (one step for `integer`).
    #[serde(default = "default_precision")]
    pub precision: f64,
    /// Stop when the trials' measured stages add up to this long (`20m`), besides `trials`.
    #[serde(default)]
    #[schemars(with = "Option<Secs>")]
    pub time_budget: Option<Secs>,
    /// The first value tried (default: the geometric middle of the range).
    #[serde(default)]
    pub start: Option<f64>,
    /// Trials inside the bracket (a passing value below, a failing one above) measure their
    /// stage this many times longer (its duration, or its request count). 1 (the default)
    /// keeps every trial as the workload says (`docs/search.md` says what longer stages did).
    #[serde(default = "default_refine")]
    pub refine: f64,
    /// `max_stable_rate`: achieved throughput must reach (1 − tolerance) × offered.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// `max_stable_rate`: the largest share of failed requests of a stable stage.
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
    /// `max_stable_rate`: also fail a trial whose median TTFT in the stage's last third exceeds
    /// this many times that of its middle third (and by more than one ordinary request's
    /// latency). Off by default: near the capacity a short stage's queue is a random walk whose
    /// climb says nothing about stability (`docs/search.md`); the growth is reported either way.
    #[serde(default)]
    pub queue_growth: Option<f64>,
    /// `max_load_within_slo`: `stats.json` key → the largest value allowed
    /// (`p99_ttft_ms: 200`, `median_tpot_ms: 50`).
    #[serde(default)]
    pub slo: BTreeMap<String, f64>,
    /// `max_load_within_slo`: the smallest share of requests that must meet every SLO of the
    /// workload (`slo:` in the workload file), i.e. goodput ÷ throughput.
    #[serde(default)]
    pub goodput_share: Option<f64>,
}

impl Objective {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Objective::MaxStableRate => "max_stable_rate",
            Objective::MaxLoadWithinSlo => "max_load_within_slo",
            Objective::Maximize => "maximize",
            Objective::Minimize => "minimize",
        }
    }
}

/// What a search looks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Objective {
    /// The largest offered rate at which the stage is stable.
    #[default]
    MaxStableRate,
    /// The largest value at which every SLO holds.
    MaxLoadWithinSlo,
    /// The value where `metric` is largest.
    Maximize,
    /// The value where `metric` is smallest.
    Minimize,
}

fn default_trials() -> u32 {
    8
}
fn default_precision() -> f64 {
    0.03
}
fn default_refine() -> f64 {
    1.0
}
fn default_tolerance() -> f64 {
    0.05
}
fn default_max_error_rate() -> f64 {
    0.01
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

fn default_max_points() -> usize {
    200
}

/// The base run: file names (or paths) as for `benchflow e2e`, and assignments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Base {
    #[serde(default = "default_scenario")]
    pub scenario: String,
    #[serde(default = "default_harness")]
    pub harness: String,
    #[serde(default = "default_workload")]
    pub workload: String,
    /// `KEY=VALUE`, as `--set` takes them.
    #[serde(default)]
    pub set: Vec<String>,
}

impl Default for Base {
    fn default() -> Self {
        Base {
            scenario: default_scenario(),
            harness: default_harness(),
            workload: default_workload(),
            set: Vec::new(),
        }
    }
}

fn default_scenario() -> String {
    "local-sim".into()
}
fn default_harness() -> String {
    "builtin".into()
}
fn default_workload() -> String {
    "sanity".into()
}

/// A factor's levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum Factor {
    /// `[1, 2, 4]`, `[[], [--flag]]`, `[10s, 20s]`.
    Levels(Vec<Value>),
    /// `{ from: 2, to: 8, step: 2 }`: both ends included; without `step` only `random` and
    /// `latin` designs can use it (they draw from the interval).
    Range(Range),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Range {
    pub from: f64,
    pub to: f64,
    #[serde(default)]
    pub step: Option<f64>,
    /// Round drawn values to whole numbers.
    #[serde(default)]
    pub integer: bool,
}

/// Which points of the factor space are run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Design {
    /// Every combination of levels.
    #[default]
    Full,
    /// `n` points drawn at random (uniformly among levels, or over a range).
    Random(Draw),
    /// `n` points of a Latin hypercube: each factor's range cut in `n` strata, each stratum
    /// used once.
    Latin(Draw),
    /// Named points, each with its own values on top of the base and the constants (no
    /// `factors:` then).
    Treatments(Vec<Treatment>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Draw {
    pub n: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_seed() -> u64 {
    42
}

impl Draw {
    /// The random stream `stream` of the design's seed: the same file draws the same points.
    pub(crate) fn rng(&self, stream: u64) -> Rng {
        Rng::derive(self.seed, stream)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Treatment {
    pub name: String,
    /// Dotted variable path → value.
    #[serde(default)]
    pub set: Ordered<Value>,
}

/// Something done to a stack between two of its points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Action {
    /// `POST /reset_prefix_cache` on the engine (vLLM's), so no point profits from the last.
    ResetPrefixCache,
    /// Wait (let the engine settle), at most a week.
    #[serde(deserialize_with = "sleep_secs")]
    #[schemars(with = "Secs")]
    Sleep(Secs),
    /// Run a command (captured in the experiment's log); it must exit 0.
    Exec(Vec<String>),
}

/// A `sleep:` action's duration; its errors name the field (and the bound, a week).
fn sleep_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Secs, D::Error> {
    Secs::deserialize(d).map_err(|e| serde::de::Error::custom(format!("between_points sleep: {e}")))
}

/// What the experiment's analysis compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExperimentAnalysis {
    /// The latency of the Pareto front and the curves, a `stats.json` key such as
    /// `p99_ttft_ms`, `median_e2el_ms`, `mean_tpot_ms`.
    #[serde(default = "default_latency")]
    pub latency: String,
    /// The throughput, a `stats.json` key such as `request_throughput`, `output_throughput`.
    #[serde(default = "default_throughput")]
    pub throughput: String,
    /// Confidence level of `compare: true` (0.5–0.999).
    #[serde(default = "default_level")]
    pub level: f64,
    /// A point meets the SLOs when at least this share of its requests met every SLO of the
    /// workload (goodput ÷ throughput).
    #[serde(default = "default_slo_share")]
    pub slo_share: f64,
    /// Also draw each point's charts as PNG (its `report.html` inlines the SVGs, which are
    /// always drawn). The PNGs are drawn when the experiment's points are done, not between
    /// two points' load (`charts_pending` in `state.json` until then).
    #[serde(default)]
    pub point_pngs: bool,
}

impl Default for ExperimentAnalysis {
    fn default() -> Self {
        ExperimentAnalysis {
            latency: default_latency(),
            throughput: default_throughput(),
            level: default_level(),
            slo_share: default_slo_share(),
            point_pngs: false,
        }
    }
}

fn default_latency() -> String {
    "p99_ttft_ms".into()
}
fn default_throughput() -> String {
    "request_throughput".into()
}
fn default_level() -> f64 {
    0.95
}
fn default_slo_share() -> f64 {
    0.95
}

/// A map that keeps the file's order (the order factors vary in, last fastest).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<V> Ordered<V> {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(String, V)> {
        self.0.iter()
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of dotted variable paths to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, V>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(serde::de::Error::custom(format!(
                            "the key `{k}` appears twice here; keep one"
                        )));
                    }
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Visit(PhantomData))
    }
}

impl<V: schemars::JsonSchema> schemars::JsonSchema for Ordered<V> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Ordered_{}", V::schema_name()).into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <BTreeMap<String, V>>::json_schema(generator)
    }
}

impl Experiment {
    /// Parses and checks an experiment file (what can be checked without the base run).
    pub(crate) fn from_yaml(text: &str, origin: &str) -> Result<Experiment, SpecError> {
        let e: Experiment = from_yaml(text, origin, &[])?;
        if let Some(s) = &e.search {
            let line =
                search_line(text).map(|l| format!("{origin}:{l}")).unwrap_or_else(|| origin.to_string());
            if !e.factors.is_empty() || e.design != Design::Full {
                return fail(line, "`search:` replaces `factors:` and `design:`; keep one of them".into());
            }
            s.check().or_else(|m| fail(line, m))?;
            return Ok(e);
        }
        let lines = key_lines(text);
        let at = |section: &str, key: &str| match lines.get(&(section.to_string(), key.to_string())) {
            Some(line) => format!("{origin}:{line}"),
            None => origin.to_string(),
        };
        if e.factors.is_empty() && !matches!(e.design, Design::Treatments(_)) {
            return fail(
                origin.to_string(),
                "no factors: name at least one variable and its levels under `factors:` (or list \
                 `design: { treatments: [...] }`)"
                    .into(),
            );
        }
        for (path, f) in e.factors.iter() {
            check_path(path)
                .and_then(|()| f.check(path, &e.design))
                .or_else(|m| fail(at("factors", path), m))?;
            if e.constants.get(path).is_some() {
                return fail(
                    at("constants", path),
                    format!("`{path}` is both a factor and a constant; keep it in one place"),
                );
            }
        }
        for (path, _) in e.constants.iter() {
            check_path(path).or_else(|m| fail(at("constants", path), m))?;
        }
        e.check_design().and_then(|()| e.check_limits()).or_else(|m| fail(origin.to_string(), m))?;
        Ok(e)
    }

    /// The design: treatments without `factors:`, each named once with dotted paths; at least
    /// one point drawn.
    fn check_design(&self) -> Result<(), String> {
        if matches!(self.design, Design::Treatments(_)) && !self.factors.is_empty() {
            return Err(
                "with `design: { treatments: [...] }` each treatment names its values under `set:`; \
                 remove `factors:`"
                    .into(),
            );
        }
        match &self.design {
            Design::Random(d) | Design::Latin(d) if d.n == 0 => Err("design: `n` must be at least 1".into()),
            Design::Treatments(ts) => {
                if ts.is_empty() {
                    return Err("design: `treatments` is empty; list at least one".into());
                }
                let mut names = std::collections::BTreeSet::new();
                for t in ts {
                    if !names.insert(t.name.as_str()) {
                        return Err(format!("treatment `{}` is listed twice", t.name));
                    }
                    for (path, _) in t.set.iter() {
                        check_path(path).map_err(|m| format!("treatment `{}`: {m}", t.name))?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `max_stacks` and the analysis's confidence level.
    fn check_limits(&self) -> Result<(), String> {
        if self.max_stacks == 0 {
            return Err("max_stacks must be at least 1".into());
        }

        if !(0.5..1.0).contains(&self.analysis.level) {
            return Err(format!("analysis.level {} is not in [0.5, 1)", self.analysis.level));
        }
        if !(self.analysis.slo_share > 0.0 && self.analysis.slo_share <= 1.0) {
            return Err(format!(
                "analysis.slo_share {} is not in (0, 1] (the share of requests that must meet the SLOs)",
                self.analysis.slo_share
            ));
        }
        Ok(())
    }

    /// The line of a factor or constant (for errors found later, against the base run).
    pub(crate) fn line_of(text: &str, section: &str, key: &str) -> Option<u64> {
        key_lines(text).get(&(section.to_string(), key.to_string())).copied()
    }
}

impl Search {
    /// The search's settings: a dotted path, a range above 0, enough trials, the ratios in
    /// range, and what its objective needs.
    fn check(&self) -> Result<(), String> {
        check_path(&self.factor)?;
        if !(self.from.is_finite() && self.to.is_finite() && self.from > 0.0 && self.to > self.from) {
            return Err(format!("search: the range needs 0 < from < to (found {} → {})", self.from, self.to));
        }
        if self.trials < 2 {
            return Err("search: `trials` must be at least 2".into());
        }
        if !(self.precision > 0.0 && self.precision < 1.0) {
            return Err(format!("search: `precision` {} is not in (0, 1)", self.precision));
        }
        if self.queue_growth.is_some_and(|g| !(g > 1.0 && g.is_finite())) {
            return Err("search: `queue_growth` must be a ratio above 1 (1.3: TTFT up 30%)".into());
        }
        if let Some(b) = self.time_budget.filter(|b| !(b.0.is_finite() && b.0 > 0.0)) {
            return Err(format!("search: `time_budget` {} s is not a duration above 0", b.0));
        }
        if !(1.0..=20.0).contains(&self.refine) {
            return Err(format!("search: `refine` {} is not in [1, 20]", self.refine));
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            return Err(format!(
                "search: `tolerance` {} is not in [0, 1) (0.05: 5% below the rate asked)",
                self.tolerance
            ));
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return Err(format!(
                "search: `max_error_rate` {} is not in [0, 1] (0.01: 1%)",
                self.max_error_rate
            ));
        }
        if let Some(x) = self.start.filter(|x| !(x.is_finite() && *x >= self.from && *x <= self.to)) {
            return Err(format!("search: `start` {x} is not in the range [{}, {}]", self.from, self.to));
        }
        if let Some(g) = self.goodput_share.filter(|g| !(*g > 0.0 && *g <= 1.0)) {
            return Err(format!("search: `goodput_share` {g} is not in (0, 1]"));
        }
        if let Some((k, v)) = self.slo.iter().find(|(_, v)| !(v.is_finite() && **v > 0.0)) {
            return Err(format!("search: the SLO `{k}: {v}` needs a finite bound above 0"));
        }
        match self.objective {
            Objective::MaxStableRate if !self.factor.ends_with(".rate") => Err(format!(
                "search: max_stable_rate searches a request rate (workload.stages.N.rate), not `{}`; \
                 for a concurrency or an engine setting use max_load_within_slo",
                self.factor
            )),
            Objective::Maximize | Objective::Minimize if self.metric.is_none() => {
                Err("search: maximize and minimize need `metric:` (a stats.json key)".into())
            }
            _ => Ok(()),
        }
    }
}

impl Factor {
    /// The factor `path`'s levels: at least one; a range finite, in order, with a positive step
    /// (which a `full` design needs).
    fn check(&self, path: &str, design: &Design) -> Result<(), String> {
        match self {
            Factor::Levels(l) if l.is_empty() => {
                Err(format!("factor `{path}` has no levels; give at least one"))
            }
            Factor::Range(r) => {
                if !(r.from.is_finite() && r.to.is_finite()) || r.to < r.from {
                    return Err(format!(
                        "factor `{path}`: the range needs finite `from` ≤ `to` ({} → {})",
                        r.from, r.to
                    ));
                }
                if let Some(step) = r.step
                    && !(step > 0.0 && step.is_finite())
                {
                    return Err(format!("factor `{path}`: `step` must be > 0 (found {step})"));
                }
                if r.step.is_none() && *design == Design::Full {
                    return Err(format!(
                        "factor `{path}`: a full design needs the range's `step` (or use \
                         `design: {{ latin: {{ n: 10 }} }}` to draw from it)"
                    ));
                }
                Ok(())
            }
            Factor::Levels(levels) => {
                // Each level is a point (or a row of them): one given twice would measure the
                // same inputs twice. Numbers compare by value (`4` and `4.0` are one level).
                let same = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => x == y,
                    _ => a == b,
                };
                for (j, b) in levels.iter().enumerate() {
                    if let Some(i) = levels[..j].iter().position(|a| same(a, b)) {
                        return Err(format!(
                            "factor `{path}`: the level {} is given twice (levels {} and {}): each \
                             level is measured once; remove the duplicate",
                            serde_json::to_string(b).unwrap_or_default(),
                            i + 1,
                            j + 1
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

fn fail<T>(at: String, message: String) -> Result<T, SpecError> {
    Err(SpecError::Invalid { at, message })
}

/// A dotted path: non-empty parts.
fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.split('.').any(|p| p.trim().is_empty()) {
        return Err(format!("`{path}` is not a dotted variable path such as workload.stages.0.rate"));
    }
    Ok(())
}

/// The line of `search:`'s factor, from the parser.
fn search_line(text: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct S {
        factor: serde_saphyr::Spanned<String>,
    }
    #[derive(Deserialize)]
    struct Doc {
        search: S,
    }
    serde_saphyr::from_str::<Doc>(text).ok().map(|d| d.search.factor.referenced.line())
}

/// (section, key) → line of the key's value, from the parser (not a text search).
fn key_lines(text: &str) -> BTreeMap<(String, String), u64> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        factors: BTreeMap<String, serde_saphyr::Spanned<Value>>,
        #[serde(default)]
        constants: BTreeMap<String, serde_saphyr::Spanned<Value>>,
    }
    let Ok(doc) = serde_saphyr::from_str::<Doc>(text) else { return BTreeMap::new() };
    let mut out = BTreeMap::new();
    for (section, map) in [("factors", doc.factors), ("constants", doc.constants)] {
        for (k, v) in map {
            out.insert((section.to_string(), k), v.referenced.line());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Experiment, String> {
        Experiment::from_yaml(text, "e.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_file_reads_in_order() {
        let e = parse(
            "base: { workload: chat, set: [workload.seed=7] }\nfactors:\n  z.rate: [1, 2]\n  a.args: { from: 1, to: 3, step: 1 }\nconstants:\n  workload.stages.0.duration: 5s\ndesign: { latin: { n: 4 } }\nbetween_points: [reset_prefix_cache, { sleep: 1s }, { exec: [true] }]\n",
        )
        .unwrap();
        let keys: Vec<&str> = e.factors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z.rate", "a.args"], "the file's order, not sorted");
        assert_eq!(e.base.scenario, "local-sim");
        assert_eq!(e.design, Design::Latin(Draw { n: 4, seed: 42 }));
        assert_eq!(e.between_points[1], Action::Sleep(Secs(1.0)));
        assert!(matches!(&e.factors.0[1].1, Factor::Range(r) if r.step == Some(1.0)));
        assert_eq!(parse("factors: { a.b: [1] }\n").unwrap().design, Design::Full);
    }

    #[test]
    fn bad_files_name_the_file_and_line() {
        let e = parse("factors:\n  workload.seed: []\n").unwrap_err();
        assert!(e.starts_with("e.yaml:2") && e.contains("no levels"), "{e}");
        for sleep in ["1e20", "1e20s", "'1e20s'", "99999999999999h", "18446744073709551616", "-1s"] {
            let e = parse(&format!("factors: {{ a.b: [1] }}\nbetween_points: [{{sleep: {sleep}}}]\n"))
                .unwrap_err();
            assert!(
                e.starts_with("e.yaml:2") && e.contains("between_points sleep: duration"),
                "{sleep}: {e}"
            );
            assert!(e.contains("at most a week (604800 s)") || sleep == "-1s", "{sleep}: {e}");
        }
        for dup in ["[2, 2, 4]", "[2, 4, 2.0]", "[[], [-x], []]", "[a, b, a]"] {
            let e = parse(&format!("factors:\n  a.b: [1]\n  workload.seed: {dup}\n")).unwrap_err();
            assert!(e.starts_with("e.yaml:3") && e.contains("is given twice (levels"), "{dup}: {e}");
        }
        let e = parse("factors:\n  a.b: [1]\n  c.d: [2]\nconstants:\n  c.d: 3\n").unwrap_err();
        assert!(e.starts_with("e.yaml:5") && e.contains("both a factor and a constant"), "{e}");
        let e = parse("factors:\n  a.b: { from: 1, to: 5 }\n").unwrap_err();
        assert!(e.starts_with("e.yaml:2") && e.contains("step"), "{e}");
        let e = parse("factors: { a.b: [1] }\ndesing: full\n").unwrap_err();
        assert!(e.contains("did you mean `design`"), "{e}");
        let e = parse("factors: { a.b: [1] }\ndesign: { random: { n: 0 } }\n").unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        let e = parse("factors:\n  a..b: [1]\n").unwrap_err();
        assert!(e.starts_with("e.yaml:2") && e.contains("dotted"), "{e}");
        let e = parse("factors:\n  a.b: [1]\n  a.b: [2]\n").unwrap_err();
        assert!(e.contains("twice"), "{e}");
        assert!(parse("description: x\n").unwrap_err().contains("no factors"));
    }

    #[test]
    fn every_search_number_outside_its_range_is_refused_with_its_name() {
        let base = "search: { factor: workload.stages.0.rate, from: 1, to: 10";
        let bad = [".nan", ".inf", "-.inf", "-1", "1e300", "-0.5"];
        let fields = [
            ("tolerance", "0.05"),
            ("max_error_rate", "0.01"),
            ("start", "5"),
            ("goodput_share", "0.9"),
            ("precision", "0.1"),
            ("refine", "2"),
        ];
        for (field, good) in fields {
            parse(&format!("{base}, {field}: {good} }}\n")).unwrap_or_else(|e| panic!("{field}: {e}"));
            for v in bad {
                let e = parse(&format!("{base}, {field}: {v} }}\n")).err();
                // A value inside the range for one field (1e300 is no ratio, but -0.5 …) is
                // still outside every range here but none.
                let e = e.unwrap_or_else(|| panic!("{field}: {v} was accepted"));
                assert!(e.contains(field), "{field}: {v}: {e}");
            }
        }
        let e = parse(&format!("{base}, slo: {{ p99_ttft_ms: .nan }} }}\n")).unwrap_err();
        assert!(e.contains("p99_ttft_ms"), "{e}");
    }
}
