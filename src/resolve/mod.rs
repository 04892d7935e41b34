//! From the files as written to one variable tree: defaults < scenario < harness < workload <
//! layers (an experiment's base, constants and point) < `--set`, every leaf remembering who set it, validated again as typed values, plus the values
//! derived for this run (`run.*`, `endpoint.*`).
//!
//! Secrets never enter the tree: a value whose key looks secret (`token`, `password`, …) must
//! be a reference such as `env:HF_TOKEN`, read from the environment only when a process starts.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub(crate) use crate::platform::{Ports, RunContext};
use crate::spec::{
    self, Source, SpecError,
    harness::Harness,
    pipeline::Pipeline,
    scenario::{EngineKind, Method, Platform, Scenario},
    workload::Workload,
};

/// Version of the `inputs/resolved.yaml` format.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Why the inputs could not be resolved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("--set {set}: {message}")]
    Set { set: String, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error(
        "{origin}: `{path}` looks like a secret and is written as a value; write a reference such as \
         `env:NAME` and export NAME instead (secrets are never written to the work directory)"
    )]
    Secret { origin: String, path: String },
}

/// What the user asked for: file names (or paths) and overrides.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Request {
    pub scenario: String,
    pub harness: String,
    pub workload: String,
    /// `--set key=value`, in order.
    pub sets: Vec<String>,
    /// Named layers of `key=value` assignments between the workload and `--set` (an
    /// experiment's base `set`, its constants, one point's factor values), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
}

/// Assignments written like `--set` (`workload.stages.0.rate=5`), with the origin every value
/// they set is recorded under (`experiments/sweep.yaml point p003`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Layer {
    pub origin: String,
    pub sets: Vec<String>,
}

/// The result: the tree, who set each leaf, the typed files, the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resolved {
    pub format_version: u32,
    pub benchflow_version: String,
    pub request: Request,
    /// Where each file was found (`scenario`, `harness`, `workload`, `pipeline`).
    pub files: BTreeMap<String, String>,
    /// The variable tree.
    pub values: Value,
    /// `engine.profile` → `scenarios/local-sim.yaml`, `--set`, `default`, `derived`.
    pub sources: BTreeMap<String, String>,
    /// The pipeline's steps (templates, not yet rendered).
    pub pipeline: Pipeline,
    /// The workload, typed and validated once (with `values.workload` its canonical form and
    /// `sources` the provenance of each of its values); not part of resolved.yaml.
    #[serde(skip)]
    pub workload: Option<Workload>,
    /// The texts of the files as read (`scenario`, `harness`, `workload`, `pipeline`): copied
    /// into `inputs/` and used for line numbers in errors; not part of resolved.yaml.
    #[serde(skip)]
    pub texts: BTreeMap<String, String>,
}

