//! The soak's report: a row per interval, the verdict, and how it was
//! measured, as printed and as `bench/SOAK.md`.

use std::time::Duration;

use crate::report::thousands;
use crate::stats::{millis, Percentiles};

use super::PortalMetrics;

/// RSS may end this much above its value at the end of warm-up: a fraction
/// of it, and at least [`RSS_TOLERANCE_MIN_KIB`].
const RSS_TOLERANCE: f64 = 0.05;
const RSS_TOLERANCE_MIN_KIB: u64 = 4 * 1024;
/// Open files may end this much above their count at the end of warm-up
/// (connections being replaced come and go).
const OPEN_FILES_TOLERANCE: f64 = 0.01;
const OPEN_FILES_TOLERANCE_MIN: usize = 16;

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Interval {
    /// From the start of the load.
    pub start: Duration,
    pub end: Duration,
    /// Requests due in the interval.
    pub sent: u64,
    /// Answers completed in the interval: 2xx, and anything else.
    pub succeeded: u64,
    pub failed: u64,
    pub latencies_us: Vec<u32>,
    pub rss_kib: u64,
    pub open_files: Option<usize>,
    /// kubeportal's CPU time over the interval's length (1.0 = one core).
    pub cpu: f64,
    pub watches_alive: usize,
    /// Watches that delivered an event during the interval.
    pub watches_delivering: usize,
}

impl Interval {
    fn percentiles(&self) -> Option<Percentiles> {
        percentiles(self.latencies_us.iter().copied())
    }

    fn error_percent(&self) -> f64 {
        percent(self.failed, self.succeeded + self.failed)
    }
}

fn percentiles(micros: impl Iterator<Item = u32>) -> Option<Percentiles> {
    Percentiles::of(micros.map(|us| Duration::from_micros(us.into())).collect())
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Everything a soak measured.
pub struct Run {
    pub rate: f64,
    pub connections: u64,
    pub watches: usize,
    pub duration: Duration,
    pub warm_up: Duration,
    pub interval: Duration,
    pub change_every: Duration,
    pub max_p99: Duration,
    pub max_error_percent: f64,
    /// With the watches open, before the first request.
    pub rss_before_load_kib: u64,
    /// VmRSS every second, by time from the start of the load.
    pub rss_samples: Vec<(Duration, u64)>,
    pub intervals: Vec<Interval>,
    pub sent: u64,
    /// Requests with no answer when the run ended.
    pub unanswered: u64,
    pub reconnects: u64,
    pub first_failure: Option<String>,
    pub watches_alive: usize,
    pub watch_events: u64,
    pub first_watch_end: Option<String>,
    /// Changes the writer made to the watched object, and failed to make.
    pub changes: u64,
    pub change_failures: u64,
    pub metrics: PortalMetrics,
    pub logged_error: Option<String>,
}

/// One judged target.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub what: &'static str,
    pub measured: String,
    pub target: String,
    pub met: bool,
}

/// The figures the verdict is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    /// VmRSS at the end of warm-up.
    pub baseline_kib: u64,
    /// The largest VmRSS in the last third of the run.
    pub last_third_max_kib: u64,
    pub tolerance_kib: u64,
    /// Least-squares slope of VmRSS after warm-up.
    pub slope_mib_per_minute: Option<f64>,
}

impl Memory {
    pub fn of(
        samples: &[(Duration, u64)],
        warm_up: Duration,
        duration: Duration,
    ) -> Option<Memory> {
        let baseline_kib = samples
            .iter()
            .find(|(at, _)| *at >= warm_up)
            .map(|(_, kib)| *kib)?;
        let last_third = duration.mul_f64(2.0 / 3.0);
        let last_third_max_kib = samples
            .iter()
            .filter(|(at, _)| *at >= last_third)
            .map(|(_, kib)| *kib)
            .max()?;
        let tolerance_kib =
            ((baseline_kib as f64 * RSS_TOLERANCE) as u64).max(RSS_TOLERANCE_MIN_KIB);
        let after: Vec<(f64, f64)> = samples
            .iter()
            .filter(|(at, _)| *at >= warm_up)
            .map(|(at, kib)| (at.as_secs_f64() / 60.0, *kib as f64 / 1024.0))
            .collect();
        Some(Memory {
            baseline_kib,
            last_third_max_kib,
            tolerance_kib,
            slope_mib_per_minute: slope(&after),
        })
    }

