//! The cluster of the controller suites (devcluster in-process, or a real one through
//! `KEYWARDEN_TEST_KUBECONFIG`) with a namespace of its own, a verifier watching only that
//! namespace, and helpers that write keys and their status as the controller would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keywarden::api::AccessKey;
use keywarden::verifier::{serve, VerifierArgs};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use tokio_util::sync::CancellationToken;

// why: the controller suites' cluster already picks devcluster or the real cluster, installs
// the CRDs idempotently and makes a fresh namespace; the verifier suites share it, not copy it.
#[path = "../support/mod.rs"]
pub mod support;

/// A cluster and a fresh namespace `kw-test-<random>` (see `support::TestCluster`).
pub struct TestCluster {
    cluster: support::TestCluster,
}

impl TestCluster {
    pub async fn start() -> Self {
        Self {
            cluster: support::TestCluster::start().await,
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.cluster.client
    }

    /// The chart's verifier ServiceAccount: status writes other than `lastUsedAt` are refused.
    pub fn verifier_client(&self) -> &kube::Client {
        &self.cluster.verifier_client
    }

    /// The namespace of this test; the only one its verifier watches.
    pub fn namespace(&self) -> &str {
        &self.cluster.namespace
    }

    pub fn keys(&self) -> Api<AccessKey> {
        self.cluster.keys()
    }

    /// Starts a verifier with `args` that watches only this test's namespace.
    pub async fn start_verifier(&self, args: VerifierArgs) -> ClusterVerifier {
        let args = VerifierArgs {
            namespaces: vec![self.namespace().to_owned()],
            ..args
        };
        ClusterVerifier::start(self.cluster.verifier_client.clone(), args).await
    }

    /// devcluster, when the suite runs against it (not a real cluster).
    pub fn dev(&self) -> Option<&devcluster::DevCluster> {
        self.cluster.dev()
    }

    /// The API server's address (host and port of its URL).
    pub async fn api_addr(&self) -> SocketAddr {
        let url = &self.cluster.admin_config.cluster_url;
        let host = url.host().expect("API server host");
        let port = url.port_u16().unwrap_or(443);
        tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .expect("resolve the API server")
            .next()
            .expect("an API server address")
    }

    /// Starts a verifier watching this test's namespace through `api_url` (a proxy in front
    /// of the API server, presenting the API server's certificate).
    pub async fn start_verifier_through(
        &self,
        api_url: &str,
        args: VerifierArgs,
    ) -> ClusterVerifier {
        let admin = &self.cluster.admin_config;
        let mut config = keywarden::cli::access_control::service_account_config(
            &self.cluster.client,
            admin,
            keywarden::cli::access_control::VERIFIER_SERVICE_ACCOUNT,
        )
        .await
        .expect("verifier ServiceAccount config");
        config.tls_server_name = admin
            .tls_server_name
            .clone()
            .or_else(|| admin.cluster_url.host().map(str::to_owned));
        config.cluster_url = api_url.parse().expect("proxy URL");
        let client = kube::Client::try_from(config).expect("verifier client");
        let args = VerifierArgs {
            namespaces: vec![self.namespace().to_owned()],
            ..args
        };
        ClusterVerifier::start(client, args).await
    }

    /// Creates `key`, then writes its status through `/status` (as the controller would).
    pub async fn create_key(&self, key: &AccessKey) {
        self.keys()
            .create(&PostParams::default(), key)
            .await
            .expect("create AccessKey");
        self.write_status(key).await;
    }

    /// Replaces the status of `key` by its `status`, as the controller's ServiceAccount (the
    /// admission policy refuses status from anyone else).
    pub async fn write_status(&self, key: &AccessKey) {
        let name = key.metadata.name.as_deref().expect("key name");
        let patch = serde_json::json!({ "status": key.status });
        self.cluster
            .controller_keys()
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
    async fn start(client: kube::Client, args: VerifierArgs) -> Self {
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
