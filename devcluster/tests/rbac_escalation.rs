//! Escalation prevention: writing a role or binding that grants more than the writer holds is
//! refused with kube-apiserver's texts unless the writer may `escalate` or `bind`.

#[path = "support/identities.rs"]
mod identities;

use devcluster::DevCluster;
use identities::*;
use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, Role, RoleBinding,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Bob administers namespace team-a (the bootstrap `admin` ClusterRole bound there).
async fn bob_administers_team_a(cluster: &DevCluster) -> kube::Client {
    let admin = cluster.client().unwrap();
    create_namespace(&admin, "team-a").await;
    bind_cluster_role(&admin, "team-a", "admin", vec![user("bob")]).await;
    client_as(cluster, "bob", &[]).await
}

fn key_admin_role() -> Role {
    role(
        "key-admin",
        vec![rule(&["keywarden.io"], &["accesskeys"], &["manage", "get"])],
    )
}

#[tokio::test]
async fn a_role_granting_what_the_writer_lacks_is_forbidden() {
    let cluster = DevCluster::start().await.unwrap();
    let roles = Api::<Role>::namespaced(bob_administers_team_a(&cluster).await, "team-a");

    let err = roles
        .create(&PostParams::default(), &key_admin_role())
        .await
        .unwrap_err();
    assert_forbidden(
        err,
        "roles.rbac.authorization.k8s.io \"key-admin\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"keywarden.io\"], Resources:[\"accesskeys\"], Verbs:[\"manage\" \"get\"]}",
    );
    roles
        .create(
            &PostParams::default(),
            &role(
                "cm-reader",
                vec![rule(&[""], &["configmaps"], &["get", "list"])],
            ),
        )
        .await
        .expect("a role within bob's own permissions");
}

#[tokio::test]
async fn binding_a_role_the_writer_does_not_hold_is_forbidden() {
    let cluster = DevCluster::start().await.unwrap();
    let bindings = Api::<RoleBinding>::namespaced(bob_administers_team_a(&cluster).await, "team-a");

    let err = bindings
        .create(
            &PostParams::default(),
            &role_binding(
                "alice-admin",
                "ClusterRole",
                "cluster-admin",
                vec![user("alice")],
            ),
        )
        .await
        .unwrap_err();
    assert_forbidden(
        err,
        "rolebindings.rbac.authorization.k8s.io \"alice-admin\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}\n{NonResourceURLs:[\"*\"], Verbs:[\"*\"]}",
    );
    bindings
        .create(
            &PostParams::default(),
            &role_binding("alice-view", "ClusterRole", "view", vec![user("alice")]),
        )
        .await
        .expect("bob holds everything view grants");
    let err = bindings
        .create(
            &PostParams::default(),
            &role_binding("dangling", "ClusterRole", "missing", vec![user("alice")]),
        )
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (
            404,
            "NotFound",
            "clusterroles.rbac.authorization.k8s.io \"missing\" not found"
        )
    );
}

#[tokio::test]
async fn escalate_and_bind_permissions_lift_the_checks() {
    let cluster = DevCluster::start().await.unwrap();
    let bob = bob_administers_team_a(&cluster).await;
    let admin = cluster.client().unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .create(
            &PostParams::default(),
            &cluster_role(
                "delegator",
                &[],
                vec![
                    rule(&["rbac.authorization.k8s.io"], &["roles"], &["escalate"]),
                    named_rule(
                        &["rbac.authorization.k8s.io"],
                        &["clusterroles"],
                        &["cluster-admin"],
                        &["bind"],
                    ),
                ],
            ),
        )
        .await
        .unwrap();
    bind_cluster_role(&admin, "team-a", "delegator", vec![user("bob")]).await;

    Api::<Role>::namespaced(bob.clone(), "team-a")
        .create(&PostParams::default(), &key_admin_role())
        .await
        .expect("escalate lets bob write a role beyond his permissions");
    Api::<RoleBinding>::namespaced(bob, "team-a")
        .create(
            &PostParams::default(),
            &role_binding(
                "alice-admin",
                "ClusterRole",
                "cluster-admin",
                vec![user("alice")],
            ),
        )
        .await
        .expect("bind on cluster-admin lets bob bind it");
}

#[tokio::test]
async fn an_aggregation_rule_needs_cluster_admin() {
    let cluster = DevCluster::start().await.unwrap();
    let admin = cluster.client().unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .create(
            &PostParams::default(),
            &cluster_role(
                "role-writer",
                &[],
                vec![rule(
                    &["rbac.authorization.k8s.io"],
                    &["clusterroles"],
                    &["create"],
                )],
            ),
        )
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(admin)
        .create(
            &PostParams::default(),
            &cluster_role_binding("bob-role-writer", "role-writer", vec![user("bob")]),
        )
        .await
        .unwrap();
    let aggregated = ClusterRole {
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some([("team".to_string(), "a".to_string())].into()),
                ..LabelSelector::default()
            }]),
        }),
        ..cluster_role("team-a-aggregate", &[], Vec::new())
    };

    let err = Api::<ClusterRole>::all(client_as(&cluster, "bob", &[]).await)
        .create(&PostParams::default(), &aggregated)
        .await
        .unwrap_err();
    assert_forbidden(
        err,
        "clusterroles.rbac.authorization.k8s.io \"team-a-aggregate\" is forbidden: must have cluster-admin privileges to use the aggregationRule",
    );
}

#[tokio::test]
async fn updates_of_a_role_beyond_the_writer_are_checked_except_garbage_collection_fields() {
    let cluster = DevCluster::start().await.unwrap();
    let bob = bob_administers_team_a(&cluster).await;
    Api::<Role>::namespaced(cluster.client().unwrap(), "team-a")
        .create(&PostParams::default(), &key_admin_role())
        .await
        .unwrap();
    let roles = Api::<Role>::namespaced(bob, "team-a");

    let finalizer = Patch::Merge(json!({ "metadata": { "finalizers": ["example.com/keep"] } }));
    roles
        .patch("key-admin", &PatchParams::default(), &finalizer)
        .await
        .expect("finalizers are the garbage collector's fields");
    let label = Patch::Merge(json!({ "metadata": { "labels": { "team": "a" } } }));
    let err = roles
        .patch("key-admin", &PatchParams::default(), &label)
        .await
        .unwrap_err();
    assert_forbidden(
        err,
        "roles.rbac.authorization.k8s.io \"key-admin\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"keywarden.io\"], Resources:[\"accesskeys\"], Verbs:[\"manage\" \"get\"]}",
    );
}
