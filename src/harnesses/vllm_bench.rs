//! `vllm bench serve` (the vLLM project's own benchmark): one run per stage, the workload as its
//! command line; records from its detailed result file, `result.json` (`--save-detailed`: per
//! request its send time, client queue time, TTFT, inter-token gaps, latency, lengths, error).
//!
//! What maps: random lengths (`--random-input-len`/`--random-output-len`, `--random-range-ratio`:
//! the window benchflow's random dataset copies), one random prefix (`--random-prefix-len`),
//! shared-prefix groups (`prefix_repetition`: `groups` prefixes, the stage's requests shared
//! among them, not `prompts_per_group`), prompt files (the prompts benchflow reads, in its seeded
//! order, as a `custom` JSON-lines file of `prompt` and `output_tokens`, unshuffled, written over
//! again as the stage needs: the tool would otherwise fill up with random picks), rate stages
//! with poisson, gamma (`--burstiness`) or constant (`--burstiness inf`) arrivals, an in-flight
//! cap (`--max-concurrency`), concurrency stages with a request count, `ignore_eos`,
//! `extra_body`, literal headers, the endpoint, the seed. A rate stage bounded by time sends
//! rate × duration requests: `vllm bench serve` counts requests, not seconds. Not: unstreamed
//! requests (it always streams), concurrency stages bounded by time. Its own per-request
//! timeout (6 h) is kept.

use serde_json::{Value, json};

use super::{Adapter, Export, HarnessError, Invocation, Refusal, Setup};
use crate::{
    datasets::Prompt,
    results::{ErrorKind, Record},
    spec::workload::{Arrival, DatasetSpec, Load, Stage, Workload},
};

/// The detailed result file `vllm bench serve` writes into the run's directory.
pub(crate) const RECORDS: &str = "result.json";

/// `vllm bench serve` as an [`Adapter`] (its tool is vLLM itself).
pub(crate) struct VllmBench;

