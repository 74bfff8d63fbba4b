//! The proxy against the Kubernetes API test double: verbs, bodies and
//! queries intact, credentials, impersonation, streaming, upgrades, faults
//! and policy.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kubeportal_tests::{
    double_cluster, register, spawn_app, start_double, ConfigSource, Fault, TestApp, TestDb,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN_TOKEN: &str = "portal-admin-token-0123456789";

const POLICY: &str = r#"
auth:
  guest: false
  staticTokens:
    - { token: portal-admin-token-0123456789, subject: "user:default/alice", groups: ["group:default/sre", "group:default/team-a"] }
kubernetes:
  timeouts: { connectMs: 1000, responseHeaderMs: 1000 }
  impersonation:
    groups: { "group:default/sre": "sre-team" }
permissions:
  rules:
    - { permission: kubernetes.proxy, subjects: ["*"], clusters: ["prod-*"], methods: [DELETE], decision: deny }
    - { permission: "*", subjects: ["*"], decision: allow }
"#;

async fn app_with_policy(db: &TestDb) -> TestApp {
    spawn_app(db, ConfigSource::Yaml(POLICY)).await
}

fn proxied(app: &TestApp, method: Method, cluster: &str, path: &str) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(&format!("/api/kubernetes/proxy{path}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("Backstage-Kubernetes-Cluster", cluster)
}

/// Sends a raw HTTP/1.1 request and reads the response head, byte by byte so
/// that what follows it stays on the connection.
async fn raw_head(app: &TestApp, request: &str) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    (stream, String::from_utf8(head).unwrap())
}

/// Reads what a raw-socket cluster receives until a whole request head has
/// arrived (with whatever came after it); `None` if the connection ended first.
async fn read_request_head(socket: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 1024];
    while !bytes.windows(4).any(|window| window == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => bytes.extend_from_slice(&buffer[..read]),
        }
    }
    Some(bytes)
}

fn header<'a>(request: &'a kube_double::RecordedRequest, name: &str) -> Vec<&'a str> {
    request
        .headers
        .iter()
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .collect()
}

