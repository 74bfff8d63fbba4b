//! `GET /api/kubernetes/clusters/{name}/kubeconfig`: a kubeconfig whose server
//! is the path form of the proxy, so kubectl works through kubeportal. It
//! carries no credential: users add their portal token themselves.

use std::path::PathBuf;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, Uri};
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

use super::ProxyState;
use crate::error::ApiError;
use crate::error::ErrorResponse;
use crate::extract::Path;
use crate::identity::Caller;
use crate::permissions::{Permission, Target};

/// How clients reach kubeportal, for the kubeconfigs it generates (from
/// `server:`).
#[derive(Debug, Clone, Default)]
pub struct PublicAddress {
    /// `server.publicUrl`.
    pub public_url: Option<String>,
    /// Whether kubeportal serves TLS (`server.tls`).
    pub tls: bool,
    /// `server.tls.caFile`: the CA clients need to trust kubeportal.
    pub ca_file: Option<PathBuf>,
    /// `server.listen`, for a request that names no usable host.
    pub listen: String,
}

/// A kubeconfig for one cluster, through kubeportal.
#[utoipa::path(get, path = "/api/kubernetes/clusters/{name}/kubeconfig", tag = "proxy",
    params(("name" = String, Path, description = "Cluster name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A kubeconfig (YAML) whose server is the path-form proxy; set your portal token with `kubectl config set-credentials kubeportal --token=…`", body = Object, content_type = "application/yaml"),
        (status = 400, description = "The name is not UTF-8", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.clusters.read denied", body = ErrorResponse),
        (status = 404, description = "No such cluster", body = ErrorResponse),
    ))]
pub async fn kubeconfig(
    State(state): State<ProxyState>,
    caller: Caller,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state
        .policy
        .check(&caller, Permission::ClustersRead, &Target::cluster(&name))?;
    let record = state
        .registry
        .resolve(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster named {name}")))?;
    let name = record.name.clone();
    document(
        &state,
        &uri,
        &headers,
        &name,
        &format!("/api/kubernetes/clusters/{name}/proxy"),
    )
}

/// A kubeconfig with one cluster, context and credential-less user
/// `kubeportal`, whose server is `server_path` on kubeportal.
pub(super) fn document(
    state: &ProxyState,
    uri: &Uri,
    headers: &HeaderMap,
    name: &str,
    server_path: &str,
) -> Result<Response, ApiError> {
    let address = &state.settings.address;
    let base = match &address.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let scheme = if address.tls { "https" } else { "http" };
            // HTTP/2 carries the host as the URI authority, HTTP/1.1 as `Host`.
            let host = uri
                .authority()
                .map(|authority| authority.as_str())
                .or_else(|| {
                    headers
                        .get(header::HOST)
                        .and_then(|host| host.to_str().ok())
                })
                .filter(|host| {
                    !host.is_empty()
                        && host.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']')
                        })
                })
                .map(str::to_owned)
                .unwrap_or_else(|| address.listen.clone());
            format!("{scheme}://{host}")
        }
    };
    let certificate_authority_data = match &address.ca_file {
        Some(ca_file) => Some(STANDARD.encode(std::fs::read(ca_file).map_err(ApiError::internal)?)),
        None => None,
    };
    let name = name.to_owned();
    let document = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: name.clone(),
            cluster: Some(Cluster {
                server: Some(format!("{base}{server_path}")),
                certificate_authority_data,
                ..Cluster::default()
            }),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: "kubeportal".into(),
            auth_info: Some(AuthInfo::default()),
        }],
        contexts: vec![NamedContext {
            name: name.clone(),
            context: Some(Context {
                cluster: name.clone(),
                user: Some("kubeportal".into()),
                ..Context::default()
            }),
        }],
        current_context: Some(name),
        ..Kubeconfig::default()
    };
    let yaml = serde_saphyr::to_string(&document).map_err(ApiError::internal)?;
    let mut response = yaml.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    Ok(response)
}
