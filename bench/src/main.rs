//! kubeportal-bench: one command (`make bench`) that measures, in one run,
//! kubeportal against direct access to a Kubernetes API (the test double,
//! serving plain HTTP/1.1 and TLS offering HTTP/2), against nginx, HAProxy
//! and `kubectl proxy`, and against a bare hyper proxy (`hyper-proxy`: the
//! stack's own cost), with each proxy's instructions per request under
//! callgrind; kubeportal's memory under a large
//! log and many watches; registry lookups at 100,000 clusters; and object
//! fan-out over 1, 10 and 50 clusters; tenant views (a list across
//! namespaces filtered for a caller granted some of them); and the fleet
//! view (one list, and watches, across clusters matching a glob). It prints one table and writes it,
//! with the machine and the method, to `bench/RESULTS.md`.
//!
//! Nothing is estimated or assumed: a figure that could not be measured is
//! reported as such, with the reason.

mod callgrind;
mod fanout;
mod fixtures;
mod fleet;
mod fleet_profile;
mod identity;
mod machine;
mod memory;
mod processes;
mod proxy;
mod registry;
mod report;
mod results;
mod soak;
mod stats;
mod tenants;
mod wrk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde_json::Value;

use crate::fixtures::{Seeded, CLUSTER, WATCH_NAMESPACE};
use crate::processes::{Binaries, DoubleProcess, KubectlProxy, PeerProxy, PortalProcess};
use crate::proxy::{Endpoint, Scenario, Upstream, UpstreamResults, Via};
use crate::report::{Row, Table};

#[derive(Debug, Parser)]
#[command(
    name = "kubeportal-bench",
    about = "kubeportal benchmarks as ratios to direct access"
)]
struct Arguments {
    /// Seconds each measured wrk run lasts.
    #[arg(long, default_value_t = 4)]
    duration: u64,
    /// Seconds of load before each measured run, not counted.
    #[arg(long, default_value_t = 1)]
    warm_up: u64,
    /// Runs per proxy cell; the cell shows the one with the most requests.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Keep the working directory (configurations and every process's log).
    #[arg(long)]
    keep: bool,
    /// Watches to hold open through kubeportal.
    #[arg(long, default_value_t = 10_000)]
    watches: usize,
    /// Run only these sections (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Section>,
    /// Write the results here; default bench/RESULTS.md when every section runs.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Use the kubeportal and kube-double release binaries already built
    /// rather than building them first.
    #[arg(long)]
    no_build: bool,
    /// Measure this kubeportal binary instead (e.g. a candidate change built
    /// elsewhere); the results file is then not written unless --results is given.
    #[arg(long, value_name = "PATH")]
    kubeportal: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Minutes of steady open-loop load with watches open (`make soak`):
    /// kubeportal's memory, errors and latency over time, and a verdict.
    Soak(soak::SoakArguments),
    /// kubeportal's CPU (or, under callgrind, instructions) per fleet list
    /// over many clusters, and its profile.
    FleetProfile(fleet_profile::ProfileArguments),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    Proxy,
    /// The small GET with a static token and with a portal user's ES256
    /// JWT, remembered once verified and checked on every request.
    Identity,
    Memory,
    Registry,
    Fanout,
    /// Tenant views: a 20,000-pod list filtered to some namespaces.
    Tenants,
    /// The fleet view: one pod list across 1, 10 and 50 clusters, and
    /// 1,000 fleet watches over 10.
    Fleet,
}

/// What every section runs against.
struct Bench<'a> {
    arguments: &'a Arguments,
    binaries: Binaries,
    dir: &'a Path,
    double: DoubleProcess,
    ca_pem: String,
    seeded: Seeded,
    /// kubeportal's configuration with the double as cluster [`CLUSTER`].
    portal_config: Value,
    open_files: u64,
}

/// What the sections found: the table, the query plans, and notes on
/// whatever could not be measured.
#[derive(Default)]
struct Findings {
    table: Table,
    notes: Vec<String>,
    plans: Vec<(String, String)>,
}

