//! The Kubernetes platform: names, labels and vLLM arguments derived from the scenario
//! (`k8s.*`), the manifest templates (shipped, or the scenario's own directory), and the check
//! that every rendered manifest parses into its k8s-openapi type.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::RunContext;
use crate::{
    spec::scenario::{EngineKind, Method, RouterKind, Scenario},
    template::Renderer,
};

/// The label every object benchflow creates carries, with the run id as value.
pub(crate) const RUN_LABEL: &str = "benchflow.io/run";
/// The label naming the step that created an object.
pub(crate) const STEP_LABEL: &str = "benchflow.io/step";
/// Field manager for server-side apply.
pub(crate) const FIELD_MANAGER: &str = "benchflow";

const TEMPLATES: &[(&str, &str)] = &[
    ("namespace.yaml", include_str!("../../templates/kubernetes/namespace.yaml")),
    ("secret.yaml", include_str!("../../templates/kubernetes/secret.yaml")),
    ("pvc.yaml", include_str!("../../templates/kubernetes/pvc.yaml")),
    ("download.yaml", include_str!("../../templates/kubernetes/download.yaml")),
    ("deployment.yaml", include_str!("../../templates/kubernetes/deployment.yaml")),
    ("service.yaml", include_str!("../../templates/kubernetes/service.yaml")),
    ("router.yaml", include_str!("../../templates/kubernetes/router.yaml")),
    ("epp.yaml", include_str!("../../templates/kubernetes/epp.yaml")),
    ("inferencepool.yaml", include_str!("../../templates/kubernetes/inferencepool.yaml")),
    ("gateway.yaml", include_str!("../../templates/kubernetes/gateway.yaml")),
];

/// A label value from free text: at most 63 characters of `[a-z0-9.-_]`, alphanumeric at both
/// ends.
pub(crate) fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// A DNS-1123 label from free text (lowercase alphanumerics and `-`), at most `max` long.
pub(crate) fn dns_label(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max);
    out.trim_matches('-').to_string()
}

