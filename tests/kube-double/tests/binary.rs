//! The `kube-double` binary: prints its URL, writes its CA, seeds the demo data and
//! stops on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const STEP: Duration = Duration::from_secs(10);

#[tokio::test]
async fn seeded_demo_serves_shop_api_and_stops_on_sigterm() {
    let directory =
        std::env::temp_dir().join(format!("kube-double-binary-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&directory).unwrap();
    let ca_file = directory.join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-double"))
        .args(["--seed-demo", "--token", "demo-token", "--ca-out"])
        .arg(&ca_file)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(STEP, stdout.next_line())
        .await
        .expect("the URL within the step timeout")
        .unwrap()
        .expect("a line with the URL");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_file).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(STEP)
        .build()
        .unwrap();
    let pods: Value = client
        .get(format!("{url}/api/v1/namespaces/shop/pods?labelSelector=backstage.io%2Fkubernetes-id%3Dshop-api"))
        .bearer_auth("demo-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 2);
    let pod = pods[0]["metadata"]["name"].as_str().unwrap();
    let deployments: Value = client
        .get(format!("{url}/apis/apps/v1/namespaces/shop/deployments"))
        .bearer_auth("demo-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deployments["items"][0]["metadata"]["name"], "shop-api");

    let mut log = String::new();
    for _ in 0..30 {
        log = client
            .get(format!("{url}/api/v1/namespaces/shop/pods/{pod}/log"))
            .bearer_auth("demo-token")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if !log.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(log.contains("GET /products/"), "{log:?}");

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(STEP, child.wait())
        .await
        .expect("exit within the step timeout")
        .unwrap();
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&directory);
}
