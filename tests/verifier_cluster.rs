//! The verifier against a cluster (devcluster, or a real one with `KEYWARDEN_TEST_KUBECONFIG`):
//! its index follows watch events (revocation within a second, rotation grace, deletion) and it
//! records last use in `status.lastUsedAt`.

mod support_verifier;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use keywarden::verifier::{
    flush_due, watch_keys, CheckRequest, Decision, Settings, Verifier, VerifierArgs,
};
use support_verifier::cluster::{check_status, wait_until, TestCluster};
use support_verifier::{seconds_from_now, Issued, KeyBuilder};
use tokio_util::sync::CancellationToken;

fn args() -> VerifierArgs {
    VerifierArgs {
        last_used_flush_seconds: 1,
        ..VerifierArgs::default()
    }
}

#[tokio::test]
async fn keys_listed_before_ready_are_served_and_deactivation_revokes_within_a_second() {
    let cluster = TestCluster::start().await;
    let issued = Issued::generate();
    cluster
        .create_key(&KeyBuilder::new(cluster.namespace(), "ci", &issued).build())
        .await;
    let verifier = cluster.start_verifier(args()).await;
    let http = reqwest::Client::new();
    let url = verifier.url("/v1/check");
    assert_eq!(
        check_status(&http, &url, &issued.basic()).await,
        200,
        "ready means the key listed before start is indexed"
    );

    cluster
        .patch_spec("ci", serde_json::json!({"active": false}))
        .await;
    let revoked = wait_until(Duration::from_secs(1), || async {
        check_status(&http, &url, &issued.basic()).await == 401
    })
    .await;
    assert!(
        revoked,
        "deactivated key still accepted 1 s after the patch"
    );

    cluster
        .patch_spec("ci", serde_json::json!({"active": true}))
        .await;
    let restored = wait_until(Duration::from_secs(10), || async {
        check_status(&http, &url, &issued.basic()).await == 200
    })
    .await;
    assert!(restored, "reactivated key accepted again");
    verifier.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_previous_key_until_valid_until_and_deletion_revokes() {
    let cluster = TestCluster::start().await;
    let first = Issued::generate();
    cluster
        .create_key(&KeyBuilder::new(cluster.namespace(), "rotating", &first).build())
        .await;
    let verifier = cluster.start_verifier(args()).await;
    let http = reqwest::Client::new();
    let url = verifier.url("/v1/check");
    assert_eq!(check_status(&http, &url, &first.basic()).await, 200);

    let second = Issued::generate();
    let rotated = KeyBuilder::new(cluster.namespace(), "rotating", &second)
        .previous(&first, seconds_from_now(5))
        .build();
    cluster.write_status(&rotated).await;
    let new_accepted = wait_until(Duration::from_secs(10), || async {
        check_status(&http, &url, &second.bearer()).await == 200
    })
    .await;
    assert!(new_accepted, "the new key is accepted after the rotation");
    assert_eq!(
        check_status(&http, &url, &first.basic()).await,
        200,
        "the previous key is accepted during its grace"
    );
    let old_refused = wait_until(Duration::from_secs(10), || async {
        check_status(&http, &url, &first.basic()).await == 401
    })
    .await;
    assert!(
        old_refused,
        "the previous key is refused once validUntil passed"
    );
    assert_eq!(check_status(&http, &url, &second.basic()).await, 200);

    cluster
        .keys()
        .delete("rotating", &Default::default())
        .await
        .expect("delete key");
    let deleted = wait_until(Duration::from_secs(10), || async {
        check_status(&http, &url, &second.basic()).await == 401
    })
    .await;
    assert!(deleted, "a deleted key is refused");
    verifier.stop().await;
}

#[tokio::test]
async fn last_use_is_written_to_status_and_never_moves_backwards() {
    let cluster = TestCluster::start().await;
    let issued = Issued::generate();
    cluster
        .create_key(&KeyBuilder::new(cluster.namespace(), "used", &issued).build())
        .await;
    let verifier = Arc::new(Verifier::new(&Settings::default()));
    let shutdown = CancellationToken::new();
    let watching = tokio::spawn(watch_keys(
        verifier.clone(),
        cluster.verifier_client().clone(),
        vec![cluster.namespace().to_owned()],
        shutdown.clone(),
    ));
    let ready = wait_until(Duration::from_secs(10), || async { verifier.is_ready() }).await;
    assert!(ready, "index synced within 10 s");

    let check = || {
        let request = CheckRequest {
            credentials: Ok(issued.presented()),
            is_options: false,
            requests_cors_method: false,
            origin: None,
            required_scopes: Vec::new(),
            client: None,
        };
        verifier.check(request, Utc::now())
    };
    // why: lastUsedAt is written at second precision, truncated.
    let used_at = keywarden::keys::schedule::whole_seconds(Utc::now());
    assert!(matches!(check().await, Decision::Valid(_)));
    flush_due(&verifier, cluster.verifier_client(), Duration::ZERO).await;
    let written = last_used(&cluster, "used").await;
    assert!(
        written.is_some_and(|at| at >= used_at && at.timestamp_subsec_nanos() == 0),
        "lastUsedAt written, in whole seconds: {written:?}"
    );

    // why: another replica wrote a later use; this replica's earlier one must not replace it.
    let later = Utc::now() + chrono::Duration::hours(1);
    let mut newer = KeyBuilder::new(cluster.namespace(), "used", &issued).build();
    newer.status.as_mut().unwrap().last_used_at = Some(later);
    newer.status.as_mut().unwrap().secret_hash = cluster_hash(&cluster, "used").await;
    cluster.write_status(&newer).await;
    let seen = wait_until(Duration::from_secs(10), || async {
        verifier
            .index()
            .lookup(issued.id.as_str())
            .is_some_and(|c| c.record.last_used_at == Some(later))
    })
    .await;
    assert!(seen, "the watch delivered the later lastUsedAt");
    assert!(matches!(check().await, Decision::Valid(_)));
    flush_due(&verifier, cluster.verifier_client(), Duration::ZERO).await;
    assert_eq!(last_used(&cluster, "used").await, Some(later));

    shutdown.cancel();
    watching.await.expect("watch task");
}

#[tokio::test]
async fn serve_flushes_last_use_within_the_interval() {
    let cluster = TestCluster::start().await;
    let issued = Issued::generate();
    cluster
        .create_key(&KeyBuilder::new(cluster.namespace(), "flushed", &issued).build())
        .await;
    let verifier = cluster.start_verifier(args()).await;
    let http = reqwest::Client::new();
    // why: lastUsedAt is written at second precision, truncated.
    let used_at = keywarden::keys::schedule::whole_seconds(Utc::now());
    assert_eq!(
        check_status(&http, &verifier.url("/v1/check"), &issued.basic()).await,
        200
    );
    let written = wait_until(Duration::from_secs(10), || async {
        last_used(&cluster, "flushed")
            .await
            .is_some_and(|at| at >= used_at)
    })
    .await;
    assert!(
        written,
        "lastUsedAt written within 10 s with a 1 s interval"
    );
    verifier.stop().await;
}

async fn last_used(cluster: &TestCluster, name: &str) -> Option<chrono::DateTime<Utc>> {
    let key = cluster.keys().get(name).await.expect("get key");
    key.status.and_then(|s| s.last_used_at)
}

async fn cluster_hash(cluster: &TestCluster, name: &str) -> Option<String> {
    let key = cluster.keys().get(name).await.expect("get key");
    key.status.and_then(|s| s.secret_hash)
}
