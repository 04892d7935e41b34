//! Prompt sources and request bodies.
//!
//! A dataset becomes a pool of [`Prompt`]s; the load generator renders each into a complete
//! request body once, before the run, so the send path only clones a reference-counted buffer.
//! Token counts here are estimates (one token per word, the simulator's lexicon words being one
//! token each); the analysis prefers the server's `usage` whenever it reports it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::{
    lexicon::LEXICON,
    rng::Rng,
    spec::workload::{ApiSpec, DatasetSpec, Endpoint, FileSpec, RandomSpec, SharedPrefixSpec},
};

/// The sample sets shipped with benchflow (`datasets/*.jsonl`), embedded in the binary.
pub(crate) const SAMPLES: &[(&str, &str)] = &[("sample", include_str!("../../datasets/sample.jsonl"))];

/// Most prompts generated for a synthetic pool; requests cycle through the pool.
const MAX_POOL: usize = 4096;

/// Why a dataset could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("failed to read dataset {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Line { path: String, line: usize, message: String },
    #[error("dataset {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("unknown sample dataset `{0}`; shipped samples: sample")]
    UnknownSample(String),
}

/// What is sent: a text prompt or chat messages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PromptBody {
    Text(String),
    Messages(Vec<(String, String)>),
}

/// One prompt with its token estimate and requested output length.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Prompt {
    pub body: PromptBody,
    pub input_tokens: u32,
    pub max_tokens: u32,
    /// The session it belongs to (a shared-prefix group), for `api.session_header`.
    pub session: Option<u32>,
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub body: Bytes,
    pub input_tokens: u32,
    pub max_tokens: u32,
    /// The prompt's session (its shared-prefix group), for `api.session_header`.
    pub session: Option<u32>,
}

fn words(rng: &mut Rng, n: u32, out: &mut String) {
    for _ in 0..n {
        out.push_str(LEXICON[rng.below(LEXICON.len() as u64) as usize]);
    }
}

/// Uniform length in [⌊L(1−r)⌋, ⌈L(1+r)⌉], at least `min` (vllm bench's range ratio).
fn length(rng: &mut Rng, l: u32, r: f64, min: u32) -> u32 {
    let lo = (l as f64 * (1.0 - r)).floor() as u64;
    let hi = (l as f64 * (1.0 + r)).ceil() as u64;
    (rng.range_inclusive(lo, hi) as u32).max(min)
}

fn random(spec: &RandomSpec, rng: &mut Rng, pool: usize) -> Vec<Prompt> {
    let mut prefix = String::new();
    words(rng, spec.prefix_len, &mut prefix);
    (0..pool)
        .map(|_| {
            let n_in = length(rng, spec.input_len, spec.range_ratio, 1);
            let n_out = length(rng, spec.output_len, spec.range_ratio, 1);
            let mut text = String::with_capacity(prefix.len() + 4 * n_in as usize);
            text.push_str(&prefix);
            words(rng, n_in, &mut text);
            Prompt {
                body: PromptBody::Text(text),
                input_tokens: spec.prefix_len + n_in,
                max_tokens: n_out,
                session: None,
            }
        })
        .collect()
}

fn shared_prefix(spec: &SharedPrefixSpec, rng: &mut Rng) -> Vec<Prompt> {
    let mut out = Vec::new();
    for group in 0..spec.groups {
        let mut prefix = String::new();
        words(rng, spec.prefix_len, &mut prefix);
        for _ in 0..spec.prompts_per_group {
            let mut text = prefix.clone();
            words(rng, spec.suffix_len, &mut text);
            out.push(Prompt {
                body: PromptBody::Text(text),
                input_tokens: spec.prefix_len + spec.suffix_len,
                max_tokens: spec.output_len,
                session: Some(group),
            });
        }
    }
    shuffle(&mut out, rng);
    out
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

fn estimate(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX).max(1)
}

