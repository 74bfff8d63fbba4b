//! kubeportal's memory under streams: the peak resident set while a 1 GiB
//! pod log streams through it, and the resident set with 10,000 watches
//! open. Each runs on a freshly started kubeportal, so its peak (`VmHWM`)
//! belongs to that scenario alone.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;

use crate::fixtures::{self, LOG_NAMESPACE, LOG_POD, WATCH_NAMESPACE};
use crate::processes::{status_kib, PortalProcess};

/// The size of the generated log (the double is started with it).
pub const LOG_BYTES: u64 = 1 << 30;

/// What streaming the log cost.
#[derive(Debug, Clone)]
pub struct LogResult {
    pub bytes: u64,
    pub elapsed: Duration,
    /// Resident set after start-up and one proxied request.
    pub baseline_kib: u64,
    /// The process's peak resident set (`VmHWM`) at the end of the stream.
    pub peak_kib: u64,
}

/// Reads the whole generated log through kubeportal's header form as fast as
/// the client can, and reads kubeportal's memory.
pub async fn stream_log(portal: &PortalProcess) -> Result<LogResult> {
    let pid = portal.child.pid();
    let client = reqwest::Client::new();
    let url = format!(
        "{}/api/kubernetes/proxy/api/v1/namespaces/{LOG_NAMESPACE}/pods/{LOG_POD}",
        portal.url
    );
    let mut warm = client.get(&url);
    for (name, value) in fixtures::portal_headers() {
        warm = warm.header(name, value);
    }
    warm.send().await?.error_for_status()?.bytes().await?;
    let baseline_kib = status_kib(pid, "VmRSS")?;

    let mut request = client.get(format!("{url}/log"));
    for (name, value) in fixtures::portal_headers() {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let response = request.send().await?.error_for_status()?;
    let mut body = response.bytes_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        bytes += chunk.context("reading the log stream")?.len() as u64;
    }
    let elapsed = started.elapsed();
    let peak_kib = status_kib(pid, "VmHWM")?;
    if bytes != LOG_BYTES {
        bail!("the log stream ended after {bytes} of {LOG_BYTES} bytes");
    }
    Ok(LogResult {
        bytes,
        elapsed,
        baseline_kib,
        peak_kib,
    })
}

/// What holding the watches open cost.
#[derive(Debug, Clone)]
pub struct WatchResult {
    pub wanted: usize,
    pub opened: usize,
    /// Why watches failed to open (first reason, and how many).
    pub failures: Option<(String, usize)>,
    pub open_time: Duration,
    pub baseline_kib: u64,
    /// The resident set with every opened watch still open.
    pub rss_kib: u64,
    /// The first error kubeportal logged, if any.
    pub logged_error: Option<String>,
    /// The open-file limit kubeportal ran with.
    pub open_files: u64,
    /// Open watches that delivered the event of a pod created afterwards.
    pub delivered: usize,
    /// Why the others did not, with how many each.
    pub undelivered: Vec<(String, usize)>,
    /// The cluster's (the double's) resident set before and with the same
    /// watches open: its end of each watch is what serving it directly costs.
    pub cluster_kib: Option<(u64, u64)>,
}

/// Client tasks the watches are spread across.
const WATCH_TASKS: usize = 20;
/// Watches each task opens at once (200 in all: more overflows accept
/// backlogs rather than opening faster).
const OPENING_PER_TASK: usize = 10;
/// How long an open watch may take to deliver the probe pod's event.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Opening stops once this many watches failed (one wave of failures).
const FAILURE_BUDGET: usize = 100;

/// Where watches are opened and whose memory they are charged to.
pub struct WatchTarget<'a> {
    /// The collection URL with `?watch=true`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The CA to trust when the URL is https.
    pub ca_pem: Option<&'a str>,
    /// The process serving the watches (kubeportal, or the double directly).
    pub pid: u32,
    /// kubeportal, when it is the one serving: its log is checked for errors.
    pub portal: Option<&'a PortalProcess>,
    /// The cluster behind kubeportal, whose end of each watch is measured too.
    pub cluster_pid: Option<u32>,
}

/// The watch URL of the empty namespace through kubeportal's header form.
pub fn portal_watch_url(portal: &PortalProcess) -> String {
    format!(
        "{}/api/kubernetes/proxy/api/v1/namespaces/{WATCH_NAMESPACE}/pods?watch=true",
        portal.url
    )
}

/// The same watch straight from the cluster.
pub fn direct_watch_url(cluster_url: &str) -> String {
    format!("{cluster_url}/api/v1/namespaces/{WATCH_NAMESPACE}/pods?watch=true")
}

