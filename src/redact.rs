//! Secrets out of everything benchflow writes. The values benchflow sends as secrets (what the
//! `env:NAME` references of secret-looking keys, request headers and API keys read from the
//! environment) are registered here when they are read ([`register`]); every write of text
//! that comes from outside benchflow's own making (step logs and the output of the processes
//! steps start, error texts, events, records, metric scrapes, the terminal) passes through
//! [`text`] or [`bytes`], which replace each of them by `[redacted]`: as written, URL-encoded,
//! base64-encoded (at any alignment, so inside `Basic user:pass` too) and JSON-escaped.
//!
//! The registry is process-wide: a secret read for one run of an experiment is redacted from
//! every file of the process, which errs on the side of hiding.

use std::{borrow::Cow, sync::RwLock};

use base64::Engine as _;

/// What a secret becomes.
pub(crate) const MARK: &str = "[redacted]";

/// Shorter values are not redacted: replacing them would mangle unrelated text (and a secret
/// that short is no secret).
pub(crate) const MIN_LEN: usize = 4;

/// The environment variable through which [`pump`]'s process gets the secrets (a JSON list).
pub(crate) const PUMP_ENV: &str = "BENCHFLOW_REDACT";

/// The secrets, and the forms they are looked for in (longest first).
#[derive(Debug, Default, Clone)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
    forms: Vec<String>,
}

static REGISTRY: RwLock<Redactor> = RwLock::new(Redactor { secrets: Vec::new(), forms: Vec::new() });

/// Adds a secret to the registry (a value read for sending: a header, an API key, a
/// secret-looking variable's value).
pub(crate) fn register(secret: &str) {
    if secret.len() < MIN_LEN {
        return;
    }
    if let Ok(r) = REGISTRY.read()
        && r.secrets.iter().any(|s| s == secret)
    {
        return;
    }
    if let Ok(mut r) = REGISTRY.write() {
        r.add(secret);
    }
}

/// The secrets registered so far (for a process that redacts on benchflow's behalf).
pub(crate) fn secrets() -> Vec<String> {
    REGISTRY.read().map(|r| r.secrets.clone()).unwrap_or_default()
}

/// `text` with every registered secret replaced.
pub(crate) fn text(text: &str) -> Cow<'_, str> {
    match REGISTRY.read() {
        Ok(r) if !r.forms.is_empty() => match r.text(text) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(s) => Cow::Owned(s),
        },
        _ => Cow::Borrowed(text),
    }
}

/// `bytes` with every registered secret replaced (text that is not UTF-8 is searched as bytes).
pub(crate) fn bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    match REGISTRY.read() {
        Ok(r) if !r.forms.is_empty() => match r.bytes(bytes) {
            Cow::Borrowed(_) => Cow::Borrowed(bytes),
            Cow::Owned(b) => Cow::Owned(b),
        },
        _ => Cow::Borrowed(bytes),
    }
}

impl Redactor {
    /// A redactor of these secrets alone.
    pub(crate) fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Redactor {
        let mut r = Redactor::default();
        for s in secrets {
            r.add(s.as_ref());
        }
        r
    }

    fn add(&mut self, secret: &str) {
        if secret.len() < MIN_LEN || self.secrets.iter().any(|s| s == secret) {
            return;
        }
        self.secrets.push(secret.to_string());
        for form in forms(secret) {
            if form.len() >= MIN_LEN && !self.forms.contains(&form) {
                self.forms.push(form);
            }
        }
        // Longest first: a form inside another is replaced after it.
        self.forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    }

    pub(crate) fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for f in &self.forms {
            if out.contains(f.as_str()) {
                out = Cow::Owned(out.replace(f.as_str(), MARK));
            }
        }
        out
    }

    pub(crate) fn bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return match self.text(text) {
                Cow::Borrowed(_) => Cow::Borrowed(bytes),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            };
        }
        let mut out = Cow::Borrowed(bytes);
        for f in &self.forms {
            if let Some(replaced) = replace_bytes(&out, f.as_bytes()) {
                out = Cow::Owned(replaced);
            }
        }
        out
    }
}

