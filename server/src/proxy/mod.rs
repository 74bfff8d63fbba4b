//! The Kubernetes API proxy: any verb, any path, streamed both ways, upgrades
//! (WebSocket and SPDY) bridged end to end, to one registered cluster.
//!
//! Two addressing forms share one engine: the header form
//! (`/api/kubernetes/proxy/<path>` + `Backstage-Kubernetes-Cluster`) for portal
//! frontends, and the path form (`/api/kubernetes/clusters/<name>/proxy/<path>`)
//! for kubectl and other standard clients. The policy is checked before any
//! byte goes upstream. Bodies are never buffered whole.

mod closing;
mod fleet;
mod headers;
mod kubeconfig;
mod reviews;
pub mod tickets;
mod upgrade;

use std::ops::Deref;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRef, Request, State};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::recording::{self, RecordingPolicy};
use crate::clusters::{validate_cluster_name, Registry};
use crate::error::ApiError;
use crate::identity::{Authenticator, Caller};
use crate::kubernetes::{KubernetesRequest, Query, RequestAttributesExt};
use crate::permissions::{Facts, Impersonation, Permission, Policy, ProxyTarget, Target, View};
use crate::telemetry::{GaugeGuard, SharedMetrics, UpstreamErrorLabels};
use crate::upstream::{ClusterToken, ImpersonationConfig, Route, UpstreamTimeouts, Upstreams};
use crate::views;
use http_body_util::BodyExt;

pub use closing::Sessions;
pub use headers::transfer_coding_refusal;
pub use kubeconfig::PublicAddress;

/// The header naming the cluster in the header form.
pub const CLUSTER_HEADER: http::HeaderName =
    http::HeaderName::from_static("backstage-kubernetes-cluster");
const HEADER_FORM_PREFIX: &str = "/api/kubernetes/proxy";
const PATH_FORM_PREFIX: &str = "/api/kubernetes/clusters/";

/// What the proxy uses of the rest of kubeportal, built once at start-up.
pub struct ProxyServices {
    pub registry: Registry,
    pub authenticator: Arc<Authenticator>,
    pub policy: Arc<Policy>,
    pub upstreams: Upstreams,
    pub metrics: SharedMetrics,
    pub recording: Arc<RecordingPolicy>,
    pub tickets: tickets::Tickets,
    pub views: TenantViews,
    pub settings: ProxySettings,
    /// The upgraded sessions (exec, attach, port-forward) being bridged.
    pub sessions: Sessions,
}

/// What the tenant views keep between requests.
#[derive(Clone)]
pub struct TenantViews {
    /// Each cluster's namespaces, for rules that select them by label.
    pub namespaces: views::NamespaceLabels,
    /// Sealing of filtered lists' continue tokens.
    pub tokens: views::ContinueTokens,
}

/// The configuration the proxy reads.
pub struct ProxySettings {
    /// `audit.sensitiveQueryParams`: masked in the query the audit trail notes.
    pub sensitive_query_params: Vec<String>,
    /// `kubernetes.impersonation`.
    pub impersonation: ImpersonationConfig,
    /// `kubernetes.timeouts`.
    pub timeouts: UpstreamTimeouts,
    /// How clients reach kubeportal, for the kubeconfigs it generates.
    pub address: PublicAddress,
    /// How long the fleet view waits for each cluster's list
    /// (`kubernetes.objects.clusterTimeoutMs`).
    pub fleet_deadline: std::time::Duration,
}

/// The proxy's handlers' state; it dereferences to [`ProxyServices`], and a
/// clone is a reference count.
#[derive(Clone)]
pub struct ProxyState(Arc<ProxyServices>);

impl ProxyState {
    pub fn new(services: ProxyServices) -> Self {
        Self(Arc::new(services))
    }
}

impl Deref for ProxyState {
    type Target = ProxyServices;

    fn deref(&self) -> &ProxyServices {
        &self.0
    }
}

/// The authenticator, for the [`Caller`] extractor.
impl FromRef<ProxyState> for Arc<Authenticator> {
    fn from_ref(state: &ProxyState) -> Self {
        state.authenticator.clone()
    }
}

/// The proxy routes. They take any method, so they are registered directly;
/// their documentation is in [`docs`].
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ProxyState: FromRef<S>,
{
    Router::new()
        .route("/api/kubernetes/proxy", any(header_form))
        .route("/api/kubernetes/proxy/", any(header_form))
        .route("/api/kubernetes/proxy/{*path}", any(header_form))
        .route("/api/kubernetes/clusters/{name}/proxy", any(path_form))
        .route("/api/kubernetes/clusters/{name}/proxy/", any(path_form))
        .route(
            "/api/kubernetes/clusters/{name}/proxy/{*path}",
            any(path_form),
        )
        .route(
            "/api/kubernetes/fleet/{clusterGlob}/proxy",
            any(fleet::fleet_proxy),
        )
        .route(
            "/api/kubernetes/fleet/{clusterGlob}/proxy/",
            any(fleet::fleet_proxy),
        )
        .route(
            "/api/kubernetes/fleet/{clusterGlob}/proxy/{*path}",
            any(fleet::fleet_proxy),
        )
}

