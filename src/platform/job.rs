//! The harness in the cluster: the workload split into N shards (each pod offers 1/N of every
//! stage's rate, concurrency and request count, with its own seed), a ConfigMap holding the
//! shards (and a file dataset, and for an external tool the harness file), an Indexed Job of N
//! benchflow pods that run them against the Service and print their results as one checksummed
//! frame, then the frames collected from the pod logs, verified, unpacked into
//! `results/shard-N/` and merged into `results/` on one time axis.
//!
//! An external tool (aiperf, inference-perf, GuideLLM, vllm bench) runs the same way: each pod's
//! benchflow runs it as it does on one machine (`-H harness.yaml --install-missing`: installed
//! in the pod unless its image has it), writing its configuration, prompt file and tokenizer
//! beside it, and converting its per-request export on the pod's own clocks (the tools that
//! time with `CLOCK_MONOTONIC` are mapped in the pod that read it); the tool's native outputs
//! come back in the frame, under `shard-N/results/native/`.

use std::path::{Path, PathBuf};

use crate::{
    results::{RunInfo, StageWindow},
    spec::workload::{Ramp, Workload},
    workdir::{
        archive::{extract, sha256_hex},
        parse_time,
    },
};
use base64::Engine as _;
use serde_json::{Value, json};

const BEGIN: &str = "-----BEGIN BENCHFLOW RESULTS";
const END: &str = "-----END BENCHFLOW RESULTS-----";

/// Splits a workload for `n` pods.
pub(crate) fn shard(w: &Workload, n: u32) -> Result<Vec<Workload>, String> {
    let part = |total: u64, i: u32| total / u64::from(n) + u64::from(u64::from(i) < total % u64::from(n));
    (0..n)
        .map(|i| {
            let mut s = w.clone();
            s.seed = w.seed.wrapping_add(u64::from(i));
            s.warmup.requests = part(u64::from(w.warmup.requests), i) as u32;
            for (k, st) in s.stages.iter_mut().enumerate() {
                // A ramp too: each pod ramps its share.
                st.ramp_to = st.ramp_to.map(|to| to / f64::from(n));
                if let Some(rate) = st.rate {
                    st.rate = Some(rate / f64::from(n));
                }
                if let Some(c) = st.concurrency {
                    if c < n {
                        return Err(format!(
                            "stage {}: concurrency {c} cannot be split across {n} pods",
                            k + 1
                        ));
                    }
                    st.concurrency = Some(part(u64::from(c), i) as u32);
                }
                if let Some(m) = st.max_concurrency {
                    st.max_concurrency = Some(m.div_ceil(n).max(1));
                }
                if let Some(r) = st.requests {
                    if r < u64::from(n) {
                        return Err(format!("stage {}: {r} requests cannot be split across {n} pods", k + 1));
                    }
                    st.requests = Some(part(r, i));
                }
            }
            Ok(s)
        })
        .collect()
}

/// The frame a harness pod prints: its results directory as a base64 tar.gz with its sha256.
pub(crate) fn pack(results: &Path) -> std::io::Result<String> {
    // `results/latest` is a link: pack what it points at.
    let results = std::fs::canonicalize(results)?;
    let mut tar =
        tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    tar.append_dir_all("results", &results)?;
    let bytes = tar.into_inner()?.finish()?;
    let sum = sha256_hex(&bytes);
    let body = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let lines: Vec<&str> = body.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    Ok(format!("{BEGIN} sha256={sum} bytes={}-----\n{}\n{END}\n", bytes.len(), lines.join("\n")))
}

