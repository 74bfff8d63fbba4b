//! Misbehaviour on demand: server-wide [`Fault`]s, per-resource failures and delays,
//! and the per-resource LIST counters tests use to check caching and coalescing.

use std::collections::HashMap;
use std::future::pending;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use http::StatusCode;
use tokio::sync::Notify;

use crate::resources::ResourceType;
use crate::server::ConnectionInfo;
use crate::status::ApiError;
use crate::Shared;

/// How long a reset waits after the partial body was handed to the connection, so
/// those bytes reach the client before the reset does.
const RESET_DELAY: Duration = Duration::from_millis(100);

/// A server-wide fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Normal service.
    #[default]
    None,
    /// The listening socket is closed, so connecting fails with "connection
    /// refused"; open connections are reset. `Fault::None` binds the same port again.
    Refuse,
    /// Connections are accepted and the TLS handshake completes, but no request is
    /// ever answered (the request is read and recorded, the response never comes).
    /// Applies to requests on connections opened before the fault too.
    Hang,
    /// Response headers come at once; the body dribbles one byte per interval.
    SlowBody { interval: Duration },
    /// Response headers and the first half of the first body chunk are sent, then
    /// the TCP connection is reset (SO_LINGER 0, then close). A watch or followed
    /// log is reset after its first event or line.
    ResetMidStream,
    /// New TLS handshakes present a certificate for the same names signed by a CA
    /// other than `ca_pem()`; open connections are reset.
    WrongCertificate,
}

/// The knobs tests turn, and the counters they read.
#[derive(Default)]
pub(crate) struct Knobs {
    fault: Mutex<Fault>,
    failures: Mutex<HashMap<String, u16>>,
    delays: Mutex<HashMap<String, Duration>>,
    /// LIST calls by (plural, group).
    list_calls: Mutex<HashMap<(String, String), usize>>,
    /// Response bodies handed to hyper and not yet dropped: finished, or
    /// abandoned because the client went away.
    open_responses: Arc<AtomicUsize>,
}

/// Decrements the open-response count when the body it rides with is dropped.
struct OpenResponse(Arc<AtomicUsize>);

