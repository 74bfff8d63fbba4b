//! Connectors to clusters: per cluster, a rustls configuration built from its
//! record (CA, skip-verify, client certificate), pooled hyper clients, the
//! timeouts, and the credential. This is the only place credentials are
//! attached to requests. Nothing here logs a credential or puts one in an error.

mod buffered;
mod config;
mod driven;
mod streams;
pub(crate) mod tls;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{HeaderName, AUTHORIZATION};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use moka::sync::Cache;
use secrecy::{ExposeSecret, SecretString};

use crate::clusters::{AuthProvider, ClusterRecord, Registry};
use crate::error::ApiError;
use crate::identity::Caller;

pub use config::{
    validate_streams_per_connection, ImpersonationConfig, UpstreamConfigError, UpstreamTimeouts,
};
use driven::{DrivenBody, DrivenPool};
pub use streams::StreamLease;
use streams::{StreamError, StreamPool};

type HttpsClient = Client<ClusterConnector, Body>;

/// The header a caller sends a cluster token in for any cluster (Backstage's
/// `Backstage-Kubernetes-Authorization`).
pub const CLUSTER_TOKEN_HEADER: HeaderName =
    HeaderName::from_static("backstage-kubernetes-authorization");

/// How kubeportal connects to a cluster: TCP (read through a buffer), then
/// TLS (or plain HTTP), the whole within the connect timeout.
type ClusterConnector = Bounded<HttpsConnector<buffered::ReadBuffering<HttpConnector>>>;

/// A connector whose whole set-up (TCP connect and TLS handshake) is bounded
/// by the connect timeout: a cluster address that accepts connections and
/// never completes a handshake fails as fast as one that refuses them.
#[derive(Clone)]
pub(crate) struct Bounded<C> {
    inner: C,
    timeout: Duration,
}

/// A connection set-up that outlived the connect timeout.
#[derive(Debug, thiserror::Error)]
#[error("connecting (TCP and TLS) took longer than {0:?}")]
struct SetUpTimedOut(Duration);

impl<C> tower::Service<Uri> for Bounded<C>
where
    C: tower::Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = C::Response;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<C::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(Box::new(SetUpTimedOut(timeout)) as Self::Error),
            }
        })
    }
}

/// Why a cluster could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// 502: refused, reset, or TLS failed. `cause` never holds a credential.
    #[error("cluster {cluster} is unreachable: {cause}")]
    Unreachable { cluster: String, cause: String },
    /// 504: no response headers within the timeout.
    #[error("cluster {cluster} did not answer within {seconds:.1} s")]
    Timeout { cluster: String, seconds: f64 },
    /// 401: the cluster needs the caller's own cluster token and none was sent.
    #[error("cluster {cluster} uses authProvider {provider}: send your cluster token ({header})")]
    MissingClusterToken {
        cluster: String,
        provider: &'static str,
        header: String,
    },
    /// 500: the record cannot be turned into a connector (e.g. undecryptable key).
    #[error("cluster {cluster} is misconfigured: {reason}")]
    Misconfigured { cluster: String, reason: String },
}

impl UpstreamError {
    /// A short label for metrics: `connect`, `tls`, `timeout`, `credential`, `config`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable { cause, .. }
                if cause.to_ascii_lowercase().contains("certificate") =>
            {
                "tls"
            }
            UpstreamError::Unreachable { .. } => "connect",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::MissingClusterToken { .. } => "credential",
            UpstreamError::Misconfigured { .. } => "config",
        }
    }
}

impl From<UpstreamError> for ApiError {
    fn from(error: UpstreamError) -> Self {
        match &error {
            UpstreamError::Unreachable { .. } => ApiError::BadGateway(error.to_string()),
            UpstreamError::Timeout { .. } => ApiError::GatewayTimeout(error.to_string()),
            UpstreamError::MissingClusterToken { .. } => {
                ApiError::Authentication(error.to_string())
            }
            UpstreamError::Misconfigured { .. } => ApiError::internal(error),
        }
    }
}

/// The server-side credential kubeportal holds for a cluster.
enum ServerCredential {
    /// The `Authorization` value (marked sensitive), built once per
    /// connector; `None` if the token cannot be a header value.
    Token(Option<HeaderValue>),
    /// The client certificate is in the TLS configuration.
    ClientCertificate,
    None,
}

