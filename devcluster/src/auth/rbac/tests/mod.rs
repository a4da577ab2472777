//! The evaluator with plain `UserInfo` values against a store holding roles and bindings.

mod evaluation;
mod policy;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::Rbac;
use crate::auth::{Attributes, Authorizer, Decision, UserInfo};
use crate::builtin::builtin_types;
use crate::store::{storage_key, Store, WriteContext};

pub(super) struct Fixture {
    pub store: Store,
    pub rbac: Arc<Rbac>,
}

pub(super) fn fixture() -> Fixture {
    let store = Store::new(1000);
    let rbac = Rbac::install(&store);
    Fixture { store, rbac }
}

pub(super) fn user(name: &str, groups: &[&str]) -> Arc<UserInfo> {
    let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_string()).collect();
    groups.push("system:authenticated".into());
    Arc::new(UserInfo {
        username: name.into(),
        uid: String::new(),
        groups,
        extra: BTreeMap::new(),
    })
}

pub(super) fn rt_of(kind: &str) -> crate::registry::ResourceType {
    builtin_types()
        .into_iter()
        .find(|rt| rt.kind == kind && rt.group == "rbac.authorization.k8s.io")
        .expect("rbac kind is built in")
}

impl Fixture {
    pub(super) fn put(&self, object: Value) {
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

    pub(super) fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let rt = rt_of(kind);
        let options = crate::store::DeleteOptions::default();
        self.store
            .lock()
            .delete(&rt, &storage_key(&rt), namespace, name, &options)
            .expect("delete");
    }

    pub(super) fn decide(&self, attributes: &Attributes) -> Decision {
        self.rbac.authorize(attributes)
    }
}

pub(super) fn role(namespace: &str, name: &str, rules: Value) -> Value {
    json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": name, "namespace": namespace }, "rules": rules })
}

pub(super) fn cluster_role(name: &str, labels: Value, rules: Value) -> Value {
    json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": name, "labels": labels }, "rules": rules })
}

pub(super) fn role_binding(
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

pub(super) fn cluster_role_binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": name },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
            "subjects": subjects })
}

pub(super) fn request(
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

pub(super) fn named(mut attributes: Attributes, name: &str) -> Attributes {
    attributes.name = name.into();
    attributes
}

pub(super) fn sub(mut attributes: Attributes, subresource: &str) -> Attributes {
    attributes.subresource = subresource.into();
    attributes
}

pub(super) fn path(user: &Arc<UserInfo>, path: &str) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: "get".into(),
        path: path.into(),
        ..Attributes::default()
    }
}

pub(super) fn bob_can_manage_keys_in_team_a(fixture: &Fixture) {
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
