//! Configuration: parsed and validated once, at start-up, from an optional YAML
//! file and a documented set of `KUBEPORTAL_*` environment overrides.
//!
//! Errors name the key that is wrong (`server.listen: invalid socket address`),
//! and never echo a secret value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::audit::recording::{RecordingConfig, RecordingConfigError};
use crate::clusters::{
    declared_clusters, validate_declared_clusters, ClusterInput, ClusterLocatorMethod,
    DeclaredClusterError,
};
use crate::identity::{AuthConfig, AuthConfigError, JwtConfig};
use crate::objects::{
    validate_custom_resources, CatalogConfig, ObjectQueryConfig, ObjectsConfigError,
};
use crate::permissions::{PermissionsConfig, PermissionsConfigError};
use crate::telemetry::traces::{LogFormat, LoggingConfig, TelemetryConfig};
use crate::upstream::{
    validate_streams_per_connection, ImpersonationConfig, UpstreamConfigError, UpstreamTimeouts,
};

/// Entries of `kubernetes.customResources` (owned by object queries), at the
/// path the SDK takes them from.
pub use crate::objects::CustomResourceConfig;

/// Everything kubeportal reads from its configuration file and environment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    /// `None` when the file has no `permissions` key. A file without a policy
    /// denies everything but health; running without any file allows all.
    #[serde(default)]
    pub permissions: Option<PermissionsConfig>,
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub catalog: CatalogConfig,
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    #[serde(default)]
    pub recording: RecordingConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Set by [`Config::load`]: whether a configuration file was read.
    #[serde(skip)]
    pub from_file: bool,
    /// `KUBEPORTAL_SECRET_KEY`: base64 of the 32-byte key that seals credentials.
    /// Only from the environment, never from the file.
    #[serde(skip)]
    pub secret_key: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The externally visible base URL, used in generated kubeconfigs.
    pub public_url: Option<String>,
    pub tls: Option<TlsFiles>,
    /// Largest request body accepted on portal routes, in bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// A built single-page app (e.g. `web-demo/dist`) to serve at `/`.
    pub web_root: Option<PathBuf>,
    /// Largest request head (request line and headers) in bytes; larger is
    /// refused with 431. At least 8192.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most header fields in one request; more is refused with 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Seconds a client may take to send a request head (and a TLS
    /// handshake) before the connection is closed.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: u64,
    /// Seconds a connection may stay open with no request in progress
    /// (HTTP/1.1 keep-alive or HTTP/2 without streams) before it is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// Seconds shutdown waits for requests in progress (watches, followed
    /// logs) before it drops them; exec sessions are ended at once. The
    /// audit trail is then written, within 10 s more: keep
    /// `terminationGracePeriodSeconds` above both.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_seconds: u64,
    /// Origins (`https://portal.example`) besides kubeportal's own whose
    /// browser pages may open WebSockets and send writes.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            tls: None,
            body_limit_bytes: default_body_limit(),
            web_root: None,
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            header_read_timeout_seconds: default_header_read_timeout(),
            idle_timeout_seconds: default_idle_timeout(),
            drain_timeout_seconds: default_drain_timeout(),
            allowed_origins: Vec::new(),
        }
    }
}

fn default_drain_timeout() -> u64 {
    20
}

fn default_listen() -> String {
    "127.0.0.1:7007".to_owned()
}

fn default_body_limit() -> usize {
    1024 * 1024
}

fn default_max_header_bytes() -> usize {
    64 * 1024
}

fn default_max_headers() -> usize {
    100
}

fn default_header_read_timeout() -> u64 {
    30
}

