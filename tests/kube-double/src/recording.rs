//! Recording every request the double receives, so tests can check what a proxy
//! forwarded: method, path, raw query, all headers and who the caller turned out
//! to be. Recording happens before authentication and before any fault, so refused
//! and hung requests are recorded too (except under `Fault::Refuse`, where nothing
//! arrives).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, Version};

use crate::server::ConnectionInfo;
use crate::Shared;

/// How many requests are kept; older ones are forgotten first.
const RECORD_LIMIT: usize = 10_000;

/// Who a request authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A bearer token from `Options::tokens` (from `Authorization` or the WebSocket
    /// bearer subprotocol).
    Token(String),
    /// The common name of a client certificate signed by the client CA.
    ClientCert(String),
    /// No valid credential: the request was answered 401 (unless it was for a
    /// health endpoint).
    Anonymous,
}

impl Identity {
    /// Who the caller is, for logs: never the token itself.
    fn describe(&self) -> String {
        match self {
            Identity::Token(_) => "a bearer token".to_owned(),
            Identity::ClientCert(common_name) => format!("client certificate {common_name}"),
            Identity::Anonymous => "anonymous".to_owned(),
        }
    }
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    /// The path, as sent (not decoded).
    pub path: String,
    /// The raw query string, byte for byte, without the `?`.
    pub query: Option<String>,
    /// HTTP/1.1 or HTTP/2.
    pub version: Version,
    /// The caller's address and port, which tells connections apart.
    pub peer: Option<std::net::SocketAddr>,
    /// The protocol the connection's TLS handshake agreed on by ALPN
    /// (`h2`, `http/1.1`), if any.
    pub alpn: Option<String>,
    /// Every header in arrival order, names lowercased, repeated headers kept
    /// (values that are not UTF-8 are converted lossily).
    pub headers: Vec<(String, String)>,
    pub identity: Identity,
}

impl RecordedRequest {
    fn of(request: &Request, identity: Identity) -> Self {
        RecordedRequest {
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().map(str::to_owned),
            version: request.version(),
            peer: request
                .extensions()
                .get::<ConnectionInfo>()
                .map(|connection| connection.peer),
            alpn: request
                .extensions()
                .get::<ConnectionInfo>()
                .and_then(|connection| connection.alpn.clone()),
            headers: request
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            identity,
        }
    }

    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }

    /// Every value of a header, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

#[derive(Default)]
pub(crate) struct Recorder {
    requests: Mutex<VecDeque<RecordedRequest>>,
}

impl Recorder {
    fn push(&self, request: RecordedRequest) {
        let mut requests = self.requests.lock().expect("recorder poisoned");
        if requests.len() == RECORD_LIMIT {
            requests.pop_front();
        }
        requests.push_back(request);
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        let requests = self.requests.lock().expect("recorder poisoned");
        requests.iter().cloned().collect()
    }

    pub(crate) fn clear(&self) {
        self.requests.lock().expect("recorder poisoned").clear();
    }
}

/// Middleware: identifies the caller, records the request, and hands the identity
/// on to authentication.
pub(crate) async fn record(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let identity = crate::auth::identify(
        request.headers(),
        request.extensions().get::<ConnectionInfo>(),
        &shared.tokens,
    );
    tracing::debug!(
        target: "kube_double::requests",
        method = %request.method(),
        uri = %request.uri(),
        version = ?request.version(),
        caller = identity.describe(),
        "request"
    );
    shared
        .recorder
        .push(RecordedRequest::of(&request, identity.clone()));
    request.extensions_mut().insert(identity);
    next.run(request).await
}
