//! Entity-scoped object queries across test-double clusters: selection,
//! deadlines, per-cluster errors, custom resources, metrics and coalescing.

use std::time::{Duration, Instant};

use kubeportal_tests::{
    double_cluster, register, spawn_app, start_double, ConfigSource, DoubleOptions, Fault,
    KubeDouble, TestApp, TestDb,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const DEFAULT_TYPES: [(&str, &str, &str); 13] = [
    ("pods", "v1", "Pod"),
    ("services", "v1", "Service"),
    ("configmaps", "v1", "ConfigMap"),
    ("limitranges", "v1", "LimitRange"),
    ("resourcequotas", "v1", "ResourceQuota"),
    ("deployments", "apps/v1", "Deployment"),
    ("replicasets", "apps/v1", "ReplicaSet"),
    (
        "horizontalpodautoscalers",
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
    ),
    ("jobs", "batch/v1", "Job"),
    ("cronjobs", "batch/v1", "CronJob"),
    ("ingresses", "networking.k8s.io/v1", "Ingress"),
    ("statefulsets", "apps/v1", "StatefulSet"),
    ("daemonsets", "apps/v1", "DaemonSet"),
];

/// One object of every default type labelled for `id`, and one that is not.
fn seed(double: &KubeDouble, namespace: &str, id: &str) {
    for (plural, api_version, kind) in DEFAULT_TYPES {
        for (name, labels) in [
            (
                format!("{id}-{plural}"),
                json!({"backstage.io/kubernetes-id": id}),
            ),
            (
                format!("other-{plural}"),
                json!({"backstage.io/kubernetes-id": "someone-else"}),
            ),
        ] {
            double.put_object(
                api_version,
                plural,
                json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace, "labels": labels}}),
            );
        }
    }
}

fn entity(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "backstage.io/v1alpha1", "kind": "Component", "metadata": {"name": name, "namespace": "default", "annotations": annotations}})
}

async fn query(app: &TestApp, entity: &Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(&format!(
            "/api/kubernetes/services/{}",
            entity["metadata"]["name"].as_str().unwrap()
        )))
        .json(&json!({"entity": entity}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn cluster<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["cluster"]["name"] == name)
        .unwrap_or_else(|| panic!("no entry for {name} in {body}"))
}

