//! Decoding the protobuf bodies typed client-go clients send (kubectl create, helm storage).

// why: `protobuf` is not yet declared in lib.rs (owned by the server's engineer); compile the
// module into this test directly until it is.
#[path = "../src/protobuf.rs"]
mod protobuf;

use protobuf::{decode, is_protobuf};
use serde_json::json;

/// Encodes protobuf fields the way client-go's generated marshallers do.
fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn bytes_field(number: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3 | 2, &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

fn varint_field(number: u64, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3, &mut out);
    varint(value, &mut out);
    out
}

fn map_entry(number: u64, key: &str, value: &[u8]) -> Vec<u8> {
    bytes_field(
        number,
        &[bytes_field(1, key.as_bytes()), bytes_field(2, value)].concat(),
    )
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [
        bytes_field(1, api_version.as_bytes()),
        bytes_field(2, kind.as_bytes()),
    ]
    .concat();
    let unknown = [
        bytes_field(1, &type_meta),
        bytes_field(2, raw),
        bytes_field(3, b""),
        bytes_field(4, b""),
    ]
    .concat();
    [b"k8s\0".as_slice(), &unknown].concat()
}

/// ObjectMeta as Go marshals it: every string field written, even when empty.
fn object_meta(name: &str, namespace: &str) -> Vec<u8> {
    [
        bytes_field(1, name.as_bytes()),
        bytes_field(2, b""),
        bytes_field(3, namespace.as_bytes()),
        bytes_field(4, b""),
        bytes_field(5, b""),
        bytes_field(6, b""),
        varint_field(7, 0),
        bytes_field(8, &[]),
        map_entry(11, "app", b"shop"),
        map_entry(12, "owner", b"alice"),
        bytes_field(14, b"example.devcluster.io/hold"),
    ]
    .concat()
}

#[test]
fn secrets_decode_with_base64_data_and_omit_empty_fields() {
    let raw = [
        bytes_field(1, &object_meta("creds", "team-a")),
        map_entry(2, "password", b"hunter2"),
        bytes_field(3, b"Opaque"),
        varint_field(5, 1),
    ]
    .concat();
    let body = envelope("v1", "Secret", &raw);
    assert!(is_protobuf(&body));
    assert_eq!(
        decode(&body).expect("decodes"),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "creds",
                "namespace": "team-a",
                "labels": {"app": "shop"},
                "annotations": {"owner": "alice"},
                "finalizers": ["example.devcluster.io/hold"],
            },
            "data": {"password": "aHVudGVyMg=="},
            "type": "Opaque",
            "immutable": true,
        })
    );
}

#[test]
fn config_maps_and_namespaces_decode() {
    let cm = envelope(
        "v1",
        "ConfigMap",
        &[
            bytes_field(1, &object_meta("settings", "")),
            map_entry(2, "a", b"1"),
            map_entry(3, "blob", &[0, 1]),
        ]
        .concat(),
    );
    let decoded = decode(&cm).expect("config map");
    assert_eq!(decoded["data"], json!({"a": "1"}));
    assert_eq!(decoded["binaryData"], json!({"blob": "AAE="}));
    assert!(decoded["metadata"].get("namespace").is_none());

    let ns = envelope(
        "v1",
        "Namespace",
        &[
            bytes_field(1, &object_meta("team-a", "")),
            bytes_field(2, &[]),
            bytes_field(3, &[]),
        ]
        .concat(),
    );
    let decoded = decode(&ns).expect("namespace");
    assert_eq!(decoded["metadata"]["name"], "team-a");
    assert!(
        decoded.get("spec").is_none() && decoded.get("status").is_none(),
        "{decoded}"
    );
}

#[test]
fn delete_options_decode_propagation_and_preconditions() {
    let raw = [
        varint_field(1, 0),
        bytes_field(2, &bytes_field(1, b"uid-1")),
        bytes_field(4, b"Foreground"),
        bytes_field(5, b"All"),
    ]
    .concat();
    let decoded =
        decode(&envelope("meta.k8s.io/v1", "DeleteOptions", &raw)).expect("delete options");
    assert_eq!(decoded["propagationPolicy"], "Foreground");
    assert_eq!(decoded["preconditions"], json!({"uid": "uid-1"}));
    assert_eq!(decoded["dryRun"], json!(["All"]));
    assert!(decoded.get("gracePeriodSeconds").is_none());
}

#[test]
fn unsupported_kinds_and_garbage_are_rejected_with_a_message() {
    let pod = decode(&envelope("v1", "Pod", &[])).expect_err("pods are not decoded");
    assert!(
        pod.0.contains("does not decode protobuf for v1, Kind=Pod"),
        "{}",
        pod.0
    );
    let truncated = decode(b"k8s\0\x0a\x05ab").expect_err("truncated");
    assert!(
        truncated.0.contains("malformed protobuf"),
        "{}",
        truncated.0
    );
    assert!(!is_protobuf(br#"{"kind":"Secret"}"#));
}
