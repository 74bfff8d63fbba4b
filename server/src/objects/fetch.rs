//! The fan-out: every object type on every selected cluster, concurrently,
//! through kube-rs clients running on the same connectors as the proxy, with
//! a deadline per cluster. A slow or failing cluster becomes error entries,
//! never a failed response.

use crate::kubernetes::KubernetesRequest;
use crate::permissions::{Facts, Policy, ProxyTarget, Target, View};
use crate::views::{self, Judge, NamespaceLabels, Namespaces, ObjectJudge, ObjectMeta};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use serde_json::Value;

use super::masking;
use super::metrics::client_pod_statuses;
use super::{
    ClusterObjects, ClusterRef, ErrorType, FetchError, FetchResult, ObjectType, Selection,
};
use crate::clusters::{AuthProvider, ClusterRecord};
use crate::identity::Caller;
use crate::upstream::{ClusterToken, Connector, ImpersonationConfig, Route, UpstreamError};

/// What one cluster query needs besides the cluster.
#[derive(Clone)]
pub struct FetchContext {
    pub caller: Caller,
    pub auth: Value,
    /// The policy, whose view of each kind (`kubernetes.proxy`) also
    /// filters what object queries return.
    pub policy: Arc<Policy>,
    pub namespaces: NamespaceLabels,
    pub impersonation: Arc<ImpersonationConfig>,
    pub deadline: Duration,
    pub concurrency: usize,
}

/// The caller-side credential a cluster needs, from the request's `auth` body.
fn client_credential(record: &ClusterRecord, auth: &Value) -> Option<String> {
    let token = match record.auth_provider {
        AuthProvider::Oidc => record
            .oidc_token_provider
            .as_deref()
            .and_then(|provider| auth.pointer(&format!("/oidc/{provider}"))),
        AuthProvider::Google => auth.get("google"),
        AuthProvider::Client => auth.get("client"),
        AuthProvider::ServiceAccount
        | AuthProvider::ClientCert
        | AuthProvider::Impersonate
        | AuthProvider::LocalKubectlProxy => None,
    };
    token.and_then(Value::as_str).map(str::to_owned)
}

/// A kube-rs client whose requests go through `connector`, credentials attached there.
fn kube_client(
    connector: Arc<Connector>,
    context: &FetchContext,
    token: Option<String>,
) -> kube::Client {
    let caller = context.caller.clone();
    let impersonation = context.impersonation.clone();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let connector = connector.clone();
        let caller = caller.clone();
        let impersonation = impersonation.clone();
        let token = token.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            let path = parts.uri.path().to_owned();
            parts.uri = connector
                .uri(&path, parts.uri.query())
                .map_err(|error| Box::new(error) as tower::BoxError)?;
            let credential = connector.authorize(
                &mut parts.headers,
                &caller,
                token.map(|token| ClusterToken(token.into())),
                &impersonation,
            )?;
            let request = http::Request::from_parts(parts, axum::body::Body::new(body));
            connector
                .send(request, Route::Shared, credential)
                .await
                .map(|(response, _)| response)
                .map_err(tower::BoxError::from)
        }
    });
    kube::Client::new(service, "default")
}

fn error_type_for_status(status: u16) -> ErrorType {
    match status {
        400 => ErrorType::BadRequest,
        401 => ErrorType::UnauthorizedError,
        404 => ErrorType::NotFound,
        500 => ErrorType::SystemError,
        _ => ErrorType::UnknownError,
    }
}

fn fetch_error(error: &kube::Error, resource_path: &str) -> FetchError {
    match error {
        kube::Error::Api(response) => FetchError {
            error_type: error_type_for_status(response.code),
            status_code: Some(response.code),
            resource_path: Some(resource_path.to_owned()),
            message: Some(response.message.clone()),
        },
        kube::Error::Service(cause) => {
            let message = match cause.downcast_ref::<UpstreamError>() {
                Some(upstream) => upstream.to_string(),
                None => cause.to_string(),
            };
            FetchError {
                error_type: ErrorType::FetchError,
                status_code: None,
                resource_path: Some(resource_path.to_owned()),
                message: Some(message),
            }
        }
        other => FetchError {
            error_type: ErrorType::UnknownError,
            status_code: None,
            resource_path: Some(resource_path.to_owned()),
            message: Some(other.to_string()),
        },
    }
}

