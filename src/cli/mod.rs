//! The command line: clap types, dispatch, and the exit-code table.
//!
//! * this file: dispatch, the error → exit code table, `sim` and `analyze`.
//! * [`args`]: the clap types of every command.
//! * [`engine`]: the commands that compile and execute a plan (`e2e`, `standup`, `run`,
//!   `teardown`, `plan`, `reproduce`), over [`crate::session`].
//! * [`inspect`]: `status`, `archive`, `gc`.
//! * [`tools`]: `tools list`, `tools install`.
//! * [`documents`]: what `-o json|yaml` prints, typed, with their schemas.
//! * [`complete`]: `completions` (and the names completed).

pub(crate) mod args;
pub(crate) mod complete;
pub(crate) mod documents;
pub(crate) mod engine;
pub(crate) mod experiment;
pub(crate) mod inspect;
pub(crate) mod tools;

use crate::workdir::layout;
use std::process::ExitCode;

use clap::Parser;

pub(crate) use self::args::{AnalyzeArgs, Cli, Command, SimArgs};

use crate::{
    analysis::{self, AnalysisError, Convention},
    exec::ExecError,
    plan::PlanError,
    resolve::{ResolveError, Resolved},
    sim::{self, SimConfig, config::ConfigError},
    spec::SpecError,
    workdir::{WorkdirError, archive::ArchiveError},
};

/// The documented exit codes (also printed by `--help`).
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  success (a run whose requests partly failed still succeeds: failures are in its results)
  1  failure at run time (I/O error, a teardown step failed, the engine died during the run)
  2  invalid usage or configuration (bad flag or file, unknown name, bad --set or -s, template
     error, work directory in use, a state.json that cannot be read: `teardown` still works,
     a records file with a bad row: `analyze`, `compare`; `run` after `teardown`)
  3  standup failed (a standup step failed; teardown has run), or `run` on a stack whose
     engine is gone (died, or stopped outside benchflow)
  4  the run could not be carried out (a run or analyze step failed, endpoint unreachable)
  5  interrupted (Ctrl-C / SIGTERM / SIGHUP); what was measured is kept, teardown has run
     unless a second interrupt skipped it";

/// Exit code: success.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code: a failure at run time.
pub(crate) const EXIT_RUNTIME: u8 = 1;
/// Exit code: invalid usage or configuration.
pub(crate) const EXIT_CONFIG: u8 = 2;
/// Exit code: standup failed.
pub(crate) const EXIT_STANDUP: u8 = 3;
/// Exit code: the run could not be carried out.
pub(crate) const EXIT_RUN: u8 = 4;
/// Exit code: interrupted.
pub(crate) const EXIT_INTERRUPTED: u8 = 5;

/// Everything that can make a command fail, mapped to an exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    #[error("failed to start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Workdir(#[from] WorkdirError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error(transparent)]
    Kube(#[from] crate::platform::kube::KubeError),
    #[error(transparent)]
    Tool(#[from] crate::tools::ToolError),
    #[error("{0}")]
    Usage(String),
    #[error("step {step} failed: {error}")]
    StandupFailed { step: String, error: String },
    #[error("step {step} failed: {error}")]
    RunFailed { step: String, error: String },
    /// An experiment's stack(s) could not be stood up (the others ran).
    #[error("{0}")]
    StacksNotUp(String),
    #[error("{step}: {error}; the run was stopped, what was measured is analysed, and teardown has run")]
    EngineLost { step: String, error: String },
    #[error(
        "the work directory's record could not be written ({0}): nothing more was started, what ran was \
         stopped and teardown run from the record in memory; free space, then `benchflow status` shows what \
         the record on disk still says"
    )]
    Unrecorded(String),
    #[error("teardown step(s) failed: {0}; see setup/commands/ in the work directory")]
    TeardownFailed(String),
    #[error("interrupted{0}")]
    Interrupted(String),
    #[error("{0}")]
    Experiment(String),
    /// A `-o json|yaml` document that could not be serialized.
    #[error("the -o document could not be written: {0}")]
    Document(String),
}

