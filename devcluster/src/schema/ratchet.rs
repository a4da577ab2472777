//! CRD validation ratcheting (GA in Kubernetes 1.30, `apiserver/validation/ratcheting.go`):
//! on update, errors inside a value that is unchanged from the old object are not reported, so
//! a stricter schema does not lock existing objects.
//!
//! Old values are correlated with new ones as upstream does: object properties by name, list
//! items by index, `x-kubernetes-list-type: map` items by their keys; `set` and `atomic` list
//! items are not correlatable, so they ratchet only as a whole list.

use serde_json::Value;

/// The paths (`spec.items[0].name`, as validation errors name fields) of the outermost
/// correlatable values equal to their old value; `""` when the whole object is unchanged.
pub fn unchanged_paths(schema: &Value, new: &Value, old: &Value) -> Vec<String> {
    let mut unchanged = Vec::new();
    collect(Some(schema), new, old, "", &mut unchanged);
    unchanged
}

/// Whether an error at `field` lies inside an unchanged value and so is ratcheted.
pub fn ratchets(unchanged: &[String], field: &str) -> bool {
    unchanged.iter().any(|path| {
        path.is_empty()
            || field.strip_prefix(path.as_str()).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            })
    })
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn collect(schema: Option<&Value>, new: &Value, old: &Value, path: &str, out: &mut Vec<String>) {
    if new == old {
        out.push(path.to_string());
        return;
    }
    match (new, old) {
        (Value::Object(fields), Value::Object(old_fields)) => {
            let properties = schema.and_then(|s| s.get("properties"));
            let additional = schema
                .and_then(|s| s.get("additionalProperties"))
                .filter(|a| a.is_object());
            for (name, value) in fields {
                // why: upstream never ratchets a changed apiVersion or kind.
                if path.is_empty() && (name == "apiVersion" || name == "kind") {
                    continue;
                }
                if let Some(old_value) = old_fields.get(name) {
                    let child = properties.and_then(|p| p.get(name)).or(additional);
                    collect(child, value, old_value, &join(path, name), out);
                }
            }
        }
        (Value::Array(items), Value::Array(old_items)) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            let list_type = schema
                .and_then(|s| s.get("x-kubernetes-list-type"))
                .and_then(Value::as_str);
            for (index, item) in items.iter().enumerate() {
                let correlated = match list_type {
                    Some("map") => schema.and_then(|s| same_keys(s, item, old_items)),
                    Some("set" | "atomic") => None,
                    _ => old_items.get(index),
                };
                if let Some(old_item) = correlated {
                    collect(
                        item_schema,
                        item,
                        old_item,
                        &format!("{path}[{index}]"),
                        out,
                    );
                }
            }
        }
        _ => {}
    }
}

/// The old item of a map-list with the same `x-kubernetes-list-map-keys` values as `item`.
fn same_keys<'o>(schema: &Value, item: &Value, old_items: &'o [Value]) -> Option<&'o Value> {
    let keys: Vec<&str> = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    old_items
        .iter()
        .find(|old| keys.iter().all(|key| old.get(*key) == item.get(*key)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{ratchets, unchanged_paths};
    use crate::schema::{admit_custom_resource, AdmissionError, FieldValidation, Schema};

    fn list_schema(list_type: &str) -> serde_json::Value {
        json!({ "type": "object", "properties": { "items": {
            "type": "array",
            "x-kubernetes-list-type": list_type,
            "x-kubernetes-list-map-keys": ["name"],
            "items": { "type": "object", "properties": {
                "name": { "type": "string" }, "size": { "type": "integer" },
            }},
        }}})
    }

    #[test]
    fn only_the_outermost_unchanged_values_are_recorded() {
        let schema = json!({ "type": "object" });
        let old = json!({ "spec": { "a": { "x": 1 }, "b": 2 }, "status": { "c": 3 } });
        let new = json!({ "spec": { "a": { "x": 1 }, "b": 5 }, "status": { "c": 3 } });
        assert_eq!(
            unchanged_paths(&schema, &new, &old),
            vec!["spec.a", "status"]
        );
        assert_eq!(unchanged_paths(&schema, &old, &old), vec![""]);
    }

    #[test]
    fn map_list_items_correlate_by_key_others_by_index_sets_not_at_all() {
        let old = json!({ "items": [{ "name": "a", "size": 1 }, { "name": "b", "size": 2 }] });
        let new = json!({ "items": [{ "name": "b", "size": 2 }, { "name": "a", "size": 9 }] });
        assert_eq!(
            unchanged_paths(&list_schema("map"), &new, &old),
            vec!["items[0]", "items[1].name"]
        );
        assert_eq!(
            unchanged_paths(&list_schema("atomic"), &new, &old),
            Vec::<String>::new()
        );
        let appended = json!({ "items": [{ "name": "a", "size": 1 }, { "name": "c", "size": 3 }] });
        assert_eq!(
            unchanged_paths(&json!({ "type": "object" }), &appended, &old),
            vec!["items[0]"]
        );
    }

    #[test]
    fn an_unchanged_path_covers_its_descendants_only() {
        let unchanged = vec!["spec.a".to_string()];
        assert!(ratchets(&unchanged, "spec.a"));
        assert!(ratchets(&unchanged, "spec.a.b"));
        assert!(ratchets(&unchanged, "spec.a[0]"));
        assert!(!ratchets(&unchanged, "spec.ab"));
        assert!(!ratchets(&unchanged, "spec"));
    }

    #[test]
    fn updates_keeping_an_invalid_value_are_admitted_and_changing_it_is_not() {
        let schema = json!({ "type": "object", "properties": { "spec": {
            "type": "object",
            "properties": {
                "label": { "type": "string", "maxLength": 3 },
                "size": { "type": "integer" },
                "limits": {
                    "type": "object",
                    "properties": { "max": { "type": "integer" } },
                    "x-kubernetes-validations": [{ "rule": "self.max < 5", "message": "too big" }],
                },
            },
        }}});
        let schema = Schema::new(schema);
        let old = json!({ "apiVersion": "x/v1", "kind": "K", "metadata": { "name": "o" },
            "spec": { "label": "toolong", "size": 1, "limits": { "max": 9 } } });
        let mut kept = old.clone();
        kept["spec"]["size"] = json!(2);
        let warnings =
            admit_custom_resource(&schema, &mut kept, Some(&old), FieldValidation::Strict)
                .expect("ratcheted");
        assert_eq!(
            warnings,
            vec!["spec.limits: Invalid value: \"object\": too big"]
        );

        let mut changed = old.clone();
        changed["spec"]["label"] = json!("longer");
        let Err(AdmissionError::Invalid(causes)) =
            admit_custom_resource(&schema, &mut changed, Some(&old), FieldValidation::Strict)
        else {
            panic!("the changed label is validated");
        };
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.label");
    }
}
