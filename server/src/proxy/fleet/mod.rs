//! The fleet view: one list and one watch across every cluster whose name
//! matches a glob, read-only, for kubectl and the SDKs.
//!
//! `GET /api/kubernetes/fleet/{clusterGlob}/proxy/<kubernetes path>` serves
//! lists and watches of a resource, and the discovery kubectl reads first
//! (from one of the clusters). Each cluster is asked with its own credential
//! under the caller's policy; a cluster the caller may not read is left out
//! as if it did not exist.
//!
//! - A list merges every cluster's items into one list of the kind asked for
//!   (a `Table` gets a leading `Cluster` column); each item carries its
//!   cluster in the `kubeportal.io/cluster` annotation. A cluster that fails
//!   or misses the deadline is reported in a `Warning` header and in the
//!   list's `clusters` stanza, never failing the whole list. `continue` and
//!   `resourceVersion` are opaque composites of every cluster's own.
//! - A watch merges every cluster's events as they come, each tagged with
//!   its cluster; every object's `resourceVersion` is the composite of every
//!   cluster's position after that event, so a client that resumes from it
//!   misses nothing on any cluster. A cluster whose stream ends is watched
//!   again from its last position, with backoff; the others keep flowing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use globset::{GlobBuilder, GlobMatcher};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::{authenticated, read_target, ProxyState};
use crate::clusters::ClusterRecord;
use crate::error::ApiError;
use crate::identity::Caller;
use crate::kubernetes::KubernetesRequest;
use crate::permissions::{Facts, ProxyTarget, Target, View};
use crate::upstream::{Connector, Credential, Route};
use crate::views;

mod tag;

use tag::{annotate, cluster_column, tag_row};

/// The annotation naming an item's cluster.
pub const CLUSTER_ANNOTATION: &str = "kubeportal.io/cluster";
const FLEET_PREFIX: &str = "/api/kubernetes/fleet/";
/// What a fleet's continue tokens are sealed for: `fleet:<glob>` (a cluster
/// name never holds `:`, so no cluster's scope is ever the same).
fn fleet_scope(glob: &str) -> String {
    format!("fleet:{glob}")
}
/// Clusters asked at once.
const FAN_OUT: usize = 64;
/// Chunks of each cluster's list read ahead of the merged list.
const QUEUE: usize = 4;

/// A cluster glob as the route gives it: cluster-name characters and `*`,
/// `?`; matched without regard to case, as names are.
fn cluster_glob(text: &str) -> Result<Arc<GlobMatcher>, ApiError> {
    // Only dots would be a dot segment of the URL, which clients remove.
    let valid = !text.is_empty()
        && !text.bytes().all(|byte| byte == b'.')
        && text.len() <= 253
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '?'));
    if !valid {
        return Err(ApiError::Input(
            "clusterGlob: cluster-name characters and the wildcards * and ? only".into(),
        ));
    }
    // Compiling a glob builds a regular expression, which costs more than
    // a small fleet's whole list: the compiled ones are kept, keyed by the
    // glob checked above, a few hundred at most.
    static COMPILED: std::sync::LazyLock<moka::sync::Cache<String, Arc<GlobMatcher>>> =
        std::sync::LazyLock::new(|| moka::sync::Cache::new(256));
    if let Some(matcher) = COMPILED.get(text) {
        return Ok(matcher);
    }
    let matcher = GlobBuilder::new(text)
        .case_insensitive(true)
        .literal_separator(true)
        .build()
        .map(|glob| Arc::new(glob.compile_matcher()))
        .map_err(|error| ApiError::Input(format!("clusterGlob: {error}")))?;
    COMPILED.insert(text.to_owned(), matcher.clone());
    Ok(matcher)
}

/// The discovery documents kubectl and client libraries read before a
/// list or watch: `/api` and its versions, `/apis` and its groups and
/// versions, `/version` and the OpenAPI documents.
fn is_discovery(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    matches!(
        segments.as_slice(),
        ["api" | "apis"]
            | ["api" | "apis", _]
            | ["apis", _, _]
            | ["version"]
            | ["openapi", "v2"]
            | ["openapi", "v3", ..]
    )
}

/// A path segment with its `%XX` escapes decoded; `None` for a bad escape or
/// a result that is not UTF-8.
fn percent_decoded(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = segment.get(index + 1..index + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// The composite of every cluster's position (`resourceVersion` or
/// `continue`): base64url of a JSON object, cluster name to position.
fn encode_positions(positions: &BTreeMap<String, String>) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(positions).expect("a map serializes"))
}

fn decode_positions(text: &str, what: &str) -> Result<BTreeMap<String, String>, ApiError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::Input(format!(
                "{what}: not a fleet {what} (pass back the value kubeportal gave)"
            ))
        })
}

