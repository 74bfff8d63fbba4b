//! Proxy throughput and latency: the same Kubernetes requests, under the
//! same wrk loads, directly to a double and through kubeportal, nginx,
//! HAProxy and kubectl proxy, for two upstreams: a double serving plain
//! HTTP/1.1 and one serving TLS that offers HTTP/2.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::{bail, Result};
use reqwest::{Method, StatusCode};

use crate::callgrind::Instructions;
use crate::fixtures::{self, Seeded, LOG_NAMESPACE, NAMESPACE, POD};
use crate::processes::cpu_time;
use crate::wrk::{Load, Summary, Wrk};

/// How a request reaches the double.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Via {
    Direct = 0,
    Kubeportal = 1,
    Nginx = 2,
    HaProxy = 3,
    KubectlProxy = 4,
    /// `hyper-proxy`: the least a proxy on kubeportal's stack does, for
    /// telling the stack's cost from kubeportal's own.
    BareHyper = 5,
}

impl Via {
    /// In column order (each variant's discriminant is its index).
    pub const ALL: [Via; 6] = [
        Via::Direct,
        Via::Kubeportal,
        Via::Nginx,
        Via::HaProxy,
        Via::KubectlProxy,
        Via::BareHyper,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Kubeportal => "kubeportal",
            Via::Nginx => "nginx",
            Via::HaProxy => "HAProxy",
            Via::KubectlProxy => "kubectl proxy",
            Via::BareHyper => "bare hyper",
        }
    }

    /// The label as a file name: no spaces.
    pub fn slug(self) -> String {
        self.label().replace(' ', "-")
    }
}

/// The double a request ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Upstream {
    /// A double serving plain HTTP (HTTP/1.1 to every proxy).
    Plain,
    /// The double serving TLS, offering HTTP/2 by ALPN.
    Tls,
}

impl Upstream {
    pub fn label(self) -> &'static str {
        match self {
            Upstream::Plain => "(a) plain-HTTP/1.1 upstream",
            Upstream::Tls => "(b) TLS upstream offering HTTP/2",
        }
    }

    /// A short name for files and notes.
    pub fn name(self) -> &'static str {
        match self {
            Upstream::Plain => "plain",
            Upstream::Tls => "tls",
        }
    }

    /// The cluster kubeportal knows this double by.
    pub fn cluster(self) -> &'static str {
        match self {
            Upstream::Plain => fixtures::PLAIN_CLUSTER,
            Upstream::Tls => fixtures::CLUSTER,
        }
    }
}

/// Where to send Kubernetes paths for one [`Via`] to one [`Upstream`], and
/// with which headers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub upstream: Upstream,
    pub via: Via,
    /// Prepended to the Kubernetes path.
    pub prefix: String,
    pub headers: Vec<(String, String)>,
    /// The process that serves it (the double, or the proxy), whose CPU time
    /// is measured.
    pub pid: u32,
    /// What the upstream holds (for the sizes responses must have).
    pub seeded: Seeded,
}

impl Endpoint {
    pub fn direct(
        upstream: Upstream,
        seeded: Seeded,
        url: &str,
        token: &str,
        pid: u32,
    ) -> Endpoint {
        Endpoint {
            upstream,
            via: Via::Direct,
            prefix: url.to_owned(),
            headers: vec![("Authorization".into(), format!("Bearer {token}"))],
            pid,
            seeded,
        }
    }

    /// kubeportal's header form, for the upstream's cluster.
    pub fn kubeportal(upstream: Upstream, seeded: Seeded, url: &str, pid: u32) -> Endpoint {
        Endpoint {
            upstream,
            via: Via::Kubeportal,
            prefix: format!("{url}/api/kubernetes/proxy"),
            headers: fixtures::portal_headers_for(upstream.cluster()),
            pid,
            seeded,
        }
    }

