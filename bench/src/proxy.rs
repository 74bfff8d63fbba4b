//! Proxy throughput and latency: the same Kubernetes requests, under the
//! same wrk loads, directly to the double and through kubeportal, kubectl
//! proxy and nginx.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::{bail, Result};
use reqwest::{Method, StatusCode};

use crate::fixtures::{self, Seeded, LOG_NAMESPACE, NAMESPACE, POD};
use crate::processes::cpu_time;
use crate::wrk::{Load, Summary, Wrk};

/// How a request reaches the double.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Via {
    Direct = 0,
    Kubeportal = 1,
    KubectlProxy = 2,
    Nginx = 3,
}

impl Via {
    /// In column order (each variant's discriminant is its index).
    pub const ALL: [Via; 4] = [Via::Direct, Via::Kubeportal, Via::KubectlProxy, Via::Nginx];

    pub fn label(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Kubeportal => "kubeportal",
            Via::KubectlProxy => "kubectl proxy",
            Via::Nginx => "nginx",
        }
    }
}

/// Where to send Kubernetes paths for one [`Via`], and with which headers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub via: Via,
    /// Prepended to the Kubernetes path.
    pub prefix: String,
    pub headers: Vec<(String, String)>,
    /// The process that serves it (the double, or the proxy), whose CPU time
    /// is measured.
    pub pid: u32,
}

impl Endpoint {
    pub fn direct(url: &str, token: &str, pid: u32) -> Endpoint {
        Endpoint {
            via: Via::Direct,
            prefix: url.to_owned(),
            headers: vec![("Authorization".into(), format!("Bearer {token}"))],
            pid,
        }
    }

    /// kubeportal's header form.
    pub fn kubeportal(url: &str, pid: u32) -> Endpoint {
        Endpoint {
            via: Via::Kubeportal,
            prefix: format!("{url}/api/kubernetes/proxy"),
            headers: fixtures::portal_headers(),
            pid,
        }
    }

    /// A proxy that adds the credential itself.
    pub fn plain(via: Via, url: &str, pid: u32) -> Endpoint {
        Endpoint {
            via,
            prefix: url.to_owned(),
            headers: Vec::new(),
            pid,
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
    pub const ALL: [Scenario; 4] = [
        Scenario::GetPod { connections: 1 },
        Scenario::GetPod { connections: 16 },
        Scenario::GetPod { connections: 64 },
        Scenario::ListPods { connections: 16 },
    ];

    pub fn path(self) -> String {
        match self {
            Scenario::GetPod { .. } => format!("/api/v1/namespaces/{NAMESPACE}/pods/{POD}"),
            Scenario::ListPods { .. } => format!("/api/v1/namespaces/{NAMESPACE}/pods"),
        }
    }

    pub fn connections(self) -> u32 {
        match self {
            Scenario::GetPod { connections } | Scenario::ListPods { connections } => connections,
        }
    }
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

/// Every measured run; an `Err` says why a run was not measured.
pub struct ProxyResults {
    pub seeded: Seeded,
    pub runs: BTreeMap<(Scenario, Via), Result<Summary, String>>,
    /// Endpoints that could not be started, and why.
    pub unavailable: BTreeMap<Via, String>,
}

impl ProxyResults {
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

/// Checks, before any load, that every endpoint answers both requests with
/// exactly the bytes the double answers directly, and that kubeportal's
/// policy is on (it denies a delete). Returns the endpoints that failed.
/// `endpoints` starts with the direct one.
pub async fn check_endpoints(
    endpoints: &[Endpoint],
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

async fn fetch(
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

/// Runs every scenario on every endpoint in rounds. Within a round the
/// endpoints take turns (in a rotated order each round), so interference from
/// other work on the machine is spread over all of them; a cell keeps its best
/// run, or the first failure if any run failed.
pub async fn measure(
    wrk: &Wrk,
    endpoints: &[Endpoint],
    seeded: Seeded,
    schedule: Schedule,
) -> BTreeMap<(Scenario, Via), Result<Summary, String>> {
    let mut cells: BTreeMap<(Scenario, Via), Result<Summary, String>> = BTreeMap::new();
    for round in 0..schedule.rounds {
        eprintln!("  round {} of {}…", round + 1, schedule.rounds);
        for scenario in Scenario::ALL {
            for offset in 0..endpoints.len() {
                let endpoint = &endpoints[(offset + round) % endpoints.len()];
                let cell = (scenario, endpoint.via);
                if matches!(cells.get(&cell), Some(Err(_))) {
                    continue;
                }
                let result = run_once(wrk, endpoint, scenario, seeded, schedule)
                    .await
                    .map_err(|error| format!("{error:#}"));
                match (result, cells.get(&cell)) {
                    (Err(error), _) => {
                        eprintln!(
                            "    {scenario} via {} failed: {error}",
                            endpoint.via.label()
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
    seeded: Seeded,
    schedule: Schedule,
) -> Result<Summary> {
    let url = endpoint.url(&scenario.path());
    let load = |duration| Load {
        connections: scenario.connections(),
        duration,
    };
    let body_bytes = match scenario {
        Scenario::GetPod { .. } => seeded.pod_bytes,
        Scenario::ListPods { .. } => seeded.list_bytes,
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
