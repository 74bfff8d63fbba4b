//! The fleet view: kubectl lists and watches pods across clusters through
//! one kubeconfig; a hung cluster is a warning, not a failure; a watch
//! resumes from its composite resourceVersion after kubeportal restarts.

use std::time::{Duration, Instant};

use kube_double::Fault;
use kubeportal_tests::{
    double_cluster, register, server_tls_files, spawn_with_config, start_double, ConfigSource,
    TestApp, TestDb,
};
use serde_json::{json, Value};

use crate::kubectl::{signed_in_kubectl, wait_for_line, Kubectl};

const SRE: &str = "fleet-sre-token-0123456789abcd";
const TEAM: &str = "fleet-team-token-0123456789abc";

const CONFIG: &str = r#"
auth:
  guest: false
  staticTokens:
    - { token: fleet-sre-token-0123456789abcd, subject: "user:default/sre" }
    - { token: fleet-team-token-0123456789abc, subject: "user:default/team" }
permissions:
  rules:
    - { permission: kubernetes.clusters.read, subjects: ["*"], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["user:default/sre"], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["user:default/team"], clusters: ["prod-a"], decision: allow }
kubernetes:
  objects: { clusterTimeoutMs: 2000 }
"#;

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "shop"},
           "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
           "status": {"phase": "Running"}})
}

struct Fleet {
    app: TestApp,
    doubles: Vec<kube_double::KubeDouble>,
    dir: tempfile::TempDir,
    db: TestDb,
}

/// Clusters `prod-a`, `prod-b` and `prod-hung` (which never answers), and
/// `dev` outside the glob, each with a pod named after it.
async fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let app = spawn(&db, dir.path()).await;
    let mut doubles = Vec::new();
    for name in ["prod-a", "prod-b", "prod-hung", "dev"] {
        let double = start_double().await;
        double.put_object("v1", "namespaces", json!({"metadata": {"name": "shop"}}));
        double.put_object("v1", "pods", pod(&format!("{name}-api")));
        register(&app, double_cluster(name, &double)).await;
        doubles.push(double);
    }
    doubles[2].set_fault(Fault::Hang);
    Fleet {
        app,
        doubles,
        dir,
        db,
    }
}

async fn spawn(db: &TestDb, dir: &std::path::Path) -> TestApp {
    let mut config = kubeportal_tests::config_for(db, ConfigSource::Yaml(CONFIG));
    config.server.tls = Some(server_tls_files(dir));
    spawn_with_config(config).await
}

impl Fleet {
    async fn kubectl(&self, token: &str) -> Kubectl {
        let file = self.dir.path().join(format!("fleet-{}", &token[..10]));
        let kubectl = signed_in_kubectl(
            &self.app,
            "/api/kubernetes/fleet/prod-*/kubeconfig",
            token,
            &file,
        )
        .await;
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("/api/kubernetes/fleet/prod-*/proxy"),
            "{text}"
        );
        kubectl
    }

    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        get(&self.app, token, path).await
    }
}

