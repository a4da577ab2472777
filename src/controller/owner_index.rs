//! The cached keys by owner: the owner limit counts an owner's keys at each first issuance,
//! and a scan of every cached key there made issuing N keys cost O(N²) (at 100,000 keys,
//! milliseconds per issuance spent formatting owner names).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::sync::lock;

/// The objects of a reflector [`Store`], grouped by an owner identity.
///
/// It holds the store's own `Arc`s (a pointer per object, no copy) under a hash of the owner:
/// an owner's bucket may also hold another owner's objects whose hash collides, so readers
/// filter by the exact owner (see [`OwnerIndex::candidates`]).
pub struct OwnerIndex<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    owner_of: fn(&K) -> String,
    hasher: RandomState,
    buckets: Mutex<HashMap<u64, Vec<Arc<K>>>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> OwnerIndex<K> {
    /// An index over `store`, which must be the store the watch events passed to
    /// [`OwnerIndex::apply`] are reflected into, before they reach `apply`.
    pub fn new(store: Store<K>, owner_of: fn(&K) -> String) -> Self {
        Self {
            store,
            owner_of,
            hasher: RandomState::new(),
            buckets: Mutex::default(),
        }
    }

    /// Takes in one watch event after the store has: an object's entry follows its store entry,
    /// and a finished relist rebuilds the index from the store.
    pub fn apply(&self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(object) => {
                let stored = self.store.get(&ObjectRef::from_obj(object));
                self.replace(object, stored);
            }
            watcher::Event::Delete(object) => self.replace(object, None),
            // why: the store swaps in the relisted objects at InitDone, not before.
            watcher::Event::InitDone => self.rebuild(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    /// The cached objects whose owner may be `owner`: every one of them, and maybe others.
    pub fn candidates(&self, owner: &str) -> Vec<Arc<K>> {
        let hash = self.hasher.hash_one(owner);
        lock(&self.buckets).get(&hash).cloned().unwrap_or_default()
    }

    fn replace(&self, object: &K, stored: Option<Arc<K>>) {
        let hash = self.hasher.hash_one((self.owner_of)(object));
        let (namespace, name) = (object.namespace(), object.name_any());
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.entry(hash).or_default();
        bucket.retain(|o| o.namespace() != namespace || o.name_any() != name);
        bucket.extend(stored);
        if bucket.is_empty() {
            buckets.remove(&hash);
        }
    }

    fn rebuild(&self) {
        let mut rebuilt: HashMap<u64, Vec<Arc<K>>> = HashMap::new();
        for object in self.store.state() {
            let hash = self.hasher.hash_one((self.owner_of)(&object));
            rebuilt.entry(hash).or_default().push(object);
        }
        *lock(&self.buckets) = rebuilt;
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;

    use super::*;
    use crate::api::AccessKey;
    use crate::controller::context::key_owner_identity;

    fn key(name: &str, owner: &str, uid: &str) -> AccessKey {
        let mut key = crate::controller::tests::key();
        key.metadata.name = Some(name.into());
        key.metadata.uid = Some(uid.into());
        key.spec.owner.name = owner.into();
        key
    }

    fn names(index: &OwnerIndex<AccessKey>, owner: &str) -> Vec<String> {
        let mut names: Vec<String> = index
            .candidates(owner)
            .iter()
            .filter(|k| key_owner_identity(k.as_ref()) == owner)
            .map(|k| k.name_any())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_index_follows_applies_deletes_and_relists_of_the_store() {
        let (store, mut writer) = reflector::store::<AccessKey>();
        let index = OwnerIndex::new(store, key_owner_identity::<AccessKey>);
        let mut feed = |event: watcher::Event<AccessKey>| {
            writer.apply_watcher_event(&event);
            index.apply(&event);
        };
        feed(watcher::Event::Apply(key("a1", "alice", "u1")));
        feed(watcher::Event::Apply(key("a2", "alice", "u2")));
        feed(watcher::Event::Apply(key("b1", "bob", "u3")));
        assert_eq!(names(&index, "alice"), ["a1", "a2"]);
        assert_eq!(names(&index, "bob"), ["b1"]);

        let mut updated = key("a1", "alice", "u1");
        updated.spec.active = false;
        feed(watcher::Event::Apply(updated));
        let held = index.candidates("alice");
        let a1 = held.iter().find(|k| k.name_any() == "a1").unwrap();
        assert!(!a1.spec.active, "the entry is the store's current object");
        assert_eq!(held.len(), 2, "an update replaces, never adds");

        feed(watcher::Event::Delete(key("a2", "alice", "u2")));
        assert_eq!(names(&index, "alice"), ["a1"]);

        // why: a relist drops what the watch missed (b1 deleted) and adds what it missed.
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(key("a1", "alice", "u1")));
        feed(watcher::Event::InitApply(key("c1", "carol", "u4")));
        assert_eq!(
            names(&index, "bob"),
            ["b1"],
            "nothing changes before InitDone"
        );
        feed(watcher::Event::InitDone);
        assert_eq!(names(&index, "alice"), ["a1"]);
        assert!(names(&index, "bob").is_empty());
        assert_eq!(names(&index, "carol"), ["c1"]);
        assert!(index.candidates("dave").is_empty());
    }
}