/// The kubeconfig route (documented through its annotation).
pub fn documented_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    ProxyState: FromRef<S>,
    Arc<Authenticator>: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(kubeconfig::kubeconfig))
        .routes(routes!(tickets::issue_ticket))
        .routes(routes!(fleet::fleet_kubeconfig))
}

/// The proxy routes' OpenAPI description; they are not routed through
/// utoipa because they accept every method.
#[derive(utoipa::OpenApi)]
#[openapi(paths(docs::header_form_doc, docs::path_form_doc, docs::fleet_doc))]
pub struct ProxyDocs;

async fn header_form(
    State(state): State<ProxyState>,
    request: Request,
) -> Result<Response, ApiError> {
    let cluster = match cluster_header(request.headers()) {
        Ok(Some(cluster)) => cluster,
        // Without the header Backstage uses the only cluster there is (its
        // browser exec terminal, which cannot set headers, relies on it).
        Ok(None) => match only_cluster(&state).await {
            Ok(Some(cluster)) => cluster,
            Ok(None) => {
                let error = ApiError::Input(
                    "missing Backstage-Kubernetes-Cluster header naming the target cluster".into(),
                );
                // Whether exactly one cluster is registered is for those who
                // may read the registry.
                let error = match authenticated(&state, request).await {
                    Ok(caller) => told_to_who_may_see(&state, &caller, None, error),
                    Err(unauthenticated) => unauthenticated,
                };
                return Err(error);
            }
            Err(error) => return Err(refuse_once_authenticated(&state, request, error).await),
        },
        Err(error) => return Err(refuse_once_authenticated(&state, request, error).await),
    };
    let rest = request.uri().path()[HEADER_FORM_PREFIX.len()..].to_owned();
    Box::pin(forward(state, &cluster, &rest, request, Form::Header)).await
}

/// How the caller addressed the cluster, which decides how errors read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Portal frontends: Backstage's error envelope, denials say only
    /// `Unauthorized` (the cluster came in a header and is not named).
    Header,
    /// kubectl and other standard clients: errors are Kubernetes `Status`
    /// objects that read as the API server's own.
    Path,
}

/// The cluster the header form names, if it names one.
fn cluster_header(headers: &http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(CLUSTER_HEADER) else {
        return Ok(None);
    };
    Ok(Some(
        value
            .to_str()
            .map_err(|_| {
                ApiError::Input("Backstage-Kubernetes-Cluster: not a valid cluster name".into())
            })?
            .trim()
            .to_owned(),
    ))
}

/// The name of the registered cluster when there is exactly one.
async fn only_cluster(state: &ProxyState) -> Result<Option<String>, ApiError> {
    let page = state.registry.list(None, Some(2)).await?;
    Ok(match page.items.as_slice() {
        [only] => Some(only.name.clone()),
        _ => None,
    })
}

/// Refuses a malformed request only once its caller is known: without a
/// valid identity the answer is 401 whatever else is wrong, as on every
/// protected route.
async fn refuse_once_authenticated(
    state: &ProxyState,
    request: Request,
    error: ApiError,
) -> ApiError {
    match authenticated(state, request).await {
        Ok(_) => error,
        Err(unauthenticated) => unauthenticated,
    }
}

async fn authenticated(state: &ProxyState, request: Request) -> Result<Caller, ApiError> {
    use axum::extract::FromRequestParts;
    let (mut parts, _) = request.into_parts();
    Caller::from_request_parts(&mut parts, state).await
}

/// `error` for a caller who may see the cluster (or, without one, read the
/// registry); the plain denial for anyone else, so that no answer tells a
/// registered cluster from an unknown name.
pub(crate) fn told_to_who_may_see(
    state: &ProxyState,
    caller: &Caller,
    cluster: Option<&str>,
    error: ApiError,
) -> ApiError {
    let target = match cluster {
        Some(cluster) => Target::cluster(cluster),
        None => Target::none(),
    };
    let may_see = state
        .policy
        .explain(caller, Permission::ClustersRead, &target)
        .decision
        == crate::permissions::Decision::Allow;
    if may_see {
        error
    } else {
        ApiError::NotAllowed
    }
}

async fn path_form(
    State(state): State<ProxyState>,
    request: Request,
) -> Result<Response, ApiError> {
    let after = &request.uri().path()[PATH_FORM_PREFIX.len()..];
    let (cluster, rest) = after
        .split_once("/proxy")
        .ok_or_else(|| ApiError::NotFound("no such route".into()))?;
    let (cluster, rest) = (cluster.to_owned(), rest.to_owned());
    Box::pin(forward(state, &cluster, &rest, request, Form::Path))
        .await
        .map_err(|error| match error {
            // The API server's own word for a backend it cannot reach; kubectl
            // prints its reason (`ServiceUnavailable`) and, once it has
            // discovery, the message naming the cause.
            ApiError::BadGateway(message) => ApiError::Unavailable(message),
            other => other,
        })
}

