//! Entity-scoped object queries (Backstage compatible): the Kubernetes objects
//! of a catalog entity, from every matching cluster at once, with per-cluster
//! errors and deadlines. Identical concurrent queries are coalesced into one
//! fan-out and briefly cached, keyed so one caller never sees results fetched
//! with another caller's credentials.

mod catalog;
mod fetch;
mod masking;
mod metrics;
mod selection;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use http::HeaderMap;
use moka::future::Cache;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clusters::ClusterRecord;
use crate::config::{Config, CustomResourceConfig};
use crate::error::{ApiError, ErrorResponse};
use crate::extract::{Json, Path};
use crate::identity::Caller;
use crate::permissions::{Permission, Target};
use crate::state::AppState;
use crate::telemetry::FanOutErrorLabels;

pub use selection::{validate_label_selector, Selection};

/// One listable object type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ObjectType {
    /// The `type` reported in results (`pods`, …, or `customresources`).
    pub name: String,
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl ObjectType {
    pub fn new(name: &str, group: &str, version: &str, plural: &str) -> Self {
        Self {
            name: name.into(),
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
        }
    }

    fn is_secret(&self) -> bool {
        self.group.is_empty() && self.plural == "secrets"
    }

    fn custom(resource: &CustomResourceConfig) -> Self {
        // apiVersion may be `v1` or `group/v1`.
        let version = resource
            .api_version
            .rsplit('/')
            .next()
            .unwrap_or(&resource.api_version);
        Self::new(
            "customresources",
            &resource.group,
            version,
            &resource.plural,
        )
    }
}

/// The types every workload query lists (Backstage's defaults).
pub fn default_types() -> Vec<ObjectType> {
    [
        ("pods", "", "v1"),
        ("services", "", "v1"),
        ("configmaps", "", "v1"),
        ("limitranges", "", "v1"),
        ("resourcequotas", "", "v1"),
        ("deployments", "apps", "v1"),
        ("replicasets", "apps", "v1"),
        ("horizontalpodautoscalers", "autoscaling", "v2"),
        ("jobs", "batch", "v1"),
        ("cronjobs", "batch", "v1"),
        ("ingresses", "networking.k8s.io", "v1"),
        ("statefulsets", "apps", "v1"),
        ("daemonsets", "apps", "v1"),
    ]
    .into_iter()
    .map(|(plural, group, version)| ObjectType::new(plural, group, version, plural))
    .collect()
}

/// Checks a custom resource declaration.
pub fn validate_custom_resource(resource: &CustomResourceConfig) -> Result<(), String> {
    let part_ok = |text: &str| {
        !text.is_empty()
            && text.len() <= 253
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
    };
    if !resource.group.is_empty() && !part_ok(&resource.group) {
        return Err("group: not an API group name".into());
    }
    let version = resource.api_version.rsplit('/').next().unwrap_or_default();
    if !part_ok(version) {
        return Err("apiVersion: not an API version".into());
    }
    if !part_ok(&resource.plural) || resource.plural.contains('.') {
        return Err("plural: not a resource name".into());
    }
    Ok(())
}

pub use kubeportal_api::objects::{
    ClusterObjects, ClusterRef, CustomResourcesByEntityRequest, ErrorType, FetchError, FetchResult,
    ObjectsByEntityRequest, ObjectsResponse, WorkloadsByEntityRequest,
};

/// The cluster as Backstage's `ClusterAttributes` present it.
impl From<&ClusterRecord> for ClusterRef {
    fn from(record: &ClusterRecord) -> Self {
        Self {
            name: record.name.clone(),
            title: record.title.clone(),
            dashboard_url: record.dashboard_url.clone(),
            dashboard_app: record.dashboard_app.clone(),
            dashboard_parameters: record.dashboard_parameters.clone(),
        }
    }
}

/// Runs object queries; shared by the three routes.
#[derive(Clone)]
pub struct ObjectQueries {
    results: Option<Cache<[u8; 32], Arc<ObjectsResponse>>>,
    catalog: reqwest::Client,
    deadline: Duration,
    concurrency: usize,
}

impl ObjectQueries {
    pub fn new(config: &Config) -> Self {
        let objects = &config.kubernetes.objects;
        Self {
            results: (objects.cache_ttl_ms > 0).then(|| {
                Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(Duration::from_millis(objects.cache_ttl_ms))
                    .build()
            }),
            catalog: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a reqwest client with a timeout builds"),
            deadline: Duration::from_millis(objects.cluster_timeout_ms),
            concurrency: objects.concurrency_per_cluster,
        }
    }
}

