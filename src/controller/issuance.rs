//! The key's Secret: the source of truth of every issuance, written exactly once per issuance.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use super::hash_pool::HashPool;
use super::hashing;
use super::seal;
use super::{Error, Result};
use crate::api::{
    AccessKey, AccessKeyStatus, PreviousKey, SecretType, ACCESS_KEY_ID_ANNOTATION,
    ACCESS_KEY_LABEL, ISSUANCE_GENERATION_ANNOTATION, ISSUED_AT_ANNOTATION, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE, PREVIOUS_KEY_ID_ANNOTATION,
};
use crate::keys::hash::HashParams;
use crate::keys::material::{AccessKeyId, SecretKey};
use crate::keys::seal::RecordKey;
use crate::keys::token::encode_token;

/// Secret annotation: argon2id hash of the current secret (hashes are not secrets).
pub const SECRET_HASH_ANNOTATION: &str = "keywarden.io/secret-hash";
/// Secret annotation: when the key was first issued (RFC 3339).
pub const FIRST_ISSUED_AT_ANNOTATION: &str = "keywarden.io/first-issued-at";
/// Secret annotation: JSON list of previous credentials still in their grace period.
pub const PREVIOUS_KEYS_ANNOTATION: &str = "keywarden.io/previous-keys";

/// Secret data key of the access ID.
pub const DATA_ACCESS_KEY_ID: &str = "accessKeyId";
/// Secret data key of the secret.
pub const DATA_ACCESS_KEY: &str = "accessKey";
/// Secret data key of the bearer token.
pub const DATA_TOKEN: &str = "token";
/// Secret data key of the access ID in a `kubernetes.io/basic-auth` Secret.
pub const DATA_USERNAME: &str = "username";
/// Secret data key of the secret in a `kubernetes.io/basic-auth` Secret.
pub const DATA_PASSWORD: &str = "password";

/// What a Secret records about the issuance it holds; everything status needs, no secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Issuance {
    pub access_key_id: String,
    /// The `spec.rotateGeneration` this issuance answered.
    pub rotate_generation: i64,
    /// When the current credentials were issued.
    pub issued_at: DateTime<Utc>,
    /// When the key was first issued.
    pub first_issued_at: DateTime<Utc>,
    pub secret_hash: String,
    /// Earlier credentials with the end of their grace period.
    pub previous_keys: Vec<PreviousKey>,
}

fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Issuance {
    /// Reads the issuance from a Secret's annotations; `None` when they don't describe one.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Option<Self> {
        let issued_at = parse_time(annotations.get(ISSUED_AT_ANNOTATION)?)?;
        Some(Self {
            access_key_id: annotations.get(ACCESS_KEY_ID_ANNOTATION)?.clone(),
            rotate_generation: annotations
                .get(ISSUANCE_GENERATION_ANNOTATION)?
                .parse()
                .ok()?,
            issued_at,
            first_issued_at: annotations
                .get(FIRST_ISSUED_AT_ANNOTATION)
                .and_then(|s| parse_time(s))
                .unwrap_or(issued_at),
            secret_hash: annotations.get(SECRET_HASH_ANNOTATION)?.clone(),
            previous_keys: annotations
                .get(PREVIOUS_KEYS_ANNOTATION)
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default(),
        })
    }

    /// The issuance a status remembers, used when its Secret is gone.
    pub fn from_status(status: &AccessKeyStatus) -> Option<Self> {
        let first_issued_at = status.issued_at?;
        Some(Self {
            access_key_id: status.access_key_id.clone()?,
            rotate_generation: status.observed_rotate_generation.unwrap_or_default(),
            issued_at: status.rotated_at.unwrap_or(first_issued_at),
            first_issued_at,
            secret_hash: status.secret_hash.clone()?,
            previous_keys: status.previous_keys.clone(),
        })
    }

    /// Whether the current credentials come from a rotation.
    // why: times are whole seconds, so a rotation within the second of the first issuance has
    // the same time; the credentials it replaced, kept for the grace period, still tell.
    // (Without them the two times are equal, and so is every deadline counted from either.)
    pub fn is_rotation(&self) -> bool {
        self.issued_at != self.first_issued_at || !self.previous_keys.is_empty()
    }

    /// The record annotations (unsealed).
    pub(super) fn annotations(&self) -> BTreeMap<String, String> {
        let mut annotations = BTreeMap::from([
            (ACCESS_KEY_ID_ANNOTATION.into(), self.access_key_id.clone()),
            (
                ISSUANCE_GENERATION_ANNOTATION.into(),
                self.rotate_generation.to_string(),
            ),
            (ISSUED_AT_ANNOTATION.into(), format_time(self.issued_at)),
            (
                FIRST_ISSUED_AT_ANNOTATION.into(),
                format_time(self.first_issued_at),
            ),
            (SECRET_HASH_ANNOTATION.into(), self.secret_hash.clone()),
        ]);
        if let Some(previous) = self.previous_keys.last() {
            annotations.insert(
                PREVIOUS_KEY_ID_ANNOTATION.into(),
                previous.access_key_id.clone(),
            );
            if let Ok(json) = serde_json::to_string(&self.previous_keys) {
                annotations.insert(PREVIOUS_KEYS_ANNOTATION.into(), json);
            }
        }
        annotations
    }
}