/// Who is calling: the portal identity, or for a WebSocket upgrade without
/// `Authorization`, the holder of a one-time `?ticket=` for this path (the
/// caller passes a ticket only for upgrades).
async fn proxy_caller(
    state: &ProxyState,
    parts: &mut http::request::Parts,
    ticket: Option<&str>,
    cluster: &str,
    kubernetes_path: &str,
) -> Result<Caller, ApiError> {
    use axum::extract::FromRequestParts;
    let ticket = ticket.filter(|_| !parts.headers.contains_key(http::header::AUTHORIZATION));
    let Some(ticket) = ticket else {
        return Caller::from_request_parts(parts, state).await;
    };
    let mut caller = state
        .tickets
        .redeem(ticket, cluster, kubernetes_path)
        .await
        .ok_or_else(|| ApiError::Authentication("invalid, spent or expired ticket".into()))?;
    if let Some(note) = parts.extensions.get::<crate::context::AuditNote>() {
        note.set_identity(&caller.subject, &caller.groups);
        caller.note = Some(note.clone());
    }
    Ok(caller)
}

/// Reads a request target once, as the API server will: the canonical
/// request to forward and its attributes, and the portal's ticket (which never
/// goes upstream).
fn read_target(
    method: &http::Method,
    raw_path: &str,
    raw_query: Option<&str>,
) -> Result<(KubernetesRequest, Option<String>), ApiError> {
    let invalid = |error: &dyn std::fmt::Display| ApiError::Input(error.to_string());
    let mut query = Query::parse(raw_query).map_err(|error| invalid(&error))?;
    let ticket = query.take("ticket");
    let request =
        KubernetesRequest::parse(method, raw_path, query).map_err(|error| invalid(&error))?;
    Ok((request, ticket))
}

