//! Which headers cross the proxy. Removed on the way in: hop-by-hop headers,
//! `Host`, the portal `Authorization` and cookies, every `Backstage-*` header,
//! caller `Impersonate-*` and front-proxy `X-Remote-*` headers, and the bearer
//! subprotocol of a browser WebSocket. On the way out: hop-by-hop headers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};
use secrecy::SecretString;

use crate::error::ApiError;
use crate::upstream::CLUSTER_TOKEN_HEADER;

/// The WebSocket subprotocol prefix browsers use to carry a cluster token.
const BEARER_PROTOCOL: &str = "base64url.bearer.authorization.k8s.io.";

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    list_tokens(headers, header::CONNECTION)
}

/// The tokens of a comma-separated header, lower case, in every line of it.
fn list_tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
}

/// A request body in a transfer coding other than chunked alone is refused,
/// as Go's HTTP server (the API server's) refuses it with 501: a coding
/// such as `gzip, chunked` would not be undone, and its bytes would go on
/// as the body. Chunked is taken in any case, in one `Transfer-Encoding`
/// line; HTTP/2 has no such header.
pub fn transfer_coding_refusal(headers: &HeaderMap) -> Option<ApiError> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let first = codings.next()?;
    let chunked_alone = codings.next().is_none()
        && first
            .to_str()
            .is_ok_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
    (!chunked_alone).then(|| {
        ApiError::NotImplemented(
            "a request body's transfer coding must be chunked alone; no other is supported".into(),
        )
    })
}

/// Whether the request asks to switch protocols (WebSocket, SPDY).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|token| token == "upgrade")
}

/// Whether an HTTP/1.1 upgrade asks for a WebSocket (rather than SPDY).
pub fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// Whether an HTTP/1.1 upgrade asks for SPDY/3.1 (exec, attach and
/// port-forward of clients before WebSocket).
pub fn is_spdy(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("spdy/3.1"))
}

/// Turns the headers of a WebSocket over HTTP/2 (already passed through
/// [`forwardable`] as an upgrade) into an HTTP/1.1 WebSocket handshake for
/// the cluster: `Upgrade: websocket`, a fresh `Sec-WebSocket-Key`, version 13.
pub fn as_http1_websocket(headers: &mut HeaderMap) {
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let key = base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes());
    if let Ok(key) = HeaderValue::from_str(&key) {
        headers.insert(header::SEC_WEBSOCKET_KEY, key);
    }
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
}

fn is_stripped_request_header(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
        || matches!(
            name,
            "host" | "authorization" | "cookie" | "upgrade" | "sec-websocket-protocol"
        )
        || name.starts_with("backstage-")
        || name.starts_with("impersonate-")
        || name.starts_with("x-remote-")
}

/// The request headers to send upstream (credentials are added separately).
pub fn forwardable(incoming: &HeaderMap, upgrade: bool) -> HeaderMap {
    let named_by_connection: Vec<String> = connection_tokens(incoming).collect();
    let mut outgoing = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        let lower = name.as_str();
        if is_stripped_request_header(lower)
            || named_by_connection.iter().any(|token| token == lower)
        {
            continue;
        }
        outgoing.append(name.clone(), value.clone());
    }
    if upgrade {
        outgoing.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        for value in incoming.get_all(header::UPGRADE) {
            outgoing.append(header::UPGRADE, value.clone());
        }
        let protocols: Vec<&str> = incoming
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|protocol| !protocol.is_empty() && !protocol.starts_with(BEARER_PROTOCOL))
            .collect();
        if !protocols.is_empty() {
            if let Ok(value) = HeaderValue::from_str(&protocols.join(", ")) {
                outgoing.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
            }
        }
    }
    outgoing
}

