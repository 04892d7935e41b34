//! GPU telemetry while the load runs, into `results/gpu.csv` (long format: time, GPU, metric,
//! value), off the load generator's path: NVML on a thread of its own (the NVIDIA library is
//! loaded when sampling starts, so benchflow runs where there is none), or a DCGM exporter's
//! `/metrics` on a task of its own. Each sample is written as it is taken; nothing queues.
//!
//! Metrics, whatever the source: `utilization_pct`, `memory_used_bytes`, `memory_total_bytes`,
//! `power_w`, `sm_clock_mhz`, `temperature_c`, `throttle_reasons` (NVML's bit mask),
//! `energy_j` (the GPU's energy counter, where it has one).

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::{client::Target, exposition, scrape};

/// Where the samples come from (decided by the harness step).
#[derive(Debug, Clone)]
pub enum Sampler {
    /// This machine's GPUs through the NVIDIA driver.
    Nvml,
    /// DCGM exporters (one per node of the engine), and the namespace whose pods' GPUs to keep
    /// (when an exporter attributes GPUs to pods).
    Dcgm { targets: Vec<Target>, namespace: Option<String> },
}

/// How sampling went, for `run.json`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    pub samples: u64,
    /// What was sampled, or why nothing was (said once).
    pub note: String,
}

/// One value of one GPU.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub gpu: String,
    pub metric: &'static str,
    pub value: f64,
}

const HEADER: &str = "t_s,gpu,metric,value";

fn write_rows(out: &mut impl Write, t: f64, samples: &[Sample]) {
    for s in samples {
        let _ = writeln!(out, "{t:.3},{},{},{}", s.gpu, s.metric, s.value);
    }
    let _ = out.flush();
}

/// Samples every `every` until `stop` turns true, into `path`.
pub(crate) async fn run(
    sampler: Sampler,
    path: PathBuf,
    t0: Instant,
    every: Duration,
    stop: watch::Receiver<bool>,
) -> Outcome {
    match sampler {
        Sampler::Nvml => {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let thread = tokio::task::spawn_blocking(move || nvml(path, t0, every, rx));
            let mut stop = stop;
            let _ = stop.wait_for(|s| *s).await;
            let _ = tx.send(());
            thread
                .await
                .unwrap_or_else(|e| Outcome { samples: 0, note: format!("the NVML sampler failed: {e}") })
        }
        Sampler::Dcgm { targets, namespace } => dcgm(targets, namespace, path, t0, every, stop).await,
    }
}

/// NVML on this thread: the library is loaded now; without it, one note and no file.
fn nvml(path: PathBuf, t0: Instant, every: Duration, stop: std::sync::mpsc::Receiver<()>) -> Outcome {
    use nvml_wrapper::{
        Nvml,
        enum_wrappers::device::{Clock, TemperatureSensor},
    };
    let nvml = match Nvml::init() {
        Ok(n) => n,
        Err(e) => {
            return Outcome { samples: 0, note: format!("no NVIDIA driver found ({e}): no GPU telemetry") };
        }
    };
    let count = nvml.device_count().unwrap_or(0);
    let devices: Vec<_> = (0..count).filter_map(|i| nvml.device_by_index(i).ok().map(|d| (i, d))).collect();
    if devices.is_empty() {
        return Outcome { samples: 0, note: "NVML found no GPU: no GPU telemetry".into() };
    }
    let names: Vec<String> =
        devices.iter().map(|(i, d)| format!("{i}: {}", d.name().unwrap_or_default())).collect();
    let Ok(file) = std::fs::File::create(&path) else {
        return Outcome { samples: 0, note: format!("cannot create {}", path.display()) };
    };
    let mut out = std::io::BufWriter::new(file);
    let _ = writeln!(out, "{HEADER}");
    let mut samples = 0;
    loop {
        let t = t0.elapsed().as_secs_f64();
        let mut row = Vec::new();
        for (i, d) in &devices {
            let gpu = i.to_string();
            let mut put = |metric, value: Option<f64>| {
                if let Some(value) = value {
                    row.push(Sample { gpu: gpu.clone(), metric, value });
                }
            };
            put("utilization_pct", d.utilization_rates().ok().map(|u| f64::from(u.gpu)));
            let memory = d.memory_info().ok();
            put("memory_used_bytes", memory.as_ref().map(|m| m.used as f64));
            put("memory_total_bytes", memory.as_ref().map(|m| m.total as f64));
            put("power_w", d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0));
            put("sm_clock_mhz", d.clock_info(Clock::SM).ok().map(f64::from));
            put("temperature_c", d.temperature(TemperatureSensor::Gpu).ok().map(f64::from));
            put("throttle_reasons", d.current_throttle_reasons().ok().map(|r| r.bits() as f64));
            put("energy_j", d.total_energy_consumption().ok().map(|mj| mj as f64 / 1000.0));
        }
        write_rows(&mut out, t, &row);
        samples += 1;
        match stop.recv_timeout(every) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            _ => break,
        }
    }
    Outcome { samples, note: format!("NVML, {} GPU(s): {}", devices.len(), names.join(", ")) }
}

