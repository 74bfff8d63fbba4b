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