/// Finds the frame in a pod's log, checks it and unpacks it into `dest` (`dest/results/...`).
pub(crate) fn unpack(log: &str, dest: &Path) -> Result<String, String> {
    let start = log.find(BEGIN).ok_or("no results frame in the pod's log (did the harness pod crash?)")?;
    let rest = &log[start + BEGIN.len()..];
    let (header, body) = rest.split_once('\n').ok_or("truncated results frame")?;
    let sum = header
        .split("sha256=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .ok_or("frame without sha256")?;
    let body = body.split(END).next().ok_or("results frame without its end")?;
    let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(clean).map_err(|e| format!("results frame: {e}"))?;
    if sha256_hex(&bytes) != sum {
        return Err(format!("results frame damaged: sha256 {}, expected {sum}", sha256_hex(&bytes)));
    }
    extract(flate2::read::GzDecoder::new(bytes.as_slice()), dest).map_err(|e| e.to_string())?;
    Ok(sum.to_string())
}

/// Merges `results/shard-*/results` into `results/`: requests on one time axis (the earliest
/// shard's start), stage windows joined, counts summed; server metrics from shard 0.
pub(crate) fn merge(results: &Path, shards: &[PathBuf]) -> Result<RunInfo, String> {
    let infos: Vec<RunInfo> = shards
        .iter()
        .map(|s| {
            let text = std::fs::read(s.join("run.json")).map_err(|e| format!("{}: {e}", s.display()))?;
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", s.display()))
        })
        .collect::<Result<_, String>>()?;
    let starts: Vec<f64> = shards
        .iter()
        .zip(&infos)
        .map(|(s, i)| {
            parse_time(&i.started_at)
                .map_err(|e| format!("{}: started_at: {e}", s.join("run.json").display()))
        })
        .collect::<Result<_, String>>()?;
    let t0 = starts.iter().copied().fold(f64::INFINITY, f64::min);
    let files: Vec<(PathBuf, f64)> =
        shards.iter().zip(&starts).map(|(s, start)| (s.join("requests.csv"), (start - t0) * 1e6)).collect();
    crate::results::merge_rows(&results.join("requests.csv"), &files).map_err(|e| e.to_string())?;
    if let Some(first) = shards.first()
        && first.join("server_metrics.csv").is_file()
    {
        std::fs::copy(first.join("server_metrics.csv"), results.join("server_metrics.csv"))
            .map_err(|e| e.to_string())?;
    }
    let mut stages: Vec<StageWindow> = Vec::new();
    for (info, start) in infos.iter().zip(&starts) {
        let offset = start - t0;
        for w in &info.stages {
            match stages.iter_mut().find(|s| s.stage == w.stage) {
                Some(s) => {
                    s.start_s = s.start_s.min(w.start_s + offset);
                    s.end_s = s.end_s.max(w.end_s + offset);
                    s.dispatched += w.dispatched;
                    // Each pod was asked its share of the stage's rate.
                    s.rate = s.rate.zip(w.rate).map(|(a, b)| a + b);
                    s.ramp =
                        s.ramp.zip(w.ramp).map(|(a, b)| Ramp { from: a.from + b.from, to: a.to + b.to, ..a });
                }
                None => stages.push(StageWindow {
                    start_s: w.start_s + offset,
                    end_s: w.end_s + offset,
                    ..w.clone()
                }),
            }
        }
    }
    stages.sort_by_key(|s| s.stage);
    let first = &infos[0];
    let merged = RunInfo {
        endpoint: first.endpoint.clone(),
        model: first.model.clone(),
        started_at: infos.iter().map(|i| i.started_at.clone()).min().unwrap_or_default(),
        benchflow_version: first.benchflow_version.clone(),
        stages,
        interrupted: infos.iter().any(|i| i.interrupted),
        records: infos.iter().map(|i| i.records).sum(),
        failed: infos.iter().map(|i| i.failed).sum(),
        server_metrics_scrapes: first.server_metrics_scrapes,
        server_metrics_error: first.server_metrics_error.clone(),
        gpu: first.gpu.clone(),
        harness: first.harness.clone(),
        server_version: first.server_version.clone(),
        inputs: first.inputs.clone(),
        ended_at: infos.iter().filter_map(|i| i.ended_at.clone()).max(),
    };
    std::fs::write(results.join("run.json"), serde_json::to_vec_pretty(&merged).unwrap_or_default())
        .map_err(|e| e.to_string())?;
    Ok(merged)
}

/// What the pods take beside their shards.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Extras {
    /// An external tool's harness file (`placement: local`: the pod runs the tool itself).
    pub harness: Option<String>,
    /// A file dataset: its key in the ConfigMap (the shards name it so) and its text.
    pub dataset: Option<(String, String)>,
}

/// What a ConfigMap may hold (the API server refuses more than 1 MiB), less room for the rest.
pub(crate) const DATASET_LIMIT: usize = 900 * 1024;

