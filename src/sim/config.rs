//! The simulator's configuration: one flat, typed set of knobs (reference S.2 and S.5).
//!
//! A configuration is built in layers: built-in defaults (Llama-3.1-8B on one H100) < a profile
//! (`profiles/sim/<name>.yaml`, embedded in the binary) or a `--config FILE` < `--set key=value`.
//! At run time `/admin/config` applies the same partial-update path, so every knob is validated
//! the same way wherever it comes from.

use std::{fmt, path::Path};

use serde::{Deserialize, Serialize};

pub(crate) use super::faults::{DieAfter, DieMode, FailureType, MetricsFault, SlowdownStep, StartupMode};
use crate::spec::suggest;
pub(crate) use crate::units::Secs;
use serde_json::Value;

/// Profiles shipped in the repository under `profiles/sim/`, embedded at compile time so that the
/// binary works from any directory. Each is plain YAML that anyone can copy and edit.
pub(crate) const PROFILES: &[(&str, &str)] = &[
    ("llama-3.1-8b/h100", include_str!("../../profiles/sim/llama-3.1-8b/h100.yaml")),
    ("llama-3.1-8b/a100-80g", include_str!("../../profiles/sim/llama-3.1-8b/a100-80g.yaml")),
    ("llama-3.1-70b/h100-tp4", include_str!("../../profiles/sim/llama-3.1-70b/h100-tp4.yaml")),
    ("tiny/cpu", include_str!("../../profiles/sim/tiny/cpu.yaml")),
    ("fixed/zero", include_str!("../../profiles/sim/fixed/zero.yaml")),
];

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown simulator profile `{name}`; known profiles: {known}")]
    UnknownProfile { name: String, known: String },
    #[error("failed to read simulator config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid --set `{arg}`: expected key=value (e.g. --set time_scale=0.1)")]
    SetSyntax { arg: String },
    #[error("{origin}: unknown simulator key `{key}`{hint}")]
    UnknownKey { origin: String, key: String, hint: String },
    #[error("{origin}: invalid value: {message}")]
    Invalid { origin: String, message: String },
}

/// How timing is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fidelity {
    /// Iteration-level discrete-event model of vLLM's scheduler (S.3).
    Engine,
    /// Independent per-request timers, llm-d-inference-sim style (S.3, last paragraph).
    Analytic,
}

/// How the analytic mode computes time to first token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtftModel {
    /// `ttft · f(n_run)`.
    Constant,
    /// `(prefill_overhead + uncached_prompt_tokens · prefill_per_token) · f(n_run)`.
    Prefill,
}

/// How prompt text is counted in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// ≈ 1 token per 4 bytes of UTF-8, at least one per whitespace-separated word.
    Bytes4,
    /// One token per whitespace-separated word.
    Words,
    /// One token per Unicode scalar.
    Chars,
}

/// What generated text contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// Seeded words from a built-in lexicon, one word per token.
    Random,
    /// The prompt's words, repeated as needed.
    Echo,
}

/// How many tokens a request generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLen {
    /// Exactly `max_tokens` (what `ignore_eos` benchmarks expect).
    MaxTokens,
    /// Uniform in 1..=max_tokens; ends with `stop` when short of it.
    Uniform,
    /// min(n, max_tokens).
    Fixed(u32),
}

impl fmt::Display for OutputLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputLen::MaxTokens => f.write_str("max_tokens"),
            OutputLen::Uniform => f.write_str("uniform"),
            OutputLen::Fixed(n) => write!(f, "fixed:{n}"),
        }
    }
}

impl Serialize for OutputLen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OutputLen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "max_tokens" => Ok(OutputLen::MaxTokens),
            "uniform" => Ok(OutputLen::Uniform),
            other => other
                .strip_prefix("fixed:")
                .and_then(|n| n.trim().parse().ok())
                .map(OutputLen::Fixed)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "output_len `{other}`: expected max_tokens, uniform or fixed:<n>"
                    ))
                }),
        }
    }
}