/// Sets `kind` and `apiVersion` on an item that lacks them.
fn fill_type(item: &mut Value, kind: &str, api_version: &str) {
    let Some(fields) = item.as_object_mut() else {
        return;
    };
    for (name, value) in [("kind", kind), ("apiVersion", api_version)] {
        let missing = fields
            .get(name)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if missing && !value.is_empty() {
            fields.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
}

/// One list to run against a cluster.
struct Job {
    object_type: ObjectType,
    metrics: bool,
}

impl Job {
    fn api_resource(&self) -> ApiResource {
        let gvk = GroupVersionKind::gvk(&self.object_type.group, &self.object_type.version, "");
        ApiResource::from_gvk_with_plural(&gvk, &self.object_type.plural)
    }

    fn resource_path(&self, namespace: Option<&str>) -> String {
        let base = if self.object_type.group.is_empty() {
            format!("/api/{}", self.object_type.version)
        } else {
            format!(
                "/apis/{}/{}",
                self.object_type.group, self.object_type.version
            )
        };
        match namespace {
            Some(namespace) => format!("{base}/namespaces/{namespace}/{}", self.object_type.plural),
            None => format!("{base}/{}", self.object_type.plural),
        }
    }
}

/// What object queries return of a list, by the caller's view of it through
/// the proxy (`kubernetes.proxy`): a tenant granted some namespaces sees
/// only their objects here too, and nothing of a namespace outside the
/// grant. A caller with no proxy grant for the kind at all gets what
/// `kubernetes.resources.read` allows, as it always has.
enum ItemView {
    All,
    Some(Box<ObjectJudge>),
    Nothing,
}

fn view_of(
    context: &FetchContext,
    cluster: &str,
    path: &str,
    namespaces: Option<Namespaces>,
) -> ItemView {
    let method = http::Method::GET;
    let Some(request) = crate::kubernetes::Query::parse(None)
        .ok()
        .and_then(|query| KubernetesRequest::parse(&method, path, query).ok())
    else {
        return ItemView::Nothing;
    };
    let namespace = match (&namespaces, request.attributes.namespace.as_deref()) {
        (Some(namespaces), Some(namespace)) => namespaces.get(namespace),
        _ => None,
    };
    let view = |attributes: &crate::kubernetes::RequestAttributes, facts: &Facts<'_>| {
        let target = Target {
            cluster: Some(cluster),
            proxy: Some(ProxyTarget {
                method: &method,
                path,
                attributes: std::borrow::Cow::Borrowed(attributes),
            }),
            impersonation: None,
        };
        context.policy.view(&context.caller, &target, facts)
    };
    let facts = Facts {
        object: None,
        namespace_labels: namespace
            .as_ref()
            .map(|namespace| views::labels_of(namespace)),
    };
    match view(&request.attributes, &facts) {
        View::All => ItemView::All,
        View::Some => ItemView::Some(Box::new(ObjectJudge::new(
            context.policy.clone(),
            &context.caller,
            views::JudgedRead {
                cluster: cluster.to_owned(),
                method: method.clone(),
                path: path.to_owned(),
                attributes: request.attributes.clone(),
            },
            namespaces,
        ))),
        View::None => {
            let mut kind = request.attributes.clone();
            kind.namespace = None;
            if view(&kind, &Facts::default()) == View::None {
                ItemView::All
            } else {
                ItemView::Nothing
            }
        }
    }
}

fn object_meta(item: &DynamicObject) -> ObjectMeta<'_> {
    fn borrowed(value: &Option<String>) -> Option<Cow<'_, str>> {
        value.as_deref().map(Cow::Borrowed)
    }
    ObjectMeta {
        name: Cow::Borrowed(item.metadata.name.as_deref().unwrap_or_default()),
        namespace: borrowed(&item.metadata.namespace),
        uid: borrowed(&item.metadata.uid),
        resource_version: None,
        labels: item.metadata.labels.as_ref().map(|labels| {
            labels
                .iter()
                .map(|(key, value)| (Cow::Borrowed(key.as_str()), Cow::Borrowed(value.as_str())))
                .collect()
        }),
    }
}

