//! Per-cluster TLS: the registered CA, a wrong CA, skip-verify, and mTLS.

use kubeportal_tests::{
    register, spawn_app, ClientAuth, ConfigSource, DoubleOptions, KubeDouble, TestApp, TestDb,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn get(app: &TestApp, cluster: &str) -> (StatusCode, String) {
    let response = app
        .client
        .get(app.url("/api/kubernetes/proxy/api/v1/namespaces"))
        .header("Backstage-Kubernetes-Cluster", cluster)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

fn other_ca() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[tokio::test]
async fn the_registered_ca_is_trusted_and_no_other() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let double = KubeDouble::start(DoubleOptions {
        tokens: vec!["sa-token-value-123".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let base = json!({"url": double.url(), "authProvider": "serviceAccount", "serviceAccountToken": "sa-token-value-123"});
    let with = |name: &str, extra: Value| {
        let mut body = base.clone();
        body["name"] = json!(name);
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    register(&app, with("right-ca", json!({"caData": double.ca_pem()}))).await;
    register(&app, with("wrong-ca", json!({"caData": other_ca()}))).await;
    register(&app, with("no-ca", json!({}))).await;
    register(&app, with("skip-verify", json!({"skipTLSVerify": true}))).await;

    let (status, body) = get(&app, "right-ca").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for cluster in ["wrong-ca", "no-ca"] {
        let (status, body) = get(&app, cluster).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(cluster), "{message}");
        assert!(message.to_lowercase().contains("certificate"), "{message}");
        assert!(!body.contains("sa-token-value-123"));
    }

    let (status, body) = get(&app, "skip-verify").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn client_certificates_authenticate_to_clusters_that_require_them() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let double = KubeDouble::start(DoubleOptions {
        client_auth: ClientAuth::Required,
        tokens: vec![],
        ..Default::default()
    })
    .await
    .unwrap();
    let (cert, key) = double.issue_client_cert("kubeportal");
    register(
        &app,
        json!({"name": "mtls", "url": double.url(), "authProvider": "clientCert", "caData": double.ca_pem(), "clientCertData": cert, "clientKeyData": key}),
    )
    .await;
    register(&app, json!({"name": "no-cert", "url": double.url(), "authProvider": "client", "caData": double.ca_pem()})).await;

    let (status, body) = get(&app, "mtls").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let recorded = double.requests().pop().unwrap();
    assert!(
        format!("{:?}", recorded.identity).contains("kubeportal"),
        "{:?}",
        recorded.identity
    );
    assert!(recorded
        .headers
        .iter()
        .all(|(name, _)| name != "authorization"));

    let response = app
        .client
        .get(app.url("/api/kubernetes/proxy/api/v1/namespaces"))
        .header("Backstage-Kubernetes-Cluster", "no-cert")
        .header("Backstage-Kubernetes-Authorization", "Bearer whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_GATEWAY,
        "a cluster requiring mTLS refuses the handshake"
    );
    assert!(!response.text().await.unwrap().contains("whatever"));
}
