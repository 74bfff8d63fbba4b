//! JWT verification: HS256 with a shared secret, RS*/PS*/ES*/EdDSA with PEM
//! public keys, or keys from a JWKS URL (Backstage's
//! `/api/auth/.well-known/jwks.json`). `alg: none` is never accepted.
//!
//! JWKS keys are cached and refetched when a token names an unknown `kid`,
//! at most once per `jwksMinRefreshSeconds`, so forged tokens cannot make
//! kubeportal hammer the JWKS endpoint.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::{Caller, CallerKind, EntityRefError};

/// `auth.jwt:` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtConfig {
    pub hs256_secret: Option<SecretString>,
    #[serde(default)]
    pub public_keys: Vec<String>,
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Shortest time between two JWKS fetches triggered by unknown key ids.
    #[serde(default = "default_jwks_refresh_floor")]
    pub jwks_min_refresh_seconds: u64,
    /// Longest time a verified token is remembered (by its SHA-256), so
    /// that its signature is not checked again on each of its requests;
    /// never past the token's own `exp`. 0 checks every request.
    #[serde(default = "default_cache_seconds")]
    pub cache_seconds: u64,
}

/// As a file that names no field would have it: a verifier configured by
/// the environment alone gets the same leeway, JWKS refresh floor and
/// cache as one configured by a file.
impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            public_keys: Vec::new(),
            jwks_url: None,
            issuer: None,
            audience: None,
            leeway_seconds: default_leeway(),
            jwks_min_refresh_seconds: default_jwks_refresh_floor(),
            cache_seconds: default_cache_seconds(),
        }
    }
}

fn default_leeway() -> u64 {
    30
}

fn default_jwks_refresh_floor() -> u64 {
    30
}

fn default_cache_seconds() -> u64 {
    60
}

/// A configured public key that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is not a PEM RSA, EC or Ed25519 public key")]
pub struct KeyError;

/// Why a token is refused; the text is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("no key to verify this token")]
    NoKey,
    #[error("sub {0}")]
    Subject(EntityRefError),
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong audience")]
    WrongAudience,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("missing claim {0}")]
    MissingClaim(String),
    #[error("signature does not verify")]
    SignatureDoesNotVerify,
    #[error("token does not verify")]
    DoesNotVerify,
}

/// How long fetched JWKS keys are trusted before a lookup refetches them.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    ent: Vec<String>,
    /// A number of seconds, which may have a fraction (the library reads it
    /// so too); required, and checked, by the validation.
    exp: f64,
}

/// A token that verified: whom it identifies, and until when it would
/// verify (its `exp` and the leeway; none for an `exp` no clock can hold).
#[derive(Debug, Clone)]
pub struct Verified {
    pub caller: Caller,
    pub valid_until: Option<SystemTime>,
}

/// A verification key and the algorithms it may be used with.
#[derive(Clone)]
struct VerificationKey {
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Parses a PEM public key (RSA, EC P-256/P-384 or Ed25519).
pub fn decoding_key_from_pem(pem: &str) -> Result<(Vec<Algorithm>, DecodingKey), KeyError> {
    let bytes = pem.as_bytes();
    if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        return Ok((RSA_ALGORITHMS.to_vec(), key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        return Ok((vec![Algorithm::ES256, Algorithm::ES384], key));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        return Ok((vec![Algorithm::EdDSA], key));
    }
    Err(KeyError)
}

struct JwksState {
    keys: HashMap<String, VerificationKey>,
    fetched_at: Option<Instant>,
}

struct Jwks {
    url: String,
    client: reqwest::Client,
    state: RwLock<JwksState>,
    refresh: Mutex<()>,
    min_refresh: Duration,
}

impl Jwks {
    async fn key(&self, kid: &str) -> Option<VerificationKey> {
        {
            let state = self.state.read().await;
            let fresh = state
                .fetched_at
                .is_some_and(|at| at.elapsed() < JWKS_MAX_AGE);
            if let (true, Some(key)) = (fresh, state.keys.get(kid)) {
                return Some(key.clone());
            }
        }
        let _single_flight = self.refresh.lock().await;
        {
            let state = self.state.read().await;
            let fresh = state
                .fetched_at
                .is_some_and(|at| at.elapsed() < JWKS_MAX_AGE);
            let recent = state
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.min_refresh);
            if let Some(key) = state.keys.get(kid) {
                if fresh || recent {
                    return Some(key.clone());
                }
            } else if recent {
                return None;
            }
        }
        let fetched = self.fetch().await;
        let mut state = self.state.write().await;
        state.fetched_at = Some(Instant::now());
        match fetched {
            Ok(keys) => state.keys = keys,
            Err(reason) => tracing::warn!(url = %self.url, %reason, "JWKS fetch failed"),
        }
        state.keys.get(kid).cloned()
    }

    async fn fetch(&self) -> Result<HashMap<String, VerificationKey>, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let set: JwkSet = response.json().await.map_err(|error| error.to_string())?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                let algorithms = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                    (Some(algorithm), _) => vec![signing_algorithm(*algorithm)?],
                    (None, AlgorithmParameters::RSA(_)) => RSA_ALGORITHMS.to_vec(),
                    (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
                        EllipticCurve::P256 => vec![Algorithm::ES256],
                        EllipticCurve::P384 => vec![Algorithm::ES384],
                        _ => return None,
                    },
                    (None, AlgorithmParameters::OctetKeyPair(_)) => vec![Algorithm::EdDSA],
                    (None, AlgorithmParameters::OctetKey(_)) => return None,
                };
                Some((kid, VerificationKey { algorithms, key }))
            })
            .collect())
    }
}

