//! The attributes kube-apiserver derives for a request, as the policy's
//! explain route reports them.

use serde::{Deserialize, Serialize};

/// What a request does, coarsely. `exec` covers exec, attach and portforward
/// and every `proxy` subresource or verb (they reach arbitrary endpoints, the
/// kubelet's exec included); a request that cannot be classified counts as
/// `write` (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Read,
    Write,
    Delete,
    Exec,
}

impl Action {
    pub fn parse(text: &str) -> Option<Action> {
        match text.to_ascii_lowercase().as_str() {
            "read" => Some(Action::Read),
            "write" => Some(Action::Write),
            "delete" => Some(Action::Delete),
            "exec" => Some(Action::Exec),
            _ => None,
        }
    }
}

/// The attributes of one Kubernetes API request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RequestAttributes {
    /// Whether the path names an API resource (`/api/v1/…`, `/apis/g/v/…`).
    pub is_resource_request: bool,
    /// For resource requests: get, list, watch, create, update, patch, delete,
    /// deletecollection, proxy (the legacy `/proxy/` prefix), or `""` for a
    /// method the API server has no verb for; exec, attach and portforward
    /// are `create` whatever the method. For other paths the lower-cased
    /// HTTP method.
    pub verb: String,
    pub action: Action,
    /// `""` for the core group; absent for non-resource paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// From the path, or for a list or watch from a `metadata.name` field
    /// selector (how kubectl watches one object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
