//! An upgraded request (exec, attach, port-forward over WebSocket or SPDY)
//! once the cluster has switched protocols: both upgraded connections are
//! joined byte for byte, through the session recorder when there is one, and
//! the client gets the cluster's 101 (or, for a WebSocket over HTTP/2, the
//! 200 that RFC 8441 asks for).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::headers;
use super::recording::{self, Recorder};
use crate::audit::spdy;
use crate::telemetry::GaugeGuard;

/// The protocol of a recorded session: how the recorder reads the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// `*.channel.k8s.io` over a WebSocket: the cluster's frames are read.
    WebSocket,
    /// SPDY/3.1: both directions are read, the client's naming the streams.
    Spdy,
}

impl Protocol {
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
    pub response: http::Response<Incoming>,
    pub recording: Option<Recording>,
    pub cluster: String,
    /// Counts the session as an upgraded connection while it lasts.
    pub gauge: GaugeGuard,
    pub websocket_over_http2: bool,
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
    } = bridge;
    let upstream = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let _upgraded = gauge;
        match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => {
                if let Err(error) =
                    join(TokioIo::new(client), TokioIo::new(upstream), recording).await
                {
                    tracing::debug!(%cluster, %error, "upgraded stream ended");
                }
            }
            Err(error) => tracing::warn!(%cluster, %error, "upgrade failed"),
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

/// Copies both ways until both ends are done; what the cluster sends (and,
/// over SPDY, what the client sends) passes the recorder on its way.
async fn join<C, U>(
    mut client: C,
    mut upstream: U,
    recording: Option<Recording>,
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
    let to_cluster = async {
        tokio::io::copy(&mut client_read, &mut upstream_write).await?;
        tokio::io::AsyncWriteExt::shutdown(&mut upstream_write).await
    };
    let to_client = recording::copy_recorded(upstream_read, &mut client_write, recorder);
    tokio::try_join!(to_cluster, to_client).map(|_| ())
}
