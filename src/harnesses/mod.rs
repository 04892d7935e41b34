//! External harnesses: a benchflow workload run by a load generator people already trust
//! (aiperf, inference-perf, GuideLLM, `vllm bench serve`), installed by benchflow's tool installer ([`crate::tools`]).
//!
//! Each adapter is one file implementing [`Adapter`], listed once in `adapters!` below, and
//! does three things, and nothing else:
//!
//! * [`Adapter::check`]: at plan time, refuse what the tool cannot express, naming the field;
//! * [`Adapter::invocations`]: the workload as the tool's own command line or configuration file,
//!   one run of the tool per stage (and one for the warm-up), each in `results/native/<stage>/`
//!   with the command, the configuration, stdout and stderr, and the tool's own outputs (and
//!   [`Adapter::prompt_file`]: a file dataset's prompts in the tool's format);
//! * [`Adapter::parse`]: the tool's per-request export converted into benchflow's records, on the
//!   run's clock, so that the analysis, charts and report are the built-in's.
//!
//! It also names its tool ([`Adapter::tool_name`]: the [`tools::TOOLS`] entry that installs it,
//! whose name and version the plan, `run.json` and the Benchmark Report give) and what its
//! records lack ([`Adapter::caveat`]). Nothing outside this file matches on a harness kind.
//!
//! While the tool runs, benchflow scrapes `/metrics` and samples GPUs as for the built-in
//! ([`loadgen::Beside`]). The tool is given benchflow's word-level tokenizer ([`tokenizer`]):
//! there is no model hub, and with it the tool's token counts equal the simulator's.

pub(crate) mod aiperf;
pub(crate) mod guidellm;
pub(crate) mod inference_perf;
pub(crate) mod tokenizer;
pub(crate) mod vllm_bench;

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    datasets::{Prompt, PromptBody},
    loadgen::{self, Beside, LoadError, record::Msg},
    results::{ErrorKind, Record, RunInfo, StageWindow},
    spec::{
        harness::HarnessKind,
        workload::{DatasetSpec, Endpoint, Stage, Workload, env_reference},
    },
    tools,
};

/// One external tool's adapter: a unit struct named as its [`HarnessKind`] variant, in a file of
/// its own, listed once in `adapters!`.
pub(crate) trait Adapter: Sync {
    /// Its entry in [`tools::TOOLS`]: what installs and runs it, and its name and version in the
    /// plan, `run.json` and the Benchmark Report.
    fn tool_name(&self) -> &'static str;

    /// What its records lack against the built-in's, said in `run.json` and the report.
    fn caveat(&self) -> &'static str;

    /// The first workload field the tool cannot express (beyond what no adapter passes on).
    fn check(&self, _w: &Workload) -> Result<(), Refusal> {
        Ok(())
    }

    /// A file dataset's prompts in the tool's format: the file's name and text.
    fn prompt_file(&self, prompts: &[Prompt], w: &Workload) -> Result<(&'static str, String), HarnessError>;

    /// The runs of the tool: one per stage, and one for the warm-up if there is one.
    fn invocations(&self, w: &Workload, setup: &Setup) -> Vec<Invocation>;

    /// The file of per-request records the tool writes into an invocation's directory.
    fn records_file(&self) -> &'static str;

    /// Those records (`text`) as benchflow's, on the run's clock.
    fn parse(&self, text: &str, export: Export) -> Result<Vec<Record>, HarnessError>;
}

/// Where an export's records belong: its invocation's stage and whether that was the warm-up,
/// the run's clock, and the file (named in errors).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Export<'a> {
    pub stage: u32,
    pub warmup: bool,
    pub clock: &'a Clock,
    pub path: &'a Path,
}

/// The adapters: `Variant => module`, each module's unit struct `Variant` implementing
/// [`Adapter`]. The match is exhaustive: a [`HarnessKind`] without its line here does not build.
macro_rules! adapters {
    ($($variant:ident => $module:ident),* $(,)?) => {
        /// The adapter of an external tool's kind (`None`: the built-in).
        pub(crate) fn adapter(kind: HarnessKind) -> Option<&'static dyn Adapter> {
            match kind {
                HarnessKind::Builtin => None,
                $(HarnessKind::$variant => Some(&$module::$variant),)*
            }
        }
    };
}

adapters! {
    Aiperf => aiperf,
    InferencePerf => inference_perf,
    Guidellm => guidellm,
    VllmBench => vllm_bench,
}

