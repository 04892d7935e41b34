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
    /// A secret written as a value, or a URL with credentials.
    #[error("{origin}: `{path}` {why}")]
    Secret { origin: String, path: String, why: String },
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

/// A key containing one of these (lowercase, `-` read as `_`) looks secret: every value under
/// it, at any depth and in lists, is a secret.
const SECRET_WORDS: &[&str] =
    &["key", "token", "secret", "password", "passwd", "credential", "authorization", "auth"];

/// Parts of keys that contain a secret word but name no secret (`tokenizer`), taken out before
/// the words are looked for.
const HARMLESS_PARTS: &[&str] = &["tokeniz"];

/// Secret words whose values are secrets even as numbers (a numeric password); under the other
/// words a number is a count (`max_tokens: 64`).
const SECRET_EVEN_AS_NUMBER: &[&str] = &["secret", "password", "passwd", "credential"];

/// Paths whose keys look secret but are not (`*`: any key or list index): a Kubernetes
/// toleration's `key` is a taint's name.
const HARMLESS_PATHS: &[&str] = &["kubernetes.tolerations.*.key"];

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

/// The secret words in a key (none: it does not look secret).
fn secret_words(key: &str) -> Vec<&'static str> {
    let mut key = key.to_ascii_lowercase().replace('-', "_");
    for part in HARMLESS_PARTS {
        key = key.replace(part, "");
    }
    SECRET_WORDS.iter().copied().filter(|w| key.contains(w)).collect()
}

/// Why the leaf at a dotted path holds a secret: the first key on the way to it that looks
/// secret, or a request header that is not known to be harmless (its position, and the
/// word that makes it secret, or `None` for a header). `None`: not a secret.
fn secret_key(path: &str) -> Option<(usize, Option<&'static str>)> {
    // Remembered per thread: an experiment checks the same paths for every point.
    type Seen = std::collections::HashMap<String, Option<(usize, Option<&'static str>)>>;
    thread_local! {
        static SEEN: std::cell::RefCell<Seen> = std::cell::RefCell::new(Seen::new());
    }
    if let Some(known) = SEEN.with(|s| s.borrow().get(path).copied()) {
        return known;
    }
    let found = secret_key_of(path);
    SEEN.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < 100_000 {
            s.insert(path.to_string(), found);
        }
    });
    found
}

fn secret_key_of(path: &str) -> Option<(usize, Option<&'static str>)> {
    let parts: Vec<&str> = path.split('.').collect();
    let harmless = |upto: usize| {
        HARMLESS_PATHS.iter().any(|h| {
            let pattern: Vec<&str> = h.split('.').collect();
            pattern.len() == upto + 1 && pattern.iter().zip(&parts[..=upto]).all(|(p, k)| *p == "*" || p == k)
        })
    };
    for (i, key) in parts.iter().enumerate() {
        if i > 0
            && parts[i - 1] == "headers"
            && !HARMLESS_HEADERS.contains(&key.to_ascii_lowercase().as_str())
        {
            return Some((i, None));
        }
        if let Some(word) = secret_words(key).first()
            && !harmless(i)
        {
            return Some((i, Some(word)));
        }
    }
    None
}

/// Whether the leaf at a dotted path holds a secret (see [`secret_key`]).
pub(crate) fn secret_path(path: &str) -> bool {
    secret_key(path).is_some()
}

