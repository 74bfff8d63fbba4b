//! Entity-scoped object queries (Backstage compatible): the three request
//! bodies and the answer they share (Backstage's `ObjectsByEntityResponse`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Backstage's error types. A list that misses the cluster deadline is a
/// `FETCH_ERROR` whose message names the list and the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorType {
    BadRequest,
    UnauthorizedError,
    NotFound,
    SystemError,
    UnknownError,
    FetchError,
}

/// A problem with one cluster or one of its lists.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FetchError {
    pub error_type: ErrorType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// The list that failed, e.g. `/apis/apps/v1/namespaces/shop/deployments`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The objects of one type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FetchResult {
    /// `pods`, `services`, …, or `customresources`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Kubernetes objects as the cluster returned them (Secret values masked).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub resources: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub dashboard_parameters: Option<serde_json::Map<String, Value>>,
}

/// What one cluster contributed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterObjects {
    pub cluster: ClusterRef,
    pub resources: Vec<FetchResult>,
    /// Backstage's client pod status (`{pod, cpu, memory, containers}`: usage
    /// in cores and bytes against the requests and limits of the pod spec), one
    /// per pod listed, when the cluster serves `metrics.k8s.io`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub pod_metrics: Vec<Value>,
    pub errors: Vec<FetchError>,
}

/// The answer of every object query (Backstage's `ObjectsByEntityResponse`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectsResponse {
    pub items: Vec<ClusterObjects>,
}

// The requests' `auth` is left out when it is `null` (no client-side
// credentials), which the server reads as it reads an absent one.

/// `POST /services/{entityName}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ObjectsByEntityRequest {
    /// A catalog entity (`metadata.name` and the `backstage.io/kubernetes-*` annotations are read).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub entity: Value,
    /// Client-side cluster credentials: `{"oidc": {"<provider>": "<token>"}, "google": "<token>", "client": "<token>"}`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub auth: Value,
}

/// `POST /resources/workloads/query`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkloadsByEntityRequest {
    /// e.g. `component:default/shop-api`.
    pub entity_ref: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub auth: Value,
}

/// `POST /resources/custom/query`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CustomResourcesByEntityRequest {
    pub entity_ref: String,
    pub custom_resources: Vec<CustomResourceConfig>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub auth: Value,
}

/// A custom resource type to include in object queries.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomResourceConfig {
    pub group: String,
    pub api_version: String,
    pub plural: String,
}
