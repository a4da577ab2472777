//! The decision: is this presented key usable for this request right now?

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::credentials::{Presented, Unreadable};
use super::freshness::{Freshness, Stale, WhenStale, DEFAULT_MAX_STALENESS};
use super::guard::{FailureCache, FailureLimiter, FailureLimits, SecretMacer, VerifiedCache};
use super::hashing::{Hasher, Verification};
use super::index::{Credential, KeyIndex, KeyRecord, Relisted, Unusable};
use super::last_used::LastUse;
use super::metrics::{CacheOutcome, CheckResult, Metrics};
use super::watched::WatchedKey;
use crate::keys::hash::HashParams;
use crate::keys::origin::is_origin_allowed;
use crate::keys::scope::grants_scope;

/// Limits and capacities of a [`Verifier`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// argon2 verifications running at once.
    pub max_concurrent_hashes: usize,
    /// argon2 verifications waiting for a slot before new ones are refused with 429.
    pub max_queued_hashes: usize,
    /// Failed verifications allowed per access ID and client address per second (bursts of
    /// twice that), so a flood on an ID from elsewhere never locks out its holder.
    pub failures_per_second_per_key: u32,
    /// Failed verifications allowed per client address per second (bursts of twice that).
    pub failures_per_second_per_client: u32,
    /// Entries kept in each cache and limiter table.
    pub cache_capacity: usize,
    /// Costliest argon2id hash served (default: the controller's default parameters); raise
    /// it to the largest parameters the controller ever hashed with.
    pub max_hash_cost: HashParams,
    /// Age of the view of the cluster past which checks follow `when_stale`.
    pub max_staleness: Duration,
    pub when_stale: WhenStale,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_concurrent_hashes: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_queued_hashes: 64,
            failures_per_second_per_key: 5,
            failures_per_second_per_client: 20,
            cache_capacity: 100_000,
            max_hash_cost: HashParams::default(),
            max_staleness: DEFAULT_MAX_STALENESS,
            when_stale: WhenStale::Refuse,
        }
    }
}

/// One request to check, as read from HTTP (or JSON).
pub struct CheckRequest {
    pub credentials: Result<Presented, Unreadable>,
    /// The original method is `OPTIONS`: its `Origin` is never refused (the CORS rule).
    pub is_options: bool,
    /// It carries `Access-Control-Request-Method`: with `OPTIONS` and an `Origin`, and without
    /// credentials, a CORS preflight, accepted without a key.
    pub requests_cors_method: bool,
    pub origin: Option<String>,
    /// Every scope the request needs.
    pub required_scopes: Vec<String>,
    pub client: Option<IpAddr>,
}

impl CheckRequest {
    /// Whether this is a CORS preflight: `OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`.
    pub fn is_cors_preflight(&self) -> bool {
        self.is_options && self.requests_cors_method && self.origin.is_some()
    }
}

/// Why a key was refused with 401. Logged and reported by `/v1/verify`; never sent to proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Unreadable(Unreadable),
    UnknownId,
    WrongSecret,
    Unusable(Unusable),
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unreadable(reason) => reason.as_str(),
            Refusal::UnknownId => "unknown access key ID",
            Refusal::WrongSecret => "wrong secret",
            Refusal::Unusable(Unusable::Disabled) => "key not active",
            Refusal::Unusable(Unusable::Expired) => "key expired",
        }
    }
}

/// A key that passed every check.
#[derive(Debug)]
pub struct Grant {
    pub access_key_id: String,
    pub record: Arc<KeyRecord>,
    /// The credential that matched: the key's current one or a previous one in its grace period.
    pub credential: Credential,
    /// The request's `Origin`, to echo in `Access-Control-Allow-Origin`.
    pub allowed_origin: Option<String>,
}

