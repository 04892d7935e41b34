//! The conventions of a tool people script: `-o json|yaml` documents on stdout only (checked
//! against their schemas' required fields), `--dry-run` apart from the runs, `-n`, and the
//! completion scripts.

use std::path::Path;

use serde_json::Value;

use crate::support::{Project, spawn_sim, text};

const SCENARIO: &str =
    "platform: local\nengine:\n  kind: sim\n  profile: tiny/cpu\ntimeouts: { ready: 30s }\n";
const QUICK: &str = "seed: 3\ndataset: { random: { input_len: 32, output_len: 16 } }\nwarmup: { requests: 2 }\nstages:\n  - { rate: 40, arrival: constant, requests: 30 }\n  - { concurrency: 4, requests: 20 }\n";
/// A pipeline of one step that does nothing, against an endpoint nobody serves.
const ONE_STEP: &str = "steps:\n  - { name: only, phase: run, kind: exec, with: { command: [\"true\"] } }\n";
const ONE_STEP_SCENARIO: &str = "pipeline: one\nengine: { kind: endpoint, url: http://127.0.0.1:9 }\n";

fn project(tag: &str) -> Project {
    let p = Project::new(tag);
    p.file("scenarios/sim.yaml", SCENARIO)
        .file("workloads/quick.yaml", QUICK)
        .file("pipelines/one.yaml", ONE_STEP)
        .file("scenarios/one.yaml", ONE_STEP_SCENARIO);
    p
}

/// The checked-in schema of a document.
fn schema(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// `doc` has every field its schema requires, and no field the schema does not name.
fn conforms(doc: &Value, schema_name: &str) {
    let s = schema(schema_name);
    let props = s["properties"].as_object().unwrap();
    let fields = doc.as_object().unwrap_or_else(|| panic!("{schema_name}: not an object: {doc}"));
    for r in s["required"].as_array().unwrap() {
        assert!(fields.contains_key(r.as_str().unwrap()), "{schema_name}: {r} missing from {doc}");
    }
    for k in fields.keys() {
        assert!(props.contains_key(k), "{schema_name}: {k} is not in the schema");
    }
}

/// stdout parsed as one JSON document (nothing else may be there).
fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON document ({e}):\n{}\nstderr: {}", text(&out.stdout), text(&out.stderr))
    })
}

