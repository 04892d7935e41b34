//! From an experiment file to what will run: every point resolved and compiled (files read
//! once), then grouped by its stack: the hash of its standup steps. A factor is a *setup*
//! factor when changing it alone changes that hash; the others are *run* factors.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    ExperimentError, between,
    design::{self, Point},
};
use crate::{
    plan::{self, Plan},
    resolve::{self, Layer, Loaded, Request, Resolved, RunContext},
    session,
    spec::{
        self,
        experiment::{Design, Experiment, Search},
        pipeline::Phase,
    },
};

/// The experiment file as read.
#[derive(Debug, Clone)]
pub(crate) struct ExperimentFile {
    /// Where it was found (`experiments/sweep.yaml`, `builtin:experiments/rate-sweep.yaml`).
    pub origin: String,
    pub text: String,
    pub spec: Experiment,
}

impl ExperimentFile {
    /// Finds (by name or path) and parses an experiment file.
    pub(crate) fn find(name: &str) -> Result<ExperimentFile, ExperimentError> {
        let source = spec::find("experiment", "experiments", name)?;
        ExperimentFile::parse(source.origin, source.text)
    }

    pub(crate) fn parse(origin: String, text: String) -> Result<ExperimentFile, ExperimentError> {
        let spec = Experiment::from_yaml(&text, &origin)?;
        Ok(ExperimentFile { origin, text, spec })
    }

    /// `file:line` of a factor (or just the file).
    fn at(&self, section: &str, key: &str) -> String {
        match Experiment::line_of(&self.text, section, key) {
            Some(line) => format!("{}:{line}", self.origin),
            None => self.origin.clone(),
        }
    }
}

/// A point with its request, stack hash and plan hash.
type Compiled = (Point, Request, String, String);

/// One point, compiled.
#[derive(Debug, Clone)]
pub(crate) struct PlannedPoint {
    pub point: Point,
    /// The run of this point: the base files, the experiment's layers, the point's values.
    pub request: Request,
    /// Index into [`ExperimentPlan::stacks`].
    pub stack: usize,
    /// Hash of every step of the point's plan: a point done with the same hash is not re-run.
    pub hash: String,
}

/// The points that share one stack.
#[derive(Debug, Clone)]
pub(crate) struct Stack {
    /// `s1`, `s2`, … in order of first use.
    pub id: String,
    /// Hash of the standup steps.
    pub hash: String,
    /// Indices into [`ExperimentPlan::points`], in design order.
    pub points: Vec<usize>,
    /// The setup factors' values on this stack.
    pub setup: Vec<(String, Value)>,
}

/// What `benchflow experiment` will do.
#[derive(Debug, Clone)]
pub(crate) struct ExperimentPlan {
    pub file: ExperimentFile,
    pub points: Vec<PlannedPoint>,
    pub stacks: Vec<Stack>,
    /// Factor paths in the file's order, with whether each changes the stack.
    pub factors: Vec<(String, bool)>,
    /// The files read once (the runner resolves each point from them again).
    pub loaded: Loaded,
    /// The experiment directory.
    pub root: PathBuf,
    /// The command line's `--set`s.
    pub sets: Vec<String>,
}

/// The run context every point is compiled with at planning time: the same for all points of
/// all experiments, so two points' steps hash alike exactly when their inputs are alike (the
/// benchflow binary included): what groups points into stacks, and what a results store is
/// keyed by.
fn planning_context() -> RunContext {
    RunContext {
        id: "plan".into(),
        workdir: PathBuf::from("/"),
        bin: crate::session::this_binary(),
        ports: crate::resolve::Ports::Placeholder,
    }
}

/// `KEY=VALUE` as `--set` reads it (the value as JSON, which YAML reads back the same).
fn assignment(path: &str, v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() && serde_saphyr::from_str::<Value>(s).ok().as_ref() == Some(v) => {
            format!("{path}={s}")
        }
        v => format!("{path}={v}"),
    }
}

