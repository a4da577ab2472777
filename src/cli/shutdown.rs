//! Graceful shutdown: Ctrl-C or SIGTERM cancels one token that every part watches.

use tokio_util::sync::CancellationToken;

/// Exit status after a second Ctrl-C/SIGTERM forces the process down.
const FORCED_EXIT_CODE: i32 = 130;

/// A token cancelled on the first Ctrl-C or SIGTERM; a second signal exits at once.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; stopping (signal again to force)");
        cancel.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting without waiting");
        std::process::exit(FORCED_EXIT_CODE);
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops keywarden");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
