//! Authorization as this double emulates it: every authenticated caller may do
//! everything, except the verbs on resources a test has denied
//! ([`crate::KubeDouble::deny`]). Denials are enforced on resource requests
//! with the API server's `Forbidden` wording, and reported by
//! `SelfSubjectAccessReview` and `SelfSubjectRulesReview`
//! (`kubectl auth can-i`, with and without `--list`), so the reviews and the
//! requests always agree.

use std::sync::Mutex;

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::paths::ResourcePath;
use crate::status::ApiError;

/// One denied verb on one resource (`group` empty for the core group).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Denial {
    verb: String,
    group: String,
    resource: String,
}

/// The denials a test has set.
#[derive(Default)]
pub(crate) struct Access {
    denied: Mutex<Vec<Denial>>,
}

impl Access {
    pub(crate) fn deny(&self, verb: &str, group: &str, resource: &str) {
        self.denied.lock().unwrap().push(Denial {
            verb: verb.to_owned(),
            group: group.to_owned(),
            resource: resource.to_owned(),
        });
    }

    fn allows(&self, verb: &str, group: &str, resource: &str) -> bool {
        !self.denied.lock().unwrap().iter().any(|denial| {
            denial.verb == verb && denial.group == group && denial.resource == resource
        })
    }

    /// Refuses a resource request a denial covers, as the API server words it.
    pub(crate) fn check(
        &self,
        path: &ResourcePath,
        method: &Method,
        watch: bool,
    ) -> Result<(), ApiError> {
        let verb = verb_of(path, method, watch);
        let resource = match &path.subresource {
            Some(subresource) => format!("{}/{subresource}", path.plural),
            None => path.plural.clone(),
        };
        if self.allows(verb, &path.group, &resource) {
            return Ok(());
        }
        Err(ApiError::forbidden(
            &path.group,
            &path.plural,
            path.name.as_deref(),
            verb,
            &resource,
            path.namespace.as_deref(),
        ))
    }

    /// Answers `SelfSubjectAccessReview` and `SelfSubjectRulesReview`; gives
    /// any other request back.
    pub(crate) async fn review(
        &self,
        path: &ResourcePath,
        request: Request,
    ) -> Result<Result<Response, ApiError>, Request> {
        let kind = match path.plural.as_str() {
            "selfsubjectaccessreviews" => "SelfSubjectAccessReview",
            "selfsubjectrulesreviews" => "SelfSubjectRulesReview",
            _ => return Err(request),
        };
        if path.group != "authorization.k8s.io" || path.name.is_some() {
            return Err(request);
        }
        if request.method() != Method::POST {
            return Ok(Err(ApiError::method_not_allowed()));
        }
        let Ok(body) = axum::body::to_bytes(request.into_body(), 1 << 20).await else {
            return Ok(Err(ApiError::bad_request("unreadable body")));
        };
        let Ok(mut review) = serde_json::from_slice::<Value>(&body) else {
            return Ok(Err(ApiError::bad_request("the body is not a JSON object")));
        };
        let status = if kind == "SelfSubjectAccessReview" {
            self.access_status(&review["spec"])
        } else {
            self.rules_status()
        };
        review["status"] = status;
        review["apiVersion"] = json!(format!("authorization.k8s.io/{}", path.version));
        review["kind"] = json!(kind);
        Ok(Ok((StatusCode::CREATED, Json(review)).into_response()))
    }

    fn access_status(&self, spec: &Value) -> Value {
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        if let Some(attributes) = spec.get("resourceAttributes") {
            let verb = text(&attributes["verb"]);
            let group = text(&attributes["group"]);
            let mut resource = text(&attributes["resource"]);
            let subresource = text(&attributes["subresource"]);
            if !subresource.is_empty() {
                resource = format!("{resource}/{subresource}");
            }
            if self.allows(&verb, &group, &resource) {
                json!({"allowed": true, "reason": "kube-double allows what no test denied"})
            } else {
                json!({"allowed": false, "denied": true, "reason": "denied by the test"})
            }
        } else {
            json!({"allowed": true, "reason": "kube-double allows every non-resource path"})
        }
    }

    fn rules_status(&self) -> Value {
        let denied = self.denied.lock().unwrap().clone();
        let mut rules = vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})];
        // RBAC has no deny rule: a denied resource is reported by listing what
        // remains allowed on it.
        let verbs = [
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ];
        if !denied.is_empty() {
            rules.clear();
            let mut resources: Vec<(String, String)> = denied
                .iter()
                .map(|denial| (denial.group.clone(), denial.resource.clone()))
                .collect();
            resources.dedup();
            for (group, resource) in resources {
                let allowed: Vec<&str> = verbs
                    .iter()
                    .copied()
                    .filter(|verb| self.allows(verb, &group, &resource))
                    .collect();
                if !allowed.is_empty() {
                    rules.push(
                        json!({"verbs": allowed, "apiGroups": [group], "resources": [resource]}),
                    );
                }
            }
        }
        json!({
            "resourceRules": rules,
            "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        })
    }
}

/// The verb the API server derives for a resource request.
fn verb_of(path: &ResourcePath, method: &Method, watch: bool) -> &'static str {
    if matches!(
        path.subresource.as_deref(),
        Some("exec" | "attach" | "portforward")
    ) {
        return "create";
    }
    match (method.as_str(), path.name.is_some()) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "",
    }
}
