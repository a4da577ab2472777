//! The keywarden custom resources (`keywarden.io/v1alpha1`) and their shared vocabulary.

pub mod access_key;
pub mod access_key_policy;
pub mod conditions;
pub mod scopes;

pub use access_key::{
    AccessKey, AccessKeySpec, AccessKeyStatus, DeactivationReason, KeyOwner, OwnerKind, Phase,
    PreviousKey, SecretTemplate, SecretType,
};
pub use access_key_policy::{AccessKeyPolicy, AccessKeyPolicySpec, AccessKeyPolicyStatus};
pub use scopes::{ScopeReview, ALL_SCOPES, SCOPES_GROUP};

/// API group of every keywarden resource.
pub const GROUP: &str = "keywarden.io";
/// Field manager used for every server-side apply keywarden makes.
pub const FIELD_MANAGER: &str = "keywarden";
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
