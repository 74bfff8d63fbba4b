//! Tenant views: a caller granted some namespaces (by name or by label) sees
//! only those, and only their objects, in kubectl's lists and watches; an
//! object outside the grant is not found.

use std::time::Duration;

use kubeportal_tests::{
    double_cluster, register, server_tls_files, spawn_with_config, start_double, ConfigSource,
    TestApp, TestDb,
};
use serde_json::{json, Value};

use crate::kubectl::{signed_in_kubectl, wait_for_line, Kubectl};

const BY_NAME: &str = "tenant-a-by-name-token-0123456";
const BY_LABEL: &str = "tenant-a-by-label-token-012345";
const ADMIN: &str = "tenant-admin-token-0123456789ab";
const NODES: &str = "tenant-nodes-pool-a-token-01234";

const CONFIG: &str = r#"
auth:
  guest: false
  staticTokens:
    - { token: tenant-a-by-name-token-0123456, subject: "user:default/alice" }
    - { token: tenant-a-by-label-token-012345, subject: "user:default/bob" }
    - { token: tenant-admin-token-0123456789ab, subject: "user:default/admin" }
    - { token: tenant-nodes-pool-a-token-01234, subject: "user:default/carol" }
permissions:
  rules:
    - { permission: kubernetes.clusters.read, subjects: ["*"], decision: allow }
    - { permission: kubernetes.resources.read, subjects: ["*"], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["user:default/admin"], decision: allow }
    # Discovery, which every kubectl command reads first.
    - { permission: kubernetes.proxy, subjects: ["*"], methods: [GET], paths: ["/api", "/api/v1", "/apis", "/apis/*", "/apis/*/*", "/version", "/openapi/**"], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["user:default/alice"], namespaces: ["team-a-*"], verbs: [get, list, watch], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["user:default/bob"], namespaceSelector: "tenant=a", verbs: [get, list, watch], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["user:default/carol"], resources: [nodes], objectSelector: "pool=a", verbs: [get, list, watch], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["user:default/carol"], namespaces: ["team-a-*"], verbs: [get, list, watch], decision: allow }
"#;

fn namespace(name: &str, tenant: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": {"tenant": tenant}}})
}

fn pod(namespace: &str, name: &str) -> Value {
    pod_on(namespace, name, "node-a1")
}

fn pod_on(namespace: &str, name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": namespace,
                        "labels": {"app": name, "backstage.io/kubernetes-id": "shop"}},
           "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.example/app:1"}]},
           "status": {"phase": "Running"}})
}

fn node(name: &str, pool: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"pool": pool}},
           "status": {"conditions": [{"type": "Ready", "status": "True"}],
                      "nodeInfo": {"kubeletVersion": "v1.32.4"}}})
}

struct Tenancy {
    app: TestApp,
    double: kube_double::KubeDouble,
    dir: tempfile::TempDir,
    _db: TestDb,
}

/// kubeportal (TLS, for kubectl) with one cluster holding namespaces
/// `team-a-dev`, `team-a-prod` (tenant a) and `team-b-dev` (tenant b), a pod
/// in each, and the double's own `default` and `kube-system`.
async fn tenancy() -> Tenancy {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let mut config = kubeportal_tests::config_for(&db, ConfigSource::Yaml(CONFIG));
    config.server.tls = Some(server_tls_files(dir.path()));
    let app = spawn_with_config(config).await;
    let double = start_double().await;
    for (name, tenant) in [
        ("team-a-dev", "a"),
        ("team-a-prod", "a"),
        ("team-b-dev", "b"),
    ] {
        double.put_object("v1", "namespaces", namespace(name, tenant));
        double.put_object("v1", "pods", pod(name, &format!("{name}-api")));
    }
    double.put_object("v1", "pods", pod("default", "default-api"));
    double.put_object("v1", "nodes", node("node-a1", "a"));
    double.put_object("v1", "nodes", node("node-b1", "b"));
    register(&app, double_cluster("dev", &double)).await;
    Tenancy {
        app,
        double,
        dir,
        _db: db,
    }
}

impl Tenancy {
    async fn kubectl(&self, token: &str) -> Kubectl {
        let file = self.dir.path().join(format!("kubeconfig-{}", &token[..12]));
        signed_in_kubectl(
            &self.app,
            "/api/kubernetes/clusters/dev/kubeconfig",
            token,
            &file,
        )
        .await
    }

