//! The external tools benchflow drives (the vLLM router; the harnesses GuideLLM,
//! inference-perf, aiperf), pinned, each installed by benchflow itself into a virtual
//! environment of its own under the tools directory (`$BENCHFLOW_TOOLS_DIR`, default
//! `~/.cache/benchflow/tools/<name>-<version>/`), with a Python found on the machine that suits
//! it ([`python`]). `tool.json`, written last, marks a complete installation and says what was
//! installed with what.

pub(crate) mod python;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub(crate) use python::Python;

/// One tool: its PyPI package, pinned, the Pythons it runs on, its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    /// The oldest Python it supports, and the first one it does not (if any).
    pub python_min: (u32, u32),
    pub python_below: Option<(u32, u32)>,
    /// The command in the environment's `bin/`.
    pub bin: &'static str,
    pub what: &'static str,
}

/// What benchflow can install.
pub(crate) const TOOLS: &[Tool] = &[
    Tool {
        name: "vllm-router",
        package: "vllm-router",
        version: "0.1.17",
        python_min: (3, 8),
        python_below: None,
        bin: "vllm-router",
        what: "the vLLM router (router stacks)",
    },
    Tool {
        name: "guidellm",
        package: "guidellm",
        version: "0.8.1",
        python_min: (3, 10),
        python_below: None,
        bin: "guidellm",
        what: "GuideLLM harness (pulls torch: several GB)",
    },
    Tool {
        name: "inference-perf",
        package: "inference-perf",
        version: "0.7.0",
        python_min: (3, 12),
        python_below: None,
        bin: "inference-perf",
        what: "inference-perf harness",
    },
    Tool {
        name: "aiperf",
        package: "aiperf",
        version: "0.13.0",
        python_min: (3, 11),
        python_below: Some((3, 14)),
        bin: "aiperf",
        what: "aiperf harness",
    },
    Tool {
        name: "vllm",
        // `bench`: what `vllm bench serve` imports for its datasets (pandas, datasets).
        package: "vllm[bench]",
        version: "0.33.0",
        python_min: (3, 11),
        python_below: Some((3, 15)),
        bin: "vllm",
        what: "vllm bench serve harness (pulls torch and CUDA libraries: ~9.4 GB; runs without a GPU)",
    },
    Tool {
        name: "llmd-benchmark-report",
        package: "llmd-benchmark-report",
        version: "0.2.1",
        python_min: (3, 11),
        python_below: None,
        bin: "benchmark-report",
        what: "llm-d's Benchmark Report models and converters (checks benchflow's reports; converts the tools' own outputs)",
    },
];

impl Tool {
    /// The Pythons it runs on, as a requirement: `>=3.12`, `>=3.11,<3.14`.
    pub fn python_range(&self) -> String {
        let (a, b) = self.python_min;
        match self.python_below {
            Some((c, d)) => format!(">={a}.{b},<{c}.{d}"),
            None => format!(">={a}.{b}"),
        }
    }

    fn fits(&self, p: &Python) -> bool {
        let v = (p.version.0, p.version.1);
        v >= self.python_min && self.python_below.is_none_or(|b| v < b)
    }

    /// Its directory under `home`.
    pub fn dir(&self, home: &Path) -> PathBuf {
        home.join(format!("{}-{}", self.name, self.version))
    }

    /// Its command, once installed under `home`.
    pub fn command(&self, home: &Path) -> PathBuf {
        self.dir(home).join("venv/bin").join(self.bin)
    }
}

