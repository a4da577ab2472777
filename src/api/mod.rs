//! The keywarden custom resources (`keywarden.io/v1alpha1`) and their shared vocabulary.

pub mod access_key;
pub mod access_key_policy;
pub mod conditions;
pub mod rollout;
pub mod rules;
pub mod scopes;

pub use access_key::{
    AccessKey, AccessKeySpec, AccessKeyStatus, DeactivationReason, KeyOwner, OwnerKind, Phase,
    PreviousKey, SecretTemplate, SecretType,
};
pub use access_key_policy::{AccessKeyPolicy, AccessKeyPolicySpec, AccessKeyPolicyStatus};
pub use rollout::{Rollout, RolloutTarget, WorkloadKind};
pub use scopes::{ScopeReview, ALL_SCOPES, SCOPES_GROUP};

/// API group of every keywarden resource.
pub const GROUP: &str = "keywarden.io";
/// Field manager used for every server-side apply keywarden makes.
pub const FIELD_MANAGER: &str = "keywarden";
/// AccessKey annotation: the username of who asked for the latest change through `kubectl
/// keywarden`; the admission policy accepts only the requester's own name.
pub const REQUESTED_BY_ANNOTATION: &str = "keywarden.io/requested-by";

/// Who asked for the latest change of `key` through `kubectl keywarden`, as the API server
/// checked it; `None` for changes made any other way.
pub fn requested_by(key: &AccessKey) -> Option<&str> {
    key.metadata
        .annotations
        .as_ref()?
        .get(REQUESTED_BY_ANNOTATION)
        .map(String::as_str)
        .filter(|name| !name.is_empty())
}
/// AccessKey annotation next to [`REQUESTED_BY_ANNOTATION`]: the `metadata.generation` the
/// requested change produced, so a name left in place by a later writer signs nothing of theirs.
pub const REQUESTED_GENERATION_ANNOTATION: &str = "keywarden.io/requested-generation";

/// Who asked, through `kubectl keywarden`, for the change that produced `key`'s current
/// generation; `None` when a later change (a GitOps sync, `kubectl edit`) left an earlier
/// requester's mark in place, or for changes made any other way.
pub fn change_requested_by(key: &AccessKey) -> Option<&str> {
    let marked = key
        .metadata
        .annotations
        .as_ref()?
        .get(REQUESTED_GENERATION_ANNOTATION)?;
    (marked.parse::<i64>().ok()? == key.metadata.generation.unwrap_or(1))
        .then(|| requested_by(key))
        .flatten()
}
/// Annotation that marks the cluster default `AccessKeyPolicy`.
pub const DEFAULT_POLICY_ANNOTATION: &str = "keywarden.io/default-policy";
/// Label put on every Secret keywarden writes: the name of its AccessKey.
pub const ACCESS_KEY_LABEL: &str = "keywarden.io/access-key";
/// Standard label marking objects keywarden manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "keywarden";
/// Secret annotation: access ID of the issuance the Secret holds.
pub const ACCESS_KEY_ID_ANNOTATION: &str = "keywarden.io/access-key-id";
/// Secret annotation: the `spec.rotateGeneration` the issuance answered.
pub const ISSUANCE_GENERATION_ANNOTATION: &str = "keywarden.io/rotate-generation";
/// Secret annotation: when the issuance happened (RFC 3339).
pub const ISSUED_AT_ANNOTATION: &str = "keywarden.io/issued-at";
/// Secret annotation: the previous issuance's access ID, kept during the rotation grace period.
pub const PREVIOUS_KEY_ID_ANNOTATION: &str = "keywarden.io/previous-access-key-id";
