//! The AccessKey as the controller's cache keeps it: the metadata reconcile reads, the spec, and
//! a compact status without the conditions' messages, plus a digest of the whole status.
//!
//! Reconcile stays written against `AccessKey`: it expands a [`CachedKey`] at its start and
//! decides "did the status change" by the digest of the desired status against
//! [`CachedKey::status_digest`], taken when the watch event arrived. The other users of the
//! cache (limits, metrics, the policy mapper, deletions, RBAC retriggers) read accessors.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::api::conditions::{reasons, types};
use crate::api::{
    AccessKey, AccessKeySpec, AccessKeyStatus, DeactivationReason, Phase, PreviousKey, ScopeReview,
};

/// 128 bits of SHA-256 of a status in canonical form (see [`status_digest`]).
// why: deciding a write on it must not be forgeable: a status edited to digest like the
// desired one would need a second preimage.
pub type StatusDigest = [u8; 16];

/// What the users of the key cache read of a key, cached or whole.
pub trait KeyView: Resource<DynamicType = ()> {
    fn key_spec(&self) -> &AccessKeySpec;
}

impl KeyView for AccessKey {
    fn key_spec(&self) -> &AccessKeySpec {
        &self.spec
    }
}

/// An AccessKey as cached for the controller.
#[derive(Clone, Debug)]
pub struct CachedKey {
    metadata: ObjectMeta,
    pub spec: AccessKeySpec,
    status: Option<CachedStatus>,
    digest: StatusDigest,
}

impl KeyView for CachedKey {
    fn key_spec(&self) -> &AccessKeySpec {
        &self.spec
    }
}

impl Resource for CachedKey {
    type DynamicType = ();
    type Scope = <AccessKey as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        AccessKey::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        AccessKey::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        AccessKey::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        AccessKey::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        AccessKey::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Reads an AccessKey and compacts it, so that a watch of `CachedKey`s never holds more.
impl<'de> Deserialize<'de> for CachedKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        AccessKey::deserialize(deserializer).map(Self::from)
    }
}

impl From<AccessKey> for CachedKey {
    fn from(key: AccessKey) -> Self {
        let digest = status_digest(key.status.as_ref().unwrap_or(&AccessKeyStatus::default()));
        let owner = key
            .spec
            .owner
            .username(&key.namespace().unwrap_or_default());
        let status = key.status.map(|s| CachedStatus::of(s, &owner));
        let mut spec = key.spec;
        shrink_spec(&mut spec);
        Self {
            metadata: keep_what_key_reconciles_read(key.metadata),
            spec,
            status,
            digest,
        }
    }
}

impl CachedKey {
    /// The key as reconcile reads it: everything cached, conditions' messages empty unless
    /// [`message_kept`] keeps them.
    pub fn expand(&self) -> AccessKey {
        let owner = || self.owner_identity();
        AccessKey {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            status: self.status.as_ref().map(|s| s.expand(owner)),
        }
    }

    /// Digest of the status when the watch event arrived (of the default status when none).
    pub fn status_digest(&self) -> StatusDigest {
        self.digest
    }

    pub fn phase(&self) -> Option<Phase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    /// The access ID of the current issuance, if the status records one.
    pub fn access_key_id(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.access_key_id.as_deref())
    }

    /// Whether the status records an issuance.
    pub fn is_issued(&self) -> bool {
        self.access_key_id().is_some()
    }

    /// Owner identity (see [`super::context::key_owner_identity`]).
    pub fn owner_identity(&self) -> String {
        super::context::key_owner_identity(self)
    }
}

/// Reduces an AccessKey's metadata to what the reconcilers read: name, namespace, uid,
/// resourceVersion, generation, creation and deletion timestamps and keywarden's own
/// annotations (who requested a change, `api::requested_by`).
// why: managedFields are most of an object's size, and `kubectl apply` copies the whole spec
// into an annotation; labels, owner references and finalizers are not read either. (`None`,
// not emptied collections that would keep their allocations.)
fn keep_what_key_reconciles_read(meta: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        generation: meta.generation,
        creation_timestamp: meta.creation_timestamp,
        deletion_timestamp: meta.deletion_timestamp,
        annotations: super::runner::keywarden_annotations(meta.annotations),
        ..ObjectMeta::default()
    }
}

