//! Where measured points are kept and found again by their input hash (the same in every
//! experiment for the same inputs, benchflow binary included), and how a point's directory is
//! copied or set aside without losing a record.
//!
//! The results store (`--store DIR`) is content-addressed: `DIR/<hash>/` holds its own copy of
//! the point directory that measured those inputs (files read-only), written once, under a
//! temporary name renamed into place; nothing in it is rewritten later. A point found there is
//! copied into the experiment (plain copies: a re-run never appends to another point's logs or
//! events). A point directory that held a measurement is never deleted: when its place is
//! needed it is moved to `superseded/` in the experiment.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    ExperimentError,
    state::{ExpState, PointStatus},
};
use crate::workdir::{layout, utc_now, write_atomic};

/// The store at a directory.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub dir: PathBuf,
}

fn io(p: &Path) -> impl Fn(std::io::Error) -> ExperimentError + '_ {
    move |e| ExperimentError::State { path: p.display().to_string(), why: e.to_string() }
}

impl Store {
    /// Opens (creates) the store, removing the partial copies that killed benchflows left.
    pub(crate) fn open(dir: &Path) -> Result<Store, ExperimentError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let dir = std::fs::canonicalize(dir).map_err(io(dir))?;
        let store = Store { dir };
        store.sweep_partial();
        Ok(store)
    }

    /// `.<hash>.<pid>.tmp` directories whose benchflow is gone: a copy it never finished.
    fn sweep_partial(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(pid) = name.strip_suffix(".tmp").and_then(|n| n.rsplit('.').next()?.parse::<i32>().ok())
            else {
                continue;
            };
            if name.starts_with('.') && !crate::steps::spawn::alive(pid, None) {
                let _ = make_writable(&e.path()).and_then(|()| std::fs::remove_dir_all(e.path()));
            }
        }
    }

    /// Whether the store has an entry for these inputs (not verified: `lookup` does that).
    pub(crate) fn has(&self, hash: &str) -> bool {
        plain_hash(hash) && self.dir.join(hash).join(STORED).is_file()
    }

    /// The store's copy of a measurement of these inputs, if it holds one whose record
    /// (`stored.json`) names these inputs and whose every file is as it was stored.
    pub(crate) fn lookup(&self, hash: &str) -> Option<PathBuf> {
        let dir = self.dir.join(hash);
        (plain_hash(hash) && measured(&dir) && intact(&dir, hash)).then_some(dir)
    }

    /// Keeps a copy of a point directory that measured `hash` (nothing when the store holds
    /// one already: the first measurement of a set of inputs stays the store's). A failure
    /// leaves nothing behind; the caller says it and goes on (the store is a cache).
    pub(crate) fn record(&self, hash: &str, dir: &Path, label: &str) -> Result<(), ExperimentError> {
        if !plain_hash(hash) || self.lookup(hash).is_some() {
            return Ok(());
        }
        let fresh = self.dir.join(format!(".{hash}.{}.tmp", std::process::id()));
        let result = self.fill(&fresh, hash, dir, label);
        if result.is_err() {
            let _ = make_writable(&fresh).and_then(|()| std::fs::remove_dir_all(&fresh));
        }
        result
    }

    fn fill(&self, fresh: &Path, hash: &str, dir: &Path, label: &str) -> Result<(), ExperimentError> {
        if fresh.exists() {
            let _ = make_writable(fresh);
            std::fs::remove_dir_all(fresh).map_err(io(fresh))?;
        }
        copy_tree(dir, fresh, true).map_err(io(fresh))?;
        let files = manifest(fresh).map_err(io(fresh))?;
        let note = serde_json::json!({
            "hash": hash,
            "label": label,
            "measured_in": dir.display().to_string(),
            "at": utc_now(),
            "files": files,
        });
        let record = fresh.join(STORED);
        write_atomic(&record, serde_json::to_string_pretty(&note).unwrap_or_default().as_bytes())?;
        read_only(&record).map_err(io(&record))?;
        let at = self.dir.join(hash);
        if at.exists() && !(measured(&at) && intact(&at, hash)) {
            // Something not an intact measurement sits where this one goes (a hand-edited or
            // swapped entry): set aside, never deleted.
            let name = format!(".{hash}.not-a-measurement");
            let aside = (1..).map(|n| self.dir.join(format!("{name}.{n}"))).find(|p| !p.exists());
            if let Some(aside) = aside {
                std::fs::rename(&at, aside).map_err(io(&at))?;
            }
        }
        match std::fs::rename(fresh, &at) {
            Ok(()) => Ok(()),
            // Another experiment stored the same inputs meanwhile: its copy stays.
            Err(_) if measured(&at) && intact(&at, hash) => {
                let _ = make_writable(fresh).and_then(|()| std::fs::remove_dir_all(fresh));
                Ok(())
            }
            Err(e) => Err(io(&at)(e)),
        }
    }
}

/// A store entry's record: what it measured and the sha256 of each of its files.
const STORED: &str = layout::STORE_ENTRY;

