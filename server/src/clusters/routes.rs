//! `/api/kubernetes/clusters`: the public list (Backstage's shape) and the
//! admin registry API.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ClusterDetail, ClusterInput, ClusterSummary, ClusterUpdate, OwnAddress, Registry};
use crate::error::{ApiError, ErrorResponse};
use crate::extract::{Json, Path, Query};
use crate::identity::{Authenticator, Caller};
use crate::permissions::{Permission, Policy, Target};

pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Registry: FromRef<S>,
    Arc<Policy>: FromRef<S>,
    OwnAddress: FromRef<S>,
    Arc<Authenticator>: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(get_cluster, update_cluster, delete_cluster))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 1000. Without it every cluster is returned (Backstage
    /// does not page this route).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

pub use kubeportal_api::clusters::ClusterList;

/// Lists the registered clusters (Backstage's `GET /clusters`).
#[utoipa::path(get, path = "/api/kubernetes/clusters", tag = "clusters",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every cluster, or one page when `limit` or `cursor` is given, ordered by name", body = ClusterList),
        (status = 400, description = "Bad limit or cursor", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.clusters.read denied", body = ErrorResponse),
        (status = 503, description = "The registry is unavailable", body = ErrorResponse),
    ))]
async fn list_clusters(
    State(registry): State<Registry>,
    State(policy): State<Arc<Policy>>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<ClusterList>, ApiError> {
    policy.check(&caller, Permission::ClustersRead, &Target::none())?;
    if query.limit.is_some() || query.cursor.is_some() {
        let page = registry.list(query.cursor.as_deref(), query.limit).await?;
        return Ok(Json(ClusterList {
            items: page.items.iter().map(ClusterSummary::from).collect(),
            next_cursor: page.next_cursor,
        }));
    }
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = registry
            .list(cursor.as_deref(), Some(super::MAX_PAGE))
            .await?;
        items.extend(page.items.iter().map(ClusterSummary::from));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(Json(ClusterList {
        items,
        next_cursor: None,
    }))
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("a number is a valid header value")
}

fn detail_response(status: StatusCode, detail: ClusterDetail) -> Response {
    let mut response = (status, Json(detail.clone())).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(detail.version));
    if status == StatusCode::CREATED {
        if let Ok(location) =
            HeaderValue::from_str(&format!("/api/kubernetes/clusters/{}", detail.name))
        {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    response
}

/// Registers a cluster.
#[utoipa::path(post, path = "/api/kubernetes/clusters", tag = "clusters",
    request_body = ClusterInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered", body = ClusterDetail,
            headers(("ETag" = String, description = "The version, quoted"), ("Location" = String))),
        (status = 400, description = "Invalid field (named in the message)", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.clusters.manage denied", body = ErrorResponse),
        (status = 409, description = "A cluster with this name (any case) exists", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 503, description = "The registry is unavailable", body = ErrorResponse),
    ))]
async fn create_cluster(
    State(registry): State<Registry>,
    State(policy): State<Arc<Policy>>,
    State(own_address): State<OwnAddress>,
    caller: Caller,
    Json(input): Json<ClusterInput>,
) -> Result<Response, ApiError> {
    caller.note_cluster(&input.name);
    policy.check(
        &caller,
        Permission::ClustersManage,
        &Target::cluster(&input.name),
    )?;
    super::refuse_own_address(&input.url, own_address.get())?;
    let record = registry.create(&input).await?;
    Ok(detail_response(
        StatusCode::CREATED,
        ClusterDetail::from(&record),
    ))
}

/// Reads one cluster, without its secrets.
#[utoipa::path(get, path = "/api/kubernetes/clusters/{name}", tag = "clusters",
    params(("name" = String, Path, description = "Cluster name (case-insensitive)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cluster", body = ClusterDetail,
            headers(("ETag" = String, description = "The version, quoted"))),
        (status = 400, description = "The name is not UTF-8", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.clusters.manage denied", body = ErrorResponse),
        (status = 404, description = "No such cluster", body = ErrorResponse),
        (status = 503, description = "The registry is unavailable", body = ErrorResponse),
    ))]
async fn get_cluster(
    State(registry): State<Registry>,
    State(policy): State<Arc<Policy>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.note_cluster(&name);
    policy.check(&caller, Permission::ClustersManage, &Target::cluster(&name))?;
    let record = registry
        .store()
        .get(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such cluster".into()))?;
    Ok(detail_response(
        StatusCode::OK,
        ClusterDetail::from(&record),
    ))
}

/// The version an `If-Match` header names (`"3"`, `W/"3"` or `3`).
fn if_match_version(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|text| text.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|text| text.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::Input("If-Match: expected the quoted version from ETag, e.g. \"3\"".into())
        })
}

/// Replaces a cluster. The version it is based on is required, from
/// `If-Match` or the body's `version`; a stale version is a 409.
#[utoipa::path(put, path = "/api/kubernetes/clusters/{name}", tag = "clusters",
    params(
        ("name" = String, Path, description = "Cluster name (case-insensitive)"),
        ("If-Match" = Option<String>, Header, description = "The ETag of the version this update is based on"),
    ),
    request_body = ClusterUpdate,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = ClusterDetail,
            headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "Invalid field, or no version given", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.clusters.manage denied", body = ErrorResponse),
        (status = 404, description = "No such cluster", body = ErrorResponse),
        (status = 409, description = "The version is stale", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 503, description = "The registry is unavailable", body = ErrorResponse),
    ))]
async fn update_cluster(
    State(registry): State<Registry>,
    State(policy): State<Arc<Policy>>,
    State(own_address): State<OwnAddress>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(update): Json<ClusterUpdate>,
) -> Result<Response, ApiError> {
    caller.note_cluster(&name);
    policy.check(&caller, Permission::ClustersManage, &Target::cluster(&name))?;
    let version =
        match (if_match_version(&headers)?, update.version) {
            (Some(header), Some(body)) if header != body => {
                return Err(ApiError::Input(
                    "version: If-Match and the body's version disagree".into(),
                ))
            }
            (Some(version), _) | (None, Some(version)) => version,
            (None, None) => return Err(ApiError::Input(
                "version: required; send If-Match with the ETag you read, or the body's version"
                    .into(),
            )),
        };
    super::refuse_own_address(&update.url, own_address.get())?;
    let record = registry.update(&name, &update, version).await?;
    Ok(detail_response(
        StatusCode::OK,
        ClusterDetail::from(&record),
    ))
}

/// Removes a cluster. With `If-Match`, only at that version.
#[utoipa::path(delete, path = "/api/kubernetes/clusters/{name}", tag = "clusters",
    params(
        ("name" = String, Path, description = "Cluster name (case-insensitive)"),
        ("If-Match" = Option<String>, Header, description = "Delete only at this version"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed If-Match", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.clusters.manage denied", body = ErrorResponse),
        (status = 404, description = "No such cluster", body = ErrorResponse),
        (status = 409, description = "The version is stale", body = ErrorResponse),
        (status = 503, description = "The registry is unavailable", body = ErrorResponse),
    ))]
async fn delete_cluster(
    State(registry): State<Registry>,
    State(policy): State<Arc<Policy>>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    caller.note_cluster(&name);
    policy.check(&caller, Permission::ClustersManage, &Target::cluster(&name))?;
    registry.delete(&name, if_match_version(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
