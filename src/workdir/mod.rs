//! The work directory: one directory per run, created (and locked) before anything else
//! happens, written as the run goes so that a crash leaves a true record.
//!
//! ```text
//! inputs/          the files as given, overrides, resolved.yaml, version
//! plan/            plan.json, plan.dot, plan.txt, steps/<id>.json (each step rendered)
//! setup/commands/  one log per action: command line, output, exit status
//! state.json       each step's status, input hash, timings, attempts (atomic writes)
//! events.jsonl     the event stream
//! results/         per-request records, server metrics, run.json
//! analysis/        stats, plots, report.html
//! ```

pub(crate) mod archive;
pub(crate) mod crash;
pub(crate) mod layout;
pub(crate) mod runs;

use std::{
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

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

/// Writes `path` atomically and durably: a reader sees the old or the new contents, never a
/// mix, and a crash of the machine right after cannot leave an empty file (the contents are
/// synced before the rename, the directory after it).
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
    f.write_all(&contents).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = parent.and_then(|p| File::open(p).ok()) {
        let _ = dir.sync_all();
    }
    crash::boundary();
    Ok(())
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parts(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (y, m, day, rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

/// (year, month, day) → days since 1970-01-01, proleptic Gregorian (the inverse of `civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time written by [`utc_now`] (`2026-11-24T08:45:06.081Z`) as seconds since the epoch.
pub(crate) fn parse_utc(t: &str) -> Option<f64> {
    let (date, time) = t.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (d.next()?.parse().ok()?, d.next()?.parse().ok()?, d.next()?.parse().ok()?);
    let mut hms = time.splitn(3, ':');
    let (hh, mm, ss): (f64, f64, f64) =
        (hms.next()?.parse().ok()?, hms.next()?.parse().ok()?, hms.next()?.parse().ok()?);
    Some(days_from_civil(y, m, day) as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

/// The current UTC time as RFC 3339 (`2026-11-23T21:37:38.123Z`).
pub(crate) fn utc_now() -> String {
    utc_of(SystemTime::now())
}

/// Seconds since the epoch as RFC 3339, as [`utc_now`] writes it.
pub(crate) fn utc_at(secs: f64) -> String {
    utc_of(UNIX_EPOCH + std::time::Duration::from_secs_f64(secs.max(0.0)))
}

fn utc_of(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, ms) = parts(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

/// A new run id: `YYYYMMDD-HHMMSS-xxxx` (UTC, plus 4 hex digits against collisions).
pub(crate) fn run_id() -> String {
    let now = SystemTime::now();
    let (y, m, d, hh, mm, ss, _) = parts(now);
    let nanos = now.duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let salt = crate::rng::Rng::new(u64::from(nanos) ^ u64::from(std::process::id())).next_u64() & 0xffff;
    format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}-{salt:04x}")
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
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1));
        assert_eq!(super::civil(20_415), (2025, 11, 23));
        assert_eq!(super::civil(11_016), (2000, 2, 29));
        for days in [0, 11_016, 20_415, -1] {
            let (y, m, d) = super::civil(days);
            assert_eq!(super::days_from_civil(y, m, d), days);
        }
        assert_eq!(super::parse_utc("1970-01-02T00:00:01.500Z"), Some(86_401.5));
        assert_eq!(super::utc_at(86_401.5), "1970-01-02T00:00:01.500Z");
        assert_eq!(super::parse_utc("yesterday"), None);
    }
}
