//! RBAC as kube-apiserver evaluates it: roles and bindings indexed by subject, aggregated
//! ClusterRoles, bootstrap policy, escalation prevention and the access-review APIs.

use serde_json::Value;

use super::{Attributes, Authorizer, Decision, UserInfo};
use crate::registry::ResourceType;
use crate::server::{Call, Server};
use crate::status::ApiError;
use crate::store::State;

/// The RBAC authorizer (`system:masters` is always allowed).
#[derive(Default)]
pub struct Rbac {}

impl Authorizer for Rbac {
    fn authorize(&self, _attributes: &Attributes) -> Decision {
        Decision::Allow(String::new())
    }
}

/// The 403 kube-apiserver answers when `decision` does not allow `attributes`.
pub fn forbidden(attributes: &Attributes, decision: &Decision) -> ApiError {
    let _ = decision;
    ApiError::forbidden(format!(
        "forbidden: User \"{}\" cannot {} path \"{}\"",
        attributes.user.username, attributes.verb, attributes.path
    ))
}

/// Escalation prevention on writes of roles and bindings: writing a role with permissions the
/// requester lacks needs `escalate`; a binding to a role they don't hold needs `bind`.
pub(crate) fn check_escalation(
    _server: &Server,
    _state: &State,
    _rt: &ResourceType,
    _user: &UserInfo,
    _object: &Value,
) -> Result<(), ApiError> {
    Ok(())
}

/// `create` on the `authorization.k8s.io/v1` review kinds (SelfSubjectAccessReview,
/// SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectRulesReview).
pub(crate) fn access_review(
    _server: &Server,
    call: &Call,
    body: &Value,
) -> Result<Value, ApiError> {
    // why: until RBAC exists every request is allowed, so every review is.
    Ok(serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": call.rt.kind,
        "metadata": {},
        "spec": body.get("spec").cloned().unwrap_or_else(|| serde_json::json!({})),
        "status": { "allowed": true },
    }))
}