#[tokio::test]
async fn every_verb_reaches_the_cluster_with_body_and_query_intact() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    let base = "/api/v1/namespaces/default/configmaps";

    let created = proxied(&app, Method::POST, "dev", base)
        .query(&[("fieldManager", "kubeportal-test")])
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "labels": {"app": "shop"}}, "data": {"a": "1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let version = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    let listed: Value = proxied(&app, Method::GET, "dev", base)
        .query(&[("labelSelector", "app in (shop,cart)"), ("limit", "10")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let list_request = double
        .requests()
        .into_iter()
        .rfind(|request| request.method == "GET")
        .unwrap();
    assert_eq!(list_request.path, base);
    assert_eq!(
        list_request.query.as_deref(),
        Some("labelSelector=app+in+%28shop%2Ccart%29&limit=10")
    );

    let mut replacement = created.clone();
    replacement["data"] = json!({"a": "2"});
    let put = proxied(&app, Method::PUT, "dev", &format!("{base}/settings"))
        .json(&replacement)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let stale = proxied(&app, Method::PUT, "dev", &format!("{base}/settings"))
        .json(&created)
        .send()
        .await
        .unwrap();
    assert_eq!(
        stale.status(),
        StatusCode::CONFLICT,
        "the cluster's own answer comes back (resourceVersion {version} is stale)"
    );
    let status: Value = stale.json().await.unwrap();
    assert_eq!(status["kind"], "Status");

    for (content_type, body, key, value) in [
        (
            "application/json-patch+json",
            r#"[{"op":"add","path":"/data/b","value":"json"}]"#,
            "b",
            "json",
        ),
        (
            "application/merge-patch+json",
            r#"{"data":{"c":"merge"}}"#,
            "c",
            "merge",
        ),
        (
            "application/strategic-merge-patch+json",
            r#"{"data":{"d":"strategic"}}"#,
            "d",
            "strategic",
        ),
        (
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  e: apply\n",
            "e",
            "apply",
        ),
    ] {
        let patched = proxied(
            &app,
            Method::PATCH,
            "dev",
            &format!("{base}/settings?fieldManager=kp&force=true"),
        )
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
        assert_eq!(patched.status(), StatusCode::OK, "{content_type}");
        let patched: Value = patched.json().await.unwrap();
        assert_eq!(patched["data"][key], value, "{content_type}: {patched}");
        let recorded = double
            .requests()
            .into_iter()
            .rfind(|request| request.method == "PATCH")
            .unwrap();
        assert_eq!(header(&recorded, "content-type"), [content_type]);
        assert_eq!(
            recorded.query.as_deref(),
            Some("fieldManager=kp&force=true")
        );
    }

    let deleted = proxied(&app, Method::DELETE, "dev", &format!("{base}/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let gone = proxied(&app, Method::GET, "dev", &format!("{base}/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        gone.json::<Value>().await.unwrap()["reason"],
        "NotFound",
        "the cluster's Status, verbatim"
    );
}

#[tokio::test]
async fn credentials_are_the_callers_cluster_token_or_the_service_account() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = kubeportal_tests::KubeDouble::start(kubeportal_tests::DoubleOptions {
        tokens: vec!["double-token".into(), "users-own-cluster-token".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    register(&app, double_cluster("dev", &double)).await;

    // A caller's own impersonation is refused, not stripped and served with
    // kubeportal's (greater) privilege.
    let response = proxied(&app, Method::GET, "dev", "/api/v1/namespaces")
        .header("Impersonate-User", "system:admin")
        .header("Impersonate-Group", "system:masters")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(double.requests().is_empty(), "nothing reached the cluster");

    let response = proxied(&app, Method::GET, "dev", "/api/v1/namespaces")
        .header("Cookie", "portal-session=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let recorded = double.requests().pop().unwrap();
    assert_eq!(header(&recorded, "authorization"), ["Bearer double-token"]);
    assert!(header(&recorded, "impersonate-user").is_empty());
    assert!(header(&recorded, "impersonate-group").is_empty());
    assert!(header(&recorded, "cookie").is_empty());
    assert!(recorded
        .headers
        .iter()
        .all(|(name, _)| !name.starts_with("backstage-")));
    assert!(
        !recorded
            .headers
            .iter()
            .any(|(_, value)| value.contains(ADMIN_TOKEN)),
        "portal token leaked upstream"
    );

    let response = proxied(&app, Method::GET, "dev", "/api/v1/namespaces")
        .header(
            "Backstage-Kubernetes-Authorization",
            "Bearer users-own-cluster-token",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let recorded = double.requests().pop().unwrap();
    assert_eq!(
        header(&recorded, "authorization"),
        ["Bearer users-own-cluster-token"]
    );
}

#[tokio::test]
async fn impersonation_sets_the_portal_user_and_groups() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    let mut body = double_cluster("imp", &double);
    body["authProvider"] = json!("impersonate");
    register(&app, body).await;
    let refused = proxied(&app, Method::GET, "imp", "/api/v1/namespaces/default/pods")
        .header("Impersonate-User", "system:admin")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let response = proxied(&app, Method::GET, "imp", "/api/v1/namespaces/default/pods")
        .header(
            "Backstage-Kubernetes-Authorization",
            "Bearer attempt-to-override",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let recorded = double.requests().pop().unwrap();
    assert_eq!(
        header(&recorded, "impersonate-user"),
        ["user:default/alice"]
    );
    assert_eq!(
        header(&recorded, "impersonate-group"),
        ["sre-team", "group:default/team-a"]
    );
    assert_eq!(header(&recorded, "authorization"), ["Bearer double-token"]);
}

#[tokio::test]
async fn client_token_clusters_need_the_callers_token() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(&app, json!({"name": "oidc-dev", "url": double.url(), "authProvider": "oidc", "oidcTokenProvider": "okta", "caData": double.ca_pem()})).await;
    let missing = proxied(&app, Method::GET, "oidc-dev", "/api/v1/namespaces")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Backstage-Kubernetes-Authorization-oidc-okta"));
    assert!(double.requests().is_empty(), "nothing went upstream");
    let with_token = proxied(&app, Method::GET, "oidc-dev", "/api/v1/namespaces")
        .header(
            "Backstage-Kubernetes-Authorization-oidc-okta",
            "Bearer double-token",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK);
}

#[tokio::test]
async fn header_form_errors_follow_the_contract() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let no_header = app
        .client
        .get(app.url("/api/kubernetes/proxy/api/v1/pods"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(no_header.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        no_header.json::<Value>().await.unwrap()["error"]["name"],
        "InputError"
    );
    let unknown = proxied(&app, Method::GET, "nowhere", "/api/v1/pods")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"]["name"],
        "NotFoundError"
    );
    let anonymous = app
        .client
        .get(app.url("/api/kubernetes/proxy/api/v1/pods"))
        .header("Backstage-Kubernetes-Cluster", "dev")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn policy_denials_send_nothing_upstream() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(&app, double_cluster("prod-eu", &double)).await;
    let denied = proxied(
        &app,
        Method::DELETE,
        "prod-eu",
        "/api/v1/namespaces/default/configmaps/x",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(
        body["error"],
        json!({"name": "NotAllowedError", "message": "Unauthorized"})
    );
    assert!(!body.to_string().contains("prod-eu"));
    assert!(!body.to_string().contains(&double.url()));
    assert!(
        double.requests().is_empty(),
        "the cluster saw the denied request"
    );
    let allowed = proxied(&app, Method::GET, "prod-eu", "/api/v1/namespaces")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);

    // The path form answers denials as a Kubernetes Status.
    let path_form =
        app.client
            .delete(app.url(
                "/api/kubernetes/clusters/prod-eu/proxy/api/v1/namespaces/default/configmaps/x",
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
    assert_eq!(path_form.status(), StatusCode::FORBIDDEN);
    let status: Value = path_form.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(status["code"], 403);
}

#[tokio::test]
async fn followed_logs_and_watches_stream_as_the_cluster_writes() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    double.put_object("v1", "pods", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-0", "namespace": "default"}}));
    double.append_log("default", "api-0", "first line");

    let response = proxied(
        &app,
        Method::GET,
        "dev",
        "/api/v1/namespaces/default/pods/api-0/log?follow=true",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.bytes_stream();
    read_until(&mut body, "first line", "the log").await;
    double.append_log("default", "api-0", "written while the stream is open");
    read_until(
        &mut body,
        "written while the stream is open",
        "line arrives while open",
    )
    .await;
    drop(body);

    let watch = proxied(
        &app,
        Method::GET,
        "dev",
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    let mut events = watch.bytes_stream();
    double.put_object("v1", "configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later", "namespace": "default"}}));
    let seen = read_until(&mut events, "\"later\"", "watch event arrives").await;
    assert!(seen.contains("\"ADDED\""), "{seen}");

    // Long-lived streams travel on HTTP/2 connections of their own, so they
    // cannot use up the stream limit of the connection ordinary requests share.
    let _ = proxied(&app, Method::GET, "dev", "/api/v1/namespaces")
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    let recorded = double.requests();
    let find = |needle: &str| {
        recorded
            .iter()
            .rev()
            .find(|request| {
                request.path.ends_with(needle)
                    || request
                        .query
                        .as_deref()
                        .unwrap_or_default()
                        .contains(needle)
            })
            .unwrap_or_else(|| panic!("no request with {needle}"))
    };
    let (watch, follow, ordinary) = (find("watch=true"), find("follow=true"), find("/namespaces"));
    for request in [watch, follow] {
        assert_eq!(
            request.version,
            reqwest::Version::HTTP_2,
            "{}",
            request.path
        );
    }
    assert_eq!(watch.peer, follow.peer, "streams share their connection");
    assert_eq!(ordinary.version, reqwest::Version::HTTP_11);
    assert_ne!(
        watch.peer, ordinary.peer,
        "ordinary requests use another connection"
    );
}

/// Ordinary requests without a body go to a TLS cluster on HTTP/1.1
/// keep-alive connections, one request at a time, each connection used
/// again; a request with a body goes on the shared HTTP/2 connection.
#[tokio::test]
async fn reads_to_a_tls_cluster_reuse_http1_connections_and_writes_share_http2() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    for _ in 0..3 {
        let response = proxied(
            &app,
            Method::GET,
            "dev",
            "/api/v1/namespaces/default/configmaps",
        )
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap();
    }
    let created = proxied(
        &app,
        Method::POST,
        "dev",
        "/api/v1/namespaces/default/configmaps",
    )
    .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "written"}}))
    .send()
    .await
    .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let recorded = double.requests();
    let reads: Vec<_> = recorded
        .iter()
        .filter(|request| request.method == "GET" && request.path.ends_with("/configmaps"))
        .collect();
    assert_eq!(reads.len(), 3);
    for read in &reads {
        assert_eq!(read.version, reqwest::Version::HTTP_11);
        assert_eq!(read.alpn.as_deref(), Some("http/1.1"));
        assert_eq!(
            read.peer, reads[0].peer,
            "one connection carries every read"
        );
        let host: Vec<_> = read
            .headers
            .iter()
            .filter(|(name, _)| name == "host")
            .collect();
        assert_eq!(
            host,
            [&(
                "host".to_owned(),
                double.url().trim_start_matches("https://").to_owned()
            )]
        );
    }
    let write = recorded
        .iter()
        .find(|request| request.method == "POST")
        .expect("the write reached the cluster");
    assert_eq!(write.version, reqwest::Version::HTTP_2);
    assert_eq!(write.alpn.as_deref(), Some("h2"));
    assert_ne!(write.peer, reads[0].peer);
}

fn stream_app_config(db: &TestDb, per_connection: usize) -> kubeportal::config::Config {
    let mut config = kubeportal_tests::config_for(db, ConfigSource::Yaml(POLICY));
    config.kubernetes.streams_per_connection = per_connection;
    config
}

/// Opens a watch of the default namespace's config maps through kubeportal.
async fn open_watch(
    app: &TestApp,
) -> impl futures::Stream<Item = reqwest::Result<axum::body::Bytes>> {
    let response = proxied(
        app,
        Method::GET,
        "dev",
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    Box::pin(response.bytes_stream())
}

/// Reads a stream until what it delivered contains `needle` (each chunk
/// within 5 s), and returns everything read.
async fn read_until<S>(stream: &mut S, needle: &str, what: &str) -> String
where
    S: futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin,
{
    let mut seen = String::new();
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: nothing within 5 s"));
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    seen
}

/// The connections (peer addresses) the double received watches on, each
/// watch checked to have arrived over `version`.
fn watch_peers(
    double: &kube_double::KubeDouble,
    version: reqwest::Version,
) -> std::collections::BTreeSet<std::net::SocketAddr> {
    double
        .requests()
        .iter()
        .filter(|request| {
            request
                .query
                .as_deref()
                .is_some_and(|query| query.contains("watch=true"))
        })
        .map(|request| {
            assert_eq!(request.version, version, "{}", request.path);
            request.peer.expect("the double knows the connection")
        })
        .collect()
}

#[tokio::test]
async fn watches_share_a_few_http2_connections_and_give_them_back() {
    let db = TestDb::sqlite();
    let app = kubeportal_tests::spawn_with_config(stream_app_config(&db, 10)).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;

    let mut watches = Vec::new();
    for _ in 0..25 {
        watches.push(open_watch(&app).await);
    }
    // An ordinary request is not queued behind them.
    let namespaces = proxied(&app, Method::GET, "dev", "/api/v1/namespaces")
        .send()
        .await
        .unwrap();
    assert_eq!(namespaces.status(), StatusCode::OK);

    let recorded = double.requests();
    let watch_peers = watch_peers(&double, reqwest::Version::HTTP_2);
    assert_eq!(watch_peers.len(), 3, "25 watches at 10 per connection");
    let ordinary = recorded.last().unwrap();
    assert_eq!(ordinary.path, "/api/v1/namespaces");
    assert!(!watch_peers.contains(&ordinary.peer.unwrap()));

    // Every watch delivers.
    double.put_object("v1", "configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seen-by-all", "namespace": "default"}}));
    for watch in &mut watches {
        read_until(watch, "\"seen-by-all\"", "every watch delivers the event").await;
    }

    // Callers that go away cancel their upstream streams.
    drop(watches);
    let deadline = Instant::now() + Duration::from_secs(5);
    while double.open_responses() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} upstream streams still open",
            double.open_responses()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One idle connection is kept for the next stream.
    double.clear_requests();
    let _again = open_watch(&app).await;
    let reused = double.requests().pop().unwrap();
    assert!(watch_peers.contains(&reused.peer.unwrap()));
}

