//! `spawn`: start a local process (the simulator, `vllm serve`) in its own process group, its
//! output going straight to the step's log (so it outlives us if we are killed), and wait until
//! it answers over HTTP. Undo stops the whole group: SIGTERM, then SIGKILL after a grace period.

use std::{collections::BTreeMap, path::Path, time::Duration};

use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Ctx, Done, Step, StepError, UndoRecord, shell_line, tail};
use crate::{units::Secs, workdir::utc_now};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Program and arguments.
    #[serde(deserialize_with = "super::argv")]
    pub command: Vec<String>,
    /// Environment; `env:NAME` values are read from ours when the process starts.
    #[serde(default, deserialize_with = "super::env_map")]
    pub env: BTreeMap<String, String>,
    /// Ready when a GET here answers 200.
    #[serde(default)]
    pub ready_url: Option<String>,
    #[serde(default = "default_ready")]
    pub ready_timeout: Secs,
    #[serde(default = "default_stop")]
    pub stop_timeout: Secs,
}

fn default_ready() -> Secs {
    Secs(300.0)
}

fn default_stop() -> Secs {
    Secs(15.0)
}

/// `program` on `PATH` (or as a path).
pub(crate) fn find_program(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        return executable(Path::new(program)).then(|| program.into());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| executable(p))
}

/// A file someone may execute (as `execvp` looks for it).
fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why [`find_program`] found nothing, as the end of "step S runs `P`, …".
pub(crate) fn why_missing(program: &str) -> String {
    match program.contains('/') {
        true if Path::new(program).is_file() => "which is not executable: `chmod +x` it".into(),
        true => "which does not exist".into(),
        false => format!("which is not on PATH: {}", install_hint(program)),
    }
}

/// What to do about a program that is not installed.
pub(crate) fn install_hint(program: &str) -> &'static str {
    if program == "vllm" {
        "vLLM is not installed here: install it (`pip install vllm`; most models need a GPU), or use \
         the built-in simulator (`-c local-sim`)"
    } else {
        "install it, or put it on PATH"
    }
}

/// The process's start time in clock ticks since boot (from `/proc`), to tell it from a later
/// process that reuses its pid; and whether it is still running (not a zombie).
fn proc_stat(pid: i32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, *state != "Z" && *state != "X"))
}

/// How many running processes are in process group `pgid` (Linux; 0 elsewhere).
fn group_members(pgid: i32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|&p| {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { return false };
            let Some(rest) = text.rfind(')').map(|i| &text[i + 2..]) else { return false };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first().is_some_and(|s| *s != "Z" && *s != "X")
                && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
        })
        .count()
}

/// Whether the process recorded as (`pid`, `start`) is still running.
pub fn alive(pid: i32, start: Option<u64>) -> bool {
    match proc_stat(pid) {
        Some((s, running)) => running && start.is_none_or(|st| st == s),
        None => cfg!(not(target_os = "linux")) && kill(Pid::from_raw(pid), None).is_ok(),
    }
}

/// What teardown needs: the process group started, and how to tell it from a later process
/// that reuses its pid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat`).
    pub start_ticks: Option<u64>,
    pub command: Vec<String>,
    pub log: String,
    pub stop_timeout_s: f64,
}

impl Undo {
    /// Stops the recorded process group.
    pub async fn undo(&self, ctx: &Ctx) -> Result<String, StepError> {
        let what = stop(self.pid, self.start_ticks, Duration::from_secs_f64(self.stop_timeout_s)).await;
        ctx.note(&format!("# {} {what}", utc_now()));
        Ok(what)
    }

    /// Whether the process is still running.
    pub fn holds(&self) -> bool {
        alive(self.pid, self.start_ticks)
    }

    pub fn describe(&self) -> String {
        format!(
            "process group {} ({}){}",
            self.pid,
            shell_line(&self.command),
            if self.holds() { "" } else { " — no longer running" }
        )
    }
}

/// The shell an engine starts as: it waits for a line on its stdin, which benchflow writes
/// once the process's undo record is on disk, then becomes the engine (`exec`: the same pid
/// and process group the record names). If benchflow dies before, the pipe closes and the
/// shell exits: a kill at any moment leaves either no engine or a recorded one.
const GATE: &str = r#"read _ || exit 0
exec "$@" </dev/null"#;