/// What the key's Secret holds, as far as the controller is concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum SecretState {
    /// No Secret of that name.
    Missing,
    /// A Secret of that name that this key does not own.
    Foreign,
    /// The Secret of this key, but its annotations are not a record the controller sealed for
    /// this key (edited, forged, replayed from another key, or written before records were
    /// sealed): nothing in them is believed.
    Unsealed { resource_version: Option<String> },
    /// The Secret of this key, with its issuance and resource version.
    Held {
        issuance: Issuance,
        resource_version: Option<String>,
    },
}

/// Classifies a Secret's metadata against the key that should own it; its record is believed
/// only when sealed by `record_key` for this key.
pub fn classify(meta: Option<&ObjectMeta>, key: &AccessKey, record_key: &RecordKey) -> SecretState {
    let Some(meta) = meta else {
        return SecretState::Missing;
    };
    let owned = meta
        .owner_references
        .iter()
        .flatten()
        .any(|owner| Some(&owner.uid) == key.meta().uid.as_ref());
    if !owned {
        return SecretState::Foreign;
    }
    let resource_version = meta.resource_version.clone();
    let issuance = meta
        .annotations
        .as_ref()
        .filter(|annotations| seal::is_sealed(key, annotations, record_key))
        .and_then(Issuance::from_annotations);
    match issuance {
        Some(issuance) => SecretState::Held {
            issuance,
            resource_version,
        },
        None => SecretState::Unsealed { resource_version },
    }
}

/// A freshly generated issuance: the secret lives only here until it is written.
pub struct NewIssuance {
    pub id: AccessKeyId,
    secret: SecretKey,
    pub record: Issuance,
}

/// Runs argon2id work (`hashing`) on one of `hash_pool`'s threads.
// why: argon2id takes tens of milliseconds of CPU; it must not block the reconcilers, and each
// hash holds its memory cost (19 MiB by default), so one per core runs at a time.
pub async fn with_hash_pool<T: Send + 'static>(
    hash_pool: &HashPool,
    hashing: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    hash_pool.run(hashing).await.map_err(Error::HashTask)
}

