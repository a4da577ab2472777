//! What the controller keeps of each Secret keywarden manages: exactly what
//! `issuance::classify` reads (the uids of its owners, its resourceVersion, the issuance record
//! annotations and their seal, verbatim), packed into one allocation, instead of its metadata.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::ResourceExt;

use super::issuance::{self, SecretState};
use super::seal::{RECORD_ANNOTATIONS, RECORD_SEAL_ANNOTATION};
use super::watched_records::WatchedRecords;
use crate::api::AccessKey;
use crate::keys::seal::RecordKey;

/// The annotations `classify` reads: the sealed record and its seal.
// why: verbatim, not parsed: the seal is checked at classification against the key asking,
// over the exact strings, as it is for a Secret read from the API.
const KEPT_ANNOTATIONS: [&str; RECORD_ANNOTATIONS.len() + 1] = {
    let mut names = [RECORD_SEAL_ANNOTATION; RECORD_ANNOTATIONS.len() + 1];
    let mut i = 0;
    while i < RECORD_ANNOTATIONS.len() {
        names[i] = RECORD_ANNOTATIONS[i];
        i += 1;
    }
    names
};

/// Field tags in a packed record (below them: the index of a kept annotation).
const RESOURCE_VERSION: u8 = 0xfe;
const OWNER_UID: u8 = 0xff;

/// One Secret as classification needs it: fields packed as `[tag][u32 LE length][bytes]`.
// why: a Secret's cached metadata with keywarden's annotations took ~1-1.5 KiB per key; this is
// one allocation of ~300 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRecord {
    packed: Box<[u8]>,
}

impl SecretRecord {
    /// The record of a Secret's metadata.
    pub fn of(meta: &ObjectMeta) -> Self {
        let mut packed = Vec::new();
        let mut push = |tag: u8, value: &str| {
            // why: an object is at most a few MiB, so every length fits.
            let Ok(len) = u32::try_from(value.len()) else {
                return;
            };
            packed.push(tag);
            packed.extend_from_slice(&len.to_le_bytes());
            packed.extend_from_slice(value.as_bytes());
        };
        if let Some(version) = &meta.resource_version {
            push(RESOURCE_VERSION, version);
        }
        for owner in meta.owner_references.iter().flatten() {
            push(OWNER_UID, &owner.uid);
        }
        let annotations = meta.annotations.iter().flatten();
        for (name, value) in annotations {
            let index = KEPT_ANNOTATIONS.iter().position(|kept| kept == name);
            if let Some(tag) = index.and_then(|i| u8::try_from(i).ok()) {
                push(tag, value);
            }
        }
        Self {
            packed: packed.into_boxed_slice(),
        }
    }

    /// The packed fields, in order.
    fn fields(&self) -> impl Iterator<Item = (u8, &str)> {
        let mut rest: &[u8] = &self.packed;
        std::iter::from_fn(move || {
            let (&tag, after) = rest.split_first()?;
            let (len, after) = after.split_first_chunk::<4>()?;
            let (value, after) = after.split_at_checked(u32::from_le_bytes(*len) as usize)?;
            rest = after;
            Some((tag, std::str::from_utf8(value).ok()))
        })
        // why: every field was a whole `str`, so none fails; one that did would read as
        // absent, never as another value.
        .filter_map(|(tag, value)| Some((tag, value?)))
    }

    /// The metadata `classify` reads, rebuilt from the record.
    pub fn meta(&self) -> ObjectMeta {
        let mut meta = ObjectMeta::default();
        let mut owners = Vec::new();
        let mut annotations = BTreeMap::new();
        for (tag, value) in self.fields() {
            match tag {
                RESOURCE_VERSION => meta.resource_version = Some(value.to_owned()),
                OWNER_UID => owners.push(OwnerReference {
                    uid: value.to_owned(),
                    ..OwnerReference::default()
                }),
                index => {
                    if let Some(name) = KEPT_ANNOTATIONS.get(usize::from(index)) {
                        annotations.insert((*name).to_owned(), value.to_owned());
                    }
                }
            }
        }
        meta.owner_references = (!owners.is_empty()).then_some(owners);
        meta.annotations = (!annotations.is_empty()).then_some(annotations);
        meta
    }

    /// Classifies the Secret against the key that should own it (see `issuance::classify`).
    pub fn classify(&self, key: &AccessKey, record_key: &RecordKey) -> SecretState {
        issuance::classify(Some(&self.meta()), key, record_key)
    }
}

/// The records of the Secrets keywarden manages, kept from a watch.
#[derive(Default)]
pub struct SecretRecords(WatchedRecords<SecretRecord>);

