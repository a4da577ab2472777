//! Controller benchmark (`cargo bench --bench controller`): prints figures and ratios.
//!
//! 1. argon2id ceiling measured in-process first (cores / time per hash);
//! 2. single key apply-to-Active latency (target <= 150 ms at default parameters);
//! 3. 1,000 keys applied at once: time until all Active, keys/s, ratio to the ceiling (>= 0.8),
//!    and where the time went (CPU of devcluster, controller and bench; requests; reconciles);
//! 4. controller RSS with 10,000 keys and their Secrets (<= 80 MiB) and idle CPU after settling.
//!
//! 5. soak: randomised fault schedules (failed / lost writes on every issuance and rotation write),
//!    each run asserting one secret written per issuance and a hash that verifies.
//!
//! 6. scopes: extra API requests per key for the owner's scope reviews; what an RBAC change
//!    touching every owner, and one touching none, costs.
//!
//! Sizes: `KW_BENCH_KEYS` (default 1000), `KW_BENCH_RSS_KEYS` (default 10000),
//! `KW_SOAK_RUNS` (default 200), `KW_SOAK_SEED` (default: time), `KW_BENCH_SCOPE_KEYS` (default
//! 200); `KW_BENCH_ONLY=bulk`, `=rss`, `=soak` or `=scopes` runs only that part (`bulk` is parts
//! 1 to 3).

#[path = "controller/accounting.rs"]
mod accounting;
#[path = "controller/scopes.rs"]
mod scopes;
#[path = "controller/soak.rs"]
mod soak;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use futures::{stream, StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

use keywarden::api::{AccessKey, Phase};
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

/// A multi-thread runtime whose threads carry `name`, so their CPU time can be told apart.
fn named_runtime(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .enable_all()
        .build()
}

fn main() -> anyhow::Result<()> {
    named_runtime("bench")?.block_on(bench())
}

/// argon2id at the default parameters, measured before devcluster starts.
struct Argon2Figures {
    /// Wall-clock seconds per hash on one thread.
    per_hash: f64,
    /// CPU seconds per hash on one thread.
    cpu_per_hash: f64,
    /// Hashes per second with one thread per core hashing at once.
    parallel_rate: f64,
}

fn measure_argon2(cores: usize) -> anyhow::Result<Argon2Figures> {
    let params = HashParams::default();
    let secret = SecretKey::generate();
    hash_secret(&secret, &params)?;
    let rounds = 16;
    let cpu_before = accounting::thread_cpu_seconds()?;
    let started = Instant::now();
    for _ in 0..rounds {
        hash_secret(&secret, &params)?;
    }
    let per_hash = started.elapsed().as_secs_f64() / f64::from(rounds);
    let cpu_per_hash = (accounting::thread_cpu_seconds()? - cpu_before) / f64::from(rounds);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let hashing: Vec<_> = (0..cores)
            .map(|_| {
                scope
                    .spawn(|| (0..rounds).try_for_each(|_| hash_secret(&secret, &params).map(drop)))
            })
            .collect();
        hashing.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("hashing thread panicked"))?
                .map_err(anyhow::Error::from)
        })
    })?;
    let parallel_rate = (cores * rounds as usize) as f64 / started.elapsed().as_secs_f64();
    Ok(Argon2Figures {
        per_hash,
        cpu_per_hash,
        parallel_rate,
    })
}

