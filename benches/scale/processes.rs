//! The processes the scale bench measures: devcluster, `keywarden controller`, `keywarden
//! verifier`, each a process of its own, and what /proc says about their memory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// Environment variable that turns the bench binary into the devcluster process: it names the
/// kubeconfig to write once the server listens.
pub const DEVCLUSTER_ROLE: &str = "KW_SCALE_DEVCLUSTER_KUBECONFIG";

/// Runs devcluster until killed (the bench binary started as its own child).
pub async fn serve_devcluster(kubeconfig: &Path) -> anyhow::Result<()> {
    let cluster = devcluster::DevCluster::start().await?;
    // why: written aside and renamed, so the parent never reads half a file.
    let partial = kubeconfig.with_extension("partial");
    cluster.write_kubeconfig(&partial)?;
    std::fs::rename(&partial, kubeconfig)?;
    std::future::pending::<()>().await;
    Ok(())
}

/// A child process killed when dropped.
pub struct Process {
    pub child: Child,
    pub pid: u32,
}

impl Process {
    fn spawn(command: &mut Command) -> anyhow::Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("child has no pid"))?;
        Ok(Self { child, pid })
    }

    /// VmRSS and VmHWM (peak) in MiB.
    pub fn memory_mib(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|kib| kib / 1024.0)
                .ok_or_else(|| anyhow::anyhow!("no {name} for {}", self.pid))
        };
        Ok(Memory {
            rss: field("VmRSS:")?,
            peak: field("VmHWM:")?,
        })
    }

    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Resident memory of a process, MiB.
#[derive(Clone, Copy, Default)]
pub struct Memory {
    pub rss: f64,
    pub peak: f64,
}

/// Starts devcluster as a child process and waits for its admin kubeconfig.
pub async fn start_devcluster(dir: &Path) -> anyhow::Result<(Process, PathBuf)> {
    let kubeconfig = dir.join("admin.kubeconfig");
    let process =
        Process::spawn(Command::new(std::env::current_exe()?).env(DEVCLUSTER_ROLE, &kubeconfig))?;
    let started = Instant::now();
    while !kubeconfig.exists() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "devcluster did not start within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((process, kubeconfig))
}

/// Cheap argon2id, so that hashing does not dominate what is measured.
const ARGON2_MEMORY_KIB: &str = "1024";
const ARGON2_ITERATIONS: &str = "1";

/// Starts the release `keywarden controller` as the chart's ServiceAccount.
pub fn start_controller(kubeconfig: &Path, probe_port: u16) -> anyhow::Result<Process> {
    Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_keywarden"))
            .arg("controller")
            .env("KUBECONFIG", kubeconfig)
            .env("KEYWARDEN_PROBE_ADDR", format!("127.0.0.1:{probe_port}"))
            .env("KEYWARDEN_ARGON2_MEMORY_KIB", ARGON2_MEMORY_KIB)
            .env("KEYWARDEN_ARGON2_ITERATIONS", ARGON2_ITERATIONS)
            .env("KEYWARDEN_DISABLE_LEADER_ELECTION", "true")
            .env(
                "KEYWARDEN_LEADER_ELECTION_NAMESPACE",
                keywarden::cli::access_control::NAMESPACE,
            ),
    )
}

/// Starts the release `keywarden verifier` as the chart's ServiceAccount.
pub fn start_verifier(kubeconfig: &Path, port: u16) -> anyhow::Result<Process> {
    Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_keywarden"))
            .arg("verifier")
            .env("KUBECONFIG", kubeconfig)
            .env("KEYWARDEN_VERIFIER_LISTEN", format!("127.0.0.1:{port}")),
    )
}

/// A kubeconfig like `admin` that acts as `token` (a ServiceAccount's).
pub fn write_token_kubeconfig(admin: &Path, token: &str, out: &Path) -> anyhow::Result<()> {
    let mut kubeconfig = kube::config::Kubeconfig::read_from(admin)?;
    for named in &mut kubeconfig.auth_infos {
        named.auth_info = Some(serde_json::from_value(
            serde_json::json!({ "token": token }),
        )?);
    }
    std::fs::write(out, serde_yaml::to_string(&kubeconfig)?)?;
    Ok(())
}

/// devcluster's plain-HTTP base URL (its admin endpoint) from the admin kubeconfig.
pub fn devcluster_http_url(admin: &Path) -> anyhow::Result<String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(admin)?;
    let server = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .ok_or_else(|| anyhow::anyhow!("the kubeconfig names no server"))?;
    Ok(server.replacen("https://", "http://", 1))
}

/// A free TCP port on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
