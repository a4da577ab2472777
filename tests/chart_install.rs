//! `helm install`, `helm upgrade` and `helm uninstall` of the chart against devcluster (or, with
//! `KEYWARDEN_TEST_KUBECONFIG`, a real cluster, under unique names), checked through the
//! Kubernetes API: what the chart creates, changes on upgrade, and leaves behind.
//!
//! helm comes from `scripts/ensure-kube-tools.sh` (or `.cache/tools/bin`, or PATH); when it is
//! missing the test is skipped loudly, or fails when `KEYWARDEN_REQUIRE_TOOLS` is set (as in CI).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use devcluster::DevCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keywarden::api::{AccessKeyPolicy, DEFAULT_POLICY_ANNOTATION};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use tokio::process::Command;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn missing_tool(tool: &str, hint: &str) {
    if std::env::var_os("KEYWARDEN_REQUIRE_TOOLS").is_some() {
        panic!("{tool} is required (KEYWARDEN_REQUIRE_TOOLS is set) but missing: {hint}");
    }
    eprintln!("SKIPPED: {tool} not found ({hint}); set KEYWARDEN_REQUIRE_TOOLS=1 to fail instead");
}

fn executable(path: PathBuf) -> Option<PathBuf> {
    path.is_file().then_some(path)
}

/// Directory printed (last line) by `scripts/ensure-kube-tools.sh`, when that script exists.
fn kube_tools_dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = repo_root().join("scripts/ensure-kube-tools.sh");
        let output = std::process::Command::new("bash")
            .arg(executable(script)?)
            .output()
            .ok()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = stdout.lines().last().map(|line| PathBuf::from(line.trim()));
        output.status.success().then_some(dir).flatten()
    })
    .as_ref()
}

/// Finds helm: `KEYWARDEN_HELM`, the kube tools directory, `.cache/tools/bin`, then PATH.
fn helm_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::var_os("KEYWARDEN_HELM")
        .map(PathBuf::from)
        .and_then(executable)
        .or_else(|| kube_tools_dir().and_then(|dir| executable(dir.join("helm"))))
        .or_else(|| executable(repo_root().join(".cache/tools/bin/helm")))
        .or_else(|| std::env::split_paths(&path).find_map(|dir| executable(dir.join("helm"))))
}

/// Finds kubectl: `KEYWARDEN_KUBECTL`, the kube tools directory, `.cache/tools/bin`, then PATH.
fn kubectl_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::var_os("KEYWARDEN_KUBECTL")
        .map(PathBuf::from)
        .and_then(executable)
        .or_else(|| kube_tools_dir().and_then(|dir| executable(dir.join("kubectl"))))
        .or_else(|| executable(repo_root().join(".cache/tools/bin/kubectl")))
        .or_else(|| std::env::split_paths(&path).find_map(|dir| executable(dir.join("kubectl"))))
}

/// Where the chart is installed, and the names it gets there.
struct Target {
    /// Kept alive for the test; `None` on a real cluster.
    cluster: Option<DevCluster>,
    home: tempfile::TempDir,
    client: Client,
    release: String,
    namespace: String,
    /// A namespace the upgrade confines the controller to.
    team: String,
    policy: String,
}

impl Target {
    /// devcluster, or the cluster of `KEYWARDEN_TEST_KUBECONFIG` with names no one else uses.
    async fn start() -> Self {
        let home = tempfile::tempdir().expect("temp dir");
        let kubeconfig = home.path().join("kubeconfig");
        if let Some(real) = std::env::var_os("KEYWARDEN_TEST_KUBECONFIG") {
            std::fs::copy(&real, &kubeconfig).expect("copy KEYWARDEN_TEST_KUBECONFIG");
            let config = Kubeconfig::read_from(&kubeconfig).expect("readable kubeconfig");
            let config = Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
                .await
                .expect("usable kubeconfig");
            let suffix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_millis()
                % 1_000_000;
            let release = format!("kw{suffix}");
            return Self {
                cluster: None,
                home,
                client: Client::try_from(config).expect("kube client"),
                namespace: format!("{release}-system"),
                team: format!("{release}-team"),
                policy: format!("{release}-default"),
                release,
            };
        }
        let cluster = DevCluster::start().await.expect("devcluster starts");
        cluster
            .write_kubeconfig(&kubeconfig)
            .expect("write kubeconfig");
        Self {
            client: cluster.client().expect("kube client"),
            cluster: Some(cluster),
            home,
            release: "kw".into(),
            namespace: "keywarden-system".into(),
            team: "team-a".into(),
            policy: "default".into(),
        }
    }

    /// The name the chart gives one of its objects.
    fn name(&self, suffix: &str) -> String {
        format!("{}-keywarden-{suffix}", self.release)
    }