impl Adapter for VllmBench {
    fn tool_name(&self) -> &'static str {
        "vllm"
    }

    fn caveat(&self) -> &'static str {
        "per-request records converted from vllm bench serve's detailed result.json; a request ends at \
         its last token (it records no later time)"
    }

    fn records_file(&self) -> &'static str {
        RECORDS
    }

    fn check(&self, w: &Workload) -> Result<(), Refusal> {
        if !w.api.stream {
            return Err(Refusal::new("api.stream", "vllm bench serve always streams"));
        }
        for (i, s) in w.stages.iter().enumerate() {
            if matches!(s.load(), Load::Concurrency(_)) && s.requests.is_none() {
                return Err(Refusal::new(
                    format!("stages[{i}].requests"),
                    "vllm bench serve counts requests, not seconds: a concurrency stage needs `requests`",
                ));
            }
        }
        if let DatasetSpec::SharedPrefix(p) = &w.dataset {
            for (i, s) in w.stages.iter().enumerate() {
                if requests(s) < u64::from(p.groups) {
                    return Err(Refusal::new(
                        format!("stages[{i}]"),
                        format!(
                            "vllm bench serve shares a stage's requests among the {} prefix groups: the stage sends fewer",
                            p.groups
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A file dataset's prompts as the `custom` dataset's JSON lines (`prompt`, `output_tokens`),
    /// over again as the run needs ([`super::over_again`]).
    fn prompt_file(&self, prompts: &[Prompt], w: &Workload) -> Result<(&'static str, String), HarnessError> {
        let text = super::json_lines_over_again(
            prompts,
            w,
            "vllm bench",
            |text, n| json!({ "prompt": text, "output_tokens": n }),
        )?;
        // The `custom` dataset reads a `.jsonl` file by its name.
        Ok(("prompts-vllm-bench.jsonl", text))
    }

    /// One `vllm bench serve` per stage (and one for the warm-up, at its concurrency).
    fn invocations(&self, w: &Workload, setup: &Setup) -> Vec<Invocation> {
        let (backend, endpoint) = if super::is_chat(w) {
            ("openai-chat", "/v1/chat/completions")
        } else {
            ("openai", "/v1/completions")
        };
        let mut common: Vec<String> = [
            "bench",
            "serve",
            "--backend",
            backend,
            "--endpoint",
            endpoint,
            "--base-url",
            setup.url,
            "--model",
            setup.model,
            "--tokenizer",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        common.push(setup.tokenizer.display().to_string());
        common.extend(dataset_args(w, setup));
        if w.api.ignore_eos {
            common.push("--ignore-eos".into());
        }
        if !w.api.extra_body.is_empty() {
            let body: serde_json::Map<String, Value> = w.api.extra_body.clone().into_iter().collect();
            common.extend(["--extra-body".into(), Value::Object(body).to_string()]);
        }
        if !w.api.headers.is_empty() {
            // One `--header` with every pair: the option takes a list, and a second one replaces it.
            common.push("--header".into());
            common.extend(w.api.headers.iter().map(|(k, v)| format!("{k}={v}")));
        }
        common.extend(
            [
                "--seed",
                &w.seed.to_string(),
                "--disable-tqdm",
                // Its own summary with E2EL too (its default leaves it out), for the cross-check.
                "--percentile-metrics",
                "ttft,tpot,itl,e2el",
                "--save-result",
                "--save-detailed",
                "--result-dir",
                ".",
                "--result-filename",
                RECORDS,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let closed = |args: &mut Vec<String>, concurrency: u32, n: u64| {
            args.extend([
                "--request-rate".into(),
                "inf".into(),
                "--max-concurrency".into(),
                concurrency.to_string(),
                "--num-prompts".into(),
                n.to_string(),
            ]);
        };
        let mut out = Vec::new();
        if w.warmup.requests > 0 {
            let mut args = common.clone();
            closed(&mut args, w.warmup.concurrency.unwrap_or(1).max(1), u64::from(w.warmup.requests));
            out.push(Invocation::warmup(w, setup, args, None));
        }
        for (i, stage) in w.stages.iter().enumerate() {
            let mut args = common.clone();
            match stage.load() {
                Load::Rate { rate, arrival, burstiness, max_concurrency } => {
                    let burstiness = match arrival {
                        Arrival::Poisson => "1".to_string(),
                        Arrival::Gamma => burstiness.to_string(),
                        Arrival::Constant => "inf".to_string(),
                    };
                    args.extend([
                        "--request-rate".into(),
                        rate.to_string(),
                        "--burstiness".into(),
                        burstiness,
                        "--num-prompts".into(),
                        requests(stage).to_string(),
                    ]);
                    if let Some(c) = max_concurrency {
                        args.extend(["--max-concurrency".into(), c.to_string()]);
                    }
                }
                Load::Concurrency(c) => closed(&mut args, c, requests(stage)),
            }
            out.push(Invocation::stage(i as u32 + 1, stage, setup, args, None));
        }
        out
    }

    /// Converts the detailed result (times in seconds of `CLOCK_MONOTONIC`, Python's
    /// `perf_counter`): `start_times` is the send, minus `queue_times` (waiting for a concurrency
    /// slot) the scheduled time of a rate stage (a concurrency stage's requests are scheduled when
    /// sent); `ttfts` after the send the first token, each of `itls` the next;
    /// `latencies` after the send the last token (the end: it records no later time); `output_lens`
    /// the server's completion tokens (its `usage`), `input_lens` the prompt as its tokenizer
    /// counted it.
    fn parse(&self, text: &str, export: Export) -> Result<Vec<Record>, HarnessError> {
        let Export { stage, warmup, clock, path } = export;
        let bad = |why: String| HarnessError::Native { path: path.to_path_buf(), why };
        // Python's json writes NaN and Infinity (an aggregate of no request, an infinite rate).
        let text = text.replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null");
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let list = |key: &str| {
            v[key]
                .as_array()
                .ok_or_else(|| bad(format!("no `{key}` list (was it run with --save-detailed?)")))
        };
        let (starts, queued, ttfts, itls, latencies) =
            (list("start_times")?, list("queue_times")?, list("ttfts")?, list("itls")?, list("latencies")?);
        let (inputs, outputs, errors) = (list("input_lens")?, list("output_lens")?, list("errors")?);
        let n = starts.len();
        for (key, l) in [
            ("queue_times", queued),
            ("ttfts", ttfts),
            ("itls", itls),
            ("latencies", latencies),
            ("input_lens", inputs),
            ("output_lens", outputs),
            ("errors", errors),
        ] {
            if l.len() != n {
                return Err(bad(format!("`{key}` has {} entries, `start_times` {n}", l.len())));
            }
        }
        // A concurrency stage (`--request-rate inf`) has no schedule: every request "arrives" at the
        // start and waits for a slot, which is not a delay behind a schedule (the built-in's
        // closed-loop requests are scheduled when they are sent).
        let closed = v["request_rate"].as_str() == Some("inf") || v["request_rate"].is_null();
        let s = |v: &Value| v.as_f64().unwrap_or(0.0);
        let ns = |secs: f64| (secs * 1e9).round().max(0.0) as u64;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let start = s(&starts[i]);
            let sent = clock.monotonic(start);
            let waited = if closed { 0.0 } else { s(&queued[i]).max(0.0) };
            let scheduled = clock.monotonic(start - waited).min(sent);
            let input = s(&inputs[i]) as u32;
            let output = s(&outputs[i]) as u32;
            let mut r = Record::new(stage, 0, warmup, scheduled, input, output);
            r.sent_ns = sent;
            r.end_ns = sent + ns(s(&latencies[i]));
            let ttft = s(&ttfts[i]);
            if ttft > 0.0 {
                let mut at = sent + ns(ttft);
                r.chunk(at);
                for gap in itls[i].as_array().into_iter().flatten() {
                    at += ns(s(gap));
                    r.chunk(at);
                }
                r.end_ns = r.end_ns.max(at);
            }
            let error = errors[i].as_str().unwrap_or("");
            if error.is_empty() {
                r.usage_completion = Some(output);
                super::succeeded(&mut r);
            } else if let Some(code) = status_of(error) {
                r.status = code;
                r.fail(ErrorKind::Http, format!("HTTP {code} {}", error.trim()));
            } else {
                // A Python traceback: its last line says what happened.
                let last = error.trim().lines().last().unwrap_or(error).to_string();
                let streamed = r.chunks > 0 || itls[i].as_array().is_some_and(|g| !g.is_empty());
                let (kind, status) = super::transport_error(&last, streamed);
                r.status = status;
                r.fail(kind, last);
            }
            out.push(r);
        }
        Ok(out)
    }
}

/// The requests of a stage: its count, or rate × duration (whichever is smaller with both).
fn requests(s: &Stage) -> u64 {
    let by_time = match (s.rate, s.duration) {
        (Some(r), Some(d)) => Some((r * d.0).round().max(1.0) as u64),
        _ => None,
    };
    match (s.requests, by_time) {
        (Some(n), Some(m)) => n.min(m),
        (Some(n), None) | (None, Some(n)) => n,
        (None, None) => 1,
    }
}

/// The dataset as `vllm bench serve`'s options.
fn dataset_args(w: &Workload, setup: &Setup) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |k: &str, v: String| {
        a.push(k.to_string());
        a.push(v);
    };
    match &w.dataset {
        DatasetSpec::Random(r) => {
            push("--dataset-name", "random".into());
            push("--random-input-len", r.input_len.to_string());
            push("--random-output-len", r.output_len.to_string());
            push("--random-range-ratio", r.range_ratio.to_string());
            push("--random-prefix-len", r.prefix_len.to_string());
        }
        DatasetSpec::SharedPrefix(s) => {
            push("--dataset-name", "prefix_repetition".into());
            push("--prefix-repetition-prefix-len", s.prefix_len.to_string());
            push("--prefix-repetition-suffix-len", s.suffix_len.to_string());
            push("--prefix-repetition-num-prefixes", s.groups.to_string());
            push("--prefix-repetition-output-len", s.output_len.to_string());
        }
        DatasetSpec::Sharegpt(_) | DatasetSpec::Jsonl(_) | DatasetSpec::Sample(_) => {
            push("--dataset-name", "custom".into());
            if let Some(file) = setup.prompts {
                push("--dataset-path", file.display().to_string());
            }
            // Each line's own output length; benchflow's order; the prompt as written.
            push("--custom-output-len", "-1".into());
            a.push("--disable-shuffle".into());
            a.push("--skip-chat-template".into());
        }
    }
    a
}

/// The HTTP status of a reason phrase, as `vllm bench serve` records a refused request (it keeps
/// the reason, not the code).
fn status_of(reason: &str) -> Option<u16> {
    const REASONS: [(&str, u16); 10] = [
        ("Bad Request", 400),
        ("Unauthorized", 401),
        ("Forbidden", 403),
        ("Not Found", 404),
        ("Request Timeout", 408),
        ("Too Many Requests", 429),
        ("Internal Server Error", 500),
        ("Bad Gateway", 502),
        ("Service Unavailable", 503),
        ("Gateway Timeout", 504),
    ];
    REASONS.iter().find(|(r, _)| *r == reason.trim()).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::harnesses::Clock;

    /// Recorded on this machine: `vllm bench serve` 0.33.0 against `benchflow sim` (TTFT 50 ms,
    /// ITL 10 ms, 20% refused with 400, 20% of streams cut after 3 tokens), 8 requests of 32 + 8
    /// tokens at 20 req/s constant, started at CLOCK_MONOTONIC 51674.251273826 s.
    const NATIVE: &str = include_str!("../../tests/integration/fixtures/native/vllm-bench-result.json");

    fn workload(yaml: &str) -> Workload {
        Workload::from_yaml(yaml, "w.yaml").unwrap()
    }

    #[test]
    fn records_are_converted_onto_the_runs_clock() {
        let clock = Clock { unix_ns: 0, monotonic_s: 51674.0 };
        let r = VllmBench.parse(NATIVE, Export::example(1, false, &clock, "x")).unwrap();
        assert_eq!(r.len(), 8);
        // Request 1 (the second): sent at 51685.414360874 after 97.074 µs in the queue, first
        // token 0.051425702 s later, 7 gaps, the last token 0.121473171 s after the send.
        let a = &r[1];
        assert_eq!((a.stage, a.warmup, a.status, a.error_kind), (1, false, 200, None));
        assert_eq!(a.sent_ns, 11_414_360_874);
        assert_eq!(a.scheduled_ns, 11_414_360_874 - 97_074);
        assert_eq!(a.first_ns, Some(11_414_360_874 + 51_425_702));
        assert_eq!((a.chunks, a.itl_ns.len()), (8, 7));
        assert_eq!(a.end_ns, 11_414_360_874 + 121_473_171);
        assert_eq!(a.last_ns, Some(a.end_ns));
        assert_eq!((a.est_prompt, a.usage_completion), (32, Some(8)));
        // The sum of the gaps is the last token's time after the first.
        assert_eq!(a.itl_ns.iter().sum::<u64>(), 121_473_171 - 51_425_702);
        // Refused with its reason phrase: an HTTP 400.
        assert_eq!((r[0].status, r[0].error_kind), (400, Some(ErrorKind::Http)));
        assert_eq!(r[0].error.as_deref(), Some("HTTP 400 Bad Request"));
        // Cut short after streaming began: aborted, the traceback's last line kept.
        assert_eq!((r[4].status, r[4].error_kind), (200, Some(ErrorKind::Aborted)));
        assert!(r[4].error.as_deref().unwrap().starts_with("aiohttp.client_exceptions.ClientPayloadError"));
        assert_eq!(r.iter().filter(|r| r.error_kind.is_none()).count(), 5);
        // The same requests from a concurrency stage: no schedule to be behind.
        let closed = NATIVE.replace("\"request_rate\": 20.0", "\"request_rate\": \"inf\"");
        assert_ne!(closed, NATIVE);
        let c = VllmBench.parse(&closed, Export::example(1, false, &clock, "x")).unwrap();
        assert!(c.iter().all(|r| r.scheduled_ns == r.sent_ns));
    }

    #[test]
    fn a_result_without_details_says_how_to_get_them() {
        let e = VllmBench
            .parse(
                "{\"completed\": 3, \"mean_ttft_ms\": NaN}",
                Export::example(1, false, &Clock::now(), "r.json"),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.json") && e.contains("--save-detailed"), "{e}");
    }

    #[test]
    fn stages_become_command_lines() {
        let w = workload(
            "seed: 9\napi: { endpoint: chat, headers: { x-a: \"1\", x-b: \"2\" }, extra_body: { temperature: 0 } }\n\
             dataset: { random: { input_len: 100, output_len: 20, range_ratio: 0.25, prefix_len: 50 } }\n\
             warmup: { requests: 3, concurrency: 2 }\n\
             stages:\n  - { rate: 5, arrival: gamma, burstiness: 0.5, max_concurrency: 7, duration: 10s }\n\
             \x20 - { rate: 4, arrival: constant, requests: 9, duration: 10s }\n  - { concurrency: 4, requests: 30 }\n",
        );
        assert_eq!(VllmBench.check(&w), Ok(()));
        let inv = VllmBench.invocations(&w, &Setup::example(None));
        assert_eq!(inv.len(), 4);
        let has = |i: usize, pair: &[&str]| inv[i].args.windows(pair.len()).any(|w| w == pair);
        assert!(
            inv[0].warmup
                && has(0, &["--request-rate", "inf", "--max-concurrency", "2", "--num-prompts", "3"])
        );
        for pair in [
            &["--backend", "openai-chat", "--endpoint", "/v1/chat/completions"][..],
            &["--random-range-ratio", "0.25"],
            &["--random-prefix-len", "50"],
            &["--seed", "9"],
            &["--header", "x-a=1", "x-b=2"],
            &["--extra-body", "{\"temperature\":0}"],
            &["--request-rate", "5", "--burstiness", "0.5", "--num-prompts", "50"],
            &["--max-concurrency", "7"],
            &["--result-filename", RECORDS],
        ] {
            assert!(has(1, pair), "{pair:?} in {:?}", inv[1].args);
        }
        // Constant arrivals; a request count under rate × duration wins.
        assert!(has(2, &["--burstiness", "inf", "--num-prompts", "9"]));
        assert!(has(3, &["--request-rate", "inf", "--max-concurrency", "4", "--num-prompts", "30"]));
        assert_eq!(inv[3].dir, Path::new("/n/stage-3"));
    }

    #[test]
    fn what_it_cannot_express_is_refused_by_field() {
        let field = |yaml: &str| VllmBench.check(&workload(yaml)).map_err(|r| r.field);
        let random = "dataset: { random: { input_len: 8, output_len: 4 } }\n";
        assert_eq!(
            field(&format!("api: {{ stream: false }}\n{random}stages: [ {{ rate: 1, duration: 1s }} ]\n")),
            Err("api.stream".into())
        );
        assert_eq!(
            field(&format!("{random}stages: [ {{ concurrency: 2, duration: 5s }} ]\n")),
            Err("stages[0].requests".into())
        );
        assert_eq!(
            field(
                "dataset: { shared_prefix: { groups: 8, prompts_per_group: 2, prefix_len: 8, suffix_len: 4, output_len: 4 } }\n\
                 stages: [ { concurrency: 2, requests: 5 } ]\n"
            ),
            Err("stages[0]".into())
        );
    }

    #[test]
    fn a_prompt_file_becomes_custom_lines_in_order() {
        let w =
            workload("dataset: { jsonl: { path: p.jsonl } }\nstages: [ { concurrency: 1, requests: 4 } ]\n");
        assert_eq!(VllmBench.check(&w), Ok(()));
        let prompts = crate::harnesses::test_prompts(
            "{\"prompt\": \"a b\", \"max_tokens\": 3}\n{\"prompt\": \"c\", \"max_tokens\": 2}\n",
        );
        let (name, text) = VllmBench.prompt_file(&prompts, &w).unwrap();
        let lines = crate::harnesses::json_of_lines(&text);
        assert_eq!(lines[0], json!({ "prompt": "a b", "output_tokens": 3 }));
        assert_eq!(lines[1], json!({ "prompt": "c", "output_tokens": 2 }));
        assert_eq!(lines[2], lines[0], "over again: it would fill up with random picks");
        let file = Path::new("/n").join(name);
        let args = &VllmBench.invocations(&w, &Setup::example(Some(&file)))[0].args;
        let has = |pair: &[&str]| args.windows(pair.len()).any(|w| w == pair);
        assert!(has(&["--dataset-name", "custom", "--dataset-path", "/n/prompts-vllm-bench.jsonl"]));
        assert!(has(&["--custom-output-len", "-1", "--disable-shuffle", "--skip-chat-template"]));
    }
}
