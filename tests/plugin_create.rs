//! `kubectl keywarden create` end to end: real kubectl plugin discovery, the in-process
//! controller issuing the key, credentials printed once; devcluster or
//! `KEYWARDEN_TEST_KUBECONFIG`.

mod support;
mod tools;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::PostParams;
use kube::Api;

use keywarden::api::OwnerKind;
use support::{random_suffix, PolicyBuilder, TestCluster};

/// The kubeconfig child processes use: devcluster's, or the real cluster's.
fn kubeconfig(cluster: &TestCluster, dir: &Path) -> PathBuf {
    cluster
        .write_kubeconfig(dir)
        .or_else(|| std::env::var_os("KEYWARDEN_TEST_KUBECONFIG").map(PathBuf::from))
        .expect("a kubeconfig")
}

/// Runs `kubectl keywarden <args>` in the cluster's namespace, with the plugin found on PATH.
async fn kubectl_keywarden(cluster: &TestCluster, kubeconfig: &Path, args: &[&str]) -> Output {
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-keywarden"))
        .parent()
        .unwrap()
        .to_owned();
    let mut path = OsString::from(plugin_dir.as_os_str());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    tokio::process::Command::new(
        tools::kubectl_binary().expect("kubectl: install it with scripts/ensure-kube-tools.sh"),
    )
    .arg("keywarden")
    .args(args)
    .args(["-n", &cluster.namespace])
    .env("PATH", path)
    .env("KUBECONFIG", kubeconfig)
    .output()
    .await
    .expect("running kubectl")
}

async fn whoami(cluster: &TestCluster) -> String {
    Api::<SelfSubjectReview>::all(cluster.client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview")
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .expect("a username")
}

fn env_value<'a>(printed: &'a str, name: &str) -> &'a str {
    printed
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} in {printed}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_issues_a_key_owned_by_the_caller_and_prints_its_credentials_once() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(&cluster, dir.path());
    let policy = format!("plugin-create-{}", random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).max_keys(5).build())
        .await;

    let output = kubectl_keywarden(
        &cluster,
        &kubeconfig,
        &[
            "create",
            "laptop",
            "--display-name",
            "My laptop",
            "--scope",
            "logs:view",
            "--origin",
            "https://app.example.com",
            "--policy",
            &policy,
            "--format",
            "env",
        ],
    )
    .await;
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let key = cluster.keys().get("laptop").await.unwrap();
    let status = key.status.clone().expect("status");
    assert_eq!(
        env_value(&printed, "KEYWARDEN_ACCESS_KEY_ID"),
        status.access_key_id.as_deref().unwrap()
    );
    assert_eq!(key.spec.owner.kind, OwnerKind::User);
    assert_eq!(key.spec.owner.name, whoami(&cluster).await);
    assert_eq!(key.spec.display_name.as_deref(), Some("My laptop"));
    assert_eq!(key.spec.scopes, ["logs:view"]);
    assert_eq!(key.spec.allowed_origins, ["https://app.example.com"]);
    let secret_in_status = serde_json::to_string(&key.status).unwrap();
    assert!(!secret_in_status.contains(env_value(&printed, "KEYWARDEN_SECRET_ACCESS_KEY")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_over_the_owners_limit_fails_with_the_controllers_reason() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(&cluster, dir.path());
    let policy = format!("plugin-limit-{}", random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).max_keys(1).build())
        .await;
    let sa = "ci";
    let first = kubectl_keywarden(
        &cluster,
        &kubeconfig,
        &[
            "create",
            "first",
            "--service-account",
            sa,
            "--policy",
            &policy,
        ],
    )
    .await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    let second = kubectl_keywarden(
        &cluster,
        &kubeconfig,
        &[
            "create",
            "second",
            "--service-account",
            sa,
            "--policy",
            &policy,
            "--timeout",
            "60s",
        ],
    )
    .await;
    assert!(!second.status.success());
    assert!(second.stdout.is_empty(), "no credentials printed");
    let error = String::from_utf8_lossy(&second.stderr);
    assert!(
        error.contains("accesskey \"second\" was not issued: LimitExceeded"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_dry_run_prints_the_manifest_for_gitops_and_creates_nothing() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(&cluster, dir.path());
    let output = kubectl_keywarden(
        &cluster,
        &kubeconfig,
        &[
            "create",
            "ci-key",
            "--service-account",
            "ci",
            "--secret-type",
            "basic-auth",
            "--dry-run",
            "-o",
            "yaml",
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest: serde_json::Value = serde_yaml::from_slice(&output.stdout).unwrap();
    assert_eq!(manifest["kind"], "AccessKey");
    assert_eq!(manifest["metadata"]["name"], "ci-key");
    assert_eq!(
        manifest["metadata"]["namespace"],
        cluster.namespace.as_str()
    );
    assert_eq!(manifest["spec"]["owner"]["kind"], "ServiceAccount");
    assert_eq!(manifest["spec"]["owner"]["name"], "ci");
    assert_eq!(
        manifest["spec"]["secret"]["type"],
        "kubernetes.io/basic-auth"
    );
    assert!(manifest.get("status").is_none());
    assert!(cluster.keys().get_opt("ci-key").await.unwrap().is_none());
}
