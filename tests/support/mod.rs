//! Shared helpers of the controller tests: a cluster per test, builders, bounded waits.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use keywarden::api::{
    AccessKey, AccessKeyPolicy, AccessKeyPolicySpec, AccessKeySpec, KeyOwner, OwnerKind, Phase,
    SecretTemplate, SecretType,
};
use keywarden::cli::access_control;
use keywarden::controller::{self, ControllerArgs};

pub mod scopes;
mod tracking;
#[allow(unused_imports)]
pub use tracking::{assert_issued_exactly_once, SecretWrites};

/// Upper bound of every wait: generous, it only bounds waiting on a noisy shared machine.
pub const WAIT: Duration = Duration::from_secs(60);

/// A cluster to test against: devcluster in-process, or a real one via `KEYWARDEN_TEST_KUBECONFIG`.
pub struct TestCluster {
    /// The admin (cluster-admin): sets up what a test needs.
    pub client: Client,
    /// The chart's controller ServiceAccount, with the chart's RBAC: the controller runs as it.
    pub controller_client: Client,
    /// The chart's verifier ServiceAccount, with the chart's RBAC.
    pub verifier_client: Client,
    pub namespace: String,
    /// The admin's kubeconfig, for child processes.
    kubeconfig: kube::config::Kubeconfig,
    /// The admin's client configuration, to build more clients (on other runtimes).
    pub admin_config: kube::Config,
    /// The controller ServiceAccount's client configuration.
    pub controller_config: kube::Config,
    _dev: Option<devcluster::DevCluster>,
}

