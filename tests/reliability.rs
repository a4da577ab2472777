//! Reliability: controller processes killed with SIGKILL mid-issuance, two replicas with leader
//! election, and no key material in logs, events, status or metrics of a full run.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use keywarden::api::Phase;
use keywarden::controller::{DATA_ACCESS_KEY, DATA_TOKEN};
use support::{
    assert_issued_exactly_once, eventually, phase_of, secret_data, KeyBuilder, SecretWrites,
    TestCluster,
};

/// A `keywarden controller` process whose JSON log lines (stderr) are collected.
struct ChildController {
    process: Child,
    logs: Arc<Mutex<Vec<String>>>,
    probe_addr: String,
}

impl ChildController {
    fn spawn(kubeconfig: &Path, envs: &[(&str, &str)]) -> Self {
        let probe_addr = free_local_addr();
        let mut command = Command::new(env!("CARGO_BIN_EXE_keywarden"));
        command
            .arg("controller")
            .env("KUBECONFIG", kubeconfig)
            .env("KEYWARDEN_LOG_FORMAT", "json")
            .env("KEYWARDEN_PROBE_ADDR", &probe_addr)
            .env("KEYWARDEN_ARGON2_MEMORY_KIB", "1024")
            .env("KEYWARDEN_ARGON2_ITERATIONS", "1")
            .env("RUST_LOG", "info,kube=warn")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut process = command.spawn().expect("spawn controller process");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = process.stderr.take().expect("stderr");
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            process,
            logs,
            probe_addr,
        }
    }

    /// SIGKILL: no graceful shutdown, no lease release.
    async fn kill_9(&mut self) {
        self.process.kill().await.expect("kill -9");
    }

    /// Audit lines with `reason` logged so far.
    fn audit_count(&self, reason: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                l.contains("\"audit\":true") && l.contains(&format!("\"reason\":\"{reason}\""))
            })
            .count()
    }

    fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for ChildController {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- controller process logs ---\n{}", self.log_text());
        }
    }
}

fn free_local_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

async fn create_keys(cluster: &TestCluster, prefix: &str, count: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        cluster
            .create_key(&KeyBuilder::new(&name, &name).build())
            .await;
        names.push(name);
    }
    names
}

async fn active_count(cluster: &TestCluster) -> usize {
    let keys = cluster.keys().list(&ListParams::default()).await.unwrap();
    keys.items
        .iter()
        .filter(|k| phase_of(k) == Some(Phase::Active))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_mid_issuance_never_issues_a_key_twice() {
    for (round, kill_after) in [0usize, 1, 4].into_iter().enumerate() {
        let cluster = TestCluster::start().await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = cluster.write_controller_kubeconfig(dir.path()).await;
        let writes = SecretWrites::track(cluster.secrets());
        let names = create_keys(&cluster, &format!("r{round}"), 8).await;
        let disable = [("KEYWARDEN_DISABLE_LEADER_ELECTION", "true")];
        let mut first = ChildController::spawn(&kubeconfig, &disable);
        eventually("some keys issued before the kill", || async {
            (active_count(&cluster).await >= kill_after).then_some(())
        })
        .await;
        first.kill_9().await;
        let _second = ChildController::spawn(&kubeconfig, &disable);
        assert_issued_exactly_once(&cluster, &writes, &names).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_issues_and_the_standby_takes_over_after_a_kill() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = cluster.write_controller_kubeconfig(dir.path()).await;
    cluster.allow_controller_leases_in(&cluster.namespace).await;
    let writes = SecretWrites::track(cluster.secrets());
    let namespace = cluster.namespace.clone();
    let env = |identity: &'static str| {
        [
            ("KEYWARDEN_LEADER_ELECTION_NAMESPACE", namespace.clone()),
            ("KEYWARDEN_LEASE_DURATION_SECONDS", "3".to_string()),
            ("KEYWARDEN_IDENTITY", identity.to_string()),
        ]
    };
    let spawn = |identity: &'static str| {
        let env = env(identity);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ChildController::spawn(&kubeconfig, &env)
    };
    let mut replicas = BTreeMap::from([("one", spawn("one")), ("two", spawn("two"))]);

    let before = create_keys(&cluster, "before", 4).await;
    assert_issued_exactly_once(&cluster, &writes, &before).await;
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), &namespace);
    let lease = leases.get("keywarden-controller").await.unwrap();
    let leader = lease
        .spec
        .and_then(|s| s.holder_identity)
        .expect("lease held");
    let standby = if leader == "one" { "two" } else { "one" };
    assert_eq!(replicas[leader.as_str()].audit_count("Issued"), 4);
    assert_eq!(
        replicas[standby].audit_count("Issued"),
        0,
        "the standby issued nothing"
    );

    replicas.get_mut(leader.as_str()).unwrap().kill_9().await;
    let after = create_keys(&cluster, "after", 4).await;
    assert_issued_exactly_once(&cluster, &writes, &after).await;
    assert_issued_exactly_once(&cluster, &writes, &before).await;
    assert_eq!(
        replicas[standby].audit_count("Issued"),
        4,
        "the new leader issued the new keys"
    );

    // No key material anywhere observable: logs, events, status, metrics.
    let metrics = reqwest::get(format!("http://{}/metrics", replicas[standby].probe_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("keywarden_issuances_total"));
    assert!(
        metrics.contains(r#"keywarden_reconcile_queue{queue="new"}"#),
        "the leader's reconciliation queue is exposed:\n{metrics}"
    );
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(cluster.client.clone(), &namespace)
            .list(&ListParams::default())
            .await
            .unwrap();
    let keys = cluster.keys().list(&ListParams::default()).await.unwrap();
    let observable = [
        replicas["one"].log_text(),
        replicas["two"].log_text(),
        serde_json::to_string(&events.items).unwrap(),
        serde_json::to_string(&keys.items).unwrap(),
        metrics,
    ]
    .join("\n");
    assert!(observable.contains(&after[0]), "the scan sees the run");
    for secret in cluster
        .secrets()
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        for field in [DATA_ACCESS_KEY, DATA_TOKEN] {
            if let Some(material) = secret_data(&secret, field) {
                assert!(
                    !observable.contains(&material),
                    "{field} of {} leaked",
                    secret.name_any()
                );
            }
        }
    }
}
