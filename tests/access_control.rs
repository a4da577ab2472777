//! Who may hold a key for whom, enforced in the API server by the RBAC roles and admission
//! policies keywarden ships (deploy/access-control.yaml): a table of identities x actions, each
//! with the expected answer and message. Identities are impersonated from the admin, so the
//! same table runs against devcluster and against `KEYWARDEN_TEST_KUBECONFIG`.

mod support;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Config};
use serde_json::json;

use keywarden::api::conditions::{reasons, types};
use keywarden::api::{AccessKey, OwnerKind};
use keywarden::cli::access_control;
use support::{condition, random_suffix, KeyBuilder, TestCluster};

const OWNERSHIP_POLICY: &str = "keywarden-access-key-ownership";
const STATUS_POLICY: &str = "keywarden-access-key-status";

/// The admin's client configuration (devcluster's kubeconfig, or the real cluster's).
async fn admin_config(cluster: &TestCluster) -> Config {
    let kubeconfig = match cluster.dev() {
        Some(dev) => dev.kubeconfig().expect("devcluster kubeconfig"),
        None => kube::config::Kubeconfig::read_from(
            std::env::var("KEYWARDEN_TEST_KUBECONFIG").expect("KEYWARDEN_TEST_KUBECONFIG"),
        )
        .expect("kubeconfig"),
    };
    Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("admin config")
}

/// A client that acts as `user` in `groups` (impersonated by the admin, as `kubectl --as`).
fn client_as(admin: &Config, user: &str, groups: &[&str]) -> Client {
    let mut config = admin.clone();
    config.auth_info.impersonate = Some(user.to_owned());
    config.auth_info.impersonate_groups =
        (!groups.is_empty()).then(|| groups.iter().map(|g| (*g).to_owned()).collect());
    Client::try_from(config).expect("impersonating client")
}

/// The identities of the table and the namespace they act in.
struct World {
    cluster: TestCluster,
    admin: Config,
    /// Unique per run, so that a real cluster's users and bindings don't collide.
    suffix: String,
}

impl World {
    async fn start() -> Self {
        let cluster = TestCluster::start().await;
        access_control::install(&cluster.client)
            .await
            .expect("install keywarden's RBAC and admission policies");
        let admin = admin_config(&cluster).await;
        let world = Self {
            cluster,
            admin,
            suffix: random_suffix(),
        };
        // Kubernetes' own roles, which pick up keywarden's through aggregation.
        world.bind_in_namespace("edit", &world.user("alice")).await;
        world.bind_in_namespace("edit", &world.user("bob")).await;
        world.bind_in_namespace("admin", &world.user("nadia")).await;
        // why: Kubernetes' edit role lets its holders impersonate the namespace's
        // ServiceAccounts, so it would also let them hold keys for them; keywarden-edit alone
        // is the self-service capability.
        world
            .bind_service_account_in_namespace("keywarden-edit", "ci")
            .await;
        world
            .bind_in_namespace("keywarden-edit", &world.user("dana"))
            .await;
        world
            .bind_service_account_in_namespace("keywarden-edit", "gitops")
            .await;
        world
            .bind_service_account_in_namespace("keywarden-manage", "gitops")
            .await;
        world
            .bind_cluster_wide("keywarden-edit", &world.user("carol"))
            .await;
        world
            .bind_cluster_wide("keywarden-manage", &world.user("carol"))
            .await;
        world
    }

    fn namespace(&self) -> &str {
        &self.cluster.namespace
    }

    fn user(&self, name: &str) -> String {
        format!("{name}-{}", self.suffix)
    }

    fn service_account(&self, name: &str) -> String {
        format!("system:serviceaccount:{}:{name}", self.namespace())
    }

    fn as_user(&self, name: &str) -> Client {
        client_as(&self.admin, &self.user(name), &["system:authenticated"])
    }