/// Why a tool could not be found or installed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool `{name}`; benchflow installs: {known}")]
    Unknown { name: String, known: String },
    #[error(
        "{tool} needs Python {range}, and none was found; looked at $PATH (python3.N, python3), \
         ~/.pyenv/versions/*/bin/python3, /usr/bin and /usr/local/bin; install one (e.g. `pyenv install 3.12`) \
         or name it with --python PATH"
    )]
    NoPython { tool: String, range: String },
    #[error("{path}: {why}")]
    BadPython { path: PathBuf, why: String },
    #[error("installing {tool} failed at `{step}` ({status}){hint}")]
    Failed { tool: String, step: String, status: String, hint: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The install lock of a tool (`<home>/<name>-<version>.lock`), held until dropped; says so when
/// another process holds it and waits.
fn lock(home: &Path, tool: &Tool) -> Result<Flock<std::fs::File>, ToolError> {
    std::fs::create_dir_all(home).map_err(io(home))?;
    let path = home.join(format!("{}-{}.lock", tool.name, tool.version));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    let errno =
        |(_, e): (std::fs::File, nix::errno::Errno)| ToolError::Io { path: path.clone(), source: e.into() };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(held),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            errln!(
                "benchflow: another process is installing {} {}; waiting for it ({})",
                tool.name,
                tool.version,
                path.display()
            );
            Flock::lock(file, FlockArg::LockExclusive).map_err(errno)
        }
        Err(other) => Err(errno(other)),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ToolError + '_ {
    move |source| ToolError::Io { path: path.to_path_buf(), source }
}

/// The tool of that name.
pub fn find(name: &str) -> Result<&'static Tool, ToolError> {
    TOOLS.iter().find(|t| t.name == name).ok_or_else(|| ToolError::Unknown {
        name: name.to_string(),
        known: TOOLS.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
    })
}

/// Where tools are installed: `$BENCHFLOW_TOOLS_DIR`, else `~/.cache/benchflow/tools`.
pub(crate) fn home() -> PathBuf {
    if let Some(dir) = std::env::var_os("BENCHFLOW_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("benchflow/tools")
}

/// Whether `program` is the command of a tool benchflow installs (under [`home`]).
pub(crate) fn provides(program: &str) -> bool {
    let home = home();
    TOOLS.iter().any(|t| t.command(&home) == Path::new(program))
}

/// A complete installation (`tool.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Installed {
    pub name: String,
    pub package: String,
    pub version: String,
    pub python: PathBuf,
    pub python_version: String,
    /// The command to run.
    pub bin: PathBuf,
    /// `pip freeze` of the environment: every package and version.
    pub packages: Vec<String>,
}

/// The installation of `tool` under `home`, if complete and its command is there.
pub fn installed(home: &Path, tool: &Tool) -> Option<Installed> {
    let text = std::fs::read(tool.dir(home).join("tool.json")).ok()?;
    let record: Installed = serde_json::from_slice(&text).ok()?;
    (record.version == tool.version && record.bin.is_file()).then_some(record)
}

/// The Python to install `tool` with: `explicit` if given (and suitable), else the newest
/// suitable one found.
pub fn python_for(tool: &Tool, explicit: Option<&Path>) -> Result<Python, ToolError> {
    if let Some(path) = explicit {
        let p = python::probe(path).ok_or_else(|| ToolError::BadPython {
            path: path.to_path_buf(),
            why: "not a working Python".into(),
        })?;
        if !tool.fits(&p) {
            return Err(ToolError::BadPython {
                path: path.to_path_buf(),
                why: format!(
                    "Python {} does not suit {} (needs {})",
                    p.version_text(),
                    tool.name,
                    tool.python_range()
                ),
            });
        }
        return Ok(p);
    }
    let found = python::discover();
    python::choose(&found, tool.python_min, tool.python_below)
        .cloned()
        .ok_or_else(|| ToolError::NoPython { tool: tool.name.to_string(), range: tool.python_range() })
}

