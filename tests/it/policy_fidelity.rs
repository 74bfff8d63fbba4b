//! The gate judges what the cluster will serve: requests that an API server
//! reads differently from a naive reading (watch spellings, proxy
//! subresources, exec by WebSocket GET, trailing slashes, impersonation,
//! single-object watches) are judged by the API server's reading. A refused
//! request never reaches the cluster; an allowed one arrives exactly as judged.

use std::time::Duration;

use kube_double::KubeDouble;
use kubeportal_tests::{
    double_cluster, register, spawn_app, start_double, ConfigSource, TestApp, TestDb,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const POLICY: &str = r#"
auth:
  guest: false
  staticTokens:
    - { token: dev-token-0123456789abcdef, subject: "user:default/dana", groups: ["group:default/dev"] }
    - { token: viewer-token-0123456789abcd, subject: "user:default/vic", groups: ["group:default/viewer"] }
    - { token: reader-token-0123456789abcd, subject: "user:default/rita", groups: ["group:default/pod-reader"] }
    - { token: watcher-token-0123456789abc, subject: "user:default/walt", groups: ["group:default/api-0-watcher"] }
    - { token: sre-token-0123456789abcdefg, subject: "user:default/sam", groups: ["group:default/sre"] }
    - { token: ops-token-0123456789abcdefg, subject: "user:default/olga", groups: ["group:default/ops"] }
    - { token: audit-token-0123456789abcde, subject: "user:default/auditor" }
permissions:
  rules:
    - { permission: kubernetes.audit.read, subjects: ["user:default/auditor"], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["*"], resources: [secrets], decision: deny, description: nobody reads secrets }
    - { permission: kubernetes.proxy, subjects: ["*"], paths: ["/api/v1/namespaces/*/secrets/*"], decision: deny, description: no secret by path }
    - { permission: kubernetes.proxy, subjects: ["*"], clusters: ["prod-*"], actions: [exec], decision: deny, description: no exec in prod }
    - { permission: kubernetes.proxy, subjects: ["group:default/dev"], clusters: ["prod-*"], actions: [read], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["group:default/viewer"], verbs: [get, list], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["group:default/pod-reader"], resources: [pods], verbs: [get, list, watch], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["group:default/api-0-watcher"], resources: [pods], names: [api-0], verbs: [get, list, watch], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["group:default/sre", "group:default/ops"], decision: allow }
    - { permission: kubernetes.impersonate, subjects: ["group:default/sre"], clusters: ["prod-*"], users: [auditor], groups: [viewers], decision: allow }
"#;

const DEV: &str = "dev-token-0123456789abcdef";
const VIEWER: &str = "viewer-token-0123456789abcd";
const READER: &str = "reader-token-0123456789abcd";
const WATCHER: &str = "watcher-token-0123456789abc";
const SRE: &str = "sre-token-0123456789abcdefg";
const OPS: &str = "ops-token-0123456789abcdefg";
const AUDITOR: &str = "audit-token-0123456789abcde";

struct Setup {
    app: TestApp,
    double: KubeDouble,
    _db: TestDb,
}

async fn setup() -> Setup {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(POLICY)).await;
    let double = start_double().await;
    register(&app, double_cluster("prod-eu", &double)).await;
    Setup {
        app,
        double,
        _db: db,
    }
}