/// `k8s.*`, `run.*` and `endpoint.*` for a Kubernetes scenario.
pub(crate) fn derive(
    s: &Scenario,
    run: &RunContext,
    workload_dir: &std::path::Path,
) -> Result<Value, String> {
    if s.engine.kind != EngineKind::Vllm {
        return Err(format!(
            "platform `kubernetes` runs `engine: {{ kind: vllm }}` (found `{}`); for an endpoint that is \
             already up use `platform: local` with `engine: {{ kind: endpoint }}`",
            s.engine.kind.as_str()
        ));
    }
    let (router, gateway) = match s.deploy.method {
        Method::Standalone => (false, false),
        Method::Router => (true, false),
        Method::LlmD => (false, true),
    };
    let model = s
        .model
        .clone()
        .ok_or_else(|| "platform `kubernetes` needs `model:` (a Hugging Face id)".to_string())?;
    let k = &s.kubernetes;
    if dns_label(&k.namespace, 63) != k.namespace {
        return Err(format!(
            "kubernetes.namespace `{}` is not a valid name (lowercase letters, digits, `-`)",
            k.namespace
        ));
    }
    if k.gpus == 0 || k.replicas == 0 {
        return Err("kubernetes.gpus and kubernetes.replicas must be at least 1".into());
    }
    if (router || gateway) && s.deploy.replicas == 0 {
        return Err("deploy.replicas must be at least 1".into());
    }
    let short = model.rsplit('/').next().unwrap_or(&model);
    let digest = Sha256::digest(run.id.as_bytes());
    let suffix: String =
        digest.iter().take(3).map(|b| format!("{b:02x}")).collect::<String>()[..5].to_string();
    let name = format!("vllm-{}-{suffix}", dns_label(short, 40));
    let run_label = label_value(&run.id);
    let mut args = vec![model.clone(), "--port".to_string(), k.port.to_string()];
    // Several GPUs per pod serve one model with tensor parallelism, unless the flags say otherwise.
    if k.gpus > 1 && !s.engine.args.iter().any(|a| a.starts_with("--tensor-parallel-size") || a == "-tp") {
        args.extend(["--tensor-parallel-size".to_string(), k.gpus.to_string()]);
    }
    args.extend(s.engine.args.iter().cloned());
    let hf_token = s.engine.env.get("HF_TOKEN").cloned().unwrap_or_else(|| "env:HF_TOKEN".into());
    let selector = json!({ "app.kubernetes.io/instance": name });
    let mut labels = json!({
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "benchflow",
        RUN_LABEL: run_label,
        "llm-d.ai/inference-serving": "true",
        "llm-d.ai/model": label_value(short),
    });
    if gateway {
        // llm-d-modelservice's role label: these pods serve both phases.
        labels["llm-d.ai/role"] = json!("decode");
    }
    let mut service = name.clone();
    let mut router_values = Value::Null;
    if router {
        router_values = match s.deploy.router.kind {
            RouterKind::VllmRouter => vllm_router(s, &name, &run_label)?,
            RouterKind::ProductionStack => production_stack(s, &name, &run_label)?,
        };
        service = format!("{name}-router");
    }
    let mut gateway_values = Value::Null;
    let mut endpoint_port =
        if router { router_values["port"].as_u64().unwrap_or(8000) as u16 } else { k.port };
    if gateway {
        gateway_values = llm_d(s, &name, &selector, &run_label)?;
        service = gateway_values["service"].as_str().unwrap_or_default().to_string();
        endpoint_port = s.deploy.gateway.port;
    }
    Ok(json!({
        "k8s": {
            "replicas": if router || gateway { s.deploy.replicas } else { k.replicas },
            "router": router_values,
            "gateway": gateway_values,
            "service": service,
            "name": name,
            "pvc": k.pvc.name.clone().unwrap_or_else(|| format!("{name}-cache")),
            "labels": labels,
            "selector": selector,
            "args": args,
            "hf_token": hf_token,
            "run_label": run_label,
            "startup_failures": (s.timeouts.ready.0 / 10.0).ceil().max(1.0) as u64,
        },
        "run": {
            "id": run.id,
            "workdir": run.workdir.display().to_string(),
            "bin": run.bin.display().to_string(),
            "port": 0,
            "command": [],
            "workload_dir": workload_dir.display().to_string(),
        },
        "endpoint": { "url": format!("k8s://{}/{service}:{endpoint_port}", k.namespace) },
    }))
}

/// `k8s.router` for the vLLM router (`vllm-router`, the vLLM project's): Kubernetes service
/// discovery of the engine pods by label, the policy, its Prometheus exporter on 29000.
fn vllm_router(s: &Scenario, name: &str, run_label: &str) -> Result<Value, String> {
    let (r, k) = (&s.deploy.router, &s.kubernetes);
    let port = if r.port == 0 { 8000 } else { r.port };
    let mut args: Vec<String> = ["--host", "0.0.0.0", "--port"].map(String::from).to_vec();
    args.push(port.to_string());
    // Its engines: the pods of the engine's Deployment, found through the API server.
    args.extend([
        "--service-discovery".into(),
        "--selector".into(),
        format!("app.kubernetes.io/instance={name}"),
    ]);
    args.extend(["--service-discovery-namespace".into(), k.namespace.clone()]);
    args.extend(["--service-discovery-port".into(), k.port.to_string()]);
    args.extend(["--policy".into(), r.policy.as_str().into()]);
    args.extend(["--prometheus-host".into(), "0.0.0.0".into(), "--prometheus-port".into(), "29000".into()]);
    args.extend(r.args.iter().cloned());
    let tool = crate::tools::find("vllm-router").map_err(|e| e.to_string())?;
    let command: Vec<String> = match r.install {
        true => vec![
            "sh".into(),
            "-c".into(),
            format!(
                "pip install --no-cache-dir {}=={} && exec vllm-router \"$@\"",
                tool.package, tool.version
            ),
            "vllm-router".into(),
        ],
        false => vec!["vllm-router".into()],
    };
    let image = r.image.clone().unwrap_or_else(|| "python:3.12-slim".into());
    Ok(router_values(
        name,
        run_label,
        "vllm-router",
        image,
        json!(command),
        args,
        port,
        Some(29000),
        &["get", "list", "watch"],
    ))
}

