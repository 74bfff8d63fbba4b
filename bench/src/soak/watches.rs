//! Watches held open through kubeportal for the whole soak, each on an
//! HTTP/1.1 connection of its own as kubectl and browsers hold them, and a
//! writer that changes the watched object on the double every so often, so
//! every watch should deliver an event every so often.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::processes::DoubleProcess;

/// Watches opened at once.
const OPENING_AT_ONCE: usize = 50;
/// How long a watch may take to answer with its headers and first event.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The name of the config map the writer changes.
pub const CHANGING_OBJECT: &str = "soak-tick";

/// What the watches have delivered, updated by their tasks.
pub struct WatchBoard {
    epoch: Instant,
    /// Per watch, milliseconds after `epoch` of its last event plus one
    /// (zero: none yet).
    last_event: Vec<AtomicU64>,
    alive: AtomicUsize,
    events: AtomicU64,
    /// Why the first watch that ended ended.
    first_end: Mutex<Option<String>>,
}

impl WatchBoard {
    fn new(count: usize) -> WatchBoard {
        WatchBoard {
            epoch: Instant::now(),
            last_event: (0..count).map(|_| AtomicU64::new(0)).collect(),
            alive: AtomicUsize::new(0),
            events: AtomicU64::new(0),
            first_end: Mutex::new(None),
        }
    }

    /// Watches whose stream is still open.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// Events received by all watches so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Watches that delivered an event at or after `since`.
    pub fn delivering_since(&self, since: Instant) -> usize {
        let since = since.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        self.last_event
            .iter()
            .filter(|last| last.load(Ordering::Relaxed) >= since)
            .count()
    }

    pub fn first_end(&self) -> Option<String> {
        self.first_end.lock().expect("not poisoned").clone()
    }

    fn delivered(&self, watch: usize, events: u64) {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.last_event[watch].store(now, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
    }

    fn ended(&self, reason: String) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
        self.first_end
            .lock()
            .expect("not poisoned")
            .get_or_insert(reason);
    }
}

/// Opens `count` watches of `path` (which must name a collection with at
/// least one object, so that each watch's first event proves it open).
/// Returns the board, or an error when any watch failed to open.
pub async fn open(
    address: SocketAddr,
    path: &str,
    authorization: &str,
    count: usize,
) -> Result<Arc<WatchBoard>> {
    let board = Arc::new(WatchBoard::new(count));
    let outcomes: Vec<Result<()>> = futures::stream::iter(0..count)
        .map(|watch| {
            let board = board.clone();
            let request = Request::get(path)
                .header(http::header::HOST, address.to_string())
                .header(http::header::AUTHORIZATION, authorization)
                .body(Empty::<Bytes>::new())
                .expect("a GET with valid headers builds");
            async move {
                tokio::time::timeout(OPEN_TIMEOUT, open_one(address, request, watch, board))
                    .await
                    .unwrap_or_else(|_| bail!("no headers and first event within {OPEN_TIMEOUT:?}"))
            }
        })
        .buffer_unordered(OPENING_AT_ONCE)
        .collect()
        .await;
    let failures: Vec<_> = outcomes.into_iter().filter_map(Result::err).collect();
    if let Some(first) = failures.first() {
        bail!(
            "{} of {count} watches did not open; the first: {first:#}",
            failures.len()
        );
    }
    Ok(board)
}

/// Opens one watch, waits for its first event, and leaves a task reading it.
async fn open_one(
    address: SocketAddr,
    request: Request<Empty<Bytes>>,
    watch: usize,
    board: Arc<WatchBoard>,
) -> Result<()> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        bail!("status {}", response.status());
    }
    let mut body = response.into_body();
    let first = loop {
        match body.frame().await {
            Some(Ok(frame)) => match frame.data_ref() {
                Some(data) if !data.is_empty() => break data.clone(),
                _ => continue,
            },
            Some(Err(error)) => bail!("the watch failed before its first event: {error}"),
            None => bail!("the watch ended before its first event"),
        }
    };
    board.alive.fetch_add(1, Ordering::Relaxed);
    board.delivered(watch, lines(&first));
    tokio::spawn(async move {
        // The sender keeps the connection open.
        let _sender = sender;
        let reason = loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let events = lines(data);
                        if events > 0 {
                            board.delivered(watch, events);
                        }
                    }
                }
                Some(Err(error)) => break format!("the watch failed: {error}"),
                None => break "the watch ended".to_owned(),
            }
        };
        board.ended(reason);
    });
    Ok(())
}

/// Complete events in a chunk of a watch stream (one JSON object a line).
fn lines(data: &Bytes) -> u64 {
    data.iter().filter(|&&byte| byte == b'\n').count() as u64
}

/// Changes the watched config map on the double every `every` until
/// dropped; counts the changes made and the ones that failed.
pub struct Writer {
    pub changes: Arc<AtomicU64>,
    pub failures: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Writer {
    /// Creates the config map (so watches start with it) without changing it yet.
    pub async fn create(double: &DoubleProcess, namespace: &str) -> Result<()> {
        let client = crate::fixtures::double_client(&std::fs::read_to_string(&double.ca_file)?)?;
        client
            .post(format!(
                "{}/api/v1/namespaces/{namespace}/configmaps",
                double.url
            ))
            .bearer_auth(&double.token)
            .json(&json!({"metadata": {"name": CHANGING_OBJECT}, "data": {"tick": "0"}}))
            .send()
            .await?
            .error_for_status()
            .context("creating the watched config map")?;
        Ok(())
    }

    pub fn start(double: &DoubleProcess, namespace: &str, every: Duration) -> Result<Writer> {
        let client = crate::fixtures::double_client(&std::fs::read_to_string(&double.ca_file)?)?;
        let url = format!(
            "{}/api/v1/namespaces/{namespace}/configmaps/{CHANGING_OBJECT}",
            double.url
        );
        let token = double.token.clone();
        let changes = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let changes = changes.clone();
            let failures = failures.clone();
            async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for tick in 1u64.. {
                    ticks.tick().await;
                    let patched = client
                        .patch(&url)
                        .bearer_auth(&token)
                        .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
                        .body(json!({"data": {"tick": tick.to_string()}}).to_string())
                        .send()
                        .await
                        .and_then(reqwest::Response::error_for_status);
                    match patched {
                        Ok(_) => changes.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failures.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
        });
        Ok(Writer {
            changes,
            failures,
            task,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_by_line() {
        assert_eq!(lines(&Bytes::from_static(b"{\"type\":\"ADDED\"}\n")), 1);
        assert_eq!(lines(&Bytes::from_static(b"{}\n{}\n")), 2);
        assert_eq!(lines(&Bytes::from_static(b"{\"type\":")), 0);
    }

    #[test]
    fn delivery_is_judged_per_watch() {
        let board = WatchBoard::new(3);
        let before = Instant::now();
        board.delivered(0, 1);
        board.delivered(2, 2);
        assert_eq!(board.delivering_since(before), 2);
        assert_eq!(board.events(), 3);
        let later = Instant::now() + Duration::from_secs(1);
        assert_eq!(board.delivering_since(later), 0);
    }
}
