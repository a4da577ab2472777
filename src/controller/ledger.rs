//! The per-owner issuance ledger: one object per owner, in the controller's namespace, listing
//! the keys issued for that owner. It is updated only under a resourceVersion precondition, so
//! the write itself decides: a leader paused past its lease that resumes with a stale view
//! loses the write instead of issuing past the limit.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Error, Result};
use crate::api::AccessKey;

/// Data key of the ledger's entries (JSON).
const LEDGER_DATA: &str = "issued-keys";
/// Annotation naming the owner a ledger counts for.
const LEDGER_OWNER_ANNOTATION: &str = "keywarden.io/owner";

/// One key counted against its owner's limit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

impl Entry {
    /// The entry of `key`, if it has a UID.
    pub fn of(key: &impl kube::Resource) -> Option<Self> {
        Some(Self {
            uid: key.uid()?,
            namespace: key.namespace().unwrap_or_default(),
            name: key.name_any(),
        })
    }
}

/// The ledger's answer to a first issuance.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Counted: the key may be issued.
    Admitted,
    /// The owner holds `issued` keys already.
    Exceeded { issued: usize },
}

/// What the ledger decides, given its entries: pure.
///
/// `counted` are the ledger's entries still alive plus the keys the caches show issued;
/// the candidate is admitted when already counted or when there is room.
pub fn admit(counted: &[Entry], candidate: &Entry, limit: u32) -> Admission {
    if counted.iter().any(|e| e.uid == candidate.uid) {
        return Admission::Admitted;
    }
    if counted.len() < limit as usize {
        Admission::Admitted
    } else {
        Admission::Exceeded {
            issued: counted.len(),
        }
    }
}

/// The ledgers of every owner, kept in `namespace`.
pub struct Ledgers {
    client: Client,
    api: Api<Secret>,
}

impl Ledgers {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            client,
        }
    }

    /// Counts `candidate` against `owner`'s `limit`, together with `issued` (keys the caches
    /// show issued). Fails with [`Error::OwnerLedgerConflict`] when someone else wrote the
    /// ledger since it was read: decide again on a fresh read.
    pub async fn admit(
        &self,
        owner: &str,
        candidate: &Entry,
        issued: Vec<Entry>,
        limit: u32,
    ) -> Result<Admission> {
        let name = ledger_name(owner);
        // why: an owner the caches show no issued key for most likely has no ledger yet; its
        // creation then decides alone (409 if one exists), as the create after a read finding
        // none would, and saves that read. Any other answer falls back to reading it.
        if issued.is_empty() && limit > 0 {
            let first = ledger_secret(&name, owner, std::slice::from_ref(candidate), None)?;
            match self.api.create(&PostParams::default(), &first).await {
                Ok(_) => return Ok(Admission::Admitted),
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(err) => return Err(Error::WriteOwnerLedger(err)),
            }
        }
        let current = self
            .api
            .get_opt(&name)
            .await
            .map_err(Error::ReadOwnerLedger)?;
        let recorded: Vec<Entry> = current
            .as_ref()
            .and_then(|s| s.data.as_ref()?.get(LEDGER_DATA))
            .and_then(|data| serde_json::from_slice(&data.0).ok())
            .unwrap_or_default();
        if recorded.iter().any(|e| e.uid == candidate.uid) {
            return Ok(Admission::Admitted);
        }
        let mut counted = issued;
        for entry in recorded {
            if !counted.iter().any(|e| e.uid == entry.uid) && self.exists(&entry).await? {
                counted.push(entry);
            }
        }
        counted.sort();
        let admission = admit(&counted, candidate, limit);
        if admission != Admission::Admitted {
            return Ok(admission);
        }
        if !counted.iter().any(|e| e.uid == candidate.uid) {
            counted.push(candidate.clone());
        }
        let ledger = ledger_secret(&name, owner, &counted, current.as_ref())?;
        let written = match current {
            Some(_) => {
                self.api
                    .replace(&name, &PostParams::default(), &ledger)
                    .await
            }
            None => self.api.create(&PostParams::default(), &ledger).await,
        };
        match written {
            Ok(_) => Ok(Admission::Admitted),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::OwnerLedgerConflict),
            Err(err) => Err(Error::WriteOwnerLedger(err)),
        }
    }

    /// Whether the key of `entry` still exists (a key being deleted still does).
    async fn exists(&self, entry: &Entry) -> Result<bool> {
        let keys = Api::<AccessKey>::namespaced(self.client.clone(), &entry.namespace);
        let key = keys
            .get_metadata_opt(&entry.name)
            .await
            .map_err(Error::ReadOwnerLedger)?;
        Ok(key.is_some_and(|k| k.metadata.uid.as_deref() == Some(entry.uid.as_str())))
    }
}

/// The ledger object's name: a digest of the owner (usernames are not valid object names).
pub fn ledger_name(owner: &str) -> String {
    let digest = Sha256::digest(owner.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("keywarden-owner-{hex}")
}

fn ledger_secret(
    name: &str,
    owner: &str,
    entries: &[Entry],
    current: Option<&Secret>,
) -> Result<Secret> {
    let json = serde_json::to_vec(entries).map_err(|_| Error::MissingField("ledger entries"))?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/part-of".to_string(),
                "keywarden".to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                LEDGER_OWNER_ANNOTATION.to_string(),
                owner.to_string(),
            )])),
            // why: the precondition that makes this write decide.
            resource_version: current.and_then(|c| c.resource_version()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            LEDGER_DATA.to_string(),
            ByteString(json),
        )])),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: &str) -> Entry {
        Entry {
            uid: uid.into(),
            namespace: "team-a".into(),
            name: format!("key-{uid}"),
        }
    }

    #[test]
    fn a_counted_key_is_admitted_again_and_others_only_with_room() {
        let counted = vec![entry("1"), entry("2")];
        assert_eq!(admit(&counted, &entry("1"), 2), Admission::Admitted);
        assert_eq!(
            admit(&counted, &entry("3"), 2),
            Admission::Exceeded { issued: 2 }
        );
        assert_eq!(admit(&counted, &entry("3"), 3), Admission::Admitted);
    }

    #[test]
    fn ledger_names_are_object_names_distinct_per_owner() {
        let user = ledger_name("ci");
        let service_account = ledger_name("system:serviceaccount:team-a:ci");
        assert_ne!(user, service_account);
        assert!(user.starts_with("keywarden-owner-") && user.len() <= 63);
    }
}