/// `k8s.router` for the vLLM production stack's router (`lmcache/lmstack-router`, started by
/// its image's entrypoint as its Helm chart does): `--service-discovery k8s` by label, its
/// routing logic from the policy (round_robin → roundrobin, consistent_hash → session on
/// `x-session-id` unless `--session-key` is in `router.args`, cache_aware → prefixaware,
/// kv_aware → kvaware); its Role also grants `patch` on pods, as the chart's.
fn production_stack(s: &Scenario, name: &str, run_label: &str) -> Result<Value, String> {
    use crate::spec::scenario::Policy;
    let (r, k) = (&s.deploy.router, &s.kubernetes);
    let logic = match r.policy {
        Policy::RoundRobin => "roundrobin",
        Policy::ConsistentHash => "session",
        Policy::CacheAware => "prefixaware",
        Policy::KvAware => "kvaware",
        Policy::Random | Policy::PowerOfTwo => {
            return Err(format!(
                "deploy.router.policy `{}` is not a routing logic of the production-stack router; it has \
                 round_robin (roundrobin), consistent_hash (session), cache_aware (prefixaware), kv_aware (kvaware)",
                r.policy.as_str()
            ));
        }
    };
    let port = if r.port == 0 { 8000 } else { r.port };
    let mut args: Vec<String> = ["--host", "0.0.0.0", "--port"].map(String::from).to_vec();
    args.push(port.to_string());
    args.extend(["--service-discovery".into(), "k8s".into()]);
    args.extend(["--k8s-namespace".into(), k.namespace.clone()]);
    args.extend(["--k8s-label-selector".into(), format!("app.kubernetes.io/instance={name}")]);
    args.extend(["--k8s-port".into(), k.port.to_string()]);
    args.extend(["--routing-logic".into(), logic.into()]);
    if r.policy == Policy::ConsistentHash && !r.args.iter().any(|a| a.starts_with("--session-key")) {
        // benchflow's session header (workload `api.session_header`).
        args.extend(["--session-key".into(), "x-session-id".into()]);
    }
    args.extend(r.args.iter().cloned());
    let image = r.image.clone().unwrap_or_else(|| "lmcache/lmstack-router:latest".into());
    Ok(router_values(
        name,
        run_label,
        "production-stack-router",
        image,
        Value::Null,
        args,
        port,
        None,
        &["get", "list", "watch", "patch"],
    ))
}

/// The values `router.yaml` renders a router from.
#[allow(clippy::too_many_arguments)]
fn router_values(
    name: &str,
    run_label: &str,
    app: &str,
    image: String,
    command: Value,
    args: Vec<String>,
    port: u16,
    metrics_port: Option<u16>,
    pod_verbs: &[&str],
) -> Value {
    let router_name = format!("{name}-router");
    json!({
        "name": router_name,
        "image": image,
        "command": command,
        "args": args,
        "port": port,
        "metrics_port": metrics_port,
        "pod_verbs": pod_verbs,
        "labels": {
            "app.kubernetes.io/name": app,
            "app.kubernetes.io/instance": router_name,
            "app.kubernetes.io/managed-by": "benchflow",
            RUN_LABEL: run_label,
        },
        "selector": { "app.kubernetes.io/instance": router_name },
    })
}

