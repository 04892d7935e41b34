//! A session: one plan executed in one work directory, as a library. It resolves the files,
//! compiles the plan, writes `inputs/` and `plan/` (holding the work directory's lock), checks
//! the programs the steps will run, and executes; the caller passes the signals in, so one
//! process can run many sessions (an experiment) and a test can interrupt one with a channel.
//!
//! ```ignore
//! let session = Session::create(Setup::new(root, request))?;
//! session.preflight(&opts)?;
//! let report = session.execute(&opts, &mut signals).await?;
//! ```

use std::path::{Path, PathBuf};

use serde_json::json;
use tokio::sync::mpsc;

use crate::{
    exec::{self, ExecError, Options, Report, Sink},
    plan::{self, Plan, PlanError},
    resolve::{self, Ports, Request, ResolveError, Resolved, RunContext},
    steps::spawn,
    workdir::{self, WorkDir, WorkdirError, layout, utc_now},
};

/// Why a session could not be prepared or run (a step's failure is in the [`Report`] instead).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Workdir(#[from] WorkdirError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("step {step} runs `{program}`, {why}")]
    MissingProgram { step: String, program: String, why: String },
    /// Something else a step needs (a tool benchflow installs), with how to get it.
    #[error("step {step}: {message}")]
    Missing { step: String, message: String },
    #[error("{path} cannot be read ({why}): is it a benchflow work directory?")]
    Record { path: PathBuf, why: String },
    /// A dry run into a directory where something ran would replace the record of what ran.
    #[error(
        "{path} holds a run (state.json): a dry run would replace the record of its inputs; \
         give --dry-run a --workdir of its own, or none (it renders into runs/dry-run/<run-id>)"
    )]
    DryRunOverRun { path: PathBuf },
}

/// Where and what: the work directory and the files and overrides to resolve.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub root: PathBuf,
    pub request: Request,
    /// The benchflow binary (for `benchflow sim` engines).
    pub bin: PathBuf,
    /// The run id and local ports to use (an experiment's point runs on its stack's); by
    /// default those the work directory recorded, else new ones.
    pub run: Option<RunContext>,
}

impl Setup {
    pub(crate) fn new(root: PathBuf, request: Request) -> Setup {
        Setup { root, request, bin: this_binary(), run: None }
    }

    /// With a given run id and local ports.
    pub(crate) fn with_run(mut self, id: String, ports: Ports) -> Setup {
        self.run = Some(RunContext { id, workdir: self.root.clone(), bin: self.bin.clone(), ports });
        self
    }

    /// The run context: an existing work directory keeps its run id and engine port, so its
    /// done steps keep their hashes.
    fn context(&self) -> RunContext {
        if let Some(run) = &self.run {
            return run.clone();
        }
        let previous = recorded(&self.root);
        let id = previous
            .as_ref()
            .and_then(|r| r.get("run.id").and_then(|v| v.as_str()).map(str::to_string))
            .unwrap_or_else(|| {
                self.root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(workdir::run_id)
            });
        let ports = Ports::recorded(previous.as_ref().map(|r| &r.values));
        RunContext { id, workdir: self.root.clone(), bin: self.bin.clone(), ports }
    }

    /// Resolves and compiles, writing nothing.
    pub(crate) fn compile(&self) -> Result<(Resolved, Plan), SessionError> {
        let resolved = resolve::resolve(&self.request, &self.context())?;
        let plan = plan::compile(&resolved)?;
        Ok((resolved, plan))
    }
}

/// This executable (it serves `benchflow sim` for local engines).
/// (Linux names a binary replaced on disk while it runs `PATH (deleted)`: the path is kept, so
/// plans stay the same across a rebuild during a long experiment.)
/// (Read once: an experiment plans every point with it.)
pub(crate) fn this_binary() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("benchflow"));
        match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(kept) => PathBuf::from(kept),
            None => exe,
        }
    })
    .clone()
}

/// What a work directory recorded (`inputs/resolved.yaml`), if it is one.
pub(crate) fn recorded(root: &Path) -> Option<Resolved> {
    Resolved::from_file(&root.join(layout::RESOLVED)).ok()
}

/// A prepared run: the locked work directory, the resolved inputs, the plan.
pub(crate) struct Session {
    pub wd: WorkDir,
    pub resolved: Resolved,
    pub plan: Plan,
}

