//! The soak test (`make soak`): kubeportal under a steady open-loop load of
//! small GETs through the path form, spread over many keep-alive
//! connections, while watches stay open through it and deliver the changes a
//! writer makes on the cluster, for minutes. Every interval it records the
//! requests, errors, latency, kubeportal's resident set, open files and CPU,
//! and the watches still open and delivering; at the end it judges whether
//! memory grew after warm-up, and the error rate, p99 latency and watches
//! against their targets. It prints the table and writes it, with the
//! machine, to `bench/SOAK.md`.

mod load;
mod report;
mod watches;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::time::Instant;

use crate::fixtures::{self, CLUSTER, NAMESPACE, POD, PORTAL_TOKEN, WATCH_NAMESPACE};
use crate::processes::{self, status_kib, Binaries, DoubleProcess, PortalProcess};
use load::{Load, Tally, Target};
use report::{Interval, Run, SoakReport};

/// How long a soak must run for its results to be written to
/// `bench/SOAK.md` without `--results`.
const FULL_LENGTH_MINUTES: f64 = 5.0;

/// `kubeportal-bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArguments {
    /// Minutes of load (the first minute, or the first third of a shorter
    /// run, is warm-up).
    #[arg(long, default_value_t = FULL_LENGTH_MINUTES, value_parser = positive)]
    pub minutes: f64,
    /// Requests per second, sent on schedule whatever the answers (open loop).
    #[arg(long, default_value_t = 2_000.0, value_parser = positive)]
    pub rate: f64,
    /// Keep-alive HTTP/1.1 connections the requests are spread over.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,
    /// Watches held open through kubeportal for the whole run.
    #[arg(long, default_value_t = 1_000)]
    pub watches: usize,
    /// Seconds per row of the table.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Seconds between changes to the watched object.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub change_every: u64,
    /// The p99 latency target after warm-up, in milliseconds.
    #[arg(long, default_value_t = 100.0, value_parser = positive)]
    pub max_p99_ms: f64,
    /// The error-rate target, in percent of the requests sent.
    #[arg(long, default_value_t = 0.1)]
    pub max_error_percent: f64,
    /// Write the results here; default bench/SOAK.md for a run of at least
    /// five minutes (shorter runs only print theirs).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Keep the working directory (configurations and every process's log).
    #[arg(long)]
    pub keep: bool,
    /// Use the release binaries already built rather than building them first.
    #[arg(long)]
    pub no_build: bool,
    /// Soak this kubeportal binary instead.
    #[arg(long, value_name = "PATH")]
    pub kubeportal: Option<PathBuf>,
}

fn positive(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(number) if number > 0.0 && number.is_finite() => Ok(number),
        _ => Err(format!("{value:?} is not a positive number")),
    }
}

impl SoakArguments {
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.minutes * 60.0).max(Duration::from_secs(1))
    }

    /// The first minute, or the first third of a shorter run.
    fn warm_up(&self) -> Duration {
        Duration::from_secs(60).min(self.duration() / 3)
    }
}

