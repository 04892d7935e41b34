//! `benchflow archive DIR`: the work directory as a `.tar.gz` with a checksum manifest
//! (`MANIFEST.sha256`, one `sha256  path` line per file, as `sha256sum -c` reads it; `.lock`
//! files left out at any depth: an experiment's directory holds one per stack and point); and
//! the reverse for `reproduce`, which verifies every checksum. An experiment's directory packs
//! the same way.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
};

use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use sha2::{Digest, Sha256};

/// Why an archive could not be written or read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    #[error("failed to archive {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("failed to unpack {path}: {source}")]
    Unpack { path: PathBuf, source: std::io::Error },
    #[error("{archive}: {file} does not match its checksum in MANIFEST.sha256")]
    Checksum { archive: PathBuf, file: String },
    #[error("{0}: no MANIFEST.sha256 in the archive")]
    NoManifest(PathBuf),
    #[error("{0}: MANIFEST.sha256 lists no file: it would verify nothing")]
    EmptyManifest(PathBuf),
    #[error("{archive}: MANIFEST.sha256 line {line}: {why}")]
    BadManifest { archive: PathBuf, line: usize, why: String },
    #[error("{archive}: {file} is in the archive but not in MANIFEST.sha256: it cannot be verified")]
    Unlisted { archive: PathBuf, file: String },
    #[error("{out}: {why}; choose another -o")]
    Output { out: PathBuf, why: &'static str },
}

fn files(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let t = e.file_type()?;
        if t.is_dir() {
            files(root, &r, out)?;
        } else if t.is_file() && e.file_name() != ".lock" && r != Path::new("MANIFEST.sha256") {
            out.push(r);
        }
    }
    Ok(())
}

/// The sha256 of `bytes` in lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Packs `dir` into `out` (`<dir>.tar.gz` by default); returns the archive's path and the
/// number of files.
pub(crate) fn pack(dir: &Path, out: Option<&Path>) -> Result<(PathBuf, usize), ArchiveError> {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "run".into());
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| dir.with_file_name(format!("{name}.tar.gz")));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io { path, source }
    };
    // Never over a file that is not an archive (a workload given as -o by mistake), nor inside
    // the directory packed.
    let refuse = |why| Err(ArchiveError::Output { out: out.clone(), why });
    if out.is_dir() {
        return refuse("is a directory: give the archive's file name");
    }
    if out.is_file() {
        let mut magic = [0u8; 2];
        let read = std::fs::File::open(&out).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic));
        if read.is_err() || magic != [0x1f, 0x8b] {
            return refuse("exists and is not a .tar.gz archive: it would be replaced");
        }
    }
    let inside = |p: &Path| std::path::absolute(p).ok().map(|p| super::canonical(&p));
    if let (Some(o), Some(d)) = (inside(&out), inside(dir))
        && o.starts_with(&d)
    {
        return refuse("is inside the directory being archived");
    }
    let mut list = Vec::new();
    files(dir, Path::new(""), &mut list).map_err(io(dir))?;
    // Written beside, then renamed: an archive that fails half-way replaces nothing.
    let partial = out.with_file_name(format!(
        ".{}.partial",
        out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
    ));
    let written = write_archive(dir, &name, &list, &partial);
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written?;
    std::fs::rename(&partial, &out).map_err(io(&out))?;
    Ok((out, list.len()))
}

/// The tar.gz of `list` (paths under `dir`) at `out`, each under `name/`, with its manifest.
fn write_archive(dir: &Path, name: &str, list: &[PathBuf], out: &Path) -> Result<(), ArchiveError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io { path, source }
    };
    let out = out.to_path_buf();
    let file = std::fs::File::create(&out).map_err(io(&out))?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    let mut manifest = String::new();
    for rel in list {
        let bytes = std::fs::read(dir.join(rel)).map_err(io(&dir.join(rel)))?;
        manifest.push_str(&format!("{}  {}\n", sha256_hex(&bytes), rel.display()));
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, Path::new(&name).join(rel), bytes.as_slice()).map_err(io(&out))?;
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, Path::new(&name).join("MANIFEST.sha256"), manifest.as_bytes())
        .map_err(io(&out))?;
    tar.into_inner().and_then(|gz| gz.finish()).and_then(|f| f.sync_all()).map_err(io(&out))?;
    Ok(())
}

/// Unpacks an archive into `dest`, verifying every checksum; returns the run directory inside.
/// The manifest must list every file of the archive, each once, and nothing else (an emptied
/// or cut manifest verifies nothing: refused). When it fails, `dest` is removed.
pub(crate) fn unpack(archive: &Path, dest: &Path) -> Result<PathBuf, ArchiveError> {
    let unpacked = unpack_in(archive, dest);
    if unpacked.is_err() {
        let _ = std::fs::remove_dir_all(dest);
    }
    unpacked
}

