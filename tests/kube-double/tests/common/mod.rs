//! Helpers shared by the double's integration tests: clients that trust the
//! double, bounded reads of streams, and a kubectl with its own kubeconfig.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kube_double::{KubeDouble, Options};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The token `Options::default()` accepts.
pub const TOKEN: &str = "double-token";

/// How long any single step of a test may take before it counts as hung.
pub const STEP: Duration = Duration::from_secs(10);

pub async fn start() -> KubeDouble {
    KubeDouble::start(Options::default())
        .await
        .expect("starting the double")
}

/// A client that trusts the double's CA and sends the default token.
pub fn client(double: &KubeDouble) -> reqwest::Client {
    client_builder(double)
        .default_headers(bearer(TOKEN))
        .build()
        .expect("building a client")
}

/// A client that trusts the double's CA and sends no credentials.
pub fn anonymous_client(double: &KubeDouble) -> reqwest::Client {
    client_builder(double).build().expect("building a client")
}

pub fn client_builder(double: &KubeDouble) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(double.ca_pem().as_bytes()).expect("the CA is PEM");
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(STEP)
}

pub fn bearer(token: &str) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a valid header"),
    );
    headers
}

/// A streamed response read line by line, each line within `STEP`.
pub struct LineReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl LineReader {
    pub fn new(response: reqwest::Response) -> Self {
        LineReader {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next line, or `None` when the stream ended.
    pub async fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(
                    String::from_utf8(line)
                        .expect("UTF-8 lines")
                        .trim_end()
                        .to_owned(),
                );
            }
            let chunk = tokio::time::timeout(STEP, self.response.chunk())
                .await
                .expect("the next chunk within the step timeout")
                .expect("reading the stream");
            match chunk {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => return None,
            }
        }
    }

    /// The next watch event as (type, object).
    pub async fn next_event(&mut self) -> (String, Value) {
        let line = self.next_line().await.expect("another watch event");
        let event: Value = serde_json::from_str(&line).expect("events are JSON");
        (
            event["type"].as_str().expect("a type").to_owned(),
            event["object"].clone(),
        )
    }

    /// Reads until the stream ends, cleanly or not; panics if it goes on past `STEP`.
    pub async fn read_to_end(mut self) {
        let drain = async { while let Ok(Some(_)) = self.response.chunk().await {} };
        tokio::time::timeout(STEP, drain)
            .await
            .expect("the stream ended within the step timeout");
    }

    /// Whether nothing arrives within `wait`.
    pub async fn is_quiet_for(&mut self, wait: Duration) -> bool {
        if !self.buffer.is_empty() {
            return false;
        }
        tokio::time::timeout(wait, self.response.chunk())
            .await
            .is_err()
    }
}

/// A kubectl with a kubeconfig for one double, in a directory of its own.
pub struct Kubectl {
    directory: PathBuf,
    binary: PathBuf,
}

/// kubectl 1.27, which opens exec and attach sessions over SPDY/3.1 only.
pub const KUBECTL_SPDY: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";

impl Kubectl {
    pub fn for_double(double: &KubeDouble) -> Kubectl {
        let directory =
            std::env::temp_dir().join(format!("kube-double-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&directory).expect("creating a temporary directory");
        std::fs::write(directory.join("kubeconfig"), double.kubeconfig())
            .expect("writing the kubeconfig");
        Kubectl {
            directory,
            binary: "/usr/bin/kubectl".into(),
        }
    }

    /// The same, run as another kubectl binary.
    pub fn with_binary(mut self, binary: &str) -> Kubectl {
        self.binary = binary.into();
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.directory.join(name)
    }

    fn command(&self, arguments: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(arguments)
            .env("KUBECONFIG", self.path("kubeconfig"))
            .env("KUBECACHEDIR", self.path("cache"))
            .env("HOME", &self.directory)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs kubectl to completion within `STEP`; returns stdout, panicking with
    /// stderr on failure.
    pub async fn run(&self, arguments: &[&str]) -> String {
        let (status, stdout, stderr) = self.try_run(arguments).await;
        assert!(
            status.success(),
            "kubectl {arguments:?} failed with {status}: {stderr}"
        );
        stdout
    }

    /// Runs kubectl to completion within `STEP`: exit status, stdout, stderr.
    pub async fn try_run(&self, arguments: &[&str]) -> (std::process::ExitStatus, String, String) {
        let output = tokio::time::timeout(STEP, self.command(arguments).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {arguments:?} did not finish within {STEP:?}"))
            .expect("running kubectl");
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Runs kubectl to completion within `STEP` with `input` on its stdin;
    /// returns stdout, panicking with stderr on failure.
    pub async fn run_with_input(&self, arguments: &[&str], input: &[u8]) -> String {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .command(arguments)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting kubectl");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(input)
            .await
            .expect("writing kubectl's stdin");
        drop(stdin);
        let output = tokio::time::timeout(STEP, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {arguments:?} did not finish within {STEP:?}"))
            .expect("running kubectl");
        assert!(
            output.status.success(),
            "kubectl {arguments:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts a long-running kubectl (`-w`, `logs -f`) whose stdout is read line
    /// by line; it is killed when dropped.
    pub fn spawn(&self, arguments: &[&str]) -> RunningKubectl {
        let mut child = self
            .command(arguments)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting kubectl");
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        RunningKubectl { child, lines }
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

pub struct RunningKubectl {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl RunningKubectl {
    /// Reads stdout until a line contains `needle`; returns that line.
    pub async fn wait_for_line(&mut self, needle: &str) -> String {
        let read = async {
            while let Some(line) = self
                .lines
                .next_line()
                .await
                .expect("reading kubectl's stdout")
            {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("kubectl's stdout ended before a line containing {needle:?}");
        };
        match tokio::time::timeout(STEP, read).await {
            Ok(line) => line,
            Err(_) => panic!("no line containing {needle:?} within {STEP:?}"),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A pod with one container, as a seed object.
pub fn pod(namespace: &str, name: &str, labels: Value) -> Value {
    serde_json::json!({
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
        "status": {"phase": "Running"}
    })
}

/// A rustls client configuration trusting the double, speaking HTTP/1.1 only.
pub fn http1_tls_config(double: &KubeDouble) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = double.ca_pem();
    let der = pem_body(&ca);
    roots.add(der.into()).expect("adding the CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body is base64")
}

/// Opens a TLS connection to the double (HTTP/1.1 by ALPN).
pub async fn tls_connect(
    double: &KubeDouble,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(double.addr())
        .await
        .expect("connecting");
    let connector = tokio_rustls::TlsConnector::from(http1_tls_config(double));
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a server name");
    connector.connect(name, tcp).await.expect("TLS handshake")
}
