//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text, as vLLM, the vLLM
//! router and the DCGM exporter serve it on `/metrics`: one sample a line,
//! `name{label="value",…} value [timestamp] [# {exemplar labels} value [timestamp]]`.
//!
//! What is read: `# HELP`, `# TYPE`, `# UNIT`, `# EOF` and other comments (skipped); label
//! values with their escapes (`\\`, `\"`, `\n`); names quoted inside the braces (Prometheus
//! 3's UTF-8 names, `{"my.metric",a="1"}`); values `+Inf`, `-Inf`, `NaN` and exponents; an
//! optional timestamp (milliseconds in Prometheus text, seconds in OpenMetrics: kept as
//! written); an OpenMetrics exemplar after `#`; blanks and tabs between tokens; `\r\n` lines.
//! A line that is none of these is an [`ExpositionError`] naming its line and what was expected.

use std::borrow::Cow;

/// (name, value) pairs in the order written, the values unescaped.
pub(crate) type Labels<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample<'a> {
    pub name: Cow<'a, str>,
    pub labels: Labels<'a>,
    pub value: f64,
    /// As written: milliseconds (Prometheus text) or seconds (OpenMetrics).
    pub timestamp: Option<f64>,
    pub exemplar: Option<Exemplar<'a>>,
}

/// An OpenMetrics exemplar: `# {trace_id="…"} 0.67 [1520879607.789]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exemplar<'a> {
    pub labels: Labels<'a>,
    pub value: f64,
    pub timestamp: Option<f64>,
}

/// A line of an exposition that is not in the format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("/metrics line {line}: {why}: `{text}`")]
pub(crate) struct ExpositionError {
    /// 1-based.
    pub line: usize,
    pub why: String,
    /// The line, cut to 120 characters.
    pub text: String,
}

impl Sample<'_> {
    /// The value of label `name`.
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_ref())
    }

    /// The labels as `a='1',b='x\'y'` (`\`, `'` and newlines escaped with `\`): the form of
    /// `server_metrics.csv`'s labels column.
    pub(crate) fn labels_text(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("='");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('\'');
        }
        out
    }
}

/// The samples of an exposition, each line's error in its place. Stops at `# EOF`.
pub(crate) fn samples(text: &str) -> impl Iterator<Item = Result<Sample<'_>, ExpositionError>> {
    text.lines().enumerate().take_while(|(_, l)| l.trim_end() != "# EOF").filter_map(|(i, l)| {
        parse_line(l).transpose().map(|r| {
            r.map_err(|why| ExpositionError { line: i + 1, why, text: l.chars().take(120).collect() })
        })
    })
}

/// One line: `Ok(None)` for a comment, metadata or a blank line.
pub(crate) fn parse_line(line: &str) -> Result<Option<Sample<'_>>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = line.trim_start_matches([' ', '\t']);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let mut c = Cursor { s: rest };
    let mut name = c.name();
    let mut labels = Vec::new();
    if c.eat('{') {
        labels = c.labels(&mut name)?;
    }
    let name = name.ok_or("a sample line starts with a metric name")?;
    let (value, timestamp) = c.value_and_timestamp()?;
    let exemplar = match c.eat('#') {
        false => None,
        true => {
            c.blanks();
            if !c.eat('{') {
                return Err("an exemplar is `# {labels} value [timestamp]`".into());
            }
            let labels = c.labels(&mut None)?;
            let (value, timestamp) = c.value_and_timestamp()?;
            Some(Exemplar { labels, value, timestamp })
        }
    };
    if !c.s.is_empty() {
        return Err(format!("unexpected `{}` after the value", c.s));
    }
    Ok(Some(Sample { name, labels, value, timestamp, exemplar }))
}