/// A file dataset (its path relative to `base`) as a ConfigMap key and the file's text, the
/// shards pointed at that key; `None` for datasets that are not files.
pub(crate) fn ship_dataset(shards: &mut [Workload], base: &Path) -> Result<Option<(String, String)>, String> {
    use crate::spec::workload::DatasetSpec;
    let Some(DatasetSpec::Sharegpt(f) | DatasetSpec::Jsonl(f)) = shards.first().map(|s| &s.dataset) else {
        return Ok(None);
    };
    let path = base.join(&f.path);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() > DATASET_LIMIT {
        return Err(format!(
            "the dataset file {} is {} KiB; harness pods get it through a ConfigMap, which holds at most \
             {} KiB here: use placement: local, or a smaller file",
            path.display(),
            text.len() / 1024,
            DATASET_LIMIT / 1024
        ));
    }
    let ext =
        path.extension().and_then(|e| e.to_str()).filter(|e| e.chars().all(|c| c.is_ascii_alphanumeric()));
    let key = format!("dataset.{}", ext.unwrap_or("txt"));
    for s in shards {
        if let DatasetSpec::Sharegpt(f) | DatasetSpec::Jsonl(f) = &mut s.dataset {
            f.path = key.clone();
        }
    }
    Ok(Some((key, text)))
}

/// Copies a CSV whose first column is `t_s` (server metrics, GPU samples), shifted by
/// `offset_s` (observations timed from another start, put on the merged records' axis); returns
/// the rows copied.
pub(crate) fn shift_times(src: &Path, dest: &Path, offset_s: f64) -> std::io::Result<usize> {
    let text = std::fs::read_to_string(src)?;
    let mut lines = text.lines();
    let mut out = String::with_capacity(text.len());
    if let Some(header) = lines.next() {
        out.push_str(header);
        out.push('\n');
    }
    let mut n = 0;
    for line in lines {
        let Some((t, rest)) = line.split_once(',') else { continue };
        let Ok(t) = t.parse::<f64>() else { continue };
        out.push_str(&format!("{:.3},{rest}\n", t - offset_s));
        n += 1;
    }
    std::fs::write(dest, out)?;
    Ok(n)
}

