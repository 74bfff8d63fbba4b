//! The SDK against a live kubeportal spawned in-process, in front of a
//! Kubernetes API test double.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kubeportal_sdk::{update_from, Client, ClusterInput, Error, LogOptions, WatchEventType};
use kubeportal_tests::{
    double_cluster, register, spawn_app, start_double, ConfigSource, KubeDouble, TestApp, TestDb,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "sdk-admin-token-0123456789";
const VIEWER_TOKEN: &str = "sdk-viewer-token-0123456789";

/// Admins manage clusters; the viewer may only read through the proxy;
/// everyone else, the guest included, may read and proxy.
const POLICY: &str = r#"
auth:
  guest: true
  staticTokens:
    - { token: sdk-admin-token-0123456789, subject: "user:default/admin", groups: ["group:default/admins"] }
    - { token: sdk-viewer-token-0123456789, subject: "user:default/viewer" }
permissions:
  rules:
    - { permission: kubernetes.clusters.manage, subjects: ["group:default/admins"], decision: allow }
    - { permission: kubernetes.clusters.manage, subjects: ["*"], decision: deny }
    - { permission: kubernetes.proxy, subjects: ["user:default/viewer"], actions: [read], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["user:default/viewer"], decision: deny }
    - { permission: "*", subjects: ["*"], decision: allow }
"#;

const NAMESPACE: &str = "shop";
const POD: &str = "shop-api-1";

/// A running kubeportal with the test double registered as `dev`, seeded
/// with a namespace, a labelled pod and deployment, and a log line.
struct Fixture {
    app: TestApp,
    double: KubeDouble,
    _db: TestDb,
}

impl Fixture {
    async fn start() -> Fixture {
        Self::start_with(POLICY).await
    }

    async fn start_with(yaml: &str) -> Fixture {
        let db = TestDb::sqlite();
        let app = spawn_app(&db, ConfigSource::Yaml(yaml)).await;
        let double = start_double().await;
        register(&app, double_cluster("dev", &double)).await;
        let labels = json!({"app": "shop-api", "backstage.io/kubernetes-id": "shop-api"});
        double.put_object("v1", "namespaces", json!({"metadata": {"name": NAMESPACE}}));
        double.put_object(
            "v1",
            "pods",
            json!({
                "metadata": {"name": POD, "namespace": NAMESPACE, "labels": labels},
                "spec": {"containers": [{"name": "api", "image": "example/shop-api:1"}]},
                "status": {"phase": "Running"}
            }),
        );
        double.put_object(
            "apps/v1",
            "deployments",
            json!({
                "metadata": {"name": "shop-api", "namespace": NAMESPACE, "labels": labels},
                "spec": {"replicas": 1},
                "status": {"replicas": 1, "readyReplicas": 1}
            }),
        );
        double.append_log(NAMESPACE, POD, "started");
        Fixture {
            app,
            double,
            _db: db,
        }
    }

    fn guest(&self) -> Client {
        Client::new(&self.app.url).expect("client")
    }

    fn admin(&self) -> Client {
        self.guest().with_token(ADMIN_TOKEN)
    }

    fn viewer(&self) -> Client {
        self.guest().with_token(VIEWER_TOKEN)
    }

    fn cluster_input(&self, name: &str) -> ClusterInput {
        serde_json::from_value(double_cluster(name, &self.double)).expect("cluster input")
    }
}

/// The next item of `stream` within five seconds.
async fn next_within<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an item within 5 s")
        .expect("the stream has not ended")
}

fn assert_portal_error(error: Error, name: &str, status: StatusCode) {
    match &error {
        Error::Portal {
            name: actual,
            status: actual_status,
            ..
        } => {
            assert_eq!(actual, name, "{error}");
            assert_eq!(*actual_status, status, "{error}");
        }
        other => panic!("expected {name}, got {other:?}"),
    }
}

#[tokio::test]
async fn lists_clusters_in_backstages_shape() {
    let fixture = Fixture::start().await;
    let clusters = fixture.guest().clusters().await.expect("clusters");
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].name, "dev");
    assert_eq!(clusters[0].auth_provider.as_str(), "serviceAccount");
}

