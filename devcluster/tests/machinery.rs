//! The API machinery wired into the verbs: server-side apply conflicts, custom resource
//! admission, JSON patch and strategic merge patch, as answered over HTTP.

use std::time::Duration;

use devcluster::DevCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A kind whose schema constrains `replicas`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "test.devcluster.io",
    version = "v1",
    kind = "Pool",
    namespaced
)]
pub struct PoolSpec {
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i64,
}

fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(response) => *response,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn apply_by_a_second_manager_conflicts_unless_forced() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let applied = |value: &str| {
        Patch::Apply(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "shared" },
            "data": { "owner": value },
        }))
    };
    let created = api
        .patch("shared", &PatchParams::apply("alice"), &applied("alice"))
        .await
        .unwrap();
    assert_eq!(
        created.data.unwrap()["owner"],
        "alice",
        "apply creates a missing object"
    );
    let err = api_error(
        api.patch("shared", &PatchParams::apply("bob"), &applied("bob"))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"alice\": .data.owner"
    );
    let causes = err.details.unwrap().causes;
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].field, ".data.owner");
    let forced = api
        .patch(
            "shared",
            &PatchParams::apply("bob").force(),
            &applied("bob"),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["owner"], "bob");
}

#[tokio::test]
async fn apply_without_a_field_manager_is_400() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/x")
        .header("content-type", "application/apply-patch+yaml")
        .body(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec())
        .unwrap();
    let err = api_error(client.request::<ConfigMap>(request).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (400, "BadRequest"));
}

#[tokio::test]
async fn custom_resources_are_validated_against_the_crd_schema() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Pool::crd())
        .await
        .unwrap();
    let established = await_condition(
        crds,
        "pools.test.devcluster.io",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .unwrap()
        .unwrap();
    let pools: Api<Pool> = Api::namespaced(client, "default");
    let err = api_error(
        pools
            .create(
                &PostParams::default(),
                &Pool::new("big", PoolSpec { replicas: 9 }),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let causes = err.details.unwrap().causes;
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0].field, "spec.replicas");
    assert!(pools.get_opt("big").await.unwrap().is_none());
    pools
        .create(
            &PostParams::default(),
            &Pool::new("ok", PoolSpec { replicas: 3 }),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn json_patch_test_failures_are_refused_and_change_nothing() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("j".into());
    cm.data = Some([("a".to_string(), "1".to_string())].into());
    api.create(&PostParams::default(), &cm).await.unwrap();
    let failing: json_patch::Patch = serde_json::from_value(serde_json::json!([
        { "op": "test", "path": "/data/a", "value": "2" },
        { "op": "replace", "path": "/data/a", "value": "3" },
    ]))
    .unwrap();
    let err = api_error(
        api.patch("j", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(api.get("j").await.unwrap().data.unwrap()["a"], "1");
    let passing: json_patch::Patch = serde_json::from_value(serde_json::json!([
        { "op": "test", "path": "/data/missing", "value": null },
        { "op": "replace", "path": "/data/a", "value": "3" },
    ]))
    .unwrap();
    let patched = api
        .patch("j", &PatchParams::default(), &Patch::<()>::Json(passing))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["a"], "3");
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(cluster.client().unwrap(), "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web" },
        "spec": {
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [
                    { "name": "app", "image": "app:1" },
                    { "name": "sidecar", "image": "sidecar:1" },
                ] },
            },
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let patch = serde_json::json!({ "spec": { "template": { "spec": { "containers": [{ "name": "app", "image": "app:2" }] } } } });
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let patched_json = serde_json::to_value(&patched).unwrap();
    let containers = &patched_json["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers,
        &serde_json::json!([{ "name": "app", "image": "app:2" }, { "name": "sidecar", "image": "sidecar:1" }])
    );
    assert_eq!(patched.metadata.generation, Some(2));
}
