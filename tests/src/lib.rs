//! The integration-test harness: throwaway databases and the real app spawned
//! on a random port, so every test talks HTTP like a client would.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use kubeportal::config::Config;
use kubeportal::state::AppState;
use sqlx::Connection;
use tokio::sync::oneshot;

/// The Postgres server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of its own for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    postgres_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("kubeportal.db").display());
        TestDb {
            url,
            backend: Backend::Sqlite,
            postgres_name: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> TestDb {
        let admin = postgres_admin_url();
        let name = format!("kubeportal_test_{}", uuid::Uuid::new_v4().simple());
        let mut connection = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to the test Postgres server (TEST_DATABASE_URL)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .expect("create a test database");
        let base = admin
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin);
        TestDb {
            url: format!("{base}/{name}"),
            backend: Backend::Postgres,
            postgres_name: Some(name),
            _dir: None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.postgres_name.take() {
            // Drop runs inside a runtime; use a thread with its own.
            let admin = postgres_admin_url();
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    if let Ok(mut connection) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut connection)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A fixed secret key for tests (base64 of 32 bytes).
pub fn test_secret_key() -> String {
    STANDARD.encode([42u8; 32])
}

/// How the spawned app is configured.
pub enum ConfigSource<'a> {
    /// As if started without a configuration file.
    NoFile,
    /// This YAML as the configuration file.
    Yaml(&'a str),
}

/// Builds a configuration for `db` from `source`.
pub fn config_for(db: &TestDb, source: ConfigSource<'_>) -> Config {
    let mut env = BTreeMap::new();
    env.insert("DATABASE_URL".to_owned(), db.url.clone());
    env.insert("KUBEPORTAL_SECRET_KEY".to_owned(), test_secret_key());
    env.insert("KUBEPORTAL_LISTEN".to_owned(), "127.0.0.1:0".to_owned());
    let yaml = match source {
        ConfigSource::NoFile => None,
        ConfigSource::Yaml(text) => Some(text),
    };
    Config::from_parts(yaml, &env).expect("test configuration is valid")
}

/// A running kubeportal.
pub struct TestApp {
    pub url: String,
    pub addr: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Starts the real app on a random loopback port.
pub async fn spawn_app(db: &TestDb, source: ConfigSource<'_>) -> TestApp {
    spawn_with_config(config_for(db, source)).await
}

pub async fn spawn_with_config(config: Config) -> TestApp {
    let tls = config.server.tls.is_some();
    let ca = config
        .server
        .tls
        .as_ref()
        .and_then(|tls| tls.ca_file.as_ref())
        .map(|file| std::fs::read(file).expect("CA file"));
    let state = kubeportal::app::build_state(config)
        .await
        .expect("app state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    let (shutdown, signal) = oneshot::channel::<()>();
    let served = state.clone();
    let task = tokio::spawn(async move {
        let _ = kubeportal::app::serve_configured(listener, served, async move {
            let _ = signal.await;
        })
        .await;
    });
    let mut client = reqwest::Client::builder();
    if let Some(ca) = ca {
        client = client.add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"));
    }
    TestApp {
        url: format!("{}://{addr}", if tls { "https" } else { "http" }),
        addr,
        state,
        client: client.build().expect("client"),
        shutdown: Some(shutdown),
        task: Some(task),
    }
}

/// A CA and a server certificate for 127.0.0.1/localhost, written to `dir`,
/// as `server.tls` needs them.
pub fn server_tls_files(dir: &std::path::Path) -> kubeportal::config::TlsFiles {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubeportal test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([
            127, 0, 0, 1,
        ])));
    let certificate = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let files = kubeportal::config::TlsFiles {
        cert_file: dir.join("server.crt"),
        key_file: dir.join("server.key"),
        ca_file: Some(dir.join("ca.crt")),
    };
    std::fs::write(&files.cert_file, certificate.pem()).expect("write");
    std::fs::write(&files.key_file, key.serialize_pem()).expect("write");
    std::fs::write(files.ca_file.as_ref().expect("set"), ca.pem()).expect("write");
    files
}

pub use kube_double::{ClientAuth, Fault, KubeDouble, Options as DoubleOptions};

/// Starts a test-double cluster with default options.
pub async fn start_double() -> KubeDouble {
    KubeDouble::start(DoubleOptions::default())
        .await
        .expect("test double")
}

/// The registry body for a test-double cluster with a service-account token.
pub fn double_cluster(name: &str, double: &KubeDouble) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "url": double.url(),
        "authProvider": "serviceAccount",
        "serviceAccountToken": "double-token",
        "caData": double.ca_pem(),
    })
}

/// Registers a cluster directly in the app's registry (bypassing the policy).
pub async fn register(app: &TestApp, body: serde_json::Value) {
    let input: kubeportal::clusters::ClusterInput =
        serde_json::from_value(body).expect("cluster body");
    app.state
        .registry
        .create(&input)
        .await
        .expect("register cluster");
}

/// Runs a test body once per store: `both_stores!(name, |backend| async move { … })`.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                ($body)($crate::Backend::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                ($body)($crate::Backend::Postgres).await
            }
        }
    };
}
