//! Long-lived responses: watch streams, followed logs, exec over WebSocket and the
//! raw upgrade echo.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{client, pod, start, tls_connect, LineReader, STEP, TOKEN};
use futures::{SinkExt, StreamExt};
use kube_double::KubeDouble;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

async fn watch(double: &KubeDouble, path_and_query: &str) -> LineReader {
    let response = client(double)
        .get(format!("{}{path_and_query}", double.url()))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    LineReader::new(response)
}

fn configmap(name: &str, labels: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": "default", "labels": labels}})
}

#[tokio::test]
async fn watch_sends_existing_objects_then_each_change_as_it_happens() {
    let double = start().await;
    double.put_object("v1", "configmaps", configmap("existing", json!({})));
    let mut events = watch(&double, "/api/v1/namespaces/default/configmaps?watch=true").await;
    let (event_type, object) = events.next_event().await;
    assert_eq!(
        (event_type.as_str(), object["metadata"]["name"].as_str()),
        ("ADDED", Some("existing"))
    );
    assert!(events.is_quiet_for(Duration::from_millis(200)).await);

    double.put_object("v1", "configmaps", configmap("fresh", json!({})));
    let (event_type, object) = events.next_event().await;
    assert_eq!(
        (event_type.as_str(), object["metadata"]["name"].as_str()),
        ("ADDED", Some("fresh"))
    );

    let client = client(&double);
    client
        .patch(format!(
            "{}/api/v1/namespaces/default/configmaps/fresh",
            double.url()
        ))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"data":{"k":"v"}}"#)
        .send()
        .await
        .unwrap();
    let (event_type, object) = events.next_event().await;
    assert_eq!(event_type, "MODIFIED");
    assert_eq!(object["data"]["k"], "v");

    client
        .delete(format!(
            "{}/api/v1/namespaces/default/configmaps/fresh",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    let (event_type, object) = events.next_event().await;
    assert_eq!(
        (event_type.as_str(), object["metadata"]["name"].as_str()),
        ("DELETED", Some("fresh"))
    );
}

#[tokio::test]
async fn watch_resumes_after_a_resource_version_and_respects_selectors() {
    let double = start().await;
    double.put_object(
        "v1",
        "configmaps",
        configmap("before", json!({"app": "api"})),
    );
    let (_, list) = {
        let response = client(&double)
            .get(format!(
                "{}/api/v1/namespaces/default/configmaps",
                double.url()
            ))
            .send()
            .await
            .unwrap();
        ((), response.json::<Value>().await.unwrap())
    };
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    double.put_object(
        "v1",
        "configmaps",
        configmap("other", json!({"app": "web"})),
    );
    double.put_object(
        "v1",
        "configmaps",
        configmap("after", json!({"app": "api"})),
    );

    let mut events = watch(
        &double,
        &format!("/api/v1/configmaps?watch=1&resourceVersion={version}&labelSelector=app%3Dapi"),
    )
    .await;
    let (event_type, object) = events.next_event().await;
    assert_eq!(
        (event_type.as_str(), object["metadata"]["name"].as_str()),
        ("ADDED", Some("after"))
    );
    assert!(events.is_quiet_for(Duration::from_millis(200)).await);

    // Relabelling an object moves it out of the selection: DELETED for this watch.
    double.put_object(
        "v1",
        "configmaps",
        configmap("after", json!({"app": "web"})),
    );
    let (event_type, _) = events.next_event().await;
    assert_eq!(event_type, "DELETED");
}

#[tokio::test]
async fn watch_from_an_expired_version_gets_a_410_error_event() {
    let double = start().await;
    for index in 0..10_010 {
        double.put_object("v1", "configmaps", json!({"metadata": {"name": "churn", "namespace": "default"}, "data": {"i": index.to_string()}}));
    }
    let mut events = watch(
        &double,
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=3",
    )
    .await;
    let (event_type, status) = events.next_event().await;
    assert_eq!(event_type, "ERROR");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
}

#[tokio::test]
async fn dropping_the_double_ends_open_streams_on_http1_and_http2() {
    let double = start().await;
    double.put_object("v1", "pods", pod("default", "api-1", json!({})));
    let http2 = watch(&double, "/api/v1/namespaces/default/configmaps?watch=true").await;
    let http1 = common::client_builder(&double)
        .default_headers(common::bearer(TOKEN))
        .http1_only()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .get(format!(
            "{}/api/v1/namespaces/default/pods/api-1/log?follow=true",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    drop(double);
    http2.read_to_end().await;
    LineReader::new(http1).read_to_end().await;
}

#[tokio::test]
async fn watch_ends_after_timeout_seconds() {
    let double = start().await;
    let started = Instant::now();
    let mut events = watch(
        &double,
        "/api/v1/namespaces/default/secrets?watch=true&timeoutSeconds=1",
    )
    .await;
    assert_eq!(events.next_line().await, None);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn followed_logs_receive_lines_appended_later() {
    let double = start().await;
    double.put_object("v1", "pods", pod("shop", "api-1", json!({})));
    double.append_log("shop", "api-1", "first");
    double.append_log("shop", "api-1", "second");
    let client = client(&double);
    let tail = client
        .get(format!(
            "{}/api/v1/namespaces/shop/pods/api-1/log?tailLines=1",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(tail.headers()["content-type"], "text/plain");
    assert_eq!(tail.text().await.unwrap(), "second\n");

    let response = client
        .get(format!(
            "{}/api/v1/namespaces/shop/pods/api-1/log?follow=true&container=app",
            double.url()
        ))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    let mut lines = LineReader::new(response);
    assert_eq!(lines.next_line().await.as_deref(), Some("first"));
    assert_eq!(lines.next_line().await.as_deref(), Some("second"));
    assert!(lines.is_quiet_for(Duration::from_millis(200)).await);
    double.append_log("shop", "api-1", "third");
    assert_eq!(lines.next_line().await.as_deref(), Some("third"));

    let missing = client
        .get(format!(
            "{}/api/v1/namespaces/shop/pods/nope/log",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let wrong_container = client
        .get(format!(
            "{}/api/v1/namespaces/shop/pods/api-1/log?container=other",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_container.status(), 400);
}

#[tokio::test]
async fn generated_logs_stream_their_exact_size() {
    let double = start().await;
    double.put_object("v1", "pods", pod("shop", "big", json!({})));
    double.set_generated_log("shop", "big", 5_000_000);
    let body = client(&double)
        .get(format!(
            "{}/api/v1/namespaces/shop/pods/big/log",
            double.url()
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), 5_000_000);
    assert!(body.ends_with(b"\n"));
}

/// Opens an exec or attach WebSocket with the given subprotocols.
async fn open_websocket(
    double: &KubeDouble,
    path_and_query: &str,
    protocols: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Option<String>,
) {
    let url = format!("{}{path_and_query}", double.url()).replace("https://", "wss://");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    if !protocols.contains("base64url.bearer") {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    }
    let stream = tls_connect(double).await;
    let (socket, response) =
        tokio::time::timeout(STEP, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("the handshake within the step timeout")
            .expect("a WebSocket handshake");
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|value| value.to_str().unwrap().to_owned());
    (socket, protocol)
}

/// Reads binary channel messages until the server closes: (channel, data) pairs.
async fn read_channels<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>) -> Vec<(u8, Vec<u8>)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut received = Vec::new();
    loop {
        let message = tokio::time::timeout(STEP, socket.next())
            .await
            .expect("a message within the step timeout");
        match message {
            Some(Ok(Message::Binary(data))) => received.push((data[0], data[1..].to_vec())),
            Some(Ok(Message::Close(_))) | None => return received,
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("WebSocket error: {error}"),
        }
    }
}

#[tokio::test]
async fn exec_echo_over_the_v5_channel_protocol() {
    let double = start().await;
    double.put_object("v1", "pods", pod("shop", "api-1", json!({})));
    let (mut socket, protocol) = open_websocket(
        &double,
        "/api/v1/namespaces/shop/pods/api-1/exec?command=echo&command=hi&command=there&stdout=true&stderr=true",
        "v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io, channel.k8s.io",
    )
    .await;
    assert_eq!(protocol.as_deref(), Some("v5.channel.k8s.io"));
    let received = read_channels(&mut socket).await;
    assert_eq!(received[0], (1, b"hi there\n".to_vec()));
    let (channel, status) = &received[1];
    assert_eq!(*channel, 3);
    assert_eq!(
        serde_json::from_slice::<Value>(status).unwrap(),
        json!({"metadata": {}, "status": "Success"})
    );
}

#[tokio::test]
async fn exec_cat_echoes_stdin_until_the_v5_close_signal() {
    let double = start().await;
    double.put_object("v1", "pods", pod("shop", "api-1", json!({})));
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(TOKEN);
    let (mut socket, protocol) = open_websocket(
        &double,
        "/api/v1/namespaces/shop/pods/api-1/exec?command=cat&stdin=true&stdout=true",
        &format!("base64url.bearer.authorization.k8s.io.{token}, v5.channel.k8s.io"),
    )
    .await;
    assert_eq!(protocol.as_deref(), Some("v5.channel.k8s.io"));
    socket
        .send(Message::Binary(b"\x00hello ".to_vec().into()))
        .await
        .unwrap();
    socket
        .send(Message::Binary(b"\x00world".to_vec().into()))
        .await
        .unwrap();
    socket
        .send(Message::Binary(vec![255, 0].into()))
        .await
        .unwrap();
    let received = read_channels(&mut socket).await;
    let stdout: Vec<u8> = received
        .iter()
        .filter(|(channel, _)| *channel == 1)
        .flat_map(|(_, data)| data.clone())
        .collect();
    assert_eq!(stdout, b"hello world");
    assert_eq!(received.last().unwrap().0, 3);
}

#[tokio::test]
async fn exec_of_other_commands_fails_with_exit_code_127() {
    let double = start().await;
    double.put_object("v1", "pods", pod("shop", "api-1", json!({})));
    let (mut socket, _) = open_websocket(
        &double,
        "/api/v1/namespaces/shop/pods/api-1/exec?command=ls&stdout=true&stderr=true",
        "v4.channel.k8s.io",
    )
    .await;
    let received = read_channels(&mut socket).await;
    assert_eq!(received[0].0, 2);
    let status: Value = serde_json::from_slice(&received[1].1).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "127");
}

#[tokio::test]
async fn spdy_upgrades_negotiate_a_channel_protocol_and_missing_pods_are_404() {
    let double = start().await;
    double.put_object("v1", "pods", pod("shop", "api-1", json!({})));
    // Upgrades are HTTP/1.1 only, as kubectl sends them.
    let client = common::client_builder(&double)
        .default_headers(common::bearer(TOKEN))
        .http1_only()
        .build()
        .unwrap();
    let upgrade = |versions: &[&str]| {
        let mut request = client
            .post(format!(
                "{}/api/v1/namespaces/shop/pods/api-1/exec?command=echo&stdout=true",
                double.url()
            ))
            .header("Upgrade", "SPDY/3.1")
            .header("Connection", "Upgrade");
        for version in versions {
            request = request.header("X-Stream-Protocol-Version", *version);
        }
        request.send()
    };
    // The channel protocol is the client's first that the double speaks.
    let switched = upgrade(&["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"])
        .await
        .unwrap();
    assert_eq!(switched.status(), 101);
    assert_eq!(switched.headers()["upgrade"], "SPDY/3.1");
    assert_eq!(
        switched.headers()["x-stream-protocol-version"],
        "v4.channel.k8s.io"
    );
    let unversioned = upgrade(&[]).await.unwrap();
    assert_eq!(unversioned.status(), 400);
    let status: Value = unversioned.json().await.unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("X-Stream-Protocol-Version"),
        "{status}"
    );
    let unknown = upgrade(&["v9.channel.k8s.io"]).await.unwrap();
    assert_eq!(unknown.status(), 403);
    assert_eq!(
        unknown.headers()["x-accepted-stream-protocol-versions"],
        "v4.channel.k8s.io"
    );
    let missing = client
        .get(format!(
            "{}/api/v1/namespaces/shop/pods/nope/exec?command=echo&stdout=true",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn echo_upgrade_returns_every_byte() {
    let double = start().await;
    let mut stream = tls_connect(&double).await;
    let request = format!(
        "GET /debug/echo-upgrade HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: Upgrade\r\nUpgrade: kubeportal-test/1\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(STEP, stream.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: kubeportal-test/1"), "{head}");
    stream.write_all(b"ping across the upgrade").await.unwrap();
    let mut echoed = vec![0u8; "ping across the upgrade".len()];
    tokio::time::timeout(STEP, stream.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, b"ping across the upgrade");
}
