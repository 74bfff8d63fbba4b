//! The embedded SQLite store: the zero-configuration default for one process.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Sqlite;

use super::{
    delegate_store, labels_json, shared_sql, AuditStoreError, ClusterRow, StoreError, StoredRow,
};
use crate::audit::{AuditFilter, AuditRecord, StoredAuditRecord};
use crate::clusters::ClusterRecord;

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) and applies `migrations/sqlite`.
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A multi-row insert's statement journal (the audit trail's
            // batches) in memory, not a temporary file made and removed
            // for every batch.
            .pragma("temp_store", "memory")
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.unwrap_or(8))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|error| StoreError::Database(error.into()))
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn explain(&self) -> Result<String, StoreError> {
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "EXPLAIN QUERY PLAN SELECT name FROM clusters WHERE lower(name) = lower('some-cluster')",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

shared_sql!(SqlitePool, Sqlite, super::Dialect::Sqlite);
delegate_store!(SqliteStore, "sqlite");
