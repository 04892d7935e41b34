//! Scrapes `/metrics` while the load runs (the endpoint's, or each engine's behind a router),
//! into `results/server_metrics.csv` (long format: time, metric, labels, value, target;
//! histogram buckets are skipped), each exposition read by [`super::exposition`]. The targets of one round are scraped together and share its
//! time. The first round is taken before the load starts and the last after it ends, so the
//! counters' differences are the run's.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use tokio::sync::watch;

use super::client::Target;

/// A server whose `/metrics` to scrape, by the name its rows carry (`replica-0`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeTarget {
    pub name: String,
    pub url: String,
}

/// Scrapes every `every` until `stop` turns true. Returns how many rounds succeeded for every
/// target, and the last failure if any (a server without `/metrics` is not an error for the
/// run).
pub(crate) async fn run(
    targets: Vec<(String, Target)>,
    path: std::path::PathBuf,
    t0: Instant,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    first_round: tokio::sync::oneshot::Sender<()>,
) -> (u64, Option<String>) {
    let mut first_round = Some(first_round);
    let Ok(file) = std::fs::File::create(&path) else {
        return (0, Some(format!("cannot create {}", path.display())));
    };
    let mut out = std::io::BufWriter::new(file);
    let _ = writeln!(out, "t_s,metric,labels,value,target");
    let (mut ok, mut last_err) = (0, None);
    let mut tick = tokio::time::interval(every);
    // After the load, one last round (its counters are the run's totals), bounded by a second.
    let mut last = false;
    loop {
        if !last {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => last = true,
            }
        }
        let limit = if last { every.min(Duration::from_secs(1)) } else { every };
        let round = futures::future::join_all(
            targets.iter().map(|(_, t)| async move { tokio::time::timeout(limit, fetch(t)).await }),
        );
        let scrapes = match last {
            true => round.await,
            // A round under way when the load ends gives way to the last one.
            false => tokio::select! {
                r = round => r,
                _ = stop.changed() => {
                    last = true;
                    continue;
                }
            },
        };
        let t = t0.elapsed().as_secs_f64();
        let mut all = true;
        for ((name, _), scrape) in targets.iter().zip(scrapes) {
            match scrape {
                Ok(Ok(text)) => {
                    if let Some(e) = write_rows(&mut out, t, name, &text) {
                        last_err = Some(format!("{name}: {e}"));
                    }
                }
                Ok(Err(e)) => (all, last_err) = (false, Some(format!("{name}: {e}"))),
                Err(_) => (all, last_err) = (false, Some(format!("{name}: timed out"))),
            }
        }
        let _ = out.flush();
        ok += u64::from(all);
        // The load waits for the first round: counters before it are the baseline.
        if let Some(tx) = first_round.take() {
            let _ = tx.send(());
        }
        if last {
            break;
        }
    }
    let _ = out.flush();
    (ok, last_err)
}

/// `GET /metrics` of `target`, as text.
pub(super) async fn fetch(target: &Target) -> Result<String, String> {
    let mut conn = crate::net::open(target.addr, target.tls.as_ref()).await.map_err(|e| e.to_string())?;
    let mut req = Request::get("/metrics")
        .header(hyper::header::HOST, target.authority.clone())
        .body(Full::default())
        .map_err(|e| e.to_string())?;
    for (k, v) in &target.headers {
        req.headers_mut().insert(k, v.clone());
    }
    conn.ready().await.map_err(|e| e.to_string())?;
    let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("/metrics answered {}", resp.status()));
    }
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The rows of one target's exposition scraped at `t`; the first line out of the format, if
/// any (it is left out, the others kept).
fn write_rows(
    out: &mut impl Write,
    t: f64,
    target: &str,
    text: &str,
) -> Option<super::exposition::ExpositionError> {
    let mut first_error = None;
    for sample in super::exposition::samples(text) {
        match sample {
            Ok(s) if kept(&s.name) => {
                // A label may hold anything the server saw, a key sent to it too.
                let labels = crate::redact::text(&s.labels_text()).replace('"', "\"\"");
                let _ = writeln!(out, "{t:.3},{},\"{labels}\",{},{target}", s.name, s.value);
            }
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error
}

/// The samples `server_metrics.csv` keeps: vLLM's, not a histogram's buckets, nor a
/// counter's creation time.
fn kept(metric: &str) -> bool {
    metric.starts_with("vllm:") && !metric.ends_with("_bucket") && !metric.ends_with("_created")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_keep_vllm_samples_with_their_labels_and_values_and_name_a_bad_line() {
        let text = "# TYPE vllm:num_requests_running gauge\n\
                    vllm:num_requests_running{model_name=\"a \\\"b\\\", c\",engine=\"0\"} 3 1765100000123\n\
                    vllm:e2e_request_latency_seconds_bucket{le=\"+Inf\"} 9\n\
                    vllm:prompt_tokens_created 1.7e9\n\
                    process_cpu_seconds_total 12.5\n\
                    vllm:broken{x=1} 2\n\
                    vllm:prompt_tokens_total +Inf\n";
        let mut out = Vec::new();
        let e = super::write_rows(&mut out, 1.5, "replica-0", text).unwrap();
        assert_eq!(e.line, 6, "{e}");
        let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(out.as_slice());
        let rows: Vec<Vec<String>> =
            r.records().map(|r| r.unwrap().iter().map(String::from).collect()).collect();
        assert_eq!(
            rows,
            [
                [
                    "1.500",
                    "vllm:num_requests_running",
                    "model_name='a \"b\", c',engine='0'",
                    "3",
                    "replica-0"
                ],
                ["1.500", "vllm:prompt_tokens_total", "", "inf", "replica-0"],
            ],
            "the timestamp is not the value; buckets, _created and other exporters' samples left out"
        );
    }
}
