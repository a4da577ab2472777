//! `devcluster`: run the embedded Kubernetes API server, or benchmark it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use devcluster::{DevCluster, Options};
use tracing_subscriber::EnvFilter;

/// An in-memory Kubernetes API server for tests and local development.
#[derive(Parser)]
#[command(name = "devcluster", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    addr: SocketAddr,
    /// Where to write a kubeconfig pointing at the server (default: a file in the temp dir).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Static bearer tokens, one `token,user,uid,"group1,group2"` line each (kube-apiserver's
    /// `--token-auth-file`); each user gets a kubeconfig context named after it.
    #[arg(long, value_name = "FILE")]
    token_auth_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print throughput and memory figures of an in-process server.
    Bench {
        /// Only the creates/s as a user: AlwaysAllow, RBAC, RBAC with admission policies.
        #[arg(long)]
        authorization_only: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(Command::Bench { authorization_only }) = cli.command {
        return devcluster::bench::run(authorization_only).await;
    }
    let cluster = DevCluster::start_with(Options {
        addr: cli.addr,
        token_auth_file: cli.token_auth_file,
        ..Options::default()
    })
    .await?;
    println!("devcluster listening on {}", cluster.url());
    let path = cli.kubeconfig.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("devcluster-{}.kubeconfig", cluster.addr().port()))
    });
    cluster.write_kubeconfig(&path)?;
    println!("export KUBECONFIG={}", path.display());
    tokio::signal::ctrl_c().await?;
    println!("devcluster: shutting down");
    drop(cluster);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_auth_file_flag_names_the_file() {
        let cli = Cli::try_parse_from(["devcluster", "--token-auth-file", "/etc/tokens.csv"])
            .expect("arguments parse");
        assert_eq!(cli.token_auth_file, Some(PathBuf::from("/etc/tokens.csv")));
    }

    #[test]
    fn bench_can_measure_only_the_authorization_cost() {
        let cli = Cli::try_parse_from(["devcluster", "bench", "--authorization-only"])
            .expect("arguments parse");
        assert!(matches!(
            cli.command,
            Some(Command::Bench {
                authorization_only: true
            })
        ));
    }
}