impl Step for Args {
    fn compile(&mut self, _inputs: &super::Inputs) -> Result<(), String> {
        super::nonempty(&self.command)
    }

    fn programs(&self) -> Vec<&str> {
        self.command.first().map(String::as_str).into_iter().collect()
    }

    fn teardown(&self) -> Option<String> {
        Some(format!("stop its process group (SIGTERM, then SIGKILL after {} s)", self.stop_timeout.0))
    }

    fn describe(&self) -> Vec<String> {
        let mut d = vec![format!("$ {}", shell_line(&self.command))];
        if let Some(url) = &self.ready_url {
            d.push(format!("ready when GET {url} answers 200 (within {} s)", self.ready_timeout.0));
        }
        for (k, v) in &self.env {
            d.push(format!("env {k}={v}"));
        }
        d
    }

    async fn run(self, ctx: &Ctx) -> Result<Done, StepError> {
        super::nonempty(&self.command).map_err(StepError::Failed)?;
        // Started behind a gate (see GATE): it becomes the engine only once its undo record is
        // written, so no kill of benchflow can leave an engine that no record names.
        let gated: Vec<String> = ["sh", "-c", GATE, "sh"]
            .into_iter()
            .map(String::from)
            .chain(self.command.iter().cloned())
            .collect();
        let (mut cmd, mut output) = super::command(&gated, &self.env, ctx)?;
        cmd.stdin(std::process::Stdio::piped());
        let program = &self.command[0];
        // Whatever answers on the readiness address before we start is not ours: measuring it
        // instead of our engine would be silently wrong.
        if let Some(hostport) =
            self.ready_url.as_deref().and_then(|u| crate::net::Url::parse(u).ok()).map(|u| u.hostport)
            && let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(&hostport)).await
        {
            return Err(StepError::Failed(format!(
                "something already listens on {hostport}, where `{program}` is to serve: it would be measured \
                 instead of the engine started here; stop it, or choose another port (engine.port)"
            )));
        }
        ctx.note(&format!("# {} started\n$ {}", utc_now(), shell_line(&self.command)));
        // Normally caught before anything starts (the CLI's preflight); behind the gate a
        // missing program would only show as the shell's exit 127.
        if find_program(program).is_none() {
            return Err(StepError::Failed(format!("`{program}` is not on PATH: {}", install_hint(program))));
        }
        let mut child =
            cmd.spawn().map_err(|e| StepError::Failed(format!("failed to start `{program}`: {e}")))?;
        // The command holds our copies of the output's ends until dropped: the pump's input
        // ends only when the process's does.
        drop(cmd);
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        // Still behind the gate: a pump that cannot start leaves nothing (the gate's shell
        // ends when its stdin closes).
        output.start(pid as u32)?;
        let start = proc_stat(pid).map(|(s, _)| s);
        let record = UndoRecord::Spawn(Undo {
            pid,
            start_ticks: start,
            command: self.command.clone(),
            log: ctx.log.display().to_string(),
            stop_timeout_s: self.stop_timeout.0,
        });
        // Before anything else: if benchflow dies while the engine starts, teardown finds it.
        if let Err(e) = ctx.record_undo(&record) {
            let _ = stop(pid, start, Duration::from_secs_f64(self.stop_timeout.0)).await;
            return Err(e);
        }
        // Recorded: the gate opens (the shell becomes the engine, same pid, same group).
        if let Some(mut gate) = child.stdin.take() {
            use tokio::io::AsyncWriteExt as _;
            let _ = gate.write_all(b"go\n").await;
        }
        // The reaper: records the exit in the log and tells the readiness wait.
        let (exit_tx, mut exit_rx) = tokio::sync::watch::channel(None::<String>);
        let log_path = ctx.log.clone();
        tokio::spawn(async move {
            let status = child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            output.drained().await;
            super::append(&log_path, &format!("# {} process exited: {status}", utc_now()));
            let _ = exit_tx.send(Some(status));
        });
        let Some(url) = &self.ready_url else {
            return Ok(Done { summary: format!("pid {pid}"), undo: Some(record) });
        };
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs_f64(self.ready_timeout.0);
        let mut next_note = t0 + Duration::from_secs(10);
        loop {
            let exited = exit_rx.borrow_and_update().clone();
            if let Some(status) = exited {
                let _ = stop(pid, start, Duration::from_secs_f64(self.stop_timeout.0)).await;
                ctx.clear_undo();
                return Err(StepError::Failed(format!(
                    "`{program}` exited ({status}) before it was ready; last lines of {}:\n{}",
                    ctx.log.display(),
                    tail(&ctx.log, 15)
                )));
            }
            if let Ok((200, _)) = crate::net::fetch(
                "GET",
                url,
                None,
                &Default::default(),
                &Default::default(),
                Duration::from_secs(2),
            )
            .await
            {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                let _ = stop(pid, start, Duration::from_secs_f64(self.stop_timeout.0)).await;
                ctx.clear_undo();
                return Err(StepError::Failed(format!(
                    "`{program}` did not answer GET {url} with 200 within {} s (raise timeouts.ready); \
                     last lines of {}:\n{}",
                    self.ready_timeout.0,
                    ctx.log.display(),
                    tail(&ctx.log, 15)
                )));
            }
            if now >= next_note {
                ctx.progress(format!(
                    "waiting for {url} ({:.0} s of {:.0} s)",
                    (now - t0).as_secs_f64(),
                    self.ready_timeout.0
                ));
                next_note = now + Duration::from_secs(10);
            }
            tokio::select! {
                _ = ctx.cancelled() => {
                    let _ = stop(pid, start, Duration::from_secs_f64(self.stop_timeout.0)).await;
                    ctx.clear_undo();
                    return Err(StepError::Cancelled);
                }
                _ = exit_rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        // The answer must have come from the process started here, still alive.
        if let Some(status) = exit_rx.borrow().clone() {
            ctx.clear_undo();
            return Err(StepError::Failed(format!(
                "GET {url} answered 200, but `{program}` had exited ({status}): another server answers there; \
                 last lines of {}:\n{}",
                ctx.log.display(),
                tail(&ctx.log, 15)
            )));
        }
        ctx.note(&format!("# {} ready: GET {url} answered 200", utc_now()));
        Ok(Done {
            summary: format!("pid {pid}, ready in {:.1} s at {url}", t0.elapsed().as_secs_f64()),
            undo: Some(record),
        })
    }
}

/// Stops a process group: SIGTERM, wait up to `grace`, then SIGKILL. Returns what was done.
async fn stop(pid: i32, start: Option<u64>, grace: Duration) -> String {
    if pid <= 0 || !alive(pid, start) {
        // The leader is gone; take any stragglers of its group with it (a group id is not
        // reused while the group has members, so this cannot hit a stranger).
        if pid > 0 && proc_stat(pid).is_none() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        return format!("pid {pid} was not running");
    }
    let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while alive(pid, start) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if alive(pid, start) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        while alive(pid, start) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        return format!("pid {pid} killed (SIGKILL after {} s)", grace.as_secs_f64());
    }
    // The log's redacting pump (see `steps::Output`) ends once it has written the engine's
    // last words: a moment for it before the stragglers are killed.
    let settle = Instant::now() + Duration::from_secs(2);
    while group_members(pid) > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    format!("pid {pid} stopped")
}