/// Every knob of the simulator. Defaults: Llama-3.1-8B-Instruct, BF16, one H100 SXM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    // identity
    /// Model name listed by `/v1/models` and accepted in requests.
    pub model: String,
    /// Extra names the model is served under (all listed and accepted).
    pub served_model_names: Vec<String>,
    /// Context limit: prompt + max_tokens beyond it is a 400.
    pub max_model_len: u32,
    /// Reported as `x-inference-pod` on every response when set (else `$POD_NAME`).
    pub pod_name: Option<String>,
    /// Reported as `x-inference-namespace` when set (else `$POD_NAMESPACE`).
    pub namespace: Option<String>,

    // engine
    pub fidelity: Fidelity,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub block_size: u32,
    /// Overrides the derived KV capacity (tokens). Shrink it to force preemption.
    pub kv_cache_tokens: Option<u64>,
    pub enable_prefix_caching: bool,
    /// 0 = unbounded (like vLLM); > 0: requests beyond this many waiting get 429.
    pub max_waiting: u32,

    // model
    pub params: f64,
    pub weight_bytes: f64,
    pub n_layers: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub kv_dtype_bytes: u32,
    pub attn_dim: u32,

    // hardware
    pub hbm_bandwidth: f64,
    pub peak_flops: f64,
    pub gpu_memory_bytes: f64,
    pub tp: u32,
    /// Extra step time per doubling of tensor parallelism.
    pub tp_overhead: f64,

    // efficiency
    pub bw_efficiency: f64,
    pub mfu: f64,
    pub gpu_memory_utilization: f64,
    pub activation_reserve_bytes: f64,

    // overheads
    /// Fixed time per engine step (scheduler, sampler, launch).
    pub step_overhead: Secs,
    /// HTTP + tokenisation before a request reaches the engine; part of TTFT.
    pub request_overhead: Secs,

    // noise and clock
    /// Coefficient of variation of the multiplicative Gaussian noise on step time (±3σ).
    pub step_jitter_cv: f64,
    /// 0 = seeded from the clock.
    pub seed: u64,
    /// Wall-clock seconds per simulated second; 0 = as fast as possible (virtual time).
    pub time_scale: f64,

    // analytic fidelity
    pub ttft_model: TtftModel,
    pub ttft: Secs,
    pub ttft_std: Secs,
    pub itl: Secs,
    pub itl_std: Secs,
    pub prefill_overhead: Secs,
    pub prefill_per_token: Secs,
    pub time_factor_under_load: f64,

    // request semantics
    pub tokenizer: Tokenizer,
    /// Tokens added per chat message for the chat template.
    pub chat_template_tokens: u32,
    pub output_len: OutputLen,
    /// max_tokens when a request gives none (capped by max_model_len).
    pub default_max_tokens: u32,
    pub content: Content,
    /// Always send the usage chunk, as vLLM's `--enable-force-include-usage`.
    pub force_include_usage: bool,
    /// Stream each token's SSE event as its own HTTP chunk (`false`, the default, coalesces the
    /// events that are ready together into one chunk). `true` is the shape of a server that
    /// writes one event per token, which is what a client pays for per token.
    pub event_per_chunk: bool,
    /// Errors as the flat pre-2024 shape `{"object":"error",...}`.
    pub legacy_error_shape: bool,
    /// Also expose the removed metric names (gpu_cache_usage_perc, ...).
    pub legacy_metric_names: bool,

    // lifecycle
    pub startup_delay: Secs,
    pub startup_mode: StartupMode,

    // faults
    pub failure_rate: f64,
    /// Empty = all types.
    pub failure_types: Vec<FailureType>,
    pub abort_rate: f64,
    pub abort_after_tokens: u32,
    pub stream_error_rate: f64,
    pub stall_rate: f64,
    pub stall_duration: Secs,
    pub slowdown: f64,
    pub slowdown_schedule: Vec<SlowdownStep>,
    pub die_after: Option<DieAfter>,
    pub die_mode: DieMode,
    pub metrics_fault: MetricsFault,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            model: "meta-llama/Llama-3.1-8B-Instruct".into(),
            served_model_names: Vec::new(),
            max_model_len: 8192,
            pod_name: None,
            namespace: None,
            fidelity: Fidelity::Engine,
            max_num_seqs: 1024,
            max_num_batched_tokens: 8192,
            block_size: 16,
            kv_cache_tokens: None,
            enable_prefix_caching: true,
            max_waiting: 0,
            params: 8.03e9,
            weight_bytes: 16.06e9,
            n_layers: 32,
            n_kv_heads: 8,
            head_dim: 128,
            kv_dtype_bytes: 2,
            attn_dim: 4096,
            hbm_bandwidth: 3.35e12,
            peak_flops: 989e12,
            gpu_memory_bytes: 80e9,
            tp: 1,
            tp_overhead: 0.05,
            bw_efficiency: 0.80,
            mfu: 0.50,
            gpu_memory_utilization: 0.90,
            activation_reserve_bytes: 4.0 * 1024.0 * 1024.0 * 1024.0,
            step_overhead: Secs::ms(1.5),
            request_overhead: Secs::ms(5.0),
            step_jitter_cv: 0.03,
            seed: 0,
            time_scale: 1.0,
            ttft_model: TtftModel::Constant,
            ttft: Secs::ms(45.0),
            ttft_std: Secs(0.0),
            itl: Secs::ms(7.5),
            itl_std: Secs(0.0),
            prefill_overhead: Secs::ms(15.0),
            prefill_per_token: Secs::ms(0.033),
            time_factor_under_load: 2.0,
            tokenizer: Tokenizer::Bytes4,
            chat_template_tokens: 8,
            output_len: OutputLen::MaxTokens,
            default_max_tokens: 256,
            content: Content::Random,
            force_include_usage: false,
            event_per_chunk: false,
            legacy_error_shape: false,
            legacy_metric_names: false,
            startup_delay: Secs(0.0),
            startup_mode: StartupMode::Refuse,
            failure_rate: 0.0,
            failure_types: Vec::new(),
            abort_rate: 0.0,
            abort_after_tokens: 1,
            stream_error_rate: 0.0,
            stall_rate: 0.0,
            stall_duration: Secs(1.0),
            slowdown: 1.0,
            slowdown_schedule: Vec::new(),
            die_after: None,
            die_mode: DieMode::Health503,
            metrics_fault: MetricsFault::None,
        }
    }
}

