//! The hot path: one HTTP/1.1 keep-alive connection per in-flight request slot (see [`super::h1`]),
//! and a scanner that reads the SSE stream without parsing JSON or copying bytes.
//!
//! Per request: the pre-rendered body is a reference-counted clone, timestamps come from one
//! monotonic clock (nanoseconds since the run's start), chunk gaps go into a vector sized for
//! the expected output once. Nothing here takes a lock.

use std::{net::SocketAddr, time::Instant};

use bytes::Bytes;
use hyper::{HeaderMap, header::HeaderValue};

use super::{
    h1::ReadError,
    record::{ErrorKind, Record},
};

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub authority: HeaderValue,
    pub path: String,
    pub headers: HeaderMap,
    pub stream: bool,
    /// For an `https://` endpoint.
    pub tls: Option<crate::net::Tls>,
    /// `api.session_header` and its value for each session number (`group-N`).
    pub sessions: Option<(hyper::header::HeaderName, Vec<HeaderValue>)>,
}

pub(crate) use super::h1::Conn;

/// Opens a connection to the target (TLS for `https://`).
pub(crate) async fn connect(target: &Target) -> std::io::Result<Conn> {
    Conn::open(target.addr, target.tls.as_ref()).await
}

/// Largest body kept of a response that is not an SSE stream (a non-streamed completion, an
/// error): beyond it the body is read and dropped, and the request fails as malformed.
const MAX_WHOLE: usize = 64 * 1024 * 1024;

/// Sends one request on `conn` (opening one if needed) and fills in `rec`. The connection is
/// kept for the next request when it is still usable.
pub(crate) async fn send(
    conn: &mut Option<Conn>,
    target: &Target,
    body: Bytes,
    session: Option<u32>,
    t0: Instant,
    rec: &mut Record,
) {
    let ns = |t: Instant| t.saturating_duration_since(t0).as_nanos() as u64;
    // A kept connection the server closed while it was idle is replaced before sending; one it
    // closed as the request went out is found below, and the request goes once more on a new one.
    if conn.as_mut().is_some_and(Conn::closed_while_idle) {
        *conn = None;
    }
    let mut reused = conn.is_some();
    let head = loop {
        if conn.is_none() {
            match connect(target).await {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    rec.sent_ns = ns(Instant::now());
                    rec.end_ns = rec.sent_ns;
                    rec.fail(ErrorKind::Connect, e.to_string());
                    return;
                }
            }
        }
        let Some(c) = conn.as_mut() else { return };
        rec.sent_ns = ns(Instant::now());
        let answer = match c.write_request(|w| request_head(w, target, session), &body).await {
            Ok(()) => c.read_head().await,
            Err(e) => Err(e.into()),
        };
        match answer {
            Ok(head) => break head,
            Err(e) if reused && e.nothing_received() => {
                *conn = None;
                reused = false;
            }
            Err(e) => {
                rec.end_ns = ns(Instant::now());
                let kind = match e {
                    ReadError::Malformed(_) => ErrorKind::Malformed,
                    // The server took the request and began its answer: not a failure to connect.
                    ReadError::Closed { answered: true } => ErrorKind::Aborted,
                    _ => ErrorKind::Connect,
                };
                rec.fail(kind, e.to_string());
                *conn = None;
                return;
            }
        }
    };
    let Some(c) = conn.as_mut() else { return };
    rec.status = head.status;
    if rec.status != 200 {
        rec.retry_after_s = head.retry_after_s;
    }
    let streamed = target.stream && rec.status == 200;
    let mut scan = SseScan::default();
    let mut whole = Vec::new();
    let mut too_long = false;
    let read = c
        .read_body(head.body, |data, at| {
            if streamed {
                scan.feed(data, ns(at), rec);
            } else if whole.len() + data.len() <= MAX_WHOLE {
                whole.extend_from_slice(data);
            } else {
                too_long = true;
            }
        })
        .await;
    rec.end_ns = ns(Instant::now());
    if let Err(e) = read {
        match e {
            ReadError::Malformed(_) => rec.fail(ErrorKind::Malformed, e.to_string()),
            _ => rec.fail(ErrorKind::Aborted, format!("the response was cut off: {e}")),
        }
        *conn = None;
        return;
    }
    if !head.keep_alive {
        *conn = None;
    }
    if too_long {
        rec.fail(ErrorKind::Malformed, format!("the response body is larger than {} MiB", MAX_WHOLE >> 20));
        return;
    }
    if rec.status != 200 {
        let text = String::from_utf8_lossy(&whole);
        let msg = serde_json::from_slice::<serde_json::Value>(&whole)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .or_else(|| v.get("message"))
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| text.chars().take(200).collect());
        rec.fail(ErrorKind::Http, msg);
        return;
    }
    if target.stream {
        scan.finish(rec);
    } else {
        finish_whole(&whole, rec);
    }
}

