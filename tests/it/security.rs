//! What an attacker sends never reaches metrics, other origins, other
//! callers' rights or kubeportal's own resources: each test is an attack that
//! once worked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use kubeportal_tests::{
    double_cluster, register, spawn_app, spawn_with_config, start_double, test_secret_key,
    ConfigSource, TestApp, TestDb,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ADMIN: &str = "security-admin-token-0123456789";
const NOBODY: &str = "security-nobody-token-0123456789";
const READER: &str = "security-reader-token-0123456789";
const EXEC: &str = "/api/v1/namespaces/default/pods/api-0/exec";

/// Admins may do anything, readers only read the cluster list, and nobody
/// has no rule at all.
fn config(extra_server: &str) -> String {
    format!(
        r#"
server:
  maxHeaders: 100
{extra_server}
auth:
  guest: false
  staticTokens:
    - {{ token: {ADMIN}, subject: "user:default/admin", groups: ["group:default/platform"] }}
    - {{ token: {NOBODY}, subject: "user:default/nobody" }}
    - {{ token: {READER}, subject: "user:default/reader" }}
permissions:
  rules:
    - {{ permission: "*", subjects: ["group:default/platform"], decision: allow }}
    - {{ permission: kubernetes.clusters.read, subjects: ["user:default/reader"], decision: allow }}
"#
    )
}

fn random_text(length: usize) -> String {
    let mut text = String::new();
    while text.len() < length {
        text.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    text.truncate(length);
    text
}

async fn metrics_text(app: &TestApp) -> String {
    app.metrics_text().await
}

fn series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect()
}

async fn with_pod(double: &kubeportal_tests::KubeDouble) {
    double.put_object(
        "v1",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-0", "namespace": "default"},
               "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}}),
    );
}

