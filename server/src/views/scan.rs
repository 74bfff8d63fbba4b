//! Finding where JSON values end in a byte stream that arrives in pieces,
//! without parsing them: strings (with escapes), nesting and scalars. The
//! list and watch filters use it to cut a response into members, list items
//! and watch events, so that no more than one of them is held at a time.

/// Why a response could not be cut into values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("the response is not JSON: unexpected `{0}`")]
    Unexpected(char),
    #[error("the response ended inside a JSON value")]
    Truncated,
    #[error("a JSON value is nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
    #[error("a list item or watch event is larger than {} MiB", MAX_VALUE >> 20)]
    TooLarge,
}

/// The most bytes one list item or watch event may take while it arrives:
/// far more than any object the API server stores (etcd takes at most
/// 1.5 MiB by default, a request body 3 MiB), so that a cluster that never
/// ends a value cannot make kubeportal hold it without end.
pub const MAX_VALUE: usize = 16 << 20;

/// Bytes of a string looked at eight at a time before a vectorized search
/// (most strings of a Kubernetes object are short).
const SHORT_STRING: usize = 64;

/// Deeper nesting than any Kubernetes object has; the API server's own
/// decoder refuses much less.
const MAX_DEPTH: usize = 10_000;

/// The scan of one value in progress: where it resumes when more bytes
/// arrive.
#[derive(Debug, Clone, Default)]
pub struct ValueScan {
    /// Bytes of the value seen so far.
    length: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// A number, `true`, `false` or `null`.
    scalar: bool,
}

impl ValueScan {
    /// Whether no value has been started.
    pub fn is_idle(&self) -> bool {
        self.length == 0
    }

    /// Continues scanning the value that starts at `bytes[0]`; the value's
    /// length once it is complete, `None` while more bytes are needed.
    /// `bytes` must hold everything given before, and maybe more.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<Option<usize>, ScanError> {
        self.advance_at(bytes, 0)
    }

    /// [`ValueScan::advance`] with `bytes` holding the value from its byte
    /// `offset` on: the bytes before, already scanned, need not be given
    /// again (`offset` is at most the bytes scanned so far). The value's
    /// length is counted from its start, as ever.
    pub fn advance_at(&mut self, bytes: &[u8], offset: usize) -> Result<Option<usize>, ScanError> {
        debug_assert!(offset <= self.length);
        if self.length == 0 {
            let Some(&byte) = bytes.first() else {
                return Ok(None);
            };
            match byte {
                b'{' | b'[' => self.depth = 1,
                b'"' => self.in_string = true,
                b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => self.scalar = true,
                other => return Err(ScanError::Unexpected(char::from(other))),
            }
            self.length = 1;
        }
        if self.scalar {
            return Ok(self.scalar_end(bytes, offset));
        }
        // The state in locals while the bytes are looked at; kept when more
        // are needed.
        let mut at = self.length - offset;
        let mut depth = self.depth;
        let mut in_string = self.in_string;
        if self.escaped {
            if at >= bytes.len() {
                return Ok(None);
            }
            // The escaped byte, whatever it is.
            at += 1;
            self.escaped = false;
        }
        loop {
            if in_string {
                // Most of a Kubernetes object is strings: skip to the next
                // byte that can end one.
                let Some(found) = string_stop(bytes, at) else {
                    at = bytes.len();
                    break;
                };
                if bytes[found] == b'\\' {
                    if found + 1 == bytes.len() {
                        self.escaped = true;
                        at = bytes.len();
                        break;
                    }
                    at = found + 2;
                    continue;
                }
                at = found + 1;
                in_string = false;
                if depth == 0 {
                    return Ok(Some(offset + at));
                }
                continue;
            }
            let Some(&byte) = bytes.get(at) else {
                break;
            };
            at += 1;
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(ScanError::TooDeep);
                    }
                }
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(Some(offset + at));
                    }
                }
                _ => {}
            }
        }
        self.length = offset + at;
        self.depth = depth;
        self.in_string = in_string;
        Ok(None)
    }

    /// A number, `true`, `false` or `null` ends before a delimiter.
    fn scalar_end(&mut self, bytes: &[u8], offset: usize) -> Option<usize> {
        let rest = bytes.get(self.length - offset..).unwrap_or_default();
        match rest
            .iter()
            .position(|byte| matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
        {
            Some(end) => Some(self.length + end),
            None => {
                self.length = (offset + bytes.len()).max(self.length);
                None
            }
        }
    }
}

