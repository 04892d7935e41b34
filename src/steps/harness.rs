//! `harness`: the load generator runs the workload against the endpoint; records go to
//! `results/`. The built-in one by default; an external one (`kind: aiperf | inference-perf |
//! guidellm | vllm-bench`) installed by benchflow, run by [`crate::harnesses`]. A forced re-run
//! first moves earlier results aside (nothing is overwritten).

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::{Ctx, Done, Inputs, Step, StepError};
use crate::{
    harnesses, loadgen,
    platform::{job, kube, kubernetes},
    spec::{
        harness::{GpuSettings, GpuSource, HarnessKind, Placement},
        workload::Workload,
    },
    units::Secs,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Which load generator: `builtin` (default), `aiperf`, `inference-perf`, `guidellm`, `vllm-bench`.
    #[serde(default = "default_kind")]
    pub kind: HarnessKind,
    pub endpoint: String,
    /// The workload: by default the run's, resolved and validated once (filled in at plan time).
    #[serde(default)]
    pub workload: Option<Box<Workload>>,
    /// Relative dataset paths are resolved against this directory.
    pub workload_dir: PathBuf,
    #[serde(default = "default_scrape")]
    pub scrape_every: Secs,
    /// Whose `/metrics` to scrape (each engine behind a router); none: the endpoint's.
    #[serde(default)]
    pub scrape: Vec<loadgen::scrape::ScrapeTarget>,
    /// On Kubernetes: scrape each ready pod with these labels (the engines behind a router),
    /// on `scrape_port`, through a port-forward each, instead of the endpoint.
    #[serde(default)]
    pub scrape_pods: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub scrape_port: Option<u16>,
    /// GPU telemetry while the load runs.
    #[serde(default)]
    pub gpu: GpuSettings,
    /// With a DCGM exporter that attributes GPUs to pods: keep the GPUs of this namespace's.
    #[serde(default)]
    pub gpu_namespace: Option<String>,
    /// The DCGM exporter the scenario names (used when the harness names none).
    #[serde(default)]
    pub gpu_exporter: Option<String>,
    /// The engine's pod labels: on Kubernetes, the DCGM exporters on their nodes are found by
    /// label when no exporter is named.
    #[serde(default)]
    pub gpu_pods: Option<std::collections::BTreeMap<String, String>>,
    /// The cluster, for a `k8s://` endpoint.
    #[serde(default)]
    pub cluster: crate::platform::kube::Target,
    /// `cluster`: run as an Indexed Job of `parallelism` pods (Kubernetes only).
    #[serde(default = "default_placement")]
    pub placement: Placement,
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
    #[serde(default)]
    pub image: Option<String>,
    /// The Service's in-cluster URL, for harness pods.
    #[serde(default)]
    pub service_url: Option<String>,
    #[serde(default)]
    pub run_label: Option<String>,
}

fn default_kind() -> HarnessKind {
    HarnessKind::Builtin
}

fn default_placement() -> Placement {
    Placement::Local
}

fn default_parallelism() -> u32 {
    1
}

fn default_scrape() -> Secs {
    Secs(2.0)
}

impl Step for Args {
    fn compile(&mut self, inputs: &Inputs) -> Result<(), String> {
        let in_cluster = kube::parse_endpoint(&self.endpoint).is_some() && self.gpu_pods.is_some();
        if self.gpu.source == GpuSource::Dcgm && self.named_exporter().is_none() && !in_cluster {
            return Err("gpu.source `dcgm` needs gpu.exporter (http://HOST:9400, or \
                        k8s://NAMESPACE/SERVICE:PORT such as k8s://gpu-operator/nvidia-dcgm-exporter:9400)"
                .into());
        }
        if let Some(url) = &self.gpu.exporter {
            crate::platform::local::check_url(url).map_err(|e| format!("gpu.exporter: {e}"))?;
        }
        if self.workload.is_none() {
            let workload = inputs.workload.ok_or("the run has no workload to give the harness")?;
            self.workload = Some(Box::new(workload.clone()));
        }
        if self.kind != HarnessKind::Builtin
            && let Some(w) = self.workload.as_deref()
        {
            harnesses::check(self.kind, w)?;
            harnesses::check_prompts(self.kind, w, &self.workload_dir)?;
        }
        Ok(())
    }

