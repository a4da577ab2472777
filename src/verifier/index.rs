//! The in-memory index of verifiable credentials, by access ID, built from watched `AccessKey`s.
//!
//! It holds only what a decision needs, compactly: one record per key holding its credentials
//! (hashes decoded, see [`super::stored_hash`]), found by access ID and by key; values that
//! repeat across keys (namespaces, owners, scope and origin lists, hash parameters, the grant
//! headers built from them) are shared, not copied.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use http::HeaderValue;

use super::stored_hash::{HashSpec, StoredHash};
use super::watched::WatchedKey;
use crate::api::access_key::{OwnerKind, Phase};
use crate::keys::hash::HashParams;
use crate::sync::{lock, read, write};

/// Namespace and name of an `AccessKey` (cheap to clone: both are shared).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the verifier needs from one `AccessKey`, shared by its current and previous credentials.
#[derive(Debug)]
pub struct KeyRecord {
    pub key_ref: KeyRef,
    /// The owner as a Kubernetes user name: `alice`, or `system:serviceaccount:<ns>:<name>`.
    pub owner: Arc<str>,
    pub owner_kind: OwnerKind,
    /// `status.grantedScopes`: what the controller approved, not what the spec asks for.
    pub scopes: Arc<[String]>,
    /// `status.grantedOrigins`: what the controller approved, not what the spec asks for.
    pub allowed_origins: Arc<[String]>,
    /// `spec.active`: `false` revokes at once, before the controller updates the phase.
    pub spec_active: bool,
    /// The key has a `deletionTimestamp`: refused at once, even while finalizers hold it.
    pub deleting: bool,
    pub phase: Option<Phase>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The latest of issuance, rotation and reactivation: a use after it, while
    /// `last_used_at` is older, is the first of this issuance and is written without delay.
    pub unused_basis: Option<DateTime<Utc>>,
    pub resource_version: Option<Box<str>>,
    /// Owner and scopes headers, shared by every key with the same owner and scopes.
    pub grant_headers: Arc<GrantHeaders>,
    /// The current credential first, then previous ones in their grace period.
    pub credentials: Box<[HeldCredential]>,
}

/// Values of the `X-Keywarden-*` headers a granted check answers with that depend on the
/// owner and scopes only.
// why: built once per watch event instead of once per request: formatting and validating header
// values was a fifth of a cached check's cost.
#[derive(Debug, Default)]
pub struct GrantHeaders {
    pub owner: Option<HeaderValue>,
    /// Comma-separated granted scopes: `*` for every permission of the owner, empty for none.
    pub scopes: Option<HeaderValue>,
}

impl GrantHeaders {
    fn of(owner: &str, scopes: &[String]) -> Self {
        Self {
            owner: header_value(owner),
            scopes: header_value(&scopes.join(",")),
        }
    }
}

/// why: values the CRD admits are visible ASCII; anything else is left out, not mangled.
fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

/// The `X-Keywarden-Owner-Kind` value of an owner kind.
pub fn owner_kind_name(kind: OwnerKind) -> &'static str {
    match kind {
        OwnerKind::User => "User",
        OwnerKind::ServiceAccount => "ServiceAccount",
    }
}

/// Why an indexed credential cannot be used right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// Deactivated, pending or rejected.
    Disabled,
    /// Past `expiresAt`, or a previous credential past its `validUntil`.
    Expired,
}

/// One (access ID, secret hash) pair a key holds: its current issuance or a previous one in grace.
#[derive(Debug)]
pub struct HeldCredential {
    pub access_key_id: Arc<str>,
    /// The hash the controller wrote, decoded.
    pub secret_hash: StoredHash,
    /// Set for previous credentials: usable strictly before this instant.
    pub valid_until: Option<DateTime<Utc>>,
}

/// One verifiable credential as found by its access ID: the key's record and which of its
/// credentials it is.
#[derive(Clone, Debug)]
pub struct Credential {
    pub record: Arc<KeyRecord>,
    slot: usize,
}