impl From<crate::session::SessionError> for CliError {
    fn from(e: crate::session::SessionError) -> CliError {
        use crate::session::SessionError as S;
        match e {
            S::Resolve(e) => CliError::Resolve(e),
            S::Plan(e) => CliError::Plan(e),
            S::Workdir(e) => CliError::Workdir(e),
            S::Exec(e) => CliError::Exec(e),
            e @ (S::MissingProgram { .. }
            | S::Missing { .. }
            | S::Record { .. }
            | S::DryRunOverRun { .. }) => CliError::Usage(e.to_string()),
        }
    }
}

impl CliError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Spec(_) | CliError::Resolve(_) | CliError::Plan(_) => EXIT_CONFIG,
            CliError::Usage(_)
            | CliError::Workdir(
                WorkdirError::Locked { .. }
                | WorkdirError::NotWorkdir { .. }
                | WorkdirError::StoreEntry { .. },
            ) => EXIT_CONFIG,
            // A records file with a bad row is a bad file (named with its line), not a failed run.
            CliError::Analysis(AnalysisError::Row { .. }) => EXIT_CONFIG,
            CliError::Exec(ExecError::NotStoodUp { .. } | ExecError::State(_)) => EXIT_CONFIG,
            // An archive that does not verify, or an -o that would replace what is not one:
            // bad input, nothing written.
            CliError::Archive(
                ArchiveError::Output { .. }
                | ArchiveError::Checksum { .. }
                | ArchiveError::NoManifest(_)
                | ArchiveError::EmptyManifest(_)
                | ArchiveError::BadManifest { .. }
                | ArchiveError::Unlisted { .. },
            ) => EXIT_CONFIG,
            // What a `run` stands on went away since standup: stand up again.
            CliError::Exec(ExecError::StackDown { .. }) => EXIT_STANDUP,
            CliError::Sim(sim::SimError::Bind { .. }) => EXIT_CONFIG,
            CliError::Sim(_)
            | CliError::Runtime(_)
            | CliError::TeardownFailed(_)
            | CliError::Kube(_)
            | CliError::EngineLost { .. }
            | CliError::Unrecorded(_) => EXIT_RUNTIME,
            CliError::Exec(_)
            | CliError::Workdir(_)
            | CliError::Archive(_)
            | CliError::Experiment(_)
            | CliError::Document(_) => EXIT_RUNTIME,
            CliError::Tool(
                crate::tools::ToolError::Unknown { .. }
                | crate::tools::ToolError::NoPython { .. }
                | crate::tools::ToolError::BadPython { .. },
            ) => EXIT_CONFIG,
            CliError::Tool(_) => EXIT_RUNTIME,
            CliError::StandupFailed { .. } | CliError::StacksNotUp(_) => EXIT_STANDUP,
            CliError::RunFailed { .. } | CliError::Analysis(_) => EXIT_RUN,
            CliError::Interrupted(_) => EXIT_INTERRUPTED,
        }
    }
}

