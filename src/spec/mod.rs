//! What the user wrote: typed mirrors of the YAML files, validated, with errors that name the
//! file, line and column and suggest the key that was meant.
//!
//! * [`scenario`]: where and what to deploy (platform, engine, model, timeouts).
//! * [`harness`]: what generates the load and how it is measured.
//! * [`workload`]: what load to offer (dataset, stages, warm-up, SLOs).
//! * [`pipeline`]: which steps run, in which phase, after which others.
//! * [`experiment`]: many runs from one base (factors, levels, a design).
//! * [`builtin`]: the shipped files, embedded so the binary works from any directory.
//! * `schema` (a test): JSON Schemas generated from these types, compared with the copies
//!   checked in under `schemas/`.

pub(crate) mod builtin;
pub(crate) mod experiment;
pub(crate) mod harness;
pub(crate) mod pipeline;
pub(crate) mod scenario;
#[cfg(test)]
pub(crate) mod schema;
pub(crate) mod workload;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a file could not be read as a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error("no {kind} named `{name}`: looked for {tried}{hint}")]
    NotFound { kind: &'static str, name: String, tried: String, hint: String },
}

/// The most retries a step or an experiment's point may have.
pub(crate) const MAX_RETRIES: u32 = 100;

/// A retry count, at most [`MAX_RETRIES`] (more is a typo, and `retries + 1` attempts must not
/// wrap to 0).
pub(crate) fn retries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = <u32 as serde::Deserialize>::deserialize(d)?;
    if n > MAX_RETRIES {
        return Err(serde::de::Error::custom(format!("retries {n}: at most {MAX_RETRIES}")));
    }
    Ok(n)
}

/// Parses YAML into `T`, turning serde errors into `origin:line:column: message (did you mean)`.
pub fn from_yaml<T: DeserializeOwned>(text: &str, origin: &str, known_keys: &[&str]) -> Result<T, SpecError> {
    // An empty file would silently mean "all defaults": more likely a mistake than a wish.
    let content = text.lines().map(str::trim).any(|l| !l.is_empty() && !l.starts_with('#') && l != "---");
    if !content {
        return Err(SpecError::Invalid {
            at: origin.to_string(),
            message: "the file is empty: write what it should set (`{}` for all the defaults)".into(),
        });
    }
    serde_saphyr::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("{origin}:{}:{}", l.line(), l.column()))
            .unwrap_or_else(|| origin.to_string());
        SpecError::Invalid { at, message: clean_message(&e.to_string(), known_keys) }
    })
}

/// The bare text of a serde-saphyr error: without its own `error: line N column M:` prefix and
/// the source snippet it appends (callers give the location as `file:line:column`).
pub(crate) fn bare_message(raw: &str) -> &str {
    let mut message = raw.lines().next().unwrap_or(raw).trim();
    message = message.strip_prefix("error: ").unwrap_or(message);
    if let Some((head, rest)) = message.split_once(": ")
        && head.starts_with("line ")
    {
        message = rest;
    }
    message
}

/// The bare message, with a suggestion for unknown keys.
pub(crate) fn clean_message(raw: &str, known_keys: &[&str]) -> String {
    let message = bare_message(raw);
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, tail)) = rest.split_once('`')
    {
        // serde lists the expected fields after the key; prefer them over the caller's list.
        let expected: Vec<&str> = tail
            .split_once("expected one of ")
            .or_else(|| tail.split_once("expected "))
            .map(|(_, list)| list.split(", ").map(|k| k.trim_matches('`')).collect())
            .unwrap_or_else(|| known_keys.to_vec());
        return format!(
            "unknown key `{key}`{}; expected one of: {}",
            suggest(key, expected.iter().copied()),
            expected.join(", ")
        );
    }
    translate(message)
}

