//! Bootstrap policy, aggregation, denial texts and rule coverage.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::auth::rbac::rule::{uncovered, PolicyRule};
use crate::auth::rbac::{forbidden, index, name_from_field_selector};
use crate::auth::{Decision, UserInfo};

fn rules_of(fixture: &Fixture, name: &str) -> Vec<PolicyRule> {
    let key = crate::store::StorageKey::from(index::CLUSTER_ROLES);
    let state = fixture.store.lock();
    PolicyRule::from_object(state.get(&key, "", name).expect("role exists"))
}

#[test]
fn bootstrap_policy_lets_anonymous_see_only_public_info() {
    let fixture = fixture();
    let anonymous = Arc::new(UserInfo::anonymous());
    assert_eq!(
        fixture.decide(&path(&anonymous, "/version")),
        Decision::Allow("RBAC: allowed by ClusterRoleBinding \"system:public-info-viewer\" of ClusterRole \"system:public-info-viewer\" to Group \"system:unauthenticated\"".into())
    );
    assert!(fixture.decide(&path(&anonymous, "/healthz")).allowed());
    assert!(!fixture.decide(&path(&anonymous, "/api")).allowed());
    assert!(!fixture
        .decide(&request(&anonymous, "list", "", "namespaces", ""))
        .allowed());
    let bob = user("bob", &[]);
    for discovery in ["/api", "/apis/apps/v1", "/openapi/v3", "/version"] {
        assert!(
            fixture.decide(&path(&bob, discovery)).allowed(),
            "{discovery}"
        );
    }
    let review = request(
        &bob,
        "create",
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "",
    );
    assert!(fixture.decide(&review).allowed());
    assert!(!fixture
        .decide(&request(&bob, "list", "", "configmaps", "default"))
        .allowed());
}

#[test]
fn bootstrap_admin_edit_and_view_are_aggregated() {
    let fixture = fixture();
    let view = rules_of(&fixture, "view");
    let edit = rules_of(&fixture, "edit");
    let admin = rules_of(&fixture, "admin");
    assert!(!view.is_empty());
    assert!(
        view.iter().all(|rule| edit.contains(rule)),
        "edit includes view"
    );
    assert!(
        edit.iter().all(|rule| admin.contains(rule)),
        "admin includes edit"
    );
    let bob = user("bob", &[]);
    fixture.put(role_binding(
        "team-a",
        "bob-admin",
        "ClusterRole",
        "admin",
        json!([{ "kind": "User", "name": "bob" }]),
    ));
    assert!(fixture
        .decide(&request(
            &bob,
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings",
            "team-a"
        ))
        .allowed());
    assert!(fixture
        .decide(&request(&bob, "list", "", "configmaps", "team-a"))
        .allowed());
}

#[test]
fn labelled_cluster_roles_join_and_leave_the_aggregated_roles() {
    let fixture = fixture();
    let bob = user("bob", &[]);
    fixture.put(role_binding(
        "team-a",
        "bob-view",
        "ClusterRole",
        "view",
        json!([{ "kind": "User", "name": "bob" }]),
    ));
    fixture.put(role_binding(
        "team-a",
        "bob-admin",
        "ClusterRole",
        "admin",
        json!([{ "kind": "User", "name": "alice" }]),
    ));
    let list_keys = request(&bob, "list", "keywarden.io", "accesskeys", "team-a");
    assert!(!fixture.decide(&list_keys).allowed());
    fixture.put(cluster_role(
        "keywarden-view",
        json!({ "rbac.authorization.k8s.io/aggregate-to-view": "true" }),
        json!([{ "apiGroups": ["keywarden.io"], "resources": ["accesskeys"], "verbs": ["get", "list", "watch"] }]),
    ));
    assert!(
        fixture.decide(&list_keys).allowed(),
        "view picked up the new role at once"
    );
    let alice = user("alice", &[]);
    assert!(
        fixture
            .decide(&request(
                &alice,
                "list",
                "keywarden.io",
                "accesskeys",
                "team-a"
            ))
            .allowed(),
        "admin aggregates edit, which aggregates view"
    );
    fixture.put(cluster_role(
        "keywarden-view",
        json!({}),
        json!([{ "apiGroups": ["keywarden.io"], "resources": ["accesskeys"], "verbs": ["get", "list", "watch"] }]),
    ));
    assert!(
        !fixture.decide(&list_keys).allowed(),
        "removing the label removes the rules"
    );
    fixture.put(cluster_role(
        "keywarden-view",
        json!({ "rbac.authorization.k8s.io/aggregate-to-view": "true" }),
        json!([{ "apiGroups": ["keywarden.io"], "resources": ["accesskeys"], "verbs": ["get"] }]),
    ));
    fixture.delete("ClusterRole", "", "keywarden-view");
    assert!(!rules_of(&fixture, "view")
        .iter()
        .any(|rule| rule.api_groups == ["keywarden.io"]));
}

