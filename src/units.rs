//! Units shared by the files users write and the components that read them: durations.

use serde::{Deserialize, Serialize};

/// A duration in seconds, written as a number of seconds or a string with a unit
/// (`"1.5ms"`, `"250us"`, `"20s"`, `"2m"`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Secs(pub f64);

impl Secs {
    /// The longest duration a file may give: a week (604,800 s). Longer is a typo (or `1e30`),
    /// and would overflow the clock arithmetic that deadlines and timeouts do.
    pub const MAX: f64 = 7.0 * 24.0 * 3600.0;

    pub const fn ms(ms: f64) -> Self {
        Secs(ms / 1000.0)
    }

    /// `seconds` as a duration a file may give: finite, not negative, at most [`Secs::MAX`].
    pub(crate) fn checked(seconds: f64) -> Result<Secs, String> {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return Err(format!("duration {seconds}: must be a non-negative number of seconds"));
        }
        if seconds > Secs::MAX {
            return Err(format!("duration {seconds} s: at most a week ({} s)", Secs::MAX));
        }
        Ok(Secs(seconds))
    }
}

/// Parses `"1.5ms"`-style durations into seconds (finite, not negative; see [`Secs::checked`]
/// for the upper bound).
pub(crate) fn parse_duration(s: &str) -> Option<f64> {
    scaled(s).filter(|n| n.is_finite() && *n >= 0.0)
}

/// A number with an optional unit (the letters at its end: `1e20s` is 1e20 seconds), in
/// seconds, whatever its sign or size.
fn scaled(s: &str) -> Option<f64> {
    let s = s.trim();
    let split =
        s.len() - s.chars().rev().take_while(|c| c.is_alphabetic()).map(char::len_utf8).sum::<usize>();
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
    Some(n * scale)
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
        let seconds = match Raw::deserialize(d)? {
            Raw::Num(n) => n,
            Raw::Str(s) => scaled(&s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "duration `{s}`: expected seconds or a number with a unit (ms, s, m, h)"
                ))
            })?,
        };
        Secs::checked(seconds).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> Result<Secs, String> {
        serde_json::from_value::<Secs>(
            serde_saphyr::from_str::<serde_json::Value>(yaml).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_duration_is_finite_not_negative_and_at_most_a_week() {
        for ok in ["0", "1.5", "250ms", "2m", "1h", "604800", "168h", "10080m"] {
            assert!(read(ok).is_ok(), "{ok}: {:?}", read(ok));
        }
        assert_eq!(read("168h"), Ok(Secs(Secs::MAX)));
        // Beyond a week, however written: the bound is named.
        for long in ["604801", "1e19", "1e30", "1e308", "18446744073709551616", "1e20s", "169h", "1e300h"] {
            let e = read(long).expect_err(long);
            assert!(e.contains("at most a week") || e.contains("expected seconds"), "{long}: {e}");
        }
        for bad in ["-1", "-1s", ".nan", ".inf", "-.inf", "5 parsecs", "\"\"", "ms"] {
            assert!(read(bad).is_err(), "{bad}");
        }
        // What every caller does with one: no panic for any value a file can give.
        for s in ["604800", "0", "1e-9"] {
            let d = std::time::Duration::from_secs_f64(read(s).unwrap().0);
            assert!(std::time::Instant::now().checked_add(d).is_some());
        }
    }
}
