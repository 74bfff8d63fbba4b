//! Label selectors as apimachinery's `labels.Parse` reads them
//! (`a=b,c!=d,e in (f,g),f notin (h),i,!j`), and how they match an object's
//! labels: `!=` and `notin` also match objects without the key.

/// A label selector (or a part of one) that Kubernetes would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelSelectorError {
    #[error("the selector is empty")]
    Empty,
    #[error("unbalanced parentheses")]
    UnbalancedParentheses,
    #[error("empty requirement")]
    EmptyRequirement,
    #[error("`{0}`: values must be in parentheses")]
    ValuesOutsideParentheses(String),
    #[error("`{0}` is not a requirement")]
    NotARequirement(String),
    #[error("`{0}` is not a valid label value")]
    Value(String),
    #[error("`{0}` has an invalid prefix")]
    KeyPrefix(String),
    #[error("`{0}` has an empty name")]
    EmptyKeyName(String),
    #[error("`{0}` is not a valid label key")]
    Key(String),
}

pub fn validate_label_value(value: &str) -> Result<(), LabelSelectorError> {
    let bytes = value.as_bytes();
    let valid = bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_none_or(u8::is_ascii_alphanumeric)
        && bytes.last().is_none_or(u8::is_ascii_alphanumeric);
    if valid {
        Ok(())
    } else {
        Err(LabelSelectorError::Value(value.to_owned()))
    }
}

fn validate_label_key(key: &str) -> Result<(), LabelSelectorError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let valid_prefix = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_prefix {
            return Err(LabelSelectorError::KeyPrefix(key.to_owned()));
        }
    }
    if name.is_empty() {
        return Err(LabelSelectorError::EmptyKeyName(key.to_owned()));
    }
    validate_label_value(name).map_err(|_| LabelSelectorError::Key(key.to_owned()))
}

/// Validates a Kubernetes label selector (`a=b,c!=d,e in (f,g),!h,i`).
/// Validates a Kubernetes label selector (`a=b,c!=d,e in (f,g),!h,i`).
pub fn validate_label_selector(selector: &str) -> Result<(), LabelSelectorError> {
    LabelSelector::parse(selector).map(|_| ())
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl LabelSelector {
    /// Parses a selector; an empty one is refused (it would select
    /// everything, which a grant must say with a glob instead).
    pub fn parse(selector: &str) -> Result<LabelSelector, LabelSelectorError> {
        let mut rest = selector.trim();
        if rest.is_empty() {
            return Err(LabelSelectorError::Empty);
        }
        let mut requirements = Vec::new();
        loop {
            rest = rest.trim_start();
            // One requirement, up to the next top-level comma.
            let mut depth = 0usize;
            let mut end = rest.len();
            for (index, character) in rest.char_indices() {
                match character {
                    '(' => depth += 1,
                    ')' => {
                        depth = depth
                            .checked_sub(1)
                            .ok_or(LabelSelectorError::UnbalancedParentheses)?;
                    }
                    ',' if depth == 0 => {
                        end = index;
                        break;
                    }
                    _ => {}
                }
            }
            if depth != 0 {
                return Err(LabelSelectorError::UnbalancedParentheses);
            }
            requirements.push(requirement(rest[..end].trim())?);
            if end == rest.len() {
                return Ok(LabelSelector { requirements });
            }
            rest = &rest[end + 1..];
        }
    }

    /// Whether labels (looked up by key) satisfy every requirement.
    pub fn matches<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                Requirement::Exists(key) => label(key).is_some(),
                Requirement::NotExists(key) => label(key).is_none(),
                Requirement::In(key, values) => {
                    label(key).is_some_and(|value| values.iter().any(|wanted| wanted == value))
                }
                Requirement::NotIn(key, values) => {
                    label(key).is_none_or(|value| values.iter().all(|unwanted| unwanted != value))
                }
            })
    }
}

fn requirement(requirement: &str) -> Result<Requirement, LabelSelectorError> {
    if requirement.is_empty() {
        return Err(LabelSelectorError::EmptyRequirement);
    }
    if let Some(key) = requirement.strip_prefix('!') {
        let key = key.trim();
        validate_label_key(key)?;
        return Ok(Requirement::NotExists(key.to_owned()));
    }
    for operator in ["!=", "==", "="] {
        if let Some((key, value)) = requirement.split_once(operator) {
            let (key, value) = (key.trim(), value.trim());
            validate_label_key(key)?;
            validate_label_value(value)?;
            let values = vec![value.to_owned()];
            return Ok(if operator == "!=" {
                Requirement::NotIn(key.to_owned(), values)
            } else {
                Requirement::In(key.to_owned(), values)
            });
        }
    }
    for operator in [" notin ", " in "] {
        if let Some((key, values)) = requirement.split_once(operator) {
            let key = key.trim();
            validate_label_key(key)?;
            let values = values.trim();
            let inner = values
                .strip_prefix('(')
                .and_then(|values| values.strip_suffix(')'))
                .ok_or_else(|| {
                    LabelSelectorError::ValuesOutsideParentheses(requirement.to_owned())
                })?;
            let values = inner
                .split(',')
                .map(|value| {
                    let value = value.trim();
                    validate_label_value(value).map(|()| value.to_owned())
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if operator == " notin " {
                Requirement::NotIn(key.to_owned(), values)
            } else {
                Requirement::In(key.to_owned(), values)
            });
        }
    }
    if requirement.contains(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>')) {
        return Err(LabelSelectorError::NotARequirement(requirement.to_owned()));
    }
    validate_label_key(requirement)?;
    Ok(Requirement::Exists(requirement.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn matches(selector: &str, labels: &[(&str, &str)]) -> bool {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        LabelSelector::parse(selector)
            .unwrap()
            .matches(|key| labels.get(key).copied())
    }

    #[test]
    fn selectors_match_as_apimachinery_does() {
        let oil = [("capsule.clastix.io/tenant", "oil"), ("env", "prod")];
        assert!(matches("capsule.clastix.io/tenant=oil", &oil));
        assert!(matches("capsule.clastix.io/tenant==oil,env", &oil));
        assert!(!matches("capsule.clastix.io/tenant=gas", &oil));
        assert!(matches("env in (dev, prod)", &oil));
        assert!(!matches("env notin (prod)", &oil));
        assert!(
            matches("tier notin (web)", &oil),
            "notin matches a missing key"
        );
        assert!(matches("tier!=web", &oil), "!= matches a missing key");
        assert!(!matches("env!=prod", &oil));
        assert!(matches("!tier", &oil));
        assert!(!matches("!env", &oil));
        assert!(!matches("tier", &oil));
        assert!(
            !matches("env=prod,tier=web", &oil),
            "every requirement holds"
        );
    }
}
