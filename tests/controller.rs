//! Reconciler tests against devcluster (or `KEYWARDEN_TEST_KUBECONFIG`): issuance, limits,
//! policies, timers, rotation, deactivation, Secret loss and Secret edits by someone else.

mod support;

use std::time::Duration;

use futures::future::join_all;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::ByteString;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::ResourceExt;

use keywarden::api::conditions::{reasons, types};
use keywarden::api::{
    AccessKey, DeactivationReason, Phase, ACCESS_KEY_ID_ANNOTATION, ACCESS_KEY_LABEL,
    MANAGED_BY_LABEL,
};
use keywarden::controller::{ControllerArgs, DATA_ACCESS_KEY, DATA_ACCESS_KEY_ID, DATA_TOKEN};
use keywarden::keys::hash::verify_secret;
use keywarden::keys::material::SecretKey;
use keywarden::keys::token::parse_token;
use support::{
    condition, create_keys_at_once, phase_of, secret_data, KeyBuilder, PolicyBuilder,
    RunningController, SecretWrites, TestCluster,
};

fn merge(value: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_key_gets_one_secret_whose_hash_is_in_status() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(
            &KeyBuilder::new("ci", "alice")
                .secret_label("team", "a")
                .build(),
        )
        .await;
    let key = cluster.wait_phase("ci", Phase::Active).await;
    let status = key.status.clone().unwrap();

    let secret = cluster.secrets().get("ci-access-key").await.unwrap();
    let id = secret_data(&secret, DATA_ACCESS_KEY_ID).unwrap();
    let plain = secret_data(&secret, DATA_ACCESS_KEY).unwrap();
    assert_eq!(status.access_key_id.as_deref(), Some(id.as_str()));
    assert!(id.starts_with("AKW"));
    let hash = status.secret_hash.clone().unwrap();
    assert!(verify_secret(&SecretKey::parse(&plain).unwrap(), &hash));
    let (token_id, token_secret) = parse_token(&secret_data(&secret, DATA_TOKEN).unwrap()).unwrap();
    assert_eq!(token_id.as_str(), id);
    assert_eq!(token_secret.expose(), plain);
    assert_eq!(secret.labels()[MANAGED_BY_LABEL], "keywarden");
    assert_eq!(secret.labels()[ACCESS_KEY_LABEL], "ci");
    assert_eq!(secret.labels()["team"], "a");
    assert_eq!(secret.annotations()[ACCESS_KEY_ID_ANNOTATION], id);
    let owner = &secret.owner_references()[0];
    assert_eq!(owner.uid, key.uid().unwrap());
    assert_eq!(owner.controller, Some(true));
    assert!(!serde_json::to_string(&status).unwrap().contains(&plain));

    // Re-reconciles (a spec edit) must never issue again.
    cluster
        .keys()
        .patch(
            "ci",
            &PatchParams::default(),
            &merge(serde_json::json!({"spec": {"displayName": "CI"}})),
        )
        .await
        .unwrap();
    cluster
        .wait_key("ci", "observed the edit", |k| {
            k.status.as_ref().and_then(|s| s.observed_generation) == k.metadata.generation
        })
        .await;
    let again = cluster.secrets().get("ci-access-key").await.unwrap();
    assert_eq!(again.resource_version(), secret.resource_version());
    assert_eq!(secret_data(&again, DATA_ACCESS_KEY).unwrap(), plain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_secret_carries_username_and_password() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("web", "bob").basic_auth().build())
        .await;
    cluster.wait_phase("web", Phase::Active).await;
    let secret = cluster.secrets().get("web-access-key").await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(
        secret_data(&secret, "username"),
        secret_data(&secret, DATA_ACCESS_KEY_ID)
    );
    assert_eq!(
        secret_data(&secret, "password"),
        secret_data(&secret, DATA_ACCESS_KEY)
    );
}

