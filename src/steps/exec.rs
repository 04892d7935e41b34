//! `exec`: any command, with its output and exit status captured in the step's log (the escape
//! hatch for what no other kind does).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Ctx, Done, Step, StepError, shell_line, tail};
use crate::{shell::WATCHED, workdir::utc_now};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
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
    fn compile(&mut self, _inputs: &super::Inputs) -> Result<(), String> {
        super::nonempty(&self.command)
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
