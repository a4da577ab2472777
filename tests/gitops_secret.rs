//! The generated Secret under GitOps (devcluster, or `KEYWARDEN_TEST_KUBECONFIG`): owned by its
//! key and free of the key's own labels and annotations, so Argo CD and Flux neither prune it
//! nor report it out of sync, through issuance, edits by the GitOps tool and rotation.

mod support;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::ResourceExt;

use keywarden::api::{AccessKey, Phase};
use support::{KeyBuilder, TestCluster};

/// What Argo CD and Flux write onto the objects they apply.
const TRACKING_LABELS: [(&str, &str); 3] = [
    ("app.kubernetes.io/instance", "keys"),
    ("kustomize.toolkit.fluxcd.io/name", "keys"),
    ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
];
const TRACKING_ANNOTATIONS: [(&str, &str); 2] = [
    (
        "argocd.argoproj.io/tracking-id",
        "keys:keywarden.io/AccessKey:team-a/ci",
    ),
    ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
];

fn tracked(mut key: AccessKey) -> AccessKey {
    let labels = key.metadata.labels.get_or_insert_with(Default::default);
    for (k, v) in TRACKING_LABELS {
        labels.insert(k.into(), v.into());
    }
    let annotations = key
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    for (k, v) in TRACKING_ANNOTATIONS {
        annotations.insert(k.into(), v.into());
    }
    key
}

fn assert_owned_and_untracked(secret: &Secret, key: &AccessKey) {
    let owners = secret.owner_references();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].uid, key.uid().unwrap());
    assert_eq!(owners[0].kind, "AccessKey");
    assert_eq!(owners[0].controller, Some(true));
    for (k, _) in TRACKING_LABELS {
        assert!(!secret.labels().contains_key(k), "Secret carries label {k}");
    }
    for (k, _) in TRACKING_ANNOTATIONS {
        assert!(
            !secret.annotations().contains_key(k),
            "Secret carries annotation {k}"
        );
    }
    assert!(
        !secret
            .labels()
            .keys()
            .chain(secret.annotations().keys())
            .any(|k| k.contains("fluxcd.io") || k.contains("argoproj.io")),
        "{:?} {:?}",
        secret.labels(),
        secret.annotations()
    );
    assert_eq!(secret.labels().get("team").map(String::as_str), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_is_owned_by_its_key_and_never_carries_its_gitops_tracking() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(&tracked(
            KeyBuilder::new("ci", "alice")
                .secret_label("team", "a")
                .build(),
        ))
        .await;
    let key = cluster.wait_phase("ci", Phase::Active).await;
    let issued = cluster.secrets().get("ci-access-key").await.unwrap();
    assert_owned_and_untracked(&issued, &key);

    // A sync that changes the tracking (another Application) and rotates.
    cluster
        .keys()
        .patch(
            "ci",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"labels": {"app.kubernetes.io/instance": "other-app"}},
                "spec": {"rotateGeneration": 1},
            })),
        )
        .await
        .unwrap();
    let rotated = cluster
        .wait_key("ci", "rotated", |k| {
            k.status.as_ref().and_then(|s| s.observed_rotate_generation) == Some(1)
        })
        .await;
    let secret = cluster.secrets().get("ci-access-key").await.unwrap();
    assert_ne!(secret.resource_version(), issued.resource_version());
    assert_owned_and_untracked(&secret, &rotated);
    assert!(!secret.labels().values().any(|v| v == "other-app"));
}
