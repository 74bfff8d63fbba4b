//! The cluster registry: validation, sealing of credentials, the store it
//! keeps clusters in (a [`ClusterStore`]), and a cache of records by name
//! that every write on this process invalidates.
//!
//! The cache serves a record that is due for a re-read while it is re-read in
//! the background, and keeps serving it while the store cannot be reached, so
//! proxying to known clusters goes on through a database outage. A record
//! removed by a write (here, or announced by another replica) is never served.
//!
//! Never logs or returns a credential; `open_*` hands plaintext only to
//! `upstream/`, which attaches it to requests.

mod config;
mod import;
mod model;
pub mod routes;
mod store;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use moka::future::Cache;
use secrecy::{ExposeSecret, SecretString};

use crate::error::ApiError;
use crate::secrets::{SecretBox, SecretError, SecretField};

pub use config::{
    declared_clusters, validate_declared_clusters, ClusterLocatorMethod, DeclaredClusterError,
};
pub use import::{
    parse_rename, plan_import, registry_name, ImportError, ImportOptions, ImportPlan, NameFrom,
    PlannedCluster,
};
pub use model::*;
pub use store::{ClusterRow, ClusterStore, DatabaseError, RegistryChange, StoreError};

/// Whether a cluster URL points at kubeportal itself (a loopback name or
/// address, or the address it listens on, at its own port): proxying there
/// would loop until file descriptors run out.
pub fn points_at(url: &str, own: std::net::SocketAddr) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let same_host = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => {
            address.is_loopback() || std::net::IpAddr::V4(address) == own.ip()
        }
        Some(url::Host::Ipv6(address)) => {
            address.is_loopback() || std::net::IpAddr::V6(address) == own.ip()
        }
        None => false,
    };
    same_host && url.port_or_known_default() == Some(own.port())
}

/// 400 naming `url` when it points at kubeportal itself.
pub fn refuse_own_address(url: &str, own: Option<std::net::SocketAddr>) -> Result<(), ApiError> {
    match own {
        Some(own) if points_at(url, own) => Err(ApiError::Input(
            "url: points at kubeportal itself; register the cluster's API server".into(),
        )),
        _ => Ok(()),
    }
}

/// The address kubeportal listens on, once it does (shared: a clone is a
/// reference count).
#[derive(Debug, Clone, Default)]
pub struct OwnAddress(Arc<std::sync::OnceLock<std::net::SocketAddr>>);

impl OwnAddress {
    /// Records the address; the first recorded stays.
    pub fn set(&self, address: std::net::SocketAddr) -> Result<(), std::net::SocketAddr> {
        self.0.set(address)
    }

    pub fn get(&self) -> Option<std::net::SocketAddr> {
        self.0.get().copied()
    }
}

/// The answer for a cluster name that is not registered: 404 for a caller
/// who may read the cluster list (and so sees every name anyway), else the
/// very denial a registered cluster gets, so names cannot be probed.
pub fn unknown_cluster(
    policy: &crate::permissions::Policy,
    caller: &crate::identity::Caller,
    name: &str,
) -> ApiError {
    use crate::permissions::{Permission, Target};
    match policy.check(caller, Permission::ClustersRead, &Target::cluster(name)) {
        Ok(()) => ApiError::NotFound(format!(
            "no cluster named {}",
            crate::error::redact_quoted(name)
        )),
        Err(denied) => denied,
    }
}

/// The registry service the routes, the proxy and the object queries share.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn ClusterStore>,
    secrets: SecretBox,
    cache: Cache<String, Cached>,
    /// How long a record is served before it is re-read.
    ttl: Duration,
    /// Bumped when announcements may have been missed: every entry read
    /// before is due for a re-read.
    epoch: Arc<AtomicU64>,
    /// Bumped by every invalidation, so a read that raced a write is not cached.
    generation: Arc<AtomicU64>,
    /// Names being re-read in the background (one re-read per name at a time).
    refreshing: Arc<Mutex<HashSet<String>>>,
    /// Told of every cluster dropped from the cache, so what was built from
    /// its record (connectors) is dropped with it.
    evictions: Arc<std::sync::RwLock<Vec<Eviction>>>,
    lookups: Option<crate::telemetry::CacheSeries>,
}

/// Called with the name key of a cluster a write changed or removed.
type Eviction = Arc<dyn Fn(&str) + Send + Sync>;

/// A cached record and when it is due for a re-read.
#[derive(Clone)]
struct Cached {
    record: SharedCluster,
    due: Instant,
    epoch: u64,
}

/// How long to wait before retrying a re-read the store failed.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Largest page a list may ask for.
pub const MAX_PAGE: u32 = 1000;
/// Page size when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 100;

