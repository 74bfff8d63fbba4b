//! The fleet view through the SDK: against a live kubeportal spawned
//! in-process with three test-double clusters (`prod-a`, `prod-b`, `dev`),
//! and the watch's reconnect and 410 handling against a scripted stand-in.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::Router;
use futures::{Stream, StreamExt};
use kubeportal_sdk::{
    Client, Error, FleetClusterState, FleetClusterStatus, FleetListOptions, FleetWatchEvent,
    FleetWatchOptions, WatchEventType,
};
use kubeportal_tests::{
    double_cluster, register, serve_stand_in, spawn_app, start_double, ConfigSource, KubeDouble,
    TestApp, TestDb,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const CONFIG: &str = r#"
auth:
  guest: true
permissions:
  rules:
    - { permission: "*", subjects: ["*"], decision: allow }
"#;

const NAMESPACE: &str = "shop";

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NAMESPACE},
           "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
           "status": {"phase": "Running"}})
}

/// `prod-a`, `prod-b` and `dev`, each its own double with one pod named after it.
struct Fleet {
    app: TestApp,
    doubles: Vec<(&'static str, KubeDouble)>,
    _db: TestDb,
}

impl Fleet {
    async fn start() -> Fleet {
        let db = TestDb::sqlite();
        let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
        let mut doubles = Vec::new();
        for name in ["prod-a", "prod-b", "dev"] {
            let double = start_double().await;
            double.put_object("v1", "namespaces", json!({"metadata": {"name": NAMESPACE}}));
            double.put_object("v1", "pods", pod(&format!("{name}-api")));
            register(&app, double_cluster(name, &double)).await;
            doubles.push((name, double));
        }
        Fleet {
            app,
            doubles,
            _db: db,
        }
    }

    fn client(&self) -> Client {
        Client::new(&self.app.url).expect("client")
    }

    fn double(&self, cluster: &str) -> &KubeDouble {
        &self
            .doubles
            .iter()
            .find(|(name, _)| *name == cluster)
            .expect("a double")
            .1
    }
}

/// The next item of `stream` within ten seconds.
async fn next_within<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an item within 10 s")
        .expect("the stream has not ended")
}