/// Where a request to a cluster goes and how it is authenticated.
pub struct Connector {
    pub cluster: String,
    /// The registration and version of the record this was built from.
    uid: String,
    version: i64,
    auth_provider: AuthProvider,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The cluster URL's path (e.g. Rancher's `/k8s/clusters/c-1`), no trailing slash.
    base_path: String,
    /// The header a caller sends their cluster token in, as messages name it.
    client_token_header: String,
    /// That header parsed, unless it is the generic one.
    client_token_name: Option<HeaderName>,
    /// The connections kubeportal's own credential travels on (with its
    /// client certificate, when the cluster has one).
    portal: Clients,
    /// For a cluster with a client certificate: connections without it, for
    /// requests that carry the caller's own cluster token. The API server
    /// authenticates a certificate before any token, so presenting it would
    /// run the caller's request as kubeportal.
    without_certificate: Option<Clients>,
    credential: ServerCredential,
    response_header_timeout: Duration,
}

/// The pooled clients of one TLS configuration.
struct Clients {
    shared: HttpsClient,
    upgrade: HttpsClient,
    streams: Arc<StreamPool>,
    /// HTTP/1.1 connections driven by the requests they carry, for the
    /// ordinary requests without a body.
    driven: DrivenPool,
}

/// A cluster's response body, read from the connection that carried it.
pub struct UpstreamBody(BodyKind);

enum BodyKind {
    /// From a pooled client, whose connection is a task of its own.
    Pooled(Incoming),
    /// From a connection driven by whoever reads the body.
    Driven(DrivenBody),
}

impl From<Incoming> for UpstreamBody {
    fn from(body: Incoming) -> Self {
        Self(BodyKind::Pooled(body))
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().0 {
            BodyKind::Pooled(body) => Pin::new(body).poll_frame(context),
            BodyKind::Driven(body) => Pin::new(body).poll_frame(context),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Pooled(body) => body.is_end_stream(),
            BodyKind::Driven(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Pooled(body) => body.size_hint(),
            BodyKind::Driven(body) => body.size_hint(),
        }
    }
}

/// Whose credential a request to a cluster carries, as [`Connector::authorize`]
/// decided; [`Connector::send`] presents kubeportal's client certificate only
/// for [`Credential::Portal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "send the request with the credential authorize attached"]
pub enum Credential {
    /// kubeportal's own (service-account token, client certificate,
    /// impersonation), or none.
    Portal,
    /// The caller's own cluster token.
    Caller,
}

/// A caller-supplied cluster credential (never the portal identity).
pub struct ClusterToken(pub SecretString);

/// How a request travels to its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Ordinary requests: without a body, HTTP/1.1 keep-alive connections
    /// driven by the request's own task; with one, pooled connections, one
    /// multiplexed HTTP/2 connection where the cluster speaks it.
    Shared,
    /// Streams that stay open (watches, followed logs): HTTP/2 connections of
    /// their own, many streams each, so they never crowd ordinary requests.
    Stream,
    /// Protocol upgrades (exec, attach, port-forward): an HTTP/1.1 connection each.
    Upgrade,
}

