//! One-time tickets for browser WebSockets, which cannot send headers: a
//! caller asks for a ticket for one cluster path, and within 30 seconds one
//! upgrade of exactly that path may present it as `?ticket=` instead of an
//! `Authorization` header.
//!
//! A ticket is its own record: the caller, cluster, path and expiry, sealed
//! (AES-256-GCM) with the secret key every replica shares, so any replica
//! redeems it. It is spent in the store, by its SHA-256, the first time any
//! replica redeems it; spent rows are pruned once expired (by some minutes,
//! so that replicas' clocks need not agree). Tickets are
//! never logged.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ProxyState;
use crate::audit::SessionStore;
use crate::clusters::name_key;
use crate::error::{ApiError, ErrorResponse};
use crate::extract::{Json, Path};
use crate::identity::{Caller, CallerKind};
use crate::kubernetes::KubernetesRequest;
use crate::permissions::{Permission, ProxyTarget, Target};
use crate::secrets::{SecretBox, SecretField};

/// How long a ticket may wait for its upgrade.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(30);

/// How often spent tickets past their expiry are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How long a spent ticket is kept past its expiry: replicas' clocks may
/// differ by this much without a spent ticket being honoured again (one
/// replica pruning by its clock while another still judges it unexpired
/// by its own).
const CLOCK_SKEW_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Spent tickets that expired before this may be deleted.
fn prune_before(now: DateTime<Utc>) -> DateTime<Utc> {
    now - CLOCK_SKEW_MARGIN
}

const TICKET_PREFIX: &str = "kt1.";

/// What a ticket holds, sealed.
#[derive(Serialize, Deserialize)]
struct Claims {
    #[serde(rename = "s")]
    subject: String,
    #[serde(rename = "g")]
    groups: Vec<String>,
    /// The cluster's name key (case-folded).
    #[serde(rename = "c")]
    cluster: String,
    #[serde(rename = "p")]
    path: String,
    /// Expiry, Unix milliseconds.
    #[serde(rename = "e")]
    expires: i64,
}

/// Issues and redeems tickets.
#[derive(Clone)]
pub struct Tickets {
    secrets: SecretBox,
    store: Arc<dyn SessionStore>,
}

fn digest(ticket: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(ticket.as_bytes()))
}

impl Tickets {
    pub fn new(secrets: SecretBox, store: Arc<dyn SessionStore>) -> Self {
        Self { secrets, store }
    }

