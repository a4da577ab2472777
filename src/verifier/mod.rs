//! The verifier: the HTTP service proxies and apps call to check presented keys.
//!
//! It watches `AccessKey`s (never Secrets), indexes their current and previous credentials by
//! access ID and answers `/v1/check` (any method; also `/v1/check/*` for Envoy `ext_authz`,
//! which appends the original path) and `POST /v1/verify` (JSON, always 200).
//!
//! What it believes from a proxy: the original method from the one header named by
//! `--forwarded-method-header` (none by default: the request's own method), and the client
//! address from `X-Forwarded-For`/`X-Real-IP` only when the TCP peer is in `--trusted-proxies`
//! ([`forwarded`]). Proxies must overwrite or clear those headers, and `X-Keywarden-*` upstream.
//!
//! Two separate rules: authentication, where a request without credentials passes only as a
//! CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) and everything
//! else needs a valid key; and CORS, where an `Origin` outside the key's allowlist is refused,
//! except on `OPTIONS`, which is never refused for its origin. A required scope comes from
//! `?scope=` and/or `X-Keywarden-Required-Scope`; all must be granted.
//!
//! Answers: 200 with `X-Keywarden-Key-Id`, `-Owner` (Kubernetes user name: `alice` or
//! `system:serviceaccount:<ns>:<name>`), `-Owner-Kind` (`User`/`ServiceAccount`), `-Scopes`
//! (comma-separated, `*` for all) and `-Key-Name` (`<namespace>/<name>`), plus
//! `Access-Control-Allow-Origin` when an allowlisted `Origin` was sent; 401 (one body for every
//! reason) with `WWW-Authenticate`; 403 `forbidden` (origin) or `insufficient_scope`; 429 with
//! `Retry-After` when failed attempts for the (access ID, client) or the client exceed their
//! rate; 503 with `Retry-After` when argon2 work is saturated, or when its view of the keys is
//! older than `--max-staleness` (see `freshness`). A secret already verified is
//! answered from memory without argon2, so rate limits never block a client presenting the
//! right secret.

mod check;
mod credentials;
pub mod forwarded;
mod freshness;
mod guard;
mod hashing;
mod http;
mod index;
mod last_used;
mod metrics;
mod server;
mod stored_hash;
mod watch;
mod watched;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ::http::HeaderName;
use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::keys::hash::HashParams;
use crate::keys::schedule::MAX_LAST_USE_WRITE_INTERVAL;

