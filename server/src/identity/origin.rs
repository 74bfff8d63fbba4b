//! Which browsers may drive kubeportal.
//!
//! - While guest access is on, a request is served only when its `Host` is a
//!   loopback name or address (`localhost`, `127.0.0.1`, `[::1]`, any port) or
//!   the host of `server.publicUrl`: a page that rebinds its own DNS name to
//!   127.0.0.1 reaches the port but not the guest.
//! - Everywhere, a WebSocket upgrade or a write (any method but GET, HEAD and
//!   OPTIONS) that carries an `Origin` other than kubeportal's own is refused
//!   unless `server.allowedOrigins` lists it: browsers send WebSockets and
//!   form posts across origins without asking, and kubeportal sets no CORS
//!   headers, so nothing else from another origin gets an answer it can read.
//!
//! - The origins in `server.allowedOrigins` (a Backstage app on its own
//!   host, say) may also read kubeportal's answers: CORS admits them, and
//!   only them, for every route.
//!
//! Clients that are not browsers send no `Origin` and are not affected.

use std::net::IpAddr;

use http::{header, HeaderMap, Method};

use crate::error::ApiError;

/// Host and origin rules, from the configuration.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Check `Host` (guest access is on).
    guest: bool,
    /// `server.publicUrl`'s origin and host.
    public: Option<Origin>,
    /// `server.allowedOrigins`.
    allowed: Vec<Origin>,
}

/// A scheme, host and port, compared without case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(text: &str) -> Option<Origin> {
        let url = url::Url::parse(text).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        Some(Origin {
            scheme: url.scheme().to_owned(),
            host: bare_host(url.host_str()?),
            port: url.port_or_known_default()?,
        })
    }
}

/// `[::1]` → `::1`, lower case.
fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// An `server.allowedOrigins` entry that is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("{0}")]
    NotAUrl(url::ParseError),
    #[error("expected an origin such as https://portal.example or http://localhost:3000 (scheme, host and port only)")]
    NotAnOrigin,
}

/// Checks an `server.allowedOrigins` entry: `scheme://host[:port]` and nothing more.
pub fn validate_allowed_origin(text: &str) -> Result<(), OriginError> {
    let url = url::Url::parse(text).map_err(OriginError::NotAUrl)?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if Origin::parse(text).is_none() || !bare || !url.username().is_empty() {
        return Err(OriginError::NotAnOrigin);
    }
    Ok(())
}