/// `hay` with every `needle` replaced by [`MARK`]; `None` if there is none.
fn replace_bytes(hay: &[u8], needle: &[u8]) -> Option<Vec<u8>> {
    let first = hay.windows(needle.len()).position(|w| w == needle)?;
    let mut out = hay[..first].to_vec();
    let mut i = first;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(MARK.as_bytes());
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The forms a secret may be written in: as is, URL-encoded (upper- and lowercase hex, `+` for
/// a space), JSON-escaped, and base64 (standard and URL-safe alphabets) at each of the three
/// alignments it can have inside a longer encoded text (only the characters that encode the
/// secret's bits alone, so that `Basic dXNlcjpwYXNz` is found from `pass`).
pub(crate) fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    let encoded = percent(secret, false);
    out.push(encoded);
    out.push(percent(secret, true));
    out.push(percent_lower(secret));
    if let Ok(json) = serde_json::to_string(secret) {
        out.push(json.trim_matches('"').to_string());
    }
    let bytes = secret.as_bytes();
    for engine in
        [&base64::engine::general_purpose::STANDARD_NO_PAD, &base64::engine::general_purpose::URL_SAFE_NO_PAD]
    {
        for k in 0..3usize {
            let mut padded = vec![0u8; k];
            padded.extend_from_slice(bytes);
            let b64 = engine.encode(&padded);
            // Character j covers bits [6j, 6j+6): keep those within the secret's bits.
            let start = (8 * k).div_ceil(6);
            let end = (8 * (k + bytes.len())) / 6;
            if end > start {
                out.push(b64[start..end].to_string());
            }
        }
    }
    let mut seen = Vec::new();
    out.retain(|f| {
        let new = !f.is_empty() && !seen.contains(f);
        seen.push(f.clone());
        new
    });
    out
}

/// URL encoding: unreserved characters as they are, every other byte `%XX` (a space `+` when
/// `form`).
fn percent(s: &str, form: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' if form => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
}

/// Copies `input` to `output`, redacting `redactor`'s secrets, a line (or a `\r`-ended part) at
/// a time so that a secret is never cut between two reads; a line longer than 1 MiB is
/// written in parts. Used by the process a step's output goes through.
pub(crate) fn pump(
    redactor: &Redactor,
    mut input: impl std::io::Read,
    mut output: impl std::io::Write,
) -> std::io::Result<()> {
    const CAP: usize = 1 << 20;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pending.extend_from_slice(&buf[..n]);
        let cut = match pending.iter().rposition(|&b| b == b'\n' || b == b'\r') {
            Some(i) => i + 1,
            None if pending.len() >= CAP => pending.len(),
            None => continue,
        };
        output.write_all(&redactor.bytes(&pending[..cut]))?;
        output.flush()?;
        pending.drain(..cut);
    }
    if !pending.is_empty() {
        output.write_all(&redactor.bytes(&pending))?;
    }
    output.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "sk-canary/Z9+q=7 x";

    fn encodings(s: &str) -> Vec<String> {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        vec![
            s.to_string(),
            percent(s, false),
            percent(s, true),
            percent_lower(s),
            STANDARD.encode(s),
            URL_SAFE.encode(s),
            STANDARD.encode(format!("user:{s}")),
            STANDARD.encode(format!("ab{s}")),
            serde_json::to_string(s).unwrap(),
        ]
    }

    #[test]
    fn every_form_of_a_secret_is_redacted_in_text_and_bytes() {
        let r = Redactor::new([CANARY]);
        for e in encodings(CANARY) {
            let line = format!("before {e} after");
            let out = r.text(&line);
            assert!(out.starts_with("before ") && out.contains(MARK), "{e}: {out}");
            assert!(!out.contains(&e), "{e}: {out}");
            let mut bytes = line.into_bytes();
            bytes.push(0xff);
            assert!(r.bytes(&bytes).windows(MARK.len()).any(|w| w == MARK.as_bytes()), "{e}");
        }
        assert_eq!(r.text("nothing here"), "nothing here");
        assert!(matches!(r.text("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn short_values_are_not_secrets() {
        let r = Redactor::new(["abc", ""]);
        assert!(r.forms.is_empty());
        assert_eq!(r.text("abc abc"), "abc abc");
    }

    #[test]
    fn a_stream_is_redacted_across_reads() {
        /// Gives its bytes a few at a time, so secrets straddle reads.
        struct Trickle(Vec<u8>, usize);
        impl std::io::Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = 3.min(buf.len()).min(self.0.len() - self.1);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let r = Redactor::new([CANARY]);
        let input = format!("token {CANARY}\nprogress {CANARY}\rlast {CANARY}");
        let mut out = Vec::new();
        pump(&r, Trickle(input.into_bytes(), 0), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, "token [redacted]\nprogress [redacted]\rlast [redacted]");
    }
}
