//! Requests on resources: the verbs (get, list, watch, create, update, patch,
//! delete, deletecollection), the `status` subresource, pod logs, exec and attach,
//! and pod metrics.

use std::borrow::Borrow;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};

use super::QueryParams;
use crate::logs::LogOptions;
use crate::negotiation::{negotiate, Output};
use crate::patch::{apply_patch, PatchError, PatchType};
use crate::paths::ResourcePath;
use crate::resources::{Backing, ResourceType};
use crate::selectors::Selection;
use crate::status::ApiError;
use crate::store::{name_of, now, Preconditions, StoreError, WriteScope};
use crate::table::{
    go_type_name, partial_object_metadata, partial_object_metadata_list, table, IncludeObject,
    TableOptions,
};
use crate::Shared;

/// The largest request body the double reads.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

pub(super) async fn serve(
    shared: Arc<Shared>,
    path: ResourcePath,
    request: Request,
) -> Result<Response, ApiError> {
    let resource = shared
        .resources
        .find(&path.group, &path.version, &path.plural)
        .ok_or_else(ApiError::resource_not_found)?;
    let scope_mismatch = matches!(
        (resource.namespaced, &path.namespace, &path.name),
        (false, Some(_), _) | (true, None, Some(_))
    );
    if scope_mismatch {
        return Err(ApiError::resource_not_found());
    }
    let query = QueryParams::parse(request.uri().query());
    let method = request.method().clone();
    let watch = query.flag("watch");
    if method == Method::GET && path.name.is_none() && !watch {
        shared.knobs.count_list(&resource);
    }
    shared.knobs.before_resource(&resource).await?;

    let namespace = path.namespace.as_deref();
    if resource.backing == Backing::PodMetrics {
        return pod_metrics(
            &shared,
            &resource,
            namespace,
            path.name.as_deref(),
            &query,
            &method,
            watch,
        );
    }
    let is_pods = resource.group.is_empty() && resource.plural == "pods";
    let dry_run = query.get("dryRun") == Some("All");
    // Logs, exec and attach are streams of their own; everything else answers in
    // the representation `Accept` negotiates (transformed only by get, list and
    // watch).
    let output = match path.subresource.as_deref() {
        None | Some("status") => negotiate(
            request
                .headers()
                .get(header::ACCEPT)
                .and_then(|value| value.to_str().ok()),
        )?,
        Some(_) => Output::Plain,
    };
    match (path.name.as_deref(), path.subresource.as_deref(), method) {
        (None, None, Method::GET) if watch => {
            crate::watch::serve(&shared, &resource, namespace, &query, output)
        }
        (None, None, Method::GET) => list(&shared, &resource, namespace, &query, output),
        (None, None, Method::POST) => {
            let object = read_object(request).await?;
            let created = shared.store.create(&resource, namespace, object, dry_run)?;
            Ok((StatusCode::CREATED, Json(created)).into_response())
        }
        (None, None, Method::DELETE) => {
            let selection =
                Selection::parse(query.get("labelSelector"), query.get("fieldSelector"))?;
            let deleted = shared
                .store
                .delete_collection(&resource, namespace, &selection, dry_run);
            Ok(Json(list_document(&resource, deleted, None, None)).into_response())
        }
        (Some(name), None | Some("status"), Method::GET) => {
            let object = shared.store.get(&resource, namespace, name)?;
            get_as(&resource, object, &query, output)
        }
        (Some(name), scope @ (None | Some("status")), Method::PUT) => {
            let object = read_object(request).await?;
            let updated = shared.store.update(
                &resource,
                namespace,
                name,
                object,
                write_scope(scope),
                dry_run,
            )?;
            Ok(Json(updated).into_response())
        }
        (Some(name), scope @ (None | Some("status")), Method::PATCH) => {
            patch(
                &shared,
                &resource,
                namespace,
                name,
                write_scope(scope),
                dry_run,
                request,
            )
            .await
        }
        (Some(name), None, Method::DELETE) => {
            let body = axum::body::to_bytes(request.into_body(), BODY_LIMIT)
                .await
                .map_err(|error| ApiError::bad_request(format!("reading the body: {error}")))?;
            let options = DeleteOptions::parse(&body)?;
            let dry_run = dry_run || options.dry_run;
            let deleted =
                shared
                    .store
                    .delete(&resource, namespace, name, &options.preconditions, dry_run)?;
            Ok(Json(deleted).into_response())
        }
        (Some(name), Some("log"), Method::GET) if is_pods => {
            let namespace = namespace.expect("pods are namespaced");
            let pod = shared.store.get(&resource, Some(namespace), name)?;
            crate::exec::resolve_container(&pod, query.get("container"))?;
            let options = LogOptions {
                follow: query.flag("follow"),
                timestamps: query.flag("timestamps"),
                tail_lines: query.get("tailLines").and_then(|lines| lines.parse().ok()),
            };
            let body = shared.logs.open(namespace, name, &options);
            Ok((
                [(header::CONTENT_TYPE, "text/plain")],
                Body::from_stream(body),
            )
                .into_response())
        }
        (Some(name), Some(subresource @ ("exec" | "attach")), Method::GET | Method::POST)
            if is_pods =>
        {
            let namespace = namespace.expect("pods are namespaced");
            crate::exec::serve(
                &shared,
                namespace,
                name,
                subresource == "attach",
                &query,
                request,
            )
            .await
        }
        (Some(_), Some("portforward"), _) if is_pods => Err(ApiError::bad_request(
            "port-forward is not emulated by kube-double",
        )),
        (_, Some(_), _) => Err(ApiError::resource_not_found()),
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn write_scope(subresource: Option<&str>) -> WriteScope {
    if subresource == Some("status") {
        WriteScope::Status
    } else {
        WriteScope::Object
    }
}

/// The Table options of a Table request (its `includeObject` checked first, as
/// the apiserver's `optionsForTransform` does).
fn table_options(output: Output, query: &QueryParams) -> Result<Option<TableOptions>, ApiError> {
    match output {
        Output::Table(version) => Ok(Some(TableOptions {
            version,
            include: IncludeObject::parse(query.get("includeObject"))?,
            no_headers: false,
        })),
        _ => Ok(None),
    }
}

/// One object, in the negotiated representation.
fn get_as(
    resource: &ResourceType,
    object: Value,
    query: &QueryParams,
    output: Output,
) -> Result<Response, ApiError> {
    let table_options = table_options(output, query)?;
    let body = match (output, table_options) {
        (Output::Table(_), Some(options)) => {
            let mut metadata = json!({});
            if let Some(version) = object.pointer("/metadata/resourceVersion") {
                metadata["resourceVersion"] = version.clone();
            }
            table(resource, &[&object], metadata, options)
        }
        (Output::PartialObjectMetadata(version), _) => partial_object_metadata(&object, version),
        (Output::PartialObjectMetadataList(_), _) => {
            return Err(ApiError::not_acceptable(format!(
                "you requested PartialObjectMetadataList, but the requested object is not a list ({})",
                go_type_name(resource, false)
            )))
        }
        _ => object,
    };
    Ok(Json(body).into_response())
}

fn list(
    shared: &Shared,
    resource: &ResourceType,
    namespace: Option<&str>,
    query: &QueryParams,
    output: Output,
) -> Result<Response, ApiError> {
    let table_options = table_options(output, query)?;
    if let Output::PartialObjectMetadata(_) = output {
        return Err(ApiError::not_acceptable(format!(
            "you requested PartialObjectMetadata, but the requested object is a list ({})",
            go_type_name(resource, true)
        )));
    }
    let selection = Selection::parse(query.get("labelSelector"), query.get("fieldSelector"))?;
    let limit = query
        .get("limit")
        .and_then(|limit| limit.parse::<usize>().ok())
        .filter(|limit| *limit > 0);
    // The same request at the same resourceVersion gets the same bytes
    // (not a Table: its ages are of the moment it is rendered).
    let cached = !matches!(output, Output::Table(_));
    let key = format!(
        "{}/{}|{}|{:?}|{output:?}",
        resource.api_version(),
        resource.plural,
        namespace.unwrap_or_default(),
        query.0,
    );
    // A kept answer is of a resourceVersion: still the store's, it is still
    // the answer, and the objects need not be selected again.
    if let Some(body) = cached
        .then(|| shared.lists.get(&key, shared.store.resource_version()))
        .flatten()
    {
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let body = shared.store.list_with(
        resource,
        namespace,
        &selection,
        |items, resource_version| {
            let page = Page::of(items, limit, query.get("continue"))?;
            let mut metadata = json!({"resourceVersion": resource_version.to_string()});
            if let Some(token) = &page.continue_token {
                metadata["continue"] = json!(token);
            }
            if page.remaining > 0 {
                metadata["remainingItemCount"] = json!(page.remaining);
            }
            let body = match (output, table_options) {
                (Output::Table(_), Some(options)) => {
                    serde_json::to_vec(&table(resource, &page.items, metadata, options))
                }
                (Output::PartialObjectMetadataList(version), _) => serde_json::to_vec(
                    &partial_object_metadata_list(&page.items, metadata, version),
                ),
                _ => serde_json::to_vec(&ListDocument {
                    api_version: resource.api_version(),
                    items: &page.items,
                    kind: resource.list_kind(),
                    metadata,
                }),
            };
            let body = bytes::Bytes::from(body.expect("JSON values always serialize"));
            if cached {
                shared.lists.put(key, resource_version, body.clone());
            }
            Ok::<_, ApiError>(body)
        },
    )?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A list as [`list_document`] builds it (the same bytes: keys in the order a
/// `serde_json::Value` map sorts them), serialized from borrowed objects.
#[derive(serde::Serialize)]
struct ListDocument<'a> {
    #[serde(rename = "apiVersion")]
    api_version: String,
    items: &'a [&'a Value],
    kind: String,
    metadata: Value,
}

fn list_document(
    resource: &ResourceType,
    items: Vec<Value>,
    resource_version: Option<u64>,
    continue_token: Option<String>,
) -> Value {
    let mut metadata = json!({});
    if let Some(resource_version) = resource_version {
        metadata["resourceVersion"] = json!(resource_version.to_string());
    }
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({
        "kind": resource.list_kind(),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": items,
    })
}

/// One page of a list: the items after the continue token, at most `limit`.
struct Page<T> {
    items: Vec<T>,
    continue_token: Option<String>,
    remaining: usize,
}

impl<T: Borrow<Value>> Page<T> {
    fn of(
        items: Vec<T>,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Page<T>, ApiError> {
        // Items come sorted by (namespace, name); a token names the last one sent.
        let position = |object: &Value| {
            (
                object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                name_of(object).to_owned(),
            )
        };
        let after = match continue_token.filter(|token| !token.is_empty()) {
            Some(token) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(token)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .and_then(|text| {
                        let (namespace, name) = text.split_once('/')?;
                        Some((namespace.to_owned(), name.to_owned()))
                    })
                    .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?,
            ),
            None => None,
        };
        let mut items: Vec<T> = match &after {
            Some(after) => items
                .into_iter()
                .filter(|item| position(item.borrow()) > *after)
                .collect(),
            None => items,
        };
        let Some(limit) = limit.filter(|limit| *limit < items.len()) else {
            return Ok(Page {
                items,
                continue_token: None,
                remaining: 0,
            });
        };
        let remaining = items.len() - limit;
        items.truncate(limit);
        let (namespace, name) = items
            .last()
            .map(|item| position(item.borrow()))
            .unwrap_or_default();
        Ok(Page {
            items,
            continue_token: Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(format!("{namespace}/{name}")),
            ),
            remaining,
        })
    }
}

async fn patch(
    shared: &Shared,
    resource: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    scope: WriteScope,
    dry_run: bool,
    request: Request,
) -> Result<Response, ApiError> {
    let content_type = content_type(request.headers());
    let patch_type = PatchType::from_content_type(&content_type)
        .filter(|patch_type| !(resource.custom && *patch_type == PatchType::StrategicMerge))
        .ok_or_else(|| {
            ApiError::unsupported_media_type(&content_type, PatchType::accepted(resource.custom))
        })?;
    let body = axum::body::to_bytes(request.into_body(), BODY_LIMIT)
        .await
        .map_err(|error| ApiError::bad_request(format!("reading the body: {error}")))?;
    let (object, created) = shared.store.patch(
        resource,
        namespace,
        name,
        scope,
        patch_type == PatchType::Apply,
        dry_run,
        |current| {
            apply_patch(patch_type, current, &body).map_err(|error| match error {
                PatchError::JsonPatch(_) => StoreError::Invalid {
                    resource: Box::new(resource.clone()),
                    name: name.to_owned(),
                    cause: error.to_string(),
                },
                other => StoreError::BadRequest(other.to_string()),
            })
        },
    )?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(object)).into_response())
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/json")
        .to_owned()
}

