//! Every field the JSON Schemas describe, given hostile values: `benchflow plan` (through
//! `--set`, for the scenario, harness and workload) and `benchflow experiment plan` (through the
//! experiment file) answer with success or with exit 2 and a message. Never a panic, an abort,
//! another exit code, or a message without words.
//!
//! The fields are read from `schemas/*.schema.json` (so a new field is covered without a change
//! here); the values are the classes that broke benchflow before: extremes, NaN and infinities,
//! negatives, numbers past u64, durations of 1e30 s, empty and huge strings, templates, unicode,
//! nesting where a scalar belongs. The cases are a fixed-seed sample of every (field, value)
//! pair, `BENCHFLOW_INPUT_CASES` of them (default 300; `benches/inputs.sh` runs them all).

use serde_json::Value;

use crate::support::{Project, text};

/// A leaf of a schema: the path to it (map keys as `K`) and what it holds.
#[derive(Debug, Clone)]
struct Leaf {
    path: Vec<String>,
    kind: &'static str,
}

/// Follows `$ref`s into `$defs`.
fn deref<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => deref(&root["$defs"][name], root),
        None => schema,
    }
}

/// The leaves under `schema` (objects walked, arrays through item 0, maps through key `K`,
/// alternatives each), to `depth` levels.
fn leaves(schema: &Value, root: &Value, path: &[String], depth: usize, out: &mut Vec<Leaf>) {
    let schema = deref(schema, root);
    if depth == 0 {
        return;
    }
    let at = |seg: &str| [path, &[seg.to_string()]].concat();
    for alt in ["anyOf", "oneOf", "allOf"] {
        for branch in schema.get(alt).and_then(Value::as_array).into_iter().flatten() {
            leaves(branch, root, path, depth, out);
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            leaves(v, root, &at(k), depth - 1, out);
        }
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        leaves(extra, root, &at("K"), depth - 1, out);
    }
    if let Some(items) = schema.get("items").filter(|v| v.is_object()) {
        leaves(items, root, &at("0"), depth - 1, out);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let kind = if schema
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|d| d.contains("Seconds as a number"))
    {
        "duration"
    } else if types.contains(&"number") || types.contains(&"integer") {
        "number"
    } else if types.contains(&"string") {
        "string"
    } else if types.contains(&"boolean") {
        "boolean"
    } else {
        return;
    };
    if !path.is_empty() {
        out.push(Leaf { path: path.to_vec(), kind });
    }
}

/// Hostile values of a kind, as YAML flow text.
fn values(kind: &str) -> Vec<String> {
    let mut v: Vec<String> = match kind {
        "number" => [
            "0",
            "-1",
            "2.5",
            "1e308",
            "-1e308",
            "1e-300",
            ".nan",
            ".inf",
            "-.inf",
            "4294967296",
            "18446744073709551616",
            "1e19",
        ]
        .map(String::from)
        .to_vec(),
        "duration" => {
            ["0", "1e30", "1e19", "'1e30s'", "'-1s'", "'604801s'", "'1.5ms'", ".nan", "-1", "'5 parsecs'"]
                .map(String::from)
                .to_vec()
        }
        "string" => vec![
            "''".into(),
            "'é漢字🙂'".into(),
            "'{{ nope }}'".into(),
            "'env:BENCHFLOW_NOT_SET'".into(),
            "'../../../etc/passwd'".into(),
            format!("'{}'", "x".repeat(5000)),
        ],
        _ => vec!["true".into(), "maybe".into()],
    };
    v.extend(["[]".into(), "{ a: { b: { c: [1, { d: 2 }] } } }".into(), "null".into()]);
    v
}

/// A small seeded generator (the cases are the same on every run).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn schema(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every (surface, path, value), in a fixed order.
fn cases() -> Vec<(&'static str, Vec<String>, String)> {
    let mut out = Vec::new();
    for (surface, file, prefix) in [
        ("set", "scenario.schema.json", ""),
        ("set", "harness.schema.json", "harness"),
        ("set", "workload.schema.json", "workload"),
        ("experiment", "experiment.schema.json", ""),
    ] {
        let root = schema(file);
        let mut found = Vec::new();
        leaves(&root, &root, &[], 6, &mut found);
        for leaf in found {
            let path: Vec<String> =
                prefix.split('.').filter(|s| !s.is_empty()).map(String::from).chain(leaf.path).collect();
            for v in values(leaf.kind) {
                out.push((surface, path.clone(), v));
            }
        }
    }
    out
}

/// The experiment file with `path` set to `value` (raw YAML flow text) over a valid base.
fn experiment_with(path: &[String], value: &str) -> String {
    let mut doc = serde_json::json!({
        "base": { "workload": "sanity" },
        "factors": { "workload.stages.0.rate": [1, 2] },
    });
    let mut at = &mut doc;
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        // A map key `K` of a factor or constant names a real variable.
        let seg = if seg == "K" { "workload.seed" } else { seg.as_str() };
        if !at.is_object() {
            *at = serde_json::json!({});
        }
        let next = at.as_object_mut().unwrap().entry(seg.to_string()).or_insert(Value::Null);
        if last {
            *next = Value::String("@@VALUE@@".into());
        }
        at = next;
    }
    serde_json::to_string(&doc).unwrap().replace("\"@@VALUE@@\"", value)
}

#[test]
fn every_schema_field_with_hostile_values_is_planned_or_refused_never_a_crash() {
    let all = cases();
    assert!(all.len() > 500, "the schemas describe {} cases: is the walk broken?", all.len());
    let n: usize = std::env::var("BENCHFLOW_INPUT_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mut rng = Lcg(0x5eed);
    let picked: Vec<usize> = if n >= all.len() {
        (0..all.len()).collect()
    } else {
        (0..n).map(|_| rng.below(all.len())).collect()
    };
    let p = Project::new("inputs");
    let mut wrong = Vec::new();
    let (mut planned, mut refused) = (0, 0);
    for (k, &i) in picked.iter().enumerate() {
        let (surface, path, value) = &all[i];
        let out = if *surface == "set" {
            p.run(&["plan", "--set", &format!("{}={value}", path.join("."))])
        } else {
            p.file(&format!("experiments/x{k}.yaml"), &experiment_with(path, value));
            p.run(&["experiment", "plan", "-e", &format!("x{k}")])
        };
        let err = text(&out.stderr);
        let case = format!("{surface} {}={}", path.join("."), value.chars().take(60).collect::<String>());
        match out.status.code() {
            Some(0) if ["nan", "inf"].iter().any(|w| value.contains(w)) => {
                wrong.push(format!("{case}: accepted (exit 0): a number that is not finite must be refused"))
            }
            Some(0) => planned += 1,
            Some(2) if err.contains("error") && !err.contains("panicked") => refused += 1,
            code => wrong.push(format!(
                "{case}: exit {code:?}: {}",
                err.lines().take(3).collect::<Vec<_>>().join(" | ")
            )),
        }
        if err.contains("panicked") || err.contains("RUST_BACKTRACE") {
            wrong.push(format!("{case}: a panic: {}", err.lines().take(3).collect::<Vec<_>>().join(" | ")));
        }
    }
    eprintln!("{} cases of {}: {planned} planned, {refused} refused with exit 2", picked.len(), all.len());
    assert!(wrong.is_empty(), "{} of {} cases:\n{}", wrong.len(), picked.len(), wrong.join("\n"));
}
