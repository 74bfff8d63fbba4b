//! Building the application from configuration, and serving it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use utoipa_swagger_ui::SwaggerUi;

use crate::audit::recording::RecordingPolicy;
use crate::audit::Auditor;
use crate::clusters::{ClusterInputExt, OwnAddress, Registry, Upserted};
use crate::config::{Config, DatabaseKind};
use crate::identity::Authenticator;
use crate::objects::{ObjectQueries, ObjectServices, ObjectSettings};
use crate::permissions::Policy;
use crate::proxy::tickets::Tickets;
use crate::proxy::{ProxyServices, ProxySettings, ProxyState, PublicAddress};
use crate::secrets::SecretBox;
use crate::state::{AppState, Services};
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

/// The configured policy; without one, a file denies everything but health,
/// and no file at all lets only the loopback guest do everything. Says which
/// in one log line when there is no policy.
fn default_or_configured_policy(config: &Config) -> Result<Policy, StartError> {
    if let Some(permissions) = &config.permissions {
        return Policy::new(&permissions.rules)
            .map_err(|error| StartError::Invalid(error.to_string()));
    }
    let loopback = config
        .listen_addr()
        .is_ok_and(|addr| addr.ip().is_loopback());
    if !config.from_file && loopback && config.guest_enabled() {
        tracing::info!("no configuration file: the loopback guest may do everything, every other caller is denied (configure permissions.rules to change this)");
        Ok(Policy::guest_only())
    } else {
        tracing::warn!("no permissions configured: every request but health is denied (configure permissions.rules)");
        Policy::new(&[]).map_err(|error| StartError::Invalid(error.to_string()))
    }
}

