//! Accumulating a stage's requests while reading, and turning what was gathered into the
//! stage's statistics.

use std::collections::BTreeMap;

use super::{
    Convention, StageStats,
    stats::{self, Summary},
};
use crate::spec::workload::Slo;

/// One request as read back (seconds since the run's start).
#[derive(Debug, Clone, Default)]
pub(super) struct Request {
    pub(super) stage: u32,
    pub(super) warmup: bool,
    pub(super) scheduled: f64,
    pub(super) sent: f64,
    pub(super) first: Option<f64>,
    pub(super) last: Option<f64>,
    pub(super) end: f64,
    pub(super) prompt_tokens: u64,
    pub(super) output_tokens: u64,
    /// Content chunks (`gaps` has one fewer, unless the harness did not record them).
    pub(super) chunks: u64,
    pub(super) estimated: bool,
    pub(super) error_kind: String,
}

/// Everything gathered for one stage while reading.
#[derive(Debug, Default)]
pub(super) struct Acc {
    pub(super) label: String,
    pub(super) window: Option<(f64, f64)>,
    pub(super) first_sent: f64,
    pub(super) last_sent: f64,
    /// Requests sent (completed, failed or cancelled).
    pub(super) sent: u64,
    /// The rate asked of the stage (run.json), requests/s.
    pub(super) asked_rate: Option<f64>,
    pub(super) last_end: f64,
    pub(super) completed: u64,
    pub(super) failed: BTreeMap<String, u64>,
    pub(super) estimated: u64,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    /// Prompt and output tokens of each completed request.
    pub(super) input_lens: Vec<f64>,
    pub(super) output_lens: Vec<f64>,
    pub(super) ttft: Vec<f64>,
    pub(super) tpot: Vec<f64>,
    pub(super) e2el: Vec<f64>,
    pub(super) itl: Vec<f64>,
    pub(super) queue: Vec<f64>,
    pub(super) intervals: Vec<(f64, f64)>,
    pub(super) good: u64,
    /// Content chunks per millisecond of run time (for the peak 1-s output rate).
    pub(super) chunk_ms: MsGrid,
    pub(super) first_success_sent: f64,
    // GuideLLM pairs
    pub(super) g_latency: Vec<(f64, f64)>,
    pub(super) g_ttft: Vec<(f64, f64)>,
    pub(super) g_tpot: Vec<(f64, f64)>,
    pub(super) g_itl: Vec<(f64, f64)>,
    pub(super) g_first_token: f64,
    pub(super) g_last_token: f64,
    pub(super) cancelled: u64,
}

