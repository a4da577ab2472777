//! What the controller keeps of the owner-access Roles and RoleBindings keywarden manages: per
//! object its uid, its controlling owner's uid and a digest of what it grants, not the object.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use super::owner_access::{labelled, normal_rules, normal_subjects};

use crate::sync::{lock, read, write};

/// Digest of what a Role or RoleBinding grants, with keywarden's label (see [`role_digest`]).
// why: 128 bits of SHA-256; forging an edited grant with the digest of the desired one would
// need a second preimage.
pub type GrantDigest = [u8; 16];

/// One owner-access Role or RoleBinding as the reconciler needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    /// The object's uid: deletes are conditional on it.
    pub uid: Option<Box<str>>,
    /// The uid of the owner reference with `controller: true`, if any.
    pub controller: Option<Box<str>>,
    pub digest: GrantDigest,
}

impl GrantRecord {
    /// Whether the object is controlled by the key with `uid`.
    pub fn controlled_by(&self, uid: &str) -> bool {
        self.controller.as_deref() == Some(uid)
    }

    /// The uid to make a delete conditional on.
    pub fn uid(&self) -> Option<String> {
        self.uid.as_deref().map(str::to_owned)
    }
}

fn record_of(meta: &ObjectMeta, digest: GrantDigest) -> GrantRecord {
    GrantRecord {
        uid: meta.uid.as_deref().map(Box::from),
        // why: the API server accepts at most one owner reference with `controller: true`.
        controller: meta
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| Box::from(owner.uid.as_str())),
        digest,
    }
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

/// The records of one kind of grant, kept from a watch; keyed by `namespace/name`.
#[derive(Default)]
pub struct GrantCache {
    records: RwLock<HashMap<Box<str>, GrantRecord>>,
    /// Records of a relist in progress, swapped in when it is complete.
    relisting: Mutex<Option<HashMap<Box<str>, GrantRecord>>>,
}

fn cache_key(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}/{name}").into_boxed_str()
}

impl GrantCache {
    /// The record of the object `namespace/name`, if the watch has seen it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<GrantRecord> {
        read(&self.records)
            .get(&cache_key(namespace, name))
            .cloned()
    }

    /// Takes in one watch event, as a reflector would (a relist replaces every record).
    pub fn apply<K: ResourceExt>(
        &self,
        event: &watcher::Event<K>,
        digest: impl Fn(&K) -> GrantDigest,
    ) {
        let entry = |object: &K| {
            let key = cache_key(&object.namespace().unwrap_or_default(), &object.name_any());
            (key, record_of(object.meta(), digest(object)))
        };
        match event {
            watcher::Event::Apply(object) => {
                let (key, record) = entry(object);
                write(&self.records).insert(key, record);
            }
            watcher::Event::Delete(object) => {
                let (key, _) = entry(object);
                write(&self.records).remove(&key);
            }
            watcher::Event::Init => *lock(&self.relisting) = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                let (key, record) = entry(object);
                if let Some(relisting) = lock(&self.relisting).as_mut() {
                    relisting.insert(key, record);
                }
            }
            watcher::Event::InitDone => {
                if let Some(mut listed) = lock(&self.relisting).take() {
                    listed.shrink_to_fit();
                    *write(&self.records) = listed;
                }
            }
        }
    }
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
        let cache = GrantCache::default();
        let mut listed = role();
        listed.metadata.uid = Some("role-uid".into());
        cache.apply(&watcher::Event::Apply(listed.clone()), role_digest);
        let record = cache.get("team-a", "keywarden-owner-ci").expect("recorded");
        assert_eq!(record.uid().as_deref(), Some("role-uid"));
        assert!(record.controlled_by("uid-1") && !record.controlled_by("uid-2"));
        assert_eq!(record.digest, role_digest(&role()));
        cache.apply(&watcher::Event::Delete(listed), role_digest);
        assert_eq!(cache.get("team-a", "keywarden-owner-ci"), None);
    }

    #[test]
    fn a_relist_replaces_every_record_once_complete() {
        let cache = GrantCache::default();
        let gone = role();
        let mut kept = role();
        kept.metadata.name = Some("keywarden-owner-other".into());
        cache.apply(&watcher::Event::Apply(gone), role_digest);
        cache.apply(&watcher::Event::Init, role_digest);
        cache.apply(&watcher::Event::InitApply(kept), role_digest);
        assert!(
            cache.get("team-a", "keywarden-owner-ci").is_some(),
            "records stay until the relist is complete"
        );
        cache.apply(&watcher::Event::<Role>::InitDone, role_digest);
        assert_eq!(cache.get("team-a", "keywarden-owner-ci"), None);
        assert!(cache.get("team-a", "keywarden-owner-other").is_some());
    }
}
