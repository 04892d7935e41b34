//! The simulator's fault knobs (reference S.5): which errors random failures draw from, startup
//! and death modes, `/metrics` faults, slowdown schedules. They are fields of
//! [`super::config::SimConfig`]; this file holds their types and how they are written.

use serde::{Deserialize, Serialize};

use crate::units::{Secs, parse_duration};

/// Error types the random-failure knob draws from (S.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureType {
    RateLimit,
    InvalidApiKey,
    ContextLength,
    ServerError,
    InvalidRequest,
    ModelNotFound,
    Internal,
}

impl FailureType {
    pub const ALL: [FailureType; 7] = [
        FailureType::RateLimit,
        FailureType::InvalidApiKey,
        FailureType::ContextLength,
        FailureType::ServerError,
        FailureType::InvalidRequest,
        FailureType::ModelNotFound,
        FailureType::Internal,
    ];

    /// HTTP status this failure answers with.
    pub fn status(self) -> u16 {
        match self {
            FailureType::RateLimit => 429,
            FailureType::InvalidApiKey => 401,
            FailureType::ContextLength | FailureType::InvalidRequest => 400,
            FailureType::ServerError => 503,
            FailureType::ModelNotFound => 404,
            FailureType::Internal => 500,
        }
    }

    /// The `type` field of the error body.
    pub fn name(self) -> &'static str {
        match self {
            FailureType::RateLimit => "rate_limit",
            FailureType::InvalidApiKey => "invalid_api_key",
            FailureType::ContextLength => "context_length",
            FailureType::ServerError => "server_error",
            FailureType::InvalidRequest => "invalid_request",
            FailureType::ModelNotFound => "model_not_found",
            FailureType::Internal => "internal",
        }
    }
}

/// A string, or a number written without quotes (`metrics_fault: 500`).
#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrNum {
    Str(String),
    Num(u64),
}

impl StrOrNum {
    fn into_string(self) -> String {
        match self {
            StrOrNum::Str(s) => s,
            StrOrNum::Num(n) => n.to_string(),
        }
    }
}

/// What happens while the simulated model is still loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "StrOrNum")]
pub enum StartupMode {
    /// The port is closed (connection refused), as with real vLLM.
    Refuse,
    /// The port is open but `/health` and inference answer 503.
    #[serde(rename = "503")]
    Unavailable,
}

/// What engine death looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DieMode {
    /// `/health` answers 503, in-flight streams get an error frame, new requests 500.
    Health503,
    /// The process exits with a non-zero status.
    Exit,
}

/// When the engine dies: after a (simulated) time or after a number of requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DieAfter {
    Time(f64),
    Requests(u64),
}

impl Serialize for DieAfter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DieAfter::Time(t) => s.collect_str(&format_args!("{t}s")),
            DieAfter::Requests(n) => s.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for DieAfter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(DieAfter::Requests(n)),
            Raw::Str(s) => parse_duration(&s).map(DieAfter::Time).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "die_after `{s}`: expected a request count (e.g. 100) or a duration (e.g. \"30s\")"
                ))
            }),
        }
    }
}

/// Ways to break `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "StrOrNum")]
pub enum MetricsFault {
    None,
    #[serde(rename = "500")]
    Error500,
    /// Never answer.
    Timeout,
    /// Keep answering the values seen when the fault was set.
    Stale,
}

impl TryFrom<StrOrNum> for StartupMode {
    type Error = String;
    fn try_from(v: StrOrNum) -> Result<Self, String> {
        match v.into_string().as_str() {
            "refuse" => Ok(StartupMode::Refuse),
            "503" => Ok(StartupMode::Unavailable),
            other => Err(format!("startup_mode `{other}`: expected refuse or 503")),
        }
    }
}

impl TryFrom<StrOrNum> for MetricsFault {
    type Error = String;
    fn try_from(v: StrOrNum) -> Result<Self, String> {
        match v.into_string().as_str() {
            "none" => Ok(MetricsFault::None),
            "500" => Ok(MetricsFault::Error500),
            "timeout" => Ok(MetricsFault::Timeout),
            "stale" => Ok(MetricsFault::Stale),
            other => Err(format!("metrics_fault `{other}`: expected none, 500, timeout or stale")),
        }
    }
}

/// One step of a slowdown schedule: from `after` (simulated seconds since start) on, step times
/// are multiplied by `factor`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowdownStep {
    pub after: Secs,
    pub factor: f64,
}
