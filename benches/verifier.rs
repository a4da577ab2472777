//! Verifier benchmark (`cargo bench --bench verifier`): figures and ratios against baselines
//! measured in the same run.
//!
//! - wrk -> verifier `/v1/check` with a cached valid key vs wrk -> the baseline: hyper's HTTP/1
//!   server doing the essential work of a cached check (decode Basic credentials, look the ID up
//!   in a hash map, compare an HMAC-SHA256 in constant time; `verifier/baseline.rs`). Both run
//!   with the same number of tokio worker threads, 1 and then 2: server CPU per request (target
//!   <= 1.25x), throughput (target >= 0.8x), p99 at 32 connections. Each server runs in its own
//!   process (this binary re-executed) so its CPU time is its own.
//! - nginx `auth_request` -> verifier vs nginx `auth_request` -> the baseline (target >= 0.9x).
//! - Flood: valid-key throughput while 1,000 wrong-secret requests/s hit the same ID
//!   (target >= 0.5x of unloaded).
//! - Revocation latency: patch `spec.active: false` -> first 401, p99 over 50 trials
//!   (target <= 1 s), against an in-process devcluster.
//! - Memory and start-up at scale (`verifier/rss.rs`): the `keywarden verifier` binary over
//!   2,000, 20,000 and 100,000 keys (`KW_BENCH_RSS_KEYS`): RSS, bytes per key, time to Ready,
//!   idle CPU (goals at 100,000 keys: <= 100 MiB, Ready <= 15 s).
//!
//! `KW_BENCH_ONLY=rss` runs only the memory part, `KW_BENCH_ONLY=revocation` only revocation.
//!
//! Needs `wrk` and `nginx` (scripts/ensure-proxies.sh); sections whose tool is missing are
//! skipped with a message.

#[path = "verifier/baseline.rs"]
mod baseline;
#[path = "verifier/revocation.rs"]
mod revocation;
#[path = "verifier/rss.rs"]
mod rss;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use keywarden::api::{AccessKey, AccessKeySpec, AccessKeyStatus, KeyOwner, OwnerKind, Phase};
use keywarden::keys::hash::{hash_secret, HashParams};
use keywarden::keys::material::{AccessKeyId, SecretKey};
use keywarden::verifier::{serve_http, AppState, HttpLimits, Settings, Verifier};
use tokio_util::sync::CancellationToken;

const CONNECTIONS: u32 = 32;
const DURATION: &str = "5s";

