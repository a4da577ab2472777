//! The real kubectl as several identities (`--as`, `--as-group`): kube-apiserver's denial texts
//! as kubectl prints them, and `kubectl auth can-i`.
//!
//! Needs kubectl from `KEYWARDEN_KUBECTL`, `PATH` or `scripts/ensure-kube-tools.sh`.

#[path = "support/kube_tools.rs"]
mod kube_tools;

use kube_tools::Kube;

const TEAM_A_SETUP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: bob-admin
  namespace: team-a
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: bob }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: readers-view
  namespace: team-a
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: Group, name: readers }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: key-admin
  namespace: team-a
rules:
- { apiGroups: [keywarden.io], resources: [accesskeys], verbs: [manage] }
- { apiGroups: [""], resources: [configmaps], resourceNames: [settings], verbs: [get] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: carol-keys
  namespace: team-a
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: key-admin }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: carol }]
"#;

async fn team_a() -> Kube {
    let kube = Kube::start().await;
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], TEAM_A_SETUP)
        .await;
    kube
}

#[tokio::test]
async fn kubectl_as_another_user_prints_kube_apiservers_denial() {
    let kube = team_a().await;

    let denied = kube
        .kubectl(&["get", "configmaps", "-n", "team-a", "--as", "alice"])
        .await;
    assert!(!denied.status.success());
    assert_eq!(
        denied.stderr.trim(),
        "Error from server (Forbidden): configmaps is forbidden: User \"alice\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team-a\""
    );
    kube.kubectl_ok(&[
        "get",
        "configmaps",
        "-n",
        "team-a",
        "--as",
        "alice",
        "--as-group",
        "readers",
    ])
    .await;
    let create = kube
        .kubectl(&[
            "create",
            "configmap",
            "x",
            "-n",
            "team-a",
            "--as",
            "alice",
            "--as-group",
            "readers",
        ])
        .await;
    assert!(create.stderr.contains(
        "configmaps is forbidden: User \"alice\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"team-a\""
    ), "{}", create.stderr);
}

#[tokio::test]
async fn kubectl_apply_of_a_role_beyond_the_users_permissions_is_refused() {
    let kube = team_a().await;
    let role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: key-admin-copy\n  namespace: team-a\nrules:\n- { apiGroups: [keywarden.io], resources: [accesskeys], verbs: [manage] }\n";

    let refused = kube
        .kubectl_stdin(&["apply", "-f", "-", "--as", "bob"], role)
        .await;
    assert!(!refused.status.success());
    assert_eq!(
        refused.stderr.trim(),
        "Error from server (Forbidden): error when creating \"STDIN\": roles.rbac.authorization.k8s.io \"key-admin-copy\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"keywarden.io\"], Resources:[\"accesskeys\"], Verbs:[\"manage\"]}"
    );
    kube.kubectl_stdin_ok(
        &[
            "apply",
            "-f",
            "-",
            "--as",
            "carol",
            "--as-group",
            "system:masters",
        ],
        role,
    )
    .await;
}

/// A served `accesskeys.keywarden.io`: kubectl resolves a resource through discovery before it
/// asks, and asks for an unknown one without its group.
const ACCESS_KEY_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: accesskeys.keywarden.io }
spec:
  group: keywarden.io
  scope: Namespaced
  names: { plural: accesskeys, singular: accesskey, kind: AccessKey }
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } }
"#;

#[tokio::test]
async fn kubectl_auth_can_i_answers_from_rbac() {
    let kube = team_a().await;
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], ACCESS_KEY_CRD)
        .await;
    let can_i = |args: &'static [&'static str]| {
        let kube = &kube;
        async move {
            let mut full = vec!["auth", "can-i"];
            full.extend_from_slice(args);
            kube.kubectl(&full).await.stdout.trim().to_string()
        }
    };
    assert_eq!(
        can_i(&[
            "manage",
            "accesskeys.keywarden.io",
            "-n",
            "team-a",
            "--as",
            "carol"
        ])
        .await,
        "yes"
    );
    assert_eq!(
        can_i(&[
            "get",
            "accesskeys.keywarden.io",
            "-n",
            "team-a",
            "--as",
            "carol"
        ])
        .await,
        "no"
    );
    assert_eq!(
        can_i(&[
            "get",
            "configmaps/settings",
            "-n",
            "team-a",
            "--as",
            "carol"
        ])
        .await,
        "yes"
    );
    assert_eq!(
        can_i(&["get", "configmaps/other", "-n", "team-a", "--as", "carol"]).await,
        "no"
    );
    assert_eq!(
        can_i(&["create", "rolebindings", "-n", "team-a", "--as", "bob"]).await,
        "yes"
    );
    assert_eq!(
        can_i(&[
            "list",
            "secrets",
            "-n",
            "team-a",
            "--as",
            "alice",
            "--as-group",
            "readers"
        ])
        .await,
        "no"
    );
    assert_eq!(
        can_i(&[
            "list",
            "configmaps",
            "-n",
            "team-a",
            "--as",
            "alice",
            "--as-group",
            "readers"
        ])
        .await,
        "yes"
    );
    let list = kube
        .kubectl_ok(&["auth", "can-i", "--list", "-n", "team-a", "--as", "carol"])
        .await;
    assert!(
        list.lines()
            .any(|line| line.starts_with("accesskeys.keywarden.io") && line.contains("[manage]")),
        "{list}"
    );
}
