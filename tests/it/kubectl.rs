//! kubectl, configured by kubeportal's kubeconfig endpoint, works through the
//! path form against the test double: get, apply, watch, logs -f, exec, delete.

use std::process::Stdio;
use std::time::Duration;

use kubeportal_tests::{
    double_cluster, register, server_tls_files, spawn_with_config, start_double, TestDb,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const PORTAL_TOKEN: &str = "kubectl-user-portal-token-0123";

const CONFIG: &str = r#"
auth:
  guest: false
  staticTokens:
    - { token: kubectl-user-portal-token-0123, subject: "user:default/sre", groups: ["group:default/sre"] }
permissions:
  rules:
    - { permission: kubernetes.proxy, subjects: ["*"], actions: [delete], resources: [namespaces], decision: deny }
    - { permission: "*", subjects: ["group:default/sre"], decision: allow }
"#;

struct Kubectl {
    kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=20s")
            .args(args)
            .kill_on_drop(true)
            .stdin(Stdio::null());
        command
    }

    async fn run(&self, args: &[&str]) -> String {
        let output = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {stdout}\n{stderr}"
        );
        stdout
    }

    /// Spawns a long-running kubectl and returns its stdout lines.
    fn stream(
        &self,
        args: &[&str],
    ) -> (
        tokio::process::Child,
        tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    ) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        (child, lines)
    }
}

async fn wait_for_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    needle: &str,
) {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return;
            }
        }
        panic!("stream ended before {needle:?}");
    })
    .await;
    assert!(found.is_ok(), "{needle:?} did not arrive");
}

#[tokio::test]
async fn kubectl_works_through_the_path_form() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let mut config =
        kubeportal_tests::config_for(&db, kubeportal_tests::ConfigSource::Yaml(CONFIG));
    config.server.tls = Some(server_tls_files(dir.path()));
    let app = spawn_with_config(config).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    double.put_object(
        "v1",
        "pods",
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "api-0", "namespace": "default", "labels": {"app": "api"}},
            "spec": {"containers": [{"name": "app", "image": "registry.example/api:1"}]},
            "status": {"phase": "Running"}
        }),
    );

    // The kubeconfig endpoint, then the user's own portal token.
    let kubeconfig_text = app
        .client
        .get(app.url("/api/kubernetes/clusters/dev/kubeconfig"))
        .bearer_auth(PORTAL_TOKEN)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        kubeconfig_text.contains("/api/kubernetes/clusters/dev/proxy"),
        "{kubeconfig_text}"
    );
    assert!(
        kubeconfig_text.contains("certificate-authority-data"),
        "{kubeconfig_text}"
    );
    assert!(
        !kubeconfig_text.contains("double-token"),
        "cluster credentials never leave kubeportal"
    );
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, &kubeconfig_text).unwrap();
    let kubectl = Kubectl { kubeconfig };
    kubectl
        .run(&[
            "config",
            "set-credentials",
            "kubeportal",
            &format!("--token={PORTAL_TOKEN}"),
        ])
        .await;

    let namespaces = kubectl.run(&["get", "ns"]).await;
    assert!(
        namespaces.contains("default") && namespaces.contains("kube-system"),
        "{namespaces}"
    );

    let manifest = dir.path().join("cm.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  colour: blue\n").unwrap();
    let applied = kubectl
        .run(&["apply", "-f", manifest.to_str().unwrap()])
        .await;
    assert!(applied.contains("configmap/settings"), "{applied}");
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  colour: green\n").unwrap();
    let reapplied = kubectl
        .run(&["apply", "-f", manifest.to_str().unwrap()])
        .await;
    assert!(reapplied.contains("configured"), "{reapplied}");
    let colour = kubectl
        .run(&[
            "get",
            "cm",
            "settings",
            "-n",
            "default",
            "-o",
            "jsonpath={.data.colour}",
        ])
        .await;
    assert_eq!(colour, "green");

    // get -w receives a change made after it started.
    let (mut watcher, mut watch_lines) = kubectl.stream(&["get", "cm", "-n", "default", "-w"]);
    wait_for_line(&mut watch_lines, "settings").await;
    double.put_object("v1", "configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "made-later", "namespace": "default"}}));
    wait_for_line(&mut watch_lines, "made-later").await;
    watcher.kill().await.unwrap();

    // logs -f receives lines while the stream is still open.
    double.append_log("default", "api-0", "line before following");
    let (mut follower, mut log_lines) = kubectl.stream(&["logs", "-f", "api-0", "-n", "default"]);
    wait_for_line(&mut log_lines, "line before following").await;
    double.append_log("default", "api-0", "line while following");
    wait_for_line(&mut log_lines, "line while following").await;
    assert!(
        follower.try_wait().unwrap().is_none(),
        "the log stream is still open"
    );
    follower.kill().await.unwrap();

    // exec over WebSocket.
    let hi = kubectl
        .run(&["exec", "api-0", "-n", "default", "--", "echo", "hi"])
        .await;
    assert_eq!(hi.trim(), "hi");
    let exec_request = double
        .requests()
        .into_iter()
        .find(|request| request.path.ends_with("/exec"))
        .expect("exec reached the cluster");
    assert!(exec_request
        .headers
        .iter()
        .any(|(name, value)| name == "upgrade" && value.eq_ignore_ascii_case("websocket")));

    let deleted = kubectl
        .run(&["delete", "cm", "settings", "-n", "default"])
        .await;
    assert!(deleted.contains("deleted"), "{deleted}");
    let remaining = kubectl
        .run(&["get", "cm", "-n", "default", "-o", "name"])
        .await;
    assert!(!remaining.contains("configmap/settings"), "{remaining}");

    // A policy denial reaches kubectl as a readable Status.
    let output = kubectl
        .command(&["delete", "ns", "kube-system"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Forbidden") || stderr.contains("Unauthorized"),
        "{stderr}"
    );
    let namespaces = kubectl.run(&["get", "ns"]).await;
    assert!(namespaces.contains("kube-system"));

    // Every request the cluster saw carried kubeportal's credential, never the portal token.
    for request in double.requests() {
        assert!(request
            .headers
            .iter()
            .all(|(_, value)| !value.contains(PORTAL_TOKEN)));
    }
}
