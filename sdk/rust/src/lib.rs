//! # kubeportal-sdk
//!
//! A client for kubeportal: the cluster registry, entity-scoped object
//! queries and the Kubernetes API proxy. Request and response types are the
//! server's own, from the `kubeportal-api` crate (re-exported as [`api`]), so
//! the client and the server cannot drift apart.
//!
//! ```no_run
//! use futures::StreamExt;
//! use kubeportal_sdk::{Client, FleetListOptions, FleetWatchOptions, LogOptions};
//!
//! # async fn example() -> Result<(), kubeportal_sdk::Error> {
//! let portal = Client::new("https://portal.example")?.with_token("my-portal-token");
//! for cluster in portal.clusters().await? {
//!     println!("{}", cluster.name);
//! }
//! let namespaces = portal.proxy("prod", "/api/v1/namespaces").send().await?;
//! println!("{}", namespaces.text().await?);
//!
//! let follow = LogOptions { follow: true, ..LogOptions::default() };
//! let mut lines = portal.pod_logs("prod", "shop", "shop-api-0", &follow).await?;
//! while let Some(line) = lines.next().await {
//!     println!("{}", line?);
//! }
//!
//! // The fleet view: one list and one watch across clusters matching a glob.
//! let pods = portal
//!     .fleet_list::<serde_json::Value>("prod-*", "/api/v1/pods", &FleetListOptions::default())
//!     .await?;
//! for item in &pods.items {
//!     println!("{} {}", item.cluster, item.object["metadata"]["name"]);
//! }
//! let from_list = FleetWatchOptions {
//!     resource_version: Some(pods.resource_version),
//!     ..FleetWatchOptions::default()
//! };
//! let mut events = portal
//!     .fleet_watch::<serde_json::Value>("prod-*", "/api/v1/pods", &from_list)
//!     .await?;
//! while let Some(event) = events.next().await {
//!     let event = event?; // a 410 `Error::Cluster` means: list again
//!     println!("{:?} on {:?}", event.event_type, event.cluster);
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod fleet;
mod stream;

use futures::stream::{BoxStream, StreamExt};
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, IF_MATCH};
use reqwest::{Method, RequestBuilder, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use error::Error;
pub use fleet::{
    FleetClusterState, FleetClusterStatus, FleetItem, FleetList, FleetListOptions, FleetWatchEvent,
    FleetWatchOptions, FleetWatchStream, FLEET_CLUSTER_ANNOTATION,
};
/// Every wire type of kubeportal's HTTP API.
pub use kubeportal_api as api;
pub use kubeportal_api::clusters::{
    AuthProvider, ClusterDetail, ClusterInput, ClusterList, ClusterSummary, ClusterUpdate,
};
pub use kubeportal_api::objects::{
    ClusterObjects, ClusterRef, CustomResourceConfig, ErrorType, FetchError, FetchResult,
    ObjectsResponse,
};
use kubeportal_api::objects::{
    CustomResourcesByEntityRequest, ObjectsByEntityRequest, WorkloadsByEntityRequest,
};
pub use stream::{lines, WatchEvent, WatchEventType};

/// The lines of a pod log, as they arrive; dropping it closes the stream.
pub type LineStream = BoxStream<'static, Result<String, Error>>;

/// The events of a watch, as they arrive; dropping it closes the stream.
pub type WatchStream<T> = BoxStream<'static, Result<WatchEvent<T>, Error>>;

const API: &str = "/api/kubernetes";
const CLUSTER_HEADER: &str = "backstage-kubernetes-cluster";
const CLUSTER_AUTHORIZATION_HEADER: &str = "backstage-kubernetes-authorization";

/// A kubeportal client. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    token: Option<SecretString>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Options of [`Client::pod_logs`].
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// The container; required by Kubernetes when the pod has more than one.
    pub container: Option<String>,
    /// Keep the stream open and yield lines as the container writes them.
    pub follow: bool,
    /// Start this many lines from the end.
    pub tail_lines: Option<u64>,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<u64>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// The previous (terminated) instance of the container.
    pub previous: bool,
}

impl Client {
    /// A client for the kubeportal at `base_url` (e.g. `https://portal.example`),
    /// calling as the guest until [`Client::with_token`].
    pub fn new(base_url: &str) -> Result<Self, Error> {
        Self::with_http_client(base_url, reqwest::Client::new())
    }

    /// Like [`Client::new`], with a configured `reqwest::Client` (a private
    /// CA, timeouts, a proxy).
    pub fn with_http_client(base_url: &str, http: reqwest::Client) -> Result<Self, Error> {
        let parsed = reqwest::Url::parse(base_url)
            .map_err(|error| Error::BaseUrl(format!("{base_url}: {error}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::BaseUrl(format!("{base_url}: not http or https")));
        }
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: None,
        })
    }