/// The first `"` or `\` at or after `at`: eight bytes at a time (without
/// a call), then, in a long string, a vectorized search.
#[inline]
fn string_stop(bytes: &[u8], mut at: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    let short = bytes.len().min(at + SHORT_STRING);
    while at + 8 <= short {
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
        let quotes = word ^ QUOTES;
        let backslashes = word ^ BACKSLASHES;
        // A zero byte of either marks a stop; the lowest marked byte is
        // always one (a false mark only ever follows a true one).
        let stops = (quotes.wrapping_sub(ONES) & !quotes
            | backslashes.wrapping_sub(ONES) & !backslashes)
            & HIGHS;
        if stops != 0 {
            return Some(at + (stops.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = &bytes[at..];
    if rest.len() < 8 {
        return rest
            .iter()
            .position(|byte| matches!(byte, b'"' | b'\\'))
            .map(|offset| at + offset);
    }
    memchr::memchr2(b'"', b'\\', rest).map(|offset| at + offset)
}

/// The number of leading JSON whitespace bytes.
pub fn whitespace(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
        .count()
}

/// One member of a JSON object, as [`members`] finds it: where its key
/// begins (the opening quote), the key as written between its quotes, and
/// where its value lies, all relative to the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    pub start: usize,
    pub key: &'a [u8],
    pub value: std::ops::Range<usize>,
    /// The value's own members (relative to the value), as [`members`]
    /// gives them, when they were read in the same pass: for an object's
    /// `metadata`, and that metadata's `annotations`, when they are objects
    /// whose members can be read as written.
    pub inner: Option<Vec<Member<'a>>>,
}

/// The level at which no member's value is read within.
const FLAT: usize = usize::MAX;

/// The member whose value's members are read with its object's, at each
/// level from the object [`object_prefix`] reads.
fn read_within(level: usize) -> Option<&'static [u8]> {
    match level {
        0 => Some(b"metadata"),
        1 => Some(b"annotations"),
        _ => None,
    }
}

/// The members of the one JSON object `object` holds, in order, without
/// parsing their values; `None` when `object` is not a whole object or a
/// key holds an escape (compared as written, an escaped key could pass for
/// another).
pub fn members(object: &[u8]) -> Option<Vec<Member<'_>>> {
    whole_object(object, 0)
}

/// The members of the one JSON object `object` holds, as [`members`] finds
/// them, without reading within any (no [`Member::inner`]).
pub fn flat_members(object: &[u8]) -> Option<Vec<Member<'_>>> {
    whole_object(object, FLAT)
}

/// The members of `object`, read from `level` on, when it holds one whole
/// object and nothing else but whitespace.
fn whole_object(object: &[u8], level: usize) -> Option<Vec<Member<'_>>> {
    match object_prefix_at(object, level) {
        Prefix::Object { length, members }
            if length + whitespace(&object[length..]) == object.len() =>
        {
            Some(members)
        }
        _ => None,
    }
}

/// The index of the one member named `key`; `None` when there is none, or
/// more than one (parsers disagree on which counts).
pub fn only(found: &[Member<'_>], key: &[u8]) -> Option<usize> {
    at_most_one(found, key)?
}

/// `Some(None)` when no member is named `key`, `Some(Some(index))` for
/// exactly one, `None` for more.
pub fn at_most_one(found: &[Member<'_>], key: &[u8]) -> Option<Option<usize>> {
    let mut named = found
        .iter()
        .enumerate()
        .filter(|(_, member)| member.key == key);
    match (named.next(), named.next()) {
        (None, _) => Some(None),
        (Some((index, _)), None) => Some(Some(index)),
        (Some(_), Some(_)) => None,
    }
}

/// What [`object_prefix`] finds at the front of some bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Prefix<'a> {
    /// An object `length` bytes long (leading whitespace included), and its
    /// members as [`members`] gives them.
    Object {
        length: usize,
        members: Vec<Member<'a>>,
    },
    /// The bytes end before the object does.
    Incomplete,
    /// Not an object whose members can be read as written: another value,
    /// malformed JSON, or a key with an escape.
    Other,
}

/// Reads the object at the front of `bytes` (what follows it is not
/// looked at) in one pass, finding its members and its end (and those of
/// its `metadata` and their `annotations`, see [`Member::inner`]).
pub fn object_prefix(bytes: &[u8]) -> Prefix<'_> {
    object_prefix_at(bytes, 0)
}

