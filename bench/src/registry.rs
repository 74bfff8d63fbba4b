//! Registry lookups at 100,000 clusters, in process, through the product's
//! own code: `ClusterStore::get` (uncached, through the unique expression
//! index) and `Registry::resolve` (the record cache the proxy uses). Rows are
//! seeded with one set-based INSERT per store; only the lookups are product
//! code.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::StreamExt;
use kubeportal::clusters::Registry;
use kubeportal::secrets::{SecretBox, SecretField};
use kubeportal::store::{ClusterStore, PgStore, SqliteStore};
use secrecy::SecretString;
use sqlx::Connection;

use crate::stats::Percentiles;

/// How many clusters the registry holds.
pub const CLUSTERS: usize = 100_000;
/// The record cache's time to live. kubeportal uses 30 s; here it must
/// outlast warming 100,000 entries and measuring them (the lookup path does
/// not depend on it).
const CACHE_TTL: Duration = Duration::from_secs(600);
const UNCACHED_SAMPLES: usize = 10_000;
/// Lookups in flight while the cache is warmed (within both stores' pools).
const WARM_UP_CONCURRENCY: usize = 8;
const CACHED_SAMPLES: usize = 100_000;

/// One store's figures.
#[derive(Debug, Clone)]
pub struct RegistryResult {
    pub store: &'static str,
    pub clusters: usize,
    pub insert_time: Duration,
    pub uncached: Percentiles,
    pub cached: Percentiles,
    /// Cached lookups that went to the store anyway (must be 0).
    pub cache_misses: usize,
    pub plan: String,
}

impl RegistryResult {
    pub fn index_used(&self) -> bool {
        self.plan.contains("clusters_name_key")
    }
}

fn cluster_name(index: usize) -> String {
    format!("cluster-{index:06}")
}

/// What every seeded row carries besides its name: a CA, a sealed token,
/// labels, as registered clusters do.
struct RowMaterial {
    ca_data: String,
    sealed_token: Vec<u8>,
    labels: &'static str,
    now: chrono::DateTime<chrono::Utc>,
}

impl RowMaterial {
    fn new(secrets: &SecretBox) -> RowMaterial {
        let certificate: Vec<u8> = (0..800u32).map(|index| (index * 37 % 251) as u8).collect();
        let body = STANDARD.encode(certificate);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
            .collect();
        RowMaterial {
            ca_data: format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            ),
            sealed_token: secrets.seal(
                SecretField::ServiceAccountToken,
                &SecretString::from(
                    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJlbmNoIn0.a-service-account-token",
                ),
            ),
            labels: r#"{"env":"prod","region":"eu-west-1","team":"platform"}"#,
            now: chrono::Utc::now(),
        }
    }
}

fn secret_box() -> SecretBox {
    let key: [u8; 32] = std::array::from_fn(|_| fastrand::u8(..));
    SecretBox::from_base64(&STANDARD.encode(key)).expect("32 bytes make a key")
}

/// The embedded SQLite store in `directory`.
pub async fn sqlite(directory: &Path) -> Result<RegistryResult> {
    let url = format!("sqlite://{}", directory.join("registry.db").display());
    let store = Arc::new(SqliteStore::connect(&url, None).await?);
    let secrets = secret_box();
    let material = RowMaterial::new(&secrets);
    let started = Instant::now();
    sqlx::query(
        "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < $1) \
         INSERT INTO clusters (name, title, url, auth_provider, ca_data, skip_tls_verify, \
         service_account_token, skip_metrics_lookup, labels, version, created_at, updated_at, uid) \
         SELECT printf('cluster-%06d', i), 'Cluster ' || i, \
         printf('https://cluster-%06d.example.com:6443', i), 'serviceAccount', $2, 0, $3, 0, $4, 1, $5, $5, \
         printf('%032x', i) \
         FROM seq",
    )
    .bind(CLUSTERS as i64)
    .bind(&material.ca_data)
    .bind(&material.sealed_token)
    .bind(material.labels)
    .bind(material.now)
    .execute(store.pool())
    .await
    .context("seeding SQLite")?;
    let insert_time = started.elapsed();
    let closer = store.clone();
    measure(
        store,
        secrets,
        insert_time,
        Box::pin(async move { closer.pool().close().await }),
    )
    .await
}