/// Parses the command line, runs the command, reports errors, returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            errln!("error: {}", crate::redact::text(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one parsed command line.
pub(crate) fn run(cli: Cli) -> Result<(), CliError> {
    // Before any thread starts (it blocks signals for the whole process).
    if let Command::RedactPump { log } = &cli.command {
        return crate::steps::redact_pump(log)
            .map_err(|source| CliError::Workdir(WorkdirError::Io { path: log.clone(), source }));
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(CliError::Runtime)?;
    match cli.command {
        Command::E2e(args) => runtime.block_on(engine::e2e(args)),
        Command::Standup(args) => runtime.block_on(engine::standup(args)),
        Command::Run(args) => runtime.block_on(engine::run(args)),
        Command::Teardown(args) => {
            match args.dir.as_deref().filter(|d| crate::experiment::state::ExpState::is_experiment(d)) {
                Some(dir) => runtime.block_on(experiment::teardown(dir)),
                None => runtime.block_on(engine::teardown(args)),
            }
        }
        Command::Experiment(args) => runtime.block_on(experiment::experiment(args)),
        Command::Compare(args) => experiment::compare(args),
        Command::Plan(args) => engine::show_plan(args),
        Command::Analyze(args) if crate::experiment::state::ExpState::is_experiment(&args.dir) => {
            match args.convention {
                // Each point is analysed under its own convention; another goes beside it.
                Some(c) => Err(CliError::Usage(format!(
                    "--convention applies to one run's work directory, not an experiment's: \
                     analyse a point under it with `benchflow analyze {}/points/<point> --convention {}`",
                    args.dir.display(),
                    c.as_str()
                ))),
                None => experiment::analyze(&args.dir),
            }
        }
        Command::Analyze(args) => analyze(args),
        Command::Status(args) => runtime.block_on(inspect::status(args)),
        Command::Archive(args) => inspect::archive(args),
        Command::Reproduce(args) => runtime.block_on(engine::reproduce(args)),
        Command::Gc(args) => runtime.block_on(inspect::gc(args)),
        Command::Tools(args) => tools::tools(args),
        Command::Sim(args) => runtime.block_on(run_sim(args)),
        Command::Completions { shell } => complete::completions(shell),
        Command::RedactPump { .. } => Ok(()),
        Command::ResultsPack { dir } => {
            let frame =
                crate::platform::job::pack(&dir).map_err(|source| WorkdirError::Io { path: dir, source })?;
            out!("{frame}");
            Ok(())
        }
    }
}

/// Resolves the simulator configuration from the flags.
pub(crate) fn sim_config(args: &SimArgs) -> Result<SimConfig, ConfigError> {
    let base = match &args.config {
        Some(path) => SimConfig::from_file(path)?,
        None => SimConfig::profile(&args.profile)?,
    };
    base.apply_sets(&args.sets)
}

async fn run_sim(args: SimArgs) -> Result<(), CliError> {
    if args.list_profiles {
        for (name, _) in sim::config::PROFILES {
            outln!("{name}");
        }
        return Ok(());
    }
    let cfg = sim_config(&args)?;
    let addr = format!("{}:{}", args.host, args.port);
    let bind_error = |source| sim::SimError::Bind {
        addr: addr.parse().unwrap_or_else(|_| ([0, 0, 0, 0], args.port).into()),
        source,
    };
    let resolved = tokio::net::lookup_host(&addr).await.map_err(bind_error)?.next().ok_or_else(|| {
        bind_error(std::io::Error::new(std::io::ErrorKind::NotFound, "the host resolves to no address"))
    })?;
    let listener = sim::listen(resolved)?;
    let local = listener.local_addr().map_err(sim::SimError::Io)?;
    let shutdown = shutdown_signal();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key).map_err(CliError::Usage)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The first line of stdout is the address: scripts and the local platform read it.
    outln!("{scheme}://{local}");
    errln!(
        "benchflow sim: serving {} ({} fidelity, KV cache {} tokens, time_scale {}) on {scheme}://{local}; Ctrl-C stops",
        cfg.model,
        match cfg.fidelity {
            sim::config::Fidelity::Engine => "engine",
            sim::config::Fidelity::Analytic => "analytic",
        },
        cfg.kv_cache_tokens_total(),
        cfg.time_scale
    );
    // Each stream served holds a connection (see net::raise_open_files_limit).
    let _ = crate::net::raise_open_files_limit();
    sim::serve_with(cfg, listener, shutdown, tls).await?;
    Ok(())
}

