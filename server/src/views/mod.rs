//! Tenant views: lists and watches that show a caller only the objects the
//! policy grants, for callers whose rules grant part of a kind (some
//! namespaces, some names, objects or namespaces with some labels).
//!
//! The cluster is asked with the cluster's credential, and the response is
//! filtered object by object as it streams ([`filter`]). Only reads are
//! filtered: `get`, `list` and `watch` of a resource without a subresource.
//! Everything else is allowed or denied whole, as before.

pub mod filter;
mod namespaces;
pub mod scan;

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT};
use http::{HeaderMap, Method};
use http_body_util::BodyExt;

use crate::identity::Caller;
use crate::kubernetes::RequestAttributes;
use crate::permissions::{Facts, Labels, ObjectFacts, ObjectRules, Policy, ProxyTarget, Target};

pub use filter::{judged_object, Judge, ObjectMeta};
pub use namespaces::{NamespaceLabels, Namespaces};

pub use crate::permissions::is_object_read as filterable;

/// Whether the resource is `namespaces` (core group), whose objects are
/// their own namespace.
pub fn is_namespace_kind(attributes: &RequestAttributes) -> bool {
    attributes.resource.as_deref() == Some("namespaces")
        && attributes
            .api_group
            .as_deref()
            .unwrap_or_default()
            .is_empty()
}

/// Judges the objects of one request for one caller.
pub struct ObjectJudge {
    policy: Arc<Policy>,
    cluster: String,
    method: Method,
    path: String,
    attributes: RequestAttributes,
    /// The read is of namespaces, whose own name is their namespace.
    namespace_kind: bool,
    /// The cluster's namespaces, when the policy reads their labels.
    namespaces: Option<Namespaces>,
    /// The rules that can decide, chosen once.
    rules: ObjectRules,
    /// When the namespace alone decides: the last namespace judged and
    /// whether its objects are shown (lists come ordered by namespace).
    last: std::sync::Mutex<Option<(String, bool)>>,
}

/// What an [`ObjectJudge`] judges for.
pub struct JudgedRead {
    pub cluster: String,
    pub method: Method,
    pub path: String,
    pub attributes: RequestAttributes,
}

struct NoLabels;

impl Labels for NoLabels {
    fn label(&self, _: &str) -> Option<&str> {
        None
    }
}

impl ObjectJudge {
    /// A judge of the objects `read` returns to `caller`; `namespaces`
    /// when the policy reads their labels.
    pub fn new(
        policy: Arc<Policy>,
        caller: &Caller,
        read: JudgedRead,
        namespaces: Option<Namespaces>,
    ) -> Self {
        let JudgedRead {
            cluster,
            method,
            path,
            attributes,
        } = read;
        let rules = policy.object_rules(
            caller,
            &Target {
                cluster: Some(&cluster),
                proxy: Some(ProxyTarget {
                    method: &method,
                    path: &path,
                    attributes: std::borrow::Cow::Borrowed(&attributes),
                }),
                impersonation: None,
            },
        );
        Self {
            policy,
            cluster,
            method,
            path,
            namespace_kind: is_namespace_kind(&attributes),
            attributes,
            namespaces,
            rules,
            last: std::sync::Mutex::new(None),
        }
    }

    /// The namespace an object is judged by: a namespace's own name.
    fn namespace_of<'o>(&self, object: &'o ObjectMeta<'_>) -> Option<&'o str> {
        if self.namespace_kind {
            Some(object.name.as_ref())
        } else {
            object.namespace.as_deref()
        }
    }

    fn judge(&self, object: &ObjectMeta<'_>) -> bool {
        let namespace_kind = self.namespace_kind;
        let own_labels: &dyn Labels = match &object.labels {
            Some(labels) => labels,
            None => &NoLabels,
        };
        let namespace = self.namespace_of(object);
        let namespace_object = match (&self.namespaces, namespace) {
            (Some(namespaces), Some(namespace)) if !namespace_kind => namespaces.get(namespace),
            _ => None,
        };
        let namespace_labels: Option<&dyn Labels> = if namespace_kind {
            Some(own_labels)
        } else {
            namespace_object
                .as_ref()
                .map(|namespace| match &namespace.metadata.labels {
                    Some(labels) => labels as &dyn Labels,
                    None => &NoLabels,
                })
        };
        let target = Target {
            cluster: Some(&self.cluster),
            proxy: Some(ProxyTarget {
                method: &self.method,
                path: &self.path,
                attributes: std::borrow::Cow::Borrowed(&self.attributes),
            }),
            impersonation: None,
        };
        let facts = Facts {
            object: Some(ObjectFacts {
                namespace,
                name: &object.name,
                labels: own_labels,
            }),
            namespace_labels,
        };
        self.policy.allows_object_by(&self.rules, &target, &facts)
    }
}

