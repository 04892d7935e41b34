//! vLLM-compatible result files: per stage, `vllm_bench_stage_N.json` beside `stats.json`, the
//! document `vllm bench serve --save-result --save-detailed` writes (vLLM 0.33's
//! `benchmarks/serve.py`), so that whatever reads those files reads benchflow's runs, any harness.
//!
//! Built from the same records as `stats.json` (the same pass over `requests.csv`; the arrays
//! in arrival order, as vLLM's), the stage's configuration from `inputs/resolved.yaml` and the run from `run.json`:
//!
//! * the configuration: `date` (the stage's end, UTC, `%Y%m%d-%H%M%S`), `endpoint_type` and
//!   `backend` (`openai` or `openai-chat` by the workload's API), `label` null, `model_id` (the
//!   served model benchflow sent), `tokenizer_id` (the tokenizer an external tool was given, else
//!   null), `num_prompts` (the stage's requests), `request_rate` (`"inf"` for a concurrency
//!   stage, as vLLM writes it), `burstiness` (1 for Poisson arrivals, the gamma shape, `"inf"`
//!   for constant arrivals: vLLM writes `Infinity`, which is not JSON), `max_concurrency`;
//! * the per-request arrays, one entry per request, failures included as vLLM counts them
//!   (`output_lens` 0 and `latencies` 0.0 for a failed request; its `ttfts` and `itls` as far as
//!   it streamed; `ttfts` 0.0 without a first token); times in seconds; `start_times` on the
//!   run's clock (vLLM's are `perf_counter` readings: only differences mean anything in both);
//!   `generated_texts` empty strings (benchflow does not keep texts; vLLM writes `""` for a
//!   failed request, and no reader of these files takes lengths from them);
//! * the summaries under vLLM's definitions whatever the analysis's convention, in ms: mean,
//!   median, std and the percentile ladder of [`stats::PERCENTILES`] (numpy's linear interpolation) of
//!   TTFT, TPOT, ITL and E2EL, as `--percentile-metrics ttft,tpot,itl,e2el --metric-percentiles
//!   0.1,1,5,10,25,50,75,90,95,99,99.9` writes them; `duration` (the stage's window, as in
//!   `stats.json`) and the throughputs over it.
//!
//! Beyond vLLM's keys (as its `--metadata KEY=VALUE` adds them at the top level):
//! `benchflow_convention` (the analysis's), `benchflow_unmeasured` (the metrics whose keys read
//! 0 for want of a sample, as in `stats.json`'s `unmeasured`), and under `convention: guidellm`, `guidellm_metrics`:
//! GuideLLM's own names, definitions and nearest-rank percentiles. The vLLM keys never change
//! meaning with the convention.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Serialize, Serializer, ser::SerializeMap, ser::SerializeSeq};
use serde_json::{Value, json};

use super::{
    Analysis, AnalysisError, Convention, StageStats, accumulate,
    dist::Dist,
    read::RowSink,
    stats::{self, Summary},
};
use crate::{
    results::{Col, Row},
    spec::workload::{Endpoint, Load, Workload},
};

/// The file of stage `n`.
pub(crate) fn file_name(stage: u32) -> String {
    format!("vllm_bench_stage_{stage}.json")
}

/// The metrics whose summaries are written, in vLLM's order.
const METRICS: [&str; 4] = ["ttft", "tpot", "itl", "e2el"];

/// The arrays spilled, one file each, in the order of the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Array {
    InputLens,
    OutputLens,
    Ttfts,
    Latencies,
    StartTimes,
    QueueTimes,
    Errors,
    Itls,
    Success,
    /// Each request's scheduled time (its arrival: vLLM's arrays are in arrival order), index
    /// and send, read back by [`Requests::sort`] (on disk meanwhile: the analysis's own samples
    /// are in memory while the records are read).
    Order,
}

impl Array {
    const ALL: [Array; 10] = [
        Array::InputLens,
        Array::OutputLens,
        Array::Ttfts,
        Array::Latencies,
        Array::StartTimes,
        Array::QueueTimes,
        Array::Errors,
        Array::Itls,
        Array::Success,
        Array::Order,
    ];
}

/// The bytes of arrays all stages together hold in memory while the records are read (a part
/// of them read apart, its share): beyond, the stage being read moves its arrays to files. A
/// short run (an experiment's point: some tens of KB) creates no file.
const HELD_IN_MEMORY: usize = 8 << 20;

/// Where one array goes while the records are read.
#[derive(Debug)]
enum Sink {
    Memory(Vec<u8>),
    File(std::io::BufWriter<std::fs::File>),
}

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.write_all(b).map(|()| b.len())
    }

    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Memory(v) => {
                v.extend_from_slice(b);
                Ok(())
            }
            Sink::File(f) => f.write_all(b),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Memory(_) => Ok(()),
            Sink::File(f) => f.flush(),
        }
    }
}

/// The arrays of the rows read by one reader (the whole file, or a part read apart), once read:
/// in memory (one buffer per array, in [`Array::ALL`]'s order) or in the files of a directory.
#[derive(Debug, Clone)]
enum Segment {
    Memory(Vec<std::sync::Arc<[u8]>>),
    Dir(PathBuf),
}

/// One stage's requests as vLLM's arrays hold them: the arrays in the order of the rows, in
/// memory or spilled to files (a long run's file holds every gap: they would not fit in memory),
/// written in arrival order through `perm`; otherwise in memory only what the summaries need.
#[derive(Debug)]
struct Requests {
    /// Where its arrays spill when asked to.
    dir: PathBuf,
    /// Its arrays once read: one segment, or one per part of the records read apart (appended
    /// in the order of the rows).
    segments: Vec<Segment>,
    /// The arrays while reading, in [`Array::ALL`]'s order (empty once read).
    files: Vec<Sink>,
    /// Requests read.
    rows: u64,
    /// Set by [`Requests::sort`].
    perm: Vec<u32>,
    completed: u64,
    total_input: u64,
    total_output: u64,
    /// The ITL summary's samples (successful requests'; TTFT, TPOT and E2EL are read back
    /// from the spill files when the file is built, after the analysis let go of its own).
    itl: Dist,
    /// The earliest successful send (infinite without one).
    first_ok: f64,
}

/// One request as read (seconds on the run's clock).
#[derive(Debug, Clone, Default, PartialEq)]
struct Request {
    index: u64,
    scheduled: f64,
    sent: f64,
    first: Option<f64>,
    last: Option<f64>,
    prompt_tokens: u64,
    output_tokens: u64,
    /// Empty when it succeeded.
    error: String,
    success: bool,
}

impl Requests {
    /// An empty stage held in memory (spilling into `dir`, created then, when asked to).
    fn new(dir: PathBuf) -> Requests {
        Requests {
            dir,
            segments: Vec::new(),
            files: Array::ALL.iter().map(|_| Sink::Memory(Vec::new())).collect(),
            rows: 0,
            perm: Vec::new(),
            completed: 0,
            total_input: 0,
            total_output: 0,
            itl: Dist::new(1e6),
            first_ok: f64::INFINITY,
        }
    }

    /// The bytes of its arrays in memory.
    fn held(&self) -> usize {
        self.files.iter().map(|f| if let Sink::Memory(v) = f { v.len() } else { 0 }).sum()
    }

