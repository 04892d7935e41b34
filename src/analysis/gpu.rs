//! GPU telemetry of one run (`gpu.csv`, written by the load generator's sampler): series per
//! GPU, and per stage the mean and peak utilisation, peak memory, mean power and the energy per
//! output token.

use std::{collections::BTreeMap, path::Path};

use super::Metrics;

/// The GPUs' series: by GPU (`0`, `node-a/0`), then metric (`utilization_pct`, …).
pub(crate) type GpuSeries = BTreeMap<String, Metrics>;

/// Reads `gpu.csv`; empty when there is none (no telemetry).
pub(crate) fn read(results: &Path) -> GpuSeries {
    let mut out = GpuSeries::new();
    let Ok(mut r) = csv::Reader::from_path(results.join("gpu.csv")) else { return out };
    for rec in r.records().flatten() {
        if let (Some(t), Some(gpu), Some(metric), Some(v)) = (rec.get(0), rec.get(1), rec.get(2), rec.get(3))
            && let (Ok(t), Ok(v)) = (t.parse::<f64>(), v.parse::<f64>())
        {
            out.entry(gpu.to_string()).or_default().entry(metric.to_string()).or_default().push((t, v));
        }
    }
    out
}

/// One stage's GPU figures (over the GPUs sampled, in the stage's window).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct GpuStats {
    /// GPUs sampled.
    pub gpus: usize,
    /// Samples in the stage's window (per GPU).
    pub samples: usize,
    /// Mean over the samples of the GPUs' mean utilisation (percent of time a kernel ran).
    pub mean_utilization_pct: Option<f64>,
    /// The highest utilisation of any GPU in any sample.
    pub max_utilization_pct: Option<f64>,
    /// The highest memory in use, summed over the GPUs, in any sample (bytes).
    pub peak_memory_used_bytes: Option<f64>,
    /// Their memory, summed (bytes).
    pub memory_total_bytes: Option<f64>,
    /// Mean over the samples of the power drawn, summed over the GPUs (watts).
    pub mean_power_w: Option<f64>,
    /// Energy drawn in the window: the power summed over the GPUs, integrated over time
    /// (trapezoids between samples; joules).
    pub energy_j: Option<f64>,
    /// `energy_j` / the stage's output tokens.
    pub energy_per_output_token_j: Option<f64>,
    /// Throttle reasons seen in the window (NVML's bits, OR-ed; 0: none).
    pub throttle_reasons: Option<u64>,
}

/// The points of a series inside `[a, b]`.
fn within(s: &[(f64, f64)], a: f64, b: f64) -> impl Iterator<Item = &(f64, f64)> {
    s.iter().filter(move |(t, _)| *t >= a && *t <= b)
}

/// The trapezoid integral of a series over its points inside `[a, b]`.
fn integral(s: &[(f64, f64)], a: f64, b: f64) -> Option<f64> {
    let pts: Vec<&(f64, f64)> = within(s, a, b).collect();
    (pts.len() >= 2).then(|| pts.windows(2).map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0).sum())
}

/// At each sample time in `[a, b]`, the values of every GPU combined by `f` (sum, mean, max).
fn across(series: &GpuSeries, metric: &str, a: f64, b: f64, f: fn(&[f64]) -> f64) -> Vec<f64> {
    let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for m in series.values() {
        for (t, v) in within(m.get(metric).map(Vec::as_slice).unwrap_or_default(), a, b) {
            at.entry(t.to_bits()).or_default().push(*v);
        }
    }
    at.values().map(|vs| f(vs)).collect()
}

