//! Secrets by rule: a canary planted through every way a secret enters benchflow (an API key,
//! a header, a nested variable, a `--set`, an engine's environment), a server and commands
//! that echo them back every way they can (smoke-test answers, error texts, metric labels,
//! engine and command output, `between_points: exec`), plain, URL-encoded and base64; then
//! every file written, the archive's contents and the terminal output are searched for them.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;

use crate::support::{Project, state, text};

/// Each canary carries characters that URL encoding changes (`/`, `+`, `=`, a space).
const KEY: &str = "sk-canary-KEY/7Q2x+9Z"; // workload api.api_key: env:BF_CANARY_KEY
const HDR: &str = "hdr-canary-HDR=5b8c d1"; // workload api.headers.X-Canary-Token: env:BF_CANARY_HDR
const VAR: &str = "var-canary-VAR/3e4f"; // scenario vars.credentials.value: env:BF_CANARY_VAR
const SET: &str = "set-canary-SET+9a0b"; // --set vars.api_keys=[env:BF_CANARY_SET]
const ENG: &str = "hf-canary-ENG=1c2d"; // scenario engine.env.HF_TOKEN: env:BF_CANARY_ENG
const ALL: [&str; 5] = [KEY, HDR, VAR, SET, ENG];

fn percent(s: &str, plus: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            b' ' if plus => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How the echo server and the commands give a secret back: plain, URL-encoded (both
/// spellings of a space), base64 alone and inside `Basic user:secret`.
fn echoes(s: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "plain={s} url={} form={} b64={} basic=Basic {}",
        percent(s, false),
        percent(s, true),
        b64.encode(s),
        b64.encode(format!("bob:{s}"))
    )
}

/// Where a canary is found in `bytes`, if anywhere: as written, URL-encoded, or in any
/// base64 run that decodes (at any offset, either alphabet) to text holding it. The last is
/// the independent check of the redaction of base64: whatever was left must not decode to it.
fn found(bytes: &[u8]) -> Option<String> {
    let hay = String::from_utf8_lossy(bytes);
    for c in ALL {
        for (how, form) in [("plain", c.to_string()), ("url", percent(c, false)), ("form", percent(c, true))]
        {
            if hay.contains(&form) {
                return Some(format!("{c} ({how})"));
            }
        }
    }
    let is_b64 = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '+' | '/' | '-' | '_');
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient = GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let engines = [
        GeneralPurpose::new(&base64::alphabet::STANDARD, lenient),
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient),
    ];
    for run in hay.split(|ch: char| !is_b64(ch)).filter(|r| r.len() >= 16) {
        for offset in 0..4 {
            let part = &run[offset..];
            // A last group of one character encodes nothing whole.
            let part = if part.len() % 4 == 1 { &part[..part.len() - 1] } else { part };
            for engine in &engines {
                if let Ok(decoded) = engine.decode(part) {
                    let decoded = String::from_utf8_lossy(&decoded);
                    if let Some(c) = ALL.iter().find(|c| decoded.contains(**c)) {
                        return Some(format!("{c} (base64 {run})"));
                    }
                }
            }
        }
    }
    None
}

/// The search finds every form the front and the commands echo, and nothing in what the
/// redaction leaves of them.
#[test]
fn the_search_finds_every_echoed_form() {
    let b64 = base64::engine::general_purpose::STANDARD;
    for c in ALL {
        for form in [
            c.to_string(),
            percent(c, false),
            percent(c, true),
            b64.encode(c),
            b64.encode(format!("bob:{c}")),
            base64::engine::general_purpose::URL_SAFE.encode(format!("x{c}")),
        ] {
            assert!(found(format!("x {form} y").as_bytes()).is_some(), "{c}: {form}");
        }
    }
    assert_eq!(found(b"plain=[redacted] url=[redacted] b64=[redacted]== basic=Basic Ym9iO[redacted]"), None);
}