/// Sends `method target` through the path form (as kubectl does) with extra
/// headers, and answers the status, the body and whether the cluster saw it.
async fn call(
    setup: &Setup,
    token: &str,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, bool) {
    setup.double.clear_requests();
    let url = setup
        .app
        .url(&format!("/api/kubernetes/clusters/prod-eu/proxy{target}"));
    let mut request = setup
        .app
        .client
        .request(method, url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(3));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    // A watch stays open: read what has arrived, not to the end.
    let body = tokio::time::timeout(Duration::from_millis(500), response.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let reached = !setup.double.requests().is_empty();
    (status, body, reached)
}

fn assert_refused(outcome: (StatusCode, String, bool), expected: StatusCode, what: &str) {
    let (status, body, reached) = outcome;
    assert_eq!(status, expected, "{what}: {body}");
    assert!(
        !reached,
        "{what}: the cluster must not see a refused request"
    );
    let status: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(
        status["kind"], "Status",
        "{what}: kubectl reads a Status: {body}"
    );
}

fn assert_reached(outcome: (StatusCode, String, bool), what: &str) {
    let (status, body, reached) = outcome;
    assert!(
        status != StatusCode::FORBIDDEN && status != StatusCode::BAD_REQUEST,
        "{what}: {status} {body}"
    );
    assert!(reached, "{what}: the cluster must see an allowed request");
}

#[tokio::test]
async fn every_spelling_of_watch_is_judged_a_watch() {
    let setup = setup().await;
    for query in [
        "watch=True",
        "watch=TRUE",
        "watch=yes",
        "watch=on",
        "watch=",
        "watch",
        "%77atch=1",
        "watch=1&watch=false",
    ] {
        let target = format!("/api/v1/namespaces/default/configmaps?{query}");
        let outcome = call(&setup, VIEWER, Method::GET, &target, &[]).await;
        assert_refused(outcome, StatusCode::FORBIDDEN, &target);
    }
    let legacy = call(
        &setup,
        VIEWER,
        Method::GET,
        "/api/v1/watch/namespaces/default/configmaps",
        &[],
    )
    .await;
    assert_refused(legacy, StatusCode::FORBIDDEN, "legacy /watch/ prefix");

    for query in ["watch=false", "watch=0", "watch=FALSE", "limit=5"] {
        let target = format!("/api/v1/namespaces/default/configmaps?{query}");
        let outcome = call(&setup, VIEWER, Method::GET, &target, &[]).await;
        assert_reached(outcome, &target);
    }
    // Values API servers read differently are refused rather than guessed.
    for query in ["watch=no", "watch=off", "watch=f"] {
        let target = format!("/api/v1/namespaces/default/configmaps?{query}");
        let outcome = call(&setup, SRE, Method::GET, &target, &[]).await;
        assert_refused(outcome, StatusCode::BAD_REQUEST, &target);
    }
}

#[tokio::test]
async fn every_spelling_of_a_stream_gets_a_connection_of_its_own() {
    let setup = setup().await;
    let ordinary = call(&setup, SRE, Method::GET, "/api/v1/namespaces", &[]).await;
    assert_reached(ordinary, "ordinary list");
    let ordinary_peer = setup.double.requests()[0].peer;
    for (target, forwarded) in [
        (
            "/api/v1/namespaces/default/configmaps?%77atch=yes",
            "watch=true",
        ),
        ("/api/v1/namespaces/default/configmaps?watch", "watch=true"),
        (
            "/api/v1/namespaces/default/pods/api-0/log?follow=TRUE",
            "follow=true",
        ),
    ] {
        let outcome = call(&setup, SRE, Method::GET, target, &[]).await;
        assert_reached(outcome, target);
        let recorded = setup.double.requests();
        let stream = &recorded[0];
        assert_eq!(
            stream.query.as_deref(),
            Some(forwarded),
            "{target}: the cluster receives the canonical query that was judged"
        );
        assert_ne!(
            stream.peer, ordinary_peer,
            "{target}: a stream never rides the connection ordinary requests share"
        );
    }
}

#[tokio::test]
async fn proxy_subresources_are_exec() {
    let setup = setup().await;
    for target in [
        "/api/v1/nodes/node-1/proxy/exec/default/api-0/app?command=id",
        "/api/v1/nodes/node-1/proxy/metrics",
        "/api/v1/namespaces/default/pods/api-0/proxy/debug",
        "/api/v1/namespaces/default/services/web/proxy/admin",
        "/api/v1/proxy/namespaces/default/pods/api-0",
    ] {
        let outcome = call(&setup, DEV, Method::GET, target, &[]).await;
        assert_refused(outcome, StatusCode::FORBIDDEN, target);
    }
    let read = call(
        &setup,
        DEV,
        Method::GET,
        "/api/v1/namespaces/default/pods/api-0",
        &[],
    )
    .await;
    assert_reached(read, "an ordinary read");
}

#[tokio::test]
async fn a_read_rule_does_not_grant_exec_attach_or_port_forward() {
    let setup = setup().await;
    let websocket = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "v5.channel.k8s.io"),
    ];
    for target in [
        "/api/v1/namespaces/default/pods/api-0/exec?command=id&stdout=true",
        "/api/v1/namespaces/default/pods/api-0/attach?stdout=true",
        "/api/v1/namespaces/default/pods/api-0/portforward?ports=8080",
        "/api/v1/namespaces/default/pods/api-0/log",
    ] {
        let outcome = call(&setup, READER, Method::GET, target, &websocket).await;
        assert_refused(outcome, StatusCode::FORBIDDEN, target);
    }
    let outcome = call(
        &setup,
        READER,
        Method::POST,
        "/api/v1/namespaces/default/pods/api-0/exec?command=id",
        &[],
    )
    .await;
    assert_refused(outcome, StatusCode::FORBIDDEN, "exec by POST");
    let get = call(
        &setup,
        READER,
        Method::GET,
        "/api/v1/namespaces/default/pods/api-0",
        &[],
    )
    .await;
    assert_reached(get, "a get of the pod itself");
}

