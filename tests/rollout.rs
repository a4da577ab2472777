//! The rollout opt-in (`spec.rollout`, controller `--rollout`) against devcluster (or
//! `KEYWARDEN_TEST_KUBECONFIG`): each issuance restarts the named and selected workloads once,
//! a controller restart never does, and keys rotating together restart a workload once.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;

use keywarden::api::{AccessKey, Phase, Rollout, RolloutTarget, WorkloadKind};
use keywarden::controller::{ROLLOUT_DEBOUNCE, ROLLOUT_TRIGGERED};
use support::{KeyBuilder, RunningController, TestCluster};

/// What the chart grants the controller with `rollout.enabled`, here in the test's namespace.
async fn grant_rollout_rbac(cluster: &TestCluster) {
    let role = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "keywarden-rollout"},
        "rules": [{
            "apiGroups": ["apps"],
            "resources": ["deployments", "statefulsets", "daemonsets"],
            "verbs": ["get", "list", "patch"],
        }],
    });
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "keywarden-rollout"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "keywarden-rollout"},
        "subjects": [{
            "kind": "ServiceAccount",
            "name": keywarden::cli::access_control::CONTROLLER_SERVICE_ACCOUNT,
            "namespace": keywarden::cli::access_control::NAMESPACE,
        }],
    });
    for (plural, object) in [("roles", role), ("rolebindings", binding)] {
        let resource = kube::api::ApiResource {
            group: "rbac.authorization.k8s.io".into(),
            version: "v1".into(),
            api_version: "rbac.authorization.k8s.io/v1".into(),
            kind: object["kind"].as_str().unwrap().into(),
            plural: plural.into(),
        };
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &resource);
        let object: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
        api.create(&PostParams::default(), &object).await.unwrap();
    }
}

fn start_controller(cluster: &TestCluster) -> RunningController {
    start_controller_at(cluster, "127.0.0.1:0".parse().unwrap())
}

fn start_controller_at(
    cluster: &TestCluster,
    probe_addr: std::net::SocketAddr,
) -> RunningController {
    let args = keywarden::controller::ControllerArgs {
        rollout: true,
        probe_addr,
        ..support::test_args()
    };
    RunningController::start(cluster.controller_client.clone(), args)
}

fn free_local_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn deployment(cluster: &TestCluster, name: &str, tier: &str) {
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"tier": tier}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            },
        },
    }))
    .unwrap();
    deployments(cluster)
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
}

fn deployments(cluster: &TestCluster) -> Api<Deployment> {
    Api::namespaced(cluster.client.clone(), &cluster.namespace)
}

fn key_with_rollout(name: &str, owner: &str, targets: Vec<RolloutTarget>) -> AccessKey {
    let mut key = KeyBuilder::new(name, owner).build();
    key.spec.rollout = Some(Rollout { targets });
    key
}

fn by_name(name: &str) -> RolloutTarget {
    RolloutTarget {
        kind: WorkloadKind::Deployment,
        name: Some(name.into()),
        selector: None,
    }
}

fn by_tier(tier: &str) -> RolloutTarget {
    RolloutTarget {
        kind: WorkloadKind::Deployment,
        name: None,
        selector: serde_json::from_value(serde_json::json!({"matchLabels": {"tier": tier}}))
            .unwrap(),
    }
}

fn access_id(key: &AccessKey) -> String {
    key.status
        .as_ref()
        .and_then(|s| s.access_key_id.clone())
        .unwrap()
}

/// Waits until deployment `name`'s pod template carries `key`'s annotation at `id`.
async fn restarted_for(cluster: &TestCluster, name: &str, key: &str, id: &str) -> Deployment {
    let annotation = format!("rollout.keywarden.io/{key}");
    support::wait_for(
        &deployments(cluster),
        name,
        &format!("{annotation}={id}"),
        |d: &Deployment| {
            d.spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(&annotation))
                .map(String::as_str)
                == Some(id)
        },
    )
    .await
}

async fn rotate(cluster: &TestCluster, name: &str, generation: i64) {
    cluster
        .keys()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"rotateGeneration": generation}})),
        )
        .await
        .unwrap();
}

async fn rotated(cluster: &TestCluster, name: &str, generation: i64) -> AccessKey {
    cluster
        .wait_key(name, "rotated", |k| {
            k.status.as_ref().and_then(|s| s.observed_rotate_generation) == Some(generation)
        })
        .await
}

