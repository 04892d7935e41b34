//! Request parsing and validation (completions and chat), vLLM's error shapes, reading a body.

use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sim::{
    config::{Content, SimConfig},
    tokenizer::{self},
};

/// Which OpenAI endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Completions,
    Chat,
}

/// An error answered in vLLM's shape.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: 400, kind: "BadRequestError", message: message.into(), param: None }
    }

    /// The JSON body: `{"error": {...}}`, or the flat pre-2024 shape.
    pub(crate) fn body(&self, legacy: bool) -> Value {
        let inner = json!({
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.status,
        });
        if legacy {
            let mut flat = inner;
            flat["object"] = json!("error");
            flat
        } else {
            json!({ "error": inner })
        }
    }
}

#[derive(Deserialize)]
struct RawRequest {
    model: Option<String>,
    prompt: Option<Value>,
    messages: Option<Vec<RawMessage>>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    role: String,
    content: Option<Value>,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
    #[serde(default)]
    continuous_usage_stats: bool,
}

/// A validated inference request.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub model: String,
    pub prompt_tokens: u32,
    pub hashes: Vec<u64>,
    pub max_tokens: u32,
    pub stream: bool,
    pub include_usage: bool,
    pub continuous_usage: bool,
    /// Prompt words, for `content: echo`.
    pub echo: Vec<String>,
}

fn content_text(v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(t);
                }
            }
            Ok(out)
        }
        Value::Null => Ok(String::new()),
        _ => Err(ApiError::bad_request("message content must be a string or a list of parts")),
    }
}

/// Parses and validates a request body against the configuration.
pub(crate) fn parse(api: Api, body: &[u8], cfg: &SimConfig) -> Result<Parsed, ApiError> {
    let raw: RawRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON request body: {e}")))?;
    let names = cfg.model_names();
    let model = match raw.model {
        None => cfg.model.clone(),
        Some(m) if names.contains(&m.as_str()) => m,
        Some(m) => {
            return Err(ApiError {
                status: 404,
                kind: "NotFoundError",
                message: format!("The model `{m}` does not exist."),
                param: Some("model"),
            });
        }
    };
    if raw.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("the simulator supports only n = 1"));
    }
    let bs = cfg.block_size;
    let (prompt_tokens, hashes, text) = match api {
        Api::Completions => match raw.prompt {
            Some(Value::String(s)) => {
                let n = tokenizer::count(&s, cfg.tokenizer);
                (n, tokenizer::block_hashes_text(&s, cfg.tokenizer, bs, n), s)
            }
            Some(Value::Array(items)) => match items.as_slice() {
                [Value::String(s)] => {
                    let n = tokenizer::count(s, cfg.tokenizer);
                    (n, tokenizer::block_hashes_text(s, cfg.tokenizer, bs, n), s.clone())
                }
                [Value::Array(ids)] => token_ids(ids, bs)?,
                ids if ids.iter().all(Value::is_u64) => token_ids(ids, bs)?,
                _ => {
                    return Err(ApiError::bad_request(
                        "prompt must be a string, one string in a list, or token ids (batched prompts are not supported)",
                    ));
                }
            },
            _ => {
                return Err(ApiError {
                    param: Some("prompt"),
                    ..ApiError::bad_request("`prompt` is required")
                });
            }
        },
        Api::Chat => {
            let messages = raw.messages.filter(|m| !m.is_empty()).ok_or_else(|| ApiError {
                param: Some("messages"),
                ..ApiError::bad_request("`messages` must be a non-empty list")
            })?;
            let mut all = String::new();
            let mut n = 0u32;
            for m in &messages {
                let t = match &m.content {
                    Some(c) => content_text(c)?,
                    None => String::new(),
                };
                n = n.saturating_add(tokenizer::count(&t, cfg.tokenizer) + cfg.chat_template_tokens);
                all.push_str(&m.role);
                all.push(' ');
                all.push_str(&t);
                all.push('\n');
            }
            (n, tokenizer::block_hashes_text(&all, cfg.tokenizer, bs, n), all)
        }
    };
    let max_len = cfg.max_model_len;
    let requested = raw.max_completion_tokens.or(raw.max_tokens);
    let max_tokens =
        requested.unwrap_or_else(|| cfg.default_max_tokens.min(max_len.saturating_sub(prompt_tokens)));
    let total = prompt_tokens as u64 + max_tokens as u64;
    if total > max_len as u64 || (requested.is_none() && max_tokens == 0) {
        return Err(ApiError {
            param: Some(if api == Api::Chat { "messages" } else { "prompt" }),
            ..ApiError::bad_request(format!(
                "This model's maximum context length is {max_len} tokens. However, you requested {total} tokens \
                 ({prompt_tokens} in the messages, {max_tokens} in the completion). Please reduce the length of \
                 the messages or completion."
            ))
        });
    }
    if max_tokens == 0 {
        return Err(ApiError {
            param: Some("max_tokens"),
            ..ApiError::bad_request("max_tokens must be at least 1")
        });
    }
    let opts = raw.stream_options.unwrap_or_default();
    Ok(Parsed {
        model,
        prompt_tokens,
        hashes,
        max_tokens,
        stream: raw.stream,
        include_usage: opts.include_usage || cfg.force_include_usage,
        continuous_usage: opts.continuous_usage_stats,
        echo: if cfg.content == Content::Echo {
            text.split_whitespace().map(|w| format!(" {w}")).collect()
        } else {
            Vec::new()
        },
    })
}

fn token_ids(ids: &[Value], bs: u32) -> Result<(u32, Vec<u64>, String), ApiError> {
    let ids: Vec<u64> = ids
        .iter()
        .map(|v| v.as_u64().ok_or_else(|| ApiError::bad_request("token ids must be non-negative integers")))
        .collect::<Result<_, _>>()?;
    let n = u32::try_from(ids.len()).unwrap_or(u32::MAX);
    Ok((n, tokenizer::block_hashes_ids(&ids, bs), String::new()))
}

/// Reads a request body up to `limit` bytes.
pub(crate) async fn read_body(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(ApiError::bad_request(format!("failed to read the request body: {e}"))),
    }
}
