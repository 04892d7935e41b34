//! One harness run's records: `requests.csv` (one row per request) and `run.json` (the run and
//! its stage windows). The contract between the load generator that writes them, the analysis
//! that reads them and the cluster harness that merges shards of them: the columns are named
//! here once ([`Col`], [`HEADER`]) and nowhere else by position.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ErrorKind {
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
    pub(crate) fn as_str(self) -> &'static str {
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
}

/// One request as measured. Times are nanoseconds since the run's start (one monotonic clock).
#[derive(Debug, Clone)]
pub(crate) struct Record {
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
    pub status: u16,
    /// The server's `Retry-After` (seconds) on a refused request; not written.
    pub retry_after_s: Option<u32>,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
}

impl Record {
    pub(crate) fn new(
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
            status: 0,
            retry_after_s: None,
            error_kind: None,
            error: None,
        }
    }

    /// A content chunk arrived at `now`.
    pub(crate) fn chunk(&mut self, now: u64) {
        match self.last_ns {
            None => self.first_ns = Some(now),
            Some(last) => self.itl_ns.push(now - last),
        }
        self.last_ns = Some(now);
        self.chunks += 1;
    }

    /// Marks the request failed (the first failure wins).
    pub(crate) fn fail(&mut self, kind: ErrorKind, message: String) {
        if self.error_kind.is_none() {
            self.error_kind = Some(kind);
            self.error = Some(message);
        }
    }

    pub(crate) fn ok(&self) -> bool {
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

/// The columns of `requests.csv`, in order (`Col::X as usize` is the column's index). Every
/// column has its name here, also those no reader asks for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)]
pub(crate) enum Col {
    Stage,
    Index,
    Warmup,
    ScheduledUs,
    SentUs,
    FirstTokenUs,
    LastTokenUs,
    EndUs,
    Chunks,
    PromptTokens,
    OutputTokens,
    TokensSource,
    Status,
    ErrorKind,
    Error,
    ItlUs,
}

impl Col {
    /// The columns holding times (microseconds since the run's start).
    pub(crate) const TIMES: [Col; 5] =
        [Col::ScheduledUs, Col::SentUs, Col::FirstTokenUs, Col::LastTokenUs, Col::EndUs];

    /// The column's name in [`HEADER`].
    pub(crate) fn name(self) -> &'static str {
        HEADER[self as usize]
    }
}

/// Writes `requests.csv` rows (the header first).
pub(crate) struct Writer<W: Write> {
    csv: csv::Writer<W>,
    /// Scratch for the gaps column.
    itl: String,
    /// Secret values sent with the requests, replaced in error texts (a server may echo them).
    redact: crate::redact::Redactor,
}

impl<W: Write> Writer<W> {
    pub(crate) fn new(out: W) -> std::io::Result<Self> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(HEADER)?;
        Ok(Writer { csv, itl: String::new(), redact: Default::default() })
    }

    /// Never writes any of `secrets` (they become `[redacted]`), in any of the forms
    /// `crate::redact` looks for (URL-encoded, base64, …), nor any secret registered there.
    pub(crate) fn redacting(mut self, secrets: Vec<String>) -> Self {
        self.redact = crate::redact::Redactor::new(secrets);
        self
    }

    fn error_text<'a>(&self, error: &'a str) -> std::borrow::Cow<'a, str> {
        match self.redact.text(error) {
            std::borrow::Cow::Borrowed(_) => crate::redact::text(error),
            std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(crate::redact::text(&s).into_owned()),
        }
    }

    pub(crate) fn write(&mut self, r: &Record) -> std::io::Result<()> {
        use std::fmt::Write as _;
        let opt = |v: Option<u64>| v.map(us).unwrap_or_default();
        let usage = r.usage_prompt.is_some() && r.usage_completion.is_some();
        self.itl.clear();
        for (i, g) in r.itl_ns.iter().enumerate() {
            if i > 0 {
                self.itl.push(' ');
            }
            let _ = write!(self.itl, "{}", g / 1000);
        }
        self.csv.write_record([
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
            &r.error.as_deref().map(|e| self.error_text(e)).unwrap_or_default(),
            self.itl.as_str(),
        ])?;
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        self.csv.flush()
    }
}