/// The clusters of the fleet the caller may read, by name, with their view.
async fn members(
    state: &ProxyState,
    caller: &Caller,
    glob: &GlobMatcher,
    method: &Method,
    target: &KubernetesRequest,
) -> Result<Vec<(Arc<ClusterRecord>, View)>, ApiError> {
    // Which members the caller may read is not a decision about this
    // request: a member left out was never asked, and the request's audit
    // note records what is decided for the members that are.
    let caller = &Caller {
        note: None,
        ..caller.clone()
    };
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = state
            .registry
            .list(cursor.as_deref(), Some(crate::clusters::MAX_PAGE))
            .await?;
        records.extend(
            page.items
                .into_iter()
                .filter(|record| glob.is_match(&record.name)),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let members = records
        .into_iter()
        .filter_map(|record| {
            let policy_target = Target {
                cluster: Some(&record.name),
                proxy: Some(ProxyTarget {
                    method,
                    path: &target.path,
                    attributes: std::borrow::Cow::Borrowed(&target.attributes),
                }),
                impersonation: None,
            };
            let view = if views::filterable(&target.attributes) {
                state.policy.view(caller, &policy_target, &Facts::default())
            } else if state
                .policy
                .check(
                    caller,
                    crate::permissions::Permission::Proxy,
                    &policy_target,
                )
                .is_ok()
            {
                View::All
            } else {
                View::None
            };
            (view != View::None).then(|| (Arc::new(record), view))
        })
        .collect();
    Ok(members)
}

/// `ANY /api/kubernetes/fleet/{clusterGlob}/proxy/<path>`.
pub(super) async fn fleet_proxy(
    State(state): State<ProxyState>,
    request: Request,
) -> Result<Response, ApiError> {
    let after = &request.uri().path()[FLEET_PREFIX.len()..];
    let (glob_text, rest) = after
        .split_once("/proxy")
        .ok_or_else(|| ApiError::NotFound("no such route".into()))?;
    let (glob_text, rest) = (glob_text.to_owned(), rest.to_owned());
    let caller = authenticated(
        &state,
        Request::from_parts(request_parts(&request), Body::empty()),
    )
    .await?;
    // Clients escape the wildcards in a path (Go writes `*` as `%2A`).
    let glob_text = percent_decoded(&glob_text)
        .ok_or_else(|| ApiError::Input("clusterGlob: not a valid path segment".into()))?;
    let glob = cluster_glob(&glob_text)?;
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = ApiError::MethodNotAllowed(
            "the fleet view is read-only: it serves lists and watches (and discovery)".into(),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    // Every cluster is asked with its own credential as kubeportal holds it;
    // a request that asks for another identity is refused, not ignored.
    if request
        .headers()
        .keys()
        .any(|name| name.as_str().starts_with("impersonate-"))
    {
        return Err(ApiError::Refused(
            "the fleet view does not impersonate: ask each cluster's proxy instead".into(),
        ));
    }
    if request.headers().keys().any(|name| {
        name.as_str()
            .starts_with("backstage-kubernetes-authorization")
    }) {
        return Err(ApiError::Input(
            "the fleet view uses each cluster's credential kubeportal holds; cluster tokens are not taken"
                .into(),
        ));
    }
    if super::headers::is_upgrade(request.headers()) {
        return Err(ApiError::MethodNotAllowed(
            "the fleet view serves lists and watches (and discovery); it does not upgrade connections"
                .into(),
        ));
    }
    let method = Method::GET;
    let (target, _) = read_target(&method, &rest, request.uri().query())?;
    let attributes = &target.attributes;
    if !attributes.is_resource_request && !is_discovery(&target.path) {
        return Err(ApiError::MethodNotAllowed(
            "the fleet view serves lists and watches, and the discovery kubectl reads (/api, /apis, /version, /openapi); not this path"
                .into(),
        ));
    }
    if !attributes.is_resource_request {
        // Discovery: from the first cluster of the fleet, by name, that the
        // caller may read and that answers.
        let members = members(&state, &caller, &glob, &method, &target).await?;
        if members.is_empty() {
            if let Some(note) = &caller.note {
                note_fleet_decision(note, &glob_text, &[]);
            }
            return Err(ApiError::NotFound(format!(
                "no cluster matching {glob_text} is readable"
            )));
        }
        let mut last_error = None;
        for (member, _) in &members {
            let attempt = Request::from_parts(request_parts(&request), Body::empty());
            match Box::pin(super::forward(
                state.clone(),
                &member.name,
                &rest,
                attempt,
                super::Form::Path,
            ))
            .await
            {
                Ok(response) if !response.status().is_server_error() => return Ok(response),
                Ok(response) => last_error = Some(Ok(response)),
                Err(
                    error @ (ApiError::BadGateway(_)
                    | ApiError::GatewayTimeout(_)
                    | ApiError::Unavailable(_)),
                ) => {
                    last_error = Some(Err(error));
                }
                Err(error) => return Err(error),
            }
        }
        return match last_error.expect("at least one member was asked") {
            Ok(response) => Ok(response),
            // The API server's own word for a backend it cannot reach.
            Err(ApiError::BadGateway(message)) => Err(ApiError::Unavailable(message)),
            Err(error) => Err(error),
        };
    }
    if !views::filterable(attributes) || !matches!(attributes.verb.as_str(), "list" | "watch") {
        return Err(ApiError::MethodNotAllowed(format!(
            "the fleet view serves only lists and watches, not {}",
            if attributes.verb.is_empty() {
                "this request"
            } else {
                attributes.verb.as_str()
            }
        )));
    }
    let accept = views::json_accept(request.headers()).map_err(|_| {
        ApiError::NotAcceptable("the fleet view serves JSON only: accept application/json".into())
    })?;
    let members = members(&state, &caller, &glob, &method, &target).await?;
    if let Some(note) = &caller.note {
        note.set_request(
            &target.path,
            target
                .query
                .encode_masked(&state.settings.sensitive_query_params),
            &attributes.verb,
        );
        let names: Vec<&str> = members
            .iter()
            .map(|(record, _)| record.name.as_str())
            .collect();
        note_fleet_decision(note, &glob_text, &names);
    }
    let fleet = Fleet {
        state: state.clone(),
        caller,
        glob: glob_text.clone(),
        target: Arc::new(target),
        accept,
    };
    if fleet.target.attributes.verb == "watch" {
        fleet.watch(members).await
    } else {
        fleet.list(members).await
    }
}

/// Notes the decision of a fleet read over the members the caller may
/// read: allowed, naming them; over none, the answer is empty (or 404 for
/// discovery) and nothing was allowed, so it is the denial it is.
fn note_fleet_decision(note: &crate::context::AuditNote, glob: &str, members: &[&str]) {
    let (allowed, read) = if members.is_empty() {
        (false, "no cluster readable".to_owned())
    } else {
        (true, members.join(", "))
    };
    note.set_decision(
        allowed,
        Some(format!("fleet view over {glob}: {read}").into()),
    );
}

fn request_parts(request: &Request) -> http::request::Parts {
    let mut builder = http::Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone());
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    let (mut parts, ()) = builder
        .body(())
        .expect("copied parts are valid")
        .into_parts();
    if let Some(note) = request.extensions().get::<crate::context::AuditNote>() {
        parts.extensions.insert(note.clone());
    }
    parts
}

struct Fleet {
    state: ProxyState,
    caller: Caller,
    /// The glob as the caller wrote it (decoded).
    glob: String,
    target: Arc<KubernetesRequest>,
    accept: HeaderValue,
}

/// One cluster's answer to a list, its headers in hand: the body is read
/// only when its turn comes in the merged list.
enum Head {
    Answered {
        record: Arc<ClusterRecord>,
        body: crate::upstream::UpstreamBody,
        /// The caller's view, when partial: each item is judged.
        judge: Option<Box<views::ObjectJudge>>,
        _lease: Option<crate::upstream::StreamLease>,
    },
    Failed {
        record: Arc<ClusterRecord>,
        status: u16,
        message: String,
    },
}

impl Fleet {
    /// The query for one cluster: the caller's, with that cluster's own
    /// `continue` and `resourceVersion` in place of the composites.
    fn query_for(
        &self,
        cluster: &str,
        continues: Option<&BTreeMap<String, String>>,
        versions: Option<&BTreeMap<String, String>>,
    ) -> Option<String> {
        let mut query = self.target.query.clone();
        query.take("continue");
        query.take("resourceVersion");
        if let Some(position) = continues.and_then(|positions| positions.get(cluster)) {
            query.push("continue", position);
        }
        if let Some(version) = versions.and_then(|versions| versions.get(cluster)) {
            query.push("resourceVersion", version);
        }
        query.encode()
    }

    async fn request(
        &self,
        record: &ClusterRecord,
        query: Option<String>,
        route: Route,
        timeout: Duration,
    ) -> Result<
        (
            http::Response<crate::upstream::UpstreamBody>,
            Option<crate::upstream::StreamLease>,
            Arc<Connector>,
        ),
        (u16, String),
    > {
        let failed = |error: &dyn std::fmt::Display| (502, error.to_string());
        let connector = self
            .state
            .upstreams
            .connector(record)
            .map_err(|error| failed(&error))?;
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, self.accept.clone());
        let credential: Credential = connector
            .authorize(
                &mut headers,
                &self.caller,
                None,
                &self.state.settings.impersonation,
            )
            .map_err(|error| failed(&error))?;
        let uri = connector
            .uri(&self.target.path, query.as_deref())
            .map_err(|error| failed(&error))?;
        let mut request = http::Request::get(uri)
            .body(Body::empty())
            .map_err(|error| failed(&error))?;
        *request.headers_mut() = headers;
        let (response, lease) = connector
            .send_within(request, route, credential, timeout)
            .await
            .map_err(|error| match error {
                crate::upstream::UpstreamError::Timeout { .. } => (504, error.to_string()),
                error => failed(&error),
            })?;
        Ok((response, lease, connector))
    }

    /// Whether `Table` rows were asked for without their objects: a
    /// filtered member is asked for their metadata (to judge them), which
    /// is then removed.
    fn strips_row_objects(&self) -> bool {
        self.target.query.first("includeObject") == Some("None")
    }

    fn judge(
        &self,
        record: &ClusterRecord,
        namespaces: Option<views::Namespaces>,
    ) -> views::ObjectJudge {
        views::ObjectJudge::new(
            self.state.policy.clone(),
            &self.caller,
            views::JudgedRead {
                cluster: record.name.clone(),
                method: Method::GET,
                path: self.target.path.clone(),
                attributes: self.target.attributes.clone(),
            },
            namespaces,
        )
    }

    /// Asks one cluster for its list, until its response headers (within
    /// the fleet's deadline).
    async fn head_one(
        &self,
        record: Arc<ClusterRecord>,
        view: View,
        continues: Option<&BTreeMap<String, String>>,
        deadline: tokio::time::Instant,
    ) -> Head {
        let query = self.query_for(&record.name, continues, None);
        let query = if view == View::Some {
            query.map(|query| views::include_row_metadata(&query).unwrap_or(query))
        } else {
            query
        };
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let asked = async {
            let (response, lease, connector) =
                self.request(&record, query, Route::Shared, timeout).await?;
            let status = response.status();
            if !status.is_success() {
                let body = http_body_util::Limited::new(response.into_body(), 64 * 1024)
                    .collect()
                    .await
                    .map(|body| body.to_bytes())
                    .unwrap_or_default();
                let answer = serde_json::from_slice::<Value>(&body).ok();
                let text = |field: &str| {
                    answer
                        .as_ref()
                        .and_then(|answer| answer[field].as_str().map(str::to_owned))
                };
                let message = match (view, text("message")) {
                    // A partial view is told only what names nothing hidden.
                    (View::Some, message) => {
                        views::told_message(status, text("reason").as_deref(), message)
                    }
                    (_, Some(message)) => message,
                    (_, None) => format!("answered {status}"),
                };
                return Err((status.as_u16(), message));
            }
            let judge = if view == View::Some {
                let namespaces = if self.state.policy.reads_namespace_labels() {
                    self.state.views.namespaces.of(&connector).await
                } else {
                    None
                };
                Some(Box::new(self.judge(&record, namespaces)))
            } else {
                None
            };
            Ok((response.into_body(), judge, lease))
        };
        match tokio::time::timeout_at(deadline, asked).await {
            Ok(Ok((body, judge, lease))) => Head::Answered {
                record,
                body,
                judge,
                _lease: lease,
            },
            Ok(Err((status, message))) => Head::Failed {
                record,
                status,
                message,
            },
            Err(_) => Head::Failed {
                message: format!(
                    "cluster {} did not answer within {:.1} s",
                    record.name,
                    self.state.settings.fleet_deadline.as_secs_f64()
                ),
                record,
                status: 504,
            },
        }
    }

    async fn list(self, members: Vec<(Arc<ClusterRecord>, View)>) -> Result<Response, ApiError> {
        let continues = self
            .target
            .query
            .first("continue")
            .filter(|token| !token.is_empty())
            .map(|token| {
                // Sealed: the clusters' own tokens name objects the caller
                // may not see.
                let opened = self
                    .state
                    .views
                    .tokens
                    .open(&fleet_scope(&self.glob), &self.caller.subject, token)
                    .ok_or_else(|| {
                        ApiError::Input("continue: not a continue token kubeportal gave you".into())
                    })?;
                serde_json::from_str::<Continuation>(&opened).map_err(|_| {
                    ApiError::Input("continue: not a continue token kubeportal gave you".into())
                })
            })
            .transpose()?;
        let (continues, earlier_versions) = match continues {
            Some(continuation) => (Some(continuation.continues), continuation.versions),
            None => (None, BTreeMap::new()),
        };
        // On a continued list, only the clusters with more to give are asked.
        let asked: Vec<_> = members
            .into_iter()
            .filter(|(record, _)| {
                continues
                    .as_ref()
                    .is_none_or(|positions| positions.contains_key(&record.name))
            })
            .collect();
        // Every cluster's headers first (within the deadline), so that the
        // clusters that failed are `Warning` headers; then each body streams
        // into the merged list in turn.
        let deadline = tokio::time::Instant::now() + self.state.settings.fleet_deadline;
        let mut heads: Vec<Head> = futures::stream::iter(asked)
            .map(|(record, view)| self.head_one(record, view, continues.as_ref(), deadline))
            .buffer_unordered(FAN_OUT)
            .collect()
            .await;
        heads.sort_by(|a, b| a.record().name.cmp(&b.record().name));
        let mut response = Response::new(Body::empty());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for head in &heads {
            if let Head::Failed {
                record, message, ..
            } = head
            {
                let warning = if message.starts_with(&format!("cluster {} ", record.name)) {
                    message.clone()
                } else {
                    format!("cluster {}: {message}", record.name)
                };
                // The API server's own form (RFC 7234 warn-code 299), which
                // kubectl prints.
                let text = warning.replace(['"', '\\'], "'");
                if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
                    response.headers_mut().append(header::WARNING, value);
                }
            }
        }
        let tokens = self.state.views.tokens.clone();
        let subject = self.caller.subject.clone();
        let scope = fleet_scope(&self.glob);
        let seal: views::filter::SealContinue =
            Box::new(move |composite| tokens.seal(&scope, &subject, composite));
        let body_deadline = self.state.settings.fleet_deadline;
        let strip_row_objects = self.strips_row_objects();
        // Every answered cluster's body is read at once, each into its own
        // short queue, and the merged list takes from whichever has parts
        // ready: a slow cluster delays no other, and a slow client holds
        // each cluster back by its queue's few chunks.
        let mut merged = MergedList::new(earlier_versions, seal);
        let mut queues = futures::stream::SelectAll::new();
        let mut readers = Vec::new();
        for head in heads {
            match head {
                Head::Failed {
                    record,
                    status,
                    message,
                } => merged.failed(&record.name, status, &message),
                Head::Answered {
                    record,
                    body,
                    judge,
                    _lease,
                } => {
                    let index = merged.clusters.len();
                    merged.clusters.push(Member::new(&record.name));
                    let (parts, mut receiver) = tokio::sync::mpsc::channel::<Part>(QUEUE);
                    let reader = ListReader {
                        tagger: tag::Tagger::new(&record.name),
                        judge,
                        strip_row_objects,
                        deadline: body_deadline,
                    };
                    readers.push(tokio::spawn(async move {
                        let _lease = _lease;
                        reader.read(body, parts).await;
                    }));
                    queues.push(
                        futures::stream::poll_fn(move |context| receiver.poll_recv(context))
                            .chain(futures::stream::once(futures::future::ready(Part::Closed)))
                            .map(move |part| (index, part)),
                    );
                }
            }
        }
        // The merge runs as the response body is polled: the readers work
        // on their own tasks, and their parts go out with no further hop.
        let readers = AbortOnDrop(readers);
        let mut ended = false;
        *response.body_mut() = Body::from_stream(futures::stream::poll_fn(move |context| {
            let _readers = &readers;
            while !ended {
                match queues.poll_next_unpin(context) {
                    Poll::Ready(Some((index, part))) => {
                        let out = merged.take(index, part);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok::<_, std::io::Error>(Bytes::from(out))));
                        }
                    }
                    Poll::Ready(None) => {
                        ended = true;
                        return Poll::Ready(Some(Ok(Bytes::from(merged.tail()))));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            Poll::Ready(None)
        }));
        Ok(response)
    }

    async fn watch(self, members: Vec<(Arc<ClusterRecord>, View)>) -> Result<Response, ApiError> {
        let versions = self
            .target
            .query
            .first("resourceVersion")
            .filter(|version| !version.is_empty() && *version != "0")
            .map(|version| decode_positions(version, "resourceVersion"))
            .transpose()?
            .unwrap_or_default();
        let timeout = self
            .target
            .query
            .first("timeoutSeconds")
            .and_then(|seconds| seconds.parse::<u64>().ok())
            .map(Duration::from_secs);
        // Positions of clusters outside the fleet are not carried along.
        let mut versions = versions;
        versions.retain(|cluster, _| members.iter().any(|(record, _)| &record.name == cluster));
        // Every cluster's task sends its events here; they are tagged with
        // the composite position in the one order the client sees them, so
        // a position handed out always covers every event sent before it.
        let (sender, receiver) = tokio::sync::mpsc::channel::<Message>(64);
        let fleet = Arc::new(self);
        let mut tasks = Vec::new();
        for (record, view) in members {
            let fleet = fleet.clone();
            let sender = sender.clone();
            let version = versions.get(&record.name).cloned();
            tasks.push(tokio::spawn(async move {
                fleet.watch_one(record, view, version, sender).await;
            }));
        }
        drop(sender);
        let merge = Merge {
            _open: crate::telemetry::GaugeGuard::new(&fleet.state.metrics.open_streams),
            receiver,
            _tasks: AbortOnDrop(tasks),
            until: timeout.map(|timeout| tokio::time::Instant::now() + timeout),
            positions: versions,
            columns_sent: false,
            ended: false,
        };
        let stream = futures::stream::unfold(merge, |mut merge| async move {
            let bytes = merge.next().await?;
            Some((Ok::<_, std::io::Error>(bytes), merge))
        });
        let mut response = Body::from_stream(stream).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(response)
    }

    /// One cluster's watch, again and again from its last position, each
    /// event sent on to the merge.
    async fn watch_one(
        &self,
        record: Arc<ClusterRecord>,
        view: View,
        mut version: Option<String>,
        sender: tokio::sync::mpsc::Sender<Message>,
    ) {
        let cluster: Arc<str> = Arc::from(record.name.as_str());
        let mut backoff = Duration::from_millis(200);
        loop {
            let versions: BTreeMap<String, String> = version
                .iter()
                .map(|version| (record.name.clone(), version.clone()))
                .collect();
            let query = self.query_for(&record.name, None, Some(&versions));
            let query = if view == View::Some {
                query.map(|query| views::include_row_metadata(&query).unwrap_or(query))
            } else {
                query
            };
            // A watch's headers may come late from a busy cluster (after the
            // initial events): the proxy's own header timeout, not the
            // list deadline.
            let header_timeout = self.state.settings.timeouts.response_header();
            match self
                .request(&record, query, Route::Stream, header_timeout)
                .await
            {
                Ok((response, lease, connector)) if response.status().is_success() => {
                    let namespaces =
                        if view == View::Some && self.state.policy.reads_namespace_labels() {
                            self.state.views.namespaces.of(&connector).await
                        } else {
                            None
                        };
                    let mut filter = (view == View::Some).then(|| {
                        views::filter::WatchFilter::new(
                            self.judge(&record, namespaces),
                            self.strips_row_objects(),
                        )
                    });
                    let mut body = response.into_body();
                    let mut pending = Vec::new();
                    // Bytes of `pending` known to hold no line end.
                    let mut searched = 0;
                    let _lease = lease;
                    'stream: while let Some(frame) = body.frame().await {
                        let Ok(frame) = frame else { break };
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        // The merged watch has ended (its client left).
                        if sender.is_closed() {
                            return;
                        }
                        match &mut filter {
                            Some(filter) => {
                                if let Err(error) = filter.feed(&data, &mut pending) {
                                    tracing::warn!(cluster = %record.name, %error, "fleet watch stream unreadable; watching again");
                                    break;
                                }
                            }
                            None => pending.extend_from_slice(&data),
                        }
                        while let Some(end) = memchr::memchr(b'\n', &pending[searched..]) {
                            let line: Vec<u8> = pending.drain(..=searched + end).collect();
                            searched = 0;
                            match read_event(&line) {
                                Read::Event(position) => {
                                    if let Some(position) = position {
                                        version = Some(position);
                                    }
                                    // A stream that delivers is healthy again.
                                    backoff = Duration::from_millis(200);
                                    let message = Message::Event(cluster.clone(), line);
                                    if sender.send(message).await.is_err() {
                                        return;
                                    }
                                }
                                Read::Expired => {
                                    let _ = sender.send(Message::Expired(cluster.clone())).await;
                                    return;
                                }
                                // Another error ends this stream: watch again.
                                Read::Error => break 'stream,
                                Read::Unreadable => {}
                            }
                        }
                        searched = pending.len();
                        if pending.len() > views::scan::MAX_VALUE {
                            tracing::warn!(cluster = %record.name, error = %views::scan::ScanError::TooLarge, "fleet watch stream unreadable; watching again");
                            break;
                        }
                    }
                }
                Ok((response, _, _)) if response.status() == StatusCode::GONE => {
                    let _ = sender.send(Message::Expired(cluster.clone())).await;
                    return;
                }
                Ok((response, _, _))
                    if response.status().is_client_error()
                        && response.status() != StatusCode::TOO_MANY_REQUESTS =>
                {
                    // The cluster refuses this watch (no such resource, not
                    // allowed): asking again would not change its mind.
                    tracing::warn!(cluster = %record.name, status = %response.status(), "fleet watch refused; not asked again");
                    return;
                }
                Ok((response, _, _)) => {
                    tracing::warn!(cluster = %record.name, status = %response.status(), "fleet watch failed");
                }
                Err(error) => {
                    tracing::warn!(cluster = %record.name, error = %error.1, "fleet watch failed");
                }
            }
            if sender.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

/// What a cluster's watch task sends to the merge.
enum Message {
    /// One event line, as the cluster (or the view's filter) gave it.
    Event(Arc<str>, Vec<u8>),
    /// The cluster no longer has the position asked for.
    Expired(Arc<str>),
}

/// The merged watch: events in the order they are sent, each carrying the
/// composite position after it.
struct Merge {
    /// Counts the merged watch as one open stream.
    _open: crate::telemetry::GaugeGuard,
    receiver: tokio::sync::mpsc::Receiver<Message>,
    _tasks: AbortOnDrop,
    until: Option<tokio::time::Instant>,
    positions: BTreeMap<String, String>,
    columns_sent: bool,
    ended: bool,
}

impl Merge {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.ended {
                return None;
            }
            let message = match self.until {
                Some(until) => tokio::time::timeout_at(until, self.receiver.recv())
                    .await
                    .ok()
                    .flatten(),
                None => self.receiver.recv().await,
            }?;
            match message {
                Message::Event(cluster, line) => {
                    if let Some(bytes) =
                        tag_event(&line, &cluster, &mut self.positions, &mut self.columns_sent)
                    {
                        return Some(Bytes::from(bytes));
                    }
                }
                Message::Expired(cluster) => {
                    // The client must list again, as an informer does.
                    self.ended = true;
                    let status = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                        "metadata": {}, "status": "Failure", "code": 410, "reason": "Expired",
                        "details": {"name": &*cluster, "kind": "cluster"},
                        "message": format!("cluster {cluster}: the resourceVersion is too old; list again")}});
                    return Some(Bytes::from(format!("{status}\n")));
                }
            }
        }
    }
}