#[tokio::test]
async fn watches_to_a_cluster_without_http2_get_a_connection_each() {
    let db = TestDb::sqlite();
    let app = kubeportal_tests::spawn_with_config(stream_app_config(&db, 10)).await;
    let double = kubeportal_tests::start_plain_double().await;
    register(
        &app,
        json!({"name": "dev", "url": double.url(), "authProvider": "serviceAccount", "serviceAccountToken": "double-token"}),
    )
    .await;
    let mut watches = Vec::new();
    for _ in 0..3 {
        watches.push(open_watch(&app).await);
    }
    double.put_object("v1", "configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": "default"}}));
    for watch in &mut watches {
        read_until(watch, "\"plain\"", "every watch delivers the event").await;
    }
    let peers = watch_peers(&double, reqwest::Version::HTTP_11);
    assert_eq!(peers.len(), 3);
}

#[tokio::test]
async fn raw_upgrades_are_bridged_both_ways() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    let request = format!(
        "GET /api/kubernetes/proxy/debug/echo-upgrade HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nBackstage-Kubernetes-Cluster: dev\r\nConnection: Upgrade\r\nUpgrade: echo-test\r\n\r\n"
    );
    let (mut stream, head) = raw_head(&app, &request).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo-test"),
        "{head}"
    );
    for message in ["hello", "through the proxy"] {
        stream.write_all(message.as_bytes()).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
}