/// Reads a JSON (or YAML) object body.
async fn read_object(request: Request) -> Result<Value, ApiError> {
    let content_type = content_type(request.headers());
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let body = axum::body::to_bytes(request.into_body(), BODY_LIMIT)
        .await
        .map_err(|error| ApiError::bad_request(format!("reading the body: {error}")))?;
    let parsed = match media_type.as_str() {
        "application/json" | "" | "*/*" => {
            serde_json::from_slice(&body).map_err(|error| error.to_string())
        }
        "application/yaml" => serde_saphyr::from_slice(&body).map_err(|error| error.to_string()),
        _ => {
            return Err(ApiError::unsupported_media_type(
                &content_type,
                "application/json, application/yaml",
            ))
        }
    };
    parsed
        .map_err(|error| ApiError::bad_request(format!("the body is not a valid object: {error}")))
}

/// The parts of a `DeleteOptions` body the double honours.
struct DeleteOptions {
    preconditions: Preconditions,
    dry_run: bool,
}

impl DeleteOptions {
    fn parse(body: &[u8]) -> Result<DeleteOptions, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(DeleteOptions {
                preconditions: Preconditions::default(),
                dry_run: false,
            });
        }
        let options: Value = serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(format!("the DeleteOptions body is not valid JSON: {error}"))
        })?;
        let text = |pointer: &str| {
            options
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(DeleteOptions {
            preconditions: Preconditions {
                uid: text("/preconditions/uid"),
                resource_version: text("/preconditions/resourceVersion"),
            },
            dry_run: options["dryRun"]
                .as_array()
                .is_some_and(|values| values.iter().any(|value| value == "All")),
        })
    }
}

