//! `http`: the smoke test after standup: `/health` answers, `/v1/models` lists the model, and
//! one short completion comes back. Every request and answer goes to the step's log.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Ctx, Done, Inputs, Step, StepError};
use crate::{net::fetch, platform::kube::local_url};
use crate::{spec::workload::TlsSettings, units::Secs};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The server's base URL (`http://host:port`).
    pub url: String,
    /// The model that must be listed; default: the first one listed.
    #[serde(default)]
    pub model: Option<String>,
    /// For each request.
    #[serde(default = "default_timeout")]
    pub timeout: Secs,
    /// The cluster, for a `k8s://NAMESPACE/SERVICE:PORT` URL (reached through a port-forward).
    #[serde(default)]
    pub cluster: crate::platform::kube::Target,
    /// Headers on every request (`env:NAME` values read when it runs); by default the
    /// workload's, API key included, so an endpoint that needs a key passes the smoke test.
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// For an `https://` URL; by default the workload's.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Behind a router: first wait until its `/readiness` reports this many healthy engines
    /// (the vLLM router's `healthy_workers`), within `workers_timeout`.
    #[serde(default)]
    pub workers: Option<u32>,
    #[serde(default = "default_workers_timeout")]
    pub workers_timeout: Secs,
    /// Instead of the smoke test: this one request, which must answer 2xx (an experiment's
    /// `reset_prefix_cache` between points). Absent from the hash when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Call>,
}

/// One request: method and path on the step's URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub method: String,
    pub path: String,
}

impl Call {
    /// A method hyper can send (an HTTP token such as `POST`) and a path from the root.
    fn check(&self) -> Result<(), String> {
        if hyper::Method::from_bytes(self.method.as_bytes()).is_err() || self.method.is_empty() {
            return Err(format!("request.method `{}` is not an HTTP method (e.g. GET, POST)", self.method));
        }
        if !self.path.starts_with('/') || self.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "request.path `{}` must start with `/` and hold no spaces (e.g. /reset_prefix_cache)",
                self.path
            ));
        }
        Ok(())
    }
}

fn default_workers_timeout() -> Secs {
    Secs(60.0)
}

fn default_timeout() -> Secs {
    Secs(60.0)
}

impl Step for Args {
    fn compile(&mut self, inputs: &Inputs) -> Result<(), String> {
        if self.headers.is_none() {
            self.headers = inputs.workload.map(|w| w.api.request_headers());
        }
        if self.tls.is_none() {
            self.tls = inputs.workload.map(|w| w.api.tls.clone());
        }
        match &self.request {
            Some(call) => call.check(),
            None => Ok(()),
        }
    }

    fn describe(&self) -> Vec<String> {
        if let Some(call) = &self.request {
            return vec![format!("{} {}{} (must answer 2xx)", call.method, self.url, call.path)];
        }
        let mut out = vec![
            format!(
                "GET {}/health, GET {}/v1/models, POST {}/v1/completions (8 tokens)",
                self.url, self.url, self.url
            ),
            match &self.model {
                Some(m) => format!("the model `{m}` must be listed"),
                None => "the first listed model is used".into(),
            },
        ];
        if let Some(n) = self.workers {
            out.push(format!(
                "first: GET {}/readiness until the router reports {n} healthy engines (within {} s)",
                self.url, self.workers_timeout.0
            ));
        }
        out
    }

    async fn run(self, ctx: &Ctx) -> Result<Done, StepError> {
        match &self.request {
            Some(call) => self.one(ctx, call).await,
            None => self.smoke_test(ctx).await,
        }
    }
}

