//! Where the audit trail is kept: the contract every store fulfils (`store/`
//! has the Postgres and the SQLite one, and `tests/it/store_contract.rs`
//! holds both to it).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{AuditFilter, AuditRecord, StoredAuditRecord};
use crate::error::ApiError;

/// An audit store failure.
#[derive(Debug, thiserror::Error)]
pub enum AuditStoreError {
    /// The database cannot be reached right now.
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The audit trail's contract.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends audit records in one transaction.
    async fn insert_audit(&self, records: &[AuditRecord]) -> Result<(), AuditStoreError>;
    /// Audit records matching `filter`, newest first, older than `before_id`.
    async fn query_audit(
        &self,
        filter: &AuditFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredAuditRecord>, AuditStoreError>;
    /// Deletes audit records older than `before`; returns how many.
    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, AuditStoreError>;
}

impl From<AuditStoreError> for ApiError {
    fn from(error: AuditStoreError) -> Self {
        match error {
            AuditStoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                ApiError::Unavailable("the cluster registry is unavailable; retry later".into())
            }
            other => ApiError::internal(other),
        }
    }
}
