//! End to end: the built `kubectl-keywarden` binary, found by real `kubectl` plugin discovery on
//! PATH, against devcluster in-process (or a real cluster with `KEYWARDEN_TEST_KUBECONFIG`).
//! The controller does not run here: the test writes the AccessKey status and the Secret exactly
//! as the controller would, so only the plugin is under test.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::ByteString;
use keywarden::api::{
    AccessKey, AccessKeySpec, KeyOwner, OwnerKind, SecretTemplate, ACCESS_KEY_ID_ANNOTATION,
    ACCESS_KEY_LABEL, ISSUANCE_GENERATION_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use keywarden::keys::material::{AccessKeyId, SecretKey};
use keywarden::keys::token::encode_token;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// Where the test cluster runs; the devcluster stops when this is dropped.
struct Cluster {
    client: Client,
    kubeconfig: PathBuf,
    _devcluster: Option<devcluster::DevCluster>,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    if let Some(path) = std::env::var_os("KEYWARDEN_TEST_KUBECONFIG") {
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        return Cluster {
            client: Client::try_from(config).unwrap(),
            kubeconfig: PathBuf::from(path),
            _devcluster: None,
            _dir: dir,
        };
    }
    let devcluster = devcluster::DevCluster::start().await.unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    devcluster.write_kubeconfig(&kubeconfig).unwrap();
    Cluster {
        client: devcluster.client().unwrap(),
        kubeconfig,
        _devcluster: Some(devcluster),
        _dir: dir,
    }
}

/// A fresh namespace per test, so runs against a real cluster don't collide.
async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", &uuid_suffix());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    name
}

fn uuid_suffix() -> String {
    AccessKeyId::generate().as_str()[3..11].to_ascii_lowercase()
}

/// The credentials of one issuance, as the test wrote them.
struct Issued {
    id: AccessKeyId,
    secret: String,
}

/// Creates an AccessKey with an Active status and its Secret, shaped as the controller writes them.
async fn issued_key(client: &Client, namespace: &str, name: &str, owner: &str) -> Issued {
    let keys: Api<AccessKey> = Api::namespaced(client.clone(), namespace);
    let spec = AccessKeySpec {
        owner: KeyOwner {
            kind: OwnerKind::User,
            name: owner.to_owned(),
        },
        display_name: Some(format!("{name} key")),
        description: None,
        scopes: vec!["logs:view".to_owned()],
        owner_groups: Vec::new(),
        allowed_origins: vec![],
        active: true,
        rotate_generation: 0,
        reactivate_generation: 0,
        policy_name: None,
        rollout: None,
        secret: SecretTemplate::default(),
    };
    keys.create(&PostParams::default(), &AccessKey::new(name, spec))
        .await
        .unwrap();

    let id = AccessKeyId::generate();
    let secret = SecretKey::generate();
    let secret_name = format!("{name}-access-key");
    let status = serde_json::json!({"status": {
        "phase": "Active",
        "accessKeyId": id.as_str(),
        "secretName": secret_name,
        "issuedAt": "2026-11-23T10:00:00Z",
        "expiresAt": "2099-01-01T00:00:00Z",
    }});
    keys.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let data = BTreeMap::from([
        ("accessKeyId".to_owned(), bytes(id.as_str())),
        ("accessKey".to_owned(), bytes(secret.expose())),
        ("token".to_owned(), bytes(&encode_token(&id, &secret))),
    ]);
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
        (ACCESS_KEY_LABEL.to_owned(), name.to_owned()),
    ]);
    let annotations = BTreeMap::from([
        (ACCESS_KEY_ID_ANNOTATION.to_owned(), id.as_str().to_owned()),
        (ISSUANCE_GENERATION_ANNOTATION.to_owned(), "0".to_owned()),
    ]);
    let mut secret_object = Secret {
        data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    };
    secret_object.metadata.name = Some(secret_name);
    secret_object.metadata.labels = Some(labels);
    secret_object.metadata.annotations = Some(annotations);
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret_object)
        .await
        .unwrap();
    Issued {
        id,
        secret: secret.expose().to_owned(),
    }
}

fn bytes(s: &str) -> ByteString {
    ByteString(s.as_bytes().to_vec())
}

/// kubectl: `KEYWARDEN_TEST_KUBECTL`, else `.cache/tools/bin/kubectl`, else the one on PATH.
fn kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("KEYWARDEN_TEST_KUBECTL") {
        return PathBuf::from(path);
    }
    let cached = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/tools/bin/kubectl");
    if cached.exists() {
        return cached;
    }
    PathBuf::from("kubectl")
}

/// Runs `kubectl keywarden <args>` with only the plugin's directory added in front of PATH.
async fn kubectl_keywarden(cluster: &Cluster, args: &[&str]) -> Output {
    kubectl_keywarden_with_kubeconfig_env(&cluster.kubeconfig, args).await
}

