//! OpenAPI v3 documents for kubectl (`apply --validate=strict`, `explain`).

use serde_json::Value;

use crate::registry::ResourceType;

/// The `/openapi/v3` index: one `paths` entry per served group/version.
pub fn v3_index(_types: &[ResourceType]) -> Value {
    todo!("v3_index")
}

/// The `/openapi/v3/{api|apis/group}/{version}` document; `None` when unknown.
pub fn v3_document(_types: &[ResourceType], _group: &str, _version: &str) -> Option<Value> {
    todo!("v3_document")
}