    fn as_service_account(&self, namespace: &str, name: &str) -> Client {
        client_as(
            &self.admin,
            &format!("system:serviceaccount:{namespace}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{namespace}"),
                "system:authenticated",
            ],
        )
    }

    async fn bind_in_namespace(&self, cluster_role: &str, user: &str) {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("{cluster_role}-{user}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }))
        .unwrap();
        Api::<RoleBinding>::namespaced(self.cluster.client.clone(), self.namespace())
            .create(&PostParams::default(), &binding)
            .await
            .expect("create RoleBinding");
    }

    async fn bind_service_account_in_namespace(&self, cluster_role: &str, name: &str) {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("{cluster_role}-sa-{name}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": self.namespace()}],
        }))
        .unwrap();
        Api::<RoleBinding>::namespaced(self.cluster.client.clone(), self.namespace())
            .create(&PostParams::default(), &binding)
            .await
            .expect("create RoleBinding");
    }

    async fn bind_cluster_wide(&self, cluster_role: &str, user: &str) {
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("{cluster_role}-{user}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }))
        .unwrap();
        Api::<ClusterRoleBinding>::all(self.cluster.client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .expect("create ClusterRoleBinding");
    }

    fn keys(&self, client: &Client) -> Api<AccessKey> {
        Api::namespaced(client.clone(), self.namespace())
    }

    /// A key created by the admin, owned by `owner`.
    async fn existing_key(&self, name: &str, kind: OwnerKind, owner: &str) -> String {
        let mut key = KeyBuilder::new(name, owner).build();
        key.spec.owner.kind = kind;
        self.keys(&self.cluster.client)
            .create(&PostParams::default(), &key)
            .await
            .expect("admin creates a key");
        name.to_owned()
    }
}

/// What the API server answered: `Ok` or (code, reason, message).
type Answer = Result<(), (u16, String, String)>;

fn answer<T>(result: Result<T, kube::Error>) -> Answer {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err((status.code, status.reason, status.message)),
        Err(other) => panic!("not an API answer: {other}"),
    }
}

/// kube-apiserver's answer when `policy` denies a write of key `name`.
fn denied_by_policy(name: &str, policy: &str, message: &str) -> Answer {
    Err((
        403,
        "Forbidden".into(),
        format!("accesskeys.keywarden.io \"{name}\" is forbidden: ValidatingAdmissionPolicy '{policy}' with binding '{policy}' denied request: {message}"),
    ))
}

async fn create(
    world: &World,
    client: &Client,
    name: &str,
    kind: OwnerKind,
    owner: &str,
) -> Answer {
    let mut key = KeyBuilder::new(name, owner).build();
    key.spec.owner.kind = kind;
    answer(
        world
            .keys(client)
            .create(&PostParams::default(), &key)
            .await,
    )
}

async fn patch_spec(world: &World, client: &Client, name: &str, spec: serde_json::Value) -> Answer {
    answer(
        world
            .keys(client)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await,
    )
}

async fn delete(world: &World, client: &Client, name: &str) -> Answer {
    answer(
        world
            .keys(client)
            .delete(name, &DeleteParams::default())
            .await,
    )
}

