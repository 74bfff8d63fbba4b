//! The fleet view: `GET /api/kubernetes/fleet/{clusterGlob}/proxy/api/v1/pods`
//! across 1, 10 and 50 clusters, timed against the slowest single direct
//! list of a member cluster and against the sum of the direct lists; and the
//! resident set of a fresh kubeportal holding 1,000 fleet watches over 10
//! clusters.
//!
//! The clusters are test doubles running in this process (50 double
//! processes do not fit two cores beside kubeportal), each holding the same
//! [`PODS`] pods; kubeportal is the release binary. A double answers a
//! repeated list of unchanged pods with the bytes it rendered the first time
//! (its list cache), so that the members' CPU, which a remote API server
//! spends on its own machine, weighs little on the two cores kubeportal
//! runs on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::StreamExt;
use kube_double::{KubeDouble, Options};
use serde_json::{json, Value};

use crate::fixtures;
use crate::processes::{cpu_time, status_kib, Binaries, PortalProcess};
use crate::stats::Percentiles;

pub const CLUSTER_COUNTS: [usize; 3] = [1, 10, 50];
/// Pods on every cluster, the same on each.
pub const PODS: usize = 100;
const NAMESPACE: &str = "shop";
/// The fleet every request names; the clusters are `bench-00`, `bench-01`, ….
const GLOB: &str = "bench-*";
const LIST_PATH: &str = "/api/v1/pods";
const DOUBLE_TOKEN: &str = "double-token";
const ANNOTATION: &str = "kubeportal.io/cluster";
/// Unmeasured rounds first, then measured ones: each round is one fleet
/// list and one direct list of every member cluster.
const WARM_UP_ROUNDS: usize = 3;
const ROUNDS: usize = 15;
/// The members' latency in the second pass: each answers a list after
/// this long, as a remote API server does, so that the fleet's fan-out is
/// measured rather than the members' CPU (which, in this process, is the
/// two cores kubeportal runs on too).
pub const REMOTE_LATENCY: Duration = Duration::from_millis(50);
/// The target: a fleet list within this multiple of the slowest member's.
pub const TARGET_RATIO: f64 = 1.5;
/// Clusters and watches of the memory scenario.
pub const WATCH_CLUSTERS: usize = 10;
pub const WATCHES: usize = 1_000;
/// Watches being opened at once.
const OPENING_AT_ONCE: usize = 100;
/// How long a watch may take to deliver its initial events, and later the
/// probe pod's.
const EVENT_TIMEOUT: Duration = Duration::from_secs(120);

fn cluster_name(index: usize) -> String {
    format!("bench-{index:02}")
}

fn pod_name(index: usize) -> String {
    format!("shop-api-{index:03}")
}

/// One cluster count's figures.
#[derive(Debug, Clone)]
pub struct ListResult {
    pub clusters: usize,
    /// How long each member waits before answering.
    pub latency: Duration,
    /// kubeportal's CPU time per fleet list.
    pub portal_cpu: Option<Duration>,
    pub items: usize,
    pub bytes: usize,
    pub fleet: Percentiles,
    /// The member whose direct list has the highest p50, and that p50.
    pub slowest_cluster: String,
    pub slowest_single: Duration,
    /// The sum of every member's direct p50.
    pub sum_direct: Duration,
}

impl ListResult {
    pub fn ratio_to_slowest(&self) -> f64 {
        self.fleet.p50.as_secs_f64() / self.slowest_single.as_secs_f64()
    }
}

/// A fresh kubeportal holding [`WATCHES`] fleet watches.
#[derive(Debug, Clone)]
pub struct WatchMemory {
    pub clusters: usize,
    pub wanted: usize,
    /// Watches whose response began.
    pub opened: usize,
    /// Watches that delivered every initial event (every pod of every cluster).
    pub established: usize,
    pub open_time: Duration,
    /// Resident set after start-up and one fleet list.
    pub baseline_kib: u64,
    /// Resident set with every established watch open.
    pub rss_kib: u64,
    /// Peak resident set (`VmHWM`), reached during the initial events.
    pub peak_kib: u64,
    /// Watches that then delivered a pod created afterwards: still open.
    pub still_open: usize,
    /// Why watches failed, with how many each.
    pub failures: Vec<(String, usize)>,
    pub logged_error: Option<String>,
}