impl Findings {
    /// A scenario that failed: a row saying so, the full error in the notes.
    fn failed(&mut self, what: &str, error: &anyhow::Error, target: &str) {
        eprintln!("  {what} failed: {error:#}");
        self.notes.push(format!("{what} failed: {error:#}"));
        self.table.row(Row::failed(what, target));
    }

    /// A scenario that could not run, and why.
    fn not_measured(&mut self, what: &str, reason: &str) {
        self.notes.push(format!("{what} not measured: {reason}"));
        self.table.row(Row::portal_only_text(&format!(
            "{what}: not measured: {reason}"
        )));
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let arguments = Arguments::parse();
    if cfg!(debug_assertions) {
        bail!("build the benchmark in release mode: make bench (cargo run --release -p kubeportal-bench)");
    }
    if let Some(Command::Soak(soak)) = &arguments.command {
        return soak::run(soak.clone()).await;
    }
    if let Some(Command::FleetProfile(profile)) = &arguments.command {
        return fleet_profile::run(profile.clone()).await;
    }
    let open_files = processes::raise_open_file_limit();
    let building = Instant::now();
    let mut binaries = Binaries::locate(!arguments.no_build)?;
    let build_time = building.elapsed();
    let started = Instant::now();
    if let Some(kubeportal) = &arguments.kubeportal {
        binaries.kubeportal = kubeportal.clone();
    }
    let (dir, _removed_at_end) =
        crate::processes::working_directory("kubeportal-bench-", arguments.keep)?;
    let dir = dir.as_path();
    let load_at_start = machine::load_average();

    let double = DoubleProcess::start(
        &binaries,
        dir,
        &[format!(
            "--generated-log={}/{}={}",
            fixtures::LOG_NAMESPACE,
            fixtures::LOG_POD,
            memory::LOG_BYTES
        )],
    )
    .await?;
    let seeded = fixtures::seed(&double).await?;
    let ca_pem = std::fs::read_to_string(&double.ca_file)?;
    let portal_config = fixtures::portal_config(vec![fixtures::cluster_entry(
        CLUSTER,
        &double.url,
        &ca_pem,
        &double.token,
    )]);
    let bench = Bench {
        arguments: &arguments,
        binaries,
        dir,
        double,
        ca_pem,
        seeded,
        portal_config,
        open_files,
    };

    let runs = |section| arguments.only.is_empty() || arguments.only.contains(&section);
    let mut findings = Findings::default();
    if runs(Section::Proxy) {
        proxy_section(&bench, &mut findings).await?;
    }
    if runs(Section::Identity) {
        identity_section(&bench, &mut findings).await;
    }
    if runs(Section::Memory) {
        memory_section(&bench, &mut findings).await;
    }
    if runs(Section::Registry) {
        registry_section(&bench, &mut findings).await;
    }
    if runs(Section::Fanout) {
        fanout_section(&bench, &mut findings).await;
    }
    if runs(Section::Tenants) {
        tenants_section(&bench, &mut findings).await;
    }
    if runs(Section::Fleet) {
        fleet_section(&bench, &mut findings).await;
    }
    drop(bench);

    let output = results::Output {
        machine: machine::describe(&load_at_start, arguments.kubeportal.as_deref()),
        table: findings.table.render(),
        plans: findings.plans,
        notes: findings.notes,
        elapsed: started.elapsed(),
        build_time,
        duration: arguments.duration,
        warm_up: arguments.warm_up,
        rounds: arguments.rounds,
        watches: arguments.watches,
    };
    println!("{}", output.text());
    let complete_run = arguments.only.is_empty() && arguments.kubeportal.is_none();
    let results_file = match (&arguments.results, complete_run) {
        (Some(path), _) => Some(path.clone()),
        (None, true) => Some(processes::workspace_root().join("bench/RESULTS.md")),
        (None, false) => None,
    };
    if let Some(path) = results_file {
        std::fs::write(&path, output.markdown())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// A peer proxy's program (nginx, HAProxy, the bare hyper proxy), or why it
/// is missing.
type Program = std::result::Result<PathBuf, String>;

/// Throughput and latency of the six ways, for both upstreams; then the
/// instructions per request of each proxy under callgrind.
async fn proxy_section(bench: &Bench<'_>, findings: &mut Findings) -> Result<()> {
    eprintln!("proxy throughput and latency:");
    let wrk = match wrk::Wrk::new(bench.dir) {
        Ok(wrk) => wrk,
        Err(error) => {
            findings.table.section("proxy");
            findings.not_measured("proxy benchmarks", &format!("{error:#}"));
            return Ok(());
        }
    };
    // The second upstream: a double serving plain HTTP, seeded alike.
    let plain = async {
        let double = DoubleProcess::start_plain(&bench.binaries, bench.dir).await?;
        let seeded = fixtures::seed(&double).await?;
        anyhow::Ok((double, seeded))
    }
    .await;
    let mut upstreams = Vec::new();
    let mut clusters = vec![fixtures::cluster_entry(
        CLUSTER,
        &bench.double.url,
        &bench.ca_pem,
        &bench.double.token,
    )];
    match &plain {
        Ok((double, seeded)) => {
            upstreams.push((Upstream::Plain, double, *seeded));
            clusters.push(fixtures::plain_cluster_entry(
                Upstream::Plain.cluster(),
                &double.url,
                &double.token,
            ));
        }
        Err(error) => {
            findings
                .table
                .section(&format!("proxy, {}", Upstream::Plain.label()));
            findings.failed("plain-HTTP upstream", error, "");
        }
    }
    upstreams.push((Upstream::Tls, &bench.double, bench.seeded));
    let portal_config = fixtures::portal_config(clusters);
    let portal = PortalProcess::start(&bench.binaries, bench.dir, "proxy", &portal_config).await?;
    let tool = |program: &str| -> Program {
        processes::require_tool(program, program).map_err(|error| format!("{error:#}"))
    };
    let nginx = tool("nginx");
    let haproxy = tool("haproxy");
    let bare_hyper = bare_hyper(&bench.binaries);

    // Every proxy in front of every upstream, checked before any load.
    let mut peers = Vec::new();
    let mut kubectls = Vec::new();
    let mut endpoints = Vec::new();
    let mut unavailable: BTreeMap<Upstream, BTreeMap<Via, String>> = BTreeMap::new();
    for (upstream, double, seeded) in &upstreams {
        let (upstream, seeded) = (*upstream, *seeded);
        let name = upstream.name();
        let unavailable = unavailable.entry(upstream).or_default();
        let mut mine = vec![
            Endpoint::direct(upstream, seeded, &double.url, &double.token, double.pid()),
            Endpoint::kubeportal(upstream, seeded, &portal.url, portal.child.pid()),
        ];
        for (via, program) in [
            (Via::Nginx, &nginx),
            (Via::HaProxy, &haproxy),
            (Via::BareHyper, &bare_hyper),
        ] {
            let started = match program {
                Ok(program) => start_peer(via, program, double, bench.dir, name, None)
                    .await
                    .map_err(|error| format!("{error:#}")),
                Err(reason) => Err(reason.clone()),
            };
            match started {
                Ok(peer) => {
                    mine.push(Endpoint::plain(
                        upstream,
                        seeded,
                        via,
                        &peer.url,
                        peer.pid(),
                    ));
                    peers.push(peer);
                }
                Err(reason) => {
                    unavailable.insert(via, reason);
                }
            }
        }
        match KubectlProxy::start(double, bench.dir, &format!("kubectl-proxy-{name}")).await {
            Ok(kubectl) => {
                mine.push(Endpoint::plain(
                    upstream,
                    seeded,
                    Via::KubectlProxy,
                    &kubectl.url,
                    kubectl.pid(),
                ));
                kubectls.push(kubectl);
            }
            Err(error) => {
                unavailable.insert(Via::KubectlProxy, format!("{error:#}"));
            }
        }
        let checked: Vec<&Endpoint> = mine.iter().collect();
        let failures = proxy::check_endpoints(&checked, &bench.ca_pem).await?;
        if let Some(reason) = failures.get(&Via::Direct) {
            bail!("the {name} double itself does not answer as expected: {reason}");
        }
        mine.retain(|endpoint| !failures.contains_key(&endpoint.via));
        unavailable.extend(failures.into_iter().map(|(via, reason)| {
            // kubectl (client-go) sends no bearer token to an http:// server.
            let unauthenticated =
                via == Via::KubectlProxy && !double.is_tls() && reason.contains("401");
            let reason = if unauthenticated {
                format!(
                    "not measured: kubectl sends no bearer token to an http:// server, \
                     which the double requires ({reason})"
                )
            } else {
                reason
            };
            (via, reason)
        }));
        endpoints.extend(mine);
    }

    let schedule = proxy::Schedule {
        rounds: bench.arguments.rounds as usize,
        warm_up: Duration::from_secs(bench.arguments.warm_up),
        duration: Duration::from_secs(bench.arguments.duration),
    };
    let mut runs = proxy::measure(&wrk, &endpoints, schedule).await;
    // The loaded processes are done; callgrind runs its own, one at a time.
    drop((peers, kubectls, portal));

    let callgrind = callgrind::Callgrind::new().map_err(|error| format!("{error:#}"));
    if let Err(reason) = &callgrind {
        findings
            .notes
            .push(format!("instructions per request not measured: {reason}"));
    }
    for (upstream, double, seeded) in upstreams {
        let unavailable = unavailable.remove(&upstream).unwrap_or_default();
        let instructions = match &callgrind {
            Ok(callgrind) => Ok(count_instructions(
                bench,
                callgrind,
                CountTarget {
                    upstream,
                    seeded,
                    double,
                    portal_config: &portal_config,
                    nginx: &nginx,
                    haproxy: &haproxy,
                    bare_hyper: &bare_hyper,
                },
            )
            .await),
            Err(reason) => Err(reason.clone()),
        };
        let results = UpstreamResults {
            upstream,
            seeded,
            runs: Via::ALL
                .iter()
                .flat_map(|via| Scenario::ALL.map(|scenario| (scenario, *via)))
                .filter_map(|(scenario, via)| {
                    let run = runs.remove(&(scenario, upstream, via))?;
                    Some(((scenario, via), run))
                })
                .collect(),
            unavailable,
            instructions,
        };
        let name = upstream.name();
        for (via, reason) in &results.unavailable {
            let reason = reason.strip_prefix("not measured: ").unwrap_or(reason);
            findings.notes.push(format!(
                "{} ({name} upstream) not measured: {reason}",
                via.label()
            ));
        }
        for ((scenario, via), result) in &results.runs {
            if let Err(reason) = result {
                findings.notes.push(format!(
                    "{scenario} via {} ({name} upstream): {reason}",
                    via.label()
                ));
            }
        }
        if let Ok(measured) = &results.instructions {
            for (via, result) in measured {
                if let Err(reason) = result {
                    findings.notes.push(format!(
                        "instructions per request of {} ({name} upstream): {reason}",
                        via.label()
                    ));
                }
            }
        }
        report::proxy_rows(&mut findings.table, &results);
    }
    Ok(())
}

/// The bare hyper proxy's program, or why it is missing.
fn bare_hyper(binaries: &Binaries) -> Program {
    let program = &binaries.hyper_proxy;
    if program.exists() {
        Ok(program.clone())
    } else {
        Err(format!(
            "not measured: {} is missing (cargo build --release -p kubeportal-bench)",
            program.display()
        ))
    }
}

/// Starts nginx, HAProxy or the bare hyper proxy in front of `double`.
async fn start_peer(
    via: Via,
    program: &Path,
    double: &DoubleProcess,
    dir: &Path,
    upstream: &str,
    wrapper: Option<&processes::Wrapper>,
) -> Result<PeerProxy> {
    let variant = if wrapper.is_some() { "-callgrind" } else { "" };
    match via {
        Via::Nginx => {
            let name = format!("nginx-{upstream}{variant}");
            PeerProxy::nginx(program, double, dir, &name, wrapper).await
        }
        Via::HaProxy => {
            let name = format!("haproxy-{upstream}{variant}");
            PeerProxy::haproxy(program, double, dir, &name, wrapper).await
        }
        Via::BareHyper => {
            let name = format!("hyper-proxy-{upstream}{variant}");
            PeerProxy::bare_hyper(program, double, dir, &name, wrapper).await
        }
        other => bail!("{} is not a peer proxy", other.label()),
    }
}

/// What the instructions of one upstream's proxies are counted against.
struct CountTarget<'a> {
    upstream: Upstream,
    seeded: fixtures::Seeded,
    double: &'a DoubleProcess,
    portal_config: &'a Value,
    nginx: &'a Program,
    haproxy: &'a Program,
    bare_hyper: &'a Program,
}

/// Instructions per request of kubeportal, nginx, HAProxy and the bare hyper
/// proxy in front of one upstream, each started afresh under callgrind and
/// stopped after.
async fn count_instructions(
    bench: &Bench<'_>,
    callgrind: &callgrind::Callgrind,
    target: CountTarget<'_>,
) -> BTreeMap<Via, Result<callgrind::Instructions, String>> {
    let CountTarget {
        upstream,
        seeded,
        double,
        ..
    } = target;
    let name = upstream.name();
    let path = proxy::get_pod_path();
    let mut measured = BTreeMap::new();
    let direct = Endpoint::direct(upstream, seeded, &double.url, &double.token, double.pid());
    let expected = match fixtures::double_client(&bench.ca_pem) {
        Ok(client) => proxy::fetch(&client, &direct, reqwest::Method::GET, &path)
            .await
            .map_err(|error| format!("GET {path} directly: {error}"))
            .map(|(_, body)| body),
        Err(error) => Err(format!("{error:#}")),
    };
    for via in [Via::Kubeportal, Via::Nginx, Via::HaProxy, Via::BareHyper] {
        eprintln!(
            "  counting instructions of {} ({name} upstream) under callgrind…",
            via.label()
        );
        let result = async {
            let expected = expected.as_ref().map_err(|reason| anyhow!("{reason}"))?;
            let directory = bench.dir.join(format!("callgrind-{}-{name}", via.slug()));
            let wrapper = callgrind.wrapper(&directory)?;
            // The process under callgrind, stopped when this is dropped.
            let (pid, endpoint, _running) = match via {
                Via::Kubeportal => {
                    let portal = PortalProcess::start_wrapped(
                        &bench.binaries,
                        bench.dir,
                        &format!("proxy-callgrind-{name}"),
                        target.portal_config,
                        Some(&wrapper),
                    )
                    .await?;
                    let pid = portal.child.pid();
                    let endpoint = Endpoint::kubeportal(upstream, seeded, &portal.url, pid);
                    (pid, endpoint, Box::new(portal) as Box<dyn std::any::Any>)
                }
                _ => {
                    let program = match via {
                        Via::Nginx => target.nginx,
                        Via::HaProxy => target.haproxy,
                        Via::BareHyper => target.bare_hyper,
                        other => bail!("{} is not a peer proxy", other.label()),
                    };
                    let program = program.as_ref().map_err(|reason| anyhow!("{reason}"))?;
                    let peer =
                        start_peer(via, program, double, bench.dir, name, Some(&wrapper)).await?;
                    let pid = peer.pid();
                    let endpoint = Endpoint::plain(upstream, seeded, via, &peer.url, pid);
                    (pid, endpoint, Box::new(peer) as Box<dyn std::any::Any>)
                }
            };
            callgrind
                .count(pid, &directory, &endpoint, &path, expected)
                .await
        }
        .await
        .map_err(|error| format!("{error:#}"));
        match &result {
            Ok(instructions) if instructions.store > 0 => eprintln!(
                "    {:.0} instructions per request ({:.0} on SQLite's threads)",
                instructions.per_request(),
                instructions.store_per_request()
            ),
            Ok(instructions) => eprintln!(
                "    {:.0} instructions per request",
                instructions.per_request()
            ),
            Err(reason) => eprintln!("    failed: {reason}"),
        }
        measured.insert(via, result);
    }
    measured
}

/// kubeportal's memory under a 1 GiB log and under many watches.
async fn memory_section(bench: &Bench<'_>, findings: &mut Findings) {
    eprintln!("memory:");
    findings
        .table
        .section("memory of kubeportal (fresh process each)");
    eprintln!("  streaming a 1 GiB pod log…");
    let log = async {
        let portal = PortalProcess::start(
            &bench.binaries,
            bench.dir,
            "memory-log",
            &bench.portal_config,
        )
        .await?;
        memory::stream_log(&portal).await
    }
    .await;
    match log {
        Ok(result) => report::log_rows(&mut findings.table, &result),
        Err(error) => findings.failed("1 GiB pod log", &error, "< 64 MiB"),
    }

    let wanted = bench.arguments.watches;
    let client = match fixtures::double_client(&bench.ca_pem) {
        Ok(client) => client,
        Err(error) => return findings.failed("watches", &error, "< 512 MiB, all open"),
    };
    // A pod created on the double, which every open watch must deliver; it is
    // deleted again so that the next watches start from an empty namespace.
    let probe = |name: &'static str| {
        let client = client.clone();
        let pods = format!(
            "{}/api/v1/namespaces/{WATCH_NAMESPACE}/pods",
            bench.double.url
        );
        let token = bench.double.token.clone();
        async move {
            client
                .post(&pods)
                .bearer_auth(&token)
                .json(&serde_json::json!({
                    "metadata": {"name": name},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                }))
                .send()
                .await?
                .error_for_status()?;
            anyhow::Ok(())
        }
    };
    let remove_probe = |name: &'static str| {
        client
            .delete(format!(
                "{}/api/v1/namespaces/{WATCH_NAMESPACE}/pods/{name}",
                bench.double.url
            ))
            .bearer_auth(&bench.double.token)
            .send()
    };
    if bench.open_files < wanted as u64 + 1_000 {
        let error = anyhow!(
            "the open-file limit is {}, too low for {wanted} watches (raise the hard limit: ulimit -Hn)",
            bench.open_files
        );
        return findings.failed("watches", &error, "< 512 MiB, all open");
    }

