//! The permission policy: an ordered rule list, first match wins, default deny.
//!
//! Every decision is made here (`Policy::check`), before any byte goes to a
//! cluster. A denial never names the cluster; `Policy::explain` is where
//! admins learn which rule decided.

mod attributes;
pub mod routes;

use globset::{GlobBuilder, GlobMatcher};
use http::Method;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::identity::Caller;

pub use attributes::{Action, RequestAttributes};

/// What a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Permission {
    #[serde(rename = "kubernetes.clusters.read")]
    ClustersRead,
    #[serde(rename = "kubernetes.clusters.manage")]
    ClustersManage,
    #[serde(rename = "kubernetes.resources.read")]
    ResourcesRead,
    #[serde(rename = "kubernetes.proxy")]
    Proxy,
    #[serde(rename = "kubernetes.audit.read")]
    AuditRead,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::ClustersRead,
        Permission::ClustersManage,
        Permission::ResourcesRead,
        Permission::Proxy,
        Permission::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ClustersRead => "kubernetes.clusters.read",
            Permission::ClustersManage => "kubernetes.clusters.manage",
            Permission::ResourcesRead => "kubernetes.resources.read",
            Permission::Proxy => "kubernetes.proxy",
            Permission::AuditRead => "kubernetes.audit.read",
        }
    }
}

/// A request to a cluster through the proxy, as the policy judges it.
#[derive(Debug, Clone)]
pub struct ProxyTarget<'a> {
    pub method: &'a Method,
    /// The Kubernetes path the cluster will see (normalised, no query).
    pub path: &'a str,
    pub attributes: RequestAttributes,
}

/// What a permission check is about.
#[derive(Debug, Clone, Default)]
pub struct Target<'a> {
    pub cluster: Option<&'a str>,
    pub proxy: Option<ProxyTarget<'a>>,
}

