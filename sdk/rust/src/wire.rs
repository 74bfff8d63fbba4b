//! Request bodies for the server's input types.
//!
//! `ClusterInput` and `ClusterUpdate` are the server's own types, but they are
//! `Deserialize` only (their secrets are `SecretString`s, which do not
//! serialize). These borrowed views write them in the server's wire format.
//! They destructure every field, so a field added on the server fails to
//! compile here instead of being silently dropped.

use std::collections::BTreeMap;

use kubeportal::clusters::{AuthProvider, ClusterDetail, ClusterInput, ClusterUpdate};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

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
pub(crate) struct InputBody<'a> {
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpdateBody<'a> {
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

/// An update that keeps everything `detail` says (and every stored secret):
/// change its fields, then send it with `update_cluster`.
pub fn update_from(detail: &ClusterDetail) -> ClusterUpdate {
    let ClusterDetail {
        name,
        title,
        url,
        auth_provider,
        ca_data,
        skip_tls_verify,
        client_cert_data,
        dashboard_url,
        dashboard_app,
        dashboard_parameters,
        oidc_token_provider,
        skip_metrics_lookup,
        labels,
        version,
        has_service_account_token: _,
        has_client_key_data: _,
        created_at: _,
        updated_at: _,
    } = detail.clone();
    ClusterUpdate {
        name: Some(name),
        title,
        url,
        auth_provider,
        ca_data,
        skip_tls_verify,
        service_account_token: None,
        client_cert_data,
        client_key_data: None,
        dashboard_url,
        dashboard_app,
        dashboard_parameters,
        oidc_token_provider,
        skip_metrics_lookup,
        labels,
        version: Some(version),
        has_service_account_token: None,
        has_client_key_data: None,
        created_at: None,
        updated_at: None,
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
    fn input_round_trips_through_the_server_type() {
        let original = input();
        let written = serde_json::to_value(InputBody::from(&original)).expect("serializes");
        assert_eq!(written["serviceAccountToken"], "s3cret");
        assert_eq!(written["skipTLSVerify"], true);
        assert!(written.get("clientKeyData").is_none());
        let read: ClusterInput = serde_json::from_value(written).expect("the server reads it");
        assert_eq!(read.name, original.name);
        assert_eq!(read.labels, original.labels);
        assert_eq!(
            read.service_account_token
                .map(|token| token.expose_secret().to_owned()),
            Some("s3cret".to_owned())
        );
    }

    #[test]
    fn update_secrets_keep_absent_null_and_value_apart() {
        let mut update: ClusterUpdate = serde_json::from_value(json!({
            "url": "https://10.0.0.1:6443",
            "authProvider": "serviceAccount",
            "serviceAccountToken": null,
            "clientKeyData": "key",
            "version": 3,
        }))
        .expect("valid update");
        let written = serde_json::to_value(UpdateBody::from(&update)).expect("serializes");
        assert_eq!(written["serviceAccountToken"], serde_json::Value::Null);
        assert_eq!(written["clientKeyData"], "key");
        assert_eq!(written["version"], 3);

        update.service_account_token = None;
        let written = serde_json::to_value(UpdateBody::from(&update)).expect("serializes");
        assert!(written.get("serviceAccountToken").is_none());
    }
}
