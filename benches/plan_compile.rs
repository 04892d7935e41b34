//! Compiling a 1,000-step plan: templates rendered, kinds checked, DAG built and sorted.
//!
//! The pipeline has 1,000 `exec` steps in 4 phases; each depends on up to three earlier steps
//! of its phase or the one before, and every step renders a few templates from the variable
//! tree. `cargo bench --bench plan_compile` prints the median of 20 compiles.

use std::{collections::BTreeMap, fmt::Write as _, time::Instant};

use benchflow::{Pipeline, Resolved};
use serde_json::json;

fn main() {
    let n = 1000;
    let phases = ["standup", "run", "analyze", "teardown"];
    let mut text = String::from("steps:\n");
    for i in 0..n {
        let phase = phases[i * 4 / n];
        let mut after: Vec<String> = Vec::new();
        for back in [1, 7, 31] {
            // Earlier steps are never in a later phase, so every dependency is allowed.
            if i >= back {
                after.push(format!("s{}", i - back));
            }
        }
        let _ = writeln!(
            text,
            "  - {{ name: s{i}, phase: {phase}, kind: exec, after: [{}], when: \"engine.kind == 'sim'\", with: {{ command: [\"{{{{ run.bin }}}}\", \"--port\", \"{{{{ run.port }}}}\", \"step-{i}\"], env: {{ A: \"{{{{ workload.seed }}}}\" }} }} }}",
            after.join(", ")
        );
    }
    let pipeline: Pipeline = benchflow::from_yaml(&text, "bench.yaml", &[]).expect("pipeline");
    let resolved = Resolved {
        format_version: 1,
        benchflow_version: "bench".into(),
        request: Default::default(),
        files: BTreeMap::from([("pipeline".into(), "bench.yaml".into())]),
        values: json!({
            "engine": {"kind": "sim"},
            "run": {"id": "bench", "bin": "/usr/bin/benchflow", "port": 8000},
            "workload": {"seed": 42, "stages": [{"rate": 1}]}
        }),
        sources: BTreeMap::new(),
        pipeline,
        workload: None,
        texts: BTreeMap::from([("pipeline".to_string(), text)]),
    };
    let mut times = Vec::new();
    let mut steps = 0;
    for _ in 0..20 {
        let t0 = Instant::now();
        let p = benchflow::compile(&resolved).expect("compile");
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        steps = p.steps.len();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "plan_compile: {steps} steps, median {:.1} ms, min {:.1} ms, max {:.1} ms (20 compiles)",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
