//! `GET /api/kubernetes/audit`: the audit trail, filtered and paged, for
//! holders of `kubernetes.audit.read`.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::recording::RecordingPolicy;
use super::{AuditFilter, Auditor, RecordingCursor, RecordingFilter};
use crate::error::{ApiError, ErrorResponse};
use crate::extract::{Json, Query};
use crate::identity::{Authenticator, Caller};
use crate::permissions::{Permission, Policy, Target};

pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Auditor: FromRef<S>,
    Arc<RecordingPolicy>: FromRef<S>,
    Arc<Policy>: FromRef<S>,
    Arc<Authenticator>: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(list_recordings))
        .routes(routes!(get_recording))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    cluster: Option<String>,
    /// Exact subject ref, e.g. `user:default/alice`.
    subject: Option<String>,
    method: Option<String>,
    status: Option<u16>,
    /// RFC 3339 time, inclusive.
    since: Option<DateTime<Utc>>,
    /// RFC 3339 time, exclusive.
    until: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<i64>,
}

pub use kubeportal_api::audit::AuditPage;

/// Audit records, newest first.
#[utoipa::path(get, path = "/api/kubernetes/audit", tag = "operations",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of audit records", body = AuditPage),
        (status = 400, description = "Bad filter", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.audit.read denied", body = ErrorResponse),
        (status = 503, description = "The store is unavailable", body = ErrorResponse),
    ))]
async fn list_audit(
    State(auditor): State<Auditor>,
    State(policy): State<Arc<Policy>>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    policy.check(&caller, Permission::AuditRead, &Target::none())?;
    let limit = match query.limit {
        None => 100,
        Some(limit @ 1..=1000) => limit,
        Some(_) => return Err(ApiError::Input("limit: must be 1 to 1000".into())),
    };
    let filter = AuditFilter {
        cluster: query.cluster,
        subject: query.subject,
        method: query.method.map(|method| method.to_ascii_uppercase()),
        status: query.status,
        since: query.since,
        until: query.until,
    };
    let mut items = auditor.query(&filter, query.cursor, limit + 1).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|record| record.id)
    } else {
        None
    };
    Ok(Json(AuditPage { items, next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordingQuery {
    cluster: Option<String>,
    /// Exact subject ref, e.g. `user:default/alice`.
    subject: Option<String>,
    /// RFC 3339 time, inclusive: sessions that started then or later.
    since: Option<DateTime<Utc>>,
    /// RFC 3339 time, exclusive.
    until: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

pub use kubeportal_api::audit::RecordingPage;

/// A page cursor: the last recording's start and id.
fn recording_cursor(text: &str) -> Result<RecordingCursor, ApiError> {
    let invalid = || ApiError::Input("cursor: not a nextCursor kubeportal gave you".into());
    let (started_at, id) = text.split_once('~').ok_or_else(invalid)?;
    Ok(RecordingCursor {
        started_at: DateTime::parse_from_rfc3339(started_at)
            .map_err(|_| invalid())?
            .with_timezone(&Utc),
        id: id.to_owned(),
    })
}

/// Recorded exec and attach sessions, newest first, from whichever replica
/// recorded them.
#[utoipa::path(get, path = "/api/kubernetes/recordings", tag = "operations",
    params(RecordingQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of recordings", body = RecordingPage),
        (status = 400, description = "Bad filter", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.audit.read denied", body = ErrorResponse),
        (status = 503, description = "The store is unavailable", body = ErrorResponse),
    ))]
async fn list_recordings(
    State(recordings): State<Arc<RecordingPolicy>>,
    State(policy): State<Arc<Policy>>,
    caller: Caller,
    Query(query): Query<RecordingQuery>,
) -> Result<Json<RecordingPage>, ApiError> {
    policy.check(&caller, Permission::AuditRead, &Target::none())?;
    let limit = match query.limit {
        None => 100,
        Some(limit @ 1..=1000) => limit,
        Some(_) => return Err(ApiError::Input("limit: must be 1 to 1000".into())),
    };
    let cursor = query.cursor.as_deref().map(recording_cursor).transpose()?;
    let filter = RecordingFilter {
        cluster: query.cluster,
        subject: query.subject,
        since: query.since,
        until: query.until,
    };
    let mut items = recordings
        .store()
        .list_recordings(&filter, cursor.as_ref(), limit + 1)
        .await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| {
            format!(
                "{}~{}",
                last.started_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                last.id
            )
        })
    } else {
        None
    };
    Ok(Json(RecordingPage { items, next_cursor }))
}

/// An exec/attach session recording (asciicast v2), as named by an audit record.
#[utoipa::path(get, path = "/api/kubernetes/recordings/{name}", tag = "operations",
    params(("name" = String, Path, description = "The `recording` of an audit record")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The asciicast v2 file", body = String, content_type = "application/x-asciicast"),
        (status = 400, description = "The name is not UTF-8", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.audit.read denied", body = ErrorResponse),
        (status = 404, description = "No such recording", body = ErrorResponse),
    ))]
async fn get_recording(
    State(recordings): State<Arc<RecordingPolicy>>,
    State(policy): State<Arc<Policy>>,
    caller: Caller,
    crate::extract::Path(name): crate::extract::Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    policy.check(&caller, Permission::AuditRead, &Target::none())?;
    let (_, contents) = recordings
        .read(&name)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::NotFound("no such recording".into()))?;
    let mut response = contents.into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-asciicast"),
    );
    Ok(response)
}
