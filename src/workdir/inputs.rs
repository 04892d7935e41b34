//! A harness run's own record of its inputs: `results/<run>/inputs/`, written when the run
//! starts, before any record. The work directory's `inputs/` holds the latest command's files;
//! each run keeps a copy of the ones it ran with (the scenario, harness, workload and pipeline
//! files as read, `overrides.txt`, `resolved.yaml` with secrets as references only), and
//! `inputs.json`: which workload and harness these are, the `--set`s, and the sha256 of each
//! copy (as `sha256sum` computes it on the copy). `run.json` and `stats.json` carry the same
//! [`RunInputs`]; `benchflow reproduce DIR --run ID` re-runs from the copy.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{WorkdirError, archive::sha256_hex, layout, runs::RunDirs, utc_now, write_atomic};

/// The files of `inputs/` a run keeps a copy of (those present).
pub(crate) const FILES: [&str; 6] =
    ["scenario.yaml", "harness.yaml", "workload.yaml", "pipeline.yaml", "overrides.txt", "resolved.yaml"];

/// `results/<run>/inputs/`, relative to the run's results folder.
pub(crate) const DIR: &str = "inputs";

/// `results/<run>/inputs/inputs.json`.
pub(crate) const RECORD: &str = "inputs/inputs.json";

/// Which inputs a harness run used (`results/<run>/inputs/inputs.json`, and in `run.json` and
/// `stats.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunInputs {
    /// The harness run: `001`, `002`, …
    pub run: String,
    /// The workload it ran.
    pub workload: InputFile,
    /// The harness that generated the load.
    pub harness: InputFile,
    /// The scenario (what was stood up).
    pub scenario: InputFile,
    /// The `--set`s, in order (`key=value`).
    pub overrides: Vec<String>,
    /// Assignments layered under the `--set`s, each with its origin (an experiment point's
    /// factor values: `experiments/sweep.yaml point p003`); empty outside an experiment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<InputLayer>,
    /// The dataset file the prompts came from (ShareGPT or JSONL; not copied): where it was
    /// and its sha256, so that a reproduction can tell it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<InputFile>,
    /// The sha256 of each file copied into `results/<run>/inputs/`, by name.
    pub sha256: BTreeMap<String, String>,
    /// When the copy was made (the run's start).
    pub recorded_at: String,
}

/// One input file of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InputFile {
    /// As it was named (`chat`, `workloads/my.yaml`).
    pub name: String,
    /// Where it was found (a path, or `builtin:workloads/chat.yaml` for a file shipped in the
    /// binary).
    pub file: String,
    /// The sha256 of its copy in `results/<run>/inputs/`.
    pub sha256: String,
}

/// Assignments written like `--set`, with where they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InputLayer {
    pub origin: String,
    pub sets: Vec<String>,
}

/// What of `resolved.yaml` names the files: `request`, `files`, and the variables (`values`,
/// for the dataset's path).
#[derive(Deserialize)]
struct Named {
    request: Request,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    values: serde_json::Value,
}

#[derive(Deserialize)]
struct Request {
    scenario: String,
    harness: String,
    workload: String,
    #[serde(default)]
    sets: Vec<String>,
    #[serde(default)]
    layers: Vec<InputLayer>,
}