/// One page of clusters and the cursor of the next page.
pub struct Page {
    pub items: Vec<ClusterRecord>,
    pub next_cursor: Option<String>,
}

/// What an upsert from configuration or a kubeconfig did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
    Unchanged,
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Duplicate => {
                ApiError::Conflict("a cluster with this name already exists".into())
            }
            StoreError::VersionMismatch { current } => ApiError::Conflict(format!(
                "the cluster was changed since version you sent; current version is {current}"
            )),
            StoreError::NotFound => ApiError::NotFound("no such cluster".into()),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                ApiError::Unavailable("the cluster registry is unavailable; retry later".into())
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<SecretError> for ApiError {
    fn from(error: SecretError) -> Self {
        ApiError::internal(error)
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        ApiError::Input(error.to_string())
    }
}

impl Registry {
    pub fn new(store: Arc<dyn ClusterStore>, secrets: SecretBox, cache_ttl: Duration) -> Self {
        Self {
            store,
            secrets,
            cache: Cache::builder().max_capacity(200_000).build(),
            ttl: cache_ttl,
            epoch: Arc::default(),
            generation: Arc::default(),
            refreshing: Arc::default(),
            evictions: Arc::default(),
            lookups: None,
        }
    }

    /// Calls `evict` with the name key of every cluster a write changes or
    /// removes, here or (announced) on another replica, at the moment its
    /// record leaves this replica's cache.
    pub fn on_eviction(&self, evict: impl Fn(&str) + Send + Sync + 'static) {
        self.evictions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::new(evict));
    }

    /// Counts cache hits and misses in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::telemetry::SharedMetrics) -> Self {
        self.lookups = Some(metrics.cache_series("clusters"));
        self
    }

    pub fn store(&self) -> &Arc<dyn ClusterStore> {
        &self.store
    }

    /// A cluster by name (case-insensitive), from the cache when present.
    ///
    /// A cached record due for a re-read is returned at once and re-read in
    /// the background; if the store cannot be reached it stays in service.
    pub async fn resolve(&self, name: &str) -> Result<Option<SharedCluster>, StoreError> {
        let key = name_key(name);
        let cached = self.cache.get(key.as_ref()).await;
        if let Some(lookups) = &self.lookups {
            lookups.count(cached.is_some());
        }
        if let Some(cached) = cached {
            if Instant::now() >= cached.due || cached.epoch != self.epoch.load(Ordering::Acquire) {
                self.refresh_in_background(key.into_owned(), cached.record.clone());
            }
            return Ok(Some(cached.record));
        }
        self.read_through(key.into_owned(), name).await
    }

    /// Reads a record from the store and caches it, unless a write
    /// invalidated anything meanwhile.
    async fn read_through(
        &self,
        key: String,
        name: &str,
    ) -> Result<Option<SharedCluster>, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        let epoch = self.epoch.load(Ordering::Acquire);
        match self.store.get(name).await? {
            Some(record) => {
                let shared = Arc::new(record);
                self.cache_if_unchanged(key, shared.clone(), generation, epoch, self.ttl)
                    .await;
                Ok(Some(shared))
            }
            None => Ok(None),
        }
    }

    async fn cache_if_unchanged(
        &self,
        key: String,
        record: SharedCluster,
        generation: u64,
        epoch: u64,
        for_how_long: Duration,
    ) {
        let entry = Cached {
            record,
            due: Instant::now() + for_how_long,
            epoch,
        };
        if self.generation.load(Ordering::Acquire) == generation {
            self.cache.insert(key, entry).await;
        }
    }

    /// Re-reads `key` unless a re-read is already under way; keeps `stale`
    /// in service (retrying later) when the store cannot answer.
    fn refresh_in_background(&self, key: String, stale: SharedCluster) {
        {
            let mut refreshing = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
            if !refreshing.insert(key.clone()) {
                return;
            }
        }
        let registry = self.clone();
        tokio::spawn(async move {
            let generation = registry.generation.load(Ordering::Acquire);
            let epoch = registry.epoch.load(Ordering::Acquire);
            match registry.store.get(&stale.name).await {
                Ok(Some(record)) => {
                    registry
                        .cache_if_unchanged(
                            key.clone(),
                            Arc::new(record),
                            generation,
                            epoch,
                            registry.ttl,
                        )
                        .await
                }
                Ok(None) => registry.invalidate(&key).await,
                Err(error) => {
                    tracing::warn!(cluster = %stale.name, %error,
                        "cannot re-read the cluster from the store; serving the last known record");
                    registry
                        .cache_if_unchanged(
                            key.clone(),
                            stale,
                            generation,
                            epoch,
                            RETRY_AFTER_FAILURE,
                        )
                        .await;
                }
            }
            registry
                .refreshing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        });
    }

    /// The name a cluster is registered under, when one is registered by
    /// this name in any case: from the cache (without counting a lookup)
    /// when it holds the name, else from the store. A metric labels a
    /// cluster with this spelling, never with the caller's.
    pub async fn registered_name(&self, name: &str) -> Option<Arc<str>> {
        if let Some(cached) = self.cache.get(name_key(name).as_ref()).await {
            return Some(Arc::from(cached.record.name.as_str()));
        }
        match self.store.get(name).await {
            Ok(Some(record)) => Some(Arc::from(record.name.as_str())),
            _ => None,
        }
    }

    /// Drops a cluster from this process's cache, and what was built for it.
    pub async fn invalidate(&self, name: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let key = name_key(name);
        self.cache.invalidate(key.as_ref()).await;
        let evictions = self
            .evictions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for evict in evictions {
            evict(&key);
        }
    }

    /// Marks every cached record due for a re-read (still served meanwhile):
    /// used when announcements of other replicas' writes may have been missed.
    fn revalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// After a write: drop the cluster here and tell the other replicas.
    async fn changed(&self, name: &str) {
        self.invalidate(name).await;
        if let Err(error) = self.store.announce_change(name).await {
            // The write stands; other replicas catch up when their cache entry expires.
            tracing::warn!(cluster = %name, %error, "could not announce a registry change to other replicas");
        }
    }

    /// On a shared (Postgres) store, follows other replicas' writes and drops
    /// the changed clusters from this replica's cache as they are announced.
    /// When announcements may have been missed (the feed reconnected) every
    /// cached record is re-read (and served meanwhile).
    pub fn follow_changes(&self) -> Option<tokio::task::JoinHandle<()>> {
        let mut changes = self.store.changes()?;
        let registry = self.clone();
        Some(tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                match change {
                    RegistryChange::Changed(name) => registry.invalidate(&name).await,
                    RegistryChange::MayHaveMissed => registry.revalidate_all(),
                }
            }
        }))
    }

    pub async fn list(&self, cursor: Option<&str>, limit: Option<u32>) -> Result<Page, ApiError> {
        let limit = match limit {
            None => DEFAULT_PAGE,
            Some(0) => return Err(ApiError::Input("limit: must be at least 1".into())),
            Some(limit) if limit > MAX_PAGE => {
                return Err(ApiError::Input(format!(
                    "limit: must be at most {MAX_PAGE}"
                )))
            }
            Some(limit) => limit,
        };
        let after = cursor.map(decode_cursor).transpose()?;
        let mut items = self.store.list(after.as_deref(), limit + 1).await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items
                .last()
                .map(|record| encode_cursor(&name_key(&record.name)))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub async fn create(&self, input: &ClusterInput) -> Result<ClusterRecord, ApiError> {
        let spec = input.validate_new()?;
        let row = self.seal(&spec);
        let record = self.store.create(&row).await?;
        self.changed(&record.name).await;
        tracing::info!(cluster = %record.name, "cluster registered");
        Ok(record)
    }

    pub async fn update(
        &self,
        name: &str,
        update: &ClusterUpdate,
        expected_version: i64,
    ) -> Result<ClusterRecord, ApiError> {
        let current = self
            .store
            .get(name)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such cluster".into()))?;
        if current.version != expected_version {
            return Err(StoreError::VersionMismatch {
                current: current.version,
            }
            .into());
        }
        let validated = update.validate(
            &current,
            self.open_token(&current)?,
            self.open_client_key(&current)?,
        )?;
        let mut row = self.seal(&validated.spec);
        if matches!(validated.service_account_token, SecretChange::Keep) {
            row.sealed_service_account_token = current.sealed_service_account_token.clone();
        }
        if matches!(validated.client_key_data, SecretChange::Keep) {
            row.sealed_client_key_data = current.sealed_client_key_data.clone();
        }
        let result = self.store.update(expected_version, &row).await;
        self.changed(name).await;
        let record = result?;
        tracing::info!(cluster = %record.name, version = record.version, "cluster updated");
        Ok(record)
    }

    pub async fn delete(&self, name: &str, expected_version: Option<i64>) -> Result<(), ApiError> {
        let result = self.store.delete(name, expected_version).await;
        self.changed(name).await;
        result?;
        tracing::info!(cluster = %name, "cluster removed");
        Ok(())
    }

    /// Creates the cluster, or updates it when what is stored differs.
    /// Used for clusters declared in configuration and imported from kubeconfig.
    pub async fn upsert(&self, spec: &ClusterSpec) -> Result<Upserted, ApiError> {
        for _ in 0..3 {
            let row = self.seal(spec);
            match self.store.get(&spec.name).await? {
                None => match self.store.create(&row).await {
                    Ok(_) => {
                        self.changed(&spec.name).await;
                        return Ok(Upserted::Created);
                    }
                    Err(StoreError::Duplicate) => continue,
                    Err(error) => return Err(error.into()),
                },
                Some(current) => {
                    if self.same_as_stored(spec, &current)? {
                        return Ok(Upserted::Unchanged);
                    }
                    match self.store.update(current.version, &row).await {
                        Ok(_) => {
                            self.changed(&spec.name).await;
                            return Ok(Upserted::Updated);
                        }
                        Err(StoreError::VersionMismatch { .. } | StoreError::NotFound) => continue,
                        Err(error) => return Err(error.into()),
                    }
                }
            }
        }
        Err(ApiError::Conflict(format!(
            "cluster {} kept changing while it was being written",
            spec.name
        )))
    }

    fn same_as_stored(&self, spec: &ClusterSpec, stored: &ClusterRecord) -> Result<bool, ApiError> {
        let same_secret =
            |wanted: &Option<SecretString>, stored: Option<SecretString>| match (wanted, stored) {
                (None, None) => true,
                (Some(wanted), Some(stored)) => wanted.expose_secret() == stored.expose_secret(),
                _ => false,
            };
        Ok(spec.name == stored.name
            && spec.title == stored.title
            && spec.url == stored.url
            && spec.auth_provider == stored.auth_provider
            && spec.ca_data == stored.ca_data
            && spec.skip_tls_verify == stored.skip_tls_verify
            && spec.client_cert_data == stored.client_cert_data
            && spec.dashboard_url == stored.dashboard_url
            && spec.dashboard_app == stored.dashboard_app
            && spec.dashboard_parameters == stored.dashboard_parameters
            && spec.oidc_token_provider == stored.oidc_token_provider
            && spec.skip_metrics_lookup == stored.skip_metrics_lookup
            && spec.labels == stored.labels
            && same_secret(&spec.service_account_token, self.open_token(stored)?)
            && same_secret(&spec.client_key_data, self.open_client_key(stored)?))
    }

    fn seal(&self, spec: &ClusterSpec) -> ClusterRow {
        ClusterRow {
            name: spec.name.clone(),
            title: spec.title.clone(),
            url: spec.url.clone(),
            auth_provider: spec.auth_provider,
            ca_data: spec.ca_data.clone(),
            skip_tls_verify: spec.skip_tls_verify,
            sealed_service_account_token: spec
                .service_account_token
                .as_ref()
                .map(|token| self.secrets.seal(SecretField::ServiceAccountToken, token)),
            client_cert_data: spec.client_cert_data.clone(),
            sealed_client_key_data: spec
                .client_key_data
                .as_ref()
                .map(|key| self.secrets.seal(SecretField::ClientKeyData, key)),
            dashboard_url: spec.dashboard_url.clone(),
            dashboard_app: spec.dashboard_app.clone(),
            dashboard_parameters: spec.dashboard_parameters.clone(),
            oidc_token_provider: spec.oidc_token_provider.clone(),
            skip_metrics_lookup: spec.skip_metrics_lookup,
            labels: spec.labels.clone(),
        }
    }

    /// The cluster's service-account token in plaintext, for `upstream/` only.
    pub fn open_token(&self, record: &ClusterRecord) -> Result<Option<SecretString>, SecretError> {
        record
            .sealed_service_account_token
            .as_deref()
            .map(|sealed| self.secrets.open(SecretField::ServiceAccountToken, sealed))
            .transpose()
    }

    /// The cluster's client key in plaintext, for `upstream/` only.
    pub fn open_client_key(
        &self,
        record: &ClusterRecord,
    ) -> Result<Option<SecretString>, SecretError> {
        record
            .sealed_client_key_data
            .as_deref()
            .map(|sealed| self.secrets.open(SecretField::ClientKeyData, sealed))
            .transpose()
    }
}

fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

/// The name key a cursor carries; anything else was not issued here.
fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|key| validate_cluster_name(key).is_ok())
        .ok_or_else(|| ApiError::Input("cursor: is not a cursor this server issued".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_kubeportal_itself_are_recognised() {
        let own: std::net::SocketAddr = "0.0.0.0:7007".parse().unwrap();
        for url in [
            "https://127.0.0.1:7007",
            "http://localhost:7007/",
            "https://[::1]:7007",
            "http://127.0.0.2:7007",
        ] {
            assert!(points_at(url, own), "{url}");
        }
        for url in [
            "https://127.0.0.1:6443",
            "https://10.0.0.1:7007",
            "https://kube.example",
        ] {
            assert!(!points_at(url, own), "{url}");
        }
        let specific: std::net::SocketAddr = "10.0.0.5:443".parse().unwrap();
        assert!(points_at("https://10.0.0.5", specific));
    }
}
