//! The labels of each cluster's namespaces, for rules with a
//! `namespaceSelector`: one watch per cluster (a kube-rs reflector, with
//! kubeportal's own credential, through the cluster's connector), started
//! the first time a request needs it, never a list per request.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

use crate::upstream::{Connector, Route};

/// How long a request waits for a cluster's first namespace list; after
/// that, its namespaces' labels count as unknown (and label rules fail
/// closed) until the list arrives.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(5);

/// A generous bound for a watch's response headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The namespace watches, one per cluster.
#[derive(Clone)]
pub struct NamespaceLabels {
    watches: moka::sync::Cache<String, Arc<ClusterNamespaces>>,
}

impl Default for NamespaceLabels {
    fn default() -> Self {
        Self {
            // A cluster unused for an hour stops being watched.
            watches: moka::sync::Cache::builder()
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }
}

struct ClusterNamespaces {
    /// The connector the watch runs on; a changed registration brings
    /// another one, and another watch.
    connector: Arc<Connector>,
    store: Store<Namespace>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ClusterNamespaces {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NamespaceLabels {
    /// The cluster's namespaces, once listed (waiting a little for the first
    /// list); `None` while they are not known.
    pub async fn of(&self, connector: &Arc<Connector>) -> Option<Namespaces> {
        let watch = self.watch(connector);
        if tokio::time::timeout(FIRST_LIST_WAIT, watch.store.wait_until_ready())
            .await
            .is_err()
        {
            return None;
        }
        Some(Namespaces(watch.store.clone()))
    }

    fn watch(&self, connector: &Arc<Connector>) -> Arc<ClusterNamespaces> {
        let key = connector.cluster().to_ascii_lowercase();
        if let Some(watch) = self.watches.get(&key) {
            if Arc::ptr_eq(&watch.connector, connector) {
                return watch;
            }
        }
        let api: Api<Namespace> = Api::all(client(connector.clone()));
        let (store, writer) = reflector::store();
        let cluster = connector.cluster().to_owned();
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .applied_objects();
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(cluster = %cluster, %error, "watching namespaces for their labels");
                }
            }
        });
        let watch = Arc::new(ClusterNamespaces {
            connector: connector.clone(),
            store,
            task,
        });
        self.watches.insert(key, watch.clone());
        watch
    }
}

/// A snapshot view of one cluster's namespaces.
#[derive(Clone)]
pub struct Namespaces(Store<Namespace>);

impl Namespaces {
    /// A namespace, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<Namespace>> {
        self.0.get(&ObjectRef::new(name))
    }
}

/// A kube client whose requests travel through the cluster's connector with
/// kubeportal's own credential.
fn client(connector: Arc<Connector>) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let connector = connector.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            parts.uri = connector
                .uri(parts.uri.path(), parts.uri.query())
                .map_err(|error| kube::Error::Service(error.to_string().into()))?;
            let credential = connector.authorize_portal(&mut parts.headers)?;
            let watch = parts
                .uri
                .query()
                .is_some_and(|query| query.split('&').any(|pair| pair == "watch=true"));
            let route = if watch { Route::Stream } else { Route::Shared };
            let request = http::Request::from_parts(parts, axum::body::Body::new(body));
            let (response, lease) = connector
                .send_within(request, route, credential, HEADER_TIMEOUT)
                .await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response.map(move |body| {
                use http_body_util::BodyExt;
                body.map_frame(move |frame| {
                    let _ = &lease;
                    frame
                })
            }))
        }
    });
    kube::Client::new(service, "default")
}
