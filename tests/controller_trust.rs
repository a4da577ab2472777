//! Only the controller decides whether, and until when, a credential is accepted: attacks by a
//! Secret editor or a spec author, each a regression test (against devcluster or
//! `KEYWARDEN_TEST_KUBECONFIG`).

mod support;

use kube::api::{Patch, PatchParams};
use kube::ResourceExt;

use keywarden::api::conditions::{reasons, types};
use keywarden::api::{AccessKey, Phase, ISSUED_AT_ANNOTATION};
use keywarden::controller::PREVIOUS_KEYS_ANNOTATION;
use support::{KeyBuilder, PolicyBuilder, TestCluster};

fn merge(value: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(value)
}

/// The `SecretPresent` condition's status and reason.
fn secret_present(key: &AccessKey) -> Option<(String, String)> {
    support::condition(key, types::SECRET_PRESENT)
}

fn reports_secret_modified(key: &AccessKey) -> bool {
    secret_present(key) == Some(("False".into(), reasons::SECRET_MODIFIED.into()))
}

async fn annotate_secret(cluster: &TestCluster, secret: &str, annotation: &str, value: &str) {
    cluster
        .secrets()
        .patch(
            secret,
            &PatchParams::default(),
            &merge(serde_json::json!({"metadata": {"annotations": {annotation: value}}})),
        )
        .await
        .unwrap();
}

async fn bump_rotation(cluster: &TestCluster, name: &str, generation: i64) {
    cluster
        .keys()
        .patch(
            name,
            &PatchParams::default(),
            &merge(serde_json::json!({"spec": {"rotateGeneration": generation}})),
        )
        .await
        .unwrap();
}

