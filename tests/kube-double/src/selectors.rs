//! Label and field selectors, as list and watch requests carry them.
//!
//! Label selectors follow the Kubernetes grammar (`a=b`, `a==b`, `a!=b`,
//! `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma-separated, all must hold). Field
//! selectors are simplified: `path=value`, `path==value` and `path!=value` on any
//! dotted field path of the object, where a real server accepts only a few paths
//! per type.

use serde_json::Value;

/// A selector that could not be parsed; the message is the API server's wording.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub(crate) struct SelectorError(String);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub(crate) fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
        let requirements = split_outside_parentheses(text)
            .into_iter()
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        Ok(LabelSelector { requirements })
    }

    /// Whether an object (its `metadata.labels`) satisfies every requirement.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |key: &str| {
            labels
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str)
        };
        self.requirements.iter().all(|requirement| {
            let value = label(&requirement.key);
            match requirement.operator {
                Operator::Equals | Operator::In => {
                    value.is_some_and(|value| requirement.values.iter().any(|v| v == value))
                }
                Operator::NotEquals | Operator::NotIn => {
                    value.is_none_or(|value| requirement.values.iter().all(|v| v != value))
                }
                Operator::Exists => value.is_some(),
                Operator::DoesNotExist => value.is_none(),
            }
        })
    }
}

fn split_outside_parentheses(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, SelectorError> {
    let invalid = || SelectorError(format!("unable to parse requirement: found '{part}'"));
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement {
            key: valid_key(key.trim(), part)?,
            operator: Operator::DoesNotExist,
            values: Vec::new(),
        });
    }
    for (symbol, operator) in [
        ("!=", Operator::NotEquals),
        ("==", Operator::Equals),
        ("=", Operator::Equals),
    ] {
        if let Some((key, value)) = part.split_once(symbol) {
            return Ok(Requirement {
                key: valid_key(key.trim(), part)?,
                operator,
                values: vec![value.trim().to_owned()],
            });
        }
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let Some(rest) = words.next().map(str::trim) else {
        return Ok(Requirement {
            key: valid_key(key, part)?,
            operator: Operator::Exists,
            values: Vec::new(),
        });
    };
    let (operator, list) = if let Some(list) = rest.strip_prefix("notin") {
        (Operator::NotIn, list)
    } else if let Some(list) = rest.strip_prefix("in") {
        (Operator::In, list)
    } else {
        return Err(invalid());
    };
    let values = list
        .trim()
        .strip_prefix('(')
        .and_then(|list| list.strip_suffix(')'))
        .ok_or_else(invalid)?
        .split(',')
        .map(|value| value.trim().to_owned())
        .collect();
    Ok(Requirement {
        key: valid_key(key, part)?,
        operator,
        values,
    })
}

fn valid_key(key: &str, part: &str) -> Result<String, SelectorError> {
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(SelectorError(format!(
            "unable to parse requirement: invalid label key \"{key}\" in '{part}'"
        )))
    }
}

/// A parsed field selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    /// (field path, must equal, value)
    terms: Vec<(Vec<String>, bool, String)>,
}

impl FieldSelector {
    pub(crate) fn parse(text: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = Vec::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (field, equal, value) = if let Some((field, value)) = part.split_once("!=") {
                (field, false, value)
            } else if let Some((field, value)) = part.split_once("==") {
                (field, true, value)
            } else if let Some((field, value)) = part.split_once('=') {
                (field, true, value)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                )));
            };
            let path = field.trim().split('.').map(str::to_owned).collect();
            terms.push((path, equal, value.trim().to_owned()));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether an object satisfies every term; a missing field reads as "".
    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(path, equal, expected)| {
            let actual = path
                .iter()
                .try_fold(object, |value, key| value.get(key))
                .map(|value| match value {
                    Value::String(text) => text.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (actual == *expected) == *equal
        })
    }
}

/// The label and field selectors of a list or watch request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selection {
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl Selection {
    pub(crate) fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, SelectorError> {
        Ok(Selection {
            labels: LabelSelector::parse(labels.unwrap_or_default())?,
            fields: FieldSelector::parse(fields.unwrap_or_default())?,
        })
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: Value) -> Value {
        json!({"metadata": {"name": "x", "namespace": "shop", "labels": labels}})
    }

    #[test]
    fn equality_and_inequality() {
        let object = labelled(json!({"app": "api", "tier": "web"}));
        assert!(LabelSelector::parse("app=api").unwrap().matches(&object));
        assert!(LabelSelector::parse("app==api,tier=web")
            .unwrap()
            .matches(&object));
        assert!(!LabelSelector::parse("app=api,tier=db")
            .unwrap()
            .matches(&object));
        assert!(LabelSelector::parse("tier!=db").unwrap().matches(&object));
        assert!(LabelSelector::parse("missing!=x").unwrap().matches(&object));
        assert!(!LabelSelector::parse("app!=api").unwrap().matches(&object));
    }

    #[test]
    fn set_based_requirements() {
        let object = labelled(json!({"backstage.io/kubernetes-id": "shop-api", "env": "prod"}));
        let matches = |text: &str| LabelSelector::parse(text).unwrap().matches(&object);
        assert!(matches("env in (prod, staging)"));
        assert!(!matches("env in (dev)"));
        assert!(matches("env notin (dev,qa)"));
        assert!(!matches("env notin (prod)"));
        assert!(matches("backstage.io/kubernetes-id"));
        assert!(matches("!absent"));
        assert!(!matches("!env"));
        assert!(matches(
            "env in (prod,staging),backstage.io/kubernetes-id=shop-api"
        ));
    }

    #[test]
    fn empty_selector_matches_objects_without_labels() {
        let object = json!({"metadata": {"name": "bare"}});
        assert!(LabelSelector::parse("").unwrap().matches(&object));
        assert!(!LabelSelector::parse("app").unwrap().matches(&object));
        assert!(LabelSelector::parse("!app").unwrap().matches(&object));
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        assert!(LabelSelector::parse("env within (prod)").is_err());
        assert!(LabelSelector::parse("env in prod").is_err());
        assert!(LabelSelector::parse("=x").is_err());
        assert!(FieldSelector::parse("metadata.name").is_err());
    }

    #[test]
    fn field_selectors_read_field_paths() {
        let object = json!({"metadata": {"name": "api-1", "namespace": "shop"}, "status": {"phase": "Running"}});
        let matches = |text: &str| FieldSelector::parse(text).unwrap().matches(&object);
        assert!(matches("metadata.name=api-1"));
        assert!(matches("metadata.namespace==shop,status.phase=Running"));
        assert!(!matches("metadata.name!=api-1"));
        assert!(matches("spec.nodeName="));
    }
}
