//! Exec sessions through the proxy are recorded (asciicast, in the database)
//! when the cluster's policy asks, and refused when a required recording is
//! impossible; any replica reads a recording back and redeems a ticket,
//! once; a session's audit record carries its real duration and bytes.

use std::time::Duration;

use futures::StreamExt;
use kubeportal_tests::{
    double_cluster, register, spawn_app, start_double, ConfigSource, TestApp, TestDb,
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = r#"
recording:
  rules:
    - { clusters: ["dev"], mode: required }
permissions:
  rules:
    - { permission: "*", subjects: ["*"], decision: allow }
"#;

async fn exec(
    app: &TestApp,
    command: &[&str],
) -> Result<String, tokio_tungstenite::tungstenite::Error> {
    let query: String = command
        .iter()
        .map(|part| format!("command={part}&"))
        .collect();
    let url = format!(
        "ws://{}/api/kubernetes/proxy/api/v1/namespaces/default/pods/api-0/exec?{query}stdout=true",
        app.addr
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Backstage-Kubernetes-Cluster", "dev".parse().unwrap());
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let mut stdout = String::new();
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("exec ends")
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

async fn start(app: &TestApp) -> kubeportal_tests::KubeDouble {
    let double = start_double().await;
    double.put_object(
        "v1",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-0", "namespace": "default"},
               "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}}),
    );
    register(app, double_cluster("dev", &double)).await;
    double
}

#[tokio::test]
async fn exec_sessions_become_playable_asciicast_recordings() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let _double = start(&app).await;

    let output = exec(&app, &["echo", "recorded", "output"]).await.unwrap();
    assert_eq!(output, "recorded output\n");

    // The audit record names the recording.
    let names_recording = |item: &&Value| item.get("recording").is_some();
    let page = kubeportal_tests::audit_page_when(&app, None, "", |items| {
        items.iter().any(|item| names_recording(&item))
    })
    .await;
    let record = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(names_recording)
        .unwrap()
        .clone();
    let name = record["recording"]
        .as_str()
        .expect("audit record names the recording");
    let cast = app
        .client
        .get(app.url(&format!("/api/kubernetes/recordings/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(cast.status(), 200);
    assert_eq!(cast.headers()["content-type"], "application/x-asciicast");
    let text = cast.text().await.unwrap();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert!(header["width"].as_u64().unwrap() > 0 && header["height"].as_u64().unwrap() > 0);
    let mut played = String::new();
    let mut last_time = 0.0;
    for line in lines {
        let event: Value = serde_json::from_str(line).unwrap();
        let time = event[0].as_f64().unwrap();
        assert!(time >= last_time, "event times never go back");
        last_time = time;
        assert_eq!(event[1], "o");
        played.push_str(event[2].as_str().unwrap());
    }
    assert_eq!(played, "recorded output\n");

    // Listed by cluster, ended, with its size.
    let listed: Value = app
        .client
        .get(app.url("/api/kubernetes/recordings?cluster=DEV"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["id"], name);
    assert_eq!(items[0]["protocol"], "websocket");
    assert_eq!(items[0]["bytes"], text.len());
    assert!(items[0]["endedAt"].is_string(), "{listed}");
    let other: Value = app
        .client
        .get(app.url("/api/kubernetes/recordings?subject=user:default/nobody"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["items"], json!([]));
    let bad = app
        .client
        .get(app.url("/api/kubernetes/recordings?cursor=garbage"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let traversal = app
        .client
        .get(app.url("/api/kubernetes/recordings/..%2Fsecret.cast"))
        .send()
        .await
        .unwrap();
    assert_eq!(traversal.status(), 404);
}

#[tokio::test]
async fn required_recording_refuses_sessions_it_cannot_record() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let double = start(&app).await;
    // The store cannot keep recordings any more.
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    sqlx::query("DROP TABLE recording_chunks")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DROP TABLE recordings")
        .execute(&pool)
        .await
        .unwrap();

    let refused = exec(&app, &["echo", "hi"]).await.unwrap_err();
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 403);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["name"], "NotAllowedError");
            assert!(body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("must be recorded"));
        }
        other => panic!("expected a 403, got {other}"),
    }
    assert!(
        double
            .requests()
            .iter()
            .all(|request| !request.path.ends_with("/exec")),
        "the session never reached the cluster"
    );
}

#[tokio::test]
async fn required_recording_leaves_no_unrecorded_way_to_run_commands() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let double = start(&app).await;
    for (method, path) in [
        (
            reqwest::Method::POST,
            "/api/v1/nodes/node-1/proxy/run/default/api-0/app?cmd=id",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/nodes/node-1/proxy/exec/default/api-0/app?command=id",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/namespaces/default/pods/api-0/proxy/debug",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/proxy/namespaces/default/pods/api-0",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/namespaces/default/pods/api-0/exec?command=id",
        ),
    ] {
        let response = app
            .client
            .request(method, app.url(&format!("/api/kubernetes/proxy{path}")))
            .header("Backstage-Kubernetes-Cluster", "dev")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("must be recorded"),
            "{path}: {body}"
        );
    }
    assert!(double.requests().is_empty(), "nothing reached the cluster");
    // A recorded session still works.
    assert_eq!(exec(&app, &["echo", "hi"]).await.unwrap().trim(), "hi");
}

/// Opens a WebSocket exec of `cat` with a ticket (as a browser does) on
/// `app`, for a ticket `issuer` gave.
async fn ticketed_cat(
    issuer: &TestApp,
    app: &TestApp,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    ticketed_cat_with(app, &exec_ticket(issuer).await).await
}

/// A ticket for the exec of `api-0` on `dev`, from `issuer` (as the guest).
async fn exec_ticket(issuer: &TestApp) -> String {
    let issued: Value = issuer
        .client
        .post(issuer.url("/api/kubernetes/clusters/dev/tickets"))
        .json(&json!({"path": "/api/v1/namespaces/default/pods/api-0/exec"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    issued["ticket"].as_str().unwrap().to_owned()
}

async fn ticketed_cat_with(
    app: &TestApp,
    ticket: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let url = format!(
        "ws://{}/api/kubernetes/clusters/dev/proxy/api/v1/namespaces/default/pods/api-0/exec?command=cat&stdin=true&stdout=true&ticket={ticket}",
        app.addr
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// Sends `lines` to a `cat` session with pauses, closes stdin, and returns
/// what came back on stdout.
async fn converse(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    lines: &[Vec<u8>],
    pause: Duration,
) -> Vec<u8> {
    use futures::SinkExt;
    let (mut sink, mut stream) = socket.split();
    let reader = async {
        let mut stdout = Vec::new();
        while let Some(message) = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the session ends")
        {
            match message.unwrap() {
                Message::Binary(data) if data.first() == Some(&1) => {
                    stdout.extend_from_slice(&data[1..])
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        stdout
    };
    let writer = async {
        for line in lines {
            let mut frame = vec![0u8];
            frame.extend_from_slice(line);
            sink.send(Message::Binary(frame.into())).await.unwrap();
            tokio::time::sleep(pause).await;
        }
        // v5: close stdin.
        sink.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .unwrap();
    };
    let (stdout, ()) = tokio::join!(reader, writer);
    stdout
}

#[tokio::test]
async fn two_replicas_share_tickets_and_recordings_through_the_store() {
    let db = TestDb::postgres().await;
    let first = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let second = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let _double = start(&first).await;

    // A ticket the first replica issued opens a session on the second...
    let mut socket = ticketed_cat(&first, &second).await.unwrap();
    let said = converse(
        &mut socket,
        &[b"from the second replica\n".to_vec()],
        Duration::ZERO,
    )
    .await;
    assert_eq!(said, b"from the second replica\n");

    // ...once: spent there, it is spent everywhere.
    let ticket = &exec_ticket(&first).await;
    let mut socket = ticketed_cat_with(&second, ticket).await.unwrap();
    converse(&mut socket, &[b"once\n".to_vec()], Duration::ZERO).await;
    for replica in [&first, &second] {
        match ticketed_cat_with(replica, ticket).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401)
            }
            Err(other) => panic!("expected a 401, got {other}"),
            Ok(_) => panic!("a spent ticket opened a session"),
        }
    }

    // The sessions the second replica recorded are read back from the
    // first, once their ends are stored (just after the sessions close).
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = first
            .client
            .get(first.url("/api/kubernetes/recordings?cluster=dev"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = listed["items"].as_array().unwrap();
        if items.len() == 2 && items.iter().all(|item| item["endedAt"].is_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    let mut played = Vec::new();
    for item in items {
        let text = first
            .client
            .get(first.url(&format!(
                "/api/kubernetes/recordings/{}",
                item["id"].as_str().unwrap()
            )))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let output: String = text
            .lines()
            .skip(1)
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()[2]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        played.push(output);
    }
    played.sort();
    assert_eq!(played, ["from the second replica\n", "once\n"]);
}

#[tokio::test]
async fn a_sessions_audit_record_carries_its_duration_and_bytes() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let _double = start(&app).await;
    // About 1 MB over about 5 s: 20 pieces of 50 KiB, 250 ms apart.
    let piece = vec![b'x'; 50 * 1024];
    let lines: Vec<Vec<u8>> = (0..20).map(|_| piece.clone()).collect();
    let mut socket = ticketed_cat(&app, &app).await.unwrap();
    let echoed = converse(&mut socket, &lines, Duration::from_millis(250)).await;
    assert_eq!(echoed.len(), 20 * 50 * 1024);
    let is_session = |item: &&Value| {
        item["path"]
            .as_str()
            .is_some_and(|path| path.ends_with("/exec"))
            && item["status"] == 101
    };
    let page = kubeportal_tests::audit_page_when(&app, None, "", |items| {
        items.iter().any(|item| is_session(&item))
    })
    .await;
    let record = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(is_session)
        .unwrap()
        .clone();
    let duration = record["durationMs"].as_u64().unwrap();
    assert!((4_500..10_000).contains(&duration), "{record}");
    // Each way: the megabyte in WebSocket frames (and the stream bytes).
    for direction in ["bytesIn", "bytesOut"] {
        let bytes = record[direction].as_u64().unwrap();
        assert!(
            (1_024_000..1_200_000).contains(&bytes),
            "{direction}: {record}"
        );
    }
    assert!(record["recording"].is_string(), "{record}");
}

/// kubectl 1.27, which opens exec and attach sessions over SPDY/3.1 only.
const KUBECTL_SPDY: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
/// The current kubectl, which opens them over WebSocket.
const KUBECTL_WEBSOCKET: &str = "/usr/bin/kubectl";
const KUBECTL_TOKEN: &str = "recorded-kubectl-token-0123456";

/// Runs `kubectl` (the given binary) through kubeportal with `input` on stdin.
async fn kubectl(
    binary: &str,
    kubeconfig: &crate::kubectl::Kubectl,
    args: &[&str],
    input: &[u8],
) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(binary)
        .arg("--kubeconfig")
        .arg(&kubeconfig.kubeconfig)
        .arg(format!("--token={KUBECTL_TOKEN}"))
        .arg("--request-timeout=20s")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{binary} {args:?} timed out"))
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{binary} {args:?}: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The names of the recordings the audit trail holds.
async fn recordings(app: &TestApp, count: usize) -> Vec<String> {
    let page = kubeportal_tests::audit_page_when(app, None, "", |items| {
        items
            .iter()
            .filter(|item| item.get("recording").is_some())
            .count()
            >= count
    })
    .await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["recording"].as_str().map(str::to_owned))
        .collect()
}

/// What a recording plays back: its output events, joined.
async fn played(app: &TestApp, name: &str) -> String {
    let text = app
        .client
        .get(app.url(&format!("/api/kubernetes/recordings/{name}")))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .skip(1)
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|event| event[1] == "o")
        .map(|event| event[2].as_str().unwrap().to_owned())
        .collect()
}

/// Where recording is required, kubectl over SPDY/3.1 (1.27) is recorded as
/// kubectl over WebSocket is: both get through, and both recordings play the
/// same output.
#[tokio::test]
async fn kubectl_sessions_over_spdy_and_websocket_are_recorded_alike() {
    let db = TestDb::sqlite();
    let config = format!(
        "auth:\n  staticTokens:\n    - {{ token: {KUBECTL_TOKEN}, subject: \"user:default/sre\" }}\n{CONFIG}"
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&config)).await;
    let double = start(&app).await;
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = crate::kubectl::kubectl_for(&app, "dev", KUBECTL_TOKEN, scratch.path()).await;

    let sessions: [(&str, &[&str], &[u8], &str); 4] = [
        (KUBECTL_SPDY, &["echo", "hello"], b"", "hello\n"),
        (KUBECTL_WEBSOCKET, &["echo", "hello"], b"", "hello\n"),
        (KUBECTL_SPDY, &["-i", "cat"], b"one\ntwo\n", "one\ntwo\n"),
        (
            KUBECTL_WEBSOCKET,
            &["-i", "cat"],
            b"one\ntwo\n",
            "one\ntwo\n",
        ),
    ];
    let mut seen = Vec::new();
    for (index, (binary, command, input, expected)) in sessions.into_iter().enumerate() {
        let (flags, program) = command.split_at(usize::from(command[0] == "-i"));
        let mut args = vec!["exec", "-n", "default"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["api-0", "--"]);
        args.extend_from_slice(program);
        let output = kubectl(binary, &kubeconfig, &args, input).await;
        assert_eq!(output, expected, "{binary} {args:?}");
        let names = recordings(&app, index + 1).await;
        let new: Vec<&String> = names.iter().filter(|name| !seen.contains(*name)).collect();
        assert_eq!(
            new.len(),
            1,
            "{binary} {args:?}: one new recording in {names:?}"
        );
        let name = new[0].clone();
        assert_eq!(played(&app, &name).await, expected, "{binary} {args:?}");
        seen.push(name);
    }
    // Each kubectl spoke the protocol it was chosen for.
    let upgrades: Vec<String> = double
        .requests()
        .iter()
        .filter(|request| request.path.ends_with("/exec"))
        .filter_map(|request| request.header("upgrade").map(str::to_ascii_lowercase))
        .collect();
    assert_eq!(
        upgrades,
        ["spdy/3.1", "websocket", "spdy/3.1", "websocket"],
        "{upgrades:?}"
    );
}

/// A cluster that answers every exec over `v4.base64.channel.k8s.io` (which
/// kube-apiserver speaks, and the test double does not): `hello base64` on
/// stdout as a channel digit and base64 text, then the end.
async fn base64_cluster() -> String {
    use axum::extract::ws::{Message as WsMessage, WebSocketUpgrade};
    use base64::Engine as _;
    let router = axum::Router::new().fallback(|upgrade: WebSocketUpgrade| async move {
        upgrade
            .protocols(["v4.base64.channel.k8s.io"])
            .on_upgrade(|mut socket| async move {
                let text = format!(
                    "1{}",
                    base64::engine::general_purpose::STANDARD.encode("hello base64\n")
                );
                let _ = socket.send(WsMessage::Text(text.into())).await;
                let status = format!(
                    "3{}",
                    base64::engine::general_purpose::STANDARD.encode(r#"{"status":"Success"}"#)
                );
                let _ = socket.send(WsMessage::Text(status.into())).await;
                let _ = socket.send(WsMessage::Close(None)).await;
            })
    });
    kubeportal_tests::serve_stand_in(router).await
}

#[tokio::test]
async fn base64_channel_sessions_are_recorded_too() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let url = base64_cluster().await;
    register(
        &app,
        json!({"name": "dev", "url": url, "authProvider": "serviceAccount",
               "serviceAccountToken": "stand-in-token"}),
    )
    .await;
    let mut request = format!(
        "ws://{}/api/kubernetes/clusters/dev/proxy/api/v1/namespaces/default/pods/api-0/exec?command=echo&stdout=true",
        app.addr
    )
    .into_client_request()
    .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v4.base64.channel.k8s.io".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    while let Some(Ok(message)) = socket.next().await {
        if matches!(message, Message::Close(_)) {
            break;
        }
    }
    drop(socket);
    let names = recordings(&app, 1).await;
    assert_eq!(played(&app, &names[0]).await, "hello base64\n");
}

#[tokio::test]
async fn a_ticket_opens_a_websocket_session_and_nothing_else() {
    const TOKEN: &str = "ticket-user-token-0123456789ab";
    let config = format!(
        "auth:\n  guest: false\n  staticTokens:\n    - {{ token: {TOKEN}, subject: \"user:default/alice\" }}\n{CONFIG}"
    );
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&config)).await;
    let double = start(&app).await;
    let exec = "/api/v1/namespaces/default/pods/api-0/exec";
    let ticket = |path: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/kubernetes/clusters/dev/tickets"))
                .bearer_auth(TOKEN)
                .json(&json!({"path": path}))
                .send()
                .await
                .unwrap()
        }
    };
    // Only a pod's exec, attach or portforward gets a ticket.
    for path in [
        "/api/v1/namespaces/default/pods/api-0",
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/pods/api-0/log",
    ] {
        let response = ticket(path).await;
        assert_eq!(response.status(), 400, "{path}");
    }
    // Presented on anything but a WebSocket handshake, a ticket is no
    // credential: the caller is not signed in.
    let issued: Value = ticket(exec).await.json().await.unwrap();
    let value = issued["ticket"].as_str().unwrap();
    let plain = reqwest::Client::new();
    for (method, upgrade) in [
        (reqwest::Method::DELETE, Some("x")),
        (reqwest::Method::POST, Some("SPDY/3.1")),
        (reqwest::Method::GET, Some("foo")),
        (reqwest::Method::GET, None),
    ] {
        let mut request = plain.request(
            method.clone(),
            app.url(&format!(
                "/api/kubernetes/clusters/dev/proxy{exec}?command=echo&stdout=true&ticket={value}"
            )),
        );
        if let Some(upgrade) = upgrade {
            request = request
                .header("Connection", "Upgrade")
                .header("Upgrade", upgrade);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {upgrade:?}");
    }
    assert!(
        double
            .requests()
            .iter()
            .all(|request| !request.path.ends_with("/exec")),
        "nothing reached the cluster"
    );
}

/// What kubeportal's store holds about the one exec session it served: its
/// audit record, and its recording (header, events).
async fn stored_session(
    state: &kubeportal::state::AppState,
) -> (
    kubeportal::audit::AuditRecord,
    kubeportal::audit::RecordingInfo,
    String,
) {
    let records = state
        .auditor
        .query(&kubeportal::audit::AuditFilter::default(), None, 50)
        .await
        .unwrap();
    let record = records
        .into_iter()
        .map(|stored| stored.record)
        .find(|record| record.path.ends_with("/exec") && record.status == 101)
        .expect("the session's audit record is written before the server stops");
    let name = record
        .recording
        .clone()
        .expect("the record names its recording");
    let (info, text) = state.recording.read(&name).await.unwrap().unwrap();
    (record, info, String::from_utf8(text).unwrap())
}

/// At shutdown an open exec session over WebSocket gets a close frame
/// (1001, going away) rather than a cut connection; its recording is
/// finished and says why it ended, and its audit record is written before
/// the server's task returns.
#[tokio::test]
async fn shutdown_ends_a_websocket_session_with_a_close_frame_and_keeps_its_record() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let _double = start(&app).await;
    let mut socket = ticketed_cat(&app, &app).await.unwrap();
    echo(&mut socket, "typed-before-shutdown\n").await;
    let state = app.state.clone();
    let address = app.addr;
    let stopped = tokio::spawn(app.stop());
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the session ends at shutdown, well within the drain period")
        {
            Some(Ok(Message::Close(close))) => break close,
            Some(Ok(_)) => {}
            other => panic!("the session was cut without a close frame: {other:?}"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(close.reason.as_str(), "kubeportal is shutting down");
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .expect("the server stops once its sessions have ended")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "the listener is closed"
    );
    let (record, info, text) = stored_session(&state).await;
    assert!(record.bytes_in > 0 && record.bytes_out > 0, "{record:?}");
    assert!(
        info.ended_at.is_some(),
        "the recording is finished: {info:?}"
    );
    assert!(text.contains("typed-before-shutdown"), "{text}");
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last[1], "m", "{text}");
    assert_eq!(last[2], "session ended: kubeportal is shutting down");
}

/// kubectl 1.27 over SPDY/3.1, in the middle of `exec -i cat`, is told
/// GOAWAY and its connection closed at shutdown: it exits, and the session's
/// recording and audit record are stored whole.
#[tokio::test]
async fn shutdown_ends_a_spdy_session_cleanly() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let db = TestDb::sqlite();
    let config = format!(
        "auth:\n  staticTokens:\n    - {{ token: {KUBECTL_TOKEN}, subject: \"user:default/sre\" }}\n{CONFIG}"
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&config)).await;
    let _double = start(&app).await;
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = crate::kubectl::kubectl_for(&app, "dev", KUBECTL_TOKEN, scratch.path()).await;
    let mut child = tokio::process::Command::new(KUBECTL_SPDY)
        .arg("--kubeconfig")
        .arg(&kubeconfig.kubeconfig)
        .arg(format!("--token={KUBECTL_TOKEN}"))
        .args(["exec", "-i", "-n", "default", "api-0", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    stdin.write_all(b"typed-over-spdy\n").await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
        .await
        .expect("the echo")
        .unwrap();
    assert_eq!(echoed.as_deref(), Some("typed-over-spdy"));
    let state = app.state.clone();
    let stopped = tokio::spawn(app.stop());
    // stdin stays open: only the shutdown ends the session.
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("kubectl exits when kubeportal shuts down")
        .unwrap();
    drop(stdin);
    let _ = status;
    tokio::time::timeout(Duration::from_secs(20), stopped)
        .await
        .expect("the server stops once its sessions have ended")
        .unwrap();
    let (record, info, text) = stored_session(&state).await;
    assert_eq!(info.protocol, "spdy");
    assert!(record.bytes_in > 0 && record.bytes_out > 0, "{record:?}");
    assert!(
        info.ended_at.is_some(),
        "the recording is finished: {info:?}"
    );
    assert!(text.contains("typed-over-spdy"), "{text}");
    assert!(
        text.contains("session ended: kubeportal is shutting down"),
        "{text}"
    );
}

/// A client stuck in the middle of a frame at shutdown cannot hold the
/// server: its session is cut after the grace period, and its recording and
/// audit record are still stored whole.
#[tokio::test]
async fn shutdown_cuts_a_session_stuck_mid_frame_after_the_grace_period() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let _double = start(&app).await;
    let mut socket = ticketed_cat(&app, &app).await.unwrap();
    // A masked binary frame announcing 100 bytes, of which 3 come.
    let raw = match socket.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(stream) => stream,
        _ => unreachable!("plain HTTP"),
    };
    raw.write_all(&[0x82, 0x80 | 100, 1, 2, 3, 4, 1, 2, 3])
        .await
        .unwrap();
    raw.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let state = app.state.clone();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), app.stop())
        .await
        .expect("the server stops, the stuck session cut");
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(15)).contains(&took),
        "the stuck session had its grace period, and no more: {took:?}"
    );
    let (record, info, text) = stored_session(&state).await;
    assert!(record.bytes_in >= 9, "{record:?}");
    assert!(
        info.ended_at.is_some(),
        "the recording is finished: {info:?}"
    );
    assert!(
        text.contains("session ended: kubeportal is shutting down"),
        "{text}"
    );
}

