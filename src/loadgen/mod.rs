//! The built-in load generator: offers a workload's stages to an OpenAI-compatible endpoint and
//! records every request.
//!
//! * [`schedule`]: arrival times, precomputed from the seed.
//! * [`client`]: the send/receive hot path and the SSE scanner.
//! * [`h1`]: the HTTP/1.1 connection the hot path reads and writes itself.
//! * [`record`]: per-request records and the CSV writer task.
//! * [`scrape`]: the `/metrics` scraper.
//!
//! Open-loop stages: one dispatcher sleeps until each scheduled instant (absolute times from one
//! clock, so lateness never accumulates), takes an idle connection if one is free, and spawns
//! the request; finished requests hand their connection back through a channel only the
//! dispatcher reads. Closed-loop stages: N workers, each with its own connection, take request
//! numbers from an atomic counter. Records go to the writer task through a channel.

pub(crate) mod client;
pub(crate) mod exposition;
pub(crate) mod gpu;
pub(crate) mod h1;
pub(crate) mod record;
pub(crate) mod schedule;
pub(crate) mod scrape;

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hyper::{HeaderMap, header::HeaderValue};
use serde::Serialize;
use tokio::{
    sync::{Semaphore, mpsc, watch},
    task::JoinSet,
};

use self::{
    client::{Conn, Target},
    record::{ErrorKind, Msg, Record},
};
use crate::{
    datasets::{self, DatasetError, Request},
    results::{RunInfo, StageWindow},
    rng::Rng,
    spec::workload::{Load, Workload},
};

/// Why a run could not start or complete.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid endpoint `{url}`: {why} (expected e.g. http://127.0.0.1:8000)")]
    Endpoint { url: String, why: String },
    #[error("cannot reach {url}: {why}; is the server up, and is the address right?")]
    Unreachable { url: String, why: String },
    #[error("{url}/v1/models: {why}")]
    Models { url: String, why: String },
    #[error("header `{name}`: {why}")]
    Header { name: String, why: String },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(
        "{streams} requests in flight need as many connections, and this process may open only {limit} files \
         (ulimit -n, with its hard limit raised to where it can): raise the hard limit (e.g. `ulimit -Hn 65536` as \
         root, or LimitNOFILE in a systemd unit) or lower the concurrency"
    )]
    OpenFiles { streams: u64, limit: u64 },
    #[error("failed to write results in {dir}: {source}")]
    Write { dir: PathBuf, source: std::io::Error },
}

/// What to run.
pub struct Options {
    pub endpoint: String,
    pub workload: Workload,
    /// Relative dataset paths are resolved against this directory.
    pub base_dir: PathBuf,
    /// Where `requests.csv`, `server_metrics.csv` and `stages.json` go.
    pub results_dir: PathBuf,
    pub quiet: bool,
    pub scrape_every: Duration,
    /// Whose `/metrics` to scrape; none: the endpoint's own.
    pub scrape: Vec<scrape::ScrapeTarget>,
    /// GPU telemetry: where from, and how often (none: no GPU telemetry).
    pub gpu: Option<(gpu::Sampler, Duration)>,
    /// Which inputs the run uses (its `results/<run>/inputs/`), for `run.json`.
    pub inputs: Option<crate::workdir::inputs::RunInputs>,
}

struct Ctx {
    target: Target,
    t0: Instant,
    timeout: Duration,
    tx: mpsc::UnboundedSender<Msg>,
    pool: Arc<Vec<Request>>,
}

impl Ctx {
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.t0).as_nanos() as u64
    }

    /// The prompt of request `index` of a stage whose first request is prompt `base`: prompts
    /// continue across stages, and nothing is shared between requests to choose them.
    fn request(&self, base: u64, index: u64) -> &Request {
        &self.pool[((base + index) % self.pool.len() as u64) as usize]
    }
}