/// The ConfigMap with the shards and the Indexed Job that runs them.
pub(crate) fn manifests(
    name: &str,
    ns: &str,
    image: &str,
    url: &str,
    shards: &[Workload],
    labels: &Value,
    extras: &Extras,
) -> Result<(Value, Value), String> {
    let mut data = serde_json::Map::new();
    for (i, w) in shards.iter().enumerate() {
        let text = serde_saphyr::to_string(w).map_err(|e| e.to_string())?;
        data.insert(format!("workload-{i}.yaml"), Value::String(text));
    }
    if let Some((key, text)) = &extras.dataset {
        data.insert(key.clone(), Value::String(text.clone()));
    }
    let tool = match &extras.harness {
        Some(text) => {
            data.insert("harness.yaml".into(), Value::String(text.clone()));
            " -H /config/harness.yaml --install-missing"
        }
        None => "",
    };
    let n = shards.len();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data});
    let script = format!(
        "benchflow run --endpoint \"$BENCHFLOW_ENDPOINT\" -w /config/workload-$JOB_COMPLETION_INDEX.yaml{tool} \
         --workdir /tmp/bf -s load -q >/tmp/bf.out 2>&1; code=$?; tail -n 20 /tmp/bf.out >&2; \
         benchflow results-pack /tmp/bf/results/latest; exit $code"
    );
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "completionMode": "Indexed", "completions": n, "parallelism": n, "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "harness", "image": image, "command": ["sh", "-c", script],
                        "env": [{"name": "BENCHFLOW_ENDPOINT", "value": url}],
                        "volumeMounts": [{"name": "workloads", "mountPath": "/config"}]
                    }],
                    "volumes": [{"name": "workloads", "configMap": {"name": name}}]
                }
            }
        }
    });
    crate::platform::kubernetes::check(&cm)?;
    crate::platform::kubernetes::check(&job)?;
    Ok((cm, job))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(text: &str) -> Workload {
        Workload::from_yaml(text, "w.yaml").unwrap()
    }

    #[test]
    fn shards_divide_every_stage() {
        let w = workload(
            "seed: 7\ndataset: { random: { input_len: 8, output_len: 8 } }\nwarmup: { requests: 5 }\nstages:\n  - { rate: 10, requests: 101 }\n  - { concurrency: 7, duration: 5s }\n",
        );
        let s = shard(&w, 3).unwrap();
        assert_eq!(s.iter().map(|w| w.seed).collect::<Vec<_>>(), [7, 8, 9]);
        assert_eq!(s.iter().map(|w| w.stages[0].requests.unwrap()).sum::<u64>(), 101);
        assert_eq!(s.iter().map(|w| w.stages[1].concurrency.unwrap()).collect::<Vec<_>>(), [3, 2, 2]);
        assert_eq!(s.iter().map(|w| w.warmup.requests).sum::<u32>(), 5);
        assert!((s.iter().map(|w| w.stages[0].rate.unwrap()).sum::<f64>() - 10.0).abs() < 1e-9);
        let e = shard(&workload("dataset: { random: { input_len: 8, output_len: 8 } }\nstages: [ { concurrency: 2, requests: 10 } ]\n"), 3).unwrap_err();
        assert!(e.contains("concurrency 2 cannot be split across 3 pods"), "{e}");
    }

    #[test]
    fn a_file_dataset_and_an_external_tool_travel_in_the_config_map() {
        let w = workload(
            "dataset: { jsonl: { path: data/my prompts.jsonl } }\nstages: [ { concurrency: 2, requests: 10 } ]\n",
        );
        let base = std::env::temp_dir().join(format!("bf-ship-{}", std::process::id()));
        std::fs::create_dir_all(base.join("data")).unwrap();
        std::fs::write(base.join("data/my prompts.jsonl"), "{\"prompt\": \"a\"}\n").unwrap();
        let mut shards = shard(&w, 2).unwrap();
        let (key, text) = ship_dataset(&mut shards, &base).unwrap().unwrap();
        assert_eq!((key.as_str(), text.as_str()), ("dataset.jsonl", "{\"prompt\": \"a\"}\n"));
        for s in &shards {
            assert!(matches!(&s.dataset, crate::spec::workload::DatasetSpec::Jsonl(f) if f.path == key));
        }
        let extras = Extras { harness: Some("kind: aiperf\n".into()), dataset: Some((key, "x".into())) };
        let (cm, job) = manifests("n", "ns", "img", "http://s", &shards, &json!({}), &extras).unwrap();
        assert_eq!(cm["data"]["harness.yaml"], "kind: aiperf\n");
        assert_eq!(cm["data"]["dataset.jsonl"], "x");
        let script = job.pointer("/spec/template/spec/containers/0/command/2").unwrap().as_str().unwrap();
        assert!(
            script.contains(
                "-w /config/workload-$JOB_COMPLETION_INDEX.yaml -H /config/harness.yaml --install-missing"
            ),
            "{script}"
        );
        let (_, builtin) =
            manifests("n", "ns", "img", "http://s", &shards, &json!({}), &Extras::default()).unwrap();
        assert!(!builtin.to_string().contains("harness.yaml"));
        let mut random = shard(&workload("dataset: { random: { input_len: 8, output_len: 8 } }\nstages: [ { concurrency: 2, requests: 10 } ]\n"), 2).unwrap();
        assert_eq!(ship_dataset(&mut random, &base), Ok(None));
        std::fs::write(base.join("data/my prompts.jsonl"), "x".repeat(DATASET_LIMIT + 1)).unwrap();
        let mut shards = shard(&w, 2).unwrap();
        let e = ship_dataset(&mut shards, &base).unwrap_err();
        assert!(e.contains("use placement: local, or a smaller file"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn observations_are_shifted_onto_the_merged_axis() {
        let base = std::env::temp_dir().join(format!("bf-shift-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let src = base.join("in.csv");
        std::fs::write(
            &src,
            "t_s,metric,labels,value,target\n0.500,m,\"a=\"\"x,y\"\"\",1,pod-a\n3.250,m,,2,pod-b\n",
        )
        .unwrap();
        assert_eq!(shift_times(&src, &base.join("out.csv"), 1.25).unwrap(), 2);
        assert_eq!(
            std::fs::read_to_string(base.join("out.csv")).unwrap(),
            "t_s,metric,labels,value,target\n-0.750,m,\"a=\"\"x,y\"\"\",1,pod-a\n2.000,m,,2,pod-b\n"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let base = std::env::temp_dir().join(format!("bf-frame-{}", std::process::id()));
        std::fs::create_dir_all(base.join("r")).unwrap();
        std::fs::write(base.join("r/requests.csv"), "stage,index\n1,0\n").unwrap();
        let frame = pack(&base.join("r")).unwrap();
        let log = format!("INFO noise\n{frame}more noise\n");
        unpack(&log, &base.join("out")).unwrap();
        assert_eq!(
            std::fs::read_to_string(base.join("out/results/requests.csv")).unwrap(),
            "stage,index\n1,0\n"
        );
        let lines: Vec<&str> = frame.lines().collect();
        let mut damaged = lines.clone();
        let body = damaged[1].replacen('A', "B", 1).replacen('g', "h", 1);
        damaged[1] = &body;
        let e = unpack(&damaged.join("\n"), &base.join("bad")).unwrap_err();
        assert!(e.contains("damaged") || e.contains("results frame"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
