//! The simulator's timing as a client sees it: the closed-form checks of the performance model,
//! saturation, fixed latencies, and preemption, through real HTTP.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{TestSim, completion, mean, percentile, prompt_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_one_ttft_and_itl_match_the_model_in_real_time() {
    let sim = TestSim::start("llama-3.1-8b/h100", &["step_jitter_cv=0", "time_scale=1"]).await;
    let r = sim.post("/v1/completions", &completion(&prompt_of(1024), 40)).await;
    let times = r.chunk_times();
    assert_eq!(times.len(), 40);
    let ttft = times[0];
    let itl = (times[39] - times[0]) / 39.0;
    // Model: TTFT = 5 ms overhead + 1.5 ms + 33.8 ms prefill ≈ 40.3 ms; ITL = 7.49 ms.
    // Never faster than the model; the upper tolerance covers a busy shared 2-core machine
    // (the exact figures are the simulated-time histograms below, and the benches).
    assert!((0.039..0.090).contains(&ttft), "client ttft {ttft}");
    assert!((itl - 0.00749).abs() / 0.00749 < 0.2, "client itl {itl}");
    // The simulator's own (simulated-time) histograms are exact.
    let l = r#"{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}"#;
    let ttft_sum = sim.metric(&format!("vllm:time_to_first_token_seconds_sum{l}")).await;
    assert!((ttft_sum - 0.0403).abs() < 0.0005, "sim ttft {ttft_sum}");
    // 1.5 ms + (16.06e9 B of weights + ≈1,044 tokens × 128 KiB of KV) / 2.68e12 B/s = 7.544 ms.
    let itl_mean = sim.metric(&format!("vllm:inter_token_latency_seconds_sum{l}")).await / 39.0;
    assert!((itl_mean - 0.007544).abs() < 0.00002, "sim itl {itl_mean}");
}

#[tokio::test]
async fn time_scale_zero_keeps_the_accounting_without_waiting() {
    let sim = TestSim::start("llama-3.1-8b/h100", &["step_jitter_cv=0", "time_scale=0"]).await;
    let started = Instant::now();
    let r = sim.post("/v1/completions", &completion(&prompt_of(1024), 200)).await;
    assert_eq!(r.chunk_times().len(), 200);
    // 200 tokens of simulated time is ≈ 1.5 s; virtual time must not wait for it.
    assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
    let l = r#"{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}"#;
    let e2e = sim.metric(&format!("vllm:e2e_request_latency_seconds_sum{l}")).await;
    let expect = 0.0403 + 199.0 * 0.00749;
    assert!((e2e - expect).abs() / expect < 0.01, "e2e {e2e} vs {expect}");
}

