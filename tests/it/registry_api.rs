//! The registry over HTTP, on both stores: create, duplicate, list, get,
//! update with versions, delete, validation, and secrets never returned.

use kubeportal_tests::{both_stores, spawn_app, ConfigSource, TestDb};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "sa-token-that-must-never-be-returned";

fn cluster(name: &str) -> Value {
    json!({
        "name": name,
        "title": "Production EU",
        "url": "https://10.0.0.1:6443",
        "authProvider": "serviceAccount",
        "serviceAccountToken": TOKEN,
        "dashboardUrl": "https://dashboard.example/prod",
        "labels": {"env": "prod"}
    })
}

fn assert_error(body: &Value, name: &str, status: u16) {
    assert_eq!(body["error"]["name"], name, "{body}");
    assert_eq!(body["response"]["statusCode"], status, "{body}");
    assert!(body["request"]["method"].is_string(), "{body}");
    assert!(
        body["request"]["url"]
            .as_str()
            .unwrap()
            .starts_with("/api/kubernetes/"),
        "{body}"
    );
}

both_stores!(registry_lifecycle, |backend| async move {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let client = &app.client;
    let clusters = app.url("/api/kubernetes/clusters");

    let empty: Value = client
        .get(&clusters)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty, json!({"items": []}));

    let created = client
        .post(&clusters)
        .json(&cluster("Prod-EU"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["etag"], "\"1\"");
    assert_eq!(
        created.headers()["location"],
        "/api/kubernetes/clusters/Prod-EU"
    );
    let text = created.text().await.unwrap();
    assert!(!text.contains(TOKEN), "token returned: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["hasServiceAccountToken"], true);
    assert_eq!(body["version"], 1);

    for duplicate in ["prod-eu", "PROD-EU", "Prod-EU"] {
        let response = client
            .post(&clusters)
            .json(&cluster(duplicate))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let body: Value = response.json().await.unwrap();
        assert_error(&body, "ConflictError", 409);
        assert!(!body.to_string().contains(TOKEN));
    }

    let list: Value = client
        .get(&clusters)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list,
        json!({"items": [{"name": "Prod-EU", "title": "Production EU", "dashboardUrl": "https://dashboard.example/prod", "authProvider": "serviceAccount"}]})
    );

    let one = client
        .get(app.url("/api/kubernetes/clusters/prod-eu"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    let text = one.text().await.unwrap();
    assert!(!text.contains(TOKEN));
    let detail: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(detail["name"], "Prod-EU");
    assert_eq!(detail["labels"], json!({"env": "prod"}));

    // Update based on version 1, then again on the now-stale version 1.
    let mut update = detail.clone();
    update["title"] = json!("Renamed");
    let updated = client
        .put(app.url("/api/kubernetes/clusters/prod-eu"))
        .header("If-Match", "\"1\"")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(updated.headers()["etag"], "\"2\"");
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["title"], "Renamed");
    assert_eq!(
        updated["hasServiceAccountToken"], true,
        "omitted secret is kept"
    );

    update["title"] = json!("Lost update");
    let stale = client
        .put(app.url("/api/kubernetes/clusters/prod-eu"))
        .header("If-Match", "\"1\"")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    assert_error(&stale.json().await.unwrap(), "ConflictError", 409);
    let body_version_stale = client
        .put(app.url("/api/kubernetes/clusters/prod-eu"))
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(
        body_version_stale.status(),
        StatusCode::CONFLICT,
        "body version 1 is stale too"
    );

    let mut unversioned = update.clone();
    unversioned.as_object_mut().unwrap().remove("version");
    let missing = client
        .put(app.url("/api/kubernetes/clusters/prod-eu"))
        .json(&unversioned)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let missing: Value = missing.json().await.unwrap();
    assert_error(&missing, "InputError", 400);
    assert!(missing["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("version"));

    let after: Value = client
        .get(app.url("/api/kubernetes/clusters/prod-eu"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["title"], "Renamed", "failed writes changed nothing");
    assert_eq!(after["version"], 2);

    let deleted = client
        .delete(app.url("/api/kubernetes/clusters/PROD-eu"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = client
        .get(app.url("/api/kubernetes/clusters/prod-eu"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_error(&gone.json().await.unwrap(), "NotFoundError", 404);
    let again = client
        .delete(app.url("/api/kubernetes/clusters/prod-eu"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
});

both_stores!(
    invalid_input_names_the_field_and_stores_nothing,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db, ConfigSource::NoFile).await;
        let clusters = app.url("/api/kubernetes/clusters");
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"name": "", "url": "https://x", "authProvider": "google"}),
                "name",
            ),
            (
                json!({"name": "a b", "url": "https://x", "authProvider": "google"}),
                "name",
            ),
            (
                json!({"name": "a", "url": "ftp://x", "authProvider": "google"}),
                "url",
            ),
            (
                json!({"name": "a", "url": "not a url", "authProvider": "google"}),
                "url",
            ),
            (
                json!({"name": "a", "url": "https://x", "authProvider": "aws"}),
                "authProvider",
            ),
            (
                json!({"name": "a", "url": "https://x", "authProvider": "serviceAccount"}),
                "serviceAccountToken",
            ),
            (
                json!({"name": "a", "url": "https://x", "authProvider": "google", "caData": "not-pem"}),
                "caData",
            ),
            (
                json!({"name": "a", "url": "https://x", "authProvider": "oidc"}),
                "oidcTokenProvider",
            ),
            (
                json!({"name": "a", "url": "https://x", "authProvider": "google", "colour": "red"}),
                "colour",
            ),
            (
                json!({"name": "a", "url": "https://x", "authProvider": "clientCert"}),
                "clientCertData",
            ),
        ];
        for (body, field) in cases {
            let response = app.client.post(&clusters).json(&body).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
            let error: Value = response.json().await.unwrap();
            assert_error(&error, "InputError", 400);
            let message = error["error"]["message"].as_str().unwrap();
            assert!(message.contains(field), "{field} not named in {message}");
        }
        let not_json = app
            .client
            .post(&clusters)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
        let secret_in_wrong_type = app
        .client
        .post(&clusters)
        .json(&json!({"name": "a", "url": "https://x", "authProvider": "serviceAccount", "serviceAccountToken": ["hunter2-secret"]}))
        .send()
        .await
        .unwrap();
        assert_eq!(secret_in_wrong_type.status(), StatusCode::BAD_REQUEST);
        assert!(!secret_in_wrong_type
            .text()
            .await
            .unwrap()
            .contains("hunter2"));

        let list: Value = app
            .client
            .get(&clusters)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list, json!({"items": []}));
    }
);

both_stores!(lists_page_with_cursor, |backend| async move {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let clusters = app.url("/api/kubernetes/clusters");
    for index in 0..5 {
        let response = app
            .client
            .post(&clusters)
            .json(&cluster(&format!("c{index}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let first: Value = app
        .client
        .get(format!("{clusters}?limit=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second: Value = app
        .client
        .get(format!("{clusters}?limit=3&cursor={cursor}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = second["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c2", "c3", "c4"]);
    assert!(second.get("nextCursor").is_none());
    for bad in ["limit=0", "limit=5000", "limit=x", "cursor=%%%"] {
        let response = app
            .client
            .get(format!("{clusters}?{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
});

both_stores!(secrets_can_be_rotated_and_cleared, |backend| async move {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let clusters = app.url("/api/kubernetes/clusters");
    app.client
        .post(&clusters)
        .json(&json!({"name": "imp", "url": "https://x:6443", "authProvider": "impersonate", "serviceAccountToken": "one"}))
        .send()
        .await
        .unwrap();
    let rotate = json!({"url": "https://x:6443", "authProvider": "impersonate", "serviceAccountToken": "two", "version": 1});
    let rotated = app
        .client
        .put(app.url("/api/kubernetes/clusters/imp"))
        .json(&rotate)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let record = app
        .state
        .registry
        .store()
        .get("imp")
        .await
        .unwrap()
        .unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(
        app.state
            .registry
            .open_token(&record)
            .unwrap()
            .unwrap()
            .expose_secret(),
        "two"
    );

    let clear = json!({"url": "https://x:6443", "authProvider": "google", "serviceAccountToken": null, "version": 2});
    let cleared: Value = app
        .client
        .put(app.url("/api/kubernetes/clusters/imp"))
        .json(&clear)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["hasServiceAccountToken"], false);

    let clear_needed =
        json!({"url": "https://x:6443", "authProvider": "serviceAccount", "version": 3});
    let refused = app
        .client
        .put(app.url("/api/kubernetes/clusters/imp"))
        .json(&clear_needed)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
});

both_stores!(
    declared_clusters_are_registered_at_start,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let yaml = r#"
permissions:
  rules:
    - { permission: "*", subjects: ["*"], decision: allow }
kubernetes:
  clusters:
    - { name: own, url: "https://own:6443", authProvider: serviceAccount, serviceAccountToken: own-token }
  clusterLocatorMethods:
    - type: config
      clusters:
        - { name: backstage-style, url: "https://bs:6443", authProvider: serviceAccount, serviceAccountToken: bs-token, skipTLSVerify: true }
"#;
        let app = spawn_app(&db, ConfigSource::Yaml(yaml)).await;
        let list: Value = app
            .client
            .get(app.url("/api/kubernetes/clusters"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["backstage-style", "own"]);
        app.stop().await;
        // A restart with the same configuration changes nothing.
        let again = spawn_app(&db, ConfigSource::Yaml(yaml)).await;
        let record = again
            .state
            .registry
            .store()
            .get("own")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.version, 1);
    }
);

#[tokio::test]
async fn a_method_a_route_does_not_have_is_a_405_envelope_naming_the_allowed_ones() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let response = app
        .client
        .patch(app.url("/api/kubernetes/clusters"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let body: Value = response.json().await.unwrap();
    assert_error(&body, "MethodNotAllowedError", 405);
}

// The same holds for the routes beside the API: metrics, the document and
// its viewer.
#[tokio::test]
async fn every_route_answers_a_method_it_does_not_have_with_the_405_envelope() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    for path in ["/metrics", "/openapi.json", "/docs/", "/healthz"] {
        let response = app.client.delete(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert!(response.headers().contains_key("allow"), "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["name"], "MethodNotAllowedError", "{body}");
        assert_eq!(body["response"]["statusCode"], 405, "{body}");
        assert_eq!(body["request"]["url"], path, "{body}");
    }
}

// An update that sends the stored credentials somewhere else (another
// scheme, host or port, another CA, verification off) must send them again:
// an admin who may manage clusters but not read their secrets cannot point a
// cluster at their own server and collect its token.
both_stores!(
    stored_credentials_do_not_follow_a_cluster_elsewhere,
    |backend| async move {
        use kubeportal_tests::start_double;
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db, ConfigSource::NoFile).await;
        let real = start_double().await;
        let elsewhere = kubeportal_tests::start_plain_double().await;
        let elsewhere_tls = start_double().await;
        let created = app
            .client
            .post(app.url("/api/kubernetes/clusters"))
            .json(
                &json!({"name": "dev", "url": real.url(), "authProvider": "serviceAccount",
                "serviceAccountToken": "double-token", "caData": real.ca_pem()}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let put = |body: Value| {
            app.client
                .put(app.url("/api/kubernetes/clusters/dev"))
                .json(&body)
                .send()
        };
        for moved in [
            json!({"url": elsewhere.url()}),
            json!({"url": elsewhere_tls.url(), "caData": elsewhere_tls.ca_pem()}),
            json!({"skipTLSVerify": true}),
            json!({"caData": elsewhere_tls.ca_pem()}),
        ] {
            let mut body = json!({"url": real.url(), "authProvider": "serviceAccount",
                "caData": real.ca_pem(), "version": 1});
            body.as_object_mut()
                .unwrap()
                .extend(moved.as_object().unwrap().clone());
            let refused = put(body.clone()).await.unwrap();
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{moved}");
            let refused: Value = refused.json().await.unwrap();
            assert_error(&refused, "InputError", 400);
            assert!(
                refused["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("serviceAccountToken:"),
                "{refused}"
            );
        }
        // Nothing changed: calls still go to the real cluster, none elsewhere.
        let version = app
            .client
            .get(app.url("/api/kubernetes/proxy/version"))
            .header("Backstage-Kubernetes-Cluster", "dev")
            .send()
            .await
            .unwrap();
        assert_eq!(version.status(), StatusCode::OK);
        assert_eq!(real.requests().len(), 1);
        assert!(elsewhere.requests().is_empty() && elsewhere_tls.requests().is_empty());

        // Sent again, the credential goes where the admin says.
        let moved = put(
            json!({"url": elsewhere.url(), "authProvider": "serviceAccount",
            "serviceAccountToken": "double-token", "version": 1}),
        )
        .await
        .unwrap();
        assert_eq!(moved.status(), StatusCode::OK);
        let version = app
            .client
            .get(app.url("/api/kubernetes/proxy/version"))
            .header("Backstage-Kubernetes-Cluster", "dev")
            .send()
            .await
            .unwrap();
        assert_eq!(version.status(), StatusCode::OK);
        assert_eq!(elsewhere.requests().len(), 1);

        // A stored client key must be sent again too.
        let (cert, key) = real.issue_client_cert("kubeportal");
        let created = app
            .client
            .post(app.url("/api/kubernetes/clusters"))
            .json(
                &json!({"name": "mtls", "url": real.url(), "authProvider": "clientCert",
                "clientCertData": cert, "clientKeyData": key, "caData": real.ca_pem()}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let refused = app
            .client
            .put(app.url("/api/kubernetes/clusters/mtls"))
            .json(
                &json!({"url": elsewhere.url(), "authProvider": "clientCert",
                "clientCertData": cert, "version": 1}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let refused: Value = refused.json().await.unwrap();
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("clientKeyData:"),
            "{refused}"
        );
    }
);

// A cluster deleted and registered again under its name is another cluster:
// versions start again at 1, but nothing built for the old registration (its
// connector with the old URL and token, cached object results) serves the new.
both_stores!(
    a_cluster_registered_again_is_reached_at_its_new_url_with_its_new_token,
    |backend| async move {
        use kubeportal_tests::{DoubleOptions, Identity, KubeDouble};
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db, ConfigSource::NoFile).await;
        let start = |token: &str| {
            KubeDouble::start(DoubleOptions {
                tokens: vec![token.to_owned()],
                ..Default::default()
            })
        };
        let (old, new) = (
            start("old-token").await.unwrap(),
            start("new-token").await.unwrap(),
        );
        for (double, pod) in [(&old, "old-pod"), (&new, "new-pod")] {
            double.put_object(
                "v1",
                "pods",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": "default",
                    "labels": {"backstage.io/kubernetes-id": "shop"}}}),
            );
        }
        let register =
            |double: &KubeDouble, token: &str| {
                app.client
                .post(app.url("/api/kubernetes/clusters"))
                .json(&json!({"name": "dev", "url": double.url(), "authProvider": "serviceAccount",
                    "serviceAccountToken": token, "caData": double.ca_pem()}))
                .send()
            };
        let version = || {
            app.client
                .get(app.url("/api/kubernetes/proxy/version"))
                .header("Backstage-Kubernetes-Cluster", "dev")
                .send()
        };
        let pods = || async {
            let body: Value = app
                .client
                .post(app.url("/api/kubernetes/services/shop"))
                .json(&json!({"entity": {"metadata": {"name": "shop"}}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["items"][0]["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|list| list["type"] == "pods")
                .map(|list| list["resources"][0]["metadata"]["name"].clone())
                .unwrap_or_default()
        };

        assert_eq!(
            register(&old, "old-token").await.unwrap().status(),
            StatusCode::CREATED
        );
        assert_eq!(version().await.unwrap().status(), StatusCode::OK);
        assert_eq!(pods().await, "old-pod");

        let deleted = app
            .client
            .delete(app.url("/api/kubernetes/clusters/dev"))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        let created = register(&new, "new-token").await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        assert_eq!(
            created.headers()["etag"],
            "\"1\"",
            "the version starts again"
        );
        old.clear_requests();

        assert_eq!(version().await.unwrap().status(), StatusCode::OK);
        assert_eq!(
            pods().await,
            "new-pod",
            "no result of the old cluster is served"
        );
        assert!(old.requests().is_empty(), "nothing goes to the old cluster");
        let arrived = new.requests();
        assert!(!arrived.is_empty());
        assert!(arrived
            .iter()
            .all(|request| request.identity == Identity::Token("new-token".into())));
    }
);

#[tokio::test]
async fn the_public_list_names_providers_as_backstages_frontend_knows_them() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let clusters = app.url("/api/kubernetes/clusters");
    let registered = [
        (
            "a-service-account",
            json!({"authProvider": "serviceAccount", "serviceAccountToken": TOKEN}),
            "serviceAccount",
        ),
        (
            "b-impersonate",
            json!({"authProvider": "impersonate", "serviceAccountToken": TOKEN}),
            "serviceAccount",
        ),
        (
            "c-client",
            json!({"authProvider": "client"}),
            "serviceAccount",
        ),
        (
            "d-oidc",
            json!({"authProvider": "oidc", "oidcTokenProvider": "okta"}),
            "oidc",
        ),
        ("e-google", json!({"authProvider": "google"}), "google"),
    ];
    for (name, fields, _) in &registered {
        let mut body = json!({"name": name, "url": "https://10.0.0.1:6443"});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let response = app.client.post(&clusters).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{name}");
    }
    let list: Value = app
        .client
        .get(&clusters)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let presented: Vec<(&str, &str)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["name"].as_str().unwrap(),
                item["authProvider"].as_str().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(&str, &str)> = registered
        .iter()
        .map(|(name, _, shown)| (*name, *shown))
        .collect();
    assert_eq!(presented, expected);
    assert_eq!(list["items"][3]["oidcTokenProvider"], "okta");
    // Backstage's frontend looks up `<authProvider>.<oidcTokenProvider>`: an
    // oidcTokenProvider beside any other provider would name no provider it
    // knows and break every entity's tab, so it is refused.
    let stray = app
        .client
        .post(&clusters)
        .json(&json!({"name": "f-stray", "url": "https://10.0.0.1:6443", "authProvider": "serviceAccount",
                      "serviceAccountToken": TOKEN, "oidcTokenProvider": "okta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status(), StatusCode::BAD_REQUEST);
    let error: Value = stray.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("oidcTokenProvider"),
        "{error}"
    );

    // Admins read the real value.
    for (name, fields, _) in &registered {
        let detail: Value = app
            .client
            .get(format!("{clusters}/{name}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(detail["authProvider"], fields["authProvider"], "{name}");
    }
}

#[tokio::test]
async fn the_public_list_returns_every_cluster_unless_a_limit_is_given() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let clusters = app.url("/api/kubernetes/clusters");
    for index in 0..105 {
        let response = app
            .client
            .post(&clusters)
            .json(&cluster(&format!("c{index:03}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let all: Value = app
        .client
        .get(&clusters)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 105);
    assert_eq!(all["items"][104]["name"], "c104");
    assert!(
        all.get("nextCursor").is_none(),
        "no paging: {}",
        all["nextCursor"]
    );

    let page: Value = app
        .client
        .get(format!("{clusters}?limit=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    assert!(page["nextCursor"].is_string());
}

both_stores!(
    dashboard_fields_are_stored_and_listed,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let app = spawn_app(&db, ConfigSource::NoFile).await;
        let clusters = app.url("/api/kubernetes/clusters");
        let dashboard_url =
            "https://console.cloud.google.com/kubernetes/clusters?project=shop#details";
        let parameters =
            json!({"projectId": "shop", "region": "europe-west1", "clusterName": "prod"});
        let mut body = cluster("prod");
        body["dashboardUrl"] = json!(dashboard_url);
        body["dashboardApp"] = json!("gke");
        body["dashboardParameters"] = parameters.clone();
        let created = app.client.post(&clusters).json(&body).send().await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let created: Value = created.json().await.unwrap();
        assert_eq!(created["dashboardUrl"], dashboard_url, "kept as given");
        assert_eq!(created["dashboardApp"], "gke");
        assert_eq!(created["dashboardParameters"], parameters);

        let listed: Value = app
            .client
            .get(&clusters)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["items"][0]["dashboardUrl"], dashboard_url);
        assert_eq!(listed["items"][0]["dashboardApp"], "gke");
        assert_eq!(listed["items"][0]["dashboardParameters"], parameters);

        let mut update = created.clone();
        update["dashboardApp"] = json!("standard");
        update["dashboardParameters"] = json!({"namespace": "shop"});
        let updated = app
            .client
            .put(format!("{clusters}/prod"))
            .json(&update)
            .send()
            .await
            .unwrap();
        assert_eq!(updated.status(), StatusCode::OK);
        let detail: Value = app
            .client
            .get(format!("{clusters}/prod"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(detail["dashboardApp"], "standard");
        assert_eq!(detail["dashboardParameters"], json!({"namespace": "shop"}));

        let mut bad = cluster("bad");
        bad["dashboardParameters"] = json!("not an object");
        let refused = app.client.post(&clusters).json(&bad).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }
);
