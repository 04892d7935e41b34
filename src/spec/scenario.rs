//! A scenario file (`scenarios/*.yaml`): where and what to deploy.
//!
//! ```yaml
//! description: the built-in simulator on this machine
//! platform: local
//! engine: { kind: sim, profile: tiny/cpu }
//! deploy: { method: router, replicas: 3, router: { policy: cache_aware } }   # default: standalone
//! timeouts: { ready: 60s }
//! ```

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::units::Secs;

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Scenario {
    /// Free text shown in plans and reports.
    #[serde(default)]
    pub description: Option<String>,
    /// Where the stack runs.
    #[serde(default)]
    pub platform: Platform,
    /// The pipeline (a name in `pipelines/` or a path); default: `local`, or `endpoint` for an
    /// existing endpoint.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// The model to serve (a Hugging Face id for vLLM); default: the simulator profile's model.
    #[serde(default)]
    pub model: Option<String>,
    /// What serves the model.
    #[serde(default)]
    pub engine: Engine,
    /// How the engines are put together: one alone, or replicas behind a router.
    #[serde(default)]
    pub deploy: Deploy,
    /// How long each kind of wait may take.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// The Kubernetes deployment (`platform: kubernetes`).
    #[serde(default)]
    pub kubernetes: Kubernetes,
    /// Free variables for custom pipelines and templates (`{{ vars.NAME }}`).
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

/// Where the stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Platform {
    /// Processes on this machine.
    #[default]
    Local,
    /// A Kubernetes or OpenShift cluster, through kube-rs.
    Kubernetes,
}

/// What serves the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Engine {
    /// `sim` (the built-in simulator), `vllm` (`vllm serve`), or `endpoint` (already running).
    pub kind: EngineKind,
    /// Simulator profile (see `benchflow sim --list-profiles`).
    pub profile: String,
    /// Extra command-line arguments: simulator flags (e.g. `--set`, `time_scale=0.5`) or
    /// `vllm serve` flags (e.g. `--max-model-len`, `4096`).
    pub args: Vec<String>,
    /// The URL of an existing OpenAI-compatible server (`kind: endpoint`).
    pub url: Option<String>,
    /// Address the engine listens on.
    pub host: String,
    /// Port the engine listens on; 0 picks a free one when the plan is made.
    pub port: u16,
    /// Environment for the engine process. Secrets are references: `HF_TOKEN: env:HF_TOKEN`.
    pub env: BTreeMap<String, String>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            kind: EngineKind::Sim,
            profile: "tiny/cpu".into(),
            args: Vec::new(),
            url: None,
            host: "127.0.0.1".into(),
            port: 0,
            env: BTreeMap::new(),
        }
    }
}

/// The engine kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EngineKind {
    /// `benchflow sim` as a child process.
    Sim,
    /// `vllm serve` as a child process (vLLM must be installed).
    Vllm,
    /// An existing server: no standup.
    Endpoint,
}

impl EngineKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EngineKind::Sim => "sim",
            EngineKind::Vllm => "vllm",
            EngineKind::Endpoint => "endpoint",
        }
    }
}

/// How the engines are put together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Deploy {
    /// `standalone` (one engine), `router` (`replicas` engines behind a router) or `llm-d`
    /// (engines behind llm-d's inference gateway).
    pub method: Method,
    /// Engines behind the router.
    pub replicas: u32,
    /// The router (`method: router`).
    pub router: Router,
    /// The inference gateway and its endpoint picker (`method: llm-d`).
    pub gateway: Gateway,
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            method: Method::Standalone,
            replicas: 1,
            router: Router::default(),
            gateway: Gateway::default(),
        }
    }
}