/// Waits until `expected` keys are Active, following a watch (a poll would list every key).
async fn all_active(keys: Api<AccessKey>, expected: usize) -> anyhow::Result<()> {
    let mut active = HashSet::new();
    let mut changes = watcher(keys, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(key) = changes.try_next().await? {
        if phase_of(&key) == Some(Phase::Active) {
            active.insert(key.name_any());
        } else {
            active.remove(&key.name_any());
        }
        if active.len() >= expected {
            return Ok(());
        }
    }
    anyhow::bail!("the AccessKey watch ended")
}

async fn apply_keys(keys: &Api<AccessKey>, prefix: &str, count: usize) -> anyhow::Result<()> {
    stream::iter(0..count)
        .map(|i| async move {
            let name = format!("{prefix}-{i:05}");
            // why: one owner per key, so the per-owner limit does not cap the benchmark.
            keys.create(
                &PostParams::default(),
                &KeyBuilder::new(&name, &name).build(),
            )
            .await
        })
        .buffer_unordered(32)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

async fn bench() -> anyhow::Result<()> {
    match std::env::var("KW_BENCH_ONLY").as_deref() {
        Ok("soak") => return soak::run(env_count("KW_SOAK_RUNS", 200)).await,
        Ok("rss") => return rss_and_idle_cpu().await,
        Ok("bulk") => return bulk().await,
        Ok("scopes") => return scopes::run(env_count("KW_BENCH_SCOPE_KEYS", 200)).await,
        _ => {}
    }
    bulk().await?;
    rss_and_idle_cpu().await?;
    scopes::run(env_count("KW_BENCH_SCOPE_KEYS", 200)).await?;
    soak::run(env_count("KW_SOAK_RUNS", 200)).await
}

/// Parts 1 to 3: ceiling, single-key latency, bulk throughput and where its time went.
async fn bulk() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let argon2 = measure_argon2(cores)?;
    let ceiling = cores as f64 / argon2.per_hash;
    println!("argon2id (default parameters): {:.1} ms/hash; ceiling on {cores} cores: {ceiling:.1} keys/s", argon2.per_hash * 1e3);
    println!(
        "  {cores} threads hashing at once: {:.1} hashes/s ({:.1} ms CPU per hash)",
        argon2.parallel_rate,
        argon2.cpu_per_hash * 1e3
    );

    // why: devcluster and the controller run on runtimes of their own, so that the CPU each
    // used can be read per thread name; they still share the same cores, as before.
    let devcluster_runtime = named_runtime("devcluster")?;
    let controller_runtime = named_runtime("controller")?;
    let cluster = devcluster_runtime.spawn(TestCluster::start()).await?;
    let keys = Api::<AccessKey>::namespaced(
        kube::Client::try_from(cluster.admin_config.clone())?,
        &cluster.namespace,
    );
    let requests = accounting::RequestCounts::default();
    let probe_port = accounting::free_port()?;
    let controller = {
        let _on_controller_runtime = controller_runtime.enter();
        RunningController::start(
            accounting::counting_client(cluster.controller_config.clone(), requests.clone())?,
            ControllerArgs {
                probe_addr: ([127, 0, 0, 1], probe_port).into(),
                disable_leader_election: true,
                leader_election_namespace: keywarden::cli::access_control::NAMESPACE.into(),
                ..ControllerArgs::default()
            },
        )
    };

    let mut latencies = Vec::new();
    for i in 0..5 {
        let name = format!("latency-{i}");
        let started = Instant::now();
        keys.create(
            &PostParams::default(),
            &KeyBuilder::new(&name, &name).build(),
        )
        .await?;
        loop {
            if keys.get(&name).await.ok().and_then(|k| phase_of(&k)) == Some(Phase::Active) {
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
    let reconciles_before = reconciles(probe_port).await?;
    let requests_before = requests.snapshot();
    let cpu_before = accounting::cpu_ticks_by_thread_name()?;
    let started = Instant::now();
    let active = tokio::spawn(all_active(keys.clone(), count + latencies.len()));
    apply_keys(&keys, "bulk", count).await?;
    active.await??;
    let took = started.elapsed().as_secs_f64();
    let cpu = accounting::increase_between(&cpu_before, &accounting::cpu_ticks_by_thread_name()?);
    let rate = count as f64 / took;
    println!(
        "{count} keys applied at once: all Active in {took:.1} s = {rate:.1} keys/s; ratio to argon2id ceiling {:.2} (target >= 0.8)",
        rate / ceiling
    );
    println!(
        "  ratio to the {cores} threads hashing at once: {:.2}",
        rate / argon2.parallel_rate
    );
    let reconciled = reconciles(probe_port).await? - reconciles_before;
    print_where_time_went(&cpu, took, cores, count as f64 * argon2.cpu_per_hash);
    println!(
        "  reconciles: {reconciled:.0} = {:.2} per key",
        reconciled / count as f64
    );
    print_requests(&requests_before, &requests.snapshot(), count);

    controller.stop().await;
    drop(cluster);
    devcluster_runtime.shutdown_background();
    controller_runtime.shutdown_background();
    Ok(())
}

/// Reconciliations the controller has finished so far.
async fn reconciles(probe_port: u16) -> anyhow::Result<f64> {
    accounting::scrape_metric(probe_port, "keywarden_reconcile_duration_seconds_count").await
}

/// CPU seconds of each thread group during the bulk run, against the cores available.
fn print_where_time_went(cpu: &BTreeMap<String, u64>, took: f64, cores: usize, argon2: f64) {
    // why: /proc reports CPU in clock ticks of 1/100 s (USER_HZ) on Linux.
    let seconds = |name: &str| cpu.get(name).copied().unwrap_or(0) as f64 / 100.0;
    let total: f64 = cpu.values().sum::<u64>() as f64 / 100.0;
    let (devcluster, controller, bench) = (
        seconds("devcluster"),
        seconds("controller"),
        seconds("bench"),
    );
    println!(
        "  CPU during the run ({:.1} core-s available): devcluster {devcluster:.1} s, \
         controller {controller:.1} s (argon2id ~{argon2:.1} s of it, from the CPU per hash measured alone), bench client {bench:.1} s, \
         other threads {:.1} s",
        took * cores as f64,
        total - devcluster - controller - bench
    );
}

/// API requests of the controller during the bulk run, in total and per key.
fn print_requests(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, keys: usize) {
    let delta = accounting::increase_between(before, after);
    let total: u64 = delta.values().sum();
    let listed: Vec<String> = delta
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(what, n)| format!("{what} {:.2}", *n as f64 / keys as f64))
        .collect();
    println!(
        "  controller API requests: {total} = {:.2} per key ({})",
        total as f64 / keys as f64,
        listed.join(", ")
    );
}

/// Runs `keywarden controller` as a child process over many keys and reads its RSS and idle CPU.
async fn rss_and_idle_cpu() -> anyhow::Result<()> {
    let count = env_count("KW_BENCH_RSS_KEYS", 10_000);
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir()?;
    let kubeconfig = cluster
        .write_kubeconfig(dir.path())
        .ok_or_else(|| anyhow::anyhow!("RSS needs devcluster"))?;
    // why: the shipped binary, so its allocator and runtime settings are what is measured.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywarden"))
        .arg("controller")
        .env("KUBECONFIG", &kubeconfig)
        .env(
            "KEYWARDEN_PROBE_ADDR",
            format!("127.0.0.1:{}", accounting::free_port()?),
        )
        .env("KEYWARDEN_ARGON2_MEMORY_KIB", "1024")
        .env("KEYWARDEN_ARGON2_ITERATIONS", "1")
        // why: its audit log (a line per issued key) would bury the figures.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("child has no pid"))?;
    let started = Instant::now();
    let active = tokio::spawn(all_active(cluster.keys(), count));
    apply_keys(&cluster.keys(), "rss", count).await?;
    active.await??;
    println!(
        "{count} keys issued by a controller process in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // why: let the status writes' own watch events drain before measuring "idle".
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_kib = support::rss_kib(pid)?;
    let resident = accounting::resident_breakdown(pid)?;
    let cpu_before = support::cpu_ticks(pid)?;
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let cpu_ticks = support::cpu_ticks(pid)? - cpu_before;
    println!(
        "controller RSS with {count} keys and Secrets: {:.1} MiB (target <= 80 MiB)",
        rss_kib as f64 / 1024.0
    );
    println!(
        "  of which heap {:.1} MiB, anonymous mappings {:.1} MiB ({} of 1 MiB or more), files {:.1} MiB",
        resident.heap as f64 / 1024.0,
        resident.anonymous as f64 / 1024.0,
        resident.large_anonymous_mappings,
        resident.files as f64 / 1024.0
    );
    println!(
        "idle CPU over {} s after settling: {:.2}% of one core ({cpu_ticks} ticks; target ~0)",
        idle.as_secs(),
        cpu_ticks as f64 / (idle.as_secs_f64() * 100.0) * 100.0
    );
    child.kill().await?;
    Ok(())
}
