//! Structural pruning: drops fields the schema does not declare, recording their paths.

use serde_json::{Map, Value};

/// The `ObjectMeta` fields kept under a custom resource's root `metadata`.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Prunes a whole custom resource against its root schema; returns the unknown field paths.
pub fn prune_object(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    prune(schema, object, "", true, &mut unknown);
    unknown
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

/// Whether `object` at this level may carry `apiVersion`, `kind` and `metadata`.
fn is_resource(schema: &Value, root: bool) -> bool {
    root || flag(schema, "x-kubernetes-embedded-resource")
}

fn prune(schema: &Value, value: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    match value {
        Value::Object(fields) => prune_fields(schema, fields, path, root, unknown),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    prune(
                        item_schema,
                        item,
                        &format!("{path}[{index}]"),
                        false,
                        unknown,
                    );
                }
            }
        }
        _ => {}
    }
}

fn prune_fields(
    schema: &Value,
    fields: &mut Map<String, Value>,
    path: &str,
    root: bool,
    unknown: &mut Vec<String>,
) {
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let resource = is_resource(schema, root);
    let mut doomed = Vec::new();
    for (name, child) in fields.iter_mut() {
        let child_path = join(path, name);
        if resource && (name == "apiVersion" || name == "kind") {
            continue;
        }
        if resource && name == "metadata" {
            if let Value::Object(meta) = child {
                prune_metadata(meta, &child_path, unknown);
            }
            continue;
        }
        if let Some(child_schema) = properties.and_then(|p| p.get(name)) {
            prune(child_schema, child, &child_path, false, unknown);
        } else if let Some(child_schema) = additional.filter(|a| a.is_object()) {
            prune(child_schema, child, &child_path, false, unknown);
        } else if !(preserve || additional == Some(&Value::Bool(true))) {
            doomed.push(name.clone());
            unknown.push(child_path);
        }
    }
    for name in doomed {
        fields.remove(&name);
    }
}

fn prune_metadata(meta: &mut Map<String, Value>, path: &str, unknown: &mut Vec<String>) {
    meta.retain(|name, _| {
        let known = OBJECT_META_FIELDS.contains(&name.as_str());
        if !known {
            unknown.push(join(path, name));
        }
        known
    });
}
