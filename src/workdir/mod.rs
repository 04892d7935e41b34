//! The work directory: one directory per run, created (and locked) before anything else
//! happens, written as the run goes so that a crash leaves a true record.
//!
//! ```text
//! inputs/          the files as given, overrides, resolved.yaml, version
//! plan/            plan.json, plan.dot, plan.txt, steps/<id>.json (each step rendered)
//! setup/commands/  one log per action: command line, output, exit status
//! state.json       each step's status, input hash, timings, attempts (atomic writes)
//! events.jsonl     the event stream
//! results/         per harness run (`results/<run>/`): its own copy of its inputs
//!                  (`inputs/`, with their hashes), records, server metrics, run.json
//! analysis/        stats, plots, report.html
//! ```

pub(crate) mod archive;
pub(crate) mod crash;
pub(crate) mod durable;
pub(crate) mod inputs;
pub(crate) mod layout;
pub(crate) mod runs;

use std::{
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
};

use jiff::Timestamp;

/// Version of the work directory layout (in `state.json` and `inputs/version.json`).
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Why a work directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WorkdirError {
    #[error("failed to prepare the work directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "the work directory {path} is in use by another benchflow ({holder}); wait for it to finish, \
         or choose another --workdir"
    )]
    Locked { path: PathBuf, holder: String },
    #[error("{path} cannot be read: {why}")]
    Record { path: PathBuf, why: String },
    #[error("{path} is not a benchflow work directory (no inputs/resolved.yaml)")]
    NotWorkdir { path: PathBuf },
    #[error(
        "{path} is an entry of a results store, which no command writes into; copy it elsewhere \
         (`cp -r`) to look at it with benchflow"
    )]
    StoreEntry { path: PathBuf },
}

/// An open, locked work directory.
#[derive(Debug)]
pub(crate) struct WorkDir {
    pub root: PathBuf,
    _lock: File,
}

impl WorkDir {
    /// Creates (or reuses) `root` with its folders, and takes its lock.
    pub(crate) fn create(root: &Path) -> Result<Self, WorkdirError> {
        let io = |source| WorkdirError::Io { path: root.to_path_buf(), source };
        for sub in [layout::INPUTS, layout::PLAN_STEPS, layout::COMMANDS, layout::RESULTS, layout::ANALYSIS] {
            std::fs::create_dir_all(root.join(sub)).map_err(io)?;
        }
        let lock = Self::lock(root)?;
        Ok(WorkDir { root: root.to_path_buf(), _lock: lock })
    }

    /// Opens an existing work directory and takes its lock.
    /// Locks a directory that is not a run's (an experiment's), creating only the directory.
    pub(crate) fn lock_dir(root: &Path) -> Result<Self, WorkdirError> {
        std::fs::create_dir_all(root)
            .map_err(|source| WorkdirError::Io { path: root.to_path_buf(), source })?;
        let lock = Self::lock(root)?;
        Ok(WorkDir { root: root.to_path_buf(), _lock: lock })
    }

    pub(crate) fn open(root: &Path) -> Result<Self, WorkdirError> {
        if !root.join(layout::RESOLVED).is_file() {
            return Err(WorkdirError::NotWorkdir { path: root.to_path_buf() });
        }
        Self::create(root)
    }

    fn lock(root: &Path) -> Result<File, WorkdirError> {
        if root.join(layout::STORE_ENTRY).is_file() {
            return Err(WorkdirError::StoreEntry { path: root.to_path_buf() });
        }
        let path = root.join(".lock");
        let io = |source| WorkdirError::Io { path: path.clone(), source };
        let (mut file, writable) =
            match std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)
            {
                Ok(f) => (f, true),
                // A directory made read-only (or a full disk refusing a new file): an existing
                // lock file is still locked read-only, so that `teardown` can run there.
                Err(e) => match std::fs::File::open(&path) {
                    Ok(f) => (f, false),
                    Err(_) => return Err(io(e)),
                },
            };
        match file.try_lock() {
            Ok(()) => {
                if writable {
                    // Who holds it, for the message of a second benchflow (best effort).
                    let _ = file.set_len(0);
                    let _ = writeln!(file, "pid {} since {}", std::process::id(), utc_now());
                }
                Ok(file)
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default().trim().to_string();
                Err(WorkdirError::Locked { path: root.to_path_buf(), holder })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes a file atomically (temporary file, then rename).
    pub(crate) fn write(&self, rel: &str, contents: &[u8]) -> Result<(), WorkdirError> {
        write_atomic(&self.root.join(rel), contents)
    }
}

/// One spelling of a path, whether or not it exists yet: the longest part that exists is
/// resolved (symlinks, `..`), the rest appended; so that two spellings of a directory compare
/// equal.
pub(crate) fn canonical(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(real) = std::fs::canonicalize(&path) {
        return real;
    }
    // Part of it does not exist: `..` is read lexically there.
    let path = path.components().fold(PathBuf::new(), |mut p, c| {
        match c {
            std::path::Component::ParentDir => {
                p.pop();
            }
            std::path::Component::CurDir => {}
            c => p.push(c),
        }
        p
    });
    let mut rest = Vec::new();
    let mut at = path.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return path,
        }
    }
}

