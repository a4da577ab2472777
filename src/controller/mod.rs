//! The controller: reconciles AccessKeys and AccessKeyPolicies (leader-elected).

/// Controller settings (flags and environment).
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(
    _client: kube::Client,
    _args: ControllerArgs,
    _shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    todo!()
}
