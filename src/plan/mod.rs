//! What we will do: the pipeline's steps rendered from the variable tree, numbered, checked
//! (names, dependencies, phases, cycles, each kind's arguments) and linked into a petgraph DAG.
//! Teardown steps that undo the standup (`NN_stop_<step>`) are generated here, in reverse order.
//! Only a [`Plan`] reaches the executor; `benchflow plan` prints it.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use petgraph::{algo::toposort, graph::DiGraph, visit::EdgeRef};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    resolve::Resolved,
    spec::{
        self,
        pipeline::{Kind, Phase, StepSpec},
    },
    steps::{self, Inputs, StepArgs, undo},
    template::Renderer,
};

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error("-s {selection}: {message}")]
    Selection { selection: String, message: String },
}

/// The compiled plan (also `plan/plan.json`, and what `benchflow plan -o json` prints; its
/// schema is `schemas/plan.schema.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Plan {
    pub format_version: u32,
    pub run_id: String,
    pub pipeline: String,
    pub description: Option<String>,
    pub steps: Vec<PlannedStep>,
}

/// One step, rendered. In `plan.json` its arguments are `with`, beside its `kind`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "RawStep", into = "RawStep")]
pub struct PlannedStep {
    pub number: usize,
    /// `NN_name`: the stable name used in the work directory.
    pub id: String,
    pub name: String,
    pub phase: Phase,
    pub kind: Kind,
    /// Ids of the steps that must succeed first.
    pub after: Vec<String>,
    pub when: Option<String>,
    /// For a copy of a `for_each` step: the step as written (`start_engine` of
    /// `start_engine_1`).
    pub group: Option<String>,
    /// False when `when` is false: the step is skipped.
    pub enabled: bool,
    pub retries: u32,
    pub backoff_s: f64,
    pub timeout_s: Option<f64>,
    /// The kind's arguments, typed (none when disabled).
    pub args: Option<StepArgs>,
    /// What the step will do, in words and command lines.
    pub describe: Vec<String>,
    /// Hash of everything that defines the step: a done step with the same hash is skipped.
    pub hash: String,
}

/// A step as `plan.json` holds it: the arguments as `with`, typed again by `kind` when read.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct RawStep {
    number: usize,
    id: String,
    name: String,
    phase: Phase,
    kind: Kind,
    after: Vec<String>,
    when: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    enabled: bool,
    retries: u32,
    backoff_s: f64,
    timeout_s: Option<f64>,
    with: Value,
    describe: Vec<String>,
    hash: String,
}

/// A step's schema is that of the form it is written in.
impl schemars::JsonSchema for PlannedStep {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PlannedStep".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        RawStep::json_schema(generator)
    }
}

impl From<PlannedStep> for RawStep {
    fn from(s: PlannedStep) -> RawStep {
        RawStep {
            with: s.with(),
            number: s.number,
            id: s.id,
            name: s.name,
            phase: s.phase,
            kind: s.kind,
            after: s.after,
            when: s.when,
            group: s.group,
            enabled: s.enabled,
            retries: s.retries,
            backoff_s: s.backoff_s,
            timeout_s: s.timeout_s,
            describe: s.describe,
            hash: s.hash,
        }
    }
}

impl TryFrom<RawStep> for PlannedStep {
    type Error = String;

    fn try_from(s: RawStep) -> Result<PlannedStep, String> {
        let args = match s.with {
            Value::Null => None,
            with => Some(StepArgs::parse(s.kind, with).map_err(|e| format!("step {}: {e}", s.id))?),
        };
        Ok(PlannedStep {
            args,
            number: s.number,
            id: s.id,
            name: s.name,
            phase: s.phase,
            kind: s.kind,
            after: s.after,
            when: s.when,
            group: s.group,
            enabled: s.enabled,
            retries: s.retries,
            backoff_s: s.backoff_s,
            timeout_s: s.timeout_s,
            describe: s.describe,
            hash: s.hash,
        })
    }
}

