//! Parsing Kubernetes API paths into what they address, the way the API server's
//! request-info resolver does for the forms the double serves.

/// What an `/api` or `/apis` path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ApiPath {
    /// `/api`
    LegacyVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    GroupVersion { group: String, version: String },
    /// Anything below a group version.
    Resource(ResourcePath),
}

/// A path below a group version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl ApiPath {
    /// Parses a request path; `None` for paths outside `/api` and `/apis`, or too long.
    pub(crate) fn parse(path: &str) -> Option<ApiPath> {
        let segments: Vec<&str> = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .collect();
        match segments.as_slice() {
            ["api"] => Some(ApiPath::LegacyVersions),
            ["apis"] => Some(ApiPath::Groups),
            ["apis", group] => Some(ApiPath::Group((*group).to_owned())),
            ["api", version] => Some(ApiPath::GroupVersion {
                group: String::new(),
                version: (*version).to_owned(),
            }),
            ["apis", group, version] => Some(ApiPath::GroupVersion {
                group: (*group).to_owned(),
                version: (*version).to_owned(),
            }),
            ["api", version, rest @ ..] => resource_path("", version, rest).map(ApiPath::Resource),
            ["apis", group, version, rest @ ..] => {
                resource_path(group, version, rest).map(ApiPath::Resource)
            }
            _ => None,
        }
    }
}

/// Subresources of a namespace, which must not be read as a resource plural in
/// `namespaces/<name>/<segment>`.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

fn resource_path(group: &str, version: &str, rest: &[&str]) -> Option<ResourcePath> {
    if rest.iter().any(|segment| segment.is_empty()) {
        return None;
    }
    let (namespace, rest) = match rest {
        ["namespaces", namespace, next, tail @ ..] if !NAMESPACE_SUBRESOURCES.contains(next) => {
            (Some((*namespace).to_owned()), {
                let mut remaining = vec![*next];
                remaining.extend_from_slice(tail);
                remaining
            })
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, subresource] => (*plural, Some(*name), Some(*subresource)),
        _ => return None,
    };
    Some(ResourcePath {
        group: group.to_owned(),
        version: version.to_owned(),
        namespace,
        plural: plural.to_owned(),
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourcePath {
        match ApiPath::parse(path) {
            Some(ApiPath::Resource(resource)) => resource,
            other => panic!("{path} parsed as {other:?}"),
        }
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(ApiPath::parse("/api"), Some(ApiPath::LegacyVersions));
        assert_eq!(ApiPath::parse("/apis/"), Some(ApiPath::Groups));
        assert_eq!(
            ApiPath::parse("/apis/apps"),
            Some(ApiPath::Group("apps".into()))
        );
        assert_eq!(
            ApiPath::parse("/api/v1"),
            Some(ApiPath::GroupVersion {
                group: String::new(),
                version: "v1".into()
            })
        );
        assert_eq!(ApiPath::parse("/version"), None);
    }

    #[test]
    fn namespaced_paths() {
        let pod_log = resource("/api/v1/namespaces/shop/pods/api-1/log");
        assert_eq!(pod_log.namespace.as_deref(), Some("shop"));
        assert_eq!(pod_log.plural, "pods");
        assert_eq!(pod_log.name.as_deref(), Some("api-1"));
        assert_eq!(pod_log.subresource.as_deref(), Some("log"));

        let deployments = resource("/apis/apps/v1/namespaces/shop/deployments");
        assert_eq!(deployments.group, "apps");
        assert_eq!(deployments.name, None);
    }

    #[test]
    fn namespaces_themselves_are_cluster_scoped() {
        let namespace = resource("/api/v1/namespaces/shop");
        assert_eq!(namespace.namespace, None);
        assert_eq!(namespace.plural, "namespaces");
        assert_eq!(namespace.name.as_deref(), Some("shop"));

        let status = resource("/api/v1/namespaces/shop/status");
        assert_eq!(status.namespace, None);
        assert_eq!(status.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn all_namespaces_and_too_deep_paths() {
        let pods = resource("/api/v1/pods");
        assert_eq!(pods.namespace, None);
        assert_eq!(pods.plural, "pods");
        assert_eq!(
            ApiPath::parse("/api/v1/namespaces/a/pods/b/log/extra"),
            None
        );
        assert_eq!(ApiPath::parse("/api/v1/namespaces//pods"), None);
    }
}
