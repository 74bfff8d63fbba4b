//! Fault injection: the database crashing and coming back while requests
//! flow, clusters that misbehave at the TLS and stream level, and clients
//! that walk away mid-stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubeportal_tests::{
    config_for_url, double_cluster, register, spawn_with_config, start_double, ConfigSource, Fault,
    KubeDouble, PrivatePostgres, TestApp, TestDb,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ADMIN: &str = "faults-admin-token-0123456789";

const CONFIG: &str = r#"
auth:
  guest: false
  staticTokens:
    - { token: faults-admin-token-0123456789, subject: "user:default/admin", groups: ["group:default/platform"] }
permissions:
  rules:
    - { permission: "*", subjects: ["group:default/platform"], decision: allow }
kubernetes:
  timeouts: { connectMs: 2000, responseHeaderMs: 2000 }
"#;

async fn app_on(url: &str) -> TestApp {
    spawn_with_config(config_for_url(url, ConfigSource::Yaml(CONFIG))).await
}

async fn status_of(request: reqwest::RequestBuilder) -> StatusCode {
    match request.timeout(Duration::from_secs(20)).send().await {
        Ok(response) => response.status(),
        Err(error) => panic!("request failed: {error}"),
    }
}

fn proxied(app: &TestApp, cluster: &str, path: &str) -> reqwest::RequestBuilder {
    app.client
        .get(app.url(&format!("/api/kubernetes/clusters/{cluster}/proxy{path}")))
        .bearer_auth(ADMIN)
}

fn create(app: &TestApp, body: &Value) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/api/kubernetes/clusters"))
        .bearer_auth(ADMIN)
        .json(body)
}

/// Polls `check` every 100 ms until it holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {within:?}");
}

