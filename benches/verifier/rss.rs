//! Verifier memory and start-up at scale (`KW_BENCH_ONLY=rss`): the real `keywarden verifier`
//! binary against an in-process devcluster holding N issued keys, for each N of
//! `KW_BENCH_RSS_KEYS` (default `2000,20000,100000`), keys added between sizes.
//!
//! Keys carry a status as the controller writes it (conditions, grants, times, an argon2id PHC
//! hash of the usual length), so the objects the verifier lists are the size of real ones. For
//! each N: time from process start to `/readyz` 200, a check of one key, RSS once settled,
//! peak RSS (VmHWM: the start-up transient), bytes per key over the empty-cluster baseline and
//! idle CPU; with the goals beside them (100,000 keys: <= 100 MiB, Ready <= 15 s).
//!
//! `KW_BENCH_RSS_COMPARE=/path/to/keywarden` also runs that binary (e.g. a build of an earlier
//! commit) at each size, right after this build's, and prints the ratio of the two.

use std::time::{Duration, Instant};

use base64::Engine;
use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use keywarden::api::{AccessKey, AccessKeySpec, KeyOwner, OwnerKind};
use keywarden::keys::hash::{hash_secret, HashParams};
use keywarden::keys::material::{AccessKeyId, SecretKey};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, CustomResourceExt};

const NAMESPACES: usize = 10;
/// Cheap argon2id for the one key the benchmark checks.
const CHEAP: HashParams = HashParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// Prints the memory and start-up figures.
pub async fn report() {
    let sizes: Vec<usize> = std::env::var("KW_BENCH_RSS_KEYS")
        .unwrap_or_else(|_| "2000,20000,100000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    println!(
        "== verifier memory and start-up: `keywarden verifier` binary, devcluster in the bench process, keys {sizes:?}"
    );
    if let Err(error) = measure(&sizes).await {
        println!("  skipped: {error:#}");
    }
}