/// Sends `line` on a `cat` session's stdin and waits until it comes back
/// on stdout, the session left open.
async fn echo(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    line: &str,
) {
    use futures::SinkExt;
    let mut frame = vec![0u8];
    frame.extend_from_slice(line.as_bytes());
    socket.send(Message::Binary(frame.into())).await.unwrap();
    let mut stdout = Vec::new();
    while !String::from_utf8_lossy(&stdout).contains(line) {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the echo")
            .expect("an open session")
            .unwrap();
        if let Message::Binary(data) = message {
            if data.first() == Some(&1) {
                stdout.extend_from_slice(&data[1..]);
            }
        }
    }
}

/// The newest recording, as the store holds it now.
async fn newest_recording(app: &TestApp) -> (kubeportal::audit::RecordingInfo, String) {
    let listed = app
        .state
        .recording
        .store()
        .list_recordings(&Default::default(), None, 1)
        .await
        .unwrap();
    let info = listed.into_iter().next().expect("a recording");
    let (info, text) = app.state.recording.read(&info.id).await.unwrap().unwrap();
    (info, String::from_utf8(text).unwrap())
}

/// Under `required`, a session whose recording reaches `maxBytes` ends: a
/// user cannot print junk up to the limit and then run commands unrecorded.
#[tokio::test]
async fn a_required_session_ends_at_its_recordings_size_limit() {
    use futures::SinkExt;
    let db = TestDb::sqlite();
    let config = format!(
        "recording:\n  maxBytes: 4096\n{}",
        CONFIG.trim_start_matches("\nrecording:\n")
    );
    let app = spawn_app(&db, ConfigSource::Yaml(&config)).await;
    let _double = start(&app).await;
    let mut socket = ticketed_cat(&app, &app).await.unwrap();
    let mut junk = vec![0u8];
    junk.extend_from_slice("j".repeat(5000).as_bytes());
    junk.push(b'\n');
    socket.send(Message::Binary(junk.into())).await.unwrap();
    let mut after = vec![0u8];
    after.extend_from_slice(b"run-after-the-limit\n");
    let _ = socket.send(Message::Binary(after.into())).await;
    let mut stdout = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the session ends at the limit")
        {
            Some(Ok(Message::Binary(data))) if data.first() == Some(&1) => {
                stdout.extend_from_slice(&data[1..])
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    assert!(
        !String::from_utf8_lossy(&stdout).contains("run-after-the-limit"),
        "output past the limit reached the user unrecorded"
    );
    let (info, text) = newest_recording(&app).await;
    assert!(info.truncated, "{info:?}");
    assert!(
        text.contains("recording stopped: it reached its size limit of 4096 bytes"),
        "{text}"
    );
}

/// Output followed by silence is stored within a chunk's age, not only
/// when more output comes: another replica, or an auditor, sees it while
/// the session runs, and a replica that dies loses at most that second.
#[tokio::test]
async fn output_followed_by_silence_is_stored_while_the_session_runs() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let _double = start(&app).await;
    let mut socket = ticketed_cat(&app, &app).await.unwrap();
    echo(&mut socket, "shown-to-the-user\n").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (info, text) = newest_recording(&app).await;
    assert!(info.ended_at.is_none(), "the session still runs");
    assert!(text.contains("shown-to-the-user"), "{text}");
}

/// What is still in progress at the end of the drain period (a watch, an
/// exec whose cluster has not answered its handshake) is dropped then, and
/// still audited: the watch with its status, the unanswered exec as 499,
/// its recording finished.
#[tokio::test]
async fn requests_in_flight_at_the_end_of_the_drain_are_audited() {
    let db = TestDb::sqlite();
    let config = format!("server:\n  drainTimeoutSeconds: 2\n{CONFIG}");
    let app = spawn_app(&db, ConfigSource::Yaml(&config)).await;
    let double = start(&app).await;
    let watch = app
        .client
        .get(app.url(
            "/api/kubernetes/clusters/dev/proxy/api/v1/namespaces/default/configmaps?watch=true",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    double.delay_resource("pods", Duration::from_secs(120));
    let ticket = exec_ticket(&app).await;
    let handshake = tokio::spawn({
        let app_url = app.addr;
        async move {
            let url = format!(
                "ws://{app_url}/api/kubernetes/clusters/dev/proxy/api/v1/namespaces/default/pods/api-0/exec?command=cat&stdin=true&stdout=true&ticket={ticket}"
            );
            let mut request = url.into_client_request().unwrap();
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                "v5.channel.k8s.io".parse().unwrap(),
            );
            let _ = tokio_tungstenite::connect_async(request).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = app.state.clone();
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("stops after the drain period");
    handshake.abort();
    drop(watch);
    let records = state
        .auditor
        .query(&kubeportal::audit::AuditFilter::default(), None, 100)
        .await
        .unwrap();
    let found = |suffix: &str| {
        records
            .iter()
            .map(|stored| &stored.record)
            .find(|record| {
                format!(
                    "{}?{}",
                    record.path,
                    record.query.clone().unwrap_or_default()
                )
                .contains(suffix)
            })
            .cloned()
    };
    let watched = found("configmaps?watch=true").expect("the watch is audited");
    assert_eq!(watched.status, 200);
    let exec = found("/exec?").expect("the unanswered exec is audited");
    assert_eq!(exec.status, kubeportal::audit::UNANSWERED);
    assert!(
        !exec.query.unwrap_or_default().contains("kt1."),
        "the ticket is masked"
    );
    let recordings = state
        .recording
        .store()
        .list_recordings(&Default::default(), None, 10)
        .await
        .unwrap();
    assert!(!recordings.is_empty());
    assert!(
        recordings.iter().all(|info| info.ended_at.is_some()),
        "{recordings:?}"
    );
}

/// A browser terminal's size (channel 4 of the WebSocket protocol) is in
/// its recording, so that it replays at the size the user saw.
#[tokio::test]
async fn a_websocket_sessions_terminal_size_is_recorded() {
    use futures::SinkExt;
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(CONFIG)).await;
    let _double = start(&app).await;
    let mut socket = ticketed_cat(&app, &app).await.unwrap();
    let mut resize = vec![4u8];
    resize.extend_from_slice(br#"{"Width":100,"Height":30}"#);
    socket.send(Message::Binary(resize.into())).await.unwrap();
    let echoed = converse(
        &mut socket,
        &[b"sized\n".to_vec()],
        Duration::from_millis(50),
    )
    .await;
    assert_eq!(echoed, b"sized\n");
    let (info, text) = loop {
        let (info, text) = newest_recording(&app).await;
        if info.ended_at.is_some() {
            break (info, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains(r#""r","100x30"]"#), "{info:?}: {text}");
    // The size comes before the output typed at it.
    assert!(text.find("100x30") < text.find("sized"), "{text}");
}