/// Runs the soak and writes its report.
pub async fn run(arguments: SoakArguments) -> Result<()> {
    let open_files = processes::raise_open_file_limit();
    let needed = arguments.connections + arguments.watches as u64 + 1_000;
    if open_files < needed {
        bail!(
            "the open-file limit is {open_files}, too low for {} connections and {} watches",
            arguments.connections,
            arguments.watches
        );
    }
    let load_at_start = crate::machine::load_average();
    let mut binaries = Binaries::locate(!arguments.no_build)?;
    if let Some(kubeportal) = &arguments.kubeportal {
        binaries.kubeportal = kubeportal.clone();
    }
    let (dir, _removed_at_end) =
        crate::processes::working_directory("kubeportal-soak-", arguments.keep)?;

    let double = DoubleProcess::start(&binaries, &dir, &[]).await?;
    seed(&double).await?;
    let ca_pem = std::fs::read_to_string(&double.ca_file)?;
    let config = fixtures::portal_config(vec![fixtures::cluster_entry(
        CLUSTER,
        &double.url,
        &ca_pem,
        &double.token,
    )]);
    let portal = PortalProcess::start(&binaries, &dir, "soak", &config).await?;
    let pid = portal.child.pid();
    let address = portal
        .url
        .strip_prefix("http://")
        .and_then(|address| address.parse().ok())
        .with_context(|| format!("kubeportal's URL {} has no address", portal.url))?;
    let authorization = format!("Bearer {PORTAL_TOKEN}");
    let prefix = format!("/api/kubernetes/clusters/{CLUSTER}/proxy");
    let target = Target {
        address,
        path: format!("{prefix}/api/v1/namespaces/{NAMESPACE}/pods/{POD}"),
        authorization: authorization.clone(),
    };
    check_target(&portal, &target).await?;

    watches::Writer::create(&double, WATCH_NAMESPACE).await?;
    eprintln!("opening {} watches…", arguments.watches);
    let board = watches::open(
        address,
        &format!("{prefix}/api/v1/namespaces/{WATCH_NAMESPACE}/configmaps?watch=true"),
        &authorization,
        arguments.watches,
    )
    .await?;
    let writer = watches::Writer::start(
        &double,
        WATCH_NAMESPACE,
        Duration::from_secs(arguments.change_every),
    )?;
    let rss_before_load = status_kib(pid, "VmRSS")?;
    eprintln!("opening {} connections…", arguments.connections);
    let tally = Arc::new(Tally::default());
    let load = Load::connect(target, arguments.connections as usize, tally.clone()).await?;

    eprintln!(
        "soaking for {:.1} min at {} requests/s…",
        arguments.minutes, arguments.rate
    );
    let start = Instant::now();
    let end = start + arguments.duration();
    let running = tokio::spawn(load.run(arguments.rate, start, end));
    let mut sampler = Sampler::new(pid, &tally, &board, start)?;
    let mut rss_samples = Vec::new();
    let mut intervals: Vec<Interval> = Vec::new();
    let mut ticks =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    // A late tick comes late rather than not at all, so no row is skipped.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for second in 1u64.. {
        ticks.tick().await;
        let elapsed = Duration::from_secs(second).min(arguments.duration());
        rss_samples.push((elapsed, status_kib(pid, "VmRSS").unwrap_or(0)));
        let last = elapsed >= arguments.duration();
        if second % arguments.interval == 0 || last {
            let interval = sampler.interval(elapsed)?;
            eprintln!("{}", report::progress_line(&interval));
            intervals.push(interval);
        }
        if last {
            break;
        }
    }
    let finished = running.await.context("the load generator panicked")?;
    let unanswered = finished.unanswered;
    // Answers that came in after the schedule ended belong to its last interval.
    if let Some(last) = intervals.last_mut() {
        sampler.fold_late_answers(last);
    }
    let metrics = portal_metrics(&portal.url).await;
    drop(finished);
    let changes = writer.changes.load(Ordering::Relaxed);
    let change_failures = writer.failures.load(Ordering::Relaxed);
    drop(writer);
    let run = Run {
        rate: arguments.rate,
        connections: arguments.connections,
        watches: arguments.watches,
        duration: arguments.duration(),
        warm_up: arguments.warm_up(),
        interval: Duration::from_secs(arguments.interval),
        change_every: Duration::from_secs(arguments.change_every),
        max_p99: Duration::from_secs_f64(arguments.max_p99_ms / 1e3),
        max_error_percent: arguments.max_error_percent,
        rss_before_load_kib: rss_before_load,
        rss_samples,
        intervals,
        sent: tally.sent.load(Ordering::Relaxed),
        unanswered,
        reconnects: tally.reconnects.load(Ordering::Relaxed),
        first_failure: tally.first_failure(),
        watches_alive: board.alive(),
        watch_events: board.events(),
        first_watch_end: board.first_end(),
        changes,
        change_failures,
        metrics,
        logged_error: portal.first_logged_error(),
    };
    drop(portal);
    drop(double);
    let soak = SoakReport::new(
        run,
        crate::machine::describe(&load_at_start, arguments.kubeportal.as_deref())
            .into_iter()
            .filter(|(key, _)| !matches!(key.as_str(), "wrk" | "nginx" | "kubectl"))
            .collect(),
    );
    println!("{}", soak.text());
    let results = match &arguments.results {
        Some(path) => Some(path.clone()),
        None if arguments.minutes >= FULL_LENGTH_MINUTES && arguments.kubeportal.is_none() => {
            Some(processes::workspace_root().join("bench/SOAK.md"))
        }
        None => None,
    };
    if let Some(path) = results {
        std::fs::write(&path, soak.markdown())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if !soak.passed() {
        bail!("the soak missed a target (see the verdict)");
    }
    Ok(())
}

