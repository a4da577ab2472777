//! Scopes as RBAC permissions: `<resource>:view|manage` is verb `view`/`manage` on `<resource>`
//! in the virtual API group `scopes.keywarden.io`, and what the controller recorded of its last
//! review of a key's scopes against its owner's permissions.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The virtual API group that names scope permissions (nothing is served there).
pub const SCOPES_GROUP: &str = "scopes.keywarden.io";
pub use crate::keys::scope::ALL_SCOPES;

/// The controller's last review of a key's scopes against its owner's permissions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScopeReview {
    /// Digest of what the review looked at: owner, groups, scopes and the RBAC bindings and
    /// roles naming `scopes.keywarden.io` that apply to the owner. While it matches, the
    /// review stands (a restart does not repeat it).
    pub fingerprint: String,
    /// Requested scopes the owner does not hold; the key does not carry them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_held: Vec<String>,
}
