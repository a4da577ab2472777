//! Leader election: only the replica holding the Lease runs the controllers.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::context::Clock;
use super::probes::ProbeState;
use super::runner::{self, Settings};
use super::ControllerArgs;

/// A replica identity: `--identity`, else host name, process ID and start time.
fn identity(args: &ControllerArgs) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "keywarden".into());
        let started = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        format!("{host}-{}-{started:x}", std::process::id())
    })
}

/// Waits until the leadership flag equals `leader`; `false` when the lease task ended.
async fn wait_for(rx: &mut watch::Receiver<bool>, leader: bool) -> bool {
    rx.wait_for(|is_leader| *is_leader == leader).await.is_ok()
}

/// Runs the controllers while this replica leads, until `shutdown`.
pub async fn run_when_leader(
    client: Client,
    args: &ControllerArgs,
    clock: Clock,
    probes: ProbeState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let identity = identity(args);
    let settings = Settings {
        hash_params: args.hash_params(),
        clock,
        identity: identity.clone(),
        rollout: args.rollout,
        record_key_secret: (
            args.record_key_namespace().to_string(),
            args.record_key_secret.clone(),
        ),
    };
    if args.disable_leader_election {
        return runner::run_controllers(client, &settings, &probes, shutdown).await;
    }
    let duration = args.lease_duration_seconds.max(2);
    let params = LeaseParams::new(identity.clone(), duration, (duration / 3).max(1));
    let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&args.leader_election_namespace)
        .with_parameters(params)
        .build()
        .await?;
    let (mut leader, lease_task) = manager.watch().await;
    // why: a standby replica is healthy and ready; it just doesn't reconcile.
    probes.set_ready(true);
    let result = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            alive = wait_for(&mut leader, true) => if !alive {
                break Err(anyhow::anyhow!("leader election task ended"));
            },
        }
        tracing::info!(%identity, "became leader; starting controllers");
        let term = shutdown.child_token();
        let controllers = runner::run_controllers(client.clone(), &settings, &probes, term.clone());
        tokio::pin!(controllers);
        tokio::select! {
            ended = &mut controllers => break ended,
            _ = wait_for(&mut leader, false) => {
                tracing::warn!(%identity, "lost leadership; stopping controllers");
                term.cancel();
                controllers.await?;
                probes.set_ready(true);
            }
        }
    };
    // why: closing the channel makes the lease task release the Lease for a fast takeover.
    drop(leader);
    match lease_task.await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "releasing the lease failed"),
        Err(err) => tracing::warn!(error = %err, "lease task failed"),
    }
    result
}
