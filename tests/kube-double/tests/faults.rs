//! Faults: each one observed the way a client (such as the proxy) meets it.

mod common;

use std::time::{Duration, Instant};

use common::{bearer, client, client_builder, start, TOKEN};
use kube_double::Fault;
use serde_json::Value;

#[tokio::test]
async fn refuse_closes_the_port_and_none_reopens_it() {
    let double = start().await;
    let client = client(&double);
    let url = format!("{}/version", double.url());
    assert!(client.get(&url).send().await.unwrap().status().is_success());

    double.set_fault(Fault::Refuse);
    let refused = tokio::net::TcpStream::connect(double.addr()).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    let error = client.get(&url).send().await.unwrap_err();
    assert!(error.is_connect() || error.is_request(), "{error:?}");

    double.set_fault(Fault::None);
    assert!(client.get(&url).send().await.unwrap().status().is_success());
}

#[tokio::test]
async fn hang_accepts_and_records_but_never_answers() {
    let double = start().await;
    double.set_fault(Fault::Hang);
    let client = client_builder(&double)
        .default_headers(bearer(TOKEN))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let error = client
        .get(format!("{}/api/v1/pods", double.url()))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(double.requests().len(), 1);
    double.set_fault(Fault::None);
    assert!(client
        .get(format!("{}/api/v1/pods", double.url()))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
}

#[tokio::test]
async fn slow_body_sends_headers_then_one_byte_per_interval() {
    let double = start().await;
    let interval = Duration::from_millis(150);
    double.set_fault(Fault::SlowBody { interval });
    let started = Instant::now();
    let mut response = client(&double)
        .get(format!("{}/healthz", double.url()))
        .send()
        .await
        .unwrap();
    let headers_after = started.elapsed();
    let mut chunks = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
    }
    let body_after = started.elapsed();
    assert_eq!(chunks.concat(), b"ok");
    assert!(
        chunks.iter().all(|chunk| chunk.len() == 1),
        "{chunks:?} in {body_after:?}"
    );
    assert!(body_after >= interval * 2, "{body_after:?}");
    assert!(
        headers_after + interval <= body_after,
        "headers {headers_after:?}, body {body_after:?}"
    );
}

#[tokio::test]
async fn reset_mid_stream_cuts_the_body_after_the_headers() {
    let double = start().await;
    double.put_object("v1", "configmaps", serde_json::json!({"metadata": {"name": "big", "namespace": "default"}, "data": {"blob": "x".repeat(10_000)}}));
    double.set_fault(Fault::ResetMidStream);
    let response = client(&double)
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps/big",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let error = response.bytes().await.unwrap_err();
    assert!(error.is_body() || error.is_decode(), "{error:?}");

    double.set_fault(Fault::None);
    let whole = client(&double)
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps/big",
            double.url()
        ))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(whole["data"]["blob"].as_str().unwrap().len(), 10_000);
}

#[tokio::test]
async fn wrong_certificate_fails_verification_against_the_ca() {
    let double = start().await;
    let pooled = client(&double);
    let url = format!("{}/version", double.url());
    assert!(pooled.get(&url).send().await.is_ok());
    double.set_fault(Fault::WrongCertificate);
    let is_certificate_error = |error: reqwest::Error| {
        let chain = format!("{error:?}");
        chain.contains("UnknownIssuer") || chain.contains("invalid peer certificate")
    };
    let fresh = client(&double).get(&url).send().await.unwrap_err();
    assert!(is_certificate_error(fresh));
    // The pooled connection was reset; once the client notices, it reconnects and
    // meets the impostor's certificate.
    let mut last = pooled.get(&url).send().await.unwrap_err();
    if !format!("{last:?}").contains("certificate") {
        last = pooled.get(&url).send().await.unwrap_err();
    }
    assert!(is_certificate_error(last));
    double.set_fault(Fault::None);
    assert!(client(&double).get(&url).send().await.is_ok());
}

#[tokio::test]
async fn failing_resources_answer_their_status_until_lifted() {
    let double = start().await;
    let client = client(&double);
    double.fail_resource("configmaps", 503);
    let failed = client
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 503);
    let status: Value = failed.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert_eq!(status["code"], 503);
    let other = client
        .get(format!(
            "{}/api/v1/namespaces/default/secrets",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(double.list_calls("configmaps"), 1);

    double.fail_resource("configmaps", 0);
    let lifted = client
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps",
            double.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 200);
}

#[tokio::test]
async fn delayed_resources_answer_late() {
    let double = start().await;
    let client = client(&double);
    double.delay_resource("pods", Duration::from_millis(400));
    let started = Instant::now();
    let response = client
        .get(format!("{}/api/v1/pods", double.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let started = Instant::now();
    client
        .get(format!("{}/api/v1/services", double.url()))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(400));
}
