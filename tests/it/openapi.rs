//! The checked-in OpenAPI document is what the code generates.

use kubeportal_tests::{spawn_app, ConfigSource, TestDb};

fn checked_in() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    std::fs::read_to_string(path).expect("openapi/openapi.json exists")
}

#[test]
fn checked_in_document_matches_the_code() {
    let generated = kubeportal::openapi::document_json();
    assert!(
        generated == checked_in(),
        "openapi/openapi.json is stale: run `cargo run -p kubeportal-server -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn the_server_serves_the_document_and_offline_docs() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let served: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected: serde_json::Value = serde_json::from_str(&checked_in()).unwrap();
    assert_eq!(served, expected);
    assert!(served["paths"]["/api/kubernetes/clusters"]["get"].is_object());
    assert!(served["components"]["securitySchemes"]["bearer"].is_object());

    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "Swagger UI page");
    assert!(
        !html.contains("https://"),
        "the docs page loads nothing from a CDN"
    );
    let bundle = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200, "Swagger UI assets are served locally");
}

#[tokio::test]
async fn a_configured_web_root_is_served_with_single_page_fallback() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<html>demo app</html>").unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("assets/app.js"), "console.log('app')").unwrap();
    let db = TestDb::sqlite();
    let mut config = kubeportal_tests::config_for(&db, ConfigSource::NoFile);
    config.server.web_root = Some(dir.path().to_owned());
    let app = kubeportal_tests::spawn_with_config(config).await;
    let get = |path: &str| app.client.get(app.url(path)).send();
    assert_eq!(
        get("/").await.unwrap().text().await.unwrap(),
        "<html>demo app</html>"
    );
    assert_eq!(
        get("/clusters/dev/pods")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "<html>demo app</html>"
    );
    assert_eq!(
        get("/assets/app.js").await.unwrap().text().await.unwrap(),
        "console.log('app')"
    );
    let api_miss = get("/api/kubernetes/nothing-here").await.unwrap();
    assert_eq!(api_miss.status(), 404);
    let body: serde_json::Value = api_miss.json().await.unwrap();
    assert_eq!(body["error"]["name"], "NotFoundError");
    let list: serde_json::Value = get("/api/kubernetes/clusters")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, serde_json::json!({"items": []}));
}
