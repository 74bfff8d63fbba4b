//! Operations: the audit trail and Prometheus metrics, on both stores.

use std::time::Duration;

use kubeportal_tests::{
    both_stores, double_cluster, register, spawn_app, start_double, ConfigSource, TestApp, TestDb,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ADMIN: &str = "audit-admin-token-0123456789";
const SRE: &str = "audit-sre-token-0123456789";

const CONFIG: &str = r#"
auth:
  guest: false
  staticTokens:
    - { token: audit-admin-token-0123456789, subject: "user:default/admin", groups: ["group:default/platform"] }
    - { token: audit-sre-token-0123456789, subject: "user:default/sre", groups: ["group:default/sre"] }
permissions:
  rules:
    - { permission: kubernetes.proxy, subjects: ["*"], methods: [DELETE], decision: deny, description: no deletes }
    - { permission: "*", subjects: ["group:default/platform"], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["group:default/sre"], decision: allow, description: sre may proxy }
"#;

async fn audit(app: &TestApp, query: &str) -> Value {
    let response = app
        .client
        .get(app.url(&format!("/api/kubernetes/audit{query}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Audit writes are batched off the request path: wait for them to land.
async fn audit_eventually(app: &TestApp, query: &str, count: usize) -> Value {
    kubeportal_tests::audit_page_when(app, Some(ADMIN), query, |items| items.len() >= count).await
}

both_stores!(
    proxied_calls_denials_and_registry_writes_are_audited,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
        let double = start_double().await;
        register(&app, double_cluster("dev", &double)).await;

        let proxied = app
            .client
            .get(app.url("/api/kubernetes/proxy/api/v1/namespaces?token=abc&limit=5"))
            .bearer_auth(SRE)
            .header("Backstage-Kubernetes-Cluster", "dev")
            .send()
            .await
            .unwrap();
        assert_eq!(proxied.status(), StatusCode::OK);
        let body_len = proxied.bytes().await.unwrap().len() as u64;

        let denied =
            app.client
                .delete(app.url(
                    "/api/kubernetes/clusters/dev/proxy/api/v1/namespaces/default/configmaps/x",
                ))
                .bearer_auth(SRE)
                .send()
                .await
                .unwrap();
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);

        let mut update = double_cluster("dev", &double);
        update["title"] = json!("Development");
        update["version"] = json!(1);
        let updated = app
            .client
            .put(app.url("/api/kubernetes/clusters/dev"))
            .bearer_auth(ADMIN)
            .json(&update)
            .send()
            .await
            .unwrap();
        assert_eq!(updated.status(), StatusCode::OK);

        let page = audit_eventually(&app, "", 3).await;
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 3, "exactly one record each: {page}");
        let (update_record, denial, get) = (&items[0], &items[1], &items[2]);

        assert_eq!(get["kind"], "proxy");
        assert_eq!(get["subject"], "user:default/sre");
        assert_eq!(get["groups"], json!(["group:default/sre"]));
        assert_eq!(get["cluster"], "dev");
        assert_eq!(get["method"], "GET");
        assert_eq!(
            get["path"], "/api/v1/namespaces",
            "the canonical path the cluster received"
        );
        assert_eq!(get["verb"], "list");
        assert_eq!(
            get["query"], "token=***&limit=5",
            "query secrets are masked"
        );
        assert_eq!(get["status"], 200);
        assert_eq!(get["bytesOut"], body_len);
        assert_eq!(get["decision"], "allow");
        assert_eq!(get["rule"], "rule 2: sre may proxy");

        assert_eq!(denial["kind"], "proxy");
        assert_eq!(denial["method"], "DELETE");
        assert_eq!(denial["status"], 403);
        assert_eq!(denial["cluster"], "dev");
        assert_eq!(denial["decision"], "deny");
        assert_eq!(denial["rule"], "rule 0: no deletes");

        assert_eq!(update_record["kind"], "registry");
        assert_eq!(update_record["subject"], "user:default/admin");
        assert_eq!(update_record["method"], "PUT");
        assert_eq!(update_record["cluster"], "dev");
        assert_eq!(update_record["status"], 200);
        assert!(update_record["bytesIn"].as_u64().unwrap() > 0);

        let text = page.to_string();
        for secret in [ADMIN, SRE, "double-token", "abc&"] {
            assert!(!text.contains(secret), "{secret} in the audit trail");
        }

        // Filters and paging.
        let by_method = audit(&app, "?method=delete").await;
        assert_eq!(by_method["items"].as_array().unwrap().len(), 1);
        let by_subject = audit(&app, "?subject=user:default/sre&status=200").await;
        assert_eq!(by_subject["items"].as_array().unwrap().len(), 1);
        let by_cluster = audit(&app, "?cluster=DEV").await;
        assert_eq!(by_cluster["items"].as_array().unwrap().len(), 3);
        let future = audit(&app, "?since=2999-01-01T00:00:00Z").await;
        assert_eq!(future["items"].as_array().unwrap().len(), 0);
        let first = audit(&app, "?limit=2").await;
        assert_eq!(first["items"].as_array().unwrap().len(), 2);
        let cursor = first["nextCursor"].as_i64().unwrap();
        let second = audit(&app, &format!("?limit=2&cursor={cursor}")).await;
        assert_eq!(second["items"].as_array().unwrap().len(), 1);
        assert_eq!(second["items"][0]["method"], "GET");
        assert!(second.get("nextCursor").is_none());

        // kubernetes.audit.read gates the route.
        let forbidden = app
            .client
            .get(app.url("/api/kubernetes/audit"))
            .bearer_auth(SRE)
            .send()
            .await
            .unwrap();
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    }
);

/// What a request carried is recorded as it came, whoever sent it: an
/// extension method, no identity, no decision.
#[tokio::test]
async fn an_unauthenticated_call_is_audited_as_it_came() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    let method = reqwest::Method::from_bytes(b"RFOO").unwrap();
    let refused = app
        .client
        .request(
            method,
            app.url("/api/kubernetes/clusters/dev/proxy/api/v1/pods"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let page = audit_eventually(&app, "", 1).await;
    let record = &page["items"][0];
    assert_eq!(record["kind"], "proxy", "{page}");
    assert_eq!(record["method"], "RFOO", "{page}");
    assert_eq!(record["subject"], "anonymous", "{page}");
    assert_eq!(record["groups"], json!([]), "{page}");
    assert_eq!(record["decision"], "none", "{page}");
    assert_eq!(record["status"], 401, "{page}");
    assert_eq!(
        record["path"], "/api/kubernetes/clusters/dev/proxy/api/v1/pods",
        "{page}"
    );
    assert!(record.get("rule").is_none(), "{page}");
    assert!(record.get("verb").is_none(), "{page}");
}

fn metric(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(family) && labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_move_with_traffic() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    let scrape = || async { app.metrics_text().await };
    let proxy = |path: &'static str| {
        app.client
            .get(app.url(&format!("/api/kubernetes/proxy{path}")))
            .bearer_auth(SRE)
            .header("Backstage-Kubernetes-Cluster", "dev")
            .send()
    };

    let before = scrape().await;
    for _ in 0..3 {
        assert_eq!(
            proxy("/api/v1/namespaces").await.unwrap().status(),
            StatusCode::OK
        );
    }
    double.set_fault(kubeportal_tests::Fault::Refuse);
    assert_eq!(
        proxy("/api/v1/namespaces").await.unwrap().status(),
        StatusCode::BAD_GATEWAY
    );
    double.set_fault(kubeportal_tests::Fault::None);

    // An open stream shows in the gauge while it is open.
    double.put_object("v1", "pods", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}}));
    let stream = proxy("/api/v1/namespaces/default/pods/p/log?follow=true")
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let during = scrape().await;
    assert_eq!(
        metric(&during, "kubeportal_open_streams", &[]),
        1.0,
        "{during}"
    );
    drop(stream);

    let route = "route=\"/api/kubernetes/proxy/{*path}\"";
    let mut after = scrape().await;
    for _ in 0..50 {
        if metric(&after, "kubeportal_open_streams", &[]) == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scrape().await;
    }
    assert_eq!(
        metric(
            &after,
            "kubeportal_http_requests_total",
            &[route, "cluster=\"dev\"", "status=\"200\""]
        ) - metric(
            &before,
            "kubeportal_http_requests_total",
            &[route, "cluster=\"dev\"", "status=\"200\""]
        ),
        4.0,
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            "kubeportal_http_requests_total",
            &[route, "status=\"502\""]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "kubeportal_upstream_errors_total",
            &["cluster=\"dev\"", "kind=\"connect\""]
        ),
        1.0
    );
    assert!(
        metric(
            &after,
            "kubeportal_http_request_duration_seconds_count",
            &[route]
        ) >= 5.0
    );
    assert_eq!(
        metric(&after, "kubeportal_open_streams", &[]),
        0.0,
        "the stream gauge returns to zero"
    );
    assert!(
        metric(
            &after,
            "kubeportal_cache_lookups_total",
            &["cache=\"clusters\"", "result=\"hit\""]
        ) >= 1.0
    );
    for family in [
        "kubeportal_upgraded_connections",
        "kubeportal_fanout_cluster_errors",
        "kubeportal_audit_records_written",
        "kubeportal_audit_records_dropped",
    ] {
        assert!(after.contains(family), "{family} missing");
    }
    assert!(!after.contains(SRE) && !after.contains("double-token"));
}
