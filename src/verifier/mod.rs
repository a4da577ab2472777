//! The verifier: the HTTP service proxies and apps call to check presented keys.
//!
//! It watches `AccessKey`s (never Secrets), indexes their current and previous credentials by
//! access ID and answers `/v1/check` (any method; also `/v1/check/*` for Envoy `ext_authz`,
//! which appends the original path) and `POST /v1/verify` (JSON, always 200).
//!
//! What each proxy sends, and what the verifier reads:
//!
//! | proxy | method | `Origin` | client address |
//! |---|---|---|---|
//! | nginx `auth_request` | subrequest keeps the method; set `X-Original-Method $request_method` | copied from the request | set `X-Real-IP $remote_addr` |
//! | Caddy `forward_auth` | `GET` with `X-Forwarded-Method` | copied | `X-Forwarded-For` |
//! | Traefik ForwardAuth | `X-Forwarded-Method` | copied | `X-Forwarded-For` |
//! | Envoy `ext_authz` (HTTP) | the original method | `allowed_headers` must list `origin` | `X-Forwarded-For` |
//!
//! `X-Forwarded-Method`/`X-Original-Method` (method) and `X-Real-IP`/`X-Forwarded-For` (client
//! address, for failure rate limits) are read only with `--trust-forwarded-headers`; the proxy
//! must then overwrite them, never pass a client's own. Without the flag the request's method and
//! the TCP peer are used. Every `OPTIONS` request (CORS preflight) is accepted without a key.
//! A required scope comes from `?scope=` and/or `X-Keywarden-Required-Scope`; all must be granted.
//!
//! Answers: 200 with `X-Keywarden-Key-Id`, `-Owner` (user name or
//! `system:serviceaccount:<ns>:<name>`), `-Scopes` (comma-separated, `*` for all) and `-Key-Name`
//! (`<namespace>/<name>`), plus `Access-Control-Allow-Origin` when an allowlisted `Origin` was
//! sent; 401 (one body for every reason) with `WWW-Authenticate`; 403 `forbidden` (origin) or
//! `insufficient_scope`; 429 with `Retry-After` when failed attempts for the access ID or the
//! client exceed their rate, or argon2 work is saturated. A secret already verified is answered
//! from memory without argon2, so rate limits never block a client presenting the right secret.

mod check;
mod credentials;
mod guard;
mod hashing;
mod http;
mod index;
mod last_used;
mod metrics;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use check::{CheckRequest, Decision, Grant, Refusal, Settings, Verifier};
pub use credentials::{Presented, Unreadable};
pub use http::{serve as serve_http, AppState, REQUIRED_SCOPE_HEADER};
pub use index::{Credential, KeyIndex, KeyRecord, KeyRef, Unusable};
pub use last_used::{flush_due, LastUse, FIELD_MANAGER};
pub use watch::watch_keys;

/// Verifier settings (flags and environment).
#[derive(clap::Args, Debug, Clone)]
pub struct VerifierArgs {
    /// Address to serve the verifier on.
    #[arg(
        long,
        env = "KEYWARDEN_VERIFIER_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Watch only these namespaces (repeatable); default: all namespaces.
    #[arg(
        long = "namespace",
        env = "KEYWARDEN_VERIFIER_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Read the client address and original method from X-Real-IP / X-Forwarded-For and
    /// X-Forwarded-Method / X-Original-Method. Only behind a proxy that overwrites them.
    #[arg(long, env = "KEYWARDEN_TRUST_FORWARDED_HEADERS")]
    pub trust_forwarded_headers: bool,

    /// Seconds between two writes of one key's `status.lastUsedAt`.
    #[arg(long, env = "KEYWARDEN_LAST_USED_FLUSH_SECONDS", default_value_t = 60)]
    pub last_used_flush_seconds: u64,

    /// argon2 verifications running at once (default: the number of CPUs).
    #[arg(long)]
    pub max_concurrent_hashes: Option<usize>,

    /// Failed verifications allowed per access ID per second before answering 429.
    #[arg(long, default_value_t = 5)]
    pub failures_per_second_per_key: u32,

    /// Failed verifications allowed per client address per second before answering 429.
    #[arg(long, default_value_t = 20)]
    pub failures_per_second_per_client: u32,

    /// Entries kept in each cache and rate-limit table.
    #[arg(long, default_value_t = 100_000)]
    pub cache_capacity: usize,
}

impl Default for VerifierArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            namespaces: Vec::new(),
            trust_forwarded_headers: false,
            last_used_flush_seconds: 60,
            max_concurrent_hashes: None,
            failures_per_second_per_key: 5,
            failures_per_second_per_client: 20,
            cache_capacity: 100_000,
        }
    }
}

impl VerifierArgs {
    /// The verifier limits these flags select.
    pub fn settings(&self) -> Settings {
        let defaults = Settings::default();
        Settings {
            max_concurrent_hashes: self
                .max_concurrent_hashes
                .unwrap_or(defaults.max_concurrent_hashes),
            failures_per_second_per_key: self.failures_per_second_per_key,
            failures_per_second_per_client: self.failures_per_second_per_client,
            cache_capacity: self.cache_capacity,
            ..defaults
        }
    }
}

/// Runs the verifier until `shutdown` is cancelled.
pub async fn run(
    client: kube::Client,
    args: VerifierArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the verifier to {}", args.listen))?;
    serve(client, args, listener, shutdown).await
}

/// Runs the verifier on an already bound listener until `shutdown` is cancelled (for
/// `keywarden dev` and tests, which bind port 0).
pub async fn serve(
    client: kube::Client,
    args: VerifierArgs,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let verifier = Arc::new(Verifier::new(&args.settings()));
    let watching = tokio::spawn(watch::watch_keys(
        verifier.clone(),
        client.clone(),
        args.namespaces.clone(),
        shutdown.clone(),
    ));
    let flushing = tokio::spawn(last_used::flush_until_shutdown(
        verifier.clone(),
        client,
        Duration::from_secs(args.last_used_flush_seconds),
        shutdown.clone(),
    ));
    tracing::info!(address = %listener.local_addr()?, "verifier listening");
    let state = AppState {
        verifier,
        trust_forwarded_headers: args.trust_forwarded_headers,
    };
    let served = http::serve(listener, state, shutdown.clone())
        .await
        .context("serving the verifier");
    shutdown.cancel();
    let _ = tokio::join!(watching, flushing);
    served
}
