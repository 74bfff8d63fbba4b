//! Identity over HTTP: JWTs (HS256, ES256 PEM keys, JWKS), static tokens, guest.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use kubeportal_tests::{spawn_app, ConfigSource, TestDb};
use reqwest::StatusCode;
use serde_json::{json, Value};

const HS_SECRET: &str = "an-hs256-secret-for-tests-only-0123456789";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

fn claims(subject: &str, groups: &[&str]) -> Value {
    json!({"sub": subject, "ent": groups, "exp": now() + 600, "iat": now()})
}

fn policy_yaml(extra: &str) -> String {
    format!(
        r#"
auth:
  jwt:
    hs256Secret: {HS_SECRET}
{extra}
  staticTokens:
    - {{ token: static-token-for-scripts-123, subject: "user:default/script", groups: ["group:default/readers"] }}
permissions:
  rules:
    - {{ permission: kubernetes.clusters.read, subjects: ["group:default/readers"], decision: allow }}
"#
    )
}

async fn status(app: &kubeportal_tests::TestApp, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = app.client.get(app.url("/api/kubernetes/clusters"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn hs256_tokens_are_verified_and_checked_by_policy() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&policy_yaml(""))).await;

    let reader = hs256(claims(
        "user:default/alice",
        &["user:default/alice", "group:default/readers"],
    ));
    assert_eq!(status(&app, Some(&reader)).await.0, StatusCode::OK);

    let denied = hs256(claims("user:default/bob", &["group:default/others"]));
    let (code, body) = status(&app, Some(&denied)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        body["error"],
        json!({"name": "NotAllowedError", "message": "Unauthorized"})
    );

    let expired = hs256(
        json!({"sub": "user:default/alice", "ent": ["group:default/readers"], "exp": now() - 3600}),
    );
    let (code, body) = status(&app, Some(&expired)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["name"], "AuthenticationError");

    let not_yet = hs256(
        json!({"sub": "user:default/alice", "ent": ["group:default/readers"], "exp": now() + 7200, "nbf": now() + 3600}),
    );
    assert_eq!(
        status(&app, Some(&not_yet)).await.0,
        StatusCode::UNAUTHORIZED
    );

    let no_exp = hs256(json!({"sub": "user:default/alice", "ent": ["group:default/readers"]}));
    assert_eq!(
        status(&app, Some(&no_exp)).await.0,
        StatusCode::UNAUTHORIZED
    );

    let wrong_key = encode(
        &Header::new(Algorithm::HS256),
        &claims("user:default/alice", &["group:default/readers"]),
        &EncodingKey::from_secret(b"some-other-secret-entirely-000000000"),
    )
    .unwrap();
    assert_eq!(
        status(&app, Some(&wrong_key)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // alg: none, with the payload of a valid reader.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD
        .encode(claims("user:default/alice", &["group:default/readers"]).to_string());
    assert_eq!(
        status(&app, Some(&format!("{header}.{payload}."))).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The same payload with a re-used valid signature.
    let signature = reader.rsplit('.').next().unwrap();
    assert_eq!(
        status(&app, Some(&format!("{header}.{payload}.{signature}")))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(
        status(&app, Some("garbage")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // On loopback the guest exists, and this policy gives it nothing.
    let (code, body) = status(&app, None).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn static_tokens_identify_scripts() {
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&policy_yaml(""))).await;
    assert_eq!(
        status(&app, Some("static-token-for-scripts-123")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, Some("static-token-for-scripts-12")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

fn jwk_of(key: &rcgen::KeyPair, kid: &str) -> Value {
    let raw = key.public_key_raw();
    assert_eq!(raw.len(), 65, "uncompressed P-256 point");
    json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    })
}

fn es256(key: &rcgen::KeyPair, kid: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        &claims,
        &EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn es256_public_keys_from_configuration() {
    let key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    let pem = key.public_key_pem().replace('\n', "\n        ");
    let yaml = policy_yaml(&format!("    publicKeys:\n      - |\n        {pem}"));
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    let good = es256(
        &key,
        None,
        claims("user:default/alice", &["group:default/readers"]),
    );
    assert_eq!(status(&app, Some(&good)).await.0, StatusCode::OK);
    let forged = es256(
        &other,
        None,
        claims("user:default/alice", &["group:default/readers"]),
    );
    assert_eq!(
        status(&app, Some(&forged)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn jwks_keys_are_fetched_on_unknown_kid_with_a_refresh_floor() {
    let first = rcgen::KeyPair::generate().unwrap();
    let second = rcgen::KeyPair::generate().unwrap();
    let keys = Arc::new(std::sync::Mutex::new(vec![jwk_of(&first, "k1")]));
    let fetches = Arc::new(AtomicUsize::new(0));
    let router = {
        let keys = keys.clone();
        let fetches = fetches.clone();
        axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let keys = keys.clone();
                let fetches = fetches.clone();
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"keys": *keys.lock().unwrap()}))
                }
            }),
        )
    };
    let jwks_url = format!(
        "{}/jwks.json",
        kubeportal_tests::serve_stand_in(router).await
    );

    let yaml = policy_yaml(&format!(
        "    jwksUrl: {jwks_url}\n    jwksMinRefreshSeconds: 1"
    ));
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    let alice = claims("user:default/alice", &["group:default/readers"]);

    assert_eq!(
        status(&app, Some(&es256(&first, Some("k1"), alice.clone())))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, Some(&es256(&first, Some("k1"), alice.clone())))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "known keys are cached");

    // Tokens with unknown kids: at most one fetch within the floor.
    for attempt in 0..20 {
        let forged = es256(&second, Some(&format!("bogus-{attempt}")), alice.clone());
        assert_eq!(
            status(&app, Some(&forged)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert!(
        fetches.load(Ordering::SeqCst) <= 2,
        "JWKS hammered: {} fetches",
        fetches.load(Ordering::SeqCst)
    );

    // Key rotation: a new kid is picked up once the floor has passed.
    keys.lock().unwrap().push(jwk_of(&second, "k2"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        status(&app, Some(&es256(&second, Some("k2"), alice.clone())))
            .await
            .0,
        StatusCode::OK
    );
    // A k2-signed token claiming k1 does not verify.
    assert_eq!(
        status(&app, Some(&es256(&second, Some("k1"), alice)))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn guest_follows_the_loopback_default_and_explicit_setting() {
    let db = TestDb::sqlite();
    let open = spawn_app(&db, ConfigSource::NoFile).await;
    let (code, body) = status(&open, None).await;
    assert_eq!(code, StatusCode::OK, "{body}");

    let closed = spawn_app(
        &db,
        ConfigSource::Yaml("auth: { guest: false }\npermissions: { rules: [{ permission: '*', subjects: ['*'], decision: allow }] }\n"),
    )
    .await;
    let (code, body) = status(&closed, None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["name"], "AuthenticationError");
}

#[tokio::test]
async fn anonymous_proxy_requests_are_401_before_any_other_refusal() {
    let db = TestDb::sqlite();
    let app = spawn_app(
        &db,
        ConfigSource::Yaml("auth: { guest: false }\npermissions: { rules: [{ permission: '*', subjects: ['*'], decision: allow }] }\n"),
    )
    .await;
    // No cluster header; an encoded `/` in the path (400 for a known caller).
    for (path, cluster) in [
        ("/api/kubernetes/proxy/api/v1/pods", None),
        ("/api/kubernetes/proxy/api/v1/a%2Fb", Some("dev")),
        ("/api/kubernetes/clusters/dev/proxy/api/v1/a%2Fb", None),
    ] {
        let mut request = app.client.get(app.url(path));
        if let Some(cluster) = cluster {
            request = request.header("Backstage-Kubernetes-Cluster", cluster);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = response.json().await.unwrap();
        let name = body["error"]["name"].as_str().or(body["reason"].as_str());
        assert!(
            matches!(name, Some("AuthenticationError" | "Unauthorized")),
            "{path}: {body}"
        );
    }
}

/// An app that verifies ES256 tokens signed by a fresh key, with `jwt`'s
/// further settings (YAML lines under `auth.jwt`), and that key.
async fn es256_app(jwt: &str) -> (TestDb, kubeportal_tests::TestApp, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = key.public_key_pem().replace('\n', "\n        ");
    let yaml = policy_yaml(&format!("{jwt}    publicKeys:\n      - |\n        {pem}"));
    let db = TestDb::sqlite();
    let app = spawn_app(&db, ConfigSource::Yaml(&yaml)).await;
    (db, app, key)
}

/// The token cache's (hits, misses) in the metrics: a miss is a signature
/// checked.
async fn token_lookups(app: &kubeportal_tests::TestApp) -> (u64, u64) {
    let text = app.metrics_text().await;
    let count = |result: &str| {
        let series =
            format!("kubeportal_cache_lookups_total{{cache=\"tokens\",result=\"{result}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map_or(0, |count| count.parse::<u64>().unwrap())
    };
    (count("hit"), count("miss"))
}

/// Backstage signs user tokens with ES256: a signature check costs more CPU
/// than the rest of a proxied request, so a token that verified is checked
/// once, and refused again once it expires.
#[tokio::test]
async fn a_verified_token_is_checked_once_and_not_past_its_expiry() {
    let (_db, app, key) = es256_app("    leewaySeconds: 0\n").await;
    let lasting = es256(
        &key,
        None,
        claims("user:default/alice", &["group:default/readers"]),
    );
    for _ in 0..3 {
        assert_eq!(status(&app, Some(&lasting)).await.0, StatusCode::OK);
    }
    assert_eq!(token_lookups(&app).await, (2, 1));

    let exp = now() + 1;
    let brief = es256(
        &key,
        None,
        json!({"sub": "user:default/bob", "ent": ["group:default/readers"], "exp": exp}),
    );
    assert_eq!(status(&app, Some(&brief)).await.0, StatusCode::OK);
    assert_eq!(status(&app, Some(&brief)).await.0, StatusCode::OK);
    // Refused from the second after `exp` (no leeway), remembered or not.
    let refused_from = UNIX_EPOCH + std::time::Duration::from_millis((exp + 1) * 1000 + 50);
    if let Ok(wait) = refused_from.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let (code, body) = status(&app, Some(&brief)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.to_string().contains("expired"), "{body}");
}

/// With `cacheSeconds: 0` every request's signature is checked, and no
/// `cache="tokens"` series is exported for a cache that does not exist.
#[tokio::test]
async fn without_a_token_cache_no_token_lookups_are_exported() {
    let (_db, app, key) = es256_app("    cacheSeconds: 0\n").await;
    let token = es256(
        &key,
        None,
        claims("user:default/alice", &["group:default/readers"]),
    );
    for _ in 0..2 {
        assert_eq!(status(&app, Some(&token)).await.0, StatusCode::OK);
    }
    let text = app.metrics_text().await;
    assert!(
        text.contains("kubeportal_cache_lookups_total{cache="),
        "{text}"
    );
    assert!(!text.contains("cache=\"tokens\""), "{text}");
}