/// The namespaces, the pod every request reads, and the empty namespace the
/// watches watch.
async fn seed(double: &DoubleProcess) -> Result<()> {
    let client = fixtures::double_client(&std::fs::read_to_string(&double.ca_file)?)?;
    let create = |path: String, body: serde_json::Value| {
        let request = client
            .post(format!("{}{path}", double.url))
            .bearer_auth(&double.token)
            .json(&body)
            .send();
        async move {
            request
                .await
                .and_then(reqwest::Response::error_for_status)
                .with_context(|| format!("POST {path}"))?;
            Ok::<_, anyhow::Error>(())
        }
    };
    for namespace in [NAMESPACE, WATCH_NAMESPACE] {
        create(
            "/api/v1/namespaces".into(),
            serde_json::json!({"metadata": {"name": namespace}}),
        )
        .await?;
    }
    create(
        format!("/api/v1/namespaces/{NAMESPACE}/pods"),
        fixtures::pod(POD, NAMESPACE),
    )
    .await
}

/// One request through kubeportal before the load, so that a refusal is
/// reported as such rather than as a soak full of errors.
async fn check_target(portal: &PortalProcess, target: &Target) -> Result<()> {
    let response = reqwest::Client::new()
        .get(format!("{}{}", portal.url, target.path))
        .header(http::header::AUTHORIZATION, &target.authorization)
        .send()
        .await
        .context("the first request through kubeportal failed")?;
    if !response.status().is_success() {
        bail!(
            "the first request through kubeportal was answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// kubeportal's counters at the end: audit records written and dropped, and
/// open streams (`None` where the scrape failed).
pub struct PortalMetrics {
    pub audit_written: Option<f64>,
    pub audit_dropped: Option<f64>,
    pub open_streams: Option<f64>,
}

async fn portal_metrics(url: &str) -> PortalMetrics {
    let text = match reqwest::get(format!("{url}/metrics")).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    PortalMetrics {
        audit_written: metric(&text, "kubeportal_audit_records_written_total"),
        audit_dropped: metric(&text, "kubeportal_audit_records_dropped_total"),
        open_streams: metric(&text, "kubeportal_open_streams"),
    }
}

/// The sum of a metric's samples in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.chars().next()? {
                ' ' => rest,
                '{' => &rest[rest.find('}')? + 1..],
                _ => return None,
            };
            value.split_whitespace().next()?.parse().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Reads the counters interval by interval.
struct Sampler<'a> {
    pid: u32,
    tally: &'a Tally,
    board: &'a watches::WatchBoard,
    start: Instant,
    /// Where the current interval began, after `start`.
    since: Duration,
    counted: Counts,
    cpu: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    sent: u64,
    succeeded: u64,
    failed: u64,
}

impl Counts {
    fn of(tally: &Tally) -> Counts {
        Counts {
            sent: tally.sent.load(Ordering::Relaxed),
            succeeded: tally.succeeded.load(Ordering::Relaxed),
            failed: tally.failed_status.load(Ordering::Relaxed)
                + tally.failed_transport.load(Ordering::Relaxed),
        }
    }

    fn since(self, earlier: Counts) -> Counts {
        Counts {
            sent: self.sent - earlier.sent,
            succeeded: self.succeeded - earlier.succeeded,
            failed: self.failed - earlier.failed,
        }
    }
}

impl<'a> Sampler<'a> {
    fn new(
        pid: u32,
        tally: &'a Tally,
        board: &'a watches::WatchBoard,
        start: Instant,
    ) -> Result<Sampler<'a>> {
        // Latencies of requests before the load (none) are not the load's.
        tally.take_latencies();
        Ok(Sampler {
            pid,
            tally,
            board,
            start,
            since: Duration::ZERO,
            counted: Counts::of(tally),
            cpu: processes::cpu_time(pid)?,
        })
    }

    /// The interval from the last one's end to `elapsed`.
    fn interval(&mut self, elapsed: Duration) -> Result<Interval> {
        let counts = Counts::of(self.tally);
        let delta = counts.since(self.counted);
        let cpu = processes::cpu_time(self.pid)?;
        let length = elapsed - self.since;
        let interval = Interval {
            start: self.since,
            end: elapsed,
            sent: delta.sent,
            succeeded: delta.succeeded,
            failed: delta.failed,
            latencies_us: self.tally.take_latencies(),
            rss_kib: status_kib(self.pid, "VmRSS")?,
            open_files: open_files(self.pid),
            cpu: (cpu - self.cpu).as_secs_f64() / length.as_secs_f64(),
            watches_alive: self.board.alive(),
            watches_delivering: self.board.delivering_since(self.start + self.since),
        };
        self.counted = counts;
        self.cpu = cpu;
        self.since = elapsed;
        Ok(interval)
    }

    /// Adds what was answered after the last interval ended to it.
    fn fold_late_answers(&mut self, last: &mut Interval) {
        let delta = Counts::of(self.tally).since(self.counted);
        last.succeeded += delta.succeeded;
        last.failed += delta.failed;
        last.latencies_us.extend(self.tally.take_latencies());
    }
}

