//! The permission policy: an ordered rule list, first match wins, default deny.
//!
//! Every decision is made here (`Policy::check`), before any byte goes to a
//! cluster. A denial never names the cluster; `Policy::explain` is where
//! admins learn which rule decided.

pub mod routes;

use globset::{GlobBuilder, GlobMatcher};
use http::Method;
use serde::Deserialize;

use crate::error::ApiError;
use crate::identity::{Caller, EntityRefError};
use crate::kubernetes::labels::{LabelSelector, LabelSelectorError};

pub use crate::kubernetes::{Action, RequestAttributes};

pub use kubeportal_api::permissions::{Decision, Explanation, Permission, View};

/// Whether a request is a read a view can filter: a `get`, `list` or
/// `watch` of a resource itself (a subresource is allowed or denied whole).
pub fn is_object_read(attributes: &RequestAttributes) -> bool {
    attributes.is_resource_request
        && attributes.subresource.is_none()
        && attributes.resource.is_some()
        && matches!(attributes.verb.as_str(), "get" | "list" | "watch")
}

/// A request to a cluster through the proxy, as the policy judges it.
#[derive(Debug, Clone)]
pub struct ProxyTarget<'a> {
    pub method: &'a Method,
    /// The Kubernetes path the cluster will see (normalised, no query).
    pub path: &'a str,
    /// Borrowed from the parsed request on the proxy's path.
    pub attributes: std::borrow::Cow<'a, RequestAttributes>,
}

/// An identity a caller asks to act as (`Impersonate-User`, `Impersonate-Group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impersonation<'a> {
    User(&'a str),
    Group(&'a str),
}

/// What a permission check is about.
#[derive(Debug, Clone, Default)]
pub struct Target<'a> {
    pub cluster: Option<&'a str>,
    pub proxy: Option<ProxyTarget<'a>>,
    pub impersonation: Option<Impersonation<'a>>,
}

impl<'a> Target<'a> {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn cluster(name: &'a str) -> Self {
        Self {
            cluster: Some(name),
            ..Self::default()
        }
    }
}

/// `permissions:` in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionsConfig {
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// A rule of `permissions.rules` that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("permissions.rules[{index}]: {reason}")]
pub struct PermissionsConfigError {
    pub index: usize,
    pub reason: RuleError,
}

impl PermissionsConfig {
    /// Compiles every rule, naming the first that does not compile.
    pub fn validate(&self) -> Result<(), PermissionsConfigError> {
        for (index, rule) in self.rules.iter().enumerate() {
            rule.compile()
                .map_err(|reason| PermissionsConfigError { index, reason })?;
        }
        Ok(())
    }
}

/// A rule as written in the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleConfig {
    /// A permission name or glob (`kubernetes.*`, `*`).
    pub permission: String,
    /// User or group entity refs, or `*` for anyone (guest included).
    #[serde(default)]
    pub subjects: Vec<String>,
    pub clusters: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    /// Kubernetes path globs: `*` stays within a segment, `**` crosses them.
    pub paths: Option<Vec<String>>,
    pub verbs: Option<Vec<String>>,
    pub actions: Option<Vec<String>>,
    pub namespaces: Option<Vec<String>>,
    pub api_groups: Option<Vec<String>>,
    pub resources: Option<Vec<String>>,
    pub subresources: Option<Vec<String>>,
    pub names: Option<Vec<String>>,
    /// A label selector over the labels of the request's namespace (for a
    /// namespace itself, its own labels): `capsule.clastix.io/tenant=oil`.
    pub namespace_selector: Option<String>,
    /// A label selector over the labels of the object the request reads.
    pub object_selector: Option<String>,
    /// For `kubernetes.impersonate`: the Kubernetes user names (globs) the
    /// subjects may impersonate.
    pub users: Option<Vec<String>>,
    /// For `kubernetes.impersonate`: the Kubernetes group names (globs).
    pub groups: Option<Vec<String>>,
    pub decision: String,
    pub description: Option<String>,
}

/// What is wrong with a rule, starting with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("decision: must be `allow` or `deny`")]
    Decision,
    #[error("subjects: list at least one user or group ref, or `*`")]
    NoSubjects,
    #[error("subjects: `{subject}` {reason}")]
    Subject {
        subject: String,
        reason: EntityRefError,
    },
    #[error("permission: {0}")]
    PermissionGlob(globset::Error),
    #[error(
        "permission: `{0}` matches no permission (known: {known})",
        known = Permission::ALL.map(Permission::as_str).join(", ")
    )]
    UnknownPermission(String),
    #[error("{key}: only applies to kubernetes.proxy")]
    ProxyOnly { key: &'static str },
    #[error("clusters: kubernetes.audit.read is not judged per cluster (the audit trail and recordings are read whole); leave `clusters` out")]
    NotPerCluster,
    #[error("{key}: only applies to kubernetes.impersonate")]
    ImpersonateOnly { key: &'static str },
    #[error("methods: `{0}` is not an HTTP method")]
    Method(String),
    #[error("verbs: `{0}` is not one of {known}", known = VERBS.join(", "))]
    Verb(String),
    #[error("actions: `{0}` is not one of read, write, delete, exec")]
    Action(String),
    #[error("{field}: an empty list matches nothing; leave the key out to match anything")]
    EmptyList { field: &'static str },
    #[error("{field}: {error}")]
    Glob {
        field: &'static str,
        error: globset::Error,
    },
    #[error("{field}: {error}")]
    Selector {
        field: &'static str,
        error: LabelSelectorError,
    },
}

/// A set of globs; an absent set matches everything.
#[derive(Debug, Clone)]
struct Globs(Vec<Pattern>);

impl Globs {
    fn compile(
        field: &'static str,
        patterns: &Option<Vec<String>>,
        case_insensitive: bool,
    ) -> Result<Option<Globs>, RuleError> {
        let Some(patterns) = patterns else {
            return Ok(None);
        };
        if patterns.is_empty() {
            return Err(RuleError::EmptyList { field });
        }
        patterns
            .iter()
            .map(|pattern| Pattern::compile(pattern, case_insensitive))
            .collect::<Result<Vec<_>, _>>()
            .map(|globs| Some(Globs(globs)))
            .map_err(|error| RuleError::Glob { field, error })
    }

    fn matches(globs: &Option<Globs>, value: Option<&str>) -> bool {
        match (globs, value) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(Globs(globs)), Some(value)) => globs.iter().any(|glob| glob.is_match(value)),
        }
    }
}

/// One glob of a rule: `*` stops at `/`, `\` escapes, and case is folded
/// for ASCII letters only where the field ignores case. Most globs are a
/// literal, or a literal then one `*` (`bench*`, `/api/v1/namespaces/*`,
/// `*`); those are matched as their regular expression would match them,
/// without running it, which costs more than the rest of a rule.
#[derive(Debug, Clone)]
enum Pattern {
    /// No glob syntax but, with `then_any`, one `*` at the end: the value
    /// is the text, or starts with it and what follows holds no `/`.
    Text {
        text: String,
        then_any: bool,
        case_insensitive: bool,
    },
    /// Anything else, by the glob's own matcher.
    Glob(GlobMatcher),
}