impl Connector {
    /// The upstream URI for a normalised Kubernetes path and a raw query.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, ApiError> {
        let mut path_and_query = String::with_capacity(
            self.base_path.len() + path.len() + 1 + query.map_or(0, str::len),
        );
        path_and_query.push_str(&self.base_path);
        path_and_query.push_str(if path.is_empty() { "/" } else { path });
        if let Some(query) = query {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| ApiError::Input("the request target is not a valid path".into()))
    }

    /// The header a caller sends their cluster token in for this cluster
    /// alone, if any ([`CLUSTER_TOKEN_HEADER`] is read for every cluster).
    pub fn client_token_header(&self) -> Option<&HeaderName> {
        self.client_token_name.as_ref()
    }

    /// Attaches the cluster credential to an outgoing request's headers and
    /// says whose it is, for [`send`](Self::send). The caller's own cluster
    /// token (if any) wins for token-based providers; impersonation always
    /// uses kubeportal's credential and the portal identity.
    pub fn authorize(
        &self,
        headers: &mut HeaderMap,
        caller: &Caller,
        caller_token: Option<ClusterToken>,
        impersonation: &ImpersonationConfig,
    ) -> Result<Credential, UpstreamError> {
        let invalid = || UpstreamError::Misconfigured {
            cluster: self.cluster.clone(),
            reason: "the token is not a valid header value".into(),
        };
        let bearer = |token: &SecretString| bearer_value(token).ok_or_else(invalid);
        let server_bearer = || match &self.credential {
            ServerCredential::Token(value) => value.clone().ok_or_else(invalid).map(Some),
            ServerCredential::ClientCertificate | ServerCredential::None => Ok(None),
        };
        match self.auth_provider {
            AuthProvider::Impersonate => {
                if let Some(value) = server_bearer()? {
                    headers.insert(AUTHORIZATION, value);
                }
                let user = impersonation
                    .users
                    .get(&*caller.subject)
                    .map_or(&*caller.subject, String::as_str);
                headers.insert(
                    HeaderName::from_static("impersonate-user"),
                    impersonation_value(&self.cluster, user)?,
                );
                for group in caller.groups.iter() {
                    let name = impersonation.groups.get(group).unwrap_or(group);
                    headers.append(
                        HeaderName::from_static("impersonate-group"),
                        impersonation_value(&self.cluster, name)?,
                    );
                }
            }
            AuthProvider::ServiceAccount | AuthProvider::ClientCert => match caller_token {
                Some(ClusterToken(token)) => {
                    headers.insert(AUTHORIZATION, bearer(&token)?);
                    return Ok(Credential::Caller);
                }
                None => {
                    if let Some(value) = server_bearer()? {
                        headers.insert(AUTHORIZATION, value);
                    }
                }
            },
            // The cluster adds its own credential: nothing is sent, not even
            // a token the caller offers.
            AuthProvider::LocalKubectlProxy => {}
            AuthProvider::Oidc | AuthProvider::Google | AuthProvider::Client => {
                match caller_token {
                    Some(ClusterToken(token)) => {
                        headers.insert(AUTHORIZATION, bearer(&token)?);
                        return Ok(Credential::Caller);
                    }
                    None => {
                        return Err(UpstreamError::MissingClusterToken {
                            cluster: self.cluster.clone(),
                            provider: self.auth_provider.as_str(),
                            header: self.client_token_header.clone(),
                        })
                    }
                }
            }
        }
        Ok(Credential::Portal)
    }

    /// Attaches kubeportal's own credential (never a caller's, and no
    /// impersonation), for what kubeportal reads on its own behalf, such as
    /// the namespaces whose labels the policy reads. Clusters that only
    /// take their callers' tokens have none.
    pub fn authorize_portal(&self, headers: &mut HeaderMap) -> Result<Credential, UpstreamError> {
        match self.auth_provider {
            AuthProvider::Oidc | AuthProvider::Google | AuthProvider::Client => {
                Err(UpstreamError::MissingClusterToken {
                    cluster: self.cluster.clone(),
                    provider: self.auth_provider.as_str(),
                    header: self.client_token_header.clone(),
                })
            }
            AuthProvider::LocalKubectlProxy => Ok(Credential::Portal),
            AuthProvider::Impersonate | AuthProvider::ServiceAccount | AuthProvider::ClientCert => {
                if let ServerCredential::Token(value) = &self.credential {
                    let value = value.clone().ok_or_else(|| UpstreamError::Misconfigured {
                        cluster: self.cluster.clone(),
                        reason: "the token is not a valid header value".into(),
                    })?;
                    headers.insert(AUTHORIZATION, value);
                }
                Ok(Credential::Portal)
            }
        }
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Makes the request act as `user` and `groups`, an identity the policy
    /// granted the caller (`kubernetes.impersonate`): replaces any
    /// impersonation of the portal caller; the cluster's own RBAC still
    /// decides whether this cluster's credential may impersonate.
    pub fn impersonate(
        &self,
        headers: &mut HeaderMap,
        user: &str,
        groups: &[String],
    ) -> Result<(), UpstreamError> {
        let user_header = HeaderName::from_static("impersonate-user");
        let group_header = HeaderName::from_static("impersonate-group");
        headers.remove(&group_header);
        headers.insert(user_header, impersonation_value(&self.cluster, user)?);
        for group in groups {
            headers.append(
                group_header.clone(),
                impersonation_value(&self.cluster, group)?,
            );
        }
        Ok(())
    }

    /// Sends a request and waits for the response headers within the timeout.
    /// The body then streams with no total timeout. A [`Route::Stream`]
    /// response comes with its lease on a stream connection, to be dropped
    /// with the body. kubeportal's client certificate is presented only when
    /// the request carries kubeportal's credential, never with a caller's.
    pub async fn send(
        &self,
        request: Request<Body>,
        route: Route,
        credential: Credential,
    ) -> Result<(Response<UpstreamBody>, Option<StreamLease>), UpstreamError> {
        self.send_within(request, route, credential, self.response_header_timeout)
            .await
    }

    /// [`Connector::send`], waiting `header_timeout` for the response headers.
    pub async fn send_within(
        &self,
        mut request: Request<Body>,
        route: Route,
        credential: Credential,
        header_timeout: Duration,
    ) -> Result<(Response<UpstreamBody>, Option<StreamLease>), UpstreamError> {
        settle_headers(&mut request);
        let clients = match credential {
            Credential::Portal => &self.portal,
            Credential::Caller => self.without_certificate.as_ref().unwrap_or(&self.portal),
        };
        use tracing::Instrument;
        let span = tracing::info_span!(
            "upstream",
            otel.kind = "client",
            cluster = %self.cluster,
            method = %request.method(),
            path = %request.uri().path(),
        );
        crate::telemetry::traces::propagate(&span, request.headers_mut());
        let unreachable = |cause: String| UpstreamError::Unreachable {
            cluster: self.cluster.clone(),
            cause,
        };
        let sent = async {
            let client = match route {
                // A request with a body is sent by the pooled client: a
                // connection could not be given back before its body is
                // written, which only its own task would do.
                // So is one that finds every driven connection in use.
                Route::Shared if hyper::body::Body::is_end_stream(request.body()) => {
                    match clients.driven.send(request).await {
                        Ok(response) => {
                            return Ok((
                                response.map(|body| UpstreamBody(BodyKind::Driven(body))),
                                None,
                            ))
                        }
                        Err(driven::SendError::Full(returned)) => {
                            request = *returned;
                            &clients.shared
                        }
                        Err(error) => return Err(unreachable(describe(&error))),
                    }
                }
                Route::Shared => &clients.shared,
                Route::Upgrade => &clients.upgrade,
                Route::Stream => match Box::pin(clients.streams.send(request)).await {
                    Ok((response, lease)) => {
                        return Ok((response.map(UpstreamBody::from), Some(lease)))
                    }
                    Err(StreamError::Failed(cause)) => return Err(unreachable(cause)),
                    Err(StreamError::Http1Only(returned)) => {
                        request = *returned;
                        &clients.upgrade
                    }
                },
            };
            match client.request(request).await {
                Ok(response) => Ok((response.map(UpstreamBody::from), None)),
                Err(error) => Err(unreachable(describe(&error))),
            }
        };
        // Pinned where it is made: the timeout and the span then move a
        // reference to it, not the whole exchange's state.
        let sent = std::pin::pin!(sent);
        match tokio::time::timeout(header_timeout, sent)
            .instrument(span)
            .await
        {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout {
                cluster: self.cluster.clone(),
                seconds: header_timeout.as_secs_f64(),
            }),
        }
    }
}

