//! Persistence: the registry's [`ClusterStore`] and the audit trail's
//! [`AuditStore`] (contracts their modules own), implemented twice, for
//! Postgres (replicated deployments) and embedded SQLite (a single process),
//! on one pool. The SQL is shared; only connection set-up, migrations,
//! query-plan inspection and (Postgres) change announcements differ.
//!
//! The store sees credentials only sealed; it never logs row contents.

mod postgres;
mod sqlite;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::audit::{AuditRecord, StoredAuditRecord};
use crate::clusters::{AuthProvider, ClusterRecord};

pub use crate::audit::{AuditStore, AuditStoreError, SessionStore};
pub use crate::clusters::{ClusterRow, ClusterStore, RegistryChange, StoreError};
pub use postgres::{PgStore, CHANGES_CHANNEL};
pub use sqlite::SqliteStore;

/// SQLSTATE classes (Postgres) and result codes (SQLite) that mean "try
/// again later".
fn is_transient(code: &str) -> bool {
    ["57", "08", "53"]
        .iter()
        .any(|class| code.starts_with(class))
        || matches!(code, "5" | "6" | "261" | "262" | "517")
}

/// How a database error reads to the stores' callers.
enum Failure {
    Duplicate,
    Unavailable,
    Other,
}

fn classify(error: &sqlx::Error) -> Failure {
    match error {
        sqlx::Error::Database(database) if database.is_unique_violation() => Failure::Duplicate,
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => Failure::Unavailable,
        // Postgres shutting down or restarting (class 57: operator
        // intervention), lost or refused connections (08), out of
        // resources (53), SQLite busy or locked: retryable, not a bug.
        sqlx::Error::Database(database)
            if database.code().is_some_and(|code| is_transient(&code)) =>
        {
            Failure::Unavailable
        }
        _ => Failure::Other,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            Failure::Duplicate => StoreError::Duplicate,
            Failure::Unavailable => StoreError::Unavailable(error.into()),
            Failure::Other => StoreError::Database(error.into()),
        }
    }
}

impl From<sqlx::Error> for AuditStoreError {
    fn from(error: sqlx::Error) -> Self {
        match classify(&error) {
            Failure::Unavailable => AuditStoreError::Unavailable(error.into()),
            Failure::Duplicate | Failure::Other => AuditStoreError::Database(error.into()),
        }
    }
}

/// One open database, holding the cluster registry and the audit trail.
#[derive(Clone)]
pub struct Database {
    clusters: Arc<dyn ClusterStore>,
    audit: Arc<dyn AuditStore>,
    sessions: Arc<dyn SessionStore>,
}

impl Database {
    fn new<S: ClusterStore + AuditStore + SessionStore>(store: S) -> Self {
        let store = Arc::new(store);
        Self {
            clusters: store.clone(),
            audit: store.clone(),
            sessions: store,
        }
    }

    /// The cluster registry's store.
    pub fn clusters(&self) -> Arc<dyn ClusterStore> {
        self.clusters.clone()
    }

    /// The audit trail's store.
    pub fn audit(&self) -> Arc<dyn AuditStore> {
        self.audit.clone()
    }

    /// Spent tickets and session recordings.
    pub fn sessions(&self) -> Arc<dyn SessionStore> {
        self.sessions.clone()
    }
}

/// Opens (and migrates) the database a URL names.
pub async fn connect(url: &str, max_connections: Option<u32>) -> Result<Database, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Database::new(PgStore::connect(url, max_connections).await?))
    } else {
        Ok(Database::new(
            SqliteStore::connect(url, max_connections).await?,
        ))
    }
}

/// The columns every query returns, in [`StoredRow`] order.
macro_rules! columns {
    () => {
        "name, title, url, auth_provider, ca_data, skip_tls_verify, service_account_token, \
         client_cert_data, client_key_data, dashboard_url, oidc_token_provider, \
         skip_metrics_lookup, labels, uid, version, created_at, updated_at, dashboard_app, \
         dashboard_parameters"
    };
}
pub(crate) use columns;

/// The columns of a recording, in [`RecordingRow`] order.
macro_rules! recording_columns {
    () => {
        "id, cluster, subject, path, protocol, started_at, ended_at, bytes, truncated"
    };
}
pub(crate) use recording_columns;

/// A recording as read back from either database.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RecordingRow {
    id: String,
    cluster: String,
    subject: String,
    path: String,
    protocol: String,
    started_at: chrono::DateTime<chrono::Utc>,
    ended_at: Option<chrono::DateTime<chrono::Utc>>,
    bytes: i64,
    truncated: bool,
}

