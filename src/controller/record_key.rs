//! The controller's record key: seals the issuance records kept in key Secrets' annotations.
//! Kept in a Secret of the controller's own namespace and created on first start.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::Client;

use super::{Error, Result};
use crate::keys::seal::RecordKey;

/// Data key of the record key in its Secret.
pub const RECORD_KEY_DATA: &str = "record-key";

/// Reads the record key from Secret `namespace/name`, creating it with a fresh key if absent.
pub async fn load_or_create(client: &Client, namespace: &str, name: &str) -> Result<RecordKey> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    if let Some(secret) = api.get_opt(name).await.map_err(Error::ReadRecordKey)? {
        return from_secret(&secret);
    }
    let key = RecordKey::generate();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/part-of".to_string(),
                "keywarden".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        // why: the key must never change under existing records; immutable says so to everyone.
        immutable: Some(true),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            RECORD_KEY_DATA.to_string(),
            ByteString(key.expose().to_vec()),
        )])),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(namespace, name, "created the record key Secret; back it up");
            Ok(key)
        }
        // why: another replica created it first; its key is the one to use.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let secret = api.get(name).await.map_err(Error::ReadRecordKey)?;
            from_secret(&secret)
        }
        Err(err) => Err(Error::CreateRecordKey(err)),
    }
}

fn from_secret(secret: &Secret) -> Result<RecordKey> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(RECORD_KEY_DATA))
        .ok_or(Error::MissingField("record key Secret data"))?;
    RecordKey::from_bytes(&bytes.0).map_err(Error::InvalidRecordKey)
}