#[test]
fn e2e_with_o_json_prints_only_its_summary_and_status_reads_the_run_back() {
    let p = project("o-json-e2e");
    let out = p.run(&["e2e", "-c", "sim", "-w", "quick", "--workdir", "wd", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc = json(&out);
    conforms(&doc, "run-summary.schema.json");
    assert_eq!(doc["command"], "e2e");
    assert_eq!(doc["outcome"], "success");
    assert_eq!(doc["exit_code"], 0);
    // The statistics are the analysis's own (stats.json), stage by stage.
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("wd/analysis/latest/stats.json")).unwrap())
            .unwrap();
    assert_eq!(doc["stats"], on_disk);
    let completed: Vec<u64> =
        doc["stats"]["stages"].as_array().unwrap().iter().map(|s| s["completed"].as_u64().unwrap()).collect();
    assert_eq!(completed, [30, 20]);
    // The rate stage was sent at its rate (run.json records what was asked); the concurrency
    // stage has no rate to keep.
    let pace = &doc["stats"]["stages"][0]["send_rate"];
    assert_eq!((pace["asked"].as_f64(), pace["over_sent"].as_bool()), (Some(40.0), Some(false)), "{pace}");
    assert!(doc["stats"]["stages"][1]["send_rate"].is_null());
    // Paths as the command was given them (relative to where it ran).
    assert_eq!(doc["workdir"], "wd");
    assert!(p.path(doc["report"].as_str().unwrap()).is_file(), "{doc}");
    assert_eq!(doc["up"], serde_json::json!([]));
    // Progress went to stderr.
    assert!(text(&out.stderr).contains("03_load"), "{}", text(&out.stderr));

    let out = p.run(&["status", "wd", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let st = json(&out);
    conforms(&st, "run-status.schema.json");
    assert_eq!(st["dry_run"], false);
    assert_eq!(st["killed"], false);
    let steps = st["steps"].as_array().unwrap();
    assert_eq!(steps.iter().find(|s| s["id"] == "03_load").unwrap()["status"], "done");
    assert_eq!(steps.iter().find(|s| s["id"] == "01_start_engine").unwrap()["status"], "undone");
    assert_eq!(st["up"], serde_json::json!([]));
    // 2 warm-up requests + 30 + 20.
    assert_eq!(st["harness_runs"][0]["requests"], 52);
    // YAML is the same document.
    let out = p.run(&["status", "wd", "-o", "yaml"]);
    let yaml: Value = serde_saphyr::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(yaml, st);
}

#[test]
fn run_against_an_endpoint_with_o_yaml_prints_only_its_summary() {
    let (mut sim, url) = spawn_sim(&["--profile", "tiny/cpu", "--set", "time_scale=0"]);
    let p = project("o-yaml-run");
    let out = p.run(&["run", "--endpoint", &url, "-w", "quick", "--workdir", "wd", "-o", "yaml"]);
    let _ = sim.kill();
    let _ = sim.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_saphyr::from_str(&text(&out.stdout))
        .unwrap_or_else(|e| panic!("stdout is not one YAML document ({e}): {}", text(&out.stdout)));
    conforms(&doc, "run-summary.schema.json");
    assert_eq!(doc["command"], "run");
    assert_eq!(doc["endpoint"], url.as_str());
    assert_eq!(doc["stats"]["stages"].as_array().unwrap().len(), 2);
}

#[test]
fn a_failed_run_still_prints_its_summary_with_the_exit_code() {
    let p = project("o-json-fail");
    p.file(
        "pipelines/one.yaml",
        "steps:\n  - { name: only, phase: run, kind: exec, with: { command: [\"false\"] } }\n",
    );
    let out = p.run(&["e2e", "-c", "one", "--workdir", "wd", "-o", "json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let doc = json(&out);
    conforms(&doc, "run-summary.schema.json");
    assert_eq!(doc["outcome"], "failed");
    assert_eq!(doc["exit_code"], 4);
    assert!(doc["error"].as_str().unwrap().contains("only"), "{doc}");
    assert_eq!(doc["stats"], Value::Null);

    // `run --endpoint` against nothing: its smoke test is part of the run, which failed (4),
    // and the document says the code the process exits with.
    let out = p.run(&["run", "--endpoint", "http://127.0.0.1:1", "--workdir", "ep", "-o", "json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let doc = json(&out);
    assert_eq!((doc["outcome"].as_str(), doc["exit_code"].as_u64()), (Some("failed"), Some(4)), "{doc}");
}

#[test]
fn a_dry_run_renders_apart_leaves_latest_alone_and_status_says_so() {
    let p = project("dry-run");
    // An earlier run that runs/latest points at.
    std::fs::create_dir_all(p.path("runs/old")).unwrap();
    std::os::unix::fs::symlink("old", p.path("runs/latest")).unwrap();
    let out = p.run(&["e2e", "--dry-run", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc = json(&out);
    conforms(&doc, "run-summary.schema.json");
    assert_eq!(doc["outcome"], "dry_run");
    let wd = doc["workdir"].as_str().unwrap().to_string();
    assert!(wd.starts_with("runs/dry-run/"), "{wd}");
    assert_eq!(std::fs::read_link(p.path("runs/latest")).unwrap(), Path::new("old"));
    let mut runs: Vec<String> = std::fs::read_dir(p.path("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    runs.sort();
    assert_eq!(runs, ["dry-run", "latest", "old"]);
    assert!(p.path(&wd).join("plan/dry-run.json").is_file() && !p.path(&wd).join("state.json").exists());
    let st = json(&p.run(&["status", &wd, "-o", "json"]));
    assert_eq!(st["dry_run"], true);
    assert!(st["steps"].as_array().unwrap().iter().all(|s| s["status"] == "pending"), "{st}");
    let table = text(&p.run(&["status", &wd]).stdout);
    assert!(table.contains("dry run: everything was rendered, nothing was started"), "{table}");

    // A given work directory under runs/ does not move runs/latest either; the same
    // directory run for real afterwards is a run, no longer a dry run's.
    let out = p.run(&["e2e", "-c", "one", "--workdir", "runs/mine", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_link(p.path("runs/latest")).unwrap(), Path::new("old"));
    assert_eq!(json(&p.run(&["status", "runs/mine", "-o", "json"]))["dry_run"], true);
    let out = p.run(&["e2e", "-c", "one", "--workdir", "runs/mine", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_link(p.path("runs/latest")).unwrap(), Path::new("mine"));
    let st = json(&p.run(&["status", "runs/mine", "-o", "json"]));
    assert_eq!(st["dry_run"], false);
    assert_eq!(st["steps"][0]["status"], "done");
    // A dry run over a directory that ran is refused before it writes anything: it would
    // replace the record of what ran (later analyses and reproductions read it).
    let resolved = std::fs::read(p.path("runs/mine/inputs/resolved.yaml")).unwrap();
    let out = p.run(&["e2e", "-c", "one", "-w", "chat", "--workdir", "runs/mine", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("holds a run"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(p.path("runs/mine/inputs/resolved.yaml")).unwrap(), resolved);
    assert_eq!(json(&p.run(&["status", "runs/mine", "-o", "json"]))["dry_run"], false);
    // A dry run's own directory takes another dry run.
    let out = p.run(&["e2e", "-c", "one", "--workdir", &wd, "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn experiment_plan_and_experiment_status_as_documents() {
    let p = project("o-json-exp");
    let out = p.run(&["experiment", "plan", "-e", "rate-sweep", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc = json(&out);
    conforms(&doc, "experiment-plan.schema.json");
    assert_eq!(doc["run_factors"], serde_json::json!(["workload.stages.0.rate"]));
    let stacks = doc["stacks"].as_array().unwrap();
    let points = doc["points"].as_array().unwrap();
    assert_eq!(stacks.len(), 1);
    assert_eq!(stacks[0]["points"].as_array().unwrap().len(), points.len());
    assert!(points.iter().all(|pt| pt["stack"] == stacks[0]["id"]), "{doc}");
    let rates: Vec<f64> =
        points.iter().map(|pt| pt["values"]["workload.stages.0.rate"].as_f64().unwrap()).collect();
    assert!(rates.windows(2).all(|w| w[0] < w[1]) && rates.len() > 1, "{rates:?}");
    let yaml = p.run(&["experiment", "plan", "-e", "rate-sweep", "-o", "yaml"]);
    assert_eq!(serde_saphyr::from_str::<Value>(&text(&yaml.stdout)).unwrap(), doc);
    // -o is for the plan: a run refuses it before starting anything.
    let out = p.run(&["experiment", "-e", "rate-sweep", "-o", "json", "--workdir", "exp"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("experiment plan"), "{}", text(&out.stderr));

    // An experiment directory's record, as a run leaves it.
    p.file(
        "exp2/state.json",
        r#"{"format_version":1,"experiment":"x.yaml","points":{
            "p001":{"status":"done","hash":"a","stack":"s1","label":"rate=4","attempts":1,"duration_s":3.5},
            "p002":{"status":"failed","hash":"b","stack":"s1","label":"rate=8","attempts":2,"error":"boom\nmore"}},
          "stacks":{"s1":{"status":"standing_up","hash":"h","standups":1}}}"#,
    )
    .file("exp2/design.csv", "point\n");
    let out = p.run(&["status", "exp2", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let st = json(&out);
    conforms(&st, "experiment-status.schema.json");
    assert_eq!(st["counts"], serde_json::json!({"done": 1, "failed": 1}));
    assert_eq!(st["points"][1]["error"], "boom\nmore");
    assert_eq!(st["stacks"][0]["status"], "standing_up");
    assert_eq!(st["held_by"], Value::Null);
}

#[test]
fn tools_list_as_a_document() {
    let p = project("o-json-tools");
    let home = p.path("no-tools");
    let out = p.cmd(&["tools", "list", "-o", "json"]).env("BENCHFLOW_TOOLS_DIR", &home).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc = json(&out);
    conforms(&doc, "tools.schema.json");
    assert_eq!(doc["tools_dir"], home.to_str().unwrap());
    let names: Vec<&str> =
        doc["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"guidellm") && names.contains(&"vllm-router"), "{names:?}");
    assert!(doc["tools"].as_array().unwrap().iter().all(|t| t["installed"].is_null()), "{doc}");
    // The table names the same tools.
    let table = text(&p.cmd(&["tools", "list"]).env("BENCHFLOW_TOOLS_DIR", &home).output().unwrap().stdout);
    assert!(names.iter().all(|n| table.contains(n)), "{table}");
}

#[test]
fn n_is_the_namespace_as_kubectls() {
    let p = project("namespace");
    let out = p.run(&["plan", "-c", "kubernetes-standalone", "-n", "team-a", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    conforms(&json(&out), "plan.schema.json");
    let plan = text(&out.stdout);
    assert!(plan.contains("\"namespace\": \"team-a\""), "{plan}");
    assert!(!plan.contains("\"namespace\": \"benchflow\""), "{plan}");
    let out = p.run(&["plan", "-c", "kubernetes-standalone", "--namespace", "team-b", "-o", "json"]);
    assert!(text(&out.stdout).contains("\"namespace\": \"team-b\""));
    // Where it would be ignored (a local scenario) or contradicted (--set), it is refused,
    // saying why, before anything is written.
    for (args, says) in [
        (&["plan", "-n", "team-a"][..], "applies to Kubernetes, and this scenario's platform is `local`"),
        (&["e2e", "--context", "gpu", "--workdir", "wd"][..], "--context applies to Kubernetes"),
        (
            &["plan", "-c", "kubernetes-standalone", "-n", "a", "--set", "kubernetes.namespace=b"][..],
            "kubernetes.namespace is given twice, as `a` by its flag and as `b` by --set",
        ),
    ] {
        let out = p.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(says), "{args:?}: {}", text(&out.stderr));
    }
    assert!(!p.path("wd").exists(), "nothing written");
    // The same value twice is no contradiction.
    let out = p.run(&["plan", "-c", "kubernetes-standalone", "-n", "a", "--set", "kubernetes.namespace=a"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn completions_offer_the_shipped_names_and_no_hidden_command() {
    let p = project("completion");
    for shell in ["bash", "zsh", "fish"] {
        // `completion` is accepted beside `completions`.
        for spelling in ["completions", "completion"] {
            let out = p.run(&[spelling, shell]);
            assert!(out.status.success(), "{spelling} {shell}: {}", text(&out.stderr));
            let script = text(&out.stdout);
            for name in ["local-sim", "kubernetes-llm-d", "guidellm", "multistage", "rate-sweep", "max-rate"]
            {
                assert!(script.contains(name), "{shell}: {name} not offered");
            }
            for hidden in ["results-pack", "redact-pump", "results__pack", "redact__pump"] {
                assert!(!script.contains(hidden), "{shell}: hidden command {hidden} offered");
            }
        }
    }
    // The names are offered, not imposed: a path is still a workload.
    p.file("w.yaml", QUICK);
    let out = p.run(&["plan", "-w", "./w.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = p.run(&["plan", "-w", "no-such-workload"]);
    assert_eq!(out.status.code(), Some(2));
}
