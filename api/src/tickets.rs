//! `POST /api/kubernetes/clusters/{name}/tickets`: one-time tickets for
//! browser WebSockets, which cannot send headers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    /// The Kubernetes path of the upgrade, e.g. `/api/v1/namespaces/shop/pods/api-0/exec`
    /// (a query, if given, is ignored: the ticket is for the path).
    pub path: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TicketResponse {
    /// Pass as `?ticket=` on the upgrade request; valid once.
    pub ticket: String,
    pub expires_in_seconds: u64,
}
