//! Discovery documents (`/api`, `/apis`, group and group-version lists) and the
//! OpenAPI v3 documents kubectl reads before it trusts the server to validate.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::paths::ApiPath;
use crate::resources::Backing;
use crate::status::ApiError;
use crate::Shared;

pub(super) fn serve(
    shared: &Shared,
    path: ApiPath,
    request: &Request,
) -> Result<Response, ApiError> {
    if request.method() != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    let document = match path {
        ApiPath::LegacyVersions => {
            let host = request
                .headers()
                .get(http::header::HOST)
                .and_then(|host| host.to_str().ok())
                .or_else(|| {
                    request
                        .uri()
                        .authority()
                        .map(|authority| authority.as_str())
                })
                .unwrap_or("127.0.0.1")
                .to_owned();
            Some(shared.resources.api_versions(&host))
        }
        ApiPath::Groups => Some(shared.resources.api_group_list()),
        ApiPath::Group(group) => shared.resources.api_group(&group),
        ApiPath::GroupVersion { group, version } => {
            shared.resources.api_resource_list(&group, &version)
        }
        ApiPath::Resource(_) => None,
    };
    document
        .map(|document| Json(document).into_response())
        .ok_or_else(ApiError::resource_not_found)
}

/// `GET /openapi/v3`: the index of per-group-version documents.
pub(super) async fn openapi_root(State(shared): State<Arc<Shared>>) -> Response {
    let paths: serde_json::Map<String, Value> = shared
        .resources
        .group_versions()
        .into_iter()
        .map(|(group, version)| {
            let path = group_version_path(&group, &version);
            let document = openapi_document(&shared, &group, &version);
            let url = format!("/openapi/v3/{path}?hash={}", content_hash(&document));
            (path, json!({"serverRelativeURL": url}))
        })
        .collect();
    Json(json!({"paths": paths})).into_response()
}

/// `GET /openapi/v3/api/v1`, `GET /openapi/v3/apis/<group>/<version>`.
pub(super) async fn openapi_group_version(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<String>,
) -> Response {
    let found = shared
        .resources
        .group_versions()
        .into_iter()
        .find(|(group, version)| group_version_path(group, version) == path);
    match found {
        Some((group, version)) => Json(openapi_document(&shared, &group, &version)).into_response(),
        None => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    }
}

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A document with one PATCH operation per stored resource, tagged with its
/// group-version-kind and declaring the `fieldValidation` parameter: enough for
/// kubectl to leave validation to the server. It carries no schemas, and its
/// request bodies do not offer strategic merge patch, so kubectl computes such
/// patches from its built-in types rather than from OpenAPI.
fn openapi_document(shared: &Shared, group: &str, version: &str) -> Value {
    let prefix = group_version_path(group, version);
    let paths: serde_json::Map<String, Value> = shared
        .resources
        .of_group_version(group, version)
        .iter()
        .filter(|resource| resource.backing == Backing::Stored)
        .map(|resource| {
            let path = if resource.namespaced {
                format!("/{prefix}/namespaces/{{namespace}}/{}/{{name}}", resource.plural)
            } else {
                format!("/{prefix}/{}/{{name}}", resource.plural)
            };
            let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}});
            let patch_body = json!({"schema": {"type": "object"}});
            let operation = json!({
                "operationId": format!("patch{}", resource.kind),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": resource.kind},
                "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
                "requestBody": {"content": {
                    "application/json-patch+json": patch_body,
                    "application/merge-patch+json": patch_body,
                    "application/apply-patch+yaml": patch_body,
                }},
                "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}},
            });
            (path, json!({"patch": operation}))
        })
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kube-double)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    })
}

fn content_hash(document: &Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    document.to_string().hash(&mut hasher);
    format!("{:016X}", hasher.finish())
}
