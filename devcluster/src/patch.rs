//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

mod json;
mod strategic;
#[cfg(test)]
mod strategic_tests;
mod strategy;

pub(crate) use strategy::{builtin_list_strategy, ListStrategy};

use serde_json::Value;

/// Why a patch could not be applied; the message is shown to the client in a `Status`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// Applies an RFC 7386 merge patch in place (`null` deletes a key).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(fields) = target {
        for (key, value) in patch_fields {
            if value.is_null() {
                fields.remove(key);
            } else {
                merge_patch(fields.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Applies an RFC 6902 JSON patch in place. A `test` op on a missing path compares against `null`,
/// as the Kubernetes API server does.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    json::apply(target, patch)
}

/// Applies a strategic merge patch for a built-in kind (`kind` is e.g. `Deployment`), using the
/// Kubernetes patch strategies and merge keys (containers by `name`, ...), `$patch: delete|replace`
/// directives, `$retainKeys`, `$setElementOrder` and `null` deletes.
pub fn strategic_merge_patch(
    target: &mut Value,
    patch: &Value,
    kind: &str,
) -> Result<(), PatchError> {
    strategic::apply(target, patch, kind)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn merged(mut target: Value, patch: Value) -> Value {
        merge_patch(&mut target, &patch);
        target
    }

    #[test]
    fn merge_patch_follows_rfc_7386_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(merged(target, patch.clone()), expected, "patch {patch}");
        }
    }

    #[test]
    fn merge_patch_removes_a_label_and_keeps_the_rest() {
        let object = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}});
        let patch = json!({"metadata": {"labels": {"x": null}}});
        assert_eq!(
            merged(object, patch),
            json!({"metadata": {"name": "a", "labels": {"y": "2"}}})
        );
    }
}