pub use check::{CheckRequest, Decision, Grant, Refusal, Settings, Verifier};
pub use credentials::{Presented, Unreadable};
pub use forwarded::{Forwarding, ProxyNetwork};
pub use freshness::{Freshness, Stale, WhenStale, DEFAULT_MAX_STALENESS};
pub use http::{serve as serve_http, AppState, GRANT_HEADERS, REQUIRED_SCOPE_HEADER};
pub use index::{
    Credential, HeldCredential, IndexedKey, KeyIndex, KeyRecord, KeyRef, Relisted, Unusable,
};
pub use last_used::{flush_due, flush_until_shutdown, LastUse, FIELD_MANAGER};
pub use server::{raise_open_file_limit, HttpLimits};
pub use stored_hash::{HashSpec, StoredHash};
pub use watch::watch_keys;
pub use watched::{WatchedKey, WatchedSpec, WatchedStatus};

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

    /// Header carrying the original method, set by the proxy (`X-Original-Method` for the nginx
    /// example, `X-Forwarded-Method` for Caddy and Traefik); default: the request's method.
    /// The proxy must overwrite it on every request.
    #[arg(long, env = "KEYWARDEN_FORWARDED_METHOD_HEADER")]
    pub forwarded_method_header: Option<HeaderName>,

    /// Proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For / X-Real-IP
    /// name the client for failure rate limits; from other peers they are ignored.
    #[arg(long, env = "KEYWARDEN_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ProxyNetwork>,

    /// Seconds a client has to send a request's headers.
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout_seconds: u64,

    /// Seconds a keep-alive connection may stay idle between requests.
    #[arg(long, default_value_t = 75)]
    pub idle_timeout_seconds: u64,

    /// Open connections at most; at the cap the longest-idle one is closed for a new one.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,

    /// Bytes of request line and headers at most (431 beyond).
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Bytes of a `POST /v1/verify` body at most (413 beyond).
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds between two writes of one key's `status.lastUsedAt`, by any replica (1 to 60:
    /// the controller's unused deadlines allow for at most 60).
    #[arg(
        long,
        env = "KEYWARDEN_LAST_USED_FLUSH_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=MAX_LAST_USE_WRITE_INTERVAL.as_secs())
    )]
    pub last_used_flush_seconds: u64,

    /// argon2 verifications running at once (default: the number of CPUs).
    #[arg(long)]
    pub max_concurrent_hashes: Option<usize>,

    /// Failed verifications allowed per access ID and client address per second before
    /// answering 429.
    #[arg(long, default_value_t = 5)]
    pub failures_per_second_per_key: u32,

    /// Failed verifications allowed per client address per second before answering 429.
    #[arg(long, default_value_t = 20)]
    pub failures_per_second_per_client: u32,

    /// Entries kept in each cache and rate-limit table.
    #[arg(long, default_value_t = 100_000)]
    pub cache_capacity: usize,

    /// Costliest argon2id memory (KiB) of a hash the verifier serves; keys hashed above it are
    /// refused, so no status can make the verifier burn memory. Raise it to the largest
    /// `--argon2-memory-kib` the controller ever used.
    #[arg(long, env = "KEYWARDEN_MAX_HASH_MEMORY_KIB", default_value_t = HashParams::default().memory_kib)]
    pub max_hash_memory_kib: u32,

    /// Costliest argon2id iterations of a hash the verifier serves.
    #[arg(long, env = "KEYWARDEN_MAX_HASH_ITERATIONS", default_value_t = HashParams::default().iterations)]
    pub max_hash_iterations: u32,

    /// Costliest argon2id lanes of a hash the verifier serves.
    #[arg(long, env = "KEYWARDEN_MAX_HASH_PARALLELISM", default_value_t = HashParams::default().parallelism)]
    pub max_hash_parallelism: u32,

    /// Age (`90s`, `5m`) past which the view of AccessKeys, not confirmed with the API server
    /// since, is stale: `/readyz` fails and checks follow `--when-stale`. It bounds how long
    /// a revoked key keeps working on a replica that cannot see the API server.
    #[arg(long, env = "KEYWARDEN_MAX_STALENESS", default_value = "5m", value_parser = crate::keys::duration::parse_bound)]
    pub max_staleness: Duration,

    /// What checks get from a stale view: `refuse` (503 with Retry-After) or `serve` (answers
    /// from the last view, marked with `X-Keywarden-Stale-Seconds`).
    #[arg(
        long,
        env = "KEYWARDEN_WHEN_STALE",
        value_enum,
        default_value = "refuse"
    )]
    pub when_stale: WhenStale,
}

