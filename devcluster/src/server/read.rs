//! get and list, with metadata-only and Table renderings and `limit`/`continue` paging.

use std::sync::Arc;

use ::http::Response;
use base64::Engine;
use serde_json::{json, Value};

use super::http::{self, Body};
use super::{to_wire, wire_ready, Call, Server};
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;

/// How the client asked to see objects (`Accept` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rendering {
    Full,
    Metadata,
    Table,
}

pub(crate) fn rendering(accept: &str) -> Rendering {
    if accept.contains("as=Table") {
        Rendering::Table
    } else if accept.contains("as=PartialObjectMetadata") {
        Rendering::Metadata
    } else {
        Rendering::Full
    }
}

/// `PartialObjectMetadata` of a stored object.
pub(crate) fn metadata_only(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// The representation of one object the client asked for.
pub(crate) fn render_one(rt: &ResourceType, stored: &Value, accept: &str) -> Value {
    match rendering(accept) {
        Rendering::Full => to_wire(rt, stored),
        Rendering::Metadata => metadata_only(stored),
        Rendering::Table => crate::table::to_table(
            rt,
            &[to_wire(rt, stored)],
            json!({ "resourceVersion": stored.pointer("/metadata/resourceVersion") }),
            !accept.contains("includeObject=None"),
            chrono::Utc::now(),
        ),
    }
}

pub(crate) fn get(server: &Server, call: &Call) -> Result<Response<Body>, ApiError> {
    let name = call.name.as_deref().unwrap_or_default();
    let stored = server
        .store
        .lock()
        .get(&call.key, &call.namespace, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&call.rt, name))?;
    if rendering(&call.accept) == Rendering::Full && wire_ready(&call.rt, &stored) {
        return Ok(http::json(200, &stored));
    }
    Ok(http::json(
        200,
        &render_one(&call.rt, &stored, &call.accept),
    ))
}

/// The selectors of a list or watch.
pub(crate) struct Filter {
    pub namespace: Option<String>,
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
}

impl Filter {
    pub(crate) fn from_call(call: &Call) -> Result<Self, ApiError> {
        let labels = call
            .query
            .get("labelSelector")
            .map(LabelSelector::parse)
            .transpose()
            .map_err(|err| ApiError::bad_request(err.0))?;
        let fields = call
            .query
            .get("fieldSelector")
            .map(|s| match &call.rt.crd {
                Some(crd) => FieldSelector::parse_custom_resource(
                    s,
                    &crd.selectable_fields,
                    call.rt.namespaced,
                ),
                None => FieldSelector::parse(s, &call.rt.kind),
            })
            .transpose()
            .map_err(|err| ApiError::bad_request(err.0))?;
        let namespace = call.namespace_in_url.then(|| call.namespace.clone());
        Ok(Self {
            namespace,
            labels,
            fields,
        })
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.labels.as_ref().is_none_or(|s| s.matches(obj))
            && self.fields.as_ref().is_none_or(|s| s.matches(obj))
    }
}

/// The position a `continue` token resumes after.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    namespace: String,
    name: String,
}

fn encode_continue(token: &ContinueToken) -> String {
    let json = serde_json::to_vec(token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_continue(raw: &str) -> Result<ContinueToken, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::bad_request(format!("continue key is not valid: {raw}")))
}

pub(crate) fn list(server: &Server, call: &Call) -> Result<Response<Body>, ApiError> {
    let filter = Filter::from_call(call)?;
    let limit = match call.query.get("limit") {
        Some(raw) => raw
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {raw}")))?,
        None => 0,
    };
    let resume = call
        .query
        .get("continue")
        .map(decode_continue)
        .transpose()?;
    let state = server.store.lock();
    if let Some(token) = &resume {
        if token.rv < state.compacted_rv() {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            ));
        }
    }
    let list_rv = resume
        .as_ref()
        .map_or(state.resource_version(), |token| token.rv);
    let mut items: Vec<Arc<Value>> = Vec::new();
    let mut next: Option<ContinueToken> = None;
    let mut remaining = 0usize;
    // why: a page starts where its token left off in the ordered bucket and stops once it is
    // full, as an etcd range read does: walking the whole bucket for every page made listing
    // N objects cost N²/limit under the store lock (minutes at 100,000 keys).
    let objects = match &resume {
        Some(token) => state.objects_after(
            &call.key,
            filter.namespace.as_deref(),
            (&token.namespace, &token.name),
        ),
        None => state.objects(&call.key, filter.namespace.as_deref()),
    };
    let selected = filter.labels.is_some() || filter.fields.is_some();
    for (_, obj) in objects {
        if !filter.matches(obj) {
            continue;
        }
        if limit > 0 && items.len() == limit {
            if next.is_none() {
                let last = items.last().map(|o| {
                    let ns = o
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let n = o
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    (ns.to_string(), n.to_string())
                });
                if let Some((namespace, name)) = last {
                    next = Some(ContinueToken {
                        rv: list_rv,
                        namespace,
                        name,
                    });
                }
            }
            // why: with a selector kube-apiserver leaves remainingItemCount unset (the count is
            // unknown), so the page ends at the first further match; without one, counting
            // the rest is a walk without matching.
            if selected {
                break;
            }
            remaining += 1;
            continue;
        }
        items.push(obj.clone());
    }
    drop(state);
    let mut metadata = json!({ "resourceVersion": list_rv.to_string() });
    if let Some(token) = &next {
        metadata["continue"] = json!(encode_continue(token));
        if !selected {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let rt = &call.rt;
    match rendering(&call.accept) {
        Rendering::Table => {
            let objects: Vec<Value> = items.iter().map(|o| to_wire(rt, o)).collect();
            let table = crate::table::to_table(
                rt,
                &objects,
                metadata,
                !call.accept.contains("includeObject=None"),
                chrono::Utc::now(),
            );
            Ok(http::json(200, &table))
        }
        Rendering::Metadata => {
            let objects: Vec<Value> = items.iter().map(|o| metadata_only(o)).collect();
            let list = json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
                "items": objects,
            });
            Ok(http::json(200, &list))
        }
        Rendering::Full => Ok(http::json_bytes(200, list_bytes(rt, &metadata, &items))),
    }
}

/// Serializes a list without copying stored objects that are already in served form.
fn list_bytes(rt: &ResourceType, metadata: &Value, items: &[Arc<Value>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + items.len() * 512);
    let head =
        json!({ "kind": rt.list_kind, "apiVersion": rt.api_version(), "metadata": metadata });
    let head = serde_json::to_vec(&head).unwrap_or_default();
    // why: reopen the head object to append `items` while streaming each object.
    out.extend_from_slice(&head[..head.len().saturating_sub(1)]);
    out.extend_from_slice(b",\"items\":[");
    for (i, obj) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let written = if wire_ready(rt, obj) {
            serde_json::to_writer(&mut out, obj.as_ref())
        } else {
            serde_json::to_writer(&mut out, &to_wire(rt, obj))
        };
        if written.is_err() {
            out.extend_from_slice(b"null");
        }
    }
    out.extend_from_slice(b"]}");
    out
}
