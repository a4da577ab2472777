//! The seal on the issuance record in a key's Secret annotations: only a record the controller
//! sealed for this very key (UID, namespace, name) under its record key is believed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::Resource;

use super::issuance::{
    Issuance, FIRST_ISSUED_AT_ANNOTATION, PREVIOUS_KEYS_ANNOTATION, SECRET_HASH_ANNOTATION,
};
use crate::api::{
    AccessKey, PreviousKey, ACCESS_KEY_ID_ANNOTATION, ISSUANCE_GENERATION_ANNOTATION,
    ISSUED_AT_ANNOTATION, PREVIOUS_KEY_ID_ANNOTATION,
};
use crate::keys::seal::RecordKey;

/// Secret annotation: the controller's seal over the record annotations and the key's identity.
pub const RECORD_SEAL_ANNOTATION: &str = "keywarden.io/record-seal";

/// The annotations that make up an issuance record, in the order they are sealed.
pub(super) const RECORD_ANNOTATIONS: [&str; 7] = [
    ACCESS_KEY_ID_ANNOTATION,
    ISSUANCE_GENERATION_ANNOTATION,
    ISSUED_AT_ANNOTATION,
    FIRST_ISSUED_AT_ANNOTATION,
    SECRET_HASH_ANNOTATION,
    PREVIOUS_KEY_ID_ANNOTATION,
    PREVIOUS_KEYS_ANNOTATION,
];

/// What a record's seal covers: the key (UID, namespace, name) and every record annotation.
fn sealed_fields<'a>(
    key: &'a AccessKey,
    annotations: &'a BTreeMap<String, String>,
) -> Vec<&'a str> {
    let meta = key.meta();
    let identity =
        [&meta.uid, &meta.namespace, &meta.name].map(|field| field.as_deref().unwrap_or_default());
    // why: an absent annotation must not seal like an empty one; NUL is in no annotation value.
    let record = RECORD_ANNOTATIONS.map(|name| annotations.get(name).map_or("\0", String::as_str));
    identity.into_iter().chain(record).collect()
}

/// Whether `annotations` hold a record sealed by `record_key` for `key`.
pub fn is_sealed(
    key: &AccessKey,
    annotations: &BTreeMap<String, String>,
    record_key: &RecordKey,
) -> bool {
    annotations
        .get(RECORD_SEAL_ANNOTATION)
        .is_some_and(|seal| record_key.verify(&sealed_fields(key, annotations), seal))
}

impl Issuance {
    /// The record annotations, sealed for `key` under `record_key`.
    pub fn sealed_annotations(
        &self,
        key: &AccessKey,
        record_key: &RecordKey,
    ) -> BTreeMap<String, String> {
        let mut annotations = self.annotations();
        let seal = record_key.seal(&sealed_fields(key, &annotations));
        annotations.insert(RECORD_SEAL_ANNOTATION.into(), seal);
        annotations
    }
}

/// A merge patch that seals `issuance` onto the Secret at `resource_version` (a precondition):
/// the record annotations become exactly the sealed ones.
pub fn reseal_patch(
    issuance: &Issuance,
    key: &AccessKey,
    record_key: &RecordKey,
    resource_version: Option<&str>,
) -> serde_json::Value {
    let sealed = issuance.sealed_annotations(key, record_key);
    let mut annotations = serde_json::Map::new();
    // why: a stale record annotation left beside the sealed ones would break the seal.
    for name in RECORD_ANNOTATIONS {
        annotations.insert(name.to_string(), serde_json::Value::Null);
    }
    for (name, value) in sealed {
        annotations.insert(name, serde_json::Value::String(value));
    }
    serde_json::json!({
        "metadata": {"resourceVersion": resource_version, "annotations": annotations}
    })
}

/// Whether unsealed annotations hold a record written before records were sealed (no seal at
/// all) that claims exactly the issuance the status holds, previous keys still valid at `now`
/// included: sealing it then asserts nothing the status does not.
pub fn is_legacy_record_of(
    annotations: &BTreeMap<String, String>,
    status: &Issuance,
    now: DateTime<Utc>,
) -> bool {
    if annotations.contains_key(RECORD_SEAL_ANNOTATION) {
        return false;
    }
    let Some(claimed) = Issuance::from_annotations(annotations) else {
        return false;
    };
    let valid = |keys: &[PreviousKey]| -> Vec<PreviousKey> {
        keys.iter()
            .filter(|p| p.valid_until > now)
            .cloned()
            .collect()
    };
    claimed.access_key_id == status.access_key_id
        && claimed.secret_hash == status.secret_hash
        && claimed.issued_at == status.issued_at
        && claimed.first_issued_at == status.first_issued_at
        && valid(&claimed.previous_keys) == valid(&status.previous_keys)
}
