//! Looking entities up in a Backstage catalog, with the caller's token.

use http::HeaderMap;
use serde_json::Value;

use crate::error::ApiError;

/// `kind:namespace/name`, with Backstage's defaults (kind `component`,
/// namespace `default`).
pub fn parse_entity_ref(reference: &str) -> Result<(String, String, String), ApiError> {
    let invalid = || {
        ApiError::Input(format!(
            "entityRef: `{reference}` is not an entity ref such as component:default/shop-api"
        ))
    };
    let (kind, rest) = reference
        .split_once(':')
        .unwrap_or(("component", reference));
    let (namespace, name) = rest.split_once('/').unwrap_or(("default", rest));
    // Letters, digits, `-`, `_` and `.`, and not only dots: a part becomes a
    // path segment of the catalog URL, where `.` and `..` would move the
    // request (with the caller's token) elsewhere on the catalog.
    let part_ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 253
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && part.bytes().any(|b| b != b'.')
    };
    if !(part_ok(kind) && part_ok(namespace) && part_ok(name)) {
        return Err(invalid());
    }
    Ok((
        kind.to_ascii_lowercase(),
        namespace.to_owned(),
        name.to_owned(),
    ))
}

/// `{base}/api/catalog/entities/by-name/{kind}/{namespace}/{name}`, each
/// part one encoded path segment.
fn catalog_url(base: &str, kind: &str, namespace: &str, name: &str) -> Result<url::Url, ApiError> {
    let mut url =
        url::Url::parse(base).map_err(|_| ApiError::internal("catalog.baseUrl is not a URL"))?;
    url.path_segments_mut()
        .map_err(|_| ApiError::internal("catalog.baseUrl cannot have a path"))?
        .pop_if_empty()
        .extend([
            "api", "catalog", "entities", "by-name", kind, namespace, name,
        ]);
    Ok(url)
}

/// Fetches an entity from `{base}/api/catalog/entities/by-name/{kind}/{namespace}/{name}`.
pub async fn fetch_entity(
    client: &reqwest::Client,
    base_url: Option<&str>,
    reference: &str,
    incoming: &HeaderMap,
) -> Result<Value, ApiError> {
    let (kind, namespace, name) = parse_entity_ref(reference)?;
    let base = base_url.ok_or_else(|| {
        ApiError::Unavailable("no catalog is configured (catalog.baseUrl); send the entity itself to /api/kubernetes/services/{entityName}".into())
    })?;
    let url = catalog_url(base, &kind, &namespace, &name)?;
    let mut request = client.get(url);
    if let Some(authorization) = incoming.get(http::header::AUTHORIZATION) {
        request = request.header(http::header::AUTHORIZATION, authorization.clone());
    }
    let response = request.send().await.map_err(|error| {
        ApiError::BadGateway(format!(
            "the catalog is unreachable: {}",
            error.without_url()
        ))
    })?;
    match response.status().as_u16() {
        200 => response.json().await.map_err(|_| {
            ApiError::BadGateway("the catalog answered something that is not an entity".into())
        }),
        // Backstage answers a missing entity as bad input, naming the ref.
        404 => Err(ApiError::Input(format!(
            "Entity ref missing, {kind}:{namespace}/{name}"
        ))),
        status => Err(ApiError::BadGateway(format!(
            "the catalog answered {status}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_refs_take_backstage_defaults() {
        assert_eq!(
            parse_entity_ref("component:shop/api").unwrap(),
            ("component".into(), "shop".into(), "api".into())
        );
        assert_eq!(
            parse_entity_ref("api").unwrap(),
            ("component".into(), "default".into(), "api".into())
        );
        assert_eq!(
            parse_entity_ref("Resource:db").unwrap(),
            ("resource".into(), "default".into(), "db".into())
        );
        for bad in [
            "",
            "a:b/c/d",
            "a:/b",
            "x:y/../z",
            "a b",
            "component:default/..",
            "..:default/x",
            "component:../x",
            "component:default/.",
            "component:default/a%2Fb",
            "component:default/a%2e%2e",
        ] {
            assert!(parse_entity_ref(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn catalog_urls_keep_each_part_in_its_segment() {
        let url =
            catalog_url("http://backstage:7007/base/", "component", "default", "a.b").unwrap();
        assert_eq!(
            url.as_str(),
            "http://backstage:7007/base/api/catalog/entities/by-name/component/default/a.b"
        );
    }
}