/// The key under which identical queries share a result: the selection and
/// types, everything about the caller that can change what clusters answer,
/// and the clusters asked, each by registration and version (so a cluster
/// changed, or deleted and registered again under its name, is asked anew).
fn query_key(
    selection: &Selection,
    types: &[ObjectType],
    caller: &Caller,
    auth: &Value,
    clusters: &[ClusterRecord],
) -> [u8; 32] {
    let mut groups = caller.groups.clone();
    groups.sort();
    let clusters: Vec<(&str, i64)> = clusters
        .iter()
        .map(|cluster| (cluster.uid.as_str(), cluster.version))
        .collect();
    let material = serde_json::json!({
        "selection": selection,
        "types": types,
        "subject": caller.subject,
        "groups": groups,
        "auth": auth,
        "clusters": clusters,
    });
    Sha256::digest(material.to_string().as_bytes()).into()
}

/// Every registered cluster the caller may read resources of; 403 when the
/// policy gives them none.
async fn readable_clusters(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<ClusterRecord>, ApiError> {
    let mut clusters = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = state
            .registry
            .list(cursor.as_deref(), Some(crate::clusters::MAX_PAGE))
            .await?;
        clusters.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let allowed: Vec<_> = clusters
        .into_iter()
        .filter(|cluster| {
            state
                .policy
                .check(
                    caller,
                    Permission::ResourcesRead,
                    &Target::cluster(&cluster.name),
                )
                .is_ok()
        })
        .collect();
    if allowed.is_empty() {
        state
            .policy
            .check(caller, Permission::ResourcesRead, &Target::none())?;
    }
    Ok(allowed)
}

async fn run_query(
    state: &AppState,
    caller: &Caller,
    mut allowed: Vec<ClusterRecord>,
    selection: Selection,
    types: Vec<ObjectType>,
    auth: Value,
) -> Result<ObjectsResponse, ApiError> {
    if let Some(wanted) = &selection.cluster {
        allowed.retain(|cluster| cluster.name.eq_ignore_ascii_case(wanted));
    }
    let queries = &state.objects;
    let key = query_key(&selection, &types, caller, &auth, &allowed);
    let fan_out = {
        let state = state.clone();
        let context = fetch::FetchContext {
            caller: caller.clone(),
            auth,
            impersonation: Arc::new(state.config.kubernetes.impersonation.clone()),
            deadline: queries.deadline,
            concurrency: queries.concurrency,
        };
        let selection = Arc::new(selection);
        let types = Arc::new(types);
        let metrics = state.metrics.clone();
        Box::pin(async move {
            let clusters: Vec<_> = allowed
                .into_iter()
                .map(|record| {
                    let record = Arc::new(record);
                    let selection = selection.clone();
                    let types = types.clone();
                    let context = context.clone();
                    let upstreams = state.upstreams.clone();
                    async move {
                        match upstreams.connector(&record) {
                            Ok(connector) => {
                                fetch::fetch_cluster(record, connector, selection, types, context)
                                    .await
                            }
                            Err(error) => ClusterObjects {
                                cluster: ClusterRef::from(&*record),
                                resources: Vec::new(),
                                pod_metrics: Vec::new(),
                                errors: vec![FetchError {
                                    error_type: ErrorType::SystemError,
                                    status_code: None,
                                    resource_path: None,
                                    message: Some(error.to_string()),
                                }],
                            },
                        }
                    }
                })
                .collect();
            let results = futures::future::join_all(clusters).await;
            for cluster in &results {
                for error in &cluster.errors {
                    let labels = FanOutErrorLabels {
                        cluster: cluster.cluster.name.clone(),
                        error_type: serde_json::to_value(error.error_type)
                            .ok()
                            .and_then(|value| value.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                    };
                    metrics.fan_out_errors.get_or_create(&labels).inc();
                }
            }
            let items = results
                .into_iter()
                // Backstage leaves out clusters that had nothing and no error.
                .filter(|cluster| {
                    !cluster.errors.is_empty()
                        || cluster
                            .resources
                            .iter()
                            .any(|result| !result.resources.is_empty())
                })
                .collect();
            Arc::new(ObjectsResponse { items })
        })
            as std::pin::Pin<Box<dyn std::future::Future<Output = Arc<ObjectsResponse>> + Send>>
    };
    let response = match &queries.results {
        Some(cache) => {
            state
                .metrics
                .cache_lookup("objects", cache.contains_key(&key));
            cache.get_with(key, fan_out).await
        }
        None => fan_out.await,
    };
    Ok(ObjectsResponse::clone(&response))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(objects_by_entity))
        .routes(routes!(workloads_by_entity_ref))
        .routes(routes!(custom_resources_by_entity_ref))
}

fn configured_custom_types(config: &Config) -> Vec<ObjectType> {
    config
        .kubernetes
        .custom_resources
        .iter()
        .map(ObjectType::custom)
        .collect()
}

/// The objects of an entity sent in the body, from every matching cluster
/// (Backstage's `/services/:serviceId`).
#[utoipa::path(post, path = "/api/kubernetes/services/{entityName}", tag = "objects",
    params(("entityName" = String, Path, description = "The entity's name (informational; the body's entity is used)")),
    request_body = ObjectsByEntityRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Objects by cluster, with per-cluster errors", body = ObjectsResponse),
        (status = 400, description = "Malformed entity or label selector", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.resources.read denied", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
    ))]
