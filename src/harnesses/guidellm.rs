//! GuideLLM (vLLM project): `guidellm run -c scenario.json` per stage, the workload as a
//! GuideLLM scenario file; records from its JSON output, `benchmarks.json` (every request with
//! its timings).
//!
//! What maps: random lengths (fixed, or vLLM's uniform window `[⌊L(1−r)⌋, ⌈L(1+r)⌉]` for
//! `range_ratio`: GuideLLM's `*_tokens_min` and `*_tokens_max` without a `*_stdev`, which its
//! sampler draws uniformly, both ends included), one shared random prefix (`prefix_count: 1`), shared-prefix groups (a pool
//! of `groups` prefixes, one picked at random per request), rate stages with poisson or
//! constant arrivals, an in-flight cap (`max_concurrency`), concurrency stages (`concurrent`),
//! duration and/or request count, streaming, `extra_body` and literal headers (its request
//! extras), the endpoint, the seed, the per-request timeout, prompt files (the prompts benchflow
//! reads, in its seeded order, as a `json_file` of `prompt` and `output_tokens_count`). GuideLLM always asks for exactly
//! the output length (`ignore_eos`), and records each request's first and last token but not
//! the chunks between: the records carry no inter-token gaps, so ITL is not available (TPOT is).

use serde_json::{Value, json};

use super::{Adapter, Export, HarnessError, Invocation, Refusal, Setup};
use crate::{
    datasets::Prompt,
    results::{ErrorKind, Record},
    spec::workload::{Arrival, DatasetSpec, Load, Workload},
};

/// The scenario file benchflow writes for each run, and the output GuideLLM writes.
pub(crate) const CONFIG: &str = "scenario.json";
pub(crate) const RECORDS: &str = "benchmarks.json";

/// GuideLLM as an [`Adapter`].
pub(crate) struct Guidellm;