/// llm-d's inference gateway (`method: llm-d`): a Gateway API `Gateway` of an installed class,
/// an `HTTPRoute` to an `InferencePool` of the engines, and the pool's endpoint picker (EPP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Gateway {
    /// The `GatewayClass` (installed with its controller: `istio`, `kgateway`, `agentgateway`,
    /// `gke-l7-rilb`, …); preflight checks that it exists.
    pub class: String,
    /// The Service the gateway's controller creates for the Gateway, which the load targets;
    /// default `<gateway>-istio` for class `istio` (Istio's naming), else `<gateway>`.
    pub service: Option<String>,
    /// The Gateway's HTTP listener port (and its Service's).
    pub port: u16,
    /// The endpoint picker's image.
    pub epp_image: String,
    /// Extra arguments for the endpoint picker.
    pub epp_args: Vec<String>,
    /// The scorers of the picker's default profile and their weights (EndpointPickerConfig
    /// plugin types: `queue-scorer`, `kv-cache-utilization-scorer`, `prefix-cache-scorer`, …);
    /// a weight of 0 leaves a scorer out.
    pub scorers: BTreeMap<String, u32>,
    /// What the gateway does when the picker does not answer: `FailOpen` (picks an engine
    /// itself) or `FailClose` (refuses the request).
    pub failure_mode: FailureMode,
    /// The route's request timeout (long generations need a generous one).
    pub request_timeout: Secs,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            class: "istio".into(),
            service: None,
            port: 80,
            epp_image: "registry.k8s.io/gateway-api-inference-extension/epp:v1.3.0".into(),
            epp_args: Vec::new(),
            scorers: [("queue-scorer", 2), ("kv-cache-utilization-scorer", 2), ("prefix-cache-scorer", 3)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            failure_mode: FailureMode::FailOpen,
            request_timeout: Secs(300.0),
        }
    }
}

/// What a gateway does when the endpoint picker is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub(crate) enum FailureMode {
    FailOpen,
    FailClose,
}

impl FailureMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailureMode::FailOpen => "FailOpen",
            FailureMode::FailClose => "FailClose",
        }
    }
}

/// The deploy methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Method {
    /// One engine; the load goes straight to it.
    Standalone,
    /// `replicas` engines behind a router; the load goes to the router.
    Router,
    /// Engines behind llm-d's inference gateway and endpoint picker.
    LlmD,
}

/// The router of a router stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Router {
    /// `vllm-router` (the `vllm-router` package, installed by benchflow) or `production-stack`.
    pub kind: RouterKind,
    /// How it picks an engine for a request.
    pub policy: Policy,
    /// Extra command-line arguments for the router.
    pub args: Vec<String>,
    /// Port the router listens on; 0 picks a free one when the plan is made (on Kubernetes:
    /// 8000).
    pub port: u16,
    /// Kubernetes: the router's image. For `vllm-router` with `install`, a Python image in
    /// which the pinned `vllm-router` is installed when the pod starts (the cluster then needs
    /// PyPI; default `python:3.12-slim`); without, an image that has `vllm-router` on its PATH.
    /// For `production-stack`, its router's image (default `lmcache/lmstack-router:latest`, as
    /// its Helm chart: pin a tag for runs you will compare).
    pub image: Option<String>,
    /// Kubernetes, `vllm-router`: install the pinned `vllm-router` in the router's pod as it
    /// starts.
    pub install: bool,
}

impl Default for Router {
    fn default() -> Self {
        Router {
            kind: RouterKind::VllmRouter,
            policy: Policy::RoundRobin,
            args: Vec::new(),
            port: 0,
            image: None,
            install: true,
        }
    }
}

/// The routers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RouterKind {
    /// The vLLM router (`pip install vllm-router`).
    VllmRouter,
    /// The vLLM production stack's router (`lmcache/lmstack-router`; Kubernetes only: it is
    /// published as an image, not on PyPI).
    ProductionStack,
}

/// The vLLM router's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Policy {
    RoundRobin,
    Random,
    /// The less loaded of two engines picked at random.
    PowerOfTwo,
    /// By a hash of the session (affinity).
    ConsistentHash,
    /// To the engine whose cache most likely holds the prompt's prefix (an approximate tree of
    /// the prompts sent), else the least loaded.
    CacheAware,
    /// By the engines' reported KV-cache state.
    KvAware,
}

