//! What the caller's token costs: the small GET through kubeportal with the
//! static token every other scenario uses, and with a portal user's token as
//! Backstage's auth backend signs them (an ES256 JWT naming the user and its
//! groups), remembered once verified (as shipped) and checked on every
//! request (`auth.jwt.cacheSeconds: 0`), in interleaved rounds.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::fixtures;
use crate::processes::{cpu_time, Binaries, PortalProcess};
use crate::proxy::Schedule;
use crate::wrk::{Load, Summary, Wrk};

/// The loads: throughput and CPU at 64 connections, latency at one.
pub const CONNECTIONS: [u32; 2] = [64, 1];

/// How the caller proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// The static token of every other scenario (a SHA-256 and a compare).
    StaticToken = 0,
    /// The ES256 user token, its signature checked once and then remembered.
    Remembered = 1,
    /// The same token, its signature checked on every request.
    EveryRequest = 2,
}

impl Way {
    pub const ALL: [Way; 3] = [Way::StaticToken, Way::Remembered, Way::EveryRequest];

    pub fn label(self) -> &'static str {
        match self {
            Way::StaticToken => "static token",
            Way::Remembered => "ES256 user token, remembered",
            Way::EveryRequest => "ES256 user token, checked every request",
        }
    }
}

/// Each way's best run, by load (in [`CONNECTIONS`]' order) and way.
pub struct IdentityResult {
    pub runs: [[Result<Summary, String>; 3]; 2],
    /// The user token's length in bytes.
    pub token_bytes: usize,
}

impl IdentityResult {
    pub fn run(&self, load: usize, way: Way) -> Result<&Summary, String> {
        self.runs[load][way as usize].as_ref().map_err(Clone::clone)
    }
}

/// A user token for the bench caller, signed with `key`, valid for an hour.
fn user_token(key: &rcgen::KeyPair) -> Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({
        "iss": "http://localhost:7007/api/auth",
        "aud": "backstage",
        "sub": "user:default/bench",
        "ent": ["user:default/bench", "group:default/bench", "group:default/developers"],
        "iat": now,
        "exp": now + 3600,
    });
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("bench-key".into());
    Ok(jsonwebtoken::encode(&header, &claims, &encoding)?)
}

/// `config` verifying tokens signed by `key`, remembering them for
/// `cache_seconds`.
fn with_verifier(config: &Value, key: &rcgen::KeyPair, cache_seconds: u64) -> Value {
    let mut config = config.clone();
    config["auth"]["jwt"] = json!({
        "publicKeys": [key.public_key_pem()],
        "issuer": "http://localhost:7007/api/auth",
        "audience": "backstage",
        "cacheSeconds": cache_seconds,
    });
    config
}

/// Starts the two kubeportals, checks that each serves the token, then
/// measures the three ways in rounds.
pub async fn measure(
    binaries: &Binaries,
    dir: &Path,
    wrk: &Wrk,
    config: &Value,
    pod_bytes: usize,
    schedule: Schedule,
) -> Result<IdentityResult> {
    let key = rcgen::KeyPair::generate()?;
    let token = user_token(&key)?;
    let remembering = PortalProcess::start(
        binaries,
        dir,
        "identity-remembered",
        &with_verifier(config, &key, 60),
    )
    .await?;
    let checking = PortalProcess::start(
        binaries,
        dir,
        "identity-every-request",
        &with_verifier(config, &key, 0),
    )
    .await?;
    let path = format!("/api/kubernetes/proxy{}", crate::proxy::get_pod_path());
    let headers = |token: &str| {
        vec![
            ("Authorization".to_owned(), format!("Bearer {token}")),
            (
                "Backstage-Kubernetes-Cluster".to_owned(),
                fixtures::CLUSTER.to_owned(),
            ),
        ]
    };
    let endpoints = [
        (&remembering, headers(fixtures::PORTAL_TOKEN)),
        (&remembering, headers(&token)),
        (&checking, headers(&token)),
    ];
    let client = reqwest::Client::new();
    for (way, (portal, headers)) in Way::ALL.iter().zip(&endpoints) {
        let mut request = client.get(format!("{}{path}", portal.url));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let status = request.send().await?.status();
        if !status.is_success() {
            bail!("{}: {status}", way.label());
        }
    }
    let mut runs: [[Option<Result<Summary, String>>; 3]; 2] = Default::default();
    for round in 0..schedule.rounds {
        eprintln!("  round {} of {}…", round + 1, schedule.rounds);
        for (load, connections) in CONNECTIONS.iter().enumerate() {
            for offset in 0..Way::ALL.len() {
                let way = Way::ALL[(offset + round) % Way::ALL.len()];
                let cell = &mut runs[load][way as usize];
                if matches!(cell, Some(Err(_))) {
                    continue;
                }
                let (portal, headers) = &endpoints[way as usize];
                let url = format!("{}{path}", portal.url);
                let result = run_once(
                    wrk,
                    &url,
                    headers,
                    portal.child.pid(),
                    *connections,
                    pod_bytes,
                    schedule,
                )
                .await
                .map_err(|error| format!("{error:#}"));
                match (result, &*cell) {
                    (Err(error), _) => {
                        eprintln!("    {} failed: {error}", way.label());
                        *cell = Some(Err(error));
                    }
                    (Ok(summary), Some(Ok(best))) if best.requests >= summary.requests => {}
                    (Ok(summary), _) => *cell = Some(Ok(summary)),
                }
            }
        }
    }
    Ok(IdentityResult {
        runs: runs.map(|load| load.map(|cell| cell.unwrap_or_else(|| Err("not measured".into())))),
        token_bytes: token.len(),
    })
}

/// One warm-up and one measured run, with kubeportal's CPU time.
async fn run_once(
    wrk: &Wrk,
    url: &str,
    headers: &[(String, String)],
    pid: u32,
    connections: u32,
    body_bytes: usize,
    schedule: Schedule,
) -> Result<Summary> {
    let load = |duration| Load {
        connections,
        duration,
    };
    wrk.run(url, headers, load(schedule.warm_up)).await?;
    let cpu_before = cpu_time(pid)?;
    let mut summary = wrk.run(url, headers, load(schedule.duration)).await?;
    summary.server_cpu = Some(cpu_time(pid)?.saturating_sub(cpu_before));
    if let Some(problem) = summary.problem() {
        bail!("{problem}");
    }
    let per_response = summary.bytes as f64 / summary.requests.max(1) as f64;
    if per_response < body_bytes as f64 {
        bail!("{per_response:.0} bytes per response, expected at least {body_bytes}");
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_token_is_an_es256_jwt_for_the_bench_groups() {
        let key = rcgen::KeyPair::generate().unwrap();
        let token = user_token(&key).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
        let decoding =
            jsonwebtoken::DecodingKey::from_ec_pem(key.public_key_pem().as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&["backstage"]);
        validation.set_issuer(&["http://localhost:7007/api/auth"]);
        let claims = jsonwebtoken::decode::<Value>(&token, &decoding, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["sub"], "user:default/bench");
        assert!(claims["ent"]
            .as_array()
            .unwrap()
            .contains(&json!("group:default/bench")));
        let config = with_verifier(&fixtures::portal_config(Vec::new()), &key, 0);
        assert_eq!(config["auth"]["jwt"]["cacheSeconds"], 0);
        assert_eq!(
            config["auth"]["staticTokens"][0]["token"],
            fixtures::PORTAL_TOKEN
        );
    }
}