    fn reads(&self) -> Vec<PathBuf> {
        let Some(workload) = self.workload.as_deref() else { return Vec::new() };
        crate::datasets::file(&workload.dataset, &self.workload_dir).into_iter().collect()
    }

    fn check(&self, install_missing: bool) -> Result<(), String> {
        match harnesses::tool(self.kind) {
            // In the cluster the pods install it (or their image has it), not this machine.
            Some(tool) if self.placement == Placement::Local => super::tool::ready(tool, install_missing),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> Vec<String> {
        let Some(workload) = self.workload.as_deref() else {
            return vec![format!("built-in load generator against {}: the run's workload", self.endpoint)];
        };
        let stages: Vec<String> = workload
            .stages
            .iter()
            .map(|s| {
                let until = match (s.duration, s.requests) {
                    (Some(d), _) => format!("{} s", d.0),
                    (None, Some(n)) => format!("{n} requests"),
                    (None, None) => String::new(),
                };
                format!("{} for {until}", s.label())
            })
            .collect();
        let place = match self.placement {
            Placement::Local => String::new(),
            Placement::Cluster => format!(" in {} harness pod(s)", self.parallelism),
        };
        let generator = match (harnesses::tool(self.kind), self.placement) {
            (Some(t), Placement::Local) => format!("{} {} (installed by benchflow)", t.name, t.version),
            (Some(t), Placement::Cluster) => {
                format!("{} {} (installed in the pods by benchflow)", t.name, t.version)
            }
            (None, _) => "built-in load generator".to_string(),
        };
        vec![format!("{generator}{place} against {}: {}", self.endpoint, stages.join("; "))]
    }

    async fn run(self, ctx: &Ctx) -> Result<Done, StepError> {
        let (run, inputs) = ctx.new_run()?;
        let results = run.results;
        ctx.note(&format!("# records go to {}", results.display()));
        if let Some(i) = &inputs {
            ctx.note(&format!(
                "# run {}: workload {} (sha256 {}), harness {}; inputs in {}/inputs/",
                i.run,
                i.workload.name,
                i.workload.sha256,
                i.harness.name,
                results.display()
            ));
        }
        ctx.note(&format!("# {}", self.describe().join("\n# ")));
        if self.placement == Placement::Cluster {
            return self.in_cluster(ctx, &results, inputs).await;
        }
        let tool = match harnesses::tool(self.kind) {
            Some(tool) => Some(super::tool::ensure(tool, ctx).await?),
            None => None,
        };
        let (endpoint, _forward) = crate::platform::kube::local_url(&self.endpoint, &self.cluster)
            .await
            .map_err(StepError::Failed)?;
        let (gpu, _gpu_forward) = self.gpu_sampler(ctx).await?;
        let (scrape, _scrape_forwards) = self.scrape_targets(ctx).await?;
        let opts = loadgen::Options {
            endpoint,
            workload: self.workload()?.clone(),
            base_dir: self.workload_dir,
            results_dir: results,
            quiet: ctx.quiet,
            scrape_every: Duration::from_secs_f64(self.scrape_every.0.max(0.1)),
            scrape,
            gpu,
            inputs,
        };
        let info = match tool {
            None => loadgen::run(opts, ctx.cancelled()).await.map_err(fail)?,
            Some(tool) => {
                let say = |m: String| ctx.progress(m);
                harnesses::run(self.kind, &tool.bin, opts, ctx.cancelled(), &say).await.map_err(fail)?
            }
        };
        let summary = format!(
            "{} requests ({} failed) against {}, model {}",
            info.records, info.failed, info.endpoint, info.model
        );
        ctx.note(&format!("# {summary}"));
        if let Some(g) = &info.gpu {
            ctx.note(&format!("# GPU telemetry: {g}"));
            if g.starts_with("no NVIDIA driver") || g.contains("no sample") {
                ctx.progress(format!("GPU telemetry: {g}"));
            }
        }
        if let Some(e) = &info.server_metrics_error {
            ctx.progress(format!(
                "the server's /metrics could not always be read ({e}; {} scrapes succeeded): server-side \
                 charts may be missing",
                info.server_metrics_scrapes
            ));
        }
        if info.interrupted {
            return Err(StepError::Interrupted(format!("{summary}; the records so far are kept")));
        }
        Ok(Done::with_summary(summary))
    }
}

impl Args {
    /// Whose `/metrics` to scrape: as given, or on Kubernetes each ready engine pod (named by
    /// pod) through a port-forward of its own, kept while the load runs.
    async fn scrape_targets(
        &self,
        ctx: &Ctx,
    ) -> Result<(Vec<loadgen::scrape::ScrapeTarget>, Vec<kube::Forward>), StepError> {
        let (Some(labels), Some((ns, _, _))) = (&self.scrape_pods, kube::parse_endpoint(&self.endpoint))
        else {
            return Ok((self.scrape.clone(), Vec::new()));
        };
        let port = self.scrape_port.unwrap_or(8000);
        let client = self.cluster.client().await.map_err(fail)?;
        let pods = kube::ready_pods(&client, &ns, labels).await.map_err(fail)?;
        let (mut targets, mut forwards) = (Vec::new(), Vec::new());
        for pod in pods {
            let f = kube::forward_pod(&client, &ns, &pod, port).await.map_err(fail)?;
            ctx.note(&format!("# /metrics of pod {pod} scraped through {}", f.url));
            targets.push(loadgen::scrape::ScrapeTarget { name: pod, url: f.url.clone() });
            forwards.push(f);
        }
        Ok((targets, forwards))
    }

    /// The DCGM exporter the harness names, else the one the scenario names.
    fn named_exporter(&self) -> Option<String> {
        self.gpu.exporter.clone().or_else(|| self.gpu_exporter.clone().filter(|e| !e.is_empty()))
    }

    /// Whether the endpoint is on this machine (a loopback address or `localhost`).
    fn endpoint_is_local(&self) -> bool {
        crate::net::Url::parse(&self.endpoint).is_ok_and(|u| {
            u.host == "localhost" || u.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        })
    }

    /// Where GPU telemetry comes from (`auto`: a named exporter; else NVML for an engine on this
    /// machine; else, on Kubernetes, the DCGM exporters found on the engine's nodes), and the
    /// port-forwards to exporters in a cluster (kept while sampling).
    async fn gpu_sampler(
        &self,
        ctx: &Ctx,
    ) -> Result<(Option<(loadgen::gpu::Sampler, Duration)>, Vec<kube::Forward>), StepError> {
        let local = self.endpoint_is_local();
        let in_cluster = kube::parse_endpoint(&self.endpoint);
        let every = Duration::from_secs_f64(self.gpu.every.0.max(0.1));
        let named = self.named_exporter();
        let nvml = || Ok((Some((loadgen::gpu::Sampler::Nvml, every)), Vec::new()));
        let urls: Vec<(String, Option<kube::Forward>)> = match (self.gpu.source, named) {
            (GpuSource::None, _) => return Ok((None, Vec::new())),
            (GpuSource::Nvml, _) => return nvml(),
            (_, Some(exporter)) => {
                let exporter = match exporter.starts_with("http") || exporter.starts_with("k8s://") {
                    true => exporter,
                    false => format!("k8s://{exporter}"),
                };
                let (url, forward) = crate::platform::kube::local_url(&exporter, &self.cluster)
                    .await
                    .map_err(StepError::Failed)?;
                ctx.note(&format!("# GPU telemetry from the DCGM exporter {exporter} (as {url})"));
                vec![(url, forward)]
            }
            (GpuSource::Auto, None) if local => return nvml(),
            (_, None) => match (&in_cluster, &self.gpu_pods) {
                (Some((ns, _, _)), Some(labels)) => {
                    // GPU telemetry is an extra: a cluster that will not say where its
                    // exporters are costs the telemetry, not the run.
                    let client = self.cluster.client().await.map_err(fail)?;
                    let found = match kube::dcgm_exporters(&client, ns, labels).await {
                        Ok(found) => found,
                        Err(e) => {
                            ctx.progress(format!(
                                "GPU telemetry: could not look for DCGM exporters ({e}): none"
                            ));
                            return Ok((None, Vec::new()));
                        }
                    };
                    if found.is_empty() {
                        ctx.progress(format!(
                            "GPU telemetry: no ready DCGM exporter on the engine's nodes (looked for pods labelled {}); \
                             name one with gpu.exporter, or set gpu.source: none",
                            kube::DCGM_EXPORTER_LABELS.join(" or ")
                        ));
                        return Ok((None, Vec::new()));
                    }
                    let mut urls = Vec::new();
                    for (pns, pod) in found {
                        let f = match kube::forward_pod(&client, &pns, &pod, 9400).await {
                            Ok(f) => f,
                            Err(e) => {
                                ctx.progress(format!("GPU telemetry: no port-forward to {pns}/{pod} ({e})"));
                                continue;
                            }
                        };
                        ctx.note(&format!(
                            "# GPU telemetry from the DCGM exporter pod {pns}/{pod}:9400 (as {})",
                            f.url
                        ));
                        urls.push((f.url.clone(), Some(f)));
                    }
                    if urls.is_empty() {
                        return Ok((None, Vec::new()));
                    }
                    urls
                }
                _ if self.gpu.source == GpuSource::Dcgm => {
                    return Err(fail("gpu.source `dcgm` needs gpu.exporter"));
                }
                _ => return Ok((None, Vec::new())),
            },
        };
        let mut targets = Vec::new();
        let mut forwards = Vec::new();
        for (url, forward) in urls {
            let (target, _) =
                loadgen::target(&url, "/metrics", false, Default::default(), &Default::default())
                    .await
                    .map_err(|e| fail(format!("DCGM exporter {url}: {e}")))?;
            targets.push(target);
            forwards.extend(forward);
        }
        let namespace = self.gpu_namespace.clone();
        Ok((Some((loadgen::gpu::Sampler::Dcgm { targets, namespace }, every)), forwards))
    }

    /// The workload (there once compiled).
    fn workload(&self) -> Result<&Workload, StepError> {
        self.workload.as_deref().ok_or_else(|| fail("the harness step has no workload"))
    }
}

fn fail(e: impl std::fmt::Display) -> StepError {
    StepError::Failed(e.to_string())
}

/// The observations taken from this machine while harness pods run in the cluster: the
/// engine pods' `/metrics` and GPU samples, timed from the Job's start.
struct Observers {
    wall0: f64,
    dir: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    scraper: Option<tokio::task::JoinHandle<(u64, Option<String>)>>,
    sampler: Option<tokio::task::JoinHandle<loadgen::gpu::Outcome>>,
    _forwards: Vec<kube::Forward>,
}

/// What they recorded.
struct Observed {
    wall0: f64,
    dir: PathBuf,
    scrapes: Option<(u64, Option<String>)>,
    gpu: Option<loadgen::gpu::Outcome>,
}

impl Observers {
    async fn start(args: &Args, ctx: &Ctx, results: &std::path::Path) -> Result<Observers, StepError> {
        let (scrape, mut forwards) = args.scrape_targets(ctx).await?;
        let (gpu, gpu_forwards) = args.gpu_sampler(ctx).await?;
        forwards.extend(gpu_forwards);
        let dir = results.join("observed");
        std::fs::create_dir_all(&dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        let wall0 = crate::workdir::parse_utc(&crate::workdir::utc_now()).unwrap_or(0.0);
        let t0 = std::time::Instant::now();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let tls = &args.workload()?.api.tls;
        let mut targets = Vec::new();
        for t in &scrape {
            let (at, _) =
                loadgen::target(&t.url, "/metrics", false, Default::default(), tls).await.map_err(fail)?;
            targets.push((t.name.clone(), at));
        }
        let every = Duration::from_secs_f64(args.scrape_every.0.max(0.1));
        let scraper = (!targets.is_empty()).then(|| {
            let (first, _) = tokio::sync::oneshot::channel();
            let path = dir.join("server_metrics.csv");
            tokio::spawn(loadgen::scrape::run(targets, path, t0, every, stop_rx.clone(), first))
        });
        let sampler = gpu.map(|(sampler, every)| {
            tokio::spawn(loadgen::gpu::run(sampler, dir.join("gpu.csv"), t0, every, stop_rx.clone()))
        });
        Ok(Observers { wall0, dir, stop, scraper, sampler, _forwards: forwards })
    }

    /// Stops them (one last scrape round: the counters' totals) and waits for them.
    async fn finish(self) -> Observed {
        let _ = self.stop.send(true);
        let scrapes = match self.scraper {
            Some(s) => Some(s.await.unwrap_or((0, Some("the scraper task failed".into())))),
            None => None,
        };
        let gpu = match self.sampler {
            Some(s) => Some(s.await.unwrap_or_default()),
            None => None,
        };
        Observed { wall0: self.wall0, dir: self.dir, scrapes, gpu }
    }
}

impl Observed {
    /// Puts the observations on the merged records' time axis (the earliest pod's start) in
    /// `results/`, in place of what the pods scraped, and says so in `run.json`.
    fn apply(
        self,
        ctx: &Ctx,
        results: &std::path::Path,
        info: &mut crate::results::RunInfo,
    ) -> Result<(), String> {
        let offset = crate::workdir::parse_utc(&info.started_at).map_or(0.0, |start| start - self.wall0);
        if let Some((n, err)) = self.scrapes
            && n > 0
        {
            let rows = job::shift_times(
                &self.dir.join("server_metrics.csv"),
                &results.join("server_metrics.csv"),
                offset,
            )
            .map_err(|e| format!("server metrics: {e}"))?;
            ctx.note(&format!("# the engine pods' /metrics: {n} rounds, {rows} rows, from this machine"));
            info.server_metrics_scrapes = n;
            info.server_metrics_error = err;
        }
        if let Some(g) = self.gpu {
            if g.samples > 0 {
                job::shift_times(&self.dir.join("gpu.csv"), &results.join("gpu.csv"), offset)
                    .map_err(|e| format!("GPU samples: {e}"))?;
            }
            info.gpu = Some(format!("{} ({} samples)", g.note, g.samples));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::write(results.join("run.json"), serde_json::to_vec_pretty(info).unwrap_or_default())
            .map_err(|e| format!("run.json: {e}"))
    }
}

impl Args {
    /// What the harness pods need beside their shards: a file dataset (the shards pointed at
    /// its ConfigMap key), and for an external tool, a harness file that runs it in the pod.
    fn pod_extras(&self, shards: &mut [Workload]) -> Result<job::Extras, StepError> {
        let mut extras = job::Extras {
            dataset: job::ship_dataset(shards, &self.workload_dir).map_err(fail)?,
            ..job::Extras::default()
        };
        if self.kind != HarnessKind::Builtin {
            // The pod's own run of the tool: there, it is local to the pod. No GPU there.
            extras.harness = Some(format!(
                "kind: {}\nplacement: local\nscrape_every: {}s\ngpu: {{ source: none }}\n",
                self.kind.as_str(),
                self.scrape_every.0
            ));
        }
        Ok(extras)
    }

    /// The load as an Indexed Job: shards in a ConfigMap, N pods, results collected from their
    /// logs (checksummed), merged; the Job and ConfigMap are deleted whatever happens.
    async fn in_cluster(
        &self,
        ctx: &Ctx,
        results: &std::path::Path,
        inputs: Option<crate::workdir::inputs::RunInputs>,
    ) -> Result<Done, StepError> {
        let (ns, svc, _) = kube::parse_endpoint(&self.endpoint).ok_or_else(|| {
            fail("`placement: cluster` needs a Kubernetes endpoint (k8s://NAMESPACE/SERVICE:PORT)")
        })?;
        let url = self.service_url.clone().ok_or_else(|| fail("`placement: cluster` needs `service_url`"))?;
        let image = self.image.clone().ok_or_else(|| fail("`placement: cluster` needs `image`"))?;
        let mut shards = job::shard(self.workload()?, self.parallelism.max(1)).map_err(fail)?;
        let extras = self.pod_extras(&mut shards)?;
        let name = format!("{}-load", svc.chars().take(50).collect::<String>());
        let run_label = self.run_label.clone().unwrap_or_default();
        let labels = serde_json::json!({ kubernetes::RUN_LABEL: run_label, "app.kubernetes.io/name": "benchflow-harness" });
        let (mut cm, mut jobm) =
            job::manifests(&name, &ns, &image, &url, &shards, &labels, &extras).map_err(fail)?;
        kubernetes::label(&mut cm, &run_label, &ctx.step);
        kubernetes::label(&mut jobm, &run_label, &ctx.step);
        let _ = std::fs::write(
            ctx.workdir.join(format!("plan/steps/{}.job.json", ctx.step)),
            serde_json::to_vec_pretty(&serde_json::json!([cm, jobm])).unwrap_or_default(),
        );
        let client = self.cluster.client().await.map_err(fail)?;
        let refs = [kube::ObjectRef::of(&jobm), kube::ObjectRef::of(&cm)];
        // The engines' /metrics (each pod, through a port-forward) and GPU samples are taken
        // from here while the pods send the load, as for a local harness.
        let watch = Observers::start(self, ctx, results).await?;
        let outcome = async {
            kube::apply(&client, &cm).await.map_err(fail)?;
            kube::apply(&client, &jobm).await.map_err(fail)?;
            ctx.note(&format!("# applied ConfigMap/{name} and Job/{name} ({} pods)", shards.len()));
            let planned: f64 = self.workload()?.stages.iter().filter_map(|s| s.duration.map(|d| d.0)).sum();
            let limit = std::time::Duration::from_secs_f64(planned + 600.0);
            let verdict = tokio::select! {
                v = kube::await_job(&client, &ns, &name) => v,
                _ = tokio::time::sleep(limit) => Err(format!("not finished within {} s", limit.as_secs())),
                _ = ctx.cancelled() => return Err(StepError::Cancelled),
            };
            if let Err(why) = &verdict {
                ctx.note(&format!("# Job/{name}: {why}; collecting what the pods printed"));
            }
            let pods = kube::job_pods(&client, &ns, &name).await;
            let mut dirs = Vec::new();
            let mut sums = Vec::new();
            for (i, pod) in pods.iter().enumerate() {
                let log = kube::pod_log(&client, &ns, pod).await.map_err(fail)?;
                let dest = results.join(format!("shard-{i}"));
                let sum = job::unpack(&log, &dest).map_err(|e| {
                    // What the pod said last (a tool that could not be installed, a crash).
                    let tail: Vec<&str> = log.lines().rev().take(12).collect();
                    let quoted: Vec<String> = tail.into_iter().rev().map(|l| format!("    | {l}")).collect();
                    fail(format!("pod {pod}: {e}; the end of its log:\n{}", quoted.join("\n")))
                })?;
                ctx.note(&format!("# pod {pod}: results verified (sha256 {sum})"));
                sums.push(serde_json::json!({"pod": pod, "sha256": sum}));
                dirs.push(dest.join("results"));
            }
            if dirs.len() != shards.len() {
                return Err(fail(format!("{} of {} harness pods left results", dirs.len(), shards.len())));
            }
            let _ = std::fs::write(
                results.join("shards.json"),
                serde_json::to_vec_pretty(&sums).unwrap_or_default(),
            );
            let info = job::merge(results, &dirs).map_err(fail)?;
            verdict.map_err(|why| fail(format!("Job/{name}: {why}")))?;
            Ok(info)
        }
        .await;
        let observed = watch.finish().await;
        for r in &refs {
            if let Err(e) = kube::delete(&client, r, std::time::Duration::from_secs(120)).await {
                ctx.note(&format!("# could not delete {r}: {e}"));
            }
        }
        let mut info = outcome?;
        info.inputs = inputs;
        info.ended_at = Some(crate::workdir::utc_now());
        observed.apply(ctx, results, &mut info).map_err(fail)?;
        let summary = format!(
            "{} requests ({} failed) from {} pods against {}, model {}",
            info.records,
            info.failed,
            shards.len(),
            url,
            info.model
        );
        ctx.note(&format!("# {summary}"));
        Ok(Done::with_summary(summary))
    }
}
