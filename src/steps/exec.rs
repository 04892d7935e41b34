//! `exec`: any command, with its output and exit status captured in the step's log (the escape
//! hatch for what no other kind does).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Ctx, Done, Step, StepError, shell_line, tail};
use crate::{shell::WATCHED, workdir::utc_now};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The program and its arguments. The program is a name on PATH or an absolute path; a
    /// relative path (`./warm.sh`) is taken from an absolute `cwd`, and refused without one
    /// (the command runs in the work directory).
    #[serde(deserialize_with = "super::argv")]
    pub command: Vec<String>,
    /// Environment; `env:NAME` values are read from ours.
    #[serde(default, deserialize_with = "super::env_map")]
    pub env: BTreeMap<String, String>,
    /// Working directory; default: the work directory.
    #[serde(default)]
    pub cwd: Option<String>,
}

impl Step for Args {
    /// A program given as a relative path (`./warm.sh`) is where the command runs: an absolute
    /// `cwd` makes it absolute; without one it would be looked for in the work directory,
    /// which benchflow makes, so it is refused (naming the step).
    fn compile(&mut self, _inputs: &super::Inputs) -> Result<(), String> {
        super::nonempty(&self.command)?;
        let program = &self.command[0];
        if program.contains('/') && !std::path::Path::new(program).is_absolute() {
            match self.cwd.as_deref().filter(|c| std::path::Path::new(c).is_absolute()) {
                Some(dir) => self.command[0] = std::path::Path::new(dir).join(program).display().to_string(),
                None => {
                    let rel: std::path::PathBuf = std::path::Path::new(program)
                        .components()
                        .filter(|c| !matches!(c, std::path::Component::CurDir))
                        .collect();
                    let here = std::env::current_dir().map(|d| d.join(rel)).unwrap_or_default();
                    return Err(format!(
                        "`{program}` is a relative path, and the command runs in the work directory, \
                         where it is not: give an absolute path (e.g. {}), a program on PATH, or an \
                         absolute `cwd` it is relative to",
                        here.display()
                    ));
                }
            }
        }
        Ok(())
    }

    fn programs(&self) -> Vec<&str> {
        self.command.first().map(String::as_str).into_iter().collect()
    }

    fn describe(&self) -> Vec<String> {
        vec![format!("$ {}", shell_line(&self.command))]
    }

    async fn run(self, ctx: &Ctx) -> Result<Done, StepError> {
        super::nonempty(&self.command).map_err(StepError::Failed)?;
        let program = self.command.first().cloned().unwrap_or_default();
        // Under the watcher: a SIGKILLed benchflow leaves no command running (nothing records
        // it for teardown, unlike an engine).
        let watched: Vec<String> = ["sh", "-c", WATCHED, "sh"]
            .into_iter()
            .map(String::from)
            .chain(self.command.iter().cloned())
            .collect();
        let (mut cmd, mut output) = super::command(&watched, &self.env, ctx)?;
        cmd.current_dir(self.cwd.as_deref().map(Into::into).unwrap_or(ctx.workdir.clone()))
            .stdin(std::process::Stdio::piped())
            .kill_on_drop(true);
        ctx.note(&format!("# {} started\n$ {}", utc_now(), shell_line(&self.command)));
        let mut child =
            cmd.spawn().map_err(|e| StepError::Failed(format!("failed to start `{program}`: {e}")))?;
        // The command holds our copies of the output's ends until dropped: the pump's input
        // ends only when the process's does.
        drop(cmd);
        // Held until the command ends: its end tells the watcher that benchflow is gone.
        let _lifeline = child.stdin.take();
        if let Err(e) = child.id().map_or(Ok(()), |pid| output.start(pid)) {
            let _ = child.kill().await;
            return Err(e);
        }
        let status = tokio::select! {
            s = child.wait() => s.map_err(|e| StepError::Failed(e.to_string()))?,
            _ = ctx.cancelled() => {
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
                }
                let _ = child.wait().await;
                output.drained().await;
                ctx.note(&format!("# {} stopped by interrupt", utc_now()));
                return Err(StepError::Cancelled);
            }
        };
        output.drained().await;
        ctx.note(&format!(
            "# {} exit status: {}",
            utc_now(),
            status.code().map_or("signal".into(), |c| c.to_string())
        ));
        if !status.success() {
            return Err(StepError::Failed(format!(
                "`{}` failed ({status}); last lines of {}:\n{}",
                shell_line(&self.command),
                ctx.log.display(),
                tail(&ctx.log, 10)
            )));
        }
        Ok(Done::with_summary(format!("exit status 0: $ {}", shell_line(&self.command))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(command: &[&str], cwd: Option<&str>) -> Result<Vec<String>, String> {
        let mut a = Args {
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            cwd: cwd.map(str::to_string),
        };
        let inputs = super::super::Inputs {
            templates: &crate::template::Renderer::new(&serde_json::json!({})),
            workload: None,
            step: "s",
        };
        a.compile(&inputs).map(|()| a.command)
    }

    #[test]
    fn a_relative_program_path_is_refused_unless_an_absolute_cwd_anchors_it() {
        for rel in ["./warm.sh", "scripts/warm.sh"] {
            let e = compiled(&[rel, "x"], None).unwrap_err();
            assert!(e.contains(&format!("`{rel}` is a relative path")) && e.contains("absolute path"), "{e}");
            assert!(!e.contains("/./"), "{e}");
            assert_eq!(compiled(&[rel, "x"], Some("/opt/p")).unwrap()[0], format!("/opt/p/{rel}"));
            assert!(compiled(&[rel], Some("rel/dir")).is_err(), "a relative cwd anchors nothing");
        }
        // A name on PATH and an absolute path are left as they are.
        assert_eq!(compiled(&["sleep", "1"], None).unwrap(), ["sleep", "1"]);
        assert_eq!(compiled(&["/bin/true"], None).unwrap(), ["/bin/true"]);
        assert!(compiled(&[""], None).is_err());
    }
}