/// A ledger entry counts although no cache shows its key issued (a leader that died between
/// admitting a key and writing its Secret leaves exactly this): the next key of the owner is
/// refused while the counted key exists, and takes the slot once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_entry_no_cache_shows_still_counts_against_the_owner() {
    use sha2::{Digest, Sha256};
    let cluster = TestCluster::start().await;
    let policy = format!("limit-{}", support::random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).max_keys(1).build())
        .await;
    let owner = format!("dana-{}", support::random_suffix());
    // why: the older key, so that the caches' own count (oldest waiting key first) admits it
    // and only the ledger can refuse it; creation times have whole seconds.
    cluster
        .create_key(&KeyBuilder::new("next", &owner).policy(&policy).build())
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // why: a key being deleted, held by someone else's finalizer, is never issued but still
    // exists, so its ledger entry keeps counting.
    let mut held = KeyBuilder::new("held", &owner).policy(&policy).build();
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let held = cluster.create_key(&held).await;
    cluster
        .keys()
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let digest = Sha256::digest(owner.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let ledger: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("keywarden-owner-{hex}"),
            "annotations": {"keywarden.io/owner": owner},
        },
        "type": "Opaque",
        "stringData": {"issued-keys": serde_json::to_string(&serde_json::json!([{
            "uid": held.uid().unwrap(),
            "namespace": cluster.namespace,
            "name": "held",
        }])).unwrap()},
    }))
    .unwrap();
    let ledgers: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(
        cluster.client.clone(),
        keywarden::cli::access_control::NAMESPACE,
    );
    ledgers
        .create(&Default::default(), &ledger)
        .await
        .expect("create the owner's ledger");

    let _controller = cluster.start_controller();
    let next = cluster.wait_phase("next", Phase::Rejected).await;
    assert_eq!(
        condition(&next, types::LIMIT_EXCEEDED),
        Some(("True".into(), reasons::LIMIT_EXCEEDED.into()))
    );
    assert!(
        cluster
            .secrets()
            .get_opt("next-access-key")
            .await
            .unwrap()
            .is_none(),
        "no Secret for a refused key"
    );

    cluster
        .keys()
        .patch(
            "held",
            &PatchParams::default(),
            &merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    cluster.wait_phase("next", Phase::Active).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_keys_applied_at_once_never_exceed_the_owner_limit() {
    let cluster = TestCluster::start().await;
    let policy = format!("limit-{}", support::random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).max_keys(5).build())
        .await;
    let _controller = cluster.start_controller();
    let names: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
    join_all(names.iter().map(|name| {
        let key = KeyBuilder::new(name, "carol").policy(&policy).build();
        let cluster = &cluster;
        async move { cluster.create_key(&key).await }
    }))
    .await;
    for name in &names {
        cluster
            .wait_key(name, "Active or Rejected", |k| {
                matches!(phase_of(k), Some(Phase::Active | Phase::Rejected))
            })
            .await;
    }
    let keys = cluster.keys().list(&ListParams::default()).await.unwrap();
    let active: Vec<_> = keys
        .items
        .iter()
        .filter(|k| phase_of(k) == Some(Phase::Active))
        .collect();
    assert_eq!(active.len(), 5);
    let rejected = keys
        .items
        .iter()
        .find(|k| phase_of(k) == Some(Phase::Rejected))
        .unwrap();
    assert_eq!(
        condition(rejected, types::LIMIT_EXCEEDED),
        Some(("True".into(), reasons::LIMIT_EXCEEDED.into()))
    );
    let secrets = cluster
        .secrets()
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=keywarden"))
        .await
        .unwrap();
    assert_eq!(secrets.items.len(), 5, "exactly the limit of Secrets");

    // Deleting an issued key frees a slot for a waiting one.
    cluster
        .keys()
        .delete(&active[0].name_any(), &DeleteParams::default())
        .await
        .unwrap();
    support::eventually("a waiting key takes the freed slot", || async {
        let keys = cluster.keys().list(&ListParams::default()).await.ok()?;
        let active = keys
            .items
            .iter()
            .filter(|k| phase_of(k) == Some(Phase::Active))
            .count();
        (active == 5 && keys.items.len() == 19).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_issues_a_new_id_and_keeps_the_old_one_for_the_grace_period() {
    let cluster = TestCluster::start().await;
    let policy = format!("grace-{}", support::random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).grace("3s").build())
        .await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("rot", "dave").policy(&policy).build())
        .await;
    let first = cluster.wait_phase("rot", Phase::Active).await;
    let old_id = first.status.unwrap().access_key_id.unwrap();

    cluster
        .keys()
        .patch(
            "rot",
            &PatchParams::default(),
            &merge(serde_json::json!({"spec": {"rotateGeneration": 1}})),
        )
        .await
        .unwrap();
    let rotated = cluster
        .wait_key("rot", "rotated", |k| {
            k.status.as_ref().and_then(|s| s.observed_rotate_generation) == Some(1)
        })
        .await;
    let status = rotated.status.unwrap();
    assert_ne!(status.access_key_id.as_deref(), Some(old_id.as_str()));
    let rotated_at = status.rotated_at.expect("rotatedAt set");
    // why: on a slow machine the 3 s grace period may already be over when we read.
    if let Some(previous) = status.previous_keys.first() {
        assert_eq!(previous.access_key_id, old_id);
        assert_eq!(
            previous.valid_until,
            rotated_at + chrono::Duration::seconds(3)
        );
    }
    let secret = cluster.secrets().get("rot-access-key").await.unwrap();
    assert_eq!(
        secret_data(&secret, DATA_ACCESS_KEY_ID),
        status.access_key_id
    );

    cluster
        .wait_key("rot", "grace period ended", |k| {
            k.status
                .as_ref()
                .is_some_and(|s| s.previous_keys.is_empty())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_key_is_revived_by_a_rotation() {
    let cluster = TestCluster::start().await;
    let policy = format!("expire-{}", support::random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).expire_after("2s").build())
        .await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("exp", "erin").policy(&policy).build())
        .await;
    // why: no wait for Active first: on a slow machine the key may already be past 2 s.
    let expired = cluster.wait_phase("exp", Phase::Expired).await;
    let status = expired.status.unwrap();
    assert_eq!(
        status.deactivation_reason,
        Some(DeactivationReason::Expired)
    );
    let applied_at = cluster
        .policies()
        .get(&policy)
        .await
        .unwrap()
        .status
        .unwrap()
        .applied_at;
    let basis = applied_at.map_or(status.issued_at.unwrap(), |a| {
        a.max(status.issued_at.unwrap())
    });
    assert_eq!(
        status.expires_at,
        Some(basis + chrono::Duration::seconds(2))
    );

    cluster
        .keys()
        .patch(
            "exp",
            &PatchParams::default(),
            &merge(serde_json::json!({"spec": {"rotateGeneration": 1}})),
        )
        .await
        .unwrap();
    let revived = cluster
        .wait_key("exp", "rotated", |k| {
            k.status.as_ref().and_then(|s| s.observed_rotate_generation) == Some(1)
        })
        .await;
    let revived = revived.status.unwrap();
    assert_ne!(revived.access_key_id, status.access_key_id);
    let rotated_at = revived.rotated_at.expect("rotatedAt set");
    assert!(rotated_at >= status.expires_at.unwrap());
    assert_eq!(
        revived.expires_at,
        Some(rotated_at + chrono::Duration::seconds(2)),
        "a fresh expiry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_and_reactivation_follow_spec_active() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("sw", "frank").build())
        .await;
    let active = cluster.wait_phase("sw", Phase::Active).await;
    let id = active.status.unwrap().access_key_id;
    cluster
        .keys()
        .patch(
            "sw",
            &PatchParams::default(),
            &merge(serde_json::json!({"spec": {"active": false}})),
        )
        .await
        .unwrap();
    let inactive = cluster.wait_phase("sw", Phase::Inactive).await;
    let status = inactive.status.unwrap();
    assert_eq!(status.deactivation_reason, Some(DeactivationReason::Manual));
    assert!(status.deactivated_at.is_some());
    cluster
        .keys()
        .patch(
            "sw",
            &PatchParams::default(),
            &merge(serde_json::json!({"spec": {"active": true}})),
        )
        .await
        .unwrap();
    let back = cluster.wait_phase("sw", Phase::Active).await;
    assert_eq!(
        back.status.unwrap().access_key_id,
        id,
        "reactivation does not re-issue"
    );
}

/// A deactivation is not queued behind a burst of new keys: requests for keys that hold an
/// issuance are handed to the reconcilers before those of keys waiting for their first, each of
/// which costs a hash (`controller/intake.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivation_does_not_wait_behind_a_burst_of_new_keys() {
    const BURST: usize = 400;
    let cluster = TestCluster::start().await;
    // why: hashes dear enough (about 20 ms) that the burst takes seconds to issue, longer than
    // creating it takes even on a busy machine.
    let args = ControllerArgs {
        argon2_memory_kib: 8192,
        argon2_iterations: 6,
        ..support::test_args()
    };
    let _controller = RunningController::start(cluster.controller_client.clone(), args);
    cluster
        .create_key(&KeyBuilder::new("held", "frank").build())
        .await;
    cluster.wait_phase("held", Phase::Active).await;
    let keys = cluster.keys();
    create_keys_at_once(&keys, "burst", BURST, 32)
        .await
        .unwrap();
    let patched = keys
        .patch(
            "held",
            &PatchParams::default(),
            &merge(serde_json::json!({"spec": {"active": false}})),
        )
        .await
        .unwrap();
    let issued_before = active_burst_keys(&keys).await;
    assert!(
        issued_before <= BURST / 2,
        "the burst should still wait when the deactivation comes: {issued_before} of {BURST} issued"
    );
    // why: the store's order of writes, not the test's polling, tells what the controller did
    // first: the keys of the burst that became Active after the patch and before `held` did.
    let version = patched.resource_version().unwrap();
    let mut events = keys
        .watch(&WatchParams::default(), &version)
        .await
        .unwrap()
        .boxed();
    let mut issued_meanwhile = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("held became Inactive within a minute")
            .expect("the watch stays open")
            .unwrap();
        let (WatchEvent::Added(key) | WatchEvent::Modified(key)) = event else {
            continue;
        };
        let name = key.name_any();
        if name == "held" && phase_of(&key) == Some(Phase::Inactive) {
            break;
        }
        if name.starts_with("burst-") && phase_of(&key) == Some(Phase::Active) {
            issued_meanwhile.insert(name);
        }
    }
    // why: first in, first out, the deactivation would come after every key of the burst that
    // was still waiting; it waits only for what the reconcilers already hold, one per slot.
    let waiting = BURST - issued_before;
    assert!(
        issued_meanwhile.len() <= waiting / 2,
        "the deactivation was reconciled after {} of the {waiting} waiting new keys were issued",
        issued_meanwhile.len()
    );
}

/// How many keys of the burst are Active.
async fn active_burst_keys(keys: &Api<AccessKey>) -> usize {
    keys.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|k| k.name_any().starts_with("burst-") && phase_of(k) == Some(Phase::Active))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_key_is_deactivated_and_a_reactivation_bump_revives_it() {
    let cluster = TestCluster::start().await;
    let policy = format!("unused-{}", support::random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).unused_after("2s").build())
        .await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("idle", "gina").policy(&policy).build())
        .await;
    let unused = cluster.wait_phase("idle", Phase::Inactive).await;
    assert_eq!(
        unused.status.unwrap().deactivation_reason,
        Some(DeactivationReason::Unused)
    );
    cluster
        .keys()
        .patch(
            "idle",
            &PatchParams::default(),
            &merge(serde_json::json!({"spec": {"reactivateGeneration": 1}})),
        )
        .await
        .unwrap();
    let revived = cluster.wait_phase("idle", Phase::Active).await;
    assert!(revived.status.unwrap().reactivated_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_secret_is_reported_and_only_a_rotation_issues_a_new_one() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("gone", "hank").build())
        .await;
    let active = cluster.wait_phase("gone", Phase::Active).await;
    let old_id = active.status.unwrap().access_key_id;
    cluster
        .secrets()
        .delete("gone-access-key", &DeleteParams::default())
        .await
        .unwrap();
    let missing = cluster
        .wait_key("gone", "SecretPresent=False", |k| {
            condition(k, types::SECRET_PRESENT)
                == Some(("False".into(), reasons::SECRET_MISSING.into()))
        })
        .await;
    assert_eq!(
        missing.status.unwrap().access_key_id,
        old_id,
        "keeps its hash and ID"
    );
    assert!(cluster
        .secrets()
        .get_opt("gone-access-key")
        .await
        .unwrap()
        .is_none());

    cluster
        .keys()
        .patch(
            "gone",
            &PatchParams::default(),
            &merge(serde_json::json!({"spec": {"rotateGeneration": 1}})),
        )
        .await
        .unwrap();
    let rotated = cluster
        .wait_key("gone", "SecretPresent=True after rotation", |k| {
            condition(k, types::SECRET_PRESENT).is_some_and(|(s, _)| s == "True")
        })
        .await;
    let secret = cluster.secrets().get("gone-access-key").await.unwrap();
    assert_eq!(
        secret_data(&secret, DATA_ACCESS_KEY_ID),
        rotated.status.unwrap().access_key_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_policy_issues_nothing_and_says_why() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(
            &KeyBuilder::new("orphan", "ivy")
                .policy("does-not-exist")
                .build(),
        )
        .await;
    let key = cluster
        .wait_key("orphan", "PolicyResolved=False", |k| {
            condition(k, types::POLICY_RESOLVED)
                == Some(("False".into(), reasons::POLICY_NOT_FOUND.into()))
        })
        .await;
    assert_eq!(phase_of(&key), Some(Phase::Pending));
    assert!(cluster
        .secrets()
        .get_opt("orphan-access-key")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_status_is_rebuilt_from_the_secret_without_reissuing() {
    let cluster = TestCluster::start().await;
    let controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("restore", "jo").build())
        .await;
    let before = cluster.wait_phase("restore", Phase::Active).await;
    controller.stop().await;
    let secret = cluster.secrets().get("restore-access-key").await.unwrap();

    cluster
        .controller_keys()
        .patch_status(
            "restore",
            &PatchParams::default(),
            &merge(serde_json::json!({"status": null})),
        )
        .await
        .unwrap();
    cluster
        .wait_key("restore", "status cleared", |k| phase_of(k).is_none())
        .await;

    let _controller = cluster.start_controller();
    let after = cluster.wait_phase("restore", Phase::Active).await;
    assert_eq!(
        after.status.unwrap().access_key_id,
        before.status.unwrap().access_key_id
    );
    let again = cluster.secrets().get("restore-access-key").await.unwrap();
    assert_eq!(again.resource_version(), secret.resource_version());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_is_issued_without_reading_its_secret_first() {
    let cluster = TestCluster::start().await;
    // why: failing every read of a Secret needs devcluster's faults.
    let Some(faults) = cluster.faults() else {
        return;
    };
    let _controller = cluster.start_controller();
    // The create of a first issuance is its own read: a Secret already there answers 409.
    let reads = devcluster::RequestMatch::new("get", "secrets").namespace(&cluster.namespace);
    faults.fail_next(reads, u32::MAX, 500);
    cluster
        .create_key(&KeyBuilder::new("unread", "una").build())
        .await;
    let key = cluster.wait_phase("unread", Phase::Active).await;
    faults.clear();
    let secret = cluster.secrets().get("unread-access-key").await.unwrap();
    assert_eq!(
        secret_data(&secret, DATA_ACCESS_KEY_ID),
        key.status.unwrap().access_key_id
    );
}

/// Someone who may edit Secrets and the key's status hides the key's Secret from the
/// controller's cache (the label its watch selects on removed) and clears the status: the
/// first issuance's create, made without reading the Secret, answers 409, and the Secret's
/// sealed record is taken back. No second secret is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_hidden_from_the_cache_and_a_cleared_status_make_no_second_secret() {
    let cluster = TestCluster::start().await;
    let controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("hidden", "hal").build())
        .await;
    let before = cluster.wait_phase("hidden", Phase::Active).await;
    // why: with the controller stopped, its next start lists a cache without the Secret.
    controller.stop().await;
    let secret = cluster.secrets().get("hidden-access-key").await.unwrap();
    cluster
        .secrets()
        .patch(
            "hidden-access-key",
            &PatchParams::default(),
            &merge(serde_json::json!({"metadata": {"labels": {MANAGED_BY_LABEL: null}}})),
        )
        .await
        .unwrap();
    cluster
        .controller_keys()
        .patch_status(
            "hidden",
            &PatchParams::default(),
            &merge(serde_json::json!({"status": null})),
        )
        .await
        .unwrap();
    let creates_before = cluster.object_requests(&["secrets"]);
    let _controller = cluster.start_controller();
    let after = cluster
        .wait_key("hidden", "status rebuilt", |k| {
            k.status
                .as_ref()
                .and_then(|s| s.access_key_id.as_ref())
                .is_some()
        })
        .await;
    assert_eq!(
        after.status.unwrap().access_key_id,
        before.status.unwrap().access_key_id
    );
    let again = cluster.secrets().get("hidden-access-key").await.unwrap();
    assert_eq!(
        secret_data(&again, DATA_ACCESS_KEY),
        secret_data(&secret, DATA_ACCESS_KEY)
    );
    if let (Some(before), Some(now)) = (creates_before, cluster.object_requests(&["secrets"])) {
        let made = support::increase_between(&before, &now);
        assert!(
            made.contains_key("create secrets"),
            "the path under test: a create answered 409, not a read first ({made:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_name_taken_before_the_key_is_reported_and_never_written() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let theirs: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "taken-access-key"},
        "stringData": {"password": "theirs"},
    }))
    .unwrap();
    let theirs = cluster
        .secrets()
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    cluster
        .create_key(&KeyBuilder::new("taken", "tess").build())
        .await;
    let key = cluster
        .wait_key("taken", "SecretPresent=False (SecretConflict)", |k| {
            condition(k, types::SECRET_PRESENT)
                == Some(("False".into(), reasons::SECRET_CONFLICT.into()))
        })
        .await;
    assert_eq!(key.status.unwrap().access_key_id, None, "nothing issued");
    let creates = || cluster.object_requests(&["secrets"]);
    let settled = creates();
    // why: the first issuance's create found the Secret (409); it is decided on at once, not
    // retried, since each retry would hash a new secret again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let (Some(before), Some(after)) = (settled, creates()) {
        let made = support::increase_between(&before, &after);
        assert_eq!(made.get("create secrets"), None, "{made:?}");
    }
    let after = cluster.secrets().get("taken-access-key").await.unwrap();
    assert_eq!(after.resource_version(), theirs.resource_version());
    assert!(after.owner_references().is_empty(), "not adopted");
}