/// What one line of a cluster's watch is.
enum Read {
    /// An event, with the position it brings the cluster to.
    Event(Option<String>),
    /// A 410 `Expired` error: the position is gone.
    Expired,
    /// Another error event.
    Error,
    Unreadable,
}

fn read_event(line: &[u8]) -> Read {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type")]
        kind: String,
        #[serde(borrow)]
        object: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Object {
        code: Option<u16>,
        kind: Option<String>,
        metadata: Option<Metadata>,
        rows: Option<Vec<Row>>,
    }
    #[derive(serde::Deserialize)]
    struct Row {
        object: Option<Object>,
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(rename = "resourceVersion")]
        resource_version: Option<String>,
    }
    let Ok(head) = serde_json::from_slice::<Head>(line) else {
        return Read::Unreadable;
    };
    let object = head
        .object
        .and_then(|object| serde_json::from_str::<Object>(object.get()).ok());
    if head.kind == "ERROR" {
        return match object.and_then(|object| object.code) {
            Some(410) => Read::Expired,
            _ => Read::Error,
        };
    }
    let Some(object) = object else {
        return Read::Unreadable;
    };
    let from_row = || {
        object
            .rows
            .as_ref()?
            .first()?
            .object
            .as_ref()?
            .metadata
            .as_ref()?
            .resource_version
            .clone()
    };
    let position = if object.kind.as_deref() == Some("Table") {
        from_row().or_else(|| object.metadata.as_ref()?.resource_version.clone())
    } else {
        object
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.resource_version.clone())
    };
    Read::Event(position)
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// One watch event of `cluster`, tagged with it and carrying the composite
/// position; `None` for a line that is not an event.
fn tag_event(
    line: &[u8],
    cluster: &str,
    positions: &mut BTreeMap<String, String>,
    columns_sent: &mut bool,
) -> Option<Vec<u8>> {
    let mut event: Value = serde_json::from_slice(line).ok()?;
    let kind = event.get("type")?.as_str()?.to_owned();
    if kind == "ERROR" {
        return None;
    }
    let object = event.get_mut("object")?;
    let table = object.get("kind").and_then(Value::as_str) == Some("Table");
    let version = if table {
        object
            .pointer("/rows/0/object/metadata/resourceVersion")
            .or_else(|| object.pointer("/metadata/resourceVersion"))
    } else {
        object.pointer("/metadata/resourceVersion")
    }
    .and_then(Value::as_str)
    .map(str::to_owned);
    if let Some(version) = version {
        positions.insert(cluster.to_owned(), version);
    }
    let composite = encode_positions(positions);
    if table {
        let first = !std::mem::replace(columns_sent, true);
        if first {
            if let Some(columns) = object
                .get_mut("columnDefinitions")
                .and_then(Value::as_array_mut)
            {
                columns.insert(0, cluster_column());
            }
        } else {
            object["columnDefinitions"] = Value::Null;
        }
        if let Some(rows) = object.get_mut("rows").and_then(Value::as_array_mut) {
            for row in rows {
                tag_row(row, cluster);
                if let Some(metadata) = row.pointer_mut("/object/metadata") {
                    metadata["resourceVersion"] = Value::from(composite.clone());
                }
            }
        }
        object["metadata"]["resourceVersion"] = Value::from(composite);
    } else {
        if kind != "BOOKMARK" {
            annotate(object, cluster);
        }
        object["metadata"]["resourceVersion"] = Value::from(composite);
    }
    let mut bytes = serde_json::to_vec(&event).ok()?;
    bytes.push(b'\n');
    Some(bytes)
}