    /// A proxy that adds the credential itself.
    pub fn plain(upstream: Upstream, seeded: Seeded, via: Via, url: &str, pid: u32) -> Endpoint {
        Endpoint {
            upstream,
            via,
            prefix: url.to_owned(),
            headers: Vec::new(),
            pid,
            seeded,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

/// One load on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// `GET` the small pod.
    GetPod { connections: u32 },
    /// `GET` the ~1 MiB pod list.
    ListPods { connections: u32 },
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [
        Scenario::GetPod { connections: 1 },
        Scenario::GetPod { connections: 64 },
        Scenario::ListPods { connections: 16 },
    ];

    pub fn path(self) -> String {
        match self {
            Scenario::GetPod { .. } => get_pod_path(),
            Scenario::ListPods { .. } => format!("/api/v1/namespaces/{NAMESPACE}/pods"),
        }
    }

    pub fn connections(self) -> u32 {
        match self {
            Scenario::GetPod { connections } | Scenario::ListPods { connections } => connections,
        }
    }
}

/// The small pod's path.
pub fn get_pod_path() -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/pods/{POD}")
}

impl fmt::Display for Scenario {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scenario::GetPod { connections } => write!(formatter, "GET pod, {connections} conn"),
            Scenario::ListPods { connections } => {
                write!(formatter, "LIST 1 MiB, {connections} conn")
            }
        }
    }
}

/// Every measured run of one upstream; an `Err` says why a run was not
/// measured.
pub struct UpstreamResults {
    pub upstream: Upstream,
    pub seeded: Seeded,
    pub runs: BTreeMap<(Scenario, Via), Result<Summary, String>>,
    /// Endpoints that could not be started or failed their check, and why.
    pub unavailable: BTreeMap<Via, String>,
    /// Instructions per request under callgrind, per proxy measured; an
    /// `Err` when none could be (valgrind missing).
    pub instructions: Result<BTreeMap<Via, Result<Instructions, String>>, String>,
}

impl UpstreamResults {
    pub fn get(&self, scenario: Scenario, via: Via) -> Result<&Summary, String> {
        if let Some(reason) = self.unavailable.get(&via) {
            return Err(reason.clone());
        }
        match self.runs.get(&(scenario, via)) {
            Some(Ok(summary)) => Ok(summary),
            Some(Err(reason)) => Err(reason.clone()),
            None => Err("not measured".into()),
        }
    }
}

/// Checks, before any load, that every endpoint of one upstream answers both
/// requests with exactly the bytes the double answers directly, and that
/// kubeportal's policy is on (it denies a delete). Returns the endpoints that
/// failed. `endpoints` starts with the direct one.
pub async fn check_endpoints(
    endpoints: &[&Endpoint],
    ca_pem: &str,
) -> Result<BTreeMap<Via, String>> {
    if endpoints.first().map(|endpoint| endpoint.via) != Some(Via::Direct) {
        bail!("the direct endpoint must come first");
    }
    let client = fixtures::double_client(ca_pem)?;
    let mut failures = BTreeMap::new();
    for path in [
        Scenario::GetPod { connections: 1 }.path(),
        Scenario::ListPods { connections: 1 }.path(),
    ] {
        let mut direct_body: Option<Vec<u8>> = None;
        for endpoint in endpoints {
            let problem = match fetch(&client, endpoint, Method::GET, &path).await {
                Err(error) => Some(format!("GET {path} failed: {error}")),
                Ok((status, _)) if !status.is_success() => Some(format!("GET {path}: {status}")),
                Ok((_, body)) => match &direct_body {
                    None => {
                        direct_body = Some(body);
                        None
                    }
                    Some(expected) if *expected == body => None,
                    Some(expected) => Some(format!(
                        "GET {path} answered {} bytes that differ from the direct {}",
                        body.len(),
                        expected.len()
                    )),
                },
            };
            if let Some(problem) = problem {
                failures.entry(endpoint.via).or_insert(problem);
            }
        }
    }
    if let Some(portal) = endpoints
        .iter()
        .find(|endpoint| endpoint.via == Via::Kubeportal)
    {
        let path = format!("/api/v1/namespaces/{LOG_NAMESPACE}/pods/not-there");
        match fetch(&client, portal, Method::DELETE, &path).await {
            Ok((StatusCode::FORBIDDEN, _)) => {}
            other => {
                failures.entry(Via::Kubeportal).or_insert(format!(
                    "the policy did not deny DELETE {path}: {:?}",
                    other.map(|(status, _)| status)
                ));
            }
        }
    }
    Ok(failures)
}

