//! Replicas share only Postgres: a registry write on one replica reaches the
//! cache and connectors of every other replica within a second.

use std::time::{Duration, Instant};

use kubeportal_tests::{double_cluster, register, spawn_app, start_double, ConfigSource, TestDb};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_write_on_one_replica_reaches_the_others_within_a_second() {
    let db = TestDb::postgres().await;
    let first = spawn_app(&db, ConfigSource::NoFile).await;
    let second = spawn_app(&db, ConfigSource::NoFile).await;
    let (old, new) = (start_double().await, start_double().await);
    register(&first, double_cluster("dev", &old)).await;

    // The second replica caches the cluster (and builds its connector).
    let proxy = |app: &kubeportal_tests::TestApp| {
        app.client
            .get(app.url("/api/kubernetes/proxy/version"))
            .header("Backstage-Kubernetes-Cluster", "dev")
            .send()
    };
    assert_eq!(proxy(&second).await.unwrap().status(), StatusCode::OK);
    assert_eq!(old.requests().len(), 1);

    let mut moved = double_cluster("dev", &new);
    moved["version"] = json!(1);
    let updated = first
        .client
        .put(first.url("/api/kubernetes/clusters/dev"))
        .json(&moved)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    let written = Instant::now();

    loop {
        assert_eq!(proxy(&second).await.unwrap().status(), StatusCode::OK);
        if !new.requests().is_empty() {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "the second replica still used the old cluster URL after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A delete is seen too.
    let deleted = first
        .client
        .delete(first.url("/api/kubernetes/clusters/dev"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let deleted_at = Instant::now();
    loop {
        if proxy(&second).await.unwrap().status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            deleted_at.elapsed() < Duration::from_secs(1),
            "the second replica still served a deleted cluster"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_cluster_deleted_and_registered_again_on_one_replica_is_the_new_one_on_the_others() {
    use kubeportal_tests::{DoubleOptions, Identity, KubeDouble};
    let db = TestDb::postgres().await;
    let first = spawn_app(&db, ConfigSource::NoFile).await;
    let second = spawn_app(&db, ConfigSource::NoFile).await;
    let start = |token: &str| {
        KubeDouble::start(DoubleOptions {
            tokens: vec![token.to_owned()],
            ..Default::default()
        })
    };
    let (old, new) = (
        start("old-token").await.unwrap(),
        start("new-token").await.unwrap(),
    );
    let body = |double: &KubeDouble, token: &str| {
        json!({"name": "dev", "url": double.url(), "authProvider": "serviceAccount",
            "serviceAccountToken": token, "caData": double.ca_pem()})
    };
    register(&first, body(&old, "old-token")).await;
    let proxy = |app: &kubeportal_tests::TestApp| {
        app.client
            .get(app.url("/api/kubernetes/proxy/version"))
            .header("Backstage-Kubernetes-Cluster", "dev")
            .send()
    };
    assert_eq!(proxy(&second).await.unwrap().status(), StatusCode::OK);
    assert_eq!(old.requests().len(), 1);

    let deleted = first
        .client
        .delete(first.url("/api/kubernetes/clusters/dev"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    register(&first, body(&new, "new-token")).await;
    let written = Instant::now();
    old.clear_requests();

    loop {
        let status = proxy(&second).await.unwrap().status();
        if status == StatusCode::OK && !new.requests().is_empty() {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "the second replica did not reach the new cluster within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // From then on, nothing goes to the deleted cluster.
    old.clear_requests();
    for _ in 0..3 {
        assert_eq!(proxy(&second).await.unwrap().status(), StatusCode::OK);
    }
    assert!(
        old.requests().is_empty(),
        "a call went to the deleted cluster"
    );
    assert!(new
        .requests()
        .iter()
        .all(|request| request.identity == Identity::Token("new-token".into())));
}