/// Why an external harness could not run, or what it left could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HarnessError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("could not start {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("{tool} ({what}) exited with {status}; its output is in {dir}{tail}")]
    Failed { tool: String, what: String, status: String, dir: PathBuf, tail: String },
    #[error("{path}: {why}")]
    Native { path: PathBuf, why: String },
    #[error("the prompt file cannot be passed on: {why}")]
    Prompts { why: String },
    #[error("the {kind} harness is benchflow's own load generator, not an external tool")]
    NotExternal { kind: &'static str },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HarnessError + '_ {
    move |source| HarnessError::Io { path: path.to_path_buf(), source }
}

/// A workload field the tool cannot express, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Refusal {
    pub field: String,
    pub why: String,
}

impl Refusal {
    fn new(field: impl Into<String>, why: impl Into<String>) -> Refusal {
        Refusal { field: field.into(), why: why.into() }
    }
}

/// One run of the tool: a stage of the workload, or its warm-up (stage 0).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invocation {
    pub stage: u32,
    pub warmup: bool,
    pub label: String,
    /// Its own directory: the tool's outputs, the command, the configuration, stdout, stderr.
    pub dir: PathBuf,
    pub args: Vec<String>,
    /// A configuration file written into `dir` first: its name and text.
    pub config: Option<(String, String)>,
    pub duration: Option<f64>,
    pub requests: Option<u64>,
    /// The request rate asked of the stage (none for the warm-up and concurrency stages).
    pub rate: Option<f64>,
}

impl Invocation {
    /// The warm-up's run (stage 0), if the workload has one: `args` and `config` at its
    /// concurrency and request count.
    fn warmup(
        w: &Workload,
        setup: &Setup,
        args: Vec<String>,
        config: Option<(String, String)>,
    ) -> Invocation {
        Invocation {
            stage: 0,
            warmup: true,
            label: "warm-up".into(),
            dir: setup.dir(0, true),
            args,
            config,
            duration: None,
            requests: Some(u64::from(w.warmup.requests)),
            rate: None,
        }
    }

    /// Stage `n`'s run (from 1).
    fn stage(
        n: u32,
        stage: &Stage,
        setup: &Setup,
        args: Vec<String>,
        config: Option<(String, String)>,
    ) -> Invocation {
        Invocation {
            stage: n,
            warmup: false,
            label: stage.label(),
            dir: setup.dir(n, false),
            args,
            config,
            duration: stage.duration.map(|d| d.0),
            requests: stage.requests,
            rate: stage.asked_rate(),
        }
    }
}

/// How a failure that is not an HTTP status is classified, from the tool's error text and
/// whether the stream had begun: a timeout, a stream cut short, else no connection. Also its
/// status (200 once streaming began).
fn transport_error(text: &str, streamed: bool) -> (ErrorKind, u16) {
    let status = if streamed { 200 } else { 0 };
    if text.contains("Timeout") {
        (ErrorKind::Timeout, status)
    } else if streamed || text.contains("ClientPayloadError") || text.contains("RemoteProtocolError") {
        (ErrorKind::Aborted, status)
    } else {
        (ErrorKind::Connect, 0)
    }
}

/// Whether the prompts come from a file (ShareGPT, JSON lines, a shipped sample): benchflow
/// reads it as for the built-in (the same prompts, in the same seeded order, with the same
/// output lengths) and hands the tool a file of its own format ([`Setup::prompts`]).
fn from_file(w: &Workload) -> bool {
    matches!(w.dataset, DatasetSpec::Sharegpt(_) | DatasetSpec::Jsonl(_) | DatasetSpec::Sample(_))
}

/// A prompt as one text: a prompt string, or a conversation of one message. The tools' file
/// formats take a single turn; a conversation of several messages is refused when the file is
/// written, naming the prompt.
fn single_text(p: &Prompt, n: usize, tool: &str) -> Result<String, HarnessError> {
    match &p.body {
        PromptBody::Text(t) => Ok(t.clone()),
        PromptBody::Messages(m) if m.len() == 1 => Ok(m[0].1.clone()),
        PromptBody::Messages(m) => {
            let first: String = m[0].1.chars().take(40).collect();
            Err(HarnessError::Prompts {
                why: format!(
                    "prompt {} (in benchflow's order, its first message starting {first:?}) is a conversation of {} messages; \
                     the {tool} adapter passes one message per prompt",
                    n + 1,
                    m.len()
                ),
            })
        }
    }
}

