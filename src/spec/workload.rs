//! A workload file (`workloads/*.yaml`): what load to offer.
//!
//! ```yaml
//! seed: 42
//! api: { endpoint: completions, stream: true, ignore_eos: true }
//! dataset: { random: { input_len: 128, output_len: 64, range_ratio: 0.0 } }
//! warmup: { requests: 4 }
//! stages:
//!   - { rate: 10, arrival: poisson, duration: 20s }
//!   - { concurrency: 8, requests: 200 }
//! slo: { ttft: 500ms, tpot: 50ms }
//! ```

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{SpecError, from_yaml};
use crate::units::Secs;

/// A whole workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Free text shown in reports.
    #[serde(default)]
    pub description: Option<String>,
    /// Seeds prompt sampling and arrival times; the same seed replays the same run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub api: ApiSpec,
    pub dataset: DatasetSpec,
    #[serde(default)]
    pub warmup: Warmup,
    pub stages: Vec<Stage>,
    #[serde(default)]
    pub slo: Slo,
    /// The largest share of failed requests (0–1) for the run to count as carried out: above
    /// it the run ends with exit 4 once what was measured is analysed. Default 0.5.
    #[serde(default = "default_max_failed")]
    pub max_failed: f64,
}

fn default_seed() -> u64 {
    42
}

fn default_max_failed() -> f64 {
    0.5
}

/// Sane upper bounds, checked at plan time.
const MAX_TOKENS: u32 = 1 << 20;
const MAX_RATE: f64 = 100_000.0;
const MAX_CONCURRENCY: f64 = 100_000.0;
const MAX_DURATION_S: f64 = 7.0 * 86_400.0;
const MAX_POOL_PROMPTS: u64 = 1_000_000;

/// Which endpoint and request shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSpec {
    pub endpoint: Endpoint,
    /// Streamed responses (SSE). Non-streamed requests have no TTFT/ITL.
    pub stream: bool,
    /// Ask for exactly `max_tokens` (vLLM's `ignore_eos`).
    pub ignore_eos: bool,
    /// Model name; default: the first one `/v1/models` lists.
    pub model: Option<String>,
    /// Extra JSON fields merged into every request body (e.g. `temperature: 0`).
    pub extra_body: BTreeMap<String, Value>,
    /// Extra HTTP headers on every request. Values `env:NAME` are read from the environment
    /// (secrets such as API keys are never written anywhere).
    pub headers: BTreeMap<String, String>,
    /// An API key, sent as `Authorization: Bearer <key>` on every request benchflow makes to
    /// the endpoint (smoke test, load, `/metrics`); must be `env:NAME`.
    pub api_key: Option<String>,
    /// For an `https://` endpoint: extra CAs to trust, or no verification.
    pub tls: TlsSettings,
    /// Per-request timeout.
    pub timeout: Secs,
    /// A header that carries each prompt's session (`group-N` for a shared-prefix group), for
    /// routers with session affinity: e.g. `x-session-id` for the vLLM router's
    /// `consistent_hash` policy. Prompts without a session send none.
    pub session_header: Option<String>,
}

/// The environment variable a header value is read from, with what goes before the secret:
/// `env:NAME` → `("", NAME)`, `Bearer env:NAME` → `("Bearer ", NAME)`; `None` for a literal.
pub(crate) fn env_reference(value: &str) -> Option<(&'static str, &str)> {
    match value.strip_prefix("Bearer env:") {
        Some(var) => Some(("Bearer ", var)),
        None => value.strip_prefix("env:").map(|var| ("", var)),
    }
}

impl ApiSpec {
    /// Every header to send, as written (`env:NAME` values, or `Bearer env:NAME` for the key).
    pub fn request_headers(&self) -> BTreeMap<String, String> {
        let mut all = self.headers.clone();
        if let Some(key) = &self.api_key {
            all.insert("Authorization".into(), format!("Bearer {key}"));
        }
        all
    }
}

impl Default for ApiSpec {
    fn default() -> Self {
        ApiSpec {
            endpoint: Endpoint::Completions,
            stream: true,
            ignore_eos: true,
            model: None,
            extra_body: BTreeMap::new(),
            headers: BTreeMap::new(),
            api_key: None,
            tls: TlsSettings::default(),
            timeout: Secs(600.0),
            session_header: None,
        }
    }
}

/// How to trust an `https://` endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// A PEM file of extra CA certificates to trust (e.g. a cluster's own CA), besides the
    /// system's roots; relative to the workload file's folder.
    pub ca_file: Option<String>,
    /// Do not verify the server's certificate at all (self-signed test clusters only).
    pub insecure_skip_verify: bool,
}

