//! helm installing a chart of namespaced objects as a namespace admin (allowed) and as a
//! view-only user (refused with helm's own error), through `--kube-as-user`.
//!
//! Needs helm (helm 4 from `scripts/ensure-kube-tools.sh`) and kubectl, as `tests/helm.rs`.

#[path = "support/kube_tools.rs"]
mod kube_tools;

use kube_tools::Kube;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/team-app-chart");

const TEAM_A: &str = r#"
apiVersion: v1
kind: Namespace
metadata: { name: team-a }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: bob-admin, namespace: team-a }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: bob }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: carol-view, namespace: team-a }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: carol }]
"#;

#[tokio::test]
async fn a_namespace_admin_installs_a_chart_and_a_viewer_is_refused() {
    let kube = Kube::start().await;
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], TEAM_A).await;

    let installed = kube
        .helm_ok(&[
            "install",
            "app",
            CHART,
            "-n",
            "team-a",
            "--kube-as-user",
            "bob",
        ])
        .await;
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    kube.kubectl_ok(&[
        "get",
        "-n",
        "team-a",
        "configmap/app-settings",
        "role.rbac.authorization.k8s.io/app",
    ])
    .await;

    let refused = kube
        .helm(&[
            "install",
            "other",
            CHART,
            "-n",
            "team-a",
            "--kube-as-user",
            "carol",
        ])
        .await;
    assert!(!refused.status.success());
    assert_eq!(
        refused.stderr.lines().last().unwrap_or_default(),
        "Error: INSTALLATION FAILED: unable to continue with install: could not get information about the resource Role \"other\" in namespace \"team-a\": roles.rbac.authorization.k8s.io \"other\" is forbidden: User \"carol\" cannot get resource \"roles\" in API group \"rbac.authorization.k8s.io\" in the namespace \"team-a\""
    );
    let listed = kube
        .helm(&["list", "-n", "team-a", "--kube-as-user", "carol"])
        .await;
    assert_eq!(
        listed.stderr.trim(),
        "Error: list: failed to list: secrets is forbidden: User \"carol\" cannot list resource \"secrets\" in API group \"\" in the namespace \"team-a\"",
        "view does not read helm's release Secrets"
    );
    kube.helm_ok(&["list", "-n", "team-a", "--kube-as-user", "bob"])
        .await;
}