    /// Moves its arrays from memory to files in its directory (created), where the next rows go.
    fn spill(&mut self) -> std::io::Result<()> {
        use std::io::Write;
        if self.files.iter().all(|f| matches!(f, Sink::File(_))) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        for (sink, array) in self.files.iter_mut().zip(Array::ALL) {
            let mut file =
                std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(spill(&self.dir, array))?);
            if let Sink::Memory(v) = sink {
                file.write_all(v)?;
            }
            *sink = Sink::File(file);
        }
        Ok(())
    }

    /// Ends the reading: its arrays become its segment.
    fn close(&mut self) -> std::io::Result<()> {
        use std::io::Write;
        if self.files.is_empty() {
            return Ok(());
        }
        let mut memory = Vec::new();
        for f in &mut self.files {
            f.flush()?;
            if let Sink::Memory(v) = f {
                memory.push(std::sync::Arc::from(std::mem::take(v)));
            }
        }
        let all_in_memory = memory.len() == self.files.len();
        self.files.clear();
        self.segments.push(if all_in_memory {
            Segment::Memory(memory)
        } else {
            Segment::Dir(self.dir.clone())
        });
        Ok(())
    }

    fn push(&mut self, r: &Request, gaps_us: &[u64]) -> std::io::Result<()> {
        use std::io::Write;
        self.rows += 1;
        let output_len = if r.success { r.output_tokens } else { 0 };
        let ttft = r.first.map_or(0.0, |f| f - r.sent);
        let latency = match (r.success, r.last) {
            (true, Some(last)) => last - r.sent,
            _ => 0.0,
        };
        let f = &mut self.files;
        f[Array::InputLens as usize].write_all(&r.prompt_tokens.to_le_bytes())?;
        f[Array::OutputLens as usize].write_all(&output_len.to_le_bytes())?;
        f[Array::Ttfts as usize].write_all(&ttft.to_le_bytes())?;
        f[Array::Latencies as usize].write_all(&latency.to_le_bytes())?;
        f[Array::StartTimes as usize].write_all(&r.sent.to_le_bytes())?;
        f[Array::QueueTimes as usize].write_all(&(r.sent - r.scheduled).max(0.0).to_le_bytes())?;
        let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        let error = &r.error.as_bytes()[..r.error.len().min(u32::MAX as usize)];
        f[Array::Errors as usize].write_all(&len(error.len()))?;
        f[Array::Errors as usize].write_all(error)?;
        let gaps = &gaps_us[..gaps_us.len().min(u32::MAX as usize)];
        f[Array::Itls as usize].write_all(&len(gaps.len()))?;
        for g in gaps {
            // 4 bytes a gap below 71 minutes (most of a long run's spill), else 4 + 8.
            match u32::try_from(*g) {
                Ok(small) if small != u32::MAX => f[Array::Itls as usize].write_all(&small.to_le_bytes())?,
                _ => {
                    f[Array::Itls as usize].write_all(&u32::MAX.to_le_bytes())?;
                    f[Array::Itls as usize].write_all(&g.to_le_bytes())?;
                }
            }
        }
        f[Array::Success as usize].write_all(&[u8::from(r.success)])?;
        let order = &mut f[Array::Order as usize];
        order.write_all(&r.scheduled.to_le_bytes())?;
        order.write_all(&r.index.to_le_bytes())?;
        order.write_all(&r.sent.to_le_bytes())?;
        if r.success {
            self.completed += 1;
            self.total_input += r.prompt_tokens;
            self.total_output += output_len;
            for g in gaps {
                self.itl.push(*g);
            }
            self.first_ok = self.first_ok.min(r.sent);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.perm.len()
    }

    /// Takes the requests of `later` (the rows after this one's, read apart) after its own.
    fn append(&mut self, mut later: Requests) -> std::io::Result<()> {
        self.close()?;
        later.close()?;
        self.segments.append(&mut later.segments);
        self.rows += later.rows;
        self.completed += later.completed;
        self.total_input += later.total_input;
        self.total_output += later.total_output;
        self.itl.append(later.itl);
        self.first_ok = self.first_ok.min(later.first_ok);
        Ok(())
    }

    /// The request order, vLLM's: by arrival (the scheduled time; the records are written as
    /// requests end), then index (shards merged from several pods share the time axis, not the
    /// indices), then send. `perm[k]` is the row of the k-th request; the arrays stay in row order
    /// and are written through it. Ends the reading ([`Requests::close`]).
    fn sort(&mut self) -> std::io::Result<()> {
        self.close()?;
        let mut file = Segments::open(&self.segments, Array::Order)?;
        let order = (0..self.rows)
            .map(|_| Ok((read_f64(&mut file)?, read_u64(&mut file)?, read_f64(&mut file)?)))
            .collect::<std::io::Result<Vec<(f64, u64, f64)>>>()?;
        let mut perm: Vec<u32> = (0..order.len() as u32).collect();
        perm.sort_by(|a, b| {
            let ((ta, ia, sa), (tb, ib, sb)) = (order[*a as usize], order[*b as usize]);
            ta.total_cmp(&tb).then(ia.cmp(&ib)).then(sa.total_cmp(&sb))
        });
        self.perm = perm;
        Ok(())
    }

    /// The successful requests' TTFT, TPOT (those of more than one token) and E2EL, in seconds,
    /// from the spill files (closed by [`Requests::sort`]).
    fn samples(&self) -> std::io::Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
        let open = |a| Segments::open(&self.segments, a);
        let (mut ttfts, mut latencies) = (open(Array::Ttfts)?, open(Array::Latencies)?);
        let (mut lens, mut success) = (open(Array::OutputLens)?, open(Array::Success)?);
        let n = self.completed as usize;
        let (mut ttft, mut tpot, mut e2el) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..self.perm.len() {
            let (t, l, len, ok) = (
                read_f64(&mut ttfts)?,
                read_f64(&mut latencies)?,
                read_u64(&mut lens)?,
                read_bool(&mut success)?,
            );
            if ok {
                ttft.push(t);
                e2el.push(l);
                if len > 1 {
                    tpot.push((l - t) / (len - 1) as f64);
                }
            }
        }
        Ok((ttft, tpot, e2el))
    }

    /// vLLM 0.33's `max_concurrent_requests` ([`busiest_second`]), from the spill files.
    fn busiest(&self) -> std::io::Result<u64> {
        let mut start = Reorder::open(&self.segments, Array::StartTimes, read_f64)?;
        let mut latency = Reorder::open(&self.segments, Array::Latencies, read_f64)?;
        let mut success = Reorder::open(&self.segments, Array::Success, read_bool)?;
        let mut b = Busiest::from(self.first_ok);
        for row in 0..self.perm.len() as u32 {
            let (s, l) = (start.get(row)?, latency.get(row)?);
            if success.get(row)? {
                b.add(s, l);
            }
        }
        Ok(b.most())
    }
}

/// The spill file of `array` in `dir`.
fn spill(dir: &Path, array: Array) -> PathBuf {
    dir.join(format!("{array:?}"))
}

fn read_u64(r: &mut impl std::io::Read) -> std::io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_f64(r: &mut impl std::io::Read) -> std::io::Result<f64> {
    read_u64(r).map(f64::from_bits)
}

fn read_bool(r: &mut impl std::io::Read) -> std::io::Result<bool> {
    let mut b = [0; 1];
    r.read_exact(&mut b)?;
    Ok(b[0] != 0)
}

fn read_len(r: &mut impl std::io::Read) -> std::io::Result<usize> {
    let mut b = [0; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b) as usize)
}

