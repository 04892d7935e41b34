//! The harness runs of a work directory: each run of the load writes `results/<id>/` and its
//! analysis `analysis/<id>/` (ids `001`, `002`, …), with `results/latest` and `analysis/latest`
//! pointing at the newest. A run against a stood-up stack never moves earlier results aside.
//! A work directory written before this layout (`results/requests.csv` directly) is read as one
//! run with the empty id.

use super::layout;
use std::path::{Path, PathBuf};

use super::WorkdirError;

/// Where one harness run's records and analysis go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDirs {
    /// `001`, …; empty for the older layout.
    pub id: String,
    pub results: PathBuf,
    pub analysis: PathBuf,
}

impl RunDirs {
    /// A new run: the next id, its two folders created, `latest` pointing at them.
    pub fn create(root: &Path) -> Result<RunDirs, WorkdirError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WorkdirError::Io { path, source }
        };
        let results_root = root.join(layout::RESULTS);
        std::fs::create_dir_all(&results_root).map_err(io(&results_root))?;
        // Past both folders: an id whose records were moved away still has its analysis, which
        // a new run must not overwrite.
        let ids = |dir: &Path| -> Vec<u32> {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .collect()
        };
        let analysis_root = root.join(layout::ANALYSIS);
        let last = ids(&results_root).into_iter().chain(ids(&analysis_root)).max().unwrap_or(0);
        let id = format!("{:03}", last + 1);
        let dirs = RunDirs::of(root, &id);
        for d in [&dirs.results, &dirs.analysis] {
            std::fs::create_dir_all(d).map_err(io(d))?;
            point_latest(d)?;
        }
        Ok(dirs)
    }

    /// The newest run (`results/latest`), or the older single-run layout, or `None`.
    pub fn latest(root: &Path) -> Option<RunDirs> {
        let id = std::fs::read_link(root.join("results/latest"))
            .ok()
            .and_then(|target| target.file_name().map(|n| n.to_string_lossy().to_string()));
        match id {
            Some(id) => Some(RunDirs::of(root, &id)),
            None if root.join("results/requests.csv").is_file() => Some(RunDirs {
                id: String::new(),
                results: root.join(layout::RESULTS),
                analysis: root.join(layout::ANALYSIS),
            }),
            None => None,
        }
    }

    /// The newest run, its analysis folder created and `analysis/latest` pointing at it (for
    /// `benchflow analyze DIR`).
    pub fn latest_for_analysis(root: &Path) -> Option<RunDirs> {
        let dirs = RunDirs::latest(root)?;
        if !dirs.id.is_empty() && std::fs::create_dir_all(&dirs.analysis).is_ok() {
            let _ = point_latest(&dirs.analysis);
        }
        Some(dirs)
    }

    /// Run `id` (`002`, or `2`) if its records are there, its analysis folder created; else the
    /// runs there, to say so.
    pub fn named_for_analysis(root: &Path, id: &str) -> Result<RunDirs, Vec<String>> {
        let mut ids: Vec<String> = std::fs::read_dir(root.join(layout::RESULTS))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
            .filter(|n| {
                n.parse::<u32>().is_ok() && root.join(layout::RESULTS).join(n).join("requests.csv").is_file()
            })
            .collect();
        ids.sort();
        let number = id.parse::<u32>().ok();
        let Some(found) =
            ids.iter().find(|r| *r == id || number.is_some() && r.parse::<u32>().ok() == number)
        else {
            return Err(ids);
        };
        let dirs = RunDirs::of(root, found);
        let _ = std::fs::create_dir_all(&dirs.analysis);
        Ok(dirs)
    }

    fn of(root: &Path, id: &str) -> RunDirs {
        RunDirs {
            id: id.to_string(),
            results: root.join(layout::RESULTS).join(id),
            analysis: root.join(layout::ANALYSIS).join(id),
        }
    }
}

/// `PARENT/latest` → `dir`'s name (relative, so the work directory can move).
fn point_latest(dir: &Path) -> Result<(), WorkdirError> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else { return Ok(()) };
    let link = parent.join("latest");
    let _ = std::fs::remove_file(&link);
    #[cfg(unix)]
    std::os::unix::fs::symlink(name, &link).map_err(|source| WorkdirError::Io { path: link, source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_numbered_and_latest_follows_the_newest() {
        let root = std::env::temp_dir().join(format!("bf-runs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(RunDirs::latest(&root), None);
        let first = RunDirs::create(&root).unwrap();
        std::fs::write(first.results.join("requests.csv"), "x").unwrap();
        let second = RunDirs::create(&root).unwrap();
        assert_eq!((first.id.as_str(), second.id.as_str()), ("001", "002"));
        assert_eq!(RunDirs::latest(&root), Some(second.clone()));
        assert!(root.join("results/latest").is_dir() && root.join("analysis/latest").is_dir());
        // The first run's records are where they were.
        assert_eq!(std::fs::read_to_string(root.join("results/001/requests.csv")).unwrap(), "x");
        // The latest run's records moved away: its analysis still holds the id.
        std::fs::rename(root.join("results/002"), root.join("moved-002")).unwrap();
        assert_eq!(RunDirs::create(&root).unwrap().id, "003");
        std::fs::remove_dir_all(&root).unwrap();
        // The older layout reads as one run.
        std::fs::create_dir_all(root.join("results")).unwrap();
        std::fs::write(root.join("results/requests.csv"), "x").unwrap();
        assert_eq!(RunDirs::latest(&root).map(|d| d.results), Some(root.join("results")));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