/// [`json_lines`] written [`over_again`], for a tool that stops at the end of its data.
fn json_lines_over_again(
    prompts: &[Prompt],
    w: &Workload,
    tool: &str,
    line: impl Fn(String, u32) -> serde_json::Value,
) -> Result<String, HarnessError> {
    Ok(over_again(&json_lines(prompts, tool, line)?, prompts.len(), w))
}

/// A file dataset's prompts as JSON lines, one per prompt: `line(text, output length)`.
fn json_lines(
    prompts: &[Prompt],
    tool: &str,
    line: impl Fn(String, u32) -> serde_json::Value,
) -> Result<String, HarnessError> {
    let mut text = String::new();
    for (n, p) in prompts.iter().enumerate() {
        text += &line(single_text(p, n, tool)?, p.max_tokens).to_string();
        text.push('\n');
    }
    Ok(text)
}

/// Requests a run of unknown length gets from a prompt file, for a tool that stops at its data's
/// end.
const UNBOUNDED_REQUESTS: u64 = 100_000;

/// At most this much prompt text is written for such a tool (bytes), whatever the run needs.
const MAX_PROMPT_BYTES: usize = 256 << 20;

/// `once` (the text of `n` prompts) written over again, in the same order, as many times as
/// the workload's requests need, for a tool that stops at the end of its data where the
/// built-in cycles: 1.2× the expected count (for a Poisson schedule's luck), or 100,000 requests
/// when a stage runs for a duration at a concurrency; at most 256 MB of text.
fn over_again(once: &str, n: usize, w: &Workload) -> String {
    let needed = w.expected_requests().map_or(UNBOUNDED_REQUESTS, |n| n + n / 5 + 10);
    let copies = needed.div_ceil(n.max(1) as u64).max(1) as usize;
    once.repeat(copies.min((MAX_PROMPT_BYTES / once.len().max(1)).max(1)))
}

/// The prompt file written for the tool into `results/native/`, if the dataset is a file.
fn write_prompts(
    adapter: &dyn Adapter,
    opts: &loadgen::Options,
    native: &Path,
) -> Result<Option<PathBuf>, HarnessError> {
    let w = &opts.workload;
    if !from_file(w) {
        return Ok(None);
    }
    let prompts = crate::datasets::load(&w.dataset, w.seed, &opts.base_dir).map_err(LoadError::from)?;
    let (name, text) = adapter.prompt_file(&prompts, w)?;
    let path = native.join(name);
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(Some(path))
}

/// A request the tool saw succeed: HTTP 200, and a non-streamed one is one body at its end, as
/// the built-in records it.
fn succeeded(r: &mut Record) {
    r.status = 200;
    if r.chunks == 0 {
        r.chunks = 1;
        r.first_ns = Some(r.end_ns);
        r.last_ns = Some(r.end_ns);
    }
}

/// Where the tool is pointed.
pub(crate) struct Setup<'a> {
    pub url: &'a str,
    pub model: &'a str,
    pub tokenizer: &'a Path,
    /// `results/native/`: each invocation gets a directory in it.
    pub native: &'a Path,
    /// The prompts of a file dataset, in the tool's format (`None`: a synthetic dataset).
    pub prompts: Option<&'a Path>,
}

/// The adapters' tests: prompts from JSON-lines text, as a prompt file's.
#[cfg(test)]
fn test_prompts(jsonl: &str) -> Vec<Prompt> {
    crate::datasets::parse_jsonl(jsonl, "p.jsonl", None, None).unwrap()
}

/// The adapters' tests: each line of a prompt file in a tool's format, as JSON.
#[cfg(test)]
fn json_of_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[cfg(test)]
impl<'a> Export<'a> {
    /// The adapters' tests: an export of `stage` read from `path`.
    fn example(stage: u32, warmup: bool, clock: &'a Clock, path: &'a str) -> Export<'a> {
        Export { stage, warmup, clock, path: Path::new(path) }
    }
}

