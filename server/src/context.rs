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
    pub cluster: Option<Arc<str>>,
    /// Whether `cluster` is the name of a registered cluster, as the
    /// registry resolved it (else it is a name the request carried).
    pub registered: bool,
    /// `allow` or `deny`; absent when no policy decision was made.
    pub decision: Option<&'static str>,
    pub rule: Option<Arc<str>>,
    pub recording: Option<String>,
    /// The canonical path and masked query a proxied call was forwarded with.
    pub target: Option<(String, Option<String>)>,
    pub verb: Option<std::borrow::Cow<'static, str>>,
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

    /// The cluster a request names, not (yet) known to be registered.
    pub fn set_cluster(&self, cluster: &str) {
        let cluster = Arc::from(cluster);
        self.with(|note| {
            note.cluster = Some(cluster);
            note.registered = false;
        });
    }

    /// The cluster a request goes to, by its name in the registry.
    pub fn set_registered_cluster(&self, cluster: &str) {
        let cluster = Arc::from(cluster);
        self.with(|note| {
            note.cluster = Some(cluster);
            note.registered = true;
        });
    }

    /// The request as the cluster receives it: the canonical path, the
    /// canonical query with sensitive values already masked, and the verb.
    pub fn set_request(&self, path: &str, masked_query: Option<String>, verb: &str) {
        let target = (path.to_owned(), masked_query);
        let verb = known_verb(verb);
        self.with(|note| {
            note.target = Some(target);
            note.verb = Some(verb);
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

    pub fn cluster(&self) -> Option<Arc<str>> {
        self.with(|note| note.cluster.clone())
    }

    /// What `read` makes of the Kubernetes verb of a proxied request, as the
    /// policy judged it (read in place, not copied).
    pub fn verb_with<R>(&self, read: impl FnOnce(Option<&str>) -> R) -> R {
        self.with(|note| read(note.verb.as_deref()))
    }

    /// The cluster, only when the policy allowed the request, and whether
    /// it was resolved from the registry.
    pub fn allowed_cluster(&self) -> Option<(Arc<str>, bool)> {
        self.with(|note| {
            (note.decision == Some("allow"))
                .then(|| {
                    note.cluster
                        .clone()
                        .map(|cluster| (cluster, note.registered))
                })
                .flatten()
        })
    }

    /// Records a policy decision; the first denial or the last allow is kept.
    pub fn set_decision(&self, allowed: bool, rule: Option<Arc<str>>) {
        self.with(|note| {
            if note.decision != Some("deny") {
                note.decision = Some(if allowed { "allow" } else { "deny" });
                note.rule = rule;
            }
        });
    }
}

/// A verb as the API server names it: a constant when it is a common one,
/// copied otherwise.
fn known_verb(verb: &str) -> std::borrow::Cow<'static, str> {
    crate::kubernetes::common_verb(verb).map_or_else(
        || std::borrow::Cow::Owned(verb.to_owned()),
        std::borrow::Cow::Borrowed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_shares_what_the_request_already_holds() {
        let note = AuditNote::default();
        let subject: Arc<str> = Arc::from("user:default/jane");
        let groups: Arc<[String]> = Arc::from(vec!["group:default/team".to_owned()]);
        let rule: Arc<str> = Arc::from("rule 2: read-only");
        note.set_identity(&subject, &groups);
        note.set_decision(true, Some(rule.clone()));
        note.set_request("/api/v1/pods", None, "list");
        let data = note.take();
        assert!(Arc::ptr_eq(data.subject.as_ref().unwrap(), &subject));
        assert!(Arc::ptr_eq(&data.groups, &groups));
        assert!(Arc::ptr_eq(data.rule.as_ref().unwrap(), &rule));
        assert!(matches!(
            data.verb,
            Some(std::borrow::Cow::Borrowed("list"))
        ));
    }

    #[test]
    fn only_a_cluster_the_registry_resolved_counts_as_registered() {
        let note = AuditNote::default();
        note.set_decision(true, None);
        note.set_cluster("made-up");
        assert_eq!(note.allowed_cluster(), Some((Arc::from("made-up"), false)));
        note.set_registered_cluster("prod");
        assert_eq!(note.allowed_cluster(), Some((Arc::from("prod"), true)));
        note.set_cluster("other");
        assert_eq!(note.allowed_cluster(), Some((Arc::from("other"), false)));
        let denied = AuditNote::default();
        denied.set_registered_cluster("prod");
        denied.set_decision(false, None);
        assert_eq!(denied.allowed_cluster(), None);
    }

    #[test]
    fn known_verbs_are_shared_and_others_kept_as_they_came() {
        for verb in ["get", "deletecollection", "proxy", "options"] {
            assert!(matches!(known_verb(verb), std::borrow::Cow::Borrowed(v) if v == verb));
        }
        for verb in ["escalate", "GET", ""] {
            assert!(matches!(known_verb(verb), std::borrow::Cow::Owned(v) if v == verb));
        }
    }
}