fn described(event: &FleetWatchEvent<Value>) -> String {
    format!(
        "{}/{}",
        event.cluster.as_deref().unwrap_or("?"),
        event.object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

#[tokio::test]
async fn lists_the_matching_clusters_pods_with_their_cluster() {
    let fleet = Fleet::start().await;
    let list = fleet
        .client()
        .fleet_list::<Value>("prod-*", "/api/v1/pods", &FleetListOptions::default())
        .await
        .expect("a fleet list");
    assert_eq!(list.kind, "PodList");
    let mut items: Vec<_> = list
        .items
        .iter()
        .map(|item| {
            (
                item.cluster.as_str(),
                item.object["metadata"]["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    // The clusters' items interleave as they arrive.
    items.sort();
    assert_eq!(items, [("prod-a", "prod-a-api"), ("prod-b", "prod-b-api")]);
    let success = |name: &str| FleetClusterStatus {
        name: name.into(),
        status: FleetClusterState::Success,
        code: None,
        message: None,
    };
    assert_eq!(list.clusters, [success("prod-a"), success("prod-b")]);
    assert!(!list.resource_version.is_empty());
    assert!(list.continue_token.is_none());

    // Typed items; the glob is case-insensitive and `*` takes every cluster.
    #[derive(serde::Deserialize)]
    struct Pod {
        metadata: Metadata,
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        name: String,
    }
    let all = fleet
        .client()
        .fleet_list::<Pod>("*", "api/v1/pods", &FleetListOptions::default())
        .await
        .expect("a fleet list");
    let names: Vec<_> = all
        .items
        .iter()
        .map(|item| (item.cluster.as_str(), item.object.metadata.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("dev", "dev-api"),
            ("prod-a", "prod-a-api"),
            ("prod-b", "prod-b-api")
        ]
    );
    let upper = fleet
        .client()
        .fleet_list::<Value>("PROD-?", "/api/v1/pods", &FleetListOptions::default())
        .await
        .expect("a fleet list");
    assert_eq!(upper.items.len(), 2);
}

#[tokio::test]
async fn pages_with_continue_tokens() {
    let fleet = Fleet::start().await;
    fleet
        .double("dev")
        .put_object("v1", "pods", pod("dev-extra"));
    let first_page = FleetListOptions {
        limit: Some(1),
        ..FleetListOptions::default()
    };
    let first = fleet
        .client()
        .fleet_list::<Value>("dev", "/api/v1/pods", &first_page)
        .await
        .expect("a page");
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.items[0].object["metadata"]["name"], "dev-api");
    let next_page = FleetListOptions {
        limit: Some(1),
        continue_token: Some(first.continue_token.expect("a continue token")),
        ..FleetListOptions::default()
    };
    let second = fleet
        .client()
        .fleet_list::<Value>("dev", "/api/v1/pods", &next_page)
        .await
        .expect("a page");
    assert_eq!(second.items[0].object["metadata"]["name"], "dev-extra");
    assert!(second.continue_token.is_none());
}

#[tokio::test]
async fn maps_kubeportals_own_errors_to_portal_errors() {
    let fleet = Fleet::start().await;
    let bad_glob = fleet
        .client()
        .fleet_list::<Value>("prod/*", "/api/v1/pods", &FleetListOptions::default())
        .await
        .expect_err("a bad glob");
    assert_eq!(bad_glob.portal_name(), Some("InputError"), "{bad_glob}");
    assert_eq!(bad_glob.status(), Some(StatusCode::BAD_REQUEST));

    let not_a_list = fleet
        .client()
        .fleet_list::<Value>(
            "prod-*",
            "/api/v1/namespaces/shop/pods/prod-a-api",
            &FleetListOptions::default(),
        )
        .await
        .expect_err("not a list");
    assert_eq!(
        not_a_list.portal_name(),
        Some("MethodNotAllowedError"),
        "{not_a_list}"
    );

    let bad_version = FleetWatchOptions {
        resource_version: Some("not-a-composite".into()),
        ..FleetWatchOptions::default()
    };
    let error = fleet
        .client()
        .fleet_watch::<Value>("prod-*", "/api/v1/pods", &bad_version)
        .await
        .err()
        .expect("a bad resourceVersion");
    assert_eq!(error.portal_name(), Some("InputError"), "{error}");
}

#[tokio::test]
async fn watches_new_pods_with_their_cluster_and_resumes() {
    let fleet = Fleet::start().await;
    let mut events = fleet
        .client()
        .fleet_watch::<Value>("prod-*", "/api/v1/pods", &FleetWatchOptions::default())
        .await
        .expect("a fleet watch");
    // A watch from "now" starts with an ADDED event per existing object.
    let mut initial = vec![
        described(&next_within(&mut events).await.expect("event")),
        described(&next_within(&mut events).await.expect("event")),
    ];
    initial.sort();
    assert_eq!(initial, ["prod-a/prod-a-api", "prod-b/prod-b-api"]);

    fleet
        .double("dev")
        .put_object("v1", "pods", pod("dev-later"));
    fleet
        .double("prod-b")
        .put_object("v1", "pods", pod("prod-b-later"));
    let added = next_within(&mut events).await.expect("event");
    assert_eq!(added.event_type, WatchEventType::Added);
    assert_eq!(added.cluster.as_deref(), Some("prod-b"));
    assert_eq!(added.object["metadata"]["name"], "prod-b-later");
    assert!(!added.resource_version.is_empty());
    drop(events);

    // Created while nobody watches: a watch resumed from the last event's
    // position sees it, and nothing from before again.
    fleet
        .double("prod-a")
        .put_object("v1", "pods", pod("prod-a-later"));
    let resume = FleetWatchOptions {
        resource_version: Some(added.resource_version.clone()),
        ..FleetWatchOptions::default()
    };
    let mut resumed = fleet
        .client()
        .fleet_watch::<Value>("prod-*", "/api/v1/pods", &resume)
        .await
        .expect("a resumed watch");
    let first = next_within(&mut resumed).await.expect("event");
    assert_eq!(described(&first), "prod-a/prod-a-later");
    assert_eq!(first.event_type, WatchEventType::Added);
}

#[tokio::test]
async fn reconnects_when_the_server_ends_a_connection() {
    let fleet = Fleet::start().await;
    let options = FleetWatchOptions {
        timeout_seconds: Some(1),
        min_retry_delay: Duration::from_millis(50),
        ..FleetWatchOptions::default()
    };
    let mut events = fleet
        .client()
        .fleet_watch::<Value>("prod-*", "/api/v1/pods", &options)
        .await
        .expect("a fleet watch");
    let mut seen = vec![
        described(&next_within(&mut events).await.expect("event")),
        described(&next_within(&mut events).await.expect("event")),
    ];
    // Past the first connection's end: the next event comes on another.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fleet
        .double("prod-a")
        .put_object("v1", "pods", pod("prod-a-reconnected"));
    loop {
        let event = next_within(&mut events).await.expect("event");
        seen.push(described(&event));
        if event.object["metadata"]["name"] == "prod-a-reconnected" {
            break;
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "replayed on reconnect: {seen:?}");
}

/// A stand-in fleet route that answers each request with the next scripted
/// body, recording each request's query.
async fn scripted(bodies: Vec<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
    #[derive(Clone)]
    struct Script {
        bodies: Arc<Mutex<Vec<&'static str>>>,
        queries: Arc<Mutex<Vec<String>>>,
    }
    async fn answer(State(script): State<Script>, RawQuery(query): RawQuery) -> String {
        script
            .queries
            .lock()
            .unwrap()
            .push(query.unwrap_or_default());
        let mut bodies = script.bodies.lock().unwrap();
        if bodies.is_empty() {
            String::new()
        } else {
            bodies.remove(0).to_owned()
        }
    }
    let script = Script {
        bodies: Arc::new(Mutex::new(bodies)),
        queries: Arc::new(Mutex::new(Vec::new())),
    };
    let queries = script.queries.clone();
    let router = Router::new()
        .route("/api/kubernetes/fleet/{glob}/proxy/{*path}", get(answer))
        .with_state(script);
    (serve_stand_in(router).await, queries)
}

#[tokio::test]
async fn resumes_from_the_last_position_and_ends_with_a_410() {
    let (url, queries) = scripted(vec![
        concat!(
            r#"{"type":"ADDED","object":{"metadata":{"name":"one","resourceVersion":"rv-1","annotations":{"kubeportal.io/cluster":"prod-a"}}}}"#,
            "\n"
        ),
        "",
        concat!(
            r#"{"type":"DELETED","object":{"metadata":{"name":"one","resourceVersion":"rv-2","annotations":{"kubeportal.io/cluster":"prod-a"}}}}"#,
            "\n",
            r#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","code":410,"reason":"Expired","message":"cluster prod-b: too old; list again"}}"#,
            "\n",
            r#"{"type":"ADDED","object":{"metadata":{"name":"never","resourceVersion":"rv-3"}}}"#,
            "\n"
        ),
    ])
    .await;
    let options = FleetWatchOptions {
        label_selector: Some("app=shop".into()),
        min_retry_delay: Duration::from_millis(1),
        ..FleetWatchOptions::default()
    };
    let mut events = Client::new(&url)
        .expect("client")
        .fleet_watch::<Value>("prod-*", "/api/v1/pods", &options)
        .await
        .expect("a fleet watch");
    let mut seen = Vec::new();
    let failure = loop {
        match next_within(&mut events).await {
            Ok(event) => seen.push((event.event_type, described(&event), event.resource_version)),
            Err(error) => break error,
        }
    };
    assert_eq!(
        seen,
        [
            (WatchEventType::Added, "prod-a/one".into(), "rv-1".into()),
            (WatchEventType::Deleted, "prod-a/one".into(), "rv-2".into()),
        ]
    );
    match failure {
        Error::Cluster { status, reason, .. } => {
            assert_eq!(status, StatusCode::GONE);
            assert_eq!(reason.as_deref(), Some("Expired"));
        }
        other => panic!("expected a 410, got {other:?}"),
    }
    assert!(events.next().await.is_none(), "the stream ends after a 410");

    let queries = queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 3, "{queries:?}");
    assert!(!queries[0].contains("resourceVersion"), "{queries:?}");
    assert!(queries[1].contains("resourceVersion=rv-1"), "{queries:?}");
    assert!(queries[2].contains("resourceVersion=rv-1"), "{queries:?}");
    for query in &queries {
        assert!(query.contains("watch=true"), "{query}");
        assert!(query.contains("labelSelector=app%3Dshop"), "{query}");
    }
}