/// Parses `http(s)://host:port[/prefix]` into a target (path prefix kept).
pub(crate) async fn target(
    url: &str,
    path: &str,
    stream: bool,
    headers: HeaderMap,
    tls: &crate::spec::workload::TlsSettings,
) -> Result<(Target, String), LoadError> {
    let bad = |why: &str| LoadError::Endpoint { url: url.to_string(), why: why.to_string() };
    let parsed = crate::net::Url::parse(url).map_err(|why| bad(&why))?;
    let (scheme, hostport) = (parsed.scheme(), parsed.hostport.clone());
    let prefix = parsed.path.trim_start_matches('/').trim_end_matches('/');
    let tls = match parsed.https {
        true => Some(crate::net::Tls::new(&parsed.host, tls).map_err(|e| bad(&e))?),
        false => None,
    };
    let addr: SocketAddr = tokio::net::lookup_host(&hostport)
        .await
        .map_err(|e| bad(&format!("cannot resolve `{hostport}`: {e}")))?
        .next()
        .ok_or_else(|| bad("the host resolves to no address"))?;
    let authority = HeaderValue::from_str(&hostport).map_err(|_| bad("invalid host"))?;
    let base = format!(
        "{scheme}://{hostport}{}",
        if prefix.is_empty() { String::new() } else { format!("/{prefix}") }
    );
    let full_path = if prefix.is_empty() { path.to_string() } else { format!("/{prefix}{path}") };
    if hyper::Uri::try_from(full_path.as_str()).is_err() {
        return Err(bad(&format!("`{full_path}` is not a valid request path")));
    }
    Ok((Target { addr, authority, path: full_path, headers, stream, tls, sessions: None }, base))
}

/// Resolves header values; `env:NAME` (or `Bearer env:NAME`) reads the environment, and such a
/// value is marked sensitive: never written, and redacted from anything recorded.
pub(crate) fn headers(spec: &std::collections::BTreeMap<String, String>) -> Result<HeaderMap, LoadError> {
    let mut map = HeaderMap::new();
    for (k, v) in spec {
        let err = |why: String| LoadError::Header { name: k.clone(), why };
        let reference = crate::spec::workload::env_reference(v);
        let value = match reference {
            Some((prefix, var)) => {
                let secret =
                    std::env::var(var).map_err(|_| err(format!("environment variable {var} is not set")))?;
                crate::redact::register(&secret);
                format!("{prefix}{secret}")
            }
            None => v.clone(),
        };
        let name = hyper::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| err(e.to_string()))?;
        let mut value = HeaderValue::from_str(&value).map_err(|e| err(e.to_string()))?;
        value.set_sensitive(reference.is_some());
        map.insert(name, value);
    }
    Ok(map)
}

/// The secret values among `headers` (and their part after `Bearer `), to redact from records.
pub(crate) fn secrets(headers: &HeaderMap) -> Vec<String> {
    let mut out = Vec::new();
    for v in headers.values().filter(|v| v.is_sensitive()) {
        if let Ok(s) = v.to_str() {
            out.push(s.to_string());
            if let Some(token) = s.strip_prefix("Bearer ") {
                out.push(token.to_string());
            }
        }
    }
    // Too short to redact without mangling unrelated text.
    out.retain(|s| s.len() >= 4);
    out
}

/// GETs `path` (beside the target's `/v1/`) and returns the status and body.
async fn get(
    target: &Target,
    base: &str,
    path: &str,
    wait: Duration,
) -> Result<(hyper::StatusCode, bytes::Bytes), LoadError> {
    use http_body_util::{BodyExt, Full};
    let unreachable = |why: String| LoadError::Unreachable { url: base.to_string(), why };
    let mut conn =
        crate::net::open(target.addr, target.tls.as_ref()).await.map_err(|e| unreachable(e.to_string()))?;
    let full = target.path.rsplit_once("/v1/").map_or(path.to_string(), |(p, _)| format!("{p}{path}"));
    let mut req = hyper::Request::get(full.as_str()).body(Full::default()).expect("valid request");
    req.headers_mut().insert(hyper::header::HOST, target.authority.clone());
    for (k, v) in &target.headers {
        req.headers_mut().insert(k, v.clone());
    }
    let resp = tokio::time::timeout(wait, async {
        conn.ready().await?;
        conn.send_request(req).await
    })
    .await
    .map_err(|_| unreachable(format!("no answer within {} s", wait.as_secs())))?
    .map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
    Ok((status, body))
}

