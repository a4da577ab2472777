//! Tracking of every Secret write, to prove each issuance was written exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

use keywarden::api::Phase;
use keywarden::controller::{DATA_ACCESS_KEY, DATA_ACCESS_KEY_ID};
use keywarden::keys::hash::verify_secret;
use keywarden::keys::material::SecretKey;

use super::{eventually, secret_data, TestCluster};

/// Every access ID ever written into each Secret, as seen by a watch started before any write.
pub struct SecretWrites(Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>);

impl SecretWrites {
    pub fn track(api: Api<Secret>) -> Self {
        let seen = Arc::new(Mutex::new(BTreeMap::<String, BTreeSet<String>>::new()));
        let sink = seen.clone();
        tokio::spawn(async move {
            let mut secrets = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(secret)) = secrets.next().await {
                if let Some(id) = secret_data(&secret, DATA_ACCESS_KEY_ID) {
                    sink.lock()
                        .unwrap()
                        .entry(secret.name_any())
                        .or_default()
                        .insert(id);
                }
            }
        });
        Self(seen)
    }

    pub fn ids(&self, secret: &str) -> BTreeSet<String> {
        self.0
            .lock()
            .unwrap()
            .get(secret)
            .cloned()
            .unwrap_or_default()
    }
}

/// Asserts every key is Active with exactly one issuance ever written and a verifying hash.
pub async fn assert_issued_exactly_once(
    cluster: &TestCluster,
    writes: &SecretWrites,
    names: &[String],
) {
    for name in names {
        let key = cluster.wait_phase(name, Phase::Active).await;
        let status = key.status.unwrap();
        let secret = cluster
            .secrets()
            .get(&format!("{name}-access-key"))
            .await
            .unwrap();
        let ids = eventually("the write tracker saw the Secret", || {
            let ids = writes.ids(&secret.name_any());
            async move { (!ids.is_empty()).then_some(ids) }
        })
        .await;
        assert_eq!(
            ids.len(),
            1,
            "{name}: more than one issuance written: {ids:?}"
        );
        assert_eq!(status.access_key_id.as_ref(), ids.iter().next());
        let plain = SecretKey::parse(&secret_data(&secret, DATA_ACCESS_KEY).unwrap()).unwrap();
        assert!(
            verify_secret(&plain, status.secret_hash.as_deref().unwrap()),
            "{name}: hash verifies"
        );
    }
}