impl<'a> Target<'a> {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn cluster(name: &'a str) -> Self {
        Self {
            cluster: Some(name),
            proxy: None,
        }
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
    pub decision: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Decision {
    Allow,
    Deny,
}

/// A set of globs; an absent set matches everything.
#[derive(Debug, Clone)]
struct Globs(Vec<GlobMatcher>);

impl Globs {
    fn compile(
        field: &str,
        patterns: &Option<Vec<String>>,
        case_insensitive: bool,
    ) -> Result<Option<Globs>, String> {
        let Some(patterns) = patterns else {
            return Ok(None);
        };
        if patterns.is_empty() {
            return Err(format!(
                "{field}: an empty list matches nothing; leave the key out to match anything"
            ));
        }
        patterns
            .iter()
            .map(|pattern| {
                GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .case_insensitive(case_insensitive)
                    .backslash_escape(true)
                    .build()
                    .map(|glob| glob.compile_matcher())
                    .map_err(|error| format!("{field}: {error}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|globs| Some(Globs(globs)))
    }

    fn matches(globs: &Option<Globs>, value: Option<&str>) -> bool {
        match (globs, value) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(Globs(globs)), Some(value)) => globs.iter().any(|glob| glob.is_match(value)),
        }
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    index: usize,
    description: String,
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
    decision: Decision,
}

const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

impl RuleConfig {
    /// Compiles the rule, or says what is wrong with it.
    pub fn compile(&self) -> Result<Rule, String> {
        let decision = match self.decision.as_str() {
            "allow" => Decision::Allow,
            "deny" => Decision::Deny,
            _ => return Err("decision: must be `allow` or `deny`".into()),
        };
        if self.subjects.is_empty() {
            return Err("subjects: list at least one user or group ref, or `*`".into());
        }
        for subject in &self.subjects {
            if subject != "*" {
                crate::identity::validate_entity_ref(subject)
                    .map_err(|message| format!("subjects: `{subject}` {message}"))?;
            }
        }
        let permission = GlobBuilder::new(&self.permission)
            .build()
            .map_err(|error| format!("permission: {error}"))?
            .compile_matcher();
        let matched: Vec<Permission> = Permission::ALL
            .into_iter()
            .filter(|candidate| permission.is_match(candidate.as_str()))
            .collect();
        if matched.is_empty() {
            return Err(format!(
                "permission: `{}` matches no permission (known: {})",
                self.permission,
                Permission::ALL.map(Permission::as_str).join(", ")
            ));
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
        ];
        if !matched.contains(&Permission::Proxy) {
            if let Some((key, _)) = proxy_only.iter().find(|(_, present)| *present) {
                return Err(format!("{key}: only applies to kubernetes.proxy"));
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
                            .map_err(|_| format!("methods: `{method}` is not an HTTP method"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        if let Some(verbs) = &self.verbs {
            if let Some(verb) = verbs.iter().find(|verb| {
                !verb.contains('*') && !VERBS.contains(&verb.to_ascii_lowercase().as_str())
            }) {
                return Err(format!(
                    "verbs: `{verb}` is not one of {}",
                    VERBS.join(", ")
                ));
            }
        }
        let actions = self
            .actions
            .as_ref()
            .map(|actions| {
                actions
                    .iter()
                    .map(|action| {
                        Action::parse(action).ok_or_else(|| {
                            format!("actions: `{action}` is not one of read, write, delete, exec")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Rule {
            index: 0,
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
            decision,
        })
    }
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

    fn matches(&self, caller: &Caller, permission: Permission, target: &Target<'_>) -> bool {
        if !self.permissions.contains(&permission) {
            return false;
        }
        let subject_matches = self.subjects.iter().any(|subject| {
            subject == "*"
                || subject.eq_ignore_ascii_case(&caller.subject)
                || caller
                    .groups
                    .iter()
                    .any(|group| subject.eq_ignore_ascii_case(group))
        });
        if !subject_matches || !Globs::matches(&self.clusters, target.cluster) {
            return false;
        }
        let proxy = target.proxy.as_ref();
        let attributes = proxy.map(|proxy| &proxy.attributes);
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
                &self.namespaces,
                attributes.and_then(|a| a.namespace.as_deref()),
            )
            && Globs::matches(
                &self.api_groups,
                attributes.and_then(|a| a.api_group.as_deref()),
            )
            && Globs::matches(
                &self.resources,
                attributes.and_then(|a| a.resource.as_deref()),
            )
            && Globs::matches(
                &self.subresources,
                attributes.and_then(|a| a.subresource.as_deref()),
            )
            && Globs::matches(&self.names, attributes.and_then(|a| a.name.as_deref()))
    }
}

/// Why a decision was made.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub decision: Decision,
    /// Index of the deciding rule in `permissions.rules`; absent for the default deny.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_index: Option<usize>,
    /// The deciding rule's description, or why nothing matched.
    pub reason: String,
}

/// The ordered rules.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    pub fn new(configs: &[RuleConfig]) -> Result<Self, String> {
        let rules = configs
            .iter()
            .enumerate()
            .map(|(index, config)| {
                config.compile().map(|mut rule| {
                    rule.index = index;
                    rule
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { rules })
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
        match self
            .rules
            .iter()
            .find(|rule| rule.matches(caller, permission, target))
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

    /// `Ok` when allowed, 403 `NotAllowedError` otherwise.
    pub fn check(
        &self,
        caller: &Caller,
        permission: Permission,
        target: &Target<'_>,
    ) -> Result<(), ApiError> {
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.matches(caller, permission, target));
        let decision = rule.map_or(Decision::Deny, |rule| rule.decision);
        if let Some(note) = &caller.note {
            let rule = rule.map(|rule| format!("rule {}: {}", rule.index, rule.reason()));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Policy {
        let configs: Vec<RuleConfig> = serde_yaml::from_str(yaml).unwrap();
        Policy::new(&configs).unwrap()
    }

    fn caller(subject: &str, groups: &[&str]) -> Caller {
        Caller::user(subject, groups.iter().map(|g| g.to_string()).collect())
    }

    fn proxy<'a>(method: &'a Method, path: &'a str, query: Option<&str>) -> ProxyTarget<'a> {
        ProxyTarget {
            method,
            path,
            attributes: RequestAttributes::parse(method, path, query),
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
            },
        );
        assert_eq!(explanation.decision, Decision::Deny);
        assert_eq!(explanation.rule_index, Some(0));
        assert_eq!(explanation.reason, "nobody deletes in prod");

        let dev = Target {
            cluster: Some("dev-1"),
            proxy: Some(delete_pod),
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
                    proxy: Some(exec.clone())
                }
            )
            .is_ok());
        assert!(policy
            .check(
                &anyone,
                Permission::Proxy,
                &Target {
                    cluster: Some("prod"),
                    proxy: Some(exec)
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
                    proxy: Some(logs)
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
                    proxy: Some(in_namespace)
                }
            )
            .is_ok());
        assert!(policy
            .check(
                &anyone,
                Permission::Proxy,
                &Target {
                    cluster: Some("c"),
                    proxy: Some(cluster_wide)
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
            serde_yaml::from_str::<RuleConfig>(yaml)
                .unwrap()
                .compile()
                .unwrap_err()
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
    }
}