/// Time for any write still pending to land (two debounce windows).
async fn settle() {
    tokio::time::sleep(2 * ROLLOUT_DEBOUNCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_issuance_restarts_the_targets_once_and_a_controller_restart_never_does() {
    let cluster = TestCluster::start().await;
    grant_rollout_rbac(&cluster).await;
    deployment(&cluster, "web", "front").await;
    deployment(&cluster, "api", "back").await;
    deployment(&cluster, "batch", "other").await;
    let controller = start_controller(&cluster);
    cluster
        .create_key(&key_with_rollout(
            "ci",
            "alice",
            vec![by_name("web"), by_tier("back")],
        ))
        .await;
    let issued = cluster.wait_phase("ci", Phase::Active).await;
    let web = restarted_for(&cluster, "web", "ci", &access_id(&issued)).await;
    let api = restarted_for(&cluster, "api", "ci", &access_id(&issued)).await;
    settle().await;
    let untouched = deployments(&cluster).get("batch").await.unwrap();
    assert_eq!(untouched.metadata.generation, Some(1), "not a target");

    // A new controller (a restart, a new leader) re-reconciles and writes nothing.
    controller.stop().await;
    let probe_addr = free_local_addr();
    let controller = start_controller_at(&cluster, probe_addr);
    cluster
        .keys()
        .patch(
            "ci",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"displayName": "CI"}})),
        )
        .await
        .unwrap();
    cluster
        .wait_key("ci", "observed the edit", |k| {
            k.status.as_ref().and_then(|s| s.observed_generation) == k.metadata.generation
        })
        .await;
    settle().await;
    for before in [&web, &api] {
        let now = deployments(&cluster).get(&before.name_any()).await.unwrap();
        assert_eq!(now.resource_version(), before.resource_version());
    }

    rotate(&cluster, "ci", 1).await;
    let key = rotated(&cluster, "ci", 1).await;
    assert_ne!(access_id(&key), access_id(&issued));
    for before in [&web, &api] {
        let now = restarted_for(&cluster, &before.name_any(), "ci", &access_id(&key)).await;
        settle().await;
        let settled = deployments(&cluster).get(&before.name_any()).await.unwrap();
        assert_eq!(settled.resource_version(), now.resource_version());
        assert_eq!(
            settled.metadata.generation,
            before.metadata.generation.map(|g| g + 1),
            "one restart per issuance"
        );
    }
    let events = Api::<Event>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let restarts = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some(ROLLOUT_TRIGGERED))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("ci"))
        .count();
    assert!(restarts >= 2, "an Event per restart: {events:#?}");
    let metrics = support::eventually("the metrics endpoint", || async {
        reqwest::get(format!("http://{probe_addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    })
    .await;
    // why: this controller started after the first issuance's restarts: only the rotation's.
    assert!(
        metrics.lines().any(|l| l == "keywarden_rollouts_total 2"),
        "{metrics}"
    );
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotating_together_restart_a_workload_once() {
    let cluster = TestCluster::start().await;
    grant_rollout_rbac(&cluster).await;
    deployment(&cluster, "web", "front").await;
    let _controller = start_controller(&cluster);
    for (name, owner) in [("reader", "alice"), ("writer", "bob")] {
        cluster
            .create_key(&key_with_rollout(name, owner, vec![by_name("web")]))
            .await;
    }
    for name in ["reader", "writer"] {
        let key = cluster.wait_phase(name, Phase::Active).await;
        restarted_for(&cluster, "web", name, &access_id(&key)).await;
    }
    settle().await;
    let before = deployments(&cluster).get("web").await.unwrap();

    rotate(&cluster, "reader", 1).await;
    rotate(&cluster, "writer", 1).await;
    for name in ["reader", "writer"] {
        let key = rotated(&cluster, name, 1).await;
        restarted_for(&cluster, "web", name, &access_id(&key)).await;
    }
    settle().await;
    let after = deployments(&cluster).get("web").await.unwrap();
    assert_eq!(
        after.metadata.generation,
        before.metadata.generation.map(|g| g + 1),
        "two rotations within the debounce window restart the workload once"
    );
}

/// A workload of `kind` (`StatefulSet`, `DaemonSet`) named `name` with label `tier`.
async fn workload(cluster: &TestCluster, kind: &str, name: &str, tier: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: kind.into(),
        plural: format!("{}s", kind.to_lowercase()),
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &resource);
    let object: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": {"tier": tier}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            },
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_sets_and_daemon_sets_are_restarted_by_name_and_by_selector() {
    let cluster = TestCluster::start().await;
    grant_rollout_rbac(&cluster).await;
    let stateful_sets = workload(&cluster, "StatefulSet", "db", "data").await;
    let daemon_sets = workload(&cluster, "DaemonSet", "agent", "node").await;
    workload(&cluster, "DaemonSet", "other", "elsewhere").await;
    let controller = start_controller(&cluster);
    let targets = vec![
        RolloutTarget {
            kind: WorkloadKind::StatefulSet,
            name: Some("db".into()),
            selector: None,
        },
        RolloutTarget {
            kind: WorkloadKind::DaemonSet,
            name: None,
            selector: serde_json::from_value(serde_json::json!({"matchLabels": {"tier": "node"}}))
                .unwrap(),
        },
    ];
    cluster
        .create_key(&key_with_rollout("ci", "alice", targets))
        .await;
    let id = access_id(&cluster.wait_phase("ci", Phase::Active).await);
    let annotated = |o: &DynamicObject| {
        o.data
            .pointer("/spec/template/metadata/annotations/rollout.keywarden.io~1ci")
            .and_then(serde_json::Value::as_str)
            == Some(id.as_str())
    };
    support::wait_for(&stateful_sets, "db", "the StatefulSet restarted", annotated).await;
    support::wait_for(&daemon_sets, "agent", "the DaemonSet restarted", annotated).await;
    settle().await;
    let other = daemon_sets.get("other").await.unwrap();
    assert!(!annotated(&other), "not a target: {other:?}");
    controller.stop().await;
}