/// Resolves, checks, rewrites and forwards one request.
async fn forward(
    state: ProxyState,
    cluster: &str,
    raw_path: &str,
    request: Request,
    form: Form,
) -> Result<Response, ApiError> {
    // A browser's WebSocket over HTTP/2 (RFC 8441 extended CONNECT) is the
    // same request as an HTTP/1.1 WebSocket GET and is read, judged and
    // forwarded as one; any other CONNECT would tunnel past the API server.
    let websocket_over_http2 = is_websocket_over_http2(&request);
    if request.method() == http::Method::CONNECT && !websocket_over_http2 {
        let error = ApiError::MethodNotAllowed(
            "CONNECT is not proxied (only WebSocket over HTTP/2 uses it)".into(),
        );
        return Err(refuse_once_authenticated(&state, request, error).await);
    }
    let upgrade = websocket_over_http2 || headers::is_upgrade(request.headers());
    // An HTTP/1.1 upgrade carries no body (client-go never sends one): bytes
    // after its head would reach the cluster ahead of the session, where a
    // server that takes the connection over may read them as the protocol's
    // first frames, unseen by the session's recording. (Over HTTP/2 the
    // stream's data is the session itself.)
    if upgrade && !websocket_over_http2 && !http_body::Body::is_end_stream(request.body()) {
        let error = ApiError::Input("an upgrade request carries no body".into());
        return Err(refuse_once_authenticated(&state, request, error).await);
    }
    let method = if websocket_over_http2 {
        http::Method::GET
    } else {
        request.method().clone()
    };
    let (target, ticket) = match read_target(&method, raw_path, request.uri().query()) {
        Ok(read) => read,
        Err(error) => return Err(refuse_once_authenticated(&state, request, error).await),
    };
    // A ticket stands in for a browser's headers on a WebSocket handshake
    // (a GET, or an extended CONNECT over HTTP/2), and on nothing else.
    let ticket_upgrade = websocket_over_http2
        || (method == http::Method::GET && upgrade && headers::is_websocket(request.headers()));
    let (mut parts, body) = request.into_parts();
    let caller = proxy_caller(
        &state,
        &mut parts,
        ticket.filter(|_| ticket_upgrade).as_deref(),
        cluster,
        &target.path,
    )
    .await?;
    let mut request = Request::from_parts(parts, body);
    validate_cluster_name(cluster)
        .map_err(|_| crate::clusters::unknown_cluster(&state.policy, &caller, cluster))?;
    let record = state
        .registry
        .resolve(cluster)
        .await?
        .ok_or_else(|| crate::clusters::unknown_cluster(&state.policy, &caller, cluster))?;
    caller.note_registered_cluster(&record.name);
    tracing::Span::current().record("cluster", record.name.as_str());
    let query = target.query_string();
    if let Some(note) = &caller.note {
        note.set_request(
            &target.path,
            target
                .query
                .encode_masked(&state.settings.sensitive_query_params),
            &target.attributes.verb,
        );
    }
    if let Some(review) = reviews::Review::of(&target.attributes) {
        return Box::pin(reviews::answer(
            &state,
            reviews::ReviewRequest {
                review,
                caller: &caller,
                record: &record,
                path: &target.path,
                attributes: &target.attributes,
                request,
            },
        ))
        .await;
    }
    let attributes = &target.attributes;
    let interactive = matches!(attributes.subresource.as_deref(), Some("exec" | "attach"));
    let long_lived = target.is_long_lived();
    let policy_target = Target {
        cluster: Some(&record.name),
        proxy: Some(ProxyTarget {
            method: &method,
            path: &target.path,
            attributes: std::borrow::Cow::Borrowed(&target.attributes),
        }),
        impersonation: None,
    };
    // The labels of the request's namespace, for rules that select
    // namespaces by label (a watch per cluster, not a request).
    let namespaces = if state.policy.reads_namespace_labels() && attributes.is_resource_request {
        let connector = state.upstreams.connector(&record)?;
        state.views.namespaces.of(&connector).await
    } else {
        None
    };
    let request_namespace = match (&namespaces, attributes.namespace.as_deref()) {
        (Some(namespaces), Some(namespace)) => namespaces.get(namespace),
        _ => None,
    };
    let facts = Facts {
        object: None,
        namespace_labels: request_namespace
            .as_ref()
            .map(|namespace| views::labels_of(namespace)),
    };
    let filterable = !upgrade && views::filterable(attributes);
    let mut view = if filterable {
        state.policy.view(&caller, &policy_target, &facts)
    } else {
        View::All
    };
    // One object outside the caller's view of its kind is, to them, not
    // there: a get is 404, and a list or watch of it by name (kubectl's
    // `get NAME -w`) is served filtered, so it comes back empty, as for an
    // object that does not exist.
    let outside = view == View::None
        && filterable
        && attributes.name.is_some()
        && outside_a_view(&state, &caller, &policy_target, &facts);
    if outside && attributes.verb == "get" {
        if let Some(note) = &caller.note {
            note.set_decision(false, Some("outside the caller's view: not found".into()));
        }
        return Err(not_found(attributes));
    }
    if outside {
        view = View::Some;
    }
    if view == View::Some {
        if let Some(note) = &caller.note {
            note.set_decision(
                true,
                Some("filtered view: only the objects the rules grant".into()),
            );
        }
    } else if let Err(denied) =
        state
            .policy
            .check_with(&caller, Permission::Proxy, &policy_target, &facts)
    {
        return Err(match form {
            Form::Header => denied,
            Form::Path => worded_as_the_api_server(&state, &caller, &policy_target, denied),
        });
    }
    // Read only once the policy allowed the request, so that a malformed
    // header cannot tell a registered cluster from an unknown one.
    let requested_identity = headers::requested_impersonation(request.headers())?;
    if let Some(requested) = &requested_identity {
        check_impersonation(&state, &caller, &record.name, requested)?;
    }
    let connector = state.upstreams.connector(&record)?;
    let caller_token =
        headers::caller_cluster_token(request.headers(), connector.client_token_header())?
            .or(headers::websocket_token(request.headers())?)
            .map(ClusterToken);
    let mut outgoing_headers = headers::forwardable(request.headers(), upgrade);
    if websocket_over_http2 {
        headers::as_http1_websocket(&mut outgoing_headers);
    }
    let credential = connector.authorize(
        &mut outgoing_headers,
        &caller,
        caller_token,
        &state.settings.impersonation,
    )?;
    if let Some(requested) = &requested_identity {
        connector.impersonate(&mut outgoing_headers, &requested.user, &requested.groups)?;
    }

    // Where sessions must be recorded, nothing else that can run commands gets
    // through unrecorded: a node, pod or service proxy reaches the kubelet's
    // exec and run endpoints, and exec or attach without an upgrade cannot be
    // recorded.
    let recordable = upgrade && interactive;
    let runs_commands = target.attributes.action == crate::kubernetes::Action::Exec
        && target.attributes.subresource.as_deref() != Some("portforward");
    if runs_commands
        && !recordable
        && state.recording.mode(&record.name) == recording::RecordMode::Required
    {
        return Err(ApiError::Refused(
            "sessions on this cluster must be recorded, and only WebSocket or SPDY exec and attach can be"
                .into(),
        ));
    }
    let recording = if recordable {
        Box::pin(start_recording(
            &state,
            &caller,
            &record.name,
            &target.path,
            upgrade::Protocol::of(request.headers(), websocket_over_http2),
        ))
        .await?
    } else {
        None
    };
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let mut query = query;
    let mut strip_row_objects = false;
    if view == View::Some {
        // The filter reads JSON, whole (not compressed), and needs each
        // Table row's object to judge it.
        let accept = views::json_accept(request.headers()).map_err(|_| {
            ApiError::NotAcceptable(
                "only JSON can be served for this view: accept application/json".into(),
            )
        })?;
        outgoing_headers_accept(&mut outgoing_headers, accept);
        // The cluster's continue token, which the caller was given sealed.
        if let Some(sealed) = target
            .query
            .first("continue")
            .filter(|token| !token.is_empty())
        {
            let token = state
                .views
                .tokens
                .open(&record.name, &caller.subject, sealed)
                .ok_or_else(|| {
                    ApiError::Input(
                        "continue: not a continue token kubeportal gave you for this list".into(),
                    )
                })?;
            let mut unsealed = target.query.clone();
            unsealed.take("continue");
            unsealed.push("continue", &token);
            query = unsealed.encode();
        }
        if let Some(rewritten) = query.as_deref().and_then(views::include_row_metadata) {
            query = Some(rewritten);
            strip_row_objects = true;
        }
    }
    let uri = connector.uri(&target.path, query.as_deref())?;
    let (_, body) = request.into_parts();
    let mut outgoing = http::Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(body)
        .map_err(ApiError::internal)?;
    // The protocols asked for: a 101 must switch to one of them.
    let asked_upgrade = upgrade.then(|| headers::upgrade_tokens(&outgoing_headers));
    *outgoing.headers_mut() = outgoing_headers;

    let route = if upgrade {
        Route::Upgrade
    } else if long_lived {
        Route::Stream
    } else {
        Route::Shared
    };
    // Boxed: the send future is large, and inline it would be copied with
    // every move of this one.
    let header_timeout = state.settings.timeouts.response_header_for(target.timeout);
    let (response, lease) =
        match Box::pin(connector.send_within(outgoing, route, credential, header_timeout)).await {
            Ok(sent) => sent,
            Err(error) => {
                let labels = UpstreamErrorLabels {
                    cluster: record.name.clone(),
                    kind: error.kind().to_owned(),
                };
                state.metrics.upstream_errors.get_or_create(&labels).inc();
                return Err(error.into());
            }
        };
    if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
        (client_upgrade, response.status())
    {
        let answered = headers::upgrade_tokens(response.headers());
        let asked = asked_upgrade.unwrap_or_default();
        if !answered.iter().any(|protocol| asked.contains(protocol)) {
            return Err(ApiError::BadGateway(format!(
                "cluster {} switched to a protocol the request did not ask for",
                record.name
            )));
        }
        let mut recording = recording;
        if let Some(recording) = recording.as_mut() {
            // `base64.channel.k8s.io` and `v4.base64.channel.k8s.io` carry
            // each message as a channel digit and base64 text.
            let base64 = response
                .headers()
                .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|protocol| protocol.contains("base64."));
            recording.recorder.read_base64(base64);
        }
        return Ok(upgrade::bridge(upgrade::Bridge {
            client: client_upgrade,
            response,
            recording,
            cluster: record.name.clone(),
            gauge: GaugeGuard::new(&state.metrics.upgraded_connections),
            websocket_over_http2,
            totals: caller.note.as_ref().map(|note| note.expect_session()),
            sessions: state.sessions.clone(),
        }));
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // Protocols switched on a request that asked for no upgrade: what
        // follows on the connection is nothing HTTP can carry to the caller.
        return Err(ApiError::BadGateway(format!(
            "cluster {} switched protocols on a request that asked for no upgrade",
            record.name
        )));
    }
    let (mut parts, body) = response.into_parts();
    headers::strip_response(&mut parts.headers, false);
    // The guards live as long as the body: the gauge counts open streams, and
    // a long-lived stream's place on its connection is given back at its end.
    let streaming = (GaugeGuard::new(&state.metrics.open_streams), lease);
    let is_json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
        && parts
            .headers
            .get(http::header::CONTENT_ENCODING)
            .is_none_or(|encoding| encoding.as_bytes().eq_ignore_ascii_case(b"identity"));
    if view == View::Some && !parts.status.is_success() {
        // Missing is as hidden: the same 404, so that whether an object the
        // caller may not see exists is not told by the answer. The API
        // server reads the object before it converts it (`as=Table` options,
        // a list type asked of one object, a conversion webhook), so those
        // errors too come only for an object that exists: every error but
        // those that come before the object is read is that 404.
        if attributes.verb == "get" && !comes_before_the_object(parts.status) {
            return Err(not_found(attributes));
        }
        let answer = read_whole(body, views::OBJECT_LIMIT).await?;
        let seal = continue_sealer(&state, &record.name, &caller);
        let status = views::error_status(parts.status, &answer, &*seal);
        parts.headers.remove(http::header::CONTENT_LENGTH);
        parts.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(Response::from_parts(parts, Body::from(status)));
    }
    if view == View::Some && attributes.verb == "get" {
        if is_json {
            let object = read_whole(body, views::OBJECT_LIMIT).await?;
            let judge = object_judge(&state, &caller, &record.name, &method, &target, namespaces);
            let Some(sent) = views::judged_object(&object, &judge, strip_row_objects) else {
                return Err(not_found(attributes));
            };
            parts.headers.remove(http::header::CONTENT_LENGTH);
            return Ok(Response::from_parts(parts, Body::from(sent)));
        } else {
            return Err(ApiError::BadGateway(
                "the cluster answered a filtered read in a format other than JSON".into(),
            ));
        }
    }
    if view == View::Some && matches!(attributes.verb.as_str(), "list" | "watch") {
        if is_json {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            let stream = if attributes.verb == "watch" {
                views::Stream::Watch
            } else {
                views::Stream::List
            };
            let judge = object_judge(&state, &caller, &record.name, &method, &target, namespaces);
            let seal = continue_sealer(&state, &record.name, &caller);
            let body = views::filtered(
                body,
                stream,
                judge,
                strip_row_objects,
                Some(seal),
                streaming,
            );
            return Ok(Response::from_parts(parts, body));
        } else {
            // Nothing else can be filtered: nothing of it is shown.
            return Err(ApiError::BadGateway(
                "the cluster answered a filtered read in a format other than JSON".into(),
            ));
        }
    }
    let body = body.map_frame(move |frame| {
        let _ = &streaming;
        frame
    });
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Whether an API server's error for a get is decided before it reads the
/// object: the caller's credential, its rate, the cluster's availability.
fn comes_before_the_object(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Seals the cluster's continue tokens of a filtered read for its caller.
fn continue_sealer(
    state: &ProxyState,
    cluster: &str,
    caller: &Caller,
) -> views::filter::SealContinue {
    let tokens = state.views.tokens.clone();
    let (cluster, subject) = (cluster.to_owned(), caller.subject.clone());
    Box::new(move |token| tokens.seal(&cluster, &subject, token))
}

/// A response body read whole, up to `limit` bytes.
async fn read_whole<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|error| ApiError::BadGateway(format!("reading the cluster's answer: {error}")))
}