pub struct FleetResult {
    pub lists: Vec<ListResult>,
    pub watches: Result<WatchMemory, String>,
}

fn seed(double: &KubeDouble) {
    double.put_object("v1", "namespaces", json!({"metadata": {"name": NAMESPACE}}));
    for index in 0..PODS {
        double.put_object("v1", "pods", fixtures::pod(&pod_name(index), NAMESPACE));
    }
}

pub fn portal_config(doubles: &[KubeDouble]) -> Value {
    let clusters = doubles
        .iter()
        .enumerate()
        .map(|(index, double)| {
            fixtures::cluster_entry(
                &cluster_name(index),
                &double.url(),
                &double.ca_pem(),
                DOUBLE_TOKEN,
            )
        })
        .collect();
    fixtures::portal_config(clusters)
}

pub fn fleet_url(portal: &PortalProcess) -> String {
    format!(
        "{}/api/kubernetes/fleet/{GLOB}/proxy{LIST_PATH}",
        portal.url
    )
}

/// Starts `count` doubles, each seeded with the same [`PODS`] pods.
pub async fn start_doubles(count: usize) -> Result<Vec<KubeDouble>> {
    let mut doubles = Vec::with_capacity(count);
    for _ in 0..count {
        let double = KubeDouble::start(Options::default()).await?;
        seed(&double);
        doubles.push(double);
    }
    Ok(doubles)
}

/// Starts the doubles, then measures every cluster count and the watches.
pub async fn measure(binaries: &Binaries, directory: &Path) -> Result<FleetResult> {
    let largest = CLUSTER_COUNTS.iter().copied().max().unwrap_or(0);
    eprintln!("  starting {largest} doubles with {PODS} pods each…");
    let doubles = start_doubles(largest.max(WATCH_CLUSTERS)).await?;
    let mut client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false);
    for double in &doubles {
        client = client
            .add_root_certificate(reqwest::Certificate::from_pem(double.ca_pem().as_bytes())?);
    }
    let direct_client = client.build()?;
    let mut lists = Vec::new();
    for latency in [Duration::ZERO, REMOTE_LATENCY] {
        for double in &doubles {
            double.delay_resource("pods", latency);
        }
        for count in CLUSTER_COUNTS {
            eprintln!(
                "  fleet list over {count} cluster{} answering after {} ms…",
                if count == 1 { "" } else { "s" },
                latency.as_millis()
            );
            let mut list =
                measure_list(binaries, directory, &doubles[..count], &direct_client).await?;
            list.latency = latency;
            lists.push(list);
        }
    }
    for double in &doubles {
        double.delay_resource("pods", Duration::ZERO);
    }
    eprintln!(
        "  {WATCHES} fleet watches over {WATCH_CLUSTERS} clusters through a fresh kubeportal…"
    );
    let watches = hold_watches(binaries, directory, &doubles[..WATCH_CLUSTERS])
        .await
        .map_err(|error| format!("{error:#}"));
    Ok(FleetResult { lists, watches })
}

pub async fn get(client: &reqwest::Client, url: &str, token: &str) -> Result<bytes::Bytes> {
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
    Ok(body)
}

