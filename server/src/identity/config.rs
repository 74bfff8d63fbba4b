//! `auth:` in the configuration: guest access, static tokens and JWT
//! verification, and the checks they pass before kubeportal starts.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::jwt::{decoding_key_from_pem, JwtConfig, KeyError};
use super::{validate_entity_ref, EntityRefError, GUEST_SUBJECT};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// Guest access; defaults to true only while listening on loopback.
    pub guest: Option<bool>,
    #[serde(default)]
    pub static_tokens: Vec<StaticToken>,
    pub jwt: Option<JwtConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticToken {
    pub token: SecretString,
    pub subject: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// What is wrong with `auth:`, naming the key (never a secret value).
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("auth.staticTokens[{index}].token: must be at least 16 characters")]
    ShortToken { index: usize },
    #[error("auth.staticTokens[{index}].subject: {reason}")]
    Subject {
        index: usize,
        reason: EntityRefError,
    },
    #[error("auth.staticTokens[{index}].subject: is reserved for the guest")]
    GuestSubject { index: usize },
    #[error("auth.staticTokens[{index}].groups: user:default/guest is reserved for the guest")]
    GuestGroup { index: usize },
    #[error("auth.jwt.publicKeys[{index}]: {reason}")]
    PublicKey { index: usize, reason: KeyError },
    #[error("auth.jwt.jwksUrl: {reason}")]
    JwksUrl { reason: url::ParseError },
}

impl AuthConfig {
    /// Checks the static tokens and the JWT keys.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        for (index, token) in self.static_tokens.iter().enumerate() {
            if token.token.expose_secret().len() < 16 {
                return Err(AuthConfigError::ShortToken { index });
            }
            validate_entity_ref(&token.subject)
                .map_err(|reason| AuthConfigError::Subject { index, reason })?;
            if token.subject.eq_ignore_ascii_case(GUEST_SUBJECT) {
                return Err(AuthConfigError::GuestSubject { index });
            }
            if token
                .groups
                .iter()
                .any(|group| group.eq_ignore_ascii_case(GUEST_SUBJECT))
            {
                return Err(AuthConfigError::GuestGroup { index });
            }
        }
        if let Some(jwt) = &self.jwt {
            for (index, pem) in jwt.public_keys.iter().enumerate() {
                decoding_key_from_pem(pem)
                    .map_err(|reason| AuthConfigError::PublicKey { index, reason })?;
            }
            if let Some(url) = &jwt.jwks_url {
                url::Url::parse(url).map_err(|reason| AuthConfigError::JwksUrl { reason })?;
            }
        }
        Ok(())
    }
}
