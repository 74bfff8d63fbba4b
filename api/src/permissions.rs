//! The permissions a policy grants, and `POST /api/kubernetes/permissions/explain`:
//! the decision the policy makes for a subject and a request, and the rule
//! that made it.

use serde::{Deserialize, Serialize};

use crate::kubernetes::RequestAttributes;

/// What a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Permission {
    #[serde(rename = "kubernetes.clusters.read")]
    ClustersRead,
    #[serde(rename = "kubernetes.clusters.manage")]
    ClustersManage,
    #[serde(rename = "kubernetes.resources.read")]
    ResourcesRead,
    #[serde(rename = "kubernetes.proxy")]
    Proxy,
    #[serde(rename = "kubernetes.audit.read")]
    AuditRead,
    /// Sending `Impersonate-User`/`Impersonate-Group` through the proxy.
    /// Only a rule naming it exactly grants it: no glob does.
    #[serde(rename = "kubernetes.impersonate")]
    Impersonate,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::ClustersRead,
        Permission::ClustersManage,
        Permission::ResourcesRead,
        Permission::Proxy,
        Permission::AuditRead,
        Permission::Impersonate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ClustersRead => "kubernetes.clusters.read",
            Permission::ClustersManage => "kubernetes.clusters.manage",
            Permission::ResourcesRead => "kubernetes.resources.read",
            Permission::Proxy => "kubernetes.proxy",
            Permission::AuditRead => "kubernetes.audit.read",
            Permission::Impersonate => "kubernetes.impersonate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum Decision {
    Allow,
    Deny,
}

/// Why a decision was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub decision: Decision,
    /// Index of the deciding rule in `permissions.rules`; absent for the default deny.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_index: Option<usize>,
    /// The deciding rule's description, or why nothing matched.
    pub reason: String,
}

/// A question to the policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// For `kubernetes.proxy`: the Kubernetes path, optionally with a query,
    /// as a client would send it (it is read as the proxy reads it).
    pub path: Option<String>,
    /// For `kubernetes.impersonate`: the user to impersonate.
    pub impersonate_user: Option<String>,
    /// For `kubernetes.impersonate`: the group to impersonate.
    pub impersonate_group: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExplainResponse {
    #[serde(flatten)]
    pub explanation: Explanation,
    /// The Kubernetes request attributes derived from method and path, as
    /// the API server derives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<RequestAttributes>,
    /// The canonical path the cluster would receive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical_path: Option<String>,
    /// The canonical query the cluster would receive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical_query: Option<String>,
    /// For a `get`, `list` or `watch` through the proxy: what the subject
    /// sees. `some`: lists and watches are filtered object by object, and a
    /// read of one object outside the grant is answered 404. Namespace
    /// labels are not known here, so rules with a `namespaceSelector` count
    /// as matching some namespaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<View>,
}

/// What a caller sees of a read of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum View {
    /// Everything the request reads.
    All,
    /// Only the objects the rules grant.
    Some,
    /// Nothing.
    None,
}
