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

/// Killed at every durable write while a reordered design is applied (points set aside,
/// copies made), then the same command: every point holds the measurement of the values its
/// row names, and nothing is measured again.
#[test]
fn a_reordered_design_killed_at_every_write_of_its_application_still_labels_every_point_right() {
    let p = Project::new("immutable-reorder-crash");
    p.file("workloads/short.yaml", SHORT).file("experiments/e.yaml", &rates("[20, 40, 60]"));
    let out = p.run(&["experiment", "-e", "e", "--workdir", "first", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let measured = by_rate(&p.path("first"));
    p.file("experiments/e.yaml", &rates("[60, 40, 20]"));
    for n in 1.. {
        let wd = format!("exp{n}");
        copy_dir(&p.path("first"), &p.path(&wd));
        let out = p
            .cmd(&["experiment", "-e", "e", "--workdir", &wd, "-q"])
            .env("BENCHFLOW_TEST_CRASH_AT", n.to_string())
            .output()
            .unwrap();
        if out.status.success() {
            assert!(n > 5, "the application of the design took {n} writes only");
            break;
        }
        let out = p.run(&["experiment", "-e", "e", "--workdir", &wd, "-q"]);
        assert!(out.status.success(), "killed at write {n}: {}", text(&out.stderr));
        let exp = p.path(&wd);
        assert_eq!(design_rates(&exp), rate_of_points(&exp), "killed at write {n}: labels");
        same(&by_rate(&exp), &measured, &format!("killed at write {n}: the measurements"));
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(exp.join("state.json")).unwrap()).unwrap();
        assert_eq!(state["stacks"].as_object().map_or(0, |m| m.len()), 1, "killed at write {n}: {state}");
        assert_eq!(state["stacks"]["s1"]["standups"], 1, "killed at write {n}: nothing measured again");
        let _ = std::fs::remove_dir_all(&exp);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp").arg("-a").arg(from).arg(to).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The store takes only what it stored: a tampered, swapped or bogus entry is not reused; a
/// point measured just before a crash is stored on the next invocation; no command writes into
/// an entry; a deleted point directory is measured again; a dataset rewritten in place is not
/// taken for the one measured.
#[test]
fn the_store_and_the_record_are_checked_before_anything_is_reused() {
    let p = Project::new("immutable-store-checks");
    p.file("workloads/short.yaml", SHORT).file("experiments/e.yaml", &rates("[20, 40]"));
    let out = p.run(&["experiment", "-e", "e", "--workdir", "a", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entries = || {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p.path("store"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|e| !e.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        v.sort();
        v
    };
    let stored = entries();
    assert_eq!(stored.len(), 2);
    // No command writes into an entry.
    let out = p.run(&["analyze", stored[0].to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("entry of a results store"), "{}", text(&out.stderr));
    // Two entries swapped by hand: neither is taken; both points are measured anew.
    let tmp = p.path("store/swap");
    std::fs::rename(&stored[0], &tmp).unwrap();
    std::fs::rename(&stored[1], &stored[0]).unwrap();
    std::fs::rename(&tmp, &stored[1]).unwrap();
    let out = p.run(&["experiment", "-e", "e", "--workdir", "b", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(design_rates(&p.path("b")), rate_of_points(&p.path("b")), "each point ran with its own rate");
    assert!(!p.path("b/points/p001/reused.json").exists(), "a swapped entry is not reused");
    // … and the store's bad entries were set aside for the new measurements (not deleted).
    let aside = std::fs::read_dir(p.path("store"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("not-a-measurement"))
        .count();
    assert_eq!(aside, 2);
    let out = p.run(&["experiment", "-e", "e", "--workdir", "c", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(p.path("c/points/p001/reused.json").is_file(), "the store holds intact entries again");
    // A deleted point directory is measured again, not reported done with nothing in it.
    // So is one whose records were deleted.
    std::fs::remove_dir_all(p.path("b/points/p002")).unwrap();
    std::fs::remove_dir_all(p.path("b/points/p001/results")).unwrap();
    let out = p.run(&["experiment", "-e", "e", "--workdir", "b", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(p.path("b/points/p002/analysis/latest/stats.json").is_file(), "measured again");
    assert!(p.path("b/points/p001/results/latest/requests.csv").is_file(), "measured again");

    // A point measured by an invocation that did not get to store it (killed, or run without
    // the store) is stored by the next one with the store, measured or not.
    p.file("experiments/g.yaml", &rates("[30]"));
    let out = p.run(&["experiment", "-e", "g", "--workdir", "g", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let n = entries().len();
    let out = p.run(&["experiment", "-e", "g", "--workdir", "g", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(entries().len(), n + 1, "stored on resume");

    // A dataset file rewritten in place changes the inputs: nothing measured with the old one
    // is reused, here or through the store.
    p.file("prompts.jsonl", "{\"prompt\": \"short one\", \"output_len\": 4}\n")
        .file(
            "workloads/file.yaml",
            "seed: 1\napi: { stream: true, ignore_eos: true }\ndataset: { jsonl: { path: ../prompts.jsonl } }\nwarmup: { requests: 0 }\nstages:\n  - { rate: 40, requests: 6 }\n",
        )
        .file("experiments/f.yaml", "base: { workload: file }\nfactors:\n  workload.seed: [1]\n");
    let out = p.run(&["experiment", "-e", "f", "--workdir", "f1", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tokens = |dir: &str| {
        let stats: serde_json::Value = serde_json::from_slice(
            &std::fs::read(p.path(dir).join("points/p001/analysis/latest/stats.json")).unwrap(),
        )
        .unwrap();
        stats["stages"][0]["total_input_tokens"].as_f64().unwrap()
    };
    let before = tokens("f1");
    p.file("prompts.jsonl", &format!("{{\"prompt\": \"{}\", \"output_len\": 4}}\n", "long ".repeat(200)));
    let out = p.run(&["experiment", "-e", "f", "--workdir", "f2", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(tokens("f2") > before * 10.0, "measured with the new file: {} against {before}", tokens("f2"));
    let out = p.run(&["experiment", "-e", "f", "--workdir", "f1", "--store", "store", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(tokens("f1") > before * 10.0, "the same directory measures anew too");
}