    /// Runs `helm <command> <release> [chart] --namespace <namespace> <args>`, asserting success.
    async fn helm(&self, binary: &Path, command: &str, args: &[String]) -> String {
        let home = self.home.path();
        let mut helm = Command::new(binary);
        helm.args([command, &self.release]);
        if matches!(command, "install" | "upgrade" | "template") {
            helm.arg(repo_root().join("charts/keywarden"))
                .arg(format!("--set=defaultPolicy.name={}", self.policy));
            if self.cluster.is_some() {
                // why: devcluster serves only /openapi/v3, and helm validates against
                // /openapi/v2; tests/chart.rs validates the same manifests with
                // kubernetes-validate instead.
                helm.arg("--disable-openapi-validation");
                // why: devcluster does not serve policy/v1 yet; the PodDisruptionBudget is
                // checked in tests/chart.rs, and here on a real cluster.
                helm.arg("--set=verifier.podDisruptionBudget.enabled=false");
            }
        }
        let output = helm
            .args(["--namespace", &self.namespace])
            .args(args)
            .arg("--kubeconfig")
            .arg(home.join("kubeconfig"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .await
            .expect("run helm");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "helm {command} {args:?} failed with {}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Runs kubectl against the target with `args`, asserting success.
    async fn kubectl(&self, binary: &Path, args: &[&str]) -> String {
        let home = self.home.path();
        let output = Command::new(binary)
            .arg("--kubeconfig")
            .arg(home.join("kubeconfig"))
            .args(args)
            .env("KUBECACHEDIR", home.join("kube-cache"))
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

    /// Renders the chart with `args` into a file and applies it with kubectl.
    async fn apply_render(&self, helm: &Path, kubectl: &Path, args: &[String]) {
        let rendered = self.helm(helm, "template", args).await;
        let file = self.home.path().join("rendered.yaml");
        std::fs::write(&file, rendered).expect("write the render");
        let file = file.to_str().expect("UTF-8 path");
        self.kubectl(kubectl, &["apply", "-f", file]).await;
    }

    async fn replicas(&self, component: &str) -> Option<i32> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let deployment = deployments
            .get(&self.name(component))
            .await
            .expect("Deployment exists");
        deployment.spec.replicas
    }

    async fn max_keys_per_owner(&self) -> u32 {
        let policies: Api<AccessKeyPolicy> = Api::all(self.client.clone());
        let policy = policies
            .get(&self.policy)
            .await
            .expect("default policy exists");
        let annotations = policy.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations
                .get(DEFAULT_POLICY_ANNOTATION)
                .map(String::as_str),
            Some("true")
        );
        policy.spec.max_keys_per_owner
    }
}

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .expect("API call succeeds")
        .is_some()
}

// why: helm stores its release record with a protobuf-encoded Secret create, which devcluster
// cannot decode yet ("the object provided is unrecognized"); run with `-- --ignored` against
// KEYWARDEN_TEST_KUBECONFIG, or on devcluster once it accepts that request.
#[ignore = "devcluster cannot decode helm's protobuf release Secret yet"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_upgrades_and_uninstalls_the_chart() {
    let Some(helm) = helm_binary() else {
        missing_tool("helm", "run scripts/ensure-kube-tools.sh");
        return;
    };
    let target = Target::start().await;
    let client = &target.client;