async fn measure_list(
    binaries: &Binaries,
    directory: &Path,
    doubles: &[KubeDouble],
    direct_client: &reqwest::Client,
) -> Result<ListResult> {
    let count = doubles.len();
    let portal = PortalProcess::start(
        binaries,
        directory,
        &format!("fleet-{count}"),
        &portal_config(doubles),
    )
    .await?;
    let portal_client = reqwest::Client::new();
    let url = fleet_url(&portal);
    let direct_urls: Vec<String> = doubles
        .iter()
        .map(|double| format!("{}{LIST_PATH}", double.url()))
        .collect();

    // Not timed: the fleet list holds every pod of every cluster, annotated.
    let body = get(&portal_client, &url, fixtures::PORTAL_TOKEN).await?;
    check_fleet_list(&body, count)?;
    for direct in &direct_urls {
        let items =
            serde_json::from_slice::<Value>(&get(direct_client, direct, DOUBLE_TOKEN).await?)?
                ["items"]
                .as_array()
                .map_or(0, Vec::len);
        ensure!(items == PODS, "{direct}: {items} pods, expected {PODS}");
    }
    let bytes = body.len();
    drop(body);

    let mut fleet = Vec::with_capacity(ROUNDS);
    let mut direct = vec![Vec::with_capacity(ROUNDS); count];
    let mut cpu_before = None;
    for round in 0..WARM_UP_ROUNDS + ROUNDS {
        let measured = round >= WARM_UP_ROUNDS;
        if round == WARM_UP_ROUNDS {
            // Only the fleet lists reach kubeportal.
            cpu_before = cpu_time(portal.child.pid()).ok();
        }
        // Alternate which goes first, so neither always meets a cold cache.
        for part in 0..2 {
            if (part + round) % 2 == 0 {
                let started = Instant::now();
                get(&portal_client, &url, fixtures::PORTAL_TOKEN).await?;
                if measured {
                    fleet.push(started.elapsed());
                }
            } else {
                for (index, direct_url) in direct_urls.iter().enumerate() {
                    let started = Instant::now();
                    get(direct_client, direct_url, DOUBLE_TOKEN).await?;
                    if measured {
                        direct[index].push(started.elapsed());
                    }
                }
            }
        }
    }
    let portal_cpu = cpu_before
        .zip(cpu_time(portal.child.pid()).ok())
        .map(|(before, after)| after.saturating_sub(before) / ROUNDS as u32);
    if let Some(error) = portal.first_logged_error() {
        bail!("kubeportal logged: {error}");
    }
    let fleet = Percentiles::of(fleet).context("no fleet samples")?;
    let per_cluster: Vec<Duration> = direct
        .into_iter()
        .map(|samples| Percentiles::of(samples).map(|p| p.p50))
        .collect::<Option<_>>()
        .context("no direct samples")?;
    let (slowest, slowest_single) = per_cluster
        .iter()
        .copied()
        .enumerate()
        .max_by_key(|(_, p50)| *p50)
        .context("no cluster")?;
    Ok(ListResult {
        clusters: count,
        latency: Duration::ZERO,
        portal_cpu,
        items: count * PODS,
        bytes,
        fleet,
        slowest_cluster: cluster_name(slowest),
        slowest_single,
        sum_direct: per_cluster.iter().sum(),
    })
}

/// Fails unless `body` is a list of exactly every pod of each of the first
/// `clusters` clusters, each annotated with its cluster, and a `clusters`
/// stanza of every one, all successful.
pub fn check_fleet_list(body: &[u8], clusters: usize) -> Result<()> {
    let list: Value = serde_json::from_slice(body)
        .with_context(|| format!("the fleet list ({} bytes) is not JSON", body.len()))?;
    let items = list["items"]
        .as_array()
        .context("the fleet list has no items")?;
    ensure!(
        items.len() == clusters * PODS,
        "the fleet list holds {} items, expected {clusters} × {PODS}",
        items.len()
    );
    let expected: BTreeSet<String> = (0..PODS).map(pod_name).collect();
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in items {
        let cluster = item["metadata"]["annotations"][ANNOTATION]
            .as_str()
            .with_context(|| format!("an item without the {ANNOTATION} annotation"))?;
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        ensure!(
            found
                .entry(cluster.to_owned())
                .or_default()
                .insert(name.to_owned()),
            "pod {name} of cluster {cluster} is listed twice"
        );
    }
    let names: BTreeSet<String> = (0..clusters).map(cluster_name).collect();
    ensure!(
        found.keys().cloned().collect::<BTreeSet<_>>() == names,
        "the items are annotated with clusters {:?}, expected {:?}",
        found.keys().collect::<Vec<_>>(),
        names
    );
    for (cluster, pods) in &found {
        ensure!(
            *pods == expected,
            "cluster {cluster}: {} pods in the fleet list, not the {PODS} seeded",
            pods.len()
        );
    }
    let stanza = list["clusters"]
        .as_array()
        .context("the fleet list has no clusters stanza")?;
    ensure!(
        stanza.len() == clusters
            && stanza.iter().all(|entry| entry["status"] == "Success"
                && names.contains(entry["name"].as_str().unwrap_or_default())),
        "the clusters stanza is not every cluster successful: {}",
        Value::Array(stanza.clone())
    );
    Ok(())
}