fn unpack_in(archive: &Path, dest: &Path) -> Result<PathBuf, ArchiveError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Unpack { path, source }
    };
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let root = extract(GzDecoder::new(file), dest).map_err(io(archive))?.map(|top| dest.join(top));
    let root = root.ok_or_else(|| ArchiveError::NoManifest(archive.to_path_buf()))?;
    let manifest = std::fs::read_to_string(root.join("MANIFEST.sha256"))
        .map_err(|_| ArchiveError::NoManifest(archive.to_path_buf()))?;
    let bad = |line: usize, why: &str| ArchiveError::BadManifest {
        archive: archive.to_path_buf(),
        line,
        why: why.to_string(),
    };
    let mut listed = std::collections::BTreeSet::new();
    for (n, line) in manifest.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let Some((sum, rel)) = line.split_once("  ") else {
            return Err(bad(n + 1, "not `<sha256>  <path>`"));
        };
        if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(n + 1, "not a sha256 (64 hex digits)"));
        }
        if !listed.insert(PathBuf::from(rel)) {
            return Err(bad(n + 1, &format!("{rel} is listed twice")));
        }
    }
    if listed.is_empty() {
        return Err(ArchiveError::EmptyManifest(archive.to_path_buf()));
    }
    let mut present = Vec::new();
    files(&root, Path::new(""), &mut present).map_err(io(&root))?;
    if let Some(file) = present.iter().find(|p| !listed.contains(*p)) {
        return Err(ArchiveError::Unlisted {
            archive: archive.to_path_buf(),
            file: file.display().to_string(),
        });
    }
    for (n, line) in manifest.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (sum, rel) = line.split_once("  ").ok_or_else(|| bad(n + 1, "not `<sha256>  <path>`"))?;
        // Listed, so in the archive's files (no `..`, nothing outside): read it.
        let ok = present.iter().any(|p| p == Path::new(rel))
            && std::fs::read(root.join(rel)).is_ok_and(|bytes| sha256_hex(&bytes).eq_ignore_ascii_case(sum));
        if !ok {
            return Err(ArchiveError::Checksum { archive: archive.to_path_buf(), file: rel.to_string() });
        }
    }
    Ok(root)
}

/// Extracts a tar stream into `dest`, skipping absolute paths and `..`; returns the first
/// path component of the first entry (the archive's top directory).
pub(crate) fn extract(reader: impl std::io::Read, dest: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut tar = tar::Archive::new(reader);
    let mut top = None;
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_path_buf();
        if path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            continue;
        }
        if top.is_none() {
            top = path.components().next().map(|c| PathBuf::from(c.as_os_str()));
        }
        let target = dest.join(&path);
        if entry.header().entry_type().is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        std::fs::write(&target, bytes)?;
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_unpack_verifies_checksums() {
        let base = std::env::temp_dir().join(format!("bf-archive-{}", std::process::id()));
        let dir = base.join("run1");
        std::fs::create_dir_all(dir.join("inputs")).unwrap();
        std::fs::write(dir.join("inputs/a.yaml"), "a: 1\n").unwrap();
        std::fs::write(dir.join("state.json"), "{}").unwrap();
        let (archive, n) = pack(&dir, None).unwrap();
        assert_eq!(n, 2);
        let out = base.join("out");
        let root = unpack(&archive, &out).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("inputs/a.yaml")).unwrap(), "a: 1\n");
        let manifest = std::fs::read_to_string(root.join("MANIFEST.sha256")).unwrap();
        assert!(manifest.contains("  inputs/a.yaml\n") && manifest.contains("  state.json\n"), "{manifest}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// `dir` packed with `manifest` in place of the one `pack` writes.
    fn packed_with(base: &Path, tag: &str, manifest: impl Fn(&str) -> String) -> PathBuf {
        let dir = base.join(tag);
        std::fs::create_dir_all(dir.join("inputs")).unwrap();
        std::fs::write(dir.join("inputs/a.yaml"), "a: 1\n").unwrap();
        std::fs::write(dir.join("state.json"), "{}").unwrap();
        let (archive, _) = pack(&dir, None).unwrap();
        // Unpack, replace the manifest, pack the tree again as it is.
        let tmp = base.join(format!("{tag}-tmp"));
        let root = unpack(&archive, &tmp).unwrap();
        let old = std::fs::read_to_string(root.join("MANIFEST.sha256")).unwrap();
        let file = std::fs::File::create(&archive).unwrap();
        let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::default()));
        for rel in ["inputs/a.yaml", "state.json"] {
            tar.append_path_with_name(root.join(rel), Path::new(tag).join(rel)).unwrap();
        }
        let text = manifest(&old);
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, Path::new(tag).join("MANIFEST.sha256"), text.as_bytes()).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        std::fs::remove_dir_all(&tmp).unwrap();
        archive
    }

    #[test]
    fn a_manifest_that_does_not_cover_every_file_is_refused_and_nothing_is_left() {
        let base = std::env::temp_dir().join(format!("bf-archive-manifest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        type Rewrite = fn(&str) -> String;
        let cases: [(&str, Rewrite, &str); 6] = [
            ("emptied", |_| String::new(), "lists no file"),
            ("blank", |_| "\n\n".into(), "lists no file"),
            ("cut", |m| m.lines().next().unwrap().to_string() + "\n", "not in MANIFEST.sha256"),
            ("junk", |m| format!("{m}garbage\n"), "line 3"),
            ("outside", |m| format!("{m}{}  ../../etc/hostname\n", "0".repeat(64)), "etc/hostname"),
            ("twice", |m| format!("{m}{}", m.lines().next().unwrap().to_string() + "\n"), "listed twice"),
        ];
        for (tag, manifest, said) in cases {
            let archive = packed_with(&base, tag, manifest);
            let out = base.join(format!("{tag}-out"));
            let e = unpack(&archive, &out).unwrap_err().to_string();
            assert!(e.contains(said), "{tag}: {e}");
            assert!(!out.exists(), "{tag}: the unpacked files are removed");
        }
        // The same, with the manifest as written, unpacks.
        let archive = packed_with(&base, "kept", str::to_string);
        assert!(unpack(&archive, &base.join("kept-out")).is_ok());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