/// Settles what a request carries to a cluster, whoever built it. Its
/// framing is left to its body: the client writes `Content-Length` (or
/// chunks) from the body itself. A length copied from elsewhere with a
/// body it does not describe (a caller's headers on a request kubeportal
/// sends without their body) would have the cluster read the start of the
/// next request on the connection as this one's body: another request,
/// never judged, smuggled in. No `Expect` goes: kubeportal answers a
/// caller's `100-continue` itself, and sends the body at once.
///
/// Only headers whose names are letters, digits and `-` go, as nginx
/// ignores any other by default: some servers and proxies read other
/// punctuation as `-` (CGI names `Content_Length` and `Content.Length`
/// both `HTTP_CONTENT_LENGTH`), so such a name would frame the request for
/// them, or `Impersonate.User` act as `Impersonate-User`, past every check
/// made on the names as kubeportal reads them.
///
/// A GET or HEAD whose body's length is unknown is marked chunked: hyper's
/// HTTP/1.1 client would otherwise send it without its body (HTTP/2 drops
/// the header and sends the body as it always does).
fn settle_headers(request: &mut Request<Body>) {
    use http_body::Body as _;
    let unknown_length = matches!(*request.method(), http::Method::GET | http::Method::HEAD)
        && !request.body().is_end_stream()
        && request.body().size_hint().exact().is_none();
    let headers = request.headers_mut();
    headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.remove(http::header::EXPECT);
    if unknown_length {
        headers.insert(
            http::header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    let plain = |name: &HeaderName| {
        name.as_str()
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    };
    if !headers.keys().all(plain) {
        let odd: Vec<HeaderName> = headers
            .keys()
            .filter(|name| !plain(name))
            .cloned()
            .collect();
        for name in odd {
            headers.remove(name);
        }
    }
}

/// `Bearer <token>` as a sensitive header value, if the token can be one.
fn bearer_value(token: &SecretString) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn impersonation_value(cluster: &str, name: &str) -> Result<HeaderValue, UpstreamError> {
    HeaderValue::from_str(name).map_err(|_| UpstreamError::Misconfigured {
        cluster: cluster.to_owned(),
        reason: "an impersonated name is not a valid header value".into(),
    })
}

/// A readable cause from an error chain: "connection refused",
/// "invalid peer certificate: UnknownIssuer", ...
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        if !text.is_empty() && !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    // The innermost causes are the informative ones.
    let keep = parts.len().saturating_sub(2);
    parts[keep..].join(": ")
}

/// A TLS (or plain, for `http://` clusters) connector offering HTTP/1.1,
/// and HTTP/2 by ALPN when `http2`, whose set-up is bounded by `connect`.
fn cluster_connector(
    tls: rustls::ClientConfig,
    http2: bool,
    connect: Duration,
) -> ClusterConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(30)));
    let http = buffered::ReadBuffering(http);
    let inner = if http2 {
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http)
    } else {
        // HTTP/1.1 alone, said so by ALPN (the builder would offer
        // nothing): a server that picks by ALPN never answers in HTTP/2.
        let mut tls = tls;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        HttpsConnector::from((http, tls))
    };
    Bounded {
        inner,
        timeout: connect,
    }
}

