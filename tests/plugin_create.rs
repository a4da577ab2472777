//! `kubectl keywarden create` end to end: real kubectl plugin discovery, the in-process
//! controller issuing the key, credentials printed once; devcluster or
//! `KEYWARDEN_TEST_KUBECONFIG`.

mod support;
mod tools;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

use keywarden::api::OwnerKind;
use support::scopes::{self, Grantee};
use support::{condition, random_suffix, wait_for, PolicyBuilder, TestCluster};

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

/// The test's own username and groups, as the API server tells them.
async fn whoami(cluster: &TestCluster) -> (String, Vec<String>) {
    let user = Api::<SelfSubjectReview>::all(cluster.client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview")
        .status
        .and_then(|s| s.user_info)
        .expect("user info");
    (
        user.username.expect("a username"),
        user.groups.unwrap_or_default(),
    )
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
    let (username, groups) = whoami(&cluster).await;
    assert_eq!(key.spec.owner.name, username);
    assert_eq!(
        key.spec.owner_groups, groups,
        "the owner's groups are recorded for the controller's scope check"
    );
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

/// `kubeconfig` acting as `user` in `groups` (impersonated by its identity, as `kubectl --as`).
fn kubeconfig_as(kubeconfig: &Path, user: &str, groups: &[&str], dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig).expect("read kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    for entry in config["users"].as_sequence_mut().expect("users") {
        let identity = entry["user"].as_mapping_mut().expect("user");
        identity.insert("as".into(), user.into());
        identity.insert(
            "as-groups".into(),
            groups.iter().map(|g| serde_yaml::Value::from(*g)).collect(),
        );
    }
    let path = dir.join(format!("as-{user}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).expect("write kubeconfig");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_records_the_callers_groups_so_scopes_granted_to_a_group_are_held() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let dir = tempfile::tempdir().unwrap();
    let user = format!("hana-{}", random_suffix());
    let groups = ["system:authenticated", "team-logs"];
    let kubeconfig = kubeconfig_as(
        &kubeconfig(&cluster, dir.path()),
        &user,
        &groups,
        dir.path(),
    );
    let self_service: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "self-service"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "keywarden-edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &self_service)
        .await
        .expect("bind keywarden-edit");
    scopes::grant(
        &cluster,
        "team-logs",
        Grantee::Group("team-logs"),
        &["logs:view"],
    )
    .await;

    let output = kubectl_keywarden(
        &cluster,
        &kubeconfig,
        &[
            "create",
            "laptop",
            "--scope",
            "logs:view",
            "--format",
            "env",
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let key = cluster.keys().get("laptop").await.unwrap();
    assert_eq!(key.spec.owner.name, user);
    assert_eq!(key.spec.owner_groups, groups);
    let key = wait_for(&cluster.keys(), "laptop", "ScopesHeld", |key| {
        condition(key, "ScopesHeld").is_some()
    })
    .await;
    assert_eq!(
        condition(&key, "ScopesHeld").map(|(status, _)| status),
        Some("True".to_owned()),
        "the scope her group holds is held: {:?}",
        key.status
    );
    assert_eq!(
        key.status.and_then(|s| s.granted_scopes),
        Some(vec!["logs:view".to_owned()])
    );
}
