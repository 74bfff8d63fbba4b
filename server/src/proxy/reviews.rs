//! The reviews a caller asks about itself, answered by kubeportal on the proxy
//! so they tell the truth about the portal:
//!
//! - `SelfSubjectReview` (`kubectl auth whoami`): the portal identity, without
//!   asking the cluster, which only knows kubeportal's credential.
//! - `SelfSubjectAccessReview` (`kubectl auth can-i VERB RESOURCE`): a read,
//!   never a write. Allowed only where the portal policy allows the asked
//!   request *and* the cluster allows it for the credential kubeportal would
//!   use; the cluster is asked only when the policy allows.
//! - `SelfSubjectRulesReview` (`kubectl auth can-i --list`): the cluster's
//!   rules for that credential, narrowed to what the policy allows. Rules with
//!   wildcards cannot be narrowed exactly and are left out, with `incomplete`.

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};

use super::ProxyState;
use crate::clusters::ClusterRecord;
use crate::error::ApiError;
use crate::identity::Caller;
use crate::kubernetes::{Action, RequestAttributes, RequestAttributesExt};
use crate::permissions::{Decision, Permission, ProxyTarget, Target};
use crate::upstream::{ClusterToken, Route};

/// The largest review body read.
const BODY_LIMIT: usize = 64 * 1024;
/// The most policy checks a rules review makes (verbs x groups x resources x
/// names, rule by rule) before it reports `incomplete` instead: a cluster's
/// answer is untrusted and may be built to be expensive.
const RULE_CHECKS: usize = 10_000;
/// The resource verbs kubeportal can judge; a review of any other (`impersonate`,
/// `escalate`, `bind`, `use`, a verb in capitals) is answered no.
const RESOURCE_VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
/// The verbs of non-resource requests: lower-cased HTTP methods.
const PATH_VERBS: [&str; 7] = ["get", "head", "options", "post", "put", "patch", "delete"];

/// A review kubeportal answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Review {
    WhoAmI,
    Access,
    Rules,
}

impl Review {
    /// The review a request creates, if it is one.
    pub(super) fn of(attributes: &RequestAttributes) -> Option<Review> {
        if !attributes.is_resource_request
            || attributes.verb != "create"
            || attributes.namespace.is_some()
            || attributes.name.is_some()
            || attributes.subresource.is_some()
        {
            return None;
        }
        match (
            attributes.api_group.as_deref()?,
            attributes.resource.as_deref()?,
        ) {
            ("authentication.k8s.io", "selfsubjectreviews") => Some(Review::WhoAmI),
            ("authorization.k8s.io", "selfsubjectaccessreviews") => Some(Review::Access),
            ("authorization.k8s.io", "selfsubjectrulesreviews") => Some(Review::Rules),
            _ => None,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Review::WhoAmI => "SelfSubjectReview",
            Review::Access => "SelfSubjectAccessReview",
            Review::Rules => "SelfSubjectRulesReview",
        }
    }
}

/// What the proxy hands over for a review.
pub(super) struct ReviewRequest<'a> {
    pub review: Review,
    pub caller: &'a Caller,
    pub record: &'a ClusterRecord,
    /// The review request's own canonical path and attributes.
    pub path: &'a str,
    pub attributes: &'a RequestAttributes,
    pub request: Request,
}

/// Whether the caller may ask: a review is a read of one's own access, so
/// the policy judges the review request as a read (an `actions: [read]` rule
/// covers it). Who may see the cluster may also ask who they are and what
/// they may do (the policy answers before the cluster is asked); a rules
/// review always asks the cluster, so only the proxy policy grants it.
fn may_ask(state: &ProxyState, asked: &ReviewRequest<'_>) -> Result<(), ApiError> {
    let mut as_read = asked.attributes.clone();
    as_read.action = Action::Read;
    // A review is about the caller: it spans no namespace and no object, so a
    // deny naming namespaces or names does not cover it.
    as_read.namespace = Some(String::new());
    as_read.name = Some(String::new());
    let target = Target {
        cluster: Some(&asked.record.name),
        proxy: Some(ProxyTarget {
            method: &Method::POST,
            path: asked.path,
            attributes: std::borrow::Cow::Owned(as_read),
        }),
        impersonation: None,
    };
    let explanation = state
        .policy
        .explain(asked.caller, Permission::Proxy, &target);
    if explanation.decision == Decision::Allow {
        if let Some(note) = &asked.caller.note {
            note.set_decision(
                true,
                Some(
                    format!(
                        "a review of the caller's own access, judged as a read: {}",
                        explanation.reason
                    )
                    .into(),
                ),
            );
        }
        return Ok(());
    }
    match asked.review {
        Review::Rules => state.policy.check(asked.caller, Permission::Proxy, &target),
        Review::WhoAmI | Review::Access => state.policy.check(
            asked.caller,
            Permission::ClustersRead,
            &Target::cluster(&asked.record.name),
        ),
    }
}