fn read_text(r: &mut impl std::io::Read) -> std::io::Result<String> {
    let mut b = vec![0; read_len(r)?];
    r.read_exact(&mut b)?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// A request's gaps in seconds.
fn read_gaps(r: &mut impl std::io::Read) -> std::io::Result<Vec<f64>> {
    let gap = |r: &mut _| match read_len(r)? as u32 {
        u32::MAX => read_u64(r),
        small => Ok(u64::from(small)),
    };
    (0..read_len(r)?).map(|_| gap(r).map(crate::results::gap_secs)).collect()
}

/// One array read from a segment.
enum Source {
    Memory(std::io::Cursor<std::sync::Arc<[u8]>>),
    File(std::fs::File),
}

/// An array of every segment, read one after the other.
struct Segments {
    sources: std::vec::IntoIter<Source>,
    current: Option<Source>,
}

impl Segments {
    fn open(segments: &[Segment], array: Array) -> std::io::Result<std::io::BufReader<Segments>> {
        let sources = segments
            .iter()
            .map(|s| match s {
                Segment::Memory(arrays) => {
                    Ok(Source::Memory(std::io::Cursor::new(arrays[array as usize].clone())))
                }
                Segment::Dir(d) => std::fs::File::open(spill(d, array)).map(Source::File),
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(std::io::BufReader::with_capacity(
            1 << 16,
            Segments { sources: sources.into_iter(), current: None },
        ))
    }
}

impl std::io::Read for Segments {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.current.is_none() {
                self.current = self.sources.next();
            }
            let read = match self.current.as_mut() {
                None => return Ok(0),
                Some(Source::Memory(c)) => c.read(buf)?,
                Some(Source::File(f)) => f.read(buf)?,
            };
            match read {
                0 if !buf.is_empty() => self.current = None,
                n => return Ok(n),
            }
        }
    }
}

type Decode<T> = fn(&mut std::io::BufReader<Segments>) -> std::io::Result<T>;

/// A spill file read in any order of its rows, sequentially: a row asked before it is read is
/// read up to, the rows passed on the way held until asked. The arrival order strays from the
/// order of the rows (written as requests end) by the requests in flight: that many are held.
struct Reorder<T> {
    file: std::io::BufReader<Segments>,
    /// The rows from `base` on that were read: `None` once asked (a ring, not a map: the rows
    /// held are a window behind the reading, as wide as the requests that overtook others).
    held: std::collections::VecDeque<Option<T>>,
    base: u32,
    decode: Decode<T>,
}

impl<T> Reorder<T> {
    fn open(segments: &[Segment], array: Array, decode: Decode<T>) -> std::io::Result<Reorder<T>> {
        let file = Segments::open(segments, array)?;
        Ok(Reorder { file, held: std::collections::VecDeque::new(), base: 0, decode })
    }

    /// The value of row `row` (each row asked once).
    fn get(&mut self, row: u32) -> std::io::Result<T> {
        let at = row.checked_sub(self.base).map(|i| i as usize);
        let value = match at.and_then(|i| self.held.get_mut(i)) {
            Some(slot) => slot.take(),
            None => loop {
                let v = (self.decode)(&mut self.file)?;
                if self.base as usize + self.held.len() == row as usize {
                    self.held.push_back(None);
                    break Some(v);
                }
                self.held.push_back(Some(v));
            },
        };
        while let Some(None) = self.held.front() {
            self.held.pop_front();
            self.base += 1;
        }
        value.ok_or_else(|| std::io::Error::other(format!("row {row} of a spill file asked twice")))
    }
}

/// Removes a directory when dropped (the spill files, whatever happens).
struct Spills(PathBuf);

impl Drop for Spills {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every measured stage's requests as the one pass over `requests.csv` hands them over
/// ([`RowSink`]), their arrays spilled under `out/.vllm_bench_arrays` (removed when dropped).
pub(crate) struct Arrays {
    /// Declared first: dropped (its spill files closed) before `_spills` removes them.
    stages: BTreeMap<u32, Requests>,
    /// Where its stages spill (`.vllm_bench_arrays`, or a part's directory in it).
    dir: PathBuf,
    /// The bytes its stages may hold in memory ([`HELD_IN_MEMORY`], a part its share).
    budget: usize,
    /// The bytes they hold, as of the last check.
    held: usize,
    /// Why its arrays could not be kept (a full disk): the pass goes on (a bad row further on
    /// is the error to give; the statistics are written), and the vLLM files are not.
    failed: Option<std::io::Error>,
    /// Remove the spill directories when the arrays are dropped: its own, and those of the
    /// parts appended to it (a part dropped unappended removes its own).
    _spills: Vec<Spills>,
}

impl Arrays {
    /// Arrays of the analysis written into `out`.
    pub(crate) fn new(out: &Path) -> Arrays {
        let dir = out.join(".vllm_bench_arrays");
        Arrays {
            stages: BTreeMap::new(),
            _spills: vec![Spills(dir.clone())],
            dir,
            budget: HELD_IN_MEMORY,
            held: 0,
            failed: None,
        }
    }

    /// [`Arrays::new`] holding at most `bytes` in memory (0: every stage spilled).
    #[cfg(test)]
    pub(crate) fn holding(out: &Path, bytes: usize) -> Arrays {
        Arrays { budget: bytes, ..Arrays::new(out) }
    }

    fn spill_error(&self, source: std::io::Error) -> AnalysisError {
        AnalysisError::Write { path: self.dir.clone(), source }
    }

    /// Gives up keeping the arrays: frees their memory and disk now, keeps why.
    fn fail(&mut self, why: std::io::Error) {
        self.stages.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
        self.failed.get_or_insert(why);
    }
}

impl RowSink for Arrays {
    fn row(&mut self, r: &accumulate::Request, row: &Row<'_>, gaps_us: &[u64]) -> Result<(), AnalysisError> {
        if self.failed.is_some() {
            return Ok(());
        }
        let index = std::str::from_utf8(row.get(Col::Index)).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        let success = r.error_kind.is_empty() && r.first.is_some();
        let error = if success {
            String::new()
        } else {
            let text = String::from_utf8_lossy(row.get(Col::Error)).into_owned();
            match (text.is_empty(), r.error_kind.is_empty()) {
                (false, _) => text,
                (true, false) => r.error_kind.clone(),
                (true, true) => "no token received".to_string(),
            }
        };
        let request = Request {
            index,
            scheduled: r.scheduled,
            sent: r.sent,
            first: r.first,
            last: r.last,
            prompt_tokens: r.prompt_tokens,
            output_tokens: r.output_tokens,
            error,
            success,
        };
        let req = match self.stages.entry(r.stage) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(Requests::new(self.dir.join(r.stage.to_string())))
            }
        };
        let before = req.held();
        if let Err(why) = req.push(&request, gaps_us) {
            self.fail(why);
            return Ok(());
        }
        let after = req.held();
        self.held = (self.held + after).saturating_sub(before);
        if self.held > self.budget {
            // The stage being read goes to files (the others stay as they are).
            if let Err(why) = req.spill() {
                self.fail(why);
                return Ok(());
            }
            self.held -= after;
        }
        Ok(())
    }

    fn part(&self, k: usize) -> Self {
        let dir = self.dir.join(format!("part-{k}"));
        Arrays {
            stages: BTreeMap::new(),
            _spills: vec![Spills(dir.clone())],
            dir,
            budget: self.budget / 2,
            held: 0,
            failed: None,
        }
    }

    fn append(&mut self, mut later: Self) -> Result<(), AnalysisError> {
        self._spills.append(&mut later._spills);
        if let Some(why) = later.failed.take() {
            self.fail(why);
        }
        if self.failed.is_some() {
            return Ok(());
        }
        for (stage, req) in std::mem::take(&mut later.stages) {
            let appended = match self.stages.entry(stage) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut().append(req),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(req);
                    Ok(())
                }
            };
            if let Err(why) = appended {
                self.fail(why);
                break;
            }
        }
        Ok(())
    }
}

/// What the file says of the stage's configuration, from the run's resolved inputs.
#[derive(Debug, Clone, Default)]
struct Config {
    model_id: String,
    tokenizer_id: Option<String>,
    workload: Option<Workload>,
    /// Seconds since the epoch of the run's start.
    started: Option<f64>,
}

/// `request_rate`, `burstiness` and `max_concurrency` of a stage as vLLM writes them (a
/// number, or `"inf"`; null when the workload is not known).
fn traffic(w: Option<&Workload>, stage: u32) -> (Value, Value, Value) {
    let number_or_inf = |x: f64| if x.is_finite() { json!(x) } else { json!("inf") };
    let stage = w.and_then(|w| w.stages.get(stage.checked_sub(1)? as usize));
    match stage.map(|s| (s, s.load())) {
        // A ramp's rate is its mean (its ends are in ramp_up_*, as vLLM's own ramp-up writes).
        Some((s, Load::Rate { rate, burstiness, max_concurrency, .. })) => {
            (number_or_inf(s.asked_rate().unwrap_or(rate)), number_or_inf(burstiness), json!(max_concurrency))
        }
        // vLLM's closed loop: every request at once, behind its concurrency gate; the
        // burstiness is its default (it has no effect at an infinite rate).
        Some((_, Load::Concurrency(c))) => (json!("inf"), json!(1.0), json!(c)),
        None => (Value::Null, Value::Null, Value::Null),
    }
}

/// vLLM's `date`: `%Y%m%d-%H%M%S` (UTC here: vLLM writes the client's local time).
fn date(epoch_s: f64) -> String {
    // `2026-11-23T21:37:38.123Z` → `20261123-213738`.
    let t = crate::workdir::utc_at(epoch_s);
    let digits: String = t.chars().take(19).filter(char::is_ascii_digit).collect();
    format!("{}-{}", &digits[..8.min(digits.len())], &digits[8.min(digits.len())..])
}

