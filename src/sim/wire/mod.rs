//! The OpenAI/vLLM wire format (S.1):
//!
//! * [`request`]: request parsing and validation, error shapes;
//! * [`text`]: the generated words and the SSE frames of one response;
//! * [`sse`]: the streaming body (coalescing, stream faults) and the non-streamed collector.

mod request;
mod sse;
mod text;

pub(crate) use self::{request::*, sse::*, text::*};

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use serde_json::{Value, json};

    use super::*;
    use crate::sim::{SimConfig, engine::FinishReason};

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