#[cfg(test)]
mod tests {
    use super::{GATE, find_program, why_missing};

    #[test]
    fn a_program_that_is_there_but_not_executable_is_not_found_and_said_so() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("bf-findprog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("warm.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let path = script.display().to_string();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_program(&path), None);
        assert!(why_missing(&path).contains("not executable"), "{}", why_missing(&path));
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_program(&path), Some(script.clone()));
        assert!(why_missing(&dir.join("nope").display().to_string()).contains("does not exist"));
        assert!(why_missing("no-such-program-here").contains("not on PATH"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    async fn gated(open: bool) -> (std::process::ExitStatus, String) {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", GATE, "sh", "sh", "-c", "echo engine"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut gate = child.stdin.take().unwrap();
        if open {
            use tokio::io::AsyncWriteExt as _;
            gate.write_all(b"go\n").await.unwrap();
        }
        // Closed as when benchflow dies: before the line, the engine never starts.
        drop(gate);
        let out = child.wait_with_output().await.unwrap();
        (out.status, String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[tokio::test]
    async fn the_engine_starts_only_once_the_gate_opens() {
        let (status, said) = gated(false).await;
        assert!(status.success() && said.is_empty(), "{status} {said:?}");
        let (status, said) = gated(true).await;
        assert!(status.success() && said == "engine\n", "{status} {said:?}");
    }
}