impl SimConfig {
    /// A built-in profile by name (`tiny/cpu`, `llama-3.1-8b/h100`, ...).
    pub fn profile(name: &str) -> Result<Self, ConfigError> {
        let (_, text) =
            PROFILES.iter().find(|(n, _)| *n == name).ok_or_else(|| ConfigError::UnknownProfile {
                name: name.to_string(),
                known: PROFILES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            })?;
        Self::from_yaml(text, &format!("profile {name}"))
    }

    /// Whether a built-in profile exists and reads (each name parsed once per process: an
    /// experiment's planning checks it for every point).
    pub(crate) fn check_profile(name: &str) -> Result<(), ConfigError> {
        static GOOD: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let good = || GOOD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if good().iter().any(|n| n == name) {
            return Ok(());
        }
        Self::profile(name)?;
        good().push(name.to_string());
        Ok(())
    }

    /// A configuration file (YAML, same keys as a profile).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses YAML; errors carry `origin:line:column` and a suggestion for misspelt keys.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: SimConfig = serde_saphyr::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("{origin}:{}:{}", l.line(), l.column()))
                .unwrap_or_else(|| origin.to_string());
            describe_serde_error(&at, &e.to_string())
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Applies `key=value` overrides; values are YAML scalars or flow collections.
    pub fn apply_sets<S: AsRef<str>>(&self, sets: &[S]) -> Result<Self, ConfigError> {
        let mut patch = serde_json::Map::new();
        for arg in sets {
            let arg = arg.as_ref();
            let (key, value) =
                arg.split_once('=').ok_or_else(|| ConfigError::SetSyntax { arg: arg.to_string() })?;
            let value: Value =
                serde_saphyr::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
            patch.insert(key.trim().to_string(), value);
        }
        self.apply_patch(&patch, "--set")
    }

