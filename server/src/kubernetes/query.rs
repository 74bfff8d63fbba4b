//! The query string as the API server decodes it (Go's `url.ParseQuery`), and
//! its one canonical encoding (Go's `url.QueryEscape`).
//!
//! kubeportal decodes the caller's query once, judges the decoded parameters,
//! and forwards the canonical re-encoding of exactly those parameters, in the
//! caller's order. Whatever the caller spelled (`%77atch=1`, `+` for space,
//! escapes in either case), the cluster decodes what was judged. What Go would
//! silently drop (a pair with `;`, a bad escape) is refused instead, so no
//! parameter can be seen by one side and not the other.

use std::fmt::Write;

/// Why a query string was refused (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("`;` is not a query separator; use `&`")]
    Semicolon,
    #[error("malformed percent-encoding in the query")]
    BadEscape,
    #[error("the query is not valid UTF-8 once decoded")]
    NotUtf8,
    #[error(
        "query parameter `{0}`: API servers disagree on what this value means; use `true` or `false`"
    )]
    AmbiguousBoolean(String),
    #[error("more than {MAX_PARAMETERS} query parameters")]
    TooManyParameters,
}

/// The most `&`-separated parts a query may have. Go 1.24 and later refuse a
/// query of more than 10,000 parts outright, and an API server built with it
/// then reads the request with no query at all (no field selector, no name):
/// a query Go would drop must never reach it, so the cap is well below.
pub const MAX_PARAMETERS: usize = 1000;

/// Decoded query parameters, in the order the caller sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Go's `QueryUnescape`: `+` is a space, `%XX` a byte.
fn unescape(text: &str) -> Result<String, QueryError> {
    if !text.contains(['%', '+']) {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let high = bytes.get(index + 1).copied().and_then(hex);
                let low = bytes.get(index + 2).copied().and_then(hex);
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(QueryError::BadEscape);
                };
                decoded.push(high << 4 | low);
                index += 3;
            }
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).map_err(|_| QueryError::NotUtf8)
}

/// Go's `QueryEscape`: unreserved characters stay, space is `+`, the rest `%XX`.
fn escape_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
}

/// Go's boolean parameter conversion (`Convert_Slice_string_To_bool`): absent
/// is false, `false` and `0` (any case) are false, anything else (the empty
/// value included) is true. Values that other readers take as false (`f`, `n`,
/// `no`, `off`) are refused as ambiguous rather than guessed.
fn boolean(name: &str, value: &str) -> Result<bool, QueryError> {
    match value.to_ascii_lowercase().as_str() {
        "false" | "0" => Ok(false),
        "f" | "n" | "no" | "off" => Err(QueryError::AmbiguousBoolean(name.to_owned())),
        _ => Ok(true),
    }
}

impl Query {
    /// Decodes a raw query string (without `?`) as Go's `url.ParseQuery` does.
    pub fn parse(raw: Option<&str>) -> Result<Self, QueryError> {
        let raw = raw.unwrap_or_default();
        if raw.bytes().filter(|byte| *byte == b'&').count() >= MAX_PARAMETERS {
            return Err(QueryError::TooManyParameters);
        }
        let mut pairs = Vec::new();
        for piece in raw.split('&') {
            if piece.contains(';') {
                return Err(QueryError::Semicolon);
            }
            if piece.is_empty() {
                continue;
            }
            let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
            pairs.push((unescape(key)?, unescape(value)?));
        }
        Ok(Self { pairs })
    }