    // Direct first, while the double's memory is fresh: the same watches
    // held by the double itself, one TLS connection each, as clients do.
    eprintln!("  holding {wanted} watches directly…");
    let direct = memory::hold_watches(
        memory::WatchTarget {
            url: memory::direct_watch_url(&bench.double.url),
            headers: vec![(
                "Authorization".into(),
                format!("Bearer {}", bench.double.token),
            )],
            ca_pem: Some(&bench.ca_pem),
            pid: bench.double.pid(),
            portal: None,
            cluster_pid: None,
        },
        probe("probe-direct"),
        wanted,
        bench.open_files,
    )
    .await;
    let _ = remove_probe("probe-direct").await;
    let direct = match direct {
        Ok(result) => {
            if let Some((reason, count)) = &result.failures {
                findings.notes.push(format!(
                    "direct: {count} of {wanted} watches were not opened on the double; \
                     the first failure: {reason}"
                ));
            }
            (result.opened > 0).then_some(result)
        }
        Err(error) => {
            findings
                .notes
                .push(format!("direct watches failed: {error:#}"));
            None
        }
    };

    eprintln!("  holding {wanted} watches through kubeportal…");
    let watches = async {
        let portal = PortalProcess::start(
            &bench.binaries,
            bench.dir,
            "memory-watch",
            &bench.portal_config,
        )
        .await?;
        memory::hold_watches(
            memory::WatchTarget {
                url: memory::portal_watch_url(&portal),
                headers: fixtures::portal_headers(),
                ca_pem: None,
                pid: portal.child.pid(),
                portal: Some(&portal),
                cluster_pid: Some(bench.double.pid()),
            },
            probe("probe"),
            wanted,
            bench.open_files,
        )
        .await
    }
    .await;
    let _ = remove_probe("probe").await;
    match watches {
        Ok(result) => {
            if let Some((reason, count)) = &result.failures {
                findings.notes.push(format!(
                    "{count} of {wanted} watches were not opened; the first failure: {reason}; \
                     kubeportal's open-file limit was {}",
                    result.open_files
                ));
            }
            // Each watch through kubeportal holds its caller's socket and a
            // stream on one of the cluster connections (100 streams each).
            let needed = wanted + wanted.div_ceil(100) + 100;
            if (result.open_files as usize) < needed {
                findings.notes.push(format!(
                    "{wanted} watches need about {needed} open files in kubeportal (a socket \
                     each, and one per 100 upstream streams), and its limit was {}",
                    result.open_files
                ));
            }
            for (reason, count) in &result.undelivered {
                findings.notes.push(format!(
                    "{count} open watches did not deliver the new pod's event: {reason}"
                ));
            }
            if let Some(error) = &result.logged_error {
                findings
                    .notes
                    .push(format!("kubeportal logged during the watches: {error}"));
            }
            report::watch_rows(&mut findings.table, &result, direct.as_ref());
        }
        Err(error) => findings.failed("watches", &error, "< 512 MiB, all open"),
    }
}

