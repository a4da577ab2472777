//! Reliability across a leader change: a leader paused (SIGSTOP) past its lease and resumed
//! after another replica took over must neither exceed an owner's limit nor issue any key twice.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use keywarden::api::Phase;
use support::{eventually, phase_of, KeyBuilder, PolicyBuilder, SecretWrites, TestCluster};

/// Keys each owner may hold in this test.
const LIMIT: u32 = 2;
/// Keys created per owner: one more than the limit.
const KEYS_PER_OWNER: usize = 3;
/// Pause-and-resume rounds, alternating which replica leads.
const ROUNDS: usize = 4;

/// A `keywarden controller` replica whose log lines are collected.
struct Replica {
    process: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    fn spawn(kubeconfig: &Path, namespace: &str, identity: &str) -> Self {
        let probe_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .to_string();
        let mut process = Command::new(env!("CARGO_BIN_EXE_keywarden"))
            .arg("controller")
            .env("KUBECONFIG", kubeconfig)
            .env("KEYWARDEN_PROBE_ADDR", probe_addr)
            .env("KEYWARDEN_LEADER_ELECTION_NAMESPACE", namespace)
            .env("KEYWARDEN_LEASE_DURATION_SECONDS", "2")
            .env("KEYWARDEN_IDENTITY", identity)
            .env("KEYWARDEN_ARGON2_MEMORY_KIB", "1024")
            .env("KEYWARDEN_ARGON2_ITERATIONS", "1")
            .env("RUST_LOG", "info,kube=warn")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn controller");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = process.stderr.take().expect("stderr");
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self { process, logs }
    }

    fn signal(&self, signal: &str) {
        let pid = self.process.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal} {pid}");
    }

    fn logged(&self, text: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        // why: a stopped process ignores SIGKILL's cleanup only until continued; never leave one.
        let _ = self.process.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "--- replica logs ---\n{}",
                self.logs.lock().unwrap().join("\n")
            );
        }
    }
}

async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("keywarden-controller")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_and_resumed_never_exceeds_a_limit_nor_issues_twice() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = cluster.write_controller_kubeconfig(dir.path()).await;
    cluster.allow_controller_leases_in(&cluster.namespace).await;
    let policy = format!("limit-{}", support::random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).max_keys(LIMIT).build())
        .await;
    let writes = SecretWrites::track(cluster.secrets());
    let namespace = cluster.namespace.clone();
    let replicas = [
        ("one", Replica::spawn(&kubeconfig, &namespace, "one")),
        ("two", Replica::spawn(&kubeconfig, &namespace, "two")),
    ];
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), &namespace);

    for round in 0..ROUNDS {
        let leader = eventually("a leader", || lease_holder(&leases)).await;
        let (_, paused) = replicas.iter().find(|(id, _)| *id == leader).unwrap();
        let lost_before = paused.logged("lost leadership");
        let owner = format!("owner-{round}");
        let names: Vec<String> = (0..KEYS_PER_OWNER)
            .map(|i| format!("r{round}-k{i}"))
            .collect();
        for name in &names {
            cluster
                .create_key(&KeyBuilder::new(name, &owner).policy(&policy).build())
                .await;
        }
        // why: paused while it may be deciding or writing these keys' issuances; a different
        // moment each round.
        tokio::time::sleep(std::time::Duration::from_millis(15 * round as u64)).await;
        paused.signal("-STOP");
        eventually("another replica takes the lease", || async {
            lease_holder(&leases).await.filter(|h| *h != leader)
        })
        .await;
        paused.signal("-CONT");
        eventually("the resumed replica notices it lost the lease", || async {
            (paused.logged("lost leadership") > lost_before).then_some(())
        })
        .await;

        let issued = eventually("every key decided", || async {
            let keys = cluster.keys().list(&ListParams::default()).await.ok()?;
            let mine: Vec<_> = keys
                .items
                .into_iter()
                .filter(|k| k.metadata.name.as_ref().is_some_and(|n| names.contains(n)))
                .collect();
            let decided = mine.len() == names.len()
                && mine
                    .iter()
                    .all(|k| matches!(phase_of(k), Some(Phase::Active | Phase::Rejected)));
            decided.then(|| {
                mine.iter()
                    .filter(|k| phase_of(k) == Some(Phase::Active))
                    .count()
            })
        })
        .await;
        assert_eq!(
            issued, LIMIT as usize,
            "round {round}: keys issued for {owner}"
        );
        let mut written = 0;
        for name in &names {
            let ids = writes.ids(&format!("{name}-access-key"));
            assert!(
                ids.len() <= 1,
                "round {round}: {name} issued twice: {ids:?}"
            );
            written += ids.len();
        }
        assert!(
            written <= LIMIT as usize,
            "round {round}: {written} Secrets written for {owner}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_that_both_believe_they_lead_never_exceed_a_limit_nor_issue_twice() {
    let cluster = TestCluster::start().await;
    let policy = format!("limit-{}", support::random_suffix());
    cluster
        .create_policy(&PolicyBuilder::new(&policy).max_keys(LIMIT).build())
        .await;
    let writes = SecretWrites::track(cluster.secrets());
    // why: the worst case of a leader change, where the old leader still acts: both run.
    let _first = cluster.start_controller();
    let _second = cluster.start_controller();
    let names: Vec<String> = (0..12).map(|i| format!("k{i:02}")).collect();
    futures::future::join_all(names.iter().map(|name| {
        let key = KeyBuilder::new(name, "split").policy(&policy).build();
        let cluster = &cluster;
        async move { cluster.create_key(&key).await }
    }))
    .await;
    let mut issued = 0;
    for name in &names {
        let key = cluster
            .wait_key(name, "Active or Rejected", |k| {
                matches!(phase_of(k), Some(Phase::Active | Phase::Rejected))
            })
            .await;
        if phase_of(&key) == Some(Phase::Active) {
            issued += 1;
        }
        let ids = writes.ids(&format!("{name}-access-key"));
        assert!(ids.len() <= 1, "{name} issued twice: {ids:?}");
    }
    assert_eq!(issued, LIMIT as usize);
    let written: usize = names
        .iter()
        .map(|n| writes.ids(&format!("{n}-access-key")).len())
        .sum();
    assert!(written <= LIMIT as usize, "{written} Secrets written");
}