/// A merge patch that sets (or, with `None`, deletes) one data key of a Secret.
fn data_patch(data_key: &str, value: Option<&str>) -> Patch<serde_json::Value> {
    let value = value.map(|v| serde_json::to_value(ByteString(v.as_bytes().to_vec())).unwrap());
    merge(serde_json::json!({"data": {data_key: value}}))
}

/// The Events published about key `name`.
async fn key_events(cluster: &TestCluster, name: &str) -> Vec<Event> {
    Api::<Event>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

fn secret_present(key: &AccessKey) -> Option<(String, String, String)> {
    key.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == types::SECRET_PRESENT)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the key reports its Secret data changed, naming `data_key`.
async fn wait_modified(cluster: &TestCluster, name: &str, data_key: &str) -> AccessKey {
    let named = format!("{data_key:?}");
    cluster
        .wait_key(name, &format!("SecretModified naming {named}"), |k| {
            secret_present(k).is_some_and(|(status, reason, message)| {
                status == "False" && reason == reasons::SECRET_MODIFIED && message.contains(&named)
            })
        })
        .await
}

async fn wait_secret_present(cluster: &TestCluster, name: &str) -> AccessKey {
    cluster
        .wait_key(name, "SecretPresent=True", |k| {
            condition(k, types::SECRET_PRESENT)
                == Some(("True".into(), reasons::SECRET_PRESENT.into()))
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_secret_data_is_reported_and_never_silently_reissued() {
    let cluster = TestCluster::start().await;
    let writes = SecretWrites::track(cluster.secrets());
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("edit", "kim").build())
        .await;
    let issued = cluster
        .wait_phase("edit", Phase::Active)
        .await
        .status
        .unwrap();
    let secret = cluster.secrets().get("edit-access-key").await.unwrap();
    let plain = secret_data(&secret, DATA_ACCESS_KEY).unwrap();
    let token = secret_data(&secret, DATA_TOKEN).unwrap();
    let foreign = SecretKey::generate();

    cluster
        .secrets()
        .patch(
            "edit-access-key",
            &PatchParams::default(),
            &data_patch(DATA_ACCESS_KEY, Some(foreign.expose())),
        )
        .await
        .unwrap();
    let modified = wait_modified(&cluster, "edit", DATA_ACCESS_KEY).await;
    let status = modified.status.unwrap();
    assert_eq!(
        status.phase,
        Some(Phase::Active),
        "the issued key stays valid"
    );
    assert_eq!(
        status.access_key_id, issued.access_key_id,
        "nothing re-issued"
    );
    assert_eq!(status.secret_hash, issued.secret_hash);
    assert!(verify_secret(
        &SecretKey::parse(&plain).unwrap(),
        status.secret_hash.as_deref().unwrap()
    ));
    let edited = cluster.secrets().get("edit-access-key").await.unwrap();
    assert_eq!(
        secret_data(&edited, DATA_ACCESS_KEY).as_deref(),
        Some(foreign.expose()),
        "the edit is reported, not overwritten"
    );
    let warning = support::eventually("a SecretModified warning event", || async {
        key_events(&cluster, "edit")
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reasons::SECRET_MODIFIED))
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    let note = warning.note.unwrap_or_default();
    assert!(note.contains("\"accessKey\""), "{note}");
    for material in [plain.as_str(), foreign.expose(), token.as_str()] {
        assert!(!note.contains(material), "the event carries no secret");
        assert!(!serde_json::to_string(&status).unwrap().contains(material));
    }

    // Restoring the data clears the condition; deleting a data key is an edit too.
    let restore = |data_key: &'static str, value: String| {
        let secrets = cluster.secrets();
        async move {
            secrets
                .patch(
                    "edit-access-key",
                    &PatchParams::default(),
                    &data_patch(data_key, Some(&value)),
                )
                .await
                .unwrap();
        }
    };
    restore(DATA_ACCESS_KEY, plain.clone()).await;
    wait_secret_present(&cluster, "edit").await;
    cluster
        .secrets()
        .patch(
            "edit-access-key",
            &PatchParams::default(),
            &data_patch(DATA_TOKEN, None),
        )
        .await
        .unwrap();
    wait_modified(&cluster, "edit", DATA_TOKEN).await;
    restore(DATA_TOKEN, token).await;
    let restored = wait_secret_present(&cluster, "edit").await;
    assert_eq!(restored.status.unwrap().access_key_id, issued.access_key_id);
    assert_eq!(
        writes.ids("edit-access-key").len(),
        1,
        "one issuance ever written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_edit_by_someone_else_raises_nothing() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("labelled", "lee").build())
        .await;
    cluster.wait_phase("labelled", Phase::Active).await;
    let labelled = cluster
        .secrets()
        .patch(
            "labelled-access-key",
            &PatchParams::default(),
            &merge(serde_json::json!({"metadata": {"labels": {"team": "b"}}})),
        )
        .await
        .unwrap();
    let version = labelled.resource_version();
    assert!(version.is_some());
    let key = cluster
        .wait_key("labelled", "checked the edited Secret", |k| {
            k.status
                .as_ref()
                .and_then(|s| s.secret_resource_version.clone())
                == version
        })
        .await;
    assert_eq!(
        condition(&key, types::SECRET_PRESENT),
        Some(("True".into(), reasons::SECRET_PRESENT.into()))
    );
    assert!(key_events(&cluster, "labelled")
        .await
        .iter()
        .all(|e| e.type_.as_deref() != Some("Warning")));
}
