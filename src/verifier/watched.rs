//! The verifier's view of an `AccessKey`: only the fields a decision needs, read straight from
//! the API server's JSON.
//!
//! why: the full object (managed fields, `last-applied-configuration` annotations, conditions,
//! scope reviews) is most of its size; fields this type does not name are skipped while parsing
//! and never allocated, so a watch page costs a fraction of the memory of `AccessKey`s.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use serde::{Deserialize, Deserializer};

use crate::api::access_key::{AccessKey, KeyOwner, Phase, PreviousKey};

/// An `AccessKey` as the verifier watches it.
#[derive(Clone, Debug, Deserialize)]
pub struct WatchedKey {
    /// Name, namespace, `resourceVersion` and `deletionTimestamp` only.
    #[serde(deserialize_with = "slim_metadata")]
    pub metadata: ObjectMeta,
    pub spec: WatchedSpec,
    #[serde(default)]
    pub status: Option<WatchedStatus>,
}

/// The spec fields a decision reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedSpec {
    pub owner: KeyOwner,
    /// Served only when the status has no `grantedOrigins` (keys issued by older controllers).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_true")]
    pub active: bool,
}

fn default_true() -> bool {
    true
}

/// The status fields a decision (and last-use recording) reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedStatus {
    #[serde(default)]
    pub phase: Option<Phase>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_hash: Option<String>,
    #[serde(default)]
    pub previous_keys: Vec<PreviousKey>,
    #[serde(default)]
    pub granted_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub granted_origins: Option<Vec<String>>,
    #[serde(default)]
    pub issued_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub rotated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reactivated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl WatchedStatus {
    /// When the unused period of the current issuance starts counting, before any use: the
    /// latest of issuance, rotation and reactivation (see `keys::schedule::unused_deadline`).
    pub fn unused_basis(&self) -> Option<DateTime<Utc>> {
        [self.issued_at, self.rotated_at, self.reactivated_at]
            .into_iter()
            .flatten()
            .max()
    }
}

/// The metadata fields the watch and the index read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMetadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    deletion_timestamp: Option<Time>,
}

fn slim_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let slim = SlimMetadata::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: slim.name,
        namespace: slim.namespace,
        resource_version: slim.resource_version,
        deletion_timestamp: slim.deletion_timestamp,
        ..ObjectMeta::default()
    })
}

impl Resource for WatchedKey {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        AccessKey::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        AccessKey::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        AccessKey::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        AccessKey::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<&AccessKey> for WatchedKey {
    fn from(key: &AccessKey) -> Self {
        Self {
            metadata: ObjectMeta {
                name: key.metadata.name.clone(),
                namespace: key.metadata.namespace.clone(),
                resource_version: key.metadata.resource_version.clone(),
                deletion_timestamp: key.metadata.deletion_timestamp.clone(),
                ..ObjectMeta::default()
            },
            spec: WatchedSpec {
                owner: key.spec.owner.clone(),
                allowed_origins: key.spec.allowed_origins.clone(),
                active: key.spec.active,
            },
            status: key.status.as_ref().map(|status| WatchedStatus {
                phase: status.phase,
                access_key_id: status.access_key_id.clone(),
                secret_hash: status.secret_hash.clone(),
                previous_keys: status.previous_keys.clone(),
                granted_scopes: status.granted_scopes.clone(),
                granted_origins: status.granted_origins.clone(),
                issued_at: status.issued_at,
                rotated_at: status.rotated_at,
                reactivated_at: status.reactivated_at,
                expires_at: status.expires_at,
                last_used_at: status.last_used_at,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_decision_fields_are_read_and_the_rest_is_skipped() {
        let json = serde_json::json!({
            "apiVersion": "keywarden.io/v1alpha1",
            "kind": "AccessKey",
            "metadata": {
                "name": "k", "namespace": "team-a", "resourceVersion": "42", "uid": "u",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                "deletionTimestamp": "2026-11-23T10:05:00Z"
            },
            "spec": {"owner": {"kind": "User", "name": "alice"}, "displayName": "CI",
                     "allowedOrigins": ["https://app.example.com"]},
            "status": {"phase": "Active", "accessKeyId": "AKW1", "secretHash": "$argon2id$x",
                       "rotatedAt": "2026-11-23T10:00:00Z", "issuedAt": "2026-11-20T10:00:00Z",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        });
        let key: WatchedKey = serde_json::from_value(json).unwrap();
        assert_eq!(key.metadata.name.as_deref(), Some("k"));
        assert_eq!(key.metadata.resource_version.as_deref(), Some("42"));
        assert!(key.metadata.deletion_timestamp.is_some());
        assert!(key.metadata.annotations.is_none() && key.metadata.managed_fields.is_none());
        assert!(key.metadata.uid.is_none());
        assert!(key.spec.active, "active defaults to true, as in the CRD");
        let status = key.status.unwrap();
        assert_eq!(status.phase, Some(Phase::Active));
        assert_eq!(
            status.unused_basis().map(|at| at.to_rfc3339()),
            Some("2026-11-23T10:00:00+00:00".to_owned())
        );
    }
}