/// The glob matcher of a rule's pattern: `*` stops at `/`, `\` escapes.
fn glob_matcher(pattern: &str, case_insensitive: bool) -> Result<GlobMatcher, globset::Error> {
    Ok(GlobBuilder::new(pattern)
        .literal_separator(true)
        .case_insensitive(case_insensitive)
        .backslash_escape(true)
        .build()?
        .compile_matcher())
}

impl Pattern {
    fn compile(pattern: &str, case_insensitive: bool) -> Result<Pattern, globset::Error> {
        // Built either way, so that a pattern is refused exactly as before.
        let glob = glob_matcher(pattern, case_insensitive)?;
        let plain = |text: &str| !text.contains(['*', '?', '[', ']', '{', '}', '\\']);
        let (text, then_any) = match pattern.strip_suffix('*') {
            Some(text) => (text, true),
            None => (pattern, false),
        };
        Ok(if plain(text) {
            Pattern::Text {
                text: text.to_owned(),
                then_any,
                case_insensitive,
            }
        } else {
            Pattern::Glob(glob)
        })
    }

    fn is_match(&self, value: &str) -> bool {
        match self {
            Pattern::Text {
                text,
                then_any,
                case_insensitive,
            } => {
                let value = value.as_bytes();
                let (head, rest) = match then_any {
                    true if value.len() >= text.len() => value.split_at(text.len()),
                    true => return false,
                    false => (value, &[][..]),
                };
                // The glob's expression matches bytes, folding only ASCII letters.
                let same = if *case_insensitive {
                    head.eq_ignore_ascii_case(text.as_bytes())
                } else {
                    head == text.as_bytes()
                };
                same && !rest.contains(&b'/')
            }
            Pattern::Glob(glob) => glob.is_match(value),
        }
    }

    /// Whether the pattern is `*`.
    fn is_star(&self) -> bool {
        matches!(self, Pattern::Text { text, then_any: true, .. } if text.is_empty())
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    index: usize,
    description: String,
    /// `rule N: reason`, as the audit trail names the deciding rule.
    label: std::sync::Arc<str>,
    /// The permissions the rule's permission glob matches, decided once.
    permissions: Vec<Permission>,
    subjects: Vec<String>,
    clusters: Option<Globs>,
    methods: Option<Vec<Method>>,
    paths: Option<Globs>,
    verbs: Option<Globs>,
    actions: Option<Vec<Action>>,
    namespaces: Option<Globs>,
    api_groups: Option<Globs>,
    resources: Option<Globs>,
    subresources: Option<Globs>,
    names: Option<Globs>,
    namespace_selector: Option<LabelSelector>,
    object_selector: Option<LabelSelector>,
    users: Option<Globs>,
    groups: Option<Globs>,
    decision: Decision,
}

/// Whether a rule matches: `Maybe` when that depends on which object of the
/// request's kind is read (a list across namespaces against a namespace
/// glob, an object selector before the object is seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    No,
    Maybe,
    Yes,
}

impl Match {
    fn of(matches: bool) -> Match {
        if matches {
            Match::Yes
        } else {
            Match::No
        }
    }
}

/// Labels as the policy reads them.
pub trait Labels: Sync {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for std::collections::BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for std::collections::BTreeMap<std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(|value| value.as_ref())
    }
}

/// What the policy knows beyond the request itself.
#[derive(Clone, Copy, Default)]
pub struct Facts<'a> {
    /// One object of the request's kind, when judging an object of a list or
    /// watch (or the object a get reads).
    pub object: Option<ObjectFacts<'a>>,
    /// The labels of the namespace the request (or the object) is in, when
    /// known; for a namespace itself, its own labels.
    pub namespace_labels: Option<&'a dyn Labels>,
}

/// One object as the policy judges it.
#[derive(Clone, Copy)]
pub struct ObjectFacts<'a> {
    /// Its namespace; for a namespace object, its own name (as the API server
    /// reads `/api/v1/namespaces/{name}`).
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub labels: &'a dyn Labels,
}

const VERBS: [&str; 9] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "proxy",
];

