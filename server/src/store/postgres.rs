//! The Postgres store: what replicated deployments share.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Postgres;

use super::{delegate_store, labels_json, shared_sql, ClusterRow, StoreError, StoredRow};
use crate::audit::{AuditFilter, AuditRecord, StoredAuditRecord};
use crate::clusters::ClusterRecord;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and applies `migrations/postgres`.
    pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(16))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|error| StoreError::Database(error.into()))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn explain(&self) -> Result<String, StoreError> {
        let lines: Vec<String> = sqlx::query_scalar(
            "EXPLAIN SELECT name FROM clusters WHERE lower(name) = lower('some-cluster')",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(lines.join("\n"))
    }
}

/// The channel registry writes are announced on.
pub const CHANGES_CHANNEL: &str = "kubeportal_clusters";

impl PgStore {
    pub(crate) async fn notify(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, lower($2))")
            .bind(CHANGES_CHANNEL)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

shared_sql!(PgPool, Postgres);
delegate_store!(PgStore, "postgres", replicated);
