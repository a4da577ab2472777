//! The key's Secret: the source of truth of every issuance, written exactly once per issuance.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use super::{Error, Result};
use crate::api::{
    AccessKey, AccessKeyStatus, PreviousKey, SecretType, ACCESS_KEY_ID_ANNOTATION,
    ACCESS_KEY_LABEL, ISSUANCE_GENERATION_ANNOTATION, ISSUED_AT_ANNOTATION, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE, PREVIOUS_KEY_ID_ANNOTATION,
};
use crate::keys::hash::{hash_secret, HashParams};
use crate::keys::material::{AccessKeyId, SecretKey};
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
    pub fn is_rotation(&self) -> bool {
        self.issued_at != self.first_issued_at
    }

    fn annotations(&self) -> BTreeMap<String, String> {
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
    /// A Secret of that name that this key does not own (or whose annotations were removed).
    Foreign,
    /// The Secret of this key, with its issuance and resource version.
    Held {
        issuance: Issuance,
        resource_version: Option<String>,
    },
}

/// Classifies a Secret's metadata against the key that should own it.
pub fn classify(meta: Option<&ObjectMeta>, key: &AccessKey) -> SecretState {
    let Some(meta) = meta else {
        return SecretState::Missing;
    };
    let owned = meta
        .owner_references
        .iter()
        .flatten()
        .any(|owner| Some(&owner.uid) == key.meta().uid.as_ref());
    let issuance = meta
        .annotations
        .as_ref()
        .and_then(Issuance::from_annotations);
    match issuance {
        Some(issuance) if owned => SecretState::Held {
            issuance,
            resource_version: meta.resource_version.clone(),
        },
        _ => SecretState::Foreign,
    }
}

/// A freshly generated issuance: the secret lives only here until it is written.
pub struct NewIssuance {
    pub id: AccessKeyId,
    secret: SecretKey,
    pub record: Issuance,
}

/// Runs argon2id work (`hashing`) on a blocking thread once one of `hash_slots` is free.
pub async fn with_hash_slot<T: Send + 'static>(
    hash_slots: &tokio::sync::Semaphore,
    hashing: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    // why: each argon2id hash holds its memory cost (19 MiB by default); one per core at a time.
    let _slot = hash_slots
        .acquire()
        .await
        .map_err(|_| Error::MissingField("hash slot"))?;
    // why: argon2id takes tens of milliseconds of CPU; it must not block the reconcilers.
    tokio::task::spawn_blocking(hashing)
        .await
        .map_err(Error::HashTask)
}

/// Generates a new ID and secret and hashes the secret (off the async runtime).
pub async fn generate(
    key: &AccessKey,
    prior: Option<&Issuance>,
    grace_ends_at: DateTime<Utc>,
    now: DateTime<Utc>,
    params: HashParams,
    hash_slots: &tokio::sync::Semaphore,
) -> Result<NewIssuance> {
    let id = AccessKeyId::generate();
    let secret = SecretKey::generate();
    let (secret, hash) = with_hash_slot(hash_slots, move || {
        let hash = hash_secret(&secret, &params);
        (secret, hash)
    })
    .await?;
    let secret_hash = hash.map_err(Error::HashSecret)?;
    let previous_keys = prior
        .map(|prior| {
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

/// The Secret holding `issuance` for `key`; `resource_version` makes a replace conditional.
pub fn desired_secret(
    key: &AccessKey,
    issuance: &NewIssuance,
    resource_version: Option<String>,
) -> Result<Secret> {
    let name = key.name_any();
    let template = &key.spec.secret;
    let mut labels = template.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    labels.insert(ACCESS_KEY_LABEL.into(), name.clone());
    let mut annotations = template.annotations.clone();
    annotations.extend(issuance.record.annotations());

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

    #[test]
    fn first_issuance_is_not_a_rotation() {
        let mut first = record();
        first.issued_at = first.first_issued_at;
        assert!(!first.is_rotation());
        assert!(record().is_rotation());
    }
}