/// The largest HTTP/2 frame a cluster may send on a shared connection.
const MAX_FRAME_SIZE: u32 = 64 * 1024;

/// Connectors by cluster, rebuilt when the record changes (another version,
/// or another registration under the same name), and dropped as soon as the
/// registry drops the cluster.
#[derive(Clone)]
pub struct Upstreams {
    registry: Registry,
    timeouts: UpstreamTimeouts,
    streams_per_connection: usize,
    connectors: Cache<String, Arc<Connector>>,
}

impl Upstreams {
    pub fn new(
        registry: Registry,
        timeouts: &UpstreamTimeouts,
        streams_per_connection: usize,
    ) -> Self {
        let connectors: Cache<String, Arc<Connector>> = Cache::builder()
            .max_capacity(10_000)
            .time_to_idle(Duration::from_secs(600))
            .build();
        let evicted = connectors.clone();
        registry.on_eviction(move |name_key| evicted.invalidate(name_key));
        Self {
            registry,
            timeouts: timeouts.clone(),
            streams_per_connection,
            connectors,
        }
    }

    /// The connector for this registration and version of the cluster.
    ///
    /// One connector per name is kept, but it serves only the record it was
    /// built from: a name deleted and registered again is another `uid`.
    pub fn connector(&self, record: &ClusterRecord) -> Result<Arc<Connector>, UpstreamError> {
        let key = crate::clusters::name_key(&record.name);
        if let Some(connector) = self.connectors.get(key.as_ref()) {
            if connector.uid == record.uid && connector.version == record.version {
                return Ok(connector);
            }
        }
        let connector = Arc::new(self.build(record)?);
        self.connectors.insert(key.into_owned(), connector.clone());
        Ok(connector)
    }

