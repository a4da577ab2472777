//! Scale benchmark (`cargo bench --bench scale`): keywarden at 1,000, 10,000 (and 100,000) keys.
//!
//! Per size, on a fresh devcluster process with authentication, RBAC and keywarden's admission
//! policies on, the release `keywarden controller` and `keywarden verifier` as child processes
//! acting as the chart's ServiceAccounts, argon2id at cheap parameters (1 MiB, 1 iteration) so
//! that hashing does not dominate:
//!
//! 1. keys created through the API by the admin (64 at once), one owner each; time until all are
//!    Active; the controller's resident memory after settling;
//! 2. a verifier started: time until `/readyz` answers 200; its resident memory;
//! 3. p50 and p99 of 2,000 sequential cached checks of one key (after a first check cached it);
//! 4. the controller killed and started again: time until `/readyz`, until it has reconciled
//!    every key once (`keywarden_reconcile_duration_seconds_count` >= keys), and its API
//!    requests per key meanwhile (counted by devcluster, `/_devcluster/requests`);
//! 5. an idle window (`KW_SCALE_IDLE_SECONDS`, default 60 s of real time; no simulated clock
//!    reaches the controller's and verifier's timers): API requests of the controller and the
//!    verifier, extrapolated to 10 minutes, per key;
//! 6. VmRSS and VmHWM (peak) of the three processes.
//!
//! Sizes: `KW_SCALE_SIZES` (default `1000,10000`). Writes `target/scale/scale.csv` (rows of
//! other sizes from earlier runs are kept) and `docs/scale.svg`; `KW_SCALE_SIZES=` measures
//! nothing and draws the chart again from the CSV.

#[path = "scale/processes.rs"]
mod processes;
#[path = "scale/report.rs"]
mod report;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keywarden::cli::access_control;
use processes::Memory;
use support::{all_active, create_keys_at_once, TestCluster};

// why: devcluster runs as this binary (a child process); `keywarden dev` runs it on mimalloc
// (src/main.rs), and on glibc malloc a third of devcluster's CPU went to malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(kubeconfig) = std::env::var_os(processes::DEVCLUSTER_ROLE) {
        return runtime.block_on(processes::serve_devcluster(Path::new(&kubeconfig)));
    }
    runtime.block_on(bench())
}

