//! The audit trail: one record for every proxied call, every registry write
//! and every denial — who, which cluster, what, the outcome, bytes, duration,
//! and the rule that decided.
//!
//! Records are written off the request path: a bounded buffer feeds a task
//! that inserts in batches. Nothing is dropped silently: drops are counted,
//! and `audit.failClosed` refuses requests rather than lose their records.
//! Query strings are stored with sensitive values masked; no credential is
//! ever recorded.

pub mod recording;
pub mod routes;
pub mod spdy;
mod store;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::Method;
use http_body::Frame;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::context::AuditNote;
use crate::error::ApiError;
use crate::telemetry::SharedMetrics;

pub use store::{
    AuditStore, AuditStoreError, RecordingCursor, RecordingFilter, RecordingInfo, SessionStore,
};

/// Audit settings (`audit:` in the configuration).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Records held in memory while the writer catches up.
    #[serde(default = "default_buffer")]
    pub buffer_size: usize,
    /// Refuse auditable requests (503) when the buffer is full, rather than drop records.
    #[serde(default)]
    pub fail_closed: bool,
    /// Records older than this many days are pruned (0 keeps everything).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Query parameters whose values are masked (case-insensitive substrings).
    #[serde(default = "default_sensitive")]
    pub sensitive_query_params: Vec<String>,
}

fn default_true() -> bool {
    true
}

fn default_buffer() -> usize {
    10_000
}

fn default_retention_days() -> u32 {
    30
}

fn default_sensitive() -> Vec<String> {
    [
        "token",
        "password",
        "secret",
        "ticket",
        "key",
        "auth",
        "credential",
        "signature",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            buffer_size: default_buffer(),
            fail_closed: false,
            retention_days: default_retention_days(),
            sensitive_query_params: default_sensitive(),
        }
    }
}

pub use kubeportal_api::audit::{AuditRecord, StoredAuditRecord};

/// A record on its way to the store: an [`AuditRecord`] whose values the
/// request already held are shared, not copied (the caller's subject and
/// groups, the cluster's name, the deciding rule) and whose fixed words
/// are constants. It is made on the request's thread and dropped on the
/// writer's: every allocation it holds is freed on another thread, where
/// it costs the allocator far more than where it was made.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: DateTime<Utc>,
    /// `proxy`, `registry` or `denial`.
    pub kind: Cow<'static, str>,
    pub subject: Arc<str>,
    pub groups: Arc<[String]>,
    pub cluster: Option<Arc<str>>,
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub verb: Option<Cow<'static, str>>,
    pub impersonated_user: Option<String>,
    pub impersonated_groups: Vec<String>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: u64,
    /// `allow`, `deny` or `none`.
    pub decision: Cow<'static, str>,
    pub rule: Option<Arc<str>>,
    pub recording: Option<String>,
}

impl Entry {
    /// The method as stored: its name.
    pub fn method(&self) -> &str {
        self.method.as_str()
    }
}

/// A record read back (or written by hand) as one to store; refused when
/// its method is no HTTP method, which no request can have had.
impl TryFrom<AuditRecord> for Entry {
    type Error = http::method::InvalidMethod;

    fn try_from(record: AuditRecord) -> Result<Self, Self::Error> {
        Ok(Self {
            time: record.time,
            kind: record.kind.into(),
            subject: record.subject.into(),
            groups: record.groups.into(),
            cluster: record.cluster.map(Arc::from),
            method: Method::from_bytes(record.method.as_bytes())?,
            path: record.path,
            query: record.query,
            verb: record.verb.map(Cow::Owned),
            impersonated_user: record.impersonated_user,
            impersonated_groups: record.impersonated_groups,
            status: record.status,
            bytes_in: record.bytes_in,
            bytes_out: record.bytes_out,
            duration_ms: record.duration_ms,
            decision: record.decision.into(),
            rule: record.rule.map(Arc::from),
            recording: record.recording,
        })
    }
}

/// The subject of a request no identity was noted for.
fn anonymous() -> Arc<str> {
    static ANONYMOUS: std::sync::LazyLock<Arc<str>> =
        std::sync::LazyLock::new(|| Arc::from("anonymous"));
    ANONYMOUS.clone()
}

/// Filters of the audit route.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub cluster: Option<String>,
    pub subject: Option<String>,
    pub method: Option<String>,
    pub status: Option<u16>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The query with the values of sensitive parameters masked, judged on their