/// Connects the store, prepares identity and policy, and registers the
/// clusters the configuration declares.
pub async fn build_state(config: Config) -> Result<AppState, StartError> {
    let secrets = secret_box(&config)?;
    let database = store::connect(&config.database_url(), config.database.max_connections).await?;
    let metrics = Arc::new(crate::telemetry::Metrics::new());
    let registry = Registry::new(database.clusters(), secrets.clone(), CLUSTER_CACHE_TTL)
        .with_metrics(metrics.clone());
    registry.follow_changes();
    let mut authenticator = Authenticator::new(&config.auth, config.guest_enabled())
        .map_err(|error| StartError::Invalid(error.to_string()))?;
    if authenticator.remembers_tokens() {
        let lookups = metrics.cache_series("tokens");
        authenticator = authenticator.observe_lookups(Arc::new(move |hit| lookups.count(hit)));
    }
    let authenticator = Arc::new(authenticator);
    let policy = Arc::new(default_or_configured_policy(&config)?);
    for (key, input) in config.declared_clusters() {
        let spec = input
            .validate_new()
            .map_err(|error| StartError::Invalid(format!("{key}.{error}")))?;
        crate::clusters::refuse_own_address(&input.url, config.listen_addr().ok())
            .map_err(|error| StartError::Invalid(format!("{key}.{error}")))?;
        match registry.upsert(&spec).await {
            Ok(Upserted::Unchanged) => {}
            Ok(outcome) => {
                tracing::info!(cluster = %spec.name, ?outcome, "cluster from configuration")
            }
            Err(error) => return Err(StartError::Invalid(format!("{key}: {error}"))),
        }
    }
    let upstreams = Upstreams::new(
        registry.clone(),
        &config.kubernetes.timeouts,
        config.kubernetes.streams_per_connection,
    );
    // One namespace watch per cluster, shared by the proxy and object queries.
    let namespaces = crate::views::NamespaceLabels::default();
    let objects = ObjectQueries::new(
        ObjectSettings {
            queries: &config.kubernetes.objects,
            custom_resources: &config.kubernetes.custom_resources,
            catalog: &config.catalog,
            impersonation: &config.kubernetes.impersonation,
        },
        ObjectServices {
            registry: registry.clone(),
            policy: policy.clone(),
            upstreams: upstreams.clone(),
            metrics: metrics.clone(),
            namespaces: namespaces.clone(),
        },
    );
    let auditor = Auditor::start(database.audit(), config.audit.clone(), metrics.clone());
    let recording = Arc::new(
        RecordingPolicy::new(&config.recording, database.sessions())
            .map_err(|error| StartError::Invalid(error.to_string()))?,
    );
    recording.prune_in_background(config.audit.retention_days);
    let tickets = Tickets::new(secrets.clone(), database.sessions());
    tickets.prune_in_background();
    let proxy = ProxyState::new(ProxyServices {
        registry: registry.clone(),
        authenticator: authenticator.clone(),
        policy: policy.clone(),
        upstreams,
        metrics: metrics.clone(),
        recording: recording.clone(),
        tickets,
        sessions: crate::proxy::Sessions::default(),
        views: crate::proxy::TenantViews {
            namespaces,
            tokens: crate::views::ContinueTokens::new(secrets.clone()),
        },
        settings: ProxySettings {
            sensitive_query_params: config.audit.sensitive_query_params.clone(),
            impersonation: config.kubernetes.impersonation.clone(),
            timeouts: config.kubernetes.timeouts.clone(),
            address: PublicAddress {
                public_url: config.server.public_url.clone(),
                tls: config.server.tls.is_some(),
                ca_file: config
                    .server
                    .tls
                    .as_ref()
                    .and_then(|tls| tls.ca_file.clone()),
                listen: config.server.listen.clone(),
            },
            fleet_deadline: std::time::Duration::from_millis(
                config.kubernetes.objects.cluster_timeout_ms,
            ),
        },
    });
    Ok(AppState::new(Services {
        recording,
        config: Arc::new(config),
        auditor,
        metrics,
        objects,
        proxy,
        registry,
        authenticator,
        policy,
        own_address: OwnAddress::default(),
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
    let cors = crate::identity::origin::cors(&state.config.server.allowed_origins);
    let origins = Arc::new(crate::identity::origin::OriginPolicy::new(
        state.authenticator.guest_enabled(),
        state.config.server.public_url.as_deref(),
        &state.config.server.allowed_origins,
    ));
    let metrics = state.metrics.clone();
    let registry = state.registry.clone();
    let tracking = crate::telemetry::Tracking {
        metrics: metrics.clone(),
        registered: Arc::new(move |name: Arc<str>| {
            let registry = registry.clone();
            Box::pin(async move { registry.registered_name(&name).await })
        }),
    };
    let front_state = Front {
        auditor: state.auditor.clone(),
        tracking,
        origins,
    };
    let app = api
        .route(
            "/metrics",
            axum::routing::get(crate::telemetry::metrics_endpoint).with_state(metrics),
        )
        .with_state(state)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", document))
        // Last, so that it covers every route above, not only the API's.
        .method_not_allowed_fallback(crate::error::method_not_allowed);
    // One router, its routes (and fallback) each wrapped in the whole
    // stack, which sees the matched route. Every middleware costs every
    // request a boxed future, so those that do little are one.
    let app = app.layer(
        ServiceBuilder::new()
            .layer(axum::middleware::from_fn_with_state(front_state, front))
            .layer(DefaultBodyLimit::max(body_limit)),
    );
    // Outermost, so that a preflight from a listed origin is answered before
    // anything asks it for an identity.
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// What [`front`] writes to and judges by.
#[derive(Clone)]
struct Front {
    auditor: crate::audit::Auditor,
    tracking: crate::telemetry::Tracking,
    origins: Arc<crate::identity::origin::OriginPolicy>,
}

/// Every route's one middleware (each costs every request a boxed future):
/// errors in the shape of their route family; inside, the audit trail;
/// inside it the request metrics; inside those the origin check and the
/// refusals of a plain CONNECT and of transfer codings other than chunked,
/// so that refusals are audited and counted.
async fn front(
    State(Front {
        auditor,
        tracking,
        origins,
    }): State<Front>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    crate::error::envelope(request, |request| {
        crate::audit::record(auditor, request, |request| async move {
            crate::telemetry::track(&tracking, request, |request| async move {
                // Refusals here are audited and counted like any other answer.
                if let Some(refusal) =
                    origins.refusal(request.method(), request.uri(), request.headers())
                {
                    return refusal.into_response();
                }
                if let Some(refusal) = crate::proxy::plain_connect_refusal(&request) {
                    return refusal;
                }
                if let Some(refusal) = crate::proxy::transfer_coding_refusal(request.headers()) {
                    // As Go's server does: what follows on the connection
                    // is not read as another request.
                    let mut response = refusal.into_response();
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                    return response;
                }
                next.run(request).await
            })
            .await
        })
    })
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

/// Limits every connection is served with (`server.*` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more gets 431.
    pub max_headers: usize,
    /// How long a client may take to send a request head (slowloris guard),
    /// and how long a new connection may take to start its first request.
    pub header_read_timeout: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// How long a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 client is pinged, and how long it has to answer.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
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
            idle_timeout: Duration::from_secs(server.idle_timeout_seconds),
            keep_alive_interval: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(server.drain_timeout_seconds),
        }
    }
}

/// Serves plain HTTP, or TLS when `tls` is given, until `shutdown` resolves,
/// then drains in-flight connections (for at most `limits.drain_timeout`).
/// HTTP/1.1 and HTTP/2 (by ALPN, or prior knowledge on plain HTTP), with
/// upgrades. Each request is served in a span `spans` makes, which lasts
/// until its response body is finished or dropped; an answer in 5xx (but
/// 501) is logged in it at WARN, every answer at DEBUG.
///
/// No connection is held for free: a TLS handshake must finish within the
/// handshake timeout, the first request must start within the header-read
/// timeout (whatever the protocol: a silent client after the handshake or
/// after the HTTP/2 preface is closed like one that never sent a byte), a
/// connection with nothing in progress is closed after the idle timeout, and
/// HTTP/2 clients that stop answering pings are dropped. Requests in
/// progress (watches, followed logs, upgraded sessions) are never cut.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    spans: crate::telemetry::traces::RequestSpans,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;

    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    // Each connection task holds a sender: when all are gone, all are drained.
    let (draining, mut drained) = tokio::sync::mpsc::channel::<()>(1);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let force = tokio_util::sync::CancellationToken::new();
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
        .keep_alive_interval(limits.keep_alive_interval)
        .keep_alive_timeout(limits.keep_alive_timeout)
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
        let draining = draining.clone();
        let stopping = stopping.clone();
        let forced = force.clone();
        tokio::spawn(async move {
            let _draining = draining;
            // Past the drain period the connection is dropped, with what it
            // has in flight (whose audit records are written as they drop).
            let served = async move {
                let activity = Arc::new(Activity::default());
                let tracked = activity.clone();
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let in_flight = tracked.begin();
                        let started = std::time::Instant::now();
                        let span = spans.span(&request);
                        let mut request = request.map(axum::body::Body::new);
                        request
                            .extensions_mut()
                            .insert(axum::extract::ConnectInfo(remote));
                        let response = router.clone().oneshot(request);
                        async move {
                            use std::future::Future as _;
                            // The router's work in the request's span.
                            let mut response = std::pin::pin!(response);
                            let response = std::future::poll_fn(|context| {
                                let _entered = span.enter();
                                response.as_mut().poll(context)
                            })
                            .await?;
                            let status = response.status().as_u16();
                            if crate::telemetry::traces::is_failure(response.status()) {
                                let _entered = span.enter();
                                let latency_ms = started.elapsed().as_millis() as u64;
                                tracing::warn!(status, latency_ms, "response failed");
                            } else if tracing::enabled!(tracing::Level::DEBUG) {
                                // Every answer, at DEBUG (the audit trail keeps them all).
                                let _entered = span.enter();
                                let latency_ms = started.elapsed().as_millis() as u64;
                                tracing::debug!(status, latency_ms, "response");
                            }
                            Ok::<_, std::convert::Infallible>(response.map(|body| InFlightBody {
                                body,
                                span,
                                _in_flight: in_flight,
                            }))
                        }
                    },
                );
                match acceptor {
                    None => {
                        let connection =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        drive(
                            connection,
                            |connection| connection.graceful_shutdown(),
                            &activity,
                            limits,
                            stopping,
                        )
                        .await;
                    }
                    Some(acceptor) => {
                        let Ok(Ok(stream)) = tokio::time::timeout(
                            limits.tls_handshake_timeout,
                            acceptor.accept(stream),
                        )
                        .await
                        else {
                            return;
                        };
                        activity.reset_clock();
                        let connection =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        drive(
                            connection,
                            |connection| connection.graceful_shutdown(),
                            &activity,
                            limits,
                            stopping,
                        )
                        .await;
                    }
                }
            };
            tokio::select! {
                () = served => {}
                () = forced.cancelled() => {}
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(draining);
    if tokio::time::timeout(limits.drain_timeout, drained.recv())
        .await
        .is_err()
    {
        force.cancel();
        let _ = tokio::time::timeout(FORCED_CLOSE_TIMEOUT, drained.recv()).await;
    }
    Ok(())
}

/// How long connections dropped at the end of the drain period may take to
/// let go of what they hold.
const FORCED_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What one connection is doing: requests whose responses are unfinished,
/// and since when it has had none.
#[derive(Debug)]
struct Activity {
    state: std::sync::Mutex<ActivityState>,
    /// Wakes [`drive`] when the connection falls idle.
    idle: tokio::sync::Notify,
}

#[derive(Debug)]
struct ActivityState {
    in_flight: usize,
    /// Whether a request has ever arrived.
    started: bool,
    /// When the last request finished (or the connection opened); `None`
    /// while requests are in progress.
    idle_since: Option<std::time::Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            state: std::sync::Mutex::new(ActivityState {
                in_flight: 0,
                started: false,
                idle_since: Some(std::time::Instant::now()),
            }),
            idle: tokio::sync::Notify::new(),
        }
    }
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Restarts the idle clock (after a TLS handshake).
    fn reset_clock(&self) {
        let mut state = self.lock();
        if state.in_flight == 0 {
            state.idle_since = Some(std::time::Instant::now());
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        let mut state = self.lock();
        state.in_flight += 1;
        state.started = true;
        state.idle_since = None;
        InFlight(self.clone())
    }

    /// When the connection must be closed unless a request starts first.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<tokio::time::Instant> {
        let state = self.lock();
        let allowed = if state.started {
            limits.idle_timeout
        } else {
            limits.header_read_timeout
        };
        state
            .idle_since
            .map(|since| tokio::time::Instant::from_std(since + allowed))
    }
}

