//! kubectl, configured by kubeportal's kubeconfig endpoint, works through the
//! path form against the test double: get, apply, watch, logs -f, exec, delete.

use std::process::Stdio;
use std::time::Duration;

use kubeportal_tests::{
    double_cluster, register, server_tls_files, spawn_with_config, start_double, TestDb,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const PORTAL_TOKEN: &str = "kubectl-user-portal-token-0123";

const CONFIG: &str = r#"
auth:
  guest: false
  staticTokens:
    - { token: kubectl-user-portal-token-0123, subject: "user:default/sre", groups: ["group:default/sre"] }
permissions:
  rules:
    - { permission: kubernetes.proxy, subjects: ["*"], actions: [delete], resources: [namespaces], decision: deny }
    - { permission: "*", subjects: ["group:default/sre"], decision: allow }
"#;

pub(crate) struct Kubectl {
    pub(crate) kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=20s")
            .args(args)
            .kill_on_drop(true)
            .stdin(Stdio::null());
        command
    }

    pub(crate) async fn run(&self, args: &[&str]) -> String {
        let output = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {stdout}\n{stderr}"
        );
        stdout
    }

    /// Spawns a long-running kubectl and returns its stdout lines.
    pub(crate) fn stream(
        &self,
        args: &[&str],
    ) -> (
        tokio::process::Child,
        tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    ) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        (child, lines)
    }
}

pub(crate) async fn wait_for_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    needle: &str,
) {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return;
            }
        }
        panic!("stream ended before {needle:?}");
    })
    .await;
    assert!(found.is_ok(), "{needle:?} did not arrive");
}

