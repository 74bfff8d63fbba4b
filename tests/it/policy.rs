//! Each permission on each route, over HTTP.

use kubeportal_tests::{spawn_app, ConfigSource, TestApp, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const POLICY: &str = r#"
auth:
  guest: false
  staticTokens:
    - { token: reader-token-0123456789, subject: "user:default/reader" }
    - { token: admin-token-01234567890, subject: "user:default/admin", groups: ["group:default/platform"] }
    - { token: devadmin-token-0123456789, subject: "user:default/dev-admin" }
    - { token: nobody-token-01234567890, subject: "user:default/nobody" }
permissions:
  rules:
    - { permission: kubernetes.clusters.read, subjects: ["user:default/reader"], decision: allow }
    - { permission: kubernetes.clusters.manage, subjects: ["group:default/platform"], decision: allow, description: platform team manages clusters }
    - { permission: kubernetes.clusters.manage, subjects: ["user:default/dev-admin"], clusters: ["dev-*"], decision: allow }
"#;

const READER: &str = "reader-token-0123456789";
const ADMIN: &str = "admin-token-01234567890";
const DEV_ADMIN: &str = "devadmin-token-0123456789";
const NOBODY: &str = "nobody-token-01234567890";

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> StatusCode {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    if status == StatusCode::FORBIDDEN {
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["error"],
            json!({"name": "NotAllowedError", "message": "Unauthorized"})
        );
        assert!(
            !body.to_string().contains("dev-1"),
            "denials never name the cluster: {body}"
        );
    }
    status
}

fn new_cluster(name: &str) -> Value {
    json!({"name": name, "url": "https://10.0.0.1:6443", "authProvider": "google"})
}

