//! Which objects belong to a catalog entity, from its annotations, exactly as
//! Backstage reads them: a label selector (`backstage.io/kubernetes-label-selector`,
//! else `backstage.io/kubernetes-id=<id or entity name>`), an optional namespace
//! and an optional cluster.

use serde_json::Value;

use crate::kubernetes::labels::validate_label_value;
pub use crate::kubernetes::labels::{validate_label_selector, LabelSelectorError};

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