#[tokio::test]
async fn kubectl_works_through_the_path_form() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let mut config =
        kubeportal_tests::config_for(&db, kubeportal_tests::ConfigSource::Yaml(CONFIG));
    config.server.tls = Some(server_tls_files(dir.path()));
    let app = spawn_with_config(config).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    double.put_object(
        "v1",
        "pods",
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "api-0", "namespace": "default", "labels": {"app": "api"}},
            "spec": {"containers": [{"name": "app", "image": "registry.example/api:1"}]},
            "status": {"phase": "Running"}
        }),
    );

    // The kubeconfig endpoint, then the user's own portal token.
    let kubeconfig_text = app
        .client
        .get(app.url("/api/kubernetes/clusters/dev/kubeconfig"))
        .bearer_auth(PORTAL_TOKEN)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        kubeconfig_text.contains("/api/kubernetes/clusters/dev/proxy"),
        "{kubeconfig_text}"
    );
    assert!(
        kubeconfig_text.contains("certificate-authority-data"),
        "{kubeconfig_text}"
    );
    assert!(
        !kubeconfig_text.contains("double-token"),
        "cluster credentials never leave kubeportal"
    );
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, &kubeconfig_text).unwrap();
    let kubectl = Kubectl { kubeconfig };
    kubectl
        .run(&[
            "config",
            "set-credentials",
            "kubeportal",
            &format!("--token={PORTAL_TOKEN}"),
        ])
        .await;

    let namespaces = kubectl.run(&["get", "ns"]).await;
    assert!(
        namespaces.contains("default") && namespaces.contains("kube-system"),
        "{namespaces}"
    );

    let manifest = dir.path().join("cm.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  colour: blue\n").unwrap();
    let applied = kubectl
        .run(&["apply", "-f", manifest.to_str().unwrap()])
        .await;
    assert!(applied.contains("configmap/settings"), "{applied}");
    std::fs::write(&manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  colour: green\n").unwrap();
    let reapplied = kubectl
        .run(&["apply", "-f", manifest.to_str().unwrap()])
        .await;
    assert!(reapplied.contains("configured"), "{reapplied}");
    let colour = kubectl
        .run(&[
            "get",
            "cm",
            "settings",
            "-n",
            "default",
            "-o",
            "jsonpath={.data.colour}",
        ])
        .await;
    assert_eq!(colour, "green");

    // get -w receives a change made after it started.
    let (mut watcher, mut watch_lines) = kubectl.stream(&["get", "cm", "-n", "default", "-w"]);
    wait_for_line(&mut watch_lines, "settings").await;
    double.put_object("v1", "configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "made-later", "namespace": "default"}}));
    wait_for_line(&mut watch_lines, "made-later").await;
    watcher.kill().await.unwrap();

    // logs -f receives lines while the stream is still open.
    double.append_log("default", "api-0", "line before following");
    let (mut follower, mut log_lines) = kubectl.stream(&["logs", "-f", "api-0", "-n", "default"]);
    wait_for_line(&mut log_lines, "line before following").await;
    double.append_log("default", "api-0", "line while following");
    wait_for_line(&mut log_lines, "line while following").await;
    assert!(
        follower.try_wait().unwrap().is_none(),
        "the log stream is still open"
    );
    follower.kill().await.unwrap();

    // exec over WebSocket.
    let hi = kubectl
        .run(&["exec", "api-0", "-n", "default", "--", "echo", "hi"])
        .await;
    assert_eq!(hi.trim(), "hi");
    let exec_request = double
        .requests()
        .into_iter()
        .find(|request| request.path.ends_with("/exec"))
        .expect("exec reached the cluster");
    assert!(exec_request
        .headers
        .iter()
        .any(|(name, value)| name == "upgrade" && value.eq_ignore_ascii_case("websocket")));

    let deleted = kubectl
        .run(&["delete", "cm", "settings", "-n", "default"])
        .await;
    assert!(deleted.contains("deleted"), "{deleted}");
    let remaining = kubectl
        .run(&["get", "cm", "-n", "default", "-o", "name"])
        .await;
    assert!(!remaining.contains("configmap/settings"), "{remaining}");

    // A policy denial reaches kubectl as a readable Status.
    let output = kubectl
        .command(&["delete", "ns", "kube-system"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Forbidden") || stderr.contains("Unauthorized"),
        "{stderr}"
    );
    let namespaces = kubectl.run(&["get", "ns"]).await;
    assert!(namespaces.contains("kube-system"));

    // Every request the cluster saw carried kubeportal's credential, never the portal token.
    for request in double.requests() {
        assert!(request
            .headers
            .iter()
            .all(|(_, value)| !value.contains(PORTAL_TOKEN)));
    }
}

const SCOPED_CONFIG: &str = r#"
auth:
  guest: false
  staticTokens:
    - { token: kubectl-watcher-token-0123456, subject: "user:default/walt", groups: ["group:default/api-0-watcher"] }
    - { token: kubectl-ops-token-01234567890, subject: "user:default/olga", groups: ["group:default/ops"] }
permissions:
  rules:
    - { permission: kubernetes.clusters.read, subjects: ["*"], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["*"], methods: [GET], paths: ["/api", "/api/v1", "/apis", "/apis/*", "/apis/*/*", "/version"], decision: allow, description: discovery }
    - { permission: kubernetes.proxy, subjects: ["group:default/api-0-watcher"], resources: [pods], names: [api-0], verbs: [get, list, watch], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["group:default/ops"], decision: allow }
"#;

/// kubectl's own requests, judged as the API server reads them: a watch of
/// one pod is a watch of that name; exec by a read rule and `--as` without a
/// grant are refused with a Status kubectl prints.
#[tokio::test]
async fn kubectl_requests_are_judged_as_the_api_server_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let mut config =
        kubeportal_tests::config_for(&db, kubeportal_tests::ConfigSource::Yaml(SCOPED_CONFIG));
    config.server.tls = Some(server_tls_files(dir.path()));
    let app = spawn_with_config(config).await;
    let double = start_double().await;
    register(&app, double_cluster("prod-eu", &double)).await;
    put_api_pod(&double);
    let kubectl = kubectl_for(&app, "prod-eu", "kubectl-ops-token-01234567890", dir.path()).await;
    let as_watcher = "--token=kubectl-watcher-token-0123456";
    let as_ops = "--token=kubectl-ops-token-01234567890";

    // `get pod api-0 -w` lists and watches with fieldSelector=metadata.name=api-0.
    let (mut watcher, mut lines) =
        kubectl.stream(&[as_watcher, "get", "pod", "api-0", "-n", "default", "-w"]);
    wait_for_line(&mut lines, "api-0").await;
    let mut watched = false;
    for _ in 0..100 {
        watched = double.requests().into_iter().any(|request| {
            request.query.as_deref().is_some_and(|query| {
                query.contains("watch=true") && query.contains("metadata.name%3Dapi-0")
            })
        });
        if watched {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        watcher.try_wait().unwrap().is_none(),
        "the single-object watch is allowed and stays open"
    );
    watcher.kill().await.unwrap();
    assert!(watched, "kubectl's watch reached the cluster");

    let refused = |args: &'static [&'static str]| {
        let mut command = kubectl.command(args);
        async move {
            let output = command.output().await.unwrap();
            assert!(!output.status.success(), "kubectl {args:?} must fail");
            String::from_utf8_lossy(&output.stderr).into_owned()
        }
    };
    // The other pods are outside the watcher's view: the list shows api-0
    // alone.
    double.put_object(
        "v1",
        "pods",
        json!({"metadata": {"name": "api-1", "namespace": "default"}, "spec": {"containers": [{"name": "app", "image": "x"}]}}),
    );
    let all_pods = kubectl
        .run(&[as_watcher, "get", "pods", "-n", "default"])
        .await;
    assert!(
        all_pods.contains("api-0") && !all_pods.contains("api-1"),
        "{all_pods}"
    );
    double.clear_requests();
    let exec = refused(&[
        "--token=kubectl-watcher-token-0123456",
        "exec",
        "api-0",
        "-n",
        "default",
        "--",
        "id",
    ])
    .await;
    assert!(
        exec.contains("Forbidden") || exec.contains("forbidden") || exec.contains("Unauthorized"),
        "{exec}"
    );
    let impersonating = refused(&[
        "--token=kubectl-ops-token-01234567890",
        "--as=auditor",
        "--as-group=viewers",
        "delete",
        "configmap",
        "x",
        "-n",
        "default",
    ])
    .await;
    assert!(
        impersonating.contains("impersonation through the portal is not allowed"),
        "{impersonating}"
    );
    for request in double.requests() {
        let refused = request.path.ends_with("/exec")
            || request.method == reqwest::Method::DELETE
            || request.header("impersonate-user").is_some();
        assert!(
            !refused,
            "a refused request reached the cluster: {} {}",
            request.method, request.path
        );
    }

    let pods = kubectl.run(&[as_ops, "get", "pods", "-n", "default"]).await;
    assert!(pods.contains("api-0"), "{pods}");
}

const VIEWER_CONFIG: &str = r#"
auth:
  guest: false
  staticTokens:
    - { token: kubectl-viewer-token-01234567, subject: "user:default/vera", groups: ["group:default/viewers"] }
    - { token: kubectl-proxy-only-token-0123, subject: "user:default/pat" }
    - { token: kubectl-reader-only-token-012, subject: "user:default/reed" }
permissions:
  rules:
    - { permission: kubernetes.clusters.read, subjects: ["group:default/viewers", "user:default/reed"], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["user:default/pat"], actions: [read], decision: allow }
    - { permission: kubernetes.proxy, subjects: ["group:default/viewers"], paths: ["/api/v1/namespaces/*/pods/*/log"], decision: deny, description: no logs }
    - { permission: kubernetes.proxy, subjects: ["group:default/viewers"], namespaces: [kube-system], decision: deny, description: not the system }
    - { permission: kubernetes.proxy, subjects: ["group:default/viewers"], actions: [read], decision: allow, description: viewers read everything }
    - { permission: kubernetes.proxy, subjects: ["group:default/viewers"], resources: [configmaps], verbs: [create], decision: allow, description: viewers may create config maps }
"#;

/// kubectl as people use it through the path form: `auth whoami` names the
/// portal identity, `auth can-i` is a read whose answer is the policy's
/// decision and the cluster's, denials read as the API server's own, and an
/// unreachable cluster is `ServiceUnavailable`, not "unknown".
#[tokio::test]
async fn kubectl_reads_the_portal_as_it_reads_an_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let mut config =
        kubeportal_tests::config_for(&db, kubeportal_tests::ConfigSource::Yaml(VIEWER_CONFIG));
    config.server.tls = Some(server_tls_files(dir.path()));
    let app = spawn_with_config(config).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;
    // The cluster's own RBAC refuses what the policy would allow.
    double.deny("create", "", "configmaps");
    put_api_pod(&double);
    let kubectl = kubectl_for(&app, "dev", "kubectl-viewer-token-01234567", dir.path()).await;
    let token = "--token=kubectl-viewer-token-01234567";
    let outcome = |args: Vec<String>| {
        let mut command = kubectl.command(&[]);
        command.args(&args);
        async move {
            let output = command.output().await.unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let args = |list: &[&str]| -> Vec<String> {
        std::iter::once(token)
            .chain(list.iter().copied())
            .map(str::to_owned)
            .collect()
    };

    let whoami = kubectl.run(&[token, "auth", "whoami", "-o", "json"]).await;
    let whoami: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(whoami["kind"], "SelfSubjectReview");
    assert_eq!(
        whoami["status"]["userInfo"]["username"],
        "user:default/vera"
    );
    assert_eq!(
        whoami["status"]["userInfo"]["groups"],
        json!(["group:default/viewers"])
    );

    // A review is a read: a caller allowed only reads may ask it.
    let (allowed, stdout, stderr) = outcome(args(&["auth", "can-i", "get", "pods"])).await;
    assert!(allowed, "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "yes");
    // The policy says no: the cluster is not asked.
    double.clear_requests();
    let (allowed, stdout, stderr) =
        outcome(args(&["auth", "can-i", "delete", "pods", "-n", "default"])).await;
    assert!(!allowed, "{stdout}{stderr}");
    assert!(
        stdout
            .trim()
            .starts_with("no - kubeportal's policy denies it"),
        "{stdout}{stderr}"
    );
    assert!(
        !double
            .requests()
            .iter()
            .any(|request| request.path.contains("selfsubjectaccessreviews")),
        "a review the policy answers never reaches the cluster"
    );
    // The policy allows, the cluster does not: no.
    let (allowed, stdout, stderr) = outcome(args(&[
        "auth",
        "can-i",
        "create",
        "configmaps",
        "-n",
        "default",
    ]))
    .await;
    assert!(
        !allowed && stdout.trim().starts_with("no") && !stdout.contains("kubeportal"),
        "{stdout}{stderr}"
    );
    // Both allow: yes.
    let (allowed, stdout, _) = outcome(args(&[
        "auth",
        "can-i",
        "list",
        "configmaps",
        "-n",
        "default",
    ]))
    .await;
    assert!(allowed && stdout.trim() == "yes", "{stdout}");

    // What the policy cannot judge exactly is answered no: a subresource
    // denied by path, a verb in capitals, verbs that are not requests.
    for asked in [
        &[
            "auth",
            "can-i",
            "get",
            "pods",
            "--subresource=log",
            "-n",
            "default",
        ][..],
        &["auth", "can-i", "DELETE", "pods", "-n", "default"],
        &["auth", "can-i", "impersonate", "users"],
        &["auth", "can-i", "escalate", "roles"],
        // A resource path asked as a plain path is not judged by path rules.
        &[
            "auth",
            "can-i",
            "post",
            "/api/v1/namespaces/default/pods/api-0/exec",
        ],
    ] {
        let (allowed, stdout, stderr) = outcome(args(asked)).await;
        assert!(
            !allowed && stdout.trim().starts_with("no"),
            "{asked:?}: {stdout}{stderr}"
        );
    }
    let (logs_allowed, _, stderr) = outcome(args(&["logs", "api-0", "-n", "default"])).await;
    assert!(!logs_allowed, "{stderr}");

    // A caller the proxy policy lets read, without clusters.read, may ask.
    let pat = "--token=kubectl-proxy-only-token-0123";
    let whoami = kubectl.run(&[pat, "auth", "whoami", "-o", "json"]).await;
    assert!(whoami.contains("user:default/pat"), "{whoami}");
    let yes = kubectl.run(&[pat, "auth", "can-i", "list", "pods"]).await;
    assert_eq!(yes.trim(), "yes");
    // A caller who may only see the registry makes kubeportal ask the
    // cluster nothing.
    double.clear_requests();
    let reed = "--token=kubectl-reader-only-token-012";
    let mut command = kubectl.command(&[reed, "auth", "can-i", "--list"]);
    let output = command.output().await.unwrap();
    assert!(!output.status.success());
    assert!(
        !double
            .requests()
            .iter()
            .any(|request| request.path.contains("selfsubjectrulesreviews")),
        "no rules review reached the cluster for a caller without proxy rights"
    );

    // --list: the cluster's rules, narrowed to what the policy allows.
    double.deny("delete", "", "pods");
    let rules = kubectl
        .run(&[token, "auth", "can-i", "--list", "-n", "default"])
        .await;
    let pods = rules
        .lines()
        .find(|line| line.trim_start().starts_with("pods "))
        .unwrap_or_else(|| panic!("pods are listed: {rules}"));
    assert!(pods.contains("get") && pods.contains("list"), "{pods}");
    assert!(
        !pods.contains("delete") && !pods.contains("patch"),
        "{pods}"
    );

    // A denial reads as the API server's own.
    let (allowed, _, stderr) = outcome(args(&["delete", "pod", "api-0", "-n", "default"])).await;
    assert!(!allowed);
    assert!(
        stderr.contains(
            "Error from server (Forbidden): pods \"api-0\" is forbidden: User \"user:default/vera\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\""
        ),
        "{stderr}"
    );
    assert!(stderr.contains("kubeportal's policy"), "{stderr}");
    assert!(!stderr.contains("Unauthorized"), "{stderr}");

    // An unreachable cluster: ServiceUnavailable, the cause named where
    // kubectl prints the server's message.
    register(
        &app,
        json!({"name": "gone", "url": "https://127.0.0.1:9", "authProvider": "serviceAccount", "serviceAccountToken": "t"}),
    )
    .await;
    let gone = kubectl_for(&app, "gone", "kubectl-viewer-token-01234567", dir.path()).await;
    let mut command = gone.command(&[
        token,
        "get",
        "--raw",
        "/api/kubernetes/clusters/gone/proxy/api/v1/namespaces/default/pods",
    ]);
    let output = command.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("ServiceUnavailable"), "{stderr}");
    assert!(!stderr.contains("\"unknown\""), "{stderr}");
    let mut command = gone.command(&[token, "get", "pods"]);
    let output = command.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(!stderr.contains("(\"unknown\")"), "{stderr}");
    assert!(
        stderr.contains("the server is currently unable to handle the request")
            || stderr.contains("unreachable"),
        "{stderr}"
    );
}

/// kubectl with the kubeconfig kubeportal serves for `cluster`, fetched as
/// `token` (it carries no credential: each call passes `--token`).
pub(crate) async fn kubectl_for(
    app: &kubeportal_tests::TestApp,
    cluster: &str,
    token: &str,
    dir: &std::path::Path,
) -> Kubectl {
    let route = format!("/api/kubernetes/clusters/{cluster}/kubeconfig");
    kubeconfig_from(
        app,
        &route,
        token,
        &dir.join(format!("kubeconfig-{cluster}")),
    )
    .await
}

/// kubectl with the kubeconfig kubeportal serves at `route` (fetched as
/// `token`, written to `file`) and `token` set as its credential.
pub(crate) async fn signed_in_kubectl(
    app: &kubeportal_tests::TestApp,
    route: &str,
    token: &str,
    file: &std::path::Path,
) -> Kubectl {
    let kubectl = kubeconfig_from(app, route, token, file).await;
    kubectl
        .run(&[
            "config",
            "set-credentials",
            "kubeportal",
            &format!("--token={token}"),
        ])
        .await;
    kubectl
}

async fn kubeconfig_from(
    app: &kubeportal_tests::TestApp,
    route: &str,
    token: &str,
    file: &std::path::Path,
) -> Kubectl {
    let text = app
        .client
        .get(app.url(route))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(file, text).unwrap();
    Kubectl {
        kubeconfig: file.to_owned(),
    }
}

/// A running pod `default/api-0` on the double.
fn put_api_pod(double: &kube_double::KubeDouble) {
    double.put_object(
        "v1",
        "pods",
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "api-0", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "registry.example/api:1"}]},
            "status": {"phase": "Running"}
        }),
    );
}