/// What a fleet `continue` token holds (sealed): where each cluster with
/// more to give goes on, and the positions of the pages before, so that the
/// last page's `resourceVersion` covers every cluster of the list.
#[derive(serde::Serialize, serde::Deserialize)]
struct Continuation {
    #[serde(rename = "c")]
    continues: BTreeMap<String, String>,
    #[serde(rename = "v")]
    versions: BTreeMap<String, String>,
}

impl Head {
    fn record(&self) -> &ClusterRecord {
        match self {
            Head::Answered { record, .. } | Head::Failed { record, .. } => record,
        }
    }
}

/// What one cluster's [`ListReader`] hands the merged list, in order.
enum Part {
    /// A top-level member other than the array and `metadata` (a `Table`'s
    /// `columnDefinitions` with the `Cluster` column first).
    Member(String, Vec<u8>),
    /// The list's own `metadata`: the cluster's position and `continue`.
    Metadata {
        version: Option<String>,
        continues: Option<String>,
    },
    /// The array (`items`, or a `Table`'s `rows`) begins.
    Open(String),
    /// Elements of the array, tagged, comma-separated, after one byte
    /// that the merged list makes the separator from what came before.
    Elements(Vec<u8>),
    /// The cluster's answer ended: with how many elements written, and
    /// whether whole.
    End {
        written: usize,
        outcome: Result<(), (u16, String)>,
    },
    /// The reader is gone (after `End`, or without it).
    Closed,
}