impl Credential {
    /// The credential within its record.
    // why: slots are only made by `install`, from the record they point into.
    fn held(&self) -> &HeldCredential {
        &self.record.credentials[self.slot]
    }

    pub fn access_key_id(&self) -> &str {
        &self.held().access_key_id
    }

    pub fn secret_hash(&self) -> &StoredHash {
        &self.held().secret_hash
    }

    pub fn valid_until(&self) -> Option<DateTime<Utc>> {
        self.held().valid_until
    }

    /// Whether the credential may be used at `now`, judged from the spec, phase and clock.
    pub fn usability(&self, now: DateTime<Utc>) -> Result<(), Unusable> {
        let record = &self.record;
        if record.phase == Some(Phase::Expired) {
            return Err(Unusable::Expired);
        }
        if !record.spec_active || record.deleting || record.phase != Some(Phase::Active) {
            return Err(Unusable::Disabled);
        }
        let expired = |deadline: Option<DateTime<Utc>>| deadline.is_some_and(|at| at <= now);
        if expired(record.expires_at) || expired(self.valid_until()) {
            return Err(Unusable::Expired);
        }
        Ok(())
    }
}

/// One key's record, built from a watched key and ready to go into the index.
pub struct IndexedKey {
    key_ref: KeyRef,
    /// `None` when the key holds no servable credential.
    record: Option<Arc<KeyRecord>>,
}

/// Keys per chunk of [`Relisted`].
const RELISTED_CHUNK: usize = 512;

/// The keys of a list in progress, until it is complete and replaces the index's view.
// why: gathered in chunks of fixed size, so growing never copies them (a `Vec` of 100,000 keys
// doubles to room for 131,072, briefly beside its old buffer) and each chunk's memory is freed
// once its keys are installed, at the moment the verifier's memory peaks: the last page of a
// full list, with every key parsed and the index being built.
#[derive(Default)]
pub struct Relisted {
    chunks: Vec<Vec<IndexedKey>>,
    len: usize,
}

impl Relisted {
    pub fn push(&mut self, key: IndexedKey) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < RELISTED_CHUNK => chunk.push(key),
            _ => {
                let mut chunk = Vec::with_capacity(RELISTED_CHUNK);
                chunk.push(key);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    /// Drops what was gathered, memory included (a list that started again).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn key_refs(&self) -> impl Iterator<Item = &KeyRef> {
        self.chunks.iter().flatten().map(|key| &key.key_ref)
    }

    /// The keys, each chunk freed once its keys have been taken.
    fn into_keys(self) -> impl Iterator<Item = IndexedKey> {
        self.chunks.into_iter().flatten()
    }
}

impl FromIterator<IndexedKey> for Relisted {
    fn from_iter<I: IntoIterator<Item = IndexedKey>>(keys: I) -> Self {
        let mut relisted = Self::default();
        for key in keys {
            relisted.push(key);
        }
        relisted
    }
}

/// A record in the by-key set, found by its [`KeyRef`].
struct ByKey(Arc<KeyRecord>);

impl Borrow<KeyRef> for ByKey {
    fn borrow(&self) -> &KeyRef {
        &self.0.key_ref
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key_ref == other.0.key_ref
    }
}

impl Eq for ByKey {}

impl Hash for ByKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key_ref.hash(state);
    }
}

/// Credentials by access ID, and each key's record.
// why: the by-key set holds the record itself (one pointer per key), whose credentials list
// the IDs to remove, rather than a second map of KeyRef to IDs.
#[derive(Default)]
struct IndexState {
    by_id: HashMap<Arc<str>, Credential>,
    by_key: HashSet<ByKey>,
}

/// Thread-safe credential index; cheap concurrent lookups, updated from watch events.
pub struct KeyIndex {
    state: RwLock<IndexState>,
    shared: Mutex<Shared>,
    /// Hashes costlier than this are never indexed, so nobody can make the verifier burn
    /// memory or time by writing one into a status.
    max_hash_cost: HashParams,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self::new(HashParams::default())
    }
}