impl PlannedStep {
    /// The rendered arguments as `plan.json` shows them.
    pub fn with(&self) -> Value {
        self.args.as_ref().map_or(Value::Null, StepArgs::with)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
}

/// The sha256 of a file's contents (`missing` when it cannot be read), computed once per
/// (path, size, modification time) in a process: an experiment plans the same dataset for
/// every point.
fn content_digest(path: &Path) -> String {
    type Key = (PathBuf, u64, Option<std::time::SystemTime>);
    static SEEN: std::sync::Mutex<BTreeMap<Key, String>> = std::sync::Mutex::new(BTreeMap::new());
    let Ok(meta) = std::fs::metadata(path) else { return "missing".into() };
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    if let Some(d) = SEEN.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return d;
    }
    let digest: String = match std::fs::File::open(path) {
        Ok(mut f) => {
            // Streamed: a dataset file may be large.
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            let read = loop {
                match std::io::Read::read(&mut f, &mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => h.update(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            match read {
                Ok(()) => h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
                Err(_) => "unreadable".into(),
            }
        }
        Err(_) => "unreadable".into(),
    };
    if let Ok(mut m) = SEEN.lock() {
        m.insert(key, digest.clone());
    }
    digest
}

fn hash(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// [`spec::pipeline::step_lines`], parsed once per pipeline text (an experiment compiles every
/// point's plan from the same pipeline).
fn step_lines(text: &str) -> Vec<Option<u64>> {
    type Seen = Vec<(String, Vec<Option<u64>>)>;
    static SEEN: std::sync::Mutex<Seen> = std::sync::Mutex::new(Vec::new());
    let seen = || SEEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, lines)) = seen().iter().find(|(t, _)| t == text) {
        return lines.clone();
    }
    let lines = spec::pipeline::step_lines(text);
    let mut all = seen();
    if all.len() >= 8 {
        all.remove(0);
    }
    all.push((text.to_string(), lines.clone()));
    lines
}

/// Compiles the resolved inputs into a plan (the pipeline's text, when known, gives line
/// numbers in errors).
pub fn compile(resolved: &Resolved) -> Result<Plan, PlanError> {
    let pipeline_text = resolved.texts.get("pipeline").map(String::as_str);
    let origin = resolved.files.get("pipeline").cloned().unwrap_or_else(|| "pipeline".into());
    let lines = pipeline_text.map(step_lines).unwrap_or_default();
    // Where step `i` is written: `file:line` of its `name`.
    let at = |i: usize| match lines.get(i).copied().flatten() {
        Some(l) => format!("{origin}:{l}"),
        None => origin.clone(),
    };
    let specs = &resolved.pipeline.steps;
    if specs.is_empty() {
        return Err(PlanError::Invalid { origin, message: "the pipeline has no steps".into() });
    }
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let renderer = Renderer::new(&resolved.values);
    for (i, s) in specs.iter().enumerate() {
        let here = at(i);
        if !valid_name(&s.name) {
            return Err(PlanError::Invalid {
                origin: here,
                message: format!("step name `{}`: use lowercase letters, digits and `_`", s.name),
            });
        }
        if names[..i].contains(&s.name.as_str()) {
            return Err(PlanError::Invalid {
                origin: here,
                message: format!("step `{}` is defined twice", s.name),
            });
        }
        if s.kind == Kind::Undo {
            return Err(PlanError::Invalid {
                origin: here,
                message: "kind `undo` is generated by the planner for teardown; it cannot be written".into(),
            });
        }
    }
    let copies = expand(specs, &renderer, &at)?;
    // Wide enough for every number, generated teardown steps included (at most one per step).
    let width = (copies.len() * 2).to_string().len().max(2);
    let mut steps = Vec::with_capacity(copies.len() * 2);
    for (i, c) in copies.iter().enumerate() {
        let copy_renderer;
        let templates = match &c.item {
            None => &renderer,
            Some((item, index)) => {
                let mut tree = resolved.values.clone();
                if let Some(m) = tree.as_object_mut() {
                    m.insert("item".into(), item.clone());
                    m.insert("index".into(), json!(index));
                }
                copy_renderer = Renderer::new(&tree);
                &copy_renderer
            }
        };
        let inputs = Inputs { templates, workload: resolved.workload.as_ref(), step: "" };
        let step = render_step(c, i + 1, width, &copies, specs, &inputs, &at(c.spec))?;
        // A pipeline is input too: what it writes in a step follows the secret rule.
        if let Some((path, why)) = step.args.as_ref().and_then(|a| crate::resolve::secret_in_step(&a.with()))
        {
            return Err(PlanError::Invalid {
                origin: format!("{} (step {})", at(c.spec), step.name),
                message: format!("`with.{path}` {why}"),
            });
        }
        steps.push(step);
    }
    // Teardown: undo every standup step that leaves something behind, latest first. A disabled
    // step's kind still gets its (disabled) teardown step, so numbering does not depend on it.
    let undoable: Vec<(usize, String)> = (0..steps.len())
        .filter(|&i| steps[i].phase == Phase::Standup)
        .filter_map(|i| {
            let does = match &steps[i].args {
                Some(args) => args.teardown(),
                None => steps::leaves_something(steps[i].kind).then(|| format!("undo {}", steps[i].id)),
            };
            does.map(|d| (i, d))
        })
        .collect();
    let mut previous: Option<String> = None;
    for (i, does) in undoable.into_iter().rev() {
        let number = steps.len() + 1;
        let target = steps[i].clone();
        let name = format!("stop_{}", target.name);
        let id = format!("{number:0width$}_{name}");
        let args = StepArgs::Undo(undo::Args { step: target.id.clone(), does });
        let with = args.with();
        steps.push(PlannedStep {
            number,
            id: id.clone(),
            name,
            phase: Phase::Teardown,
            kind: Kind::Undo,
            after: previous.iter().cloned().collect(),
            when: None,
            group: target.group.as_ref().map(|g| format!("stop_{g}")),
            enabled: target.enabled,
            retries: 0,
            backoff_s: 1.0,
            timeout_s: None,
            describe: args.describe(),
            hash: hash(&json!({"kind": "undo", "with": with, "target": target.hash})),
            args: target.enabled.then_some(args),
        });
        previous = Some(id);
    }
    let plan = Plan {
        format_version: crate::resolve::FORMAT_VERSION,
        run_id: resolved.get("run.id").and_then(Value::as_str).unwrap_or_default().to_string(),
        pipeline: origin.clone(),
        description: resolved.pipeline.description.clone(),
        steps,
    };
    if let Err(cycle) = plan.order() {
        return Err(PlanError::Invalid {
            origin: at(copies.iter().find(|c| c.name == cycle[0]).map_or(usize::MAX, |c| c.spec)),
            message: format!(
                "the steps depend on each other in a cycle: {}; remove one of these `after` entries",
                cycle.join(" → ")
            ),
        });
    }
    Ok(plan)
}

/// One step of the plan as the pipeline asks for it: a step as written, or one copy of a
/// `for_each` step (named `<name>_<index>`, with its item).
struct Copy {
    /// The step as written (its index in the pipeline).
    spec: usize,
    name: String,
    item: Option<(Value, usize)>,
}

/// The pipeline's steps with each `for_each` step replaced by its copies.
fn expand(
    specs: &[StepSpec],
    renderer: &Renderer,
    at: &dyn Fn(usize) -> String,
) -> Result<Vec<Copy>, PlanError> {
    let mut copies: Vec<Copy> = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let Some(each) = &s.for_each else {
            copies.push(Copy { spec: i, name: s.name.clone(), item: None });
            continue;
        };
        let origin = format!("{} (step {}) for_each", at(i), s.name);
        let items = match renderer.render_value(&origin, each)? {
            Value::Array(items) => items,
            Value::Number(n) if n.as_u64().is_some() => {
                (0..n.as_u64().unwrap_or(0)).map(|k| json!(k)).collect()
            }
            other => {
                return Err(PlanError::Invalid {
                    origin,
                    message: format!("gives {other}; it must give a list, or a whole number of copies"),
                });
            }
        };
        for (index, item) in items.into_iter().enumerate() {
            copies.push(Copy { spec: i, name: format!("{}_{index}", s.name), item: Some((item, index)) });
        }
    }
    for (k, c) in copies.iter().enumerate() {
        if let Some(other) = copies[..k].iter().find(|o| o.name == c.name) {
            return Err(PlanError::Invalid {
                origin: at(c.spec),
                message: format!(
                    "step `{}` has the name of a copy of `{}` (a `for_each` step's copies are `<name>_<index>`); rename one",
                    c.name,
                    specs[if specs[c.spec].for_each.is_some() { c.spec } else { other.spec }].name
                ),
            });
        }
    }
    Ok(copies)
}

fn render_step(
    c: &Copy,
    number: usize,
    width: usize,
    copies: &[Copy],
    specs: &[StepSpec],
    inputs: &Inputs,
    here: &str,
) -> Result<PlannedStep, PlanError> {
    let s = &specs[c.spec];
    let renderer = inputs.templates;
    let mut after = Vec::new();
    for dep in &s.after {
        // A step by name waits for all its copies; a copy may be named alone.
        let of_dep: Vec<usize> = (0..copies.len())
            .filter(|&j| specs[copies[j].spec].name == *dep || copies[j].name == *dep)
            .collect();
        if of_dep.is_empty() {
            let names = copies.iter().map(|c| c.name.as_str()).chain(specs.iter().map(|s| s.name.as_str()));
            return Err(PlanError::Invalid {
                origin: here.to_string(),
                message: format!(
                    "step `{}` runs after `{dep}`, which is not a step of this pipeline{}",
                    s.name,
                    spec::suggest(dep, names)
                ),
            });
        }
        for j in of_dep {
            let other = &specs[copies[j].spec];
            if other.phase > s.phase {
                return Err(PlanError::Invalid {
                    origin: here.to_string(),
                    message: format!(
                        "step `{}` ({}) runs after `{dep}` ({}), a later phase; phases run standup, run, analyze, teardown",
                        s.name,
                        s.phase.as_str(),
                        other.phase.as_str()
                    ),
                });
            }
            after.push(format!("{:0width$}_{}", j + 1, copies[j].name));
        }
    }
    let origin = format!("{here} (step {})", c.name);
    let id = format!("{number:0width$}_{}", c.name);
    let inputs = Inputs { step: &id, ..*inputs };
    let enabled = match &s.when {
        Some(expr) => renderer.condition(&format!("{origin} when"), expr)?,
        None => true,
    };
    let (args, describe) = if enabled {
        let with = renderer.render_value(&origin, &Value::Object(s.with.clone().into_iter().collect()))?;
        let invalid = |message| PlanError::Invalid { origin: origin.clone(), message };
        let mut args = StepArgs::parse(s.kind, with).map_err(invalid)?;
        args.compile(&inputs).map_err(invalid)?;
        let describe = args.describe();
        (Some(args), describe)
    } else {
        (None, vec![format!("skipped: `{}` is false", s.when.as_deref().unwrap_or_default())])
    };
    let with = args.as_ref().map_or(Value::Null, StepArgs::with);
    let timeout_s = s.timeout.map(|t| t.0);
    let mut identity = json!({"kind": s.kind, "with": with, "retries": s.retries, "timeout": timeout_s});
    let reads: Vec<Value> = args
        .as_ref()
        .map(StepArgs::reads)
        .unwrap_or_default()
        .iter()
        .map(|p| json!(content_digest(p)))
        .collect();
    if !reads.is_empty() {
        identity["reads"] = Value::Array(reads);
    }
    Ok(PlannedStep {
        number,
        id,
        name: c.name.clone(),
        phase: s.phase,
        kind: s.kind,
        after,
        when: s.when.clone(),
        group: c.item.is_some().then(|| s.name.clone()),
        enabled,
        retries: s.retries,
        backoff_s: s.backoff.0,
        timeout_s,
        hash: hash(&identity),
        args,
        describe,
    })
}

impl Plan {
    /// A plan of teardown alone, one undo step per record (`(step, record)`), latest step
    /// first: what `teardown` walks when `plan.json` is lost, so that what a record names is
    /// still stopped.
    pub(crate) fn undoing(run_id: &str, records: &[(String, steps::UndoRecord)]) -> Plan {
        let mut ids: Vec<&(String, steps::UndoRecord)> = records.iter().collect();
        ids.sort_by(|a, b| b.0.cmp(&a.0));
        let mut steps: Vec<PlannedStep> = Vec::new();
        for (n, (target, record)) in ids.into_iter().enumerate() {
            let args = StepArgs::Undo(undo::Args { step: target.clone(), does: record.describe() });
            let name = format!("stop_{target}");
            steps.push(PlannedStep {
                number: n + 1,
                id: format!("{:02}_{name}", n + 1),
                name,
                phase: Phase::Teardown,
                kind: Kind::Undo,
                after: steps.last().map(|p| p.id.clone()).into_iter().collect(),
                when: None,
                group: None,
                enabled: true,
                retries: 0,
                backoff_s: 1.0,
                timeout_s: None,
                describe: args.describe(),
                hash: hash(&json!({"kind": "undo", "with": args.with(), "target": target})),
                args: Some(args),
            });
        }
        Plan {
            format_version: crate::resolve::FORMAT_VERSION,
            run_id: run_id.to_string(),
            pipeline: "(teardown from the undo records)".into(),
            description: None,
            steps,
        }
    }