    /// The decoded parameters, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The first value of `name`, as the API server reads single values.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Removes every `name` parameter and returns the first value.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let first = self.first(name).map(str::to_owned);
        if first.is_some() {
            self.pairs.retain(|(key, _)| key != name);
        }
        first
    }

    /// Appends a parameter.
    pub fn push(&mut self, name: &str, value: &str) {
        self.pairs.push((name.to_owned(), value.to_owned()));
    }

    /// Reads the boolean `name` as the API server does and rewrites it to its
    /// one canonical spelling (a single `name=true` or `name=false` where the
    /// first one stood), so that every API server version reads what was judged.
    pub fn canonical_boolean(&mut self, name: &str) -> Result<bool, QueryError> {
        let Some(position) = self.pairs.iter().position(|(key, _)| key == name) else {
            return Ok(false);
        };
        let value = boolean(name, &self.pairs[position].1)?;
        self.pairs[position].1 = if value { "true" } else { "false" }.to_owned();
        let mut index = 0;
        self.pairs.retain(|(key, _)| {
            index += 1;
            index - 1 == position || key != name
        });
        Ok(value)
    }

    /// The canonical encoding, or `None` when there are no parameters.
    pub fn encode(&self) -> Option<String> {
        self.encode_with(|_, _| false)
    }

    /// The canonical encoding with the values of parameters whose decoded name
    /// contains one of `sensitive` (case-insensitively) replaced by `***`.
    pub fn encode_masked(&self, sensitive: &[String]) -> Option<String> {
        self.encode_with(|name, value| {
            let lower = name.to_ascii_lowercase();
            !value.is_empty() && sensitive.iter().any(|word| lower.contains(word.as_str()))
        })
    }

    fn encode_with(&self, masked: impl Fn(&str, &str) -> bool) -> Option<String> {
        if self.pairs.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(
            self.pairs
                .iter()
                .map(|(key, value)| key.len() + value.len() + 2)
                .sum(),
        );
        for (index, (key, value)) in self.pairs.iter().enumerate() {
            if index > 0 {
                out.push('&');
            }
            escape_into(&mut out, key);
            out.push('=');
            if masked(key, value) {
                out.push_str("***");
            } else {
                escape_into(&mut out, value);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Query {
        Query::parse(Some(raw)).unwrap()
    }

    #[test]
    fn decodes_as_go_does() {
        let query = parse("%77atch=1&labelSelector=app%3Dweb&command=echo+hi&command=x&&bare");
        assert_eq!(
            query.pairs(),
            [
                ("watch".into(), "1".into()),
                ("labelSelector".into(), "app=web".into()),
                ("command".into(), "echo hi".into()),
                ("command".into(), "x".into()),
                ("bare".into(), String::new()),
            ]
        );
        assert_eq!(query.first("command"), Some("echo hi"));
        assert_eq!(query.first("Watch"), None, "names are case-sensitive");
        assert_eq!(Query::parse(None).unwrap().encode(), None);
    }

    #[test]
    fn what_go_would_drop_is_refused() {
        assert_eq!(
            Query::parse(Some("watch=1;x=2")),
            Err(QueryError::Semicolon)
        );
        assert_eq!(Query::parse(Some("a=%zz")), Err(QueryError::BadEscape));
        assert_eq!(Query::parse(Some("a=%4")), Err(QueryError::BadEscape));
        assert_eq!(Query::parse(Some("%ff=1")), Err(QueryError::NotUtf8));
        let crowded = format!("fieldSelector=metadata.name%3Dapi-0{}", "&a".repeat(10_000));
        assert_eq!(
            Query::parse(Some(&crowded)),
            Err(QueryError::TooManyParameters)
        );
        let empties = "&".repeat(MAX_PARAMETERS);
        assert_eq!(
            Query::parse(Some(&empties)),
            Err(QueryError::TooManyParameters),
            "empty parts count as Go counts them"
        );
        assert!(Query::parse(Some(&"&a".repeat(MAX_PARAMETERS - 1))).is_ok());
    }

    #[test]
    fn encodes_canonically_and_round_trips() {
        let query = parse("a%62c=x%2fy&sp=a+b%20c&u=%E2%9C%93&t=~-._");
        let encoded = query.encode().unwrap();
        assert_eq!(encoded, "abc=x%2Fy&sp=a+b+c&u=%E2%9C%93&t=~-._");
        assert_eq!(parse(&encoded), query);
    }

    #[test]
    fn booleans_are_read_as_the_api_server_reads_them() {
        for (raw, expected) in [
            ("watch=true", true),
            ("watch=True", true),
            ("watch=TRUE", true),
            ("watch=1", true),
            ("watch=yes", true),
            ("watch=on", true),
            ("watch=", true),
            ("watch", true),
            ("%77atch=1", true),
            ("watch=false", false),
            ("watch=FALSE", false),
            ("watch=0", false),
            ("watch=false&watch=true", false),
            ("other=1", false),
        ] {
            let mut query = parse(raw);
            assert_eq!(query.canonical_boolean("watch"), Ok(expected), "{raw}");
            let canonical = query.encode().unwrap_or_default();
            assert_eq!(
                canonical.matches("watch=").count(),
                usize::from(raw.contains("atch")),
                "{raw} -> {canonical}"
            );
        }
        for raw in ["watch=no", "watch=f", "watch=N", "watch=off"] {
            assert!(
                parse(raw).canonical_boolean("watch").is_err(),
                "{raw} is ambiguous"
            );
        }
        let mut query = parse("a=1&follow=yes&b=2&follow=false");
        assert_eq!(query.canonical_boolean("follow"), Ok(true));
        assert_eq!(query.encode().unwrap(), "a=1&follow=true&b=2");
    }

    #[test]
    fn sensitive_values_are_masked_by_decoded_name() {
        let sensitive = vec!["token".to_owned(), "ticket".to_owned()];
        let query = parse("%74oken=abc&access_Token=t&watch=true&ticket=");
        assert_eq!(
            query.encode_masked(&sensitive).unwrap(),
            "token=***&access_Token=***&watch=true&ticket="
        );
        let mut query = parse("ticket=abc&command=sh");
        assert_eq!(query.take("ticket").as_deref(), Some("abc"));
        assert_eq!(query.encode().unwrap(), "command=sh");
    }
}
