//! The command line as clap parses it: the commands and their flags. What they do is in
//! [`super::engine`] (plan and execute), [`super`] (`sim`, `analyze`, exit codes).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::{
    EXIT_CODES,
    complete::{self, Names},
    documents::Format,
};
use crate::{analysis::Convention, resolve::Request, resolve::Resolved};

#[derive(Debug, Parser)]
#[command(
    name = "benchflow",
    version,
    about = "Stand up LLM inference stacks, drive load at them, analyse the results, tear them down.",
    after_help = EXIT_CODES
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Stand up, run the workload, analyse, tear down (teardown also runs on failure and on
    /// the first Ctrl-C).
    #[command(after_help = EXIT_CODES)]
    E2e(ExecArgs),
    /// Stand up the stack and leave it running (`run` and `teardown` take its work directory).
    #[command(after_help = EXIT_CODES)]
    Standup(ExecArgs),
    /// Run the workload and analyse, against what `standup` left in --workdir, or against any
    /// OpenAI-compatible server with --endpoint URL. Each run measures anew into
    /// results/<next>/ and analysis/<next>/ (`analyze` re-analyses recorded ones); refused
    /// when the stack is not up.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Tear down what a work directory's run left running (from its own record).
    #[command(after_help = EXIT_CODES)]
    Teardown(TeardownArgs),
    /// Print the plan (the step DAG) without running anything.
    #[command(after_help = EXIT_CODES)]
    Plan(ShowPlanArgs),
    /// Recompute statistics, plots and the report from a work directory's results.
    #[command(after_help = EXIT_CODES)]
    Analyze(AnalyzeArgs),
    /// Show a work directory's steps and what is still up.
    #[command(after_help = EXIT_CODES)]
    Status(StatusArgs),
    /// Pack a work directory into a .tar.gz with a checksum manifest.
    #[command(after_help = EXIT_CODES)]
    Archive(ArchiveArgs),
    /// Run again from a work directory's (or archive's) inputs/resolved.yaml, into a new one.
    #[command(after_help = EXIT_CODES)]
    Reproduce(ReproduceArgs),
    /// Run (or resume) an experiment: many points, one standup per distinct stack.
    /// `benchflow experiment plan -e FILE` prints the design and its stacks, runs nothing.
    #[command(after_help = EXIT_CODES)]
    Experiment(ExperimentArgs),
    /// Put runs or experiment points side by side: each difference with a bootstrap
    /// confidence interval and a verdict (better, worse, no significant difference, or
    /// inconclusive: a run's client fell behind, its send delay p99 above max(10 ms, 5% of the
    /// median TTFT)). The exit code says whether the comparison was made (0), not what it
    /// found: an inconclusive verdict exits 0 too; read `verdict` and `why` in `-o json`.
    #[command(after_help = EXIT_CODES)]
    Compare(CompareArgs),
    /// Delete what benchflow left in a Kubernetes namespace (found by label), e.g. after a crash.
    #[command(after_help = EXIT_CODES)]
    Gc(GcArgs),
    /// The external tools benchflow drives (the vLLM router, GuideLLM, inference-perf, aiperf):
    /// `tools list` shows them, pinned, and what is installed; `tools install NAME` installs one
    /// into its own virtual environment (~/.cache/benchflow/tools, or $BENCHFLOW_TOOLS_DIR).
    #[command(after_help = EXIT_CODES)]
    Tools(ToolsArgs),
    /// Serve the built-in vLLM-compatible simulator until Ctrl-C or SIGTERM.
    #[command(after_help = EXIT_CODES)]
    Sim(SimArgs),
    /// Print a shell completion script: `benchflow completions bash > /etc/bash_completion.d/benchflow`
    /// (also spelt `completion`).
    #[command(visible_alias = "completion")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// (for harness pods) Print a results directory as one checksummed frame on stdout.
    #[command(hide = true)]
    ResultsPack { dir: PathBuf },
    /// (for a step's process) Append stdin to LOG, the secrets benchflow sends redacted.
    #[command(hide = true)]
    RedactPump { log: PathBuf },
}

