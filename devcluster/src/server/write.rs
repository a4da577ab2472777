//! create, update, patch (merge, JSON, strategic, apply), delete and deletecollection.

use std::sync::{Arc, MutexGuard};

use ::http::{HeaderValue, Response};
use base64::Engine;
use serde_json::{json, Value};

use super::http::{self, Body};
use super::read::{render_one, Filter};
use super::{from_wire, to_wire, Call, Server};
use crate::admission::{self, AdmissionRequest, Operation};
use crate::apply::{self, ApplyError, ApplyRequest};
use crate::crds;
use crate::patch;
use crate::registry::ResourceType;
use crate::schema::{self, AdmissionError, FieldValidation};
use crate::status::{self, ApiError};
use crate::store::{storage_key, DeleteOptions, Propagation, State, WriteContext};

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn write_context(call: &Call) -> Result<WriteContext, ApiError> {
    let dry_run = match call.query.get("dryRun") {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unsupported value: \"{other}\": supported values: \"All\""
            )))
        }
    };
    let manager = match call.query.get("fieldManager") {
        Some(manager) => manager.to_string(),
        None => call
            .user_agent
            .split('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string(),
    };
    Ok(WriteContext {
        dry_run,
        manager,
        subresource: call.subresource.clone(),
        now: now(),
        managed_fields_done: false,
    })
}

fn field_validation(call: &Call) -> Result<FieldValidation, ApiError> {
    match call.query.get("fieldValidation") {
        None | Some("Strict") => Ok(FieldValidation::Strict),
        Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other}"
        ))),
    }
}

/// Prunes, defaults and validates a custom resource; returns warnings for `Warning` headers.
fn admit(call: &Call, obj: &mut Value, old: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let Some(crd) = &call.rt.crd else {
        return Ok(Vec::new());
    };
    if crd.schema.is_null() {
        return Ok(Vec::new());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    schema::admit_custom_resource(&crd.schema, obj, old, field_validation(call)?).map_err(|err| {
        match err {
            AdmissionError::UnknownFields(message) => ApiError::bad_request(message),
            AdmissionError::Invalid(causes) => {
                let causes: Vec<(String, String, String)> = causes
                    .into_iter()
                    .map(|c| (c.reason, c.message, c.field))
                    .collect();
                ApiError::invalid(&call.rt, &name, &causes)
            }
        }
    })
}

/// The write as admission sees it.
fn admission_request<'a>(
    call: &'a Call,
    operation: Operation,
    object: Option<&'a Value>,
    old_object: Option<&'a Value>,
    dry_run: bool,
) -> AdmissionRequest<'a> {
    let subject = object.or(old_object);
    let field = |pointer| {
        subject
            .and_then(|obj| obj.pointer(pointer))
            .and_then(Value::as_str)
    };
    AdmissionRequest {
        operation,
        rt: &call.rt,
        namespace: field("/metadata/namespace").unwrap_or(&call.namespace),
        name: field("/metadata/name")
            .or(call.name.as_deref())
            .unwrap_or_default(),
        subresource: call.subresource.as_deref().unwrap_or_default(),
        object,
        old_object,
        user: &call.user,
        dry_run,
    }
}

/// What a write read from the store and still expects there when it commits: the object
/// at `namespace`/`name` it replaces or deletes, or `None` for nothing.
struct Expected<'a> {
    namespace: &'a str,
    name: &'a str,
    stored: Option<&'a Arc<Value>>,
}

impl Expected<'_> {
    fn holds(&self, state: &State, call: &Call) -> bool {
        let now = state.get(&call.key, self.namespace, self.name);
        match (now, self.stored) {
            (None, None) => true,
            (Some(now), Some(read)) => Arc::ptr_eq(now, read),
            _ => false,
        }
    }
}

