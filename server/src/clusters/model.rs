//! Cluster records: what admins send, what is stored, what is returned.
//! What is sent and returned are the wire types of `kubeportal-api`,
//! re-exported here; their validation and conversions are the server's.
//!
//! Input is validated into a [`ClusterSpec`] whose secrets are `SecretString`s
//! (their `Debug` prints `***`). Responses carry `hasServiceAccountToken` and
//! `hasClientKeyData` instead of the secrets themselves.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use secrecy::{ExposeSecret, SecretString};

pub use kubeportal_api::clusters::{
    AuthProvider, ClusterDetail, ClusterInput, ClusterSummary, ClusterUpdate,
};

/// The provider as Backstage's frontend knows it (its `KubernetesAuthProviders`
/// refuse any other name before a query). Credentials kubeportal holds are
/// `serviceAccount` to the frontend (it sends nothing for them); `oidc` and
/// `google` are the frontend's own client-side providers. The stock
/// frontend has no `client` provider: that cluster is presented as
/// `serviceAccount` too, so the entity's tab works and the cluster reports
/// its missing credential as an error entry unless the caller sends one.
fn as_frontend_names_it(provider: AuthProvider) -> AuthProvider {
    match provider {
        AuthProvider::Oidc => AuthProvider::Oidc,
        AuthProvider::Google => AuthProvider::Google,
        AuthProvider::LocalKubectlProxy => AuthProvider::LocalKubectlProxy,
        AuthProvider::ServiceAccount
        | AuthProvider::ClientCert
        | AuthProvider::Impersonate
        | AuthProvider::Client => AuthProvider::ServiceAccount,
    }
}

/// A validated cluster, secrets in plaintext memory only until sealed.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    pub title: Option<String>,
    pub url: String,
    pub auth_provider: AuthProvider,
    pub ca_data: Option<String>,
    pub skip_tls_verify: bool,
    pub service_account_token: Option<SecretString>,
    pub client_cert_data: Option<String>,
    pub client_key_data: Option<SecretString>,
    pub dashboard_url: Option<String>,
    pub dashboard_app: Option<String>,
    pub dashboard_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub oidc_token_provider: Option<String>,
    pub skip_metrics_lookup: bool,
    pub labels: BTreeMap<String, String>,
}

