//! The in-memory object store: one global resourceVersion, a bounded change history for watches,
//! and the indexes the garbage collector needs.

mod gc;
mod write;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::{broadcast, Notify};

use crate::registry::ResourceType;

pub use gc::{AllowAll, DeleteGate, Deleter};
pub use write::{DeleteOptions, Propagation, WriteContext};

/// Where objects of one resource are stored: `plural` or `plural.group`. Several served
/// versions (and both Event APIs) share one storage key.
pub type StorageKey = Arc<str>;

/// The storage key of a served resource type.
pub fn storage_key(rt: &ResourceType) -> StorageKey {
    if rt.group.is_empty() || (rt.group == "events.k8s.io" && rt.plural == "events") {
        Arc::from(rt.plural.as_str())
    } else {
        Arc::from(format!("{}.{}", rt.plural, rt.group))
    }
}

/// Identifies one stored object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub key: StorageKey,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

/// What happened to an object, as reported by watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed change, kept in the history and broadcast to watches.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub change_type: ChangeType,
    pub key: StorageKey,
    pub namespace: String,
    /// The object after the change (the last state for `Deleted`).
    pub object: Arc<Value>,
    /// The object before a `Modified` change, for selector transitions.
    pub previous: Option<Arc<Value>>,
}

/// Objects of one storage key, ordered by (namespace, name) for stable lists and paging.
pub type Bucket = BTreeMap<(String, String), Arc<Value>>;

/// Stored objects with their (namespace, name), in order.
pub type Entries<'a> = Box<dyn Iterator<Item = (&'a (String, String), &'a Arc<Value>)> + 'a>;

/// Runs with the store locked right after a change of the storage key it was registered for is
/// committed, so what it derives (an index, an aggregated object) is current for the very next
/// request. It may write through the `State` it is given; those writes run the hooks again.
pub type CommitHook = Arc<dyn Fn(&mut State, &Change) + Send + Sync>;

/// Everything guarded by the store lock.
pub struct State {
    rv: u64,
    buckets: HashMap<StorageKey, Bucket>,
    uids: HashMap<String, ObjectRef>,
    /// Objects with ownerReferences, for the garbage collector.
    pub(crate) owned: HashSet<ObjectRef>,
    /// Objects with a deletionTimestamp, for the garbage collector.
    pub(crate) deleting: HashSet<ObjectRef>,
    history: VecDeque<Arc<Change>>,
    history_capacity: usize,
    /// Changes at or below this resourceVersion are no longer in the history.
    compacted_rv: u64,
    changes: broadcast::Sender<Arc<Change>>,
    gc_wakeup: Arc<Notify>,
    commit_hooks: HashMap<StorageKey, Arc<[CommitHook]>>,
}

/// The shared store handle.
pub struct Store {
    state: Mutex<State>,
    changes: broadcast::Sender<Arc<Change>>,
    gc_wakeup: Arc<Notify>,
}

impl Store {
    /// An empty store keeping at most `history_capacity` changes for watch resumption.
    pub fn new(history_capacity: usize) -> Self {
        let (changes, _) = broadcast::channel(history_capacity.clamp(1024, 1 << 16));
        let gc_wakeup = Arc::new(Notify::new());
        let state = State {
            rv: 1,
            buckets: HashMap::new(),
            uids: HashMap::new(),
            owned: HashSet::new(),
            deleting: HashSet::new(),
            history: VecDeque::new(),
            history_capacity: history_capacity.max(1),
            compacted_rv: 1,
            changes: changes.clone(),
            gc_wakeup: gc_wakeup.clone(),
            commit_hooks: HashMap::new(),
        };
        Self {
            state: Mutex::new(state),
            changes,
            gc_wakeup,
        }
    }

    /// Locks the store; a poisoned lock is recovered since every write leaves state consistent.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The store locked, unless another holder (this thread included) has it now.
    #[cfg(test)]
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state.try_lock().ok()
    }

    /// A receiver of every change committed after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// Calls `hook` after every committed change of `key` (see [`CommitHook`]).
    pub fn on_commit(&self, key: StorageKey, hook: CommitHook) {
        let mut state = self.lock();
        let hooks = state
            .commit_hooks
            .entry(key)
            .or_insert_with(|| Arc::from([]));
        *hooks = hooks.iter().cloned().chain([hook]).collect();
    }

    /// Woken whenever a deletion may leave work for the garbage collector.
    pub fn gc_wakeup(&self) -> Arc<Notify> {
        self.gc_wakeup.clone()
    }
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl State {
    /// Whether one of `obj`'s ownerReferences names a uid no stored object has.
    fn names_absent_owner(&self, obj: &Value) -> bool {
        obj.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|reference| reference.get("uid").and_then(Value::as_str))
            .any(|uid| !self.uids.contains_key(uid))
    }
}

fn has_owner_refs(obj: &Value) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| !refs.is_empty())
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|ts| !ts.is_null())
}