/// Lookups at 100,000 clusters on SQLite, and on Postgres when reachable.
async fn registry_section(bench: &Bench<'_>, findings: &mut Findings) {
    eprintln!("registry lookups at {} clusters:", registry::CLUSTERS);
    findings.table.section(&format!(
        "cluster registry, {} clusters, in process",
        report::thousands(registry::CLUSTERS as f64)
    ));
    eprintln!("  SQLite…");
    match registry::sqlite(bench.dir).await {
        Ok(result) => {
            findings
                .plans
                .push((result.store.to_owned(), result.plan.clone()));
            report::registry_rows(&mut findings.table, &result);
        }
        Err(error) => findings.failed("sqlite", &error, "p99 < 1 ms"),
    }
    eprintln!("  Postgres…");
    match registry::postgres().await {
        Ok(Some(result)) => {
            findings
                .plans
                .push((result.store.to_owned(), result.plan.clone()));
            report::registry_rows(&mut findings.table, &result);
        }
        Ok(None) => findings.not_measured(
            "postgres",
            &format!(
                "no Postgres server reachable at {} (set TEST_DATABASE_URL)",
                redact_url(&registry::postgres_admin_url())
            ),
        ),
        Err(error) => findings.failed("postgres", &error, "p99 < 1 ms"),
    }
}