impl TestCluster {
    /// Starts devcluster (or connects to the real cluster), installs the CRDs and keywarden's
    /// RBAC and admission policies (deploy/access-control.yaml), makes a namespace.
    pub async fn start() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let (kubeconfig, dev) = match std::env::var("KEYWARDEN_TEST_KUBECONFIG") {
            Ok(path) => (
                kube::config::Kubeconfig::read_from(path).expect("kubeconfig"),
                None,
            ),
            Err(_) => {
                let dev = devcluster::DevCluster::start()
                    .await
                    .expect("devcluster starts");
                (dev.kubeconfig().expect("devcluster kubeconfig"), Some(dev))
            }
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &Default::default())
            .await
            .expect("kube config");
        let client = Client::try_from(config.clone()).expect("client");
        install_crds(&client).await;
        access_control::install(&client)
            .await
            .expect("installing keywarden's RBAC and admission policies");
        let controller_config = access_control::service_account_config(
            &client,
            &config,
            access_control::CONTROLLER_SERVICE_ACCOUNT,
        )
        .await
        .expect("controller ServiceAccount config");
        let controller_client =
            Client::try_from(controller_config.clone()).expect("controller client");
        let verifier_client = access_control::service_account_client(
            &client,
            &config,
            access_control::VERIFIER_SERVICE_ACCOUNT,
        )
        .await
        .expect("verifier ServiceAccount client");
        let namespace = format!("kw-test-{}", random_suffix());
        Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        name: Some(namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    ..Namespace::default()
                },
            )
            .await
            .expect("create namespace");
        Self {
            client,
            controller_client,
            verifier_client,
            namespace,
            kubeconfig,
            admin_config: config,
            controller_config,
            _dev: dev,
        }
    }

    /// Writes a kubeconfig acting as the chart's controller ServiceAccount into `dir`, for
    /// `keywarden controller` child processes.
    pub async fn write_controller_kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let token = access_control::service_account_token(
            &self.client,
            access_control::CONTROLLER_SERVICE_ACCOUNT,
        )
        .await
        .expect("controller token");
        let mut kubeconfig = self.kubeconfig.clone();
        let context = kubeconfig
            .current_context
            .clone()
            .expect("a current context");
        let user = kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == context)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.user.clone())
            .expect("the current context's user");
        for named in &mut kubeconfig.auth_infos {
            if Some(&named.name) == user.as_ref() {
                named.auth_info = Some(
                    serde_json::from_value(serde_json::json!({ "token": token }))
                        .expect("token credentials"),
                );
            }
        }
        let path = dir.join("controller.kubeconfig");
        std::fs::write(
            &path,
            serde_yaml::to_string(&kubeconfig).expect("kubeconfig YAML"),
        )
        .expect("write kubeconfig");
        path
    }

    /// Lets the controller's ServiceAccount hold leader-election Leases in `namespace` (the
    /// chart grants them in its own namespace only), for tests that elect in their namespace.
    pub async fn allow_controller_leases_in(&self, namespace: &str) {
        let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "keywarden-leader-election"},
            "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch"]}],
        }))
        .expect("Role");
        let binding: k8s_openapi::api::rbac::v1::RoleBinding =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "keywarden-leader-election"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "keywarden-leader-election"},
                "subjects": [{"kind": "ServiceAccount", "name": access_control::CONTROLLER_SERVICE_ACCOUNT, "namespace": access_control::NAMESPACE}],
            }))
            .expect("RoleBinding");
        Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &role)
            .await
            .expect("create leader-election Role");
        Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &binding)
            .await
            .expect("create leader-election RoleBinding");
    }

    /// This test's keys as the controller sees and writes them (status writes are the
    /// controller's alone: the admission policy refuses them from anyone else).
    pub fn controller_keys(&self) -> Api<AccessKey> {
        Api::namespaced(self.controller_client.clone(), &self.namespace)
    }

    /// The API server URL of devcluster (for child processes); `None` against a real cluster.
    pub fn url(&self) -> Option<String> {
        self._dev.as_ref().map(|dev| dev.url().to_string())
    }

    /// Writes a kubeconfig for child processes into `dir`; `None` against a real cluster.
    pub fn write_kubeconfig(&self, dir: &std::path::Path) -> Option<std::path::PathBuf> {
        let path = dir.join("kubeconfig");
        self._dev
            .as_ref()?
            .write_kubeconfig(&path)
            .expect("write kubeconfig");
        Some(path)
    }

    /// Fault injection of devcluster; `None` against a real cluster.
    pub fn faults(&self) -> Option<devcluster::Faults> {
        self._dev.as_ref().map(|dev| dev.faults())
    }

    /// The devcluster handle; `None` against a real cluster.
    pub fn dev(&self) -> Option<&devcluster::DevCluster> {
        self._dev.as_ref()
    }

    /// Requests for single objects (not lists or watches) of `resources` served so far, by
    /// `verb resource`; `None` against a real cluster, which does not count them for us.
    pub fn object_requests(&self, resources: &[&str]) -> Option<BTreeMap<String, u64>> {
        let mut counted = BTreeMap::new();
        for c in self.dev()?.request_counts() {
            let per_object = !matches!(c.verb.as_str(), "list" | "watch");
            if per_object && resources.contains(&c.resource.as_str()) {
                *counted
                    .entry(format!("{} {}", c.verb, c.resource))
                    .or_insert(0) += c.count;
            }
        }
        Some(counted)
    }

    pub fn keys(&self) -> Api<AccessKey> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn policies(&self) -> Api<AccessKeyPolicy> {
        Api::all(self.client.clone())
    }

    /// Starts an in-process controller (no leader election, cheap argon2 parameters).
    pub fn start_controller(&self) -> RunningController {
        RunningController::start(self.controller_client.clone(), test_args())
    }

    /// Creates a key.
    pub async fn create_key(&self, key: &AccessKey) -> AccessKey {
        self.keys()
            .create(&PostParams::default(), key)
            .await
            .expect("create AccessKey")
    }

    /// Creates a policy with a name unique to this test.
    pub async fn create_policy(&self, policy: &AccessKeyPolicy) -> AccessKeyPolicy {
        self.policies()
            .create(&PostParams::default(), policy)
            .await
            .expect("create AccessKeyPolicy")
    }

    /// Waits until key `name` satisfies `pred`.
    pub async fn wait_key(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&AccessKey) -> bool,
    ) -> AccessKey {
        wait_for(&self.keys(), name, what, pred).await
    }

    /// Waits until key `name` is in `phase`.
    pub async fn wait_phase(&self, name: &str, phase: Phase) -> AccessKey {
        self.wait_key(name, &format!("phase {phase:?}"), |k| {
            phase_of(k) == Some(phase)
        })
        .await
    }
}

/// Controller arguments for tests: ephemeral probe port, no lease, light argon2id.
pub fn test_args() -> ControllerArgs {
    ControllerArgs {
        probe_addr: "127.0.0.1:0".parse().expect("addr"),
        disable_leader_election: true,
        // why: the chart's RBAC lets the controller keep its Lease (and its record key) in its
        // own namespace only.
        leader_election_namespace: access_control::NAMESPACE.into(),
        argon2_memory_kib: 1024,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        ..ControllerArgs::default()
    }
}