/// Admission of `request`: RBAC escalation prevention for roles and bindings, then every
/// matching ValidatingAdmissionPolicy. Returns the store locked again with the policies'
/// warnings, or no warnings when `expected` no longer holds, so the write starts over on
/// what is stored now, as kube-apiserver's `GuaranteedUpdate` retries.
///
/// why: CEL is the costly part of a checked write; the policies evaluate on what
/// [`admission::prepare`] read under the lock, without it, so other requests proceed.
fn admit_write<'s>(
    server: &'s Server,
    state: MutexGuard<'s, State>,
    call: &Call,
    request: &AdmissionRequest<'_>,
    expected: Option<Expected<'_>>,
) -> Result<(MutexGuard<'s, State>, Option<Vec<String>>), ApiError> {
    if let Some(object) = request
        .object
        .filter(|_| call.rt.group == "rbac.authorization.k8s.io")
    {
        crate::auth::rbac::check_escalation(server, call, object, request.old_object)?;
    }
    let plan = admission::prepare(&state, request);
    if plan.is_empty() {
        return Ok((state, Some(Vec::new())));
    }
    drop(state);
    let warnings = admission::validate(&plan, &server.authorizer, request)?;
    let state = server.store.lock();
    let holds = expected.is_none_or(|expected| expected.holds(&state, call));
    Ok((state, holds.then_some(warnings)))
}

/// What the API server does to built-in kinds on every write: Secrets get a default `type` and
/// their `stringData` is merged into `data`, base64-encoded.
fn normalize_builtin(rt: &ResourceType, obj: &mut Value) {
    if !(rt.group.is_empty() && rt.plural == "secrets") {
        return;
    }
    if obj.get("type").is_none_or(Value::is_null) {
        obj["type"] = json!("Opaque");
    }
    let Some(string_data) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if let Value::Object(entries) = string_data {
        if !obj.get("data").is_some_and(Value::is_object) {
            obj["data"] = json!({});
        }
        for (key, value) in entries {
            let text = value.as_str().unwrap_or_default();
            obj["data"][key.as_str()] =
                json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
}

/// Namespaced writes need an existing namespace that is not being deleted.
fn check_namespace(state: &State, call: &Call, name: &str) -> Result<(), ApiError> {
    if !call.rt.namespaced {
        return Ok(());
    }
    let namespaces: crate::store::StorageKey = Arc::from("namespaces");
    match state.get(&namespaces, "", &call.namespace) {
        None => Err(ApiError::new(404, "NotFound", format!("namespaces \"{}\" not found", call.namespace))
            .with_details(json!({ "name": call.namespace, "kind": "namespaces" }))),
        Some(ns) if ns.pointer("/metadata/deletionTimestamp").is_some() => Err(ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
            status::qualified_resource(&call.rt),
            name,
            call.namespace
        ))),
        Some(_) => Ok(()),
    }
}

fn respond(call: &Call, code: u16, obj: &Value, warnings: &[String]) -> Response<Body> {
    let mut response = if super::read::rendering(&call.accept) == super::read::Rendering::Full
        && super::wire_ready(&call.rt, obj)
    {
        http::json(code, obj)
    } else {
        http::json(code, &render_one(&call.rt, obj, &call.accept))
    };
    for warning in warnings {
        // why: kube-apiserver quotes the text as an RFC 7230 quoted-string, escaping `"` and `\`;
        // client-go unescapes it, so kubectl prints the text as written.
        let quoted = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{quoted}\"")) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

/// After a write to a CRD: serve (or stop serving) its resources and mark it established.
fn sync_crd(server: &Server, state: &mut State, crd_name: &str) {
    let key: crate::store::StorageKey = Arc::from("customresourcedefinitions.apiextensions.k8s.io");
    let Some(crd) = state.get(&key, "", crd_name).cloned() else {
        server.registry.set_crd_types(crd_name, Vec::new());
        crate::apiservices::sync(state, &server.registry);
        return;
    };
    let types = crds::crd_types(&crd);
    if crd.pointer("/metadata/deletionTimestamp").is_some() {
        if let Some(rt) = types.first() {
            state.remove_all(&storage_key(rt));
        }
        server.registry.set_crd_types(crd_name, Vec::new());
        crate::apiservices::sync(state, &server.registry);
        state.system_remove(&key, "", crd_name);
        return;
    }
    server.registry.set_crd_types(crd_name, types);
    crate::apiservices::sync(state, &server.registry);
    let established = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == "Established"));
    if !established {
        let mut updated = (*crd).clone();
        updated["status"] = crds::established_status(&crd, &now());
        state.system_replace(&key, "", updated);
    }
}