/// Reads one cluster's list, cut into [`Part`]s with every element tagged
/// (and judged, under a partial view), into a short queue.
struct ListReader {
    tagger: tag::Tagger,
    judge: Option<Box<views::ObjectJudge>>,
    strip_row_objects: bool,
    deadline: Duration,
}

impl ListReader {
    async fn read(
        self,
        body: crate::upstream::UpstreamBody,
        parts: tokio::sync::mpsc::Sender<Part>,
    ) {
        let mut splitter = views::filter::ListSplitter::reading_members();
        let mut body = std::pin::pin!(body);
        let until = tokio::time::Instant::now() + self.deadline;
        let mut rows = false;
        let mut written = 0usize;
        let outcome: Result<(), (u16, String)> = loop {
            let frame = match tokio::time::timeout_at(until, body.as_mut().frame()).await {
                Err(_) => {
                    break Err((
                        504,
                        format!(
                            "the list was not read within {:.1} s",
                            self.deadline.as_secs_f64()
                        ),
                    ))
                }
                Ok(None) => break splitter.finish().map_err(|error| (502, error.to_string())),
                Ok(Some(Err(error))) => break Err((502, format!("reading the list: {error}"))),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let mut cut = Vec::new();
            // Each run of elements begins with a byte the merged list makes
            // its separator (a comma, or a space before its first element),
            // so that it is passed on without a copy.
            // Room for the chunk's elements and their tags, so that it is
            // rarely grown.
            let mut elements = Vec::with_capacity(data.len() + data.len() / 8 + 256);
            elements.push(b' ');
            let fed = splitter.feed(&data, &mut |piece| {
                use views::filter::Piece;
                let part = match piece {
                    Piece::Element(element, found) => {
                        let mark = elements.len();
                        if mark > 1 {
                            elements.push(b',');
                        }
                        let tagged = self.tagger.element(
                            element,
                            found,
                            rows,
                            self.judge.as_deref(),
                            self.strip_row_objects,
                            &mut elements,
                        );
                        if tagged == tag::Tagged::Written {
                            written += 1;
                        } else {
                            elements.truncate(mark);
                        }
                        return Ok(());
                    }
                    Piece::Member("metadata", value) => {
                        #[derive(serde::Deserialize)]
                        struct ListMeta {
                            #[serde(rename = "resourceVersion")]
                            version: Option<String>,
                            #[serde(rename = "continue")]
                            continues: Option<String>,
                        }
                        let metadata = serde_json::from_slice::<ListMeta>(value).ok();
                        let (version, continues) = metadata
                            .map(|metadata| (metadata.version, metadata.continues))
                            .unwrap_or_default();
                        Part::Metadata {
                            version,
                            continues: continues.filter(|token| !token.is_empty()),
                        }
                    }
                    Piece::Member(key, value) => {
                        let value = if key == "columnDefinitions" {
                            let mut columns: Value =
                                serde_json::from_slice(value).unwrap_or(Value::Null);
                            if let Some(columns) = columns.as_array_mut() {
                                columns.insert(0, tag::cluster_column());
                            }
                            serde_json::to_vec(&columns).expect("a value serializes")
                        } else {
                            value.to_vec()
                        };
                        Part::Member(key.to_owned(), value)
                    }
                    Piece::ArrayOpen(key) => {
                        rows = key == "rows";
                        Part::Open(key.to_owned())
                    }
                    Piece::ArrayClose | Piece::Close => return Ok(()),
                };
                if elements.len() > 1 {
                    cut.push(Part::Elements(std::mem::replace(&mut elements, vec![b' '])));
                }
                cut.push(part);
                Ok(())
            });
            if elements.len() > 1 {
                cut.push(Part::Elements(elements));
            }
            for part in cut {
                if parts.send(part).await.is_err() {
                    return;
                }
            }
            if let Err(error) = fed {
                break Err((502, error.to_string()));
            }
        };
        let _ = parts.send(Part::End { written, outcome }).await;
    }
}

/// One cluster of a merged list, as its parts arrive.
struct Member {
    name: String,
    /// Its members before its array, the list's head if its array is the
    /// first to open.
    before: Vec<(String, Vec<u8>)>,
    opened: bool,
    /// It answered a list of another shape than the first cluster's.
    mismatched: bool,
    ended: bool,
}

impl Member {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            before: Vec::new(),
            opened: false,
            mismatched: false,
            ended: false,
        }
    }
}

