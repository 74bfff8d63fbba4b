//! One-time tickets for browser WebSockets, which cannot send headers: a
//! caller asks for a ticket for one cluster path, and within 30 seconds one
//! upgrade of exactly that path may present it as `?ticket=` instead of an
//! `Authorization` header. Tickets are kept hashed, in memory, and never logged.

use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use axum::extract::State;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{Method, StatusCode};
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use super::ProxyState;
use crate::clusters::name_key;
use crate::error::{ApiError, ErrorResponse};
use crate::extract::{Json, Path};
use crate::identity::{Caller, CallerKind};
use crate::kubernetes::KubernetesRequest;
use crate::permissions::{Permission, ProxyTarget, Target};

/// How long a ticket may wait for its upgrade.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(30);

struct Ticket {
    issued_at: std::time::Instant,
    subject: String,
    groups: Vec<String>,
    cluster: String,
    path: String,
}

/// Issued tickets, by the SHA-256 of their value.
#[derive(Clone)]
pub struct Tickets {
    issued: Cache<[u8; 32], Arc<Ticket>>,
}

impl Default for Tickets {
    fn default() -> Self {
        Self {
            issued: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TICKET_LIFETIME)
                .build(),
        }
    }
}

fn digest(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

impl Tickets {
    fn issue(&self, caller: &Caller, cluster: &str, path: &str) -> String {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let ticket = URL_SAFE_NO_PAD.encode(bytes);
        self.issued.insert(
            digest(&ticket),
            Arc::new(Ticket {
                issued_at: std::time::Instant::now(),
                subject: caller.subject.clone(),
                groups: caller.groups.clone(),
                cluster: name_key(cluster),
                path: path.to_owned(),
            }),
        );
        ticket
    }

    /// The caller a ticket was issued to, if it is valid for this cluster and
    /// path and younger than [`TICKET_LIFETIME`]. A ticket is spent by any
    /// attempt to use it. The age is checked here rather than left to the
    /// cache's eviction, which may keep an expired entry a while.
    pub fn redeem(&self, ticket: &str, cluster: &str, path: &str) -> Option<Caller> {
        let issued = self.issued.remove(&digest(ticket))?;
        let fresh = issued.issued_at.elapsed() < TICKET_LIFETIME;
        (fresh && issued.cluster == name_key(cluster) && issued.path == path).then(|| Caller {
            subject: issued.subject.clone(),
            groups: issued.groups.clone(),
            kind: CallerKind::Ticket,
            note: None,
        })
    }
}

pub use kubeportal_api::tickets::{TicketRequest, TicketResponse};

/// Issues a one-time ticket for a browser WebSocket to one cluster path.
#[utoipa::path(post, path = "/api/kubernetes/clusters/{name}/tickets", tag = "proxy",
    params(("name" = String, Path, description = "Cluster name")),
    request_body = TicketRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "A ticket valid for one upgrade of that path within 30 s", body = TicketResponse),
        (status = 400, description = "Unsafe path", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.proxy denies that request", body = ErrorResponse),
        (status = 404, description = "No such cluster", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
    ))]
pub async fn issue_ticket(
    State(state): State<ProxyState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(request): Json<TicketRequest>,
) -> Result<(StatusCode, Json<TicketResponse>), ApiError> {
    let record = state
        .registry
        .resolve(&name)
        .await?
        .ok_or_else(|| crate::clusters::unknown_cluster(&state.policy, &caller, &name))?;
    caller.note_cluster(&record.name);
    let (path, query) = request
        .path
        .split_once('?')
        .map_or((request.path.as_str(), None), |(path, query)| {
            (path, Some(query))
        });
    // Upgrades are GETs: the ticket is only worth having if that GET is
    // allowed, read exactly as the upgrade will be.
    let target = KubernetesRequest::parse_target(&Method::GET, path, query).map_err(|error| {
        super::told_to_who_may_see(
            &state,
            &caller,
            Some(&record.name),
            ApiError::Input(format!("path: {error}")),
        )
    })?;
    state.policy.check(
        &caller,
        Permission::Proxy,
        &Target {
            cluster: Some(&record.name),
            proxy: Some(ProxyTarget {
                method: &Method::GET,
                path: &target.path,
                attributes: std::borrow::Cow::Borrowed(&target.attributes),
            }),
            impersonation: None,
        },
    )?;
    let ticket = state.tickets.issue(&caller, &record.name, &target.path);
    Ok((
        StatusCode::CREATED,
        Json(TicketResponse {
            ticket,
            expires_in_seconds: TICKET_LIFETIME.as_secs(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_works_once_for_its_cluster_and_path() {
        let tickets = Tickets::default();
        let caller = Caller::user("user:default/alice", vec!["group:default/sre".into()]);
        let ticket = tickets.issue(&caller, "Dev", "/api/v1/namespaces/a/pods/p/exec");
        assert!(
            tickets
                .redeem(&ticket, "dev", "/api/v1/namespaces/a/pods/p/attach")
                .is_none(),
            "wrong path spends it"
        );
        let ticket = tickets.issue(&caller, "dev", "/api/v1/namespaces/a/pods/p/exec");
        let redeemed = tickets
            .redeem(&ticket, "DEV", "/api/v1/namespaces/a/pods/p/exec")
            .unwrap();
        assert_eq!(redeemed.subject, "user:default/alice");
        assert!(
            tickets
                .redeem(&ticket, "dev", "/api/v1/namespaces/a/pods/p/exec")
                .is_none(),
            "spent"
        );
    }

    #[test]
    fn a_ticket_older_than_its_lifetime_is_refused() {
        let tickets = Tickets::default();
        let ticket = "an-old-ticket";
        tickets.issued.insert(
            digest(ticket),
            Arc::new(Ticket {
                issued_at: std::time::Instant::now() - TICKET_LIFETIME,
                subject: "user:default/alice".into(),
                groups: Vec::new(),
                cluster: "dev".into(),
                path: "/api/v1/namespaces/a/pods/p/exec".into(),
            }),
        );
        assert!(tickets
            .redeem(ticket, "dev", "/api/v1/namespaces/a/pods/p/exec")
            .is_none());
    }
}
