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
