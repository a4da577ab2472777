//! The texts and values kube-apiserver shows: the `Status` of a denial, the `request`
//! variable, `namespaceObject` and the audit annotation of an `Audit` failure.

use serde_json::{json, Map, Value};

use super::environment::map;
use super::matching::{attribute_namespace, Matched};
use super::policy::Binding;
use super::reads::{to_cel_read, Reads};
use super::{AdmissionRequest, Denial, Operation};
use crate::status::{qualified_resource, ApiError};

/// The `Status` of a denial: admission's Forbidden error with the validation's reason and code.
pub(crate) fn denied(request: &AdmissionRequest<'_>, denial: &Denial) -> ApiError {
    let inner = match &denial.binding {
        Some(binding) => format!(
            "ValidatingAdmissionPolicy '{}' with binding '{binding}' denied request: {}",
            denial.policy, denial.message
        ),
        None => format!(
            "ValidatingAdmissionPolicy '{}' denied request: {}",
            denial.policy, denial.message
        ),
    };
    let name = subject_name(request);
    let resource = qualified_resource(request.rt);
    let message = format!("{resource} \"{name}\" is forbidden: {inner}");
    let (code, reason) = match denial.reason.as_deref() {
        Some("Forbidden") => (403, "Forbidden"),
        Some("Unauthorized") => (401, "Unauthorized"),
        Some("RequestEntityTooLarge") => (413, "RequestEntityTooLarge"),
        // why: upstream maps every other reason to 422; its API only admits these four.
        _ => (422, "Invalid"),
    };
    let mut details = json!({
        "name": name,
        "kind": request.rt.plural,
        "causes": [{ "message": inner }],
    });
    if !request.rt.group.is_empty() {
        details["group"] = json!(request.rt.group);
    }
    ApiError::new(code, reason, message).with_details(details)
}

/// The name admission errors show: the request's, else the object's `generateName`, else
/// `Unknown`.
fn subject_name(request: &AdmissionRequest<'_>) -> String {
    if !request.name.is_empty() {
        return request.name.to_string();
    }
    request
        .object
        .and_then(|obj| obj.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .filter(|generated| !generated.is_empty())
        .unwrap_or("Unknown")
        .to_string()
}

fn operation(operation: Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    }
}

/// The `request` variable: admission.k8s.io/v1 `AdmissionRequest` without the objects; `uid`
/// is the request's. Only what `reads` can read of it is made.
pub(crate) fn request_value(
    request: &AdmissionRequest<'_>,
    matched: &Matched,
    uid: &str,
    reads: &Reads,
) -> kube_cel::cel::Value {
    let rt = request.rt;
    let user = request.user;
    let options = || {
        let options_kind = match request.operation {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        };
        let mut options = json!({ "kind": options_kind, "apiVersion": "meta.k8s.io/v1" });
        if request.dry_run {
            options["dryRun"] = json!(["All"]);
        }
        options
    };
    let all: [(&str, &dyn Fn() -> Value); 13] = [
        ("uid", &|| json!(uid)),
        (
            "kind",
            &|| json!({ "group": matched.group, "version": matched.version, "kind": matched.kind }),
        ),
        (
            "resource",
            &|| json!({ "group": matched.group, "version": matched.version, "resource": matched.resource }),
        ),
        ("subResource", &|| json!(request.subresource)),
        (
            "requestKind",
            &|| json!({ "group": rt.group, "version": rt.version, "kind": rt.kind }),
        ),
        (
            "requestResource",
            &|| json!({ "group": rt.group, "version": rt.version, "resource": rt.plural }),
        ),
        ("requestSubResource", &|| json!(request.subresource)),
        ("name", &|| json!(request.name)),
        ("namespace", &|| json!(attribute_namespace(request))),
        ("operation", &|| json!(operation(request.operation))),
        ("userInfo", &|| {
            json!({
                "username": user.username,
                "uid": user.uid,
                "groups": user.groups,
                "extra": user.extra,
            })
        }),
        ("dryRun", &|| json!(request.dry_run)),
        ("options", &options),
    ];
    map(all
        .into_iter()
        .filter_map(|(field, value)| {
            let converted = match reads.field(field)? {
                Reads::Presence => kube_cel::cel::Value::Null,
                reads => to_cel_read(&value(), reads),
            };
            Some((field, converted))
        })
        .collect())
}

/// The Namespace as `namespaceObject` shows it: metadata without managedFields, spec, status.
pub(crate) fn namespace_view(namespace: &Value) -> Value {
    const KEPT: &[&str] = &[
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "finalizers",
    ];
    let metadata: Map<String, Value> = namespace
        .get("metadata")
        .and_then(Value::as_object)
        .map(|meta| {
            meta.iter()
                .filter(|(key, _)| KEPT.contains(&key.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "metadata": metadata,
        "spec": namespace.get("spec").cloned().unwrap_or_else(|| json!({})),
        "status": namespace.get("status").cloned().unwrap_or_else(|| json!({})),
    })
}

/// The value of `validation.policy.admission.k8s.io/validation_failure` for an `Audit` failure.
pub(crate) fn validation_failure(
    policy: &str,
    binding: &Binding,
    expression_index: usize,
    message: &str,
) -> String {
    json!([{
        "message": message,
        "policy": policy,
        "binding": binding.name,
        "expressionIndex": expression_index,
        "validationActions": binding.validation_actions,
    }])
    .to_string()
}
