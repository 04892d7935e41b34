//! Per-request records and the writer task that appends them to `results/requests.csv` as they
//! complete (flushed at least every second, so a killed run keeps what it measured), and prints
//! progress.

use std::{
    io::{IsTerminal, Write},
    path::Path,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

pub(crate) use crate::results::{ErrorKind, Record};

/// Messages to the writer task.
pub(crate) enum Msg {
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
pub(crate) struct Written {
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
pub(crate) async fn writer(
    path: &Path,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    quiet: bool,
    redact: Vec<String>,
) -> std::io::Result<Written> {
    let file = std::fs::File::create(path)?;
    let mut csv =
        crate::results::Writer::new(std::io::BufWriter::with_capacity(1 << 20, file))?.redacting(redact);
    csv.flush()?;
    let mut written = Written::default();
    let mut progress: Option<Progress> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let tty = std::io::stderr().is_terminal();
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Record(r)) => {
                    csv.write(&r)?;
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
