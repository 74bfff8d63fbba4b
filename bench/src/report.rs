//! The one table every run prints and writes to `bench/RESULTS.md`: a row
//! per measurement, a column per way of reaching the cluster, kubeportal's
//! ratios, the target and whether it was met.

use std::time::Duration;

use crate::callgrind;
use crate::fanout::FanOutResult;
use crate::fleet::{self, FleetResult};
use crate::identity::{self, IdentityResult};
use crate::memory::{LogResult, WatchResult};
use crate::proxy::{Scenario, UpstreamResults, Via};
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
    /// In [`Via::ALL`]'s order: direct, kubeportal, nginx, HAProxy, kubectl
    /// proxy, bare hyper.
    pub values: [String; WAYS],
    /// kubeportal's figure over direct's, nginx's, HAProxy's, kubectl
    /// proxy's and the bare hyper proxy's.
    pub ratios: [String; COMPARED.len()],
    pub target: String,
    pub verdict: Verdict,
}

/// The ways kubeportal's ratios compare it with, in column order.
const COMPARED: [Via; 5] = [
    Via::Direct,
    Via::Nginx,
    Via::HaProxy,
    Via::KubectlProxy,
    Via::BareHyper,
];

/// How many ways a request is measured (value columns).
const WAYS: usize = Via::ALL.len();

/// Values for the direct and kubeportal columns only.
fn direct_and_portal(direct: String, portal: String) -> [String; WAYS] {
    let mut values: [String; WAYS] = Default::default();
    values[Via::Direct as usize] = direct;
    values[Via::Kubeportal as usize] = portal;
    values
}

/// Ratios with only kubeportal's to direct.
fn to_direct(ratio: String) -> [String; COMPARED.len()] {
    let mut ratios: [String; COMPARED.len()] = Default::default();
    ratios[0] = ratio;
    ratios
}

/// kubeportal's ratios to every other way, from a figure per way.
fn ratios(figure: &dyn Fn(Via) -> Option<f64>) -> [String; COMPARED.len()] {
    let portal = figure(Via::Kubeportal);
    COMPARED.map(|via| ratio_text(ratio(portal, figure(via))))
}

impl Row {
    /// A row with only a kubeportal value.
    fn portal_only(scenario: String, value: String, target: &str, verdict: Verdict) -> Row {
        Row {
            scenario,
            values: direct_and_portal(String::new(), value),
            ratios: Default::default(),
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
    Row(Box<Row>),
}

/// The table, and the verdicts it holds.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub lines: Vec<Line>,
}

/// The scenario, a value per way, kubeportal's ratios, target and verdict.
const COLUMNS: usize = 1 + WAYS + COMPARED.len() + 2;

const HEADERS: [&str; COLUMNS] = [
    "scenario",
    "direct",
    "kubeportal",
    "nginx",
    "HAProxy",
    "kubectl proxy",
    "bare hyper",
    "kubeportal/direct",
    "kubeportal/nginx",
    "kubeportal/HAProxy",
    "kubeportal/kubectl",
    "kubeportal/bare hyper",
    "target",
    "met?",
];
/// The columns holding numbers (right-aligned).
const NUMBERS: std::ops::RangeInclusive<usize> = 1..=WAYS + COMPARED.len();

impl Table {
    pub fn section(&mut self, title: &str) {
        self.lines.push(Line::Section(title.to_owned()));
    }

    pub fn row(&mut self, row: Row) {
        self.lines.push(Line::Row(Box::new(row)));
    }

    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.lines.iter().filter_map(|line| match line {
            Line::Row(row) => Some(&**row),
            Line::Section(_) => None,
        })
    }

