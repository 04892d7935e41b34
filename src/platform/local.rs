//! The local platform: the engine is a child process on this machine, or an endpoint that is
//! already up.

use std::path::Path;

use serde_json::{Value, json};

use crate::{
    platform::RunContext,
    spec::scenario::{EngineKind, Method, RouterKind, Scenario},
};

/// Checks an endpoint URL before anything starts: `http(s)://HOST[:PORT][/prefix]` (or
/// `k8s://NAMESPACE/SERVICE:PORT`).
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("k8s://") {
        return Ok(());
    }
    crate::net::Url::parse(url)
        .map(|_| ())
        .map_err(|why| format!("endpoint `{url}`: {why} (expected e.g. http://127.0.0.1:8000)"))
}

/// `run.*` and `endpoint.*` for this scenario and run.
pub(crate) fn derive(s: &Scenario, run: &RunContext, workload_dir: &Path) -> Result<Value, String> {
    let e = &s.engine;
    if e.kind == EngineKind::Sim {
        // An unknown profile is found now, not by the engine after the standup began.
        crate::sim::SimConfig::check_profile(&e.profile).map_err(|e| e.to_string())?;
    }
    let run_values = |ports: &[u16], command: Vec<String>| {
        json!({
            "id": run.id,
            "workdir": run.workdir.display().to_string(),
            "bin": run.bin.display().to_string(),
            "port": ports.first().copied().unwrap_or(0),
            "ports": ports,
            "command": command,
            "workload_dir": workload_dir.display().to_string(),
            "scrape": [],
        })
    };
    match s.deploy.method {
        Method::Standalone => {}
        Method::Router => return router(s, run, run_values),
        Method::LlmD => {
            return Err(
                "deploy.method `llm-d` needs a Kubernetes cluster (its gateway, InferencePool and endpoint \
                 picker are Kubernetes objects): use `platform: kubernetes` (scenario kubernetes-llm-d), or \
                 on this machine `method: router` (replicas behind the vLLM router)"
                    .into(),
            );
        }
    }
    if e.kind == EngineKind::Endpoint {
        let url = e.url.clone().ok_or_else(|| {
            "engine `endpoint` needs `url:` (or use `benchflow run --endpoint URL`)".to_string()
        })?;
        check_url(&url)?;
        return Ok(json!({
            "run": run_values(&[0], Vec::new()),
            "endpoint": { "url": url.trim_end_matches('/') },
        }));
    }
    let port = match e.port {
        0 => run.ports.take(&e.host, 1)?[0],
        p => p,
    };
    Ok(json!({
        "run": run_values(&[port], engine_command(s, run, port)?),
        "endpoint": { "url": format!("http://{}:{port}", connect_host(&e.host)) },
    }))
}

/// Where to connect to a process listening on `host`.
fn connect_host(host: &str) -> &str {
    if host == "0.0.0.0" { "127.0.0.1" } else { host }
}

/// The command line of one engine (the simulator or `vllm serve`) listening on `port`.
fn engine_command(s: &Scenario, run: &RunContext, port: u16) -> Result<Vec<String>, String> {
    let e = &s.engine;
    let mut cmd: Vec<String> = match e.kind {
        EngineKind::Sim => {
            let mut cmd = vec![run.bin.display().to_string(), "sim".into(), "--host".into(), e.host.clone()];
            cmd.extend(["--port".into(), port.to_string(), "--profile".into(), e.profile.clone()]);
            if let Some(model) = &s.model {
                cmd.extend(["--set".into(), format!("model={model}")]);
            }
            cmd
        }
        EngineKind::Vllm => {
            let model = s.model.clone().ok_or_else(|| {
                "engine `vllm` needs `model:` (a Hugging Face id such as Qwen/Qwen2.5-0.5B-Instruct)"
                    .to_string()
            })?;
            vec![
                "vllm".into(),
                "serve".into(),
                model,
                "--host".into(),
                e.host.clone(),
                "--port".into(),
                port.to_string(),
            ]
        }
        EngineKind::Endpoint => return Err("an endpoint has no command".into()),
    };
    cmd.extend(e.args.iter().cloned());
    Ok(cmd)
}

