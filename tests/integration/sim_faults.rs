//! Every fault knob of the simulator has an observable effect.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{SseEvent, TestSim, completion, eventually, prompt_of, try_request};

#[tokio::test]
async fn random_failures_use_the_configured_types_and_are_counted() {
    let sim =
        TestSim::start("tiny/cpu", &["time_scale=0", "failure_rate=1", "failure_types=[rate_limit]"]).await;
    for _ in 0..3 {
        let r = sim.post("/v1/completions", &completion("x", 2)).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.json()["error"]["type"], "rate_limit");
    }
    assert_eq!(sim.metric("sim:faults_injected_total{type=\"rate_limit\"}").await, 3.0);

    let sim = TestSim::start("tiny/cpu", &["time_scale=0", "failure_rate=0.5", "seed=11"]).await;
    let mut failed = 0;
    for _ in 0..200 {
        if sim.post("/v1/completions", &completion("x", 1)).await.status != 200 {
            failed += 1;
        }
    }
    assert!((70..130).contains(&failed), "{failed} of 200 failed at rate 0.5");
}

#[tokio::test]
async fn a_header_forces_an_error_for_one_request() {
    let sim = TestSim::start("tiny/cpu", &["time_scale=0"]).await;
    let r = sim.post_with("/v1/completions", &[("x-sim-return-error", "503")], &completion("x", 2)).await;
    assert_eq!(r.status, 503);
    let r = sim.post_with("/v1/completions", &[("X-Return-Error", "401")], &completion("x", 2)).await;
    assert_eq!(r.status, 401);
    assert_eq!(sim.post("/v1/completions", &completion("x", 2)).await.status, 200);
}

#[tokio::test]
async fn abort_cuts_the_stream_without_done() {
    let sim = TestSim::start("tiny/cpu", &["time_scale=0", "abort_rate=1", "abort_after_tokens=3"]).await;
    let r = sim.post("/v1/completions", &completion("x", 50)).await;
    assert_eq!(r.status, 200);
    assert!(r.body_error.is_some(), "the body should end in a connection error");
    let events = r.sse().expect("complete frames before the cut");
    assert_eq!(events.len(), 3);
    assert!(!events.iter().any(|(_, e)| *e == SseEvent::Done));
}

