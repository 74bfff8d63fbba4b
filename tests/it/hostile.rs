//! Hostile input on the portal routes: oversized bodies and request heads,
//! broken encodings, deep nesting, unknown fields, slow and idle clients.
//! Every refusal is in the documented error shape with the right status, the
//! store is left as it was, and `/healthz` keeps answering throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kubeportal_tests::{
    both_stores, raise_open_file_limit, spawn_app, ConfigSource, TestApp, TestDb,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "hostile-admin-token-0123456789";

const CONFIG: &str = r#"
server:
  bodyLimitBytes: 65536
  maxHeaderBytes: 16384
  maxHeaders: 40
  headerReadTimeoutSeconds: 1
auth:
  guest: false
  staticTokens:
    - { token: hostile-admin-token-0123456789, subject: "user:default/admin", groups: ["group:default/platform"] }
permissions:
  rules:
    - { permission: "*", subjects: ["group:default/platform"], decision: allow }
"#;

/// Sends `request` as raw bytes and reads until the server closes: the status
/// (0 when the connection closed without a response) and the body.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    // Write while reading: the server may answer before it reads everything
    // we send. The write half stays open until the answer is in.
    let request = request.to_vec();
    let (answered, wait) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        let _ = wait.await;
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut response))
        .await
        .expect("the server answers or closes");
    drop(answered);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn healthy(app: &TestApp) {
    let response = app
        .client
        .get(app.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(response.status(), StatusCode::OK);
}

async fn cluster_names(app: &TestApp) -> Vec<String> {
    kubeportal_tests::cluster_names(app, ADMIN).await
}

/// Asserts the Backstage error shape with `status` and `name`; returns the message.
fn assert_error(status: u16, body: &str, expected_status: u16, expected_name: &str) -> String {
    assert_eq!(status, expected_status, "{body}");
    let error: Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON error body: {body:?}"));
    assert_eq!(error["error"]["name"], expected_name, "{error}");
    assert_eq!(error["response"]["statusCode"], expected_status, "{error}");
    assert!(error["request"]["method"].is_string(), "{error}");
    error["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn cluster(name: &str) -> Value {
    json!({ "name": name, "url": "https://127.0.0.1:6443", "authProvider": "serviceAccount", "serviceAccountToken": "t" })
}

fn post(path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        request.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

both_stores!(
    oversized_bodies_are_413_and_change_nothing,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;

        // Declared length over the limit.
        let mut big = cluster("big");
        big["title"] = json!("x".repeat(100_000));
        let response = app
            .client
            .post(app.url("/api/kubernetes/clusters"))
            .bearer_auth(ADMIN)
            .json(&big)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_error(status, &body, 413, "PayloadTooLargeError");

        // No length declared: chunks that add up to more than the limit.
        let chunk = "a".repeat(8192);
        let mut request = format!(
            "POST /api/kubernetes/clusters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        request.push_str("2000\r\n{\"name\":\"");
        request.push_str(&chunk[9..]);
        request.push_str("\r\n");
        for _ in 0..10 {
            request.push_str(&format!("2000\r\n{chunk}\r\n"));
        }
        request.push_str("0\r\n\r\n");
        let (status, body) = raw(app.addr, request.as_bytes()).await;
        assert_error(status, &body, 413, "PayloadTooLargeError");

        // The same on an update: the cluster keeps its version.
        let created: Value = app
            .client
            .post(app.url("/api/kubernetes/clusters"))
            .bearer_auth(ADMIN)
            .json(&cluster("kept"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut update = cluster("kept");
        update["version"] = created["version"].clone();
        update["title"] = json!("y".repeat(100_000));
        let response = app
            .client
            .put(app.url("/api/kubernetes/clusters/kept"))
            .bearer_auth(ADMIN)
            .json(&update)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let after: Value = app
            .client
            .get(app.url("/api/kubernetes/clusters/kept"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(after["version"], created["version"]);
        assert!(after["title"].is_null(), "{after}");
        assert_eq!(cluster_names(&app).await, ["kept"]);
        healthy(&app).await;
    }
);

both_stores!(
    malformed_json_is_a_400_and_changes_nothing,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
        let path = "/api/kubernetes/clusters";
        // Under the body limit, far over any sane depth.
        let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
        let deep_object = format!(
            "{{\"name\":\"deep\",\"url\":\"https://127.0.0.1:6443\",\"labels\":{}{}}}",
            "{\"a\":".repeat(5_000),
            "1}".repeat(5_000)
        );
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "invalid UTF-8",
                b"{\"name\":\"\xff\xfe\",\"url\":\"https://127.0.0.1:6443\"}".to_vec(),
            ),
            ("truncated", b"{\"name\":\"half".to_vec()),
            ("not JSON", b"name=x&url=y".to_vec()),
            ("empty", Vec::new()),
            ("deeply nested array", deep.into_bytes()),
            ("deeply nested object", deep_object.into_bytes()),
            ("a string for an object", b"\"cluster\"".to_vec()),
            (
                "wrong field type",
                br#"{"name":"typed","url":"https://127.0.0.1:6443","skipTLSVerify":"yes"}"#
                    .to_vec(),
            ),
            (
                "NUL in a name",
                b"{\"name\":\"a\\u0000b\",\"url\":\"https://127.0.0.1:6443\"}".to_vec(),
            ),
            (
                "lone surrogate",
                br#"{"name":"\ud800","url":"https://127.0.0.1:6443"}"#.to_vec(),
            ),
        ];
        for (what, body) in cases {
            let (status, text) = raw(app.addr, &post(path, Some("application/json"), &body)).await;
            assert_eq!(status, 400, "{what}: {text}");
            let message = assert_error(status, &text, 400, "InputError");
            assert!(!message.is_empty(), "{what}: says what is wrong");
        }

        // Unknown fields are refused (documented): a typo must not silently
        // drop a setting such as a CA.
        let mut typo = cluster("typo");
        typo["caDataa"] = json!("-----BEGIN CERTIFICATE-----");
        let response = app
            .client
            .post(app.url(path))
            .bearer_auth(ADMIN)
            .json(&typo)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let message = assert_error(status, &text, 400, "InputError");
        assert!(
            message.contains("caDataa"),
            "names the unknown field: {message}"
        );

        // Not declared as JSON.
        for content_type in [Some("text/plain"), None] {
            let (status, text) = raw(app.addr, &post(path, content_type, b"{}")).await;
            let name = if status == 415 {
                "UnsupportedMediaTypeError"
            } else {
                "InputError"
            };
            let message = assert_error(status, &text, status, name);
            assert!(message.contains("application/json"), "{message}");
        }

        assert!(cluster_names(&app).await.is_empty());
        healthy(&app).await;
    }
);

#[tokio::test]
async fn oversized_and_broken_request_heads_are_refused() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;

    // One header over maxHeaderBytes.
    let request = format!(
        "GET /api/kubernetes/clusters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let (status, _) = raw(app.addr, request.as_bytes()).await;
    assert_eq!(status, 431);

    // More header fields than maxHeaders.
    let mut request = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for index in 0..60 {
        request.push_str(&format!("X-Field-{index}: {index}\r\n"));
    }
    request.push_str("\r\n");
    let (status, _) = raw(app.addr, request.as_bytes()).await;
    assert_eq!(status, 431);

    // Just under the limits is fine.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(12 * 1024)
    );
    assert_eq!(raw(app.addr, request.as_bytes()).await.0, 200);

    // Garbage instead of a request line, and a header value with raw
    // non-ASCII bytes where a cluster name belongs.
    let (status, _) = raw(
        app.addr,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
    )
    .await;
    assert!(status == 400 || status == 0, "answered {status}");
    let mut request = b"GET /api/kubernetes/proxy/api/v1/namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ".to_vec();
    request.extend_from_slice(ADMIN.as_bytes());
    request.extend_from_slice(
        b"\r\nBackstage-Kubernetes-Cluster: dev\xff\xfe\r\nConnection: close\r\n\r\n",
    );
    let (status, body) = raw(app.addr, &request).await;
    assert!(
        status == 400 || status == 404,
        "a non-UTF-8 cluster name: {status} {body}"
    );
    if status != 0 {
        assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
    }
    // A bearer token with bytes no token has.
    let mut request = b"GET /api/kubernetes/clusters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\x80\r\nConnection: close\r\n\r\n".to_vec();
    let (status, body) = raw(app.addr, &request).await;
    assert_error(status, &body, 401, "AuthenticationError");
    request.clear();

    healthy(&app).await;
}

#[tokio::test]
async fn slow_and_silent_clients_are_cut_off() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;

    // A slowloris client: a request head one header every 300 ms, never done.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed_after = None;
    for index in 0..40 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if slow
            .write_all(format!("X-Slow-{index}: {index}\r\n").as_bytes())
            .await
            .is_err()
        {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut byte = [0u8; 1];
        if let Ok(read) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut byte)).await
        {
            // EOF, a reset, or a 408: the server gave up on this client.
            let _ = read;
            closed_after = Some(started.elapsed());
            break;
        }
        healthy(&app).await;
    }
    let closed_after = closed_after.expect("a slowloris client is disconnected");
    assert!(
        closed_after < Duration::from_secs(4),
        "disconnected only after {closed_after:?} with a 1 s header timeout"
    );

    // A client that connects and says nothing.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "a silent connection is closed");
    assert!(started.elapsed() >= Duration::from_millis(500));
    healthy(&app).await;
}

