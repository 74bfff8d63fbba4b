//! The Postgres store: what replicated deployments share, and the feed of
//! registry changes (`NOTIFY`/`LISTEN`) that keeps their caches current.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::Postgres;
use tokio::sync::mpsc;

use super::{
    delegate_store, labels_json, shared_sql, AuditStoreError, ClusterRow, StoreError, StoredRow,
};
use crate::audit::{AuditFilter, StoredAuditRecord};
use crate::clusters::{ClusterRecord, RegistryChange};

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

/// Changes heard but not yet taken by the registry.
const CHANGE_BUFFER: usize = 1024;

impl PgStore {
    pub(crate) async fn notify(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, lower($2))")
            .bind(CHANGES_CHANNEL)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Listens for the changes other replicas announce until the receiver
    /// is dropped, reconnecting whenever the connection is lost.
    fn listen(&self) -> mpsc::Receiver<RegistryChange> {
        let (changes, receiver) = mpsc::channel(CHANGE_BUFFER);
        tokio::spawn(follow(self.pool.clone(), changes));
        receiver
    }
}

/// Passes on every announcement. After (re)connecting, and whenever the
/// connection was lost, announcements may have been missed: that is passed
/// on too.
async fn follow(pool: PgPool, changes: mpsc::Sender<RegistryChange>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for registry changes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANGES_CHANNEL).await {
            tracing::warn!(%error, "cannot listen for registry changes; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if changes.send(RegistryChange::MayHaveMissed).await.is_err() {
            return;
        }
        loop {
            let change = match listener.try_recv().await {
                Ok(Some(notification)) => {
                    RegistryChange::Changed(notification.payload().to_owned())
                }
                Ok(None) => {
                    tracing::warn!("registry change feed reconnected; re-reading cached clusters");
                    RegistryChange::MayHaveMissed
                }
                Err(error) => {
                    tracing::warn!(%error, "registry change feed failed; reconnecting");
                    if changes.send(RegistryChange::MayHaveMissed).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            };
            if changes.send(change).await.is_err() {
                return;
            }
        }
    }
}

shared_sql!(PgPool, Postgres, super::Dialect::Postgres);
delegate_store!(PgStore, "postgres", replicated);
