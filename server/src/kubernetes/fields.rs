//! Field selectors as apimachinery's `fields.ParseSelector` reads them, far
//! enough to answer what the API server asks of them when it derives a
//! request's name: which value does `metadata.name` have to equal?

/// One `field<op>value` term.
struct Term<'a> {
    field: &'a str,
    /// `=` and `==` require equality; `!=` does not.
    equal: bool,
    value: String,
}

/// Splits at commas that are not escaped with a backslash.
fn split_terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, character) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if character == '\\' {
            escaped = true;
        } else if character == ',' {
            terms.push(&selector[start..index]);
            start = index + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// The first operator in the term (`!=`, `==`, then `=` at each position).
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    for (index, _) in term.char_indices() {
        let rest = &term[index..];
        let found = rest
            .strip_prefix("!=")
            .map(|value| (false, value))
            .or_else(|| rest.strip_prefix("==").map(|value| (true, value)))
            .or_else(|| rest.strip_prefix('=').map(|value| (true, value)));
        if let Some((equal, value)) = found {
            return Some((&term[..index], equal, value));
        }
    }
    None
}

/// `fields.UnescapeValue`: `\\`, `\,` and `\=` are escapes; any other escape,
/// a bare `,` or `=`, or a trailing backslash is an error.
fn unescape(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut escaped = false;
    for character in value.chars() {
        if escaped {
            if !matches!(character, '\\' | ',' | '=') {
                return None;
            }
            out.push(character);
            escaped = false;
        } else {
            match character {
                '\\' => escaped = true,
                ',' | '=' => return None,
                _ => out.push(character),
            }
        }
    }
    (!escaped).then_some(out)
}

fn parse(selector: &str) -> Option<Vec<Term<'_>>> {
    let mut parts = split_terms(selector);
    // The API server sorts the terms before reading them.
    parts.sort_unstable();
    let mut terms = Vec::with_capacity(parts.len());
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let (field, equal, value) = split_term(part)?;
        terms.push(Term {
            field,
            equal,
            value: unescape(value)?,
        });
    }
    Some(terms)
}

/// Whether a selector parses at all (an unparsable one makes the API server
/// read the request without it, and refuse to serve it).
pub fn is_valid(selector: &str) -> bool {
    parse(selector).is_some()
}

/// The value `field` must equal for the selector to match
/// (`RequiresExactMatch`): the first equality term on that field, terms taken
/// in sorted order. `None` when the selector does not parse.
pub fn exact_match(selector: &str, field: &str) -> Option<String> {
    parse(selector)?
        .into_iter()
        .find(|term| term.equal && term.field == field)
        .map(|term| term.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_equality_terms() {
        let name = |selector: &str| exact_match(selector, "metadata.name");
        assert_eq!(name("metadata.name=api-0").as_deref(), Some("api-0"));
        assert_eq!(name("metadata.name==api-0").as_deref(), Some("api-0"));
        assert_eq!(name("metadata.name!=api-0"), None);
        assert_eq!(
            name("status.phase=Running,metadata.name=db").as_deref(),
            Some("db")
        );
        assert_eq!(
            name("metadata.name=b,metadata.name=a").as_deref(),
            Some("a"),
            "terms are sorted first"
        );
        assert_eq!(name("metadata.name=a\\,b").as_deref(), Some("a,b"));
        assert_eq!(name("metadata.name = x"), None, "the field is not trimmed");
        assert_eq!(name("foo=bar"), None);
        assert_eq!(name(""), None);
    }

    #[test]
    fn malformed_selectors_do_not_parse() {
        for selector in [
            "metadata.name=name1,foo",
            "metadata.name=a=b",
            "metadata.name=a\\x",
            "metadata.name=a\\",
        ] {
            assert!(!is_valid(selector), "{selector}");
            assert_eq!(exact_match(selector, "metadata.name"), None);
        }
        assert!(is_valid("metadata.name=a,,status.phase!=x"));
    }
}
