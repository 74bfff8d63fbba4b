//! Tenant views: a list of every pod in the cluster through kubeportal for a
//! caller granted only some namespaces (filtered object by object as it
//! streams), beside the same list for a caller granted everything (the
//! unfiltered proxy) and straight from the cluster; and kubeportal's peak
//! memory while it filters several such lists at once.
//!
//! The cluster is a test double of its own, holding only these pods, so that
//! the lists hold exactly what was seeded.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::fixtures;
use crate::processes::{cpu_time, status_kib, Binaries, DoubleProcess, PortalProcess};
use crate::proxy::Schedule;
use crate::wrk::{Load, Summary, Wrk};

/// Pods in the cluster, half of them team a's.
pub const PODS: usize = 20_000;
/// Namespaces per team: `team-a-0..9` and `team-b-0..9`.
const NAMESPACES_PER_TEAM: usize = 10;
/// The name kubeportal knows this cluster by.
const CLUSTER: &str = "tenants";
const ADMIN_TOKEN: &str = "bench-admin-token";
const TENANT_TOKEN: &str = "bench-tenant-token";
/// The list across namespaces.
const LIST_PATH: &str = "/api/v1/pods";
/// wrk connections for the throughput rows.
pub const CONNECTIONS: u32 = 4;
/// Lists one fresh kubeportal serves at once for the memory rows.
pub const CONCURRENT_LISTS: usize = 8;
/// The shortest measured run: a list takes a good part of a second, and a
/// run of a few seconds would hold only a few.
const MIN_DURATION: Duration = Duration::from_secs(8);
/// Pod creations in flight while seeding.
const SEEDING_IN_FLIGHT: usize = 32;

/// The team and namespace of pod `index`: teams alternate, and each team's
/// pods are spread evenly over its namespaces.
fn placement(index: usize) -> (char, String) {
    let team = if index % 2 == 0 { 'a' } else { 'b' };
    let namespace = format!("team-{team}-{}", (index / 2) % NAMESPACES_PER_TEAM);
    (team, namespace)
}

fn pod_name(index: usize) -> String {
    format!("pod-{index:05}")
}

/// A running pod of about 500 bytes as the double serves it in a list.
fn small_pod(name: &str, namespace: &str, team: char) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "shop-api",
                "tenant": team.to_string(),
            },
        },
        "spec": {
            "containers": [{
                "name": "api",
                "image": "ghcr.io/example/shop-api:1.4.2",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }],
            "serviceAccountName": "shop-api",
            "nodeName": "worker-3",
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.3.17",
        },
    })
}

/// kubeportal's configuration: an admin token granted the whole cluster and
/// a tenant token granted reads in team a's namespaces.
fn portal_config(cluster: Value) -> Value {
    json!({
        "auth": {
            "guest": false,
            "staticTokens": [
                {"token": ADMIN_TOKEN, "subject": "user:default/admin"},
                {"token": TENANT_TOKEN, "subject": "user:default/tenant"},
            ],
        },
        "permissions": {
            "rules": [
                {
                    "permission": "kubernetes.proxy",
                    "subjects": ["user:default/admin"],
                    "decision": "allow",
                },
                {
                    "permission": "kubernetes.proxy",
                    "subjects": ["user:default/tenant"],
                    "namespaces": ["team-a-*"],
                    "verbs": ["get", "list", "watch"],
                    "decision": "allow",
                },
            ],
        },
        "kubernetes": {"clusters": [cluster]},
    })
}

/// One way of asking for the list, measured under the same load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Straight from the double with its token.
    Direct = 0,
    /// Through kubeportal with the admin token: the unfiltered proxy.
    Unfiltered = 1,
    /// Through kubeportal with the tenant token: filtered to team a.
    Filtered = 2,
}

impl Way {
    const ALL: [Way; 3] = [Way::Direct, Way::Unfiltered, Way::Filtered];

    pub fn label(self) -> &'static str {
        match self {
            Way::Direct => "direct",
            Way::Unfiltered => "kubeportal, admin (unfiltered)",
            Way::Filtered => "kubeportal, tenant (filtered)",
        }
    }
}

/// Peak memory of a fresh kubeportal serving [`CONCURRENT_LISTS`] lists at once.
#[derive(Debug, Clone)]
pub struct ListMemory {
    /// Resident set after start-up and one proxied request.
    pub baseline_kib: u64,
    /// VmHWM once every list was read to its end.
    pub peak_kib: u64,
    pub elapsed: Duration,
}

