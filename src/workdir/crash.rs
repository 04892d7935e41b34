//! A test knob for the crash harness (`tests/integration/crashes.rs`): with
//! `BENCHFLOW_TEST_CRASH_AT=N` in its environment, benchflow kills itself with SIGKILL right
//! after its N-th durable write (a file written atomically, or a line appended to
//! `events.jsonl` or `experiment.log`): no destructor, no teardown, no flush, as a power cut
//! or an OOM kill would leave it. Unset (always, outside tests), a boundary costs one relaxed
//! atomic load.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

/// The environment variable naming the boundary to die at (1-based).
pub(crate) const CRASH_AT: &str = "BENCHFLOW_TEST_CRASH_AT";

static AT: OnceLock<Option<u64>> = OnceLock::new();
static SEEN: AtomicU64 = AtomicU64::new(0);

/// One durable write happened.
pub(crate) fn boundary() {
    let Some(at) = *AT.get_or_init(|| std::env::var(CRASH_AT).ok().and_then(|v| v.trim().parse().ok()))
    else {
        return;
    };
    if SEEN.fetch_add(1, Ordering::SeqCst) + 1 == at {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
    }
}
