//! Interim stand-ins for `apply::server_side_apply` and `apply::record_update` until the
//! server-side apply machinery lands; removed then. They track no field ownership and never
//! report conflicts.

use serde_json::{json, Value};

use crate::apply::{ApplyError, ApplyRequest};

/// Stands in for `apply::record_update`: records nothing.
pub(crate) fn record_update(
    _old: Option<&Value>,
    _new: &mut Value,
    _manager: &str,
    _subresource: Option<&str>,
    _now: &str,
) {
}

/// Stands in for `apply::server_side_apply`: merges the applied configuration into the live
/// object as a JSON merge patch.
pub(crate) fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    request: &ApplyRequest<'_>,
) -> Result<Value, ApplyError> {
    let mut result = live.cloned().unwrap_or_else(|| json!({}));
    crate::patch::merge_patch(&mut result, applied);
    let _ = request;
    Ok(result)
}

/// Stands in for `schema::admit_custom_resource`: admits everything unchanged.
pub(crate) fn admit_custom_resource(
    _schema: &Value,
    _obj: &mut Value,
    _old: Option<&Value>,
    _field_validation: crate::schema::FieldValidation,
) -> Result<Vec<String>, crate::schema::AdmissionError> {
    Ok(Vec::new())
}
