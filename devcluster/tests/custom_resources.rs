//! CustomResourceDefinitions: serving, status subresource, generation and update rules.

use std::time::Duration;

use devcluster::DevCluster;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A namespaced test kind with a status subresource.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "test.devcluster.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    pub size: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Default)]
pub struct WidgetStatus {
    pub ready: bool,
}

/// A cluster-scoped test kind without subresources.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(group = "test.devcluster.io", version = "v1", kind = "Gadget")]
pub struct GadgetSpec {
    pub color: String,
}

/// A kind with a scale subresource.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "test.devcluster.io",
    version = "v1",
    kind = "Replicated",
    namespaced,
    status = "ReplicatedStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas"
    )
)]
pub struct ReplicatedSpec {
    pub replicas: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Default)]
pub struct ReplicatedStatus {
    pub replicas: i32,
}

fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(response) => *response,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn install_crd(client: &kube::Client, crd: CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .expect("the CRD is established within 10 s")
    .unwrap();
}

fn widget(name: &str, size: i64) -> Widget {
    Widget::new(name, WidgetSpec { size })
}

#[tokio::test]
async fn a_created_crd_is_established_and_serves_its_kind() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd(&client, Widget::crd()).await;
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get("widgets.test.devcluster.io")
        .await
        .unwrap();
    let conditions = crd.status.unwrap().conditions.unwrap();
    let types: Vec<&str> = conditions
        .iter()
        .filter(|c| c.status == "True")
        .map(|c| c.type_.as_str())
        .collect();
    assert!(
        types.contains(&"NamesAccepted") && types.contains(&"Established"),
        "{types:?}"
    );

    let widgets: Api<Widget> = Api::namespaced(client, "default");
    let created = widgets
        .create(&PostParams::default(), &widget("w1", 3))
        .await
        .unwrap();
    assert_eq!(created.spec.size, 3);
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(widgets.get("w1").await.unwrap().spec, created.spec);
}

#[tokio::test]
async fn cluster_scoped_custom_resources_are_served() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd(&client, Gadget::crd()).await;
    let gadgets: Api<Gadget> = Api::all(client);
    gadgets
        .create(
            &PostParams::default(),
            &Gadget::new(
                "g",
                GadgetSpec {
                    color: "red".into(),
                },
            ),
        )
        .await
        .unwrap();
    assert_eq!(gadgets.get("g").await.unwrap().spec.color, "red");
}

#[tokio::test]
async fn status_is_written_only_through_the_status_subresource() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd(&client, Widget::crd()).await;
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    let mut with_status = widget("w", 1);
    with_status.status = Some(WidgetStatus { ready: true });
    let created = widgets
        .create(&PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(created.status, None, "create drops status");

    let main = serde_json::json!({ "status": { "ready": true } });
    let patched = widgets
        .patch("w", &PatchParams::default(), &Patch::Merge(main))
        .await
        .unwrap();
    assert_eq!(
        patched.status, None,
        "main-resource writes never change status"
    );

    let status = serde_json::json!({ "spec": { "size": 99 }, "status": { "ready": true } });
    let patched = widgets
        .patch_status("w", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    assert_eq!(patched.status, Some(WidgetStatus { ready: true }));
    assert_eq!(patched.spec.size, 1, "status writes never change spec");
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "status writes keep the generation"
    );
}

#[tokio::test]
async fn generation_bumps_only_when_the_spec_changes() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd(&client, Widget::crd()).await;
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    widgets
        .create(&PostParams::default(), &widget("g", 1))
        .await
        .unwrap();
    let labelled = serde_json::json!({ "metadata": { "labels": { "a": "b" } } });
    let patched = widgets
        .patch("g", &PatchParams::default(), &Patch::Merge(labelled))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(1));
    let resized = serde_json::json!({ "spec": { "size": 2 } });
    let patched = widgets
        .patch("g", &PatchParams::default(), &Patch::Merge(resized))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
}