/// The merged list, written as the clusters' parts arrive: the first
/// cluster whose array opens gives the head (`kind`, `apiVersion`, a
/// `Table`'s columns with `Cluster` first), every cluster its tagged
/// elements, and the end carries the composite `metadata` and the
/// `clusters` stanza.
struct MergedList {
    clusters: Vec<Member>,
    /// The cluster whose answer gave the head, and its members that came
    /// after its array (JSON does not fix the order of members), written at
    /// the end.
    head_cluster: Option<usize>,
    late: Vec<(String, Vec<u8>)>,
    /// The array of the merged list (`items` or `rows`), once opened.
    array: Option<String>,
    elements: usize,
    versions: BTreeMap<String, String>,
    continues: BTreeMap<String, String>,
    stanza: Vec<(String, Value)>,
    seal: views::filter::SealContinue,
}

impl MergedList {
    fn new(earlier_versions: BTreeMap<String, String>, seal: views::filter::SealContinue) -> Self {
        Self {
            clusters: Vec::new(),
            head_cluster: None,
            late: Vec::new(),
            array: None,
            elements: 0,
            versions: earlier_versions,
            continues: BTreeMap::new(),
            stanza: Vec::new(),
            seal,
        }
    }

    fn failed(&mut self, cluster: &str, status: u16, message: &str) {
        self.stanza.push((
            cluster.to_owned(),
            json!({"name": cluster, "status": "Failure", "code": status, "message": message}),
        ));
    }