pub(super) async fn answer(
    state: &ProxyState,
    asked: ReviewRequest<'_>,
) -> Result<Response, ApiError> {
    may_ask(state, &asked)?;
    let ReviewRequest {
        review,
        caller,
        record,
        attributes,
        request,
        ..
    } = asked;
    // Only once the caller may ask (an unknown cluster and a registered one
    // must read alike until then): reviews are about the portal identity.
    if super::headers::requested_impersonation(request.headers())?.is_some() {
        return Err(ApiError::Input(
            "reviews of one's own identity or access are answered for the portal identity only; drop --as and --as-group".into(),
        ));
    }
    let api_version = format!(
        "{}/{}",
        attributes.api_group.as_deref().unwrap_or_default(),
        attributes.api_version.as_deref().unwrap_or("v1")
    );
    if review == Review::WhoAmI {
        let answer = json!({
            "kind": review.kind(),
            "apiVersion": api_version,
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {
                "username": caller.subject,
                "groups": caller.groups,
                "extra": {"kubeportal.io/cluster": [record.name]},
            }},
        });
        return Ok((StatusCode::CREATED, Json(answer)).into_response());
    }
    let (parts, body) = request.into_parts();
    let body = http_body_util::Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .map_err(|_| {
            ApiError::PayloadTooLarge(format!("a review body is at most {BODY_LIMIT} bytes"))
        })?
        .to_bytes();
    let protobuf = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with(protobuf::MEDIA_TYPE));
    let body = if protobuf {
        protobuf::review_spec(&body, review)
    } else {
        serde_json::from_slice(&body).ok()
    }
    .ok_or_else(|| ApiError::Input(format!("the body is not a {}", review.kind())))?;
    let spec = body
        .get("spec")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::Input(format!("{}: spec is required", review.kind())))?;
    let reviewer = Reviewer {
        state,
        caller,
        record,
        headers: &parts.headers,
    };
    let (spec, status) = match review {
        Review::Access => reviewer.access(spec).await?,
        Review::Rules => reviewer.rules(spec).await?,
        Review::WhoAmI => unreachable!("answered above"),
    };
    let answer = json!({
        "kind": review.kind(),
        "apiVersion": api_version,
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    });
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

fn text<'a>(object: &'a Map<String, Value>, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

struct Reviewer<'a> {
    state: &'a ProxyState,
    caller: &'a Caller,
    record: &'a ClusterRecord,
    headers: &'a HeaderMap,
}

/// The answer of one review: the spec as judged, and the status.
type Answered = (Value, Value);

