//! Controller benchmark (`cargo bench --bench controller`): prints figures and ratios.
//!
//! 1. argon2id ceiling measured in-process first (cores / time per hash);
//! 2. single key apply-to-Active latency (target <= 150 ms at default parameters);
//! 3. 1,000 keys applied at once: time until all Active, keys/s, ratio to the ceiling (>= 0.8);
//! 4. controller RSS with 10,000 keys and their Secrets (<= 80 MiB) and idle CPU after settling.
//!
//! 5. soak: randomised fault schedules (failed / lost writes on every issuance and rotation write),
//!    each run asserting one secret written per issuance and a hash that verifies.
//!
//! Sizes: `KW_BENCH_KEYS` (default 1000), `KW_BENCH_RSS_KEYS` (default 10000),
//! `KW_SOAK_RUNS` (default 200), `KW_SOAK_SEED` (default: time); `KW_BENCH_ONLY=soak` or `=rss`
//! runs only that part.

#[path = "controller/soak.rs"]
mod soak;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use kube::api::ListParams;

use keywarden::api::Phase;
use keywarden::controller::ControllerArgs;
use keywarden::keys::hash::{hash_secret, HashParams};
use keywarden::keys::material::SecretKey;
use support::{phase_of, KeyBuilder, RunningController, TestCluster};

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(pos) = args.iter().position(|a| a == "--child-controller") {
        let url = args.get(pos + 1).cloned().unwrap_or_default();
        return runtime.block_on(support::run_child_controller(&url));
    }
    runtime.block_on(bench())
}

/// Seconds per argon2id hash at the default parameters, on one thread.
fn argon2_seconds_per_hash() -> anyhow::Result<f64> {
    let params = HashParams::default();
    let secret = SecretKey::generate();
    hash_secret(&secret, &params)?;
    let rounds = 16;
    let started = Instant::now();
    for _ in 0..rounds {
        hash_secret(&secret, &params)?;
    }
    Ok(started.elapsed().as_secs_f64() / f64::from(rounds))
}

async fn all_active(cluster: &TestCluster, expected: usize) -> anyhow::Result<()> {
    loop {
        let keys = cluster.keys().list(&ListParams::default()).await?;
        let active = keys
            .items
            .iter()
            .filter(|k| phase_of(k) == Some(Phase::Active))
            .count();
        if active >= expected {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn apply_keys(cluster: &TestCluster, prefix: &str, count: usize) {
    stream::iter(0..count)
        .for_each_concurrent(32, |i| async move {
            let name = format!("{prefix}-{i:05}");
            // why: one owner per key, so the per-owner limit does not cap the benchmark.
            cluster
                .create_key(&KeyBuilder::new(&name, &name).build())
                .await;
        })
        .await;
}

async fn bench() -> anyhow::Result<()> {
    match std::env::var("KW_BENCH_ONLY").as_deref() {
        Ok("soak") => return soak::run(env_count("KW_SOAK_RUNS", 200)).await,
        Ok("rss") => return rss_and_idle_cpu().await,
        _ => {}
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let per_hash = argon2_seconds_per_hash()?;
    let ceiling = cores as f64 / per_hash;
    println!("argon2id (default parameters): {:.1} ms/hash; ceiling on {cores} cores: {ceiling:.1} keys/s", per_hash * 1e3);

    let cluster = TestCluster::start().await;
    let controller = RunningController::start(
        cluster.client.clone(),
        ControllerArgs {
            probe_addr: "127.0.0.1:0".parse()?,
            disable_leader_election: true,
            ..ControllerArgs::default()
        },
    );

    let mut latencies = Vec::new();
    for i in 0..5 {
        let name = format!("latency-{i}");
        let started = Instant::now();
        cluster
            .create_key(&KeyBuilder::new(&name, &name).build())
            .await;
        loop {
            if cluster
                .keys()
                .get(&name)
                .await
                .ok()
                .and_then(|k| phase_of(&k))
                == Some(Phase::Active)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "single key apply-to-Active: median {:.0} ms (min {:.0} ms, max {:.0} ms; target <= 150 ms)",
        latencies[2].as_secs_f64() * 1e3,
        latencies[0].as_secs_f64() * 1e3,
        latencies[4].as_secs_f64() * 1e3
    );

    let count = env_count("KW_BENCH_KEYS", 1000);
    let started = Instant::now();
    apply_keys(&cluster, "bulk", count).await;
    all_active(&cluster, count + latencies.len()).await?;
    let took = started.elapsed().as_secs_f64();
    let rate = count as f64 / took;
    println!(
        "{count} keys applied at once: all Active in {took:.1} s = {rate:.1} keys/s; ratio to argon2id ceiling {:.2} (target >= 0.8)",
        rate / ceiling
    );
    controller.stop().await;
    drop(cluster);

    rss_and_idle_cpu().await?;
    soak::run(env_count("KW_SOAK_RUNS", 200)).await
}

/// Runs the controller as a child process over many keys and reads its RSS and idle CPU.
async fn rss_and_idle_cpu() -> anyhow::Result<()> {
    let count = env_count("KW_BENCH_RSS_KEYS", 10_000);
    let cluster = TestCluster::start().await;
    let url = cluster
        .url()
        .ok_or_else(|| anyhow::anyhow!("RSS needs devcluster"))?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--child-controller", &url])
        .env("KEYWARDEN_ARGON2_MEMORY_KIB", "1024")
        .env("KEYWARDEN_ARGON2_ITERATIONS", "1")
        .kill_on_drop(true)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("child has no pid"))?;
    let started = Instant::now();
    apply_keys(&cluster, "rss", count).await;
    all_active(&cluster, count).await?;
    println!(
        "{count} keys issued by a controller process in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // why: let the status writes' own watch events drain before measuring "idle".
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_kib = support::rss_kib(pid)?;
    let cpu_before = support::cpu_ticks(pid)?;
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let cpu_ticks = support::cpu_ticks(pid)? - cpu_before;
    println!(
        "controller RSS with {count} keys and Secrets: {:.1} MiB (target <= 80 MiB)",
        rss_kib as f64 / 1024.0
    );
    println!(
        "idle CPU over {} s after settling: {:.2}% of one core ({cpu_ticks} ticks; target ~0)",
        idle.as_secs(),
        cpu_ticks as f64 / (idle.as_secs_f64() * 100.0) * 100.0
    );
    child.kill().await?;
    Ok(())
}
