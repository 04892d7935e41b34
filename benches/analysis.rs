//! Analysing 1,000,000 request records: statistics, every chart and the report.
//!
//! Writes a synthetic `requests.csv` (two stages, 16 output tokens per request, so 15 ITL gaps
//! each: 15 M pooled gaps) into a temporary work directory, then times `benchflow::analyze` over
//! several runs. `cargo bench --bench analysis` (`-- quick` for 200,000 records).

use std::{fmt::Write as _, time::Instant};

use benchflow::{Convention, Dirs, Rng, Slo, analyze};

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let n: u64 = if quick { 200_000 } else { 1_000_000 };
    let dir = std::env::temp_dir().join(format!("benchflow-bench-analysis-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("results")).expect("temp dir");
    let mut rng = Rng::new(1);
    let mut csv = String::with_capacity(n as usize * 140);
    csv.push_str(&benchflow::HEADER.join(","));
    csv.push('\n');
    let rate = 2000.0;
    for i in 0..n {
        let stage = if i < n / 2 { 1 } else { 2 };
        let sent = i as f64 / rate * 1e6 + rng.f64() * 100.0;
        let ttft = 50_000.0 + rng.exponential(20_000.0);
        let mut t = sent + ttft;
        let mut itl = String::new();
        for k in 0..15 {
            let g = (8_000.0 + rng.exponential(2_000.0)) as u64;
            t += g as f64;
            if k > 0 {
                itl.push(' ');
            }
            let _ = write!(itl, "{g}");
        }
        let failed = rng.chance(0.01);
        let _ = writeln!(
            csv,
            "{stage},{i},0,{sent:.3},{sent:.3},{},{},{:.3},16,128,16,usage,{},{},,{}",
            if failed { String::new() } else { format!("{:.3}", sent + ttft) },
            if failed { String::new() } else { format!("{t:.3}") },
            t + 200.0,
            if failed { 500 } else { 200 },
            if failed { "http" } else { "" },
            if failed { "" } else { itl.as_str() },
        );
    }
    std::fs::write(dir.join("results/requests.csv"), &csv).expect("write csv");
    println!("analysis of {n} records ({:.0} MB of CSV, {} pooled ITL gaps)", csv.len() as f64 / 1e6, n * 15);
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let a = analyze(&Dirs::single(&dir), Convention::Vllm, &Slo::default()).expect("analysis");
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(a.stages.iter().map(|s| s.completed + s.failed).sum::<u64>(), n);
    }
    times.sort_by(f64::total_cmp);
    println!("vllm conventions, stats + charts + report: median {:.2} s (runs: {:?})", times[1], times);
    let t = Instant::now();
    analyze(&Dirs::single(&dir), Convention::Guidellm, &Slo::default()).expect("analysis");
    println!("guidellm conventions: {:.2} s", t.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}