impl Reviewer<'_> {
    /// The policy's decision on a request with these attributes, and why.
    fn policy_allows(&self, attributes: &RequestAttributes, path_version: &str) -> (bool, String) {
        let (method, path) = if attributes.is_resource_request {
            attributes.method_and_path(path_version)
        } else {
            let method = match attributes.action {
                Action::Read => Method::GET,
                _ => Method::POST,
            };
            (method, String::new())
        };
        let path = if attributes.is_resource_request {
            path
        } else {
            attributes.name.clone().unwrap_or(path)
        };
        let explanation = self.state.policy.explain(
            self.caller,
            Permission::Proxy,
            &Target {
                cluster: Some(&self.record.name),
                proxy: Some(ProxyTarget {
                    method: &method,
                    path: &path,
                    attributes: std::borrow::Cow::Borrowed(attributes),
                }),
                impersonation: None,
            },
        );
        (explanation.decision == Decision::Allow, explanation.reason)
    }

    async fn access(&self, spec: &Map<String, Value>) -> Result<Answered, ApiError> {
        let (judged, attributes, path) = if let Some(asked) =
            spec.get("resourceAttributes").and_then(Value::as_object)
        {
            let fields = [
                "namespace",
                "verb",
                "group",
                "version",
                "resource",
                "subresource",
                "name",
            ];
            let mut judged = Map::new();
            for field in fields {
                if let Some(value) = non_empty(text(asked, field)) {
                    judged.insert(field.to_owned(), json!(value));
                }
            }
            let attributes = RequestAttributes::of_resource(
                text(asked, "verb"),
                text(asked, "group"),
                non_empty(text(asked, "version")),
                non_empty(text(asked, "namespace")),
                text(asked, "resource"),
                non_empty(text(asked, "subresource")),
                non_empty(text(asked, "name")),
            );
            (json!({"resourceAttributes": judged}), attributes, None)
        } else if let Some(asked) = spec.get("nonResourceAttributes").and_then(Value::as_object) {
            let path = text(asked, "path").to_owned();
            let verb = text(asked, "verb");
            (
                json!({"nonResourceAttributes": {"path": path, "verb": verb}}),
                RequestAttributes::of_non_resource(verb),
                Some(path),
            )
        } else {
            return Err(ApiError::Input(
                "SelfSubjectAccessReview: spec needs resourceAttributes or nonResourceAttributes"
                    .into(),
            ));
        };
        let wildcard = [
            Some(attributes.verb.as_str()),
            attributes.api_group.as_deref(),
            attributes.resource.as_deref(),
            attributes.subresource.as_deref(),
            attributes.name.as_deref(),
            attributes.namespace.as_deref(),
            path.as_deref(),
        ]
        .into_iter()
        .flatten()
        .any(|part| part.contains('*'));
        if attributes.verb.is_empty()
            || (attributes.is_resource_request && attributes.resource.as_deref() == Some(""))
        {
            return Err(ApiError::Input(
                "SelfSubjectAccessReview: verb and resource (or path) are required".into(),
            ));
        }
        if wildcard {
            return Ok((
                judged,
                json!({"allowed": false, "reason": "kubeportal answers for one verb on one resource or path; ask without wildcards"}),
            ));
        }
        if let Some(path) = &path {
            // A path the API server reads as a resource request is judged as
            // one when it is requested; asked as a plain path it would be
            // judged by other rules.
            let read = crate::kubernetes::KubernetesRequest::parse_target(&Method::GET, path, None);
            if !read.is_ok_and(|read| !read.attributes.is_resource_request) {
                return Ok((
                    judged,
                    json!({"allowed": false, "reason": "that path names API resources; ask with the verb and resource (kubectl auth can-i VERB RESOURCE)"}),
                ));
            }
        }
        let known_verbs: &[&str] = if attributes.is_resource_request {
            &RESOURCE_VERBS
        } else {
            &PATH_VERBS
        };
        if !known_verbs.contains(&attributes.verb.as_str()) {
            return Ok((
                judged,
                json!({"allowed": false, "reason": format!("kubeportal answers for the verbs {}", known_verbs.join(", "))}),
            ));
        }
        let mut for_policy = attributes.clone();
        if let Some(path) = &path {
            // A non-resource path is judged by its path globs.
            for_policy.name = Some(path.clone());
        }
        let (allowed, reason) = self.policy_allows(&for_policy, "v1");
        if !allowed {
            return Ok((
                judged,
                json!({"allowed": false, "denied": true, "reason": format!("kubeportal's policy denies it ({reason})")}),
            ));
        }
        let body = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": judged,
        });
        let status = self
            .ask_cluster(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                &body,
            )
            .await?;
        Ok((judged, status))
    }

    async fn rules(&self, spec: &Map<String, Value>) -> Result<Answered, ApiError> {
        let namespace = text(spec, "namespace").to_owned();
        let judged = json!({"namespace": namespace});
        let body = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": judged,
        });
        let status = self
            .ask_cluster(
                "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                &body,
            )
            .await?;
        let mut incomplete = status["incomplete"].as_bool().unwrap_or(false);
        // What the cluster spends is the cluster's; what kubeportal spends
        // narrowing it is bounded before any of it is done.
        let mut budget = RULE_CHECKS;
        let mut spend = |cost: usize| match budget.checked_sub(cost) {
            Some(left) => {
                budget = left;
                true
            }
            None => {
                budget = 0;
                false
            }
        };
        let strings = |value: &Value| -> Vec<String> {
            value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let namespace = non_empty(&namespace);
        let empty = Vec::new();
        let mut resource_rules = Vec::new();
        for rule in status["resourceRules"].as_array().unwrap_or(&empty) {
            let mut verbs = strings(&rule["verbs"]);
            let groups = strings(&rule["apiGroups"]);
            let resources = strings(&rule["resources"]);
            let names = strings(&rule["resourceNames"]);
            let all = verbs.iter().chain(&groups).chain(&resources).chain(&names);
            if all.clone().any(|part| part.contains('*')) {
                incomplete = true;
                continue;
            }
            let judged_verbs = verbs.len();
            verbs.retain(|verb| RESOURCE_VERBS.contains(&verb.as_str()));
            incomplete |= verbs.len() < judged_verbs;
            if verbs.is_empty() {
                continue;
            }
            // Every combination is charged, checked or not, before any is
            // walked: the product is what the loops below would cost.
            let cost = [
                verbs.len(),
                groups.len(),
                resources.len(),
                names.len().max(1),
            ]
            .into_iter()
            .try_fold(1usize, usize::checked_mul);
            if !cost.is_some_and(&mut spend) {
                incomplete = true;
                continue;
            }
            let names: Vec<Option<&str>> = if names.is_empty() {
                vec![None]
            } else {
                names.iter().map(|name| Some(name.as_str())).collect()
            };
            for group in &groups {
                for resource in &resources {
                    let (resource, subresource) = match resource.split_once('/') {
                        Some((resource, subresource)) => (resource, Some(subresource)),
                        None => (resource.as_str(), None),
                    };
                    for name in &names {
                        let allowed: Vec<&String> = verbs
                            .iter()
                            .filter(|verb| {
                                let attributes = RequestAttributes::of_resource(
                                    verb,
                                    group,
                                    None,
                                    namespace,
                                    resource,
                                    subresource,
                                    *name,
                                );
                                self.policy_allows(&attributes, "v1").0
                            })
                            .collect();
                        if allowed.is_empty() {
                            continue;
                        }
                        let full = match subresource {
                            Some(subresource) => format!("{resource}/{subresource}"),
                            None => resource.to_owned(),
                        };
                        let mut narrowed =
                            json!({"verbs": allowed, "apiGroups": [group], "resources": [full]});
                        if let Some(name) = name {
                            narrowed["resourceNames"] = json!([name]);
                        }
                        resource_rules.push(narrowed);
                    }
                }
            }
        }
        let mut non_resource_rules = Vec::new();
        for rule in status["nonResourceRules"].as_array().unwrap_or(&empty) {
            let mut verbs = strings(&rule["verbs"]);
            let urls = strings(&rule["nonResourceURLs"]);
            if verbs.iter().chain(&urls).any(|part| part.contains('*')) {
                incomplete = true;
                continue;
            }
            let judged_verbs = verbs.len();
            verbs.retain(|verb| PATH_VERBS.contains(&verb.as_str()));
            incomplete |= verbs.len() < judged_verbs;
            if verbs.is_empty() {
                continue;
            }
            if !verbs.len().checked_mul(urls.len()).is_some_and(&mut spend) {
                incomplete = true;
                continue;
            }
            for url in &urls {
                let allowed: Vec<&String> = verbs
                    .iter()
                    .filter(|verb| {
                        let mut attributes = RequestAttributes::of_non_resource(verb);
                        attributes.name = Some(url.clone());
                        self.policy_allows(&attributes, "v1").0
                    })
                    .collect();
                if !allowed.is_empty() {
                    non_resource_rules.push(json!({"verbs": allowed, "nonResourceURLs": [url]}));
                }
            }
        }
        // Only kubeportal's own words: a cluster's text is not passed on.
        let answer = json!({
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": incomplete,
        });
        let mut status = answer;
        if incomplete {
            status["evaluationError"] = json!(
                "kubeportal left out rules it cannot narrow exactly (wildcards, verbs other than the standard ones, or more than it checks at once); ask kubectl auth can-i VERB RESOURCE"
            );
        }
        Ok((judged, status))
    }

    /// Posts a review to the cluster with the credential kubeportal would use
    /// for this caller, and gives back its `status`; a refusal of the
    /// cluster is passed on.
    async fn ask_cluster(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let connector = self.state.upstreams.connector(self.record)?;
        let caller_token =
            super::headers::caller_cluster_token(self.headers, connector.client_token_header())?
                .map(ClusterToken);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let credential = connector.authorize(
            &mut headers,
            self.caller,
            caller_token,
            &self.state.settings.impersonation,
        )?;
        let mut request = http::Request::builder()
            .method(Method::POST)
            .uri(connector.uri(path, None)?)
            .body(Body::from(body.to_string()))
            .map_err(ApiError::internal)?;
        *request.headers_mut() = headers;
        let (response, _) = connector.send(request, Route::Shared, credential).await?;
        let status = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), 4 << 20)
            .collect()
            .await
            .map_err(|error| {
                ApiError::BadGateway(format!(
                    "cluster {:?} sent an unreadable review: {error}",
                    self.record.name
                ))
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(cluster_refusal(status, &bytes));
        }
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| {
            ApiError::BadGateway(format!(
                "cluster {:?} sent a review that is not JSON",
                self.record.name
            ))
        })?;
        Ok(answer.get("status").cloned().unwrap_or_else(|| json!({})))
    }
}

