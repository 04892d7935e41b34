//! `benchflow tools`: the external tools, pinned, installed by benchflow into a directory of
//! their own, for real from PyPI; the installed vLLM router works in front of two simulators.

use std::time::Duration;

use crate::support::{Project, metric_value, spawn_sim, text};

fn project(tag: &str) -> Project {
    let p = Project::new(tag);
    let home = p.path("tools").to_string_lossy().to_string();
    p.with_env("BENCHFLOW_TOOLS_DIR", &home)
}

#[test]
fn the_list_shows_every_tool_pinned_and_unknown_names_are_refused() {
    let p = project("tools-list");
    let out = p.run(&["tools", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for row in
        ["vllm-router     0.1.17", "guidellm        0.8.1", "inference-perf  0.7.0", "aiperf          0.13.0"]
    {
        assert!(shown.contains(row), "{row}: {shown}");
    }
    assert!(shown.contains(">=3.11,<3.14") && shown.contains("Pythons found:"), "{shown}");
    assert!(!shown.contains("yes:"), "nothing is installed in a new directory: {shown}");
    let out = p.run(&["tools", "install", "locust"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("benchflow installs: vllm-router, guidellm"), "{}", text(&out.stderr));
}

#[test]
fn the_installed_vllm_router_balances_two_simulators() {
    let p = project("tools-router");
    let out = p.run(&["tools", "install", "vllm-router"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path("tools/vllm-router-0.1.17/tool.json")).unwrap())
            .unwrap();
    assert_eq!(record["version"], "0.1.17");
    assert!(record["packages"].as_array().unwrap().iter().any(|p| p == "vllm-router==0.1.17"), "{record}");
    let shown = text(&p.run(&["tools", "list"]).stdout);
    assert!(shown.contains("yes: "), "{shown}");
    // The real router, round robin over two simulators: each gets half of the requests.
    let (a, url_a) = spawn_sim(&["--profile", "tiny/cpu"]);
    let (b, url_b) = spawn_sim(&["--profile", "tiny/cpu"]);
    let free =
        || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let (port, metrics_port) = (free(), free());
    // Its Prometheus exporter has a fixed default port: two routers at once need two.
    let router = std::process::Command::new(record["bin"].as_str().unwrap())
        .args(["--host", "127.0.0.1", "--port", &port, "--prometheus-port", &metrics_port])
        .args(["--policy", "round_robin", "--worker-urls", &url_a, &url_b])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(p.path("router.log")).unwrap())
        .spawn()
        .unwrap();
    let _running = Killed(vec![a, b, router]);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while get(&format!("{base}/v1/models")).is_none() {
        let log = std::fs::read_to_string(p.path("router.log")).unwrap_or_default();
        assert!(std::time::Instant::now() < deadline, "the router does not answer: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..4 {
        let body = r#"{"model": "tiny-sim", "prompt": "hello there", "max_tokens": 4}"#;
        let reply = post(&format!("{base}/v1/completions"), body).expect("a completion through the router");
        assert!(reply.contains("\"choices\""), "{reply}");
    }
    for url in [&url_a, &url_b] {
        let metrics = get(&format!("{url}/metrics")).unwrap();
        let served = metric_value(
            &metrics,
            "vllm:request_success_total{engine=\"0\",model_name=\"tiny-sim\",finished_reason=\"length\"}",
        );
        assert_eq!(served, Some(2.0), "{url}: {metrics}");
    }
}

/// Child processes killed when the test ends, passed or not.
struct Killed(Vec<std::process::Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP/1.1 GET: the body, or `None` when nothing answers 200.
fn get(url: &str) -> Option<String> {
    request("GET", url, "")
}

fn post(url: &str, body: &str) -> Option<String> {
    request("POST", url, body)
}

fn request(method: &str, url: &str, body: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}
