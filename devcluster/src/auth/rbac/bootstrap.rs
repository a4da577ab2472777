//! The bootstrap policy every cluster starts with (kube-apiserver's
//! `plugin/pkg/auth/authorizer/rbac/bootstrappolicy`), trimmed to the kinds devcluster serves.

use serde_json::{json, Value};

use super::index::{CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS};
use super::rule::PolicyRule;
use crate::auth::{AUTHENTICATED_GROUP, MASTERS_GROUP, UNAUTHENTICATED_GROUP};
use crate::builtin::builtin_types;
use crate::store::{State, StorageKey, WriteContext};

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

fn metadata(name: &str, extra_labels: &[&str]) -> Value {
    let mut labels = json!({ "kubernetes.io/bootstrapping": "rbac-defaults" });
    for label in extra_labels {
        labels[*label] = json!("true");
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": { "rbac.authorization.kubernetes.io/autoupdate": "true" },
    })
}

fn cluster_role(name: &str, labels: &[&str], rules: &[PolicyRule]) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata(name, labels),
        "rules": rules,
    })
}

/// A ClusterRole whose rules the aggregation controller gathers from roles labelled `selects`.
fn aggregated_role(name: &str, labels: &[&str], selects: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata(name, labels),
        "aggregationRule": { "clusterRoleSelectors": [{ "matchLabels": { selects: "true" } }] },
        "rules": null,
    })
}

fn cluster_role_binding(name: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|group| json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group }))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": metadata(name, &[]),
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
        "subjects": subjects,
    })
}

/// The bootstrap ClusterRoles, aggregated roles last so they gather from the others at once.
pub fn cluster_roles() -> Vec<Value> {
    let rule = PolicyRule::resource;
    vec![
        cluster_role(
            "cluster-admin",
            &[],
            &[
                rule(&["*"], &["*"], &["*"]),
                PolicyRule::urls(&["*"], &["*"]),
            ],
        ),
        cluster_role(
            "system:discovery",
            &[],
            &[PolicyRule::urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            &[PolicyRule::urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            &[
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:aggregate-to-admin",
            &[AGGREGATE_TO_ADMIN],
            &[
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                ),
                rule(
                    READ_WRITE,
                    &["rbac.authorization.k8s.io"],
                    &["rolebindings", "roles"],
                ),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[AGGREGATE_TO_EDIT],
            &[
                rule(
                    READ,
                    &[""],
                    &[
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                        "secrets",
                        "services/proxy",
                    ],
                ),
                rule(&["impersonate"], &[""], &["serviceaccounts"]),
                rule(
                    WRITE,
                    &[""],
                    &[
                        "pods",
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                    ],
                ),
                rule(&["create"], &[""], &["pods/eviction"]),
                rule(
                    WRITE,
                    &[""],
                    &[
                        "configmaps",
                        "events",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                ),
                rule(&["create"], &[""], &["serviceaccounts/token"]),
                rule(
                    WRITE,
                    &["apps"],
                    &["deployments", "deployments/rollback", "deployments/scale"],
                ),
                rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
                rule(READ_WRITE, &["coordination.k8s.io"], &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[AGGREGATE_TO_VIEW],
            &[
                rule(
                    READ,
                    &[""],
                    &[
                        "configmaps",
                        "pods",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                ),
                rule(
                    READ,
                    &[""],
                    &["events", "namespaces/status", "pods/log", "pods/status"],
                ),
                rule(READ, &[""], &["namespaces"]),
                rule(
                    READ,
                    &["apps"],
                    &["deployments", "deployments/scale", "deployments/status"],
                ),
                rule(
                    READ,
                    &["policy"],
                    &["poddisruptionbudgets", "poddisruptionbudgets/status"],
                ),
            ],
        ),
        aggregated_role("admin", &[], AGGREGATE_TO_ADMIN),
        aggregated_role("edit", &[AGGREGATE_TO_ADMIN], AGGREGATE_TO_EDIT),
        aggregated_role("view", &[AGGREGATE_TO_EDIT], AGGREGATE_TO_VIEW),
    ]
}

/// The bootstrap ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        cluster_role_binding("cluster-admin", &[MASTERS_GROUP]),
        cluster_role_binding("system:basic-user", &[AUTHENTICATED_GROUP]),
        cluster_role_binding("system:discovery", &[AUTHENTICATED_GROUP]),
        cluster_role_binding(
            "system:public-info-viewer",
            &[AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP],
        ),
    ]
}

/// Creates the bootstrap policy in a new store.
pub fn write(state: &mut State) {
    let ctx = WriteContext {
        manager: "devcluster".into(),
        now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        managed_fields_done: true,
        ..WriteContext::default()
    };
    let types = builtin_types();
    for (key, objects) in [
        (CLUSTER_ROLES, cluster_roles()),
        (CLUSTER_ROLE_BINDINGS, cluster_role_bindings()),
    ] {
        let Some(rt) = types
            .iter()
            .find(|rt| format!("{}.{}", rt.plural, rt.group) == key)
        else {
            tracing::warn!(key, "bootstrap policy: kind not served");
            continue;
        };
        let key = StorageKey::from(key);
        for object in objects {
            if let Err(err) = state.create(rt, &key, "", object, &ctx) {
                tracing::warn!(%err, "creating the bootstrap policy");
            }
        }
    }
}
