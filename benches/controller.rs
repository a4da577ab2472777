//! Controller benchmark (`cargo bench --bench controller`): prints figures and ratios.
//!
//! 1. argon2id ceiling: one thread per core hashing at the default parameters in a process of
//!    its own (this binary re-executed), before anything else runs: hashes/s, wall and CPU per hash
//!    (measured again after the run, to show how far the machine drifted meanwhile);
//! 2. single key apply-to-Active latency (target <= 150 ms at default parameters);
//! 3. 1,000 keys applied at once to the release `keywarden controller` process: time until all
//!    are Active, keys/s and its ratio to the ceiling (>= 0.8), the controller's CPU per issued
//!    key against the ceiling's CPU per hash (<= 1.1), and where the rest went (CPU of
//!    devcluster and the bench client, reconciles, and with `KW_BENCH_COUNT_REQUESTS=1` the
//!    controller's API requests, counted by a plain-HTTP proxy in front of devcluster);
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
//! 200), `KW_BENCH_CEILING_HASHES` (per thread, default 160), `KW_BENCH_KEYWARDEN` (another
//! `keywarden` binary to run as the controller); `KW_BENCH_ONLY=bulk`, `=rss`,
//! `=soak` or `=scopes` runs only that part (`bulk` is parts 1 to 3).

#[path = "controller/accounting.rs"]
mod accounting;
#[path = "controller/ceiling.rs"]
mod ceiling;
#[path = "controller/process.rs"]
mod process;
#[path = "controller/scopes.rs"]
mod scopes;
#[path = "controller/soak.rs"]
mod soak;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};

use keywarden::api::{AccessKey, Phase};
use process::ControllerProcess;
use support::{all_active, create_keys_at_once, phase_of, KeyBuilder, TestCluster};

// why: devcluster runs inside this process; `keywarden dev` runs it on mimalloc (src/main.rs), and
// on glibc malloc a third of devcluster's CPU went to malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    // why: the ceiling process is this binary too; it hashes and exits before any runtime starts.
    if let Some(threads) = std::env::var(ceiling::CEILING_MODE)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return ceiling::run(threads);
    }
    named_runtime("bench")?.block_on(bench())
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
    let ceiling = ceiling::measure_in_own_process(cores)?;
    print_ceiling("before the run", &ceiling);

    // why: devcluster runs on a runtime of its own, so that the CPU it used can be read per
    // thread name; the controller is a process of its own, read from /proc/<pid>/stat.
    let devcluster_runtime = named_runtime("devcluster")?;
    let cluster = devcluster_runtime.spawn(TestCluster::start()).await?;
    let keys = Api::<AccessKey>::namespaced(
        kube::Client::try_from(cluster.admin_config.clone())?,
        &cluster.namespace,
    );
    let dir = tempfile::tempdir()?;
    let kubeconfig = cluster.write_controller_kubeconfig(dir.path()).await;
    let requests = accounting::RequestCounts::default();
    let counting = std::env::var_os("KW_BENCH_COUNT_REQUESTS").is_some();
    if counting {
        let dev = cluster
            .dev()
            .ok_or_else(|| anyhow::anyhow!("counting requests needs devcluster"))?;
        let proxy = process::counting_proxy(dev.addr(), requests.clone()).await?;
        process::point_kubeconfig_at(&kubeconfig, proxy)?;
        println!(
            "  (controller requests counted through a plain-HTTP proxy: figures below include it)"
        );
    }
    let controller = ControllerProcess::start(&kubeconfig, &[]).await?;

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
    // why: let the latency keys' own follow-up reconciles finish before the bulk starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let count = env_count("KW_BENCH_KEYS", 1000);
    let reconciles_before = reconciles(controller.probe_port).await?;
    let requests_before = requests.snapshot();
    let cpu_before = accounting::cpu_ticks_by_thread_name()?;
    let controller_before = controller.cpu_ticks()?;
    let threads_before = accounting::cpu_ticks_by_thread_name_of(&controller.pid.to_string())?;
    let started = Instant::now();
    let active = tokio::spawn(all_active(keys.clone(), count + latencies.len()));
    create_keys_at_once(&keys, "bulk", count, 32).await?;
    active.await??;
    let took = started.elapsed().as_secs_f64();
    let controller_cpu = (controller.cpu_ticks()? - controller_before) as f64 / 100.0;
    let controller_threads = support::increase_between(
        &threads_before,
        &accounting::cpu_ticks_by_thread_name_of(&controller.pid.to_string())?,
    );
    let cpu = support::increase_between(&cpu_before, &accounting::cpu_ticks_by_thread_name()?);
    let rate = count as f64 / took;
    println!(
        "{count} keys applied at once: all Active in {took:.1} s = {rate:.1} keys/s; \
         ratio to the argon2id ceiling {:.2} (target >= 0.8)",
        rate / ceiling.rate()
    );
    let cpu_per_key = controller_cpu / count as f64;
    println!(
        "  controller process CPU: {controller_cpu:.1} s = {:.1} ms per issued key; \
         ratio to the ceiling's CPU per hash {:.2} (target <= 1.1)",
        cpu_per_key * 1e3,
        cpu_per_key / ceiling.cpu_per_hash()
    );
    print_hashing_share(&controller_threads, controller_cpu, count, &ceiling);
    // why: a settle pause lets the last status writes' own reconciles be counted too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reconciled = reconciles(controller.probe_port).await? - reconciles_before;
    print_where_time_went(&cpu, took, cores);
    println!(
        "  reconciles: {reconciled:.0} = {:.2} per key",
        reconciled / count as f64
    );
    if counting {
        print_requests(&requests_before, &requests.snapshot(), count);
    }

    controller.stop().await?;
    drop(cluster);
    devcluster_runtime.shutdown_background();
    // why: on a shared machine the hash rate drifts by tens of percent within minutes; a second
    // ceiling right after the run shows how far, beside the goal's figure (the one before).
    let after = ceiling::measure_in_own_process(cores)?;
    print_ceiling("after the run", &after);
    println!(
        "  ratio to the ceiling after the run {:.2}; controller CPU per key to its CPU per hash {:.2}",
        rate / after.rate(),
        cpu_per_key / after.cpu_per_hash()
    );
    Ok(())
}

