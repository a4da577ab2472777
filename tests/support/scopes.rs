//! Scope grants as platform teams make them: a Role naming `scopes.keywarden.io` and a
//! RoleBinding to it, in the test's namespace.

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use super::TestCluster;

/// Who a grant is for.
pub enum Grantee<'a> {
    User(&'a str),
    Group(&'a str),
    /// A ServiceAccount of the test's namespace.
    ServiceAccount(&'a str),
}

/// The Role granting `scopes` (`resource:verb`), as README shows it.
pub fn scope_role(name: &str, scopes: &[&str]) -> Role {
    let rules: Vec<_> = scopes
        .iter()
        .map(|scope| {
            let (resource, verb) = scope.split_once(':').expect("resource:verb");
            json!({"apiGroups": ["scopes.keywarden.io"], "resources": [resource], "verbs": [verb]})
        })
        .collect();
    serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules})).expect("Role")
}

/// Grants `scopes` to `grantee` with a Role and a RoleBinding named `name`.
pub async fn grant(cluster: &TestCluster, name: &str, grantee: Grantee<'_>, scopes: &[&str]) {
    let roles = Api::<Role>::namespaced(cluster.client.clone(), &cluster.namespace);
    roles
        .create(&PostParams::default(), &scope_role(name, scopes))
        .await
        .expect("create scope Role");
    bind(cluster, name, name, grantee).await;
}

/// Binds the existing Role `role` to `grantee` with a RoleBinding named `name`.
pub async fn bind(cluster: &TestCluster, name: &str, role: &str, grantee: Grantee<'_>) {
    let subject = match grantee {
        Grantee::User(user) => {
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user})
        }
        Grantee::Group(group) => {
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group})
        }
        Grantee::ServiceAccount(sa) => {
            json!({"kind": "ServiceAccount", "name": sa, "namespace": cluster.namespace})
        }
    };
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [subject],
    }))
    .expect("RoleBinding");
    Api::<RoleBinding>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");
}

/// Removes the RoleBinding `name` (the grant it made).
pub async fn revoke(cluster: &TestCluster, name: &str) {
    Api::<RoleBinding>::namespaced(cluster.client.clone(), &cluster.namespace)
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete RoleBinding");
}
