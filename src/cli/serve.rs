//! Running the controller and the verifier, alone or side by side in one process.

use std::future::Future;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::controller::ControllerArgs;
use crate::verifier::VerifierArgs;

/// Which parts to run.
#[derive(Debug, Clone, Default)]
pub struct Parts {
    pub controller: Option<ControllerArgs>,
    pub verifier: Option<VerifierArgs>,
}

/// Runs `part`; when it fails or stops on its own, cancels `shutdown` so the other parts stop too.
async fn supervised(
    name: &'static str,
    shutdown: CancellationToken,
    part: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let result = part.await.with_context(|| format!("{name} failed"));
    if !shutdown.is_cancelled() {
        match &result {
            Ok(()) => tracing::warn!(part = name, "stopped on its own; shutting down"),
            Err(e) => tracing::error!(part = name, error = %format!("{e:#}"), "shutting down"),
        }
        shutdown.cancel();
    }
    result
}

/// The identity each part talks to the API server as (the same client, or one per
/// ServiceAccount as the chart runs them).
#[derive(Clone)]
pub struct PartClients {
    pub controller: kube::Client,
    pub verifier: kube::Client,
}

impl PartClients {
    /// Both parts with one client.
    pub fn shared(client: kube::Client) -> Self {
        Self {
            controller: client.clone(),
            verifier: client,
        }
    }
}

/// Runs the selected parts until `shutdown` is cancelled or one of them fails.
pub async fn run_parts(
    clients: PartClients,
    parts: Parts,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let controller = async {
        match parts.controller {
            Some(args) => {
                let run =
                    crate::controller::run(clients.controller.clone(), args, shutdown.clone());
                supervised("controller", shutdown.clone(), run).await
            }
            None => Ok(()),
        }
    };
    let verifier = async {
        match parts.verifier {
            Some(args) => {
                let run = crate::verifier::run(clients.verifier.clone(), args, shutdown.clone());
                supervised("verifier", shutdown.clone(), run).await
            }
            None => Ok(()),
        }
    };
    // why: joined in one task rather than spawned, so neither part needs a `Send` future.
    let (controller, verifier) = tokio::join!(controller, verifier);
    controller.and(verifier)
}

/// A client from KUBECONFIG (or ~/.kube/config), else the in-cluster service account.
pub async fn default_client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (set KUBECONFIG, or run in a cluster)")
}
