//! `keywarden dev`: everything on one machine, no cluster needed — an in-memory devcluster, the
//! CRDs, controller and verifier in this process, and the example manifests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::access_control;
use super::manifests::{apply_examples, install_crds};
use super::serve::{run_parts, PartClients, Parts};
use super::RunArgs;

/// Arguments of `keywarden dev`.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Address of the in-memory Kubernetes API server (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub api_addr: SocketAddr,
    /// Where to write the kubeconfig for kubectl.
    #[arg(
        long,
        default_value = ".cache/keywarden-dev/kubeconfig",
        value_name = "FILE"
    )]
    pub kubeconfig_out: PathBuf,
    /// Directory whose *.yaml manifests are applied after start-up.
    #[arg(long, default_value = "examples", value_name = "DIR")]
    pub examples: PathBuf,
    /// Don't apply the example manifests.
    #[arg(long)]
    pub no_examples: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs `keywarden dev` until `shutdown` is cancelled.
pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let cluster = devcluster::DevCluster::start_on(args.api_addr)
        .await
        .context("starting the in-memory cluster")?;
    let kubeconfig = write_kubeconfig(&cluster, &args.kubeconfig_out)?;
    let client = cluster
        .client()
        .context("connecting to the in-memory cluster")?;
    install_crds(&client).await?;
    access_control::install(&client)
        .await
        .context("installing keywarden's RBAC and admission policies")?;
    let clients = chart_clients(&cluster, &client).await?;
    tracing::info!(api = %cluster.url(), "devcluster ready: CRDs, RBAC and admission policies installed");

    let verifier_addr = args.run.verifier.listen;
    let mut controller = args.run.controller;
    // why: the chart's leader-election Role grants Leases in its own namespace only.
    controller.leader_election_namespace = access_control::NAMESPACE.to_owned();
    let parts = Parts {
        controller: Some(controller),
        verifier: Some(args.run.verifier),
    };
    let setup = async {
        if !args.no_examples {
            if let Err(e) = apply_examples(&client, &args.examples).await {
                tracing::error!(error = %format!("{e:#}"), "applying the examples failed");
            }
        }
        print_to_stdout(&next_steps(&kubeconfig, verifier_addr, !args.no_examples));
    };
    let (result, ()) = tokio::join!(run_parts(clients, parts, shutdown), setup);
    drop(cluster);
    result
}

/// Clients for the controller and the verifier, each as its chart ServiceAccount.
async fn chart_clients(
    cluster: &devcluster::DevCluster,
    admin: &kube::Client,
) -> anyhow::Result<PartClients> {
    let kubeconfig = cluster.kubeconfig()?;
    let base = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("reading devcluster's kubeconfig")?;
    Ok(PartClients {
        controller: access_control::service_account_client(
            admin,
            &base,
            access_control::CONTROLLER_SERVICE_ACCOUNT,
        )
        .await?,
        verifier: access_control::service_account_client(
            admin,
            &base,
            access_control::VERIFIER_SERVICE_ACCOUNT,
        )
        .await?,
    })
}

/// Prints `text` on stdout; a closed stdout (`keywarden dev | tee log` after tee exited) is
/// logged, never a panic: keywarden keeps running and still stops on a signal.
fn print_to_stdout(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        tracing::warn!(error = %err, "cannot write the next steps to stdout");
    }
}

fn write_kubeconfig(cluster: &devcluster::DevCluster, path: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    cluster.write_kubeconfig(path)?;
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// What to type next, printed once everything runs.
pub fn next_steps(kubeconfig: &Path, verifier: SocketAddr, examples: bool) -> String {
    let kubeconfig = kubeconfig.display();
    let mut text = format!(
        "\
keywarden dev is running (Ctrl-C stops everything). In another terminal:

  export KUBECONFIG={kubeconfig}
  kubectl get accesskeys -A            # short: kubectl get ak -A
"
    );
    if examples {
        text.push_str(&format!(
            "
Read the example key's credentials (written once into its Secret):

  kubectl get secret alice-laptop-access-key -o jsonpath='{{.data.token}}' | base64 -d
  kubectl keywarden credentials alice-laptop --format csv   # with kubectl-keywarden on PATH

Check it against the verifier:

  TOKEN=$(kubectl get secret alice-laptop-access-key -o jsonpath='{{.data.token}}' | base64 -d)
  curl -i -H \"Authorization: Bearer $TOKEN\" http://{verifier}/v1/check

Rotate it, then watch the access ID change:

  kubectl keywarden rotate alice-laptop && kubectl get ak alice-laptop -w
"
        ));
    } else {
        text.push_str(&format!(
            "\nApply keys with kubectl apply -f examples/, then check them with\n  curl -H \"Authorization: Bearer <token>\" http://{verifier}/v1/check\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_steps_name_the_kubeconfig_and_the_verifier() {
        let text = next_steps(
            Path::new("/tmp/kc"),
            "127.0.0.1:8080".parse().unwrap(),
            true,
        );
        assert!(text.contains("export KUBECONFIG=/tmp/kc"));
        assert!(text.contains("kubectl get ak"));
        assert!(text.contains("http://127.0.0.1:8080/v1/check"));
        assert!(text.contains("credentials alice-laptop"));
    }
}
