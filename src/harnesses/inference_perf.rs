//! inference-perf (the Kubernetes serving working group's benchmark): one run per stage from a
//! configuration file benchflow writes; records from its per-request lifecycle report,
//! `per_request_lifecycle_metrics.json`.
//!
//! What maps: random lengths (fixed, or uniform over vLLM's window for `range_ratio`),
//! shared-prefix groups (`shared_prefix`), rate stages with poisson or constant arrivals for a
//! whole number of seconds, an in-flight cap (one worker with `worker_max_concurrency`),
//! concurrency stages with a request count, streaming, `ignore_eos`, literal headers, the seed,
//! the per-request timeout, prompt files over the completions endpoint (the prompts benchflow
//! reads, in its seeded order, as a ShareGPT file whose answer to each prompt is as many words
//! of benchflow's tokenizer as the prompt's output length: inference-perf takes the answer's
//! token count for `max_tokens`). Not: gamma arrivals, a random workload's shared prefix, rate
//! stages bounded by a request count, concurrency stages bounded by time, `extra_body`, prompt
//! files over the chat endpoint (it would send each whole conversation, answer included, with
//! no output length).

use serde_json::{Value, json};

use super::{Adapter, Export, HarnessError, Invocation, Refusal, Setup};
use crate::{
    datasets::Prompt,
    results::{ErrorKind, Record},
    spec::workload::{Arrival, DatasetSpec, Load, Workload},
};

/// The per-request report inference-perf writes into its storage directory.
pub(crate) const RECORDS: &str = "per_request_lifecycle_metrics.json";

/// The configuration file benchflow writes for each run.
pub(crate) const CONFIG: &str = "config.yml";

/// inference-perf as an [`Adapter`].
pub(crate) struct InferencePerf;

