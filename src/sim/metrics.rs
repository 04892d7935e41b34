//! The simulator's Prometheus metrics, with vLLM's names and buckets (reference §2.3 and S.4).
//!
//! The engine updates one [`Metrics`] value under a mutex once per engine step; `/metrics`
//! renders it. All times are simulated seconds.

use std::fmt::Write;

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
    80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
];
const REQUEST_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
    960.0, 1920.0, 7680.0,
];
const ITERATION_BUCKETS: &[f64] =
    &[1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0];

/// Buckets of `sim:delivery_lateness_seconds`.
pub(crate) const LATENESS_BUCKETS: &[f64] =
    &[0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Per-stream lateness counts, merged into the shared histogram once when the stream ends.
#[derive(Debug, Default)]
pub(crate) struct LocalLateness {
    counts: [u32; LATENESS_BUCKETS.len()],
    sum: f64,
    count: u32,
}

impl LocalLateness {
    pub(crate) fn observe(&mut self, v: f64) {
        if let Some(i) = LATENESS_BUCKETS.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    pub(crate) fn merge_into(&self, h: &mut Histogram) {
        for (c, n) in h.counts.iter_mut().zip(self.counts) {
            *c += n as u64;
        }
        h.sum += self.sum;
        h.count += self.count as u64;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A Prometheus histogram with fixed upper bounds.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram { bounds: bounds.to_vec(), counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    /// 1-2-5 buckets up to `max` (vLLM's token-count histograms).
    fn one_two_five(max: u32) -> Self {
        let mut bounds = Vec::new();
        let mut decade = 1.0;
        'outer: loop {
            for m in [1.0, 2.0, 5.0] {
                let b = m * decade;
                if b > max as f64 {
                    break 'outer;
                }
                bounds.push(b);
            }
            decade *= 10.0;
        }
        Self::new(&bounds)
    }

    pub(crate) fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Every metric the simulator exposes.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub num_requests_running: u64,
    pub num_requests_waiting: u64,
    pub kv_cache_usage: f64,
    pub num_gpu_blocks: u64,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub success_stop: u64,
    pub success_length: u64,
    pub success_abort: u64,
    pub preemptions: u64,
    pub prefix_queries: u64,
    pub prefix_hits: u64,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub tpot: Histogram,
    pub e2e: Histogram,
    pub queue: Histogram,
    pub inference: Histogram,
    pub prefill: Histogram,
    pub decode: Histogram,
    pub prompt_len: Histogram,
    pub generation_len: Histogram,
    pub max_tokens_param: Histogram,
    pub max_generation: Histogram,
    pub iteration_tokens: Histogram,
    pub virtual_time: f64,
    /// Wall-clock lateness of each streamed token when it was written to the connection, behind
    /// the instant the model scheduled it for: the simulator's own share of any latency a client
    /// measures beyond the truth (the rest is the network stack's and the client's).
    pub delivery_lateness: Histogram,
    pub faults: Vec<(&'static str, u64)>,
}

impl Metrics {
    pub(crate) fn new(max_model_len: u32) -> Self {
        Metrics {
            num_requests_running: 0,
            num_requests_waiting: 0,
            kv_cache_usage: 0.0,
            num_gpu_blocks: 0,
            prompt_tokens: 0,
            generation_tokens: 0,
            success_stop: 0,
            success_length: 0,
            success_abort: 0,
            preemptions: 0,
            prefix_queries: 0,
            prefix_hits: 0,
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            tpot: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(REQUEST_BUCKETS),
            queue: Histogram::new(REQUEST_BUCKETS),
            inference: Histogram::new(REQUEST_BUCKETS),
            prefill: Histogram::new(REQUEST_BUCKETS),
            decode: Histogram::new(REQUEST_BUCKETS),
            prompt_len: Histogram::one_two_five(max_model_len),
            generation_len: Histogram::one_two_five(max_model_len),
            max_tokens_param: Histogram::one_two_five(max_model_len),
            max_generation: Histogram::one_two_five(max_model_len),
            iteration_tokens: Histogram::new(ITERATION_BUCKETS),
            virtual_time: 0.0,
            delivery_lateness: Histogram::new(LATENESS_BUCKETS),
            faults: Vec::new(),
        }
    }

    /// Records a finished request: end-to-end, decode and inference times, TPOT, and the
    /// request-size histograms.
    pub(crate) fn e2el_observe(
        &mut self,
        e2e: f64,
        decode: f64,
        inference: f64,
        generated: u32,
        prompt: u32,
        max_tokens: u32,
    ) {
        self.e2e.observe(e2e);
        self.decode.observe(decode);
        self.inference.observe(inference);
        if generated > 1 {
            self.tpot.observe(decode / (generated - 1) as f64);
        }
        self.prompt_len.observe(prompt as f64);
        self.generation_len.observe(generated as f64);
        self.max_tokens_param.observe(max_tokens as f64);
        self.max_generation.observe(max_tokens as f64);
    }

    /// Counts one injected fault of the given type.
    pub(crate) fn fault(&mut self, kind: &'static str) {
        match self.faults.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.faults.push((kind, 1)),
        }
    }

    /// Prometheus text exposition format 0.0.4.
    pub(crate) fn render(
        &self,
        model: &str,
        block_size: u32,
        gpu_mem_util: f64,
        prefix: bool,
        legacy: bool,
    ) -> String {
        let mut x = Exposition::new(model);
        self.scheduler_gauges(&mut x, legacy);
        x.cache_config(model, block_size, gpu_mem_util, prefix, self.num_gpu_blocks);
        self.engine_counters(&mut x);
        self.prefix_cache_counters(&mut x, legacy);
        self.latency_histograms(&mut x, legacy);
        self.size_histograms(&mut x);
        self.simulator_metrics(&mut x);
        x.out
    }

    /// The batch, the queue and the KV cache's usage.
    fn scheduler_gauges(&self, x: &mut Exposition, legacy: bool) {
        x.gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            self.num_requests_running as f64,
        );
        x.gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            self.num_requests_waiting as f64,
        );
        x.gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            self.kv_cache_usage,
        );
        if legacy {
            x.gauge(
                "vllm:gpu_cache_usage_perc",
                "GPU KV-cache usage (deprecated name).",
                self.kv_cache_usage,
            );
        }
    }

    /// Preemptions, tokens processed, and finished requests by reason.
    fn engine_counters(&self, x: &mut Exposition) {
        x.counter(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            self.preemptions as f64,
        );
        x.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", self.prompt_tokens as f64);
        x.counter(
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            self.generation_tokens as f64,
        );
        let _ = writeln!(
            x.out,
            "# HELP vllm:request_success Count of successfully processed requests.\n# TYPE vllm:request_success counter"
        );
        for (reason, n) in
            [("stop", self.success_stop), ("length", self.success_length), ("abort", self.success_abort)]
        {
            let _ = writeln!(
                x.out,
                "vllm:request_success_total{{{},finished_reason=\"{reason}\"}} {n}",
                x.labels
            );
        }
    }

    /// Prefix-cache queries and hits, in tokens (and their deprecated names with `legacy`).
    fn prefix_cache_counters(&self, x: &mut Exposition, legacy: bool) {
        x.counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            self.prefix_queries as f64,
        );
        x.counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            self.prefix_hits as f64,
        );
        if legacy {
            x.counter(
                "vllm:gpu_prefix_cache_queries",
                "Prefix cache queries (deprecated name).",
                self.prefix_queries as f64,
            );
            x.counter(
                "vllm:gpu_prefix_cache_hits",
                "Prefix cache hits (deprecated name).",
                self.prefix_hits as f64,
            );
        }
    }

    /// The latency histograms: TTFT, ITL, TPOT, end to end, and each phase of a request.
    fn latency_histograms(&self, x: &mut Exposition, legacy: bool) {
        x.histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            &self.ttft,
        );
        x.histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            &self.itl,
        );
        if legacy {
            x.histogram(
                "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds (deprecated name).",
                &self.itl,
            );
        }
        x.histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            &self.tpot,
        );
        x.histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            &self.e2e,
        );
        x.histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            &self.queue,
        );
        x.histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            &self.inference,
        );
        x.histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            &self.prefill,
        );
        x.histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            &self.decode,
        );
    }

    /// The size histograms: prompt and generated tokens, `max_tokens`, tokens per step.
    fn size_histograms(&self, x: &mut Exposition) {
        x.histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", &self.prompt_len);
        x.histogram(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            &self.generation_len,
        );
        x.histogram(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            &self.max_tokens_param,
        );
        x.histogram(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            &self.max_generation,
        );
        x.histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            &self.iteration_tokens,
        );
    }

    /// The simulator's own metrics (`sim:`): its clock, its delivery lateness, the faults it
    /// injected.
    fn simulator_metrics(&self, x: &mut Exposition) {
        let _ = writeln!(
            x.out,
            "# HELP sim:virtual_time_seconds Simulated time elapsed (benchflow simulator only).\n\
             # TYPE sim:virtual_time_seconds gauge\nsim:virtual_time_seconds {}",
            fmt_f(self.virtual_time)
        );
        x.histogram(
            "sim:delivery_lateness_seconds",
            "How late the simulator delivered tokens behind its own schedule (wall clock).",
            &self.delivery_lateness,
        );
        let _ = writeln!(
            x.out,
            "# HELP sim:faults_injected Faults injected by the simulator.\n# TYPE sim:faults_injected counter"
        );
        for (kind, n) in &self.faults {
            let _ = writeln!(x.out, "sim:faults_injected_total{{type=\"{kind}\"}} {n}");
        }
    }
}