/// Installs `tool` (pinned) into its own virtual environment under `home`, pip's output
/// appended to `log` (else on stderr); an incomplete earlier attempt is removed first. A
/// complete installation already there is moved aside (`<name>-<version>.previous`) while the
/// new one is made, removed once it is complete, and put back when it fails (a virtual
/// environment cannot move: the new one is made in place). Returns what was installed.
pub fn install(
    home: &Path,
    tool: &Tool,
    python: &Python,
    log: Option<&Path>,
) -> Result<Installed, ToolError> {
    // One install of a tool at a time: a second benchflow (another run's `--install-missing`,
    // another test) would otherwise wipe the environment the first is installing into. It waits,
    // then takes what the first installed.
    let was_installed = installed(home, tool).is_some();
    let _lock = lock(home, tool)?;
    if !was_installed && let Some(done) = installed(home, tool) {
        return Ok(done);
    }
    let dir = tool.dir(home);
    let aside = home.join(format!("{}-{}.previous", tool.name, tool.version));
    let remove = |d: &Path| match d.exists() {
        true => std::fs::remove_dir_all(d).map_err(io(d)),
        false => Ok(()),
    };
    // An attempt that was killed left the installation before it aside: it comes back first.
    if aside.exists() {
        if installed(home, tool).is_none() {
            remove(&dir)?;
            std::fs::rename(&aside, &dir).map_err(io(&aside))?;
        } else {
            remove(&aside)?;
        }
    }
    let kept = installed(home, tool).is_some();
    if kept {
        std::fs::rename(&dir, &aside).map_err(io(&dir))?;
    } else {
        remove(&dir)?;
    }
    match install_in(home, tool, python, log, &dir) {
        Ok(done) => {
            let _ = std::fs::remove_dir_all(&aside);
            Ok(done)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            if !kept {
                return Err(e);
            }
            std::fs::rename(&aside, &dir).map_err(io(&aside))?;
            Err(match e {
                ToolError::Failed { tool, step, status, hint } => ToolError::Failed {
                    tool,
                    step,
                    status,
                    hint: format!("{hint}; the installation that was there is kept"),
                },
                e => e,
            })
        }
    }
}

/// [`install`] into `dir` (absent).
fn install_in(
    home: &Path,
    tool: &Tool,
    python: &Python,
    log: Option<&Path>,
    dir: &Path,
) -> Result<Installed, ToolError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let venv = dir.join("venv");
    let fail = |step: &str, status: String, hint: &str| ToolError::Failed {
        tool: tool.name.to_string(),
        step: step.to_string(),
        status,
        hint: hint.to_string(),
    };
    let out =
        Command::new(&python.path).arg("-m").arg("venv").arg(&venv).output().map_err(io(&python.path))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(fail(
            &format!("{} -m venv", python.path.display()),
            format!("{}: {said}", out.status),
            "; Debian's Python needs the python3-venv package",
        ));
    }
    let pip = venv.join("bin/python");
    let spec = format!("{}=={}", tool.package, tool.version);
    let (out, err, hint) = match log {
        Some(path) => {
            let f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io(path))?;
            let g = f.try_clone().map_err(io(path))?;
            (Stdio::from(f), Stdio::from(g), format!(" (pip's output: {})", path.display()))
        }
        None => (stderr_stdio().map_err(io(&pip))?, Stdio::inherit(), " (pip's output is above)".to_string()),
    };
    let status = Command::new(&pip)
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", &spec])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(io(&pip))?;
    if !status.success() {
        return Err(fail(&format!("pip install {spec}"), status.to_string(), &hint));
    }
    let bin = tool.command(home);
    if !bin.is_file() {
        return Err(fail("checking the command", format!("{} is missing", bin.display()), ""));
    }
    let freeze = Command::new(&pip).args(["-m", "pip", "freeze", "--all"]).output().map_err(io(&pip))?;
    let record = Installed {
        name: tool.name.to_string(),
        package: tool.package.to_string(),
        version: tool.version.to_string(),
        python: python.path.clone(),
        python_version: python.version_text(),
        bin,
        packages: String::from_utf8_lossy(&freeze.stdout).lines().map(str::to_string).collect(),
    };
    let path = dir.join("tool.json");
    let text = serde_json::to_vec_pretty(&record).unwrap_or_default();
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(record)
}

