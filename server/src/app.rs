//! Building the application from configuration, and serving it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::Router;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use crate::clusters::{Registry, Upserted};
use crate::config::{Config, DatabaseKind};
use crate::identity::Authenticator;
use crate::permissions::Policy;
use crate::secrets::SecretBox;
use crate::state::AppState;
use crate::store;
use crate::upstream::Upstreams;

/// How long a cached cluster record may be served before it is re-read, as a
/// bound for changes made by other replicas.
const CLUSTER_CACHE_TTL: Duration = Duration::from_secs(30);

/// A start-up failure, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot open the database: {0}")]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error("KUBEPORTAL_SECRET_KEY is required with Postgres (every replica must share it): set it to the base64 of 32 random bytes, e.g. `openssl rand -base64 32`")]
    MissingSecretKey,
    #[error("{0}")]
    Invalid(String),
}

/// The key that seals credentials: `KUBEPORTAL_SECRET_KEY`, else (SQLite only)
/// a key file beside the database, created on first start.
fn secret_box(config: &Config) -> Result<SecretBox, StartError> {
    if let Some(key) = &config.secret_key {
        return Ok(SecretBox::from_base64(key.expose_secret())?);
    }
    match config.database_kind()? {
        DatabaseKind::Postgres => Err(StartError::MissingSecretKey),
        DatabaseKind::Sqlite { path } => {
            let key_path: PathBuf = path.with_extension("key");
            Ok(SecretBox::load_or_create(&key_path)?)
        }
    }
}

/// Connects the store, prepares identity and policy, and registers the
/// clusters the configuration declares.
pub async fn build_state(config: Config) -> Result<AppState, StartError> {
    let secrets = secret_box(&config)?;
    let store = store::connect(&config.database_url(), config.database.max_connections).await?;
    let registry = Registry::new(store, secrets, CLUSTER_CACHE_TTL);
    let authenticator =
        Authenticator::new(&config.auth, config.guest_enabled()).map_err(StartError::Invalid)?;
    let policy = match (&config.permissions, config.from_file) {
        (Some(permissions), _) => Policy::new(&permissions.rules).map_err(StartError::Invalid)?,
        (None, true) => Policy::new(&[]).map_err(StartError::Invalid)?,
        (None, false) => Policy::allow_all(),
    };
    for (key, input) in config.declared_clusters() {
        let spec = input
            .validate_new()
            .map_err(|error| StartError::Invalid(format!("{key}.{error}")))?;
        match registry.upsert(&spec).await {
            Ok(Upserted::Unchanged) => {}
            Ok(outcome) => {
                tracing::info!(cluster = %spec.name, ?outcome, "cluster from configuration")
            }
            Err(error) => return Err(StartError::Invalid(format!("{key}: {error}"))),
        }
    }
    let upstreams = Upstreams::new(registry.clone(), config.kubernetes.timeouts.clone());
    Ok(AppState {
        config: Arc::new(config),
        upstreams,
        registry,
        authenticator: Arc::new(authenticator),
        policy: Arc::new(policy),
    })
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (api, document) = crate::openapi::api();
    let body_limit = state.config.server.body_limit_bytes;
    api.fallback(crate::error::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", document))
        .layer(axum::middleware::from_fn(crate::error::envelope))
        .layer(
            // Method and path only: query strings may carry tickets.
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
            }),
        )
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: draining requests");
}
