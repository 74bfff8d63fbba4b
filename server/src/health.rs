//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// How long readiness waits for the store.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(900);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// The process can serve: its store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "The store is unreachable", body = String, content_type = "text/plain"),
    ))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    // Answer within a probe's usual timeout even while the store hangs.
    match tokio::time::timeout(READY_TIMEOUT, state.registry.store().ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable")
        }
        Err(_) => {
            tracing::warn!("readiness check failed: the store did not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable")
        }
    }
}