pub async fn fetch(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    method: Method,
    path: &str,
) -> reqwest::Result<(StatusCode, Vec<u8>)> {
    let mut request = client.request(method, endpoint.url(path));
    for (name, value) in &endpoint.headers {
        request = request.header(name, value);
    }
    let response = request.send().await?;
    let status = response.status();
    Ok((status, response.bytes().await?.to_vec()))
}

/// How a cell is measured: `rounds` runs of `duration`, each after a
/// `warm_up`, keeping the run with the most requests.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub rounds: usize,
    pub warm_up: Duration,
    pub duration: Duration,
}

/// Every run, by scenario, upstream and way.
pub type Cells = BTreeMap<(Scenario, Upstream, Via), Result<Summary, String>>;

/// Runs every scenario on every endpoint (of both upstreams) in rounds.
/// Within a round the endpoints take turns (in a rotated order each round),
/// so interference from other work on the machine is spread over all of
/// them; a cell keeps its best run, or the first failure if any run failed.
pub async fn measure(wrk: &Wrk, endpoints: &[Endpoint], schedule: Schedule) -> Cells {
    let mut cells = Cells::new();
    if endpoints.is_empty() {
        return cells;
    }
    for round in 0..schedule.rounds {
        eprintln!("  round {} of {}…", round + 1, schedule.rounds);
        for scenario in Scenario::ALL {
            for offset in 0..endpoints.len() {
                let endpoint = &endpoints[(offset + round) % endpoints.len()];
                let cell = (scenario, endpoint.upstream, endpoint.via);
                if matches!(cells.get(&cell), Some(Err(_))) {
                    continue;
                }
                let result = run_once(wrk, endpoint, scenario, schedule)
                    .await
                    .map_err(|error| format!("{error:#}"));
                match (result, cells.get(&cell)) {
                    (Err(error), _) => {
                        eprintln!(
                            "    {scenario} via {} ({}): failed: {error}",
                            endpoint.via.label(),
                            endpoint.upstream.name()
                        );
                        cells.insert(cell, Err(error));
                    }
                    (Ok(summary), Some(Ok(best))) if best.requests >= summary.requests => {}
                    (Ok(summary), _) => {
                        cells.insert(cell, Ok(summary));
                    }
                }
            }
        }
    }
    cells
}

/// One warm-up and one measured run, with the serving process's CPU time.
async fn run_once(
    wrk: &Wrk,
    endpoint: &Endpoint,
    scenario: Scenario,
    schedule: Schedule,
) -> Result<Summary> {
    let url = endpoint.url(&scenario.path());
    let load = |duration| Load {
        connections: scenario.connections(),
        duration,
    };
    let body_bytes = match scenario {
        Scenario::GetPod { .. } => endpoint.seeded.pod_bytes,
        Scenario::ListPods { .. } => endpoint.seeded.list_bytes,
    };
    wrk.run(&url, &endpoint.headers, load(schedule.warm_up))
        .await?;
    let cpu_before = cpu_time(endpoint.pid)?;
    let mut summary = wrk
        .run(&url, &endpoint.headers, load(schedule.duration))
        .await?;
    summary.server_cpu = Some(cpu_time(endpoint.pid)?.saturating_sub(cpu_before));
    check_sizes(&summary, body_bytes)?;
    Ok(summary)
}

/// Fails unless `summary` moved whole responses of the expected size.
fn check_sizes(summary: &Summary, body_bytes: usize) -> Result<()> {
    let per_response = summary.bytes as f64 / summary.requests.max(1) as f64;
    if per_response < body_bytes as f64 {
        bail!("{per_response:.0} bytes per response, expected at least {body_bytes}");
    }
    Ok(())
}
