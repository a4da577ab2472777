//! The controller as users run it: the release `keywarden controller` binary in a process of its
//! own, so that its CPU is read from /proc/<pid>/stat with nothing else mixed in.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::accounting::{self, RequestCounts};

/// A `keywarden controller` child process, killed on drop.
pub struct ControllerProcess {
    child: tokio::process::Child,
    pub pid: u32,
    pub probe_port: u16,
}

impl ControllerProcess {
    /// Starts the controller with `kubeconfig`, leader election off, and waits until it is Ready
    /// (every cache listed).
    pub async fn start(kubeconfig: &Path, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let probe_port = accounting::free_port()?;
        // why: `KW_BENCH_KEYWARDEN` runs another build of the binary (an A/B comparison).
        let binary = std::env::var_os("KW_BENCH_KEYWARDEN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_keywarden").into());
        let mut command = tokio::process::Command::new(binary);
        command
            .arg("controller")
            .env("KUBECONFIG", kubeconfig)
            .env("KEYWARDEN_PROBE_ADDR", format!("127.0.0.1:{probe_port}"))
            .env("KEYWARDEN_DISABLE_LEADER_ELECTION", "true")
            // why: the chart's RBAC lets the controller keep its record key in its own namespace.
            .env(
                "KEYWARDEN_LEADER_ELECTION_NAMESPACE",
                keywarden::cli::access_control::NAMESPACE,
            )
            // why: its audit log (a line per issued key) is written, as in production, but
            // would bury the figures.
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let child = command.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("child has no pid"))?;
        let process = Self {
            child,
            pid,
            probe_port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = format!("http://127.0.0.1:{probe_port}/readyz");
        loop {
            if let Ok(response) = reqwest::get(&ready).await {
                if response.status().is_success() {
                    return Ok(process);
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the controller was not Ready in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// CPU clock ticks (1/100 s) the controller process used so far.
    pub fn cpu_ticks(&self) -> anyhow::Result<u64> {
        crate::support::cpu_ticks(self.pid)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Rewrites the API server address of the kubeconfig at `path` to `http://<server>`.
pub fn point_kubeconfig_at(path: &Path, server: SocketAddr) -> anyhow::Result<()> {
    let mut kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    for named in &mut kubeconfig.clusters {
        if let Some(cluster) = named.cluster.as_mut() {
            cluster.server = Some(format!("http://{server}"));
            cluster.certificate_authority_data = None;
            cluster.certificate_authority = None;
        }
    }
    std::fs::write(path, serde_yaml::to_string(&kubeconfig)?)?;
    Ok(())
}

/// A plain-HTTP proxy in front of devcluster (which speaks plain HTTP on its TLS port too) that
/// counts every request passing through it into `counts`; its address.
// why: the controller runs in its own process, so its requests are counted on the wire.
pub async fn counting_proxy(
    upstream: SocketAddr,
    counts: RequestCounts,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((downstream, _)) = listener.accept().await {
            tokio::spawn(proxy_connection(downstream, upstream, counts.clone()));
        }
    });
    Ok(addr)
}

/// Forwards one client connection's requests over one upstream connection.
async fn proxy_connection(downstream: TcpStream, upstream: SocketAddr, counts: RequestCounts) {
    let Ok(upstream) = TcpStream::connect(upstream).await else {
        return;
    };
    let Ok((sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
    else {
        return;
    };
    tokio::spawn(connection);
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let service = service_fn(move |request: Request<Incoming>| {
        counts.count(&request);
        let sender = sender.clone();
        async move {
            let mut sender = sender.lock().await;
            sender.ready().await?;
            sender.send_request(request).await
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(downstream), service)
        .await;
}