/// A stored cluster. Secrets stay sealed; `upstream/` opens them when it
/// builds a connector.
#[derive(Debug, Clone)]
pub struct ClusterRecord {
    pub name: String,
    pub title: Option<String>,
    pub url: String,
    pub auth_provider: AuthProvider,
    pub ca_data: Option<String>,
    pub skip_tls_verify: bool,
    pub sealed_service_account_token: Option<Vec<u8>>,
    pub client_cert_data: Option<String>,
    pub sealed_client_key_data: Option<Vec<u8>>,
    pub dashboard_url: Option<String>,
    pub dashboard_app: Option<String>,
    pub dashboard_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub oidc_token_provider: Option<String>,
    pub skip_metrics_lookup: bool,
    pub labels: BTreeMap<String, String>,
    /// This registration's identity, generated on create and never reused:
    /// a cluster deleted and registered again under its name has another.
    /// What is built for a cluster (connectors, cached results) is keyed by
    /// it with the version, never by the name alone.
    pub uid: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub type SharedCluster = Arc<ClusterRecord>;

impl From<&ClusterRecord> for ClusterSummary {
    fn from(record: &ClusterRecord) -> Self {
        Self {
            name: record.name.clone(),
            title: record.title.clone(),
            dashboard_url: record.dashboard_url.clone(),
            dashboard_app: record.dashboard_app.clone(),
            dashboard_parameters: record.dashboard_parameters.clone(),
            auth_provider: as_frontend_names_it(record.auth_provider),
            // Backstage's frontend looks up `<authProvider>.<oidcTokenProvider>`:
            // beside any other provider it names no auth provider and fails
            // every entity's Kubernetes tab.
            oidc_token_provider: (record.auth_provider == AuthProvider::Oidc)
                .then(|| record.oidc_token_provider.clone())
                .flatten(),
        }
    }
}

impl From<&ClusterRecord> for ClusterDetail {
    fn from(record: &ClusterRecord) -> Self {
        Self {
            name: record.name.clone(),
            title: record.title.clone(),
            url: record.url.clone(),
            auth_provider: record.auth_provider,
            ca_data: record.ca_data.clone(),
            skip_tls_verify: record.skip_tls_verify,
            has_service_account_token: record.sealed_service_account_token.is_some(),
            client_cert_data: record.client_cert_data.clone(),
            has_client_key_data: record.sealed_client_key_data.is_some(),
            dashboard_url: record.dashboard_url.clone(),
            dashboard_app: record.dashboard_app.clone(),
            dashboard_parameters: record.dashboard_parameters.clone(),
            oidc_token_provider: record.oidc_token_provider.clone(),
            skip_metrics_lookup: record.skip_metrics_lookup,
            labels: record.labels.clone(),
            version: record.version,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// A validation failure naming the field (`url`, `caData`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.field, self.message)
    }
}

fn field_error(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// The documented name rule: 1 to 63 characters, letters, digits, `-`, `_`
/// and `.`, starting and ending with a letter or digit.
pub fn validate_cluster_name(name: &str) -> Result<(), FieldError> {
    const RULE: &str = "must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else if name.is_empty() {
        Err(field_error("name", "must not be empty"))
    } else {
        Err(field_error("name", RULE))
    }
}

/// The key clusters are unique and looked up by: the name with ASCII letters
/// in lower case, borrowed when it has no upper-case letter (as names are
/// mostly written, so that a lookup copies nothing).
pub fn name_key(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

fn validate_url(field: &'static str, text: &str) -> Result<String, FieldError> {
    let url = url::Url::parse(text).map_err(|error| field_error(field, error.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(field_error(field, "must be an https or http URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(field_error(field, "must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(field_error(field, "must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(field_error(field, "must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A dashboard link, kept as given: dashboards address their pages with
/// queries and fragments, and Backstage's frontend appends to the text.
fn validate_dashboard_url(text: &str) -> Result<String, FieldError> {
    let field = "dashboardUrl";
    let url = url::Url::parse(text).map_err(|error| field_error(field, error.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(field_error(field, "must be an https or http URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(field_error(field, "must not carry credentials"));
    }
    if text.len() > 2048 {
        return Err(field_error(field, "must be at most 2048 characters"));
    }
    Ok(text.to_owned())
}

/// Accepts PEM text or base64 of PEM; returns PEM text.
fn pem_text(field: &'static str, data: &str) -> Result<String, FieldError> {
    let trimmed = data.trim();
    if trimmed.starts_with("-----BEGIN") {
        return Ok(format!("{trimmed}\n"));
    }
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    let decoded = STANDARD
        .decode(compact)
        .map_err(|_| field_error(field, "must be PEM text or base64-encoded PEM"))?;
    let text = String::from_utf8(decoded)
        .map_err(|_| field_error(field, "must be PEM text or base64-encoded PEM"))?;
    if !text.trim_start().starts_with("-----BEGIN") {
        return Err(field_error(field, "must be PEM text or base64-encoded PEM"));
    }
    Ok(format!("{}\n", text.trim()))
}

fn certificates(
    field: &'static str,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, FieldError> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| field_error(field, "is not valid PEM"))?;
    if certificates.is_empty() {
        return Err(field_error(field, "holds no CERTIFICATE block"));
    }
    Ok(certificates)
}

fn validate_ca(data: &str) -> Result<String, FieldError> {
    validate_ca_at(data, UnixTime::now())
}

/// `caData` the TLS client can use at `now`: certificates only (a key would
/// be stored in the clear and returned by every read), each an issuer or a
/// server certificate trusted as given, at least one of them valid now (see
/// `certificates::check_ca_certificates`).
fn validate_ca_at(data: &str, now: UnixTime) -> Result<String, FieldError> {
    let pem = pem_text("caData", data)?;
    if pem
        .lines()
        .any(|line| line.starts_with("-----BEGIN") && line.contains("PRIVATE KEY"))
    {
        return Err(field_error(
            "caData",
            "holds a private key: send the cluster's CA certificate (PEM CERTIFICATE blocks), never a key",
        ));
    }
    let certificates = certificates("caData", &pem)?;
    crate::certificates::check_ca_certificates(&certificates, now)
        .map_err(|reason| field_error("caData", reason.to_string()))?;
    Ok(pem)
}

fn validate_client_pair(
    cert: Option<&str>,
    key: Option<&SecretString>,
) -> Result<(Option<String>, Option<SecretString>), FieldError> {
    match (cert, key) {
        (None, None) => Ok((None, None)),
        (Some(_), None) => Err(field_error(
            "clientKeyData",
            "is required with clientCertData",
        )),
        (None, Some(_)) => Err(field_error(
            "clientCertData",
            "is required with clientKeyData",
        )),
        (Some(cert), Some(key)) => {
            let cert_pem = pem_text("clientCertData", cert)?;
            let chain = certificates("clientCertData", &cert_pem)?;
            let key_pem = pem_text("clientKeyData", key.expose_secret())?;
            let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|_| field_error("clientKeyData", "is not a PEM private key"))?;
            rustls::sign::CertifiedKey::from_der(
                chain,
                key_der,
                &rustls::crypto::ring::default_provider(),
            )
            .map_err(|_| {
                field_error(
                    "clientKeyData",
                    "is not a supported private key for clientCertData",
                )
            })?;
            Ok((Some(cert_pem), Some(SecretString::from(key_pem))))
        }
    }
}

fn validate_token(token: &SecretString) -> Result<(), FieldError> {
    let text = token.expose_secret();
    if text.is_empty() {
        return Err(field_error("serviceAccountToken", "must not be empty"));
    }
    if text.len() > 16 * 1024 {
        return Err(field_error("serviceAccountToken", "is longer than 16 KiB"));
    }
    if !text.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(field_error(
            "serviceAccountToken",
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

fn validate_optional_text(
    field: &'static str,
    value: Option<&String>,
    max: usize,
) -> Result<Option<String>, FieldError> {
    match value.map(|text| text.trim()) {
        None | Some("") => Ok(None),
        Some(text) if text.len() > max => Err(field_error(
            field,
            format!("is longer than {max} characters"),
        )),
        Some(text) if text.chars().any(char::is_control) => {
            Err(field_error(field, "must not contain control characters"))
        }
        Some(text) => Ok(Some(text.to_owned())),
    }
}

fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if labels.len() > 64 {
        return Err(field_error("labels", "at most 64 labels"));
    }
    for (key, value) in labels {
        if key.is_empty() || key.len() > 253 || key.chars().any(char::is_control) {
            return Err(field_error(
                "labels",
                "keys must be 1 to 253 printable characters",
            ));
        }
        if value.len() > 1024 || value.chars().any(char::is_control) {
            return Err(field_error(
                "labels",
                "values must be at most 1024 printable characters",
            ));
        }
    }
    Ok(())
}

/// The fields shared by create and update, before the secrets are known.
struct Fields<'a> {
    name: &'a str,
    title: Option<&'a String>,
    url: &'a str,
    auth_provider: AuthProvider,
    ca_data: Option<&'a String>,
    skip_tls_verify: bool,
    client_cert_data: Option<&'a String>,
    dashboard_url: Option<&'a String>,
    dashboard_app: Option<&'a String>,
    dashboard_parameters: Option<&'a serde_json::Map<String, serde_json::Value>>,
    oidc_token_provider: Option<&'a String>,
    skip_metrics_lookup: bool,
    labels: &'a BTreeMap<String, String>,
}

fn build_spec(
    fields: Fields<'_>,
    token: Option<SecretString>,
    client_key: Option<&SecretString>,
) -> Result<ClusterSpec, FieldError> {
    validate_cluster_name(fields.name)?;
    let title = validate_optional_text("title", fields.title, 256)?;
    let url = validate_url("url", fields.url)?;
    let ca_data = fields
        .ca_data
        .filter(|data| !data.trim().is_empty())
        .map(|data| validate_ca(data))
        .transpose()?;
    if let Some(token) = &token {
        validate_token(token)?;
    }
    let (client_cert_data, client_key_data) = validate_client_pair(
        fields
            .client_cert_data
            .filter(|data| !data.trim().is_empty())
            .map(String::as_str),
        client_key,
    )?;
    let dashboard_url = match fields.dashboard_url.filter(|url| !url.trim().is_empty()) {
        Some(url) => Some(validate_dashboard_url(url)?),
        None => None,
    };
    let dashboard_app = validate_optional_text("dashboardApp", fields.dashboard_app, 64)?;
    let dashboard_parameters = fields.dashboard_parameters.cloned();
    if let Some(parameters) = &dashboard_parameters {
        if serde_json::to_string(parameters).map_or(0, |text| text.len()) > 16 * 1024 {
            return Err(field_error(
                "dashboardParameters",
                "must be at most 16 KiB of JSON",
            ));
        }
    }
    let oidc_token_provider =
        validate_optional_text("oidcTokenProvider", fields.oidc_token_provider, 128)?;
    if oidc_token_provider.is_some() && fields.auth_provider != AuthProvider::Oidc {
        return Err(field_error(
            "oidcTokenProvider",
            "only applies to authProvider oidc",
        ));
    }
    validate_labels(fields.labels)?;
    match fields.auth_provider {
        AuthProvider::ServiceAccount if token.is_none() => {
            return Err(field_error(
                "serviceAccountToken",
                "is required for authProvider serviceAccount",
            ))
        }
        AuthProvider::ClientCert if client_cert_data.is_none() => {
            return Err(field_error(
                "clientCertData",
                "is required for authProvider clientCert",
            ))
        }
        AuthProvider::Impersonate if token.is_none() && client_cert_data.is_none() => {
            return Err(field_error(
                "serviceAccountToken",
                "authProvider impersonate needs kubeportal's own credential: serviceAccountToken or clientCertData with clientKeyData",
            ))
        }
        AuthProvider::Oidc if oidc_token_provider.is_none() => {
            return Err(field_error(
                "oidcTokenProvider",
                "is required for authProvider oidc",
            ))
        }
        AuthProvider::LocalKubectlProxy if token.is_some() => {
            return Err(field_error(
                "serviceAccountToken",
                "authProvider localKubectlProxy sends no credential: leave it out",
            ))
        }
        AuthProvider::LocalKubectlProxy if client_cert_data.is_some() => {
            return Err(field_error(
                "clientCertData",
                "authProvider localKubectlProxy sends no credential: leave it out",
            ))
        }
        _ => {}
    }
    Ok(ClusterSpec {
        name: fields.name.to_owned(),
        title,
        url,
        auth_provider: fields.auth_provider,
        ca_data,
        skip_tls_verify: fields.skip_tls_verify,
        service_account_token: token,
        client_cert_data,
        client_key_data,
        dashboard_url,
        dashboard_app,
        dashboard_parameters,
        oidc_token_provider,
        skip_metrics_lookup: fields.skip_metrics_lookup,
        labels: fields.labels.clone(),
    })
}

/// Validation of a new cluster, for the input type of `kubeportal-api`.
pub trait ClusterInputExt {
    /// Validates a new cluster.
    fn validate_new(&self) -> Result<ClusterSpec, FieldError>;
}

impl ClusterInputExt for ClusterInput {
    fn validate_new(&self) -> Result<ClusterSpec, FieldError> {
        build_spec(
            Fields {
                name: &self.name,
                title: self.title.as_ref(),
                url: &self.url,
                auth_provider: self.auth_provider,
                ca_data: self.ca_data.as_ref(),
                skip_tls_verify: self.skip_tls_verify,
                client_cert_data: self.client_cert_data.as_ref(),
                dashboard_url: self.dashboard_url.as_ref(),
                dashboard_app: self.dashboard_app.as_ref(),
                dashboard_parameters: self.dashboard_parameters.as_ref(),
                oidc_token_provider: self.oidc_token_provider.as_ref(),
                skip_metrics_lookup: self.skip_metrics_lookup,
                labels: &self.labels,
            },
            self.service_account_token.clone(),
            self.client_key_data.as_ref(),
        )
    }
}

/// What an update does to one stored secret.
#[derive(Debug, Clone)]
pub enum SecretChange {
    Keep,
    Clear,
    Set(SecretString),
}

impl SecretChange {
    fn from_field(field: &Option<Option<SecretString>>) -> Self {
        match field {
            None => SecretChange::Keep,
            Some(None) => SecretChange::Clear,
            Some(Some(value)) => SecretChange::Set(value.clone()),
        }
    }
}

/// A validated update: the new spec, with secrets to keep left as `Keep`.
#[derive(Debug, Clone)]
pub struct ValidatedUpdate {
    pub spec: ClusterSpec,
    pub service_account_token: SecretChange,
    pub client_key_data: SecretChange,
}

/// Why an update must re-send the stored credentials: it changes where they
/// go (the url's scheme, host or port) or whom kubeportal trusts to be the
/// cluster (its CA, or verification turned off). Kept, they would follow an
/// admin who may manage clusters but never read their secrets to a server
/// of their choosing.
fn credential_destination_change(
    current: &ClusterRecord,
    spec: &ClusterSpec,
) -> Option<&'static str> {
    let origin = |text: &str| {
        url::Url::parse(text).ok().map(|url| {
            (
                url.scheme().to_owned(),
                url.host_str().map(str::to_ascii_lowercase),
                url.port_or_known_default(),
            )
        })
    };
    let current_origin = origin(&current.url);
    if current_origin.is_none() || current_origin != origin(&spec.url) {
        Some("the url's scheme, host or port changes")
    } else if spec.skip_tls_verify && !current.skip_tls_verify {
        Some("skipTLSVerify is turned on")
    } else if !spec.skip_tls_verify && spec.ca_data != current.ca_data {
        Some("caData changes")
    } else {
        None
    }
}

/// Validation of an update, for the update type of `kubeportal-api`.
pub trait ClusterUpdateExt {
    /// Validates the update of the stored cluster `current`, given its
    /// secrets in plaintext (only to validate the merged result).
    ///
    /// A stored secret is kept only while it goes to the same server: an
    /// update that changes the url's scheme, host or port, the CA, or turns
    /// verification off must send `serviceAccountToken` (and `clientKeyData`,
    /// when one is stored) again, or clear them.
    fn validate(
        &self,
        current: &ClusterRecord,
        current_token: Option<SecretString>,
        current_client_key: Option<SecretString>,
    ) -> Result<ValidatedUpdate, FieldError>;
}

impl ClusterUpdateExt for ClusterUpdate {
    fn validate(
        &self,
        current: &ClusterRecord,
        current_token: Option<SecretString>,
        current_client_key: Option<SecretString>,
    ) -> Result<ValidatedUpdate, FieldError> {
        let name = current.name.as_str();
        if let Some(body_name) = &self.name {
            if name_key(body_name) != name_key(name) {
                return Err(field_error(
                    "name",
                    "must match the cluster in the path (renaming is not supported)",
                ));
            }
        }
        let token_change = SecretChange::from_field(&self.service_account_token);
        let key_change = SecretChange::from_field(&self.client_key_data);
        let effective_token = match &token_change {
            SecretChange::Keep => current_token,
            SecretChange::Clear => None,
            SecretChange::Set(value) => Some(value.clone()),
        };
        let effective_key = match &key_change {
            SecretChange::Keep => current_client_key,
            SecretChange::Clear => None,
            SecretChange::Set(value) => Some(value.clone()),
        };
        let spec = build_spec(
            Fields {
                name,
                title: self.title.as_ref(),
                url: &self.url,
                auth_provider: self.auth_provider,
                ca_data: self.ca_data.as_ref(),
                skip_tls_verify: self.skip_tls_verify,
                client_cert_data: self.client_cert_data.as_ref(),
                dashboard_url: self.dashboard_url.as_ref(),
                dashboard_app: self.dashboard_app.as_ref(),
                dashboard_parameters: self.dashboard_parameters.as_ref(),
                oidc_token_provider: self.oidc_token_provider.as_ref(),
                skip_metrics_lookup: self.skip_metrics_lookup,
                labels: &self.labels,
            },
            effective_token,
            effective_key.as_ref(),
        )?;
        if let Some(reason) = credential_destination_change(current, &spec) {
            let kept = |change: &SecretChange, stored: bool| {
                stored && matches!(change, SecretChange::Keep)
            };
            if kept(
                &token_change,
                current.sealed_service_account_token.is_some(),
            ) {
                return Err(field_error(
                    "serviceAccountToken",
                    format!("must be sent again (or null to remove it): {reason}"),
                ));
            }
            if kept(&key_change, current.sealed_client_key_data.is_some()) {
                return Err(field_error(
                    "clientKeyData",
                    format!("must be sent again (or null to remove it): {reason}"),
                ));
            }
        }
        Ok(ValidatedUpdate {
            spec,
            service_account_token: token_change,
            client_key_data: key_change,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn input(name: &str) -> ClusterInput {
        ClusterInput {
            name: name.into(),
            title: None,
            url: "https://10.0.0.1:6443".into(),
            auth_provider: AuthProvider::ServiceAccount,
            ca_data: None,
            skip_tls_verify: false,
            service_account_token: Some(SecretString::from("abc.def")),
            client_cert_data: None,
            client_key_data: None,
            dashboard_url: None,
            dashboard_app: None,
            dashboard_parameters: None,
            oidc_token_provider: None,
            skip_metrics_lookup: false,
            labels: BTreeMap::new(),
        }
    }

    fn rejects(input: ClusterInput, field: &str) {
        let error = input.validate_new().unwrap_err();
        assert_eq!(error.field, field, "{error}");
    }

    #[test]
    fn names_follow_the_documented_rule() {
        for good in ["a", "prod-eu-1", "Dev_2.cluster", &"x".repeat(63)] {
            validate_cluster_name(good).unwrap();
        }
        for bad in ["", "-a", "a-", "a b", "a/b", "a%2e", &"x".repeat(64), "é"] {
            assert!(validate_cluster_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        rejects(
            ClusterInput {
                url: "ftp://x".into(),
                ..input("a")
            },
            "url",
        );
        rejects(
            ClusterInput {
                url: "https://u:p@x".into(),
                ..input("a")
            },
            "url",
        );
        rejects(
            ClusterInput {
                url: "https://x/?a=b".into(),
                ..input("a")
            },
            "url",
        );
        rejects(
            ClusterInput {
                name: "".into(),
                ..input("a")
            },
            "name",
        );
        rejects(
            ClusterInput {
                ca_data: Some("not pem".into()),
                ..input("a")
            },
            "caData",
        );
        rejects(
            ClusterInput {
                ca_data: Some(STANDARD.encode("hello")),
                ..input("a")
            },
            "caData",
        );
        rejects(
            ClusterInput {
                service_account_token: None,
                ..input("a")
            },
            "serviceAccountToken",
        );
        rejects(
            ClusterInput {
                service_account_token: Some(SecretString::from("a b")),
                ..input("a")
            },
            "serviceAccountToken",
        );
        rejects(
            ClusterInput {
                auth_provider: AuthProvider::Oidc,
                ..input("a")
            },
            "oidcTokenProvider",
        );
        rejects(
            ClusterInput {
                auth_provider: AuthProvider::ClientCert,
                ..input("a")
            },
            "clientCertData",
        );
        rejects(
            ClusterInput {
                client_cert_data: Some("x".into()),
                ..input("a")
            },
            "clientKeyData",
        );
        rejects(
            ClusterInput {
                dashboard_url: Some("javascript:alert(1)".into()),
                ..input("a")
            },
            "dashboardUrl",
        );
    }

    #[test]
    fn urls_are_normalised() {
        let spec = ClusterInput {
            url: "https://Example.com:6443/".into(),
            ..input("a")
        }
        .validate_new()
        .unwrap();
        assert_eq!(spec.url, "https://example.com:6443");
    }

    #[test]
    fn ca_data_is_accepted_as_pem_or_base64() {
        let certificate = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let pem = certificate.cert.pem();
        let from_pem = ClusterInput {
            ca_data: Some(pem.clone()),
            ..input("a")
        }
        .validate_new()
        .unwrap();
        let from_base64 = ClusterInput {
            ca_data: Some(STANDARD.encode(&pem)),
            ..input("a")
        }
        .validate_new()
        .unwrap();
        assert_eq!(from_pem.ca_data, from_base64.ca_data);
        assert!(from_pem
            .ca_data
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn ca_data_that_cannot_work_is_refused_naming_it() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        let expired = params.self_signed(&key).unwrap().pem();
        let current = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        for (ca_data, says) in [
            (expired.clone(), "expired on 2020-01-01"),
            (key.serialize_pem(), "private key"),
            (
                format!("{}{}", current.cert.pem(), current.key_pair.serialize_pem()),
                "private key",
            ),
            (STANDARD.encode(key.serialize_pem()), "private key"),
            (key.public_key_pem(), "no CERTIFICATE"),
        ] {
            let error = ClusterInput {
                ca_data: Some(ca_data),
                ..input("a")
            }
            .validate_new()
            .unwrap_err();
            assert_eq!(error.field, "caData", "{error}");
            assert!(error.message.contains(says), "{error}");
            assert!(!error.message.contains("PRIVATE"), "{error}");
        }
    }

    #[test]
    fn client_certificate_and_key_must_match() {
        let one = rcgen::generate_simple_self_signed(vec!["one".into()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["two".into()]).unwrap();
        let matching = ClusterInput {
            auth_provider: AuthProvider::ClientCert,
            service_account_token: None,
            client_cert_data: Some(one.cert.pem()),
            client_key_data: Some(SecretString::from(one.key_pair.serialize_pem())),
            ..input("a")
        };
        matching.validate_new().unwrap();
        let mismatched = ClusterInput {
            client_key_data: Some(SecretString::from(two.key_pair.serialize_pem())),
            ..matching
        };
        rejects(mismatched, "clientKeyData");
    }

    /// A stored cluster `a` at `https://x:6443` with a service-account token
    /// (and a client key when `with_key`).
    fn stored(with_key: bool) -> ClusterRecord {
        ClusterRecord {
            name: "a".into(),
            title: None,
            url: "https://x:6443".into(),
            auth_provider: AuthProvider::ServiceAccount,
            ca_data: None,
            skip_tls_verify: false,
            sealed_service_account_token: Some(b"sealed".to_vec()),
            client_cert_data: None,
            sealed_client_key_data: with_key.then(|| b"sealed".to_vec()),
            dashboard_url: None,
            dashboard_app: None,
            dashboard_parameters: None,
            oidc_token_provider: None,
            skip_metrics_lookup: false,
            labels: BTreeMap::new(),
            uid: "0123456789abcdef0123456789abcdef".into(),
            version: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn update(body: serde_json::Value) -> ClusterUpdate {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn updates_keep_clear_or_replace_secrets() {
        let validated = update(serde_json::json!({
            "url": "https://x:6443", "authProvider": "serviceAccount", "version": 1
        }))
        .validate(&stored(false), Some(SecretString::from("old")), None)
        .unwrap();
        assert!(matches!(
            validated.service_account_token,
            SecretChange::Keep
        ));

        let error = update(serde_json::json!({
            "url": "https://x:6443", "authProvider": "serviceAccount", "serviceAccountToken": null
        }))
        .validate(&stored(false), Some(SecretString::from("old")), None)
        .unwrap_err();
        assert_eq!(error.field, "serviceAccountToken");

        let renaming = update(serde_json::json!({
            "name": "b", "url": "https://x:6443", "authProvider": "google"
        }));
        assert_eq!(
            renaming
                .validate(&stored(false), None, None)
                .unwrap_err()
                .field,
            "name"
        );
    }

    #[test]
    fn stored_secrets_do_not_follow_a_new_destination() {
        let token = || Some(SecretString::from("old"));
        for (url, extra) in [
            ("https://evil.example:6443", serde_json::json!({})),
            ("http://x:6443", serde_json::json!({})),
            ("https://x:7443", serde_json::json!({})),
            ("https://x", serde_json::json!({})),
            ("https://x:6443", serde_json::json!({"skipTLSVerify": true})),
            (
                "https://x:6443",
                serde_json::json!({"caData": rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap().cert.pem()}),
            ),
        ] {
            let mut body = serde_json::json!({"url": url, "authProvider": "serviceAccount"});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let error = update(body.clone())
                .validate(&stored(false), token(), None)
                .unwrap_err();
            assert_eq!(error.field, "serviceAccountToken", "{body}: {error}");

            // Sent again, the token goes to the new destination.
            body["serviceAccountToken"] = "new".into();
            let validated = update(body.clone())
                .validate(&stored(false), token(), None)
                .unwrap();
            assert!(matches!(
                validated.service_account_token,
                SecretChange::Set(_)
            ));
        }

        // The same server by another spelling, or another path on it, keeps them.
        for url in ["https://X:6443/", "https://x:6443/k8s/clusters/c-1"] {
            update(serde_json::json!({"url": url, "authProvider": "serviceAccount"}))
                .validate(&stored(false), token(), None)
                .unwrap();
        }
    }

    #[test]
    fn a_stored_client_key_does_not_follow_a_new_url() {
        let pair = rcgen::generate_simple_self_signed(vec!["kubeportal".into()]).unwrap();
        let record = ClusterRecord {
            client_cert_data: Some(pair.cert.pem()),
            ..stored(true)
        };
        let key = || Some(SecretString::from(pair.key_pair.serialize_pem()));
        let body = serde_json::json!({
            "url": "https://evil.example:6443", "authProvider": "clientCert",
            "clientCertData": pair.cert.pem(), "serviceAccountToken": "new"
        });
        let error = update(body)
            .validate(&record, Some(SecretString::from("old")), key())
            .unwrap_err();
        assert_eq!(error.field, "clientKeyData", "{error}");
        let body = serde_json::json!({
            "url": "https://evil.example:6443", "authProvider": "clientCert",
            "clientCertData": pair.cert.pem(), "serviceAccountToken": "new",
            "clientKeyData": pair.key_pair.serialize_pem()
        });
        update(body)
            .validate(&record, Some(SecretString::from("old")), key())
            .unwrap();
    }

    #[test]
    fn debug_output_hides_secrets() {
        let spec = input("a").validate_new().unwrap();
        assert!(!format!("{spec:?}").contains("abc.def"));
    }
}