async fn get(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/kubernetes/fleet/prod-*/proxy{path}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn kubectl_lists_and_watches_pods_across_the_fleet() {
    let fleet = fleet().await;
    let kubectl = fleet.kubectl(SRE).await;

    let started = Instant::now();
    let output = kubectl
        .command(&["get", "pods", "-A"])
        .output()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let header = stdout.lines().next().unwrap();
    assert!(
        header.contains("CLUSTER") && header.contains("READY"),
        "{stdout}"
    );
    assert!(
        stdout.contains("prod-a") && stdout.contains("prod-a-api"),
        "{stdout}"
    );
    assert!(stdout.contains("prod-b-api"), "{stdout}");
    assert!(!stdout.contains("dev-api"), "outside the glob: {stdout}");
    assert!(
        stderr.contains("Warning") && stderr.contains("prod-hung"),
        "the hung cluster is reported: {stderr}"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "the hung cluster did not hold the list past its deadline: {elapsed:?}"
    );

    // -w: a pod created on either good cluster arrives.
    let (mut watcher, mut lines) = kubectl.stream(&["get", "pods", "-A", "-w"]);
    wait_for_line(&mut lines, "prod-b-api").await;
    fleet.doubles[0].put_object("v1", "pods", pod("made-on-a"));
    wait_for_line(&mut lines, "made-on-a").await;
    fleet.doubles[1].put_object("v1", "pods", pod("made-on-b"));
    wait_for_line(&mut lines, "made-on-b").await;
    watcher.kill().await.unwrap();

    // Writes and single-object reads are not the fleet's.
    let output = kubectl
        .command(&["delete", "pod", "prod-a-api", "-n", "shop"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("MethodNotAllowed")
            || String::from_utf8_lossy(&output.stderr).contains("not allowed"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn lists_carry_clusters_pages_and_leave_out_what_the_caller_may_not_read() {
    let fleet = fleet().await;
    let response = fleet.get(SRE, "/api/v1/pods").await;
    assert_eq!(response.status(), 200);
    let warnings: Vec<String> = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("299 - \"cluster prod-hung"),
        "{warnings:?}"
    );
    let list: Value = response.json().await.unwrap();
    assert_eq!(
        list["kind"], "PodList",
        "the head comes whatever the member order"
    );
    assert_eq!(list["apiVersion"], "v1");
    let mut items: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["metadata"]["annotations"]["kubeportal.io/cluster"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                item["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The clusters' items interleave as they arrive.
    items.sort();
    assert_eq!(
        items,
        [
            ("prod-a".to_owned(), "prod-a-api".to_owned()),
            ("prod-b".to_owned(), "prod-b-api".to_owned())
        ]
    );
    let clusters = list["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 3, "{list}");
    assert_eq!(clusters[2]["name"], "prod-hung");
    assert_eq!(clusters[2]["status"], "Failure");
    assert_eq!(clusters[2]["code"], 504);

    // A caller who may read only prod-a sees only prod-a, and no warning.
    let response = fleet.get(TEAM, "/api/v1/pods").await;
    assert!(response.headers().get("warning").is_none());
    let list: Value = response.json().await.unwrap();
    assert_eq!(
        list["clusters"],
        json!([{"name": "prod-a", "status": "Success"}])
    );

    // Pages: one pod per cluster per page, the continue token carries on.
    for name in ["second", "third"] {
        fleet.doubles[0].put_object("v1", "pods", pod(&format!("prod-a-{name}")));
    }
    let mut seen = Vec::new();
    let mut next = String::new();
    for _ in 0..5 {
        let response = fleet
            .get(SRE, &format!("/api/v1/pods?limit=1&continue={next}"))
            .await;
        let page: Value = response.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["metadata"]["name"].as_str().unwrap().to_owned());
        }
        match page["metadata"]["continue"].as_str() {
            Some(token) => next = token.to_owned(),
            None => break,
        }
    }
    seen.sort();
    // The last page's resourceVersion still covers every cluster listed,
    // not only those that had a last page.
    let mut next = String::new();
    let mut last_version = String::new();
    for _ in 0..5 {
        let page: Value = fleet
            .get(SRE, &format!("/api/v1/pods?limit=1&continue={next}"))
            .await
            .json()
            .await
            .unwrap();
        last_version = page["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned();
        match page["metadata"]["continue"].as_str() {
            Some(token) => next = token.to_owned(),
            None => break,
        }
    }
    use base64::Engine as _;
    let positions: serde_json::Map<String, Value> = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&last_version)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        positions.keys().collect::<Vec<_>>(),
        ["prod-a", "prod-b"],
        "{positions:?}"
    );
    assert_eq!(
        seen,
        ["prod-a-api", "prod-a-second", "prod-a-third", "prod-b-api"]
    );

    // Garbage in the composite is a 400 Status.
    let response = fleet
        .get(SRE, "/api/v1/pods?continue=not-a-fleet-token")
        .await;
    assert_eq!(response.status(), 400);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
}

/// The audit record of a fleet read says what was read: allowed, over the
/// members the caller may read, however many others the glob matched.
#[tokio::test]
async fn a_fleet_read_is_audited_as_allowed_over_the_members_it_read() {
    let fleet = fleet().await;
    for path in ["/api/v1/pods", "/api"] {
        let response = fleet.get(TEAM, path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.bytes().await.unwrap();
    }
    let none_readable = fleet
        .app
        .client
        .get(fleet.app.url("/api/kubernetes/fleet/dev*/proxy/version"))
        .bearer_auth(TEAM)
        .send()
        .await
        .unwrap();
    assert_eq!(none_readable.status(), 404);
    let empty = fleet
        .app
        .client
        .get(
            fleet
                .app
                .url("/api/kubernetes/fleet/dev*/proxy/api/v1/pods"),
        )
        .bearer_auth(TEAM)
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 200, "a fleet of nothing readable is empty");
    let empty: Value = empty.json().await.unwrap();
    assert_eq!(empty["items"], json!([]), "{empty}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records: Vec<_> = fleet
            .app
            .state
            .auditor
            .query(&kubeportal::audit::AuditFilter::default(), None, 50)
            .await
            .unwrap()
            .into_iter()
            .map(|stored| stored.record)
            .filter(|record| record.subject == "user:default/team")
            .collect();
        if records.len() >= 4 || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let list = records
        .iter()
        .find(|record| record.path == "/api/v1/pods" && record.decision == "allow")
        .expect("the list is audited as allowed");
    assert_eq!(list.status, 200);
    assert_eq!(list.decision, "allow", "{list:?}");
    assert_eq!(
        list.rule.as_deref(),
        Some("fleet view over prod-*: prod-a"),
        "{list:?}"
    );
    let discovery = records
        .iter()
        .find(|record| record.path == "/api")
        .expect("discovery is audited");
    assert_eq!(discovery.status, 200);
    assert_eq!(discovery.decision, "allow", "{discovery:?}");
    assert_eq!(
        discovery.cluster.as_deref(),
        Some("prod-a"),
        "{discovery:?}"
    );
    let refused = records
        .iter()
        .find(|record| record.path.ends_with("/proxy/version"))
        .expect("a fleet with no readable member is audited");
    assert_eq!(refused.status, 404);
    assert_eq!(refused.decision, "deny", "{refused:?}");
    assert_eq!(
        refused.rule.as_deref(),
        Some("fleet view over dev*: no cluster readable"),
        "{refused:?}"
    );
    let empty = records
        .iter()
        .find(|record| record.path == "/api/v1/pods" && record.decision != "allow")
        .expect("a fleet list with no readable member is audited");
    assert_eq!(empty.status, 200);
    assert_eq!(empty.decision, "deny", "{empty:?}");
    assert_eq!(
        empty.rule.as_deref(),
        Some("fleet view over dev*: no cluster readable"),
        "{empty:?}"
    );
}

#[tokio::test]
async fn a_cluster_that_dribbles_its_list_holds_back_no_other() {
    let fleet = fleet().await;
    // prod-a comes first by name; its list dribbles one byte every 50 ms,
    // past the deadline.
    fleet.doubles[0].set_fault(Fault::SlowBody {
        interval: Duration::from_millis(50),
    });
    let mut response = fleet.get(SRE, "/api/v1/pods").await;
    assert_eq!(response.status(), 200);
    let headers_at = Instant::now();
    let mut body = Vec::new();
    let mut prod_b_after = None;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), response.chunk())
        .await
        .expect("the list ends")
        .unwrap()
    {
        body.extend_from_slice(&chunk);
        if prod_b_after.is_none() && String::from_utf8_lossy(&body).contains("prod-b-api") {
            prod_b_after = Some(headers_at.elapsed());
        }
    }
    let ended_after = headers_at.elapsed();
    let prod_b_after = prod_b_after.expect("prod-b's pod is listed");
    // The deadline is 2 s: prod-b's pod comes long before prod-a gives up.
    assert!(
        prod_b_after < Duration::from_millis(1_000) && ended_after > Duration::from_millis(1_500),
        "prod-b's pod after {prod_b_after:?}, the list ended after {ended_after:?}"
    );
    let list: Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod-b-api"], "{list}");
    let clusters = &list["clusters"];
    assert_eq!(clusters[0]["name"], "prod-a", "{clusters}");
    assert_eq!(clusters[0]["code"], 504, "{clusters}");
    assert!(
        clusters[0]["message"]
            .as_str()
            .unwrap()
            .contains("not read within"),
        "{clusters}"
    );
    assert_eq!(clusters[1]["status"], "Success", "{clusters}");
}

/// Reads newline-delimited watch events until `done` says so.
async fn events_until(
    response: &mut reqwest::Response,
    mut done: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let mut events = Vec::new();
    let mut buffer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = response.chunk().await.unwrap() {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let event: Value = serde_json::from_slice(&line).unwrap();
                let finished = done(&event);
                events.push(event);
                if finished {
                    return;
                }
            }
        }
        panic!("the watch ended: {events:?}");
    })
    .await
    .expect("the events arrived");
    events
}

