//! `/api/kubernetes/clusters`: what admins send (`ClusterInput`,
//! `ClusterUpdate`) and what the registry answers (`ClusterSummary`,
//! `ClusterDetail`, `ClusterList`).
//!
//! Secrets are `SecretString`s (their `Debug` prints `***`) and write-only:
//! responses carry `hasServiceAccountToken` and `hasClientKeyData` instead.
//! Serializing an input or an update writes its secrets in plaintext, as the
//! request body a client sends.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How kubeportal authenticates to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum AuthProvider {
    /// A service-account bearer token stored (encrypted) with the cluster.
    ServiceAccount,
    /// A client certificate and key (mTLS) stored with the cluster.
    ClientCert,
    /// kubeportal's own credential (token or client certificate) with
    /// `Impersonate-User`/`Impersonate-Group` set to the portal caller.
    Impersonate,
    /// The caller's OIDC token for `oidcTokenProvider`, sent by the frontend.
    Oidc,
    /// The caller's Google token, sent by the frontend.
    Google,
    /// Any cluster token the caller sends (`Backstage-Kubernetes-Authorization`).
    Client,
    /// No credential at all: the cluster is reached through `kubectl proxy`
    /// or a sidecar that adds its own. Nothing is stored and no
    /// `Authorization`, the caller's included, is ever sent.
    LocalKubectlProxy,
}

impl AuthProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthProvider::ServiceAccount => "serviceAccount",
            AuthProvider::ClientCert => "clientCert",
            AuthProvider::Impersonate => "impersonate",
            AuthProvider::Oidc => "oidc",
            AuthProvider::Google => "google",
            AuthProvider::Client => "client",
            AuthProvider::LocalKubectlProxy => "localKubectlProxy",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            AuthProvider::ServiceAccount,
            AuthProvider::ClientCert,
            AuthProvider::Impersonate,
            AuthProvider::Oidc,
            AuthProvider::Google,
            AuthProvider::Client,
            AuthProvider::LocalKubectlProxy,
        ]
        .into_iter()
        .find(|provider| provider.as_str() == text)
    }
}

/// A cluster as admins register it (`POST`), and as the config file declares it.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterInput {
    /// Unique (case-insensitively): letters, digits, `-`, `_` and `.`,
    /// starting and ending with a letter or digit, at most 63 characters.
    #[cfg_attr(feature = "openapi", schema(example = "prod-eu-1"))]
    pub name: String,
    pub title: Option<String>,
    /// The API server URL (https or http), e.g. `https://10.0.0.1:6443`.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "https://prod-eu-1.example:6443")
    )]
    pub url: String,
    pub auth_provider: AuthProvider,
    /// CA bundle: base64 of PEM (as in kubeconfig) or PEM text.
    pub ca_data: Option<String>,
    #[serde(default, rename = "skipTLSVerify")]
    pub skip_tls_verify: bool,
    /// Write-only; never returned.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub service_account_token: Option<SecretString>,
    /// Client certificate: base64 of PEM or PEM text.
    pub client_cert_data: Option<String>,
    /// Write-only; never returned.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub client_key_data: Option<SecretString>,
    /// A link to the cluster's dashboard, kept as given (query and fragment included).
    pub dashboard_url: Option<String>,
    /// Which dashboard `dashboardUrl` is (Backstage's `standard`, `rancher`,
    /// `openshift`, `aks`, `eks`, `gke`, …), for the frontend's links.
    pub dashboard_app: Option<String>,
    /// Parameters of that dashboard's links (Backstage's `dashboardParameters`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub dashboard_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub oidc_token_provider: Option<String>,
    /// Accepted for Backstage app-config compatibility.
    #[serde(default)]
    pub skip_metrics_lookup: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A full replacement of a cluster (`PUT`). Secrets are write-only: an absent