/// The Postgres server tests use (`TEST_DATABASE_URL`, else the local default).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A throwaway database on the Postgres server, dropped afterwards;
/// `Ok(None)` when no server is reachable.
pub async fn postgres() -> Result<Option<RegistryResult>> {
    let admin_url = postgres_admin_url();
    let connected = tokio::time::timeout(
        Duration::from_secs(3),
        sqlx::PgConnection::connect(&admin_url),
    )
    .await;
    let mut admin = match connected {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            eprintln!("  Postgres not reachable ({error}): skipped");
            return Ok(None);
        }
        Err(_) => {
            eprintln!("  Postgres did not answer within 3 s: skipped");
            return Ok(None);
        }
    };
    let database = format!("kubeportal_bench_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await
        .context("creating a throwaway Postgres database")?;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(base, _)| base);
    let result = postgres_in(&format!("{base}/{database}")).await;
    let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    if let Err(error) = dropped {
        eprintln!("  could not drop the throwaway database {database}: {error}");
    }
    result.map(Some)
}

async fn postgres_in(url: &str) -> Result<RegistryResult> {
    let store = Arc::new(PgStore::connect(url, None).await?);
    let secrets = secret_box();
    let material = RowMaterial::new(&secrets);
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO clusters (name, title, url, auth_provider, ca_data, skip_tls_verify, \
         service_account_token, skip_metrics_lookup, labels, version, created_at, updated_at, uid) \
         SELECT 'cluster-' || lpad(i::text, 6, '0'), 'Cluster ' || i, \
         'https://cluster-' || lpad(i::text, 6, '0') || '.example.com:6443', 'serviceAccount', \
         $2, false, $3, false, $4, 1, $5, $5, lpad(to_hex(i), 32, '0') \
         FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(CLUSTERS as i64)
    .bind(&material.ca_data)
    .bind(&material.sealed_token)
    .bind(material.labels)
    .bind(material.now)
    .execute(store.pool())
    .await
    .context("seeding Postgres")?;
    // What autovacuum would do shortly after a bulk load.
    sqlx::query("ANALYZE clusters")
        .execute(store.pool())
        .await?;
    let insert_time = started.elapsed();
    let closer = store.clone();
    measure(
        store,
        secrets,
        insert_time,
        Box::pin(async move { closer.pool().close().await }),
    )
    .await
}

/// Uncached lookups, then the cache warmed with every cluster, then (with
/// the store closed, so a cache miss fails loudly) cached lookups.
async fn measure<S: ClusterStore>(
    store: Arc<S>,
    secrets: SecretBox,
    insert_time: Duration,
    close_store: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Result<RegistryResult> {
    let plan = store.explain_lookup().await?;
    let kind = store.kind();
    let mut random = fastrand::Rng::with_seed(7);

    let mut uncached = Vec::with_capacity(UNCACHED_SAMPLES);
    for _ in 0..UNCACHED_SAMPLES {
        let name = cluster_name(random.usize(..CLUSTERS));
        let started = Instant::now();
        let found = store.get(&name).await?;
        uncached.push(started.elapsed());
        if found.is_none() {
            bail!("{kind}: {name} was not found");
        }
    }

    let shared: Arc<dyn ClusterStore> = store;
    let registry = Registry::new(shared, secrets, CACHE_TTL);
    let warmed = Instant::now();
    let mut warm = futures::stream::iter(0..CLUSTERS)
        .map(|index| {
            let registry = registry.clone();
            async move { registry.resolve(&cluster_name(index)).await }
        })
        .buffer_unordered(WARM_UP_CONCURRENCY);
    while let Some(resolved) = warm.next().await {
        resolved?.ok_or_else(|| anyhow!("{kind}: a seeded cluster was not found"))?;
    }
    close_store.await;

    let mut cached = Vec::with_capacity(CACHED_SAMPLES);
    let mut cache_misses = 0;
    for _ in 0..CACHED_SAMPLES {
        let name = cluster_name(random.usize(..CLUSTERS));
        let started = Instant::now();
        let resolved = registry.resolve(&name).await;
        cached.push(started.elapsed());
        if !matches!(resolved, Ok(Some(_))) {
            cache_misses += 1;
        }
    }
    if warmed.elapsed() >= CACHE_TTL {
        eprintln!(
            "  {kind}: warming and measuring took {:.1} s, longer than the cache's time to live",
            warmed.elapsed().as_secs_f64()
        );
    }
    Ok(RegistryResult {
        store: kind,
        clusters: CLUSTERS,
        insert_time,
        uncached: Percentiles::of(uncached).expect("samples were taken"),
        cached: Percentiles::of(cached).expect("samples were taken"),
        cache_misses,
        plan,
    })
}