/// A router stack on this machine: `replicas` engines on ports of their own, then the router
/// (installed by benchflow's tool installer) in front of them; the load goes to the router.
/// `run.replicas` (index, port, url, command of each engine), `run.router` (tool, command, url),
/// `run.scrape` (each engine's `/metrics`, by replica).
fn router(
    s: &Scenario,
    run: &RunContext,
    run_values: impl Fn(&[u16], Vec<String>) -> Value,
) -> Result<Value, String> {
    let (e, d) = (&s.engine, &s.deploy);
    if e.kind == EngineKind::Endpoint {
        return Err(
            "deploy.method `router` starts its engines: engine.kind must be `sim` or `vllm`, not `endpoint`"
                .into(),
        );
    }
    if d.router.kind == RouterKind::ProductionStack {
        return Err("router kind `production-stack` runs on Kubernetes only: its router is published as an \
             image (lmcache/lmstack-router), not on PyPI (PyPI's `vllm-router` is the vLLM project's other \
             router); on this machine use `kind: vllm-router`, or `platform: kubernetes`"
            .into());
    }
    if d.replicas == 0 {
        return Err("deploy.replicas must be at least 1".into());
    }
    let n = d.replicas as usize;
    // Router, its metrics exporter, then the engines (kept in that order across commands).
    let mut ports = run.ports.take(&e.host, n + 2)?;
    if d.router.port != 0 {
        ports[0] = d.router.port;
    }
    if e.port != 0 {
        for (i, p) in ports[2..].iter_mut().enumerate() {
            *p = e.port + i as u16;
        }
    }
    let host = connect_host(&e.host);
    let mut replicas = Vec::with_capacity(n);
    for (index, &port) in ports[2..].iter().enumerate() {
        replicas.push(json!({
            "index": index,
            "port": port,
            "url": format!("http://{host}:{port}"),
            "command": engine_command(s, run, port)?,
        }));
    }
    let urls: Vec<String> =
        replicas.iter().map(|r| r["url"].as_str().unwrap_or_default().to_string()).collect();
    let tool = crate::tools::find("vllm-router").map_err(|e| e.to_string())?;
    let mut command = vec![tool.command(&crate::tools::home()).display().to_string()];
    command.extend(["--host".into(), e.host.clone(), "--port".into(), ports[0].to_string()]);
    // Its Prometheus exporter has a fixed default port: two routers at once need two.
    command.extend(["--prometheus-port".into(), ports[1].to_string()]);
    command.extend(["--policy".into(), d.router.policy.as_str().to_string(), "--worker-urls".into()]);
    command.extend(urls.iter().cloned());
    command.extend(d.router.args.iter().cloned());
    let url = format!("http://{host}:{}", ports[0]);
    let mut values = run_values(&ports, Vec::new());
    values["port"] = json!(ports[0]);
    values["replicas"] = json!(replicas);
    values["router"] = json!({
        "tool": tool.name,
        "command": command,
        "url": url,
        "metrics_url": format!("http://{host}:{}", ports[1]),
    });
    values["scrape"] = json!(
        urls.iter()
            .enumerate()
            .map(|(i, u)| json!({"name": format!("replica-{i}"), "url": u}))
            .collect::<Vec<_>>()
    );
    Ok(json!({ "run": values, "endpoint": { "url": url } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Ports;

    fn run(ports: Ports) -> RunContext {
        RunContext { id: "r".into(), workdir: "/w".into(), bin: "/bin/benchflow".into(), ports }
    }

    fn router_scenario(policy: &str, replicas: u32) -> Scenario {
        let yaml = format!(
            "deploy: {{ method: router, replicas: {replicas}, router: {{ policy: {policy}, args: [--cache-threshold, '0.5'] }} }}\n"
        );
        crate::spec::from_yaml(&yaml, "s.yaml", &[]).unwrap()
    }

    #[test]
    fn a_router_stack_gets_distinct_ports_engines_and_the_router_in_front() {
        let v = derive(&router_scenario("cache_aware", 3), &run(Ports::Free), Path::new("/w")).unwrap();
        let ports: Vec<u64> =
            v["run"]["ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
        assert_eq!(ports.len(), 5, "router, its metrics, 3 engines: {ports:?}");
        let mut distinct = ports.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 5, "{ports:?}");
        let replicas = v["run"]["replicas"].as_array().unwrap();
        assert_eq!(replicas.len(), 3);
        for (i, r) in replicas.iter().enumerate() {
            let port = ports[i + 2];
            assert_eq!(r["url"], format!("http://127.0.0.1:{port}"));
            let cmd: Vec<&str> =
                r["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
            assert_eq!(cmd[..2], ["/bin/benchflow", "sim"]);
            assert!(cmd.windows(2).any(|w| w == ["--port", port.to_string().as_str()]), "{cmd:?}");
            assert_eq!(v["run"]["scrape"][i]["name"], format!("replica-{i}"));
        }
        let router: Vec<&str> =
            v["run"]["router"]["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(router[0].ends_with("vllm-router-0.1.17/venv/bin/vllm-router"), "{router:?}");
        let at = |flag: &str| router.iter().position(|a| *a == flag).unwrap();
        assert_eq!(router[at("--port") + 1], ports[0].to_string());
        assert_eq!(router[at("--prometheus-port") + 1], ports[1].to_string());
        assert_eq!(router[at("--policy") + 1], "cache_aware");
        let workers = &router[at("--worker-urls") + 1..at("--worker-urls") + 4];
        assert_eq!(workers, replicas.iter().map(|r| r["url"].as_str().unwrap()).collect::<Vec<_>>());
        assert_eq!(router[router.len() - 2..], ["--cache-threshold", "0.5"]);
        assert_eq!(v["endpoint"]["url"], format!("http://127.0.0.1:{}", ports[0]));

        // A work directory's ports are kept, so its done steps keep their hashes.
        let again = derive(
            &router_scenario("cache_aware", 3),
            &run(Ports::Kept(ports.iter().map(|p| *p as u16).collect())),
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(again, v);
    }

    #[test]
    fn router_stacks_that_cannot_be_built_here_are_refused_with_the_reason() {
        let mut s = router_scenario("round_robin", 2);
        s.engine.kind = EngineKind::Endpoint;
        let e = derive(&s, &run(Ports::Free), Path::new("/w")).unwrap_err();
        assert!(e.contains("engine.kind must be `sim` or `vllm`"), "{e}");
        let e = derive(&router_scenario("round_robin", 0), &run(Ports::Free), Path::new("/w")).unwrap_err();
        assert!(e.contains("deploy.replicas must be at least 1"), "{e}");
        let mut s = router_scenario("round_robin", 2);
        s.deploy.router.kind = RouterKind::ProductionStack;
        assert!(derive(&s, &run(Ports::Free), Path::new("/w")).unwrap_err().contains("production-stack"));
        s.deploy.method = Method::LlmD;
        assert!(derive(&s, &run(Ports::Free), Path::new("/w")).unwrap_err().contains("llm-d"));
        let e =
            crate::spec::from_yaml::<Scenario>("deploy: { router: { policy: least_busy } }\n", "s.yaml", &[])
                .unwrap_err()
                .to_string();
        assert!(e.contains("s.yaml:1") && e.contains("round_robin"), "{e}");
    }
}