/// The DCGM exporters' `/metrics` every `every`, all of a round at one time.
async fn dcgm(
    targets: Vec<Target>,
    namespace: Option<String>,
    path: PathBuf,
    t0: Instant,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let Ok(file) = std::fs::File::create(&path) else {
        return Outcome { samples: 0, note: format!("cannot create {}", path.display()) };
    };
    let mut out = std::io::BufWriter::new(file);
    let _ = writeln!(out, "{HEADER}");
    let (mut samples, mut last_err, mut gpus) = (0, None, std::collections::BTreeSet::new());
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let round = futures::future::join_all(
            targets.iter().map(|t| async move { tokio::time::timeout(every, scrape::fetch(t)).await }),
        );
        let got = tokio::select! {
            r = round => r,
            _ = stop.changed() => break,
        };
        let t = t0.elapsed().as_secs_f64();
        let mut row = Vec::new();
        for r in got {
            match r {
                Ok(Ok(text)) => row.extend(parse_dcgm(&text, namespace.as_deref())),
                Ok(Err(e)) => last_err = Some(e),
                Err(_) => last_err = Some("timed out".into()),
            }
        }
        if !row.is_empty() {
            gpus.extend(row.iter().map(|s| s.gpu.clone()));
            write_rows(&mut out, t, &row);
            samples += 1;
        }
    }
    let mut note = format!("DCGM exporter ({}), {} GPU(s)", targets.len(), gpus.len());
    if samples == 0 {
        note = "the DCGM exporter gave no sample: no GPU telemetry".into();
    }
    if let Some(e) = last_err {
        note.push_str(&format!(" (last error: {e})"));
    }
    Outcome { samples, note }
}

