//! Long-lived streams (watches, followed logs) to one cluster, multiplexed
//! over HTTP/2 connections of their own.
//!
//! On the connection shared with ordinary requests they would use up the
//! cluster's concurrent-stream limit and queue every other request behind
//! them; on a connection each they cost a socket apiece, and ten thousand
//! watches would need twenty thousand open files. Here each connection
//! carries at most `kubernetes.streamsPerConnection` of them (below the
//! cluster's own limit: kube-apiserver allows 1,000, Go's default is 250), and
//! a stream window per stream that the connection window covers for all of
//! them, so a caller who stops reading stalls only its own stream.
//!
//! A cluster that does not negotiate HTTP/2 (plain `http://`, or no `h2` in
//! ALPN) gets an HTTP/1.1 connection per stream instead.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::ServiceExt;

/// Flow-control window of one stream: what a stalled caller can leave unread.
const STREAM_WINDOW: u32 = 1024 * 1024;
/// Keep-alive pings find connections that died quietly.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The HTTP/2 connections that carry one cluster's long-lived streams.
pub(super) struct StreamPool {
    connector: super::ClusterConnector,
    per_connection: usize,
    connections: Mutex<Vec<Arc<StreamConnection>>>,
    /// One connection is opened at a time; concurrent callers wait for it.
    connecting: tokio::sync::Mutex<()>,
    /// Set once the cluster is found not to speak HTTP/2.
    http1_only: AtomicBool,
}

struct StreamConnection {
    sender: http2::SendRequest<Body>,
    open: AtomicUsize,
}

/// A stream's place on a connection, given back when dropped (with the
/// response body that carries it).
pub struct StreamLease {
    pool: Arc<StreamPool>,
    connection: Arc<StreamConnection>,
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        if self.connection.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.pool.close_idle();
        }
    }
}

/// Why a stream could not be sent; the text never holds a credential.
pub(super) enum StreamError {
    /// The cluster does not speak HTTP/2: send the request another way.
    Http1Only(Box<Request<Body>>),
    Failed(String),
}

impl StreamPool {
    pub(super) fn new(connector: super::ClusterConnector, per_connection: usize) -> Self {
        Self {
            connector,
            per_connection: per_connection.max(1),
            connections: Mutex::new(Vec::new()),
            connecting: tokio::sync::Mutex::new(()),
            http1_only: AtomicBool::new(false),
        }
    }

    /// Sends a long-lived request on a connection with room for it.
    pub(super) async fn send(
        self: &Arc<Self>,
        request: Request<Body>,
    ) -> Result<(Response<Incoming>, StreamLease), StreamError> {
        let Some((mut sender, lease)) = self.lease(request.uri()).await? else {
            return Err(StreamError::Http1Only(Box::new(request)));
        };
        match sender.send_request(request).await {
            Ok(response) => Ok((response, lease)),
            Err(error) => Err(StreamError::Failed(super::describe(&error))),
        }
    }

    async fn lease(
        self: &Arc<Self>,
        uri: &Uri,
    ) -> Result<Option<(http2::SendRequest<Body>, StreamLease)>, StreamError> {
        if self.http1_only.load(Ordering::Acquire) {
            return Ok(None);
        }
        if let Some(found) = self.take_room() {
            return Ok(Some(found));
        }
        let _connecting = self.connecting.lock().await;
        loop {
            // Another caller may have opened a connection while this one
            // waited; and callers that did not wait may fill a new one first.
            if let Some(found) = self.take_room() {
                return Ok(Some(found));
            }
            if self.http1_only.load(Ordering::Acquire) {
                return Ok(None);
            }
            let Some(sender) = self.connect(uri).await? else {
                self.http1_only.store(true, Ordering::Release);
                return Ok(None);
            };
            self.connections
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(Arc::new(StreamConnection {
                    sender,
                    open: AtomicUsize::new(0),
                }));
        }
    }

    /// A place on an open connection with room, if there is one.
    fn take_room(self: &Arc<Self>) -> Option<(http2::SendRequest<Body>, StreamLease)> {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        connections.retain(|connection| !connection.sender.is_closed());
        let connection = connections
            .iter()
            .find(|connection| connection.open.load(Ordering::Acquire) < self.per_connection)?;
        connection.open.fetch_add(1, Ordering::AcqRel);
        Some((
            connection.sender.clone(),
            StreamLease {
                pool: self.clone(),
                connection: connection.clone(),
            },
        ))
    }

    /// Opens an HTTP/2 connection, or `None` if the cluster will not speak it.
    async fn connect(&self, uri: &Uri) -> Result<Option<http2::SendRequest<Body>>, StreamError> {
        let io = self
            .connector
            .clone()
            .oneshot(uri.clone())
            .await
            .map_err(|error| StreamError::Failed(super::describe(error.as_ref())))?;
        if !io.connected().is_negotiated_h2() {
            return Ok(None);
        }
        let window =
            STREAM_WINDOW.saturating_mul(u32::try_from(self.per_connection).unwrap_or(u32::MAX));
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(window.min(i32::MAX as u32))
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .handshake(io)
            .await
            .map_err(|error| StreamError::Failed(super::describe(&error)))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "stream connection ended");
            }
        });
        Ok(Some(sender))
    }

    /// Keeps one idle connection for the next stream and lets the others go
    /// (a connection closes once its last sender is dropped).
    fn close_idle(&self) {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut kept_idle = false;
        connections.retain(|connection| {
            if connection.sender.is_closed() {
                return false;
            }
            if connection.open.load(Ordering::Acquire) > 0 {
                return true;
            }
            !std::mem::replace(&mut kept_idle, true)
        });
    }
}