/// secret keeps the stored one, `null` removes it, a string replaces it.
/// Read-only fields of the `GET` shape are accepted and ignored, so a client
/// can send back what it read.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterUpdate {
    /// Must equal the name in the path (renames are not supported).
    pub name: Option<String>,
    pub title: Option<String>,
    pub url: String,
    pub auth_provider: AuthProvider,
    pub ca_data: Option<String>,
    #[serde(default, rename = "skipTLSVerify")]
    pub skip_tls_verify: bool,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable, write_only))]
    pub service_account_token: Option<Option<SecretString>>,
    pub client_cert_data: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable, write_only))]
    pub client_key_data: Option<Option<SecretString>>,
    pub dashboard_url: Option<String>,
    pub dashboard_app: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub dashboard_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub oidc_token_provider: Option<String>,
    #[serde(default)]
    pub skip_metrics_lookup: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The version this update is based on; `If-Match` may carry it instead.
    pub version: Option<i64>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(read_only))]
    pub has_service_account_token: Option<bool>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(read_only))]
    pub has_client_key_data: Option<bool>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(read_only))]
    pub created_at: Option<serde_json::Value>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(read_only))]
    pub updated_at: Option<serde_json::Value>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// What `GET /api/kubernetes/clusters` lists (Backstage's shape).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterSummary {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub dashboard_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub auth_provider: AuthProvider,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_token_provider: Option<String>,
}

/// A cluster as admins read it: everything but the secrets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterDetail {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub url: String,
    pub auth_provider: AuthProvider,
    /// PEM text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_data: Option<String>,
    #[serde(rename = "skipTLSVerify")]
    pub skip_tls_verify: bool,
    pub has_service_account_token: bool,
    /// PEM text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_data: Option<String>,
    pub has_client_key_data: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub dashboard_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_token_provider: Option<String>,
    pub skip_metrics_lookup: bool,
    pub labels: BTreeMap<String, String>,
    /// Increases on every write; send it back (body or `If-Match`) to update.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClusterList {
    pub items: Vec<ClusterSummary>,
    /// Present when there are more clusters; pass it as `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// Input and update serialize through borrowed views rather than derives: the
// derive attributes above are also the OpenAPI schema, which a serializer's
// needs (secrets written in plaintext, read-only fields left out) must not
// change. The views destructure every field, so a field added above fails to
// compile here instead of being silently dropped.

fn expose<S: Serializer>(secret: &Option<&SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    secret
        .map(ExposeSecret::expose_secret)
        .serialize(serializer)
}

/// A write-only secret of an update: absent keeps the stored one, `null`
/// removes it, a string replaces it.
fn expose_change<S: Serializer>(
    secret: &Option<Option<&SecretString>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    secret
        .map(|secret| secret.map(ExposeSecret::expose_secret))
        .serialize(serializer)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InputBody<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    url: &'a str,
    auth_provider: AuthProvider,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_data: Option<&'a str>,
    #[serde(rename = "skipTLSVerify")]
    skip_tls_verify: bool,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose")]
    service_account_token: Option<&'a SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_cert_data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose")]
    client_key_data: Option<&'a SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_app: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_parameters: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oidc_token_provider: Option<&'a str>,
    skip_metrics_lookup: bool,
    labels: &'a BTreeMap<String, String>,
}

impl<'a> From<&'a ClusterInput> for InputBody<'a> {
    fn from(input: &'a ClusterInput) -> Self {
        let ClusterInput {
            name,
            title,
            url,
            auth_provider,
            ca_data,
            skip_tls_verify,
            service_account_token,
            client_cert_data,
            client_key_data,
            dashboard_url,
            dashboard_app,
            dashboard_parameters,
            oidc_token_provider,
            skip_metrics_lookup,
            labels,
        } = input;
        InputBody {
            name,
            title: title.as_deref(),
            url,
            auth_provider: *auth_provider,
            ca_data: ca_data.as_deref(),
            skip_tls_verify: *skip_tls_verify,
            service_account_token: service_account_token.as_ref(),
            client_cert_data: client_cert_data.as_deref(),
            client_key_data: client_key_data.as_ref(),
            dashboard_url: dashboard_url.as_deref(),
            dashboard_app: dashboard_app.as_deref(),
            dashboard_parameters: dashboard_parameters.as_ref(),
            oidc_token_provider: oidc_token_provider.as_deref(),
            skip_metrics_lookup: *skip_metrics_lookup,
            labels,
        }
    }
}