fn is_crd(rt: &ResourceType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
}

pub(crate) fn create(
    server: &Server,
    call: &Call,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    if let Some(review) = crate::auth::answer_review(server, call, body) {
        return review.map(|answer| http::json(201, &answer));
    }
    if call.name.is_some() {
        return Err(ApiError::method_not_allowed(
            "POST is not allowed on a named resource",
        ));
    }
    let ctx = write_context(call)?;
    let mut obj = from_wire(&call.rt, http::parse_body(body)?);
    if call.rt.namespaced {
        match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != call.namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => {}
        }
    }
    normalize_builtin(&call.rt, &mut obj);
    super::certificates::prepare_create(call, &mut obj);
    let mut warnings = admit(call, &mut obj, None)?;
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let state = server.store.lock();
    check_namespace(&state, call, &name)?;
    let request = admission_request(call, Operation::Create, Some(&obj), None, ctx.dry_run);
    // why: an object created meanwhile makes the create fail as it would have anyway.
    let (mut state, admitted) = admit_write(server, state, call, &request, None)?;
    warnings.extend(admitted.unwrap_or_default());
    // why: the namespace may have begun terminating while the policies ran.
    check_namespace(&state, call, &name)?;
    let created = state.create(&call.rt, &call.key, &call.namespace, obj, &ctx)?;
    if is_crd(&call.rt) && !ctx.dry_run {
        let name = created
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        sync_crd(server, &mut state, &name);
    }
    drop(state);
    Ok(respond(call, 201, &created, &warnings))
}

pub(crate) fn update(
    server: &Server,
    call: &Call,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let name = call.name.as_deref().unwrap_or_default();
    let ctx = write_context(call)?;
    let sent = from_wire(&call.rt, http::parse_body(body)?);
    loop {
        let mut obj = sent.clone();
        let state = server.store.lock();
        let old = state.get(&call.key, &call.namespace, name).cloned();
        let Some(old) = old else {
            return Err(ApiError::not_found(&call.rt, name));
        };
        normalize_builtin(&call.rt, &mut obj);
        super::certificates::prepare_update(call, &old, &mut obj, &ctx.now)?;
        let mut warnings = admit(call, &mut obj, Some(&old))?;
        let request =
            admission_request(call, Operation::Update, Some(&obj), Some(&old), ctx.dry_run);
        let expected = Expected {
            namespace: &call.namespace,
            name,
            stored: Some(&old),
        };
        let (mut state, admitted) = admit_write(server, state, call, &request, Some(expected))?;
        let Some(admitted) = admitted else {
            continue;
        };
        warnings.extend(admitted);
        let updated = state.update(&call.rt, &call.key, &call.namespace, name, obj, &ctx)?;
        if is_crd(&call.rt) && !ctx.dry_run {
            sync_crd(server, &mut state, name);
        }
        drop(state);
        return Ok(respond(call, 200, &updated, &warnings));
    }
}

fn apply_error(rt: &ResourceType, name: &str, err: ApplyError) -> ApiError {
    let message = err.to_string();
    match err {
        ApplyError::Conflict(conflicts) => {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| json!({ "reason": "FieldManagerConflict", "message": c.cause_message(), "field": c.field }))
                .collect();
            let mut details = json!({ "name": name, "kind": rt.plural, "causes": causes });
            if !rt.group.is_empty() {
                details["group"] = json!(rt.group);
            }
            ApiError::new(409, "Conflict", message).with_details(details)
        }
        ApplyError::Invalid(_) => ApiError::bad_request(message),
    }
}

pub(crate) fn patch(server: &Server, call: &Call, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let mut ctx = write_context(call)?;
    let content_type = call
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let is_apply = content_type == "application/apply-patch+yaml";
    if content_type == "application/strategic-merge-patch+json" && call.rt.crd.is_some() {
        return Err(ApiError::unsupported_media_type(&content_type));
    }
    if !matches!(
        content_type.as_str(),
        "application/merge-patch+json"
            | "application/json-patch+json"
            | "application/strategic-merge-patch+json"
            | "application/apply-patch+yaml"
    ) {
        return Err(ApiError::unsupported_media_type(&content_type));
    }
    if is_apply && call.query.get("fieldManager").is_none() {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml requires fieldManager to be set",
        ));
    }
    let patch_body = http::parse_body(body)?;
    loop {
        if let Some(response) = patch_once(server, call, &patch_body, is_apply, &mut ctx)? {
            return Ok(response);
        }
    }
}