#[tokio::test]
async fn faults_become_502_and_504_and_the_server_keeps_serving() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;

    double.set_fault(Fault::Refuse);
    let refused = proxied(&app, Method::GET, "dev", "/api/v1/namespaces")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
    let message = refused.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("dev"), "{message}");
    assert!(!message.contains("double-token"));

    double.set_fault(Fault::Hang);
    let started = Instant::now();
    let hung = proxied(&app, Method::GET, "dev", "/api/v1/namespaces")
        .send()
        .await
        .unwrap();
    assert_eq!(hung.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?} with a 1 s timeout",
        started.elapsed()
    );
    assert!(hung.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("dev"));

    double.set_fault(Fault::None);
    double.put_object("v1", "configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big", "namespace": "default"}, "data": {"blob": "x".repeat(64 * 1024)}}));
    double.set_fault(Fault::ResetMidStream);
    let reset = proxied(
        &app,
        Method::GET,
        "dev",
        "/api/v1/namespaces/default/configmaps/big",
    )
    .send()
    .await;
    let outcome = match reset {
        Ok(response) => response.bytes().await.map(|body| body.len()),
        Err(error) => Err(error),
    };
    assert!(
        outcome.is_err(),
        "the client must see the stream end early, got {outcome:?}"
    );

    double.set_fault(Fault::None);
    let healthy = proxied(&app, Method::GET, "dev", "/api/v1/namespaces")
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), StatusCode::OK, "kubeportal keeps serving");
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
async fn a_registry_write_changes_the_connector_at_once() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let first = start_double().await;
    let second = start_double().await;
    register(&app, double_cluster("dev", &first)).await;
    assert_eq!(
        proxied(&app, Method::GET, "dev", "/version")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let mut update = double_cluster("dev", &second);
    update["version"] = json!(1);
    let updated = app
        .client
        .put(app.url("/api/kubernetes/clusters/dev"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    first.clear_requests();
    assert_eq!(
        proxied(&app, Method::GET, "dev", "/version")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert!(first.requests().is_empty());
    assert_eq!(second.requests().len(), 1);
}

#[tokio::test]
async fn without_the_cluster_header_the_only_cluster_is_used() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    let headerless = || {
        app.client
            .get(app.url("/api/kubernetes/proxy/api/v1/namespaces/default/configmaps"))
            .bearer_auth(ADMIN_TOKEN)
    };

    let only = headerless().send().await.unwrap();
    assert_eq!(only.status(), StatusCode::OK);
    assert_eq!(
        double.requests().pop().unwrap().path,
        "/api/v1/namespaces/default/configmaps"
    );

    let other = start_double().await;
    register(&app, double_cluster("staging", &other)).await;
    let ambiguous = headerless().send().await.unwrap();
    assert_eq!(ambiguous.status(), StatusCode::BAD_REQUEST);
    let body: Value = ambiguous.json().await.unwrap();
    assert_eq!(body["error"]["name"], "InputError");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Backstage-Kubernetes-Cluster"));
    assert!(other.requests().is_empty());
}

#[tokio::test]
async fn the_client_provider_header_carries_the_callers_cluster_token() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(
        &app,
        json!({"name": "byo", "url": double.url(), "authProvider": "client", "caData": double.ca_pem()}),
    )
    .await;

    let response = proxied(&app, Method::GET, "byo", "/api/v1/namespaces/default/pods")
        .header("Backstage-Kubernetes-Authorization-client", "double-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let recorded = double.requests().pop().unwrap();
    assert_eq!(header(&recorded, "authorization"), ["Bearer double-token"]);
    assert!(header(&recorded, "backstage-kubernetes-authorization-client").is_empty());
}

/// A stand-in for `kubectl proxy` (or a credential-adding sidecar): it adds
/// its own credential and refuses any request that already carries one.
async fn credential_adding_proxy() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(request.uri().path().to_owned());
            if request.headers().contains_key("authorization") {
                return (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 401})),
                );
            }
            (
                axum::http::StatusCode::OK,
                axum::Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})),
            )
        }
    });
    let url = kubeportal_tests::serve_stand_in(router).await;
    (url, seen)
}