/// Generates a new ID and secret and hashes the secret (off the async runtime). The prior
/// credentials stay valid until `grace_ends_at`; with `None`, none of them stays valid.
pub async fn generate(
    key: &AccessKey,
    prior: Option<&Issuance>,
    grace_ends_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    params: HashParams,
    hash_pool: &HashPool,
) -> Result<NewIssuance> {
    let id = AccessKeyId::generate();
    let secret = SecretKey::generate();
    let (secret, hash) = with_hash_pool(hash_pool, move || {
        let hash = hashing::hash_secret(&secret, &params);
        (secret, hash)
    })
    .await?;
    let secret_hash = hash.map_err(Error::HashSecret)?;
    let previous_keys = prior
        .zip(grace_ends_at)
        .map(|(prior, grace_ends_at)| {
            let mut kept: Vec<PreviousKey> = prior
                .previous_keys
                .iter()
                .filter(|p| p.valid_until > now)
                .cloned()
                .collect();
            kept.push(PreviousKey {
                access_key_id: prior.access_key_id.clone(),
                secret_hash: prior.secret_hash.clone(),
                valid_until: grace_ends_at,
            });
            kept.retain(|p| p.valid_until > now);
            kept
        })
        .unwrap_or_default();
    let record = Issuance {
        access_key_id: id.as_str().to_string(),
        rotate_generation: key.spec.rotate_generation,
        issued_at: now,
        first_issued_at: prior.map_or(now, |p| p.first_issued_at),
        secret_hash,
        previous_keys,
    };
    Ok(NewIssuance { id, secret, record })
}

/// The Secret holding `issuance` for `key`, its record sealed under `record_key`;
/// `resource_version` makes a replace conditional.
pub fn desired_secret(
    key: &AccessKey,
    issuance: &NewIssuance,
    record_key: &RecordKey,
    resource_version: Option<String>,
) -> Result<Secret> {
    let name = key.name_any();
    let template = &key.spec.secret;
    // why: only `spec.secret` contributes labels and annotations, never the key's own metadata:
    // GitOps tools track objects by theirs (Argo CD, Flux), and an owned Secret carrying them
    // would be reported out of sync or pruned.
    // why: `keywarden.io/` keys are the controller's record; a spec never contributes one (the
    // CRD refuses them too, but keys stored before that rule may still carry some).
    let not_reserved = |(k, _): &(&String, &String)| !is_reserved(k);
    let mut labels: BTreeMap<String, String> = template
        .labels
        .iter()
        .filter(not_reserved)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    labels.insert(ACCESS_KEY_LABEL.into(), name.clone());
    let mut annotations: BTreeMap<String, String> = template
        .annotations
        .iter()
        .filter(not_reserved)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.extend(issuance.record.sealed_annotations(key, record_key));

    let secret = issuance.secret.expose();
    let token = encode_token(&issuance.id, &issuance.secret);
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let mut data = BTreeMap::from([
        (DATA_ACCESS_KEY_ID.to_string(), bytes(issuance.id.as_str())),
        (DATA_ACCESS_KEY.to_string(), bytes(secret)),
        (DATA_TOKEN.to_string(), bytes(&token)),
    ]);
    if template.type_ == SecretType::BasicAuth {
        data.insert(DATA_USERNAME.into(), bytes(issuance.id.as_str()));
        data.insert(DATA_PASSWORD.into(), bytes(secret));
    }
    let owner = key
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(key.spec.secret_name(&name)),
            namespace: key.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            resource_version,
            ..ObjectMeta::default()
        },
        type_: Some(template.type_.as_str().to_string()),
        data: Some(data),
        ..Secret::default()
    })
}

/// Whether a label or annotation key belongs to the controller (`keywarden.io/`, or a
/// subdomain of it).
pub fn is_reserved(name: &str) -> bool {
    name.split_once('/')
        .is_some_and(|(prefix, _)| prefix == "keywarden.io" || prefix.ends_with(".keywarden.io"))
}

/// Result of an attempt to write an issuance.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The Secret now holds the new issuance, at this resource version.
    Written { resource_version: Option<String> },
    /// Someone else wrote first (AlreadyExists or a stale resource version): re-read, don't retry.
    Lost,
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

/// Creates the Secret of a first issuance; a Secret that already exists is never overwritten.
pub async fn create_secret(api: &Api<Secret>, secret: &Secret) -> Result<WriteOutcome> {
    match api.create(&PostParams::default(), secret).await {
        Ok(written) => Ok(WriteOutcome::Written {
            resource_version: written.metadata.resource_version,
        }),
        Err(err) if is_status(&err, 409) => Ok(WriteOutcome::Lost),
        Err(err) => Err(Error::CreateSecret(err)),
    }
}