/// Entity object queries over 1, 10 and 50 clusters.
async fn fanout_section(bench: &Bench<'_>, findings: &mut Findings) {
    eprintln!("object fan-out:");
    findings
        .table
        .section("entity objects (POST /api/kubernetes/services/{entityName}), object cache off");
    match fanout::measure(&bench.binaries, bench.dir).await {
        Ok(fanout::FanOut::Measured(results)) => report::fanout_rows(&mut findings.table, &results),
        Ok(fanout::FanOut::RouteNotAvailable) => findings.not_measured(
            "object fan-out",
            "route not available (kubeportal does not serve it)",
        ),
        Err(error) => findings.failed("object fan-out", &error, ""),
    }
}

/// The small GET by the caller's token: static, or a user's ES256 JWT
/// remembered once verified or checked on every request.
async fn identity_section(bench: &Bench<'_>, findings: &mut Findings) {
    eprintln!("identity:");
    let what = "identity";
    let target = report::IDENTITY_TARGET;
    let wrk = match wrk::Wrk::new(bench.dir) {
        Ok(wrk) => wrk,
        Err(error) => {
            findings.table.section(what);
            return findings.not_measured(what, &format!("{error:#}"));
        }
    };
    let schedule = proxy::Schedule {
        rounds: bench.arguments.rounds as usize,
        warm_up: Duration::from_secs(bench.arguments.warm_up),
        duration: Duration::from_secs(bench.arguments.duration),
    };
    match identity::measure(
        &bench.binaries,
        bench.dir,
        &wrk,
        &bench.portal_config,
        bench.seeded.pod_bytes,
        schedule,
    )
    .await
    {
        Ok(result) => {
            for (load, connections) in identity::CONNECTIONS.iter().enumerate() {
                for way in identity::Way::ALL {
                    if let Err(reason) = result.run(load, way) {
                        findings.notes.push(format!(
                            "identity, {connections} conn, {}: {reason}",
                            way.label()
                        ));
                    }
                }
            }
            report::identity_rows(&mut findings.table, &result);
        }
        Err(error) => {
            findings.table.section(what);
            findings.failed(what, &error, target);
        }
    }
}

