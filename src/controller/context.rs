//! Shared state of the reconcilers: client, caches, clock, per-owner issuance gate.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use super::backoff::RetryBackoff;
use super::cached_key::{CachedKey, KeyView};
use super::grant_cache::GrantCache;
use super::ledger::Ledgers;
use super::metrics::Metrics;
use super::owner_index::OwnerIndex;
use super::secret_data::Verdicts;
use super::secret_record::SecretRecords;
use crate::api::AccessKeyPolicy;
use crate::keys::hash::HashParams;
use crate::keys::seal::RecordKey;
use crate::sync::lock;

/// The controller's notion of "now"; injectable so tests control time.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// Everything a reconciliation needs.
pub struct Context {
    pub client: Client,
    /// The AccessKeys, compact (see `cached_key`).
    pub keys: Store<CachedKey>,
    /// The cached keys by owner identity ([`key_owner_identity`]), for the owner limit.
    pub key_owners: Arc<OwnerIndex<CachedKey>>,
    pub policies: Store<AccessKeyPolicy>,
    /// What classification reads of the Secrets keywarden manages (selected by label).
    pub secrets: Arc<SecretRecords>,
    /// The owner-access Roles keywarden manages (selected by label), as digests.
    pub owner_roles: Arc<GrantCache>,
    /// The owner-access RoleBindings keywarden manages (selected by label), as digests.
    pub owner_bindings: Arc<GrantCache>,
    /// Mask of caches that have finished their initial list (see `runner::ALL_LISTED`).
    pub synced: tokio::sync::watch::Receiver<u16>,
    /// Who publishes the audit Events (see [`Context::recorder`]).
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub hash_params: HashParams,
    /// Seals the issuance records written into key Secrets' annotations.
    pub record_key: RecordKey,
    /// The per-owner issuance ledgers, whose writes decide the owner limits.
    pub ledgers: Ledgers,
    /// Runs argon2id hashes, one per core at a time.
    pub hash_pool: super::hash_pool::HashPool,
    pub clock: Clock,
    pub owners: OwnerGate,
    /// Verdicts on the keys' Secret data.
    pub secret_verdicts: Verdicts,
    /// The RBAC that can grant scopes, from watches.
    pub rbac: Arc<super::rbac_watch::RbacView>,
    /// Scope reviews answered in the current burst.
    pub scope_reviews: super::scopes_held::ReviewCache,
    /// Deadlines of keys too far away to wait for in the scheduler.
    pub far_deadlines: super::far_deadlines::FarDeadlines,
    /// Requeues the AccessKey reconciler asked for, on their way to the intake.
    pub requeues: super::requeues::Requeues,
    /// Retry delays of AccessKeys whose reconciliation failed.
    pub key_retries: RetryBackoff<ObjectRef<CachedKey>>,
    /// Retry delays of AccessKeyPolicies whose reconciliation failed.
    pub policy_retries: RetryBackoff<ObjectRef<AccessKeyPolicy>>,
    /// Restarts of `spec.rollout` targets; `None` unless the controller runs with `--rollout`.
    pub rollouts: Option<Arc<super::rollout::Rollouts>>,
}

impl Context {
    /// The current time according to the injected clock, in whole seconds: every time the
    /// controller writes is RFC 3339 at second precision, as Kubernetes writes times.
    pub fn now(&self) -> DateTime<Utc> {
        crate::keys::schedule::whole_seconds((self.clock)())
    }

    /// An Event recorder for one reconciliation.
    // why: a Recorder keeps every Event it published for six minutes (to count repeats into a
    // series); one shared by all keys held an Event per issued key, a quarter of the
    // controller's heap after a burst. Audit events of one key rarely repeat, so a recorder per
    // reconciliation, as kube-runtime intends, loses nothing.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }
}

/// Owner identity of a key: its owner's Kubernetes username (see [`crate::api::KeyOwner::username`]).
pub fn key_owner_identity<K: KeyView>(key: &K) -> String {
    key.owner().username(&key.namespace().unwrap_or_default())
}

/// Serializes first issuances per owner and remembers issuances the caches may not show yet.
#[derive(Default)]
pub struct OwnerGate {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// UIDs of keys this process issued, by owner identity.
    issued: Mutex<HashMap<String, HashSet<String>>>,
}

impl OwnerGate {
    /// The lock that serializes issuance decisions for `owner`.
    pub fn lock_for(&self, owner: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.locks);
        locks.entry(owner.to_string()).or_default().clone()
    }

    /// Records that this process wrote (or may have written) an issuance for key `uid`.
    pub fn record_issued(&self, owner: &str, uid: &str) {
        let mut issued = lock(&self.issued);
        issued
            .entry(owner.to_string())
            .or_default()
            .insert(uid.to_string());
    }

    /// Whether this process recorded an issuance for key `uid`.
    pub fn was_issued(&self, owner: &str, uid: &str) -> bool {
        let issued = lock(&self.issued);
        issued.get(owner).is_some_and(|uids| uids.contains(uid))
    }

    /// Drops the owner's lock when no task holds or waits for it.
    // why: one lock per owner ever seen would grow with every owner; 10,000 owners held ~1.5 MiB.
    pub fn release_lock(&self, owner: &str) {
        let mut locks = lock(&self.locks);
        // why: clones are made under this mutex, so a count of 1 (the map's) cannot rise now.
        if locks
            .get(owner)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(owner);
        }
    }

    /// Forgets a key: deleted, or its issuance now visible in the caches.
    pub fn forget(&self, owner: &str, uid: &str) {
        let mut issued = lock(&self.issued);
        if let Some(uids) = issued.get_mut(owner) {
            uids.remove(uid);
            if uids.is_empty() {
                issued.remove(owner);
                give_back_spare(&mut issued);
            }
        }
    }
}

/// Gives back most of a map's capacity once it holds under a quarter of it: a map that
/// remembers something per key until the cache shows it grows with a burst of issuances and
/// would otherwise keep that size for the life of the process.
pub fn give_back_spare<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    const KEEP: usize = 1024;
    if map.capacity() > KEEP && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len().saturating_mul(2).max(KEEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_lock_is_dropped_only_when_nobody_holds_it() {
        let gate = OwnerGate::default();
        let held = gate.lock_for("User/alice");
        gate.release_lock("User/alice");
        assert!(
            Arc::ptr_eq(&held, &gate.lock_for("User/alice")),
            "a held lock stays, so the next issuance of the owner waits for it"
        );
        drop(held);
        gate.release_lock("User/alice");
        assert!(gate.locks.lock().unwrap().is_empty());
    }

    #[test]
    fn a_drained_map_gives_its_capacity_back() {
        let mut map: HashMap<u32, u32> = (0..100_000).map(|i| (i, i)).collect();
        give_back_spare(&mut map);
        let full = map.capacity();
        assert!(full >= 100_000, "a full map keeps its capacity");
        map.retain(|k, _| *k < 10);
        give_back_spare(&mut map);
        assert!(
            map.capacity() < 4096,
            "kept {} slots for 10 entries",
            map.capacity()
        );
        assert_eq!(map.len(), 10);
    }

    #[test]
    fn forgetting_an_owners_last_key_forgets_the_owner() {
        let gate = OwnerGate::default();
        gate.record_issued("User/alice", "uid-1");
        gate.record_issued("User/alice", "uid-2");
        gate.forget("User/alice", "uid-1");
        assert!(gate.was_issued("User/alice", "uid-2"));
        gate.forget("User/alice", "uid-2");
        assert!(!gate.was_issued("User/alice", "uid-2"));
        assert!(gate.issued.lock().unwrap().is_empty());
    }
}
