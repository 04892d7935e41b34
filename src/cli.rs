//! The command line: clap types, dispatch, and the exit-code table.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::sim::{self, SimConfig, config::ConfigError};

/// The documented exit codes (also printed by `--help`).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure at run time (I/O error, server error, the simulator's injected engine death)
  2  invalid usage or configuration (bad flag, unknown profile, bad config file or --set)";

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a failure at run time.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: invalid usage or configuration.
pub const EXIT_CONFIG: u8 = 2;

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
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) => EXIT_CONFIG,
            CliError::Sim(sim::SimError::Bind { .. }) => EXIT_CONFIG,
            CliError::Sim(_) | CliError::Runtime(_) => EXIT_RUNTIME,
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
    sim::serve(cfg, listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on the first Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