/// A TLS acceptor from PEM files (the simulator's `--tls-cert` / `--tls-key`).
fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// `benchflow analyze DIR [--convention C] [--run ID]`: the newest run's (or run ID's) analysis
/// again. Under the run's
/// own convention (the harness's) it rewrites `analysis/<run>/`; under another it goes beside
/// it, into `analysis/<run>/conventions/<name>/`, and the reports link each other.
fn analyze(args: AnalyzeArgs) -> Result<(), CliError> {
    // One run's records folder (results/<run>/, which holds a copy of its inputs) is not a
    // work directory: nothing is written into it.
    if args.dir.join("requests.csv").is_file() && args.dir.join(crate::workdir::inputs::RECORD).is_file() {
        let root = args.dir.parent().and_then(std::path::Path::parent).unwrap_or(std::path::Path::new("."));
        return Err(CliError::Usage(format!(
            "{} is one run's records: analyze its work directory (`benchflow analyze {}`), which \
             analyses its latest run",
            args.dir.display(),
            root.display()
        )));
    }
    use crate::workdir::runs::RunDirs;
    let named = |id: &str| {
        RunDirs::named_for_analysis(&args.dir, id).map_err(|runs| {
            CliError::Usage(format!(
                "{}: no harness run `{id}` with records (results/{id}/requests.csv); {}",
                args.dir.display(),
                if runs.is_empty() {
                    "it holds none".to_string()
                } else {
                    format!("its runs: {}", runs.join(", "))
                }
            ))
        })
    };
    let run = match &args.run {
        Some(id) => Some(named(id)?),
        None => RunDirs::latest(&args.dir),
    };
    // The run's own inputs (results/<run>/inputs/), else the work directory's.
    let resolved = run
        .as_ref()
        .and_then(|r| Resolved::from_file(&crate::workdir::inputs::resolved_of(&r.results)).ok())
        .or_else(|| Resolved::from_file(&args.dir.join(layout::RESOLVED)).ok());
    let slo = resolved
        .as_ref()
        .and_then(|r| r.get("workload.slo").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    // Not while a run writes into it (a plain results folder has no lock to take).
    let _lock = if args.dir.join(layout::RESOLVED).is_file() {
        Some(crate::workdir::WorkDir::open(&args.dir)?)
    } else {
        None
    };
    let run = match &args.run {
        Some(id) => named(id)?,
        None => RunDirs::latest_for_analysis(&args.dir).ok_or_else(|| {
            CliError::Usage(format!("{} holds no results (results/latest/requests.csv)", args.dir.display()))
        })?,
    };
    // The run's own convention: the harness's (what its analyze step applies), else that of
    // the analysis already there (records without their inputs), else vllm's.
    let own = resolved
        .as_ref()
        .and_then(|r| r.get("harness.convention").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .or_else(|| analysis::convention_of(&run.analysis))
        .unwrap_or(Convention::Vllm);
    let convention = args.convention.unwrap_or(own);
    let dirs = analysis::Dirs { workdir: args.dir.clone(), results: run.results, out: run.analysis };
    let analysis = if convention == own {
        analysis::analyze(&dirs, convention, &slo)?
    } else {
        let (analysis, out) = analysis::analyze_beside(&dirs, convention, &slo)?;
        errln!(
            "analysis under {} conventions in {}, beside the run's own ({} conventions, {})",
            convention.as_str(),
            out.display(),
            own.as_str(),
            dirs.out.display()
        );
        analysis
    };
    out!("{}", analysis::render_text(&analysis));
    Ok(())
}

/// Registers the Ctrl-C, SIGTERM and SIGHUP handlers now (so a signal that arrives before the
/// returned future is first polled is not lost to the default action) and resolves on the
/// first of them. Must be called inside the runtime.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).ok();
        let mut term = signal(SignalKind::terminate()).ok();
        let mut hup = signal(SignalKind::hangup()).ok();
        async fn one(s: &mut Option<Signal>) {
            match s.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        async move {
            tokio::select! {
                _ = one(&mut int) => {}
                _ = one(&mut term) => {}
                _ = one(&mut hup) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