impl Adapter for InferencePerf {
    fn tool_name(&self) -> &'static str {
        "inference-perf"
    }

    fn caveat(&self) -> &'static str {
        "per-request records converted from inference-perf's per_request_lifecycle_metrics.json; \
         it records no scheduled times (client queueing is not visible)"
    }

    fn records_file(&self) -> &'static str {
        RECORDS
    }

    fn check(&self, w: &Workload) -> Result<(), Refusal> {
        match &w.dataset {
            DatasetSpec::Random(r) if r.prefix_len > 0 => {
                return Err(Refusal::new(
                    "dataset.random.prefix_len",
                    "inference-perf's random data has no shared prefix (use dataset.shared_prefix)",
                ));
            }
            DatasetSpec::Random(_) | DatasetSpec::SharedPrefix(_) => {}
            DatasetSpec::Sharegpt(_) | DatasetSpec::Jsonl(_) | DatasetSpec::Sample(_)
                if super::is_chat(w) =>
            {
                return Err(Refusal::new(
                    "api.endpoint",
                    "inference-perf sends a prompt file's whole conversation over the chat endpoint, answer included, \
                     with no output length: use `endpoint: completions`",
                ));
            }
            DatasetSpec::Sharegpt(_) | DatasetSpec::Jsonl(_) | DatasetSpec::Sample(_) => {}
        }
        if !w.api.extra_body.is_empty() {
            return Err(Refusal::new("api.extra_body", "inference-perf sends no extra request fields"));
        }
        for (i, s) in w.stages.iter().enumerate() {
            let at = |k: &str| format!("stages[{i}].{k}");
            match s.load() {
                Load::Rate { arrival: Arrival::Gamma, .. } => {
                    return Err(Refusal::new(
                        at("arrival"),
                        "inference-perf has poisson and constant arrivals, not gamma",
                    ));
                }
                Load::Rate { .. } => {
                    let Some(d) = s.duration else {
                        return Err(Refusal::new(
                            at("duration"),
                            "inference-perf rate stages run for a duration: give one",
                        ));
                    };
                    if d.0 < 1.0 || d.0.fract() != 0.0 {
                        return Err(Refusal::new(
                            at("duration"),
                            "inference-perf rate stages last whole seconds (1 s or more)",
                        ));
                    }
                    if s.requests.is_some() {
                        return Err(Refusal::new(
                            at("requests"),
                            "inference-perf rate stages stop at their duration, not a request count",
                        ));
                    }
                }
                Load::Concurrency(_) => {
                    if s.requests.is_none() {
                        return Err(Refusal::new(
                            at("requests"),
                            "inference-perf concurrency stages stop after a request count: give `requests`",
                        ));
                    }
                    if s.duration.is_some() {
                        return Err(Refusal::new(
                            at("duration"),
                            "inference-perf concurrency stages stop after a request count, not a duration",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// A file dataset's prompts as a ShareGPT file (JSON lines): each prompt, answered by as many
    /// one-token words as its output length, which inference-perf counts for `max_tokens`.
    /// inference-perf reads one entry before it starts, then cycles through the file, skipping
    /// conversations of fewer than two turns: the first line is such a conversation, so the prompts
    /// go out in benchflow's order, pass after pass.
    fn prompt_file(&self, prompts: &[Prompt], _: &Workload) -> Result<(&'static str, String), HarnessError> {
        let word = crate::lexicon::LEXICON[0].trim();
        let skipped = json!({ "conversations": [{ "from": "human", "value": word }] }).to_string() + "\n";
        let conversations = super::json_lines(prompts, "inference-perf", |text, n| {
            json!({ "conversations": [
                { "from": "human", "value": text },
                { "from": "gpt", "value": vec![word; n as usize].join(" ") },
            ] })
        })?;
        Ok(("prompts-inference-perf.json", skipped + &conversations))
    }

    /// One `inference-perf -c config.yml` per stage (and one for the warm-up, at its concurrency).
    fn invocations(&self, w: &Workload, setup: &Setup) -> Vec<Invocation> {
        let base = |kind: &str, stage: Value, cap: Option<u32>| {
            let mut load = json!({
                "type": kind,
                "stages": [stage],
                "base_seed": w.seed,
                "request_timeout": w.api.timeout.0,
                "worker_max_concurrency": 1000,
            });
            if let Some(c) = cap {
                // One worker, so that its cap is the stage's.
                load["num_workers"] = json!(1);
                load["worker_max_concurrency"] = json!(c);
            }
            load
        };
        let args = vec!["-c".to_string(), CONFIG.to_string()];
        let mut out = Vec::new();
        if w.warmup.requests > 0 {
            let c = w.warmup.concurrency.unwrap_or(1).max(1);
            let load = base(
                "concurrent",
                json!({ "num_requests": w.warmup.requests, "concurrency_level": c }),
                None,
            );
            out.push(Invocation::warmup(
                w,
                setup,
                args.clone(),
                Some((CONFIG.into(), config(w, setup, load))),
            ));
        }
        for (i, stage) in w.stages.iter().enumerate() {
            let n = i as u32 + 1;
            let load = match stage.load() {
                Load::Rate { rate, arrival, max_concurrency, .. } => {
                    let kind = if arrival == Arrival::Constant { "constant" } else { "poisson" };
                    let duration = stage.duration.map_or(1, |d| d.0 as u64);
                    base(kind, json!({ "rate": rate, "duration": duration }), max_concurrency)
                }
                Load::Concurrency(c) => base(
                    "concurrent",
                    json!({ "num_requests": stage.requests.unwrap_or(1), "concurrency_level": c }),
                    None,
                ),
            };
            out.push(Invocation::stage(
                n,
                stage,
                setup,
                args.clone(),
                Some((CONFIG.into(), config(w, setup, load))),
            ));
        }
        out
    }

    /// Converts inference-perf's records (times in seconds of `CLOCK_MONOTONIC`): `start_time` is
    /// both the scheduled time and the send (it records no schedule), each of `chunk_times` a
    /// content chunk, `end_time` the end; token counts from the server's usage when given.
    fn parse(&self, text: &str, export: Export) -> Result<Vec<Record>, HarnessError> {
        let Export { stage, warmup, clock, path } = export;
        let bad = |why: String| HarnessError::Native { path: path.to_path_buf(), why };
        let all: Vec<Value> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut out = Vec::with_capacity(all.len());
        for (i, v) in all.iter().enumerate() {
            let time = |key: &str| {
                v[key]
                    .as_f64()
                    .map(|s| clock.monotonic(s))
                    .ok_or_else(|| bad(format!("record {i}: no {key}")))
            };
            let sent = time("start_time")?;
            let end = time("end_time")?;
            let info = &v["info"];
            let response = &info["response_metrics"];
            let input = info["input_tokens"].as_u64().unwrap_or(0) as u32;
            let output = response["output_tokens"].as_u64().unwrap_or(0) as u32;
            let mut r = Record::new(stage, 0, warmup, sent, input, output);
            r.sent_ns = sent;
            r.end_ns = end;
            for t in response["chunk_times"].as_array().into_iter().flatten() {
                r.chunk(clock.monotonic(t.as_f64().unwrap_or(0.0)));
            }
            let usage = |k: &str| response["server_usage"][k].as_u64().map(|n| n as u32);
            r.usage_prompt = usage("prompt_tokens");
            r.usage_completion = usage("completion_tokens");
            let error = &v["error"];
            if error.is_object() {
                let kind = error["error_type"].as_str().unwrap_or("error");
                let message = format!("{kind}: {}", error["error_msg"].as_str().unwrap_or(""));
                match kind.strip_prefix("HTTP Error ").and_then(|c| c.trim().parse::<u16>().ok()) {
                    Some(code) => {
                        r.status = code;
                        r.fail(ErrorKind::Http, message);
                    }
                    None => {
                        let (k, status) = super::transport_error(kind, r.chunks > 0);
                        r.status = status;
                        r.fail(k, message);
                    }
                }
            } else {
                super::succeeded(&mut r);
            }
            out.push(r);
        }
        Ok(out)
    }
}

/// A length, fixed or uniform over vLLM's window `[⌊L(1−r)⌋, ⌈L(1+r)⌉]`.
fn length(len: u32, ratio: f64) -> Value {
    if ratio <= 0.0 {
        return json!({ "type": "fixed", "min": len, "max": len, "mean": len, "std_dev": 0 });
    }
    let l = f64::from(len);
    let (lo, hi) = ((l * (1.0 - ratio)).floor().max(1.0), (l * (1.0 + ratio)).ceil());
    json!({ "type": "uniform", "min": lo as u64, "max": hi as u64, "mean": l, "std_dev": (hi - lo) / 12f64.sqrt() })
}

fn data(w: &Workload, setup: &Setup) -> Value {
    match &w.dataset {
        DatasetSpec::SharedPrefix(s) => json!({
            "type": "shared_prefix",
            "shared_prefix": {
                "num_groups": s.groups,
                "num_prompts_per_group": s.prompts_per_group,
                "system_prompt_len": s.prefix_len,
                "question_len": s.suffix_len,
                "output_len": s.output_len,
                "seed": w.seed,
            }
        }),
        DatasetSpec::Random(r) => json!({
            "type": "random",
            "input_distribution": length(r.input_len, r.range_ratio),
            "output_distribution": length(r.output_len, r.range_ratio),
        }),
        DatasetSpec::Sharegpt(_) | DatasetSpec::Jsonl(_) | DatasetSpec::Sample(_) => json!({
            "type": "shareGPT",
            "path": setup.prompts.map(|p| p.display().to_string()),
        }),
    }
}

/// The configuration of one run: `load` is the stage's.
fn config(w: &Workload, setup: &Setup, load: Value) -> String {
    let mut api =
        json!({ "type": if super::is_chat(w) { "chat" } else { "completion" }, "streaming": w.api.stream });
    if !w.api.headers.is_empty() {
        api["headers"] = json!(w.api.headers);
    }
    let c = json!({
        "load": load,
        "api": api,
        "server": { "type": "vllm", "model_name": setup.model, "base_url": setup.url, "ignore_eos": w.api.ignore_eos },
        "tokenizer": { "pretrained_model_name_or_path": setup.tokenizer.display().to_string() },
        "data": data(w, setup),
        "report": {
            "request_lifecycle": { "summary": true, "per_stage": true, "per_request": true },
            "prometheus": { "summary": false, "per_stage": false }
        },
        "storage": { "local_storage": { "path": "." } }
    });
    // JSON is YAML: inference-perf reads it as its YAML configuration.
    serde_json::to_string_pretty(&c).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::harnesses::Clock;

    /// Recorded on this machine: inference-perf 0.7.0 against `benchflow sim` (two complete
    /// requests, a 429 and a stream cut short by the simulator's `abort_rate`).
    const NATIVE: &str = include_str!(
        "../../tests/integration/fixtures/native/inference-perf-per_request_lifecycle_metrics.json"
    );

    #[test]
    fn records_are_converted_onto_the_runs_clock() {
        // The run started at CLOCK_MONOTONIC 39449.0 s.
        let clock = Clock { unix_ns: 0, monotonic_s: 39449.0 };
        let r = InferencePerf.parse(NATIVE, Export::example(1, true, &clock, "x")).unwrap();
        assert_eq!(r.len(), 4);
        let a = &r[0];
        assert_eq!((a.stage, a.warmup, a.status), (1, true, 200));
        // start_time 39449.255533813, end_time 39449.316418526; chunks from 39449.263831764
        // to 39449.315837215.
        assert_eq!((a.scheduled_ns, a.sent_ns), (255_533_813, 255_533_813));
        assert_eq!(a.end_ns, 316_418_526);
        assert_eq!(a.first_ns, Some(263_831_764));
        assert_eq!(a.last_ns, Some(315_837_215));
        assert_eq!((a.chunks, a.itl_ns.len()), (16, 15));
        assert_eq!(a.itl_ns[0], 267_281_460 - 263_831_764);
        assert_eq!((a.usage_prompt, a.usage_completion, a.est_prompt), (Some(32), Some(16), 32));
        let limited = &r[2];
        assert_eq!((limited.status, limited.error_kind), (429, Some(ErrorKind::Http)));
        assert!(limited.error.as_deref().unwrap().starts_with("HTTP Error 429: "));
        assert_eq!(r[3].error_kind, Some(ErrorKind::Aborted));
    }

    fn workload(yaml: &str) -> Workload {
        Workload::from_yaml(yaml, "w.yaml").unwrap()
    }

    #[test]
    fn what_it_cannot_express_is_refused_by_field() {
        let refused = |stages: &str| {
            let w = workload(&format!(
                "dataset: {{ random: {{ input_len: 8, output_len: 4 }} }}\nstages: [ {stages} ]\n"
            ));
            InferencePerf.check(&w).map_err(|r| r.field)
        };
        assert_eq!(refused("{ rate: 2, duration: 5s }"), Ok(()));
        assert_eq!(
            refused("{ rate: 2, arrival: gamma, burstiness: 2, duration: 5s }"),
            Err("stages[0].arrival".into())
        );
        assert_eq!(refused("{ rate: 2, requests: 10 }"), Err("stages[0].duration".into()));
        assert_eq!(refused("{ rate: 2, duration: 2.5s }"), Err("stages[0].duration".into()));
        assert_eq!(refused("{ concurrency: 2, duration: 5s }"), Err("stages[0].requests".into()));
        let prefixed = workload(
            "dataset: { random: { input_len: 8, output_len: 4, prefix_len: 4 } }\nstages: [ { rate: 1, duration: 1s } ]\n",
        );
        assert_eq!(InferencePerf.check(&prefixed).unwrap_err().field, "dataset.random.prefix_len");
        let chat_file = workload(
            "api: { endpoint: chat }\ndataset: { jsonl: { path: p.jsonl } }\nstages: [ { rate: 1, duration: 1s } ]\n",
        );
        assert_eq!(InferencePerf.check(&chat_file).unwrap_err().field, "api.endpoint");
    }

    #[test]
    fn a_prompt_file_becomes_sharegpt_answered_by_its_output_length() {
        let w = workload("dataset: { sample: { name: sample } }\nstages: [ { rate: 1, duration: 1s } ]\n");
        assert_eq!(InferencePerf.check(&w), Ok(()));
        let prompts = crate::harnesses::test_prompts(
            "{\"prompt\": \"first one\", \"max_tokens\": 3}\n{\"prompt\": \"second\", \"max_tokens\": 2}\n",
        );
        let (name, text) = InferencePerf.prompt_file(&prompts, &w).unwrap();
        let lines = crate::harnesses::json_of_lines(&text);
        // The first line is read before the run starts, and skipped on every later pass (one
        // turn), so each pass begins at prompt 1.
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["conversations"].as_array().unwrap().len(), 1);
        assert_eq!(lines[1]["conversations"][0], json!({ "from": "human", "value": "first one" }));
        assert_eq!(lines[2]["conversations"][1], json!({ "from": "gpt", "value": "the the" }));
        let file = Path::new("/n").join(name);
        let setup = Setup::example(Some(&file));
        let config: Value = serde_json::from_str(
            &InferencePerf.invocations(&w, &setup).last().unwrap().config.as_ref().unwrap().1,
        )
        .unwrap();
        assert_eq!(config["data"], json!({ "type": "shareGPT", "path": "/n/prompts-inference-perf.json" }));
    }

    #[test]
    fn each_stage_gets_a_configuration() {
        let w = workload(
            "seed: 4\napi: { endpoint: chat }\ndataset: { shared_prefix: { groups: 3, prompts_per_group: 2, prefix_len: 64, suffix_len: 8, output_len: 5 } }\n\
             warmup: { requests: 0 }\nstages:\n  - { rate: 4, arrival: constant, max_concurrency: 3, duration: 6s }\n  - { concurrency: 2, requests: 12 }\n",
        );
        assert_eq!(InferencePerf.check(&w), Ok(()));
        let setup = Setup::example(None);
        let inv = InferencePerf.invocations(&w, &setup);
        assert_eq!(inv.len(), 2);
        let config =
            |i: usize| -> Value { serde_json::from_str(&inv[i].config.as_ref().unwrap().1).unwrap() };
        let first = config(0);
        assert_eq!(first["load"]["type"], "constant");
        assert_eq!(first["load"]["stages"][0], json!({ "rate": 4.0, "duration": 6 }));
        assert_eq!(
            (first["load"]["num_workers"].clone(), first["load"]["worker_max_concurrency"].clone()),
            (json!(1), json!(3))
        );
        assert_eq!(first["api"]["type"], "chat");
        assert_eq!(first["data"]["shared_prefix"]["num_groups"], 3);
        assert_eq!(first["data"]["shared_prefix"]["system_prompt_len"], 64);
        assert_eq!(first["tokenizer"]["pretrained_model_name_or_path"], "/t");
        let second = config(1);
        assert_eq!(second["load"]["type"], "concurrent");
        assert_eq!(second["load"]["stages"][0], json!({ "num_requests": 12, "concurrency_level": 2 }));
        assert_eq!(inv[1].args, ["-c", CONFIG]);
    }
}
