//! The OpenAI/vLLM wire format: request parsing, response bodies, the SSE stream (S.1).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    config::{Content, SimConfig},
    engine::{Emit, FinishReason},
    metrics::LocalLateness,
    state::Shared,
    tokenizer::{self, LEXICON},
};
use crate::rng::Rng;

/// Which OpenAI endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Completions,
    Chat,
}

/// An error answered in vLLM's shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<&'static str>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: 400, kind: "BadRequestError", message: message.into(), param: None }
    }

    /// The JSON body: `{"error": {...}}`, or the flat pre-2024 shape.
    pub fn body(&self, legacy: bool) -> Value {
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
pub struct Parsed {
    pub api: Api,
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
pub fn parse(api: Api, body: &[u8], cfg: &SimConfig) -> Result<Parsed, ApiError> {
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
        api,
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

/// Produces the generated words.
pub struct Words {
    rng: Rng,
    echo: Vec<String>,
    next: usize,
}

impl Words {
    pub fn new(seed: u64, id: u64, echo: Vec<String>) -> Self {
        Words { rng: Rng::derive(seed, id), echo, next: 0 }
    }

    pub fn next_word(&mut self) -> &str {
        if self.echo.is_empty() {
            LEXICON[self.rng.below(LEXICON.len() as u64) as usize]
        } else {
            let w = &self.echo[self.next % self.echo.len()];
            self.next += 1;
            w
        }
    }
}

/// Formats the SSE frames of one response; the JSON envelope is rendered once per request.
pub struct Chunks {
    api: Api,
    /// `data: {"id":...,"choices":[{"index":0,`
    head: String,
    /// `{"id":...,"created":...,"model":...,` for the usage chunk
    envelope: String,
    prompt_tokens: u32,
}

impl Chunks {
    pub fn new(api: Api, id: &str, created: u64, model: &str, prompt_tokens: u32) -> Self {
        let object = match api {
            Api::Chat => "chat.completion.chunk",
            Api::Completions => "text_completion",
        };
        let model = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".into());
        let envelope = format!(r#"{{"id":"{id}","object":"{object}","created":{created},"model":{model},"#);
        Chunks { api, head: format!(r#"data: {envelope}"choices":[{{"index":0,"#), envelope, prompt_tokens }
    }

    /// The chat role chunk (sent with the first token, as vLLM does).
    pub fn role(&self, out: &mut BytesMut) {
        out.put_slice(self.head.as_bytes());
        out.put_slice(
            br#""delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
        );
        out.put_slice(b"\n\n");
    }

    /// One content chunk; the last one carries `finish_reason`.
    pub fn token(&self, out: &mut BytesMut, text: &str, finish: Option<FinishReason>, usage: Option<u32>) {
        out.put_slice(self.head.as_bytes());
        match self.api {
            Api::Chat => out.put_slice(br#""delta":{"content":"#),
            Api::Completions => out.put_slice(br#""text":"#),
        }
        put_json_str(out, text);
        if self.api == Api::Chat {
            out.put_slice(b"}");
        }
        out.put_slice(br#","logprobs":null,"finish_reason":"#);
        match finish {
            Some(r) => {
                out.put_u8(b'"');
                out.put_slice(r.as_str().as_bytes());
                out.put_slice(br#"","stop_reason":null"#);
            }
            None => out.put_slice(b"null"),
        }
        out.put_slice(b"}]");
        if let Some(n) = usage {
            self.put_usage(out, n);
        }
        out.put_slice(b"}\n\n");
    }

    fn put_usage(&self, out: &mut BytesMut, completion: u32) {
        let p = self.prompt_tokens;
        out.put_slice(
            format!(
                r#","usage":{{"prompt_tokens":{p},"total_tokens":{},"completion_tokens":{completion}}}"#,
                p + completion
            )
            .as_bytes(),
        );
    }

    /// The usage-only chunk (`choices: []`).
    pub fn usage(&self, out: &mut BytesMut, completion: u32) {
        out.put_slice(b"data: ");
        out.put_slice(self.envelope.as_bytes());
        out.put_slice(br#""choices":[]"#);
        self.put_usage(out, completion);
        out.put_slice(b"}\n\n");
    }

    /// An in-stream error frame.
    pub fn error(out: &mut BytesMut, err: &ApiError, legacy: bool) {
        out.put_slice(b"data: ");
        out.put_slice(err.body(legacy).to_string().as_bytes());
        out.put_slice(b"\n\n");
    }

    pub fn done(out: &mut BytesMut) {
        out.put_slice(b"data: [DONE]\n\n");
    }
}

fn put_json_str(out: &mut BytesMut, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.put_u8(b'"');
        out.put_slice(s.as_bytes());
        out.put_u8(b'"');
    } else {
        out.put_slice(serde_json::to_string(s).unwrap_or_default().as_bytes());
    }
}

/// Per-request fault decisions, drawn once at arrival.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamFaults {
    /// Close the connection without `[DONE]` after this many tokens.
    pub abort_after: Option<u32>,
    /// Send an error frame then `[DONE]` after this many tokens.
    pub error_after: Option<u32>,
    /// Pause for this long (wall) after the first token.
    pub stall: Option<Duration>,
}

/// The error a stream body ends with when the abort fault fires.
#[derive(Debug, thiserror::Error)]
#[error("stream aborted by the simulator's abort fault")]
pub struct Aborted;

/// Decrements the in-flight gauge when a response ends, however it ends.
pub struct InFlight(pub Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A streaming response: turns engine events into SSE frames as the client reads them.
/// Events that queued up while the client was slow are coalesced into one write.
pub struct SseBody {
    source: Source,
    chunks: Chunks,
    words: Words,
    faults: StreamFaults,
    include_usage: bool,
    continuous_usage: bool,
    legacy_errors: bool,
    sent: u32,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    stalled: bool,
    abort_next: bool,
    abort_flushed: bool,
    done: bool,
    lateness: LocalLateness,
    in_flight: InFlight,
}

impl Drop for SseBody {
    fn drop(&mut self) {
        if !self.lateness.is_empty() {
            let mut m = self.in_flight.0.metrics.lock().expect("metrics lock");
            self.lateness.merge_into(&mut m.delivery_lateness);
        }
    }
}

/// Where a stream's events come from.
pub enum Source {
    /// The engine driver (or an analytic task) sends them.
    Channel(mpsc::UnboundedReceiver<Emit>),
    /// The body paces itself (streamed analytic requests).
    Paced(Box<super::analytic::Pacer>),
}

impl Source {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Emit>> {
        match self {
            Source::Channel(rx) => rx.poll_recv(cx),
            Source::Paced(p) => p.poll_next(cx),
        }
    }
}

/// Maximum bytes coalesced into one body frame.
const MAX_FRAME: usize = 16 * 1024;

impl SseBody {
    #[expect(clippy::too_many_arguments, reason = "one constructor call site, fields spelled out")]
    pub fn new(
        source: Source,
        chunks: Chunks,
        words: Words,
        faults: StreamFaults,
        include_usage: bool,
        continuous_usage: bool,
        legacy_errors: bool,
        in_flight: InFlight,
    ) -> Self {
        SseBody {
            source,
            chunks,
            words,
            faults,
            include_usage,
            continuous_usage,
            legacy_errors,
            sent: 0,
            stall: None,
            stalled: false,
            abort_next: false,
            abort_flushed: false,
            done: false,
            lateness: LocalLateness::default(),
            in_flight,
        }
    }

    /// Appends the frames for one event; returns false when the stream must stop reading.
    fn on_event(&mut self, ev: Emit, out: &mut BytesMut) -> bool {
        match ev {
            Emit::Token { finish, due } => {
                if let Some(due) = due {
                    self.lateness.observe(Instant::now().saturating_duration_since(due).as_secs_f64());
                }
                if self.sent == 0 && self.chunks.api == Api::Chat {
                    self.chunks.role(out);
                }
                self.sent += 1;
                let usage = self.continuous_usage.then_some(self.sent);
                let word = self.words.next_word();
                self.chunks.token(out, word, finish, usage);
                if finish.is_some() {
                    if self.include_usage {
                        self.chunks.usage(out, self.sent);
                    }
                    Chunks::done(out);
                    self.done = true;
                    return false;
                }
                if self.faults.error_after.is_some_and(|n| self.sent >= n) {
                    let err = ApiError {
                        status: 500,
                        kind: "InternalServerError",
                        message: "simulated in-stream error (stream_error_rate)".into(),
                        param: None,
                    };
                    Chunks::error(out, &err, self.legacy_errors);
                    Chunks::done(out);
                    self.done = true;
                    return false;
                }
                if self.faults.abort_after.is_some_and(|n| self.sent >= n) {
                    self.abort_next = true;
                    return false;
                }
                if !self.stalled
                    && let Some(d) = self.faults.stall
                {
                    self.stalled = true;
                    self.stall = Some(Box::pin(tokio::time::sleep(d)));
                    return false;
                }
                true
            }
            Emit::Error(why) => {
                let err =
                    ApiError { status: 500, kind: "InternalServerError", message: why.into(), param: None };
                Chunks::error(out, &err, self.legacy_errors);
                Chunks::done(out);
                self.done = true;
                false
            }
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        let this = &mut *self;
        if this.abort_next {
            if !this.abort_flushed {
                // Yield once so the connection flushes the frames already written; an error
                // returned right after a frame would drop it unsent.
                this.abort_flushed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            return Poll::Ready(Some(Err(Aborted)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(s) = this.stall.as_mut() {
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.stall = None;
        }
        let mut out = BytesMut::new();
        while out.len() < MAX_FRAME {
            match this.source.poll_next(cx) {
                Poll::Ready(Some(ev)) => {
                    if !this.on_event(ev, &mut out) {
                        break;
                    }
                }
                Poll::Ready(None) => {
                    // The engine dropped the request without finishing it.
                    let err = ApiError {
                        status: 500,
                        kind: "InternalServerError",
                        message: "the request was dropped by the engine".into(),
                        param: None,
                    };
                    Chunks::error(&mut out, &err, this.legacy_errors);
                    Chunks::done(&mut out);
                    this.done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if out.is_empty() {
            if this.abort_next {
                return Pin::new(this).poll_frame(cx);
            }
            if this.stall.is_some() {
                // Register the stall timer's waker.
                return Pin::new(this).poll_frame(cx);
            }
            return if this.done { Poll::Ready(None) } else { Poll::Pending };
        }
        Poll::Ready(Some(Ok(Frame::data(out.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.done && !self.abort_next
    }
}

/// Collects a whole (non-streaming) response. Returns the text, finish reason and token count,
/// or the error the engine reported.
pub async fn collect(
    mut rx: mpsc::UnboundedReceiver<Emit>,
    words: &mut Words,
) -> Result<(String, FinishReason, u32), String> {
    let mut text = String::new();
    let mut n = 0;
    while let Some(ev) = rx.recv().await {
        match ev {
            Emit::Token { finish, .. } => {
                n += 1;
                text.push_str(words.next_word());
                if let Some(f) = finish {
                    return Ok((text, f, n));
                }
            }
            Emit::Error(why) => return Err(why.to_string()),
        }
    }
    Err("the request was dropped by the engine".into())
}

/// Reads a request body up to `limit` bytes.
pub async fn read_body(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(ApiError::bad_request(format!("failed to read the request body: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SimConfig {
        SimConfig::default()
    }

    #[test]
    fn parses_completions_and_chat() {
        let p = parse(Api::Completions, br#"{"model":"meta-llama/Llama-3.1-8B-Instruct","prompt":"hello world","max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}"#, &cfg()).unwrap();
        assert_eq!((p.prompt_tokens, p.max_tokens, p.stream, p.include_usage), (3, 5, true, true));
        let p = parse(Api::Chat, br#"{"messages":[{"role":"user","content":"hi"},{"role":"user","content":[{"type":"text","text":"a b"}]}],"max_completion_tokens":7}"#, &cfg()).unwrap();
        assert_eq!(p.prompt_tokens, 1 + 8 + 2 + 8);
        assert_eq!(p.max_tokens, 7);
        let p = parse(Api::Completions, br#"{"prompt":[1,2,3,4]}"#, &cfg()).unwrap();
        assert_eq!((p.prompt_tokens, p.max_tokens), (4, 256));
    }

    #[test]
    fn rejects_like_vllm() {
        let e = parse(Api::Completions, br#"{"model":"nope","prompt":"x"}"#, &cfg()).unwrap_err();
        assert_eq!((e.status, e.kind), (404, "NotFoundError"));
        assert_eq!(e.body(false)["error"]["message"], "The model `nope` does not exist.");
        assert_eq!(e.body(true)["object"], "error");
        let e = parse(Api::Completions, br#"{"prompt":[1,2,3],"max_tokens":8190}"#, &cfg()).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("maximum context length is 8192 tokens"), "{}", e.message);
        assert_eq!(parse(Api::Completions, b"{not json", &cfg()).unwrap_err().status, 400);
        assert_eq!(parse(Api::Chat, br#"{"messages":[]}"#, &cfg()).unwrap_err().status, 400);
    }

    #[test]
    fn chunks_are_valid_json() {
        let c = Chunks::new(Api::Chat, "chatcmpl-1", 5, "m\"x", 3);
        let mut out = BytesMut::new();
        c.role(&mut out);
        c.token(&mut out, " a\"b", None, Some(1));
        c.token(&mut out, " c", Some(FinishReason::Length), None);
        c.usage(&mut out, 2);
        Chunks::done(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
        assert_eq!(frames.len(), 5);
        for f in &frames[..4] {
            let v: Value = serde_json::from_str(f.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(v["model"], "m\"x");
        }
        let last: Value = serde_json::from_str(frames[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "length");
        let usage: Value = serde_json::from_str(frames[3].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 5);
        assert_eq!(frames[4], "data: [DONE]");
    }
}
