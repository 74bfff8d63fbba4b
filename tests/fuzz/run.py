#!/usr/bin/env python3
"""API fuzzing of a live kubeportal with schemathesis (`make test-fuzz`).

For each store (SQLite in a temporary directory, and a throwaway Postgres
database on TEST_DATABASE_URL), this starts kubeportal on a free loopback port
with guest access off, a static admin token whose subject the policy allows
everything, a cluster registered on a kube-double (the Kubernetes API test
double) and a catalog stub, then runs schemathesis against the server's own
`/openapi.json` twice:

1. `admin`: with the admin token, every response must be documented (status
   code, content type, body schema) and no response may be a 5xx (but the
   proxy's 502/504 for an unreachable cluster the run registered itself, see
   hooks.py); then a few
   probes schemathesis cannot generate (PROBES) must get their answers.
2. `anonymous`: without a token, every protected operation must answer 401
   (and the public ones must not); see hooks.py.

kubeportal must also log no fault meanwhile (an ERROR, or an audit record it
could not write), since some faults never show in a response.

schemathesis is installed, at the versions pinned in requirements.txt, into a
virtual environment under the Cargo target directory. The binaries must be
built (`cargo build -p kubeportal-server -p kube-double`); they are taken from
KUBEPORTAL_TEST_BIN_DIR, else the target directory's `debug`. Every process
started here is stopped on exit, and the Postgres database dropped.

Options: --stores sqlite,postgres  --max-examples N  --seed N  --workers N
--extra-checks a,b (more schemathesis checks for the admin pass)  --keep (keep
the temporary directory with logs and reports).
Only the standard library is used here.
"""

import argparse
import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
VENV = TARGET / "fuzz" / "venv"
REQUIREMENTS = HERE / "requirements.txt"

CLUSTER = "fuzz"
ENTITY_REF = "component:default/shop-api"
ADMIN_SUBJECT = "user:default/fuzz-admin"
# Operations of the document that need no token; everything else must be 401
# without one. Changing this set is changing the design's public surface.
PUBLIC_OPERATIONS = {"GET /healthz", "GET /readyz"}
# Public routes outside the document.
PUBLIC_UNDOCUMENTED = ["/openapi.json", "/docs/", "/metrics"]
# Not positive_data_acceptance: the document cannot say everything the
# server checks (opaque cursors, PEM data, oidcTokenProvider being required
# for authProvider oidc), so some schema-valid requests are rightly refused.
# Not negative_data_rejection: the hooks put real values into generated
# requests, which makes some requests meant to be invalid valid.
ADMIN_CHECKS = [
    "no_server_fault",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "missing_required_header",
    "unsupported_method",
    "use_after_free",
    "ensure_resource_availability",
    "proxy_reached_the_cluster",
]
ANONYMOUS_CHECKS = [
    "no_server_fault",
    "anonymous_gets_only_401",
    "every_protected_operation_refused",
]


def log(message):
    print(f"fuzz: {message}", flush=True)


class Processes:
    """The processes this run started; stopped in reverse order on exit."""

    def __init__(self):
        self.running = []

    def start(self, name, command, log_path, **options):
        log_file = open(log_path, "wb")
        process = subprocess.Popen(
            command, stdout=options.pop("stdout", log_file), stderr=log_file, **options
        )
        self.running.append((name, process, log_file))
        return process

    def stop(self, process):
        for index, (name, candidate, log_file) in enumerate(self.running):
            if candidate is process:
                del self.running[index]
                _terminate(process)
                log_file.close()
                return

    def stop_all(self):
        while self.running:
            _, process, log_file = self.running.pop()
            _terminate(process)
            log_file.close()