async fn measure(sizes: &[usize]) -> anyhow::Result<()> {
    let cluster = devcluster::DevCluster::start().await?;
    let client = cluster.client()?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &AccessKey::crd())
        .await?;
    for n in 0..NAMESPACES {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(format!("team-{n}")),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
    }
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    // why: the CRD is served once devcluster has established it.
    let (probe_id, probe_secret) = loop {
        match write_key(&client, 0, true).await {
            Ok(Some(pair)) => break pair,
            Ok(None) => anyhow::bail!("the probe key has no credentials"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{probe_id}:{}", probe_secret.expose()))
    );

    let ours = std::path::PathBuf::from(env!("CARGO_BIN_EXE_keywarden"));
    let other = std::env::var_os("KW_BENCH_RSS_COMPARE").map(std::path::PathBuf::from);
    let baseline = run_verifier(&ours, &kubeconfig, &authorization, 1).await?;
    baseline.print(1, None);
    let other_baseline = match &other {
        Some(binary) => {
            let figures = run_verifier(binary, &kubeconfig, &authorization, 1).await?;
            print!("  (compared binary {}) ", binary.display());
            figures.print(1, None);
            Some(figures)
        }
        None => None,
    };
    let mut written = 1;
    for &size in sizes {
        let started = Instant::now();
        stream::iter(written..size)
            .map(|i| write_key(&client, i, false))
            .buffer_unordered(32)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        written = written.max(size);
        println!(
            "  {size} keys in devcluster ({:.1} s to write)",
            started.elapsed().as_secs_f64()
        );
        let figures = run_verifier(&ours, &kubeconfig, &authorization, size).await?;
        figures.print(size, Some(&baseline));
        if let (Some(binary), Some(other_baseline)) = (&other, &other_baseline) {
            let compared = run_verifier(binary, &kubeconfig, &authorization, size).await?;
            print!("  (compared binary) ");
            compared.print(size, Some(other_baseline));
            println!(
                "    this build / compared binary at {size} keys: RSS {:.2}x, peak {:.2}x, Ready {:.2}x",
                figures.rss_kib as f64 / compared.rss_kib as f64,
                figures.peak_kib as f64 / compared.peak_kib as f64,
                figures.ready.as_secs_f64() / compared.ready.as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Creates key `i` and writes its status as the controller would; returns the credentials of
/// a key whose hash is real (`checkable`), else `None` (its hash is well-formed but random).
async fn write_key(
    client: &kube::Client,
    i: usize,
    checkable: bool,
) -> anyhow::Result<Option<(AccessKeyId, SecretKey)>> {
    let namespace = format!("team-{}", i % NAMESPACES);
    let name = format!("key-{i:06}");
    let keys: Api<AccessKey> = Api::namespaced(client.clone(), &namespace);
    let owner = format!("user-{}", i % 5_000);
    let mut key = AccessKey::new(
        &name,
        AccessKeySpec {
            owner: KeyOwner {
                kind: OwnerKind::User,
                name: owner,
            },
            display_name: Some(format!("Key {i} of the benchmark")),
            description: None,
            scopes: vec!["logs:view".into(), "collectors:manage".into()],
            owner_groups: Vec::new(),
            allowed_origins: Vec::new(),
            active: true,
            rotate_generation: 0,
            reactivate_generation: 0,
            policy_name: None,
            rollout: None,
            secret: Default::default(),
        },
    );
    key.metadata.namespace = Some(namespace);
    keys.create(&PostParams::default(), &key).await?;
    let id = AccessKeyId::generate();
    let secret = SecretKey::generate();
    let hash = if checkable {
        hash_secret(&secret, &CHEAP)?
    } else {
        random_phc()
    };
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let condition = |type_: &str, reason: &str, message: &str| {
        serde_json::json!({"type": type_, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": now, "observedGeneration": 1})
    };
    let status = serde_json::json!({"status": {
        "phase": "Active",
        "accessKeyId": id.to_string(),
        "secretName": format!("{name}-access-key"),
        "secretHash": hash,
        "secretResourceVersion": "12345",
        "policy": "default",
        "policyAppliedAt": now,
        "grantedScopes": ["logs:view", "collectors:manage"],
        "grantedOrigins": [],
        "issuedAt": now,
        "expiresAt": "2027-06-01T00:00:00Z",
        "observedGeneration": 1,
        "observedRotateGeneration": 0,
        "observedReactivateGeneration": 0,
        "conditions": [
            condition("Ready", "Active", "the key is issued and active"),
            condition("Issued", "Issued", "credentials written to the Secret"),
            condition("PolicyResolved", "Resolved", "governed by policy default"),
            condition("SecretPresent", "Present", "the Secret holds the credentials"),
            condition("ScopesHeld", "Held", "the owner holds every requested scope"),
        ],
    }});
    keys.patch_status(
        &name,
        &PatchParams::apply("keywarden-controller"),
        &Patch::Merge(&status),
    )
    .await?;
    Ok(checkable.then_some((id, secret)))
}

/// A well-formed argon2id PHC string at the controller's default parameters, with a random
/// salt and output: what a status holds, without paying argon2id for keys nobody presents.
fn random_phc() -> String {
    let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
    let salt: [u8; 16] = rand::random();
    let output: [u8; 32] = rand::random();
    let params = HashParams::default();
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.memory_kib,
        params.iterations,
        params.parallelism,
        engine.encode(salt),
        engine.encode(output)
    )
}

/// One verifier run's figures.
struct Figures {
    ready: Duration,
    rss_kib: u64,
    peak_kib: u64,
    idle_cpu_percent: f64,
}

impl Figures {
    fn print(&self, keys: usize, baseline: Option<&Figures>) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let goal = if keys >= 100_000 {
            " (goal at 100,000 keys: <= 100 MiB)"
        } else {
            ""
        };
        println!(
            "  verifier, {keys} keys: Ready in {:.2} s{}; RSS {:.1} MiB{goal}, peak {:.1} MiB; idle CPU {:.2}% of a core over 10 s",
            self.ready.as_secs_f64(),
            if keys >= 100_000 { " (goal <= 15 s)" } else { "" },
            mib(self.rss_kib),
            mib(self.peak_kib),
            self.idle_cpu_percent,
        );
        if let Some(baseline) = baseline {
            let per_key = |kib: u64, base: u64| {
                (kib.saturating_sub(base) * 1024) as f64 / (keys.max(2) - 1) as f64
            };
            let settled = per_key(self.rss_kib, baseline.rss_kib);
            println!(
                "    {settled:.0} bytes per key over the 1-key baseline ({:.1} MiB), peak {:.0}; \
                 100,000 keys at this rate: {:.1} MiB",
                mib(baseline.rss_kib),
                per_key(self.peak_kib, baseline.peak_kib),
                mib(baseline.rss_kib) + settled * 100_000.0 / 1_048_576.0
            );
        }
    }
}

/// Starts `binary verifier`, times it to Ready, checks the probe key, reads its memory.
async fn run_verifier(
    binary: &std::path::Path,
    kubeconfig: &std::path::Path,
    authorization: &str,
    keys: usize,
) -> anyhow::Result<Figures> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    // why: the shipped binary, so its allocator and runtime settings are what is measured.
    let mut child = tokio::process::Command::new(binary)
        .arg("verifier")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("child has no pid"))?;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = started + Duration::from_secs(300);
    loop {
        let ready = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "verifier with {keys} keys not Ready in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = started.elapsed();
    let status = http
        .get(format!("{base}/v1/check"))
        .header("authorization", authorization)
        .send()
        .await?
        .status();
    anyhow::ensure!(status.is_success(), "the probe key was refused: {status}");
    // why: let the allocator return what the start-up used before reading "settled" memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_before = cpu_ticks(pid)?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_ticks = cpu_ticks(pid)? - cpu_before;
    let (rss_kib, peak_kib) = (status_kib(pid, "VmRSS:")?, status_kib(pid, "VmHWM:")?);
    child.kill().await?;
    Ok(Figures {
        ready,
        rss_kib,
        peak_kib,
        idle_cpu_percent: idle_ticks as f64 / 10.0,
    })
}

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} for {pid}"))
}

/// User plus system CPU clock ticks (1/100 s) used so far by process `pid`.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Ok(fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0))
}
