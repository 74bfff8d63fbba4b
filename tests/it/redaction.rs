//! A full flow with secrets everywhere: no token, client key, Authorization
//! value or Secret value (including the copy kubectl keeps in the
//! `last-applied-configuration` annotation) appears in any log line, error
//! or object-query body, metric or audit record.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use kubeportal_tests::{
    audit_page_when, serve_stand_in, spawn_app, CapturedLogs, ConfigSource, DoubleOptions, Fault,
    KubeDouble, TestDb,
};
use serde_json::json;

const JWT_SECRET: &str = "jwt-signing-secret-5a1b2c3d4e5f6a7b";
const SERVICE_ACCOUNT_TOKEN: &str = "sa-token-7f3e9d1c2b4a";
const CALLER_CLUSTER_TOKEN: &str = "caller-cluster-token-8e2d4c6b";
const QUERY_SECRET: &str = "query-secret-3c5e7a9b";
/// A Secret's value, base64 in `data` (`c2VjcmV0LWluLWRhdGEtNGY2YTJi`) and as written.
const DATA_SECRET: &str = "secret-in-data-4f6a2b";
const DATA_SECRET_BASE64: &str = "c2VjcmV0LWluLWRhdGEtNGY2YTJi";
const STRING_DATA_SECRET: &str = "secret-in-string-data-9d1c";