/// Removes hop-by-hop headers from an upstream response; a 101 keeps its
/// `Connection: Upgrade` and `Upgrade`.
pub fn strip_response(headers: &mut HeaderMap, upgrade: bool) {
    single_length(headers);
    // Most responses carry none of them (tokens named by `Connection` need a
    // `Connection` header): one pass over the names tells.
    let hop_by_hop =
        |name: &HeaderName| HOP_BY_HOP.contains(&name.as_str()) || name == header::UPGRADE;
    if !headers.keys().any(hop_by_hop) {
        return;
    }
    // A response framed by chunks whose `Content-Length` came along: the
    // chunks win (RFC 9112, 6.3), and the length, which the client would
    // read the body by, goes.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    let named_by_connection: Vec<String> = connection_tokens(headers).collect();
    for name in named_by_connection {
        if upgrade && name == "upgrade" {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        if upgrade && name == "connection" {
            continue;
        }
        headers.remove(name);
    }
    if !upgrade {
        headers.remove(header::UPGRADE);
    }
}

/// A `Content-Length` the cluster repeated (`2, 2`, or two lines of it),
/// which HTTP allows when the values agree, goes on once: a client's parser
/// may refuse a list. Values that disagree (which the client of kubeportal
/// refuses before this) leave no length at all.
fn single_length(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return;
    };
    if values.next().is_none() && !first.as_bytes().contains(&b',') {
        return;
    }
    let mut lengths = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .map(|length| length.trim_ascii());
    let agreed = lengths
        .next()
        .filter(|length| !length.is_empty() && length.iter().all(u8::is_ascii_digit));
    let agreed = agreed
        .filter(|length| lengths.all(|other| other == *length))
        .and_then(|length| HeaderValue::from_bytes(length).ok());
    headers.remove(header::CONTENT_LENGTH);
    if let Some(length) = agreed {
        headers.insert(header::CONTENT_LENGTH, length);
    }
}

/// The protocols an `Upgrade` header names, lower case (`websocket`,
/// `spdy/3.1`).
pub fn upgrade_tokens(headers: &HeaderMap) -> Vec<String> {
    list_tokens(headers, header::UPGRADE).collect()
}

/// The identity a caller asks to act as with its own `Impersonate-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedIdentity {
    pub user: String,
    pub groups: Vec<String>,
}

/// Reads a caller's `Impersonate-User` and `Impersonate-Group` headers.
/// `Impersonate-Uid` and `Impersonate-Extra-*` cannot be granted through the
/// portal and are refused, as are groups without a user (the API server
/// refuses those too).
pub fn requested_impersonation(headers: &HeaderMap) -> Result<Option<RequestedIdentity>, ApiError> {
    let mut user = None;
    let mut groups = Vec::new();
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with("impersonate-") {
            continue;
        }
        let text = || {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::Input(format!("{name}: not a valid name")))
        };
        match name {
            "impersonate-user" if user.is_none() => user = Some(text()?),
            "impersonate-user" => {
                return Err(ApiError::Input(
                    "impersonate-user: only one user can be impersonated".into(),
                ))
            }
            "impersonate-group" => groups.push(text()?),
            _ => {
                return Err(ApiError::Refused(format!(
                    "impersonation through the portal is not allowed: {name} cannot be granted"
                )))
            }
        }
    }
    match user {
        Some(user) => Ok(Some(RequestedIdentity { user, groups })),
        None if groups.is_empty() => Ok(None),
        None => Err(ApiError::Input(
            "impersonate-group: groups can only be impersonated together with Impersonate-User"
                .into(),
        )),
    }
}