#[tokio::test]
async fn a_cluster_behind_kubectl_proxy_receives_no_credential() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let (url, seen) = credential_adding_proxy().await;
    let created = app
        .client
        .post(app.url("/api/kubernetes/clusters"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "local", "url": url, "authProvider": "localKubectlProxy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    // Not even a token the caller offers goes there.
    for request in [
        proxied(
            &app,
            Method::GET,
            "local",
            "/api/v1/namespaces/default/pods",
        ),
        proxied(
            &app,
            Method::GET,
            "local",
            "/api/v1/namespaces/default/pods",
        )
        .header("Backstage-Kubernetes-Authorization", "Bearer offered-token"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
    // Backstage's frontend knows the provider by this name.
    let listed: Value = app
        .client
        .get(app.url("/api/kubernetes/clusters"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["authProvider"], "localKubectlProxy");
    // A credential for it is a mistake, said as one.
    let with_token = app
        .client
        .post(app.url("/api/kubernetes/clusters"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "local-2", "url": "http://127.0.0.1:9", "authProvider": "localKubectlProxy", "serviceAccountToken": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_requests_own_timeout_is_honoured_as_the_api_server_reads_it() {
    // responseHeaderMs is 1 s here; the cluster takes 2 s to answer.
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    double.delay_resource("configmaps", Duration::from_secs(2));
    let list = "/api/v1/namespaces/default/configmaps";

    let default_deadline = proxied(&app, Method::GET, "dev", list)
        .send()
        .await
        .unwrap();
    assert_eq!(default_deadline.status(), StatusCode::GATEWAY_TIMEOUT);

    // kubectl --request-timeout=10s sends timeout=10s: the cluster is given
    // that long (it would answer 504 itself when it runs out).
    let asked = proxied(&app, Method::GET, "dev", list)
        .query(&[("timeout", "10s")])
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), StatusCode::OK);
    let path_form = app
        .client
        .get(app.url(&format!(
            "/api/kubernetes/clusters/dev/proxy{list}?timeout=1m30s"
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(path_form.status(), StatusCode::OK);

    // Zero or less, or no value, is the server's default, as for the API server.
    for default in ["0s", "-1s", ""] {
        let response = proxied(&app, Method::GET, "dev", list)
            .query(&[("timeout", default)])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::GATEWAY_TIMEOUT,
            "timeout={default}"
        );
    }

    // What the API server cannot read it refuses with 400; so does kubeportal,
    // before anything reaches the cluster.
    double.clear_requests();
    for bad in ["10", "ten seconds", "1d"] {
        let refused = proxied(&app, Method::GET, "dev", list)
            .query(&[("timeout", bad)])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "timeout={bad}");
        let body: Value = refused.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid timeout"),
            "{body}"
        );
    }
    assert!(double.requests().is_empty(), "nothing reached the cluster");

    // Long-running requests have no deadline of their own, and the API
    // server does not read their timeout: neither does kubeportal.
    double.delay_resource("configmaps", Duration::ZERO);
    let watch = proxied(&app, Method::GET, "dev", list)
        .query(&[("watch", "true"), ("timeout", "not-a-duration")])
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
}

/// A cluster is sent its own host, never the one the caller addressed:
/// over plain HTTP/1.1 the `Host` header names the registered URL's host
/// and port, whatever `Host` the caller sent.
#[tokio::test]
async fn a_plain_http_cluster_receives_its_own_host() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = kubeportal_tests::start_plain_double().await;
    register(
        &app,
        json!({"name": "plain", "url": double.url(), "authProvider": "serviceAccount", "serviceAccountToken": "double-token"}),
    )
    .await;
    let authority = double.url().trim_start_matches("http://").to_owned();
    for host in [None, Some("portal.example:8443")] {
        double.clear_requests();
        let mut request = proxied(&app, Method::GET, "plain", "/api/v1/namespaces");
        if let Some(host) = host {
            request = request.header("Host", host);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "Host {host:?}");
        let sent = double.requests().pop().expect("the cluster was asked");
        assert_eq!(
            sent.header("host"),
            Some(authority.as_str()),
            "Host {host:?}"
        );
    }
}

/// Requests without a body to a plain-HTTP cluster go one after another on
/// one connection, in origin form; a request with a body still goes; and a
/// response the caller abandons takes its connection with it, so the next
/// request gets a whole answer on a new one.
#[tokio::test]
async fn a_plain_http_cluster_gets_request_after_request_on_one_connection() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = kubeportal_tests::start_plain_double().await;
    register(
        &app,
        json!({"name": "plain", "url": double.url(), "authProvider": "serviceAccount", "serviceAccountToken": "double-token"}),
    )
    .await;
    let get = |path: &str| proxied(&app, Method::GET, "plain", path).send();
    for _ in 0..3 {
        let list = get("/api/v1/namespaces/default/configmaps").await.unwrap();
        assert_eq!(list.status(), StatusCode::OK);
        assert_eq!(list.json::<Value>().await.unwrap()["kind"], "ConfigMapList");
        let missing = get("/api/v1/namespaces/default/configmaps/missing")
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.json::<Value>().await.unwrap()["reason"], "NotFound");
    }
    let created = proxied(
        &app,
        Method::POST,
        "plain",
        "/api/v1/namespaces/default/configmaps",
    )
    .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "made"}}))
    .send()
    .await
    .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let made = get("/api/v1/namespaces/default/configmaps/made")
        .await
        .unwrap();
    assert_eq!(
        made.json::<Value>().await.unwrap()["metadata"]["name"],
        "made"
    );
    let requests = double.requests();
    assert_eq!(requests.len(), 8);
    let reads: std::collections::BTreeSet<_> = requests
        .iter()
        .filter(|request| request.method == Method::GET)
        .map(|request| request.peer.expect("the double knows the connection"))
        .collect();
    assert_eq!(reads.len(), 1, "every read on one connection: {reads:?}");
    assert!(requests
        .iter()
        .all(|request| request.path.starts_with("/api/v1/")));

    double.put_object("v1", "pods", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chatty", "namespace": "default"}}));
    double.set_generated_log("default", "chatty", 64 * 1024 * 1024);
    let mut abandoned = get("/api/v1/namespaces/default/pods/chatty/log")
        .await
        .unwrap();
    assert_eq!(abandoned.status(), StatusCode::OK);
    assert!(!abandoned.chunk().await.unwrap().unwrap().is_empty());
    assert_eq!(double.open_responses(), 1);
    drop(abandoned);
    let deadline = Instant::now() + Duration::from_secs(5);
    while double.open_responses() != 0 {
        assert!(
            Instant::now() < deadline,
            "the cluster sees the log abandoned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    double.clear_requests();
    let after = get("/api/v1/namespaces/default/configmaps/made")
        .await
        .unwrap();
    assert_eq!(
        after.json::<Value>().await.unwrap()["metadata"]["name"],
        "made"
    );
    let peer = double.requests()[0].peer.unwrap();
    assert!(
        !reads.contains(&peer),
        "the abandoned connection is not used again"
    );
}

/// Framing is the body's own. The fleet's discovery sends the caller's
/// headers with no body: a caller's `Content-Length` going along would have
/// the cluster read the start of the next request on that connection as
/// this one's body (a request smuggled past the policy), so it never does.
#[tokio::test]
async fn a_length_the_body_does_not_have_never_reaches_a_cluster() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = kubeportal_tests::start_plain_double().await;
    register(
        &app,
        json!({"name": "plain-1", "url": double.url(), "authProvider": "serviceAccount", "serviceAccountToken": "double-token"}),
    )
    .await;
    let discovery = tokio::time::timeout(
        Duration::from_secs(5),
        app.client
            .get(app.url("/api/kubernetes/fleet/plain-*/proxy/api"))
            .bearer_auth(ADMIN_TOKEN)
            .header("Expect", "100-continue")
            .body("GET /smug")
            .send(),
    )
    .await
    .expect("answered in time")
    .unwrap();
    assert_eq!(discovery.status(), StatusCode::OK);
    let after = tokio::time::timeout(
        Duration::from_secs(5),
        proxied(&app, Method::GET, "plain-1", "/api/v1/namespaces").send(),
    )
    .await
    .expect("answered in time")
    .unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    let requests = double.requests();
    let paths: Vec<&str> = requests
        .iter()
        .map(|request| request.path.as_str())
        .collect();
    assert_eq!(paths, ["/api", "/api/v1/namespaces"]);
    for request in &requests {
        for name in ["content-length", "transfer-encoding", "expect"] {
            assert!(header(request, name).is_empty(), "{} {name}", request.path);
        }
    }
}

/// Only headers named with letters, digits and `-` reach a cluster: a
/// server or proxy that reads other punctuation as `-` would take
/// `Content_Length` as the request's length (the next request smuggled in
/// as its body) and `Impersonate.User` as an impersonation no rule granted.
#[tokio::test]
async fn headers_named_with_other_punctuation_never_reach_a_cluster() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = kubeportal_tests::start_plain_double().await;
    register(
        &app,
        json!({"name": "plain-1", "url": double.url(), "authProvider": "serviceAccount", "serviceAccountToken": "double-token"}),
    )
    .await;
    let underscored = [
        ("Content_Length", "58"),
        ("Transfer_Encoding", "chunked"),
        ("Impersonate_User", "system:admin"),
        ("X_Remote_User", "admin"),
        ("Some_Header", "1"),
        ("X.Remote.User", "admin"),
        ("Impersonate~User", "system:admin"),
        ("Content|Length", "5"),
        ("Transfer.Encoding", "chunked"),
        ("Impersonate+Group", "system:masters"),
        ("Expect", "100-continue"),
    ];
    for fleet in [false, true] {
        double.clear_requests();
        let mut request = if fleet {
            app.client
                .get(app.url("/api/kubernetes/fleet/plain-*/proxy/api"))
                .bearer_auth(ADMIN_TOKEN)
        } else {
            proxied(&app, Method::GET, "plain-1", "/api/v1/namespaces")
        };
        for (name, value) in underscored {
            request = request.header(name, value);
        }
        let response = tokio::time::timeout(Duration::from_secs(5), request.send())
            .await
            .expect("answered in time")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "fleet {fleet}");
        let requests = double.requests();
        assert_eq!(requests.len(), 1, "fleet {fleet}");
        let names: Vec<&str> = requests[0]
            .headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert!(
            names.iter().all(|name| name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')),
            "fleet {fleet}: {names:?}"
        );
        assert!(header(&requests[0], "expect").is_empty());
        assert!(header(&requests[0], "impersonate-user").is_empty());
    }
}