/// The file of one stage's requests (an empty stage too).
fn build<'a>(
    stage: &StageStats,
    req: &'a mut Requests,
    cfg: &Config,
    convention: Convention,
) -> Result<Document<'a>, AnalysisError> {
    let n = req.len();
    let spill_error = |source| AnalysisError::Write { path: req.dir.clone(), source };
    let max_concurrent_requests = req.busiest().map_err(spill_error)?;
    let (completed, total_input, total_output) = (req.completed, req.total_input, req.total_output);
    let (mut ttft, mut tpot, mut e2el) = req.samples().map_err(spill_error)?;
    let (ttft, tpot, e2el) = (stats::vllm(&mut ttft), stats::vllm(&mut tpot), stats::vllm(&mut e2el));
    let itl = req.itl.summary();
    let (mut summaries, mut unmeasured) = (Vec::new(), Vec::new());
    for (name, s) in METRICS.iter().zip([ttft, tpot, itl, e2el]) {
        if s.count == 0 && completed > 0 {
            unmeasured.push(*name);
        }
        summaries.push((format!("mean_{name}_ms"), s.mean * 1000.0));
        summaries.push((format!("median_{name}_ms"), s.median * 1000.0));
        summaries.push((format!("std_{name}_ms"), s.std * 1000.0));
        for (p, v) in &s.percentiles {
            summaries.push((format!("{}_{name}_ms", percentile_key(*p)), v * 1000.0));
        }
    }
    let duration = stage.duration;
    let (request_rate, burstiness, max_concurrency) = traffic(cfg.workload.as_ref(), stage.stage);
    let ramp = cfg
        .workload
        .as_ref()
        .and_then(|w| w.stages.get(stage.stage.checked_sub(1)? as usize))
        .and_then(|s| s.ramp());
    let chat = cfg.workload.as_ref().is_some_and(|w| w.api.endpoint == Endpoint::Chat);
    let backend = if chat { "openai-chat" } else { "openai" };
    let end = cfg.started.map(|s| s + stage.window.1);
    Ok(Document {
        date: date(end.unwrap_or_else(now)),
        endpoint_type: backend,
        backend,
        label: None,
        model_id: cfg.model_id.clone(),
        tokenizer_id: cfg.tokenizer_id.clone(),
        num_prompts: n,
        request_rate,
        burstiness,
        max_concurrency,
        ramp_up_strategy: ramp.map(|_| "linear"),
        ramp_up_start_rps: ramp.map(|r| r.from),
        ramp_up_end_rps: ramp.map(|r| r.to),
        duration,
        completed,
        failed: n as u64 - completed,
        total_input_tokens: total_input,
        total_output_tokens: total_output,
        request_throughput: completed as f64 / duration,
        request_goodput: stage.request_goodput,
        output_throughput: total_output as f64 / duration,
        total_token_throughput: (total_input + total_output) as f64 / duration,
        input_lens: Spilled::of(req, Array::InputLens),
        output_lens: Spilled::of(req, Array::OutputLens),
        ttfts: Spilled::of(req, Array::Ttfts),
        itls: Spilled::of(req, Array::Itls),
        latencies: Spilled::of(req, Array::Latencies),
        start_times: Spilled::of(req, Array::StartTimes),
        queue_times: Spilled::of(req, Array::QueueTimes),
        generated_texts: Blank(n),
        errors: Spilled::of(req, Array::Errors),
        max_output_tokens_per_s: stage.max_output_tokens_per_s,
        max_concurrent_requests,
        rtfx: 0.0,
        summaries: Ordered(summaries),
        benchflow_convention: convention.as_str(),
        benchflow_unmeasured: unmeasured,
        guidellm_metrics: (convention == Convention::Guidellm).then(|| guidellm(stage)),
    })
}

/// vLLM 0.33's `max_concurrent_requests`: the most successful requests active within one
/// second, the seconds counted from the earliest successful send, a request active in every
/// second from its send's to its end's, both included. Not `stats.json`'s exact peak overlap
/// (which vLLM adopted later): a request that ended early in a second counts in it.
#[cfg(test)]
fn busiest_second(ok: &[(f64, f64)]) -> u64 {
    let mut b = Busiest::from(ok.iter().map(|r| r.0).min_by(f64::total_cmp).unwrap_or(f64::INFINITY));
    for (sent, latency) in ok {
        b.add(*sent, *latency);
    }
    b.most()
}

/// [`busiest_second`]'s count: +1 in the second of a send, −1 after the second of its end,
/// summed by second (the seconds bounded by the records' times, at most a week); the peak is
/// the largest running sum at the end of a second.
#[derive(Debug)]
struct Busiest {
    t0: f64,
    diff: Vec<i64>,
}

impl From<f64> for Busiest {
    /// Seconds counted from `t0` (the earliest successful send).
    fn from(t0: f64) -> Busiest {
        Busiest { t0, diff: Vec::new() }
    }
}

impl Busiest {
    fn add(&mut self, sent: f64, latency: f64) {
        let (a, b) = (sent - self.t0, sent + latency - self.t0);
        let (a, b) = (a as u64 as usize, b as u64 as usize + 1);
        if self.diff.len() <= a.max(b) {
            self.diff.resize(a.max(b) + 1, 0);
        }
        self.diff[a] += 1;
        self.diff[b] -= 1;
    }

    fn most(&self) -> u64 {
        let (mut now, mut most) = (0i64, 0i64);
        for d in &self.diff {
            now += d;
            most = most.max(now);
        }
        most as u64
    }
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// vLLM's percentile key: `p99`, `p99.9`, `p0.1` (a whole percentile without its decimals).
fn percentile_key(p: f64) -> String {
    if p.fract() == 0.0 { format!("p{}", p as u64) } else { format!("p{p}") }
}

/// GuideLLM's percentile names (`p001` is 0.1, `p999` 99.9).
fn guidellm_key(p: f64) -> String {
    if p == 0.1 {
        "p001".into()
    } else if p == 99.9 {
        "p999".into()
    } else {
        format!("p{:02}", p as u64)
    }
}

/// The stage's statistics under GuideLLM's definitions (the analysis's, under
/// `convention: guidellm`), with GuideLLM's names and units: ms, `request_latency` in seconds.
fn guidellm(s: &StageStats) -> Value {
    let dist = |m: &Summary, scale: f64| {
        let percentiles: serde_json::Map<String, Value> =
            m.percentiles.iter().map(|(p, v)| (guidellm_key(*p), json!(v * scale))).collect();
        json!({
            "mean": m.mean * scale, "median": m.median * scale, "std_dev": m.std * scale,
            "min": m.min * scale, "max": m.max * scale, "percentiles": percentiles,
        })
    };
    json!({
        "definitions": "GuideLLM's (benchflow convention: guidellm): TPOT and ITL token-weighted, \
                        request_latency to the stream's end, percentiles by nearest rank (no \
                        interpolation); this file's vLLM keys keep vLLM's definitions",
        "time_to_first_token_ms": dist(&s.ttft, 1.0),
        "time_per_output_token_ms": dist(&s.tpot, 1.0),
        "inter_token_latency_ms": dist(&s.itl, 1.0),
        "request_latency": dist(&s.e2el, 1e-3),
        "requests_per_second": { "mean": s.request_throughput },
        "output_tokens_per_second": { "mean": s.output_throughput },
    })
}

/// The document, its keys in vLLM's order.
#[derive(Debug, Serialize)]
struct Document<'a> {
    date: String,
    endpoint_type: &'static str,
    backend: &'static str,
    label: Option<String>,
    model_id: String,
    tokenizer_id: Option<String>,
    num_prompts: usize,
    request_rate: Value,
    burstiness: Value,
    max_concurrency: Value,
    /// A ramp stage (benchflow's `ramp_to`): vLLM's ramp-up keys, present only then.
    #[serde(skip_serializing_if = "Option::is_none")]
    ramp_up_strategy: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ramp_up_start_rps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ramp_up_end_rps: Option<f64>,
    duration: f64,
    completed: u64,
    failed: u64,
    total_input_tokens: u64,
    total_output_tokens: u64,
    request_throughput: f64,
    request_goodput: Option<f64>,
    output_throughput: f64,
    total_token_throughput: f64,
    input_lens: Spilled<'a>,
    output_lens: Spilled<'a>,
    ttfts: Spilled<'a>,
    itls: Spilled<'a>,
    latencies: Spilled<'a>,
    start_times: Spilled<'a>,
    queue_times: Spilled<'a>,
    generated_texts: Blank,
    errors: Spilled<'a>,
    max_output_tokens_per_s: f64,
    max_concurrent_requests: u64,
    rtfx: f64,
    #[serde(flatten)]
    summaries: Ordered,
    benchflow_convention: &'static str,
    /// Metrics without a sample although requests completed (their keys read 0, as vLLM writes
    /// them): `itl` from a harness that records no chunk times (GuideLLM), `tpot` when every
    /// request had one token.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    benchflow_unmeasured: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    guidellm_metrics: Option<Value>,
}

/// A spilled array of the requests, written in request order.
#[derive(Debug)]
struct Spilled<'a> {
    segments: &'a [Segment],
    array: Array,
    perm: &'a [u32],
}

impl Spilled<'_> {
    fn of(req: &Requests, array: Array) -> Spilled<'_> {
        Spilled { segments: &req.segments, array, perm: &req.perm }
    }

    fn write<T: Serialize, S: SerializeSeq>(&self, seq: &mut S, decode: Decode<T>) -> Result<(), S::Error> {
        use serde::ser::Error;
        let mut r = Reorder::open(self.segments, self.array, decode).map_err(S::Error::custom)?;
        for &row in self.perm {
            seq.serialize_element(&r.get(row).map_err(S::Error::custom)?)?;
        }
        Ok(())
    }
}

