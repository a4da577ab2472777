//! OpenAPI v3 structural validation with the API server's error wording.

use chrono::DateTime;
use regex::Regex;
use serde_json::{Map, Value};

use super::Cause;

/// What the server owns at an object's root, left out of its validation.
const SERVER_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Validates a whole custom resource; `apiVersion`, `kind` and `metadata` are the server's.
pub fn validate_object(schema: &Value, object: &Value, causes: &mut Vec<Cause>) {
    let Value::Object(fields) = object else {
        causes.push(type_invalid("", object, "object"));
        return;
    };
    // why: the root is validated in place, without the server's fields, instead of a copy of
    // the object and of the schema without them: admission runs on every write.
    validate_fields(schema, object, fields, "", &SERVER_FIELDS, causes);
}

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.to_string(),
        message,
        field: field.to_string(),
    }
}

/// Renders a value as Go's `field.Error` does: strings quoted, everything else as JSON.
fn shown(value: &Value) -> String {
    value.to_string()
}

fn invalid(path: &str, value: &Value, detail: &str) -> Cause {
    cause(
        "FieldValueInvalid",
        path,
        format!("Invalid value: {}: {path} in body {detail}", shown(value)),
    )
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_invalid(path: &str, value: &Value, expected: &str) -> Cause {
    let actual = type_name(value);
    cause(
        "FieldValueTypeInvalid",
        path,
        format!(
            "Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
        ),
    )
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn matches_type(value: &Value, expected: &str) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        // why: like the API server, `1.0` is an integer.
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "number" => value.is_number(),
        _ => true,
    }
}

fn number(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn count(schema: &Value, key: &str) -> Option<usize> {
    schema
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

fn validate(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            if let Some(expected) = schema.get("type").and_then(Value::as_str) {
                causes.push(type_invalid(path, value, expected));
            }
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if int_or_string {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            causes.push(type_invalid(path, value, "integer,string"));
            return;
        }
    } else if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        if !matches_type(value, expected) {
            causes.push(type_invalid(path, value, expected));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let supported: Vec<String> = allowed.iter().map(shown).collect();
            causes.push(cause(
                "FieldValueNotSupported",
                path,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    shown(value),
                    supported.join(", ")
                ),
            ));
        }
    }
    match value {
        Value::String(text) => validate_string(schema, value, text, path, causes),
        Value::Number(_) => validate_number(schema, value, path, causes),
        Value::Array(items) => validate_array(schema, value, items, path, causes),
        Value::Object(fields) => validate_fields(schema, value, fields, path, &[], causes),
        _ => {}
    }
}

