//! Converts decoded protobuf messages to the JSON that Kubernetes' Go types marshal to.
//!
//! Kubernetes' proto field names are its JSON field names, so most of the mapping is generic.
//! The exceptions are the apimachinery types with their own JSON form (Time, MicroTime,
//! IntOrString, Quantity, RawExtension, FieldsV1) and the named string slices (ExtraValue,
//! Verbs) that proto wraps in a message.
//!
//! Presence follows what Go's marshallers write: a message or scalar on the wire is kept (so
//! `replicas: 0` and `automountServiceAccountToken: false` survive), empty strings and bytes are
//! left out as `omitempty` does, and a zero Time is left out (Go writes `null`).

use base64::Engine;
use prost_reflect::{DynamicMessage, MapKey, ReflectMessage, Value as Proto};
use serde_json::{json, Map, Value};

use super::{malformed, ProtobufError};

/// Embedded Go structs (`json:",inline"`) that proto carries as a field of their own: their
/// fields belong to the enclosing JSON object. The struct tags say so; the `.proto` files cannot.
const INLINE: &[(&str, &str)] = &[
    ("api.core.v1.Volume", "volumeSource"),
    ("api.core.v1.PersistentVolumeSpec", "persistentVolumeSource"),
    ("api.core.v1.Probe", "handler"),
    ("api.core.v1.EphemeralContainer", "ephemeralContainerCommon"),
    (
        "api.admissionregistration.v1.NamedRuleWithOperations",
        "ruleWithOperations",
    ),
    ("api.admissionregistration.v1.RuleWithOperations", "rule"),
];

/// Fields whose proto name differs from their JSON name by more than a capital first letter
/// (`Webhooks`, `Expression`); `DaemonEndpoint.Port` really is `Port` in JSON.
const RENAMED: &[(&str, &str, &str)] = &[
    ("api.authentication.v1.BoundObjectReference", "uID", "uid"),
    ("api.core.v1.DaemonEndpoint", "Port", "Port"),
];

/// The JSON name of `field` of `message`.
fn json_name(message: &str, field: &str) -> String {
    if let Some(&(_, _, json)) = RENAMED
        .iter()
        .find(|(m, f, _)| *m == message && *f == field)
    {
        return json.to_owned();
    }
    let mut chars = field.chars();
    chars
        .next()
        .map(|first| first.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// The JSON object for `message`.
pub(super) fn message(message: &DynamicMessage) -> Result<Value, ProtobufError> {
    let descriptor = message.descriptor();
    match descriptor.full_name() {
        "apimachinery.pkg.apis.meta.v1.Time" => return Ok(time(message, false)),
        "apimachinery.pkg.apis.meta.v1.MicroTime" => return Ok(time(message, true)),
        "apimachinery.pkg.util.intstr.IntOrString" => return Ok(int_or_string(message)),
        "apimachinery.pkg.api.resource.Quantity" => {
            return Ok(json!(string_field(message, "string")))
        }
        "apimachinery.pkg.runtime.RawExtension" | "apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            return raw_json(message)
        }
        name if name.ends_with(".ExtraValue") || name == "apimachinery.pkg.apis.meta.v1.Verbs" => {
            return list_field(message, "items")
        }
        _ => {}
    }
    let is_object_meta = descriptor.full_name() == "apimachinery.pkg.apis.meta.v1.ObjectMeta";
    let mut out = Map::new();
    for (field, value) in message.fields() {
        // why: Go always writes ObjectMeta's non-pointer generation; JSON omits it when zero.
        if is_object_meta && field.name() == "generation" && matches!(value, Proto::I64(0)) {
            continue;
        }
        let Some(json) = field_value(value)? else {
            continue;
        };
        match json {
            Value::Object(embedded) if INLINE.contains(&(descriptor.full_name(), field.name())) => {
                out.extend(embedded);
            }
            json => {
                out.insert(json_name(descriptor.full_name(), field.name()), json);
            }
        }
    }
    Ok(Value::Object(out))
}

/// One field's JSON value; `None` when Go's JSON would leave it out.
fn field_value(value: &Proto) -> Result<Option<Value>, ProtobufError> {
    Ok(match value {
        Proto::String(s) if s.is_empty() => None,
        Proto::Bytes(b) if b.is_empty() => None,
        Proto::List(items) if items.is_empty() => None,
        Proto::Map(entries) if entries.is_empty() => None,
        Proto::Message(m) if is_zero_time(m) => None,
        other => Some(element(other)?).filter(|json| !json.is_null()),
    })
}

/// A value inside a list or map, or a present field: always kept.
fn element(value: &Proto) -> Result<Value, ProtobufError> {
    Ok(match value {
        Proto::Bool(b) => json!(b),
        Proto::I32(n) => json!(n),
        Proto::I64(n) => json!(n),
        Proto::U32(n) => json!(n),
        Proto::U64(n) => json!(n),
        Proto::F32(n) => json!(n),
        Proto::F64(n) => json!(n),
        Proto::EnumNumber(n) => json!(n),
        Proto::String(s) => json!(s),
        Proto::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        Proto::Message(m) => message(m)?,
        Proto::List(items) => Value::Array(items.iter().map(element).collect::<Result<_, _>>()?),
        Proto::Map(entries) => {
            let mut out = Map::new();
            for (key, value) in entries {
                out.insert(map_key(key), element(value)?);
            }
            Value::Object(out)
        }
    })
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => s.clone(),
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
    }
}

pub(super) fn string_field(message: &DynamicMessage, name: &str) -> String {
    match message.get_field_by_name(name).as_deref() {
        Some(Proto::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn int_field(message: &DynamicMessage, name: &str) -> i64 {
    match message.get_field_by_name(name).as_deref() {
        Some(Proto::I64(n)) => *n,
        Some(Proto::I32(n)) => i64::from(*n),
        _ => 0,
    }
}

fn list_field(message: &DynamicMessage, name: &str) -> Result<Value, ProtobufError> {
    match message.get_field_by_name(name).as_deref() {
        Some(list @ Proto::List(_)) => element(list),
        _ => Ok(json!([])),
    }
}

fn is_zero_time(message: &DynamicMessage) -> bool {
    matches!(
        message.descriptor().full_name(),
        "apimachinery.pkg.apis.meta.v1.Time" | "apimachinery.pkg.apis.meta.v1.MicroTime"
    ) && int_field(message, "seconds") == 0
        && int_field(message, "nanos") == 0
}

/// `metav1.Time` (whole seconds) or `metav1.MicroTime` (microseconds), RFC 3339 in UTC.
fn time(message: &DynamicMessage, micro: bool) -> Value {
    let nanos = u32::try_from(int_field(message, "nanos")).unwrap_or_default();
    let Some(at) = chrono::DateTime::from_timestamp(int_field(message, "seconds"), nanos) else {
        return Value::Null;
    };
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    json!(at.format(format).to_string())
}

/// `intstr.IntOrString`: type 0 is `intVal`, type 1 is `strVal`.
fn int_or_string(message: &DynamicMessage) -> Value {
    if int_field(message, "type") == 1 {
        json!(string_field(message, "strVal"))
    } else {
        json!(int_field(message, "intVal"))
    }
}

/// `runtime.RawExtension` and `FieldsV1` carry JSON bytes, embedded as they are.
fn raw_json(message: &DynamicMessage) -> Result<Value, ProtobufError> {
    match message.get_field_by_name("raw").as_deref() {
        Some(Proto::Bytes(raw)) if !raw.is_empty() => serde_json::from_slice(raw)
            .map_err(|err| malformed(format!("embedded object is not JSON: {err}"))),
        _ => Ok(Value::Null),
    }
}