    /// The DAG: one node per step (weight = index), an edge from each dependency.
    pub fn graph(&self) -> DiGraph<usize, ()> {
        let mut g = DiGraph::with_capacity(self.steps.len(), self.steps.len());
        let nodes: Vec<_> = (0..self.steps.len()).map(|i| g.add_node(i)).collect();
        for (i, s) in self.steps.iter().enumerate() {
            for dep in &s.after {
                if let Some(j) = self.index(dep) {
                    g.add_edge(nodes[j], nodes[i], ());
                }
            }
        }
        g
    }

    /// Each step's dependencies, by index (the DAG's incoming edges).
    pub fn dependencies(&self) -> Vec<Vec<usize>> {
        let graph = self.graph();
        (0..self.steps.len())
            .map(|i| {
                graph
                    .neighbors_directed(petgraph::graph::NodeIndex::new(i), petgraph::Direction::Incoming)
                    .map(|x| graph[x])
                    .collect()
            })
            .collect()
    }

    /// Step indices in dependency order, or the names on a cycle.
    pub fn order(&self) -> Result<Vec<usize>, Vec<String>> {
        let g = self.graph();
        match toposort(&g, None) {
            Ok(order) => Ok(order.into_iter().map(|n| g[n]).collect()),
            Err(cycle) => {
                // The strongly connected component holding the reported node is the cycle; walk
                // it along dependencies until a step repeats.
                let scc = petgraph::algo::tarjan_scc(&g)
                    .into_iter()
                    .find(|c| c.contains(&cycle.node_id()))
                    .unwrap_or_else(|| vec![cycle.node_id()]);
                let mut path = vec![cycle.node_id()];
                loop {
                    let last = *path.last().unwrap_or(&cycle.node_id());
                    let next = g
                        .edges_directed(last, petgraph::Direction::Incoming)
                        .map(|e| e.source())
                        .find(|n| scc.contains(n));
                    match next {
                        Some(n) if path.contains(&n) => {
                            let start = path.iter().position(|&p| p == n).unwrap_or(0);
                            let mut names: Vec<String> =
                                path[start..].iter().rev().map(|&i| self.steps[g[i]].name.clone()).collect();
                            names.push(names[0].clone());
                            return Err(names);
                        }
                        Some(n) => path.push(n),
                        None => return Err(vec![self.steps[g[cycle.node_id()]].name.clone()]),
                    }
                }
            }
        }
    }

