//! The `AccessKey` custom resource: one API access key, declared by a platform team.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::rules;

/// Pattern of one scope: `resource:view` or `resource:manage`.
pub const SCOPE_PATTERN: &str = r"^[a-z][a-z0-9-]*:(view|manage)$";
/// Pattern of one allowed origin: `scheme://host[:port]`, no path; `https://*.example.com`
/// allows every subdomain of `example.com` (not `example.com` itself).
pub const ORIGIN_PATTERN: &str = r"^https?://(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:[0-9]{1,5})?$";
/// Pattern of a Kubernetes object name (DNS subdomain).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Desired state of an API access key.
// why: clippy mistakes the repeated `type_` keys of separate `printcolumn(...)` entries for
// duplicated attributes (once the struct has an `x_kube` attribute of its own).
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keywarden.io",
    version = "v1alpha1",
    kind = "AccessKey",
    namespaced,
    shortname = "ak",
    category = "keywarden",
    status = "AccessKeyStatus",
    doc = "An API access key: keywarden issues its secret once into a Secret and governs it with an AccessKeyPolicy.",
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner.name"),
    printcolumn(name = "Access ID", type_ = "string", json_path = ".status.accessKeyId"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Last Used", type_ = "date", json_path = ".status.lastUsedAt"),
    // why: kubectl renders a future `date` column as `<invalid>`, so expiry shows as a timestamp.
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Display Name", type_ = "string", json_path = ".spec.displayName", priority = 1),
    printcolumn(name = "Scopes", type_ = "string", json_path = ".spec.scopes", priority = 1),
    printcolumn(name = "Policy", type_ = "string", json_path = ".status.policy", priority = 1),
    printcolumn(name = "Rotated", type_ = "date", json_path = ".status.rotatedAt", priority = 1),
    printcolumn(name = "Created By", type_ = "string", json_path = ".status.createdBy", priority = 1),
    selectable = ".spec.owner.name",
    selectable = ".spec.owner.kind",
    selectable = ".spec.policyName",
)]
#[serde(rename_all = "camelCase")]
// why: on `spec`, not the root, where `self` and `oldSelf` would be the whole object: an API
// server converts both into CEL values on every write, the controller's status writes too.
// On `secret` itself, adding or removing it would escape the rule.
#[x_kube(
    validation = Rule::new("(has(self.secret) && has(self.secret.name) ? self.secret.name : '') == (has(oldSelf.secret) && has(oldSelf.secret.name) ? oldSelf.secret.name : '')").message("spec.secret.name is immutable").field_path(".secret.name"),
)]
pub struct AccessKeySpec {
    /// Who the key acts for. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("owner is immutable"))]
    pub owner: KeyOwner,

    /// Human-readable name shown by tools; freely editable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,

    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// Permissions the key grants, as `resource:view` or `resource:manage`.
    /// Empty means every permission of the owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = rules::MAX_SCOPE_LENGTH)))]
    #[x_kube(merge_strategy = ListMerge::Set, validation = Rule::new(rules::SCOPES_RULE).message(rules::SCOPES_MESSAGE))]
    pub scopes: Vec<String>,

    /// The groups a User owner had when they last wrote the key (`request.userInfo.groups`),
    /// which the controller reviews the scopes with. Only the owner may set them, to exactly
    /// their groups (admission policy); ignored for a ServiceAccount owner, whose are known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 256)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub owner_groups: Vec<String>,

    /// CORS allowlist in Origin format (`https://host[:port]`). A request that carries an
    /// `Origin` header is refused unless the origin is listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 262)))]
    #[x_kube(merge_strategy = ListMerge::Set, validation = Rule::new(rules::ORIGINS_RULE).message(rules::ORIGINS_MESSAGE))]
    pub allowed_origins: Vec<String>,

    /// Desired activation. `false` deactivates the key (reason `Manual`).
    #[serde(default = "default_true")]
    pub active: bool,

    /// Bump to rotate the key now: a new access ID and secret are issued into the same Secret.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub rotate_generation: i64,

    /// Bump to reactivate a key deactivated for non-use. An expired key needs a rotation instead.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub reactivate_generation: i64,

    /// Name of the governing `AccessKeyPolicy`; default: the cluster default policy, else the
    /// built-in defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(rules::DNS_SUBDOMAIN_RULE).message(rules::POLICY_NAME_MESSAGE))]
    pub policy_name: Option<String>,

    /// The Secret the credentials are written to (same namespace).
    // why: Kubernetes cannot change a Secret's type in place.
    #[serde(default)]
    #[x_kube(validation = Rule::new("(has(self.type) ? self.type : 'Opaque') == (has(oldSelf.type) ? oldSelf.type : 'Opaque')").message("secret.type is immutable"))]
    pub secret: SecretTemplate,
    /// Workloads restarted after each issuance (opt-in; the controller acts on it only when
    /// started with `--rollout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<super::Rollout>,
}

fn default_true() -> bool {
    true
}

/// The identity a key acts for.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.kind != 'User' || !self.name.startsWith('system:')").message("a User owner may not be a system: identity; name the ServiceAccount with kind ServiceAccount").field_path(".name"),
    validation = Rule::new(OWNER_SERVICE_ACCOUNT_RULE).message("a ServiceAccount owner name must be a DNS-1123 subdomain (the ServiceAccount in the key's namespace)").field_path(".name"),
)]
pub struct KeyOwner {
    pub kind: OwnerKind,
    /// Kubernetes username (`request.userInfo.username`), or ServiceAccount name in the key's
    /// namespace (the identity is then `system:serviceaccount:<namespace>:<name>`).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(OWNER_NAME_RULE).message("owner name may not start or end with whitespace nor contain control characters"))]
    pub name: String,
}