/// Every file under `dir`, and inside each `.tar.gz` (an archive) every member: where a
/// canary is found is added to `leaks`. Returns how many files were searched.
fn scan_tree(dir: &Path, leaks: &mut Vec<String>) -> usize {
    let mut scanned = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            scanned += scan_tree(&path, leaks);
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            if let Some(what) = found(&bytes) {
                leaks.push(format!("{what} in {}", path.display()));
            }
            if path.to_string_lossy().ends_with(".tar.gz") {
                let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
                for member in tar.entries().unwrap() {
                    let mut member = member.unwrap();
                    let name = member.path().unwrap().display().to_string();
                    let mut content = Vec::new();
                    std::io::Read::read_to_end(&mut member, &mut content).unwrap();
                    if let Some(what) = found(&content) {
                        leaks.push(format!("{what} in {name} of the archive {}", path.display()));
                    }
                    scanned += 1;
                }
            }
            scanned += 1;
        }
    }
    scanned
}

type Body = BoxBody<Bytes, hyper::Error>;

fn full(text: String) -> Body {
    Full::new(Bytes::from(text)).map_err(|never| match never {}).boxed()
}

/// A front for the engine that echoes every secret it is sent back every way a server might:
/// in `/health` (the smoke test's log), `/v1/models`, a label of `/metrics`, and the error
/// text of every fifth completion (a 401 naming the key); the other completions go to the
/// engine at `backend`.
fn echo_front(backend: SocketAddr) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let count = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let count = count.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(req, backend, count.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
    });
    url
}

async fn answer(
    req: Request<Incoming>,
    backend: SocketAddr,
    count: Arc<AtomicU64>,
) -> Result<Response<Body>, hyper::Error> {
    let sent: Vec<String> = req
        .headers()
        .iter()
        .filter(|(k, _)| *k == "authorization" || *k == "x-canary-token")
        .filter_map(|(_, v)| v.to_str().ok())
        .map(|v| echoes(v.strip_prefix("Bearer ").unwrap_or(v)))
        .collect();
    let echo = sent.join(" ");
    let path = req.uri().path().to_string();
    let forward = async |req: Request<Incoming>| -> Result<Response<Incoming>, hyper::Error> {
        let tcp = tokio::net::TcpStream::connect(backend).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        sender.send_request(Request::from_parts(parts, Full::new(body))).await
    };
    let reply = |status: u16, text: String| Response::builder().status(status).body(full(text)).unwrap();
    Ok(match path.as_str() {
        "/health" => reply(200, format!("ok, you sent {echo}")),
        "/v1/models" => {
            let resp = forward(req).await?;
            let mut models: serde_json::Value =
                serde_json::from_slice(&resp.into_body().collect().await?.to_bytes()).unwrap_or_default();
            models["echo"] = serde_json::Value::String(echo);
            reply(200, models.to_string())
        }
        "/metrics" => {
            let resp = forward(req).await?;
            let mut text =
                String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
            text.push_str(&format!("vllm:canary_echo{{sent=\"{}\"}} 1\n", echo.replace('"', "'")));
            reply(200, text)
        }
        "/v1/completions" if count.fetch_add(1, Ordering::Relaxed) % 5 == 4 => reply(
            401,
            serde_json::json!({"error": {"message": format!("invalid key: {echo}"), "type": "auth"}})
                .to_string(),
        ),
        _ => forward(req).await?.map(|b| b.boxed()),
    })
}

const PIPELINE: &str = r#"# The local pipeline with the load through the echo front, and commands that print secrets.
steps:
  - name: start_engine
    phase: standup
    kind: spawn
    with:
      command: [sh, -c, 'echo "engine sees HF_TOKEN=$HF_TOKEN"; printf %s "$HF_TOKEN" | base64; exec "$0" sim --port "$1" --profile tiny/cpu', "{{ run.bin }}", "{{ run.port }}"]
      env: "{{ engine.env }}"
      ready_url: "{{ endpoint.url }}/health"
      ready_timeout: 30
  - name: show
    phase: standup
    kind: exec
    after: [start_engine]
    with:
      command: [sh, -c, 'echo "exec sees $CRED and $KEYS"; printf %s "$CRED" | base64; printf "%s" "bob:$KEYS" | base64']
      env: { CRED: "{{ vars.credentials.value }}", KEYS: "{{ vars.api_keys[0] }}" }
  - name: smoke_test
    phase: standup
    kind: http
    after: [start_engine]
    with:
      url: "{{ vars.front }}"
  - name: load
    phase: run
    kind: harness
    after: [smoke_test, show]
    with:
      kind: builtin
      endpoint: "{{ vars.front }}"
      workload_dir: "{{ run.workload_dir }}"
      scrape_every: 0.2
  - name: analyze
    phase: analyze
    kind: analyze
    after: [load]
    with:
      convention: vllm
