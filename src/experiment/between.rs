//! An experiment's `between_points` actions as steps of the stack's pipeline: a plan compiled
//! like any other (typed, numbered, templates checked), which the executor runs in the stack's
//! work directory before each of its points but the first, every time (each step is selected,
//! so none is reused), each logged in `setup/commands/` and `events.jsonl` there.

use serde_json::{Value, json};

use crate::{
    plan::{self, Plan, PlanError},
    resolve::Resolved,
    spec::{experiment::Action, pipeline::Pipeline},
};

/// The steps of `actions` on the stack `stack` resolved: `POST /reset_prefix_cache` on every
/// engine (behind a router each replica's, whose caches the router does not reset), `sleep`,
/// a command. In order: each after the one before. None without actions.
pub(super) fn plan(actions: &[Action], stack: &Resolved) -> Result<Option<Plan>, PlanError> {
    if actions.is_empty() {
        return Ok(None);
    }
    let mut steps: Vec<Value> = Vec::new();
    for (n, action) in actions.iter().enumerate() {
        for (name, kind, with) in action_steps(n + 1, action, stack) {
            let after: Vec<String> =
                steps.last().and_then(|s| s["name"].as_str()).map(str::to_string).into_iter().collect();
            steps.push(json!({ "name": name, "phase": "run", "kind": kind, "after": after, "with": with }));
        }
    }
    let pipeline: Pipeline = serde_json::from_value(json!({ "steps": steps }))
        .map_err(|e| PlanError::Invalid { origin: "between_points".into(), message: e.to_string() })?;
    let resolved = Resolved {
        pipeline,
        files: [("pipeline".to_string(), "the experiment's between_points".to_string())].into(),
        texts: Default::default(),
        ..stack.clone()
    };
    plan::compile(&resolved).map(Some)
}

/// (name, kind, with) of one action's steps.
fn action_steps(n: usize, action: &Action, stack: &Resolved) -> Vec<(String, &'static str, Value)> {
    match action {
        Action::ResetPrefixCache => {
            let cluster = json!({
                "context": stack.get("kubernetes.context"),
                "kubeconfig": stack.get("kubernetes.kubeconfig"),
            });
            engines(stack)
                .into_iter()
                .enumerate()
                .map(|(k, url)| {
                    let with = json!({
                        "url": url,
                        "cluster": cluster,
                        "request": { "method": "POST", "path": "/reset_prefix_cache" },
                    });
                    (format!("between_{n}_reset_prefix_cache_{k}"), "http", with)
                })
                .collect()
        }
        Action::Sleep(d) => {
            vec![(format!("between_{n}_sleep"), "exec", json!({ "command": ["sleep", d.0.to_string()] }))]
        }
        Action::Exec(cmd) => vec![(format!("between_{n}_exec"), "exec", json!({ "command": cmd }))],
    }
}

/// The engines' URLs: each replica's behind a router, else the endpoint's.
fn engines(stack: &Resolved) -> Vec<String> {
    let replicas: Vec<String> = stack
        .get("run.replicas")
        .and_then(Value::as_array)
        .map(|rs| rs.iter().filter_map(|r| r["url"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if replicas.is_empty() {
        vec![stack.get("endpoint.url").and_then(Value::as_str).unwrap_or("").to_string()]
    } else {
        replicas
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{spec::pipeline::Kind, units::Secs};

    fn stack(values: Value) -> Resolved {
        Resolved {
            format_version: 1,
            benchflow_version: "test".into(),
            request: Default::default(),
            files: BTreeMap::new(),
            values,
            sources: BTreeMap::new(),
            pipeline: Pipeline { description: None, steps: Vec::new() },
            workload: None,
            texts: BTreeMap::new(),
        }
    }

    #[test]
    fn each_action_is_a_typed_step_in_order_and_a_router_stack_resets_every_engine() {
        let replicas = json!([{ "url": "http://127.0.0.1:9001" }, { "url": "http://127.0.0.1:9002" }]);
        let s = stack(
            json!({ "run": { "id": "x", "replicas": replicas }, "endpoint": { "url": "http://127.0.0.1:9000" } }),
        );
        let actions = [Action::ResetPrefixCache, Action::Sleep(Secs(0.5)), Action::Exec(vec!["true".into()])];
        let p = plan(&actions, &s).unwrap().unwrap();
        let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "01_between_1_reset_prefix_cache_0",
                "02_between_1_reset_prefix_cache_1",
                "03_between_2_sleep",
                "04_between_3_exec"
            ]
        );
        assert_eq!(
            p.steps.iter().map(|s| s.kind).collect::<Vec<_>>(),
            [Kind::Http, Kind::Http, Kind::Exec, Kind::Exec]
        );
        assert!(
            p.steps[1].describe[0].starts_with("POST http://127.0.0.1:9002/reset_prefix_cache"),
            "{:?}",
            p.steps[1].describe
        );
        assert_eq!(p.dependencies(), [vec![], vec![0], vec![1], vec![2]]);
        assert_eq!(p.steps[2].describe[0], "$ sleep 0.5");
    }

    #[test]
    fn a_single_engine_is_reset_at_the_endpoint_and_no_actions_is_no_plan() {
        let s = stack(json!({ "run": { "id": "x" }, "endpoint": { "url": "http://127.0.0.1:9000" } }));
        let p = plan(&[Action::ResetPrefixCache], &s).unwrap().unwrap();
        assert_eq!(p.steps.len(), 1);
        assert!(p.steps[0].describe[0].starts_with("POST http://127.0.0.1:9000/reset_prefix_cache"));
        assert!(plan(&[], &s).unwrap().is_none());
    }
}