#[derive(Debug, Args)]
pub(crate) struct ToolsArgs {
    #[command(subcommand)]
    pub action: ToolsAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ToolsAction {
    /// The tools, their pinned versions and Pythons, and whether (and where) each is installed.
    List {
        #[command(flatten)]
        output: OutputArg,
    },
    /// Install one (again, if it was), pinned, with the newest suitable Python found.
    Install {
        /// vllm-router, guidellm, inference-perf, aiperf, vllm or llmd-benchmark-report.
        #[arg(value_parser = Names(complete::tools), hide_possible_values = true)]
        name: String,
        /// The Python to use (default: the newest suitable one on $PATH, in ~/.pyenv/versions,
        /// /usr/bin or /usr/local/bin).
        #[arg(long)]
        python: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AnalyzeArgs {
    /// The work directory of a run.
    pub dir: PathBuf,
    /// Metric definitions for the statistics (default: the harness's, the run's own). Under
    /// another, the analysis goes beside the run's own, in analysis/<run>/conventions/<name>/.
    #[arg(long, value_enum)]
    pub convention: Option<Convention>,
    /// Which harness run: `002` (or `2`) [default: the latest].
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Port to listen on; 0 picks a free one. The address is printed as the first line of stdout.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// A built-in profile (see --list-profiles).
    #[arg(long, default_value = "llama-3.1-8b/h100", conflicts_with = "config")]
    pub profile: String,
    /// A profile file (YAML, same keys as profiles/sim/*.yaml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one knob, e.g. --set time_scale=0.1 --set failure_rate=0.05 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Print the built-in profiles and exit.
    #[arg(long)]
    pub list_profiles: bool,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key), to test clients over TLS.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExperimentAction {
    /// Run it (the default; the same command resumes it).
    Run,
    /// Print the design (every point, its values and its stack) and the stacks; run nothing.
    Plan,
}

#[derive(Debug, Args)]
pub(crate) struct ExperimentArgs {
    /// `plan` prints the design without running anything.
    #[arg(value_enum, default_value = "run", hide_default_value = true)]
    pub action: ExperimentAction,
    /// The experiment: a name in experiments/ (or shipped with benchflow), or a path [default:
    /// the experiment.yaml of --workdir]
    #[arg(
        short = 'e',
        long = "experiment",
        value_name = "FILE",
        value_parser = Names(complete::experiments),
        hide_possible_values = true
    )]
    pub file: Option<String>,
    /// The experiment directory (default: runs/<experiment name>). The same command on the
    /// same directory resumes: points done with unchanged inputs are skipped.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Override one variable for every point (it may not be a factor).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Run a design larger than the file's `max_points`.
    #[arg(long)]
    pub yes: bool,
    /// A results store shared by experiments: points measured before with the same inputs
    /// are copied from it instead of measured again, and new ones are added.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Install a missing tool that benchflow installs (the vLLM router of a router stack)
    /// instead of refusing to start.
    #[arg(long)]
    pub install_missing: bool,
    /// Kubernetes: the namespace of every point's stack (as kubectl's; sets
    /// kubernetes.namespace).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Only the experiment's own lines (no step progress of each point).
    #[arg(short, long)]
    pub quiet: bool,
    /// `experiment plan`: print the design as a table, or as one JSON or YAML document
    /// (schemas/experiment-plan.schema.json).
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Format,
}

impl ExperimentArgs {
    /// `--set` plus what `-n` sets.
    pub(crate) fn all_sets(&self) -> Vec<String> {
        let mut sets = self.sets.clone();
        if let Some(ns) = &self.namespace {
            sets.push(format!("kubernetes.namespace={ns}"));
        }
        sets
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompareFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// Two or more work directories (runs, or an experiment's points/<id>); the first is the
    /// baseline.
    #[arg(required = true, num_args = 2..)]
    pub dirs: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: CompareFormat,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Bootstrap resamples, 100 to 1,000,000.
    #[arg(long, default_value_t = 2000, value_parser = resamples)]
    pub resamples: usize,
    /// Write the overlaid charts and report.html (the comparison as a page) here (default: none).
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// How requests are resampled: `blocks` (contiguous blocks in send order: holds when
    /// neighbours are correlated, as queueing makes them) or `independent` (request by request,
    /// as before; too narrow under load, for comparison only).
    #[arg(long, value_enum, default_value = "blocks")]
    pub resampling: CompareResampling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompareResampling {
    Blocks,
    Independent,
}

/// The files and overrides of a run.
#[derive(Debug, Args, Clone)]
pub(crate) struct PlanArgs {
    /// Scenario: a name in scenarios/ (or shipped with benchflow), or a path [default: local-sim,
    /// or the work directory's]
    #[arg(short = 'c', long, value_parser = Names(complete::scenarios), hide_possible_values = true)]
    pub scenario: Option<String>,
    /// Harness: a name in harnesses/, or a path [default: builtin, or the work directory's]
    #[arg(short = 'H', long, value_parser = Names(complete::harnesses), hide_possible_values = true)]
    pub harness: Option<String>,
    /// Workload: a name in workloads/, or a path [default: sanity, or the work directory's]
    #[arg(short = 'w', long, value_parser = Names(complete::workloads), hide_possible_values = true)]
    pub workload: Option<String>,
    /// Override one variable, e.g. --set engine.profile=llama-3.1-8b/h100 --set workload.seed=7.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Kubernetes: the kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Kubernetes: the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes: the namespace to deploy into (as kubectl's; sets kubernetes.namespace).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Work directory (default: runs/<run-id>; with --dry-run, runs/dry-run/<run-id>). An
    /// existing one is continued: standup steps done with unchanged inputs and still up are
    /// reused; every run measures anew into the next results/<run>/.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Only these steps, run even if done: `3-5`, `2,7`, `smoke_test`.
    #[arg(short = 's', long = "step", value_name = "STEPS")]
    pub steps: Option<String>,
    /// Render everything into the work directory, start nothing: by default into
    /// runs/dry-run/<run-id>, and runs/latest is left where it was; `status` says "dry run".
    #[arg(long)]
    pub dry_run: bool,
    /// Leave the stack up: after a failure or an interrupt (standup, e2e), and for `e2e` after
    /// the run too (no teardown; `benchflow teardown DIR` removes it).
    #[arg(long)]
    pub keep: bool,
    /// Install a missing tool that benchflow installs (the vLLM router of a router stack)
    /// instead of refusing to start.
    #[arg(long)]
    pub install_missing: bool,
    /// No progress lines.
    #[arg(short, long)]
    pub quiet: bool,
}

impl PlanArgs {
    /// What to resolve: the names given, else those an existing work directory recorded, else
    /// the defaults; the recorded `--set`s first, then `extra`, then the ones given now.
    pub(crate) fn request(
        &self,
        scenario: Option<&str>,
        extra: &[String],
        previous: Option<&Resolved>,
    ) -> Request {
        let prev = previous.map(|r| &r.request);
        let pick = |given: &Option<String>, recorded: Option<&String>, default: &str| {
            given.clone().or_else(|| recorded.cloned()).unwrap_or_else(|| default.to_string())
        };
        let mut sets: Vec<String> = prev.map(|r| r.sets.clone()).unwrap_or_default();
        sets.extend(extra.iter().cloned());
        sets.extend(self.all_sets());
        // A later --set of the same key replaces an earlier one (it would win anyway).
        let key = |s: &str| s.split_once('=').map_or(s, |(k, _)| k).trim().to_string();
        let mut seen = std::collections::BTreeSet::new();
        let mut deduped: Vec<String> = sets.into_iter().rev().filter(|s| seen.insert(key(s))).collect();
        deduped.reverse();
        Request {
            scenario: scenario
                .map(str::to_string)
                .unwrap_or_else(|| pick(&self.scenario, prev.map(|r| &r.scenario), "local-sim")),
            harness: pick(&self.harness, prev.map(|r| &r.harness), "builtin"),
            workload: pick(&self.workload, prev.map(|r| &r.workload), "sanity"),
            sets: deduped,
            layers: prev.map(|r| r.layers.clone()).unwrap_or_default(),
        }
    }

    /// The Kubernetes flags given (`--context`, `--kubeconfig`, `-n`), by name.
    pub(crate) fn cluster_flags(&self) -> Vec<&'static str> {
        [
            self.context.as_ref().map(|_| "--context"),
            self.kubeconfig.as_ref().map(|_| "--kubeconfig"),
            self.namespace.as_ref().map(|_| "-n/--namespace"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// `--set` plus what the Kubernetes flags set.
    pub(crate) fn all_sets(&self) -> Vec<String> {
        let mut sets = self.sets.clone();
        if let Some(c) = &self.context {
            sets.push(format!("kubernetes.context={c}"));
        }
        if let Some(k) = &self.kubeconfig {
            let k = std::path::absolute(k).unwrap_or(k.clone());
            sets.push(format!("kubernetes.kubeconfig={}", k.display()));
        }
        if let Some(ns) = &self.namespace {
            sets.push(format!("kubernetes.namespace={ns}"));
        }
        sets
    }
}

/// `-o`: the final summary as one document instead of the statistics table.
#[derive(Debug, Args, Clone, Copy)]
pub(crate) struct OutputArg {
    /// Output format: `table` for people, or one JSON or YAML document on stdout (everything
    /// else on stderr; the schemas are in schemas/).
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub format: Format,
}

/// `e2e` and `standup`: the files and overrides, and the output format.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Benchmark this OpenAI-compatible server instead (scenario `endpoint`, nothing stood up).
    #[arg(long, value_name = "URL", conflicts_with = "scenario")]
    pub endpoint: Option<String>,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Args)]
pub(crate) struct TeardownArgs {
    /// The work directory (default: runs/latest).
    pub dir: Option<PathBuf>,
    /// No progress lines (errors, and the line that says it is torn down, still print).
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The work directory of a run or an experiment (default: runs/latest).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum PlanFormat {
    Table,
    Json,
    Yaml,
    Dot,
}

#[derive(Debug, Args)]
pub(crate) struct ShowPlanArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: PlanFormat,
    /// Graphviz output (same as -o dot).
    #[arg(long)]
    pub dot: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ArchiveArgs {
    pub dir: PathBuf,
    /// The archive to write (default: DIR.tar.gz next to DIR).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ReproduceArgs {
    /// A work directory or an archive made by `benchflow archive` (of a run's work directory,
    /// or of an experiment's directory with `--point`).
    pub source: PathBuf,
    /// The harness run to reproduce (`002` of `results/002/`): the stack's inputs with that
    /// run's own workload, harness and --sets (default: the work directory's latest inputs).
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Of an experiment's directory or archive: the point to reproduce (`p003`).
    #[arg(long, value_name = "ID")]
    pub point: Option<String>,
    /// The new work directory (default: runs/<run-id>).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Render everything into the new work directory, start nothing (by default into
    /// runs/dry-run/<run-id>; runs/latest is left where it was).
    #[arg(long)]
    pub dry_run: bool,
    /// Install a missing tool that benchflow installs (the vLLM router of a router stack)
    /// instead of refusing to start.
    #[arg(long)]
    pub install_missing: bool,
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// The namespace to clean.
    #[arg(short = 'n', long)]
    pub namespace: String,
    /// Only this run's objects (its run id); default: everything benchflow created there.
    #[arg(long)]
    pub run: Option<String>,
    /// The kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// The kubeconfig file.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// List what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The most bootstrap resamples `compare` draws (each is one pass over both samples).
pub(crate) const MAX_RESAMPLES: usize = 1_000_000;
/// The fewest: below, the interval's ends are a handful of resamples.
pub(crate) const MIN_RESAMPLES: usize = 100;

/// `--resamples`: a whole number from [`MIN_RESAMPLES`] to [`MAX_RESAMPLES`] (also written
/// `1e4`); outside, the message names the bounds.
fn resamples(s: &str) -> Result<usize, String> {
    let bounds = format!("from {MIN_RESAMPLES} to {MAX_RESAMPLES} (1,000,000)");
    let n: f64 = s.trim().parse().map_err(|_| format!("expected a whole number of resamples, {bounds}"))?;
    if !(n.fract() == 0.0 && (MIN_RESAMPLES as f64..=MAX_RESAMPLES as f64).contains(&n)) {
        return Err(format!("{s} resamples: must be a whole number {bounds}"));
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_is_the_namespace_wherever_a_cluster_is_named() {
        use clap::Parser as _;
        let parse = |args: &[&str]| Cli::try_parse_from([&["benchflow"], args].concat()).unwrap().command;
        let Command::E2e(e) = parse(&["e2e", "-n", "team-a"]) else { panic!("e2e") };
        assert!(e.plan.all_sets().contains(&"kubernetes.namespace=team-a".to_string()));
        let Command::Gc(g) = parse(&["gc", "-n", "team-b"]) else { panic!("gc") };
        assert_eq!(g.namespace, "team-b");
        let Command::Experiment(x) = parse(&["experiment", "-e", "rate-sweep", "-n", "team-c"]) else {
            panic!("experiment")
        };
        assert_eq!(x.all_sets(), ["kubernetes.namespace=team-c"]);
        // `completion` is `completions`.
        assert!(matches!(parse(&["completion", "bash"]), Command::Completions { .. }));
    }

    #[test]
    fn resamples_are_bounded_and_the_bounds_named() {
        assert_eq!(resamples("2000"), Ok(2000));
        assert_eq!(resamples("1e6"), Ok(MAX_RESAMPLES));
        assert_eq!(resamples("100"), Ok(100));
        for bad in ["1e12", "1000001", "99", "0", "-5", "nan", "inf", "2.5", "lots", "18446744073709551616"] {
            let e = resamples(bad).unwrap_err();
            assert!(e.contains("1000000"), "{bad}: {e}");
        }
    }
}