/// The first model `/v1/models` lists.
pub(crate) async fn discover_model(target: &Target, base: &str) -> Result<String, LoadError> {
    let (status, body) = get(target, base, "/v1/models", Duration::from_secs(30)).await?;
    let models = |why: String| LoadError::Models { url: base.to_string(), why };
    if !status.is_success() {
        return Err(models(format!("answered {status}; set api.model in the workload to skip discovery")));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| models(format!("not JSON: {e}")))?;
    v.pointer("/data/0/id")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .ok_or_else(|| models("lists no model; set api.model in the workload".into()))
}

/// The server's version as its `/version` says (vLLM: `{"version": "0.11.0"}`); none when it
/// does not answer that within 5 s (a router, another server): the run goes on.
pub(crate) async fn discover_version(target: &Target, base: &str) -> Option<String> {
    let (status, body) = get(target, base, "/version", Duration::from_secs(5)).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok().filter(|_| status.is_success())?;
    v["version"].as_str().map(|s| s.chars().take(200).collect())
}

async fn cancelled(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Sends one request with the timeout and cancellation applied.
async fn one(
    ctx: &Ctx,
    conn: &mut Option<Conn>,
    req: &Request,
    head: (u32, u64, bool, u64),
    cancel: &mut watch::Receiver<bool>,
) -> Record {
    let (stage, index, warmup, scheduled_ns) = head;
    let mut rec = Record::new(stage, index, warmup, scheduled_ns, req.input_tokens, req.max_tokens);
    let finished = tokio::select! {
        r = tokio::time::timeout(ctx.timeout, client::send(conn, &ctx.target, req.body.clone(), req.session, ctx.t0, &mut rec)) => Some(r.is_ok()),
        _ = cancelled(cancel) => None,
    };
    match finished {
        Some(true) => {}
        Some(false) => {
            rec.end_ns = ctx.ns(Instant::now());
            rec.fail(ErrorKind::Timeout, format!("no complete response within {:?}", ctx.timeout));
            *conn = None;
        }
        None => {
            rec.end_ns = ctx.ns(Instant::now());
            rec.fail(ErrorKind::Cancelled, "the run was interrupted".into());
            *conn = None;
        }
    }
    if rec.sent_ns == 0 {
        rec.sent_ns = rec.end_ns.max(scheduled_ns);
    }
    rec
}

/// Which stage requests belong to, and where in the prompt pool it starts.
#[derive(Debug, Clone, Copy)]
struct StageId {
    stage: u32,
    warmup: bool,
    first_prompt: u64,
}

async fn closed_loop(
    ctx: &Arc<Ctx>,
    id: StageId,
    concurrency: u32,
    limit: Option<u64>,
    deadline: Option<Instant>,
    cancel: &watch::Receiver<bool>,
) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for _ in 0..concurrency {
        let (ctx, next, mut cancel) = (Arc::clone(ctx), Arc::clone(&next), cancel.clone());
        set.spawn(async move {
            let mut conn = None;
            // After a failure a closed-loop user waits before the next request (doubling up to
            // 1 s, or the server's Retry-After): a failing server is not hammered at full speed.
            let mut pause = Duration::ZERO;
            loop {
                if !pause.is_zero() {
                    let wake = deadline.map_or(Instant::now() + pause, |d| d.min(Instant::now() + pause));
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake.into()) => {}
                        _ = cancel.wait_for(|c| *c) => {}
                    }
                }
                if *cancel.borrow() || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                if limit.is_some_and(|l| index >= l) {
                    break;
                }
                let scheduled = ctx.ns(Instant::now());
                let rec = one(
                    &ctx,
                    &mut conn,
                    ctx.request(id.first_prompt, index),
                    (id.stage, index, id.warmup, scheduled),
                    &mut cancel,
                )
                .await;
                pause = match (rec.ok(), rec.retry_after_s) {
                    (true, _) => Duration::ZERO,
                    (false, Some(s)) => Duration::from_secs(u64::from(s).min(60)),
                    (false, None) => (pause * 2).clamp(Duration::from_millis(10), Duration::from_secs(1)),
                };
                let _ = ctx.tx.send(Msg::Record(Box::new(rec)));
            }
        });
    }
    while set.join_next().await.is_some() {}
    next.load(Ordering::Relaxed).min(limit.unwrap_or(u64::MAX))
}

