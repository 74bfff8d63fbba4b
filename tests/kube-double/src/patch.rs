//! The four patch types of the Kubernetes API and how the double applies them.
//!
//! JSON patch (RFC 6902) and JSON merge patch (RFC 7386) are exact. Strategic merge
//! patch is approximated: it is a merge patch, except that lists whose elements all
//! carry a `name` (containers, volumes, env, ...) are merged element by element by
//! name, `$patch: replace` and `$patch: delete` are honoured, and
//! `$deleteFromPrimitiveList/<field>` removes values; other directives
//! (`$setElementOrder/...`, `$retainKeys`) are dropped. Server-side apply is that
//! same merge of the applied configuration into the object, with no field ownership.

use serde_json::{Map, Value};

/// A patch type, from the request's `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchType {
    pub(crate) fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        match media_type {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    /// The media types accepted for a resource, as the 415 answer lists them.
    pub(crate) fn accepted(custom_resource: bool) -> &'static str {
        if custom_resource {
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        } else {
            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PatchError {
    #[error("the patch is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the apply configuration is not valid YAML: {0}")]
    Yaml(#[from] serde_saphyr::Error),
    #[error("the JSON patch could not be applied: {0}")]
    JsonPatch(#[from] json_patch::PatchError),
    #[error("the patch must be an object")]
    NotAnObject,
}

/// Applies a patch body to the current object.
pub(crate) fn apply_patch(
    patch_type: PatchType,
    current: &Value,
    body: &[u8],
) -> Result<Value, PatchError> {
    let mut document = current.clone();
    match patch_type {
        PatchType::Json => {
            let operations: json_patch::Patch = serde_json::from_slice(body)?;
            json_patch::patch(&mut document, &operations)?;
            Ok(document)
        }
        PatchType::Merge => {
            let patch: Value = serde_json::from_slice(body)?;
            json_patch::merge(&mut document, &patch);
            Ok(document)
        }
        PatchType::StrategicMerge => {
            let patch: Value = serde_json::from_slice(body)?;
            object_patch(&document, &patch)
        }
        PatchType::Apply => {
            let configuration: Value = serde_saphyr::from_slice(body)?;
            object_patch(&document, &configuration)
        }
    }
}

fn object_patch(document: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::NotAnObject);
    }
    Ok(strategic_merge(document, patch))
}

fn strategic_merge(target: &Value, patch: &Value) -> Value {
    match (target, patch) {
        (Value::Object(target_fields), Value::Object(patch_fields)) => {
            if patch_fields.get("$patch").and_then(Value::as_str) == Some("replace") {
                return without_directives(patch);
            }
            merge_objects(target_fields, patch_fields)
        }
        (Value::Array(target_items), Value::Array(patch_items))
            if !patch_items.is_empty() && named(target_items) && named(patch_items) =>
        {
            Value::Array(merge_named_lists(target_items, patch_items))
        }
        (_, patch) => without_directives(patch),
    }
}

fn merge_objects(target: &Map<String, Value>, patch: &Map<String, Value>) -> Value {
    let mut merged = target.clone();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(doomed)) =
                (merged.get_mut(field), value)
            {
                items.retain(|item| !doomed.contains(item));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            merged.remove(key);
            continue;
        }
        let next = match merged.get(key) {
            Some(existing) => strategic_merge(existing, value),
            None => without_directives(value),
        };
        merged.insert(key.clone(), next);
    }
    Value::Object(merged)
}

fn named(items: &[Value]) -> bool {
    items
        .iter()
        .all(|item| item.get("name").is_some_and(Value::is_string))
}

fn merge_named_lists(target: &[Value], patch: &[Value]) -> Vec<Value> {
    let mut merged = target.to_vec();
    for item in patch {
        let position = merged
            .iter()
            .position(|existing| existing["name"] == item["name"]);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(index), true) => {
                merged.remove(index);
            }
            (None, true) => {}
            (Some(index), false) => merged[index] = strategic_merge(&merged[index], item),
            (None, false) => merged.push(without_directives(item)),
        }
    }
    merged
}

fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(key, _)| !key.starts_with('$'))
                .map(|(key, value)| (key.clone(), without_directives(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "api", "labels": {"app": "api", "tier": "web"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "api", "image": "api:1", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "proxy:1"}
            ]}}}
        })
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }

    #[test]
    fn json_patch_and_its_failing_test_operation() {
        let body = br#"[{"op":"replace","path":"/spec/replicas","value":3},{"op":"remove","path":"/metadata/labels/tier"}]"#;
        let patched = apply_patch(PatchType::Json, &deployment(), body).unwrap();
        assert_eq!(patched["spec"]["replicas"], 3);
        assert_eq!(patched["metadata"]["labels"], json!({"app": "api"}));
        let failing = br#"[{"op":"test","path":"/spec/replicas","value":9}]"#;
        assert!(apply_patch(PatchType::Json, &deployment(), failing).is_err());
    }

    #[test]
    fn merge_patch_replaces_lists_and_deletes_nulls() {
        let body = br#"{"metadata":{"labels":{"tier":null}},"spec":{"template":{"spec":{"containers":[{"name":"api","image":"api:2"}]}}}}"#;
        let patched = apply_patch(PatchType::Merge, &deployment(), body).unwrap();
        assert_eq!(patched["metadata"]["labels"], json!({"app": "api"}));
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"],
            json!([{"name": "api", "image": "api:2"}])
        );
    }

    #[test]
    fn strategic_merge_merges_named_lists_and_drops_directives() {
        let body = br#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"api"},{"name":"sidecar"}],"containers":[{"name":"api","image":"api:2"}]}}}}"#;
        let patched = apply_patch(PatchType::StrategicMerge, &deployment(), body).unwrap();
        let containers = &patched["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            containers[0],
            json!({"name": "api", "image": "api:2", "ports": [{"containerPort": 80}]})
        );
        assert_eq!(containers[1]["name"], "sidecar");
        assert!(patched["spec"]["template"]["spec"]
            .get("$setElementOrder/containers")
            .is_none());
    }

    #[test]
    fn strategic_merge_deletes_named_elements() {
        let body = br#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}}}}"#;
        let patched = apply_patch(PatchType::StrategicMerge, &deployment(), body).unwrap();
        let containers = patched["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "api");
    }

    #[test]
    fn apply_reads_yaml_and_creates_from_nothing() {
        let body =
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n";
        let applied = apply_patch(PatchType::Apply, &json!({}), body).unwrap();
        assert_eq!(applied["data"]["mode"], "fast");
        assert_eq!(applied["metadata"]["name"], "settings");
        assert!(apply_patch(PatchType::Apply, &json!({}), b"- a list").is_err());
    }
}