#[tokio::test]
async fn made_up_methods_and_cluster_names_add_no_metric_series() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&config(""))).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;

    // The legitimate calls this test expects to see labelled.
    let listed = app
        .client
        .get(app.url("/api/kubernetes/clusters/dev/proxy/api/v1/namespaces"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let denied = app
        .client
        .get(app.url("/api/kubernetes/clusters/dev/proxy/api/v1/namespaces"))
        .bearer_auth(NOBODY)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let before = metrics_text(&app).await;

    let client = app.client.clone();
    let base = app.url("");
    let statuses = futures::stream::iter(0..10_000usize)
        .map(|index| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let method = Method::from_bytes(
                    format!("R{}", random_text(6 + index % 20).to_uppercase()).as_bytes(),
                )
                .unwrap();
                // Long names with what would end a label value or a line.
                let name = format!("zq{}\"}} 1 {}", random_text(200), random_text(50));
                let mut request = if index % 2 == 0 {
                    client
                        .request(method, format!("{base}/api/kubernetes/proxy/api/v1/pods"))
                        .header("Backstage-Kubernetes-Cluster", name)
                } else {
                    let encoded = name
                        .replace('"', "%22")
                        .replace(' ', "%20")
                        .replace('}', "%7D");
                    client.request(
                        method,
                        format!("{base}/api/kubernetes/clusters/{encoded}/proxy/api/v1/pods"),
                    )
                };
                match index % 3 {
                    0 => {}
                    1 => request = request.bearer_auth(NOBODY),
                    _ => request = request.bearer_auth(ADMIN),
                }
                request.send().await.map(|response| response.status())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for status in &statuses {
        let status = status.as_ref().expect("kubeportal answers");
        assert!(status.is_client_error(), "{status}");
    }

    let after = metrics_text(&app).await;
    assert!(!after.contains("zq"), "a made-up cluster name is a label");
    assert!(!after.contains("method=\"R"), "a made-up method is a label");
    assert!(
        series(&after).len() <= series(&before).len() + 150,
        "{} series before, {} after",
        series(&before).len(),
        series(&after).len()
    );
    assert!(
        after.len() < 64 * 1024,
        "/metrics grew to {} bytes",
        after.len()
    );
    assert!(after.contains("method=\"other\""), "{after}");
    // Authorized use of a registered cluster is labelled; a denial is not.
    assert!(
        after
            .lines()
            .any(|line| line.starts_with("kubeportal_http_requests_total")
                && line.contains("cluster=\"dev\"")
                && line.contains("status=\"200\"")),
        "{after}"
    );
    assert!(
        !after
            .lines()
            .any(|line| line.contains("cluster=\"dev\"") && line.contains("status=\"403\"")),
        "{after}"
    );
}

/// Cluster names are case-insensitive: whatever case a caller writes a
/// registered name in, a metric counts it under the name it is registered
/// under, so no caller adds series by spelling one name many ways.
#[tokio::test]
async fn a_cluster_is_labelled_by_its_registered_name_however_a_caller_spells_it() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&config(""))).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    let send =
        |method: Method, path: &str| app.client.request(method, app.url(path)).bearer_auth(ADMIN);
    let proxied = send(
        Method::GET,
        "/api/kubernetes/clusters/DEV/proxy/api/v1/namespaces",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(proxied.status(), StatusCode::OK);
    let by_header = send(Method::GET, "/api/kubernetes/proxy/api/v1/namespaces")
        .header("Backstage-Kubernetes-Cluster", "Dev")
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), StatusCode::OK);
    let read = send(Method::GET, "/api/kubernetes/clusters/DeV")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let taken = send(Method::POST, "/api/kubernetes/clusters")
        .json(&double_cluster("dEV", &double))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), StatusCode::CONFLICT);

    let text = metrics_text(&app).await;
    let labelled: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|line| line.starts_with("kubeportal_http_requests_total"))
        .filter_map(|line| line.split("cluster=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(labelled, ["dev"].into_iter().collect(), "{text}");
    for (route, status) in [
        ("/api/kubernetes/clusters/{name}/proxy/{*path}", 200),
        ("/api/kubernetes/proxy/{*path}", 200),
        ("/api/kubernetes/clusters/{name}", 200),
        ("/api/kubernetes/clusters", 409),
    ] {
        assert!(
            text.lines()
                .any(|line| line.starts_with("kubeportal_http_requests_total")
                    && line.contains(&format!("route=\"{route}\""))
                    && line.contains("cluster=\"dev\"")
                    && line.contains(&format!("status=\"{status}\""))),
            "{route} {status}: {text}"
        );
    }
}

/// A request with `Host` and optionally `Origin`.
async fn send_with(
    app: &TestApp,
    method: Method,
    path: &str,
    host: Option<&str>,
    origin: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(host) = host {
        request = request.header("Host", host);
    }
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn assert_not_allowed(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["name"], "NotAllowedError", "{body}");
    assert_eq!(body["response"]["statusCode"], 403, "{body}");
}

#[tokio::test]
async fn the_guest_answers_only_to_loopback_and_public_hosts() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let port = app.addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "[::1]".to_owned(),
    ] {
        let (status, body) = send_with(
            &app,
            Method::GET,
            "/api/kubernetes/clusters",
            Some(&host),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
    // DNS rebinding: a foreign name that resolves to 127.0.0.1.
    for host in [
        format!("rebind.evil.example:{port}"),
        "localhost.evil.example".to_owned(),
    ] {
        let (status, body) = send_with(
            &app,
            Method::GET,
            "/api/kubernetes/clusters",
            Some(&host),
            None,
            None,
        )
        .await;
        assert_not_allowed(status, &body);
    }
    let (status, _) = send_with(
        &app,
        Method::GET,
        "/healthz",
        Some("rebind.evil.example"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The configured public URL is served; without the guest, any host is.
    let public = spawn_app(
        &db,
        ConfigSource::Yaml("server: { publicUrl: 'https://portal.example' }\nauth: { guest: true }\npermissions: { rules: [{ permission: '*', subjects: ['*'], decision: allow }] }\n"),
    )
    .await;
    let (status, _) = send_with(
        &public,
        Method::GET,
        "/api/kubernetes/clusters",
        Some("portal.example"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send_with(
        &public,
        Method::GET,
        "/api/kubernetes/clusters",
        Some("other.example"),
        None,
        None,
    )
    .await;
    assert_not_allowed(status, &body);
    let closed = spawn_app(&db, ConfigSource::Yaml(&config(""))).await;
    let response = closed
        .client
        .get(closed.url("/api/kubernetes/clusters"))
        .header("Host", "kube.example")
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn websocket_status(
    app: &TestApp,
    path: &str,
    origin: Option<&str>,
    token: Option<&str>,
) -> u16 {
    let url = format!("ws://{}{path}", app.addr);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(error) => panic!("{error}"),
    }
}

#[tokio::test]
async fn other_origins_cannot_write_or_open_websockets() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let double = start_double().await;
    with_pod(&double).await;
    register(&app, double_cluster("dev", &double)).await;
    let own = format!("http://127.0.0.1:{}", app.addr.port());
    let exec = format!("/api/kubernetes/clusters/dev/proxy{EXEC}?command=true&stdout=true");

    // A page elsewhere opens an exec session as the guest: refused.
    assert_eq!(
        websocket_status(&app, &exec, Some("https://evil.example"), None).await,
        403
    );
    assert_eq!(websocket_status(&app, &exec, Some("null"), None).await, 403);
    // The same origin (the web demo), or no browser at all, may.
    assert_eq!(websocket_status(&app, &exec, Some(&own), None).await, 101);
    assert_eq!(websocket_status(&app, &exec, None, None).await, 101);

    // Writes from another origin are refused, whatever the route.
    let cluster = json!({"name": "evil", "url": "https://10.1.2.3:6443", "authProvider": "serviceAccount", "serviceAccountToken": "t"});
    for (method, path) in [
        (Method::POST, "/api/kubernetes/clusters"),
        (Method::DELETE, "/api/kubernetes/clusters/dev"),
        (
            Method::POST,
            "/api/kubernetes/clusters/dev/proxy/api/v1/namespaces",
        ),
        (
            Method::PATCH,
            "/api/kubernetes/proxy/api/v1/namespaces/default",
        ),
    ] {
        let (status, body) = send_with(
            &app,
            method.clone(),
            path,
            None,
            Some("https://evil.example"),
            Some(cluster.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
    }
    let listed: Value = app
        .client
        .get(app.url("/api/kubernetes/clusters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "nothing was written"
    );
    // The refusals are on the audit trail and in the request metrics.
    kubeportal_tests::audit_page_when(&app, None, "?status=403", |items| {
        [
            "/api/kubernetes/clusters",
            "/api/kubernetes/clusters/dev",
            "/api/kubernetes/clusters/dev/proxy/api/v1/namespaces",
            "/api/kubernetes/proxy/api/v1/namespaces/default",
        ]
        .iter()
        .all(|path| items.iter().any(|item| item["path"] == *path))
    })
    .await;
    let metrics = app.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("kubeportal_http_requests_total")
                && line.contains("route=\"/api/kubernetes/clusters\"")
                && line.contains("status=\"403\"")),
        "{metrics}"
    );
    // Reads from another origin get an answer the browser will not show them.
    let (status, _) = send_with(
        &app,
        Method::GET,
        "/api/kubernetes/clusters",
        None,
        Some("https://evil.example"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send_with(
        &app,
        Method::POST,
        "/api/kubernetes/clusters",
        None,
        Some(&own),
        Some(cluster.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // An origin listed in server.allowedOrigins may.
    let listed = spawn_app(
        &db,
        ConfigSource::Yaml(&config("  allowedOrigins: [\"https://portal.example\"]")),
    )
    .await;
    let create = |origin: &'static str| {
        listed
            .client
            .post(listed.url("/api/kubernetes/clusters"))
            .bearer_auth(ADMIN)
            .header("Origin", origin)
            .json(&json!({"name": format!("c{}", random_text(8)), "url": "https://10.1.2.3:6443", "authProvider": "serviceAccount", "serviceAccountToken": "t"}))
            .send()
    };
    assert_eq!(
        create("https://portal.example").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        create("https://evil.example").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        websocket_status(&listed, &exec, Some("https://evil.example"), Some(ADMIN)).await,
        403
    );

    // A listed origin (a Backstage app on its own host) may read the answers:
    // its preflights are answered, and responses name it; no other origin's.
    let preflight = |origin: &'static str| {
        listed
            .client
            .request(
                Method::OPTIONS,
                listed.url("/api/kubernetes/proxy/api/v1/namespaces"),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "DELETE")
            .header(
                "Access-Control-Request-Headers",
                "authorization, backstage-kubernetes-cluster",
            )
            .send()
    };
    let allowed = preflight("https://portal.example").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://portal.example"
    );
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("DELETE"));
    assert!(headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("backstage-kubernetes-cluster"));
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let read = listed
        .client
        .get(listed.url("/api/kubernetes/clusters"))
        .bearer_auth(ADMIN)
        .header("Origin", "https://portal.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        read.headers()["access-control-allow-origin"],
        "https://portal.example"
    );
    let elsewhere = app
        .client
        .get(app.url("/api/kubernetes/clusters"))
        .header("Origin", "https://portal.example")
        .send()
        .await
        .unwrap();
    assert!(
        elsewhere
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "without allowedOrigins, no CORS at all"
    );
}

fn environment(db: &TestDb, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("DATABASE_URL".to_owned(), db.url.clone());
    env.insert("KUBEPORTAL_SECRET_KEY".to_owned(), test_secret_key());
    env.insert("KUBEPORTAL_LISTEN".to_owned(), "127.0.0.1:0".to_owned());
    for (key, value) in extra {
        env.insert((*key).to_owned(), (*value).to_owned());
    }
    env
}

const HS_SECRET: &str = "a-security-test-hs256-secret-0123456789";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwt(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

async fn clusters_status(app: &TestApp, token: Option<&str>) -> StatusCode {
    let mut request = app.client.get(app.url("/api/kubernetes/clusters"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn without_a_configuration_file_only_the_loopback_guest_may_do_anything() {
    let db = TestDb::sqlite();
    let env = environment(&db, &[("KUBEPORTAL_JWT_HS256_SECRET", HS_SECRET)]);
    let config = kubeportal::config::Config::from_parts(None, &env).unwrap();
    let app = spawn_with_config(config).await;
    let alice = jwt(json!({"sub": "user:default/alice", "exp": now() + 600}));
    assert_eq!(clusters_status(&app, None).await, StatusCode::OK);
    assert_eq!(
        clusters_status(&app, Some(&alice)).await,
        StatusCode::FORBIDDEN
    );
    // No token may claim to be the guest, as its subject or among the
    // groups it owns (rules match either), in any case.
    for claims in [
        json!({"sub": "user:default/guest", "exp": now() + 600}),
        json!({"sub": "user:default/mallory", "ent": ["user:default/guest"], "exp": now() + 600}),
        json!({"sub": "user:default/mallory", "ent": ["group:default/a", "User:Default/Guest"], "exp": now() + 600}),
    ] {
        let guest = jwt(claims.clone());
        for _ in 0..2 {
            assert_eq!(
                clusters_status(&app, Some(&guest)).await,
                StatusCode::UNAUTHORIZED,
                "{claims}"
            );
        }
    }

    // Configured by environment for all interfaces: nobody may do anything.
    let env = environment(
        &db,
        &[
            ("KUBEPORTAL_JWT_HS256_SECRET", HS_SECRET),
            ("KUBEPORTAL_LISTEN", "0.0.0.0:0"),
        ],
    );
    let config = kubeportal::config::Config::from_parts(None, &env).unwrap();
    let open = spawn_with_config(config).await;
    assert_eq!(
        clusters_status(&open, Some(&alice)).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(clusters_status(&open, None).await, StatusCode::UNAUTHORIZED);
    let response = open
        .client
        .post(open.url("/api/kubernetes/clusters"))
        .bearer_auth(&alice)
        .json(&json!({"name": "x", "url": "https://10.1.2.3:6443", "authProvider": "serviceAccount", "serviceAccountToken": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn configured_issuer_and_audience_must_be_in_the_token() {
    let db = TestDb::sqlite();
    let yaml = format!(
        "auth:\n  guest: false\n  jwt: {{ hs256Secret: {HS_SECRET}, issuer: 'https://backstage.example', audience: backstage }}\npermissions: {{ rules: [{{ permission: '*', subjects: ['*'], decision: allow }}] }}\n"
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    let base = json!({"sub": "user:default/alice", "exp": now() + 600, "iss": "https://backstage.example", "aud": "backstage"});
    assert_eq!(
        clusters_status(&app, Some(&jwt(base.clone()))).await,
        StatusCode::OK
    );
    for missing in ["iss", "aud"] {
        let mut claims = base.clone();
        claims.as_object_mut().unwrap().remove(missing);
        assert_eq!(
            clusters_status(&app, Some(&jwt(claims))).await,
            StatusCode::UNAUTHORIZED,
            "a token without {missing}"
        );
        let mut claims = base.clone();
        claims[missing] = json!(42);
        assert_eq!(
            clusters_status(&app, Some(&jwt(claims))).await,
            StatusCode::UNAUTHORIZED,
            "a token whose {missing} is not a string"
        );
    }
}

/// A TLS client for the test server's CA.
fn tls_connector(ca_file: &std::path::Path) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Whether the server has closed a connection (EOF, reset or TLS close)
/// within `within`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // The server's SETTINGS, GOAWAY or pings: keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const HTTP2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

#[tokio::test]
async fn silent_tls_and_http2_clients_are_disconnected_while_health_answers() {
    // Each end of every connection is a file of this process: a budget of a
    // few hundred sockets, refilled only as the server closes silent ones.
    const CLIENTS: usize = 150;
    let timeouts = "  headerReadTimeoutSeconds: 1\n  idleTimeoutSeconds: 2";
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let mut tls_config = kubeportal_tests::config_for(&db, ConfigSource::Yaml(&config(timeouts)));
    tls_config.server.tls = Some(kubeportal_tests::server_tls_files(dir.path()));
    let ca_file = tls_config
        .server
        .tls
        .as_ref()
        .unwrap()
        .ca_file
        .clone()
        .unwrap();
    let tls_app = spawn_with_config(tls_config).await;
    let plain_db = TestDb::sqlite();
    let plain_app = spawn_app(&plain_db, ConfigSource::Yaml(&config(timeouts))).await;
    let connector = tls_connector(&ca_file);

    for round in 0..2 {
        let started = Instant::now();
        let mut silent_tls = Vec::new();
        let mut silent_http2 = Vec::new();
        for _ in 0..CLIENTS {
            let tcp = TcpStream::connect(tls_app.addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            silent_tls.push(connector.connect(name, tcp).await.expect("handshake"));
            let mut plain = TcpStream::connect(plain_app.addr).await.unwrap();
            plain.write_all(HTTP2_PREFACE).await.unwrap();
            plain.write_all(HTTP2_SETTINGS).await.unwrap();
            silent_http2.push(plain);
        }
        for app in [&tls_app, &plain_app] {
            let response = app
                .client
                .get(app.url("/healthz"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .expect("/healthz answers beside silent clients");
            assert_eq!(response.status(), StatusCode::OK);
        }
        for (index, stream) in silent_tls.iter_mut().enumerate() {
            let left = Duration::from_secs(8).saturating_sub(started.elapsed());
            assert!(
                closed_within(stream, left).await,
                "round {round}: silent TLS client {index} still connected after {:?}",
                started.elapsed()
            );
        }
        for (index, stream) in silent_http2.iter_mut().enumerate() {
            let left = Duration::from_secs(8).saturating_sub(started.elapsed());
            assert!(
                closed_within(stream, left).await,
                "round {round}: silent HTTP/2 client {index} still connected after {:?}",
                started.elapsed()
            );
        }
    }

    // A keep-alive connection that stops asking is closed too.
    let mut idle = TcpStream::connect(plain_app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(8)).await);
}

#[tokio::test]
async fn tickets_expire_after_thirty_seconds_on_a_quiet_server() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&config(""))).await;
    let double = start_double().await;
    with_pod(&double).await;
    register(&app, double_cluster("dev", &double)).await;
    let issue = || async {
        let issued: Value = app
            .client
            .post(app.url("/api/kubernetes/clusters/dev/tickets"))
            .bearer_auth(ADMIN)
            .json(&json!({"path": EXEC}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        issued["ticket"].as_str().unwrap().to_owned()
    };
    let exec = |ticket: String| {
        format!("/api/kubernetes/clusters/dev/proxy{EXEC}?command=true&stdout=true&ticket={ticket}")
    };
    let fresh = issue().await;
    let old = issue().await;
    assert_eq!(websocket_status(&app, &exec(fresh), None, None).await, 101);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(websocket_status(&app, &exec(old), None, None).await, 401);
}

#[tokio::test]
async fn entity_refs_cannot_walk_the_catalog() {
    let db = TestDb::sqlite();
    // A catalog that would answer anything: nothing may reach it.
    let catalog = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let catalog_url = format!("http://{}", catalog.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = catalog.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let yaml = format!("{}catalog: {{ baseUrl: '{catalog_url}' }}\n", config(""));
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    for reference in [
        "component:default/..",
        "..:default/x",
        "component:../x",
        "component:default/a%2F..",
        "component:default/.",
    ] {
        let response = app
            .client
            .post(app.url("/api/kubernetes/resources/workloads/query"))
            .bearer_auth(ADMIN)
            .json(&json!({"entityRef": reference}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{reference}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["name"], "InputError", "{body}");
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn callers_who_may_not_read_clusters_cannot_tell_names_apart() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&config(""))).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;

    let answer =
        |token: &'static str, method: Method, path: String, cluster: Option<&'static str>| {
            let mut request = app
                .client
                .request(method, app.url(&path))
                .bearer_auth(token);
            if let Some(cluster) = cluster {
                request = request.header("Backstage-Kubernetes-Cluster", cluster);
            }
            if path.ends_with("/tickets") {
                request = request.json(&json!({"path": EXEC}));
            }
            async move {
                let response = request.send().await.unwrap();
                (response.status(), response.text().await.unwrap())
            }
        };
    for token in [NOBODY, READER] {
        let mut answers = Vec::new();
        for cluster in ["dev", "nope"] {
            answers.push(vec![
                answer(
                    token,
                    Method::GET,
                    format!("/api/kubernetes/clusters/{cluster}/proxy/api/v1/pods"),
                    None,
                )
                .await,
                answer(
                    token,
                    Method::GET,
                    "/api/kubernetes/proxy/api/v1/pods".into(),
                    Some(cluster),
                )
                .await,
                answer(
                    token,
                    Method::POST,
                    format!("/api/kubernetes/clusters/{cluster}/tickets"),
                    None,
                )
                .await,
            ]);
        }
        if token == NOBODY {
            assert_eq!(
                answers[0], answers[1],
                "a registered and an unknown name differ"
            );
            for (status, body) in &answers[0] {
                assert_eq!(*status, StatusCode::FORBIDDEN, "{body}");
            }
        } else {
            // Who may list the clusters learns nothing new from a 404.
            for (status, body) in &answers[1] {
                assert_eq!(*status, StatusCode::NOT_FOUND, "{body}");
            }
        }
    }
    let (dev, nope) = (
        answer(
            NOBODY,
            Method::GET,
            "/api/kubernetes/clusters/dev/kubeconfig".into(),
            None,
        )
        .await,
        answer(
            NOBODY,
            Method::GET,
            "/api/kubernetes/clusters/nope/kubeconfig".into(),
            None,
        )
        .await,
    );
    assert_eq!(dev, nope);
    assert_eq!(dev.0, StatusCode::FORBIDDEN);

    // Whatever else is wrong with the request, a caller who may not read the
    // clusters gets the same denial for a registered and an unknown name:
    // malformed or ungrantable impersonation headers, `--as` on a review, an
    // unsafe ticket path.
    let probe = |cluster: &'static str,
                 header: Option<(&'static str, &'static str)>,
                 path: &'static str,
                 body: Option<Value>| {
        let url = if path.ends_with("/tickets") {
            format!("/api/kubernetes/clusters/{cluster}/tickets")
        } else {
            format!("/api/kubernetes/clusters/{cluster}/proxy{path}")
        };
        let mut request = app
            .client
            .request(
                if body.is_some() {
                    Method::POST
                } else {
                    Method::GET
                },
                app.url(&url),
            )
            .bearer_auth(NOBODY);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}});
    type Header = Option<(&'static str, &'static str)>;
    let probes: Vec<(Header, &str, Option<Value>)> = vec![
        (Some(("Impersonate-Uid", "x")), "/api/v1/pods", None),
        (
            Some(("Impersonate-Extra-Scopes", "x")),
            "/api/v1/pods",
            None,
        ),
        (Some(("Impersonate-Group", "x")), "/api/v1/pods", None),
        (
            Some(("Impersonate-User", "x")),
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some(review.clone()),
        ),
        (
            None,
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some(json!({})),
        ),
        (None, "/tickets", Some(json!({"path": "/x/../y"}))),
    ];
    for (header, path, body) in probes {
        let registered = probe("dev", header, path, body.clone()).await;
        let unknown = probe("nope", header, path, body).await;
        assert_eq!(registered, unknown, "{header:?} {path}");
        assert_eq!(registered.0, StatusCode::FORBIDDEN, "{header:?} {path}");
    }

    // Whether exactly one cluster is registered is not told either: with
    // several and no cluster header, the same denial as with one.
    register(&app, double_cluster("second", &double)).await;
    let missing_header = app
        .client
        .get(app.url("/api/kubernetes/proxy/api/v1/pods"))
        .bearer_auth(NOBODY)
        .send()
        .await
        .unwrap();
    assert_eq!(missing_header.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_cluster_cannot_point_at_kubeportal_itself() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&config(""))).await;
    let port = app.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("https://localhost:{port}/"),
        format!("http://[::1]:{port}"),
    ] {
        let response = app
            .client
            .post(app.url("/api/kubernetes/clusters"))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "loop", "url": url, "authProvider": "serviceAccount", "serviceAccountToken": "t"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["name"], "InputError");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("url:"),
            "{body}"
        );
    }
    // Nor be moved there.
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    let response = app
        .client
        .put(app.url("/api/kubernetes/clusters/dev"))
        .bearer_auth(ADMIN)
        .header("If-Match", "\"1\"")
        .json(&json!({"url": format!("https://127.0.0.1:{port}"), "authProvider": "serviceAccount", "serviceAccountToken": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// A cluster's answer is untrusted: a rules review built to be expensive to
/// narrow (2,000 groups x 2,000 resources x 2,000 names, 2,000 URLs x 2,000
/// verbs) is answered at once, incomplete, and the server keeps serving.
#[tokio::test]
async fn a_hostile_rules_review_costs_kubeportal_a_bounded_amount() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&config(""))).await;
    let many =
        |prefix: &str| -> Vec<String> { (0..2000).map(|i| format!("{prefix}{i}")).collect() };
    let status = json!({
        "resourceRules": [
            {"verbs": ["get", "list"], "apiGroups": many("g"), "resources": many("r"), "resourceNames": many("n")},
            // No verb kubeportal judges: nothing to check, nothing to walk.
            {"verbs": [], "apiGroups": many("g"), "resources": many("r"), "resourceNames": many("n")},
            {"verbs": ["impersonate"], "apiGroups": many("g"), "resources": many("r"), "resourceNames": many("n")},
        ],
        "nonResourceRules": [{"verbs": many("v"), "nonResourceURLs": many("/u")}],
        "incomplete": false,
        "evaluationError": "internal-host-10.1.2.3",
    });
    let router = axum::Router::new().route(
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        axum::routing::post(move || {
            let status = status.clone();
            async move {
                (
                    StatusCode::CREATED,
                    axum::Json(json!({"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1", "status": status})),
                )
            }
        }),
    );
    let url = kubeportal_tests::serve_stand_in(router).await;
    register(
        &app,
        json!({"name": "hostile", "url": url, "authProvider": "serviceAccount", "serviceAccountToken": "t"}),
    )
    .await;
    let review = app
        .client
        .post(app.url(
            "/api/kubernetes/clusters/hostile/proxy/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "default"}}))
        .timeout(std::time::Duration::from_secs(20))
        .send()
        .await
        .expect("answered well within the timeout");
    assert_eq!(review.status(), StatusCode::CREATED);
    let review: Value = review.json().await.unwrap();
    assert_eq!(review["status"]["incomplete"], true, "{review}");
    assert_eq!(review["status"]["resourceRules"], json!([]));
    assert_eq!(review["status"]["nonResourceRules"], json!([]));
    assert!(
        !review.to_string().contains("internal-host"),
        "the cluster's own text is not passed on: {review}"
    );
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}
