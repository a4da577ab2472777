//! Who RBAC allows what: bindings, rules, subjects and live updates.

use serde_json::json;

use super::*;
use crate::auth::{Decision, UserInfo};
use std::sync::Arc;

#[test]
fn role_binding_allows_its_rules_in_its_namespace_only() {
    let fixture = fixture();
    bob_can_manage_keys_in_team_a(&fixture);
    let bob = user("bob", &[]);
    let create = request(&bob, "create", "keywarden.io", "accesskeys", "team-a");
    assert_eq!(
        fixture.decide(&create),
        Decision::Allow(
            "RBAC: allowed by RoleBinding \"bob-keys/team-a\" of Role \"key-manager\" to User \"bob\""
                .into()
        )
    );
    let elsewhere = request(&bob, "create", "keywarden.io", "accesskeys", "team-b");
    assert_eq!(fixture.decide(&elsewhere), Decision::NoOpinion("".into()));
    let cluster_wide = request(&bob, "list", "keywarden.io", "accesskeys", "");
    assert!(!fixture.decide(&cluster_wide).allowed());
    let alice = user("alice", &[]);
    let as_alice = request(&alice, "create", "keywarden.io", "accesskeys", "team-a");
    assert!(!fixture.decide(&as_alice).allowed());
}

#[test]
fn every_verb_is_checked_on_its_own() {
    let fixture = fixture();
    fixture.put(role(
        "team-a",
        "reader",
        json!([{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"] }]),
    ));
    fixture.put(role_binding(
        "team-a",
        "readers",
        "Role",
        "reader",
        json!([{ "kind": "Group", "name": "team-a" }]),
    ));
    let bob = user("bob", &["team-a"]);
    for verb in ["get", "list", "watch"] {
        assert!(
            fixture
                .decide(&request(&bob, verb, "", "configmaps", "team-a"))
                .allowed(),
            "{verb}"
        );
    }
    for verb in ["create", "update", "patch", "delete", "deletecollection"] {
        assert!(
            !fixture
                .decide(&request(&bob, verb, "", "configmaps", "team-a"))
                .allowed(),
            "{verb}"
        );
    }
}

#[test]
fn cluster_role_binding_allows_in_every_namespace_and_cluster_wide() {
    let fixture = fixture();
    fixture.put(cluster_role(
        "key-reader",
        json!({}),
        json!([{ "apiGroups": ["keywarden.io"], "resources": ["accesskeys"], "verbs": ["get", "list"] }]),
    ));
    fixture.put(cluster_role_binding(
        "auditors",
        "key-reader",
        json!([{ "kind": "Group", "name": "auditors" }]),
    ));
    let carol = user("carol", &["auditors"]);
    for namespace in ["team-a", "team-b", ""] {
        let list = request(&carol, "list", "keywarden.io", "accesskeys", namespace);
        assert_eq!(
            fixture.decide(&list),
            Decision::Allow("RBAC: allowed by ClusterRoleBinding \"auditors\" of ClusterRole \"key-reader\" to Group \"auditors\"".into())
        );
    }
    assert!(!fixture
        .decide(&request(
            &carol,
            "delete",
            "keywarden.io",
            "accesskeys",
            "team-a"
        ))
        .allowed());
}

#[test]
fn role_binding_to_a_cluster_role_grants_it_in_the_binding_namespace() {
    let fixture = fixture();
    fixture.put(role_binding(
        "team-a",
        "bob-view",
        "ClusterRole",
        "view",
        json!([{ "kind": "User", "name": "bob" }]),
    ));
    let bob = user("bob", &[]);
    assert!(fixture
        .decide(&request(&bob, "list", "", "configmaps", "team-a"))
        .allowed());
    assert!(!fixture
        .decide(&request(&bob, "list", "", "configmaps", "team-b"))
        .allowed());
    assert!(!fixture
        .decide(&request(&bob, "get", "", "secrets", "team-a"))
        .allowed());
}

#[test]
fn resource_names_restrict_requests_for_one_object() {
    let fixture = fixture();
    fixture.put(role(
        "team-a",
        "one-key",
        json!([{ "apiGroups": ["keywarden.io"], "resources": ["accesskeys"], "resourceNames": ["build"], "verbs": ["get", "list", "watch", "update"] }]),
    ));
    fixture.put(role_binding(
        "team-a",
        "bob-one-key",
        "Role",
        "one-key",
        json!([{ "kind": "User", "name": "bob" }]),
    ));
    let bob = user("bob", &[]);
    let get = request(&bob, "get", "keywarden.io", "accesskeys", "team-a");
    assert!(fixture.decide(&named(get.clone(), "build")).allowed());
    assert!(!fixture.decide(&named(get, "deploy")).allowed());
    let list = request(&bob, "list", "keywarden.io", "accesskeys", "team-a");
    assert!(
        !fixture.decide(&list).allowed(),
        "a list of every key is not one named key"
    );
    assert!(
        fixture.decide(&named(list, "build")).allowed(),
        "fieldSelector=metadata.name=build"
    );
}

#[test]
fn custom_verbs_match_only_themselves_and_the_star() {
    let fixture = fixture();
    fixture.put(role(
        "team-a",
        "key-admin",
        json!([{ "apiGroups": ["keywarden.io"], "resources": ["accesskeys"], "verbs": ["manage"] }]),
    ));
    fixture.put(role_binding(
        "team-a",
        "bob-admin",
        "Role",
        "key-admin",
        json!([{ "kind": "User", "name": "bob" }]),
    ));
    let bob = user("bob", &[]);
    assert!(fixture
        .decide(&request(
            &bob,
            "manage",
            "keywarden.io",
            "accesskeys",
            "team-a"
        ))
        .allowed());
    assert!(!fixture
        .decide(&request(
            &bob,
            "get",
            "keywarden.io",
            "accesskeys",
            "team-a"
        ))
        .allowed());
}

#[test]
fn subresources_need_their_own_rule() {
    let fixture = fixture();
    fixture.put(role(
        "team-a",
        "status-writer",
        json!([
            { "apiGroups": ["keywarden.io"], "resources": ["accesskeys/status"], "verbs": ["update"] },
            { "apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"] },
        ]),
    ));
    fixture.put(role_binding(
        "team-a",
        "bob-status",
        "Role",
        "status-writer",
        json!([{ "kind": "User", "name": "bob" }]),
    ));
    let bob = user("bob", &[]);
    let update = request(&bob, "update", "keywarden.io", "accesskeys", "team-a");
    assert!(fixture.decide(&sub(update.clone(), "status")).allowed());
    assert!(
        !fixture.decide(&update).allowed(),
        "the status rule does not grant the object"
    );
    assert!(!fixture.decide(&sub(update, "scale")).allowed());
    let scale = sub(
        request(&bob, "get", "apps", "deployments", "team-a"),
        "scale",
    );
    assert!(
        fixture.decide(&scale).allowed(),
        "*/scale matches every resource's scale"
    );
    assert!(!fixture
        .decide(&request(&bob, "get", "apps", "deployments", "team-a"))
        .allowed());
}

#[test]
fn non_resource_urls_match_exactly_or_by_trailing_star() {
    let fixture = fixture();
    fixture.put(cluster_role(
        "metrics",
        json!({}),
        json!([{ "nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"] }]),
    ));
    fixture.put(cluster_role_binding(
        "metrics",
        "metrics",
        json!([{ "kind": "User", "name": "prom" }]),
    ));
    let prom = user("prom", &[]);
    assert!(fixture.decide(&path(&prom, "/metrics")).allowed());
    assert!(fixture.decide(&path(&prom, "/logs/kube")).allowed());
    assert!(!fixture.decide(&path(&prom, "/metrics/extra")).allowed());
    assert!(!fixture.decide(&path(&prom, "/logs")).allowed());
}

#[test]
fn service_account_subjects_default_to_the_binding_namespace() {
    let fixture = fixture();
    fixture.put(role_binding(
        "team-a",
        "ci-edit",
        "ClusterRole",
        "edit",
        json!([{ "kind": "ServiceAccount", "name": "ci" }, { "kind": "ServiceAccount", "name": "deployer", "namespace": "tools" }]),
    ));
    let ci = user(
        "system:serviceaccount:team-a:ci",
        &["system:serviceaccounts", "system:serviceaccounts:team-a"],
    );
    assert_eq!(
        fixture.decide(&request(&ci, "create", "", "configmaps", "team-a")),
        Decision::Allow("RBAC: allowed by RoleBinding \"ci-edit/team-a\" of ClusterRole \"edit\" to ServiceAccount \"ci/team-a\"".into())
    );
    let deployer = user("system:serviceaccount:tools:deployer", &[]);
    assert!(fixture
        .decide(&request(&deployer, "create", "", "configmaps", "team-a"))
        .allowed());
    let other_ci = user("system:serviceaccount:team-b:ci", &[]);
    assert!(!fixture
        .decide(&request(&other_ci, "create", "", "configmaps", "team-a"))
        .allowed());
}

#[test]
fn masters_are_allowed_everything_without_a_binding() {
    let fixture = fixture();
    let admin = Arc::new(UserInfo::admin());
    assert_eq!(
        fixture.decide(&request(
            &admin,
            "escalate",
            "anything.io",
            "whatever",
            "ns"
        )),
        Decision::Allow("".into())
    );
}

#[test]
fn a_binding_to_a_missing_role_denies_with_the_resolution_error() {
    let fixture = fixture();
    fixture.put(role_binding(
        "team-a",
        "dangling",
        "ClusterRole",
        "missing",
        json!([{ "kind": "User", "name": "bob" }]),
    ));
    fixture.put(role_binding(
        "team-a",
        "dangling-role",
        "Role",
        "gone",
        json!([{ "kind": "User", "name": "bob" }]),
    ));
    let bob = user("bob", &[]);
    assert_eq!(
        fixture.decide(&request(&bob, "get", "", "configmaps", "team-a")),
        Decision::NoOpinion("RBAC: [clusterrole.rbac.authorization.k8s.io \"missing\" not found, role.rbac.authorization.k8s.io \"gone\" not found]".into())
    );
}

#[test]
fn writes_to_bindings_take_effect_for_the_next_decision() {
    let fixture = fixture();
    bob_can_manage_keys_in_team_a(&fixture);
    let bob = user("bob", &[]);
    let create = request(&bob, "create", "keywarden.io", "accesskeys", "team-a");
    assert!(fixture.decide(&create).allowed());
    fixture.put(role_binding(
        "team-a",
        "bob-keys",
        "Role",
        "key-manager",
        json!([{ "kind": "User", "name": "alice" }]),
    ));
    assert!(
        !fixture.decide(&create).allowed(),
        "bob was replaced by alice"
    );
    assert!(fixture
        .decide(&request(
            &user("alice", &[]),
            "create",
            "keywarden.io",
            "accesskeys",
            "team-a"
        ))
        .allowed());
    fixture.delete("RoleBinding", "team-a", "bob-keys");
    assert!(!fixture
        .decide(&request(
            &user("alice", &[]),
            "create",
            "keywarden.io",
            "accesskeys",
            "team-a"
        ))
        .allowed());
}

#[test]
fn role_rule_changes_take_effect_for_the_next_decision() {
    let fixture = fixture();
    bob_can_manage_keys_in_team_a(&fixture);
    let bob = user("bob", &[]);
    let create = request(&bob, "create", "keywarden.io", "accesskeys", "team-a");
    fixture.put(role(
        "team-a",
        "key-manager",
        json!([{ "apiGroups": ["keywarden.io"], "resources": ["accesskeys"], "verbs": ["get"] }]),
    ));
    assert!(!fixture.decide(&create).allowed());
    fixture.delete("Role", "team-a", "key-manager");
    assert_eq!(
        fixture.decide(&request(
            &bob,
            "get",
            "keywarden.io",
            "accesskeys",
            "team-a"
        )),
        Decision::NoOpinion(
            "RBAC: role.rbac.authorization.k8s.io \"key-manager\" not found".into()
        )
    );
}
