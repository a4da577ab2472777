//! Clients acting as other users: the admin kubeconfig's credentials plus `Impersonate-User`
//! and `Impersonate-Group` headers, and builders of the RBAC objects tests grant with.

#![allow(dead_code)]

use devcluster::DevCluster;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::{Api, PostParams};
use kube::config::KubeConfigOptions;
use kube::core::{ObjectMeta, Status};

/// A client that the admin's credentials make act as `user` in `groups`.
pub async fn client_as(cluster: &DevCluster, user: &str, groups: &[&str]) -> kube::Client {
    let kubeconfig = cluster.kubeconfig().expect("kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("config from the admin kubeconfig");
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    kube::Client::try_from(config).expect("client")
}

/// The `Status` of a failed request.
pub fn api_error(err: kube::Error) -> Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Asserts a 403 Forbidden with exactly `message`.
pub fn assert_forbidden(err: kube::Error, message: &str) {
    let status = api_error(err);
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (403, "Forbidden", message)
    );
}

pub fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| Some(items.iter().map(|i| i.to_string()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

pub fn named_rule(
    groups: &[&str],
    resources: &[&str],
    names: &[&str],
    verbs: &[&str],
) -> PolicyRule {
    PolicyRule {
        resource_names: Some(names.iter().map(|n| n.to_string()).collect()),
        ..rule(groups, resources, verbs)
    }
}

pub fn user(name: &str) -> Subject {
    Subject {
        kind: "User".into(),
        name: name.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        ..Subject::default()
    }
}

pub fn group(name: &str) -> Subject {
    Subject {
        kind: "Group".into(),
        name: name.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        ..Subject::default()
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
    }
}

pub fn role(name: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        rules: Some(rules),
    }
}

pub fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

/// A RoleBinding of `role_kind` `role` (Role or ClusterRole) to `subjects`.
pub fn role_binding(
    name: &str,
    role_kind: &str,
    role: &str,
    subjects: Vec<Subject>,
) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        role_ref: role_ref(role_kind, role),
        subjects: Some(subjects),
    }
}

pub fn cluster_role_binding(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        role_ref: role_ref("ClusterRole", role),
        subjects: Some(subjects),
    }
}

/// Creates namespace `name` as the admin.
pub async fn create_namespace(admin: &kube::Client, name: &str) {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
}

/// Creates a Role and a RoleBinding of it in `namespace` as the admin.
pub async fn grant(
    admin: &kube::Client,
    namespace: &str,
    name: &str,
    rules: Vec<PolicyRule>,
    subjects: Vec<Subject>,
) {
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &role(name, rules))
        .await
        .expect("role created");
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(
            &PostParams::default(),
            &role_binding(name, "Role", name, subjects),
        )
        .await
        .expect("role binding created");
}

/// Binds ClusterRole `role` to `subjects` in `namespace` as the admin.
pub async fn bind_cluster_role(
    admin: &kube::Client,
    namespace: &str,
    role: &str,
    subjects: Vec<Subject>,
) {
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(
            &PostParams::default(),
            &role_binding(&format!("{role}-binding"), "ClusterRole", role, subjects),
        )
        .await
        .expect("role binding created");
}