fn default_idle_timeout() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The CA clients need to trust this server; put into generated kubeconfigs.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` or `postgres://…`; defaults to `sqlite://./kubeportal.db`.
    pub url: Option<String>,
    /// Largest number of pooled connections.
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesConfig {
    #[serde(default)]
    pub clusters: Vec<ClusterInput>,
    /// Backstage's `kubernetes.clusterLocatorMethods`; `type: config` entries
    /// contribute their clusters, other types are rejected with a clear error.
    #[serde(default)]
    pub cluster_locator_methods: Vec<ClusterLocatorMethod>,
    /// Backstage's `kubernetes.serviceLocatorMethod`, accepted for
    /// compatibility: every cluster is queried (`multiTenant`).
    pub service_locator_method: Option<serde_json::Value>,
    #[serde(default)]
    pub custom_resources: Vec<CustomResourceConfig>,
    /// Upstream timeouts, in milliseconds.
    #[serde(default)]
    pub timeouts: UpstreamTimeouts,
    /// Long-lived streams (watches, followed logs) carried by one upstream
    /// HTTP/2 connection; keep it below the clusters' own stream limit.
    #[serde(default = "default_streams_per_connection")]
    pub streams_per_connection: usize,
    /// How portal refs become Kubernetes names for `authProvider: impersonate`.
    #[serde(default)]
    pub impersonation: ImpersonationConfig,
    /// Entity-scoped object queries across clusters.
    #[serde(default)]
    pub objects: ObjectQueryConfig,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            clusters: Vec::new(),
            cluster_locator_methods: Vec::new(),
            service_locator_method: None,
            custom_resources: Vec::new(),
            timeouts: UpstreamTimeouts::default(),
            streams_per_connection: default_streams_per_connection(),
            impersonation: ImpersonationConfig::default(),
            objects: ObjectQueryConfig::default(),
        }
    }
}