/// A request in progress, until its response body is finished or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Some(std::time::Instant::now());
            drop(state);
            self.0.idle.notify_one();
        }
    }
}

/// A response body that keeps its request counted as in progress, and its
/// span open: the span ends when the body is finished or dropped, and each
/// piece of the body is made in it.
struct InFlightBody {
    body: axum::body::Body,
    span: tracing::Span,
    _in_flight: InFlight,
}

impl http_body::Body for InFlightBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        std::pin::Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Polls a connection to its end, shutting it down gracefully when it has
/// stayed idle too long or the server stops. A connection that was shut down
/// for idleness and still has nothing in progress after the header-read
/// timeout (a client that ignores the shutdown) is dropped.
async fn drive<C, E>(
    connection: C,
    graceful_shutdown: impl Fn(std::pin::Pin<&mut C>),
    activity: &Activity,
    limits: ConnectionLimits,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    C: std::future::Future<Output = Result<(), E>>,
{
    tokio::pin!(connection);
    let mut shut_down = false;
    let mut forced_after: Option<tokio::time::Instant> = None;
    loop {
        let deadline = if shut_down {
            forced_after
        } else {
            activity.deadline(&limits)
        };
        let idle = activity.idle.notified();
        let timer = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => idle.await,
            }
        };
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stopping.changed(), if !shut_down => {
                graceful_shutdown(connection.as_mut());
                shut_down = true;
                forced_after = Some(tokio::time::Instant::now() + limits.header_read_timeout);
            }
            _ = timer => {
                let now = tokio::time::Instant::now();
                if shut_down {
                    if forced_after.is_some_and(|at| now >= at) && activity.deadline(&limits).is_some() {
                        return;
                    }
                    forced_after = Some(now + limits.header_read_timeout);
                } else if activity.deadline(&limits).is_some_and(|at| now >= at) {
                    graceful_shutdown(connection.as_mut());
                    shut_down = true;
                    forced_after = Some(now + limits.header_read_timeout);
                }
            }
        }
    }
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
    if let Ok(address) = listener.local_addr() {
        let _ = state.own_address.set(address);
    }
    let limits = ConnectionLimits::from_config(&state.config.server);
    let sessions = state.proxy.sessions.clone();
    let auditor = state.auditor.clone();
    let recording = state.recording.clone();
    let spans = crate::telemetry::traces::RequestSpans {
        exporting: state.config.telemetry.otlp_endpoint.is_some(),
    };
    let router = router(state);
    // Upgraded sessions are told to end when the listener stops, and have
    // the drain period to do it, like the requests in flight.
    let stopped_at = Arc::new(std::sync::OnceLock::new());
    let shutdown = {
        let (sessions, stopped_at) = (sessions.clone(), stopped_at.clone());
        async move {
            shutdown.await;
            let _ = stopped_at.set(tokio::time::Instant::now());
            sessions.stop();
        }
    };
    let served = serve(listener, router, tls, limits, spans, shutdown).await;
    let deadline = stopped_at
        .get()
        .copied()
        .unwrap_or_else(tokio::time::Instant::now)
        + limits.drain_timeout;
    sessions.stop();
    if tokio::time::timeout_at(deadline, sessions.ended())
        .await
        .is_err()
    {
        tracing::warn!("upgraded sessions still open after the drain period");
    }
    // Their audit records and recordings, and every other record handed
    // over, are written before the process exits.
    let written = async {
        recording.flush().await;
        auditor.flush().await;
    };
    let flush_deadline = deadline.max(tokio::time::Instant::now()) + AUDIT_FLUSH_TIMEOUT;
    if tokio::time::timeout_at(flush_deadline, written)
        .await
        .is_err()
    {
        tracing::warn!("audit records or recordings still unwritten at exit");
    }
    served.map_err(|error| StartError::Invalid(format!("server failed: {error}")))
}

/// How long, after the drain period, the audit trail may take to write what
/// it was handed before the process exits.
const AUDIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    signal().await;
    tracing::info!("shutting down: draining requests");
    // A second signal does not wait for the drain.
    tokio::spawn(async {
        signal().await;
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(1);
    });
}

/// Resolves on the next SIGINT or SIGTERM.
async fn signal() {
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
}