/// Every file under `dir` (but the record) → its sha256, hex.
fn manifest(dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let kind = e.file_type()?;
            if kind.is_dir() {
                walk(base, &e.path(), out)?;
            } else if kind.is_file() && !(dir == base && e.file_name() == STORED) {
                let rel = e.path().strip_prefix(base).unwrap_or(&e.path()).to_string_lossy().to_string();
                let digest = Sha256::digest(std::fs::read(e.path())?);
                out.insert(rel, digest.iter().map(|b| format!("{b:02x}")).collect());
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// Whether a store entry is what was stored for `hash`: its record names `hash`, and its files
/// are exactly those recorded, with the same contents.
fn intact(dir: &Path, hash: &str) -> bool {
    let Some(record) =
        std::fs::read(dir.join(STORED)).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return false;
    };
    let files: Option<BTreeMap<String, String>> =
        record.get("files").and_then(|f| serde_json::from_value(f.clone()).ok());
    record.get("hash").and_then(Value::as_str) == Some(hash)
        && files.is_some_and(|want| manifest(dir).is_ok_and(|got| got == want))
}

fn read_only(path: &Path) -> std::io::Result<()> {
    let mut perms = std::fs::metadata(path)?.permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(path, perms)
}

/// An input hash as benchflow writes them (a directory name, never a path).
fn plain_hash(hash: &str) -> bool {
    !hash.is_empty() && hash.len() <= 128 && hash.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether a point directory holds an analysed run: its statistics and the records they
/// came from.
pub(crate) fn measured(dir: &Path) -> bool {
    dir.join("analysis/latest/stats.json").is_file() && dir.join("results/latest/requests.csv").is_file()
}

/// Copies a measured point directory into `to` (plain copies, links kept as links) and notes
/// where it came from, and for which inputs, in `reused.json`. The copy is made beside `to`
/// and renamed into place whole; whatever `to` held is set aside in `root/superseded` first,
/// never deleted; a source that is `to` itself is refused.
pub(crate) fn copy_point(root: &Path, from: &Path, to: &Path, hash: &str) -> Result<(), ExperimentError> {
    if same_dir(from, to) {
        return Err(ExperimentError::State {
            path: to.display().to_string(),
            why: "a point cannot be copied onto itself (two spellings of one path?)".into(),
        });
    }
    let name = to.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let fresh = to.with_file_name(format!(".{name}.copying"));
    if fresh.exists() {
        // A copy a killed benchflow did not finish: the source is intact, the copy is not.
        let _ = make_writable(&fresh);
        std::fs::remove_dir_all(&fresh).map_err(io(&fresh))?;
    }
    copy_tree(from, &fresh, false).map_err(io(&fresh))?;
    let note =
        serde_json::json!({ "reused_from": from.display().to_string(), "hash": hash, "at": utc_now() });
    write_atomic(&fresh.join(REUSED), serde_json::to_string_pretty(&note).unwrap_or_default().as_bytes())?;
    if to.exists() {
        set_aside(root, to, &name)?;
    }
    std::fs::rename(&fresh, to).map_err(io(to))?;
    Ok(())
}

/// A copied point's note: where it came from and for which inputs.
const REUSED: &str = "reused.json";

/// The inputs a copied point directory was copied for (its `reused.json`), if it is one.
fn copied_for(dir: &Path) -> Option<String> {
    let note: Value = serde_json::from_slice(&std::fs::read(dir.join(REUSED)).ok()?).ok()?;
    note.get("hash")?.as_str().map(str::to_string)
}

/// Moves a directory to `root/superseded/<name>` (`<name>.2`, … when taken) and says where.
pub(crate) fn set_aside(root: &Path, dir: &Path, name: &str) -> Result<PathBuf, ExperimentError> {
    let base = root.join(layout::SUPERSEDED);
    std::fs::create_dir_all(&base).map_err(io(&base))?;
    let mut to = base.join(name);
    let mut n = 1;
    while to.exists() {
        n += 1;
        to = base.join(format!("{name}.{n}"));
    }
    std::fs::rename(dir, &to).map_err(io(dir))?;
    Ok(to)
}

/// Makes a point's directory ready for the inputs `hash`: a directory that holds what ran
/// with other inputs (or with inputs not on record) is set aside, and when it was measured
/// it stays findable by its hash in `state.superseded`. A point found with the same inputs
/// keeps its directory (a point interrupted midway resumes there).
pub(crate) fn settle(root: &Path, state: &mut ExpState, id: &str, hash: &str) -> Result<(), ExperimentError> {
    let dir = root.join(layout::POINTS).join(id);
    let before = state.points.get(id);
    if before.is_some_and(|b| b.hash == hash) || !dir.exists() {
        return Ok(());
    }
    // A whole copy made for these very inputs, whose record a killed benchflow did not save:
    // it is this point's.
    if copied_for(&dir).as_deref() == Some(hash) && measured(&dir) {
        let entry = state.points.entry(id.to_string()).or_default();
        entry.status = PointStatus::Done;
        entry.hash = hash.to_string();
        return Ok(());
    }
    match before {
        // Measured for other inputs: kept, and found again by that hash. (A copy's own note
        // says which inputs it holds; the record is trusted only where there is none.)
        Some(b)
            if b.status == PointStatus::Done
                && plain_hash(&b.hash)
                && measured(&dir)
                && copied_for(&dir).is_none_or(|h| h == b.hash) =>
        {
            let old = b.hash.clone();
            let to = set_aside(root, &dir, &old)?;
            let rel = to.strip_prefix(root).unwrap_or(&to).display().to_string();
            state.superseded.entry(old).or_insert(rel);
        }
        _ => {
            set_aside(root, &dir, id)?;
        }
    }
    // Its directory is gone: the record no longer says what it holds (a crash before the
    // point is decided again must not trust the old hash for what comes in its place).
    if let Some(entry) = state.points.get_mut(id) {
        entry.status = PointStatus::Pending;
        entry.hash.clear();
    }
    Ok(())
}

/// A measured directory this experiment set aside for these inputs.
pub(crate) fn superseded(state: &ExpState, root: &Path, hash: &str) -> Option<PathBuf> {
    let rel = state.superseded.get(hash)?;
    let dir = root.join(rel);
    (measured(&dir) && !rel.contains("..")).then_some(dir)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn copy_tree(from: &Path, to: &Path, read_only: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst, read_only)?;
        } else if entry.file_name() != ".lock" && (read_only || entry.file_name() != STORED) {
            // (A copy out of the store is a point again: without the store's record.)
            std::fs::copy(&src, &dst)?;
            let mut perms = std::fs::metadata(&dst)?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(read_only);
            std::fs::set_permissions(&dst, perms)?;
        }
    }
    Ok(())
}