/// Waits until the controller has written `policy`'s `appliedAt`.
async fn policy_applied(cluster: &TestCluster, policy: &str) {
    support::wait_for(&cluster.policies(), policy, "policy applied", |p| {
        p.status.as_ref().is_some_and(|s| s.applied_at.is_some())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_issued_at_annotated_on_the_secret_never_extends_expiry() {
    let cluster = TestCluster::start().await;
    let policy = format!("expire-{}", support::random_suffix());
    let _controller = cluster.start_controller();
    cluster
        .create_policy(&PolicyBuilder::new(&policy).expire_after("1h").build())
        .await;
    // why: expiry counts from the later of issuance and the policy's appliedAt; a key issued
    // before the policy's status is written has its expiry recomputed (by milliseconds) then,
    // which is the policy's own reset, not what this test is about.
    policy_applied(&cluster, &policy).await;
    cluster
        .create_key(&KeyBuilder::new("ci", "alice").policy(&policy).build())
        .await;
    let issued = cluster
        .wait_phase("ci", Phase::Active)
        .await
        .status
        .unwrap();

    annotate_secret(
        &cluster,
        "ci-access-key",
        ISSUED_AT_ANNOTATION,
        "2099-01-01T00:00:00Z",
    )
    .await;
    let after = cluster
        .wait_key("ci", "SecretModified", reports_secret_modified)
        .await
        .status
        .unwrap();
    assert_eq!(after.expires_at, issued.expires_at);
    assert_eq!(after.issued_at, issued.issued_at);
    assert_eq!(after.access_key_id, issued.access_key_id);
    assert_eq!(after.phase, Some(Phase::Active));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_keys_forged_on_the_secret_are_never_accepted_nor_carried_into_a_rotation() {
    let cluster = TestCluster::start().await;
    let policy = format!("grace-{}", support::random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).grace("1h").build())
        .await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("ci", "alice").policy(&policy).build())
        .await;
    let issued = cluster
        .wait_phase("ci", Phase::Active)
        .await
        .status
        .unwrap();
    let forged = serde_json::json!([{
        "accessKeyId": "AKWFORGEDFORGEDFORGEDFORGED",
        "secretHash": issued.secret_hash,
        "validUntil": "2099-01-01T00:00:00Z",
    }])
    .to_string();

    annotate_secret(&cluster, "ci-access-key", PREVIOUS_KEYS_ANNOTATION, &forged).await;
    let after = cluster
        .wait_key("ci", "SecretModified", reports_secret_modified)
        .await;
    assert!(after.status.unwrap().previous_keys.is_empty());

    bump_rotation(&cluster, "ci", 1).await;
    let rotated = cluster
        .wait_key("ci", "rotated", |k| {
            k.status.as_ref().and_then(|s| s.observed_rotate_generation) == Some(1)
        })
        .await;
    let previous: Vec<String> = rotated
        .status
        .as_ref()
        .unwrap()
        .previous_keys
        .iter()
        .map(|p| p.access_key_id.clone())
        .collect();
    assert_eq!(previous, vec![issued.access_key_id.clone().unwrap()]);
    assert_eq!(
        secret_present(&rotated),
        Some(("True".into(), reasons::SECRET_PRESENT.into())),
        "a rotation rewrites the record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_status_is_not_recovered_from_edited_secret_annotations() {
    let cluster = TestCluster::start().await;
    let controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("restore", "jo").build())
        .await;
    let before = cluster.wait_phase("restore", Phase::Active).await;
    controller.stop().await;
    annotate_secret(
        &cluster,
        "restore-access-key",
        ISSUED_AT_ANNOTATION,
        "2099-01-01T00:00:00Z",
    )
    .await;
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
        .wait_key("restore", "status cleared", |k| k.status.is_none())
        .await;

    let _controller = cluster.start_controller();
    let after = cluster
        .wait_key("restore", "SecretModified", reports_secret_modified)
        .await;
    let status = after.status.unwrap();
    assert_eq!(status.access_key_id, None, "nothing adopted");
    assert_eq!(status.expires_at, None);
    assert_ne!(status.phase, Some(Phase::Active));
    let secret = cluster.secrets().get("restore-access-key").await.unwrap();
    assert_eq!(
        secret.owner_references()[0].uid,
        before.uid().unwrap(),
        "the Secret is left as it is"
    );
}

async fn patch_spec(cluster: &TestCluster, name: &str, spec: serde_json::Value) -> AccessKey {
    let patched = cluster
        .keys()
        .patch(
            name,
            &PatchParams::default(),
            &merge(serde_json::json!({ "spec": spec })),
        )
        .await
        .unwrap();
    let generation = patched.metadata.generation;
    cluster
        .wait_key(name, "observed the edit", |k| {
            k.status.as_ref().and_then(|s| s.observed_generation) >= generation
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointing_an_expired_key_at_another_or_a_missing_policy_never_revives_it() {
    let cluster = TestCluster::start().await;
    let short = format!("short-{}", support::random_suffix());
    let long = format!("long-{}", support::random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&short).expire_after("1s").build())
        .await;
    cluster
        .create_policy(&PolicyBuilder::new(&long).expire_after("180d").build())
        .await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("exp", "erin").policy(&short).build())
        .await;
    let expired = cluster
        .wait_phase("exp", Phase::Expired)
        .await
        .status
        .unwrap();

    for policy in [long.as_str(), "does-not-exist"] {
        let after = patch_spec(&cluster, "exp", serde_json::json!({"policyName": policy}))
            .await
            .status
            .unwrap();
        assert_eq!(after.phase, Some(Phase::Expired), "policy {policy}");
        assert_eq!(after.expires_at, expired.expires_at, "policy {policy}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_a_longer_policy_never_moves_expiry_later() {
    let cluster = TestCluster::start().await;
    let short = format!("short-{}", support::random_suffix());
    let long = format!("long-{}", support::random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&short).expire_after("1h").build())
        .await;
    cluster
        .create_policy(&PolicyBuilder::new(&long).expire_after("180d").build())
        .await;
    let _controller = cluster.start_controller();
    // why: see a_later_issued_at_annotated_on_the_secret_never_extends_expiry.
    policy_applied(&cluster, &short).await;
    policy_applied(&cluster, &long).await;
    cluster
        .create_key(&KeyBuilder::new("ci", "erin").policy(&short).build())
        .await;
    let issued = cluster
        .wait_phase("ci", Phase::Active)
        .await
        .status
        .unwrap();
    let after = patch_spec(&cluster, "ci", serde_json::json!({"policyName": long}))
        .await
        .status
        .unwrap();
    assert_eq!(after.policy.as_deref(), Some(long.as_str()));
    assert_eq!(after.expires_at, issued.expires_at);
    assert_eq!(after.phase, Some(Phase::Active));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_edit_beyond_the_policy_deactivates_the_key_until_fixed_and_is_never_granted() {
    let cluster = TestCluster::start().await;
    let policy = format!("scoped-{}", support::random_suffix());
    cluster
        .create_policy(
            &PolicyBuilder::new(&policy)
                .allowed_scopes(&["logs:view"])
                .build(),
        )
        .await;
    support::scopes::grant(
        &cluster,
        "alice-logs",
        support::scopes::Grantee::User("alice"),
        &["logs:view"],
    )
    .await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(
            &KeyBuilder::new("ci", "alice")
                .policy(&policy)
                .scopes(&["logs:view"])
                .build(),
        )
        .await;
    let issued = cluster
        .wait_phase("ci", Phase::Active)
        .await
        .status
        .unwrap();
    assert_eq!(issued.granted_scopes, Some(vec!["logs:view".to_string()]));

    let widened = patch_spec(
        &cluster,
        "ci",
        serde_json::json!({"scopes": ["logs:view", "collectors:manage"]}),
    )
    .await;
    let status = widened.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Inactive));
    assert_eq!(
        status.deactivation_reason,
        Some(keywarden::api::DeactivationReason::PolicyViolation)
    );
    assert_eq!(status.granted_scopes, Some(vec!["logs:view".to_string()]));
    assert_eq!(status.access_key_id, issued.access_key_id);
    support::eventually("a PolicyViolation Warning event", || async {
        let events = kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(
            cluster.client.clone(),
            &cluster.namespace,
        )
        .list(&Default::default())
        .await
        .ok()?;
        events
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some(reasons::POLICY_VIOLATION)
                    && e.type_.as_deref() == Some("Warning")
            })
            .map(|_| ())
    })
    .await;

    let fixed = patch_spec(&cluster, "ci", serde_json::json!({"scopes": ["logs:view"]})).await;
    assert_eq!(fixed.status.unwrap().phase, Some(Phase::Active));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_an_expired_key_gives_the_expired_secret_no_grace() {
    let cluster = TestCluster::start().await;
    let policy = format!("expire-{}", support::random_suffix());
    cluster
        .create_policy(
            &PolicyBuilder::new(&policy)
                .expire_after("1s")
                .grace("1h")
                .build(),
        )
        .await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("exp", "erin").policy(&policy).build())
        .await;
    let expired = cluster
        .wait_phase("exp", Phase::Expired)
        .await
        .status
        .unwrap();
    bump_rotation(&cluster, "exp", 1).await;
    let rotated = cluster
        .wait_key("exp", "rotated", |k| {
            k.status.as_ref().and_then(|s| s.observed_rotate_generation) == Some(1)
        })
        .await
        .status
        .unwrap();
    assert_ne!(rotated.access_key_id, expired.access_key_id);
    assert!(
        rotated.previous_keys.is_empty(),
        "{:?}",
        rotated.previous_keys
    );
}

/// A verifier watching the test's namespace, served on a free loopback port.
async fn start_verifier(cluster: &TestCluster) -> (String, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/check", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let args = keywarden::verifier::VerifierArgs {
        namespaces: vec![cluster.namespace.clone()],
        ..Default::default()
    };
    tokio::spawn(keywarden::verifier::serve(
        cluster.verifier_client.clone(),
        args,
        listener,
        shutdown.clone(),
    ));
    (url, shutdown)
}

