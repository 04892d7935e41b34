//! Platforms: where a stack runs. Each one derives the values a pipeline's templates need
//! (`run.command`, `endpoint.url`, …) from the typed scenario.
//!
//! * [`local`]: processes on this machine (the built-in simulator, `vllm serve`) or an
//!   existing endpoint.

pub mod local;