fn default_streams_per_connection() -> usize {
    100
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    // The sections' own checks; their messages name the key.
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Permissions(#[from] PermissionsConfigError),
    #[error(transparent)]
    Recording(#[from] RecordingConfigError),
    #[error(transparent)]
    Upstream(#[from] UpstreamConfigError),
    #[error(transparent)]
    Objects(#[from] ObjectsConfigError),
    #[error(transparent)]
    Clusters(#[from] DeclaredClusterError),
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The database kubeportal stores its registry in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite { path: PathBuf },
    Postgres,
}

impl Config {
    /// Reads the file (if any) then applies environment overrides, then validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let text = match file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Self::from_parts(text.as_deref(), &env)
    }

    /// Parses YAML text (when given) and applies the overrides found in `env`.
    pub fn from_parts(
        yaml: Option<&str>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match yaml {
            Some(text) if !text.trim().is_empty() => {
                let mut config: Config = parse_yaml(text)?;
                config.from_file = true;
                config
            }
            Some(_) => Config {
                from_file: true,
                ..Config::default()
            },
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        if let Some(listen) = env.get("KUBEPORTAL_LISTEN") {
            self.server.listen = listen.clone();
        }
        if let Some(root) = env.get("KUBEPORTAL_WEB_ROOT") {
            self.server.web_root = Some(PathBuf::from(root));
        }
        if let Some(url) = env.get("KUBEPORTAL_CATALOG_URL") {
            self.catalog.base_url = Some(url.clone());
        }
        if let Some(url) = env.get("KUBEPORTAL_PUBLIC_URL") {
            self.server.public_url = Some(url.clone());
        }
        if let Some(url) = env
            .get("KUBEPORTAL_DATABASE_URL")
            .or_else(|| env.get("DATABASE_URL"))
        {
            self.database.url = Some(url.clone());
        }
        if let Some(guest) = env.get("KUBEPORTAL_AUTH_GUEST") {
            self.auth.guest = Some(parse_bool("KUBEPORTAL_AUTH_GUEST", guest)?);
        }
        if let Some(secret) = env.get("KUBEPORTAL_JWT_HS256_SECRET") {
            self.auth
                .jwt
                .get_or_insert_with(JwtConfig::default)
                .hs256_secret = Some(SecretString::from(secret.clone()));
        }
        if let Some(url) = env.get("KUBEPORTAL_JWKS_URL") {
            self.auth
                .jwt
                .get_or_insert_with(JwtConfig::default)
                .jwks_url = Some(url.clone());
        }
        if let Some(key) = env.get("KUBEPORTAL_SECRET_KEY") {
            crate::secrets::SecretBox::from_base64(key)
                .map_err(|error| invalid("KUBEPORTAL_SECRET_KEY", error.to_string()))?;
            self.secret_key = Some(SecretString::from(key.clone()));
        }
        if let Some(endpoint) = env.get("KUBEPORTAL_OTLP_ENDPOINT") {
            self.telemetry.otlp_endpoint = Some(endpoint.clone());
        }
        if let Some(format) = env.get("KUBEPORTAL_LOG_FORMAT") {
            self.logging.format = match format.as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                _ => {
                    return Err(invalid(
                        "KUBEPORTAL_LOG_FORMAT",
                        "expected `text` or `json`",
                    ))
                }
            };
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if let Some(url) = &self.server.public_url {
            let parsed = url::Url::parse(url)
                .map_err(|error| invalid("server.publicUrl", error.to_string()))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid("server.publicUrl", "expected an http or https URL"));
            }
        }
        self.database_kind()?;
        if let Some(root) = &self.server.web_root {
            if !root.join("index.html").is_file() {
                return Err(invalid(
                    "server.webRoot",
                    format!(
                        "{} has no index.html (build the web demo first)",
                        root.display()
                    ),
                ));
            }
        }
        if self.server.body_limit_bytes == 0 {
            return Err(invalid(
                "server.bodyLimitBytes",
                "must be greater than zero",
            ));
        }
        if self.server.max_header_bytes < 8192 {
            return Err(invalid("server.maxHeaderBytes", "must be at least 8192"));
        }
        if self.server.max_headers == 0 {
            return Err(invalid("server.maxHeaders", "must be greater than zero"));
        }
        if self.server.header_read_timeout_seconds == 0 {
            return Err(invalid(
                "server.headerReadTimeoutSeconds",
                "must be greater than zero",
            ));
        }
        if self.server.drain_timeout_seconds == 0 {
            return Err(invalid(
                "server.drainTimeoutSeconds",
                "must be greater than zero",
            ));
        }
        if self.server.idle_timeout_seconds == 0 {
            return Err(invalid(
                "server.idleTimeoutSeconds",
                "must be greater than zero",
            ));
        }
        self.kubernetes.timeouts.validate()?;
        for (index, origin) in self.server.allowed_origins.iter().enumerate() {
            crate::identity::origin::validate_allowed_origin(origin).map_err(|error| {
                invalid(format!("server.allowedOrigins[{index}]"), error.to_string())
            })?;
        }
        self.auth.validate()?;
        if let Some(permissions) = &self.permissions {
            permissions.validate()?;
        }
        self.recording.validate()?;
        validate_streams_per_connection(self.kubernetes.streams_per_connection)?;
        self.kubernetes.objects.validate()?;
        self.catalog.validate()?;
        validate_custom_resources(&self.kubernetes.custom_resources)?;
        validate_declared_clusters(
            &self.kubernetes.clusters,
            &self.kubernetes.cluster_locator_methods,
        )?;
        Ok(())
    }

    /// The socket address to listen on.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                "expected an address such as 127.0.0.1:7007",
            )
        })
    }

    /// Guest access: explicit setting, else on only while listening on loopback.
    pub fn guest_enabled(&self) -> bool {
        self.auth.guest.unwrap_or_else(|| {
            self.listen_addr()
                .map(|addr| addr.ip().is_loopback())
                .unwrap_or(false)
        })
    }

    pub fn database_url(&self) -> String {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| "sqlite://./kubeportal.db".to_owned())
    }

    pub fn database_kind(&self) -> Result<DatabaseKind, ConfigError> {
        let url = self.database_url();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseKind::Postgres)
        } else if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or(url.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(invalid("database.url", "the sqlite URL names no file"));
            }
            Ok(DatabaseKind::Sqlite {
                path: PathBuf::from(path),
            })
        } else {
            Err(invalid(
                "database.url",
                "expected a sqlite://FILE or postgres:// URL",
            ))
        }
    }

    /// Clusters declared in the file, with the key each came from.
    pub fn declared_clusters(&self) -> Vec<(String, &ClusterInput)> {
        declared_clusters(
            &self.kubernetes.clusters,
            &self.kubernetes.cluster_locator_methods,
        )
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(invalid(key, "expected true or false")),
    }
}