/// OpenAI endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `/v1/completions`
    Completions,
    /// `/v1/chat/completions`
    Chat,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::Chat => "/v1/chat/completions",
        }
    }
}

/// Where prompts come from (one key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// Synthetic prompts of random lengths (vllm bench's `random`).
    Random(RandomSpec),
    /// N groups × M prompts sharing a prefix per group (prefix caching, routers).
    SharedPrefix(SharedPrefixSpec),
    /// A ShareGPT-format JSON file: `[{"conversations": [{"from": "human", "value": ...}, ...]}]`.
    Sharegpt(FileSpec),
    /// A JSON-lines file: one object per line with `prompt` (or `messages`) and optional
    /// `max_tokens` / `output_len`.
    Jsonl(FileSpec),
    /// A sample set shipped with benchflow (`datasets/<name>.jsonl`).
    Sample(SampleSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RandomSpec {
    pub input_len: u32,
    pub output_len: u32,
    /// Lengths uniform in [⌊L(1−r)⌋, ⌈L(1+r)⌉], r in [0, 1).
    #[serde(default)]
    pub range_ratio: f64,
    /// Tokens of one random prefix shared by every prompt.
    #[serde(default)]
    pub prefix_len: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedPrefixSpec {
    pub groups: u32,
    pub prompts_per_group: u32,
    pub prefix_len: u32,
    pub suffix_len: u32,
    pub output_len: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    /// Output length when the file gives none.
    #[serde(default)]
    pub output_len: Option<u32>,
    /// Skip prompts longer than this many (estimated) tokens.
    #[serde(default)]
    pub max_input_len: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleSpec {
    pub name: String,
    #[serde(default)]
    pub output_len: Option<u32>,
}

/// Requests sent before the measured stages, excluded from statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Warmup {
    pub requests: u32,
    /// How many warm-up requests run at once (default 1).
    pub concurrency: Option<u32>,
}

/// How arrivals are spaced in a rate stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Exponential gaps (gamma with burstiness 1).
    #[default]
    Poisson,
    /// Fixed gaps of 1/rate.
    Constant,
    /// Gamma gaps with the stage's `burstiness` (< 1 burstier, > 1 more regular).
    Gamma,
}

/// One stage of load: open loop at a rate, or closed loop at a concurrency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Requests per second (open loop).
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub arrival: Arrival,
    /// Gamma shape for `arrival: gamma` (vllm bench's `--burstiness`).
    #[serde(default)]
    pub burstiness: Option<f64>,
    /// Cap on requests in flight in a rate stage; arrivals beyond it wait (client queue time).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Requests in flight (closed loop).
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Stop after this long.
    #[serde(default)]
    pub duration: Option<Secs>,
    /// Stop after this many requests.
    #[serde(default)]
    pub requests: Option<u64>,
    /// A ramp: the rate changes linearly from `rate` at the stage's start to `ramp_to` at its
    /// end (`duration`), the arrivals drawn as `arrival` says on that changing rate.
    #[serde(default)]
    pub ramp_to: Option<f64>,
}

/// What the stage does, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    Rate { rate: f64, arrival: Arrival, burstiness: f64, max_concurrency: Option<u32> },
    Concurrency(u32),
}

impl Stage {
    pub fn load(&self) -> Load {
        match (self.rate, self.concurrency) {
            (Some(rate), _) => Load::Rate {
                rate,
                arrival: self.arrival,
                burstiness: match self.arrival {
                    Arrival::Poisson => 1.0,
                    Arrival::Constant => f64::INFINITY,
                    Arrival::Gamma => self.burstiness.unwrap_or(1.0),
                },
                max_concurrency: self.max_concurrency,
            },
            (None, Some(c)) => Load::Concurrency(c),
            (None, None) => Load::Concurrency(1),
        }
    }

    /// The request rate asked of the stage (requests/s; a ramp's mean over the stage; none for
    /// a concurrency stage).
    pub fn asked_rate(&self) -> Option<f64> {
        match self.load() {
            Load::Rate { rate, .. } => Some(self.ramp_to.map_or(rate, |end| (rate + end) / 2.0)),
            Load::Concurrency(_) => None,
        }
    }

    /// A ramp's start and end rates (requests/s).
    pub fn ramp(&self) -> Option<Ramp> {
        Some(Ramp { from: self.rate?, to: self.ramp_to?, duration_s: self.duration?.0 })
    }