/// `k8s.gateway`: the names and settings of an llm-d stack's gateway, route, pool and endpoint
/// picker (EPP), for the templates `epp.yaml`, `inferencepool.yaml` and `gateway.yaml`.
fn llm_d(s: &Scenario, name: &str, selector: &Value, run_label: &str) -> Result<Value, String> {
    let g = &s.deploy.gateway;
    let k = &s.kubernetes;
    if dns_label(&g.class, 253) != g.class || g.class.is_empty() {
        return Err(format!("deploy.gateway.class `{}` is not a valid GatewayClass name", g.class));
    }
    if g.scorers.values().all(|w| *w == 0) {
        return Err("deploy.gateway.scorers has no scorer of weight > 0: the endpoint picker needs at least one scorer \
                    (queue-scorer, kv-cache-utilization-scorer, prefix-cache-scorer)"
            .into());
    }
    let gw = format!("{name}-gateway");
    let pool = format!("{name}-pool");
    let epp = format!("{name}-epp");
    // The Service a gateway controller makes for a Gateway: Istio names it `<gateway>-istio`;
    // kgateway and agentgateway name it as the Gateway.
    let service = g.service.clone().unwrap_or_else(|| match g.class.as_str() {
        "istio" => format!("{gw}-istio"),
        _ => gw.clone(),
    });
    let config_file = "default-plugins.yaml";
    let mut plugins = String::new();
    let mut weights = String::new();
    for (scorer, weight) in g.scorers.iter().filter(|(_, w)| **w > 0) {
        plugins.push_str(&format!("- type: {scorer}\n"));
        weights.push_str(&format!("  - pluginRef: {scorer}\n    weight: {weight}\n"));
    }
    let config = format!(
        "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n{plugins}\
         schedulingProfiles:\n- name: default\n  plugins:\n{weights}"
    );
    let mut args: Vec<String> = vec![
        "--pool-name".into(),
        pool.clone(),
        "--pool-namespace".into(),
        k.namespace.clone(),
        "--pool-group".into(),
        "inference.networking.k8s.io".into(),
        "--config-file".into(),
        format!("/config/{config_file}"),
        // vLLM's metric names (the simulator's too).
        "--total-queued-requests-metric".into(),
        "vllm:num_requests_waiting".into(),
        "--kv-cache-usage-percentage-metric".into(),
        "vllm:kv_cache_usage_perc".into(),
    ];
    args.extend(g.epp_args.iter().cloned());
    Ok(json!({
        "name": gw,
        "class": g.class,
        "port": g.port,
        "service": service,
        "route": format!("{name}-route"),
        "pool": pool,
        "selector": selector,
        "target_port": k.port,
        "failure_mode": g.failure_mode.as_str(),
        "request_timeout": format!("{}s", g.request_timeout.0.ceil() as u64),
        "epp": {
            "name": epp,
            "image": g.epp_image,
            "args": args,
            "config": config,
            "config_file": config_file,
            "labels": {
                "app.kubernetes.io/name": "llm-d-epp",
                "app.kubernetes.io/instance": epp,
                "app.kubernetes.io/managed-by": "benchflow",
                RUN_LABEL: run_label,
            },
            "selector": { "app.kubernetes.io/instance": epp },
        },
    }))
}

/// The text of a template: from the scenario's directory when it gives one, else shipped.
pub(crate) fn template_text(custom_dir: Option<&str>, file: &str) -> Result<(String, String), String> {
    if let Some(dir) = custom_dir.filter(|d| !d.is_empty()) {
        // A directory that is not there must not silently mean "the shipped templates".
        if !std::path::Path::new(dir).is_dir() {
            return Err(format!(
                "the template directory `{dir}` (kubernetes.templates) does not exist; fix the path, or \
                 remove it to use the shipped templates"
            ));
        }
        let path = std::path::Path::new(dir).join(file);
        if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok((path.display().to_string(), text));
        }
    }
    TEMPLATES
        .iter()
        .find(|(n, _)| *n == file)
        .map(|(n, t)| (format!("builtin:templates/kubernetes/{n}"), t.to_string()))
        .ok_or_else(|| {
            format!(
                "no manifest template `{file}`; shipped: {}",
                TEMPLATES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )
        })
}

/// Renders templates into manifests (each file may hold several `---` documents), each checked
/// against its k8s-openapi type.
pub(crate) fn render_manifests(
    renderer: &Renderer,
    custom_dir: Option<&str>,
    files: &[String],
) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for file in files {
        let (origin, text) = template_text(custom_dir, file)?;
        let rendered = renderer.render_str(&origin, &text).map_err(|e| e.to_string())?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).map_err(|e| {
            let at = e
                .location()
                .and_then(|l| {
                    rendered.lines().nth(l.line().saturating_sub(1) as usize).map(|t| (l.line(), t))
                })
                .map(|(n, t)| format!(" (rendered line {n}: `{}`)", t.trim()))
                .unwrap_or_default();
            format!(
                "{origin}: the rendered manifest is not YAML: {}{at}",
                crate::spec::bare_message(&e.to_string())
            )
        })?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            check(&doc).map_err(|e| format!("{origin}: {e}"))?;
            out.push(doc);
        }
    }
    Ok(out)
}