/// The answer to a check.
#[derive(Debug)]
pub enum Decision {
    Valid(Grant),
    /// A CORS preflight without credentials: accepted, no key involved.
    Preflight,
    Unauthorized(Refusal),
    ForbiddenOrigin {
        access_key_id: String,
    },
    InsufficientScope {
        access_key_id: String,
    },
    RateLimited {
        retry_after: Duration,
    },
    /// argon2 work is saturated: the verifier, not the client, is the limit (503).
    Overloaded {
        retry_after: Duration,
    },
    /// The view of the cluster is older than `--max-staleness` (503): a key revoked since
    /// may still look valid here.
    Stale(Stale),
}

impl Decision {
    /// The metrics label of this decision.
    pub fn result(&self) -> CheckResult {
        match self {
            Decision::Valid(_) => CheckResult::Valid,
            Decision::Preflight => CheckResult::Preflight,
            Decision::Unauthorized(_) => CheckResult::Unauthorized,
            Decision::ForbiddenOrigin { .. } => CheckResult::ForbiddenOrigin,
            Decision::InsufficientScope { .. } => CheckResult::InsufficientScope,
            Decision::RateLimited { .. } => CheckResult::RateLimited,
            Decision::Overloaded { .. } => CheckResult::Overloaded,
            Decision::Stale(_) => CheckResult::Stale,
        }
    }
}

/// The verifier's state: credential index, caches, limits, last-use records and metrics.
pub struct Verifier {
    index: KeyIndex,
    macer: SecretMacer,
    verified: VerifiedCache,
    failures: FailureCache,
    limits: FailureLimits,
    hasher: Hasher,
    last_use: LastUse,
    metrics: Metrics,
    ready: AtomicBool,
    freshness: Freshness,
}

impl Verifier {
    pub fn new(settings: &Settings) -> Self {
        let capacity = settings.cache_capacity;
        Self {
            index: KeyIndex::new(settings.max_hash_cost),
            macer: SecretMacer::random(),
            verified: VerifiedCache::new(capacity),
            failures: FailureCache::new(capacity),
            limits: FailureLimits {
                per_key_and_client: FailureLimiter::new(
                    settings.failures_per_second_per_key,
                    capacity,
                ),
                per_client: FailureLimiter::new(settings.failures_per_second_per_client, capacity),
            },
            hasher: Hasher::new(settings.max_concurrent_hashes, settings.max_queued_hashes),
            last_use: LastUse::default(),
            metrics: Metrics::default(),
            ready: AtomicBool::new(false),
            freshness: Freshness::new(settings.max_staleness, settings.when_stale),
        }
    }