impl KeyIndex {
    /// An empty index that refuses hashes costlier than `max_hash_cost`.
    pub fn new(max_hash_cost: HashParams) -> Self {
        Self {
            state: RwLock::default(),
            shared: Mutex::default(),
            max_hash_cost,
        }
    }

    /// The credential presented as `access_key_id`, if any key holds it.
    pub fn lookup(&self, access_key_id: &str) -> Option<Credential> {
        self.read().by_id.get(access_key_id).cloned()
    }

    /// The current record of a key, if indexed.
    pub fn record(&self, key_ref: &KeyRef) -> Option<Arc<KeyRecord>> {
        self.read().by_key.get(key_ref).map(|key| key.0.clone())
    }

    /// Number of indexed credentials.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether no credential is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds the record a watched key declares, without indexing it yet.
    pub fn prepare(&self, key: &WatchedKey) -> IndexedKey {
        let mut shared = lock(&self.shared);
        let key_ref = KeyRef {
            namespace: shared
                .strings
                .intern(key.metadata.namespace.as_deref().unwrap_or_default()),
            name: key.metadata.name.as_deref().unwrap_or_default().into(),
        };
        let record = record_of(key, &key_ref, &self.max_hash_cost, &mut shared).map(Arc::new);
        IndexedKey { key_ref, record }
    }

    /// Indexes (or re-indexes) a key; returns the access IDs whose secret hash changed or that
    /// disappeared, whose cached verifications must be dropped.
    pub fn apply(&self, key: &WatchedKey) -> Vec<String> {
        let prepared = self.prepare(key);
        self.install(prepared)
    }

    fn install(&self, prepared: IndexedKey) -> Vec<String> {
        let IndexedKey { key_ref, record } = prepared;
        let mut state = self.write();
        let mut stale = remove_key(&mut state, &key_ref);
        if let Some(record) = record {
            for (slot, held) in record.credentials.iter().enumerate() {
                let id = &held.access_key_id;
                if let Some(old_hash) = stale.remove(id) {
                    if old_hash != held.secret_hash {
                        stale.insert(id.clone(), old_hash);
                    }
                }
                let credential = Credential {
                    record: record.clone(),
                    slot,
                };
                state.by_id.insert(id.clone(), credential);
            }
            state.by_key.insert(ByKey(record));
        }
        stale.into_keys().map(|id| id.to_string()).collect()
    }

    /// Removes a deleted key; returns its access IDs.
    pub fn remove(&self, key: &KeyRef) -> Vec<String> {
        remove_key(&mut self.write(), key)
            .into_keys()
            .map(|id| id.to_string())
            .collect()
    }