/// A cluster that answers `101 Switching Protocols` to a request that asked
/// for no upgrade, or switches to a protocol other than the one asked for:
/// a 502, not a tunnel the caller never asked for.
#[tokio::test]
async fn protocols_switched_unasked_are_a_bad_gateway() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                if read_request_head(&mut socket).await.is_none() {
                    return;
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\nwhatever follows")
                    .await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });
    register(
        &app,
        json!({"name": "switcher", "url": url, "authProvider": "serviceAccount", "serviceAccountToken": "t"}),
    )
    .await;
    // Asked for a WebSocket, answered with another protocol: no tunnel.
    let request = format!(
        "GET /api/kubernetes/proxy/api/v1/namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nBackstage-Kubernetes-Cluster: switcher\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let (_, head) = raw_head(&app, &request).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let response = proxied(&app, Method::GET, "switcher", "/api/v1/namespaces")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let status: Value = response.json().await.unwrap();
    assert!(
        status["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("switched protocols")),
        "{status}"
    );
}

/// A request body in a transfer coding other than chunked alone (`gzip,
/// chunked`, chunked twice, two `Transfer-Encoding` lines) is refused with
/// 501, as the API server's own HTTP server refuses it: the coding would not
/// be undone, and its bytes would reach the cluster as the body. Chunked
/// alone, in any case, still goes.
#[tokio::test]
async fn transfer_codings_other_than_chunked_alone_are_not_implemented() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"coded"}}"#;
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let request = |path: &str, codings: &[&str], close: &str| {
        let lines: String = codings
            .iter()
            .map(|coding| format!("Transfer-Encoding: {coding}\r\n"))
            .collect();
        format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Backstage-Kubernetes-Cluster: dev\r\nContent-Type: application/json\r\n\
             {lines}{close}\r\n{chunked}",
            app.addr
        )
    };
    let routes = [
        "/api/kubernetes/proxy/api/v1/namespaces/default/configmaps",
        "/api/kubernetes/clusters/dev/proxy/api/v1/namespaces/default/configmaps",
        "/api/kubernetes/fleet/dev/proxy/api/v1/namespaces/default/configmaps",
    ];
    let refused: [&[&str]; 5] = [
        &["gzip, chunked"],
        &["chunked, chunked"],
        &["deflate", "chunked"],
        &["chunked", "chunked"],
        &["identity, chunked"],
    ];
    for path in routes {
        for codings in refused {
            double.clear_requests();
            // Asked to keep the connection, which Go's server closes after
            // such a request, as does kubeportal.
            let (mut stream, head) = raw_head(&app, &request(path, codings, "")).await;
            assert!(
                head.starts_with("HTTP/1.1 501 "),
                "{path} {codings:?}: {head}"
            );
            assert!(head.contains("connection: close"), "{head}");
            let mut answer = String::new();
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
                .await
                .expect("the connection is closed")
                .unwrap();
            assert!(answer.contains("transfer coding"), "{answer}");
            assert!(double.requests().is_empty(), "{path} {codings:?}");
        }
    }
    double.clear_requests();
    let (mut stream, head) = raw_head(
        &app,
        &request(routes[0], &["Chunked"], "Connection: close\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 201 "), "{head}");
    let mut created = String::new();
    stream.read_to_string(&mut created).await.unwrap();
    assert!(created.contains(r#""name":"coded""#), "{created}");
    assert_eq!(double.requests().len(), 1);
}

/// An HTTP/1.1 upgrade carries no body (client-go never sends one): bytes
/// after its head would reach the cluster ahead of the session, where a
/// server that takes the connection over may read them as the protocol's
/// first frames, unseen by the session's recording. Such a request is
/// refused before it reaches the cluster.
#[tokio::test]
async fn upgrades_with_a_body_never_reach_a_cluster() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    let spdy = "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n";
    let websocket = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n";
    let exec = "api/v1/namespaces/default/pods/p1/exec?command=sh&stdin=true";
    let frame = "\u{80}\u{3}\0\u{1}FAKE-SPDY-SYN_STREAM-FRAME";
    let cases = [
        (
            "POST",
            spdy,
            format!("Content-Length: {}\r\n\r\n{frame}", frame.len()),
        ),
        (
            "GET",
            websocket,
            "Content-Length: 5\r\n\r\nhello".to_owned(),
        ),
        (
            "POST",
            spdy,
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_owned(),
        ),
    ];
    for prefix in [
        "/api/kubernetes/proxy/",
        "/api/kubernetes/clusters/dev/proxy/",
    ] {
        for (method, upgrade, body) in &cases {
            double.clear_requests();
            let request = format!(
                "{method} {prefix}{exec} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
                 Backstage-Kubernetes-Cluster: dev\r\n{upgrade}{body}"
            );
            let (_, head) = raw_head(&app, &request).await;
            assert!(
                head.starts_with("HTTP/1.1 400 "),
                "{prefix} {method}: {head}"
            );
            assert!(double.requests().is_empty(), "{prefix} {method}");
        }
    }
}

