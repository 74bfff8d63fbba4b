//! Which objects belong to a catalog entity, from its annotations, exactly as
//! Backstage reads them: a label selector (`backstage.io/kubernetes-label-selector`,
//! else `backstage.io/kubernetes-id=<id or entity name>`), an optional namespace
//! and an optional cluster.

use serde_json::Value;

pub const LABEL_SELECTOR_ANNOTATION: &str = "backstage.io/kubernetes-label-selector";
pub const ID_ANNOTATION: &str = "backstage.io/kubernetes-id";
pub const NAMESPACE_ANNOTATION: &str = "backstage.io/kubernetes-namespace";
pub const CLUSTER_ANNOTATION: &str = "backstage.io/kubernetes-cluster";

/// An entity whose annotations do not select objects as Kubernetes would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("entity.metadata.name: required")]
    NoName,
    #[error("annotation {annotation}: {0}", annotation = LABEL_SELECTOR_ANNOTATION)]
    LabelSelector(LabelSelectorError),
    #[error("annotation {annotation}: {0}", annotation = ID_ANNOTATION)]
    Id(LabelSelectorError),
    #[error("annotation {annotation}: not a valid namespace name", annotation = NAMESPACE_ANNOTATION)]
    Namespace,
}

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

/// What to list, on which clusters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Selection {
    pub label_selector: String,
    pub namespace: Option<String>,
    pub cluster: Option<String>,
}

fn annotation<'a>(entity: &'a Value, key: &str) -> Option<&'a str> {
    entity
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(key))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

impl Selection {
    /// The selection for an entity, or a message naming what is malformed.
    pub fn of_entity(entity: &Value) -> Result<Selection, SelectionError> {
        let name = entity
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .ok_or(SelectionError::NoName)?;
        let label_selector = match annotation(entity, LABEL_SELECTOR_ANNOTATION) {
            Some(selector) => {
                validate_label_selector(selector).map_err(SelectionError::LabelSelector)?;
                selector.to_owned()
            }
            None => {
                let id = annotation(entity, ID_ANNOTATION).unwrap_or(name);
                validate_label_value(id).map_err(SelectionError::Id)?;
                format!("{ID_ANNOTATION}={id}")
            }
        };
        let namespace = annotation(entity, NAMESPACE_ANNOTATION).map(str::to_owned);
        if let Some(namespace) = &namespace {
            if !is_dns_label(namespace) {
                return Err(SelectionError::Namespace);
            }
        }
        Ok(Selection {
            label_selector,
            namespace,
            cluster: annotation(entity, CLUSTER_ANNOTATION).map(str::to_owned),
        })
    }
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn validate_label_value(value: &str) -> Result<(), LabelSelectorError> {
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
pub fn validate_label_selector(selector: &str) -> Result<(), LabelSelectorError> {
    let mut rest = selector.trim();
    if rest.is_empty() {
        return Err(LabelSelectorError::Empty);
    }
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
        validate_requirement(rest[..end].trim())?;
        if end == rest.len() {
            return Ok(());
        }
        rest = &rest[end + 1..];
    }
}

fn validate_requirement(requirement: &str) -> Result<(), LabelSelectorError> {
    if requirement.is_empty() {
        return Err(LabelSelectorError::EmptyRequirement);
    }
    if let Some(key) = requirement.strip_prefix('!') {
        return validate_label_key(key.trim());
    }
    for operator in ["!=", "==", "="] {
        if let Some((key, value)) = requirement.split_once(operator) {
            validate_label_key(key.trim())?;
            return validate_label_value(value.trim());
        }
    }
    for operator in [" notin ", " in "] {
        if let Some((key, values)) = requirement.split_once(operator) {
            validate_label_key(key.trim())?;
            let values = values.trim();
            let inner = values
                .strip_prefix('(')
                .and_then(|values| values.strip_suffix(')'))
                .ok_or_else(|| {
                    LabelSelectorError::ValuesOutsideParentheses(requirement.to_owned())
                })?;
            for value in inner.split(',') {
                validate_label_value(value.trim())?;
            }
            return Ok(());
        }
    }
    if requirement.contains(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>')) {
        return Err(LabelSelectorError::NotARequirement(requirement.to_owned()));
    }
    validate_label_key(requirement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selection_follows_backstage_annotations() {
        let plain = json!({"metadata": {"name": "shop-api"}});
        assert_eq!(
            Selection::of_entity(&plain).unwrap(),
            Selection {
                label_selector: "backstage.io/kubernetes-id=shop-api".into(),
                namespace: None,
                cluster: None
            }
        );
        let annotated = json!({"metadata": {"name": "x", "annotations": {
            "backstage.io/kubernetes-id": "shop",
            "backstage.io/kubernetes-namespace": "shop-prod",
            "backstage.io/kubernetes-cluster": "prod-eu"
        }}});
        let selection = Selection::of_entity(&annotated).unwrap();
        assert_eq!(selection.label_selector, "backstage.io/kubernetes-id=shop");
        assert_eq!(selection.namespace.as_deref(), Some("shop-prod"));
        assert_eq!(selection.cluster.as_deref(), Some("prod-eu"));
        let selector = json!({"metadata": {"name": "x", "annotations": {
            "backstage.io/kubernetes-label-selector": "app=shop,tier in (web, api)",
            "backstage.io/kubernetes-id": "ignored"
        }}});
        assert_eq!(
            Selection::of_entity(&selector).unwrap().label_selector,
            "app=shop,tier in (web, api)"
        );
    }

    #[test]
    fn label_selectors_are_validated() {
        for good in [
            "app=shop",
            "app==shop",
            "app!=shop",
            "app",
            "!app",
            "app in (a,b)",
            "app notin (a)",
            "example.com/app=x,env",
            "a=b, c=d",
        ] {
            validate_label_selector(good).unwrap_or_else(|error| panic!("{good}: {error}"));
        }
        for bad in [
            "",
            "app=shop,",
            "app in a,b",
            "app in (a",
            "=x",
            "app=(x)",
            "a b",
            "app=sh op",
            "-app=x",
            "app=x)",
        ] {
            assert!(validate_label_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_entities_are_refused() {
        assert!(Selection::of_entity(&json!({"metadata": {}})).is_err());
        let bad = json!({"metadata": {"name": "x", "annotations": {"backstage.io/kubernetes-label-selector": "app in (a"}}});
        assert!(Selection::of_entity(&bad)
            .unwrap_err()
            .to_string()
            .contains("label-selector"));
        let bad_namespace = json!({"metadata": {"name": "x", "annotations": {"backstage.io/kubernetes-namespace": "Bad_NS"}}});
        assert!(Selection::of_entity(&bad_namespace).is_err());
    }
}