/// Our stderr, for a child's stdout (pip's progress is not benchflow's output).
fn stderr_stdio() -> std::io::Result<Stdio> {
    use std::os::fd::AsFd;
    Ok(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_pinned_and_unknown_names_list_the_known_ones() {
        for t in TOOLS {
            assert!(t.version.split('.').all(|p| p.parse::<u32>().is_ok()), "{} {}", t.name, t.version);
        }
        assert_eq!(find("aiperf").unwrap().python_range(), ">=3.11,<3.14");
        let e = find("locust").unwrap_err().to_string();
        assert!(e.contains("`locust`") && e.contains("vllm-router, guidellm, inference-perf, aiperf"), "{e}");
    }

    /// An installation of `tool` under `home` as `install` leaves one: its command (with
    /// `script` in it) and its record.
    fn fake_install(home: &Path, tool: &Tool, script: &str) -> Installed {
        let dir = tool.dir(home);
        std::fs::create_dir_all(dir.join("venv/bin")).unwrap();
        let bin = dir.join("venv/bin").join(tool.name);
        std::fs::write(&bin, script).unwrap();
        let record = Installed {
            name: tool.name.into(),
            package: tool.package.into(),
            version: tool.version.into(),
            python: "/usr/bin/python3".into(),
            python_version: "3.12.1".into(),
            bin,
            packages: vec![],
        };
        std::fs::write(dir.join("tool.json"), serde_json::to_vec(&record).unwrap()).unwrap();
        record
    }

    #[test]
    fn one_install_of_a_tool_at_a_time() {
        let home = std::env::temp_dir().join(format!("benchflow-tools-lock-{}", std::process::id()));
        let tool = find("aiperf").unwrap();
        let held = lock(&home, tool).unwrap();
        // Another process's attempt (another open file description) is refused while it is held.
        let path = home.join(format!("{}-{}.lock", tool.name, tool.version));
        let other = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let (other, e) = Flock::lock(other, FlockArg::LockExclusiveNonblock).unwrap_err();
        assert_eq!(e, nix::errno::Errno::EWOULDBLOCK);
        // Another tool is not held up by it.
        drop(lock(&home, find("vllm-router").unwrap()).unwrap());
        drop(held);
        assert!(Flock::lock(other, FlockArg::LockExclusiveNonblock).is_ok(), "free once the first is done");
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn a_failed_reinstall_keeps_the_installation_that_was_there() {
        use std::os::unix::fs::PermissionsExt as _;
        let home = std::env::temp_dir().join(format!("benchflow-tools-keep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        let tool = find("vllm-router").unwrap();
        let dir = tool.dir(&home);
        let record = fake_install(&home, tool, "#!/bin/sh\n");
        // A "Python" that answers its version and fails everything else.
        let fake = home.join("fake-python");
        std::fs::write(
            &fake,
            "#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.12.1' && exit 0\necho no >&2; exit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let py = python::probe(&fake).unwrap();
        let e = install(&home, tool, &py, None).unwrap_err().to_string();
        assert!(e.contains("-m venv") && e.contains("is kept"), "{e}");
        assert_eq!(installed(&home, tool), Some(record.clone()), "the working installation is still there");
        assert!(!home.join(format!("{}-{}.previous", tool.name, tool.version)).exists());
        // One killed while the new one was made: the one moved aside comes back first.
        let aside = home.join(format!("{}-{}.previous", tool.name, tool.version));
        std::fs::rename(&dir, &aside).unwrap();
        std::fs::create_dir_all(dir.join("venv")).unwrap();
        assert!(install(&home, tool, &py, None).is_err());
        assert_eq!(installed(&home, tool), Some(record));
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn an_incomplete_installation_is_not_installed() {
        let home = std::env::temp_dir().join(format!("benchflow-tools-unit-{}", std::process::id()));
        let tool = find("vllm-router").unwrap();
        std::fs::create_dir_all(tool.dir(&home).join("venv/bin")).unwrap();
        assert!(installed(&home, tool).is_none(), "no tool.json yet");
        let record = fake_install(&home, tool, "");
        let bin = record.bin.clone();
        assert_eq!(installed(&home, tool), Some(record));
        std::fs::remove_file(&bin).unwrap();
        assert!(installed(&home, tool).is_none(), "its command is gone");
        let _ = std::fs::remove_dir_all(&home);
    }
}