"#;

const WORKLOAD: &str = "seed: 5\napi: { api_key: env:BF_CANARY_KEY, headers: { X-Canary-Token: env:BF_CANARY_HDR } }\ndataset: { random: { input_len: 16, output_len: 8 } }\nstages: [ { concurrency: 2, requests: 20 } ]\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A project whose commands see the canaries in their environment, with the echo front in
/// front of the engine's port.
fn canary_project(tag: &str) -> Project {
    let p = Project::new(tag)
        .with_env("BF_CANARY_KEY", KEY)
        .with_env("BF_CANARY_HDR", HDR)
        .with_env("BF_CANARY_VAR", VAR)
        .with_env("BF_CANARY_SET", SET)
        .with_env("BF_CANARY_ENG", ENG);
    let port = free_port();
    let front = echo_front(SocketAddr::from(([127, 0, 0, 1], port)));
    let scenario = format!(
        "platform: local\npipeline: canary\nengine: {{ kind: sim, profile: tiny/cpu, port: {port}, env: {{ HF_TOKEN: env:BF_CANARY_ENG }} }}\nvars:\n  front: {front}\n  credentials: {{ value: env:BF_CANARY_VAR }}\n  api_keys: [env:BF_CANARY_KEY]\n"
    );
    p.file("pipelines/canary.yaml", PIPELINE)
        .file("scenarios/canary.yaml", &scenario)
        .file("workloads/canary.yaml", WORKLOAD);
    p
}

