//! `x-kubernetes-validations` CEL rules, evaluated by `kube-cel`, reported as the API server
//! reports them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use kube_cel::{CompiledSchema, ErrorKind, ValidationError};
use serde_json::Value;

use super::{Cause, Schema};

/// How many distinct schemas each thread keeps compiled.
const CACHED_SCHEMAS: usize = 32;

thread_local! {
    // why: compiling every rule on every write dominates admission cost; schemas rarely change.
    static COMPILED: RefCell<HashMap<u64, Rc<CompiledSchema>>> = RefCell::new(HashMap::new());
}

/// The compiled form of `schema`, from this thread's cache.
fn compiled(schema: &Schema) -> Rc<CompiledSchema> {
    COMPILED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(found) = cache.get(&schema.id()) {
            return Rc::clone(found);
        }
        if cache.len() >= CACHED_SCHEMAS {
            cache.clear();
        }
        let fresh = Rc::new(kube_cel::compile_schema(schema));
        cache.insert(schema.id(), Rc::clone(&fresh));
        fresh
    })
}

/// Evaluates every rule of `schema` on `object` (`old` for transition rules). Failures of
/// rules without `oldSelf` on a value within `unchanged` are ratcheted into `warnings`.
pub fn validate_rules(
    schema: &Schema,
    object: &Value,
    old: Option<&Value>,
    unchanged: &[String],
    causes: &mut Vec<Cause>,
    warnings: &mut Vec<String>,
) {
    let Err(errors) = kube_cel::validate_compiled(&compiled(schema), object, old) else {
        return;
    };
    for error in errors.iter() {
        let cause = to_cause(schema, error);
        let node = declaring_path(schema, &error.rule, &cause.field);
        if !reads_old_self(&error.rule) && super::ratchet::ratchets(unchanged, node) {
            warnings.push(format!("{}: {}", cause.field, cause.message));
        } else {
            causes.push(cause);
        }
    }
}

/// Whether `rule` is a transition rule (reads `oldSelf`); those never ratchet.
fn reads_old_self(rule: &str) -> bool {
    kube_cel::cel::Program::compile(rule)
        .map(|program| program.references().has_variable("oldSelf"))
        .unwrap_or(true)
}

fn to_cause(schema: &Value, error: &ValidationError) -> Cause {
    let field = error.field_path.trim_start_matches('.').to_string();
    let reason = match error.kind {
        ErrorKind::ValidationFailure => error.reason.as_deref().unwrap_or("FieldValueInvalid"),
        _ => "FieldValueInvalid",
    };
    let message = match reason {
        "FieldValueForbidden" => format!("Forbidden: {}", error.message),
        "FieldValueRequired" => format!("Required value: {}", error.message),
        "FieldValueDuplicate" => format!("Duplicate value: {}", error.message),
        _ => format!(
            "Invalid value: \"{}\": {}",
            schema_type_at(schema, declaring_path(schema, &error.rule, &field)),
            error.message
        ),
    };
    Cause {
        reason: reason.to_string(),
        message,
        field,
    }
}

/// The path of the schema node that declares `rule`: the failure's `field` without the rule's
/// `fieldPath`, since the API server shows the declaring node's type.
fn declaring_path<'f>(schema: &Value, rule: &str, field: &'f str) -> &'f str {
    let Some(rule_path) = rule_field_path(schema, rule) else {
        return field;
    };
    let rule_path = rule_path.trim_start_matches('.');
    if field == rule_path {
        return "";
    }
    field
        .strip_suffix(rule_path)
        .and_then(|base| base.strip_suffix('.'))
        .unwrap_or(field)
}

/// The `fieldPath` declared with `rule` anywhere in `schema`.
fn rule_field_path<'s>(schema: &'s Value, rule: &str) -> Option<&'s str> {
    match schema {
        Value::Object(fields) => {
            let declared = fields
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .and_then(|rules| {
                    rules
                        .iter()
                        .find(|r| r.get("rule").and_then(Value::as_str) == Some(rule))
                })
                .and_then(|r| r.get("fieldPath"))
                .and_then(Value::as_str);
            declared.or_else(|| fields.values().find_map(|v| rule_field_path(v, rule)))
        }
        Value::Array(items) => items.iter().find_map(|v| rule_field_path(v, rule)),
        _ => None,
    }
}

/// The schema `type` at a `spec.items[0].name`-style path, as shown in CEL failures.
fn schema_type_at(schema: &Value, path: &str) -> String {
    let mut node = Some(schema);
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indices) = match segment.find('[') {
            Some(at) => (&segment[..at], segment[at..].matches('[').count()),
            None => (segment, 0),
        };
        node = node.and_then(|n| {
            n.get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| n.get("additionalProperties").filter(|a| a.is_object()))
        });
        for _ in 0..indices {
            node = node.and_then(|n| n.get("items"));
        }
    }
    node.and_then(|n| n.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_string()
}