fn read(path: &Path) -> Result<String, DatasetError> {
    std::fs::read_to_string(path).map_err(|source| DatasetError::Read { path: path.to_path_buf(), source })
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

/// Parses JSON lines: `{"prompt": ...}` or `{"messages": [...]}`, with optional `max_tokens` /
/// `output_len`.
pub(crate) fn parse_jsonl(
    text: &str,
    origin: &str,
    default_out: Option<u32>,
    max_in: Option<u32>,
) -> Result<Vec<Prompt>, DatasetError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = |message: String| DatasetError::Line { path: origin.to_string(), line: i + 1, message };
        let v: Value = serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
        let body = if let Some(p) = v.get("prompt").and_then(Value::as_str) {
            PromptBody::Text(p.to_string())
        } else if let Some(ms) = v.get("messages").and_then(Value::as_array) {
            let mut messages = Vec::new();
            for m in ms {
                let role = m
                    .get("role")
                    .and_then(Value::as_str)
                    .ok_or_else(|| at("a message has no `role`".into()))?;
                let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
                messages.push((role.to_string(), content.to_string()));
            }
            PromptBody::Messages(messages)
        } else {
            return Err(at("expected a `prompt` string or a `messages` list".into()));
        };
        let input_tokens = match &body {
            PromptBody::Text(t) => estimate(t),
            PromptBody::Messages(ms) => ms.iter().map(|(_, c)| estimate(c)).sum(),
        };
        if max_in.is_some_and(|m| input_tokens > m) {
            continue;
        }
        let max_tokens = default_out
            .or_else(|| {
                v.get("max_tokens").or_else(|| v.get("output_len")).and_then(Value::as_u64).map(|n| n as u32)
            })
            .ok_or_else(|| {
                at("no output length: add `max_tokens` to the line or `output_len` to the dataset".into())
            })?;
        out.push(Prompt { body, input_tokens, max_tokens: max_tokens.max(1), session: None });
    }
    Ok(out)
}

/// Parses ShareGPT JSON: the first human turn is the prompt; the following assistant turn's
/// length (in words) is the output length unless `output_len` is set.
pub(crate) fn parse_sharegpt(text: &str, origin: &str, spec: &FileSpec) -> Result<Vec<Prompt>, DatasetError> {
    let invalid = |message: String| DatasetError::Invalid { path: origin.to_string(), message };
    let v: Value = serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let items = v.as_array().ok_or_else(|| invalid("expected a JSON array of conversations".into()))?;
    let mut out = Vec::new();
    for item in items {
        let Some(turns) = item.get("conversations").and_then(Value::as_array) else { continue };
        let text_of = |t: &Value| t.get("value").and_then(Value::as_str).unwrap_or_default().to_string();
        let from = |t: &Value| t.get("from").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(pos) = turns.iter().position(|t| from(t) == "human") else { continue };
        let prompt = text_of(&turns[pos]);
        let completion = turns.get(pos + 1).filter(|t| from(t) == "gpt").map(text_of);
        let input_tokens = estimate(&prompt);
        let out_len = match (spec.output_len, &completion) {
            (Some(n), _) => n,
            (None, Some(c)) => estimate(c),
            (None, None) => continue,
        };
        // Like vllm bench: skip prompts or completions too short to measure.
        if input_tokens < 4 || out_len < 4 || spec.max_input_len.is_some_and(|m| input_tokens > m) {
            continue;
        }
        out.push(Prompt { body: PromptBody::Text(prompt), input_tokens, max_tokens: out_len, session: None });
    }
    Ok(out)
}

/// Loads the prompt pool for a dataset spec; file paths are relative to `base`.
pub(crate) fn load(spec: &DatasetSpec, seed: u64, base: &Path) -> Result<Vec<Prompt>, DatasetError> {
    load_for(spec, seed, base, None)
}

/// Prompt text kept in memory for a synthetic pool, at most (tokens, ≈ 4 bytes each).
const POOL_TOKEN_BUDGET: u64 = 64 << 20;

/// How many synthetic prompts to make: what the run needs (when known), at most 4,096, and
/// no more than the memory budget allows for prompts of this length.
pub(crate) fn pool_size(spec: &RandomSpec, needed: Option<u64>) -> usize {
    let per_prompt = u64::from(spec.input_len.max(1)) + u64::from(spec.prefix_len);
    let by_memory = (POOL_TOKEN_BUDGET / per_prompt).max(1);
    let n = needed.unwrap_or(MAX_POOL as u64).min(MAX_POOL as u64).min(by_memory).max(1);
    n as usize
}

/// `load`, making no more synthetic prompts than `needed` requests use.
pub(crate) fn load_for(
    spec: &DatasetSpec,
    seed: u64,
    base: &Path,
    needed: Option<u64>,
) -> Result<Vec<Prompt>, DatasetError> {
    let mut rng = Rng::derive(seed, 0xDA7A);
    let mut prompts = match spec {
        DatasetSpec::Random(r) => random(r, &mut rng, pool_size(r, needed)),
        DatasetSpec::SharedPrefix(s) => shared_prefix(s, &mut rng),
        DatasetSpec::Sharegpt(f) => {
            let path = resolve(base, &f.path);
            parse_sharegpt(&read(&path)?, &path.display().to_string(), f)?
        }
        DatasetSpec::Jsonl(f) => {
            let path = resolve(base, &f.path);
            parse_jsonl(&read(&path)?, &path.display().to_string(), f.output_len, f.max_input_len)?
        }
        DatasetSpec::Sample(s) => {
            let (_, text) = SAMPLES
                .iter()
                .find(|(n, _)| *n == s.name)
                .ok_or_else(|| DatasetError::UnknownSample(s.name.clone()))?;
            parse_jsonl(text, &format!("datasets/{}.jsonl", s.name), s.output_len, None)?
        }
    };
    if prompts.is_empty() {
        return Err(DatasetError::Invalid {
            path: describe(spec, base),
            message: "no usable prompts".into(),
        });
    }
    if matches!(spec, DatasetSpec::Sharegpt(_) | DatasetSpec::Jsonl(_) | DatasetSpec::Sample(_)) {
        shuffle(&mut prompts, &mut rng);
    }
    Ok(prompts)
}

