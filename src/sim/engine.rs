//! The engine model: an iteration-level discrete-event model of vLLM's V1 scheduler (S.3).
//!
//! Sans-IO: the engine owns a virtual clock and never sleeps. A driver ([`super::driver`]) asks
//! it to plan a step (which requests run, how long the step takes), waits that long in real
//! time (scaled), then tells it the step finished, at which point tokens are handed to each
//! request's [`Sink`]. Tests drive it directly in virtual time.
//!
//! Per step, FCFS: running requests are scheduled first (one token for a decode, the next chunk
//! for a partial prefill), preempting the most recently admitted request when no KV block is
//! free; then waiting requests are admitted while the batch, the token budget and the KV cache
//! allow. How long the step takes is the `cost` module's: `(step_overhead + max(T_mem, T_cmp)) ·
//! (1 + ε) · slowdown`.

use std::{
    collections::{BinaryHeap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use super::{
    config::SimConfig,
    cost::{StepTime, StepWork},
    kv::KvCache,
    metrics::Metrics,
};

/// Why a request stopped generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinishReason {
    /// Reached `max_tokens`.
    Length,
    /// Ended before `max_tokens` (the output-length policy chose a shorter output).
    Stop,
}

impl FinishReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Stop => "stop",
        }
    }
}

/// What the engine hands to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Emit {
    /// One new token; `finish` is set on the last one; `due` is the wall instant it was meant to
    /// reach the client (none in virtual time), so the front end can measure its own lateness.
    Token { finish: Option<FinishReason>, due: Option<Instant> },
    /// The engine failed the request (engine death, request that cannot fit).
    Error(&'static str),
}

/// Where a request's tokens go.
pub(crate) trait Sink {
    /// Delivers an event; false means the client is gone and the request should be dropped.
    fn emit(&mut self, ev: Emit) -> bool;
    /// True when nobody listens any more (checked before admitting a waiting request).
    fn is_closed(&self) -> bool;
}

/// A request as the engine receives it.
#[derive(Debug)]
pub(crate) struct NewRequest<S> {
    pub sink: S,
    pub prompt_len: u32,
    /// The request's `max_tokens` (after defaults).
    pub max_tokens: u32,
    /// Tokens it will actually generate (≤ max_tokens, from the output-length policy).
    pub output_len: u32,
    /// Chained hashes of the prompt's full blocks (prefix caching).
    pub hashes: Vec<u64>,
    /// Virtual arrival time at the HTTP front end.
    pub arrival: f64,
}

#[derive(Debug)]
struct Seq<S> {
    sink: S,
    prompt_len: u32,
    max_tokens: u32,
    output_len: u32,
    hashes: Vec<u64>,
    arrival: f64,
    ready: f64,
    generated: u32,
    computed: u32,
    /// Tokens scheduled in the step being planned.
    sched: u32,
    /// Cached blocks held: always the leading `shared.len()` blocks of the sequence.
    shared: Vec<u64>,
    /// Private blocks held after the shared ones.
    private: u32,
    scheduled_at: Option<f64>,
    first_token_at: Option<f64>,
    last_token_at: f64,
}

impl<S> Seq<S> {
    /// Tokens whose KV must exist before the next token can be sampled.
    fn total_len(&self) -> u32 {
        self.prompt_len + self.generated
    }

    fn blocks_held(&self) -> u32 {
        self.shared.len() as u32 + self.private
    }
}

/// Pending requests ordered by the time they reach the engine (after request overhead).
struct Pending<S> {
    ready: f64,
    order: u64,
    seq: Seq<S>,
}

impl<S> PartialEq for Pending<S> {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}
impl<S> Eq for Pending<S> {}
impl<S> PartialOrd for Pending<S> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<S> Ord for Pending<S> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: earliest first.
        other.ready.total_cmp(&self.ready).then(other.order.cmp(&self.order))
    }
}

/// The simulated engine.
pub(crate) struct Engine<S> {
    /// How long a step takes.
    step: StepTime,
    max_num_seqs: usize,
    max_batched: u32,
    block_size: u32,
    prefix_caching: bool,
    request_overhead: f64,
    kv: KvCache,
    pending: BinaryHeap<Pending<S>>,
    waiting: VecDeque<Seq<S>>,
    running: Vec<Seq<S>>,
    now: f64,
    order: u64,
    metrics: Arc<Mutex<Metrics>>,
    /// Requests accepted but not yet running (pending + waiting), shared with the HTTP front
    /// end for the `max_waiting` bound.
    queued: Arc<AtomicUsize>,
    /// Tokens scheduled in the planned step.
    step_tokens: u64,
}

