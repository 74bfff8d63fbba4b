//! What the registry keeps its clusters in: the contract every store
//! fulfils (`store/` has the Postgres and the SQLite one, and
//! `tests/it/store_contract.rs` holds both to it).
//!
//! A store sees credentials only sealed.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{AuthProvider, ClusterRecord};

/// A failure of the database under a store, kept as its cause.
pub type DatabaseError = Box<dyn std::error::Error + Send + Sync>;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A cluster with this name (compared case-insensitively) exists.
    #[error("a cluster with this name already exists")]
    Duplicate,
    /// The record changed since the version the write was based on.
    #[error("the cluster was changed by someone else (current version {current})")]
    VersionMismatch { current: i64 },
    #[error("no such cluster")]
    NotFound,
    /// The database cannot be reached right now.
    #[error("the database is unavailable")]
    Unavailable(#[source] DatabaseError),
    #[error("database error")]
    Database(#[source] DatabaseError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// A cluster row as written: everything but the version and timestamps,
/// credentials already sealed.
#[derive(Debug, Clone)]
pub struct ClusterRow {
    pub name: String,
    pub title: Option<String>,
    pub url: String,
    pub auth_provider: AuthProvider,
    pub ca_data: Option<String>,
    pub skip_tls_verify: bool,
    pub sealed_service_account_token: Option<Vec<u8>>,
    pub client_cert_data: Option<String>,
    pub sealed_client_key_data: Option<Vec<u8>>,
    pub dashboard_url: Option<String>,
    pub dashboard_app: Option<String>,
    pub dashboard_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub oidc_token_provider: Option<String>,
    pub skip_metrics_lookup: bool,
    pub labels: BTreeMap<String, String>,
}

/// What a store that replicas share tells one replica of the others' writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryChange {
    /// The cluster of this name was written.
    Changed(String),
    /// Announcements may have been missed (the feed connected or reconnected).
    MayHaveMissed,
}

/// The registry contract both stores pass (see `tests/it/store_contract.rs`).
#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// Clusters ordered by lower-cased name, after the `after` key (exclusive).
    async fn list(&self, after: Option<&str>, limit: u32)
        -> Result<Vec<ClusterRecord>, StoreError>;
    /// Looks a cluster up by name, case-insensitively, through the unique index.
    async fn get(&self, name: &str) -> Result<Option<ClusterRecord>, StoreError>;
    /// Inserts a cluster at version 1 with a new `uid`; [`StoreError::Duplicate`]
    /// if the name is taken.
    async fn create(&self, row: &ClusterRow) -> Result<ClusterRecord, StoreError>;
    /// Replaces a cluster if it is still at `expected_version`; its `uid` stays.
    async fn update(
        &self,
        expected_version: i64,
        row: &ClusterRow,
    ) -> Result<ClusterRecord, StoreError>;
    /// Deletes a cluster, if `expected_version` is given only at that version.
    async fn delete(&self, name: &str, expected_version: Option<i64>) -> Result<(), StoreError>;
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The query plan of a lookup by name, as the database prints it.
    async fn explain_lookup(&self) -> Result<String, StoreError>;
    /// Which database this is (`postgres` or `sqlite`).
    fn kind(&self) -> &'static str;
    /// Tells other replicas that a cluster changed (Postgres `NOTIFY`); a
    /// no-op where the store is not shared.
    async fn announce_change(&self, _name: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Follows the changes other replicas announce, from now on (Postgres
    /// `LISTEN`); `None` where the store is not shared.
    fn changes(&self) -> Option<mpsc::Receiver<RegistryChange>> {
        None
    }
}