/// Writes `path` atomically and durably: a reader sees the old or the new contents, never a
/// mix, and a crash of the machine right after cannot leave an empty file (the contents are
/// synced before the rename, the directory after it; under a [`durable::Deferred`] scope, both
/// at the scope's sync).
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), WorkdirError> {
    let io = |source| WorkdirError::Io { path: path.to_path_buf(), source };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io)?;
    // No secret benchflow sends is written (an error text in a state may quote a server).
    let contents = crate::redact::bytes(contents);
    f.write_all(&contents).map_err(io)?;
    // Under a scope of deferred durability (an experiment's point) the file is synced with the
    // others at the scope's sync; it is in place whole either way.
    let defer = durable::defers(path);
    if !defer {
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if defer {
        durable::pending(path);
    } else if let Some(dir) = parent.and_then(|p| File::open(p).ok()) {
        let _ = dir.sync_all();
    }
    crash::boundary();
    Ok(())
}

/// A time that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "`{text}` is not an RFC 3339 time (like 2026-11-24T08:45:06.081Z or 2026-11-24T10:45:06+02:00): {why}"
)]
pub(crate) struct TimeError {
    pub text: String,
    pub why: String,
}

/// An RFC 3339 time (`2026-11-24T08:45:06.081Z`, any offset, any fraction of a second) as
/// seconds since the epoch; None if it is not one ([`parse_time`] says why).
pub(crate) fn parse_utc(t: &str) -> Option<f64> {
    parse_time(t).ok()
}

/// An RFC 3339 time as seconds since the epoch, or why not.
pub(crate) fn parse_time(t: &str) -> Result<f64, TimeError> {
    let ts: Timestamp =
        t.trim().parse().map_err(|e: jiff::Error| TimeError { text: t.to_string(), why: e.to_string() })?;
    Ok(ts.as_second() as f64 + f64::from(ts.subsec_nanosecond()) / 1e9)
}

/// The current UTC time as RFC 3339 (`2026-11-23T21:37:38.123Z`).
pub(crate) fn utc_now() -> String {
    utc_of(Timestamp::now())
}

/// Seconds since the epoch as RFC 3339, as [`utc_now`] writes it (before the epoch: the epoch).
pub(crate) fn utc_at(secs: f64) -> String {
    // Whole milliseconds (as written), so 0.1 s more is never 0.099 by the float's rounding.
    let ms = (secs.max(0.0) * 1000.0).round();
    utc_of(
        Timestamp::from_millisecond(ms.min(Timestamp::MAX.as_millisecond() as f64) as i64)
            .unwrap_or(Timestamp::MAX),
    )
}

/// Milliseconds, truncated, UTC.
fn utc_of(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A new run id: `YYYYMMDD-HHMMSS-xxxx` (UTC, plus 4 hex digits against collisions).
pub(crate) fn run_id() -> String {
    let now = Timestamp::now();
    let nanos = now.subsec_nanosecond().unsigned_abs();
    let salt = crate::rng::Rng::new(u64::from(nanos) ^ u64::from(std::process::id())).next_u64() & 0xffff;
    format!("{}-{salt:04x}", now.strftime("%Y%m%d-%H%M%S"))
}

/// `runs/<run-id>` unless a directory is given.
pub(crate) fn choose(dir: Option<&Path>) -> PathBuf {
    dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("runs").join(run_id()))
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn two_spellings_of_a_directory_are_one_canonical_path_whether_or_not_it_exists() {
        let base = std::env::temp_dir().join(format!("bf-canonical-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("real/sub")).unwrap();
        let real = canonical(&base.join("real"));
        assert_eq!(canonical(&base.join("real/sub/..")), real);
        assert_eq!(canonical(&base.join("nothing/../real")), real);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
            assert_eq!(canonical(&base.join("link")), real);
            // Not there yet: the existing part is resolved, the rest appended.
            assert_eq!(canonical(&base.join("link/new/dir")), real.join("new/dir"));
            assert_eq!(canonical(&base.join("link/new/../other")), real.join("other"));
        }
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn rfc3339_times_with_any_offset_and_fraction() {
        use super::{parse_time as parse_utc, utc_at};
        assert_eq!(parse_utc("1970-01-02T00:00:01.500Z"), Ok(86_401.5));
        assert_eq!(utc_at(86_401.5), "1970-01-02T00:00:01.500Z");
        // An offset is the same instant in UTC.
        assert_eq!(parse_utc("1970-01-02T02:00:01.5+02:00"), Ok(86_401.5));
        assert_eq!(parse_utc("1970-01-01T19:00:00-05:00"), Ok(86_400.0));
        assert_eq!(parse_utc("2000-02-29T00:00:00Z"), Ok(951_782_400.0), "a leap day");
        assert_eq!(parse_utc("2026-11-24T08:45:06.123456789Z"), Ok(1_795_509_906.123_456_7));
        // What utc_at writes reads back to the millisecond, across years and leap days.
        for s in [0.0, 951_782_400.0, 1_795_509_906.123, 4_102_444_800.999] {
            assert_eq!(parse_utc(&utc_at(s)), Ok(s), "{}", utc_at(s));
        }
        assert_eq!(utc_at(-5.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::parse_utc("yesterday"), None);
        for bad in ["yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-24T08:45:06", ""] {
            let e = parse_utc(bad).unwrap_err();
            assert_eq!(e.text, bad);
            assert!(e.to_string().contains("is not an RFC 3339 time (like 2026-11-24T08:45:06.081Z"), "{e}");
        }
    }

    #[test]
    fn now_and_run_ids_are_utc_in_their_shapes() {
        let now = super::utc_now();
        let secs = super::parse_time(&now).unwrap();
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((wall - secs).abs() < 5.0 && now.len() == 24 && now.ends_with('Z'), "{now}");
        let id = super::run_id();
        let (date, rest) = id.split_at(8);
        assert!(date.chars().all(|c| c.is_ascii_digit()) && rest.len() == 12 && &rest[7..8] == "-", "{id}");
        assert_eq!(&now[..4], &id[..4], "the year");
    }
}