async fn open_loop(
    ctx: &Arc<Ctx>,
    id: StageId,
    offsets: impl Iterator<Item = f64>,
    cap: Option<u32>,
    cancel: &watch::Receiver<bool>,
) -> u64 {
    let (pool_tx, mut pool_rx) = mpsc::unbounded_channel::<Conn>();
    let sem = cap.map(|c| Arc::new(Semaphore::new(c as usize)));
    let mut set = JoinSet::new();
    let start = Instant::now();
    let mut watch = cancel.clone();
    let mut dispatched = 0;
    for (index, off) in offsets.enumerate() {
        // Offsets are bounded by the workload's limits; one beyond any clock ends the sending.
        let Some(due) = Duration::try_from_secs_f64(off).ok().and_then(|d| start.checked_add(d)) else {
            break;
        };
        tokio::select! {
            _ = crate::timer::sleep_until(due) => {}
            _ = cancelled(&mut watch) => break,
        }
        let permit = match &sem {
            Some(s) => tokio::select! {
                p = Arc::clone(s).acquire_owned() => p.ok(),
                _ = cancelled(&mut watch) => break,
            },
            None => None,
        };
        let mut conn = pool_rx.try_recv().ok();
        let (ctx, pool_tx, mut cancel) = (Arc::clone(ctx), pool_tx.clone(), cancel.clone());
        let scheduled = ctx.ns(due);
        set.spawn(async move {
            let rec = one(
                &ctx,
                &mut conn,
                ctx.request(id.first_prompt, index as u64),
                (id.stage, index as u64, false, scheduled),
                &mut cancel,
            )
            .await;
            if let Some(c) = conn {
                let _ = pool_tx.send(c);
            }
            drop(permit);
            let _ = ctx.tx.send(Msg::Record(Box::new(rec)));
        });
        dispatched += 1;
        while set.try_join_next().is_some() {}
    }
    while set.join_next().await.is_some() {}
    dispatched
}

/// Writes `dir/name` as pretty JSON, atomically (a file beside it, then a rename): a run killed
/// mid-write keeps the previous version.
pub(crate) fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), LoadError> {
    let write = || -> std::io::Result<()> {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, dir.join(name))
    };
    write().map_err(|source| LoadError::Write { dir: dir.to_path_buf(), source })
}

/// The most requests the workload holds in flight at once, each on a connection of its own:
/// the largest concurrency of its warm-up and closed-loop stages and the `max_concurrency`
/// of its rate stages (an uncapped rate stage is bounded by its rate and latency only).
fn most_streams(w: &Workload) -> u64 {
    let stages = w.stages.iter().map(|s| match s.load() {
        Load::Concurrency(c) => u64::from(c),
        Load::Rate { max_concurrency, .. } => max_concurrency.map_or(0, u64::from),
    });
    let warmup = if w.warmup.requests > 0 { u64::from(w.warmup.concurrency.unwrap_or(1)) } else { 0 };
    stages.chain([warmup]).max().unwrap_or(0)
}

