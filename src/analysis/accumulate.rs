//! Accumulating a stage's requests while reading, and turning what was gathered into the
//! stage's statistics.

use std::collections::BTreeMap;

use super::{
    Convention, StageStats,
    dist::Dist,
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
    /// GuideLLM's statistics are wanted (else vllm bench serve's): only what the convention
    /// needs is kept.
    pub(super) guidellm: bool,
    /// Prompt and output tokens of each completed request.
    pub(super) input_lens: Dist,
    pub(super) output_lens: Dist,
    pub(super) ttft: Vec<f64>,
    /// vllm bench serve's TPOT (its convention only).
    pub(super) tpot: Vec<f64>,
    pub(super) e2el: Vec<f64>,
    /// Chunk gaps in microseconds, counted.
    pub(super) itl: Dist,
    pub(super) queue: Vec<f64>,
    /// Each completed request's send (its interval ends at send + E2EL).
    pub(super) starts: Vec<f64>,
    pub(super) good: u64,
    /// Content chunks per millisecond of run time (for the peak 1-s output rate).
    pub(super) chunk_ms: MsGrid,
    pub(super) first_success_sent: f64,
    // GuideLLM's (its convention only): latency to the stream's end (weight 1), TPOT and ITL
    // with their weights (output tokens, output tokens − 1; at most 2^24). Its TTFT is `ttft`
    // (weight 1).
    pub(super) g_latency: Vec<f64>,
    pub(super) g_tpot: (Vec<f64>, Vec<u32>),
    pub(super) g_itl: (Vec<f64>, Vec<u32>),
    pub(super) g_first_token: f64,
    pub(super) g_last_token: f64,
    pub(super) cancelled: u64,
}

impl Acc {
    /// An empty stage whose statistics follow `convention`.
    pub(super) fn new(convention: Convention) -> Acc {
        Acc { guidellm: convention == Convention::Guidellm, itl: Dist::new(1e6), ..Acc::default() }
    }
}

impl Acc {
    /// Adds the requests of `later` (the rows that follow this one's in the file, read apart):
    /// the same as accumulating them here in that order, but for the last bits of a counted
    /// distribution's mean ([`Dist::append`]).
    pub(super) fn append(&mut self, later: Acc) {
        // Every field named: one added to `Acc` is merged here or said not to need it.
        let Acc {
            label: _,
            window: _,
            asked_rate: _,
            guidellm: _,
            first_sent,
            last_sent,
            sent,
            last_end,
            completed,
            failed,
            estimated,
            input_tokens,
            output_tokens,
            input_lens,
            output_lens,
            ttft,
            tpot,
            e2el,
            itl,
            queue,
            starts,
            good,
            chunk_ms,
            first_success_sent,
            g_latency,
            g_tpot,
            g_itl,
            g_first_token,
            g_last_token,
            cancelled,
        } = later;
        self.first_sent = self.first_sent.min(first_sent);
        self.last_sent = self.last_sent.max(last_sent);
        self.sent += sent;
        self.last_end = self.last_end.max(last_end);
        self.completed += completed;
        for (kind, n) in failed {
            *self.failed.entry(kind).or_default() += n;
        }
        self.estimated += estimated;
        self.input_tokens += input_tokens;
        self.output_tokens += output_tokens;
        self.input_lens.append(input_lens);
        self.output_lens.append(output_lens);
        join(&mut self.ttft, ttft);
        join(&mut self.tpot, tpot);
        join(&mut self.e2el, e2el);
        self.itl.append(itl);
        join(&mut self.queue, queue);
        join(&mut self.starts, starts);
        self.good += good;
        self.chunk_ms.append(chunk_ms);
        self.first_success_sent = self.first_success_sent.min(first_success_sent);
        join(&mut self.g_latency, g_latency);
        join(&mut self.g_tpot.0, g_tpot.0);
        join(&mut self.g_tpot.1, g_tpot.1);
        join(&mut self.g_itl.0, g_itl.0);
        join(&mut self.g_itl.1, g_itl.1);
        self.g_first_token = self.g_first_token.min(g_first_token);
        self.g_last_token = self.g_last_token.max(g_last_token);
        self.cancelled += cancelled;
    }
}

/// `b` after `a`, without the spare room a growing vector takes (halves of a long run's
/// samples are joined once).
fn join<T>(a: &mut Vec<T>, b: Vec<T>) {
    a.reserve_exact(b.len());
    a.extend(b);
}