    /// A short label for tables: `rate=10/s poisson`, `rate=5→50/s poisson` or `concurrency=8`.
    pub fn label(&self) -> String {
        match self.load() {
            Load::Rate { rate, arrival, burstiness, max_concurrency } => {
                let to = self.ramp_to.map(|end| format!("→{end}")).unwrap_or_default();
                let mut s = format!(
                    "rate={rate}{to}/s {}",
                    match arrival {
                        Arrival::Poisson => "poisson".to_string(),
                        Arrival::Constant => "constant".to_string(),
                        Arrival::Gamma => format!("gamma(b={burstiness})"),
                    }
                );
                if let Some(c) = max_concurrency {
                    s.push_str(&format!(" max_concurrency={c}"));
                }
                s
            }
            Load::Concurrency(c) => format!("concurrency={c}"),
        }
    }
}

/// A stage whose rate changes linearly from `from` to `to` (requests/s) over `duration_s`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Ramp {
    pub from: f64,
    pub to: f64,
    pub duration_s: f64,
}

impl Ramp {
    /// Requests expected from the stage's start to `t` seconds into it: Λ(t).
    pub fn expected(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, self.duration_s);
        self.from * t + (self.to - self.from) * t * t / (2.0 * self.duration_s)
    }

    /// The rate asked on average between `t1` and `t2` seconds into the stage.
    pub fn mean_between(&self, t1: f64, t2: f64) -> f64 {
        if t2 > t1 {
            (self.expected(t2) - self.expected(t1)) / (t2 - t1)
        } else {
            (self.from + self.to) / 2.0
        }
    }
}

/// Service-level objectives for goodput; a request is good when it meets every one given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Slo {
    pub ttft: Option<Secs>,
    pub tpot: Option<Secs>,
    pub e2el: Option<Secs>,
}

impl Slo {
    /// Whether any SLO is set (goodput is computed only then).
    pub fn is_set(&self) -> bool {
        self.ttft.is_some() || self.tpot.is_some() || self.e2el.is_some()
    }
}

const KEYS: &[&str] = &["description", "seed", "api", "dataset", "warmup", "stages", "slo"];

impl Workload {
    /// Reads and validates a workload file.
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates workload YAML; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, SpecError> {
        let w: Workload = from_yaml(text, origin, KEYS)?;
        w.validate(origin)?;
        Ok(w)
    }

    /// The rules serde cannot express (at least one stage, rate or concurrency, a stop condition).
    /// Requests the run will send, when that is known before it starts (count-bounded or
    /// rate × duration stages; `None` when a closed-loop stage runs for a duration).
    pub fn expected_requests(&self) -> Option<u64> {
        let mut total = u64::from(self.warmup.requests);
        for s in &self.stages {
            let by_rate = match (s.asked_rate(), s.duration) {
                (Some(r), Some(d)) => Some((r * d.0).ceil() as u64 + 1),
                _ => None,
            };
            let n = match (s.requests, by_rate) {
                (Some(n), Some(m)) => n.min(m),
                (Some(n), None) => n,
                (None, Some(m)) => m,
                (None, None) => return None,
            };
            total = total.saturating_add(n);
        }
        Some(total)
    }

