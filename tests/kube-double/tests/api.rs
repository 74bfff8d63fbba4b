//! The double's Kubernetes API over HTTPS: authentication, discovery, CRUD with
//! resourceVersions, patches, selectors and the request record.

mod common;

use common::{anonymous_client, bearer, client, client_builder, pod, start, TOKEN};
use kube_double::{ClientAuth, Identity, KubeDouble, Options};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}

#[tokio::test]
async fn unauthenticated_requests_get_the_api_servers_401() {
    let double = start().await;
    let (status, body) = json_of(
        anonymous_client(&double)
            .get(format!("{}/api/v1/namespaces", double.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
    );
    let wrong_token = client_builder(&double)
        .default_headers(bearer("nope"))
        .build()
        .unwrap();
    let response = wrong_token
        .get(format!("{}/api", double.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let health = anonymous_client(&double)
        .get(format!("{}/healthz", double.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn configured_tokens_authenticate_and_are_recorded() {
    let double = KubeDouble::start(Options {
        tokens: vec!["first".into(), "second".into()],
        ..Options::default()
    })
    .await
    .unwrap();
    let client = client_builder(&double)
        .default_headers(bearer("second"))
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/version", double.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let recorded = double.requests();
    assert_eq!(
        recorded.last().unwrap().identity,
        Identity::Token("second".into())
    );
}

#[tokio::test]
async fn client_certificates_authenticate_by_common_name() {
    let double = start().await;
    let (certificate, key) = double.issue_client_cert("alice");
    let identity = reqwest::Identity::from_pem(format!("{certificate}{key}").as_bytes()).unwrap();
    let client = client_builder(&double).identity(identity).build().unwrap();
    let response = client
        .get(format!("{}/api/v1/namespaces", double.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        double.requests()[0].identity,
        Identity::ClientCert("alice".into())
    );
}

#[tokio::test]
async fn required_client_certificates_refuse_handshakes_without_one() {
    let double = KubeDouble::start(Options {
        client_auth: ClientAuth::Required,
        ..Options::default()
    })
    .await
    .unwrap();
    let without = client(&double)
        .get(format!("{}/version", double.url()))
        .send()
        .await;
    assert!(
        without.is_err(),
        "a handshake without a certificate succeeded"
    );

    let stranger = start().await;
    let (certificate, key) = stranger.issue_client_cert("mallory");
    let foreign = reqwest::Identity::from_pem(format!("{certificate}{key}").as_bytes()).unwrap();
    let with_foreign = client_builder(&double).identity(foreign).build().unwrap();
    assert!(with_foreign
        .get(format!("{}/version", double.url()))
        .send()
        .await
        .is_err());

    let (certificate, key) = double.issue_client_cert("bob");
    let own = reqwest::Identity::from_pem(format!("{certificate}{key}").as_bytes()).unwrap();
    let with_own = client_builder(&double).identity(own).build().unwrap();
    let response = with_own
        .get(format!("{}/version", double.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(double
        .requests()
        .iter()
        .all(|request| request.identity == Identity::ClientCert("bob".into())));
}

#[tokio::test]
async fn plain_http_when_tls_is_off() {
    let double = KubeDouble::start(Options {
        tls: false,
        ..Options::default()
    })
    .await
    .unwrap();
    assert!(double.url().starts_with("http://127.0.0.1:"));
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/namespaces/default", double.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let (status, namespace) = json_of(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(namespace["status"]["phase"], "Active");
}

#[tokio::test]
async fn discovery_describes_groups_resources_and_custom_resources() {
    let double = start().await;
    double.register_custom_resource("example.com", "v1", "widgets", "Widget", true);
    let client = client(&double);
    let get = |path: &str| {
        let request = client.get(format!("{}{path}", double.url()));
        async move { json_of(request.send().await.unwrap()).await }
    };
    let (_, api) = get("/api").await;
    assert_eq!(api["versions"], json!(["v1"]));
    let (_, core) = get("/api/v1").await;
    let pods = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["name"] == "pods")
        .unwrap();
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["namespaced"], true);
    let (_, groups) = get("/apis").await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["name"].as_str().unwrap())
        .collect();
    for group in [
        "apps",
        "batch",
        "autoscaling",
        "networking.k8s.io",
        "example.com",
    ] {
        assert!(names.contains(&group), "{group} missing from {names:?}");
    }
    assert!(!names.contains(&"metrics.k8s.io"));
    let (_, widgets) = get("/apis/example.com/v1").await;
    assert_eq!(widgets["resources"][0]["kind"], "Widget");
    let (status, _) = get("/apis/nothing.example/v1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, openapi) = get("/openapi/v3").await;
    let url = openapi["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, apps) = get(&url).await;
    let patch = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
}

#[tokio::test]
async fn create_get_update_delete_with_resource_versions() {
    let double = start().await;
    let client = client(&double);
    let collection = format!("{}/api/v1/namespaces/default/configmaps", double.url());
    let (status, created) = json_of(
        client
            .post(&collection)
            .json(&json!({"metadata": {"name": "settings"}, "data": {"mode": "fast"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["kind"], "ConfigMap");
    assert_eq!(created["apiVersion"], "v1");
    let (status, duplicate) = json_of(
        client
            .post(&collection)
            .json(&json!({"metadata": {"name": "settings"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(duplicate["reason"], "AlreadyExists");

    let object_url = format!("{collection}/settings");
    let mut changed = created.clone();
    changed["data"]["mode"] = json!("slow");
    let (status, updated) =
        json_of(client.put(&object_url).json(&changed).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let first: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let second: u64 = updated["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(second > first);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);

    let (status, stale) =
        json_of(client.put(&object_url).json(&changed).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(stale["reason"], "Conflict");

    let (status, deleted) = json_of(client.delete(&object_url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["data"]["mode"], "slow");
    let (status, missing) = json_of(client.get(&object_url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["message"], "configmaps \"settings\" not found");
}

#[tokio::test]
async fn cluster_scoped_objects_and_namespace_requirements() {
    let double = start().await;
    let client = client(&double);
    let (status, missing_namespace) = json_of(
        client
            .post(format!(
                "{}/api/v1/namespaces/nowhere/configmaps",
                double.url()
            ))
            .json(&json!({"metadata": {"name": "x"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing_namespace["message"],
        "namespaces \"nowhere\" not found"
    );

    let (status, namespace) = json_of(
        client
            .post(format!("{}/api/v1/namespaces", double.url()))
            .json(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(namespace["metadata"].get("namespace").is_none());
    let (_, namespaces) = json_of(
        client
            .get(format!("{}/api/v1/namespaces", double.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(namespaces["kind"], "NamespaceList");
    let names: Vec<&str> = namespaces["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ns| ns["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "kube-system", "team-a"]);

    double.put_object(
        "v1",
        "configmaps",
        json!({"metadata": {"name": "doomed", "namespace": "team-a"}}),
    );
    client
        .delete(format!("{}/api/v1/namespaces/team-a", double.url()))
        .send()
        .await
        .unwrap();
    let response = client
        .get(format!(
            "{}/api/v1/namespaces/team-a/configmaps/doomed",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_patch_type_applies() {
    let double = start().await;
    double.put_object(
        "apps/v1",
        "deployments",
        json!({
            "metadata": {"name": "api", "namespace": "default", "labels": {"app": "api", "tier": "web"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "api", "image": "api:1", "ports": [{"containerPort": 80}]},
                {"name": "proxy", "image": "proxy:1"}
            ]}}}
        }),
    );
    let client = client(&double);
    let url = format!(
        "{}/apis/apps/v1/namespaces/default/deployments/api",
        double.url()
    );
    let patch = |content_type: &'static str, body: &'static str| {
        let request = client
            .patch(&url)
            .header("content-type", content_type)
            .body(body);
        async move { json_of(request.send().await.unwrap()).await }
    };

    let (status, json_patched) = patch(
        "application/json-patch+json",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json_patched["spec"]["replicas"], 3);
    assert_eq!(json_patched["metadata"]["generation"], 2);

    let (_, merged) = patch(
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"tier":null}}}"#,
    )
    .await;
    assert_eq!(merged["metadata"]["labels"], json!({"app": "api"}));

    let (_, strategic) = patch(
        "application/strategic-merge-patch+json",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"api","image":"api:2"}]}}}}"#,
    )
    .await;
    let containers = &strategic["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "api:2");
    assert_eq!(containers[0]["ports"][0]["containerPort"], 80);
    assert_eq!(containers[1]["name"], "proxy");

    let (status, applied) = patch(
        "application/apply-patch+yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 5\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(applied["spec"]["replicas"], 5);

    let (status, stale) = patch(
        "application/merge-patch+json",
        r#"{"metadata":{"resourceVersion":"1"},"spec":{"replicas":9}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(stale["reason"], "Conflict");

    let (status, _) = patch("application/json", "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn server_side_apply_creates_missing_objects() {
    let double = start().await;
    let response = client(&double)
        .patch(format!(
            "{}/api/v1/namespaces/default/configmaps/applied?fieldManager=test",
            double.url()
        ))
        .header("content-type", "application/apply-patch+yaml")
        .body("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: b\n")
        .send()
        .await
        .unwrap();
    let (status, created) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["data"]["a"], "b");
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists_across_namespaces() {
    let double = start().await;
    double.put_object(
        "v1",
        "pods",
        pod("shop", "api-1", json!({"app": "api", "env": "prod"})),
    );
    double.put_object(
        "v1",
        "pods",
        pod("shop", "api-2", json!({"app": "api", "env": "staging"})),
    );
    double.put_object("v1", "pods", pod("shop", "web-1", json!({"app": "web"})));
    double.put_object(
        "v1",
        "pods",
        pod("default", "api-3", json!({"app": "api", "env": "dev"})),
    );
    let client = client(&double);
    let names = |path: String| {
        let request = client.get(format!("{}{path}", double.url()));
        async move {
            let (status, list) = json_of(request.send().await.unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{list}");
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        names("/api/v1/pods?labelSelector=app%3Dapi".into()).await,
        ["api-3", "api-1", "api-2"]
    );
    assert_eq!(
        names("/api/v1/namespaces/shop/pods?labelSelector=app%3D%3Dapi".into()).await,
        ["api-1", "api-2"]
    );
    assert_eq!(
        names("/api/v1/pods?labelSelector=app!%3Dapi".into()).await,
        ["web-1"]
    );
    assert_eq!(
        names("/api/v1/pods?labelSelector=env%20in%20(prod%2Cdev)".into()).await,
        ["api-3", "api-1"]
    );
    assert_eq!(
        names("/api/v1/pods?labelSelector=app%3Dapi%2Cenv%20notin%20(prod)".into()).await,
        ["api-3", "api-2"]
    );
    assert_eq!(
        names("/api/v1/pods?labelSelector=env".into()).await,
        ["api-3", "api-1", "api-2"]
    );
    assert_eq!(
        names("/api/v1/pods?labelSelector=!env".into()).await,
        ["web-1"]
    );
    assert_eq!(
        names("/api/v1/pods?fieldSelector=metadata.name%3Dapi-2".into()).await,
        ["api-2"]
    );
    assert_eq!(
        names("/api/v1/pods?fieldSelector=metadata.namespace%3Ddefault".into()).await,
        ["api-3"]
    );

    let response = client
        .get(format!(
            "{}/api/v1/pods?labelSelector=env%20within%20(x)",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn lists_carry_their_kind_version_and_pages() {
    let double = start().await;
    for index in 0..5 {
        double.put_object(
            "v1",
            "services",
            json!({"metadata": {"name": format!("svc-{index}"), "namespace": "default"}}),
        );
    }
    let client = client(&double);
    let url = format!("{}/api/v1/namespaces/default/services", double.url());
    let (_, first) = json_of(client.get(format!("{url}?limit=2")).send().await.unwrap()).await;
    assert_eq!(first["kind"], "ServiceList");
    assert_eq!(first["apiVersion"], "v1");
    assert!(
        first["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    let token = first["metadata"]["continue"].as_str().unwrap();
    let (_, second) = json_of(
        client
            .get(format!("{url}?limit=10&continue={token}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(second["items"][0]["metadata"]["name"], "svc-2");
    assert!(second["metadata"].get("continue").is_none());
}

#[tokio::test]
async fn status_subresource_writes_only_status() {
    let double = start().await;
    double.put_object("v1", "pods", pod("default", "p", json!({})));
    let client = client(&double);
    let response = client
        .patch(format!(
            "{}/api/v1/namespaces/default/pods/p/status",
            double.url()
        ))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"status":{"phase":"Succeeded"},"spec":{"containers":[]}}"#)
        .send()
        .await
        .unwrap();
    let (status, pod) = json_of(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pod["status"]["phase"], "Succeeded");
    assert_eq!(pod["spec"]["containers"][0]["name"], "app");
}

#[tokio::test]
async fn custom_resources_support_crud_but_not_strategic_merge() {
    let double = start().await;
    double.register_custom_resource("example.com", "v1", "widgets", "Widget", true);
    let client = client(&double);
    let collection = format!(
        "{}/apis/example.com/v1/namespaces/default/widgets",
        double.url()
    );
    let (status, created) = json_of(
        client
            .post(&collection)
            .json(&json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["apiVersion"], "example.com/v1");
    let (_, list) = json_of(client.get(&collection).send().await.unwrap()).await;
    assert_eq!(list["kind"], "WidgetList");
    let response = client
        .patch(format!("{collection}/w"))
        .header("content-type", "application/strategic-merge-patch+json")
        .body(r#"{"spec":{"size":2}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn pod_metrics_are_served_only_when_enabled() {
    let double = KubeDouble::start(Options {
        metrics_api: true,
        ..Options::default()
    })
    .await
    .unwrap();
    double.put_object("v1", "pods", pod("shop", "api-1", json!({"app": "api"})));
    let client = client(&double);
    let (status, metrics) = json_of(
        client
            .get(format!(
                "{}/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods?labelSelector=app%3Dapi",
                double.url()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metrics["kind"], "PodMetricsList");
    assert_eq!(metrics["items"][0]["containers"][0]["name"], "app");
    assert_eq!(double.list_calls("pods.metrics.k8s.io"), 1);

    let without = start().await;
    let response = common::client(&without)
        .get(format!(
            "{}/apis/metrics.k8s.io/v1beta1/pods",
            without.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn requests_are_recorded_verbatim_and_lists_counted() {
    let double = start().await;
    let client = client(&double);
    client
        .get(format!(
            "{}/api/v1/namespaces/default/pods?labelSelector=app%3Dapi&x=a+b",
            double.url()
        ))
        .header("Impersonate-User", "alice")
        .header("Impersonate-Group", "team-a")
        .header("Impersonate-Group", "team-b")
        .send()
        .await
        .unwrap();
    client
        .get(format!(
            "{}/api/v1/pods?watch=true&timeoutSeconds=1",
            double.url()
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    client
        .get(format!("{}/api/v1/pods", double.url()))
        .send()
        .await
        .unwrap();

    let recorded = double.requests();
    assert_eq!(recorded.len(), 3);
    let first = &recorded[0];
    assert_eq!(first.method, "GET");
    assert_eq!(first.path, "/api/v1/namespaces/default/pods");
    assert_eq!(
        first.query.as_deref(),
        Some("labelSelector=app%3Dapi&x=a+b")
    );
    assert_eq!(first.header("impersonate-user"), Some("alice"));
    assert_eq!(
        first.header_values("Impersonate-Group"),
        ["team-a", "team-b"]
    );
    assert!(first
        .headers
        .iter()
        .all(|(name, _)| *name == name.to_lowercase()));
    assert_eq!(first.header("authorization"), Some("Bearer double-token"));
    assert_eq!(first.identity, Identity::Token(TOKEN.into()));
    assert_eq!(double.list_calls("pods"), 2);

    double.clear_requests();
    assert!(double.requests().is_empty());
    assert_eq!(double.list_calls("pods"), 0);
}
