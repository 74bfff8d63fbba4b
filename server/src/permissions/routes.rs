//! `POST /api/kubernetes/permissions/explain`: for admins, the decision the
//! policy makes for a subject and a request, and the rule that made it.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use http::Method;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Impersonation, Permission, Policy, ProxyTarget, Target};
use crate::error::{ApiError, ErrorResponse};
use crate::extract::Json;
use crate::identity::{validate_entity_ref, Authenticator, Caller, CallerKind};
use crate::kubernetes::{KubernetesRequest, Query};

pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Policy>: FromRef<S>,
    Arc<Authenticator>: FromRef<S>,
{
    OpenApiRouter::new().routes(routes!(explain))
}

pub use kubeportal_api::permissions::{ExplainRequest, ExplainResponse};

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
    State(policy): State<Arc<Policy>>,
    caller: Caller,
    Json(request): Json<ExplainRequest>,
) -> Result<Json<ExplainResponse>, ApiError> {
    policy.check(&caller, Permission::ClustersManage, &Target::none())?;
    validate_entity_ref(&request.subject)
        .map_err(|message| ApiError::Input(format!("subject: {message}")))?;
    let subject = Caller {
        subject: request.subject.as_str().into(),
        groups: request.groups.as_slice().into(),
        kind: CallerKind::Jwt,
        note: None,
    };
    // Methods are case-sensitive, as on the wire: `get` is not GET.
    let method = Method::from_bytes(request.method.as_deref().unwrap_or("GET").as_bytes())
        .map_err(|_| ApiError::Input("method: not an HTTP method".into()))?;
    let target = match request.path.as_deref() {
        Some(full) => {
            let (path, query) = full
                .split_once('?')
                .map_or((full, None), |(p, q)| (p, Some(q)));
            if !path.starts_with('/') {
                return Err(ApiError::Input("path: must start with /".into()));
            }
            // Read as the proxy reads it: the portal's ticket is not forwarded.
            let invalid = |error: &dyn std::fmt::Display| ApiError::Input(format!("path: {error}"));
            let mut query = Query::parse(query).map_err(|error| invalid(&error))?;
            query.take("ticket");
            let target =
                KubernetesRequest::parse(&method, path, query).map_err(|error| invalid(&error))?;
            Some(target)
        }
        None => None,
    };
    let impersonation = match (&request.impersonate_user, &request.impersonate_group) {
        (Some(user), None) => Some(Impersonation::User(user)),
        (None, Some(group)) => Some(Impersonation::Group(group)),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(ApiError::Input(
                "impersonateUser, impersonateGroup: ask about one at a time".into(),
            ))
        }
    };
    let proxy = target.as_ref().map(|target| ProxyTarget {
        method: &method,
        path: &target.path,
        attributes: std::borrow::Cow::Borrowed(&target.attributes),
    });
    let policy_target = Target {
        cluster: request.cluster.as_deref(),
        proxy,
        impersonation,
    };
    let view = target
        .as_ref()
        .filter(|target| {
            request.permission == Permission::Proxy && super::is_object_read(&target.attributes)
        })
        .map(|_| policy.view(&subject, &policy_target, &Default::default()));
    Ok(Json(ExplainResponse {
        explanation: policy.explain(&subject, request.permission, &policy_target),
        view,
        attributes: target.as_ref().map(|target| target.attributes.clone()),
        canonical_path: target.as_ref().map(|target| target.path.clone()),
        canonical_query: target.as_ref().and_then(|target| target.query_string()),
    }))
}