    /// Calls as the holder of this portal token (`Authorization: Bearer …`).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(SecretString::from(token.into()));
        self
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header(ACCEPT, "application/json");
        match &self.token {
            Some(token) => builder.bearer_auth(token.expose_secret()),
            None => builder,
        }
    }

    // ---- cluster registry ---------------------------------------------------

    /// Every cluster the caller may see, following pages.
    pub async fn clusters(&self) -> Result<Vec<ClusterSummary>, Error> {
        let mut clusters = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.clusters_page(Some(1000), cursor.as_deref()).await?;
            clusters.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(clusters),
            }
        }
    }

    /// One page of clusters, ordered by name (`limit` 1 to 1000, server default 100).
    pub async fn clusters_page(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<ClusterList, Error> {
        let mut request = self.request(Method::GET, &format!("{API}/clusters"));
        if let Some(limit) = limit {
            request = request.query(&[("limit", limit)]);
        }
        if let Some(cursor) = cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        json(request).await
    }

    /// One cluster without its secrets (admins: `kubernetes.clusters.manage`).
    pub async fn cluster(&self, name: &str) -> Result<ClusterDetail, Error> {
        json(self.request(Method::GET, &cluster_path(name))).await
    }

    /// Registers a cluster (admins). A duplicate name is a `ConflictError`.
    pub async fn create_cluster(&self, input: &ClusterInput) -> Result<ClusterDetail, Error> {
        json(
            self.request(Method::POST, &format!("{API}/clusters"))
                .json(input),
        )
        .await
    }

    /// Replaces a cluster (admins), based on `version` (sent as `If-Match`);
    /// a stale version is a `ConflictError`. Start from [`update_from`] to
    /// change only some fields.
    pub async fn update_cluster(
        &self,
        name: &str,
        version: i64,
        update: &ClusterUpdate,
    ) -> Result<ClusterDetail, Error> {
        json(
            self.request(Method::PUT, &cluster_path(name))
                .header(IF_MATCH, format!("\"{version}\""))
                .json(update),
        )
        .await
    }

    /// Removes a cluster (admins); with `version`, only if it is still at that version.
    pub async fn delete_cluster(&self, name: &str, version: Option<i64>) -> Result<(), Error> {
        let mut request = self.request(Method::DELETE, &cluster_path(name));
        if let Some(version) = version {
            request = request.header(IF_MATCH, format!("\"{version}\""));
        }
        checked(request.send().await?).await?;
        Ok(())
    }

    /// A kubeconfig (YAML) whose server is this cluster's path-form proxy.
    /// It carries no credential: set your portal token as the user's token.
    pub async fn kubeconfig(&self, name: &str) -> Result<String, Error> {
        let request = self
            .request(Method::GET, &format!("{}/kubeconfig", cluster_path(name)))
            .header(ACCEPT, "application/yaml");
        Ok(checked(request.send().await?).await?.text().await?)
    }

    // ---- entity-scoped objects ----------------------------------------------------

    /// An entity's objects on every cluster it runs on (Backstage's
    /// `POST /services/{entityName}`). `entity` is a catalog entity
    /// (`metadata.name` and the `backstage.io/kubernetes-*` annotations are
    /// read); `auth` carries client-side cluster credentials, e.g.
    /// `{"google": "<token>"}`. A cluster that fails is an entry with `errors`.
    pub async fn objects_by_entity(
        &self,
        entity: &Value,
        auth: Option<&Value>,
    ) -> Result<ObjectsResponse, Error> {
        let name = entity
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let body = ObjectsByEntityRequest {
            entity: entity.clone(),
            auth: client_auth(auth),
        };
        json(
            self.request(
                Method::POST,
                &format!("{API}/services/{}", path_segment(name)),
            )
            .json(&body),
        )
        .await
    }

    /// The workloads of a catalog entity, e.g. `component:default/shop-api`,
    /// looked up in the configured catalog with the caller's token.
    pub async fn workloads_by_entity_ref(
        &self,
        entity_ref: &str,
        auth: Option<&Value>,
    ) -> Result<ObjectsResponse, Error> {
        let body = WorkloadsByEntityRequest {
            entity_ref: entity_ref.to_owned(),
            auth: client_auth(auth),
        };
        json(
            self.request(Method::POST, &format!("{API}/resources/workloads/query"))
                .json(&body),
        )
        .await
    }

    /// Custom resources of a catalog entity.
    pub async fn custom_resources(
        &self,
        entity_ref: &str,
        custom_resources: &[CustomResourceConfig],
        auth: Option<&Value>,
    ) -> Result<ObjectsResponse, Error> {
        let body = CustomResourcesByEntityRequest {
            entity_ref: entity_ref.to_owned(),
            custom_resources: custom_resources.to_vec(),
            auth: client_auth(auth),
        };
        json(
            self.request(Method::POST, &format!("{API}/resources/custom/query"))
                .json(&body),
        )
        .await
    }

    // ---- the proxy ------------------------------------------------------------

    /// A `GET` of a Kubernetes API path on one cluster, e.g.
    /// `proxy("prod", "/api/v1/namespaces")`; see [`ProxyRequest`].
    pub fn proxy(&self, cluster: &str, path: &str) -> ProxyRequest {
        self.proxy_with(Method::GET, cluster, path)
    }

    /// Any method on a Kubernetes API path of one cluster; see [`ProxyRequest`].
    pub fn proxy_with(&self, method: Method, cluster: &str, path: &str) -> ProxyRequest {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        // A name that is not a valid header value fails when sent.
        let builder = self
            .request(method, &format!("{API}/proxy{path}"))
            .header(CLUSTER_HEADER, cluster);
        ProxyRequest { builder }
    }

    /// A pod's log as lines, as they arrive. With `follow`, the stream lasts
    /// until the container stops or the stream is dropped.
    pub async fn pod_logs(
        &self,
        cluster: &str,
        namespace: &str,
        pod: &str,
        options: &LogOptions,
    ) -> Result<LineStream, Error> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(container) = &options.container {
            query.push(("container", container.clone()));
        }
        if options.follow {
            query.push(("follow", "true".into()));
        }
        if let Some(lines) = options.tail_lines {
            query.push(("tailLines", lines.to_string()));
        }
        if let Some(seconds) = options.since_seconds {
            query.push(("sinceSeconds", seconds.to_string()));
        }
        if options.timestamps {
            query.push(("timestamps", "true".into()));
        }
        if options.previous {
            query.push(("previous", "true".into()));
        }
        let request = self
            .proxy(
                cluster,
                &format!("/api/v1/namespaces/{namespace}/pods/{pod}/log"),
            )
            .query(&query);
        let response = checked(request.send().await?).await?;
        Ok(stream::lines(Box::pin(response.bytes_stream())).boxed())
    }

    /// Watches a list path (e.g. `/api/v1/namespaces/shop/pods`), yielding
    /// each event as the cluster sends it; `watch=true` is added to the query.
    /// Without `resourceVersion` in the path, Kubernetes starts with an
    /// `ADDED` event per existing object.
    pub async fn watch<T>(&self, cluster: &str, path: &str) -> Result<WatchStream<T>, Error>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let request = self.proxy(cluster, path).query(&[("watch", "true")]);
        let response = checked(request.send().await?).await?;
        Ok(stream::events(stream::lines(Box::pin(response.bytes_stream()))).boxed())
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