impl<S: Sink> Engine<S> {
    pub(crate) fn new(
        cfg: &SimConfig,
        seed: u64,
        metrics: Arc<Mutex<Metrics>>,
        queued: Arc<AtomicUsize>,
    ) -> Self {
        let mut e = Engine {
            step: StepTime::new(cfg, seed),
            max_num_seqs: 1,
            max_batched: 1,
            block_size: cfg.block_size,
            prefix_caching: true,
            request_overhead: 0.0,
            kv: KvCache::new(cfg.kv_cache_tokens_total() / cfg.block_size as u64),
            pending: BinaryHeap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            now: 0.0,
            order: 0,
            metrics,
            queued,
            step_tokens: 0,
        };
        e.reconfigure(cfg);
        e
    }

    /// Takes new knob values (from `/admin/config`). The block size is fixed at start.
    pub(crate) fn reconfigure(&mut self, cfg: &SimConfig) {
        self.step.reconfigure(cfg);
        self.max_num_seqs = cfg.max_num_seqs as usize;
        self.max_batched = cfg.max_num_batched_tokens;
        self.prefix_caching = cfg.enable_prefix_caching;
        self.request_overhead = cfg.request_overhead.0;
        let blocks = cfg.kv_cache_tokens_total() / self.block_size as u64;
        self.kv.resize(blocks);
        self.metrics.lock().expect("metrics lock").num_gpu_blocks = blocks;
    }

    /// The virtual clock.
    pub(crate) fn now(&self) -> f64 {
        self.now
    }

    /// Moves the clock forward (never back).
    pub(crate) fn advance_to(&mut self, t: f64) {
        if t > self.now {
            self.now = t;
        }
    }

    /// True when nothing is running or waiting (pending arrivals may exist).
    pub(crate) fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// When the earliest pending request reaches the engine.
    pub(crate) fn next_pending(&self) -> Option<f64> {
        self.pending.peek().map(|p| p.ready)
    }

    /// Requests in the running batch.
    #[cfg(test)]
    pub(crate) fn num_running(&self) -> usize {
        self.running.len()
    }

    /// Queues a request; it reaches the scheduler `request_overhead` after its arrival.
    pub(crate) fn submit(&mut self, req: NewRequest<S>) {
        let ready = req.arrival + self.request_overhead;
        self.order += 1;
        self.pending.push(Pending {
            ready,
            order: self.order,
            seq: Seq {
                sink: req.sink,
                prompt_len: req.prompt_len.max(1),
                max_tokens: req.max_tokens,
                output_len: req.output_len.max(1),
                hashes: req.hashes,
                arrival: req.arrival,
                ready,
                generated: 0,
                computed: 0,
                sched: 0,
                shared: Vec::new(),
                private: 0,
                scheduled_at: None,
                first_token_at: None,
                last_token_at: 0.0,
            },
        });
    }

    fn blocks_for(&self, tokens: u32) -> u32 {
        tokens.div_ceil(self.block_size)
    }

    fn release(&mut self, seq: &mut Seq<S>) {
        for h in seq.shared.drain(..) {
            self.kv.release(h);
        }
        self.kv.free_private(seq.private as u64);
        seq.private = 0;
    }

    fn preempt(&mut self, mut seq: Seq<S>) {
        self.release(&mut seq);
        seq.computed = 0;
        seq.sched = 0;
        self.waiting.push_front(seq);
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.metrics.lock().expect("metrics lock").preemptions += 1;
    }

