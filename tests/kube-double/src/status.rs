//! Kubernetes `Status` errors: the one place where a failure becomes an HTTP answer,
//! with the reason, code and wording the API server uses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::resources::ResourceType;
use crate::selectors::SelectorError;
use crate::store::StoreError;

/// A failed request, answered as a `Status` object.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, resource: &ResourceType, name: &str) -> Self {
        let mut details = json!({"name": name, "kind": resource.plural});
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        self.details = Some(details);
        self
    }

    /// 401, as for a request without valid credentials.
    pub(crate) fn unauthorized() -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    /// 403, worded as the API server's authorizer denial.
    pub(crate) fn forbidden(
        group: &str,
        plural: &str,
        name: Option<&str>,
        verb: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Self {
        let qualified = if group.is_empty() {
            plural.to_owned()
        } else {
            format!("{plural}.{group}")
        };
        let subject = match name {
            Some(name) => format!("{qualified} {name:?}"),
            None => qualified,
        };
        let scope = match namespace {
            Some(namespace) => format!("in the namespace {namespace:?}"),
            None => "at the cluster scope".to_owned(),
        };
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"kube-double-caller\" cannot {verb} resource {resource:?} in API group {group:?} {scope}"
            ),
        )
    }

    /// 400 BadRequest.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 404 for a path no resource answers.
    pub(crate) fn resource_not_found() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404 for a missing object.
    pub(crate) fn not_found(resource: &ResourceType, name: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified_plural()),
        )
        .with_details(resource, name)
    }

    /// 409 for a create whose name is taken.
    pub(crate) fn already_exists(resource: &ResourceType, name: &str) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified_plural()),
        )
        .with_details(resource, name)
    }

    /// 409 for a write based on a stale resourceVersion or a failed precondition.
    pub(crate) fn conflict(resource: &ResourceType, name: &str, cause: &str) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {cause}",
                resource.qualified_plural()
            ),
        )
        .with_details(resource, name)
    }

    /// 422 for an object that fails validation.
    pub(crate) fn invalid(resource: &ResourceType, name: &str, cause: &str) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{} \"{name}\" is invalid: {cause}", resource.kind),
        )
        .with_details(resource, name)
    }

    /// 405 for a verb the resource does not support.
    pub(crate) fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 415 for a body in a format the double does not read.
    pub(crate) fn unsupported_media_type(content_type: &str, accepted: &str) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: {accepted}"
            ),
        )
    }

    /// 406 for a representation the double cannot produce (`Accept`, or a
    /// transformation that does not fit the request).
    pub(crate) fn not_acceptable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_ACCEPTABLE, "NotAcceptable", message)
    }

    /// 410 for a watch from a resourceVersion older than the kept history.
    pub(crate) fn expired(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::GONE, "Expired", message)
    }

    /// Any status, for failures injected with `fail_resource`.
    pub(crate) fn injected(code: u16, resource: &ResourceType) -> Self {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = match code.as_u16() {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "Unknown",
        };
        ApiError::new(
            code,
            reason,
            format!(
                "kube-double: injected {} for {}",
                code.as_u16(),
                resource.qualified_plural()
            ),
        )
    }

    /// The `Status` object.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { resource, name } => ApiError::not_found(&resource, &name),
            StoreError::AlreadyExists { resource, name } => {
                ApiError::already_exists(&resource, &name)
            }
            StoreError::Conflict {
                resource,
                name,
                cause,
            } => ApiError::conflict(&resource, &name, &cause),
            StoreError::Invalid {
                resource,
                name,
                cause,
            } => ApiError::invalid(&resource, &name, &cause),
            StoreError::BadRequest(message) => ApiError::bad_request(message),
            StoreError::Expired(message) => ApiError::expired(message),
        }
    }
}

impl From<SelectorError> for ApiError {
    fn from(error: SelectorError) -> Self {
        ApiError::bad_request(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, Json(self.to_status())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_status_matches_the_api_server() {
        assert_eq!(
            ApiError::unauthorized().to_status(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
        );
    }

    #[test]
    fn not_found_names_the_group_qualified_resource() {
        let deployments = ResourceType::custom("apps", "v1", "deployments", "Deployment", true);
        let status = ApiError::not_found(&deployments, "api").to_status();
        assert_eq!(status["message"], "deployments.apps \"api\" not found");
        assert_eq!(status["details"]["group"], "apps");
        assert_eq!(status["code"], 404);
    }
}