/// A value by dotted path (`engine.profile`, `workload.stages.0.rate`).
pub(crate) fn lookup<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(tree, |v, k| match v {
        Value::Object(m) => m.get(k),
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A key containing one of these (lowercase, `-` read as `_`) holds a secret.
const SECRET_WORDS: &[&str] =
    &["key", "token", "secret", "password", "passwd", "credential", "authorization", "auth"];

/// Request headers whose values are not secret; any other header is (its value must be an
/// `env:NAME` reference).
const HARMLESS_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "content-type",
    "user-agent",
    "x-request-id",
    "x-correlation-id",
];

/// Whether the leaf at a dotted path holds a secret: a secret-looking key, or a request header
/// that is not known to be harmless.
fn secret_path(path: &str) -> bool {
    let mut parts = path.rsplit('.');
    let key = parts.next().unwrap_or(path).to_ascii_lowercase();
    if parts.next() == Some("headers") {
        return !HARMLESS_HEADERS.contains(&key.as_str());
    }
    let key = key.replace('-', "_");
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(&p, v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Deep merge: objects merge key by key, anything else (lists included) replaces.
pub fn merge(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The layers, in precedence order.
#[derive(Debug, Clone)]
struct Tree {
    values: Value,
    sources: BTreeMap<String, String>,
}

impl Tree {
    fn layer(&mut self, origin: &str, v: Value) {
        let mut ls = Vec::new();
        leaves("", &v, &mut ls);
        // A leaf replaced by a subtree (or the reverse) drops the old paths below/above it.
        for l in &ls {
            let below = format!("{l}.");
            self.sources.retain(|k, _| !k.starts_with(&below) && !l.starts_with(&format!("{k}.")));
            self.sources.insert(l.clone(), origin.to_string());
        }
        merge(&mut self.values, v);
    }

    fn get(&self, path: &str) -> Option<&Value> {
        lookup(&self.values, path)
    }
}

fn parse_yaml_value(source: &Source) -> Result<Value, SpecError> {
    spec::from_yaml::<Value>(&source.text, &source.origin, &[])
        .map(|v| if v.is_null() { json!({}) } else { v })
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// One `--set key=value` as a nested object; the value is typed like YAML (`5` is a number,
/// `true` a boolean, `[a, b]` a list, anything else a string).
fn set_layer(set: &str, tree: &Tree) -> Result<Value, ResolveError> {
    let bad = |message: String| ResolveError::Set { set: set.to_string(), message };
    let (path, raw) = set.split_once('=').ok_or_else(|| bad("expected KEY=VALUE".into()))?;
    let path = path.trim();
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(bad(format!("`{path}` is not a dotted key such as engine.profile")));
    }
    let first = path.split('.').next().unwrap_or(path);
    let roots: Vec<&str> =
        tree.values.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    if !roots.contains(&first) {
        return Err(bad(format!(
            "unknown key `{first}`{}; the tree's top-level keys are: {}",
            spec::suggest(first, roots.iter().copied()),
            roots.join(", ")
        )));
    }
    let value: Value = if raw.trim().is_empty() {
        Value::String(String::new())
    } else {
        serde_saphyr::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
    };
    // Arrays are addressed by index: workload.stages.0.rate=5.
    let mut parts: Vec<&str> = path.split('.').collect();
    let mut value = value;
    while let Some(last) = parts.pop() {
        let parent = parts.join(".");
        let container = if parent.is_empty() { Some(&tree.values) } else { tree.get(&parent) };
        value = match (container, last.parse::<usize>()) {
            (Some(Value::Array(items)), Ok(i)) => {
                if i >= items.len() {
                    return Err(bad(format!(
                        "`{parent}` has {} items; index {i} is out of range",
                        items.len()
                    )));
                }
                let mut items = items.clone();
                merge(&mut items[i], value);
                Value::Array(items)
            }
            _ => json!({ last: value }),
        };
        // Once a level is rebuilt from the tree, the levels above merge normally.
    }
    Ok(value)
}

fn check_secrets(tree: &Tree) -> Result<(), ResolveError> {
    let mut ls = Vec::new();
    leaves("", &tree.values, &mut ls);
    for path in ls {
        if !secret_path(&path) {
            continue;
        }
        if let Some(Value::String(s)) = tree.get(&path)
            && !s.is_empty()
            && !s.starts_with("env:")
        {
            let origin = tree.sources.get(&path).cloned().unwrap_or_default();
            return Err(ResolveError::Secret { origin, path });
        }
    }
    Ok(())
}

/// Reads the files named in `request` and resolves them.
pub(crate) fn resolve(request: &Request, run: &RunContext) -> Result<Resolved, ResolveError> {
    load(request)?.resolve(request, run)
}

/// The files of a request, read, checked and layered (defaults < scenario < harness <
/// workload) once: an experiment resolves each of its points from one of these.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    tree: Tree,
    files: BTreeMap<String, String>,
    texts: BTreeMap<String, String>,
    pipeline: Pipeline,
    workload_dir: PathBuf,
}

/// Reads and checks the scenario, harness, workload and pipeline files of `request`.
pub(crate) fn load(request: &Request) -> Result<Loaded, ResolveError> {
    let scenario = spec::find("scenario", "scenarios", &request.scenario)?;
    let harness = spec::find("harness", "harnesses", &request.harness)?;
    let workload = spec::find("workload", "workloads", &request.workload)?;
    // Each file alone first: errors point at file:line:column.
    let typed_scenario: Scenario = spec::from_yaml(&scenario.text, &scenario.origin, &[])?;
    let _: Harness = spec::from_yaml(&harness.text, &harness.origin, &[])?;
    Workload::from_yaml(&workload.text, &workload.origin)?;
    let pipeline_name = typed_scenario.pipeline.clone().unwrap_or_else(|| {
        match (typed_scenario.platform, typed_scenario.engine.kind, typed_scenario.deploy.method) {
            (Platform::Kubernetes, _, Method::Router) => "kubernetes-router",
            (Platform::Kubernetes, _, Method::LlmD) => "kubernetes-llm-d",
            (Platform::Kubernetes, ..) => "kubernetes-standalone",
            (_, _, Method::Router) => "local-router",
            (_, EngineKind::Endpoint, _) => "endpoint",
            _ => "local",
        }
        .to_string()
    });
    let pipeline = spec::find("pipeline", "pipelines", &pipeline_name)?;
    let typed_pipeline: Pipeline = spec::from_yaml(&pipeline.text, &pipeline.origin, &[])?;

    let mut tree = Tree { values: json!({}), sources: BTreeMap::new() };
    let defaults = Scenario {
        description: None,
        platform: Platform::Local,
        pipeline: None,
        model: None,
        engine: Default::default(),
        deploy: Default::default(),
        timeouts: Default::default(),
        kubernetes: Default::default(),
        vars: BTreeMap::new(),
    };
    let mut d = object(serde_json::to_value(&defaults).unwrap_or_default());
    d.remove("description");
    d.remove("pipeline");
    d.insert("harness".into(), serde_json::to_value(Harness::default()).unwrap_or_default());
    if let Some(h) = d.get_mut("harness").and_then(Value::as_object_mut) {
        h.remove("description");
        h.remove("vars");
    }
    tree.layer("default", Value::Object(d));

    let mut s = object(parse_yaml_value(&scenario)?);
    s.remove("description");
    s.remove("pipeline");
    tree.layer(&scenario.origin, Value::Object(s));

    let mut h = object(parse_yaml_value(&harness)?);
    h.remove("description");
    if let Some(vars) = h.remove("vars") {
        tree.layer(&harness.origin, json!({ "vars": vars }));
    }
    tree.layer(&harness.origin, json!({ "harness": h }));
    tree.layer(&workload.origin, json!({ "workload": parse_yaml_value(&workload)? }));
    let files = BTreeMap::from([
        ("scenario".to_string(), scenario.origin.clone()),
        ("harness".to_string(), harness.origin.clone()),
        ("workload".to_string(), workload.origin.clone()),
        ("pipeline".to_string(), pipeline.origin.clone()),
    ]);
    let workload_dir = std::path::absolute(&workload.dir).unwrap_or(workload.dir.clone());
    let texts = BTreeMap::from([
        ("scenario".to_string(), scenario.text),
        ("harness".to_string(), harness.text),
        ("workload".to_string(), workload.text),
        ("pipeline".to_string(), pipeline.text),
    ]);
    Ok(Loaded { tree, files, texts, pipeline: typed_pipeline, workload_dir })
}

impl Loaded {
    /// Applies `request`'s layers and `--set`s (its file names are those this was loaded
    /// from) and derives the values of this run.
    pub(crate) fn resolve(&self, request: &Request, run: &RunContext) -> Result<Resolved, ResolveError> {
        let mut tree = self.tree.clone();
        for layer in &request.layers {
            for set in &layer.sets {
                let values = set_layer(set, &tree).map_err(|e| match e {
                    ResolveError::Set { set, message } => ResolveError::Invalid {
                        origin: layer.origin.clone(),
                        message: format!("{set}: {message}"),
                    },
                    e => e,
                })?;
                tree.layer(&layer.origin, values);
            }
        }
        for set in &request.sets {
            let layer = set_layer(set, &tree)?;
            tree.layer("--set", layer);
        }
        let mut resolved = finish(
            request.clone(),
            self.files.clone(),
            tree,
            self.pipeline.clone(),
            run,
            &self.workload_dir,
        )?;
        resolved.texts = self.texts.clone();
        Ok(resolved)
    }
}

/// Re-resolves a recorded `inputs/resolved.yaml` for a new run: the same values, new `run.*`.
pub(crate) fn reproduce(recorded: &Resolved, run: &RunContext) -> Result<Resolved, ResolveError> {
    let mut values = recorded.values.clone();
    let workload_dir = values
        .pointer("/run/workload_dir")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Some(m) = values.as_object_mut() {
        m.remove("run");
        m.remove("endpoint");
        m.remove("k8s");
    }
    let sources =
        recorded.sources.iter().filter(|(_, v)| *v != "derived").map(|(k, v)| (k.clone(), v.clone()));
    let tree = Tree { values, sources: sources.collect() };
    finish(
        recorded.request.clone(),
        recorded.files.clone(),
        tree,
        recorded.pipeline.clone(),
        run,
        &workload_dir,
    )
}

fn typed<T: serde::de::DeserializeOwned>(
    tree: &Tree,
    section: &[&str],
    what: &str,
) -> Result<T, ResolveError> {
    let v = if section.is_empty() {
        tree.values.clone()
    } else {
        section.iter().fold(tree.values.clone(), |v, k| v.get(*k).cloned().unwrap_or(Value::Null))
    };
    serde_json::from_value(v).map_err(|e| ResolveError::Invalid {
        origin: format!("the {what}"),
        message: spec::clean_message(&e.to_string(), &[]),
    })
}

fn finish(
    request: Request,
    files: BTreeMap<String, String>,
    mut tree: Tree,
    pipeline: Pipeline,
    run: &RunContext,
    workload_dir: &Path,
) -> Result<Resolved, ResolveError> {
    // Typed again after merging: a bad --set is caught here, and the tree gets the canonical
    // form of every value (durations in seconds, defaults filled in).
    let mut scenario_part = tree.values.clone();
    if let Some(m) = scenario_part.as_object_mut() {
        m.remove("harness");
        m.remove("workload");
    }
    let mut changes: Vec<String> = request.layers.iter().map(|l| l.origin.clone()).collect();
    changes.extend(request.sets.iter().map(|s| format!("--set {s}")));
    let after_sets =
        if changes.is_empty() { String::new() } else { format!(" after {}", changes.join(", ")) };
    let scenario: Scenario = serde_json::from_value(scenario_part).map_err(|e| ResolveError::Invalid {
        origin: format!("the scenario ({}){after_sets}", files.get("scenario").cloned().unwrap_or_default()),
        message: spec::clean_message(&e.to_string(), &[]),
    })?;
    let harness: Harness = typed(&tree, &["harness"], &format!("harness{after_sets}"))?;
    let mut workload: Workload = typed(&tree, &["workload"], &format!("workload{after_sets}"))?;
    // A CA file is named relative to the workload's folder; everything after uses the full path.
    if let Some(file) = workload.api.tls.ca_file.as_mut()
        && Path::new(file.as_str()).is_relative()
    {
        *file = workload_dir.join(file.as_str()).display().to_string();
    }
    if let Some(file) = &workload.api.tls.ca_file
        && !Path::new(file).is_file()
    {
        return Err(ResolveError::Invalid {
            origin: files.get("workload").cloned().unwrap_or_default(),
            message: format!("api.tls.ca_file `{file}` does not exist"),
        });
    }
    let origin = files.get("workload").cloned().unwrap_or_default();
    workload.validate(&format!("the merged workload ({origin}){after_sets}"))?;
    // What the load would refuse after the standup is refused now.
    crate::datasets::check(&workload.dataset, workload_dir)
        .map_err(|e| ResolveError::Invalid { origin: origin.clone(), message: e.to_string() })?;
    for (name, value) in workload.api.request_headers() {
        if let Some((_, var)) = crate::spec::workload::env_reference(&value)
            && std::env::var_os(var).is_none()
        {
            return Err(ResolveError::Invalid {
                origin: origin.clone(),
                message: format!(
                    "the request header {name} is read from ${var}, which is not set in this environment; \
                     export it before running"
                ),
            });
        }
    }
    if harness.placement == crate::spec::harness::Placement::Cluster
        && scenario.platform != Platform::Kubernetes
    {
        return Err(ResolveError::Invalid {
            origin: files.get("harness").cloned().unwrap_or_default(),
            message:
                "`placement: cluster` runs the load generator as Kubernetes pods: it needs a scenario with \
                      `platform: kubernetes` (use `placement: local` here)"
                    .into(),
        });
    }
    let mut canonical = object(serde_json::to_value(&scenario).unwrap_or_default());
    canonical.remove("description");
    canonical.remove("pipeline");
    let mut h = object(serde_json::to_value(&harness).unwrap_or_default());
    h.remove("description");
    h.remove("vars");
    canonical.insert("harness".into(), Value::Object(h));
    canonical.insert("workload".into(), serde_json::to_value(&workload).unwrap_or_default());
    let workload = Some(workload);
    tree.values = Value::Object(canonical);
    check_secrets(&tree)?;

    let derived = match scenario.platform {
        Platform::Local => crate::platform::local::derive(&scenario, run, workload_dir),
        Platform::Kubernetes => crate::platform::kubernetes::derive(&scenario, run, workload_dir),
    };
    let derived = derived.map_err(|message| ResolveError::Invalid {
        origin: files.get("scenario").cloned().unwrap_or_default(),
        message,
    })?;
    tree.layer("derived", derived);
    Ok(Resolved {
        format_version: FORMAT_VERSION,
        benchflow_version: env!("CARGO_PKG_VERSION").to_string(),
        request,
        files,
        values: tree.values,
        sources: tree.sources,
        pipeline,
        workload,
        texts: BTreeMap::new(),
    })
}

impl Resolved {
    /// The YAML written to `inputs/resolved.yaml`.
    pub fn to_yaml(&self) -> String {
        let head = "# Every variable of this run (`values`) and who set it (`sources`).\n\
                    # `benchflow reproduce` re-runs from this file. Secrets appear only as references.\n";
        format!("{head}{}", serde_saphyr::to_string(self).unwrap_or_default())
    }

    /// Reads `inputs/resolved.yaml`.
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
        spec::from_yaml(&text, &path.display().to_string(), &[])
    }

    /// A value by dotted path.
    pub fn get(&self, path: &str) -> Option<&Value> {
        lookup(&self.values, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised_and_harmless_ones_are_not() {
        for path in [
            "workload.api.headers.X-Api-Key",
            "workload.api.headers.api-key",
            "workload.api.headers.x-api-key",
            "workload.api.headers.Authorization",
            "workload.api.headers.X-Custom-Thing",
            "engine.env.HF_TOKEN",
            "engine.env.PRIVATE_KEY",
            "vars.private_key",
            "vars.credentials",
            "vars.access_key",
            "vars.db_password",
            "vars.client_secret",
            "vars.auth",
        ] {
            assert!(secret_path(path), "{path} must be treated as a secret");
        }
        for path in [
            "workload.api.headers.Content-Type",
            "workload.api.headers.user-agent",
            "engine.profile",
            "workload.api.model",
            "workload.seed",
            "kubernetes.namespace",
        ] {
            assert!(!secret_path(path), "{path} is not a secret");
        }
    }

    fn tree() -> Tree {
        let mut t = Tree { values: json!({}), sources: BTreeMap::new() };
        t.layer(
            "default",
            json!({"engine": {"kind": "sim", "port": 0}, "workload": {"stages": [{"rate": 1}]}}),
        );
        t
    }

    #[test]
    fn layers_record_the_last_source_of_each_leaf() {
        let mut t = tree();
        t.layer("scenario.yaml", json!({"engine": {"port": 8000}}));
        let l = set_layer("engine.kind=vllm", &t).unwrap();
        t.layer("--set", l);
        assert_eq!(t.values["engine"], json!({"kind": "vllm", "port": 8000}));
        assert_eq!(t.sources["engine.kind"], "--set");
        assert_eq!(t.sources["engine.port"], "scenario.yaml");
        let l = set_layer("workload.stages.0.rate=5", &t).unwrap();
        t.layer("--set", l);
        assert_eq!(t.values["workload"]["stages"][0], json!({"rate": 5}));
        t.layer("w.yaml", json!({"workload": {"stages": [{"rate": 1, "duration": 3}]}}));
        let l = set_layer("workload.stages.0.rate=7", &t).unwrap();
        t.layer("--set", l);
        assert_eq!(t.values["workload"]["stages"][0], json!({"rate": 7, "duration": 3}));
    }

    #[test]
    fn sets_are_typed_and_checked() {
        let t = tree();
        assert_eq!(set_layer("engine.port=9", &t).unwrap(), json!({"engine": {"port": 9}}));
        assert_eq!(set_layer("engine.kind=true", &t).unwrap(), json!({"engine": {"kind": true}}));
        let e = set_layer("engnie.port=9", &t).unwrap_err().to_string();
        assert!(e.contains("did you mean `engine`"), "{e}");
        assert!(set_layer("engine.port", &t).unwrap_err().to_string().contains("KEY=VALUE"));
        assert!(set_layer("workload.stages.3.rate=1", &t).unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn secret_values_are_refused_and_references_allowed() {
        let mut t = tree();
        t.layer("s.yaml", json!({"engine": {"env": {"HF_TOKEN": "env:HF_TOKEN"}}}));
        assert!(check_secrets(&t).is_ok());
        t.layer("--set", json!({"engine": {"env": {"HF_TOKEN": "hf_abc"}}}));
        let e = check_secrets(&t).unwrap_err().to_string();
        assert!(e.contains("engine.env.HF_TOKEN") && e.contains("--set") && !e.contains("hf_abc"), "{e}");
    }
}