    /// Aligned plain text: numbers right-aligned, text left-aligned.
    pub fn render(&self) -> String {
        let cells = |row: &Row| -> [String; COLUMNS] {
            let mut cells: [String; COLUMNS] = Default::default();
            let ratios = 1 + WAYS;
            let target = ratios + COMPARED.len();
            cells[0].clone_from(&row.scenario);
            cells[1..ratios].clone_from_slice(&row.values);
            cells[ratios..target].clone_from_slice(&row.ratios);
            cells[target].clone_from(&row.target);
            cells[target + 1] = row.verdict.label().to_owned();
            cells
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
        let join = |cells: [String; COLUMNS]| {
            let line: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(column, cell)| pad(cell, widths[column], NUMBERS.contains(&column)))
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
        "not measured (not installed)".into()
    } else if reason.starts_with("not measured") {
        "not measured".into()
    } else {
        "failed".into()
    }
}

/// The proxy rows of one upstream: requests/s and latency per load, CPU per
/// request, MB/s of the list, instructions per request; kubeportal's ratios
/// to each other way, and its targets against direct and its peers.
pub fn proxy_rows(table: &mut Table, results: &UpstreamResults) {
    let pod_kb = results.seeded.pod_bytes as f64 / 1000.0;
    let list_mib = results.seeded.list_bytes as f64 / (1 << 20) as f64;
    table.section(&format!(
        "proxy, {}: GET a {pod_kb:.1} kB pod, LIST {} pods ({list_mib:.2} MiB); wrk, keep-alive",
        results.upstream.label(),
        results.seeded.list_items
    ));
    for scenario in Scenario::ALL {
        let summaries: Vec<Result<&Summary, String>> = Via::ALL
            .iter()
            .map(|via| results.get(scenario, *via))
            .collect();
        let cells = |format: &dyn Fn(&Summary) -> String| -> [String; WAYS] {
            std::array::from_fn(|index| match &summaries[index] {
                Ok(summary) => format(summary),
                Err(reason) => reason_cell(reason),
            })
        };
        let row = |what: &str,
                   format: &dyn Fn(&Summary) -> String,
                   value: &dyn Fn(&Summary) -> Option<f64>,
                   target: &str,
                   verdict: Verdict| Row {
            scenario: format!("{scenario}: {what}"),
            values: cells(format),
            ratios: ratios(&figure_of(&summaries, value)),
            target: target.to_owned(),
            verdict,
        };
        let rate = |summary: &Summary| Some(summary.requests_per_second());
        let p50 = |summary: &Summary| Some(summary.p50_us);
        let p99 = |summary: &Summary| Some(summary.p99_us);
        let cpu = |summary: &Summary| summary.cpu_per_request().map(|cpu| cpu.as_secs_f64());
        let cpu_text =
            |summary: &Summary| summary.cpu_per_request().map_or_else(String::new, micros);
        let latency_text = |value: f64| format!("{value:.0} µs");
        match scenario {
            Scenario::GetPod { connections: 1 } => {
                table.row(row(
                    "requests/s",
                    &|summary| thousands(summary.requests_per_second()),
                    &rate,
                    "",
                    Verdict::NoTarget,
                ));
                table.row(row(
                    "p50 latency",
                    &|summary| latency_text(summary.p50_us),
                    &p50,
                    "",
                    Verdict::NoTarget,
                ));
                table.row(row(
                    "p99 latency",
                    &|summary| latency_text(summary.p99_us),
                    &p99,
                    "",
                    Verdict::NoTarget,
                ));
                let direct = figure_of(&summaries, &p50)(Via::Direct);
                let added: [String; WAYS] =
                    std::array::from_fn(|index| match (index, &summaries[index], direct) {
                        (0, _, _) => String::new(),
                        (_, Ok(summary), Some(direct)) => {
                            format!("{:+.0} µs", summary.p50_us - direct)
                        }
                        (_, Err(reason), _) => reason_cell(reason),
                        (_, Ok(_), None) => String::new(),
                    });
                let portal_added = figure_of(&summaries, &p50)(Via::Kubeportal)
                    .zip(direct)
                    .map(|(portal, direct)| portal - direct);
                table.row(Row {
                    scenario: format!("{scenario}: added p50 latency"),
                    values: added,
                    ratios: Default::default(),
                    target: "< 25 µs".into(),
                    verdict: portal_added
                        .map_or(Verdict::Unknown, |added| Verdict::from_bool(added < 25.0)),
                });
            }
            Scenario::GetPod { .. } => {
                let rates = figure_of(&summaries, &rate);
                let verdict = match (
                    rates(Via::Kubeportal),
                    rates(Via::Nginx),
                    rates(Via::HaProxy),
                ) {
                    (Some(portal), Some(nginx), Some(haproxy)) => {
                        Verdict::from_bool(portal >= nginx && portal >= haproxy)
                    }
                    _ => Verdict::Unknown,
                };
                table.row(row(
                    "requests/s",
                    &|summary| thousands(summary.requests_per_second()),
                    &rate,
                    ">= nginx and HAProxy",
                    verdict,
                ));
                let cpus = figure_of(&summaries, &cpu);
                let verdict = match (cpus(Via::Kubeportal), cpus(Via::Nginx)) {
                    (Some(portal), Some(nginx)) => Verdict::from_bool(portal <= nginx),
                    _ => Verdict::Unknown,
                };
                table.row(row(
                    "CPU per request (serving process)",
                    &cpu_text,
                    &cpu,
                    "<= nginx",
                    verdict,
                ));
            }
            Scenario::ListPods { .. } => {
                let throughput = |summary: &Summary| Some(summary.megabytes_per_second());
                let to_direct = ratio(
                    figure_of(&summaries, &throughput)(Via::Kubeportal),
                    figure_of(&summaries, &throughput)(Via::Direct),
                );
                table.row(row(
                    "MB/s",
                    &|summary| format!("{:.0}", summary.megabytes_per_second()),
                    &throughput,
                    ">=0.7x direct",
                    to_direct.map_or(Verdict::Unknown, |ratio| Verdict::from_bool(ratio >= 0.7)),
                ));
                table.row(row(
                    "CPU per request (serving process)",
                    &cpu_text,
                    &cpu,
                    "",
                    Verdict::NoTarget,
                ));
                table.row(row(
                    "p50 latency",
                    &|summary| millis(Duration::from_micros(summary.p50_us as u64)),
                    &p50,
                    "",
                    Verdict::NoTarget,
                ));
            }
        }
    }
    instruction_row(table, results);
}

/// A figure of each way's summary, where there is one.
fn figure_of<'a>(
    summaries: &'a [Result<&Summary, String>],
    value: &'a dyn Fn(&Summary) -> Option<f64>,
) -> impl Fn(Via) -> Option<f64> + 'a {
    move |via| {
        summaries[via as usize]
            .as_ref()
            .ok()
            .and_then(|summary| value(summary))
    }
}