pub(super) fn accumulate(acc: &mut Acc, r: &Request, gaps: &[f64], slo: &Slo) {
    if acc.completed == 0 && acc.failed.is_empty() {
        acc.first_sent = r.sent;
        acc.first_success_sent = f64::INFINITY;
        acc.g_first_token = f64::INFINITY;
    }
    acc.first_sent = acc.first_sent.min(r.sent);
    acc.last_sent = acc.last_sent.max(r.sent);
    acc.sent += 1;
    acc.last_end = acc.last_end.max(r.end);
    let (Some(first), Some(last)) = (r.first, r.last) else {
        *acc.failed
            .entry(if r.error_kind.is_empty() { "unknown".into() } else { r.error_kind.clone() })
            .or_default() += 1;
        return;
    };
    if !r.error_kind.is_empty() {
        if r.error_kind == "cancelled" {
            acc.cancelled += 1;
        }
        *acc.failed.entry(r.error_kind.clone()).or_default() += 1;
        return;
    }
    acc.completed += 1;
    acc.estimated += u64::from(r.estimated);
    acc.input_tokens += r.prompt_tokens;
    acc.output_tokens += r.output_tokens;
    acc.input_lens.push(r.prompt_tokens as f64);
    acc.output_lens.push(r.output_tokens as f64);
    let ttft = first - r.sent;
    let e2el = last - r.sent;
    let n = r.output_tokens;
    let tpot = if n > 1 { Some((e2el - ttft) / (n - 1) as f64) } else { None };
    acc.ttft.push(ttft);
    acc.e2el.push(e2el);
    acc.tpot.extend(tpot);
    acc.itl.extend_from_slice(gaps);
    acc.queue.push(r.sent - r.scheduled);
    acc.intervals.push((r.sent, r.sent + e2el));
    acc.first_success_sent = acc.first_success_sent.min(r.sent);
    let good = slo.ttft.is_none_or(|s| ttft <= s.0)
        && slo.tpot.is_none_or(|s| tpot.unwrap_or(0.0) <= s.0)
        && slo.e2el.is_none_or(|s| e2el <= s.0);
    acc.good += u64::from(good);
    // Chunk arrival times on a 1 ms grid of run time.
    let mut t = first;
    acc.chunk_ms.add(t, 1);
    for g in gaps {
        t += g;
        acc.chunk_ms.add(t, 1);
    }
    if gaps.is_empty() && r.chunks > 1 {
        // A harness that recorded only the first and last chunk (GuideLLM): the ones between
        // are spread evenly for the token rate over time; they give no ITL. At most
        // `MAX_SPREAD` points, each carrying its share of the chunks.
        let n = r.chunks - 1;
        let points = n.min(MAX_SPREAD);
        for k in 1..=points {
            let weight = n / points + u64::from(k <= n % points);
            acc.chunk_ms.add(first + (last - first) * k as f64 / points as f64, weight);
        }
    }
    // GuideLLM: latency to the stream's end; TPOT over all tokens incl. the first; ITL over the rest.
    acc.g_latency.push((r.end - r.sent, 1.0));
    acc.g_ttft.push((ttft, 1.0));
    if n > 0 {
        acc.g_tpot.push(((last - r.sent) / n as f64, n as f64));
    }
    if n > 1 {
        acc.g_itl.push(((last - first) / (n - 1) as f64, (n - 1) as f64));
    }
    acc.g_first_token = acc.g_first_token.min(first);
    acc.g_last_token = acc.g_last_token.max(last);
}

/// The most points one request's chunks are spread over when only its first and last were
/// recorded (more chunks share the points).
const MAX_SPREAD: u64 = 4096;

/// Milliseconds in one page of an [`MsGrid`].
const PAGE: usize = 1024;

/// Counts on a 1 ms grid of run time, kept in pages of 1,024 ms allocated when first touched:
/// memory follows the seconds that had output, not the latest time in the records.
#[derive(Debug, Default)]
pub(super) struct MsGrid {
    /// Page number → index in `pages`.
    index: std::collections::HashMap<usize, usize>,
    pages: Vec<(usize, Box<[u32; PAGE]>)>,
    /// The page touched last (most chunks follow the one before them closely).
    last: Option<(usize, usize)>,
}

impl MsGrid {
    /// Adds `n` at time `t` (seconds; a time that is not finite or is negative is not counted,
    /// the readers having refused such rows).
    pub(super) fn add(&mut self, t: f64, n: u64) {
        if !(t.is_finite() && t >= 0.0) {
            return;
        }
        let ms = (t * 1000.0) as usize;
        let (page, cell) = (ms / PAGE, ms % PAGE);
        let slot = match self.last {
            Some((p, slot)) if p == page => slot,
            _ => {
                let next = self.pages.len();
                let slot = *self.index.entry(page).or_insert(next);
                if slot == next {
                    self.pages.push((page, Box::new([0; PAGE])));
                }
                self.last = Some((page, slot));
                slot
            }
        };
        let c = &mut self.pages[slot].1[cell];
        *c = c.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// (millisecond, count) of every cell holding something, in time order.
    pub(super) fn cells(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        let mut pages: Vec<&(usize, Box<[u32; PAGE]>)> = self.pages.iter().collect();
        pages.sort_unstable_by_key(|p| p.0);
        pages.into_iter().flat_map(|(page, cells)| {
            cells.iter().enumerate().filter(|(_, n)| **n > 0).map(move |(i, n)| (page * PAGE + i, *n))
        })
    }
}

fn ms(mut s: Summary) -> Summary {
    s.mean *= 1000.0;
    s.median *= 1000.0;
    s.std *= 1000.0;
    s.min *= 1000.0;
    s.max *= 1000.0;
    for (_, v) in &mut s.percentiles {
        *v *= 1000.0;
    }
    s
}

/// Exact peak overlap of half-open intervals (departures before arrivals at ties).
fn max_overlap(intervals: &[(f64, f64)]) -> u64 {
    let mut events: Vec<(f64, i8)> = intervals.iter().flat_map(|(a, b)| [(*a, 1), (*b, -1)]).collect();
    events.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut cur, mut best) = (0i64, 0i64);
    for (_, d) in events {
        cur += i64::from(d);
        best = best.max(cur);
    }
    best as u64
}