/// Drops the spare capacity a deserialized spec's lists keep.
fn shrink_spec(spec: &mut AccessKeySpec) {
    for list in [
        &mut spec.scopes,
        &mut spec.owner_groups,
        &mut spec.allowed_origins,
    ] {
        list.shrink_to_fit();
    }
}

/// The digest reconcile compares: of the status with its conditions in a canonical order, so
/// that list order alone never causes a write. Equal digests mean equal statuses (`Debug`
/// prints every field of these types, strings quoted and escaped).
pub fn status_digest(status: &AccessKeyStatus) -> StatusDigest {
    let mut conditions: Vec<&Condition> = status.conditions.iter().collect();
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    let rest = AccessKeyStatus {
        conditions: Vec::new(),
        ..status.clone()
    };
    let mut hasher = HashWriter(Sha256::new());
    // why: writing into a hasher cannot fail.
    let _ = write!(hasher, "{rest:?}{conditions:?}");
    let full = hasher.0.finalize();
    let mut digest = StatusDigest::default();
    digest.copy_from_slice(&full[..16]);
    digest
}

struct HashWriter(Sha256);

impl std::fmt::Write for HashWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

/// Whether a condition's message is kept in the cache: the messages a reconcile reads back
/// from the previous status. `SecretPresent` and `OwnerCanRead` when not `True` (the audit
/// events compare them: `audit::transitions`, `owner_access::transitions`, and
/// `secret_data` reuses a `SecretModified` verdict's), and `ScopesHeld` (carried over as it
/// stands while the policy does not resolve; its usual messages are rebuilt from the owner).
pub fn message_kept(type_: &str, status: &str) -> bool {
    match type_ {
        types::SECRET_PRESENT | types::OWNER_CAN_READ => status != "True",
        types::SCOPES_HELD => true,
        _ => false,
    }
}

/// Condition types known by index.
const TYPES: &[&str] = &[
    types::READY,
    types::ISSUED,
    types::LIMIT_EXCEEDED,
    types::POLICY_RESOLVED,
    types::SECRET_PRESENT,
    types::OWNER_CAN_READ,
    types::SCOPES_HELD,
    types::ACCEPTED,
    types::RECONCILING,
    types::STALLED,
];

/// Condition statuses known by index.
const STATUSES: &[&str] = &["True", "False", "Unknown"];

/// Condition reasons known by index.
const REASONS: &[&str] = &[
    reasons::ISSUED,
    reasons::ROTATED,
    reasons::ACTIVATED,
    reasons::DEACTIVATED,
    reasons::REACTIVATED,
    reasons::EXPIRED,
    reasons::UNUSED,
    reasons::LIMIT_EXCEEDED,
    reasons::WITHIN_LIMIT,
    reasons::GRACE_PERIOD_ENDED,
    reasons::DELETED,
    reasons::POLICY_RESOLVED,
    reasons::POLICY_NOT_FOUND,
    reasons::NAMESPACE_NOT_SELECTED,
    reasons::SCOPE_NOT_ALLOWED,
    reasons::ORIGINS_REQUIRED,
    reasons::SECRET_PRESENT,
    reasons::SECRET_MISSING,
    reasons::SECRET_MODIFIED,
    reasons::SECRET_CONFLICT,
    reasons::PENDING,
    reasons::INACTIVE,
    reasons::ACCEPTED,
    reasons::INVALID_SPEC,
    reasons::POLICY_VIOLATION,
    reasons::OWNER_ACCESS_GRANTED,
    reasons::OWNER_ACCESS_DISABLED,
    reasons::OWNER_ACCESS_CONFLICT,
    reasons::NO_SECRET_OF_ITS_OWN,
    reasons::POLICY_UNRESOLVED,
    reasons::ISSUING,
    reasons::ROTATING,
    reasons::RECONCILED,
    reasons::SCOPES_HELD,
    reasons::SCOPES_NOT_HELD,
];

/// Index of a name not in its table: the name is in [`ConditionExtra`].
const OTHER: u8 = u8::MAX;