impl State {
    /// The current (last committed) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch can resume from.
    pub fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    pub fn get(&self, key: &StorageKey, namespace: &str, name: &str) -> Option<&Arc<Value>> {
        self.buckets
            .get(key)?
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// Finds an object by uid (for ownerReferences).
    pub fn get_by_uid(&self, uid: &str) -> Option<(&ObjectRef, &Arc<Value>)> {
        let at = self.uids.get(uid)?;
        Some((at, self.get(&at.key, &at.namespace, &at.name)?))
    }

    pub fn bucket(&self, key: &StorageKey) -> Option<&Bucket> {
        self.buckets.get(key)
    }

    /// Every object of a storage key in `namespace` (all namespaces when `None`), in order.
    pub fn objects<'a>(&'a self, key: &StorageKey, namespace: Option<&'a str>) -> Entries<'a> {
        let Some(bucket) = self.buckets.get(key) else {
            return Box::new(std::iter::empty());
        };
        match namespace {
            Some(ns) => Box::new(
                bucket
                    .range((ns.to_string(), String::new())..)
                    .take_while(move |((object_ns, _), _)| object_ns == ns),
            ),
            None => Box::new(bucket.iter()),
        }
    }

    /// The objects of a storage key in `namespace` (all namespaces when `None`) that sort after
    /// `after` (namespace, name), in order: where a `continue` token resumes, found in the
    /// ordered bucket rather than by walking past everything before it.
    pub fn objects_after<'a>(
        &'a self,
        key: &StorageKey,
        namespace: Option<&'a str>,
        after: (&str, &str),
    ) -> Entries<'a> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let Some(bucket) = self.buckets.get(key) else {
            return Box::new(std::iter::empty());
        };
        let after = (after.0.to_string(), after.1.to_string());
        match namespace {
            Some(ns) if after.0.as_str() < ns => Box::new(
                bucket
                    .range((Included((ns.to_string(), String::new())), Unbounded))
                    .take_while(move |((object_ns, _), _)| object_ns == ns),
            ),
            Some(ns) => Box::new(
                bucket
                    .range((Excluded(after), Unbounded))
                    .take_while(move |((object_ns, _), _)| object_ns == ns),
            ),
            None => Box::new(bucket.range((Excluded(after), Unbounded))),
        }
    }

    /// Changes after `rv` still in the history, or `None` when some were compacted away.
    pub fn changes_since(&self, rv: u64) -> Option<Vec<Arc<Change>>> {
        if rv < self.compacted_rv {
            return None;
        }
        let start = self.history.partition_point(|change| change.rv <= rv);
        Some(self.history.iter().skip(start).cloned().collect())
    }

    /// Drops the whole change history: watches resuming from before now get 410 Expired.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        if self.history.len() >= self.history_capacity {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_rv = dropped.rv;
            }
        }
        self.history.push_back(change.clone());
        // why: no receivers is fine; watches subscribe when they start.
        let _ = self.changes.send(change.clone());
        if let Some(hooks) = self.commit_hooks.get(&change.key).cloned() {
            for hook in hooks.iter() {
                hook(self, &change);
            }
        }
    }

    fn index(&mut self, at: &ObjectRef, obj: &Value) {
        if has_owner_refs(obj) {
            self.owned.insert(at.clone());
            // why: a dependent written naming an owner that is already gone (its controller
            // raced the owner's deletion) is collected, as kube's garbage collector does with
            // references it finds dangling.
            if self.names_absent_owner(obj) {
                self.gc_wakeup.notify_one();
            }
        } else {
            self.owned.remove(at);
        }
        if is_deleting(obj) {
            self.deleting.insert(at.clone());
            self.gc_wakeup.notify_one();
        } else {
            self.deleting.remove(at);
        }
    }

    /// Stores a new object with the next resourceVersion and records `Added`.
    fn insert(&mut self, key: &StorageKey, namespace: &str, mut obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let name = name_of(&obj).to_string();
        let at = ObjectRef {
            key: key.clone(),
            namespace: namespace.to_string(),
            name: name.clone(),
        };
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
            self.uids.insert(uid.to_string(), at.clone());
        }
        self.index(&at, &obj);
        let obj = Arc::new(obj);
        self.buckets
            .entry(key.clone())
            .or_default()
            .insert((namespace.to_string(), name), obj.clone());
        self.record(Change {
            rv,
            change_type: ChangeType::Added,
            key: key.clone(),
            namespace: namespace.to_string(),
            object: obj.clone(),
            previous: None,
        });
        obj
    }

    /// Replaces a stored object with the next resourceVersion and records `Modified`.
    fn replace(&mut self, key: &StorageKey, namespace: &str, mut obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let name = name_of(&obj).to_string();
        let at = ObjectRef {
            key: key.clone(),
            namespace: namespace.to_string(),
            name: name.clone(),
        };
        self.index(&at, &obj);
        let obj = Arc::new(obj);
        let previous = self
            .buckets
            .entry(key.clone())
            .or_default()
            .insert((namespace.to_string(), name), obj.clone());
        self.record(Change {
            rv,
            change_type: ChangeType::Modified,
            key: key.clone(),
            namespace: namespace.to_string(),
            object: obj.clone(),
            previous,
        });
        obj
    }

    /// Removes an object, recording `Deleted` with a new resourceVersion.
    fn remove(&mut self, key: &StorageKey, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let bucket = self.buckets.get_mut(key)?;
        let removed = bucket.remove(&(namespace.to_string(), name.to_string()))?;
        let rv = self.next_rv();
        let at = ObjectRef {
            key: key.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.owned.remove(&at);
        self.deleting.remove(&at);
        if let Some(uid) = removed.pointer("/metadata/uid").and_then(Value::as_str) {
            self.uids.remove(uid);
        }
        let mut last = (*removed).clone();
        last["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let last = Arc::new(last);
        self.record(Change {
            rv,
            change_type: ChangeType::Deleted,
            key: key.clone(),
            namespace: namespace.to_string(),
            object: last.clone(),
            previous: Some(removed),
        });
        self.gc_wakeup.notify_one();
        Some(last)
    }

    /// Removes every object of a storage key (a deleted CRD's custom resources).
    pub fn remove_all(&mut self, key: &StorageKey) {
        let names: Vec<(String, String)> = self
            .buckets
            .get(key)
            .map(|bucket| bucket.keys().cloned().collect())
            .unwrap_or_default();
        for (namespace, name) in names {
            self.remove(key, &namespace, &name);
        }
    }
}
