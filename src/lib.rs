//! benchflow: stand up LLM inference stacks, drive load at them, analyse, tear down.
//!
//! # Layout
//!
//! * `cli`: the command line (clap types), dispatch to the subcommands, exit codes.
//! * `spec`: what the user wrote: typed mirrors of the scenario, harness, workload and pipeline
//!   files, with file:line:column errors and suggestions; the shipped files; JSON Schemas.
//! * `resolve`: one variable tree from defaults < scenario < harness < workload < `--set`, each
//!   leaf with its source; strict minijinja templates; secrets only as `env:` references.
//! * `plan`: what we will do: rendered, numbered steps in a petgraph DAG, checked (cycles,
//!   dependencies, phases), with generated teardown; `benchflow plan` prints it.
//! * `exec`: the executor: runs ready steps in parallel, `state.json` and `events.jsonl`,
//!   skip-done by input hash, retries, teardown on failure, interrupt escalation.
//! * `session`: one plan executed in one work directory, as a library (resolve, compile, write
//!   the inputs, preflight, execute with the signals passed in); the CLI and experiments use it.
//! * `experiment`: many points from one base: the design, the grouping of points by the stack
//!   they need, the runner (one standup per stack, resume), the cross-point analysis, and
//!   `compare` (differences with bootstrap confidence intervals).
//! * `harnesses`: external load generators (aiperf, inference-perf, GuideLLM) run from a benchflow
//!   workload: what each can express, its command line or configuration, its per-request export
//!   converted into benchflow's records; the tokenizer the tools are given.
//! * `shell`: command lines quoted for pasting, and log tails for error messages.
//! * `steps`: one file per step kind (`spawn`, `http`, `harness`, `analyze`, `exec`), each with
//!   describe / run / undo.
//! * `platform`: what each platform derives for the templates (`local` so far).
//! * `sim`: the built-in vLLM-compatible simulator (`benchflow sim`): configuration and
//!   profiles, the engine model (scheduler, KV cache, step cost), the driver that runs it in
//!   scaled real time, the HTTP front end, metrics and fault injection.
//! * `datasets`: prompt sources (synthetic, shared-prefix, ShareGPT, JSONL, shipped samples) and
//!   request bodies rendered before a run.
//! * `loadgen`: the built-in load generator: schedules, the send/receive hot path, the
//!   per-request record writer, the `/metrics` scraper and its Prometheus/OpenMetrics parser.
//! * `results`: one harness run's records: the `requests.csv` columns (named once), its writer,
//!   reader and the merge of shards; `run.json`.
//! * `analysis`: statistics from the records (vllm bench serve and GuideLLM conventions) and
//!   the outputs in `analysis/`; the HTML reports' templates (one base layout).
//! * `workdir`: the work directory (layout, lock, atomic writes, run ids) and its archive.
//! * `net`: connections to an endpoint, plain or TLS (rustls), for every client in benchflow.
//! * `timer`: sub-millisecond sleeps for the timing-critical waits (simulator, dispatcher).
//! * `redact`: the secrets benchflow sends, registered when read, and their replacement (as
//!   written, URL-encoded, base64, JSON-escaped) in everything it writes.
//! * `rng`: the seeded random number generator and distributions shared by everything that
//!   samples (simulator jitter and faults; later arrival schedules and datasets).

#![warn(unreachable_pub)]
#![warn(clippy::print_stdout, clippy::print_stderr)]

// Printing that never panics. `println!` and `eprintln!` panic when the other end of the pipe
// is gone (`benchflow e2e 2>&1 | head`), which would stop benchflow before it tears down what
// it started; these drop what cannot be written instead. Defined before the modules that use
// them (every module prints through them).
macro_rules! outln { ($($t:tt)*) => {{ use std::io::Write as _; let _ = writeln!(std::io::stdout(), $($t)*); }} }
macro_rules! out { ($($t:tt)*) => {{ use std::io::Write as _; let _ = write!(std::io::stdout(), $($t)*); }} }
macro_rules! errln { ($($t:tt)*) => {{ use std::io::Write as _; let _ = writeln!(std::io::stderr(), $($t)*); }} }

mod analysis;
mod cli;
mod datasets;
mod exec;
mod experiment;
mod harnesses;
mod lexicon;
mod loadgen;
mod net;
mod plan;
mod platform;
mod redact;
mod resolve;
mod results;
mod rng;
mod session;
mod shell;
mod sim;
mod spec;
mod steps;
mod template;
mod timer;
mod tools;
mod units;
mod workdir;

// The boundary: what the binary, the integration tests and the benches use. Everything else is
// private to the crate (the `unreachable_pub` lint keeps it so).

/// The command line: parses, dispatches, maps errors to the documented exit codes.
pub use cli::main;

/// The user's files, read and resolved.
pub use resolve::{Resolved, merge};
pub use spec::{from_yaml, pipeline::Pipeline, workload::Slo, workload::Workload};

/// A plan compiled from resolved inputs (the plan-compile bench).
pub use plan::compile;

/// The built-in load generator, its records and their analysis.
pub use analysis::{Analysis, Convention, Dirs, analyze};
pub use loadgen::{Options as LoadOptions, run as run_load};
pub use results::{HEADER, RunInfo};
pub use rng::Rng;
pub use workdir::inputs::{InputFile, InputLayer, RunInputs};

/// The simulator, served in-process by the tests.
pub use sim::{SimConfig, SimError, serve};

/// Whether a process is alive (tests check that nothing is left running).
pub use steps::spawn::alive;

/// External tools: the pinned list, their installs.
pub use tools::{find as find_tool, install as install_tool, installed as installed_tool, python_for};

/// The Kubernetes manifests' structural check (the tests' cluster agent).
pub use platform::kubernetes::check as check_manifest;