#[tokio::test]
async fn thousands_of_idle_connections_do_not_stop_the_server() {
    let limit = raise_open_file_limit();
    // Both ends of every connection live in this process.
    let count = 3_000.min((limit.saturating_sub(500) / 2) as usize);
    assert!(
        count >= 500,
        "open-file limit {limit} is too low for this test"
    );
    let db = TestDb::sqlite();
    let yaml = CONFIG.replace(
        "headerReadTimeoutSeconds: 1",
        "headerReadTimeoutSeconds: 60",
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;

    let mut idle = Vec::with_capacity(count);
    for index in 0..count {
        let mut stream = TcpStream::connect(app.addr).await.expect("connect");
        // Half send part of a request head and stall.
        if index % 2 == 0 {
            stream
                .write_all(b"GET /api/kubernetes/clusters HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(stream);
    }
    for _ in 0..20 {
        let started = Instant::now();
        healthy(&app).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "/healthz took {:?} beside {count} idle connections",
            started.elapsed()
        );
    }
    assert!(cluster_names(&app).await.is_empty());
    // The idle connections are still open (not dropped to make room).
    let mut still_open = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte))
            .await
            .is_err()
        {
            still_open += 1;
        }
    }
    assert_eq!(still_open, count);
    drop(idle);
    healthy(&app).await;
}
