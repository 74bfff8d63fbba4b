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
use crate::telemetry::GaugeGuard;

/// Everything the bridge of one upgraded session needs.
pub(super) struct Bridge {
    /// The client side's upgrade, taken from its request.
    pub client: OnUpgrade,
    /// The cluster's `101 Switching Protocols`.
    pub response: http::Response<Incoming>,
    pub recorder: Option<Recorder>,
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
        recorder,
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
                    join(TokioIo::new(client), TokioIo::new(upstream), recorder).await
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

/// Copies both ways until both ends are done; what the cluster sends passes
/// the recorder on its way to the client.
async fn join<C, U>(
    mut client: C,
    mut upstream: U,
    recorder: Option<Recorder>,
) -> std::io::Result<()>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(recorder) = recorder else {
        return tokio::io::copy_bidirectional(&mut client, &mut upstream)
            .await
            .map(|_| ());
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