/// decoded names (`%74oken=` is `token=`). A query that does not decode is
/// recorded as `<malformed>`, never raw: it might carry a secret.
pub fn mask_query(query: &str, sensitive: &[String]) -> String {
    match crate::kubernetes::Query::parse(Some(query)) {
        Ok(decoded) => decoded.encode_masked(sensitive).unwrap_or_default(),
        Err(_) => "<malformed>".to_owned(),
    }
}

/// Hands records to the background writer, and reads them back.
#[derive(Clone)]
pub struct Auditor {
    store: Arc<dyn AuditStore>,
    sender: Option<mpsc::Sender<Message>>,
    config: Arc<AuditConfig>,
    metrics: SharedMetrics,
    /// Records of upgraded sessions, waiting for their sessions to end.
    sessions: TaskTracker,
}

/// What the writer is handed. A record goes in the channel's own slot, not
/// boxed: a box would be one more allocation freed on the writer's thread.
#[allow(clippy::large_enum_variant)]
enum Message {
    Record(Entry),
    /// Answered once every record handed before it is written (or dropped).
    Flush(oneshot::Sender<()>),
}

impl Auditor {
    /// Starts the writer (and the pruner) on `store`.
    pub fn start(store: Arc<dyn AuditStore>, config: AuditConfig, metrics: SharedMetrics) -> Self {
        if !config.enabled {
            return Self {
                store,
                sender: None,
                config: Arc::new(config),
                metrics,
                sessions: TaskTracker::new(),
            };
        }
        let (sender, receiver) = mpsc::channel(config.buffer_size.max(1));
        tokio::spawn(write_batches(
            store.clone(),
            receiver,
            metrics.clone(),
            config.fail_closed,
        ));
        if config.retention_days > 0 {
            tokio::spawn(prune(store.clone(), config.retention_days));
        }
        Self {
            store,
            sender: Some(sender),
            config: Arc::new(config),
            metrics,
            sessions: TaskTracker::new(),
        }
    }

    /// Writes what was handed over, for a shutdown: waits for the records of
    /// upgraded sessions (their sessions ended first), then for the writer
    /// to have written every record before this call.
    pub async fn flush(&self) {
        self.sessions.close();
        self.sessions.wait().await;
        let Some(sender) = &self.sender else { return };
        let (flushed, written) = oneshot::channel();
        if sender.send(Message::Flush(flushed)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Stored records matching `filter`, newest first, older than `before_id`.
    pub async fn query(
        &self,
        filter: &AuditFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredAuditRecord>, AuditStoreError> {
        self.store.query_audit(filter, before_id, limit).await
    }

    fn has_room(&self) -> bool {
        self.sender
            .as_ref()
            .is_none_or(|sender| sender.capacity() > 0)
    }

    fn submit(&self, record: Entry) {
        let Some(sender) = &self.sender else { return };
        if sender.try_send(Message::Record(record)).is_err() {
            self.metrics.audit_dropped.inc();
            tracing::warn!("audit buffer full: a record was dropped");
        }
    }
}

/// Most records one transaction writes.
const BATCH: usize = 1000;

/// The shortest time between two audit transactions. A record that arrives
/// after a quiet spell is written at once; under load the records of this
/// window share one transaction (each commit costs far more than a row).
const WRITE_INTERVAL: Duration = Duration::from_millis(20);

/// Writes records in batches. A failed batch is retried a few times and then
/// dropped (counted); with `fail_closed` it is retried until it is written,
/// while the full buffer makes the middleware refuse new requests.
async fn write_batches(
    store: Arc<dyn AuditStore>,
    mut receiver: mpsc::Receiver<Message>,
    metrics: SharedMetrics,
    fail_closed: bool,
) {
    let mut messages = Vec::with_capacity(BATCH);
    let mut batch = Vec::with_capacity(BATCH);
    let mut flushed = Vec::new();
    while receiver.recv_many(&mut messages, BATCH).await > 0 {
        for message in messages.drain(..) {
            match message {
                Message::Record(record) => batch.push(record),
                Message::Flush(answer) => flushed.push(answer),
            }
        }
        if batch.is_empty() {
            for answer in flushed.drain(..) {
                let _ = answer.send(());
            }
            continue;
        }
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match store.insert_audit(&batch).await {
                Ok(()) => {
                    metrics.audit_written.inc_by(batch.len() as u64);
                    break;
                }
                Err(error) if attempt < 3 || fail_closed => {
                    attempt += 1;
                    tracing::warn!(%error, attempt, "audit write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500 * attempt.min(10))).await;
                }
                Err(error) => {
                    metrics.audit_dropped.inc_by(batch.len() as u64);
                    tracing::error!(%error, records = batch.len(), "audit records dropped after retries");
                    break;
                }
            }
        }
        batch.clear();
        for answer in flushed.drain(..) {
            let _ = answer.send(());
        }
        tokio::time::sleep_until((started + WRITE_INTERVAL).into()).await;
    }
}

async fn prune(store: Arc<dyn AuditStore>, retention_days: u32) {
    let mut interval = tokio::time::interval(Duration::from_secs(3600));
    loop {
        interval.tick().await;
        let before = Utc::now() - chrono::Duration::days(i64::from(retention_days));
        match store.prune_audit(before).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned old audit records"),
            Err(error) => tracing::warn!(%error, "audit pruning failed"),
        }
    }
}

/// What kind of request this is, for the audit trail; `None` if not audited
/// (unless it ends in a denial).
fn audited_kind(method: &Method, path: &str) -> Option<&'static str> {
    // Whole segments: `/api/kubernetes/proxyfoo` is a 404, not a proxy call.
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under("/api/kubernetes/proxy") || crate::error::is_path_form_proxy(path) {
        Some("proxy")
    } else if under("/api/kubernetes/clusters")
        && matches!(
            *method,
            Method::POST | Method::PUT | Method::DELETE | Method::PATCH
        )
    {
        Some("registry")
    } else {
        None
    }
}

/// Counts the bytes of a body and reports the total when it ends or is dropped.
struct Counted<F: FnOnce(u64) + Send + 'static> {
    inner: Body,
    bytes: u64,
    on_end: Option<F>,
}

