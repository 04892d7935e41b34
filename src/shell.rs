//! Commands and logs as a shell user sees them: a command line quoted so that it can be pasted
//! back, and the last lines of a log for an error message.

use std::path::Path;

/// The shell that runs a command (an external tool, an `exec` step) and stops it if benchflow
/// dies, even by SIGKILL: its stdin is a pipe only benchflow holds; a watcher blocks reading
/// it, and at its end (benchflow gone) sends SIGTERM to the whole process group, SIGKILL 5 s
/// later. A SIGTERM to the group (an interrupt) reaches the command, and the shell waits for
/// it, so the shell's end (and exit status) is the command's. Run as `sh -c WATCHED sh
/// PROGRAM ARGS…`. (A job started with `&` reads /dev/null unless redirected: hence fd 3.)
pub(crate) const WATCHED: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
tool=$!
(trap '' TERM; read _ <&3; kill -TERM 0; sleep 5; kill -KILL 0) 3<&3 &
watcher=$!
exec 3<&-
trap 'kill -TERM $tool 2>/dev/null; wait $tool; kill -KILL $watcher 2>/dev/null; exit 143' TERM INT
wait $tool
status=$?
kill -KILL $watcher 2>/dev/null
exit $status"#;

/// The last `n` lines of a log, for error messages.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n")
}

/// A command line as a shell would accept it.
pub(crate) fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
