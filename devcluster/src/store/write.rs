//! Write semantics shared by every verb: metadata bookkeeping, generation, status subresource,
//! no-op detection, finalizers and deletion.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{is_deleting, State, StorageKey};
use crate::apply;
use crate::registry::ResourceType;
use crate::status::ApiError;

/// How a write was asked for.
#[derive(Debug, Clone, Default)]
pub struct WriteContext {
    /// `dryRun=All`: validate and compute, but commit nothing.
    pub dry_run: bool,
    /// The field manager recorded in managedFields for non-apply writes.
    pub manager: String,
    /// `Some("status")` when writing through the status subresource.
    pub subresource: Option<String>,
    /// RFC 3339 time of the request.
    pub now: String,
    /// Whether managedFields were already computed (server-side apply).
    pub managed_fields_done: bool,
}

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

/// The parts of `DeleteOptions` devcluster honours.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
    pub now: String,
}

/// The result of a delete: the object, and whether it is gone (or only marked for deletion).
#[derive(Debug)]
pub struct Deleted {
    pub object: Arc<Value>,
    pub removed: bool,
}

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let slot = &mut obj["metadata"];
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(meta) => meta,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Content that drives `metadata.generation`: everything but metadata (and status when it has
/// its own subresource).
fn spec_part(rt: &ResourceType, obj: &Value) -> Map<String, Value> {
    let mut map = obj.as_object().cloned().unwrap_or_default();
    map.remove("metadata");
    map.remove("apiVersion");
    map.remove("kind");
    if rt.status_subresource {
        map.remove("status");
    }
    map
}

/// The object with resourceVersion and managedFields removed, for no-op detection.
fn comparable(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    copy
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl State {
    /// Creates `obj` in `namespace` (empty for cluster-scoped kinds).
    pub fn create(
        &mut self,
        rt: &ResourceType,
        key: &StorageKey,
        namespace: &str,
        mut obj: Value,
        ctx: &WriteContext,
    ) -> Result<Arc<Value>, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let meta = metadata_mut(&mut obj);
        let name = match meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(name) => name.to_string(),
            None => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
                _ => {
                    let cause = (
                        "FieldValueRequired".to_string(),
                        "Required value: name or generateName is required".to_string(),
                        "metadata.name".to_string(),
                    );
                    return Err(ApiError::invalid(rt, "", &[cause]));
                }
            },
        };
        meta.insert("name".into(), json!(name));
        if rt.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(ctx.now));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("resourceVersion");
        if rt.status_subresource {
            if let Some(map) = obj.as_object_mut() {
                map.remove("status");
            }
        }
        if rt.kind == "Namespace" && rt.group.is_empty() {
            obj["spec"] = json!({ "finalizers": ["kubernetes"] });
            obj["status"] = json!({ "phase": "Active" });
        }
        if let Some(status) = crate::builtin::initial_status(rt, &obj) {
            obj["status"] = status;
        }
        if self.get(key, namespace, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        if !ctx.managed_fields_done {
            let schema = rt.crd.as_ref().map(|crd| &*crd.schema);
            apply::record_update_with_schema(
                None,
                &mut obj,
                &ctx.manager,
                ctx.subresource.as_deref(),
                schema,
                &ctx.now,
            );
        }
        if ctx.dry_run {
            return Ok(Arc::new(obj));
        }
        Ok(self.insert(key, namespace, obj))
    }

    /// Replaces the stored object `name` with `new` (PUT, patch and apply all end here).
    /// `new.metadata.resourceVersion`, when set, must match the stored one.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        key: &StorageKey,
        namespace: &str,
        name: &str,
        mut new: Value,
        ctx: &WriteContext,
    ) -> Result<Arc<Value>, ApiError> {
        let Some(old) = self.get(key, namespace, name).cloned() else {
            return Err(ApiError::not_found(rt, name));
        };
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let body_name = new
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(name);
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        match new
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            Some(rv)
                if !rv.is_empty()
                    && old
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        != Some(rv) =>
            {
                return Err(ApiError::conflict(rt, name));
            }
            Some(rv) if !rv.is_empty() => {}
            _ if rt.crd.is_some() => {
                let cause = (
                    "FieldValueInvalid".to_string(),
                    "Invalid value: 0x0: must be specified for an update".to_string(),
                    "metadata.resourceVersion".to_string(),
                );
                return Err(ApiError::invalid(rt, name, &[cause]));
            }
            _ => {}
        }

        // why: CSR `/approval` writes only status conditions, as `/status` writes only status.
        let is_status = matches!(ctx.subresource.as_deref(), Some("status" | "approval"));
        if is_status {
            // why: a status write changes only status; metadata and spec come from storage.
            let status = new.get("status").cloned();
            let managed = new.pointer("/metadata/managedFields").cloned();
            new = (*old).clone();
            match status {
                Some(status) => new["status"] = status,
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            if let (true, Some(managed)) = (ctx.managed_fields_done, managed) {
                new["metadata"]["managedFields"] = managed;
            }
        } else if rt.status_subresource {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }

        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let meta = metadata_mut(&mut new);
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(field) {
                Some(value) => meta.insert(field.into(), value.clone()),
                None => meta.remove(field),
            };
        }
        if is_deleting(&old) {
            let before = finalizers(&old);
            if let Some(added) = finalizers(&new).into_iter().find(|f| !before.contains(f)) {
                let cause = (
                    "FieldValueForbidden".to_string(),
                    format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{\"{added}\"}}"),
                    "metadata.finalizers".to_string(),
                );
                return Err(ApiError::invalid(rt, name, &[cause]));
            }
        }
        if !ctx.managed_fields_done {
            let schema = rt.crd.as_ref().map(|crd| &*crd.schema);
            apply::record_update_with_schema(
                Some(&old),
                &mut new,
                &ctx.manager,
                ctx.subresource.as_deref(),
                schema,
                &ctx.now,
            );
        }
        if comparable(&new) == comparable(&old) {
            return Ok(old);
        }
        if spec_part(rt, &new) != spec_part(rt, &old) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        if ctx.dry_run {
            return Ok(Arc::new(new));
        }
        if is_deleting(&new) && finalizers(&new).is_empty() {
            self.replace(key, namespace, new);
            return self
                .remove(key, namespace, name)
                .ok_or_else(|| ApiError::not_found(rt, name));
        }
        Ok(self.replace(key, namespace, new))
    }

    /// Deletes `name`: at once, or by marking it when finalizers (or foreground/orphan
    /// propagation) must run first.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        key: &StorageKey,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let Some(old) = self.get(key, namespace, name).cloned() else {
            return Err(ApiError::not_found(rt, name));
        };
        let uid = old
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(expected) = &options.precondition_uid {
            if expected != uid {
                return Err(ApiError::conflict_because(
                    rt,
                    name,
                    &format!("Precondition failed: UID in precondition: {expected}, UID in object meta: {uid}"),
                ));
            }
        }
        let rv = old
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(expected) = &options.precondition_rv {
            if expected != rv {
                return Err(ApiError::conflict_because(
                    rt,
                    name,
                    &format!("Precondition failed: ResourceVersion in precondition: {expected}, ResourceVersion in object meta: {rv}"),
                ));
            }
        }
        let mut pending = finalizers(&old);
        let is_namespace = rt.kind == "Namespace" && rt.group.is_empty();
        match options.propagation {
            Propagation::Foreground if !pending.iter().any(|f| f == FOREGROUND) => {
                pending.push(FOREGROUND.into())
            }
            Propagation::Orphan if !pending.iter().any(|f| f == ORPHAN) => {
                pending.push(ORPHAN.into())
            }
            _ => {}
        }
        if pending.is_empty() && !is_namespace {
            if options.dry_run {
                return Ok(Deleted {
                    object: old,
                    removed: true,
                });
            }
            let object = self
                .remove(key, namespace, name)
                .ok_or_else(|| ApiError::not_found(rt, name))?;
            return Ok(Deleted {
                object,
                removed: true,
            });
        }
        if is_deleting(&old) && pending == finalizers(&old) {
            return Ok(Deleted {
                object: old,
                removed: false,
            });
        }
        let mut marked = (*old).clone();
        let meta = metadata_mut(&mut marked);
        if !is_deleting(&old) {
            meta.insert("deletionTimestamp".into(), json!(options.now));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        if pending.is_empty() {
            meta.remove("finalizers");
        } else {
            meta.insert("finalizers".into(), json!(pending));
        }
        if is_namespace {
            marked["status"]["phase"] = json!("Terminating");
        }
        if options.dry_run {
            return Ok(Deleted {
                object: Arc::new(marked),
                removed: false,
            });
        }
        let object = self.replace(key, namespace, marked);
        Ok(Deleted {
            object,
            removed: false,
        })
    }

    /// Removes one finalizer from a deleting object as a system controller would; removes the
    /// object when none remain. Returns whether anything changed.
    pub(crate) fn drop_finalizer(
        &mut self,
        key: &StorageKey,
        namespace: &str,
        name: &str,
        finalizer: &str,
    ) -> bool {
        let Some(old) = self.get(key, namespace, name).cloned() else {
            return false;
        };
        let mut pending = finalizers(&old);
        let before = pending.len();
        pending.retain(|f| f != finalizer);
        if pending.len() == before {
            return false;
        }
        let mut new = (*old).clone();
        let meta = metadata_mut(&mut new);
        if pending.is_empty() {
            meta.remove("finalizers");
        } else {
            meta.insert("finalizers".into(), json!(pending));
        }
        self.replace(key, namespace, new);
        if pending.is_empty() && is_deleting(&old) {
            self.remove(key, namespace, name);
        }
        true
    }

    /// Rewrites an object as a system controller (no managedFields, no preconditions).
    pub(crate) fn system_replace(
        &mut self,
        key: &StorageKey,
        namespace: &str,
        new: Value,
    ) -> Arc<Value> {
        self.replace(key, namespace, new)
    }

    /// Removes an object as a system controller (namespace cleanup, CRD removal).
    pub(crate) fn system_remove(
        &mut self,
        key: &StorageKey,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Value>> {
        self.remove(key, namespace, name)
    }
}