/// What the scenario measured.
pub struct TenantResult {
    pub pods: usize,
    pub team_a_pods: usize,
    pub namespaces: usize,
    /// The list as the double serves it (and kubeportal to the admin).
    pub list_bytes: usize,
    /// The list kubeportal serves the tenant.
    pub filtered_bytes: usize,
    /// Best wrk run of each [`Way`], or why it was not measured.
    pub runs: [Result<Summary, String>; 3],
    /// Fresh processes, filtered (tenant) and unfiltered (admin) lists.
    pub memory_filtered: Result<ListMemory, String>,
    pub memory_unfiltered: Result<ListMemory, String>,
}

impl TenantResult {
    pub fn run(&self, way: Way) -> Result<&Summary, String> {
        self.runs[way as usize].as_ref().map_err(Clone::clone)
    }

    /// The body of one response of `way`.
    fn body_bytes(&self, way: Way) -> usize {
        match way {
            Way::Direct | Way::Unfiltered => self.list_bytes,
            Way::Filtered => self.filtered_bytes,
        }
    }

    /// Lists read in the measured run, counting the part of those still in
    /// flight at its end (wrk counts every byte read; headers are a few
    /// hundred bytes of megabytes).
    fn lists(&self, way: Way, summary: &Summary) -> f64 {
        summary.bytes as f64 / self.body_bytes(way) as f64
    }

    /// Lists per second, from the bytes read (see [`Self::lists`]).
    pub fn lists_per_second(&self, way: Way) -> Option<f64> {
        let summary = self.run(way).ok()?;
        Some(self.lists(way, summary) / (summary.duration_us as f64 / 1e6))
    }

    /// The serving process's CPU time per list.
    pub fn cpu_per_list(&self, way: Way) -> Option<Duration> {
        let summary = self.run(way).ok()?;
        let lists = self.lists(way, summary);
        (lists > 0.0).then(|| summary.server_cpu.map(|cpu| cpu.div_f64(lists)))?
    }
}

