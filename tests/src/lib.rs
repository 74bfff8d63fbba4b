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
    let state = kubeportal::app::build_state(config)
        .await
        .expect("app state");
    let router = kubeportal::app::router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    let (shutdown, signal) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = kubeportal::app::serve(listener, router, async move {
            let _ = signal.await;
        })
        .await;
    });
    TestApp {
        url: format!("http://{addr}"),
        addr,
        state,
        client: reqwest::Client::new(),
        shutdown: Some(shutdown),
        task: Some(task),
    }
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