async fn kubectl_keywarden_with_kubeconfig_env(kubeconfig: &Path, args: &[&str]) -> Output {
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-keywarden"))
        .parent()
        .unwrap()
        .to_owned();
    let mut path = OsString::from(plugin_dir.as_os_str());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let output = tokio::process::Command::new(kubectl())
        .arg("keywarden")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("running kubectl ({e}); install it with scripts/ensure-kube-tools.sh or set KEYWARDEN_TEST_KUBECTL")
        });
    output
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kubectl keywarden failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_printed_in_every_format_through_kubectl() {
    let cluster = cluster().await;
    keywarden::cli::manifests::install_crds(&cluster.client)
        .await
        .unwrap();
    let ns = namespace(&cluster.client, "plugin-creds").await;
    let issued = issued_key(&cluster.client, &ns, "ci-deployer", "alice").await;
    let (id, secret) = (issued.id.as_str(), issued.secret.as_str());

    let csv = stdout(
        &kubectl_keywarden(
            &cluster,
            &["credentials", "ci-deployer", "-n", &ns, "--format", "csv"],
        )
        .await,
    );
    assert_eq!(
        csv,
        format!("Access key ID,Secret access key\n{id},{secret}\n")
    );

    let env =
        stdout(&kubectl_keywarden(&cluster, &["credentials", "ci-deployer", "-n", &ns]).await);
    assert!(
        env.contains(&format!("KEYWARDEN_ACCESS_KEY_ID={id}\n")),
        "{env}"
    );
    assert!(
        env.contains(&format!("KEYWARDEN_SECRET_ACCESS_KEY={secret}\n")),
        "{env}"
    );

    let json = stdout(
        &kubectl_keywarden(
            &cluster,
            &["credentials", "ci-deployer", "-n", &ns, "--format", "json"],
        )
        .await,
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["accessKeyId"], id);
    assert_eq!(json["secretAccessKey"], secret);
    let (token_id, token_secret) =
        keywarden::keys::token::parse_token(json["token"].as_str().unwrap()).unwrap();
    assert_eq!((token_id.as_str(), token_secret.expose()), (id, secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_activate_deactivate_and_reactivate_patch_the_spec() {
    let cluster = cluster().await;
    keywarden::cli::manifests::install_crds(&cluster.client)
        .await
        .unwrap();
    let ns = namespace(&cluster.client, "plugin-actions").await;
    issued_key(&cluster.client, &ns, "ci", "bob").await;
    let keys: Api<AccessKey> = Api::namespaced(cluster.client.clone(), &ns);

    let out = stdout(&kubectl_keywarden(&cluster, &["rotate", "ci", "-n", &ns]).await);
    assert!(
        out.contains("accesskey.keywarden.io/ci rotation requested"),
        "{out}"
    );
    stdout(&kubectl_keywarden(&cluster, &["rotate", "ci", "-n", &ns]).await);
    assert_eq!(keys.get("ci").await.unwrap().spec.rotate_generation, 2);

    stdout(&kubectl_keywarden(&cluster, &["deactivate", "ci", "-n", &ns]).await);
    assert!(!keys.get("ci").await.unwrap().spec.active);
    stdout(&kubectl_keywarden(&cluster, &["activate", "ci", "-n", &ns]).await);
    assert!(keys.get("ci").await.unwrap().spec.active);

    stdout(&kubectl_keywarden(&cluster, &["reactivate", "ci", "-n", &ns]).await);
    let key = keys.get("ci").await.unwrap();
    assert_eq!(key.spec.reactivate_generation, 1);
    assert_eq!(key.spec.rotate_generation, 2, "reactivate must not rotate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_keys_and_owner_limit_usage() {
    let cluster = cluster().await;
    keywarden::cli::manifests::install_crds(&cluster.client)
        .await
        .unwrap();
    let ns = namespace(&cluster.client, "plugin-status").await;
    let first = issued_key(&cluster.client, &ns, "one", "carol").await;
    issued_key(&cluster.client, &ns, "two", "carol").await;

    let all = stdout(&kubectl_keywarden(&cluster, &["status", "-n", &ns]).await);
    let lines: Vec<&str> = all.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("ACCESS ID"),
        "{all}"
    );
    let one = lines.iter().find(|l| l.starts_with("one ")).unwrap();
    assert!(
        one.contains("User/carol") && one.contains(first.id.as_str()),
        "{one}"
    );
    assert!(one.contains("Active") && one.contains("never"), "{one}");
    assert!(all.contains("User/carol   2/5"), "{all}");

    let single = stdout(&kubectl_keywarden(&cluster, &["status", "two", "-n", &ns]).await);
    assert!(!single.lines().any(|l| l.starts_with("one ")), "{single}");
    assert!(single.lines().any(|l| l.starts_with("two ")), "{single}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_and_missing_secret_are_clear_errors() {
    let cluster = cluster().await;
    keywarden::cli::manifests::install_crds(&cluster.client)
        .await
        .unwrap();
    let ns = namespace(&cluster.client, "plugin-errors").await;

    let missing = kubectl_keywarden(&cluster, &["rotate", "nope", "-n", &ns]).await;
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains(&format!(
            "accesskey \"nope\" not found in namespace \"{ns}\""
        )),
        "{stderr}"
    );

    issued_key(&cluster.client, &ns, "lost", "dave").await;
    Api::<Secret>::namespaced(cluster.client.clone(), &ns)
        .delete("lost-access-key", &DeleteParams::default())
        .await
        .unwrap();
    let lost = kubectl_keywarden(&cluster, &["credentials", "lost", "-n", &ns]).await;
    assert!(!lost.status.success());
    let stderr = String::from_utf8_lossy(&lost.stderr);
    assert!(
        stderr.contains("secret \"lost-access-key\" of accesskey \"lost\" not found"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_flag_wins_over_the_environment() {
    let cluster = cluster().await;
    keywarden::cli::manifests::install_crds(&cluster.client)
        .await
        .unwrap();
    let ns = namespace(&cluster.client, "plugin-flags").await;
    let issued = issued_key(&cluster.client, &ns, "flagged", "erin").await;
    let kubeconfig = cluster.kubeconfig.to_str().unwrap();
    let nowhere = Path::new("/nonexistent/kubeconfig");

    let without_flag = kubectl_keywarden_with_kubeconfig_env(nowhere, &["status", "-n", &ns]).await;
    assert!(!without_flag.status.success());

    let args = ["status", "flagged", "-n", &ns, "--kubeconfig", kubeconfig];
    let out = stdout(&kubectl_keywarden_with_kubeconfig_env(nowhere, &args).await);
    assert!(out.contains(issued.id.as_str()), "{out}");
}