/// Why records could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordsError {
    #[error("{path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("{path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Reads `requests.csv` row by row without copying: checks the header; a partial last line (a
/// run killed mid-write) ends the file.
pub(crate) struct Reader {
    path: PathBuf,
    csv: csv::Reader<std::io::Take<std::fs::File>>,
    row: csv::ByteRecord,
    /// Reads to the file's end (where a short last line is a write cut off); a part ending
    /// before it ([`Reader::part`]) has no such excuse.
    to_end: bool,
}

impl Reader {
    pub(crate) fn open(path: &Path) -> Result<Reader, RecordsError> {
        Reader::head(path, u64::MAX)
    }

    /// [`Reader::open`] of the bytes before `end` (the start of a line, or the file's end).
    pub(crate) fn head(path: &Path, end: u64) -> Result<Reader, RecordsError> {
        let read = |why: String| RecordsError::Read { path: path.to_path_buf(), why };
        let file = std::fs::File::open(path)
            .map_err(|e| read(format!("{e} (is this a benchflow work directory?)")))?;
        let len = file.metadata().map_err(|e| read(e.to_string()))?.len();
        let mut csv = csv::ReaderBuilder::new().from_reader(std::io::Read::take(file, end));
        let headers = csv.byte_headers().map_err(|e| read(e.to_string()))?;
        if !headers.iter().eq(HEADER.iter().map(|h| h.as_bytes())) {
            return Err(read(
                "unexpected columns: not a requests.csv written by this benchflow version".into(),
            ));
        }
        Ok(Reader { path: path.to_path_buf(), csv, row: csv::ByteRecord::new(), to_end: end >= len })
    }

    /// The rows of the bytes `[start, end)` of a file [`Reader::open`] accepted, `start` at the
    /// beginning of a line after the header, `end` at one (or the file's end). Its rows' line
    /// numbers count from the part's start: a reader of parts that meets a bad row reads the
    /// file whole again to say where it is.
    pub(crate) fn part(path: &Path, start: u64, end: u64) -> Result<Reader, RecordsError> {
        use std::io::{Read, Seek};
        let read = |e: std::io::Error| RecordsError::Read { path: path.to_path_buf(), why: e.to_string() };
        let mut file = std::fs::File::open(path).map_err(read)?;
        let len = file.metadata().map_err(read)?.len();
        file.seek(std::io::SeekFrom::Start(start)).map_err(read)?;
        let csv =
            csv::ReaderBuilder::new().has_headers(false).from_reader(file.take(end.saturating_sub(start)));
        Ok(Reader { path: path.to_path_buf(), csv, row: csv::ByteRecord::new(), to_end: end >= len })
    }

    /// The next row, or `None` at the end.
    pub(crate) fn next_row(&mut self) -> Result<Option<Row<'_>>, RecordsError> {
        match self.csv.read_byte_record(&mut self.row) {
            Ok(false) => Ok(None),
            Ok(true) => Ok(Some(Row(&self.row))),
            // A short last line is a write cut off (a crash, a full disk): the end of the
            // records. Anywhere else a row with the wrong number of fields is a bad row.
            Err(e) if self.to_end && matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) => {
                let line = e.position().map_or(0, |p| p.line());
                let mut next = csv::ByteRecord::new();
                match self.csv.read_byte_record(&mut next) {
                    Ok(false) => Ok(None),
                    _ => Err(RecordsError::Read {
                        path: self.path.clone(),
                        why: format!(
                            "line {line}: a row with the wrong number of fields, not at the end of the file"
                        ),
                    }),
                }
            }
            Err(e) => Err(RecordsError::Read { path: self.path.clone(), why: e.to_string() }),
        }
    }
}