impl Default for VerifierArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            namespaces: Vec::new(),
            forwarded_method_header: None,
            trusted_proxies: Vec::new(),
            header_read_timeout_seconds: 10,
            idle_timeout_seconds: 75,
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 16 * 1024,
            last_used_flush_seconds: 60,
            max_concurrent_hashes: None,
            failures_per_second_per_key: 5,
            failures_per_second_per_client: 20,
            cache_capacity: 100_000,
            max_hash_memory_kib: HashParams::default().memory_kib,
            max_hash_iterations: HashParams::default().iterations,
            max_hash_parallelism: HashParams::default().parallelism,
            max_staleness: DEFAULT_MAX_STALENESS,
            when_stale: WhenStale::Refuse,
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
            max_hash_cost: HashParams {
                memory_kib: self.max_hash_memory_kib,
                iterations: self.max_hash_iterations,
                parallelism: self.max_hash_parallelism,
            },
            max_staleness: self.max_staleness,
            when_stale: self.when_stale,
            ..defaults
        }
    }

    /// The forwarded headers these flags make the verifier believe.
    pub fn forwarding(&self) -> Forwarding {
        Forwarding {
            method_header: self.forwarded_method_header.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }

    /// The HTTP server limits these flags select.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            max_body_bytes: self.max_body_bytes,
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
    // why: arguments built in code skip the flag's bound; a longer interval would let keys in
    // use be deactivated as unused.
    let flush_interval =
        Duration::from_secs(args.last_used_flush_seconds).min(MAX_LAST_USE_WRITE_INTERVAL);
    let flushing = tokio::spawn(last_used::flush_until_shutdown(
        verifier.clone(),
        client,
        flush_interval,
        shutdown.clone(),
    ));
    let open_files = raise_open_file_limit();
    if open_files.is_some_and(|limit| limit < u64::try_from(args.max_connections).unwrap_or(0)) {
        tracing::warn!(
            open_files,
            max_connections = args.max_connections,
            "the open-file limit is below the connection cap"
        );
    }
    tracing::info!(address = %listener.local_addr()?, open_files, "verifier listening");
    let state = AppState {
        verifier,
        forwarding: Arc::new(args.forwarding()),
    };
    let served = http::serve(listener, state, args.http_limits(), shutdown.clone())
        .await
        .context("serving the verifier");
    shutdown.cancel();
    let _ = tokio::join!(watching, flushing);
    served
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        verifier: VerifierArgs,
    }

    #[test]
    fn proxy_flags_select_the_method_header_and_trusted_networks() {
        let parsed = Command::try_parse_from([
            "verifier",
            "--forwarded-method-header",
            "X-Original-Method",
            "--trusted-proxies",
            "10.0.0.0/8,127.0.0.1",
        ])
        .map_err(|e| e.to_string());
        let forwarding = parsed.map(|c| c.verifier.forwarding());
        let forwarding = forwarding.as_ref().map(|f| {
            let networks: Vec<String> = f.trusted_proxies.iter().map(|n| n.to_string()).collect();
            (
                f.method_header.as_ref().map(|h| h.as_str().to_owned()),
                networks,
            )
        });
        assert_eq!(
            forwarding,
            Ok((
                Some("x-original-method".to_owned()),
                vec!["10.0.0.0/8".to_owned(), "127.0.0.1/32".to_owned()]
            ))
        );
        let defaults = Command::try_parse_from(["verifier"]).map(|c| c.verifier.forwarding());
        assert!(defaults.is_ok_and(|f| f.method_header.is_none() && f.trusted_proxies.is_empty()));
    }

    #[test]
    fn the_hash_cost_ceiling_defaults_to_the_controllers_parameters_and_can_be_raised() {
        let defaults = Command::try_parse_from(["verifier"]).map(|c| c.verifier.settings());
        assert_eq!(
            defaults.map(|s| s.max_hash_cost).ok(),
            Some(HashParams::default())
        );
        let raised = Command::try_parse_from([
            "verifier",
            "--max-hash-memory-kib",
            "65536",
            "--max-hash-iterations",
            "3",
        ])
        .map(|c| c.verifier.settings().max_hash_cost);
        assert_eq!(
            raised.ok(),
            Some(HashParams {
                memory_kib: 65536,
                iterations: 3,
                parallelism: HashParams::default().parallelism,
            })
        );
    }

    #[test]
    fn the_staleness_bound_is_a_duration_of_at_least_a_second_and_refuses_by_default() {
        let parse = |flags: &[&str]| {
            Command::try_parse_from(std::iter::once("verifier").chain(flags.iter().copied()))
                .map(|c| {
                    let settings = c.verifier.settings();
                    (settings.max_staleness, settings.when_stale)
                })
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            parse(&[]),
            Ok((Duration::from_secs(300), WhenStale::Refuse))
        );
        assert_eq!(
            parse(&["--max-staleness", "10s", "--when-stale", "serve"]),
            Ok((Duration::from_secs(10), WhenStale::Serve))
        );
        assert!(
            parse(&["--max-staleness", "0s"]).is_err_and(|e| e.contains("shorter than one second"))
        );
        assert!(parse(&["--max-staleness", "soon"]).is_err());
        assert!(parse(&["--when-stale", "sometimes"]).is_err());
    }

    #[test]
    fn the_last_use_write_interval_is_at_most_the_one_unused_deadlines_allow_for() {
        let interval = |value: &str| {
            Command::try_parse_from(["verifier", "--last-used-flush-seconds", value])
                .map(|c| c.verifier.last_used_flush_seconds)
                .map_err(|e| e.to_string())
        };
        assert_eq!(interval("60"), Ok(60));
        assert_eq!(interval("1"), Ok(1));
        assert!(interval("61").is_err_and(|e| e.contains("61 is not in 1..=60")));
        assert!(interval("0").is_err());
    }

    #[test]
    fn a_trusted_proxy_that_is_no_network_is_refused() {
        let error = Command::try_parse_from(["verifier", "--trusted-proxies", "10.0.0.0/8,proxy"])
            .err()
            .map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e
                    .contains(r#""proxy" is not an IP address or CIDR network (like 10.0.0.0/8)"#)),
            "{error:?}"
        );
    }
}
