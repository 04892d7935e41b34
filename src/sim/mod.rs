//! The built-in vLLM-compatible simulator (`benchflow sim`).
//!
//! Same wire format, endpoints and metric names as vLLM's OpenAI server; timing from a model of
//! vLLM's scheduler so that throughput saturates and latency climbs past saturation as on a GPU.
//!
//! * [`config`]: every knob, the shipped profiles, `--set` and `/admin/config` updates;
//!   [`faults`]: the types of the fault knobs.
//! * [`engine`]: the sans-IO engine model (scheduler, chunked prefill, preemption);
//!   `cost`: how long a step takes (its cost, noise, slowdowns).
//! * [`kv`]: KV-cache blocks and the prefix cache.
//! * [`driver`]: runs the engine in scaled real time and hands tokens to the streams.
//! * [`analytic`]: the per-request timing mode (fixed latencies, llm-d-inference-sim style).
//! * [`server`]: HTTP routes, admission-time faults, the accept loop.
//! * [`wire`]: request parsing, the SSE stream, error shapes.
//! * [`metrics`]: the Prometheus exposition with vLLM's names and buckets.
//! * [`tokenizer`]: deterministic token counting and generated words.

pub(crate) mod analytic;
pub(crate) mod config;
mod cost;
pub(crate) mod driver;
pub(crate) mod engine;
pub(crate) mod faults;
pub(crate) mod kv;
pub(crate) mod metrics;
pub(crate) mod server;
pub(crate) mod state;
pub(crate) mod tokenizer;
pub(crate) mod wire;

pub use config::SimConfig;
pub use server::serve;
pub(crate) use server::{listen, serve_with};

/// Why the simulator stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("failed to bind {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("simulator I/O error: {0}")]
    Io(std::io::Error),
    #[error("the simulated engine died (fault injection: die_mode exit)")]
    EngineExited,
}
