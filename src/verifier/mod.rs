//! The verifier: the HTTP service proxies and apps call to check presented keys.

/// Verifier settings (flags and environment).
#[derive(clap::Args, Debug, Clone)]
pub struct VerifierArgs {}

/// Runs the verifier until `shutdown` is cancelled.
pub async fn run(
    _client: kube::Client,
    _args: VerifierArgs,
    _shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    todo!()
}