    async fn get(&self, token: &str, path: &str, accept: Option<&str>) -> (u16, String) {
        self.get_on("dev", token, path, accept).await
    }

    /// A path-form GET of `path` on `cluster`: its status and body.
    async fn get_on(
        &self,
        cluster: &str,
        token: &str,
        path: &str,
        accept: Option<&str>,
    ) -> (u16, String) {
        let mut request = self
            .app
            .client
            .get(
                self.app
                    .url(&format!("/api/kubernetes/clusters/{cluster}/proxy{path}")),
            )
            .bearer_auth(token);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

/// The first column of kubectl's table output, header left out.
fn names(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The second column (`get pods -A`: NAMESPACE, NAME, …).
fn pod_names(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(str::to_owned)
        .collect()
}

async fn tenant_sees_only_team_a(tenancy: &Tenancy, token: &str) {
    let kubectl = tenancy.kubectl(token).await;

    let namespaces = kubectl.run(&["get", "ns"]).await;
    assert_eq!(
        names(&namespaces),
        ["team-a-dev", "team-a-prod"],
        "{namespaces}"
    );

    let pods = kubectl.run(&["get", "pods", "-A"]).await;
    assert_eq!(
        pod_names(&pods),
        ["team-a-dev-api", "team-a-prod-api"],
        "{pods}"
    );

    let json: Value =
        serde_json::from_str(&kubectl.run(&["get", "pods", "-A", "-o", "json"]).await).unwrap();
    let listed: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["team-a-dev-api", "team-a-prod-api"]);

    // A namespace outside the grant is not found, not forbidden.
    let output = kubectl
        .command(&["get", "ns", "team-b-dev"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("NotFound") && stderr.contains("\"team-b-dev\" not found"),
        "{stderr}"
    );
    // Reads in a namespace the caller has no view of are forbidden, as by
    // RBAC (that says nothing of what is in it).
    let output = kubectl
        .command(&["get", "pod", "team-b-dev-api", "-n", "team-b-dev"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Forbidden"), "{stderr}");
    // Inside it, objects are read as they are.
    let own = kubectl
        .run(&["get", "ns", "team-a-dev", "-o", "name"])
        .await;
    assert_eq!(own.trim(), "namespace/team-a-dev");

    // A watch across namespaces shows a new pod of team a, never team b's.
    let (mut watcher, mut lines) = kubectl.stream(&["get", "pods", "-A", "-w"]);
    wait_for_line(&mut lines, "team-a-prod-api").await;
    let suffix = &token[..6];
    tenancy.double.put_object(
        "v1",
        "pods",
        pod("team-b-dev", &format!("b-later-{suffix}")),
    );
    tenancy.double.put_object(
        "v1",
        "pods",
        pod("team-a-dev", &format!("a-later-{suffix}")),
    );
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line.clone());
            if line.contains("a-later-") {
                return seen;
            }
        }
        panic!("the watch ended: {seen:?}");
    })
    .await
    .expect("the new team-a pod arrived");
    assert!(
        !seen
            .iter()
            .any(|line| line.contains("team-b") || line.contains("b-later-")),
        "{seen:?}"
    );
    watcher.kill().await.unwrap();
}

#[tokio::test]
async fn a_namespace_glob_grants_a_view_for_kubectl() {
    let tenancy = tenancy().await;
    tenant_sees_only_team_a(&tenancy, BY_NAME).await;
    // The admin, granted everything, sees everything, unfiltered.
    let admin = tenancy.kubectl(ADMIN).await;
    let namespaces = admin.run(&["get", "ns"]).await;
    assert_eq!(
        names(&namespaces),
        [
            "default",
            "kube-system",
            "team-a-dev",
            "team-a-prod",
            "team-b-dev"
        ],
        "{namespaces}"
    );
}

#[tokio::test]
async fn a_namespace_label_selector_grants_a_view_for_kubectl() {
    let tenancy = tenancy().await;
    tenant_sees_only_team_a(&tenancy, BY_LABEL).await;
}

#[tokio::test]
async fn a_namespace_relabelled_out_of_the_grant_leaves_the_watch() {
    let tenancy = tenancy().await;
    let response = tenancy
        .app
        .client
        .get(
            tenancy
                .app
                .url("/api/kubernetes/clusters/dev/proxy/api/v1/namespaces?watch=true"),
        )
        .bearer_auth(BY_LABEL)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = Vec::new();
    let mut buffer = Vec::new();
    let mut body = response;
    let mut relabelled = false;
    let deleted = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = body.chunk().await.unwrap() {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let event: Value = serde_json::from_slice(&line).unwrap();
                let summary = format!(
                    "{} {}",
                    event["type"].as_str().unwrap(),
                    event["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                );
                events.push(summary.clone());
                if summary == "ADDED team-a-prod" && !relabelled {
                    relabelled = true;
                    tenancy
                        .double
                        .put_object("v1", "namespaces", namespace("team-a-prod", "b"));
                }
                if summary == "DELETED team-a-prod" {
                    return events;
                }
            }
        }
        panic!("the watch ended: {events:?}");
    })
    .await
    .expect("the relabelled namespace left the view");
    assert_eq!(
        deleted,
        [
            "ADDED team-a-dev",
            "ADDED team-a-prod",
            "DELETED team-a-prod"
        ]
    );
}

