//! Platforms: where a stack runs. Each one derives the values a pipeline's templates need
//! (`run.command`, `endpoint.url`, …) from the typed scenario.
//!
//! * [`local`]: processes on this machine (the built-in simulator, `vllm serve`) or an
//!   existing endpoint.
//! * [`kubernetes`]: vLLM on a cluster: derived names and labels, manifest templates, checks;
//!   [`kube`]: the client, port-forwards and the waits, through kube-rs; [`job`]: the harness
//!   as an Indexed Job (shards, results frames, merge); [`access`]: what the credentials may do.

pub(crate) mod access;
pub(crate) mod gateway_api;
pub(crate) mod job;
pub(crate) mod kube;
pub(crate) mod kubernetes;
pub(crate) mod local;

/// Facts about this run that templates may use (`run.*`).
#[derive(Debug, Clone)]
pub(crate) struct RunContext {
    pub id: String,
    pub workdir: std::path::PathBuf,
    /// The benchflow binary (spawns `benchflow sim`).
    pub bin: std::path::PathBuf,
    /// The local ports of the run's processes.
    pub ports: Ports,
}

/// The local ports of a run's processes (engines, a router), in the order the platform takes
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ports {
    /// Free ones, picked when the plan is made.
    Free,
    /// Those an earlier command of this work directory chose (so its done steps keep their
    /// hashes); free ones beyond them, and for a 0.
    Kept(Vec<u16>),
    /// 0 everywhere: planning, where nothing will listen.
    Placeholder,
}

impl Ports {
    /// The ports a resolved tree recorded (`run.ports`, or `run.port` alone), else free ones.
    pub(crate) fn recorded(values: Option<&serde_json::Value>) -> Ports {
        let run = values.and_then(|v| v.get("run"));
        let list: Vec<u16> = match run.and_then(|r| r.get("ports")).and_then(|p| p.as_array()) {
            Some(ports) => ports.iter().filter_map(|p| p.as_u64()).map(|p| p as u16).collect(),
            None => run
                .and_then(|r| r.get("port"))
                .and_then(|p| p.as_u64())
                .map(|p| p as u16)
                .into_iter()
                .collect(),
        };
        if list.iter().all(|p| *p == 0) { Ports::Free } else { Ports::Kept(list) }
    }

    /// `n` ports on `host`: kept ones first, then free ones (all distinct: the listeners that
    /// find them are held until all are found).
    pub(crate) fn take(&self, host: &str, n: usize) -> Result<Vec<u16>, String> {
        let kept: &[u16] = match self {
            Ports::Placeholder => return Ok(vec![0; n]),
            Ports::Free => &[],
            Ports::Kept(list) => list,
        };
        let mut held = Vec::new();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            match kept.get(i).copied().filter(|p| *p != 0) {
                Some(p) => out.push(p),
                None => {
                    let why = |e: std::io::Error| format!("no free port on {host}: {e}");
                    let l = std::net::TcpListener::bind((host, 0)).map_err(why)?;
                    out.push(l.local_addr().map_err(why)?.port());
                    held.push(l);
                }
            }
        }
        Ok(out)
    }
}