fn names_of(entry: &Value, kind: &str) -> Vec<String> {
    entry["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|result| result["type"] == kind)
        .flat_map(|result| result["resources"].as_array().unwrap().iter())
        .map(|object| object["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

const FAST: &str = r#"
kubernetes:
  objects: { clusterTimeoutMs: 2000, cacheTtlMs: 0 }
permissions:
  rules:
    - { permission: "*", subjects: ["*"], decision: allow }
"#;

#[tokio::test]
async fn a_hung_cluster_becomes_an_error_entry_within_the_deadline() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(FAST)).await;
    let (a, b, hung) = (
        start_double().await,
        start_double().await,
        start_double().await,
    );
    seed(&a, "shop", "shop-api");
    seed(&b, "shop", "shop-api");
    register(&app, double_cluster("a", &a)).await;
    register(&app, double_cluster("b", &b)).await;
    register(&app, double_cluster("hung", &hung)).await;
    hung.set_fault(Fault::Hang);

    let started = Instant::now();
    let (status, body) = query(&app, &entity("shop-api", json!({}))).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        elapsed < Duration::from_secs(3),
        "answered after {elapsed:?} with a 2 s deadline"
    );

    for name in ["a", "b"] {
        let entry = cluster(&body, name);
        assert_eq!(entry["errors"], json!([]), "{name}: {entry}");
        for (plural, _, _) in DEFAULT_TYPES {
            assert_eq!(
                names_of(entry, plural),
                [format!("shop-api-{plural}")],
                "{name}/{plural}"
            );
        }
    }
    let hung_entry = cluster(&body, "hung");
    let errors = hung_entry["errors"].as_array().unwrap();
    assert_eq!(
        errors.len(),
        DEFAULT_TYPES.len() + 1,
        "one per unfinished list, metrics included: {errors:?}"
    );
    // Backstage's frontend knows no TIMEOUT type: a fetch error that says what timed out.
    assert!(errors
        .iter()
        .all(|error| error["errorType"] == "FETCH_ERROR"));
    let deployments = errors
        .iter()
        .find(|error| error["resourcePath"] == "/apis/apps/v1/deployments")
        .unwrap();
    let message = deployments["message"].as_str().unwrap();
    assert!(
        message.contains("hung")
            && message.contains("/apis/apps/v1/deployments")
            && message.contains("timed out after 2.0 s"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unauthorized_type_is_reported_while_the_others_return() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(FAST)).await;
    let double = start_double().await;
    seed(&double, "shop", "shop-api");
    double.fail_resource("deployments", 401);
    double.fail_resource("cronjobs", 500);
    register(&app, double_cluster("dev", &double)).await;
    let (_, body) = query(&app, &entity("shop-api", json!({}))).await;
    let entry = cluster(&body, "dev");
    let errors = entry["errors"].as_array().unwrap();
    let unauthorized = errors
        .iter()
        .find(|error| error["errorType"] == "UNAUTHORIZED_ERROR")
        .expect("401 mapped");
    assert_eq!(unauthorized["statusCode"], 401);
    assert_eq!(unauthorized["resourcePath"], "/apis/apps/v1/deployments");
    let system = errors
        .iter()
        .find(|error| error["errorType"] == "SYSTEM_ERROR")
        .expect("500 mapped");
    assert_eq!(system["resourcePath"], "/apis/batch/v1/cronjobs");
    assert_eq!(names_of(entry, "pods"), ["shop-api-pods"]);
    assert_eq!(names_of(entry, "services"), ["shop-api-services"]);
    assert!(names_of(entry, "deployments").is_empty());
}

#[tokio::test]
async fn namespace_and_cluster_annotations_narrow_the_query() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(FAST)).await;
    let (dev, prod) = (start_double().await, start_double().await);
    seed(&dev, "shop", "shop-api");
    seed(&prod, "shop", "shop-api");
    seed(&prod, "elsewhere", "shop-api");
    register(&app, double_cluster("dev", &dev)).await;
    register(&app, double_cluster("prod", &prod)).await;

    let annotated = entity(
        "anything",
        json!({"backstage.io/kubernetes-id": "shop-api", "backstage.io/kubernetes-namespace": "shop", "backstage.io/kubernetes-cluster": "prod"}),
    );
    let (status, body) = query(&app, &annotated).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["items"].as_array().unwrap().len(),
        1,
        "only the annotated cluster: {body}"
    );
    assert_eq!(
        names_of(cluster(&body, "prod"), "pods"),
        ["shop-api-pods"],
        "only the annotated namespace"
    );
    assert!(dev.requests().is_empty(), "the other cluster was not asked");
    let asked: Vec<_> = prod
        .requests()
        .into_iter()
        .filter(|request| request.path.ends_with("/pods"))
        .collect();
    assert!(!asked.is_empty());
    for request in asked {
        assert!(
            request.path.contains("/namespaces/shop/"),
            "{}",
            request.path
        );
        assert!(request
            .query
            .as_deref()
            .unwrap()
            .contains("labelSelector=backstage.io%2Fkubernetes-id%3Dshop-api"));
    }

    let by_selector = entity(
        "x",
        json!({"backstage.io/kubernetes-label-selector": "backstage.io/kubernetes-id in (shop-api)"}),
    );
    let (_, body) = query(&app, &by_selector).await;
    assert_eq!(
        names_of(cluster(&body, "prod"), "pods").len(),
        2,
        "both namespaces without the namespace annotation"
    );

    let malformed = entity(
        "x",
        json!({"backstage.io/kubernetes-label-selector": "app in (shop"}),
    );
    let (status, body) = query(&app, &malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["name"], "InputError");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("label-selector"));
}