impl Session {
    /// Resolves, compiles, locks the work directory and writes `inputs/` and `plan/`.
    #[cfg(test)]
    fn create(setup: Setup) -> Result<Session, SessionError> {
        let (resolved, plan) = setup.compile()?;
        Session::from_parts(&setup.root, resolved, plan)
    }

    /// [`Session::create`] from files read earlier (an experiment's stacks and points; the
    /// setup's request must name the files `loaded` read).
    pub(crate) fn from_loaded(setup: Setup, loaded: &resolve::Loaded) -> Result<Session, SessionError> {
        let resolved = loaded.resolve(&setup.request, &setup.context())?;
        let plan = plan::compile(&resolved)?;
        Session::from_parts(&setup.root, resolved, plan)
    }

    /// A session for inputs resolved elsewhere (a reproduction).
    pub(crate) fn from_parts(root: &Path, resolved: Resolved, plan: Plan) -> Result<Session, SessionError> {
        Session::prepared(root, resolved, plan, false)
    }

    /// [`Session::from_parts`] for `--dry-run`: `runs/latest` stays where it was, and a
    /// directory where nothing ever ran is marked as a dry run's (`plan/dry-run.json`, which
    /// `status` shows); a later real command in it removes the mark.
    pub(crate) fn dry_run(root: &Path, resolved: Resolved, plan: Plan) -> Result<Session, SessionError> {
        Session::prepared(root, resolved, plan, true)
    }

    fn prepared(root: &Path, resolved: Resolved, plan: Plan, dry_run: bool) -> Result<Session, SessionError> {
        if dry_run && root.join(layout::STATE).exists() {
            return Err(SessionError::DryRunOverRun { path: root.to_path_buf() });
        }
        let wd = WorkDir::create(root)?;
        let session = Session { wd, resolved, plan };
        session.write_inputs(dry_run)?;
        Ok(session)
    }

    /// Reads a work directory's record of what it resolved, then re-resolves it into `root`
    /// (a new run with the same values and sources).
    pub(crate) fn reproduce(
        recorded: &Resolved,
        root: &Path,
        dry_run: bool,
    ) -> Result<Session, SessionError> {
        let id = root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(workdir::run_id);
        let run = RunContext { id, workdir: root.to_path_buf(), bin: this_binary(), ports: Ports::Free };
        let resolved = resolve::reproduce(recorded, &run)?;
        let plan = plan::compile(&resolved)?;
        Session::prepared(root, resolved, plan, dry_run)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.wd.root
    }

    /// `inputs/` (files as given, overrides, resolved.yaml, version) and `plan/`.
    fn write_inputs(&self, dry_run: bool) -> Result<(), WorkdirError> {
        let (wd, resolved, plan) = (&self.wd, &self.resolved, &self.plan);
        // The files exactly as they were read for this resolution (none when reproducing: the
        // caller copies the originals).
        for (kind, text) in &resolved.texts {
            let origin = resolved.files.get(kind).map(String::as_str).unwrap_or("?");
            wd.write(
                &format!("{}/{kind}.yaml", layout::INPUTS),
                format!("# from {origin}\n{text}").as_bytes(),
            )?;
        }
        let sets = resolved.request.sets.iter().map(|s| format!("--set {s}\n")).collect::<String>();
        wd.write(layout::OVERRIDES, sets.as_bytes())?;
        // A later command with other inputs keeps the earlier record beside the new one.
        let text = resolved.to_yaml();
        if let Ok(old) = std::fs::read_to_string(wd.path(layout::RESOLVED))
            && old != text
        {
            let stamp = utc_now().replace([':', '.'], "-");
            wd.write(&format!("{}/{stamp}-resolved.yaml", layout::HISTORY), old.as_bytes())?;
        }
        wd.write(layout::RESOLVED, text.as_bytes())?;
        let version = json!({
            "benchflow_version": env!("CARGO_PKG_VERSION"),
            "format_version": workdir::FORMAT_VERSION,
            "written_at": utc_now(),
            "command": std::env::args().collect::<Vec<_>>(),
        });
        wd.write(layout::VERSION, serde_json::to_string_pretty(&version).unwrap_or_default().as_bytes())?;
        wd.write(layout::PLAN, serde_json::to_string_pretty(plan).unwrap_or_default().as_bytes())?;
        wd.write(layout::PLAN_DOT, plan.dot().as_bytes())?;
        wd.write(layout::PLAN_TABLE, plan.table().as_bytes())?;
        for s in &plan.steps {
            for (name, text) in s.args.as_ref().map(|a| a.files()).unwrap_or_default() {
                wd.write(&format!("{}/{}/{name}", layout::MANIFESTS, s.id), text.as_bytes())?;
            }
            let rendered = json!({
                "id": s.id, "kind": s.kind, "phase": s.phase, "describe": s.describe, "with": s.with(), "hash": s.hash,
            });
            wd.write(
                &format!("{}/{}.json", layout::PLAN_STEPS, s.id),
                serde_json::to_string_pretty(&rendered).unwrap_or_default().as_bytes(),
            )?;
        }
        if dry_run {
            // Nothing ran here (a directory that holds a run is refused before this).
            let mark = json!({ "dry_run": true, "rendered_at": utc_now() });
            wd.write(layout::DRY_RUN, serde_json::to_string_pretty(&mark).unwrap_or_default().as_bytes())?;
            return Ok(());
        }
        let _ = std::fs::remove_file(wd.path(layout::DRY_RUN));
        if let Some(runs) = wd.root.parent().filter(|p| p.file_name().is_some_and(|n| n == "runs")) {
            let link = runs.join("latest");
            let _ = std::fs::remove_file(&link);
            #[cfg(unix)]
            let _ = std::os::unix::fs::symlink(wd.root.file_name().unwrap_or_default(), &link);
        }
        Ok(())
    }