/// The latest time a row may hold, in microseconds since the run's start: a week (a stage lasts
/// at most a week, [`crate::units::Secs::MAX`]). A later time, a negative one, `inf` or `nan`
/// is a bad field: the readers size their time series by the times they read.
pub(crate) const MAX_TIME_US: f64 = crate::units::Secs::MAX * 1e6;

/// The largest count (chunks, prompt or output tokens) a row may hold: 16 times the most tokens
/// a request may ask for.
pub(crate) const MAX_COUNT: u64 = 1 << 24;

/// A field of `requests.csv` that does not hold what its column promises (its text is
/// `bad <column>: <what it must hold>`, e.g. `bad sent_us: …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad {}: {}", .0.name(), expected(*.0))]
pub(crate) struct BadField(pub Col);

/// What a column must hold, for [`BadField`]'s message.
fn expected(col: Col) -> String {
    match col {
        Col::Stage => "expected a stage number (a whole number)".into(),
        Col::Chunks | Col::PromptTokens | Col::OutputTokens => {
            format!("expected a whole number up to {MAX_COUNT}")
        }
        Col::ItlUs => "expected gaps in whole microseconds, separated by spaces, each at most a week".into(),
        _ if Col::TIMES.contains(&col) => {
            format!("expected microseconds since the run's start, from 0 to {MAX_TIME_US:.0} (a week)")
        }
        _ => "unexpected value".into(),
    }
}

/// A row's times (seconds since the run's start), each within bounds and in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Times {
    pub scheduled: f64,
    pub sent: f64,
    /// The first and the last content chunk (absent when the request got no token).
    pub first: Option<f64>,
    pub last: Option<f64>,
    pub end: f64,
}

/// Why a row's times cannot be read: a field is bad, or two are out of order.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub(crate) enum BadTimes {
    #[error(transparent)]
    Field(#[from] BadField),
    #[error("{} ({:.3} µs) is after {} ({:.3} µs): a request cannot end before it starts", .earlier.name(), .a * 1e6, .later.name(), .b * 1e6)]
    Order { earlier: Col, a: f64, later: Col, b: f64 },
}

/// One row of `requests.csv`, borrowed, decoded field by field on demand: the readers (the
/// analysis, `compare`, the search) each take the fields they need and decide what a bad one
/// means to them (an error, or a row that does not count), from the same decoding.
pub(crate) struct Row<'a>(&'a csv::ByteRecord);

