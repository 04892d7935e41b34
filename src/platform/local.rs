//! The local platform: the engine is a child process on this machine, or an endpoint that is
//! already up.

use std::path::Path;

use serde_json::{Value, json};

use crate::{
    platform::RunContext,
    spec::scenario::{EngineKind, Scenario},
};

/// A port nobody listens on right now (the kernel's choice for port 0).
fn free_port(host: &str) -> Result<u16, String> {
    let l = std::net::TcpListener::bind((host, 0)).map_err(|e| format!("no free port on {host}: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| format!("no free port on {host}: {e}"))
}

/// Checks an endpoint URL before anything starts: `http(s)://HOST[:PORT][/prefix]` (or
/// `k8s://NAMESPACE/SERVICE:PORT`).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("k8s://") {
        return Ok(());
    }
    crate::net::Url::parse(url)
        .map(|_| ())
        .map_err(|why| format!("endpoint `{url}`: {why} (expected e.g. http://127.0.0.1:8000)"))
}

/// `run.*` and `endpoint.*` for this scenario and run.
pub fn derive(s: &Scenario, run: &RunContext, workload_dir: &Path) -> Result<Value, String> {
    let e = &s.engine;
    let port = match (e.kind, e.port) {
        (EngineKind::Endpoint, _) => 0,
        (_, 0) => match run.port {
            Some(p) => p,
            None => free_port(&e.host)?,
        },
        (_, p) => p,
    };
    let connect_host = if e.host == "0.0.0.0" { "127.0.0.1" } else { e.host.as_str() };
    if e.kind == EngineKind::Sim {
        // An unknown profile is found now, not by the engine after the standup began.
        crate::sim::SimConfig::profile(&e.profile).map_err(|e| e.to_string())?;
    }
    let (url, command): (String, Vec<String>) = match e.kind {
        EngineKind::Sim => {
            let mut cmd = vec![
                run.bin.display().to_string(),
                "sim".into(),
                "--host".into(),
                e.host.clone(),
                "--port".into(),
                port.to_string(),
                "--profile".into(),
                e.profile.clone(),
            ];
            if let Some(model) = &s.model {
                cmd.extend(["--set".into(), format!("model={model}")]);
            }
            cmd.extend(e.args.iter().cloned());
            (format!("http://{connect_host}:{port}"), cmd)
        }
        EngineKind::Vllm => {
            let model = s.model.clone().ok_or_else(|| {
                "engine `vllm` needs `model:` (a Hugging Face id such as Qwen/Qwen2.5-0.5B-Instruct)"
                    .to_string()
            })?;
            let mut cmd = vec!["vllm".into(), "serve".into(), model, "--host".into(), e.host.clone()];
            cmd.extend(["--port".into(), port.to_string()]);
            cmd.extend(e.args.iter().cloned());
            (format!("http://{connect_host}:{port}"), cmd)
        }
        EngineKind::Endpoint => {
            let url = e.url.clone().ok_or_else(|| {
                "engine `endpoint` needs `url:` (or use `benchflow run --endpoint URL`)".to_string()
            })?;
            check_url(&url)?;
            (url.trim_end_matches('/').to_string(), Vec::new())
        }
    };
    Ok(json!({
        "run": {
            "id": run.id,
            "workdir": run.workdir.display().to_string(),
            "bin": run.bin.display().to_string(),
            "port": port,
            "command": command,
            "workload_dir": workload_dir.display().to_string(),
        },
        "endpoint": { "url": url },
    }))
}