    pub fn index(&self) -> &KeyIndex {
        &self.index
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How fresh the index is.
    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    pub fn last_use(&self) -> &LastUse {
        &self.last_use
    }

    /// argon2 verifications running right now (never more than `max_concurrent_hashes`).
    pub fn hashes_running(&self) -> usize {
        self.hasher.running()
    }

    /// Whether the first full list of keys has been indexed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Applies a key to the index and drops cached verifications it made stale.
    pub fn apply_key(&self, key: &crate::api::access_key::AccessKey) {
        self.apply_watched(&WatchedKey::from(key));
    }

    /// Applies a watched key to the index and drops cached verifications it made stale.
    pub fn apply_watched(&self, key: &WatchedKey) {
        let stale = self.index.apply(key);
        self.verified.invalidate(&stale);
    }

    /// Removes a deleted key from the index and the cache.
    pub fn remove_key(&self, key: &super::index::KeyRef) {
        let stale = self.index.remove(key);
        self.verified.invalidate(&stale);
    }

    /// Replaces the keys `in_scope` after a full relist.
    pub fn replace_keys(&self, in_scope: impl Fn(&super::index::KeyRef) -> bool, keys: Relisted) {
        let stale = self.index.replace(in_scope, keys);
        self.verified.invalidate(&stale);
    }

    /// Decides a request at `now`, counting it in the metrics.
    pub async fn check(&self, request: CheckRequest, now: DateTime<Utc>) -> Decision {
        let decision = self.decide(request, now).await;
        self.metrics.count_request(decision.result());
        decision
    }

    async fn decide(&self, request: CheckRequest, now: DateTime<Utc>) -> Decision {
        if let Some(stale) = self.freshness.stale(std::time::Instant::now()) {
            if stale.when_stale == WhenStale::Refuse {
                return Decision::Stale(stale);
            }
        }
        let is_cors_preflight = request.is_cors_preflight();
        let presented = match request.credentials {
            Ok(presented) => presented,
            // why: authentication is its own rule: only a preflight, which browsers send
            // without credentials, passes without a key; any other request needs one.
            Err(Unreadable::Missing) if is_cors_preflight => return Decision::Preflight,
            Err(reason) => return Decision::Unauthorized(Refusal::Unreadable(reason)),
        };
        let id = presented.access_key_id.as_str().to_owned();
        let credential = match self.verify_secret(&id, presented, request.client).await {
            Ok(credential) => credential,
            Err(decision) => return decision,
        };
        if let Err(unusable) = credential.usability(now) {
            return Decision::Unauthorized(Refusal::Unusable(unusable));
        }
        let record = &credential.record;
        let has_origin = request.origin.is_some();
        let allowed_origin = request
            .origin
            .filter(|origin| is_origin_allowed(origin, &record.allowed_origins));
        // why: the CORS rule refuses a foreign `Origin`, except on `OPTIONS`, which is never
        // refused for its origin; it is answered without `Access-Control-Allow-Origin`.
        if has_origin && allowed_origin.is_none() && !request.is_options {
            return Decision::ForbiddenOrigin { access_key_id: id };
        }
        let scopes_granted = request
            .required_scopes
            .iter()
            .all(|scope| grants_scope(&record.scopes, scope));
        if !scopes_granted {
            return Decision::InsufficientScope { access_key_id: id };
        }
        self.last_use.record(&record.key_ref, now);
        Decision::Valid(Grant {
            access_key_id: id,
            record: record.clone(),
            credential,
            allowed_origin,
        })
    }

    /// Checks the presented secret against the indexed hash: from the verified cache when
    /// possible, else with bounded, rate-limited argon2 work. Returns the freshest credential.
    async fn verify_secret(
        &self,
        id: &str,
        presented: Presented,
        client: Option<IpAddr>,
    ) -> Result<Credential, Decision> {
        let credential = self
            .index
            .lookup(id)
            .ok_or(Decision::Unauthorized(Refusal::UnknownId))?;
        let mac = self.macer.mac(id, &presented.secret);
        if self
            .verified
            .is_verified(id, &mac, credential.secret_hash())
        {
            self.metrics.count_cache(CacheOutcome::Hit);
            return Ok(credential);
        }
        if self.failures.has_failed(id, &mac, credential.secret_hash()) {
            self.metrics.count_cache(CacheOutcome::KnownFailure);
            return Err(Decision::Unauthorized(Refusal::WrongSecret));
        }
        self.metrics.count_cache(CacheOutcome::Miss);
        self.limits
            .try_charge(id, client)
            .map_err(|retry_after| Decision::RateLimited { retry_after })?;
        let verification = self
            .hasher
            .verify(
                id,
                mac,
                presented.secret,
                credential.secret_hash().clone(),
                &self.metrics,
            )
            .await;
        if verification == Verification::Mismatch {
            self.failures
                .insert(id, mac, credential.secret_hash().clone());
            return Err(Decision::Unauthorized(Refusal::WrongSecret));
        }
        self.limits.refund(id, client);
        if verification == Verification::Overloaded {
            return Err(Decision::Overloaded {
                retry_after: Duration::from_secs(1),
            });
        }
        self.verified
            .insert(id, mac, credential.secret_hash().clone());
        // why: the key may have been deactivated, rotated or deleted while we were hashing.
        self.index
            .lookup(id)
            .filter(|fresh| fresh.secret_hash() == credential.secret_hash())
            .ok_or(Decision::Unauthorized(Refusal::UnknownId))
    }
}
