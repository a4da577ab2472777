//! The owner reads their own key (and nothing else) without namespace-wide Secret access: per
//! key, the controller (running as the chart's ServiceAccount) keeps a Role granting `get` on the
//! key's Secret and a RoleBinding to the owner; a policy turns it off, deletion collects it, and
//! a squatted name is reported, never adopted. Devcluster or `KEYWARDEN_TEST_KUBECONFIG`.

mod support;
mod tools;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use keywarden::api::conditions::{reasons, types};
use keywarden::api::AccessKey;
use support::{
    condition, eventually, increase_between, random_suffix, KeyBuilder, PolicyBuilder, TestCluster,
};

/// A self-service user of the test: keywarden's self-service role alone, so no Secret access
/// of their own.
struct Owner {
    name: String,
    client: Client,
}

/// The admin's kubeconfig (devcluster's, or the real cluster's).
fn admin_kubeconfig(cluster: &TestCluster) -> Kubeconfig {
    match cluster.dev() {
        Some(dev) => dev.kubeconfig().expect("devcluster kubeconfig"),
        None => Kubeconfig::read_from(
            std::env::var("KEYWARDEN_TEST_KUBECONFIG").expect("KEYWARDEN_TEST_KUBECONFIG"),
        )
        .expect("kubeconfig"),
    }
}

async fn self_service_user(cluster: &TestCluster, base: &str) -> Owner {
    let name = format!("{base}-{}", random_suffix());
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("keywarden-edit-{name}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "keywarden-edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}],
    }))
    .unwrap();
    bindings(cluster)
        .create(&PostParams::default(), &binding)
        .await
        .expect("bind the user");
    let mut config = cluster.admin_config.clone();
    config.auth_info.impersonate = Some(name.clone());
    config.auth_info.impersonate_groups = Some(vec!["system:authenticated".into()]);
    Owner {
        name,
        client: Client::try_from(config).expect("impersonating client"),
    }
}

fn roles(cluster: &TestCluster) -> Api<Role> {
    Api::namespaced(cluster.client.clone(), &cluster.namespace)
}

fn bindings(cluster: &TestCluster) -> Api<RoleBinding> {
    Api::namespaced(cluster.client.clone(), &cluster.namespace)
}

fn secrets_of(cluster: &TestCluster, owner: &Owner) -> Api<Secret> {
    Api::namespaced(owner.client.clone(), &cluster.namespace)
}

/// Creates key `name` owned by `owner` (as the admin) and waits until the owner may read it.
async fn granted_key(cluster: &TestCluster, name: &str, owner: &str, policy: &str) -> AccessKey {
    cluster
        .create_key(&KeyBuilder::new(name, owner).policy(policy).build())
        .await;
    wait_owner_condition(cluster, name, "True", reasons::OWNER_ACCESS_GRANTED).await
}

async fn wait_owner_condition(
    cluster: &TestCluster,
    name: &str,
    status: &str,
    reason: &str,
) -> AccessKey {
    cluster
        .wait_key(name, &format!("OwnerCanRead={status} ({reason})"), |k| {
            condition(k, types::OWNER_CAN_READ) == Some((status.into(), reason.into()))
        })
        .await
}

async fn unique_policy(cluster: &TestCluster) -> String {
    let name = format!("owner-access-{}", random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&name).build())
        .await;
    name
}

/// Whether `owner` may get Secret `name`.
async fn can_get(cluster: &TestCluster, owner: &Owner, name: &str) -> bool {
    match secrets_of(cluster, owner).get(name).await {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 403 => false,
        Err(other) => panic!("unexpected answer: {other}"),
    }
}

/// Waits until `owner`'s access to Secret `name` is `expected` (a real cluster's authorizer
/// follows RBAC changes with a short delay).
async fn wait_access(cluster: &TestCluster, owner: &Owner, name: &str, expected: bool) {
    eventually(
        &format!("{} get {name}: {expected}", owner.name),
        || async { (can_get(cluster, owner, name).await == expected).then_some(()) },
    )
    .await;
}