/// Instructions per sequential GET of each proxy, under callgrind.
fn instruction_row(table: &mut Table, results: &UpstreamResults) {
    let what = format!(
        "GET pod, {} in sequence on 1 conn: instructions per request (callgrind)",
        thousands(callgrind::REQUESTS as f64)
    );
    let measured = match &results.instructions {
        Ok(measured) => measured,
        Err(reason) => {
            table.row(Row::portal_only_text(&format!(
                "{what}: not measured: {reason}"
            )));
            return;
        }
    };
    let per_request = |via: Via| match measured.get(&via) {
        Some(Ok(instructions)) => Some(instructions.per_request()),
        _ => None,
    };
    let values: [String; WAYS] =
        std::array::from_fn(|index| match measured.get(&Via::ALL[index]) {
            None => String::new(),
            Some(Ok(instructions)) => thousands(instructions.per_request()),
            Some(Err(reason)) => reason_cell(reason),
        });
    table.row(Row {
        scenario: what,
        values,
        ratios: ratios(&per_request),
        target: String::new(),
        verdict: Verdict::NoTarget,
    });
    // The audit trail's statements run on SQLite's worker threads, in
    // batches as large as the machine's speed makes them: their part is
    // shown apart. kubeportal audits every request, so none means that the
    // threads were not told apart, not that they did nothing.
    if let Some(Ok(portal)) = measured.get(&Via::Kubeportal) {
        let scenario =
            "of those, on SQLite's worker threads (the audit trail's statements)".to_owned();
        table.row(if portal.store == 0 {
            Row::portal_only_text(&format!(
                "{scenario}: not told apart: no thread's dump names sqlite3_step"
            ))
        } else {
            Row::portal_only(
                scenario,
                thousands(portal.store_per_request()),
                "",
                Verdict::NoTarget,
            )
        });
    }
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
            values: direct_and_portal(
                direct_kib.map_or_else(String::new, |kib| format!("{kib:.1} KiB")),
                format!("{portal:.1} KiB"),
            ),
            ratios: to_direct(ratio_text(ratio(Some(portal), direct_kib))),
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
            values: direct_and_portal(
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
            ),
            ratios: to_direct(ratio_text(ratio(
                Some(p50(result.kubeportal.p50)),
                Some(p50(result.direct.p50)),
            ))),
            target: String::new(),
            verdict: Verdict::NoTarget,
        });
    }
}