async fn objects_by_entity(
    State(state): State<AppState>,
    caller: Caller,
    Path(_entity_name): Path<String>,
    Json(request): Json<ObjectsByEntityRequest>,
) -> Result<Json<ObjectsResponse>, ApiError> {
    let clusters = readable_clusters(&state, &caller).await?;
    let selection = Selection::of_entity(&request.entity).map_err(ApiError::Input)?;
    let mut types = default_types();
    types.extend(configured_custom_types(&state.config));
    Ok(Json(
        run_query(&state, &caller, clusters, selection, types, request.auth).await?,
    ))
}

/// The workloads of a catalog entity, looked up by ref in the catalog.
#[utoipa::path(post, path = "/api/kubernetes/resources/workloads/query", tag = "objects",
    request_body = WorkloadsByEntityRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Objects by cluster, with per-cluster errors", body = ObjectsResponse),
        (status = 400, description = "Malformed entity ref or label selector, or the catalog has no such entity", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.resources.read denied", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 502, description = "The catalog failed", body = ErrorResponse),
        (status = 503, description = "No catalog is configured", body = ErrorResponse),
    ))]
async fn workloads_by_entity_ref(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(request): Json<WorkloadsByEntityRequest>,
) -> Result<Json<ObjectsResponse>, ApiError> {
    let clusters = readable_clusters(&state, &caller).await?;
    let entity = catalog::fetch_entity(
        &state.objects.catalog,
        state.config.catalog.base_url.as_deref(),
        &request.entity_ref,
        &headers,
    )
    .await?;
    let selection = Selection::of_entity(&entity).map_err(ApiError::Input)?;
    let mut types = default_types();
    types.extend(configured_custom_types(&state.config));
    Ok(Json(
        run_query(&state, &caller, clusters, selection, types, request.auth).await?,
    ))
}

/// Custom resources of a catalog entity, looked up by ref in the catalog.
#[utoipa::path(post, path = "/api/kubernetes/resources/custom/query", tag = "objects",
    request_body = CustomResourcesByEntityRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Custom resources by cluster, with per-cluster errors", body = ObjectsResponse),
        (status = 400, description = "Malformed entity ref, custom resource or label selector, or the catalog has no such entity", body = ErrorResponse),
        (status = 401, description = "No valid identity", body = ErrorResponse),
        (status = 403, description = "kubernetes.resources.read denied", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 502, description = "The catalog failed", body = ErrorResponse),
        (status = 503, description = "No catalog is configured", body = ErrorResponse),
    ))]
async fn custom_resources_by_entity_ref(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(request): Json<CustomResourcesByEntityRequest>,
) -> Result<Json<ObjectsResponse>, ApiError> {
    if request.custom_resources.is_empty() {
        return Err(ApiError::Input("customResources: list at least one".into()));
    }
    for (index, resource) in request.custom_resources.iter().enumerate() {
        validate_custom_resource(resource)
            .map_err(|message| ApiError::Input(format!("customResources[{index}].{message}")))?;
    }
    let clusters = readable_clusters(&state, &caller).await?;
    let entity = catalog::fetch_entity(
        &state.objects.catalog,
        state.config.catalog.base_url.as_deref(),
        &request.entity_ref,
        &headers,
    )
    .await?;
    let selection = Selection::of_entity(&entity).map_err(ApiError::Input)?;
    let types = request
        .custom_resources
        .iter()
        .map(ObjectType::custom)
        .collect();
    Ok(Json(
        run_query(&state, &caller, clusters, selection, types, request.auth).await?,
    ))
}