/// A list of every pod filtered for a tenant, beside the same list unfiltered.
async fn tenants_section(bench: &Bench<'_>, findings: &mut Findings) {
    eprintln!("tenant views:");
    let what = "tenant views";
    let target = ">=0.5x unfiltered, < 64 MiB";
    let wrk = match wrk::Wrk::new(bench.dir) {
        Ok(wrk) => wrk,
        Err(error) => {
            findings.table.section(what);
            return findings.not_measured(what, &format!("{error:#}"));
        }
    };
    let schedule = proxy::Schedule {
        rounds: bench.arguments.rounds as usize,
        warm_up: Duration::from_secs(bench.arguments.warm_up),
        duration: Duration::from_secs(bench.arguments.duration),
    };
    match tenants::measure(&bench.binaries, bench.dir, &wrk, schedule).await {
        Ok(result) => {
            for way in [
                tenants::Way::Direct,
                tenants::Way::Unfiltered,
                tenants::Way::Filtered,
            ] {
                if let Err(reason) = result.run(way) {
                    findings
                        .notes
                        .push(format!("tenant LIST via {}: {reason}", way.label()));
                }
            }
            for (which, memory) in [
                ("filtered", &result.memory_filtered),
                ("unfiltered", &result.memory_unfiltered),
            ] {
                if let Err(reason) = memory {
                    findings
                        .notes
                        .push(format!("tenant concurrent {which} lists: {reason}"));
                }
            }
            report::tenant_rows(&mut findings.table, &result);
        }
        Err(error) => {
            findings.table.section(what);
            findings.failed(what, &error, target);
        }
    }
}