    /// Applies a partial update (the body of `POST /admin/config`, or `--set`s).
    pub fn apply_patch(
        &self,
        patch: &serde_json::Map<String, Value>,
        origin: &str,
    ) -> Result<Self, ConfigError> {
        let Value::Object(mut current) =
            serde_json::to_value(self).expect("SimConfig serialises to a JSON object")
        else {
            unreachable!("SimConfig is a struct")
        };
        for (key, value) in patch {
            if !current.contains_key(key) {
                return Err(ConfigError::UnknownKey {
                    origin: origin.to_string(),
                    key: key.clone(),
                    hint: suggest(key, current.keys().map(String::as_str)),
                });
            }
            current.insert(key.clone(), value.clone());
        }
        let cfg: SimConfig = serde_json::from_value(Value::Object(current))
            .map_err(|e| describe_serde_error(origin, &e.to_string()))?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Range checks that types alone cannot express.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |message: String| Err(ConfigError::Invalid { origin: origin.to_string(), message });
        for (name, p) in [
            ("failure_rate", self.failure_rate),
            ("abort_rate", self.abort_rate),
            ("stream_error_rate", self.stream_error_rate),
            ("stall_rate", self.stall_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} = {p}: must be a probability between 0 and 1"));
            }
        }
        for (name, v) in [
            ("params", self.params),
            ("weight_bytes", self.weight_bytes),
            ("hbm_bandwidth", self.hbm_bandwidth),
            ("peak_flops", self.peak_flops),
            ("gpu_memory_bytes", self.gpu_memory_bytes),
            ("bw_efficiency", self.bw_efficiency),
            ("mfu", self.mfu),
            ("gpu_memory_utilization", self.gpu_memory_utilization),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{name} = {v}: must be a positive number"));
            }
        }
        if !(self.time_scale.is_finite() && self.time_scale >= 0.0) {
            return bad(format!(
                "time_scale = {}: must be >= 0 (1 = real time, 0 = as fast as possible)",
                self.time_scale
            ));
        }
        if !(self.slowdown.is_finite() && self.slowdown >= 1.0) {
            return bad(format!("slowdown = {}: must be >= 1", self.slowdown));
        }
        if let Some(s) = self.slowdown_schedule.iter().find(|s| !s.factor.is_finite() || s.factor < 1.0) {
            return bad(format!("slowdown_schedule factor {}: must be >= 1", s.factor));
        }
        if !(0.0..1.0).contains(&self.step_jitter_cv) {
            return bad(format!("step_jitter_cv = {}: must be in [0, 1)", self.step_jitter_cv));
        }
        if !self.time_factor_under_load.is_finite() || self.time_factor_under_load < 1.0 {
            return bad(format!("time_factor_under_load = {}: must be >= 1", self.time_factor_under_load));
        }
        for (name, v) in [
            ("max_num_seqs", self.max_num_seqs),
            ("max_num_batched_tokens", self.max_num_batched_tokens),
            ("block_size", self.block_size),
            ("max_model_len", self.max_model_len),
            ("tp", self.tp),
            ("n_layers", self.n_layers),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        if self.kv_cache_tokens_total() < self.block_size as u64 {
            return bad(format!(
                "the KV cache holds {} tokens, less than one block of {}: the model does not fit \
                 (raise gpu_memory_bytes or gpu_memory_utilization, or set kv_cache_tokens)",
                self.kv_cache_tokens_total(),
                self.block_size
            ));
        }
        Ok(())
    }

    /// Bytes of KV cache per token: 2 · layers · kv_heads · head_dim · dtype bytes.
    pub fn kv_bytes_per_token(&self) -> f64 {
        2.0 * self.n_layers as f64
            * self.n_kv_heads as f64
            * self.head_dim as f64
            * self.kv_dtype_bytes as f64
    }

    /// KV capacity in tokens (derived unless `kv_cache_tokens` is set).
    pub fn kv_cache_tokens_total(&self) -> u64 {
        if let Some(t) = self.kv_cache_tokens {
            return t;
        }
        let free = self.gpu_memory_utilization * self.gpu_memory_bytes * self.tp as f64
            - self.weight_bytes
            - self.activation_reserve_bytes;
        let per = self.kv_bytes_per_token();
        if free <= 0.0 || per <= 0.0 { 0 } else { (free / per).floor() as u64 }
    }

    /// All names the model answers to; the first is the canonical one.
    pub fn model_names(&self) -> Vec<&str> {
        let mut names = vec![self.model.as_str()];
        names.extend(self.served_model_names.iter().map(String::as_str).filter(|n| *n != self.model));
        names
    }

    /// The failure types random failures draw from.
    pub fn failure_pool(&self) -> &[FailureType] {
        if self.failure_types.is_empty() { &FailureType::ALL } else { &self.failure_types }
    }
}