/// Replaces the Secret with a rotation, on condition that it is still the version that was read.
pub async fn replace_secret(api: &Api<Secret>, secret: &Secret) -> Result<WriteOutcome> {
    let name = secret.name_any();
    match api.replace(&name, &PostParams::default(), secret).await {
        Ok(written) => Ok(WriteOutcome::Written {
            resource_version: written.metadata.resource_version,
        }),
        Err(err) if is_status(&err, 409) || is_status(&err, 404) => Ok(WriteOutcome::Lost),
        Err(err) => Err(Error::ReplaceSecret(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Issuance {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        Issuance {
            access_key_id: "AKWTEST".into(),
            rotate_generation: 2,
            issued_at: at + chrono::Duration::seconds(60),
            first_issued_at: at,
            secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            previous_keys: vec![PreviousKey {
                access_key_id: "AKWOLD".into(),
                secret_hash: "$argon2id$old".into(),
                valid_until: at + chrono::Duration::seconds(360),
            }],
        }
    }

    #[test]
    fn issuance_round_trips_through_secret_annotations() {
        let annotations = record().annotations();
        assert_eq!(Issuance::from_annotations(&annotations), Some(record()));
        assert_eq!(annotations[PREVIOUS_KEY_ID_ANNOTATION], "AKWOLD");
    }

    #[test]
    fn a_secret_without_issuance_annotations_holds_no_issuance() {
        let mut annotations = record().annotations();
        annotations.remove(ACCESS_KEY_ID_ANNOTATION);
        assert_eq!(Issuance::from_annotations(&annotations), None);
    }

    fn key(uid: &str) -> AccessKey {
        let mut key: AccessKey = serde_json::from_value(serde_json::json!({
            "apiVersion": "keywarden.io/v1alpha1",
            "kind": "AccessKey",
            "metadata": {"name": "ci", "namespace": "team-a", "uid": uid},
            "spec": {"owner": {"kind": "User", "name": "alice"}},
        }))
        .unwrap();
        key.spec.secret.annotations = BTreeMap::from([
            ("team".to_string(), "a".to_string()),
            (
                PREVIOUS_KEYS_ANNOTATION.to_string(),
                r#"[{"accessKeyId":"AKWFORGED","secretHash":"x","validUntil":"2099-01-01T00:00:00Z"}]"#
                    .to_string(),
            ),
        ]);
        key.spec.secret.labels =
            BTreeMap::from([("audit.keywarden.io/tier".to_string(), "x".to_string())]);
        key
    }

    fn owned_meta(key: &AccessKey, annotations: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            owner_references: key.controller_owner_ref(&()).map(|o| vec![o]),
            annotations: Some(annotations),
            resource_version: Some("3".into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_sealed_record_is_held_and_any_edit_unseals_it() {
        let record_key = RecordKey::generate();
        let key = key("uid-1");
        let sealed = record().sealed_annotations(&key, &record_key);
        assert!(matches!(
            classify(Some(&owned_meta(&key, sealed.clone())), &key, &record_key),
            SecretState::Held { issuance, .. } if issuance == record()
        ));
        let mut extended = sealed.clone();
        extended.insert(ISSUED_AT_ANNOTATION.into(), "2099-01-01T00:00:00Z".into());
        let mut forged_previous = sealed.clone();
        forged_previous.insert(PREVIOUS_KEYS_ANNOTATION.into(), "[]".into());
        let mut unsealed = sealed.clone();
        unsealed.remove(seal::RECORD_SEAL_ANNOTATION);
        for edited in [extended, forged_previous, unsealed, record().annotations()] {
            assert_eq!(
                classify(Some(&owned_meta(&key, edited)), &key, &record_key),
                SecretState::Unsealed {
                    resource_version: Some("3".into())
                }
            );
        }
    }

    #[test]
    fn a_record_sealed_for_another_key_or_under_another_record_key_is_not_believed() {
        let record_key = RecordKey::generate();
        let key = key("uid-1");
        let other = self::key("uid-2");
        let copied = record().sealed_annotations(&other, &record_key);
        assert!(matches!(
            classify(Some(&owned_meta(&key, copied)), &key, &record_key),
            SecretState::Unsealed { .. }
        ));
        let foreign_seal = record().sealed_annotations(&key, &RecordKey::generate());
        assert!(matches!(
            classify(Some(&owned_meta(&key, foreign_seal)), &key, &record_key),
            SecretState::Unsealed { .. }
        ));
    }

    #[test]
    fn the_secret_template_never_contributes_keywarden_keys() {
        let record_key = RecordKey::generate();
        let key = key("uid-1");
        let mut first = record();
        first.previous_keys.clear();
        let issuance = NewIssuance {
            id: AccessKeyId::generate(),
            secret: SecretKey::generate(),
            record: first,
        };
        let secret = desired_secret(&key, &issuance, &record_key, None).unwrap();
        let annotations = secret.metadata.annotations.clone().unwrap();
        assert_eq!(annotations["team"], "a");
        assert!(!annotations.contains_key(PREVIOUS_KEYS_ANNOTATION));
        assert!(!secret.labels().contains_key("audit.keywarden.io/tier"));
        assert!(matches!(
            classify(Some(&secret.metadata), &key, &record_key),
            SecretState::Held { issuance, .. } if issuance.previous_keys.is_empty()
        ));
    }

    #[test]
    fn a_resealed_record_is_held_even_with_stale_record_annotations_beside_it() {
        let record_key = RecordKey::generate();
        let key = key("uid-1");
        let mut status = record();
        status.previous_keys.clear();
        let mut legacy = record().annotations();
        legacy.insert("team".into(), "a".into());
        let patch = seal::reseal_patch(&status, &key, &record_key, Some("3"));
        let mut patched = legacy.clone();
        for (name, value) in patch["metadata"]["annotations"].as_object().unwrap() {
            match value.as_str() {
                Some(v) => patched.insert(name.clone(), v.to_string()),
                None => patched.remove(name),
            };
        }
        assert_eq!(patch["metadata"]["resourceVersion"], "3");
        assert_eq!(patched["team"], "a");
        assert!(matches!(
            classify(Some(&owned_meta(&key, patched)), &key, &record_key),
            SecretState::Held { issuance, .. } if issuance == status
        ));
        let now = record().issued_at;
        assert!(
            !seal::is_legacy_record_of(&legacy, &status, now),
            "a valid previous key differs"
        );
        let mut without_previous = legacy.clone();
        without_previous.remove(PREVIOUS_KEYS_ANNOTATION);
        assert!(seal::is_legacy_record_of(&without_previous, &status, now));
        let mut forged_seal = without_previous;
        forged_seal.insert(seal::RECORD_SEAL_ANNOTATION.into(), "hs256.forged".into());
        assert!(
            !seal::is_legacy_record_of(&forged_seal, &status, now),
            "tampered, not legacy"
        );
    }

    #[test]
    fn reserved_names_are_keywarden_io_and_its_subdomains() {
        assert!(is_reserved("keywarden.io/previous-keys"));
        assert!(is_reserved("audit.keywarden.io/x"));
        assert!(!is_reserved("example.com/keywarden.io"));
        assert!(!is_reserved("notkeywarden.io/x"));
        assert!(!is_reserved("team"));
    }

    #[test]
    fn first_issuance_is_not_a_rotation() {
        let mut first = record();
        first.issued_at = first.first_issued_at;
        first.previous_keys.clear();
        assert!(!first.is_rotation());
        assert!(record().is_rotation());
    }

    #[test]
    fn a_rotation_within_the_second_of_the_first_issuance_is_still_a_rotation() {
        let mut same_second = record();
        same_second.issued_at = same_second.first_issued_at;
        assert!(same_second.is_rotation());
    }
}
