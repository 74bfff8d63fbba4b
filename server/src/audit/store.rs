//! Where the audit trail is kept: the contract every store fulfils (`store/`
//! has the Postgres and the SQLite one, and `tests/it/store_contract.rs`
//! holds both to it).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{AuditFilter, Entry, StoredAuditRecord};
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
    async fn insert_audit(&self, records: &[Entry]) -> Result<(), AuditStoreError>;
    /// Audit records matching `filter`, newest first, older than `before_id`.
    async fn query_audit(
        &self,
        filter: &AuditFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredAuditRecord>, AuditStoreError>;
    /// The query plan of [`AuditStore::query_audit`] for `filter`, as the
    /// database prints it.
    async fn explain_audit(&self, filter: &AuditFilter) -> Result<String, AuditStoreError>;
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

pub use kubeportal_api::audit::RecordingInfo;

/// Which recordings to list.
#[derive(Debug, Clone, Default)]
pub struct RecordingFilter {
    pub cluster: Option<String>,
    pub subject: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Where a page of recordings ends: the last one's start and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingCursor {
    pub started_at: DateTime<Utc>,
    pub id: String,
}

/// What interactive sessions keep in the store, so that any replica serves
/// them: spent one-time tickets, and session recordings in chunks.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Spends a ticket, by its digest: `true` the first time, on any
    /// replica, `false` ever after (until the row is pruned, after the
    /// ticket has expired).
    async fn spend_ticket(
        &self,
        digest: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, AuditStoreError>;
    /// Forgets tickets that expired before `now`.
    async fn prune_tickets(&self, now: DateTime<Utc>) -> Result<u64, AuditStoreError>;
    /// Starts a recording (with no chunks, not ended).
    async fn create_recording(&self, recording: &RecordingInfo) -> Result<(), AuditStoreError>;
    /// Appends chunk `sequence` of a recording, and sets its size so far.
    async fn append_recording(
        &self,
        id: &str,
        sequence: i64,
        data: &[u8],
        bytes: u64,
        truncated: bool,
    ) -> Result<(), AuditStoreError>;
    /// Marks a recording ended.
    async fn end_recording(&self, id: &str, ended_at: DateTime<Utc>)
        -> Result<(), AuditStoreError>;
    /// A recording and its chunks joined in order.
    async fn read_recording(
        &self,
        id: &str,
    ) -> Result<Option<(RecordingInfo, Vec<u8>)>, AuditStoreError>;
    /// Recordings matching `filter`, newest first, after `cursor`.
    async fn list_recordings(
        &self,
        filter: &RecordingFilter,
        cursor: Option<&RecordingCursor>,
        limit: u32,
    ) -> Result<Vec<RecordingInfo>, AuditStoreError>;
    /// Deletes recordings that started before `before`; returns how many.
    async fn prune_recordings(&self, before: DateTime<Utc>) -> Result<u64, AuditStoreError>;
}

/// A session store in memory, for the tests of what records into one (the
/// real stores are held to the contract in `tests/it/store_contract.rs`).
#[cfg(test)]
pub(crate) mod memory {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    /// A recording and its chunks.
    type Stored = (RecordingInfo, Vec<Vec<u8>>);

    #[derive(Default)]
    pub(crate) struct MemoryStore {
        recordings: Mutex<BTreeMap<String, Stored>>,
    }

    #[async_trait]
    impl SessionStore for MemoryStore {
        async fn spend_ticket(&self, _: &str, _: DateTime<Utc>) -> Result<bool, AuditStoreError> {
            Ok(true)
        }
        async fn prune_tickets(&self, _: DateTime<Utc>) -> Result<u64, AuditStoreError> {
            Ok(0)
        }
        async fn create_recording(&self, recording: &RecordingInfo) -> Result<(), AuditStoreError> {
            let mut recordings = self.recordings.lock().unwrap();
            recordings.insert(recording.id.clone(), (recording.clone(), Vec::new()));
            Ok(())
        }
        async fn append_recording(
            &self,
            id: &str,
            _: i64,
            data: &[u8],
            bytes: u64,
            truncated: bool,
        ) -> Result<(), AuditStoreError> {
            let mut recordings = self.recordings.lock().unwrap();
            let (info, chunks) = recordings.get_mut(id).expect("a started recording");
            chunks.push(data.to_vec());
            info.bytes = bytes;
            info.truncated = truncated;
            Ok(())
        }
        async fn end_recording(
            &self,
            id: &str,
            ended_at: DateTime<Utc>,
        ) -> Result<(), AuditStoreError> {
            let mut recordings = self.recordings.lock().unwrap();
            if let Some((info, _)) = recordings.get_mut(id) {
                info.ended_at = Some(ended_at);
            }
            Ok(())
        }
        async fn read_recording(
            &self,
            id: &str,
        ) -> Result<Option<(RecordingInfo, Vec<u8>)>, AuditStoreError> {
            let recordings = self.recordings.lock().unwrap();
            Ok(recordings
                .get(id)
                .map(|(info, chunks)| (info.clone(), chunks.concat())))
        }
        async fn list_recordings(
            &self,
            _: &RecordingFilter,
            _: Option<&RecordingCursor>,
            _: u32,
        ) -> Result<Vec<RecordingInfo>, AuditStoreError> {
            let recordings = self.recordings.lock().unwrap();
            Ok(recordings.values().map(|(info, _)| info.clone()).collect())
        }
        async fn prune_recordings(&self, _: DateTime<Utc>) -> Result<u64, AuditStoreError> {
            Ok(0)
        }
    }
}
