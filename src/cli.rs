//! The command line: clap types, dispatch, and the exit-code table.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::{
    analysis::{self, AnalysisError, Convention},
    loadgen::{self, LoadError},
    sim::{self, SimConfig, config::ConfigError},
    spec::{self, SpecError, workload::Workload},
    workdir,
};

/// The documented exit codes (also printed by `--help`).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (a run whose requests partly failed still succeeds: failures are in its results)
  1  failure at run time (I/O error, server error, the simulator's injected engine death)
  2  invalid usage or configuration (bad flag, unknown profile, bad workload or --set)
  4  the run could not be carried out (endpoint unreachable, results not writable)
  5  interrupted (Ctrl-C / SIGTERM); what was measured is kept and analysed";

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a failure at run time.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: invalid usage or configuration.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: the run could not be carried out.
pub const EXIT_RUN: u8 = 4;
/// Exit code: interrupted.
pub const EXIT_INTERRUPTED: u8 = 5;

#[derive(Debug, Parser)]
#[command(
    name = "benchflow",
    version,
    about = "Stand up LLM inference stacks, drive load at them, analyse the results, tear them down.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the built-in vLLM-compatible simulator until Ctrl-C or SIGTERM.
    #[command(after_help = EXIT_CODES)]
    Sim(SimArgs),
    /// Run a workload against an OpenAI-compatible endpoint with the built-in load generator,
    /// then analyse it.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Recompute statistics from a work directory's results.
    #[command(after_help = EXIT_CODES)]
    Analyze(AnalyzeArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The server to benchmark, e.g. http://127.0.0.1:8000 (a path prefix is kept).
    #[arg(long)]
    pub endpoint: String,
    /// Workload: a name in workloads/ (e.g. sanity) or a path to a YAML file.
    #[arg(short = 'w', long, default_value = "sanity")]
    pub workload: String,
    /// Work directory (default runs/<run-id>); must not hold results already.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Metric definitions for the statistics.
    #[arg(long, value_enum, default_value = "vllm")]
    pub convention: Convention,
    /// Seconds between scrapes of the endpoint's /metrics.
    #[arg(long, default_value_t = 2.0)]
    pub scrape_interval: f64,
    /// No progress lines.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The work directory of a run.
    pub dir: PathBuf,
    /// Metric definitions for the statistics.
    #[arg(long, value_enum, default_value = "vllm")]
    pub convention: Convention,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Port to listen on; 0 picks a free one. The address is printed as the first line of stdout.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// A built-in profile (see --list-profiles).
    #[arg(long, default_value = "llama-3.1-8b/h100", conflicts_with = "config")]
    pub profile: String,
    /// A profile file (YAML, same keys as profiles/sim/*.yaml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one knob, e.g. --set time_scale=0.1 --set failure_rate=0.05 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print the built-in profiles and exit.
    #[arg(long)]
    pub list_profiles: bool,
}

/// Everything that can make a command fail, mapped to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    #[error("failed to start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error("work directory {0} already holds results: choose another --workdir, or omit it for a new one")]
    WorkdirUsed(PathBuf),
    #[error("failed to prepare the work directory {path}: {source}")]
    Workdir { path: PathBuf, source: std::io::Error },
    #[error("interrupted: the requests measured so far are kept and analysed in {0}")]
    Interrupted(PathBuf),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => EXIT_CONFIG,
            CliError::Sim(sim::SimError::Bind { .. }) => EXIT_CONFIG,
            CliError::Sim(_) | CliError::Runtime(_) => EXIT_RUNTIME,
            CliError::Spec(_) | CliError::WorkdirUsed(_) => EXIT_CONFIG,
            CliError::Load(LoadError::Dataset(_) | LoadError::Endpoint { .. } | LoadError::Header { .. }) => {
                EXIT_CONFIG
            }
            CliError::Load(_) | CliError::Workdir { .. } | CliError::Analysis(_) => EXIT_RUN,
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
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(CliError::Runtime)?;
    match cli.command {
        Command::Sim(args) => runtime.block_on(run_sim(args)),
        Command::Run(args) => runtime.block_on(run_load(args)),
        Command::Analyze(args) => analyze(args),
    }
}