fn index_in(table: &[&str], name: &str) -> u8 {
    table
        .iter()
        .position(|known| *known == name)
        .and_then(|i| u8::try_from(i).ok())
        .filter(|i| *i != OTHER)
        .unwrap_or(OTHER)
}

/// A name by its index, or the stored one.
fn name_of(table: &[&str], index: u8, other: Option<&str>) -> String {
    match table.get(usize::from(index)) {
        Some(known) => (*known).to_owned(),
        None => other.unwrap_or_default().to_owned(),
    }
}

/// A status without its conditions' messages; strings boxed without spare capacity.
#[derive(Clone, Debug)]
struct CachedStatus {
    phase: Option<Phase>,
    deactivation_reason: Option<DeactivationReason>,
    access_key_id: Option<Box<str>>,
    secret_name: Option<Box<str>>,
    secret_hash: Option<Box<str>>,
    secret_resource_version: Option<Box<str>>,
    previous_keys: Box<[PreviousKey]>,
    policy: Option<Box<str>>,
    policy_applied_at: Option<DateTime<Utc>>,
    granted_scopes: Option<Box<[Box<str>]>>,
    scope_review: Option<Box<ScopeReview>>,
    granted_origins: Option<Box<[Box<str>]>>,
    issued_at: Option<DateTime<Utc>>,
    created_by: Option<Box<str>>,
    rotated_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    reactivated_at: Option<DateTime<Utc>>,
    deactivated_at: Option<DateTime<Utc>>,
    observed_generation: Option<i64>,
    observed_rotate_generation: Option<i64>,
    observed_reactivate_generation: Option<i64>,
    conditions: Box<[CachedCondition]>,
}

/// A condition by the indexes of its type, status and reason, and how its message is kept.
#[derive(Clone, Debug)]
struct CachedCondition {
    type_: u8,
    status: u8,
    reason: u8,
    message: Message,
    observed_generation: Option<i64>,
    last_transition_time: Time,
    /// Names not among the known ones, and a kept message; `None` for the usual conditions.
    extra: Option<Box<ConditionExtra>>,
}

/// What is kept of a condition's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Message {
    /// Not kept: expands to the empty string.
    Dropped,
    /// In [`ConditionExtra::message`].
    Kept,
    /// [`super::scopes_held::all_held_message`] for the key's owner, without a review.
    AllHeldUnreviewed,
    /// [`super::scopes_held::all_held_message`] for the key's owner, after a review.
    AllHeldReviewed,
}

#[derive(Clone, Debug, Default)]
struct ConditionExtra {
    type_: Option<Box<str>>,
    status: Option<Box<str>>,
    reason: Option<Box<str>>,
    message: Option<Box<str>>,
}

fn boxed(s: Option<String>) -> Option<Box<str>> {
    s.map(String::into_boxed_str)
}

fn boxed_list(list: Option<Vec<String>>) -> Option<Box<[Box<str>]>> {
    list.map(|l| l.into_iter().map(String::into_boxed_str).collect())
}

fn unboxed(s: &Option<Box<str>>) -> Option<String> {
    s.as_deref().map(str::to_owned)
}

fn unboxed_list(list: &Option<Box<[Box<str>]>>) -> Option<Vec<String>> {
    list.as_ref()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
}

impl CachedStatus {
    fn of(status: AccessKeyStatus, owner: &str) -> Self {
        let scope_review = status.scope_review.map(|mut review| {
            review.fingerprint.shrink_to_fit();
            review.not_held.shrink_to_fit();
            Box::new(review)
        });
        Self {
            phase: status.phase,
            deactivation_reason: status.deactivation_reason,
            access_key_id: boxed(status.access_key_id),
            secret_name: boxed(status.secret_name),
            secret_hash: boxed(status.secret_hash),
            secret_resource_version: boxed(status.secret_resource_version),
            previous_keys: status.previous_keys.into_boxed_slice(),
            policy: boxed(status.policy),
            policy_applied_at: status.policy_applied_at,
            granted_scopes: boxed_list(status.granted_scopes),
            scope_review,
            granted_origins: boxed_list(status.granted_origins),
            issued_at: status.issued_at,
            created_by: boxed(status.created_by),
            rotated_at: status.rotated_at,
            expires_at: status.expires_at,
            last_used_at: status.last_used_at,
            reactivated_at: status.reactivated_at,
            deactivated_at: status.deactivated_at,
            observed_generation: status.observed_generation,
            observed_rotate_generation: status.observed_rotate_generation,
            observed_reactivate_generation: status.observed_reactivate_generation,
            conditions: status
                .conditions
                .into_iter()
                .map(|c| CachedCondition::of(c, owner))
                .collect(),
        }
    }

