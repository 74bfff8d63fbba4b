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
    let metrics = Arc::new(crate::telemetry::Metrics::new());
    let registry = Registry::new(store, secrets, CLUSTER_CACHE_TTL).with_metrics(metrics.clone());
    registry.follow_changes();
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
    let objects = crate::objects::ObjectQueries::new(&config);
    let auditor = crate::audit::Auditor::start(
        registry.store().clone(),
        config.audit.clone(),
        metrics.clone(),
    );
    let recording = crate::proxy::recording::RecordingPolicy::new(&config.recording)
        .map_err(StartError::Invalid)?;
    Ok(AppState {
        tickets: crate::proxy::tickets::Tickets::default(),
        recording: Arc::new(recording),
        config: Arc::new(config),
        auditor,
        metrics,
        objects,
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
    let web_root = state.config.server.web_root.clone();
    let api = match web_root {
        // Unknown API paths stay JSON 404s; everything else is the app.
        Some(root) => api
            .route("/api/{*rest}", axum::routing::any(crate::error::not_found))
            .fallback_service(tower_http::services::ServeDir::new(&root).fallback(
                tower_http::services::ServeFile::new(root.join("index.html")),
            )),
        None => api.fallback(crate::error::not_found),
    };
    let metrics = state.metrics.clone();
    let auditor = state.auditor.clone();
    api.route(
        "/metrics",
        axum::routing::get(crate::telemetry::metrics_endpoint).with_state(metrics.clone()),
    )
    .layer(DefaultBodyLimit::max(body_limit))
    .layer(axum::middleware::from_fn_with_state(
        metrics,
        crate::telemetry::track,
    ))
    .layer(axum::middleware::from_fn_with_state(
        auditor,
        crate::audit::record,
    ))
    .with_state(state)
    .merge(SwaggerUi::new("/docs").url("/openapi.json", document))
    .layer(axum::middleware::from_fn(crate::error::envelope))
    .layer(
        // Method and path only: query strings may carry tickets.
        TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let span = tracing::info_span!(
                "request",
                otel.kind = "server",
                method = %request.method(),
                path = %request.uri().path(),
                cluster = tracing::field::Empty,
            );
            crate::telemetry::traces::continue_trace(&span, request.headers());
            span
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

/// The rustls server configuration for `server.tls` (HTTP/2 and HTTP/1.1 by ALPN).
pub fn server_tls(
    files: &crate::config::TlsFiles,
) -> Result<Arc<rustls::ServerConfig>, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| StartError::Invalid(format!("server.tls.certFile: {error}")))?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|error| StartError::Invalid(format!("server.tls.keyFile: {error}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| StartError::Invalid(error.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|error| StartError::Invalid(format!("server.tls: {error}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves TLS until `shutdown` resolves, then drains in-flight connections
/// (for at most `drain`).
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;

    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(remote));
                    router.clone().oneshot(request)
                });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let _ = watcher.watch(connection.into_owned()).await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
    Ok(())
}

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves plain HTTP or TLS, as configured.
pub async fn serve_configured(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let tls = state
        .config
        .server
        .tls
        .as_ref()
        .map(server_tls)
        .transpose()?;
    let router = router(state);
    let result = match tls {
        Some(tls) => serve_tls(listener, router, tls, shutdown).await,
        None => serve(listener, router, shutdown).await,
    };
    result.map_err(|error| StartError::Invalid(format!("server failed: {error}")))
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
