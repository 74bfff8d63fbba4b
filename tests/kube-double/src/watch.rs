//! Watch streams: newline-delimited `{"type":...,"object":...}` events, each one its
//! own chunk, flushed as it happens, until the client goes away or
//! `timeoutSeconds` pass.
//!
//! Without a resourceVersion (or with "0") the stream starts with an ADDED event per
//! existing object; with one, it replays the changes after it, or, when that version
//! is older than the kept history, sends a single 410 `Expired` ERROR event as the
//! API server does. A modification that moves an object into or out of the watch's
//! selector is sent as ADDED or DELETED.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio::time::Sleep;

use crate::handlers::QueryParams;
use crate::resources::ResourceType;
use crate::selectors::Selection;
use crate::status::ApiError;
use crate::store::{EventType, ResourceKey, StoreError, StoredEvent};
use crate::Shared;

pub(crate) fn serve(
    shared: &Shared,
    resource: &ResourceType,
    namespace: Option<&str>,
    query: &QueryParams,
) -> Result<Response, ApiError> {
    let selection = Selection::parse(query.get("labelSelector"), query.get("fieldSelector"))?;
    let since =
        match query.get("resourceVersion") {
            None | Some("" | "0") => None,
            Some(version) => Some(version.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: {version}"))
            })?),
        };
    let deadline = query
        .get("timeoutSeconds")
        .and_then(|seconds| seconds.parse::<u64>().ok())
        .filter(|seconds| *seconds > 0)
        .map(|seconds| Box::pin(tokio::time::sleep(Duration::from_secs(seconds))));
    let filter = WatchFilter {
        resource: ResourceKey::from(resource),
        namespace: namespace.map(str::to_owned),
        selection,
    };
    let start = match shared.store.watch(resource, namespace, since) {
        Ok(start) => start,
        Err(StoreError::Expired(message)) => {
            let error = ApiError::expired(message).to_status();
            let line = event_line("ERROR", &error);
            return Ok(streaming(Body::from(line)));
        }
        Err(error) => return Err(error.into()),
    };
    let mut pending: VecDeque<Bytes> = start
        .snapshot
        .iter()
        .filter(|object| filter.selection.matches(object))
        .map(|object| event_line(EventType::Added.as_str(), object))
        .collect();
    pending.extend(start.replay.iter().filter_map(|event| filter.render(event)));
    let stream = WatchStream {
        pending,
        receiver: start.receiver,
        filter,
        after: start.resource_version,
        deadline,
        finished: false,
    };
    let body = futures::stream::unfold(stream, WatchStream::next_chunk);
    Ok(streaming(Body::from_stream(body)))
}

fn streaming(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": event_type, "object": object}))
        .expect("JSON values serialize");
    line.push(b'\n');
    Bytes::from(line)
}

/// Which events a watch sends.
struct WatchFilter {
    resource: ResourceKey,
    namespace: Option<String>,
    selection: Selection,
}

impl WatchFilter {
    fn in_scope(&self, object: &Value) -> bool {
        let namespace_fits = self
            .namespace
            .as_deref()
            .is_none_or(|namespace| object["metadata"]["namespace"] == namespace);
        namespace_fits && self.selection.matches(object)
    }

    /// The line a watcher receives for a change, if any.
    fn render(&self, event: &StoredEvent) -> Option<Bytes> {
        if event.resource != self.resource {
            return None;
        }
        let now_in = self.in_scope(&event.object);
        let event_type = match event.event_type {
            EventType::Added | EventType::Deleted => now_in.then_some(event.event_type),
            EventType::Modified => {
                let was_in = event
                    .previous
                    .as_ref()
                    .is_some_and(|previous| self.in_scope(previous));
                match (was_in, now_in) {
                    (true, true) => Some(EventType::Modified),
                    (false, true) => Some(EventType::Added),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
        }?;
        Some(event_line(event_type.as_str(), &event.object))
    }
}

struct WatchStream {
    pending: VecDeque<Bytes>,
    receiver: broadcast::Receiver<Arc<StoredEvent>>,
    filter: WatchFilter,
    /// Changes up to this resourceVersion are in `pending` already.
    after: u64,
    deadline: Option<Pin<Box<Sleep>>>,
    finished: bool,
}

impl WatchStream {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if let Some(line) = self.pending.pop_front() {
            return Some((Ok(line), self));
        }
        if self.finished {
            return None;
        }
        loop {
            let received = match &mut self.deadline {
                Some(deadline) => tokio::select! {
                    _ = deadline.as_mut() => return None,
                    received = self.receiver.recv() => received,
                },
                None => self.receiver.recv().await,
            };
            match received {
                Ok(event) if event.resource_version > self.after => {
                    if let Some(line) = self.filter.render(&event) {
                        return Some((Ok(line), self));
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow a reader: end the watch the way the API server does,
                    // so the client lists again.
                    self.finished = true;
                    let error = ApiError::expired("the watcher fell too far behind").to_status();
                    return Some((Ok(event_line("ERROR", &error)), self));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selectors::LabelSelector;

    fn filter() -> WatchFilter {
        let configmaps = ResourceType::custom("", "v1", "configmaps", "ConfigMap", true);
        WatchFilter {
            resource: ResourceKey::from(&configmaps),
            namespace: Some("shop".to_owned()),
            selection: Selection {
                labels: LabelSelector::parse("app=api").unwrap(),
                ..Selection::default()
            },
        }
    }

    fn event(event_type: EventType, object: Value, previous: Option<Value>) -> StoredEvent {
        let configmaps = ResourceType::custom("", "v1", "configmaps", "ConfigMap", true);
        StoredEvent {
            resource: ResourceKey::from(&configmaps),
            event_type,
            object,
            previous,
            resource_version: 9,
        }
    }

    fn labelled(namespace: &str, app: &str) -> Value {
        json!({"metadata": {"name": "a", "namespace": namespace, "labels": {"app": app}}})
    }

    fn type_of(line: Option<Bytes>) -> Option<String> {
        line.map(|line| {
            let event: Value = serde_json::from_slice(&line).unwrap();
            event["type"].as_str().unwrap().to_owned()
        })
    }

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let filter = filter();
        let entering = event(
            EventType::Modified,
            labelled("shop", "api"),
            Some(labelled("shop", "web")),
        );
        assert_eq!(type_of(filter.render(&entering)).as_deref(), Some("ADDED"));
        let leaving = event(
            EventType::Modified,
            labelled("shop", "web"),
            Some(labelled("shop", "api")),
        );
        assert_eq!(type_of(filter.render(&leaving)).as_deref(), Some("DELETED"));
        let staying = event(
            EventType::Modified,
            labelled("shop", "api"),
            Some(labelled("shop", "api")),
        );
        assert_eq!(
            type_of(filter.render(&staying)).as_deref(),
            Some("MODIFIED")
        );
    }

    #[test]
    fn other_namespaces_are_not_sent() {
        let filter = filter();
        let elsewhere = event(EventType::Added, labelled("default", "api"), None);
        assert!(filter.render(&elsewhere).is_none());
    }
}
