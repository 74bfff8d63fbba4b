//! Load generation with wrk: one run, its summary read from the JSON line
//! `wrk/report.lua` prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

const REPORT_SCRIPT: &str = include_str!("../wrk/report.lua");
const MARKER: &str = "KUBEPORTAL_BENCH ";

/// wrk and its report script.
pub struct Wrk {
    program: PathBuf,
    script: PathBuf,
}

/// One load: how many connections (and wrk threads) for how long.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub connections: u32,
    pub duration: Duration,
}

/// wrk's summary of a run.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Summary {
    pub requests: u64,
    pub duration_us: u64,
    pub bytes: u64,
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    /// Responses with a status of 400 or more.
    pub status_errors: u64,
    pub timeouts: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// CPU time the serving process used during the run (the double for
    /// direct access, else the proxy alone), when the caller measured it.
    #[serde(skip)]
    pub server_cpu: Option<Duration>,
}

impl Summary {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }

    /// The serving process's CPU time per request.
    pub fn cpu_per_request(&self) -> Option<Duration> {
        let requests = u32::try_from(self.requests.max(1)).unwrap_or(u32::MAX);
        self.server_cpu.map(|cpu| cpu / requests)
    }

    /// Response bytes (headers included) per second, in MB (10^6 bytes).
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / (self.duration_us as f64 / 1e6) / 1e6
    }

    /// Why the run cannot be trusted, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let errors = [
            (self.connect_errors, "connect errors"),
            (self.read_errors, "read errors"),
            (self.write_errors, "write errors"),
            (self.status_errors, "error statuses"),
            (self.timeouts, "timeouts"),
        ];
        let found: Vec<String> = errors
            .iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, what)| format!("{count} {what}"))
            .collect();
        if self.requests == 0 {
            Some("no request completed".into())
        } else if found.is_empty() {
            None
        } else {
            Some(found.join(", "))
        }
    }
}

impl Wrk {
    /// wrk from PATH (installed from Debian when missing), with the report
    /// script written to `directory`.
    pub fn new(directory: &Path) -> Result<Wrk> {
        let program = crate::processes::require_tool("wrk", "wrk")?;
        let script = directory.join("report.lua");
        std::fs::write(&script, REPORT_SCRIPT)?;
        Ok(Wrk { program, script })
    }

    /// Runs one load against `url` with `headers` and returns its summary;
    /// an error when wrk fails or any request failed.
    pub async fn run(
        &self,
        url: &str,
        headers: &[(String, String)],
        load: Load,
    ) -> Result<Summary> {
        let threads = load.connections.min(2);
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg(format!("-t{threads}"))
            .arg(format!("-c{}", load.connections))
            .arg(format!("-d{}s", load.duration.as_secs().max(1)))
            .arg("--timeout=10s")
            .arg("-s")
            .arg(&self.script);
        for (name, value) in headers {
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        command.arg(url).kill_on_drop(true);
        let output = command.output().await.context("running wrk")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary = parse_output(&stdout).with_context(|| {
            format!(
                "wrk against {url} printed no summary ({}); stderr: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
        if let Some(problem) = summary.problem() {
            bail!("{problem} in {} requests", summary.requests);
        }
        Ok(summary)
    }
}

fn parse_output(stdout: &str) -> Result<Summary> {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(MARKER))
        .ok_or_else(|| anyhow!("no {MARKER:?} line"))?;
    serde_json::from_str(line).context("the wrk summary line is not the expected JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 8s test @ http://127.0.0.1:1/x\n  2 threads and 16 connections\n\
        KUBEPORTAL_BENCH {\"requests\":80000,\"duration_us\":8000000,\"bytes\":160000000,\
        \"connect_errors\":0,\"read_errors\":0,\"write_errors\":0,\"status_errors\":0,\"timeouts\":0,\
        \"p50_us\":180,\"p90_us\":250,\"p99_us\":900,\"max_us\":12000}\n";

    #[test]
    fn summaries_are_read_from_the_marker_line() {
        let summary = parse_output(OUTPUT).unwrap();
        assert_eq!(summary.requests, 80_000);
        assert_eq!(summary.requests_per_second(), 10_000.0);
        assert_eq!(summary.megabytes_per_second(), 20.0);
        assert_eq!(summary.p99_us, 900.0);
        assert_eq!(summary.problem(), None);
    }

    #[test]
    fn failed_requests_make_a_run_untrustworthy() {
        let mut summary = parse_output(OUTPUT).unwrap();
        summary.status_errors = 3;
        summary.timeouts = 1;
        assert_eq!(
            summary.problem().as_deref(),
            Some("3 error statuses, 1 timeouts")
        );
        assert!(parse_output("Running 8s test\n").is_err());
    }
}
