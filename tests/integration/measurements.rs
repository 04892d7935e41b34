//! A finished point's records are never rewritten, deleted or shared by a later command: a
//! reordered design, a store shared by two experiments, a resume through another spelling of
//! the path with the record moved aside, another experiment file in the same directory.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::support::{Project, digests, text};

const SHORT: &str = "seed: 1\napi: { stream: true, ignore_eos: true }\ndataset:\n  random: { input_len: 64, output_len: 16 }\nwarmup: { requests: 2 }\nstages:\n  - { rate: 40, requests: 12 }\n";

fn rates(levels: &str) -> String {
    format!("base: {{ workload: short }}\nfactors:\n  workload.stages.0.rate: {levels}\n")
}

/// Every file under `dir` (relative path → a digest of its bytes), but the notes a copy adds.
fn files(dir: &Path) -> BTreeMap<PathBuf, u64> {
    digests(dir, &["reused.json", "stored.json", ".lock"])
}

/// Point id → the rate its resolved inputs ran with.
fn rate_of_points(exp: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(exp.join("points")).unwrap() {
        let dir = e.unwrap().path();
        let resolved = std::fs::read_to_string(dir.join("inputs/resolved.yaml")).unwrap();
        let rate = resolved
            .lines()
            .find_map(|l| l.trim().strip_prefix("- rate: ").or_else(|| l.trim().strip_prefix("rate: ")))
            .and_then(|r| r.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no rate in {}: {resolved}", dir.display()))
            .to_string();
        out.insert(dir.file_name().unwrap().to_string_lossy().to_string(), rate);
    }
    out
}

/// Rate → the files of the point that measured it.
fn by_rate(exp: &Path) -> BTreeMap<String, BTreeMap<PathBuf, u64>> {
    rate_of_points(exp).into_iter().map(|(id, rate)| (rate, files(&exp.join("points").join(id)))).collect()
}

/// No file under `dir` shares its data with another path (hard links).
/// Asserts two trees of files are equal, naming the files that differ.
fn same(
    a: &BTreeMap<String, BTreeMap<PathBuf, u64>>,
    b: &BTreeMap<String, BTreeMap<PathBuf, u64>>,
    what: &str,
) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}");
    for (k, x) in a {
        let y = &b[k];
        let differ: Vec<_> = x.keys().chain(y.keys()).filter(|f| x.get(*f) != y.get(*f)).collect();
        assert!(differ.is_empty(), "{what}: {k}: {differ:?} differ");
    }
}

fn no_shared_files(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        if meta.is_dir() {
            no_shared_files(&e.path());
        } else if meta.is_file() {
            assert_eq!(meta.nlink(), 1, "{} shares its data with another path", e.path().display());
        }
    }
}

fn design_rates(exp: &Path) -> BTreeMap<String, String> {
    let design = std::fs::read_to_string(exp.join("design.csv")).unwrap();
    design
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .map(|r| (r[0].into(), r[4].parse::<f64>().unwrap().to_string()))
        .collect()
}

#[test]
fn a_reordered_design_moves_no_measurement_and_measures_nothing_again() {
    let p = Project::new("immutable-reorder");
    p.file("workloads/short.yaml", SHORT).file("experiments/e.yaml", &rates("[20, 40, 80]"));
    let out = p.run(&["experiment", "-e", "e", "--workdir", "exp", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exp = p.path("exp");
    let measured = by_rate(&exp);
    assert_eq!(measured.len(), 3);
    let store_before = files(&p.path("store"));

    // The same levels in another order: every point is found by its inputs, none measured
    // again, none deleted; each point's files are those of the rate it now names.
    p.file("experiments/e.yaml", &rates("[80, 20, 40]"));
    let out = p.run(&["experiment", "-e", "e", "--workdir", "exp", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(design_rates(&exp), rate_of_points(&exp), "each point ran with the rate its row names");
    // points.csv shows the rate each point ran with (its resolved inputs).
    let csv = std::fs::read_to_string(exp.join("analysis/points.csv")).unwrap();
    let shown: BTreeMap<String, String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .map(|r| (r[0].to_string(), r[4].parse::<f64>().unwrap().to_string()))
        .collect();
    assert_eq!(shown, rate_of_points(&exp), "{csv}");
    same(&by_rate(&exp), &measured, "each rate's records are the ones measured the first time");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exp.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["stacks"]["s1"]["standups"], 1, "nothing was measured again: {state}");
    // What the first design's points held is kept aside, whole.
    let aside: Vec<_> =
        std::fs::read_dir(exp.join("superseded")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(aside.len(), 3, "every point changed its inputs: {aside:?}");
    for dir in &aside {
        assert!(measured.values().any(|m| *m == files(dir)), "{} is a whole measurement", dir.display());
    }
    // The design that ran first is kept.
    let history: Vec<_> =
        std::fs::read_dir(exp.join("history")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(
        history.iter().any(|h| std::fs::read_to_string(h).unwrap().contains("[20, 40, 80]")),
        "{history:?}"
    );
    // Nothing is shared: appending to a point's log changes no other record.
    no_shared_files(&exp);
    no_shared_files(&p.path("store"));
    assert_eq!(files(&p.path("store")), store_before, "the store is written once per input hash");

    // A second experiment on the same store copies; nothing it does reaches the store or the
    // first experiment.
    let out = p.run(&["experiment", "-e", "e", "--workdir", "other", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    same(&by_rate(&p.path("other")), &measured, "copied from the store");
    std::fs::write(p.path("other/points/p001/events.jsonl"), "overwritten\n").unwrap();
    assert_eq!(files(&p.path("store")), store_before);
    same(&by_rate(&exp), &measured, "the first experiment, after the second");
}

#[test]
fn a_resume_through_another_spelling_with_its_record_moved_aside_loses_nothing() {
    let p = Project::new("immutable-spelling");
    p.file("workloads/short.yaml", SHORT).file("experiments/e.yaml", &rates("[20, 40]"));
    let out = p.run(&["experiment", "-e", "e", "--workdir", "exp", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let measured = by_rate(&p.path("exp"));
    std::fs::rename(p.path("exp/state.json"), p.path("state.json.aside")).unwrap();
    std::os::unix::fs::symlink(p.path("exp"), p.path("link")).unwrap();
    let out = p.run(&["experiment", "-e", "e", "--workdir", "link", "--store", "exp/../store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    same(&by_rate(&p.path("exp")), &measured, "every point holds its measurement");
}

#[test]
fn a_directory_that_ran_one_experiment_file_refuses_another() {
    let p = Project::new("immutable-other-file");
    p.file("workloads/short.yaml", SHORT)
        .file("experiments/e.yaml", &rates("[20]"))
        .file("experiments/f.yaml", &rates("[40]"));
    let out = p.run(&["experiment", "-e", "e", "--workdir", "exp", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = std::fs::read_to_string(p.path("exp/experiment.yaml")).unwrap();
    let out = p.run(&["experiment", "-e", "f", "--workdir", "exp", "-q"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("holds the experiment from"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(p.path("exp/experiment.yaml")).unwrap(), before);
    // Resuming it by its directory still works.
    let out = p.run(&["experiment", "--workdir", "exp", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
