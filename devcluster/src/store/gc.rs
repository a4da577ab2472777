//! Garbage collection of ownerReferences (background, foreground, orphan) and namespace cleanup,
//! run by a background task whenever something is deleted.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{is_deleting, ObjectRef, State};

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

fn has_finalizer(obj: &Value, finalizer: &str) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|items| items.iter().any(|f| f == finalizer))
}

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A system controller that deletes objects on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleter {
    /// Dependents whose owners are gone (`system:serviceaccount:kube-system:generic-garbage-collector`).
    GarbageCollector,
    /// The content of a terminating namespace (`system:serviceaccount:kube-system:namespace-controller`).
    NamespaceController,
}

/// Decides whether a system controller may delete an object (admission, in the server).
pub trait DeleteGate {
    fn may_delete(&self, state: &State, object: &Value, by: Deleter) -> bool;
}

/// Lets every deletion through.
pub struct AllowAll;

impl DeleteGate for AllowAll {
    fn may_delete(&self, _: &State, _: &Value, _: Deleter) -> bool {
        true
    }
}

/// How the owners of one dependent stand.
#[derive(Default)]
struct Owners {
    alive: bool,
    foreground: bool,
    /// References kept after dropping those of owners deleted with `Orphan`.
    kept: Vec<Value>,
    orphaned: bool,
}

impl State {
    /// Runs collection passes until nothing changes, deleting without admission.
    pub fn collect_garbage(&mut self) {
        self.collect_garbage_admitted(&AllowAll);
    }

    /// Runs collection passes until nothing changes; `gate` admits each deletion, and an
    /// object it refuses stays until a later collection (as the real controllers retry).
    pub fn collect_garbage_admitted(&mut self, gate: &dyn DeleteGate) {
        // why: bounded so a pathological cycle cannot spin forever under the lock.
        for _ in 0..1000 {
            if !self.collect_pass(gate) {
                return;
            }
        }
    }

    fn owners_of(&self, dependent: &Value) -> Owners {
        let mut owners = Owners::default();
        for reference in owner_refs(dependent) {
            let uid = reference
                .get("uid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match self.get_by_uid(uid) {
                None => {}
                Some((_, owner)) if is_deleting(owner) && has_finalizer(owner, ORPHAN) => {
                    owners.orphaned = true;
                    continue;
                }
                Some((_, owner)) if is_deleting(owner) && has_finalizer(owner, FOREGROUND) => {
                    owners.foreground = true
                }
                Some(_) => owners.alive = true,
            }
            owners.kept.push(reference);
        }
        owners
    }

    /// Whether some stored object still names `uid` as owner.
    fn has_dependents(&self, uid: &str) -> bool {
        self.owned.iter().any(|at| {
            self.get(&at.key, &at.namespace, &at.name)
                .is_some_and(|obj| {
                    owner_refs(obj)
                        .iter()
                        .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                })
        })
    }

    /// For every owner uid named by a stored object: whether some dependent blocks its deletion.
    fn dependents_by_owner(&self) -> HashMap<String, bool> {
        let mut owners: HashMap<String, bool> = HashMap::new();
        for at in &self.owned {
            let Some(obj) = self.get(&at.key, &at.namespace, &at.name) else {
                continue;
            };
            for reference in owner_refs(obj) {
                let Some(uid) = reference.get("uid").and_then(Value::as_str) else {
                    continue;
                };
                let blocks =
                    reference.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true);
                *owners.entry(uid.to_string()).or_default() |= blocks;
            }
        }
        owners
    }

    /// Deletes a dependent as the garbage collector: foreground when an owner is deleted in
    /// the foreground (so blocking chains hold), else background.
    fn collect(
        &mut self,
        at: &ObjectRef,
        obj: &Value,
        foreground: bool,
        gate: &dyn DeleteGate,
        by: Deleter,
    ) -> bool {
        if !gate.may_delete(self, obj, by) {
            return false;
        }
        let mut finalizers: Vec<Value> = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if foreground && !has_finalizer(obj, FOREGROUND) && self.has_dependents(uid_of(obj)) {
            finalizers.push(json!(FOREGROUND));
        }
        if finalizers.is_empty() {
            self.remove(&at.key, &at.namespace, &at.name);
            return true;
        }
        let mut marked = obj.clone();
        marked["metadata"]["deletionTimestamp"] = json!(now());
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        marked["metadata"]["finalizers"] = Value::Array(finalizers);
        self.replace(&at.key, &at.namespace, marked);
        true
    }

    fn collect_pass(&mut self, gate: &dyn DeleteGate) -> bool {
        let mut changed = false;
        let owned: Vec<ObjectRef> = self.owned.iter().cloned().collect();
        for at in owned {
            let Some(obj) = self.get(&at.key, &at.namespace, &at.name).cloned() else {
                continue;
            };
            let owners = self.owners_of(&obj);
            if owners.orphaned {
                let mut updated = (*obj).clone();
                match owners.kept.is_empty() {
                    true => {
                        if let Some(meta) =
                            updated.get_mut("metadata").and_then(Value::as_object_mut)
                        {
                            meta.remove("ownerReferences");
                        }
                    }
                    false => updated["metadata"]["ownerReferences"] = Value::Array(owners.kept),
                }
                self.replace(&at.key, &at.namespace, updated);
                changed = true;
            } else if !owners.alive && !is_deleting(&obj) {
                changed |= self.collect(
                    &at,
                    &obj,
                    owners.foreground,
                    gate,
                    Deleter::GarbageCollector,
                );
            }
        }
        let deleting: Vec<ObjectRef> = self.deleting.iter().cloned().collect();
        if deleting.is_empty() {
            return changed;
        }
        let dependents = self.dependents_by_owner();
        for at in deleting {
            let Some(obj) = self.get(&at.key, &at.namespace, &at.name).cloned() else {
                continue;
            };
            let blocking = dependents.get(uid_of(&obj)).copied();
            if has_finalizer(&obj, ORPHAN) && blocking.is_none() {
                changed |= self.drop_finalizer(&at.key, &at.namespace, &at.name, ORPHAN);
            } else if has_finalizer(&obj, FOREGROUND) && blocking != Some(true) {
                changed |= self.drop_finalizer(&at.key, &at.namespace, &at.name, FOREGROUND);
            } else if &*at.key == "namespaces" {
                changed |= self.empty_namespace(&at.name, gate);
            }
        }
        changed
    }

    /// Deletes the content of a terminating namespace; removes the namespace once it is empty.
    fn empty_namespace(&mut self, namespace: &str, gate: &dyn DeleteGate) -> bool {
        let contents: Vec<ObjectRef> = self
            .buckets
            .iter()
            .flat_map(|(key, bucket)| {
                bucket
                    .range((namespace.to_string(), String::new())..)
                    .take_while(|((ns, _), _)| ns == namespace)
                    .map(|((ns, name), _)| ObjectRef {
                        key: key.clone(),
                        namespace: ns.clone(),
                        name: name.clone(),
                    })
            })
            .collect();
        if contents.is_empty() {
            return self
                .remove(&std::sync::Arc::from("namespaces"), "", namespace)
                .is_some();
        }
        let mut changed = false;
        for at in contents {
            let Some(obj) = self.get(&at.key, &at.namespace, &at.name).cloned() else {
                continue;
            };
            if !is_deleting(&obj) {
                changed |= self.collect(&at, &obj, false, gate, Deleter::NamespaceController);
            }
        }
        changed
    }
}

fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