    /// Deletes spent tickets past their expiry, every minute, for as long
    /// as the runtime runs.
    pub fn prune_in_background(&self) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PRUNE_EVERY);
            loop {
                every.tick().await;
                if let Err(error) = store.prune_tickets(prune_before(Utc::now())).await {
                    tracing::warn!(%error, "cannot prune spent tickets");
                }
            }
        });
    }

    fn issue(&self, caller: &Caller, cluster: &str, path: &str) -> String {
        self.issue_expiring(caller, cluster, path, Utc::now() + TICKET_LIFETIME)
    }

    fn issue_expiring(
        &self,
        caller: &Caller,
        cluster: &str,
        path: &str,
        expires: DateTime<Utc>,
    ) -> String {
        let claims = Claims {
            subject: caller.subject.to_string(),
            groups: caller.groups.to_vec(),
            cluster: name_key(cluster).into_owned(),
            path: path.to_owned(),
            expires: expires.timestamp_millis(),
        };
        let plaintext = serde_json::to_string(&claims).expect("claims serialize");
        let sealed = self
            .secrets
            .seal(SecretField::Ticket, &SecretString::from(plaintext));
        format!("{TICKET_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The caller a ticket was issued to, if it is valid for this cluster
    /// and path, unexpired, and not yet spent on any replica. Presenting a
    /// valid ticket spends it, whatever the path; a ticket that cannot be
    /// spent (the store is down) is refused.
    pub async fn redeem(&self, ticket: &str, cluster: &str, path: &str) -> Option<Caller> {
        let sealed = URL_SAFE_NO_PAD
            .decode(ticket.strip_prefix(TICKET_PREFIX)?)
            .ok()?;
        let opened = self.secrets.open(SecretField::Ticket, &sealed).ok()?;
        let claims: Claims = serde_json::from_str(opened.expose_secret()).ok()?;
        let expires = DateTime::<Utc>::from_timestamp_millis(claims.expires)?;
        if expires <= Utc::now() {
            return None;
        }
        match self.store.spend_ticket(&digest(ticket), expires).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(error) => {
                tracing::warn!(%error, "cannot spend a ticket; refusing it");
                return None;
            }
        }
        (claims.cluster == name_key(cluster) && claims.path == path).then_some(Caller {
            subject: claims.subject.into(),
            groups: claims.groups.into(),
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
        (status = 400, description = "Unsafe path, or not the exec, attach or portforward of a pod", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.proxy denies that request; the message carries the deny rule's description when it has one and the caller may read the cluster", body = ErrorResponse),
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
    caller.note_registered_cluster(&record.name);
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
    // Tickets open a browser's exec, attach or port-forward WebSocket;
    // nothing else needs one.
    let attributes = &target.attributes;
    let session = attributes.resource.as_deref() == Some("pods")
        && matches!(
            attributes.subresource.as_deref(),
            Some("exec" | "attach" | "portforward")
        )
        && attributes.name.is_some();
    if !session {
        return Err(super::told_to_who_may_see(
            &state,
            &caller,
            Some(&record.name),
            ApiError::Input(
                "path: tickets are for a pod's exec, attach or portforward only".into(),
            ),
        ));
    }
    let upgrade = Target {
        cluster: Some(&record.name),
        proxy: Some(ProxyTarget {
            method: &Method::GET,
            path: &target.path,
            attributes: std::borrow::Cow::Borrowed(&target.attributes),
        }),
        impersonation: None,
    };
    if let Err(denied) = state.policy.check(&caller, Permission::Proxy, &upgrade) {
        // A terminal asks for its ticket first: a caller who may see the
        // cluster is told why in the deny rule's own words (its description).
        return Err(
            match state
                .policy
                .denial_reason(&caller, Permission::Proxy, &upgrade)
            {
                Some(reason) => super::told_to_who_may_see(
                    &state,
                    &caller,
                    Some(&record.name),
                    ApiError::Refused(format!("Unauthorized: {reason}")),
                ),
                None => denied,
            },
        );
    }
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

    async fn tickets() -> (Tickets, crate::store::Database) {
        let database = crate::store::connect("sqlite::memory:", Some(1))
            .await
            .unwrap();
        let secrets =
            SecretBox::from_base64(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
                .unwrap();
        (Tickets::new(secrets, database.sessions()), database)
    }

    const EXEC: &str = "/api/v1/namespaces/a/pods/p/exec";

    #[tokio::test]
    async fn a_ticket_works_once_for_its_cluster_and_path() {
        let (tickets, _database) = tickets().await;
        let caller = Caller::user("user:default/alice", vec!["group:default/sre".into()]);
        let ticket = tickets.issue(&caller, "Dev", EXEC);
        assert!(
            tickets
                .redeem(&ticket, "dev", "/api/v1/namespaces/a/pods/p/attach")
                .await
                .is_none(),
            "wrong path spends it"
        );
        assert!(
            tickets.redeem(&ticket, "dev", EXEC).await.is_none(),
            "spent"
        );
        let ticket = tickets.issue(&caller, "dev", EXEC);
        let redeemed = tickets.redeem(&ticket, "DEV", EXEC).await.unwrap();
        assert_eq!(&*redeemed.subject, "user:default/alice");
        assert_eq!(*redeemed.groups, ["group:default/sre"]);
        assert!(
            tickets.redeem(&ticket, "dev", EXEC).await.is_none(),
            "spent"
        );
    }

    #[tokio::test]
    async fn expired_forged_and_foreign_tickets_are_refused() {
        let (tickets, database) = tickets().await;
        let caller = Caller::user("user:default/alice", Vec::new());
        let old = tickets.issue_expiring(
            &caller,
            "dev",
            EXEC,
            Utc::now() - chrono::Duration::milliseconds(1),
        );
        assert!(tickets.redeem(&old, "dev", EXEC).await.is_none());
        let ticket = tickets.issue(&caller, "dev", EXEC);
        let mut forged = ticket.clone().into_bytes();
        let last = forged.len() - 3;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(tickets.redeem(&forged, "dev", EXEC).await.is_none());
        for garbage in ["", "kt1.", "kt1.!!!", "not-a-ticket"] {
            assert!(
                tickets.redeem(garbage, "dev", EXEC).await.is_none(),
                "{garbage}"
            );
        }
        // Sealed with another key: another installation's ticket.
        let other = Tickets::new(
            SecretBox::from_base64(&base64::engine::general_purpose::STANDARD.encode([8u8; 32]))
                .unwrap(),
            database.sessions(),
        );
        assert!(other.redeem(&ticket, "dev", EXEC).await.is_none());
        assert!(tickets.redeem(&ticket, "dev", EXEC).await.is_some());
        // Spent rows go once expired, not before.
        let sessions = database.sessions();
        assert_eq!(sessions.prune_tickets(Utc::now()).await.unwrap(), 0);
        assert_eq!(
            sessions
                .prune_tickets(Utc::now() + TICKET_LIFETIME + Duration::from_secs(1))
                .await
                .unwrap(),
            1
        );
    }

    /// A replica whose clock runs minutes ahead prunes no spent ticket that
    /// the others still judge unexpired.
    #[test]
    fn spent_tickets_are_kept_past_their_expiry_by_the_clock_margin() {
        let now = Utc::now();
        let expires = now + TICKET_LIFETIME;
        // A replica 10 s (or 4 minutes) ahead, pruning as the ticket nears expiry here.
        for ahead in [10, 240] {
            let its_now = now + chrono::TimeDelta::seconds(ahead);
            assert!(prune_before(its_now) < expires, "{ahead} s ahead");
        }
        // Long after, it goes.
        assert!(prune_before(expires + chrono::TimeDelta::minutes(6)) > expires);
    }
}