impl SecretRecords {
    /// The record of Secret `namespace/name`, if the watch has seen it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<SecretRecord> {
        self.0.get(namespace, name)
    }

    /// Classifies the cached Secret `name` in the key's namespace against the key
    /// (`Missing` when the watch has not seen it).
    pub fn classify(&self, name: &str, key: &AccessKey, record_key: &RecordKey) -> SecretState {
        let namespace = key.namespace().unwrap_or_default();
        match self.get(&namespace, name) {
            Some(record) => record.classify(key, record_key),
            None => issuance::classify(None, key, record_key),
        }
    }

    /// Takes in one watch event, as a reflector would (a relist replaces every record).
    pub fn apply(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        self.0
            .apply(event, |secret| SecretRecord::of(&secret.metadata));
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use kube::Resource;

    use super::*;
    use crate::api::{PreviousKey, ACCESS_KEY_ID_ANNOTATION, ISSUED_AT_ANNOTATION};
    use crate::controller::issuance::{Issuance, PREVIOUS_KEYS_ANNOTATION};

    fn key(uid: &str) -> AccessKey {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "keywarden.io/v1alpha1",
            "kind": "AccessKey",
            "metadata": {"name": "ci", "namespace": "team-a", "uid": uid},
            "spec": {"owner": {"kind": "User", "name": "alice"}},
        }))
        .unwrap()
    }

    fn issuance(previous: bool) -> Issuance {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        Issuance {
            access_key_id: "AKWTEST".into(),
            rotate_generation: 2,
            issued_at: at + chrono::Duration::seconds(60),
            first_issued_at: at,
            secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            previous_keys: previous
                .then(|| PreviousKey {
                    access_key_id: "AKWOLD".into(),
                    secret_hash: "$argon2id$old".into(),
                    valid_until: at + chrono::Duration::seconds(360),
                })
                .into_iter()
                .collect(),
        }
    }

    /// A Secret's metadata as the API server returns it: labels, managedFields, other
    /// annotations, an owner reference to `owner` (if any).
    fn secret_meta(owner: Option<&AccessKey>, annotations: BTreeMap<String, String>) -> ObjectMeta {
        let mut all = BTreeMap::from([
            ("example.com/note".to_string(), "x".to_string()),
            ("keywarden.io/unrelated".to_string(), "y".to_string()),
        ]);
        all.extend(annotations);
        ObjectMeta {
            name: Some("ci-access-key".into()),
            namespace: Some("team-a".into()),
            uid: Some("secret-uid".into()),
            resource_version: Some("42".into()),
            labels: Some(BTreeMap::from([("team".into(), "a".into())])),
            annotations: Some(all),
            owner_references: owner
                .and_then(|k| k.controller_owner_ref(&()))
                .map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }

    fn edited(
        annotations: &BTreeMap<String, String>,
        name: &str,
        value: Option<&str>,
    ) -> BTreeMap<String, String> {
        let mut edited = annotations.clone();
        match value {
            Some(value) => edited.insert(name.into(), value.into()),
            None => edited.remove(name),
        };
        edited
    }

    #[test]
    fn a_record_classifies_exactly_like_the_secret_it_was_taken_from() {
        let record_key = RecordKey::generate();
        let key = key("uid-1");
        let other = self::key("uid-2");
        let sealed = issuance(false).sealed_annotations(&key, &record_key);
        let rotated = issuance(true).sealed_annotations(&key, &record_key);
        let mut non_controlling = secret_meta(Some(&key), sealed.clone());
        non_controlling.owner_references.as_mut().unwrap()[0].controller = Some(false);
        let mut two_owners = secret_meta(Some(&other), sealed.clone());
        two_owners
            .owner_references
            .as_mut()
            .unwrap()
            .extend(key.controller_owner_ref(&()));
        let mut no_version = secret_meta(Some(&key), sealed.clone());
        no_version.resource_version = None;
        let mut no_annotations = secret_meta(Some(&key), BTreeMap::new());
        no_annotations.annotations = None;
        let cases = [
            ("sealed", secret_meta(Some(&key), sealed.clone())),
            (
                "sealed with previous keys",
                secret_meta(Some(&key), rotated.clone()),
            ),
            (
                "previous keys removed",
                secret_meta(Some(&key), edited(&rotated, PREVIOUS_KEYS_ANNOTATION, None)),
            ),
            (
                "issued-at extended",
                secret_meta(
                    Some(&key),
                    edited(&sealed, ISSUED_AT_ANNOTATION, Some("2099-01-01T00:00:00Z")),
                ),
            ),
            (
                "access ID replaced",
                secret_meta(
                    Some(&key),
                    edited(&sealed, ACCESS_KEY_ID_ANNOTATION, Some("AKWX")),
                ),
            ),
            (
                "seal removed",
                secret_meta(Some(&key), edited(&sealed, RECORD_SEAL_ANNOTATION, None)),
            ),
            (
                "empty previous keys added",
                secret_meta(
                    Some(&key),
                    edited(&sealed, PREVIOUS_KEYS_ANNOTATION, Some("")),
                ),
            ),
            (
                "sealed for another key",
                secret_meta(
                    Some(&key),
                    issuance(false).sealed_annotations(&other, &record_key),
                ),
            ),
            (
                "unsealed legacy record",
                secret_meta(Some(&key), issuance(false).annotations()),
            ),
            ("owned, no record", secret_meta(Some(&key), BTreeMap::new())),
            ("owned, no annotations at all", no_annotations),
            (
                "owned by another key",
                secret_meta(Some(&other), sealed.clone()),
            ),
            ("no owner", secret_meta(None, sealed.clone())),
            ("owned, not controlling", non_controlling),
            ("two owners", two_owners),
            ("no resource version", no_version),
        ];
        for (case, meta) in cases {
            let expected = issuance::classify(Some(&meta), &key, &record_key);
            let record = SecretRecord::of(&meta);
            assert_eq!(record.classify(&key, &record_key), expected, "{case}");
            assert_eq!(
                record.classify(&other, &record_key),
                issuance::classify(Some(&meta), &other, &record_key),
                "{case}, for another key"
            );
        }
    }

    #[test]
    fn the_cases_cover_every_state() {
        let record_key = RecordKey::generate();
        let key = key("uid-1");
        let sealed = issuance(true).sealed_annotations(&key, &record_key);
        let held = SecretRecord::of(&secret_meta(Some(&key), sealed.clone()));
        assert!(matches!(
            held.classify(&key, &record_key),
            SecretState::Held { issuance: i, resource_version: Some(v) } if i == issuance(true) && v == "42"
        ));
        let unsealed = SecretRecord::of(&secret_meta(
            Some(&key),
            edited(&sealed, ISSUED_AT_ANNOTATION, Some("2099-01-01T00:00:00Z")),
        ));
        assert_eq!(
            unsealed.classify(&key, &record_key),
            SecretState::Unsealed {
                resource_version: Some("42".into())
            }
        );
        let foreign = SecretRecord::of(&secret_meta(None, sealed));
        assert_eq!(foreign.classify(&key, &record_key), SecretState::Foreign);
        let records = SecretRecords::default();
        assert_eq!(
            records.classify("ci-access-key", &key, &record_key),
            SecretState::Missing
        );
    }

    #[test]
    fn a_record_keeps_only_what_classify_reads() {
        let record_key = RecordKey::generate();
        let key = key("uid-1");
        let sealed = issuance(false).sealed_annotations(&key, &record_key);
        let meta = SecretRecord::of(&secret_meta(Some(&key), sealed.clone())).meta();
        assert_eq!(meta.annotations, Some(sealed));
        assert_eq!(meta.resource_version.as_deref(), Some("42"));
        assert_eq!(meta.owner_references.unwrap()[0].uid, "uid-1");
        assert!(meta.labels.is_none() && meta.name.is_none() && meta.uid.is_none());
    }

    fn listed(name: &str, key: &AccessKey) -> PartialObjectMeta<Secret> {
        let mut meta = secret_meta(Some(key), BTreeMap::new());
        meta.name = Some(name.into());
        PartialObjectMeta {
            metadata: meta,
            ..PartialObjectMeta::default()
        }
    }

    #[test]
    fn records_follow_the_watch_and_a_relist_replaces_them_once_complete() {
        let key = key("uid-1");
        let records = SecretRecords::default();
        records.apply(&watcher::Event::Apply(listed("gone", &key)));
        records.apply(&watcher::Event::Apply(listed("deleted", &key)));
        records.apply(&watcher::Event::Delete(listed("deleted", &key)));
        assert!(records.get("team-a", "deleted").is_none());
        records.apply(&watcher::Event::Init);
        records.apply(&watcher::Event::InitApply(listed("kept", &key)));
        assert!(
            records.get("team-a", "gone").is_some(),
            "records stay until the relist is complete"
        );
        records.apply(&watcher::Event::InitDone);
        assert!(records.get("team-a", "gone").is_none());
        assert!(records.get("team-a", "kept").is_some());
    }
}