impl Row<'_> {
    /// The field as written.
    pub(crate) fn get(&self, col: Col) -> &[u8] {
        self.0.get(col as usize).unwrap_or_default()
    }

    /// The row's line in the file (for error messages).
    pub(crate) fn line(&self) -> u64 {
        self.0.position().map_or(0, |p| p.line())
    }

    /// The stage number.
    pub(crate) fn stage(&self) -> Result<u32, BadField> {
        digits(self.get(Col::Stage)).and_then(|n| u32::try_from(n).ok()).ok_or(BadField(Col::Stage))
    }

    /// A warm-up request (not measured).
    pub(crate) fn warmup(&self) -> bool {
        self.get(Col::Warmup) == b"1"
    }

    /// A time column ([`Col::TIMES`]) in seconds since the run's start. An empty field (the
    /// request got no token) is a `BadField` like text that is not a number: `.ok()` where
    /// the time may be missing.
    pub(crate) fn secs(&self, col: Col) -> Result<f64, BadField> {
        debug_assert!(Col::TIMES.contains(&col), "{} is not a time", col.name());
        let field = self.get(col);
        if field.is_empty() {
            return Err(BadField(col));
        }
        std::str::from_utf8(field)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|us| (0.0..=MAX_TIME_US).contains(us))
            .map(|us| us / 1e6)
            .ok_or(BadField(col))
    }

    /// A time column that may be empty (the first and last token of a request that got none):
    /// `None` when empty, an error when it holds something that is not a time.
    pub(crate) fn secs_if_any(&self, col: Col) -> Result<Option<f64>, BadField> {
        if self.get(col).is_empty() { Ok(None) } else { self.secs(col).map(Some) }
    }

    /// The row's times, checked: scheduled, sent and end present, the first and last token
    /// either absent or times, a request sent no later than it ended nor than its first token
    /// (within 1 ms), its first token no later than its last.
    pub(crate) fn times(&self) -> Result<Times, BadTimes> {
        let t = Times {
            scheduled: self.secs(Col::ScheduledUs)?,
            sent: self.secs(Col::SentUs)?,
            first: self.secs_if_any(Col::FirstTokenUs)?,
            last: self.secs_if_any(Col::LastTokenUs)?,
            end: self.secs(Col::EndUs)?,
        };
        if t.sent > t.end {
            return Err(BadTimes::Order { earlier: Col::SentUs, a: t.sent, later: Col::EndUs, b: t.end });
        }
        // A first token before the send (beyond a millisecond of clock rounding in a
        // converted file) would be a negative TTFT.
        if let Some(first) = t.first.filter(|f| *f < t.sent - 1e-3) {
            return Err(BadTimes::Order {
                earlier: Col::SentUs,
                a: t.sent,
                later: Col::FirstTokenUs,
                b: first,
            });
        }
        if let (Some(first), Some(last)) = (t.first, t.last)
            && first > last
        {
            return Err(BadTimes::Order {
                earlier: Col::FirstTokenUs,
                a: first,
                later: Col::LastTokenUs,
                b: last,
            });
        }
        Ok(t)
    }

    /// A count column (chunks, prompt or output tokens).
    pub(crate) fn count(&self, col: Col) -> Result<u64, BadField> {
        debug_assert!(matches!(col, Col::Chunks | Col::PromptTokens | Col::OutputTokens));
        digits(self.get(col)).filter(|n| *n <= MAX_COUNT).ok_or(BadField(col))
    }

    /// The token counts are the dataset's estimate, not the server's `usage`.
    pub(crate) fn estimated(&self) -> bool {
        self.get(Col::TokensSource) != b"usage"
    }

    /// How the request failed, as written (`None`: no error recorded; the request may still
    /// have got no token). Not parsed into an [`ErrorKind`]: the analysis counts failures by
    /// the text, whatever it is.
    pub(crate) fn error_kind(&self) -> Option<std::borrow::Cow<'_, str>> {
        let field = self.get(Col::ErrorKind);
        (!field.is_empty()).then(|| String::from_utf8_lossy(field))
    }

    /// The gaps between consecutive content chunks, in seconds (none when the harness did not
    /// record them).
    #[cfg(test)]
    pub(crate) fn gaps(&self) -> impl Iterator<Item = Result<f64, BadField>> + '_ {
        self.gaps_us().map(|g| g.map(gap_secs))
    }

    /// The gaps in the whole microseconds written (each at most a week); [`gap_secs`] of one
    /// is what [`Row::gaps`] gives.
    pub(crate) fn gaps_us(&self) -> impl Iterator<Item = Result<u64, BadField>> + '_ {
        self.get(Col::ItlUs)
            .split(|b| *b == b' ')
            .filter(|g| !g.is_empty())
            .map(|g| digits(g).filter(|us| *us as f64 <= MAX_TIME_US).ok_or(BadField(Col::ItlUs)))
    }
}