/// A cluster serving a self-signed `CA:TRUE` certificate, given as its own
/// `caData`: kubectl trusts it directly, and kubectl through kubeportal
/// reaches it too.
#[tokio::test]
async fn kubectl_through_kubeportal_reaches_a_cluster_serving_its_own_ca_certificate() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let certificate = params.self_signed(&key).unwrap().pem();
    let double = kubeportal_tests::KubeDouble::start(kubeportal_tests::DoubleOptions {
        server_certificate: Some(kubeportal_tests::ServerCertificate {
            chain_pem: certificate.clone(),
            key_pem: key.serialize_pem(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();

    // kubectl itself, with that certificate as certificate-authority-data.
    let direct = Kubectl {
        kubeconfig: dir.path().join("direct"),
    };
    std::fs::write(
        &direct.kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: double-token\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            double.url(),
            base64::engine::general_purpose::STANDARD.encode(&certificate),
        ),
    )
    .unwrap();
    let namespaces = direct.run(&["get", "ns"]).await;
    assert!(namespaces.contains("kube-system"), "{namespaces}");

    // The same through kubeportal.
    let db = TestDb::sqlite();
    let mut config =
        kubeportal_tests::config_for(&db, kubeportal_tests::ConfigSource::Yaml(CONFIG));
    config.server.tls = Some(server_tls_files(dir.path()));
    let app = spawn_with_config(config).await;
    register(
        &app,
        json!({"name": "self-signed", "url": double.url(), "authProvider": "serviceAccount",
            "serviceAccountToken": "double-token", "caData": certificate}),
    )
    .await;
    let portal = kubectl_for(&app, "self-signed", PORTAL_TOKEN, dir.path()).await;
    portal
        .run(&[
            "config",
            "set-credentials",
            "kubeportal",
            &format!("--token={PORTAL_TOKEN}"),
        ])
        .await;
    let namespaces = portal.run(&["get", "ns"]).await;
    assert!(
        namespaces.contains("default") && namespaces.contains("kube-system"),
        "{namespaces}"
    );
}