/// `metrics.k8s.io/v1beta1` pods: a `PodMetrics` with fixed usage for each pod.
fn pod_metrics(
    shared: &Shared,
    resource: &ResourceType,
    namespace: Option<&str>,
    name: Option<&str>,
    query: &QueryParams,
    method: &Method,
    watch: bool,
) -> Result<Response, ApiError> {
    if *method != Method::GET || watch {
        return Err(ApiError::method_not_allowed());
    }
    let selection = match name {
        Some(_) => Selection::default(),
        None => Selection::parse(query.get("labelSelector"), query.get("fieldSelector"))?,
    };
    let (pods, resource_version) =
        shared
            .store
            .list(&shared.resources.pods(), namespace, &selection);
    let timestamp = now();
    let metrics = pods.iter().map(|pod| {
        let containers: Vec<Value> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|container| json!({"name": container["name"], "usage": {"cpu": "5m", "memory": "32Mi"}}))
            .collect();
        json!({
            "kind": resource.kind,
            "apiVersion": resource.api_version(),
            "metadata": {
                "name": pod["metadata"]["name"],
                "namespace": pod["metadata"]["namespace"],
                "labels": pod["metadata"]["labels"],
                "creationTimestamp": timestamp,
            },
            "timestamp": timestamp,
            "window": "30s",
            "containers": containers,
        })
    });
    match name {
        Some(name) => metrics
            .into_iter()
            .find(|metric| metric["metadata"]["name"] == name)
            .map(|metric| Json(metric).into_response())
            .ok_or_else(|| ApiError::not_found(resource, name)),
        None => Ok(Json(list_document(
            resource,
            metrics.collect(),
            Some(resource_version),
            None,
        ))
        .into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(names: &[&str]) -> Vec<Value> {
        names
            .iter()
            .map(|name| json!({"metadata": {"name": name, "namespace": "default"}}))
            .collect()
    }

    #[test]
    fn pages_follow_their_continue_tokens() {
        let all = items(&["a", "b", "c", "d", "e"]);
        let first = Page::of(all.clone(), Some(2), None).unwrap();
        assert_eq!(first.items.len(), 2);
        assert_eq!(first.remaining, 3);
        let token = first.continue_token.unwrap();
        let second = Page::of(all.clone(), Some(2), Some(&token)).unwrap();
        assert_eq!(name_of(&second.items[0]), "c");
        let last = Page::of(all, Some(2), second.continue_token.as_deref()).unwrap();
        assert_eq!(last.items.len(), 1);
        assert!(last.continue_token.is_none());
    }

    #[test]
    fn garbage_continue_tokens_are_rejected() {
        assert!(Page::of(items(&["a"]), Some(1), Some("%%%")).is_err());
    }

    #[test]
    fn delete_options_preconditions() {
        let options = DeleteOptions::parse(
            br#"{"kind":"DeleteOptions","preconditions":{"resourceVersion":"7"},"dryRun":["All"]}"#,
        )
        .unwrap();
        assert_eq!(options.preconditions.resource_version.as_deref(), Some("7"));
        assert!(options.dry_run);
        assert!(!DeleteOptions::parse(b"").unwrap().dry_run);
    }
}