    /// Plans the next step from the current clock: schedules tokens and returns the step's
    /// duration, or `None` when there is nothing to run.
    pub(crate) fn plan_step(&mut self) -> Option<f64> {
        while self.pending.peek().is_some_and(|p| p.ready <= self.now) {
            let p = self.pending.pop().expect("peeked");
            self.waiting.push_back(p.seq);
        }
        // A client that went away while its request waited leaves the queue now, as vLLM
        // aborts it at once, not when it would have reached the head of the queue (a waiting
        // request holds no KV blocks).
        let before = self.waiting.len();
        self.waiting.retain(|seq| !seq.sink.is_closed());
        let gone = before - self.waiting.len();
        if gone > 0 {
            self.queued.fetch_sub(gone, Ordering::Relaxed);
            let mut m = self.metrics.lock().expect("metrics lock");
            m.success_abort += gone as u64;
            self.publish_gauges(&mut m);
        }
        let mut budget = self.max_batched;
        let mut work = StepWork::default();
        let mut preempted = false;

        // 1. Running requests, oldest first; victims are taken from the back.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let seq = &self.running[i];
            let need = (seq.total_len() - seq.computed).min(budget);
            let extra = self.blocks_for(seq.computed + need).saturating_sub(seq.blocks_held());
            if self.kv.allocate(extra as u64) {
                let seq = &mut self.running[i];
                seq.private += extra;
                seq.sched = need;
                budget -= need;
                if seq.generated > 0 && need == 1 && seq.computed + 1 == seq.total_len() {
                    work.decode(seq.computed);
                } else {
                    work.prefill(need, seq.computed);
                }
                i += 1;
            } else {
                let victim = self.running.pop().expect("running is non-empty");
                preempted = true;
                self.preempt(victim);
                // If the victim was request i itself, the loop ends here.
            }
        }

        // 2. Admit waiting requests (not in a step that had to preempt, as vLLM V1).
        while !preempted && budget > 0 && self.running.len() < self.max_num_seqs {
            let Some(mut seq) = self.waiting.pop_front() else { break };
            if seq.sink.is_closed() {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.metrics.lock().expect("metrics lock").success_abort += 1;
                continue;
            }
            let mut hits = 0;
            if self.prefix_caching {
                let max_hit = (seq.total_len() - 1) / self.block_size;
                hits = self.kv.lookup(&seq.hashes).min(max_hit as usize);
                for &h in &seq.hashes[..hits] {
                    self.kv.acquire(h);
                }
                seq.shared.extend_from_slice(&seq.hashes[..hits]);
                seq.computed = hits as u32 * self.block_size;
            }
            let need = (seq.total_len() - seq.computed).min(budget);
            let extra = self.blocks_for(seq.computed + need) - seq.blocks_held();
            if !self.kv.allocate(extra as u64) {
                self.release(&mut seq);
                seq.computed = 0;
                self.waiting.push_front(seq);
                break;
            }
            if self.prefix_caching {
                let mut m = self.metrics.lock().expect("metrics lock");
                m.prefix_queries += seq.prompt_len as u64;
                m.prefix_hits += (hits as u64 * self.block_size as u64).min(seq.prompt_len as u64);
            }
            seq.private += extra;
            seq.sched = need;
            seq.scheduled_at.get_or_insert(self.now);
            budget -= need;
            work.prefill(need, seq.computed);
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.running.push(seq);
        }

