//! Scrapes the endpoint's `/metrics` while the load runs, into `results/server_metrics.csv`
//! (long format: time, metric, labels, value; histogram buckets are skipped).

use std::{
    io::Write,
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use tokio::sync::watch;

use super::client::{Target, connect};

/// Scrapes every `every` until `stop` turns true. Returns how many scrapes succeeded, and the
/// last failure if any (a server without `/metrics` is not an error for the run).
pub async fn run(
    target: Target,
    path: std::path::PathBuf,
    t0: Instant,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> (u64, Option<String>) {
    let Ok(file) = std::fs::File::create(&path) else {
        return (0, Some(format!("cannot create {}", path.display())));
    };
    let mut out = std::io::BufWriter::new(file);
    let _ = writeln!(out, "t_s,metric,labels,value");
    let (mut ok, mut last_err) = (0, None);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        // A scrape is bounded by the interval, and the end of the run does not wait for one.
        let scrape = tokio::select! {
            r = tokio::time::timeout(every, fetch(&target)) => r,
            _ = stop.changed() => break,
        };
        match scrape {
            Ok(Ok(text)) => {
                let t = t0.elapsed().as_secs_f64();
                for line in text.lines() {
                    if let Some((name, labels, value)) = parse_sample(line)
                        && name.starts_with("vllm:")
                        && !name.ends_with("_bucket")
                        && !name.ends_with("_created")
                    {
                        let _ = writeln!(out, "{t:.3},{name},\"{}\",{value}", labels.replace('"', "'"));
                    }
                }
                let _ = out.flush();
                ok += 1;
            }
            Ok(Err(e)) => last_err = Some(e),
            Err(_) => last_err = Some("timed out".into()),
        }
    }
    let _ = out.flush();
    (ok, last_err)
}

async fn fetch(target: &Target) -> Result<String, String> {
    let mut conn = connect(target).await.map_err(|e| e.to_string())?;
    let mut req = Request::get("/metrics")
        .header(hyper::header::HOST, target.authority.clone())
        .body(Full::default())
        .map_err(|e| e.to_string())?;
    for (k, v) in &target.headers {
        req.headers_mut().insert(k, v.clone());
    }
    let resp = conn.send(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("/metrics answered {}", resp.status()));
    }
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Splits `name{labels} value` (or `name value`).
pub fn parse_sample(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    match head.split_once('{') {
        Some((name, rest)) => Some((name, rest.strip_suffix('}')?, value)),
        None => Some((head, "", value)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_samples() {
        assert_eq!(super::parse_sample("vllm:x{a=\"1\"} 2.5"), Some(("vllm:x", "a=\"1\"", 2.5)));
        assert_eq!(super::parse_sample("up 1"), Some(("up", "", 1.0)));
        assert_eq!(super::parse_sample("# HELP x"), None);
    }
}
