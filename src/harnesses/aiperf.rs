//! aiperf (NVIDIA's successor of genai-perf): `aiperf profile` per stage, the workload as its
//! command line; records from its per-request export, `profile_export.jsonl`.
//!
//! What maps: random lengths (`--isl`/`--osl`, `--random-range-ratio` with vLLM's window), one
//! shared random prefix (`--num-prefix-prompts 1`), shared-prefix groups (a pool of `groups`
//! prefixes, one picked at random per request: not `prompts_per_group` in order), rate stages
//! with poisson, constant or gamma arrivals (`--arrival-smoothness`), an in-flight cap
//! (`--concurrency` beside `--request-rate`), concurrency stages, duration and/or request count,
//! streaming, `ignore_eos` and `extra_body` (`--extra-inputs` as JSON), literal headers, the
//! seed, the per-request timeout. Prompt files (ShareGPT, JSON lines, samples): the prompts
//! benchflow reads, in its seeded order, as a `single_turn` file (`text`, `output_length`),
//! sampled sequentially.

use serde_json::{Map, Value, json};

use super::{Adapter, Export, HarnessError, Invocation, Setup, secs};
use crate::{
    datasets::Prompt,
    results::{ErrorKind, Record},
    spec::workload::{Arrival, DatasetSpec, Load, Workload},
};

/// The file of per-request records aiperf writes into its artifact directory.
pub(crate) const RECORDS: &str = "profile_export.jsonl";

/// aiperf as an [`Adapter`].
pub(crate) struct Aiperf;

