//! Analysing request records at scale: statistics, every chart and the report, then `compare`.
//!
//! Writes a synthetic `requests.csv` (two stages, 16 output tokens per request, so 15 ITL gaps
//! each: 15 gaps per record pooled) into a temporary work directory, streamed to disk, then
//! times `benchflow::analyze` over several runs, each in a child process (this bench run again
//! with `child-analyze`) that reports its own peak resident memory (`VmHWM`). Then `compare` of
//! two runs of 1,000,000 records through the release binary (`benchflow compare`), its peak
//! memory from `/usr/bin/time` when there is one.
//!
//! `cargo bench --bench analysis` (1,000,000 records); `-- quick` (200,000);
//! `-- records=10000000` (any number); `-- no-compare` skips `compare`; `-- write=DIR` only
//! writes the records into the work directory `DIR` (for `perf record benchflow analyze`).

use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use benchflow::{Convention, Dirs, Rng, Slo, analyze};

/// Writes `n` synthetic records (seeded by `seed`) to `dir/results/requests.csv`; its size.
fn write_records(dir: &Path, n: u64, seed: u64) -> u64 {
    std::fs::create_dir_all(dir.join("results")).expect("temp dir");
    let path = dir.join("results/requests.csv");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).expect("csv"));
    let mut rng = Rng::new(seed);
    let mut line = String::with_capacity(256);
    let _ = writeln!(out, "{}", benchflow::HEADER.join(","));
    let rate = 2000.0;
    let mut itl = String::new();
    for i in 0..n {
        let stage = if i < n / 2 { 1 } else { 2 };
        let sent = i as f64 / rate * 1e6 + rng.f64() * 100.0;
        let ttft = 50_000.0 + rng.exponential(20_000.0);
        let mut t = sent + ttft;
        itl.clear();
        for k in 0..15 {
            let g = (8_000.0 + rng.exponential(2_000.0)) as u64;
            t += g as f64;
            if k > 0 {
                itl.push(' ');
            }
            let _ = write!(itl, "{g}");
        }
        let failed = rng.chance(0.01);
        line.clear();
        let _ = writeln!(
            line,
            "{stage},{i},0,{sent:.3},{sent:.3},{},{},{:.3},16,128,16,usage,{},{},,{}",
            if failed { String::new() } else { format!("{:.3}", sent + ttft) },
            if failed { String::new() } else { format!("{t:.3}") },
            t + 200.0,
            if failed { 500 } else { 200 },
            if failed { "http" } else { "" },
            if failed { "" } else { itl.as_str() },
        );
        out.write_all(line.as_bytes()).expect("write csv");
    }
    out.flush().expect("write csv");
    std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
}

/// This process's peak resident memory in MB (`VmHWM`), 0 when unknown.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The child: one analysis of `dir` under `convention`, printing `seconds peak_mb records`.
fn child_analyze(dir: &Path, convention: &str) {
    let convention = if convention == "guidellm" { Convention::Guidellm } else { Convention::Vllm };
    let t = Instant::now();
    let a = analyze(&Dirs::single(dir), convention, &Slo::default()).expect("analysis");
    let secs = t.elapsed().as_secs_f64();
    let records: u64 = a.stages.iter().map(|s| s.completed + s.failed).sum();
    println!("{secs} {} {records}", peak_rss_mb());
}

/// One analysis in a child process: (seconds, peak MB).
fn analyse_in_child(dir: &Path, convention: &str, n: u64) -> (f64, f64) {
    let exe = std::env::current_exe().expect("bench executable");
    let out =
        Command::new(exe).arg("child-analyze").arg(dir).arg(convention).output().expect("child analysis");
    assert!(out.status.success(), "child: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    assert_eq!(f.len(), 3, "child said: {text}");
    assert_eq!(f[2] as u64, n, "records analysed");
    (f[0], f[1])
}

/// `benchflow compare a b` through the release binary: (seconds, peak MB when measured).
fn compare_in_child(a: &Path, b: &Path) -> Option<(f64, Option<f64>)> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_benchflow"));
    let time = Path::new("/usr/bin/time");
    let t = Instant::now();
    let out = if time.exists() {
        Command::new(time).args(["-f", "peak_kb=%M"]).arg(&bin).arg("compare").arg(a).arg(b).output()
    } else {
        Command::new(&bin).arg("compare").arg(a).arg(b).output()
    }
    .ok()?;
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprintln!("compare failed: {err}");
        return None;
    }
    let peak = err
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak_kb=").and_then(|kb| kb.trim().parse::<f64>().ok()))
        .map(|kb| kb / 1024.0);
    Some((secs, peak))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child-analyze") {
        child_analyze(Path::new(&args[2]), &args[3]);
        return;
    }
    let quick = args.iter().any(|a| a == "quick");
    let n: u64 = args
        .iter()
        .find_map(|a| a.strip_prefix("records=").and_then(|v| v.replace('_', "").parse().ok()))
        .unwrap_or(if quick { 200_000 } else { 1_000_000 });
    if let Some(dir) = args.iter().find_map(|a| a.strip_prefix("write=")) {
        let bytes = write_records(Path::new(dir), n, 1);
        println!("{n} records ({:.0} MB of CSV) in {dir}/results/requests.csv", bytes as f64 / 1e6);
        return;
    }
    let base = std::env::temp_dir().join(format!("benchflow-bench-analysis-{}", std::process::id()));
    let dir = base.join("a");
    let t = Instant::now();
    let bytes = write_records(&dir, n, 1);
    println!(
        "analysis of {n} records ({:.0} MB of CSV, {} pooled ITL gaps; written in {:.1} s)",
        bytes as f64 / 1e6,
        n * 15,
        t.elapsed().as_secs_f64()
    );
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(analyse_in_child(&dir, "vllm", n));
    }
    let mut times: Vec<f64> = runs.iter().map(|r| r.0).collect();
    times.sort_by(f64::total_cmp);
    let peak = runs.iter().map(|r| r.1).fold(0.0, f64::max);
    println!(
        "vllm conventions, stats + charts + report: median {:.2} s (runs: {:?}), peak RSS {:.0} MB",
        times[1], times, peak
    );
    let (secs, peak) = analyse_in_child(&dir, "guidellm", n);
    println!("guidellm conventions: {secs:.2} s, peak RSS {peak:.0} MB");
    if !args.iter().any(|a| a == "no-compare") {
        // Two runs of 1,000,000 records (the first one reused when it is that size).
        let m = 1_000_000;
        let a = if n == m {
            dir.clone()
        } else {
            let a = base.join("ca");
            write_records(&a, m, 1);
            a
        };
        let b = base.join("cb");
        write_records(&b, m, 2);
        match compare_in_child(&a, &b) {
            Some((secs, Some(peak))) => {
                println!("compare of two runs of {m} records: {secs:.2} s, peak RSS {peak:.0} MB")
            }
            Some((secs, None)) => println!("compare of two runs of {m} records: {secs:.2} s"),
            None => println!("compare of two runs of {m} records: failed"),
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}