fn bearer_value(name: &str, value: &HeaderValue) -> Result<SecretString, ApiError> {
    let text = value
        .to_str()
        .map_err(|_| ApiError::Input(format!("{name}: not a valid token")))?
        .trim();
    let token = match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => text,
    };
    if token.is_empty() {
        return Err(ApiError::Input(format!("{name}: empty token")));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// The caller's cluster token from `provider_header` (e.g.
/// `backstage-kubernetes-authorization-oidc-okta`) or the generic
/// [`CLUSTER_TOKEN_HEADER`].
pub fn caller_cluster_token(
    headers: &HeaderMap,
    provider_header: Option<&HeaderName>,
) -> Result<Option<SecretString>, ApiError> {
    for name in provider_header.into_iter().chain([&CLUSTER_TOKEN_HEADER]) {
        if let Some(value) = headers.get(name) {
            return bearer_value(name.as_str(), value).map(Some);
        }
    }
    Ok(None)
}

/// A cluster token a browser sent as the `base64url.bearer.authorization.k8s.io.` subprotocol.
pub fn websocket_token(headers: &HeaderMap) -> Result<Option<SecretString>, ApiError> {
    let encoded = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .find_map(|protocol| protocol.strip_prefix(BEARER_PROTOCOL));
    let Some(encoded) = encoded else {
        return Ok(None);
    };
    let token = URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::Input("Sec-WebSocket-Protocol: malformed bearer token subprotocol".into())
        })?;
    Ok(Some(SecretString::from(token)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn spoofable_and_portal_headers_do_not_cross() {
        let incoming = headers(&[
            ("host", "portal.example"),
            ("authorization", "Bearer portal-token"),
            ("cookie", "session=1"),
            ("backstage-kubernetes-cluster", "dev"),
            ("backstage-kubernetes-authorization", "Bearer cluster-token"),
            ("impersonate-user", "system:admin"),
            ("Impersonate-Group", "system:masters"),
            ("impersonate-extra-scopes", "x"),
            ("x-remote-user", "admin"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "hop"),
            ("te", "trailers"),
            ("content-type", "application/json"),
            ("accept", "application/json;as=Table;v=v1;g=meta.k8s.io"),
        ]);
        let outgoing = forwardable(&incoming, false);
        let names: Vec<&str> = outgoing.keys().map(|name| name.as_str()).collect();
        assert_eq!(names, ["content-type", "accept"]);
    }

    #[test]
    fn upgrades_keep_their_handshake_but_not_the_bearer_protocol() {
        let token = URL_SAFE_NO_PAD.encode("cluster-token");
        let incoming = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            (
                "sec-websocket-protocol",
                &format!("{BEARER_PROTOCOL}{token}, v5.channel.k8s.io"),
            ),
        ]);
        assert!(is_upgrade(&incoming));
        let outgoing = forwardable(&incoming, true);
        assert_eq!(outgoing["connection"], "Upgrade");
        assert_eq!(outgoing["upgrade"], "websocket");
        assert_eq!(outgoing["sec-websocket-protocol"], "v5.channel.k8s.io");
        assert_eq!(outgoing["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            websocket_token(&incoming).unwrap().unwrap().expose_secret(),
            "cluster-token"
        );
    }

    #[test]
    fn cluster_tokens_come_from_the_provider_header_first() {
        let incoming = headers(&[
            ("backstage-kubernetes-authorization", "Bearer generic"),
            (
                "backstage-kubernetes-authorization-oidc-okta",
                "Bearer okta-token",
            ),
        ]);
        let okta = HeaderName::from_static("backstage-kubernetes-authorization-oidc-okta");
        let token = caller_cluster_token(&incoming, Some(&okta))
            .unwrap()
            .unwrap();
        assert_eq!(token.expose_secret(), "okta-token");
        let token = caller_cluster_token(&incoming, None).unwrap().unwrap();
        assert_eq!(token.expose_secret(), "generic");
        assert!(caller_cluster_token(&HeaderMap::new(), Some(&okta))
            .unwrap()
            .is_none());
    }

    #[test]
    fn responses_lose_hop_by_hop_headers() {
        let mut response = headers(&[
            ("connection", "close"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
            ("audit-id", "1"),
        ]);
        strip_response(&mut response, false);
        let mut names: Vec<&str> = response.keys().map(|name| name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["audit-id", "content-type"]);
    }

    /// Chunks win over a length sent beside them: the client would read the
    /// body by the length, and stop part-way.
    #[test]
    fn a_chunked_response_loses_the_length_beside_it() {
        let mut response = headers(&[
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
        ]);
        strip_response(&mut response, false);
        let names: Vec<&str> = response.keys().map(|name| name.as_str()).collect();
        assert_eq!(names, ["content-type"]);
        let mut response = headers(&[("content-length", "5")]);
        strip_response(&mut response, false);
        assert_eq!(response.get("content-length").unwrap(), "5");
    }

    /// A length the cluster repeated goes on once; lengths that disagree
    /// leave none.
    #[test]
    fn a_repeated_length_goes_on_once() {
        for (sent, kept) in [
            (vec!["2, 2"], Some("2")),
            (vec!["2", "2"], Some("2")),
            (vec![" 7 ,7,  7 "], Some("7")),
            (vec!["2, 3"], None),
            (vec!["2", "3"], None),
            (vec!["2,"], None),
            (vec!["-2, -2"], None),
            (vec!["12"], Some("12")),
        ] {
            let mut response = HeaderMap::new();
            for value in &sent {
                response.append("content-length", value.parse().unwrap());
            }
            strip_response(&mut response, false);
            let lengths: Vec<&str> = response
                .get_all("content-length")
                .iter()
                .map(|value| value.to_str().unwrap())
                .collect();
            assert_eq!(lengths, kept.into_iter().collect::<Vec<_>>(), "{sent:?}");
        }
    }
}