/// Runs the workload against the endpoint. Resolves when every stage is done, or early when
/// `shutdown` resolves (in-flight requests are then recorded as cancelled).
pub async fn run(opts: Options, shutdown: impl Future<Output = ()>) -> Result<RunInfo, LoadError> {
    let w = &opts.workload;
    let (target, base) = target(
        &opts.endpoint,
        w.api.endpoint.path(),
        w.api.stream,
        headers(&w.api.request_headers())?,
        &w.api.tls,
    )
    .await?;
    let model = match &w.api.model {
        Some(m) => m.clone(),
        None => discover_model(&target, &base).await?,
    };
    let prompts = datasets::load_for(&w.dataset, w.seed, &opts.base_dir, w.expected_requests())?;
    let pool: Vec<Request> = prompts.iter().map(|p| datasets::render(p, &w.api, &model)).collect();
    let mut target = target;
    if let Some(name) = &w.api.session_header {
        let bad = |e: String| LoadError::Header { name: name.clone(), why: e };
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let n = pool.iter().filter_map(|r| r.session).max().map_or(0, |m| m as usize + 1);
        let values = (0..n)
            .map(|g| HeaderValue::from_str(&format!("group-{g}")).map_err(|e| bad(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        target.sessions = Some((name, values));
    }

    if let Some(limit) = crate::net::raise_open_files_limit() {
        let streams = most_streams(w);
        // Beside the streams: the scrapes, the records, the dataset, the runtime's own.
        if streams + 64 > limit {
            return Err(LoadError::OpenFiles { streams, limit });
        }
    }
    let t0 = Instant::now();
    let beside = Beside::start(&opts, &target, t0, secrets(&target.headers)).await?;
    let ctx = Arc::new(Ctx {
        target,
        t0,
        timeout: Duration::from_secs_f64(w.api.timeout.0),
        tx: beside.sender(),
        pool: Arc::new(pool),
    });

    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut info = RunInfo::starting(base, model);
    info.inputs = opts.inputs.clone();
    info.server_version = discover_version(&ctx.target, &info.endpoint).await;
    write_json(&opts.results_dir, "run.json", &info)?;

    let mut interrupted = false;
    let result = {
        let work = async {
            let mut first_prompt = 0u64;
            if w.warmup.requests > 0 {
                let _ = ctx.tx.send(Msg::Stage {
                    stage: 0,
                    label: "warm-up".into(),
                    requests: Some(w.warmup.requests as u64),
                    duration: None,
                });
                closed_loop(
                    &ctx,
                    StageId { stage: 0, warmup: true, first_prompt: 0 },
                    w.warmup.concurrency.unwrap_or(1).max(1),
                    Some(w.warmup.requests as u64),
                    None,
                    &cancel_rx,
                )
                .await;
                first_prompt += w.warmup.requests as u64;
            }
            for (i, stage) in w.stages.iter().enumerate() {
                if *cancel_rx.borrow() {
                    break;
                }
                let n = i as u32 + 1;
                let duration = stage.duration.map(|d| d.0);
                let _ = ctx.tx.send(Msg::Stage {
                    stage: n,
                    label: stage.label(),
                    requests: stage.requests,
                    duration,
                });
                let start_s = t0.elapsed().as_secs_f64();
                let id = StageId { stage: n, warmup: false, first_prompt };
                let dispatched = match stage.load() {
                    Load::Concurrency(c) => {
                        let deadline = duration.map(|d| Instant::now() + Duration::from_secs_f64(d));
                        closed_loop(&ctx, id, c, stage.requests, deadline, &cancel_rx).await
                    }
                    Load::Rate { rate, burstiness, max_concurrency, .. } => {
                        let mut rng = Rng::derive(w.seed, 0x5EED_0000 + n as u64);
                        match (duration, stage.ramp_to) {
                            (Some(d), Some(to)) => {
                                let offsets =
                                    schedule::ramp(rate, to, burstiness, d, stage.requests, &mut rng);
                                open_loop(&ctx, id, offsets, max_concurrency, &cancel_rx).await
                            }
                            (Some(d), None) => {
                                let offsets =
                                    schedule::by_duration(rate, burstiness, d, stage.requests, &mut rng);
                                open_loop(&ctx, id, offsets, max_concurrency, &cancel_rx).await
                            }
                            (None, _) => {
                                let n = stage.requests.unwrap_or(1);
                                let offsets = schedule::by_count(rate, burstiness, n, &mut rng);
                                open_loop(&ctx, id, offsets, max_concurrency, &cancel_rx).await
                            }
                        }
                    }
                };
                info.stages.push(StageWindow {
                    stage: n,
                    label: stage.label(),
                    start_s,
                    end_s: t0.elapsed().as_secs_f64(),
                    dispatched,
                    rate: stage.asked_rate(),
                    ramp: stage.ramp(),
                });
                first_prompt += dispatched;
                write_json(&opts.results_dir, "run.json", &info)?;
            }
            Ok::<(), LoadError>(())
        };
        tokio::pin!(shutdown);
        tokio::pin!(work);
        let records = ctx.tx.clone();
        tokio::select! {
            r = &mut work => r,
            _ = &mut shutdown => {
                interrupted = true;
                let _ = cancel_tx.send(true);
                // Let in-flight requests record themselves as cancelled.
                (&mut work).await
            }
            () = records.closed() => {
                // The writer of requests.csv stopped (a full disk): nothing more is sent, and
                // its error is the run's (below), now rather than at the end of the stages.
                let _ = cancel_tx.send(true);
                (&mut work).await
            }
        }
    };
    info.interrupted = interrupted;
    drop(ctx);
    beside.finish(&opts.results_dir, &mut info).await?;
    info.ended_at = Some(crate::workdir::utc_now());
    write_json(&opts.results_dir, "run.json", &info)?;
    result.map(|()| info)
}

/// What runs beside any load generator, on the run's clock: the writer of `requests.csv` (and
/// the progress it prints), the `/metrics` scraper and the GPU sampler.
pub(crate) struct Beside {
    tx: mpsc::UnboundedSender<Msg>,
    stop: watch::Sender<bool>,
    writer: tokio::task::JoinHandle<std::io::Result<record::Written>>,
    scraper: tokio::task::JoinHandle<(u64, Option<String>)>,
    sampler: Option<tokio::task::JoinHandle<gpu::Outcome>>,
}

impl Beside {
    /// Starts them all; returns once the first `/metrics` round (the counters' baseline) is in,
    /// or after at most a second for a server that does not answer.
    pub(crate) async fn start(
        opts: &Options,
        endpoint: &Target,
        t0: Instant,
        redact: Vec<String>,
    ) -> Result<Beside, LoadError> {
        std::fs::create_dir_all(&opts.results_dir)
            .map_err(|source| LoadError::Write { dir: opts.results_dir.clone(), source })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let results = opts.results_dir.clone();
        let quiet = opts.quiet;
        let writer =
            tokio::spawn(
                async move { record::writer(&results.join("requests.csv"), rx, quiet, redact).await },
            );
        let (stop, stop_rx) = watch::channel(false);
        let mut scraped = Vec::new();
        for t in &opts.scrape {
            let (at, _) =
                self::target(&t.url, "/metrics", false, HeaderMap::new(), &opts.workload.api.tls).await?;
            scraped.push((t.name.clone(), at));
        }
        if scraped.is_empty() {
            scraped.push(("endpoint".to_string(), endpoint.clone()));
        }
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let scraper = tokio::spawn(scrape::run(
            scraped,
            opts.results_dir.join("server_metrics.csv"),
            t0,
            opts.scrape_every,
            stop_rx.clone(),
            first_tx,
        ));
        let _ = tokio::time::timeout(opts.scrape_every.min(Duration::from_secs(1)), first_rx).await;
        let sampler = opts.gpu.clone().map(|(sampler, every)| {
            tokio::spawn(gpu::run(sampler, opts.results_dir.join("gpu.csv"), t0, every, stop_rx.clone()))
        });
        Ok(Beside { tx, stop, writer, scraper, sampler })
    }

    /// Where records and stage announcements go.
    pub(crate) fn sender(&self) -> mpsc::UnboundedSender<Msg> {
        self.tx.clone()
    }

    /// Stops scraping and sampling, waits for every record to be written (all senders must be
    /// gone), and says in `info` what was recorded.
    pub(crate) async fn finish(self, dir: &Path, info: &mut RunInfo) -> Result<(), LoadError> {
        let Beside { tx, stop, writer, scraper, sampler } = self;
        drop(tx);
        let _ = stop.send(true);
        let written = writer
            .await
            .map_err(|e| LoadError::Write { dir: dir.to_path_buf(), source: std::io::Error::other(e) })?
            .map_err(|source| LoadError::Write { dir: dir.to_path_buf(), source })?;
        let (scrapes, scrape_err) = scraper.await.unwrap_or((0, Some("the scraper task failed".into())));
        info.records = written.records;
        info.failed = written.failed;
        info.server_metrics_scrapes = scrapes;
        info.server_metrics_error = scrape_err;
        if let Some(sampler) = sampler {
            let outcome = sampler.await.unwrap_or_else(|e| gpu::Outcome {
                samples: 0,
                note: format!("the GPU sampler failed: {e}"),
            });
            info.gpu = Some(format!("{} ({} samples)", outcome.note, outcome.samples));
        }
        Ok(())
    }
}
