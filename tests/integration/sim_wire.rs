//! The simulator speaks vLLM's wire format, as a strict client parses it.

use serde_json::{Value, json};

use crate::support::{SseEvent, TestSim, completion, metric_value, prompt_of};

fn json_events(events: &[(std::time::Instant, SseEvent)]) -> Vec<Value> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            SseEvent::Json(v) => Some(v.clone()),
            SseEvent::Done => None,
        })
        .collect()
}

#[tokio::test]
async fn streaming_chat_has_role_content_finish_usage_and_done() {
    let sim = TestSim::start("tiny/cpu", &["time_scale=0"]).await;
    let body = json!({
        "model": "tiny-sim", "messages": [{"role": "user", "content": "tell me a story"}],
        "max_tokens": 6, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true},
    });
    let r = sim.post_with("/v1/chat/completions", &[("x-request-id", "abc-123")], &body).await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert_eq!(r.headers["x-request-id"], "abc-123");
    assert_eq!(r.headers["x-inference-port"], sim.addr.port().to_string().as_str());
    let events = r.sse().expect("strict SSE");
    assert_eq!(events.last().unwrap().1, SseEvent::Done);
    let chunks = json_events(&events);
    // role chunk + 6 content chunks + usage chunk
    assert_eq!(chunks.len(), 8, "{chunks:#?}");
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "tiny-sim");
        assert!(c["created"].is_u64());
    }
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let mut text = String::new();
    for (i, c) in chunks[1..7].iter().enumerate() {
        let choice = &c["choices"][0];
        text.push_str(choice["delta"]["content"].as_str().unwrap());
        let expect = if i == 5 { json!("length") } else { Value::Null };
        assert_eq!(choice["finish_reason"], expect);
    }
    assert_eq!(chunks[6]["choices"][0]["stop_reason"], Value::Null);
    assert_eq!(text.split_whitespace().count(), 6);
    let usage = &chunks[7];
    assert_eq!(usage["choices"], json!([]));
    // "tell me a story": 15 bytes → 4 tokens, + 8 template tokens for the one message.
    assert_eq!(usage["usage"], json!({"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}));
}

#[tokio::test]
async fn streaming_completions_without_usage_and_with_continuous_usage() {
    let sim = TestSim::start("tiny/cpu", &["time_scale=0"]).await;
    let r =
        sim.post("/v1/completions", &json!({"prompt": prompt_of(10), "max_tokens": 3, "stream": true})).await;
    let chunks = json_events(&r.sse().unwrap());
    assert_eq!(chunks.len(), 3);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion" && c["choices"][0]["text"].is_string()));
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));

    let r = sim
        .post(
            "/v1/completions",
            &json!({"prompt": prompt_of(10), "max_tokens": 3, "stream": true,
                    "stream_options": {"include_usage": true, "continuous_usage_stats": true}}),
        )
        .await;
    let chunks = json_events(&r.sse().unwrap());
    let seen: Vec<u64> = chunks.iter().map(|c| c["usage"]["completion_tokens"].as_u64().unwrap()).collect();
    assert_eq!(seen, vec![1, 2, 3, 3]);
}

