//! Exec sessions through the proxy are recorded as asciicast files when the
//! cluster's policy asks, and refused when a required recording is impossible.

use std::time::Duration;

use futures::StreamExt;
use kubeportal_tests::{
    double_cluster, register, spawn_app, start_double, ConfigSource, TestApp, TestDb,
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn config(directory: &std::path::Path) -> String {
    format!(
        r#"
recording:
  directory: "{}"
  rules:
    - {{ clusters: ["dev"], mode: required }}
permissions:
  rules:
    - {{ permission: "*", subjects: ["*"], decision: allow }}
"#,
        directory.display()
    )
}

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
async fn exec_sessions_become_playable_asciicast_files() {
    let directory = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&config(directory.path()))).await;
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
    assert!(directory.path().join(name).is_file());

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
    let scratch = tempfile::tempdir().unwrap();
    let not_a_directory = scratch.path().join("file");
    std::fs::write(&not_a_directory, "").unwrap();
    let db = TestDb::sqlite();
    let app = spawn_app(
        &db,
        ConfigSource::Yaml(&config(&not_a_directory.join("recordings"))),
    )
    .await;
    let double = start(&app).await;

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
    let recordings = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&config(recordings.path()))).await;
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
    let directory = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let config = format!(
        "auth:\n  staticTokens:\n    - {{ token: {KUBECTL_TOKEN}, subject: \"user:default/sre\" }}\n{}",
        config(directory.path())
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