fn sum(v: &[f64]) -> f64 {
    v.iter().sum()
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { sum(v) / v.len() as f64 }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The figures of the window `[a, b]` of a stage that produced `output_tokens`; `None` without
/// samples in it.
pub(crate) fn stats(series: &GpuSeries, (a, b): (f64, f64), output_tokens: u64) -> Option<GpuStats> {
    let samples = series
        .values()
        .map(|m| m.values().map(|s| within(s, a, b).count()).max().unwrap_or(0))
        .max()
        .unwrap_or(0);
    if samples == 0 {
        return None;
    }
    let some = |v: Vec<f64>, f: fn(&[f64]) -> f64| (!v.is_empty()).then(|| f(&v));
    let energy: Option<f64> = series
        .values()
        .filter_map(|m| integral(m.get("power_w").map(Vec::as_slice).unwrap_or_default(), a, b))
        .fold(None, |acc, e| Some(acc.unwrap_or(0.0) + e));
    let reasons = across(series, "throttle_reasons", a, b, max);
    Some(GpuStats {
        gpus: series.len(),
        samples,
        mean_utilization_pct: some(across(series, "utilization_pct", a, b, mean), mean),
        max_utilization_pct: some(across(series, "utilization_pct", a, b, max), max),
        peak_memory_used_bytes: some(across(series, "memory_used_bytes", a, b, sum), max),
        memory_total_bytes: some(across(series, "memory_total_bytes", a, b, sum), max),
        mean_power_w: some(across(series, "power_w", a, b, sum), mean),
        energy_j: energy,
        energy_per_output_token_j: energy.filter(|_| output_tokens > 0).map(|e| e / output_tokens as f64),
        throttle_reasons: (!reasons.is_empty()).then(|| {
            series
                .values()
                .flat_map(|m| within(m.get("throttle_reasons").map(Vec::as_slice).unwrap_or_default(), a, b))
                .fold(0u64, |acc, (_, v)| acc | (*v as u64))
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rows: &[(&str, &str, f64, f64)]) -> GpuSeries {
        let mut s = GpuSeries::new();
        for (gpu, metric, t, v) in rows {
            s.entry(gpu.to_string()).or_default().entry(metric.to_string()).or_default().push((*t, *v));
        }
        s
    }

    #[test]
    fn energy_per_output_token_integrates_the_power_of_every_gpu_over_the_stage() {
        // GPU 0: 100, 200, 300 W at 0, 1, 2 s → 150 + 250 = 400 J; GPU 1: 50 W flat → 100 J;
        // 1,000 output tokens → 0.5 J per token. A sample outside the window is ignored.
        let s = series(&[
            ("0", "power_w", 0.0, 100.0),
            ("0", "power_w", 1.0, 200.0),
            ("0", "power_w", 2.0, 300.0),
            ("0", "power_w", 3.0, 900.0),
            ("1", "power_w", 0.0, 50.0),
            ("1", "power_w", 1.0, 50.0),
            ("1", "power_w", 2.0, 50.0),
            ("0", "utilization_pct", 1.0, 90.0),
            ("1", "utilization_pct", 1.0, 30.0),
            ("0", "memory_used_bytes", 1.0, 7e9),
            ("1", "memory_used_bytes", 1.0, 5e9),
            ("0", "memory_used_bytes", 2.0, 8e9),
            ("1", "memory_used_bytes", 2.0, 1e9),
            ("0", "throttle_reasons", 1.0, 4.0),
            ("1", "throttle_reasons", 2.0, 1.0),
        ]);
        let g = stats(&s, (0.0, 2.0), 1000).unwrap();
        assert_eq!(g.gpus, 2);
        assert_eq!(g.energy_j, Some(500.0));
        assert_eq!(g.energy_per_output_token_j, Some(0.5));
        // Power summed over the GPUs at each sample: 150, 250, 350 → mean 250 W.
        assert_eq!(g.mean_power_w, Some(250.0));
        assert_eq!((g.mean_utilization_pct, g.max_utilization_pct), (Some(60.0), Some(90.0)));
        assert_eq!(g.peak_memory_used_bytes, Some(12e9), "7 + 5 GB at 1 s, not 8 + 5");
        assert_eq!(g.throttle_reasons, Some(5));
        assert_eq!(stats(&s, (10.0, 20.0), 1000), None, "no sample in the window");
        assert_eq!(stats(&s, (0.0, 2.0), 0).unwrap().energy_per_output_token_j, None);
    }
}