/// What is left of a line.
struct Cursor<'a> {
    s: &'a str,
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, c: char) -> bool {
        match self.s.strip_prefix(c) {
            Some(rest) => {
                self.s = rest;
                true
            }
            None => false,
        }
    }

    fn blanks(&mut self) {
        self.s = self.s.trim_start_matches([' ', '\t']);
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` (a metric's), or nothing.
    fn name(&mut self) -> Option<Cow<'a, str>> {
        let end = self
            .s
            .char_indices()
            .find(|&(i, c)| {
                !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()))
            })
            .map_or(self.s.len(), |(i, _)| i);
        let (name, rest) = self.s.split_at(end);
        self.s = rest;
        (!name.is_empty()).then_some(Cow::Borrowed(name))
    }

    /// `"…"` with `\\`, `\"` and `\n` escapes, the opening quote already eaten.
    fn quoted(&mut self) -> Result<Cow<'a, str>, String> {
        let Some(end) = self.s.find(['"', '\\']) else {
            return Err("a label value never closes its `\"`".into());
        };
        if self.s.as_bytes()[end] == b'"' {
            let v = &self.s[..end];
            self.s = &self.s[end + 1..];
            return Ok(Cow::Borrowed(v));
        }
        let mut out = String::new();
        let mut chars = self.s.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.s = &self.s[i + 1..];
                    return Ok(Cow::Owned(out));
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    // Prometheus keeps an unknown escape as written.
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err("a label value never closes its `\"`".into())
    }

    /// `a="1",b="2"}` (the `{` eaten; a trailing comma allowed). A quoted string standing alone
    /// is the metric's name (Prometheus 3), given to `name` if it has none yet.
    fn labels(&mut self, name: &mut Option<Cow<'a, str>>) -> Result<Labels<'a>, String> {
        let mut labels = Vec::new();
        loop {
            self.blanks();
            if self.eat('}') {
                return Ok(labels);
            }
            let key = match self.eat('"') {
                true => self.quoted()?,
                false => self.name().filter(|k| !k.contains(':')).ok_or_else(|| {
                    format!(
                        "expected a label name or `}}` at `{}`",
                        self.s.chars().take(20).collect::<String>()
                    )
                })?,
            };
            self.blanks();
            if self.eat('=') {
                self.blanks();
                if !self.eat('"') {
                    return Err(format!("the value of label `{key}` must be quoted"));
                }
                labels.push((key, self.quoted()?));
            } else if name.is_none() {
                *name = Some(key);
            } else {
                return Err(format!("label `{key}` has no `=\"value\"`"));
            }
            self.blanks();
            if !self.eat(',') && !self.s.starts_with('}') {
                return Err("labels are separated by `,` and closed by `}`".into());
            }
        }
    }

    /// ` value [timestamp]`, up to an exemplar's `#` or the end.
    fn value_and_timestamp(&mut self) -> Result<(f64, Option<f64>), String> {
        let mut token = || {
            self.blanks();
            let end = self.s.find([' ', '\t', '#']).unwrap_or(self.s.len());
            let (t, rest) = self.s.split_at(end);
            self.s = rest;
            (!t.is_empty()).then_some(t)
        };
        let value = token().ok_or("a sample needs a value")?;
        let value = number(value).ok_or_else(|| format!("`{value}` is not a number"))?;
        let timestamp = match token() {
            None => None,
            Some(t) => {
                Some(number(t).filter(|t| t.is_finite()).ok_or_else(|| format!("`{t}` is not a timestamp"))?)
            }
        };
        self.blanks();
        Ok((value, timestamp))
    }
}

/// A value as Go's `ParseFloat` reads it for Prometheus: decimals, exponents, `+Inf`, `-Inf`,
/// `NaN` (any case), not Rust's `infinity` spelled out.
fn number(t: &str) -> Option<f64> {
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        l if l.contains("inf") || l.contains("nan") => None,
        _ => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<Sample<'_>> {
        samples(text).collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{e}"))
    }

    /// vLLM 0.x through prometheus_client (text 0.0.4): HELP/TYPE, a model name with a `/`,
    /// a histogram's `+Inf` bucket, `_created` gauges, exponents.
    const VLLM: &str = "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
