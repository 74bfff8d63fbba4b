//! # kube-double: a Kubernetes API server test double
//!
//! A fixture for kubeportal's tests, benchmarks and demo. It speaks enough of the
//! Kubernetes API, over real TLS, for kubectl 1.3x, client-go, kube-rs and
//! @kubernetes/client-node to work against it, and it records every request it
//! receives so tests can check what a proxy forwarded. It is not a Kubernetes API
//! server, and kubeportal must also work against a real one.
//!
//! ```no_run
//! use kube_double::{Fault, KubeDouble, Options};
//! use serde_json::json;
//!
//! # async fn example() -> anyhow::Result<()> {
//! let cluster = KubeDouble::start(Options::default()).await?;
//! cluster.put_object("v1", "pods", json!({
//!     "metadata": {"name": "api-1", "namespace": "shop", "labels": {"app": "api"}},
//!     "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
//! }));
//! cluster.append_log("shop", "api-1", "hello");
//! // Point a client (or kubeportal) at cluster.url(), trusting cluster.ca_pem()
//! // and sending "Authorization: Bearer double-token"; then check what arrived:
//! let requests = cluster.requests();
//! cluster.set_fault(Fault::Hang);
//! # Ok(())
//! # }
//! ```
//!
//! ## What it emulates
//! - **Transport**: HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with a generated CA whose
//!   server certificate names `127.0.0.1` and `localhost` (or a certificate and key
//!   the caller supplies, [`Options::server_certificate`]), or plain HTTP.
//! - **Authentication**: bearer tokens from [`Options::tokens`]; client certificates
//!   signed by the double's client CA ([`KubeDouble::issue_client_cert`]), the common
//!   name being the user; the WebSocket subprotocol
//!   `base64url.bearer.authorization.k8s.io.<token>` as the API server accepts it.
//!   Anything else is answered 401 with a `Status`, except `/healthz`, `/livez` and
//!   `/readyz`.
//! - **Discovery**: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>`,
//!   `/apis/<group>/<version>` (legacy, unaggregated discovery: clients that ask for
//!   aggregated discovery get the plain documents and fall back, as they do with old
//!   servers), and `/openapi/v3` with one small document per group version that
//!   declares the `fieldValidation` parameter, which is what kubectl's validation looks
//!   for before it trusts the server to validate.
//! - **Objects**: the built-in types listed in [`resources`] (among them
//!   coordination.k8s.io `leases`, so `kubectl describe node` finds a node's Lease
//!   in `kube-node-lease`, a namespace created with the first object put there) and
//!   custom resources from [`KubeDouble::register_custom_resource`]: create, get,
//!   list (label selectors with `=`, `==`, `!=`, `in`, `notin`, `key`, `!key`; field
//!   selectors with `=`, `==` and `!=` on any field path, as `kubectl describe node`
//!   sends them; `limit`/`continue`), update with resourceVersion
//!   conflicts, patch (JSON patch, JSON merge patch, strategic merge patch and
//!   server-side apply, see below), delete, deletecollection, and the `status`
//!   subresource. One global, monotonically increasing resourceVersion; uid,
//!   creationTimestamp and generation are set; namespaced objects need their
//!   namespace; deleting a namespace deletes its objects at once. A repeated
//!   list (not a `Table`) at an unchanged resourceVersion is answered with the
//!   bytes rendered the first time (the double shares its machine with what it
//!   tests).
//! - **Representations** (`Accept`, negotiated as the apiserver does: the first
//!   clause in order of preference that the double can produce wins; a missing
//!   header or `*/*` is plain JSON; protobuf or CBOR first with JSON after is
//!   answered in JSON; nothing producible is a 406 `NotAcceptable` `Status`):
//!   `Table` (`as=Table;g=meta.k8s.io;v=v1` or `v1beta1`) for get, list and watch,
//!   with the apiserver's printer columns for pods (`Name, Ready, Status, Restarts,
//!   Age` and the wide `IP, Node, Nominated Node, Readiness Gates`), namespaces
//!   (`Name, Status, Age`) and nodes (`Name, Status, Roles, Age, Version` and the
//!   wide ones), the CRD default (`Name, Age`) for custom resources and
//!   `rest.DefaultTableConvertor`'s `Name, Created At` for everything else; rows
//!   carry `includeObject=None|Metadata|Object` (default `Metadata`); a watch sends
//!   one-row Tables and `columnDefinitions` with its first event only.
//!   `PartialObjectMetadataList` for lists and `PartialObjectMetadata` for get and
//!   watch events (each on the other side is the apiserver's 406).
//! - **Watch**: `watch=true|1` on any collection, newline-delimited JSON events
//!   flushed one by one, replay from a `resourceVersion` (410 `Expired` when it is
//!   older than the last 10,000 events), `timeoutSeconds`, selector transitions
//!   (ADDED/DELETED when an object enters or leaves a selector).
//! - **Pod logs**: `pods/log` with `container`, `follow`, `tailLines` and
//!   `timestamps`; lines come from [`KubeDouble::append_log`] or
//!   [`KubeDouble::set_generated_log`].
//! - **Exec and attach over WebSocket**: subprotocols `v5.channel.k8s.io`,
//!   `v4.channel.k8s.io` and `channel.k8s.io`. Only three programs exist: `echo`
//!   (prints its arguments), `cat` (copies stdin to stdout until stdin closes) and
//!   a toy shell, `sh` or `bash` (also `/bin/sh`, `/bin/bash`; see the `shell`
//!   module): with a tty it prompts, echoes what is typed and edits the line as a
//!   terminal would, and it runs only `echo`, `exit`, `hostname`, `stty size` (the
//!   size last sent on the resize channel), `true` and `false`, answering `command
//!   not found` to anything else. Any other command fails with exit code 127.
//!   Attach behaves like `cat`.
//! - **Exec and attach over SPDY/3.1**, as kubectl before 1.30 speaks them
//!   (`X-Stream-Protocol-Version` `v4.channel.k8s.io`, `v3`, `v2` and
//!   `channel.k8s.io`; streams named by `streamtype`, header blocks compressed
//!   with the SPDY/3 dictionary): the same programs as over WebSocket.
//! - **metrics.k8s.io/v1beta1 pods** (when [`Options::metrics_api`]): a `PodMetrics`
//!   per pod with fixed usage figures.
//! - **A raw upgrade echo**: `GET /debug/echo-upgrade` answers 101 with the requested
//!   `Upgrade` value and echoes every byte back, for proxy upgrade tests.
//! - **Faults** ([`Fault`], [`KubeDouble::fail_resource`],
//!   [`KubeDouble::delay_resource`]) for clusters that refuse, hang, dribble, reset,
//!   present the wrong certificate, fail or answer slowly.
//!
//! ## What it does not emulate
//! - No protobuf, no CBOR and no YAML output: an `Accept` that allows only those
//!   gets 406. Built-in types other than pods, namespaces and nodes are printed with
//!   the default `Name, Created At` columns, where kube-apiserver has a printer of
//!   their own (a ConfigMap's `Data`, a Deployment's `Ready`...); column
//!   descriptions are the apiserver's of recent releases. Write verbs ignore
//!   `as=Table` and answer the plain object.
//! - SPDY/3.1 only for exec and attach (the `spdy` module says what of it is spoken):
//!   port-forward is not emulated at all, over SPDY or WebSocket.
//! - Strategic merge patch is JSON merge patch, except that lists whose elements all
//!   carry a `name` are merged by name and `$`-directives other than `$patch` are
//!   dropped. Server-side apply is that same merge into the object (or its creation);
//!   there are no managed fields, no field ownership, no conflicts.
//! - No admission, no validation beyond names and the fields a request must carry,
//!   no defaulting, no controllers (a Deployment never gets pods, a pod stays in the
//!   phase it was given), no finalizers, no garbage collection beyond namespaces, no
//!   RBAC and no impersonation: `Impersonate-*` headers are only recorded.
//! - Selectors are simplified: field selectors accept any field path rather than the
//!   few each type supports; `resourceVersion`/`resourceVersionMatch` on lists are
//!   ignored (lists are always current); `dryRun` is honoured on writes.
//! - Aggregated discovery and OpenAPI v2 are not served (404), and the OpenAPI v3
//!   documents carry paths and parameters but no schemas.

