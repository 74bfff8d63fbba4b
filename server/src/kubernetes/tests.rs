//! Request targets against the attributes kube-apiserver derives for them.
//!
//! Expected values follow the API server's request-info rules
//! (k8s.io/apiserver `pkg/endpoints/request/requestinfo.go`, whose own test
//! cases open the table) and its list-option decoding, plus the two readings
//! current API servers add at authorization: exec, attach and portforward are
//! `create` whatever the method, and kubeportal's action `exec` for every
//! `proxy` subresource or verb.

use http::Method;

use super::*;

/// `verb|action|apiGroup|apiVersion|namespace|resource|subresource|name`,
/// `-` for an absent attribute.
fn describe(attributes: &RequestAttributes) -> String {
    let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    let action = match attributes.action {
        Action::Read => "read",
        Action::Write => "write",
        Action::Delete => "delete",
        Action::Exec => "exec",
    };
    [
        attributes.verb.clone(),
        action.into(),
        or_dash(&attributes.api_group),
        or_dash(&attributes.api_version),
        or_dash(&attributes.namespace),
        or_dash(&attributes.resource),
        or_dash(&attributes.subresource),
        or_dash(&attributes.name),
    ]
    .join("|")
}

fn parse(method: &str, target: &str) -> Result<KubernetesRequest, RequestError> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(path, query)| (path, Some(query)));
    KubernetesRequest::parse(&method, path, Query::parse(query)?)
}