impl Policy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::Random => "random",
            Policy::PowerOfTwo => "power_of_two",
            Policy::ConsistentHash => "consistent_hash",
            Policy::CacheAware => "cache_aware",
            Policy::KvAware => "kv_aware",
        }
    }
}

/// How long each kind of wait may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Timeouts {
    /// Until the engine answers its readiness check.
    pub ready: Secs,
    /// For each smoke-test request.
    pub smoke: Secs,
    /// For a process to exit after SIGTERM before it is killed.
    pub stop: Secs,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { ready: Secs(300.0), smoke: Secs(60.0), stop: Secs(15.0) }
    }
}

/// Where and how vLLM runs on a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Kubernetes {
    /// Namespace; created if missing, and deleted at teardown only if benchflow created it.
    pub namespace: String,
    /// kubeconfig context; default: the current one (or the in-cluster config).
    pub context: Option<String>,
    /// kubeconfig file; default: `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<String>,
    /// The vLLM image.
    pub image: String,
    /// Pods (data-parallel replicas).
    pub replicas: u32,
    /// `nvidia.com/gpu` per pod (requests = limits); usually the tensor-parallel size.
    pub gpus: u32,
    /// GPU product for the node selector `nvidia.com/gpu.product` (e.g. NVIDIA-H100-80GB-HBM3).
    pub gpu_product: Option<String>,
    /// Tolerations, as Kubernetes writes them.
    pub tolerations: Vec<BTreeMap<String, String>>,
    /// CPU request and limit.
    pub cpu: String,
    /// Memory request and limit.
    pub memory: String,
    /// Size of the /dev/shm memory volume.
    pub shm_size: String,
    /// The model cache volume.
    pub pvc: Pvc,
    /// Download the model into the cache with a Job before vLLM starts.
    pub download: bool,
    /// The port vLLM listens on (and the Service exposes).
    pub port: u16,
    /// The DCGM exporter's Service for GPU telemetry, `NAMESPACE/SERVICE:PORT` (e.g.
    /// `gpu-operator/nvidia-dcgm-exporter:9400`); default: the exporter pods found by label on
    /// the engine's nodes.
    pub dcgm_exporter: Option<String>,
    /// A directory of manifest templates to use instead of the shipped ones (same file names:
    /// namespace.yaml, secret.yaml, pvc.yaml, download.yaml, deployment.yaml, service.yaml).
    pub templates: Option<String>,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            namespace: "benchflow".into(),
            context: None,
            kubeconfig: None,
            image: "vllm/vllm-openai:v0.11.0".into(),
            replicas: 1,
            gpus: 1,
            gpu_product: None,
            tolerations: vec![BTreeMap::from([
                ("key".to_string(), "nvidia.com/gpu".to_string()),
                ("operator".to_string(), "Exists".to_string()),
                ("effect".to_string(), "NoSchedule".to_string()),
            ])],
            cpu: "8".into(),
            memory: "32Gi".into(),
            shm_size: "20Gi".into(),
            pvc: Pvc::default(),
            download: false,
            port: 8000,
            dcgm_exporter: None,
            templates: None,
        }
    }
}

/// The model cache: an existing claim (`name`, never deleted) or a new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Pvc {
    /// An existing PersistentVolumeClaim to use; benchflow never deletes it.
    pub name: Option<String>,
    /// Storage class of a new claim; default: the cluster's default class.
    pub storage_class: Option<String>,
    /// Size of a new claim.
    pub size: String,
    /// Access mode of a new claim.
    pub access_mode: String,
}

impl Default for Pvc {
    fn default() -> Self {
        Pvc { name: None, storage_class: None, size: "100Gi".into(), access_mode: "ReadWriteOnce".into() }
    }
}
