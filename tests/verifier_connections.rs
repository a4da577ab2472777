//! The `keywarden verifier` binary, as deployed, holding 10,000 idle connections: it raises its
//! open-file limit at start, and at its connection cap (10,000 by default) closes the
//! longest-idle connection for each new client, so valid checks keep being answered.

mod support_verifier;

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keywarden::api::AccessKey;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt};
use support_verifier::cluster::{check_status, wait_until};
use support_verifier::proxies::free_port;
use support_verifier::{Issued, KeyBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE_CONNECTIONS: usize = 10_000;

/// Creates `key` on the cluster once its CRD is served, then writes its status.
async fn issue(kube: &kube::Client, key: &AccessKey) {
    let crds: Api<CustomResourceDefinition> = Api::all(kube.clone());
    crds.create(&PostParams::default(), &AccessKey::crd())
        .await
        .expect("install the AccessKey CRD");
    let keys: Api<AccessKey> = Api::namespaced(kube.clone(), "default");
    let created = wait_until(Duration::from_secs(10), || async {
        keys.create(&PostParams::default(), key).await.is_ok()
    })
    .await;
    assert!(created, "the AccessKey CRD was not served within 10 s");
    let name = key.metadata.name.as_deref().expect("key name");
    let status = serde_json::json!({ "status": key.status });
    keys.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("write the issuance into status");
}

/// Opens a connection that has sent one request and sits idle in keep-alive.
async fn idle_connection(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: verifier\r\n\r\n")
        .await
        .expect("send a request");
    let mut answer = [0u8; 512];
    let read = stream.read(&mut answer).await.expect("read the answer");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_do_not_stop_valid_checks() {
    // why: this process holds the client ends of all the connections.
    keywarden::verifier::raise_open_file_limit();
    let cluster = devcluster::DevCluster::start()
        .await
        .expect("devcluster starts");
    let issued = Issued::generate();
    issue(
        &cluster.client().expect("kube client"),
        &KeyBuilder::new("default", "busy-service", &issued).build(),
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig)
        .expect("write kubeconfig");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut verifier = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywarden"))
        .args(["verifier", "--listen", &addr.to_string()])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start keywarden verifier");
    let http = reqwest::Client::new();
    let check = format!("http://{addr}/v1/check");
    let indexed = wait_until(Duration::from_secs(20), || async {
        check_status(&http, &check, &issued.basic()).await == 200
    })
    .await;
    assert!(indexed, "the verifier did not accept the key within 20 s");

    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(idle_connection(addr).await);
    }
    for attempt in 0..20 {
        // why: a fresh client each time, so each check needs a connection of its own.
        let fresh = reqwest::Client::new();
        assert_eq!(
            check_status(&fresh, &check, &issued.basic()).await,
            200,
            "check {attempt} with {IDLE_CONNECTIONS} idle connections open"
        );
    }
    assert!(
        verifier.try_wait().expect("verifier status").is_none(),
        "the verifier is still running"
    );
    drop(idle);
    verifier.kill().await.expect("stop the verifier");
}
