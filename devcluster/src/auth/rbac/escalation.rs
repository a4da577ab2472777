//! Escalation prevention on writes of roles and bindings (kube-apiserver's policy-based RBAC
//! storage): nobody grants, through a role or a binding, permissions they do not hold, unless
//! they may `escalate` the role or `bind` the referenced role.

use std::collections::BTreeSet;

use serde_json::Value;

use super::index::RoleRef;
use super::rule::{go_quoted_list, uncovered, PolicyRule};
use super::{forbidden_error, index, quote, Rbac};
use crate::auth::{Attributes, UserInfo, MASTERS_GROUP};
use crate::server::{Call, Server};
use crate::status::ApiError;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Checks a create or update (`old` is the stored object) of a Role, ClusterRole, RoleBinding
/// or ClusterRoleBinding by `call.user`; other writes pass.
pub(crate) fn check_escalation(
    server: &Server,
    call: &Call,
    object: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let user = &call.user;
    if call.rt.group != RBAC_GROUP || user.groups.iter().any(|g| g == MASTERS_GROUP) {
        return Ok(());
    }
    if old.is_some_and(|old| only_garbage_collection_fields_change(object, old)) {
        return Ok(());
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let resource = call.rt.plural.as_str();
    match resource {
        "roles" | "clusterroles" => {
            if may(
                server,
                call,
                "escalate",
                resource,
                call.name.as_deref().unwrap_or_default(),
            ) {
                return Ok(());
            }
            let rules: Vec<PolicyRule> = PolicyRule::from_object(object);
            let deny = |err: String| forbidden_error(RBAC_GROUP, resource, name, &err);
            confirm_no_escalation(&server.rbac, user, &call.namespace, &rules).map_err(deny)?;
            if object
                .get("aggregationRule")
                .is_some_and(|rule| !rule.is_null())
            {
                let full_authority = [
                    PolicyRule::resource(&["*"], &["*"], &["*"]),
                    PolicyRule::urls(&["*"], &["*"]),
                ];
                confirm_no_escalation(&server.rbac, user, &call.namespace, &full_authority)
                    .map_err(|_| {
                        deny("must have cluster-admin privileges to use the aggregationRule".into())
                    })?;
            }
            Ok(())
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = RoleRef::parse(object);
            let role_resource = match role_ref.kind.as_str() {
                "Role" => "roles",
                "ClusterRole" => "clusterroles",
                _ => "",
            };
            let bind = Attributes {
                user: user.clone(),
                verb: "bind".into(),
                resource_request: true,
                api_group: object
                    .pointer("/roleRef/apiGroup")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                resource: role_resource.into(),
                namespace: call.namespace.clone(),
                name: role_ref.name.clone(),
                ..Attributes::default()
            };
            if !role_resource.is_empty() && server.authorizer.authorize(&bind).allowed() {
                return Ok(());
            }
            let rules = server
                .rbac
                .role_rules(&role_ref, &call.namespace)
                .map_err(|_| missing_role(&role_ref, role_resource))?;
            confirm_no_escalation(&server.rbac, user, &call.namespace, &rules)
                .map_err(|err| forbidden_error(RBAC_GROUP, resource, name, &err))
        }
        _ => Ok(()),
    }
}

/// Whether an update changes nothing but what the garbage collector writes (ownerReferences,
/// finalizers), which kube-apiserver lets through unchecked (`IsOnlyMutatingGCFields`).
fn only_garbage_collection_fields_change(object: &Value, old: &Value) -> bool {
    let comparable = |value: &Value| {
        let mut value = value.clone();
        if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "ownerReferences",
                "finalizers",
                "managedFields",
                "selfLink",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "uid",
            ] {
                metadata.remove(field);
            }
        }
        value
    };
    comparable(object) == comparable(old)
}

/// Whether `call.user` may `verb` the role resource being written.
fn may(server: &Server, call: &Call, verb: &str, resource: &str, name: &str) -> bool {
    let attributes = Attributes {
        user: call.user.clone(),
        verb: verb.into(),
        resource_request: true,
        api_group: RBAC_GROUP.into(),
        api_version: "*".into(),
        resource: resource.into(),
        namespace: call.namespace.clone(),
        name: name.into(),
        ..Attributes::default()
    };
    server.authorizer.authorize(&attributes).allowed()
}

/// The 404 of a binding whose role does not exist (the registry's NotFound, plural resource).
fn missing_role(role_ref: &RoleRef, role_resource: &str) -> ApiError {
    if role_resource.is_empty() {
        return ApiError::bad_request(format!(
            "unsupported role reference kind: {}",
            quote(&role_ref.kind)
        ));
    }
    let message = format!(
        "{role_resource}.{RBAC_GROUP} {} not found",
        quote(&role_ref.name)
    );
    ApiError::new(404, "NotFound", message).with_details(
        serde_json::json!({ "name": role_ref.name, "group": RBAC_GROUP, "kind": role_resource }),
    )
}

/// `ConfirmNoEscalation`: `user`'s rules in `namespace` cover `rules`, or the error naming what
/// is missing.
fn confirm_no_escalation(
    rbac: &Rbac,
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let (owned, errors) = rbac.rules_for(user, namespace);
    let missing = uncovered(&owned, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let descriptions: BTreeSet<String> = missing.iter().map(ToString::to_string).collect();
    let mut message = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        quote(&user.username),
        go_quoted_list(&user.groups),
        descriptions.into_iter().collect::<Vec<_>>().join("\n")
    );
    if !errors.is_empty() {
        message.push_str(&format!(
            "; resolution errors: [{}]",
            index::aggregate(&errors)
        ));
    }
    Err(message)
}
