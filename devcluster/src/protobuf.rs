//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! Typed client-go clients (kubectl's `create` subcommands, helm's release storage) send built-in
//! objects as protobuf and cannot fall back to JSON. This decodes the kinds they write into the
//! JSON form the rest of devcluster works with; other kinds are refused with a clear message.

use base64::Engine;
use serde_json::{json, Map, Value};

/// The magic prefix of every Kubernetes protobuf message.
const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be decoded; answered 400 BadRequest with this message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ProtobufError(pub String);

/// Whether `body` is a Kubernetes protobuf envelope.
pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// How one protobuf field maps onto JSON.
#[derive(Clone, Copy)]
enum Field {
    String,
    Int,
    Bool,
    Time,
    Message(&'static [(u64, &'static str, Field)]),
    RepeatedString,
    RepeatedMessage(&'static [(u64, &'static str, Field)]),
    StringMap,
    BytesMap,
}

type Schema = &'static [(u64, &'static str, Field)];

const OWNER_REFERENCE: Schema = &[
    (1, "kind", Field::String),
    (3, "name", Field::String),
    (4, "uid", Field::String),
    (5, "apiVersion", Field::String),
    (6, "controller", Field::Bool),
    (7, "blockOwnerDeletion", Field::Bool),
];

const OBJECT_META: Schema = &[
    (1, "name", Field::String),
    (2, "generateName", Field::String),
    (3, "namespace", Field::String),
    (5, "uid", Field::String),
    (6, "resourceVersion", Field::String),
    (7, "generation", Field::Int),
    (8, "creationTimestamp", Field::Time),
    (9, "deletionTimestamp", Field::Time),
    (10, "deletionGracePeriodSeconds", Field::Int),
    (11, "labels", Field::StringMap),
    (12, "annotations", Field::StringMap),
    (
        13,
        "ownerReferences",
        Field::RepeatedMessage(OWNER_REFERENCE),
    ),
    (14, "finalizers", Field::RepeatedString),
];

const OBJECT_REFERENCE: Schema = &[
    (1, "kind", Field::String),
    (2, "namespace", Field::String),
    (3, "name", Field::String),
    (4, "uid", Field::String),
    (5, "apiVersion", Field::String),
    (6, "resourceVersion", Field::String),
    (7, "fieldPath", Field::String),
];

const SECRET: Schema = &[
    (1, "metadata", Field::Message(OBJECT_META)),
    (2, "data", Field::BytesMap),
    (3, "type", Field::String),
    (4, "stringData", Field::StringMap),
    (5, "immutable", Field::Bool),
];

const CONFIG_MAP: Schema = &[
    (1, "metadata", Field::Message(OBJECT_META)),
    (2, "data", Field::StringMap),
    (3, "binaryData", Field::BytesMap),
    (4, "immutable", Field::Bool),
];

const NAMESPACE: Schema = &[
    (1, "metadata", Field::Message(OBJECT_META)),
    (
        2,
        "spec",
        Field::Message(&[(1, "finalizers", Field::RepeatedString)]),
    ),
    (3, "status", Field::Message(&[(1, "phase", Field::String)])),
];

const SERVICE_ACCOUNT: Schema = &[
    (1, "metadata", Field::Message(OBJECT_META)),
    (2, "secrets", Field::RepeatedMessage(OBJECT_REFERENCE)),
    (
        3,
        "imagePullSecrets",
        Field::RepeatedMessage(&[(1, "name", Field::String)]),
    ),
    (4, "automountServiceAccountToken", Field::Bool),
];

const DELETE_OPTIONS: Schema = &[
    (1, "gracePeriodSeconds", Field::Int),
    (
        2,
        "preconditions",
        Field::Message(&[
            (1, "uid", Field::String),
            (2, "resourceVersion", Field::String),
        ]),
    ),
    (3, "orphanDependents", Field::Bool),
    (4, "propagationPolicy", Field::String),
    (5, "dryRun", Field::RepeatedString),
];

/// The schema of a kind that typed clients send as protobuf.
fn schema_for(api_version: &str, kind: &str) -> Option<Schema> {
    Some(match (api_version, kind) {
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1" | "meta.k8s.io/v1", "DeleteOptions") => DELETE_OPTIONS,
        _ => return None,
    })
}

/// A cursor over protobuf wire-format bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

/// One decoded field value.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .bytes
                .split_first()
                .ok_or_else(|| malformed("truncated varint"))?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint too long"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ProtobufError> {
        if len > self.bytes.len() {
            return Err(malformed("truncated field"));
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(taken)
    }

    /// The next (field number, value), or `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Wire<'a>)>, ProtobufError> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| malformed("length"))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            other => return Err(malformed(&format!("unsupported wire type {other}"))),
        };
        Ok(Some((key >> 3, value)))
    }
}

