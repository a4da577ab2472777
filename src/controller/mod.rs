//! The controller: reconciles AccessKeys and AccessKeyPolicies (leader-elected).

mod access_key;
mod api_contact;
mod audit;
mod backoff;
mod cached_key;
mod context;
mod far_deadlines;
mod grant_cache;
mod hash_pool;
mod hashing;
mod honoured;
mod intake;
mod issuance;
mod leader;
mod ledger;
mod metrics;
mod owner_access;
mod owner_index;
mod packed;
mod policy;
mod probes;
mod progress;
mod rbac_watch;
mod record_key;
mod requeues;
mod rollout;
mod runner;
mod scopes_held;
mod seal;
mod secret_data;
mod secret_record;
mod status;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_policy_holds;
mod watched_records;

use std::net::SocketAddr;

use crate::keys::hash::HashParams;

pub use context::Clock;
pub use hash_pool::THREAD_NAME as HASH_THREAD_NAME;
pub use issuance::{
    DATA_ACCESS_KEY, DATA_ACCESS_KEY_ID, DATA_TOKEN, FIRST_ISSUED_AT_ANNOTATION,
    PREVIOUS_KEYS_ANNOTATION, SECRET_HASH_ANNOTATION,
};
pub use rollout::{DEBOUNCE as ROLLOUT_DEBOUNCE, ROLLOUT_FAILED, ROLLOUT_TRIGGERED};
pub use seal::RECORD_SEAL_ANNOTATION;

/// Controller settings (flags and environment).
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Address of the `/livez`, `/readyz` and `/metrics` endpoints.
    #[arg(long, env = "KEYWARDEN_PROBE_ADDR", default_value = "0.0.0.0:8081")]
    pub probe_addr: SocketAddr,

    /// Run without leader election (a single replica only).
    #[arg(long, env = "KEYWARDEN_DISABLE_LEADER_ELECTION")]
    pub disable_leader_election: bool,

    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        env = "KEYWARDEN_LEADER_ELECTION_NAMESPACE",
        default_value = "default"
    )]
    pub leader_election_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "KEYWARDEN_LEASE_NAME",
        default_value = "keywarden-controller"
    )]
    pub lease_name: String,

    /// Seconds a leader holds the Lease without renewing it.
    #[arg(long, env = "KEYWARDEN_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// This replica's identity in the Lease (default: a random one).
    #[arg(long, env = "KEYWARDEN_IDENTITY")]
    pub identity: Option<String>,

    /// Secret (in `--record-key-namespace`) holding the key that seals the issuance records in
    /// key Secrets' annotations; created on first start. Back it up: without it, status lost
    /// in a restore is not recovered and the affected keys need a rotation.
    #[arg(
        long,
        env = "KEYWARDEN_RECORD_KEY_SECRET",
        default_value = "keywarden-record-key"
    )]
    pub record_key_secret: String,

    /// Namespace of the record key Secret (default: the leader-election namespace).
    #[arg(long, env = "KEYWARDEN_RECORD_KEY_NAMESPACE")]
    pub record_key_namespace: Option<String>,

    /// argon2id memory cost in KiB.
    #[arg(long, env = "KEYWARDEN_ARGON2_MEMORY_KIB", default_value_t = HashParams::default().memory_kib)]
    pub argon2_memory_kib: u32,

    /// argon2id iterations.
    #[arg(long, env = "KEYWARDEN_ARGON2_ITERATIONS", default_value_t = HashParams::default().iterations)]
    pub argon2_iterations: u32,

    /// argon2id lanes.
    #[arg(long, env = "KEYWARDEN_ARGON2_PARALLELISM", default_value_t = HashParams::default().parallelism)]
    pub argon2_parallelism: u32,

    /// How long (`30s`, `1m`) the API server may leave the controller's reads unanswered
    /// before `/readyz` fails and `keywarden_controller_api_reachable` drops to 0.
    #[arg(long, env = "KEYWARDEN_MAX_API_SILENCE", default_value = "1m", value_parser = crate::keys::duration::parse_bound)]
    pub max_api_silence: std::time::Duration,
    /// Restart the workloads keys name in `spec.rollout` after each issuance (needs `patch` on
    /// deployments, statefulsets and daemonsets; the chart grants it with `rollout.enabled`).
    #[arg(long, env = "KEYWARDEN_ROLLOUT")]
    pub rollout: bool,
}

