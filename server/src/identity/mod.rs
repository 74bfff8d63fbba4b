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
use std::time::{Duration, SystemTime};

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
    verified: Option<VerifiedTokens>,
    guest: bool,
}

/// The most the identities of verified tokens may weigh, in bytes of their
/// subjects and groups (and a little for each entry).
const REMEMBERED_BYTES: u64 = 16 << 20;

/// JWTs that verified, by the SHA-256 of the whole token (its signature
/// included), so that a portal token's signature is checked once rather
/// than on every one of its requests: an ES256 or RS256 check costs more
/// CPU than the rest of a proxied request. A token is remembered until it
/// would no longer verify (its `exp` and the leeway) and at most
/// `auth.jwt.cacheSeconds`: that long it stays accepted after its key
/// leaves the JWKS. Only tokens that verified are kept, so callers without
/// one cannot fill it, and at most [`REMEMBERED_BYTES`] of them.
struct VerifiedTokens {
    cache: moka::sync::Cache<[u8; 32], Remembered>,
    longest: Duration,
    lookups: Option<LookupObserver>,
}

/// Told of each lookup of a verified token: `true` when it was remembered,
/// `false` when its signature is checked.
pub type LookupObserver = Arc<dyn Fn(bool) + Send + Sync>;

#[derive(Clone)]
struct Remembered {
    subject: Arc<str>,
    groups: Arc<[String]>,
    /// How long from when it was remembered (on the monotonic clock).
    lasts: Duration,
    /// When the token stops verifying, on the wall clock its `exp` is read
    /// by: a clock set forward, or a machine suspended (which stops the
    /// monotonic clock), must not keep an expired token accepted.
    valid_until: SystemTime,
}

impl Remembered {
    fn weight(&self) -> u32 {
        let groups: usize = self.groups.iter().map(|group| group.len() + 24).sum();
        u32::try_from(128 + self.subject.len() + groups).unwrap_or(u32::MAX)
    }
}

/// Each token is remembered for its own time.
struct UntilItExpires;

impl moka::Expiry<[u8; 32], Remembered> for UntilItExpires {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        remembered: &Remembered,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(remembered.lasts)
    }
}