    fn expand(&self, owner: impl Fn() -> String) -> AccessKeyStatus {
        AccessKeyStatus {
            phase: self.phase,
            deactivation_reason: self.deactivation_reason,
            access_key_id: unboxed(&self.access_key_id),
            secret_name: unboxed(&self.secret_name),
            secret_hash: unboxed(&self.secret_hash),
            secret_resource_version: unboxed(&self.secret_resource_version),
            previous_keys: self.previous_keys.to_vec(),
            policy: unboxed(&self.policy),
            policy_applied_at: self.policy_applied_at,
            granted_scopes: unboxed_list(&self.granted_scopes),
            scope_review: self.scope_review.as_deref().cloned(),
            granted_origins: unboxed_list(&self.granted_origins),
            issued_at: self.issued_at,
            created_by: unboxed(&self.created_by),
            rotated_at: self.rotated_at,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            reactivated_at: self.reactivated_at,
            deactivated_at: self.deactivated_at,
            observed_generation: self.observed_generation,
            observed_rotate_generation: self.observed_rotate_generation,
            observed_reactivate_generation: self.observed_reactivate_generation,
            conditions: self.conditions.iter().map(|c| c.expand(&owner)).collect(),
        }
    }
}

impl CachedCondition {
    fn of(condition: Condition, owner: &str) -> Self {
        let mut extra = ConditionExtra::default();
        let indexed = |table: &[&str], name: String, slot: &mut Option<Box<str>>| {
            let index = index_in(table, &name);
            if index == OTHER {
                *slot = Some(name.into_boxed_str());
            }
            index
        };
        let type_ = indexed(TYPES, condition.type_.clone(), &mut extra.type_);
        let status = indexed(STATUSES, condition.status.clone(), &mut extra.status);
        let reason = indexed(REASONS, condition.reason, &mut extra.reason);
        let message = if !message_kept(&condition.type_, &condition.status) {
            Message::Dropped
        } else if condition.type_ == types::SCOPES_HELD
            && condition.message == super::scopes_held::all_held_message(owner, false)
        {
            Message::AllHeldUnreviewed
        } else if condition.type_ == types::SCOPES_HELD
            && condition.message == super::scopes_held::all_held_message(owner, true)
        {
            Message::AllHeldReviewed
        } else {
            extra.message = Some(condition.message.into_boxed_str());
            Message::Kept
        };
        let has_extra = extra.type_.is_some()
            || extra.status.is_some()
            || extra.reason.is_some()
            || extra.message.is_some();
        Self {
            type_,
            status,
            reason,
            message,
            observed_generation: condition.observed_generation,
            last_transition_time: condition.last_transition_time,
            extra: has_extra.then(|| Box::new(extra)),
        }
    }

    fn expand(&self, owner: &impl Fn() -> String) -> Condition {
        let extra = self.extra.as_deref();
        let other = |field: fn(&ConditionExtra) -> &Option<Box<str>>| {
            extra.and_then(|e| field(e).as_deref())
        };
        Condition {
            type_: name_of(TYPES, self.type_, other(|e| &e.type_)),
            status: name_of(STATUSES, self.status, other(|e| &e.status)),
            reason: name_of(REASONS, self.reason, other(|e| &e.reason)),
            message: match self.message {
                Message::Dropped => String::new(),
                Message::Kept => other(|e| &e.message).unwrap_or_default().to_owned(),
                Message::AllHeldUnreviewed => super::scopes_held::all_held_message(&owner(), false),
                Message::AllHeldReviewed => super::scopes_held::all_held_message(&owner(), true),
            },
            observed_generation: self.observed_generation,
            last_transition_time: self.last_transition_time.clone(),
        }
    }
}

#[cfg(test)]
#[path = "cached_key_tests.rs"]
mod tests;
