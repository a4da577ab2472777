//! The in-memory index of verifiable credentials, by access ID, built from watched `AccessKey`s.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use http::HeaderValue;
use kube::ResourceExt;

use crate::api::access_key::{AccessKey, OwnerKind, Phase};
use crate::keys::hash::{hash_cost, HashParams};
use crate::sync::{read, write};

/// Namespace and name of an `AccessKey`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    pub namespace: String,
    pub name: String,
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
    pub owner: String,
    pub owner_kind: OwnerKind,
    /// `status.grantedScopes`: what the controller approved, not what the spec asks for.
    pub scopes: Vec<String>,
    /// `status.grantedOrigins`: what the controller approved, not what the spec asks for.
    pub allowed_origins: Vec<String>,
    /// `spec.active`: `false` revokes at once, before the controller updates the phase.
    pub spec_active: bool,
    /// The key has a `deletionTimestamp`: refused at once, even while finalizers hold it.
    pub deleting: bool,
    pub phase: Option<Phase>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub resource_version: Option<String>,
    pub grant_headers: GrantHeaders,
}

/// Values of the `X-Keywarden-*` headers a granted check answers with.
// why: built once per watch event instead of once per request: formatting and validating header
// values was a fifth of a cached check's cost.
#[derive(Debug, Default)]
pub struct GrantHeaders {
    pub owner: Option<HeaderValue>,
    /// `User` or `ServiceAccount`.
    pub owner_kind: Option<HeaderValue>,
    /// Comma-separated granted scopes: `*` for every permission of the owner, empty for none.
    pub scopes: Option<HeaderValue>,
    /// `<namespace>/<name>` of the AccessKey.
    pub key_name: Option<HeaderValue>,
}

impl GrantHeaders {
    fn of(key_ref: &KeyRef, owner: &str, owner_kind: OwnerKind, scopes: &[String]) -> Self {
        let scopes = scopes.join(",");
        // why: values the CRD admits are visible ASCII; anything else is left out, not mangled.
        let value = |text: &str| HeaderValue::from_str(text).ok();
        Self {
            owner: value(owner),
            owner_kind: Some(HeaderValue::from_static(owner_kind_name(owner_kind))),
            scopes: value(&scopes),
            key_name: value(&key_ref.to_string()),
        }
    }
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

/// One verifiable (access ID, secret hash) pair: the current issuance or a previous one in grace.
#[derive(Debug)]
pub struct Credential {
    pub record: Arc<KeyRecord>,
    pub access_key_id: String,
    /// `access_key_id` as the `X-Keywarden-Key-Id` header value.
    pub access_key_id_header: Option<HeaderValue>,
    pub secret_hash: Arc<str>,
    /// Set for previous credentials: usable strictly before this instant.
    pub valid_until: Option<DateTime<Utc>>,
}

impl Credential {
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
        if expired(record.expires_at) || expired(self.valid_until) {
            return Err(Unusable::Expired);
        }
        Ok(())
    }
}

/// Credentials by access ID, and which IDs each key contributed.
#[derive(Default)]
struct IndexState {
    by_id: HashMap<String, Arc<Credential>>,
    ids_by_key: HashMap<KeyRef, Vec<String>>,
}