def _terminate(process):
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def ensure_schemathesis():
    """The pinned schemathesis, in a venv rebuilt when requirements.txt changes."""
    stamp = VENV / "requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    executable = VENV / "bin" / "schemathesis"
    if executable.exists() and stamp.exists() and stamp.read_text() == wanted:
        return executable
    log(f"installing schemathesis into {VENV}")
    python = str(VENV / "bin" / "python")
    install = ["install", "--quiet", "--disable-pip-version-check", "--requirement"]
    created = subprocess.run(
        [sys.executable, "-m", "venv", "--clear", str(VENV)], stderr=subprocess.DEVNULL
    )
    if created.returncode == 0:
        pip = [python, "-m", "pip"]
    else:
        # Without ensurepip (Debian's python3 without python3-venv): an empty
        # venv, filled by this interpreter's pip.
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", "--without-pip", str(VENV)], check=True
        )
        pip = [sys.executable, "-m", "pip", "--python", python]
    subprocess.run(pip + install + [str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return executable


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(url, headers=None, timeout=5):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def start_kube_double(processes, bin_dir, work):
    ca = work / "kube-double-ca.pem"
    double = processes.start(
        "kube-double",
        [
            str(bin_dir / "kube-double"),
            "--listen",
            "127.0.0.1:0",
            "--ca-out",
            str(ca),
            "--seed-demo",
        ],
        work / "kube-double.log",
        stdout=subprocess.PIPE,
    )
    # It prints its URL once it is serving.
    line = []
    reader = threading.Thread(target=lambda: line.append(double.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=30)
    if not line or not line[0].strip():
        raise SystemExit("fuzz: kube-double did not start (see kube-double.log)")
    return line[0].decode().strip(), ca.read_text()


class CatalogStub(http.server.BaseHTTPRequestHandler):
    """A Backstage catalog that knows one entity, for the entityRef queries."""

    entity = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {
            "name": "shop-api",
            "namespace": "default",
            "annotations": {"backstage.io/kubernetes-id": "shop-api"},
        },
    }

    def do_GET(self):
        if self.path == "/api/catalog/entities/by-name/component/default/shop-api":
            status, body = 200, self.entity
        else:
            status, body = 404, {"error": {"name": "NotFoundError", "message": "no such entity"}}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *arguments):
        pass


def start_catalog():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CatalogStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class PostgresDatabase:
    """A database of its own on TEST_DATABASE_URL, dropped afterwards."""

    def __init__(self, server_url):
        self.server_url = server_url
        self.name = f"kubeportal_fuzz_{secrets.token_hex(6)}"
        parsed = urllib.parse.urlsplit(server_url)
        self.url = urllib.parse.urlunsplit(parsed._replace(path=f"/{self.name}"))

    def psql(self, statement):
        subprocess.run(
            ["psql", self.server_url, "-v", "ON_ERROR_STOP=1", "-qc", statement],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def __enter__(self):
        self.psql(f"CREATE DATABASE {self.name}")
        return self

    def __exit__(self, *exception):
        self.psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def kubeportal_config(port, database_url, token, double_url, ca_pem, catalog_url, work):
    # JSON is YAML: the configuration is written with the standard library.
    return {
        "server": {"listen": f"127.0.0.1:{port}", "bodyLimitBytes": BODY_LIMIT},
        "database": {"url": database_url},
        "auth": {
            "guest": False,
            "staticTokens": [
                {
                    "token": token,
                    "subject": ADMIN_SUBJECT,
                    "groups": ["group:default/fuzz-admins"],
                }
            ],
        },
        "permissions": {
            "rules": [{"permission": "*", "subjects": [ADMIN_SUBJECT], "decision": "allow"}]
        },
        "catalog": {"baseUrl": catalog_url},
        "kubernetes": {
            "clusters": [
                {
                    "name": CLUSTER,
                    "url": double_url,
                    "authProvider": "serviceAccount",
                    "serviceAccountToken": "double-token",
                    "caData": ca_pem,
                }
            ],
            "timeouts": {"connectMs": 2000, "responseHeaderMs": 5000},
            "objects": {"clusterTimeoutMs": 5000},
        },
        "logging": {"format": "json", "level": "info"},
    }


class PortTaken(Exception):
    """The free port found was taken before kubeportal bound it."""


def start_kubeportal(processes, bin_dir, work, store, config, secret_key, token):
    config_path = work / f"kubeportal-{store}.yaml"
    config_path.write_text(json.dumps(config, indent=2))
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KUBEPORTAL_") and key not in ("DATABASE_URL", "RUST_LOG")
    }
    environment["KUBEPORTAL_SECRET_KEY"] = secret_key
    process = processes.start(
        f"kubeportal ({store})",
        [str(bin_dir / "kubeportal"), "serve", "--config", str(config_path)],
        work / f"kubeportal-{store}.log",
        env=environment,
    )
    base = f"http://{config['server']['listen']}"
    deadline = time.monotonic() + 60
    authorization = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log_tail = (work / f"kubeportal-{store}.log").read_text(errors="replace")[-2000:]
            if "cannot listen on" in log_tail:
                raise PortTaken()
            raise SystemExit(
                f"fuzz: kubeportal ({store}) exited with {process.returncode}:\n{log_tail}"
            )
        try:
            # Ready, and ours: another process on the port would not know the token.
            if (
                http_get(f"{base}/readyz", timeout=2)[0] == 200
                and http_get(f"{base}/api/kubernetes/clusters", authorization)[0] == 200
            ):
                return process, base
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"fuzz: kubeportal ({store}) was not ready within 60 s")


