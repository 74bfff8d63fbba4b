//! Browser WebSockets: no headers, so the portal identity comes as a one-time
//! ticket and the cluster token as the bearer subprotocol.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::StreamExt;
use kubeportal_tests::{register, spawn_app, start_double, ConfigSource, TestApp, TestDb};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "browser-user-portal-token-01";
const EXEC: &str = "/api/v1/namespaces/default/pods/api-0/exec";

async fn ticket(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/kubernetes/clusters/dev/tickets"))
        .bearer_auth(TOKEN)
        .json(&json!({"path": path}))
        .send()
        .await
        .unwrap()
}

async fn browser_exec(
    app: &TestApp,
    ticket: &str,
    cluster_token: &str,
) -> Result<String, tokio_tungstenite::tungstenite::Error> {
    let url = format!("ws://{}/api/kubernetes/clusters/dev/proxy{EXEC}?command=echo&command=from-a-browser&stdout=true&ticket={ticket}", app.addr);
    let mut request = url.into_client_request().unwrap();
    let protocol = format!(
        "base64url.bearer.authorization.k8s.io.{}, v5.channel.k8s.io",
        URL_SAFE_NO_PAD.encode(cluster_token)
    );
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    let mut stdout = String::new();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
    {
        match message? {
            Message::Binary(data) if data.first() == Some(&1) => {
                stdout.push_str(&String::from_utf8_lossy(&data[1..]))
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    Ok(stdout)
}

#[tokio::test]
async fn a_ticket_and_the_bearer_subprotocol_open_one_exec_session() {
    let db = TestDb::sqlite();
    let yaml = format!(
        "auth:\n  guest: false\n  staticTokens:\n    - {{ token: {TOKEN}, subject: \"user:default/dev\" }}\npermissions:\n  rules:\n    - {{ permission: kubernetes.proxy, subjects: [\"*\"], paths: [\"/api/v1/namespaces/*/pods/*/attach\"], decision: deny }}\n    - {{ permission: \"*\", subjects: [\"user:default/dev\"], decision: allow }}\n"
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    let double = start_double().await;
    double.put_object(
        "v1",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-0", "namespace": "default"},
               "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}}),
    );
    // The cluster takes the caller's own token: the browser sends it as a subprotocol.
    register(&app, json!({"name": "dev", "url": double.url(), "authProvider": "client", "caData": double.ca_pem()})).await;

    let issued = ticket(&app, EXEC).await;
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await.unwrap();
    let value = issued["ticket"].as_str().unwrap().to_owned();
    assert_eq!(issued["expiresInSeconds"], 30);

    let output = browser_exec(&app, &value, "double-token").await.unwrap();
    assert_eq!(output, "from-a-browser\n");
    let exec = double
        .requests()
        .into_iter()
        .find(|request| request.path == EXEC)
        .unwrap();
    assert!(
        !exec.query.as_deref().unwrap().contains("ticket"),
        "the ticket went upstream: {:?}",
        exec.query
    );
    assert_eq!(exec.header("authorization"), Some("Bearer double-token"));
    assert_eq!(
        exec.header("sec-websocket-protocol"),
        Some("v5.channel.k8s.io")
    );

    // Spent.
    let again = browser_exec(&app, &value, "double-token")
        .await
        .unwrap_err();
    assert!(
        matches!(&again, tokio_tungstenite::tungstenite::Error::Http(response) if response.status() == 401),
        "{again}"
    );
    // For another path.
    let other: Value = ticket(&app, "/api/v1/namespaces/default/pods/other/exec")
        .await
        .json()
        .await
        .unwrap();
    let wrong = browser_exec(&app, other["ticket"].as_str().unwrap(), "double-token")
        .await
        .unwrap_err();
    assert!(
        matches!(&wrong, tokio_tungstenite::tungstenite::Error::Http(response) if response.status() == 401),
        "{wrong}"
    );
    // Not issued for what the policy denies, nor without an identity.
    assert_eq!(
        ticket(&app, "/api/v1/namespaces/default/pods/api-0/attach")
            .await
            .status(),
        403
    );
    let anonymous = app
        .client
        .post(app.url("/api/kubernetes/clusters/dev/tickets"))
        .json(&json!({"path": EXEC}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// Asks for a ticket: the status and the error message, if any.
async fn ask(app: &TestApp, token: &str, cluster: &str, path: &str) -> (u16, String) {
    let response = app
        .client
        .post(app.url(&format!("/api/kubernetes/clusters/{cluster}/tickets")))
        .bearer_auth(token)
        .json(&json!({"path": path}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// A denied ticket says why, in the deny rule's description, to a caller who
/// may see the cluster; anyone else gets the plain denial, which tells a
/// registered cluster from an unknown name no better than before.
#[tokio::test]
async fn a_denied_ticket_carries_the_rule_description_for_who_may_see_the_cluster() {
    let db = TestDb::sqlite();
    let yaml = format!(
        "auth:\n  guest: false\n  staticTokens:\n    - {{ token: {TOKEN}, subject: \"user:default/dev\" }}\n    - {{ token: outsider-portal-token-0001, subject: \"user:default/outsider\" }}\npermissions:\n  rules:\n    - {{ permission: kubernetes.proxy, subjects: [\"*\"], paths: [\"/api/v1/namespaces/*/pods/*/attach\"], decision: deny, description: \"attaching is for the on-call team\" }}\n    - {{ permission: kubernetes.proxy, subjects: [\"*\"], paths: [\"/api/v1/namespaces/kube-system/**\"], decision: deny }}\n    - {{ permission: kubernetes.clusters.read, subjects: [\"user:default/outsider\"], decision: deny }}\n    - {{ permission: \"*\", subjects: [\"*\"], decision: allow }}\n"
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    let double = start_double().await;
    register(&app, json!({"name": "dev", "url": double.url(), "authProvider": "serviceAccount", "serviceAccountToken": "double-token", "caData": double.ca_pem()})).await;
    let attach = "/api/v1/namespaces/default/pods/api-0/attach";
    assert_eq!(
        ask(&app, TOKEN, "dev", attach).await,
        (
            403,
            "Unauthorized: attaching is for the on-call team".to_owned()
        )
    );
    // A rule without a description, and exec that is allowed.
    assert_eq!(
        ask(
            &app,
            TOKEN,
            "dev",
            "/api/v1/namespaces/kube-system/pods/dns-0/exec"
        )
        .await,
        (403, "Unauthorized".to_owned())
    );
    assert_eq!(ask(&app, TOKEN, "dev", EXEC).await.0, 201);
    // Who may not read clusters learns nothing, for a registered cluster or not.
    let outsider = "outsider-portal-token-0001";
    assert_eq!(
        ask(&app, outsider, "dev", attach).await,
        (403, "Unauthorized".to_owned())
    );
    assert_eq!(
        ask(&app, outsider, "nowhere", attach).await,
        (403, "Unauthorized".to_owned())
    );
}

/// kubeportal served over HTTPS (so that a client may speak HTTP/2 to it),
/// with a static token that may do everything, and the CA that signed it.
struct HttpsPortal {
    app: TestApp,
    ca_file: std::path::PathBuf,
    _db: TestDb,
    _tls: tempfile::TempDir,
}

async fn https_portal() -> HttpsPortal {
    let tls_dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let yaml = format!(
        "auth:\n  guest: false\n  staticTokens:\n    - {{ token: {TOKEN}, subject: \"user:default/dev\" }}\npermissions:\n  rules:\n    - {{ permission: \"*\", subjects: [\"user:default/dev\"], decision: allow }}\n"
    );
    let mut config = kubeportal_tests::config_for(&db, ConfigSource::Yaml(&yaml));
    let tls = kubeportal_tests::server_tls_files(tls_dir.path());
    let ca_file = tls.ca_file.clone().unwrap();
    config.server.tls = Some(tls);
    HttpsPortal {
        app: kubeportal_tests::spawn_with_config(config).await,
        ca_file,
        _db: db,
        _tls: tls_dir,
    }
}

/// A TLS connection offering only HTTP/2 to kubeportal, trusting its test CA.
async fn tls_stream(
    app: &TestApp,
    ca_file: &std::path::Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_file).unwrap();
    for certificate in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// An HTTP/2 connection over TLS that trusts kubeportal's test CA, as a
/// browser holds one to a portal served over HTTPS.
async fn http2_connection(
    app: &TestApp,
    ca_file: &std::path::Path,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = tls_stream(app, ca_file).await;
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    sender
}

/// Browsers open WebSockets over HTTP/2 (RFC 8441) when the portal is served
/// over HTTPS: the extended CONNECT is read, judged, ticketed, recorded and
/// bridged to the cluster's HTTP/1.1 WebSocket exactly like an upgrade; a
/// plain CONNECT is 405.
#[tokio::test]
async fn websocket_over_http2_is_bridged_like_an_upgrade() {
    let portal = https_portal().await;
    let (app, ca_file) = (&portal.app, portal.ca_file.as_path());
    let double = start_double().await;
    double.put_object(
        "v1",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-0", "namespace": "default"},
               "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}}),
    );
    register(app, json!({"name": "dev", "url": double.url(), "authProvider": "client", "caData": double.ca_pem()})).await;
    let issued: Value = app
        .client
        .post(app.url("/api/kubernetes/clusters/dev/tickets"))
        .bearer_auth(TOKEN)
        .json(&json!({"path": EXEC}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = issued["ticket"].as_str().unwrap();

    let mut sender = http2_connection(app, ca_file).await;
    let port = app.addr.port();
    let protocol = format!(
        "base64url.bearer.authorization.k8s.io.{}, v5.channel.k8s.io",
        URL_SAFE_NO_PAD.encode("double-token")
    );
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://localhost:{port}/api/kubernetes/clusters/dev/proxy{EXEC}?command=echo&command=over-http2&stdout=true&ticket={ticket}"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", protocol)
        .body(http_body_util::Empty::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "an accepted extended CONNECT");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    assert!(response.headers().get("sec-websocket-accept").is_none());
    let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
    let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
        hyper_util::rt::TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    let mut stdout = String::new();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
    {
        match message.unwrap() {
            Message::Binary(data) if data.first() == Some(&1) => {
                stdout.push_str(&String::from_utf8_lossy(&data[1..]))
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(stdout, "over-http2\n");
    let exec = double
        .requests()
        .into_iter()
        .find(|request| request.path == EXEC)
        .unwrap();
    assert_eq!(
        exec.method,
        http::Method::GET,
        "an HTTP/1.1 WebSocket upstream"
    );
    assert_eq!(exec.header("upgrade"), Some("websocket"));
    assert_eq!(exec.header("authorization"), Some("Bearer double-token"));
    assert!(!exec.query.as_deref().unwrap().contains("ticket"));

    // The ticket is spent, and a plain CONNECT never tunnels anywhere.
    let again = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://localhost:{port}/api/kubernetes/clusters/dev/proxy{EXEC}?command=id&stdout=true&ticket={ticket}"))
        .header("sec-websocket-version", "13")
        .body(http_body_util::Empty::new())
        .map(|mut request| {
            request.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
            request
        })
        .unwrap();
    assert_eq!(sender.send_request(again).await.unwrap().status(), 401);
    double.clear_requests();
    let plain = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!(
            "https://localhost:{port}/api/kubernetes/clusters/dev/proxy{EXEC}"
        ))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(sender.send_request(plain).await.unwrap().status(), 405);
    assert!(
        double.requests().is_empty(),
        "a plain CONNECT reaches no cluster"
    );
}

/// An extended CONNECT's stream is the WebSocket itself: a head that gives
/// it a length (`content-length`) is no WebSocket handshake. hyper's server
/// refuses it before kubeportal sees it: it resets the stream and closes
/// the connection. The caller learns so at once (no answer it waits on),
/// and no cluster sees the handshake or its bytes. (hyper's client will not
/// send such a request, so this speaks HTTP/2 through `h2`.)
#[tokio::test]
async fn websocket_over_http2_with_a_length_is_refused() {
    let portal = https_portal().await;
    let (app, ca_file) = (&portal.app, portal.ca_file.as_path());
    let double = start_double().await;
    register(app, json!({"name": "dev", "url": double.url(), "authProvider": "serviceAccount", "caData": double.ca_pem(), "serviceAccountToken": "double-token"})).await;
    double.clear_requests();

    let stream = tls_stream(app, ca_file).await;
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    // The server's SETTINGS (which allow the extended CONNECT) come in
    // once the connection task has read them.
    for _ in 0..100 {
        if client.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(client.is_extended_connect_protocol_enabled());
    let port = app.addr.port();
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://localhost:{port}/api/kubernetes/clusters/dev/proxy{EXEC}?command=id&stdin=true&stdout=true"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "v5.channel.k8s.io")
        .header("content-length", "5")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(bytes::Bytes::from_static(b"\x00id\n\n"), false)
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("the caller is not left waiting");
    assert!(answer.is_err(), "refused, not answered: {answer:?}");
    assert!(
        double.requests().is_empty(),
        "no cluster saw the handshake: {:?}",
        double.requests()
    );
}