#[tokio::test]
async fn custom_resources_from_config_and_request_are_returned() {
    let db = TestDb::sqlite();
    let catalog = CatalogStub::start(vec![entity(
        "shop-api",
        json!({"backstage.io/kubernetes-namespace": "shop"}),
    )])
    .await;
    let yaml = format!(
        r#"
catalog: {{ baseUrl: "{}" }}
kubernetes:
  objects: {{ clusterTimeoutMs: 2000, cacheTtlMs: 0 }}
  customResources:
    - {{ group: argoproj.io, apiVersion: v1alpha1, plural: rollouts }}
permissions:
  rules:
    - {{ permission: "*", subjects: ["*"], decision: allow }}
"#,
        catalog.url
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    let double = start_double().await;
    double.register_custom_resource("argoproj.io", "v1alpha1", "rollouts", "Rollout", true);
    double.register_custom_resource("example.com", "v1", "widgets", "Widget", true);
    let label = json!({"backstage.io/kubernetes-id": "shop-api"});
    double.put_object("argoproj.io/v1alpha1", "rollouts", json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "canary", "namespace": "shop", "labels": label}}));
    double.put_object("example.com/v1", "widgets", json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "gadget", "namespace": "shop", "labels": label}}));
    register(&app, double_cluster("dev", &double)).await;

    let workloads: Value = app
        .client
        .post(app.url("/api/kubernetes/resources/workloads/query"))
        .json(&json!({"entityRef": "component:default/shop-api"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        names_of(cluster(&workloads, "dev"), "customresources"),
        ["canary"],
        "from config: {workloads}"
    );

    double.clear_requests();
    let custom = app
        .client
        .post(app.url("/api/kubernetes/resources/custom/query"))
        .json(&json!({"entityRef": "component:default/shop-api", "customResources": [{"group": "example.com", "apiVersion": "v1", "plural": "widgets"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(custom.status(), StatusCode::OK);
    let custom: Value = custom.json().await.unwrap();
    let entry = cluster(&custom, "dev");
    assert_eq!(names_of(entry, "customresources"), ["gadget"]);
    assert!(
        names_of(entry, "pods").is_empty(),
        "only the asked-for types"
    );
    assert!(
        double
            .requests()
            .iter()
            .all(|request| !request.path.contains("metrics.k8s.io")),
        "no pod metrics are fetched where no pods are asked for"
    );

    let missing = app
        .client
        .post(app.url("/api/kubernetes/resources/workloads/query"))
        .json(&json!({"entityRef": "component:default/nobody"}))
        .send()
        .await
        .unwrap();
    // As Backstage answers it: bad input naming the ref, not a missing route.
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let missing: Value = missing.json().await.unwrap();
    assert_eq!(missing["error"]["name"], "InputError");
    assert_eq!(
        missing["error"]["message"],
        "Entity ref missing, component:default/nobody"
    );
    catalog.fail();
    let failing = app
        .client
        .post(app.url("/api/kubernetes/resources/workloads/query"))
        .json(&json!({"entityRef": "component:default/shop-api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failing.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        catalog.authorizations().len(),
        4,
        "the catalog was asked each time"
    );
}

#[tokio::test]
async fn identical_concurrent_queries_share_one_fan_out() {
    let db = TestDb::sqlite();
    let yaml = r#"
kubernetes:
  objects: { clusterTimeoutMs: 5000, cacheTtlMs: 5000 }
permissions:
  rules:
    - { permission: "*", subjects: ["*"], decision: allow }
"#;
    let app = spawn_app(&db, ConfigSource::Yaml(yaml)).await;
    let (a, b) = (start_double().await, start_double().await);
    seed(&a, "shop", "shop-api");
    seed(&b, "shop", "shop-api");
    // Slow lists keep the first fan-out in flight while the others arrive.
    a.delay_resource("pods", Duration::from_millis(300));
    register(&app, double_cluster("a", &a)).await;
    register(&app, double_cluster("b", &b)).await;
    let shop = entity("shop-api", json!({}));
    let responses = futures::future::join_all((0..20).map(|_| query(&app, &shop))).await;
    for (status, body) in &responses {
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(names_of(cluster(body, "a"), "pods"), ["shop-api-pods"]);
    }
    for double in [&a, &b] {
        for (plural, _, _) in DEFAULT_TYPES {
            assert_eq!(
                double.list_calls(plural),
                1,
                "{plural} listed more than once"
            );
        }
    }
}

#[tokio::test]
async fn client_side_credentials_and_metrics_are_per_cluster() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(FAST)).await;
    let with_metrics = KubeDouble::start(DoubleOptions {
        metrics_api: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let oidc = start_double().await;
    seed(&with_metrics, "shop", "shop-api");
    seed(&oidc, "shop", "shop-api");
    with_metrics.put_object(
        "v1",
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "shop", "labels": {"backstage.io/kubernetes-id": "shop-api"}}, "data": {"password": "aHVudGVyMg=="}}),
    );
    register(&app, double_cluster("metrics", &with_metrics)).await;
    register(&app, json!({"name": "oidc", "url": oidc.url(), "authProvider": "oidc", "oidcTokenProvider": "okta", "caData": oidc.ca_pem()})).await;

    with_metrics.put_object(
        "v1",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop", "labels": {"backstage.io/kubernetes-id": "shop-api"}},
               "spec": {"containers": [
                   {"name": "app", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}},
                   {"name": "sidecar", "resources": {"requests": {"cpu": "20m"}}}]}}),
    );

    let (_, body) = query(&app, &entity("shop-api", json!({}))).await;
    let metrics = cluster(&body, "metrics");
    assert_eq!(metrics["errors"], json!([]));
    // Backstage's client pod status, one per pod listed: the double reports
    // 5m CPU and 32Mi memory per container.
    let statuses = metrics["podMetrics"].as_array().unwrap();
    assert_eq!(statuses.len(), 2, "{metrics}");
    let web = statuses
        .iter()
        .find(|status| status["pod"]["metadata"]["name"] == "web")
        .unwrap();
    assert_eq!(web["pod"]["kind"], "Pod");
    assert_eq!(
        web["cpu"],
        json!({"currentUsage": 0.01, "requestTotal": 0.12, "limitTotal": 0.5})
    );
    assert_eq!(
        web["memory"],
        json!({"currentUsage": 67108864, "requestTotal": 67108864, "limitTotal": 134217728})
    );
    assert_eq!(
        web["containers"],
        json!([
            {"container": "app",
             "cpuUsage": {"currentUsage": 0.005, "requestTotal": 0.1, "limitTotal": 0.5},
             "memoryUsage": {"currentUsage": 33554432, "requestTotal": 67108864, "limitTotal": 134217728}},
            {"container": "sidecar",
             "cpuUsage": {"currentUsage": 0.005, "requestTotal": 0.02, "limitTotal": 0.0},
             "memoryUsage": {"currentUsage": 33554432, "requestTotal": 0, "limitTotal": 0}},
        ])
    );
    let unauthorized = cluster(&body, "oidc");
    assert_eq!(unauthorized["errors"][0]["errorType"], "UNAUTHORIZED_ERROR");
    assert!(
        oidc.requests().is_empty(),
        "no request without the caller's credential"
    );

    let with_token = app
        .client
        .post(app.url("/api/kubernetes/services/shop-api"))
        .json(&json!({"entity": entity("shop-api", json!({})), "auth": {"oidc": {"okta": "double-token"}}}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let oidc_entry = cluster(&with_token, "oidc");
    assert_eq!(oidc_entry["errors"], json!([]), "{oidc_entry}");
    assert_eq!(names_of(oidc_entry, "pods"), ["shop-api-pods"]);
    assert!(
        oidc_entry["podMetrics"].as_array().unwrap().is_empty(),
        "no metrics API is not an error"
    );
    let recorded = oidc.requests().pop().unwrap();
    assert_eq!(
        recorded.header("authorization"),
        Some("Bearer double-token")
    );
}

#[tokio::test]
async fn secrets_asked_for_as_custom_resources_are_masked() {
    let db = TestDb::sqlite();
    let catalog = CatalogStub::start(vec![entity("shop-api", json!({}))]).await;
    let yaml = format!("catalog: {{ baseUrl: \"{}\" }}\npermissions:\n  rules:\n    - {{ permission: \"*\", subjects: [\"*\"], decision: allow }}\n", catalog.url);
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    let double = start_double().await;
    double.put_object(
        "v1",
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop", "labels": {"backstage.io/kubernetes-id": "shop-api"}}, "data": {"password": "aHVudGVyMg=="}}),
    );
    register(&app, double_cluster("dev", &double)).await;
    let body: Value = app
        .client
        .post(app.url("/api/kubernetes/resources/custom/query"))
        .json(&json!({"entityRef": "shop-api", "customResources": [{"group": "", "apiVersion": "v1", "plural": "secrets"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = body.to_string();
    assert!(text.contains("\"db\""), "{text}");
    assert!(
        !text.contains("aHVudGVyMg=="),
        "secret value returned: {text}"
    );
    assert!(text.contains("***"));
}

#[tokio::test]
async fn resources_read_gates_the_routes() {
    let db = TestDb::sqlite();
    let yaml = r#"
auth: { guest: true }
permissions:
  rules:
    - { permission: kubernetes.clusters.read, subjects: ["*"], decision: allow }
"#;
    let app = spawn_app(&db, ConfigSource::Yaml(yaml)).await;
    let (status, body) = query(&app, &entity("shop-api", json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["name"], "NotAllowedError");
    let response = app
        .client
        .post(app.url("/api/kubernetes/resources/workloads/query"))
        .json(&json!({"entityRef": "component:default/shop-api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// A Backstage catalog stand-in serving fixed entities by name.
struct CatalogStub {
    url: String,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

impl CatalogStub {
    async fn start(entities: Vec<Value>) -> CatalogStub {
        use axum::extract::{Path, State};
        use axum::http::HeaderMap;
        type Shared = (
            Vec<Value>,
            std::sync::Arc<std::sync::atomic::AtomicBool>,
            std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
        );
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let router = axum::Router::new()
            .route(
                "/api/catalog/entities/by-name/{kind}/{namespace}/{name}",
                axum::routing::get(
                    |State((entities, failing, seen)): State<Shared>,
                     Path((kind, namespace, name)): Path<(String, String, String)>,
                     headers: HeaderMap| async move {
                        seen.lock().unwrap().push(
                            headers
                                .get("authorization")
                                .map(|value| value.to_str().unwrap().to_owned()),
                        );
                        if failing.load(std::sync::atomic::Ordering::SeqCst) {
                            return (
                                StatusCode::INTERNAL_SERVER_ERROR,
                                axum::Json(json!({"error": "down"})),
                            );
                        }
                        match entities.iter().find(|entity| {
                            entity["kind"].as_str().unwrap().eq_ignore_ascii_case(&kind)
                                && entity["metadata"]["namespace"] == namespace
                                && entity["metadata"]["name"] == name
                        }) {
                            Some(entity) => (StatusCode::OK, axum::Json(entity.clone())),
                            None => (
                                StatusCode::NOT_FOUND,
                                axum::Json(json!({"error": {"name": "NotFoundError"}})),
                            ),
                        }
                    },
                ),
            )
            .with_state((entities, failing.clone(), seen.clone()));
        let url = kubeportal_tests::serve_stand_in(router).await;
        CatalogStub { url, failing, seen }
    }

    fn fail(&self) {
        self.failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn authorizations(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

/// A Secret as `kubectl apply` leaves it: values in `data` and `stringData`,
/// and all of them again in the `last-applied-configuration` annotation.
const APPLIED_SECRET: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
  namespace: default
  labels: { backstage.io/kubernetes-id: shop-api }
type: Opaque
data:
  password: aHVudGVyMi1mcm9tLWRhdGE=
stringData:
  url: postgres://app:string-data-s3cret@db/app
"#;

#[tokio::test]
async fn a_secret_applied_with_kubectl_shows_no_value_in_any_object_query() {
    use kubeportal_tests::kubectl_on_double;
    let db = TestDb::sqlite();
    let catalog = CatalogStub::start(vec![entity("shop-api", json!({}))]).await;
    let yaml = format!(
        r#"
catalog: {{ baseUrl: "{}" }}
permissions:
  rules:
    - {{ permission: "*", subjects: ["*"], decision: allow }}
kubernetes:
  customResources:
    - {{ group: "", apiVersion: v1, plural: secrets }}
"#,
        catalog.url
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    let applied = kubectl_on_double(&double, &["apply", "-f", "-"], Some(APPLIED_SECRET)).await;
    assert!(applied.contains("secret/db-credentials"), "{applied}");
    let values = [
        "aHVudGVyMi1mcm9tLWRhdGE=",
        "hunter2-from-data",
        "string-data-s3cret",
    ];

    // The cluster holds the values in the annotation too (what the proxy,
    // under its own policy, passes through verbatim).
    let raw = app
        .client
        .get(app.url("/api/kubernetes/proxy/api/v1/namespaces/default/secrets/db-credentials"))
        .header("Backstage-Kubernetes-Cluster", "dev")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains("last-applied-configuration") && raw.contains("string-data-s3cret"));

    let routes = [
        (
            "/api/kubernetes/services/shop-api",
            json!({"entity": entity("shop-api", json!({}))}),
        ),
        (
            "/api/kubernetes/resources/workloads/query",
            json!({"entityRef": "component:default/shop-api"}),
        ),
        (
            "/api/kubernetes/resources/custom/query",
            json!({"entityRef": "component:default/shop-api",
                "customResources": [{"group": "", "apiVersion": "v1", "plural": "secrets"}]}),
        ),
    ];
    for (route, request) in routes {
        let response = app
            .client
            .post(app.url(route))
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{route}");
        let body: Value = response.json().await.unwrap();
        let secret = body["items"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|list| list["resources"].as_array().unwrap())
            .find(|object| object["metadata"]["name"] == "db-credentials")
            .unwrap_or_else(|| panic!("{route} lists the Secret: {body}"))
            .clone();
        let text = body.to_string();
        for value in values {
            assert!(
                !text.contains(value),
                "{route} returned a secret value: {text}"
            );
        }
        assert_eq!(secret["data"]["password"], "***", "{route}");
        let copy: Value = serde_json::from_str(
            secret["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                .as_str()
                .unwrap_or_else(|| panic!("{route} keeps the annotation: {secret}")),
        )
        .unwrap();
        assert_eq!(copy["metadata"]["name"], "db-credentials", "{route}");
        assert_eq!(copy["data"]["password"], "***", "{route}");
        assert_eq!(copy["stringData"]["url"], "***", "{route}");
    }
}

/// A cluster stand-in whose lists carry their type only on the list, as API
/// servers may send them: every list answers one item without `kind` or `apiVersion`.
async fn typeless_cluster() -> String {
    let router = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
        let path = uri.path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (api_version, kind) = match (segments.first(), segments.last()) {
            (Some(&"api"), Some(&"pods")) => ("v1".to_owned(), "PodList"),
            (Some(&"apis"), Some(&"widgets")) => (format!("{}/{}", segments[1], segments[2]), "WidgetList"),
            _ => {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not here"})),
                )
            }
        };
        (
            StatusCode::OK,
            axum::Json(json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "1"},
                "items": [{"metadata": {"name": "bare", "namespace": "shop", "labels": {"backstage.io/kubernetes-id": "shop-api"}}}]})),
        )
    });
    let url = kubeportal_tests::serve_stand_in(router).await;
    url
}

#[tokio::test]
async fn items_missing_their_type_get_it_from_the_list() {
    let db = TestDb::sqlite();
    let yaml = r#"
kubernetes:
  objects: { clusterTimeoutMs: 2000, cacheTtlMs: 0 }
  customResources:
    - { group: example.com, apiVersion: v1, plural: widgets }
permissions:
  rules:
    - { permission: "*", subjects: ["*"], decision: allow }
"#;
    let app = spawn_app(&db, ConfigSource::Yaml(yaml)).await;
    let url = typeless_cluster().await;
    register(
        &app,
        json!({"name": "bare", "url": url, "authProvider": "serviceAccount", "serviceAccountToken": "token", "skipMetricsLookup": true}),
    )
    .await;

    let (status, body) = query(&app, &entity("shop-api", json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entry = cluster(&body, "bare");
    let first = |kind: &str| {
        entry["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|result| result["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {entry}"))["resources"][0]
            .clone()
    };
    let pod = first("pods");
    assert_eq!(
        (&pod["kind"], &pod["apiVersion"]),
        (&json!("Pod"), &json!("v1"))
    );
    let widget = first("customresources");
    assert_eq!(
        (&widget["kind"], &widget["apiVersion"]),
        (&json!("Widget"), &json!("example.com/v1"))
    );
}
