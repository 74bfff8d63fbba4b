//! The HTTP surface: which path goes where, and the middleware every request passes
//! through (recording, then faults, then authentication).

mod discovery;
mod echo;
mod objects;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::json;

use crate::paths::ApiPath;
use crate::Shared;

/// The double's router, with its middleware.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(health))
        .route("/version", get(version))
        .route("/openapi/v3", get(discovery::openapi_root))
        .route(
            "/openapi/v3/{*group_version}",
            get(discovery::openapi_group_version),
        )
        .route("/debug/echo-upgrade", any(echo::echo_upgrade))
        .fallback(api_request)
        .layer(middleware::from_fn(crate::auth::require_authentication))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            crate::faults::apply_fault,
        ))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            crate::recording::record,
        ))
        .with_state(shared)
}

async fn health() -> &'static str {
    "ok"
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-kube-double",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "none (kube-double is written in Rust)",
        "compiler": "rustc",
        "platform": "linux/amd64",
    }))
}

/// Everything under `/api` and `/apis`.
async fn api_request(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let Some(path) = ApiPath::parse(request.uri().path()) else {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    };
    let result = match path {
        ApiPath::Resource(path) => match shared.access.review(&path, request).await {
            Ok(answered) => answered,
            Err(request) => {
                let watch = QueryParams::parse(request.uri().query()).flag("watch");
                match shared.access.check(&path, request.method(), watch) {
                    Ok(()) => objects::serve(shared, path, request).await,
                    Err(denied) => Err(denied),
                }
            }
        },
        discovery_path => discovery::serve(&shared, discovery_path, &request),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A request's query parameters, in order, repeated ones kept.
pub(crate) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub(crate) fn parse(query: Option<&str>) -> Self {
        QueryParams(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of a parameter.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of a parameter, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// A boolean parameter as the API server reads it (apimachinery's
    /// `Convert_Slice_string_To_bool`): absent, `false` or `0` (any case) is
    /// false; any other value, the empty one included, is true.
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|value| !matches!(value.to_ascii_lowercase().as_str(), "false" | "0"))
    }
}
