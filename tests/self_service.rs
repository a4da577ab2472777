//! What a new user meets with kubectl (issue 14 §2-6): who created and changed a key
//! (`keywarden.io/requested-by`, `status.createdBy`), `-o wide`, field selectors on the owner,
//! status times at second precision, and schema errors that say what is expected. Runs the real
//! kubectl and plugin against devcluster or `KEYWARDEN_TEST_KUBECONFIG`.

mod support;
mod tools;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::Api;
use tokio::io::AsyncWriteExt as _;

use keywarden::api::{REQUESTED_BY_ANNOTATION, REQUESTED_GENERATION_ANNOTATION};
use support::{eventually, random_suffix, KeyBuilder, PolicyBuilder, TestCluster};

/// The kubeconfig child processes use: devcluster's, or the real cluster's.
fn kubeconfig(cluster: &TestCluster, dir: &Path) -> PathBuf {
    cluster
        .write_kubeconfig(dir)
        .or_else(|| std::env::var_os("KEYWARDEN_TEST_KUBECONFIG").map(PathBuf::from))
        .expect("a kubeconfig")
}

/// Runs `kubectl <args>` in the cluster's namespace with the plugin on PATH, feeding `stdin`.
async fn kubectl(cluster: &TestCluster, kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-keywarden"))
        .parent()
        .unwrap()
        .to_owned();
    let mut path = OsString::from(plugin_dir.as_os_str());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let mut child = tokio::process::Command::new(
        tools::kubectl_binary().expect("kubectl: install it with scripts/ensure-kube-tools.sh"),
    )
    .args(args)
    .args(["-n", &cluster.namespace])
    .env("PATH", path)
    .env("KUBECONFIG", kubeconfig)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("running kubectl");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.expect("kubectl output")
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn refused(output: &Output) -> String {
    assert!(!output.status.success(), "kubectl should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
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

/// Binds `user` to Kubernetes' `cluster_role` in the test namespace (`edit` aggregates
/// keywarden's self-service, `admin` its `manage` verb), for `kubectl --as user`.
async fn bind(cluster: &TestCluster, cluster_role: &str, user: &str) {
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("{cluster_role}-{user}")),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: cluster_role.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: user.into(),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &binding)
        .await
        .expect("RoleBinding");
}

/// The notes of the Events about key `name`.
async fn event_notes(cluster: &TestCluster, name: &str) -> Vec<String> {
    Api::<Event>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| e.message)
        .collect()
}

