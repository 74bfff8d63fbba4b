//! The fleet view: one list and one watch of a resource across every cluster
//! whose name matches a glob (`GET /api/kubernetes/fleet/{clusterGlob}/proxy/<path>`).
//!
//! The server merges every cluster's answer: each object carries its cluster
//! in the `kubeportal.io/cluster` annotation, and `continue` and
//! `resourceVersion` are opaque composites of every cluster's own. This
//! module unwraps that into items and events that name their cluster.

use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::stream::WatchEventType;
use crate::{error, path_segment, Client, Error, API};

/// The annotation the fleet view writes on every object: its cluster's name.
pub const FLEET_CLUSTER_ANNOTATION: &str = "kubeportal.io/cluster";

/// How one cluster of the fleet answered a list (the list's `clusters` stanza).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FleetClusterStatus {
    /// The cluster's name.
    pub name: String,
    pub status: FleetClusterState,
    /// For a failure: the HTTP status (the cluster's, or 502 / 504 from kubeportal).
    #[serde(default)]
    pub code: Option<u16>,
    /// For a failure: why.
    #[serde(default)]
    pub message: Option<String>,
}

/// Whether a cluster's part of a fleet list is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FleetClusterState {
    Success,
    /// The cluster failed, was unreachable or missed the deadline: its items are missing.
    Failure,
}

/// One object of a fleet list, with the cluster it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetItem<T> {
    pub cluster: String,
    /// The object as the cluster served it (plus the `kubeportal.io/cluster` annotation).
    pub object: T,
}

/// One page of a fleet list.
#[derive(Debug, Clone)]
pub struct FleetList<T> {
    /// The kind of the merged list, e.g. `PodList`.
    pub kind: String,
    pub api_version: String,
    /// Every matching cluster's items, ordered by cluster name.
    pub items: Vec<FleetItem<T>>,
    /// One entry per cluster asked, ordered by name; check it for partial results.
    pub clusters: Vec<FleetClusterStatus>,
    /// Opaque: pass it to [`Client::fleet_watch`] to see only later changes.
    pub resource_version: String,
    /// Opaque: present when some cluster has more; pass it back for the next page.
    pub continue_token: Option<String>,
}

