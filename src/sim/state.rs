//! State shared between the HTTP front end and the engine driver.

use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Notify, mpsc};

use super::{
    config::{DieAfter, SimConfig},
    driver::Cmd,
    metrics::Metrics,
};

/// Everything the request handlers and the driver share. Hot fields are atomics; the config is
/// swapped whole (readers clone an `Arc`), the metrics are locked once per engine step.
pub(crate) struct Shared {
    config: RwLock<Arc<SimConfig>>,
    /// Bumped on every config change so the driver notices without locking.
    pub config_version: AtomicU64,
    pub metrics: Arc<Mutex<Metrics>>,
    /// Accepted requests not yet in the running batch (for `max_waiting`).
    pub queued: Arc<AtomicUsize>,
    /// Requests whose response is not finished (`/load`).
    pub in_flight: AtomicUsize,
    /// Inference requests accepted so far (request ids, `die_after` counts).
    pub requests: AtomicU64,
    pub dead: AtomicBool,
    /// Set when the engine must take the whole process down (`die_mode: exit`).
    pub exit: Notify,
    pub exit_requested: AtomicBool,
    pub seed: u64,
    pub started: Instant,
    /// Until then, `startup_mode: 503` answers 503.
    pub loaded_at: Instant,
    pub stale_metrics: Mutex<Option<String>>,
    pub engine: mpsc::UnboundedSender<Cmd>,
}

impl Shared {
    pub(crate) fn new(cfg: SimConfig, engine: mpsc::UnboundedSender<Cmd>) -> Self {
        let seed = if cfg.seed != 0 {
            cfg.seed
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        };
        let now = Instant::now();
        Shared {
            metrics: Arc::new(Mutex::new(Metrics::new(cfg.max_model_len))),
            loaded_at: now + Duration::from_secs_f64(cfg.startup_delay.0),
            config: RwLock::new(Arc::new(cfg)),
            config_version: AtomicU64::new(0),
            queued: Arc::new(AtomicUsize::new(0)),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            exit: Notify::new(),
            exit_requested: AtomicBool::new(false),
            seed,
            started: now,
            stale_metrics: Mutex::new(None),
            engine,
        }
    }

    /// The current configuration.
    pub(crate) fn config(&self) -> Arc<SimConfig> {
        Arc::clone(&self.config.read().expect("config lock"))
    }

    /// Replaces the configuration atomically.
    pub(crate) fn set_config(&self, cfg: SimConfig) {
        *self.config.write().expect("config lock") = Arc::new(cfg);
        self.config_version.fetch_add(1, Ordering::Release);
    }

    /// Counts one injected fault (`sim:faults_injected_total{type}`).
    pub(crate) fn fault(&self, kind: &'static str) {
        self.metrics.lock().expect("metrics lock").fault(kind);
    }

    /// True while the simulated model is still loading.
    pub(crate) fn loading(&self) -> bool {
        Instant::now() < self.loaded_at
    }

    /// Checks `die_after` after a request was accepted; kills the engine when it is due.
    pub(crate) fn check_death(&self, cfg: &SimConfig, requests_so_far: u64) {
        if let Some(DieAfter::Requests(n)) = cfg.die_after
            && requests_so_far >= n
        {
            self.die(cfg);
        }
    }

    /// Engine death: fails everything in flight; new requests get 500 and `/health` 503, or the
    /// process exits (`die_mode: exit`).
    pub(crate) fn die(&self, cfg: &SimConfig) {
        if self.dead.swap(true, Ordering::AcqRel) {
            return;
        }
        self.fault("engine_death");
        let _ = self.engine.send(Cmd::Die);
        if cfg.die_mode == super::config::DieMode::Exit {
            self.exit_requested.store(true, Ordering::Release);
            self.exit.notify_one();
        }
    }
}
