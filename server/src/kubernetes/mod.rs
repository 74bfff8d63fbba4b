//! A Kubernetes API request as kube-apiserver reads it.
//!
//! One parse of method, path and query gives both the canonical request that
//! kubeportal forwards and the attributes the API server derives from it (its
//! request-info rules and metav1 parameter decoding). The policy, the choice
//! of upstream connection, the audit record and the metrics all read this one
//! parse, so what is judged is exactly what the cluster serves. Where two
//! readers could disagree, the request is refused with 400 instead of guessed.
//!
//! This module knows nothing of the portal: no identity, no cluster, no I/O.

mod attributes;
mod duration;
pub mod fields;
pub mod labels;
pub mod path;
pub mod query;

use std::time::Duration;

use http::Method;

pub use attributes::{
    common_verb, Action, AttributeError, RequestAttributes, RequestAttributesExt,
};
pub use duration::{parse_go_duration, TimeoutError};
pub use path::PathError;
pub use query::{Query, QueryError};

/// Why a request was refused before it reached the policy (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Attributes(#[from] AttributeError),
    #[error(transparent)]
    Timeout(#[from] TimeoutError),
}

/// One Kubernetes API request in canonical form, with its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesRequest {
    /// The canonical path the cluster receives (percent-encoded, no empty or
    /// dot segments; a trailing slash only where the API server passes the
    /// rest of the path on, in a `proxy` subresource).
    pub path: String,
    /// The decoded query; [`KubernetesRequest::query_string`] is what the
    /// cluster receives.
    pub query: Query,
    pub attributes: RequestAttributes,
    /// The caller's own deadline (`?timeout=`), as the API server reads it:
    /// only on requests it does not treat as long-running, and `None` for
    /// zero or less.
    pub timeout: Option<Duration>,
}

impl KubernetesRequest {
    /// Reads `method raw_path?query`. `raw_path` is what follows the proxy
    /// prefix (empty for the root); `query` is already decoded (and stripped
    /// of portal-only parameters such as tickets).
    pub fn parse(method: &Method, raw_path: &str, mut query: Query) -> Result<Self, RequestError> {
        let mut path = path::normalize(raw_path)?;
        let segments = path::decoded_segments(&path);
        let attributes = RequestAttributes::derive(method, &segments, &mut query)?;
        // The API server ignores a trailing slash when it reads a resource
        // request (`…/secrets/db/` is a get of `db`); only a proxy passes it on.
        let passes_rest_on = attributes.action == Action::Exec
            && (attributes.subresource.as_deref() == Some("proxy") || attributes.verb == "proxy");
        if attributes.is_resource_request && !passes_rest_on && path.len() > 1 {
            while path.ends_with('/') {
                path.pop();
            }
        }
        let timeout = match query.first("timeout") {
            // The API server reads an empty value as no timeout at all.
            Some(text) if !text.is_empty() && !is_long_running(&attributes, &path) => {
                parse_go_duration(text)?
            }
            _ => None,
        };
        Ok(Self {
            path,
            query,
            attributes,
            timeout,
        })
    }

    /// Reads a raw request target (`raw_path` and the raw query without `?`).
    pub fn parse_target(
        method: &Method,
        raw_path: &str,
        raw_query: Option<&str>,
    ) -> Result<Self, RequestError> {
        Self::parse(method, raw_path, Query::parse(raw_query)?)
    }

    /// The canonical query string the cluster receives.
    pub fn query_string(&self) -> Option<String> {
        self.query.encode()
    }

    /// Whether the response stays open: a watch, a followed log, or a proxy to
    /// an arbitrary endpoint (which may stream). These get upstream
    /// connections of their own, so they can never fill the one that ordinary
    /// requests share.
    pub fn is_long_lived(&self) -> bool {
        let attributes = &self.attributes;
        attributes.verb == "watch"
            || attributes.verb == "proxy"
            || match attributes.subresource.as_deref() {
                Some("log") => self.query.first("follow") == Some("true"),
                Some("proxy") => true,
                _ => false,
            }
    }
}

/// kube-apiserver's long-running check (`BasicLongRunningRequestCheck` with
/// its verbs and subresources): such requests have no request deadline, and
/// their `timeout` parameter is not read.
fn is_long_running(attributes: &RequestAttributes, path: &str) -> bool {
    matches!(attributes.verb.as_str(), "watch" | "proxy")
        || (attributes.is_resource_request
            && matches!(
                attributes.subresource.as_deref(),
                Some("attach" | "exec" | "proxy" | "log" | "portforward")
            ))
        || (!attributes.is_resource_request && path.starts_with("/debug/pprof/"))
}

#[cfg(test)]
mod tests;