    fn grew(&self) -> bool {
        self.last_third_max_kib > self.baseline_kib + self.tolerance_kib
    }
}

/// The least-squares slope of `y` over `x`; `None` with fewer than two
/// distinct `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let count = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / count;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / count;
    let covariance: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    (variance > 0.0).then(|| covariance / variance)
}

/// The report of one soak.
pub struct SoakReport {
    run: Run,
    machine: Vec<(String, String)>,
    memory: Option<Memory>,
    checks: Vec<Check>,
    generated: chrono::DateTime<chrono::Utc>,
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn minutes_seconds(duration: Duration) -> String {
    let seconds = duration.as_secs();
    format!("{}:{:02}", seconds / 60, seconds % 60)
}

impl SoakReport {
    pub fn new(run: Run, machine: Vec<(String, String)>) -> SoakReport {
        let memory = Memory::of(&run.rss_samples, run.warm_up, run.duration);
        let checks = checks(&run, memory.as_ref());
        SoakReport {
            run,
            machine,
            memory,
            checks,
            generated: chrono::Utc::now(),
        }
    }

    /// Whether every target was met.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.met)
    }

    fn parameters(&self) -> String {
        let run = &self.run;
        format!(
            "{} min of GET a 2 kB pod through the path form at {} requests/s (open loop) over {} \
             keep-alive HTTP/1.1 connections, with {} watches open through kubeportal and the \
             watched object changed every {} s; warm-up {} s, a row every {} s",
            run.duration.as_secs_f64() / 60.0,
            thousands(run.rate),
            thousands(run.connections as f64),
            thousands(run.watches as f64),
            run.change_every.as_secs(),
            run.warm_up.as_secs(),
            run.interval.as_secs(),
        )
    }

    fn table(&self) -> String {
        let headers = [
            "time",
            "sent",
            "2xx",
            "errors",
            "error %",
            "p50",
            "p99",
            "max",
            "kubeportal RSS",
            "open files",
            "CPU",
            "watches open",
            "delivering",
        ];
        let rows: Vec<Vec<String>> = self
            .run
            .intervals
            .iter()
            .map(|interval| {
                let latency = interval.percentiles();
                let show = |pick: fn(&Percentiles) -> Duration| {
                    latency
                        .as_ref()
                        .map_or_else(|| "-".to_owned(), |p| millis(pick(p)))
                };
                vec![
                    minutes_seconds(interval.end),
                    thousands(interval.sent as f64),
                    thousands(interval.succeeded as f64),
                    thousands(interval.failed as f64),
                    format!("{:.2}", interval.error_percent()),
                    show(|p| p.p50),
                    show(|p| p.p99),
                    show(|p| p.max),
                    mib(interval.rss_kib),
                    interval
                        .open_files
                        .map_or_else(|| "?".to_owned(), |count| thousands(count as f64)),
                    format!("{:.0}%", interval.cpu * 100.0),
                    thousands(interval.watches_alive as f64),
                    thousands(interval.watches_delivering as f64),
                ]
            })
            .collect();
        aligned(&headers, &rows)
    }

    fn verdict(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .checks
            .iter()
            .map(|check| {
                vec![
                    check.what.to_owned(),
                    check.measured.clone(),
                    check.target.clone(),
                    if check.met { "yes" } else { "NO" }.to_owned(),
                ]
            })
            .collect();
        let mut text = aligned(&["", "measured", "target", "met?"], &rows);
        text.push_str(&format!(
            "verdict: {}\n",
            if self.passed() { "PASS" } else { "FAIL" }
        ));
        text
    }