fn validate_string(schema: &Value, value: &Value, text: &str, path: &str, causes: &mut Vec<Cause>) {
    let length = text.chars().count();
    if let Some(max) = count(schema, "maxLength").filter(|max| length > *max) {
        causes.push(cause(
            "FieldValueTooLong",
            path,
            format!("Too long: may not be more than {max} bytes"),
        ));
    }
    if let Some(min) = count(schema, "minLength").filter(|min| length < *min) {
        causes.push(invalid(
            path,
            value,
            &format!("should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        // why: an invalid pattern is refused when the CRD is created; never reject objects for it.
        if Regex::new(pattern).is_ok_and(|re| !re.is_match(text)) {
            causes.push(invalid(path, value, &format!("should match '{pattern}'")));
        }
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        if !string_has_format(text, format) {
            causes.push(invalid(
                path,
                value,
                &format!("must be of type {format}: {}", shown(value)),
            ));
        }
    }
}

fn string_has_format(text: &str, format: &str) -> bool {
    match format {
        "date-time" => DateTime::parse_from_rfc3339(text).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        "byte" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .is_ok()
        }
        "uuid" => uuid::Uuid::parse_str(text).is_ok(),
        _ => true,
    }
}

fn validate_number(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(n) = value.as_f64() else {
        return;
    };
    let exclusive = |key| schema.get(key).and_then(Value::as_bool) == Some(true);
    if let Some(min) = number(schema, "minimum") {
        if exclusive("exclusiveMinimum") && n <= min {
            causes.push(invalid(
                path,
                value,
                &format!("should be greater than {min}"),
            ));
        } else if n < min {
            causes.push(invalid(
                path,
                value,
                &format!("should be greater than or equal to {min}"),
            ));
        }
    }
    if let Some(max) = number(schema, "maximum") {
        if exclusive("exclusiveMaximum") && n >= max {
            causes.push(invalid(path, value, &format!("should be less than {max}")));
        } else if n > max {
            causes.push(invalid(
                path,
                value,
                &format!("should be less than or equal to {max}"),
            ));
        }
    }
    if let Some(factor) = number(schema, "multipleOf").filter(|f| *f != 0.0) {
        if (n / factor).fract() != 0.0 {
            causes.push(invalid(
                path,
                value,
                &format!("should be a multiple of {factor}"),
            ));
        }
    }
    let fits = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => value.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        Some("int64") => value.is_i64(),
        _ => true,
    };
    if !fits {
        let format = schema
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or_default();
        causes.push(invalid(
            path,
            value,
            &format!("must be of type {format}: \"{value}\""),
        ));
    }
}

fn validate_array(
    schema: &Value,
    value: &Value,
    items: &[Value],
    path: &str,
    causes: &mut Vec<Cause>,
) {
    if let Some(max) = count(schema, "maxItems").filter(|max| items.len() > *max) {
        causes.push(cause(
            "FieldValueTooMany",
            path,
            format!("Too many: {}: must have at most {max} items", items.len()),
        ));
    }
    if let Some(min) = count(schema, "minItems").filter(|min| items.len() < *min) {
        causes.push(invalid(
            path,
            value,
            &format!("should have at least {min} items"),
        ));
    }
    let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
    let unique = schema.get("uniqueItems").and_then(Value::as_bool) == Some(true);
    if unique || list_type == Some("set") {
        for (index, item) in items.iter().enumerate() {
            if items[..index].contains(item) {
                causes.push(cause(
                    "FieldValueDuplicate",
                    &format!("{path}[{index}]"),
                    format!("Duplicate value: {}", shown(item)),
                ));
            }
        }
    }
    if list_type == Some("map") {
        let keys: Vec<&str> = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|keys| keys.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let key_of = |item: &Value| -> Map<String, Value> {
            keys.iter()
                .filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect()
        };
        for (index, item) in items.iter().enumerate() {
            let key = key_of(item);
            if items[..index].iter().any(|earlier| key_of(earlier) == key) {
                causes.push(cause(
                    "FieldValueDuplicate",
                    &format!("{path}[{index}]"),
                    format!("Duplicate value: {}", Value::Object(key)),
                ));
            }
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (index, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{path}[{index}]"), causes);
        }
    }
}

/// Validates an object's fields, except those named in `omit` (as if they were absent).
fn validate_fields(
    schema: &Value,
    value: &Value,
    fields: &Map<String, Value>,
    path: &str,
    omit: &[&str],
    causes: &mut Vec<Cause>,
) {
    let kept = |name: &str| !omit.contains(&name);
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required
            .iter()
            .filter_map(Value::as_str)
            .filter(|n| kept(n))
        {
            if !fields.contains_key(name) {
                causes.push(cause(
                    "FieldValueRequired",
                    &join(path, name),
                    "Required value".into(),
                ));
            }
        }
    }
    let counted = fields.keys().filter(|name| kept(name)).count();
    if let Some(max) = count(schema, "maxProperties").filter(|max| counted > *max) {
        causes.push(cause(
            "FieldValueTooMany",
            path,
            format!("Too many: {counted}: must have at most {max} items"),
        ));
    }
    if let Some(min) = count(schema, "minProperties").filter(|min| counted < *min) {
        let without_omitted;
        let shown = if omit.is_empty() {
            value
        } else {
            without_omitted = Value::Object(
                fields
                    .iter()
                    .filter(|(name, _)| kept(name))
                    .map(|(name, child)| (name.clone(), child.clone()))
                    .collect(),
            );
            &without_omitted
        };
        causes.push(invalid(
            path,
            shown,
            &format!("should have at least {min} properties"),
        ));
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (name, child) in fields.iter().filter(|(name, _)| kept(name)) {
        let declared = properties.and_then(|p| p.get(name));
        if let Some(child_schema) = declared.or(additional) {
            validate(child_schema, child, &join(path, name), causes);
        }
    }
}
