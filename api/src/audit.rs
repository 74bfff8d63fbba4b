//! `GET /api/kubernetes/audit`: the audit trail, one record for every proxied
//! call, every registry write and every denial, newest first.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One audited request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub time: DateTime<Utc>,
    /// `proxy`, `registry` or `denial`.
    pub kind: String,
    pub subject: String,
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub method: String,
    /// For a proxied call, the canonical Kubernetes path the cluster received;
    /// otherwise the request path.
    pub path: String,
    /// The query string with sensitive values replaced by `***` (for a
    /// proxied call, the canonical query the cluster received).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// For a proxied call, the Kubernetes verb the policy judged (as the API
    /// server derives it: `watch` for `?watch=yes`, `create` for exec, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    /// The Kubernetes user the caller impersonated (a `kubernetes.impersonate`
    /// grant); `subject` stays the portal identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impersonated_groups: Vec<String>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: u64,
    /// `allow`, `deny`, or `none` when no policy decision was needed.
    pub decision: String,
    /// The deciding rule (`rule 3: description`), absent for the default deny.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The session recording (`GET /api/kubernetes/recordings/{name}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
}

/// A stored record with its id (the paging cursor).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StoredAuditRecord {
    pub id: i64,
    #[serde(flatten)]
    pub record: AuditRecord,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<StoredAuditRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// One recorded exec or attach session (`GET /api/kubernetes/recordings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RecordingInfo {
    /// What the audit record's `recording` names; read it at
    /// `GET /api/kubernetes/recordings/{id}`.
    pub id: String,
    pub cluster: String,
    pub subject: String,
    /// The Kubernetes path of the session (`.../pods/{pod}/exec`).
    pub path: String,
    /// `websocket` or `spdy`.
    pub protocol: String,
    pub started_at: DateTime<Utc>,
    /// Absent while the session runs (or when the replica recording it
    /// stopped without finishing it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Bytes of the recording.
    pub bytes: u64,
    /// The session outgrew the size limit and was recorded up to it.
    pub truncated: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RecordingPage {
    /// Newest first.
    pub items: Vec<RecordingInfo>,
    /// Pass as `cursor` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