/// CORS for the origins of `server.allowedOrigins` (none without them):
/// preflights answered for any method and requested header, responses
/// readable with their `ETag`, `Warning` and `Location`. Credentials are
/// allowed so a frontend whose fetch sends cookies works; kubeportal itself
/// reads no cookie and never forwards one.
pub fn cors(allowed_origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
    let origins: Vec<http::HeaderValue> = allowed_origins
        .iter()
        .filter_map(|origin| {
            let url = url::Url::parse(origin).ok()?;
            http::HeaderValue::from_str(&url.origin().ascii_serialization()).ok()
        })
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods(AllowMethods::mirror_request())
            .allow_headers(AllowHeaders::mirror_request())
            .allow_credentials(true)
            .expose_headers([header::ETAG, header::WARNING, header::LOCATION])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

impl OriginPolicy {
    pub fn new(guest: bool, public_url: Option<&str>, allowed_origins: &[String]) -> Self {
        Self {
            guest,
            public: public_url.and_then(Origin::parse),
            allowed: allowed_origins
                .iter()
                .filter_map(|origin| Origin::parse(origin))
                .collect(),
        }
    }

    /// Why a request must not be served, if it must not.
    pub fn refusal(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) -> Option<ApiError> {
        // Read only when it is compared: most requests are reads without a guest.
        let host = || request_host(uri, headers);
        if self.guest && !matches!(uri.path(), "/healthz" | "/readyz") {
            let trusted = host().as_ref().is_some_and(|(host, _)| {
                is_loopback(host)
                    || self
                        .public
                        .as_ref()
                        .is_some_and(|public| &public.host == host)
            });
            if !trusted {
                return Some(ApiError::Refused(
                    "with guest access on, only requests to a loopback host or to server.publicUrl are served".into(),
                ));
            }
        }
        let upgrade = method == Method::CONNECT || headers.contains_key(header::UPGRADE);
        let write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !(upgrade || write) {
            return None;
        }
        let origin = headers.get(header::ORIGIN)?;
        let origin = origin.to_str().ok().and_then(Origin::parse);
        let same = origin.as_ref().is_some_and(|origin| {
            let own_host = host().as_ref().is_some_and(|(host, port)| {
                *host == origin.host && port.unwrap_or(origin.port) == origin.port
            });
            own_host || self.public.as_ref() == Some(origin) || self.allowed.contains(origin)
        });
        (!same).then(|| {
            ApiError::Refused(
                "cross-origin request refused: list the origin in server.allowedOrigins to allow it"
                    .into(),
            )
        })
    }
}

/// The host (bare, lower case) and explicit port a request is addressed to:
/// HTTP/2's `:authority` or an absolute URI, else the `Host` header.
fn request_host(uri: &http::Uri, headers: &HeaderMap) -> Option<(String, Option<u16>)> {
    let authority = match uri.authority() {
        Some(authority) => authority.clone(),
        None => headers
            .get(header::HOST)?
            .to_str()
            .ok()?
            .parse::<http::uri::Authority>()
            .ok()?,
    };
    if authority.as_str().contains('@') {
        return None;
    }
    Some((bare_host(authority.host()), authority.port_u16()))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &OriginPolicy, method: &str, host: &str, origin: Option<&str>) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        let uri: http::Uri = "/api/kubernetes/clusters".parse().unwrap();
        policy
            .refusal(&method.parse().unwrap(), &uri, &headers)
            .is_some()
    }

    #[test]
    fn the_guest_is_served_only_on_loopback_hosts_or_the_public_url() {
        let policy = OriginPolicy::new(true, Some("https://portal.example"), &[]);
        for host in [
            "localhost",
            "localhost:7007",
            "127.0.0.1:7007",
            "127.1.2.3",
            "[::1]:7007",
            "LOCALHOST:1",
            "portal.example",
            "portal.example:443",
        ] {
            assert!(!refused(&policy, "GET", host, None), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:7007",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "user@localhost",
            "10.0.0.1:7007",
        ] {
            assert!(refused(&policy, "GET", host, None), "{host}");
        }
        let no_guest = OriginPolicy::new(false, None, &[]);
        assert!(!refused(&no_guest, "GET", "evil.example", None));
    }

    #[test]
    fn cross_origin_writes_need_an_allowed_origin() {
        let policy = OriginPolicy::new(
            false,
            Some("https://portal.example"),
            &["http://localhost:3000".to_owned()],
        );
        let host = "127.0.0.1:7007";
        assert!(!refused(&policy, "POST", host, None));
        assert!(!refused(
            &policy,
            "POST",
            host,
            Some("http://127.0.0.1:7007")
        ));
        assert!(!refused(
            &policy,
            "POST",
            host,
            Some("https://portal.example")
        ));
        assert!(!refused(
            &policy,
            "DELETE",
            host,
            Some("http://localhost:3000")
        ));
        assert!(!refused(&policy, "GET", host, Some("https://evil.example")));
        assert!(refused(&policy, "POST", host, Some("https://evil.example")));
        assert!(refused(&policy, "PUT", host, Some("http://127.0.0.1:7008")));
        assert!(refused(&policy, "PATCH", host, Some("null")));
        assert!(refused(
            &policy,
            "DELETE",
            host,
            Some("http://localhost:3001")
        ));
        // Behind a TLS-terminating proxy that keeps the Host header.
        assert!(!refused(
            &policy,
            "POST",
            "kube.example",
            Some("https://kube.example")
        ));
    }

    #[test]
    fn allowed_origins_are_plain_origins() {
        validate_allowed_origin("https://portal.example").unwrap();
        validate_allowed_origin("http://localhost:3000").unwrap();
        for bad in [
            "portal.example",
            "https://portal.example/app",
            "ftp://x",
            "*",
        ] {
            assert!(validate_allowed_origin(bad).is_err(), "{bad}");
        }
    }
}