/// A GET's body of unknown length (sent chunked) reaches the cluster with
/// it: HTTP/1.1 clients send no body for a GET whose length they do not know
/// unless told to chunk it, and a pod's HTTP server behind `pods/x/proxy`
/// (a search engine's GET with a query body) needs it.
#[tokio::test]
async fn a_chunked_get_body_reaches_the_cluster() {
    let db = TestDb::sqlite();
    let app = app_with_policy(&db).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = received.clone();
    tokio::spawn(async move {
        // Registration reads the cluster too: each connection is answered,
        // and the search's is kept.
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                // The head, then whatever body follows within a moment.
                let Some(mut bytes) = read_request_head(&mut socket).await else {
                    return;
                };
                let mut buffer = [0u8; 1024];
                while let Ok(Ok(read)) =
                    tokio::time::timeout(Duration::from_millis(300), socket.read(&mut buffer)).await
                {
                    if read == 0 {
                        break;
                    }
                    bytes.extend_from_slice(&buffer[..read]);
                }
                if bytes.windows(7).any(|window| window == b"_search") {
                    *recorded.lock().unwrap() = bytes;
                }
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    register(
        &app,
        json!({"name": "search", "url": url, "authProvider": "serviceAccount", "serviceAccountToken": "t"}),
    )
    .await;
    let request = format!(
        "GET /api/kubernetes/proxy/api/v1/namespaces/default/pods/es-0/proxy/_search HTTP/1.1\r\n\
         Host: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nBackstage-Kubernetes-Cluster: search\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         10\r\n{{\"query\":\"shop\"}}\r\n0\r\n\r\n"
    );
    let (mut stream, head) = raw_head(&app, &request).await;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}{answer}");
    let received = String::from_utf8_lossy(&received.lock().unwrap()).to_ascii_lowercase();
    assert!(
        received.starts_with("get /api/v1/namespaces/default/pods/es-0/proxy/_search "),
        "{received}"
    );
    assert!(
        received.contains("transfer-encoding: chunked\r\n"),
        "{received}"
    );
    assert!(
        received.contains("\r\n\r\n10\r\n{\"query\":\"shop\"}\r\n0\r\n\r\n"),
        "{received}"
    );
}