/// Proxied GETs in a loop until stopped: (ok, failed) counts and the failures.
fn steady_traffic(
    app: &TestApp,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    let client = app.client.clone();
    let url = app.url("/api/kubernetes/clusters/steady/proxy/api/v1/namespaces/default/pods");
    tokio::spawn(async move {
        let mut ok = 0;
        let mut failures = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            match client
                .get(&url)
                .bearer_auth(ADMIN)
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(response) if response.status() == StatusCode::OK => ok += 1,
                Ok(response) => failures.push(format!("{}", response.status())),
                Err(error) => failures.push(error.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (ok, failures)
    })
}

#[tokio::test]
async fn a_database_crash_stops_writes_not_proxying_and_loses_no_acknowledged_write() {
    let postgres = PrivatePostgres::start();
    let app = app_on(&postgres.url()).await;
    let double = start_double().await;

    // Acknowledged before the crash.
    for name in ["steady", "written-before"] {
        let body = double_cluster(name, &double);
        assert_eq!(status_of(create(&app, &body)).await, StatusCode::CREATED);
    }
    assert_eq!(
        status_of(proxied(&app, "steady", "/api/v1/namespaces")).await,
        StatusCode::OK
    );
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = steady_traffic(&app, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    postgres.crash();

    eventually(
        Duration::from_secs(5),
        "readyz reports the outage",
        || async {
            status_of(app.client.get(app.url("/readyz"))).await == StatusCode::SERVICE_UNAVAILABLE
        },
    )
    .await;
    assert_eq!(
        status_of(app.client.get(app.url("/healthz"))).await,
        StatusCode::OK
    );
    // Writes and registry reads fail cleanly, in the error shape.
    let refused = create(&app, &double_cluster("written-during", &double))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["name"], "ServiceUnavailableError", "{error}");
    assert_eq!(error["response"]["statusCode"], 503);
    assert_eq!(
        status_of(
            app.client
                .get(app.url("/api/kubernetes/clusters"))
                .bearer_auth(ADMIN)
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Proxying to a known cluster goes on, in both forms, for longer than a
    // re-read of the record takes to fail.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        status_of(proxied(&app, "steady", "/api/v1/namespaces")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(
            app.client
                .get(app.url("/api/kubernetes/proxy/api/v1/namespaces"))
                .bearer_auth(ADMIN)
                .header("Backstage-Kubernetes-Cluster", "steady")
        )
        .await,
        StatusCode::OK
    );

    postgres.resume();

    eventually(Duration::from_secs(20), "readyz recovers", || async {
        status_of(app.client.get(app.url("/readyz"))).await == StatusCode::OK
    })
    .await;
    // The same write now succeeds, without restarting kubeportal.
    eventually(Duration::from_secs(20), "writes succeed again", || async {
        status_of(create(&app, &double_cluster("written-after", &double))).await
            == StatusCode::CREATED
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failures) = traffic.await.unwrap();
    assert!(ok > 50, "only {ok} proxied requests went through");
    assert!(
        failures.is_empty(),
        "proxied requests failed during the outage: {failures:?}"
    );

    let mut names = kubeportal_tests::cluster_names(&app, ADMIN).await;
    names.sort_unstable();
    assert_eq!(names, ["steady", "written-after", "written-before"]);
}

/// The value of a gauge on `/metrics`.
async fn gauge(app: &TestApp, name: &str) -> i64 {
    let text = app.metrics_text().await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

async fn app_with_double() -> (TestDb, TestApp, KubeDouble) {
    let db = TestDb::sqlite();
    let app = kubeportal_tests::spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    (db, app, double)
}

#[tokio::test]
async fn a_client_that_walks_away_cancels_the_upstream_stream() {
    let (_db, app, double) = app_with_double().await;
    assert_eq!(gauge(&app, "kubeportal_open_streams").await, 0);

    // A watch and a followed log, each abandoned after its first bytes.
    double.put_object("v1", "pods", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}}));
    double.append_log("default", "web", "first line");
    for path in [
        "/api/v1/namespaces/default/configmaps?watch=true",
        "/api/v1/namespaces/default/pods/web/log?follow=true",
    ] {
        let mut response = proxied(&app, "dev", path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        if path.contains("watch") {
            double.put_object(
                "v1",
                "configmaps",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "poke", "namespace": "default"}}),
            );
        }
        let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("first bytes in time")
            .unwrap();
        assert!(first.is_some_and(|bytes| !bytes.is_empty()), "{path}");
        assert_eq!(gauge(&app, "kubeportal_open_streams").await, 1, "{path}");
        assert_eq!(double.open_responses(), 1, "{path}");
        drop(response);
        eventually(
            Duration::from_secs(5),
            "the gauge of open streams returns to zero",
            || async { gauge(&app, "kubeportal_open_streams").await == 0 },
        )
        .await;
        eventually(
            Duration::from_secs(5),
            "the cluster sees its stream cancelled",
            || async { double.open_responses() == 0 },
        )
        .await;
    }

    // The same for a body the cluster dribbles, abandoned half-way.
    double.put_object("v1", "configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "slow", "namespace": "default"}, "data": {"blob": "x".repeat(4096)}}));
    double.set_fault(Fault::SlowBody {
        interval: Duration::from_millis(20),
    });
    let mut response = proxied(&app, "dev", "/api/v1/namespaces/default/configmaps/slow")
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap();
    assert!(first.is_some());
    drop(response);
    eventually(Duration::from_secs(5), "dribbled stream closed", || async {
        gauge(&app, "kubeportal_open_streams").await == 0 && double.open_responses() == 0
    })
    .await;
    double.set_fault(Fault::None);
    assert_eq!(
        status_of(proxied(&app, "dev", "/api/v1/namespaces")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_dribbled_body_streams_through_as_it_comes() {
    let (_db, app, double) = app_with_double().await;
    double.put_object("v1", "configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "slow", "namespace": "default"}}));
    let expected = proxied(&app, "dev", "/api/v1/namespaces/default/configmaps/slow")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // About 100 bytes at one byte per 30 ms: longer than the 2 s header
    // timeout, which must not cut a body that keeps coming.
    let interval = Duration::from_millis(30);
    double.set_fault(Fault::SlowBody { interval });
    let started = Instant::now();
    let mut response = proxied(&app, "dev", "/api/v1/namespaces/default/configmaps/slow")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut received = Vec::new();
    let mut first_byte_after = None;
    while let Some(chunk) = response.chunk().await.expect("the body keeps coming") {
        first_byte_after.get_or_insert(started.elapsed());
        received.extend_from_slice(&chunk);
    }
    let total = started.elapsed();
    assert_eq!(received, expected, "the body arrives whole");
    let first_byte_after = first_byte_after.expect("some bytes");
    assert!(
        total > interval * (expected.len() as u32 / 2),
        "the body took {total:?}: it was not dribbled"
    );
    assert!(
        first_byte_after < total / 4,
        "the first byte took {first_byte_after:?} of {total:?}: the proxy buffered the body"
    );
    double.set_fault(Fault::None);
}

#[tokio::test]
async fn a_wrong_certificate_is_service_unavailable_naming_the_cluster_not_the_secret() {
    let (_db, app, double) = app_with_double().await;
    assert_eq!(
        status_of(proxied(&app, "dev", "/api/v1/namespaces")).await,
        StatusCode::OK
    );
    double.set_fault(Fault::WrongCertificate);
    // A pooled connection may meet the reset first; the next handshake meets
    // the wrong certificate.
    let mut last = None;
    for _ in 0..3 {
        let response = proxied(&app, "dev", "/api/v1/namespaces")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        // The path form words it as the API server words a backend it
        // cannot reach (the header form's 502 is in proxy.rs).
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("\"reason\":\"ServiceUnavailable\""), "{body}");
        last = Some(body);
    }
    let body = last.expect("answered");
    assert!(body.contains("dev"), "{body}");
    assert!(
        body.to_lowercase().contains("certificate") || body.to_lowercase().contains("tls"),
        "the error says what failed: {body}"
    );
    assert!(!body.contains("double-token"), "{body}");
    double.set_fault(Fault::None);
    eventually(Duration::from_secs(5), "service resumes", || async {
        status_of(proxied(&app, "dev", "/api/v1/namespaces")).await == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn a_watch_reset_by_the_cluster_ends_for_the_client_and_frees_the_stream() {
    let (_db, app, double) = app_with_double().await;
    double.set_fault(Fault::ResetMidStream);
    let mut response = proxied(
        &app,
        "dev",
        "/api/v1/namespaces/default/configmaps?watch=true",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    double.put_object(
        "v1",
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "poke", "namespace": "default"}}),
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match response.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return "clean end",
                Err(_) => return "error",
            }
        }
    })
    .await
    .expect("the client learns that the stream ended");
    assert_eq!(
        ended, "error",
        "a reset must not look like a clean end of a watch"
    );
    eventually(Duration::from_secs(5), "the stream is freed", || async {
        gauge(&app, "kubeportal_open_streams").await == 0
    })
    .await;
    double.set_fault(Fault::None);
    eventually(Duration::from_secs(5), "service resumes", || async {
        status_of(proxied(&app, "dev", "/api/v1/namespaces")).await == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn with_fail_closed_auditing_no_request_is_served_unrecorded_through_an_outage() {
    let postgres = PrivatePostgres::start();
    let yaml = format!("{CONFIG}audit: {{ bufferSize: 8, failClosed: true }}\n");
    let app = spawn_with_config(config_for_url(&postgres.url(), ConfigSource::Yaml(&yaml))).await;
    let double = start_double().await;
    assert_eq!(
        status_of(create(&app, &double_cluster("steady", &double))).await,
        StatusCode::CREATED
    );

    // Each request has a path of its own; the cluster answers 404 or 200,
    // kubeportal itself answers 503 when it cannot record the call.
    let mut served = Vec::new();
    let mut refused = 0;
    let send = |index: usize| {
        let path = format!("/api/v1/namespaces/ns-{index}");
        // The audit trail records the Kubernetes path the cluster received.
        let request = proxied(&app, "steady", &path);
        async move { (path, status_of(request).await) }
    };
    for index in 0..3 {
        let (path, status) = send(index).await;
        assert_ne!(status, StatusCode::SERVICE_UNAVAILABLE);
        served.push(path);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    postgres.crash();
    let mut index = 3;
    while refused == 0 {
        assert!(index < 40, "the outage never filled the audit buffer");
        let (path, status) = send(index).await;
        index += 1;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            refused += 1;
        } else {
            served.push(path);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    postgres.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "auditing never recovered");
        let (path, status) = send(index).await;
        index += 1;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            served.push(path);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every request that was served has its audit record.
    let mut recorded: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while served.iter().any(|path| !recorded.contains(path)) {
        assert!(
            Instant::now() < deadline,
            "served but never recorded: {:?}",
            served
                .iter()
                .filter(|path| !recorded.contains(path))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let page: Value = app
            .client
            .get(app.url("/api/kubernetes/audit?cluster=steady&limit=500"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        recorded = page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item["path"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
    }
    assert!(refused > 0);
}

/// A cluster address that accepts connections and never completes a TLS
/// handshake fails within the connect timeout (TCP and TLS together), not
/// after the response-header timeout.
#[tokio::test]
async fn a_cluster_that_never_completes_its_tls_handshake_fails_within_the_connect_timeout() {
    let db = TestDb::sqlite();
    let config = CONFIG.replace(
        "timeouts: { connectMs: 2000, responseHeaderMs: 2000 }",
        "timeouts: { connectMs: 500, responseHeaderMs: 30000 }",
    );
    let app = spawn_with_config(config_for_url(&db.url, ConfigSource::Yaml(&config))).await;
    // Accepts, reads, and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let created = create(
        &app,
        &json!({"name": "silent", "url": format!("https://{address}"), "authProvider": "serviceAccount",
                "serviceAccountToken": "t", "skipTLSVerify": true}),
    )
    .send()
    .await
    .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let started = Instant::now();
    let response = proxied(&app, "silent", "/api/v1/namespaces")
        .timeout(Duration::from_secs(40))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("connecting (TCP and TLS) took longer than 500ms"),
        "{body}"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}