#[tokio::test]
async fn creates_reads_updates_and_deletes_a_cluster() {
    let fixture = Fixture::start().await;
    let admin = fixture.admin();

    let created = admin
        .create_cluster(&fixture.cluster_input("staging"))
        .await
        .expect("created");
    assert_eq!(created.name, "staging");
    assert!(created.has_service_account_token);

    let read = admin.cluster("staging").await.expect("read");
    assert_eq!(read, created);

    let mut update = update_from(&read);
    update.title = Some("Staging".into());
    let updated = admin
        .update_cluster("staging", read.version, &update)
        .await
        .expect("updated");
    assert_eq!(updated.title.as_deref(), Some("Staging"));
    assert!(updated.version > read.version);
    assert!(
        updated.has_service_account_token,
        "an absent secret is kept"
    );

    let stale = admin
        .update_cluster("staging", read.version, &update_from(&read))
        .await
        .expect_err("stale version");
    assert_portal_error(stale, "ConflictError", StatusCode::CONFLICT);

    let duplicate = admin
        .create_cluster(&fixture.cluster_input("STAGING"))
        .await
        .expect_err("duplicate name");
    assert_portal_error(duplicate, "ConflictError", StatusCode::CONFLICT);

    admin
        .delete_cluster("staging", Some(updated.version))
        .await
        .expect("deleted");
    let gone = admin.cluster("staging").await.expect_err("gone");
    assert_portal_error(gone, "NotFoundError", StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pages_through_clusters() {
    let fixture = Fixture::start().await;
    let admin = fixture.admin();
    for name in ["alpha", "beta"] {
        admin
            .create_cluster(&fixture.cluster_input(name))
            .await
            .expect("created");
    }
    let first = admin.clusters_page(Some(2), None).await.expect("page");
    let names: Vec<_> = first.items.iter().map(|cluster| &cluster.name).collect();
    assert_eq!(names, ["alpha", "beta"]);
    let cursor = first.next_cursor.expect("a next page");
    let second = admin
        .clusters_page(Some(2), Some(&cursor))
        .await
        .expect("page");
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].name, "dev");
    assert!(second.next_cursor.is_none());

    let all: Vec<_> = admin
        .clusters()
        .await
        .expect("all")
        .into_iter()
        .map(|cluster| cluster.name)
        .collect();
    assert_eq!(all, ["alpha", "beta", "dev"]);
}