impl From<RecordingRow> for crate::audit::RecordingInfo {
    fn from(row: RecordingRow) -> Self {
        Self {
            id: row.id,
            cluster: row.cluster,
            subject: row.subject,
            path: row.path,
            protocol: row.protocol,
            started_at: row.started_at,
            ended_at: row.ended_at,
            bytes: u64::try_from(row.bytes).unwrap_or(0),
            truncated: row.truncated,
        }
    }
}

/// A row as read back from either database.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredRow {
    name: String,
    title: Option<String>,
    url: String,
    auth_provider: String,
    ca_data: Option<String>,
    skip_tls_verify: bool,
    service_account_token: Option<Vec<u8>>,
    client_cert_data: Option<String>,
    client_key_data: Option<Vec<u8>>,
    dashboard_url: Option<String>,
    oidc_token_provider: Option<String>,
    skip_metrics_lookup: bool,
    labels: String,
    uid: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    dashboard_app: Option<String>,
    dashboard_parameters: Option<String>,
}

impl TryFrom<StoredRow> for ClusterRecord {
    type Error = StoreError;

    fn try_from(row: StoredRow) -> Result<Self, StoreError> {
        let auth_provider = AuthProvider::parse(&row.auth_provider).ok_or_else(|| {
            StoreError::Corrupt(format!("unknown auth provider for {}", row.name))
        })?;
        let labels = serde_json::from_str(&row.labels).map_err(|_| {
            StoreError::Corrupt(format!("labels of {} are not a JSON map", row.name))
        })?;
        let dashboard_parameters = row
            .dashboard_parameters
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| {
                StoreError::Corrupt(format!(
                    "dashboardParameters of {} are not a JSON object",
                    row.name
                ))
            })?;
        Ok(ClusterRecord {
            name: row.name,
            title: row.title,
            url: row.url,
            auth_provider,
            ca_data: row.ca_data,
            skip_tls_verify: row.skip_tls_verify,
            sealed_service_account_token: row.service_account_token,
            client_cert_data: row.client_cert_data,
            sealed_client_key_data: row.client_key_data,
            dashboard_url: row.dashboard_url,
            dashboard_app: row.dashboard_app,
            dashboard_parameters,
            oidc_token_provider: row.oidc_token_provider,
            skip_metrics_lookup: row.skip_metrics_lookup,
            labels,
            uid: row.uid,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A row as both databases return it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    time: DateTime<Utc>,
    kind: String,
    subject: String,
    groups: String,
    cluster: Option<String>,
    method: String,
    path: String,
    query: Option<String>,
    status: i32,
    bytes_in: i64,
    bytes_out: i64,
    duration_ms: i64,
    decision: String,
    rule: Option<String>,
    recording: Option<String>,
    verb: Option<String>,
    impersonated_user: Option<String>,
    impersonated_groups: String,
}

impl From<AuditRow> for StoredAuditRecord {
    fn from(row: AuditRow) -> Self {
        Self {
            id: row.id,
            record: AuditRecord {
                time: row.time,
                kind: row.kind,
                subject: row.subject,
                groups: serde_json::from_str(&row.groups).unwrap_or_default(),
                cluster: row.cluster,
                method: row.method,
                path: row.path,
                query: row.query,
                verb: row.verb,
                impersonated_user: row.impersonated_user,
                impersonated_groups: serde_json::from_str(&row.impersonated_groups)
                    .unwrap_or_default(),
                status: u16::try_from(row.status).unwrap_or_default(),
                bytes_in: row.bytes_in.max(0) as u64,
                bytes_out: row.bytes_out.max(0) as u64,
                duration_ms: row.duration_ms.max(0) as u64,
                decision: row.decision,
                rule: row.rule,
                recording: row.recording,
            },
        }
    }
}

/// Postgres text cannot hold NUL, so no stored name or audit value has one:
/// a lookup by a value with NUL matches nothing, in both stores alike.
fn holds_nul(text: &str) -> bool {
    text.contains('\0')
}

/// An audit value as stored: NUL (which Postgres text cannot hold, and
/// which would fail the whole batch) becomes U+FFFD.
fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if holds_nul(text) {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

pub(crate) fn dashboard_parameters_json(row: &ClusterRow) -> Option<String> {
    row.dashboard_parameters
        .as_ref()
        .map(|parameters| serde_json::to_string(parameters).expect("a JSON map always serialises"))
}

fn labels_json(row: &ClusterRow) -> String {
    serde_json::to_string(&row.labels).expect("a string map always serialises")
}

/// The SQL both stores run, for a pool type `$pool`. Written once so the two
/// implementations cannot drift apart.
/// Rows per multi-row audit INSERT. A batch is cut into chunks of at most
/// this many rows, sized in powers of two, so only a handful of distinct
/// statements exist and each stays prepared in the connection's cache
/// (a statement per batch size would be parsed again for almost every batch).
const AUDIT_CHUNK: usize = 64;

/// The chunk sizes a batch of `count` audit rows is inserted in.
pub(crate) fn audit_chunks(count: usize) -> impl Iterator<Item = usize> {
    let full = std::iter::repeat_n(AUDIT_CHUNK, count / AUDIT_CHUNK);
    let rest = count % AUDIT_CHUNK;
    let powers = (0..usize::BITS)
        .rev()
        .map(|bit| 1usize << bit)
        .filter(move |size| rest & size != 0);
    full.chain(powers)
}

/// The columns an audit row binds, in order.
const AUDIT_COLUMNS: &str = "time, kind, subject, groups, cluster, method, path, query, status, \
     bytes_in, bytes_out, duration_ms, decision, rule, recording, verb, impersonated_user, \
     impersonated_groups";

/// The values an audit row binds: one per column.
const AUDIT_VALUES: usize = {
    let bytes = AUDIT_COLUMNS.as_bytes();
    let (mut index, mut commas) = (0, 0);
    while index < bytes.len() {
        if bytes[index] == b',' {
            commas += 1;
        }
        index += 1;
    }
    commas + 1
};

/// The multi-row audit INSERT for `rows` rows (a size [`audit_chunks`]
/// makes), written once per size and form of placeholder.
pub(crate) fn audit_insert_sql(rows: usize, dialect: Dialect) -> &'static str {
    use std::sync::OnceLock;
    const SIZES: usize = AUDIT_CHUNK.trailing_zeros() as usize + 1;
    static STATEMENTS: [[OnceLock<String>; SIZES]; 2] =
        [const { [const { OnceLock::new() }; SIZES] }; 2];
    assert!(
        rows.is_power_of_two() && rows <= AUDIT_CHUNK,
        "audit chunks are powers of two up to {AUDIT_CHUNK}"
    );
    STATEMENTS[dialect as usize][rows.trailing_zeros() as usize].get_or_init(|| {
        let mut sql = format!(
            "{} INTO audit_records ({AUDIT_COLUMNS}) VALUES ",
            dialect.insert()
        );
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for value in 0..AUDIT_VALUES {
                if value > 0 {
                    sql.push_str(", ");
                }
                dialect.placeholder(&mut sql, row * AUDIT_VALUES + value + 1);
            }
            sql.push(')');
        }
        sql
    })
}

/// Where the two stores' SQL differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite = 0,
    Postgres = 1,
}

