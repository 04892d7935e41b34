//! Test support: an in-process simulator per test and a small, strict HTTP/SSE client.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use benchflow::{SimConfig, SimError};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, body::Incoming};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};

/// A simulator serving on a free loopback port for the duration of a test.
pub struct TestSim {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub handle: Option<JoinHandle<Result<(), SimError>>>,
}

impl TestSim {
    /// Starts a simulator from a profile plus `--set`-style overrides.
    pub async fn start(profile: &str, sets: &[&str]) -> Self {
        let cfg = SimConfig::profile(profile).unwrap().apply_sets(sets).unwrap();
        Self::with_config(cfg).await
    }

    pub async fn with_config(cfg: SimConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(benchflow::serve(cfg, listener, async {
            let _ = rx.await;
        }));
        TestSim { addr, stop: Some(tx), handle: Some(handle) }
    }

    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        request(self.addr, "POST", path, &[], Some(body)).await
    }

    pub async fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
        request(self.addr, "POST", path, headers, Some(body)).await
    }

    /// The current value of a metric sample line starting with `prefix` (name plus labels).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let text = self.get("/metrics").await.text();
        metric_value(&text, prefix).unwrap_or_else(|| panic!("no metric {prefix} in:\n{text}"))
    }
}

impl Drop for TestSim {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Finds `prefix ... value` in a Prometheus text exposition.
pub fn metric_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A response, with the arrival time of every body frame.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
    pub sent: Instant,
    pub frames: Vec<(Instant, Bytes)>,
    /// Set when the body ended with an error (e.g. the connection was cut).
    pub body_error: Option<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Parses the body as an SSE stream, strictly; returns each event with its arrival time.
    pub fn sse(&self) -> Result<Vec<(Instant, SseEvent)>, String> {
        let mut out = Vec::new();
        let mut pending = String::new();
        let mut done = false;
        for (t, frame) in &self.frames {
            pending.push_str(std::str::from_utf8(frame).map_err(|e| e.to_string())?);
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                let event = &event[..event.len() - 2];
                if done {
                    return Err(format!("event after [DONE]: {event:?}"));
                }
                let data =
                    event.strip_prefix("data: ").ok_or_else(|| format!("not a data line: {event:?}"))?;
                if data.contains('\n') {
                    return Err(format!("multi-line event: {event:?}"));
                }
                if data == "[DONE]" {
                    done = true;
                    out.push((*t, SseEvent::Done));
                } else {
                    let v: Value =
                        serde_json::from_str(data).map_err(|e| format!("bad JSON {data:?}: {e}"))?;
                    out.push((*t, SseEvent::Json(v)));
                }
            }
        }
        if !pending.is_empty() {
            return Err(format!("trailing bytes without a blank line: {pending:?}"));
        }
        Ok(out)
    }

    /// Arrival times of content chunks (non-empty `choices`) relative to the send time.
    pub fn chunk_times(&self) -> Vec<f64> {
        self.sse()
            .unwrap()
            .iter()
            .filter_map(|(t, e)| match e {
                SseEvent::Json(v) if v["choices"].as_array().is_some_and(|c| !c.is_empty()) => {
                    Some(t.duration_since(self.sent).as_secs_f64())
                }
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SseEvent {
    Json(Value),
    Done,
}

/// One request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    try_request(addr, method, path, headers, body).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<Reply, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(http_body_util::Full::new(Bytes::from(payload))).unwrap();
    let sent = Instant::now();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let (frames, body_error) = read_frames(resp.into_body()).await;
    let body = frames.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    Ok(Reply { status, headers, body, sent, frames, body_error })
}

async fn read_frames(mut body: Incoming) -> (Vec<(Instant, Bytes)>, Option<String>) {
    let mut frames = Vec::new();
    loop {
        match body.frame().await {
            None => return (frames, None),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    frames.push((Instant::now(), data));
                }
            }
            Some(Err(e)) => return (frames, Some(e.to_string())),
        }
    }
}

/// A streaming completion request body.
pub fn completion(prompt: &str, max_tokens: u32) -> Value {
    serde_json::json!({
        "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": true, "stream": true,
        "stream_options": { "include_usage": true },
    })
}