/// An in-process controller, stopped on drop.
pub struct RunningController {
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RunningController {
    pub fn start(client: Client, args: ControllerArgs) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(controller::run(client, args, stop.clone()));
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stops the controller and waits for it to finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("controller task")
                .expect("controller ran");
        }
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // why: devcluster and everything in it go away with the test; a real cluster keeps them.
        if self._dev.is_some() {
            return;
        }
        let Ok(kubeconfig) = std::env::var("KEYWARDEN_TEST_KUBECONFIG") else {
            return;
        };
        let namespace = self.namespace.clone();
        // why: drop cannot await, and the test's runtime is blocked in this drop, so the delete
        // runs on a thread with its own runtime and its own client (a client's connection
        // task lives on the runtime that created it).
        let deleting = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let config = kube::Config::from_custom_kubeconfig(
                    kube::config::Kubeconfig::read_from(kubeconfig)?,
                    &Default::default(),
                )
                .await?;
                let namespaces: Api<Namespace> = Api::all(kube::Client::try_from(config)?);
                let params = DeleteParams::default();
                let delete = namespaces.delete(&namespace, &params);
                tokio::time::timeout(Duration::from_secs(10), delete).await??;
                anyhow::Ok(())
            })
        });
        match deleting.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("leaving test namespace behind: {error:#}"),
            Err(_) => eprintln!("leaving test namespace behind: the delete panicked"),
        }
    }
}

async fn install_crds(client: &Client) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    // why: applied, not created, so a real cluster holding an older keywarden CRD gets this one.
    let params = PatchParams::apply("keywarden-tests").force();
    for crd in [AccessKey::crd(), AccessKeyPolicy::crd()] {
        let name = crd.metadata.name.clone().expect("CRD name");
        crds.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|err| panic!("installing CRD {name}: {err}"));
    }
    // why: a CRD's resources are served only once it is established.
    for name in ["accesskeys.keywarden.io", "accesskeypolicies.keywarden.io"] {
        wait_for(&crds, name, "CRD established", |crd| {
            crd.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        })
        .await;
    }
}

/// A short random suffix for names.
pub fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", std::process::id() % 4096, nanos)
}

