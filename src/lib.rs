//! benchflow: stand up LLM inference stacks, drive load at them, analyse, tear down.
//!
//! # Layout
//!
//! * `cli`: the command line (clap types), dispatch to the subcommands, exit codes.
//! * `sim`: the built-in vLLM-compatible simulator (`benchflow sim`): configuration and
//!   profiles, the engine model (scheduler, KV cache, step cost), the driver that runs it in
//!   scaled real time, the HTTP front end, metrics and fault injection.
//! * `spec`: what the user wrote: typed mirrors of the YAML files (workloads so far), with
//!   file:line:column errors and suggestions.
//! * `datasets`: prompt sources (synthetic, shared-prefix, ShareGPT, JSONL, shipped samples) and
//!   request bodies rendered before a run.
//! * `loadgen`: the built-in load generator: schedules, the send/receive hot path, the
//!   per-request record writer, the `/metrics` scraper.
//! * `analysis`: statistics from the records (vllm bench serve and GuideLLM conventions) and
//!   the outputs in `analysis/`.
//! * `workdir`: run directories and ids.
//! * `timer`: sub-millisecond sleeps for the timing-critical waits (simulator, dispatcher).
//! * `rng`: the seeded random number generator and distributions shared by everything that
//!   samples (simulator jitter and faults; later arrival schedules and datasets).

pub mod analysis;
pub mod cli;
pub mod datasets;
pub mod loadgen;
pub mod rng;
pub mod sim;
pub mod spec;
pub mod timer;
pub mod workdir;