def check_public_surface(base):
    """The document's public operations are the design's, and the public
    routes outside it answer without a token."""
    status, body = http_get(f"{base}/openapi.json")
    if status != 200:
        raise SystemExit(f"fuzz: /openapi.json answered {status}")
    document = json.loads(body)
    public = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security", document.get("security", []))
            if not any(requirement for requirement in security):
                public.add(f"{method.upper()} {path}")
    if public != PUBLIC_OPERATIONS:
        raise SystemExit(
            f"fuzz: the document's operations without security are {sorted(public)}, "
            f"expected {sorted(PUBLIC_OPERATIONS)}"
        )
    for path in PUBLIC_UNDOCUMENTED:
        status, _ = http_get(f"{base}{path}")
        if status != 200:
            raise SystemExit(f"fuzz: public route {path} answered {status} without a token")


# Requests schemathesis does not make (a name that is not UTF-8, NUL, a
# forged cursor, the wrong content type, a body over the limit), with the
# answer each must get; every answer must also be one the document lists for
# its operation, in the error shape of its route family.
BODY_LIMIT = 65536
PROBES = [
    ("GET", "/api/kubernetes/clusters/%FF", {}, None, 400),
    ("GET", "/api/kubernetes/clusters/a%00b", {}, None, 404),
    ("GET", "/api/kubernetes/clusters/a%00b/kubeconfig", {}, None, 404),
    (
        "PUT",
        "/api/kubernetes/clusters/a%00b",
        {"If-Match": '"1"'},
        {"url": "https://x.example", "authProvider": "client"},
        404,
    ),
    ("DELETE", "/api/kubernetes/clusters/a%00b", {}, None, 404),
    ("POST", "/api/kubernetes/clusters/a%00b/tickets", {}, {"path": "/api"}, 404),
    ("GET", "/api/kubernetes/clusters/a%00b/proxy/api", {}, None, 404),
    ("GET", "/api/kubernetes/clusters?cursor=ZGV2AA", {}, None, 400),
    ("GET", "/api/kubernetes/audit?cluster=a%00b&subject=%00&method=%00", {}, None, 200),
    ("GET", "/api/kubernetes/recordings/%FF", {}, None, 400),
    (
        "POST",
        "/api/kubernetes/clusters",
        {},
        {"name": "a\u0000b", "url": "https://x.example", "authProvider": "client"},
        400,
    ),
    ("POST", "/api/kubernetes/permissions/explain", {"Content-Type": "text/plain"}, "{}", 400),
    (
        "POST",
        "/api/kubernetes/permissions/explain",
        {},
        {"subject": "user:default/" + "a" * BODY_LIMIT, "permission": "kubernetes.proxy"},
        413,
    ),
]


def documented_statuses(document, method, path):
    """The statuses the document lists for the operation a request path hits."""
    for template, operations in document["paths"].items():
        pattern = "".join(
            ".+" if part == "{path}" else "[^/]+" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[^}]+\})", template)
        )
        if re.fullmatch(pattern, path) and method.lower() in operations:
            return set(operations[method.lower()]["responses"])
    return None


def run_probes(base, token):
    _, body = http_get(f"{base}/openapi.json")
    document = json.loads(body)
    failures = []
    for method, target, headers, payload, expected in PROBES:
        headers = {"Authorization": f"Bearer {token}", **headers}
        data = None
        if payload is not None:
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(base + target, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, answer = error.code, error.read()
        path = target.split("?")[0]
        label = f"{method} {target[:80]}"
        documented = documented_statuses(document, method, path) or set()
        if status != expected:
            failures.append(f"{label}: {status}, expected {expected}: {answer[:200]!r}")
        elif str(status) not in documented and "default" not in documented:
            failures.append(f"{label}: {status} is not documented ({sorted(documented)})")
        elif status >= 400:
            shape = json.loads(answer)
            if "/proxy/" in path:
                ok = shape.get("kind") == "Status" and shape.get("code") == status
            else:
                ok = shape.get("response", {}).get("statusCode") == status and "name" in shape.get(
                    "error", {}
                )
            if not ok:
                failures.append(f"{label}: not in the error shape: {answer[:200]!r}")
    for failure in failures:
        log(f"probe failed: {failure}")
    log(f"probes: {len(PROBES) - len(failures)} of {len(PROBES)} answered as documented")
    return not failures


def faults_logged(log_path):
    """kubeportal's ERROR lines, and its audit trail's warnings (a record
    that cannot be written): faults even when no response showed them."""
    faults = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") == "ERROR" or (
            entry.get("level") == "WARN" and entry.get("target") == "kubeportal::audit"
        ):
            faults.append(line[:400])
    return faults