/// One attempt at a patch on the object stored now; `None` when it changed while the
/// admission policies ran, so the patch is applied again.
fn patch_once(
    server: &Server,
    call: &Call,
    patch_body: &Value,
    is_apply: bool,
    ctx: &mut WriteContext,
) -> Result<Option<Response<Body>>, ApiError> {
    let name = call.name.as_deref().unwrap_or_default();
    let content_type = call
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let state = server.store.lock();
    let current = state.get(&call.key, &call.namespace, name).cloned();
    let now = ctx.now.clone();
    let manager = ctx.manager.clone();
    let apply_request = ApplyRequest {
        manager: &manager,
        force: call.query.flag("force"),
        subresource: call.subresource.as_deref(),
        schema: call.rt.crd.as_ref().map(|crd| &*crd.schema),
        now: &now,
    };
    let Some(current) = current else {
        if !is_apply {
            return Err(ApiError::not_found(&call.rt, name));
        }
        check_namespace(&state, call, name)?;
        let mut applied = from_wire(&call.rt, patch_body.clone());
        applied["metadata"]["name"] = json!(name);
        let mut obj = apply::server_side_apply(None, &applied, &apply_request)
            .map_err(|e| apply_error(&call.rt, name, e))?;
        normalize_builtin(&call.rt, &mut obj);
        let mut warnings = admit(call, &mut obj, None)?;
        crate::auth::rbac::check_create_on_apply(server.authorizer.as_ref(), call, name)?;
        let request = admission_request(call, Operation::Create, Some(&obj), None, ctx.dry_run);
        let expected = Expected {
            namespace: &call.namespace,
            name,
            stored: None,
        };
        let (mut state, admitted) = admit_write(server, state, call, &request, Some(expected))?;
        let Some(admitted) = admitted else {
            return Ok(None);
        };
        warnings.extend(admitted);
        // why: the namespace may have begun terminating while the policies ran.
        check_namespace(&state, call, name)?;
        ctx.managed_fields_done = true;
        let created = state.create(&call.rt, &call.key, &call.namespace, obj, ctx)?;
        if is_crd(&call.rt) && !ctx.dry_run {
            sync_crd(server, &mut state, name);
        }
        return Ok(Some(respond(call, 201, &created, &warnings)));
    };
    let live = to_wire(&call.rt, &current);
    let mut obj = match content_type {
        "application/apply-patch+yaml" => {
            let applied = from_wire(&call.rt, patch_body.clone());
            apply::server_side_apply(Some(&live), &applied, &apply_request)
                .map_err(|e| apply_error(&call.rt, name, e))?
        }
        "application/merge-patch+json" => {
            let mut obj = live;
            patch::merge_patch(&mut obj, patch_body);
            obj
        }
        "application/json-patch+json" => {
            let mut obj = live;
            patch::json_patch(&mut obj, patch_body)
                .map_err(|e| ApiError::new(422, "Invalid", e.0))?;
            obj
        }
        _ => {
            let mut obj = live;
            patch::strategic_merge_patch(&mut obj, patch_body, &call.rt.kind)
                .map_err(|e| ApiError::bad_request(e.0))?;
            obj
        }
    };
    ctx.managed_fields_done = is_apply;
    let mut obj_stored = from_wire(&call.rt, std::mem::take(&mut obj));
    normalize_builtin(&call.rt, &mut obj_stored);
    super::certificates::prepare_update(call, &current, &mut obj_stored, &ctx.now)?;
    let mut warnings = admit(call, &mut obj_stored, Some(&current))?;
    let request = admission_request(
        call,
        Operation::Update,
        Some(&obj_stored),
        Some(&current),
        ctx.dry_run,
    );
    let expected = Expected {
        namespace: &call.namespace,
        name,
        stored: Some(&current),
    };
    let (mut state, admitted) = admit_write(server, state, call, &request, Some(expected))?;
    let Some(admitted) = admitted else {
        return Ok(None);
    };
    warnings.extend(admitted);
    let updated = state.update(&call.rt, &call.key, &call.namespace, name, obj_stored, ctx)?;
    if is_crd(&call.rt) && !ctx.dry_run {
        sync_crd(server, &mut state, name);
    }
    drop(state);
    Ok(Some(respond(call, 200, &updated, &warnings)))
}