/// Copies the work directory's `inputs/` files into `run`'s `results/<run>/inputs/` and writes
/// `inputs.json`. None when the work directory records no inputs (`inputs/resolved.yaml`
/// missing: a step run outside a session).
pub(crate) fn snapshot(root: &Path, run: &RunDirs) -> Result<Option<RunInputs>, WorkdirError> {
    let resolved_path = root.join(layout::RESOLVED);
    let Ok(resolved) = std::fs::read_to_string(&resolved_path) else { return Ok(None) };
    let named: Named = serde_saphyr::from_str(&resolved)
        .map_err(|e| WorkdirError::Record { path: resolved_path.clone(), why: e.to_string() })?;
    let dest = run.results.join(DIR);
    let mut sha256 = BTreeMap::new();
    for name in FILES {
        let from = root.join(layout::INPUTS).join(name);
        let bytes = match std::fs::read(&from) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(WorkdirError::Io { path: from, source }),
        };
        let to = dest.join(name);
        write_atomic(&to, &bytes)?;
        // The hash of the copy as written (secrets redacted), so `sha256sum` agrees.
        let written = std::fs::read(&to).map_err(|source| WorkdirError::Io { path: to.clone(), source })?;
        sha256.insert(name.to_string(), sha256_hex(&written));
    }
    let file = |kind: &str, name: &str| InputFile {
        name: name.to_string(),
        file: named.files.get(kind).cloned().unwrap_or_default(),
        sha256: sha256.get(&format!("{kind}.yaml")).cloned().unwrap_or_default(),
    };
    let dataset = dataset_file(&named.values, named.files.get("workload").map(String::as_str));
    let inputs = RunInputs {
        dataset,
        run: run.id.clone(),
        workload: file("workload", &named.request.workload),
        harness: file("harness", &named.request.harness),
        scenario: file("scenario", &named.request.scenario),
        overrides: named.request.sets.clone(),
        layers: named.request.layers.clone(),
        sha256: sha256.clone(),
        recorded_at: utc_now(),
    };
    let text = serde_json::to_vec_pretty(&inputs).unwrap_or_default();
    write_atomic(&run.results.join(RECORD), &text)?;
    Ok(Some(inputs))
}

/// The run's own copy of `resolved.yaml` (`results/<run>/inputs/resolved.yaml`).
pub(crate) fn resolved_of(results: &Path) -> std::path::PathBuf {
    results.join(DIR).join("resolved.yaml")
}

/// The dataset file a workload reads (its path as resolved, relative to the workload file), with
/// its sha256; None for generated prompts or a file that cannot be read.
fn dataset_file(values: &serde_json::Value, workload_file: Option<&str>) -> Option<InputFile> {
    let given = ["jsonl", "sharegpt"]
        .iter()
        .find_map(|kind| values["workload"]["dataset"][kind]["path"].as_str().map(str::to_string))?;
    let base = workload_file.filter(|f| !f.starts_with("builtin:")).and_then(|f| Path::new(f).parent());
    let path = match base {
        Some(b) if Path::new(&given).is_relative() => b.join(&given),
        _ => PathBuf::from(&given),
    };
    let sha256 = file_sha256(&path)?;
    Some(InputFile { name: given, file: path.display().to_string(), sha256 })
}

/// A file's sha256, read in pieces (a dataset may be large).
fn file_sha256(path: &Path) -> Option<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).ok()?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Some(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// What `results/<run>/inputs/inputs.json` says, if it can be read.
pub(crate) fn read(results: &Path) -> Option<RunInputs> {
    let text = std::fs::read(results.join(RECORD)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The harness runs of a work directory (or of an unpacked archive of one): the ids of
/// `results/<id>/`, in order.
pub(crate) fn run_ids(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root.join(layout::RESULTS))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_str()?.to_string();
            (name.parse::<u32>().is_ok() && e.file_type().ok()?.is_dir()).then_some(name)
        })
        .collect();
    ids.sort_by_key(|id| id.parse::<u32>().unwrap_or(u32::MAX));
    ids
}

/// A run's id as its folder is named, and where its own copy of its inputs is, to reproduce
/// it: `results/<run>/inputs/` (`2` names `002`).
pub(crate) fn of_run(root: &Path, run: &str) -> Result<(String, PathBuf), RunNotFound> {
    let runs = run_ids(root);
    let number = run.parse::<u32>().ok();
    let Some(run) = runs.iter().find(|r| *r == run || (number.is_some() && r.parse::<u32>().ok() == number))
    else {
        return Err(RunNotFound { root: root.to_path_buf(), run: run.to_string(), runs, why: None });
    };
    let run = run.clone();
    let dir = root.join(layout::RESULTS).join(&run).join(DIR);
    if !dir.join("resolved.yaml").is_file() {
        return Err(RunNotFound {
            root: root.to_path_buf(),
            run: run.to_string(),
            runs,
            why: Some(format!(
                "it has no record of its inputs (results/{run}/inputs/resolved.yaml: a run made \
                 before benchflow kept one)"
            )),
        });
    }
    // The copies must be what was recorded: an edited copy would reproduce another run; so
    // must the dataset file the prompts came from.
    if let Some(record) = read(&root.join(layout::RESULTS).join(&run)) {
        if let Some(d) = &record.dataset
            && file_sha256(Path::new(&d.file)).as_ref() != Some(&d.sha256)
        {
            return Err(RunNotFound {
                root: root.to_path_buf(),
                run: run.to_string(),
                runs,
                why: Some(format!(
                    "its dataset {} is not the file the run read (sha256 {} in inputs.json): it was \
                     changed, moved or removed since, so the prompts would not be the same; restore it",
                    d.file, d.sha256
                )),
            });
        }
        for (name, sum) in &record.sha256 {
            let now = std::fs::read(dir.join(name)).map(|b| sha256_hex(&b)).unwrap_or_default();
            if &now != sum {
                return Err(RunNotFound {
                    root: root.to_path_buf(),
                    run: run.to_string(),
                    runs,
                    why: Some(format!(
                        "results/{run}/inputs/{name} is not the file the run recorded (its sha256 in \
                         inputs.json is {sum}): it was changed or removed since, so it would not reproduce \
                         that run"
                    )),
                });
            }
        }
    }
    Ok((run, dir))
}

