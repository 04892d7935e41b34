//! The Pythons on this machine: where benchflow looks (in this order: `$PATH`'s `python3.N` and
//! `python3`, pyenv's `~/.pyenv/versions/*/bin/python3`, `/usr/bin` and `/usr/local/bin`), what
//! version each is, and which one suits a tool (the newest inside the tool's range).

use std::path::{Path, PathBuf};

/// A Python interpreter and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Python {
    pub path: PathBuf,
    pub version: (u32, u32, u32),
}

impl Python {
    pub fn version_text(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }
}

/// Parses `Python 3.12.1` (what `python --version` prints) or `3.12.1`.
pub(crate) fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.trim().trim_start_matches("Python").trim();
    let mut parts = v.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

/// Asks an interpreter its version (`None`: not a working Python).
pub(crate) fn probe(path: &Path) -> Option<Python> {
    let out = std::process::Command::new(path).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    // Old Pythons print the version on stderr.
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some(Python { path: path.to_path_buf(), version: parse_version(&text)? })
}

/// The places looked at, in order (each may or may not exist).
pub(crate) fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let names: Vec<String> =
        (8..=14).rev().map(|m| format!("python3.{m}")).chain(["python3".to_string()]).collect();
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        for n in &names {
            out.push(dir.join(n));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let versions = Path::new(&home).join(".pyenv/versions");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&versions)
            .map(|d| d.flatten().map(|e| e.path().join("bin/python3")).collect())
            .unwrap_or_default();
        found.sort();
        out.extend(found);
    }
    for dir in ["/usr/bin", "/usr/local/bin"] {
        for n in &names {
            out.push(Path::new(dir).join(n));
        }
    }
    out
}

/// Every working Python found, each interpreter once (by its resolved path), in search order.
pub(crate) fn discover() -> Vec<Python> {
    let mut seen = std::collections::HashSet::new();
    candidates()
        .into_iter()
        .filter(|p| p.is_file())
        .filter(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())))
        .filter_map(|p| probe(&p))
        .collect()
}

/// The newest Python with `min <= (major, minor) < below`; on a tie the one found first.
pub(crate) fn choose(found: &[Python], min: (u32, u32), below: Option<(u32, u32)>) -> Option<&Python> {
    found
        .iter()
        .filter(|p| {
            let v = (p.version.0, p.version.1);
            v >= min && below.is_none_or(|b| v < b)
        })
        .fold(None, |best: Option<&Python>, p| match best {
            Some(b) if b.version >= p.version => Some(b),
            _ => Some(p),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(path: &str, v: (u32, u32, u32)) -> Python {
        Python { path: path.into(), version: v }
    }

    #[test]
    fn versions_parse_as_python_prints_them() {
        assert_eq!(parse_version("Python 3.12.1\n"), Some((3, 12, 1)));
        assert_eq!(parse_version("Python 3.13.0rc2"), Some((3, 13, 0)));
        assert_eq!(parse_version("3.11"), Some((3, 11, 0)));
        assert_eq!(parse_version("no python here"), None);
    }

    #[test]
    fn the_newest_python_inside_the_range_is_chosen() {
        let found = [py("/a", (3, 11, 7)), py("/b", (3, 13, 0)), py("/c", (3, 12, 1)), py("/d", (3, 13, 0))];
        assert_eq!(choose(&found, (3, 8), None).map(|p| p.path.clone()), Some("/b".into()));
        assert_eq!(choose(&found, (3, 11), Some((3, 13))).map(|p| p.path.clone()), Some("/c".into()));
        assert_eq!(choose(&found, (3, 14), None), None);
    }
}
