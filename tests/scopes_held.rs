//! A key's scopes are bounded by what its owner may do: the controller reviews them with a
//! SubjectAccessReview for the owner, follows RBAC changes, and the verifier serves only the
//! scopes held. Runs against devcluster, or a real cluster via `KEYWARDEN_TEST_KUBECONFIG`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use keywarden::api::{AccessKey, OwnerKind, Phase};
use keywarden::controller::DATA_TOKEN;
use keywarden::verifier::{serve, VerifierArgs};
use support::scopes::{self, Grantee};
use support::{eventually, random_suffix, secret_data, KeyBuilder, TestCluster};

/// A client acting as `user` in `groups` (impersonated by the admin, as `kubectl --as`).
fn client_as(admin: &Config, user: &str, groups: &[&str]) -> Client {
    let mut config = admin.clone();
    config.auth_info.impersonate = Some(user.to_owned());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
    Client::try_from(config).expect("impersonating client")
}

/// A verifier watching the test's namespace, as the chart's verifier ServiceAccount.
struct Verifier {
    addr: SocketAddr,
    stop: CancellationToken,
    http: reqwest::Client,
}

impl Verifier {
    async fn start(cluster: &TestCluster) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let args = VerifierArgs {
            namespaces: vec![cluster.namespace.clone()],
            ..VerifierArgs::default()
        };
        tokio::spawn(serve(
            cluster.verifier_client.clone(),
            args,
            listener,
            stop.clone(),
        ));
        Self {
            addr,
            stop,
            http: reqwest::Client::new(),
        }
    }

    /// The status of a check requiring `scope`.
    async fn check(&self, token: &str, scope: &str) -> u16 {
        self.http
            .get(format!("http://{}/v1/check?scope={scope}", self.addr))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// Waits until a check requiring `scope` answers `expected`; returns how long it took.
    async fn wait_for(&self, token: &str, scope: &str, expected: u16) -> Duration {
        let started = Instant::now();
        eventually(
            &format!("the verifier to answer {expected} for {scope}"),
            || async { (self.check(token, scope).await == expected).then_some(()) },
        )
        .await;
        started.elapsed()
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `ScopesHeld` of a key: status, reason, message.
fn scopes_held(key: &AccessKey) -> Option<(String, String, String)> {
    key.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "ScopesHeld")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn granted(key: &AccessKey) -> Vec<String> {
    key.status
        .as_ref()
        .and_then(|s| s.granted_scopes.clone())
        .unwrap_or_default()
}

async fn wait_held(cluster: &TestCluster, name: &str, held: bool) -> AccessKey {
    let want = if held { "True" } else { "False" };
    cluster
        .wait_key(name, &format!("ScopesHeld={want}"), |k| {
            scopes_held(k).is_some_and(|(s, _, _)| s == want)
                && support::phase_of(k) == Some(Phase::Active)
        })
        .await
}

async fn token_of(cluster: &TestCluster, key: &AccessKey) -> String {
    let secret = cluster
        .secrets()
        .get(&key.spec.secret_name(&key.name_any()))
        .await
        .expect("the key's Secret");
    secret_data(&secret, DATA_TOKEN).expect("token")
}

/// Binds keywarden's self-service role (`keywarden-edit`) to `subject` in the namespace.
async fn allow_self_service(cluster: &TestCluster, name: &str, subject: serde_json::Value) {
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "keywarden-edit"},
        "subjects": [subject],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &binding)
        .await
        .expect("bind keywarden-edit");
}

/// The owner of the scenario: how to name it in a key, act as it and grant to it.
struct Owner {
    kind: OwnerKind,
    name: String,
    username: String,
    groups: Vec<String>,
}

impl Owner {
    fn grantee(&self) -> Grantee<'_> {
        match self.kind {
            OwnerKind::User => Grantee::User(&self.name),
            OwnerKind::ServiceAccount => Grantee::ServiceAccount(&self.name),
        }
    }

    fn key(&self, name: &str, scopes: &[&str]) -> AccessKey {
        let mut key = KeyBuilder::new(name, &self.name).scopes(scopes).build();
        key.spec.owner.kind = self.kind;
        key
    }

    fn client(&self, cluster: &TestCluster) -> Client {
        let groups: Vec<&str> = self.groups.iter().map(String::as_str).collect();
        client_as(&cluster.admin_config, &self.username, &groups)
    }
}