/// A prompt of exactly `n` tokens under the default `bytes4` rule (n words of 3 letters).
pub fn prompt_of(n: usize) -> String {
    let mut s = String::with_capacity(n * 4);
    for i in 0..n {
        s.push_str(["abc ", "def ", "ghi ", "jkl "][i % 4]);
    }
    s
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// Waits until `f` is true, polling; panics after `limit`.
pub async fn eventually<F: AsyncFnMut() -> bool>(limit: Duration, mut f: F) {
    let end = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < end, "condition not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The compiled `benchflow` binary.
pub fn benchflow() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_benchflow"))
}

/// Starts `benchflow sim --port 0 ARGS` and reads the address from its first stdout line.
/// Returns the child (the caller owns its lifetime) and the base URL.
pub fn spawn_sim(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = benchflow()
        .args(["sim", "--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("http://"), "first line: {line:?}");
    (child, url)
}

/// A process's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// A work directory's `state.json`.
pub fn state(wd: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(wd.join("state.json")).unwrap()).unwrap()
}

/// Polls a condition on files or processes outside this test (blocking tests).
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "{what}: not reached within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails if any file under `dir` contains one of `needles` (secrets that must not be written).
pub fn assert_absent(dir: &std::path::Path, needles: &[&str]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_absent(&path, needles);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            for n in needles {
                assert!(!bytes.windows(n.len()).any(|w| w == n.as_bytes()), "{n} in {}", path.display());
            }
        }
    }
}

/// The test-only TLS material (`fixtures/tls/README.md`).
pub fn tls_fixture(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/fixtures/tls").join(file)
}

/// A TLS acceptor with the fixture certificate for 127.0.0.1, signed by the fixture CA.
pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(tls_fixture("cert.pem")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(tls_fixture("key.pem")).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// A TLS front for `backend` (`host:port`), with the fixture certificate for 127.0.0.1 signed by
/// the fixture CA; returns its `https://` address. Serves until the test process ends.
pub fn tls_front(backend: String) -> String {
    let acceptor = tls_acceptor();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, backend) = (acceptor.clone(), backend.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
    });
    url
}

/// A temporary project directory with its own files (`scenarios/`, `workloads/`, …); benchflow
/// runs inside it, stdin closed, with the environment given.
pub struct Project {
    pub dir: crate::loadgen::TempDir,
    env: Vec<(String, String)>,
}

/// A test that failed half-way leaves no engine behind: every work directory of the project
/// that still records something up is torn down (before the folder itself is removed).
impl Drop for Project {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut dirs = vec![self.dir.0.clone()];
        let mut up = Vec::new();
        while let Some(d) = dirs.pop() {
            if std::fs::read_dir(d.join("setup/undo")).is_ok_and(|mut e| e.next().is_some()) {
                up.push(d.clone());
            }
            let children = std::fs::read_dir(&d).into_iter().flatten().flatten();
            dirs.extend(children.filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
        for d in up {
            let _ = self.cmd(&["teardown", &d.display().to_string(), "-q"]).output();
        }
    }
}

impl Project {
    pub fn new(tag: &str) -> Self {
        Project { dir: crate::loadgen::TempDir::new(tag), env: Vec::new() }
    }

    /// With `key=value` in every command's environment.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.0.join(rel)
    }

    pub fn file(&self, rel: &str, text: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    pub fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = benchflow();
        c.args(args).current_dir(&self.dir.0).env_remove("NO_COLOR").stdin(std::process::Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd(args).output().unwrap()
    }
}

/// The tools the tests install, once for every test run here (a fresh CI machine installs them
/// once); the node agent's harness pods find them there too, as in an image that has them.
pub fn tools_home() -> String {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("benchflow-tools")
        .to_string_lossy()
        .into_owned()
}

/// Pids of live processes whose environment holds `var=value` (a command and every process it
/// started, which inherit its environment), read from /proc; zombies are not alive.
pub fn tagged(var: &str, value: &str) -> Vec<i32> {
    let needle = format!("{var}={value}\0");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')));
        if !zombie && env.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// Every file under `dir` (its path relative to `dir` → a digest of its bytes), but files and
/// directories named in `skip`: to tell whether a tree changed, and which files.
pub fn digests(dir: &std::path::Path, skip: &[&str]) -> std::collections::BTreeMap<std::path::PathBuf, u64> {
    fn walk(
        base: &std::path::Path,
        dir: &std::path::Path,
        skip: &[&str],
        out: &mut std::collections::BTreeMap<std::path::PathBuf, u64>,
    ) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let path = e.path();
            if e.file_name().to_str().is_some_and(|n| skip.contains(&n)) {
                continue;
            }
            if path.is_dir() {
                walk(base, &path, skip, out);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let mut h = std::hash::DefaultHasher::new();
                std::hash::Hash::hash(&bytes, &mut h);
                out.insert(path.strip_prefix(base).unwrap().to_path_buf(), std::hash::Hasher::finish(&h));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, skip, &mut out);
    out
}
