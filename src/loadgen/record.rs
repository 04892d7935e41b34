//! Per-request records and the writer task that appends them to `results/requests.csv` as they
//! complete (flushed at least every second, so a killed run keeps what it measured), and prints
//! progress.

use std::{
    io::{IsTerminal, Write},
    path::Path,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// A non-200 HTTP status.
    Http,
    /// Could not connect, or the connection failed before a response.
    Connect,
    /// The per-request timeout expired.
    Timeout,
    /// The response was cut off mid-stream.
    Aborted,
    /// The stream or body was not what the protocol promises (no `[DONE]`, not JSON).
    Malformed,
    /// The server sent an error object inside the stream.
    StreamError,
    /// HTTP 200 without any content chunk.
    Empty,
    /// The run was interrupted while the request was in flight.
    Cancelled,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Http => "http",
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Aborted => "aborted",
            ErrorKind::Malformed => "malformed",
            ErrorKind::StreamError => "stream_error",
            ErrorKind::Empty => "empty",
            ErrorKind::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "http" => ErrorKind::Http,
            "connect" => ErrorKind::Connect,
            "timeout" => ErrorKind::Timeout,
            "aborted" => ErrorKind::Aborted,
            "malformed" => ErrorKind::Malformed,
            "stream_error" => ErrorKind::StreamError,
            "empty" => ErrorKind::Empty,
            "cancelled" => ErrorKind::Cancelled,
            _ => return None,
        })
    }
}

/// One request as measured. Times are nanoseconds since the run's start (one monotonic clock).
#[derive(Debug, Clone)]
pub struct Record {
    pub stage: u32,
    pub index: u64,
    pub warmup: bool,
    pub scheduled_ns: u64,
    pub sent_ns: u64,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub end_ns: u64,
    /// Content chunks (SSE messages with non-empty `choices`).
    pub chunks: u32,
    /// Gaps between consecutive content chunks.
    pub itl_ns: Vec<u64>,
    pub usage_prompt: Option<u32>,
    pub usage_completion: Option<u32>,
    /// The dataset's estimate of the prompt's tokens.
    pub est_prompt: u32,
    pub max_tokens: u32,
    pub status: u16,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
}

impl Record {
    pub fn new(
        stage: u32,
        index: u64,
        warmup: bool,
        scheduled_ns: u64,
        est_prompt: u32,
        max_tokens: u32,
    ) -> Self {
        Record {
            stage,
            index,
            warmup,
            scheduled_ns,
            sent_ns: 0,
            first_ns: None,
            last_ns: None,
            end_ns: 0,
            chunks: 0,
            itl_ns: Vec::with_capacity(max_tokens.min(4096) as usize),
            usage_prompt: None,
            usage_completion: None,
            est_prompt,
            max_tokens,
            status: 0,
            error_kind: None,
            error: None,
        }
    }

    /// A content chunk arrived at `now`.
    pub fn chunk(&mut self, now: u64) {
        match self.last_ns {
            None => self.first_ns = Some(now),
            Some(last) => self.itl_ns.push(now - last),
        }
        self.last_ns = Some(now);
        self.chunks += 1;
    }

    /// Marks the request failed (the first failure wins).
    pub fn fail(&mut self, kind: ErrorKind, message: String) {
        if self.error_kind.is_none() {
            self.error_kind = Some(kind);
            self.error = Some(message);
        }
    }

    pub fn ok(&self) -> bool {
        self.error_kind.is_none()
    }
}

/// The CSV header of `requests.csv`.
pub const HEADER: &[&str] = &[
    "stage",
    "index",
    "warmup",
    "scheduled_us",
    "sent_us",
    "first_token_us",
    "last_token_us",
    "end_us",
    "chunks",
    "prompt_tokens",
    "output_tokens",
    "tokens_source",
    "status",
    "error_kind",
    "error",
    "itl_us",
];

