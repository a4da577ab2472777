//! Serving beyond the verbs: discovery of CRD kinds, Table output, deletecollection, and the
//! `devcluster` binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use devcluster::DevCluster;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::Discovery;
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A kind to discover.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "test.devcluster.io",
    version = "v1",
    kind = "Probe",
    namespaced
)]
pub struct ProbeSpec {
    pub target: String,
}

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.to_string());
    cm.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    cm
}

#[tokio::test]
async fn discovery_lists_builtin_and_crd_kinds() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Probe::crd())
        .await
        .unwrap();
    let established = await_condition(
        crds,
        "probes.test.devcluster.io",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .unwrap()
        .unwrap();
    let discovery = Discovery::new(client).run().await.unwrap();
    let mut kinds: Vec<String> = discovery
        .groups()
        .flat_map(|group| {
            group
                .recommended_resources()
                .into_iter()
                .map(|(ar, _)| format!("{}/{}", ar.api_version, ar.kind))
        })
        .collect();
    kinds.sort();
    for expected in [
        "v1/Secret",
        "coordination.k8s.io/v1/Lease",
        "test.devcluster.io/v1/Probe",
    ] {
        assert!(
            kinds.contains(&expected.to_string()),
            "{expected} missing from {kinds:?}"
        );
    }
}

#[tokio::test]
async fn table_accept_header_answers_a_table() {
    let cluster = DevCluster::start().await.unwrap();
    let client = cluster.client().unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &config_map("t", &[]))
        .await
        .unwrap();
    let request = http::Request::get("/api/v1/namespaces/default/configmaps")
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value = client.request(request).await.unwrap();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn delete_collection_deletes_only_selected_objects() {
    let cluster = DevCluster::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().unwrap(), "default");
    api.create(&PostParams::default(), &config_map("a", &[("batch", "1")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("b", &[("batch", "1")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("c", &[("batch", "2")]))
        .await
        .unwrap();
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=1"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn the_binary_serves_and_writes_a_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig_path = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_devcluster"))
        .args(["--addr", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = lines.next().unwrap().unwrap();
    assert!(
        listening.starts_with("devcluster listening on https://127.0.0.1:"),
        "{listening}"
    );
    let export = lines.next().unwrap().unwrap();
    assert_eq!(
        export,
        format!("export KUBECONFIG={}", kubeconfig_path.display())
    );

    let kubeconfig = Kubeconfig::read_from(&kubeconfig_path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let namespaces = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let names: Vec<String> = namespaces
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(names.contains(&"default".to_string()), "{names:?}");
}
