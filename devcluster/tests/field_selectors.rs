//! Field selectors on custom resources, as the apiextensions server serves them (CRD
//! `selectableFields`, GA in Kubernetes 1.32): lists and watches narrowed by a declared field,
//! anything else refused with the real message.

use std::time::Duration;

use devcluster::DevCluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A kind selectable on its owner and size.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "test.devcluster.io",
    version = "v1",
    kind = "Gizmo",
    namespaced,
    selectable = ".spec.owner",
    selectable = ".spec.size"
)]
pub struct GizmoSpec {
    pub owner: String,
    pub size: i64,
    pub color: String,
}

async fn gizmos(cluster: &DevCluster) -> Api<Gizmo> {
    let client = cluster.client().unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Gizmo::crd())
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(
            crds,
            "gizmos.test.devcluster.io",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("CRD established in time")
    .unwrap();
    let api = Api::namespaced(client, "default");
    for (name, owner, size) in [("a", "alice", 1), ("b", "bob", 2), ("c", "alice", 3)] {
        let spec = GizmoSpec {
            owner: owner.into(),
            size,
            color: "red".into(),
        };
        api.create(&PostParams::default(), &Gizmo::new(name, spec))
            .await
            .unwrap();
    }
    api
}

fn names(list: kube::core::ObjectList<Gizmo>) -> Vec<String> {
    list.items.iter().map(ResourceExt::name_any).collect()
}

#[tokio::test]
async fn lists_are_narrowed_by_declared_selectable_fields() {
    let cluster = DevCluster::start().await.unwrap();
    let api = gizmos(&cluster).await;
    let list = |selector: &'static str| {
        let api = api.clone();
        async move { api.list(&ListParams::default().fields(selector)).await }
    };
    assert_eq!(names(list("spec.owner=alice").await.unwrap()), ["a", "c"]);
    assert_eq!(names(list("spec.owner!=alice").await.unwrap()), ["b"]);
    assert_eq!(names(list("spec.size=3").await.unwrap()), ["c"]);
    assert_eq!(
        names(list("spec.owner=alice,metadata.name=a").await.unwrap()),
        ["a"]
    );
}

#[tokio::test]
async fn undeclared_fields_are_refused_with_the_apiextensions_message() {
    let cluster = DevCluster::start().await.unwrap();
    let api = gizmos(&cluster).await;
    let refused = api
        .list(&ListParams::default().fields("spec.color=red"))
        .await
        .expect_err("spec.color is not selectable");
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 400);
            assert_eq!(status.message, "field label not supported: spec.color");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn watches_deliver_only_objects_matching_a_selectable_field() {
    let cluster = DevCluster::start().await.unwrap();
    let api = gizmos(&cluster).await;
    let mut events = api
        .watch(&WatchParams::default().fields("spec.owner=bob"), "0")
        .await
        .unwrap()
        .boxed();
    let spec = GizmoSpec {
        owner: "bob".into(),
        size: 4,
        color: "blue".into(),
    };
    let other = GizmoSpec {
        owner: "alice".into(),
        ..spec.clone()
    };
    api.create(&PostParams::default(), &Gizmo::new("d", other))
        .await
        .unwrap();
    api.create(&PostParams::default(), &Gizmo::new("e", spec))
        .await
        .unwrap();
    let mut added = Vec::new();
    while added.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.try_next())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the watch stays open");
        if let WatchEvent::Added(gizmo) = event {
            added.push(gizmo.name_any());
        }
    }
    assert_eq!(added, ["b", "e"]);
}
