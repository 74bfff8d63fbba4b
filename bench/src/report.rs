//! The one table every run prints and writes to `bench/RESULTS.md`: a row
//! per measurement, a column per way of reaching the cluster, kubeportal's
//! ratios, the target and whether it was met.

use std::time::Duration;

use crate::fanout::FanOutResult;
use crate::fleet::{self, FleetResult};
use crate::memory::{LogResult, WatchResult};
use crate::proxy::{ProxyResults, Scenario, Via};
use crate::registry::RegistryResult;
use crate::stats::{micros, millis};
use crate::tenants::{ListMemory, TenantResult, Way};
use crate::wrk::Summary;

/// Whether a target was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// There is a target but nothing to judge it by.
    Unknown,
    NoTarget,
}

impl Verdict {
    fn from_bool(met: bool) -> Verdict {
        if met {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Met => "yes",
            Verdict::Missed => "NO",
            Verdict::Unknown => "?",
            Verdict::NoTarget => "",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    /// direct, kubeportal, kubectl proxy, nginx.
    pub values: [String; 4],
    pub portal_to_direct: String,
    pub portal_to_kubectl: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    /// A row with only a kubeportal value.
    fn portal_only(scenario: String, value: String, target: &str, verdict: Verdict) -> Row {
        Row {
            scenario,
            values: [String::new(), value, String::new(), String::new()],
            portal_to_direct: String::new(),
            portal_to_kubectl: String::new(),
            target: target.to_owned(),
            verdict,
        }
    }
}

impl Row {
    /// A row that only says something (e.g. why nothing was measured).
    pub fn portal_only_text(text: &str) -> Row {
        Row::portal_only(text.to_owned(), String::new(), "", Verdict::NoTarget)
    }

    /// A scenario that failed (the notes hold the error).
    pub fn failed(what: &str, target: &str) -> Row {
        Row::portal_only(
            format!("{what}: failed (see notes)"),
            String::new(),
            target,
            if target.is_empty() {
                Verdict::NoTarget
            } else {
                Verdict::Unknown
            },
        )
    }
}

#[derive(Debug, Clone)]
pub enum Line {
    Section(String),
    Row(Row),
}

/// The table, and the verdicts it holds.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub lines: Vec<Line>,
}

const HEADERS: [&str; 9] = [
    "scenario",
    "direct",
    "kubeportal",
    "kubectl proxy",
    "nginx",
    "kubeportal/direct",
    "kubeportal/kubectl",
    "target",
    "met?",
];

impl Table {
    pub fn section(&mut self, title: &str) {
        self.lines.push(Line::Section(title.to_owned()));
    }

    pub fn row(&mut self, row: Row) {
        self.lines.push(Line::Row(row));
    }

    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.lines.iter().filter_map(|line| match line {
            Line::Row(row) => Some(row),
            Line::Section(_) => None,
        })
    }

    /// Aligned plain text: numbers right-aligned, text left-aligned.
    pub fn render(&self) -> String {
        let cells = |row: &Row| -> [String; 9] {
            [
                row.scenario.clone(),
                row.values[0].clone(),
                row.values[1].clone(),
                row.values[2].clone(),
                row.values[3].clone(),
                row.portal_to_direct.clone(),
                row.portal_to_kubectl.clone(),
                row.target.clone(),
                row.verdict.label().to_owned(),
            ]
        };
        let mut widths = HEADERS.map(|header| header.chars().count());
        for row in self.rows() {
            for (width, cell) in widths.iter_mut().zip(cells(row)) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let pad = |text: &str, width: usize, right: bool| {
            let fill = " ".repeat(width.saturating_sub(text.chars().count()));
            if right {
                format!("{fill}{text}")
            } else {
                format!("{text}{fill}")
            }
        };
        let join = |cells: [String; 9]| {
            let line: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(column, cell)| pad(cell, widths[column], (1..=6).contains(&column)))
                .collect();
            line.join("  ").trim_end().to_owned()
        };
        let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        let mut text = join(HEADERS.map(str::to_owned));
        text.push('\n');
        text.push_str(&"=".repeat(total));
        text.push('\n');
        for line in &self.lines {
            match line {
                Line::Section(title) => {
                    text.push_str(&format!("-- {title} "));
                    text.push_str(&"-".repeat(total.saturating_sub(title.chars().count() + 4)));
                }
                Line::Row(row) => text.push_str(&join(cells(row))),
            }
            text.push('\n');
        }
        text
    }
}

