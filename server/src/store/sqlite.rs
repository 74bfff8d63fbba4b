//! The embedded SQLite store: the zero-configuration default for one process.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Sqlite;

use super::{
    delegate_store, labels_json, shared_sql, AuditStoreError, ClusterRow, StoreError, StoredRow,
};
use crate::audit::{AuditFilter, StoredAuditRecord};
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

#[cfg(test)]
mod tests {
    use super::super::{audit_insert_sql, Dialect};
    use super::*;

    /// The opcodes SQLite runs for `sql`.
    async fn opcodes(store: &SqliteStore, sql: &str) -> Vec<String> {
        use sqlx::Row;
        sqlx::query(&format!("EXPLAIN {sql}"))
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("opcode"))
            .collect()
    }

    /// An audit batch is one statement of many rows in a transaction: if it
    /// calls a function (an index on an expression computes it for every
    /// row), SQLite keeps a journal of every page it writes so that it could
    /// undo that statement alone, which costs more than the rows.
    #[tokio::test]
    async fn an_audit_insert_calls_no_function() {
        let store = SqliteStore::connect("sqlite::memory:", Some(1))
            .await
            .unwrap();
        let opcodes = opcodes(&store, audit_insert_sql(2, Dialect::Sqlite)).await;
        assert!(
            opcodes.iter().any(|opcode| opcode == "IdxInsert"),
            "{opcodes:?}"
        );
        let calls: Vec<_> = opcodes
            .iter()
            .filter(|opcode| opcode.contains("Function") || opcode.contains("PureFunc"))
            .collect();
        assert!(calls.is_empty(), "{calls:?}");
    }
}