impl Judge for ObjectJudge {
    fn visible(&self, object: &ObjectMeta<'_>) -> bool {
        if !self.rules.by_namespace() {
            return self.judge(object);
        }
        // The namespace alone decides: an object of the namespace judged
        // last is judged alike.
        let Some(namespace) = self.namespace_of(object) else {
            return self.judge(object);
        };
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((judged, shown)) = last.as_ref() {
            if judged == namespace {
                return *shown;
            }
        }
        let shown = self.judge(object);
        *last = Some((namespace.to_owned(), shown));
        shown
    }
}

/// A namespace's labels, as the policy reads them (none: no labels).
pub fn labels_of(namespace: &k8s_openapi::api::core::v1::Namespace) -> &dyn Labels {
    match &namespace.metadata.labels {
        Some(labels) => labels,
        None => &NoLabels,
    }
}

/// A query asking for `Table` rows without their objects, rewritten to ask
/// for their metadata (which the filter judges, then removes); `None` when
/// it does not ask that.
pub fn include_row_metadata(query: &str) -> Option<String> {
    let mut changed = false;
    let rewritten: Vec<&str> = query
        .split('&')
        .map(|pair| {
            if pair == "includeObject=None" {
                changed = true;
                "includeObject=Metadata"
            } else {
                pair
            }
        })
        .collect();
    changed.then(|| rewritten.join("&"))
}

/// The most of one object held to judge it (the API server's own limit on
/// an object is about 1.5 MB in etcd).
pub const OBJECT_LIMIT: usize = 8 * 1024 * 1024;

/// A cluster's error answer to a filtered read, as sent on: a `Status` of
/// its code, and of what the cluster sent only its reason and message (an
/// error body could hold anything, objects included). A list's or watch's
/// token to go on from (an expired page's 410 offers one, holding the key
/// of the object the caller's page was cut at) is sealed by `seal`.
pub fn error_status(
    code: http::StatusCode,
    body: &[u8],
    seal: &(dyn Fn(&str) -> String + Send),
) -> Vec<u8> {
    #[derive(Default, serde::Deserialize)]
    #[serde(default)]
    struct Read {
        reason: Option<String>,
        message: Option<String>,
        metadata: Option<ReadMetadata>,
    }
    #[derive(Default, serde::Deserialize)]
    #[serde(default)]
    struct ReadMetadata {
        #[serde(rename = "continue")]
        token: Option<String>,
    }
    let read: Read = serde_json::from_slice(body).unwrap_or_default();
    let message = told_message(code, read.reason.as_deref(), read.message);
    let mut metadata = serde_json::Map::new();
    if let Some(token) = read
        .metadata
        .and_then(|metadata| metadata.token)
        .filter(|token| !token.is_empty())
    {
        metadata.insert("continue".into(), serde_json::Value::from(seal(&token)));
    }
    let mut status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": metadata,
        "status": "Failure",
        "message": message,
        "code": code.as_u16(),
    });
    if let Some(reason) = read.reason {
        status["reason"] = serde_json::Value::from(reason);
    }
    serde_json::to_vec(&status).expect("a JSON value always serialises")
}

/// What of a cluster's error message a caller with a partial view is told:
/// the message itself only for errors about the request (its credential,
/// its parameters, its page, the cluster's load), which name nothing the
/// caller did not send. Any other (an internal error, say, which can name
/// the storage key of an object it could not read) is told by its code.
pub fn told_message(
    code: http::StatusCode,
    reason: Option<&str>,
    message: Option<String>,
) -> String {
    const ABOUT_THE_REQUEST: [&str; 11] = [
        "Unauthorized",
        "Forbidden",
        "BadRequest",
        "NotAcceptable",
        "UnsupportedMediaType",
        "MethodNotAllowed",
        "Expired",
        "Gone",
        "Timeout",
        "ServerTimeout",
        "TooManyRequests",
    ];
    match (reason, message) {
        (Some(reason), Some(message)) if ABOUT_THE_REQUEST.contains(&reason) => message,
        _ => format!("the cluster answered {code}"),
    }
}