fn make_writable(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_writable(&entry.path())?;
        } else if entry.file_type()?.is_file() {
            let mut perms = entry.metadata()?.permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(entry.path(), perms)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bf-store-{name}-{}", std::process::id()));
        let _ = make_writable(&d);
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn measured_point(dir: &Path, marker: &str) {
        std::fs::create_dir_all(dir.join("results/latest")).unwrap();
        std::fs::write(dir.join("results/latest/requests.csv"), marker).unwrap();
        std::fs::create_dir_all(dir.join("analysis/latest")).unwrap();
        std::fs::write(dir.join("analysis/latest/stats.json"), marker).unwrap();
        std::fs::write(dir.join("events.jsonl"), format!("{marker}\n")).unwrap();
    }

    #[test]
    fn the_store_keeps_its_own_read_only_copy_that_later_changes_to_the_point_do_not_reach() {
        let d = scratch("own");
        let point = d.join("exp/points/p001");
        measured_point(&point, "first");
        let store = Store::open(&d.join("store")).unwrap();
        assert!(store.lookup("abc").is_none());
        store.record("abc", &point, "rate=2").unwrap();
        let kept = store.lookup("abc").unwrap();
        assert!(std::fs::metadata(kept.join("events.jsonl")).unwrap().permissions().readonly());
        // The experiment's point is measured again, appended to, even deleted: the store's copy
        // is unchanged.
        std::fs::write(point.join("events.jsonl"), "rewritten\n").unwrap();
        std::fs::remove_dir_all(&point).unwrap();
        assert_eq!(std::fs::read_to_string(kept.join("events.jsonl")).unwrap(), "first\n");
        // A second measurement of the same inputs does not replace the first.
        let other = d.join("exp2/points/p009");
        measured_point(&other, "second");
        store.record("abc", &other, "rate=2").unwrap();
        assert_eq!(std::fs::read_to_string(kept.join("analysis/latest/stats.json")).unwrap(), "first");
        // Hashes are names, never paths.
        assert!(store.lookup("../exp2").is_none());
        let _ = make_writable(&d);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_copy_sets_aside_what_it_replaces_and_shares_no_file_with_its_source() {
        let d = scratch("copy");
        let (a, b) = (d.join("points/p001"), d.join("points/p002"));
        measured_point(&a, "a");
        measured_point(&b, "b");
        copy_point(&d, &a, &b, "h1").unwrap();
        assert_eq!(std::fs::read_to_string(b.join("analysis/latest/stats.json")).unwrap(), "a");
        assert!(b.join("reused.json").is_file());
        assert_eq!(copied_for(&b).as_deref(), Some("h1"));
        // What p002 held is kept, not deleted.
        let kept = d.join(layout::SUPERSEDED).join("p002");
        assert_eq!(std::fs::read_to_string(kept.join("analysis/latest/stats.json")).unwrap(), "b");
        // Appending to the copy leaves the source as it was.
        std::fs::write(b.join("events.jsonl"), "more\n").unwrap();
        assert_eq!(std::fs::read_to_string(a.join("events.jsonl")).unwrap(), "a\n");
        // A second set-aside of the same name gets its own place.
        copy_point(&d, &a, &b, "h1").unwrap();
        assert!(d.join(layout::SUPERSEDED).join("p002.2").is_dir());
        // The same directory by another spelling is refused, and nothing moves.
        let other_spelling = d.join("points/../points/p001");
        assert!(copy_point(&d, &a, &other_spelling, "h1").is_err());
        assert!(measured(&a));
        let _ = std::fs::remove_dir_all(&d);
    }
}