/// Serves one catalog entity, `component:default/shop-api`, at `/api/catalog/...`.
async fn catalog_stub() -> String {
    let entity = json!({"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "shop-api", "namespace": "default"}});
    let router = axum::Router::new().route(
        "/api/catalog/entities/by-name/component/default/shop-api",
        axum::routing::get(move || async move { axum::Json(entity) }),
    );
    serve_stand_in(router).await
}

#[tokio::test]
async fn secrets_never_reach_logs_errors_metrics_or_audit() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        // Everything the product and its libraries log; the test fixture logs its own way.
        .with_env_filter("trace,kube_double=off")
        .with_writer(move || writer.clone())
        .init();

    let double = KubeDouble::start(DoubleOptions {
        tokens: vec![SERVICE_ACCOUNT_TOKEN.into(), CALLER_CLUSTER_TOKEN.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let (client_cert, client_key) = double.issue_client_cert("kubeportal");
    let db = TestDb::sqlite();
    let catalog = catalog_stub().await;
    let yaml = format!(
        "auth:\n  guest: false\n  jwt: {{ hs256Secret: {JWT_SECRET} }}\npermissions:\n  rules:\n    - {{ permission: \"*\", subjects: [\"group:default/admins\"], decision: allow }}\ncatalog: {{ baseUrl: \"{catalog}\" }}\nkubernetes:\n  customResources:\n    - {{ group: \"\", apiVersion: v1, plural: secrets }}\n"
    );
    // A Secret as `kubectl apply` leaves it: its values in `data`,
    // `stringData` and the last-applied-configuration annotation.
    let applied = kubeportal_tests::kubectl_on_double(
        &double,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: shop-db\n  namespace: default\n  labels: {{ backstage.io/kubernetes-id: shop-api }}\ndata:\n  password: {DATA_SECRET_BASE64}\nstringData:\n  url: {STRING_DATA_SECRET}\n"
        )),
    )
    .await;
    assert!(applied.contains("secret/shop-db"), "{applied}");
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let portal_token = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "user:default/admin", "ent": ["group:default/admins"], "exp": now + 600}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let client_key_marker = client_key.lines().nth(1).unwrap().to_owned();
    let mut bodies = Vec::new();
    let mut object_bodies = Vec::new();

    // Registry writes with secrets, one of them invalid.
    for body in [
        json!({"name": "dev", "url": double.url(), "authProvider": "serviceAccount", "serviceAccountToken": SERVICE_ACCOUNT_TOKEN, "caData": double.ca_pem()}),
        json!({"name": "mtls", "url": double.url(), "authProvider": "clientCert", "clientCertData": client_cert, "clientKeyData": client_key, "caData": double.ca_pem()}),
        json!({"name": "bad", "url": "ftp://x", "authProvider": "serviceAccount", "serviceAccountToken": SERVICE_ACCOUNT_TOKEN}),
        json!({"name": "bad2", "url": "https://x", "authProvider": "serviceAccount", "serviceAccountToken": [SERVICE_ACCOUNT_TOKEN]}),
    ] {
        let response = app
            .client
            .post(app.url("/api/kubernetes/clusters"))
            .bearer_auth(&portal_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        bodies.push(response.text().await.unwrap());
    }
    bodies.push(
        app.client
            .get(app.url("/api/kubernetes/clusters/dev"))
            .bearer_auth(&portal_token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );

    // Proxied calls: server-side token, the caller's token, a query secret, mTLS, faults.
    let proxy = |cluster: &'static str, path: String| {
        app.client
            .get(app.url(&format!("/api/kubernetes/proxy{path}")))
            .bearer_auth(&portal_token)
            .header("Backstage-Kubernetes-Cluster", cluster)
    };
    for request in [
        proxy("dev", format!("/api/v1/namespaces?token={QUERY_SECRET}")),
        proxy("dev", "/api/v1/namespaces".into()).header(
            "Backstage-Kubernetes-Authorization",
            format!("Bearer {CALLER_CLUSTER_TOKEN}"),
        ),
        proxy("mtls", "/api/v1/namespaces".into()),
        proxy("dev", "/api/v1/namespaces/../secrets".into()),
    ] {
        bodies.push(request.send().await.unwrap().text().await.unwrap());
    }
    // Object queries, by every route, listing the Secret on both clusters.
    for (route, request) in [
        (
            "/api/kubernetes/services/shop-api",
            json!({"entity": {"metadata": {"name": "shop-api"}}}),
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
    ] {
        let body = app
            .client
            .post(app.url(route))
            .bearer_auth(&portal_token)
            .json(&request)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains("shop-db") && body.contains("last-applied-configuration"),
            "{route} lists the Secret with its annotation: {body}"
        );
        object_bodies.push(body);
    }
    double.set_fault(Fault::WrongCertificate);
    bodies.push(
        proxy("dev", "/api/v1/namespaces".into())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    double.set_fault(Fault::Refuse);
    bodies.push(
        proxy("dev", "/api/v1/namespaces".into())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    double.set_fault(Fault::None);
    // Rejected identities.
    bodies.push(
        app.client
            .get(app.url("/api/kubernetes/clusters"))
            .bearer_auth(format!("{portal_token}x"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );

    // The audit trail is written off the request path: wait until the
    // flow's records are there.
    let audit = audit_page_when(&app, Some(&portal_token), "?limit=1000", |items| {
        items.len() >= 8
    })
    .await;
    let metrics = app.metrics_text().await;

    let logs = logs.text();
    assert!(logs.lines().count() > 20, "the flow was logged");
    let everything = [
        ("logs", logs),
        ("error bodies", bodies.join("\n")),
        ("metrics", metrics),
        ("audit", audit.to_string()),
        ("object-query bodies", object_bodies.join("\n")),
    ];
    for (where_, text) in &everything {
        for secret in [
            JWT_SECRET,
            SERVICE_ACCOUNT_TOKEN,
            CALLER_CLUSTER_TOKEN,
            QUERY_SECRET,
            portal_token.as_str(),
            client_key_marker.as_str(),
        ] {
            let leak = text
                .lines()
                .find(|line| line.contains(secret))
                .unwrap_or_default();
            assert!(
                !text.contains(secret),
                "a secret ({}…) appears in {where_}: {}",
                &secret[..8],
                &leak[..leak.len().min(400)]
            );
        }
        assert!(
            !text.to_ascii_lowercase().contains("bearer ey"),
            "an Authorization value appears in {where_}"
        );
    }
    // Secret values: nowhere but in what the proxy passed through from the
    // cluster under the caller's policy (the `../secrets` list above).
    for (where_, text) in everything
        .iter()
        .filter(|(where_, _)| *where_ != "error bodies")
    {
        for value in [DATA_SECRET, DATA_SECRET_BASE64, STRING_DATA_SECRET] {
            let leak = text
                .lines()
                .find(|line| line.contains(value))
                .unwrap_or_default();
            assert!(
                !text.contains(value),
                "a Secret value ({}…) appears in {where_}: {}",
                &value[..8],
                &leak[..leak.len().min(400)]
            );
        }
    }
}
