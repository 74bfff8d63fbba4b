//! Who is calling: a JWT (HS256 secret, RS/ES/EdDSA PEM keys, or a JWKS URL),
//! a static token from configuration, or the guest when enabled.
//!
//! Tokens are compared in constant time (static tokens by their SHA-256) and
//! never logged; a bad token is a 401 even where guests are allowed.

mod config;
pub mod jwt;
pub mod origin;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::context::AuditNote;
use crate::error::ApiError;

pub use config::{AuthConfig, AuthConfigError, StaticToken};
pub use jwt::{JwtConfig, JwtVerifier, KeyError, TokenError};

/// The subject of the guest.
pub const GUEST_SUBJECT: &str = "user:default/guest";

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    Guest,
    StaticToken,
    Jwt,
    /// A one-time WebSocket ticket issued to a portal identity.
    Ticket,
}

/// The portal identity of a request: a subject ref and the group refs it owns.
/// Both are shared, not copied, by every part of a request that keeps them
/// (the request's extensions, its audit note) and by every request of a
/// static token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: Arc<str>,
    pub groups: Arc<[String]>,
    pub kind: CallerKind,
    /// Where the policy and handlers note what the audit trail needs.
    pub note: Option<AuditNote>,
}

impl Caller {
    pub fn guest() -> Self {
        Self {
            subject: GUEST_SUBJECT.into(),
            groups: Arc::default(),
            kind: CallerKind::Guest,
            note: None,
        }
    }

    pub fn user(subject: &str, groups: Vec<String>) -> Self {
        Self {
            subject: subject.into(),
            groups: groups.into(),
            kind: CallerKind::Jwt,
            note: None,
        }
    }

    /// Notes the cluster a request concerns (for the audit trail and metrics).
    pub fn note_cluster(&self, cluster: &str) {
        if let Some(note) = &self.note {
            note.set_cluster(cluster);
        }
    }

    /// Notes the cluster a request goes to, by the name the registry
    /// resolved: metrics label it without looking it up again.
    pub fn note_registered_cluster(&self, cluster: &str) {
        if let Some(note) = &self.note {
            note.set_registered_cluster(cluster);
        }
    }
}

/// A subject or group that is not an entity ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be an entity ref such as user:default/alice")]
pub struct EntityRefError;

/// Checks that a ref looks like `kind:namespace/name` or `kind:name`.
pub fn validate_entity_ref(reference: &str) -> Result<(), EntityRefError> {
    let Some((kind, rest)) = reference.split_once(':') else {
        return Err(EntityRefError);
    };
    let name = rest.rsplit('/').next().unwrap_or_default();
    if kind.is_empty()
        || name.is_empty()
        || rest.split('/').count() > 2
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(EntityRefError);
    }
    Ok(())
}

struct StaticIdentity {
    subject: Arc<str>,
    groups: Arc<[String]>,
}

/// Turns request credentials into a [`Caller`].
pub struct Authenticator {
    static_tokens: HashMap<[u8; 32], StaticIdentity>,
    jwt: Option<JwtVerifier>,
    guest: bool,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator {
    pub fn new(config: &AuthConfig, guest: bool) -> Result<Self, KeyError> {
        let static_tokens = config
            .static_tokens
            .iter()
            .map(|token| {
                (
                    digest(token.token.expose_secret()),
                    StaticIdentity {
                        subject: token.subject.as_str().into(),
                        groups: token.groups.as_slice().into(),
                    },
                )
            })
            .collect();
        let jwt = config.jwt.as_ref().map(JwtVerifier::new).transpose()?;
        Ok(Self {
            static_tokens,
            jwt,
            guest,
        })
    }

    pub fn guest_enabled(&self) -> bool {
        self.guest
    }

    /// The caller of a request with these headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return if self.guest {
                Ok(Caller::guest())
            } else {
                Err(ApiError::Authentication("missing credentials".into()))
            };
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::Authentication("expected Authorization: Bearer <token>".into())
            })?;
        self.authenticate_token(token).await
    }

    pub async fn authenticate_token(&self, token: &str) -> Result<Caller, ApiError> {
        let token_digest = digest(token);
        // Constant-time: compare against every configured digest.
        let mut found = None;
        for (candidate, identity) in &self.static_tokens {
            if bool::from(candidate.ct_eq(&token_digest)) {
                found = Some(identity);
            }
        }
        if let Some(identity) = found {
            return Ok(Caller {
                subject: identity.subject.clone(),
                groups: identity.groups.clone(),
                kind: CallerKind::StaticToken,
                note: None,
            });
        }
        let caller = match &self.jwt {
            Some(verifier) => verifier.verify(token).await.map_err(|reason| {
                tracing::debug!(%reason, "token rejected");
                ApiError::Authentication(format!("invalid token: {reason}"))
            })?,
            None => return Err(ApiError::Authentication("invalid token".into())),
        };
        // The guest's subject belongs to the guest alone: what the default
        // policy grants the loopback guest must not go to a token naming it.
        if caller.subject.eq_ignore_ascii_case(GUEST_SUBJECT) {
            return Err(ApiError::Authentication(format!(
                "invalid token: sub {GUEST_SUBJECT} is reserved for the guest"
            )));
        }
        Ok(caller)
    }
}

/// The caller of a request, authenticated once (later extractions reuse it)
/// by the authenticator the application state holds.
impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let authenticator = Arc::<Authenticator>::from_ref(state);
        let mut caller = authenticator.authenticate(&parts.headers).await?;
        if let Some(note) = parts.extensions.get::<AuditNote>() {
            note.set_identity(&caller.subject, &caller.groups);
            caller.note = Some(note.clone());
        }
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// Shared handle to the authenticator.
pub type SharedAuthenticator = Arc<Authenticator>;

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn authenticator(guest: bool) -> Authenticator {
        Authenticator::new(
            &AuthConfig {
                guest: None,
                static_tokens: vec![StaticToken {
                    token: SecretString::from("a-static-token-of-some-length"),
                    subject: "user:default/script".into(),
                    groups: vec!["group:default/admins".into()],
                }],
                jwt: None,
            },
            guest,
        )
        .unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn static_tokens_identify_their_subject() {
        let caller = authenticator(false)
            .authenticate(&bearer("a-static-token-of-some-length"))
            .await
            .unwrap();
        assert_eq!(&*caller.subject, "user:default/script");
        assert_eq!(*caller.groups, ["group:default/admins"]);
    }

    #[tokio::test]
    async fn guests_only_when_enabled_and_never_with_a_bad_token() {
        assert_eq!(
            authenticator(true)
                .authenticate(&HeaderMap::new())
                .await
                .unwrap()
                .kind,
            CallerKind::Guest
        );
        assert!(authenticator(false)
            .authenticate(&HeaderMap::new())
            .await
            .is_err());
        assert!(authenticator(true)
            .authenticate(&bearer("wrong"))
            .await
            .is_err());
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, "Basic YTpi".parse().unwrap());
        assert!(authenticator(true).authenticate(&basic).await.is_err());
    }

    #[test]
    fn entity_refs_are_checked() {
        for good in ["user:default/alice", "group:team-a", "user:ns/a.b"] {
            validate_entity_ref(good).unwrap();
        }
        for bad in ["alice", ":a", "user:", "user:a/b/c", "user:default/al ice"] {
            assert!(validate_entity_ref(bad).is_err(), "{bad}");
        }
    }
}