/// Parses a manifest into its k8s-openapi type (the kinds benchflow applies).
pub fn check(doc: &Value) -> Result<(), String> {
    use k8s_openapi::api::{
        apps::v1::Deployment,
        batch::v1::Job,
        core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount},
        rbac::v1::{Role, RoleBinding},
    };
    fn parse<T: serde::de::DeserializeOwned>(doc: &Value, kind: &str) -> Result<(), String> {
        serde_json::from_value::<T>(doc.clone()).map(|_| ()).map_err(|e| format!("not a valid {kind}: {e}"))
    }
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if doc.pointer("/metadata/name").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(format!("{kind} without metadata.name"));
    }
    if let Some(verdict) = super::gateway_api::check(api, kind, doc) {
        return verdict;
    }
    match (api, kind) {
        ("v1", "Namespace") => parse::<Namespace>(doc, kind),
        ("v1", "Secret") => parse::<Secret>(doc, kind),
        ("v1", "ConfigMap") => parse::<ConfigMap>(doc, kind),
        ("v1", "PersistentVolumeClaim") => parse::<PersistentVolumeClaim>(doc, kind),
        ("v1", "Service") => parse::<Service>(doc, kind),
        ("apps/v1", "Deployment") => parse::<Deployment>(doc, kind),
        ("batch/v1", "Job") => parse::<Job>(doc, kind),
        ("v1", "ServiceAccount") => parse::<ServiceAccount>(doc, kind),
        ("rbac.authorization.k8s.io/v1", "Role") => parse::<Role>(doc, kind),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => parse::<RoleBinding>(doc, kind),
        _ => Err(format!(
            "`{api}` `{kind}` is not a kind benchflow applies (Namespace, Secret, ConfigMap, \
             PersistentVolumeClaim, Service, Deployment, Job, ServiceAccount, Role, RoleBinding, Gateway, \
             HTTPRoute, InferencePool)"
        )),
    }
}

