//! Instructions per request of a proxy, counted by valgrind's callgrind: the
//! proxy runs under `valgrind --tool=callgrind`, takes a warm-up of
//! sequential GETs, its counters are zeroed (`callgrind_control --zero`),
//! it serves [`REQUESTS`] sequential GETs over one keep-alive connection,
//! and the counters are dumped (`callgrind_control --dump`); the dump's
//! total of executed instructions (all threads together) over the requests
//! is the figure. Each thread is counted apart, so that the part of
//! kubeportal's count spent on SQLite's worker threads (the audit trail's
//! statements, off the request's path, in batches whose size depends on the
//! machine's speed) is told apart from the rest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::{Method, StatusCode};

use crate::processes::{self, Wrapper};
use crate::proxy::{self, Endpoint};

/// Sequential GETs before the counters are zeroed (connections opened,
/// code paths and caches warm).
pub const WARM_UP_REQUESTS: usize = 300;
/// Sequential GETs counted.
pub const REQUESTS: usize = 2_000;

/// valgrind and callgrind_control.
pub struct Callgrind {
    valgrind: PathBuf,
    control: PathBuf,
}

/// What one proxy executed for [`REQUESTS`] requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Instructions {
    /// Instructions executed (callgrind's `Ir`, all threads).
    pub total: u64,
    /// Of those, the instructions of the threads that ran SQLite
    /// (`sqlite3_step`): sqlx's SQLite worker threads, which run kubeportal's
    /// audit statements (the writer builds its batches on the runtime's
    /// threads, counted with the rest). 0 for a proxy without them.
    pub store: u64,
    pub requests: u64,
}

impl Instructions {
    pub fn per_request(&self) -> f64 {
        self.total as f64 / self.requests.max(1) as f64
    }

    /// [`Instructions::store`] per request.
    pub fn store_per_request(&self) -> f64 {
        self.store as f64 / self.requests.max(1) as f64
    }
}

impl Callgrind {
    /// valgrind from PATH (installed from Debian when missing).
    pub fn new() -> Result<Callgrind> {
        let valgrind = processes::require_tool("valgrind", "valgrind")?;
        let control = processes::which("callgrind_control")
            .ok_or_else(|| anyhow!("callgrind_control not installed: apt-get install valgrind"))?;
        Ok(Callgrind { valgrind, control })
    }

    /// `valgrind --tool=callgrind`, its output files in `directory` (created).
    pub fn wrapper(&self, directory: &Path) -> Result<Wrapper> {
        std::fs::create_dir_all(directory)?;
        Ok(Wrapper {
            program: self.valgrind.clone(),
            args: vec![
                "--tool=callgrind".into(),
                // A count per thread: their sum is the process's.
                "--separate-threads=yes".into(),
                format!(
                    "--callgrind-out-file={}",
                    directory.join("callgrind.out.%p").display()
                )
                .into(),
            ],
        })
    }