#[test]
fn forbidden_messages_are_worded_as_kube_apiserver() {
    let bob = user("bob", &[]);
    let create = request(&bob, "create", "keywarden.io", "accesskeys", "team-a");
    let err = forbidden(&create, &Decision::NoOpinion("".into()));
    assert_eq!((err.code, err.reason), (403, "Forbidden"));
    assert_eq!(
        err.message,
        "accesskeys.keywarden.io is forbidden: User \"bob\" cannot create resource \"accesskeys\" in API group \"keywarden.io\" in the namespace \"team-a\""
    );
    assert_eq!(
        err.details,
        Some(json!({ "group": "keywarden.io", "kind": "accesskeys" }))
    );

    let status = sub(
        named(
            request(&bob, "update", "keywarden.io", "accesskeys", "team-a"),
            "build",
        ),
        "status",
    );
    let err = forbidden(
        &status,
        &Decision::NoOpinion("RBAC: role.rbac.authorization.k8s.io \"x\" not found".into()),
    );
    assert_eq!(
        err.message,
        "accesskeys.keywarden.io \"build\" is forbidden: User \"bob\" cannot update resource \"accesskeys/status\" in API group \"keywarden.io\" in the namespace \"team-a\": RBAC: role.rbac.authorization.k8s.io \"x\" not found"
    );
    assert_eq!(
        err.details,
        Some(json!({ "name": "build", "group": "keywarden.io", "kind": "accesskeys" }))
    );

    let err = forbidden(
        &request(&bob, "list", "", "namespaces", ""),
        &Decision::NoOpinion("".into()),
    );
    assert_eq!(
        err.message,
        "namespaces is forbidden: User \"bob\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
    );
    assert_eq!(err.details, Some(json!({ "kind": "namespaces" })));

    let anonymous = Arc::new(UserInfo::anonymous());
    let err = forbidden(&path(&anonymous, "/api"), &Decision::NoOpinion("".into()));
    assert_eq!(
        err.message,
        "forbidden: User \"system:anonymous\" cannot get path \"/api\""
    );
    assert_eq!(err.details, Some(json!({})));
}

#[test]
fn a_metadata_name_field_selector_names_the_object() {
    assert_eq!(
        name_from_field_selector("metadata.name=build"),
        Some("build")
    );
    assert_eq!(
        name_from_field_selector("metadata.name==build"),
        Some("build")
    );
    assert_eq!(
        name_from_field_selector("metadata.namespace=a,metadata.name=b"),
        Some("b")
    );
    assert_eq!(name_from_field_selector("metadata.name!=build"), None);
    assert_eq!(name_from_field_selector("metadata.name=a/b"), None);
    assert_eq!(name_from_field_selector("status.phase=Running"), None);
}

#[test]
fn uncovered_rules_list_what_the_owner_lacks_compacted_by_verb() {
    let owned = [PolicyRule::resource(
        &["get", "list"],
        &[""],
        &["configmaps"],
    )];
    let wanted = [
        PolicyRule::resource(&["get", "create", "delete"], &[""], &["configmaps"]),
        PolicyRule::urls(&["get"], &["/metrics"]),
    ];
    let missing: Vec<String> = uncovered(&owned, &wanted)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        missing,
        [
            "{APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"create\" \"delete\"]}",
            "{NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}",
        ]
    );
    let star = [PolicyRule::resource(&["*"], &["*"], &["*"])];
    assert!(uncovered(&star, &wanted[..1]).is_empty());
    let named = [PolicyRule::resource(&["get"], &[""], &["secrets"]).names(&["a"])];
    let all_secrets = [PolicyRule::resource(&["get"], &[""], &["secrets"])];
    assert_eq!(
        uncovered(&named, &all_secrets).len(),
        1,
        "a named rule does not cover all names"
    );
    let subresources = [PolicyRule::resource(&["update"], &["apps"], &["*/status"])];
    let status = [PolicyRule::resource(
        &["update"],
        &["apps"],
        &["deployments/status"],
    )];
    assert!(uncovered(&subresources, &status).is_empty());
}