/// (method, target, expected attributes)
const CASES: &[(&str, &str, &str)] = &[
    // The API server's own request-info cases.
    ("GET", "/api/v1/namespaces", "list|read||v1|-|namespaces|-|-"),
    ("GET", "/api/v1/namespaces/other", "get|read||v1|other|namespaces|-|other"),
    ("GET", "/api/v1/namespaces/other/pods", "list|read||v1|other|pods|-|-"),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get|read||v1|other|pods|-|foo"),
    ("HEAD", "/api/v1/namespaces/other/pods/foo", "get|read||v1|other|pods|-|foo"),
    ("GET", "/api/v1/pods", "list|read||v1|-|pods|-|-"),
    ("HEAD", "/api/v1/pods", "list|read||v1|-|pods|-|-"),
    ("PATCH", "/api/v1/namespaces/new-namespace", "patch|write||v1|new-namespace|namespaces|-|new-namespace"),
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy|exec||v1|other|pods|-|foo"),
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy|exec||v1|other|pods|-|foo"),
    ("GET", "/api/v1/watch/pods", "watch|read||v1|-|pods|-|-"),
    ("GET", "/api/v1/pods?watch=true", "watch|read||v1|-|pods|-|-"),
    ("GET", "/api/v1/pods?watch=false", "list|read||v1|-|pods|-|-"),
    ("GET", "/api/v1/watch/namespaces/other/pods", "watch|read||v1|other|pods|-|-"),
    ("GET", "/api/v1/namespaces/other/pods?watch=1", "watch|read||v1|other|pods|-|-"),
    ("GET", "/api/v1/namespaces/other/pods?watch=0", "list|read||v1|other|pods|-|-"),
    ("GET", "/api/v1/namespaces/other/pods/foo/status", "get|read||v1|other|pods|status|foo"),
    ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get|exec||v1|other|pods|proxy|foo"),
    ("PUT", "/api/v1/namespaces/other/finalize", "update|write||v1|other|namespaces|finalize|other"),
    ("PUT", "/api/v1/namespaces/other/status", "update|write||v1|other|namespaces|status|other"),
    ("PATCH", "/api/v1/namespaces/other/pods/foo", "patch|write||v1|other|pods|-|foo"),
    ("DELETE", "/api/v1/namespaces/other/pods/foo", "delete|delete||v1|other|pods|-|foo"),
    ("POST", "/api/v1/namespaces/other/pods", "create|write||v1|other|pods|-|-"),
    ("DELETE", "/api/v1/nodes", "deletecollection|delete||v1|-|nodes|-|-"),
    ("DELETE", "/api/v1/namespaces", "deletecollection|delete||v1|-|namespaces|-|-"),
    ("DELETE", "/api/v1/namespaces/other/pods", "deletecollection|delete||v1|other|pods|-|-"),
    ("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection|delete|extensions|v1|other|pods|-|-"),
    ("POST", "/apis/extensions/v1/namespaces/other/pods", "create|write|extensions|v1|other|pods|-|-"),
    ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create|write|extensions|v1beta3|other|pods|-|-"),
    ("GET", "/api/version/resource", "list|read||version|-|resource|-|-"),
    ("GET", "/apis/group/version/resource/name/subresource", "get|read|group|version|-|resource|subresource|name"),
    ("GET", "/api/version/resource/name/subresource", "get|read||version|-|resource|subresource|name"),
    ("GET", "/apis/batch/v1/job", "list|read|batch|v1|-|job|-|-"),
    ("GET", "/apis/batch/v1/job/foo", "get|read|batch|v1|-|job|-|foo"),
    ("GET", "/apis/batch/v1/job/foo/scale", "get|read|batch|v1|-|job|scale|foo"),
    // Its field-selector cases.
    ("GET", "/apis/group/version/resource", "list|read|group|version|-|resource|-|-"),
    ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1", "list|read|group|version|-|resource|-|name1"),
    ("GET", "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1", "watch|read|group|version|-|resource|-|name1"),
    ("GET", "/apis/group/version/resource?fieldSelector=foo=bar", "list|read|group|version|-|resource|-|-"),
    ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo", "list|read|group|version|-|resource|-|-"),
    ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true", "watch|read|group|version|-|resource|-|-"),
    ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false", "list|read|group|version|-|resource|-|-"),
    // Non-resource paths: the lower-cased method.
    ("GET", "/", "get|read|-|-|-|-|-|-"),
    ("GET", "", "get|read|-|-|-|-|-|-"),
    ("GET", "/api", "get|read|-|-|-|-|-|-"),
    ("GET", "/api/v1", "get|read|-|-|-|-|-|-"),
    ("GET", "/api/version/", "get|read|-|-|-|-|-|-"),
    ("GET", "/apis", "get|read|-|-|-|-|-|-"),
    ("GET", "/apis/apps", "get|read|-|-|-|-|-|-"),
    ("GET", "/apis/apps/v1", "get|read|-|-|-|-|-|-"),
    ("GET", "/apis/group/version/", "get|read|-|-|-|-|-|-"),
    ("GET", "/apis/extensions/v1beta1", "get|read|-|-|-|-|-|-"),
    ("GET", "/badprefix/version/resource", "get|read|-|-|-|-|-|-"),
    ("GET", "/not-api/version/resource", "get|read|-|-|-|-|-|-"),
    ("GET", "/apis/version/resource", "get|read|-|-|-|-|-|-"),
    ("GET", "/healthz", "get|read|-|-|-|-|-|-"),
    ("GET", "/version", "get|read|-|-|-|-|-|-"),
    ("GET", "/openapi/v3/apis/apps/v1", "get|read|-|-|-|-|-|-"),
    ("POST", "/healthz", "post|write|-|-|-|-|-|-"),
    ("HEAD", "/version", "head|read|-|-|-|-|-|-"),
    ("OPTIONS", "/api", "options|read|-|-|-|-|-|-"),
    ("DELETE", "/logs", "delete|write|-|-|-|-|-|-"),
    // Watch, spelled every way the API server reads as true.
    ("GET", "/api/v1/namespaces/shop/secrets?watch=True", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watch=TRUE", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watch=yes", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watch=on", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watch=", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watch", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?%77atch=1", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?%77%61%74%63%68=true", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watch=t", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watch=2", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watch=+", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watch=1&watch=0", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watch=0&watch=1", "list|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watch=False", "list|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?Watch=true", "list|read||v1|shop|secrets|-|-"),
    ("GET", "/api/v1/namespaces/shop/secrets?watchx=true", "list|read||v1|shop|secrets|-|-"),
    ("HEAD", "/api/v1/namespaces/shop/secrets?watch=1", "watch|read||v1|shop|secrets|-|-"),
    ("GET", "/apis/apps/v1/watch/namespaces/shop/deployments", "watch|read|apps|v1|shop|deployments|-|-"),
    ("GET", "/apis/apps/v1/watch/deployments", "watch|read|apps|v1|-|deployments|-|-"),
    ("GET", "/api/v1/watch/namespaces/shop/pods/api-0", "watch|read||v1|shop|pods|-|api-0"),
    ("GET", "/api/v1/watch/namespaces", "watch|read||v1|-|namespaces|-|-"),
    ("GET", "/api/v1/watch/namespaces/shop", "watch|read||v1|shop|namespaces|-|shop"),
    // A watch of one object by field selector (kubectl get -w, wait, rollout status).
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dapi-0&watch=true", "watch|read||v1|shop|pods|-|api-0"),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3D%3Dapi-0", "list|read||v1|shop|pods|-|api-0"),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name!%3Dapi-0", "list|read||v1|shop|pods|-|-"),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=status.phase%3DRunning,metadata.name%3Dapi-0", "list|read||v1|shop|pods|-|api-0"),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Db,metadata.name%3Da", "list|read||v1|shop|pods|-|a"),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3D..", "list|read||v1|shop|pods|-|-"),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Da%25b", "list|read||v1|shop|pods|-|-"),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dapi-0&limit=abc", "list|read||v1|shop|pods|-|-"),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dapi-0&limit=500", "list|read||v1|shop|pods|-|api-0"),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dapi-0&fieldSelector=metadata.name%3Ddb", "list|read||v1|shop|pods|-|api-0"),
    ("GET", "/api/v1/namespaces/shop/pods/api-0?fieldSelector=metadata.name%3Ddb", "get|read||v1|shop|pods|-|api-0"),
    ("DELETE", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dapi-0", "deletecollection|delete||v1|shop|pods|-|-"),
    ("GET", "/api/v1/watch/namespaces/shop/pods?fieldSelector=metadata.name%3Dapi-0", "watch|read||v1|shop|pods|-|-"),
    // Exec, attach and port-forward are `create`, as a POST or a WebSocket GET.
    ("GET", "/api/v1/namespaces/shop/pods/api-0/exec?command=id&stdout=true", "create|exec||v1|shop|pods|exec|api-0"),
    ("POST", "/api/v1/namespaces/shop/pods/api-0/exec?command=id", "create|exec||v1|shop|pods|exec|api-0"),
    ("GET", "/api/v1/namespaces/shop/pods/api-0/attach?stdin=true", "create|exec||v1|shop|pods|attach|api-0"),
    ("POST", "/api/v1/namespaces/shop/pods/api-0/attach", "create|exec||v1|shop|pods|attach|api-0"),
    ("GET", "/api/v1/namespaces/shop/pods/api-0/portforward?ports=8080", "create|exec||v1|shop|pods|portforward|api-0"),
    ("POST", "/api/v1/namespaces/shop/pods/api-0/portforward", "create|exec||v1|shop|pods|portforward|api-0"),
    ("HEAD", "/api/v1/namespaces/shop/pods/api-0/exec", "create|exec||v1|shop|pods|exec|api-0"),
    // Proxy subresources and the legacy proxy verb reach arbitrary endpoints.
    ("GET", "/api/v1/nodes/node-1/proxy/exec/shop/api-0/app?command=id", "get|exec||v1|-|nodes|proxy|node-1"),
    ("GET", "/api/v1/nodes/node-1/proxy/metrics", "get|exec||v1|-|nodes|proxy|node-1"),
    ("POST", "/api/v1/nodes/node-1/proxy/run/shop/api-0/app", "create|exec||v1|-|nodes|proxy|node-1"),
    ("GET", "/api/v1/namespaces/shop/pods/api-0/proxy/", "get|exec||v1|shop|pods|proxy|api-0"),
    ("GET", "/api/v1/namespaces/shop/pods/api-0:8080/proxy/debug", "get|exec||v1|shop|pods|proxy|api-0:8080"),
    ("GET", "/api/v1/namespaces/shop/services/web/proxy/admin", "get|exec||v1|shop|services|proxy|web"),
    ("DELETE", "/api/v1/namespaces/shop/services/https:web:443/proxy/x", "delete|exec||v1|shop|services|proxy|https:web:443"),
    ("GET", "/api/v1/proxy/nodes/node-1/pods", "proxy|exec||v1|-|nodes|-|node-1"),
    // Pod logs.
    ("GET", "/api/v1/namespaces/shop/pods/api-0/log", "get|read||v1|shop|pods|log|api-0"),
    ("GET", "/api/v1/namespaces/shop/pods/api-0/log?follow=true&container=app", "get|read||v1|shop|pods|log|api-0"),
    ("GET", "/api/v1/namespaces/shop/pods/api-0/log?follow=yes", "get|read||v1|shop|pods|log|api-0"),
    // Trailing slashes, doubled slashes, dots and escapes read as the API server reads them.
    ("GET", "/api/v1/namespaces/shop/secrets/db/", "get|read||v1|shop|secrets|-|db"),
    ("DELETE", "/api/v1/namespaces/shop/secrets/db//", "delete|delete||v1|shop|secrets|-|db"),
    ("GET", "/api/v1/namespaces/shop/secrets/", "list|read||v1|shop|secrets|-|-"),
    ("GET", "//api//v1/namespaces/shop/secrets/db", "get|read||v1|shop|secrets|-|db"),
    ("GET", "/api/v1/./namespaces/shop/secrets/db", "get|read||v1|shop|secrets|-|db"),
    ("GET", "/%61pi/v1/namespaces/shop/%73ecrets/db", "get|read||v1|shop|secrets|-|db"),
    ("GET", "/api/v1/namespaces/shop/configmaps/a%20b", "get|read||v1|shop|configmaps|-|a b"),
    ("GET", "/api/v1/namespaces/shop/configmaps/user@example.com", "get|read||v1|shop|configmaps|-|user@example.com"),
    // Methods the API server has no verb for: fail closed as writes.
    ("OPTIONS", "/api/v1/namespaces/shop/pods", "|write||v1|shop|pods|-|-"),
    ("TRACE", "/api/v1/namespaces/shop/pods/api-0", "|write||v1|shop|pods|-|api-0"),
    ("PROPFIND", "/api/v1/pods", "|write||v1|-|pods|-|-"),
    // Everyday kubectl and client requests.
    ("GET", "/apis/apps/v1/namespaces/shop/deployments/web/scale", "get|read|apps|v1|shop|deployments|scale|web"),
    ("PUT", "/apis/apps/v1/namespaces/shop/deployments/web/scale", "update|write|apps|v1|shop|deployments|scale|web"),
    ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web?fieldManager=kubectl", "patch|write|apps|v1|shop|deployments|-|web"),
    ("POST", "/api/v1/namespaces/shop/pods/api-0/eviction", "create|write||v1|shop|pods|eviction|api-0"),
    ("POST", "/api/v1/namespaces/shop/serviceaccounts/default/token", "create|write||v1|shop|serviceaccounts|token|default"),
    ("GET", "/api/v1/namespaces/shop/pods/api-0/ephemeralcontainers", "get|read||v1|shop|pods|ephemeralcontainers|api-0"),
    ("POST", "/api/v1/namespaces", "create|write||v1|-|namespaces|-|-"),
    ("DELETE", "/api/v1/namespaces/shop", "delete|delete||v1|shop|namespaces|-|shop"),
    ("GET", "/api/v1/namespaces/shop/status", "get|read||v1|shop|namespaces|status|shop"),
    ("GET", "/api/v1/nodes/node-1", "get|read||v1|-|nodes|-|node-1"),
    ("GET", "/api/v1/nodes/node-1/status", "get|read||v1|-|nodes|status|node-1"),
    ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "list|read|rbac.authorization.k8s.io|v1|-|clusterroles|-|-"),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "create|write|authorization.k8s.io|v1|-|selfsubjectaccessreviews|-|-"),
    ("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods", "list|read|metrics.k8s.io|v1beta1|shop|pods|-|-"),
    ("GET", "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/web/status", "get|read|argoproj.io|v1alpha1|shop|rollouts|status|web"),
    ("GET", "/api/v1/namespaces/shop/events?fieldSelector=involvedObject.name%3Dapi-0", "list|read||v1|shop|events|-|-"),
    ("GET", "/api/v1/pods?labelSelector=app%3Dweb&limit=500", "list|read||v1|-|pods|-|-"),
    ("GET", "/api/v1/namespaces/shop/pods?resourceVersion=0&watch=true&allowWatchBookmarks=true", "watch|read||v1|shop|pods|-|-"),
];