/// A DCGM exporter's exposition as samples per GPU (`HOST/INDEX`, or the index alone), in the
/// units of [this module](self). With `namespace`, and when the exporter attributes GPUs to pods
/// (a `namespace` label), only the GPUs of pods in that namespace.
pub(crate) fn parse_dcgm(text: &str, namespace: Option<&str>) -> Vec<Sample> {
    const MIB: f64 = 1024.0 * 1024.0;
    // A line out of the format is left out (the exporter's other lines still count).
    let samples: Vec<exposition::Sample> = exposition::samples(text).filter_map(Result::ok).collect();
    let attributed = samples.iter().any(|s| s.label("namespace").is_some());
    let mut out: Vec<Sample> = Vec::new();
    let mut free: Vec<(String, f64)> = Vec::new();
    for s in &samples {
        if let (Some(ns), true) = (namespace, attributed)
            && s.label("namespace") != Some(ns)
        {
            continue;
        }
        let index = s.label("gpu").unwrap_or("?");
        let gpu = match s.label("Hostname") {
            Some(h) if !h.is_empty() => format!("{h}/{index}"),
            _ => index.to_string(),
        };
        let value = s.value;
        let (metric, value) = match s.name.as_ref() {
            "DCGM_FI_DEV_GPU_UTIL" => ("utilization_pct", value),
            "DCGM_FI_DEV_FB_USED" => ("memory_used_bytes", value * MIB),
            "DCGM_FI_DEV_FB_FREE" | "DCGM_FI_DEV_FB_RESERVED" => {
                free.push((gpu, value * MIB));
                continue;
            }
            "DCGM_FI_DEV_POWER_USAGE" => ("power_w", value),
            "DCGM_FI_DEV_SM_CLOCK" => ("sm_clock_mhz", value),
            "DCGM_FI_DEV_GPU_TEMP" => ("temperature_c", value),
            "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS" | "DCGM_FI_DEV_CLOCKS_EVENT_REASONS" => {
                ("throttle_reasons", value)
            }
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" => ("energy_j", value / 1000.0),
            _ => continue,
        };
        out.push(Sample { gpu, metric, value });
    }
    // Total memory = used + free (+ reserved), per GPU that reported its use.
    let used: Vec<(String, f64)> =
        out.iter().filter(|s| s.metric == "memory_used_bytes").map(|s| (s.gpu.clone(), s.value)).collect();
    for (gpu, used) in used {
        let rest: f64 = free.iter().filter(|(g, _)| *g == gpu).map(|(_, v)| v).sum();
        if rest > 0.0 {
            out.push(Sample { gpu, metric: "memory_total_bytes", value: used + rest });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the DCGM exporter (3.x, default counters) writes it, with pod attribution.
    const DCGM: &str = r#"# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).
# TYPE DCGM_FI_DEV_SM_CLOCK gauge
DCGM_FI_DEV_SM_CLOCK{gpu="0",UUID="GPU-aaaa",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="node-a",DCGM_FI_DRIVER_VERSION="550.54.15",container="vllm",namespace="bench",pod="vllm-0"} 1980
DCGM_FI_DEV_SM_CLOCK{gpu="1",UUID="GPU-bbbb",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="node-a",DCGM_FI_DRIVER_VERSION="550.54.15"} 345
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-aaaa",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="node-a",container="vllm",namespace="bench",pod="vllm-0"} 87
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-bbbb",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="node-a"} 0
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-aaaa",Hostname="node-a",namespace="bench",pod="vllm-0"} 71234
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-aaaa",Hostname="node-a",namespace="bench",pod="vllm-0"} 9850
DCGM_FI_DEV_FB_RESERVED{gpu="0",UUID="GPU-aaaa",Hostname="node-a",namespace="bench",pod="vllm-0"} 475
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-aaaa",Hostname="node-a",namespace="bench",pod="vllm-0"} 512.25
DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-aaaa",Hostname="node-a",namespace="bench",pod="vllm-0"} 61
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-aaaa",Hostname="node-a",namespace="bench",pod="vllm-0"} 123456789
DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{gpu="0",UUID="GPU-aaaa",Hostname="node-a",namespace="bench",pod="vllm-0"} 4
"#;

    #[test]
    fn dcgm_metrics_become_samples_in_our_units_for_the_namespace_s_gpus() {
        let s = parse_dcgm(DCGM, Some("bench"));
        let get = |m: &str| s.iter().find(|x| x.metric == m).map(|x| (x.gpu.as_str(), x.value));
        assert_eq!(get("utilization_pct"), Some(("node-a/0", 87.0)));
        assert_eq!(get("sm_clock_mhz"), Some(("node-a/0", 1980.0)));
        assert_eq!(get("memory_used_bytes"), Some(("node-a/0", 71234.0 * 1048576.0)));
        assert_eq!(get("memory_total_bytes"), Some(("node-a/0", (71234.0 + 9850.0 + 475.0) * 1048576.0)));
        assert_eq!(get("power_w"), Some(("node-a/0", 512.25)));
        assert_eq!(get("temperature_c"), Some(("node-a/0", 61.0)));
        assert_eq!(get("energy_j"), Some(("node-a/0", 123456.789)));
        assert_eq!(get("throttle_reasons"), Some(("node-a/0", 4.0)));
        assert!(s.iter().all(|x| x.gpu == "node-a/0"), "GPU 1 belongs to no pod of the namespace: {s:?}");
        // Without a namespace: every GPU of the node.
        let all = parse_dcgm(DCGM, None);
        assert!(all.iter().any(|x| x.gpu == "node-a/1" && x.metric == "utilization_pct" && x.value == 0.0));
    }

    #[test]
    fn labels_are_read_by_name_not_by_position_and_a_timestamp_is_not_the_value() {
        let text = "DCGM_FI_DEV_GPU_UTIL{UUID=\"GPU-1\",Hostname=\"n\",gpu=\"3\"} 42 1765100000123\n\
                    DCGM_FI_DEV_GPU_UTIL{gpu=\"4\",Hostname=\"a \\\"b\\\"\"} 7\n";
        let s = parse_dcgm(text, None);
        assert_eq!((s[0].gpu.as_str(), s[0].value), ("n/3", 42.0));
        assert_eq!((s[1].gpu.as_str(), s[1].value), ("a \"b\"/4", 7.0));
    }
}