    /// Counts the instructions process `pid` (running under [`wrapper`]
    /// with `directory`) executes to serve [`REQUESTS`] sequential GETs of
    /// `path` from `endpoint`, each of which must answer `expected`.
    ///
    /// [`wrapper`]: Callgrind::wrapper
    pub async fn count(
        &self,
        pid: u32,
        directory: &Path,
        endpoint: &Endpoint,
        path: &str,
        expected: &[u8],
    ) -> Result<Instructions> {
        // HTTP/1.1, one idle connection kept: sequential requests reuse it
        // (a new one is opened only if the proxy closes it, as nginx does
        // after 1,000 requests by default).
        let client = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(60))
            .build()?;
        let send = |count: usize| {
            let client = &client;
            async move {
                for index in 0..count {
                    let (status, body) = proxy::fetch(client, endpoint, Method::GET, path)
                        .await
                        .with_context(|| format!("GET {path} ({} of {count})", index + 1))?;
                    if status != StatusCode::OK {
                        bail!("GET {path} ({} of {count}): {status}", index + 1);
                    }
                    if body != expected {
                        bail!(
                            "GET {path} ({} of {count}): {} bytes that differ from the direct {}",
                            index + 1,
                            body.len(),
                            expected.len()
                        );
                    }
                }
                Ok(())
            }
        };
        send(WARM_UP_REQUESTS).await.context("warming up")?;
        self.control("--zero", pid).await?;
        send(REQUESTS).await?;
        self.control("--dump", pid).await?;
        let (total, store) = newest_totals(directory, pid)?;
        Ok(Instructions {
            total,
            store,
            requests: REQUESTS as u64,
        })
    }

    /// `callgrind_control OPTION PID`, which must succeed.
    async fn control(&self, option: &str, pid: u32) -> Result<()> {
        let output = tokio::process::Command::new(&self.control)
            .arg(option)
            .arg(pid.to_string())
            .kill_on_drop(true)
            .output()
            .await
            .context("running callgrind_control")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || !stdout.contains("OK") {
            bail!(
                "callgrind_control {option} {pid} failed ({}): {} {}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The instruction totals of the newest dump of `pid` in `directory`, one
/// file per thread (`callgrind.out.PID.N-TT`, the highest N): all threads',
/// and those of the threads that ran SQLite.
fn newest_totals(directory: &Path, pid: u32) -> Result<(u64, u64)> {
    let prefix = format!("callgrind.out.{pid}.");
    let mut dumps: Vec<(u32, PathBuf)> = std::fs::read_dir(directory)?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let (part, thread) = name.strip_prefix(&prefix)?.split_once('-')?;
            thread.parse::<u32>().ok()?;
            Some((part.parse().ok()?, entry.path()))
        })
        .collect();
    let newest = dumps
        .iter()
        .map(|(part, _)| *part)
        .max()
        .ok_or_else(|| anyhow!("no callgrind dump of {pid} in {}", directory.display()))?;
    dumps.retain(|(part, _)| *part == newest);
    let (mut total, mut store) = (0, 0);
    for (_, path) in dumps {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let thread =
            parse_total(&text).ok_or_else(|| anyhow!("no totals line in {}", path.display()))?;
        total += thread;
        if runs_sqlite(&text) {
            store += thread;
        }
    }
    Ok((total, store))
}

/// Whether a thread's dump names SQLite's statement step, as a function it
/// ran or called (a name is written out in full where it first appears).
fn runs_sqlite(dump: &str) -> bool {
    dump.lines().any(|line| {
        (line.starts_with("fn=") || line.starts_with("cfn=")) && line.ends_with(" sqlite3_step")
    })
}

/// The first event's count on a dump's `totals:` line (or `summary:`,
/// which older versions write instead).
fn parse_total(dump: &str) -> Option<u64> {
    let line = |key: &str| {
        dump.lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    line("totals:").or_else(|| line("summary:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_from_a_dump() {
        let dump = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\n\
                    events: Ir\nfn=(1) main\n5 100\nsummary: 1184480\n\ntotals: 1184876\n";
        assert_eq!(parse_total(dump), Some(1_184_876));
        assert_eq!(parse_total("events: Ir\nsummary: 42\n"), Some(42));
        assert_eq!(parse_total("events: Ir\n"), None);
        let instructions = Instructions {
            total: 3_000_000,
            store: 1_000_000,
            requests: 2_000,
        };
        assert_eq!(instructions.per_request(), 1_500.0);
        assert_eq!(instructions.store_per_request(), 500.0);
    }

    #[test]
    fn the_newest_dump_is_summed_over_its_threads() {
        let directory = tempfile::tempdir().unwrap();
        let write =
            |name: &str, body: &str| std::fs::write(directory.path().join(name), body).unwrap();
        let dump = |calls: &str, total: u64| {
            format!("# callgrind format\nversion: 1\nevents: Ir\nfn=(1) main\n{calls}5 100\ntotals: {total}\n")
        };
        for (name, calls, total) in [
            // An earlier dump is not the one counted: the newest is the
            // highest number, not the last in text order.
            ("callgrind.out.42.9-01", "", 7),
            (
                "callgrind.out.42.10-01",
                "cfn=(2) tokio::run\ncalls=1 0\n",
                1_000,
            ),
            // SQLite's step named first where the thread calls it, or where
            // it runs (the dump is sorted by object and file, either comes
            // first), and a look-alike name.
            (
                "callgrind.out.42.10-02",
                "cfn=(3) sqlite3_step\ncalls=1 0\n",
                300,
            ),
            ("callgrind.out.42.10-103", "fn=(3) sqlite3_step\n", 40),
            ("callgrind.out.42.10-04", "fn=(4) sqlite3_step_not\n", 20),
            // Another process's dump, the file of the running process and
            // the one written at its exit.
            ("callgrind.out.43.11-01", "", 5),
            ("callgrind.out.42", "", 9),
            ("callgrind.out.42-01", "", 11),
        ] {
            write(name, &dump(calls, total));
        }
        assert_eq!(newest_totals(directory.path(), 42).unwrap(), (1_360, 340));
        assert!(newest_totals(directory.path(), 44).is_err());
    }
}
