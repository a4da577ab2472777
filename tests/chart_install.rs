//! `helm install`, `helm upgrade` and `helm uninstall` of the chart against devcluster (or, with
//! `KEYWARDEN_TEST_KUBECONFIG`, a real cluster, under unique names), checked through the
//! Kubernetes API: what the chart creates, changes on upgrade, and leaves behind.
//!
//! helm comes from `scripts/ensure-kube-tools.sh` (or `.cache/tools/bin`, or PATH); when it is
//! missing the test is skipped loudly, or fails when `KEYWARDEN_REQUIRE_TOOLS` is set (as in CI).

mod tools;

use std::collections::BTreeMap;
use std::path::Path;

use devcluster::DevCluster;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keywarden::api::{AccessKeyPolicy, DEFAULT_POLICY_ANNOTATION};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde::Deserialize;
use tokio::process::Command;
use tools::{helm_binary, kubectl_binary, missing_tool, repo_root};

/// Where the chart is installed, and the names it gets there.
struct Target {
    /// Kept alive for the test; `None` on a real cluster.
    cluster: Option<DevCluster>,
    home: tempfile::TempDir,
    client: Client,
    release: String,
    namespace: String,
    /// A namespace the upgrade confines the verifier to.
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

    /// Runs `helm <command> [release] [chart] --namespace <namespace> <args>`, asserting success;
    /// returns its standard output. `command` may be two words, such as `get manifest`.
    async fn helm(&self, binary: &Path, command: &str, args: &[String]) -> String {
        let home = self.home.path();
        let mut helm = Command::new(binary);
        helm.args(command.split(' '));
        // why: `helm list` lists the namespace's releases and takes no release name.
        if command != "list" {
            helm.arg(&self.release);
        }
        if matches!(command, "install" | "upgrade" | "template") {
            helm.arg(repo_root().join("charts/keywarden"))
                .arg(format!("--set=defaultPolicy.name={}", self.policy));
        }
        // why: on a shared cluster the CRDs may already be there, applied by another suite or by
        // `kubectl apply` (as the chart README says to do before upgrades); helm's server-side
        // apply must take their fields over instead of failing on the other field manager.
        if matches!(command, "install" | "upgrade") {
            helm.arg("--force-conflicts");
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

    /// The release as `helm list` shows it (`name`, `revision`, `status`, `chart`, ...).
    async fn listed_releases(&self, helm: &Path) -> Vec<serde_json::Value> {
        let listed = self.helm(helm, "list", &["--output=json".into()]).await;
        serde_json::from_str(&listed).expect("helm list prints a JSON array")
    }

    /// Names of the Secrets in which helm records the release's revisions.
    async fn release_records(&self) -> Vec<String> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("owner=helm,name={}", self.release);
        let mut names: Vec<String> = secrets
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .expect("list Secrets")
            .items
            .into_iter()
            .filter_map(|secret| secret.metadata.name)
            .collect();
        names.sort();
        names
    }

    /// Which objects of a manifest exist, as kubectl `kind/name` references.
    async fn existing_objects(&self, kubectl: &Path, manifest: &Path) -> Vec<String> {
        let manifest = manifest.to_str().expect("UTF-8 path");
        let found = self
            .kubectl(
                kubectl,
                &["get", "-f", manifest, "--ignore-not-found", "-o", "name"],
            )
            .await;
        found.lines().map(str::to_owned).collect()
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

    /// The labels selecting the verifier's pods.
    async fn verifier_pod_labels(&self) -> Option<BTreeMap<String, String>> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let deployment = deployments
            .get(&self.name("verifier"))
            .await
            .expect("verifier Deployment exists");
        deployment.spec.selector.match_labels
    }

    /// The value of the verifier container's environment variable `name`.
    async fn verifier_env(&self, name: &str) -> Option<String> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let deployment = deployments
            .get(&self.name("verifier"))
            .await
            .expect("verifier Deployment exists");
        let pod = deployment.spec.template.spec?;
        let container = pod.containers.into_iter().next()?;
        container
            .env?
            .into_iter()
            .find(|variable| variable.name == name)?
            .value
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_upgrades_and_uninstalls_the_chart() {
    let (Some(helm), Some(kubectl)) = (helm_binary(), kubectl_binary()) else {
        missing_tool("helm and kubectl", "run scripts/ensure-kube-tools.sh");
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
    let budget = budgets
        .get(&target.name("verifier"))
        .await
        .expect("the verifier's PodDisruptionBudget");
    let budget = budget.spec.expect("PodDisruptionBudget spec");
    assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(
        budget.selector.and_then(|selector| selector.match_labels),
        target.verifier_pod_labels().await,
        "the budget covers the verifier's pods"
    );
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
    assert_eq!(
        resources(verifier_role.rules),
        ["accesskeys", "accesskeys/status"]
    );
    assert_eq!(target.max_keys_per_owner().await, 5);
    let listed = target.listed_releases(&helm).await;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["name"], target.release.as_str());
    assert_eq!(listed[0]["revision"], "1");
    assert_eq!(listed[0]["status"], "deployed");
    assert_eq!(listed[0]["chart"], "keywarden-0.1.0");
    assert_eq!(
        target.release_records().await,
        [format!("sh.helm.release.v1.{}.v1", target.release)]
    );

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
    assert_eq!(
        target
            .verifier_env("KEYWARDEN_VERIFIER_NAMESPACES")
            .await
            .as_deref(),
        Some(target.team.as_str())
    );
    assert!(
        !exists(&cluster_roles, &target.name("verifier")).await,
        "the upgrade replaced the verifier's cluster-wide access"
    );
    let team_roles: Api<Role> = Api::namespaced(client.clone(), &target.team);
    let team_role = team_roles
        .get(&target.name("verifier"))
        .await
        .expect("the verifier's Role in the team namespace");
    assert_eq!(
        resources(team_role.rules),
        ["accesskeys", "accesskeys/status"]
    );
    let controller_role = cluster_roles
        .get(&target.name("controller"))
        .await
        .expect("the controller keeps its ClusterRole");
    assert!(resources(controller_role.rules).contains(&"secrets".to_owned()));
    let listed = target.listed_releases(&helm).await;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["revision"], "2");
    assert_eq!(listed[0]["status"], "deployed");
    assert_eq!(
        target.release_records().await,
        [1, 2].map(|revision| format!("sh.helm.release.v1.{}.v{revision}", target.release))
    );

    let manifest_text = target.helm(&helm, "get manifest", &[]).await;
    let declared = object_count(&manifest_text);
    let manifest = target.home.path().join("manifest.yaml");
    std::fs::write(&manifest, manifest_text).expect("write the release manifest");
    let installed = target.existing_objects(&kubectl, &manifest).await;
    assert_eq!(
        installed.len(),
        declared,
        "every object of the release exists before the uninstall: {installed:#?}"
    );

    target.helm(&helm, "uninstall", &[]).await;

    let left = target.existing_objects(&kubectl, &manifest).await;
    assert!(left.is_empty(), "uninstall left chart objects: {left:#?}");
    assert!(
        target.release_records().await.is_empty(),
        "uninstall left release records"
    );
    assert!(target.listed_releases(&helm).await.is_empty());
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

/// How many objects a multi-document YAML stream holds.
fn object_count(yaml: &str) -> usize {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| serde_yaml::Value::deserialize(document).expect("valid YAML document"))
        .filter(|object| !object.is_null())
        .count()
}

/// The resources a Role's or ClusterRole's rules name, in order.
fn resources(rules: Option<Vec<PolicyRule>>) -> Vec<String> {
    rules
        .into_iter()
        .flatten()
        .flat_map(|rule| rule.resources.unwrap_or_default())
        .collect()
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
    assert!(exists(&cluster_roles, &target.name("controller")).await);
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
    let team_roles = team_roles
        .list(&ListParams::default())
        .await
        .expect("list the team's Roles")
        .items;
    let team_role_names: Vec<_> = team_roles
        .iter()
        .filter_map(|role| role.metadata.name.clone())
        .collect();
    assert_eq!(
        team_role_names,
        [target.name("verifier")],
        "only the verifier is confined to the team namespace"
    );
    let controller_role = cluster_roles
        .get(&target.name("controller"))
        .await
        .expect("the controller keeps its ClusterRole");
    assert!(
        resources(controller_role.rules).contains(&"secrets".to_owned()),
        "the controller reaches Secrets in every namespace"
    );

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