mod access;
mod auth;
mod exec;
mod faults;
mod handlers;
mod list_cache;
mod logs;
mod negotiation;
mod patch;
mod paths;
mod recording;
pub mod resources;
mod selectors;
mod server;
mod shell;
mod spdy;
mod status;
mod store;
mod table;
mod tls;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use faults::Fault;
pub use recording::{Identity, RecordedRequest};

use crate::faults::Knobs;
use crate::logs::PodLogs;
use crate::recording::Recorder;
use crate::resources::{ResourceType, Resources};
use crate::server::Server;
use crate::store::Store;
use crate::tls::TlsMaterial;

/// How the double treats TLS client certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Client certificates are not requested; callers authenticate with tokens.
    None,
    /// A certificate signed by the client CA authenticates its common name; callers
    /// without one may still use a token. A certificate from another CA fails the
    /// handshake.
    #[default]
    Optional,
    /// A handshake without a certificate signed by the client CA fails.
    Required,
}

/// How to start a [`KubeDouble`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Serve HTTPS (default) or plain HTTP.
    pub tls: bool,
    /// Whether and how client certificates are requested (ignored without TLS).
    pub client_auth: ClientAuth,
    /// The bearer tokens that authenticate a caller; default `["double-token"]`.
    pub tokens: Vec<String>,
    /// Serve `metrics.k8s.io/v1beta1` pod metrics; default false.
    pub metrics_api: bool,
    /// Where to listen; default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// Serve this certificate instead of the one the generated CA signs
    /// (ignored without TLS). [`KubeDouble::ca_pem`] still returns the
    /// generated CA, which then does not verify the server.
    pub server_certificate: Option<ServerCertificate>,
}

