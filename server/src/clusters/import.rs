//! `kubeportal clusters import --kubeconfig FILE`: each cluster of a kubeconfig,
//! with the credentials of the first context that uses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::SecretString;
use serde::Deserialize;

use super::{AuthProvider, ClusterInput};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<Named<KubeconfigCluster>>,
    #[serde(default)]
    users: Vec<Named<KubeconfigUser>>,
    #[serde(default)]
    contexts: Vec<Named<KubeconfigContext>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct KubeconfigCluster {
    server: String,
    certificate_authority_data: Option<String>,
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct KubeconfigUser {
    token: Option<SecretString>,
    token_file: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_certificate: Option<PathBuf>,
    client_key_data: Option<SecretString>,
    client_key: Option<PathBuf>,
}

#[derive(Deserialize)]
struct KubeconfigContext {
    cluster: String,
    user: Option<String>,
}

/// A kubeconfig cluster turned into a registry input, or why it could not be.
pub struct ImportedCluster {
    pub name: String,
    pub input: Result<ClusterInput, String>,
}

/// Reads a kubeconfig; relative file references resolve against its directory.
pub fn clusters_from_kubeconfig(path: &Path) -> Result<Vec<ImportedCluster>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let kubeconfig: Kubeconfig = serde_yaml::from_str(&text).map_err(|error| {
        format!(
            "{} is not a kubeconfig: {}",
            path.display(),
            crate::error::redact_quoted(&error.to_string())
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let users: BTreeMap<&str, &KubeconfigUser> = kubeconfig
        .users
        .iter()
        .map(|user| (user.name.as_str(), &user.value))
        .collect();
    let no_user = KubeconfigUser::default();
    Ok(kubeconfig
        .clusters
        .iter()
        .map(|cluster| {
            let user = kubeconfig
                .contexts
                .iter()
                .find(|context| context.value.cluster == cluster.name)
                .and_then(|context| context.value.user.as_deref())
                .and_then(|user| users.get(user).copied())
                .unwrap_or(&no_user);
            ImportedCluster {
                name: cluster.name.clone(),
                input: to_input(&cluster.name, &cluster.value, user, base),
            }
        })
        .collect())
}

fn read_relative(base: &Path, file: &Path) -> Result<String, String> {
    let path = if file.is_absolute() {
        file.to_owned()
    } else {
        base.join(file)
    };
    std::fs::read_to_string(&path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

fn data_or_file(
    base: &Path,
    data: Option<&String>,
    file: Option<&PathBuf>,
) -> Result<Option<String>, String> {
    match (data, file) {
        (Some(data), _) => Ok(Some(data.clone())),
        (None, Some(file)) => Ok(Some(STANDARD.encode(read_relative(base, file)?))),
        (None, None) => Ok(None),
    }
}

fn to_input(
    name: &str,
    cluster: &KubeconfigCluster,
    user: &KubeconfigUser,
    base: &Path,
) -> Result<ClusterInput, String> {
    let token = match (&user.token, &user.token_file) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(file)) => Some(SecretString::from(
            read_relative(base, file)?.trim().to_owned(),
        )),
        (None, None) => None,
    };
    let client_cert_data = data_or_file(
        base,
        user.client_certificate_data.as_ref(),
        user.client_certificate.as_ref(),
    )?;
    let client_key_data = match (&user.client_key_data, &user.client_key) {
        (Some(key), _) => Some(key.clone()),
        (None, Some(file)) => Some(SecretString::from(read_relative(base, file)?)),
        (None, None) => None,
    };
    let auth_provider = if token.is_some() {
        AuthProvider::ServiceAccount
    } else if client_cert_data.is_some() && client_key_data.is_some() {
        AuthProvider::ClientCert
    } else {
        AuthProvider::Client
    };
    Ok(ClusterInput {
        name: name.to_owned(),
        title: None,
        url: cluster.server.clone(),
        auth_provider,
        ca_data: data_or_file(
            base,
            cluster.certificate_authority_data.as_ref(),
            cluster.certificate_authority.as_ref(),
        )?,
        skip_tls_verify: cluster.insecure_skip_tls_verify,
        service_account_token: token,
        client_cert_data,
        client_key_data,
        dashboard_url: None,
        dashboard_app: None,
        dashboard_parameters: None,
        oidc_token_provider: None,
        skip_metrics_lookup: false,
        labels: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn clusters_take_the_credentials_of_their_context() {
        let dir = std::env::temp_dir().join(format!("kp-kubeconfig-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "file-token\n").unwrap();
        let path = dir.join("config");
        std::fs::write(
            &path,
            r#"
apiVersion: v1
kind: Config
clusters:
  - name: dev
    cluster: { server: "https://dev:6443", insecure-skip-tls-verify: true }
  - name: prod
    cluster: { server: "https://prod:6443" }
  - name: orphan
    cluster: { server: "https://orphan:6443" }
users:
  - name: dev-user
    user: { token: inline-token }
  - name: prod-user
    user: { token-file: token }
contexts:
  - name: dev
    context: { cluster: dev, user: dev-user }
  - name: prod
    context: { cluster: prod, user: prod-user }
current-context: dev
"#,
        )
        .unwrap();
        let imported = clusters_from_kubeconfig(&path).unwrap();
        let by_name: BTreeMap<_, _> = imported
            .into_iter()
            .map(|cluster| (cluster.name.clone(), cluster.input.unwrap()))
            .collect();
        assert_eq!(by_name["dev"].auth_provider, AuthProvider::ServiceAccount);
        assert!(by_name["dev"].skip_tls_verify);
        assert_eq!(
            by_name["prod"]
                .service_account_token
                .as_ref()
                .unwrap()
                .expose_secret(),
            "file-token"
        );
        assert_eq!(by_name["orphan"].auth_provider, AuthProvider::Client);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