impl Serialize for Spilled<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.perm.len()))?;
        match self.array {
            Array::InputLens | Array::OutputLens => self.write(&mut seq, read_u64)?,
            Array::Errors => self.write(&mut seq, read_text)?,
            Array::Itls => self.write(&mut seq, read_gaps)?,
            Array::Success => self.write(&mut seq, read_bool)?,
            Array::Ttfts | Array::Latencies | Array::StartTimes | Array::QueueTimes => {
                self.write(&mut seq, read_f64)?
            }
            Array::Order => {
                return Err(serde::ser::Error::custom("the request order is no array of the file"));
            }
        }
        seq.end()
    }
}

/// `n` empty strings.
#[derive(Debug)]
struct Blank(usize);

impl Serialize for Blank {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0))?;
        for _ in 0..self.0 {
            seq.serialize_element("")?;
        }
        seq.end()
    }
}

/// Keys in the order given.
#[derive(Debug)]
struct Ordered(Vec<(String, f64)>);

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The configuration the files quote: the run's model and start (`run.json`), the workload
/// (`inputs/resolved.yaml` of the work directory), the tokenizer an external tool was given.
fn config(a: &Analysis, workdir: &Path, results: &Path) -> Config {
    let values = super::resolved_values(workdir);
    let workload = serde_json::from_value(values["workload"].clone()).ok();
    let model_id = a
        .info
        .as_ref()
        .map(|i| i.model.clone())
        .filter(|m| !m.is_empty())
        .or_else(|| values["model"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    let tokenizer = results.join("native/tokenizer");
    let tokenizer_id = tokenizer
        .is_dir()
        .then(|| std::path::absolute(&tokenizer).unwrap_or(tokenizer).display().to_string());
    let started = a.info.as_ref().and_then(|i| crate::workdir::parse_utc(&i.started_at));
    Config { model_id, tokenizer_id, workload, started }
}

/// Writes `doc` compact, as vLLM does (pretty-printed, `itls` would take a line per gap),
/// streamed into a temporary file renamed over `path` (the file of a long run holds every gap).
fn write_streamed(path: &Path, doc: &Document) -> Result<(), AnalysisError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp).and_then(|f| {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
        let mut json = serde_json::Serializer::with_formatter(&mut w, Micros);
        doc.serialize(&mut json).map_err(std::io::Error::other)?;
        w.flush()
    });
    written.and_then(|()| std::fs::rename(&tmp, path)).map_err(|source| {
        // A full disk leaves no half file behind.
        let _ = std::fs::remove_file(&tmp);
        AnalysisError::Write { path: path.to_path_buf(), source }
    })
}

/// serde_json's compact output, with a fast path for the values that are whole microseconds
/// in seconds (every ITL gap: most of a long run's file): written from the integer, the same
/// number its shortest round-trip form gives (no other decimal of at most 6 places is nearer).
struct Micros;

impl serde_json::ser::Formatter for Micros {
    fn write_f64<W: ?Sized + std::io::Write>(&mut self, w: &mut W, value: f64) -> std::io::Result<()> {
        if (0.0..9e9).contains(&value) {
            // Truncating v·10⁶ + ½ rounds it (v ≥ 0); the division tells whether v is that.
            let us = (value * 1e6 + 0.5) as u64;
            if us as f64 / 1e6 == value {
                return w.write_all(micros_text(us, &mut [0; 24]));
            }
        }
        serde_json::ser::CompactFormatter.write_f64(w, value)
    }
}

/// `us` microseconds as seconds in decimal (`12.0`, `0.0081`), written into the end of `buf`.
fn micros_text(us: u64, buf: &mut [u8; 24]) -> &[u8] {
    let (mut whole, frac) = (us / 1_000_000, (us % 1_000_000) as u32);
    let digits =
        [frac / 100_000, frac / 10_000 % 10, frac / 1_000 % 10, frac / 100 % 10, frac / 10 % 10, frac % 10];
    // The fraction's digits, trailing zeros dropped (at least one: `1.0`).
    let kept = digits.iter().rposition(|d| *d != 0).map_or(1, |i| i + 1);
    let mut start = buf.len() - kept;
    for (b, d) in buf[start..].iter_mut().zip(digits) {
        *b = b'0' + d as u8;
    }
    start -= 1;
    buf[start] = b'.';
    loop {
        start -= 1;
        buf[start] = b'0' + (whole % 10) as u8;
        whole /= 10;
        if whole == 0 {
            break;
        }
    }
    &buf[start..]
}

