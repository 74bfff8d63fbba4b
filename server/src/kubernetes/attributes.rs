//! The attributes kube-apiserver derives for a request (its `RequestInfoFactory`
//! with the metav1 list-option decoding), so rules speak of verbs, resources
//! and namespaces exactly as the API server will serve the request.

use std::borrow::Cow;

use http::Method;

use super::fields;
use super::query::{Query, QueryError};

pub use kubeportal_api::kubernetes::{Action, RequestAttributes};

/// The verbs a request's attributes usually carry: the resource verbs, and
/// the lowercase standard methods of non-resource requests. A non-resource
/// request with another method carries that method, lowercase, as its verb.
const COMMON_VERBS: [&str; 13] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "proxy",
    "head",
    "options",
    "post",
    "put",
];

/// `verb` as a constant, when it is one of the [`COMMON_VERBS`].
pub fn common_verb(verb: &str) -> Option<&'static str> {
    COMMON_VERBS.into_iter().find(|common| *common == verb)
}

/// The action of a verb, or of the subresource that decides it.
fn action_of(subresource: Option<&str>, verb: &str) -> Action {
    match (subresource, verb) {
        (Some("exec" | "attach" | "portforward" | "proxy"), _) | (_, "proxy") => Action::Exec,
        (_, "get" | "list" | "watch") => Action::Read,
        (_, "create" | "update" | "patch") => Action::Write,
        (_, "delete" | "deletecollection") => Action::Delete,
        _ => Action::Write,
    }
}

/// What the server derives from and reads out of [`RequestAttributes`] (a
/// wire type of `kubeportal-api`, reported by the policy's explain route).
pub trait RequestAttributesExt: Sized {
    /// Derives the attributes of `method` on the decoded path `segments`
    /// (empty, `.` and `..` segments already resolved). Booleans the decision
    /// reads (`watch` of a list, `follow` of a log) are rewritten in `query`
    /// to their canonical spelling.
    fn derive(
        method: &Method,
        segments: &[Cow<'_, str>],
        query: &mut Query,
    ) -> Result<Self, AttributeError>;

    /// The attributes of a resource request described by its parts, as an
    /// access review (`kubectl auth can-i`) asks about one.
    fn of_resource(
        verb: &str,
        api_group: &str,
        api_version: Option<&str>,
        namespace: Option<&str>,
        resource: &str,
        subresource: Option<&str>,
        name: Option<&str>,
    ) -> Self;

    /// The attributes of a request for a non-resource path by `verb` (the
    /// lower-cased method).
    fn of_non_resource(verb: &str) -> Self;

    /// The HTTP method and canonical path of a request with these attributes
    /// (`version` standing in where the attributes name none).
    fn method_and_path(&self, version: &str) -> (Method, String);

    /// The message of the API server's own denial (its `forbiddenMessage`
    /// inside `NewForbidden`), so a client prints it as it prints any other:
    /// `pods "web-1" is forbidden: User "alice" cannot get resource "pods" in
    /// API group "" in the namespace "shop": <reason>`.
    fn forbidden_message(&self, user: &str, path: &str, reason: &str) -> String;
}

/// Why the API server could not read a request (a 400 here; it answers 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    #[error("unable to determine kind and namespace from the path")]
    NoResource,
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// `path.IsValidPathSegmentName`.
fn is_valid_path_segment_name(name: &str) -> bool {
    !matches!(name, "." | "..") && !name.contains(['/', '%'])
}

/// Whether the list options would decode: when they do not, the API server
/// takes no name from the field selector (and refuses to serve the list).
fn list_options_decode(query: &Query) -> bool {
    let integer = |name| {
        query
            .first(name)
            .is_none_or(|value| value.parse::<i64>().is_ok())
    };
    integer("limit")
        && integer("timeoutSeconds")
        && query.first("fieldSelector").is_none_or(fields::is_valid)
}

impl RequestAttributesExt for RequestAttributes {
    fn forbidden_message(&self, user: &str, path: &str, reason: &str) -> String {
        let verb = &self.verb;
        let reason = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        let (Some(resource), true) = (&self.resource, self.is_resource_request) else {
            return format!("forbidden: User {user:?} cannot {verb} path {path:?}{reason}");
        };
        let group = self.api_group.as_deref().unwrap_or_default();
        let qualified = if group.is_empty() {
            resource.clone()
        } else {
            format!("{resource}.{group}")
        };
        let subject = match &self.name {
            Some(name) => format!("{qualified} {name:?}"),
            None => qualified,
        };
        let full_resource = match &self.subresource {
            Some(subresource) => format!("{resource}/{subresource}"),
            None => resource.clone(),
        };
        let scope = match &self.namespace {
            Some(namespace) => format!("in the namespace {namespace:?}"),
            None => "at the cluster scope".to_owned(),
        };
        format!(
            "{subject} is forbidden: User {user:?} cannot {verb} resource {full_resource:?} in API group {group:?} {scope}{reason}"
        )
    }