impl Adapter for Aiperf {
    fn tool_name(&self) -> &'static str {
        "aiperf"
    }

    fn caveat(&self) -> &'static str {
        "per-request records converted from aiperf's profile_export.jsonl"
    }

    fn records_file(&self) -> &'static str {
        RECORDS
    }

    /// A file dataset's prompts as aiperf's `single_turn` JSON lines.
    fn prompt_file(&self, prompts: &[Prompt], _: &Workload) -> Result<(&'static str, String), HarnessError> {
        let text =
            super::json_lines(prompts, "aiperf", |text, n| json!({ "text": text, "output_length": n }))?;
        Ok(("prompts-aiperf.jsonl", text))
    }

    /// One `aiperf profile` per stage (and one for the warm-up, at its concurrency).
    fn invocations(&self, w: &Workload, setup: &Setup) -> Vec<Invocation> {
        let mut common = vec![
            "profile".to_string(),
            "--model".into(),
            setup.model.into(),
            "--tokenizer".into(),
            setup.tokenizer.display().to_string(),
            "--url".into(),
            setup.url.into(),
            "--endpoint-type".into(),
            if super::is_chat(w) { "chat" } else { "completions" }.into(),
        ];
        if w.api.stream {
            common.push("--streaming".into());
        }
        common.extend(dataset_args(w, setup));
        let mut extra: Map<String, Value> = w.api.extra_body.clone().into_iter().collect();
        if w.api.ignore_eos {
            extra.insert("ignore_eos".into(), json!(true));
        }
        if !extra.is_empty() {
            common.extend(["--extra-inputs".into(), Value::Object(extra).to_string()]);
        }
        for (k, v) in &w.api.headers {
            common.extend(["--header".into(), format!("{k}:{v}")]);
        }
        common.extend([
            "--request-timeout-seconds".into(),
            secs(w.api.timeout.0),
            "--random-seed".into(),
            w.seed.to_string(),
            "--ui-type".into(),
            "none".into(),
            "--artifact-dir".into(),
            ".".into(),
        ]);
        let mut out = Vec::new();
        if w.warmup.requests > 0 {
            let c = w.warmup.concurrency.unwrap_or(1).max(1);
            let mut args = common.clone();
            args.extend([
                "--concurrency".into(),
                c.to_string(),
                "--request-count".into(),
                w.warmup.requests.to_string(),
            ]);
            out.push(Invocation::warmup(w, setup, args, None));
        }
        for (i, stage) in w.stages.iter().enumerate() {
            let n = i as u32 + 1;
            let mut args = common.clone();
            match stage.load() {
                Load::Rate { rate, arrival, burstiness, max_concurrency } => {
                    let pattern = match arrival {
                        Arrival::Poisson => "poisson",
                        Arrival::Constant => "constant",
                        Arrival::Gamma => "gamma",
                    };
                    args.extend([
                        "--request-rate".into(),
                        rate.to_string(),
                        "--arrival-pattern".into(),
                        pattern.into(),
                    ]);
                    if arrival == Arrival::Gamma {
                        args.extend(["--arrival-smoothness".into(), burstiness.to_string()]);
                    }
                    if let Some(c) = max_concurrency {
                        args.extend(["--concurrency".into(), c.to_string()]);
                    }
                }
                Load::Concurrency(c) => args.extend(["--concurrency".into(), c.to_string()]),
            }
            if let Some(d) = stage.duration {
                // Requests still in flight when the duration ends are waited for, as the built-in does.
                args.extend([
                    "--benchmark-duration".into(),
                    secs(d.0),
                    "--benchmark-grace-period".into(),
                    secs(w.api.timeout.0),
                ]);
            }
            if let Some(r) = stage.requests {
                args.extend(["--request-count".into(), r.to_string()]);
            }
            out.push(Invocation::stage(n, stage, setup, args, None));
        }
        out
    }

    /// Converts aiperf's records: the credit's issue is the scheduled time, `request_start_ns` the
    /// send, TTFT after the send gives the first token, each inter-chunk latency the next chunk,
    /// `request_end_ns` the end; token counts from the server's usage when given.
    fn parse(&self, text: &str, export: Export) -> Result<Vec<Record>, HarnessError> {
        let Export { stage, warmup, clock, path } = export;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = |why: String| HarnessError::Native {
                path: path.to_path_buf(),
                why: format!("line {}: {why}", i + 1),
            };
            let v: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            let meta = &v["metadata"];
            let ns = |key: &str| {
                meta[key]
                    .as_i64()
                    .map(|n| clock.unix(i128::from(n)))
                    .ok_or_else(|| bad(format!("no metadata.{key}")))
            };
            let metric = |key: &str| v["metrics"][key]["value"].as_f64();
            let sent = ns("request_start_ns")?;
            let end = ns("request_end_ns")?;
            let scheduled = ns("credit_issued_ns").unwrap_or(sent).min(sent);
            let input = metric("input_sequence_length").or_else(|| metric("error_isl")).unwrap_or(0.0);
            let output = metric("output_sequence_length").unwrap_or(0.0);
            let mut r = Record::new(stage, 0, warmup, scheduled, input as u32, output as u32);
            r.sent_ns = sent;
            r.end_ns = end;
            if let Some(ttft) = metric("time_to_first_token") {
                let mut at = sent + ms_to_ns(ttft);
                r.chunk(at);
                for gap in v["metrics"]["inter_chunk_latency"]["value"].as_array().into_iter().flatten() {
                    at += ms_to_ns(gap.as_f64().unwrap_or(0.0));
                    r.chunk(at);
                }
            }
            r.usage_prompt = metric("usage_prompt_tokens").map(|n| n as u32);
            r.usage_completion = metric("usage_completion_tokens").map(|n| n as u32);
            let error = &v["error"];
            if error.is_object() {
                let message = error["message"].as_str().unwrap_or("").to_string();
                match error["code"].as_u64() {
                    Some(code) => {
                        r.status = code as u16;
                        r.fail(ErrorKind::Http, message);
                    }
                    None => {
                        let text = format!("{}: {message}", error["type"].as_str().unwrap_or("error"));
                        let (kind, status) = super::transport_error(&text, r.chunks > 0);
                        r.status = status;
                        r.fail(kind, text);
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

/// The lengths and prefixes as aiperf's options, or the prompt file.
fn dataset_args(w: &Workload, setup: &Setup) -> Vec<String> {
    let mut a = Vec::new();
    let mut push = |k: &str, v: String| {
        a.push(k.to_string());
        a.push(v);
    };
    match &w.dataset {
        DatasetSpec::Random(r) => {
            push("--isl", r.input_len.to_string());
            push("--osl", r.output_len.to_string());
            if r.range_ratio > 0.0 {
                push("--random-range-ratio", r.range_ratio.to_string());
            }
            if r.prefix_len > 0 {
                push("--num-prefix-prompts", "1".into());
                push("--prefix-prompt-length", r.prefix_len.to_string());
            }
        }
        DatasetSpec::SharedPrefix(s) => {
            push("--isl", s.suffix_len.to_string());
            push("--osl", s.output_len.to_string());
            push("--num-prefix-prompts", s.groups.to_string());
            push("--prefix-prompt-length", s.prefix_len.to_string());
        }
        DatasetSpec::Sharegpt(_) | DatasetSpec::Jsonl(_) | DatasetSpec::Sample(_) => {
            if let Some(file) = setup.prompts {
                push("--input-file", file.display().to_string());
                push("--custom-dataset-type", "single_turn".into());
                push("--dataset-sampling-strategy", "sequential".into());
            }
        }
    }
    a
}

fn ms_to_ns(ms: f64) -> u64 {
    (ms * 1e6).max(0.0).round() as u64
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::harnesses::Clock;
    use crate::spec::workload::Workload;

    /// Recorded on this machine: aiperf 0.13.0 against `benchflow sim` (two complete requests,
    /// a 429 and a stream cut short by the simulator's `abort_rate`).
    const NATIVE: &str = include_str!("../../tests/integration/fixtures/native/aiperf-profile_export.jsonl");

    #[test]
    fn records_are_converted_onto_the_runs_clock() {
        // The run started 1 ms before the first request's credit was issued.
        let clock = Clock { unix_ns: 1_795_692_498_342_418_820 - 1_000_000, monotonic_s: 0.0 };
        let r = Aiperf.parse(NATIVE, Export::example(2, false, &clock, "x")).unwrap();
        assert_eq!(r.len(), 4);
        let a = &r[0];
        assert_eq!((a.stage, a.warmup, a.status), (2, false, 200));
        assert_eq!(a.scheduled_ns, 1_000_000);
        assert_eq!(a.sent_ns, 1_000_000 + (1_795_692_498_343_752_800 - 1_795_692_498_342_418_820));
        assert_eq!(a.end_ns, 1_000_000 + (1_795_692_498_404_785_762 - 1_795_692_498_342_418_820));
        // TTFT 8.173737 ms after the send; 15 inter-chunk gaps, the first 3.450898 ms.
        assert_eq!(a.first_ns, Some(a.sent_ns + 8_173_737));
        assert_eq!(a.chunks, 16);
        assert_eq!(a.itl_ns.len(), 15);
        assert_eq!(a.itl_ns[0], 3_450_898);
        assert_eq!(a.last_ns, Some(a.first_ns.unwrap() + a.itl_ns.iter().sum::<u64>()));
        assert!(a.last_ns.unwrap() <= a.end_ns);
        assert_eq!((a.usage_prompt, a.usage_completion), (Some(32), Some(16)));
        assert!(a.ok());
        let limited = &r[2];
        assert_eq!((limited.status, limited.error_kind, limited.chunks), (429, Some(ErrorKind::Http), 0));
        assert!(limited.error.as_deref().unwrap().contains("simulated rate_limit"));
        let cut = &r[3];
        assert_eq!(cut.error_kind, Some(ErrorKind::Aborted));
        assert!(cut.error.as_deref().unwrap().starts_with("ClientPayloadError"));
    }

    #[test]
    fn a_broken_line_is_named() {
        let clock = Clock { unix_ns: 0, monotonic_s: 0.0 };
        let e =
            Aiperf.parse("{\"metadata\": {}}\n", Export::example(1, false, &clock, "p.jsonl")).unwrap_err();
        assert_eq!(e.to_string(), "p.jsonl: line 1: no metadata.request_start_ns");
    }

    fn workload(yaml: &str) -> Workload {
        Workload::from_yaml(yaml, "w.yaml").unwrap()
    }

    #[test]
    fn stages_become_command_lines() {
        let w = workload(
            "seed: 9\ndataset: { random: { input_len: 100, output_len: 20, range_ratio: 0.25, prefix_len: 50 } }\n\
             warmup: { requests: 3, concurrency: 2 }\n\
             stages:\n  - { rate: 5, arrival: gamma, burstiness: 0.5, max_concurrency: 7, duration: 10s }\n  - { concurrency: 4, requests: 30 }\n",
        );
        assert_eq!(Aiperf.check(&w), Ok(()));
        let setup = Setup::example(None);
        let inv = Aiperf.invocations(&w, &setup);
        assert_eq!(inv.len(), 3);
        let has = |i: usize, pair: &[&str]| inv[i].args.windows(pair.len()).any(|w| w == pair);
        assert!(inv[0].warmup && has(0, &["--concurrency", "2"]) && has(0, &["--request-count", "3"]));
        assert_eq!(inv[1].dir, Path::new("/n/stage-1"));
        for pair in [
            ["--request-rate", "5"],
            ["--arrival-pattern", "gamma"],
            ["--arrival-smoothness", "0.5"],
            ["--concurrency", "7"],
            ["--benchmark-duration", "10"],
            ["--random-range-ratio", "0.25"],
            ["--prefix-prompt-length", "50"],
            ["--random-seed", "9"],
            ["--extra-inputs", "{\"ignore_eos\":true}"],
        ] {
            assert!(has(1, &pair), "{pair:?} in {:?}", inv[1].args);
        }
        assert!(has(2, &["--concurrency", "4"]) && has(2, &["--request-count", "30"]));
        assert!(!inv[2].args.iter().any(|a| a == "--request-rate"));
    }

    #[test]
    fn a_prompt_file_becomes_single_turn_lines_read_in_order() {
        let w = workload("dataset: { jsonl: { path: p.jsonl } }\nstages: [ { rate: 1, requests: 2 } ]\n");
        assert_eq!(Aiperf.check(&w), Ok(()));
        let file = Path::new("/n/prompts-aiperf.jsonl");
        let setup = Setup::example(Some(file));
        let args = &Aiperf.invocations(&w, &setup)[0].args;
        let has = |pair: &[&str]| args.windows(pair.len()).any(|w| w == pair);
        assert!(
            has(&["--input-file", "/n/prompts-aiperf.jsonl"])
                && has(&["--custom-dataset-type", "single_turn"])
        );
        assert!(has(&["--dataset-sampling-strategy", "sequential"]) && !has(&["--isl"]));
        let prompts = crate::harnesses::test_prompts(
            "{\"prompt\": \"a b\", \"max_tokens\": 7}\n{\"messages\": [{\"role\": \"user\", \"content\": \"c\"}], \"max_tokens\": 3}\n",
        );
        let (name, text) = Aiperf.prompt_file(&prompts, &w).unwrap();
        assert_eq!(name, "prompts-aiperf.jsonl");
        let lines = crate::harnesses::json_of_lines(&text);
        assert_eq!(
            lines,
            [json!({"text": "a b", "output_length": 7}), json!({"text": "c", "output_length": 3})]
        );
        // A conversation of several messages has no single-turn form: refused, naming the prompt.
        let two = crate::harnesses::test_prompts(
            "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"c\"}], \"max_tokens\": 3}\n",
        );
        let e = Aiperf.prompt_file(&two, &w).unwrap_err().to_string();
        assert!(e.contains("prompt 1") && e.contains("2 messages"), "{e}");
    }
}
