//! The HTTP front end: routes, admission-time faults, and the accept loop.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Body, Frame, Incoming},
    header::{self, HeaderValue},
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::mpsc, task::JoinSet};

use super::{
    SimError, analytic,
    config::{DieAfter, Fidelity, MetricsFault, OutputLen, SimConfig, StartupMode},
    driver::{self, Cmd, TokenSink},
    engine::{FinishReason, NewRequest},
    metrics::Metrics,
    state::Shared,
    wire::{self, Aborted, Api, ApiError, Chunks, InFlight, Parsed, Source, SseBody, StreamFaults, Words},
};
use crate::rng::Rng;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A response body: a whole buffer, an SSE stream, or a connection abort.
pub(crate) enum SimBody {
    Full(Option<Bytes>),
    Sse(Box<SseBody>),
    Abort,
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        match self.get_mut() {
            SimBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Sse(s) => Pin::new(s.as_mut()).poll_frame(cx),
            SimBody::Abort => Poll::Ready(Some(Err(Aborted))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SimBody::Full(b) => b.is_none(),
            SimBody::Sse(s) => s.is_end_stream(),
            SimBody::Abort => false,
        }
    }
}

type Resp = Response<SimBody>;

fn respond(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(SimBody::Full(Some(body.into())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: u16, v: &Value) -> Resp {
    respond(status, "application/json", v.to_string())
}

fn error_response(err: &ApiError, cfg: &SimConfig) -> Resp {
    json_response(err.status, &err.body(cfg.legacy_error_shape))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Wall-clock length of a simulated duration (`time_scale` 0: taken as wall-clock).
fn wall(cfg: &SimConfig, simulated: f64) -> Duration {
    let s = if cfg.time_scale > 0.0 { simulated * cfg.time_scale } else { simulated };
    Duration::from_secs_f64(s.max(0.0))
}

struct App {
    shared: Arc<Shared>,
    pool: Arc<analytic::Pool>,
    pod: Option<HeaderValue>,
    namespace: Option<HeaderValue>,
    port: HeaderValue,
}

impl App {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Resp, Infallible> {
        let arrived = Instant::now();
        let request_id = req.headers().get("x-request-id").cloned().unwrap_or_else(|| {
            let n = self.shared.requests.load(Ordering::Relaxed);
            HeaderValue::from_str(&format!("sim-{:016x}", Rng::derive(self.shared.seed, n ^ 0x1D).next_u64()))
                .unwrap_or(HeaderValue::from_static("sim"))
        });
        let mut resp = self.route(req, arrived).await;
        let h = resp.headers_mut();
        h.insert("x-request-id", request_id);
        if let Some(p) = &self.pod {
            h.insert("x-inference-pod", p.clone());
        }
        if let Some(n) = &self.namespace {
            h.insert("x-inference-namespace", n.clone());
        }
        h.insert("x-inference-port", self.port.clone());
        Ok(resp)
    }

    async fn route(&self, req: Request<Incoming>, arrived: Instant) -> Resp {
        let cfg = self.shared.config();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        match (method, path.as_str()) {
            (Method::POST, "/v1/completions") => self.infer(Api::Completions, req, arrived).await,
            (Method::POST, "/v1/chat/completions") => self.infer(Api::Chat, req, arrived).await,
            (Method::GET, "/health") | (Method::GET | Method::POST, "/ping") => {
                if self.shared.dead.load(Ordering::Acquire) || self.shared.loading() {
                    respond(503, "application/json", "")
                } else {
                    respond(200, "application/json", "")
                }
            }
            (Method::GET, "/v1/models") => json_response(200, &self.models(&cfg)),
            (Method::GET, "/version") => json_response(
                200,
                &json!({ "version": concat!("benchflow-sim ", env!("CARGO_PKG_VERSION")) }),
            ),
            (Method::GET, "/load") => {
                json_response(200, &json!({ "server_load": self.shared.in_flight.load(Ordering::Relaxed) }))
            }
            (Method::GET, "/metrics") => self.metrics(&cfg).await,
            (Method::POST, "/tokenize") => self.tokenize(req, &cfg).await,
            (Method::POST, "/detokenize") => self.detokenize(req, &cfg).await,
            (Method::GET, "/admin/config") => {
                json_response(200, &serde_json::to_value(&*cfg).unwrap_or_default())
            }
            (Method::POST, "/admin/config") => self.update_config(req, &cfg).await,
            // vLLM's: drop the cached prefixes (between the points of an experiment), keep the
            // counters.
            (Method::POST, "/reset_prefix_cache") => {
                let _ = self.shared.engine.send(Cmd::Reset);
                respond(200, "application/json", "")
            }
            (Method::POST, "/admin/reset") => {
                {
                    let mut m = self.shared.metrics.lock().expect("metrics lock");
                    let blocks = m.num_gpu_blocks;
                    *m = Metrics::new(cfg.max_model_len);
                    m.num_gpu_blocks = blocks;
                }
                *self.shared.stale_metrics.lock().expect("stale lock") = None;
                let _ = self.shared.engine.send(Cmd::Reset);
                json_response(200, &json!({ "reset": true }))
            }
            (
                _,
                "/v1/completions"
                | "/v1/chat/completions"
                | "/health"
                | "/v1/models"
                | "/version"
                | "/load"
                | "/metrics"
                | "/tokenize"
                | "/detokenize"
                | "/admin/config"
                | "/admin/reset"
                | "/reset_prefix_cache",
            ) => json_response(405, &json!({ "detail": "Method Not Allowed" })),
            _ => json_response(404, &json!({ "detail": "Not Found" })),
        }
    }

    fn models(&self, cfg: &SimConfig) -> Value {
        let created = unix_now();
        let data: Vec<Value> = cfg
            .model_names()
            .iter()
            .map(|name| {
                json!({
                    "id": name, "object": "model", "created": created, "owned_by": "vllm",
                    "root": cfg.model, "parent": null, "max_model_len": cfg.max_model_len,
                    "permission": [],
                })
            })
            .collect();
        json!({ "object": "list", "data": data })
    }

    async fn metrics(&self, cfg: &SimConfig) -> Resp {
        let render = || {
            self.shared.metrics.lock().expect("metrics lock").render(
                &cfg.model,
                cfg.block_size,
                cfg.gpu_memory_utilization,
                cfg.enable_prefix_caching,
                cfg.legacy_metric_names,
            )
        };
        const PROM: &str = "text/plain; version=0.0.4; charset=utf-8";
        match cfg.metrics_fault {
            MetricsFault::None => {
                *self.shared.stale_metrics.lock().expect("stale lock") = None;
                respond(200, PROM, render())
            }
            MetricsFault::Error500 => {
                self.shared.fault("metrics_500");
                respond(500, "text/plain", "Internal Server Error")
            }
            MetricsFault::Timeout => {
                self.shared.fault("metrics_timeout");
                std::future::pending::<Resp>().await
            }
            MetricsFault::Stale => {
                let mut stale = self.shared.stale_metrics.lock().expect("stale lock");
                let text = stale.get_or_insert_with(render).clone();
                respond(200, PROM, text)
            }
        }
    }

    async fn tokenize(&self, req: Request<Incoming>, cfg: &SimConfig) -> Resp {
        let body = match wire::read_body(req.into_body(), MAX_BODY).await {
            Ok(b) => b,
            Err(e) => return error_response(&e, cfg),
        };
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let text = v.get("prompt").and_then(Value::as_str).unwrap_or_default();
        let n = super::tokenizer::count(text, cfg.tokenizer);
        json_response(
            200,
            &json!({ "count": n, "max_model_len": cfg.max_model_len, "tokens": (0..n).collect::<Vec<u32>>() }),
        )
    }

    async fn detokenize(&self, req: Request<Incoming>, cfg: &SimConfig) -> Resp {
        let body = match wire::read_body(req.into_body(), MAX_BODY).await {
            Ok(b) => b,
            Err(e) => return error_response(&e, cfg),
        };
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let ids = v.get("tokens").and_then(Value::as_array).cloned().unwrap_or_default();
        let lex = super::tokenizer::LEXICON;
        let text: String =
            ids.iter().filter_map(Value::as_u64).map(|i| lex[(i % lex.len() as u64) as usize]).collect();
        json_response(200, &json!({ "prompt": text }))
    }

    async fn update_config(&self, req: Request<Incoming>, cfg: &SimConfig) -> Resp {
        let body = match wire::read_body(req.into_body(), MAX_BODY).await {
            Ok(b) => b,
            Err(e) => return error_response(&e, cfg),
        };
        let patch = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return error_response(
                    &ApiError::bad_request("/admin/config takes a JSON object of knobs"),
                    cfg,
                );
            }
        };
        match cfg.apply_patch(&patch, "/admin/config") {
            Ok(new) => {
                let value = serde_json::to_value(&new).unwrap_or_default();
                if let Some(DieAfter::Time(_)) = new.die_after {
                    schedule_death(&self.shared, &new);
                }
                self.shared.set_config(new);
                json_response(200, &value)
            }
            Err(e) => error_response(&ApiError::bad_request(e.to_string()), cfg),
        }
    }

    /// A completion or chat request: refused at admission (still loading, a dead engine, an
    /// injected error, too large, a full queue), or handed to the engine and answered, streamed
    /// or whole.
    async fn infer(&self, api: Api, req: Request<Incoming>, arrived: Instant) -> Resp {
        let shared = &self.shared;
        let cfg = shared.config();
        if shared.loading() {
            let loading = api_error(503, "ServiceUnavailableError", "the model is still loading".into());
            return error_response(&loading, &cfg);
        }
        let forced = forced_status(&req);
        let body = match wire::read_body(req.into_body(), MAX_BODY).await {
            Ok(b) => b,
            Err(e) => return error_response(&e, &cfg),
        };
        let id = shared.requests.fetch_add(1, Ordering::Relaxed) + 1;
        shared.check_death(&cfg, id - 1);
        let mut rng = Rng::derive(shared.seed, id);
        if let Some(e) = injected_error(shared, &cfg, forced, &mut rng) {
            return error_response(&e, &cfg);
        }
        let mut parsed = match wire::parse(api, &body, &cfg) {
            Ok(p) => p,
            Err(e) => return error_response(&e, &cfg),
        };
        if let Err(e) = admit(shared, &cfg, &parsed) {
            return error_response(&e, &cfg);
        }
        let output_len = output_len(&cfg, &parsed, &mut rng);
        let faults = stream_faults(shared, &cfg, &mut rng);

        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight(Arc::clone(shared));
        let prefix = if api == Api::Chat { "chatcmpl" } else { "cmpl" };
        let resp_id = format!("{prefix}-{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        let mut words = Words::new(shared.seed, id, std::mem::take(&mut parsed.echo));
        let hashes = std::mem::take(&mut parsed.hashes);
        let reply = Reply {
            api,
            id: resp_id,
            parsed: &parsed,
            faults,
            legacy_errors: cfg.legacy_error_shape,
            event_per_chunk: cfg.event_per_chunk,
        };
        if parsed.stream && cfg.fidelity == Fidelity::Analytic {
            let sizes = (parsed.prompt_tokens, parsed.max_tokens, output_len);
            let pacer = analytic::Pacer::new(Arc::clone(shared), Arc::clone(&self.pool), sizes, arrived, id);
            return reply.stream(Source::Paced(Box::new(pacer)), words, in_flight);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let new = NewRequest {
            sink: TokenSink(tx),
            prompt_len: parsed.prompt_tokens,
            max_tokens: parsed.max_tokens,
            output_len,
            hashes,
            arrival: 0.0,
        };
        self.submit(&cfg, new, arrived, id);
        if parsed.stream {
            return reply.stream(Source::Channel(rx), words, in_flight);
        }
        if faults.abort_after.is_some() {
            return Response::new(SimBody::Abort);
        }
        let (text, finish, n) = match wire::collect(rx, &mut words).await {
            Ok(v) => v,
            Err(why) => return error_response(&api_error(500, "InternalServerError", why), &cfg),
        };
        drop(in_flight);
        reply.whole(&text, finish, n)
    }

    /// Hands a request to the engine's task, or (analytic fidelity) to a task of its own.
    fn submit(&self, cfg: &SimConfig, new: NewRequest<TokenSink>, arrived: Instant, id: u64) {
        match cfg.fidelity {
            Fidelity::Engine => {
                let _ = self.shared.engine.send(Cmd::Submit(Box::new(new), arrived));
            }
            Fidelity::Analytic => {
                tokio::spawn(analytic::serve(
                    Arc::clone(&self.shared),
                    Arc::clone(&self.pool),
                    new,
                    arrived,
                    id,
                ));
            }
        }
    }
}

/// An API error with no parameter named.
fn api_error(status: u16, kind: &'static str, message: String) -> ApiError {
    ApiError { status, kind, message, param: None }
}

/// The status a request's `x-sim-return-error` (or `x-return-error`) header asks for.
fn forced_status(req: &Request<Incoming>) -> Option<u16> {
    req.headers()
        .get("x-sim-return-error")
        .or_else(|| req.headers().get("x-return-error"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u16>().ok())
}

/// The error decided before the request is parsed, if any: the engine is dead, a header forces
/// one, or `failure_rate` draws one (from the request's own random stream).
fn injected_error(shared: &Shared, cfg: &SimConfig, forced: Option<u16>, rng: &mut Rng) -> Option<ApiError> {
    if shared.dead.load(Ordering::Acquire) {
        return Some(api_error(500, "InternalServerError", "the engine is dead (injected fault)".into()));
    }
    if let Some(status) = forced.filter(|s| (400..600).contains(s)) {
        shared.fault("forced_error");
        return Some(api_error(status, "SimulatedError", format!("error {status} forced by request header")));
    }
    if rng.chance(cfg.failure_rate) {
        let pool = cfg.failure_pool();
        let ft = pool[rng.below(pool.len() as u64) as usize];
        shared.fault(ft.name());
        return Some(api_error(
            ft.status(),
            ft.name(),
            format!("simulated {} error (failure_rate)", ft.name()),
        ));
    }
    None
}

/// Refuses a request the KV cache could never hold, or one the full waiting queue has no room
/// for; otherwise counts it in the queue.
fn admit(shared: &Shared, cfg: &SimConfig, parsed: &Parsed) -> Result<(), ApiError> {
    let kv_tokens = cfg.kv_cache_tokens_total();
    let needed = parsed.prompt_tokens as u64 + parsed.max_tokens as u64;
    if cfg.fidelity == Fidelity::Engine && needed > kv_tokens {
        return Err(ApiError::bad_request(format!(
            "the request needs {needed} KV-cache tokens but the cache holds {kv_tokens}"
        )));
    }
    let before = shared.queued.fetch_add(1, Ordering::AcqRel);
    if cfg.max_waiting > 0 && before >= cfg.max_waiting as usize {
        shared.queued.fetch_sub(1, Ordering::AcqRel);
        shared.fault("queue_full");
        return Err(api_error(
            429,
            "TooManyRequests",
            format!("the waiting queue is full ({} requests)", cfg.max_waiting),
        ));
    }
    Ok(())
}

/// How many tokens the request will generate, by the output-length policy.
fn output_len(cfg: &SimConfig, parsed: &Parsed, rng: &mut Rng) -> u32 {
    match cfg.output_len {
        OutputLen::MaxTokens => parsed.max_tokens,
        OutputLen::Fixed(n) => n.clamp(1, parsed.max_tokens),
        OutputLen::Uniform => rng.range_inclusive(1, parsed.max_tokens as u64) as u32,
    }
}

/// The stream faults drawn for one request: an abort or an error frame, and a stall.
fn stream_faults(shared: &Shared, cfg: &SimConfig, rng: &mut Rng) -> StreamFaults {
    let mut faults = StreamFaults::default();
    if rng.chance(cfg.abort_rate) {
        shared.fault("abort");
        faults.abort_after = Some(cfg.abort_after_tokens.max(1));
    } else if rng.chance(cfg.stream_error_rate) {
        shared.fault("stream_error");
        faults.error_after = Some(cfg.abort_after_tokens.max(1));
    }
    if rng.chance(cfg.stall_rate) {
        shared.fault("stall");
        faults.stall = Some(wall(cfg, cfg.stall_duration.0));
    }
    faults
}

/// What the answer to one admitted request is made of, streamed or whole.
struct Reply<'a> {
    api: Api,
    /// `chatcmpl-…` / `cmpl-…`.
    id: String,
    parsed: &'a Parsed,
    faults: StreamFaults,
    legacy_errors: bool,
    event_per_chunk: bool,
}

impl Reply<'_> {
    /// The tokens from `source` as a server-sent event stream.
    fn stream(&self, source: Source, words: Words, in_flight: InFlight) -> Resp {
        let p = self.parsed;
        let chunks = Chunks::new(self.api, &self.id, unix_now(), &p.model, p.prompt_tokens);
        let body = SseBody::new(
            source,
            chunks,
            words,
            self.faults,
            p.include_usage,
            p.continuous_usage,
            self.legacy_errors,
            self.event_per_chunk,
            in_flight,
        );
        let mut r = Response::new(SimBody::Sse(Box::new(body)));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    }

    /// The whole completion (`n` tokens of `text`) as one JSON body.
    fn whole(&self, text: &str, finish: FinishReason, n: u32) -> Resp {
        let prompt = self.parsed.prompt_tokens;
        let usage = json!({ "prompt_tokens": prompt, "total_tokens": prompt + n, "completion_tokens": n });
        let choice = match self.api {
            Api::Chat => json!({
                "index": 0, "message": { "role": "assistant", "content": text, "tool_calls": [] },
                "logprobs": null, "finish_reason": finish.as_str(), "stop_reason": null,
            }),
            Api::Completions => json!({
                "index": 0, "text": text, "logprobs": null, "finish_reason": finish.as_str(), "stop_reason": null,
            }),
        };
        let object = if self.api == Api::Chat { "chat.completion" } else { "text_completion" };
        json_response(
            200,
            &json!({ "id": self.id, "object": object, "created": unix_now(), "model": self.parsed.model, "choices": [choice], "usage": usage }),
        )
    }
}

fn schedule_death(shared: &Arc<Shared>, cfg: &SimConfig) {
    if let Some(DieAfter::Time(t)) = cfg.die_after {
        let shared = Arc::clone(shared);
        let at = shared.started + wall(cfg, t);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let cfg = shared.config();
            if matches!(cfg.die_after, Some(DieAfter::Time(_))) {
                shared.die(&cfg);
            }
        });
    }
}