/// Opens `count` watches of an empty namespace, reads the serving process's
/// resident set, then creates a pod directly on the double and counts the
/// watches that deliver its ADDED event.
pub async fn hold_watches(
    target: WatchTarget<'_>,
    create_probe_pod: impl std::future::Future<Output = Result<()>>,
    count: usize,
    open_files: u64,
) -> Result<WatchResult> {
    let pid = target.pid;
    let baseline_kib = status_kib(pid, "VmRSS")?;
    let cluster_before = target
        .cluster_pid
        .and_then(|cluster| status_kib(cluster, "VmRSS").ok());
    let url = Arc::new(target.url);
    let headers = Arc::new(target.headers);
    let ca = target
        .ca_pem
        .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()))
        .transpose()?;
    let failed = Arc::new(AtomicUsize::new(0));
    let give_up = Arc::new(AtomicBool::new(false));
    let first_failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..WATCH_TASKS {
        let share = count / WATCH_TASKS + usize::from(task < count % WATCH_TASKS);
        let url = url.clone();
        let headers = headers.clone();
        let ca = ca.clone();
        let failed = failed.clone();
        let give_up = give_up.clone();
        let first_failure = first_failure.clone();
        tasks.push(tokio::spawn(async move {
            // HTTP/1.1: one connection per watch, as browsers and kubectl hold them.
            let mut client = reqwest::Client::builder()
                .http1_only()
                .connect_timeout(Duration::from_secs(10));
            if let Some(ca) = ca {
                client = client
                    .use_rustls_tls()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(ca);
            }
            let client = client.build().expect("an HTTP client builds");
            futures::stream::iter(0..share)
                .map(|_| {
                    let mut request = client.get(url.as_str());
                    for (name, value) in headers.iter() {
                        request = request.header(name, value);
                    }
                    let give_up = give_up.clone();
                    async move {
                        if give_up.load(Ordering::Relaxed) {
                            return Err("not tried: too many failures".to_owned());
                        }
                        match tokio::time::timeout(Duration::from_secs(60), request.send()).await {
                            Ok(Ok(response)) if response.status().is_success() => Ok(response),
                            Ok(Ok(response)) => Err(format!("status {}", response.status())),
                            Ok(Err(error)) => Err(error_chain(&error)),
                            Err(_) => Err("no response headers within 60 s".to_owned()),
                        }
                    }
                })
                .buffer_unordered(OPENING_PER_TASK)
                .filter_map(|outcome| {
                    let failed = failed.clone();
                    let give_up = give_up.clone();
                    let first_failure = first_failure.clone();
                    async move {
                        match outcome {
                            Ok(response) => Some(response),
                            Err(reason) => {
                                if failed.fetch_add(1, Ordering::Relaxed) + 1 >= FAILURE_BUDGET {
                                    give_up.store(true, Ordering::Relaxed);
                                }
                                first_failure
                                    .lock()
                                    .expect("not poisoned")
                                    .get_or_insert(reason);
                                None
                            }
                        }
                    }
                })
                .collect::<Vec<_>>()
                .await
        }));
    }
    let mut watches = Vec::new();
    for task in tasks {
        watches.push(task.await.context("a watch task panicked")?);
    }
    let open_time = started.elapsed();
    let opened: usize = watches.iter().map(Vec::len).sum();
    // Let the process settle, then take the largest of a few readings.
    let mut rss_kib = 0;
    let mut cluster_kib = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss_kib = rss_kib.max(status_kib(pid, "VmRSS")?);
        if let Some(cluster) = target.cluster_pid {
            cluster_kib = cluster_kib.max(status_kib(cluster, "VmRSS").unwrap_or(0));
        }
    }

    create_probe_pod.await?;
    let delivered = Arc::new(AtomicU64::new(0));
    let undelivered = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        usize,
    >::new()));
    let readers: Vec<_> = watches
        .into_iter()
        .map(|mut responses| {
            let delivered = delivered.clone();
            let undelivered = undelivered.clone();
            tokio::spawn(async move {
                let reads = responses.iter_mut().map(|response| async {
                    let first = tokio::time::timeout(DELIVERY_TIMEOUT, response.chunk()).await;
                    let missed = match first {
                        Ok(Ok(Some(chunk)))
                            if String::from_utf8_lossy(&chunk).contains("\"ADDED\"") =>
                        {
                            delivered.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        Ok(Ok(Some(_))) => "its first chunk was not the ADDED event".to_owned(),
                        Ok(Ok(None)) => "the stream ended".to_owned(),
                        Ok(Err(error)) => format!("the stream failed ({error})"),
                        Err(_) => format!("nothing within {} s", DELIVERY_TIMEOUT.as_secs()),
                    };
                    *undelivered
                        .lock()
                        .expect("not poisoned")
                        .entry(missed)
                        .or_default() += 1;
                });
                futures::future::join_all(reads).await;
            })
        })
        .collect();
    for reader in readers {
        reader.await.context("a watch reader panicked")?;
    }
    let undelivered = undelivered
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|(reason, count)| (reason.clone(), *count))
        .collect();
    let failures = first_failure
        .lock()
        .expect("not poisoned")
        .take()
        .map(|reason| (reason, failed.load(Ordering::Relaxed)));
    Ok(WatchResult {
        wanted: count,
        opened,
        failures,
        open_time,
        baseline_kib,
        rss_kib,
        logged_error: target.portal.and_then(PortalProcess::first_logged_error),
        open_files,
        delivered: delivered.load(Ordering::Relaxed) as usize,
        undelivered,
        cluster_kib: cluster_before.map(|before| (before, cluster_kib)),
    })
}

/// An error with its causes: reqwest's own message rarely says what failed.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