/// Options of [`Client::fleet_list`].
#[derive(Debug, Clone, Default)]
pub struct FleetListOptions {
    /// At most this many items per cluster (each cluster pages on its own).
    pub limit: Option<u32>,
    /// `continue_token` of the previous page.
    pub continue_token: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

/// Options of [`Client::fleet_watch`].
#[derive(Debug, Clone)]
pub struct FleetWatchOptions {
    /// Start after this position: a `resource_version` from a fleet list or event.
    pub resource_version: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Ask for `BOOKMARK` events (positions without a change).
    pub allow_bookmarks: bool,
    /// Ends each connection after this many seconds; the watch goes on,
    /// reconnecting from its last position.
    pub timeout_seconds: Option<u64>,
    /// The first wait before reconnecting, doubled after each failed attempt.
    pub min_retry_delay: Duration,
    /// The longest wait before reconnecting.
    pub max_retry_delay: Duration,
}

impl Default for FleetWatchOptions {
    fn default() -> Self {
        Self {
            resource_version: None,
            label_selector: None,
            field_selector: None,
            allow_bookmarks: false,
            timeout_seconds: None,
            min_retry_delay: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(30),
        }
    }
}

/// One event of a fleet watch.
#[derive(Debug, Clone)]
pub struct FleetWatchEvent<T> {
    /// `Added`, `Modified`, `Deleted` or `Bookmark` (an `ERROR` event ends the
    /// stream with an [`Error`] instead).
    pub event_type: WatchEventType,
    /// The cluster the object is on; `None` for a bookmark.
    pub cluster: Option<String>,
    pub object: T,
    /// Opaque: a later watch resumed from here misses nothing on any cluster.
    pub resource_version: String,
}

/// The events of a fleet watch; it reconnects by itself and ends only with an
/// error. Dropping it closes the stream.
pub type FleetWatchStream<T> = BoxStream<'static, Result<FleetWatchEvent<T>, Error>>;

type Lines = BoxStream<'static, Result<String, Error>>;

impl Client {
    /// One page of the list of `path` (a Kubernetes list path, e.g.
    /// `/api/v1/pods`, with or without a query) across every cluster whose
    /// name matches `cluster_glob` (`prod-*`, `*`; `*` and `?` wildcards,
    /// case-insensitive) that the caller may read.
    ///
    /// A cluster that fails does not fail the list: it is a
    /// [`FleetClusterState::Failure`] in `clusters` and its items are
    /// missing. kubeportal's own errors (bad glob or continue token,
    /// identity, not a list) are [`Error::Portal`].
    pub async fn fleet_list<T>(
        &self,
        cluster_glob: &str,
        path: &str,
        options: &FleetListOptions,
    ) -> Result<FleetList<T>, Error>
    where
        T: DeserializeOwned,
    {
        let mut query: Vec<(&'static str, String)> = Vec::new();
        if let Some(limit) = options.limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(token) = &options.continue_token {
            query.push(("continue", token.clone()));
        }
        push_selectors(&mut query, &options.label_selector, &options.field_selector);
        let response = self.fleet_request(cluster_glob, path, &query).await?;
        let body = response.bytes().await?;
        parse_list(&body)
    }

    /// Watches `path` across every cluster whose name matches `cluster_glob`,
    /// yielding each cluster's events as they come, typed as `T`.
    ///
    /// Without `resource_version`, each cluster starts with an `Added` event
    /// per existing object. The first connection's failure is returned here.
    /// Later, when a connection ends or drops, the stream reconnects from the
    /// last event's `resource_version` (after a short, growing delay), so no
    /// event is lost or repeated. It ends only with an error: kubeportal's
    /// own 4xx, or [`Error::Cluster`] with status 410 (reason `Expired`) when
    /// a cluster no longer has that position (list again, then watch from the
    /// list's `resource_version`). An event whose object does not decode as
    /// `T` is an [`Error::Decode`] item, and the stream goes on.
    pub async fn fleet_watch<T>(
        &self,
        cluster_glob: &str,
        path: &str,
        options: &FleetWatchOptions,
    ) -> Result<FleetWatchStream<T>, Error>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let mut watch = Watch {
            client: self.clone(),
            glob: cluster_glob.to_owned(),
            path: path.to_owned(),
            options: options.clone(),
            resource_version: options.resource_version.clone(),
            lines: None,
            delay: options.min_retry_delay,
            ended: false,
        };
        watch.lines = Some(watch.connect().await?);
        Ok(stream::unfold(watch, Watch::next::<T>).boxed())
    }