/// The judge of each object of a filtered read.
fn object_judge(
    state: &ProxyState,
    caller: &Caller,
    cluster: &str,
    method: &http::Method,
    target: &KubernetesRequest,
    namespaces: Option<views::Namespaces>,
) -> views::ObjectJudge {
    views::ObjectJudge::new(
        state.policy.clone(),
        caller,
        views::JudgedRead {
            cluster: cluster.to_owned(),
            method: method.clone(),
            path: target.path.clone(),
            attributes: target.attributes.clone(),
        },
        namespaces,
    )
}

fn outgoing_headers_accept(headers: &mut http::HeaderMap, accept: http::HeaderValue) {
    headers.insert(http::header::ACCEPT, accept);
    headers.remove(http::header::ACCEPT_ENCODING);
}

/// Whether the caller sees some objects of the kind a denied read names:
/// then the object is, to them, not there.
fn outside_a_view(
    state: &ProxyState,
    caller: &Caller,
    target: &Target<'_>,
    facts: &Facts<'_>,
) -> bool {
    let Some(proxy) = &target.proxy else {
        return false;
    };
    let mut kind = proxy.attributes.as_ref().clone();
    kind.name = None;
    if views::is_namespace_kind(&kind) {
        kind.namespace = None;
    }
    let kind_target = Target {
        cluster: target.cluster,
        proxy: Some(ProxyTarget {
            method: proxy.method,
            path: proxy.path,
            attributes: std::borrow::Cow::Owned(kind),
        }),
        impersonation: None,
    };
    state.policy.view(caller, &kind_target, facts) != View::None
}

