//! How kubeportal answers errors: portal routes with Backstage's envelope
//! `{"error":{"name","message"},"request":{"method","url"},"response":{"statusCode"}}`,
//! the path-form proxy (`/api/kubernetes/clusters/{name}/proxy/…`) with a
//! Kubernetes `Status`.

use serde::{Deserialize, Serialize};

/// Backstage's error envelope.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    pub error: ErrorDetail,
    pub request: ErrorRequest,
    pub response: ErrorStatus,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// `InputError`, `AuthenticationError`, `NotAllowedError`, `NotFoundError`,
    /// `ConflictError`, or a 5xx name.
    #[cfg_attr(feature = "openapi", schema(example = "NotFoundError"))]
    pub name: String,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorRequest {
    pub method: String,
    /// The request path (the query string is left out: it may hold tickets).
    pub url: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ErrorStatus {
    pub status_code: u16,
}

/// A Kubernetes `Status` object, as the path-form proxy answers its own errors.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KubernetesStatus {
    pub kind: String,
    pub api_version: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub status: String,
    pub message: String,
    pub reason: String,
    pub code: u16,
}
