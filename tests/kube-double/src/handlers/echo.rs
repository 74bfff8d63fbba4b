//! `GET /debug/echo-upgrade`: a bare HTTP/1.1 upgrade that echoes every byte, so
//! proxy tests can check that upgraded connections are bridged both ways.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;

use crate::status::ApiError;
use crate::Shared;

pub(super) async fn echo_upgrade(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
) -> Response {
    let wants_upgrade = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let Some(protocol) = request.headers().get(header::UPGRADE).cloned() else {
        return ApiError::bad_request("send Connection: Upgrade and an Upgrade header")
            .into_response();
    };
    if !wants_upgrade {
        return ApiError::bad_request("send Connection: Upgrade and an Upgrade header")
            .into_response();
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    let shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
        tokio::select! {
            _ = tokio::io::copy(&mut reader, &mut writer) => {
                let _ = writer.shutdown().await;
            }
            _ = crate::server::stopped(shutdown) => {}
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, protocol)
        .body(Body::empty())
        .expect("a valid 101 response")
}