impl Args {
    async fn call(
        &self,
        ctx: &Ctx,
        base: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &hyper::HeaderMap,
    ) -> Result<(u16, Value), StepError> {
        let url = format!("{base}{path}");
        let t0 = Instant::now();
        ctx.note(&format!("> {method} {url}{}", body.map(|b| format!(" {b}")).unwrap_or_default()));
        let tls = self.tls.clone().unwrap_or_default();
        let call = fetch(method, &url, body, headers, &tls, Duration::from_secs_f64(self.timeout.0));
        let result = tokio::select! {
            r = call => r,
            _ = ctx.cancelled() => return Err(StepError::Cancelled),
        };
        let (status, bytes) = result.map_err(|e| StepError::Failed(format!("{method} {url}: {e}")))?;
        let text = String::from_utf8_lossy(&bytes);
        let shown: String = text.chars().take(2000).collect();
        ctx.note(&format!("< {status} in {:.1} ms: {shown}", t0.elapsed().as_secs_f64() * 1e3));
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// Until the router's `/readiness` reports `n` healthy engines; a router without that
    /// endpoint is said once and not waited for.
    async fn await_workers(
        &self,
        ctx: &Ctx,
        base: &str,
        headers: &hyper::HeaderMap,
        n: u32,
    ) -> Result<(), StepError> {
        let deadline = Instant::now() + Duration::from_secs_f64(self.workers_timeout.0);
        let mut last = Value::Null;
        loop {
            let (status, answer) = self.call(ctx, base, "GET", "/readiness", None, headers).await?;
            if status == 404 {
                ctx.progress(format!(
                    "{}/readiness is not there: the router does not say how many engines it sees; not checked",
                    self.url
                ));
                return Ok(());
            }
            let healthy = answer.get("healthy_workers").and_then(Value::as_u64).unwrap_or(0);
            if healthy >= u64::from(n) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StepError::Failed(format!(
                    "the router sees {healthy} of the {n} engines healthy after {} s (its /readiness: {}): \
                     check that the engines are Ready, and the router's worker list or discovery (selector, \
                     namespace, port, permissions)",
                    self.workers_timeout.0,
                    if answer.is_null() { last } else { answer }
                )));
            }
            ctx.progress(format!("the router sees {healthy} of {n} engines; waiting"));
            last = answer;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = ctx.cancelled() => return Err(StepError::Cancelled),
            }
        }
    }

    /// The one request of `request`: a 2xx answer is done.
    async fn one(&self, ctx: &Ctx, call: &Call) -> Result<Done, StepError> {
        let (base, _forward) = local_url(&self.url, &self.cluster).await.map_err(StepError::Failed)?;
        let headers = crate::loadgen::headers(&self.headers.clone().unwrap_or_default())
            .map_err(|e| StepError::Failed(e.to_string()))?;
        let (status, _) = self.call(ctx, &base, &call.method, &call.path, None, &headers).await?;
        if !(200..300).contains(&status) {
            return Err(StepError::Failed(format!(
                "{} {}{} answered {status}",
                call.method, self.url, call.path
            )));
        }
        Ok(Done { summary: format!("{} {}{} → {status}", call.method, self.url, call.path), undo: None })
    }

    async fn smoke_test(&self, ctx: &Ctx) -> Result<Done, StepError> {
        let (base, _forward) = local_url(&self.url, &self.cluster).await.map_err(StepError::Failed)?;
        if _forward.is_some() {
            ctx.note(&format!("# {} reached through a port-forward at {base}", self.url));
        }
        let base = base.as_str();
        let headers = crate::loadgen::headers(&self.headers.clone().unwrap_or_default())
            .map_err(|e| StepError::Failed(e.to_string()))?;
        let headers = &headers;
        if let Some(n) = self.workers {
            self.await_workers(ctx, base, headers, n).await?;
        }
        let (health, _) = self.call(ctx, base, "GET", "/health", None, headers).await?;
        if !(200..300).contains(&health) && health != 404 {
            return Err(StepError::Failed(format!("GET {}/health answered {health}", self.url)));
        }
        let (status, models) = self.call(ctx, base, "GET", "/v1/models", None, headers).await?;
        if status != 200 {
            return Err(StepError::Failed(format!("GET {}/v1/models answered {status}", self.url)));
        }
        let ids: Vec<String> = models
            .get("data")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter().filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string)).collect()
            })
            .unwrap_or_default();
        let model = match &self.model {
            Some(m) if ids.contains(m) => m.clone(),
            Some(m) => {
                return Err(StepError::Failed(format!(
                    "the server does not list the model `{m}`; /v1/models lists: {}",
                    if ids.is_empty() { "nothing".to_string() } else { ids.join(", ") }
                )));
            }
            None => {
                ids.first().cloned().ok_or_else(|| StepError::Failed("/v1/models lists no model".into()))?
            }
        };
        let body = json!({"model": model, "prompt": "Hello, my name is", "max_tokens": 8, "temperature": 0});
        let t0 = Instant::now();
        let (status, answer) = self.call(ctx, base, "POST", "/v1/completions", Some(&body), headers).await?;
        if status != 200 {
            return Err(StepError::Failed(format!("POST {}/v1/completions answered {status}", self.url)));
        }
        let tokens = answer.pointer("/usage/completion_tokens").and_then(Value::as_u64).unwrap_or(0);
        if answer.pointer("/choices/0/text").is_none() {
            return Err(StepError::Failed("the completion has no `choices[0].text`".into()));
        }
        Ok(Done {
            summary: format!(
                "health {health}, model {model}, completion of {tokens} tokens in {:.0} ms",
                t0.elapsed().as_secs_f64() * 1e3
            ),
            undo: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Call;

    #[test]
    fn a_request_needs_a_method_token_and_a_rooted_path() {
        let call = |method: &str, path: &str| Call { method: method.into(), path: path.into() }.check();
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
            assert_eq!(call(method, "/reset_prefix_cache"), Ok(()), "{method}");
        }
        for method in ["", "GE T", "POST\n", "(", "é"] {
            let e = call(method, "/x").expect_err(method);
            assert!(e.contains("request.method") && e.contains("e.g. GET"), "{e}");
        }
        for path in ["", "reset", " /x", "/a b", "/a\tb", "/a\nb"] {
            let e = call("POST", path).expect_err(path);
            assert!(e.contains("request.path") && e.contains("start with `/`"), "{e}");
        }
    }
}