impl Adapter for Guidellm {
    fn tool_name(&self) -> &'static str {
        "guidellm"
    }

    fn caveat(&self) -> &'static str {
        "per-request records converted from GuideLLM's benchmarks.json; it records the first and last \
         token of each request but not the chunks between (no ITL)"
    }

    fn records_file(&self) -> &'static str {
        RECORDS
    }

    fn check(&self, w: &Workload) -> Result<(), Refusal> {
        if !w.api.ignore_eos {
            return Err(Refusal::new("api.ignore_eos", "GuideLLM always asks for exactly the output length"));
        }
        for (i, s) in w.stages.iter().enumerate() {
            if let Load::Rate { arrival: Arrival::Gamma, .. } = s.load() {
                return Err(Refusal::new(
                    format!("stages[{i}].arrival"),
                    "GuideLLM has poisson and constant arrivals, not gamma",
                ));
            }
        }
        Ok(())
    }

    /// A file dataset's prompts as JSON lines GuideLLM maps by column name: `prompt`, and
    /// `output_tokens_count` for the output length, over again as the run needs
    /// ([`super::over_again`]: GuideLLM stops at the end of its data).
    fn prompt_file(&self, prompts: &[Prompt], w: &Workload) -> Result<(&'static str, String), HarnessError> {
        let text = super::json_lines_over_again(
            prompts,
            w,
            "GuideLLM",
            |text, n| json!({ "prompt": text, "output_tokens_count": n }),
        )?;
        Ok(("prompts-guidellm.jsonl", text))
    }

    /// One `guidellm run` per stage (and one for the warm-up, at its concurrency).
    fn invocations(&self, w: &Workload, setup: &Setup) -> Vec<Invocation> {
        let args = vec!["run".to_string(), "-c".into(), CONFIG.into(), "--disable-progress".into()];
        let mut out = Vec::new();
        if w.warmup.requests > 0 {
            let c = w.warmup.concurrency.unwrap_or(1).max(1);
            let profile = json!({ "kind": "concurrent", "streams": [c] });
            let constraints = vec![json!({ "kind": "max_requests", "count": w.warmup.requests })];
            let config = scenario(w, setup, "warm-up", profile, constraints);
            out.push(Invocation::warmup(w, setup, args.clone(), Some((CONFIG.into(), config))));
        }
        for (i, stage) in w.stages.iter().enumerate() {
            let n = i as u32 + 1;
            let profile = match stage.load() {
                Load::Rate { rate, arrival, max_concurrency, .. } => {
                    let kind = if arrival == Arrival::Constant { "constant" } else { "poisson" };
                    let mut p = json!({ "kind": kind, "rate": [rate] });
                    if let Some(c) = max_concurrency {
                        p["max_concurrency"] = json!(c);
                    }
                    p
                }
                Load::Concurrency(c) => json!({ "kind": "concurrent", "streams": [c] }),
            };
            let mut constraints = Vec::new();
            if let Some(d) = stage.duration {
                constraints.push(json!({ "kind": "max_duration", "seconds": d.0 }));
            }
            if let Some(r) = stage.requests {
                constraints.push(json!({ "kind": "max_requests", "count": r }));
            }
            let config = scenario(w, setup, &stage.label(), profile, constraints);
            out.push(Invocation::stage(n, stage, setup, args.clone(), Some((CONFIG.into(), config))));
        }
        out
    }

    /// Converts GuideLLM's requests (times in Unix seconds): `targeted_start` is the scheduled time,
    /// `request_start` the send, `first_token_iteration` / `last_token_iteration` the first and
    /// last content chunk (`token_iterations` of them), `request_end` the end; the token counts are
    /// the server's when it sent them (GuideLLM prefers them). Successful, errored and incomplete
    /// (cancelled at the stage's end) requests are all kept.
    fn parse(&self, text: &str, export: Export) -> Result<Vec<Record>, HarnessError> {
        let Export { stage, warmup, clock, path } = export;
        let bad = |why: String| HarnessError::Native { path: path.to_path_buf(), why };
        let doc: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut out = Vec::new();
        for (b, bench) in doc["benchmarks"].as_array().into_iter().flatten().enumerate() {
            for (group, status) in [("successful", "ok"), ("errored", "error"), ("incomplete", "cancelled")] {
                for (i, r) in bench["requests"][group].as_array().into_iter().flatten().enumerate() {
                    let t = &r["info"]["timings"];
                    let secs = |k: &str| t[k].as_f64().filter(|s| *s > 1e9);
                    let ns = |s: f64| clock.unix((s * 1e9).round() as i128);
                    let sent_s = secs("request_start").ok_or_else(|| {
                        bad(format!("benchmarks[{b}].requests.{group}[{i}]: no request_start"))
                    })?;
                    let scheduled_s = secs("targeted_start").unwrap_or(sent_s).min(sent_s);
                    let end_s = ["request_end", "resolve_end", "last_token_iteration", "finalized"]
                        .iter()
                        .find_map(|k| secs(k))
                        .unwrap_or(sent_s)
                        .max(sent_s);
                    let prompt = r["input_metrics"]["text_tokens"].as_u64().unwrap_or(0) as u32;
                    let output = r["output_tokens"].as_u64().unwrap_or(0) as u32;
                    let mut rec = Record::new(stage, 0, warmup, ns(scheduled_s), prompt, output);
                    rec.sent_ns = ns(sent_s);
                    rec.end_ns = ns(end_s);
                    if let (Some(first), Some(last)) =
                        (secs("first_token_iteration"), secs("last_token_iteration"))
                    {
                        // The chunks between are not recorded: no gaps, so no ITL from GuideLLM.
                        rec.first_ns = Some(ns(first));
                        rec.last_ns = Some(ns(last.max(first)));
                        rec.chunks = t["token_iterations"].as_u64().unwrap_or(1).max(1) as u32;
                    }
                    if status == "ok" {
                        rec.usage_prompt = r["prompt_tokens"].as_u64().map(|n| n as u32);
                        rec.usage_completion = r["output_tokens"].as_u64().map(|n| n as u32);
                        super::succeeded(&mut rec);
                    } else {
                        let error = r["info"]["error"].as_str().unwrap_or(group).to_string();
                        let (kind, code) = classify(&error, rec.chunks > 0, status == "cancelled");
                        rec.status = code;
                        rec.fail(kind, error);
                    }
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }
}

fn data(w: &Workload, setup: &Setup) -> Value {
    match &w.dataset {
        DatasetSpec::Random(r) => {
            let mut d = json!({ "kind": "synthetic_text", "prompt_tokens": r.input_len, "output_tokens": r.output_len });
            if r.range_ratio > 0.0 {
                // No `_stdev`: GuideLLM then draws `randint(min, max)`, uniform over the window.
                for (key, len) in [("prompt_tokens", r.input_len), ("output_tokens", r.output_len)] {
                    let (lo, hi) = window(len, r.range_ratio);
                    d[format!("{key}_min")] = json!(lo);
                    d[format!("{key}_max")] = json!(hi);
                }
            }
            if r.prefix_len > 0 {
                d["prefix_count"] = json!(1);
                d["prefix_tokens"] = json!(r.prefix_len);
            }
            d
        }
        DatasetSpec::SharedPrefix(s) => json!({
            "kind": "synthetic_text", "prompt_tokens": s.suffix_len, "output_tokens": s.output_len,
            "prefix_count": s.groups, "prefix_tokens": s.prefix_len,
        }),
        DatasetSpec::Sharegpt(_) | DatasetSpec::Jsonl(_) | DatasetSpec::Sample(_) => json!({
            "kind": "json_file",
            "path": setup.prompts.map(|p| p.display().to_string()),
        }),
    }
}

/// vLLM's window of a length `len` with range ratio `r`: `[⌊L(1−r)⌋, ⌈L(1+r)⌉]`, at least 1
/// (GuideLLM's bounds must be positive; benchflow's own lengths are at least 1 too).
fn window(len: u32, r: f64) -> (u64, u64) {
    let l = f64::from(len);
    ((l * (1.0 - r)).floor().max(1.0) as u64, (l * (1.0 + r)).ceil().max(1.0) as u64)
}

/// A scenario file for one run: `profile` and `constraints` are the stage's.
fn scenario(w: &Workload, setup: &Setup, label: &str, profile: Value, constraints: Vec<Value>) -> String {
    let mut body: serde_json::Map<String, Value> = w.api.extra_body.clone().into_iter().collect();
    body.insert("ignore_eos".into(), json!(true));
    let mut extras = json!({ "body": body });
    if !w.api.headers.is_empty() {
        extras["headers"] = json!(w.api.headers);
    }
    let format = if super::is_chat(w) { "/v1/chat/completions" } else { "/v1/completions" };
    let s = json!({
        "metadata": { "name": "benchflow", "description": label },
        "spec": {
            "backend": { "kind": "openai_http", "target": setup.url, "model": setup.model, "request_format": format,
                         "stream": w.api.stream, "timeout": w.api.timeout.0, "extras": extras },
            "profile": profile,
            "constraints": constraints,
            "tokenizer": { "kind": "hf_auto", "model": setup.tokenizer.display().to_string() },
            "data": [data(w, setup)],
            "seed": { "kind": "static", "value": w.seed },
            "outputs": [{ "kind": "json", "path": RECORDS }],
        }
    });
    serde_json::to_string_pretty(&s).unwrap_or_default()
}

/// An error's kind and HTTP status from GuideLLM's error text (`HTTPStatusError("Server error
/// '500 Internal Server Error' …")`, `RemoteProtocolError(…)`, `ReadTimeout(…)`).
fn classify(error: &str, streamed: bool, cancelled: bool) -> (ErrorKind, u16) {
    if cancelled {
        return (ErrorKind::Cancelled, 0);
    }
    if error.starts_with("HTTPStatusError") {
        let code = error.split('\'').nth(1).and_then(|s| s.split(' ').next()?.parse().ok()).unwrap_or(0);
        return (ErrorKind::Http, code);
    }
    super::transport_error(error, streamed)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::harnesses::Clock;

    /// Recorded on this machine: GuideLLM 0.8.1 against `benchflow sim` (two complete requests
    /// with an 8-token prefix, a stream cut short by the simulator's `abort_rate`, a 500).
    const NATIVE: &str = include_str!("../../tests/integration/fixtures/native/guidellm-benchmarks.json");

    #[test]
    fn records_are_converted_onto_the_runs_clock() {
        // The run started at Unix time 1795695958.0 s.
        let clock = Clock { unix_ns: 1_795_695_958_000_000_000, monotonic_s: 0.0 };
        let r = Guidellm.parse(NATIVE, Export::example(1, false, &clock, "x")).unwrap();
        assert_eq!(r.len(), 4);
        let a = &r[0];
        // targeted_start 1795695958.608769, request_start …58.6122086, first token …58.6181831,
        // last token …58.6704078, request_end …58.6707144 (f64 seconds: to within a microsecond).
        let near = |got: u64, want: u64| assert!(got.abs_diff(want) < 1_000, "{got} vs {want}");
        near(a.scheduled_ns, 608_769_000);
        near(a.sent_ns, 612_208_600);
        near(a.first_ns.unwrap(), 618_183_100);
        near(a.last_ns.unwrap(), 670_407_800);
        near(a.end_ns, 670_714_400);
        assert_eq!((a.chunks, a.itl_ns.len(), a.status), (16, 0, 200));
        assert_eq!((a.usage_prompt, a.usage_completion, a.est_prompt), (Some(40), Some(16), 40));
        let cut = &r[2];
        assert_eq!((cut.error_kind, cut.status, cut.chunks), (Some(ErrorKind::Aborted), 200, 4));
        // Its targeted_start is not a time (-0.96): the send stands in for it.
        assert_eq!(cut.scheduled_ns, cut.sent_ns);
        let failed = &r[3];
        assert_eq!((failed.error_kind, failed.status), (Some(ErrorKind::Http), 500));
    }

    #[test]
    fn error_texts_are_classified() {
        assert_eq!(
            classify("HTTPStatusError(\"Client error '429 Too Many Requests' for url …\")", false, false),
            (ErrorKind::Http, 429)
        );
        assert_eq!(classify("ReadTimeout('')", true, false), (ErrorKind::Timeout, 200));
        assert_eq!(classify("ConnectError('refused')", false, false), (ErrorKind::Connect, 0));
        assert_eq!(classify("", false, true), (ErrorKind::Cancelled, 0));
    }

    #[test]
    fn a_stage_becomes_a_scenario_file() {
        let w = Workload::from_yaml(
            "seed: 5\napi: { extra_body: { temperature: 0 } }\ndataset: { shared_prefix: { groups: 3, prompts_per_group: 2, prefix_len: 64, suffix_len: 8, output_len: 5 } }\n\
             warmup: { requests: 2 }\nstages:\n  - { rate: 4, max_concurrency: 3, duration: 6s, requests: 20 }\n",
            "w.yaml",
        )
        .unwrap();
        assert_eq!(Guidellm.check(&w), Ok(()));
        let setup = Setup::example(None);
        let inv = Guidellm.invocations(&w, &setup);
        assert_eq!(inv.len(), 2);
        let s: Value = serde_json::from_str(&inv[1].config.as_ref().unwrap().1).unwrap();
        let spec = &s["spec"];
        assert_eq!(spec["profile"], json!({ "kind": "poisson", "rate": [4.0], "max_concurrency": 3 }));
        assert_eq!(
            spec["constraints"],
            json!([{ "kind": "max_duration", "seconds": 6.0 }, { "kind": "max_requests", "count": 20 }])
        );
        assert_eq!(spec["data"][0]["prefix_count"], 3);
        assert_eq!(spec["backend"]["extras"]["body"], json!({ "ignore_eos": true, "temperature": 0 }));
        assert_eq!(spec["seed"]["value"], 5);
        let warm: Value = serde_json::from_str(&inv[0].config.as_ref().unwrap().1).unwrap();
        assert_eq!(warm["spec"]["profile"], json!({ "kind": "concurrent", "streams": [1] }));
    }

    #[test]
    fn a_prompt_file_becomes_prompt_and_output_count_lines() {
        let w = Workload::from_yaml(
            "dataset: { sharegpt: { path: s.json, output_len: 9 } }\nstages: [ { rate: 1, duration: 1s } ]\n",
            "w.yaml",
        )
        .unwrap();
        assert_eq!(Guidellm.check(&w), Ok(()));
        let prompts = crate::harnesses::test_prompts(
            "{\"prompt\": \"a b c\", \"max_tokens\": 4}\n{\"prompt\": \"d\", \"max_tokens\": 2}\n",
        );
        let (name, text) = Guidellm.prompt_file(&prompts, &w).unwrap();
        let lines = crate::harnesses::json_of_lines(&text);
        assert_eq!(lines[0], json!({ "prompt": "a b c", "output_tokens_count": 4 }));
        assert_eq!(lines[1], json!({ "prompt": "d", "output_tokens_count": 2 }));
        // GuideLLM stops at its data's end: the prompts again, in order, for every request the
        // stage may send (1 s at 1 req/s: 2 expected, 12 with the margin).
        assert_eq!(lines.len(), 12);
        assert_eq!(lines[2], lines[0]);
        assert_eq!(lines[11], lines[1]);
        let file = Path::new("/n").join(name);
        let setup = Setup::example(Some(&file));
        let s: Value = serde_json::from_str(
            &Guidellm.invocations(&w, &setup).last().unwrap().config.as_ref().unwrap().1,
        )
        .unwrap();
        assert_eq!(s["spec"]["data"], json!([{ "kind": "json_file", "path": "/n/prompts-guidellm.jsonl" }]));
    }

    #[test]
    fn the_default_workload_runs_its_range_ratio_as_guidellms_uniform_window() {
        // sanity: 128/64 tokens with range_ratio 0.25 → [96, 160] and [48, 80].
        let w =
            Workload::from_yaml(crate::spec::builtin::get("workloads", "sanity").unwrap(), "sanity").unwrap();
        assert_eq!(Guidellm.check(&w), Ok(()));
        let inv = Guidellm.invocations(&w, &Setup::example(None));
        let s: Value = serde_json::from_str(&inv.last().unwrap().config.as_ref().unwrap().1).unwrap();
        let data = &s["spec"]["data"][0];
        assert_eq!(
            *data,
            json!({
                "kind": "synthetic_text",
                "prompt_tokens": 128, "prompt_tokens_min": 96, "prompt_tokens_max": 160,
                "output_tokens": 64, "output_tokens_min": 48, "output_tokens_max": 80,
            })
        );
        // No standard deviation: with one, GuideLLM would draw a clipped normal instead.
        assert!(data.get("prompt_tokens_stdev").is_none() && data.get("output_tokens_stdev").is_none());
        // The same window as benchflow's own lengths: floor and ceil, never below 1.
        assert_eq!(window(10, 0.15), (8, 12));
        assert_eq!(window(1, 0.9), (1, 2));
        // Fixed lengths stay fixed (no bounds at all).
        let fixed = Workload::from_yaml(
            "dataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { rate: 1, duration: 1s } ]\n",
            "w.yaml",
        )
        .unwrap();
        let inv = Guidellm.invocations(&fixed, &Setup::example(None));
        let s: Value = serde_json::from_str(&inv.last().unwrap().config.as_ref().unwrap().1).unwrap();
        assert_eq!(
            s["spec"]["data"][0],
            json!({ "kind": "synthetic_text", "prompt_tokens": 8, "output_tokens": 4 })
        );
    }

    #[test]
    fn what_it_cannot_express_is_refused_by_field() {
        let field =
            |yaml: &str| Guidellm.check(&Workload::from_yaml(yaml, "w.yaml").unwrap()).map_err(|r| r.field);
        let stage = "stages: [ { rate: 1, duration: 1s } ]\n";
        assert_eq!(
            field(&format!(
                "api: {{ ignore_eos: false }}\ndataset: {{ random: {{ input_len: 8, output_len: 4 }} }}\n{stage}"
            )),
            Err("api.ignore_eos".into())
        );
        assert_eq!(
            field(
                "dataset: { random: { input_len: 8, output_len: 4 } }\nstages: [ { rate: 1, arrival: gamma, burstiness: 2, duration: 1s } ]\n"
            ),
            Err("stages[0].arrival".into())
        );
    }
}