/// A `--run` that names no run of the work directory (or one without its inputs).
#[derive(Debug, thiserror::Error)]
#[error(
    "{}: {}; {}",
    root.display(),
    why.clone().unwrap_or_else(|| format!("no harness run `{run}` (results/{run}/)")),
    if runs.is_empty() { "it holds no harness run".to_string() } else { format!("its runs: {}", runs.join(", ")) }
)]
pub(crate) struct RunNotFound {
    pub root: PathBuf,
    pub run: String,
    pub runs: Vec<String>,
    pub why: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_keeps_a_copy_of_its_inputs_with_their_hashes_and_names() {
        let root = std::env::temp_dir().join(format!("bf-run-inputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("inputs")).unwrap();
        let run = RunDirs::create(&root).unwrap();
        assert_eq!(snapshot(&root, &run).unwrap(), None, "no resolved.yaml: nothing recorded");
        std::fs::write(root.join("inputs/workload.yaml"), "# from workloads/chat.yaml\nseed: 1\n").unwrap();
        std::fs::write(root.join("inputs/overrides.txt"), "--set workload.seed=1\n").unwrap();
        std::fs::write(
            root.join(layout::RESOLVED),
            "request:\n  scenario: local-sim\n  harness: builtin\n  workload: chat\n  sets: [workload.seed=1]\n\
             files:\n  workload: workloads/chat.yaml\n  harness: builtin:harnesses/builtin.yaml\nvalues: {}\n",
        )
        .unwrap();
        let got = snapshot(&root, &run).unwrap().unwrap();
        assert_eq!(got.run, "001");
        assert_eq!((got.workload.name.as_str(), got.workload.file.as_str()), ("chat", "workloads/chat.yaml"));
        assert_eq!(got.workload.sha256, sha256_hex(b"# from workloads/chat.yaml\nseed: 1\n"));
        assert_eq!(got.harness.file, "builtin:harnesses/builtin.yaml");
        assert_eq!(got.harness.sha256, "", "no harness file in inputs/: no hash");
        assert_eq!(got.overrides, ["workload.seed=1"]);
        assert_eq!(
            got.sha256.keys().collect::<Vec<_>>(),
            ["overrides.txt", "resolved.yaml", "workload.yaml"]
        );
        assert_eq!(read(&run.results), Some(got));
        // A later command rewrites inputs/: the run's copy stays as it was.
        std::fs::write(root.join("inputs/workload.yaml"), "seed: 2\n").unwrap();
        assert!(
            std::fs::read_to_string(run.results.join("inputs/workload.yaml")).unwrap().contains("seed: 1")
        );
        assert_eq!(run_ids(&root), ["001"]);
        let dir = run.results.join("inputs");
        assert_eq!(of_run(&root, "001").unwrap(), ("001".to_string(), dir.clone()));
        assert_eq!(of_run(&root, "1").unwrap(), ("001".to_string(), dir), "a run by its number");
        let e = of_run(&root, "007").unwrap_err().to_string();
        assert!(e.contains("no harness run `007`") && e.contains("its runs: 001"), "{e}");
        std::fs::remove_file(run.results.join("inputs/resolved.yaml")).unwrap();
        let e = of_run(&root, "001").unwrap_err().to_string();
        assert!(e.contains("no record of its inputs"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
