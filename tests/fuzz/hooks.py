"""Schemathesis hooks and checks for fuzzing kubeportal (loaded by run.py
through SCHEMATHESIS_HOOKS).

Generation: a generated cluster name, Kubernetes path, entity or entity ref
is sometimes replaced by one that exists (the cluster registered on the
kube-double, its demo objects, the catalog stub's entity), so the cluster
routes, the proxy and the object queries reach real data and not only 404s.
Writes (PUT, DELETE) never get the real cluster's name, and `before_call`
redirects those the stateful phase derives from responses: the run must not
change what the other operations rely on.

Checks:
- `anonymous_gets_only_401` (pass `anonymous`): every operation the document
  marks as needing a bearer token answers exactly 401, in the error shape of
  its route family, with `WWW-Authenticate: Bearer` (an undocumented method
  on such a path may be 405 instead, in the same shape); public operations
  never answer 401.
- `every_protected_operation_refused` (pass `anonymous`): after the run, every
  protected operation of the document was tried and refused.
- `proxy_reached_the_cluster` (pass `admin`): after the run, both proxy forms
  returned a 2xx from the kube-double at least once.
- `no_server_fault` (both passes): no 5xx, except the documented 502/504 of
  the proxy (503/504 on the path form, as the API server words it) for a cluster the run itself registered at a made-up address
  (a cluster needing no credential, `localKubectlProxy`, is reachable from
  generated data alone); the kube-double's cluster never gets one.

Environment: FUZZ_PASS (`admin` or `anonymous`), FUZZ_CLUSTER (the cluster on
the kube-double), FUZZ_ENTITY_REF (an entity the catalog stub knows).
"""

import json
import os
import threading

import schemathesis
from hypothesis import strategies as st

PASS = os.environ.get("FUZZ_PASS", "admin")
CLUSTER = os.environ.get("FUZZ_CLUSTER", "fuzz")
ENTITY_REF = os.environ.get("FUZZ_ENTITY_REF", "component:default/shop-api")

# Paths the kube-double answers 200 to. A path parameter is one segment (a
# generated `/` is sent as `%2F`, which the proxy refuses with 400), so these
# are the single-segment ones.
KUBERNETES_PATHS = ["version", "api", "apis", "healthz"]

DEMO_ENTITY = {
    "apiVersion": "backstage.io/v1alpha1",
    "kind": "Component",
    "metadata": {
        "name": "shop-api",
        "annotations": {"backstage.io/kubernetes-id": "shop-api"},
    },
}

# The operations whose `name` is a cluster name that may be replaced by the
# real one: reads, tickets and the path-form proxy.
CLUSTER_NAME_READERS = {
    ("GET", "/api/kubernetes/clusters/{name}"),
    ("GET", "/api/kubernetes/clusters/{name}/kubeconfig"),
    ("POST", "/api/kubernetes/clusters/{name}/tickets"),
    ("GET", "/api/kubernetes/clusters/{name}/proxy/{path}"),
}
HEADER_FORM = ("GET", "/api/kubernetes/proxy/{path}")
PATH_FORM = ("GET", "/api/kubernetes/clusters/{name}/proxy/{path}")
FLEET_FORM = ("GET", "/api/kubernetes/fleet/{clusterGlob}/proxy/{path}")
# Operations whose own errors are Kubernetes `Status` objects (for kubectl).
STATUS_FORMS = {PATH_FORM, FLEET_FORM}


def _key(operation):
    return (operation.method.upper(), operation.path)


def _sometimes(value, real):
    """The generated value or the real one, half the time each."""
    return st.sampled_from([value, real])


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    key = _key(context.operation)
    if path_parameters is None:
        return st.just(path_parameters)
    strategy = st.just(dict(path_parameters))
    if key in CLUSTER_NAME_READERS:
        strategy = strategy.flatmap(
            lambda parameters: _sometimes(parameters, {**parameters, "name": CLUSTER})
        )
    if key in (HEADER_FORM, PATH_FORM):
        strategy = strategy.flatmap(
            lambda parameters: st.one_of(
                st.just(parameters),
                st.sampled_from(KUBERNETES_PATHS).map(
                    lambda path: {**parameters, "path": path}
                ),
            )
        )
    return strategy


@schemathesis.hook
def flatmap_headers(context, headers):
    if _key(context.operation) != HEADER_FORM or headers is None:
        return st.just(headers)
    # The real cluster, with its server-side credential (a generated cluster
    # token would only ever be refused by the cluster).
    real = {
        name: value
        for name, value in headers.items()
        if name.lower() != "backstage-kubernetes-authorization"
    }
    real["Backstage-Kubernetes-Cluster"] = CLUSTER
    return _sometimes(headers, real)


@schemathesis.hook
def flatmap_body(context, body):
    key = _key(context.operation)
    if not isinstance(body, dict):
        return st.just(body)
    if key == ("POST", "/api/kubernetes/services/{entityName}"):
        return _sometimes(body, {**body, "entity": DEMO_ENTITY})
    if key in (
        ("POST", "/api/kubernetes/resources/workloads/query"),
        ("POST", "/api/kubernetes/resources/custom/query"),
    ):
        return _sometimes(body, {**body, "entityRef": ENTITY_REF})
    if key == ("POST", "/api/kubernetes/clusters/{name}/tickets"):
        return _sometimes(
            body, {**body, "path": "/api/v1/namespaces/shop/pods/shop-api-7d9f8b6c5-abcde/exec"}
        )
    return st.just(body)


