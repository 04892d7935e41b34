//! Platforms: where a stack runs. Each one derives the values a pipeline's templates need
//! (`run.command`, `endpoint.url`, …) from the typed scenario.
//!
//! * [`local`]: processes on this machine (the built-in simulator, `vllm serve`) or an
//!   existing endpoint.
//! * [`kubernetes`]: vLLM on a cluster: derived names and labels, manifest templates, checks;
//!   [`kube`]: the client, port-forwards and the waits, through kube-rs; [`job`]: the harness
//!   as an Indexed Job (shards, results frames, merge); [`access`]: what the credentials may do.

pub mod access;
pub mod job;
pub mod kube;
pub mod kubernetes;
pub mod local;

/// Facts about this run that templates may use (`run.*`).
#[derive(Debug, Clone)]
pub struct RunContext {
    pub id: String,
    pub workdir: std::path::PathBuf,
    /// The benchflow binary (spawns `benchflow sim`).
    pub bin: std::path::PathBuf,
    /// The engine port an earlier command of this work directory chose (kept, so its done
    /// steps keep their hashes).
    pub port: Option<u16>,
}