fn us(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

/// Messages to the writer task.
pub enum Msg {
    Record(Box<Record>),
    /// A stage begins: its number, a label, and what it will do.
    Stage {
        stage: u32,
        label: String,
        requests: Option<u64>,
        duration: Option<f64>,
    },
}

/// What the writer saw, for the final summary.
#[derive(Debug, Default, Clone)]
pub struct Written {
    pub records: u64,
    pub failed: u64,
}

struct Progress {
    tty: bool,
    /// On a terminal: an indicatif bar (requests done of the target, or seconds of the stage).
    bar: Option<indicatif::ProgressBar>,
    stage: u32,
    label: String,
    target: Option<u64>,
    duration: Option<f64>,
    started: Instant,
    done: u64,
    errors: u64,
    ttft_us: Vec<u32>,
    last_print: Instant,
}

impl Progress {
    fn print(&mut self, force: bool) {
        let every = if self.tty { Duration::from_millis(250) } else { Duration::from_secs(5) };
        if !force && self.last_print.elapsed() < every {
            return;
        }
        self.last_print = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64();
        let p50 = if self.ttft_us.is_empty() {
            "-".to_string()
        } else {
            let mut v = self.ttft_us.clone();
            let mid = v.len() / 2;
            let (_, m, _) = v.select_nth_unstable(mid);
            format!("{:.1} ms", *m as f64 / 1000.0)
        };
        let of = match (self.target, self.duration) {
            (Some(n), _) => format!("{}/{n}", self.done),
            (None, Some(d)) => format!("{} ({elapsed:.0}/{d:.0} s)", self.done),
            _ => self.done.to_string(),
        };
        let rate = self.done as f64 / elapsed.max(1e-3);
        if let Some(bar) = &self.bar {
            match (self.target, self.duration) {
                (Some(_), _) => bar.set_position(self.done),
                (None, Some(d)) => bar.set_position((elapsed.min(d) * 1000.0) as u64),
                _ => {}
            }
            bar.set_message(format!(
                "{} done, {rate:.1} req/s, {} errors, TTFT p50 {p50}",
                self.done, self.errors
            ));
            if force {
                bar.finish();
            }
            return;
        }
        let line = format!(
            "stage {} [{}]: {of} done, {rate:.1} req/s, {} errors, TTFT p50 {p50}",
            self.stage, self.label, self.errors
        );
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn new(tty: bool, stage: u32, label: String, target: Option<u64>, duration: Option<f64>) -> Self {
        let bar = tty.then(|| {
            let (len, unit) = match (target, duration) {
                (Some(n), _) => (n, "{pos}/{len} requests"),
                (None, Some(d)) => ((d * 1000.0) as u64, "{elapsed}"),
                _ => (0, "{elapsed}"),
            };
            let bar = indicatif::ProgressBar::new(len);
            let template = format!("{{prefix}} [{{bar:30}}] {unit}: {{msg}}");
            if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(format!("stage {stage} ({label})"));
            bar
        });
        Progress {
            tty,
            bar,
            stage,
            label,
            target,
            duration,
            started: Instant::now(),
            done: 0,
            errors: 0,
            ttft_us: Vec::new(),
            last_print: Instant::now(),
        }
    }
}

/// Appends records to `path` until the channel closes; flushes every second.
pub async fn writer(
    path: &Path,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    quiet: bool,
) -> std::io::Result<Written> {
    let file = std::fs::File::create(path)?;
    let mut csv = csv::Writer::from_writer(std::io::BufWriter::with_capacity(1 << 20, file));
    csv.write_record(HEADER)?;
    csv.flush()?;
    let mut written = Written::default();
    let mut progress: Option<Progress> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let tty = std::io::stderr().is_terminal();
    let mut itl = String::new();
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Record(r)) => {
                    write_record(&mut csv, &r, &mut itl)?;
                    written.records += 1;
                    if !r.ok() {
                        written.failed += 1;
                    }
                    if let Some(p) = progress.as_mut() {
                        p.done += 1;
                        if !r.ok() {
                            p.errors += 1;
                        } else if let Some(f) = r.first_ns {
                            p.ttft_us.push(((f - r.sent_ns) / 1000) as u32);
                        }
                        if !quiet {
                            p.print(false);
                        }
                    }
                }
                Some(Msg::Stage { stage, label, requests, duration }) => {
                    if let Some(p) = progress.as_mut().filter(|_| !quiet) {
                        p.print(true);
                    }
                    progress = Some(Progress::new(tty, stage, label, requests, duration));
                }
                None => break,
            },
            _ = tick.tick() => {
                csv.flush()?;
                if let Some(p) = progress.as_mut().filter(|_| !quiet) {
                    p.print(false);
                }
            }
        }
    }
    if let Some(p) = progress.as_mut().filter(|_| !quiet) {
        p.print(true);
    }
    csv.flush()?;
    Ok(written)
}

fn write_record<W: Write>(csv: &mut csv::Writer<W>, r: &Record, itl: &mut String) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let opt = |v: Option<u64>| v.map(us).unwrap_or_default();
    let usage = r.usage_prompt.is_some() && r.usage_completion.is_some();
    itl.clear();
    for (i, g) in r.itl_ns.iter().enumerate() {
        if i > 0 {
            itl.push(' ');
        }
        let _ = write!(itl, "{}", g / 1000);
    }
    csv.write_record([
        r.stage.to_string().as_str(),
        r.index.to_string().as_str(),
        if r.warmup { "1" } else { "0" },
        us(r.scheduled_ns).as_str(),
        us(r.sent_ns).as_str(),
        opt(r.first_ns).as_str(),
        opt(r.last_ns).as_str(),
        us(r.end_ns).as_str(),
        r.chunks.to_string().as_str(),
        r.usage_prompt.unwrap_or(r.est_prompt).to_string().as_str(),
        r.usage_completion.unwrap_or(r.chunks).to_string().as_str(),
        if usage { "usage" } else { "estimate" },
        r.status.to_string().as_str(),
        r.error_kind.map(ErrorKind::as_str).unwrap_or_default(),
        r.error.as_deref().unwrap_or_default(),
        itl.as_str(),
    ])?;
    Ok(())
}
