//! Encodes objects as client-go does: the generated upstream types (k8s-pb) inside a
//! `k8s\0`-prefixed `runtime.Unknown` envelope.

#![allow(dead_code)]

use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;

/// The protobuf media type client-go sends.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// `Some(text.to_string())`, for the optional strings of generated types.
pub fn s(text: &str) -> Option<String> {
    Some(text.to_string())
}

/// Metadata with a name and (possibly empty) namespace.
pub fn meta(name: &str, namespace: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        name: s(name),
        namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
        ..ObjectMeta::default()
    })
}

/// `message` wrapped as client-go's protobuf serializer writes it.
pub fn envelope(api_version: &str, kind: &str, message: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(message.encode_to_vec()),
        content_encoding: s(""),
        content_type: s(""),
    };
    [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
}

/// Sends `body` as protobuf with `method` to `path` and returns the JSON answer.
pub async fn send(
    client: &kube::Client,
    method: http::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<serde_json::Value, kube::Error> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, PROTOBUF)
        .header(http::header::ACCEPT, "application/json")
        .body(body)
        .expect("request builds");
    client.request::<serde_json::Value>(request).await
}

/// POSTs `body` as protobuf to `path` and returns the created object's JSON.
pub async fn create(client: &kube::Client, path: &str, body: Vec<u8>) -> serde_json::Value {
    send(client, http::Method::POST, path, body)
        .await
        .unwrap_or_else(|err| panic!("POST {path} failed: {err}"))
}