@schemathesis.hook
def before_call(context, case, kwargs):
    """Writes never reach the cluster on the kube-double, whichever phase
    made them (the stateful phase takes names from the cluster list): they
    go to a name next to it instead."""
    name = (case.path_parameters or {}).get("name")
    if (
        case.method.upper() in ("PUT", "DELETE")
        and isinstance(name, str)
        and name.lower() == CLUSTER.lower()
    ):
        case.path_parameters["name"] = f"{CLUSTER}-spared"


def _is_protected(operation):
    """Whether the document says the operation needs a bearer token."""
    security = operation.definition.raw.get("security")
    if security is None:
        security = operation.schema.raw_schema.get("security", [])
    return any(requirement for requirement in security)


def _json(response):
    try:
        return json.loads(response.content)
    except ValueError as error:
        raise AssertionError(f"the {response.status_code} body is not JSON: {error}") from None


ERROR_NAMES = {401: "AuthenticationError", 405: "MethodNotAllowedError"}


def _proxied_cluster(case):
    """The cluster a proxy request names, or None for other operations."""
    key = _key(case.operation)
    if key == PATH_FORM:
        return (case.path_parameters or {}).get("name")
    if key == HEADER_FORM:
        headers = {name.lower(): value for name, value in (case.headers or {}).items()}
        return headers.get("backstage-kubernetes-cluster")
    return None


@schemathesis.check
def no_server_fault(ctx, response, case):
    """No 5xx but the proxy's documented answer for an unreachable cluster
    that the run registered itself (never the kube-double's)."""
    status = response.status_code
    if status < 500:
        return None
    label = f"{case.method.upper()} {case.formatted_path}"
    cluster = _proxied_cluster(case)
    unreachable = status in (502, 503, 504) and isinstance(cluster, str) and cluster.lower() != CLUSTER.lower()
    if _key(case.operation) == FLEET_FORM:
        # Discovery through a fleet that holds a cluster the run registered
        # at a made-up address (and none that answers).
        unreachable = status in (503, 504)
    if not unreachable:
        raise AssertionError(f"{label} answered {status}")
    body = _json(response)
    message = body.get("message") or body.get("error", {}).get("message", "")
    if "unreachable" not in message and "did not answer" not in message:
        raise AssertionError(f"{label}: a {status} that names no unreachable cluster: {body}")
    return None


@schemathesis.check
def anonymous_gets_only_401(ctx, response, case):
    """Without credentials (and no guest), a protected operation answers only
    401, in its route family's error shape; a public one never 401. A method
    the document does not list for a protected path may also be 405 (the
    route does not exist), in the same shape."""
    if PASS != "anonymous":
        return None
    status = response.status_code
    label = f"{case.method.upper()} {case.formatted_path}"
    if not _is_protected(case.operation):
        if status == 401:
            raise AssertionError(f"{label} is public but answered 401")
        return None
    documented = case.method.upper() == case.operation.method.upper()
    if status != 401 and (documented or status != 405):
        raise AssertionError(f"{label} needs a token but answered {status} without one")
    if status == 401 and response.headers.get("www-authenticate", [""])[0] != "Bearer":
        raise AssertionError(f"{label}: 401 without `WWW-Authenticate: Bearer`")
    if case.method.upper() == "HEAD":
        return None
    body = _json(response)
    if _key(case.operation) in STATUS_FORMS:
        if not (body.get("kind") == "Status" and body.get("code") == status):
            raise AssertionError(f"{label}: the {status} is not a Kubernetes Status: {body}")
    else:
        error = body.get("error", {})
        if not (
            error.get("name") == ERROR_NAMES[status]
            and body.get("response", {}).get("statusCode") == status
        ):
            raise AssertionError(
                f"{label}: the {status} is not an {ERROR_NAMES[status]} envelope: {body}"
            )
    return None


@schemathesis.check
class every_protected_operation_refused:
    """After the anonymous pass: every protected operation was tried, and
    none ever answered anything but 401 (the per-response check says which)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.protected = set()
        self.refused = set()

    def after_response(self, ctx, response, case):
        if PASS != "anonymous":
            return
        label = f"{case.method.upper()} {case.operation.path}"
        with self.lock:
            if not self.protected:
                for result in case.operation.schema.get_all_operations():
                    operation = result.ok()
                    if _is_protected(operation):
                        self.protected.add(f"{operation.method.upper()} {operation.path}")
            if response.status_code == 401:
                self.refused.add(label)

    def after_run(self, ctx):
        if PASS != "anonymous":
            return
        untried = sorted(self.protected - self.refused)
        if untried:
            raise AssertionError(
                "protected operations never refused with 401: " + ", ".join(untried)
            )


@schemathesis.check
class proxy_reached_the_cluster:
    """After the admin pass: both proxy forms got a 2xx from the kube-double."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reached = set()

    def after_response(self, ctx, response, case):
        if PASS != "admin":
            return
        key = _key(case.operation)
        if key in (HEADER_FORM, PATH_FORM) and 200 <= response.status_code < 300:
            with self.lock:
                self.reached.add(key)

    def after_run(self, ctx):
        if PASS != "admin":
            return
        missing = {HEADER_FORM, PATH_FORM} - self.reached
        if missing:
            raise AssertionError(
                "the proxy never reached the cluster through: "
                + ", ".join(f"{method} {path}" for method, path in sorted(missing))
            )
