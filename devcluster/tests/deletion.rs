//! Deletion: preconditions, dry runs, and ownerReference garbage collection.

use std::time::Duration;

use devcluster::DevCluster;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::core::Status;
use kube::{Resource, ResourceExt};

fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(response) => *response,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn config_map(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm
}

fn owned_by(name: &str, owner: &ConfigMap, block: bool) -> ConfigMap {
    let mut cm = config_map(name);
    let mut reference: OwnerReference = owner.controller_owner_ref(&()).unwrap();
    reference.block_owner_deletion = Some(block);
    cm.metadata.owner_references = Some(vec![reference]);
    cm
}

/// Waits up to 10 s for `check` to hold.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for: {what}");
}

#[tokio::test]
async fn a_uid_precondition_that_does_not_match_is_409() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let created = api
        .create(&PostParams::default(), &config_map("p"))
        .await
        .unwrap();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let err = api_error(api.delete("p", &params).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        format!(
            "Operation cannot be fulfilled on configmaps \"p\": Precondition failed: UID in precondition: not-the-uid, UID in object meta: {}",
            created.uid().unwrap()
        )
    );
    assert!(api.get_opt("p").await.unwrap().is_some());
}

#[tokio::test]
async fn dry_run_writes_change_nothing() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = api.create(&dry, &config_map("dry")).await.unwrap();
    assert_eq!(answered.name_any(), "dry");
    assert!(api.get_opt("dry").await.unwrap().is_none());
    let created = api
        .create(&PostParams::default(), &config_map("real"))
        .await
        .unwrap();
    let patch = Patch::Merge(serde_json::json!({ "data": { "k": "v" } }));
    let patched = api
        .patch("real", &PatchParams::default().dry_run(), &patch)
        .await
        .unwrap();
    assert!(patched.data.is_some());
    let stored = api.get("real").await.unwrap();
    assert_eq!(
        (stored.resource_version(), stored.data),
        (created.resource_version(), None)
    );
    api.delete(
        "real",
        &DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert!(api.get_opt("real").await.unwrap().is_some());
}

#[tokio::test]
async fn background_deletion_collects_dependents() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let owner = api
        .create(&PostParams::default(), &config_map("owner"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_by("child", &owner, false))
        .await
        .unwrap();
    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        api.get_opt("owner").await.unwrap().is_none(),
        "the owner goes at once"
    );
    eventually("the child is collected", || async {
        api.get_opt("child").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn a_dependent_written_after_its_owner_is_gone_is_collected() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let owner = api
        .create(&PostParams::default(), &config_map("owner"))
        .await
        .unwrap();
    let late_child = owned_by("late-child", &owner, false);
    api.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    // why: let the collection the deletion started finish first, so nothing but the late
    // write itself can bring the collector back.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // A controller that read the owner before its deletion writes a dependent afterwards.
    api.create(&PostParams::default(), &late_child)
        .await
        .unwrap();
    eventually("the dependent of a gone owner is collected", || async {
        api.get_opt("late-child").await.unwrap().is_none()
    })
    .await;
    // A dependent of a live owner stays.
    let live = api
        .create(&PostParams::default(), &config_map("live-owner"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_by("kept", &live, false))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(api.get_opt("kept").await.unwrap().is_some());
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_the_owner_reference() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let owner = api
        .create(&PostParams::default(), &config_map("owner"))
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_by("child", &owner, false))
        .await
        .unwrap();
    api.delete("owner", &DeleteParams::orphan()).await.unwrap();
    eventually("the owner is gone", || async {
        api.get_opt("owner").await.unwrap().is_none()
    })
    .await;
    let child = api.get("child").await.unwrap();
    assert!(
        child.owner_references().is_empty(),
        "{:?}",
        child.owner_references()
    );
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let owner = api
        .create(&PostParams::default(), &config_map("owner"))
        .await
        .unwrap();
    let mut child = owned_by("child", &owner, true);
    child.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &child).await.unwrap();
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..DeleteParams::default()
    };
    let marked = api
        .delete("owner", &params)
        .await
        .unwrap()
        .left()
        .expect("the owner waits");
    assert!(marked
        .finalizers()
        .contains(&"foregroundDeletion".to_string()));
    eventually("the child is being deleted", || async {
        api.get("child")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    assert!(
        api.get_opt("owner").await.unwrap().is_some(),
        "a blocking dependent holds the owner"
    );
    let release = Patch::Merge(serde_json::json!({ "metadata": { "finalizers": null } }));
    api.patch("child", &PatchParams::default(), &release)
        .await
        .unwrap();
    eventually("the owner is gone", || async {
        api.get_opt("owner").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_content_then_the_namespace() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("scratch".into());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "scratch");
    api.create(&PostParams::default(), &config_map("inside"))
        .await
        .unwrap();
    namespaces
        .delete("scratch", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the namespace is gone", || async {
        namespaces.get_opt("scratch").await.unwrap().is_none()
    })
    .await;
    assert!(api.get_opt("inside").await.unwrap().is_none());
}

#[tokio::test]
async fn creating_in_a_terminating_namespace_is_403_forbidden() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("closing".into());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "closing");
    let mut held = config_map("held");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();
    namespaces
        .delete("closing", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the held object is being deleted", || async {
        api.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    let terminating = namespaces.get("closing").await.unwrap();
    assert_eq!(
        terminating.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    let err = api_error(
        api.create(&PostParams::default(), &config_map("late"))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        err.message,
        "configmaps \"late\" is forbidden: unable to create new content in namespace closing because it is being terminated"
    );
}