impl Default for ControllerArgs {
    fn default() -> Self {
        let hash = HashParams::default();
        Self {
            probe_addr: SocketAddr::from(([0, 0, 0, 0], 8081)),
            disable_leader_election: false,
            leader_election_namespace: "default".into(),
            lease_name: "keywarden-controller".into(),
            lease_duration_seconds: 15,
            identity: None,
            record_key_secret: "keywarden-record-key".into(),
            record_key_namespace: None,
            argon2_memory_kib: hash.memory_kib,
            argon2_iterations: hash.iterations,
            argon2_parallelism: hash.parallelism,
            max_api_silence: api_contact::DEFAULT_MAX_SILENCE,
            rollout: false,
        }
    }
}

impl ControllerArgs {
    /// The namespace of the record key Secret.
    pub fn record_key_namespace(&self) -> &str {
        self.record_key_namespace
            .as_deref()
            .unwrap_or(&self.leader_election_namespace)
    }

    /// The argon2id parameters selected by the flags.
    pub fn hash_params(&self) -> HashParams {
        HashParams {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }
}

/// Why a reconciliation or the controller failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading Secret: {0}")]
    ReadSecret(#[source] kube::Error),
    #[error("creating Secret: {0}")]
    CreateSecret(#[source] kube::Error),
    #[error("replacing Secret: {0}")]
    ReplaceSecret(#[source] kube::Error),
    #[error("reading Namespace: {0}")]
    ReadNamespace(#[source] kube::Error),
    #[error("applying AccessKey status: {0}")]
    ApplyKeyStatus(#[source] kube::Error),
    #[error("applying AccessKeyPolicy status: {0}")]
    ApplyPolicyStatus(#[source] kube::Error),
    #[error("hashing secret: {0}")]
    HashSecret(#[source] crate::keys::KeyError),
    #[error("hashing task failed: {0}")]
    HashTask(#[source] hash_pool::JobLost),
    #[error("reading the record key Secret: {0}")]
    ReadRecordKey(#[source] kube::Error),
    #[error("creating the record key Secret: {0}")]
    CreateRecordKey(#[source] kube::Error),
    #[error("record key Secret: {0}")]
    InvalidRecordKey(#[source] crate::keys::KeyError),
    #[error("reading the owner's issuance ledger: {0}")]
    ReadOwnerLedger(#[source] kube::Error),
    #[error("writing the owner's issuance ledger: {0}")]
    WriteOwnerLedger(#[source] kube::Error),
    #[error("the owner's issuance ledger changed since it was read")]
    OwnerLedgerConflict,
    #[error("reading the owner's access Role or RoleBinding: {0}")]
    ReadOwnerAccess(#[source] kube::Error),
    #[error("writing the owner's access Role or RoleBinding: {0}")]
    WriteOwnerAccess(#[source] kube::Error),
    #[error("deleting the owner's access Role or RoleBinding: {0}")]
    DeleteOwnerAccess(#[source] kube::Error),
    #[error("reading rollout targets: {0}")]
    ReadRolloutTargets(#[source] kube::Error),
    #[error("reviewing the owner's scopes (SubjectAccessReview): {0}")]
    ReviewScopes(#[source] kube::Error),
    #[error("unpacking the cached AccessKey: {0}")]
    UnpackCachedKey(#[source] packed::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
}

/// A `Result` whose error is the controller's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(
    client: kube::Client,
    args: ControllerArgs,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    run_with_clock(client, args, shutdown, context::system_clock()).await
}

/// Runs the controller with an injected clock (tests control time with it).
pub async fn run_with_clock(
    client: kube::Client,
    args: ControllerArgs,
    shutdown: tokio_util::sync::CancellationToken,
    clock: Clock,
) -> anyhow::Result<()> {
    args.hash_params().validate()?;
    let contact = api_contact::ApiContact::new(args.max_api_silence, std::time::Instant::now());
    let state = probes::ProbeState::new(contact);
    let server = probes::serve(args.probe_addr, state.clone(), shutdown.clone()).await?;
    let confirming = tokio::spawn(api_contact::confirm_until_shutdown(
        client.clone(),
        state.contact.clone(),
        shutdown.clone(),
    ));
    let result = leader::run_when_leader(client, &args, clock, state, shutdown.clone()).await;
    shutdown.cancel();
    confirming.abort();
    server.await??;
    result
}