/// A gap of [`Row::gaps_us`] in seconds.
pub(crate) fn gap_secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// A decimal integer (digits only), without UTF-8 validation: the hot loop of reading
/// millions of chunk gaps.
fn digits(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// Writes `out` from the rows of several `requests.csv` files, shifting each file's times by
/// its offset (microseconds), so that shards measured on different clocks share one time axis.
pub(crate) fn merge_rows(out: &Path, shards: &[(PathBuf, f64)]) -> Result<u64, RecordsError> {
    let write = |source| RecordsError::Write { path: out.to_path_buf(), source };
    let file = std::fs::File::create(out).map_err(write)?;
    let mut csv = csv::Writer::from_writer(std::io::BufWriter::new(file));
    csv.write_record(HEADER).map_err(|e| write(e.into()))?;
    let mut rows = 0;
    for (path, offset_us) in shards {
        let mut reader = Reader::open(path)?;
        while let Some(row) = reader.next_row()? {
            let fields: Vec<String> = (0..HEADER.len())
                .map(|i| {
                    let f = String::from_utf8_lossy(row.0.get(i).unwrap_or_default()).into_owned();
                    let is_time = Col::TIMES.iter().any(|c| *c as usize == i);
                    match f.parse::<f64>() {
                        Ok(v) if is_time => format!("{:.3}", v + offset_us),
                        _ => f,
                    }
                })
                .collect();
            csv.write_record(&fields).map_err(|e| write(e.into()))?;
            rows += 1;
        }
    }
    csv.flush().map_err(write)?;
    Ok(rows)
}

/// The measured window of one stage (seconds since the run's start).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageWindow {
    pub stage: u32,
    pub label: String,
    /// Just before the first request was dispatched.
    pub start_s: f64,
    /// When the last request of the stage finished.
    pub end_s: f64,
    pub dispatched: u64,
    /// The request rate asked of the stage (requests/s; a ramp's mean; none for a concurrency
    /// stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// A ramp: the rate at the stage's start and end, linear in between.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<crate::spec::workload::Ramp>,
}

/// What `results/run.json` records about the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub endpoint: String,
    pub model: String,
    pub started_at: String,
    pub benchflow_version: String,
    pub stages: Vec<StageWindow>,
    pub interrupted: bool,
    pub records: u64,
    pub failed: u64,
    pub server_metrics_scrapes: u64,
    pub server_metrics_error: Option<String>,
    /// GPU telemetry: its source and samples, or why there is none.
    #[serde(default)]
    pub gpu: Option<String>,
    /// An external harness: the tool, its version, and where its records came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<String>,
    /// The server's version as its `/version` answered when the run started (vLLM and the
    /// simulator answer; a router or another server may not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Which inputs the run used (the workload and harness by name and sha256, the `--set`s;
    /// the files themselves in `results/<run>/inputs/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<crate::workdir::inputs::RunInputs>,
    /// When the run ended (written last; absent: it never ended, killed or still running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

impl RunInfo {
    /// A run that starts now, with nothing recorded yet.
    pub fn starting(endpoint: String, model: String) -> RunInfo {
        RunInfo {
            endpoint,
            model,
            started_at: crate::workdir::utc_now(),
            benchflow_version: env!("CARGO_PKG_VERSION").to_string(),
            stages: Vec::new(),
            interrupted: false,
            records: 0,
            failed: 0,
            server_metrics_scrapes: 0,
            server_metrics_error: None,
            gpu: None,
            harness: None,
            server_version: None,
            inputs: None,
            ended_at: None,
        }
    }

    /// Whether the run ended (a `run.json` written before `ended_at` existed counted its records
    /// only at the end).
    pub(crate) fn ended(&self) -> bool {
        self.ended_at.is_some() || self.records > 0
    }