impl VerifiedTokens {
    fn new(longest: Duration) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED_BYTES)
                .weigher(|_, remembered: &Remembered| remembered.weight())
                .expire_after(UntilItExpires)
                .build(),
            longest,
            lookups: None,
        }
    }

    fn get(&self, digest: &[u8; 32]) -> Option<Caller> {
        let found = self
            .cache
            .get(digest)
            .filter(|remembered| SystemTime::now() < remembered.valid_until);
        if let Some(lookups) = &self.lookups {
            lookups(found.is_some());
        }
        found.map(|remembered| Caller {
            subject: remembered.subject,
            groups: remembered.groups,
            kind: CallerKind::Jwt,
            note: None,
        })
    }

    fn remember(&self, digest: [u8; 32], verified: &jwt::Verified) {
        let Some(valid_until) = verified.valid_until else {
            return;
        };
        let Ok(left) = valid_until.duration_since(SystemTime::now()) else {
            return;
        };
        self.cache.insert(
            digest,
            Remembered {
                subject: verified.caller.subject.clone(),
                groups: verified.caller.groups.clone(),
                lasts: left.min(self.longest),
                valid_until,
            },
        );
    }
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
        let verified = config
            .jwt
            .as_ref()
            .map(|jwt| Duration::from_secs(jwt.cache_seconds))
            .filter(|longest| !longest.is_zero())
            .map(VerifiedTokens::new);
        Ok(Self {
            static_tokens,
            jwt,
            verified,
            guest,
        })
    }

    /// Whether JWTs that verified are remembered (a verifier is configured
    /// and `auth.jwt.cacheSeconds` is not 0).
    pub fn remembers_tokens(&self) -> bool {
        self.verified.is_some()
    }

    /// Tells `observer` of each lookup of a remembered token (the server
    /// counts them in `kubeportal_cache_lookups_total{cache="tokens"}`).
    pub fn observe_lookups(mut self, observer: LookupObserver) -> Self {
        if let Some(verified) = &mut self.verified {
            verified.lookups = Some(observer);
        }
        self
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
        let Some(verifier) = &self.jwt else {
            return Err(ApiError::Authentication("invalid token".into()));
        };
        if let Some(caller) = self
            .verified
            .as_ref()
            .and_then(|verified| verified.get(&token_digest))
        {
            return Ok(caller);
        }
        let verified = verifier.verify(token).await.map_err(|reason| {
            tracing::debug!(%reason, "token rejected");
            ApiError::Authentication(format!("invalid token: {reason}"))
        })?;
        // The guest's subject belongs to the guest alone: what the default
        // policy grants the loopback guest must not go to a token naming it,
        // as its subject or among its groups (rules match either).
        let guest = |reference: &str| reference.eq_ignore_ascii_case(GUEST_SUBJECT);
        if guest(&verified.caller.subject)
            || verified.caller.groups.iter().any(|group| guest(group))
        {
            return Err(ApiError::Authentication(format!(
                "invalid token: {GUEST_SUBJECT} is reserved for the guest"
            )));
        }
        if let Some(remembered) = &self.verified {
            remembered.remember(token_digest, &verified);
        }
        Ok(verified.caller)
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

    const SECRET: &str = "an-hs256-secret-for-the-token-cache-tests";

    /// The (hits, misses) an authenticator's observer was told of: a miss is
    /// a signature checked.
    #[derive(Clone, Default)]
    struct Lookups(Arc<std::sync::Mutex<(u64, u64)>>);

    impl Lookups {
        fn observer(&self) -> LookupObserver {
            let counts = self.0.clone();
            Arc::new(move |hit| {
                let mut counts = counts.lock().unwrap();
                if hit {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            })
        }
    }

    /// An HS256 verifier without leeway that remembers tokens for at most
    /// `cache_seconds`, its lookups `counted`.
    fn verifier(cache_seconds: u64, counted: &Lookups) -> Authenticator {
        let jwt = JwtConfig {
            hs256_secret: Some(SecretString::from(SECRET)),
            leeway_seconds: 0,
            cache_seconds,
            ..JwtConfig::default()
        };
        let config = AuthConfig {
            guest: None,
            static_tokens: Vec::new(),
            jwt: Some(jwt),
        };
        Authenticator::new(&config, false)
            .unwrap()
            .observe_lookups(counted.observer())
    }

    fn unix_now() -> f64 {
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    fn signed(subject: &str, exp: u64) -> String {
        signed_claims(serde_json::json!({"sub": subject, "ent": ["group:default/a"], "exp": exp}))
    }

    fn signed_claims(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn lookups(counted: &Lookups) -> (u64, u64) {
        *counted.0.lock().unwrap()
    }

    #[tokio::test]
    async fn a_verified_token_is_checked_once_then_remembered() {
        let counted = Lookups::default();
        let authenticator = verifier(60, &counted);
        let token = signed("user:default/alice", unix_now() as u64 + 600);
        for _ in 0..3 {
            let caller = authenticator.authenticate_token(&token).await.unwrap();
            assert_eq!(&*caller.subject, "user:default/alice");
            assert_eq!(*caller.groups, ["group:default/a"]);
            assert_eq!(caller.kind, CallerKind::Jwt);
            assert!(caller.note.is_none());
        }
        assert_eq!(lookups(&counted), (2, 1));
    }

    #[tokio::test]
    async fn a_token_altered_anywhere_is_checked_anew_and_refused() {
        let counted = Lookups::default();
        let authenticator = verifier(60, &counted);
        let exp = unix_now() as u64 + 600;
        let token = signed("user:default/alice", exp);
        authenticator.authenticate_token(&token).await.unwrap();
        let (header, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let other_payload = signed("user:default/mallory", exp);
        let other_payload = other_payload.split('.').nth(1).unwrap();
        let mut last = signature.chars().last().unwrap();
        last = if last == 'A' { 'B' } else { 'A' };
        let altered = [
            // Someone else's claims under the remembered token's signature.
            format!("{header}.{other_payload}.{signature}"),
            // The signature's last character.
            format!("{}{last}", &token[..token.len() - 1]),
            // Padding after the token.
            format!("{token}="),
        ];
        for token in &altered {
            assert!(
                authenticator.authenticate_token(token).await.is_err(),
                "{token}"
            );
        }
        assert_eq!(lookups(&counted), (0, 4));
        authenticator.authenticate_token(&token).await.unwrap();
        assert_eq!(lookups(&counted), (1, 4));
    }

    #[tokio::test]
    async fn a_remembered_token_is_refused_once_it_expires() {
        let counted = Lookups::default();
        let authenticator = verifier(60, &counted);
        let exp = unix_now() as u64 + 1;
        let token = signed("user:default/alice", exp);
        authenticator.authenticate_token(&token).await.unwrap();
        // Without leeway the library refuses it from the second after `exp`.
        let refused_from = (exp + 1) as f64 + 0.05;
        tokio::time::sleep(std::time::Duration::from_secs_f64(
            refused_from - unix_now(),
        ))
        .await;
        let error = authenticator.authenticate_token(&token).await.unwrap_err();
        assert!(error.to_string().contains("expired"), "{error}");
        assert_eq!(lookups(&counted), (0, 2));
    }

    #[tokio::test]
    async fn a_token_is_remembered_no_longer_than_cache_seconds() {
        let counted = Lookups::default();
        let authenticator = verifier(1, &counted);
        let token = signed("user:default/alice", unix_now() as u64 + 600);
        authenticator.authenticate_token(&token).await.unwrap();
        authenticator.authenticate_token(&token).await.unwrap();
        assert_eq!(lookups(&counted), (1, 1));
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        authenticator.authenticate_token(&token).await.unwrap();
        assert_eq!(lookups(&counted), (1, 2));
    }

    #[tokio::test]
    async fn without_a_cache_every_token_is_checked() {
        let counted = Lookups::default();
        let authenticator = verifier(0, &counted);
        let token = signed("user:default/alice", unix_now() as u64 + 600);
        for _ in 0..2 {
            authenticator.authenticate_token(&token).await.unwrap();
        }
        assert_eq!(lookups(&counted), (0, 0));
        assert!(!authenticator.remembers_tokens());
    }

    #[tokio::test]
    async fn refused_tokens_are_not_remembered() {
        let counted = Lookups::default();
        let authenticator = verifier(60, &counted);
        let now = unix_now() as u64;
        for token in [
            signed(GUEST_SUBJECT, now + 600),
            signed_claims(serde_json::json!({
                "sub": "user:default/alice", "ent": ["USER:default/guest"], "exp": now + 600,
            })),
            signed("user:default/alice", now - 100),
            signed("not an entity ref", now + 600),
        ] {
            for _ in 0..2 {
                assert!(authenticator.authenticate_token(&token).await.is_err());
            }
        }
        assert_eq!(lookups(&counted), (0, 8));
    }

    /// The wall clock, which `exp` is read by, may move apart from the
    /// monotonic one the cache expires entries by (set forward, or the
    /// machine suspended): a token past its time is not taken from memory.
    #[test]
    fn a_remembered_token_past_its_time_on_the_wall_clock_is_not_used() {
        let verified = VerifiedTokens::new(Duration::from_secs(60));
        let remembered = |valid_until| Remembered {
            subject: "user:default/alice".into(),
            groups: Arc::default(),
            lasts: Duration::from_secs(60),
            valid_until,
        };
        let now = SystemTime::now();
        verified
            .cache
            .insert([1; 32], remembered(now + Duration::from_secs(60)));
        verified
            .cache
            .insert([2; 32], remembered(now - Duration::from_secs(1)));
        assert!(verified.get(&[1; 32]).is_some());
        assert!(verified.get(&[2; 32]).is_none());
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