impl Serialize for ClusterInput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        InputBody::from(self).serialize(serializer)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpdateBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    title: Option<&'a str>,
    url: &'a str,
    auth_provider: AuthProvider,
    ca_data: Option<&'a str>,
    #[serde(rename = "skipTLSVerify")]
    skip_tls_verify: bool,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_change"
    )]
    service_account_token: Option<Option<&'a SecretString>>,
    client_cert_data: Option<&'a str>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_change"
    )]
    client_key_data: Option<Option<&'a SecretString>>,
    dashboard_url: Option<&'a str>,
    dashboard_app: Option<&'a str>,
    dashboard_parameters: Option<&'a serde_json::Map<String, serde_json::Value>>,
    oidc_token_provider: Option<&'a str>,
    skip_metrics_lookup: bool,
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
}

impl<'a> From<&'a ClusterUpdate> for UpdateBody<'a> {
    fn from(update: &'a ClusterUpdate) -> Self {
        let ClusterUpdate {
            name,
            title,
            url,
            auth_provider,
            ca_data,
            skip_tls_verify,
            service_account_token,
            client_cert_data,
            client_key_data,
            dashboard_url,
            dashboard_app,
            dashboard_parameters,
            oidc_token_provider,
            skip_metrics_lookup,
            labels,
            version,
            // Read-only fields of the GET shape: the server ignores them.
            has_service_account_token: _,
            has_client_key_data: _,
            created_at: _,
            updated_at: _,
        } = update;
        UpdateBody {
            name: name.as_deref(),
            title: title.as_deref(),
            url,
            auth_provider: *auth_provider,
            ca_data: ca_data.as_deref(),
            skip_tls_verify: *skip_tls_verify,
            service_account_token: service_account_token.as_ref().map(Option::as_ref),
            client_cert_data: client_cert_data.as_deref(),
            client_key_data: client_key_data.as_ref().map(Option::as_ref),
            dashboard_url: dashboard_url.as_deref(),
            dashboard_app: dashboard_app.as_deref(),
            dashboard_parameters: dashboard_parameters.as_ref(),
            oidc_token_provider: oidc_token_provider.as_deref(),
            skip_metrics_lookup: *skip_metrics_lookup,
            labels,
            version: *version,
        }
    }
}

impl Serialize for ClusterUpdate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        UpdateBody::from(self).serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input() -> ClusterInput {
        serde_json::from_value(json!({
            "name": "prod",
            "url": "https://10.0.0.1:6443",
            "authProvider": "serviceAccount",
            "serviceAccountToken": "s3cret",
            "skipTLSVerify": true,
            "labels": {"env": "prod"},
        }))
        .expect("valid input")
    }

    #[test]
    fn input_round_trips() {
        let original = input();
        let written = serde_json::to_value(&original).expect("serializes");
        assert_eq!(written["serviceAccountToken"], "s3cret");
        assert_eq!(written["skipTLSVerify"], true);
        assert!(written.get("clientKeyData").is_none());
        assert!(written.get("title").is_none());
        let read: ClusterInput = serde_json::from_value(written).expect("reads back");
        assert_eq!(read.name, original.name);
        assert_eq!(read.labels, original.labels);
        assert_eq!(
            read.service_account_token
                .map(|token| token.expose_secret().to_owned()),
            Some("s3cret".to_owned())
        );
        assert!(!format!("{original:?}").contains("s3cret"));
    }

    #[test]
    fn update_secrets_keep_absent_null_and_value_apart() {
        let mut update: ClusterUpdate = serde_json::from_value(json!({
            "url": "https://10.0.0.1:6443",
            "authProvider": "serviceAccount",
            "serviceAccountToken": null,
            "clientKeyData": "key",
            "version": 3,
            "hasClientKeyData": true,
        }))
        .expect("valid update");
        let written = serde_json::to_value(&update).expect("serializes");
        assert_eq!(written["serviceAccountToken"], serde_json::Value::Null);
        assert_eq!(written["clientKeyData"], "key");
        assert_eq!(written["version"], 3);
        assert_eq!(written["title"], serde_json::Value::Null);
        assert!(written.get("hasClientKeyData").is_none());

        update.service_account_token = None;
        let written = serde_json::to_value(&update).expect("serializes");
        assert!(written.get("serviceAccountToken").is_none());
        let read: ClusterUpdate = serde_json::from_value(written).expect("reads back");
        assert!(read.service_account_token.is_none());
        assert!(matches!(read.client_key_data, Some(Some(_))));
    }
}
