//! The hot path: one HTTP/1.1 keep-alive connection per in-flight request slot, and a scanner
//! that reads the SSE stream without parsing JSON or copying bytes.
//!
//! Per request: the pre-rendered body is a reference-counted clone, timestamps come from one
//! monotonic clock (nanoseconds since the run's start), chunk gaps go into a vector sized for
//! the expected output once. Nothing here takes a lock.

use std::{net::SocketAddr, time::Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, client::conn::http1::SendRequest, header::HeaderValue};

use super::record::{ErrorKind, Record};

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

/// A kept-alive connection.
pub(crate) struct Conn(SendRequest<Full<Bytes>>);

impl Conn {
    /// Sends one request and returns the response head (body still streaming).
    pub(crate) async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        self.0.ready().await?;
        self.0.send_request(req).await
    }
}

/// Opens a connection to the target (TLS for `https://`).
pub(crate) async fn connect(target: &Target) -> std::io::Result<Conn> {
    crate::net::open(target.addr, target.tls.as_ref()).await.map(Conn)
}

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
    if conn.as_ref().is_none_or(|c| c.0.is_closed()) {
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
    if c.0.ready().await.is_err() {
        *conn = None;
        return Box::pin(send(conn, target, body, session, t0, rec)).await;
    }
    let mut req =
        Request::post(target.path.as_str()).body(Full::new(body)).expect("static request parts are valid");
    let h = req.headers_mut();
    h.insert(hyper::header::HOST, target.authority.clone());
    h.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in &target.headers {
        h.insert(k, v.clone());
    }
    if let (Some(n), Some((name, values))) = (session, &target.sessions)
        && let Some(v) = values.get(n as usize)
    {
        h.insert(name, v.clone());
    }
    let sent = Instant::now();
    rec.sent_ns = ns(sent);
    let resp = match c.0.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            rec.end_ns = ns(Instant::now());
            rec.fail(ErrorKind::Connect, e.to_string());
            *conn = None;
            return;
        }
    };
    rec.status = resp.status().as_u16();
    if rec.status != 200 {
        rec.retry_after_s = resp
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
    }
    let mut body = resp.into_body();
    let mut scan = SseScan::default();
    let mut whole = Vec::new();
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                let now = ns(Instant::now());
                if let Ok(data) = frame.into_data() {
                    if target.stream && rec.status == 200 {
                        scan.feed(&data, now, rec);
                    } else {
                        whole.extend_from_slice(&data);
                    }
                }
            }
            Some(Err(e)) => {
                rec.end_ns = ns(Instant::now());
                rec.fail(ErrorKind::Aborted, format!("the response was cut off: {e}"));
                *conn = None;
                return;
            }
        }
    }
    rec.end_ns = ns(Instant::now());
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
        for line in ev.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(payload) = line.strip_prefix(b"data:") else { continue };
            let payload = payload.strip_prefix(b" ").unwrap_or(payload);
            if payload == b"[DONE]" {
                self.done = true;
                continue;
            }
            if payload.starts_with(b"{\"error\"") || find(payload, b"\"object\":\"error\"").is_some() {
                self.error = Some(String::from_utf8_lossy(payload).chars().take(300).collect());
                continue;
            }
            if let Some(i) = find(payload, b"\"choices\"") {
                let rest = skip_ws_colon(&payload[i + 9..]);
                if rest.first() == Some(&b'[') && skip_ws(&rest[1..]).first().is_some_and(|b| *b != b']') {
                    rec.chunk(now);
                }
            }
            if let Some(i) = find(payload, b"\"usage\"") {
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
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|b| *b == b'\n') {
        let at = i + p;
        match buf.get(at + 1) {
            Some(b'\n') => return Some((at, 2)),
            Some(b'\r') if buf.get(at + 2) == Some(&b'\n') => return Some((at, 3)),
            _ => i = at + 1,
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut i = 0;
    while let Some(p) = hay[i..].iter().position(|b| *b == first) {
        let at = i + p;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        i = at + 1;
    }
    None
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