/// Resolves the simulator configuration from the flags.
pub fn sim_config(args: &SimArgs) -> Result<SimConfig, ConfigError> {
    let base = match &args.config {
        Some(path) => SimConfig::from_file(path)?,
        None => SimConfig::profile(&args.profile)?,
    };
    base.apply_sets(&args.sets)
}

async fn run_sim(args: SimArgs) -> Result<(), CliError> {
    if args.list_profiles {
        for (name, _) in sim::config::PROFILES {
            println!("{name}");
        }
        return Ok(());
    }
    let cfg = sim_config(&args)?;
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|source| sim::SimError::Bind {
        addr: addr.parse().unwrap_or_else(|_| ([0, 0, 0, 0], args.port).into()),
        source,
    })?;
    let local = listener.local_addr().map_err(sim::SimError::Io)?;
    let shutdown = shutdown_signal();
    // The first line of stdout is the address: scripts and the local platform read it.
    println!("http://{local}");
    eprintln!(
        "benchflow sim: serving {} ({} fidelity, KV cache {} tokens, time_scale {}) on http://{local}; Ctrl-C stops",
        cfg.model,
        match cfg.fidelity {
            sim::config::Fidelity::Engine => "engine",
            sim::config::Fidelity::Analytic => "analytic",
        },
        cfg.kv_cache_tokens_total(),
        cfg.time_scale
    );
    sim::serve(cfg, listener, shutdown).await?;
    Ok(())
}

async fn run_load(args: RunArgs) -> Result<(), CliError> {
    let path = spec::resolve("workload", "workloads", &args.workload)?;
    let workload = Workload::from_file(&path)?;
    let dir = workdir::choose(args.workdir.as_deref());
    if dir.join("results/requests.csv").exists() {
        return Err(CliError::WorkdirUsed(dir));
    }
    let prepare = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("inputs"))?;
        std::fs::copy(&path, dir.join("inputs/workload.yaml"))?;
        Ok(())
    };
    prepare().map_err(|source| CliError::Workdir { path: dir.clone(), source })?;
    eprintln!(
        "benchflow run: workload {} against {}; work directory {}",
        path.display(),
        args.endpoint,
        dir.display()
    );
    let opts = loadgen::Options {
        endpoint: args.endpoint.clone(),
        base_dir: path.parent().map(std::path::Path::to_path_buf).unwrap_or_default(),
        results_dir: dir.join("results"),
        quiet: args.quiet,
        scrape_every: std::time::Duration::from_secs_f64(args.scrape_interval.max(0.1)),
        workload: workload.clone(),
    };
    let shutdown = shutdown_signal();
    let info = loadgen::run(opts, shutdown).await?;
    let analysis = analysis::analyze(&dir, args.convention, &workload.slo)?;
    print!("{}", analysis::render_text(&analysis));
    eprintln!("results: {}/results, statistics: {}/analysis", dir.display(), dir.display());
    if info.interrupted {
        return Err(CliError::Interrupted(dir));
    }
    Ok(())
}

fn analyze(args: AnalyzeArgs) -> Result<(), CliError> {
    let slo = Workload::from_file(&args.dir.join("inputs/workload.yaml")).map(|w| w.slo).unwrap_or_default();
    let analysis = analysis::analyze(&args.dir, args.convention, &slo)?;
    print!("{}", analysis::render_text(&analysis));
    Ok(())
}

/// Registers the Ctrl-C and SIGTERM handlers now (so a signal that arrives before the returned
/// future is first polled is not lost to the default action) and resolves on the first of them.
/// Must be called inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).ok();
        let mut term = signal(SignalKind::terminate()).ok();
        async move {
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = int => {}
                _ = term => {}
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
