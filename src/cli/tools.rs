//! `benchflow tools list | install NAME`: the external tools, pinned, installed by benchflow.

use super::{
    CliError,
    args::{ToolsAction, ToolsArgs},
};
use crate::tools::{self, TOOLS};

pub(crate) fn tools(args: ToolsArgs) -> Result<(), CliError> {
    let home = tools::home();
    match args.action {
        ToolsAction::List => {
            let found = tools::python::discover();
            outln!("{:<15} {:<8} {:<13} installed", "tool", "version", "python");
            for t in TOOLS {
                let state = match tools::installed(&home, t) {
                    Some(i) => format!("yes: {} (Python {})", i.bin.display(), i.python_version),
                    None => match tools::python::choose(&found, t.python_min, t.python_below) {
                        Some(p) => {
                            format!("no; `benchflow tools install {}` would use {}", t.name, p.path.display())
                        }
                        None => format!("no, and no Python {} was found", t.python_range()),
                    },
                };
                outln!("{:<15} {:<8} {:<13} {state}", t.name, t.version, t.python_range());
            }
            outln!("\ntools directory: {}", home.display());
            outln!("Pythons found:");
            for p in &found {
                outln!("  {} ({})", p.path.display(), p.version_text());
            }
            if found.is_empty() {
                outln!("  none (looked at $PATH, ~/.pyenv/versions, /usr/bin, /usr/local/bin)");
            }
            Ok(())
        }
        ToolsAction::Install { name, python } => {
            let tool = tools::find(&name)?;
            let py = tools::python_for(tool, python.as_deref())?;
            errln!(
                "installing {}=={} with Python {} ({}) into {}",
                tool.package,
                tool.version,
                py.version_text(),
                py.path.display(),
                tool.dir(&home).display()
            );
            let done = tools::install(&home, tool, &py, None)?;
            outln!("{} {} installed: {}", done.name, done.version, done.bin.display());
            Ok(())
        }
    }
}
