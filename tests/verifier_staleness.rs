//! What the verifier promises when it cannot see the API server: revoked keys keep working on a
//! cut-off replica only until `--max-staleness`, then checks get 503 and `/readyz` fails; once
//! it sees the API server again it applies every missed change before answering, and becomes
//! ready. Runs against devcluster, or a real cluster with `KEYWARDEN_TEST_KUBECONFIG` (the
//! partition is a TCP proxy in front of the API server; stopping the API server needs
//! devcluster).

mod support_verifier;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keywarden::verifier::{VerifierArgs, WhenStale};
use kube::api::DeleteParams;
use support_verifier::cluster::{check_status, wait_until, ClusterVerifier, TestCluster};
use support_verifier::partition::Partition;
use support_verifier::{Issued, KeyBuilder};

/// A short bound, so the tests see it pass.
const BOUND: Duration = Duration::from_secs(3);

fn args(when_stale: WhenStale) -> VerifierArgs {
    VerifierArgs {
        max_staleness: BOUND,
        when_stale,
        ..VerifierArgs::default()
    }
}

/// Three keys: one to deactivate, one to delete and one that stays valid.
struct Keys {
    deactivated: Issued,
    deleted: Issued,
    kept: Issued,
}

impl Keys {
    async fn create(cluster: &TestCluster) -> Self {
        let keys = Self {
            deactivated: Issued::generate(),
            deleted: Issued::generate(),
            kept: Issued::generate(),
        };
        for (name, issued) in [
            ("deactivated", &keys.deactivated),
            ("deleted", &keys.deleted),
            ("kept", &keys.kept),
        ] {
            cluster
                .create_key(&KeyBuilder::new(cluster.namespace(), name, issued).build())
                .await;
        }
        keys
    }

    /// Deactivates one key and deletes another through the API.
    async fn revoke(cluster: &TestCluster) {
        cluster
            .patch_spec("deactivated", serde_json::json!({"active": false}))
            .await;
        cluster
            .keys()
            .delete("deleted", &DeleteParams::default())
            .await
            .expect("delete key");
    }
}

/// What a client and an orchestrator see of one verifier.
struct Seen {
    http: reqwest::Client,
}

impl Seen {
    fn new() -> Self {
        Self {
            http: reqwest::Client::new(),
        }
    }

    async fn check(&self, verifier: &ClusterVerifier, issued: &Issued) -> u16 {
        check_status(&self.http, &verifier.url("/v1/check"), &issued.basic()).await
    }

    async fn check_response(
        &self,
        verifier: &ClusterVerifier,
        issued: &Issued,
    ) -> reqwest::Response {
        self.http
            .get(verifier.url("/v1/check"))
            .header("authorization", issued.basic())
            .send()
            .await
            .expect("check answered")
    }

    async fn verify_code(&self, verifier: &ClusterVerifier, issued: &Issued) -> String {
        let body: serde_json::Value = self
            .http
            .post(verifier.url("/v1/verify"))
            .json(&serde_json::json!({ "token": issued.bearer().trim_start_matches("Bearer ") }))
            .send()
            .await
            .expect("verify answered")
            .json()
            .await
            .expect("verify JSON");
        body["code"].as_str().unwrap_or_default().to_owned()
    }