fn malformed(detail: &str) -> ProtobufError {
    ProtobufError(format!(
        "the object provided is unrecognized: malformed protobuf: {detail}"
    ))
}

fn text(bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed("string is not UTF-8"))
}

/// Decodes a `map<string, V>` entry message (key = 1, value = 2).
fn map_entry(bytes: &[u8], binary: bool) -> Result<(String, Value), ProtobufError> {
    let mut reader = Reader { bytes };
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    while let Some((number, wire)) = reader.field()? {
        match (number, wire) {
            (1, Wire::Bytes(b)) => key = text(b)?,
            (2, Wire::Bytes(b)) if binary => {
                value = json!(base64::engine::general_purpose::STANDARD.encode(b));
            }
            (2, Wire::Bytes(b)) => value = json!(text(b)?),
            _ => {}
        }
    }
    Ok((key, value))
}

/// Decodes a `Time` message (seconds = 1, nanos = 2) to RFC 3339; `None` for the zero time.
fn time(bytes: &[u8]) -> Result<Option<String>, ProtobufError> {
    let mut reader = Reader { bytes };
    let mut seconds = 0i64;
    while let Some((number, wire)) = reader.field()? {
        if let (1, Wire::Varint(v)) = (number, wire) {
            seconds = v as i64;
        }
    }
    if seconds == 0 {
        return Ok(None);
    }
    Ok(chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

/// Decodes a message with `schema`, leaving out zero values as Go's `omitempty` JSON does.
fn message(bytes: &[u8], schema: Schema) -> Result<Map<String, Value>, ProtobufError> {
    let mut reader = Reader { bytes };
    let mut out = Map::new();
    while let Some((number, wire)) = reader.field()? {
        let Some(&(_, name, field)) = schema.iter().find(|(n, _, _)| *n == number) else {
            continue;
        };
        let value = match (field, wire) {
            (Field::String, Wire::Bytes(b)) => Some(json!(text(b)?)).filter(|_| !b.is_empty()),
            (Field::Int, Wire::Varint(v)) => Some(json!(v as i64)).filter(|_| v != 0),
            (Field::Bool, Wire::Varint(v)) => Some(json!(v != 0)).filter(|_| v != 0),
            (Field::Time, Wire::Bytes(b)) => time(b)?.map(Value::String),
            (Field::Message(inner), Wire::Bytes(b)) => Some(Value::Object(message(b, inner)?))
                .filter(|v| v.as_object().is_some_and(|m| !m.is_empty())),
            (Field::RepeatedString, Wire::Bytes(b)) => {
                push(&mut out, name, json!(text(b)?));
                None
            }
            (Field::RepeatedMessage(inner), Wire::Bytes(b)) => {
                push(&mut out, name, Value::Object(message(b, inner)?));
                None
            }
            (Field::StringMap | Field::BytesMap, Wire::Bytes(b)) => {
                let (key, value) = map_entry(b, matches!(field, Field::BytesMap))?;
                if let Value::Object(map) = out.entry(name).or_insert_with(|| json!({})) {
                    map.insert(key, value);
                }
                None
            }
            _ => return Err(malformed(&format!("unexpected encoding of field {name}"))),
        };
        if let Some(value) = value {
            out.insert(name.to_owned(), value);
        }
    }
    Ok(out)
}

fn push(out: &mut Map<String, Value>, name: &str, value: Value) {
    if let Value::Array(items) = out.entry(name).or_insert_with(|| json!([])) {
        items.push(value);
    }
}

/// Decodes a `k8s\0`-prefixed `runtime.Unknown` envelope into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed("missing the k8s magic prefix"))?;
    let mut reader = Reader { bytes: envelope };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((number, wire)) = reader.field()? {
        match (number, wire) {
            (1, Wire::Bytes(type_meta)) => {
                let mut meta = Reader { bytes: type_meta };
                while let Some((n, w)) = meta.field()? {
                    match (n, w) {
                        (1, Wire::Bytes(b)) => api_version = text(b)?,
                        (2, Wire::Bytes(b)) => kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let schema = schema_for(&api_version, &kind).ok_or_else(|| {
        ProtobufError(format!(
            "the object provided is unrecognized: devcluster does not decode protobuf for {api_version}, Kind={kind}; send JSON"
        ))
    })?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    object.extend(message(raw, schema)?);
    Ok(Value::Object(object))
}
