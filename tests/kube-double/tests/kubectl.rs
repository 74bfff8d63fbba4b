//! The real kubectl (/usr/bin/kubectl) against the double: the commands the proxy
//! tests will later run through kubeportal.

mod common;

use std::time::Duration;

use common::{pod, start, Kubectl};
use serde_json::{json, Value};

const SETTINGS: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n";

#[tokio::test]
async fn get_namespaces() {
    let double = start().await;
    let kubectl = Kubectl::for_double(&double);
    let output = kubectl.run(&["get", "ns"]).await;
    let names: Vec<&str> = output
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(names, ["default", "kube-system"], "{output}");
}

#[tokio::test]
async fn apply_creates_then_configures_a_configmap() {
    let double = start().await;
    let kubectl = Kubectl::for_double(&double);
    let manifest = kubectl.path("settings.yaml");
    std::fs::write(&manifest, SETTINGS).unwrap();
    let manifest = manifest.to_str().unwrap();
    assert!(kubectl
        .run(&["apply", "-f", manifest])
        .await
        .contains("configmap/settings created"));
    std::fs::write(manifest, SETTINGS.replace("fast", "slow")).unwrap();
    assert!(kubectl
        .run(&["apply", "-f", manifest])
        .await
        .contains("configmap/settings configured"));
    assert!(kubectl
        .run(&["apply", "-f", manifest])
        .await
        .contains("configmap/settings unchanged"));
    let stored: Value =
        serde_json::from_str(&kubectl.run(&["get", "cm", "settings", "-o", "json"]).await).unwrap();
    assert_eq!(stored["data"]["mode"], "slow");
    assert!(
        stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
}

#[tokio::test]
async fn get_watch_prints_changes_made_afterwards() {
    let double = start().await;
    double.put_object(
        "v1",
        "configmaps",
        json!({"metadata": {"name": "existing", "namespace": "default"}}),
    );
    let kubectl = Kubectl::for_double(&double);
    let mut watching = kubectl.spawn(&["get", "cm", "-w"]);
    watching.wait_for_line("existing").await;
    // kubectl starts its watch right after printing the list.
    tokio::time::sleep(Duration::from_millis(300)).await;
    double.put_object(
        "v1",
        "configmaps",
        json!({"metadata": {"name": "arrived-later", "namespace": "default"}}),
    );
    watching.wait_for_line("arrived-later").await;
    watching.stop().await;
}

#[tokio::test]
async fn logs_follow_prints_lines_appended_afterwards() {
    let double = start().await;
    double.put_object("v1", "pods", pod("default", "api-1", json!({"app": "api"})));
    double.append_log("default", "api-1", "started");
    let kubectl = Kubectl::for_double(&double);
    let mut following = kubectl.spawn(&["logs", "-f", "api-1"]);
    following.wait_for_line("started").await;
    double.append_log("default", "api-1", "appended while following");
    following.wait_for_line("appended while following").await;
    following.stop().await;
}

#[tokio::test]
async fn exec_echo_prints_hi() {
    let double = start().await;
    double.put_object("v1", "pods", pod("default", "api-1", json!({"app": "api"})));
    let kubectl = Kubectl::for_double(&double);
    assert_eq!(
        kubectl.run(&["exec", "api-1", "--", "echo", "hi"]).await,
        "hi\n"
    );
    let exec = double
        .requests()
        .into_iter()
        .find(|request| request.path.ends_with("/exec"))
        .expect("an exec request");
    assert_eq!(exec.header("upgrade"), Some("websocket"));
}

#[tokio::test]
async fn exec_of_an_unknown_command_reports_its_exit_code() {
    let double = start().await;
    double.put_object("v1", "pods", pod("default", "api-1", json!({})));
    let kubectl = Kubectl::for_double(&double);
    let (status, _, stderr) = kubectl.try_run(&["exec", "api-1", "--", "ls"]).await;
    assert_eq!(status.code(), Some(127), "{stderr}");
}

#[tokio::test]
async fn delete_removes_a_configmap() {
    let double = start().await;
    double.put_object(
        "v1",
        "configmaps",
        json!({"metadata": {"name": "doomed", "namespace": "default"}}),
    );
    let kubectl = Kubectl::for_double(&double);
    assert!(kubectl
        .run(&["delete", "cm", "doomed"])
        .await
        .contains("configmap \"doomed\" deleted"));
    let (status, _, stderr) = kubectl.try_run(&["get", "cm", "doomed"]).await;
    assert!(!status.success());
    assert!(stderr.contains("NotFound"), "{stderr}");
}