#[tokio::test]
async fn a_watch_resumes_from_its_composite_version_after_a_restart() {
    let fleet = fleet().await;
    fleet.doubles[2].set_fault(Fault::None);
    let list: Value = fleet.get(SRE, "/api/v1/pods").await.json().await.unwrap();
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut watch = fleet
        .get(
            SRE,
            &format!("/api/v1/pods?watch=true&resourceVersion={version}"),
        )
        .await;
    assert_eq!(watch.status(), 200);
    fleet.doubles[0].put_object("v1", "pods", pod("before-restart"));
    let events = events_until(&mut watch, |event| {
        event["object"]["metadata"]["name"] == "before-restart"
    })
    .await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "ADDED");
    assert_eq!(
        last["object"]["metadata"]["annotations"]["kubeportal.io/cluster"],
        "prod-a"
    );
    let resume_from = last["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(watch);

    // kubeportal goes away; events happen meanwhile on two clusters.
    let Fleet {
        app,
        doubles,
        dir,
        db,
    } = fleet;
    app.stop().await;
    doubles[1].put_object("v1", "pods", pod("while-down-on-b"));
    doubles[2].put_object("v1", "pods", pod("while-down-on-hung"));
    let app = spawn(&db, dir.path()).await;

    let mut watch = get(
        &app,
        SRE,
        &format!("/api/v1/pods?watch=true&resourceVersion={resume_from}"),
    )
    .await;
    assert_eq!(watch.status(), 200);
    let mut missing = vec!["while-down-on-b", "while-down-on-hung"];
    let events = events_until(&mut watch, |event| {
        let name = event["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default();
        missing.retain(|wanted| *wanted != name);
        missing.is_empty()
    })
    .await;
    assert!(
        !events.iter().any(|event| {
            event["object"]["metadata"]["name"] == "before-restart"
                || event["object"]["metadata"]["name"] == "prod-a-api"
        }),
        "nothing seen before is sent again: {events:?}"
    );
}

#[tokio::test]
async fn a_position_a_cluster_no_longer_has_ends_the_watch_with_expired() {
    let fleet = fleet().await;
    fleet.doubles[2].set_fault(Fault::None);
    let list: Value = fleet.get(SRE, "/api/v1/pods").await.json().await.unwrap();
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    // The double keeps the last 10,000 events: push prod-b's position out.
    for index in 0..10_050 {
        fleet.doubles[1].put_object(
            "v1",
            "configmaps",
            json!({"metadata": {"name": format!("churn-{index}"), "namespace": "shop"}}),
        );
    }
    let mut watch = fleet
        .get(
            SRE,
            &format!("/api/v1/pods?watch=true&resourceVersion={version}"),
        )
        .await;
    assert_eq!(watch.status(), 200);
    let events = events_until(&mut watch, |event| event["type"] == "ERROR").await;
    let error = events.last().unwrap();
    assert_eq!(error["object"]["code"], 410, "{error}");
    assert_eq!(error["object"]["reason"], "Expired");
    assert!(error["object"]["message"]
        .as_str()
        .unwrap()
        .contains("prod-b"));
}

#[tokio::test]
async fn the_fleet_is_read_only_takes_no_other_identity_and_discovers_past_a_dead_cluster() {
    let fleet = fleet().await;
    // A cluster that sorts first and cannot be reached.
    register(
        &fleet.app,
        json!({"name": "prod-0-dead", "url": "https://127.0.0.1:9", "authProvider": "serviceAccount",
               "serviceAccountToken": "x", "caData": fleet.doubles[0].ca_pem()}),
    )
    .await;
    let response = fleet.get(SRE, "/api").await;
    assert_eq!(response.status(), 200, "discovery from the next cluster");
    let response = fleet
        .app
        .client
        .delete(
            fleet
                .app
                .url("/api/kubernetes/fleet/prod-*/proxy/api/v1/namespaces/shop/pods/prod-a-api"),
        )
        .bearer_auth(SRE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    assert!(fleet.doubles.iter().all(|double| double
        .requests()
        .iter()
        .all(|request| request.method != reqwest::Method::DELETE)));
    let response = fleet
        .app
        .client
        .get(
            fleet
                .app
                .url("/api/kubernetes/fleet/prod-*/proxy/api/v1/pods"),
        )
        .bearer_auth(SRE)
        .header("impersonate-user", "system:admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // A glob with `?` makes a kubeconfig whose server keeps it in the path.
    let text = fleet
        .app
        .client
        .get(fleet.app.url("/api/kubernetes/fleet/prod-%3F/kubeconfig"))
        .bearer_auth(SRE)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("/api/kubernetes/fleet/prod-%3F/proxy"),
        "{text}"
    );
}

/// A "cluster" whose watches send the start of one event and then more of
/// it without end, `piece` bytes every `pause`; lists are empty. What it
/// has sent, and whether kubeportal has closed the watch's connection.
struct EndlessEvent {
    url: String,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

async fn endless_event_cluster(piece: usize, pause: Duration) -> EndlessEvent {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sent_, closed_) = (sent.clone(), closed.clone());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (sent, closed) = (sent_.clone(), closed_.clone());
            tokio::spawn(async move {
                let mut head = vec![0u8; 8192];
                let _ = socket.read(&mut head).await;
                if !String::from_utf8_lossy(&head).contains("watch=") {
                    let body = r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}"#;
                    let _ = socket
                        .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes())
                        .await;
                    return;
                }
                let start = br#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":""#;
                let mut head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                head.extend_from_slice(format!("{:x}\r\n", start.len()).as_bytes());
                head.extend_from_slice(start);
                head.extend_from_slice(b"\r\n");
                let _ = socket.write_all(&head).await;
                let mut chunk = format!("{piece:x}\r\n").into_bytes();
                chunk.extend_from_slice(&vec![b'a'; piece]);
                chunk.extend_from_slice(b"\r\n");
                while socket.write_all(&chunk).await.is_ok() {
                    sent.fetch_add(piece as u64, Ordering::Relaxed);
                    tokio::time::sleep(pause).await;
                }
                closed.store(true, Ordering::Relaxed);
            });
        }
    });
    EndlessEvent { url, sent, closed }
}