/// The exposition being written: metric families one after another, each sample labelled with
/// the engine and the model.
struct Exposition {
    out: String,
    labels: String,
}

impl Exposition {
    /// An empty exposition for `model`'s samples.
    fn new(model: &str) -> Self {
        Exposition {
            out: String::with_capacity(16 * 1024),
            labels: format!("engine=\"0\",model_name=\"{}\"", escape_label(model)),
        }
    }

    /// A gauge with one sample.
    fn gauge(&mut self, name: &str, help: &str, v: f64) {
        let labels = &self.labels;
        let _ =
            writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {}", fmt_f(v));
    }

    /// A counter with one sample (`_total`).
    fn counter(&mut self, name: &str, help: &str, v: f64) {
        let labels = &self.labels;
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total{{{labels}}} {}",
            fmt_f(v)
        );
    }

    /// A histogram: its cumulative buckets, `+Inf`, count and sum.
    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        let (out, labels) = (&mut self.out, &self.labels);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in h.bounds.iter().zip(&h.counts) {
            cum += c;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{}\"}} {cum}", fmt_f(*b));
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", fmt_f(h.sum));
    }

    /// `vllm:cache_config_info`: the cache's configuration as labels of a constant gauge.
    fn cache_config(&mut self, model: &str, block_size: u32, gpu_mem_util: f64, prefix: bool, blocks: u64) {
        let _ = writeln!(
            self.out,
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n# TYPE vllm:cache_config_info gauge\n\
             vllm:cache_config_info{{block_size=\"{block_size}\",cache_dtype=\"auto\",enable_prefix_caching=\"{}\",\
             engine=\"0\",gpu_memory_utilization=\"{gpu_mem_util}\",model_name=\"{}\",num_gpu_blocks=\"{}\"}} 1.0",
            if prefix { "True" } else { "False" },
            escape_label(model),
            blocks
        );
    }
}

fn fmt_f(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.1}") } else { format!("{v}") }
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_the_exposition() {
        let mut m = Metrics::new(8192);
        m.ttft.observe(0.003);
        m.ttft.observe(0.05);
        m.ttft.observe(9999.0);
        let text = m.render("m", 16, 0.9, true, false);
        assert!(text.contains(
            "vllm:time_to_first_token_seconds_bucket{engine=\"0\",model_name=\"m\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "vllm:time_to_first_token_seconds_bucket{engine=\"0\",model_name=\"m\",le=\"0.06\"} 2"
        ));
        assert!(text.contains(
            "vllm:time_to_first_token_seconds_bucket{engine=\"0\",model_name=\"m\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("vllm:time_to_first_token_seconds_count{engine=\"0\",model_name=\"m\"} 3"));
        assert!(!text.contains("gpu_cache_usage_perc"));
        assert!(m.render("m", 16, 0.9, true, true).contains("vllm:gpu_cache_usage_perc{"));
    }

    #[test]
    fn token_histograms_use_one_two_five_buckets() {
        let h = Histogram::one_two_five(8192);
        assert_eq!(
            h.bounds,
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
        );
    }
}