    fn build(&self, record: &ClusterRecord) -> Result<Connector, UpstreamError> {
        let misconfigured = |reason: String| UpstreamError::Misconfigured {
            cluster: record.name.clone(),
            reason,
        };
        let client_key = self
            .registry
            .open_client_key(record)
            .map_err(|error| misconfigured(error.to_string()))?;
        let token = self
            .registry
            .open_token(record)
            .map_err(|error| misconfigured(error.to_string()))?;
        let tls = tls::client_config(record, client_key.as_ref())
            .map_err(|error| misconfigured(error.to_string()))?;
        let uri: Uri = record
            .url
            .parse()
            .map_err(|_| misconfigured("url is not a valid URI".into()))?;
        let parts = uri.into_parts();
        let scheme = parts
            .scheme
            .ok_or_else(|| misconfigured("url has no scheme".into()))?;
        let authority = parts
            .authority
            .ok_or_else(|| misconfigured("url has no host".into()))?;
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| misconfigured("url is not a valid URI".into()))?;
        // As the HTTP/1.1 client would write it: the port only when it is
        // not the scheme's own.
        let default_port = if scheme == http::uri::Scheme::HTTP {
            80
        } else {
            443
        };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host = HeaderValue::from_str(&host)
            .map_err(|_| misconfigured("url's host is not a valid header value".into()))?;
        let without_certificate = match (&record.client_cert_data, &client_key) {
            (Some(_), Some(_)) => Some(
                self.clients(
                    tls::client_config(record, None)
                        .map_err(|error| misconfigured(error.to_string()))?,
                    &origin,
                    &host,
                ),
            ),
            _ => None,
        };
        let base_path = parts
            .path_and_query
            .map(|path| path.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let credential = match (token, record.client_cert_data.is_some()) {
            (Some(token), _) => ServerCredential::Token(bearer_value(&token)),
            (None, true) => ServerCredential::ClientCertificate,
            (None, false) => ServerCredential::None,
        };
        let client_token_header = match (record.auth_provider, &record.oidc_token_provider) {
            (AuthProvider::Oidc, Some(provider)) => {
                format!("Backstage-Kubernetes-Authorization-oidc-{provider}")
            }
            (AuthProvider::Google, _) => "Backstage-Kubernetes-Authorization-google".into(),
            (AuthProvider::Client, _) => "Backstage-Kubernetes-Authorization-client".into(),
            _ => "Backstage-Kubernetes-Authorization".into(),
        };
        // Looked up by name, parsed once: a provider whose name no header
        // can have is never sent, as before.
        let client_token_name = HeaderName::from_bytes(client_token_header.as_bytes())
            .ok()
            .filter(|name| *name != CLUSTER_TOKEN_HEADER);
        Ok(Connector {
            cluster: record.name.clone(),
            client_token_header,
            client_token_name,
            uid: record.uid.clone(),
            version: record.version,
            auth_provider: record.auth_provider,
            scheme,
            authority,
            base_path,
            portal: self.clients(tls, &origin, &host),
            without_certificate,
            credential,
            response_header_timeout: self.timeouts.response_header(),
        })
    }

    fn https(&self, tls: rustls::ClientConfig, http2: bool) -> ClusterConnector {
        cluster_connector(tls, http2, self.timeouts.connect())
    }

    /// The connections of one TLS configuration: driven (HTTP/1.1), shared
    /// (HTTP/2 where offered), upgrades (HTTP/1.1) and long-lived streams.
    fn clients(&self, tls: rustls::ClientConfig, origin: &Uri, host: &HeaderValue) -> Clients {
        Clients {
            driven: DrivenPool::new(self.https(tls.clone(), false), origin.clone(), host.clone()),
            shared: self.client(self.https(tls.clone(), true)),
            upgrade: self.client(self.https(tls.clone(), false)),
            streams: Arc::new(StreamPool::new(
                self.https(tls, true),
                self.streams_per_connection,
            )),
        }
    }

    fn client(&self, connector: ClusterConnector) -> HttpsClient {
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            // A large response (a list of many megabytes) comes in a quarter
            // of the HTTP/2 frames it would take at the default 16 KiB.
            .http2_max_frame_size(MAX_FRAME_SIZE)
            .build(connector)
    }
}