/// Adds one request, its chunk gaps in seconds and in the microseconds they were read from.
pub(super) fn accumulate(acc: &mut Acc, r: &Request, gaps: &[f64], gaps_us: &[u64], slo: &Slo) {
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
    acc.input_lens.push(r.prompt_tokens);
    acc.output_lens.push(r.output_tokens);
    let ttft = first - r.sent;
    let e2el = last - r.sent;
    let n = r.output_tokens;
    let tpot = if n > 1 { Some((e2el - ttft) / (n - 1) as f64) } else { None };
    acc.ttft.push(ttft);
    acc.e2el.push(e2el);
    if !acc.guidellm {
        acc.tpot.extend(tpot);
    }
    for g in gaps_us {
        acc.itl.push(*g);
    }
    acc.queue.push(r.sent - r.scheduled);
    acc.starts.push(r.sent);
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
    // GuideLLM: latency to the stream's end; TPOT over all tokens incl. the first; ITL over the
    // rest (the weights are counts, at most MAX_COUNT = 2^24: a u32 holds them).
    if acc.guidellm {
        acc.g_latency.push(r.end - r.sent);
        let w = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
        if n > 0 {
            acc.g_tpot.0.push((last - r.sent) / n as f64);
            acc.g_tpot.1.push(w(n));
        }
        if n > 1 {
            acc.g_itl.0.push((last - first) / (n - 1) as f64);
            acc.g_itl.1.push(w(n - 1));
        }
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
    /// Adds every count of `later`.
    pub(super) fn append(&mut self, later: MsGrid) {
        for (page, cells) in later.pages {
            let next = self.pages.len();
            let slot = *self.index.entry(page).or_insert(next);
            if slot == next {
                self.pages.push((page, cells));
            } else {
                for (m, t) in self.pages[slot].1.iter_mut().zip(cells.iter()) {
                    *m = m.saturating_add(*t);
                }
            }
        }
    }

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

/// Exact peak overlap of half-open intervals (departures before arrivals at ties), from their
/// starts and their ends (sorted here): the sweep over both sorted, an end taken first at a tie.
fn max_overlap(mut starts: Vec<f64>, mut ends: Vec<f64>) -> u64 {
    starts.sort_unstable_by(f64::total_cmp);
    ends.sort_unstable_by(f64::total_cmp);
    let (mut cur, mut best) = (0i64, 0i64);
    let mut j = 0;
    for s in &starts {
        while j < ends.len() && ends[j].total_cmp(s).is_le() {
            cur -= 1;
            j += 1;
        }
        cur += 1;
        best = best.max(cur);
    }
    best as u64
}

/// Unit weights.
fn unit(v: Vec<f64>) -> Vec<(f64, f64)> {
    v.into_iter().map(|x| (x, 1.0)).collect()
}

/// Values with their weights.
fn weighted((v, w): (Vec<f64>, Vec<u32>)) -> Vec<(f64, f64)> {
    v.into_iter().zip(w).map(|(x, w)| (x, f64::from(w))).collect()
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
    // The ends before E2EL is reordered by its summary.
    let ends: Vec<f64> = acc.starts.iter().zip(&acc.e2el).map(|(s, e)| s + e).collect();
    let max_concurrent_requests = max_overlap(std::mem::take(&mut acc.starts), ends);
    let (ttft, tpot, itl, e2el, request_throughput, output_throughput) = match convention {
        Convention::Vllm => (
            ms(stats::vllm(&mut acc.ttft)),
            ms(stats::vllm(&mut acc.tpot)),
            ms(acc.itl.summary()),
            ms(stats::vllm(&mut acc.e2el)),
            acc.completed as f64 / duration,
            acc.output_tokens as f64 / duration,
        ),
        Convention::Guidellm => {
            let token_span = (acc.g_last_token - acc.g_first_token).max(1e-9);
            (
                ms(stats::guidellm(&mut unit(std::mem::take(&mut acc.ttft)))),
                ms(stats::guidellm(&mut weighted(std::mem::take(&mut acc.g_tpot)))),
                ms(stats::guidellm(&mut weighted(std::mem::take(&mut acc.g_itl)))),
                ms(stats::guidellm(&mut unit(std::mem::take(&mut acc.g_latency)))),
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
        max_concurrent_requests,
        max_output_tokens_per_s: max_tok_s,
        ttft,
        tpot,
        itl,
        e2el,
        client_queue: ms(stats::vllm(&mut acc.queue)),
        input_len: acc.input_lens.summary(),
        output_len: acc.output_lens.summary(),
        gpu: None,
        prefix_cache: None,
        send_rate: acc
            .asked_rate
            .and_then(|asked| super::pace::SendRate::of(asked, acc.sent, acc.first_sent, acc.last_sent)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep over sorted starts and ends gives what sorting the events together gave
    /// (departures before arrivals at ties), on intervals with ties, empty ones and ones ending
    /// (within clock rounding) before they start.
    #[test]
    fn the_overlap_sweep_equals_the_sort_of_all_events() {
        fn by_events(intervals: &[(f64, f64)]) -> u64 {
            let mut events: Vec<(f64, i8)> =
                intervals.iter().flat_map(|(a, b)| [(*a, 1), (*b, -1)]).collect();
            events.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let (mut cur, mut best) = (0i64, 0i64);
            for (_, d) in events {
                cur += i64::from(d);
                best = best.max(cur);
            }
            best as u64
        }
        let mut rng = crate::rng::Rng::new(32);
        for case in 0..500 {
            let n = rng.below(60) as usize;
            let intervals: Vec<(f64, f64)> = (0..n)
                .map(|_| {
                    // Whole times in a small range: many ties.
                    let a = rng.below(20) as f64 * if case % 3 == 0 { 0.5 } else { 1.0 };
                    let len = rng.below(6) as f64 - if rng.chance(0.1) { 1.0 } else { 0.0 };
                    (a, a + len)
                })
                .collect();
            let (starts, ends): (Vec<f64>, Vec<f64>) = intervals.iter().copied().unzip();
            assert_eq!(max_overlap(starts, ends), by_events(&intervals), "{intervals:?}");
        }
        assert_eq!(max_overlap(vec![-0.0], vec![0.0]), by_events(&[(-0.0, 0.0)]));
    }
}
