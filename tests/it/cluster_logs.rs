//! What a cluster answers never reaches kubeportal's logs: kube-rs logs the
//! raw body of an error it cannot parse (at WARN), and kubeportal's log filter
//! keeps that logger quiet whatever level the operator chooses.

use kubeportal_tests::{register, serve_stand_in, spawn_app, CapturedLogs, ConfigSource, TestDb};
use serde_json::{json, Value};

/// A cluster whose every answer is a 500 with a body that is not a Status.
const CLUSTER_DATA: &str = "cluster-data-that-must-not-be-logged-61c2";

async fn unparsable_cluster() -> String {
    let router = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("<html>{CLUSTER_DATA}</html>"),
        )
    });
    serve_stand_in(router).await
}

#[tokio::test]
async fn cluster_bodies_kube_rs_cannot_parse_stay_out_of_the_logs() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    // The operator asked for everything; the product's own directive still applies.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::new("trace")
                .add_directive(kubeportal::telemetry::traces::quiet_kube_client()),
        )
        .with_writer(move || writer.clone())
        .init();

    let db = TestDb::sqlite();
    let app = spawn_app(
        &db,
        ConfigSource::Yaml(
            "permissions:\n  rules:\n    - { permission: \"*\", subjects: [\"*\"], decision: allow }\n",
        ),
    )
    .await;
    let url = unparsable_cluster().await;
    register(
        &app,
        json!({"name": "broken", "url": url, "authProvider": "serviceAccount", "serviceAccountToken": "t"}),
    )
    .await;
    let entity = json!({"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "shop-api", "namespace": "default"}});
    let answer: Value = app
        .client
        .post(app.url("/api/kubernetes/services/shop-api"))
        .json(&json!({"entity": entity}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let errors = answer["items"][0]["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !errors.is_empty(),
        "the cluster's failures are reported: {answer}"
    );

    let text = logs.text();
    assert!(
        text.contains("kube_client") || text.contains("hyper"),
        "the client libraries did log at trace level: the filter was live"
    );
    assert!(
        !text.contains(CLUSTER_DATA),
        "a cluster's body reached the logs:\n{}",
        text.lines()
            .filter(|line| line.contains(CLUSTER_DATA))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