#[tokio::test]
async fn non_streaming_responses_carry_usage() {
    let sim = TestSim::start("tiny/cpu", &["time_scale=0"]).await;
    let r = sim.post("/v1/completions", &json!({"prompt": prompt_of(20), "max_tokens": 9})).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["usage"], json!({"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}));
    assert_eq!(v["choices"][0]["text"].as_str().unwrap().split_whitespace().count(), 9);
    assert_eq!(v["choices"][0]["finish_reason"], "length");

    let r = sim
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 2}),
        )
        .await;
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn force_include_usage_and_output_length_policies() {
    let sim =
        TestSim::start("tiny/cpu", &["time_scale=0", "force_include_usage=true", "output_len=fixed:2"]).await;
    let r = sim.post("/v1/completions", &json!({"prompt": "x", "max_tokens": 5, "stream": true})).await;
    let chunks = json_events(&r.sse().unwrap());
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[2]["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn errors_have_vllm_shapes() {
    let sim = TestSim::start("tiny/cpu", &["time_scale=0"]).await;
    let r = sim.post("/v1/completions", &json!({"model": "gpt-9", "prompt": "x"})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "The model `gpt-9` does not exist.");
    assert_eq!(r.json()["error"]["code"], 404);
    let r = sim.post("/v1/completions", &json!({"prompt": prompt_of(4000), "max_tokens": 200})).await;
    assert_eq!(r.status, 400);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("maximum context length is 4096 tokens") && msg.contains("4200"), "{msg}");
    let r = sim.post("/v1/chat/completions", &json!({"messages": "nope"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(sim.get("/v1/nothing").await.status, 404);
    assert_eq!(sim.get("/v1/completions").await.status, 405);

    let legacy = TestSim::start("tiny/cpu", &["legacy_error_shape=true"]).await;
    let r = legacy.post("/v1/completions", &json!({"model": "gpt-9", "prompt": "x"})).await;
    assert_eq!(r.json()["object"], "error");
    assert_eq!(r.json()["type"], "NotFoundError");
}

#[tokio::test]
async fn models_health_version_load_and_tokenize() {
    let sim = TestSim::start("tiny/cpu", &["served_model_names=[tiny-sim, alias]"]).await;
    let models = sim.get("/v1/models").await.json();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["tiny-sim", "alias"]);
    assert_eq!(models["data"][0]["owned_by"], "vllm");
    assert_eq!(models["data"][0]["max_model_len"], 4096);
    let r = sim.post("/v1/completions", &json!({"model": "alias", "prompt": "x", "max_tokens": 1})).await;
    assert_eq!(r.json()["model"], "alias");
    let h = sim.get("/health").await;
    assert_eq!((h.status, h.body.len()), (200, 0));
    assert_eq!(crate::support::request(sim.addr, "POST", "/ping", &[], None).await.status, 200);
    assert!(sim.get("/version").await.json()["version"].as_str().unwrap().starts_with("benchflow-sim"));
    assert_eq!(sim.get("/load").await.json()["server_load"], 0);
    assert_eq!(sim.post("/tokenize", &json!({"prompt": "hello world"})).await.json()["count"], 3);
}

#[tokio::test]
async fn metrics_use_vllm_names_and_count_what_was_served() {
    let sim = TestSim::start("tiny/cpu", &["time_scale=0"]).await;
    for _ in 0..3 {
        let r = sim.post("/v1/completions", &completion(&prompt_of(32), 7)).await;
        assert_eq!(r.status, 200);
    }
    let text = sim.get("/metrics").await.text();
    let l = r#"{engine="0",model_name="tiny-sim"}"#;
    let get = |name: &str| metric_value(&text, &format!("{name}{l}")).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(get("vllm:generation_tokens_total"), 21.0);
    assert_eq!(get("vllm:prompt_tokens_total"), 96.0);
    assert_eq!(get("vllm:time_to_first_token_seconds_count"), 3.0);
    assert_eq!(get("vllm:inter_token_latency_seconds_count"), 18.0);
    assert_eq!(get("vllm:e2e_request_latency_seconds_count"), 3.0);
    assert_eq!(get("vllm:num_requests_running"), 0.0);
    assert_eq!(get("vllm:kv_cache_usage_perc"), 0.0);
    assert_eq!(
        metric_value(
            &text,
            r#"vllm:request_success_total{engine="0",model_name="tiny-sim",finished_reason="length"}"#
        ),
        Some(3.0)
    );
    for name in [
        "vllm:num_requests_waiting",
        "vllm:num_preemptions_total",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:request_queue_time_seconds_sum",
        "vllm:request_prefill_time_seconds_sum",
        "vllm:request_decode_time_seconds_sum",
        "vllm:request_inference_time_seconds_sum",
        "vllm:request_time_per_output_token_seconds_sum",
        "vllm:iteration_tokens_total_count",
        "vllm:request_prompt_tokens_sum",
        "vllm:request_generation_tokens_sum",
        "vllm:request_params_max_tokens_sum",
    ] {
        get(name);
    }
    assert!(text.contains("vllm:cache_config_info{block_size=\"16\""));
    assert!(text.contains("# TYPE vllm:time_to_first_token_seconds histogram"));
    assert!(!text.contains("vllm:gpu_cache_usage_perc"));
    // Same prompt three times: the prefix cache hit the shared blocks.
    assert!(get("vllm:prefix_cache_hits_total") >= 32.0);

    let legacy = TestSim::start("tiny/cpu", &["legacy_metric_names=true"]).await;
    let text = legacy.get("/metrics").await.text();
    for name in [
        "vllm:gpu_cache_usage_perc{",
        "vllm:gpu_prefix_cache_queries_total{",
        "vllm:time_per_output_token_seconds_count{",
    ] {
        assert!(text.contains(name), "{name}");
    }
}

#[tokio::test]
async fn event_per_chunk_writes_each_token_as_its_own_http_chunk() {
    let body = json!({
        "model": "tiny-sim", "prompt": "tell me a story", "max_tokens": 32, "ignore_eos": true, "stream": true,
    });
    let most_events_in_a_chunk = |frames: &[(std::time::Instant, bytes::Bytes)]| {
        frames.iter().map(|(_, f)| f.windows(6).filter(|w| w == b"data: ").count()).max().unwrap_or(0)
    };
    // Without model time the 32 tokens are ready together: coalesced by default, one event per
    // HTTP chunk when asked (the last chunk also carries `[DONE]`).
    let sim = TestSim::start("tiny/cpu", &["time_scale=0"]).await;
    let r = sim.post_with("/v1/completions", &[], &body).await;
    assert_eq!(json_events(&r.sse().unwrap()).len(), 32);
    assert!(most_events_in_a_chunk(&r.frames) > 2, "the default coalesces ready events");
    let sim = TestSim::start("tiny/cpu", &["time_scale=0", "event_per_chunk=true"]).await;
    let r = sim.post_with("/v1/completions", &[], &body).await;
    assert_eq!(json_events(&r.sse().unwrap()).len(), 32);
    assert!(r.frames.len() >= 32, "{} frames", r.frames.len());
    assert!(most_events_in_a_chunk(&r.frames) <= 2, "one token event per chunk (the last with [DONE])");
}
