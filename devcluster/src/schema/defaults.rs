//! Structural defaulting: `default` values for absent properties, and dropping `null`s the
//! schema does not allow, as the API server does before validation.

use serde_json::Value;

/// Applies defaults throughout `value`, including inside values that were just defaulted.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            if let Some(properties) = properties {
                // why: a null for a non-nullable field is dropped, then defaulted like an absent one.
                fields.retain(|name, child| {
                    !child.is_null() || properties.get(name).is_none_or(is_nullable)
                });
                for (name, property) in properties {
                    if let (false, Some(default)) =
                        (fields.contains_key(name), property.get("default"))
                    {
                        fields.insert(name.clone(), default.clone());
                    }
                }
            }
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (name, child) in fields.iter_mut() {
                if let Some(child_schema) = properties.and_then(|p| p.get(name)).or(additional) {
                    apply_defaults(child_schema, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn is_nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}
