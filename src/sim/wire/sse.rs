//! The streaming response body: engine events become SSE frames as the client reads them,
//! with the stream faults (abort, error frame, stall) applied; and the collector of
//! non-streamed responses.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use super::{
    request::{Api, ApiError},
    text::{Chunks, Words},
};
use crate::sim::{
    engine::{Emit, FinishReason},
    metrics::LocalLateness,
    state::Shared,
};

/// Per-request fault decisions, drawn once at arrival.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StreamFaults {
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
pub(crate) struct Aborted;

/// Decrements the in-flight gauge when a response ends, however it ends.
pub(crate) struct InFlight(pub Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A streaming response: turns engine events into SSE frames as the client reads them.
/// Events that queued up while the client was slow are coalesced into one write.
pub(crate) struct SseBody {
    source: Source,
    chunks: Chunks,
    words: Words,
    faults: StreamFaults,
    include_usage: bool,
    continuous_usage: bool,
    legacy_errors: bool,
    /// One token event per body frame (HTTP chunk) instead of coalescing the ready ones.
    event_per_chunk: bool,
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
pub(crate) enum Source {
    /// The engine driver (or an analytic task) sends them.
    Channel(mpsc::UnboundedReceiver<Emit>),
    /// The body paces itself (streamed analytic requests).
    Paced(Box<crate::sim::analytic::Pacer>),
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
    pub(crate) fn new(
        source: Source,
        chunks: Chunks,
        words: Words,
        faults: StreamFaults,
        include_usage: bool,
        continuous_usage: bool,
        legacy_errors: bool,
        event_per_chunk: bool,
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
            event_per_chunk,
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
                    if !this.on_event(ev, &mut out) || this.event_per_chunk {
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
pub(crate) async fn collect(
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