#[tokio::test]
async fn stream_errors_send_an_error_frame_then_done() {
    let sim =
        TestSim::start("tiny/cpu", &["time_scale=0", "stream_error_rate=1", "abort_after_tokens=2"]).await;
    let r = sim.post("/v1/completions", &completion("x", 50)).await;
    let events = r.sse().unwrap();
    assert_eq!(events.len(), 4, "{events:?}");
    let SseEvent::Json(err) = &events[2].1 else { panic!("{events:?}") };
    assert_eq!(err["error"]["code"], 500);
    assert_eq!(events[3].1, SseEvent::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_pause_the_stream() {
    let sim = TestSim::start("tiny/cpu", &["stall_rate=1", "stall_duration=300ms"]).await;
    let r = sim.post("/v1/completions", &completion("x", 10)).await;
    let times = r.chunk_times();
    assert_eq!(times.len(), 10);
    let max_gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(max_gap >= 0.29, "max gap {max_gap}");
}

#[tokio::test]
async fn slowdown_set_at_run_time_multiplies_latency() {
    let sim = TestSim::start("llama-3.1-8b/h100", &["time_scale=0", "step_jitter_cv=0"]).await;
    let l = r#"{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}"#;
    let itl = format!("vllm:inter_token_latency_seconds_sum{l}");
    sim.post("/v1/completions", &completion("x", 11)).await;
    let base = sim.metric(&itl).await;
    let r = sim.post("/admin/config", &json!({"slowdown": 4.0})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["slowdown"], 4.0);
    assert_eq!(sim.get("/admin/config").await.json()["slowdown"], 4.0);
    sim.post("/v1/completions", &completion("x", 11)).await;
    let slowed = sim.metric(&itl).await - base;
    assert!((slowed / base - 4.0).abs() < 0.05, "base {base}, slowed {slowed}");
}

#[tokio::test]
async fn admin_config_rejects_unknown_keys_and_bad_values() {
    let sim = TestSim::start("tiny/cpu", &[]).await;
    let r = sim.post("/admin/config", &json!({"slowdwn": 2})).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("did you mean `slowdown`"));
    assert_eq!(sim.post("/admin/config", &json!({"failure_rate": 2})).await.status, 400);
    assert_eq!(sim.post("/admin/config", &json!([1])).await.status, 400);
    assert_eq!(sim.get("/admin/config").await.json()["slowdown"], 1.0);
}

#[tokio::test]
async fn admin_reset_clears_metrics() {
    let sim = TestSim::start("tiny/cpu", &["time_scale=0"]).await;
    sim.post("/v1/completions", &completion("x", 5)).await;
    assert_eq!(sim.metric("vllm:generation_tokens_total{").await, 5.0);
    assert_eq!(sim.post("/admin/reset", &json!({})).await.status, 200);
    assert_eq!(sim.metric("vllm:generation_tokens_total{").await, 0.0);
}

/// vLLM's `POST /reset_prefix_cache`: the same prompt hits the cache before, misses after;
/// the counters are kept (unlike `/admin/reset`).
#[tokio::test]
async fn reset_prefix_cache_drops_cached_prefixes_and_keeps_counters() {
    let sim = TestSim::start("tiny/cpu", &["time_scale=0"]).await;
    let hits = async || sim.metric("vllm:prefix_cache_hits_total{").await;
    let prompt = crate::support::prompt_of(64);
    sim.post("/v1/completions", &completion(&prompt, 2)).await;
    assert_eq!(hits().await, 0.0);
    sim.post("/v1/completions", &completion(&prompt, 2)).await;
    let cached = hits().await;
    assert!(cached >= 48.0, "the second identical prompt reuses its full blocks: {cached}");
    let r = sim.post("/reset_prefix_cache", &json!({})).await;
    assert_eq!(r.status, 200);
    sim.post("/v1/completions", &completion(&prompt, 2)).await;
    assert_eq!(hits().await, cached, "after the reset the prompt is computed again");
    assert_eq!(sim.metric("vllm:generation_tokens_total{").await, 6.0);
    assert_eq!(sim.get("/reset_prefix_cache").await.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_delay_refuses_connections_then_serves() {
    let sim = TestSim::start("tiny/cpu", &["startup_delay=400ms", "startup_mode=refuse"]).await;
    let started = Instant::now();
    let first = try_request(sim.addr, "GET", "/health", &[], None).await;
    assert!(first.is_err(), "expected connection refused while loading");
    eventually(Duration::from_secs(5), async || {
        try_request(sim.addr, "GET", "/health", &[], None).await.is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(350));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_delay_in_503_mode_answers_unavailable() {
    let sim = TestSim::start("tiny/cpu", &["startup_delay=400ms", "startup_mode=503"]).await;
    assert_eq!(sim.get("/health").await.status, 503);
    assert_eq!(sim.post("/v1/completions", &completion("x", 1)).await.status, 503);
    eventually(Duration::from_secs(5), async || sim.get("/health").await.status == 200).await;
    assert_eq!(sim.post("/v1/completions", &completion("x", 1)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_death_fails_streams_and_health() {
    let sim = TestSim::start("tiny/cpu", &["die_after=1"]).await;
    // The first request streams slowly; the second kills the engine while it is in flight.
    let addr = sim.addr;
    let long = tokio::spawn(async move {
        crate::support::request(addr, "POST", "/v1/completions", &[], Some(&completion("x", 2000))).await
    });
    eventually(Duration::from_secs(5), async || sim.get("/load").await.json()["server_load"] == 1).await;
    let r = sim.post("/v1/completions", &completion("x", 2)).await;
    assert_eq!(r.status, 500);
    let long = long.await.unwrap();
    let events = long.sse().unwrap();
    let (_, SseEvent::Json(err)) = &events[events.len() - 2] else { panic!("{events:?}") };
    assert!(err["error"]["message"].as_str().unwrap().contains("dead"));
    assert_eq!(events.last().unwrap().1, SseEvent::Done);
    assert!(long.chunk_times().len() < 2000);
    assert_eq!(sim.get("/health").await.status, 503);
}

#[tokio::test]
async fn engine_death_in_exit_mode_stops_the_server_with_an_error() {
    let mut sim = TestSim::start("tiny/cpu", &["time_scale=0", "die_after=1", "die_mode=exit"]).await;
    assert_eq!(sim.post("/v1/completions", &completion("x", 1)).await.status, 200);
    let _ = try_request(sim.addr, "POST", "/v1/completions", &[], Some(&completion("x", 1))).await;
    let result =
        tokio::time::timeout(Duration::from_secs(5), sim.handle.take().unwrap()).await.unwrap().unwrap();
    assert!(matches!(result, Err(benchflow::SimError::EngineExited)), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_waiting_queue_answers_429() {
    let sim = TestSim::start("tiny/cpu", &["max_num_seqs=1", "max_waiting=2"]).await;
    let mut tasks = Vec::new();
    let send = |tasks: &mut Vec<tokio::task::JoinHandle<_>>| {
        let addr = sim.addr;
        tasks.push(tokio::spawn(async move {
            crate::support::request(addr, "POST", "/v1/completions", &[], Some(&completion("x", 300))).await
        }));
    };
    send(&mut tasks);
    eventually(Duration::from_secs(5), async || sim.metric("vllm:num_requests_running{").await == 1.0).await;
    send(&mut tasks);
    send(&mut tasks);
    eventually(Duration::from_secs(5), async || sim.metric("vllm:num_requests_waiting{").await == 2.0).await;
    // One running, two waiting: the next is refused.
    let r = sim.post("/v1/completions", &completion("x", 1)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], 429);
    assert_eq!(sim.metric("sim:faults_injected_total{type=\"queue_full\"}").await, 1.0);
    for t in tasks {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_faults_break_or_freeze_the_endpoint() {
    let sim = TestSim::start("tiny/cpu", &["time_scale=0", "metrics_fault=500"]).await;
    assert_eq!(sim.get("/metrics").await.status, 500);

    sim.post("/admin/config", &json!({"metrics_fault": "stale"})).await;
    let frozen = sim.get("/metrics").await.text();
    sim.post("/v1/completions", &completion(&prompt_of(8), 4)).await;
    assert_eq!(sim.get("/metrics").await.text(), frozen);

    sim.post("/admin/config", &json!({"metrics_fault": "timeout"})).await;
    let r = tokio::time::timeout(Duration::from_millis(300), sim.get("/metrics")).await;
    assert!(r.is_err(), "/metrics should not answer");

    sim.post("/admin/config", &json!({"metrics_fault": "none"})).await;
    assert_eq!(sim.metric("vllm:generation_tokens_total{").await, 4.0);
}
