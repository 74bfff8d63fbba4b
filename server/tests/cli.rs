//! The `kubeportal` binary as a newcomer runs it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_kubeportal");

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until_up(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("kubeportal did not start listening on {port}");
}

fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn with_no_configuration_it_serves_an_empty_registry_from_embedded_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Running(
        Command::new(BINARY)
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("KUBEPORTAL_CONFIG")
            .env_remove("KUBEPORTAL_SECRET_KEY")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until_up(port);
    let (status, body) = get(port, "/api/kubernetes/clusters");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"items":[]}"#);
    assert!(dir.path().join("kubeportal.db").exists());
    let key = dir.path().join("kubeportal.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert_eq!(get(port, "/healthz").0, 200);
    assert_eq!(get(port, "/readyz").0, 200);
}

#[test]
fn configuration_errors_name_the_key_and_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "server:\n  listen: 127.0.0.1:7007\ndatabase:\n  url: mysql://nope\n",
    )
    .unwrap();
    let output = Command::new(BINARY)
        .current_dir(dir.path())
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("database.url"), "{stderr}");
}

#[test]
fn postgres_without_a_secret_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BINARY)
        .current_dir(dir.path())
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env_remove("KUBEPORTAL_SECRET_KEY")
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("KUBEPORTAL_SECRET_KEY"));
}

#[test]
fn openapi_command_prints_the_checked_in_document() {
    let output = Command::new(BINARY).arg("openapi").output().unwrap();
    assert!(output.status.success());
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../openapi/openapi.json"
    ))
    .unwrap();
    assert!(
        String::from_utf8(output.stdout).unwrap() == checked_in,
        "openapi/openapi.json is stale"
    );
}

/// Runs `kubeportal clusters import ARGS` in `dir`, which holds its SQLite
/// registry, and returns whether it succeeded and what it printed (stdout,
/// then stderr). Nothing printed may hold a secret: every secret in these
/// tests contains `SECRET`, and private keys are PEM.
fn import_in(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(BINARY)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("KUBEPORTAL_CONFIG")
        .args(["clusters", "import"])
        .args(args)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap()
    );
    assert!(!printed.contains("SECRET"), "{printed}");
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    (output.status.success(), printed)
}