#[test]
fn request_targets_read_as_the_api_server_reads_them() {
    assert!(CASES.len() >= 120, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for (method, target, expected) in CASES {
        match parse(method, target) {
            Ok(request) => {
                let actual = describe(&request.attributes);
                if actual != *expected {
                    failures.push(format!(
                        "{method} {target}\n  expected {expected}\n  actual   {actual}"
                    ));
                }
                let resource = expected.split('|').nth(2) != Some("-");
                assert_eq!(request.attributes.is_resource_request, resource, "{target}");
            }
            Err(error) => failures.push(format!("{method} {target}: refused ({error})")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unreadable_or_ambiguous_targets_are_refused() {
    for (method, target) in [
        ("GET", "/api/v1/watch"),
        ("GET", "/apis/apps/v1/watch"),
        ("GET", "/api/v1/proxy"),
        ("GET", "/api/v1/namespaces/shop/secrets?watch=no"),
        ("GET", "/api/v1/namespaces/shop/secrets?watch=off"),
        ("GET", "/api/v1/namespaces/shop/secrets?watch=f"),
        ("GET", "/api/v1/namespaces/shop/secrets?watch=N"),
        ("GET", "/api/v1/namespaces/shop/pods/api-0/log?follow=no"),
        ("GET", "/api/v1/namespaces/shop/secrets?watch=1;x=1"),
        ("GET", "/api/v1/namespaces/shop/secrets?wa%tch=1"),
        ("GET", "/api/v1/namespaces/shop/secrets/..%2f..%2fx"),
        ("GET", "/api/v1/namespaces/shop/secrets/../../x"),
        ("GET", "/api/v1/namespaces/%ff/secrets"),
    ] {
        assert!(parse(method, target).is_err(), "{method} {target}");
    }
}

#[test]
fn the_forwarded_request_is_the_canonical_one() {
    let forwarded = |method: &str, target: &str| {
        let request = parse(method, target).unwrap();
        match request.query_string() {
            Some(query) => format!("{}?{query}", request.path),
            None => request.path,
        }
    };
    assert_eq!(
        forwarded(
            "GET",
            "/api/v1/namespaces/shop/secrets?%77atch=yes&x=1&watch=0"
        ),
        "/api/v1/namespaces/shop/secrets?watch=true&x=1"
    );
    assert_eq!(
        forwarded("GET", "/api/v1/namespaces/shop/secrets?watch"),
        "/api/v1/namespaces/shop/secrets?watch=true"
    );
    assert_eq!(
        forwarded("GET", "/api/v1/namespaces/shop/secrets/db/"),
        "/api/v1/namespaces/shop/secrets/db"
    );
    assert_eq!(
        forwarded("GET", "/api/v1/namespaces/shop/services/web/proxy/"),
        "/api/v1/namespaces/shop/services/web/proxy/"
    );
    assert_eq!(forwarded("GET", "/apis/"), "/apis/");
    assert_eq!(forwarded("GET", ""), "/");
    assert_eq!(
        forwarded(
            "GET",
            "/api/v1/namespaces/shop/pods/api-0/log?follow=1&container=app"
        ),
        "/api/v1/namespaces/shop/pods/api-0/log?follow=true&container=app"
    );
    assert_eq!(
        forwarded(
            "POST",
            "/api/v1/namespaces/shop/pods/api-0/exec?command=sh&command=-c&command=echo+hi%21"
        ),
        "/api/v1/namespaces/shop/pods/api-0/exec?command=sh&command=-c&command=echo+hi%21"
    );
    assert_eq!(
        forwarded("GET", "/api/v1/pods?labelSelector=app%3dweb,tier+in+(a,b)"),
        "/api/v1/pods?labelSelector=app%3Dweb%2Ctier+in+%28a%2Cb%29"
    );
}

#[test]
fn long_lived_requests_are_known_from_the_parse() {
    let long_lived = |method: &str, target: &str| parse(method, target).unwrap().is_long_lived();
    for target in [
        "/api/v1/namespaces/shop/secrets?watch=True",
        "/api/v1/namespaces/shop/secrets?watch",
        "/api/v1/namespaces/shop/secrets?%77atch=1",
        "/api/v1/watch/namespaces/shop/pods",
        "/apis/apps/v1/watch/deployments",
        "/api/v1/namespaces/shop/pods/api-0/log?follow=TRUE",
        "/api/v1/namespaces/shop/pods/api-0/log?follow",
        "/api/v1/namespaces/shop/services/web/proxy/events",
    ] {
        assert!(long_lived("GET", target), "{target}");
    }
    for target in [
        "/api/v1/namespaces/shop/secrets",
        "/api/v1/namespaces/shop/secrets?watch=false",
        "/api/v1/namespaces/shop/pods/api-0/log",
        "/api/v1/namespaces/shop/pods/api-0/log?follow=0",
        "/api/v1/namespaces/shop/pods/api-0?watch=true",
        "/version",
    ] {
        assert!(!long_lived("GET", target), "{target}");
    }
}