    /// Before anything starts: every program a step in scope will run is installed, and
    /// whatever else a step needs (a tool benchflow installs) is there or, with
    /// `--install-missing`, will be.
    pub(crate) fn preflight(&self, opts: &Options) -> Result<(), SessionError> {
        let in_scope = |i: usize| match &opts.selection {
            Some(sel) => sel.contains(&i),
            None => opts.phases.contains(&self.plan.steps[i].phase),
        };
        preflight(&self.plan, in_scope, opts.install_missing)
    }

    /// Checks the programs, then executes the plan. `signals` delivers one message per
    /// Ctrl-C / SIGTERM; every event goes to `sink` (and `events.jsonl`).
    pub(crate) async fn execute(
        &self,
        opts: &Options,
        signals: &mut mpsc::UnboundedReceiver<()>,
        sink: &mut dyn Sink,
    ) -> Result<Report, SessionError> {
        self.preflight(opts)?;
        Ok(exec::execute(&self.plan, self.dir(), opts, signals, sink).await?)
    }

    /// An existing work directory, locked, with the plan and the inputs it recorded: what
    /// `teardown` and `status` read (nothing is resolved or rendered again).
    pub(crate) fn open(dir: &Path) -> Result<Session, SessionError> {
        let wd = WorkDir::open(dir)?;
        let unreadable = |why: String| SessionError::Record { path: dir.join(layout::PLAN), why };
        let text = std::fs::read_to_string(dir.join(layout::PLAN)).map_err(|e| unreadable(e.to_string()))?;
        let plan: Plan = serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
        let resolved = Resolved::from_file(&dir.join(layout::RESOLVED))
            .map_err(|e| SessionError::Record { path: dir.join(layout::RESOLVED), why: e.to_string() })?;
        Ok(Session { wd, resolved, plan })
    }

    /// What `teardown` opens: as [`Session::open`], or, when `plan.json` cannot be read, a plan
    /// of one undo step per record in `state.json` and `setup/undo/` ([`Plan::undoing`]), with
    /// a warning: what a record names is stopped whatever happened to the plan.
    pub(crate) fn open_for_teardown(dir: &Path) -> Result<(Session, Option<String>), SessionError> {
        let plan_path = dir.join(layout::PLAN);
        match Session::open(dir) {
            Err(SessionError::Record { path, why }) if path == plan_path => {
                let wd = WorkDir::open(dir)?;
                let resolved = Resolved::from_file(&dir.join(layout::RESOLVED)).map_err(|e| {
                    SessionError::Record { path: dir.join(layout::RESOLVED), why: e.to_string() }
                })?;
                let run_id = resolved
                    .get("run.id")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let state = exec::State::load(dir, &run_id).unwrap_or_else(|_| exec::State::fresh(&run_id));
                let plan = Plan::undoing(&run_id, &state.leftovers(dir));
                let warning = format!(
                    "{} cannot be read ({why}); tearing down from the undo records ({} step(s))",
                    path.display(),
                    plan.steps.len()
                );
                Ok((Session { wd, resolved, plan }, Some(warning)))
            }
            other => other.map(|s| (s, None)),
        }
    }