fn print_ceiling(when: &str, ceiling: &ceiling::Ceiling) {
    println!(
        "argon2id ceiling {when} (default parameters, {} threads hashing in a process of their own, \
         {} hashes in {:.1} s): {:.1} hashes/s; {:.1} ms wall per hash per thread, {:.1} ms CPU per hash",
        ceiling.threads,
        ceiling.hashes,
        ceiling.wall,
        ceiling.rate(),
        ceiling.wall_per_hash() * 1e3,
        ceiling.cpu_per_hash() * 1e3
    );
}

/// The controller's CPU split into its hashing threads and the rest, per issued key.
fn print_hashing_share(
    threads: &BTreeMap<String, u64>,
    total: f64,
    keys: usize,
    ceiling: &ceiling::Ceiling,
) {
    // why: /proc reports CPU in clock ticks of 1/100 s (USER_HZ) on Linux.
    let hashing = threads
        .get(keywarden::controller::HASH_THREAD_NAME)
        .copied()
        .unwrap_or(0) as f64
        / 100.0;
    let per_key = |seconds: f64| seconds / keys as f64 * 1e3;
    println!(
        "    of which hashing threads {:.1} ms per key ({:.2}x the ceiling's CPU per hash), \
         everything else {:.1} ms per key",
        per_key(hashing),
        hashing / keys as f64 / ceiling.cpu_per_hash(),
        per_key(total - hashing)
    );
}

/// Reconciliations the controller has finished so far.
async fn reconciles(probe_port: u16) -> anyhow::Result<f64> {
    accounting::scrape_metric(probe_port, "keywarden_reconcile_duration_seconds_count").await
}

/// CPU seconds of the bench process's thread groups during the bulk run.
fn print_where_time_went(cpu: &BTreeMap<String, u64>, took: f64, cores: usize) {
    // why: /proc reports CPU in clock ticks of 1/100 s (USER_HZ) on Linux.
    let seconds = |name: &str| cpu.get(name).copied().unwrap_or(0) as f64 / 100.0;
    let total: f64 = cpu.values().sum::<u64>() as f64 / 100.0;
    let (devcluster, bench) = (seconds("devcluster"), seconds("bench"));
    println!(
        "  other CPU during the run ({:.1} core-s available): devcluster {devcluster:.1} s, \
         bench client {bench:.1} s, other threads of the bench {:.1} s",
        took * cores as f64,
        total - devcluster - bench
    );
}

/// API requests of the controller during the bulk run, in total and per key.
fn print_requests(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, keys: usize) {
    let delta = support::increase_between(before, after);
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
    // why: as the chart's ServiceAccount; the admission policies let no one else write status.
    let kubeconfig = cluster.write_controller_kubeconfig(dir.path()).await;
    // why: the shipped binary, so its allocator and runtime settings are what is measured.
    let controller = ControllerProcess::start(
        &kubeconfig,
        &[
            ("KEYWARDEN_ARGON2_MEMORY_KIB", "1024"),
            ("KEYWARDEN_ARGON2_ITERATIONS", "1"),
        ],
    )
    .await?;
    let pid = controller.pid;
    let started = Instant::now();
    let active = tokio::spawn(all_active(cluster.keys(), count));
    create_keys_at_once(&cluster.keys(), "rss", count, 32).await?;
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
    controller.stop().await
}
