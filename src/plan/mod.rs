//! What we will do: the pipeline's steps rendered from the variable tree, numbered, checked
//! (names, dependencies, phases, cycles, each kind's arguments) and linked into a petgraph DAG.
//! Teardown steps that undo the standup (`NN_stop_<step>`) are generated here, in reverse order.
//! Only a [`Plan`] reaches the executor; `benchflow plan` prints it.

use std::{collections::BTreeSet, fmt::Write as _};

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

/// The compiled plan (also `plan/plan.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
#[derive(Serialize, Deserialize)]
struct RawStep {
    number: usize,
    id: String,
    name: String,
    phase: Phase,
    kind: Kind,
    after: Vec<String>,
    when: Option<String>,
    enabled: bool,
    retries: u32,
    backoff_s: f64,
    timeout_s: Option<f64>,
    with: Value,
    describe: Vec<String>,
    hash: String,
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

fn hash(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Compiles the resolved inputs into a plan (the pipeline's text, when known, gives line
/// numbers in errors).
pub fn compile(resolved: &Resolved) -> Result<Plan, PlanError> {
    let pipeline_text = resolved.texts.get("pipeline").map(String::as_str);
    let origin = resolved.files.get("pipeline").cloned().unwrap_or_else(|| "pipeline".into());
    let lines = pipeline_text.map(spec::pipeline::step_lines).unwrap_or_default();
    // Where step `i` is written: `file:line` of its `name`.
    let at = |i: usize| match lines.get(i).copied().flatten() {
        Some(l) => format!("{origin}:{l}"),
        None => origin.clone(),
    };
    let specs = &resolved.pipeline.steps;
    if specs.is_empty() {
        return Err(PlanError::Invalid { origin, message: "the pipeline has no steps".into() });
    }
    // Wide enough for every number, generated teardown steps included (at most one per step).
    let width = (specs.len() * 2).to_string().len().max(2);
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let renderer = Renderer::new(&resolved.values);
    let inputs = Inputs { templates: &renderer, workload: resolved.workload.as_ref(), step: "" };
    let mut steps = Vec::with_capacity(specs.len() * 2);
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
        steps.push(render_step(s, i + 1, width, &names, specs, &inputs, &here)?);
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
            origin: at(specs.iter().position(|s| s.name == cycle[0]).unwrap_or(usize::MAX)),
            message: format!(
                "the steps depend on each other in a cycle: {}; remove one of these `after` entries",
                cycle.join(" → ")
            ),
        });
    }
    Ok(plan)
}

fn render_step(
    s: &StepSpec,
    number: usize,
    width: usize,
    names: &[&str],
    specs: &[StepSpec],
    inputs: &Inputs,
    here: &str,
) -> Result<PlannedStep, PlanError> {
    let renderer = inputs.templates;
    let mut after = Vec::new();
    for dep in &s.after {
        let Some(j) = names.iter().position(|n| n == dep) else {
            return Err(PlanError::Invalid {
                origin: here.to_string(),
                message: format!(
                    "step `{}` runs after `{dep}`, which is not a step of this pipeline{}",
                    s.name,
                    spec::suggest(dep, names.iter().copied())
                ),
            });
        };
        if specs[j].phase > s.phase {
            return Err(PlanError::Invalid {
                origin: here.to_string(),
                message: format!(
                    "step `{}` ({}) runs after `{dep}` ({}), a later phase; phases run standup, run, analyze, teardown",
                    s.name,
                    s.phase.as_str(),
                    specs[j].phase.as_str()
                ),
            });
        }
        after.push(format!("{:0width$}_{dep}", j + 1));
    }
    let origin = format!("{here} (step {})", s.name);
    let id = format!("{number:0width$}_{}", s.name);
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
    Ok(PlannedStep {
        number,
        id,
        name: s.name.clone(),
        phase: s.phase,
        kind: s.kind,
        after,
        when: s.when.clone(),
        enabled,
        retries: s.retries,
        backoff_s: s.backoff.0,
        timeout_s,
        hash: hash(&json!({"kind": s.kind, "with": with, "retries": s.retries, "timeout": timeout_s})),
        args,
        describe,
    })
}

impl Plan {
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
            } else if let Some(i) = self.steps.iter().position(|s| s.name == part || s.id == part) {
                out.insert(i);
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
