//! A lean HTTP/1.1 client connection for the load generator's hot path.
//!
//! The task that sends a request reads its own socket, decodes the body in place (chunked,
//! sized, or to the end of the connection) and hands each piece of it to the caller, stamped
//! with the time of the read that brought it. hyper's client runs a connection task beside the
//! reader and passes every body chunk through a channel, a wake-up and a hand-off per chunk;
//! against a server that writes one SSE event per token that was most of the client's time.
//! Only the load generator's requests go through here; discovery, the smoke test and the
//! scrapes keep hyper.

use std::{io, net::SocketAddr, time::Instant};

use bytes::{Buf, BytesMut};
use futures::FutureExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::net::{Stream, Tls};

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;
/// The read buffer's first size, and the most it grows to: a stream of one small event per
/// read needs little, a whole answer at once more (the buffer doubles when a read fills it).
const READ_FIRST: usize = 4 * 1024;
const READ_MOST: usize = 64 * 1024;

/// Why a response could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The connection ended; `answered`: after some of the response had arrived.
    #[error("the server closed the connection{}", if *.answered { " mid-response" } else { " before answering" })]
    Closed { answered: bool },
    #[error("the response is not valid HTTP/1.1: {0}")]
    Malformed(String),
}

impl ReadError {
    /// The request can be sent again on a new connection: a kept-alive connection that the
    /// server had closed, found out before any byte of the answer came.
    pub(crate) fn nothing_received(&self) -> bool {
        match self {
            ReadError::Closed { answered } => !answered,
            ReadError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted
            ),
            ReadError::Malformed(_) => false,
        }
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    ToEof,
}

/// A response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: u16,
    pub retry_after_s: Option<u32>,
    pub body: BodyKind,
    /// The connection can carry another request after this response.
    pub keep_alive: bool,
}

/// One kept-alive connection.
pub(crate) struct Conn {
    io: Stream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    /// When the last read returned.
    read_at: Instant,
    /// Spare room asked for before each read.
    read_size: usize,
    /// Bytes of the current response seen so far (to tell a stale connection from a cut one).
    answered: bool,
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr, tls: Option<&Tls>) -> io::Result<Conn> {
        Ok(Conn::over(crate::net::connect(addr, tls).await?))
    }

    fn over(io: Stream) -> Conn {
        Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_FIRST),
            wbuf: Vec::with_capacity(1024),
            read_at: Instant::now(),
            read_size: READ_FIRST,
            answered: false,
        }
    }

    /// True when an idle connection can no longer be used: the server closed it (or sent bytes
    /// nobody asked for). Does not wait.
    pub(crate) fn closed_while_idle(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return true;
        }
        self.rbuf.reserve(self.read_size);
        // Pending: nothing to read, the connection is open. A TLS stream that only received
        // session tickets also stays pending.
        self.io.read_buf(&mut self.rbuf).now_or_never().is_some()
    }

    /// Writes one request: `head` appends the request line and headers (without the blank
    /// line), then `Content-Length` and the body follow.
    pub(crate) async fn write_request(
        &mut self,
        head: impl FnOnce(&mut Vec<u8>),
        body: &[u8],
    ) -> io::Result<()> {
        self.wbuf.clear();
        head(&mut self.wbuf);
        self.wbuf.extend_from_slice(b"content-length: ");
        self.wbuf.extend_from_slice(body.len().to_string().as_bytes());
        self.wbuf.extend_from_slice(b"\r\n\r\n");
        self.wbuf.extend_from_slice(body);
        self.answered = false;
        self.io.write_all(&self.wbuf).await?;
        self.io.flush().await
    }

    async fn read_more(&mut self) -> Result<(), ReadError> {
        self.rbuf.reserve(self.read_size);
        let room = self.rbuf.capacity() - self.rbuf.len();
        let n = self.io.read_buf(&mut self.rbuf).await?;
        self.read_at = Instant::now();
        if n == room {
            self.read_size = (self.read_size * 2).min(READ_MOST);
        }
        if n == 0 {
            return Err(ReadError::Closed { answered: self.answered });
        }
        self.answered = true;
        Ok(())
    }

    /// Reads the response head (skipping interim `1xx` responses).
    pub(crate) async fn read_head(&mut self) -> Result<Head, ReadError> {
        loop {
            if !self.rbuf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; 100];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.rbuf) {
                    Ok(httparse::Status::Complete(n)) => {
                        let head = head_of(&resp)?;
                        self.rbuf.advance(n);
                        if (100..200).contains(&head.status) && head.status != 101 {
                            continue;
                        }
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) if self.rbuf.len() > MAX_HEAD => {
                        return Err(ReadError::Malformed(format!(
                            "a response head larger than {MAX_HEAD} bytes"
                        )));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(ReadError::Malformed(e.to_string())),
                }
            }
            self.read_more().await?;
        }
    }

    /// Reads the body of a response with head `kind`, handing each piece of it to `on_data`
    /// with the instant of the read that brought it.
    pub(crate) async fn read_body(
        &mut self,
        kind: BodyKind,
        mut on_data: impl FnMut(&[u8], Instant),
    ) -> Result<(), ReadError> {
        match kind {
            BodyKind::Empty => Ok(()),
            BodyKind::Length(n) => self.read_exactly(n, &mut on_data).await,
            BodyKind::ToEof => loop {
                if !self.rbuf.is_empty() {
                    on_data(&self.rbuf, self.read_at);
                    self.rbuf.clear();
                }
                match self.read_more().await {
                    Ok(()) => {}
                    Err(ReadError::Closed { .. }) => return Ok(()),
                    Err(e) => return Err(e),
                }
            },
            BodyKind::Chunked => loop {
                let line = self.line().await?;
                let size = chunk_size(&self.rbuf[..line])?;
                self.rbuf.advance(line);
                if size == 0 {
                    // Trailer fields, up to the blank line.
                    loop {
                        let line = self.line().await?;
                        let blank = matches!(&self.rbuf[..line], b"\r\n" | b"\n");
                        self.rbuf.advance(line);
                        if blank {
                            return Ok(());
                        }
                    }
                }
                self.read_exactly(size, &mut on_data).await?;
                let line = self.line().await?;
                if !matches!(&self.rbuf[..line], b"\r\n" | b"\n") {
                    return Err(ReadError::Malformed("a chunk longer than its size".into()));
                }
                self.rbuf.advance(line);
            },
        }
    }

    async fn read_exactly(
        &mut self,
        mut n: u64,
        on_data: &mut impl FnMut(&[u8], Instant),
    ) -> Result<(), ReadError> {
        while n > 0 {
            if self.rbuf.is_empty() {
                self.read_more().await?;
            }
            let take = self.rbuf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            on_data(&self.rbuf[..take], self.read_at);
            self.rbuf.advance(take);
            n -= take as u64;
        }
        Ok(())
    }

    /// The length of the next line in the buffer, its `\n` included (reading as needed).
    async fn line(&mut self) -> Result<usize, ReadError> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.rbuf) {
                return Ok(i + 1);
            }
            if self.rbuf.len() > MAX_LINE {
                return Err(ReadError::Malformed(format!("a chunk line longer than {MAX_LINE} bytes")));
            }
            self.read_more().await?;
        }
    }
}