/// `env:NAME` with NAME a variable name: a reference, the one way to give a secret.
pub(crate) fn env_name(value: &str) -> Option<&str> {
    let name = value.strip_prefix("env:")?;
    let mut chars = name.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

/// Where a URL in `text` carries credentials (`scheme://user:pass@host`): the URL's start.
pub(crate) fn url_userinfo(text: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(i) = text[from..].find("://") {
        let at = from + i;
        let scheme_start = text[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |j| j + 1);
        let rest = &text[at + 3..];
        let authority = rest.split(['/', '?', '#', ' ', '"', '\'', '\n', '\t']).next().unwrap_or("");
        if at > scheme_start && authority.contains('@') {
            return Some(&text[scheme_start..]);
        }
        from = at + 3;
    }
    None
}

/// Registers for redaction (see `crate::redact`) the values of the `env:` references at
/// secret-looking paths of `tree` that this environment sets: what benchflow will send as
/// secrets.
pub(crate) fn register_secrets(tree: &Value) {
    let mut leaves = Vec::new();
    all_leaves(String::new(), tree, &mut leaves);
    for (path, value) in leaves {
        if let Value::String(s) = value
            && secret_path(&path)
            && let Some((_, name)) = crate::spec::workload::env_reference(s)
            && let Ok(secret) = std::env::var(name)
        {
            crate::redact::register(&secret);
        }
    }
}

/// [`secret_written`] for a step's rendered arguments (`with`): a URL with credentials
/// anywhere, a literal in its environment (`env`) or headers (`headers`). Other keys are the
/// kind's own (a manifest's `secretKeyRef.key` names a key, it holds none).
pub(crate) fn secret_in_step(with: &Value) -> Option<(String, String)> {
    let mut leaves = Vec::new();
    all_leaves(String::new(), with, &mut leaves);
    for (path, value) in leaves {
        if let Value::String(s) = value
            && url_userinfo(s).is_some()
        {
            return secret_written(&Value::String(s.clone())).map(|(_, why)| (path, why));
        }
    }
    let sent = json!({ "env": with.get("env"), "headers": with.get("headers") });
    secret_written(&sent)
}

/// Every leaf of a tree, lists included (`vars.api_keys.0`), with its dotted path.
fn all_leaves<'a>(prefix: String, v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    let join = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                all_leaves(join(k), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                all_leaves(join(&i.to_string()), v, out);
            }
        }
        _ => out.push((prefix, v)),
    }
}