    fn summary(&self) -> Vec<String> {
        let run = &self.run;
        let mut lines = Vec::new();
        if let Some(memory) = &self.memory {
            lines.push(format!(
                "kubeportal RSS: {} before the load (watches open), {} at the end of warm-up, \
                 at most {} in the last third; slope after warm-up {}",
                mib(run.rss_before_load_kib),
                mib(memory.baseline_kib),
                mib(memory.last_third_max_kib),
                memory.slope_mib_per_minute.map_or_else(
                    || "unknown".to_owned(),
                    |slope| format!("{slope:+.2} MiB/min")
                ),
            ));
        }
        if let Some(all) = percentiles(
            run.intervals
                .iter()
                .flat_map(|interval| interval.latencies_us.iter().copied()),
        ) {
            lines.push(format!(
                "latency of all {} answers (from when each request was due): p50 {}, p99 {}, max {}",
                thousands(all.samples as f64),
                millis(all.p50),
                millis(all.p99),
                millis(all.max)
            ));
        }
        lines.push(format!(
            "requests: {} sent, {} unanswered at the end, {} connections replaced after an error",
            thousands(run.sent as f64),
            thousands(run.unanswered as f64),
            thousands(run.reconnects as f64)
        ));
        if let Some(failure) = &run.first_failure {
            lines.push(format!("the first failed request: {failure}"));
        }
        lines.push(format!(
            "watches: {} of {} open at the end, {} events delivered in all, for {} changes \
             ({} failed)",
            thousands(run.watches_alive as f64),
            thousands(run.watches as f64),
            thousands(run.watch_events as f64),
            thousands(run.changes as f64),
            thousands(run.change_failures as f64)
        ));
        if let Some(end) = &run.first_watch_end {
            lines.push(format!("the first watch to end: {end}"));
        }
        let count = |value: Option<f64>| value.map_or_else(|| "?".to_owned(), thousands);
        lines.push(format!(
            "kubeportal at the end: {} audit records written, {} dropped; {} open streams",
            count(run.metrics.audit_written),
            count(run.metrics.audit_dropped),
            count(run.metrics.open_streams)
        ));
        if let Some(error) = &run.logged_error {
            lines.push(format!("kubeportal's first logged error: {error}"));
        }
        lines
    }

    pub fn text(&self) -> String {
        let mut text = String::from("\nkubeportal soak\n");
        for (key, value) in &self.machine {
            text.push_str(&format!("{key}: {value}\n"));
        }
        text.push_str(&format!("\n{}\n\n", self.parameters()));
        text.push_str(&self.table());
        text.push('\n');
        for line in self.summary() {
            text.push_str(&format!("{line}\n"));
        }
        text.push('\n');
        text.push_str(&self.verdict());
        text
    }

    pub fn markdown(&self) -> String {
        let mut text = String::from("# kubeportal soak results\n\n");
        text.push_str(&format!(
            "Generated by `make soak` (`bench/src/soak/`) on {}. Regenerate rather than edit.\n\n",
            self.generated.format("%Y-%m-%d %H:%M UTC"),
        ));
        text.push_str("## Machine\n\n");
        for (key, value) in &self.machine {
            text.push_str(&format!("- {key}: {value}\n"));
        }
        text.push_str(&format!("\n## Run\n\n{}.\n\n", self.parameters()));
        text.push_str("```text\n");
        text.push_str(&self.table());
        text.push_str("```\n\n");
        for line in self.summary() {
            text.push_str(&format!("- {line}\n"));
        }
        text.push_str("\n## Verdict\n\n```text\n");
        text.push_str(&self.verdict());
        text.push_str("```\n\n## Method\n\n");
        text.push_str(&method(&self.run));
        text
    }
}