        self.step_tokens = work.tokens();
        if self.step_tokens == 0 {
            // Nothing fits even in an empty batch: the head request can never run.
            if self.running.is_empty()
                && let Some(mut seq) = self.waiting.pop_front()
            {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                seq.sink.emit(Emit::Error("the request does not fit in the KV cache"));
            }
            return None;
        }
        Some(self.step.duration(&work, self.now))
    }

    /// Ends the planned step at virtual time `end` (wall instant `due`, if in real time):
    /// advances the clock, emits tokens, retires finished requests and updates the metrics.
    pub(crate) fn finish_step(&mut self, end: f64, due: Option<Instant>) {
        self.advance_to(end);
        let metrics = Arc::clone(&self.metrics);
        let mut m = metrics.lock().expect("metrics lock");
        m.iteration_tokens.observe(self.step_tokens as f64);
        let mut i = 0;
        while i < self.running.len() {
            let bs = self.block_size;
            let seq = &mut self.running[i];
            if seq.sched == 0 {
                i += 1;
                continue;
            }
            seq.computed += seq.sched;
            seq.sched = 0;
            if self.prefix_caching {
                let full = ((seq.computed.min(seq.prompt_len) / bs) as usize).min(seq.hashes.len());
                while seq.shared.len() < full && seq.private > 0 {
                    let h = seq.hashes[seq.shared.len()];
                    self.kv.register(h);
                    seq.shared.push(h);
                    seq.private -= 1;
                }
            }
            if seq.computed < seq.total_len() {
                i += 1;
                continue;
            }
            // The step sampled a token for this request.
            if seq.first_token_at.is_none() {
                seq.first_token_at = Some(end);
                m.ttft.observe(end - seq.arrival);
                m.prefill.observe(end - seq.scheduled_at.unwrap_or(end));
                m.queue.observe(seq.scheduled_at.unwrap_or(end) - seq.ready);
                m.prompt_tokens += seq.prompt_len as u64;
            } else {
                m.itl.observe(end - seq.last_token_at);
            }
            seq.last_token_at = end;
            seq.generated += 1;
            m.generation_tokens += 1;
            let finish = (seq.generated >= seq.output_len).then_some(if seq.output_len >= seq.max_tokens {
                FinishReason::Length
            } else {
                FinishReason::Stop
            });
            let alive = seq.sink.emit(Emit::Token { finish, due });
            if finish.is_none() && alive {
                i += 1;
                continue;
            }
            let mut seq = self.running.remove(i);
            self.release(&mut seq);
            let first = seq.first_token_at.unwrap_or(end);
            let scheduled = seq.scheduled_at.unwrap_or(end);
            match finish {
                Some(FinishReason::Length) => m.success_length += 1,
                Some(FinishReason::Stop) => m.success_stop += 1,
                None => m.success_abort += 1,
            }
            if finish.is_some() {
                m.e2el_observe(
                    end - seq.arrival,
                    end - first,
                    end - scheduled,
                    seq.generated,
                    seq.prompt_len,
                    seq.max_tokens,
                );
            }
        }
        self.publish_gauges(&mut m);
    }

    fn publish_gauges(&self, m: &mut Metrics) {
        m.num_requests_running = self.running.len() as u64;
        m.num_requests_waiting = (self.waiting.len() + self.pending.len()) as u64;
        m.kv_cache_usage = self.kv.usage();
        m.virtual_time = self.now;
    }

    /// Fails every request (engine death) and empties the engine.
    pub(crate) fn fail_all(&mut self, why: &'static str) {
        let mut all: Vec<Seq<S>> = self.running.drain(..).collect();
        all.extend(self.waiting.drain(..));
        all.extend(std::mem::take(&mut self.pending).into_iter().map(|p| p.seq));
        for mut seq in all {
            self.release(&mut seq);
            seq.sink.emit(Emit::Error(why));
        }
        self.queued.store(0, Ordering::Relaxed);
        let metrics = Arc::clone(&self.metrics);
        self.publish_gauges(&mut metrics.lock().expect("metrics lock"));
    }

    /// Drops the prefix cache's unreferenced blocks (`/admin/reset`).
    pub(crate) fn clear_prefix_cache(&mut self) {
        self.kv.clear_evictable();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{cell::RefCell, rc::Rc};

    use super::*;
    use crate::rng::Rng;

    /// Per-request record of a virtual-time run.
    #[derive(Debug, Default, Clone)]
    pub(crate) struct Rec {
        pub arrival: f64,
        pub tokens: Vec<f64>,
        pub finish: Option<FinishReason>,
        pub error: bool,
    }

    pub(crate) struct RecSink {
        rec: Rc<RefCell<Rec>>,
        now: Rc<RefCell<f64>>,
    }

    impl Sink for RecSink {
        fn emit(&mut self, ev: Emit) -> bool {
            let mut r = self.rec.borrow_mut();
            match ev {
                Emit::Token { finish, .. } => {
                    r.tokens.push(*self.now.borrow());
                    r.finish = finish;
                }
                Emit::Error(_) => r.error = true,
            }
            true
        }
        fn is_closed(&self) -> bool {
            false
        }
    }

    /// How load is offered in a virtual run.
    pub(crate) enum Load {
        /// Arrival times.
        Open(Vec<f64>),
        /// Keep `n` requests in flight, `total` in all.
        Closed { n: usize, total: usize },
    }

    pub(crate) struct Run {
        pub recs: Vec<Rc<RefCell<Rec>>>,
        pub metrics: Metrics,
        pub peak_running: usize,
        pub mean_running: f64,
        pub end: f64,
    }

    /// Runs the engine in pure virtual time.
    pub(crate) fn run(cfg: &SimConfig, prompt: u32, output: u32, load: Load) -> Run {
        let metrics = Arc::new(Mutex::new(Metrics::new(cfg.max_model_len)));
        let mut e: Engine<RecSink> = Engine::new(cfg, 1, Arc::clone(&metrics), Arc::new(AtomicUsize::new(0)));
        let now = Rc::new(RefCell::new(0.0));
        let mut recs: Vec<Rc<RefCell<Rec>>> = Vec::new();
        let submit = |e: &mut Engine<RecSink>, at: f64, recs: &mut Vec<Rc<RefCell<Rec>>>| {
            let rec = Rc::new(RefCell::new(Rec { arrival: at, ..Rec::default() }));
            recs.push(Rc::clone(&rec));
            e.queued.fetch_add(1, Ordering::Relaxed);
            e.submit(NewRequest {
                sink: RecSink { rec, now: Rc::clone(&now) },
                prompt_len: prompt,
                max_tokens: output,
                output_len: output,
                hashes: Vec::new(),
                arrival: at,
            });
        };
        let (mut arrivals, closed) = match load {
            Load::Open(a) => (VecDeque::from(a), None),
            Load::Closed { n, total } => (VecDeque::new(), Some((n, total))),
        };
        if let Some((n, _)) = closed {
            for _ in 0..n {
                submit(&mut e, 0.0, &mut recs);
            }
        }
        let (mut peak, mut area) = (0usize, 0.0);
        loop {
            while arrivals.front().is_some_and(|a| *a <= e.now()) {
                let a = arrivals.pop_front().expect("front");
                submit(&mut e, a, &mut recs);
            }
            if let Some((n, total)) = closed {
                let done = recs.iter().filter(|r| r.borrow().finish.is_some()).count();
                let in_flight = recs.len() - done;
                for _ in in_flight..n {
                    if recs.len() < total {
                        let t = e.now();
                        submit(&mut e, t, &mut recs);
                    }
                }
                if done == total {
                    break;
                }
            }
            match e.plan_step() {
                Some(dt) => {
                    let end = e.now() + dt;
                    *now.borrow_mut() = end;
                    peak = peak.max(e.num_running());
                    area += e.num_running() as f64 * dt;
                    e.finish_step(end, None);
                }
                None => {
                    let next = [e.next_pending(), arrivals.front().copied()]
                        .into_iter()
                        .flatten()
                        .min_by(f64::total_cmp);
                    match next {
                        Some(t) => e.advance_to(t),
                        None => break,
                    }
                }
            }
        }
        let end = e.now();
        let m = metrics.lock().expect("metrics lock").clone();
        Run { recs, metrics: m, peak_running: peak, mean_running: area / end.max(1e-9), end }
    }

    /// `cfg` without step-time noise.
    pub(crate) fn quiet(mut cfg: SimConfig) -> SimConfig {
        cfg.step_jitter_cv = 0.0;
        cfg
    }

    /// The relative difference of `a` from `b`.
    pub(crate) fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b
    }

    /// A sink whose client may go away.
    struct Leaving(Rc<std::cell::Cell<bool>>);

    impl Sink for Leaving {
        fn emit(&mut self, _ev: Emit) -> bool {
            !self.0.get()
        }
        fn is_closed(&self) -> bool {
            self.0.get()
        }
    }

    #[test]
    fn requests_whose_clients_left_while_waiting_leave_the_queue_and_the_gauge_at_the_next_step() {
        let mut cfg = quiet(SimConfig::default());
        cfg.max_num_seqs = 1;
        let metrics = Arc::new(Mutex::new(Metrics::new(cfg.max_model_len)));
        let queued = Arc::new(AtomicUsize::new(0));
        let mut e: Engine<Leaving> = Engine::new(&cfg, 1, Arc::clone(&metrics), Arc::clone(&queued));
        let flags: Vec<_> = (0..6).map(|_| Rc::new(std::cell::Cell::new(false))).collect();
        for f in &flags {
            queued.fetch_add(1, Ordering::Relaxed);
            e.submit(NewRequest {
                sink: Leaving(Rc::clone(f)),
                prompt_len: 64,
                max_tokens: 2000,
                output_len: 2000,
                hashes: Vec::new(),
                arrival: 0.0,
            });
        }
        let step = |e: &mut Engine<Leaving>| loop {
            if let Some(dt) = e.plan_step() {
                let end = e.now() + dt;
                e.finish_step(end, None);
                return;
            }
            let next = e.next_pending().expect("requests pending");
            e.advance_to(next);
        };
        // One runs (a long answer), five wait behind it.
        for _ in 0..3 {
            step(&mut e);
        }
        assert_eq!(metrics.lock().unwrap().num_requests_waiting, 5);
        // Four of the waiting clients go away; the running one keeps the batch full.
        for f in &flags[2..] {
            f.set(true);
        }
        step(&mut e);
        let m = metrics.lock().unwrap();
        assert_eq!((m.num_requests_waiting, m.num_requests_running), (1, 1));
        assert_eq!(m.success_abort, 4);
        assert_eq!(queued.load(Ordering::Relaxed), 1, "the front end's count of waiting requests");
    }

    #[test]
    fn kv_cache_bounds_concurrency_and_preempts() {
        // ≈ 4.0e5 / (1024 + 128) ≈ 350 sequences fit (S.3: "≈ 360 at 1 k/128").
        let cfg = quiet(SimConfig::default());
        let r = run(&cfg, 1024, 128, Load::Closed { n: 1024, total: 3000 });
        let kv = cfg.kv_cache_tokens_total() as f64;
        let bound = kv / (1024.0 + 128.0);
        assert!(r.peak_running as f64 <= kv / 1024.0 + 1.0, "peak {}", r.peak_running);
        assert!(rel(r.mean_running, bound) < 0.15, "mean running {} vs {bound}", r.mean_running);
        assert!(r.metrics.preemptions > 0);
        assert!(r.recs.iter().all(|rec| rec.borrow().tokens.len() == 128));
        // Preempted requests restart prefill but never re-send tokens.
        assert_eq!(r.metrics.generation_tokens, 3000 * 128);
    }

    fn poisson(rate: f64, secs: f64, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        let mut t = 0.0;
        let mut v = Vec::new();
        loop {
            t += rng.exponential(1.0 / rate);
            if t > secs {
                return v;
            }
            v.push(t);
        }
    }

    fn p50(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    #[test]
    fn throughput_saturates_and_ttft_explodes_past_capacity() {
        let cfg = SimConfig::default();
        let mut points = Vec::new();
        for rate in [5.0, 15.0, 30.0, 45.0] {
            let r = run(&cfg, 1024, 128, Load::Open(poisson(rate, 40.0, 3)));
            let ttfts: Vec<f64> =
                r.recs.iter().map(|rec| rec.borrow().tokens[0] - rec.borrow().arrival).collect();
            let achieved = r.recs.len() as f64 / r.end;
            points.push((rate, achieved, p50(ttfts)));
        }
        let (_, a5, t5) = points[0];
        let (_, a15, _) = points[1];
        let (_, a30, t30) = points[2];
        let (_, a45, t45) = points[3];
        // Below capacity, achieved ≈ offered; above it, throughput flattens near ~24 req/s.
        assert!(rel(a5, 5.0) < 0.2 && rel(a15, 15.0) < 0.15, "{points:?}");
        assert!((18.0..30.0).contains(&a30) && (18.0..30.0).contains(&a45), "{points:?}");
        assert!(a45 < a30 * 1.15, "{points:?}");
        // TTFT: ~50 ms when idle, seconds when overloaded, growing with offered load.
        assert!(t5 < 0.1, "{points:?}");
        assert!(t30 > 1.0 && t45 > t30, "{points:?}");
    }

    #[test]
    fn prefix_cache_hits_skip_prefill() {
        let mut cfg = quiet(SimConfig::default());
        cfg.request_overhead = crate::units::Secs(0.0);
        let metrics = Arc::new(Mutex::new(Metrics::new(cfg.max_model_len)));
        let mut e: Engine<RecSink> =
            Engine::new(&cfg, 1, Arc::clone(&metrics), Arc::new(AtomicUsize::new(2)));
        let now = Rc::new(RefCell::new(0.0));
        let hashes: Vec<u64> = (1..=256).collect(); // 4096 tokens of shared prefix
        let mut ttft = Vec::new();
        for _ in 0..2 {
            let rec = Rc::new(RefCell::new(Rec::default()));
            let start = e.now();
            e.submit(NewRequest {
                sink: RecSink { rec: Rc::clone(&rec), now: Rc::clone(&now) },
                prompt_len: 4096,
                max_tokens: 1,
                output_len: 1,
                hashes: hashes.clone(),
                arrival: start,
            });
            while rec.borrow().finish.is_none() {
                let dt = e.plan_step().expect("work to do");
                *now.borrow_mut() = e.now() + dt;
                e.finish_step(e.now() + dt, None);
            }
            ttft.push(rec.borrow().tokens[0] - start);
        }
        assert!(ttft[1] < ttft[0] / 5.0, "{ttft:?}");
        let m = metrics.lock().unwrap();
        assert_eq!(m.prefix_queries, 8192);
        assert_eq!(m.prefix_hits, 4096 - 16); // the last block is recomputed
    }

    #[test]
    fn a_request_larger_than_the_cache_fails_instead_of_hanging() {
        let mut cfg = quiet(SimConfig::default());
        cfg.kv_cache_tokens = Some(256);
        let r = run(&cfg, 1000, 10, Load::Open(vec![0.0]));
        assert!(r.recs[0].borrow().error);
    }
}
