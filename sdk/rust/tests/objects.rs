//! The entity-scoped object queries through the SDK, against a live kubeportal
//! with a test-double cluster, an OIDC cluster, an unreachable cluster and a
//! Backstage catalog stand-in.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use kubeportal_sdk::{
    Client, ClusterObjects, CustomResourceConfig, Error, ErrorType, ObjectsResponse,
};
use kubeportal_tests::{
    double_cluster, register, spawn_app, start_double, ConfigSource, KubeDouble, TestApp, TestDb,
};
use serde_json::{json, Value};

fn entity(name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
    })
}

/// Serves the `shop-api` component at Backstage's by-name path; anything else is 404.
async fn start_catalog() -> String {
    async fn by_name(
        Path((kind, namespace, name)): Path<(String, String, String)>,
    ) -> Result<Json<Value>, StatusCode> {
        match (kind.as_str(), namespace.as_str(), name.as_str()) {
            ("component", "default", "shop-api") => Ok(Json(entity(
                "shop-api",
                json!({"backstage.io/kubernetes-id": "shop-api"}),
            ))),
            _ => Err(StatusCode::NOT_FOUND),
        }
    }
    let router = Router::new().route(
        "/api/catalog/entities/by-name/{kind}/{namespace}/{name}",
        get(by_name),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// Objects labelled for `shop-api` (and one that is not) in namespace `shop`.
fn seed(double: &KubeDouble) {
    let mine = json!({"backstage.io/kubernetes-id": "shop-api"});
    let other = json!({"backstage.io/kubernetes-id": "someone-else"});
    double.put_object("v1", "namespaces", json!({"metadata": {"name": "shop"}}));
    for (name, labels) in [("shop-api-1", &mine), ("other-1", &other)] {
        double.put_object(
            "v1",
            "pods",
            json!({"metadata": {"name": name, "namespace": "shop", "labels": labels}}),
        );
    }
    double.put_object(
        "apps/v1",
        "deployments",
        json!({"metadata": {"name": "shop-api", "namespace": "shop", "labels": mine}}),
    );
    double.register_custom_resource("example.com", "v1", "widgets", "Widget", true);
    double.put_object(
        "example.com/v1",
        "widgets",
        json!({"metadata": {"name": "gadget", "namespace": "shop", "labels": mine}}),
    );
}

struct Fixture {
    app: TestApp,
    _doubles: Vec<KubeDouble>,
    _db: TestDb,
}

async fn start() -> Fixture {
    let catalog = start_catalog().await;
    let yaml = format!(
        r#"
catalog: {{ baseUrl: "{catalog}" }}
kubernetes:
  objects: {{ cacheTtlMs: 0 }}
permissions:
  rules:
    - {{ permission: "*", subjects: ["*"], decision: allow }}
"#
    );
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    let dev = start_double().await;
    let oidc = start_double().await;
    seed(&dev);
    seed(&oidc);
    register(&app, double_cluster("dev", &dev)).await;
    register(
        &app,
        json!({"name": "oidc", "url": oidc.url(), "authProvider": "oidc", "oidcTokenProvider": "okta", "caData": oidc.ca_pem()}),
    )
    .await;
    // Nothing listens on port 1: connections are refused.
    register(
        &app,
        json!({"name": "offline", "url": "https://127.0.0.1:1", "authProvider": "serviceAccount", "serviceAccountToken": "t"}),
    )
    .await;
    Fixture {
        app,
        _doubles: vec![dev, oidc],
        _db: db,
    }
}

fn entry<'a>(response: &'a ObjectsResponse, cluster: &str) -> &'a ClusterObjects {
    response
        .items
        .iter()
        .find(|item| item.cluster.name == cluster)
        .unwrap_or_else(|| panic!("no entry for {cluster}"))
}

fn names_of(objects: &ClusterObjects, kind: &str) -> Vec<String> {
    let mut names: Vec<String> = objects
        .resources
        .iter()
        .filter(|result| result.kind == kind)
        .flat_map(|result| &result.resources)
        .filter_map(|object| object["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn objects_by_entity_returns_objects_and_errors_per_cluster() {
    let fixture = start().await;
    let client = Client::new(&fixture.app.url).expect("client");
    let shop_api = entity("shop-api", json!({}));

    let response = client
        .objects_by_entity(&shop_api, None)
        .await
        .expect("objects");
    let dev = entry(&response, "dev");
    assert!(dev.errors.is_empty(), "{:?}", dev.errors);
    assert_eq!(names_of(dev, "pods"), ["shop-api-1"]);
    assert_eq!(names_of(dev, "deployments"), ["shop-api"]);
    assert_eq!(
        entry(&response, "offline").errors[0].error_type,
        ErrorType::FetchError
    );
    assert_eq!(
        entry(&response, "oidc").errors[0].error_type,
        ErrorType::UnauthorizedError,
        "no OIDC token was sent"
    );

    // The caller's own token for the OIDC cluster travels in `auth`.
    let auth = json!({"oidc": {"okta": "double-token"}});
    let response = client
        .objects_by_entity(&shop_api, Some(&auth))
        .await
        .expect("objects");
    let oidc = entry(&response, "oidc");
    assert!(oidc.errors.is_empty(), "{:?}", oidc.errors);
    assert_eq!(names_of(oidc, "pods"), ["shop-api-1"]);
}

#[tokio::test]
async fn workloads_and_custom_resources_by_entity_ref() {
    let fixture = start().await;
    let client = Client::new(&fixture.app.url).expect("client");

    let workloads = client
        .workloads_by_entity_ref("component:default/shop-api", None)
        .await
        .expect("workloads");
    assert_eq!(names_of(entry(&workloads, "dev"), "pods"), ["shop-api-1"]);

    let widgets: CustomResourceConfig = serde_json::from_value(
        json!({"group": "example.com", "apiVersion": "v1", "plural": "widgets"}),
    )
    .expect("custom resource");
    let custom = client
        .custom_resources("component:default/shop-api", &[widgets], None)
        .await
        .expect("custom resources");
    let dev = entry(&custom, "dev");
    assert_eq!(names_of(dev, "customresources"), ["gadget"]);
    assert!(names_of(dev, "pods").is_empty());

    let unknown = client
        .workloads_by_entity_ref("component:default/nobody", None)
        .await
        .expect_err("not in the catalog");
    assert_eq!(unknown.portal_name(), Some("InputError"));
    assert!(matches!(unknown, Error::Portal { .. }));
}