    /// Sizes beyond what one machine can hold are refused before anything starts (each limit
    /// is named in the message), rather than aborting the process mid-run.
    fn check_sizes(&self) -> Result<(), String> {
        let too = |what: &str, value: f64, limit: f64, hint: &str| {
            Err(format!("{what} {value}: at most {limit} ({hint})"))
        };
        let tokens = |what: &str, n: u32| {
            if n > MAX_TOKENS {
                too(what, f64::from(n), f64::from(MAX_TOKENS), "tokens per request")
            } else {
                Ok(())
            }
        };
        match &self.dataset {
            DatasetSpec::Random(r) => {
                tokens("input_len", r.input_len)?;
                tokens("output_len", r.output_len)?;
                tokens("prefix_len", r.prefix_len)?;
            }
            DatasetSpec::SharedPrefix(s) => {
                tokens("prefix_len", s.prefix_len)?;
                tokens("suffix_len", s.suffix_len)?;
                tokens("output_len", s.output_len)?;
                if u64::from(s.groups) * u64::from(s.prompts_per_group) > MAX_POOL_PROMPTS {
                    return too(
                        "groups × prompts_per_group",
                        (u64::from(s.groups) * u64::from(s.prompts_per_group)) as f64,
                        MAX_POOL_PROMPTS as f64,
                        "prompts kept in memory",
                    );
                }
            }
            DatasetSpec::Sharegpt(f) | DatasetSpec::Jsonl(f) => {
                if let Some(n) = f.output_len {
                    tokens("output_len", n)?;
                }
            }
            DatasetSpec::Sample(_) => {}
        }
        for (i, s) in self.stages.iter().enumerate() {
            let n = i + 1;
            if let Some(r) = s.rate.filter(|r| *r > MAX_RATE) {
                return too(&format!("stage {n}: rate"), r, MAX_RATE, "requests per second");
            }
            if let Some(r) = s.ramp_to.filter(|r| *r > MAX_RATE) {
                return too(&format!("stage {n}: ramp_to"), r, MAX_RATE, "requests per second");
            }
            if let Some(c) = s.concurrency.or(s.max_concurrency).filter(|c| f64::from(*c) > MAX_CONCURRENCY) {
                return too(
                    &format!("stage {n}: concurrency"),
                    f64::from(c),
                    MAX_CONCURRENCY,
                    "requests in flight",
                );
            }
            if let Some(d) = s.duration.filter(|d| d.0 > MAX_DURATION_S) {
                return too(&format!("stage {n}: duration"), d.0, MAX_DURATION_S, "seconds: one week");
            }
            // A count at a rate, with no duration to stop it, lasts requests / rate.
            if let (Some(r), Some(count), None) = (s.rate, s.requests, s.duration)
                && r > 0.0
                && count as f64 / r > MAX_DURATION_S
            {
                return too(
                    &format!("stage {n}: requests / rate"),
                    count as f64 / r,
                    MAX_DURATION_S,
                    "seconds: one week; give a higher rate, fewer requests, or a duration",
                );
            }
        }
        Ok(())
    }