/// The asymmetric signing algorithm a JWK names; symmetric and encryption
/// algorithms are not accepted from a JWKS.
fn signing_algorithm(algorithm: KeyAlgorithm) -> Option<Algorithm> {
    Some(match algorithm {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Verifies portal JWTs.
pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    public_keys: Vec<VerificationKey>,
    jwks: Option<Jwks>,
    validation: Validation,
    leeway: Duration,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Result<Self, KeyError> {
        let public_keys = config
            .public_keys
            .iter()
            .map(|pem| {
                decoding_key_from_pem(pem)
                    .map(|(algorithms, key)| VerificationKey { algorithms, key })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let jwks = config.jwks_url.as_ref().map(|url| Jwks {
            url: url.clone(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a reqwest client with a timeout builds"),
            state: RwLock::new(JwksState {
                keys: HashMap::new(),
                fetched_at: None,
            }),
            refresh: Mutex::new(()),
            min_refresh: Duration::from_secs(config.jwks_min_refresh_seconds),
        });
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = config.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present in the token, not
        // only right when present: the library checks them only if they are.
        let mut required = vec!["exp", "sub"];
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            hs256: config
                .hs256_secret
                .as_ref()
                .map(|secret| DecodingKey::from_secret(secret.expose_secret().as_bytes())),
            public_keys,
            jwks,
            validation,
            leeway: Duration::from_secs(config.leeway_seconds),
        })
    }

    /// The caller a token identifies and until when, or why it is refused
    /// (safe to return).
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        let algorithm = header.alg;
        let candidates: Vec<DecodingKey> = if algorithm == Algorithm::HS256 {
            self.hs256.iter().cloned().collect()
        } else {
            let mut keys: Vec<DecodingKey> = self
                .public_keys
                .iter()
                .filter(|key| key.algorithms.contains(&algorithm))
                .map(|key| key.key.clone())
                .collect();
            if let (Some(jwks), Some(kid)) = (&self.jwks, header.kid.as_deref()) {
                if let Some(key) = jwks.key(kid).await {
                    if key.algorithms.contains(&algorithm) {
                        keys.push(key.key);
                    }
                }
            }
            keys
        };
        if candidates.is_empty() {
            return Err(TokenError::NoKey);
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![algorithm];
        let mut last_error = TokenError::SignatureDoesNotVerify;
        for key in &candidates {
            match decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    super::validate_entity_ref(&claims.sub).map_err(TokenError::Subject)?;
                    let groups = claims
                        .ent
                        .into_iter()
                        .filter(|reference| !reference.eq_ignore_ascii_case(&claims.sub))
                        .collect::<Vec<_>>();
                    // The library accepts the token while `exp` is no
                    // further than the leeway in the past (in whole seconds,
                    // so a little longer than this).
                    let valid_until = Duration::try_from_secs_f64(claims.exp)
                        .ok()
                        .and_then(|exp| UNIX_EPOCH.checked_add(exp))
                        .and_then(|expires| expires.checked_add(self.leeway));
                    return Ok(Verified {
                        caller: Caller {
                            subject: claims.sub.into(),
                            groups: groups.into(),
                            kind: CallerKind::Jwt,
                            note: None,
                        },
                        valid_until,
                    });
                }
                Err(error) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last_error = match error.kind() {
                        ErrorKind::ExpiredSignature => TokenError::Expired,
                        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                        ErrorKind::InvalidAudience => TokenError::WrongAudience,
                        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                        ErrorKind::MissingRequiredClaim(claim) => {
                            TokenError::MissingClaim(claim.clone())
                        }
                        ErrorKind::InvalidSignature => TokenError::SignatureDoesNotVerify,
                        _ => TokenError::DoesNotVerify,
                    };
                    if !matches!(error.kind(), ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }
}
