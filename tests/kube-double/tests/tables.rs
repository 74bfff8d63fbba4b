//! Server-side printing over HTTPS: Tables, PartialObjectMetadata(List) and the
//! 406 for representations the double cannot produce, on list, get and watch.

mod common;

use common::{client, pod, start, LineReader};
use kube_double::KubeDouble;
use reqwest::StatusCode;
use serde_json::{json, Value};

const TABLE_V1: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
const KUBECTL_GET: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

async fn get(double: &KubeDouble, path: &str, accept: &str) -> (StatusCode, Value) {
    let response = client(double)
        .get(format!("{}{path}", double.url()))
        .header("Accept", accept)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

fn seed(double: &KubeDouble) {
    let mut ready = pod("shop", "api-1", json!({"app": "api"}));
    ready["status"]["containerStatuses"] =
        json!([{"name": "app", "ready": true, "restartCount": 3, "state": {"running": {}}}]);
    double.put_object("v1", "pods", ready);
    double.put_object("v1", "pods", pod("shop", "api-2", json!({"app": "api"})));
}

fn column_names(table: &Value) -> Vec<&str> {
    table["columnDefinitions"]
        .as_array()
        .expect("column definitions")
        .iter()
        .map(|column| column["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn pod_lists_become_tables_with_the_pod_printers_columns() {
    let double = start().await;
    seed(&double);
    let (status, table) = get(&double, "/api/v1/namespaces/shop/pods", KUBECTL_GET).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    assert!(table["metadata"]["resourceVersion"].is_string());
    assert_eq!(
        column_names(&table),
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(table["columnDefinitions"][0]["format"], "name");
    assert_eq!(table["columnDefinitions"][5]["priority"], 1);
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let cells = &rows[0]["cells"];
    assert_eq!(cells[0], "api-1");
    assert_eq!(cells[1], "1/1");
    assert_eq!(cells[2], "Running");
    assert_eq!(cells[3], "3");
    assert!(cells[4].as_str().unwrap().ends_with('s'), "{cells}");
    assert_eq!(rows[1]["cells"][1], "0/1");
    // includeObject defaults to Metadata.
    assert_eq!(rows[0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(rows[0]["object"]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(rows[0]["object"]["metadata"]["labels"]["app"], "api");
    assert!(rows[0]["object"].get("spec").is_none());
}

#[tokio::test]
async fn include_object_chooses_what_each_row_carries() {
    let double = start().await;
    seed(&double);
    let path = "/api/v1/namespaces/shop/pods";
    let (_, none) = get(&double, &format!("{path}?includeObject=None"), TABLE_V1).await;
    assert!(none["rows"][0]["object"].is_null(), "{none}");
    let (_, metadata) = get(&double, &format!("{path}?includeObject=Metadata"), TABLE_V1).await;
    assert_eq!(
        metadata["rows"][0]["object"]["kind"],
        "PartialObjectMetadata"
    );
    let (_, object) = get(&double, &format!("{path}?includeObject=Object"), TABLE_V1).await;
    assert_eq!(object["rows"][0]["object"]["kind"], "Pod");
    assert_eq!(
        object["rows"][0]["object"]["spec"]["containers"][0]["name"],
        "app"
    );
    let (status, error) = get(
        &double,
        &format!("{path}?includeObject=Everything"),
        TABLE_V1,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["reason"], "BadRequest");
}

#[tokio::test]
async fn one_object_is_a_table_with_one_row() {
    let double = start().await;
    seed(&double);
    let (status, table) = get(&double, "/api/v1/namespaces/shop/pods/api-1", KUBECTL_GET).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"].as_array().unwrap().len(), 1);
    assert_eq!(table["rows"][0]["cells"][0], "api-1");
    assert_eq!(
        table["metadata"]["resourceVersion"],
        table["rows"][0]["object"]["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn v1beta1_tables_are_answered_in_v1beta1() {
    let double = start().await;
    seed(&double);
    let (_, table) = get(
        &double,
        "/api/v1/namespaces/shop/pods",
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io",
    )
    .await;
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1beta1");
    assert_eq!(
        table["rows"][0]["object"]["apiVersion"],
        "meta.k8s.io/v1beta1"
    );
}

#[tokio::test]
async fn namespaces_nodes_and_other_kinds_have_their_own_columns() {
    let double = start().await;
    double.put_object(
        "v1",
        "namespaces",
        json!({"metadata": {"name": "leaving"}, "status": {"phase": "Terminating"}}),
    );
    let (_, namespaces) = get(&double, "/api/v1/namespaces", TABLE_V1).await;
    assert_eq!(column_names(&namespaces), ["Name", "Status", "Age"]);
    let statuses: Vec<(&str, &str)> = namespaces["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["cells"][0].as_str().unwrap(),
                row["cells"][1].as_str().unwrap(),
            )
        })
        .collect();
    assert!(statuses.contains(&("default", "Active")), "{statuses:?}");
    assert!(
        statuses.contains(&("leaving", "Terminating")),
        "{statuses:?}"
    );

    double.put_object(
        "v1",
        "nodes",
        json!({
            "metadata": {"name": "node-a", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.32.0"}},
        }),
    );
    let (_, nodes) = get(&double, "/api/v1/nodes", TABLE_V1).await;
    assert_eq!(
        &column_names(&nodes)[..5],
        ["Name", "Status", "Roles", "Age", "Version"]
    );
    let cells = &nodes["rows"][0]["cells"];
    assert_eq!(
        (&cells[1], &cells[2], &cells[4]),
        (&json!("Ready"), &json!("control-plane"), &json!("v1.32.0"))
    );

    double.put_object(
        "v1",
        "configmaps",
        json!({"metadata": {"name": "settings", "namespace": "default"}}),
    );
    let (_, configmaps) = get(&double, "/api/v1/namespaces/default/configmaps", TABLE_V1).await;
    assert_eq!(column_names(&configmaps), ["Name", "Created At"]);
    assert_eq!(configmaps["columnDefinitions"][1]["type"], "date");
    let created = configmaps["rows"][0]["cells"][1].as_str().unwrap();
    assert_eq!(
        created,
        configmaps["rows"][0]["object"]["metadata"]["creationTimestamp"]
    );
    // The default convertor leaves an empty list's rows null.
    let (_, empty) = get(
        &double,
        "/api/v1/namespaces/kube-system/configmaps",
        TABLE_V1,
    )
    .await;
    assert!(empty["rows"].is_null(), "{empty}");
    let (_, no_pods) = get(&double, "/api/v1/namespaces/kube-system/pods", TABLE_V1).await;
    assert_eq!(no_pods["rows"], json!([]));
}

#[tokio::test]
async fn table_pages_carry_continue_and_remaining_item_count() {
    let double = start().await;
    seed(&double);
    double.put_object("v1", "pods", pod("shop", "api-3", json!({})));
    let (_, first) = get(&double, "/api/v1/namespaces/shop/pods?limit=2", TABLE_V1).await;
    assert_eq!(first["rows"].as_array().unwrap().len(), 2);
    assert_eq!(first["metadata"]["remainingItemCount"], 1);
    let token = first["metadata"]["continue"].as_str().unwrap();
    let (_, second) = get(
        &double,
        &format!("/api/v1/namespaces/shop/pods?limit=2&continue={token}"),
        TABLE_V1,
    )
    .await;
    assert_eq!(second["rows"][0]["cells"][0], "api-3");
    assert!(second["metadata"].get("continue").is_none());
}

#[tokio::test]
async fn partial_object_metadata_for_lists_and_objects() {
    let double = start().await;
    seed(&double);
    let (status, list) = get(
        &double,
        "/api/v1/namespaces/shop/pods?limit=1",
        "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(list["metadata"]["remainingItemCount"], 1);
    assert!(list["metadata"]["continue"].is_string());
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(list["items"][0]["metadata"]["name"], "api-1");
    assert!(list["items"][0].get("spec").is_none());

    let partial = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
    let (_, one) = get(&double, "/api/v1/namespaces/shop/pods/api-2", partial).await;
    assert_eq!(one["kind"], "PartialObjectMetadata");
    assert_eq!(one["metadata"]["name"], "api-2");
    assert!(one.get("status").is_none());

    // Each form fits only its side, as the apiserver's transformations do.
    let (status, error) = get(&double, "/api/v1/namespaces/shop/pods", partial).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(
        error["message"],
        "you requested PartialObjectMetadata, but the requested object is a list (*core.PodList)"
    );
    let (status, _) = get(
        &double,
        "/api/v1/namespaces/shop/pods/api-2",
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn accept_negotiation_falls_back_to_json_or_answers_406() {
    let double = start().await;
    seed(&double);
    let path = "/api/v1/namespaces/shop/pods";
    let (status, list) = get(
        &double,
        path,
        "application/vnd.kubernetes.protobuf, application/json",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["kind"], "PodList");
    for accept in ["*/*", ""] {
        let (status, list) = get(&double, path, accept).await;
        assert_eq!((status, &list["kind"]), (StatusCode::OK, &json!("PodList")));
    }
    let (_, list) = get(
        &double,
        path,
        "application/json;as=Table;g=bogus;v=v1, application/json",
    )
    .await;
    assert_eq!(list["kind"], "PodList");
    for accept in [
        "application/vnd.kubernetes.protobuf",
        "application/json;as=Table;g=bogus;v=v1",
    ] {
        let (status, error) = get(&double, path, accept).await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{accept}");
        assert_eq!(error["kind"], "Status");
        assert_eq!(error["reason"], "NotAcceptable");
        assert_eq!(error["code"], 406);
        let (status, _) = get(&double, &format!("{path}/api-1"), accept).await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{accept}");
    }
}

#[tokio::test]
async fn watch_events_are_one_row_tables_with_columns_only_first() {
    let double = start().await;
    seed(&double);
    let response = client(&double)
        .get(format!(
            "{}/api/v1/namespaces/shop/pods?watch=true&includeObject=None",
            double.url()
        ))
        .header("Accept", KUBECTL_GET)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = LineReader::new(response);
    let (kind, first) = events.next_event().await;
    assert_eq!(kind, "ADDED");
    assert_eq!(first["kind"], "Table");
    assert_eq!(column_names(&first)[..3], ["Name", "Ready", "Status"]);
    assert_eq!(first["rows"].as_array().unwrap().len(), 1);
    assert_eq!(first["rows"][0]["cells"][0], "api-1");
    assert!(first["rows"][0]["object"].is_null());
    assert!(first["metadata"]["resourceVersion"].is_string());
    let (_, second) = events.next_event().await;
    assert_eq!(second["rows"][0]["cells"][0], "api-2");
    assert!(second["columnDefinitions"].is_null(), "{second}");
    let mut changed = pod("shop", "api-2", json!({"app": "web"}));
    changed["status"]["phase"] = json!("Failed");
    double.put_object("v1", "pods", changed);
    let (kind, third) = events.next_event().await;
    assert_eq!(kind, "MODIFIED");
    assert!(third["columnDefinitions"].is_null());
    assert_eq!(third["rows"][0]["cells"][2], "Failed");
    assert_eq!(third["rows"][0]["conditions"][0]["type"], "Completed");
}

#[tokio::test]
async fn partial_object_metadata_watches_send_metadata_only() {
    let double = start().await;
    seed(&double);
    let response = client(&double)
        .get(format!("{}/api/v1/namespaces/shop/pods?watch=1", double.url()))
        .header(
            "Accept",
            "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json",
        )
        .send()
        .await
        .unwrap();
    let mut events = LineReader::new(response);
    let (_, object) = events.next_event().await;
    assert_eq!(object["kind"], "PartialObjectMetadata");
    assert_eq!(object["metadata"]["name"], "api-1");
    assert!(object.get("spec").is_none());
}

#[tokio::test]
async fn namespace_label_changes_are_watched_as_modifications() {
    let double = start().await;
    let (_, listed) = get(&double, "/api/v1/namespaces", "application/json").await;
    let since = listed["metadata"]["resourceVersion"].as_str().unwrap();
    let response = client(&double)
        .get(format!(
            "{}/api/v1/namespaces?watch=true&resourceVersion={since}",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    let mut events = LineReader::new(response);
    let patched = client(&double)
        .patch(format!("{}/api/v1/namespaces/default", double.url()))
        .header("Content-Type", "application/merge-patch+json")
        .body(r#"{"metadata":{"labels":{"tenant":"blue"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let (kind, namespace) = events.next_event().await;
    assert_eq!(kind, "MODIFIED");
    assert_eq!(namespace["metadata"]["name"], "default");
    assert_eq!(namespace["metadata"]["labels"]["tenant"], "blue");
    let (_, stored) = get(&double, "/api/v1/namespaces/default", "application/json").await;
    assert_eq!(stored["metadata"]["labels"]["tenant"], "blue");
}

#[tokio::test]
async fn leases_are_served_and_discovered() {
    let double = start().await;
    let (status, discovery) =
        get(&double, "/apis/coordination.k8s.io/v1", "application/json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(discovery["resources"][0]["name"], "leases");
    assert_eq!(discovery["resources"][0]["namespaced"], true);
    double.put_object(
        "coordination.k8s.io/v1",
        "leases",
        json!({"metadata": {"name": "node-a", "namespace": "kube-node-lease"}, "spec": {"holderIdentity": "node-a"}}),
    );
    let (status, lease) = get(
        &double,
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a",
        "application/json",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lease["kind"], "Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "node-a");
}
