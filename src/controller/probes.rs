//! `/livez`, `/readyz` and `/metrics` on the controller's own port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::api_contact::ApiContact;
use super::metrics::Metrics;

/// What the probe endpoints report.
#[derive(Clone, Default)]
pub struct ProbeState {
    ready: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
    /// When the API server last answered; `/readyz` fails once it is silent past the bound.
    pub contact: Arc<ApiContact>,
}

impl ProbeState {
    pub fn new(contact: ApiContact) -> Self {
        Self {
            contact: Arc::new(contact),
            ..Self::default()
        }
    }

    /// Marks the controller ready (caches synced, or standing by for the lease) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

async fn livez() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<ProbeState>) -> impl IntoResponse {
    let now = Instant::now();
    if state.contact.is_lost(now) {
        let silence = state.contact.silence(now).as_secs();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("API server unreachable for {silence}s"),
        );
    }
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready".to_owned())
    }
}

async fn metrics(State(state): State<ProbeState>) -> impl IntoResponse {
    let now = Instant::now();
    state
        .metrics
        .set_api_contact(state.contact.is_reachable(now), state.contact.silence(now));
    match state.metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Binds `addr` and serves the probes until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    state: ProbeState,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving probes and metrics");
    Ok(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await?;
        Ok(())
    }))
}