/// Thread-safe credential index; cheap concurrent lookups, updated from watch events.
pub struct KeyIndex {
    state: RwLock<IndexState>,
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
            max_hash_cost,
        }
    }

    /// The credential presented as `access_key_id`, if any key holds it.
    pub fn lookup(&self, access_key_id: &str) -> Option<Arc<Credential>> {
        self.read().by_id.get(access_key_id).cloned()
    }

    /// The current record of a key, if indexed.
    pub fn record(&self, key_ref: &KeyRef) -> Option<Arc<KeyRecord>> {
        let state = self.read();
        let id = state.ids_by_key.get(key_ref)?.first()?;
        state
            .by_id
            .get(id)
            .map(|credential| credential.record.clone())
    }

    /// Number of indexed credentials.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether no credential is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Indexes (or re-indexes) a key; returns the access IDs whose secret hash changed or that
    /// disappeared, whose cached verifications must be dropped.
    pub fn apply(&self, key: &AccessKey) -> Vec<String> {
        let key_ref = key_ref(key);
        let credentials = credentials_of(key, &key_ref, &self.max_hash_cost);
        let mut state = self.write();
        let mut stale = remove_key(&mut state, &key_ref);
        let mut ids = Vec::with_capacity(credentials.len());
        for credential in credentials {
            let id = credential.access_key_id.clone();
            if let Some(old_hash) = stale.remove(&id) {
                if old_hash != credential.secret_hash {
                    stale.insert(id.clone(), old_hash);
                }
            }
            ids.push(id.clone());
            state.by_id.insert(id, Arc::new(credential));
        }
        if !ids.is_empty() {
            state.ids_by_key.insert(key_ref, ids);
        }
        stale.into_keys().collect()
    }

    /// Removes a deleted key; returns its access IDs.
    pub fn remove(&self, key: &KeyRef) -> Vec<String> {
        remove_key(&mut self.write(), key).into_keys().collect()
    }

    /// Replaces every key matching `in_scope` with `keys` (a full relist); returns the access IDs
    /// whose cached verifications must be dropped.
    pub fn replace(
        &self,
        in_scope: impl Fn(&KeyRef) -> bool,
        keys: &[Arc<AccessKey>],
    ) -> Vec<String> {
        let listed: HashSet<KeyRef> = keys.iter().map(|key| key_ref(key)).collect();
        let gone: Vec<KeyRef> = self
            .read()
            .ids_by_key
            .keys()
            .filter(|key| in_scope(key) && !listed.contains(*key))
            .cloned()
            .collect();
        let mut stale: Vec<String> = gone.iter().flat_map(|key| self.remove(key)).collect();
        for key in keys {
            stale.extend(self.apply(key));
        }
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
fn remove_key(state: &mut IndexState, key: &KeyRef) -> HashMap<String, Arc<str>> {
    let mut removed = HashMap::new();
    for id in state.ids_by_key.remove(key).unwrap_or_default() {
        // why: an ID copied into another key's status must not be removed on this key's behalf.
        if state
            .by_id
            .get(&id)
            .is_some_and(|c| c.record.key_ref == *key)
        {
            if let Some(credential) = state.by_id.remove(&id) {
                removed.insert(id, credential.secret_hash.clone());
            }
        }
    }
    removed
}

/// The namespace/name of a key.
pub fn key_ref(key: &AccessKey) -> KeyRef {
    KeyRef {
        namespace: key.namespace().unwrap_or_default(),
        name: key.name_any(),
    }
}

/// The current and previous credentials a key's status declares, without those whose hash
/// costs more than `max_hash_cost` (or is no argon2id hash).
fn credentials_of(
    key: &AccessKey,
    key_ref: &KeyRef,
    max_hash_cost: &HashParams,
) -> Vec<Credential> {
    let Some(status) = key.status.as_ref() else {
        return Vec::new();
    };
    let owner = key.spec.owner.username(&key_ref.namespace);
    // why: only what the controller granted counts (policy and owner's permissions); a status
    // without grants grants no scope, never the spec's.
    let scopes = status.granted_scopes.clone().unwrap_or_default();
    let allowed_origins = status
        .granted_origins
        .clone()
        .unwrap_or_else(|| key.spec.allowed_origins.clone());
    let record = Arc::new(KeyRecord {
        key_ref: key_ref.clone(),
        grant_headers: GrantHeaders::of(key_ref, &owner, key.spec.owner.kind, &scopes),
        owner,
        owner_kind: key.spec.owner.kind,
        scopes,
        allowed_origins,
        spec_active: key.spec.active,
        deleting: key.metadata.deletion_timestamp.is_some(),
        phase: status.phase,
        expires_at: status.expires_at,
        last_used_at: status.last_used_at,
        resource_version: key.resource_version(),
    });
    let current = status
        .access_key_id
        .clone()
        .zip(status.secret_hash.clone())
        .map(|(id, hash)| (id, hash, None));
    let previous = status.previous_keys.iter().map(|p| {
        (
            p.access_key_id.clone(),
            p.secret_hash.clone(),
            Some(p.valid_until),
        )
    });
    current
        .into_iter()
        .chain(previous)
        .filter(|(access_key_id, secret_hash, _)| {
            let affordable = hash_cost(secret_hash).is_some_and(|cost| cost.fits_within(max_hash_cost));
            if !affordable {
                tracing::warn!(%key_ref, access_key_id, "hash costlier than the configured ceiling; not served");
            }
            affordable
        })
        .map(|(access_key_id, secret_hash, valid_until)| Credential {
            record: record.clone(),
            access_key_id_header: HeaderValue::from_str(&access_key_id).ok(),
            access_key_id,
            secret_hash: secret_hash.into(),
            valid_until,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::access_key::{
        AccessKeySpec, AccessKeyStatus, KeyOwner, OwnerKind, PreviousKey,
    };

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
        index.apply(&key);
        let record = index.lookup("ID1").unwrap().record.clone();
        assert_eq!(record.scopes, vec!["logs:view".to_string()]);
        assert_eq!(
            record.allowed_origins,
            vec!["https://app.example.com".to_string()]
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
        index.apply(&key);
        let record = index.lookup("ID1").unwrap().record.clone();
        assert!(record.scopes.is_empty());
        let header = record.grant_headers.scopes.clone().unwrap();
        assert_eq!(header.to_str().unwrap(), "");
    }

    #[test]
    fn a_key_being_deleted_is_refused_at_once() {
        let index = KeyIndex::default();
        let mut key = key("a", "k", "ID1", "h", &[("ID0", "h0")]);
        index.apply(&key);
        assert_eq!(index.lookup("ID1").unwrap().usability(Utc::now()), Ok(()));
        key.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        index.apply(&key);
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
        index.apply(&key);
        assert!(index.lookup("ID1").is_none());
        assert!(index.lookup("ID0").is_none());
        let within = self::key("a", "k", "ID1", "h", &[]);
        index.apply(&within);
        assert!(
            index.lookup("ID1").is_some(),
            "hashes within the ceiling are served"
        );
    }

    #[test]
    fn reapplying_reports_only_ids_whose_hash_changed_or_vanished() {
        let index = KeyIndex::default();
        assert!(index
            .apply(&key("a", "k", "ID1", "h1", &[("ID0", "h0")]))
            .is_empty());
        assert_eq!(index.len(), 2);
        assert!(index
            .apply(&key("a", "k", "ID1", "h1", &[("ID0", "h0")]))
            .is_empty());
        assert_eq!(
            index.apply(&key("a", "k", "ID1", "h2", &[("ID0", "h0")])),
            vec!["ID1"]
        );
        assert_eq!(index.apply(&key("a", "k", "ID1", "h2", &[])), vec!["ID0"]);
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
        index.apply(&key("a", "gone", "ID1", "h", &[]));
        index.apply(&key("a", "kept", "ID2", "h", &[]));
        index.apply(&key("b", "other", "ID3", "h", &[]));
        let listed = vec![Arc::new(key("a", "kept", "ID2", "h", &[]))];
        let stale = index.replace(|k| k.namespace == "a", &listed);
        assert_eq!(stale, vec!["ID1"]);
        assert!(index.lookup("ID1").is_none());
        assert!(index.lookup("ID2").is_some());
        assert!(
            index.lookup("ID3").is_some(),
            "other namespaces are untouched"
        );
    }

    #[test]
    fn service_account_owner_is_a_kubernetes_identity() {
        let index = KeyIndex::default();
        let mut sa = key("team", "k", "ID1", "h", &[]);
        sa.spec.owner = KeyOwner {
            kind: OwnerKind::ServiceAccount,
            name: "ci".into(),
        };
        index.apply(&sa);
        let credential = index.lookup("ID1").unwrap();
        assert_eq!(credential.record.owner, "system:serviceaccount:team:ci");
        let headers = &credential.record.grant_headers;
        assert_eq!(
            headers.owner.as_ref().and_then(|v| v.to_str().ok()),
            Some("system:serviceaccount:team:ci")
        );
        assert_eq!(
            headers.owner_kind.as_ref().and_then(|v| v.to_str().ok()),
            Some("ServiceAccount")
        );
    }
}
