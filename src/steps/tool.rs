//! `tool`: an external tool a later step runs (the vLLM router), pinned, as benchflow's tool
//! installer put it in place ([`crate::tools`]). Missing, it is a preflight error that says how
//! to install it, unless the command was given `--install-missing`: then this step installs it
//! (pip's output in the step's log). What is installed (version, Python, every package) is
//! copied into the work directory, `setup/tools/<name>.json`.

use crate::workdir::layout;
use serde::{Deserialize, Serialize};

use super::{Ctx, Done, Inputs, Step, StepError};
use crate::tools;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// A tool `benchflow tools list` shows.
    pub name: String,
}

impl Args {
    fn tool(&self) -> Result<&'static tools::Tool, String> {
        tools::find(&self.name).map_err(|e| e.to_string())
    }
}

/// What to say about a tool that is not installed.
pub(crate) fn not_installed(tool: &tools::Tool) -> String {
    format!(
        "{} {} is not installed (looked in {}): run `benchflow tools install {}`, or add --install-missing",
        tool.name,
        tool.version,
        tool.dir(&tools::home()).display(),
        tool.name
    )
}

impl Step for Args {
    fn compile(&mut self, _inputs: &Inputs) -> Result<(), String> {
        self.tool().map(|_| ())
    }

    fn describe(&self) -> Vec<String> {
        match self.tool() {
            Ok(t) => vec![
                format!("{} {} installed by benchflow ({})", t.name, t.version, t.what),
                format!("benchflow tools install {}", t.name),
            ],
            Err(e) => vec![e],
        }
    }

    fn check(&self, install_missing: bool) -> Result<(), String> {
        ready(self.tool()?, install_missing)
    }

    async fn run(self, ctx: &Ctx) -> Result<Done, StepError> {
        let tool = self.tool().map_err(StepError::Failed)?;
        let record = ensure(tool, ctx).await?;
        Ok(Done::with_summary(format!(
            "{} {} (Python {})",
            record.name, record.version, record.python_version
        )))
    }
}

/// Whether the tool is there, or will be installed (`--install-missing`); if not, how to
/// install it.
pub(crate) fn ready(tool: &tools::Tool, install_missing: bool) -> Result<(), String> {
    if install_missing || tools::installed(&tools::home(), tool).is_some() {
        return Ok(());
    }
    Err(not_installed(tool))
}

/// The tool as installed: installed now when missing and the command was given
/// `--install-missing` (pip's output in the step's log); recorded in `setup/tools/<name>.json`.
pub(crate) async fn ensure(tool: &'static tools::Tool, ctx: &Ctx) -> Result<tools::Installed, StepError> {
    let home = tools::home();
    let record = match tools::installed(&home, tool) {
        Some(record) => record,
        None if ctx.install_missing => {
            ctx.progress(format!(
                "installing {} {} into {} (pip's output: {})",
                tool.name,
                tool.version,
                tool.dir(&home).display(),
                ctx.log.display()
            ));
            let log = ctx.log.clone();
            let install = tokio::task::spawn_blocking(move || {
                let python = tools::python_for(tool, None)?;
                tools::install(&home, tool, &python, Some(&log))
            });
            tokio::select! {
                done = install => done
                    .map_err(|e| StepError::Failed(e.to_string()))?
                    .map_err(|e| StepError::Failed(e.to_string()))?,
                // pip runs on (its environment is marked complete only at the end).
                _ = ctx.cancelled() => return Err(StepError::Cancelled),
            }
        }
        None => return Err(StepError::Failed(not_installed(tool))),
    };
    let path = ctx.workdir.join(layout::TOOLS).join(format!("{}.json", tool.name));
    let text = serde_json::to_vec_pretty(&record).map_err(|e| StepError::Failed(e.to_string()))?;
    crate::workdir::write_atomic(&path, &text)
        .map_err(|e| StepError::Failed(format!("cannot record the tool in {}: {e}", path.display())))?;
    ctx.note(&format!(
        "# {} {} (Python {}): {}",
        record.name,
        record.version,
        record.python_version,
        record.bin.display()
    ));
    Ok(record)
}
