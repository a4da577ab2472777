//! Every write on the issuance and rotation paths fails, or commits and loses its response:
//! the key still ends Active with exactly one secret written per issuance.

mod support;

use devcluster::{Faults, RequestMatch};
use kube::api::PostParams;

use keywarden::api::Phase;
use keywarden::controller::{DATA_ACCESS_KEY, DATA_ACCESS_KEY_ID};
use keywarden::keys::hash::verify_secret;
use keywarden::keys::material::SecretKey;
use support::{
    assert_issued_exactly_once, phase_of, secret_data, write_matcher, KeyBuilder, SecretWrites,
    TestCluster,
};

/// What happens to the matched write.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Answered with this status code, nothing done.
    Fail(u16),
    /// Committed, then the connection is reset instead of answering.
    LoseResponse,
}

fn inject(faults: &Faults, matcher: RequestMatch, fault: Fault) {
    match fault {
        Fault::Fail(code) => faults.fail_next(matcher, 1, code),
        Fault::LoseResponse => faults.drop_response_next(matcher, 1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_survives_failed_and_lost_writes_without_issuing_twice() {
    let cluster = TestCluster::start().await;
    let Some(faults) = cluster.faults() else {
        return;
    };
    let writes = SecretWrites::track(cluster.secrets());
    let _controller = cluster.start_controller();
    let ns = cluster.namespace.clone();
    let cases = [
        ("create", "secrets", Fault::Fail(500)),
        ("create", "secrets", Fault::LoseResponse),
        ("patch", "accesskeys", Fault::Fail(500)),
        ("patch", "accesskeys", Fault::LoseResponse),
    ];
    let mut names = Vec::new();
    for (i, (verb, resource, fault)) in cases.into_iter().enumerate() {
        let name = format!("issue-{i}");
        inject(&faults, write_matcher(verb, resource, &ns, &name), fault);
        cluster
            .create_key(&KeyBuilder::new(&name, &name).build())
            .await;
        names.push(name);
    }
    assert_issued_exactly_once(&cluster, &writes, &names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_survives_failed_and_lost_writes_without_issuing_twice() {
    let cluster = TestCluster::start().await;
    let Some(faults) = cluster.faults() else {
        return;
    };
    let writes = SecretWrites::track(cluster.secrets());
    let _controller = cluster.start_controller();
    let ns = cluster.namespace.clone();
    let cases = [
        ("update", "secrets", Fault::Fail(500)),
        ("update", "secrets", Fault::Fail(409)),
        ("update", "secrets", Fault::LoseResponse),
        ("patch", "accesskeys", Fault::Fail(500)),
        ("patch", "accesskeys", Fault::LoseResponse),
    ];
    for (i, (verb, resource, fault)) in cases.into_iter().enumerate() {
        let name = format!("rotate-{i}");
        let secret_name = format!("{name}-access-key");
        cluster
            .create_key(&KeyBuilder::new(&name, &name).build())
            .await;
        cluster.wait_phase(&name, Phase::Active).await;
        inject(&faults, write_matcher(verb, resource, &ns, &name), fault);
        // why: an update, not a patch, so the injected status-patch fault hits only the controller.
        let mut bumped = cluster.keys().get(&name).await.unwrap();
        bumped.spec.rotate_generation = 1;
        bumped.status = None;
        cluster
            .keys()
            .replace(&name, &PostParams::default(), &bumped)
            .await
            .unwrap();
        let rotated = cluster
            .wait_key(&name, "rotated and Active", |k| {
                phase_of(k) == Some(Phase::Active)
                    && k.status.as_ref().and_then(|s| s.observed_rotate_generation) == Some(1)
            })
            .await;
        let status = rotated.status.unwrap();
        let secret = cluster.secrets().get(&secret_name).await.unwrap();
        let current = secret_data(&secret, DATA_ACCESS_KEY_ID);
        assert_eq!(
            status.access_key_id, current,
            "{fault:?} on {verb} {resource}"
        );
        let plain = SecretKey::parse(&secret_data(&secret, DATA_ACCESS_KEY).unwrap()).unwrap();
        assert!(verify_secret(
            &plain,
            status.secret_hash.as_deref().unwrap()
        ));
        support::eventually("the tracker saw the rotation", || {
            let ids = writes.ids(&secret_name);
            let current = current.clone();
            async move { current.filter(|c| ids.contains(c)).map(|_| ids) }
        })
        .await;
        let ids = writes.ids(&secret_name);
        assert_eq!(
            ids.len(),
            2,
            "{fault:?} on {verb} {resource}: one ID per issuance, saw {ids:?}"
        );
        assert_eq!(status.previous_keys.len(), 1);
    }
}
