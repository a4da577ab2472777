//! The `authorization.k8s.io/v1` review kinds, answered by the same evaluation as requests:
//! SelfSubjectAccessReview, SubjectAccessReview, LocalSubjectAccessReview and
//! SelfSubjectRulesReview (what `kubectl auth can-i [--list]` asks).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::index;
use crate::auth::{Attributes, Decision, UserInfo};
use crate::server::{Call, Server};
use crate::status::ApiError;

/// `create` on one of the review kinds.
pub(crate) fn access_review(server: &Server, call: &Call, body: &Value) -> Result<Value, ApiError> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut metadata = json!({ "creationTimestamp": null });
    let status = match call.rt.plural.as_str() {
        "selfsubjectrulesreviews" => rules_review(server, call, &spec)?,
        "selfsubjectaccessreviews" => {
            check_attributes_present(call, &spec, Vec::new())?;
            review_status(server, call.user.clone(), &spec)
        }
        "subjectaccessreviews" => {
            check_attributes_present(call, &spec, subject_problems(&spec))?;
            review_status(server, Arc::new(subject_of(&spec)), &spec)
        }
        "localsubjectaccessreviews" => {
            let namespace = local_namespace(call, body)?;
            metadata["namespace"] = json!(namespace);
            let mut problems = subject_problems(&spec);
            if let Some(attributes) = spec.get("resourceAttributes").filter(|a| !a.is_null()) {
                let wanted = text(attributes, "namespace");
                if wanted != namespace {
                    problems.push(invalid(
                        "spec.resourceAttributes.namespace",
                        &format!("{wanted:?}"),
                        "must match metadata.namespace",
                    ));
                }
            }
            if spec
                .get("nonResourceAttributes")
                .is_some_and(|a| !a.is_null())
            {
                problems.push(invalid(
                    "spec.nonResourceAttributes",
                    &spec["nonResourceAttributes"].to_string(),
                    "disallowed on this kind of request",
                ));
            }
            check_attributes_present(call, &spec, problems)?;
            review_status(server, Arc::new(subject_of(&spec)), &spec)
        }
        other => {
            return Err(ApiError::internal(format!(
                "{other} is not an access review"
            )))
        }
    };
    let spec = if call.rt.plural == "selfsubjectrulesreviews" {
        json!({})
    } else {
        spec
    };
    Ok(json!({
        "kind": call.rt.kind,
        "apiVersion": call.rt.api_version(),
        "metadata": metadata,
        "spec": spec,
        "status": status,
    }))
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// One `(reason, message, field)` cause of a 422 Invalid, worded as `field.Invalid`.
fn invalid(field: &str, value: &str, detail: &str) -> (String, String, String) {
    (
        "FieldValueInvalid".into(),
        format!("Invalid value: {value}: {detail}"),
        field.into(),
    )
}

/// A SubjectAccessReview must name a user or a group.
fn subject_problems(spec: &Value) -> Vec<(String, String, String)> {
    let has_groups = spec
        .get("groups")
        .and_then(Value::as_array)
        .is_some_and(|groups| !groups.is_empty());
    if text(spec, "user").is_empty() && !has_groups {
        vec![invalid(
            "spec.user",
            "\"\"",
            "at least one of user or group must be specified",
        )]
    } else {
        Vec::new()
    }
}

/// Exactly one of resourceAttributes and nonResourceAttributes, plus `problems`, or 422.
fn check_attributes_present(
    call: &Call,
    spec: &Value,
    mut problems: Vec<(String, String, String)>,
) -> Result<(), ApiError> {
    let present = |field: &str| spec.get(field).is_some_and(|v| !v.is_null());
    match (
        present("resourceAttributes"),
        present("nonResourceAttributes"),
    ) {
        (true, true) => problems.insert(
            0,
            invalid(
                "spec.nonResourceAttributes",
                &spec["nonResourceAttributes"].to_string(),
                "cannot be specified in combination with resourceAttributes",
            ),
        ),
        (false, false) => problems.insert(
            0,
            invalid(
                "spec.resourceAttributes",
                "\"null\"",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ),
        ),
        _ => {}
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&call.rt, "", &problems))
    }
}

/// The namespace of a LocalSubjectAccessReview: the URL's; the body's must be empty or equal.
fn local_namespace(call: &Call, body: &Value) -> Result<String, ApiError> {
    match body.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() && ns != call.namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(call.namespace.clone()),
    }
}

/// The user a SubjectAccessReview asks about.
fn subject_of(spec: &Value) -> UserInfo {
    let strings = |value: Option<&Value>| -> Vec<String> {
        value
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|extra| {
            extra
                .iter()
                .map(|(key, values)| (key.clone(), strings(Some(values))))
                .collect()
        })
        .unwrap_or_default();
    UserInfo {
        username: text(spec, "user").to_string(),
        uid: text(spec, "uid").to_string(),
        groups: strings(spec.get("groups")),
        extra,
    }
}

/// The attributes a review's spec asks about (`AuthorizationAttributesFrom`).
fn attributes_of(user: Arc<UserInfo>, spec: &Value) -> Attributes {
    if let Some(resource) = spec.get("resourceAttributes").filter(|a| !a.is_null()) {
        let version = text(resource, "version");
        return Attributes {
            user,
            verb: text(resource, "verb").into(),
            resource_request: true,
            api_group: text(resource, "group").into(),
            api_version: if version.is_empty() { "*" } else { version }.into(),
            resource: text(resource, "resource").into(),
            subresource: text(resource, "subresource").into(),
            namespace: text(resource, "namespace").into(),
            name: text(resource, "name").into(),
            path: String::new(),
        };
    }
    let non_resource = &spec["nonResourceAttributes"];
    Attributes {
        user,
        verb: text(non_resource, "verb").into(),
        path: text(non_resource, "path").into(),
        ..Attributes::default()
    }
}

/// A SubjectAccessReviewStatus from the server's authorizer.
fn review_status(server: &Server, user: Arc<UserInfo>, spec: &Value) -> Value {
    let decision = server.authorizer.authorize(&attributes_of(user, spec));
    let mut status = Map::new();
    status.insert("allowed".into(), json!(decision.allowed()));
    if matches!(decision, Decision::Deny(_)) {
        status.insert("denied".into(), json!(true));
    }
    if !decision.reason().is_empty() {
        status.insert("reason".into(), json!(decision.reason()));
    }
    Value::Object(status)
}

/// A SubjectRulesReviewStatus: every rule the requester holds in `spec.namespace`.
fn rules_review(server: &Server, call: &Call, spec: &Value) -> Result<Value, ApiError> {
    let namespace = text(spec, "namespace");
    if namespace.is_empty() {
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let (rules, errors) = server.rbac.rules_for(&call.user, namespace);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in rules {
        if !rule.resources.is_empty() {
            let mut entry = json!({ "verbs": rule.verbs });
            for (field, values) in [
                ("apiGroups", &rule.api_groups),
                ("resources", &rule.resources),
                ("resourceNames", &rule.resource_names),
            ] {
                if !values.is_empty() {
                    entry[field] = json!(values);
                }
            }
            resource_rules.push(entry);
        }
        if !rule.non_resource_urls.is_empty() {
            non_resource_rules
                .push(json!({ "verbs": rule.verbs, "nonResourceURLs": rule.non_resource_urls }));
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(index::aggregate(&errors));
    }
    Ok(status)
}