/// The scenario for one owner: holding `logs:view` only, their own `logs:manage` key
/// is refused at admission; a manager's is issued with `ScopesHeld=False` and serves
/// `logs:view` only; granting and removing the role flips both.
async fn owner_holding_view_only(cluster: &TestCluster, owner: &Owner) {
    let subject = match owner.kind {
        OwnerKind::User => {
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": owner.name})
        }
        OwnerKind::ServiceAccount => {
            json!({"kind": "ServiceAccount", "name": owner.name, "namespace": cluster.namespace})
        }
    };
    allow_self_service(cluster, "self-service", subject).await;
    scopes::grant(cluster, "logs-view", owner.grantee(), &["logs:view"]).await;

    let own = Api::<AccessKey>::namespaced(owner.client(cluster), &cluster.namespace)
        .create(&PostParams::default(), &owner.key("own", &["logs:manage"]))
        .await;
    let Err(kube::Error::Api(refused)) = own else {
        panic!("a self-service key beyond the owner's scopes must be refused: {own:?}");
    };
    assert_eq!(refused.code, 403);
    assert!(
        refused.message.contains("you do not hold logs:manage"),
        "{}",
        refused.message
    );

    let _controller = cluster.start_controller();
    let verifier = Verifier::start(cluster).await;
    // A manager (the admin) creates it for them.
    cluster
        .create_key(&owner.key("managed", &["logs:manage"]))
        .await;
    let key = wait_held(cluster, "managed", false).await;
    let (_, reason, message) = scopes_held(&key).unwrap();
    assert_eq!(reason, "ScopesNotHeld");
    assert!(message.contains("does not hold logs:manage"), "{message}");
    assert_eq!(
        granted(&key),
        ["logs:view"],
        "manage held as view serves view"
    );
    let token = token_of(cluster, &key).await;
    verifier.wait_for(&token, "logs:view", 200).await;
    assert_eq!(verifier.check(&token, "logs:manage").await, 403);
    eventually("a ScopesNotHeld Warning event", || async {
        let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(
            cluster.client.clone(),
            &cluster.namespace,
        )
        .list(&ListParams::default())
        .await
        .ok()?;
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ScopesNotHeld"))
            .then_some(())
    })
    .await;

    scopes::grant(cluster, "logs-manage", owner.grantee(), &["logs:manage"]).await;
    let key = wait_held(cluster, "managed", true).await;
    assert_eq!(granted(&key), ["logs:manage"]);
    let took = verifier.wait_for(&token, "logs:manage", 200).await;
    println!("granting the role reached the verifier in {took:?}");

    scopes::revoke(cluster, "logs-manage").await;
    let key = wait_held(cluster, "managed", false).await;
    assert_eq!(granted(&key), ["logs:view"]);
    let took = verifier.wait_for(&token, "logs:manage", 403).await;
    println!("removing the role reached the verifier in {took:?}");
    assert_eq!(verifier.check(&token, "logs:view").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_key_serves_only_the_scopes_the_user_holds_and_follows_their_roles() {
    let cluster = TestCluster::start().await;
    let name = format!("lena-{}", random_suffix());
    let owner = Owner {
        kind: OwnerKind::User,
        username: name.clone(),
        name,
        groups: vec!["system:authenticated".into()],
    };
    owner_holding_view_only(&cluster, &owner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_accounts_key_serves_only_the_scopes_it_holds_and_follows_its_roles() {
    let cluster = TestCluster::start().await;
    let ns = cluster.namespace.clone();
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "exporter"}})).unwrap();
    Api::<ServiceAccount>::namespaced(cluster.client.clone(), &ns)
        .create(&PostParams::default(), &account)
        .await
        .expect("create ServiceAccount");
    let owner = Owner {
        kind: OwnerKind::ServiceAccount,
        name: "exporter".into(),
        username: format!("system:serviceaccount:{ns}:exporter"),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
    };
    owner_holding_view_only(&cluster, &owner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rbac_change_for_an_unrelated_subject_writes_no_key_status() {
    let cluster = TestCluster::start().await;
    let suffix = random_suffix();
    let (alice, bob) = (format!("alice-{suffix}"), format!("bob-{suffix}"));
    scopes::grant(&cluster, "logs-view", Grantee::User(&alice), &["logs:view"]).await;
    let _controller = cluster.start_controller();
    cluster
        .create_key(
            &KeyBuilder::new("alices", &alice)
                .scopes(&["logs:view"])
                .build(),
        )
        .await;
    cluster
        .create_key(&KeyBuilder::new("bobs", &bob).scopes(&["logs:view"]).build())
        .await;
    let before = wait_held(&cluster, "alices", true).await;
    wait_held(&cluster, "bobs", false).await;

    // Unrelated: someone else gets the same role, and a role naming no scope changes.
    scopes::bind(&cluster, "zed-logs", "logs-view", Grantee::User("zed")).await;
    let unrelated: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(cluster.client.clone(), &cluster.namespace)
        .create(&PostParams::default(), &unrelated)
        .await
        .expect("create Role");
    scopes::bind(&cluster, "alice-pods", "pod-reader", Grantee::User(&alice)).await;
    // Barrier: a later change for bob is handled after those, in watch order.
    // Nothing but the controller writes these keys here: bob's flips come from RBAC alone.
    scopes::bind(&cluster, "bob-logs", "logs-view", Grantee::User(&bob)).await;
    wait_held(&cluster, "bobs", true).await;
    scopes::revoke(&cluster, "bob-logs").await;
    wait_held(&cluster, "bobs", false).await;

    let after = cluster.keys().get("alices").await.expect("alice's key");
    assert_eq!(
        after.resource_version(),
        before.resource_version(),
        "alice's key was written though nothing about her scopes changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_recorded_groups_are_theirs_and_grant_through_group_bindings() {
    let cluster = TestCluster::start().await;
    let ns = cluster.namespace.clone();
    let user = format!("gina-{}", random_suffix());
    allow_self_service(
        &cluster,
        "self-service",
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}),
    )
    .await;
    scopes::grant(
        &cluster,
        "team-logs",
        Grantee::Group("team-logs"),
        &["logs:view"],
    )
    .await;
    let groups = ["system:authenticated", "team-logs"];
    let gina = Api::<AccessKey>::namespaced(client_as(&cluster.admin_config, &user, &groups), &ns);
    let with_groups = |name: &str, groups: &[&str]| {
        let mut key = KeyBuilder::new(name, &user).scopes(&["logs:view"]).build();
        key.spec.owner_groups = groups.iter().map(|g| g.to_string()).collect();
        key
    };

    let claimed = gina
        .create(
            &PostParams::default(),
            &with_groups("claims", &["system:authenticated", "admins"]),
        )
        .await;
    let Err(kube::Error::Api(refused)) = claimed else {
        panic!("groups the owner is not in must be refused: {claimed:?}");
    };
    assert!(
        refused
            .message
            .contains("spec.ownerGroups must be exactly your groups"),
        "{}",
        refused.message
    );
    let for_her = cluster
        .keys()
        .create(&PostParams::default(), &with_groups("for-her", &groups))
        .await;
    let Err(kube::Error::Api(refused)) = for_her else {
        panic!("only the owner records their groups: {for_her:?}");
    };
    assert!(
        refused.message.contains("only they may set or change it"),
        "{}",
        refused.message
    );

    let _controller = cluster.start_controller();
    gina.create(&PostParams::default(), &with_groups("own", &groups))
        .await
        .expect("the owner records their own groups");
    let key = wait_held(&cluster, "own", true).await;
    assert_eq!(granted(&key), ["logs:view"]);

    // Leaving the group in the identity provider reaches the key when she next writes it.
    let without = Api::<AccessKey>::namespaced(
        client_as(&cluster.admin_config, &user, &["system:authenticated"]),
        &ns,
    );
    let stale = without
        .patch(
            "own",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "mine"}})),
        )
        .await;
    assert!(stale.is_err(), "a write with stale groups is refused");
    without
        .patch(
            "own",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ownerGroups": ["system:authenticated"]}})),
        )
        .await
        .expect("the owner refreshes her groups");
    let key = wait_held(&cluster, "own", false).await;
    assert!(granted(&key).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_reviews_only_what_changed() {
    let cluster = TestCluster::start().await;
    let suffix = random_suffix();
    let (alice, bob) = (format!("alice-{suffix}"), format!("bob-{suffix}"));
    scopes::grant(&cluster, "logs-view", Grantee::User(&alice), &["logs:view"]).await;
    let controller = cluster.start_controller();
    cluster
        .create_key(
            &KeyBuilder::new("alices", &alice)
                .scopes(&["logs:view"])
                .build(),
        )
        .await;
    cluster
        .create_key(&KeyBuilder::new("bobs", &bob).scopes(&["logs:view"]).build())
        .await;
    let alices = wait_held(&cluster, "alices", true).await;
    wait_held(&cluster, "bobs", false).await;
    controller.stop().await;

    scopes::bind(&cluster, "bob-logs", "logs-view", Grantee::User(&bob)).await;
    let probes = free_address();
    let _controller = support::RunningController::start(
        cluster.controller_client.clone(),
        keywarden::controller::ControllerArgs {
            probe_addr: probes,
            ..support::test_args()
        },
    );
    wait_held(&cluster, "bobs", true).await;
    let after = cluster.keys().get("alices").await.expect("alice's key");
    assert_eq!(
        after.resource_version(),
        alices.resource_version(),
        "alice's review stands: nothing it depends on changed"
    );
    let metrics = reqwest::get(format!("http://{probes}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let reviews = metrics
        .lines()
        .find_map(|l| l.strip_prefix("keywarden_scope_access_reviews_total "))
        .expect("the SubjectAccessReview counter");
    assert_eq!(
        reviews.trim(),
        "1",
        "one review, for bob's changed grant only"
    );
}

/// A loopback address with a port free at the time of the call.
fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}