    target
        .helm(&helm, "install", &["--create-namespace".into()])
        .await;

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in ["accesskeys.keywarden.io", "accesskeypolicies.keywarden.io"] {
        assert!(exists(&crds, crd).await, "helm installed the CRD {crd}");
    }
    assert_eq!(target.replicas("controller").await, Some(2));
    assert_eq!(target.replicas("verifier").await, Some(2));
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &target.namespace);
    if target.cluster.is_none() {
        assert!(exists(&budgets, &target.name("verifier")).await);
    }
    let services: Api<Service> = Api::namespaced(client.clone(), &target.namespace);
    assert!(exists(&services, &target.name("verifier")).await);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &target.namespace);
    assert!(exists(&accounts, &target.name("controller")).await);
    assert!(exists(&accounts, &target.name("verifier")).await);
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let verifier_role = cluster_roles
        .get(&target.name("verifier"))
        .await
        .expect("verifier ClusterRole");
    let verifier_resources: Vec<String> = verifier_role
        .rules
        .unwrap_or_default()
        .into_iter()
        .flat_map(|rule| rule.resources.unwrap_or_default())
        .collect();
    assert_eq!(verifier_resources, ["accesskeys", "accesskeys/status"]);
    assert!(exists(&cluster_roles, &target.name("controller-keys")).await);
    assert_eq!(target.max_keys_per_owner().await, 5);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let team: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": target.team}}))
            .expect("namespace object");
    namespaces
        .create(&PostParams::default(), &team)
        .await
        .expect("create the team namespace");
    target
        .helm(
            &helm,
            "upgrade",
            &[
                "--set=verifier.replicas=3".into(),
                "--set=defaultPolicy.spec.maxKeysPerOwner=7".into(),
                format!("--set=watchNamespaces={{{}}}", target.team),
            ],
        )
        .await;

    assert_eq!(target.replicas("verifier").await, Some(3));
    assert_eq!(target.replicas("controller").await, Some(2));
    assert_eq!(target.max_keys_per_owner().await, 7);
    assert!(
        !exists(&cluster_roles, &target.name("controller-keys")).await,
        "the upgrade replaced cluster-wide Secret access"
    );
    let team_roles: Api<Role> = Api::namespaced(client.clone(), &target.team);
    assert!(exists(&team_roles, &target.name("controller-keys")).await);
    assert!(exists(&team_roles, &target.name("verifier")).await);
    let history = target.helm(&helm, "history", &[]).await;
    assert_eq!(
        history.lines().count(),
        3,
        "a header and two revisions:\n{history}"
    );

    target.helm(&helm, "uninstall", &[]).await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &target.namespace);
    for component in ["controller", "verifier"] {
        let name = target.name(component);
        assert!(!exists(&deployments, &name).await, "{name} was uninstalled");
    }
    assert!(!exists(&cluster_roles, &target.name("verifier")).await);
    assert!(!exists(&team_roles, &target.name("controller-keys")).await);
    let policies: Api<AccessKeyPolicy> = Api::all(client.clone());
    assert!(!exists(&policies, &target.policy).await);
    for crd in ["accesskeys.keywarden.io", "accesskeypolicies.keywarden.io"] {
        assert!(
            exists(&crds, crd).await,
            "helm keeps CRDs (and every key) on uninstall"
        );
    }

    for namespace in [&target.team, &target.namespace] {
        namespaces
            .delete(namespace, &DeleteParams::default())
            .await
            .expect("delete a test namespace");
    }
}

/// What `helm install` and `helm upgrade` do, done with `kubectl apply` of `helm template`: every
/// object of the chart is accepted by the API server, including the default policy against the
/// CRD's schema, and an upgrade's changes land in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_chart_applies_and_upgrades_in_place() {
    let (Some(helm), Some(kubectl)) = (helm_binary(), kubectl_binary()) else {
        missing_tool("helm and kubectl", "run scripts/ensure-kube-tools.sh");
        return;
    };
    let target = Target::start().await;
    let client = &target.client;
    let crds = repo_root().join("charts/keywarden/crds");
    let crds = crds.to_str().expect("UTF-8 path");
    target
        .kubectl(&kubectl, &["apply", "--server-side", "-f", crds])
        .await;
    target
        .kubectl(
            &kubectl,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=10s",
                "crd/accesskeys.keywarden.io",
                "crd/accesskeypolicies.keywarden.io",
            ],
        )
        .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in [&target.namespace, &target.team] {
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                .expect("namespace object");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create a test namespace");
    }

    target.apply_render(&helm, &kubectl, &[]).await;

    assert_eq!(target.replicas("controller").await, Some(2));
    assert_eq!(target.replicas("verifier").await, Some(2));
    assert_eq!(target.max_keys_per_owner().await, 5);
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    assert!(exists(&cluster_roles, &target.name("controller-keys")).await);
    let roles: Api<Role> = Api::namespaced(client.clone(), &target.namespace);
    assert!(exists(&roles, &target.name("leader-election")).await);

    target
        .apply_render(
            &helm,
            &kubectl,
            &[
                "--set=verifier.replicas=3".into(),
                "--set=defaultPolicy.spec.maxKeysPerOwner=7".into(),
                format!("--set=watchNamespaces={{{}}}", target.team),
            ],
        )
        .await;

    assert_eq!(target.replicas("verifier").await, Some(3));
    assert_eq!(target.max_keys_per_owner().await, 7);
    let team_roles: Api<Role> = Api::namespaced(client.clone(), &target.team);
    assert!(exists(&team_roles, &target.name("controller-keys")).await);
    assert!(exists(&team_roles, &target.name("verifier")).await);

    let rendered = target.home.path().join("rendered.yaml");
    let rendered = rendered.to_str().expect("UTF-8 path");
    target
        .kubectl(&kubectl, &["delete", "--wait=false", "-f", rendered])
        .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &target.namespace);
    assert!(!exists(&deployments, &target.name("verifier")).await);
    if target.cluster.is_none() {
        for namespace in [&target.team, &target.namespace] {
            namespaces
                .delete(namespace, &DeleteParams::default())
                .await
                .expect("delete a test namespace");
        }
    }
}