    /// A `GET` of the fleet route; a non-2xx is an error.
    async fn fleet_request(
        &self,
        cluster_glob: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, Error> {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let request = self
            .request(
                Method::GET,
                &format!("{API}/fleet/{}/proxy{path}", path_segment(cluster_glob)),
            )
            .query(query);
        let response = request.send().await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await?;
        Err(fleet_error(status, &body))
    }
}

fn push_selectors(
    query: &mut Vec<(&'static str, String)>,
    label_selector: &Option<String>,
    field_selector: &Option<String>,
) {
    if let Some(selector) = label_selector {
        query.push(("labelSelector", selector.clone()));
    }
    if let Some(selector) = field_selector {
        query.push(("fieldSelector", selector.clone()));
    }
}

/// The state of a resuming fleet watch.
struct Watch {
    client: Client,
    glob: String,
    path: String,
    options: FleetWatchOptions,
    resource_version: Option<String>,
    lines: Option<Lines>,
    delay: Duration,
    ended: bool,
}

impl Watch {
    /// A new connection from the last position. It holds none of `self`
    /// across its awaits, as the stream it feeds must be `Send`.
    fn connect(&self) -> impl std::future::Future<Output = Result<Lines, Error>> + Send + 'static {
        let mut query: Vec<(&'static str, String)> = vec![("watch", "true".into())];
        push_selectors(
            &mut query,
            &self.options.label_selector,
            &self.options.field_selector,
        );
        if self.options.allow_bookmarks {
            query.push(("allowWatchBookmarks", "true".into()));
        }
        if let Some(seconds) = self.options.timeout_seconds {
            query.push(("timeoutSeconds", seconds.to_string()));
        }
        if let Some(version) = &self.resource_version {
            query.push(("resourceVersion", version.clone()));
        }
        let client = self.client.clone();
        let glob = self.glob.clone();
        let path = self.path.clone();
        async move {
            let response = client.fleet_request(&glob, &path, &query).await?;
            Ok(crate::stream::lines(Box::pin(response.bytes_stream())).boxed())
        }
    }

    async fn next<T: DeserializeOwned>(
        mut self,
    ) -> Option<(Result<FleetWatchEvent<T>, Error>, Self)> {
        loop {
            if self.ended {
                return None;
            }
            let Some(lines) = self.lines.as_mut() else {
                tokio::time::sleep(self.delay).await;
                self.delay = (self.delay * 2).min(self.options.max_retry_delay);
                match self.connect().await {
                    Ok(lines) => self.lines = Some(lines),
                    Err(error) if retryable(&error) => {}
                    Err(error) => {
                        self.ended = true;
                        return Some((Err(error), self));
                    }
                }
                continue;
            };
            match lines.next().await {
                Some(Ok(line)) if line.trim().is_empty() => {}
                Some(Ok(line)) => {
                    let event = match parse_event(&line) {
                        Ok(Some(event)) => event,
                        Ok(None) => continue,
                        Err(error) => {
                            self.ended = true;
                            return Some((Err(error), self));
                        }
                    };
                    self.resource_version = Some(event.resource_version.clone());
                    self.delay = self.options.min_retry_delay;
                    let typed = serde_json::from_value(event.object)
                        .map(|object| FleetWatchEvent {
                            event_type: event.event_type,
                            cluster: event.cluster,
                            object,
                            resource_version: event.resource_version,
                        })
                        .map_err(Error::from);
                    return Some((typed, self));
                }
                // The connection ended or dropped: reconnect from the last position.
                Some(Err(_)) | None => self.lines = None,
            }
        }
    }
}

/// Errors worth reconnecting after: the network, or kubeportal briefly unavailable.
fn retryable(error: &Error) -> bool {
    match error {
        Error::Transport(_) => true,
        other => other
            .status()
            .is_some_and(|status| status.is_server_error()),
    }
}

/// One line of a fleet watch: an event, `None` for a type it does not know,
/// or the error an `ERROR` event carries.
fn parse_event(line: &str) -> Result<Option<FleetWatchEvent<Value>>, Error> {
    #[derive(Deserialize)]
    struct RawEvent {
        #[serde(rename = "type")]
        event_type: String,
        #[serde(default)]
        object: Value,
    }
    let raw: RawEvent = serde_json::from_str(line)?;
    let event_type = match raw.event_type.as_str() {
        "ADDED" => WatchEventType::Added,
        "MODIFIED" => WatchEventType::Modified,
        "DELETED" => WatchEventType::Deleted,
        "BOOKMARK" => WatchEventType::Bookmark,
        "ERROR" => {
            let object = &raw.object;
            let status = object["code"]
                .as_u64()
                .and_then(|code| u16::try_from(code).ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Err(Error::Cluster {
                status,
                reason: object["reason"]
                    .as_str()
                    .filter(|reason| !reason.is_empty())
                    .map(str::to_owned),
                message: object["message"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("the watch failed ({status})")),
            });
        }
        _ => return Ok(None),
    };
    let resource_version = raw.object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let cluster = cluster_of(&raw.object).filter(|_| event_type != WatchEventType::Bookmark);
    Ok(Some(FleetWatchEvent {
        event_type,
        cluster,
        object: raw.object,
        resource_version,
    }))
}

fn cluster_of(object: &Value) -> Option<String> {
    object["metadata"]["annotations"][FLEET_CLUSTER_ANNOTATION]
        .as_str()
        .map(str::to_owned)
}

fn parse_list<T: DeserializeOwned>(body: &[u8]) -> Result<FleetList<T>, Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RawList {
        #[serde(default)]
        kind: Option<String>,
        #[serde(default)]
        api_version: Option<String>,
        #[serde(default)]
        metadata: RawMetadata,
        #[serde(default)]
        items: Vec<Value>,
        #[serde(default)]
        clusters: Vec<FleetClusterStatus>,
    }
    #[derive(Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RawMetadata {
        #[serde(default)]
        resource_version: Option<String>,
        #[serde(default, rename = "continue")]
        continue_token: Option<String>,
    }
    let raw: RawList = serde_json::from_slice(body)?;
    let items = raw
        .items
        .into_iter()
        .map(|object| {
            let cluster = cluster_of(&object).unwrap_or_default();
            Ok(FleetItem {
                cluster,
                object: serde_json::from_value(object)?,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(FleetList {
        kind: raw.kind.unwrap_or_else(|| "List".into()),
        api_version: raw.api_version.unwrap_or_else(|| "v1".into()),
        items,
        clusters: raw.clusters,
        resource_version: raw.metadata.resource_version.unwrap_or_default(),
        continue_token: raw
            .metadata
            .continue_token
            .filter(|token| !token.is_empty()),
    })
}

/// The portal's error name for a status, as its other routes answer them.
fn portal_error_name(status: StatusCode) -> Option<&'static str> {
    Some(match status.as_u16() {
        400 => "InputError",
        401 => "AuthenticationError",
        403 => "NotAllowedError",
        404 => "NotFoundError",
        405 => "MethodNotAllowedError",
        406 => "NotAcceptableError",
        409 => "ConflictError",
        413 => "PayloadTooLargeError",
        500 => "InternalServerError",
        501 => "NotImplementedError",
        502 => "BadGatewayError",
        503 => "ServiceUnavailableError",
        504 => "GatewayTimeoutError",
        _ => return None,
    })
}

/// The error of a failed fleet request. The fleet route answers kubeportal's
/// own errors as Kubernetes `Status` objects (for kubectl); they are
/// [`Error::Portal`] named as every other portal error is.
fn fleet_error(status: StatusCode, body: &[u8]) -> Error {
    match error::error_from_body(status, body) {
        Error::Cluster {
            status,
            reason,
            message,
        } => Error::Portal {
            name: portal_error_name(status)
                .map(str::to_owned)
                .or(reason)
                .unwrap_or_else(|| "ResponseError".into()),
            status,
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_names_each_items_cluster() {
        let body = br#"{"kind":"PodList","apiVersion":"v1",
            "metadata":{"resourceVersion":"e30","continue":"eyJhIjoiMSJ9"},
            "items":[{"metadata":{"name":"p","annotations":{"kubeportal.io/cluster":"prod-a"}}}],
            "clusters":[{"name":"prod-a","status":"Success"},
                        {"name":"prod-hung","status":"Failure","code":504,"message":"late"}]}"#;
        let list: FleetList<Value> = parse_list(body).expect("a list");
        assert_eq!(list.kind, "PodList");
        assert_eq!(list.items[0].cluster, "prod-a");
        assert_eq!(list.items[0].object["metadata"]["name"], "p");
        assert_eq!(list.resource_version, "e30");
        assert_eq!(list.continue_token.as_deref(), Some("eyJhIjoiMSJ9"));
        assert_eq!(list.clusters[1].status, FleetClusterState::Failure);
        assert_eq!(list.clusters[1].code, Some(504));
    }

    #[test]
    fn an_error_event_is_an_error() {
        let line = r#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"cluster prod-a: too old"}}"#;
        match parse_event(line) {
            Err(Error::Cluster { status, reason, .. }) => {
                assert_eq!(status, StatusCode::GONE);
                assert_eq!(reason.as_deref(), Some("Expired"));
            }
            other => panic!("expected a 410, got {other:?}"),
        }
    }

    #[test]
    fn status_errors_get_the_portals_names() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"clusterGlob: bad","reason":"BadRequest","code":400}"#;
        let error = fleet_error(StatusCode::BAD_REQUEST, body);
        assert_eq!(error.portal_name(), Some("InputError"));
        assert!(error.to_string().contains("clusterGlob: bad"), "{error}");
    }
}