/// The layers of a point: the base's `set`, the constants, the point's values.
pub(crate) fn layers(file: &ExperimentFile, point: &Point) -> Vec<Layer> {
    let e = &file.spec;
    let mut out = Vec::new();
    if !e.base.set.is_empty() {
        out.push(Layer { origin: format!("{} base.set", file.origin), sets: e.base.set.clone() });
    }
    if !e.constants.is_empty() {
        out.push(Layer {
            origin: format!("{} constants", file.origin),
            sets: e.constants.iter().map(|(k, v)| assignment(k, v)).collect(),
        });
    }
    out.push(Layer {
        origin: format!("{} point {}", file.origin, point.id),
        sets: point.values.iter().map(|(k, v)| assignment(k, v)).collect(),
    });
    out
}

/// The request of a point.
pub(crate) fn request(file: &ExperimentFile, point: &Point, sets: &[String]) -> Request {
    let b = &file.spec.base;
    Request {
        scenario: b.scenario.clone(),
        harness: b.harness.clone(),
        workload: b.workload.clone(),
        sets: sets.to_vec(),
        layers: layers(file, point),
    }
}

/// Hash of the standup steps of a plan (what defines its stack).
pub(crate) fn stack_hash(plan: &Plan) -> String {
    let mut h = Sha256::new();
    for s in plan.steps.iter().filter(|s| s.phase == Phase::Standup) {
        h.update(s.id.as_bytes());
        h.update([0, u8::from(s.enabled)]);
        h.update(s.hash.as_bytes());
    }
    hex(&h.finalize()[..8])
}

