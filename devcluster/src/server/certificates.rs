//! CertificateSigningRequests as kube-apiserver's CSR strategies write them: the requester is
//! recorded on create, conditions change only through `/approval` (Approved, Denied) and
//! `/status` (everything else), and Approved, Denied and Failed conditions are never removed.
//!
//! Nothing signs certificates: a CSR is approved or denied and stays that way.

use serde_json::{json, Map, Value};

use super::Call;
use crate::status::ApiError;

/// Condition types only `/approval` may add, change or remove.
const APPROVAL_TYPES: [&str; 2] = ["Approved", "Denied"];
/// Condition types that can never be removed once added.
const PERMANENT_TYPES: [&str; 3] = ["Approved", "Denied", "Failed"];

/// One validation failure: (reason, message, field), as `ApiError::invalid` takes it.
type Cause = (String, String, String);

fn is_csr(call: &Call) -> bool {
    call.rt.group == "certificates.k8s.io" && call.rt.plural == "certificatesigningrequests"
}

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn condition_type(condition: &Value) -> &str {
    condition["type"].as_str().unwrap_or_default()
}

/// On create: the spec records who asked, and no CSR starts approved.
pub(crate) fn prepare_create(call: &Call, obj: &mut Value) {
    if !is_csr(call) {
        return;
    }
    let user = &call.user;
    let spec = obj
        .as_object_mut()
        .map(|map| map.entry("spec").or_insert_with(|| json!({})));
    if let Some(Value::Object(spec)) = spec {
        for field in ["username", "uid", "groups", "extra"] {
            spec.remove(field);
        }
        set_non_empty(spec, "username", json!(user.username));
        set_non_empty(spec, "uid", json!(user.uid));
        set_non_empty(spec, "groups", json!(user.groups));
        set_non_empty(spec, "extra", json!(user.extra));
    }
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
    }
}

fn set_non_empty(map: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        map.insert(key.to_owned(), value);
    }
}

/// On update (PUT or patch) of a CSR or its subresources: keeps what the written path may not
/// change, defaults condition timestamps and validates the conditions.
pub(crate) fn prepare_update(
    call: &Call,
    old: &Value,
    obj: &mut Value,
    now: &str,
) -> Result<(), ApiError> {
    if !is_csr(call) {
        return Ok(());
    }
    obj["spec"] = old.get("spec").cloned().unwrap_or_else(|| json!({}));
    let old_conditions = conditions(old);
    let mut new_conditions = match call.subresource.as_deref() {
        Some("approval") => {
            let wanted = conditions(obj);
            obj["status"] = old.get("status").cloned().unwrap_or_else(|| json!({}));
            wanted
        }
        Some("status") => {
            // why: the status subresource cannot touch approval, only issuance (Failed, certificate).
            let mut wanted: Vec<Value> = conditions(obj)
                .into_iter()
                .filter(|c| !APPROVAL_TYPES.contains(&condition_type(c)))
                .collect();
            wanted.extend(
                old_conditions
                    .iter()
                    .filter(|c| APPROVAL_TYPES.contains(&condition_type(c)))
                    .cloned(),
            );
            wanted
        }
        _ => {
            obj["status"] = old.get("status").cloned().unwrap_or_else(|| json!({}));
            return Ok(());
        }
    };
    default_timestamps(&mut new_conditions, &old_conditions, now);
    let causes = validate_conditions(&new_conditions, &old_conditions);
    if !causes.is_empty() {
        let name = call.name.as_deref().unwrap_or_default();
        return Err(ApiError::invalid(&call.rt, name, &causes));
    }
    if new_conditions.is_empty() {
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
            status.remove("conditions");
        }
    } else {
        if !obj.get("status").is_some_and(Value::is_object) {
            obj["status"] = json!({});
        }
        obj["status"]["conditions"] = Value::Array(new_conditions);
    }
    Ok(())
}

/// `lastUpdateTime` defaults to now; `lastTransitionTime` to the old condition's when its status
/// did not change, else to now.
fn default_timestamps(conditions: &mut [Value], old: &[Value], now: &str) {
    for condition in conditions.iter_mut() {
        if condition.get("lastUpdateTime").is_none_or(Value::is_null) {
            condition["lastUpdateTime"] = json!(now);
        }
        if condition
            .get("lastTransitionTime")
            .is_none_or(Value::is_null)
        {
            let previous = old
                .iter()
                .find(|c| {
                    condition_type(c) == condition_type(condition)
                        && c["status"] == condition["status"]
                })
                .and_then(|c| c.get("lastTransitionTime").filter(|t| !t.is_null()));
            condition["lastTransitionTime"] = previous.cloned().unwrap_or_else(|| json!(now));
        }
    }
}

/// kube-apiserver's condition checks for CSR updates, with its field paths and messages.
fn validate_conditions(conditions: &[Value], old: &[Value]) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    let (mut approved, mut denied) = (false, false);
    for (i, condition) in conditions.iter().enumerate() {
        let kind = condition_type(condition);
        let field = |leaf: &str| format!("status.conditions[{i}].{leaf}");
        if kind.is_empty() {
            causes.push(required(field("type")));
        }
        let status = condition["status"].as_str().unwrap_or_default();
        let allowed: &[&str] = if PERMANENT_TYPES.contains(&kind) {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        if status.is_empty() {
            causes.push(required(field("status")));
        } else if !allowed.contains(&status) {
            let supported: Vec<String> = allowed.iter().map(|s| format!("\"{s}\"")).collect();
            causes.push((
                "FieldValueNotSupported".into(),
                format!(
                    "Unsupported value: \"{status}\": supported values: {}",
                    supported.join(", ")
                ),
                field("status"),
            ));
        }
        approved |= kind == "Approved";
        denied |= kind == "Denied";
        if (kind == "Approved" || kind == "Denied") && approved && denied {
            causes.push((
                "FieldValueInvalid".into(),
                format!(
                    "Invalid value: \"{kind}\": Approved and Denied conditions are mutually exclusive"
                ),
                field("type"),
            ));
        }
        if seen.contains(&kind) {
            causes.push((
                "FieldValueDuplicate".into(),
                format!("Duplicate value: \"{kind}\""),
                field("type"),
            ));
        }
        seen.push(kind);
    }
    for kind in PERMANENT_TYPES {
        let count = |list: &[Value]| list.iter().filter(|c| condition_type(c) == kind).count();
        if count(conditions) < count(old) {
            causes.push((
                "FieldValueForbidden".into(),
                format!("Forbidden: updates may not remove a condition of type \"{kind}\""),
                "status.conditions".into(),
            ));
        }
    }
    causes
}

fn required(field: String) -> Cause {
    ("FieldValueRequired".into(), "Required value".into(), field)
}