    /// Replaces every key matching `in_scope` with `keys` (a full relist); returns the access IDs
    /// whose cached verifications must be dropped.
    pub fn replace(&self, in_scope: impl Fn(&KeyRef) -> bool, keys: Relisted) -> Vec<String> {
        let held = self
            .read()
            .by_key
            .iter()
            .filter(|key| in_scope(&key.0.key_ref))
            .count();
        // why: the first list has nothing to compare with; the set of listed keys would cost a
        // pointer and its hash per key just when memory peaks.
        let gone: Vec<KeyRef> = if held == 0 {
            Vec::new()
        } else {
            let listed: HashSet<&KeyRef> = keys.key_refs().collect();
            self.read()
                .by_key
                .iter()
                .map(|key| &key.0.key_ref)
                .filter(|key| in_scope(key) && !listed.contains(*key))
                .cloned()
                .collect()
        };
        let mut stale: Vec<String> = gone.iter().flat_map(|key| self.remove(key)).collect();
        // why: room for the keys new to the index at once, instead of tables that double (and
        // rehash) while their old buckets are still held.
        let new_keys = keys.len().saturating_sub(held.saturating_sub(gone.len()));
        {
            let mut state = self.write();
            state.by_key.reserve(new_keys);
            state.by_id.reserve(new_keys);
        }
        for key in keys.into_keys() {
            stale.extend(self.install(key));
        }
        // why: a relist is when most records were just replaced; shared values nobody holds
        // any more are dropped here rather than on every event.
        lock(&self.shared).prune();
        stale
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, IndexState> {
        read(&self.state)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexState> {
        write(&self.state)
    }
}

/// Removes a key's credentials; returns their IDs with the hashes they had.
fn remove_key(state: &mut IndexState, key: &KeyRef) -> HashMap<Arc<str>, StoredHash> {
    let mut removed = HashMap::new();
    let Some(ByKey(record)) = state.by_key.take(key) else {
        return removed;
    };
    for held in record.credentials.iter() {
        let id = &held.access_key_id;
        // why: an ID copied into another key's status must not be removed on this key's behalf.
        if state
            .by_id
            .get(id)
            .is_some_and(|c| c.record.key_ref == *key)
        {
            if let Some(credential) = state.by_id.remove(id) {
                removed.insert(id.clone(), credential.secret_hash().clone());
            }
        }
    }
    removed
}

/// The namespace/name of a watched key.
pub fn key_ref(key: &WatchedKey) -> KeyRef {
    KeyRef {
        namespace: key.metadata.namespace.as_deref().unwrap_or_default().into(),
        name: key.metadata.name.as_deref().unwrap_or_default().into(),
    }
}

/// One set of shared values of one type: each distinct value is stored once.
struct Interner<T: ?Sized> {
    values: HashSet<Arc<T>>,
    added_since_prune: usize,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Self {
            values: HashSet::new(),
            added_since_prune: 0,
        }
    }
}

impl<T: ?Sized + Eq + Hash> Interner<T>
where
    for<'a> Arc<T>: From<&'a T>,
{
    fn intern(&mut self, value: &T) -> Arc<T> {
        if let Some(shared) = self.values.get(value) {
            return shared.clone();
        }
        // why: values of deleted keys would pile up between relists; dropping the unheld ones
        // once as many were added as are kept bounds the set by twice the live values.
        self.added_since_prune += 1;
        if self.added_since_prune > self.values.len().max(1024) {
            self.prune();
        }
        let shared: Arc<T> = Arc::from(value);
        self.values.insert(shared.clone());
        shared
    }

    fn prune(&mut self) {
        self.values.retain(|value| Arc::strong_count(value) > 1);
        self.values.shrink_to_fit();
        self.added_since_prune = 0;
    }
}

/// What the grant headers are built from.
type GrantHeadersKey = (Arc<str>, OwnerKind, Arc<[String]>);

/// Distinct hash parameter sets kept shared; past this, each hash gets its own copy.
// why: a status writer could otherwise grow the list without bound with made-up parameters.
const MAX_SHARED_HASH_SPECS: usize = 64;

/// Values repeated across keys, stored once.
#[derive(Default)]
struct Shared {
    /// Namespaces and owners.
    strings: Interner<str>,
    /// Scope and origin lists.
    lists: Interner<[String]>,
    headers: HashMap<GrantHeadersKey, Arc<GrantHeaders>>,
    headers_added_since_prune: usize,
    /// argon2id parameters: nearly every key has the controller's.
    hash_specs: Vec<Arc<HashSpec>>,
}

impl Shared {
    fn grant_headers(
        &mut self,
        owner: &Arc<str>,
        owner_kind: OwnerKind,
        scopes: &Arc<[String]>,
    ) -> Arc<GrantHeaders> {
        let key = (owner.clone(), owner_kind, scopes.clone());
        if let Some(headers) = self.headers.get(&key) {
            return headers.clone();
        }
        self.headers_added_since_prune += 1;
        if self.headers_added_since_prune > self.headers.len().max(1024) {
            self.prune_headers();
        }
        let headers = Arc::new(GrantHeaders::of(owner, scopes));
        self.headers.insert(key, headers.clone());
        headers
    }