/// The fleet view's list across clusters, and its watches' memory.
async fn fleet_section(bench: &Bench<'_>, findings: &mut Findings) {
    eprintln!("fleet view:");
    findings.table.section(&format!(
        "fleet view (GET /api/kubernetes/fleet/{{clusterGlob}}/proxy/api/v1/pods), {} pods per cluster",
        fleet::PODS
    ));
    match fleet::measure(&bench.binaries, bench.dir).await {
        Ok(result) => {
            if let Ok(watches) = &result.watches {
                if let Some(error) = &watches.logged_error {
                    findings.notes.push(format!(
                        "kubeportal logged during the fleet watches: {error}"
                    ));
                }
            }
            if let Err(reason) = &result.watches {
                findings
                    .notes
                    .push(format!("fleet watches failed: {reason}"));
            }
            report::fleet_rows(&mut findings.table, &result);
        }
        Err(error) => findings.failed(
            "fleet list",
            &error,
            &format!("<= {:.1}x slowest single", fleet::TARGET_RATIO),
        ),
    }
}

/// A database URL without its password.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_not_printed() {
        assert_eq!(
            redact_url("postgres://app:secret@db:5432/postgres"),
            "postgres://app:***@db:5432/postgres"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
    }

    #[test]
    fn arguments_parse() {
        let arguments = Arguments::try_parse_from([
            "kubeportal-bench",
            "--only",
            "proxy,registry",
            "--duration",
            "3",
        ])
        .unwrap();
        assert_eq!(arguments.only, vec![Section::Proxy, Section::Registry]);
        assert_eq!(arguments.duration, 3);
        assert_eq!(arguments.watches, 10_000);
        let arguments =
            Arguments::try_parse_from(["kubeportal-bench", "--only", "tenants"]).unwrap();
        assert_eq!(arguments.only, vec![Section::Tenants]);
        let arguments = Arguments::try_parse_from(["kubeportal-bench", "--only", "fleet"]).unwrap();
        assert_eq!(arguments.only, vec![Section::Fleet]);
    }
}
