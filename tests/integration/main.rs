//! The integration tests: one binary, one module per area.

mod cluster; // TEST SUPPORT: a real control plane (scripts/control-plane) and a node agent
mod conventions; // -o json/yaml documents, --dry-run apart, -n, completion scripts
mod crashes; // SIGKILL at every durable write, then the same command: nothing lost, changed or left running
mod disk; // a full disk at any moment of a run: no panic, no engine left, teardown still works
mod engine; // e2e, standup, run, teardown, plan, status, archive, reproduce: the work directory
mod experiment; // experiments (sweeps, resume, max_stacks, retries) and `compare`
mod gpu; // GPU telemetry: a fake DCGM exporter, and no NVIDIA driver
mod harnesses; // external harnesses (aiperf, inference-perf) installed by benchflow, on the simulator
mod inputs; // every schema field with hostile values: planned or refused with exit 2, never a crash
mod interop; // llm-d's own package loads every Benchmark Report; generated stacks, loads and records
mod kubernetes; // the kubernetes platform against the stand-in: e2e, faults, interrupts, manifests
mod kubernetes_real; // the kubernetes platform against a real control plane
mod layering; // no two top-level modules of src/ import each other
mod loadgen; // the load generator against the simulator: accuracy, pacing, accounting
mod measurements; // a finished point is never rewritten, deleted or shared: reorders, stores, spellings
mod router; // router stacks: simulators behind the real vLLM router, installed by benchflow
mod run_cli; // `benchflow run` and `analyze` as a user runs them: files, exit codes, SIGINT
mod secrets; // canaries planted in every input, searched for in every file, archive and terminal line
mod sim_cli; // the `benchflow sim` binary: address line, signals, exit codes
mod sim_faults; // every fault knob has an observable effect
mod sim_timing; // the performance model as a client sees it
mod sim_wire; // vLLM's wire format, parsed strictly
mod standin; // TEST SUPPORT: a stand-in Kubernetes API server with a fake kubelet
mod support; // in-process simulator and a strict HTTP/SSE client
mod tools; // `benchflow tools`: installs from PyPI, the installed vLLM router in front of simulators
