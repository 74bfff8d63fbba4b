//! `kubeportal-bench fleet-profile`: kubeportal's cost of one fleet list
//! over many clusters, alone, for finding where it goes.
//!
//! The doubles run in this process, as in the fleet section. kubeportal
//! lists the fleet a few times unmeasured, then `--lists` times measured:
//! its CPU time and wall time per list; with `--callgrind`, it runs under
//! valgrind's callgrind (instrumented only from the first list on) and the
//! figure is the instructions it executed per list, repeatable whatever
//! else the machine does, with the profile of the measured lists left in
//! the working directory for `callgrind_annotate`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::fixtures;
use crate::fleet;
use crate::processes::{cpu_time, Binaries, PortalProcess, Wrapper};

/// How long kubeportal may take to start under valgrind.
/// Unmeasured lists first (connections opened, caches filled).
const WARM_UP_LISTS: usize = 3;

#[derive(Debug, Clone, clap::Args)]
pub struct ProfileArguments {
    /// Clusters in the fleet.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub clusters: u64,
    /// Measured fleet lists.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub lists: u64,
    /// Each member answers a list after this many milliseconds (the fleet
    /// section's second pass uses 50), so that their answers arrive together.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub member_latency_ms: u64,
    /// Run kubeportal under callgrind and count its instructions per list.
    #[arg(long)]
    pub callgrind: bool,
    /// Use the release binaries already built rather than building them first.
    #[arg(long)]
    pub no_build: bool,
    /// Profile this kubeportal binary instead (e.g. one built with debug
    /// line tables for `callgrind_annotate`).
    #[arg(long, value_name = "PATH")]
    pub kubeportal: Option<PathBuf>,
    /// Keep the working directory here (the profile, configuration and
    /// logs); a temporary one is removed at the end otherwise, unless
    /// `--callgrind`, whose profile is the point.
    #[arg(long, value_name = "DIR")]
    pub directory: Option<PathBuf>,
}

pub async fn run(arguments: ProfileArguments) -> Result<()> {
    crate::processes::raise_open_file_limit();
    let mut binaries = Binaries::locate(!arguments.no_build)?;
    if let Some(kubeportal) = &arguments.kubeportal {
        binaries.kubeportal = kubeportal.clone();
    }
    let (directory, _removed_at_end) = match &arguments.directory {
        Some(directory) => {
            std::fs::create_dir_all(directory)?;
            (directory.clone(), None)
        }
        None => {
            crate::processes::working_directory("kubeportal-fleet-profile-", arguments.callgrind)?
        }
    };
    let clusters = arguments.clusters as usize;
    eprintln!(
        "starting {clusters} doubles with {} pods each…",
        fleet::PODS
    );
    let doubles = fleet::start_doubles(clusters).await?;
    for double in &doubles {
        double.delay_resource("pods", Duration::from_millis(arguments.member_latency_ms));
    }
    let wrapper = arguments.callgrind.then(|| Wrapper {
        program: "valgrind".into(),
        args: vec![
            "--tool=callgrind".into(),
            "--instr-atstart=no".into(),
            format!(
                "--callgrind-out-file={}/callgrind.out.%p",
                directory.display()
            )
            .into(),
        ],
    });
    let portal = PortalProcess::start_wrapped(
        &binaries,
        &directory,
        "fleet-profile",
        &fleet::portal_config(&doubles),
        wrapper.as_ref(),
    )
    .await?;
    let pid = portal.child.pid();
    if arguments.callgrind {
        callgrind_control(&["--instr=on"], pid)?;
    }
    let client = reqwest::Client::new();
    let url = fleet::fleet_url(&portal);
    let mut bytes = 0;
    for _ in 0..WARM_UP_LISTS {
        let body = fleet::get(&client, &url, fixtures::PORTAL_TOKEN).await?;
        fleet::check_fleet_list(&body, clusters)?;
        bytes = body.len();
    }
    if arguments.callgrind {
        callgrind_control(&["--zero"], pid)?;
    }
    let lists = arguments.lists as usize;
    let cpu_before = cpu_time(pid)?;
    let own_before = cpu_time(std::process::id())?;
    let mut walls = Vec::with_capacity(lists);
    for _ in 0..lists {
        let started = Instant::now();
        let body = fleet::get(&client, &url, fixtures::PORTAL_TOKEN).await?;
        walls.push(started.elapsed());
        ensure!(body.len() == bytes, "the fleet list changed size");
    }
    let cpu = cpu_time(pid)?.saturating_sub(cpu_before) / lists as u32;
    let own = cpu_time(std::process::id())?.saturating_sub(own_before) / lists as u32;
    walls.sort();
    let mib = bytes as f64 / f64::from(1 << 20);
    println!(
        "fleet list over {clusters} clusters: {bytes} bytes ({mib:.1} MiB), {lists} lists measured"
    );
    println!(
        "  kubeportal CPU per list: {:.1} ms ({:.2} ms per MiB); wall p50 {:.1} ms",
        cpu.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e3 / mib,
        walls[lists / 2].as_secs_f64() * 1e3
    );
    println!(
        "  this process's CPU per list (the doubles answering, the client reading): {:.1} ms",
        own.as_secs_f64() * 1e3
    );
    if arguments.callgrind {
        let profile = dump(pid, &directory)?;
        let instructions = totals(&profile)?;
        println!(
            "  instructions per list: {:.1} M ({:.2} M per MiB)",
            instructions as f64 / lists as f64 / 1e6,
            instructions as f64 / lists as f64 / 1e6 / mib
        );
        println!(
            "  profile of the measured lists: {}\n  read it with: callgrind_annotate --inclusive=yes {}",
            profile.display(),
            profile.display()
        );
    }
    if let Some(error) = portal.first_logged_error() {
        bail!("kubeportal logged: {error}");
    }
    Ok(())
}

fn callgrind_control(arguments: &[&str], pid: u32) -> Result<()> {
    let status = std::process::Command::new("callgrind_control")
        .args(arguments)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .context("running callgrind_control (apt-get install valgrind)")?;
    ensure!(status.success(), "callgrind_control {arguments:?} failed");
    Ok(())
}

/// Dumps the counts since they were zeroed; the file they went to.
fn dump(pid: u32, directory: &Path) -> Result<PathBuf> {
    let before = dumps(pid, directory)?;
    callgrind_control(&["--dump=measured fleet lists"], pid)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(path) = dumps(pid, directory)?
            .into_iter()
            .find(|path| !before.contains(path))
        {
            // Written once callgrind_control returns.
            return Ok(path);
        }
        ensure!(Instant::now() < deadline, "callgrind wrote no dump");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dumps(pid: u32, directory: &Path) -> Result<Vec<PathBuf>> {
    let prefix = format!("callgrind.out.{pid}.");
    Ok(std::fs::read_dir(directory)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix))
        })
        .collect())
}

/// The instructions a callgrind profile counts in all.
fn totals(profile: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(profile)?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("totals:")
                .or_else(|| line.strip_prefix("summary:"))
        })
        .and_then(|counts| counts.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{} holds no totals", profile.display()))
}
