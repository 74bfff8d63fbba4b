//! Request context: what the handlers learn about a request while serving
//! it (who called, which cluster, the policy's decision, what was forwarded),
//! noted on the request for the middleware that report on it afterwards (the
//! audit trail and the metrics).

use std::sync::{Arc, Mutex};

/// What was noted about one request.
#[derive(Debug, Default)]
pub struct NoteData {
    pub subject: Option<Arc<str>>,
    pub groups: Arc<[String]>,
    pub cluster: Option<String>,
    /// `allow` or `deny`; absent when no policy decision was made.
    pub decision: Option<&'static str>,
    pub rule: Option<String>,
    pub recording: Option<String>,
    /// The canonical path and masked query a proxied call was forwarded with.
    pub target: Option<(String, Option<String>)>,
    pub verb: Option<String>,
    pub impersonated: Option<(String, Vec<String>)>,
    /// An upgraded session's totals, sent when it ends: its record waits
    /// for them.
    pub session: Option<tokio::sync::oneshot::Receiver<SessionTotals>>,
}

/// What an upgraded session (exec, attach, port-forward) moved, once it
/// has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTotals {
    /// Bytes from the client to the cluster.
    pub to_cluster: u64,
    /// Bytes from the cluster to the client.
    pub to_client: u64,
}

/// What the handlers learn about a request, for its audit record and metrics:
/// filled by the identity extractor, the policy and the proxy.
#[derive(Debug, Clone, Default)]
pub struct AuditNote(Arc<Mutex<NoteData>>);

impl AuditNote {
    fn with<R>(&self, change: impl FnOnce(&mut NoteData) -> R) -> R {
        change(
            &mut self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Everything noted so far, leaving the note empty.
    pub fn take(&self) -> NoteData {
        self.with(std::mem::take)
    }

    pub fn set_identity(&self, subject: &Arc<str>, groups: &Arc<[String]>) {
        self.with(|note| {
            note.subject = Some(subject.clone());
            note.groups = groups.clone();
        });
    }

    pub fn set_cluster(&self, cluster: &str) {
        self.with(|note| note.cluster = Some(cluster.to_owned()));
    }

    /// The request as the cluster receives it: the canonical path, the
    /// canonical query with sensitive values already masked, and the verb.
    pub fn set_request(&self, path: &str, masked_query: Option<String>, verb: &str) {
        self.with(|note| {
            note.target = Some((path.to_owned(), masked_query));
            note.verb = Some(verb.to_owned());
        });
    }

    pub fn set_impersonation(&self, user: &str, groups: &[String]) {
        self.with(|note| note.impersonated = Some((user.to_owned(), groups.to_vec())));
    }

    /// The request became an upgraded session: its audit record is written
    /// when the session ends, with what the returned sender reports.
    pub fn expect_session(&self) -> tokio::sync::oneshot::Sender<SessionTotals> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.with(|note| note.session = Some(receiver));
        sender
    }

    pub fn set_recording(&self, name: &str) {
        self.with(|note| note.recording = Some(name.to_owned()));
    }

    pub fn cluster(&self) -> Option<String> {
        self.with(|note| note.cluster.clone())
    }

    /// What `read` makes of the Kubernetes verb of a proxied request, as the
    /// policy judged it (read in place, not copied).
    pub fn verb_with<R>(&self, read: impl FnOnce(Option<&str>) -> R) -> R {
        self.with(|note| read(note.verb.as_deref()))
    }

    /// The cluster, only when the policy allowed the request.
    pub fn allowed_cluster(&self) -> Option<String> {
        self.with(|note| {
            (note.decision == Some("allow"))
                .then(|| note.cluster.clone())
                .flatten()
        })
    }

    /// Records a policy decision; the first denial or the last allow is kept.
    pub fn set_decision(&self, allowed: bool, rule: Option<String>) {
        self.with(|note| {
            if note.decision != Some("deny") {
                note.decision = Some(if allowed { "allow" } else { "deny" });
                note.rule = rule;
            }
        });
    }
}