    /// Tears down what the record says is up, one undo step at a time, from the typed undo
    /// records (`state.json`, else `setup/undo/`): the one teardown of the CLI, experiments and
    /// searches. None when nothing is up. Undo records that cannot be read count as failed.
    pub(crate) async fn teardown(
        &self,
        quiet: bool,
        signals: &mut mpsc::UnboundedReceiver<()>,
        sink: &mut dyn Sink,
    ) -> Result<Option<Report>, SessionError> {
        let dir = self.dir();
        // A damaged state.json does not stop teardown: setup/undo/ keeps every record too.
        let state = exec::State::load(dir, &self.plan.run_id)
            .unwrap_or_else(|_| exec::State::fresh(&self.plan.run_id));
        let unreadable: Vec<String> =
            crate::steps::recorded_undos(dir).into_iter().filter_map(|(_, r)| r.err()).collect();
        let mut report = if state.leftovers(dir).is_empty() {
            if unreadable.is_empty() {
                return Ok(None);
            }
            Report::default()
        } else {
            let opts = Options::teardown(quiet);
            exec::execute(&self.plan, dir, &opts, signals, sink).await?
        };
        report.teardown_failed.extend(unreadable);
        Ok(Some(report))
    }
}

/// Every step of `plan` for which `in_scope` holds can start: what it needs is there (its
/// `check`), and its programs are on the PATH (or are a tool benchflow installs, with
/// `install_missing`).
pub(crate) fn preflight(
    plan: &Plan,
    in_scope: impl Fn(usize) -> bool,
    install_missing: bool,
) -> Result<(), SessionError> {
    for (i, s) in plan.steps.iter().enumerate() {
        if let Some(args) = s.args.as_ref().filter(|_| in_scope(i)) {
            args.check(install_missing)
                .map_err(|message| SessionError::Missing { step: s.id.clone(), message })?;
        }
    }
    for (i, s) in plan.steps.iter().enumerate() {
        let Some(args) = s.args.as_ref().filter(|_| in_scope(i)) else { continue };
        for program in args.programs() {
            // A tool's command is there once its tool step (checked above) has run.
            let a_tool = install_missing && crate::tools::provides(program);
            if !program.is_empty() && !a_tool && spawn::find_program(program).is_none() {
                return Err(SessionError::MissingProgram {
                    step: s.id.clone(),
                    program: program.to_string(),
                    why: spawn::why_missing(program),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::pipeline::Phase;

    /// Two sessions in one process, each in its own work directory, with the same signal
    /// channel: the shape an experiment needs.
    #[tokio::test]
    async fn sessions_run_one_after_another_in_one_process() {
        let base = std::env::temp_dir().join(format!("bf-session-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let pipeline = base.join("p.yaml");
        std::fs::write(
            &pipeline,
            "steps:\n  - { name: mark, phase: run, kind: exec, with: { command: [sh, -c, 'echo {{ run.id }} > mark'] } }\n",
        )
        .unwrap();
        let scenario = base.join("s.yaml");
        std::fs::write(
            &scenario,
            format!(
                "platform: local\nengine: {{ kind: endpoint, url: 'http://127.0.0.1:9' }}\npipeline: {}\n",
                pipeline.display()
            ),
        )
        .unwrap();
        let (_tx, mut signals) = mpsc::unbounded_channel();
        let opts = Options {
            phases: Phase::ALL.to_vec(),
            selection: None,
            teardown_on_failure: true,
            quiet: true,
            install_missing: false,
            stack: None,
            reuse_standup: true,
        };
        for name in ["one", "two"] {
            let request = Request {
                scenario: scenario.display().to_string(),
                harness: "builtin".into(),
                workload: "sanity".into(),
                sets: Vec::new(),
                layers: Vec::new(),
            };
            let session = Session::create(Setup::new(base.join(name), request)).unwrap();
            let report = session.execute(&opts, &mut signals, &mut exec::Silent).await.unwrap();
            assert_eq!(report.outcome, exec::Outcome::Success);
            assert_eq!(std::fs::read_to_string(base.join(name).join("mark")).unwrap().trim(), name);
            assert!(base.join(name).join("plan/plan.json").is_file());
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