/// A response body, unchanged (size hint included), counted while it lives.
struct Tracked {
    body: Body,
    _open: OpenResponse,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for OpenResponse {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Knobs {
    /// Sets the fault and returns the previous one.
    pub(crate) fn set_fault(&self, fault: Fault) -> Fault {
        std::mem::replace(&mut *self.fault.lock().expect("knobs poisoned"), fault)
    }

    pub(crate) fn fault(&self) -> Fault {
        *self.fault.lock().expect("knobs poisoned")
    }

    pub(crate) fn fail_resource(&self, selector: &str, status: u16) {
        let mut failures = self.failures.lock().expect("knobs poisoned");
        if status < 400 {
            failures.remove(selector);
        } else {
            failures.insert(selector.to_owned(), status);
        }
    }

    pub(crate) fn delay_resource(&self, selector: &str, delay: Duration) {
        let mut delays = self.delays.lock().expect("knobs poisoned");
        if delay.is_zero() {
            delays.remove(selector);
        } else {
            delays.insert(selector.to_owned(), delay);
        }
    }

    /// Waits for the resource's delay, then fails if the resource is set to fail.
    pub(crate) async fn before_resource(&self, resource: &ResourceType) -> Result<(), ApiError> {
        let delay = self
            .delays
            .lock()
            .expect("knobs poisoned")
            .iter()
            .filter(|(selector, _)| resource.is_designated_by(selector))
            .map(|(_, delay)| *delay)
            .max();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let failure = self
            .failures
            .lock()
            .expect("knobs poisoned")
            .iter()
            .find(|(selector, _)| resource.is_designated_by(selector))
            .map(|(_, status)| *status);
        match failure {
            Some(status) => Err(ApiError::injected(status, resource)),
            None => Ok(()),
        }
    }

    pub(crate) fn count_list(&self, resource: &ResourceType) {
        let key = (resource.plural.clone(), resource.group.clone());
        *self
            .list_calls
            .lock()
            .expect("knobs poisoned")
            .entry(key)
            .or_default() += 1;
    }

    /// LIST calls of `plural` (every group) or `plural.group`.
    pub(crate) fn list_calls(&self, selector: &str) -> usize {
        self.list_calls
            .lock()
            .expect("knobs poisoned")
            .iter()
            .filter(|((plural, group), _)| {
                selector == plural || (!group.is_empty() && selector == format!("{plural}.{group}"))
            })
            .map(|(_, count)| count)
            .sum()
    }

    pub(crate) fn open_responses(&self) -> usize {
        self.open_responses.load(Ordering::SeqCst)
    }

    /// Counts `response` as open until its body is dropped.
    fn track(&self, response: Response) -> Response {
        self.open_responses.fetch_add(1, Ordering::SeqCst);
        let open = OpenResponse(self.open_responses.clone());
        response.map(|body| Body::new(Tracked { body, _open: open }))
    }

    pub(crate) fn clear_list_calls(&self) {
        self.list_calls.lock().expect("knobs poisoned").clear();
    }
}

/// Middleware: applies the request-level faults (`Hang`, `SlowBody`,
/// `ResetMidStream`); the connection-level ones are the server's.
pub(crate) async fn apply_fault(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let fault = shared.knobs.fault();
    let connection = request.extensions().get::<ConnectionInfo>().cloned();
    let response = match fault {
        Fault::Hang => pending().await,
        Fault::SlowBody { interval } => {
            let response = next.run(request).await;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                return response;
            }
            response.map(|body| dribble(body, interval))
        }
        Fault::ResetMidStream => {
            let response = next.run(request).await;
            match connection {
                Some(connection) if response.status() != StatusCode::SWITCHING_PROTOCOLS => {
                    response.map(|body| reset_after_first_part(body, connection.reset))
                }
                _ => response,
            }
        }
        Fault::None | Fault::Refuse | Fault::WrongCertificate => next.run(request).await,
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return response;
    }
    shared.knobs.track(response)
}

/// The same body, one byte per `interval`.
fn dribble(body: Body, interval: Duration) -> Body {
    let bytes = body
        .into_data_stream()
        .map_ok(|chunk| {
            stream::iter(
                (0..chunk.len())
                    .map(move |index| Ok::<Bytes, axum::Error>(chunk.slice(index..index + 1))),
            )
        })
        .try_flatten()
        .then(move |byte| async move {
            tokio::time::sleep(interval).await;
            byte
        });
    Body::from_stream(bytes)
}

/// The first half of the body's first chunk, then a reset of the connection.
fn reset_after_first_part(body: Body, reset: Arc<Notify>) -> Body {
    let first = stream::once(async move {
        let mut data = body.into_data_stream();
        match data.next().await {
            Some(Ok(chunk)) if !chunk.is_empty() => chunk.slice(..chunk.len().div_ceil(2)),
            _ => Bytes::new(),
        }
    });
    let then_reset = stream::once(async move {
        tokio::time::sleep(RESET_DELAY).await;
        reset.notify_one();
        pending::<Bytes>().await
    });
    Body::from_stream(first.chain(then_reset).map(Ok::<Bytes, std::io::Error>))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_calls_count_by_plural_or_qualified_plural() {
        let knobs = Knobs::default();
        let pods = ResourceType::custom("", "v1", "pods", "Pod", true);
        let metrics = ResourceType::custom("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", true);
        knobs.count_list(&pods);
        knobs.count_list(&pods);
        knobs.count_list(&metrics);
        assert_eq!(knobs.list_calls("pods"), 3);
        assert_eq!(knobs.list_calls("pods.metrics.k8s.io"), 1);
        assert_eq!(knobs.list_calls("services"), 0);
        knobs.clear_list_calls();
        assert_eq!(knobs.list_calls("pods"), 0);
    }

    #[tokio::test]
    async fn failures_and_delays_can_be_lifted() {
        let knobs = Knobs::default();
        let services = ResourceType::custom("", "v1", "services", "Service", true);
        knobs.fail_resource("services", 503);
        assert!(knobs.before_resource(&services).await.is_err());
        knobs.fail_resource("services", 0);
        assert!(knobs.before_resource(&services).await.is_ok());
        knobs.delay_resource("services", Duration::from_millis(50));
        let started = std::time::Instant::now();
        knobs.before_resource(&services).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn dribbled_bodies_keep_their_bytes() {
        let body = dribble(Body::from("abc"), Duration::from_millis(1));
        let bytes = axum::body::to_bytes(body, 100).await.unwrap();
        assert_eq!(&bytes[..], b"abc");
    }
}
