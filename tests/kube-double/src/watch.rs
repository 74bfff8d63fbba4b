//! Watch streams: newline-delimited `{"type":...,"object":...}` events, each one its
//! own chunk, flushed as it happens, until the client goes away or
//! `timeoutSeconds` pass.
//!
//! Without a resourceVersion (or with "0") the stream starts with an ADDED event per
//! existing object; with one, it replays the changes after it, or, when that version
//! is older than the kept history, sends a single 410 `Expired` ERROR event as the
//! API server does. A modification that moves an object into or out of the watch's
//! selector is sent as ADDED or DELETED.
//!
//! Each event's object is written in the negotiated form ([`Output`]): as is, as a
//! `PartialObjectMetadata`, or as a one-row `Table`. Like the apiserver's
//! `watchEmbeddedEncoder`, a Table watch sends `columnDefinitions` with its first
//! event only; later events carry `"columnDefinitions": null`. `ERROR` events carry
//! their `Status` untransformed. A `PartialObjectMetadataList` watch gets the
//! objects as they are, which is what the apiserver falls back to when that
//! transformation of a single object fails.

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
use crate::negotiation::Output;
use crate::resources::ResourceType;
use crate::selectors::Selection;
use crate::status::ApiError;
use crate::store::{EventType, ResourceKey, StoreError, StoredEvent};
use crate::table::{IncludeObject, TableOptions};
use crate::Shared;

pub(crate) fn serve(
    shared: &Shared,
    resource: &ResourceType,
    namespace: Option<&str>,
    query: &QueryParams,
    output: Output,
) -> Result<Response, ApiError> {
    let mut encoder = Encoder::new(resource, output, query)?;
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
        .map(|object| encoder.line(EventType::Added, object))
        .collect();
    pending.extend(start.replay.iter().filter_map(|event| {
        let event_type = filter.classify(event)?;
        Some(encoder.line(event_type, &event.object))
    }));
    let stream = WatchStream {
        pending,
        receiver: start.receiver,
        filter,
        encoder,
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

/// Writes events' objects in the negotiated form.
struct Encoder {
    resource: ResourceType,
    output: Output,
    table: Option<TableOptions>,
}

impl Encoder {
    fn new(resource: &ResourceType, output: Output, query: &QueryParams) -> Result<Self, ApiError> {
        let table = match output {
            Output::Table(version) => Some(TableOptions {
                version,
                include: IncludeObject::parse(query.get("includeObject"))?,
                no_headers: false,
            }),
            _ => None,
        };
        Ok(Encoder {
            resource: resource.clone(),
            output,
            table,
        })
    }

    fn line(&mut self, event_type: EventType, object: &Value) -> Bytes {
        let transformed = match (self.output, self.table.as_mut()) {
            (Output::Table(_), Some(options)) => {
                let mut metadata = json!({});
                if let Some(version) = object.pointer("/metadata/resourceVersion") {
                    metadata["resourceVersion"] = version.clone();
                }
                let table = crate::table::table(&self.resource, &[object], metadata, *options);
                // The apiserver prints the column definitions once per watch.
                options.no_headers = true;
                table
            }
            (Output::PartialObjectMetadata(version), _) => {
                crate::table::partial_object_metadata(object, version)
            }
            _ => object.clone(),
        };
        event_line(event_type.as_str(), &transformed)
    }
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

    /// The type of event a watcher receives for a change, if any.
    fn classify(&self, event: &StoredEvent) -> Option<EventType> {
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
        Some(event_type)
    }
}

struct WatchStream {
    pending: VecDeque<Bytes>,
    receiver: broadcast::Receiver<Arc<StoredEvent>>,
    filter: WatchFilter,
    encoder: Encoder,
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
                    if let Some(event_type) = self.filter.classify(&event) {
                        let line = self.encoder.line(event_type, &event.object);
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

    fn type_of(event_type: Option<EventType>) -> Option<&'static str> {
        event_type.map(EventType::as_str)
    }

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let filter = filter();
        let entering = event(
            EventType::Modified,
            labelled("shop", "api"),
            Some(labelled("shop", "web")),
        );
        assert_eq!(type_of(filter.classify(&entering)), Some("ADDED"));
        let leaving = event(
            EventType::Modified,
            labelled("shop", "web"),
            Some(labelled("shop", "api")),
        );
        assert_eq!(type_of(filter.classify(&leaving)), Some("DELETED"));
        let staying = event(
            EventType::Modified,
            labelled("shop", "api"),
            Some(labelled("shop", "api")),
        );
        assert_eq!(type_of(filter.classify(&staying)), Some("MODIFIED"));
    }

    #[test]
    fn other_namespaces_are_not_sent() {
        let filter = filter();
        let elsewhere = event(EventType::Added, labelled("default", "api"), None);
        assert!(filter.classify(&elsewhere).is_none());
    }
}