    fn hash_spec(&mut self, spec: HashSpec) -> Arc<HashSpec> {
        if let Some(shared) = self.hash_specs.iter().find(|shared| ***shared == spec) {
            return shared.clone();
        }
        let spec = Arc::new(spec);
        if self.hash_specs.len() >= MAX_SHARED_HASH_SPECS {
            self.hash_specs
                .retain(|shared| Arc::strong_count(shared) > 1);
        }
        if self.hash_specs.len() < MAX_SHARED_HASH_SPECS {
            self.hash_specs.push(spec.clone());
        }
        spec
    }

    fn prune_headers(&mut self) {
        self.headers
            .retain(|_, headers| Arc::strong_count(headers) > 1);
        self.headers.shrink_to_fit();
        self.headers_added_since_prune = 0;
    }

    fn prune(&mut self) {
        // why: headers hold owners and lists, so they go first.
        self.prune_headers();
        self.strings.prune();
        self.lists.prune();
        self.hash_specs
            .retain(|shared| Arc::strong_count(shared) > 1);
    }
}

/// The record of a key with the current and previous credentials its status declares, without
/// those whose hash costs more than `max_hash_cost` (or is no argon2id hash); `None` when no
/// credential is left.
fn record_of(
    key: &WatchedKey,
    key_ref: &KeyRef,
    max_hash_cost: &HashParams,
    shared: &mut Shared,
) -> Option<KeyRecord> {
    let status = key.status.as_ref()?;
    let current = status
        .access_key_id
        .as_deref()
        .zip(status.secret_hash.as_deref())
        .map(|(id, hash)| (id, hash, None));
    let previous = status.previous_keys.iter().map(|p| {
        (
            p.access_key_id.as_str(),
            p.secret_hash.as_str(),
            Some(p.valid_until),
        )
    });
    let credentials: Box<[HeldCredential]> = current
        .into_iter()
        .chain(previous)
        .filter_map(|(access_key_id, secret_hash, valid_until)| {
            let stored = StoredHash::parse(secret_hash, |spec| shared.hash_spec(spec))
                .filter(|stored| stored.cost().fits_within(max_hash_cost));
            if stored.is_none() {
                tracing::warn!(%key_ref, access_key_id, "hash costlier than the configured ceiling, or no argon2id hash; not served");
            }
            Some(HeldCredential {
                access_key_id: access_key_id.into(),
                secret_hash: stored?,
                valid_until,
            })
        })
        .collect();
    if credentials.is_empty() {
        return None;
    }
    let owner = shared
        .strings
        .intern(&key.spec.owner.username(&key_ref.namespace));
    // why: only what the controller granted counts (policy and owner's permissions); a status
    // without grants grants no scope, never the spec's.
    let scopes = shared
        .lists
        .intern(status.granted_scopes.as_deref().unwrap_or_default());
    let allowed_origins = shared.lists.intern(
        status
            .granted_origins
            .as_deref()
            .unwrap_or(key.spec.allowed_origins.as_slice()),
    );
    Some(KeyRecord {
        key_ref: key_ref.clone(),
        grant_headers: shared.grant_headers(&owner, key.spec.owner.kind, &scopes),
        owner,
        owner_kind: key.spec.owner.kind,
        scopes,
        allowed_origins,
        spec_active: key.spec.active,
        deleting: key.metadata.deletion_timestamp.is_some(),
        phase: status.phase,
        expires_at: status.expires_at,
        last_used_at: status.last_used_at,
        unused_basis: status.unused_basis(),
        resource_version: key.metadata.resource_version.as_deref().map(Box::from),
        credentials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::access_key::{
        AccessKey, AccessKeySpec, AccessKeyStatus, KeyOwner, OwnerKind, PreviousKey,
    };

    impl KeyIndex {
        fn apply_key(&self, key: &AccessKey) -> Vec<String> {
            self.apply(&WatchedKey::from(key))
        }
    }

    fn key(
        namespace: &str,
        name: &str,
        id: &str,
        hash: &str,
        previous: &[(&str, &str)],
    ) -> AccessKey {
        let spec: AccessKeySpec = serde_json::from_value(serde_json::json!({
            "owner": {"kind": "User", "name": "alice"}
        }))
        .unwrap();
        let mut key = AccessKey::new(name, spec);
        key.metadata.namespace = Some(namespace.into());
        key.status = Some(AccessKeyStatus {
            phase: Some(Phase::Active),
            access_key_id: Some(id.into()),
            secret_hash: Some(phc(hash)),
            previous_keys: previous
                .iter()
                .map(|(id, hash)| PreviousKey {
                    access_key_id: (*id).into(),
                    secret_hash: phc(hash),
                    valid_until: Utc::now(),
                })
                .collect(),
            granted_scopes: Some(Vec::new()),
            granted_origins: Some(Vec::new()),
            ..AccessKeyStatus::default()
        });
        key
    }

    /// A well-formed, cheap argon2id PHC string, distinct per `tag`.
    fn phc(tag: &str) -> String {
        phc_with_memory(tag, 1024)
    }

    fn phc_with_memory(tag: &str, memory_kib: u32) -> String {
        use base64::Engine;
        let output = base64::engine::general_purpose::STANDARD_NO_PAD.encode(format!("{tag:0>32}"));
        format!("$argon2id$v=19$m={memory_kib},t=1,p=1$c2FsdHNhbHQ${output}")
    }

    #[test]
    fn the_verifier_serves_granted_scopes_and_origins_not_the_spec() {
        let index = KeyIndex::default();
        let mut key = key("a", "k", "ID1", "h", &[]);
        key.spec.scopes = vec!["logs:view".into(), "collectors:manage".into()];
        key.spec.allowed_origins = vec!["https://evil.example.com".into()];
        let status = key.status.as_mut().unwrap();
        status.granted_scopes = Some(vec!["logs:view".into()]);
        status.granted_origins = Some(vec!["https://app.example.com".into()]);
        index.apply_key(&key);
        let record = index.lookup("ID1").unwrap().record.clone();
        assert_eq!(*record.scopes, ["logs:view".to_string()]);
        assert_eq!(
            *record.allowed_origins,
            ["https://app.example.com".to_string()]
        );
        assert_eq!(
            record
                .grant_headers
                .scopes
                .as_ref()
                .unwrap()
                .to_str()
                .unwrap(),
            "logs:view"
        );
    }

    #[test]
    fn a_status_without_grants_grants_no_scope_not_the_specs() {
        let index = KeyIndex::default();
        let mut key = key("a", "k", "ID1", "h", &[]);
        key.spec.scopes = vec!["logs:manage".into()];
        key.status.as_mut().unwrap().granted_scopes = None;
        index.apply_key(&key);
        let record = index.lookup("ID1").unwrap().record.clone();
        assert!(record.scopes.is_empty());
        let header = record.grant_headers.scopes.clone().unwrap();
        assert_eq!(header.to_str().unwrap(), "");
    }

    #[test]
    fn a_key_being_deleted_is_refused_at_once() {
        let index = KeyIndex::default();
        let mut key = key("a", "k", "ID1", "h", &[("ID0", "h0")]);
        index.apply_key(&key);
        assert_eq!(index.lookup("ID1").unwrap().usability(Utc::now()), Ok(()));
        key.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        index.apply_key(&key);
        for id in ["ID1", "ID0"] {
            assert_eq!(
                index.lookup(id).unwrap().usability(Utc::now()),
                Err(Unusable::Disabled),
                "{id}"
            );
        }
    }

    #[test]
    fn hashes_costlier_than_the_ceiling_or_not_argon2id_are_not_served() {
        let index = KeyIndex::new(HashParams {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        });
        let mut key = key("a", "k", "ID1", "h", &[("ID0", "h0")]);
        let status = key.status.as_mut().unwrap();
        status.secret_hash = Some(phc_with_memory("h", 4 * 1024 * 1024));
        status.previous_keys[0].secret_hash = "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into();
        index.apply_key(&key);
        assert!(index.lookup("ID1").is_none());
        assert!(index.lookup("ID0").is_none());
        let within = self::key("a", "k", "ID1", "h", &[]);
        index.apply_key(&within);
        assert!(
            index.lookup("ID1").is_some(),
            "hashes within the ceiling are served"
        );
    }

    #[test]
    fn reapplying_reports_only_ids_whose_hash_changed_or_vanished() {
        let index = KeyIndex::default();
        assert!(index
            .apply_key(&key("a", "k", "ID1", "h1", &[("ID0", "h0")]))
            .is_empty());
        assert_eq!(index.len(), 2);
        assert!(index
            .apply_key(&key("a", "k", "ID1", "h1", &[("ID0", "h0")]))
            .is_empty());
        assert_eq!(
            index.apply_key(&key("a", "k", "ID1", "h2", &[("ID0", "h0")])),
            vec!["ID1"]
        );
        assert_eq!(
            index.apply_key(&key("a", "k", "ID1", "h2", &[])),
            vec!["ID0"]
        );
        assert!(index.lookup("ID0").is_none());
        assert_eq!(
            index.remove(&KeyRef {
                namespace: "a".into(),
                name: "k".into()
            }),
            vec!["ID1"]
        );
        assert!(index.is_empty());
    }

    #[test]
    fn relist_removes_vanished_keys_only_in_its_scope() {
        let index = KeyIndex::default();
        index.apply_key(&key("a", "gone", "ID1", "h", &[]));
        index.apply_key(&key("a", "kept", "ID2", "h", &[]));
        index.apply_key(&key("b", "other", "ID3", "h", &[]));
        let listed = [index.prepare(&WatchedKey::from(&key("a", "kept", "ID2", "h", &[])))];
        let stale = index.replace(|k| &*k.namespace == "a", listed.into_iter().collect());
        assert_eq!(stale, vec!["ID1"]);
        assert!(index.lookup("ID1").is_none());
        assert!(index.lookup("ID2").is_some());
        assert!(
            index.lookup("ID3").is_some(),
            "other namespaces are untouched"
        );
    }

    #[test]
    fn a_first_list_installs_every_key_gathered_in_chunks() {
        let index = KeyIndex::default();
        let count = RELISTED_CHUNK * 2 + 3;
        let mut relisted = Relisted::default();
        for i in 0..count {
            let name = format!("k{i}");
            let id = format!("ID{i}");
            relisted.push(index.prepare(&WatchedKey::from(&key("a", &name, &id, "h", &[]))));
        }
        assert_eq!(relisted.len(), count);
        assert_eq!(relisted.chunks.len(), 3);
        assert!(relisted
            .chunks
            .iter()
            .all(|c| c.capacity() == RELISTED_CHUNK));
        assert_eq!(relisted.key_refs().count(), count);
        assert!(index.replace(|_| true, relisted).is_empty());
        assert_eq!(index.len(), count);
        assert!(
            index.lookup("ID0").is_some() && index.lookup(&format!("ID{}", count - 1)).is_some()
        );
        let mut restarted = Relisted::default();
        restarted.push(index.prepare(&WatchedKey::from(&key("a", "k0", "ID0", "h", &[]))));
        restarted.clear();
        assert!(restarted.is_empty() && restarted.chunks.capacity() == 0);
    }

    #[test]
    fn service_account_owner_is_a_kubernetes_identity() {
        let index = KeyIndex::default();
        let mut sa = key("team", "k", "ID1", "h", &[]);
        sa.spec.owner = KeyOwner {
            kind: OwnerKind::ServiceAccount,
            name: "ci".into(),
        };
        index.apply_key(&sa);
        let credential = index.lookup("ID1").unwrap();
        assert_eq!(&*credential.record.owner, "system:serviceaccount:team:ci");
        let headers = &credential.record.grant_headers;
        assert_eq!(
            headers.owner.as_ref().and_then(|v| v.to_str().ok()),
            Some("system:serviceaccount:team:ci")
        );
        assert_eq!(
            owner_kind_name(credential.record.owner_kind),
            "ServiceAccount"
        );
    }
}
