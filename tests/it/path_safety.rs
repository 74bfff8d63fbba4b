//! Hostile request targets: each is refused, or reaches only the registered
//! cluster with the normalised path the policy judged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kubeportal_tests::{double_cluster, register, spawn_app, start_double, ConfigSource, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
enum Expect {
    /// A 4xx from kubeportal and nothing sent upstream.
    Refused,
    /// Exactly one request upstream, at this path.
    Upstream(String),
    /// Either of the above.
    RefusedOr(String),
}

/// Sends raw bytes and returns the status code of the answer.
async fn raw_status(addr: std::net::SocketAddr, request: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn hostile_targets_never_leave_the_registered_cluster() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;

    // A canary standing for any other host: nothing may ever connect to it.
    let canary = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let canary_addr = canary.local_addr().unwrap();
    let canary_hits = Arc::new(AtomicUsize::new(0));
    {
        let hits = canary_hits.clone();
        tokio::spawn(async move {
            while canary.accept().await.is_ok() {
                hits.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let evil = canary_addr.to_string();
    let up = |path: &str| Expect::Upstream(path.to_owned());
    let cases: Vec<(String, &str, Expect)> = vec![
        (
            "/api/kubernetes/proxy/api/v1/namespaces".into(),
            "dev",
            up("/api/v1/namespaces"),
        ),
        (
            "/api/kubernetes/proxy/api/v1/../../../etc/passwd".into(),
            "dev",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/api/v1/%2e%2e/%2e%2e/x".into(),
            "dev",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/api/v1/.%2E/x".into(),
            "dev",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/%2e%2e".into(),
            "dev",
            Expect::Refused,
        ),
        ("/api/kubernetes/proxy/..".into(), "dev", Expect::Refused),
        (
            "/api/kubernetes/proxy/../clusters".into(),
            "dev",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/api%2fv1/namespaces".into(),
            "dev",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/api%2Fv1".into(),
            "dev",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/api/%5cv1".into(),
            "dev",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/api\\v1".into(),
            "dev",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/api/v1/%00".into(),
            "dev",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/api/v1/%0d%0aHost:%20evil".into(),
            "dev",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/api/v1/%7f".into(),
            "dev",
            Expect::Refused,
        ),
        ("/api/kubernetes/proxy/%zz".into(), "dev", Expect::Refused),
        ("/api/kubernetes/proxy/%".into(), "dev", Expect::Refused),
        (
            format!("/api/kubernetes/proxy//{evil}/api"),
            "dev",
            up(&format!("/{evil}/api")),
        ),
        (
            format!("/api/kubernetes/proxy/@{evil}/api"),
            "dev",
            up(&format!("/@{evil}/api")),
        ),
        (
            format!("http://{evil}/api/kubernetes/proxy/api/v1/pods"),
            "dev",
            up("/api/v1/pods"),
        ),
        (
            format!("http://user@{evil}/api/kubernetes/proxy/version"),
            "dev",
            Expect::RefusedOr("/version".into()),
        ),
        (
            format!("https://{evil}:443/api/kubernetes/proxy/version"),
            "dev",
            Expect::RefusedOr("/version".into()),
        ),
        (
            "/api/kubernetes/proxy/%61pi/v1/namespaces".into(),
            "dev",
            up("/api/v1/namespaces"),
        ),
        (
            "/api/kubernetes/proxy/./api/./v1//namespaces".into(),
            "dev",
            up("/api/v1/namespaces"),
        ),
        (
            "/api/kubernetes/proxy/api/v1/%2e".into(),
            "dev",
            up("/api/v1"),
        ),
        (
            "/api/kubernetes/proxy/api/v1/namespaces?x=%2e%2e/..".into(),
            "dev",
            up("/api/v1/namespaces"),
        ),
        (
            "/api/kubernetes/proxy/api/v1/namespaces/default/pods/a%20b".into(),
            "dev",
            up("/api/v1/namespaces/default/pods/a%20b"),
        ),
        (
            "/api/kubernetes/proxy/..;/api".into(),
            "dev",
            up("/..;/api"),
        ),
        (
            "/api/kubernetes/proxy/api/v1/%252e%252e/x".into(),
            "dev",
            up("/api/v1/%252e%252e/x"),
        ),
        (
            "/api/kubernetes/proxy/api/v1/%E2%80%AE".into(),
            "dev",
            up("/api/v1/%E2%80%AE"),
        ),
        (
            "/api/kubernetes/proxy/api/v1/namespaces#fragment".into(),
            "dev",
            Expect::RefusedOr("/api/v1/namespaces".into()),
        ),
        ("/api/kubernetes/proxyx/api".into(), "dev", Expect::Refused),
        (
            "/api/kubernetes/proxy/api/v1/namespaces".into(),
            "nowhere",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/api/v1/namespaces".into(),
            evil.as_str(),
            Expect::Refused,
        ),
        (
            "/api/kubernetes/proxy/api/v1/namespaces".into(),
            "https://127.0.0.1",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/clusters/dev/proxy/api/v1/namespaces".into(),
            "",
            up("/api/v1/namespaces"),
        ),
        (
            "/api/kubernetes/clusters/DEV/proxy/version".into(),
            "",
            up("/version"),
        ),
        (
            "/api/kubernetes/clusters/dev/proxy/api/../../../admin".into(),
            "",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/clusters/dev%2F..%2Fevil/proxy/api".into(),
            "",
            Expect::Refused,
        ),
        (
            "/api/kubernetes/clusters/..%2Fdev/proxy/api".into(),
            "",
            Expect::Refused,
        ),
        (
            format!("/api/kubernetes/clusters/{evil}/proxy/api"),
            "",
            Expect::Refused,
        ),
        (evil.clone(), "dev", Expect::Refused),
        ("*".into(), "dev", Expect::Refused),
    ];
    assert!(cases.len() >= 30);
    for (target, cluster, expect) in &cases {
        let before = double.requests().len();
        let mut request = format!("GET {target} HTTP/1.1\r\nHost: {evil}\r\nConnection: close\r\n");
        if !cluster.is_empty() {
            request.push_str(&format!("Backstage-Kubernetes-Cluster: {cluster}\r\n"));
        }
        request.push_str("\r\n");
        let status = raw_status(app.addr, request.as_bytes()).await;
        let recorded = double.requests();
        let sent = &recorded[before..];
        let refused = (400..500).contains(&status) && sent.is_empty();
        let reached = |path: &str| sent.len() == 1 && sent[0].path == *path;
        match expect {
            Expect::Refused => assert!(
                refused,
                "{target}: expected refusal, got {status} and {sent:?}"
            ),
            Expect::Upstream(path) => assert!(
                reached(path),
                "{target}: expected {path} upstream, got {status} and {sent:?}"
            ),
            Expect::RefusedOr(path) => assert!(
                refused || reached(path),
                "{target}: got {status} and {sent:?}"
            ),
        }
    }

    // Oversized headers are refused before anything goes upstream.
    let before = double.requests().len();
    let huge = format!(
        "GET /api/kubernetes/proxy/version HTTP/1.1\r\nHost: x\r\nBackstage-Kubernetes-Cluster: dev\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let status = raw_status(app.addr, huge.as_bytes()).await;
    assert!(
        status == 431 || status == 400 || status == 0,
        "oversized header answered {status}"
    );
    assert_eq!(double.requests().len(), before);

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        canary_hits.load(Ordering::SeqCst),
        0,
        "a request reached another host"
    );
}

#[tokio::test]
async fn the_policy_judges_the_path_the_cluster_sees() {
    let db = TestDb::sqlite();
    let yaml = r#"
permissions:
  rules:
    - { permission: kubernetes.proxy, subjects: ["*"], paths: ["/api/v1/namespaces/*/secrets", "/api/v1/namespaces/*/secrets/**"], decision: deny }
    - { permission: kubernetes.proxy, subjects: ["*"], resources: [secrets], decision: deny }
    - { permission: "*", subjects: ["*"], decision: allow }
"#;
    let app = spawn_app(&db, ConfigSource::Yaml(yaml)).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    for target in [
        "/api/kubernetes/proxy/api/v1/namespaces/default/secrets",
        "/api/kubernetes/proxy/api/v1/namespaces/default/%73ecrets",
        "/api/kubernetes/proxy//api//v1/namespaces/default/./secrets/x",
        "/api/kubernetes/proxy/api/v1/namespaces/default/secrets%2Fx",
        "/api/kubernetes/proxy/%61pi/v1/namespaces/default/secrets?watch=1",
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nBackstage-Kubernetes-Cluster: dev\r\nConnection: close\r\n\r\n");
        let status = raw_status(app.addr, request.as_bytes()).await;
        assert!(status == 403 || status == 400, "{target} answered {status}");
    }
    assert!(double.requests().is_empty(), "{:?}", double.requests());
}