/// Reads the configuration file. Errors name the key and the line, never a
/// value or a snippet of the text: a value may be a secret.
fn parse_yaml(text: &str) -> Result<Config, ConfigError> {
    let options = serde_saphyr::options! { with_snippet: false };
    let mut key = None;
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |deserializer| {
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            key = Some(error.path().to_string());
            error.into_inner()
        })
    })
    .map_err(|error| {
        let key = key
            .filter(|key| key != ".")
            .unwrap_or_else(|| "config".into());
        invalid(key, error.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn no_file_means_loopback_sqlite_with_guest() {
        let config = Config::from_parts(None, &env(&[])).unwrap();
        assert_eq!(config.listen_addr().unwrap().to_string(), "127.0.0.1:7007");
        assert!(config.guest_enabled());
        assert!(!config.from_file);
        assert_eq!(
            config.database_kind().unwrap(),
            DatabaseKind::Sqlite {
                path: PathBuf::from("./kubeportal.db")
            }
        );
    }

    #[test]
    fn guest_is_off_when_listening_on_all_interfaces() {
        let config =
            Config::from_parts(None, &env(&[("KUBEPORTAL_LISTEN", "0.0.0.0:7007")])).unwrap();
        assert!(!config.guest_enabled());
    }

    #[test]
    fn environment_overrides_the_file() {
        let yaml = "database:\n  url: sqlite://a.db\n";
        let config = Config::from_parts(
            Some(yaml),
            &env(&[("DATABASE_URL", "postgres://postgres@127.0.0.1/x")]),
        )
        .unwrap();
        assert_eq!(config.database_kind().unwrap(), DatabaseKind::Postgres);
    }

    #[test]
    fn a_verifier_from_the_environment_has_the_file_defaults() {
        let from_file = Config::from_parts(
            Some("auth:\n  jwt:\n    jwksUrl: https://a.example/jwks\n"),
            &env(&[]),
        )
        .unwrap()
        .auth
        .jwt
        .unwrap();
        for variable in ["KUBEPORTAL_JWKS_URL", "KUBEPORTAL_JWT_HS256_SECRET"] {
            let jwt = Config::from_parts(None, &env(&[(variable, "https://a.example/jwks")]))
                .unwrap()
                .auth
                .jwt
                .unwrap();
            // The leeway, the JWKS refresh floor (which keeps forged key ids
            // from making every request a JWKS fetch) and the cache.
            assert_eq!(
                (
                    jwt.leeway_seconds,
                    jwt.jwks_min_refresh_seconds,
                    jwt.cache_seconds
                ),
                (
                    from_file.leeway_seconds,
                    from_file.jwks_min_refresh_seconds,
                    from_file.cache_seconds
                ),
                "{variable}"
            );
        }
        assert_eq!(
            (
                from_file.leeway_seconds,
                from_file.jwks_min_refresh_seconds,
                from_file.cache_seconds
            ),
            (30, 30, 60)
        );
    }

    #[test]
    fn no_static_token_may_be_or_own_the_guest() {
        let yaml = |subject: &str, group: &str| {
            format!("auth:\n  staticTokens:\n    - {{ token: a-long-enough-token-1234, subject: '{subject}', groups: ['{group}'] }}\n")
        };
        let error = |yaml: &str| {
            Config::from_parts(Some(yaml), &env(&[]))
                .unwrap_err()
                .to_string()
        };
        assert!(error(&yaml("user:default/guest", "group:default/a"))
            .contains("auth.staticTokens[0].subject"),);
        for group in ["user:default/guest", "User:Default/GUEST"] {
            let message = error(&yaml("user:default/ci", group));
            assert!(message.contains("auth.staticTokens[0].groups"), "{message}");
        }
        Config::from_parts(Some(&yaml("user:default/ci", "group:default/a")), &env(&[])).unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let error =
            Config::from_parts(Some("server:\n  listen: nowhere\n"), &env(&[])).unwrap_err();
        assert!(error.to_string().starts_with("server.listen:"), "{error}");

        let error = Config::from_parts(Some("server:\n  lisen: x\n"), &env(&[])).unwrap_err();
        assert!(error.to_string().contains("lisen"), "{error}");

        let error = Config::from_parts(
            Some("permissions:\n  rules:\n    - permission: kubernetes.proxy\n      subjects: ['*']\n      decision: maybe\n"),
            &env(&[]),
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with("permissions.rules[0]"),
            "{error}"
        );

        let error = Config::from_parts(
            Some("kubernetes:\n  clusters:\n    - name: a\n      url: ftp://x\n      authProvider: serviceAccount\n      serviceAccountToken: sekrit-token-value\n"),
            &env(&[]),
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with("kubernetes.clusters[0].url"),
            "{error}"
        );
        assert!(!error.to_string().contains("sekrit"), "{error}");

        for bad in ["0", "1001"] {
            let error = Config::from_parts(
                Some(&format!("kubernetes:\n  streamsPerConnection: {bad}\n")),
                &env(&[]),
            )
            .unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("kubernetes.streamsPerConnection"),
                "{error}"
            );
        }
        let config = Config::from_parts(None, &env(&[])).unwrap();
        assert_eq!(config.kubernetes.streams_per_connection, 100);
    }

    #[test]
    fn yaml_errors_do_not_echo_values() {
        let error = Config::from_parts(
            Some("auth:\n  staticTokens:\n    - token: [\"sekrit\"]\n      subject: user:default/a\n"),
            &env(&[]),
        )
        .unwrap_err();
        assert!(!error.to_string().contains("sekrit"), "{error}");
        // Wrong types, broken syntax and bad indentation: the key and the
        // line are named, the text around them never is.
        for yaml in [
            "server:\n  listen: [sekrit]\n",
            "server:\n  maxHeaderBytes: sekrit\n",
            "auth:\n  staticTokens:\n    - token: \"sekrit\n",
            "auth:\n  staticTokens:\n    - token: sekrit\n     subject: user:default/a\n",
            "auth:\n  staticTokens: sekrit\n",
        ] {
            let error = Config::from_parts(Some(yaml), &env(&[]))
                .unwrap_err()
                .to_string();
            assert!(!error.contains("sekrit"), "{yaml:?}: {error}");
            assert!(error.contains("line"), "{yaml:?}: {error}");
        }
    }

    #[test]
    fn a_file_of_comments_is_the_defaults() {
        let config = Config::from_parts(Some("# nothing set yet\n"), &env(&[])).unwrap();
        assert!(config.from_file);
        assert_eq!(config.listen_addr().unwrap().to_string(), "127.0.0.1:7007");
    }

    #[test]
    fn duplicate_cluster_names_refuse_to_start() {
        let cluster = |name: &str| {
            format!("{{ name: {name}, url: \"https://{name}.example:6443\", authProvider: serviceAccount, serviceAccountToken: a-service-account-token }}")
        };
        let in_one_list = format!(
            "kubernetes:\n  clusters:\n    - {}\n    - {}\n",
            cluster("prod"),
            cluster("PROD")
        );
        let error = Config::from_parts(Some(&in_one_list), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("kubernetes.clusters[1].name"), "{error}");
        assert!(error.contains("kubernetes.clusters[0]"), "{error}");
        assert!(
            error.contains("`PROD`") && error.contains("`prod`"),
            "{error}"
        );

        let across = format!(
            "kubernetes:\n  clusters:\n    - {}\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - {}\n",
            cluster("prod"),
            cluster("Prod")
        );
        let error = Config::from_parts(Some(&across), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("kubernetes.clusterLocatorMethods[0].clusters[0].name"),
            "{error}"
        );
        assert!(error.contains("kubernetes.clusters[0]"), "{error}");

        let distinct = format!(
            "kubernetes:\n  clusters:\n    - {}\n    - {}\n",
            cluster("prod"),
            cluster("prod-eu")
        );
        assert!(Config::from_parts(Some(&distinct), &env(&[])).is_ok());
    }

    #[test]
    fn backstage_cluster_locator_methods_are_read() {
        let yaml = r#"
kubernetes:
  serviceLocatorMethod: { type: multiTenant }
  clusterLocatorMethods:
    - type: config
      clusters:
        - name: dev
          url: https://dev.example:6443
          authProvider: serviceAccount
          serviceAccountToken: a-service-account-token
          skipTLSVerify: true
"#;
        let config = Config::from_parts(Some(yaml), &env(&[])).unwrap();
        let clusters = config.declared_clusters();
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].1.name, "dev");

        let error = Config::from_parts(
            Some("kubernetes:\n  clusterLocatorMethods:\n    - type: gke\n"),
            &env(&[]),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("clusterLocatorMethods[0].type"),
            "{error}"
        );
    }
}
