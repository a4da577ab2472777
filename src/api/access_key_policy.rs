//! The `AccessKeyPolicy` custom resource: limits and timers governing access keys.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::rules;

/// Pattern of a policy duration: a number with a unit `s`, `m`, `h` or `d`, or `0` (never).
pub const DURATION_PATTERN: &str = crate::keys::duration::DURATION_PATTERN;

/// Limits and timers for the access keys of the namespaces it selects.
// why: clippy mistakes the repeated `type_` keys of separate `printcolumn(...)` entries for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keywarden.io",
    version = "v1alpha1",
    kind = "AccessKeyPolicy",
    shortname = "akp",
    category = "keywarden",
    status = "AccessKeyPolicyStatus",
    doc = "Limits and timers (expiry, unused deactivation, rotation grace) for access keys.",
    printcolumn(
        name = "Max Keys",
        type_ = "integer",
        json_path = ".spec.maxKeysPerOwner"
    ),
    printcolumn(
        name = "Expire After",
        type_ = "string",
        json_path = ".spec.expireAfter"
    ),
    printcolumn(
        name = "Unused After",
        type_ = "string",
        json_path = ".spec.deactivateAfterUnused"
    ),
    printcolumn(name = "Keys", type_ = "integer", json_path = ".status.governedKeys"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyPolicySpec {
    /// Namespaces whose keys may use this policy; empty selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Most keys one owner may hold issued at once, cluster-wide.
    #[serde(default = "default_max_keys")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_keys_per_owner: u32,
    /// Keys expire this long after issuance or rotation (or the policy's `appliedAt`); `0` = never.
    #[serde(default = "default_expire_after")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(rules::DURATION_RULE).message(rules::DURATION_MESSAGE))]
    pub expire_after: String,
    /// Keys unused this long are deactivated (reason `Unused`); `0` = never.
    #[serde(default = "default_unused")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(rules::DURATION_RULE).message(rules::DURATION_MESSAGE))]
    pub deactivate_after_unused: String,
    /// How long the previous credentials stay valid after a rotation.
    #[serde(default = "default_grace")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(rules::DURATION_RULE).message(rules::DURATION_MESSAGE))]
    pub rotation_grace_period: String,
    /// When > 0, keys rotate automatically this long before they would expire.
    #[serde(default = "default_zero")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(rules::DURATION_RULE).message(rules::DURATION_MESSAGE))]
    pub rotate_before_expiry: String,
    /// Scopes keys may request; empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = rules::MAX_SCOPE_LENGTH)))]
    #[x_kube(merge_strategy = ListMerge::Set, validation = Rule::new(rules::SCOPES_RULE).message(rules::SCOPES_MESSAGE))]
    pub allowed_scopes: Vec<String>,
    /// Refuse keys without an `allowedOrigins` list.
    #[serde(default)]
    pub require_allowed_origins: bool,
    /// Let each key's owner `get` that key's Secret, and nothing else, through a Role and
    /// RoleBinding the controller keeps per key; `false` removes them (owners then need Secret
    /// access granted some other way).
    #[serde(default = "default_true")]
    pub owner_secret_access: bool,
}

/// Built-in maximum of issued keys per owner.
pub const DEFAULT_MAX_KEYS_PER_OWNER: u32 = 5;
/// Built-in expiry.
pub const DEFAULT_EXPIRE_AFTER: &str = "180d";
/// Built-in unused deactivation.
pub const DEFAULT_DEACTIVATE_AFTER_UNUSED: &str = "30d";
/// Built-in rotation grace period.
pub const DEFAULT_ROTATION_GRACE_PERIOD: &str = "5m";

fn default_max_keys() -> u32 {
    DEFAULT_MAX_KEYS_PER_OWNER
}
fn default_expire_after() -> String {
    DEFAULT_EXPIRE_AFTER.into()
}
fn default_unused() -> String {
    DEFAULT_DEACTIVATE_AFTER_UNUSED.into()
}
fn default_grace() -> String {
    DEFAULT_ROTATION_GRACE_PERIOD.into()
}
fn default_zero() -> String {
    "0".into()
}
fn default_true() -> bool {
    true
}

impl Default for AccessKeyPolicySpec {
    /// The built-in defaults used when no policy governs a key.
    fn default() -> Self {
        Self {
            namespace_selector: None,
            max_keys_per_owner: default_max_keys(),
            expire_after: default_expire_after(),
            deactivate_after_unused: default_unused(),
            rotation_grace_period: default_grace(),
            rotate_before_expiry: default_zero(),
            allowed_scopes: Vec::new(),
            require_allowed_origins: false,
            owner_secret_access: true,
        }
    }
}

/// Observed state of a policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the current spec took effect; expirations count from no earlier than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<DateTime<Utc>>,
    /// Number of keys this policy governs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governed_keys: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