/// The targets and whether they were met.
fn checks(run: &Run, memory: Option<&Memory>) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(match memory {
        Some(memory) => Check {
            what: "RSS growth after warm-up",
            measured: format!(
                "{:+.1} MiB (max of last third {} vs {} at {} s)",
                (memory.last_third_max_kib as f64 - memory.baseline_kib as f64) / 1024.0,
                mib(memory.last_third_max_kib),
                mib(memory.baseline_kib),
                run.warm_up.as_secs()
            ),
            target: format!("<= +{}", mib(memory.tolerance_kib)),
            met: !memory.grew(),
        },
        None => Check {
            what: "RSS growth after warm-up",
            measured: "not measured (run too short)".into(),
            target: String::new(),
            met: false,
        },
    });
    let failed: u64 = run.intervals.iter().map(|interval| interval.failed).sum();
    let errors = failed + run.unanswered;
    let error_percent = percent(errors, run.sent);
    checks.push(Check {
        what: "error rate",
        measured: format!(
            "{:.3}% ({} of {})",
            error_percent,
            thousands(errors as f64),
            thousands(run.sent as f64)
        ),
        target: format!("< {}%", run.max_error_percent),
        met: error_percent < run.max_error_percent || errors == 0,
    });
    let measured: Vec<&Interval> = run
        .intervals
        .iter()
        .filter(|interval| interval.start >= run.warm_up)
        .collect();
    let after_warm_up = percentiles(
        measured
            .iter()
            .flat_map(|interval| interval.latencies_us.iter().copied()),
    );
    checks.push(match after_warm_up {
        Some(latency) => Check {
            what: "p99 latency after warm-up",
            measured: format!("{} (p50 {})", millis(latency.p99), millis(latency.p50)),
            target: format!("< {}", millis(run.max_p99)),
            met: latency.p99 < run.max_p99,
        },
        None => Check {
            what: "p99 latency after warm-up",
            measured: "no answers".into(),
            target: format!("< {}", millis(run.max_p99)),
            met: false,
        },
    });
    // An interval too short to hold two changes cannot judge delivery.
    let judged: Vec<&&Interval> = measured
        .iter()
        .filter(|interval| interval.end - interval.start >= run.change_every * 2)
        .collect();
    let fewest_delivering = judged
        .iter()
        .map(|interval| interval.watches_delivering)
        .min();
    checks.push(Check {
        what: "watches",
        measured: format!(
            "{} of {} open at the end; fewest delivering in an interval after warm-up: {}",
            thousands(run.watches_alive as f64),
            thousands(run.watches as f64),
            fewest_delivering.map_or_else(|| "-".to_owned(), |count| thousands(count as f64)),
        ),
        target: "all open and delivering".into(),
        met: run.watches_alive == run.watches
            && fewest_delivering.is_none_or(|count| count == run.watches),
    });
    let files_at_warm_up = run
        .intervals
        .iter()
        .find(|interval| interval.end >= run.warm_up)
        .and_then(|interval| interval.open_files);
    let files_last_third = run
        .intervals
        .iter()
        .filter(|interval| interval.end >= run.duration.mul_f64(2.0 / 3.0))
        .filter_map(|interval| interval.open_files)
        .max();
    if let (Some(baseline), Some(last)) = (files_at_warm_up, files_last_third) {
        let tolerance =
            ((baseline as f64 * OPEN_FILES_TOLERANCE) as usize).max(OPEN_FILES_TOLERANCE_MIN);
        checks.push(Check {
            what: "open files after warm-up",
            measured: format!(
                "max of last third {} vs {} at {} s",
                thousands(last as f64),
                thousands(baseline as f64),
                run.warm_up.as_secs()
            ),
            target: format!("<= +{tolerance}"),
            met: last <= baseline + tolerance,
        });
    }
    checks
}

