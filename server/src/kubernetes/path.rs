//! Request-target safety: the Kubernetes path a cluster sees is the one the
//! policy judged, in one canonical form, and nothing in it can leave the
//! registered cluster URL.
//!
//! Each segment is percent-decoded, checked, and re-encoded canonically, so
//! `/%61pi/v1` is judged (and sent) as `/api/v1`. Empty and `.` segments are
//! dropped; `..`, encoded `/` or `\`, backslashes, control characters and bad
//! escapes are refused.

use std::borrow::Cow;

/// Why a request target was refused (a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("`..` segments are not allowed")]
    ParentSegment,
    #[error("encoded `/` or `\\` is not allowed in a path segment")]
    EncodedSeparator,
    #[error("backslashes are not allowed in the path")]
    Backslash,
    #[error("control characters are not allowed in the path")]
    ControlCharacter,
    #[error("malformed percent-encoding in the path")]
    BadEscape,
    #[error("the path is not valid UTF-8 once decoded")]
    NotUtf8,
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn decode(segment: &str) -> Result<Vec<u8>, PathError> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let high = bytes
                .get(index + 1)
                .copied()
                .and_then(hex)
                .ok_or(PathError::BadEscape)?;
            let low = bytes
                .get(index + 2)
                .copied()
                .and_then(hex)
                .ok_or(PathError::BadEscape)?;
            decoded.push(high << 4 | low);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    Ok(decoded)
}

/// Characters a path segment may carry unencoded (RFC 3986 pchar).
fn is_pchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// `path.split('/')`, found byte by byte: a path's segments are a few bytes
/// long, shorter than a `memchr` search pays for setting itself up.
fn split_segments(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(path);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.bytes().position(|byte| byte == b'/') {
            Some(slash) => {
                rest = Some(&text[slash + 1..]);
                Some(&text[..slash])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// Whether an absolute path is already in canonical form (what almost every
/// client sends): no empty, `.` or `..` segment except a trailing slash, and
/// nothing that needs decoding or encoding. Such a path is its own
/// normalisation.
fn is_canonical(raw: &str) -> bool {
    let mut segments = split_segments(raw).skip(1).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last)
            || segment == "."
            || segment == ".."
            || !segment.bytes().all(is_pchar)
        {
            return false;
        }
    }
    true
}

/// The decoded segments of a canonical path, as the API server splits its
/// decoded `URL.Path`: `/api/v1/namespaces/a%20b/` is `["api", "v1",
/// "namespaces", "a b"]`.
pub fn decoded_segments(canonical: &str) -> Vec<Cow<'_, str>> {
    split_segments(canonical)
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            // Most segments hold no escape: they are their own decoding.
            if !segment.bytes().any(|byte| byte == b'%') {
                return Cow::Borrowed(segment);
            }
            Cow::Owned(match decode(segment) {
                Ok(bytes) => String::from_utf8(bytes)
                    .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()),
                Err(_) => segment.to_owned(),
            })
        })
        .collect()
}

/// Appends `bytes` as one canonically encoded path segment.
fn push_encoded(out: &mut String, bytes: &[u8]) {
    for &byte in bytes {
        if is_pchar(byte) {
            out.push(byte as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0xf)] as char);
        }
    }
}

/// One path segment (a name, a namespace) in canonical encoding.
pub fn escape_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    push_encoded(&mut out, segment.as_bytes());
    out
}

