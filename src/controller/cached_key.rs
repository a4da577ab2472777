//! The AccessKey as the controller's cache keeps it: the metadata reconcile reads, and the spec
//! and the status without most conditions' messages in one packed allocation (see `packed`),
//! plus a digest of the whole status.
//!
//! Reconcile stays written against `AccessKey`: it expands a [`CachedKey`] at its start and
//! decides "did the status change" by the digest of the desired status against
//! [`CachedKey::status_digest`], taken when the watch event arrived. The other users of the
//! cache (limits, metrics, the policy mapper, deletions, RBAC retriggers) read the owner, the
//! phase and whether the key is issued without unpacking.

use std::borrow::Cow;
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::Resource;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use super::packed;
use crate::api::conditions::{reasons, types};
use crate::api::{AccessKey, AccessKeySpec, AccessKeyStatus, KeyOwner, Phase};

/// 128 bits of SHA-256 of a status in canonical form (see [`status_digest`]).
// why: deciding a write on it must not be forgeable: a status edited to digest like the
// desired one would need a second preimage.
pub type StatusDigest = [u8; 16];

/// What the users of the key cache read of a key, cached or whole.
pub trait KeyView: Resource<DynamicType = ()> {
    fn owner(&self) -> &KeyOwner;
    /// The groups the owner recorded (`spec.ownerGroups`).
    fn owner_groups(&self) -> impl Iterator<Item = &str>;
}

impl KeyView for AccessKey {
    fn owner(&self) -> &KeyOwner {
        &self.spec.owner
    }
    fn owner_groups(&self) -> impl Iterator<Item = &str> {
        self.spec.owner_groups.iter().map(String::as_str)
    }
}

/// An AccessKey as cached for the controller.
#[derive(Clone, Debug)]
pub struct CachedKey {
    metadata: ObjectMeta,
    /// The spec's owner and recorded groups, read for every key by the owner index and RBAC
    /// changes without unpacking.
    owner: KeyOwner,
    owner_groups: Box<[Box<str>]>,
    /// `spec.policyName`, read for every key when a policy changes.
    policy_name: Option<Box<str>>,
    phase: Option<Phase>,
    issued: bool,
    digest: StatusDigest,
    /// The spec and the status without the dropped messages (see [`Cached`]), packed.
    packed: Box<[u8]>,
}

/// What a [`CachedKey`] packs: the spec, and the status with its conditions apart.
#[derive(Serialize, Deserialize)]
struct Cached<Spec, Status, Conditions> {
    spec: Spec,
    status: Option<Status>,
    conditions: Conditions,
}

/// A condition as packed: type, status, reason, message, observedGeneration and
/// lastTransitionTime, as a tuple so that its fields' names are not packed with each.
#[derive(Serialize, Deserialize)]
struct CachedCondition(String, String, String, Message, Option<i64>, Time);

impl CachedCondition {
    fn of(condition: Condition, owner: &str) -> Self {
        let message = cached_message(&condition, owner);
        Self(
            condition.type_,
            condition.status,
            condition.reason,
            message,
            condition.observed_generation,
            condition.last_transition_time,
        )
    }

    fn expand(self, owner: impl Fn() -> String) -> Condition {
        let Self(type_, status, reason, message, observed_generation, last_transition_time) = self;
        let message = match message {
            Message::Dropped => String::new(),
            Message::Kept(text) => text,
            Message::AllHeldUnreviewed => super::scopes_held::all_held_message(&owner(), false),
            Message::AllHeldReviewed => super::scopes_held::all_held_message(&owner(), true),
        };
        Condition {
            type_,
            status,
            reason,
            message,
            observed_generation,
            last_transition_time,
        }
    }
}

/// What became of a condition's message in the cache.
#[derive(Serialize, Deserialize)]
enum Message {
    /// Not kept: read back empty (see [`message_kept`]).
    Dropped,
    Kept(String),
    /// `ScopesHeld`'s usual texts, rebuilt from the owner when read back.
    AllHeldUnreviewed,
    AllHeldReviewed,
}