fn sizes() -> Vec<usize> {
    std::env::var("KW_SCALE_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000])
}

fn idle_window() -> Duration {
    Duration::from_secs(
        std::env::var("KW_SCALE_IDLE_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    )
}

async fn bench() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let csv = root.join("target/scale/scale.csv");
    let mut rows = report::read(&csv);
    let sizes = sizes();
    // why: `KW_SCALE_SIZES=` (no sizes) draws the chart again from the CSV alone.
    if sizes.is_empty() {
        anyhow::ensure!(!rows.is_empty(), "no figures in {}", csv.display());
        std::fs::write(root.join("docs/scale.svg"), report::svg(&rows))?;
    }
    for keys in sizes {
        let row = measure(keys).await?;
        rows.insert(keys as u64, report::cells(&row));
        report::write(&csv, &rows)?;
        std::fs::write(root.join("docs/scale.svg"), report::svg(&rows))?;
    }
    println!("wrote {} and docs/scale.svg", csv.display());
    Ok(())
}

/// Usernames of keywarden's two ServiceAccounts, as devcluster counts their requests.
fn service_account_user(name: &str) -> String {
    format!("system:serviceaccount:{}:{name}", access_control::NAMESPACE)
}

async fn measure(count: usize) -> anyhow::Result<report::Row> {
    let mut row = report::Row::new();
    row.insert("keys", count as f64);
    println!("== {count} keys ==");
    let dir = tempfile::tempdir()?;
    let (devcluster, admin_kubeconfig) = processes::start_devcluster(dir.path()).await?;
    let api = processes::devcluster_http_url(&admin_kubeconfig)?;
    // why: TestCluster treats a kubeconfig from the environment as "a real cluster" and installs
    // the CRDs, keywarden's RBAC and admission policies and a namespace there.
    std::env::set_var("KEYWARDEN_TEST_KUBECONFIG", &admin_kubeconfig);
    let cluster = TestCluster::start().await;
    let controller_kubeconfig = dir.path().join("controller.kubeconfig");
    let verifier_kubeconfig = dir.path().join("verifier.kubeconfig");
    for (service_account, path) in [
        (
            access_control::CONTROLLER_SERVICE_ACCOUNT,
            &controller_kubeconfig,
        ),
        (
            access_control::VERIFIER_SERVICE_ACCOUNT,
            &verifier_kubeconfig,
        ),
    ] {
        let token = access_control::service_account_token(&cluster.client, service_account).await?;
        processes::write_token_kubeconfig(&admin_kubeconfig, &token, path)?;
    }
    let controller_user = service_account_user(access_control::CONTROLLER_SERVICE_ACCOUNT);
    let verifier_user = service_account_user(access_control::VERIFIER_SERVICE_ACCOUNT);
    let http = reqwest::Client::new();

    // 1. Issue.
    let probe_port = processes::free_port()?;
    let controller = processes::start_controller(&controller_kubeconfig, probe_port)?;
    let keys = cluster.keys();
    let started = Instant::now();
    let active = tokio::spawn(all_active(keys.clone(), count));
    create_keys_at_once(&keys, "scale", count, 64).await?;
    let created = started.elapsed().as_secs_f64();
    active.await??;
    let issued = started.elapsed().as_secs_f64();
    row.insert("create_seconds", created);
    row.insert("issue_seconds", issued);
    println!(
        "created {count} keys in {created:.1} s ({:.0}/s); all Active after {issued:.1} s ({:.0} keys/s)",
        count as f64 / created,
        count as f64 / issued
    );
    settle(&http, probe_port, count).await?;
    let controller_memory = controller.memory_mib()?;
    row.insert("controller_rss_mib", controller_memory.rss);
    row.insert("controller_peak_mib", controller_memory.peak);
    print_memory("controller after issuing", controller_memory, count);

    // 2. Verifier start.
    let verifier_port = processes::free_port()?;
    let started = Instant::now();
    let verifier = processes::start_verifier(&verifier_kubeconfig, verifier_port)?;
    wait_ready(&http, &format!("http://127.0.0.1:{verifier_port}/readyz")).await?;
    let verifier_ready = started.elapsed().as_secs_f64();
    row.insert("verifier_ready_seconds", verifier_ready);
    println!("verifier start -> /readyz 200: {verifier_ready:.2} s");

    // 3. Cached checks.
    let (p50, p99) = cached_check_latency(&cluster, &http, verifier_port).await?;
    row.insert("check_p50_us", p50);
    row.insert("check_p99_us", p99);
    println!("cached check, 2,000 sequential: p50 {p50:.0} us, p99 {p99:.0} us");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let verifier_memory = verifier.memory_mib()?;
    row.insert("verifier_rss_mib", verifier_memory.rss);
    row.insert("verifier_peak_mib", verifier_memory.peak);
    print_memory("verifier", verifier_memory, count);

    // 4. Controller restart.
    controller.kill().await?;
    let before = request_counts(&http, &api).await?;
    let started = Instant::now();
    let controller = processes::start_controller(&controller_kubeconfig, probe_port)?;
    wait_ready(&http, &format!("http://127.0.0.1:{probe_port}/readyz")).await?;
    let ready = started.elapsed().as_secs_f64();
    loop {
        if reconciles(&http, probe_port).await.unwrap_or(0.0) >= count as f64 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "the restarted controller did not reconcile every key within 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reconciled = started.elapsed().as_secs_f64();
    settle(&http, probe_port, count).await?;
    let after = request_counts(&http, &api).await?;
    let restart_requests = requests_of(&before, &after, &controller_user);
    let restart_total: u64 = restart_requests.values().sum();
    row.insert("restart_ready_seconds", ready);
    row.insert("restart_reconciled_seconds", reconciled);
    row.insert(
        "restart_requests_per_key",
        restart_total as f64 / count as f64,
    );
    println!(
        "controller restart -> /readyz {ready:.2} s, every key reconciled {reconciled:.2} s; \
         API requests {restart_total} = {:.3} per key ({})",
        restart_total as f64 / count as f64,
        listed(&restart_requests, count)
    );
    let restarted_memory = controller.memory_mib()?;
    row.insert("controller_after_restart_rss_mib", restarted_memory.rss);
    print_memory("controller after restart", restarted_memory, count);

    // 5. Idle.
    let window = idle_window();
    let before = request_counts(&http, &api).await?;
    tokio::time::sleep(window).await;
    let after = request_counts(&http, &api).await?;
    let mut idle = requests_of(&before, &after, &controller_user);
    for (what, n) in requests_of(&before, &after, &verifier_user) {
        *idle.entry(format!("verifier {what}")).or_default() += n;
    }
    let idle_total: u64 = idle.values().sum();
    let per_key_10min = idle_total as f64 * (600.0 / window.as_secs_f64()) / count as f64;
    row.insert("idle_requests_per_key_per_10min", per_key_10min);
    println!(
        "idle {} s: controller + verifier API requests {idle_total} -> {per_key_10min:.5} per key per 10 min, extrapolated ({})",
        window.as_secs(),
        listed(&idle, 1)
    );

    // 6. Memory at the end.
    let devcluster_memory = devcluster.memory_mib()?;
    row.insert("devcluster_rss_mib", devcluster_memory.rss);
    row.insert("devcluster_peak_mib", devcluster_memory.peak);
    print_memory("devcluster", devcluster_memory, count);
    let controller_end = controller.memory_mib()?;
    let verifier_end = verifier.memory_mib()?;
    println!(
        "after the idle window: controller {:.1} MiB, verifier {:.1} MiB",
        controller_end.rss, verifier_end.rss
    );
    controller.kill().await?;
    verifier.kill().await?;
    drop(cluster);
    devcluster.kill().await?;
    Ok(row)
}

fn print_memory(what: &str, memory: Memory, keys: usize) {
    println!(
        "{what}: RSS {:.1} MiB (peak {:.1} MiB) = {:.2} KiB per key",
        memory.rss,
        memory.peak,
        memory.rss * 1024.0 / keys as f64
    );
}

/// Waits until the controller has reconciled at least `keys` times and then stops for a second.
async fn settle(http: &reqwest::Client, probe_port: u16, keys: usize) -> anyhow::Result<()> {
    let mut last = -1.0;
    loop {
        let now = reconciles(http, probe_port).await.unwrap_or(0.0);
        if now >= keys as f64 && now == last {
            return Ok(());
        }
        last = now;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn wait_ready(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if http
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{url} not ready within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// AccessKey reconciliations the controller has finished.
async fn reconciles(http: &reqwest::Client, probe_port: u16) -> anyhow::Result<f64> {
    let text = http
        .get(format!("http://127.0.0.1:{probe_port}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("keywarden_reconcile_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no reconcile count in /metrics"))
}

#[derive(serde::Deserialize)]
struct Counts {
    requests: Vec<Count>,
}

#[derive(serde::Deserialize)]
struct Count {
    user: String,
    verb: String,
    resource: String,
    count: u64,
}

async fn request_counts(http: &reqwest::Client, api: &str) -> anyhow::Result<Vec<Count>> {
    Ok(http
        .get(format!("{api}/_devcluster/requests"))
        .send()
        .await?
        .json::<Counts>()
        .await?
        .requests)
}

/// Requests of `user` between two samples, by `verb resource`.
fn requests_of(before: &[Count], after: &[Count], user: &str) -> BTreeMap<String, u64> {
    let label = |c: &Count| format!("{} {}", c.verb, c.resource);
    let mut delta = BTreeMap::new();
    for c in after.iter().filter(|c| c.user == user) {
        *delta.entry(label(c)).or_insert(0) += c.count;
    }
    for c in before.iter().filter(|c| c.user == user) {
        if let Some(n) = delta.get_mut(&label(c)) {
            *n -= c.count.min(*n);
        }
    }
    delta.retain(|_, n| *n > 0);
    delta
}

fn listed(requests: &BTreeMap<String, u64>, per: usize) -> String {
    requests
        .iter()
        .map(|(what, n)| {
            if per == 1 {
                format!("{what} {n}")
            } else {
                format!("{what} {:.3}", *n as f64 / per as f64)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// p50 and p99 in microseconds of sequential checks of one key already in the verified cache.
async fn cached_check_latency(
    cluster: &TestCluster,
    http: &reqwest::Client,
    port: u16,
) -> anyhow::Result<(f64, f64)> {
    let key = cluster.keys().get("scale-000000").await?;
    let secret_name = key
        .status
        .and_then(|s| s.secret_name)
        .ok_or_else(|| anyhow::anyhow!("the first key names no Secret"))?;
    let secret = cluster.secrets().get(&secret_name).await?;
    let token = support::secret_data(&secret, keywarden::controller::DATA_TOKEN)
        .ok_or_else(|| anyhow::anyhow!("the Secret holds no token"))?;
    let url = format!("http://127.0.0.1:{port}/v1/check");
    let authorization = format!("Bearer {token}");
    let first = http
        .get(&url)
        .header("authorization", &authorization)
        .send()
        .await?
        .status();
    anyhow::ensure!(first.is_success(), "the first check answered {first}");
    let mut latencies = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        let started = Instant::now();
        let status = http
            .get(&url)
            .header("authorization", &authorization)
            .send()
            .await?
            .status();
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(status.is_success(), "a cached check answered {status}");
    }
    latencies.sort_by(f64::total_cmp);
    Ok((
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
    ))
}