/// The canonical Kubernetes path for the raw path after the proxy prefix.
/// An empty input is the root (`/`).
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if raw.is_empty() {
        return Ok("/".to_owned());
    }
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(raw) {
        return Ok(raw.to_owned());
    }
    if raw.contains('\\') {
        return Err(PathError::Backslash);
    }
    let mut normalized = String::with_capacity(raw.len());
    for segment in split_segments(raw) {
        if segment.is_empty() {
            continue;
        }
        let decoded = decode(segment)?;
        if decoded.iter().any(|byte| *byte < 0x20 || *byte == 0x7f) {
            return Err(PathError::ControlCharacter);
        }
        if decoded.iter().any(|byte| matches!(byte, b'/' | b'\\')) {
            return Err(PathError::EncodedSeparator);
        }
        if std::str::from_utf8(&decoded).is_err() {
            return Err(PathError::NotUtf8);
        }
        match decoded.as_slice() {
            b"." => continue,
            b".." => return Err(PathError::ParentSegment),
            _ => {}
        }
        normalized.push('/');
        push_encoded(&mut normalized, &decoded);
    }
    // The root, or a path whose trailing slash the client meant.
    if normalized.is_empty() || raw.ends_with('/') {
        normalized.push('/');
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_as_str_split_does() {
        for path in [
            "",
            "/",
            "//",
            "a",
            "/api/v1/namespaces/shop/pods",
            "/api/v1/namespaces/shop/pods/",
            "api//v1///x/",
            "/namespaces/caf\u{e9}/\u{1f600}/%2F",
        ] {
            assert_eq!(
                split_segments(path).collect::<Vec<_>>(),
                path.split('/').collect::<Vec<_>>(),
                "{path:?}"
            );
        }
    }

    #[test]
    fn canonical_paths_pass_unchanged() {
        for path in [
            "/api/v1/namespaces/shop/pods",
            "/apis/apps/v1/namespaces/a/deployments/web",
            "/api/v1/namespaces/a/pods/p-0/log",
            "/version",
            "/openapi/v3/apis/apps/v1",
            "/api/v1/namespaces/a/configmaps/user@example.com",
        ] {
            assert_eq!(normalize(path).unwrap(), path);
        }
        assert_eq!(normalize("").unwrap(), "/");
        assert_eq!(normalize("/").unwrap(), "/");
    }

    #[test]
    fn equivalent_spellings_become_one() {
        assert_eq!(normalize("/%61pi/v1/pods").unwrap(), "/api/v1/pods");
        assert_eq!(normalize("//api//v1/./pods").unwrap(), "/api/v1/pods");
        assert_eq!(normalize("/api/v1/%2e/pods").unwrap(), "/api/v1/pods");
        assert_eq!(
            normalize("/api/v1/na%6Despaces").unwrap(),
            "/api/v1/namespaces"
        );
        assert_eq!(normalize("/a b").unwrap(), "/a%20b");
        assert_eq!(normalize("/api/v1/").unwrap(), "/api/v1/");
    }

    #[test]
    fn the_canonical_shortcut_agrees_with_the_full_normalisation() {
        for path in [
            "/",
            "/api",
            "/api/v1/",
            "/api/v1/namespaces/a/pods/p-0/log",
            "/api/v1/namespaces/a/configmaps/user@example.com",
            "//api",
            "/api//v1",
            "/api/./v1",
            "/api/.",
            "/api/v1/.",
            "/%61pi",
            "/a b",
        ] {
            if is_canonical(path) {
                let mut slow = String::new();
                for segment in path.split('/').filter(|segment| !segment.is_empty()) {
                    slow.push('/');
                    slow.push_str(segment);
                }
                if slow.is_empty() || path.ends_with('/') {
                    slow.push('/');
                }
                assert_eq!(slow, path, "{path}");
            }
        }
        assert!(is_canonical("/api/v1/namespaces/a/pods"));
        assert!(!is_canonical("//api"));
        assert!(!is_canonical("/api/./v1"));
        assert!(!is_canonical("/api/.."));
        assert!(!is_canonical("/%61pi"));
    }

    #[test]
    fn hostile_targets_are_refused() {
        let cases = [
            ("/api/../../etc/passwd", PathError::ParentSegment),
            ("/api/%2e%2e/x", PathError::ParentSegment),
            ("/api/.%2E/x", PathError::ParentSegment),
            ("/api/v1%2fnamespaces", PathError::EncodedSeparator),
            ("/api/v1%2Fnamespaces", PathError::EncodedSeparator),
            ("/api/v1%5cnamespaces", PathError::EncodedSeparator),
            ("/api\\v1", PathError::Backslash),
            ("/api/%00", PathError::ControlCharacter),
            ("/api/%0d%0aX-Injected:%20yes", PathError::ControlCharacter),
            ("/api/%zz", PathError::BadEscape),
            ("/api/%", PathError::BadEscape),
            ("api/v1", PathError::NotAbsolute),
            ("/api/v1/namespaces/%ff", PathError::NotUtf8),
        ];
        for (path, expected) in cases {
            assert_eq!(normalize(path), Err(expected), "{path}");
        }
    }
}