/// The file a dataset reads, if it reads one.
pub(crate) fn file(spec: &DatasetSpec, base: &Path) -> Option<PathBuf> {
    match spec {
        DatasetSpec::Sharegpt(f) | DatasetSpec::Jsonl(f) => Some(resolve(base, &f.path)),
        DatasetSpec::Random(_) | DatasetSpec::SharedPrefix(_) | DatasetSpec::Sample(_) => None,
    }
}

/// A dataset in words (for messages).
pub(crate) fn describe(spec: &DatasetSpec, base: &Path) -> String {
    match spec {
        DatasetSpec::Random(_) => "random".into(),
        DatasetSpec::SharedPrefix(_) => "shared_prefix".into(),
        DatasetSpec::Sharegpt(f) => resolve(base, &f.path).display().to_string(),
        DatasetSpec::Jsonl(f) => resolve(base, &f.path).display().to_string(),
        DatasetSpec::Sample(s) => format!("sample `{}`", s.name),
    }
}

/// Files above this size are only checked to exist at plan time (parsing them is the run's job).
const CHECK_PARSE_LIMIT: u64 = 64 << 20;

/// Checks a dataset before anything starts: a file exists and parses (whole, up to 64 MiB), a
/// sample exists. What `load` would refuse after a 20-minute standup is refused now.
pub(crate) fn check(spec: &DatasetSpec, base: &Path) -> Result<(), DatasetError> {
    let file = match spec {
        DatasetSpec::Random(_) | DatasetSpec::SharedPrefix(_) => return Ok(()),
        DatasetSpec::Sample(s) => {
            return match SAMPLES.iter().any(|(n, _)| *n == s.name) {
                true => Ok(()),
                false => Err(DatasetError::UnknownSample(s.name.clone())),
            };
        }
        DatasetSpec::Sharegpt(f) => &f.path,
        DatasetSpec::Jsonl(f) => &f.path,
    };
    let path = resolve(base, file);
    let size =
        std::fs::metadata(&path).map_err(|source| DatasetError::Read { path: path.clone(), source })?.len();
    if size <= CHECK_PARSE_LIMIT {
        load(spec, 0, base)?;
    }
    Ok(())
}