/// A kubeconfig that acts as `user` (kubectl's `as`), written into `dir`.
fn kubeconfig_as(cluster: &TestCluster, user: &str, dir: &Path) -> PathBuf {
    let mut kubeconfig = admin_kubeconfig(cluster);
    for named in &mut kubeconfig.auth_infos {
        if let Some(auth) = named.auth_info.as_mut() {
            auth.impersonate = Some(user.to_owned());
            auth.impersonate_groups = Some(vec!["system:authenticated".into()]);
        }
    }
    let path = dir.join("owner.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig).unwrap()).unwrap();
    path
}

/// Runs `kubectl keywarden <args>` in the cluster's namespace, the plugin found on PATH.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_reads_their_credentials_with_kubectl_keywarden_and_no_others() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let policy = unique_policy(&cluster).await;
    let olive = self_service_user(&cluster, "olive").await;
    let key = granted_key(&cluster, "olives", &olive.name, &policy).await;
    let someone_else = format!("someone-else-{}", random_suffix());
    granted_key(&cluster, "someone-elses", &someone_else, &policy).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_as(&cluster, &olive.name, dir.path());

    let own = kubectl_keywarden(
        &cluster,
        &kubeconfig,
        &["credentials", "olives", "--format", "env"],
    )
    .await;
    assert!(
        own.status.success(),
        "the owner's credentials: {}",
        String::from_utf8_lossy(&own.stderr)
    );
    let printed = String::from_utf8(own.stdout).unwrap();
    let id = key.status.unwrap().access_key_id.expect("issued");
    assert!(
        printed.contains(&format!("KEYWARDEN_ACCESS_KEY_ID={id}")),
        "{printed}"
    );

    let other = kubectl_keywarden(&cluster, &kubeconfig, &["credentials", "someone-elses"]).await;
    assert!(!other.status.success());
    let refused = String::from_utf8_lossy(&other.stderr);
    assert!(
        refused.contains("cannot get resource \"secrets\""),
        "{refused}"
    );
    let listed = secrets_of(&cluster, &olive)
        .list(&ListParams::default())
        .await;
    assert!(matches!(listed, Err(kube::Error::Api(e)) if e.code == 403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_is_written_once_and_not_again_on_re_reconcile() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let policy = unique_policy(&cluster).await;
    let stella = format!("stella-{}", random_suffix());
    granted_key(&cluster, "steady", &stella, &policy).await;
    let name = "keywarden-owner-steady";
    let versions = || async {
        (
            roles(&cluster).get(name).await.unwrap().resource_version(),
            bindings(&cluster)
                .get(name)
                .await
                .unwrap()
                .resource_version(),
        )
    };
    let before = versions().await;
    if let Some(faults) = cluster.faults() {
        // why: a write of identical content bumps no resourceVersion, so any write at all
        // fails here, and the failed reconcile never records the edit below.
        for verb in ["create", "update", "patch", "delete"] {
            for resource in ["roles", "rolebindings"] {
                let matcher =
                    devcluster::RequestMatch::new(verb, resource).namespace(&cluster.namespace);
                faults.fail_next(matcher, 100, 500);
            }
        }
    }
    cluster
        .keys()
        .patch(
            "steady",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"displayName": "touched"}})),
        )
        .await
        .unwrap();
    cluster
        .wait_key("steady", "the edit observed", |k| {
            k.status.as_ref().and_then(|s| s.observed_generation) == k.metadata.generation
        })
        .await;
    if let Some(faults) = cluster.faults() {
        faults.clear();
    }
    assert_eq!(
        versions().await,
        before,
        "a reconcile with nothing to change writes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_turning_owner_access_off_removes_the_grant_and_on_restores_it() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let policy = unique_policy(&cluster).await;
    let olive = self_service_user(&cluster, "olive").await;
    granted_key(&cluster, "switched", &olive.name, &policy).await;
    wait_access(&cluster, &olive, "switched-access-key", true).await;

    let set = |on: bool| {
        let policy = policy.clone();
        let api = cluster.policies();
        async move {
            api.patch(
                &policy,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"ownerSecretAccess": on}})),
            )
            .await
            .expect("patch policy");
        }
    };
    set(false).await;
    let off = wait_owner_condition(
        &cluster,
        "switched",
        "False",
        reasons::OWNER_ACCESS_DISABLED,
    )
    .await;
    assert_eq!(
        off.status.unwrap().phase,
        Some(keywarden::api::Phase::Active),
        "the key itself keeps working"
    );
    assert!(roles(&cluster)
        .get_opt("keywarden-owner-switched")
        .await
        .unwrap()
        .is_none());
    assert!(bindings(&cluster)
        .get_opt("keywarden-owner-switched")
        .await
        .unwrap()
        .is_none());
    wait_access(&cluster, &olive, "switched-access-key", false).await;

    set(true).await;
    wait_owner_condition(&cluster, "switched", "True", reasons::OWNER_ACCESS_GRANTED).await;
    wait_access(&cluster, &olive, "switched-access-key", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_key_collects_the_grant_and_a_new_owner_of_the_name_gets_it() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let policy = unique_policy(&cluster).await;
    let (olive, peter) = (
        self_service_user(&cluster, "olive").await,
        self_service_user(&cluster, "peter").await,
    );
    granted_key(&cluster, "handed-over", &olive.name, &policy).await;
    wait_access(&cluster, &olive, "handed-over-access-key", true).await;

    cluster
        .keys()
        .delete("handed-over", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the grant collected with the key", || async {
        let role = roles(&cluster)
            .get_opt("keywarden-owner-handed-over")
            .await
            .unwrap();
        let binding = bindings(&cluster)
            .get_opt("keywarden-owner-handed-over")
            .await
            .unwrap();
        (role.is_none() && binding.is_none()).then_some(())
    })
    .await;
    wait_access(&cluster, &olive, "handed-over-access-key", false).await;

    // The owner is immutable: a key changes hands by being recreated.
    eventually("the old key gone", || async {
        cluster
            .keys()
            .get_opt("handed-over")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    granted_key(&cluster, "handed-over", &peter.name, &policy).await;
    wait_access(&cluster, &peter, "handed-over-access-key", true).await;
    assert!(!can_get(&cluster, &olive, "handed-over-access-key").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_edited_to_someone_else_is_restored_to_the_owner() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let policy = unique_policy(&cluster).await;
    let (olive, mallory) = (
        self_service_user(&cluster, "olive").await,
        self_service_user(&cluster, "mallory").await,
    );
    granted_key(&cluster, "tampered", &olive.name, &policy).await;
    let name = "keywarden-owner-tampered";
    bindings(&cluster)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": mallory.name}]})),
        )
        .await
        .unwrap();
    eventually("the binding restored", || async {
        let binding = bindings(&cluster).get(name).await.unwrap();
        let subjects = binding.subjects.unwrap_or_default();
        (subjects.len() == 1 && subjects[0].name == olive.name).then_some(())
    })
    .await;
    wait_access(&cluster, &olive, "tampered-access-key", true).await;
    wait_access(&cluster, &mallory, "tampered-access-key", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_role_name_is_reported_and_never_adopted() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let policy = unique_policy(&cluster).await;
    let olive = self_service_user(&cluster, "olive").await;
    let name = "keywarden-owner-squatted";
    // Someone who may write Roles takes the name first, with a rule wider than the grant.
    let squatter: Role = serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}],
    }))
    .unwrap();
    let squatter = roles(&cluster)
        .create(&PostParams::default(), &squatter)
        .await
        .unwrap();

    cluster
        .create_key(
            &KeyBuilder::new("squatted", &olive.name)
                .policy(&policy)
                .build(),
        )
        .await;
    let key = wait_owner_condition(
        &cluster,
        "squatted",
        "False",
        reasons::OWNER_ACCESS_CONFLICT,
    )
    .await;
    let message = key
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == types::OWNER_CAN_READ)
        .unwrap()
        .message;
    let object = format!("Role {}/{name}", cluster.namespace);
    assert!(message.contains(&object), "{message}");
    let role = roles(&cluster).get(name).await.unwrap();
    assert_eq!(
        role.resource_version(),
        squatter.resource_version(),
        "not adopted or changed"
    );
    assert!(role.owner_references().is_empty());
    assert!(
        bindings(&cluster).get_opt(name).await.unwrap().is_none(),
        "nothing bound to it"
    );
    assert!(!can_get(&cluster, &olive, "squatted-access-key").await);
    let events = Api::<Event>::namespaced(cluster.client.clone(), &cluster.namespace);
    eventually("a Warning event naming the Role", || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some(reasons::OWNER_ACCESS_CONFLICT)
                    && e.type_.as_deref() == Some("Warning")
                    && e.note.as_deref().is_some_and(|n| n.contains(&object))
            })
    })
    .await;

    // Once the squatter is gone, the key's next reconcile (here, an edit) grants.
    roles(&cluster)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    cluster
        .keys()
        .patch(
            "squatted",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"displayName": "after the squatter"}})),
        )
        .await
        .unwrap();
    wait_owner_condition(&cluster, "squatted", "True", reasons::OWNER_ACCESS_GRANTED).await;
    wait_access(&cluster, &olive, "squatted-access-key", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_binding_name_gets_no_role_to_bind() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let policy = unique_policy(&cluster).await;
    let (olive, mallory) = (
        self_service_user(&cluster, "olive").await,
        self_service_user(&cluster, "mallory").await,
    );
    let name = "keywarden-owner-bait";
    // Bound in advance to the Role the controller would create: mallory would read the Secret.
    let squatter: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": mallory.name}],
    }))
    .unwrap();
    bindings(&cluster)
        .create(&PostParams::default(), &squatter)
        .await
        .unwrap();

    cluster
        .create_key(&KeyBuilder::new("bait", &olive.name).policy(&policy).build())
        .await;
    let key = wait_owner_condition(&cluster, "bait", "False", reasons::OWNER_ACCESS_CONFLICT).await;
    let message = key
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == types::OWNER_CAN_READ)
        .unwrap()
        .message;
    assert!(
        message.contains(&format!("RoleBinding {}/{name}", cluster.namespace)),
        "{message}"
    );
    assert!(
        roles(&cluster).get_opt(name).await.unwrap().is_none(),
        "no Role for the squatter's binding"
    );
    let binding = bindings(&cluster).get(name).await.unwrap();
    assert!(binding.owner_references().is_empty(), "not adopted");
    assert!(!can_get(&cluster, &mallory, "bait-access-key").await);
    assert!(!can_get(&cluster, &olive, "bait-access-key").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_keys_grant_reads_only_the_binding_before_creating_both() {
    let cluster = TestCluster::start().await;
    let _controller = cluster.start_controller();
    let policy = unique_policy(&cluster).await;
    let rbac = ["roles", "rolebindings"];
    // why: counting requests needs devcluster; the squatter tests above hold on any cluster.
    let Some(before) = cluster.object_requests(&rbac) else {
        return;
    };
    granted_key(
        &cluster,
        "counted",
        &format!("nora-{}", random_suffix()),
        &policy,
    )
    .await;
    let made = increase_between(&before, &cluster.object_requests(&rbac).unwrap());
    // The binding is read (a squatter's would be handed the Role); the Role's create is its
    // own read (409 if the name is taken, see a_squatted_role_name_is_reported_and_never_adopted).
    let expected: BTreeMap<String, u64> = [
        ("create rolebindings".to_string(), 1),
        ("create roles".to_string(), 1),
        ("get rolebindings".to_string(), 1),
    ]
    .into();
    assert_eq!(made, expected);
}
