//! `kubectl apply -f examples/` works on a cluster that has only keywarden's CRDs (from `crds/`),
//! creates every object the examples declare, and is idempotent, as GitOps tools need.
//!
//! kubectl comes from `scripts/ensure-kube-tools.sh` (or `.cache/tools/bin`, or PATH); when it
//! is missing the test is skipped loudly, or fails when `KEYWARDEN_REQUIRE_TOOLS` is set.

mod tools;

use std::path::Path;

use devcluster::DevCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use keywarden::api::{AccessKey, AccessKeyPolicy, OwnerKind, SecretType};
use kube::Api;
use tokio::process::Command;
use tools::{kubectl_binary, missing_tool, repo_root};

/// Runs kubectl against `kubeconfig` and asserts it succeeds; returns its standard output.
async fn kubectl(binary: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let output = Command::new(binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("KUBECACHEDIR", kubeconfig.with_file_name("kube-cache"))
        .output()
        .await
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kubectl {args:?} failed with {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_apply_cleanly_and_idempotently_to_devcluster() {
    let Some(binary) = kubectl_binary() else {
        missing_tool("kubectl", "run scripts/ensure-kube-tools.sh");
        return;
    };
    let cluster = DevCluster::start().await.expect("devcluster starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig)
        .expect("write kubeconfig");
    let crds = repo_root().join("crds");
    let examples = repo_root().join("examples");
    let (crds, examples) = (
        crds.to_str().expect("UTF-8 path"),
        examples.to_str().expect("UTF-8 path"),
    );

    kubectl(&binary, &kubeconfig, &["apply", "-f", crds]).await;
    kubectl(
        &binary,
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=10s",
            "crd/accesskeys.keywarden.io",
            "crd/accesskeypolicies.keywarden.io",
        ],
    )
    .await;

    let created = kubectl(&binary, &kubeconfig, &["apply", "-f", examples]).await;
    for object in [
        "accesskeypolicy.keywarden.io/default created",
        "accesskey.keywarden.io/alice-laptop created",
        "accesskey.keywarden.io/report-exporter created",
        "serviceaccount/report-exporter created",
        "deployment.apps/report-exporter created",
    ] {
        assert!(
            created.contains(object),
            "missing `{object}` in:\n{created}"
        );
    }
    let reapplied = kubectl(&binary, &kubeconfig, &["apply", "-f", examples]).await;
    let changed: Vec<_> = reapplied
        .lines()
        .filter(|line| !line.ends_with(" unchanged"))
        .collect();
    assert!(changed.is_empty(), "a second apply changed {changed:?}");

    let client = cluster.client().expect("kube client");
    let keys: Api<AccessKey> = Api::namespaced(client.clone(), "default");
    let exporter = keys
        .get("report-exporter")
        .await
        .expect("report-exporter key");
    assert_eq!(exporter.spec.owner.kind, OwnerKind::ServiceAccount);
    assert_eq!(exporter.spec.secret.type_, SecretType::BasicAuth);
    assert_eq!(
        exporter.spec.allowed_origins,
        ["https://app.example.com", "https://ops.example.com:8443"]
    );
    let personal = keys.get("alice-laptop").await.expect("alice-laptop key");
    assert_eq!(personal.spec.owner.kind, OwnerKind::User);
    assert!(personal.spec.active, "active defaults to true");
    let policies: Api<AccessKeyPolicy> = Api::all(client.clone());
    assert_eq!(
        policies
            .get("default")
            .await
            .expect("default policy")
            .spec
            .max_keys_per_owner,
        5
    );
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    accounts
        .get("report-exporter")
        .await
        .expect("ServiceAccount");
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    deployments
        .get("report-exporter")
        .await
        .expect("workload Deployment");
}