fn describe_serde_error(at: &str, message: &str) -> ConfigError {
    let message = crate::spec::bare_message(message);
    // serde's unknown-field message lists the expected fields; turn it into a suggestion.
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, _)) = rest.split_once('`')
    {
        let known = serde_json::to_value(SimConfig::default())
            .ok()
            .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
            .unwrap_or_default();
        return ConfigError::UnknownKey {
            origin: at.to_string(),
            key: key.to_string(),
            hint: suggest(key, known.iter().map(String::as_str)),
        };
    }
    ConfigError::Parse { origin: at.to_string(), message: message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::parse_duration;

    #[test]
    fn every_shipped_profile_parses_and_validates() {
        for (name, _) in PROFILES {
            SimConfig::profile(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn default_kv_capacity_matches_the_reference() {
        // (0.9 · 80e9 − 16.06e9 − 4 GiB) / 131072 ≈ 4.0e5 tokens (reference S.3).
        let c = SimConfig::default();
        assert_eq!(c.kv_bytes_per_token(), 131_072.0);
        let t = c.kv_cache_tokens_total();
        assert!((390_000..=430_000).contains(&t), "{t}");
    }

    #[test]
    fn unknown_key_in_yaml_names_line_and_suggests() {
        let err = SimConfig::from_yaml("model: m\nmax_num_seq: 4\n", "x.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("x.yaml:2"), "{msg}");
        assert!(msg.contains("did you mean `max_num_seqs`"), "{msg}");
    }

    #[test]
    fn wrong_type_names_the_place() {
        let err = SimConfig::from_yaml("max_num_seqs: lots\n", "p.yaml").unwrap_err();
        assert!(err.to_string().starts_with("p.yaml:1"), "{err}");
    }

    #[test]
    fn sets_are_typed_and_validated() {
        let c = SimConfig::default()
            .apply_sets(&["time_scale=0.5", "model=foo", "step_overhead=2ms", "die_after=10"])
            .unwrap();
        assert_eq!(c.time_scale, 0.5);
        assert_eq!(c.model, "foo");
        assert!((c.step_overhead.0 - 0.002).abs() < 1e-12);
        assert_eq!(c.die_after, Some(DieAfter::Requests(10)));
        let c = c.apply_sets(&["die_after=1.5s", "failure_types=[rate_limit, internal]"]).unwrap();
        assert_eq!(c.die_after, Some(DieAfter::Time(1.5)));
        assert_eq!(c.failure_types, vec![FailureType::RateLimit, FailureType::Internal]);
        assert!(matches!(
            SimConfig::default().apply_sets(&["failure_rate=1.5"]),
            Err(ConfigError::Invalid { .. })
        ));
        let e = SimConfig::default().apply_sets(&["tim_scale=1"]).unwrap_err();
        assert!(e.to_string().contains("did you mean `time_scale`"), "{e}");
        assert!(matches!(SimConfig::default().apply_sets(&["novalue"]), Err(ConfigError::SetSyntax { .. })));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("1.5ms"), Some(0.0015));
        assert_eq!(parse_duration("2m"), Some(120.0));
        assert_eq!(parse_duration("3"), Some(3.0));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
    }
}