/// Worker threads of both servers, measured in turn.
const WORKERS: [usize; 2] = [1, 2];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    if let Some(role) = flag("--serve") {
        let workers = flag("--workers").and_then(|w| w.parse().ok()).unwrap_or(2);
        serve(role, workers);
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match std::env::var("KW_BENCH_ONLY").as_deref() {
        Ok("rss") => return runtime.block_on(rss::report()),
        Ok("revocation") => return runtime.block_on(revocation::report()),
        _ => {}
    }
    let Some(wrk) = find_binary("wrk") else {
        println!("wrk not found: throughput sections skipped (run scripts/ensure-proxies.sh)");
        runtime.block_on(revocation::report());
        runtime.block_on(rss::report());
        return;
    };
    let check_url = |server: &ServerProcess| format!("http://{}/v1/check", server.addr);
    let mut servers = None;
    let mut checked = None;
    for workers in WORKERS {
        let baseline = ServerProcess::start("baseline", workers);
        let verifier = ServerProcess::start("verifier", workers);
        // why: the figures are for a cached key; the one argon2 run happens before measuring.
        runtime.block_on(warm_up(
            &check_url(&verifier),
            verifier.authorization.as_deref(),
        ));
        println!(
            "== direct, {workers} worker thread(s) each: wrk -c{CONNECTIONS} -d{DURATION}, server in its own process"
        );
        let base = measure(
            &wrk,
            &baseline,
            &check_url(&baseline),
            baseline.authorization.as_deref(),
        );
        let auth = verifier.authorization.clone();
        let cached = measure(&wrk, &verifier, &check_url(&verifier), auth.as_deref());
        base.print("baseline (Basic+map+HMAC)");
        cached.print("verifier (cached key)");
        ratio(
            &format!("CPU per request, {workers} worker(s)"),
            cached.cpu_per_request,
            base.cpu_per_request,
            "<= 1.25",
        );
        ratio(
            &format!("throughput, {workers} worker(s)"),
            cached.requests_per_second,
            base.requests_per_second,
            ">= 0.8",
        );
        println!();
        servers = Some((baseline, verifier));
        checked = Some(cached);
    }
    let (Some((baseline, verifier)), Some(checked)) = (servers, checked) else {
        return;
    };
    let auth = verifier.authorization.clone();

    match find_binary("nginx") {
        Some(nginx) => {
            println!("\n== nginx auth_request -> server (2 workers), static content behind it");
            let via_baseline = Nginx::start(&nginx, baseline.addr);
            let via_verifier = Nginx::start(&nginx, verifier.addr);
            let base = measure(
                &wrk,
                &baseline,
                &via_baseline.url(),
                baseline.authorization.as_deref(),
            );
            let checked = measure(&wrk, &verifier, &via_verifier.url(), auth.as_deref());
            base.print("nginx -> baseline");
            checked.print("nginx -> verifier");
            ratio(
                "throughput",
                checked.requests_per_second,
                base.requests_per_second,
                ">= 0.9",
            );
        }
        None => println!("\nnginx not found: nginx section skipped"),
    }

    println!("\n== flood: 1,000 wrong-secret requests/s on the same ID during the valid-key run");
    let flood = runtime.block_on(async {
        let stop = tokio_util::sync::CancellationToken::new();
        let flooder = tokio::spawn(flood_wrong_secrets(
            verifier.addr,
            verifier.access_key_id.clone().unwrap_or_default(),
            stop.clone(),
        ));
        let wrk = wrk.clone();
        let url = check_url(&verifier);
        let measured = tokio::task::spawn_blocking({
            let auth = auth.clone();
            let verifier_pid = verifier.child.id();
            move || measure_pid(&wrk, verifier_pid, &url, auth.as_deref())
        })
        .await
        .expect("wrk run");
        stop.cancel();
        let statuses = flooder.await.unwrap_or_default();
        (measured, statuses)
    });
    let (flooded, statuses) = flood;
    flooded.print("verifier under flood");
    println!(
        "  flood answers: {} x 401, {} x 429, {} other",
        statuses.0, statuses.1, statuses.2
    );
    ratio(
        "valid throughput under flood",
        flooded.requests_per_second,
        checked.requests_per_second,
        ">= 0.5",
    );
    drop((baseline, verifier));

    println!();
    runtime.block_on(revocation::report());
    println!();
    runtime.block_on(rss::report());
}

/// Sends one checked request so the key is verified and cached.
async fn warm_up(url: &str, authorization: Option<&str>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let status = request.send().await.map(|r| r.status());
    println!("warm-up: {status:?}");
}

/// Prints `measured / baseline` with its target.
fn ratio(what: &str, measured: f64, baseline: f64, target: &str) {
    let value = if baseline > 0.0 {
        measured / baseline
    } else {
        f64::NAN
    };
    println!("  RATIO {what}: {value:.2}x (target {target})");
}

/// One wrk run's figures.
struct Figures {
    requests_per_second: f64,
    p99: String,
    /// Server CPU seconds per request, in microseconds.
    cpu_per_request: f64,
    non_2xx: u64,
}

impl Figures {
    fn print(&self, label: &str) {
        println!(
            "  {label:<24} {:>10.0} req/s   p99 {:>9}   server CPU {:>7.1} us/req   non-2xx {}",
            self.requests_per_second, self.p99, self.cpu_per_request, self.non_2xx
        );
    }
}

fn measure(wrk: &Path, server: &ServerProcess, url: &str, auth: Option<&str>) -> Figures {
    measure_pid(wrk, server.child.id(), url, auth)
}

/// Runs wrk against `url`, measuring the CPU time process `pid` spent meanwhile.
fn measure_pid(wrk: &Path, pid: u32, url: &str, auth: Option<&str>) -> Figures {
    let mut command = Command::new(wrk);
    command.args([
        "-t2",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{DURATION}"),
        "--latency",
    ]);
    if let Some(auth) = auth {
        command.args(["-H", &format!("Authorization: {auth}")]);
    }
    command.arg(url);
    let cpu_before = process_cpu_seconds(pid);
    let output = command.output().expect("run wrk");
    let cpu = process_cpu_seconds(pid) - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    let total = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1).or(l.split(':').nth(1)))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let non_2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    Figures {
        requests_per_second: field("Requests/sec:").parse().unwrap_or(0.0),
        p99: field("99%"),
        cpu_per_request: if total > 0.0 { cpu / total * 1e6 } else { 0.0 },
        non_2xx,
    }
}

