//! The simulator's own capacity on this machine: how many streams and tokens per second it
//! serves when the model costs nothing, and how many concurrent paced streams it holds on time.
//!
//! Runs the release `benchflow sim` as its own process and drives it from this one with a lean
//! keep-alive HTTP/1.1 client (connections opened before the clock starts). Reports achieved
//! requests/s and tokens/s, the server's CPU per token (from /proc), and for paced streams the
//! client-observed inter-token latency against the configured truth plus the server's own
//! delivery lateness.
//!
//! `cargo bench --bench sim_capacity` (or `-- quick` for a shorter run).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_benchflow"))
            .args(["sim", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start benchflow sim");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("address line");
        let addr = line.trim().trim_start_matches("http://").parse().expect("address");
        Server { child, addr }
    }

    /// utime + stime of the server process, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        ticks / 100.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    tokens: AtomicU64,
    errors: AtomicU64,
    /// Sum of per-request mean inter-chunk gaps, in microseconds.
    itl_us_sum: AtomicU64,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(sender)
}

async fn worker(
    mut sender: Sender,
    addr: SocketAddr,
    body: Bytes,
    start: Instant,
    end: Instant,
    stats: Arc<Stats>,
) {
    tokio::time::sleep_until(start.into()).await;
    while Instant::now() < end {
        let req = Request::post("/v1/completions")
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .expect("request");
        let Ok(resp) = sender.send_request(req).await else {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut body_in = resp.into_body();
        let (mut events, mut first, mut last) = (0u64, None, Instant::now());
        while let Some(frame) = body_in.frame().await {
            let Ok(frame) = frame else {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            if let Ok(data) = frame.into_data() {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                let n = data.windows(2).filter(|w| *w == b"\n\n").count() as u64;
                events += n;
                if now <= end {
                    // Counted as they arrive, so long requests cut by the window still count.
                    stats.tokens.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        // Each stream: one chunk per token, then the usage chunk and [DONE] (not tokens).
        let tokens = events.saturating_sub(2);
        if Instant::now() <= end {
            stats.tokens.fetch_sub(2, Ordering::Relaxed);
            stats.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(first) = first
                && tokens > 1
            {
                let itl = (last - first).as_micros() as u64 / (tokens - 1);
                stats.itl_us_sum.fetch_add(itl, Ordering::Relaxed);
            }
        }
    }
}

struct Outcome {
    req_s: f64,
    tok_s: f64,
    server_cpu_us_per_token: f64,
    mean_itl_ms: f64,
    errors: u64,
    connected: usize,
    /// Tokens per simulated second the model generated mid-run.
    probe_model: f64,
    /// Tokens per wall second the client received over the same interval.
    probe_delivered: f64,
}

async fn run(server: &Server, streams: usize, tokens: u32, secs: f64) -> Outcome {
    let body = Bytes::from(format!(
        r#"{{"prompt":"hello","max_tokens":{tokens},"ignore_eos":true,"stream":true,"stream_options":{{"include_usage":true}}}}"#
    ));
    let mut senders = Vec::with_capacity(streams);
    for chunk in (0..streams).collect::<Vec<_>>().chunks(256) {
        let conns = futures_join(chunk.iter().map(|_| connect(server.addr)).collect()).await;
        senders.extend(conns.into_iter().flatten());
    }
    let connected = senders.len();
    let stats = Arc::new(Stats::default());
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs_f64(secs);
    let cpu0 = {
        tokio::time::sleep_until(start.into()).await;
        server.cpu_seconds()
    };
    let handles: Vec<_> = senders
        .into_iter()
        .map(|s| tokio::spawn(worker(s, server.addr, body.clone(), start, end, Arc::clone(&stats))))
        .collect();
    // Mid-window probe (skipping ramp-up and tail): the model's own token rate on its simulated
    // clock, and what reached the client over the same wall interval.
    let (p0, p1) = (start + Duration::from_secs_f64(secs * 0.3), start + Duration::from_secs_f64(secs * 0.9));
    tokio::time::sleep_until(p0.into()).await;
    let (m0, t0, w0) =
        (metrics_text(server.addr).await, stats.tokens.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep_until(p1.into()).await;
    let (m1, t1, w1) =
        (metrics_text(server.addr).await, stats.tokens.load(Ordering::Relaxed), Instant::now());
    let generated =
        sample(&m1, "vllm:generation_tokens_total{") - sample(&m0, "vllm:generation_tokens_total{");
    let simulated = sample(&m1, "sim:virtual_time_seconds") - sample(&m0, "sim:virtual_time_seconds");
    let probe_model = generated / simulated;
    let probe_delivered = (t1 - t0) as f64 / (w1 - w0).as_secs_f64();
    tokio::time::sleep_until(end.into()).await;
    let cpu = server.cpu_seconds() - cpu0;
    for h in handles {
        h.abort();
    }
    let req = stats.requests.load(Ordering::Relaxed);
    let tok = stats.tokens.load(Ordering::Relaxed);
    Outcome {
        req_s: req as f64 / secs,
        tok_s: tok as f64 / secs,
        server_cpu_us_per_token: if tok > 0 { cpu * 1e6 / tok as f64 } else { f64::NAN },
        mean_itl_ms: if req > 0 {
            stats.itl_us_sum.load(Ordering::Relaxed) as f64 / req as f64 / 1000.0
        } else {
            f64::NAN
        },
        errors: stats.errors.load(Ordering::Relaxed),
        connected,
        probe_model,
        probe_delivered,
    }
}

async fn futures_join<F: std::future::Future + Send + 'static>(futs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

async fn metrics_text(addr: SocketAddr) -> String {
    let Some(mut s) = connect(addr).await else { return String::new() };
    let req =
        Request::get("/metrics").header("host", addr.to_string()).body(Full::new(Bytes::new())).expect("req");
    let Ok(resp) = s.send_request(req).await else { return String::new() };
    let Ok(body) = resp.into_body().collect().await else { return String::new() };
    String::from_utf8_lossy(&body.to_bytes()).to_string()
}

fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

async fn lateness_p99(addr: SocketAddr) -> String {
    let text = metrics_text(addr).await;
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with("sim:delivery_lateness_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets.iter().find(|(_, c)| *c >= 0.99 * total).map_or("?".into(), |(le, _)| {
        if le.is_finite() { format!("≤ {:.1} ms", le * 1000.0) } else { "> 1 s".into() }
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let secs = if quick { 2.0 } else { 5.0 };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!(
        "benchflow sim capacity ({} cores, {secs} s per point)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    println!("A. zero model latency (profile fixed/zero, engine fidelity), 64 tokens per request");
    println!("| streams | requests/s | tokens/s | server CPU µs/token | errors |");
    println!("|---:|---:|---:|---:|---:|");
    let server = Server::start(&["--profile", "fixed/zero"]);
    for streams in [1usize, 64, 512, 2048] {
        let o = rt.block_on(run(&server, streams, 64, secs));
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {} |",
            o.connected, o.req_s, o.tok_s, o.server_cpu_us_per_token, o.errors
        );
    }
    drop(server);

    println!("\nB. engine model at high concurrency (profile llama-3.1-8b/h100, real time, 128 tokens)");
    println!(
        "| streams | model tokens/s (simulated clock) | delivered tokens/s (wall) | delivered / model | token lateness p99 | server CPU µs/token |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for streams in [256usize, 1024, 4096] {
        let server = Server::start(&["--profile", "llama-3.1-8b/h100", "--set", "seed=1"]);
        let o = rt.block_on(run(&server, streams, 128, secs.max(6.0)));
        let late = rt.block_on(lateness_p99(server.addr));
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {} | {:.2} |",
            o.connected,
            o.probe_model,
            o.probe_delivered,
            o.probe_delivered / o.probe_model,
            late,
            o.server_cpu_us_per_token
        );
    }

    println!("\nC. paced streams (analytic: TTFT 100 ms, ITL 50 ms, 100 tokens), truth ITL = 50 ms");
    println!(
        "| streams | tokens/s | client mean ITL (ms) | token lateness p99 | server CPU µs/token | errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for streams in [1024usize, 4096, 8192] {
        let server = Server::start(&[
            "--profile",
            "tiny/cpu",
            "--set",
            "fidelity=analytic",
            "--set",
            "ttft=100ms",
            "--set",
            "itl=50ms",
            "--set",
            "time_factor_under_load=1",
            "--set",
            "request_overhead=0",
            "--set",
            "max_num_seqs=100000",
        ]);
        let o = rt.block_on(run(&server, streams, 100, secs.max(6.0)));
        let late = rt.block_on(lateness_p99(server.addr));
        println!(
            "| {} | {:.0} | {:.2} | {} | {:.2} | {} |",
            o.connected, o.tok_s, o.mean_itl_ms, late, o.server_cpu_us_per_token, o.errors
        );
    }
}