/// Adds the run and step labels to an object's metadata.
pub(crate) fn label(doc: &mut Value, run_label: &str, step: &str) {
    let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let labels = meta.entry("labels").or_insert_with(|| Value::Object(Map::new()));
    if let Some(l) = labels.as_object_mut() {
        l.insert(RUN_LABEL.into(), Value::String(run_label.into()));
        l.insert(STEP_LABEL.into(), Value::String(label_value(step)));
        l.insert("app.kubernetes.io/managed-by".into(), Value::String("benchflow".into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Kubernetes scenario of model `org/M` with `rest` (its deploy and kubernetes sections).
    fn scenario(rest: &str) -> Scenario {
        let text = format!("platform: kubernetes\nmodel: org/M\nengine: {{ kind: vllm }}\n{rest}");
        crate::spec::from_yaml(&text, "s.yaml", &[]).unwrap()
    }

    fn run() -> RunContext {
        RunContext {
            id: "r1".into(),
            workdir: "/w".into(),
            bin: "/b".into(),
            ports: crate::platform::Ports::Placeholder,
        }
    }

    #[test]
    fn names_and_labels_are_valid() {
        assert_eq!(dns_label("Llama-3.1-8B_Instruct", 63), "llama-3-1-8b-instruct");
        assert_eq!(label_value("run 1/x"), "run-1-x");
        assert_eq!(label_value("-a-"), "a");
    }

    #[test]
    fn a_router_stack_puts_the_router_s_service_in_front_of_its_replicas() {
        let s = scenario(
            "deploy: { method: router, replicas: 3, router: { policy: cache_aware, install: false, image: my/router:1 } }\nkubernetes: { namespace: bench, replicas: 1 }\n",
        );
        let run = run();
        let v = derive(&s, &run, std::path::Path::new("/w")).unwrap();
        let name = v["k8s"]["name"].as_str().unwrap();
        let router = &v["k8s"]["router"];
        assert_eq!(router["name"], format!("{name}-router"));
        assert_eq!(v["k8s"]["replicas"], 3, "deploy.replicas engines");
        assert_eq!(v["endpoint"]["url"], format!("k8s://bench/{name}-router:8000"));
        assert_eq!(router["command"], json!(["vllm-router"]), "install: false runs the image's own");
        assert_eq!(router["image"], "my/router:1");
        let args: Vec<&str> =
            router["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let selector = format!("app.kubernetes.io/instance={name}");
        for pair in [
            ["--selector", selector.as_str()],
            ["--policy", "cache_aware"],
            ["--service-discovery-namespace", "bench"],
        ] {
            assert!(args.windows(2).any(|w| w == pair), "{pair:?}: {args:?}");
        }
        // The engines' pods carry the label the router selects.
        assert_eq!(v["k8s"]["selector"]["app.kubernetes.io/instance"], name);
        assert_eq!(router["pod_verbs"], json!(["get", "list", "watch"]));
        // The production stack's router: its image's entrypoint, its own flags and logic names.
        let mut ps = s.clone();
        ps.deploy.router.kind = RouterKind::ProductionStack;
        ps.deploy.router.image = None;
        ps.deploy.router.policy = crate::spec::scenario::Policy::ConsistentHash;
        let v = derive(&ps, &run, std::path::Path::new("/w")).unwrap();
        let router = &v["k8s"]["router"];
        assert_eq!(router["image"], "lmcache/lmstack-router:latest");
        assert_eq!(router["command"], Value::Null, "the image's entrypoint");
        assert_eq!(router["pod_verbs"], json!(["get", "list", "watch", "patch"]), "as its Helm chart's Role");
        let args: Vec<&str> =
            router["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        for pair in [
            ["--service-discovery", "k8s"],
            ["--k8s-label-selector", selector.as_str()],
            ["--k8s-namespace", "bench"],
            ["--routing-logic", "session"],
            ["--session-key", "x-session-id"],
        ] {
            assert!(args.windows(2).any(|w| w == pair), "{pair:?}: {args:?}");
        }
        ps.deploy.router.policy = crate::spec::scenario::Policy::PowerOfTwo;
        let e = derive(&ps, &run, std::path::Path::new("/w")).unwrap_err();
        assert!(e.contains("`power_of_two` is not a routing logic of the production-stack router"), "{e}");
    }

    #[test]
    fn an_llm_d_stack_names_its_gateway_pool_and_picker_and_targets_the_gateway_s_service() {
        let mut s = scenario("deploy: { method: llm-d, replicas: 3 }\nkubernetes: { namespace: bench }\n");
        s.deploy.gateway.scorers.insert("queue-scorer".into(), 0);
        let run = run();
        let v = derive(&s, &run, std::path::Path::new("/w")).unwrap();
        let name = v["k8s"]["name"].as_str().unwrap();
        let g = &v["k8s"]["gateway"];
        assert_eq!(v["k8s"]["replicas"], 3);
        // Istio names the Service of Gateway G `G-istio`; the load goes there, on the listener's port.
        assert_eq!(g["service"], format!("{name}-gateway-istio"));
        assert_eq!(v["endpoint"]["url"], format!("k8s://bench/{name}-gateway-istio:80"));
        assert_eq!(g["selector"], v["k8s"]["selector"], "the pool selects the engine pods");
        assert_eq!(v["k8s"]["labels"]["llm-d.ai/role"], "decode");
        let args: Vec<&str> =
            g["epp"]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let pool = format!("{name}-pool");
        assert!(args.windows(2).any(|w| w == ["--pool-name", pool.as_str()]), "{args:?}");
        // A weight of 0 leaves the scorer out; the others keep their defaults.
        let config = g["epp"]["config"].as_str().unwrap();
        assert!(!config.contains("queue-scorer"), "{config}");
        assert!(config.contains("pluginRef: prefix-cache-scorer\n    weight: 3"), "{config}");
        let mut none = s.clone();
        none.deploy.gateway.scorers.values_mut().for_each(|w| *w = 0);
        assert!(derive(&none, &run, std::path::Path::new("/w")).unwrap_err().contains("at least one scorer"));
        let mut kgateway = s;
        kgateway.deploy.gateway.class = "kgateway".into();
        let v = derive(&kgateway, &run, std::path::Path::new("/w")).unwrap();
        assert_eq!(v["k8s"]["gateway"]["service"], format!("{name}-gateway"));
    }
}
