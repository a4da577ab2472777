//! The `/scale` subresource of custom resources (`autoscaling/v1` `Scale`).

use ::http::Response;
use serde_json::{json, Value};

use super::http::{self, Body};
use super::{Call, Server};
use crate::status::ApiError;
use crate::store::WriteContext;

/// A CRD JSONPath such as `.spec.replicas` as a JSON pointer.
fn pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |pointer, part| pointer + "/" + part)
}

fn path_of<'a>(scale: &'a Value, field: &str) -> Option<&'a str> {
    scale.get(field).and_then(Value::as_str)
}

/// The `Scale` view of a stored object.
fn to_scale(scale: &Value, obj: &Value) -> Value {
    let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut meta = json!({});
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(value) = metadata.get(field) {
            meta[field] = value.clone();
        }
    }
    let read = |field: &str| {
        path_of(scale, field)
            .and_then(|p| obj.pointer(&pointer(p)))
            .cloned()
    };
    let mut status = json!({ "replicas": read("statusReplicasPath").unwrap_or(json!(0)) });
    if let Some(selector) = read("labelSelectorPath") {
        status["selector"] = selector;
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": { "replicas": read("specReplicasPath").unwrap_or(json!(0)) },
        "status": status,
    })
}

/// get, update (PUT) and merge-patch of `/scale`.
pub(crate) fn handle(
    server: &Server,
    call: &Call,
    verb: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let name = call.name.as_deref().unwrap_or_default();
    let Some(scale) = call.rt.scale_subresource.as_ref() else {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    let mut state = server.store.lock();
    let current = state
        .get(&call.key, &call.namespace, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&call.rt, name))?;
    let wanted = match verb {
        "get" => return Ok(http::json(200, &to_scale(scale, &current))),
        "update" => http::parse_body(body)?,
        "patch" => {
            let content_type = call
                .content_type
                .split(';')
                .next()
                .unwrap_or_default()
                .trim();
            if content_type != "application/merge-patch+json" {
                return Err(ApiError::unsupported_media_type(content_type));
            }
            let mut wanted = to_scale(scale, &current);
            crate::patch::merge_patch(&mut wanted, &http::parse_body(body)?);
            wanted
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .cloned()
        .unwrap_or(json!(0));
    let mut updated = (*current).clone();
    if let Some(rv) = wanted.pointer("/metadata/resourceVersion") {
        updated["metadata"]["resourceVersion"] = rv.clone();
    }
    let Some(spec_path) = path_of(scale, "specReplicasPath") else {
        return Err(ApiError::internal(
            "the CRD's scale subresource has no specReplicasPath",
        ));
    };
    let spec_pointer = pointer(spec_path);
    let (parent, field) = spec_pointer.rsplit_once('/').unwrap_or_default();
    match updated.pointer_mut(parent).and_then(Value::as_object_mut) {
        Some(object) => {
            object.insert(field.to_string(), replicas);
        }
        None => {
            return Err(ApiError::bad_request(format!(
                "{spec_path} has no parent object in {name}"
            )))
        }
    }
    let ctx = WriteContext {
        dry_run: call.query.get("dryRun") == Some("All"),
        manager: call
            .query
            .get("fieldManager")
            .unwrap_or("scale")
            .to_string(),
        subresource: None,
        now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        managed_fields_done: false,
    };
    let stored = state.update(&call.rt, &call.key, &call.namespace, name, updated, &ctx)?;
    Ok(http::json(200, &to_scale(scale, &stored)))
}
