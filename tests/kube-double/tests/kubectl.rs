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
    // The toy shell reads its commands from stdin, or runs `-c`.
    assert_eq!(
        kubectl
            .run_with_input(
                &["exec", "-i", "api-1", "--", "sh"],
                b"echo from-a-shell\nhostname\n"
            )
            .await,
        "from-a-shell\napi-1\n"
    );
    assert_eq!(
        kubectl
            .run(&["exec", "api-1", "--", "bash", "-c", "echo 'one  two'"])
            .await,
        "one  two\n"
    );
    let (status, _, stderr) = kubectl
        .try_run(&["exec", "api-1", "--", "/bin/sh", "-c", "exit 3"])
        .await;
    assert_eq!(status.code(), Some(3), "{stderr}");
}

/// kubectl 1.27 opens exec and attach over SPDY/3.1: the same programs answer.
#[tokio::test]
async fn exec_and_attach_over_spdy() {
    let double = start().await;
    double.put_object("v1", "pods", pod("default", "api-1", json!({})));
    let kubectl = Kubectl::for_double(&double).with_binary(common::KUBECTL_SPDY);
    assert_eq!(
        kubectl.run(&["exec", "api-1", "--", "echo", "hi"]).await,
        "hi\n"
    );
    let exec = double
        .requests()
        .into_iter()
        .find(|request| request.path.ends_with("/exec"))
        .expect("an exec request");
    assert_eq!(exec.header("upgrade"), Some("SPDY/3.1"));
    assert_eq!(
        kubectl
            .run_with_input(&["exec", "-i", "api-1", "--", "cat"], b"one\ntwo\n")
            .await,
        "one\ntwo\n"
    );
    assert!(kubectl
        .run_with_input(&["attach", "-i", "api-1"], b"attached\n")
        .await
        .ends_with("attached\n"));
    let (status, _, stderr) = kubectl.try_run(&["exec", "api-1", "--", "ls"]).await;
    assert_eq!(status.code(), Some(127), "{stderr}");
    assert!(stderr.contains("executable file not found"), "{stderr}");
    assert_eq!(
        kubectl
            .run_with_input(
                &["exec", "-i", "api-1", "--", "/bin/bash"],
                b"echo over-spdy\nhostname\n"
            )
            .await,
        "over-spdy\napi-1\n"
    );
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

#[tokio::test]
async fn get_pods_across_namespaces_prints_the_server_side_pod_table() {
    let double = start().await;
    let mut ready = pod("shop", "api-1", json!({"app": "api"}));
    ready["status"]["containerStatuses"] =
        json!([{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]);
    double.put_object("v1", "pods", ready);
    let mut waiting = pod("default", "worker-1", json!({}));
    waiting["status"] = json!({"phase": "Pending", "containerStatuses": [
        {"name": "app", "ready": false, "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    ]});
    double.put_object("v1", "pods", waiting);
    let kubectl = Kubectl::for_double(&double);
    let output = kubectl.run(&["get", "pods", "-A"]).await;
    let lines: Vec<Vec<&str>> = output
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{output}"
    );
    assert_eq!(
        lines[1][..5],
        ["default", "worker-1", "0/1", "CrashLoopBackOff", "5"],
        "{output}"
    );
    assert_eq!(
        lines[2][..5],
        ["shop", "api-1", "1/1", "Running", "0"],
        "{output}"
    );
    let wide = kubectl
        .run(&["get", "pods", "-n", "shop", "-o", "wide"])
        .await;
    assert!(
        wide.lines().next().unwrap().contains("NOMINATED NODE"),
        "{wide}"
    );
    let list = double
        .requests()
        .into_iter()
        .find(|request| request.path == "/api/v1/pods")
        .expect("the list request");
    assert!(
        list.header("accept").is_some_and(
            |accept| accept.starts_with("application/json;as=Table;v=v1;g=meta.k8s.io")
        ),
        "{:?}",
        list.header("accept")
    );
}

#[tokio::test]
async fn get_namespaces_prints_their_status() {
    let double = start().await;
    double.put_object(
        "v1",
        "namespaces",
        json!({"metadata": {"name": "leaving"}, "status": {"phase": "Terminating"}}),
    );
    let kubectl = Kubectl::for_double(&double);
    let output = kubectl.run(&["get", "ns"]).await;
    let lines: Vec<Vec<&str>> = output
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "STATUS", "AGE"], "{output}");
    assert_eq!(lines[1][..2], ["default", "Active"], "{output}");
    assert_eq!(lines[3][..2], ["leaving", "Terminating"], "{output}");
}

#[tokio::test]
async fn describe_node_shows_its_lease_pods_and_events() {
    let double = start().await;
    double.put_object(
        "v1",
        "nodes",
        json!({
            "metadata": {"name": "node-a", "labels": {"kubernetes.io/hostname": "node-a"}},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                                "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian", "containerRuntimeVersion": "containerd://2.0.0"},
            },
        }),
    );
    double.put_object(
        "coordination.k8s.io/v1",
        "leases",
        json!({"metadata": {"name": "node-a", "namespace": "kube-node-lease"},
               "spec": {"holderIdentity": "node-a", "renewTime": "2026-01-01T00:00:00.000000Z"}}),
    );
    let on_node = |namespace: &str, name: &str, node: &str, phase: &str| {
        let mut placed = pod(namespace, name, json!({}));
        placed["spec"]["nodeName"] = json!(node);
        placed["status"]["phase"] = json!(phase);
        placed
    };
    double.put_object("v1", "pods", on_node("shop", "api-1", "node-a", "Running"));
    double.put_object(
        "v1",
        "pods",
        on_node("shop", "done-1", "node-a", "Succeeded"),
    );
    double.put_object(
        "v1",
        "pods",
        on_node("shop", "failed-1", "node-a", "Failed"),
    );
    double.put_object(
        "v1",
        "pods",
        on_node("shop", "elsewhere-1", "node-b", "Running"),
    );
    double.put_object(
        "v1",
        "events",
        json!({
            "metadata": {"name": "node-a.1", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": "node-a", "uid": "node-a"},
            "reason": "NodeReady", "message": "Node node-a status is now: NodeReady", "type": "Normal",
            "source": {"component": "kubelet", "host": "node-a"}, "count": 1,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
        }),
    );
    double.put_object(
        "v1",
        "events",
        json!({
            "metadata": {"name": "node-b.1", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": "node-b", "uid": "node-b"},
            "reason": "Rebooted", "message": "Node node-b rebooted", "type": "Warning",
        }),
    );
    let kubectl = Kubectl::for_double(&double);
    let output = kubectl.run(&["describe", "node", "node-a"]).await;
    let field = |name: &str| {
        output
            .lines()
            .find(|line| line.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{output}"))
            .to_owned()
    };
    assert!(field("Name:").ends_with("node-a"), "{output}");
    assert!(field("HolderIdentity:").ends_with("node-a"), "{output}");
    assert!(
        field("Non-terminated Pods:").contains("(1 in total)"),
        "{output}"
    );
    assert!(output.contains("api-1"), "{output}");
    for absent in ["done-1", "failed-1", "elsewhere-1", "Rebooted"] {
        assert!(!output.contains(absent), "{absent} in:\n{output}");
    }
    assert!(output.contains("NodeReady"), "{output}");
    let requests = double.requests();
    let pods = requests
        .iter()
        .find(|request| request.path == "/api/v1/pods")
        .expect("the pods list");
    assert!(
        pods.query
            .as_deref()
            .is_some_and(|query| query.contains("status.phase%21%3DFailed")),
        "{:?}",
        pods.query
    );
    assert!(requests.iter().any(|request| request.path
        == "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a"));
}