fn header_value(s: Option<String>) -> Option<HeaderValue> {
    s.and_then(|s| HeaderValue::from_str(&s).ok())
}

/// A listener on `addr` whose accept queue holds 4,096 connections (as many as the kernel's
/// `somaxconn` allows): a client opening thousands of streams at once is not made to wait
/// for SYN retransmissions (1 s each) while the simulator accepts.
pub(crate) fn listen(addr: SocketAddr) -> Result<TcpListener, SimError> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .map_err(|source| SimError::Bind { addr, source })?;
    socket.set_reuseaddr(true).map_err(|source| SimError::Bind { addr, source })?;
    socket.bind(addr).map_err(|source| SimError::Bind { addr, source })?;
    socket.listen(4096).map_err(|source| SimError::Bind { addr, source })
}

/// Serves the simulator on `listener` until `shutdown` resolves.
///
/// # Errors
///
/// [`SimError::EngineExited`] when the `die_mode: exit` fault fires (the caller should exit
/// non-zero, as a crashed vLLM would), or a bind error after a `startup_mode: refuse` delay.
pub async fn serve(
    cfg: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimError> {
    serve_with(cfg, listener, shutdown, None).await
}

/// `serve`, over TLS when `tls` is given (`benchflow sim --tls-cert --tls-key`).
pub(crate) async fn serve_with(
    cfg: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<(), SimError> {
    let addr = listener.local_addr().map_err(SimError::Io)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::new(cfg.clone(), tx));
    let app = Arc::new(App {
        pool: Arc::new(analytic::Pool::new(&cfg)),
        pod: header_value(cfg.pod_name.clone().or_else(|| std::env::var("POD_NAME").ok())),
        namespace: header_value(cfg.namespace.clone().or_else(|| std::env::var("POD_NAMESPACE").ok())),
        port: HeaderValue::from(addr.port()),
        shared: Arc::clone(&shared),
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(driver::run(Arc::clone(&shared), rx));
    schedule_death(&shared, &cfg);

    tokio::pin!(shutdown);
    let mut listener = Some(listener);
    if cfg.startup_mode == StartupMode::Refuse && cfg.startup_delay.0 > 0.0 {
        drop(listener.take());
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep_until(shared.loaded_at.into()) => {}
        }
        listener = Some(listen(addr)?);
    }
    let listener = listener.expect("listener present");

    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = shared.exit.notified() => break Err(SimError::EngineExited),
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    // Out of file descriptors and the like: keep serving the others.
                    Err(_) => { tokio::time::sleep(Duration::from_millis(5)).await; continue; }
                };
                let _ = stream.set_nodelay(true);
                let app = Arc::clone(&app);
                let tls = tls.clone();
                tasks.spawn(async move {
                    let svc = service_fn(move |req| Arc::clone(&app).handle(req));
                    let http = hyper::server::conn::http1::Builder::new().keep_alive(true).clone();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
            }
        }
        // Reap finished connection tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    };
    tasks.abort_all();
    result
}
