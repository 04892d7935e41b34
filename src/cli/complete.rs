//! Shell completion: `benchflow completions SHELL` (also spelt `completion`). The scripts offer
//! the commands and flags (hidden commands left out) and, for `-c`, `-H`, `-w`, `-e` and
//! `tools install`, the names shipped with benchflow.

use std::ffi::OsStr;

use clap::{
    CommandFactory as _,
    builder::{PossibleValue, TypedValueParser},
};

use super::{CliError, args::Cli};

use crate::workdir::WorkdirError;

/// A value that may be any text (a name of the current directory's files, or a path), whose
/// completions are the names of a fixed list: the shipped files of a folder, or the tools.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Names(pub fn() -> Vec<&'static str>);

/// The shipped scenarios, harnesses, workloads, experiments.
pub(crate) fn scenarios() -> Vec<&'static str> {
    crate::spec::builtin::names("scenarios").collect()
}
pub(crate) fn harnesses() -> Vec<&'static str> {
    crate::spec::builtin::names("harnesses").collect()
}
pub(crate) fn workloads() -> Vec<&'static str> {
    crate::spec::builtin::names("workloads").collect()
}
pub(crate) fn experiments() -> Vec<&'static str> {
    crate::spec::builtin::names("experiments").collect()
}
/// The tools `benchflow tools install` knows.
pub(crate) fn tools() -> Vec<&'static str> {
    crate::tools::TOOLS.iter().map(|t| t.name).collect()
}

impl TypedValueParser for Names {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        // Any text: the names are offered, not imposed (a path or a local file is fine).
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new((self.0)().into_iter().map(PossibleValue::new)))
    }
}

/// The completion script of `shell`, without the hidden commands.
pub(crate) fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = visible();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "benchflow", &mut script);
    script
}

/// The command line without its hidden commands (those for benchflow's own processes):
/// clap_complete offers every subcommand, hidden or not, so they are left out of the command
/// it is given (the top level has no arguments of its own, only commands).
fn visible() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("benchflow")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// `benchflow completions SHELL`: the script on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    use std::io::Write as _;
    let script = script(shell);
    // A closed pipe (`| head`) is not an error.
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Workdir(WorkdirError::Io { path: "stdout".into(), source: e }))
        }
        _ => Ok(()),
    }
}
