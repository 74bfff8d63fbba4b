//! Building the application from configuration, and serving it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::Router;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
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
    let upstreams = Upstreams::new(registry.clone(), &config.kubernetes);
    let objects = crate::objects::ObjectQueries::new(&config);
    let auditor = crate::audit::Auditor::start(
        registry.store().clone(),
        config.audit.clone(),
        metrics.clone(),
    );
    let recording = crate::proxy::recording::RecordingPolicy::new(&config.recording)
        .map_err(StartError::Invalid)?;
    Ok(AppState::new(crate::state::Services {
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
    }))
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
    // The middleware wraps the routers as a whole rather than every route:
    // axum clones and boxes a layered route's whole stack per request.
    // Only the route template is noted per route, for metrics and errors.
    let api = api
        .route(
            "/metrics",
            axum::routing::get(crate::telemetry::metrics_endpoint).with_state(metrics.clone()),
        )
        .with_state(state)
        .layer(axum::middleware::from_fn(crate::telemetry::note_route));
    let api = ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(
            auditor,
            crate::audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::telemetry::track,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .service(api);
    let app = Router::new()
        .merge(SwaggerUi::new("/docs").url("/openapi.json", document))
        .fallback_service(api);
    let app = ServiceBuilder::new()
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
        .layer(axum::middleware::from_fn(crate::error::envelope))
        .service(app);
    Router::new().fallback_service(app)
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

/// Limits every connection is served with (`server.*` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more gets 431.
    pub max_headers: usize,
    /// How long a client may take to send a request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl ConnectionLimits {
    pub fn from_config(server: &crate::config::ServerConfig) -> Self {
        Self {
            max_header_bytes: server.max_header_bytes,
            max_headers: server.max_headers,
            header_read_timeout: Duration::from_secs(server.header_read_timeout_seconds),
            tls_handshake_timeout: Duration::from_secs(server.header_read_timeout_seconds),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves plain HTTP, or TLS when `tls` is given, until `shutdown` resolves,
/// then drains in-flight connections (for at most `limits.drain_timeout`).
/// HTTP/1.1 and HTTP/2 (by ALPN, or prior knowledge on plain HTTP), with
/// upgrades.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;

    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: back off rather than spin.
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
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(remote));
                    router.clone().oneshot(request)
                });
            match acceptor {
                None => {
                    // hyper times a request head from its first byte: a
                    // connection that never sends one is closed here.
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first))
                        .await
                    {
                        Ok(Ok(1..)) => {}
                        _ => return,
                    }
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection.into_owned()).await;
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream))
                            .await
                    else {
                        return;
                    };
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(connection.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await;
    Ok(())
}

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
    let limits = ConnectionLimits::from_config(&state.config.server);
    let router = router(state);
    serve(listener, router, tls, limits, shutdown)
        .await
        .map_err(|error| StartError::Invalid(format!("server failed: {error}")))
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
