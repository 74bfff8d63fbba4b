//! An open-loop load generator: requests are due on a fixed schedule
//! (`rate` per second), spread round-robin over keep-alive HTTP/1.1
//! connections, and each one's latency runs from the moment it was due, not
//! from the moment a connection was free to send it. A server that stalls
//! therefore shows its stall in the latencies (no coordinated omission), the
//! way wrk2 measures.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A request that has no answer within this is a transport error, and its
/// connection is replaced.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections opened at once while the pool is set up.
const OPENING_AT_ONCE: usize = 50;

/// The one request every connection sends: a GET of `path` on `address`.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: SocketAddr,
    pub path: String,
    pub authorization: String,
}

impl Target {
    fn request(&self) -> Request<Empty<Bytes>> {
        Request::get(self.path.as_str())
            .header(http::header::HOST, self.address.to_string())
            .header(http::header::AUTHORIZATION, self.authorization.as_str())
            .body(Empty::new())
            .expect("a GET with valid headers builds")
    }
}

/// What the requests came to, shared by every connection and read (and
/// reset, interval by interval) by the sampler.
#[derive(Default)]
pub struct Tally {
    /// Requests that were due.
    pub sent: AtomicU64,
    /// Answered with a 2xx status and a complete body.
    pub succeeded: AtomicU64,
    /// Answered with another status.
    pub failed_status: AtomicU64,
    /// No complete answer: refused, reset, timed out.
    pub failed_transport: AtomicU64,
    /// Connections replaced after a transport error.
    pub reconnects: AtomicU64,
    /// Microseconds from due to complete body of every answered request
    /// since the last [`Tally::take_latencies`].
    latencies: Mutex<Vec<u32>>,
    /// The first failure seen, for the notes.
    first_failure: Mutex<Option<String>>,
}

impl Tally {
    /// The latencies recorded since the last call.
    pub fn take_latencies(&self) -> Vec<u32> {
        std::mem::take(&mut *self.latencies.lock().expect("not poisoned"))
    }

    pub fn first_failure(&self) -> Option<String> {
        self.first_failure.lock().expect("not poisoned").clone()
    }

    /// Requests answered or failed.
    pub fn completed(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
            + self.failed_status.load(Ordering::Relaxed)
            + self.failed_transport.load(Ordering::Relaxed)
    }

    fn answered(&self, status: StatusCode, latency: Duration) {
        if status.is_success() {
            self.succeeded.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed_status.fetch_add(1, Ordering::Relaxed);
            self.failure(format!("status {status}"));
        }
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.latencies.lock().expect("not poisoned").push(micros);
    }

    fn transport_failure(&self, reason: String) {
        self.failed_transport.fetch_add(1, Ordering::Relaxed);
        self.failure(reason);
    }

    fn failure(&self, reason: String) {
        self.first_failure
            .lock()
            .expect("not poisoned")
            .get_or_insert(reason);
    }
}

/// A keep-alive HTTP/1.1 connection, its task driving the I/O.
async fn connect(address: SocketAddr) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Its errors surface on the sender's next request.
        let _ = connection.await;
    });
    Ok(sender)
}

/// The load: connections, each with the queue of times its requests are due.
pub struct Load {
    queues: Vec<mpsc::UnboundedSender<Instant>>,
    connections: Vec<tokio::task::JoinHandle<()>>,
    tally: Arc<Tally>,
}

impl Load {
    /// Opens `count` connections to the target (all must open).
    pub async fn connect(target: Target, count: usize, tally: Arc<Tally>) -> Result<Load> {
        let senders: Vec<_> = futures::stream::iter(0..count)
            .map(|_| connect(target.address))
            .buffer_unordered(OPENING_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()
            .context("opening the load's connections")?;
        let target = Arc::new(target);
        let mut queues = Vec::with_capacity(count);
        let mut connections = Vec::with_capacity(count);
        for sender in senders {
            let (queue, due) = mpsc::unbounded_channel();
            queues.push(queue);
            connections.push(tokio::spawn(drive(
                sender,
                due,
                target.clone(),
                tally.clone(),
            )));
        }
        Ok(Load {
            queues,
            connections,
            tally,
        })
    }

    /// Sends `rate` requests a second until `end`, round-robin over the
    /// connections, each due at its place in the schedule whatever happened
    /// to the ones before it. Then waits for the answers still owed (at most
    /// [`REQUEST_TIMEOUT`] plus a second) and returns how many never came,
    /// and the load, whose connections stay open until it is dropped.
    pub async fn run(self, rate: f64, start: Instant, end: Instant) -> Finished {
        let mut ticks = tokio::time::interval(Duration::from_millis(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let total = ((end - start).as_secs_f64() * rate).ceil() as u64;
        let mut scheduled: u64 = 0;
        loop {
            ticks.tick().await;
            let now = Instant::now().min(end);
            // Request `n` is due at `n / rate`: those up to now (and before
            // the end) are due.
            let due_by_now = (((now - start).as_secs_f64() * rate) as u64 + 1).min(total);
            while scheduled < due_by_now {
                let due = start + Duration::from_secs_f64(scheduled as f64 / rate);
                let queue = &self.queues[scheduled as usize % self.queues.len()];
                // A queue closes only if its connection task ended, which it
                // does only once the queue is closed.
                let _ = queue.send(due);
                self.tally.sent.fetch_add(1, Ordering::Relaxed);
                scheduled += 1;
            }
            if now >= end {
                break;
            }
        }
        let settled = Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(1);
        while self.tally.completed() < scheduled && Instant::now() < settled {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Finished {
            unanswered: scheduled.saturating_sub(self.tally.completed()),
            _load: self,
        }
    }
}

/// A load whose schedule has ended.
pub struct Finished {
    /// Requests with no answer by the end.
    pub unanswered: u64,
    /// Dropping the queues ends the connections.
    _load: Load,
}

impl Drop for Load {
    fn drop(&mut self) {
        for connection in &self.connections {
            connection.abort();
        }
    }
}

/// One connection: sends each request as it falls due (or as soon as the
/// connection is free after that), reads the whole answer, and records it.
/// After a transport error the connection is replaced.
async fn drive(
    sender: SendRequest<Empty<Bytes>>,
    mut due: mpsc::UnboundedReceiver<Instant>,
    target: Arc<Target>,
    tally: Arc<Tally>,
) {
    let mut sender = Some(sender);
    while let Some(due_at) = due.recv().await {
        let attempt = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let connection = match &mut sender {
                Some(connection) => connection,
                None => {
                    tally.reconnects.fetch_add(1, Ordering::Relaxed);
                    sender.insert(
                        connect(target.address)
                            .await
                            .map_err(|error| format!("{error:#}"))?,
                    )
                }
            };
            connection
                .ready()
                .await
                .map_err(|error| format!("connection closed: {error}"))?;
            let response = connection
                .send_request(target.request())
                .await
                .map_err(|error| format!("request failed: {error}"))?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|error| format!("reading the body failed: {error}"))?;
            Ok::<_, String>(status)
        })
        .await;
        match attempt {
            Ok(Ok(status)) => tally.answered(status, due_at.elapsed()),
            Ok(Err(reason)) => {
                sender = None;
                tally.transport_failure(reason);
            }
            Err(_) => {
                sender = None;
                tally.transport_failure(format!(
                    "no complete answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ));
            }
        }
    }
}
