//! The files shipped with benchflow, embedded so that `benchflow e2e` works from any directory.
//! A file of the same name in the current directory's `scenarios/`, `harnesses/`, `workloads/`
//! `pipelines/` or `experiments/` takes precedence.

const FILES: &[(&str, &str, &str)] = &[
    ("scenarios", "local-sim", include_str!("../../scenarios/local-sim.yaml")),
    ("scenarios", "local-vllm", include_str!("../../scenarios/local-vllm.yaml")),
    ("scenarios", "endpoint", include_str!("../../scenarios/endpoint.yaml")),
    ("scenarios", "kubernetes-standalone", include_str!("../../scenarios/kubernetes-standalone.yaml")),
    ("scenarios", "local-router", include_str!("../../scenarios/local-router.yaml")),
    ("scenarios", "kubernetes-router", include_str!("../../scenarios/kubernetes-router.yaml")),
    ("scenarios", "kubernetes-llm-d", include_str!("../../scenarios/kubernetes-llm-d.yaml")),
    ("harnesses", "builtin", include_str!("../../harnesses/builtin.yaml")),
    ("harnesses", "aiperf", include_str!("../../harnesses/aiperf.yaml")),
    ("harnesses", "vllm-bench", include_str!("../../harnesses/vllm-bench.yaml")),
    ("harnesses", "inference-perf", include_str!("../../harnesses/inference-perf.yaml")),
    ("harnesses", "guidellm", include_str!("../../harnesses/guidellm.yaml")),
    ("workloads", "sanity", include_str!("../../workloads/sanity.yaml")),
    ("workloads", "chat", include_str!("../../workloads/chat.yaml")),
    ("workloads", "multistage", include_str!("../../workloads/multistage.yaml")),
    ("workloads", "shared-prefix", include_str!("../../workloads/shared-prefix.yaml")),
    ("pipelines", "local", include_str!("../../pipelines/local.yaml")),
    ("pipelines", "endpoint", include_str!("../../pipelines/endpoint.yaml")),
    ("pipelines", "local-router", include_str!("../../pipelines/local-router.yaml")),
    ("pipelines", "kubernetes-router", include_str!("../../pipelines/kubernetes-router.yaml")),
    ("pipelines", "kubernetes-llm-d", include_str!("../../pipelines/kubernetes-llm-d.yaml")),
    ("pipelines", "kubernetes-standalone", include_str!("../../pipelines/kubernetes-standalone.yaml")),
    ("experiments", "rate-sweep", include_str!("../../experiments/rate-sweep.yaml")),
    ("experiments", "engine-flags", include_str!("../../experiments/engine-flags.yaml")),
    ("experiments", "max-rate", include_str!("../../experiments/max-rate.yaml")),
    ("experiments", "router-policies", include_str!("../../experiments/router-policies.yaml")),
];

/// The text of a shipped file.
pub(crate) fn get(dir: &str, name: &str) -> Option<&'static str> {
    let name = name.trim_end_matches(".yaml").trim_end_matches(".yml");
    FILES.iter().find(|(d, n, _)| *d == dir && *n == name).map(|(_, _, text)| *text)
}

/// The names of the shipped files in `dir`.
pub(crate) fn names(dir: &str) -> impl Iterator<Item = &'static str> {
    FILES.iter().filter(move |(d, _, _)| *d == dir).map(|(_, n, _)| *n)
}
