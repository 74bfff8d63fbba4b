//! What the numbers were measured on.

use std::process::Command;

/// The 1, 5 and 15 minute load averages: other work on the machine shares
/// its cores with the benchmark.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

/// The machine and tool versions, one `key: value` per line.
pub fn describe(
    load_at_start: &str,
    kubeportal_binary: Option<&std::path::Path>,
) -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map_or_else(
            || "unknown".to_owned(),
            |(_, model)| model.trim().to_owned(),
        );
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
        |_| "unknown".to_owned(),
        |release| release.trim().to_owned(),
    );
    vec![
        ("CPU".into(), format!("{cpu} ({cores} cores available)")),
        ("RAM".into(), memory),
        ("kernel".into(), format!("Linux {kernel}")),
        (
            "load average".into(),
            format!("{load_at_start} at start, {} at end", load_average()),
        ),
        (
            "kubeportal".into(),
            match kubeportal_binary {
                Some(binary) => format!("{} (given with --kubeportal)", binary.display()),
                None => format!("{} (release build)", source_revision()),
            },
        ),
        ("rustc".into(), first_line("rustc", &["--version"])),
        ("wrk".into(), wrk_version()),
        ("nginx".into(), first_line("nginx", &["-v"])),
        ("HAProxy".into(), first_line("haproxy", &["-v"])),
        ("kubectl".into(), kubectl_version()),
        ("valgrind".into(), first_line("valgrind", &["--version"])),
    ]
}

/// The commit measured, and whether the working tree differed from it.
fn source_revision() -> String {
    let root = crate::processes::workspace_root();
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|status| !status.is_empty());
            if dirty {
                format!("commit {commit} plus uncommitted changes")
            } else {
                format!("commit {commit}")
            }
        }
        None => "unknown revision".into(),
    }
}

/// The first line a program prints on stdout or stderr (nginx -v uses stderr).
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|output| {
            let text = if output.stdout.is_empty() {
                output.stderr
            } else {
                output.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .map(|line| line.trim().to_owned())
        })
        .filter(|line| !line.is_empty())
        .unwrap_or_else(|| format!("{program}: not installed"))
}

fn wrk_version() -> String {
    // `wrk -v` prints its version and a copyright on one line.
    let line = first_line("wrk", &["-v"]);
    line.split(" Copyright")
        .next()
        .unwrap_or(&line)
        .trim()
        .to_owned()
}

fn kubectl_version() -> String {
    let line = first_line("kubectl", &["version", "--client"]);
    line.strip_prefix("Client Version: ")
        .map_or(line.clone(), str::to_owned)
}