impl<F: FnOnce(u64) + Send + Unpin + 'static> http_body::Body for Counted<F> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.bytes += data.len() as u64;
            }
        }
        if let Poll::Ready(None) = &polled {
            if let Some(on_end) = this.on_end.take() {
                on_end(this.bytes);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<F: FnOnce(u64) + Send + 'static> Drop for Counted<F> {
    fn drop(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.bytes);
        }
    }
}

/// The status an audit record gives a request dropped before its answer,
/// as nginx logs a client that closed the request.
pub const UNANSWERED: u16 = 499;

/// Writes the record of an audited request whose answer never came, when
/// the request is dropped.
struct Unanswered<S: FnOnce(crate::context::NoteData, &'static str, u16, u64, u64)> {
    parts: Option<Pending<S>>,
}

/// How to submit the record, the request's note, its body's byte count and
/// its kind (when audited).
type Pending<S> = (S, AuditNote, Option<Arc<AtomicU64>>, Option<&'static str>);

impl<S: FnOnce(crate::context::NoteData, &'static str, u16, u64, u64)> Unanswered<S> {
    fn answered(mut self) -> Pending<S> {
        self.parts.take().expect("answered once")
    }
}

impl<S: FnOnce(crate::context::NoteData, &'static str, u16, u64, u64)> Drop for Unanswered<S> {
    fn drop(&mut self) {
        if let Some((submit, note, bytes_in, Some(kind))) = self.parts.take() {
            let bytes_in = bytes_in.map_or(0, |bytes_in| bytes_in.load(Ordering::Relaxed));
            submit(note.take(), kind, UNANSWERED, bytes_in, 0);
        }
    }
}

/// Middleware (with [`Auditor`] as state, around `inner`): puts an
/// [`AuditNote`] on the request, and writes the record
/// when the response body has been sent (or abandoned), or when the request
/// is dropped before its answer.
pub async fn record<F>(
    auditor: Auditor,
    mut request: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response
where
    F: std::future::Future<Output = Response>,
{
    let started = Instant::now();
    let note = AuditNote::default();
    request.extensions_mut().insert(note.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request
        .uri()
        .query()
        .map(|query| mask_query(query, &auditor.config.sensitive_query_params));
    let kind = audited_kind(&method, &path);
    if kind.is_some() && auditor.config.fail_closed && !auditor.has_room() {
        auditor.metrics.audit_dropped.inc();
        return ApiError::Unavailable("the audit trail cannot keep up; retry later".into())
            .into_response();
    }
    // A request without a body (most reads) needs no counting.
    let bytes_in =
        (!http_body::Body::is_end_stream(request.body())).then(|| Arc::new(AtomicU64::new(0)));
    let request = match &bytes_in {
        None => request,
        Some(bytes_in) => {
            let bytes_in = bytes_in.clone();
            request.map(|body| {
                Body::new(Counted {
                    inner: body,
                    bytes: 0,
                    on_end: Some(move |count| bytes_in.store(count, Ordering::Relaxed)),
                })
            })
        }
    };
    let sessions = auditor.sessions.clone();
    let submit = move |data: crate::context::NoteData,
                       kind: &'static str,
                       status: u16,
                       bytes_in: u64,
                       bytes_out: u64| {
        let (path, query) = data.target.unwrap_or((path, query));
        let (impersonated_user, impersonated_groups) = data
            .impersonated
            .map_or((None, Vec::new()), |(user, groups)| (Some(user), groups));
        auditor.submit(Entry {
            time: Utc::now(),
            kind: Cow::Borrowed(kind),
            subject: data.subject.unwrap_or_else(anonymous),
            groups: data.groups,
            cluster: data.cluster,
            method,
            path,
            query,
            verb: data.verb,
            impersonated_user,
            impersonated_groups,
            status,
            bytes_in,
            bytes_out,
            duration_ms: started.elapsed().as_millis() as u64,
            decision: Cow::Borrowed(data.decision.unwrap_or("none")),
            rule: data.rule,
            recording: data.recording,
        });
    };
    // A request dropped before its answer (its client went away, or
    // shutdown cut it) is recorded too: what was forwarded may have run.
    let unanswered = Unanswered {
        parts: Some((submit, note.clone(), bytes_in.clone(), kind)),
    };
    let response = inner(request).await;
    let (submit, note, bytes_in, kind) = unanswered.answered();
    let status = response.status().as_u16();
    let kind = match kind {
        Some(kind) => kind,
        None if status == 403 => "denial",
        None => return response,
    };
    let (parts, body) = response.into_parts();
    let submit = move |data, bytes_in, bytes_out| submit(data, kind, status, bytes_in, bytes_out);
    let finish = move |bytes_out: u64| {
        let mut data = note.take();
        // An upgraded session's record waits for the session to end, and
        // carries what it moved.
        if let Some(session) = data.session.take() {
            sessions.spawn(async move {
                let totals = session.await.unwrap_or_default();
                submit(data, totals.to_cluster, totals.to_client);
            });
            return;
        }
        submit(
            data,
            bytes_in.map_or(0, |bytes_in| bytes_in.load(Ordering::Relaxed)),
            bytes_out,
        );
    };
    Response::from_parts(
        parts,
        Body::new(Counted {
            inner: body,
            bytes: 0,
            on_end: Some(finish),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_query_values_are_masked_and_the_rest_kept() {
        let sensitive = default_sensitive();
        assert_eq!(
            mask_query("token=abc&watch=true", &sensitive),
            "token=***&watch=true"
        );
        assert_eq!(
            mask_query(
                "labelSelector=app%3Dx&access_token=t&ticket=xyz",
                &sensitive
            ),
            "labelSelector=app%3Dx&access_token=***&ticket=***"
        );
        assert_eq!(
            mask_query("%74oken=abc&p%61ssword=x", &sensitive),
            "token=***&password=***"
        );
        assert_eq!(mask_query("token=abc;x", &sensitive), "<malformed>");
        assert_eq!(
            mask_query("follow=true&container=api", &sensitive),
            "follow=true&container=api"
        );
        assert_eq!(mask_query("Password=", &sensitive), "Password=");
    }

    #[test]
    fn what_is_audited() {
        assert_eq!(
            audited_kind(&Method::GET, "/api/kubernetes/proxy/api/v1/pods"),
            Some("proxy")
        );
        assert_eq!(
            audited_kind(&Method::GET, "/api/kubernetes/clusters/dev/proxy/version"),
            Some("proxy")
        );
        assert_eq!(
            audited_kind(&Method::PUT, "/api/kubernetes/clusters/dev"),
            Some("registry")
        );
        assert_eq!(audited_kind(&Method::GET, "/api/kubernetes/clusters"), None);
        assert_eq!(audited_kind(&Method::GET, "/api/kubernetes/proxyfoo"), None);
        assert_eq!(
            audited_kind(&Method::POST, "/api/kubernetes/clustersfoo"),
            None
        );
        assert_eq!(
            audited_kind(&Method::GET, "//api/kubernetes/clusters/dev/proxy/version"),
            None
        );
    }
}