    /// The index of a step by id (`02_smoke_test`).
    pub fn index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// Parses `-s` (`3-5`, `2,7`, `smoke_test`, `02_smoke_test`, mixed) into step indices.
    pub fn select(&self, selection: &str) -> Result<BTreeSet<usize>, PlanError> {
        let bad = |message: String| PlanError::Selection { selection: selection.to_string(), message };
        let by_number = |n: &str| -> Result<usize, PlanError> {
            let n: usize = n.trim().parse().map_err(|_| bad(format!("`{n}` is not a step number")))?;
            self.steps.iter().position(|s| s.number == n).ok_or_else(|| {
                bad(format!("there is no step {n}; steps are numbered 1 to {}", self.steps.len()))
            })
        };
        let mut out = BTreeSet::new();
        for part in selection.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.chars().all(|c| c.is_ascii_digit()) {
                out.insert(by_number(part)?);
            } else if let Some((a, b)) = part.split_once('-')
                && a.trim().chars().all(|c| c.is_ascii_digit())
                && b.trim().chars().all(|c| c.is_ascii_digit())
            {
                let (a, b) = (by_number(a)?, by_number(b)?);
                if a > b {
                    return Err(bad(format!("range `{part}` goes backwards")));
                }
                out.extend(a..=b);
            } else if self
                .steps
                .iter()
                .any(|s| s.name == part || s.id == part || s.group.as_deref() == Some(part))
            {
                // A `for_each` step by name: all its copies.
                out.extend((0..self.steps.len()).filter(|&i| {
                    let s = &self.steps[i];
                    s.name == part || s.id == part || s.group.as_deref() == Some(part)
                }));
            } else {
                return Err(bad(format!(
                    "no step named `{part}`{}; steps: {}",
                    spec::suggest(part, self.steps.iter().map(|s| s.name.as_str())),
                    self.steps.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        if out.is_empty() {
            return Err(bad("selects no step".into()));
        }
        Ok(out)
    }

    /// The table `benchflow plan` prints.
    pub fn table(&self) -> String {
        let wid = self.steps.iter().map(|s| s.id.len()).max().unwrap_or(4).max(4);
        let mut out = format!("{:<wid$}  {:<8}  {:<9}  {:<24}  does\n", "step", "phase", "kind", "after");
        for s in &self.steps {
            let after = if s.after.is_empty() { "-".to_string() } else { s.after.join(",") };
            let does = s.describe.first().cloned().unwrap_or_default();
            let does = if s.enabled { does } else { format!("(skipped) {does}") };
            let _ = writeln!(
                out,
                "{:<wid$}  {:<8}  {:<9}  {:<24}  {does}",
                s.id,
                s.phase.as_str(),
                s.kind.as_str(),
                after
            );
        }
        out
    }

    /// Graphviz: one cluster per phase, an edge per dependency.
    pub fn dot(&self) -> String {
        let mut out =
            String::from("digraph plan {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n");
        for phase in Phase::ALL {
            let members: Vec<&PlannedStep> = self.steps.iter().filter(|s| s.phase == phase).collect();
            if members.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  subgraph cluster_{0} {{\n    label=\"{0}\";", phase.as_str());
            for s in members {
                let style = if s.enabled { "" } else { ", style=dashed" };
                let _ = writeln!(out, "    \"{}\" [label=\"{}\\n{}\"{style}];", s.id, s.id, s.kind.as_str());
            }
            out.push_str("  }\n");
        }
        for s in &self.steps {
            for dep in &s.after {
                let _ = writeln!(out, "  \"{dep}\" -> \"{}\";", s.id);
            }
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::spec::pipeline::Pipeline;

    #[test]
    fn a_file_s_digest_is_its_sha256_streamed_over_many_reads() {
        let dir = std::env::temp_dir().join(format!("bf-digest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // FIPS 180-2's vector, and a file larger than the read buffer (a million 'a's).
        std::fs::write(dir.join("abc"), "abc").unwrap();
        std::fs::write(dir.join("a"), vec![b'a'; 1_000_000]).unwrap();
        assert_eq!(
            content_digest(&dir.join("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            content_digest(&dir.join("a")),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
        assert_eq!(content_digest(&dir.join("none")), "missing");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn resolved(pipeline: &str) -> Resolved {
        Resolved {
            format_version: 1,
            benchflow_version: "0".into(),
            request: Default::default(),
            files: BTreeMap::from([("pipeline".into(), "p.yaml".into())]),
            values: json!({"run": {"id": "r1"}, "x": 1, "cmd": ["true"]}),
            sources: BTreeMap::new(),
            pipeline: spec::from_yaml::<Pipeline>(pipeline, "p.yaml", &[]).unwrap(),
            workload: None,
            texts: BTreeMap::from([("pipeline".to_string(), pipeline.to_string())]),
        }
    }

    fn exec(name: &str, after: &str) -> String {
        format!(
            "  - {{ name: {name}, phase: run, kind: exec, after: [{after}], with: {{ command: \"{{{{ cmd }}}}\" }} }}\n"
        )
    }

    #[test]
    fn numbers_links_and_generates_teardown() {
        let p = "steps:\n  - { name: up, phase: standup, kind: spawn, with: { command: [a], ready_url: 'http://x/health' } }\n"
            .to_string()
            + &exec("a", "up")
            + &exec("b", "up")
            + &exec("c", "a, b");
        let plan = compile(&resolved(&p)).unwrap();
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["01_up", "02_a", "03_b", "04_c", "05_stop_up"]);
        assert_eq!(plan.steps[3].after, ["02_a", "03_b"]);
        assert_eq!(plan.steps[4].phase, Phase::Teardown);
        let order = plan.order().unwrap();
        assert!(order.iter().position(|&i| i == 0) < order.iter().position(|&i| i == 3));
        assert_eq!(plan.select("2-3").unwrap(), BTreeSet::from([1, 2]));
        assert_eq!(plan.select("1,c").unwrap(), BTreeSet::from([0, 3]));
        let e = plan.select("smoke").unwrap_err().to_string();
        assert!(e.contains("no step named `smoke`"), "{e}");
        assert!(plan.select("9").unwrap_err().to_string().contains("numbered 1 to 5"));
        assert!(plan.dot().contains("\"02_a\" -> \"04_c\";"));
    }

    #[test]
    fn a_for_each_step_becomes_one_step_per_item_each_with_its_undo() {
        let mut r = resolved(
            "steps:\n  - name: engine\n    phase: standup\n    kind: spawn\n    for_each: \"{{ ports }}\"\n    with: { command: [sim, \"{{ item }}\"], ready_url: 'http://x:{{ item }}/health' }\n  - { name: router, phase: standup, kind: spawn, after: [engine], with: { command: [r], ready_url: 'http://r/health' } }\n  - { name: one, phase: run, kind: exec, after: [engine_1], for_each: 2, with: { command: [echo, \"{{ index }}\"] } }\n",
        );
        r.values["ports"] = json!([8001, 8002, 8003]);
        let plan = compile(&r).unwrap();
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "01_engine_0",
                "02_engine_1",
                "03_engine_2",
                "04_router",
                "05_one_0",
                "06_one_1",
                "07_stop_router",
                "08_stop_engine_2",
                "09_stop_engine_1",
                "10_stop_engine_0"
            ]
        );
        // Each copy has its item; `after: [engine]` waits for all, `engine_1` for that one.
        assert_eq!(plan.steps[1].with()["command"], json!(["sim", "8002"]));
        assert_eq!(plan.steps[2].with()["ready_url"], json!("http://x:8003/health"));
        assert_eq!(plan.steps[3].after, ["01_engine_0", "02_engine_1", "03_engine_2"]);
        assert_eq!(plan.steps[5].after, ["02_engine_1"]);
        assert_eq!(plan.steps[5].with()["command"], json!(["echo", "1"]));
        assert_eq!(plan.steps[0].group.as_deref(), Some("engine"));
        assert_ne!(plan.steps[0].hash, plan.steps[1].hash);
        // Teardown: the router first, then the engines, latest first.
        assert_eq!(plan.steps[7].after, ["07_stop_router"]);
        assert_eq!(plan.select("engine").unwrap(), BTreeSet::from([0, 1, 2]));
        assert_eq!(plan.select("stop_engine").unwrap(), BTreeSet::from([7, 8, 9]));
        // plan.json keeps the copies (and reads them back).
        let back: Plan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
        assert_eq!(back, plan);

        r.values["ports"] = json!("8001");
        let e = compile(&r).unwrap_err().to_string();
        assert!(
            e.starts_with("p.yaml:2 (step engine) for_each: ") && e.contains("a list, or a whole number"),
            "{e}"
        );
        let e = compile(&resolved(
            "steps:\n  - { name: a, phase: run, kind: exec, for_each: 2, with: { command: [x] } }\n  - { name: a_1, phase: run, kind: exec, with: { command: [x] } }\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("`a_1` has the name of a copy of `a`"), "{e}");
    }

    #[test]
    fn cycles_unknown_dependencies_and_phases_are_errors() {
        let p = "steps:\n".to_string() + &exec("a", "c") + &exec("b", "a") + &exec("c", "b");
        let e = compile(&resolved(&p)).unwrap_err().to_string();
        assert!(
            ["a → b → c → a", "b → c → a → b", "c → a → b → c"].iter().any(|c| e.contains(c))
                && e.contains("cycle"),
            "{e}"
        );
        let p = "steps:\n".to_string() + &exec("a", "bb");
        let e = compile(&resolved(&p)).unwrap_err().to_string();
        assert!(e.starts_with("p.yaml:2:") && e.contains("`bb`"), "{e}");
        let p = "steps:\n  - { name: up, phase: standup, kind: exec, after: [a], with: { command: [x] } }\n"
            .to_string()
            + &exec("a", "");
        let e = compile(&resolved(&p)).unwrap_err().to_string();
        assert!(e.contains("a later phase"), "{e}");
    }

    #[test]
    fn templates_and_conditions() {
        let p = "steps:\n  - { name: a, phase: run, kind: exec, when: 'x == 2', with: { command: '{{ nope }}' } }\n  - { name: b, phase: run, kind: exec, with: { command: ['{{ missing.key }}'] } }\n";
        let e = compile(&resolved(p)).unwrap_err().to_string();
        assert!(e.contains("step b") && e.contains("`missing` is undefined"), "{e}");
        let p = "steps:\n  - { name: a, phase: run, kind: exec, when: 'x == 2', with: { command: '{{ nope }}' } }\n";
        let plan = compile(&resolved(p)).unwrap();
        assert!(!plan.steps[0].enabled);
    }
}