#[tokio::test]
async fn paths_are_judged_in_the_form_the_cluster_receives() {
    let setup = setup().await;
    for target in [
        "/api/v1/namespaces/default/secrets/db/",
        "/api/v1/namespaces/default/secrets/db//",
        "/api/v1/namespaces/default/%73ecrets/db",
        "//api/v1/namespaces/default/./secrets/db",
    ] {
        let outcome = call(&setup, OPS, Method::GET, target, &[]).await;
        assert_refused(outcome, StatusCode::FORBIDDEN, target);
    }
    let outcome = call(
        &setup,
        OPS,
        Method::GET,
        "/api/v1/namespaces/default/configmaps/app/",
        &[],
    )
    .await;
    assert_reached(outcome, "a config map with a trailing slash");
    assert_eq!(
        setup.double.requests()[0].path,
        "/api/v1/namespaces/default/configmaps/app",
        "forwarded in canonical form"
    );
}

#[tokio::test]
async fn a_callers_impersonation_needs_a_grant() {
    let setup = setup().await;
    let as_auditor = [
        ("impersonate-user", "auditor"),
        ("impersonate-group", "viewers"),
    ];
    let target = "/api/v1/namespaces/default/configmaps/x";
    let (status, body, reached) = call(&setup, OPS, Method::DELETE, target, &as_auditor).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!reached, "nothing reaches the cluster");
    let status_object: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status_object["kind"], "Status");
    assert!(
        status_object["message"]
            .as_str()
            .unwrap()
            .contains("impersonation through the portal is not allowed"),
        "{body}"
    );
    for headers in [
        &[
            ("impersonate-user", "auditor"),
            ("impersonate-group", "system:masters"),
        ][..],
        &[("impersonate-user", "admin")][..],
        &[("impersonate-user", "auditor"), ("impersonate-uid", "1")][..],
        &[
            ("impersonate-user", "auditor"),
            ("impersonate-extra-scopes", "all"),
        ][..],
    ] {
        let outcome = call(&setup, SRE, Method::DELETE, target, headers).await;
        assert_refused(outcome, StatusCode::FORBIDDEN, &format!("{headers:?}"));
    }
    let outcome = call(
        &setup,
        SRE,
        Method::DELETE,
        target,
        &[("impersonate-group", "viewers")],
    )
    .await;
    assert_refused(outcome, StatusCode::BAD_REQUEST, "groups without a user");

    let outcome = call(&setup, SRE, Method::DELETE, target, &as_auditor).await;
    assert_reached(outcome, "a granted impersonation");
    let forwarded = &setup.double.requests()[0];
    assert_eq!(forwarded.header_values("impersonate-user"), ["auditor"]);
    assert_eq!(forwarded.header_values("impersonate-group"), ["viewers"]);

    // The audit record names both identities, the canonical path and the verb.
    let record = eventually_audited(&setup.app, "user:default/sam", "DELETE").await;
    assert_eq!(record["impersonatedUser"], "auditor");
    assert_eq!(record["impersonatedGroups"], serde_json::json!(["viewers"]));
    assert_eq!(record["verb"], "delete");
    assert_eq!(record["path"], target);
}