def run_schemathesis(schemathesis, base, name, checks, headers, arguments, reports):
    command = [
        str(schemathesis),
        "run",
        f"{base}/openapi.json",
        "--checks",
        ",".join(checks),
        "--max-examples",
        str(arguments.max_examples),
        "--seed",
        str(arguments.seed),
        "--generation-database",
        "none",
        "--workers",
        str(arguments.workers),
        "--request-timeout",
        "15",
        # No generated Authorization: the admin pass sends the token given
        # below, the anonymous pass none at all.
        "--generation-with-security-parameters",
        "false",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(reports / f"{name}.xml"),
    ]
    for header in headers:
        command += ["--header", header]
    environment = dict(os.environ)
    environment.update(
        SCHEMATHESIS_HOOKS=str(HERE / "hooks.py"),
        FUZZ_PASS=name.split("-")[0],
        FUZZ_CLUSTER=CLUSTER,
        FUZZ_ENTITY_REF=ENTITY_REF,
    )
    log(f"pass {name}: schemathesis run --checks {','.join(checks)}")
    started = time.monotonic()
    outcome = subprocess.run(command, env=environment, cwd=reports)
    log(f"pass {name}: exit {outcome.returncode} after {time.monotonic() - started:.0f} s")
    return outcome.returncode == 0


def fuzz_store(store, processes, schemathesis, bin_dir, work, arguments, double, catalog_url):
    token = secrets.token_urlsafe(32)
    secret_key = base64.b64encode(secrets.token_bytes(32)).decode()
    reports = work / "reports"
    reports.mkdir(exist_ok=True)

    def run(database_url):
        for _ in range(3):
            config = kubeportal_config(
                free_port(), database_url, token, double[0], double[1], catalog_url, work
            )
            try:
                process, base = start_kubeportal(
                    processes, bin_dir, work, store, config, secret_key, token
                )
                break
            except PortTaken:
                continue
        else:
            raise SystemExit(f"fuzz: kubeportal ({store}) found no free port")
        try:
            check_public_surface(base)
            passed = run_schemathesis(
                schemathesis,
                base,
                f"admin-{store}",
                ADMIN_CHECKS + arguments.extra_checks,
                [f"Authorization: Bearer {token}"],
                arguments,
                reports,
            )
            passed &= run_probes(base, token)
            passed &= run_schemathesis(
                schemathesis, base, f"anonymous-{store}", ANONYMOUS_CHECKS, [], arguments, reports
            )
            # Audit records are written in batches off the request path.
            time.sleep(1)
        finally:
            processes.stop(process)
        faults = faults_logged(work / f"kubeportal-{store}.log")
        for fault in faults:
            log(f"kubeportal ({store}) logged a fault: {fault}")
        return passed and not faults

    if store == "sqlite":
        return run(f"sqlite://{work / 'kubeportal.db'}")
    server_url = os.environ.get(
        "TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"
    )
    with PostgresDatabase(server_url) as database:
        return run(database.url)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default=os.environ.get("FUZZ_STORES", "sqlite,postgres"))
    parser.add_argument(
        "--max-examples", type=int, default=int(os.environ.get("FUZZ_MAX_EXAMPLES", "100"))
    )
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "20260101")))
    # One worker by default: Hypothesis parses sources while generating, and
    # on Python 3.11 up to 3.11.7, ast.parse in concurrent threads can fail
    # with "AST constructor recursion depth mismatch" (CPython gh-106905).
    parser.add_argument("--workers", type=int, default=int(os.environ.get("FUZZ_WORKERS", "1")))
    parser.add_argument(
        "--extra-checks",
        type=lambda text: [check for check in text.split(",") if check],
        default=os.environ.get("FUZZ_EXTRA_CHECKS", ""),
        help="more schemathesis checks for the admin pass, comma-separated",
    )
    parser.add_argument("--keep", action="store_true", help="keep logs and reports")
    arguments = parser.parse_args()
    stores = [store.strip() for store in arguments.stores.split(",") if store.strip()]
    unknown = set(stores) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown stores: {', '.join(sorted(unknown))}")
    bin_dir = Path(os.environ.get("KUBEPORTAL_TEST_BIN_DIR") or TARGET / "debug")
    for binary in ("kubeportal", "kube-double"):
        if not (bin_dir / binary).exists():
            parser.error(
                f"{bin_dir / binary} is missing: cargo build -p kubeportal-server -p kube-double"
            )

    # SIGTERM and SIGHUP unwind like Ctrl-C, so the cleanup below runs.
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    schemathesis = ensure_schemathesis()
    work = Path(tempfile.mkdtemp(prefix="kubeportal-fuzz-"))
    processes = Processes()
    catalog = None
    passed = False
    started = time.monotonic()
    try:
        double = start_kube_double(processes, bin_dir, work)
        catalog, catalog_url = start_catalog()
        passed = True
        for store in stores:
            passed &= fuzz_store(
                store, processes, schemathesis, bin_dir, work, arguments, double, catalog_url
            )
    finally:
        processes.stop_all()
        if catalog is not None:
            catalog.shutdown()
        if passed and not arguments.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs and reports kept in {work}")
    log(f"{'passed' if passed else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as interruption:
        log(f"interrupted ({interruption})")
        sys.exit(130)