/// Counts the watch events of `kind` in a newline-delimited stream, across
/// chunk boundaries.
#[derive(Default)]
struct EventCounter {
    partial: Vec<u8>,
}

impl EventCounter {
    fn feed(&mut self, chunk: &[u8], kind: &str) -> usize {
        let needle = format!("\"type\":\"{kind}\"");
        let mut count = 0;
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|byte| *byte == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            if contains(&self.partial, needle.as_bytes()) {
                count += 1;
            }
            self.partial.clear();
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        count
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Reads `response` until `wanted` events of `kind` arrived.
async fn read_events(
    response: &mut reqwest::Response,
    counter: &mut EventCounter,
    kind: &str,
    wanted: usize,
) -> Result<(), String> {
    let mut seen = 0;
    let read = async {
        while seen < wanted {
            match response.chunk().await {
                Ok(Some(chunk)) => seen += counter.feed(&chunk, kind),
                Ok(None) => return Err(format!("the stream ended after {seen} {kind} events")),
                Err(error) => return Err(format!("the stream failed: {error}")),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(EVENT_TIMEOUT, read).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "not {wanted} {kind} events within {} s",
            EVENT_TIMEOUT.as_secs()
        )),
    }
}

/// Opens [`WATCHES`] fleet watches through a fresh kubeportal, each read
/// until its initial events (every pod of every cluster) arrived, then held
/// open; reads kubeportal's resident set, then creates a pod on one cluster
/// and counts the watches that deliver it.
async fn hold_watches(
    binaries: &Binaries,
    directory: &Path,
    doubles: &[KubeDouble],
) -> Result<WatchMemory> {
    let clusters = doubles.len();
    let portal = PortalProcess::start(
        binaries,
        directory,
        "fleet-watches",
        &portal_config(doubles),
    )
    .await?;
    let pid = portal.child.pid();
    let url = fleet_url(&portal);
    // One fleet list first, so the baseline includes the cluster connections.
    let body = get(&reqwest::Client::new(), &url, fixtures::PORTAL_TOKEN).await?;
    check_fleet_list(&body, clusters)?;
    drop(body);
    let baseline_kib = status_kib(pid, "VmRSS")?;

    let watch_url = format!("{url}?watch=true");
    let initial = clusters * PODS;
    let failures = Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
    let opened = Arc::new(AtomicUsize::new(0));
    let fail = |failures: &std::sync::Mutex<BTreeMap<String, usize>>, reason: String| {
        *failures
            .lock()
            .expect("not poisoned")
            .entry(reason)
            .or_default() += 1;
    };
    // HTTP/1.1: one connection per watch, as kubectl and browsers hold them.
    let client = reqwest::Client::builder()
        .http1_only()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let started = Instant::now();
    let watches: Vec<(reqwest::Response, EventCounter)> = futures::stream::iter(0..WATCHES)
        .map(|_| {
            let request = client
                .get(&watch_url)
                .bearer_auth(fixtures::PORTAL_TOKEN)
                .send();
            let failures = failures.clone();
            let opened = opened.clone();
            async move {
                let mut response = match tokio::time::timeout(EVENT_TIMEOUT, request).await {
                    Ok(Ok(response)) if response.status().is_success() => response,
                    Ok(Ok(response)) => {
                        fail(&failures, format!("status {}", response.status()));
                        return None;
                    }
                    Ok(Err(error)) => {
                        fail(&failures, format!("not opened: {error}"));
                        return None;
                    }
                    Err(_) => {
                        fail(&failures, "no response headers in time".into());
                        return None;
                    }
                };
                opened.fetch_add(1, Ordering::Relaxed);
                let mut counter = EventCounter::default();
                match read_events(&mut response, &mut counter, "ADDED", initial).await {
                    Ok(()) => Some((response, counter)),
                    Err(reason) => {
                        fail(&failures, format!("initial events: {reason}"));
                        None
                    }
                }
            }
        })
        .buffer_unordered(OPENING_AT_ONCE)
        .filter_map(|watch| async move { watch })
        .collect()
        .await;
    let open_time = started.elapsed();
    let established = watches.len();

    // Let the process settle, then take the largest of a few readings.
    let mut rss_kib = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss_kib = rss_kib.max(status_kib(pid, "VmRSS")?);
    }
    let peak_kib = status_kib(pid, "VmHWM")?;

    // A new pod on one cluster: every watch still open delivers it.
    doubles[0].put_object("v1", "pods", fixtures::pod("probe", NAMESPACE));
    let still_open = Arc::new(AtomicUsize::new(0));
    futures::stream::iter(watches)
        .for_each_concurrent(None, |(mut response, mut counter)| {
            let still_open = still_open.clone();
            let failures = failures.clone();
            async move {
                match read_events(&mut response, &mut counter, "ADDED", 1).await {
                    Ok(()) => {
                        still_open.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(reason) => fail(&failures, format!("the new pod: {reason}")),
                }
            }
        })
        .await;
    let failures = failures
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|(reason, count)| (reason.clone(), *count))
        .collect();
    Ok(WatchMemory {
        clusters,
        wanted: WATCHES,
        opened: opened.load(Ordering::Relaxed),
        established,
        open_time,
        baseline_kib,
        rss_kib,
        peak_kib,
        still_open: still_open.load(Ordering::Relaxed),
        failures,
        logged_error: portal.first_logged_error(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_across_chunks() {
        let mut counter = EventCounter::default();
        let stream =
            b"{\"type\":\"ADDED\",\"object\":{}}\n{\"type\":\"MODIFIED\"}\n{\"type\":\"ADDED\"}\n";
        let (first, second) = stream.split_at(10);
        assert_eq!(
            counter.feed(first, "ADDED") + counter.feed(second, "ADDED"),
            2
        );
    }

    #[test]
    fn fleet_lists_must_hold_every_pod_of_every_cluster() {
        let item = |cluster: usize, pod: usize| json!({"metadata": {"name": pod_name(pod), "annotations": {ANNOTATION: cluster_name(cluster)}}});
        let list = |clusters: usize, items: Vec<Value>| {
            let stanza: Vec<Value> = (0..clusters)
                .map(|index| json!({"name": cluster_name(index), "status": "Success"}))
                .collect();
            serde_json::to_vec(&json!({"items": items, "clusters": stanza})).unwrap()
        };
        let good: Vec<Value> = (0..2)
            .flat_map(|cluster| (0..PODS).map(move |pod| item(cluster, pod)))
            .collect();
        assert!(check_fleet_list(&list(2, good.clone()), 2).is_ok());
        let mut wrong = good.clone();
        wrong[0] = item(1, 0);
        assert!(check_fleet_list(&list(2, wrong), 2).is_err());
        assert!(check_fleet_list(&list(2, good[..PODS].to_vec()), 2).is_err());
    }
}