/// Runs a command and asserts its exit code; a canary in its terminal output is added to
/// `leaks`.
fn run_checked(p: &Project, args: &[&str], code: i32, leaks: &mut Vec<String>) {
    let out = p.run(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "{args:?}\n{stdout}\n{stderr}");
    for (name, t) in [("stdout", &stdout), ("stderr", &stderr)] {
        if let Some(what) = found(t.as_bytes()) {
            leaks.push(format!("{what} on the {name} of {args:?}"));
        }
    }
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn canaries_planted_everywhere_are_written_nowhere() {
    let p = canary_project("canary-e2e");
    let mut leaks = Vec::new();
    let set = "vars.api_keys=[env:BF_CANARY_SET]";
    run_checked(&p, &["e2e", "-c", "canary", "-w", "canary", "--set", set, "--workdir", "wd"], 0, &mut leaks);
    let wd = p.path("wd");
    assert_eq!(state(&wd)["steps"]["04_load"]["status"], "done");
    // The echoes happened, and each place that would have held a canary holds the mark: one
    // check per way a secret came back (each failed before redaction applied there).
    let mut expect = |class: &str, file: PathBuf, mark: &str| {
        let text = read(file.clone());
        if !text.contains(mark) {
            leaks.push(format!("{class}: no `{mark}` in {}", file.display()));
        }
    };
    expect("engine output", wd.join("setup/commands/01_start_engine.log"), "engine sees HF_TOKEN=[redacted]");
    expect("exec output", wd.join("setup/commands/02_show.log"), "exec sees [redacted] and [redacted]");
    expect(
        "smoke test log",
        wd.join("setup/commands/03_smoke_test.log"),
        "you sent plain=[redacted] url=[redacted]",
    );
    expect(
        "metric label",
        wd.join("results/latest/server_metrics.csv"),
        "vllm:canary_echo,\"sent='plain=[redacted]",
    );
    expect("records", wd.join("results/latest/requests.csv"), "invalid key: plain=[redacted] url=[redacted]");
    run_checked(&p, &["status", "wd"], 0, &mut leaks);
    run_checked(&p, &["archive", "wd"], 0, &mut leaks);
    assert!(p.path("wd.tar.gz").is_file());

    // An experiment on the same inputs, with a command between its points that prints the
    // key from benchflow's own environment.
    p.file(
        "experiments/canary.yaml",
        "base: { scenario: canary, workload: canary, set: ['vars.api_keys=[env:BF_CANARY_SET]'] }\nfactors:\n  workload.seed: [1, 2]\nbetween_points: [ { exec: [sh, -c, 'echo \"between sees $BF_CANARY_KEY\"; printf %s \"$BF_CANARY_KEY\" | base64'] } ]\n",
    );
    run_checked(&p, &["experiment", "-e", "canary", "--workdir", "exp"], 0, &mut leaks);
    let between = walk(&p.path("exp"))
        .into_iter()
        .filter(|f| {
            f.to_string_lossy().contains("between_1_exec") && f.extension().is_some_and(|x| x == "log")
        })
        .map(read)
        .collect::<String>();
    if !between.contains("between sees [redacted]") {
        leaks.push(format!("between_points exec output: {between}"));
    }

    let scanned = scan_tree(&p.dir.0, &mut leaks);
    assert!(scanned > 50, "only {scanned} files scanned");
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Refused at plan time, exit 2, the value never shown, nothing written: a literal at any depth
/// under a secret-looking key, through any input; a URL with credentials.
#[test]
fn literal_secrets_and_url_credentials_are_refused_before_anything_is_written() {
    let p = canary_project("canary-refusals");
    p.file(
        "scenarios/nested.yaml",
        "platform: local\nengine: { kind: sim }\nvars: { credentials: { value: lit3ral-nested } }\n",
    )
    .file("scenarios/listed.yaml", "platform: local\nengine: { kind: sim }\nvars: { api_keys: [env:A, lit3ral-listed] }\n")
    .file(
        "pipelines/literal.yaml",
        "steps:\n  - { name: call, phase: run, kind: exec, with: { command: [sh, -c, 'true'], env: { API_TOKEN: lit3ral-pipeline } } }\n",
    )
    .file("scenarios/literalpipe.yaml", "platform: local\npipeline: literal\nengine: { kind: sim }\n")
    .file(
        "experiments/levels.yaml",
        "base: { scenario: canary, workload: canary }\nfactors:\n  vars.api_keys.0: [lit3ral-level-a, lit3ral-level-b]\n",
    )
    .file(
        "experiments/constant.yaml",
        "base: { scenario: canary, workload: canary }\nconstants:\n  vars.credentials: { value: lit3ral-constant }\nfactors:\n  workload.seed: [1, 2]\n",
    )
    .file(
        "experiments/baseset.yaml",
        "base: { scenario: canary, workload: canary, set: ['vars.credentials.value=lit3ral-baseset'] }\nfactors:\n  workload.seed: [1, 2]\n",
    );
    let cases: &[(&[&str], &str)] = &[
        (&["e2e", "-c", "nested", "--workdir", "r1"], "vars.credentials.value"),
        (&["e2e", "-c", "listed", "--workdir", "r2"], "vars.api_keys.1"),
        (
            &["e2e", "-c", "canary", "--set", "vars.credentials.value=lit3ral-set", "--workdir", "r3"],
            "vars.credentials.value",
        ),
        (
            &["e2e", "-c", "canary", "--set", "vars.api_keys=[lit3ral-setlist]", "--workdir", "r4"],
            "vars.api_keys.0",
        ),
        (
            &["e2e", "-c", "canary", "--set", "engine.env.HF_TOKEN=lit3ral-env", "--workdir", "r5"],
            "engine.env.HF_TOKEN",
        ),
        (&["experiment", "-e", "levels", "--workdir", "r6"], "vars.api_keys.0"),
        (&["experiment", "-e", "constant", "--workdir", "r7"], "vars.credentials.value"),
        (&["experiment", "-e", "baseset", "--workdir", "r8"], "vars.credentials.value"),
        (&["run", "--endpoint", "http://bob:lit3ral-userinfo@127.0.0.1:9", "--workdir", "r9"], "engine.url"),
        (&["e2e", "-c", "literalpipe", "--workdir", "r11"], "with.env.API_TOKEN"),
        (
            &[
                "e2e",
                "-c",
                "canary",
                "--set",
                "vars.front=https://lit3ral-user@127.0.0.1:9",
                "--workdir",
                "r10",
            ],
            "vars.front",
        ),
    ];
    for (args, path) in cases {
        let out = p.run(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(path) && (err.contains("env:NAME") || err.contains("api_key: env:")),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("lit3ral") && !text(&out.stdout).contains("lit3ral"),
            "{args:?} shows the value: {err}"
        );
    }
    for dir in ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11"] {
        assert!(!p.path(dir).exists(), "{dir} was written");
    }
}