    async fn ready(&self, verifier: &ClusterVerifier) -> u16 {
        self.http
            .get(verifier.url("/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    async fn staleness_seconds(&self, verifier: &ClusterVerifier) -> f64 {
        let text = self
            .http
            .get(verifier.url("/metrics"))
            .send()
            .await
            .expect("metrics answered")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix("keywarden_verifier_index_staleness_seconds "))
            .and_then(|value| value.trim().parse().ok())
            .expect("the staleness gauge is exported")
    }
}

/// Waits, while the verifier cannot see the API server, for the revoked keys to stop working;
/// returns how long that took from `since`. Until then they must still be served (the last
/// view), never refused as revoked.
async fn wait_for_the_bound(
    seen: &Seen,
    verifier: &ClusterVerifier,
    keys: &Keys,
    since: Instant,
) -> Duration {
    let stale = wait_until(BOUND + Duration::from_secs(10), || async {
        seen.check(verifier, &keys.deactivated).await == 503
    })
    .await;
    let took = since.elapsed();
    assert!(
        stale,
        "a key revoked out of sight still works well past the bound"
    );
    let refused = seen.check_response(verifier, &keys.deleted).await;
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body = refused.text().await.expect("body");
    assert!(body.contains(r#""code":"stale""#), "{body}");
    assert_eq!(
        seen.check(verifier, &keys.kept).await,
        503,
        "past the bound no key is vouched for"
    );
    assert_eq!(seen.verify_code(verifier, &keys.kept).await, "STALE");
    assert_eq!(
        seen.ready(verifier).await,
        503,
        "/readyz fails past the bound"
    );
    assert!(seen.staleness_seconds(verifier).await > BOUND.as_secs_f64());
    took
}

/// Waits for the verifier to see the API server again: until it is ready, the revoked keys are
/// never accepted; once ready they are refused and the kept key works. Returns how long it took.
async fn wait_for_recovery(seen: &Seen, verifier: &ClusterVerifier, keys: &Keys) -> Duration {
    let since = Instant::now();
    let recovered = wait_until(Duration::from_secs(20), || async {
        let deactivated = seen.check(verifier, &keys.deactivated).await;
        let deleted = seen.check(verifier, &keys.deleted).await;
        assert!(
            deactivated != 200 && deleted != 200,
            "a revoked key was accepted while catching up"
        );
        seen.ready(verifier).await == 200
    })
    .await;
    let took = since.elapsed();
    assert!(recovered, "not ready again after the API server came back");
    assert_eq!(seen.check(verifier, &keys.deactivated).await, 401);
    assert_eq!(seen.check(verifier, &keys.deleted).await, 401);
    assert_eq!(seen.check(verifier, &keys.kept).await, 200);
    assert_eq!(
        seen.verify_code(verifier, &keys.deactivated).await,
        "DISABLED"
    );
    assert!(seen.staleness_seconds(verifier).await < BOUND.as_secs_f64());
    took
}

#[tokio::test]
async fn a_cut_off_replica_serves_revoked_keys_only_until_the_bound_and_catches_up_when_healed() {
    let cluster = TestCluster::start().await;
    let keys = Keys::create(&cluster).await;
    let partition = Partition::start(cluster.api_addr().await).await;
    let verifier = cluster
        .start_verifier_through(&partition.url(), args(WhenStale::Refuse))
        .await;
    let seen = Seen::new();
    assert_eq!(seen.check(&verifier, &keys.deactivated).await, 200);

    partition.cut();
    let cut_at = Instant::now();
    Keys::revoke(&cluster).await;
    assert_eq!(
        seen.check(&verifier, &keys.deactivated).await,
        200,
        "within the bound the replica answers from its last view"
    );
    let to_bound = wait_for_the_bound(&seen, &verifier, &keys, cut_at).await;

    partition.heal();
    let to_recovery = wait_for_recovery(&seen, &verifier, &keys).await;
    println!(
        "partition: refused {:.1} s after the cut (bound {} s); ready and caught up {:.2} s after healing",
        to_bound.as_secs_f64(),
        BOUND.as_secs(),
        to_recovery.as_secs_f64()
    );
    assert!(
        to_recovery < Duration::from_secs(5),
        "took {to_recovery:?} to catch up"
    );
    verifier.stop().await;
}

#[tokio::test]
async fn a_stopped_api_server_makes_checks_refused_past_the_bound_until_it_is_back() {
    let cluster = TestCluster::start().await;
    let Some(dev) = cluster.dev() else {
        println!("skipped: a real cluster's API server cannot be stopped from a test");
        return;
    };
    let keys = Keys::create(&cluster).await;
    let verifier = cluster.start_verifier(args(WhenStale::Refuse)).await;
    let seen = Seen::new();
    assert_eq!(seen.check(&verifier, &keys.deleted).await, 200);

    dev.stop().await;
    let stopped_at = Instant::now();
    let to_bound = wait_for_the_bound(&seen, &verifier, &keys, stopped_at).await;

    // why: nothing can change while the only API server is down; the missed changes are made
    // after it is back and before the verifier could have relisted.
    dev.restart()
        .await
        .expect("devcluster restarts on its port");
    Keys::revoke(&cluster).await;
    let to_recovery = wait_for_recovery(&seen, &verifier, &keys).await;
    println!(
        "API server stopped: refused {:.1} s after the stop (bound {} s); ready {:.2} s after the restart",
        to_bound.as_secs_f64(),
        BOUND.as_secs(),
        to_recovery.as_secs_f64()
    );
    assert!(
        to_recovery < Duration::from_secs(5),
        "took {to_recovery:?} to catch up"
    );
    verifier.stop().await;
}

#[tokio::test]
async fn serving_when_stale_keeps_answering_from_the_last_view_and_says_so() {
    let cluster = TestCluster::start().await;
    let keys = Keys::create(&cluster).await;
    let partition = Partition::start(cluster.api_addr().await).await;
    let verifier = cluster
        .start_verifier_through(&partition.url(), args(WhenStale::Serve))
        .await;
    let seen = Seen::new();
    let fresh = seen.check_response(&verifier, &keys.kept).await;
    assert_eq!(fresh.status().as_u16(), 200);
    assert!(!fresh.headers().contains_key("x-keywarden-stale-seconds"));

    partition.cut();
    Keys::revoke(&cluster).await;
    let not_ready = wait_until(BOUND + Duration::from_secs(10), || async {
        seen.ready(&verifier).await == 503
    })
    .await;
    assert!(not_ready, "/readyz still passes past the bound");
    let stale = seen.check_response(&verifier, &keys.deactivated).await;
    assert_eq!(
        stale.status().as_u16(),
        200,
        "--when-stale=serve answers from the last view"
    );
    let age: u64 = stale
        .headers()
        .get("x-keywarden-stale-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a stale answer says how stale");
    assert!(age >= BOUND.as_secs(), "{age}");
    assert_eq!(seen.verify_code(&verifier, &keys.kept).await, "VALID");
    let metrics = seen
        .http
        .get(verifier.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("keywarden_verifier_stale_answers_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    partition.heal();
    wait_for_recovery_of_kept(&seen, &verifier, &keys).await;
    assert_eq!(seen.check(&verifier, &keys.deactivated).await, 401);
    assert_eq!(seen.check(&verifier, &keys.deleted).await, 401);
    let fresh = seen.check_response(&verifier, &keys.kept).await;
    assert!(!fresh.headers().contains_key("x-keywarden-stale-seconds"));
    verifier.stop().await;
}

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn count(&self) -> usize {
        self.0.lock().map(|lines| lines.len()).unwrap_or(0)
    }

    fn since(&self, from: usize) -> Vec<String> {
        self.0
            .lock()
            .map(|lines| lines[from..].to_vec())
            .unwrap_or_default()
    }
}

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(mut lines) = self.0.lock() {
            lines.extend(text.lines().map(str::to_owned));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_minute_long_partition_logs_a_handful_of_lines() {
    let lines = Lines::default();
    let writer = lines.clone();
    // why: the test runtime has one thread, so this default catches every line the verifier
    // logs with the binary's default filter.
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_env_filter(keywarden::cli::logging::DEFAULT_FILTER)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let cluster = TestCluster::start().await;
    let keys = Keys::create(&cluster).await;
    let partition = Partition::start(cluster.api_addr().await).await;
    let verifier = cluster
        .start_verifier_through(&partition.url(), args(WhenStale::Refuse))
        .await;
    let seen = Seen::new();

    partition.cut();
    let before = lines.count();
    let partitioned = Instant::now();
    while partitioned.elapsed() < Duration::from_secs(60) {
        seen.check(&verifier, &keys.kept).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = lines.since(before);
    partition.heal();
    wait_for_recovery_of_kept(&seen, &verifier, &keys).await;
    println!(
        "a 60 s partition logged {} lines:\n{}",
        logged.len(),
        logged.join("\n")
    );
    assert!(
        (1..=12).contains(&logged.len()),
        "{} lines in 60 s: {logged:#?}",
        logged.len()
    );
    verifier.stop().await;
}

/// Waits until the verifier is ready and vouches for the kept key again.
async fn wait_for_recovery_of_kept(seen: &Seen, verifier: &ClusterVerifier, keys: &Keys) {
    let recovered = wait_until(Duration::from_secs(20), || async {
        seen.ready(verifier).await == 200 && seen.check(verifier, &keys.kept).await == 200
    })
    .await;
    assert!(recovered, "not ready again after the partition healed");
}