/// The YAML library's words for common mistakes, in the user's words.
fn translate(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest);
        return format!("the key `{key}` appears twice here; keep one");
    }
    if message.starts_with("multiple YAML documents detected") {
        return "the file holds several YAML documents (separated by `---`); keep one".into();
    }
    if message.contains("budget breached") {
        return "the document is too large, or its aliases expand too far (a YAML bomb?): refused".into();
    }
    if message.contains("invalid floating point") {
        return "a value here is not a valid number (an unclosed `{` or `[` before it?)".into();
    }
    message.to_string()
}

/// `; did you mean `x`?` when a known name is close to `key`.
pub(crate) fn suggest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default()
}

/// Levenshtein distance.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// A spec file's text and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The path as found, or `builtin:<dir>/<name>.yaml` for an embedded file.
    pub origin: String,
    pub text: String,
    /// The directory relative paths inside the file are resolved against.
    pub dir: PathBuf,
}

/// Finds a spec by name in `dir` (`NAME.yaml`, `NAME.yml`), as a path, or among the files
/// shipped with benchflow; errors list what was tried and suggest a near name.
pub(crate) fn find(kind: &'static str, dir: &str, name: &str) -> Result<Source, SpecError> {
    let read = |path: &Path| -> Result<Source, SpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Ok(Source { origin: path.display().to_string(), text, dir: parent.to_path_buf() })
    };
    let direct = Path::new(name);
    if direct.is_file() {
        return read(direct);
    }
    let candidates = [format!("{dir}/{name}.yaml"), format!("{dir}/{name}.yml"), format!("{dir}/{name}")];
    if let Some(found) = candidates.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return read(&found);
    }
    if let Some(text) = builtin::get(dir, name) {
        return Ok(Source {
            origin: format!("builtin:{dir}/{name}.yaml"),
            text: text.to_string(),
            dir: ".".into(),
        });
    }
    let mut known: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.path().file_stem().map(|s| s.to_string_lossy().to_string()))
                .collect()
        })
        .unwrap_or_default();
    known.extend(builtin::names(dir).map(str::to_string));
    known.sort();
    known.dedup();
    let hint = suggest(name, known.iter().map(String::as_str));
    let hint = if hint.is_empty() && !known.is_empty() {
        format!("; available: {}", known.join(", "))
    } else {
        hint
    };
    Err(SpecError::NotFound {
        kind,
        name: name.to_string(),
        tried: format!("{name}, {}", candidates.join(", ")),
        hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_where_they_are_read() {
        let step = |n: &str| {
            format!(
                "steps:\n  - {{ name: a, phase: run, kind: exec, retries: {n}, with: {{ command: [true] }} }}\n"
            )
        };
        let p: Result<pipeline::Pipeline, _> = from_yaml(&step("100"), "p.yaml", &[]);
        assert!(p.is_ok(), "{p:?}");
        for n in ["101", "4294967295", "4294967296", "-1", "1.5"] {
            let p: Result<pipeline::Pipeline, _> = from_yaml(&step(n), "p.yaml", &[]);
            assert!(p.is_err(), "{n}");
        }
        let e = experiment::Experiment::from_yaml("factors:\n  a.b: [1]\nretries: 4294967295\n", "e.yaml")
            .expect_err("retries");
        assert!(e.to_string().contains("at most 100"), "{e}");
    }

    #[test]
    fn the_yaml_librarys_words_are_translated() {
        let raw = "error: line 2 column 1: duplicate mapping key: engine, set DuplicateKeyPolicy in Options if acceptable";
        assert_eq!(clean_message(raw, &[]), "the key `engine` appears twice here; keep one");
        let raw = "multiple YAML documents detected; use from_str_multiple or from_str_multiple_with_options";
        assert!(clean_message(raw, &[]).contains("several YAML documents"));
        assert!(!clean_message("budget breached: Nodes { max: 1 }", &[]).contains("Nodes"));
    }

    #[test]
    fn suggestions_and_distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(suggest("durtion", ["duration", "requests"].into_iter()), "; did you mean `duration`?");
        assert_eq!(suggest("zzz", ["duration"].into_iter()), "");
    }
}