impl KeyView for CachedKey {
    fn owner(&self) -> &KeyOwner {
        &self.owner
    }
    fn owner_groups(&self) -> impl Iterator<Item = &str> {
        self.owner_groups.iter().map(|g| &**g)
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
        let key = AccessKey::deserialize(deserializer)?;
        Self::try_from(key).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<AccessKey> for CachedKey {
    type Error = packed::Error;

    fn try_from(key: AccessKey) -> Result<Self, packed::Error> {
        let AccessKey {
            metadata,
            spec,
            status,
        } = key;
        let digest = status_digest(status.as_ref().unwrap_or(&AccessKeyStatus::default()));
        let owner = spec
            .owner
            .username(metadata.namespace.as_deref().unwrap_or_default());
        let mut status = status;
        let conditions: Vec<CachedCondition> = status
            .as_mut()
            .map(|s| std::mem::take(&mut s.conditions))
            .unwrap_or_default()
            .into_iter()
            .map(|condition| CachedCondition::of(condition, &owner))
            .collect();
        let packed = packed::to_bytes(
            &Cached {
                spec: &spec,
                status: status.as_ref(),
                conditions: &conditions,
            },
            KNOWN,
        )?;
        Ok(Self {
            metadata: keep_what_key_reconciles_read(metadata),
            owner: spec.owner,
            owner_groups: spec.owner_groups.into_iter().map(Box::from).collect(),
            policy_name: spec.policy_name.map(Box::from),
            phase: status.as_ref().and_then(|s| s.phase),
            issued: status.as_ref().is_some_and(|s| s.access_key_id.is_some()),
            digest,
            packed,
        })
    }
}

/// What the cache keeps of `condition`'s message.
fn cached_message(condition: &Condition, owner: &str) -> Message {
    let all_held = |reviewed| {
        condition.type_ == types::SCOPES_HELD
            && condition.message == super::scopes_held::all_held_message(owner, reviewed)
    };
    if !message_kept(&condition.type_, &condition.status) {
        Message::Dropped
    } else if all_held(false) {
        Message::AllHeldUnreviewed
    } else if all_held(true) {
        Message::AllHeldReviewed
    } else {
        Message::Kept(condition.message.clone())
    }
}

impl CachedKey {
    /// The key as reconcile reads it: everything cached, conditions' messages empty unless
    /// [`message_kept`] keeps them.
    pub fn expand(&self) -> Result<AccessKey, packed::Error> {
        let Cached::<AccessKeySpec, AccessKeyStatus, Vec<CachedCondition>> {
            spec,
            mut status,
            conditions,
        } = packed::from_bytes(&self.packed, KNOWN)?;
        if let Some(status) = &mut status {
            let owner = || self.owner_identity();
            status.conditions = conditions.into_iter().map(|c| c.expand(owner)).collect();
        }
        Ok(AccessKey {
            metadata: self.metadata.clone(),
            spec,
            status,
        })
    }

    /// `spec.policyName`.
    pub fn policy_name(&self) -> Option<&str> {
        self.policy_name.as_deref()
    }

    /// Digest of the status when the watch event arrived (of the default status when none).
    pub fn status_digest(&self) -> StatusDigest {
        self.digest
    }

    pub fn phase(&self) -> Option<Phase> {
        self.phase
    }

    /// The access ID of the current issuance, if the status records one.
    pub fn access_key_id(&self) -> Option<String> {
        self.expand().ok()?.status?.access_key_id
    }

    /// Whether the status records an issuance.
    pub fn is_issued(&self) -> bool {
        self.issued
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

/// Strings packed as an index: condition types, statuses and reasons.
// why: a reason and a type may share a text; a string is packed as its first index.
const KNOWN: &[&str] = &[
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
    "True",
    "False",
    "Unknown",
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

#[cfg(test)]
#[path = "cached_key_tests.rs"]
mod tests;
