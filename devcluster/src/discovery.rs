//! Discovery documents: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`.

use serde_json::Value;

use crate::registry::ResourceType;

/// The `/version` document (reports a 1.32 server).
pub fn version() -> Value {
    todo!("version")
}

/// The `/api` document (`APIVersions`).
pub fn core_api_versions(_server_address: &str) -> Value {
    todo!("core_api_versions")
}

/// The `/apis` document (`APIGroupList`) for every served non-core group.
pub fn api_group_list(_types: &[ResourceType]) -> Value {
    todo!("api_group_list")
}

/// The `APIResourceList` for one group/version (`group` empty for `/api/v1`); `None` when unknown.
pub fn api_resource_list(_types: &[ResourceType], _group: &str, _version: &str) -> Option<Value> {
    todo!("api_resource_list")
}