/// The request line and headers of a completion request (without `Content-Length`).
fn request_head(w: &mut Vec<u8>, target: &Target, session: Option<u32>) {
    let line = |w: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        w.extend_from_slice(name);
        w.extend_from_slice(b": ");
        w.extend_from_slice(value);
        w.extend_from_slice(b"\r\n");
    };
    w.extend_from_slice(b"POST ");
    w.extend_from_slice(target.path.as_bytes());
    w.extend_from_slice(b" HTTP/1.1\r\n");
    // The workload's headers may replace Host and Content-Type; the session header replaces a
    // workload header of its name; Content-Length is always the body's.
    let session = match (session, &target.sessions) {
        (Some(n), Some((name, values))) => values.get(n as usize).map(|v| (name, v)),
        _ => None,
    };
    if !target.headers.contains_key(hyper::header::HOST) {
        line(w, b"host", target.authority.as_bytes());
    }
    if !target.headers.contains_key(hyper::header::CONTENT_TYPE) {
        line(w, b"content-type", b"application/json");
    }
    for (k, v) in &target.headers {
        if k != hyper::header::CONTENT_LENGTH && session.is_none_or(|(name, _)| name != k) {
            line(w, k.as_str().as_bytes(), v.as_bytes());
        }
    }
    if let Some((name, v)) = session {
        line(w, name.as_str().as_bytes(), v.as_bytes());
    }
}

fn finish_whole(body: &[u8], rec: &mut Record) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        rec.fail(ErrorKind::Malformed, "the response body is not JSON".into());
        return;
    };
    let usage = |k: &str| v.pointer(&format!("/usage/{k}")).and_then(|x| x.as_u64()).map(|x| x as u32);
    rec.usage_prompt = usage("prompt_tokens");
    rec.usage_completion = usage("completion_tokens");
    rec.chunks = u32::from(v.get("choices").and_then(|c| c.as_array()).is_some_and(|c| !c.is_empty()));
    rec.first_ns = Some(rec.end_ns);
    rec.last_ns = Some(rec.end_ns);
    if rec.chunks == 0 {
        rec.fail(ErrorKind::Empty, "the response has no choices".into());
    }
}

/// Incremental SSE reader. Events are split on blank lines; a `data:` payload counts as a
/// content chunk when its `choices` array is non-empty (vllm bench's rule), usage is read from
/// the `usage` object, `[DONE]` ends the stream, an `error` object is an in-stream error.
#[derive(Default)]
pub(crate) struct SseScan {
    carry: Vec<u8>,
    done: bool,
    error: Option<String>,
}

impl SseScan {
    /// Feeds one body frame that arrived at `now` (ns).
    pub(crate) fn feed(&mut self, data: &[u8], now: u64, rec: &mut Record) {
        if self.carry.is_empty() {
            let used = self.events(data, now, rec);
            self.carry.extend_from_slice(&data[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.carry);
            buf.extend_from_slice(data);
            let used = self.events(&buf, now, rec);
            buf.drain(..used);
            self.carry = buf;
        }
    }

    /// Handles every complete event in `buf`; returns the bytes consumed.
    fn events(&mut self, buf: &[u8], now: u64, rec: &mut Record) -> usize {
        let mut start = 0;
        while let Some(rel) = find_blank_line(&buf[start..]) {
            let (event, sep) = rel;
            self.event(&buf[start..start + event], now, rec);
            start += event + sep;
        }
        start
    }

    fn event(&mut self, ev: &[u8], now: u64, rec: &mut Record) {
        let mut rest = Some(ev);
        while let Some(text) = rest {
            let line = match memchr::memchr(b'\n', text) {
                Some(i) => {
                    rest = Some(&text[i + 1..]);
                    &text[..i]
                }
                None => {
                    rest = None;
                    text
                }
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(payload) = line.strip_prefix(b"data:") else { continue };
            let payload = payload.strip_prefix(b" ").unwrap_or(payload);
            if payload == b"[DONE]" {
                self.done = true;
                continue;
            }
            let keys = &*KEYS;
            let choices = keys.choices.find(payload);
            // An error object has no `choices`; only then is it looked for.
            if choices.is_none()
                && (payload.starts_with(b"{\"error\"") || keys.object_error.find(payload).is_some())
            {
                self.error = Some(String::from_utf8_lossy(payload).chars().take(300).collect());
                continue;
            }
            if let Some(i) = choices {
                let rest = skip_ws_colon(&payload[i + 9..]);
                if rest.first() == Some(&b'[') && skip_ws(&rest[1..]).first().is_some_and(|b| *b != b']') {
                    rec.chunk(now);
                }
            }
            if let Some(i) = keys.usage.find(payload) {
                let rest = skip_ws_colon(&payload[i + 7..]);
                if rest.first() == Some(&b'{') {
                    if let Some(n) = number_after(rest, b"\"prompt_tokens\"") {
                        rec.usage_prompt = Some(n);
                    }
                    if let Some(n) = number_after(rest, b"\"completion_tokens\"") {
                        rec.usage_completion = Some(n);
                    }
                }
            }
        }
    }

    /// Classifies the finished stream.
    pub(crate) fn finish(self, rec: &mut Record) {
        if let Some(e) = self.error {
            rec.fail(ErrorKind::StreamError, e);
        } else if !self.carry.iter().all(u8::is_ascii_whitespace) || !self.done {
            rec.fail(ErrorKind::Malformed, "the stream ended without `data: [DONE]`".into());
        } else if rec.chunks == 0 {
            rec.fail(ErrorKind::Empty, "the stream carried no content chunk".into());
        }
    }
}

/// Position and separator length of the first blank line (`\n\n` or `\r\n\r\n`).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    for at in memchr::memchr_iter(b'\n', buf) {
        match buf.get(at + 1) {
            Some(b'\n') => return Some((at, 2)),
            Some(b'\r') if buf.get(at + 2) == Some(&b'\n') => return Some((at, 3)),
            _ => {}
        }
    }
    None
}