/// The size a cluster's token is padded to a multiple of before it is
/// sealed: the API server's token for the longest key (a 63-byte namespace
/// and a 253-byte name) fits within the first.
const TOKEN_PADDING: usize = 768;

/// `continue` tokens of filtered lists, sealed: a cluster's token names the
/// last object of its page (the API server's holds its key), which the
/// caller may not be allowed to see. A sealed token is bound to the cluster
/// and the caller it was given to.
#[derive(Clone)]
pub struct ContinueTokens {
    secrets: crate::secrets::SecretBox,
}

const SEALED_PREFIX: &str = "kp1.";

impl ContinueTokens {
    pub fn new(secrets: crate::secrets::SecretBox) -> Self {
        Self { secrets }
    }

    /// The token a caller gets in place of `token`.
    pub fn seal(&self, scope: &str, subject: &str, token: &str) -> String {
        use base64::Engine;
        let mut plaintext = serde_json::json!([scope, subject, token]).to_string();
        // The cluster's token padded (JSON allows trailing whitespace), so
        // that a sealed token's length does not tell how long the key of the
        // object it was cut at is.
        let unpadded = plaintext.len() - token.len();
        let padded = token.len().max(1).div_ceil(TOKEN_PADDING) * TOKEN_PADDING;
        plaintext.extend(std::iter::repeat_n(
            ' ',
            (unpadded + padded).saturating_sub(plaintext.len()),
        ));
        let sealed = self.secrets.seal(
            crate::secrets::SecretField::ContinueToken,
            &secrecy::SecretString::from(plaintext),
        );
        format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
        )
    }

    /// The token a sealed one stands for, if it was given for this scope to
    /// this caller.
    pub fn open(&self, scope: &str, subject: &str, sealed: &str) -> Option<String> {
        use base64::Engine;
        use secrecy::ExposeSecret;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed.strip_prefix(SEALED_PREFIX)?)
            .ok()?;
        let opened = self
            .secrets
            .open(crate::secrets::SecretField::ContinueToken, &bytes)
            .ok()?;
        let (bound_scope, bound_subject, token): (String, String, String) =
            serde_json::from_str(opened.expose_secret()).ok()?;
        (bound_scope == scope && bound_subject == subject).then_some(token)
    }
}

/// Why a filtered read cannot be served in the format asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct NotAcceptable;

/// The `Accept` a filtered read sends upstream: the caller's JSON media
/// types in their order (protobuf and CBOR cannot be filtered here, and a
/// client that offers JSON after them gets JSON); none: 406.
pub fn json_accept(headers: &HeaderMap) -> Result<HeaderValue, NotAcceptable> {
    let offered: Vec<&str> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(HeaderValue::from_static("application/json"));
    }
    let json: Vec<&str> = offered
        .into_iter()
        .filter(|entry| {
            let media_type = entry.split(';').next().unwrap_or_default().trim();
            media_type.eq_ignore_ascii_case("application/json")
                || media_type == "*/*"
                || media_type.eq_ignore_ascii_case("application/*")
        })
        .collect();
    if json.is_empty() {
        return Err(NotAcceptable);
    }
    HeaderValue::from_str(&json.join(",")).map_err(|_| NotAcceptable)
}

/// A list or a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    List,
    Watch,
}

/// The most of a cluster's response fed to the filter at once: a large
/// piece (an HTTP/1.1 connection hands over as much as it read, up to
/// hundreds of kilobytes) is filtered and sent on in parts of this size,
/// so that what waits for the client stays small.
const FEED: usize = 64 * 1024;

enum Filter {
    List(filter::ListFilter<ObjectJudge>),
    Watch(filter::WatchFilter<ObjectJudge>),
}