#[tokio::test]
async fn a_single_object_watch_is_judged_by_its_name() {
    let setup = setup().await;
    for target in [
        "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dapi-0&watch=true",
        "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dapi-0",
        "/api/v1/namespaces/default/pods/api-0",
    ] {
        let outcome = call(&setup, WATCHER, Method::GET, target, &[]).await;
        assert_reached(outcome, target);
    }
    // Pods other than api-0 are outside the watcher's view: lists and
    // watches of them are served filtered (nothing but api-0 comes back),
    // and a get of one is not found.
    setup.double.put_object(
        "v1",
        "pods",
        json!({"metadata": {"name": "api-1", "namespace": "default"}, "spec": {"containers": [{"name": "app", "image": "x"}]}}),
    );
    for target in [
        "/api/v1/namespaces/default/pods?watch=true",
        "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dapi-1&watch=true",
        "/api/v1/namespaces/default/pods?fieldSelector=metadata.name!%3Dapi-0",
        "/api/v1/namespaces/default/pods",
    ] {
        let (status, body, reached) = call(&setup, WATCHER, Method::GET, target, &[]).await;
        assert_eq!(status, StatusCode::OK, "{target}: {body}");
        assert!(reached, "{target}");
        assert!(!body.contains("api-1"), "{target}: {body}");
    }
    let outcome = call(
        &setup,
        WATCHER,
        Method::GET,
        "/api/v1/namespaces/default/pods/api-1",
        &[],
    )
    .await;
    assert_refused(outcome, StatusCode::NOT_FOUND, "a get outside the view");
    // Writes are not views: still 403.
    let outcome = call(
        &setup,
        WATCHER,
        Method::DELETE,
        "/api/v1/namespaces/default/pods/api-0",
        &[],
    )
    .await;
    assert_refused(outcome, StatusCode::FORBIDDEN, "a delete");
}

#[tokio::test]
async fn the_audit_trail_records_the_canonical_request_and_its_verb() {
    let setup = setup().await;
    let outcome = call(
        &setup,
        SRE,
        Method::GET,
        "/api/v1/namespaces/default/configmaps/?%77atch=yes&%74oken=hunter2",
        &[],
    )
    .await;
    assert_reached(outcome, "a watch with a token parameter");
    let record = eventually_audited(&setup.app, "user:default/sam", "GET").await;
    assert_eq!(record["path"], "/api/v1/namespaces/default/configmaps");
    assert_eq!(record["query"], "watch=true&token=***");
    assert_eq!(record["verb"], "watch");
    assert!(!record.to_string().contains("hunter2"));
    let metrics = setup.app.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("kubeportal_http_requests_total")
                && line.contains(r#"cluster="prod-eu""#)
                && line.contains(r#"verb="watch""#)),
        "the metrics count the verb that was judged: {metrics}"
    );
}

async fn eventually_audited(app: &TestApp, subject: &str, method: &str) -> Value {
    let query = format!("?subject={subject}&method={method}");
    let page =
        kubeportal_tests::audit_page_when(app, Some(AUDITOR), &query, |items| !items.is_empty())
            .await;
    page["items"][0].clone()
}