#[tokio::test]
async fn maps_portal_errors() {
    let fixture = Fixture::start().await;

    let stranger = fixture.guest().with_token("not-a-valid-token-at-all");
    let unauthenticated = stranger.clusters().await.expect_err("bad token");
    assert_portal_error(
        unauthenticated,
        "AuthenticationError",
        StatusCode::UNAUTHORIZED,
    );

    let denied = fixture.viewer().cluster("dev").await.expect_err("denied");
    assert_portal_error(denied, "NotAllowedError", StatusCode::FORBIDDEN);
    let write = fixture
        .viewer()
        .proxy_with(
            Method::POST,
            "dev",
            &format!("/api/v1/namespaces/{NAMESPACE}/configmaps"),
        )
        .json(&json!({"metadata": {"name": "denied"}}))
        .send()
        .await
        .expect_err("a write denied by policy");
    assert_portal_error(write, "NotAllowedError", StatusCode::FORBIDDEN);

    let unknown = fixture
        .guest()
        .proxy("nowhere", "/api/v1/namespaces")
        .send()
        .await
        .expect_err("unknown cluster");
    assert_portal_error(unknown, "NotFoundError", StatusCode::NOT_FOUND);

    let invalid = fixture
        .admin()
        .create_cluster(
            &serde_json::from_value(
                json!({"name": "bad", "url": "ftp://x", "authProvider": "serviceAccount"}),
            )
            .expect("input"),
        )
        .await
        .expect_err("invalid url");
    assert!(invalid.to_string().contains("url"), "{invalid}");
    assert_portal_error(invalid, "InputError", StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn proxies_to_the_cluster_and_returns_its_answers() {
    let fixture = Fixture::start().await;
    let guest = fixture.guest();

    let namespaces: Value = guest
        .proxy("dev", "/api/v1/namespaces")
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(namespaces["kind"], "NamespaceList");
    assert!(namespaces["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|item| item["metadata"]["name"] == NAMESPACE));

    // The cluster's own error is an answer, not an Error.
    let missing = guest
        .proxy("dev", "/api/v1/namespaces/shop/pods/missing")
        .send()
        .await
        .expect("the cluster's answer");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let status: Value = missing.json().await.expect("json");
    assert_eq!(status["reason"], "NotFound");

    // A cluster token replaces the server-side credential.
    let wrong = guest
        .proxy("dev", "/api/v1/namespaces")
        .cluster_token("wrong-cluster-token")
        .send()
        .await
        .expect("the cluster's answer");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = guest
        .proxy("dev", "/api/v1/namespaces")
        .cluster_token("double-token")
        .send()
        .await
        .expect("the cluster's answer");
    assert_eq!(right.status(), StatusCode::OK);

    let created = fixture
        .admin()
        .proxy_with(
            Method::POST,
            "dev",
            &format!("/api/v1/namespaces/{NAMESPACE}/configmaps"),
        )
        .json(&json!({"metadata": {"name": "written"}, "data": {"colour": "teal"}}))
        .send()
        .await
        .expect("created");
    assert_eq!(created.status(), StatusCode::CREATED);
    let read: Value = guest
        .proxy(
            "dev",
            &format!("/api/v1/namespaces/{NAMESPACE}/configmaps/written"),
        )
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(read["data"]["colour"], "teal");
}

#[tokio::test]
async fn follows_a_pod_log_as_it_is_written() {
    let fixture = Fixture::start().await;
    let follow = LogOptions {
        follow: true,
        ..LogOptions::default()
    };
    let mut lines = fixture
        .guest()
        .pod_logs("dev", NAMESPACE, POD, &follow)
        .await
        .expect("log stream");
    assert_eq!(next_within(&mut lines).await.expect("line"), "started");
    // Written after the stream opened: it must arrive while the stream stays open.
    fixture
        .double
        .append_log(NAMESPACE, POD, "written after the stream opened");
    assert_eq!(
        next_within(&mut lines).await.expect("line"),
        "written after the stream opened"
    );

    let missing = fixture
        .guest()
        .pod_logs("dev", NAMESPACE, "no-such-pod", &LogOptions::default())
        .await
        .err()
        .expect("an unknown pod");
    match missing {
        Error::Cluster { status, reason, .. } => {
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(reason.as_deref(), Some("NotFound"));
        }
        other => panic!("expected the cluster's error, got {other:?}"),
    }
}

#[tokio::test]
async fn watches_objects_created_after_the_watch_started() {
    let fixture = Fixture::start().await;
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    fixture.double.put_object(
        "v1",
        "configmaps",
        json!({"metadata": {"name": "before", "namespace": NAMESPACE}}),
    );
    let mut events = fixture
        .guest()
        .watch::<Value>("dev", &path)
        .await
        .expect("watch");
    // A watch from "now" starts with the existing objects.
    let initial = next_within(&mut events).await.expect("event");
    assert_eq!(initial.event_type, WatchEventType::Added);
    assert_eq!(initial.object["metadata"]["name"], "before");

    fixture.double.put_object(
        "v1",
        "configmaps",
        json!({"metadata": {"name": "after", "namespace": NAMESPACE}, "data": {"step": "one"}}),
    );
    let added = next_within(&mut events).await.expect("event");
    assert_eq!(added.event_type, WatchEventType::Added);
    assert_eq!(added.object["metadata"]["name"], "after");
    assert_eq!(added.object["data"]["step"], "one");
}

#[tokio::test]
async fn serves_a_kubeconfig_for_the_path_form() {
    let fixture = Fixture::start().await;
    let kubeconfig = fixture.guest().kubeconfig("dev").await.expect("kubeconfig");
    assert!(
        kubeconfig.contains(&format!(
            "{}/api/kubernetes/clusters/dev/proxy",
            fixture.app.url
        )),
        "{kubeconfig}"
    );
}
