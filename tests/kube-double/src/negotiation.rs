//! Output negotiation: which representation a request's `Accept` header asks for,
//! as k8s.io/apiserver's `negotiation.NegotiateMediaTypeOptions` decides it.
//!
//! The clauses of `Accept` are tried in order of preference (`q` first, then
//! concrete types before wildcards, otherwise in the order given); the first one
//! the double can produce wins. The double produces JSON only, so a clause counts
//! when its media range covers `application/json` (`application/json`,
//! `application/*`, `*/*`) and its parameters are acceptable: `as`, `g` and `v`
//! must together name `Table`, `PartialObjectMetadata` or
//! `PartialObjectMetadataList` in `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`
//! (the apiserver's `RequestScope.AllowsMediaTypeTransform`), `stream` may only be
//! `watch`, `sv` only `v1`; any other parameter is ignored. A missing or empty
//! header means plain JSON. When no clause fits the answer is 406 `NotAcceptable`.

use crate::status::ApiError;

/// The `meta.k8s.io` version a transformed answer is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetaVersion {
    V1,
    V1beta1,
}

impl MetaVersion {
    /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`.
    pub(crate) fn api_version(self) -> &'static str {
        match self {
            MetaVersion::V1 => "meta.k8s.io/v1",
            MetaVersion::V1beta1 => "meta.k8s.io/v1beta1",
        }
    }
}

/// What the response body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// The objects themselves (or their list).
    Plain,
    /// A `Table`.
    Table(MetaVersion),
    /// A `PartialObjectMetadata` (for one object, and for each watch event).
    PartialObjectMetadata(MetaVersion),
    /// A `PartialObjectMetadataList` (for a list).
    PartialObjectMetadataList(MetaVersion),
}

/// One clause of an `Accept` header.
struct Clause<'a> {
    media_type: &'a str,
    subtype: &'a str,
    q: f32,
    params: Vec<(&'a str, &'a str)>,
}

/// The representation `accept` asks for, or the apiserver's 406.
pub(crate) fn negotiate(accept: Option<&str>) -> Result<Output, ApiError> {
    let header = accept.unwrap_or_default();
    if header.trim().is_empty() {
        return Ok(Output::Plain);
    }
    let mut clauses = parse(header);
    // goautoneg's order: higher q first, then concrete types and subtypes before
    // wildcards; clauses that tie keep the order they were sent in.
    clauses.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then_with(|| (a.media_type == "*").cmp(&(b.media_type == "*")))
            .then_with(|| (a.subtype == "*").cmp(&(b.subtype == "*")))
    });
    clauses
        .iter()
        .filter(|clause| clause.q > 0.0)
        .filter(|clause| {
            matches!(
                (clause.media_type, clause.subtype),
                ("application", "json") | ("application", "*") | ("*", "*")
            )
        })
        .find_map(acceptable)
        .ok_or_else(|| {
            ApiError::not_acceptable(
                "only the following media types are accepted: application/json".to_owned(),
            )
        })
}

fn parse(header: &str) -> Vec<Clause<'_>> {
    header
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let range = pieces.next()?.trim();
            let (media_type, subtype) = match range.split_once('/') {
                Some((media_type, subtype)) => (media_type.trim(), subtype.trim()),
                None if range == "*" => ("*", "*"),
                None => return None,
            };
            let mut q = 1.0;
            let mut params = Vec::new();
            for param in pieces {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let (key, value) = (key.trim(), value.trim());
                if key == "q" {
                    q = value.parse().unwrap_or(0.0);
                } else {
                    params.push((key, value));
                }
            }
            Some(Clause {
                media_type,
                subtype,
                q,
                params,
            })
        })
        .collect()
}

/// The output a JSON-covering clause asks for, if the double can give it.
fn acceptable(clause: &Clause<'_>) -> Option<Output> {
    let (mut kind, mut group, mut version) = (None, None, None);
    for (key, value) in &clause.params {
        match *key {
            "as" => kind = Some(*value),
            "g" => group = Some(*value),
            "v" => version = Some(*value),
            "stream" if !value.is_empty() && *value != "watch" => return None,
            "sv" if !value.is_empty() && *value != "v1" => return None,
            _ => {}
        }
    }
    if kind.is_none() && group.is_none() && version.is_none() {
        return Some(Output::Plain);
    }
    let version = match (group.unwrap_or_default(), version.unwrap_or_default()) {
        ("meta.k8s.io", "v1") => MetaVersion::V1,
        ("meta.k8s.io", "v1beta1") => MetaVersion::V1beta1,
        _ => return None,
    };
    match kind.unwrap_or_default() {
        "Table" => Some(Output::Table(version)),
        "PartialObjectMetadata" => Some(Output::PartialObjectMetadata(version)),
        "PartialObjectMetadataList" => Some(Output::PartialObjectMetadataList(version)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_GET: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    #[test]
    fn kubectl_get_gets_a_v1_table() {
        assert_eq!(
            negotiate(Some(KUBECTL_GET)).unwrap(),
            Output::Table(MetaVersion::V1)
        );
    }

    #[test]
    fn the_first_acceptable_clause_wins() {
        assert_eq!(
            negotiate(Some("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io")).unwrap(),
            Output::Table(MetaVersion::V1beta1)
        );
        assert_eq!(
            negotiate(Some(
                "application/json;as=Table;g=bogus;v=v1,application/json"
            ))
            .unwrap(),
            Output::Plain
        );
        assert_eq!(
            negotiate(Some("application/json;q=0.5,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")).unwrap(),
            Output::PartialObjectMetadataList(MetaVersion::V1)
        );
    }

    #[test]
    fn protobuf_first_falls_back_to_json() {
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json")).unwrap(),
            Output::PartialObjectMetadata(MetaVersion::V1)
        );
        assert_eq!(
            negotiate(Some("application/cbor, application/json")).unwrap(),
            Output::Plain
        );
    }

    #[test]
    fn wildcards_and_missing_headers_mean_plain_json() {
        for accept in [
            None,
            Some(""),
            Some("*/*"),
            Some("application/*"),
            Some("*"),
        ] {
            assert_eq!(negotiate(accept).unwrap(), Output::Plain, "{accept:?}");
        }
    }

    #[test]
    fn nothing_producible_is_not_acceptable() {
        for accept in [
            "application/vnd.kubernetes.protobuf",
            "application/json;as=Table;g=bogus;v=v1",
            "application/json;as=Table",
            "application/json;as=Deployment;g=meta.k8s.io;v=v1",
            "application/json;q=0",
            "application/json;stream=chunks",
            "text/html",
        ] {
            let status = negotiate(Some(accept)).unwrap_err().to_status();
            assert_eq!(status["code"], 406, "{accept}");
            assert_eq!(status["reason"], "NotAcceptable", "{accept}");
        }
    }
}