/// Hash of every step of a plan.
fn plan_hash(plan: &Plan) -> String {
    let mut h = Sha256::new();
    for s in &plan.steps {
        h.update(s.id.as_bytes());
        h.update([0, u8::from(s.enabled)]);
        h.update(s.hash.as_bytes());
    }
    hex(&h.finalize()[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every leaf path of a tree (for suggestions).
fn leaf_paths(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                leaf_paths(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
            }
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_object) => {
            for (i, v) in a.iter().enumerate() {
                leaf_paths(&format!("{prefix}.{i}"), v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// A path names a variable of the run when it exists, or when its parent is a map that takes
/// any key (`vars.x`, `engine.env.NAME`).
fn check_variable(values: &Value, path: &str, at: &str) -> Result<(), ExperimentError> {
    if resolve::lookup(values, path).is_some() {
        return Ok(());
    }
    if let Some((parent, _)) = path.rsplit_once('.')
        && matches!(parent.rsplit('.').next(), Some("vars" | "env" | "headers" | "extra_body" | "args"))
        && resolve::lookup(values, parent).is_some_and(Value::is_object)
    {
        return Ok(());
    }
    let mut known = Vec::new();
    leaf_paths("", values, &mut known);
    let hint = spec::suggest(path, known.iter().map(String::as_str));
    Err(ExperimentError::Invalid {
        at: at.to_string(),
        message: format!(
            "`{path}` is not a variable of this run{hint} (`benchflow plan` with the base files lists \
             them in inputs/resolved.yaml)"
        ),
    })
}

fn compile(loaded: &Loaded, request: &Request, ctx: &RunContext) -> Result<(Resolved, Plan), String> {
    let resolved = loaded.resolve(request, ctx).map_err(|e| e.to_string())?;
    let plan = plan::compile(&resolved).map_err(|e| e.to_string())?;
    Ok((resolved, plan))
}

/// Plans an experiment into `root`: reads nothing there and writes nothing. `sets` are the
/// command line's `--set`s (above every point); `yes` allows a design beyond `max_points`.
/// The between-points steps compile on the base's values and can start (their programs are
/// installed), so a bad action stops the experiment before its first point, not after it.
fn check_between(file: &ExperimentFile, base: &Resolved) -> Result<(), ExperimentError> {
    let invalid = |message: String| {
        let line = file.text.lines().position(|l| l.starts_with("between_points")).map(|n| n + 1);
        let at = line.map_or_else(|| file.origin.clone(), |n| format!("{}:{n}", file.origin));
        ExperimentError::Invalid { at, message: format!("between_points: {message}") }
    };
    let plan = between::plan(&file.spec.between_points, base).map_err(|e| invalid(e.to_string()))?;
    if let Some(plan) = plan {
        session::preflight(&plan, |_| true, false).map_err(|e| invalid(e.to_string()))?;
    }
    Ok(())
}

pub(crate) fn plan(
    file: ExperimentFile,
    root: &Path,
    sets: &[String],
    yes: bool,
) -> Result<ExperimentPlan, ExperimentError> {
    let e = &file.spec;
    check_size(&file, yes)?;
    check_sets(&file, sets)?;
    let points = if e.search.is_some() { Vec::new() } else { design::points(e) };
    let ctx = planning_context();
    let base = Request {
        scenario: e.base.scenario.clone(),
        harness: e.base.harness.clone(),
        workload: e.base.workload.clone(),
        sets: sets.to_vec(),
        layers: Vec::new(),
    };
    let loaded = resolve::load(&base)?;
    // The base alone (its set and the constants): every factor must name one of its variables.
    let mut base_req = base.clone();
    base_req.layers = layers(&file, &base_point());
    let base_resolved = loaded.resolve(&base_req, &ctx)?;
    for (path, at) in &named_paths(&file) {
        check_variable(&base_resolved.values, path, at)?;
    }
    check_between(&file, &base_resolved)?;

    let mut out = ExperimentPlan {
        file,
        points: Vec::with_capacity(points.len()),
        stacks: Vec::new(),
        factors: Vec::new(),
        loaded,
        root: root.to_path_buf(),
        sets: sets.to_vec(),
    };
    for compiled in out.compile_all(points) {
        let (point, request, stack, hash) = compiled?;
        out.put(point, request, stack, hash);
    }
    check_distinct(&out)?;
    out.factors = out.classify_factors(&ctx)?;
    for s in &mut out.stacks {
        let first = &out.points[s.points[0]].point;
        s.setup = first
            .values
            .iter()
            .filter(|(k, _)| out.factors.iter().any(|(f, setup)| f == k && *setup))
            .cloned()
            .collect();
    }
    // What the analysis will compare is known now, not after every point has run.
    if out.file.spec.compare {
        super::compare::compared_factor(&out)?;
    }
    Ok(out)
}

/// Refuses two points of a full design or of treatments that would run the same inputs (the
/// same plan hash: `2s` and `2000ms`, two treatments setting the same values): the second would
/// measure the first again. A random design may draw a point twice; that is its nature.
fn check_distinct(plan: &ExperimentPlan) -> Result<(), ExperimentError> {
    use crate::spec::experiment::Design;
    if !matches!(plan.file.spec.design, Design::Full | Design::Treatments(_)) {
        return Ok(());
    }
    let mut seen: std::collections::HashMap<&str, &PlannedPoint> = std::collections::HashMap::new();
    for p in &plan.points {
        if let Some(first) = seen.insert(&p.hash, p) {
            return Err(ExperimentError::Invalid {
                at: plan.file.origin.clone(),
                message: format!(
                    "points {} ({}) and {} ({}) would run the same inputs: a level or treatment is \
                     given twice, under another spelling; keep one",
                    first.point.id,
                    first.point.label(),
                    p.point.id,
                    p.point.label()
                ),
            });
        }
    }
    Ok(())
}

/// Refuses a design larger than `max_points` unless `yes` allows it.
fn check_size(file: &ExperimentFile, yes: bool) -> Result<(), ExperimentError> {
    let e = &file.spec;
    let Some(n) = design::size(e) else {
        return Err(ExperimentError::Invalid {
            at: file.origin.clone(),
            message: format!(
                "the design has more than {} points (a range with a tiny step or a huge span, or too many \
                 factors): narrow the ranges, or use a random or latin design with `n` points",
                design::MOST_POINTS
            ),
        });
    };
    if n > e.max_points && !yes {
        return Err(ExperimentError::Invalid {
            at: file.origin.clone(),
            message: format!(
                "the design has {n} points, more than `max_points` ({}): pass --yes to run them all, or \
                 raise max_points in the file",
                e.max_points
            ),
        });
    }
    Ok(())
}

/// Refuses a value set for a factor's variable, for a part of it or for what holds it: a
/// `--set`, a `base.set` or a constant naming `workload.stages` would override the factor
/// `workload.stages.0.rate` in every point, whose label would then name a rate it did not run.
fn check_sets(file: &ExperimentFile, sets: &[String]) -> Result<(), ExperimentError> {
    let e = &file.spec;
    let key = |set: &str| set.split_once('=').map_or(set, |(k, _)| k.trim()).to_string();
    let given = sets
        .iter()
        .map(|s| (key(s), format!("--set {s}")))
        .chain(e.base.set.iter().map(|s| (key(s), format!("base.set {s}"))))
        .chain(e.constants.iter().map(|(k, _)| (k.clone(), format!("the constant `{k}`"))));
    let factors: Vec<&str> = e
        .factors
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(e.search.as_ref().map(|s| s.factor.as_str()))
        .collect();
    for (path, what) in given {
        let overlaps = |f: &&&str| {
            path == ***f || f.starts_with(&format!("{path}.")) || path.starts_with(&format!("{f}."))
        };
        if let Some(factor) = factors.iter().find(overlaps) {
            return Err(ExperimentError::Invalid {
                at: file.at("factors", factor),
                message: format!(
                    "`{factor}` is a factor of the experiment, and {what} sets {}: every point would run \
                     with that value whatever its label says; drop one",
                    if path == *factor {
                        "it too".to_string()
                    } else {
                        format!("`{path}`, which overlaps it")
                    }
                ),
            });
        }
    }
    Ok(())
}

/// Every variable path the file names (factors, constants, treatments' values, the searched
/// variable), with where it is named.
fn named_paths(file: &ExperimentFile) -> Vec<(String, String)> {
    let e = &file.spec;
    let mut paths: Vec<(String, String)> =
        e.factors.iter().map(|(p, _)| (p.clone(), file.at("factors", p))).collect();
    paths.extend(e.constants.iter().map(|(p, _)| (p.clone(), file.at("constants", p))));
    if let Design::Treatments(ts) = &e.design {
        for t in ts {
            paths.extend(
                t.set.iter().map(|(p, _)| (p.clone(), format!("{} (treatment {})", file.origin, t.name))),
            );
        }
    }
    if let Some(search) = &e.search {
        paths.push((search.factor.clone(), file.origin.clone()));
    }
    paths
}

/// The factor columns of the design: the factors, the variables the treatments set (in order of
/// first mention), or the searched variable.
fn columns(e: &Experiment) -> Vec<String> {
    if let Some(search) = &e.search {
        return vec![search.factor.clone()];
    }
    match &e.design {
        Design::Treatments(ts) => {
            let mut c: Vec<String> = Vec::new();
            for t in ts {
                for (p, _) in t.set.iter() {
                    if !c.contains(p) {
                        c.push(p.clone());
                    }
                }
            }
            c
        }
        _ => e.factors.iter().map(|(p, _)| p.clone()).collect(),
    }
}

/// The point of the base alone (its `set` and the constants, no factor values).
fn base_point() -> Point {
    Point { id: "base".into(), name: None, values: Vec::new() }
}

impl ExperimentPlan {
    /// The base run resolved (its `set` and the constants, no factor values).
    pub(crate) fn base(&self) -> Option<Resolved> {
        self.loaded.resolve(&request(&self.file, &base_point(), &self.sets), &planning_context()).ok()
    }

    /// Compiles one more point and puts it on its stack (a new one if no stack has its standup);
    /// returns its index.
    pub(crate) fn place(&mut self, point: Point) -> Result<usize, ExperimentError> {
        let (point, req, sh, hash) = self.compile_point(point, &planning_context())?;
        Ok(self.put(point, req, sh, hash))
    }

    /// A point's request, stack hash and plan hash.
    fn compile_point(&self, point: Point, ctx: &RunContext) -> Result<Compiled, ExperimentError> {
        let req = request(&self.file, &point, &self.sets);
        let (_, p) = compile(&self.loaded, &req, ctx).map_err(|message| ExperimentError::Point {
            at: self.file.origin.clone(),
            point: point.id.clone(),
            label: point.label(),
            message,
        })?;
        let (sh, hash) = (stack_hash(&p), plan_hash(&p));
        Ok((point, req, sh, hash))
    }

    /// [`ExperimentPlan::compile_point`] of every point, on a few threads (each point compiles
    /// on its own), in the points' order.
    fn compile_all(&self, points: Vec<Point>) -> Vec<Result<Compiled, ExperimentError>> {
        let ctx = planning_context();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
        if threads == 1 || points.len() < 16 {
            return points.into_iter().map(|p| self.compile_point(p, &ctx)).collect();
        }
        let size = points.len().div_ceil(threads);
        let mut chunks: Vec<Vec<Point>> = Vec::new();
        let mut points = points.into_iter().peekable();
        while points.peek().is_some() {
            chunks.push(points.by_ref().take(size).collect());
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let ctx = &ctx;
                    s.spawn(move || chunk.into_iter().map(|p| self.compile_point(p, ctx)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(ExperimentError::Invalid {
                            at: self.file.origin.clone(),
                            message: "planning a point panicked".into(),
                        })]
                    })
                })
                .collect()
        })
    }

    /// Puts a compiled point on its stack (a new one if no stack has its standup); returns its
    /// index.
    fn put(&mut self, point: Point, req: Request, sh: String, hash: String) -> usize {
        let stack = match self.stacks.iter().position(|s| s.hash == sh) {
            Some(i) => i,
            None => {
                let setup = point
                    .values
                    .iter()
                    .filter(|(k, _)| self.factors.iter().any(|(f, setup)| f == k && *setup))
                    .cloned()
                    .collect();
                self.stacks.push(Stack {
                    id: format!("s{}", self.stacks.len() + 1),
                    hash: sh,
                    points: Vec::new(),
                    setup,
                });
                self.stacks.len() - 1
            }
        };
        self.stacks[stack].points.push(self.points.len());
        self.points.push(PlannedPoint { point, request: req, stack, hash });
        self.points.len() - 1
    }

    /// Each factor column with whether it is a setup factor: whether changing it alone (from
    /// the first point) changes the stack.
    fn classify_factors(&self, ctx: &RunContext) -> Result<Vec<(String, bool)>, ExperimentError> {
        let mut factors = Vec::new();
        for path in &columns(&self.file.spec) {
            let setup = if let Some(search) = &self.file.spec.search {
                self.search_needs_stacks(search, ctx)?
            } else if self.stacks.len() == 1 {
                false
            } else {
                self.changes_stack(path, ctx)
            };
            factors.push((path.clone(), setup));
        }
        Ok(factors)
    }

    /// The search's variable: do the two ends of its range need different stacks?
    fn search_needs_stacks(&self, search: &Search, ctx: &RunContext) -> Result<bool, ExperimentError> {
        let at = |x: f64| {
            // As a trial would set it (a whole number for `integer`: a concurrency is a u32).
            let values = super::search::point_values(search, x, None, None);
            let point = Point { id: "probe".into(), name: None, values };
            compile(&self.loaded, &request(&self.file, &point, &self.sets), ctx).map(|(_, p)| stack_hash(&p))
        };
        let (a, b) = (at(search.from), at(search.to));
        if let (Err(m), _) | (_, Err(m)) = (&a, &b) {
            return Err(ExperimentError::Invalid {
                at: self.file.origin.clone(),
                message: format!("search: {m}"),
            });
        }
        Ok(a.ok() != b.ok())
    }

    /// Whether the first point, with `path` set to another of its levels (up to four tried),
    /// lands on another stack.
    fn changes_stack(&self, path: &str, ctx: &RunContext) -> bool {
        let first = &self.points[0];
        let seen: Vec<&Value> = self
            .points
            .iter()
            .filter_map(|p| p.point.values.iter().find(|(k, _)| k == path).map(|(_, v)| v))
            .fold(Vec::new(), |mut acc, v| {
                if !acc.contains(&v) && acc.len() < 4 {
                    acc.push(v);
                }
                acc
            });
        for v in seen {
            let mut point = first.point.clone();
            match point.values.iter_mut().find(|(k, _)| k == path) {
                Some(slot) => slot.1 = v.clone(),
                None => point.values.push((path.to_string(), v.clone())),
            }
            if let Ok((_, p)) = compile(&self.loaded, &request(&self.file, &point, &self.sets), ctx)
                && stack_hash(&p) != self.stacks[first.stack].hash
            {
                return true;
            }
        }
        false
    }

    /// The design and its stacks, for people (`benchflow experiment plan`).
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let e = &self.file.spec;
        let setup: Vec<&str> = self.factors.iter().filter(|f| f.1).map(|f| f.0.as_str()).collect();
        let run: Vec<&str> = self.factors.iter().filter(|f| !f.1).map(|f| f.0.as_str()).collect();
        out += &format!(
            "experiment {} ({}): {} on {}, at most {} up at once\n",
            self.file.origin,
            e.description.as_deref().unwrap_or("no description"),
            super::counted(self.points.len(), "point"),
            super::counted(self.stacks.len(), "stack"),
            e.max_stacks,
        );
        if let Some(s) = &e.search {
            out += &format!(
                "search: {} over {} in [{}, {}]{}, at most {} trials, until the bracket is {}; each trial is \
                 decided from the ones before it (docs/search.md)\n",
                s.objective.as_str(),
                s.factor,
                s.from,
                s.to,
                if s.integer { " (whole values)" } else { "" },
                s.trials,
                if s.integer {
                    "one step wide".to_string()
                } else {
                    format!("{}% wide", s.precision * 100.0)
                },
            );
        }
        out += &format!(
            "setup factors (a new standup per level): {}\nrun factors (same stack): {}\n\n",
            if setup.is_empty() { "none".to_string() } else { setup.join(", ") },
            if run.is_empty() { "none".to_string() } else { run.join(", ") },
        );
        for s in &self.stacks {
            let setup: Vec<String> =
                s.setup.iter().map(|(k, v)| format!("{k}={}", design::shown(v))).collect();
            out += &format!(
                "stack {} ({}): {} point{}{}\n",
                s.id,
                s.hash,
                s.points.len(),
                if s.points.len() == 1 { "" } else { "s" },
                if setup.is_empty() { String::new() } else { format!(", {}", setup.join(" ")) }
            );
            for &i in &s.points {
                let p = &self.points[i];
                out += &format!("  {}  {}\n", p.point.id, p.point.label());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points compiled on several threads are exactly those compiled one by one: same order,
    /// same hashes, same stacks (first seen, first served).
    #[test]
    fn points_compiled_on_threads_are_those_placed_one_by_one_in_order() {
        let text = "base: { workload: sanity }\nfactors:\n  engine.profile: [tiny/cpu, llama-3.1-8b/h100]\n  \
                    workload.stages.0.rate: { from: 1, to: 30, step: 1 }\n";
        let file = ExperimentFile::parse("e.yaml".into(), text.into()).unwrap();
        let planned = plan(file, Path::new("/nonexistent/bf-plan"), &[], true).unwrap();
        assert_eq!((planned.points.len(), planned.stacks.len()), (60, 2));
        let mut one_by_one = ExperimentPlan { points: Vec::new(), stacks: Vec::new(), ..planned.clone() };
        for p in &planned.points {
            one_by_one.place(p.point.clone()).unwrap();
        }
        let view = |plan: &ExperimentPlan| {
            let points: Vec<_> =
                plan.points.iter().map(|p| (p.point.id.clone(), p.hash.clone(), p.stack)).collect();
            let stacks: Vec<_> =
                plan.stacks.iter().map(|s| (s.id.clone(), s.hash.clone(), s.points.clone())).collect();
            (points, stacks)
        };
        assert_eq!(view(&planned), view(&one_by_one));
        let ids: Vec<&str> = planned.points.iter().map(|p| p.point.id.as_str()).collect();
        assert_eq!(ids[..3], ["p001", "p002", "p003"]);
        assert_eq!(
            planned.factors,
            [("engine.profile".to_string(), true), ("workload.stages.0.rate".to_string(), false)]
        );
    }
}