    /// Takes one part of cluster `index`; what to write next.
    fn take(&mut self, index: usize, part: Part) -> Vec<u8> {
        let mut out = Vec::new();
        match part {
            Part::Metadata { version, continues } => {
                let name = &self.clusters[index].name;
                if let Some(version) = version {
                    self.versions.insert(name.clone(), version);
                }
                if let Some(token) = continues {
                    self.continues.insert(name.clone(), token);
                }
            }
            Part::Member(key, value) => {
                let cluster = &mut self.clusters[index];
                if !cluster.opened {
                    cluster.before.retain(|(existing, _)| *existing != key);
                    cluster.before.push((key, value));
                } else if self.head_cluster == Some(index)
                    && !cluster.before.iter().any(|(existing, _)| *existing == key)
                    && !self.late.iter().any(|(existing, _)| *existing == key)
                {
                    self.late.push((key, value));
                }
            }
            Part::Open(key) => {
                let cluster = &mut self.clusters[index];
                cluster.opened = true;
                match &self.array {
                    None => {
                        self.head_cluster = Some(index);
                        let head = cluster.before.clone();
                        self.open(&head, &key, &mut out);
                    }
                    Some(array) if *array != key => cluster.mismatched = true,
                    Some(_) => {}
                }
            }
            Part::Elements(mut bytes) => {
                let cluster = &self.clusters[index];
                if cluster.opened && !cluster.mismatched && self.array.is_some() {
                    // Its first byte is the separator's place.
                    if self.elements > 0 {
                        bytes[0] = b',';
                    }
                    self.elements += 1;
                    out = bytes;
                }
            }
            Part::End { written, outcome } => {
                let name = self.clusters[index].name.clone();
                self.clusters[index].ended = true;
                match (outcome, self.clusters[index].mismatched) {
                    (_, true) => self.failed(&name, 502, "answered in another format"),
                    (Ok(()), false) => self
                        .stanza
                        .push((name.clone(), json!({"name": name, "status": "Success"}))),
                    (Err((status, message)), false) => {
                        let message = format!("{message} (after {written} items)");
                        self.failed(&name, status, &message);
                    }
                }
            }
            Part::Closed => {
                if !self.clusters[index].ended {
                    let name = self.clusters[index].name.clone();
                    self.clusters[index].ended = true;
                    self.failed(&name, 502, "reading the list stopped");
                }
            }
        }
        out
    }