/// Polls `name` until `pred` holds; panics with the last seen object after [`WAIT`].
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, pred: impl Fn(&K) -> bool) -> K
where
    K: Clone + DeserializeOwned + Debug,
{
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        match api.get_opt(name).await {
            Ok(Some(obj)) if pred(&obj) => return obj,
            Ok(seen) => last = seen,
            Err(err) => tracing::debug!(error = %err, "get failed while waiting"),
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {what} on {name}; last seen: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns `Some`; panics with `what` after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn phase_of(key: &AccessKey) -> Option<Phase> {
    key.status.as_ref().and_then(|s| s.phase)
}

pub fn condition(key: &AccessKey, type_: &str) -> Option<(String, String)> {
    key.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Builds an AccessKey for tests.
pub struct KeyBuilder(AccessKey);

impl KeyBuilder {
    pub fn new(name: &str, owner: &str) -> Self {
        Self(AccessKey::new(
            name,
            AccessKeySpec {
                owner: KeyOwner {
                    kind: OwnerKind::User,
                    name: owner.into(),
                },
                display_name: None,
                description: None,
                scopes: vec![],
                owner_groups: Vec::new(),
                allowed_origins: vec![],
                active: true,
                rotate_generation: 0,
                reactivate_generation: 0,
                policy_name: None,
                rollout: None,
                secret: SecretTemplate::default(),
            },
        ))
    }

    pub fn policy(mut self, name: &str) -> Self {
        self.0.spec.policy_name = Some(name.into());
        self
    }

    pub fn basic_auth(mut self) -> Self {
        self.0.spec.secret.type_ = SecretType::BasicAuth;
        self
    }

    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.0.spec.scopes = scopes.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn secret_label(mut self, key: &str, value: &str) -> Self {
        self.0.spec.secret.labels.insert(key.into(), value.into());
        self
    }

    pub fn build(self) -> AccessKey {
        self.0
    }
}

/// Builds an AccessKeyPolicy for tests; timers default to never.
pub struct PolicyBuilder(AccessKeyPolicy);

impl PolicyBuilder {
    pub fn new(name: &str) -> Self {
        Self(AccessKeyPolicy::new(
            name,
            AccessKeyPolicySpec {
                expire_after: "0".into(),
                deactivate_after_unused: "0".into(),
                rotation_grace_period: "0".into(),
                ..AccessKeyPolicySpec::default()
            },
        ))
    }

    pub fn max_keys(mut self, max: u32) -> Self {
        self.0.spec.max_keys_per_owner = max;
        self
    }

    pub fn expire_after(mut self, d: &str) -> Self {
        self.0.spec.expire_after = d.into();
        self
    }

    pub fn unused_after(mut self, d: &str) -> Self {
        self.0.spec.deactivate_after_unused = d.into();
        self
    }

    pub fn grace(mut self, d: &str) -> Self {
        self.0.spec.rotation_grace_period = d.into();
        self
    }

    pub fn rotate_before_expiry(mut self, d: &str) -> Self {
        self.0.spec.rotate_before_expiry = d.into();
        self
    }

    pub fn allowed_scopes(mut self, scopes: &[&str]) -> Self {
        self.0.spec.allowed_scopes = scopes.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn select_namespaces(mut self, labels: &[(&str, &str)]) -> Self {
        self.0.spec.namespace_selector = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..Default::default()
            },
        );
        self
    }

    pub fn build(self) -> AccessKeyPolicy {
        self.0
    }
}

/// The string value of a Secret data key.
pub fn secret_data(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Resident set size of process `pid` in KiB (Linux).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}

/// User plus system CPU clock ticks used so far by process `pid` (Linux).
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // why: utime and stime are fields 14 and 15 of /proc/pid/stat; index from after "(comm)".
    Ok(field(11) + field(12))
}

/// Matches one write of a key's path: the Secret (`secrets`) or the key's status (`accesskeys`).
pub fn write_matcher(
    verb: &str,
    resource: &str,
    namespace: &str,
    key: &str,
) -> devcluster::RequestMatch {
    let matcher = devcluster::RequestMatch::new(verb, resource).namespace(namespace);
    // why: a create is a POST to the collection; its URL carries no name to match on.
    match (verb, resource) {
        ("create", _) => matcher,
        (_, "secrets") => matcher.name(&format!("{key}-access-key")),
        _ => matcher.name(key),
    }
}

/// Creates `count` keys named `{prefix}-{i:06}`, `at_once` requests at a time, each its own
/// owner (so that the per-owner limit does not cap them), as a bulk apply would.
pub async fn create_keys_at_once(
    keys: &Api<AccessKey>,
    prefix: &str,
    count: usize,
    at_once: usize,
) -> kube::Result<()> {
    use futures::{stream, StreamExt, TryStreamExt};

    stream::iter(0..count)
        .map(|i| async move {
            let name = format!("{prefix}-{i:06}");
            keys.create(
                &PostParams::default(),
                &KeyBuilder::new(&name, &name).build(),
            )
            .await
        })
        .buffer_unordered(at_once)
        .try_for_each(|_| async { Ok(()) })
        .await
}

/// How long [`all_active`] waits for the next key to become Active before it gives up.
const ACTIVE_STALL: Duration = Duration::from_secs(120);

/// Waits until `expected` keys are Active, following a watch (a poll would list every key).
/// Fails once no further key has become Active for [`ACTIVE_STALL`], so that a controller
/// failing every reconcile ends a benchmark with an error instead of leaving it waiting.
pub async fn all_active(keys: Api<AccessKey>, expected: usize) -> anyhow::Result<()> {
    use futures::{StreamExt, TryStreamExt};
    use kube::runtime::{watcher, WatchStreamExt};
    use kube::ResourceExt;

    let mut active = std::collections::HashSet::new();
    let mut changes = watcher(keys, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut progress_by = tokio::time::Instant::now() + ACTIVE_STALL;
    loop {
        let Ok(next) = tokio::time::timeout_at(progress_by, changes.try_next()).await else {
            anyhow::bail!(
                "{} of {expected} keys Active, and none more for {} s: is the controller failing its reconciles?",
                active.len(),
                ACTIVE_STALL.as_secs()
            );
        };
        let Some(key) = next? else {
            anyhow::bail!("the AccessKey watch ended")
        };
        if phase_of(&key) == Some(Phase::Active) {
            if active.insert(key.name_any()) {
                progress_by = tokio::time::Instant::now() + ACTIVE_STALL;
            }
        } else {
            active.remove(&key.name_any());
        }
        if active.len() >= expected {
            return Ok(());
        }
    }
}

/// How much each count grew between two samples (requests, CPU ticks); counts that did not
/// grow are left out.
pub fn increase_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, &n)| {
            (
                name.clone(),
                n.saturating_sub(before.get(name).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}