/// A cluster's own error, passed on with its status and message.
fn cluster_refusal(status: StatusCode, body: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|status| status["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("the cluster answered {status}"));
    match status.as_u16() {
        401 => ApiError::Authentication(message),
        403 => ApiError::Refused(message),
        404 => ApiError::NotFound(message),
        400 | 422 => ApiError::Input(message),
        _ => ApiError::BadGateway(message),
    }
}

/// The review specs in Kubernetes' protobuf encoding, which kubectl's typed
/// clients send: the `k8s\0` envelope (`runtime.Unknown`) around the message,
/// field numbers as in `k8s.io/api/authorization/v1/generated.proto`.
mod protobuf {
    use prost::Message;
    use serde_json::{json, Value};

    use super::Review;

    pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
    const MAGIC: &[u8] = b"k8s\0";

    #[derive(Clone, PartialEq, Message)]
    struct Unknown {
        #[prost(bytes = "vec", optional, tag = "2")]
        raw: Option<Vec<u8>>,
    }

    /// `SelfSubjectAccessReview` and `SelfSubjectRulesReview` alike: the spec
    /// is field 2.
    #[derive(Clone, PartialEq, Message)]
    struct SelfReview {
        #[prost(bytes = "vec", optional, tag = "2")]
        spec: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct AccessSpec {
        #[prost(message, optional, tag = "1")]
        resource_attributes: Option<ResourceAttributes>,
        #[prost(message, optional, tag = "2")]
        non_resource_attributes: Option<NonResourceAttributes>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct ResourceAttributes {
        #[prost(string, optional, tag = "1")]
        namespace: Option<String>,
        #[prost(string, optional, tag = "2")]
        verb: Option<String>,
        #[prost(string, optional, tag = "3")]
        group: Option<String>,
        #[prost(string, optional, tag = "4")]
        version: Option<String>,
        #[prost(string, optional, tag = "5")]
        resource: Option<String>,
        #[prost(string, optional, tag = "6")]
        subresource: Option<String>,
        #[prost(string, optional, tag = "7")]
        name: Option<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct NonResourceAttributes {
        #[prost(string, optional, tag = "1")]
        path: Option<String>,
        #[prost(string, optional, tag = "2")]
        verb: Option<String>,
    }

    #[derive(Clone, PartialEq, Message)]
    struct RulesSpec {
        #[prost(string, optional, tag = "1")]
        namespace: Option<String>,
    }

    /// The review as JSON (`{"spec": …}`), or `None` if it is not one.
    pub fn review_spec(body: &[u8], review: Review) -> Option<Value> {
        let raw = Unknown::decode(body.strip_prefix(MAGIC)?).ok()?.raw?;
        let spec = SelfReview::decode(raw.as_slice())
            .ok()?
            .spec
            .unwrap_or_default();
        let spec = match review {
            Review::Access => {
                let spec = AccessSpec::decode(spec.as_slice()).ok()?;
                let mut json = json!({});
                if let Some(asked) = spec.resource_attributes {
                    json["resourceAttributes"] = json!({
                        "namespace": asked.namespace, "verb": asked.verb, "group": asked.group,
                        "version": asked.version, "resource": asked.resource,
                        "subresource": asked.subresource, "name": asked.name,
                    });
                }
                if let Some(asked) = spec.non_resource_attributes {
                    json["nonResourceAttributes"] = json!({"path": asked.path, "verb": asked.verb});
                }
                json
            }
            Review::Rules => {
                let spec = RulesSpec::decode(spec.as_slice()).ok()?;
                json!({"namespace": spec.namespace})
            }
            Review::WhoAmI => json!({}),
        };
        Some(json!({"spec": spec}))
    }
}
