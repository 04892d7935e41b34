//! A results store shared by experiments (`--store DIR`): `index.json` maps a point's input hash
//! (the same in every experiment for the same inputs, benchflow binary included) to the point
//! directory that measured it. A point found there is copied in (hard links where the file
//! system allows) instead of measured again.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::ExperimentError;
use crate::workdir::{utc_now, write_atomic};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    /// Input hash → the point directory (absolute) that measured it.
    points: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    dir: PathBuf,
    label: String,
    at: String,
}

/// The store at a directory.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub(crate) fn open(dir: &Path) -> Result<Store, ExperimentError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ExperimentError::State { path: dir.display().to_string(), why: e.to_string() })?;
        let dir = std::path::absolute(dir).unwrap_or(dir.to_path_buf());
        Ok(Store { dir })
    }

    fn index(&self) -> Index {
        std::fs::read(self.dir.join("index.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// A directory that measured these inputs and still holds its analysis.
    pub(crate) fn lookup(&self, hash: &str) -> Option<PathBuf> {
        self.index().points.get(hash).map(|e| e.dir.clone()).filter(|d| measured(d))
    }

    /// Records a point directory as the measurement of `hash`.
    pub(crate) fn record(&self, hash: &str, dir: &Path, label: &str) -> Result<(), ExperimentError> {
        let mut index = self.index();
        let dir = std::path::absolute(dir).unwrap_or(dir.to_path_buf());
        index.points.insert(hash.to_string(), Entry { dir, label: label.to_string(), at: utc_now() });
        let text = serde_json::to_string_pretty(&index).unwrap_or_default();
        Ok(write_atomic(&self.dir.join("index.json"), text.as_bytes())?)
    }
}

/// Whether a point directory holds an analysed run.
pub(crate) fn measured(dir: &Path) -> bool {
    dir.join("analysis/latest/stats.json").is_file()
}

/// Copies a point directory (files hard-linked where possible, links kept as links) into `to`,
/// which is replaced, and notes where it came from in `reused.json`.
pub(crate) fn copy_point(from: &Path, to: &Path) -> Result<(), ExperimentError> {
    let io = |p: &Path, e: std::io::Error| ExperimentError::State {
        path: p.display().to_string(),
        why: e.to_string(),
    };
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(|e| io(to, e))?;
    }
    copy_tree(from, to).map_err(|e| io(from, e))?;
    let note = serde_json::json!({ "reused_from": from.display().to_string(), "at": utc_now() });
    write_atomic(
        &to.join("reused.json"),
        serde_json::to_string_pretty(&note).unwrap_or_default().as_bytes(),
    )?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if entry.file_name() != ".lock" && std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}