/// User + system CPU seconds of a process, from `/proc/<pid>/stat`.
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // why: the command name (field 2) may contain spaces; fields are counted after its `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Sends 1,000 requests/s with random wrong secrets for `access_key_id` until `stop`;
/// returns counts of (401, 429, other).
async fn flood_wrong_secrets(
    addr: SocketAddr,
    access_key_id: String,
    stop: tokio_util::sync::CancellationToken,
) -> (u64, u64, u64) {
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/check");
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = tokio::task::JoinSet::new();
    while !stop.is_cancelled() {
        tick.tick().await;
        let pair = format!("{access_key_id}:{}", SecretKey::generate().expose());
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        );
        let request = http.get(&url).header("authorization", header);
        sent.spawn(async move { request.send().await.map(|r| r.status().as_u16()).ok() });
    }
    let mut counts = (0, 0, 0);
    while let Some(status) = sent.join_next().await {
        match status.ok().flatten() {
            Some(401) => counts.0 += 1,
            Some(429) => counts.1 += 1,
            _ => counts.2 += 1,
        }
    }
    counts
}

/// A server role run in a child process (this binary with `--serve <role>`).
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    authorization: Option<String>,
    access_key_id: Option<String>,
}

impl ServerProcess {
    fn start(role: &str, workers: usize) -> Self {
        let exe = std::env::current_exe().expect("bench binary path");
        let mut child = Command::new(exe)
            .args(["--serve", role, "--workers", &workers.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start server process");
        let stdout = child.stdout.take().expect("server stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut addr, mut authorization, mut access_key_id) = (None, None, None);
        for line in lines.by_ref() {
            let line = line.expect("server output");
            match line.split_once(' ') {
                Some(("ADDR", value)) => addr = value.parse().ok(),
                Some(("AUTH", value)) => authorization = Some(value.to_owned()),
                Some(("ID", value)) => access_key_id = Some(value.to_owned()),
                _ if line == "READY" => break,
                _ => {}
            }
        }
        Self {
            child,
            addr: addr.expect("server reported its address"),
            authorization,
            access_key_id,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Child process: serves `role` on a free loopback port with `workers` tokio worker threads,
/// printing what the parent needs.
fn serve(role: &str, workers: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("ADDR {}", listener.local_addr().expect("address"));
        if role == "baseline" {
            baseline::serve(listener).await;
        } else {
            // why: the state prints the key's ID and credentials, which must come before READY.
            let state = verifier_state();
            println!("READY");
            serve_http(
                listener,
                state,
                HttpLimits::default(),
                CancellationToken::new(),
            )
            .await
            .expect("serve");
        }
    });
}

/// A verifier with one valid key (real argon2id parameters), printing its credentials.
fn verifier_state() -> AppState {
    let verifier = Arc::new(Verifier::new(&Settings::default()));
    let id = AccessKeyId::generate();
    let secret = SecretKey::generate();
    let hash = hash_secret(&secret, &HashParams::default()).expect("hash");
    let mut key = AccessKey::new(
        "bench",
        AccessKeySpec {
            owner: KeyOwner {
                kind: OwnerKind::User,
                name: "bench".into(),
            },
            display_name: None,
            description: None,
            scopes: Vec::new(),
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
    key.metadata.namespace = Some("bench".into());
    key.status = Some(AccessKeyStatus {
        phase: Some(Phase::Active),
        access_key_id: Some(id.to_string()),
        secret_hash: Some(hash),
        granted_scopes: Some(vec!["*".into()]),
        ..AccessKeyStatus::default()
    });
    verifier.apply_key(&key);
    verifier.mark_ready();
    let pair = format!("{id}:{}", secret.expose());
    println!("ID {id}");
    println!(
        "AUTH Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    AppState {
        verifier,
        forwarding: Default::default(),
    }
}

/// nginx with `auth_request` to `auth` in front of a static file.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(binary: &Path, auth: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("www")).expect("www dir");
        std::fs::write(dir.path().join("www/ok.txt"), "ok\n").expect("static file");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = format!(
            r#"
master_process off;
daemon off;
worker_processes 1;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream auth {{ server {auth}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        location = /_auth {{
            internal;
            proxy_pass http://auth/v1/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location / {{ auth_request /_auth; }}
    }}
}}
"#
        );
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config).expect("write nginx.conf");
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ok.txt", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A binary from `PATH` or `/usr/sbin`.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