#[cfg(test)]
impl<'a> Setup<'a> {
    /// The adapters' tests: the server at `http://h:1`, model `m`, tokenizer `/t`, `native/` `/n`.
    fn example(prompts: Option<&'a Path>) -> Setup<'a> {
        Setup { url: "http://h:1", model: "m", tokenizer: Path::new("/t"), native: Path::new("/n"), prompts }
    }
}

impl Setup<'_> {
    fn dir(&self, stage: u32, warmup: bool) -> PathBuf {
        self.native.join(if warmup { "warmup".to_string() } else { format!("stage-{stage}") })
    }
}

/// The run's clock as the tools read time: nanoseconds since the Unix epoch (aiperf) and
/// seconds of `CLOCK_MONOTONIC` (Python's `perf_counter`, inference-perf), both taken at the
/// run's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Clock {
    pub unix_ns: i128,
    pub monotonic_s: f64,
}

impl Clock {
    pub(crate) fn now() -> Clock {
        let unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let monotonic_s = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9);
        Clock { unix_ns, monotonic_s }
    }

    /// A Unix time in nanoseconds on the run's clock (times before the start count as 0).
    pub(crate) fn unix(&self, ns: i128) -> u64 {
        u64::try_from(ns - self.unix_ns).unwrap_or(0)
    }

    /// A `CLOCK_MONOTONIC` reading in seconds on the run's clock.
    pub(crate) fn monotonic(&self, s: f64) -> u64 {
        ((s - self.monotonic_s) * 1e9).max(0.0).round() as u64
    }
}

/// The tool that runs a harness kind (none for the built-in).
pub(crate) fn tool(kind: HarnessKind) -> Option<&'static tools::Tool> {
    tools::find(adapter(kind)?.tool_name()).ok()
}

/// Whether the tool can run this workload; if not, the first field it cannot express.
pub(crate) fn check(kind: HarnessKind, w: &Workload) -> Result<(), String> {
    let Some(adapter) = adapter(kind) else { return Ok(()) };
    common(w).and_then(|()| adapter.check(w)).map_err(|r| {
        format!(
            "the {} harness cannot run this workload: `{}`: {} (change the workload, or use the built-in harness)",
            kind.as_str(),
            r.field,
            r.why
        )
    })
}

/// A file dataset's prompts checked at plan time (the file is read as the run will read it):
/// the tools' file formats take one message per prompt, so a conversation of several is refused
/// before anything starts, naming the file and the prompt.
pub(crate) fn check_prompts(kind: HarnessKind, w: &Workload, base: &Path) -> Result<(), String> {
    if adapter(kind).is_none() || !from_file(w) {
        return Ok(());
    }
    // Unreadable files are the dataset check's to report (it runs first, with its own words).
    let Ok(prompts) = crate::datasets::load(&w.dataset, w.seed, base) else { return Ok(()) };
    match prompts.iter().enumerate().find_map(|(n, p)| single_text(p, n, kind.as_str()).err()) {
        None => Ok(()),
        Some(e) => Err(format!(
            "the {} harness cannot run this workload: `dataset` ({}): {e} (use the built-in harness, or a file of one message per prompt)",
            kind.as_str(),
            crate::datasets::describe(&w.dataset, base)
        )),
    }
}

/// What no adapter passes on: secrets (a tool's command line and configuration are kept in the
/// work directory), TLS settings, session headers.
fn common(w: &Workload) -> Result<(), Refusal> {
    if w.api.api_key.is_some() || w.api.headers.values().any(|v| env_reference(v).is_some()) {
        return Err(Refusal::new(
            "api.api_key",
            "secrets are not handed to external tools (their command lines and configuration files are kept in the work directory)",
        ));
    }
    if w.api.tls.ca_file.is_some() || w.api.tls.insecure_skip_verify {
        return Err(Refusal::new("api.tls", "TLS settings are not passed to external tools yet"));
    }
    if let Some(i) = w.stages.iter().position(|s| s.ramp_to.is_some()) {
        return Err(Refusal::new(
            format!("stages[{i}].ramp_to"),
            "a rate ramp is run by benchflow's own load generator (harness: builtin); the tools' ramps differ or do not exist",
        ));
    }
    if w.api.session_header.is_some() {
        return Err(Refusal::new(
            "api.session_header",
            "the tools send their own session ids, not benchflow's prompt groups",
        ));
    }
    Ok(())
}

/// The records of one invocation, from the tool's per-request export in its directory.
fn records(adapter: &dyn Adapter, inv: &Invocation, clock: &Clock) -> Result<Vec<Record>, HarnessError> {
    let path = inv.dir.join(adapter.records_file());
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    adapter.parse(&text, Export { stage: inv.stage, warmup: inv.warmup, clock, path: &path })
}