/// Renders the request body of a prompt for the workload's API settings.
pub(crate) fn render(p: &Prompt, api: &ApiSpec, model: &str) -> Request {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    match (&p.body, api.endpoint) {
        (PromptBody::Text(t), Endpoint::Completions) => {
            body.insert("prompt".into(), json!(t));
        }
        (PromptBody::Text(t), Endpoint::Chat) => {
            body.insert("messages".into(), json!([{ "role": "user", "content": t }]));
        }
        (PromptBody::Messages(ms), Endpoint::Chat) => {
            let ms: Vec<Value> = ms.iter().map(|(r, c)| json!({ "role": r, "content": c })).collect();
            body.insert("messages".into(), Value::Array(ms));
        }
        (PromptBody::Messages(ms), Endpoint::Completions) => {
            let joined: Vec<String> = ms.iter().map(|(r, c)| format!("{r}: {c}")).collect();
            body.insert("prompt".into(), json!(joined.join("\n")));
        }
    }
    body.insert("max_tokens".into(), json!(p.max_tokens));
    body.insert("stream".into(), json!(api.stream));
    if api.stream {
        body.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    if api.ignore_eos {
        body.insert("ignore_eos".into(), json!(true));
    }
    for (k, v) in &api.extra_body {
        body.insert(k.clone(), v.clone());
    }
    Request {
        body: Bytes::from(Value::Object(body).to_string()),
        input_tokens: p.input_tokens,
        max_tokens: p.max_tokens,
        session: p.session,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_pool_is_sized_by_need_and_memory() {
        let spec = |input_len| RandomSpec { input_len, output_len: 8, range_ratio: 0.0, prefix_len: 0 };
        assert_eq!(pool_size(&spec(128), Some(30)), 30, "no more prompts than requests");
        assert_eq!(pool_size(&spec(128), None), 4096, "unknown need: the usual pool");
        assert_eq!(pool_size(&spec(128), Some(1_000_000)), 4096);
        // 200,000-token prompts: a pool of 4,096 would be 6 GB of text; the budget caps it.
        assert_eq!(pool_size(&spec(200_000), None), (64 << 20) / 200_000);
        assert_eq!(pool_size(&spec(1 << 20), Some(0)), 1);
    }
    use crate::spec::workload::{SampleSpec, SharedPrefixSpec};

    #[test]
    fn random_lengths_follow_the_range_ratio() {
        let spec = RandomSpec { input_len: 100, output_len: 10, range_ratio: 0.5, prefix_len: 0 };
        let ps = random(&spec, &mut Rng::new(1), 2000);
        assert!(ps.iter().all(|p| (50..=150).contains(&p.input_tokens) && (5..=15).contains(&p.max_tokens)));
        let mean = ps.iter().map(|p| p.input_tokens as f64).sum::<f64>() / ps.len() as f64;
        assert!((mean - 100.0).abs() < 3.0);
        // Text token count (one lexicon word = one token) equals the estimate.
        let PromptBody::Text(t) = &ps[0].body else { panic!() };
        assert_eq!(estimate(t), ps[0].input_tokens);
        let same = random(&spec, &mut Rng::new(1), 5);
        assert_eq!(&ps[..5], &same[..]);
    }

    #[test]
    fn shared_prefix_groups_share_their_prefix() {
        let spec = SharedPrefixSpec {
            groups: 3,
            prompts_per_group: 4,
            prefix_len: 20,
            suffix_len: 5,
            output_len: 8,
        };
        let ps = shared_prefix(&spec, &mut Rng::new(2));
        assert_eq!(ps.len(), 12);
        let texts: Vec<&str> =
            ps.iter().map(|p| if let PromptBody::Text(t) = &p.body { t.as_str() } else { "" }).collect();
        let mut prefixes: Vec<&str> =
            texts.iter().map(|t| &t[..t.match_indices(' ').nth(19).map_or(t.len(), |(i, _)| i)]).collect();
        prefixes.sort();
        prefixes.dedup();
        assert_eq!(prefixes.len(), 3);
    }

    #[test]
    fn jsonl_and_sharegpt_parse_and_report_lines() {
        let ps = parse_jsonl("{\"prompt\":\"a b c\",\"max_tokens\":5}\n\n{\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}],\"output_len\":3}\n", "f", None, None).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!((ps[0].input_tokens, ps[0].max_tokens), (3, 5));
        assert_eq!(ps[1].max_tokens, 3);
        let e = parse_jsonl("{\"prompt\":\"x\"}\n{oops\n", "f.jsonl", Some(4), None).unwrap_err();
        assert!(e.to_string().starts_with("f.jsonl:2:"), "{e}");
        let e = parse_jsonl("{\"prompt\":\"x\"}\n", "f.jsonl", None, None).unwrap_err();
        assert!(e.to_string().contains("no output length"), "{e}");

        let sg = r#"[{"conversations":[{"from":"human","value":"one two three four five"},{"from":"gpt","value":"a b c d e f"}]},
                    {"conversations":[{"from":"human","value":"too short"},{"from":"gpt","value":"a b c d e"}]}]"#;
        let spec = FileSpec { path: String::new(), output_len: None, max_input_len: None };
        let ps = parse_sharegpt(sg, "sg.json", &spec).unwrap();
        assert_eq!(ps.len(), 1);
        assert_eq!((ps[0].input_tokens, ps[0].max_tokens), (5, 6));
    }

    #[test]
    fn the_shipped_sample_loads() {
        let ps = load(
            &DatasetSpec::Sample(SampleSpec { name: "sample".into(), output_len: None }),
            1,
            Path::new("."),
        )
        .unwrap();
        assert!(ps.len() >= 40);
        assert!(ps.iter().any(|p| matches!(p.body, PromptBody::Messages(_))));
    }

    #[test]
    fn bodies_carry_the_api_settings() {
        let p = Prompt { body: PromptBody::Text("hi".into()), input_tokens: 1, max_tokens: 7, session: None };
        let mut api = ApiSpec::default();
        api.extra_body.insert("temperature".into(), json!(0));
        let v: Value = serde_json::from_slice(&render(&p, &api, "m").body).unwrap();
        assert_eq!(
            v,
            json!({"model":"m","prompt":"hi","max_tokens":7,"stream":true,"stream_options":{"include_usage":true},"ignore_eos":true,"temperature":0})
        );
        api.endpoint = Endpoint::Chat;
        let v: Value = serde_json::from_slice(&render(&p, &api, "m").body).unwrap();
        assert_eq!(v["messages"], json!([{"role":"user","content":"hi"}]));
    }
}