impl Dialect {
    /// The multi-row INSERT's verb. A failing row fails the whole batch
    /// either way: the transaction that holds it is rolled back. SQLite's
    /// `OR FAIL` keeps it from also journaling every page the statement
    /// touches so that it could undo the statement alone (`OR ABORT`, the
    /// default).
    fn insert(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INSERT OR FAIL",
            Dialect::Postgres => "INSERT",
        }
    }

    /// What asks for a query's plan, and the column of its text.
    pub(crate) fn explain(self) -> (&'static str, usize) {
        match self {
            Dialect::Sqlite => ("EXPLAIN QUERY PLAN ", 3),
            Dialect::Postgres => ("EXPLAIN ", 0),
        }
    }

    /// A bound value's placeholder. SQLite's are anonymous (`?`, bound in
    /// order): it finds a numbered one's number by searching the
    /// statement's list of names, which for a multi-row INSERT is as long as
    /// the statement, for every value. Postgres has only `$1`, `$2`, ….
    fn placeholder(self, sql: &mut String, number: usize) {
        use std::fmt::Write;
        match self {
            Dialect::Sqlite => sql.push('?'),
            Dialect::Postgres => {
                let _ = write!(sql, "${number}");
            }
        }
    }

    /// The audit filter's comparison of a cluster name with a bound one,
    /// without case, as its index holds it: SQLite's by the column's
    /// `NOCASE` collation (an index on `lower(cluster)` would call a
    /// function for every inserted row, and a statement that calls one
    /// journals every page it touches), Postgres's by `lower(cluster)`.
    fn cluster_is(self) -> (&'static str, &'static str) {
        match self {
            Dialect::Sqlite => (" AND cluster = ", " COLLATE NOCASE"),
            Dialect::Postgres => (" AND lower(cluster) = lower(", ")"),
        }
    }
}