/// A request through the header-form proxy, to be completed and sent.
pub struct ProxyRequest {
    builder: RequestBuilder,
}

impl ProxyRequest {
    /// A token for the cluster itself (`Backstage-Kubernetes-Authorization`);
    /// without it the cluster's server-side credential is used.
    pub fn cluster_token(mut self, token: &str) -> Self {
        self.builder = self
            .builder
            .header(CLUSTER_AUTHORIZATION_HEADER, format!("Bearer {token}"));
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// Adds query parameters to those already in the path.
    pub fn query<Q: Serialize + ?Sized>(mut self, query: &Q) -> Self {
        self.builder = self.builder.query(query);
        self
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.builder = self.builder.json(body);
        self
    }

    /// Any body, e.g. a patch with its own `Content-Type` header.
    pub fn body(mut self, body: impl Into<reqwest::Body>) -> Self {
        self.builder = self.builder.body(body);
        self
    }

    /// Sends it. The answer is the cluster's, status and headers included,
    /// with a streaming body (`bytes_stream()`); a non-2xx from the cluster is
    /// returned as it came (its body already read). Errors kubeportal itself
    /// produces (identity, policy, unknown or unreachable cluster) are
    /// [`Error::Portal`].
    pub async fn send(self) -> Result<Response, Error> {
        let response = self.builder.send().await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let version = response.version();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        if let Some(error) = error::portal_error(status, &body) {
            return Err(error);
        }
        let mut rebuilt = http::Response::new(body);
        *rebuilt.status_mut() = status;
        *rebuilt.version_mut() = version;
        *rebuilt.headers_mut() = headers;
        Ok(Response::from(rebuilt))
    }
}

/// The client-side credentials of an object query; `null` (left out of the
/// body) when there are none.
fn client_auth(auth: Option<&Value>) -> Value {
    auth.cloned().unwrap_or_default()
}

fn cluster_path(name: &str) -> String {
    format!("{API}/clusters/{}", path_segment(name))
}

/// Percent-encodes what a path segment cannot hold as is.
fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The response if it is a 2xx, else the error its body describes.
async fn checked(response: Response) -> Result<Response, Error> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.bytes().await?;
    Err(error::error_from_body(status, &body))
}

async fn json<T: DeserializeOwned>(request: RequestBuilder) -> Result<T, Error> {
    let response = checked(request.send().await?).await?;
    let body = response.bytes().await?;
    Ok(serde_json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_are_encoded_as_one_segment() {
        assert_eq!(
            cluster_path("prod-eu.1"),
            "/api/kubernetes/clusters/prod-eu.1"
        );
        assert_eq!(cluster_path("a/b c"), "/api/kubernetes/clusters/a%2Fb%20c");
    }

    #[test]
    fn base_urls_must_be_http() {
        assert!(matches!(
            Client::new("ftp://portal.example"),
            Err(Error::BaseUrl(_))
        ));
        assert!(matches!(Client::new("portal"), Err(Error::BaseUrl(_))));
        let client = Client::new("http://127.0.0.1:7007/").expect("valid");
        assert_eq!(client.base_url, "http://127.0.0.1:7007");
        assert!(!format!("{:?}", client.with_token("secret")).contains("secret"));
    }
}
