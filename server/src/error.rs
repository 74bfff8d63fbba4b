//! The one place errors become HTTP.
//!
//! Portal routes answer Backstage's envelope
//! `{"error":{"name","message"},"request":{"method","url"},"response":{"statusCode"}}`;
//! the path-form proxy (`/api/kubernetes/clusters/{name}/proxy/…`) answers a
//! Kubernetes `Status` so kubectl prints it. Internal causes are logged, never
//! returned, and no message ever carries a credential.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error a handler returns. Each variant's doc names its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `InputError`: the request is malformed; the message names the field.
    #[error("{0}")]
    Input(String),
    /// 401 `AuthenticationError`: no valid identity.
    #[error("{0}")]
    Authentication(String),
    /// 403 `NotAllowedError`: the policy denies it. The message is always
    /// `Unauthorized` and never names the cluster.
    #[error("Unauthorized")]
    NotAllowed,
    /// 403 `NotAllowedError` for a reason other than the policy (e.g. a
    /// session that must be recorded and cannot be); the message says why.
    #[error("{0}")]
    Refused(String),
    /// 404 `NotFoundError`.
    #[error("{0}")]
    NotFound(String),
    /// 405 `MethodNotAllowedError`: the route exists, the method does not
    /// (`Allow` lists the methods it has).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 406 `NotAcceptableError`: no media type the caller accepts can be
    /// served (a filtered list asked for in protobuf only).
    #[error("{0}")]
    NotAcceptable(String),
    /// 409 `ConflictError`: duplicate name or stale version.
    #[error("{0}")]
    Conflict(String),
    /// 413 `PayloadTooLargeError`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 501 `NotImplementedError`: a request in a form kubeportal does not
    /// take (a body in a transfer coding other than chunked alone).
    #[error("{0}")]
    NotImplemented(String),
    /// 502 `BadGatewayError`: a cluster refused, reset or failed TLS.
    #[error("{0}")]
    BadGateway(String),
    /// 503 `ServiceUnavailableError`: the store is unreachable (or, on the
    /// path-form proxy, the cluster is, as the API server says of a backend).
    #[error("{0}")]
    Unavailable(String),
    /// 504 `GatewayTimeoutError`: a cluster did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// 500 `InternalServerError`: the cause is logged, not returned.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(error.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Input(_) => StatusCode::BAD_REQUEST,
            ApiError::Authentication(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotAllowed | ApiError::Refused(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ApiError::Input(_) => "InputError",
            ApiError::Authentication(_) => "AuthenticationError",
            ApiError::NotAllowed | ApiError::Refused(_) => "NotAllowedError",
            ApiError::NotFound(_) => "NotFoundError",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowedError",
            ApiError::NotAcceptable(_) => "NotAcceptableError",
            ApiError::Conflict(_) => "ConflictError",
            ApiError::PayloadTooLarge(_) => "PayloadTooLargeError",
            ApiError::NotImplemented(_) => "NotImplementedError",
            ApiError::BadGateway(_) => "BadGatewayError",
            ApiError::Unavailable(_) => "ServiceUnavailableError",
            ApiError::GatewayTimeout(_) => "GatewayTimeoutError",
            ApiError::Internal(_) => "InternalServerError",
        }
    }
}

/// What an error response carries until [`envelope`] renders it with the request.
#[derive(Debug, Clone)]
struct PendingError {
    name: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "request failed");
        }
        let mut response = self.status().into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(PendingError {
            name: self.name(),
            message: self.to_string(),
        });
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::BytesRejection(inner)
                if inner.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::PayloadTooLarge("request body is too large".into())
            }
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::Input("expected Content-Type: application/json".into())
            }
            other => ApiError::Input(format!(
                "invalid JSON body: {}",
                redact_quoted(&other.body_text())
            )),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::Input(format!(
            "invalid path: {}",
            redact_quoted(&rejection.body_text())
        ))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Input(format!(
            "invalid query string: {}",
            redact_quoted(&rejection.body_text())
        ))
    }
}

/// Deserializer messages quote offending values ("invalid type: string \"…\"");
/// a value may be a secret, so quoted parts are elided.
pub fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for character in message.chars() {
        if character == '"' {
            if !inside {
                out.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(character);
        }
    }
    out
}

pub use kubeportal_api::error::{
    ErrorDetail, ErrorRequest, ErrorResponse, ErrorStatus, KubernetesStatus,
};

fn kubernetes_reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        413 => "RequestEntityTooLarge",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

/// Whether a path is in the path-form proxy family, whose errors are `Status` objects.
pub fn is_path_form_proxy(path: &str) -> bool {
    // One leading slash: the router does not match `//api/...` to the proxy.
    let Some(path) = path.strip_prefix('/') else {
        return false;
    };
    let mut segments = path.split('/');
    matches!(
        (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next()
        ),
        (
            Some("api"),
            Some("kubernetes"),
            Some("clusters" | "fleet"),
            Some(_),
            Some("proxy")
        )
    )
}

/// Middleware (around `inner`): renders errors produced anywhere below it in the right shape
/// for the route family, with the request's method and path.
pub async fn envelope<F>(request: Request, inner: impl FnOnce(Request) -> F) -> Response
where
    F: std::future::Future<Output = Response>,
{
    // Cheap handles (reference counts), turned into text only for an error.
    let method = request.method().clone();
    let uri = request.uri().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let mut response = inner(request).await;
    let Some(pending) = response.extensions_mut().remove::<PendingError>() else {
        return response;
    };
    let path = uri.path().to_owned();
    let route = route.map(|matched| matched.as_str().to_owned());
    let status = response.status();
    let body = if is_path_form_proxy(&path) {
        serde_json::to_vec(&KubernetesStatus {
            kind: "Status".into(),
            api_version: "v1".into(),
            metadata: Default::default(),
            status: "Failure".into(),
            message: pending.message,
            reason: kubernetes_reason(status).into(),
            code: status.as_u16(),
        })
    } else {
        // A denial must not reveal which cluster was asked about: report the
        // route template (`/api/kubernetes/clusters/{name}`), not the path.
        let url = match (pending.name, route) {
            ("NotAllowedError", Some(route)) => route,
            _ => path,
        };
        serde_json::to_vec(&ErrorResponse {
            error: ErrorDetail {
                name: pending.name.to_owned(),
                message: pending.message,
            },
            request: ErrorRequest {
                method: method.to_string(),
                url,
            },
            response: ErrorStatus {
                status_code: status.as_u16(),
            },
        })
    }
    .unwrap_or_default();
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Fallback for a known route asked with a method it does not have.
pub async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on this route"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_elided() {
        assert_eq!(
            redact_quoted("invalid type: string \"hunter2\", expected a map"),
            "invalid type: string \"…\", expected a map"
        );
    }

    #[test]
    fn path_form_family_is_recognised() {
        assert!(is_path_form_proxy(
            "/api/kubernetes/clusters/dev/proxy/api/v1/pods"
        ));
        assert!(is_path_form_proxy("/api/kubernetes/clusters/dev/proxy"));
        assert!(!is_path_form_proxy("/api/kubernetes/clusters/dev"));
        assert!(!is_path_form_proxy("/api/kubernetes/proxy/api/v1/pods"));
        assert!(!is_path_form_proxy("//api/kubernetes/clusters/dev/proxy"));
        assert!(!is_path_form_proxy("api/kubernetes/clusters/dev/proxy"));
    }
}
