//! `POST /api/kubernetes/permissions/explain`: for admins, the decision the
//! policy makes for a subject and a request, and the rule that made it.

use axum::extract::State;
use http::Method;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Explanation, Permission, ProxyTarget, RequestAttributes, Target};
use crate::error::{ApiError, ErrorResponse};
use crate::extract::Json;
use crate::identity::{validate_entity_ref, Caller, CallerKind};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(explain))
}

/// A question to the policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExplainRequest {
    /// The subject, e.g. `user:default/alice`.
    pub subject: String,
    /// Group refs the subject owns, e.g. `group:default/sre`.
    #[serde(default)]
    pub groups: Vec<String>,
    pub permission: Permission,
    pub cluster: Option<String>,
    /// For `kubernetes.proxy`: the HTTP method (default GET).
    pub method: Option<String>,
    /// For `kubernetes.proxy`: the Kubernetes path, optionally with a query.
    pub path: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExplainResponse {
    #[serde(flatten)]
    pub explanation: Explanation,
    /// The Kubernetes request attributes derived from method and path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<RequestAttributes>,
}

/// Explains a decision (requires kubernetes.clusters.manage).
#[utoipa::path(post, path = "/api/kubernetes/permissions/explain", tag = "permissions",
    request_body = ExplainRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The decision and the deciding rule", body = ExplainResponse),
        (status = 400, description = "Invalid request", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.clusters.manage denied", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
    ))]
async fn explain(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<ExplainRequest>,
) -> Result<Json<ExplainResponse>, ApiError> {
    state
        .policy
        .check(&caller, Permission::ClustersManage, &Target::none())?;
    validate_entity_ref(&request.subject)
        .map_err(|message| ApiError::Input(format!("subject: {message}")))?;
    let subject = Caller {
        subject: request.subject.clone(),
        groups: request.groups.clone(),
        kind: CallerKind::Jwt,
        note: None,
    };
    let method = Method::from_bytes(
        request
            .method
            .as_deref()
            .unwrap_or("GET")
            .to_ascii_uppercase()
            .as_bytes(),
    )
    .map_err(|_| ApiError::Input("method: not an HTTP method".into()))?;
    let (path, query) = match request.path.as_deref() {
        Some(full) => {
            let (path, query) = full
                .split_once('?')
                .map_or((full, None), |(p, q)| (p, Some(q)));
            if !path.starts_with('/') {
                return Err(ApiError::Input("path: must start with /".into()));
            }
            (Some(path), query)
        }
        None => (None, None),
    };
    let proxy = path.map(|path| ProxyTarget {
        method: &method,
        path,
        attributes: RequestAttributes::parse(&method, path, query),
    });
    let attributes = proxy.as_ref().map(|proxy| proxy.attributes.clone());
    let target = Target {
        cluster: request.cluster.as_deref(),
        proxy,
    };
    Ok(Json(ExplainResponse {
        explanation: state.policy.explain(&subject, request.permission, &target),
        attributes,
    }))
}