    /// How the run ended, in one word: `interrupted`, `done`, or `unfinished` (no end recorded:
    /// benchflow was killed, or the run is still going).
    pub(crate) fn outcome(&self) -> &'static str {
        match (self.interrupted, self.ended()) {
            (true, _) => "interrupted",
            (false, true) => "done",
            (false, false) => "unfinished",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_done_once_its_end_is_recorded_and_unfinished_before() {
        let mut info = RunInfo::starting("http://h:1".into(), "m".into());
        assert_eq!(info.outcome(), "unfinished", "as written at the start");
        info.ended_at = Some(crate::workdir::utc_now());
        assert_eq!(info.outcome(), "done");
        info.interrupted = true;
        assert_eq!(info.outcome(), "interrupted");
        // Written before ended_at existed: the records were counted at the end.
        let old: RunInfo = serde_json::from_str(
            r#"{"endpoint":"e","model":"m","started_at":"2026-01-01T00:00:00.000Z","benchflow_version":"0",
                "stages":[],"interrupted":false,"records":12,"failed":0,"server_metrics_scrapes":0,
                "server_metrics_error":null}"#,
        )
        .unwrap();
        assert_eq!((old.outcome(), old.inputs), ("done", None));
    }

    #[test]
    fn the_header_names_every_column_in_order() {
        let named = [
            (Col::Stage, "stage"),
            (Col::Warmup, "warmup"),
            (Col::ScheduledUs, "scheduled_us"),
            (Col::EndUs, "end_us"),
            (Col::TokensSource, "tokens_source"),
            (Col::ErrorKind, "error_kind"),
            (Col::ItlUs, "itl_us"),
        ];
        for (col, name) in named {
            assert_eq!(HEADER[col as usize], name);
        }
        assert_eq!(Col::ItlUs as usize, HEADER.len() - 1);
    }