fn object_prefix_at(bytes: &[u8], level: usize) -> Prefix<'_> {
    use Prefix::{Incomplete, Other};
    // Room for the members of most objects.
    let mut found = Vec::with_capacity(8);
    let mut at = whitespace(bytes);
    match bytes.get(at) {
        Some(b'{') => {}
        Some(_) => return Other,
        None => return Incomplete,
    }
    at += 1;
    at += whitespace(&bytes[at..]);
    match bytes.get(at) {
        Some(b'}') => {
            return Prefix::Object {
                length: at + 1,
                members: found,
            }
        }
        Some(_) => {}
        None => return Incomplete,
    }
    loop {
        at += whitespace(&bytes[at..]);
        let start = at;
        match bytes.get(at) {
            Some(b'"') => {}
            Some(_) => return Other,
            None => return Incomplete,
        }
        let Some(end) = string_stop(bytes, at + 1) else {
            return Incomplete;
        };
        if bytes[end] != b'"' {
            return Other;
        }
        let key = &bytes[at + 1..end];
        at = end + 1;
        at += whitespace(&bytes[at..]);
        match bytes.get(at) {
            Some(b':') => at += 1,
            Some(_) => return Other,
            None => return Incomplete,
        }
        at += whitespace(&bytes[at..]);
        if at == bytes.len() {
            return Incomplete;
        }
        let nested = match read_within(level) {
            Some(within) if key == within && bytes[at] == b'{' => {
                match object_prefix_at(&bytes[at..], level + 1) {
                    Prefix::Object { length, members } => Some((length, members)),
                    Incomplete => return Incomplete,
                    // Read as any other value.
                    Other => None,
                }
            }
            _ => None,
        };
        let (length, inner) = match nested {
            Some((length, members)) => (length, Some(members)),
            None => match ValueScan::default().advance(&bytes[at..]) {
                Ok(Some(length)) => (length, None),
                Ok(None) => return Incomplete,
                Err(_) => return Other,
            },
        };
        found.push(Member {
            start,
            key,
            value: at..at + length,
            inner,
        });
        at += length;
        at += whitespace(&bytes[at..]);
        match bytes.get(at) {
            Some(b',') => at += 1,
            Some(b'}') => {
                return Prefix::Object {
                    length: at + 1,
                    members: found,
                }
            }
            Some(_) => return Other,
            None => return Incomplete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` one byte at a time and returns the value's length.
    fn scan_bytewise(text: &str) -> Option<usize> {
        let mut scan = ValueScan::default();
        for end in 1..=text.len() {
            if let Some(length) = scan.advance(&text.as_bytes()[..end]).unwrap() {
                return Some(length);
            }
        }
        None
    }

    #[test]
    fn values_end_where_json_says() {
        for (text, value) in [
            (
                r#"{"a":"}\"{","b":[1,{"c":"]"}]} rest"#,
                r#"{"a":"}\"{","b":[1,{"c":"]"}]}"#,
            ),
            (r#""a \" \\" rest"#, r#""a \" \\""#),
            ("[[],[]],", "[[],[]]"),
            ("12.5e3,", "12.5e3"),
            ("true}", "true"),
            ("null ", "null"),
        ] {
            assert_eq!(scan_bytewise(text), Some(value.len()), "{text}");
            let mut whole = ValueScan::default();
            assert_eq!(whole.advance(text.as_bytes()), Ok(Some(value.len())));
        }
        assert_eq!(scan_bytewise(r#"{"a":"unfinished"#), None);
        assert_eq!(
            ValueScan::default().advance(b"}"),
            Err(ScanError::Unexpected('}'))
        );
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(
            ValueScan::default().advance(deep.as_bytes()),
            Err(ScanError::TooDeep)
        );
    }

    /// The value's end as a plain byte-by-byte reading finds it.
    fn reference_length(text: &[u8]) -> Option<usize> {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for (index, byte) in text.iter().enumerate() {
            if in_string {
                match (escaped, byte) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => {
                        in_string = false;
                        if depth == 0 {
                            return Some(index + 1);
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(index + 1);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Strings long and short, with quotes and escapes at every offset
    /// (within a word, across words, past the vectorized search's start),
    /// read whole and in two pieces cut anywhere.
    #[test]
    fn strings_end_where_json_says_whatever_their_length_and_cuts() {
        let mut texts = Vec::new();
        for length in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 71, 72, 130] {
            for stop in 0..=length {
                let mut body = "a".repeat(length);
                body.insert_str(stop, "\\\"x\\\\");
                texts.push(format!(r#"{{"k":"{body}","n":[1,"]"]}} tail"#));
                texts.push(format!(r#""{body}" tail"#));
            }
            texts.push(format!(r#"["{}\\"] tail"#, "b".repeat(length)));
        }
        for text in &texts {
            let bytes = text.as_bytes();
            let expected = reference_length(bytes);
            assert!(expected.is_some(), "{text}");
            assert_eq!(ValueScan::default().advance(bytes), Ok(expected), "{text}");
            for cut in 1..bytes.len() {
                let mut scan = ValueScan::default();
                let first = scan.advance(&bytes[..cut]).unwrap();
                let length = first.or_else(|| scan.advance(bytes).unwrap());
                assert_eq!(length, expected, "{text} cut at {cut}");
            }
        }
    }

    /// An object's metadata and its annotations are read in the same pass,
    /// their members as [`members`] reads them on their own.
    #[test]
    fn metadata_and_annotations_are_read_with_their_object() {
        let object = br#"{"kind":"Pod","metadata":{"name":"a","annotations":{"x":"}","y":{"z":1}},"labels":{"metadata":{}}},"spec":{"metadata":{"a":1}}}"#;
        let found = members(object).unwrap();
        let alone = |member: &Member<'_>| members(&object[member.value.clone()]).unwrap();
        fn strip<'a>(found: &[Member<'a>]) -> Vec<Member<'a>> {
            found
                .iter()
                .map(|member| Member {
                    inner: None,
                    ..member.clone()
                })
                .collect()
        }
        assert_eq!(found[0].inner, None);
        assert_eq!(found[2].inner, None, "only the object's own metadata");
        let metadata = found[1].inner.as_ref().unwrap();
        assert_eq!(strip(metadata), strip(&alone(&found[1])));
        let annotations = metadata[1].inner.as_ref().unwrap();
        let keys: Vec<&[u8]> = annotations.iter().map(|member| member.key).collect();
        assert_eq!(keys, [&b"x"[..], b"y"]);
        let metadata_value = &object[found[1].value.clone()];
        assert_eq!(
            *annotations,
            members(&metadata_value[metadata[1].value.clone()]).unwrap()
        );
        assert_eq!(metadata[2].inner, None, "no deeper");
        // Metadata that cannot be read as written is scanned as a value.
        let escaped = br#"{"metadata":{"n\u0061me":"a"},"b":1}"#;
        let found = members(escaped).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].inner, None);
        assert_eq!(&escaped[found[0].value.clone()], br#"{"n\u0061me":"a"}"#);
        for cut in 0..object.len() {
            assert_eq!(object_prefix(&object[..cut]), Prefix::Incomplete, "{cut}");
        }
    }

    #[test]
    fn members_are_found_as_written() {
        let object = br#" { "a" : 1 , "b":{"c":"}"},"d":[true, null] , "e":"x"} "#;
        let found = members(object).unwrap();
        let keys: Vec<&[u8]> = found.iter().map(|member| member.key).collect();
        assert_eq!(keys, [&b"a"[..], b"b", b"d", b"e"]);
        let values: Vec<&[u8]> = found
            .iter()
            .map(|member| &object[member.value.clone()])
            .collect();
        assert_eq!(
            values,
            [&b"1"[..], br#"{"c":"}"}"#, b"[true, null]", br#""x""#]
        );
        assert_eq!(object[found[1].start], b'"');
        assert_eq!(members(b"{}"), Some(Vec::new()));
        assert_eq!(members(b" { } "), Some(Vec::new()));
        // An escaped key could pass for another: not read.
        assert_eq!(members(br#"{"met\u0061data":{}}"#), None);
        for malformed in [
            &b"[1]"[..],
            b"{\"a\":1} x",
            b"{\"a\"}",
            b"{\"a\":1,}",
            b"{\"a\":1",
            b"{\"a\":1 \"b\":2}",
            b"",
        ] {
            assert_eq!(
                members(malformed),
                None,
                "{}",
                String::from_utf8_lossy(malformed)
            );
        }
    }

    /// Every prefix of an object is incomplete, the object itself is read
    /// with its members, and what follows is not looked at.
    #[test]
    fn an_object_at_the_front_is_read_in_one_pass() {
        let text = br#" {"a":"x\"}","b":{"c":[1,2]},"d":12} , {"next":1}"#;
        let end = text.windows(3).position(|window| window == b"12}").unwrap() + 3;
        for cut in 0..end {
            assert_eq!(object_prefix(&text[..cut]), Prefix::Incomplete, "{cut}");
        }
        let Prefix::Object { length, members } = object_prefix(text) else {
            panic!("an object");
        };
        assert_eq!(length, end);
        let keys: Vec<&[u8]> = members.iter().map(|member| member.key).collect();
        assert_eq!(keys, [&b"a"[..], b"b", b"d"]);
        assert_eq!(&text[members[1].value.clone()], br#"{"c":[1,2]}"#);
        for other in [
            &b"[1]"[..],
            br#"{"k\u0061":1}"#,
            b"{1:2}",
            b"{\"a\" 1}",
            b"{\"a\":1]",
        ] {
            assert_eq!(
                object_prefix(other),
                Prefix::Other,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