fn is_whole_second_rfc3339(text: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(text).is_ok()
        && text.len() == "2027-06-01T07:52:22Z".len()
        && text.ends_with('Z')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_and_changed_through_the_plugin_names_who_asked() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(&cluster, dir.path());
    let me = whoami(&cluster).await;
    let policy = format!("self-service-{}", random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).max_keys(5).build())
        .await;

    let create = [
        "keywarden",
        "create",
        "laptop",
        "--display-name",
        "My laptop",
        "--scope",
        "logs:view",
        "--policy",
        &policy,
    ];
    succeeded(&kubectl(&cluster, &kubeconfig, &create, "").await);
    let key = cluster.keys().get("laptop").await.unwrap();
    assert_eq!(
        key.metadata.annotations.unwrap_or_default()[REQUESTED_BY_ANNOTATION],
        me
    );
    let status = key.status.expect("status");
    assert_eq!(status.created_by.as_deref(), Some(me.as_str()));

    let wide = succeeded(
        &kubectl(
            &cluster,
            &kubeconfig,
            &["get", "ak", "laptop", "-o", "wide"],
            "",
        )
        .await,
    );
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "OWNER",
            "ACCESS ID",
            "PHASE",
            "LAST USED",
            "EXPIRES",
            "AGE",
            "DISPLAY NAME",
            "SCOPES",
            "POLICY",
            "ROTATED",
            "CREATED BY"
        ]
    );
    let row = wide.lines().nth(1).unwrap();
    for shown in ["My laptop", "logs:view", policy.as_str(), me.as_str()] {
        assert!(row.contains(shown), "{shown} in {row}");
    }
    let narrow = succeeded(&kubectl(&cluster, &kubeconfig, &["get", "ak", "laptop"], "").await);
    assert!(!narrow.contains("CREATED BY"), "{narrow}");

    succeeded(
        &kubectl(
            &cluster,
            &kubeconfig,
            &["keywarden", "deactivate", "laptop"],
            "",
        )
        .await,
    );
    let notes = eventually("a Deactivated event naming the requester", || async {
        let notes = event_notes(&cluster, "laptop").await;
        notes
            .iter()
            .any(|n| n.starts_with("key deactivated"))
            .then_some(notes)
    })
    .await;
    let requested = format!("(requested by {me})");
    for prefix in ["issued access ID", "key deactivated"] {
        let note = notes.iter().find(|n| n.starts_with(prefix)).unwrap();
        assert!(note.ends_with(&requested), "{note}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_times_are_rfc3339_at_second_precision() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let policy = format!("seconds-{}", random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).expire_after("1d").build())
        .await;
    cluster
        .create_key(&KeyBuilder::new("timed", "alice").policy(&policy).build())
        .await;
    cluster
        .wait_phase("timed", keywarden::api::Phase::Active)
        .await;
    let key = serde_json::to_value(cluster.keys().get("timed").await.unwrap()).unwrap();
    let status = &key["status"];
    let mut times = vec![&status["issuedAt"], &status["expiresAt"]];
    let conditions = status["conditions"].as_array().unwrap();
    times.extend(conditions.iter().map(|c| &c["lastTransitionTime"]));
    for time in times {
        let text = time.as_str().expect("a time");
        assert!(is_whole_second_rfc3339(text), "{text} in {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_listed_by_owner_with_a_field_selector() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(&cluster, dir.path());
    for (name, owner) in [("a1", "alice"), ("b1", "bob"), ("a2", "alice")] {
        cluster
            .create_key(&KeyBuilder::new(name, owner).build())
            .await;
    }
    let alice = succeeded(
        &kubectl(
            &cluster,
            &kubeconfig,
            &[
                "get",
                "ak",
                "--field-selector",
                "spec.owner.name=alice",
                "-o",
                "name",
            ],
            "",
        )
        .await,
    );
    assert_eq!(
        alice.lines().collect::<Vec<_>>(),
        ["accesskey.keywarden.io/a1", "accesskey.keywarden.io/a2"]
    );
    let users = succeeded(
        &kubectl(
            &cluster,
            &kubeconfig,
            &[
                "get",
                "ak",
                "--field-selector",
                "spec.owner.kind=User,spec.owner.name!=alice",
                "-o",
                "name",
            ],
            "",
        )
        .await,
    );
    assert_eq!(users.trim(), "accesskey.keywarden.io/b1");
    let error = refused(
        &kubectl(
            &cluster,
            &kubeconfig,
            &["get", "ak", "--field-selector", "spec.displayName=x"],
            "",
        )
        .await,
    );
    assert!(
        error.contains("field label not supported: spec.displayName"),
        "{error}"
    );
}

/// Applies one AccessKey with `spec` (YAML flow style) and returns kubectl's error.
async fn apply_refused(cluster: &TestCluster, kubeconfig: &Path, kind: &str, spec: &str) -> String {
    let manifest = format!(
        "apiVersion: keywarden.io/v1alpha1\nkind: {kind}\nmetadata: {{name: bad-{}}}\nspec: {spec}\n",
        random_suffix()
    );
    refused(&kubectl(cluster, kubeconfig, &["apply", "-f", "-"], &manifest).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_errors_say_what_is_expected_at_the_field() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(&cluster, dir.path());
    let owner = "owner: {kind: User, name: alice}";
    let cases = [
        (
            "AccessKey",
            format!("{{{owner}, allowedOrigins: [https://app.example.com/]}}"),
            format!("spec.allowedOrigins: Invalid value: \"array\": {}", keywarden::api::rules::ORIGINS_MESSAGE),
        ),
        (
            "AccessKey",
            format!("{{{owner}, scopes: [Logs.View]}}"),
            format!("spec.scopes: Invalid value: \"array\": {}", keywarden::api::rules::SCOPES_MESSAGE),
        ),
        (
            "AccessKey",
            format!("{{{owner}, secret: {{name: Creds_1}}}}"),
            format!("spec.secret.name: Invalid value: \"string\": {}", keywarden::api::rules::SECRET_NAME_MESSAGE),
        ),
        (
            "AccessKey",
            format!("{{{owner}, policyName: Strict}}"),
            format!("spec.policyName: Invalid value: \"string\": {}", keywarden::api::rules::POLICY_NAME_MESSAGE),
        ),
        (
            "AccessKey",
            "{owner: {kind: ServiceAccount, name: CI_bot}}".to_owned(),
            "spec.owner.name: Invalid value: \"object\": a ServiceAccount owner name must be a DNS-1123 subdomain (the ServiceAccount in the key's namespace)".to_owned(),
        ),
        (
            "AccessKeyPolicy",
            "{expireAfter: 6 months}".to_owned(),
            format!("spec.expireAfter: Invalid value: \"string\": {}", keywarden::api::rules::DURATION_MESSAGE),
        ),
    ];
    for (kind, spec, expected) in cases {
        let error = apply_refused(&cluster, &kubeconfig, kind, &spec).await;
        assert!(
            error.contains(&expected),
            "{spec}:\n{error}\nexpected: {expected}"
        );
        assert!(
            !error.contains("should match"),
            "no raw pattern for {spec}: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_one_can_sign_a_change_or_a_creation_with_someone_elses_name() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(&cluster, dir.path());
    let suffix = random_suffix();
    let alice = format!("alice-{suffix}");
    let bob = format!("bob-{suffix}");
    bind(&cluster, "edit", &alice).await;
    bind(&cluster, "admin", &bob).await;
    let manifest = |name: &str, owner: &str, requested_by: Option<&str>| {
        let annotations = requested_by.map_or_else(String::new, |who| {
            format!(", annotations: {{keywarden.io/requested-by: {who}}}")
        });
        format!(
            "apiVersion: keywarden.io/v1alpha1\nkind: AccessKey\nmetadata: {{name: {name}{annotations}}}\nspec: {{owner: {{kind: User, name: {owner}}}}}\n"
        )
    };
    let as_alice = ["apply", "-f", "-", "--as", alice.as_str()];

    // A creation signed with another name is refused: status.createdBy cannot be forged.
    let forged = refused(
        &kubectl(
            &cluster,
            &kubeconfig,
            &as_alice,
            &manifest("forged", &alice, Some(&bob)),
        )
        .await,
    );
    assert!(
        forged.contains(&format!(
            "metadata.annotations[keywarden.io/requested-by] must be you (\"{alice}\"): it names who asked for this change"
        )),
        "{forged}"
    );

    // A key created without the plugin's mark names no creator, and no one can slip a name in
    // before the controller has recorded the creation.
    succeeded(
        &kubectl(
            &cluster,
            &kubeconfig,
            &as_alice,
            &manifest("plain", &alice, None),
        )
        .await,
    );
    let slipped = refused(
        &kubectl(
            &cluster,
            &kubeconfig,
            &as_alice,
            &manifest("plain", &alice, Some(&alice)),
        )
        .await,
    );
    assert!(
        slipped.contains(
            "may be added or changed only once the keywarden controller has seen the key"
        ),
        "{slipped}"
    );
    let _controller = cluster.start_controller();
    let plain = cluster
        .wait_phase("plain", keywarden::api::Phase::Active)
        .await;
    assert_eq!(plain.status.unwrap().created_by, None);

    // Alice signs her own creation; Bob (who may manage keys here) cannot change its spec
    // under her name, only under his own or none.
    succeeded(
        &kubectl(
            &cluster,
            &kubeconfig,
            &as_alice,
            &manifest("signed", &alice, Some(&alice)),
        )
        .await,
    );
    let signed = cluster
        .wait_phase("signed", keywarden::api::Phase::Active)
        .await;
    assert_eq!(
        signed.status.unwrap().created_by.as_deref(),
        Some(alice.as_str())
    );
    let patch_as_bob = |patch: String| {
        let kubeconfig = kubeconfig.clone();
        let cluster = &cluster;
        let bob = bob.clone();
        async move {
            let args = [
                "patch", "ak", "signed", "--type", "merge", "-p", &patch, "--as", &bob,
            ];
            kubectl(cluster, &kubeconfig, &args, "").await
        }
    };
    // A later writer may leave her mark in place (as a GitOps sync does): it signs only the
    // generation she asked for, so the controller names no one for his change.
    succeeded(&patch_as_bob(r#"{"spec":{"active":false}}"#.into()).await);
    let notes = eventually("the Deactivated event", || async {
        let notes = event_notes(&cluster, "signed").await;
        notes
            .iter()
            .any(|n| n.starts_with("key deactivated"))
            .then_some(notes)
    })
    .await;
    let deactivated = notes
        .iter()
        .find(|n| n.starts_with("key deactivated"))
        .unwrap();
    assert!(!deactivated.contains("requested by"), "{deactivated}");

    // Moving her mark onto his change is signing with her name: refused.
    let generation = cluster
        .keys()
        .get("signed")
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    let mark = |who: &str, generation: i64| {
        format!(
            r#""metadata":{{"annotations":{{"{REQUESTED_BY_ANNOTATION}":"{who}","{REQUESTED_GENERATION_ANNOTATION}":"{generation}"}}}}"#
        )
    };
    let under_her_name = refused(
        &patch_as_bob(format!(
            r#"{{{},"spec":{{"active":true}}}}"#,
            mark(&alice, generation + 1)
        ))
        .await,
    );
    assert!(
        under_her_name.contains(&format!(
            "metadata.annotations[keywarden.io/requested-by] must be you (\"{bob}\")"
        )),
        "{under_her_name}"
    );
    succeeded(
        &patch_as_bob(format!(
            r#"{{{},"spec":{{"active":true}}}}"#,
            mark(&bob, generation + 1)
        ))
        .await,
    );
    let activated = eventually("the Activated event naming Bob", || async {
        event_notes(&cluster, "signed")
            .await
            .into_iter()
            .find(|n| n.starts_with("key activated"))
    })
    .await;
    assert!(
        activated.ends_with(&format!("(requested by {bob})")),
        "{activated}"
    );
    let changed = cluster.keys().get("signed").await.unwrap();
    assert_eq!(
        changed.status.unwrap().created_by.as_deref(),
        Some(alice.as_str()),
        "a later change never rewrites the creator"
    );
}
