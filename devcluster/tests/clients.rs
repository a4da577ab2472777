//! Real kube-rs clients against devcluster: a kube-runtime Controller, the events Recorder and
//! kube-lease-manager leader election.

use std::sync::Arc;
use std::time::Duration;

use devcluster::DevCluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;
use kube::{Client, CustomResource, CustomResourceExt, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The parent kind the test controller reconciles.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "test.devcluster.io",
    version = "v1",
    kind = "Parent",
    namespaced,
    status = "ParentStatus"
)]
pub struct ParentSpec {
    pub size: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParentStatus {
    pub observed_size: i64,
}

const MANAGER: &str = "parent-controller";

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

/// Applies the parent's child ConfigMap and reports the size it saw in status.
async fn reconcile(parent: Arc<Parent>, client: Arc<Client>) -> Result<Action, ReconcileError> {
    let namespace = parent.namespace().unwrap_or_default();
    let child = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": format!("{}-child", parent.name_any()),
            "ownerReferences": [parent.controller_owner_ref(&())],
        },
        "data": { "size": parent.spec.size.to_string() },
    });
    let apply = PatchParams::apply(MANAGER).force();
    let children: Api<ConfigMap> = Api::namespaced((*client).clone(), &namespace);
    children
        .patch(
            &format!("{}-child", parent.name_any()),
            &apply,
            &Patch::Apply(child),
        )
        .await?;
    let status = serde_json::json!({
        "apiVersion": "test.devcluster.io/v1",
        "kind": "Parent",
        "status": { "observedSize": parent.spec.size },
    });
    let parents: Api<Parent> = Api::namespaced((*client).clone(), &namespace);
    parents
        .patch_status(&parent.name_any(), &apply, &Patch::Apply(status))
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_parent: Arc<Parent>, _error: &ReconcileError, _client: Arc<Client>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

/// Waits up to 15 s for `check` to hold.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waited = tokio::time::timeout(Duration::from_secs(15), async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for: {what}");
}

async fn child_size(children: &Api<ConfigMap>, name: &str) -> Option<String> {
    children
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .data?
        .get("size")
        .cloned()
}

#[tokio::test]
async fn a_controller_owning_children_reconciles_and_survives_forced_410s() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Parent::crd())
        .await
        .unwrap();
    let established = await_condition(
        crds,
        "parents.test.devcluster.io",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .unwrap()
        .unwrap();

    let parents: Api<Parent> = Api::namespaced(client.clone(), "default");
    let children: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let controller = Controller::new(parents.clone(), watcher::Config::default())
        .owns(children.clone(), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client.clone()))
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    parents
        .create(
            &PostParams::default(),
            &Parent::new("p", ParentSpec { size: 1 }),
        )
        .await
        .unwrap();
    eventually("the child has size 1", || async {
        child_size(&children, "p-child").await.as_deref() == Some("1")
    })
    .await;
    eventually("status reports size 1", || async {
        parents
            .get_status("p")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.observed_size == 1)
    })
    .await;
    let child = children.get("p-child").await.unwrap();
    assert_eq!(child.owner_references()[0].name, "p");
    let managers: Vec<String> = child
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, [MANAGER]);

    // why: every watch now ends and every resume is too old, forcing the watchers to relist.
    cluster.faults().compact_history();
    cluster.faults().end_watches();
    let resize = Patch::Merge(serde_json::json!({ "spec": { "size": 2 } }));
    parents
        .patch("p", &PatchParams::default(), &resize)
        .await
        .unwrap();
    eventually("the child follows to size 2", || async {
        child_size(&children, "p-child").await.as_deref() == Some("2")
    })
    .await;

    children
        .delete("p-child", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the owned child is recreated", || async {
        child_size(&children, "p-child").await.is_some()
    })
    .await;
    controller.abort();
}

#[tokio::test]
async fn the_events_recorder_patches_repeated_events_into_a_series() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("subject".into());
    let cm = configs.create(&PostParams::default(), &cm).await.unwrap();
    let reference: ObjectReference = cm.object_ref(&());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "tester".into(),
            instance: Some("t-1".into()),
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "Tested".into(),
        note: Some("it happened".into()),
        action: "Test".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();

    let events: Api<EventV1> = Api::namespaced(client.clone(), "default");
    let listed = events.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(listed.len(), 1, "one Event object for the repeated event");
    let stored = &listed[0];
    assert_eq!(stored.reason.as_deref(), Some("Tested"));
    assert_eq!(stored.series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(
        stored.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("subject")
    );

    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let selected = core
        .list(&ListParams::default().fields("involvedObject.name=subject"))
        .await
        .unwrap()
        .items;
    assert_eq!(
        selected.len(),
        1,
        "the same event is served through core/v1"
    );
}

#[tokio::test]
async fn lease_manager_elects_exactly_one_leader_and_fails_over_after_expiry() {
    let cluster = DevCluster::start().await.unwrap();
    let contender = |identity: &'static str| {
        let client = cluster.client().unwrap();
        async move {
            LeaseManagerBuilder::new(client, "leader")
                .with_namespace("default")
                .with_identity(identity)
                .with_duration(4)
                .with_grace(1)
                .build()
                .await
                .unwrap()
                .watch()
                .await
        }
    };
    let (mut a_leads, a_task) = contender("a").await;
    tokio::time::timeout(Duration::from_secs(15), a_leads.wait_for(|leads| *leads))
        .await
        .unwrap()
        .unwrap();
    let (b_leads, b_task) = contender("b").await;

    // why: observe both over more than one lease duration; at no point may both lead.
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < watch_until {
        assert!(
            !(*a_leads.borrow() && *b_leads.borrow()),
            "two leaders at once"
        );
        assert!(!*b_leads.borrow(), "b must not lead while a renews");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lease: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.client().unwrap(), "default");
    let holder = lease
        .get("leader")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some("a"));

    // why: abort without releasing, as a crashed leader would; b takes over once the lease expires.
    a_task.abort();
    let mut b_leads = b_leads;
    tokio::time::timeout(Duration::from_secs(30), b_leads.wait_for(|leads| *leads))
        .await
        .unwrap()
        .unwrap();
    let holder = lease
        .get("leader")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some("b"));
    b_task.abort();
}
