//! An upgraded request (exec, attach, port-forward over WebSocket or SPDY)
//! once the cluster has switched protocols: both upgraded connections are
//! joined byte for byte, through the session recorder when there is one, and
//! the client gets the cluster's 101 (or, for a WebSocket over HTTP/2, the
//! 200 that RFC 8441 asks for).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::closing::{self, Framing, Sessions};
use super::headers;
use super::recording::{self, Recorder};
use crate::audit::spdy;
use crate::context::SessionTotals;
use crate::telemetry::GaugeGuard;
use crate::upstream::UpstreamBody;

/// The protocol of a recorded session: how the recorder reads the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// `*.channel.k8s.io` over a WebSocket: the cluster's frames are read.
    WebSocket,
    /// SPDY/3.1: both directions are read, the client's naming the streams.
    Spdy,
}

impl Protocol {
    /// How recordings name it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Spdy => "spdy",
        }
    }

    /// The protocol an upgrade request asks for, if the recorder reads it.
    pub(super) fn of(request: &http::HeaderMap, websocket_over_http2: bool) -> Option<Self> {
        if websocket_over_http2 || headers::is_websocket(request) {
            Some(Self::WebSocket)
        } else if headers::is_spdy(request) {
            Some(Self::Spdy)
        } else {
            None
        }
    }
}

/// A session's recorder and how it reads the session.
pub(super) struct Recording {
    pub recorder: Recorder,
    pub protocol: Protocol,
}

/// Everything the bridge of one upgraded session needs.
pub(super) struct Bridge {
    /// The client side's upgrade, taken from its request.
    pub client: OnUpgrade,
    /// The cluster's `101 Switching Protocols`.
    pub response: http::Response<UpstreamBody>,
    pub recording: Option<Recording>,
    pub cluster: String,
    /// Counts the session as an upgraded connection while it lasts.
    pub gauge: GaugeGuard,
    pub websocket_over_http2: bool,
    /// Told what the session moved, once it has ended (for its audit record).
    pub totals: Option<tokio::sync::oneshot::Sender<SessionTotals>>,
    /// The process's sessions: this one ends with them at shutdown.
    pub sessions: Sessions,
}

/// Spawns the session and answers the client.
pub(super) fn bridge(bridge: Bridge) -> Response {
    let Bridge {
        client,
        mut response,
        recording,
        cluster,
        gauge,
        websocket_over_http2,
        totals,
        sessions,
    } = bridge;
    let framing = Framing::of(response.headers(), websocket_over_http2);
    let upstream = hyper::upgrade::on(&mut response);
    let stopping = sessions.stopping();
    sessions.spawn(async move {
        let _upgraded = gauge;
        let mut recording = recording;
        let (to_cluster, to_client) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => {
                let (client, upstream) = closing::pair(
                    TokioIo::new(client),
                    TokioIo::new(upstream),
                    framing,
                    &stopping,
                );
                let client = Counting::new(client, to_cluster.clone());
                let upstream = Counting::new(upstream, to_client.clone());
                // At shutdown the session ends between frames; one that
                // cannot is cut after the grace period.
                let cut = async {
                    stopping.cancelled().await;
                    tokio::time::sleep(closing::CLOSE_GRACE).await;
                };
                let ended = tokio::select! {
                    joined = join(client, upstream, recording.as_mut()) => joined,
                    () = cut => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "cut at shutdown in the middle of a frame",
                    )),
                };
                if let Err(error) = ended {
                    tracing::debug!(%cluster, %error, "upgraded stream ended");
                }
            }
            Err(error) => tracing::warn!(%cluster, %error, "upgrade failed"),
        }
        if let Some(Recording { recorder, .. }) = recording {
            finish(recorder, stopping.is_cancelled()).await;
        }
        if let Some(totals) = totals {
            let _ = totals.send(SessionTotals {
                to_cluster: to_cluster.load(Ordering::Relaxed),
                to_client: to_client.load(Ordering::Relaxed),
            });
        }
    });
    let (mut parts, _) = response.into_parts();
    headers::strip_response(&mut parts.headers, true);
    if websocket_over_http2 {
        // RFC 8441: the stream is accepted with a 2xx and no HTTP/1.1
        // handshake headers.
        parts.status = StatusCode::OK;
        for name in ["connection", "upgrade", "sec-websocket-accept"] {
            parts.headers.remove(name);
        }
    }
    Response::from_parts(parts, Body::empty())
}

/// Stores the end of a session's recording; one ended by shutdown says so.
async fn finish(mut recorder: Recorder, shut_down: bool) {
    if shut_down {
        let _ = recorder
            .mark(&format!("session ended: {}", closing::GOING_AWAY))
            .await;
    }
    let name = recorder.name.clone();
    if let Err(error) = recorder.finish().await {
        tracing::warn!(recording = %name, %error, "the end of a session recording was lost");
    }
}

/// Copies both ways until both ends are done; what the cluster sends (and,
/// over SPDY, what the client sends) passes the recorder on its way.
async fn join<C, U>(
    mut client: C,
    mut upstream: U,
    recording: Option<&mut Recording>,
) -> std::io::Result<()>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let recorder = match recording {
        None => {
            return tokio::io::copy_bidirectional(&mut client, &mut upstream)
                .await
                .map(|_| ())
        }
        Some(Recording {
            recorder,
            protocol: Protocol::Spdy,
        }) => return spdy::join_recorded(client, upstream, recorder).await,
        Some(Recording {
            recorder,
            protocol: Protocol::WebSocket,
        }) => recorder,
    };
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (upstream_read, mut upstream_write) = tokio::io::split(upstream);
    // The client's terminal sizes go to the recording too.
    let (sizes, resizes) = tokio::sync::mpsc::channel(16);
    let mut reader = recording::ResizeReader::new(recorder.reads_base64());
    let to_cluster = async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = client_read.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            for size in reader.push(&buffer[..read]) {
                let _ = sizes.try_send(size);
            }
            upstream_write.write_all(&buffer[..read]).await?;
        }
        drop(sizes);
        upstream_write.shutdown().await
    };
    let to_client = recording::copy_recorded(upstream_read, &mut client_write, recorder, resizes);
    tokio::try_join!(to_cluster, to_client).map(|_| ())
}

/// One end of a session, counting the bytes read from it.
struct Counting<T> {
    inner: T,
    read: Arc<AtomicU64>,
}

impl<T> Counting<T> {
    fn new(inner: T, read: Arc<AtomicU64>) -> Self {
        Self { inner, read }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counting<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buffer.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(context, buffer);
        let read = buffer.filled().len() - before;
        self.read.fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counting<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, bytes)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}