/// A serving certificate chain and its private key, both PEM, for
/// [`Options::server_certificate`].
#[derive(Clone)]
pub struct ServerCertificate {
    /// The end-entity certificate first, then any intermediates.
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerCertificate")
            .field("chain_pem", &self.chain_pem)
            .field("key_pem", &"***")
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: true,
            client_auth: ClientAuth::Optional,
            tokens: vec!["double-token".to_owned()],
            metrics_api: false,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            server_certificate: None,
        }
    }
}

/// State shared by the connection handling, the HTTP handlers and the
/// [`KubeDouble`] handle that tests hold.
pub(crate) struct Shared {
    pub(crate) access: access::Access,
    pub(crate) store: Store,
    /// Recent list answers, by request and resourceVersion.
    pub(crate) lists: list_cache::ListCache,
    pub(crate) resources: Resources,
    pub(crate) logs: PodLogs,
    pub(crate) recorder: Recorder,
    pub(crate) knobs: Knobs,
    pub(crate) tokens: Vec<String>,
    pub(crate) tls: TlsMaterial,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

/// A running Kubernetes API test double. It stops serving, and closes every open
/// connection and stream, when dropped.
pub struct KubeDouble {
    shared: Arc<Shared>,
    server: Server,
    url: String,
}

impl KubeDouble {
    /// Binds [`Options::listen`] (a free loopback port by default) and starts serving
    /// on the current Tokio runtime, with namespaces `default` and `kube-system`.
    pub async fn start(options: Options) -> anyhow::Result<KubeDouble> {
        let listener = tokio::net::TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let tls = TlsMaterial::generate(
            options.client_auth,
            addr.ip(),
            options.server_certificate.as_ref(),
        )?;
        let resources = Resources::new(options.metrics_api);
        let store = Store::new(&resources.namespaces());
        for namespace in ["default", "kube-system"] {
            store.ensure_namespace(namespace);
        }
        let (shutdown_sender, shutdown) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            access: access::Access::default(),
            store,
            lists: list_cache::ListCache::default(),
            resources,
            logs: PodLogs::default(),
            recorder: Recorder::default(),
            knobs: Knobs::default(),
            tokens: options.tokens,
            tls,
            shutdown,
        });
        let server = Server::start(shared.clone(), listener, options.tls, shutdown_sender)?;
        let scheme = if options.tls { "https" } else { "http" };
        Ok(KubeDouble {
            url: format!("{scheme}://{addr}"),
            shared,
            server,
        })
    }

    /// The base URL: `https://127.0.0.1:PORT`, or `http://` without TLS.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The address the double listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// PEM of the CA that signed the server certificate (whose SANs are
    /// `127.0.0.1`, `localhost` and the listening address).
    pub fn ca_pem(&self) -> String {
        self.shared.tls.ca_pem()
    }

    /// A client certificate for `common_name`, signed by the client CA the double
    /// trusts, and its PKCS#8 private key, both PEM.
    pub fn issue_client_cert(&self, common_name: &str) -> (String, String) {
        self.shared
            .tls
            .issue_client_cert(common_name)
            .expect("generating a client certificate")
    }

    /// A kubeconfig (YAML) for this double: its URL, its CA and the first token.
    pub fn kubeconfig(&self) -> String {
        use base64::Engine as _;
        let ca_data = base64::engine::general_purpose::STANDARD.encode(self.ca_pem());
        let token = self.shared.tokens.first().cloned().unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-double\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca_data}\nusers:\n- name: kube-double\n  user:\n    token: {token}\ncontexts:\n- name: kube-double\n  context:\n    cluster: kube-double\n    user: kube-double\n    namespace: default\ncurrent-context: kube-double\n",
            url = self.url,
        )
    }

    /// Every request received since start or the last [`clear_requests`](Self::clear_requests),
    /// in arrival order (the most recent 10,000).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.requests()
    }

    /// Response bodies being sent right now (a watch, a followed log, a slow
    /// body): one is closed when it ends or when its client goes away.
    pub fn open_responses(&self) -> usize {
        self.shared.knobs.open_responses()
    }

    /// Forgets the recorded requests and the list-call counts.
    pub fn clear_requests(&self) {
        self.shared.recorder.clear();
        self.shared.knobs.clear_list_calls();
    }

    /// How many LIST calls (not watches) a resource received, including those
    /// answered with an injected failure. `resource` is a plural (`"pods"`,
    /// matching that plural in every group) or `plural.group`
    /// (`"pods.metrics.k8s.io"`).
    pub fn list_calls(&self, resource: &str) -> usize {
        self.shared.knobs.list_calls(resource)
    }

    /// Denies `verb` on `resource` (a plural, or `plural/subresource`) of
    /// `group` (`""` for the core group) to every caller: such requests get the
    /// API server's 403 `Forbidden`, and `kubectl auth can-i` says no.
    pub fn deny(&self, verb: &str, group: &str, resource: &str) {
        self.shared.access.deny(verb, group, resource);
    }

    /// Changes how the whole server misbehaves; [`Fault::None`] restores normal
    /// service. `Refuse` and `WrongCertificate` also reset the connections already
    /// open, so pooled connections see the fault too (a client reusing one meets
    /// that reset once). Leaving `Refuse` binds the same port again, and panics if
    /// something else took it meanwhile.
    pub fn set_fault(&self, fault: Fault) {
        let previous = self.shared.knobs.set_fault(fault);
        match fault {
            Fault::Refuse => {
                self.server.close_listener();
                self.server.reset_connections();
            }
            Fault::WrongCertificate => self.server.reset_connections(),
            _ => {}
        }
        if previous == Fault::Refuse && fault != Fault::Refuse {
            self.server
                .reopen_listener()
                .expect("re-binding the double's port after Fault::Refuse");
        }
    }

    /// Every request on a resource (`plural` or `plural.group`, as in
    /// [`list_calls`](Self::list_calls)) is answered with `status` and a Kubernetes
    /// `Status` body. A status below 400 stops the failures.
    pub fn fail_resource(&self, plural: &str, status: u16) {
        self.shared.knobs.fail_resource(plural, status);
    }

    /// Every request on a resource waits `delay` before it is handled (and before
    /// its headers are sent). `Duration::ZERO` stops the delay.
    pub fn delay_resource(&self, plural: &str, delay: Duration) {
        self.shared.knobs.delay_resource(plural, delay);
    }

    /// Stores an object as is (creating or replacing it), with uid,
    /// creationTimestamp and resourceVersion filled in; a namespaced object's
    /// namespace (`metadata.namespace`, else `default`) is created when missing.
    /// Panics when the resource is unknown.
    pub fn put_object(&self, api_version: &str, plural: &str, object: serde_json::Value) {
        let resource = self.resource(api_version, plural);
        if let Err(error) = self.shared.store.put(&resource, object) {
            panic!("kube-double: cannot store {plural}: {error}");
        }
    }

    /// Adds a custom resource: it appears in discovery and supports everything the
    /// built-in types do (except strategic merge patch, as on a real server).
    pub fn register_custom_resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
    ) {
        self.shared.resources.register(ResourceType::custom(
            group, version, plural, kind, namespaced,
        ));
    }

    /// Appends a line to a pod's log; followers of that log receive it at once.
    pub fn append_log(&self, namespace: &str, pod: &str, line: &str) {
        self.shared.logs.append(namespace, pod, line);
    }

    /// Makes a pod's log start with `total_bytes` of generated lines, produced as
    /// they are streamed (for memory benchmarks).
    pub fn set_generated_log(&self, namespace: &str, pod: &str, total_bytes: u64) {
        self.shared.logs.set_generated(namespace, pod, total_bytes);
    }

    fn resource(&self, api_version: &str, plural: &str) -> Arc<ResourceType> {
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        self.shared
            .resources
            .find(group, version, plural)
            .unwrap_or_else(|| panic!("kube-double: unknown resource {plural} in {api_version}"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_handle_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::KubeDouble>();
    }
}
