//! Server-side `Table` rendering (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::registry::ResourceType;

/// Renders `objects` as a `meta.k8s.io/v1` `Table`, with the CRD's `additionalPrinterColumns`
/// (dates as ages relative to `now`) or the built-in columns of well-known kinds, and
/// `list_metadata` (resourceVersion, continue) copied into the table's metadata.
pub fn to_table(
    _rt: &ResourceType,
    _objects: &[Value],
    _list_metadata: Value,
    _include_object: bool,
    _now: DateTime<Utc>,
) -> Value {
    todo!("to_table")
}