pub(super) fn finish(stage: u32, mut acc: Acc, convention: Convention, slo: &Slo) -> StageStats {
    let (start, end) = acc.window.unwrap_or((acc.first_sent, acc.last_end));
    let duration = (end - start).max(1e-9);
    let failed: u64 = acc.failed.values().sum();
    // Peak 1-s output rate, buckets from the earliest successful request's start.
    let max_tok_s = if acc.first_success_sent.is_finite() {
        let s0 = (acc.first_success_sent * 1000.0) as usize;
        let (mut bucket, mut sum, mut best) = (0usize, 0u64, 0u64);
        for (ms, n) in acc.chunk_ms.cells().filter(|(ms, _)| *ms >= s0) {
            let b = (ms - s0) / 1000;
            if b != bucket {
                (bucket, sum) = (b, 0);
            }
            sum += u64::from(n);
            best = best.max(sum);
        }
        best as f64
    } else {
        0.0
    };
    let has_slo = slo.is_set();
    let (ttft, tpot, itl, e2el, request_throughput, output_throughput) = match convention {
        Convention::Vllm => (
            ms(stats::vllm(&mut acc.ttft)),
            ms(stats::vllm(&mut acc.tpot)),
            ms(stats::vllm(&mut acc.itl)),
            ms(stats::vllm(&mut acc.e2el)),
            acc.completed as f64 / duration,
            acc.output_tokens as f64 / duration,
        ),
        Convention::Guidellm => {
            let token_span = (acc.g_last_token - acc.g_first_token).max(1e-9);
            (
                ms(stats::guidellm(&mut acc.g_ttft)),
                ms(stats::guidellm(&mut acc.g_tpot)),
                ms(stats::guidellm(&mut acc.g_itl)),
                ms(stats::guidellm(&mut acc.g_latency)),
                acc.completed as f64 / duration,
                if acc.completed > 0 { acc.output_tokens as f64 / token_span } else { 0.0 },
            )
        }
    };
    StageStats {
        stage,
        label: acc.label,
        window: (start, end),
        duration,
        completed: acc.completed,
        failed,
        failed_by_kind: acc.failed,
        total_input_tokens: acc.input_tokens,
        total_output_tokens: acc.output_tokens,
        estimated_token_requests: acc.estimated,
        request_throughput,
        output_throughput,
        total_token_throughput: (acc.input_tokens + acc.output_tokens) as f64 / duration,
        request_goodput: has_slo.then(|| acc.good as f64 / duration),
        max_concurrent_requests: max_overlap(&acc.intervals),
        max_output_tokens_per_s: max_tok_s,
        ttft,
        tpot,
        itl,
        e2el,
        client_queue: ms(stats::vllm(&mut acc.queue)),
        input_len: stats::vllm(&mut acc.input_lens),
        output_len: stats::vllm(&mut acc.output_lens),
        gpu: None,
        prefix_cache: None,
        send_rate: acc
            .asked_rate
            .and_then(|asked| super::pace::SendRate::of(asked, acc.sent, acc.first_sent, acc.last_sent)),
    }
}