/// Lists every type (and pod metrics) on one cluster within the deadline.
pub async fn fetch_cluster(
    record: Arc<ClusterRecord>,
    connector: Arc<Connector>,
    selection: Arc<Selection>,
    types: Arc<Vec<ObjectType>>,
    context: FetchContext,
) -> ClusterObjects {
    let mut objects = ClusterObjects {
        cluster: ClusterRef::from(&*record),
        resources: Vec::new(),
        pod_metrics: Vec::new(),
        errors: Vec::new(),
    };
    let token = client_credential(&record, &context.auth);
    if token.is_none()
        && matches!(
            record.auth_provider,
            AuthProvider::Oidc | AuthProvider::Google | AuthProvider::Client
        )
    {
        objects.errors.push(FetchError {
            error_type: ErrorType::UnauthorizedError,
            status_code: None,
            resource_path: None,
            message: Some(format!(
                "cluster {} uses authProvider {}: the request's auth carries no credential for it",
                record.name,
                record.auth_provider.as_str()
            )),
        });
        return objects;
    }
    let namespaces = if context.policy.reads_namespace_labels() {
        context.namespaces.of(&connector).await
    } else {
        None
    };
    let client = kube_client(connector, &context, token);
    let namespace = selection.namespace.clone();
    let mut jobs: Vec<Job> = types
        .iter()
        .map(|object_type| Job {
            object_type: object_type.clone(),
            metrics: false,
        })
        .collect();
    // Pod metrics only where pods are asked for (not for custom resources).
    let wants_pods = types.iter().any(|object_type| object_type.name == "pods");
    if wants_pods && !record.skip_metrics_lookup {
        jobs.push(Job {
            object_type: ObjectType::new("podmetrics", "metrics.k8s.io", "v1beta1", "pods"),
            metrics: true,
        });
    }
    let paths: Vec<String> = jobs
        .iter()
        .map(|job| job.resource_path(namespace.as_deref()))
        .collect();
    let mut pending: BTreeSet<usize> = (0..jobs.len()).collect();
    let list_params = ListParams::default().labels(&selection.label_selector);
    let list_calls: Vec<_> = jobs
        .iter()
        .enumerate()
        .map(|(index, job)| {
            let api: Api<DynamicObject> = match &namespace {
                Some(namespace) => {
                    Api::namespaced_with(client.clone(), namespace, &job.api_resource())
                }
                None => Api::all_with(client.clone(), &job.api_resource()),
            };
            let list_params = list_params.clone();
            async move { (index, api.list(&list_params).await) }
        })
        .collect();
    let mut lists = futures::stream::iter(list_calls).buffer_unordered(context.concurrency);
    let mut raw_pod_metrics: Option<Vec<Value>> = None;
    let mut metrics_error: Option<FetchError> = None;

    let deadline = tokio::time::Instant::now() + context.deadline;
    loop {
        match tokio::time::timeout_at(deadline, lists.next()).await {
            Ok(Some((index, result))) => {
                pending.remove(&index);
                let job = &jobs[index];
                match result {
                    Ok(mut list) => {
                        match view_of(&context, &record.name, &paths[index], namespaces.clone()) {
                            ItemView::All => {}
                            ItemView::Some(judge) => {
                                list.items.retain(|item| judge.visible(&object_meta(item)));
                            }
                            ItemView::Nothing => list.items.clear(),
                        }
                        // Items may omit their type (API servers do for built-in
                        // types); the list names it, as Backstage fills it in.
                        let kind = list.types.kind.strip_suffix("List").unwrap_or_default();
                        let api_version = list.types.api_version.as_str();
                        let items: Vec<Value> = list
                            .items
                            .into_iter()
                            .filter_map(|item| serde_json::to_value(item).ok())
                            .map(|mut item| {
                                fill_type(&mut item, kind, api_version);
                                if job.object_type.is_secret()
                                    || masking::says_it_is_a_secret(&item)
                                {
                                    masking::mask_secret(&mut item);
                                }
                                item
                            })
                            .collect();
                        if job.metrics {
                            raw_pod_metrics = Some(items);
                        } else {
                            objects.resources.push(FetchResult {
                                kind: job.object_type.name.clone(),
                                resources: items,
                            });
                        }
                    }
                    // A cluster without the metrics API is not an error.
                    Err(kube::Error::Api(response))
                        if job.metrics && matches!(response.code, 404 | 503) => {}
                    // Metrics matter only for pods found: decided once all lists are in.
                    Err(error) if job.metrics => {
                        metrics_error = Some(fetch_error(&error, &paths[index]));
                    }
                    Err(error) => objects.errors.push(fetch_error(&error, &paths[index])),
                }
            }
            Ok(None) => break,
            Err(_) => {
                // Backstage's frontend knows no timeout type: a list that missed
                // the deadline is a fetch error that says so.
                for index in std::mem::take(&mut pending) {
                    objects.errors.push(FetchError {
                        error_type: ErrorType::FetchError,
                        status_code: None,
                        resource_path: Some(paths[index].clone()),
                        message: Some(format!(
                            "cluster {}: list {} timed out after {:.1} s",
                            record.name,
                            paths[index],
                            context.deadline.as_secs_f64()
                        )),
                    });
                }
                break;
            }
        }
    }
    let pods_found = objects
        .resources
        .iter()
        .any(|result| result.kind == "pods" && !result.resources.is_empty());
    // As Backstage: no pods, no metrics to report on (nor their failure).
    if let Some(error) = metrics_error.filter(|_| pods_found) {
        objects.errors.push(error);
    }
    if let Some(raw) = raw_pod_metrics {
        let pods = objects
            .resources
            .iter()
            .find(|result| result.kind == "pods")
            .map(|result| result.resources.as_slice())
            .unwrap_or_default();
        objects.pod_metrics = client_pod_statuses(pods, &raw);
    }
    // A stable order for clients and tests: as the types were asked for.
    let order: Vec<&str> = types
        .iter()
        .map(|object_type| object_type.name.as_str())
        .collect();
    objects
        .resources
        .sort_by_key(|result| order.iter().position(|name| *name == result.kind));
    objects
}
