//! Entity-scoped object queries (Backstage compatible): the Kubernetes objects
//! of a catalog entity, from every matching cluster at once, with per-cluster
//! errors and deadlines. Identical concurrent queries are coalesced into one
//! fan-out and briefly cached, keyed so one caller never sees results fetched
//! with another caller's credentials.

mod catalog;
mod config;
mod fetch;
mod masking;
mod metrics;
mod selection;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, State};
use http::HeaderMap;
use moka::future::Cache;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clusters::{ClusterRecord, Registry};
use crate::error::{ApiError, ErrorResponse};
use crate::extract::{Json, Path};
use crate::identity::{Authenticator, Caller};
use crate::permissions::{Permission, Policy, Target};
use crate::telemetry::{FanOutErrorLabels, SharedMetrics};
use crate::upstream::{ImpersonationConfig, Upstreams};

pub use config::{
    validate_custom_resource, validate_custom_resources, CatalogConfig, CustomResourceConfig,
    CustomResourceError, ObjectQueryConfig, ObjectsConfigError,
};
pub use selection::{validate_label_selector, LabelSelectorError, Selection, SelectionError};

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

/// What object queries use of the rest of kubeportal.
pub struct ObjectServices {
    pub registry: Registry,
    pub policy: Arc<Policy>,
    pub upstreams: Upstreams,
    pub metrics: SharedMetrics,
    /// Each cluster's namespaces, for rules that select them by label.
    pub namespaces: crate::views::NamespaceLabels,
}

/// The configuration object queries read.
pub struct ObjectSettings<'a> {
    pub queries: &'a ObjectQueryConfig,
    pub custom_resources: &'a [CustomResourceConfig],
    pub catalog: &'a CatalogConfig,
    pub impersonation: &'a ImpersonationConfig,
}

/// Runs object queries; shared by the three routes (a clone is a reference
/// count).
#[derive(Clone)]
pub struct ObjectQueries(Arc<Queries>);

struct Queries {
    registry: Registry,
    policy: Arc<Policy>,
    upstreams: Upstreams,
    metrics: SharedMetrics,
    namespaces: crate::views::NamespaceLabels,
    results: Option<Cache<[u8; 32], Arc<ObjectsResponse>>>,
    catalog: reqwest::Client,
    catalog_url: Option<String>,
    /// `kubernetes.customResources`, listed with the workloads.
    custom_types: Vec<ObjectType>,
    impersonation: Arc<ImpersonationConfig>,
    deadline: Duration,
    concurrency: usize,
}

impl ObjectQueries {
    pub fn new(settings: ObjectSettings<'_>, services: ObjectServices) -> Self {
        let objects = settings.queries;
        Self(Arc::new(Queries {
            registry: services.registry,
            policy: services.policy,
            upstreams: services.upstreams,
            metrics: services.metrics,
            namespaces: services.namespaces,
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
            catalog_url: settings.catalog.base_url.clone(),
            custom_types: settings
                .custom_resources
                .iter()
                .map(ObjectType::custom)
                .collect(),
            impersonation: Arc::new(settings.impersonation.clone()),
            deadline: Duration::from_millis(objects.cluster_timeout_ms),
            concurrency: objects.concurrency_per_cluster,
        }))
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
    let mut groups = caller.groups.to_vec();
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
    queries: &Queries,
    caller: &Caller,
) -> Result<Vec<ClusterRecord>, ApiError> {
    let mut clusters = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = queries
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
            queries
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
        queries
            .policy
            .check(caller, Permission::ResourcesRead, &Target::none())?;
    }
    Ok(allowed)
}

async fn run_query(
    queries: &Queries,
    caller: &Caller,
    mut allowed: Vec<ClusterRecord>,
    selection: Selection,
    types: Vec<ObjectType>,
    auth: Value,
) -> Result<ObjectsResponse, ApiError> {
    if let Some(wanted) = &selection.cluster {
        allowed.retain(|cluster| cluster.name.eq_ignore_ascii_case(wanted));
    }
    let key = query_key(&selection, &types, caller, &auth, &allowed);
    let fan_out = {
        let upstreams = queries.upstreams.clone();
        let context = fetch::FetchContext {
            caller: caller.clone(),
            auth,
            policy: queries.policy.clone(),
            namespaces: queries.namespaces.clone(),
            impersonation: queries.impersonation.clone(),
            deadline: queries.deadline,
            concurrency: queries.concurrency,
        };
        let selection = Arc::new(selection);
        let types = Arc::new(types);
        let metrics = queries.metrics.clone();
        Box::pin(async move {
            let clusters: Vec<_> = allowed
                .into_iter()
                .map(|record| {
                    let record = Arc::new(record);
                    let selection = selection.clone();
                    let types = types.clone();
                    let context = context.clone();
                    let upstreams = upstreams.clone();
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
            queries
                .metrics
                .cache_lookup("objects", cache.contains_key(&key));
            cache.get_with(key, fan_out).await
        }
        None => fan_out.await,
    };
    Ok(ObjectsResponse::clone(&response))
}

pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    ObjectQueries: FromRef<S>,
    Arc<Authenticator>: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(objects_by_entity))
        .routes(routes!(workloads_by_entity_ref))
        .routes(routes!(custom_resources_by_entity_ref))
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
    State(ObjectQueries(queries)): State<ObjectQueries>,
    caller: Caller,
    Path(_entity_name): Path<String>,
    Json(request): Json<ObjectsByEntityRequest>,
) -> Result<Json<ObjectsResponse>, ApiError> {
    let clusters = readable_clusters(&queries, &caller).await?;
    let selection = Selection::of_entity(&request.entity)
        .map_err(|error| ApiError::Input(error.to_string()))?;
    let mut types = default_types();
    types.extend(queries.custom_types.iter().cloned());
    Ok(Json(
        run_query(&queries, &caller, clusters, selection, types, request.auth).await?,
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
    State(ObjectQueries(queries)): State<ObjectQueries>,
    caller: Caller,
    headers: HeaderMap,
    Json(request): Json<WorkloadsByEntityRequest>,
) -> Result<Json<ObjectsResponse>, ApiError> {
    let clusters = readable_clusters(&queries, &caller).await?;
    let entity = catalog::fetch_entity(
        &queries.catalog,
        queries.catalog_url.as_deref(),
        &request.entity_ref,
        &headers,
    )
    .await?;
    let selection =
        Selection::of_entity(&entity).map_err(|error| ApiError::Input(error.to_string()))?;
    let mut types = default_types();
    types.extend(queries.custom_types.iter().cloned());
    Ok(Json(
        run_query(&queries, &caller, clusters, selection, types, request.auth).await?,
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
    State(ObjectQueries(queries)): State<ObjectQueries>,
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
    let clusters = readable_clusters(&queries, &caller).await?;
    let entity = catalog::fetch_entity(
        &queries.catalog,
        queries.catalog_url.as_deref(),
        &request.entity_ref,
        &headers,
    )
    .await?;
    let selection =
        Selection::of_entity(&entity).map_err(|error| ApiError::Input(error.to_string()))?;
    let types = request
        .custom_resources
        .iter()
        .map(ObjectType::custom)
        .collect();
    Ok(Json(
        run_query(&queries, &caller, clusters, selection, types, request.auth).await?,
    ))
}