/// The parts of a parsed head the client needs (RFC 9112 §6.3 for the body's length).
fn head_of(resp: &httparse::Response<'_, '_>) -> Result<Head, ReadError> {
    let status = resp.code.unwrap_or(0);
    let mut length: Option<u64> = None;
    let (mut chunked, mut close, mut keep) = (false, false, false);
    let mut retry_after_s = None;
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let bad = || ReadError::Malformed(format!("content-length `{value}`"));
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let n: u64 = value.parse().map_err(|_| bad())?;
            if length.is_some_and(|l| l != n) {
                return Err(ReadError::Malformed("two different content-lengths".into()));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked framing is read; `identity` is no coding; any other (gzip, ...) is not
            // decoded here, so the response is refused rather than scanned as garbled text.
            for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if coding.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                } else if !coding.eq_ignore_ascii_case("identity") {
                    return Err(ReadError::Malformed(format!("transfer-coding `{coding}` is not supported")));
                }
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after_s = value.parse().ok();
        }
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyKind::Empty
    } else if chunked {
        BodyKind::Chunked
    } else if let Some(n) = length {
        if n == 0 { BodyKind::Empty } else { BodyKind::Length(n) }
    } else {
        BodyKind::ToEof
    };
    let http11 = resp.version == Some(1);
    let keep_alive = body != BodyKind::ToEof && !close && (http11 || keep);
    Ok(Head { status, retry_after_s, body, keep_alive })
}