/// The tenant-view rows: the list across namespaces filtered for a tenant
/// beside the same list unfiltered, and kubeportal's peak memory filtering
/// several at once.
/// A portal user's token (an ES256 JWT) costs about what the static token
/// does, once verified.
pub const IDENTITY_TARGET: &str = ">=0.9x static token";

/// The small GET by the caller's token, each row's kubeportal cell reading
/// static token / ES256 user token remembered / checked on every request.
pub fn identity_rows(table: &mut Table, result: &IdentityResult) {
    table.section(&format!(
        "identity: GET one pod through kubeportal, (b) TLS upstream; each cell reads \
         static token / ES256 user token ({} B) remembered once verified / checked every request",
        result.token_bytes
    ));
    let cells = |load: usize, value: &dyn Fn(&Summary) -> String| {
        identity::Way::ALL
            .map(|way| match result.run(load, way) {
                Ok(summary) => value(summary),
                Err(reason) => reason_cell(&reason),
            })
            .join(" / ")
    };
    let [many, one] = identity::CONNECTIONS;
    let rate = |load: usize, way: identity::Way| {
        result.run(load, way).ok().map(Summary::requests_per_second)
    };
    let rows = [
        (
            format!("GET pod, {many} conn: requests/s"),
            cells(0, &|summary| thousands(summary.requests_per_second())),
        ),
        (
            format!("GET pod, {many} conn: kubeportal CPU per request"),
            cells(0, &|summary| {
                summary.cpu_per_request().map(micros).unwrap_or_default()
            }),
        ),
        (
            format!("GET pod, {one} conn: p50 latency"),
            cells(1, &|summary| {
                micros(Duration::from_nanos((summary.p50_us * 1e3) as u64))
            }),
        ),
    ];
    for (scenario, value) in rows {
        table.row(Row::portal_only(scenario, value, "", Verdict::NoTarget));
    }
    let static_token = rate(0, identity::Way::StaticToken);
    let remembered = ratio(rate(0, identity::Way::Remembered), static_token);
    table.row(Row::portal_only(
        format!("ES256 user token, remembered: requests/s at {many} conn as a ratio to the static token"),
        ratio_text(remembered),
        IDENTITY_TARGET,
        remembered.map_or(Verdict::Unknown, |ratio| Verdict::from_bool(ratio >= 0.9)),
    ));
    table.row(Row::portal_only(
        format!("ES256 user token, checked every request (`cacheSeconds: 0`): requests/s at {many} conn as a ratio to the static token"),
        ratio_text(ratio(rate(0, identity::Way::EveryRequest), static_token)),
        "",
        Verdict::NoTarget,
    ));
}

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
        values: direct_and_portal(cell(Way::Direct), cell(Way::Unfiltered)),
        ratios: to_direct(ratio_text(ratio(unfiltered, direct))),
        target: String::new(),
        verdict: Verdict::NoTarget,
    });
    table.row(Row {
        scenario: format!(
            "LIST {pods} pods ({list_mb:.0} MB), filtered to team a (tenant): lists/s (MB/s of the list)"
        ),
        values: direct_and_portal(String::new(), cell(Way::Filtered)),
        ratios: to_direct(ratio_text(ratio(filtered, direct))),
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
        values: direct_and_portal(single(Way::Direct, &p50), pair(&p50)),
        ratios: to_direct(String::new()),
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
        values: direct_and_portal(single(Way::Direct, &cpu), pair(&cpu)),
        ratios: to_direct(String::new()),
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
            values: direct_and_portal(millis(list.slowest_single), millis(list.fleet.p50)),
            ratios: to_direct(ratio_text(ratio(Some(fleet), Some(slowest)))),
            // Judged where the members answer as remote API servers do:
            // answering at once, on the cores kubeportal has, the slowest
            // member's list is their CPU, not the wait the target is about.
            target: if list.latency.is_zero() {
                String::new()
            } else {
                target.clone()
            },
            verdict: if list.latency.is_zero() {
                Verdict::NoTarget
            } else {
                Verdict::from_bool(list.ratio_to_slowest() <= fleet::TARGET_RATIO)
            },
        });
        table.row(Row {
            scenario: format!(
                "fleet list, {} cluster{}{}: p50 (direct: sum of the member lists, one after another); fleet p99; kubeportal CPU per list {}",
                list.clusters,
                if list.clusters == 1 { "" } else { "s" },
                answering(list),
                list.portal_cpu.map_or_else(|| "?".to_owned(), millis),
            ),
            values: direct_and_portal(millis(list.sum_direct), format!("{} / {}", millis(list.fleet.p50), millis(list.fleet.p99))),
            ratios: to_direct(ratio_text(ratio(Some(fleet), Some(sum)))),
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
    fn proxy_targets_compare_kubeportal_with_its_peers() {
        use crate::fixtures::Seeded;
        use crate::proxy::Upstream;
        use std::collections::BTreeMap;

        // A four-second run at `rate` requests/s, `cpu_us` of CPU each.
        let run = |rate: u64, cpu_us: u64, p50_us: f64| Summary {
            requests: rate * 4,
            duration_us: 4_000_000,
            bytes: rate * 4 * 3_000,
            connect_errors: 0,
            read_errors: 0,
            write_errors: 0,
            status_errors: 0,
            timeouts: 0,
            p50_us,
            p90_us: p50_us,
            p99_us: p50_us,
            max_us: p50_us,
            server_cpu: Some(Duration::from_micros(cpu_us * rate * 4)),
        };
        let mut runs = BTreeMap::new();
        for scenario in Scenario::ALL {
            runs.insert((scenario, Via::Direct), Ok(run(20_000, 30, 40.0)));
            runs.insert((scenario, Via::Kubeportal), Ok(run(15_000, 25, 60.0)));
            runs.insert((scenario, Via::Nginx), Ok(run(14_000, 28, 100.0)));
        }
        let mut results = UpstreamResults {
            upstream: Upstream::Tls,
            seeded: Seeded {
                pod_bytes: 2_000,
                list_bytes: 1 << 20,
                list_items: 500,
            },
            runs,
            unavailable: BTreeMap::from([(
                Via::HaProxy,
                "haproxy not installed: apt-get install haproxy".to_owned(),
            )]),
            instructions: Err("valgrind not installed: apt-get install valgrind".into()),
        };
        let rows = |results: &UpstreamResults| {
            let mut table = Table::default();
            proxy_rows(&mut table, results);
            table.rows().cloned().collect::<Vec<Row>>()
        };
        let find = |rows: &[Row], prefix: &str| {
            rows.iter()
                .find(|row| row.scenario.starts_with(prefix))
                .unwrap_or_else(|| panic!("no row {prefix}"))
                .clone()
        };
        let table = rows(&results);
        let throughput = find(&table, "GET pod, 64 conn: requests/s");
        // Ahead of nginx, but HAProxy was not measured.
        assert_eq!(throughput.verdict, Verdict::Unknown);
        assert_eq!(throughput.values[3], "not measured (not installed)");
        assert_eq!(throughput.ratios[..3], ["0.75x", "1.07x", ""]);
        let cpu = find(&table, "GET pod, 64 conn: CPU per request");
        assert_eq!(cpu.values[1], "25.0 µs");
        assert_eq!(cpu.verdict, Verdict::Met);
        let added = find(&table, "GET pod, 1 conn: added p50 latency");
        assert_eq!(added.values[1], "+20 µs");
        assert_eq!(added.verdict, Verdict::Met);
        assert_eq!(
            find(&table, "LIST 1 MiB, 16 conn: MB/s").verdict,
            Verdict::Met
        );
        assert!(find(&table, "GET pod, 2,000 in sequence")
            .scenario
            .contains("not measured: valgrind not installed"));

        // HAProxy measured, faster than kubeportal: the target is missed.
        results.unavailable.clear();
        for scenario in Scenario::ALL {
            results
                .runs
                .insert((scenario, Via::HaProxy), Ok(run(16_000, 20, 50.0)));
        }
        results.instructions = Ok(BTreeMap::from([
            (
                Via::Kubeportal,
                Ok(callgrind::Instructions {
                    total: 300_000_000,
                    store: 40_000_000,
                    requests: 2_000,
                }),
            ),
            (
                Via::Nginx,
                Ok(callgrind::Instructions {
                    total: 60_000_000,
                    store: 0,
                    requests: 2_000,
                }),
            ),
            (Via::HaProxy, Err("haproxy exited".to_owned())),
            (
                Via::BareHyper,
                Ok(callgrind::Instructions {
                    total: 75_000_000,
                    store: 0,
                    requests: 2_000,
                }),
            ),
        ]));
        let table = rows(&results);
        let throughput = find(&table, "GET pod, 64 conn: requests/s");
        assert_eq!(throughput.verdict, Verdict::Missed);
        assert_eq!(throughput.ratios[2], "0.94x");
        let instructions = find(&table, "GET pod, 2,000 in sequence");
        assert_eq!(
            instructions.values,
            ["", "150,000", "30,000", "failed", "", "37,500"].map(str::to_owned)
        );
        assert_eq!(instructions.ratios[1], "5.00x");
        assert_eq!(instructions.ratios[4], "4.00x");
        let store = find(&table, "of those, on SQLite's worker threads");
        assert_eq!(
            store.values,
            ["", "20,000", "", "", "", ""].map(str::to_owned)
        );
        // Without a thread told apart, the row says so rather than 0.
        if let Ok(measured) = &mut results.instructions {
            if let Some(Ok(portal)) = measured.get_mut(&Via::Kubeportal) {
                portal.store = 0;
            }
        }
        let table = rows(&results);
        let store = find(&table, "of those, on SQLite's worker threads");
        assert!(
            store.scenario.contains("not told apart"),
            "{}",
            store.scenario
        );
    }

    #[test]
    fn identity_rows_read_static_then_remembered_then_every_request() {
        use crate::identity::{IdentityResult, Way};
        let run = |rate: u64, cpu_us: u64, p50_us: f64| Summary {
            requests: rate * 4,
            duration_us: 4_000_000,
            bytes: rate * 4 * 3_000,
            connect_errors: 0,
            read_errors: 0,
            write_errors: 0,
            status_errors: 0,
            timeouts: 0,
            p50_us,
            p90_us: p50_us,
            p99_us: p50_us,
            max_us: p50_us,
            server_cpu: Some(Duration::from_micros(cpu_us * rate * 4)),
        };
        let rows = |remembered: u64| {
            let result = IdentityResult {
                runs: [
                    [
                        Ok(run(30_000, 34, 0.0)),
                        Ok(run(remembered, 36, 0.0)),
                        Ok(run(14_000, 90, 0.0)),
                    ],
                    [
                        Ok(run(9_000, 60, 105.0)),
                        Ok(run(8_800, 62, 108.0)),
                        Err("wrk failed".into()),
                    ],
                ],
                token_bytes: 420,
            };
            assert_eq!(result.run(1, Way::EveryRequest), Err("wrk failed".into()));
            let mut table = Table::default();
            identity_rows(&mut table, &result);
            table.rows().cloned().collect::<Vec<Row>>()
        };
        let table = rows(29_000);
        let cell = |table: &[Row], prefix: &str| {
            let row = table
                .iter()
                .find(|row| row.scenario.starts_with(prefix))
                .unwrap_or_else(|| panic!("no row {prefix}"));
            (row.values[1].clone(), row.verdict)
        };
        assert_eq!(
            cell(&table, "GET pod, 64 conn: requests/s").0,
            "30,000 / 29,000 / 14,000"
        );
        assert_eq!(
            cell(&table, "GET pod, 64 conn: kubeportal CPU").0,
            "34.0 µs / 36.0 µs / 90.0 µs"
        );
        assert!(cell(&table, "GET pod, 1 conn: p50")
            .0
            .starts_with("105 µs / 108 µs / "));
        assert_eq!(
            cell(&table, "ES256 user token, remembered"),
            ("0.97x".to_owned(), Verdict::Met)
        );
        assert_eq!(cell(&table, "ES256 user token, checked").0, "0.47x");
        assert_eq!(
            cell(&rows(20_000), "ES256 user token, remembered"),
            ("0.67x".to_owned(), Verdict::Missed)
        );
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
                "12,000".into(),
                "11,000".into(),
                "1,500".into(),
                "14,000".into(),
            ],
            ratios: [
                "0.45x".into(),
                "0.75x".into(),
                "0.82x".into(),
                "6.00x".into(),
                "0.64x".into(),
            ],
            target: ">= nginx and HAProxy".into(),
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
        assert_eq!(end(lines[0], "HAProxy"), end(lines[3], "11,000"));
        assert_eq!(end(lines[0], "kubeportal/kubectl"), end(lines[3], "6.00x"));
        assert_eq!(end(lines[0], "bare hyper"), end(lines[3], "14,000"));
        assert_eq!(
            end(lines[0], "kubeportal/bare hyper"),
            end(lines[3], "0.64x")
        );
        assert!(lines[3].ends_with("yes"));
        assert!(lines[4].ends_with("NO"));
    }
}
