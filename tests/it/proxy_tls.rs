//! Per-cluster TLS: the registered CA, a wrong CA, a server certificate given
//! as its own caData, caData refused at registration, skip-verify, and mTLS.

use kubeportal_tests::{
    register, spawn_app, ClientAuth, ConfigSource, DoubleOptions, KubeDouble, ServerCertificate,
    TestApp, TestDb,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn get(app: &TestApp, cluster: &str) -> (StatusCode, String) {
    let response = app
        .client
        .get(app.url("/api/kubernetes/proxy/api/v1/namespaces"))
        .header("Backstage-Kubernetes-Cluster", cluster)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

fn other_ca() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[tokio::test]
async fn the_registered_ca_is_trusted_and_no_other() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let double = KubeDouble::start(DoubleOptions {
        tokens: vec!["sa-token-value-123".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let base = json!({"url": double.url(), "authProvider": "serviceAccount", "serviceAccountToken": "sa-token-value-123"});
    let with = |name: &str, extra: Value| {
        let mut body = base.clone();
        body["name"] = json!(name);
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    register(&app, with("right-ca", json!({"caData": double.ca_pem()}))).await;
    register(&app, with("wrong-ca", json!({"caData": other_ca()}))).await;
    register(&app, with("no-ca", json!({}))).await;
    register(&app, with("skip-verify", json!({"skipTLSVerify": true}))).await;

    let (status, body) = get(&app, "right-ca").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for cluster in ["wrong-ca", "no-ca"] {
        let (status, body) = get(&app, cluster).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(cluster), "{message}");
        assert!(message.to_lowercase().contains("certificate"), "{message}");
        assert!(!body.contains("sa-token-value-123"));
    }

    let (status, body) = get(&app, "skip-verify").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn client_certificates_authenticate_to_clusters_that_require_them() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let double = KubeDouble::start(DoubleOptions {
        client_auth: ClientAuth::Required,
        tokens: vec![],
        ..Default::default()
    })
    .await
    .unwrap();
    let (cert, key) = double.issue_client_cert("kubeportal");
    register(
        &app,
        json!({"name": "mtls", "url": double.url(), "authProvider": "clientCert", "caData": double.ca_pem(), "clientCertData": cert, "clientKeyData": key}),
    )
    .await;
    register(&app, json!({"name": "no-cert", "url": double.url(), "authProvider": "client", "caData": double.ca_pem()})).await;

    let (status, body) = get(&app, "mtls").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let recorded = double.requests().pop().unwrap();
    assert!(
        format!("{:?}", recorded.identity).contains("kubeportal"),
        "{:?}",
        recorded.identity
    );
    assert!(recorded
        .headers
        .iter()
        .all(|(name, _)| name != "authorization"));

    let response = app
        .client
        .get(app.url("/api/kubernetes/proxy/api/v1/namespaces"))
        .header("Backstage-Kubernetes-Cluster", "no-cert")
        .header("Backstage-Kubernetes-Authorization", "Bearer whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_GATEWAY,
        "a cluster requiring mTLS refuses the handshake"
    );
    assert!(!response.text().await.unwrap().contains("whatever"));
}

/// On a cluster with a client certificate, a request carrying the caller's
/// own cluster token is sent without kubeportal's certificate: the API server
/// authenticates a certificate before any token, so presenting it would run
/// the caller's request as kubeportal. Every way a caller token arrives (the
/// Backstage header, the WebSocket bearer subprotocol, an object query's
/// `auth`), on every kind of connection (shared, stream, upgrade).
#[tokio::test]
async fn a_callers_cluster_token_is_never_sent_with_kubeportals_certificate() {
    use base64::Engine as _;
    use futures::StreamExt;
    use kubeportal_tests::Identity;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    const CALLER_TOKEN: &str = "caller-cluster-token-5d1e";
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let double = KubeDouble::start(DoubleOptions {
        client_auth: ClientAuth::Optional,
        tokens: vec![CALLER_TOKEN.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    double.put_object(
        "v1",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "api-0", "namespace": "default", "labels": {"backstage.io/kubernetes-id": "shop"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}}),
    );
    let (cert, key) = double.issue_client_cert("kubeportal");
    for (name, provider) in [("mtls", "clientCert"), ("mtls-client", "client")] {
        register(
            &app,
            json!({"name": name, "url": double.url(), "authProvider": provider, "caData": double.ca_pem(),
                "clientCertData": cert, "clientKeyData": key}),
        )
        .await;
    }
    let last_identity = || double.requests().pop().expect("a request arrived").identity;
    let kubeportal = Identity::ClientCert("kubeportal".into());
    let caller = Identity::Token(CALLER_TOKEN.into());
    let proxied = |path: &str, token: Option<&str>| {
        let mut request = app
            .client
            .get(app.url(&format!("/api/kubernetes/proxy{path}")))
            .header("Backstage-Kubernetes-Cluster", "mtls");
        if let Some(token) = token {
            request = request.header(
                "Backstage-Kubernetes-Authorization",
                format!("Bearer {token}"),
            );
        }
        request.send()
    };

    // Without a caller token, kubeportal's certificate; with one, the caller.
    let (status, body) = get(&app, "mtls").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(last_identity(), kubeportal);
    let response = proxied("/api/v1/namespaces", Some(CALLER_TOKEN))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(last_identity(), caller);
    // And kubeportal's own connections still present the certificate.
    let (status, _) = get(&app, "mtls").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(last_identity(), kubeportal);

    // A watch (its own stream connections).
    let watch = proxied(
        "/api/v1/namespaces/default/pods?watch=true",
        Some(CALLER_TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    assert_eq!(last_identity(), caller);
    drop(watch);

    // An exec over WebSocket with the token as the bearer subprotocol.
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(CALLER_TOKEN);
    let mut request = format!(
        "ws://{}/api/kubernetes/proxy/api/v1/namespaces/default/pods/api-0/exec?command=echo&command=hi&stdout=true",
        app.addr
    )
    .into_client_request()
    .unwrap();
    request
        .headers_mut()
        .insert("Backstage-Kubernetes-Cluster", "mtls".parse().unwrap());
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.{encoded}")
            .parse()
            .unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    while let Some(message) = socket.next().await {
        if matches!(message, Ok(Message::Close(_)) | Err(_)) {
            break;
        }
    }
    let exec = double
        .requests()
        .into_iter()
        .rfind(|request| request.path.ends_with("/exec"))
        .expect("the exec reached the cluster");
    assert_eq!(exec.identity, caller);

    // An object query whose `auth` carries the caller's token (for the
    // cluster whose authProvider takes one).
    double.clear_requests();
    let objects = app
        .client
        .post(app.url("/api/kubernetes/services/shop"))
        .json(&json!({"entity": {"metadata": {"name": "shop",
            "annotations": {"backstage.io/kubernetes-cluster": "mtls-client"}}},
            "auth": {"client": CALLER_TOKEN}}))
        .send()
        .await
        .unwrap();
    assert_eq!(objects.status(), StatusCode::OK);
    let lists: Vec<_> = double
        .requests()
        .into_iter()
        .filter(|request| request.path.ends_with("/pods"))
        .collect();
    assert!(!lists.is_empty());
    assert!(
        lists.iter().all(|request| request.identity == caller),
        "{:?}",
        lists
            .iter()
            .map(|request| &request.identity)
            .collect::<Vec<_>>()
    );
}

const TOKEN: &str = "sa-token-value-123";

/// A certificate serving `names` (serverAuth), signed by `issuer` or, when
/// `issuer` is None, self-signed as a CA (`CA:TRUE`, as some hand-made
/// clusters serve). Returns the certificate and its key, PEM.
fn serving_certificate(
    names: &[&str],
    issuer: Option<(&rcgen::Certificate, &rcgen::KeyPair)>,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let certificate = match issuer {
        Some((issuer, issuer_key)) => params.signed_by(&key, issuer, issuer_key).unwrap(),
        None => {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::DigitalSignature,
                rcgen::KeyUsagePurpose::KeyCertSign,
            ];
            params.self_signed(&key).unwrap()
        }
    };
    (certificate.pem(), key.serialize_pem())
}

/// A CA the tests never give kubeportal.
fn hidden_ca() -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hand-made cluster CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    (params.self_signed(&key).unwrap(), key)
}

async fn serving((chain_pem, key_pem): &(String, String)) -> KubeDouble {
    KubeDouble::start(DoubleOptions {
        tokens: vec![TOKEN.into()],
        server_certificate: Some(ServerCertificate {
            chain_pem: chain_pem.clone(),
            key_pem: key_pem.clone(),
        }),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn cluster(name: &str, double: &KubeDouble, ca_data: &str) -> Value {
    json!({"name": name, "url": double.url(), "authProvider": "serviceAccount",
        "serviceAccountToken": TOKEN, "caData": ca_data})
}

async fn create(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/api/kubernetes/clusters"))
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// `caData` is trusted as kubectl (Go's crypto/x509) trusts it: a server
/// certificate that is itself in `caData` verifies, even when it is a
/// self-signed CA certificate or a leaf whose issuer is not given, as long
/// as it names the server; anything else still needs a chain to `caData`.
#[tokio::test]
async fn a_server_certificate_given_as_ca_data_is_trusted_for_its_own_names() {
    use base64::Engine as _;
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let (issuer, issuer_key) = hidden_ca();

    // (a) A self-signed CA:TRUE serving certificate, given as its own caData.
    let self_signed = serving_certificate(&["127.0.0.1", "localhost"], None);
    let self_signed_double = serving(&self_signed).await;
    // (b) The server's own leaf (signed by a CA kubeportal never sees), as
    // base64 of PEM the way kubeconfig carries it.
    let leaf = serving_certificate(&["127.0.0.1"], Some((&issuer, &issuer_key)));
    let leaf_double = serving(&leaf).await;
    let leaf_base64 = base64::engine::general_purpose::STANDARD.encode(&leaf.0);
    // (c) An exact match whose names do not cover 127.0.0.1.
    let elsewhere = serving_certificate(&["kube.example"], Some((&issuer, &issuer_key)));
    let elsewhere_double = serving(&elsewhere).await;
    // Another leaf of the same CA, for the same address: not the one given.
    let sibling = serving_certificate(&["127.0.0.1"], Some((&issuer, &issuer_key)));
    let sibling_double = serving(&sibling).await;

    let clusters = [
        ("self-signed-ca", &self_signed_double, self_signed.0.clone()),
        ("leaf", &leaf_double, leaf_base64.clone()),
        ("wrong-name", &elsewhere_double, elsewhere.0.clone()),
        ("sibling", &sibling_double, leaf_base64),
        // (d) An unrelated certificate as caData.
        ("unrelated", &leaf_double, other_ca()),
    ];
    for (name, double, ca_data) in &clusters {
        let (status, body) = create(&app, &cluster(name, double, ca_data)).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
    }

    for cluster in ["self-signed-ca", "leaf"] {
        let (status, body) = get(&app, cluster).await;
        assert_eq!(status, StatusCode::OK, "{cluster}: {body}");
    }
    assert!(self_signed_double
        .requests()
        .iter()
        .any(|request| request.path == "/api/v1/namespaces"));
    assert!(leaf_double
        .requests()
        .iter()
        .any(|request| request.path == "/api/v1/namespaces"));

    for cluster in ["wrong-name", "sibling", "unrelated"] {
        let (status, body) = get(&app, cluster).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{cluster}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(cluster), "{message}");
        assert!(message.to_lowercase().contains("certificate"), "{message}");
        assert!(!body.contains(TOKEN));
    }
    assert!(elsewhere_double.requests().is_empty());
    assert!(sibling_double.requests().is_empty());
}

/// `caData` that can never verify a server is refused when it is given, with
/// a 400 naming `caData`, rather than registered to answer 502 ever after:
/// on create, on update and in the configuration file.
#[tokio::test]
async fn ca_data_that_cannot_work_is_refused_at_registration() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::NoFile).await;
    let double = KubeDouble::start(DoubleOptions {
        tokens: vec![TOKEN.into()],
        ..Default::default()
    })
    .await
    .unwrap();

    // (e) An expired CA.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let expired = params.self_signed(&key).unwrap().pem();
    // (f) A private key where the certificate belongs.
    let (_, private_key) = serving_certificate(&["127.0.0.1"], None);

    for (ca_data, says) in [
        (expired.as_str(), "expired"),
        (private_key.as_str(), "private key"),
    ] {
        let (status, body) = create(&app, &cluster("bad-ca", &double, ca_data)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["name"], "InputError", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("caData") && message.contains(says),
            "{message}"
        );
        assert!(!body.to_string().contains("PRIVATE KEY"), "{body}");
    }

    // An update to such caData is refused the same way.
    let (status, body) = create(&app, &cluster("good-ca", &double, &double.ca_pem())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let response = app
        .client
        .put(app.url("/api/kubernetes/clusters/good-ca"))
        .json(
            &json!({"url": double.url(), "authProvider": "serviceAccount",
            "serviceAccountToken": TOKEN, "caData": expired, "version": 1}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("caData") && message.contains("expired"),
        "{message}"
    );
    let (status, body) = get(&app, "good-ca").await;
    assert_eq!(status, StatusCode::OK, "the stored caData is kept: {body}");

    // A cluster of the configuration file goes through the same validation.
    let yaml = format!(
        "kubernetes:\n  clusters:\n    - name: from-file\n      url: {}\n      authProvider: serviceAccount\n      serviceAccountToken: {TOKEN}\n      caData: {}\n",
        double.url(),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &expired),
    );
    let env = std::collections::BTreeMap::from([
        ("DATABASE_URL".to_owned(), db.url.clone()),
        (
            "KUBEPORTAL_SECRET_KEY".to_owned(),
            kubeportal_tests::test_secret_key(),
        ),
    ]);
    let error = match kubeportal::config::Config::from_parts(Some(&yaml), &env) {
        Ok(_) => panic!("a configuration with expired caData is accepted"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("caData") && error.contains("expired"),
        "{error}"
    );
}
