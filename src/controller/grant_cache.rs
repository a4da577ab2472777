//! What the controller keeps of the owner-access Roles and RoleBindings keywarden manages: per
//! object its uid, its controlling owner's uid and a digest of what it grants, not the object.

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::owner_access::{labelled, normal_rules, normal_subjects};
use super::watched_records::WatchedRecords;

/// The records of keywarden's owner-access Roles or of its RoleBindings.
pub type GrantCache = WatchedRecords<GrantRecord>;

/// Digest of what a Role or RoleBinding grants, with keywarden's label (see [`role_digest`]).
// why: 128 bits of SHA-256; forging an edited grant with the digest of the desired one would
// need a second preimage.
pub type GrantDigest = [u8; 16];

/// One owner-access Role or RoleBinding as the reconciler needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    /// The object's uid: deletes are conditional on it.
    uid: Option<Uid>,
    /// The uid of the owner reference with `controller: true`, if any.
    controller: Option<Uid>,
    pub digest: GrantDigest,
}

impl GrantRecord {
    /// Whether the object is controlled by the key with `uid`.
    pub fn controlled_by(&self, uid: &str) -> bool {
        self.controller.as_ref().is_some_and(|c| c.is(uid))
    }

    /// The uid to make a delete conditional on.
    pub fn uid(&self) -> Option<String> {
        self.uid.as_ref().map(Uid::to_string)
    }
}

/// A uid as a record keeps it: a UUID in its 16 bytes (what API servers assign), any other
/// text as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Uid {
    Uuid(Uuid),
    Other(Box<str>),
}

impl Uid {
    fn of(text: &str) -> Self {
        match Uuid::try_parse(text) {
            // why: only the canonical form, so that the text reads back unchanged.
            Ok(uuid) if uuid.hyphenated().to_string() == text => Self::Uuid(uuid),
            _ => Self::Other(text.into()),
        }
    }

    fn is(&self, text: &str) -> bool {
        *self == Self::of(text)
    }
}

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uuid(uuid) => uuid.hyphenated().fmt(f),
            Self::Other(text) => f.write_str(text),
        }
    }
}

fn record_of(meta: &ObjectMeta, digest: GrantDigest) -> GrantRecord {
    GrantRecord {
        uid: meta.uid.as_deref().map(Uid::of),
        // why: the API server accepts at most one owner reference with `controller: true`.
        controller: meta
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| Uid::of(&owner.uid)),
        digest,
    }
}

/// The record of an owner-access Role.
pub fn role_record(role: &Role) -> GrantRecord {
    record_of(&role.metadata, role_digest(role))
}

/// The record of an owner-access RoleBinding.
pub fn binding_record(binding: &RoleBinding) -> GrantRecord {
    record_of(&binding.metadata, binding_digest(binding))
}

fn digest_of(value: &serde_json::Value) -> GrantDigest {
    let full = Sha256::digest(value.to_string().as_bytes());
    let mut digest = GrantDigest::default();
    digest.copy_from_slice(&full[..16]);
    digest
}

/// Digest of whether a Role carries keywarden's label and of its rules, absent and empty lists
/// made alike: two Roles have the same digest when `owner_access::role_in_place` holds.
pub fn role_digest(role: &Role) -> GrantDigest {
    digest_of(&serde_json::json!([
        "Role",
        labelled(&role.metadata),
        normal_rules(role)
    ]))
}

/// Digest of whether a RoleBinding carries keywarden's label, its `roleRef` and its subjects
/// (defaulting undone): equal digests mean `owner_access::binding_change` is `None`.
pub fn binding_digest(binding: &RoleBinding) -> GrantDigest {
    let role_ref = &binding.role_ref;
    digest_of(&serde_json::json!([
        "RoleBinding",
        labelled(&binding.metadata),
        [&role_ref.api_group, &role_ref.kind, &role_ref.name],
        normal_subjects(binding)
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::owner_access::{desired_binding, desired_role};
    use crate::controller::tests::key;

    fn role() -> Role {
        desired_role(&key(), "ci-access-key").unwrap()
    }

    #[test]
    fn a_role_as_the_api_server_returns_it_has_the_desired_digest() {
        let mut listed = role();
        listed.metadata.uid = Some("role-uid".into());
        listed.metadata.resource_version = Some("7".into());
        listed.rules.as_mut().unwrap()[0].non_resource_urls = Some(vec![]);
        assert_eq!(role_digest(&listed), role_digest(&role()));
    }

    #[test]
    fn an_edited_or_unlabelled_role_has_another_digest() {
        let mut wider = role();
        wider.rules.as_mut().unwrap()[0].resource_names = None;
        let mut unlabelled = role();
        unlabelled.metadata.labels = None;
        for edited in [wider, unlabelled] {
            assert_ne!(role_digest(&edited), role_digest(&role()));
        }
    }

    #[test]
    fn an_edited_binding_has_another_digest() {
        let desired = desired_binding(&key()).unwrap();
        let mut other_subject = desired.clone();
        other_subject.subjects.as_mut().unwrap()[0].name = "mallory".into();
        let mut more_subjects = desired.clone();
        let extra = more_subjects.subjects.as_ref().unwrap()[0].clone();
        more_subjects.subjects.as_mut().unwrap().push(extra);
        let mut other_role = desired.clone();
        other_role.role_ref.name = "admin".into();
        let mut cluster_role = desired.clone();
        cluster_role.role_ref.kind = "ClusterRole".into();
        for edited in [other_subject, more_subjects, other_role, cluster_role] {
            assert_ne!(binding_digest(&edited), binding_digest(&desired));
        }
        let mut listed = desired.clone();
        listed.metadata.resource_version = Some("9".into());
        assert_eq!(binding_digest(&listed), binding_digest(&desired));
    }

    #[test]
    fn a_record_keeps_the_uid_and_the_controlling_owner() {
        for (uid, owner, other) in [
            ("role-uid", "uid-1", "uid-2"),
            (
                "0b6f9d3c-2f1e-4d7a-9c55-3e1b8f0a6d21",
                "5a4f2c1e-8b3d-4e6f-a7c9-0d1e2f3a4b5c",
                "5A4F2C1E-8B3D-4E6F-A7C9-0D1E2F3A4B5C",
            ),
        ] {
            let mut listed = role();
            listed.metadata.uid = Some(uid.into());
            listed.metadata.owner_references.as_mut().unwrap()[0].uid = owner.into();
            let record = role_record(&listed);
            assert_eq!(record.uid().as_deref(), Some(uid));
            assert!(record.controlled_by(owner), "{owner}");
            assert!(!record.controlled_by(other), "{other}");
            assert!(!record.controlled_by(""));
            assert_eq!(record.digest, role_digest(&role()));
        }
    }
}
