//! The evaluator with plain `UserInfo` values against a store holding roles and bindings.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::rule::{uncovered, PolicyRule};
use super::*;
use crate::auth::{Attributes, Authorizer, Decision, UserInfo};
use crate::builtin::builtin_types;
use crate::store::{storage_key, Store, WriteContext};

struct Fixture {
    store: Store,
    rbac: Arc<Rbac>,
}

fn fixture() -> Fixture {
    let store = Store::new(1000);
    let rbac = Rbac::install(&store);
    Fixture { store, rbac }
}

fn user(name: &str, groups: &[&str]) -> Arc<UserInfo> {
    let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_string()).collect();
    groups.push("system:authenticated".into());
    Arc::new(UserInfo {
        username: name.into(),
        uid: String::new(),
        groups,
        extra: BTreeMap::new(),
    })
}

fn rt_of(kind: &str) -> crate::registry::ResourceType {
    builtin_types()
        .into_iter()
        .find(|rt| rt.kind == kind && rt.group == "rbac.authorization.k8s.io")
        .expect("rbac kind is built in")
}

impl Fixture {
    fn put(&self, object: Value) {
        let rt = rt_of(object["kind"].as_str().expect("kind"));
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        let key = storage_key(&rt);
        let ctx = WriteContext::default();
        let mut state = self.store.lock();
        if state.get(&key, &namespace, &name).is_some() {
            state
                .update(&rt, &key, &namespace, &name, object, &ctx)
                .expect("update");
        } else {
            state
                .create(&rt, &key, &namespace, object, &ctx)
                .expect("create");
        }
    }

    fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let rt = rt_of(kind);
        let options = crate::store::DeleteOptions::default();
        self.store
            .lock()
            .delete(&rt, &storage_key(&rt), namespace, name, &options)
            .expect("delete");
    }

    fn decide(&self, attributes: &Attributes) -> Decision {
        self.rbac.authorize(attributes)
    }
}

fn role(namespace: &str, name: &str, rules: Value) -> Value {
    json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": name, "namespace": namespace }, "rules": rules })
}

fn cluster_role(name: &str, labels: Value, rules: Value) -> Value {
    json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": name, "labels": labels }, "rules": rules })
}

fn role_binding(
    namespace: &str,
    name: &str,
    role_kind: &str,
    role: &str,
    subjects: Value,
) -> Value {
    json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": name, "namespace": namespace },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role },
            "subjects": subjects })
}

fn cluster_role_binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": name },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
            "subjects": subjects })
}

fn request(
    user: &Arc<UserInfo>,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: &str,
) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        namespace: namespace.into(),
        ..Attributes::default()
    }
}

fn named(mut attributes: Attributes, name: &str) -> Attributes {
    attributes.name = name.into();
    attributes
}

fn sub(mut attributes: Attributes, subresource: &str) -> Attributes {
    attributes.subresource = subresource.into();
    attributes
}

fn path(user: &Arc<UserInfo>, path: &str) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: "get".into(),
        path: path.into(),
        ..Attributes::default()
    }
}

fn bob_can_manage_keys_in_team_a(fixture: &Fixture) {
    fixture.put(role(
        "team-a",
        "key-manager",
        json!([{ "apiGroups": ["keywarden.io"], "resources": ["accesskeys"], "verbs": ["*"] }]),
    ));
    fixture.put(role_binding(
        "team-a",
        "bob-keys",
        "Role",
        "key-manager",
        json!([{ "kind": "User", "name": "bob" }]),
    ));
}

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
    assert_eq!(
        fixture.decide(&elsewhere),
        Decision::NoOpinion(String::new())
    );
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
        Decision::Allow(String::new())
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

fn rules_of(fixture: &Fixture, name: &str) -> Vec<PolicyRule> {
    let key = crate::store::StorageKey::from(index::CLUSTER_ROLES);
    let state = fixture.store.lock();
    PolicyRule::from_object(state.get(&key, "", name).expect("role exists"))
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
    let err = forbidden(&create, &Decision::NoOpinion(String::new()));
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
        &Decision::NoOpinion(String::new()),
    );
    assert_eq!(
        err.message,
        "namespaces is forbidden: User \"bob\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
    );
    assert_eq!(err.details, Some(json!({ "kind": "namespaces" })));

    let anonymous = Arc::new(UserInfo::anonymous());
    let err = forbidden(
        &path(&anonymous, "/api"),
        &Decision::NoOpinion(String::new()),
    );
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
