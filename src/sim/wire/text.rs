//! Response text: the generated words and the SSE frames of one response (JSON envelope
//! rendered once per request).

use bytes::{BufMut, BytesMut};

use super::request::{Api, ApiError};
use crate::rng::Rng;
use crate::sim::{engine::FinishReason, tokenizer::LEXICON};

/// Produces the generated words.
pub(crate) struct Words {
    rng: Rng,
    echo: Vec<String>,
    next: usize,
}

impl Words {
    pub(crate) fn new(seed: u64, id: u64, echo: Vec<String>) -> Self {
        Words { rng: Rng::derive(seed, id), echo, next: 0 }
    }

    pub(crate) fn next_word(&mut self) -> &str {
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
pub(crate) struct Chunks {
    pub(super) api: Api,
    /// `data: {"id":...,"choices":[{"index":0,`
    head: String,
    /// `{"id":...,"created":...,"model":...,` for the usage chunk
    envelope: String,
    prompt_tokens: u32,
}

impl Chunks {
    pub(crate) fn new(api: Api, id: &str, created: u64, model: &str, prompt_tokens: u32) -> Self {
        let object = match api {
            Api::Chat => "chat.completion.chunk",
            Api::Completions => "text_completion",
        };
        let model = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".into());
        let envelope = format!(r#"{{"id":"{id}","object":"{object}","created":{created},"model":{model},"#);
        Chunks { api, head: format!(r#"data: {envelope}"choices":[{{"index":0,"#), envelope, prompt_tokens }
    }

    /// The chat role chunk (sent with the first token, as vLLM does).
    pub(crate) fn role(&self, out: &mut BytesMut) {
        out.put_slice(self.head.as_bytes());
        out.put_slice(
            br#""delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
        );
        out.put_slice(b"\n\n");
    }

    /// One content chunk; the last one carries `finish_reason`.
    pub(crate) fn token(
        &self,
        out: &mut BytesMut,
        text: &str,
        finish: Option<FinishReason>,
        usage: Option<u32>,
    ) {
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
    pub(crate) fn usage(&self, out: &mut BytesMut, completion: u32) {
        out.put_slice(b"data: ");
        out.put_slice(self.envelope.as_bytes());
        out.put_slice(br#""choices":[]"#);
        self.put_usage(out, completion);
        out.put_slice(b"}\n\n");
    }

    /// An in-stream error frame.
    pub(crate) fn error(out: &mut BytesMut, err: &ApiError, legacy: bool) {
        out.put_slice(b"data: ");
        out.put_slice(err.body(legacy).to_string().as_bytes());
        out.put_slice(b"\n\n");
    }

    pub(crate) fn done(out: &mut BytesMut) {
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