impl RuleConfig {
    /// Compiles the rule, or says what is wrong with it.
    pub fn compile(&self) -> Result<Rule, RuleError> {
        let decision = match self.decision.as_str() {
            "allow" => Decision::Allow,
            "deny" => Decision::Deny,
            _ => return Err(RuleError::Decision),
        };
        if self.subjects.is_empty() {
            return Err(RuleError::NoSubjects);
        }
        for subject in &self.subjects {
            if subject != "*" {
                crate::identity::validate_entity_ref(subject).map_err(|reason| {
                    RuleError::Subject {
                        subject: subject.clone(),
                        reason,
                    }
                })?;
            }
        }
        let permission = GlobBuilder::new(&self.permission)
            .build()
            .map_err(RuleError::PermissionGlob)?
            .compile_matcher();
        // Impersonation lends another identity: it is granted only by name,
        // never by a glob written for the other permissions.
        let matched: Vec<Permission> = Permission::ALL
            .into_iter()
            .filter(|candidate| match candidate {
                Permission::Impersonate => self.permission == candidate.as_str(),
                _ => permission.is_match(candidate.as_str()),
            })
            .collect();
        if matched.is_empty() {
            return Err(RuleError::UnknownPermission(self.permission.clone()));
        }
        let proxy_only = [
            ("methods", self.methods.is_some()),
            ("paths", self.paths.is_some()),
            ("verbs", self.verbs.is_some()),
            ("actions", self.actions.is_some()),
            ("namespaces", self.namespaces.is_some()),
            ("apiGroups", self.api_groups.is_some()),
            ("resources", self.resources.is_some()),
            ("subresources", self.subresources.is_some()),
            ("names", self.names.is_some()),
            ("namespaceSelector", self.namespace_selector.is_some()),
            ("objectSelector", self.object_selector.is_some()),
        ];
        if !matched.contains(&Permission::Proxy) {
            if let Some((key, _)) = proxy_only.iter().find(|(_, present)| *present) {
                return Err(RuleError::ProxyOnly { key });
            }
        }
        // The audit trail and its recordings are read whole: a rule that
        // names clusters would never apply to them, and say otherwise.
        if self.clusters.is_some() && matched.iter().all(|found| *found == Permission::AuditRead) {
            return Err(RuleError::NotPerCluster);
        }
        let impersonate_only = [
            ("users", self.users.is_some()),
            ("groups", self.groups.is_some()),
        ];
        if !matched.contains(&Permission::Impersonate) {
            if let Some((key, _)) = impersonate_only.iter().find(|(_, present)| *present) {
                return Err(RuleError::ImpersonateOnly { key });
            }
        }
        let methods = self
            .methods
            .as_ref()
            .map(|methods| {
                methods
                    .iter()
                    .map(|method| {
                        Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                            .map_err(|_| RuleError::Method(method.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        if let Some(verbs) = &self.verbs {
            if let Some(verb) = verbs.iter().find(|verb| {
                !verb.contains('*') && !VERBS.contains(&verb.to_ascii_lowercase().as_str())
            }) {
                return Err(RuleError::Verb(verb.clone()));
            }
        }
        let actions = self
            .actions
            .as_ref()
            .map(|actions| {
                actions
                    .iter()
                    .map(|action| {
                        Action::parse(action).ok_or_else(|| RuleError::Action(action.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Rule {
            index: 0,
            label: std::sync::Arc::from(""),
            description: self.description.clone().unwrap_or_default(),
            permissions: matched,
            subjects: self
                .subjects
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            clusters: Globs::compile("clusters", &self.clusters, true)?,
            methods,
            paths: Globs::compile("paths", &self.paths, false)?,
            verbs: Globs::compile("verbs", &self.verbs, true)?,
            actions,
            namespaces: Globs::compile("namespaces", &self.namespaces, false)?,
            api_groups: Globs::compile("apiGroups", &self.api_groups, true)?,
            resources: Globs::compile("resources", &self.resources, true)?,
            subresources: Globs::compile("subresources", &self.subresources, true)?,
            names: Globs::compile("names", &self.names, false)?,
            namespace_selector: selector("namespaceSelector", &self.namespace_selector)?,
            object_selector: selector("objectSelector", &self.object_selector)?,
            users: Globs::compile("users", &self.users, false)?,
            groups: Globs::compile("groups", &self.groups, false)?,
            decision,
        })
    }
}

fn selector(
    field: &'static str,
    selector: &Option<String>,
) -> Result<Option<LabelSelector>, RuleError> {
    selector
        .as_deref()
        .map(|selector| {
            LabelSelector::parse(selector).map_err(|error| RuleError::Selector { field, error })
        })
        .transpose()
}

impl Rule {
    /// Why this rule decides: its description, or its index.
    fn reason(&self) -> std::borrow::Cow<'_, str> {
        if self.description.is_empty() {
            format!("rule {} matched", self.index).into()
        } else {
            self.description.as_str().into()
        }
    }

    /// Whether the rule decides a request, where a request that spans what
    /// the rule names (no namespace or no name, for a rule naming them) or
    /// that needs facts not yet known (labels) matches a deny rule and not
    /// an allow rule: it fails closed.
    fn matches(
        &self,
        caller: &Caller,
        permission: Permission,
        target: &Target<'_>,
        facts: &Facts<'_>,
    ) -> bool {
        self.decides(self.judge(caller, permission, target, facts))
    }

    fn judge(
        &self,
        caller: &Caller,
        permission: Permission,
        target: &Target<'_>,
        facts: &Facts<'_>,
    ) -> Match {
        if !self.concerns(caller, permission, target.cluster) {
            return Match::No;
        }
        if permission == Permission::Impersonate {
            return Match::of(match target.impersonation {
                Some(Impersonation::User(user)) => {
                    self.users.is_some() && Globs::matches(&self.users, Some(user))
                }
                Some(Impersonation::Group(group)) => {
                    self.groups.is_some() && Globs::matches(&self.groups, Some(group))
                }
                None => false,
            });
        }
        if !self.request_matches(target) {
            return Match::No;
        }
        self.judge_facts(target, facts)
    }

    /// Whether the rule is about this permission, caller and cluster.
    fn concerns(&self, caller: &Caller, permission: Permission, cluster: Option<&str>) -> bool {
        self.permissions.contains(&permission)
            && self.subjects.iter().any(|subject| {
                subject == "*"
                    || subject.eq_ignore_ascii_case(&caller.subject)
                    || caller
                        .groups
                        .iter()
                        .any(|group| subject.eq_ignore_ascii_case(group))
            })
            && Globs::matches(&self.clusters, cluster)
    }

    /// Whether the request itself (method, action, path, verb, group,
    /// resource) is one the rule names, whatever objects it reads.
    fn request_matches(&self, target: &Target<'_>) -> bool {
        let proxy = target.proxy.as_ref();
        let attributes = proxy.map(|proxy| proxy.attributes.as_ref());
        if let Some(methods) = &self.methods {
            if !proxy.is_some_and(|proxy| methods.contains(proxy.method)) {
                return false;
            }
        }
        if let Some(actions) = &self.actions {
            if !attributes.is_some_and(|attributes| actions.contains(&attributes.action)) {
                return false;
            }
        }
        Globs::matches(&self.paths, proxy.map(|proxy| proxy.path))
            && Globs::matches(&self.verbs, attributes.map(|a| a.verb.as_str()))
            && Globs::matches(
                &self.api_groups,
                attributes.and_then(|a| a.api_group.as_deref()),
            )
            && self.resource_matches(attributes)
    }

    /// Whether the rule's namespaces, names and selectors match what is
    /// known of the objects the request reads.
    fn judge_facts(&self, target: &Target<'_>, facts: &Facts<'_>) -> Match {
        let attributes = target.proxy.as_ref().map(|proxy| proxy.attributes.as_ref());
        // A resource request without a namespace (a list across all of them,
        // or of a cluster-scoped kind) or without a name (a list, watch or
        // delete of the whole collection) spans the objects a rule names:
        // whether the rule matches depends on the object. Judging one object,
        // its own namespace and name are known.
        let spans = attributes.is_some_and(|a| a.is_resource_request) && facts.object.is_none();
        let (namespace, name) = match facts.object {
            Some(object) => (object.namespace, Some(object.name)),
            None => (
                attributes.and_then(|a| a.namespace.as_deref()),
                attributes.and_then(|a| a.name.as_deref()),
            ),
        };
        let named = |globs: &Option<Globs>, value: Option<&str>| match (globs, value) {
            (None, _) => Match::Yes,
            (Some(_), None) if spans => Match::Maybe,
            (globs, value) => Match::of(Globs::matches(globs, value)),
        };
        let namespace_labels = match &self.namespace_selector {
            None => Match::Yes,
            Some(selector) => match (namespace, facts.namespace_labels) {
                (Some(_), Some(labels)) => Match::of(selector.matches(|key| labels.label(key))),
                (None, _) if !spans => Match::No,
                _ if attributes.is_some_and(|a| a.is_resource_request) => Match::Maybe,
                _ => Match::No,
            },
        };
        let object_labels = match (&self.object_selector, facts.object) {
            (None, _) => Match::Yes,
            (Some(selector), Some(object)) => {
                Match::of(selector.matches(|key| object.labels.label(key)))
            }
            (Some(_), None) if attributes.is_some_and(|a| a.is_resource_request) => Match::Maybe,
            (Some(_), None) => Match::No,
        };
        named(&self.namespaces, namespace)
            .min(named(&self.names, name))
            .min(namespace_labels)
            .min(object_labels)
    }

    /// Whether a judgement decides: a match, or (failing closed) a possible
    /// match of a deny rule.
    fn decides(&self, judged: Match) -> bool {
        match judged {
            Match::Yes => true,
            Match::Maybe => self.decision == Decision::Deny,
            Match::No => false,
        }
    }

    /// Resources and subresources as Kubernetes RBAC reads them: `resources`
    /// alone covers only requests without a subresource (`pods` is not
    /// `pods/exec`) unless a pattern names the pair (`pods/exec`, `pods/*`,
    /// `*/exec`) or is `*` (everything); `subresources` is matched against the
    /// subresource, `""` when there is none (so `["*"]` covers both).
    fn resource_matches(&self, attributes: Option<&RequestAttributes>) -> bool {
        if self.resources.is_none() && self.subresources.is_none() {
            return true;
        }
        let Some(resource) = attributes.and_then(|a| a.resource.as_deref()) else {
            return false;
        };
        let subresource = attributes.and_then(|a| a.subresource.as_deref());
        if self.subresources.is_some() {
            return Globs::matches(&self.resources, Some(resource))
                && Globs::matches(&self.subresources, Some(subresource.unwrap_or_default()));
        }
        let Some(Globs(resources)) = &self.resources else {
            return true;
        };
        match subresource {
            None => resources.iter().any(|glob| glob.is_match(resource)),
            Some(subresource) => {
                let pair = format!("{resource}/{subresource}");
                // A deny of a resource also denies its subresources: `status`,
                // `ephemeralcontainers` and the like answer with the whole
                // object.
                let denied_whole = self.decision == Decision::Deny
                    && resources.iter().any(|glob| glob.is_match(resource));
                denied_whole
                    || resources
                        .iter()
                        .any(|glob| glob.is_star() || glob.is_match(&pair))
            }
        }
    }
}

/// The rules of a [`Policy`] that can decide the objects of one read
/// ([`Policy::object_rules`]).
#[derive(Debug, Clone)]
pub struct ObjectRules {
    /// Indices into the policy's rules, in order.
    rules: Vec<usize>,
    by_namespace: bool,
}

impl ObjectRules {
    /// Whether an object's namespace alone decides (no rule reads names or
    /// labels), so one judgement holds for every object of a namespace.
    pub fn by_namespace(&self) -> bool {
        self.by_namespace
    }
}

/// The ordered rules.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Whether any rule has a `namespaceSelector`, decided once: the proxy
    /// asks on every request.
    reads_namespace_labels: bool,
}

impl Policy {
    pub fn new(configs: &[RuleConfig]) -> Result<Self, RuleError> {
        let rules = configs
            .iter()
            .enumerate()
            .map(|(index, config)| {
                config.compile().map(|mut rule| {
                    rule.index = index;
                    rule.label = format!("rule {index}: {}", rule.reason()).into();
                    rule
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let reads_namespace_labels = rules.iter().any(|rule| rule.namespace_selector.is_some());
        Ok(Self {
            rules,
            reads_namespace_labels,
        })
    }

    /// Everything allowed to the guest and nothing to anyone else: the policy
    /// of a server started on loopback without a configuration file. Only the
    /// guest itself carries the guest's subject (tokens naming it are refused).
    pub fn guest_only() -> Self {
        Self::new(&[RuleConfig {
            permission: "*".into(),
            subjects: vec![crate::identity::GUEST_SUBJECT.into()],
            clusters: None,
            methods: None,
            paths: None,
            verbs: None,
            actions: None,
            namespaces: None,
            api_groups: None,
            resources: None,
            subresources: None,
            names: None,
            namespace_selector: None,
            object_selector: None,
            users: None,
            groups: None,
            decision: "allow".into(),
            description: Some(
                "default policy without a configuration file: the loopback guest may do everything"
                    .into(),
            ),
        }])
        .expect("the allow-all rule compiles")
    }

    pub fn explain(
        &self,
        caller: &Caller,
        permission: Permission,
        target: &Target<'_>,
    ) -> Explanation {
        self.explain_with(caller, permission, target, &Facts::default())
    }

    /// [`Policy::explain`] knowing more than the request.
    pub fn explain_with(
        &self,
        caller: &Caller,
        permission: Permission,
        target: &Target<'_>,
        facts: &Facts<'_>,
    ) -> Explanation {
        match self
            .rules
            .iter()
            .find(|rule| rule.matches(caller, permission, target, facts))
        {
            Some(rule) => Explanation {
                decision: rule.decision,
                rule_index: Some(rule.index),
                reason: rule.reason().into_owned(),
            },
            None => Explanation {
                decision: Decision::Deny,
                rule_index: None,
                reason: "no rule matched: denied by default".into(),
            },
        }
    }

    /// The description of the rule that denies this request, when a rule
    /// with a description denies it (not for allows, undescribed rules or
    /// the default deny). Tell it only to a caller who may see the cluster.
    pub fn denial_reason(
        &self,
        caller: &Caller,
        permission: Permission,
        target: &Target<'_>,
    ) -> Option<String> {
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.matches(caller, permission, target, &Facts::default()))?;
        (rule.decision == Decision::Deny && !rule.description.is_empty())
            .then(|| rule.description.clone())
    }

    /// `Ok` when allowed, 403 `NotAllowedError` otherwise.
    pub fn check(
        &self,
        caller: &Caller,
        permission: Permission,
        target: &Target<'_>,
    ) -> Result<(), ApiError> {
        self.check_with(caller, permission, target, &Facts::default())
    }

    /// [`Policy::check`] knowing more than the request (the labels of its
    /// namespace, say).
    pub fn check_with(
        &self,
        caller: &Caller,
        permission: Permission,
        target: &Target<'_>,
        facts: &Facts<'_>,
    ) -> Result<(), ApiError> {
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.matches(caller, permission, target, facts));
        let decision = rule.map_or(Decision::Deny, |rule| rule.decision);
        if let Some(note) = &caller.note {
            let rule = rule.map(|rule| rule.label.clone());
            note.set_decision(decision == Decision::Allow, rule);
        }
        match decision {
            Decision::Allow => Ok(()),
            Decision::Deny => {
                tracing::debug!(subject = %caller.subject, permission = permission.as_str(), "denied");
                Err(ApiError::NotAllowed)
            }
        }
    }

    /// What a caller may see of a read through the proxy, by the rules in
    /// order: everything, when the first rule that can match matches
    /// whatever object is read and allows; nothing, when no allow rule can
    /// match any object; otherwise only some objects, each judged by
    /// [`Policy::allows_object`].
    pub fn view(&self, caller: &Caller, target: &Target<'_>, facts: &Facts<'_>) -> View {
        let mut uncertain = false;
        let mut may_allow = false;
        for rule in &self.rules {
            match rule.judge(caller, Permission::Proxy, target, facts) {
                Match::No => {}
                Match::Yes if !uncertain => {
                    return match rule.decision {
                        Decision::Allow => View::All,
                        Decision::Deny => View::None,
                    }
                }
                Match::Yes => {
                    may_allow |= rule.decision == Decision::Allow;
                    break;
                }
                Match::Maybe => {
                    uncertain = true;
                    may_allow |= rule.decision == Decision::Allow;
                }
            }
        }
        if may_allow {
            View::Some
        } else {
            View::None
        }
    }

    /// Whether the caller may see one object of a read whose view is
    /// [`View::Some`]; `facts.object` names it.
    pub fn allows_object(&self, caller: &Caller, target: &Target<'_>, facts: &Facts<'_>) -> bool {
        self.allows_object_by(&self.object_rules(caller, target), target, facts)
    }

    /// The rules that can decide the objects of one proxied read by this
    /// caller, chosen once for all its objects: those about the caller, the
    /// cluster and the request itself, in order.
    pub fn object_rules(&self, caller: &Caller, target: &Target<'_>) -> ObjectRules {
        let rules: Vec<usize> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| {
                rule.concerns(caller, Permission::Proxy, target.cluster)
                    && rule.request_matches(target)
            })
            .map(|(index, _)| index)
            .collect();
        let by_namespace = rules.iter().all(|&index| {
            let rule = &self.rules[index];
            rule.names.is_none()
                && rule.object_selector.is_none()
                && rule.namespace_selector.is_none()
        });
        ObjectRules {
            rules,
            by_namespace,
        }
    }

    /// [`Policy::allows_object`] with the rules [`Policy::object_rules`]
    /// chose for the same caller and `target`.
    pub fn allows_object_by(
        &self,
        rules: &ObjectRules,
        target: &Target<'_>,
        facts: &Facts<'_>,
    ) -> bool {
        rules
            .rules
            .iter()
            .map(|&index| &self.rules[index])
            .find(|rule| rule.decides(rule.judge_facts(target, facts)))
            .is_some_and(|rule| rule.decision == Decision::Allow)
    }

    /// Whether any rule reads namespace labels (so they are worth watching).
    pub fn reads_namespace_labels(&self) -> bool {
        self.reads_namespace_labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Policy {
        let configs: Vec<RuleConfig> = serde_saphyr::from_str(yaml).unwrap();
        Policy::new(&configs).unwrap()
    }

    fn caller(subject: &str, groups: &[&str]) -> Caller {
        Caller::user(subject, groups.iter().map(|g| g.to_string()).collect())
    }

    /// A glob matched without its expression answers as the expression
    /// would: `*` stops at `/`, only ASCII letters fold, whatever the bytes.
    #[test]
    fn plain_globs_match_as_their_expression_would() {
        let patterns = [
            "*",
            "",
            "bench",
            "bench*",
            "Bench*",
            "team-a-*",
            "/api/v1/namespaces/*",
            "/api/v1/namespaces/",
            "/*",
            "a/b",
            "k",
            "K*",
            "é*",
            "ü",
            "x*",
            "*x",
            "a*b",
            "**",
            "a?",
            "[ab]*",
            "{a,b}",
            "a\\*",
            "ab]",
        ];
        let values = [
            "",
            "bench",
            "BENCH",
            "bench-plain",
            "bench/x",
            "benc",
            "/api/v1/namespaces/team",
            "/api/v1/namespaces/team/pods",
            "/api/v1/namespaces/",
            "/",
            "team-a-0",
            "TEAM-A-0",
            "team-a-0/x",
            "é",
            "É",
            "éx",
            "\u{212A}",
            "\u{212A}x",
            "k",
            "K",
            "kx",
            "ü",
            "Ü",
            "x",
            "x/",
            "a/b",
            "A/B",
            "ab",
            "a*",
            "*",
            "ab]",
            "a\nb",
        ];
        for case_insensitive in [false, true] {
            for pattern in patterns {
                let ours = Pattern::compile(pattern, case_insensitive).unwrap();
                let glob = glob_matcher(pattern, case_insensitive).unwrap();
                for value in values {
                    assert_eq!(
                        ours.is_match(value),
                        glob.is_match(value),
                        "{pattern:?} against {value:?}, case_insensitive: {case_insensitive}"
                    );
                }
            }
        }
        // And for generated pairs over the characters that matter: ASCII
        // letters of both cases, `/`, `*`, multi-byte letters and the
        // Kelvin sign (which Unicode, not ASCII, folds to `k`).
        let alphabet = ['a', 'A', 'k', 'K', '/', '*', '-', 'é', 'É', '\u{212A}'];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        for _ in 0..4000 {
            let length = next(5);
            let pattern: String = (0..length)
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            let length = next(6);
            let value: String = (0..length)
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            let case_insensitive = next(2) == 1;
            let Ok(ours) = Pattern::compile(&pattern, case_insensitive) else {
                continue;
            };
            let glob = glob_matcher(&pattern, case_insensitive).unwrap();
            assert_eq!(
                ours.is_match(&value),
                glob.is_match(&value),
                "{pattern:?} against {value:?}, case_insensitive: {case_insensitive}"
            );
        }
        for (pattern, plain) in [
            ("bench", true),
            ("bench*", true),
            ("*", true),
            ("**", false),
        ] {
            let compiled = Pattern::compile(pattern, true).unwrap();
            assert_eq!(!matches!(compiled, Pattern::Glob(_)), plain, "{pattern}");
        }
        assert!(Pattern::compile("*", false).unwrap().is_star());
        assert!(!Pattern::compile("**", false).unwrap().is_star());
        assert!(Pattern::compile("[", false).is_err());
    }

    fn proxy<'a>(method: &'a Method, path: &'a str, query: Option<&str>) -> ProxyTarget<'a> {
        let query = crate::kubernetes::Query::parse(query).unwrap();
        let request = crate::kubernetes::KubernetesRequest::parse(method, path, query).unwrap();
        ProxyTarget {
            method,
            path,
            attributes: std::borrow::Cow::Owned(request.attributes),
        }
    }

    const SRE_POLICY: &str = r#"
- permission: kubernetes.proxy
  subjects: ["*"]
  clusters: ["prod-*"]
  methods: [DELETE]
  decision: deny
  description: nobody deletes in prod
- permission: kubernetes.proxy
  subjects: ["*"]
  actions: [exec]
  clusters: ["prod-*"]
  decision: deny
- permission: kubernetes.proxy
  subjects: [group:default/sre]
  clusters: ["prod-*"]
  verbs: [get, list, watch]
  decision: allow
- permission: "kubernetes.*"
  subjects: [group:default/sre]
  clusters: ["dev-*"]
  decision: allow
- permission: kubernetes.clusters.read
  subjects: ["*"]
  decision: allow
"#;

    #[test]
    fn first_match_wins_and_default_denies() {
        let policy = rules(SRE_POLICY);
        let sre = caller("user:default/alice", &["group:default/sre"]);
        let other = caller("user:default/bob", &["group:default/dev"]);
        let get = Method::GET;
        let delete = Method::DELETE;
        let pods = proxy(&get, "/api/v1/namespaces/a/pods", None);
        let target = Target {
            cluster: Some("prod-eu"),
            proxy: Some(pods.clone()),
            impersonation: None,
        };
        assert!(policy.check(&sre, Permission::Proxy, &target).is_ok());
        assert!(policy.check(&other, Permission::Proxy, &target).is_err());

        let delete_pod = proxy(&delete, "/api/v1/namespaces/a/pods/p", None);
        let explanation = policy.explain(
            &sre,
            Permission::Proxy,
            &Target {
                cluster: Some("PROD-eu"),
                proxy: Some(delete_pod.clone()),
                impersonation: None,
            },
        );
        assert_eq!(explanation.decision, Decision::Deny);
        assert_eq!(explanation.rule_index, Some(0));
        assert_eq!(explanation.reason, "nobody deletes in prod");

        let dev = Target {
            cluster: Some("dev-1"),
            proxy: Some(delete_pod),
            impersonation: None,
        };
        assert!(policy.check(&sre, Permission::Proxy, &dev).is_ok());

        assert!(policy
            .check(&other, Permission::ClustersRead, &Target::none())
            .is_ok());
        let unmatched = policy.explain(&other, Permission::ResourcesRead, &Target::none());
        assert_eq!(unmatched.decision, Decision::Deny);
        assert_eq!(unmatched.rule_index, None);
    }

    #[test]
    fn exec_is_denied_everywhere_but_dev() {
        let policy = rules(
            r#"
- permission: kubernetes.proxy
  subjects: ["*"]
  actions: [exec]
  clusters: ["dev-*"]
  decision: allow
- permission: kubernetes.proxy
  subjects: ["*"]
  actions: [exec]
  decision: deny
- permission: kubernetes.proxy
  subjects: ["*"]
  decision: allow
"#,
        );
        let anyone = caller("user:default/a", &[]);
        let post = Method::POST;
        let exec = proxy(
            &post,
            "/api/v1/namespaces/a/pods/p/exec",
            Some("command=sh&stdin=true"),
        );
        assert!(policy
            .check(
                &anyone,
                Permission::Proxy,
                &Target {
                    cluster: Some("dev-a"),
                    proxy: Some(exec.clone()),
                    impersonation: None,
                }
            )
            .is_ok());
        assert!(policy
            .check(
                &anyone,
                Permission::Proxy,
                &Target {
                    cluster: Some("prod"),
                    proxy: Some(exec),
                    impersonation: None,
                }
            )
            .is_err());
        let get = Method::GET;
        let logs = proxy(&get, "/api/v1/namespaces/a/pods/p/log", Some("follow=true"));
        assert!(policy
            .check(
                &anyone,
                Permission::Proxy,
                &Target {
                    cluster: Some("prod"),
                    proxy: Some(logs),
                    impersonation: None,
                }
            )
            .is_ok());
    }

    #[test]
    fn path_globs_keep_star_within_a_segment() {
        let policy = rules(
            r#"
- permission: kubernetes.proxy
  subjects: ["*"]
  paths: ["/api/v1/namespaces/*/pods/*/log"]
  decision: allow
- permission: kubernetes.proxy
  subjects: ["*"]
  paths: ["/apis/apps/**"]
  methods: [get]
  decision: allow
"#,
        );
        let anyone = caller("user:default/a", &[]);
        let get = Method::GET;
        let allowed = |path: &str| {
            policy
                .check(
                    &anyone,
                    Permission::Proxy,
                    &Target {
                        cluster: Some("c"),
                        proxy: Some(proxy(&get, path, None)),
                        impersonation: None,
                    },
                )
                .is_ok()
        };
        assert!(allowed("/api/v1/namespaces/a/pods/p/log"));
        assert!(!allowed("/api/v1/namespaces/a/pods/p/exec"));
        assert!(!allowed("/api/v1/namespaces/a/b/pods/p/log"));
        assert!(allowed("/apis/apps/v1/namespaces/a/deployments"));
    }

    #[test]
    fn a_deny_of_namespaces_or_names_covers_requests_that_span_them() {
        let policy = rules(
            r#"
- permission: kubernetes.proxy
  subjects: ["*"]
  namespaces: [kube-system]
  decision: deny
- permission: kubernetes.proxy
  subjects: ["*"]
  resources: [secrets]
  names: [db-password]
  decision: deny
- permission: kubernetes.proxy
  subjects: ["*"]
  namespaces: [team-a]
  resources: [configmaps]
  decision: allow
- permission: kubernetes.proxy
  subjects: ["*"]
  paths: ["/api", "/api/v1"]
  decision: allow
- permission: kubernetes.proxy
  subjects: ["*"]
  resources: [configmaps, secrets, "secrets/*"]
  namespaces: [shop]
  decision: allow
"#,
        );
        let anyone = caller("user:default/a", &[]);
        let get = Method::GET;
        let allowed = |path: &str, query: Option<&str>| {
            policy
                .check(
                    &anyone,
                    Permission::Proxy,
                    &Target {
                        cluster: Some("c"),
                        proxy: Some(proxy(&get, path, query)),
                        impersonation: None,
                    },
                )
                .is_ok()
        };
        // Across every namespace, kube-system's objects included: denied.
        assert!(!allowed("/api/v1/configmaps", None));
        assert!(!allowed(
            "/api/v1/configmaps",
            Some("fieldSelector=metadata.namespace%3Dkube-system")
        ));
        assert!(!allowed("/api/v1/namespaces/kube-system/configmaps", None));
        assert!(allowed("/api/v1/namespaces/team-a/configmaps", None));
        // The whole collection holds the denied name: denied; other names not.
        assert!(!allowed("/api/v1/namespaces/shop/secrets", None));
        assert!(!allowed(
            "/api/v1/namespaces/shop/secrets",
            Some("fieldSelector=metadata.name%3Ddb-password")
        ));
        assert!(allowed("/api/v1/namespaces/shop/secrets/api-key", None));
        assert!(allowed(
            "/api/v1/namespaces/shop/secrets/api-key/status",
            None
        ));
        assert!(allowed(
            "/api/v1/namespaces/shop/secrets",
            Some("fieldSelector=metadata.name%3Dapi-key")
        ));
        // Non-resource requests name no namespace and are not spanned.
        assert!(allowed("/api/v1", None));
        // A subresource answers with the object: a deny of it covers them.
        assert!(!allowed(
            "/api/v1/namespaces/shop/secrets/db-password/status",
            None
        ));
        assert!(allowed("/api/v1/namespaces/shop/secrets/api-key", None));
    }

    #[test]
    fn subjects_match_users_groups_and_anyone() {
        let policy = rules(
            r#"
- permission: kubernetes.clusters.manage
  subjects: [user:default/admin, group:default/platform]
  decision: allow
"#,
        );
        let allowed = |caller: Caller| {
            policy
                .check(&caller, Permission::ClustersManage, &Target::none())
                .is_ok()
        };
        assert!(allowed(caller("user:default/admin", &[])));
        assert!(allowed(caller("User:Default/Admin", &[])));
        assert!(allowed(caller(
            "user:default/x",
            &["group:default/platform"]
        )));
        assert!(!allowed(caller("user:default/x", &["group:default/other"])));
        assert!(!allowed(Caller::guest()));
    }

    #[test]
    fn rules_with_dimensions_the_target_lacks_do_not_match() {
        let policy = rules(
            r#"
- permission: "*"
  subjects: ["*"]
  namespaces: [team-a]
  decision: allow
"#,
        );
        let anyone = caller("user:default/a", &[]);
        let get = Method::GET;
        let in_namespace = proxy(&get, "/api/v1/namespaces/team-a/pods", None);
        let cluster_wide = proxy(&get, "/api/v1/pods", None);
        assert!(policy
            .check(
                &anyone,
                Permission::Proxy,
                &Target {
                    cluster: Some("c"),
                    proxy: Some(in_namespace),
                    impersonation: None,
                }
            )
            .is_ok());
        assert!(policy
            .check(
                &anyone,
                Permission::Proxy,
                &Target {
                    cluster: Some("c"),
                    proxy: Some(cluster_wide),
                    impersonation: None,
                }
            )
            .is_err());
        assert!(policy
            .check(&anyone, Permission::ClustersRead, &Target::none())
            .is_err());
    }

    #[test]
    fn bad_rules_are_refused_with_the_key() {
        let compile = |yaml: &str| {
            serde_saphyr::from_str::<RuleConfig>(yaml)
                .unwrap()
                .compile()
                .unwrap_err()
                .to_string()
        };
        assert!(
            compile("{permission: kubernetes.prxy, subjects: ['*'], decision: allow}")
                .starts_with("permission:")
        );
        assert!(
            compile("{permission: kubernetes.proxy, subjects: [], decision: allow}")
                .starts_with("subjects:")
        );
        assert!(
            compile("{permission: kubernetes.proxy, subjects: ['*'], decision: maybe}")
                .starts_with("decision:")
        );
        assert!(compile(
            "{permission: kubernetes.proxy, subjects: ['*'], verbs: [destroy], decision: deny}"
        )
        .starts_with("verbs:"));
        assert!(compile(
            "{permission: kubernetes.proxy, subjects: ['*'], actions: [fly], decision: deny}"
        )
        .starts_with("actions:"));
        assert!(compile("{permission: kubernetes.clusters.read, subjects: ['*'], methods: [GET], decision: deny}").starts_with("methods:"));
        assert!(
            compile("{permission: kubernetes.proxy, subjects: ['alice'], decision: deny}")
                .starts_with("subjects:")
        );
        assert!(compile(
            "{permission: kubernetes.proxy, subjects: ['*'], clusters: [], decision: deny}"
        )
        .starts_with("clusters:"));
        // The audit trail is read whole: a per-cluster deny would never apply.
        assert!(compile(
            "{permission: kubernetes.audit.read, subjects: ['*'], clusters: [dev], decision: deny}"
        )
        .starts_with("clusters: kubernetes.audit.read is not judged per cluster"));
    }

    #[test]
    fn resources_without_subresources_match_as_rbac_does() {
        let policy = rules(
            r#"
- { permission: kubernetes.proxy, subjects: [user:default/plain], resources: [pods], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/logs], resources: [pods, pods/log], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/all-sub], resources: ["pods/*"], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/any-exec], resources: ["*/exec"], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/star], resources: ["*"], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/sub-star], resources: [pods], subresources: ["*"], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/sub-exec], resources: [pods], subresources: [exec], decision: allow }
"#,
        );
        let get = Method::GET;
        let allowed = |subject: &str, path: &str| {
            policy
                .check(
                    &caller(subject, &[]),
                    Permission::Proxy,
                    &Target {
                        cluster: Some("c"),
                        proxy: Some(proxy(&get, path, None)),
                        impersonation: None,
                    },
                )
                .is_ok()
        };
        let pod = "/api/v1/namespaces/a/pods/p";
        let exec = "/api/v1/namespaces/a/pods/p/exec";
        let log = "/api/v1/namespaces/a/pods/p/log";
        let table = [
            ("user:default/plain", [true, false, false]),
            ("user:default/logs", [true, false, true]),
            ("user:default/all-sub", [false, true, true]),
            ("user:default/any-exec", [false, true, false]),
            ("user:default/star", [true, true, true]),
            ("user:default/sub-star", [true, true, true]),
            ("user:default/sub-exec", [false, true, false]),
        ];
        for (subject, [on_pod, on_exec, on_log]) in table {
            assert_eq!(allowed(subject, pod), on_pod, "{subject} on pods");
            assert_eq!(allowed(subject, exec), on_exec, "{subject} on pods/exec");
            assert_eq!(allowed(subject, log), on_log, "{subject} on pods/log");
        }
    }

    #[test]
    fn impersonation_is_granted_only_by_name_per_user_and_group() {
        let policy = rules(
            r#"
- { permission: "*", subjects: [group:default/admins], decision: allow }
- { permission: kubernetes.impersonate, subjects: [group:default/sre], clusters: ["dev-*"], users: ["auditor", "svc-*"], groups: [viewers], decision: allow }
"#,
        );
        let check = |subject: &Caller, cluster: &str, impersonation| {
            policy
                .check(
                    subject,
                    Permission::Impersonate,
                    &Target {
                        cluster: Some(cluster),
                        proxy: None,
                        impersonation: Some(impersonation),
                    },
                )
                .is_ok()
        };
        let sre = caller("user:default/a", &["group:default/sre"]);
        let admin = caller("user:default/b", &["group:default/admins"]);
        assert!(check(&sre, "dev-1", Impersonation::User("auditor")));
        assert!(check(&sre, "dev-1", Impersonation::User("svc-ci")));
        assert!(check(&sre, "dev-1", Impersonation::Group("viewers")));
        assert!(!check(
            &sre,
            "dev-1",
            Impersonation::Group("system:masters")
        ));
        assert!(!check(&sre, "dev-1", Impersonation::User("admin")));
        assert!(!check(&sre, "prod-1", Impersonation::User("auditor")));
        assert!(
            !check(&admin, "dev-1", Impersonation::User("auditor")),
            "`*` does not grant impersonation"
        );
        let compile = |yaml: &str| {
            serde_saphyr::from_str::<RuleConfig>(yaml)
                .unwrap()
                .compile()
                .unwrap_err()
                .to_string()
        };
        assert!(compile(
            "{permission: kubernetes.proxy, subjects: ['*'], users: [x], decision: allow}"
        )
        .starts_with("users:"));
    }

    #[test]
    fn a_read_is_judged_by_namespace_alone_only_when_no_rule_of_its_caller_reads_more() {
        let policy = rules(
            r#"
- { permission: kubernetes.proxy, subjects: [user:default/alice], namespaces: ["team-a-*"], verbs: [list], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/alice], resources: [secrets], names: [public-*], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/bob], clusters: [prod], objectSelector: "pool=a", decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/bob], namespaces: [shop], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/carol], namespaceSelector: "tenant=a", decision: allow }
"#,
        );
        let get = Method::GET;
        let by_namespace = |who: &str, cluster: &str, path: &str| {
            let target = Target {
                cluster: Some(cluster),
                proxy: Some(proxy(&get, path, None)),
                impersonation: None,
            };
            policy
                .object_rules(&caller(who, &[]), &target)
                .by_namespace()
        };
        assert!(by_namespace("user:default/alice", "dev", "/api/v1/pods"));
        assert!(
            !by_namespace("user:default/alice", "dev", "/api/v1/secrets"),
            "a rule naming secrets applies"
        );
        assert!(by_namespace("user:default/bob", "dev", "/api/v1/pods"));
        assert!(
            !by_namespace("user:default/bob", "prod", "/api/v1/pods"),
            "a rule reading labels applies in prod"
        );
        assert!(!by_namespace("user:default/carol", "dev", "/api/v1/pods"));
        assert!(by_namespace("user:default/dave", "dev", "/api/v1/pods"));
    }

    #[test]
    fn views_follow_the_rules_in_order() {
        let policy = rules(
            r#"
- { permission: kubernetes.proxy, subjects: [user:default/alice], namespaces: ["team-a-*"], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/bob], namespaces: [kube-system], decision: deny }
- { permission: kubernetes.proxy, subjects: [user:default/bob], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/carol], namespaceSelector: "tenant=a", decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/dave], resources: [nodes], objectSelector: "pool=a", verbs: [get, list], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/erin], resources: [secrets], names: [public-*], decision: allow }
- { permission: kubernetes.proxy, subjects: [user:default/erin], resources: [secrets], decision: deny }
"#,
        );
        let get = Method::GET;
        let view = |who: &str, path: &str, labels: Option<&dyn Labels>| {
            let target = Target {
                cluster: Some("dev"),
                proxy: Some(proxy(&get, path, None)),
                impersonation: None,
            };
            let facts = Facts {
                object: None,
                namespace_labels: labels,
            };
            policy.view(&caller(who, &[]), &target, &facts)
        };
        let alice = "user:default/alice";
        assert_eq!(view(alice, "/api/v1/pods", None), View::Some);
        assert_eq!(view(alice, "/api/v1/namespaces", None), View::Some);
        assert_eq!(
            view(alice, "/api/v1/namespaces/team-a-dev/pods", None),
            View::All
        );
        assert_eq!(
            view(alice, "/api/v1/namespaces/team-b-dev/pods", None),
            View::None
        );
        assert_eq!(
            view(alice, "/api/v1/nodes", None),
            View::Some,
            "nodes span namespaces"
        );
        // A deny of one namespace before an allow of everything: lists
        // across namespaces leave that one out.
        let bob = "user:default/bob";
        assert_eq!(view(bob, "/api/v1/pods", None), View::Some);
        assert_eq!(view(bob, "/api/v1/namespaces/shop/pods", None), View::All);
        assert_eq!(
            view(bob, "/api/v1/namespaces/kube-system/pods", None),
            View::None
        );
        // Namespace labels decide once known.
        let carol = "user:default/carol";
        let tenant_a: std::collections::BTreeMap<String, String> =
            [("tenant".to_owned(), "a".to_owned())].into();
        let tenant_b: std::collections::BTreeMap<String, String> =
            [("tenant".to_owned(), "b".to_owned())].into();
        assert_eq!(
            view(carol, "/api/v1/namespaces/x/pods", Some(&tenant_a)),
            View::All
        );
        assert_eq!(
            view(carol, "/api/v1/namespaces/x/pods", Some(&tenant_b)),
            View::None
        );
        assert_eq!(
            view(carol, "/api/v1/namespaces/x/pods", None),
            View::Some,
            "unknown labels"
        );
        assert_eq!(view(carol, "/api/v1/pods", None), View::Some);
        // Objects by label: every read is partial until the object is seen.
        let dave = "user:default/dave";
        assert_eq!(view(dave, "/api/v1/nodes", None), View::Some);
        assert_eq!(view(dave, "/api/v1/nodes/n1", None), View::Some);
        assert_eq!(view(dave, "/api/v1/namespaces/x/pods", None), View::None);

        // Each object, judged with its own namespace, name and labels.
        let object = |who: &str,
                      path: &str,
                      namespace: Option<&str>,
                      name: &str,
                      labels: &std::collections::BTreeMap<String, String>,
                      namespace_labels: Option<&dyn Labels>| {
            let target = Target {
                cluster: Some("dev"),
                proxy: Some(proxy(&get, path, None)),
                impersonation: None,
            };
            let facts = Facts {
                object: Some(ObjectFacts {
                    namespace,
                    name,
                    labels,
                }),
                namespace_labels,
            };
            policy.allows_object(&caller(who, &[]), &target, &facts)
        };
        let none = std::collections::BTreeMap::new();
        let pool_a: std::collections::BTreeMap<String, String> =
            [("pool".to_owned(), "a".to_owned())].into();
        assert!(object(
            alice,
            "/api/v1/pods",
            Some("team-a-dev"),
            "p",
            &none,
            None
        ));
        assert!(!object(
            alice,
            "/api/v1/pods",
            Some("team-b-dev"),
            "p",
            &none,
            None
        ));
        assert!(!object(alice, "/api/v1/nodes", None, "n1", &none, None));
        assert!(object(bob, "/api/v1/pods", Some("shop"), "p", &none, None));
        assert!(!object(
            bob,
            "/api/v1/pods",
            Some("kube-system"),
            "p",
            &none,
            None
        ));
        assert!(object(
            carol,
            "/api/v1/pods",
            Some("x"),
            "p",
            &none,
            Some(&tenant_a)
        ));
        assert!(!object(
            carol,
            "/api/v1/pods",
            Some("x"),
            "p",
            &none,
            Some(&tenant_b)
        ));
        assert!(
            !object(carol, "/api/v1/pods", Some("x"), "p", &none, None),
            "unknown labels grant nothing"
        );
        assert!(object(dave, "/api/v1/nodes", None, "n1", &pool_a, None));
        assert!(!object(dave, "/api/v1/nodes", None, "n2", &none, None));
        let erin = "user:default/erin";
        assert_eq!(view(erin, "/api/v1/namespaces/x/secrets", None), View::Some);
        assert!(object(
            erin,
            "/api/v1/namespaces/x/secrets",
            Some("x"),
            "public-key",
            &none,
            None
        ));
        assert!(!object(
            erin,
            "/api/v1/namespaces/x/secrets",
            Some("x"),
            "db-password",
            &none,
            None
        ));

        // Writes are decided whole: a label grant needs the labels, and a
        // spanning write meets a deny rule.
        let delete = Method::DELETE;
        let write = |who: &str, path: &'static str, labels: Option<&dyn Labels>| {
            let target = Target {
                cluster: Some("dev"),
                proxy: Some(proxy(&delete, path, None)),
                impersonation: None,
            };
            let facts = Facts {
                object: None,
                namespace_labels: labels,
            };
            policy
                .check_with(&caller(who, &[]), Permission::Proxy, &target, &facts)
                .is_ok()
        };
        assert!(write(carol, "/api/v1/namespaces/x/pods/p", Some(&tenant_a)));
        assert!(!write(
            carol,
            "/api/v1/namespaces/x/pods/p",
            Some(&tenant_b)
        ));
        assert!(!write(carol, "/api/v1/namespaces/x/pods/p", None));
        assert!(
            !write(bob, "/api/v1/pods", None),
            "a deletecollection across namespaces"
        );
        // A deny of namespaces, without resources: the path of a
        // cluster-scoped kind reads like a namespaced kind across all
        // namespaces, so writes to it are refused; its objects, which have
        // no namespace, are none of the denied namespaces' and are read.
        assert!(!write(bob, "/api/v1/nodes/n1", None));
        assert_eq!(view(bob, "/api/v1/nodes", None), View::Some);
        assert_eq!(view(bob, "/api/v1/nodes/n1", None), View::Some);
        assert!(object(bob, "/api/v1/nodes", None, "n1", &none, None));
        assert!(object(bob, "/api/v1/nodes/n1", None, "n1", &none, None));
    }
}
