//! Deferred durability: while a [`Deferred`] scope lives, a file written atomically under one
//! of its roots ([`super::write_atomic`]) is still written whole under a temporary name and
//! renamed into place (a reader, or a resume after a kill, sees the old or the new contents,
//! never a mix), but it is not synced one by one: [`Deferred::sync`] makes every such file
//! durable at once (each file and each directory that holds one, fsynced in parallel, so the
//! file system commits them together). An experiment's point writes some forty files (its
//! inputs, plan, records, state); one sync at its end, before the experiment records it done,
//! replaces some eighty fsyncs in a row.
//!
//! What is never deferred: the undo records (`setup/undo/`), which must be on disk before the
//! step they describe acts.

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use super::{WorkdirError, layout};

struct Scope {
    id: u64,
    roots: Vec<PathBuf>,
    /// Files written (renamed into place) since the last sync, without their fsync.
    pending: Vec<PathBuf>,
}

static SCOPES: Mutex<Vec<Scope>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(1);

fn scopes() -> std::sync::MutexGuard<'static, Vec<Scope>> {
    SCOPES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A scope of deferred durability over some directories (see the module's docs). Dropped, it
/// syncs what is pending (best effort) and ends.
#[derive(Debug)]
pub(crate) struct Deferred {
    id: u64,
}

impl Deferred {
    /// Defers the syncs of the files written atomically under `roots` until [`Deferred::sync`].
    pub(crate) fn begin(roots: &[&Path]) -> Deferred {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let roots = roots.iter().map(|r| r.to_path_buf()).collect();
        scopes().push(Scope { id, roots, pending: Vec::new() });
        Deferred { id }
    }

    /// Makes every file written under the scope's roots since it began (or since the last
    /// sync) durable: each file, then each directory holding one, fsynced (in parallel).
    pub(crate) fn sync(&self) -> Result<(), WorkdirError> {
        let pending = {
            let mut all = scopes();
            match all.iter_mut().find(|s| s.id == self.id) {
                Some(s) => std::mem::take(&mut s.pending),
                None => Vec::new(),
            }
        };
        sync_all(pending)
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        let pending = {
            let mut all = scopes();
            let Some(i) = all.iter().position(|s| s.id == self.id) else { return };
            all.remove(i).pending
        };
        let _ = sync_all(pending);
    }
}

fn holds(s: &Scope, path: &Path) -> bool {
    s.roots.iter().any(|r| path.strip_prefix(r).is_ok_and(|rel| !rel.starts_with(layout::UNDO)))
}

/// Whether a scope defers the sync of `path` (see [`pending`]).
pub(super) fn defers(path: &Path) -> bool {
    let all = scopes();
    !all.is_empty() && all.iter().any(|s| holds(s, path))
}

/// Records `path`, now in place unsynced, for the next sync of the scope that holds it (if it
/// ended meanwhile, the file is synced now).
pub(super) fn pending(path: &Path) {
    let held = {
        let mut all = scopes();
        match all.iter_mut().find(|s| holds(s, path)) {
            Some(s) => {
                s.pending.push(path.to_path_buf());
                true
            }
            None => false,
        }
    };
    if !held {
        let _ = sync_all(vec![path.to_path_buf()]);
    }
}

/// Fsyncs `files` and then their directories, a few at a time in parallel (concurrent fsyncs
/// share the file system's journal commits). The first failure is returned.
fn sync_all(mut files: Vec<PathBuf>) -> Result<(), WorkdirError> {
    files.sort();
    files.dedup();
    let mut dirs: Vec<PathBuf> = files.iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
    dirs.sort();
    dirs.dedup();
    fsync_parallel(&files)?;
    fsync_parallel(&dirs)
}

fn fsync_parallel(paths: &[PathBuf]) -> Result<(), WorkdirError> {
    // A file removed since it was written needs nothing.
    in_parallel(paths, |p| match File::open(p).and_then(|f| f.sync_all()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(WorkdirError::Io { path: p.clone(), source: e })
        }
        _ => Ok(()),
    })
}