/// CEL: no control characters, no leading or trailing whitespace.
// why: POSIX classes, not backslash escapes, which CEL string literals would need doubled.
pub const OWNER_NAME_RULE: &str =
    "!self.matches('[[:cntrl:]]') && !self.matches('^[[:space:]]') && !self.matches('[[:space:]]$')";
/// CEL: a ServiceAccount owner names a DNS-1123 subdomain.
pub const OWNER_SERVICE_ACCOUNT_RULE: &str = "self.kind != 'ServiceAccount' || self.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";
/// CEL: no key in the `keywarden.io/` prefix, which only the controller writes.
pub const NO_RESERVED_KEYS_RULE: &str =
    "self.all(k, !k.startsWith('keywarden.io/') && !k.matches('^[^/]*[.]keywarden[.]io/'))";

/// Kind of identity owning a key.
#[derive(
    schemars::JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum OwnerKind {
    User,
    ServiceAccount,
}

/// Where and how the credentials are written.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Secret name; default `<metadata.name>-access-key`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(rules::DNS_SUBDOMAIN_RULE).message(rules::SECRET_NAME_MESSAGE))]
    pub name: Option<String>,
    /// Secret type: `Opaque` (default) or `kubernetes.io/basic-auth`.
    #[serde(default, rename = "type")]
    pub type_: SecretType,
    /// Labels copied onto the Secret; `keywarden.io/` keys are the controller's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(NO_RESERVED_KEYS_RULE).message("keywarden.io/ labels are written by the controller only"))]
    pub labels: BTreeMap<String, String>,
    /// Annotations copied onto the Secret; `keywarden.io/` keys are the controller's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(NO_RESERVED_KEYS_RULE).message("keywarden.io/ annotations are written by the controller only"))]
    pub annotations: BTreeMap<String, String>,
}

/// The Kubernetes Secret type written.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum SecretType {
    #[default]
    Opaque,
    /// `username` = access ID, `password` = secret.
    #[serde(rename = "kubernetes.io/basic-auth")]
    BasicAuth,
}

impl SecretType {
    /// The value of the Secret's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretType::Opaque => "Opaque",
            SecretType::BasicAuth => "kubernetes.io/basic-auth",
        }
    }
}

/// Observed state of an access key. Never holds a secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Public ID of the current issuance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// argon2id PHC hash of the current secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// `resourceVersion` of the Secret when the controller last wrote or checked its data; a
    /// Secret at another version was changed since, and its data is checked again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_resource_version: Option<String>,
    /// Credentials of earlier issuances that stay valid until `validUntil` (rotation grace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["accessKeyId".into()]))]
    pub previous_keys: Vec<PreviousKey>,
    /// Name of the governing policy (empty when the built-in defaults apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `appliedAt` of the governing policy when `expiresAt` was last decided: only a change of
    /// that policy itself (or a rotation) may move `expiresAt` later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_applied_at: Option<DateTime<Utc>>,
    /// The scopes the controller approved against the policy and found held by the owner;
    /// what the verifier serves. `["*"]` means every permission of the owner; empty means no
    /// scope; absent means nothing approved yet (no scope either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_scopes: Option<Vec<String>>,
    /// The last review of the scopes against the owner's permissions (condition `ScopesHeld`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_review: Option<super::ScopeReview>,
    /// The CORS origins the controller approved against the policy; what the verifier serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
    /// Who created the key through `kubectl keywarden create`: the `keywarden.io/requested-by`
    /// annotation the API server checked on create, recorded once when the controller first
    /// saw the key. Absent for keys created any other way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Written by the verifier, at most once a minute per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reactivated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivation_reason: Option<DeactivationReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_rotate_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_reactivate_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Credentials of an earlier issuance, valid until `validUntil`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreviousKey {
    pub access_key_id: String,
    pub secret_hash: String,
    pub valid_until: DateTime<Utc>,
}

/// Lifecycle phase of a key.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not issued yet (policy unresolved, or waiting for the controller).
    Pending,
    /// Issued and usable.
    Active,
    /// Deactivated (see `deactivationReason`).
    Inactive,
    /// Past `expiresAt`; a rotation issues a new key.
    Expired,
    /// Not issued because the owner holds the policy's maximum of keys.
    Rejected,
}

/// Why a key is not active.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeactivationReason {
    Manual,
    Unused,
    Expired,
    PolicyLimit,
    /// The spec asks for what its policy does not allow, or its policy cannot be resolved.
    PolicyViolation,
}

impl KeyOwner {
    /// The Kubernetes username this owner is, for a key in `namespace`: the User's name, or
    /// `system:serviceaccount:<namespace>:<name>`. Limits count, and the verifier reports, this.
    pub fn username(&self, namespace: &str) -> String {
        match self.kind {
            OwnerKind::User => self.name.clone(),
            OwnerKind::ServiceAccount => format!("system:serviceaccount:{namespace}:{}", self.name),
        }
    }
}

impl AccessKeySpec {
    /// The Secret name, defaulted from the key's name.
    pub fn secret_name(&self, key_name: &str) -> String {
        self.secret
            .name
            .clone()
            .unwrap_or_else(|| format!("{key_name}-access-key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_the_kubernetes_username_it_acts_as() {
        let user = KeyOwner {
            kind: OwnerKind::User,
            name: "ci".into(),
        };
        let service_account = KeyOwner {
            kind: OwnerKind::ServiceAccount,
            name: "ci".into(),
        };
        assert_eq!(user.username("team-a"), "ci");
        assert_eq!(
            service_account.username("team-a"),
            "system:serviceaccount:team-a:ci"
        );
        assert_ne!(
            service_account.username("team-a"),
            service_account.username("team-b")
        );
    }
}