#[tokio::test]
async fn filtered_lists_page_and_speak_json_only() {
    let tenancy = tenancy().await;
    // Pages: the filter keeps `continue`, drops `remainingItemCount`, and a
    // page may come back short.
    let mut names = Vec::new();
    let mut next = String::new();
    for _ in 0..10 {
        let path = format!("/api/v1/pods?limit=2&continue={next}");
        let (status, body) = tenancy.get(BY_NAME, &path, None).await;
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        assert!(
            page["metadata"].get("remainingItemCount").is_none(),
            "{page}"
        );
        for item in page["items"].as_array().unwrap() {
            names.push(item["metadata"]["name"].as_str().unwrap().to_owned());
        }
        match page["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => next = token.to_owned(),
            _ => break,
        }
    }
    assert_eq!(names, ["team-a-dev-api", "team-a-prod-api"]);

    // Metadata-only lists, and Tables without their rows' objects, are
    // filtered too.
    let (status, body) = tenancy
        .get(
            BY_NAME,
            "/api/v1/pods",
            Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let metadata: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metadata["kind"], "PartialObjectMetadataList");
    let listed: Vec<&str> = metadata["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["team-a-dev-api", "team-a-prod-api"]);
    let (status, body) = tenancy
        .get(
            BY_NAME,
            "/api/v1/pods?includeObject=None",
            Some("application/json;as=Table;g=meta.k8s.io;v=v1"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let table: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(table["kind"], "Table");
    let rows = table["rows"].as_array().unwrap();
    let cells: Vec<&str> = rows
        .iter()
        .map(|row| row["cells"][0].as_str().unwrap())
        .collect();
    assert_eq!(cells, ["team-a-dev-api", "team-a-prod-api"]);
    assert!(
        rows.iter().all(|row| row.get("object").is_none()),
        "{table}"
    );

    // Protobuf first, JSON after: JSON. Protobuf only: 406, as a Status.
    let (status, body) = tenancy
        .get(
            BY_NAME,
            "/api/v1/pods",
            Some("application/vnd.kubernetes.protobuf,application/json"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (status, body) = tenancy
        .get(
            BY_NAME,
            "/api/v1/pods",
            Some("application/vnd.kubernetes.protobuf"),
        )
        .await;
    assert_eq!(status, 406, "{body}");
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["kind"], "Status");
    assert_eq!(refusal["reason"], "NotAcceptable");
    // The unfiltered admin gets what the cluster serves.
    let (status, _) = tenancy
        .get(
            ADMIN,
            "/api/v1/pods",
            Some("application/vnd.kubernetes.protobuf,application/json"),
        )
        .await;
    assert_eq!(status, 200);

    // Writes are not views: a tenant granted reads cannot delete.
    let response = tenancy
        .app
        .client
        .delete(tenancy.app.url(
            "/api/kubernetes/clusters/dev/proxy/api/v1/namespaces/team-a-dev/pods/team-a-dev-api",
        ))
        .bearer_auth(BY_NAME)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn nodes_granted_by_label_for_get_and_describe() {
    let tenancy = tenancy().await;
    let kubectl = tenancy.kubectl(NODES).await;
    let nodes = kubectl.run(&["get", "nodes"]).await;
    assert_eq!(names(&nodes), ["node-a1"], "{nodes}");
    assert!(
        nodes.lines().next().unwrap().contains("STATUS"),
        "a Table: {nodes}"
    );
    // A node outside the grant is not found (its labels are read first).
    let output = kubectl
        .command(&["get", "node", "node-b1"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("NotFound") && stderr.contains("\"node-b1\" not found"),
        "{stderr}"
    );
    // describe reads the node, its pods across namespaces (filtered to team
    // a's) and its lease.
    let described = kubectl.run(&["describe", "node", "node-a1"]).await;
    assert!(
        described.contains("Name:") && described.contains("node-a1"),
        "{described}"
    );
    assert!(described.contains("team-a-dev-api"), "{described}");
    assert!(!described.contains("team-b-dev-api"), "{described}");
    assert!(!described.contains("default-api"), "{described}");
}

#[tokio::test]
async fn object_queries_apply_the_same_view() {
    let tenancy = tenancy().await;
    let query =
        |token: &'static str| {
            let app = &tenancy.app;
            async move {
                let response: Value = app
                .client
                .post(app.url("/api/kubernetes/services/shop"))
                .bearer_auth(token)
                .json(&json!({"entity": {"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
                                         "metadata": {"name": "shop"}}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
                let mut pods: Vec<String> = response["items"][0]["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|result| result["type"] == "pods")
                    .flat_map(|result| result["resources"].as_array().unwrap().iter())
                    .map(|pod| pod["metadata"]["name"].as_str().unwrap().to_owned())
                    .collect();
                pods.sort();
                pods
            }
        };
    assert_eq!(query(BY_NAME).await, ["team-a-dev-api", "team-a-prod-api"]);
    assert_eq!(query(BY_LABEL).await, ["team-a-dev-api", "team-a-prod-api"]);
    assert_eq!(
        query(ADMIN).await,
        [
            "default-api",
            "team-a-dev-api",
            "team-a-prod-api",
            "team-b-dev-api"
        ]
    );
}

#[tokio::test]
async fn object_queries_show_nothing_of_a_namespace_outside_the_view() {
    let tenancy = tenancy().await;
    for namespace in ["team-b-dev", "default"] {
        let response: Value = tenancy
            .app
            .client
            .post(tenancy.app.url("/api/kubernetes/services/shop"))
            .bearer_auth(BY_NAME)
            .json(
                &json!({"entity": {"metadata": {"name": "shop", "annotations": {
                "backstage.io/kubernetes-namespace": namespace}}}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            !response.to_string().contains(&format!("{namespace}-api")),
            "{namespace}: {response}"
        );
    }
}

#[tokio::test]
async fn continue_tokens_of_filtered_lists_name_nothing() {
    let tenancy = tenancy().await;
    let mut next = String::new();
    let mut tokens = Vec::new();
    for _ in 0..10 {
        let (status, body) = tenancy
            .get(
                BY_NAME,
                &format!("/api/v1/namespaces?limit=1&continue={next}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        match page["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => {
                tokens.push(token.to_owned());
                next = token.to_owned();
            }
            _ => break,
        }
    }
    assert!(tokens.len() >= 3, "paged: {tokens:?}");
    use base64::Engine as _;
    for token in &tokens {
        for engine in [
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
        ] {
            let decoded = engine
                .decode(token.trim_start_matches("kp1."))
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            for hidden in ["default", "kube-system", "team-b"] {
                assert!(!decoded.contains(hidden), "{token} reads {decoded}");
            }
        }
    }
    // A token is good only for whom it was given to.
    let (status, body) = tenancy
        .get(
            BY_LABEL,
            &format!("/api/v1/namespaces?limit=1&continue={}", tokens[0]),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn filtered_watches_end_when_their_client_goes_away() {
    let tenancy = tenancy().await;
    let open_streams = || async {
        let metrics = tenancy.app.metrics_text().await;
        metrics
            .lines()
            .find(|line| line.starts_with("kubeportal_open_streams"))
            .and_then(|line| line.split_whitespace().last())
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or_default()
    };
    let before = open_streams().await;
    // Alice sees no nodes: nothing ever passes the filter.
    let mut watches = Vec::new();
    for _ in 0..5 {
        let response =
            tenancy
                .app
                .client
                .get(tenancy.app.url(
                    "/api/kubernetes/clusters/dev/proxy/api/v1/nodes?watch=1&timeoutSeconds=3600",
                ))
                .bearer_auth(BY_NAME)
                .send()
                .await
                .unwrap();
        assert_eq!(response.status(), 200);
        watches.push(response);
    }
    assert!(open_streams().await >= before + 5.0);
    drop(watches);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if open_streams().await <= before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "abandoned filtered watches stay open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stand-in cluster answering what no honest test double sends, each as
/// the API server could (or a cluster someone controls would):
/// - `GET /api/v1/pods`: a page holding one object outside the grant and a
///   raw continue token naming it; with `continue`, the 410 of an expired
///   page, whose token to go on from names it too (kube-apiserver's
///   `handleCompactedErrorForPaging`); with `watch`, events whose whitespace
///   holds line breaks and one event-shaped value, and a bookmark carrying a
///   hidden object.
/// - `GET /api/v1/nodes/{name}`: `changing` is in pool `a` on its first read
///   and in pool `b` after; `table-a` and `table-b` answer a Table row.
async fn crafted_cluster() -> String {
    use axum::extract::{Path, Query, State};
    use axum::http::{header, HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use base64::Engine as _;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let hidden_key = base64::engine::general_purpose::STANDARD
        .encode(r#"{"v":"meta.k8s.io/v1","rv":-1,"start":"team-b-dev/hidden-0\u0000"}"#);
    let json = |status: StatusCode, body: String| {
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    let pods = move |Query(query): Query<HashMap<String, String>>| async move {
        if query.contains_key("watch") {
            let at = |namespace: &str, name: &str, version: &str| {
                let mut pod = pod(namespace, name);
                pod["metadata"]["resourceVersion"] = json!(version);
                pod
            };
            let a1 = at("team-a-dev", "a1", "11").to_string();
            let hidden = at("team-b-dev", "b-smuggled", "11").to_string();
            let a2 = serde_json::to_string_pretty(&at("team-a-dev", "a2", "12")).unwrap();
            let bookmarked = at("team-b-dev", "bookmarked", "13");
            let body = format!(
                "{{\"type\":\"ADDED\",\"object\":{a1},\"x\":\n{{\"type\":\"ADDED\",\"object\":{hidden}}}\n}}\n\
                 {{\"type\":\"ADDED\",\n\"object\":{a2}}}\n\
                 {}\n",
                json!({"type": "BOOKMARK", "object": bookmarked})
            );
            return json(StatusCode::OK, body);
        }
        if query.contains_key("broken") {
            let list = json!({"kind": "PodList", "apiVersion": "v1",
                "items": [pod("team-b-dev", "hidden-0")]});
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain")],
                list.to_string(),
            )
                .into_response();
        }
        if query.contains_key("internal") {
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "reason": "InternalError", "code": 500,
                "message": "Internal error occurred: unable to transform key \"/registry/pods/team-b-dev/hidden-0\": no key"});
            return json(StatusCode::INTERNAL_SERVER_ERROR, status.to_string());
        }
        if query.contains_key("continue") {
            let status = json!({"kind": "Status", "apiVersion": "v1",
                "metadata": {"continue": hidden_key}, "status": "Failure",
                "message": "The provided continue parameter is too old to display a consistent list result.",
                "reason": "Expired", "code": 410});
            return json(StatusCode::GONE, status.to_string());
        }
        let list = json!({"kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "10", "continue": hidden_key},
            "items": [pod("team-b-dev", "hidden-0")]});
        json(StatusCode::OK, list.to_string())
    };
    let reads = Arc::new(AtomicUsize::new(0));
    let nodes = move |State(reads): State<Arc<AtomicUsize>>,
                      Path(name): Path<String>,
                      headers: HeaderMap| async move {
        let mut hidden = node(&name, "b");
        hidden["spec"] = json!({"secret": "pool-b-only"});
        if let Some(missing) = name.strip_prefix("missing") {
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": format!("nodes \"{name}\" not found"),
                "reason": "NotFound", "details": {"name": name, "kind": "nodes"}, "code": 404});
            let _ = missing;
            return json(StatusCode::NOT_FOUND, status.to_string());
        }
        // kube-apiserver reads the object before it converts it: a list
        // type asked of one object fails only when the object exists.
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .unwrap_or_default();
        if accept.contains("as=PartialObjectMetadataList") {
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "reason": "NotAcceptable", "code": 406,
                "message": "you requested PartialObjectMetadataList, but the requested object is not a list (*core.Node)"});
            return json(StatusCode::NOT_ACCEPTABLE, status.to_string());
        }
        if name == "broken" {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain")],
                hidden.to_string(),
            )
                .into_response();
        }
        if name == "listed" {
            let list = json!({"kind": "NodeList", "apiVersion": "v1",
                "metadata": {"name": "listed", "labels": {"pool": "a"}}, "items": [hidden]});
            return json(StatusCode::OK, list.to_string());
        }
        let pool = match name.as_str() {
            "changing" if reads.fetch_add(1, Ordering::SeqCst) == 0 => "a",
            "changing" | "table-b" => "b",
            _ => "a",
        };
        let mut node = node(&name, pool);
        if pool == "b" {
            node["spec"] = json!({"secret": "pool-b-only"});
        }
        let table = headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("as=Table"));
        let body = if table {
            json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
                "columnDefinitions": [{"name": "Name", "type": "string"}],
                "rows": [{"cells": [name], "object": node}]})
        } else {
            node
        };
        json(StatusCode::OK, body.to_string())
    };
    let router = axum::Router::new()
        .route("/api/v1/pods", axum::routing::get(pods))
        .route("/api/v1/nodes/{name}", axum::routing::get(nodes))
        .with_state(reads);
    kubeportal_tests::serve_stand_in(router).await
}

async fn with_crafted_cluster() -> Tenancy {
    let tenancy = tenancy().await;
    let url = crafted_cluster().await;
    register(
        &tenancy.app,
        json!({"name": "crafted", "url": url, "authProvider": "serviceAccount",
               "serviceAccountToken": "crafted-token"}),
    )
    .await;
    tenancy
}

impl Tenancy {
    async fn get_crafted(&self, token: &str, path: &str, accept: Option<&str>) -> (u16, String) {
        self.get_on("crafted", token, path, accept).await
    }
}

/// Whether `text`, or a base64 token in it, names the hidden namespace.
fn names_team_b(text: &str) -> bool {
    use base64::Engine as _;
    text.contains("team-b")
        || text
            .split(|c: char| !(c.is_ascii_alphanumeric() || "+/=-_.".contains(c)))
            .filter(|word| word.len() >= 16)
            .any(|word| {
                [
                    &base64::engine::general_purpose::STANDARD,
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                ]
                .iter()
                .filter_map(|engine| engine.decode(word.trim_start_matches("kp1.")).ok())
                .any(|bytes| String::from_utf8_lossy(&bytes).contains("team-b"))
            })
}

#[tokio::test]
async fn an_expired_page_of_a_filtered_list_names_nothing_outside_the_grant() {
    let tenancy = with_crafted_cluster().await;
    let (status, body) = tenancy
        .get_crafted(BY_NAME, "/api/v1/pods?limit=1", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!names_team_b(&body), "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"], json!([]));
    let token = page["metadata"]["continue"].as_str().unwrap().to_owned();
    // The page has expired: the 410's token to go on from is sealed too.
    let (status, body) = tenancy
        .get_crafted(
            BY_NAME,
            &format!("/api/v1/pods?limit=1&continue={token}"),
            None,
        )
        .await;
    assert_eq!(status, 410, "{body}");
    assert!(!names_team_b(&body), "{body}");
    let expired: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(expired["reason"], "Expired");
    let onward = expired["metadata"]["continue"].as_str().unwrap();
    assert!(onward.starts_with("kp1."), "{body}");
    // And it is good for going on with, by its holder only.
    let (status, body) = tenancy
        .get_crafted(
            BY_NAME,
            &format!("/api/v1/pods?limit=1&continue={onward}"),
            None,
        )
        .await;
    assert_eq!(status, 410, "{body}");
    let (status, body) = tenancy
        .get_crafted(
            NODES,
            &format!("/api/v1/pods?limit=1&continue={onward}"),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn a_filtered_get_sends_the_very_answer_it_judged() {
    let tenancy = with_crafted_cluster().await;
    // Judged in pool a and sent as judged, whatever a second read would say.
    let (status, body) = tenancy
        .get_crafted(NODES, "/api/v1/nodes/changing", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let node: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(node["metadata"]["labels"]["pool"], "a", "{body}");
    assert!(!body.contains("pool-b-only"), "{body}");
    // Now in pool b: not there.
    let (status, body) = tenancy
        .get_crafted(NODES, "/api/v1/nodes/changing", None)
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("pool-b-only"), "{body}");
    // A Table of the one object, judged by its row.
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    let (status, body) = tenancy
        .get_crafted(NODES, "/api/v1/nodes/table-a", Some(table))
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["rows"][0]["cells"], json!(["table-a"]));
    let (status, body) = tenancy
        .get_crafted(
            NODES,
            "/api/v1/nodes/table-a?includeObject=None",
            Some(table),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["rows"][0].get("object"), None, "{body}");
    let (status, body) = tenancy
        .get_crafted(NODES, "/api/v1/nodes/table-b", Some(table))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("pool-b-only"), "{body}");
}

#[tokio::test]
async fn a_filtered_watch_sends_each_judged_event_as_one_line() {
    let tenancy = with_crafted_cluster().await;
    let (status, body) = tenancy
        .get_crafted(BY_NAME, "/api/v1/pods?watch=1", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let events: Vec<Value> = body
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}")))
        .collect();
    let sent: Vec<(&str, &str)> = events
        .iter()
        .map(|event| {
            (
                event["type"].as_str().unwrap(),
                event["object"]["metadata"]["name"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(sent, [("ADDED", "a1"), ("ADDED", "a2"), ("BOOKMARK", "-")]);
    assert_eq!(
        events[2]["object"]["metadata"],
        json!({"resourceVersion": "13"})
    );
    assert!(!names_team_b(&body), "{body}");
    // The fleet view, which cuts what it reads at line breaks, alike.
    let mut response = tenancy
        .app
        .client
        .get(
            tenancy
                .app
                .url("/api/kubernetes/fleet/crafted/proxy/api/v1/pods?watch=1"),
        )
        .bearer_auth(BY_NAME)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut fleet = String::new();
    // The cluster serves no namespaces to read labels from: the view waits
    // for them (up to 5 s) before it judges.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !fleet.contains("\"a2\"") {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => fleet.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    assert!(
        fleet.contains("\"a1\"") && fleet.contains("\"a2\""),
        "{fleet}"
    );
    assert!(!names_team_b(&fleet), "{fleet}");
}

#[tokio::test]
async fn a_filtered_read_tells_nothing_by_its_errors() {
    let tenancy = with_crafted_cluster().await;
    // Hidden and missing answer alike.
    let hidden = tenancy
        .app
        .client
        .get(
            tenancy
                .app
                .url("/api/kubernetes/clusters/crafted/proxy/api/v1/nodes/table-b"),
        )
        .bearer_auth(NODES)
        .send()
        .await
        .unwrap();
    let missing = tenancy
        .app
        .client
        .get(
            tenancy
                .app
                .url("/api/kubernetes/clusters/crafted/proxy/api/v1/nodes/missing-b"),
        )
        .bearer_auth(NODES)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404);
    assert_eq!(missing.status(), 404);
    assert_eq!(
        hidden.headers().get("content-type"),
        missing.headers().get("content-type")
    );
    let hidden = hidden.text().await.unwrap();
    let missing = missing.text().await.unwrap();
    assert_eq!(hidden.replace("table-b", "missing-b"), missing);
    // An error answer holding objects, as text: only a Status of its code.
    let (status, body) = tenancy
        .get_crafted(BY_NAME, "/api/v1/pods?broken=1", None)
        .await;
    assert_eq!(status, 500, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["kind"], "Status");
    assert!(!names_team_b(&body), "{body}");
    let (status, body) = tenancy
        .get_crafted(NODES, "/api/v1/nodes/broken", None)
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("pool-b-only"), "{body}");
    // An error the cluster raises only for an object that exists.
    let as_list = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io";
    let (status, body) = tenancy
        .get_crafted(NODES, "/api/v1/nodes/table-b", Some(as_list))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body.replace("table-b", "missing-b"), missing);
    // An internal error names the storage key of an object it could not read.
    let (status, body) = tenancy
        .get_crafted(BY_NAME, "/api/v1/pods?internal=1", None)
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(!names_team_b(&body), "{body}");
    // A get answered with a list is no object to judge.
    let (status, body) = tenancy
        .get_crafted(NODES, "/api/v1/nodes/listed", None)
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("pool-b-only"), "{body}");
}
