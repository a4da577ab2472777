//! Kubernetes `Status` errors, as the real API server words them.

use serde_json::{json, Value};

use crate::registry::ResourceType;

/// An error answered to the client as a `meta.k8s.io/v1` `Status`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...
    pub reason: &'static str,
    pub message: String,
    /// The `details` object (name, group, kind, causes), when there is one.
    pub details: Option<Value>,
}

/// `plural` for the core group, `plural.group` otherwise, as in Kubernetes messages.
pub fn qualified_resource(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.clone()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

/// `Kind` for the core group, `Kind.group` otherwise (used by `Invalid` messages).
fn qualified_kind(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.kind.clone()
    } else {
        format!("{}.{}", rt.kind, rt.group)
    }
}

fn resource_details(rt: &ResourceType, name: &str) -> Value {
    let mut details = json!({ "name": name, "kind": rt.plural });
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    details
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", qualified_resource(rt));
        Self::new(404, "NotFound", message).with_details(resource_details(rt, name))
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", qualified_resource(rt));
        Self::new(409, "AlreadyExists", message).with_details(resource_details(rt, name))
    }

    /// The optimistic-concurrency conflict of a stale `resourceVersion`.
    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self::conflict_because(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn conflict_because(rt: &ResourceType, name: &str, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            qualified_resource(rt)
        );
        Self::new(409, "Conflict", message).with_details(resource_details(rt, name))
    }

    /// 422 Invalid with one `(reason, message, field)` cause per problem.
    pub fn invalid(rt: &ResourceType, name: &str, causes: &[(String, String, String)]) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|(_, message, field)| format!("{field}: {message}"))
            .collect();
        let message = if summary.len() == 1 {
            format!(
                "{} \"{name}\" is invalid: {}",
                qualified_kind(rt),
                summary[0]
            )
        } else {
            format!(
                "{} \"{name}\" is invalid: [{}]",
                qualified_kind(rt),
                summary.join(", ")
            )
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(reason, message, field)| {
                json!({ "reason": reason, "message": message, "field": field })
            })
            .collect();
        let mut details = json!({ "name": name, "kind": rt.kind, "causes": causes });
        if !rt.group.is_empty() {
            details["group"] = json!(rt.group);
        }
        Self::new(422, "Invalid", message).with_details(details)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {content_type}"))
    }

    /// 410 Expired: a watch or continue token older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object for the response body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// The `Status` answered by a delete that removed the object at once.
pub fn success_status(rt: &ResourceType, name: &str, uid: &str) -> Value {
    let mut details = resource_details(rt, name);
    details["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
