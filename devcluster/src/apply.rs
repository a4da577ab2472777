//! Server-side apply and managedFields bookkeeping.

use serde_json::Value;

/// One field owned by another manager that an apply tried to change.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldConflict {
    /// The manager that owns the field.
    pub manager: String,
    /// The field path in Kubernetes' notation, e.g. `.spec.replicas`.
    pub field: String,
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change; `force` was not set. Answered 409.
    #[error("Apply failed with {} conflict(s)", .0.len())]
    Conflict(Vec<FieldConflict>),
    /// The applied configuration is malformed. Answered 400/422.
    #[error("{0}")]
    Invalid(String),
}

/// What the server knows about an apply request.
pub struct ApplyRequest<'a> {
    /// The `fieldManager` query parameter (required for apply).
    pub manager: &'a str,
    pub force: bool,
    /// `Some("status")` when applied to the status subresource.
    pub subresource: Option<&'a str>,
    /// The CRD's `openAPIV3Schema` for custom resources (for `x-kubernetes-list-type` and
    /// `x-kubernetes-list-map-keys`); `None` for built-in kinds, which use the built-in merge keys.
    pub schema: Option<&'a Value>,
    /// RFC 3339 timestamp recorded in managedFields entries.
    pub now: &'a str,
}

/// Computes the object that results from a server-side apply of `applied` onto `live`
/// (`None` creates the object), including its updated `metadata.managedFields`.
pub fn server_side_apply(
    _live: Option<&Value>,
    _applied: &Value,
    _request: &ApplyRequest<'_>,
) -> Result<Value, ApplyError> {
    todo!("server_side_apply")
}

/// Records an `Update` operation (create, PUT, any non-apply patch) by `manager` in
/// `new.metadata.managedFields`: the manager takes ownership of the fields it changed and others
/// lose them. `old` is `None` on create.
pub fn record_update(
    _old: Option<&Value>,
    _new: &mut Value,
    _manager: &str,
    _subresource: Option<&str>,
    _now: &str,
) {
    todo!("record_update")
}