#[tokio::test]
async fn each_route_requires_its_permission() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(POLICY)).await;

    // kubernetes.clusters.read: the list.
    assert_eq!(
        call(&app, READER, Method::GET, "/api/kubernetes/clusters", None).await,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, ADMIN, Method::GET, "/api/kubernetes/clusters", None).await,
        StatusCode::FORBIDDEN
    );

    // kubernetes.clusters.manage: create, read one, update, delete, explain.
    assert_eq!(
        call(
            &app,
            READER,
            Method::POST,
            "/api/kubernetes/clusters",
            Some(new_cluster("dev-1"))
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            ADMIN,
            Method::POST,
            "/api/kubernetes/clusters",
            Some(new_cluster("dev-1"))
        )
        .await,
        StatusCode::CREATED
    );
    assert_eq!(
        call(
            &app,
            READER,
            Method::GET,
            "/api/kubernetes/clusters/dev-1",
            None
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            ADMIN,
            Method::GET,
            "/api/kubernetes/clusters/dev-1",
            None
        )
        .await,
        StatusCode::OK
    );
    let update = json!({"url": "https://10.0.0.2:6443", "authProvider": "google", "version": 1});
    assert_eq!(
        call(
            &app,
            READER,
            Method::PUT,
            "/api/kubernetes/clusters/dev-1",
            Some(update.clone())
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            ADMIN,
            Method::PUT,
            "/api/kubernetes/clusters/dev-1",
            Some(update)
        )
        .await,
        StatusCode::OK
    );
    let question =
        json!({"subject": "user:default/reader", "permission": "kubernetes.clusters.read"});
    assert_eq!(
        call(
            &app,
            READER,
            Method::POST,
            "/api/kubernetes/permissions/explain",
            Some(question.clone())
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            ADMIN,
            Method::POST,
            "/api/kubernetes/permissions/explain",
            Some(question)
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &app,
            READER,
            Method::DELETE,
            "/api/kubernetes/clusters/dev-1",
            None
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            ADMIN,
            Method::DELETE,
            "/api/kubernetes/clusters/dev-1",
            None
        )
        .await,
        StatusCode::NO_CONTENT
    );

    // Nobody: nothing but health.
    assert_eq!(
        call(&app, NOBODY, Method::GET, "/api/kubernetes/clusters", None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app, NOBODY, Method::GET, "/healthz", None).await,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, NOBODY, Method::GET, "/readyz", None).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn cluster_globs_scope_management() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(POLICY)).await;
    assert_eq!(
        call(
            &app,
            DEV_ADMIN,
            Method::POST,
            "/api/kubernetes/clusters",
            Some(new_cluster("dev-2"))
        )
        .await,
        StatusCode::CREATED
    );
    assert_eq!(
        call(
            &app,
            DEV_ADMIN,
            Method::POST,
            "/api/kubernetes/clusters",
            Some(new_cluster("prod-2"))
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            DEV_ADMIN,
            Method::DELETE,
            "/api/kubernetes/clusters/DEV-2",
            None
        )
        .await,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_file_without_policy_denies_all_but_health() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml("auth: { guest: true }\n")).await;
    for (method, path) in [
        (Method::GET, "/api/kubernetes/clusters"),
        (Method::GET, "/api/kubernetes/clusters/x"),
        (Method::DELETE, "/api/kubernetes/clusters/x"),
    ] {
        let response = app
            .client
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let created = app
        .client
        .post(app.url("/api/kubernetes/clusters"))
        .json(&new_cluster("a"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn explain_names_the_deciding_rule_and_attributes() {
    let db = TestDb::sqlite();
    let yaml = r#"
auth:
  guest: false
  staticTokens:
    - { token: admin-token-01234567890, subject: "user:default/admin" }
permissions:
  rules:
    - { permission: kubernetes.clusters.manage, subjects: ["user:default/admin"], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["*"], clusters: ["prod-*"], methods: [DELETE], decision: deny, description: no deletes in prod }
    - { permission: kubernetes.proxy, subjects: ["group:default/sre"], decision: allow }
"#;
    let app = spawn_app(&db, ConfigSource::Yaml(yaml)).await;
    let explain = |body: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/kubernetes/permissions/explain"))
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let denied = explain(json!({
        "subject": "user:default/alice", "groups": ["group:default/sre"], "permission": "kubernetes.proxy",
        "cluster": "prod-eu", "method": "DELETE", "path": "/api/v1/namespaces/shop/pods/api-0"
    }))
    .await;
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["ruleIndex"], 1);
    assert_eq!(denied["reason"], "no deletes in prod");
    assert_eq!(denied["attributes"]["verb"], "delete");
    assert_eq!(denied["attributes"]["namespace"], "shop");
    assert_eq!(denied["attributes"]["resource"], "pods");

    let allowed = explain(json!({
        "subject": "user:default/alice", "groups": ["group:default/sre"], "permission": "kubernetes.proxy",
        "cluster": "prod-eu", "method": "GET", "path": "/api/v1/namespaces/shop/pods?watch=true"
    }))
    .await;
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["ruleIndex"], 2);
    assert_eq!(allowed["attributes"]["verb"], "watch");

    // The attributes are the API server's reading, with the canonical request.
    let exec = explain(json!({
        "subject": "user:default/alice", "groups": ["group:default/sre"], "permission": "kubernetes.proxy",
        "cluster": "dev", "method": "GET",
        "path": "/api/v1/namespaces/shop/pods/api-0/exec/?command=id&%74oken=x"
    }))
    .await;
    assert_eq!(
        exec["attributes"],
        json!({
            "isResourceRequest": true, "verb": "create", "action": "exec", "apiGroup": "",
            "apiVersion": "v1", "namespace": "shop", "resource": "pods", "subresource": "exec",
            "name": "api-0"
        })
    );
    assert_eq!(
        exec["canonicalPath"],
        "/api/v1/namespaces/shop/pods/api-0/exec"
    );
    assert_eq!(exec["canonicalQuery"], "command=id&token=x");
    let watch_one = explain(json!({
        "subject": "user:default/alice", "permission": "kubernetes.proxy", "cluster": "dev",
        "path": "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dapi-0&watch=yes"
    }))
    .await;
    assert_eq!(watch_one["attributes"]["verb"], "watch");
    assert_eq!(watch_one["attributes"]["name"], "api-0");
    assert_eq!(
        watch_one["canonicalQuery"],
        "fieldSelector=metadata.name%3Dapi-0&watch=true"
    );
    let ambiguous = app
        .client
        .post(app.url("/api/kubernetes/permissions/explain"))
        .bearer_auth(ADMIN)
        .json(&json!({"subject": "user:default/alice", "permission": "kubernetes.proxy", "path": "/api/v1/pods?watch=no"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ambiguous.status(), StatusCode::BAD_REQUEST);
    let impersonate = explain(json!({
        "subject": "user:default/alice", "groups": ["group:default/sre"],
        "permission": "kubernetes.impersonate", "cluster": "dev", "impersonateUser": "auditor"
    }))
    .await;
    assert_eq!(
        impersonate["decision"], "deny",
        "only an exact kubernetes.impersonate rule grants it"
    );

    let default_deny =
        explain(json!({"subject": "user:default/bob", "permission": "kubernetes.resources.read"}))
            .await;
    assert_eq!(default_deny["decision"], "deny");
    assert!(default_deny.get("ruleIndex").is_none());
}
