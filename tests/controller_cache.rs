//! The controller caches keys compact (conditions without most messages, a digest of the
//! status): a status is still written exactly when it changed, and restored when someone else
//! edited it, a condition's message included.

mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::ByteString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;

use keywarden::api::conditions::{reasons, types};
use keywarden::api::{AccessKey, Phase};
use keywarden::controller::DATA_ACCESS_KEY;
use support::{KeyBuilder, TestCluster};

/// How long the controller is given to (wrongly) write after a change it should ignore.
const SETTLE: Duration = Duration::from_secs(3);

fn merge(value: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(value)
}

fn message_of(key: &AccessKey, type_: &str) -> Option<String> {
    key.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
}

/// Adds an annotation no one reads: the key's watch event reconciles it with nothing to do.
/// Returns the resourceVersion the edit left.
async fn touch(cluster: &TestCluster, name: &str, value: &str) -> Option<String> {
    let patch = serde_json::json!({"metadata": {"annotations": {"example.com/note": value}}});
    cluster
        .keys()
        .patch(name, &PatchParams::default(), &merge(patch))
        .await
        .unwrap()
        .resource_version()
}

async fn events_with_reason(cluster: &TestCluster, name: &str, reason: &str) -> usize {
    Api::<Event>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reconciled_with_nothing_changed_gets_no_status_write() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("quiet", "alice").build())
        .await;
    let active = cluster.wait_phase("quiet", Phase::Active).await;
    tokio::time::sleep(SETTLE).await;
    let touched = touch(&cluster, "quiet", "one").await;
    tokio::time::sleep(SETTLE).await;
    let after = cluster.keys().get("quiet").await.unwrap();
    assert_eq!(
        after.resource_version(),
        touched,
        "a reconcile that changed nothing wrote the status: {:#?}",
        after.status
    );
    assert_eq!(after.status, active.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_message_edited_by_someone_else_is_restored_without_reissuing() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("edited", "bo").build())
        .await;
    let active = cluster.wait_phase("edited", Phase::Active).await;
    let secret = cluster.secrets().get("edited-access-key").await.unwrap();
    let original = message_of(&active, types::READY).unwrap();

    let mut conditions = active.status.clone().unwrap().conditions;
    for c in conditions.iter_mut().filter(|c| c.type_ == types::READY) {
        c.message = "key is active, trust me".into();
    }
    let patch =
        serde_json::json!({"status": {"conditions": conditions, "secretName": "elsewhere"}});
    cluster
        .controller_keys()
        .patch_status("edited", &PatchParams::default(), &merge(patch))
        .await
        .unwrap();

    let restored = cluster
        .wait_key("edited", "the Ready message and secretName restored", |k| {
            message_of(k, types::READY).as_deref() == Some(original.as_str())
                && k.status.as_ref().and_then(|s| s.secret_name.as_deref())
                    == Some("edited-access-key")
        })
        .await;
    let (before, after) = (active.status.unwrap(), restored.status.unwrap());
    assert_eq!(after.access_key_id, before.access_key_id);
    assert_eq!(after.secret_hash, before.secret_hash);
    let again = cluster.secrets().get("edited-access-key").await.unwrap();
    assert_eq!(again.resource_version(), secret.resource_version());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modified_secret_is_reported_once_and_its_message_survives_later_reconciles() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("tampered", "cy").build())
        .await;
    cluster.wait_phase("tampered", Phase::Active).await;
    let value = serde_json::to_value(ByteString(b"not-the-secret".to_vec())).unwrap();
    cluster
        .secrets()
        .patch(
            "tampered-access-key",
            &PatchParams::default(),
            &merge(serde_json::json!({"data": {DATA_ACCESS_KEY: value}})),
        )
        .await
        .unwrap();
    let modified = cluster
        .wait_key("tampered", "SecretPresent=False SecretModified", |k| {
            k.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == types::SECRET_PRESENT && c.reason == reasons::SECRET_MODIFIED
                })
            })
        })
        .await;
    let message = message_of(&modified, types::SECRET_PRESENT).unwrap();
    assert!(!message.is_empty());
    tokio::time::sleep(SETTLE).await;

    for value in ["one", "two"] {
        let touched = touch(&cluster, "tampered", value).await;
        tokio::time::sleep(SETTLE).await;
        let after = cluster.keys().get("tampered").await.unwrap();
        assert_eq!(after.resource_version(), touched, "{:#?}", after.status);
        assert_eq!(
            message_of(&after, types::SECRET_PRESENT).as_deref(),
            Some(message.as_str())
        );
    }
    assert_eq!(
        events_with_reason(&cluster, "tampered", reasons::SECRET_MODIFIED).await,
        1
    );
}