    pub fn validate(&self, origin: &str) -> Result<(), SpecError> {
        let bad = |message: String| Err(SpecError::Invalid { at: origin.to_string(), message });
        self.check_sizes().or_else(bad)?;
        if let Some(h) = &self.api.session_header
            && (h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)))
        {
            return bad(format!(
                "api.session_header `{h}` is not a header name (letters, digits, `-`, `_`; e.g. x-session-id)"
            ));
        }
        if !(0.0..=1.0).contains(&self.max_failed) {
            return bad(format!(
                "max_failed {}: a share between 0 and 1 (e.g. 0.05 for 5%)",
                self.max_failed
            ));
        }
        if self.stages.is_empty() {
            return bad(
                "`stages` is empty: give at least one stage, e.g. `- { rate: 10, duration: 30s }`".into()
            );
        }
        for (i, s) in self.stages.iter().enumerate() {
            let n = i + 1;
            match (s.rate, s.concurrency) {
                (Some(_), Some(_)) => {
                    return bad(format!(
                        "stage {n}: give `rate` (open loop) or `concurrency` (closed loop), not both"
                    ));
                }
                (None, None) => {
                    return bad(format!(
                        "stage {n}: give `rate` (requests/s) or `concurrency` (requests in flight)"
                    ));
                }
                // A ramp may start from nothing (it rises from 0 to `ramp_to`).
                (Some(r), None)
                    if !(r.is_finite() && (r > 0.0 || r == 0.0 && s.ramp_to.is_some_and(|e| e > 0.0))) =>
                {
                    return bad(format!(
                        "stage {n}: rate {r} must be a positive number of requests per second (0 only \
                         at the start of a ramp to a positive `ramp_to`)"
                    ));
                }
                (None, Some(0)) => return bad(format!("stage {n}: concurrency must be at least 1")),
                _ => {}
            }
            if s.duration.is_none() && s.requests.is_none() {
                return bad(format!(
                    "stage {n}: give `duration` (e.g. 30s) or `requests` (a count), or both"
                ));
            }
            if s.duration.is_some_and(|d| d.0 <= 0.0) || s.requests == Some(0) {
                return bad(format!("stage {n}: duration and requests must be positive"));
            }
            if s.burstiness.is_some() && s.arrival != Arrival::Gamma {
                return bad(format!("stage {n}: `burstiness` applies only to `arrival: gamma`"));
            }
            if s.burstiness.is_some_and(|b| !(b.is_finite() && b > 0.0)) {
                return bad(format!("stage {n}: burstiness must be a positive number"));
            }
            if s.concurrency.is_some() && (s.max_concurrency.is_some() || s.burstiness.is_some()) {
                return bad(format!(
                    "stage {n}: `max_concurrency` and `burstiness` apply only to rate stages"
                ));
            }
            if s.max_concurrency == Some(0) {
                return bad(format!("stage {n}: max_concurrency must be at least 1"));
            }
            if let Some(end) = s.ramp_to {
                if s.rate.is_none() {
                    return bad(format!(
                        "stage {n}: `ramp_to` ramps a rate: give `rate` (the rate at the start), not `concurrency`"
                    ));
                }
                if s.duration.is_none() {
                    return bad(format!(
                        "stage {n}: a ramp (`ramp_to`) runs for a `duration`, over which the rate changes: give one"
                    ));
                }
                if !(end.is_finite() && end >= 0.0) {
                    return bad(format!(
                        "stage {n}: ramp_to {end} must be a number of requests per second, 0 or more"
                    ));
                }
            }
        }
        match &self.dataset {
            DatasetSpec::Random(r) => {
                if !(0.0..1.0).contains(&r.range_ratio) {
                    return bad(format!("dataset.random.range_ratio {} must be in [0, 1)", r.range_ratio));
                }
                if r.input_len == 0 || r.output_len == 0 {
                    return bad("dataset.random: input_len and output_len must be at least 1".into());
                }
            }
            DatasetSpec::SharedPrefix(s)
                if s.groups == 0 || s.prompts_per_group == 0 || s.output_len == 0 =>
            {
                return bad(
                    "dataset.shared_prefix: groups, prompts_per_group and output_len must be at least 1"
                        .into(),
                );
            }
            _ => {}
        }
        if self.api.timeout.0 <= 0.0 {
            return bad("api.timeout must be positive".into());
        }
        if !self.api.stream && (self.slo.ttft.is_some() || self.slo.tpot.is_some()) {
            return bad("slo.ttft and slo.tpot need streamed responses (api.stream: true)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "
seed: 7
dataset: { random: { input_len: 128, output_len: 64 } }
stages:
  - { rate: 10, arrival: gamma, burstiness: 0.5, duration: 20s, max_concurrency: 4 }
  - { concurrency: 8, requests: 100 }
slo: { ttft: 500ms }
";

    #[test]
    fn parses_a_full_workload() {
        let w = Workload::from_yaml(OK, "w.yaml").unwrap();
        assert_eq!(w.seed, 7);
        assert!(w.api.stream && w.api.ignore_eos);
        assert_eq!(
            w.stages[0].load(),
            Load::Rate { rate: 10.0, arrival: Arrival::Gamma, burstiness: 0.5, max_concurrency: Some(4) }
        );
        assert_eq!(w.stages[1].load(), Load::Concurrency(8));
        assert_eq!(w.stages[0].duration, Some(Secs(20.0)));
        assert_eq!(w.slo.ttft, Some(Secs(0.5)));
        assert_eq!(w.stages[0].label(), "rate=10/s gamma(b=0.5) max_concurrency=4");
    }

    fn err(text: &str) -> String {
        Workload::from_yaml(text, "w.yaml").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_place_and_suggest() {
        let e = err(
            "dataset: { random: { input_len: 1, output_len: 1 } }\nstages:\n  - { rate: 1, durration: 5s }\n",
        );
        assert!(e.starts_with("w.yaml:3:"), "{e}");
        assert!(e.contains("did you mean `duration`"), "{e}");
        let e = err("datset: {}\nstages: []\n");
        assert!(e.contains("did you mean `dataset`"), "{e}");
        let e = err("dataset: { random: { input_len: one, output_len: 1 } }\nstages: []\n");
        assert!(e.starts_with("w.yaml:1:"), "{e}");
    }

    #[test]
    fn rejects_inconsistent_stages() {
        let base = "dataset: { random: { input_len: 1, output_len: 1 } }\nstages:\n";
        for (stage, msg) in [
            ("- { rate: 1, concurrency: 2, duration: 1s }", "not both"),
            ("- { duration: 1s }", "give `rate`"),
            ("- { rate: 1 }", "give `duration`"),
            ("- { rate: -1, duration: 1s }", "positive"),
            ("- { rate: 1, burstiness: 2, duration: 1s }", "only to `arrival: gamma`"),
            ("- { concurrency: 0, requests: 1 }", "at least 1"),
        ] {
            let e = err(&format!("{base}  {stage}\n"));
            assert!(e.contains(msg), "{stage}: {e}");
        }
        assert!(
            err("dataset: { random: { input_len: 1, output_len: 1 } }\nstages: []\n")
                .contains("at least one stage")
        );
    }
}