    fn derive(
        method: &Method,
        segments: &[Cow<'_, str>],
        query: &mut Query,
    ) -> Result<Self, AttributeError> {
        let non_resource = || non_resource(method);
        let [prefix, rest @ ..] = segments else {
            return Ok(non_resource());
        };
        if segments.len() < 3 {
            return Ok(non_resource());
        }
        let (api_group, rest) = match prefix.as_ref() {
            "api" => (String::new(), rest),
            "apis" if rest.len() >= 3 => (rest[0].to_string(), &rest[1..]),
            _ => return Ok(non_resource()),
        };
        let api_version = rest[0].to_string();
        let mut parts = &rest[1..];

        let mut verb = match parts[0].as_ref() {
            special @ ("proxy" | "watch") => {
                if parts.len() < 2 {
                    return Err(AttributeError::NoResource);
                }
                parts = &parts[1..];
                special
            }
            _ => match *method {
                Method::POST => "create",
                Method::GET | Method::HEAD => "get",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "",
            },
        };

        let mut namespace = None;
        if parts[0] == "namespaces" && parts.len() > 1 {
            namespace = Some(parts[1].to_string());
            if parts.len() > 2 && !matches!(parts[2].as_ref(), "status" | "finalize") {
                parts = &parts[2..];
            }
        }
        let resource = parts[0].to_string();
        let mut name = parts.get(1).map(|name| name.to_string());
        let subresource = parts
            .get(2)
            .filter(|_| verb != "proxy")
            .map(|subresource| subresource.to_string());

        if name.is_none() && verb == "get" {
            verb = if query.canonical_boolean("watch")? {
                "watch"
            } else {
                "list"
            };
            if list_options_decode(query) {
                name = query
                    .first("fieldSelector")
                    .and_then(|selector| fields::exact_match(selector, "metadata.name"))
                    .filter(|name| is_valid_path_segment_name(name));
            }
        }
        if name.is_none() && verb == "delete" {
            verb = "deletecollection";
        }
        let subresource_str = subresource.as_deref();
        if subresource_str == Some("log") {
            query.canonical_boolean("follow")?;
        }
        // What current API servers authorize for exec, attach and
        // port-forward, whether they arrive as a POST or as a WebSocket GET.
        if matches!(subresource_str, Some("exec" | "attach" | "portforward")) {
            verb = "create";
        }
        let action = action_of(subresource_str, verb);
        Ok(Self {
            is_resource_request: true,
            verb: verb.to_owned(),
            action,
            api_group: Some(api_group),
            api_version: Some(api_version),
            namespace,
            resource: Some(resource),
            subresource,
            name,
        })
    }

    fn of_resource(
        verb: &str,
        api_group: &str,
        api_version: Option<&str>,
        namespace: Option<&str>,
        resource: &str,
        subresource: Option<&str>,
        name: Option<&str>,
    ) -> Self {
        Self {
            is_resource_request: true,
            verb: verb.to_owned(),
            action: action_of(subresource, verb),
            api_group: Some(api_group.to_owned()),
            api_version: api_version.map(str::to_owned),
            namespace: namespace.map(str::to_owned),
            resource: Some(resource.to_owned()),
            subresource: subresource.map(str::to_owned),
            name: name.map(str::to_owned),
        }
    }

    fn of_non_resource(verb: &str) -> Self {
        let method =
            Method::from_bytes(verb.to_ascii_uppercase().as_bytes()).unwrap_or(Method::POST);
        Self {
            verb: verb.to_owned(),
            ..non_resource(&method)
        }
    }

    fn method_and_path(&self, version: &str) -> (Method, String) {
        let method = match self.verb.as_str() {
            "get" | "list" | "watch" => Method::GET,
            "update" => Method::PUT,
            "patch" => Method::PATCH,
            "delete" | "deletecollection" => Method::DELETE,
            _ => Method::POST,
        };
        let (Some(group), Some(resource)) = (&self.api_group, &self.resource) else {
            return (method, String::new());
        };
        let version = self.api_version.as_deref().unwrap_or(version);
        let mut path = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        for segment in [
            self.namespace
                .as_deref()
                .map(|namespace| ("namespaces", namespace)),
            Some((resource.as_str(), self.name.as_deref().unwrap_or_default())),
        ]
        .into_iter()
        .flatten()
        {
            path.push('/');
            path.push_str(&super::path::escape_segment(segment.0));
            if !segment.1.is_empty() {
                path.push('/');
                path.push_str(&super::path::escape_segment(segment.1));
            }
        }
        if let Some(subresource) = &self.subresource {
            // A subresource of any object: `*` stands for the name, so path
            // globs such as `…/pods/*/log` judge it.
            if self.name.is_none() {
                path.push_str("/*");
            }
            path.push('/');
            path.push_str(&super::path::escape_segment(subresource));
        }
        (method, path)
    }
}

fn non_resource(method: &Method) -> RequestAttributes {
    let action = match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Action::Read,
        _ => Action::Write,
    };
    RequestAttributes {
        is_resource_request: false,
        verb: method.as_str().to_ascii_lowercase(),
        action,
        api_group: None,
        api_version: None,
        namespace: None,
        resource: None,
        subresource: None,
        name: None,
    }
}