/// Runs `one` over `paths` on a few threads; the first failure is returned. A thread that
/// panicked is a failure too (naming the first path of its share, which is then not known
/// to be synced), never taken for success.
fn in_parallel(
    paths: &[PathBuf],
    one: impl Fn(&PathBuf) -> Result<(), WorkdirError> + Sync,
) -> Result<(), WorkdirError> {
    const THREADS: usize = 8;
    if paths.is_empty() {
        return Ok(());
    }
    if paths.len() == 1 {
        return one(&paths[0]);
    }
    let chunk = paths.len().div_ceil(THREADS);
    let one = &one;
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| (&part[0], s.spawn(move || part.iter().try_for_each(one))))
            .collect();
        let mut first = Ok(());
        // Every thread is joined (none left running) before the first failure is returned.
        for (path, h) in handles {
            let done = h.join().unwrap_or_else(|_| {
                Err(WorkdirError::Io {
                    path: path.clone(),
                    source: std::io::Error::other("the thread syncing it (and the files after it) panicked"),
                })
            });
            if first.is_ok() {
                first = done;
            }
        }
        first
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_under_a_scope_are_synced_at_its_sync_and_undo_records_at_once() {
        let base = std::env::temp_dir().join(format!("bf-durable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (inside, outside) = (base.join("point"), base.join("other"));
        let scope = Deferred::begin(&[&inside]);
        assert!(defers(&inside.join("inputs/resolved.yaml")));
        assert!(defers(&inside.join("state.json")));
        assert!(!defers(&inside.join(layout::UNDO).join("01_x.json")), "undo records are never deferred");
        assert!(!defers(&outside.join("state.json")));
        assert!(!defers(&base.join("pointless/state.json")), "a sibling sharing the prefix is not inside");
        // Written through write_atomic: in place at once, synced at the scope's sync.
        crate::workdir::write_atomic(&inside.join("a/b.txt"), b"one").unwrap();
        crate::workdir::write_atomic(&inside.join("a/c.txt"), b"two").unwrap();
        crate::workdir::write_atomic(&outside.join("d.txt"), b"three").unwrap();
        assert_eq!(std::fs::read(inside.join("a/b.txt")).unwrap(), b"one");
        let pending = |id| scopes().iter().find(|s| s.id == id).map(|s| s.pending.len());
        assert_eq!(pending(scope.id), Some(2));
        scope.sync().unwrap();
        assert_eq!(pending(scope.id), Some(0));
        let id = scope.id;
        drop(scope);
        assert_eq!(pending(id), None, "a dropped scope ends");
        assert!(!defers(&inside.join("state.json")));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_sync_thread_that_panics_is_an_error_not_a_success() {
        let paths: Vec<PathBuf> = (0..16).map(|i| PathBuf::from(format!("/nowhere/f{i:02}"))).collect();
        let seen = AtomicU64::new(0);
        let all_ok = in_parallel(&paths, |_| {
            seen.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        assert!(all_ok.is_ok());
        assert_eq!(seen.load(Ordering::Relaxed), 16, "every path is visited");
        let err = in_parallel(&paths, |p| {
            if p.ends_with("f09") {
                panic!("injected");
            }
            Ok(())
        })
        .expect_err("a panicked thread is a failure");
        let WorkdirError::Io { path, source } = err else { panic!("not an Io error: {err:?}") };
        // Two paths a thread: f09 is in the share that starts at f08.
        assert_eq!(path, PathBuf::from("/nowhere/f08"));
        assert!(source.to_string().contains("panicked"), "{source}");
        // A failure of one path is returned as it is.
        let err = in_parallel(&paths, |p| match p.ends_with("f03") {
            true => Err(WorkdirError::Record { path: p.clone(), why: "bad".into() }),
            false => Ok(()),
        })
        .expect_err("the failure is returned");
        assert!(matches!(err, WorkdirError::Record { ref path, .. } if path.ends_with("f03")), "{err:?}");
    }
}