async fn check(url: &str, token: &str) -> Option<u16> {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_by_a_finalizer_is_refused_once_deleted_and_counts_against_the_limit_until_gone()
{
    let cluster = TestCluster::start().await;
    let policy = format!("one-{}", support::random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).max_keys(1).build())
        .await;
    let _controller = cluster.start_controller();
    let (url, _verifier) = start_verifier(&cluster).await;
    let mut held = KeyBuilder::new("held", "dana").policy(&policy).build();
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cluster.create_key(&held).await;
    cluster.wait_phase("held", Phase::Active).await;
    let secret = cluster.secrets().get("held-access-key").await.unwrap();
    let token = support::secret_data(&secret, keywarden::controller::DATA_TOKEN).unwrap();
    support::eventually("the verifier accepts the key", || async {
        (check(&url, &token).await == Some(200)).then_some(())
    })
    .await;

    cluster
        .keys()
        .delete("held", &Default::default())
        .await
        .unwrap();
    support::eventually("the verifier refuses the key being deleted", || async {
        (check(&url, &token).await == Some(401)).then_some(())
    })
    .await;

    cluster
        .create_key(&KeyBuilder::new("waiting", "dana").policy(&policy).build())
        .await;
    let waiting = cluster.wait_phase("waiting", Phase::Rejected).await;
    assert!(waiting.status.unwrap().access_key_id.is_none());
    assert!(cluster
        .keys()
        .get("held")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());

    cluster
        .keys()
        .patch(
            "held",
            &PatchParams::default(),
            &merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    cluster.wait_phase("waiting", Phase::Active).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_written_before_records_were_sealed_is_sealed_on_upgrade_without_reissuing() {
    let cluster = TestCluster::start().await;
    let controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("legacy", "jo").build())
        .await;
    let before = cluster
        .wait_phase("legacy", Phase::Active)
        .await
        .status
        .unwrap();
    controller.stop().await;
    cluster
        .secrets()
        .patch(
            "legacy-access-key",
            &PatchParams::default(),
            &merge(serde_json::json!({"metadata": {"annotations": {
                keywarden::controller::RECORD_SEAL_ANNOTATION: null
            }}})),
        )
        .await
        .unwrap();

    let _controller = cluster.start_controller();
    let secret = support::eventually("the record sealed again", || async {
        let secret = cluster.secrets().get("legacy-access-key").await.ok()?;
        secret
            .annotations()
            .contains_key(keywarden::controller::RECORD_SEAL_ANNOTATION)
            .then_some(secret)
    })
    .await;
    assert_eq!(
        support::secret_data(&secret, keywarden::controller::DATA_ACCESS_KEY_ID),
        before.access_key_id
    );
    let after = cluster
        .wait_key("legacy", "SecretPresent", |k| {
            secret_present(k) == Some(("True".into(), reasons::SECRET_PRESENT.into()))
        })
        .await
        .status
        .unwrap();
    assert_eq!(after.access_key_id, before.access_key_id);
    assert_eq!(after.expires_at, before.expires_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_record_replayed_onto_the_secret_never_revives_a_rotated_out_key() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&KeyBuilder::new("ci", "alice").build())
        .await;
    let first = cluster
        .wait_phase("ci", Phase::Active)
        .await
        .status
        .unwrap();
    let recorded: std::collections::BTreeMap<String, String> = cluster
        .secrets()
        .get("ci-access-key")
        .await
        .unwrap()
        .annotations()
        .iter()
        .filter(|(k, _)| k.starts_with("keywarden.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    bump_rotation(&cluster, "ci", 1).await;
    let rotated = cluster
        .wait_key("ci", "rotated", |k| {
            k.status.as_ref().and_then(|s| s.observed_rotate_generation) == Some(1)
        })
        .await
        .status
        .unwrap();
    assert_ne!(rotated.access_key_id, first.access_key_id);

    let mut replay = serde_json::Map::new();
    for name in cluster
        .secrets()
        .get("ci-access-key")
        .await
        .unwrap()
        .annotations()
        .keys()
        .filter(|k| k.starts_with("keywarden.io/"))
    {
        replay.insert(name.clone(), serde_json::Value::Null);
    }
    for (name, value) in recorded {
        replay.insert(name, value.into());
    }
    cluster
        .secrets()
        .patch(
            "ci-access-key",
            &PatchParams::default(),
            &merge(serde_json::json!({"metadata": {"annotations": replay}})),
        )
        .await
        .unwrap();
    let after = cluster
        .wait_key("ci", "SecretModified", reports_secret_modified)
        .await
        .status
        .unwrap();
    assert_eq!(after.access_key_id, rotated.access_key_id);
    assert_eq!(after.secret_hash, rotated.secret_hash);
}