/// The size on a chunk-size line (`1a;ext=1\r\n`).
fn chunk_size(line: &[u8]) -> Result<u64, ReadError> {
    let bad = || ReadError::Malformed(format!("chunk size `{}`", String::from_utf8_lossy(line).trim_end()));
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(bad());
    }
    let rest = &line[digits..];
    if !matches!(rest.first(), Some(b'\r' | b'\n' | b';' | b' ' | b'\t')) {
        return Err(bad());
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| bad())?;
    u64::from_str_radix(text, 16).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A connection over one end of a socket pair whose other end writes `wire` in pieces.
    async fn conn_reading(wire: Vec<u8>, cut: Vec<usize>) -> Conn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut at = 0;
            for c in cut.into_iter().chain([wire.len()]) {
                let c = c.clamp(at, wire.len());
                s.write_all(&wire[at..c]).await.unwrap();
                s.flush().await.unwrap();
                at = c;
                tokio::task::yield_now().await;
            }
            s.shutdown().await.ok();
            // Hold the socket until the client is done reading.
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        Conn::open(addr, None).await.unwrap()
    }

    async fn read_all(c: &mut Conn) -> Result<(Head, Vec<u8>), ReadError> {
        let head = c.read_head().await?;
        let mut body = Vec::new();
        c.read_body(head.body, |d, _| body.extend_from_slice(d)).await?;
        Ok((head, body))
    }

    fn chunked(payload: &[u8], rng: &mut Rng) -> Vec<u8> {
        let mut out =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        let mut at = 0;
        while at < payload.len() {
            let n = (1 + rng.below(40) as usize).min(payload.len() - at);
            let ext = if rng.chance(0.2) { ";x=y" } else { "" };
            out.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
            out.extend_from_slice(&payload[at..at + n]);
            out.extend_from_slice(b"\r\n");
            at += n;
        }
        out.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
        out
    }

    #[tokio::test]
    async fn any_split_of_a_chunked_response_reads_the_same_body() {
        let mut rng = Rng::new(7);
        for case in 0..40 {
            let len = rng.below(3000) as usize;
            let payload: Vec<u8> = (0..len).map(|_| b'a' + rng.below(26) as u8).collect();
            let wire = chunked(&payload, &mut rng);
            let cuts: Vec<usize> =
                (0..rng.below(12)).map(|_| rng.below(wire.len() as u64 + 1) as usize).collect();
            let mut sorted = cuts.clone();
            sorted.sort_unstable();
            let mut c = conn_reading(wire, sorted).await;
            let (head, body) = read_all(&mut c).await.unwrap_or_else(|e| panic!("case {case}: {e}"));
            assert_eq!(head.status, 200);
            assert!(head.keep_alive, "case {case}");
            assert_eq!(body, payload, "case {case}");
        }
    }

    #[tokio::test]
    async fn sized_eof_and_interim_responses() {
        let mut c = conn_reading(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            vec![10, 30],
        )
        .await;
        let (head, body) = read_all(&mut c).await.unwrap();
        assert_eq!((head.status, head.retry_after_s, body.as_slice()), (429, Some(3), &b"hello"[..]));
        assert!(head.keep_alive);

        let mut c = conn_reading(b"HTTP/1.0 200 OK\r\n\r\nuntil the end".to_vec(), vec![3]).await;
        let (head, body) = read_all(&mut c).await.unwrap();
        assert_eq!((head.body, body.as_slice()), (BodyKind::ToEof, &b"until the end"[..]));
        assert!(!head.keep_alive);

        // `identity` is no coding: the length frames the body.
        let mut c = conn_reading(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            vec![],
        )
        .await;
        assert_eq!(read_all(&mut c).await.unwrap().0.body, BodyKind::Length(2));
        let mut c = conn_reading(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            vec![],
        )
        .await;
        assert!(!read_all(&mut c).await.unwrap().0.keep_alive);
    }

    #[tokio::test]
    async fn cut_and_broken_responses_are_errors_not_bodies() {
        // Cut mid-body: the caller must learn it was cut, after some of the answer.
        let mut c = conn_reading(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(), vec![]).await;
        let err = read_all(&mut c).await.unwrap_err();
        assert!(matches!(err, ReadError::Closed { answered: true }), "{err:?}");
        assert!(!err.nothing_received());
        // Closed before any byte: the request may be sent again.
        let mut c = conn_reading(Vec::new(), vec![]).await;
        let err = read_all(&mut c).await.unwrap_err();
        assert!(err.nothing_received(), "{err:?}");
        for wire in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\na",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"SMTP ready\r\n\r\n",
        ] {
            let mut c = conn_reading(wire.to_vec(), vec![]).await;
            let err = read_all(&mut c).await.unwrap_err();
            assert!(matches!(err, ReadError::Malformed(_)), "{:?}: {err:?}", String::from_utf8_lossy(wire));
        }
        // A head that never ends is refused, not buffered without bound.
        let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
        wire.extend(std::iter::repeat_n(b"x-a: b\r\n", 10_000).flatten());
        let mut c = conn_reading(wire, vec![]).await;
        assert!(matches!(read_all(&mut c).await.unwrap_err(), ReadError::Malformed(_)));
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a\r\n").unwrap(), 26);
        assert_eq!(chunk_size(b"0;name=v\r\n").unwrap(), 0);
        assert_eq!(chunk_size(b"FF \r\n").unwrap(), 255);
        for bad in [&b"\r\n"[..], b"g\r\n", b"1x\r\n", b"1234567890123456\r\n"] {
            assert!(chunk_size(bad).is_err(), "{bad:?}");
        }
    }
}
