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
    config_for_url(&db.url, source)
}

/// Builds a configuration for the database at `url` from `source`.
pub fn config_for_url(url: &str, source: ConfigSource<'_>) -> Config {
    let mut env = BTreeMap::new();
    env.insert("DATABASE_URL".to_owned(), url.to_owned());
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

    /// The text `GET /metrics` answers.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
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

pub use kube_double::{
    ClientAuth, Fault, Identity, KubeDouble, Options as DoubleOptions, ServerCertificate,
};

/// Starts a test-double cluster with default options.
pub async fn start_double() -> KubeDouble {
    KubeDouble::start(DoubleOptions::default())
        .await
        .expect("test double")
}

/// Starts a test-double cluster serving plain HTTP.
pub async fn start_plain_double() -> KubeDouble {
    KubeDouble::start(DoubleOptions {
        tls: false,
        ..DoubleOptions::default()
    })
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

/// A Postgres server of a test's own (initdb in a temporary directory, on a
/// free loopback port) that the test may stop and start again, to see what
/// kubeportal does through a database outage. Needs Postgres' server
/// binaries (`initdb`, `pg_ctl`: `PG_BIN`, else the newest under
/// `/usr/lib/postgresql`); as root, they run as the `postgres` user.
pub struct PrivatePostgres {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let bin = std::env::var_os("PG_BIN")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
                    .filter(|bin| bin.join("initdb").is_file())
                    .collect();
                versions.sort_by_key(|bin| {
                    bin.parent()
                        .and_then(|version| version.file_name())
                        .and_then(|name| name.to_str())
                        .and_then(|name| name.parse::<u32>().ok())
                });
                versions.pop()
            })
            .expect("Postgres server binaries (set PG_BIN to the directory holding initdb)");
        let as_postgres = rustix::process::geteuid().is_root();
        let data =
            std::env::temp_dir().join(format!("kubeportal-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&data).expect("data directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let server = PrivatePostgres {
            bin,
            data,
            port,
            as_postgres,
        };
        if as_postgres {
            let status = std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&server.data)
                .status()
                .expect("chown");
            assert!(status.success(), "chown the data directory to postgres");
        }
        let cluster = server.data.join("cluster");
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                cluster.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        server.resume();
        server
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Kills the server as a crash would (`pg_ctl stop -m immediate`): no
    /// clean shutdown; acknowledged commits must survive by WAL recovery.
    pub fn crash(&self) {
        let cluster = self.data.join("cluster");
        self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-D".as_ref(),
                cluster.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
            ],
        );
    }

    /// Starts the server (again) on the same port and data, and waits for it.
    pub fn resume(&self) {
        let cluster = self.data.join("cluster");
        let log = self.data.join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.data.display()
        );
        self.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-D".as_ref(),
                cluster.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
            ],
        );
    }

    /// `program` from the server binaries, as the postgres user when root.
    fn command(&self, program: &str) -> std::process::Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            std::process::Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let output = self
            .command(program)
            .args(args)
            .current_dir(&self.data)
            .output()
            .unwrap_or_else(|error| panic!("running {program}: {error}"));
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let cluster = self.data.join("cluster");
        let _ = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&cluster)
            .args(["-m", "immediate"])
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Raises this process's soft limit on open files to its hard limit (tests
/// that hold thousands of sockets on both ends); returns the new soft limit.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let wanted = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, wanted) {
        // `None` is unlimited.
        Ok(()) => wanted.current.unwrap_or(u64::MAX),
        Err(_) => limit.current.unwrap_or(1024),
    }
}

/// The names `GET /api/kubernetes/clusters` lists, as `token` sees them.
pub async fn cluster_names(app: &TestApp, token: &str) -> Vec<String> {
    let listed: serde_json::Value = app
        .client
        .get(app.url("/api/kubernetes/clusters"))
        .bearer_auth(token)
        .send()
        .await
        .expect("list clusters")
        .json()
        .await
        .expect("a JSON page");
    listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|cluster| cluster["name"].as_str().expect("a name").to_owned())
        .collect()
}

/// Runs the real `kubectl` (from `PATH`) straight against a test double, as
/// its first token, and returns its standard output; panics if it fails.
pub async fn kubectl_on_double(double: &KubeDouble, args: &[&str], stdin: Option<&str>) -> String {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig()).expect("write kubeconfig");
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--request-timeout=20s")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl on the PATH");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
        .expect("kubectl ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Serves `router` on a free loopback port for the rest of the test (a
/// catalog, a JWKS endpoint or a stand-in cluster); its base URL,
/// `http://127.0.0.1:PORT`.
pub async fn serve_stand_in(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port");
    let url = format!("http://{}", listener.local_addr().expect("bound address"));
    tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("stand-in serves")
    });
    url
}

/// A sink for a tracing subscriber's output that the test reads back.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Audit records are written in batches off the request path: the page of
/// `GET /api/kubernetes/audit{query}` (as `token`, or the guest) once `ready`
/// holds for its items. Panics with the last page after about five seconds.
pub async fn audit_page_when(
    app: &TestApp,
    token: Option<&str>,
    query: &str,
    ready: impl Fn(&[serde_json::Value]) -> bool,
) -> serde_json::Value {
    let mut page = serde_json::Value::Null;
    for _ in 0..100 {
        let mut request = app
            .client
            .get(app.url(&format!("/api/kubernetes/audit{query}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("audit page");
        assert_eq!(response.status(), 200, "reading the audit trail");
        page = response.json().await.expect("audit page JSON");
        if page["items"].as_array().is_some_and(|items| ready(items)) {
            return page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the audit trail for {query} never became ready: {page}");
}