# TYPE vllm:num_requests_running gauge\n\
vllm:num_requests_running{engine=\"0\",model_name=\"org/Model-8B\"} 3.0\n\
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n\
# TYPE vllm:prompt_tokens_total counter\n\
vllm:prompt_tokens_total{engine=\"0\",model_name=\"org/Model-8B\"} 1.234e+06\n\
vllm:prompt_tokens_created{engine=\"0\",model_name=\"org/Model-8B\"} 1.7651e+09\n\
# TYPE vllm:time_to_first_token_seconds histogram\n\
vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.001\",model_name=\"org/Model-8B\"} 0.0\n\
vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"org/Model-8B\"} 412.0\n\
vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"org/Model-8B\"} 412.0\n\
vllm:time_to_first_token_seconds_sum{engine=\"0\",model_name=\"org/Model-8B\"} 17.25\n\
vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"org/Model-8B\"} NaN\n";

    /// The same server asked for OpenMetrics: exemplars, timestamps in seconds, `# EOF`.
    const OPENMETRICS: &str = "# TYPE vllm:request_success counter\n\
# UNIT vllm:e2e_request_latency_seconds seconds\n\
vllm:request_success_total{finished_reason=\"stop\",model_name=\"m\"} 27.0 1765100000.250\n\
vllm:e2e_request_latency_seconds_bucket{le=\"0.5\",model_name=\"m\"} 9 # {trace_id=\"3f2a\"} 0.41 1765100000.1\n\
vllm:e2e_request_latency_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 27 # {trace_id=\"77b0\"} 2.5\n\
# EOF\n\
vllm:after_eof 1\n";

    /// The vLLM router (a Rust exporter): no HELP, routes and error texts as labels with escapes.
    const ROUTER: &str = "# TYPE vllm_router_requests_total counter\n\
vllm_router_requests_total{route=\"/v1/completions\",method=\"POST\"} 1200\n\
vllm_router_worker_errors_total{worker=\"http://10.0.0.7:8000\",error=\"said \\\"busy\\\"\\nthen c:\\\\tmp\"} 2\n\
vllm_router_active_workers 4\n\
vllm_router_request_duration_seconds{route=\"/v1/completions\",quantile=\"0.99\"} 0.8125\n\
vllm_router_request_duration_seconds_sum{route=\"/v1/completions\"} 312.5\n";

    /// A DCGM exporter (3.x) with pod attribution, spaces in a label value, a federated
    /// copy's millisecond timestamp, and tabs between tokens.
    const DCGM: &str = "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n\
# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n\
DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-1a2b\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node-a\",container=\"vllm\",namespace=\"bench\",pod=\"vllm-0\"} 87\n\
DCGM_FI_DEV_FB_USED{gpu=\"1\",UUID=\"GPU-3c4d\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node-a\"} 70213 1765100000123\n\
DCGM_FI_DEV_POWER_USAGE{gpu=\"1\",Hostname=\"node-a\"}\t612.250\t1765100000123\r\n";

    #[test]
    fn a_vllm_exposition_is_read_whole() {
        let s = all(VLLM);
        assert_eq!(s.len(), 8, "HELP and TYPE lines are not samples");
        assert_eq!(s[0].name, "vllm:num_requests_running");
        assert_eq!(s[0].label("model_name"), Some("org/Model-8B"));
        assert_eq!((s[0].value, s[0].timestamp), (3.0, None));
        assert_eq!(s[1].value, 1_234_000.0);
        assert_eq!(s[4].label("le"), Some("+Inf"));
        assert_eq!((s[5].value, s[6].value), (412.0, 17.25));
        assert!(s[7].value.is_nan());
    }

    #[test]
    fn openmetrics_timestamps_and_exemplars_are_not_the_value() {
        let s = all(OPENMETRICS);
        assert_eq!(s.len(), 3, "nothing after # EOF");
        assert_eq!((s[0].value, s[0].timestamp), (27.0, Some(1_765_100_000.25)));
        assert_eq!(s[1].value, 9.0);
        let e = s[1].exemplar.as_ref().unwrap();
        assert_eq!((e.labels[0].1.as_ref(), e.value, e.timestamp), ("3f2a", 0.41, Some(1_765_100_000.1)));
        assert_eq!((s[2].value, s[2].exemplar.as_ref().map(|e| e.value)), (27.0, Some(2.5)));
    }

    #[test]
    fn router_labels_are_unescaped() {
        let s = all(ROUTER);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].label("route"), Some("/v1/completions"));
        assert_eq!(s[1].label("error"), Some("said \"busy\"\nthen c:\\tmp"));
        assert_eq!(
            s[1].labels_text(),
            "worker='http://10.0.0.7:8000',error='said \"busy\"\\nthen c:\\\\tmp'"
        );
        assert_eq!((s[2].labels.len(), s[2].value), (0, 4.0));
        assert_eq!(s[3].label("quantile"), Some("0.99"));
    }

    #[test]
    fn dcgm_timestamps_in_milliseconds_and_tabs() {
        let s = all(DCGM);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("modelName"), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!((s[1].value, s[1].timestamp), (70213.0, Some(1_765_100_000_123.0)));
        assert_eq!((s[2].value, s[2].timestamp), (612.25, Some(1_765_100_000_123.0)));
    }

    #[test]
    fn special_values_and_quoted_names() {
        let one = |l: &'static str| parse_line(l).unwrap().unwrap();
        assert_eq!(one("a +Inf").value, f64::INFINITY);
        assert_eq!(one("a -Inf 5").value, f64::NEG_INFINITY);
        assert_eq!(one("a{} 1e-3").value, 0.001);
        assert_eq!(one("a{x=\"1\",} 2").label("x"), Some("1"), "a trailing comma");
        let q = one("{\"my.metric\", \"a.b\"=\"v\"} 7");
        assert_eq!((q.name.as_ref(), q.label("a.b"), q.value), ("my.metric", Some("v"), 7.0));
        assert_eq!(parse_line("  # a comment"), Ok(None));
        assert_eq!(parse_line(""), Ok(None));
    }

    #[test]
    fn what_is_not_the_format_is_an_error_naming_its_line() {
        for (line, why) in [
            ("a", "a sample needs a value"),
            ("a one", "`one` is not a number"),
            ("a infinity", "`infinity` is not a number"),
            ("a 1 2 3", "unexpected `3`"),
            ("a 1 NaN", "`NaN` is not a timestamp"),
            ("a{x=1} 2", "must be quoted"),
            ("a{x=\"1} 2", "never closes"),
            ("a{x=\"1\" y=\"2\"} 3", "separated by `,`"),
            ("9a 1", "starts with a metric name"),
            ("a 1 # trace 2", "an exemplar is"),
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
        let e = samples("ok 1\n\nbad\n").nth(1).unwrap().unwrap_err();
        assert_eq!((e.line, e.text.as_str()), (3, "bad"));
        assert!(e.to_string().starts_with("/metrics line 3: a sample needs a value"), "{e}");
    }

    #[test]
    fn the_simulator_s_exposition_parses_whole() {
        let mut m = crate::sim::metrics::Metrics::new(8192);
        m.ttft.observe(0.05);
        let text = m.render("org/a \"quoted\" model", 16, 0.9, true, false);
        let s = all(&text);
        assert!(s.len() > 50, "{}", s.len());
        let info = s.iter().find(|x| x.name == "vllm:cache_config_info").unwrap();
        assert_eq!(info.label("model_name"), Some("org/a \"quoted\" model"));
        let count = s.iter().find(|x| x.name == "vllm:time_to_first_token_seconds_count").unwrap();
        assert_eq!(count.value, 1.0);
        let inf = s
            .iter()
            .find(|x| x.name == "vllm:time_to_first_token_seconds_bucket" && x.label("le") == Some("+Inf"));
        assert_eq!(inf.map(|x| x.value), Some(1.0));
    }

    /// Writes a sample as an exporter would, the value and labels escaped.
    fn written(name: &str, labels: &[(String, String)], value: f64, ts: Option<i64>) -> String {
        let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))).collect();
        let value = match value {
            v if v == f64::INFINITY => "+Inf".to_string(),
            v if v == f64::NEG_INFINITY => "-Inf".to_string(),
            v => format!("{v:e}"),
        };
        let ts = ts.map(|t| format!(" {t}")).unwrap_or_default();
        format!("{name}{{{}}} {value}{ts}", labels.join(","))
    }

    #[test]
    fn generated_lines_round_trip() {
        // Random names, label values drawn from an alphabet of the characters that need
        // escaping (and the ones a naive split trips on: spaces, `}`, `,`, `=`, `#`), values
        // including the infinities, timestamps or none.
        let mut rng = crate::rng::Rng::new(28);
        let alphabet: Vec<char> = "ab Z9_\\\"\n{},=#:/.é".chars().collect();
        for _ in 0..2000 {
            let name = format!("m_{}:x{}", rng.below(1000), rng.below(10));
            let labels: Vec<(String, String)> = (0..rng.below(4))
                .map(|i| {
                    let v: String = (0..rng.below(12))
                        .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                        .collect();
                    (format!("l{i}"), v)
                })
                .collect();
            let value = match rng.below(6) {
                0 => f64::INFINITY,
                1 => f64::NEG_INFINITY,
                _ => (rng.f64() - 0.5) * 10f64.powi(rng.below(30) as i32 - 15),
            };
            let ts = rng.chance(0.5).then(|| rng.below(2_000_000_000_000) as i64);
            let line = written(&name, &labels, value, ts);
            let s = parse_line(&line).unwrap_or_else(|e| panic!("{line}: {e}")).unwrap();
            assert_eq!(s.name, name, "{line}");
            let got: Vec<(String, String)> =
                s.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(got, labels, "{line}");
            assert_eq!(s.value, value, "{line}");
            assert_eq!(s.timestamp, ts.map(|t| t as f64), "{line}");
        }
    }
}