#[tokio::test]
async fn replacing_a_custom_resource_without_resource_version_is_422() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd(&client, Widget::crd()).await;
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    widgets
        .create(&PostParams::default(), &widget("r", 1))
        .await
        .unwrap();
    let err = api_error(
        widgets
            .replace("r", &PostParams::default(), &widget("r", 2))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "Widget.test.devcluster.io \"r\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
    );
}

#[tokio::test]
async fn strategic_merge_patch_on_a_custom_resource_is_415() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd(&client, Widget::crd()).await;
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    widgets
        .create(&PostParams::default(), &widget("s", 1))
        .await
        .unwrap();
    let patch = Patch::Strategic(serde_json::json!({ "spec": { "size": 2 } }));
    let err = api_error(
        widgets
            .patch("s", &PatchParams::default(), &patch)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.reason.as_str()),
        (415, "UnsupportedMediaType")
    );
}

#[tokio::test]
async fn deleting_a_crd_stops_serving_its_kind() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd(&client, Widget::crd()).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    widgets
        .create(&PostParams::default(), &widget("d", 1))
        .await
        .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    crds.delete("widgets.test.devcluster.io", &DeleteParams::default())
        .await
        .unwrap();
    let err = api_error(widgets.get("d").await.unwrap_err());
    assert_eq!(err.code, 404);
    assert_eq!(
        err.message,
        "the server could not find the requested resource"
    );
}

#[tokio::test]
async fn deleting_a_custom_resource_returns_the_object() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd(&client, Widget::crd()).await;
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    widgets
        .create(&PostParams::default(), &widget("x", 1))
        .await
        .unwrap();
    let deleted = widgets.delete("x", &DeleteParams::default()).await.unwrap();
    assert_eq!(deleted.left().map(|w| w.spec.size), Some(1));
}

#[tokio::test]
async fn updating_a_crd_serves_its_new_versions() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd(&client, Gadget::crd()).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut crd = crds.get("gadgets.test.devcluster.io").await.unwrap();
    let mut v2 = crd.spec.versions[0].clone();
    v2.name = "v2".into();
    v2.storage = false;
    crd.spec.versions.push(v2);
    crds.replace("gadgets.test.devcluster.io", &PostParams::default(), &crd)
        .await
        .unwrap();
    let resource = kube::core::ApiResource {
        group: "test.devcluster.io".into(),
        version: "v2".into(),
        api_version: "test.devcluster.io/v2".into(),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    let v2_api: Api<kube::core::DynamicObject> = Api::all_with(client.clone(), &resource);
    let created = Api::<Gadget>::all(client)
        .create(
            &PostParams::default(),
            &Gadget::new(
                "shared",
                GadgetSpec {
                    color: "blue".into(),
                },
            ),
        )
        .await
        .unwrap();
    let through_v2 = v2_api.get("shared").await.unwrap();
    assert_eq!(
        through_v2.types.unwrap().api_version,
        "test.devcluster.io/v2"
    );
    assert_eq!(through_v2.metadata.uid, created.metadata.uid);
}

#[tokio::test]
async fn the_scale_subresource_reads_and_writes_spec_replicas() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    install_crd(&client, Replicated::crd()).await;
    let api: Api<Replicated> = Api::namespaced(client, "default");
    api.create(
        &PostParams::default(),
        &Replicated::new("r", ReplicatedSpec { replicas: 2 }),
    )
    .await
    .unwrap();
    let status = Patch::Merge(serde_json::json!({ "status": { "replicas": 1 } }));
    api.patch_status("r", &PatchParams::default(), &status)
        .await
        .unwrap();
    let scale = api.get_scale("r").await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(scale.status.map(|s| s.replicas), Some(1));
    let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": 5 } }));
    let scaled = api
        .patch_scale("r", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(5));
    let stored = api.get("r").await.unwrap();
    assert_eq!(stored.spec.replicas, 5);
    assert_eq!(stored.metadata.generation, Some(2));
}
