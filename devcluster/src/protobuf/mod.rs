//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! Typed client-go clients (kubectl's `create` subcommands, `kubectl certificate approve`,
//! helm's release storage) send built-in objects as protobuf and cannot fall back to JSON. The
//! body is a `k8s\0`-prefixed `runtime.Unknown` envelope naming the object's apiVersion and kind;
//! the object is decoded against descriptors compiled from the upstream `.proto` files
//! (`proto/`, compiled by `build.rs`) and converted to the JSON the rest of devcluster works with.
//! Kinds without a compiled descriptor are refused with a clear message.

mod json;

use json::string_field;

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value as Proto};
use serde_json::{json, Map, Value};

/// The magic prefix of every Kubernetes protobuf message.
const MAGIC: &[u8] = b"k8s\0";

/// The descriptor set `build.rs` compiled from `proto/`.
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds"));

/// The compiled descriptors; `None` only if the embedded set is corrupt (a build defect).
static POOL: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(DESCRIPTORS).ok());

/// Why a protobuf body could not be decoded; answered 400 BadRequest with this message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ProtobufError(pub String);

/// Whether `body` is a Kubernetes protobuf envelope.
pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

fn malformed(detail: impl std::fmt::Display) -> ProtobufError {
    ProtobufError(format!(
        "the object provided is unrecognized: malformed protobuf: {detail}"
    ))
}

/// The proto package of each API group compiled by `build.rs` (a version is appended). Custom
/// resources are never decoded: a CRD group that shares a first label with a built-in one
/// (`apps.example.com`) must not pick up its messages.
const PACKAGES: &[(&str, &str)] = &[
    ("", "api.core"),
    ("admissionregistration.k8s.io", "api.admissionregistration"),
    (
        "apiregistration.k8s.io",
        "kube_aggregator.pkg.apis.apiregistration",
    ),
    ("apps", "api.apps"),
    ("authentication.k8s.io", "api.authentication"),
    ("authorization.k8s.io", "api.authorization"),
    ("certificates.k8s.io", "api.certificates"),
    ("coordination.k8s.io", "api.coordination"),
    ("events.k8s.io", "api.events"),
    ("meta.k8s.io", "apimachinery.pkg.apis.meta"),
    ("policy", "api.policy"),
    ("rbac.authorization.k8s.io", "api.rbac"),
];

/// The message type of `kind` in `api_version`, if devcluster has its descriptor.
fn descriptor_for(
    pool: &DescriptorPool,
    api_version: &str,
    kind: &str,
) -> Option<MessageDescriptor> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    // why: client-go sends DeleteOptions under the group-version of the resource's client.
    let (group, version) = if kind == "DeleteOptions" {
        ("meta.k8s.io", "v1")
    } else {
        (group, version)
    };
    let (_, package) = PACKAGES.iter().find(|(g, _)| *g == group)?;
    pool.get_message_by_name(&format!("{package}.{version}.{kind}"))
}

/// Decodes a `k8s\0`-prefixed `runtime.Unknown` envelope into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed("missing the k8s magic prefix"))?;
    let pool = POOL
        .as_ref()
        .ok_or_else(|| malformed("devcluster's compiled descriptors are unreadable"))?;
    let unknown = pool
        .get_message_by_name("apimachinery.pkg.runtime.Unknown")
        .ok_or_else(|| malformed("no descriptor for runtime.Unknown"))?;
    let unknown = DynamicMessage::decode(unknown, envelope).map_err(malformed)?;
    let type_meta = match unknown.get_field_by_name("typeMeta").as_deref() {
        Some(Proto::Message(type_meta)) => type_meta.clone(),
        _ => return Err(malformed("the envelope has no typeMeta")),
    };
    let api_version = string_field(&type_meta, "apiVersion");
    let kind = string_field(&type_meta, "kind");
    let raw = match unknown.get_field_by_name("raw").as_deref() {
        Some(Proto::Bytes(raw)) => raw.clone(),
        _ => Default::default(),
    };
    let descriptor = descriptor_for(pool, &api_version, &kind).ok_or_else(|| {
        ProtobufError(format!(
            "the object provided is unrecognized: devcluster does not decode protobuf for {api_version}, Kind={kind}; send JSON"
        ))
    })?;
    let message = DynamicMessage::decode(descriptor, raw).map_err(malformed)?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    if let Value::Object(fields) = json::message(&message)? {
        object.extend(fields);
    }
    Ok(Value::Object(object))
}