async fn patch_status(
    world: &World,
    client: &Client,
    name: &str,
    status: serde_json::Value,
) -> Answer {
    answer(
        world
            .keys(client)
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_service_users_create_change_and_delete_only_their_own_keys() {
    let world = World::start().await;
    let alice = world.as_user("alice");
    let (alice_name, bob_name) = (world.user("alice"), world.user("bob"));
    let ns = world.namespace().to_owned();

    assert_eq!(
        create(&world, &alice, "alice-own", OwnerKind::User, &alice_name).await,
        Ok(())
    );
    assert_eq!(
        create(&world, &alice, "for-bob", OwnerKind::User, &bob_name).await,
        denied_by_policy(
            "for-bob", OWNERSHIP_POLICY,
            &format!("spec.owner must be you (\"{alice_name}\"); creating keys for others needs the \"manage\" verb on accesskeys.keywarden.io cluster-wide, or \"impersonate\" on user \"{bob_name}\"")
        )
    );
    // Kubernetes' edit role grants `impersonate` on the namespace's ServiceAccounts, and who may
    // act as a ServiceAccount may hold its keys.
    assert_eq!(
        create(&world, &alice, "for-ci", OwnerKind::ServiceAccount, "ci").await,
        Ok(())
    );
    let dana = world.as_user("dana");
    assert_eq!(
        create(&world, &dana, "dana-for-ci", OwnerKind::ServiceAccount, "ci").await,
        denied_by_policy(
            "dana-for-ci", OWNERSHIP_POLICY,
            &format!("spec.owner must be you (\"{}\"); creating keys for ServiceAccount \"ci\" needs the \"manage\" verb on accesskeys.keywarden.io in namespace \"{ns}\"", world.user("dana"))
        )
    );
    assert_eq!(
        patch_spec(
            &world,
            &alice,
            "alice-own",
            json!({"displayName": "laptop", "active": false, "rotateGeneration": 1})
        )
        .await,
        Ok(())
    );

    let bobs = world.existing_key("bobs", OwnerKind::User, &bob_name).await;
    let not_yours = denied_by_policy(
        &bobs, OWNERSHIP_POLICY,
        &format!("this key belongs to \"{bob_name}\"; changing or deleting the keys of others needs the \"manage\" verb on accesskeys.keywarden.io in namespace \"{ns}\""),
    );
    assert_eq!(
        patch_spec(&world, &alice, &bobs, json!({"active": false})).await,
        not_yours
    );
    assert_eq!(
        patch_spec(&world, &alice, &bobs, json!({"rotateGeneration": 1})).await,
        not_yours
    );
    assert_eq!(delete(&world, &alice, &bobs).await, not_yours);
    assert_eq!(
        patch_status(&world, &alice, "alice-own", json!({"phase": "Active"})).await,
        Err((
            403,
            "Forbidden".into(),
            format!("accesskeys.keywarden.io \"alice-own\" is forbidden: User \"{alice_name}\" cannot patch resource \"accesskeys/status\" in API group \"keywarden.io\" in the namespace \"{ns}\"")
        ))
    );
    assert_eq!(delete(&world, &alice, "alice-own").await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_admins_manage_keys_there_but_mint_none_for_other_users() {
    let world = World::start().await;
    let nadia = world.as_user("nadia");
    let bob_name = world.user("bob");

    assert_eq!(
        create(&world, &nadia, "for-ci", OwnerKind::ServiceAccount, "ci").await,
        Ok(())
    );
    assert_eq!(
        create(&world, &nadia, "for-bob", OwnerKind::User, &bob_name).await,
        denied_by_policy(
            "for-bob", OWNERSHIP_POLICY,
            &format!("spec.owner must be you (\"{}\"); creating keys for others needs the \"manage\" verb on accesskeys.keywarden.io cluster-wide, or \"impersonate\" on user \"{bob_name}\"", world.user("nadia"))
        )
    );
    let bobs = world.existing_key("bobs", OwnerKind::User, &bob_name).await;
    assert_eq!(
        patch_spec(&world, &nadia, &bobs, json!({"active": false})).await,
        Ok(())
    );
    assert_eq!(
        patch_spec(&world, &nadia, &bobs, json!({"rotateGeneration": 1})).await,
        Ok(())
    );
    assert_eq!(delete(&world, &nadia, &bobs).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_managers_create_keys_for_other_users() {
    let world = World::start().await;
    let carol = world.as_user("carol");
    assert_eq!(
        create(
            &world,
            &carol,
            "for-bob",
            OwnerKind::User,
            &world.user("bob")
        )
        .await,
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_hold_their_own_keys_and_gitops_manages_them() {
    let world = World::start().await;
    let ns = world.namespace().to_owned();
    let ci = world.as_service_account(&ns, "ci");
    let gitops = world.as_service_account(&ns, "gitops");

    assert_eq!(
        create(&world, &ci, "ci-own", OwnerKind::ServiceAccount, "ci").await,
        Ok(())
    );
    assert_eq!(
        create(&world, &ci, "for-deployer", OwnerKind::ServiceAccount, "deployer").await,
        denied_by_policy(
            "for-deployer", OWNERSHIP_POLICY,
            &format!("spec.owner must be you (\"{}\"); creating keys for ServiceAccount \"deployer\" needs the \"manage\" verb on accesskeys.keywarden.io in namespace \"{ns}\"", world.service_account("ci"))
        )
    );
    assert_eq!(
        create(
            &world,
            &gitops,
            "deployer",
            OwnerKind::ServiceAccount,
            "deployer"
        )
        .await,
        Ok(())
    );
    assert_eq!(
        create(&world, &gitops, "for-alice", OwnerKind::User, &world.user("alice")).await,
        denied_by_policy(
            "for-alice", OWNERSHIP_POLICY,
            &format!("spec.owner must be you (\"{}\"); creating keys for others needs the \"manage\" verb on accesskeys.keywarden.io cluster-wide, or \"impersonate\" on user \"{}\"", world.service_account("gitops"), world.user("alice"))
        )
    );
    assert_eq!(
        patch_spec(&world, &gitops, "ci-own", json!({"active": false})).await,
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_without_rbac_are_refused_by_rbac_first() {
    let world = World::start().await;
    let eve = world.as_user("eve");
    let eve_name = world.user("eve");
    assert_eq!(
        create(&world, &eve, "eve-own", OwnerKind::User, &eve_name).await,
        Err((
            403,
            "Forbidden".into(),
            format!("accesskeys.keywarden.io is forbidden: User \"{eve_name}\" cannot create resource \"accesskeys\" in API group \"keywarden.io\" in the namespace \"{}\"", world.namespace())
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_controller_writes_status_and_the_verifier_only_last_use() {
    let world = World::start().await;
    let key = world
        .existing_key("status-key", OwnerKind::User, &world.user("alice"))
        .await;
    let controller = world.as_service_account(
        access_control::NAMESPACE,
        access_control::CONTROLLER_SERVICE_ACCOUNT,
    );
    let verifier = world.as_service_account(
        access_control::NAMESPACE,
        access_control::VERIFIER_SERVICE_ACCOUNT,
    );
    let controller_name = access_control::username(access_control::CONTROLLER_SERVICE_ACCOUNT);

    assert_eq!(
        patch_status(
            &world,
            &controller,
            &key,
            json!({"phase": "Active", "accessKeyId": "AKWAAAAAAAAAAAAAAAAAAAAA"})
        )
        .await,
        Ok(())
    );
    assert_eq!(
        patch_status(
            &world,
            &verifier,
            &key,
            json!({"lastUsedAt": "2026-12-01T10:00:00Z"})
        )
        .await,
        Ok(())
    );
    assert_eq!(
        patch_status(&world, &verifier, &key, json!({"phase": "Inactive"})).await,
        denied_by_policy(
            &key,
            STATUS_POLICY,
            "the verifier may change status.lastUsedAt only"
        )
    );
    assert_eq!(
        patch_status(&world, &world.cluster.client, &key, json!({"expiresAt": "2099-01-01T00:00:00Z"})).await,
        denied_by_policy(
            &key, STATUS_POLICY,
            &format!("AccessKey status is written by the keywarden controller (\"{controller_name}\") only")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_cleanup_is_never_blocked() {
    let world = World::start().await;
    let key = world
        .existing_key("cleanup-key", OwnerKind::User, &world.user("alice"))
        .await;
    for controller in ["namespace-controller", "generic-garbage-collector"] {
        // why: a real cluster binds these controllers' own roles; grant the same deletes here
        // so that only the admission policy is under test.
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("kw-test-{controller}-{}", world.suffix)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "keywarden-edit"},
            "subjects": [{"kind": "ServiceAccount", "name": controller, "namespace": "kube-system"}],
        }))
        .unwrap();
        Api::<ClusterRoleBinding>::all(world.cluster.client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .expect("bind");
    }
    let namespace_controller = world.as_service_account("kube-system", "namespace-controller");
    assert_eq!(delete(&world, &namespace_controller, &key).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_may_put_on_a_key_only_scopes_they_hold() {
    let world = World::start().await;
    let ns = world.namespace().to_owned();
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
        "metadata": {"name": "logs-viewer"},
        "rules": [{"apiGroups": ["scopes.keywarden.io"], "resources": ["logs"], "verbs": ["view"]}],
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(world.cluster.client.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("create Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "logs-viewer-alice"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "logs-viewer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": world.user("alice")}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(world.cluster.client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");
    let alice = world.as_user("alice");
    let alice_name = world.user("alice");

    let mut viewer = KeyBuilder::new("viewer", &alice_name).build();
    viewer.spec.scopes = vec!["logs:view".into()];
    assert_eq!(
        answer(
            world
                .keys(&alice)
                .create(&PostParams::default(), &viewer)
                .await
        ),
        Ok(())
    );
    let mut manager = KeyBuilder::new("manager", &alice_name).build();
    manager.spec.scopes = vec![
        "logs:view".into(),
        "logs:manage".into(),
        "billing:view".into(),
    ];
    assert_eq!(
        answer(world.keys(&alice).create(&PostParams::default(), &manager).await),
        denied_by_policy(
            "manager", OWNERSHIP_POLICY,
            &format!("spec.scopes: you do not hold logs:manage, billing:view (the verb on that resource of API group scopes.keywarden.io in namespace \"{ns}\"); a key may carry only scopes its author holds")
        )
    );
    assert_eq!(
        patch_spec(&world, &alice, "viewer", json!({"scopes": ["logs:view", "logs:manage"]})).await,
        denied_by_policy(
            "viewer", OWNERSHIP_POLICY,
            &format!("spec.scopes: you do not hold logs:manage (the verb on that resource of API group scopes.keywarden.io in namespace \"{ns}\"); a key may carry only scopes its author holds")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_read_their_own_credentials_and_no_other_secret() {
    let world = World::start().await;
    let _controller = world.cluster.start_controller();
    let (dana, ci) = (
        world.as_user("dana"),
        world.as_service_account(world.namespace(), "ci"),
    );
    world
        .existing_key("dana-own", OwnerKind::User, &world.user("dana"))
        .await;
    world
        .existing_key("ci-own", OwnerKind::ServiceAccount, "ci")
        .await;
    for name in ["dana-own", "ci-own"] {
        world
            .cluster
            .wait_key(name, "the owner's access granted", |k| {
                condition(k, types::OWNER_CAN_READ)
                    == Some(("True".into(), reasons::OWNER_ACCESS_GRANTED.into()))
            })
            .await;
    }
    let secrets = |client: &Client| Api::<Secret>::namespaced(client.clone(), world.namespace());
    let cannot = |who: String, verb: &str, what: &str| {
        Err((
            403,
            "Forbidden".into(),
            format!("{what} is forbidden: {who} cannot {verb} resource \"secrets\" in API group \"\" in the namespace \"{}\"", world.namespace()),
        ))
    };
    let dana_is = format!("User \"{}\"", world.user("dana"));
    let ci_is = format!("User \"{}\"", world.service_account("ci"));

    // keywarden-edit grants no Secret access: what they read comes from the per-key Role alone.
    assert_eq!(
        answer(secrets(&dana).get("dana-own-access-key").await),
        Ok(())
    );
    assert_eq!(answer(secrets(&ci).get("ci-own-access-key").await), Ok(()));
    assert_eq!(
        answer(secrets(&dana).get("ci-own-access-key").await),
        cannot(dana_is.clone(), "get", "secrets \"ci-own-access-key\"")
    );
    assert_eq!(
        answer(secrets(&ci).get("dana-own-access-key").await),
        cannot(ci_is, "get", "secrets \"dana-own-access-key\"")
    );
    assert_eq!(
        answer(secrets(&dana).list(&ListParams::default()).await),
        cannot(dana_is, "list", "secrets")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_may_name_as_rollout_targets_only_workloads_they_may_restart() {
    let world = World::start().await;
    let ns = world.namespace().to_owned();
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
        "metadata": {"name": "restart-web"},
        "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"], "verbs": ["patch"]}],
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(world.cluster.client.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("create Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "restart-web-dana"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "restart-web"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": world.user("dana")}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(world.cluster.client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");
    let target = |name: Option<&str>| match name {
        Some(name) => json!({"kind": "Deployment", "name": name}),
        None => json!({"kind": "Deployment", "selector": {"matchLabels": {"tier": "front"}}}),
    };
    let key_with = |name: &str, owner: &str, targets: Vec<serde_json::Value>| {
        let mut key = KeyBuilder::new(name, owner).build();
        key.spec.rollout = Some(serde_json::from_value(json!({"targets": targets})).unwrap());
        key
    };
    let dana = world.as_user("dana");
    let alice = world.as_user("alice");
    let create_as = |client: &Client, key: AccessKey| {
        let api = world.keys(client);
        async move { answer(api.create(&PostParams::default(), &key).await) }
    };

    // Kubernetes' edit role may restart every Deployment, by name or by selector.
    assert_eq!(
        create_as(
            &alice,
            key_with(
                "a",
                &world.user("alice"),
                vec![target(Some("api")), target(None)]
            )
        )
        .await,
        Ok(())
    );
    // keywarden-edit plus the right to patch "web": that one, by name only.
    assert_eq!(
        create_as(
            &dana,
            key_with("d1", &world.user("dana"), vec![target(Some("web"))])
        )
        .await,
        Ok(())
    );
    assert_eq!(
        create_as(&dana, key_with("d2", &world.user("dana"), vec![target(Some("web")), target(Some("api")), target(None)])).await,
        denied_by_policy(
            "d2", OWNERSHIP_POLICY,
            &format!("spec.rollout: you may not patch Deployment \"api\", Deployment (every one, for a selector) in namespace \"{ns}\"; a key may restart only workloads its author may restart")
        )
    );
    // Targets already on the key are not the editor's: other edits pass, additions are checked.
    world
        .keys(&world.cluster.client)
        .create(
            &PostParams::default(),
            &key_with("d3", &world.user("dana"), vec![target(Some("api"))]),
        )
        .await
        .expect("admin creates a key");
    assert_eq!(
        patch_spec(&world, &dana, "d3", json!({"displayName": "D"})).await,
        Ok(())
    );
    assert_eq!(
        patch_spec(&world, &dana, "d3", json!({"rollout": {"targets": [target(Some("api")), target(Some("batch"))]}})).await,
        denied_by_policy(
            "d3", OWNERSHIP_POLICY,
            &format!("spec.rollout: you may not patch Deployment \"batch\" in namespace \"{ns}\"; a key may restart only workloads its author may restart")
        )
    );
}
