//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

use serde_json::Value;

/// Why a patch could not be applied; the message is shown to the client in a `Status`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// Applies an RFC 7386 merge patch in place (`null` deletes a key).
pub fn merge_patch(_target: &mut Value, _patch: &Value) {
    todo!("merge_patch")
}

/// Applies an RFC 6902 JSON patch in place. A `test` op on a missing path compares against `null`,
/// as the Kubernetes API server does.
pub fn json_patch(_target: &mut Value, _patch: &Value) -> Result<(), PatchError> {
    todo!("json_patch")
}

/// Applies a strategic merge patch for a built-in kind (`kind` is e.g. `Deployment`), using the
/// Kubernetes patch strategies and merge keys (containers by `name`, ...), `$patch: delete|replace`
/// directives, `$retainKeys`, `$setElementOrder` and `null` deletes.
pub fn strategic_merge_patch(
    _target: &mut Value,
    _patch: &Value,
    _kind: &str,
) -> Result<(), PatchError> {
    todo!("strategic_merge_patch")
}