/// Seeds a double of its own, checks the filter once, then measures.
pub async fn measure(
    binaries: &Binaries,
    dir: &Path,
    wrk: &Wrk,
    schedule: Schedule,
) -> Result<TenantResult> {
    // Its own directory: the double's CA file and log have fixed names.
    let dir = dir.join("tenants");
    std::fs::create_dir_all(&dir)?;
    let double = DoubleProcess::start(binaries, &dir, &[]).await?;
    let ca_pem = std::fs::read_to_string(&double.ca_file)?;
    let client = fixtures::double_client(&ca_pem)?;
    eprintln!(
        "  seeding {PODS} pods in {} namespaces…",
        2 * NAMESPACES_PER_TEAM
    );
    let seeding = Instant::now();
    // HTTP/1.1, a connection per creation in flight: tens of thousands of
    // streams on one HTTP/2 connection trip the double's reset protection.
    let seeding_client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
        .http1_only()
        .timeout(Duration::from_secs(60))
        .build()?;
    seed(&seeding_client, &double).await?;
    eprintln!("  seeded in {:.1} s", seeding.elapsed().as_secs_f64());
    let config = portal_config(fixtures::cluster_entry(
        CLUSTER,
        &double.url,
        &ca_pem,
        &double.token,
    ));

    // Not timed: the lists hold exactly what they should.
    let portal = PortalProcess::start(binaries, &dir, "tenants", &config).await?;
    let direct_url = format!("{}{LIST_PATH}", double.url);
    let portal_url = portal_list_url(&portal);
    let all: BTreeSet<(String, String)> = (0..PODS)
        .map(|index| (placement(index).1, pod_name(index)))
        .collect();
    let team_a: BTreeSet<(String, String)> = all
        .iter()
        .filter(|(namespace, _)| namespace.starts_with("team-a-"))
        .cloned()
        .collect();
    let direct_body = get_list(&client, &direct_url, &double.token).await?;
    let plain = reqwest::Client::new();
    let admin_body = get_list(&plain, &portal_url, ADMIN_TOKEN).await?;
    let tenant_body = get_list(&plain, &portal_url, TENANT_TOKEN).await?;
    check_list("direct", &direct_body, &all)?;
    check_list("kubeportal, admin", &admin_body, &all)?;
    ensure!(
        admin_body == direct_body,
        "kubeportal's unfiltered list ({} bytes) differs from the direct one ({} bytes)",
        admin_body.len(),
        direct_body.len()
    );
    check_list("kubeportal, tenant", &tenant_body, &team_a)?;
    let list_bytes = direct_body.len();
    let filtered_bytes = tenant_body.len();
    drop((direct_body, admin_body, tenant_body));
    eprintln!(
        "  the list: {PODS} pods, {list_bytes} bytes; filtered: {} pods, {filtered_bytes} bytes",
        team_a.len()
    );

    let endpoints = [
        (
            direct_url,
            vec![(
                "Authorization".to_owned(),
                format!("Bearer {}", double.token),
            )],
            double.pid(),
            list_bytes,
        ),
        (
            portal_url.clone(),
            bearer(ADMIN_TOKEN),
            portal.child.pid(),
            list_bytes,
        ),
        (
            portal_url,
            bearer(TENANT_TOKEN),
            portal.child.pid(),
            filtered_bytes,
        ),
    ];
    let mut runs: [Option<Result<Summary, String>>; 3] = [None, None, None];
    for round in 0..schedule.rounds {
        eprintln!("  round {} of {}…", round + 1, schedule.rounds);
        for offset in 0..Way::ALL.len() {
            let way = Way::ALL[(offset + round) % Way::ALL.len()];
            let cell = &mut runs[way as usize];
            if matches!(cell, Some(Err(_))) {
                continue;
            }
            let (url, headers, pid, body_bytes) = &endpoints[way as usize];
            let result = run_once(wrk, url, headers, *pid, *body_bytes, schedule)
                .await
                .map_err(|error| format!("{error:#}"));
            match (result, &*cell) {
                (Err(error), _) => {
                    eprintln!("    {} failed: {error}", way.label());
                    *cell = Some(Err(error));
                }
                (Ok(summary), Some(Ok(best))) if best.requests >= summary.requests => {}
                (Ok(summary), _) => *cell = Some(Ok(summary)),
            }
        }
    }
    drop(portal);
    let runs = runs.map(|cell| cell.unwrap_or_else(|| Err("not measured".into())));

    eprintln!("  {CONCURRENT_LISTS} concurrent lists through a fresh kubeportal, filtered…");
    let memory_filtered = list_memory(
        binaries,
        &dir,
        "tenants-memory-filtered",
        &config,
        TENANT_TOKEN,
        filtered_bytes,
    )
    .await
    .map_err(|error| format!("{error:#}"));
    eprintln!("  … and unfiltered…");
    let memory_unfiltered = list_memory(
        binaries,
        &dir,
        "tenants-memory-unfiltered",
        &config,
        ADMIN_TOKEN,
        list_bytes,
    )
    .await
    .map_err(|error| format!("{error:#}"));
    Ok(TenantResult {
        pods: PODS,
        team_a_pods: team_a.len(),
        namespaces: 2 * NAMESPACES_PER_TEAM,
        list_bytes,
        filtered_bytes,
        runs,
        memory_filtered,
        memory_unfiltered,
    })
}

/// The namespaces and the pods, created over the double's API.
async fn seed(client: &reqwest::Client, double: &DoubleProcess) -> Result<()> {
    let post = |path: String, body: Value| {
        let request = client
            .post(format!("{}{path}", double.url))
            .bearer_auth(&double.token)
            .json(&body)
            .send();
        async move {
            let response = request.await.with_context(|| format!("POST {path}"))?;
            if !response.status().is_success() {
                bail!("POST {path}: {}", response.status());
            }
            anyhow::Ok(())
        }
    };
    for team in ['a', 'b'] {
        for index in 0..NAMESPACES_PER_TEAM {
            post(
                "/api/v1/namespaces".into(),
                json!({"metadata": {"name": format!("team-{team}-{index}")}}),
            )
            .await?;
        }
    }
    futures::stream::iter(0..PODS)
        .map(|index| {
            let (team, namespace) = placement(index);
            post(
                format!("/api/v1/namespaces/{namespace}/pods"),
                small_pod(&pod_name(index), &namespace, team),
            )
        })
        .buffer_unordered(SEEDING_IN_FLIGHT)
        .try_collect::<()>()
        .await
}