    /// Writes the head and opens the array.
    fn open(&mut self, head: &[(String, Vec<u8>)], key: &str, out: &mut Vec<u8>) {
        out.push(b'{');
        for (name, value) in head {
            serde_json::to_writer(&mut *out, name).expect("a string serializes");
            out.push(b':');
            out.extend_from_slice(value);
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key).expect("a string serializes");
        out.extend_from_slice(b":[");
        self.array = Some(key.to_owned());
    }

    /// Closes the array and the list.
    fn tail(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.array.is_none() {
            let head = [
                ("kind".to_owned(), b"\"List\"".to_vec()),
                ("apiVersion".to_owned(), b"\"v1\"".to_vec()),
            ];
            self.open(&head, "items", &mut out);
        }
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            "resourceVersion".into(),
            Value::from(encode_positions(&self.versions)),
        );
        if !self.continues.is_empty() {
            let continuation = Continuation {
                continues: std::mem::take(&mut self.continues),
                versions: self.versions.clone(),
            };
            let plaintext = serde_json::to_string(&continuation).expect("a map serializes");
            metadata.insert("continue".into(), Value::from((self.seal)(&plaintext)));
        }
        out.push(b']');
        for (name, value) in &self.late {
            out.push(b',');
            serde_json::to_writer(&mut out, name).expect("a string serializes");
            out.push(b':');
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b",\"metadata\":");
        serde_json::to_writer(&mut out, &metadata).expect("a map serializes");
        // The clusters by name, whichever answered first.
        self.stanza.sort_by(|a, b| a.0.cmp(&b.0));
        let stanza: Vec<&Value> = self.stanza.iter().map(|(_, entry)| entry).collect();
        out.extend_from_slice(b",\"clusters\":");
        serde_json::to_writer(&mut out, &stanza).expect("a list serializes");
        out.push(b'}');
        out
    }
}

/// A kubeconfig for the fleet view over every cluster matching the glob.
#[utoipa::path(get, path = "/api/kubernetes/fleet/{clusterGlob}/kubeconfig", tag = "proxy",
    params(("clusterGlob" = String, Path, description = "Cluster names, with `*` and `?` wildcards, e.g. `prod-*`")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A kubeconfig (YAML) whose server is the fleet view; set your portal token with `kubectl config set-credentials kubeportal --token=…`", body = Object, content_type = "application/yaml"),
        (status = 400, description = "Invalid glob", body = crate::error::ErrorResponse),
        (status = 401, description = "No valid identity", body = crate::error::ErrorResponse),
        (status = 403, description = "kubernetes.clusters.read denied", body = crate::error::ErrorResponse),
    ))]
pub async fn fleet_kubeconfig(
    State(state): State<ProxyState>,
    caller: Caller,
    crate::extract::Path(glob_text): crate::extract::Path<String>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.policy.check(
        &caller,
        crate::permissions::Permission::ClustersRead,
        &Target::none(),
    )?;
    cluster_glob(&glob_text)?;
    let name = format!("fleet-{glob_text}");
    // `?` would start the query of the server URL.
    let glob_text = glob_text.replace('?', "%3F");
    super::kubeconfig::document(
        &state,
        &uri,
        &headers,
        &name,
        &format!("/api/kubernetes/fleet/{glob_text}/proxy"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_is_compiled_once_and_matches_names_without_regard_to_case() {
        let first = cluster_glob("prod-*").unwrap();
        assert!(Arc::ptr_eq(&first, &cluster_glob("prod-*").unwrap()));
        assert!(first.is_match("prod-eu") && first.is_match("PROD-us"));
        assert!(!first.is_match("staging-eu"));
        let one = cluster_glob("prod-?").unwrap();
        assert!(one.is_match("prod-a") && !one.is_match("prod-ab"));
        // What is refused is refused every time, and never kept.
        for text in [
            "",
            ".",
            "..",
            "prod/*",
            "prod-[ab]",
            "{a,b}",
            &"a".repeat(254),
        ] {
            assert!(cluster_glob(text).is_err(), "{text}");
            assert!(cluster_glob(text).is_err(), "{text}");
        }
    }

    #[test]
    fn discovery_is_the_documents_kubectl_reads_first() {
        for path in [
            "/api",
            "/api/",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/openapi/v2",
            "/openapi/v3",
            "/openapi/v3/apis/apps/v1",
        ] {
            assert!(is_discovery(path), "{path}");
        }
        for path in [
            "/",
            "/healthz",
            "/livez",
            "/metrics",
            "/logs/",
            "/debug/pprof/",
            "/openapi",
            "/apis/apps/v1/deployments",
            "/versions",
        ] {
            assert!(!is_discovery(path), "{path}");
        }
    }
}