macro_rules! shared_sql {
    ($pool:ty, $database:ty, $dialect:expr) => {
        async fn list_clusters(
            pool: &$pool,
            after: Option<&str>,
            limit: u32,
        ) -> Result<Vec<ClusterRecord>, StoreError> {
            let rows: Vec<StoredRow> = sqlx::query_as(concat!(
                "SELECT ",
                $crate::store::columns!(),
                " FROM clusters WHERE lower(name) > $1 ORDER BY lower(name) LIMIT $2"
            ))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.into_iter().map(ClusterRecord::try_from).collect()
        }

        async fn get_cluster(pool: &$pool, name: &str) -> Result<Option<ClusterRecord>, StoreError> {
            if $crate::store::holds_nul(name) {
                return Ok(None);
            }
            let row: Option<StoredRow> = sqlx::query_as(concat!(
                "SELECT ",
                $crate::store::columns!(),
                " FROM clusters WHERE lower(name) = lower($1)"
            ))
            .bind(name)
            .fetch_optional(pool)
            .await?;
            row.map(ClusterRecord::try_from).transpose()
        }

        async fn create_cluster(pool: &$pool, row: &ClusterRow) -> Result<ClusterRecord, StoreError> {
            let now = chrono::Utc::now();
            let stored: StoredRow = sqlx::query_as(concat!(
                "INSERT INTO clusters (name, title, url, auth_provider, ca_data, skip_tls_verify, \
                 service_account_token, client_cert_data, client_key_data, dashboard_url, \
                 oidc_token_provider, skip_metrics_lookup, labels, uid, version, created_at, updated_at, \
                 dashboard_app, dashboard_parameters) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $15, 1, $14, $14, $16, $17) RETURNING ",
                $crate::store::columns!()
            ))
            .bind(&row.name)
            .bind(&row.title)
            .bind(&row.url)
            .bind(row.auth_provider.as_str())
            .bind(&row.ca_data)
            .bind(row.skip_tls_verify)
            .bind(&row.sealed_service_account_token)
            .bind(&row.client_cert_data)
            .bind(&row.sealed_client_key_data)
            .bind(&row.dashboard_url)
            .bind(&row.oidc_token_provider)
            .bind(row.skip_metrics_lookup)
            .bind(labels_json(row))
            .bind(now)
            .bind(uuid::Uuid::new_v4().simple().to_string())
            .bind(&row.dashboard_app)
            .bind($crate::store::dashboard_parameters_json(row))
            .fetch_one(pool)
            .await?;
            stored.try_into()
        }

        async fn update_cluster(
            pool: &$pool,
            expected_version: i64,
            row: &ClusterRow,
        ) -> Result<ClusterRecord, StoreError> {
            let mut transaction = pool.begin().await?;
            let updated: Option<StoredRow> = sqlx::query_as(concat!(
                "UPDATE clusters SET title = $2, url = $3, auth_provider = $4, ca_data = $5, \
                 skip_tls_verify = $6, service_account_token = $7, client_cert_data = $8, \
                 client_key_data = $9, dashboard_url = $10, oidc_token_provider = $11, \
                 skip_metrics_lookup = $12, labels = $13, version = version + 1, updated_at = $14, \
                 dashboard_app = $16, dashboard_parameters = $17 \
                 WHERE lower(name) = lower($1) AND version = $15 RETURNING ",
                $crate::store::columns!()
            ))
            .bind(&row.name)
            .bind(&row.title)
            .bind(&row.url)
            .bind(row.auth_provider.as_str())
            .bind(&row.ca_data)
            .bind(row.skip_tls_verify)
            .bind(&row.sealed_service_account_token)
            .bind(&row.client_cert_data)
            .bind(&row.sealed_client_key_data)
            .bind(&row.dashboard_url)
            .bind(&row.oidc_token_provider)
            .bind(row.skip_metrics_lookup)
            .bind(labels_json(row))
            .bind(chrono::Utc::now())
            .bind(expected_version)
            .bind(&row.dashboard_app)
            .bind($crate::store::dashboard_parameters_json(row))
            .fetch_optional(&mut *transaction)
            .await?;
            let result = match updated {
                Some(stored) => stored.try_into(),
                None => Err(version_failure(&mut transaction, &row.name).await?),
            };
            transaction.commit().await?;
            result
        }

        async fn delete_cluster(
            pool: &$pool,
            name: &str,
            expected_version: Option<i64>,
        ) -> Result<(), StoreError> {
            if $crate::store::holds_nul(name) {
                return Err(StoreError::NotFound);
            }
            let mut transaction = pool.begin().await?;
            let deleted = match expected_version {
                Some(version) => {
                    sqlx::query("DELETE FROM clusters WHERE lower(name) = lower($1) AND version = $2")
                        .bind(name)
                        .bind(version)
                        .execute(&mut *transaction)
                        .await?
                }
                None => {
                    sqlx::query("DELETE FROM clusters WHERE lower(name) = lower($1)")
                        .bind(name)
                        .execute(&mut *transaction)
                        .await?
                }
            };
            let result = if deleted.rows_affected() == 1 {
                Ok(())
            } else {
                Err(version_failure(&mut transaction, name).await?)
            };
            transaction.commit().await?;
            result
        }

        /// Why a conditional write touched no row: gone, or at another version.
        async fn version_failure(
            transaction: &mut sqlx::Transaction<'_, $database>,
            name: &str,
        ) -> Result<StoreError, StoreError> {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT version FROM clusters WHERE lower(name) = lower($1)")
                    .bind(name)
                    .fetch_optional(&mut **transaction)
                    .await?;
            Ok(match current {
                Some(current) => StoreError::VersionMismatch { current },
                None => StoreError::NotFound,
            })
        }

        async fn insert_audit_records(pool: &$pool, records: &[$crate::audit::Entry]) -> Result<(), AuditStoreError> {
            if records.is_empty() {
                return Ok(());
            }
            // Most records have no impersonated groups, and many no groups.
            let json = |groups: &[String]| -> std::borrow::Cow<'static, str> {
                if groups.is_empty() {
                    "[]".into()
                } else {
                    serde_json::to_string(groups).unwrap_or_else(|_| "[]".into()).into()
                }
            };
            // A caller's groups are shared by the records of its requests:
            // they are written out once for a run of records that share them.
            let mut written = Vec::new();
            let mut previous: Option<&std::sync::Arc<[String]>> = None;
            let groups: Vec<_> = records
                .iter()
                .map(|record| {
                    if !previous.is_some_and(|seen| std::sync::Arc::ptr_eq(seen, &record.groups)) {
                        written.push(json(&record.groups));
                        previous = Some(&record.groups);
                    }
                    (written.len() - 1, json(&record.impersonated_groups))
                })
                .collect();
            let mut transaction = pool.begin().await?;
            let mut offset = 0;
            for size in $crate::store::audit_chunks(records.len()) {
                let rows = records[offset..offset + size].iter().zip(&groups[offset..offset + size]);
                use $crate::store::storable;
                let mut query = sqlx::query($crate::store::audit_insert_sql(size, $dialect));
                for (record, (groups_at, impersonated_groups)) in rows {
                    query = query
                        .bind(record.time)
                        .bind(storable(&record.kind))
                        .bind(storable(&record.subject))
                        .bind(written[*groups_at].as_ref())
                        .bind(record.cluster.as_deref().map(storable))
                        .bind(record.method())
                        .bind(storable(&record.path))
                        .bind(record.query.as_deref().map(storable))
                        .bind(i32::from(record.status))
                        .bind(record.bytes_in as i64)
                        .bind(record.bytes_out as i64)
                        .bind(record.duration_ms as i64)
                        .bind(storable(&record.decision))
                        .bind(record.rule.as_deref().map(storable))
                        .bind(record.recording.as_deref().map(storable))
                        .bind(record.verb.as_deref().map(storable))
                        .bind(record.impersonated_user.as_deref().map(storable))
                        .bind(impersonated_groups.as_ref());
                }
                query.persistent(true).execute(&mut *transaction).await?;
                offset += size;
            }
            transaction.commit().await?;
            Ok(())
        }

        /// The audit query for `filter`, after `prefix` (empty, or the
        /// dialect's EXPLAIN).
        fn audit_query<'a>(
            prefix: &str,
            filter: &'a AuditFilter,
            before_id: Option<i64>,
            limit: u32,
        ) -> sqlx::QueryBuilder<'a, $database> {
            let mut builder = sqlx::QueryBuilder::<$database>::new(prefix);
            builder.push(
                "SELECT id, time, kind, subject, groups, cluster, method, path, query, status, \
                 bytes_in, bytes_out, duration_ms, decision, rule, recording, verb, impersonated_user, \
                 impersonated_groups FROM audit_records WHERE 1 = 1",
            );
            if let Some(before_id) = before_id {
                builder.push(" AND id < ").push_bind(before_id);
            }
            if let Some(cluster) = &filter.cluster {
                let (before, after) = $dialect.cluster_is();
                builder.push(before).push_bind(cluster.as_str()).push(after);
            }
            if let Some(subject) = &filter.subject {
                builder.push(" AND subject = ").push_bind(subject.as_str());
            }
            if let Some(method) = &filter.method {
                builder.push(" AND method = ").push_bind(method.as_str());
            }
            if let Some(status) = filter.status {
                builder.push(" AND status = ").push_bind(i32::from(status));
            }
            if let Some(since) = filter.since {
                builder.push(" AND time >= ").push_bind(since);
            }
            if let Some(until) = filter.until {
                builder.push(" AND time < ").push_bind(until);
            }
            builder.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
            builder
        }

        async fn query_audit_records(
            pool: &$pool,
            filter: &AuditFilter,
            before_id: Option<i64>,
            limit: u32,
        ) -> Result<Vec<StoredAuditRecord>, AuditStoreError> {
            let texts = [&filter.cluster, &filter.subject, &filter.method];
            if texts.into_iter().flatten().any(|text| $crate::store::holds_nul(text)) {
                return Ok(Vec::new());
            }
            let rows: Vec<$crate::store::AuditRow> = audit_query("", filter, before_id, limit)
                .build_query_as()
                .fetch_all(pool)
                .await?;
            Ok(rows.into_iter().map(StoredAuditRecord::from).collect())
        }

        async fn explain_audit_records(
            pool: &$pool,
            filter: &AuditFilter,
        ) -> Result<String, AuditStoreError> {
            use sqlx::Row;
            let (prefix, column) = $dialect.explain();
            let rows = audit_query(prefix, filter, None, 100).build().fetch_all(pool).await?;
            let lines: Result<Vec<String>, sqlx::Error> =
                rows.iter().map(|row| row.try_get::<String, _>(column)).collect();
            Ok(lines?.join("\n"))
        }

        async fn prune_audit_records(pool: &$pool, before: chrono::DateTime<chrono::Utc>) -> Result<u64, AuditStoreError> {
            let deleted = sqlx::query("DELETE FROM audit_records WHERE time < $1")
                .bind(before)
                .execute(pool)
                .await?;
            Ok(deleted.rows_affected())
        }

        async fn spend_ticket_row(
            pool: &$pool,
            digest: &str,
            expires_at: chrono::DateTime<chrono::Utc>,
        ) -> Result<bool, AuditStoreError> {
            let inserted = sqlx::query(
                "INSERT INTO spent_tickets (digest, expires_at) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest)
            .bind(expires_at)
            .execute(pool)
            .await?;
            Ok(inserted.rows_affected() == 1)
        }

        async fn prune_ticket_rows(pool: &$pool, now: chrono::DateTime<chrono::Utc>) -> Result<u64, AuditStoreError> {
            let deleted = sqlx::query("DELETE FROM spent_tickets WHERE expires_at < $1")
                .bind(now)
                .execute(pool)
                .await?;
            Ok(deleted.rows_affected())
        }

        async fn create_recording_row(
            pool: &$pool,
            recording: &$crate::audit::RecordingInfo,
        ) -> Result<(), AuditStoreError> {
            use $crate::store::storable;
            sqlx::query(
                "INSERT INTO recordings (id, cluster, subject, path, protocol, started_at, bytes, truncated) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&recording.id)
            .bind(storable(&recording.cluster))
            .bind(storable(&recording.subject))
            .bind(storable(&recording.path))
            .bind(&recording.protocol)
            .bind(recording.started_at)
            .bind(recording.bytes as i64)
            .bind(recording.truncated)
            .execute(pool)
            .await?;
            Ok(())
        }

        async fn append_recording_row(
            pool: &$pool,
            id: &str,
            sequence: i64,
            data: &[u8],
            bytes: u64,
            truncated: bool,
        ) -> Result<(), AuditStoreError> {
            let mut transaction = pool.begin().await?;
            sqlx::query("INSERT INTO recording_chunks (recording, sequence, data) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(sequence)
                .bind(data)
                .execute(&mut *transaction)
                .await?;
            sqlx::query("UPDATE recordings SET bytes = $2, truncated = $3 WHERE id = $1")
                .bind(id)
                .bind(bytes as i64)
                .bind(truncated)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            Ok(())
        }

        async fn end_recording_row(
            pool: &$pool,
            id: &str,
            ended_at: chrono::DateTime<chrono::Utc>,
        ) -> Result<(), AuditStoreError> {
            sqlx::query("UPDATE recordings SET ended_at = $2 WHERE id = $1")
                .bind(id)
                .bind(ended_at)
                .execute(pool)
                .await?;
            Ok(())
        }

        async fn read_recording_rows(
            pool: &$pool,
            id: &str,
        ) -> Result<Option<($crate::audit::RecordingInfo, Vec<u8>)>, AuditStoreError> {
            if $crate::store::holds_nul(id) {
                return Ok(None);
            }
            let row: Option<$crate::store::RecordingRow> = sqlx::query_as(concat!(
                "SELECT ", $crate::store::recording_columns!(), " FROM recordings WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let chunks: Vec<Vec<u8>> = sqlx::query_scalar(
                "SELECT data FROM recording_chunks WHERE recording = $1 ORDER BY sequence",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            Ok(Some((row.into(), chunks.concat())))
        }

        async fn list_recording_rows(
            pool: &$pool,
            filter: &$crate::audit::RecordingFilter,
            cursor: Option<&$crate::audit::RecordingCursor>,
            limit: u32,
        ) -> Result<Vec<$crate::audit::RecordingInfo>, AuditStoreError> {
            let texts = [&filter.cluster, &filter.subject];
            if texts.into_iter().flatten().any(|text| $crate::store::holds_nul(text))
                || cursor.is_some_and(|cursor| $crate::store::holds_nul(&cursor.id))
            {
                return Ok(Vec::new());
            }
            let mut builder = sqlx::QueryBuilder::<$database>::new(concat!(
                "SELECT ", $crate::store::recording_columns!(), " FROM recordings WHERE 1 = 1"
            ));
            if let Some(cursor) = cursor {
                builder
                    .push(" AND (started_at < ")
                    .push_bind(cursor.started_at)
                    .push(" OR (started_at = ")
                    .push_bind(cursor.started_at)
                    .push(" AND id < ")
                    .push_bind(cursor.id.clone())
                    .push("))");
            }
            if let Some(cluster) = &filter.cluster {
                builder.push(" AND lower(cluster) = lower(").push_bind(cluster.clone()).push(")");
            }
            if let Some(subject) = &filter.subject {
                builder.push(" AND subject = ").push_bind(subject.clone());
            }
            if let Some(since) = filter.since {
                builder.push(" AND started_at >= ").push_bind(since);
            }
            if let Some(until) = filter.until {
                builder.push(" AND started_at < ").push_bind(until);
            }
            builder
                .push(" ORDER BY started_at DESC, id DESC LIMIT ")
                .push_bind(i64::from(limit));
            let rows: Vec<$crate::store::RecordingRow> = builder.build_query_as().fetch_all(pool).await?;
            Ok(rows.into_iter().map(Into::into).collect())
        }

        async fn prune_recording_rows(pool: &$pool, before: chrono::DateTime<chrono::Utc>) -> Result<u64, AuditStoreError> {
            let mut transaction = pool.begin().await?;
            sqlx::query(
                "DELETE FROM recording_chunks WHERE recording IN (SELECT id FROM recordings WHERE started_at < $1)",
            )
            .bind(before)
            .execute(&mut *transaction)
            .await?;
            let deleted = sqlx::query("DELETE FROM recordings WHERE started_at < $1")
                .bind(before)
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            Ok(deleted.rows_affected())
        }

        async fn ping_database(pool: &$pool) -> Result<(), StoreError> {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        }
    };
}
pub(crate) use shared_sql;

/// Implements [`ClusterStore`] and [`AuditStore`] for a store whose `pool`
/// field the shared SQL runs on.
macro_rules! delegate_store {
    ($store:ty, $kind:literal $(, $replicated:ident)?) => {
        #[async_trait::async_trait]
        impl $crate::store::ClusterStore for $store {
            async fn list(
                &self,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<ClusterRecord>, StoreError> {
                list_clusters(&self.pool, after, limit).await
            }

            async fn get(&self, name: &str) -> Result<Option<ClusterRecord>, StoreError> {
                get_cluster(&self.pool, name).await
            }

            async fn create(&self, row: &ClusterRow) -> Result<ClusterRecord, StoreError> {
                create_cluster(&self.pool, row).await
            }

            async fn update(
                &self,
                expected_version: i64,
                row: &ClusterRow,
            ) -> Result<ClusterRecord, StoreError> {
                update_cluster(&self.pool, expected_version, row).await
            }

            async fn delete(
                &self,
                name: &str,
                expected_version: Option<i64>,
            ) -> Result<(), StoreError> {
                delete_cluster(&self.pool, name, expected_version).await
            }

            async fn ping(&self) -> Result<(), StoreError> {
                ping_database(&self.pool).await
            }

            async fn explain_lookup(&self) -> Result<String, StoreError> {
                self.explain().await
            }

            fn kind(&self) -> &'static str {
                $kind
            }

            $(
                async fn announce_change(&self, name: &str) -> Result<(), StoreError> {
                    let _ = stringify!($replicated);
                    self.notify(name).await
                }

                fn changes(
                    &self,
                ) -> Option<tokio::sync::mpsc::Receiver<$crate::store::RegistryChange>> {
                    Some(self.listen())
                }
            )?
        }

        #[async_trait::async_trait]
        impl $crate::store::AuditStore for $store {
            async fn insert_audit(
                &self,
                records: &[$crate::audit::Entry],
            ) -> Result<(), AuditStoreError> {
                insert_audit_records(&self.pool, records).await
            }

            async fn query_audit(
                &self,
                filter: &$crate::audit::AuditFilter,
                before_id: Option<i64>,
                limit: u32,
            ) -> Result<Vec<$crate::audit::StoredAuditRecord>, AuditStoreError> {
                query_audit_records(&self.pool, filter, before_id, limit).await
            }

            async fn explain_audit(
                &self,
                filter: &$crate::audit::AuditFilter,
            ) -> Result<String, AuditStoreError> {
                explain_audit_records(&self.pool, filter).await
            }

            async fn prune_audit(
                &self,
                before: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, AuditStoreError> {
                prune_audit_records(&self.pool, before).await
            }
        }

        #[async_trait::async_trait]
        impl $crate::audit::SessionStore for $store {
            async fn spend_ticket(
                &self,
                digest: &str,
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, AuditStoreError> {
                spend_ticket_row(&self.pool, digest, expires_at).await
            }

            async fn prune_tickets(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, AuditStoreError> {
                prune_ticket_rows(&self.pool, now).await
            }

            async fn create_recording(
                &self,
                recording: &$crate::audit::RecordingInfo,
            ) -> Result<(), AuditStoreError> {
                create_recording_row(&self.pool, recording).await
            }

            async fn append_recording(
                &self,
                id: &str,
                sequence: i64,
                data: &[u8],
                bytes: u64,
                truncated: bool,
            ) -> Result<(), AuditStoreError> {
                append_recording_row(&self.pool, id, sequence, data, bytes, truncated).await
            }

            async fn end_recording(
                &self,
                id: &str,
                ended_at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), AuditStoreError> {
                end_recording_row(&self.pool, id, ended_at).await
            }

            async fn read_recording(
                &self,
                id: &str,
            ) -> Result<Option<($crate::audit::RecordingInfo, Vec<u8>)>, AuditStoreError> {
                read_recording_rows(&self.pool, id).await
            }

            async fn list_recordings(
                &self,
                filter: &$crate::audit::RecordingFilter,
                cursor: Option<&$crate::audit::RecordingCursor>,
                limit: u32,
            ) -> Result<Vec<$crate::audit::RecordingInfo>, AuditStoreError> {
                list_recording_rows(&self.pool, filter, cursor, limit).await
            }

            async fn prune_recordings(
                &self,
                before: chrono::DateTime<chrono::Utc>,
            ) -> Result<u64, AuditStoreError> {
                prune_recording_rows(&self.pool, before).await
            }
        }
    };
}
pub(crate) use delegate_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_batches_are_cut_into_few_distinct_chunk_sizes() {
        for count in [0, 1, 5, 63, 64, 65, 500, 1000] {
            let chunks: Vec<usize> = audit_chunks(count).collect();
            assert_eq!(chunks.iter().sum::<usize>(), count, "{count}");
            assert!(chunks
                .iter()
                .all(|size| size.is_power_of_two() && *size <= AUDIT_CHUNK));
        }
        assert_eq!(audit_chunks(5).collect::<Vec<_>>(), [4, 1]);
        assert_eq!(audit_chunks(130).collect::<Vec<_>>(), [64, 64, 2]);
    }

    #[test]
    fn an_audit_insert_has_a_placeholder_for_every_value_of_every_row() {
        let columns = AUDIT_COLUMNS.split(',').count();
        assert_eq!(columns, AUDIT_VALUES);
        for rows in audit_chunks(127) {
            let postgres = audit_insert_sql(rows, Dialect::Postgres);
            let last = format!("${})", rows * columns);
            assert!(postgres.ends_with(&last), "{postgres}");
            assert_eq!(postgres.matches('$').count(), rows * columns, "{postgres}");
            assert_eq!(postgres.matches("), (").count(), rows - 1, "{postgres}");
            let sqlite = audit_insert_sql(rows, Dialect::Sqlite);
            assert_eq!(sqlite.matches('?').count(), rows * columns, "{sqlite}");
            assert!(!sqlite.contains('$'), "{sqlite}");
            // The same statement apart from the placeholders and the verb.
            assert_eq!(
                sqlite
                    .replace('?', "")
                    .replacen("INSERT OR FAIL", "INSERT", 1),
                postgres.replace(|c: char| c == '$' || c.is_ascii_digit(), ""),
            );
            // Made once per size and dialect.
            assert!(std::ptr::eq(
                postgres,
                audit_insert_sql(rows, Dialect::Postgres)
            ));
            assert!(std::ptr::eq(
                sqlite,
                audit_insert_sql(rows, Dialect::Sqlite)
            ));
        }
        assert!(audit_insert_sql(2, Dialect::Postgres).contains("($1, $2,"));
        assert!(audit_insert_sql(2, Dialect::Postgres).contains("), ($19, $20,"));
        assert!(audit_insert_sql(2, Dialect::Sqlite).contains("), (?, ?,"));
    }
}
