//! `benchflow tools list | install NAME`: the external tools, pinned, installed by benchflow.

use super::documents::{self, InstalledTool, PythonEntry, ToolEntry, ToolsList};
use super::{
    CliError,
    args::{ToolsAction, ToolsArgs},
};
use crate::tools::{self, TOOLS};

/// What `tools list` says: each tool, installed or with the Python that would install it.
fn list(home: &std::path::Path) -> ToolsList {
    let found = tools::python::discover();
    let tools = TOOLS
        .iter()
        .map(|t| {
            let installed = tools::installed(home, t);
            let would_use = match &installed {
                Some(_) => None,
                None => tools::python::choose(&found, t.python_min, t.python_below)
                    .map(|p| p.path.display().to_string()),
            };
            ToolEntry {
                name: t.name.into(),
                package: t.package.into(),
                version: t.version.into(),
                python: t.python_range(),
                installed: installed.map(|i| InstalledTool {
                    bin: i.bin.display().to_string(),
                    python_version: i.python_version,
                }),
                would_use,
            }
        })
        .collect();
    ToolsList {
        tools,
        tools_dir: home.display().to_string(),
        pythons: found
            .iter()
            .map(|p| PythonEntry { path: p.path.display().to_string(), version: p.version_text() })
            .collect(),
    }
}

pub(crate) fn tools(args: ToolsArgs) -> Result<(), CliError> {
    let home = tools::home();
    match args.action {
        ToolsAction::List { output } => {
            let doc = list(&home);
            if output.format.is_document() {
                return documents::emit(output.format, &doc);
            }
            outln!("{:<15} {:<8} {:<13} installed", "tool", "version", "python");
            for t in &doc.tools {
                let state = match (&t.installed, &t.would_use) {
                    (Some(i), _) => format!("yes: {} (Python {})", i.bin, i.python_version),
                    (None, Some(p)) => format!("no; `benchflow tools install {}` would use {p}", t.name),
                    (None, None) => format!("no, and no Python {} was found", t.python),
                };
                outln!("{:<15} {:<8} {:<13} {state}", t.name, t.version, t.python);
            }
            outln!("\ntools directory: {}", doc.tools_dir);
            outln!("Pythons found:");
            for p in &doc.pythons {
                outln!("  {} ({})", p.path, p.version);
            }
            if doc.pythons.is_empty() {
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
