//! Secret values out of object-query results. A holder of
//! `kubernetes.resources.read` sees that a Secret exists, its keys, type and
//! metadata, never a value: not in `data` or `stringData`, and not in a copy
//! kept in its metadata, such as kubectl's
//! `kubectl.kubernetes.io/last-applied-configuration` annotation (the whole
//! manifest as applied, values included).
//!
//! `managedFields` need nothing: they name the keys a manager owns
//! (`f:data: {f:password: {}}`), never their values.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

/// What a masked value reads.
pub const MASK: &str = "***";

/// Values shorter than this are masked in metadata only where they are the
/// whole value: as substrings they would match nearly anything.
const MIN_SUBSTRING: usize = 6;

/// Whether a listed object is a Secret by its own account (the list it came
/// in may have been asked for under any name).
pub fn says_it_is_a_secret(object: &Value) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("Secret")
}

/// Masks every value of a Secret: `data` and `stringData`, and wherever
/// its metadata (annotations, labels) copies them.
pub fn mask_secret(object: &mut Value) {
    let values = secret_values(object);
    mask_value_maps(object);
    let Some(Value::Object(metadata)) = object.get_mut("metadata") else {
        return;
    };
    for field in ["annotations", "labels"] {
        if let Some(Value::Object(entries)) = metadata.get_mut(field) {
            for entry in entries.values_mut() {
                if let Value::String(text) = entry {
                    if let Some(masked) = masked_copy(text, &values) {
                        *text = masked;
                    }
                }
            }
        }
    }
}

/// The Secret's values as they may be copied: `data` as sent (base64) and
/// decoded, `stringData` as is.
fn secret_values(object: &Value) -> Vec<String> {
    let mut values = Vec::new();
    if let Some(Value::Object(data)) = object.get("data") {
        for value in data.values().filter_map(Value::as_str) {
            values.push(value.to_owned());
            if let Some(decoded) = STANDARD
                .decode(value)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
            {
                values.push(decoded);
            }
        }
    }
    if let Some(Value::Object(data)) = object.get("stringData") {
        values.extend(data.values().filter_map(Value::as_str).map(str::to_owned));
    }
    values.retain(|value| !value.is_empty());
    values
}

/// Replaces the values of every `data` and `stringData` map in `value`,
/// however deep (a copy may be a list of objects).
fn mask_value_maps(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                match (name.as_str(), &mut *field) {
                    ("data" | "stringData", Value::Object(values)) => {
                        for value in values.values_mut() {
                            *value = Value::String(MASK.into());
                        }
                    }
                    _ => mask_value_maps(field),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_value_maps),
        _ => {}
    }
}

/// A metadata value with the Secret's values taken out, if it held any: a
/// JSON copy of the object keeps its shape with its values masked; anything
/// else that still contains a value is masked whole.
fn masked_copy(text: &str, values: &[String]) -> Option<String> {
    let restructured = match serde_json::from_str::<Value>(text) {
        Ok(mut copy @ (Value::Object(_) | Value::Array(_))) => {
            let before = copy.clone();
            mask_value_maps(&mut copy);
            (copy != before).then(|| copy.to_string())
        }
        _ => None,
    };
    let candidate = restructured.as_deref().unwrap_or(text);
    let leaks = values.iter().any(|value| {
        candidate == value || (value.len() >= MIN_SUBSTRING && candidate.contains(value.as_str()))
    });
    if leaks {
        Some(MASK.into())
    } else {
        restructured
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

    fn applied_secret() -> Value {
        let manifest = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "shop", "annotations": {}},
            "data": {"password": "aHVudGVyMi1wYXNzd29yZA=="},
            "stringData": {"url": "postgres://app:s3cr3t-value@db/app"},
            "type": "Opaque",
        });
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "db", "namespace": "shop",
                "labels": {"app": "shop", "copied": "hunter2-password"},
                "annotations": {
                    LAST_APPLIED: format!("{manifest}\n"),
                    "example.com/owner": "team-shop",
                    "example.com/debug": "password was hunter2-password",
                },
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {"f:password": {}}}}],
            },
            "data": {"password": "aHVudGVyMi1wYXNzd29yZA=="},
            "stringData": {"url": "postgres://app:s3cr3t-value@db/app"},
            "type": "Opaque",
        })
    }

    #[test]
    fn no_value_survives_anywhere_in_a_secret() {
        let mut secret = applied_secret();
        mask_secret(&mut secret);
        let text = secret.to_string();
        for value in [
            "aHVudGVyMi1wYXNzd29yZA==",
            "hunter2-password",
            "s3cr3t-value",
        ] {
            assert!(!text.contains(value), "{value} in {text}");
        }
        assert_eq!(secret["data"]["password"], MASK);
        assert_eq!(secret["stringData"]["url"], MASK);
        assert_eq!(secret["metadata"]["labels"]["copied"], MASK);
        assert_eq!(secret["metadata"]["annotations"]["example.com/debug"], MASK);
    }

    #[test]
    fn what_is_not_a_value_is_kept() {
        let mut secret = applied_secret();
        mask_secret(&mut secret);
        let annotations = &secret["metadata"]["annotations"];
        assert_eq!(annotations["example.com/owner"], "team-shop");
        assert_eq!(secret["metadata"]["labels"]["app"], "shop");
        assert_eq!(secret["type"], "Opaque");
        // The last-applied copy keeps its shape, still JSON, values masked.
        let copy: Value =
            serde_json::from_str(annotations[LAST_APPLIED].as_str().unwrap()).unwrap();
        assert_eq!(copy["metadata"]["name"], "db");
        assert_eq!(copy["data"]["password"], MASK);
        assert_eq!(copy["stringData"]["url"], MASK);
        assert_eq!(
            secret["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:data": {"f:password": {}}})
        );
    }

    #[test]
    fn a_copy_that_holds_a_value_outside_data_is_masked_whole() {
        let mut secret = json!({
            "kind": "Secret",
            "metadata": {"annotations": {
                LAST_APPLIED: json!({"kind": "Secret", "metadata": {"annotations": {"note": "hunter2-password"}},
                    "data": {"password": "aHVudGVyMi1wYXNzd29yZA=="}}).to_string(),
            }},
            "data": {"password": "aHVudGVyMi1wYXNzd29yZA=="},
        });
        mask_secret(&mut secret);
        assert_eq!(secret["metadata"]["annotations"][LAST_APPLIED], MASK);
    }

    #[test]
    fn short_values_are_masked_where_they_are_the_whole_value() {
        let mut secret = json!({
            "kind": "Secret",
            "metadata": {"labels": {"pin": "1234", "tier": "1234-frontend"}},
            "stringData": {"pin": "1234"},
        });
        mask_secret(&mut secret);
        assert_eq!(secret["metadata"]["labels"]["pin"], MASK);
        assert_eq!(secret["metadata"]["labels"]["tier"], "1234-frontend");
    }

    #[test]
    fn secrets_are_known_by_their_kind() {
        assert!(says_it_is_a_secret(&json!({"kind": "Secret"})));
        assert!(!says_it_is_a_secret(&json!({"kind": "ConfigMap"})));
    }
}