/// A table with the first column left-aligned and the others right-aligned.
fn aligned(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            let padding = " ".repeat(width - cell.chars().count());
            if index == 0 {
                text.push_str(cell);
                text.push_str(&padding);
            } else {
                text.push_str("  ");
                text.push_str(&padding);
                text.push_str(cell);
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut text = line(headers.to_vec());
    let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    text.push_str(&"=".repeat(total));
    text.push('\n');
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

/// A line on stderr as each interval ends.
pub fn progress_line(interval: &Interval) -> String {
    let p99 = interval
        .percentiles()
        .map_or_else(|| "-".to_owned(), |latency| millis(latency.p99));
    format!(
        "  {}  sent {}  errors {}  p99 {}  RSS {}  watches {} open, {} delivering",
        minutes_seconds(interval.end),
        thousands(interval.sent as f64),
        thousands(interval.failed as f64),
        p99,
        mib(interval.rss_kib),
        interval.watches_alive,
        interval.watches_delivering
    )
}

/// How the soak measures, for `SOAK.md`.
fn method(run: &Run) -> String {
    format!(
        "All processes run on this one machine and share its cores: the load generator and \
the watches (this benchmark's process), the Kubernetes API test double (kube-double, \
release build, TLS with a generated CA) and kubeportal (release build, plain HTTP on \
loopback, the bench configuration: a static portal token, a five-rule policy, the audit \
trail on in SQLite, the default log level; it reaches the double over TLS with a \
service-account token).

- **Load.** `GET /api/kubernetes/clusters/bench/proxy/api/v1/namespaces/bench/pods/p` \
(a 2 kB pod) with the portal token, {rate} a second on a fixed schedule, round-robin \
over {connections} keep-alive HTTP/1.1 connections (hyper). The schedule does not wait \
for answers (open loop): a request whose connection is still busy waits for it, and its \
latency runs from when it was due to its complete body, so a stall shows as latency \
rather than as fewer requests. A request with no complete answer within {timeout} s, a \
refused or reset one, and one answered with a status other than 2xx are errors; a \
connection that failed is replaced. Requests are counted in the interval they were due \
in; answers in the interval they came in (those after the last second in the last row).
- **Watches.** {watches} watches of config maps in an otherwise empty namespace \
(`?watch=true`, path form), each on its own HTTP/1.1 connection, opened before the load; \
each must first deliver the ADDED event of the one config map there. Directly on the \
double, that config map is then patched every {change_every} s, so every open watch \
should deliver an event every {change_every} s. *watches open* counts the streams not \
yet ended; *delivering* those that delivered an event during the row's interval.
- **kubeportal's process.** VmRSS from `/proc/PID/status` every second (the table shows \
the reading at the row's end), open files from `/proc/PID/fd`, CPU time (user and \
system, 10 ms ticks) over the interval from `/proc/PID/stat`; audit and stream counters \
from `/metrics` at the end.
- **Verdict.** Warm-up is the first minute (a third of a shorter run). *RSS growth*: the \
largest reading in the last third of the run against the reading at the end of warm-up; \
it may exceed it by {tolerance:.0}% or {tolerance_min} MiB, whichever is more; the \
least-squares slope of every reading after warm-up is printed beside it. *Error rate*: \
errors and requests unanswered at the end over requests sent, whole run. *p99 latency*: \
every answer after warm-up. *Watches*: every watch still open at the end, and each \
delivering in every interval after warm-up. *Open files*: the most in the last third \
against the count at the end of warm-up, within {files:.0}% or {files_min}.
",
        rate = thousands(run.rate),
        connections = thousands(run.connections as f64),
        timeout = super::load::REQUEST_TIMEOUT.as_secs(),
        watches = thousands(run.watches as f64),
        change_every = run.change_every.as_secs(),
        tolerance = RSS_TOLERANCE * 100.0,
        tolerance_min = RSS_TOLERANCE_MIN_KIB / 1024,
        files = OPEN_FILES_TOLERANCE * 100.0,
        files_min = OPEN_FILES_TOLERANCE_MIN,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(at: u64) -> Duration {
        Duration::from_secs(at)
    }

    #[test]
    fn flat_memory_passes_and_growth_fails() {
        let flat: Vec<_> = (1..=300)
            .map(|at| (seconds(at), 100 * 1024 + (at % 7) * 100))
            .collect();
        let memory = Memory::of(&flat, seconds(60), seconds(300)).unwrap();
        assert_eq!(memory.baseline_kib, 100 * 1024 + (60 % 7) * 100);
        assert!(!memory.grew());
        assert!(memory.slope_mib_per_minute.unwrap().abs() < 0.1);

        // Two MiB a minute: 8 MiB over the four minutes after warm-up,
        // above the 5% tolerance.
        let growing: Vec<_> = (1..=300)
            .map(|at| (seconds(at), 100 * 1024 + at * 2 * 1024 / 60))
            .collect();
        let memory = Memory::of(&growing, seconds(60), seconds(300)).unwrap();
        assert!((memory.slope_mib_per_minute.unwrap() - 2.0).abs() < 0.01);
        assert!(memory.grew());
    }

    #[test]
    fn memory_needs_samples_after_warm_up() {
        assert_eq!(
            Memory::of(&[(seconds(10), 1)], seconds(60), seconds(300)),
            None
        );
    }

    #[test]
    fn slopes() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), Some(2.0));
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn tables_are_aligned() {
        let text = aligned(
            &["time", "sent"],
            &[
                vec!["0:10".into(), "20,000".into()],
                vec!["0:20".into(), "5".into()],
            ],
        );
        assert_eq!(
            text,
            "time    sent\n============\n0:10  20,000\n0:20       5\n"
        );
    }
}