/// A secret written as a value in `tree`, or a URL with credentials: (path, why) of the first.
/// Under a secret-looking key (at any depth above the leaf), every string must be an
/// `env:NAME` reference (or empty), and a number too under the words that name passwords.
pub(crate) fn secret_written(tree: &Value) -> Option<(String, String)> {
    let mut leaves = Vec::new();
    all_leaves(String::new(), tree, &mut leaves);
    for (path, value) in leaves {
        if let Value::String(s) = value
            && let Some(url) = url_userinfo(s)
        {
            let shown: String = url.split('@').next().unwrap_or("").split("://").next().unwrap_or("").into();
            return Some((
                path,
                format!(
                    "holds a URL with credentials ({shown}://…@…): they would be written everywhere the URL is; \
                     remove them from the URL and give the key as a reference instead (`api_key: env:NAME` in the \
                     workload's api, or a header `NAME: env:VAR`)"
                ),
            ));
        }
        let Some((at, word)) = secret_key(&path) else { continue };
        let reference = |s: &str| s.is_empty() || env_name(s.strip_prefix("Bearer ").unwrap_or(s)).is_some();
        let refused = match value {
            Value::String(s) => !reference(s),
            Value::Number(_) => path
                .split('.')
                .skip(at)
                .any(|k| secret_words(k).iter().any(|w| SECRET_EVEN_AS_NUMBER.contains(w))),
            _ => false,
        };
        if refused {
            let parts: Vec<&str> = path.split('.').collect();
            let why = match (word, at + 1 == parts.len()) {
                (None, _) => "looks like a secret (a request header not known to be harmless)".to_string(),
                (Some(w), true) => format!("looks like a secret (its key holds `{w}`)"),
                (Some(w), false) => {
                    format!(
                        "is under `{}`, which looks like a secret (it holds `{w}`)",
                        parts[..=at].join(".")
                    )
                }
            };
            return Some((
                path,
                format!(
                    "{why}, and is written as a value; write a reference such as `env:NAME` and export NAME \
                     instead (secrets are never written to the work directory)"
                ),
            ));
        }
    }
    None
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
            // The paths below it (a contiguous range of the sorted keys) and those above it.
            let below = format!("{l}.");
            let under: Vec<String> = self
                .sources
                .range(below.clone()..)
                .take_while(|(k, _)| k.starts_with(&below))
                .map(|(k, _)| k.clone())
                .collect();
            for k in under {
                self.sources.remove(&k);
            }
            let mut at = l.as_str();
            while let Some((up, _)) = at.rsplit_once('.') {
                self.sources.remove(up);
                at = up;
            }
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
    let Some((path, why)) = secret_written(&tree.values) else { return Ok(()) };
    // The source of the leaf, or of the list (or object) it is in.
    let mut origin = String::new();
    let mut at = path.as_str();
    loop {
        if let Some(o) = tree.sources.get(at) {
            origin = o.clone();
            break;
        }
        match at.rsplit_once('.') {
            Some((up, _)) => at = up,
            None => break,
        }
    }
    Err(ResolveError::Secret { origin, path, why })
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
    register_secrets(&tree.values);

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
        let resolved: Resolved = spec::from_yaml(&text, &path.display().to_string(), &[])?;
        // A later command on a work directory (run, teardown) redacts what its run sends.
        register_secrets(&resolved.values);
        Ok(resolved)
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

    /// The old rule looked at the last key only and never into lists: each of these passed.
    #[test]
    fn secrets_nested_under_a_secret_key_or_in_its_lists_are_refused() {
        for (written, path, under) in [
            (
                json!({"vars": {"credentials": {"value": "s3cr3t-nested"}}}),
                "vars.credentials.value",
                "vars.credentials",
            ),
            (json!({"vars": {"api_keys": ["env:A", "s3cr3t-listed"]}}), "vars.api_keys.1", "vars.api_keys"),
            (json!({"vars": {"auth": {"basic": [{"user": "me"}]}}}), "vars.auth.basic.0.user", "vars.auth"),
            (json!({"vars": {"db_password": 123456}}), "vars.db_password", ""),
            (json!({"vars": {"Client-Secret": {"n": 42}}}), "vars.Client-Secret.n", "vars.Client-Secret"),
        ] {
            let mut t = tree();
            t.layer("s.yaml", written);
            let e = check_secrets(&t).unwrap_err().to_string();
            assert!(e.starts_with("s.yaml: `") && e.contains(&format!("`{path}`")), "{e}");
            assert!(e.contains(under) && e.contains("env:NAME"), "{e}");
            assert!(!e.contains("s3cr3t") && !e.contains("123456"), "the value is never shown: {e}");
        }
        // References, empty values, counts and harmless keys pass.
        let mut t = tree();
        t.layer(
            "s.yaml",
            json!({
                "vars": {
                    "credentials": {"value": "env:CRED", "empty": "", "enabled": true},
                    "api_keys": ["env:A", "env:B_2"],
                    "max_tokens": 64,
                    "tokenizer": {"name": "meta-llama/Llama-3.1-8B"},
                    "model": "m",
                },
                "kubernetes": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]},
                "workload": {"api": {"extra_body": {"max_tokens": 8}}},
            }),
        );
        check_secrets(&t).unwrap();
        // A reference must name a variable.
        t.layer("--set", json!({"vars": {"api_keys": ["env:sk-not a name"]}}));
        assert!(check_secrets(&t).unwrap_err().to_string().contains("vars.api_keys.0"));
    }

    #[test]
    fn urls_with_credentials_are_refused_wherever_they_are() {
        for url in [
            "http://user:pa55word@host:8000",
            "https://tok3n@example.com/v1",
            "see postgres://u:pa55word@db/x",
        ] {
            let mut t = tree();
            t.layer("s.yaml", json!({"engine": {"url": url}}));
            let e = check_secrets(&t).unwrap_err().to_string();
            assert!(e.contains("engine.url") && e.contains("api_key: env:NAME"), "{e}");
            assert!(!e.contains("pa55word") && !e.contains("tok3n"), "{e}");
        }
        for fine in ["http://127.0.0.1:8000/v1", "mailto:me@example.com", "user@host", "http://h/a@b"] {
            assert_eq!(url_userinfo(fine), None, "{fine}");
        }
    }

    #[test]
    fn a_steps_environment_headers_and_urls_follow_the_rule() {
        let refused = |with: Value| secret_in_step(&with).map(|(path, _)| path);
        assert_eq!(
            refused(json!({"command": ["x"], "env": {"API_TOKEN": "sk-lit"}})),
            Some("env.API_TOKEN".into())
        );
        assert_eq!(
            refused(json!({"url": "u", "headers": {"Authorization": "Bearer sk-lit"}})),
            Some("headers.Authorization".into())
        );
        assert_eq!(refused(json!({"url": "http://u:p@h:1", "headers": {}})), Some("url".into()));
        assert_eq!(refused(json!({"command": ["curl", "https://u:p@h/x"]})), Some("command.1".into()));
        assert_eq!(refused(json!({"env": {"API_TOKEN": "env:T", "HOME": "/root"}})), None);
        assert_eq!(
            refused(json!({"headers": {"Authorization": "Bearer env:K", "Content-Type": "a/b"}})),
            None
        );
        // A manifest's `secretKeyRef.key` names a key of a Secret.
        let manifest =
            json!({"manifests": [{"env": [{"valueFrom": {"secretKeyRef": {"key": "HF_TOKEN"}}}]}]});
        assert_eq!(refused(manifest), None);
    }

    /// Property: over generated trees (depths, lists, key spellings), a tree is refused exactly
    /// when a literal sits at any depth under a secret-looking key, the path named is one of
    /// those literals', the value is never shown, and the same tree with references passes.
    #[test]
    fn the_nested_secret_rule_holds_over_generated_trees() {
        const SECRET: &[&str] = &[
            "api_key",
            "API-KEY",
            "ApiKeys",
            "x_auth_token",
            "credentials",
            "HF_TOKEN",
            "private-key",
            "client_secret",
            "authorization",
            "auth",
            "Password",
            "db_passwd",
        ];
        const PASSWORDS: &[&str] = &["Password", "db_passwd", "client_secret", "credentials"];
        const HARMLESS: &[&str] = &["model", "rate", "name", "items", "profile", "region", "size", "labels"];
        struct Gen {
            rng: crate::rng::Rng,
            /// Paths of literals under a secret key.
            bad: Vec<String>,
            n: u64,
        }
        impl Gen {
            /// A value at `path`; `secret`: under a secret key, `password`: under a password word.
            fn value(&mut self, path: &str, depth: u32, secret: bool, password: bool) -> Value {
                let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
                match self.rng.below(if depth >= 5 { 3 } else { 5 }) {
                    0..=2 => {
                        self.n += 1;
                        let literal = match self.rng.below(5) {
                            0 => Value::String(format!("env:VAR_{}", self.n)),
                            1 => Value::String(format!("lit3ral-{}", self.n)),
                            2 => json!(self.n * 1000 + 7),
                            3 => json!(true),
                            _ => json!(""),
                        };
                        let refused = match &literal {
                            Value::String(s) => secret && s.starts_with("lit3ral"),
                            Value::Number(_) => password,
                            _ => false,
                        };
                        if refused {
                            self.bad.push(path.to_string());
                        }
                        literal
                    }
                    3 => {
                        let n = self.rng.range_inclusive(1, 3);
                        Value::Array(
                            (0..n)
                                .map(|i| self.value(&join(&i.to_string()), depth + 1, secret, password))
                                .collect(),
                        )
                    }
                    _ => {
                        let mut m = Map::new();
                        for _ in 0..self.rng.range_inclusive(1, 3) {
                            let is_secret = self.rng.chance(0.5);
                            let pool = if is_secret { SECRET } else { HARMLESS };
                            let key = pool[self.rng.below(pool.len() as u64) as usize];
                            if m.contains_key(key) {
                                continue;
                            }
                            let under_password = password || PASSWORDS.contains(&key);
                            let v = self.value(&join(key), depth + 1, secret || is_secret, under_password);
                            m.insert(key.to_string(), v);
                        }
                        Value::Object(m)
                    }
                }
            }
        }
        fn references(v: &mut Value) {
            match v {
                Value::String(s) if s.starts_with("lit3ral") => *s = "env:FIXED".into(),
                Value::Number(_) => *v = json!("env:FIXED"),
                Value::Array(a) => a.iter_mut().for_each(references),
                Value::Object(m) => m.values_mut().for_each(references),
                _ => {}
            }
        }
        let (mut refused, mut passed) = (0, 0);
        for case in 0..2000 {
            let mut g = Gen { rng: crate::rng::Rng::new(case), bad: Vec::new(), n: 0 };
            let mut m = Map::new();
            m.insert("vars".into(), g.value("vars", 1, false, false));
            let mut values = Value::Object(m);
            match secret_written(&values) {
                Some((path, why)) => {
                    refused += 1;
                    assert!(
                        g.bad.contains(&path),
                        "case {case}: {path} is not a planted literal {:?}",
                        g.bad
                    );
                    assert!(!why.contains("lit3ral"), "case {case}: {why}");
                }
                None => {
                    passed += 1;
                    assert!(g.bad.is_empty(), "case {case}: {:?} were let through in {values}", g.bad);
                }
            }
            references(&mut values);
            assert_eq!(secret_written(&values), None, "case {case}: references pass: {values}");
        }
        assert!(
            refused > 200 && passed > 200,
            "both outcomes are exercised: {refused} refused, {passed} passed"
        );
    }
}