/// The filtered body of a list or watch response. The filter runs on its own
/// task, a few chunks ahead of the client: a slow client slows the reading
/// of the cluster's response, and a client that goes away ends it.
/// `keep_alive` (a stream lease, a gauge) lives as long as the task.
pub fn filtered<B>(
    body: B,
    stream: Stream,
    judge: ObjectJudge,
    strip_row_objects: bool,
    seal_continue: Option<filter::SealContinue>,
    keep_alive: impl Send + 'static,
) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display + Send,
{
    let mut filter = match stream {
        Stream::List => Filter::List(
            filter::ListFilter::new(judge, strip_row_objects).sealing_continue(seal_continue),
        ),
        Stream::Watch => Filter::Watch(filter::WatchFilter::new(judge, strip_row_objects)),
    };
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let _keep_alive = keep_alive;
        let mut body = std::pin::pin!(body);
        let cut = |reason: String| {
            tracing::warn!(%reason, "a filtered response was cut short");
            Err(std::io::Error::other(reason))
        };
        loop {
            // A client that goes away ends the read at once, even while
            // nothing it may see arrives.
            let mut body = body.as_mut();
            let frame = tokio::select! {
                frame = body.frame() => frame,
                () = sender.closed() => return,
            };
            let Some(frame) = frame else { break };
            let data = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
                Err(error) => {
                    let _ = sender.send(cut(error.to_string())).await;
                    return;
                }
            };
            for piece in data.chunks(FEED) {
                let mut out = Vec::new();
                let fed = match &mut filter {
                    Filter::List(list) => list.feed(piece, &mut out),
                    Filter::Watch(watch) => watch.feed(piece, &mut out),
                };
                if !out.is_empty() && sender.send(Ok(Bytes::from(out))).await.is_err() {
                    return;
                }
                if let Err(error) = fed {
                    let _ = sender.send(cut(error.to_string())).await;
                    return;
                }
            }
        }
        if let Filter::List(list) = &mut filter {
            if let Err(error) = list.finish() {
                let _ = sender.send(cut(error.to_string())).await;
            }
        }
    });
    Body::from_stream(futures::stream::poll_fn(move |context| {
        receiver.poll_recv(context)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_error_goes_on_as_its_code_reason_and_message_only() {
        let seal = |token: &str| format!("sealed({token})");
        let hidden = serde_json::json!({"kind": "Status", "apiVersion": "v1",
            "metadata": {"continue": "team-b/db-0", "selfLink": "team-b"},
            "status": "Failure", "message": "too old", "reason": "Expired", "code": 410,
            "details": {"name": "db-0", "causes": [{"message": "team-b"}]},
            "items": [{"metadata": {"name": "db-0", "namespace": "team-b"}}]});
        let sent: serde_json::Value = serde_json::from_slice(&error_status(
            http::StatusCode::GONE,
            hidden.to_string().as_bytes(),
            &seal,
        ))
        .unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"kind": "Status", "apiVersion": "v1",
                "metadata": {"continue": "sealed(team-b/db-0)"}, "status": "Failure",
                "message": "too old", "reason": "Expired", "code": 410})
        );
        // Whatever else it is (a list, text, a body naming a field twice):
        // nothing of it but a message of kubeportal's own.
        for body in [
            r#"{"kind":"Status","reason":"InternalError","message":"Internal error occurred: unable to transform key \"/registry/secrets/team-b/db\""}"#,
            r#"{"kind":"PodList","items":[{"metadata":{"namespace":"team-b"}}]}"#,
            "pods team-b/db-0 is broken",
            r#"{"message":"a","message":"team-b"}"#,
        ] {
            let sent: serde_json::Value = serde_json::from_slice(&error_status(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                body.as_bytes(),
                &seal,
            ))
            .unwrap();
            assert!(!sent.to_string().contains("team-b"), "{sent}");
            assert_eq!(sent["code"], 500);
            assert_eq!(sent["kind"], "Status");
        }
    }

    #[test]
    fn sealed_tokens_are_as_long_whatever_key_they_hold() {
        use base64::Engine as _;
        let secrets = crate::secrets::SecretBox::from_base64(
            &base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        )
        .unwrap();
        let tokens = ContinueTokens::new(secrets);
        let token = |key: &str| {
            base64::engine::general_purpose::STANDARD.encode(format!(
                r#"{{"v":"meta.k8s.io/v1","rv":10,"start":"{key}\u0000"}}"#
            ))
        };
        let short = tokens.seal("dev", "user:default/bob", &token("b/w"));
        let long = tokens.seal(
            "dev",
            "user:default/bob",
            &token(&format!("{}/{}", "n".repeat(63), "x".repeat(253))),
        );
        assert_eq!(short.len(), long.len());
        assert_eq!(
            tokens.open("dev", "user:default/bob", &long),
            Some(token(&format!("{}/{}", "n".repeat(63), "x".repeat(253))))
        );
        assert_eq!(
            tokens.open("dev", "user:default/bob", &short),
            Some(token("b/w"))
        );
    }

    fn judge(rules: &str, caller: &str, path: &str) -> ObjectJudge {
        let configs: Vec<crate::permissions::RuleConfig> = serde_saphyr::from_str(rules).unwrap();
        let policy = Arc::new(Policy::new(&configs).unwrap());
        let query = crate::kubernetes::Query::parse(None).unwrap();
        let request =
            crate::kubernetes::KubernetesRequest::parse(&Method::GET, path, query).unwrap();
        ObjectJudge::new(
            policy,
            &Caller::user(caller, Vec::new()),
            JudgedRead {
                cluster: "dev".into(),
                method: Method::GET,
                path: request.path,
                attributes: request.attributes,
            },
            None,
        )
    }

    /// A list handed over in one large piece, as an HTTP/1.1 connection
    /// reads it, is filtered and sent on in parts about as small as
    /// [`FEED`], and whole.
    #[tokio::test]
    async fn a_large_piece_is_filtered_and_sent_on_in_small_parts() {
        use http_body_util::BodyExt;
        let judge = judge(
            r#"
- { permission: kubernetes.proxy, subjects: [user:default/alice], namespaces: ["team-a"], decision: allow }
"#,
            "user:default/alice",
            "/api/v1/pods",
        );
        let items: Vec<serde_json::Value> = (0..4000)
            .map(|index| {
                let namespace = if index % 2 == 0 { "team-a" } else { "team-b" };
                serde_json::json!({
                    "metadata": {"name": format!("p-{index}"), "namespace": namespace},
                    "spec": {"padding": "x".repeat(200)},
                })
            })
            .collect();
        let list = serde_json::to_vec(&serde_json::json!({
            "kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items,
        }))
        .unwrap();
        assert!(list.len() > 8 * FEED);
        let piece = http_body_util::Full::new(Bytes::from(list));
        let mut body = filtered(piece, Stream::List, judge, false, None, ());
        let mut sent = Vec::new();
        while let Some(frame) = body.frame().await {
            let part = frame.unwrap().into_data().unwrap();
            assert!(part.len() <= FEED + 1024, "a part of {} bytes", part.len());
            sent.extend_from_slice(&part);
        }
        let sent: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        let items = sent["items"].as_array().unwrap();
        assert_eq!(items.len(), 2000);
        assert!(items
            .iter()
            .all(|item| item["metadata"]["namespace"] == "team-a"));
    }

    fn meta<'a>(
        namespace: Option<&'a str>,
        name: &'a str,
        pool: Option<&'a str>,
    ) -> ObjectMeta<'a> {
        ObjectMeta {
            name: name.into(),
            namespace: namespace.map(Into::into),
            labels: pool.map(|pool| [("pool".into(), pool.into())].into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn objects_are_judged_alike_whether_or_not_their_namespace_was_judged_before() {
        let by_namespace = judge(
            r#"
- { permission: kubernetes.proxy, subjects: [user:default/alice], namespaces: ["team-a-*"], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/bob], objectSelector: "pool=a", decision: allow }
"#,
            "user:default/alice",
            "/api/v1/pods",
        );
        assert!(by_namespace.rules.by_namespace());
        let seen: Vec<bool> = [
            Some("team-a-dev"),
            Some("team-a-dev"),
            Some("team-b-dev"),
            None,
            Some("team-a-prod"),
            Some("team-b-dev"),
            Some("team-a-dev"),
        ]
        .into_iter()
        .map(|namespace| by_namespace.visible(&meta(namespace, "p", None)))
        .collect();
        assert_eq!(seen, [true, true, false, false, true, false, true]);

        // Rules that read labels: each object is judged by its own.
        let by_labels = judge(
            r#"
- { permission: kubernetes.proxy, subjects: [user:default/bob], objectSelector: "pool=a", decision: allow }
"#,
            "user:default/bob",
            "/api/v1/pods",
        );
        assert!(!by_labels.rules.by_namespace());
        let seen: Vec<bool> = [Some("a"), Some("b"), None, Some("a")]
            .into_iter()
            .map(|pool| by_labels.visible(&meta(Some("shop"), "p", pool)))
            .collect();
        assert_eq!(seen, [true, false, false, true]);

        // A namespace's own name is its namespace.
        let namespaces = judge(
            r#"
- { permission: kubernetes.proxy, subjects: [user:default/alice], namespaces: ["team-a-*"], decision: allow }
"#,
            "user:default/alice",
            "/api/v1/namespaces",
        );
        let seen: Vec<bool> = ["team-a-dev", "team-b-dev", "team-a-prod"]
            .into_iter()
            .map(|name| namespaces.visible(&meta(None, name, None)))
            .collect();
        assert_eq!(seen, [true, false, true]);
    }
}