    #[test]
    fn rows_written_read_back_and_merged_on_one_time_axis() {
        let dir = std::env::temp_dir().join(format!("bf-records-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Record::new(1, 7, false, 1_000_000, 12, 4);
        r.sent_ns = 1_500_000;
        r.chunk(2_000_000);
        r.chunk(2_250_000);
        r.end_ns = 2_300_000;
        r.status = 200;
        let path = dir.join("a.csv");
        let mut w = Writer::new(std::fs::File::create(&path).unwrap()).unwrap();
        w.write(&r).unwrap();
        w.flush().unwrap();
        drop(w);
        let mut rd = Reader::open(&path).unwrap();
        let row = rd.next_row().unwrap().unwrap();
        assert_eq!(
            (row.get(Col::Stage), row.get(Col::SentUs), row.get(Col::ItlUs)),
            (&b"1"[..], &b"1500.000"[..], &b"250"[..])
        );
        assert!(rd.next_row().unwrap().is_none());
        // A truncated last line is the end of the file, not an error.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("1,8,0,3");
        std::fs::write(dir.join("b.csv"), &text).unwrap();
        let mut rd = Reader::open(&dir.join("b.csv")).unwrap();
        assert!(rd.next_row().unwrap().is_some() && rd.next_row().unwrap().is_none());
        // A short row with rows after it is a bad row, named by its line, not the end.
        let whole = std::fs::read_to_string(&path).unwrap();
        let row = whole.lines().nth(1).unwrap();
        let short = row.rsplit_once(',').unwrap().0;
        std::fs::write(dir.join("c.csv"), format!("{whole}{short}\n{row}\n")).unwrap();
        let mut rd = Reader::open(&dir.join("c.csv")).unwrap();
        assert!(rd.next_row().unwrap().is_some());
        let err = rd.next_row().map(|r| r.is_some()).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("wrong number of fields"), "{err}");
        // Merging shifts the times of the second file by its offset, and nothing else.
        let n = merge_rows(&dir.join("m.csv"), &[(path.clone(), 0.0), (path.clone(), 500.0)]).unwrap();
        assert_eq!(n, 2);
        let mut rd = Reader::open(&dir.join("m.csv")).unwrap();
        let first = rd.next_row().unwrap().unwrap().get(Col::SentUs).to_vec();
        let second = rd.next_row().unwrap().unwrap();
        assert_eq!(
            (first.as_slice(), second.get(Col::SentUs), second.get(Col::Index)),
            (&b"1500.000"[..], &b"2000.000"[..], &b"7"[..])
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A file holding `text` after the header, read back row by row.
    fn rows_of(tag: &str, text: &str) -> Reader {
        let path = std::env::temp_dir().join(format!("bf-records-row-{tag}-{}.csv", std::process::id()));
        std::fs::write(&path, format!("{}\n{text}", HEADER.join(","))).unwrap();
        let reader = Reader::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        reader
    }

    #[test]
    fn a_row_written_decodes_to_what_was_measured() {
        let mut ok = Record::new(2, 7, true, 1_000_000, 12, 4);
        ok.sent_ns = 1_500_000;
        ok.chunk(2_000_000);
        ok.chunk(2_250_000);
        ok.chunk(2_600_000);
        ok.end_ns = 2_700_000;
        ok.usage_completion = Some(3);
        ok.usage_prompt = Some(11);
        ok.status = 200;
        let mut failed = Record::new(1, 8, false, 0, 5, 4);
        failed.fail(ErrorKind::Timeout, "no answer".into());
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out).unwrap();
        w.write(&ok).unwrap();
        w.write(&failed).unwrap();
        w.flush().unwrap();
        drop(w);
        let text = String::from_utf8(out).unwrap();
        let body = text.split_once('\n').unwrap().1;
        let mut rd = rows_of("ok", body);
        let row = rd.next_row().unwrap().unwrap();
        assert_eq!(
            (row.stage(), row.warmup(), row.estimated(), row.error_kind()),
            (Ok(2), true, false, None)
        );
        assert_eq!(row.secs(Col::ScheduledUs), Ok(0.001));
        assert_eq!(row.secs(Col::SentUs), Ok(0.0015));
        assert_eq!(row.secs(Col::FirstTokenUs), Ok(0.002));
        assert_eq!(row.secs(Col::LastTokenUs), Ok(0.0026));
        assert_eq!(row.secs(Col::EndUs), Ok(0.0027));
        assert_eq!(
            (row.count(Col::Chunks), row.count(Col::PromptTokens), row.count(Col::OutputTokens)),
            (Ok(3), Ok(11), Ok(3))
        );
        assert_eq!(row.gaps().collect::<Vec<_>>(), [Ok(0.00025), Ok(0.00035)]);
        let row = rd.next_row().unwrap().unwrap();
        assert_eq!((row.stage(), row.warmup(), row.estimated()), (Ok(1), false, true));
        assert_eq!(row.error_kind().as_deref(), Some("timeout"));
        // No token arrived: the times are absent, and no gap was recorded.
        assert_eq!(row.secs(Col::FirstTokenUs), Err(BadField(Col::FirstTokenUs)));
        assert_eq!(row.gaps().count(), 0);
        assert_eq!((row.count(Col::PromptTokens), row.count(Col::OutputTokens)), (Ok(5), Ok(0)));
    }

    #[test]
    fn a_malformed_row_names_its_bad_fields() {
        let mut rd = rows_of(
            "bad",
            "x,1,0,1.0,abc,,,3.0,2,10,-1,usage,200,,,5 y 7\n4294967296,2,0,1,1,1,1,1,1,1,1,usage,200,,,\n",
        );
        let row = rd.next_row().unwrap().unwrap();
        assert_eq!(row.stage(), Err(BadField(Col::Stage)));
        assert!(row.stage().unwrap_err().to_string().starts_with("bad stage: expected"));
        assert!(row.secs(Col::SentUs).unwrap_err().to_string().starts_with("bad sent_us: expected"));
        assert_eq!(row.secs(Col::ScheduledUs), Ok(1e-6));
        assert_eq!(row.count(Col::OutputTokens), Err(BadField(Col::OutputTokens)));
        assert_eq!(row.gaps().collect::<Vec<_>>(), [Ok(5e-6), Err(BadField(Col::ItlUs)), Ok(7e-6)]);
        assert_eq!(row.line(), 2);
        // A stage beyond u32 is bad, not wrapped around.
        let row = rd.next_row().unwrap().unwrap();
        assert_eq!(row.stage(), Err(BadField(Col::Stage)));
    }

    #[test]
    fn times_out_of_bounds_or_out_of_order_are_bad() {
        let mut rd = rows_of(
            "times",
            "1,1,0,0,10,20,30,40,3,1,3,usage,200,,,5 604800000001\n\
             1,2,0,0,10,,,inf,0,1,0,usage,0,connect,,\n\
             1,3,0,nan,-10,,,1e18,0,1,0,usage,0,connect,,\n\
             1,4,0,0,50,,,40,0,1,0,usage,0,connect,,\n\
             1,5,0,0,10,30,20,40,16777217,1,3,usage,200,,,\n\
             1,6,0,0,10,,,604800000000,16777216,1,0,usage,0,connect,,\n\
             1,7,0,0,5000,2000,3000,6000,3,1,3,usage,200,,,\n",
        );
        let row = rd.next_row().unwrap().unwrap();
        let t = row.times().unwrap();
        assert_eq!((t.sent, t.first, t.last, t.end), (1e-5, Some(2e-5), Some(3e-5), 4e-5));
        assert_eq!(row.gaps().collect::<Vec<_>>(), [Ok(5e-6), Err(BadField(Col::ItlUs))]);
        let row = rd.next_row().unwrap().unwrap();
        assert_eq!(row.times(), Err(BadTimes::Field(BadField(Col::EndUs))));
        let row = rd.next_row().unwrap().unwrap();
        for col in [Col::ScheduledUs, Col::SentUs, Col::EndUs] {
            assert_eq!(row.secs(col), Err(BadField(col)));
        }
        let row = rd.next_row().unwrap().unwrap();
        let e = row.times().unwrap_err();
        assert!(matches!(e, BadTimes::Order { earlier: Col::SentUs, later: Col::EndUs, .. }));
        assert!(e.to_string().contains("sent_us (50.000 µs) is after end_us (40.000 µs)"), "{e}");
        let row = rd.next_row().unwrap().unwrap();
        assert!(matches!(row.times(), Err(BadTimes::Order { earlier: Col::FirstTokenUs, .. })));
        assert_eq!(row.count(Col::Chunks), Err(BadField(Col::Chunks)));
        // The bounds themselves are good.
        let row = rd.next_row().unwrap().unwrap();
        assert_eq!(row.times().map(|t| (t.first, t.end)), Ok((None, crate::units::Secs::MAX)));
        assert_eq!(row.count(Col::Chunks), Ok(MAX_COUNT));
        // A first token 3 ms before the send: a negative TTFT.
        let row = rd.next_row().unwrap().unwrap();
        assert!(matches!(
            row.times(),
            Err(BadTimes::Order { earlier: Col::SentUs, later: Col::FirstTokenUs, .. })
        ));
    }

    #[test]
    fn secrets_sent_are_redacted_from_error_texts() {
        let mut r = Record::new(0, 1, false, 0, 1, 1);
        r.fail(ErrorKind::Http, "invalid key: Bearer sk-canary-123 (header Authorization)".into());
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out)
            .unwrap()
            .redacting(vec!["Bearer sk-canary-123".into(), "sk-canary-123".into()]);
        w.write(&r).unwrap();
        w.flush().unwrap();
        drop(w);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("sk-canary"), "{text}");
        assert!(text.contains("invalid key: [redacted] (header Authorization)"), "{text}");
    }

    #[test]
    fn a_foreign_header_is_refused() {
        let path = std::env::temp_dir().join(format!("bf-records-h-{}.csv", std::process::id()));
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let e = Reader::open(&path).err().unwrap().to_string();
        assert!(e.contains("unexpected columns"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }
}