/// Offers `rate` req/s (simulated) of 2048-in/16-out requests for `secs` simulated seconds at
/// `scale`; returns (completions per simulated second in the second half, TTFT p50 in simulated
/// seconds). Long prompts and short outputs make the load prefill-bound, so it saturates with
/// little token traffic for the test client to parse.
async fn offer(rate: f64, secs: f64, scale: f64) -> (f64, f64) {
    let sim = TestSim::start("llama-3.1-8b/h100", &[&format!("time_scale={scale}"), "seed=7"]).await;
    let addr = sim.addr;
    let n = (rate * secs) as usize;
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::new();
    let prompt = prompt_of(2048);
    for i in 0..n {
        let at = start + Duration::from_secs_f64(i as f64 / rate * scale);
        // Distinct prompts: identical ones would hit the prefix cache and skip prefill.
        let body = completion(&format!("{i} {prompt}"), 16);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let r =
                crate::support::try_request(addr, "POST", "/v1/completions", &[], Some(&body)).await.ok()?;
            let t = r.chunk_times();
            let end = r.frames.last()?.0;
            Some((t.first().copied()?, end))
        }));
    }
    let window_end = start + Duration::from_secs_f64(secs * scale);
    let window_start = start + Duration::from_secs_f64(secs * scale / 2.0);
    tokio::time::sleep_until((window_end + Duration::from_millis(50)).into()).await;
    let mut ttfts = Vec::new();
    let mut done_in_window = 0;
    for t in tasks {
        if t.is_finished() {
            if let Ok(Some((ttft, end))) = t.await {
                ttfts.push(ttft / scale);
                if end >= window_start && end <= window_end {
                    done_in_window += 1;
                }
            }
        } else {
            t.abort();
        }
    }
    // Requests still waiting at the end have TTFT beyond the window: count them as such.
    let unfinished = n - ttfts.len();
    ttfts.extend(std::iter::repeat_n(secs, unfinished));
    (done_in_window as f64 / (secs / 2.0), percentile(&ttfts, 0.5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_saturates_and_ttft_climbs_past_capacity() {
    // Capacity for 2048/16 is ≈ 13 req/s: prefill-bound, 4 prompts per 8,192-token step of
    // ≈ 277 ms (2 · 8.03e9 · 8192 / 4.945e14 plus attention).
    let (low_tput, low_ttft) = offer(4.0, 8.0, 0.5).await;
    let (high_tput, high_ttft) = offer(30.0, 8.0, 0.5).await;
    assert!((2.0..6.5).contains(&low_tput), "achieved {low_tput} at 4 req/s");
    assert!(low_ttft < 0.3, "ttft p50 {low_ttft} at 4 req/s");
    assert!((8.0..18.0).contains(&high_tput), "achieved {high_tput} at 30 req/s: should plateau near 13");
    assert!(high_ttft > 1.0, "ttft p50 {high_ttft} at 30 req/s: should be queueing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytic_mode_serves_fixed_latencies() {
    let sim = TestSim::start(
        "tiny/cpu",
        &["fidelity=analytic", "ttft=100ms", "itl=10ms", "time_factor_under_load=1", "request_overhead=0"],
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let addr = sim.addr;
        tasks.push(tokio::spawn(async move {
            crate::support::request(addr, "POST", "/v1/completions", &[], Some(&completion("hi", 20))).await
        }));
    }
    for t in tasks {
        let times = t.await.unwrap().chunk_times();
        assert_eq!(times.len(), 20);
        assert!((0.0995..0.130).contains(&times[0]), "ttft {}", times[0]);
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let itl = mean(&gaps);
        assert!((itl - 0.010).abs() < 0.002, "itl {itl}");
    }
}

#[tokio::test]
async fn a_small_kv_cache_preempts_without_resending_tokens() {
    let sim =
        TestSim::start("tiny/cpu", &["time_scale=0", "kv_cache_tokens=2048", "enable_prefix_caching=false"])
            .await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let addr = sim.addr;
        let body = completion(&format!("{i} {}", prompt_of(200)), 200);
        tasks.push(tokio::spawn(async move {
            crate::support::request(addr, "POST", "/v1/completions", &[], Some(&body)).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.chunk_times().len(), 200);
    }
    let pre = sim.metric("vllm:num_preemptions_total{").await;
    assert!(pre > 0.0, "no preemption with 8 × 400 tokens in a 2048-token cache");
    assert_eq!(sim.metric("vllm:generation_tokens_total{").await, 1600.0);
}

#[tokio::test]
async fn concurrency_shows_in_gauges_and_raises_itl() {
    // 64 long decodes at once: each step carries 64 sequences, so ITL rises above batch-1's.
    let sim = TestSim::start("llama-3.1-8b/h100", &["time_scale=0", "step_jitter_cv=0"]).await;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let addr = sim.addr;
        let body = json!({"prompt": prompt_of(1436), "max_tokens": 128, "stream": true});
        tasks.push(tokio::spawn(async move {
            crate::support::request(addr, "POST", "/v1/completions", &[], Some(&body)).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().chunk_times().len(), 128);
    }
    let l = r#"{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}"#;
    let itl = sim.metric(&format!("vllm:inter_token_latency_seconds_sum{l}")).await
        / sim.metric(&format!("vllm:inter_token_latency_seconds_count{l}")).await;
    assert!(itl > 0.0105, "mean itl {itl} should exceed batch-1's 7.5 ms");
}
