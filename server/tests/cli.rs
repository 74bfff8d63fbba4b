//! The `kubeportal` binary as a newcomer runs it.

use std::io::{BufRead, BufReader};
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

#[test]
fn clusters_import_registers_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        r#"
apiVersion: v1
kind: Config
clusters:
  - { name: kind-dev, cluster: { server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true } }
  - { name: "bad name", cluster: { server: "https://127.0.0.1:6444" } }
users:
  - { name: dev, user: { token: imported-token-value } }
contexts:
  - { name: kind-dev, context: { cluster: kind-dev, user: dev } }
"#,
    )
    .unwrap();
    let import = |expect_success: bool| {
        let output = Command::new(BINARY)
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("KUBEPORTAL_CONFIG")
            .args([
                "clusters",
                "import",
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.success(), expect_success);
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(!stdout.contains("imported-token-value"));
        stdout
    };
    let first = import(false);
    assert!(first.contains("kind-dev: created"), "{first}");
    assert!(first.contains("bad name: not imported: name"), "{first}");
    let second = import(false);
    assert!(second.contains("kind-dev: unchanged"), "{second}");

    let port = free_port();
    let mut child = Command::new(BINARY)
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("KUBEPORTAL_CONFIG")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _server = Running(child);
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    wait_until_up(port);
    let (_, body) = get(port, "/api/kubernetes/clusters/kind-dev");
    assert!(body.contains(r#""skipTLSVerify":true"#), "{body}");
    assert!(body.contains(r#""hasServiceAccountToken":true"#), "{body}");
}