/// The keys the scanner looks for, each searched with a prebuilt (vectorised) finder.
struct Keys {
    choices: memchr::memmem::Finder<'static>,
    usage: memchr::memmem::Finder<'static>,
    object_error: memchr::memmem::Finder<'static>,
}

static KEYS: std::sync::LazyLock<Keys> = std::sync::LazyLock::new(|| Keys {
    choices: memchr::memmem::Finder::new(b"\"choices\""),
    usage: memchr::memmem::Finder::new(b"\"usage\""),
    object_error: memchr::memmem::Finder::new(b"\"object\":\"error\""),
});

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

fn skip_ws_colon(s: &[u8]) -> &[u8] {
    let s = skip_ws(s);
    skip_ws(s.strip_prefix(b":").unwrap_or(s))
}

fn number_after(s: &[u8], key: &[u8]) -> Option<u32> {
    let i = find(s, key)?;
    let rest = skip_ws_colon(&s[i + key.len()..]);
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    fn scan(frames: &[&str]) -> Record {
        let mut rec = Record::new(1, 0, false, 0, 4, 8);
        let mut s = SseScan::default();
        for (i, f) in frames.iter().enumerate() {
            s.feed(f.as_bytes(), (i as u64 + 1) * 1000, &mut rec);
        }
        s.finish(&mut rec);
        rec
    }

    #[test]
    fn counts_chunks_reads_usage_and_handles_split_frames() {
        let r = scan(&[
            "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choi",
            "ces\": [ {\"text\":\"b\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
        ]);
        assert_eq!(r.error_kind, None, "{:?}", r.error);
        assert_eq!(r.chunks, 2);
        assert_eq!((r.first_ns, r.last_ns), (Some(1000), Some(2000)));
        assert_eq!(r.itl_ns, vec![1000]);
        assert_eq!((r.usage_prompt, r.usage_completion), (Some(12), Some(2)));
    }

    #[test]
    fn crlf_events_and_comments() {
        let r =
            scan(&[": keep-alive\r\n\r\ndata: {\"choices\":[{\"delta\":{}}]}\r\n\r\ndata: [DONE]\r\n\r\n"]);
        assert_eq!((r.chunks, r.error_kind), (1, None));
    }

    /// A server that answers one streamed request per connection, then either closes at once
    /// (`close_after_answer`) or waits for the next request and closes without answering it.
    async fn one_answer_per_connection(close_after_answer: bool) -> (std::net::SocketAddr, Arc<AtomicU32>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU32::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = s.read(&mut buf).await;
                    let event = "data: {\"choices\":[{\"text\":\"a\"}]}\n\n";
                    let done = "data: [DONE]\n\n";
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n{:x}\r\n{done}\r\n0\r\n\r\n",
                        event.len(),
                        done.len()
                    );
                    s.write_all(answer.as_bytes()).await.unwrap();
                    if !close_after_answer {
                        let _ = s.read(&mut buf).await;
                    }
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_closed_is_replaced_and_no_request_fails() {
        for close_after_answer in [true, false] {
            let (addr, accepted) = one_answer_per_connection(close_after_answer).await;
            let target = Target {
                addr,
                authority: HeaderValue::from_static("localhost"),
                path: "/v1/completions".into(),
                headers: HeaderMap::new(),
                stream: true,
                tls: None,
                sessions: None,
            };
            let mut conn = None;
            for i in 0..3 {
                let mut rec = Record::new(1, i, false, 0, 4, 8);
                let body = Bytes::from_static(b"{}");
                send(&mut conn, &target, body, None, Instant::now(), &mut rec).await;
                assert_eq!((rec.error_kind, rec.chunks), (None, 1), "request {i}: {:?}", rec.error);
            }
            assert_eq!(accepted.load(Ordering::SeqCst), 3);
        }
    }

    #[test]
    fn classifies_broken_streams() {
        assert_eq!(
            scan(&["data: {\"choices\":[{\"text\":\"a\"}]}\n\n"]).error_kind,
            Some(ErrorKind::Malformed)
        );
        assert_eq!(scan(&["data: [DONE]\n\n"]).error_kind, Some(ErrorKind::Empty));
        let r = scan(&[
            "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n",
        ]);
        assert_eq!(r.error_kind, Some(ErrorKind::StreamError));
        assert!(r.error.unwrap().contains("boom"));
    }
}
