//! Browser WebSockets: no headers, so the portal identity comes as a one-time
//! ticket and the cluster token as the bearer subprotocol.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures::StreamExt;
use kubeportal_tests::{register, spawn_app, start_double, ConfigSource, TestApp, TestDb};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "browser-user-portal-token-01";
const EXEC: &str = "/api/v1/namespaces/default/pods/api-0/exec";

async fn ticket(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/kubernetes/clusters/dev/tickets"))
        .bearer_auth(TOKEN)
        .json(&json!({"path": path}))
        .send()
        .await
        .unwrap()
}

async fn browser_exec(
    app: &TestApp,
    ticket: &str,
    cluster_token: &str,
) -> Result<String, tokio_tungstenite::tungstenite::Error> {
    let url = format!("ws://{}/api/kubernetes/clusters/dev/proxy{EXEC}?command=echo&command=from-a-browser&stdout=true&ticket={ticket}", app.addr);
    let mut request = url.into_client_request().unwrap();
    let protocol = format!(
        "base64url.bearer.authorization.k8s.io.{}, v5.channel.k8s.io",
        URL_SAFE_NO_PAD.encode(cluster_token)
    );
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await?;
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    let mut stdout = String::new();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap()
    {
        match message? {
            Message::Binary(data) if data.first() == Some(&1) => {
                stdout.push_str(&String::from_utf8_lossy(&data[1..]))
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    Ok(stdout)
}

#[tokio::test]
async fn a_ticket_and_the_bearer_subprotocol_open_one_exec_session() {
    let db = TestDb::sqlite();
    let yaml = format!(
        "auth:\n  guest: false\n  staticTokens:\n    - {{ token: {TOKEN}, subject: \"user:default/dev\" }}\npermissions:\n  rules:\n    - {{ permission: kubernetes.proxy, subjects: [\"*\"], paths: [\"/api/v1/namespaces/*/pods/*/log\"], decision: deny }}\n    - {{ permission: \"*\", subjects: [\"user:default/dev\"], decision: allow }}\n"
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    let double = start_double().await;
    double.put_object(
        "v1",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-0", "namespace": "default"},
               "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}}),
    );
    // The cluster takes the caller's own token: the browser sends it as a subprotocol.
    register(&app, json!({"name": "dev", "url": double.url(), "authProvider": "client", "caData": double.ca_pem()})).await;

    let issued = ticket(&app, EXEC).await;
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await.unwrap();
    let value = issued["ticket"].as_str().unwrap().to_owned();
    assert_eq!(issued["expiresInSeconds"], 30);

    let output = browser_exec(&app, &value, "double-token").await.unwrap();
    assert_eq!(output, "from-a-browser\n");
    let exec = double
        .requests()
        .into_iter()
        .find(|request| request.path == EXEC)
        .unwrap();
    assert!(
        !exec.query.as_deref().unwrap().contains("ticket"),
        "the ticket went upstream: {:?}",
        exec.query
    );
    assert_eq!(exec.header("authorization"), Some("Bearer double-token"));
    assert_eq!(
        exec.header("sec-websocket-protocol"),
        Some("v5.channel.k8s.io")
    );

    // Spent.
    let again = browser_exec(&app, &value, "double-token")
        .await
        .unwrap_err();
    assert!(
        matches!(&again, tokio_tungstenite::tungstenite::Error::Http(response) if response.status() == 401),
        "{again}"
    );
    // For another path.
    let other: Value = ticket(&app, "/api/v1/namespaces/default/pods/other/exec")
        .await
        .json()
        .await
        .unwrap();
    let wrong = browser_exec(&app, other["ticket"].as_str().unwrap(), "double-token")
        .await
        .unwrap_err();
    assert!(
        matches!(&wrong, tokio_tungstenite::tungstenite::Error::Http(response) if response.status() == 401),
        "{wrong}"
    );
    // Not issued for what the policy denies, nor without an identity.
    assert_eq!(
        ticket(&app, "/api/v1/namespaces/default/pods/api-0/log")
            .await
            .status(),
        403
    );
    let anonymous = app
        .client
        .post(app.url("/api/kubernetes/clusters/dev/tickets"))
        .json(&json!({"path": EXEC}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