/// Writes every stage's file into `out`, from the arrays the analysis's pass gathered.
pub(crate) fn write_all(
    out: &Path,
    workdir: &Path,
    results: &Path,
    a: &Analysis,
    mut arrays: Arrays,
) -> Result<(), AnalysisError> {
    if let Some(source) = arrays.failed.take() {
        return Err(AnalysisError::Write { path: arrays.dir.clone(), source });
    }
    let cfg = config(a, workdir, results);
    for s in arrays.stages.values_mut() {
        if let Err(source) = s.sort() {
            return Err(AnalysisError::Write { path: arrays.dir.clone(), source });
        }
    }
    for s in &a.stages {
        if !arrays.stages.contains_key(&s.stage) {
            let mut empty = Requests::new(arrays.dir.join(format!("empty-{}", s.stage)));
            empty.sort().map_err(|e| arrays.spill_error(e))?;
            arrays.stages.insert(s.stage, empty);
        }
    }
    // The stages' files are written on as many threads as there are cores (a long run's file
    // is mostly its numbers' text), each taking the next stage left.
    let stats: BTreeMap<u32, &StageStats> = a.stages.iter().map(|s| (s.stage, s)).collect();
    let jobs: Vec<(&StageStats, &mut Requests)> =
        arrays.stages.iter_mut().filter_map(|(n, req)| stats.get(n).map(|s| (*s, req))).collect();
    let workers = std::thread::available_parallelism().map_or(1, usize::from).min(jobs.len()).max(1);
    let jobs = std::sync::Mutex::new(jobs.into_iter());
    let write = |(s, req): (&StageStats, &mut Requests)| {
        let doc = build(s, req, &cfg, a.convention)?;
        write_streamed(&out.join(file_name(s.stage)), &doc)
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let next = jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next();
                        match next {
                            Some(job) => write(job)?,
                            None => return Ok(()),
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::Map;

    use super::*;
    use crate::{
        harnesses::{Adapter, Clock, Export, vllm_bench::VllmBench},
        results::{RunInfo, StageWindow, Writer},
        spec::workload::Slo,
    };

    /// Recorded by `vllm bench serve` 0.33.0 (`--save-result --save-detailed`) against the
    /// simulator: 8 requests at 20 req/s constant, 3 failed (one refused, two cut short).
    const NATIVE: &str = include_str!("../../tests/integration/fixtures/native/vllm-bench-result.json");

    /// A work directory removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d = std::env::temp_dir().join(format!("bf-vllm-result-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(d.join("results")).unwrap();
            std::fs::create_dir_all(d.join("analysis")).unwrap();
            Dir(d)
        }
        fn results(&self) -> PathBuf {
            self.0.join("results")
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The native file with vLLM's `Infinity` (not JSON) as the `"inf"` it writes for a rate.
    fn native() -> Map<String, Value> {
        serde_json::from_str(&NATIVE.replace("Infinity", "\"inf\"")).unwrap()
    }

    /// The fixture's requests as the vllm-bench adapter records them, in a work directory as a
    /// `-H vllm-bench` run leaves it: records, run.json (the harness's window), the tokenizer
    /// given to the tool, the resolved workload (20 req/s constant, 8 requests, completions).
    fn fixture_run() -> Dir {
        let dir = Dir::new("fixture");
        let clock = Clock { unix_ns: 0, monotonic_s: 51685.0 };
        let export = Export { stage: 1, warmup: false, clock: &clock, path: Path::new("result.json") };
        let mut records = VllmBench.parse(NATIVE, export).unwrap();
        records.sort_by_key(|r| r.sent_ns);
        let mut w = Writer::new(std::fs::File::create(dir.results().join("requests.csv")).unwrap()).unwrap();
        for (i, r) in records.iter_mut().enumerate() {
            r.index = i as u64;
        }
        // Written as requests end, not in request order.
        for r in records.iter().rev() {
            w.write(r).unwrap();
        }
        w.flush().unwrap();
        let mut info = RunInfo::starting("http://h:1".into(), "meta-llama/Llama-3.1-8B-Instruct".into());
        info.started_at = "2026-11-26T14:52:37.500Z".into();
        info.stages.push(StageWindow {
            stage: 1,
            label: "stage 1".into(),
            start_s: records.iter().map(|r| r.scheduled_ns).min().unwrap() as f64 * 1e-9,
            end_s: records.iter().map(|r| r.end_ns).max().unwrap() as f64 * 1e-9,
            dispatched: 8,
            rate: None,
            ramp: None,
        });
        std::fs::write(dir.results().join("run.json"), serde_json::to_vec(&info).unwrap()).unwrap();
        std::fs::create_dir_all(dir.results().join("native/tokenizer")).unwrap();
        let workload = Workload::from_yaml(
            "dataset: { random: { input_len: 32, output_len: 8 } }\n\
             stages: [ { rate: 20, arrival: constant, requests: 8 } ]\n",
            "w.yaml",
        )
        .unwrap();
        let values = json!({ "values": { "workload": workload } });
        std::fs::create_dir_all(dir.0.join("inputs")).unwrap();
        std::fs::write(dir.0.join("inputs/resolved.yaml"), values.to_string()).unwrap();
        dir
    }

    /// Analyses the run under `convention` and reads back stage 1's file.
    fn written(dir: &Dir, convention: Convention) -> (Map<String, Value>, Analysis) {
        let out = dir.0.join("analysis");
        let mut arrays = Arrays::new(&out);
        let a = super::super::read::compute_into(&dir.results(), convention, &Slo::default(), &mut arrays)
            .unwrap();
        write_all(&out, &dir.0, &dir.results(), &a, arrays).unwrap();
        let text = std::fs::read_to_string(dir.0.join("analysis").join(file_name(1))).unwrap();
        (serde_json::from_str(&text).unwrap(), a)
    }

    /// A summary key vLLM writes for a metric, as `--percentile-metrics` and
    /// `--metric-percentiles` choose (`mean_ttft_ms`, `p99.9_e2el_ms`).
    fn is_summary_key(k: &str) -> bool {
        let Some(rest) = k.strip_suffix("_ms") else { return false };
        let Some((stat, metric)) = rest.split_once('_') else { return false };
        let stat_ok = ["mean", "median", "std"].contains(&stat)
            || stat.strip_prefix('p').is_some_and(|p| p.parse::<f64>().is_ok());
        stat_ok && METRICS.contains(&metric)
    }

    /// The JSON type of a value, integers told from floats (Python writes both).
    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(n) if n.is_f64() => "float",
            Value::Number(_) => "int",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    fn floats(v: &Value) -> Vec<f64> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    /// Native file → the adapter's records → this writer → the native file again: the same keys
    /// (plus the E2EL and percentile summaries the adapter asks for, and the convention), the
    /// same JSON types, units and values within the records' nanosecond rounding.
    /// Any order of the rows reads back each row's own value, once: in order, reversed (the
    /// widest window), and shuffled within windows of every width.
    /// Whole microseconds are written from the integer, the same number serde_json writes;
    /// every other value as serde_json writes it.
    /// Gaps of any size read back as written (4 bytes below `u32::MAX` µs, 12 above).
    #[test]
    fn spilled_gaps_of_any_size_read_back() {
        let dir = Dir::new("gaps");
        let mut req = Requests::new(dir.0.join("1"));
        let gaps =
            [0, 5, u64::from(u32::MAX) - 1, u64::from(u32::MAX), u64::from(u32::MAX) + 7, 604_800_000_000];
        let r = Request { success: true, first: Some(1.0), last: Some(2.0), ..Request::default() };
        req.push(&r, &gaps).unwrap();
        assert!(!dir.0.join("1").exists(), "held in memory: no file yet");
        // Spilled after the first row: the second goes to the file after it.
        req.spill().unwrap();
        assert!(spill(&dir.0.join("1"), Array::Itls).exists());
        req.push(&r, &gaps[1..3]).unwrap();
        req.sort().unwrap();
        assert!(matches!(req.segments[..], [Segment::Dir(_)]), "{:?}", req.segments);
        let mut file = Segments::open(&req.segments, Array::Itls).unwrap();
        let secs = |g: &[u64]| g.iter().map(|us| crate::results::gap_secs(*us)).collect::<Vec<_>>();
        assert_eq!(read_gaps(&mut file).unwrap(), secs(&gaps));
        assert_eq!(read_gaps(&mut file).unwrap(), secs(&gaps[1..3]));
    }

    #[test]
    fn micros_are_written_as_the_numbers_they_are() {
        let write = |v: f64| {
            let mut out = Vec::new();
            let mut json = serde_json::Serializer::with_formatter(&mut out, Micros);
            v.serialize(&mut json).unwrap();
            String::from_utf8(out).unwrap()
        };
        let mut rng = crate::rng::Rng::new(9);
        let mut values: Vec<f64> =
            [0u64, 1, 9, 10, 100_000, 999_999, 1_000_000, 1_000_001, 8_123, 123_456_789_012]
                .iter()
                .map(|us| crate::results::gap_secs(*us))
                .collect();
        values.extend((0..20_000).map(|_| crate::results::gap_secs((rng.exponential(5_000.0)) as u64)));
        values.extend((0..2_000).map(|_| crate::results::gap_secs((rng.f64() * 1e15) as u64)));
        values.extend([0.1234567, 1e-9, -0.5, -0.000001, 1e300, 0.05012345678, f64::MIN_POSITIVE]);
        for v in values {
            let ours = write(v);
            let theirs = serde_json::to_string(&v).unwrap();
            assert_eq!(ours.parse::<f64>().unwrap(), v, "{ours} for {v} ({theirs})");
            if !theirs.contains('e') {
                assert_eq!(ours, theirs, "{v}");
            }
        }
    }

    #[test]
    fn a_spill_file_reads_back_in_any_order() {
        use std::io::Write;
        let dir = Dir::new("reorder");
        let n = 500u32;
        // The rows in three segments (parts of the records read apart), split unevenly: in a
        // spill file, in memory, in a spill file.
        let value = |row: u32| (u64::from(row) * 7 + 1).to_le_bytes();
        let mut segments = Vec::new();
        for (k, rows) in [0..137, 137..300, 300..n].into_iter().enumerate() {
            if k == 1 {
                let mut arrays: Vec<std::sync::Arc<[u8]>> =
                    vec![std::sync::Arc::from(Vec::new()); Array::ALL.len()];
                arrays[Array::InputLens as usize] = rows.flat_map(value).collect::<Vec<u8>>().into();
                segments.push(Segment::Memory(arrays));
                continue;
            }
            let d = dir.0.join(format!("part-{k}"));
            std::fs::create_dir_all(&d).unwrap();
            let mut f = std::fs::File::create(spill(&d, Array::InputLens)).unwrap();
            for row in rows {
                f.write_all(&value(row)).unwrap();
            }
            segments.push(Segment::Dir(d));
        }
        let mut rng = crate::rng::Rng::new(5);
        let mut orders: Vec<Vec<u32>> = vec![(0..n).collect(), (0..n).rev().collect()];
        for width in [2, 3, 17, 100, 499] {
            let mut o: Vec<u32> = (0..n).collect();
            for chunk in o.chunks_mut(width) {
                for i in (1..chunk.len()).rev() {
                    chunk.swap(i, (rng.f64() * (i + 1) as f64) as usize % (i + 1));
                }
            }
            orders.push(o);
        }
        for order in orders {
            let mut r = Reorder::open(&segments, Array::InputLens, read_u64).unwrap();
            for &row in &order {
                assert_eq!(r.get(row).unwrap(), u64::from(row) * 7 + 1, "{order:?}");
            }
            assert!(r.held.is_empty(), "every row asked, none held");
            assert!(r.get(order[0]).is_err(), "a row asked twice is an error, not another row's value");
        }
    }

    #[test]
    fn the_native_file_round_trips_through_the_records() {
        let dir = fixture_run();
        let (ours, a) = written(&dir, Convention::Vllm);
        let native = native();
        for k in native.keys() {
            assert!(ours.contains_key(k), "`{k}` missing");
        }
        for k in ours.keys().filter(|k| !native.contains_key(*k)) {
            assert!(is_summary_key(k) || k == "benchflow_convention", "`{k}` is not vLLM's");
        }
        for (k, v) in &native {
            assert_eq!(kind(&ours[k]), kind(v), "type of `{k}`: {} against {v}", ours[k]);
            if let (Some(a), Some(b)) = (ours[k].as_array(), v.as_array()) {
                assert_eq!(a.len(), b.len(), "`{k}`");
                for (x, y) in a.iter().zip(b) {
                    assert_eq!(kind(x), kind(y), "an element of `{k}`");
                }
            }
        }
        // The configuration.
        for k in
            ["endpoint_type", "backend", "label", "model_id", "num_prompts", "request_rate", "burstiness"]
        {
            assert_eq!(ours[k], native[k], "`{k}`");
        }
        assert_eq!(ours["max_concurrency"], Value::Null);
        assert_eq!(ours["date"], "20261126-145238", "the stage's end, UTC");
        assert!(ours["tokenizer_id"].as_str().unwrap().ends_with("results/native/tokenizer"));
        // Counts, exactly.
        for k in [
            "completed",
            "failed",
            "total_input_tokens",
            "total_output_tokens",
            "input_lens",
            "output_lens",
            "max_concurrent_requests",
            "max_output_tokens_per_s",
            "request_goodput",
            "rtfx",
        ] {
            assert_eq!(ours[k], native[k], "`{k}`");
        }
        // Per request, in seconds: within the records' rounding (a time to the nanosecond, a gap
        // to the microsecond).
        for k in ["ttfts", "latencies", "queue_times"] {
            for (x, y) in floats(&ours[k]).iter().zip(floats(&native[k])) {
                assert!((x - y).abs() < 2e-9, "`{k}`: {x} against {y}");
            }
        }
        for (x, y) in ours["itls"].as_array().unwrap().iter().zip(native["itls"].as_array().unwrap()) {
            assert_eq!(x.as_array().unwrap().len(), y.as_array().unwrap().len());
            for (g, h) in floats(x).iter().zip(floats(y)) {
                // `itl_us` holds whole microseconds.
                assert!((g - h).abs() < 1e-6, "a gap: {g} against {h}");
            }
        }
        // Send times on another clock: the same differences.
        let (s, t) = (floats(&ours["start_times"]), floats(&native["start_times"]));
        for i in 0..s.len() {
            assert!(((s[i] - s[0]) - (t[i] - t[0])).abs() < 2e-9);
        }
        // An error where vLLM has one; blank texts.
        for (x, y) in ours["errors"].as_array().unwrap().iter().zip(native["errors"].as_array().unwrap()) {
            assert_eq!(x.as_str().unwrap().is_empty(), y.as_str().unwrap().is_empty(), "{x} against {y}");
        }
        assert!(ours["generated_texts"].as_array().unwrap().iter().all(|t| t == ""));
        // Every summary vLLM wrote, in ms, by its definitions and numpy's interpolation.
        for (k, v) in native.iter().filter(|(k, _)| is_summary_key(k)) {
            let (x, y) = (ours[k].as_f64().unwrap(), v.as_f64().unwrap());
            // ms; within the microsecond the gaps are rounded to.
            assert!((x - y).abs() < 1e-3, "`{k}`: {x} against {y}");
        }
        // The duration is the stage's window (first scheduled → last end), which starts at the
        // first request where vLLM's starts one interval (50 ms at 20 req/s) earlier; the rates
        // are over it.
        let d = ours["duration"].as_f64().unwrap();
        assert!(close(d, a.stages[0].duration, 1e-12));
        assert!(close(d + 0.05, native["duration"].as_f64().unwrap(), 1e-3), "{d}");
        assert!(close(ours["request_throughput"].as_f64().unwrap(), 5.0 / d, 1e-12));
        assert!(close(ours["output_throughput"].as_f64().unwrap(), 40.0 / d, 1e-12));
        assert!(close(ours["total_token_throughput"].as_f64().unwrap(), 200.0 / d, 1e-12));
        // The summaries the fixture lacks are over the same requests: E2EL's median is the
        // median of the successes' latencies.
        let mut lat: Vec<f64> = floats(&native["latencies"]).into_iter().filter(|l| *l > 0.0).collect();
        lat.sort_by(f64::total_cmp);
        assert!(close(ours["median_e2el_ms"].as_f64().unwrap(), lat[2] * 1000.0, 1e-6));
        assert_eq!(ours["benchflow_convention"], "vllm");
        assert!(!ours.contains_key("guidellm_metrics"));
    }

    /// Under `convention: guidellm` the vLLM keys hold what they hold under `vllm` (vLLM's
    /// definitions), and GuideLLM's statistics are beside them under GuideLLM's names: a reader
    /// of `mean_tpot_ms` gets vLLM's TPOT whatever the convention.
    #[test]
    fn under_guidellm_the_vllm_keys_keep_their_meaning_and_guidellm_s_have_their_names() {
        let dir = fixture_run();
        let (v, _) = written(&dir, Convention::Vllm);
        let (g, a) = written(&dir, Convention::Guidellm);
        for (k, x) in v.iter().filter(|(k, _)| *k != "benchflow_convention") {
            assert_eq!(&g[k], x, "`{k}` changed with the convention");
        }
        assert_eq!(g["benchflow_convention"], "guidellm");
        let gm = &g["guidellm_metrics"];
        let s = &a.stages[0];
        // GuideLLM's TPOT includes the first token (~15 ms here); vLLM's does not (~10 ms).
        let (vllm_tpot, guidellm_tpot) =
            (g["mean_tpot_ms"].as_f64().unwrap(), gm["time_per_output_token_ms"]["mean"].as_f64().unwrap());
        assert!(close(guidellm_tpot, s.tpot.mean, 1e-12), "stats.json's, under guidellm");
        assert!(guidellm_tpot > vllm_tpot + 4.0, "{guidellm_tpot} against {vllm_tpot}");
        // Nearest rank: every GuideLLM percentile of TTFT is one of the TTFTs; vLLM's p99
        // interpolates between the two largest.
        let mut ttfts: Vec<f64> = floats(&g["ttfts"])
            .iter()
            .zip(floats(&g["latencies"]))
            .filter(|(_, l)| *l > 0.0)
            .map(|(t, _)| t * 1e3)
            .collect();
        ttfts.sort_by(f64::total_cmp);
        let ps = gm["time_to_first_token_ms"]["percentiles"].as_object().unwrap();
        assert_eq!(ps.len(), stats::PERCENTILES.len());
        for (name, p) in ps {
            assert!(
                ttfts.iter().any(|t| close(*t, p.as_f64().unwrap(), 1e-12)),
                "{name} = {p} is not a TTFT"
            );
        }
        // GuideLLM's `Percentiles` fields.
        let names: Vec<&str> = ps.keys().map(String::as_str).collect();
        let want = ["p001", "p01", "p05", "p10", "p25", "p50", "p75", "p90", "p95", "p99", "p999"];
        assert_eq!(names.len(), want.len());
        assert!(want.iter().all(|w| names.contains(w)), "{names:?}");
        let p99 = g["p99_ttft_ms"].as_f64().unwrap();
        assert!(p99 > ttfts[3] && p99 < ttfts[4], "{p99} in {ttfts:?}");
        // GuideLLM's request latency in its unit, seconds.
        assert!(close(gm["request_latency"]["mean"].as_f64().unwrap() * 1e3, s.e2el.mean, 1e-12));
    }

    /// vLLM 0.33's peak: requests counted in every 1-s bucket they touch, not by exact overlap.
    #[test]
    fn max_concurrent_requests_counts_requests_per_second_bucket_as_vllm_0_33() {
        // (sent, last token, succeeded), seconds.
        let rows =
            [(0.1, 0.9, true), (0.95, 1.2, true), (1.5, 1.6, true), (1.0, 1.1, false), (5.0, 8.5, true)];
        let ok = |rows: &[(f64, f64, bool)]| -> Vec<(f64, f64)> {
            rows.iter().filter(|r| r.2).map(|(sent, last, _)| (*sent, last - sent)).collect()
        };
        // Second 0 (from the first send, 0.1 s): the first two; second 1: the second and the
        // third; the failure does not count; the last alone in seconds 4 to 8. No two of them
        // overlap for more than an instant, yet vLLM 0.33 writes 2.
        assert_eq!(busiest_second(&ok(&rows)), 2);
        let mut a = rows;
        a[1].2 = false;
        assert_eq!(busiest_second(&ok(&a)), 1);
        assert_eq!(busiest_second(&[]), 0, "no success");
    }

    /// One generated request: (gaps in µs, a first token, output tokens, failed).
    type Gen = (Vec<u64>, bool, u64, bool);

    /// Generated runs of the awkward classes (stages where everything failed, requests with one
    /// token and so no ITL, successes reporting zero tokens, failures after streaming, times
    /// near the week a record may span, counts at their bound, warm-up rows among the stage's,
    /// rows in the order requests ended): each stage's file is JSON (no NaN, no Infinity) with
    /// vLLM's keys, every per-request array `num_prompts` long, in request order, every summary
    /// a number, the counts adding up.
    #[test]
    fn generated_records_give_files_with_vllm_s_keys_and_arrays_of_num_prompts() {
        let vllm_keys: Vec<String> = native().keys().cloned().collect();
        let arrays = [
            "input_lens",
            "output_lens",
            "ttfts",
            "itls",
            "latencies",
            "start_times",
            "queue_times",
            "generated_texts",
            "errors",
        ];
        let mut rng = crate::rng::Rng::new(28);
        let week_us = 604_800_000_000u64;
        // (stages where everything failed, successes without a gap, stages near the week's end)
        let mut seen = (0, 0, 0);
        for case in 0..60 {
            let dir = Dir::new("gen");
            let mut rows = Vec::new();
            let mut stages: BTreeMap<u32, Vec<Gen>> = BTreeMap::new();
            for stage in 1..=1 + rng.below(3) as u32 {
                // The stage's class: mixed, all failed, all single-token, huge.
                let class = rng.below(4);
                seen.2 += u64::from(class == 3);
                let n = 1 + rng.below(12);
                let huge = class == 3;
                let scale = if huge { 10_000_000_000 } else { 100_000 };
                // Arrivals in request order; sends (and ends) in any.
                let mut arrival = if huge { week_us / 2 } else { 0 };
                for index in 0..n {
                    arrival += rng.below(scale / 10);
                    let sched = arrival;
                    let sent = sched + rng.below(1000);
                    let failed = class == 1 || (class != 2 && rng.chance(0.3));
                    let first = !(failed && rng.chance(0.5));
                    let gaps: Vec<u64> = if !first || class == 2 || rng.chance(0.2) {
                        Vec::new()
                    } else {
                        (0..rng.below(6)).map(|_| 1 + rng.below(scale)).collect()
                    };
                    let out = match rng.below(4) {
                        _ if !first => 0,
                        0 => 0,
                        _ if huge => crate::results::MAX_COUNT,
                        _ => gaps.len() as u64 + 1,
                    };
                    let prompt = if huge { crate::results::MAX_COUNT } else { rng.below(5000) };
                    let f = sent + 1 + rng.below(scale);
                    let last = f + gaps.iter().sum::<u64>();
                    let end = if first { last + rng.below(1000) } else { sent + rng.below(scale) };
                    let (ft, lt) =
                        if first { (format!("{f}.000"), format!("{last}.000")) } else { Default::default() };
                    let chunks = if first { gaps.len() + 1 } else { 0 };
                    let (status, kind, error) = match (failed, first) {
                        (false, _) => (200, "", ""),
                        (true, true) => (200, "aborted", "cut short"),
                        (true, false) => (500, "http", "HTTP 500 Internal Server Error"),
                    };
                    let itl: Vec<String> = gaps.iter().map(u64::to_string).collect();
                    rows.push(format!(
                        "{stage},{index},0,{sched}.000,{sent}.000,{ft},{lt},{end}.000,{chunks},{prompt},{out},usage,{status},{kind},{error},{}",
                        itl.join(" ")
                    ));
                    stages.entry(stage).or_default().push((gaps, first, out, failed));
                    if rng.chance(0.1) {
                        rows.push(format!(
                            "{stage},{},1,0.000,0.000,,,5.000,0,1,0,usage,500,http,warm-up,",
                            n + index
                        ));
                    }
                }
            }
            rows.reverse();
            let csv = format!("{}\n{}\n", crate::results::HEADER.join(","), rows.join("\n"));
            std::fs::write(dir.results().join("requests.csv"), &csv).unwrap();
            let out = dir.0.join("analysis");
            let mut sink = Arrays::new(&out);
            let a = super::super::read::compute_into(
                &dir.results(),
                Convention::Vllm,
                &Slo::default(),
                &mut sink,
            )
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{csv}"));
            write_all(&out, &dir.0, &dir.results(), &a, sink).unwrap();
            for (stage, made) in &stages {
                let text = std::fs::read_to_string(dir.0.join("analysis").join(file_name(*stage))).unwrap();
                assert!(!text.contains("NaN") && !text.contains("Infinity"), "case {case}");
                let doc: Map<String, Value> = serde_json::from_str(&text).unwrap();
                let why = format!("case {case}, stage {stage}: {text}");
                for k in &vllm_keys {
                    assert!(doc.contains_key(k), "`{k}` missing; {why}");
                }
                let n = made.len();
                assert_eq!(doc["num_prompts"], n, "{why}");
                for k in arrays {
                    assert_eq!(doc[k].as_array().map(Vec::len), Some(n), "`{k}`; {why}");
                }
                for (k, v) in doc.iter().filter(|(k, _)| is_summary_key(k)) {
                    assert!(v.as_f64().is_some_and(f64::is_finite), "`{k}` = {v}; {why}");
                }
                for k in ["ttfts", "latencies", "start_times", "queue_times"] {
                    assert!(floats(&doc[k]).iter().all(|x| x.is_finite() && *x >= 0.0), "`{k}`; {why}");
                }
                // In request order: each request's gaps, output and error where it was generated.
                let completed = made.iter().filter(|g| !g.3).count();
                assert_eq!(doc["completed"], completed, "{why}");
                assert_eq!(doc["failed"], n - completed, "{why}");
                for (i, (gaps, first, out, failed)) in made.iter().enumerate() {
                    assert_eq!(doc["itls"][i].as_array().unwrap().len(), gaps.len(), "request {i}; {why}");
                    assert_eq!(doc["output_lens"][i], if *failed { 0 } else { *out }, "request {i}; {why}");
                    assert_eq!(doc["errors"][i] == "", !failed, "request {i}; {why}");
                    assert_eq!(doc["ttfts"][i].as_f64().unwrap() > 0.0, *first, "request {i}; {why}");
                    assert_eq!(doc["latencies"][i].as_f64().unwrap() > 0.0, !failed, "request {i}; {why}");
                }
                let outs: u64 =
                    doc["output_lens"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).sum();
                assert_eq!(doc["total_output_tokens"], outs, "{why}");
                seen.1 += made.iter().filter(|g| !g.3 && g.0.is_empty()).count();
                // ITL without a gap among the successes reads 0 and is said to be unmeasured.
                let no_itl = completed > 0 && made.iter().all(|g| g.3 || g.0.is_empty());
                let said =
                    doc.get("benchflow_unmeasured").and_then(Value::as_array).cloned().unwrap_or_default();
                assert_eq!(said.contains(&"itl".into()), no_itl, "{why}");
                if completed == 0 {
                    seen.0 += 1;
                    assert!(doc.iter().filter(|(k, _)| is_summary_key(k)).all(|(_, v)| v == 0.0), "{why}");
                    assert_eq!(doc["max_concurrent_requests"], 0, "{why}");
                }
            }
        }
        assert!(seen.0 > 5 && seen.1 > 5 && seen.2 > 5, "the classes were not all drawn: {seen:?}");
    }
}

#[cfg(test)]
mod busiest_tests {
    use super::busiest_second;

    /// The per-second sums give the peak the sort of every +1/−1 event gave.
    #[test]
    fn the_per_second_peak_equals_the_sort_of_all_events() {
        fn by_events(ok: &[(f64, f64)]) -> u64 {
            let Some(t0) = ok.iter().map(|r| r.0).min_by(f64::total_cmp) else { return 0 };
            let mut events: Vec<(u64, i64)> = ok
                .iter()
                .flat_map(|(s, l)| {
                    let (a, b) = (s - t0, s + l - t0);
                    [(a as u64, 1), (b as u64 + 1, -1)]
                })
                .collect();
            events.sort_unstable_by_key(|e| (e.0, e.1));
            let (mut now, mut most) = (0i64, 0i64);
            for (_, d) in events {
                now += d;
                most = most.max(now);
            }
            most as u64
        }
        let mut rng = crate::rng::Rng::new(33);
        for _ in 0..300 {
            let ok: Vec<(f64, f64)> = (0..rng.below(50))
                .map(|_| (rng.f64() * 20.0 + 3.0, if rng.chance(0.1) { 0.0 } else { rng.exponential(1.5) }))
                .collect();
            assert_eq!(busiest_second(&ok), by_events(&ok), "{ok:?}");
        }
    }
}