/// How many files (sockets included) a process has open.
fn open_files(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|entries| entries.count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        soak: SoakArguments,
    }

    #[test]
    fn defaults_and_warm_up() {
        let soak = Wrapper::try_parse_from(["soak"]).unwrap().soak;
        assert_eq!(
            (soak.rate, soak.connections, soak.watches),
            (2_000.0, 1_000, 1_000)
        );
        assert_eq!(soak.duration(), Duration::from_secs(300));
        assert_eq!(soak.warm_up(), Duration::from_secs(60));
        let short = Wrapper::try_parse_from(["soak", "--minutes", "1"])
            .unwrap()
            .soak;
        assert_eq!(short.warm_up(), Duration::from_secs(20));
        assert!(Wrapper::try_parse_from(["soak", "--rate", "0"]).is_err());
    }

    #[test]
    fn metrics_are_summed_over_labels() {
        let text = "# TYPE kubeportal_open_streams gauge\n\
                    kubeportal_open_streams 1000\n\
                    kubeportal_audit_records_written_total 600000\n\
                    kubeportal_audit_records_dropped_total{reason=\"full\"} 2\n\
                    kubeportal_audit_records_dropped_total{reason=\"error\"} 3\n";
        assert_eq!(metric(text, "kubeportal_open_streams"), Some(1000.0));
        assert_eq!(
            metric(text, "kubeportal_audit_records_written_total"),
            Some(600_000.0)
        );
        assert_eq!(
            metric(text, "kubeportal_audit_records_dropped_total"),
            Some(5.0)
        );
        assert_eq!(metric(text, "kubeportal_open"), None);
    }
}
