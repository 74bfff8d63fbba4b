//! Authentication as the API server's authenticator chain does it for the
//! credentials the double knows: a verified client certificate first, then a bearer
//! token (from `Authorization`, or for WebSocket requests from the
//! `base64url.bearer.authorization.k8s.io.<token>` subprotocol). There is no
//! authorization: an authenticated caller may do anything.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use http::HeaderMap;

use crate::recording::Identity;
use crate::server::ConnectionInfo;
use crate::status::ApiError;

/// The WebSocket subprotocol prefix that carries a bearer token.
pub(crate) const BEARER_SUBPROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// Paths any caller may reach, as with the API server's default anonymous access.
const PUBLIC_PATHS: [&str; 3] = ["/healthz", "/livez", "/readyz"];

/// Who the request's credentials identify.
pub(crate) fn identify(
    headers: &HeaderMap,
    connection: Option<&ConnectionInfo>,
    tokens: &[String],
) -> Identity {
    if let Some(common_name) = connection.and_then(|info| info.client_common_name.clone()) {
        return Identity::ClientCert(common_name);
    }
    let known = |token: &str| tokens.iter().any(|known| known == token);
    let from_header = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .find(|token| known(token))
        .map(str::to_owned);
    let from_subprotocol = || {
        headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|protocol| protocol.trim().strip_prefix(BEARER_SUBPROTOCOL_PREFIX))
            .filter_map(|encoded| {
                let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(encoded.trim_end_matches('='))
                    .ok()?;
                String::from_utf8(decoded).ok()
            })
            .find(|token| known(token))
    };
    match from_header.or_else(from_subprotocol) {
        Some(token) => Identity::Token(token),
        None => Identity::Anonymous,
    }
}

/// Middleware: answers 401 to anonymous callers outside the public paths.
pub(crate) async fn require_authentication(request: Request, next: Next) -> Response {
    let anonymous = matches!(
        request.extensions().get::<Identity>(),
        None | Some(Identity::Anonymous)
    );
    if anonymous && !PUBLIC_PATHS.contains(&request.uri().path()) {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn tokens() -> Vec<String> {
        vec!["double-token".to_owned()]
    }

    #[test]
    fn bearer_tokens_must_be_known() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer double-token"),
        );
        assert_eq!(
            identify(&headers, None, &tokens()),
            Identity::Token("double-token".into())
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
        assert_eq!(identify(&headers, None, &tokens()), Identity::Anonymous);
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic double-token"),
        );
        assert_eq!(identify(&headers, None, &tokens()), Identity::Anonymous);
    }

    #[test]
    fn websocket_bearer_subprotocol() {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("double-token");
        let mut headers = HeaderMap::new();
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(&format!(
                "v5.channel.k8s.io, {BEARER_SUBPROTOCOL_PREFIX}{encoded}"
            ))
            .unwrap(),
        );
        assert_eq!(
            identify(&headers, None, &tokens()),
            Identity::Token("double-token".into())
        );
    }

    #[test]
    fn client_certificates_come_first() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer double-token"),
        );
        let connection = ConnectionInfo::for_tests(Some("alice"));
        assert_eq!(
            identify(&headers, Some(&connection), &tokens()),
            Identity::ClientCert("alice".into())
        );
    }
}