async fn closed_within(cluster: &EndlessEvent, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if cluster.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// One event is held while it arrives only up to a limit far above any
/// object's size: a cluster that never ends one is cut off there, not
/// buffered without end, and the watch goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_ends_an_event_is_cut_off_at_the_limit() {
    let db = TestDb::sqlite();
    let app = kubeportal_tests::spawn_app(&db, ConfigSource::NoFile).await;
    let cluster = endless_event_cluster(64 * 1024, Duration::ZERO).await;
    register(
        &app,
        json!({"name": "endless-1", "url": cluster.url, "authProvider": "localKubectlProxy"}),
    )
    .await;
    let watch = app
        .client
        .get(app.url("/api/kubernetes/fleet/endless-*/proxy/api/v1/pods?watch=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    assert!(
        closed_within(&cluster, Duration::from_secs(20)).await,
        "the member's stream was never cut off ({} bytes read)",
        cluster.sent.load(std::sync::atomic::Ordering::Relaxed)
    );
    let sent = cluster.sent.load(std::sync::atomic::Ordering::Relaxed);
    // What was read before the cut, and what the sockets' buffers held.
    assert!(sent < 24 << 20, "{sent} bytes read before the cut");
    drop(watch);
}

/// When a fleet watch's client leaves, its members' streams are closed,
/// even while no event has come to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_watch_lets_go_of_its_members_when_its_client_leaves() {
    let db = TestDb::sqlite();
    let app = kubeportal_tests::spawn_app(&db, ConfigSource::NoFile).await;
    let cluster = endless_event_cluster(1024, Duration::from_millis(50)).await;
    register(
        &app,
        json!({"name": "slow-1", "url": cluster.url, "authProvider": "localKubectlProxy"}),
    )
    .await;
    let mut watch = app
        .client
        .get(app.url("/api/kubernetes/fleet/slow-*/proxy/api/v1/pods?watch=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    let _ = tokio::time::timeout(Duration::from_secs(1), watch.chunk()).await;
    assert!(!cluster.closed.load(std::sync::atomic::Ordering::Relaxed));
    drop(watch);
    assert!(
        closed_within(&cluster, Duration::from_secs(10)).await,
        "10 s after the client left, the member's stream is still read"
    );
}

/// The fleet serves lists, watches and the discovery kubectl reads
/// (`/api`, `/apis`, `/version`, `/openapi`); no other path of a cluster,
/// no upgrade, and no caller's own cluster token or identity, discovery
/// included.
#[tokio::test]
async fn the_fleet_reaches_no_other_path_of_a_cluster() {
    let fleet = fleet().await;
    // HTTP/1.1, where a client can ask for an upgrade.
    let client = reqwest::Client::builder()
        .http1_only()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let send = |path: &str, header: Option<(&'static str, &'static str)>| {
        let mut request = client
            .get(
                fleet
                    .app
                    .url(&format!("/api/kubernetes/fleet/prod-*/proxy{path}")),
            )
            .bearer_auth(SRE);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request.send()
    };
    for double in &fleet.doubles {
        double.clear_requests();
    }
    for path in [
        "/healthz",
        "/logs/",
        "/debug/pprof/",
        "/metrics",
        "/readyz",
        "/apis/x/y/z/w",
    ] {
        let response = send(path, None).await.unwrap();
        assert_eq!(response.status(), 405, "{path}");
        let status: Value = response.json().await.unwrap();
        assert_eq!(status["kind"], "Status", "{path}");
    }
    let upgrade = client
        .get(fleet.app.url("/api/kubernetes/fleet/prod-*/proxy/api"))
        .bearer_auth(SRE)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .unwrap();
    assert_eq!(upgrade.status(), 405);
    let with_token = send(
        "/api",
        Some((
            "backstage-kubernetes-authorization",
            "Bearer callers-own-token",
        )),
    )
    .await
    .unwrap();
    assert_eq!(with_token.status(), 400);
    let as_someone = send("/apis", Some(("impersonate-user", "system:admin")))
        .await
        .unwrap();
    assert_eq!(as_someone.status(), 403);
    assert!(
        fleet
            .doubles
            .iter()
            .all(|double| double.requests().is_empty()),
        "a cluster was asked"
    );
    // Discovery itself is served.
    for path in [
        "/api",
        "/api/v1",
        "/apis",
        "/apis/apps/v1",
        "/version",
        "/openapi/v2",
    ] {
        let response = send(path, None).await.unwrap();
        assert_ne!(response.status(), 405, "{path}");
    }
}

/// A glob made only of dots is a dot segment of the URL, which clients
/// remove: it is refused, never made into a kubeconfig for another route.
/// (Sent as written: HTTP clients would remove the dots themselves.)
#[tokio::test]
async fn a_glob_of_dots_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::sqlite();
    let app = kubeportal_tests::spawn_app(&db, ConfigSource::NoFile).await;
    for glob in [".", "..", "%2E%2E", "%2e", "..."] {
        for route in ["kubeconfig", "proxy/api/v1/pods"] {
            let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
            let request = format!(
                "GET /api/kubernetes/fleet/{glob}/{route} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 400"),
                "{glob} {route}: {}",
                answer.lines().next().unwrap_or_default()
            );
        }
    }
}
