//! Kubernetes request attributes derived from a path, the way the API server's
//! `RequestInfoFactory` derives them, so rules can speak of verbs, resources
//! and namespaces rather than raw paths.

use http::Method;
use serde::Serialize;
use utoipa::ToSchema;

/// What a request does, coarsely: exec, attach and portforward are `exec`;
/// a request that cannot be classified counts as `write` (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Read,
    Write,
    Delete,
    Exec,
}

impl Action {
    pub fn parse(text: &str) -> Option<Action> {
        match text.to_ascii_lowercase().as_str() {
            "read" => Some(Action::Read),
            "write" => Some(Action::Write),
            "delete" => Some(Action::Delete),
            "exec" => Some(Action::Exec),
            _ => None,
        }
    }
}

/// The attributes of one Kubernetes API request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestAttributes {
    /// get, list, watch, create, update, patch, delete, deletecollection; for
    /// non-resource paths the lower-cased HTTP method.
    pub verb: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `""` for the core group; absent for non-resource paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn query_flag(query: Option<&str>, key: &str) -> bool {
    query.is_some_and(|query| {
        query.split('&').any(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            name == key && matches!(value, "true" | "1")
        })
    })
}

impl RequestAttributes {
    /// Derives the attributes of `method path?query`. `path` must already be
    /// normalised (no `.`/`..` segments, no empty segments).
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Self {
        let segments: Vec<&str> = path
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect();
        let (api_group, rest) = match segments.as_slice() {
            ["api", _version, rest @ ..] => (String::new(), rest),
            ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
            _ => return Self::non_resource(method),
        };
        let mut parts = rest;
        let mut watch = false;
        if parts.first() == Some(&"watch") {
            watch = true;
            parts = &parts[1..];
        }
        if parts.is_empty() {
            // Discovery of a group version (`/api/v1`, `/apis/apps/v1`).
            return Self::non_resource(method);
        }
        let mut namespace = None;
        if parts[0] == "namespaces" && parts.len() > 1 {
            namespace = Some(parts[1].to_owned());
            if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
                parts = &parts[2..];
            }
        }
        let resource = parts[0].to_owned();
        let name = parts.get(1).map(|name| (*name).to_owned());
        let subresource = parts.get(2).map(|sub| (*sub).to_owned());
        let verb = match *method {
            Method::GET | Method::HEAD
                if watch || (name.is_none() && query_flag(query, "watch")) =>
            {
                "watch"
            }
            Method::GET | Method::HEAD if name.is_some() => "get",
            Method::GET | Method::HEAD => "list",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if name.is_some() => "delete",
            Method::DELETE => "deletecollection",
            _ => "unknown",
        };
        let action = match (subresource.as_deref(), verb) {
            (Some("exec" | "attach" | "portforward"), _) => Action::Exec,
            (_, "get" | "list" | "watch") => Action::Read,
            (_, "create" | "update" | "patch") => Action::Write,
            (_, "delete" | "deletecollection") => Action::Delete,
            _ => Action::Write,
        };
        Self {
            verb: verb.to_owned(),
            action,
            namespace,
            api_group: Some(api_group),
            resource: Some(resource),
            subresource,
            name,
        }
    }

    fn non_resource(method: &Method) -> Self {
        let action = match *method {
            Method::GET | Method::HEAD | Method::OPTIONS => Action::Read,
            _ => Action::Write,
        };
        Self {
            verb: method.as_str().to_ascii_lowercase(),
            action,
            namespace: None,
            api_group: None,
            resource: None,
            subresource: None,
            name: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, path: &str, query: Option<&str>) -> RequestAttributes {
        RequestAttributes::parse(&method, path, query)
    }

    #[test]
    fn resource_requests_are_classified_like_the_api_server() {
        let pods = parse(Method::GET, "/api/v1/namespaces/shop/pods", None);
        assert_eq!((pods.verb.as_str(), pods.action), ("list", Action::Read));
        assert_eq!(pods.namespace.as_deref(), Some("shop"));
        assert_eq!(pods.api_group.as_deref(), Some(""));
        assert_eq!(pods.resource.as_deref(), Some("pods"));

        let watch = parse(
            Method::GET,
            "/apis/apps/v1/namespaces/shop/deployments",
            Some("watch=true&resourceVersion=5"),
        );
        assert_eq!(watch.verb, "watch");
        assert_eq!(watch.api_group.as_deref(), Some("apps"));
        assert_eq!(
            parse(Method::GET, "/api/v1/watch/namespaces/a/pods", None).verb,
            "watch"
        );

        let log = parse(
            Method::GET,
            "/api/v1/namespaces/shop/pods/api-0/log",
            Some("follow=true"),
        );
        assert_eq!((log.verb.as_str(), log.action), ("get", Action::Read));
        assert_eq!(log.name.as_deref(), Some("api-0"));
        assert_eq!(log.subresource.as_deref(), Some("log"));

        let exec = parse(
            Method::GET,
            "/api/v1/namespaces/shop/pods/api-0/exec",
            Some("command=sh"),
        );
        assert_eq!(exec.action, Action::Exec);
        assert_eq!(
            parse(
                Method::POST,
                "/api/v1/namespaces/a/pods/p/portforward",
                None
            )
            .action,
            Action::Exec
        );
        assert_eq!(
            parse(Method::POST, "/api/v1/namespaces/a/pods/p/attach", None).action,
            Action::Exec
        );

        let delete = parse(Method::DELETE, "/api/v1/namespaces/a/configmaps/c", None);
        assert_eq!(
            (delete.verb.as_str(), delete.action),
            ("delete", Action::Delete)
        );
        assert_eq!(
            parse(Method::DELETE, "/api/v1/namespaces/a/configmaps", None).verb,
            "deletecollection"
        );
        assert_eq!(
            parse(
                Method::PATCH,
                "/apis/apps/v1/namespaces/a/deployments/d",
                None
            )
            .action,
            Action::Write
        );
        assert_eq!(
            parse(Method::PUT, "/api/v1/namespaces/a/pods/p/status", None).action,
            Action::Write
        );
    }

    #[test]
    fn namespaces_themselves_are_cluster_scoped_resources() {
        let namespace = parse(Method::GET, "/api/v1/namespaces/shop", None);
        assert_eq!(namespace.resource.as_deref(), Some("namespaces"));
        assert_eq!(namespace.name.as_deref(), Some("shop"));
        assert_eq!(namespace.namespace.as_deref(), Some("shop"));
        let finalize = parse(Method::PUT, "/api/v1/namespaces/shop/finalize", None);
        assert_eq!(finalize.resource.as_deref(), Some("namespaces"));
        assert_eq!(finalize.subresource.as_deref(), Some("finalize"));
        let all = parse(Method::GET, "/api/v1/namespaces", None);
        assert_eq!((all.verb.as_str(), all.namespace), ("list", None));
    }

    #[test]
    fn non_resource_paths_use_the_method() {
        let version = parse(Method::GET, "/version", None);
        assert_eq!(
            (version.verb.as_str(), version.action),
            ("get", Action::Read)
        );
        assert_eq!(version.resource, None);
        assert_eq!(parse(Method::POST, "/healthz", None).action, Action::Write);
        assert_eq!(parse(Method::GET, "/apis/apps/v1", None).resource, None);
    }
}