/// Runs the workload with the tool at `command`; the records, `/metrics` and GPU samples land
/// in `opts.results_dir` as the built-in's do. An interrupt stops the tool (its process group)
/// and keeps what it wrote.
pub(crate) async fn run(
    kind: HarnessKind,
    command: &Path,
    opts: loadgen::Options,
    shutdown: impl Future<Output = ()>,
    progress: &(dyn Fn(String) + Sync),
) -> Result<RunInfo, HarnessError> {
    let adapter = adapter(kind).ok_or(HarnessError::NotExternal { kind: kind.as_str() })?;
    let tool = tool(kind).map_or(kind.as_str().to_string(), |t| format!("{} {}", t.name, t.version));
    let w = &opts.workload;
    let (target, base) = loadgen::target(
        &opts.endpoint,
        w.api.endpoint.path(),
        w.api.stream,
        loadgen::headers(&w.api.request_headers())?,
        &w.api.tls,
    )
    .await?;
    let model = match &w.api.model {
        Some(m) => m.clone(),
        None => loadgen::discover_model(&target, &base).await?,
    };
    // Absolute: the tool runs in a directory of its own.
    let native = std::path::absolute(opts.results_dir.join("native")).map_err(io(&opts.results_dir))?;
    let tokenizer_dir = native.join("tokenizer");
    tokenizer::write(&tokenizer_dir).map_err(io(&tokenizer_dir))?;
    let prompts = write_prompts(adapter, &opts, &native)?;
    let setup = Setup {
        url: &base,
        model: &model,
        tokenizer: &tokenizer_dir,
        native: &native,
        prompts: prompts.as_deref(),
    };
    let plan = adapter.invocations(w, &setup);

    let t0 = Instant::now();
    let clock = Clock::now();
    let beside = Beside::start(&opts, &target, t0, Vec::new()).await?;
    let tx = beside.sender();
    let mut info = RunInfo::starting(base.clone(), model.clone());
    info.inputs = opts.inputs.clone();
    info.harness = Some(format!("{tool}: {}", adapter.caveat()));
    info.server_version = loadgen::discover_version(&target, &base).await;
    loadgen::write_json(&opts.results_dir, "run.json", &info)?;
    tokio::pin!(shutdown);
    // Whatever ends the loop (a failed tool, an unreadable export, a file that cannot be written),
    // the records already sent are written and run.json completed below.
    let mut index = 0;
    let outcome: Result<(), HarnessError> = async {
        for inv in &plan {
            std::fs::create_dir_all(&inv.dir).map_err(io(&inv.dir))?;
            if let Some((name, text)) = &inv.config {
                let path = inv.dir.join(name);
                std::fs::write(&path, text).map_err(io(&path))?;
            }
            let argv: Vec<String> =
                std::iter::once(command.display().to_string()).chain(inv.args.iter().cloned()).collect();
            let line = crate::shell::shell_line(&argv);
            let command_file = inv.dir.join("command.sh");
            std::fs::write(&command_file, format!("cd {}\n{line}\n", inv.dir.display()))
                .map_err(io(&command_file))?;
            progress(format!("{tool}: {} (its output: {})", inv.label, inv.dir.display()));
            let _ = tx.send(Msg::Stage {
                stage: inv.stage,
                label: inv.label.clone(),
                requests: inv.requests,
                duration: inv.duration,
            });
            let started_s = t0.elapsed().as_secs_f64();
            let status = run_tool(command, inv, &mut shutdown).await?;
            let ended_s = t0.elapsed().as_secs_f64();
            let mut recs = match records(adapter, inv, &clock) {
                Ok(r) => r,
                Err(e) if status.is_some_and(|s| s.success()) => return Err(e),
                // Stopped or failed: what it left is kept; the failure is said below.
                Err(e) => {
                    progress(format!("{tool} left no records for {} ({e})", inv.label));
                    Vec::new()
                }
            };
            recs.sort_by_key(|r| r.sent_ns);
            if !inv.warmup {
                info.stages.push(StageWindow {
                    stage: inv.stage,
                    label: inv.label.clone(),
                    start_s: recs
                        .iter()
                        .map(|r| r.scheduled_ns)
                        .min()
                        .map_or(started_s, |ns| ns as f64 * 1e-9),
                    end_s: recs.iter().map(|r| r.end_ns).max().map_or(ended_s, |ns| ns as f64 * 1e-9),
                    dispatched: recs.len() as u64,
                    rate: inv.rate,
                    // Refused at plan time (common): the tools run no ramp of benchflow's.
                    ramp: None,
                });
            }
            for mut r in recs {
                r.index = index;
                index += 1;
                let _ = tx.send(Msg::Record(Box::new(r)));
            }
            loadgen::write_json(&opts.results_dir, "run.json", &info)?;
            match status {
                None => {
                    info.interrupted = true;
                    return Ok(());
                }
                Some(s) if !s.success() => {
                    return Err(HarnessError::Failed {
                        tool: tool.clone(),
                        what: inv.label.clone(),
                        status: s.to_string(),
                        dir: inv.dir.clone(),
                        tail: last_words(&inv.dir),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    beside.finish(&opts.results_dir, &mut info).await?;
    info.ended_at = Some(crate::workdir::utc_now());
    loadgen::write_json(&opts.results_dir, "run.json", &info)?;
    outcome.map(|()| info)
}

/// The tool's run: in `inv.dir`, stdout and stderr to files there, in a process group of its own
/// under [`crate::shell::WATCHED`]; `None` when interrupted (the group is sent SIGTERM, then SIGKILL after 5 s).
async fn run_tool(
    command: &Path,
    inv: &Invocation,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<std::process::ExitStatus>, HarnessError> {
    let file = |name: &str| {
        let path = inv.dir.join(name);
        std::fs::File::create(&path).map_err(io(&path))
    };
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(crate::shell::WATCHED)
        .arg("sh")
        .arg(command)
        .args(&inv.args)
        .current_dir(&inv.dir)
        .stdin(std::process::Stdio::piped())
        .stdout(file("stdout.log")?)
        .stderr(file("stderr.log")?)
        // Not HF_HUB_OFFLINE: aiperf then takes a tokenizer's directory for a cached hub repo.
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| HarnessError::Spawn { command: command.display().to_string(), source })?;
    // Held until the tool is done: its end tells the watcher that benchflow is gone.
    let _lifeline = child.stdin.take();
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(-(p as i32)));
    tokio::select! {
        status = child.wait() => status.map(Some).map_err(io(&inv.dir)),
        _ = shutdown.as_mut() => {
            if let Some(group) = pid {
                let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
                if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
                    let _ = child.wait().await;
                }
            }
            Ok(None)
        }
    }
}

/// The end of what the tool printed (on stderr, else stdout: aiperf reports there), for an error.
fn last_words(dir: &Path) -> String {
    for name in ["stderr.log", "stdout.log"] {
        let path = dir.join(name);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
            return format!("; the end of its {name}:\n{}", crate::shell::tail(&path, 12));
        }
    }
    String::new()
}

/// The OpenAI endpoint's name in the tools' vocabulary.
fn is_chat(w: &Workload) -> bool {
    w.api.endpoint == Endpoint::Chat
}

/// Seconds, as the tools take them (whole when whole).
fn secs(s: f64) -> String {
    if s.fract() == 0.0 { format!("{}", s as u64) } else { format!("{s}") }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The `adapters!` list against the kinds and the tools: every kind but the built-in has an
    /// adapter (the match makes it one at most), each runs a tool benchflow installs, no two run
    /// the same one, and each caveat names the file its records are converted from.
    #[test]
    fn every_external_kind_has_one_adapter_whose_tool_benchflow_installs() {
        let mut tools_run = BTreeSet::new();
        for &kind in HarnessKind::ALL {
            let Some(a) = adapter(kind) else {
                assert_eq!(kind, HarnessKind::Builtin, "{} has no adapter", kind.as_str());
                continue;
            };
            assert_ne!(kind, HarnessKind::Builtin);
            let installed = tools::find(a.tool_name());
            assert!(installed.is_ok(), "{}: {:?}", kind.as_str(), installed.err().map(|e| e.to_string()));
            assert_eq!(tool(kind), installed.ok());
            assert!(tools_run.insert(a.tool_name()), "{} runs {} again", kind.as_str(), a.tool_name());
            assert!(a.caveat().contains(a.records_file()), "{}: {}", kind.as_str(), a.caveat());
        }
        assert_eq!(tools_run.len(), HarnessKind::ALL.len() - 1);
    }
}