fn portal_list_url(portal: &PortalProcess) -> String {
    format!(
        "{}/api/kubernetes/clusters/{CLUSTER}/proxy{LIST_PATH}",
        portal.url
    )
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("Authorization".to_owned(), format!("Bearer {token}"))]
}

async fn get_list(client: &reqwest::Client, url: &str, token: &str) -> Result<Vec<u8>> {
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        bail!(
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok(body.to_vec())
}

#[derive(Deserialize)]
struct PodList {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    metadata: Metadata,
}

#[derive(Deserialize)]
struct Metadata {
    namespace: String,
    name: String,
}

/// Fails unless `body` is a list of exactly the pods `expected` names, each once.
fn check_list(what: &str, body: &[u8], expected: &BTreeSet<(String, String)>) -> Result<()> {
    let list: PodList = serde_json::from_slice(body)
        .with_context(|| format!("{what}: the list ({} bytes) is not a pod list", body.len()))?;
    let count = list.items.len();
    let found: BTreeSet<(String, String)> = list
        .items
        .into_iter()
        .map(|item| (item.metadata.namespace, item.metadata.name))
        .collect();
    ensure!(
        count == found.len(),
        "{what}: the list holds {count} pods, {} of them distinct",
        found.len()
    );
    if found != *expected {
        let missing = expected.difference(&found).count();
        let extra: Vec<_> = found.difference(expected).take(3).collect();
        bail!(
            "{what}: the list holds {count} pods where {} were expected: {missing} missing, \
             {} not expected (e.g. {extra:?})",
            expected.len(),
            found.difference(expected).count()
        );
    }
    Ok(())
}

/// One warm-up and one measured run, with the serving process's CPU time.
async fn run_once(
    wrk: &Wrk,
    url: &str,
    headers: &[(String, String)],
    pid: u32,
    body_bytes: usize,
    schedule: Schedule,
) -> Result<Summary> {
    let load = |duration| Load {
        connections: CONNECTIONS,
        duration,
    };
    // The warm-up may end before any list does: its result does not count.
    let _ = wrk.run(url, headers, load(schedule.warm_up)).await;
    let cpu_before = cpu_time(pid)?;
    let mut summary = wrk
        .run(url, headers, load(schedule.duration.max(MIN_DURATION)))
        .await?;
    summary.server_cpu = Some(cpu_time(pid)?.saturating_sub(cpu_before));
    let per_response = summary.bytes as f64 / summary.requests.max(1) as f64;
    if per_response < body_bytes as f64 {
        bail!("{per_response:.0} bytes per response, expected at least {body_bytes}");
    }
    Ok(summary)
}

/// Starts a fresh kubeportal, and reads [`CONCURRENT_LISTS`] lists through
/// it at once with `token`, each to its end as fast as the client can.
async fn list_memory(
    binaries: &Binaries,
    dir: &Path,
    name: &str,
    config: &Value,
    token: &str,
    expected_bytes: usize,
) -> Result<ListMemory> {
    let portal = PortalProcess::start(binaries, dir, name, config).await?;
    let pid = portal.child.pid();
    let client = reqwest::Client::new();
    // One small proxied read first, so the baseline includes a connection
    // to the cluster.
    client
        .get(format!(
            "{}/api/kubernetes/clusters/{CLUSTER}/proxy/api/v1/namespaces/team-a-0/pods/{}",
            portal.url,
            pod_name(0)
        ))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let baseline_kib = status_kib(pid, "VmRSS")?;
    let url = portal_list_url(&portal);
    let started = Instant::now();
    let lists = (0..CONCURRENT_LISTS).map(|_| {
        let request = client.get(&url).bearer_auth(token).send();
        async move {
            let response = request.await?.error_for_status()?;
            let mut body = response.bytes_stream();
            let mut bytes = 0;
            while let Some(chunk) = body.next().await {
                bytes += chunk.context("reading a list")?.len();
            }
            anyhow::Ok(bytes)
        }
    });
    let sizes = futures::future::try_join_all(lists).await?;
    let elapsed = started.elapsed();
    let peak_kib = status_kib(pid, "VmHWM")?;
    if let Some(size) = sizes.iter().find(|size| **size != expected_bytes) {
        bail!("a list ended after {size} bytes, expected {expected_bytes}");
    }
    if let Some(error) = portal.first_logged_error() {
        bail!("kubeportal logged: {error}");
    }
    Ok(ListMemory {
        baseline_kib,
        peak_kib,
        elapsed,
    })
}
