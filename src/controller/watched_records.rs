//! Records of one kind of object, kept from a watch as a reflector keeps objects, keyed by
//! namespace and name: what the controller reads of keywarden's Secrets, Roles and
//! RoleBindings, instead of the objects.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use kube::runtime::watcher;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::sync::{lock, read, write};

/// 128 bits of SHA-256 of an object's namespace and name.
// why: 16 bytes in place of a `namespace/name` string per object (one Secret, Role and
// RoleBinding per key); telling two objects apart takes a second preimage.
type ObjectKey = [u8; 16];

fn object_key(namespace: &str, name: &str) -> ObjectKey {
    let mut hasher = Sha256::new();
    hasher.update(namespace.as_bytes());
    // why: no namespace holds a NUL, so the split between the two is unambiguous.
    hasher.update([0]);
    hasher.update(name.as_bytes());
    let mut key = ObjectKey::default();
    key.copy_from_slice(&hasher.finalize()[..16]);
    key
}

/// The records of the objects a watch shows (see the module).
pub struct WatchedRecords<V> {
    records: RwLock<HashMap<ObjectKey, V>>,
    /// Records of a relist in progress, swapped in when it is complete.
    relisting: Mutex<Option<HashMap<ObjectKey, V>>>,
}

impl<V> Default for WatchedRecords<V> {
    fn default() -> Self {
        Self {
            records: RwLock::default(),
            relisting: Mutex::default(),
        }
    }
}

impl<V: Clone> WatchedRecords<V> {
    /// The record of the object `namespace/name`, if the watch has seen it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<V> {
        read(&self.records)
            .get(&object_key(namespace, name))
            .cloned()
    }

    /// Takes in one watch event, as a reflector would (a relist replaces every record once it
    /// is complete); `record` makes an object's record.
    pub fn apply<K: ResourceExt>(&self, event: &watcher::Event<K>, record: impl Fn(&K) -> V) {
        let key =
            |object: &K| object_key(&object.namespace().unwrap_or_default(), &object.name_any());
        match event {
            watcher::Event::Apply(object) => {
                write(&self.records).insert(key(object), record(object));
            }
            watcher::Event::Delete(object) => {
                write(&self.records).remove(&key(object));
            }
            watcher::Event::Init => *lock(&self.relisting) = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                if let Some(relisting) = lock(&self.relisting).as_mut() {
                    relisting.insert(key(object), record(object));
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
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn object(namespace: &str, name: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn version(object: &ConfigMap) -> String {
        object.resource_version().unwrap_or_default()
    }

    #[test]
    fn records_follow_applies_and_deletes_by_namespace_and_name() {
        let records = WatchedRecords::default();
        records.apply(&watcher::Event::Apply(object("a", "x", "1")), version);
        records.apply(&watcher::Event::Apply(object("b", "x", "2")), version);
        records.apply(&watcher::Event::Apply(object("a", "x", "3")), version);
        assert_eq!(records.get("a", "x").as_deref(), Some("3"));
        assert_eq!(records.get("b", "x").as_deref(), Some("2"));
        assert_eq!(records.get("a", "y"), None);
        // why: the split between namespace and name is part of the key.
        assert_eq!(records.get("", "ax"), None);
        records.apply(&watcher::Event::Delete(object("a", "x", "4")), version);
        assert_eq!(records.get("a", "x"), None);
        assert!(records.get("b", "x").is_some());
    }

    #[test]
    fn a_relist_replaces_every_record_once_complete() {
        let records = WatchedRecords::default();
        records.apply(&watcher::Event::Apply(object("a", "gone", "1")), version);
        records.apply(&watcher::Event::Apply(object("a", "kept", "1")), version);
        records.apply(&watcher::Event::Init, version);
        records.apply(
            &watcher::Event::InitApply(object("a", "kept", "2")),
            version,
        );
        assert!(
            records.get("a", "gone").is_some(),
            "records stay until the relist is complete"
        );
        assert_eq!(records.get("a", "kept").as_deref(), Some("1"));
        records.apply(&watcher::Event::<ConfigMap>::InitDone, version);
        assert_eq!(records.get("a", "gone"), None);
        assert_eq!(records.get("a", "kept").as_deref(), Some("2"));
    }
}