/// `12,345`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(numerator), Some(denominator)) if denominator > 0.0 => Some(numerator / denominator),
        _ => None,
    }
}

fn ratio_text(value: Option<f64>) -> String {
    value.map_or_else(String::new, |value| format!("{value:.2}x"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Short text for a cell that has no number.
fn reason_cell(reason: &str) -> String {
    if reason.contains("not installed") {
        "not installed".into()
    } else {
        "failed".into()
    }
}

/// The proxy rows: requests/s and latency per load, MB/s of the list.
pub fn proxy_rows(table: &mut Table, results: &ProxyResults) {
    let pod_kb = results.seeded.pod_bytes as f64 / 1000.0;
    let list_mib = results.seeded.list_bytes as f64 / (1 << 20) as f64;
    table.section(&format!(
        "proxy: GET a {pod_kb:.1} kB pod, LIST {} pods ({list_mib:.2} MiB); wrk, keep-alive",
        results.seeded.list_items
    ));
    for scenario in Scenario::ALL {
        let summaries: Vec<Result<&Summary, String>> = Via::ALL
            .iter()
            .map(|via| results.get(scenario, *via))
            .collect();
        let figure = |via: Via, value: &dyn Fn(&Summary) -> f64| -> Option<f64> {
            summaries[via as usize]
                .as_ref()
                .ok()
                .map(|summary| value(summary))
        };
        let cells = |format: &dyn Fn(&Summary) -> String| -> [String; 4] {
            std::array::from_fn(|index| match &summaries[index] {
                Ok(summary) => format(summary),
                Err(reason) => reason_cell(reason),
            })
        };
        let connections = scenario.connections();
        match scenario {
            Scenario::GetPod { .. } => {
                let rate = |summary: &Summary| summary.requests_per_second();
                let to_direct = ratio(figure(Via::Kubeportal, &rate), figure(Via::Direct, &rate));
                let to_kubectl = ratio(
                    figure(Via::Kubeportal, &rate),
                    figure(Via::KubectlProxy, &rate),
                );
                let (target, verdict) = if connections == 64 {
                    (
                        ">=0.45x direct, >=5x kubectl",
                        match (to_direct, to_kubectl) {
                            (Some(direct), Some(kubectl)) => {
                                Verdict::from_bool(direct >= 0.45 && kubectl >= 5.0)
                            }
                            _ => Verdict::Unknown,
                        },
                    )
                } else {
                    ("", Verdict::NoTarget)
                };
                table.row(Row {
                    scenario: format!("{scenario}: requests/s"),
                    values: cells(&|summary| thousands(summary.requests_per_second())),
                    portal_to_direct: ratio_text(to_direct),
                    portal_to_kubectl: ratio_text(to_kubectl),
                    target: target.to_owned(),
                    verdict,
                });
                for (label, value) in [
                    (
                        "p50",
                        (|summary: &Summary| summary.p50_us) as fn(&Summary) -> f64,
                    ),
                    ("p99", |summary: &Summary| summary.p99_us),
                ] {
                    table.row(Row {
                        scenario: format!("{scenario}: {label} latency"),
                        values: cells(&|summary| format!("{:.0} µs", value(summary))),
                        portal_to_direct: ratio_text(ratio(
                            figure(Via::Kubeportal, &value),
                            figure(Via::Direct, &value),
                        )),
                        portal_to_kubectl: ratio_text(ratio(
                            figure(Via::Kubeportal, &value),
                            figure(Via::KubectlProxy, &value),
                        )),
                        target: String::new(),
                        verdict: Verdict::NoTarget,
                    });
                }
                if connections == 64 {
                    cpu_row(table, scenario, &summaries);
                }
                if connections == 1 {
                    let p50 = |summary: &Summary| summary.p50_us;
                    let direct = figure(Via::Direct, &p50);
                    let added: [String; 4] =
                        std::array::from_fn(|index| match (index, &summaries[index], direct) {
                            (0, _, _) => String::new(),
                            (_, Ok(summary), Some(direct)) => {
                                format!("{:+.0} µs", summary.p50_us - direct)
                            }
                            (_, Err(reason), _) => reason_cell(reason),
                            (_, Ok(_), None) => String::new(),
                        });
                    let portal_added = figure(Via::Kubeportal, &p50)
                        .zip(direct)
                        .map(|(portal, direct)| portal - direct);
                    table.row(Row {
                        scenario: format!("{scenario}: added p50 latency"),
                        values: added,
                        portal_to_direct: String::new(),
                        portal_to_kubectl: String::new(),
                        target: "< 25 µs".into(),
                        verdict: portal_added
                            .map_or(Verdict::Unknown, |added| Verdict::from_bool(added < 25.0)),
                    });
                }
            }
            Scenario::ListPods { .. } => {
                let rate = |summary: &Summary| summary.megabytes_per_second();
                let to_direct = ratio(figure(Via::Kubeportal, &rate), figure(Via::Direct, &rate));
                table.row(Row {
                    scenario: format!("{scenario}: MB/s"),
                    values: cells(&|summary| format!("{:.0}", summary.megabytes_per_second())),
                    portal_to_direct: ratio_text(to_direct),
                    portal_to_kubectl: ratio_text(ratio(
                        figure(Via::Kubeportal, &rate),
                        figure(Via::KubectlProxy, &rate),
                    )),
                    target: ">=0.7x direct".into(),
                    verdict: to_direct
                        .map_or(Verdict::Unknown, |ratio| Verdict::from_bool(ratio >= 0.7)),
                });
                cpu_row(table, scenario, &summaries);
                let p50 = |summary: &Summary| summary.p50_us;
                table.row(Row {
                    scenario: format!("{scenario}: p50 latency"),
                    values: cells(&|summary| millis(Duration::from_micros(summary.p50_us as u64))),
                    portal_to_direct: ratio_text(ratio(
                        figure(Via::Kubeportal, &p50),
                        figure(Via::Direct, &p50),
                    )),
                    portal_to_kubectl: ratio_text(ratio(
                        figure(Via::Kubeportal, &p50),
                        figure(Via::KubectlProxy, &p50),
                    )),
                    target: String::new(),
                    verdict: Verdict::NoTarget,
                });
            }
        }
    }
}

/// CPU time per request of the serving process: the double for direct
/// access, the proxy alone otherwise.
fn cpu_row(table: &mut Table, scenario: Scenario, summaries: &[Result<&Summary, String>]) {
    let cpu = |index: usize| {
        summaries[index]
            .as_ref()
            .ok()
            .and_then(|summary| summary.cpu_per_request())
            .map(|cpu| cpu.as_secs_f64())
    };
    let values: [String; 4] = std::array::from_fn(|index| match (&summaries[index], cpu(index)) {
        (Ok(_), Some(seconds)) => micros(Duration::from_secs_f64(seconds)),
        (Ok(_), None) => String::new(),
        (Err(reason), _) => reason_cell(reason),
    });
    table.row(Row {
        scenario: format!("{scenario}: CPU per request (serving process)"),
        values,
        portal_to_direct: ratio_text(ratio(
            cpu(Via::Kubeportal as usize),
            cpu(Via::Direct as usize),
        )),
        portal_to_kubectl: ratio_text(ratio(
            cpu(Via::Kubeportal as usize),
            cpu(Via::KubectlProxy as usize),
        )),
        target: String::new(),
        verdict: Verdict::NoTarget,
    });
}

pub fn log_rows(table: &mut Table, result: &LogResult) {
    let gib = result.bytes as f64 / (1u64 << 30) as f64;
    table.row(Row::portal_only(
        format!("{gib:.0} GiB pod log through kubeportal: peak RSS (VmHWM)"),
        mib(result.peak_kib),
        "< 64 MiB",
        Verdict::from_bool(result.peak_kib < 64 * 1024),
    ));
    table.row(Row::portal_only(
        format!(
            "{gib:.0} GiB pod log: throughput (RSS before: {})",
            mib(result.baseline_kib)
        ),
        format!(
            "{:.0} MB/s",
            result.bytes as f64 / result.elapsed.as_secs_f64() / 1e6
        ),
        "",
        Verdict::NoTarget,
    ));
}

pub fn watch_rows(table: &mut Table, result: &WatchResult, direct: Option<&WatchResult>) {
    let all_open = result.opened == result.wanted;
    table.row(Row::portal_only(
        format!(
            "{} watches through kubeportal: RSS with {} open",
            thousands(result.wanted as f64),
            thousands(result.opened as f64)
        ),
        mib(result.rss_kib),
        "< 512 MiB, all open",
        Verdict::from_bool(all_open && result.rss_kib < 512 * 1024),
    ));
    table.row(Row::portal_only(
        format!(
            "watches: opened in {:.1} s (RSS before: {}); delivered a new event",
            result.open_time.as_secs_f64(),
            mib(result.baseline_kib)
        ),
        format!(
            "{} of {}",
            thousands(result.delivered as f64),
            thousands(result.opened as f64)
        ),
        "",
        Verdict::NoTarget,
    ));
    let per_watch = |before: u64, with: u64, opened: usize| {
        (opened > 0).then(|| with.saturating_sub(before) as f64 / opened as f64)
    };
    // What each open watch costs kubeportal (its caller's connection and a
    // stream to the cluster), beside what the double pays to hold the same
    // watch for a client directly (a TLS connection each).
    let portal = per_watch(result.baseline_kib, result.rss_kib, result.opened);
    let direct_kib =
        direct.and_then(|direct| per_watch(direct.baseline_kib, direct.rss_kib, direct.opened));
    if let Some(portal) = portal {
        table.row(Row {
            scenario: "watches: RSS per open watch (direct: the double holding them itself)".into(),
            values: [
                direct_kib.map_or_else(String::new, |kib| format!("{kib:.1} KiB")),
                format!("{portal:.1} KiB"),
                String::new(),
                String::new(),
            ],
            portal_to_direct: ratio_text(ratio(Some(portal), direct_kib)),
            portal_to_kubectl: String::new(),
            target: String::new(),
            verdict: Verdict::NoTarget,
        });
    }
    if let Some((before, with)) = result.cluster_kib {
        if let Some(cluster) = per_watch(before, with, result.opened) {
            table.row(Row::portal_only(
                "watches: the double's RSS per watch kubeportal holds (HTTP/2 streams)".into(),
                format!("{cluster:.1} KiB"),
                "",
                Verdict::NoTarget,
            ));
        }
    }
    if let Some((reason, count)) = &result.failures {
        table.row(Row::portal_only(
            format!("watches not opened ({reason})"),
            thousands(*count as f64),
            "",
            Verdict::NoTarget,
        ));
    }
}

pub fn registry_rows(table: &mut Table, result: &RegistryResult) {
    let store = result.store;
    let clusters = thousands(result.clusters as f64);
    table.row(Row::portal_only(
        format!("{store}, {clusters} clusters: cached lookup p50 / p99 (Registry::resolve)"),
        format!(
            "{} / {}",
            micros(result.cached.p50),
            micros(result.cached.p99)
        ),
        "p99 < 1 ms",
        Verdict::from_bool(
            result.cache_misses == 0 && result.cached.p99 < Duration::from_millis(1),
        ),
    ));
    if result.cache_misses > 0 {
        table.row(Row::portal_only(
            format!("{store}: cached lookups that missed the cache"),
            thousands(result.cache_misses as f64),
            "0",
            Verdict::Missed,
        ));
    }
    table.row(Row::portal_only(
        format!("{store}, {clusters} clusters: uncached lookup p50 / p99 (ClusterStore::get)"),
        format!(
            "{} / {}",
            micros(result.uncached.p50),
            micros(result.uncached.p99)
        ),
        "",
        Verdict::NoTarget,
    ));
    table.row(Row::portal_only(
        format!(
            "{store}: lookup uses the name index (insert of {clusters} rows: {:.1} s)",
            result.insert_time.as_secs_f64()
        ),
        if result.index_used() { "yes" } else { "no" }.into(),
        "index scan",
        Verdict::from_bool(result.index_used()),
    ));
}

pub fn fanout_rows(table: &mut Table, results: &[FanOutResult]) {
    for result in results {
        let p50 = |duration: Duration| duration.as_secs_f64();
        table.row(Row {
            scenario: format!(
                "entity objects, {} cluster{} ({} lists each): p50 / p99",
                result.clusters,
                if result.clusters == 1 { "" } else { "s" },
                result.calls_per_cluster
            ),
            values: [
                format!(
                    "{} / {}",
                    millis(result.direct.p50),
                    millis(result.direct.p99)
                ),
                format!(
                    "{} / {}",
                    millis(result.kubeportal.p50),
                    millis(result.kubeportal.p99)
                ),
                String::new(),
                String::new(),
            ],
            portal_to_direct: ratio_text(ratio(
                Some(p50(result.kubeportal.p50)),
                Some(p50(result.direct.p50)),
            )),
            portal_to_kubectl: String::new(),
            target: String::new(),
            verdict: Verdict::NoTarget,
        });
    }
}

/// The tenant-view rows: the list across namespaces filtered for a tenant
/// beside the same list unfiltered, and kubeportal's peak memory filtering
/// several at once.
pub fn tenant_rows(table: &mut Table, result: &TenantResult) {
    let megabytes = |bytes: usize| bytes as f64 / 1e6;
    let list_mb = megabytes(result.list_bytes);
    let pods = thousands(result.pods as f64);
    let team_a = thousands(result.team_a_pods as f64);
    table.section(&format!(
        "tenant views: LIST {pods} pods in {} namespaces ({list_mb:.1} MB, {} B a pod; \
         team a's {team_a}: {:.1} MB), path form; wrk, {} conn",
        result.namespaces,
        result.list_bytes / result.pods.max(1),
        megabytes(result.filtered_bytes),
        crate::tenants::CONNECTIONS,
    ));
    let lists_per_second = |way: Way| result.lists_per_second(way);
    // Throughput counts the list the cluster sent, filtered or not.
    let cell = |way: Way| match (result.run(way), result.lists_per_second(way)) {
        (Ok(_), Some(rate)) => format!("{rate:.2}/s ({:.0} MB/s)", rate * list_mb),
        (Ok(_), None) => String::new(),
        (Err(reason), _) => reason_cell(&reason),
    };
    let direct = lists_per_second(Way::Direct);
    let unfiltered = lists_per_second(Way::Unfiltered);
    let filtered = lists_per_second(Way::Filtered);
    table.row(Row {
        scenario: format!(
            "LIST {pods} pods ({list_mb:.0} MB), unfiltered (admin): lists/s (MB/s of the list)"
        ),
        values: [
            cell(Way::Direct),
            cell(Way::Unfiltered),
            String::new(),
            String::new(),
        ],
        portal_to_direct: ratio_text(ratio(unfiltered, direct)),
        portal_to_kubectl: String::new(),
        target: String::new(),
        verdict: Verdict::NoTarget,
    });
    table.row(Row {
        scenario: format!(
            "LIST {pods} pods ({list_mb:.0} MB), filtered to team a (tenant): lists/s (MB/s of the list)"
        ),
        values: [String::new(), cell(Way::Filtered), String::new(), String::new()],
        portal_to_direct: ratio_text(ratio(filtered, direct)),
        portal_to_kubectl: String::new(),
        target: String::new(),
        verdict: Verdict::NoTarget,
    });
    let to_unfiltered = ratio(filtered, unfiltered);
    table.row(Row::portal_only(
        "LIST filtered to team a: throughput as a ratio to unfiltered (tenant / admin)".into(),
        ratio_text(to_unfiltered),
        ">=0.5x unfiltered",
        to_unfiltered.map_or(Verdict::Unknown, |ratio| Verdict::from_bool(ratio >= 0.5)),
    ));
    let pair = |value: &dyn Fn(Way, &Summary) -> String| match (
        result.run(Way::Unfiltered),
        result.run(Way::Filtered),
    ) {
        (Ok(unfiltered), Ok(filtered)) => format!(
            "{} / {}",
            value(Way::Unfiltered, unfiltered),
            value(Way::Filtered, filtered)
        ),
        (Err(reason), _) | (_, Err(reason)) => reason_cell(&reason),
    };
    let single = |way: Way, value: &dyn Fn(Way, &Summary) -> String| match result.run(way) {
        Ok(summary) => value(way, summary),
        Err(reason) => reason_cell(&reason),
    };
    let p50 = |_: Way, summary: &Summary| millis(Duration::from_micros(summary.p50_us as u64));
    table.row(Row {
        scenario: "LIST: p50 latency (kubeportal: unfiltered / filtered)".into(),
        values: [
            single(Way::Direct, &p50),
            pair(&p50),
            String::new(),
            String::new(),
        ],
        portal_to_direct: String::new(),
        portal_to_kubectl: String::new(),
        target: String::new(),
        verdict: Verdict::NoTarget,
    });
    let cpu = |way: Way, _: &Summary| result.cpu_per_list(way).map_or_else(String::new, millis);
    let cpu_seconds = |way: Way| result.cpu_per_list(way).map(|cpu| cpu.as_secs_f64());
    let cpu_ratio = ratio(cpu_seconds(Way::Filtered), cpu_seconds(Way::Unfiltered))
        .map_or_else(String::new, |ratio| format!(" = {ratio:.2}x"));
    table.row(Row {
        scenario: format!(
            "LIST: CPU per list, serving process (kubeportal: unfiltered / filtered{cpu_ratio})"
        ),
        values: [
            single(Way::Direct, &cpu),
            pair(&cpu),
            String::new(),
            String::new(),
        ],
        portal_to_direct: String::new(),
        portal_to_kubectl: String::new(),
        target: String::new(),
        verdict: Verdict::NoTarget,
    });
    let lists = crate::tenants::CONCURRENT_LISTS;
    let memory_row = |what: &str, memory: &Result<ListMemory, String>, target: &str| {
        let verdict = |memory: &ListMemory| {
            if target.is_empty() {
                Verdict::NoTarget
            } else {
                Verdict::from_bool(memory.peak_kib < 64 * 1024)
            }
        };
        match memory {
            Ok(memory) => Row::portal_only(
                format!(
                    "{lists} concurrent {what} lists, fresh kubeportal: peak RSS (VmHWM) \
                     (RSS before: {}; read in {:.1} s)",
                    mib(memory.baseline_kib),
                    memory.elapsed.as_secs_f64()
                ),
                mib(memory.peak_kib),
                target,
                verdict(memory),
            ),
            Err(_) => Row::failed(
                &format!("{lists} concurrent {what} lists, fresh kubeportal: peak RSS"),
                target,
            ),
        }
    };
    table.row(memory_row(
        "filtered (tenant)",
        &result.memory_filtered,
        "< 64 MiB",
    ));
    table.row(memory_row(
        "unfiltered (admin)",
        &result.memory_unfiltered,
        "",
    ));
    table.row(Row::portal_only(
        format!(
            "checked before timing: filtered list = exactly team a's {team_a} pods, \
             unfiltered = all {pods} (byte-identical to direct)"
        ),
        "yes".into(),
        "",
        Verdict::NoTarget,
    ));
}

/// How fast a fleet list's members answer.
fn answering(list: &fleet::ListResult) -> String {
    if list.latency.is_zero() {
        ", members at once".to_owned()
    } else {
        format!(", members after {} ms", list.latency.as_millis())
    }
}

/// The fleet-view rows: each fleet list beside the slowest single direct
/// list of a member (the ratio judged) and the sum of the direct lists; and
/// a fresh kubeportal's resident set with many fleet watches open.
pub fn fleet_rows(table: &mut Table, result: &FleetResult) {
    let target = format!("<= {:.1}x slowest single", fleet::TARGET_RATIO);
    for list in &result.lists {
        let slowest = list.slowest_single.as_secs_f64();
        let sum = list.sum_direct.as_secs_f64();
        let fleet = list.fleet.p50.as_secs_f64();
        table.row(Row {
            scenario: format!(
                "fleet list, {} cluster{} × {} pods ({} items, {:.1} MiB){}: p50 (direct: slowest single list, {})",
                list.clusters,
                if list.clusters == 1 { "" } else { "s" },
                fleet::PODS,
                thousands(list.items as f64),
                list.bytes as f64 / (1024.0 * 1024.0),
                answering(list),
                list.slowest_cluster
            ),
            values: [
                millis(list.slowest_single),
                millis(list.fleet.p50),
                String::new(),
                String::new(),
            ],
            portal_to_direct: ratio_text(ratio(Some(fleet), Some(slowest))),
            portal_to_kubectl: String::new(),
            target: target.clone(),
            verdict: Verdict::from_bool(list.ratio_to_slowest() <= fleet::TARGET_RATIO),
        });
        table.row(Row {
            scenario: format!(
                "fleet list, {} cluster{}{}: p50 (direct: sum of the member lists, one after another); fleet p99; kubeportal CPU per list {}",
                list.clusters,
                if list.clusters == 1 { "" } else { "s" },
                answering(list),
                list.portal_cpu.map_or_else(|| "?".to_owned(), millis),
            ),
            values: [
                millis(list.sum_direct),
                format!("{} / {}", millis(list.fleet.p50), millis(list.fleet.p99)),
                String::new(),
                String::new(),
            ],
            portal_to_direct: ratio_text(ratio(Some(fleet), Some(sum))),
            portal_to_kubectl: String::new(),
            target: String::new(),
            verdict: Verdict::NoTarget,
        });
    }
    match &result.watches {
        Ok(watches) => {
            let all_open =
                watches.established == watches.wanted && watches.still_open == watches.wanted;
            table.row(Row::portal_only(
                format!(
                    "{} fleet watches over {} clusters ({} opened): RSS with {} established ({} still open after)",
                    thousands(watches.wanted as f64),
                    watches.clusters,
                    thousands(watches.opened as f64),
                    thousands(watches.established as f64),
                    thousands(watches.still_open as f64)
                ),
                mib(watches.rss_kib),
                "all open",
                Verdict::from_bool(all_open),
            ));
            table.row(Row::portal_only(
                format!(
                    "fleet watches: opened with initial events in {:.1} s (RSS before: {}, peak: {}); per watch",
                    watches.open_time.as_secs_f64(),
                    mib(watches.baseline_kib),
                    mib(watches.peak_kib)
                ),
                if watches.established > 0 {
                    format!(
                        "{:.1} KiB",
                        watches.rss_kib.saturating_sub(watches.baseline_kib) as f64
                            / watches.established as f64
                    )
                } else {
                    String::new()
                },
                "",
                Verdict::NoTarget,
            ));
            for (reason, count) in &watches.failures {
                table.row(Row::portal_only(
                    format!("fleet watches failed ({reason})"),
                    thousands(*count as f64),
                    "",
                    Verdict::NoTarget,
                ));
            }
        }
        Err(_) => table.row(Row::failed("fleet watches", "all open")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(12_345.0), "12,345");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn the_table_is_aligned() {
        let mut table = Table::default();
        table.section("proxy");
        table.row(Row {
            scenario: "GET pod, 64 conn: requests/s".into(),
            values: [
                "20,000".into(),
                "9,000".into(),
                "1,500".into(),
                "12,000".into(),
            ],
            portal_to_direct: "0.45x".into(),
            portal_to_kubectl: "6.00x".into(),
            target: ">=0.45x direct".into(),
            verdict: Verdict::Met,
        });
        table.row(Row::portal_only(
            "peak RSS".into(),
            "20.0 MiB".into(),
            "< 64 MiB",
            Verdict::Missed,
        ));
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("scenario"));
        assert!(lines[2].starts_with("-- proxy --"));
        // Right-aligned numbers end in the same column.
        let end = |line: &str, needle: &str| line.find(needle).unwrap() + needle.len();
        assert_eq!(end(lines[0], "kubeportal"), end(lines[3], "9,000"));
        assert!(lines[3].ends_with("yes"));
        assert!(lines[4].ends_with("NO"));
    }
}