/// Serves the registry kept in `dir` and returns the bodies of GET `paths`.
fn served(dir: &Path, paths: &[&str]) -> Vec<String> {
    let port = free_port();
    let _server = Running(
        Command::new(BINARY)
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .env_remove("KUBEPORTAL_CONFIG")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until_up(port);
    paths.iter().map(|path| get(port, path).1).collect()
}

/// The names of the clusters registered in `dir`, sorted.
fn registered(dir: &Path) -> Vec<String> {
    let body = served(dir, &["/api/kubernetes/clusters"]).remove(0);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn kubeconfig_in(dir: &Path, text: &str) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn clusters_import_registers_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_in(
        dir.path(),
        r#"
apiVersion: v1
kind: Config
clusters:
  - { name: kind-dev, cluster: { server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true } }
  - { name: "bad name", cluster: { server: "https://127.0.0.1:6444" } }
users:
  - { name: dev, user: { token: imported-SECRET-token } }
contexts:
  - { name: kind-dev, context: { cluster: kind-dev, user: dev } }
"#,
    );
    let (success, first) = import_in(dir.path(), &["--kubeconfig", &kubeconfig]);
    assert!(success, "{first}");
    assert!(
        first.contains("kind-dev -> kind-dev: created (authProvider serviceAccount)"),
        "{first}"
    );
    // No context uses it: it keeps its cluster name, made valid, and holds
    // no credential.
    assert!(
        first.contains("bad name -> bad-name: created (authProvider client;"),
        "{first}"
    );
    let (success, second) = import_in(dir.path(), &["--kubeconfig", &kubeconfig]);
    assert!(success, "{second}");
    assert!(
        second.contains("kind-dev -> kind-dev: unchanged"),
        "{second}"
    );
    assert!(
        second.contains("bad name -> bad-name: unchanged"),
        "{second}"
    );

    let body = served(dir.path(), &["/api/kubernetes/clusters/kind-dev"]).remove(0);
    assert!(body.contains(r#""skipTLSVerify":true"#), "{body}");
    assert!(body.contains(r#""hasServiceAccountToken":true"#), "{body}");
}

/// As `aws eks update-kubeconfig` writes it (without and with `--alias`),
/// given tokens rather than `aws eks get-token`.
const EKS_KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
clusters:
- cluster:
    server: https://ABCDEF0123456789.gr7.eu-west-1.eks.amazonaws.com
  name: arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod
- cluster:
    server: https://0123456789ABCDEF.gr7.eu-west-1.eks.amazonaws.com
  name: arn:aws:eks:eu-west-1:111122223333:cluster/shop-staging
contexts:
- context:
    cluster: arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod
    user: arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod
  name: arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod
- context:
    cluster: arn:aws:eks:eu-west-1:111122223333:cluster/shop-staging
    user: portal
  name: staging
current-context: staging
users:
- name: arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod
  user:
    token: prod-SECRET-token
- name: portal
  user:
    token: staging-SECRET-token
"#;

#[test]
fn clusters_import_names_an_eks_cluster_after_its_context_and_the_name_in_its_arn() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_in(dir.path(), EKS_KUBECONFIG);
    let (success, printed) = import_in(dir.path(), &["--kubeconfig", &kubeconfig]);
    assert!(success, "{printed}");
    assert!(
        printed.contains("arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod -> shop-prod: created (authProvider serviceAccount; name made valid: the EKS cluster name"),
        "{printed}"
    );
    assert!(
        printed.contains("staging -> staging: created (authProvider serviceAccount; cluster arn:aws:eks:eu-west-1:111122223333:cluster/shop-staging)"),
        "{printed}"
    );
    assert_eq!(registered(dir.path()), ["shop-prod", "staging"]);
}

#[test]
fn clusters_import_name_from_cluster_names_clusters_after_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_in(dir.path(), EKS_KUBECONFIG);
    let (success, printed) = import_in(
        dir.path(),
        &["--kubeconfig", &kubeconfig, "--name-from", "cluster"],
    );
    assert!(success, "{printed}");
    assert!(
        printed.contains(
            "arn:aws:eks:eu-west-1:111122223333:cluster/shop-staging -> shop-staging: created (authProvider serviceAccount; credentials of context staging;"
        ),
        "{printed}"
    );
    assert_eq!(registered(dir.path()), ["shop-prod", "shop-staging"]);
}

#[test]
fn clusters_import_rename_names_a_cluster_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_in(dir.path(), EKS_KUBECONFIG);
    let (success, printed) = import_in(
        dir.path(),
        &["--kubeconfig", &kubeconfig, "--rename", "nope=x"],
    );
    assert!(!success, "{printed}");
    assert!(printed.contains("no cluster is known as nope"), "{printed}");
    let (success, printed) = import_in(
        dir.path(),
        &[
            "--kubeconfig",
            &kubeconfig,
            "--rename",
            "arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod=prod-eu",
            "--rename",
            "staging=staging-eu",
        ],
    );
    assert!(success, "{printed}");
    assert!(
        printed
            .contains("arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod -> prod-eu: created"),
        "{printed}"
    );
    assert!(
        printed.contains("staging -> staging-eu: created"),
        "{printed}"
    );
    assert_eq!(registered(dir.path()), ["prod-eu", "staging-eu"]);
    let (success, printed) = import_in(
        dir.path(),
        &["--kubeconfig", &kubeconfig, "--rename", "staging=not valid"],
    );
    assert!(!success, "{printed}");
    assert!(printed.contains("--rename"), "{printed}");
}

#[test]
fn clusters_import_reads_files_relative_to_the_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kube = dir.path().join("kube");
    std::fs::create_dir_all(kube.join("certs")).unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["kube.example".into()]).unwrap();
    let client = rcgen::generate_simple_self_signed(vec!["portal".into()]).unwrap();
    std::fs::write(kube.join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(kube.join("token"), "file-SECRET-token\n").unwrap();
    std::fs::write(kube.join("certs/client.crt"), client.cert.pem()).unwrap();
    std::fs::write(
        kube.join("certs/client.key"),
        client.key_pair.serialize_pem(),
    )
    .unwrap();
    let kubeconfig = kubeconfig_in(
        &kube,
        r#"
apiVersion: v1
kind: Config
clusters:
- name: with-token
  cluster: { server: "https://kube.example:6443", certificate-authority: ca.pem }
- name: with-cert
  cluster: { server: "https://kube.example:6444", certificate-authority: ca.pem }
users:
- name: token-user
  user: { tokenFile: token }
- name: cert-user
  user: { client-certificate: certs/client.crt, client-key: certs/client.key }
contexts:
- { name: with-token, context: { cluster: with-token, user: token-user } }
- { name: with-cert, context: { cluster: with-cert, user: cert-user } }
"#,
    );
    // Run elsewhere than the kubeconfig's directory.
    let (success, printed) = import_in(dir.path(), &["--kubeconfig", &kubeconfig]);
    assert!(success, "{printed}");
    let bodies = served(
        dir.path(),
        &[
            "/api/kubernetes/clusters/with-token",
            "/api/kubernetes/clusters/with-cert",
        ],
    );
    let token = &bodies[0];
    assert!(
        token.contains(r#""authProvider":"serviceAccount""#),
        "{token}"
    );
    assert!(
        token.contains(r#""hasServiceAccountToken":true"#),
        "{token}"
    );
    assert!(
        token.contains(r#""caData":"-----BEGIN CERTIFICATE-----"#),
        "{token}"
    );
    let cert = &bodies[1];
    assert!(cert.contains(r#""authProvider":"clientCert""#), "{cert}");
    assert!(cert.contains(r#""hasClientKeyData":true"#), "{cert}");
    assert!(
        cert.contains(r#""clientCertData":"-----BEGIN CERTIFICATE-----"#),
        "{cert}"
    );
}

#[test]
fn clusters_import_merges_the_documents_of_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_in(
        dir.path(),
        r#"
apiVersion: v1
kind: Config
clusters:
- { name: one, cluster: { server: "https://one.example:6443" } }
users:
- { name: me, user: { token: first-SECRET } }
contexts:
- { name: one, context: { cluster: one, user: me } }
---
apiVersion: v1
kind: Config
clusters:
- { name: one, cluster: { server: "https://elsewhere.example:6443" } }
- { name: two, cluster: { server: "https://two.example:6443" } }
contexts:
- { name: two, context: { cluster: two, user: me } }
"#,
    );
    let (success, printed) = import_in(dir.path(), &["--kubeconfig", &kubeconfig]);
    assert!(success, "{printed}");
    assert!(printed.contains("one -> one: created"), "{printed}");
    assert!(printed.contains("two -> two: created"), "{printed}");
    assert!(
        printed.contains("(document 2): skipped: cluster one is defined earlier"),
        "{printed}"
    );
    assert_eq!(registered(dir.path()), ["one", "two"]);
    let body = served(dir.path(), &["/api/kubernetes/clusters/one"]).remove(0);
    assert!(
        body.contains(r#""url":"https://one.example:6443""#),
        "{body}"
    );
}

#[test]
fn clusters_import_reports_exec_and_auth_provider_users_and_registers_nothing_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_in(
        dir.path(),
        r#"
apiVersion: v1
kind: Config
clusters:
- name: arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod
  cluster:
    server: https://ABCDEF0123456789.gr7.eu-west-1.eks.amazonaws.com
    certificate-authority-data: bm90IGEgY2VydGlmaWNhdGU=
- name: gke_shop-project_europe-west1_shop-prod
  cluster: { server: "https://34.1.2.3" }
- name: oidc
  cluster: { server: "https://oidc.example:6443" }
- name: kind-dev
  cluster: { server: "https://127.0.0.1:6443" }
contexts:
- name: arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod
  context:
    cluster: arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod
    user: arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod
- name: gke_shop-project_europe-west1_shop-prod
  context: { cluster: gke_shop-project_europe-west1_shop-prod, user: gke }
- { name: oidc, context: { cluster: oidc, user: oidc } }
- { name: kind-dev, context: { cluster: kind-dev, user: dev } }
users:
- name: arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: [--region, eu-west-1, eks, get-token, --cluster-name, shop-prod]
      env:
      - { name: AWS_SECRET_ACCESS_KEY, value: aws-SECRET }
- name: gke
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: gke-gcloud-auth-plugin
      provideClusterInfo: true
- name: oidc
  user:
    auth-provider:
      name: oidc
      config: { client-id: portal, client-secret: oidc-SECRET, id-token: id-SECRET }
- { name: dev, user: { token: dev-SECRET-token } }
"#,
    );
    let (success, printed) = import_in(dir.path(), &["--kubeconfig", &kubeconfig]);
    assert!(!success, "{printed}");
    assert!(
        printed.contains("arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod -> shop-prod: not imported: user arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod gets its credential from the exec plugin aws"),
        "{printed}"
    );
    assert!(
        printed.contains("gke_shop-project_europe-west1_shop-prod -> gke_shop-project_europe-west1_shop-prod: not imported: user gke gets its credential from the exec plugin gke-gcloud-auth-plugin"),
        "{printed}"
    );
    assert!(
        printed.contains(
            "oidc -> oidc: not imported: user oidc gets its credential from auth-provider oidc"
        ),
        "{printed}"
    );
    assert!(
        printed.contains("kind-dev -> kind-dev: created"),
        "{printed}"
    );
    assert!(
        printed.contains("3 of 4 cluster(s) not imported"),
        "{printed}"
    );
    assert_eq!(registered(dir.path()), ["kind-dev"]);
}

#[test]
fn clusters_import_reports_names_that_collide_after_they_are_made_valid() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_in(
        dir.path(),
        r#"
apiVersion: v1
kind: Config
clusters:
- { name: "shop prod", cluster: { server: "https://a.example:6443" } }
- { name: "Shop/Prod", cluster: { server: "https://b.example:6443" } }
users:
- { name: me, user: { token: SECRET-token } }
contexts:
- { name: "shop prod", context: { cluster: "shop prod", user: me } }
- { name: "Shop/Prod", context: { cluster: "Shop/Prod", user: me } }
"#,
    );
    let (success, printed) = import_in(dir.path(), &["--kubeconfig", &kubeconfig]);
    assert!(!success, "{printed}");
    assert!(
        printed.contains(
            "shop prod -> shop-prod: not imported: Shop/Prod would also be named shop-prod"
        ),
        "{printed}"
    );
    assert!(
        printed.contains(
            "Shop/Prod -> Shop-Prod: not imported: shop prod would also be named Shop-Prod"
        ),
        "{printed}"
    );
    assert!(registered(dir.path()).is_empty());

    let (success, printed) = import_in(
        dir.path(),
        &[
            "--kubeconfig",
            &kubeconfig,
            "--rename",
            "Shop/Prod=shop-prod-b",
        ],
    );
    assert!(success, "{printed}");
    assert_eq!(registered(dir.path()), ["shop-prod", "shop-prod-b"]);
}

#[test]
fn clusters_import_survives_what_is_not_a_kubeconfig_and_never_prints_its_values() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    // A value serde would quote in backticks: never echoed.
    let numeric = kubeconfig_in(
        dir.path(),
        "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user: { username: admin, password: 987654321 }\n",
    );
    let (success, printed) = import_in(dir.path(), &["--kubeconfig", &numeric]);
    assert!(!success, "{printed}");
    assert!(!printed.contains("987654321"), "{printed}");
    assert!(printed.contains("is not a kubeconfig"), "{printed}");

    // UTF-16 cut mid-character: an error, not a panic.
    for bytes in [&b"\xff\xfeA"[..], &b"\xfe\xff\x00"[..]] {
        let path = dir.path().join("utf16");
        std::fs::write(&path, bytes).unwrap();
        let output = Command::new(BINARY)
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("KUBEPORTAL_CONFIG")
            .args(["clusters", "import", "--kubeconfig"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
    }

    // YAML that is no kubeconfig (a kubeportal configuration) exits 1.
    let config = kubeconfig_in(dir.path(), "server:\n  listen: 127.0.0.1:7007\n");
    let (success, printed) = import_in(dir.path(), &["--kubeconfig", &config]);
    assert!(!success, "{printed}");
    assert!(printed.contains("defines no cluster"), "{printed}");

    // A certificate authority and insecure-skip-tls-verify together: kubectl
    // refuses the pair, and so does the import.
    let ca = rcgen::generate_simple_self_signed(vec!["kube.example".into()]).unwrap();
    let both = kubeconfig_in(
        dir.path(),
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: both\n  cluster:\n    server: https://kube.example:6443\n    insecure-skip-tls-verify: true\n    certificate-authority-data: {}\n",
            base64::engine::general_purpose::STANDARD.encode(ca.cert.pem())
        ),
    );
    let (success, printed) = import_in(dir.path(), &["--kubeconfig", &both]);
    assert!(!success, "{printed}");
    assert!(printed.contains("insecure-skip-tls-verify"), "{printed}");
    assert!(registered(dir.path()).is_empty());
}