fn delete_options(call: &Call, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        http::parse_body(body)?
    };
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| call.query.get("propagationPolicy"));
    let orphan = body
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| call.query.get("orphanDependents").map(|v| v == "true"));
    let propagation = match (policy, orphan) {
        (Some("Foreground"), _) => Propagation::Foreground,
        (Some("Orphan"), _) | (None, Some(true)) => Propagation::Orphan,
        (Some("Background") | None, _) => Propagation::Background,
        (Some(other), _) => {
            return Err(ApiError::bad_request(format!("Unsupported value: \"{other}\": supported values: \"Background\", \"Foreground\", \"Orphan\"")))
        }
    };
    let dry_run = body
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|v| v == "All"))
        || call.query.get("dryRun") == Some("All");
    Ok(DeleteOptions {
        propagation,
        precondition_uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run,
        now: now(),
    })
}

pub(crate) fn delete(
    server: &Server,
    call: &Call,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let name = call.name.as_deref().unwrap_or_default();
    let options = delete_options(call, body)?;
    let (mut state, warnings) = loop {
        let state = server.store.lock();
        let Some(current) = state.get(&call.key, &call.namespace, name).cloned() else {
            break (state, Vec::new());
        };
        let request = admission_request(
            call,
            Operation::Delete,
            None,
            Some(&current),
            options.dry_run,
        );
        let expected = Expected {
            namespace: &call.namespace,
            name,
            stored: Some(&current),
        };
        if let (state, Some(warnings)) = admit_write(server, state, call, &request, Some(expected))?
        {
            break (state, warnings);
        }
    };
    let deleted = state.delete(&call.rt, &call.key, &call.namespace, name, &options)?;
    if is_crd(&call.rt) && !options.dry_run {
        sync_crd(server, &mut state, name);
    }
    drop(state);
    if deleted.removed && call.rt.crd.is_none() {
        let uid = deleted
            .object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Ok(http::json(
            200,
            &status::success_status(&call.rt, name, uid),
        ));
    }
    Ok(respond(call, 200, &deleted.object, &warnings))
}

pub(crate) fn delete_collection(
    server: &Server,
    call: &Call,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let options = delete_options(call, body)?;
    let filter = Filter::from_call(call)?;
    let mut state = server.store.lock();
    let targets: Vec<(String, String)> = state
        .objects(&call.key, filter.namespace.as_deref())
        .filter(|(_, obj)| filter.matches(obj))
        .map(|(at, _)| at.clone())
        .collect();
    let mut items = Vec::with_capacity(targets.len());
    for (namespace, name) in targets {
        // why: kube-apiserver admits a deletecollection object by object, and skips an
        // object deleted meanwhile; one changed while the policies ran is admitted again.
        while let Some(current) = state.get(&call.key, &namespace, &name).cloned() {
            let request = admission_request(
                call,
                Operation::Delete,
                None,
                Some(&current),
                options.dry_run,
            );
            let expected = Expected {
                namespace: &namespace,
                name: &name,
                stored: Some(&current),
            };
            let (relocked, admitted) = admit_write(server, state, call, &request, Some(expected))?;
            state = relocked;
            if admitted.is_some() {
                let deleted = state.delete(&call.rt, &call.key, &namespace, &name, &options)?;
                items.push(to_wire(&call.rt, &deleted.object));
                break;
            }
        }
    }
    let rv = state.resource_version().to_string();
    drop(state);
    let list = json!({
        "kind": call.rt.list_kind,
        "apiVersion": call.rt.api_version(),
        "metadata": { "resourceVersion": rv },
        "items": items,
    });
    Ok(http::json(200, &list))
}