/// The API server's answer for an object that does not exist.
fn not_found(attributes: &crate::kubernetes::RequestAttributes) -> ApiError {
    let resource = attributes.resource.as_deref().unwrap_or_default();
    let group = attributes.api_group.as_deref().unwrap_or_default();
    let qualified = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    ApiError::NotFound(format!(
        "{qualified} \"{}\" not found",
        attributes.name.as_deref().unwrap_or_default()
    ))
}

/// A CONNECT is only ever a WebSocket over HTTP/2; any other (authority-form
/// or not, on any route) is refused with 405 before it meets a handler.
pub fn plain_connect_refusal(request: &Request) -> Option<Response> {
    use axum::response::IntoResponse;
    if request.method() != http::Method::CONNECT || is_websocket_over_http2(request) {
        return None;
    }
    let mut response = ApiError::MethodNotAllowed(
        "CONNECT is not proxied (only WebSocket over HTTP/2 uses it)".into(),
    )
    .into_response();
    response.headers_mut().insert(
        http::header::ALLOW,
        http::HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    Some(response)
}

/// Whether a request is a WebSocket over HTTP/2 (extended CONNECT with
/// `:protocol websocket`).
fn is_websocket_over_http2(request: &Request) -> bool {
    request.method() == http::Method::CONNECT
        && request
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

/// A policy denial on the path form, in the API server's own words (`pods
/// "api-0" is forbidden: User … cannot delete resource "pods" …`) with the
/// deciding rule's reason. Only a caller who may see the cluster learns more
/// than an unknown name would tell it; anyone else gets the plain denial.
fn worded_as_the_api_server(
    state: &ProxyState,
    caller: &Caller,
    target: &Target<'_>,
    denied: ApiError,
) -> ApiError {
    let (Some(cluster), Some(proxy)) = (target.cluster, &target.proxy) else {
        return denied;
    };
    let reason = state
        .policy
        .explain(caller, Permission::Proxy, target)
        .reason;
    let worded = ApiError::Refused(proxy.attributes.forbidden_message(
        &caller.subject,
        proxy.path,
        &format!("kubeportal's policy denies it ({reason})"),
    ));
    match told_to_who_may_see(state, caller, Some(cluster), worded) {
        ApiError::NotAllowed => denied,
        worded => worded,
    }
}

/// Refuses a caller's `Impersonate-*` headers unless `kubernetes.impersonate`
/// rules grant the user and every group on this cluster.
fn check_impersonation(
    state: &ProxyState,
    caller: &Caller,
    cluster: &str,
    requested: &headers::RequestedIdentity,
) -> Result<(), ApiError> {
    let wanted = std::iter::once(Impersonation::User(&requested.user)).chain(
        requested
            .groups
            .iter()
            .map(|group| Impersonation::Group(group)),
    );
    for impersonation in wanted {
        let target = Target {
            cluster: Some(cluster),
            proxy: None,
            impersonation: Some(impersonation),
        };
        if state
            .policy
            .check(caller, Permission::Impersonate, &target)
            .is_err()
        {
            let (kind, name) = match impersonation {
                Impersonation::User(user) => ("user", user),
                Impersonation::Group(group) => ("group", group),
            };
            return Err(ApiError::Refused(format!(
                "impersonation through the portal is not allowed: no kubernetes.impersonate rule lets you act as {kind} {name:?} here"
            )));
        }
    }
    if let Some(note) = &caller.note {
        note.set_impersonation(&requested.user, &requested.groups);
    }
    Ok(())
}

/// Sets up the recording of an exec/attach session as the cluster's policy
/// asks; `required` refuses the session when that is impossible.
async fn start_recording(
    state: &ProxyState,
    caller: &Caller,
    cluster: &str,
    path: &str,
    protocol: Option<upgrade::Protocol>,
) -> Result<Option<upgrade::Recording>, ApiError> {
    use recording::RecordMode;
    let mode = state.recording.mode(cluster);
    if mode == RecordMode::Off {
        return Ok(None);
    }
    let started = match protocol {
        Some(protocol) => state
            .recording
            .start(cluster, path, &caller.subject, protocol.name())
            .await
            .map(|recorder| upgrade::Recording { recorder, protocol }),
        None => Err(std::io::Error::other(
            "only WebSocket and SPDY/3.1 sessions can be recorded",
        )),
    };
    match (started, mode) {
        (Ok(recording), _) => {
            if let Some(note) = &caller.note {
                note.set_recording(&recording.recorder.name);
            }
            Ok(Some(recording))
        }
        (Err(error), RecordMode::Required) => {
            tracing::warn!(%cluster, %error, "refusing a session that cannot be recorded");
            Err(ApiError::Refused(format!(
                "sessions on this cluster must be recorded, and the recording cannot be set up ({error})"
            )))
        }
        (Err(error), _) => {
            tracing::warn!(%cluster, %error, "session not recorded (best effort)");
            Ok(None)
        }
    }
}

/// OpenAPI descriptions of the proxy routes (the handlers above take any method).
///
/// A proxied response is the cluster's, whatever its status, body and content
/// type; kubeportal's own answers are only the errors named here. So every
/// status also admits the cluster's answer, and `default` covers the rest.
mod docs {
    use crate::error::{ErrorResponse, KubernetesStatus};

    /// An error from the header-form proxy: kubeportal's own in Backstage's
    /// envelope, or the cluster's, passed through (a Kubernetes `Status`).
    #[derive(serde::Serialize, utoipa::ToSchema)]
    #[serde(untagged)]
    #[allow(dead_code)]
    pub enum ProxyError {
        Portal(ErrorResponse),
        Cluster(KubernetesStatus),
    }

    /// Proxies any Kubernetes API request to the cluster named by the
    /// `Backstage-Kubernetes-Cluster` header (Backstage's proxy contract).
    /// Every method is accepted (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS)
    /// and WebSocket/SPDY upgrades are bridged; the response is the cluster's,
    /// streamed verbatim.
    #[utoipa::path(get, path = "/api/kubernetes/proxy/{path}", tag = "proxy",
        params(
            ("path" = String, Path, description = "The Kubernetes API path, e.g. api/v1/namespaces", allow_reserved),
            ("Backstage-Kubernetes-Cluster" = String, Header, description = "Target cluster name"),
            ("Backstage-Kubernetes-Authorization" = Option<String>, Header, description = "`Bearer <cluster token>`: used upstream instead of the server-side credential"),
        ),
        security(("bearer" = [])),
        responses(
            (status = 200, description = "The cluster's response, verbatim", content(
                (serde_json::Value = "application/json"), (String = "text/plain"))),
            (status = 400, description = "Missing cluster header while more than one cluster is registered, unsafe path, or the cluster's 400", body = ProxyError),
            (status = 401, description = "No valid identity, or the cluster refused the credential", body = ProxyError),
            (status = 403, description = "kubernetes.proxy denied, or the cluster's 403", body = ProxyError),
            (status = 404, description = "No such cluster, or the cluster's 404", content(
                (ProxyError = "application/json"), (String = "text/plain"))),
            (status = 502, description = "The cluster refused, reset, or failed TLS", body = ProxyError),
            (status = 504, description = "The cluster did not answer in time", body = ProxyError),
            (status = "default", description = "Any other answer of the cluster, verbatim", content(
                (serde_json::Value = "application/json"), (String = "text/plain"))),
        ))]
    #[allow(dead_code)]
    pub fn header_form_doc() {}

    /// The fleet view: one list or watch across every cluster whose name
    /// matches `clusterGlob` that the caller may read. Lists merge every
    /// cluster's items (a `Table` gets a leading `Cluster` column), each
    /// annotated `kubeportal.io/cluster`, with a `clusters` stanza of
    /// per-cluster status and a `Warning` header per failed cluster;
    /// `continue` and `resourceVersion` are opaque composites of every
    /// cluster's own. Watches merge every cluster's events, each object's
    /// `resourceVersion` the composite to resume from. Discovery (`/api`,
    /// `/apis`, `/version`, …) is answered by one cluster of the fleet; any
    /// other request is 405.
    #[utoipa::path(get, path = "/api/kubernetes/fleet/{clusterGlob}/proxy/{path}", tag = "proxy",
        params(
            ("clusterGlob" = String, Path, description = "Cluster names, with `*` and `?` wildcards (case-insensitive), e.g. `prod-*`"),
            ("path" = String, Path, description = "The Kubernetes API path of a list or watch, e.g. api/v1/pods", allow_reserved),
        ),
        security(("bearer" = [])),
        responses(
            (status = 200, description = "The merged list, or the merged watch stream (newline-delimited events)", content(
                (serde_json::Value = "application/json"))),
            (status = 400, description = "Invalid glob, path, or composite continue/resourceVersion", body = KubernetesStatus),
            (status = 401, description = "No valid identity", body = KubernetesStatus),
            (status = 403, description = "`Impersonate-*` headers (the fleet view does not impersonate), or discovery denied by the cluster", body = KubernetesStatus),
            (status = 404, description = "No cluster matching the glob is readable (discovery), or the cluster's 404 for discovery", body = KubernetesStatus),
            (status = 405, description = "Not a list, watch or discovery request (`Allow: GET, HEAD`)", body = KubernetesStatus),
            (status = 406, description = "Only protobuf or CBOR accepted; the fleet view serves JSON", body = KubernetesStatus),
            (status = 503, description = "Discovery: no cluster of the fleet could be reached", body = KubernetesStatus),
            (status = 504, description = "Discovery: no cluster of the fleet answered in time", body = KubernetesStatus),
        ))]
    #[allow(dead_code)]
    pub fn fleet_doc() {}

    /// Proxies any Kubernetes API request to the named cluster; point a
    /// kubeconfig's `server` here to use kubectl. Errors kubeportal itself
    /// produces are Kubernetes `Status` objects.
    #[utoipa::path(get, path = "/api/kubernetes/clusters/{name}/proxy/{path}", tag = "proxy",
        params(
            ("name" = String, Path, description = "Cluster name"),
            ("path" = String, Path, description = "The Kubernetes API path", allow_reserved),
        ),
        security(("bearer" = [])),
        responses(
            (status = 200, description = "The cluster's response, verbatim", content(
                (serde_json::Value = "application/json"), (String = "text/plain"))),
            (status = 400, description = "Unsafe path, or the cluster's 400", body = KubernetesStatus),
            (status = 401, description = "No valid identity, or the cluster refused the credential", body = KubernetesStatus),
            (status = 403, description = "kubernetes.proxy denied (a `Forbidden` Status naming the verb, resource and the policy's reason, as the API server words its own), or the cluster's 403", body = KubernetesStatus),
            (status = 404, description = "No such cluster, or the cluster's 404", content(
                (KubernetesStatus = "application/json"), (String = "text/plain"))),
            (status = 503, description = "The cluster refused, reset, or failed TLS (reason `ServiceUnavailable`, the message naming the cause)", body = KubernetesStatus),
            (status = 504, description = "The cluster did not answer in time (`?timeout=` as the API server reads it, capped by `kubernetes.timeouts.maxResponseHeaderMs`)", body = KubernetesStatus),
            (status = "default", description = "Any other answer of the cluster, verbatim", content(
                (serde_json::Value = "application/json"), (String = "text/plain"))),
        ))]
    #[allow(dead_code)]
    pub fn path_form_doc() {}
}
