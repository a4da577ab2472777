//! A devcluster with the keywarden CRDs and a verifier watching it, plus helpers that write
//! keys and their status as the controller would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keywarden::api::AccessKey;
use keywarden::verifier::{serve, VerifierArgs};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt};
use tokio_util::sync::CancellationToken;

/// Namespace every cluster test writes its keys to.
pub const NAMESPACE: &str = "team-a";

/// A devcluster with the AccessKey CRD and the test namespace.
pub struct TestCluster {
    pub cluster: devcluster::DevCluster,
    pub client: kube::Client,
}

impl TestCluster {
    pub async fn start() -> Self {
        let cluster = devcluster::DevCluster::start()
            .await
            .expect("devcluster starts");
        let client = cluster.client().expect("devcluster client");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &AccessKey::crd())
            .await
            .expect("install the AccessKey CRD");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(NAMESPACE.into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create the test namespace");
        Self { cluster, client }
    }

    pub fn keys(&self) -> Api<AccessKey> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// Creates `key`, then writes its status through `/status` (as the controller would).
    /// Retries for up to 10 s while the new CRD is being served.
    pub async fn create_key(&self, key: &AccessKey) {
        let api = self.keys();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match api.create(&PostParams::default(), key).await {
                Ok(_) => break,
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "creating the key; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("create AccessKey: {error}"),
            }
        }
        self.write_status(key).await;
    }

    /// Replaces the status of `key` by its `status`.
    pub async fn write_status(&self, key: &AccessKey) {
        let name = key.metadata.name.as_deref().expect("key name");
        let patch = serde_json::json!({ "status": key.status });
        self.keys()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("write status");
    }

    /// Merge-patches the spec of key `name`.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.keys()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("patch spec");
    }
}

/// A verifier serving on a free loopback port, watching a cluster.
pub struct ClusterVerifier {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl ClusterVerifier {
    /// Starts `keywarden verifier` in-process and waits up to 10 s for `/readyz`.
    pub async fn start(client: kube::Client, args: VerifierArgs) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(client, args, listener, shutdown.clone()));
        let verifier = Self {
            addr,
            shutdown,
            task,
        };
        let ready = wait_until(Duration::from_secs(10), || async {
            reqwest::get(verifier.url("/readyz"))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "verifier not ready within 10 s");
        verifier
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the verifier and waits for it to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("verifier task")
            .expect("verifier ran cleanly");
    }
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
pub async fn wait_until<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The status code of `GET url` with `authorization`.
pub async fn check_status(http: &reqwest::Client, url: &str, authorization: &str) -> u16 {
    http.get(url)
        .header("authorization", authorization)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}
