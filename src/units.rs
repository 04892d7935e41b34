//! Units shared by the files users write and the components that read them: durations.

use serde::{Deserialize, Serialize};

/// A duration in seconds, written as a number of seconds or a string with a unit
/// (`"1.5ms"`, `"250us"`, `"20s"`, `"2m"`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Secs(pub f64);

impl Secs {
    pub const fn ms(ms: f64) -> Self {
        Secs(ms / 1000.0)
    }
}

/// Parses `"1.5ms"`-style durations into seconds.
pub(crate) fn parse_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some(n * scale)
}

impl schemars::JsonSchema for Secs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Seconds as a number, or a string with a unit: `500ms`, `30s`, `2m`, `1h`.",
            "type": ["number", "string"]
        })
    }
}

impl Serialize for Secs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) if n.is_finite() && n >= 0.0 => Ok(Secs(n)),
            Raw::Num(n) => Err(serde::de::Error::custom(format!(
                "duration {n}: must be a non-negative number of seconds"
            ))),
            Raw::Str(s) => parse_duration(&s).map(Secs).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "duration `{s}`: expected seconds or a number with a unit (ms, s, m, h)"
                ))
            }),
        }
    }
}
